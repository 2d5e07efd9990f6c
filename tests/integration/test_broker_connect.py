# CONNECT handling over plain TCP, checked on the wire: CONNACK bytes, the
# zero-length ClientId rules, protocol level, ClientId takeover, PING and
# DISCONNECT (MQTT 3.1.1 sections 3.1, 3.2, 3.12-3.14).
from conftest import (CONNACK_OK, DISCONNECT, PINGREQ, QUIET, RawClient, raw_connected,
                      unique_topic)

BROKER_LISTENERS = ("plain",)


def test_connect_gets_connack_accepted(broker, raws):
    c = raws(broker.ports["plain"])
    assert c.connect("connect-ok") == CONNACK_OK


def test_connect_with_username_and_password_accepted_when_anonymous_allowed(broker, raws):
    c = raws(broker.ports["plain"])
    assert c.connect("connect-user", username="someone", password=b"secret") == CONNACK_OK


def test_pingreq_gets_pingresp(broker, raws):
    c = raws(broker.ports["plain"])
    assert c.connect("connect-ping") == CONNACK_OK
    c.send(PINGREQ)
    assert c.recv_packet() == b"\xd0\x00"


def test_zero_length_client_id_with_clean_session_is_accepted(broker, raws):
    c = raws(broker.ports["plain"])
    assert c.connect("", clean=True) == CONNACK_OK
    c.send(PINGREQ)
    assert c.recv_packet() == b"\xd0\x00"


def test_zero_length_client_id_without_clean_session_is_refused_with_rc2(broker, raws):
    c = raws(broker.ports["plain"])
    assert c.connect("", clean=False) == b"\x20\x02\x00\x02"
    assert c.is_closed(), "connection stays open after CONNACK 2"


def test_two_zero_length_client_ids_get_distinct_sessions(broker, raws):
    # Each gets a server-assigned id: the second must not take over the first.
    a = raws(broker.ports["plain"])
    b = raws(broker.ports["plain"])
    assert a.connect("") == CONNACK_OK
    assert b.connect("") == CONNACK_OK
    assert not a.is_closed(QUIET)
    a.send(PINGREQ)
    assert a.recv_packet() == b"\xd0\x00"


def test_unsupported_protocol_level_gets_connack_rc1(broker, raws):
    c = raws(broker.ports["plain"])
    c.send(b"\x10\x0e\x00\x04MQTT\x07\x02\x00\x3c\x00\x02id")
    assert c.recv_packet() == b"\x20\x02\x00\x01"
    assert c.is_closed()


def test_client_id_takeover_closes_first_connection(broker, raws):
    first = raw_connected(broker.ports["plain"], "takeover-raw")
    second = raws(broker.ports["plain"])
    try:
        assert second.connect("takeover-raw") == CONNACK_OK
        assert first.is_closed(), "first connection still open after takeover"
        second.send(PINGREQ)
        assert second.recv_packet() == b"\xd0\x00"
    finally:
        first.close()


def test_client_id_takeover_keeps_second_connection_working(broker, clients):
    topic = unique_topic("takeover")
    first = clients("takeover-paho")
    first.connect(broker.ports["plain"])
    second = clients("takeover-paho")
    second.connect(broker.ports["plain"])
    assert first.disconnected.wait(10), "first client was not disconnected"
    assert second.subscribe(topic, 1) == (1,)
    second.publish(topic, b"after takeover", 1)
    assert second.get_on(topic).payload == b"after takeover"
    assert not second.disconnected.is_set()


def test_disconnect_makes_server_close_connection(broker, raws):
    c = raws(broker.ports["plain"])
    assert c.connect("connect-bye") == CONNACK_OK
    c.send(DISCONNECT)
    assert c.is_closed(), "server kept the connection after DISCONNECT"


def test_many_sequential_connections_are_served(broker):
    for i in range(20):
        c = RawClient(broker.ports["plain"])
        try:
            assert c.connect(f"seq-{i}") == CONNACK_OK
            c.send(DISCONNECT)
        finally:
            c.close()
