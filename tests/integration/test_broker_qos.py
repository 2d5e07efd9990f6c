# Publish/subscribe delivery: QoS 0/1/2 end to end with paho, the QoS
# handshakes on the wire (PUBACK, PUBREC/PUBREL/PUBCOMP, SUBACK, UNSUBACK),
# QoS downgrade, topic wildcards, '$' topics and unsubscribe.
import pytest

from conftest import (QUIET, publish_packet, raw_connected, subscribe_packet,
                      unique_topic, unsubscribe_packet)

BROKER_LISTENERS = ("plain",)


@pytest.fixture
def pubsub(broker, clients):
    """A connected (publisher, subscriber) pair of paho clients."""
    pub = clients("qos-pub")
    sub = clients("qos-sub")
    pub.connect(broker.ports["plain"])
    sub.connect(broker.ports["plain"])
    return pub, sub


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_message_is_delivered_with_its_qos(pubsub, qos):
    pub, sub = pubsub
    topic = unique_topic("qos")
    assert sub.subscribe(topic, qos) == (qos,)
    payload = f"payload at qos {qos}".encode()
    pub.publish(topic, payload, qos)
    m = sub.get_on(topic)
    assert m.payload == payload
    assert m.qos == qos
    assert not m.retain


@pytest.mark.parametrize("pub_qos,sub_qos", [(2, 1), (2, 0), (1, 0)])
def test_delivery_qos_is_the_lower_of_publish_and_subscription(pubsub, pub_qos, sub_qos):
    pub, sub = pubsub
    topic = unique_topic("downgrade")
    sub.subscribe(topic, sub_qos)
    pub.publish(topic, b"x", pub_qos)
    assert sub.get_on(topic).qos == sub_qos


@pytest.mark.parametrize("qos", [1, 2])
def test_messages_keep_publish_order(pubsub, qos):
    pub, sub = pubsub
    topic = unique_topic("order")
    sub.subscribe(topic, qos)
    for i in range(10):
        pub.publish(topic, str(i).encode(), qos)
    assert [sub.get_on(topic).payload for _ in range(10)] == [str(i).encode() for i in range(10)]


def test_binary_and_empty_payloads_arrive_unchanged(pubsub):
    pub, sub = pubsub
    topic = unique_topic("binary")
    sub.subscribe(topic, 1)
    blob = bytes(range(256)) * 4
    pub.publish(topic, blob, 1)
    pub.publish(topic, b"", 1)
    assert sub.get_on(topic).payload == blob
    assert sub.get_on(topic).payload == b""


def test_subscribe_gets_exact_suback(broker):
    c = raw_connected(broker.ports["plain"], "raw-suback")
    try:
        c.send(subscribe_packet(0x1234, [("a/b", 0), ("c/+", 1), ("d/#", 2)]))
        assert c.recv_packet() == b"\x90\x05\x12\x34\x00\x01\x02"
    finally:
        c.close()


def test_qos1_publish_gets_exact_puback(broker):
    c = raw_connected(broker.ports["plain"], "raw-puback")
    try:
        c.send(publish_packet(unique_topic("raw"), b"one", qos=1, pid=7))
        assert c.recv_packet() == b"\x40\x02\x00\x07"
    finally:
        c.close()


def test_qos2_publish_gets_pubrec_then_pubcomp(broker):
    c = raw_connected(broker.ports["plain"], "raw-pubrec")
    try:
        c.send(publish_packet(unique_topic("raw"), b"two", qos=2, pid=0x0109))
        assert c.recv_packet() == b"\x50\x02\x01\x09"
        c.send(b"\x62\x02\x01\x09")  # PUBREL
        assert c.recv_packet() == b"\x70\x02\x01\x09"
    finally:
        c.close()


def test_qos2_duplicate_publish_is_delivered_once(broker, clients):
    topic = unique_topic("exactly-once")
    sub = clients("qos2-dup-sub")
    sub.connect(broker.ports["plain"])
    sub.subscribe(topic, 2)
    c = raw_connected(broker.ports["plain"], "raw-dup")
    try:
        c.send(publish_packet(topic, b"once", qos=2, pid=5))
        assert c.recv_packet() == b"\x50\x02\x00\x05"
        c.send(publish_packet(topic, b"once", qos=2, pid=5, dup=True))
        assert c.recv_packet() == b"\x50\x02\x00\x05"
        c.send(b"\x62\x02\x00\x05")
        assert c.recv_packet() == b"\x70\x02\x00\x05"
    finally:
        c.close()
    assert sub.get_on(topic).payload == b"once"
    assert [m for m in sub.drain() if m.topic == topic] == []


def test_raw_subscriber_receives_qos1_publish_and_can_ack(broker, clients):
    topic = unique_topic("raw-recv")
    c = raw_connected(broker.ports["plain"], "raw-recv")
    try:
        c.send(subscribe_packet(1, [(topic, 1)]))
        assert c.recv_packet() == b"\x90\x03\x00\x01\x01"
        pub = clients("raw-recv-pub")
        pub.connect(broker.ports["plain"])
        pub.publish(topic, b"hello", 1)
        pkt = c.recv_packet()
        # PUBLISH, QoS 1, no DUP, no RETAIN; topic, packet id, payload.
        assert pkt[0] == 0x32
        body = pkt[2:]
        tlen = int.from_bytes(body[:2], "big")
        assert body[2:2 + tlen] == topic.encode()
        pid = body[2 + tlen:4 + tlen]
        assert pid != b"\x00\x00"
        assert body[4 + tlen:] == b"hello"
        c.send(b"\x40\x02" + pid)
    finally:
        c.close()


@pytest.mark.parametrize("pattern,matching,non_matching", [
    ("{b}/+/temp", ["{b}/room1/temp", "{b}//temp"], ["{b}/room1/hum", "{b}/a/b/temp", "{b}/temp"]),
    ("{b}/#", ["{b}", "{b}/x", "{b}/x/y/z"], ["{b}x/y", "other/{b}"]),
    ("{b}/+/+", ["{b}/a/b"], ["{b}/a", "{b}/a/b/c"]),
    ("+/{n}/#", ["x/{n}", "x/{n}/deep/er"], ["x/y/{n}"]),
    ("{b}/exact", ["{b}/exact"], ["{b}/exact/more", "{b}/Exact"]),
])
def test_wildcard_matching(pubsub, pattern, matching, non_matching):
    pub, sub = pubsub
    base = unique_topic("wild")
    fill = lambda s: s.format(b=base, n=base.replace("/", "-"))
    sub.subscribe(fill(pattern), 1)
    for t in non_matching + matching:
        pub.publish(fill(t), fill(t).encode(), 1)
    sentinel = unique_topic("sentinel")
    sub.subscribe(sentinel, 1)
    pub.publish(sentinel, b"end", 1)
    got = []
    while True:
        m = sub.get()
        if m.topic == sentinel:
            break
        got.append(m.topic)
    assert sorted(got) == sorted(fill(t) for t in matching)


def test_hash_subscription_does_not_receive_dollar_topics(pubsub, clients, broker):
    pub, sub = pubsub
    sub.subscribe("#", 0)
    plus = clients("dollar-plus")
    plus.connect(broker.ports["plain"])
    plus.subscribe("+/dollar/#", 0)
    dollar_topic = "$certmqtest/dollar/" + unique_topic("d").replace("/", "-")
    pub.publish(dollar_topic, b"hidden", 1)
    sentinel = "z/dollar/" + unique_topic("s").replace("/", "-")
    pub.publish(sentinel, b"end", 1)
    for c in (sub, plus):
        seen = []
        while True:
            m = c.get()
            if m.topic == sentinel:
                break
            seen.append(m.topic)
        assert dollar_topic not in seen


def test_unsubscribe_stops_delivery(pubsub):
    pub, sub = pubsub
    topic = unique_topic("unsub")
    other = unique_topic("still")
    sub.subscribe(topic, 1)
    sub.subscribe(other, 1)
    pub.publish(topic, b"before", 1)
    assert sub.get_on(topic).payload == b"before"
    sub.unsubscribe(topic)
    pub.publish(topic, b"after", 1)
    pub.publish(other, b"sentinel", 1)
    seen = []
    while True:
        m = sub.get()
        if m.topic == other:
            break
        seen.append(m.payload)
    assert seen == []


def test_unsubscribe_gets_exact_unsuback(broker):
    c = raw_connected(broker.ports["plain"], "raw-unsuback")
    try:
        c.send(subscribe_packet(3, [("u/1", 0)]))
        assert c.recv_packet() == b"\x90\x03\x00\x03\x00"
        c.send(unsubscribe_packet(4, ["u/1", "never/subscribed"]))
        assert c.recv_packet() == b"\xb0\x02\x00\x04"
    finally:
        c.close()


def test_overlapping_subscriptions_deliver_one_copy_at_highest_qos(pubsub):
    # MQTT 3.1.1 3.3.5: the server may deliver one copy per match or one at the
    # maximum QoS; certmq and mosquitto differ, so accept either, but every
    # copy must carry the payload and at least one must be QoS 1.
    pub, sub = pubsub
    base = unique_topic("overlap")
    sub.subscribe(base + "/#", 0)
    sub.subscribe(base + "/+", 1)
    pub.publish(base + "/x", b"o", 1)
    got = [sub.get_on(base + "/x")]
    got += [m for m in sub.drain(QUIET) if m.topic == base + "/x"]
    assert 1 <= len(got) <= 2
    assert all(m.payload == b"o" for m in got)
    assert max(m.qos for m in got) == 1


def test_publisher_receives_own_message_when_subscribed(broker, clients):
    c = clients("self-sub")
    c.connect(broker.ports["plain"])
    topic = unique_topic("self")
    c.subscribe(topic, 1)
    c.publish(topic, b"echo", 1)
    assert c.get_on(topic).payload == b"echo"



def test_client_id_with_wildcards_cannot_reach_private_s_topics(broker, clients):
    # A client's own s/ topics are private to its ClientId; the ClientId "+"
    # would otherwise match every other client's.
    victim = clients("victim-1")
    victim.connect(broker.ports["plain"])
    assert victim.subscribe("s/e", qos=1) == (1,)
    spy = clients("+")
    spy.connect(broker.ports["plain"])
    assert spy.subscribe("s/e", qos=1) == (0x80,)
    victim.publish("s/uat", b"", qos=1)  # a token request from a non-device
    assert victim.get_on("s/e").payload.startswith(b"40,")
    with pytest.raises(AssertionError):
        spy.get(timeout=1)
