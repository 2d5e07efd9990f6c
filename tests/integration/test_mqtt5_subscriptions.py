# MQTT 5.0 subscriptions end to end (issue #8 item 2): the subscription
# options No Local, Retain As Published and Retain Handling 0/1/2,
# subscription identifiers (overlapping filters: both identifiers), and
# shared subscriptions $share/{group}/{filter} (each message to exactly one
# member, in turn; 3.1.1 members too; mosquitto_sub -V 5 as a member;
# shared_subscriptions false refuses them with 0x9E and CONNACK says so).
import subprocess
import threading
import time
from collections import Counter

import paho.mqtt.client as paho
import pytest
from paho.mqtt.packettypes import PacketTypes

from conftest import TIMEOUT, Broker, packet, unique_topic
from mqtt5 import (SHARED_SUB_AVAILABLE, Client5, Raw5, disconnect5, paho5,  # noqa: F401
                   port, pprops, subscribe5)  # paho5, port: fixtures

BROKER_LISTENERS = ("plain",)


def sub_id_props(n):
    return pprops(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=n)


# ---------------------------------------------------------------- options

def test_no_local_keeps_a_clients_own_messages_from_it(paho5):
    topic = unique_topic("nl")
    me = paho5()
    assert me.subscribe(topic, qos=1, noLocal=True) == [1]
    watcher = paho5()
    watcher.subscribe(topic, qos=1)
    me.publish(topic, "mine", qos=1)
    assert watcher.get().payload == b"mine"
    other = paho5()
    other.publish(topic, "theirs", qos=1)
    assert [m.payload for m in me.drain()] == [b"theirs"]


def test_without_no_local_a_client_gets_its_own_messages(paho5):
    topic = unique_topic("nl")
    me = paho5()
    me.subscribe(topic, qos=1)
    me.publish(topic, "mine", qos=1)
    assert me.get().payload == b"mine"


def test_retain_as_published_keeps_the_retain_flag_on_live_messages(paho5):
    topic = unique_topic("rap")
    keep = paho5()
    keep.subscribe(topic, retainAsPublished=True)
    plain = paho5()
    plain.subscribe(topic)
    pub = paho5()
    pub.publish(topic, "r", qos=1, retain=True)
    assert keep.get().retain == 1
    assert plain.get().retain == 0
    pub.publish(topic, "", qos=1, retain=True)  # clear


@pytest.mark.parametrize("handling, deliveries", [(0, 2), (1, 1), (2, 0)])
def test_retain_handling(paho5, handling, deliveries):
    """0: the retained message on every SUBSCRIBE; 1: only when the
    subscription is new; 2: never."""
    topic = unique_topic("rh")
    pub = paho5()
    pub.publish(topic, "kept", qos=1, retain=True)
    sub = paho5()
    for _ in range(2):
        sub.subscribe(topic, qos=1, retainHandling=handling)
    got = sub.drain()
    assert [(m.payload, m.retain) for m in got] == [(b"kept", 1)] * deliveries
    # A live message still arrives, whatever the handling.
    pub.publish(topic, "live", qos=1)
    assert sub.get().payload == b"live"
    pub.publish(topic, "", qos=1, retain=True)


# ---------------------------------------------------------------- identifiers

def test_overlapping_filters_deliver_once_with_both_subscription_identifiers(paho5):
    base = unique_topic("sid")
    sub = paho5()
    sub.subscribe(base + "/#", qos=1, properties=sub_id_props(5))
    sub.subscribe(base + "/+", qos=1, properties=sub_id_props(7))
    sub.subscribe(base + "/other", qos=1)
    pub = paho5()
    pub.publish(base + "/x", "both", qos=1)
    m = sub.get()
    assert sorted(m.properties.SubscriptionIdentifier) == [5, 7]
    assert sub.drain() == [], "one PUBLISH for both subscriptions"
    pub.publish(base + "/other", "one", qos=1)
    m = sub.get()
    assert sorted(m.properties.SubscriptionIdentifier) == [5, 7]
    pub.publish(base + "/a/b", "deep", qos=1)
    assert sub.get().properties.SubscriptionIdentifier == [5]


def test_a_subscription_without_identifier_sends_none(paho5):
    topic = unique_topic("sid")
    sub = paho5()
    sub.subscribe(topic)
    paho5().publish(topic, "x")
    assert not hasattr(sub.get().properties, "SubscriptionIdentifier")


# ---------------------------------------------------------------- shared

def shared_counts(members, n):
    got = Counter()
    seen = []
    deadline = time.monotonic() + TIMEOUT
    while len(seen) < n and time.monotonic() < deadline:
        for i, m in enumerate(members):
            for msg in m.drain(0.05):
                got[i] += 1
                seen.append(msg.payload)
    for i, m in enumerate(members):
        for msg in m.drain():
            got[i] += 1
            seen.append(msg.payload)
    return got, seen


@pytest.mark.parametrize("n_members", [2, 3])
def test_shared_subscription_gives_each_message_to_exactly_one_member_in_turn(paho5,
                                                                              n_members):
    topic = unique_topic("share")
    members = [paho5() for _ in range(n_members)]
    for m in members:
        assert m.subscribe(f"$share/grp/{topic}", qos=1) == [1]
    everyone = paho5()
    everyone.subscribe(topic, qos=1)
    pub = paho5()
    n = 4 * n_members
    for i in range(n):
        pub.publish(topic, str(i), qos=1)
    got, seen = shared_counts(members, n)
    assert sorted(seen, key=int) == [str(i).encode() for i in range(n)], "lost or duplicated"
    assert [got[i] for i in range(n_members)] == [4] * n_members, "not round robin"
    # A plain subscriber on the same topic gets every message.
    assert sorted(int(everyone.get().payload) for _ in range(n)) == list(range(n))


def test_shared_and_plain_subscriber_on_one_topic(paho5):
    topic = unique_topic("share")
    member = paho5()
    member.subscribe(f"$share/g/{topic}", qos=1)
    plain = paho5()
    plain.subscribe(topic, qos=1)
    pub = paho5()
    for i in range(3):
        pub.publish(topic, str(i), qos=1)
    assert [member.get().payload for _ in range(3)] == [b"0", b"1", b"2"]
    assert [plain.get().payload for _ in range(3)] == [b"0", b"1", b"2"]


def test_shared_subscription_with_a_3_1_1_member(paho5, port):
    topic = unique_topic("share")
    v5 = paho5()
    v5.subscribe(f"$share/mixed/{topic}", qos=1)
    v3 = Client5(protocol=paho.MQTTv311)
    try:
        v3.connect(port)
        assert v3.subscribe(f"$share/mixed/{topic}", qos=1) == [1]
        pub = paho5()
        for i in range(6):
            pub.publish(topic, str(i), qos=1)
        got, seen = shared_counts([v5, v3], 6)
        assert sorted(seen) == [str(i).encode() for i in range(6)]
        assert (got[0], got[1]) == (3, 3)
    finally:
        v3.disconnect()


def test_mosquitto_sub_v5_as_a_shared_member(paho5, port):
    topic = unique_topic("share")
    other = paho5()
    other.subscribe(f"$share/ms/{topic}", qos=1)
    ms = subprocess.Popen(["mosquitto_sub", "-V", "5", "-h", "127.0.0.1", "-p", str(port),
                           "-t", f"$share/ms/{topic}", "-q", "1", "-C", "2", "-W",
                           str(int(TIMEOUT) + 5)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pub = paho5()
    sent = 0
    deadline = time.monotonic() + TIMEOUT
    while ms.poll() is None and time.monotonic() < deadline:
        pub.publish(topic, f"m{sent}", qos=1)
        sent += 1
        try:
            ms.wait(0.2)
        except subprocess.TimeoutExpired:
            pass
    if ms.poll() is None:
        ms.kill()
    out, err = ms.communicate(timeout=TIMEOUT)
    assert ms.returncode == 0, err
    theirs = out.split()
    ours = [m.payload.decode() for m in other.drain()]
    assert len(theirs) == 2
    assert not set(theirs) & set(ours), "a message went to two members"
    # Every message sent before mosquitto_sub's last went to exactly one member.
    last = max(int(t[1:]) for t in theirs)
    assert sorted(int(x[1:]) for x in theirs + ours if int(x[1:]) <= last) == \
        list(range(last + 1))


def test_shared_subscriptions_disabled(tmp_path, certs):
    b = Broker(tmp_path / "b", certs, {"shared_subscriptions": "false"},
               listeners=("plain",)).start()
    try:
        c = Raw5(b.ports["plain"])
        ack = c.connect5("noshare")
        assert ack.reason == 0 and ack.props.get(SHARED_SUB_AVAILABLE) == 0, ack
        assert c.subscribe(1, [("$share/g/t", 1), ("plain/t", 1)]) == [0x9E, 1]
        c.send(disconnect5())
        c.close()
    finally:
        b.stop()


def test_connack_does_not_deny_shared_subscriptions_by_default(port):
    c = Raw5(port)
    ack = c.connect5("share-default")
    assert SHARED_SUB_AVAILABLE not in ack.props
    c.close()


def test_no_local_on_a_shared_subscription_is_a_protocol_error(port):
    c = Raw5(port)
    assert c.connect5("share-nolocal").reason == 0
    c.send(subscribe5(1, [("$share/g/t", 0x04 | 1)]))
    assert c.goodbye().reason == 0x82
    c.close()


def test_retained_message_sent_on_subscribe_carries_the_subscription_identifier(paho5):
    topic = unique_topic("sidr")
    pub = paho5()
    pub.publish(topic, "kept", qos=1, retain=True)
    sub = paho5()
    sub.subscribe(topic, qos=1, properties=sub_id_props(11))
    m = sub.get()
    assert (m.payload, m.retain) == (b"kept", 1)
    assert m.properties.SubscriptionIdentifier == [11]
    pub.publish(topic, "", qos=1, retain=True)


def test_shared_subscription_carries_its_subscription_identifier(paho5):
    topic = unique_topic("share")
    member = paho5()
    member.subscribe(f"$share/ids/{topic}", qos=1, properties=sub_id_props(9))
    paho5().publish(topic, "x", qos=1)
    assert member.get().properties.SubscriptionIdentifier == [9]


def test_unsuback_says_which_filters_had_no_subscription(port):
    c = Raw5(port)
    assert c.connect5("unsub5").reason == 0
    assert c.subscribe(1, [("u/a", 1)]) == [1]
    body = (2).to_bytes(2, "big") + b"\x00" + b"".join(
        len(f).to_bytes(2, "big") + f for f in (b"u/a", b"u/never"))
    c.send(packet(0xA2, body))
    ack = c.expect(11)
    assert (ack.pid, ack.codes) == (2, [0x00, 0x11])
    c.send(disconnect5())
    c.close()


def test_shared_messages_go_to_connected_members_while_one_is_offline(paho5, port):
    topic = unique_topic("share")
    online = paho5()
    online.subscribe(f"$share/off/{topic}", qos=1)
    away = Client5("share-away")
    away.connect(port, properties=pprops(PacketTypes.CONNECT, SessionExpiryInterval=30))
    away.subscribe(f"$share/off/{topic}", qos=1)
    away.disconnect()  # its session (and membership) stays for 30 s
    pub = paho5()
    for i in range(4):
        pub.publish(topic, str(i), qos=1)
    assert sorted(int(online.get().payload) for _ in range(4)) == [0, 1, 2, 3]
    back = Client5("share-away")
    try:
        back.connect(port, clean_start=False)
        assert back.session_present
        assert back.drain() == [], "a shared message went to the offline member too"
    finally:
        back.disconnect(properties=pprops(PacketTypes.DISCONNECT, SessionExpiryInterval=0))


def test_unsubscribed_shared_member_gets_nothing_more(paho5):
    topic = unique_topic("share")
    stays, leaves = paho5(), paho5()
    stays.subscribe(f"$share/u/{topic}", qos=1)
    leaves.subscribe(f"$share/u/{topic}", qos=1)
    done = threading.Event()
    leaves.c.on_unsubscribe = lambda *a: done.set()
    leaves.c.unsubscribe(f"$share/u/{topic}")
    assert done.wait(TIMEOUT)
    pub = paho5()
    for i in range(4):
        pub.publish(topic, str(i), qos=1)
    assert sorted(int(stays.get().payload) for _ in range(4)) == [0, 1, 2, 3]
    assert leaves.drain() == []


def test_subscribing_again_replaces_the_subscription_identifier(paho5):
    topic = unique_topic("sid")
    sub = paho5()
    pub = paho5()
    sub.subscribe(topic, qos=1, properties=sub_id_props(5))
    sub.subscribe(topic, qos=1, properties=sub_id_props(6))
    pub.publish(topic, "a", qos=1)
    assert sub.get().properties.SubscriptionIdentifier == [6]
    sub.subscribe(topic, qos=1)
    pub.publish(topic, "b", qos=1)
    m = sub.get()
    assert m.payload == b"b"
    assert not hasattr(m.properties, "SubscriptionIdentifier")
    assert sub.drain() == []

