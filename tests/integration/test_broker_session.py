# Sessions (MQTT 3.1.1 3.1.2.4, 3.2.2.2, 4.4): clean_session=0 keeps
# subscriptions and queues QoS 1/2 messages while the client is away, with
# session-present 1 on return; clean_session=1 starts and ends fresh; an
# unacknowledged QoS 1 message is sent again with DUP on reconnect.
import pytest

from conftest import (CONNACK_OK, DISCONNECT, RawClient, raw_connected, subscribe_packet,
                      unique_topic)

BROKER_LISTENERS = ("plain",)


def session_id():
    return "sess-" + unique_topic("id").replace("/", "-")


def connack(broker, client_id, clean):
    """Opens, CONNECTs, DISCONNECTs; returns the CONNACK bytes."""
    c = RawClient(broker.ports["plain"])
    try:
        ack = c.connect(client_id, clean=clean)
        c.send(DISCONNECT)
        c.is_closed(2)
        return ack
    finally:
        c.close()


def test_clean_session_connack_has_session_present_0(broker):
    assert connack(broker, session_id(), clean=True) == b"\x20\x02\x00\x00"


def test_persistent_session_has_session_present_1_on_return(broker):
    cid = session_id()
    assert connack(broker, cid, clean=False) == b"\x20\x02\x00\x00"
    assert connack(broker, cid, clean=False) == b"\x20\x02\x01\x00"


def test_clean_session_discards_persistent_session(broker):
    cid = session_id()
    assert connack(broker, cid, clean=False) == b"\x20\x02\x00\x00"
    assert connack(broker, cid, clean=True) == b"\x20\x02\x00\x00"
    assert connack(broker, cid, clean=False) == b"\x20\x02\x00\x00"


@pytest.mark.parametrize("qos", [1, 2])
def test_persistent_session_receives_messages_published_while_offline(broker, clients, qos):
    cid, topic = session_id(), unique_topic("offline")
    dev = clients(cid, clean_session=False)
    dev.connect(broker.ports["plain"])
    assert dev.session_present == 0
    dev.subscribe(topic, qos)
    dev.disconnect()

    pub = clients("offline-pub")
    pub.connect(broker.ports["plain"])
    for i in range(3):
        pub.publish(topic, f"m{i}".encode(), qos)

    back = clients(cid, clean_session=False)
    back.connect(broker.ports["plain"])
    assert back.session_present == 1
    got = [back.get_on(topic) for _ in range(3)]
    assert [m.payload for m in got] == [b"m0", b"m1", b"m2"]
    assert all(m.qos == qos for m in got)


def test_persistent_subscription_survives_reconnect(broker, clients):
    cid, topic = session_id(), unique_topic("kept-sub")
    dev = clients(cid, clean_session=False)
    dev.connect(broker.ports["plain"])
    dev.subscribe(topic, 1)
    dev.disconnect()
    back = clients(cid, clean_session=False)
    back.connect(broker.ports["plain"])
    assert back.session_present == 1
    pub = clients("kept-sub-pub")
    pub.connect(broker.ports["plain"])
    pub.publish(topic, b"live after reconnect", 1)
    assert back.get_on(topic).payload == b"live after reconnect"


def test_clean_session_receives_nothing_published_while_offline(broker, clients):
    cid, topic = session_id(), unique_topic("clean-offline")
    dev = clients(cid, clean_session=True)
    dev.connect(broker.ports["plain"])
    dev.subscribe(topic, 1)
    dev.disconnect()
    pub = clients("clean-offline-pub")
    pub.connect(broker.ports["plain"])
    pub.publish(topic, b"lost", 1)
    back = clients(cid, clean_session=True)
    back.connect(broker.ports["plain"])
    assert back.session_present == 0
    assert [m for m in back.drain() if m.topic == topic] == []


def test_unacknowledged_qos1_message_is_resent_with_dup_on_reconnect(broker, clients):
    cid, topic = session_id(), unique_topic("redeliver")
    c = raw_connected(broker.ports["plain"], cid, clean=False)
    try:
        c.send(subscribe_packet(1, [(topic, 1)]))
        assert c.recv_packet() == b"\x90\x03\x00\x01\x01"
        pub = clients("redeliver-pub")
        pub.connect(broker.ports["plain"])
        pub.publish(topic, b"ack me", 1)
        first = c.recv_packet()
        assert first[0] == 0x32  # PUBLISH QoS 1, DUP 0
    finally:
        c.abort()  # no PUBACK, no DISCONNECT
    again = RawClient(broker.ports["plain"])
    try:
        assert again.connect(cid, clean=False) == b"\x20\x02\x01\x00"
        resent = again.recv_packet()
        assert resent[0] == 0x3A, f"want PUBLISH QoS 1 with DUP, got {resent[:1]!r}"
        assert resent[1:] == first[1:], "resent PUBLISH differs (topic, packet id, payload)"
        pid = resent[4 + len(topic):6 + len(topic)]
        again.send(b"\x40\x02" + pid)
        again.send(DISCONNECT)
    finally:
        again.close()


def test_takeover_of_persistent_session_reports_session_present(broker, raws):
    cid = session_id()
    first = raws(broker.ports["plain"])
    assert first.connect(cid, clean=False) == CONNACK_OK
    second = raws(broker.ports["plain"])
    assert second.connect(cid, clean=False) == b"\x20\x02\x01\x00"
    assert first.is_closed()
