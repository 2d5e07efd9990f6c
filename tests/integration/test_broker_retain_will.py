# Retained messages (set, replace, clear, wildcard match, retain flag on
# delivery) and will messages (abnormal close, keepalive expiry, none after a
# clean DISCONNECT), MQTT 3.1.1 sections 3.1.2.5 and 3.3.1.3.
import time

from conftest import (CONNACK_OK, DISCONNECT, QUIET, RawClient, unique_topic)

BROKER_LISTENERS = ("plain",)


def retained_on(broker, clients, topic_filter, wait=QUIET):
    """Retained messages a fresh subscriber to topic_filter receives."""
    c = clients()
    c.connect(broker.ports["plain"])
    c.subscribe(topic_filter, 1)
    got = c.drain(wait)
    c.disconnect()
    return got


def test_new_subscriber_gets_retained_message_with_retain_flag(broker, clients):
    topic = unique_topic("retain")
    pub = clients("retain-pub")
    pub.connect(broker.ports["plain"])
    pub.publish(topic, b"state-1", 1, retain=True)
    sub = clients("retain-sub")
    sub.connect(broker.ports["plain"])
    sub.subscribe(topic, 1)
    m = sub.get_on(topic)
    assert (m.payload, m.qos, m.retain) == (b"state-1", 1, True)


def test_retained_message_is_replaced_by_newer_one(broker, clients):
    topic = unique_topic("retain")
    pub = clients("retain-pub")
    pub.connect(broker.ports["plain"])
    pub.publish(topic, b"old", 1, retain=True)
    pub.publish(topic, b"new", 1, retain=True)
    got = retained_on(broker, clients, topic)
    assert [m.payload for m in got] == [b"new"]


def test_empty_retained_payload_clears_retained_message(broker, clients):
    topic = unique_topic("retain")
    pub = clients("retain-pub")
    pub.connect(broker.ports["plain"])
    pub.publish(topic, b"soon gone", 1, retain=True)
    pub.publish(topic, b"", 1, retain=True)
    sentinel = topic + "/s"
    pub.publish(sentinel, b"end", 1, retain=True)
    got = retained_on(broker, clients, topic + "/#")
    assert [m.topic for m in got] == [sentinel]


def test_live_subscriber_gets_retained_publish_without_retain_flag(broker, clients):
    topic = unique_topic("retain-live")
    sub = clients("retain-live-sub")
    sub.connect(broker.ports["plain"])
    sub.subscribe(topic, 1)
    pub = clients("retain-live-pub")
    pub.connect(broker.ports["plain"])
    pub.publish(topic, b"live", 1, retain=True)
    m = sub.get_on(topic)
    assert m.payload == b"live" and not m.retain
    pub.publish(topic, b"", 1, retain=True)


def test_wildcard_subscriber_gets_all_matching_retained_messages(broker, clients):
    base = unique_topic("retain-wild")
    pub = clients("retain-wild-pub")
    pub.connect(broker.ports["plain"])
    for leaf in ("a", "b", "c/d"):
        pub.publish(f"{base}/{leaf}", leaf.encode(), 0, retain=True)
    pub.publish(f"{base}x/no", b"no", 0, retain=True)
    sub = clients("retain-wild-sub")
    sub.connect(broker.ports["plain"])
    sub.subscribe(base + "/+", 1)
    got = {sub.get().topic for _ in range(2)} | {m.topic for m in sub.drain()}
    assert got == {f"{base}/a", f"{base}/b"}


def test_retained_qos0_message_is_kept(broker, clients):
    topic = unique_topic("retain-q0")
    pub = clients("retain-q0-pub")
    pub.connect(broker.ports["plain"])
    pub.publish(topic, b"zero", 0, retain=True)
    # A QoS 1 round trip after it on the same connection orders the broker's
    # processing before the new subscriber arrives.
    pub.publish(unique_topic("flush"), b"", 1)
    sub = clients("retain-q0-sub")
    sub.connect(broker.ports["plain"])
    sub.subscribe(topic, 1)
    m = sub.get_on(topic)
    assert (m.payload, m.qos, m.retain) == (b"zero", 0, True)


def will_subscriber(broker, clients, topic, qos=1):
    sub = clients("will-sub-" + topic.replace("/", "-"))
    sub.connect(broker.ports["plain"])
    sub.subscribe(topic, qos)
    return sub


def test_will_is_published_when_client_drops_without_disconnect(broker, clients):
    topic = unique_topic("will")
    sub = will_subscriber(broker, clients, topic)
    c = RawClient(broker.ports["plain"])
    assert c.connect("will-drop", will=(topic, b"gone", 1, False)) == CONNACK_OK
    c.abort()
    m = sub.get_on(topic)
    assert (m.payload, m.qos, m.retain) == (b"gone", 1, False)


def test_will_is_published_when_paho_socket_is_closed(broker, clients):
    topic = unique_topic("will")
    sub = will_subscriber(broker, clients, topic)
    c = clients("will-paho", will=(topic, b"paho gone", 0, False))
    c.connect(broker.ports["plain"])
    c._stop.set()
    c._thread.join(5)
    c.c._sock.close()
    m = sub.get_on(topic)
    assert m.payload == b"paho gone" and m.qos == 0


def test_no_will_after_clean_disconnect(broker, clients):
    topic = unique_topic("will")
    sub = will_subscriber(broker, clients, topic)
    c = RawClient(broker.ports["plain"])
    assert c.connect("will-clean", will=(topic, b"must not appear", 1, False)) == CONNACK_OK
    c.send(DISCONNECT)
    assert c.is_closed()
    c.close()
    assert [m for m in sub.drain() if m.topic == topic] == []


def test_retained_will_is_kept_for_later_subscribers(broker, clients):
    topic = unique_topic("will-retained")
    c = RawClient(broker.ports["plain"])
    assert c.connect("will-retain", will=(topic, b"offline", 1, True)) == CONNACK_OK
    c.abort()
    deadline = time.monotonic() + 5
    got = []
    while not got and time.monotonic() < deadline:
        # A subscriber that came before the will was published gets it live
        # (RETAIN 0): only a later one shows what was kept.
        got = [m for m in retained_on(broker, clients, topic, wait=0.3) if m.retain]
    assert [(m.payload, m.retain) for m in got] == [(b"offline", True)]


def test_will_is_published_on_keepalive_expiry(broker, clients):
    topic = unique_topic("will-keepalive")
    sub = will_subscriber(broker, clients, topic)
    c = RawClient(broker.ports["plain"])
    try:
        assert c.connect("will-ka", keepalive=1, will=(topic, b"timed out", 1, False)) == CONNACK_OK
        t0 = time.monotonic()
        # The close time itself is checked in test_broker_protocol.py.
        assert c.is_closed(8), "server did not close a silent keepalive=1 connection"
        assert time.monotonic() - t0 >= 1.0
        m = sub.get_on(topic)
        assert m.payload == b"timed out"
    finally:
        c.close()


def test_will_is_published_when_connection_is_taken_over(broker, clients):
    # A takeover ends the first network connection without DISCONNECT, so its
    # will is published (MQTT 3.1.1 3.1.2.5 lists such closes; MQTT 5 says so
    # explicitly for takeover, and mosquitto does it for 3.1.1 too).
    topic = unique_topic("will-takeover")
    sub = will_subscriber(broker, clients, topic)
    first = RawClient(broker.ports["plain"])
    second = RawClient(broker.ports["plain"])
    try:
        assert first.connect("will-takeover", will=(topic, b"taken over", 1, False)) == CONNACK_OK
        assert second.connect("will-takeover") == CONNACK_OK
        assert first.is_closed()
        assert sub.get_on(topic).payload == b"taken over"
    finally:
        first.close()
        second.close()
