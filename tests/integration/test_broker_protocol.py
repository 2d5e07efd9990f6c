# Protocol violations end the connection (MQTT 3.1.1 4.8: the server closes
# the network connection on a malformed packet), and keepalive: a silent
# client is dropped after 1.5 x its keepalive, a pinging one is not.
import time

import pytest

from conftest import (CONNACK_OK, PINGREQ, connect_packet, mqtt_str, packet, publish_packet,
                      subscribe_packet, unique_topic)

BROKER_LISTENERS = ("plain",)


def closed_after(broker, raws, data, connect_first=True):
    c = raws(broker.ports["plain"])
    if connect_first:
        assert c.connect("proto-" + unique_topic("c").replace("/", "-")) == CONNACK_OK
    c.send(data)
    return c.is_closed()


def test_first_packet_not_connect_is_closed(broker, raws):
    assert closed_after(broker, raws, PINGREQ, connect_first=False)


def test_publish_before_connect_is_closed(broker, raws, clients):
    topic = unique_topic("early")
    sub = clients("early-sub")
    sub.connect(broker.ports["plain"])
    sub.subscribe(topic, 0)
    assert closed_after(broker, raws, publish_packet(topic, b"sneaky"), connect_first=False)
    assert [m for m in sub.drain() if m.topic == topic] == []


def test_subscribe_before_connect_is_closed(broker, raws):
    assert closed_after(broker, raws, subscribe_packet(1, [("a", 0)]), connect_first=False)


def test_connect_with_reserved_flag_is_closed(broker, raws):
    c = raws(broker.ports["plain"])
    c.send(connect_packet("reserved-flag", extra_flags=0x01))
    assert c.is_closed()
    assert not c.buf.startswith(CONNACK_OK), "a malformed CONNECT was accepted"


def test_connect_with_bad_fixed_header_flags_is_closed(broker, raws):
    c = raws(broker.ports["plain"])
    good = connect_packet("bad-header")
    c.send(bytes([0x11]) + good[1:])
    assert c.is_closed()
    assert not c.buf.startswith(CONNACK_OK)


def test_connect_with_wrong_protocol_name_is_closed(broker, raws):
    c = raws(broker.ports["plain"])
    c.send(connect_packet("bad-name", proto=b"MQTX"))
    assert c.is_closed()
    assert not c.buf.startswith(CONNACK_OK)


def test_connect_with_password_but_no_username_is_closed(broker, raws):
    c = raws(broker.ports["plain"])
    body = mqtt_str("MQTT") + bytes([4, 0x42]) + (60).to_bytes(2, "big")
    body += mqtt_str("pw-no-user") + mqtt_str(b"secret")
    c.send(packet(0x10, body))
    assert c.is_closed()
    assert not c.buf.startswith(CONNACK_OK)


def test_connect_with_will_qos_but_no_will_flag_is_closed(broker, raws):
    c = raws(broker.ports["plain"])
    c.send(connect_packet("will-qos-no-flag", extra_flags=0x08))
    assert c.is_closed()
    assert not c.buf.startswith(CONNACK_OK)


def test_truncated_connect_body_is_closed(broker, raws):
    c = raws(broker.ports["plain"])
    # Remaining length says 12, the client id length field claims 200 bytes.
    c.send(b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\xc8")
    assert c.is_closed()
    assert not c.buf.startswith(CONNACK_OK)


def test_second_connect_is_closed(broker, raws):
    assert closed_after(broker, raws, connect_packet("second-connect"))


def test_subscribe_with_wrong_fixed_header_flags_is_closed(broker, raws):
    assert closed_after(broker, raws, subscribe_packet(1, [("a/b", 0)], first_byte=0x80))


def test_unsubscribe_with_wrong_fixed_header_flags_is_closed(broker, raws):
    assert closed_after(broker, raws, packet(0xA0, b"\x00\x01" + mqtt_str("a")))


def test_subscribe_without_topics_is_closed(broker, raws):
    assert closed_after(broker, raws, packet(0x82, b"\x00\x01"))


def test_subscribe_with_invalid_requested_qos_is_closed(broker, raws):
    assert closed_after(broker, raws, subscribe_packet(1, [("a/b", 3)]))


def test_publish_with_qos3_is_closed(broker, raws):
    assert closed_after(broker, raws, packet(0x36, mqtt_str("a/b") + b"\x00\x01x"))


def test_publish_to_wildcard_topic_is_closed(broker, raws, clients):
    sub = clients("wild-pub-sub")
    sub.connect(broker.ports["plain"])
    sub.subscribe("#", 0)
    assert closed_after(broker, raws, publish_packet("a/+/b", b"bad"))
    assert [m for m in sub.drain() if m.topic == "a/+/b"] == []


def test_publish_qos1_with_packet_id_zero_is_closed(broker, raws):
    assert closed_after(broker, raws, publish_packet("a/b", b"x", qos=1, pid=0))


def test_reserved_packet_type_is_closed(broker, raws):
    assert closed_after(broker, raws, b"\xf0\x00")


def test_remaining_length_over_four_bytes_is_closed(broker, raws):
    assert closed_after(broker, raws, b"\x30\xff\xff\xff\xff\x7f")


def test_invalid_utf8_topic_is_closed(broker, raws):
    assert closed_after(broker, raws, packet(0x30, mqtt_str(b"a/\xff\xfe") + b"x"))


def test_topic_with_nul_character_is_closed(broker, raws):
    assert closed_after(broker, raws, packet(0x30, mqtt_str(b"a/\x00b") + b"x"))


def test_broker_keeps_serving_after_violations(broker, raws):
    c = raws(broker.ports["plain"])
    assert c.connect("after-violations") == CONNACK_OK
    c.send(PINGREQ)
    assert c.recv_packet() == b"\xd0\x00"


@pytest.mark.certmq_only
def test_silent_client_is_dropped_after_one_and_a_half_keepalives(broker, raws):
    """keepalive=1: closed after ~1.5 s. (mosquitto 2.0.11 checks keepalive in
    coarse steps and closes after ~4.6 s, hence certmq only.)"""
    c = raws(broker.ports["plain"])
    assert c.connect("keepalive-silent", keepalive=1) == CONNACK_OK
    t0 = time.monotonic()
    assert c.is_closed(4.0), "still open 4 s after CONNECT with keepalive 1"
    elapsed = time.monotonic() - t0
    assert elapsed >= 1.0, f"closed after {elapsed:.2f} s, before the keepalive ran out"


def test_pinging_client_outlives_its_keepalive(broker, raws):
    c = raws(broker.ports["plain"])
    assert c.connect("keepalive-pinging", keepalive=1) == CONNACK_OK
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline:
        c.send(PINGREQ)
        assert c.recv_packet() == b"\xd0\x00"
        time.sleep(0.4)
    c.send(PINGREQ)
    assert c.recv_packet() == b"\xd0\x00"


def test_keepalive_zero_disables_the_timeout(broker, raws):
    c = raws(broker.ports["plain"])
    assert c.connect("keepalive-zero", keepalive=0) == CONNACK_OK
    assert not c.is_closed(2.0)
    c.send(PINGREQ)
    assert c.recv_packet() == b"\xd0\x00"

