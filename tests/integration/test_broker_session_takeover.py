# Session state across a takeover and for MQTT 3.1 clients: a clean session
# never survives its connection, even when a persistent CONNECT takes it over
# (MQTT-3.1.2-6); 3.1 clients get no session-present bit and must send a
# ClientId.
from conftest import (DISCONNECT, RawClient, publish_packet, raw_connected, subscribe_packet,
                      unique_topic)

BROKER_LISTENERS = ("plain",)


def cid():
    return "take-" + unique_topic("id").replace("/", "-")


def test_persistent_connect_taking_over_a_clean_session_starts_fresh(broker):
    client_id, topic = cid(), unique_topic("takeover")
    clean = raw_connected(broker.ports["plain"], client_id, clean=True)
    clean.send(subscribe_packet(1, [(topic, 1)]))
    assert clean.recv_packet() == b"\x90\x03\x00\x01\x01"

    durable = RawClient(broker.ports["plain"])
    # Session present 0: the clean session ended with its connection.
    assert durable.connect(client_id, clean=False) == b"\x20\x02\x00\x00"
    assert clean.is_closed()
    # ...and its subscription is gone with it.
    pub = raw_connected(broker.ports["plain"], cid())
    pub.send(publish_packet(topic, "after takeover", qos=1, pid=7))
    assert pub.recv_packet() == b"\x40\x02\x00\x07"
    assert not durable.is_closed(0.7)
    assert durable.buf == b"", durable.buf
    for c in (durable, pub):
        c.send(DISCONNECT)
        c.close()


def test_persistent_session_taken_over_by_persistent_connect_continues(broker):
    client_id = cid()
    first = raw_connected(broker.ports["plain"], client_id, clean=False)
    second = RawClient(broker.ports["plain"])
    assert second.connect(client_id, clean=False) == b"\x20\x02\x01\x00"
    assert first.is_closed()
    second.send(DISCONNECT)
    second.close()


def test_mqtt31_connack_has_no_session_present_bit(broker):
    client_id = cid()
    for _ in range(2):
        c = RawClient(broker.ports["plain"])
        assert c.connect(client_id, clean=False, level=3, proto=b"MQIsdp") == b"\x20\x02\x00\x00"
        c.send(DISCONNECT)
        c.close()
    # The same ClientId over 3.1.1 shows the session was kept all along.
    c = RawClient(broker.ports["plain"])
    assert c.connect(client_id, clean=False) == b"\x20\x02\x01\x00"
    c.send(DISCONNECT)
    c.close()


def test_mqtt31_empty_client_id_is_rejected(broker):
    c = RawClient(broker.ports["plain"])
    assert c.connect("", clean=True, level=3, proto=b"MQIsdp") == b"\x20\x02\x00\x02"
    assert c.is_closed()


def test_mqtt311_empty_client_id_with_clean_session_is_accepted(broker):
    c = RawClient(broker.ports["plain"])
    assert c.connect("", clean=True) == b"\x20\x02\x00\x00"
    c.send(DISCONNECT)
    c.close()
