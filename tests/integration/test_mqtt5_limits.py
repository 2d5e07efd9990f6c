# MQTT 5.0 limits and protocol errors on the wire (issue #8 items 1-2): what
# the broker answers a client that breaks them, byte for byte, with
# hand-made 5.0 packets (libraries refuse to send these): Receive Maximum
# exceeded (0x93), a topic alias beyond the maximum (0x94) or its memory
# budget (0x97), malformed or misplaced properties and subscription options
# (0x81, 0x82), AUTH (0x8C), a CONNECT naming an Authentication Method
# (CONNACK 0x8C), a packet above max_packet_size (0x95). After each, the
# broker still serves others.
import pytest

from conftest import packet, unique_topic
from mqtt5 import (AUTH_METHOD, CONTENT_TYPE, MAXIMUM_PACKET_SIZE, RECEIVE_MAXIMUM,
                   RESPONSE_TOPIC, SESSION_EXPIRY, SUBSCRIPTION_ID, TOPIC_ALIAS,
                   TOPIC_ALIAS_MAXIMUM, USER_PROPERTY, Raw5, ack5, connect5, disconnect5,
                   props, publish5, raw5_connected, subscribe5)

BROKER_OPTIONS = {"max_receive": "3", "max_topic_alias": "4", "max_packet_size": "2048",
                  "max_subscription_bytes": "1024"}
BROKER_LISTENERS = ("plain",)


@pytest.fixture
def port(broker):
    return broker.ports["plain"]


@pytest.fixture
def raw(port):
    made = []

    def make(client_id, properties=b"\x00", **kw):
        c = raw5_connected(port, client_id, properties, **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()
    # Whatever the test did, the broker still accepts and serves a client.
    ok = raw5_connected(port, "after")
    ok.send(b"\xc0\x00")
    assert ok.expect(13)
    ok.close()


def test_connack_announces_receive_maximum_topic_alias_maximum_and_packet_size(port):
    c = Raw5(port)
    ack = c.connect5("limits")
    assert ack.props[RECEIVE_MAXIMUM] == 3
    assert ack.props[TOPIC_ALIAS_MAXIMUM] == 4
    assert ack.props[MAXIMUM_PACKET_SIZE] == 2048
    c.close()


def test_qos2_within_receive_maximum_is_fine(raw):
    c = raw("rm-ok")
    topic = unique_topic("rm")
    for pid in (1, 2, 3):
        c.send(publish5(topic, "x", qos=2, pid=pid))
        assert c.expect(5).pid == pid
    for pid in (1, 2, 3):
        c.send(ack5(6, pid))
        assert c.expect(7).pid == pid
    # Released: three more may be sent.
    for pid in (4, 5, 6):
        c.send(publish5(topic, "x", qos=2, pid=pid))
        assert c.expect(5).reason == 0


def test_qos2_beyond_receive_maximum_gets_0x93(raw):
    c = raw("rm-over")
    topic = unique_topic("rm")
    for pid in (1, 2, 3):
        c.send(publish5(topic, "x", qos=2, pid=pid))
        assert c.expect(5).pid == pid
    c.send(publish5(topic, "x", qos=2, pid=4))
    assert c.goodbye().reason == 0x93


@pytest.mark.parametrize("alias", [5, 65535])
def test_topic_alias_beyond_the_maximum_gets_0x94(raw, alias):
    c = raw(f"alias-{alias}")
    c.send(publish5(unique_topic("a"), "x", properties=props((TOPIC_ALIAS, alias))))
    assert c.goodbye().reason == 0x94


def test_topic_alias_zero_is_a_protocol_error(raw):
    """The codec refuses a zero alias as a forbidden value (0x82); the spec
    allows 0x94 too (mosquitto's choice)."""
    c = raw("alias-zero")
    c.send(publish5(unique_topic("a"), "x", properties=props((TOPIC_ALIAS, 0))))
    assert c.goodbye().reason in (0x82, 0x94)


def test_unknown_topic_alias_with_an_empty_topic_is_a_protocol_error(raw):
    c = raw("alias-unset")
    c.send(publish5("", "x", properties=props((TOPIC_ALIAS, 2))))
    assert c.goodbye().reason == 0x82


def test_empty_topic_without_alias_is_refused(raw):
    c = raw("alias-missing")
    c.send(publish5("", "x"))
    assert c.goodbye().reason in (0x81, 0x82)


def test_unknown_property_is_malformed_0x81(raw):
    c = raw("prop-unknown")
    c.send(publish5(unique_topic("p"), "x", properties=props(b"\x7f\x00")))
    assert c.goodbye().reason == 0x81


def test_property_not_allowed_in_the_packet_is_malformed_0x81(raw):
    c = raw("prop-misplaced")
    c.send(publish5(unique_topic("p"), "x", properties=props((SESSION_EXPIRY, 5))))
    assert c.goodbye().reason == 0x81


def test_property_length_beyond_the_packet_is_malformed_0x81(raw):
    c = raw("prop-overrun")
    # Property length 50 in a packet that has 3 bytes after it.
    c.send(publish5(unique_topic("p"), b"", properties=b"\x32\x03\x00\x01"))
    assert c.goodbye().reason == 0x81


def test_property_twice_is_a_protocol_error_0x82(raw):
    c = raw("prop-twice")
    c.send(publish5(unique_topic("p"), "x", properties=props((CONTENT_TYPE, "a"),
                                                             (CONTENT_TYPE, "b"))))
    assert c.goodbye().reason == 0x82


def test_user_property_may_repeat(raw):
    c = raw("prop-users")
    c.send(publish5(unique_topic("p"), "x", qos=1, pid=9,
                    properties=props((USER_PROPERTY, ("a", "1")), (USER_PROPERTY, ("a", "2")))))
    ack = c.expect(4)
    assert (ack.pid, ack.reason) in ((9, 0), (9, 0x10))


def test_malformed_property_in_connect_gets_connack_0x81(port):
    c = Raw5(port)
    c.send(connect5("bad-connect", properties=props(b"\x7f\x00")))
    ack = c.expect(2)
    assert ack.reason == 0x81
    assert c.is_closed()
    c.close()


def test_receive_maximum_zero_in_connect_is_a_protocol_error(port):
    c = Raw5(port)
    c.send(connect5("rm-zero", properties=props((RECEIVE_MAXIMUM, 0))))
    assert c.expect(2).reason == 0x82
    assert c.is_closed()
    c.close()


def test_auth_packet_gets_disconnect_0x8c(raw):
    c = raw("auth-packet")
    # AUTH, reason 0x18 (continue authentication), method SCRAM-SHA-1.
    c.send(packet(0xF0, b"\x18" + props((AUTH_METHOD, "SCRAM-SHA-1"))))
    assert c.goodbye().reason == 0x8C


def test_connect_with_an_authentication_method_gets_connack_0x8c(port):
    c = Raw5(port)
    c.send(connect5("auth-method", properties=props((AUTH_METHOD, "SCRAM-SHA-1"))))
    ack = c.expect(2)
    assert ack.reason == 0x8C
    assert c.is_closed()
    c.close()


def test_packet_above_max_packet_size_gets_0x95(raw):
    c = raw("too-large")
    c.send(publish5(unique_topic("big"), b"y" * 3000))
    assert c.goodbye().reason == 0x95


def test_disconnect_with_will_message_publishes_the_will(raw):
    topic = unique_topic("will")
    sub = raw("will-watch")
    assert sub.subscribe(1, [(topic, 0)]) == [0]
    c = raw("will-0x04", will=(topic, b"on purpose", 0, False, b"\x00"))
    c.send(disconnect5(0x04))
    assert c.is_closed()
    m = sub.expect(3)
    assert (m.topic, m.payload) == (topic, b"on purpose")
    d = raw("will-0x00", will=(topic, b"never", 0, False, b"\x00"))
    d.send(disconnect5(0x00))
    assert d.is_closed()
    assert sub.silent()


@pytest.mark.parametrize("bad", [props((MAXIMUM_PACKET_SIZE, 0)),
                                 props((TOPIC_ALIAS_MAXIMUM, 1), (TOPIC_ALIAS_MAXIMUM, 2))],
                         ids=["maximum-packet-size-0", "property-twice"])
def test_forbidden_connect_property_values_get_connack_0x82(port, bad):
    c = Raw5(port)
    c.send(connect5("bad-value", properties=bad))
    assert c.expect(2).reason == 0x82
    assert c.is_closed()
    c.close()


@pytest.mark.parametrize("options, reason", [(0xC1, 0x81), (0x31, 0x82)],
                         ids=["reserved-bits", "retain-handling-3"])
def test_bad_subscription_options(raw, options, reason):
    c = raw(f"subopt-{options}")
    c.send(subscribe5(1, [("t/x", options)]))
    assert c.goodbye().reason == reason


def test_subscription_identifier_zero_is_a_protocol_error(raw):
    c = raw("subid-zero")
    c.send(subscribe5(1, [("t/x", 0)], properties=props((SUBSCRIPTION_ID, 0))))
    assert c.goodbye().reason == 0x82


def test_subscription_identifier_in_a_client_publish_is_a_protocol_error(raw):
    c = raw("subid-publish")
    c.send(publish5("t/x", "x", properties=props((SUBSCRIPTION_ID, 3))))
    assert c.goodbye().reason in (0x81, 0x82)


def test_topic_aliases_beyond_their_memory_budget_get_0x97(raw):
    """The topics a client's aliases stand for are held within
    max_subscription_bytes (1024 here): more is Quota Exceeded."""
    c = raw("alias-quota")
    for alias in (1, 2, 3):
        c.send(publish5("q/" + str(alias) * 300, "x", qos=1, pid=alias,
                        properties=props((TOPIC_ALIAS, alias))))
        assert c.expect(4).pid == alias
    c.send(publish5("q/" + "4" * 300, "x", qos=1, pid=4, properties=props((TOPIC_ALIAS, 4))))
    assert c.goodbye().reason == 0x97


def test_response_topic_with_a_wildcard_is_a_protocol_error(raw):
    c = raw("resp-wild")
    c.send(publish5("t/x", "x", properties=props((RESPONSE_TOPIC, "replies/#"))))
    assert c.goodbye().reason == 0x82


def test_will_topic_with_a_wildcard_gets_connack_0x81(port):
    """The codec holds a will topic to the rules of a PUBLISH topic, where a
    wildcard makes the packet malformed (as mosquitto does)."""
    c = Raw5(port)
    c.send(connect5("will-wild", will=("w/#", b"x", 0, False, b"\x00")))
    assert c.expect(2).reason == 0x81
    assert c.is_closed()
    c.close()


def test_will_response_topic_with_a_wildcard_gets_connack_0x82(port):
    c = Raw5(port)
    c.send(connect5("will-resp-wild",
                    will=("w/x", b"x", 0, False, props((RESPONSE_TOPIC, "r/+")))))
    assert c.expect(2).reason == 0x82
    assert c.is_closed()
    c.close()


def test_pubrel_for_an_unknown_packet_id_gets_pubcomp_0x92(raw):
    c = raw("pubrel-unknown")
    c.send(ack5(6, 77))
    comp = c.expect(7)
    assert (comp.pid, comp.reason) == (77, 0x92)


def test_pubrec_for_an_unknown_packet_id_gets_pubrel_0x92(raw):
    c = raw("pubrec-unknown")
    c.send(ack5(5, 78))
    rel = c.expect(6)
    assert (rel.pid, rel.reason, rel.flags) == (78, 0x92, 0x02)
