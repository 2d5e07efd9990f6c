# Limits from the config file: max_packet_size (an oversize packet closes the
# connection and is not delivered), max_connections (the connection over the
# limit is refused, a freed slot is usable again), max_queued (an offline
# session's queue is bounded, later messages are dropped), and the connect and
# TLS handshake timeouts that drop idle sockets.
import time

import pytest

from conftest import (CONNACK_OK, DISCONNECT, PINGREQ, TIMEOUT, RawClient, publish_packet,
                      raw_connected, subscribe_packet, unique_topic)

BROKER_OPTIONS = {
    "max_packet_size": "1024",
    "max_connections": "5",
    "max_inflight": "5",
    "max_queued": "10",
    "connect_timeout": "2",
    "handshake_timeout": "2",
}
BROKER_LISTENERS = ("plain", "tls")


def connect_retrying(port, client_id):
    """A connected RawClient; retries while slots held by earlier tests'
    just-closed connections are being released."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        c = None
        try:
            c = RawClient(port)
            if c.connect(client_id) == CONNACK_OK:
                return c
        except (OSError, EOFError, TimeoutError):
            pass
        if c is not None:
            c.close()
        assert time.monotonic() < deadline, f"{client_id}: no free connection slot"
        time.sleep(0.1)


def connect_outcome(port, client_id):
    try:
        c = RawClient(port)
    except OSError:
        return "refused", None
    try:
        c.send(b"\x10\x0f\x00\x04MQTT\x04\x02\x00\x3c\x00\x03" + client_id.encode()[:3])
        return c.recv_packet(), c
    except (OSError, EOFError):
        return "closed", c


@pytest.fixture
def sub_and_pub(broker):
    """Raw subscriber and publisher on the plain listener (2 of the 5 slots)."""
    topic = unique_topic("size")
    sub = connect_retrying(broker.ports["plain"], "size-sub")
    sub.send(b"\x82" + bytes([5 + len(topic)]) + b"\x00\x01" + len(topic).to_bytes(2, "big")
             + topic.encode() + b"\x00")
    assert sub.recv_packet() == b"\x90\x03\x00\x01\x00"
    pub = connect_retrying(broker.ports["plain"], "size-pub")
    yield topic, sub, pub
    sub.close()
    pub.close()


def received_publish_payloads(sub, topic, until):
    """Payloads of QoS 0 PUBLISHes on topic received before one equal to until."""
    got = []
    while True:
        pkt = sub.recv_packet()
        assert pkt[0] & 0xF0 == 0x30
        i = 1
        while pkt[i] & 0x80:
            i += 1
        body = pkt[i + 1:]
        tlen = int.from_bytes(body[:2], "big")
        assert body[2:2 + tlen].decode() == topic
        payload = body[2 + tlen:]
        if payload == until:
            return got
        got.append(payload)


def test_publish_below_max_packet_size_is_delivered(sub_and_pub):
    topic, sub, pub = sub_and_pub
    payload = b"p" * 512
    pub.send(publish_packet(topic, payload))
    pub.send(publish_packet(topic, b"end"))
    assert received_publish_payloads(sub, topic, b"end") == [payload]


def test_publish_over_max_packet_size_closes_connection_and_is_dropped(broker, sub_and_pub):
    topic, sub, pub = sub_and_pub
    try:
        pub.send(publish_packet(topic, b"x" * 2048))
    except OSError:
        pass  # the broker may close before reading it all
    assert pub.is_closed(), "oversize PUBLISH did not close the connection"
    other = connect_retrying(broker.ports["plain"], "size-pub2")
    try:
        other.send(publish_packet(topic, b"end"))
        assert received_publish_payloads(sub, topic, b"end") == []
    finally:
        other.close()


def test_packet_exactly_at_max_packet_size_is_accepted(sub_and_pub):
    topic, sub, pub = sub_and_pub
    # 1 byte type, 2 bytes remaining length (1021), 2 + len(topic) topic.
    payload = b"e" * (1024 - 3 - 2 - len(topic))
    pkt = publish_packet(topic, payload)
    assert len(pkt) == 1024
    pub.send(pkt)
    pub.send(publish_packet(topic, b"end"))
    assert received_publish_payloads(sub, topic, b"end") == [payload]


@pytest.mark.certmq_only
def test_connection_over_max_connections_is_refused(broker):
    """(mosquitto 2.0.11 miscounts sockets closed before CONNECT, such as the
    fixture's readiness probes, so it cannot be checked against it.)"""
    port = broker.ports["plain"]
    held = []
    try:
        for i in range(5):
            held.append(connect_retrying(port, f"slot-{i}"))
        outcome, sixth = connect_outcome(port, "six")
        if sixth is not None:
            closed = outcome == "closed" or sixth.is_closed()
            sixth.close()
        else:
            closed = True
        assert outcome != CONNACK_OK, "6th connection accepted with max_connections 5"
        assert closed, f"6th connection left open (outcome {outcome!r})"
        # Refused at accept, before any MQTT: no CONNACK, but a log line says
        # why (a close for another reason, or a crash, would not write it).
        assert outcome in ("refused", "closed"), f"6th connection got {outcome!r}"
        assert "max_connections (5) reached: connection refused" in broker.stderr()
        for c in held:
            c.send(PINGREQ)
            assert c.recv_packet() == b"\xd0\x00"
        held.pop().close()
        held.append(connect_retrying(port, "slot-again"))
    finally:
        for c in held:
            c.close()


def test_offline_session_queue_is_bounded_by_max_queued(broker):
    port = broker.ports["plain"]
    cid, topic = "queue-" + unique_topic("q").replace("/", "-"), unique_topic("queued")
    dev = connect_retrying(port, cid)
    dev.close()
    dev = raw_connected(port, cid, clean=False)
    dev.send(subscribe_packet(1, [(topic, 1)]))
    assert dev.recv_packet() == b"\x90\x03\x00\x01\x01"
    dev.send(DISCONNECT)
    dev.close()

    pub = connect_retrying(port, "queue-pub")
    try:
        for i in range(30):
            pub.send(publish_packet(topic, f"m{i}", qos=1, pid=i + 1))
            assert pub.recv_packet() == b"\x40\x02" + (i + 1).to_bytes(2, "big")
    finally:
        pub.close()

    back = RawClient(port)
    got = []
    try:
        assert back.connect(cid, clean=False) == b"\x20\x02\x01\x00"
        while True:
            try:
                pkt = back.recv_packet(timeout=1.0)
            except TimeoutError:
                break
            assert pkt[0] & 0xF0 == 0x30
            body = pkt[2:]
            tlen = int.from_bytes(body[:2], "big")
            got.append(body[4 + tlen:].decode())
            back.send(b"\x40\x02" + body[2 + tlen:4 + tlen])
    finally:
        back.close()
    # max_queued 10 (+ up to max_inflight 5 already in flight): the oldest
    # messages are kept in order, the overflow is dropped.
    assert 10 <= len(got) <= 15, got
    assert got == [f"m{i}" for i in range(len(got))]


@pytest.mark.certmq_only
def test_socket_that_never_sends_connect_is_closed_after_connect_timeout(broker, raws):
    c = raws(broker.ports["plain"])
    t0 = time.monotonic()
    assert c.is_closed(6), "idle socket without CONNECT kept open past connect_timeout 2"
    assert time.monotonic() - t0 >= 1.0


@pytest.mark.certmq_only
def test_tls_socket_that_never_handshakes_is_closed_after_handshake_timeout(broker, raws):
    c = raws(broker.ports["tls"])
    t0 = time.monotonic()
    assert c.is_closed(6), "idle socket on TLS listener kept open past handshake_timeout 2"
    assert time.monotonic() - t0 >= 1.0
