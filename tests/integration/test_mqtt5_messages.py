# MQTT 5.0 messages end to end (issue #8 item 2): message expiry (expired
# messages are not delivered, the remaining interval is sent, the interval is
# capped by max_message_expiry), topic aliases both ways, Receive Maximum
# towards the client, Maximum Packet Size both ways, request/response, and
# the properties that pass through unchanged (user properties, payload format
# indicator, content type), also as mosquitto_pub -D and mosquitto_sub -F
# set and print them. Clients: paho 5.0, mosquitto_pub/sub -V 5, hand-made
# 5.0 packets where the bytes are the behaviour.
import subprocess
import time

import pytest
from paho.mqtt.packettypes import PacketTypes

from conftest import (CONNACK_OK, TIMEOUT, RawClient, publish_packet, subscribe_packet,
                      unique_topic)
from mqtt5 import (CONTENT_TYPE, MAXIMUM_PACKET_SIZE, MESSAGE_EXPIRY, PAYLOAD_FORMAT,
                   RECEIVE_MAXIMUM, REQUEST_RESPONSE_INFO, RESPONSE_INFO, SESSION_EXPIRY,
                   TOPIC_ALIAS, TOPIC_ALIAS_MAXIMUM, USER_PROPERTY, Client5, Raw5, ack5,
                   disconnect5, paho5, port, pprops, props, publish5, raw5_connected,
                   user_props)  # noqa: F401 (paho5, port: fixtures)

MAX_PACKET = 4096
BROKER_OPTIONS = {"max_message_expiry": "100", "max_topic_alias": "8",
                  "max_packet_size": str(MAX_PACKET)}
BROKER_LISTENERS = ("plain",)


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


# ---------------------------------------------------------------- message expiry

def test_expired_message_is_not_delivered_and_the_remaining_interval_is_sent(port, raw,
                                                                             paho5):
    topic = unique_topic("exp")
    sub = raw("exp-sub", props((SESSION_EXPIRY, 30)))
    assert sub.subscribe(1, [(topic, 1)]) == [1]
    sub.send(disconnect5())
    assert sub.is_closed()
    pub = paho5()
    pub.publish(topic, "short", qos=1, properties=pprops(MessageExpiryInterval=1))
    pub.publish(topic, "long", qos=1, properties=pprops(MessageExpiryInterval=60))
    time.sleep(2.2)  # the interval is the behaviour: "short" expires offline
    back = Raw5(port)
    ack = back.connect5("exp-sub", clean=False, properties=props((SESSION_EXPIRY, 30)))
    assert ack.session_present
    m = back.expect(3)
    assert m.payload == b"long"
    assert 50 <= m.props[MESSAGE_EXPIRY] < 60, m
    back.send(ack5(4, m.pid))
    assert back.silent()
    back.send(disconnect5(0, props((SESSION_EXPIRY, 0))))
    back.close()


def test_message_expiry_is_capped_by_max_message_expiry(paho5):
    topic = unique_topic("cap")
    sub = paho5()
    sub.subscribe(topic, qos=1)
    pub = paho5()
    pub.publish(topic, "asks too much", qos=1, properties=pprops(MessageExpiryInterval=100000))
    assert 0 < sub.get().properties.MessageExpiryInterval <= 100
    # A message without an interval gets the maximum.
    pub.publish(topic, "asks nothing", qos=1)
    assert 0 < sub.get().properties.MessageExpiryInterval <= 100
    # One below it keeps its own.
    pub.publish(topic, "asks little", qos=1, properties=pprops(MessageExpiryInterval=30))
    assert 25 <= sub.get().properties.MessageExpiryInterval <= 30


# ---------------------------------------------------------------- topic aliases

def test_connack_announces_topic_alias_maximum_and_maximum_packet_size(paho5):
    c = paho5()
    assert c.connack_props.TopicAliasMaximum == 8
    assert c.connack_props.MaximumPacketSize == MAX_PACKET


def test_topic_alias_from_client_to_broker(raw, paho5):
    topic = unique_topic("alias")
    sub = paho5()
    sub.subscribe(topic)
    pub = raw("alias-pub")
    pub.send(publish5(topic, "first", properties=props((TOPIC_ALIAS, 3))))
    pub.send(publish5("", "second", properties=props((TOPIC_ALIAS, 3))))
    got = [sub.get(), sub.get()]
    assert [(m.topic, m.payload) for m in got] == [(topic, b"first"), (topic, b"second")]
    # Re-mapping the alias to another topic is allowed.
    other = unique_topic("alias")
    sub.subscribe(other)
    pub.send(publish5(other, "third", properties=props((TOPIC_ALIAS, 3))))
    pub.send(publish5("", "fourth", properties=props((TOPIC_ALIAS, 3))))
    assert [sub.get().topic, sub.get().topic] == [other, other]


def test_topic_alias_from_broker_to_client(raw, paho5):
    topic = unique_topic("alias")
    sub = raw("alias-sub", props((TOPIC_ALIAS_MAXIMUM, 2)))
    assert sub.subscribe(1, [(topic + "/#", 0)]) == [0]
    pub = paho5()
    for t in (topic + "/a", topic + "/a", topic + "/b", topic + "/c", topic + "/a"):
        pub.publish(t, "x")
    seen = [sub.expect(3) for _ in range(5)]
    a1, a2, b, c, a3 = seen
    assert a1.topic == topic + "/a" and a1.props[TOPIC_ALIAS] in (1, 2)
    assert a2.topic == "" and a2.props[TOPIC_ALIAS] == a1.props[TOPIC_ALIAS]
    assert b.topic == topic + "/b" and b.props[TOPIC_ALIAS] not in (a1.props[TOPIC_ALIAS],)
    # Both aliases are taken (the client allows 2): /c goes by name only.
    assert c.topic == topic + "/c" and TOPIC_ALIAS not in c.props
    assert a3.topic == "" and a3.props[TOPIC_ALIAS] == a1.props[TOPIC_ALIAS]


def test_no_topic_alias_to_a_client_that_allows_none(raw, paho5):
    topic = unique_topic("alias")
    sub = raw("alias-none")
    assert sub.subscribe(1, [(topic, 0)]) == [0]
    pub = paho5()
    pub.publish(topic, "1")
    pub.publish(topic, "2")
    for _ in range(2):
        m = sub.expect(3)
        assert m.topic == topic and TOPIC_ALIAS not in m.props


# ---------------------------------------------------------------- flow control, sizes

def test_broker_sends_at_most_the_clients_receive_maximum_unacknowledged(raw, paho5):
    topic = unique_topic("rm")
    sub = raw("rm-sub", props((RECEIVE_MAXIMUM, 2)))
    assert sub.subscribe(1, [(topic, 1)]) == [1]
    pub = paho5()
    for i in range(5):
        pub.publish(topic, str(i), qos=1)
    first = [sub.expect(3), sub.expect(3)]
    assert [m.payload for m in first] == [b"0", b"1"]
    assert sub.silent(), "a third message before any PUBACK"
    sub.send(ack5(4, first[0].pid))
    m = sub.expect(3)
    assert m.payload == b"2"
    assert sub.silent()
    for p in (first[1], m):
        sub.send(ack5(4, p.pid))
    assert [sub.expect(3).payload for _ in range(2)] == [b"3", b"4"]


def test_message_above_the_clients_maximum_packet_size_is_dropped_not_blocking(raw, paho5):
    topic = unique_topic("mps")
    sub = raw("mps-sub", props((MAXIMUM_PACKET_SIZE, 200)))
    assert sub.subscribe(1, [(topic, 1)]) == [1]
    pub = paho5()
    pub.publish(topic, "B" * 500, qos=1)
    pub.publish(topic, "small", qos=1)
    m = sub.expect(3)
    assert m.payload == b"small"
    assert len(m.raw) <= 200
    sub.send(ack5(4, m.pid))
    assert sub.silent()


def test_packet_above_max_packet_size_from_the_client_gets_0x95(raw):
    c = raw("too-big")
    c.send(publish5(unique_topic("big"), b"x" * (MAX_PACKET + 10)))
    assert c.goodbye().reason == 0x95


# ---------------------------------------------------------------- properties passed on

def test_request_response_topic_and_correlation_data_pass_through(paho5):
    req_topic = unique_topic("req")
    responder = paho5()
    responder.subscribe(req_topic)
    requester = paho5("requester")
    reply_to = unique_topic("reply")
    requester.subscribe(reply_to)
    requester.publish(req_topic, "ping", properties=pprops(ResponseTopic=reply_to,
                                                           CorrelationData=b"\x00id-42\xff"))
    req = responder.get()
    assert req.properties.ResponseTopic == reply_to
    assert req.properties.CorrelationData == b"\x00id-42\xff"
    responder.publish(req.properties.ResponseTopic, "pong",
                      properties=pprops(CorrelationData=req.properties.CorrelationData))
    resp = requester.get()
    assert (resp.topic, resp.payload) == (reply_to, b"pong")
    assert resp.properties.CorrelationData == b"\x00id-42\xff"


def test_request_response_information_is_answered(port, paho5):
    c = Client5("rri-client")
    try:
        c.connect(port, properties=pprops(PacketTypes.CONNECT, RequestResponseInformation=1))
        info = c.connack_props.ResponseInformation
        assert info and "rri-client" in info
        # The answer is a topic the client can use for its responses.
        c.subscribe(info + "/#")
        other = paho5()
        other.publish(info + "/x", "answer")
        assert c.get().topic == info + "/x"
    finally:
        c.close()
    r = Raw5(port)
    assert RESPONSE_INFO not in r.connect5("no-rri").props
    r.close()
    r = Raw5(port)
    ack = r.connect5("rri-zero", properties=props((REQUEST_RESPONSE_INFO, 0)))
    assert RESPONSE_INFO not in ack.props
    r.close()


def test_user_properties_payload_format_and_content_type_pass_through(paho5):
    topic = unique_topic("props")
    sub = paho5()
    sub.subscribe(topic, qos=1)
    pub = paho5()
    pairs = [("k", "1"), ("k", "2"), ("région", "é"), ("empty", "")]
    pub.publish(topic, '{"t": 21}', qos=1,
                properties=pprops(UserProperty=pairs, PayloadFormatIndicator=1,
                                  ContentType="application/json"))
    m = sub.get()
    assert user_props(m) == pairs
    assert m.properties.PayloadFormatIndicator == 1
    assert m.properties.ContentType == "application/json"


def test_raw_properties_reach_the_subscriber_byte_for_byte(raw, paho5):
    topic = unique_topic("props")
    sub = raw("props-sub")
    assert sub.subscribe(1, [(topic, 0)]) == [0]
    pub = paho5()
    pub.publish(topic, b"\x01\x02", properties=pprops(PayloadFormatIndicator=0,
                                                      ContentType="application/octet-stream",
                                                      UserProperty=[("a", "b")]))
    m = sub.expect(3)
    assert m.props[PAYLOAD_FORMAT] == 0
    assert m.props[CONTENT_TYPE] == "application/octet-stream"
    assert m.props[USER_PROPERTY] == [("a", "b")]
    assert m.payload == b"\x01\x02"


def test_payload_not_utf8_with_format_indicator_1_is_refused_with_0x99(raw, paho5):
    topic = unique_topic("pfi")
    sub = paho5()
    sub.subscribe(topic)
    pub = raw("pfi-pub")
    pub.send(publish5(topic, b"\xff\xfe", qos=1, pid=7, properties=props((PAYLOAD_FORMAT, 1))))
    ack = pub.expect(4)
    assert (ack.pid, ack.reason) == (7, 0x99)
    assert sub.drain() == []


def mosquitto_pub5(port, topic, *args):
    cmd = ["mosquitto_pub", "-V", "5", "-h", "127.0.0.1", "-p", str(port), "-t", topic,
           "-q", "1", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT + 5)


def test_mosquitto_pub_user_property_and_message_expiry_reach_paho(port, paho5):
    topic = unique_topic("mpub")
    sub = paho5()
    sub.subscribe(topic, qos=1)
    r = mosquitto_pub5(port, topic, "-m", "hello", "-D", "PUBLISH", "user-property", "site",
                       "north", "-D", "PUBLISH", "message-expiry-interval", "50", "-D",
                       "PUBLISH", "content-type", "text/plain")
    assert r.returncode == 0, r.stderr
    m = sub.get()
    assert m.payload == b"hello"
    assert user_props(m) == [("site", "north")]
    assert 45 <= m.properties.MessageExpiryInterval <= 50
    assert m.properties.ContentType == "text/plain"


def test_mosquitto_sub_prints_the_properties_paho_sent(port, paho5):
    topic = unique_topic("msub")
    ms = subprocess.Popen(["mosquitto_sub", "-V", "5", "-h", "127.0.0.1", "-p", str(port),
                           "-t", topic, "-C", "1", "-W", str(int(TIMEOUT) + 5),
                           "-F", "%t|%p|%P|%C"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pub = paho5()
    deadline = time.monotonic() + TIMEOUT
    # mosquitto_sub cannot say when it is subscribed: publish until it prints.
    while ms.poll() is None and time.monotonic() < deadline:
        pub.publish(topic, "v", properties=pprops(UserProperty=[("unit", "C")],
                                                  ContentType="text/plain"))
        try:
            ms.wait(0.2)
        except subprocess.TimeoutExpired:
            pass
    if ms.poll() is None:
        ms.kill()
    out, err = ms.communicate(timeout=TIMEOUT)
    assert ms.returncode == 0, err
    assert out.strip() == f"{topic}|v|unit:C|text/plain"


def test_maximum_packet_size_counts_the_topic_alias_the_broker_adds(raw, paho5):
    """A message that fits the client's Maximum Packet Size without a topic
    alias must not be sent with one that makes it too large: the broker
    sends it without the alias (or not at all), never above the maximum."""
    topic = unique_topic("mpsa")
    payload = b"p" * 50
    # QoS 0 PUBLISH: header 2 + topic length 2 + topic + properties (length 1
    # + the Message Expiry Interval max_message_expiry gives it, 5) + payload.
    exact = 2 + 2 + len(topic) + 6 + len(payload)
    sub = raw("mpsa-sub", props((MAXIMUM_PACKET_SIZE, exact), (TOPIC_ALIAS_MAXIMUM, 4)))
    assert sub.subscribe(1, [(topic, 0)]) == [0]
    pub = paho5()
    pub.publish(topic, payload)
    pub.publish(topic, payload)
    for _ in range(2):
        m = sub.expect(3)
        assert len(m.raw) <= exact, f"{len(m.raw)} bytes sent to a client allowing {exact}"
        assert m.topic == topic, "an alias the client never learned"


def test_retained_message_expires_and_carries_its_remaining_interval(raw, paho5):
    topic = unique_topic("rexp")
    pub = paho5()
    pub.publish(topic + "/short", "s", qos=1, retain=True,
                properties=pprops(MessageExpiryInterval=1))
    pub.publish(topic + "/long", "l", qos=1, retain=True,
                properties=pprops(MessageExpiryInterval=60))
    time.sleep(2.2)  # the interval is the behaviour
    sub = raw("rexp-sub")
    assert sub.subscribe(1, [(topic + "/#", 0)]) == [0]
    m = sub.expect(3)
    assert (m.topic, m.retain) == (topic + "/long", True)
    assert 50 <= m.props[MESSAGE_EXPIRY] < 60
    assert sub.silent(), "an expired retained message was delivered"
    pub.publish(topic + "/long", "", qos=1, retain=True)


def test_broker_topic_aliases_start_afresh_on_a_resumed_session(port, raw, paho5):
    topic = unique_topic("alias")
    sub = raw("alias-resume", props((TOPIC_ALIAS_MAXIMUM, 4), (SESSION_EXPIRY, 30)))
    assert sub.subscribe(1, [(topic, 1)]) == [1]
    pub = paho5()
    pub.publish(topic, "before", qos=1)
    m = sub.expect(3)
    assert m.topic == topic and TOPIC_ALIAS in m.props
    sub.send(ack5(4, m.pid))
    sub.send(disconnect5())
    assert sub.is_closed()
    back = Raw5(port)
    ack = back.connect5("alias-resume", clean=False,
                        properties=props((TOPIC_ALIAS_MAXIMUM, 4), (SESSION_EXPIRY, 0)))
    assert ack.session_present
    pub.publish(topic, "after", qos=1)
    m = back.expect(3)
    assert m.topic == topic, "an alias from the previous connection was reused"
    back.send(ack5(4, m.pid))
    back.send(disconnect5())
    back.close()


def test_resent_messages_after_reconnect_respect_the_new_receive_maximum(port, raw, paho5):
    topic = unique_topic("rmr")
    sub = raw("rm-resume", props((RECEIVE_MAXIMUM, 10), (SESSION_EXPIRY, 30)))
    assert sub.subscribe(1, [(topic, 1)]) == [1]
    pub = paho5()
    for i in range(5):
        pub.publish(topic, str(i), qos=1)
    assert [sub.expect(3).payload for _ in range(5)] == [str(i).encode() for i in range(5)]
    sub.abort()  # none acknowledged
    back = Raw5(port)
    ack = back.connect5("rm-resume", clean=False,
                        properties=props((RECEIVE_MAXIMUM, 2), (SESSION_EXPIRY, 0)))
    assert ack.session_present
    pending = [back.expect(3), back.expect(3)]
    assert back.silent(), "more unacknowledged PUBLISHes than the Receive Maximum of 2"
    payloads = [m.payload for m in pending]
    while len(payloads) < 5:  # each PUBACK makes room for one more resend
        back.send(ack5(4, pending.pop(0).pid))
        m = back.expect(3)
        assert m.flags & 0x08, "a resent PUBLISH without DUP"
        pending.append(m)
        payloads.append(m.payload)
    assert payloads == [str(i).encode() for i in range(5)]
    for m in pending:
        back.send(ack5(4, m.pid))
    pub.publish(topic, "new", qos=1)
    assert back.expect(3).payload == b"new"
    back.send(disconnect5())
    back.close()


def test_client_topic_aliases_do_not_outlive_the_connection(port, raw):
    c = raw("alias-conn", props((SESSION_EXPIRY, 30)))
    c.send(publish5(unique_topic("a"), "x", properties=props((TOPIC_ALIAS, 1))))
    c.send(disconnect5())
    assert c.is_closed()
    again = Raw5(port)
    assert again.connect5("alias-conn", clean=False).session_present
    again.send(publish5("", "y", properties=props((TOPIC_ALIAS, 1))))
    assert again.goodbye().reason == 0x82
    again.close()


def test_a_3_1_1_subscriber_gets_a_5_0_message_without_properties(port, paho5):
    topic = unique_topic("v3")
    old = RawClient(port)
    try:
        assert old.connect("v311-sub") == CONNACK_OK
        old.send(subscribe_packet(1, [(topic, 0)]))
        assert old.recv_packet() == b"\x90\x03\x00\x01\x00"
        pub = paho5()
        pub.publish(topic, "data", properties=pprops(UserProperty=[("k", "v")],
                                                     ContentType="text/plain"))
        assert old.recv_packet() == publish_packet(topic, "data")
    finally:
        old.close()


def test_qos2_to_a_client_with_receive_maximum_1_goes_one_at_a_time(port, paho5):
    topic = unique_topic("rm2")
    sub = Raw5(port)
    try:
        assert sub.connect5("rm2-sub", properties=props((RECEIVE_MAXIMUM, 1))).reason == 0
        assert sub.subscribe(1, [(topic, 2)]) == [2]
        pub = paho5()
        pub.publish(topic, "one", qos=2)
        pub.publish(topic, "two", qos=2)
        first = sub.expect(3)
        assert (first.payload, first.qos) == (b"one", 2)
        sub.send(ack5(5, first.pid))  # PUBREC
        assert sub.expect(6).pid == first.pid  # PUBREL
        assert sub.silent(), "the second message before PUBCOMP"
        sub.send(ack5(7, first.pid))  # PUBCOMP
        assert sub.expect(3).payload == b"two"
    finally:
        sub.close()
