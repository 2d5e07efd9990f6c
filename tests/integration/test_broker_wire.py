# MQTT 3.1.1 at the byte level, where the spec leaves a server a choice and
# certmq does what mosquitto's own broker cases expect: a CONNECT that is not
# MQTT (unknown protocol name) is closed without a CONNACK, a known name with
# another level gets CONNACK 1 then the close; control characters in
# ClientId, user name, will topic, topic names and filters close the
# connection; an acknowledgement from the wrong QoS flow closes it; an
# unsolicited PUBREC is answered with PUBREL; 3.1 (MQIsdp) keeps its rules.
# The module passes against mosquitto 2.0.11 as well.
import pytest

from conftest import (CONNACK_OK, PINGREQ, QUIET, connect_packet, publish_packet, raw_connected,
                      subscribe_packet, unique_topic, unsubscribe_packet)

BROKER_LISTENERS = ("plain",)

# One of each range edge: U+0001, U+001F, U+007F, U+0080, U+009F.
CONTROLS = [b"\x01", b"\x1f", b"\x7f", b"\xc2\x80", b"\xc2\x9f"]


def client_id(prefix):
    return unique_topic(prefix).replace("/", "-")


def closed_silently(c):
    """The server closed the connection without sending a byte."""
    assert c.is_closed(), "connection still open"
    assert c.buf == b"", f"server answered {c.buf!r} before closing"


def still_open(c):
    c.send(PINGREQ)
    assert c.recv_packet() == b"\xd0\x00"


# ---------------------------------------------------------------- CONNECT


@pytest.mark.parametrize("name", [b"MQTU", b"MQT", b"", b"MQTTT", b"mqtt"])
def test_unknown_protocol_name_is_closed_without_connack(broker, raws, name):
    c = raws(broker.ports["plain"])
    c.send(connect_packet(client_id("name"), proto=name))
    closed_silently(c)


@pytest.mark.parametrize("proto,level", [(b"MQTT", 2), (b"MQTT", 3), (b"MQTT", 6),
                                         (b"MQIsdp", 2), (b"MQIsdp", 4)])
def test_known_name_with_other_level_gets_connack_1_then_close(broker, raws, proto, level):
    c = raws(broker.ports["plain"])
    c.send(connect_packet(client_id("level"), proto=proto, level=level, clean=False))
    assert c.recv_packet() == b"\x20\x02\x00\x01"
    assert c.is_closed(), "connection stays open after CONNACK 1"


@pytest.mark.parametrize("field", ["client id", "user name", "will topic"])
@pytest.mark.parametrize("ctl", CONTROLS)
def test_control_character_in_connect_string_is_closed(broker, raws, field, ctl):
    text = b"a" + ctl + b"b"
    kw = {"client id": {"client_id": text},
          "user name": {"client_id": client_id("ctl"), "username": text},
          "will topic": {"client_id": client_id("ctl"), "will": (text, b"w", 0, False)}}[field]
    c = raws(broker.ports["plain"])
    c.send(connect_packet(**kw))
    closed_silently(c)


def test_binary_connect_fields_may_hold_control_characters(broker, raws):
    """The password and the will message are binary data, not strings."""
    c = raws(broker.ports["plain"])
    assert c.connect(client_id("bin"), username="u", password=b"\x01\x1f\x7f\xc2\x9f",
                     will=("will/t", b"\x00\x01\x7f", 1, False)) == CONNACK_OK
    still_open(c)


def test_neighbours_of_the_control_ranges_are_accepted(broker, raws):
    c = raws(broker.ports["plain"])
    cid = client_id("edge").encode() + b" ~\xc2\xa0"  # U+0020, U+007E, U+00A0
    assert c.connect(cid) == CONNACK_OK
    still_open(c)


def test_v31_empty_client_id_gets_connack_2(broker, raws):
    """3.1 requires 1-23 characters; the empty ClientId is 3.1.1's."""
    c = raws(broker.ports["plain"])
    c.send(connect_packet("", proto=b"MQIsdp", level=3, clean=True))
    assert c.recv_packet() == b"\x20\x02\x00\x02"
    assert c.is_closed()


def test_v31_connect_with_unused_bits_is_accepted(broker, raws):
    """3.1 left the reserved CONNECT flag and the fixed header's low bits
    unused rather than zero (3.1.1 made them zero: see test_broker_protocol)."""
    c = raws(broker.ports["plain"])
    good = connect_packet(client_id("v31"), proto=b"MQIsdp", level=3, extra_flags=0x01)
    c.send(bytes([0x14]) + good[1:])
    assert c.recv_packet() == CONNACK_OK
    still_open(c)


def test_v31_connack_never_sets_session_present(broker, raws):
    """The session-present flag is 3.1.1's; 3.1 reserves that byte."""
    cid = client_id("v31-persist")
    for expect in (CONNACK_OK, CONNACK_OK):
        c = raws(broker.ports["plain"])
        assert c.connect(cid, proto=b"MQIsdp", level=3, clean=False) == expect
        c.close()
    c = raws(broker.ports["plain"])
    assert c.connect(cid, clean=False) == b"\x20\x02\x01\x00", "3.1.1 resumes the same session"


# ---------------------------------------------------------------- topics


@pytest.mark.parametrize("ctl", CONTROLS)
def test_control_character_in_topic_name_is_closed_and_not_delivered(broker, raws, clients,
                                                                      ctl):
    sub = clients(client_id("ctl-sub"))
    sub.connect(broker.ports["plain"])
    sub.subscribe("ctl/#", 0)
    c = raw_connected(broker.ports["plain"], client_id("ctl-pub"))
    c.send(publish_packet(b"ctl/a" + ctl + b"b", b"x"))
    closed_silently(c)
    assert sub.drain() == []


@pytest.mark.parametrize("ctl", CONTROLS)
def test_control_character_in_subscribe_filter_is_closed(broker, raws, ctl):
    c = raw_connected(broker.ports["plain"], client_id("ctl-subscribe"))
    c.send(subscribe_packet(1, [(b"a" + ctl + b"/#", 0)]))
    closed_silently(c)


@pytest.mark.parametrize("ctl", CONTROLS)
def test_control_character_in_unsubscribe_filter_is_closed(broker, raws, ctl):
    c = raw_connected(broker.ports["plain"], client_id("ctl-unsub"))
    c.send(unsubscribe_packet(1, [b"a" + ctl]))
    closed_silently(c)


def test_four_byte_character_in_topic_is_accepted(broker, raws):
    c = raw_connected(broker.ports["plain"], client_id("u2a6d4"))
    c.send(publish_packet(b"A\xf0\xaa\x9b\x94", b"x", qos=1, pid=5))
    assert c.recv_packet() == b"\x40\x02\x00\x05"


# ---------------------------------------------------------------- acknowledgements


@pytest.fixture
def receiver(broker, raws, clients):
    """Returns deliver(qos): a raw subscriber on a fresh topic that has just
    received one PUBLISH at qos (packet id 1), published by a paho client."""
    def deliver(qos, will=None):
        topic = unique_topic("flow")
        c = raw_connected(broker.ports["plain"], client_id("flow"), will=will)
        c.send(subscribe_packet(1, [(topic, qos)]))
        assert c.recv_packet() == bytes([0x90, 3, 0, 1, qos])
        pub = clients(client_id("flow-pub"))
        pub.connect(broker.ports["plain"])
        pub.publish(topic, b"m", qos)
        got = c.recv_packet()
        assert got == publish_packet(topic, b"m", qos=qos, pid=1), got
        c.topic = topic
        return c
    return deliver


@pytest.mark.parametrize("qos,ack", [(1, b"\x50"), (1, b"\x70"), (2, b"\x40"), (2, b"\x70")],
                         ids=["qos1-pubrec", "qos1-pubcomp", "qos2-puback", "qos2-pubcomp"])
def test_ack_from_the_other_qos_flow_is_closed(receiver, qos, ack):
    c = receiver(qos)
    c.send(ack + b"\x02\x00\x01")
    closed_silently(c)


def test_puback_after_pubrel_is_closed(receiver):
    c = receiver(2)
    c.send(b"\x50\x02\x00\x01")
    assert c.recv_packet() == b"\x62\x02\x00\x01"
    c.send(b"\x40\x02\x00\x01")
    closed_silently(c)


def test_repeated_pubrec_gets_pubrel_again(receiver):
    c = receiver(2)
    for _ in range(2):
        c.send(b"\x50\x02\x00\x01")
        assert c.recv_packet() == b"\x62\x02\x00\x01"
    c.send(b"\x70\x02\x00\x01")
    still_open(c)


def test_protocol_error_in_ack_publishes_the_will(receiver, clients, broker):
    """A close for a protocol error is not a DISCONNECT: the will goes out."""
    will_topic = unique_topic("flow-will")
    watcher = clients(client_id("flow-watch"))
    watcher.connect(broker.ports["plain"])
    watcher.subscribe(will_topic, 1)
    c = receiver(1, will=(will_topic, b"gone", 1, False))
    c.send(b"\x50\x02\x00\x01")
    closed_silently(c)
    assert watcher.get_on(will_topic).payload == b"gone"


def test_unsolicited_pubrec_is_answered_with_pubrel(broker, raws):
    c = raw_connected(broker.ports["plain"], client_id("unsol-rec"))
    c.send(b"\x50\x02\x00\x01")
    assert c.recv_packet() == b"\x62\x02\x00\x01"
    still_open(c)


@pytest.mark.parametrize("ack", [b"\x40", b"\x70"], ids=["puback", "pubcomp"])
def test_unsolicited_puback_or_pubcomp_is_ignored(broker, raws, ack):
    c = raw_connected(broker.ports["plain"], client_id("unsol"))
    c.send(ack + b"\x02\x00\x01")
    assert not c.is_closed(QUIET)
    still_open(c)
    assert c.buf == b""
