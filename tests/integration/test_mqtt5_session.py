# MQTT 5.0 sessions and connections end to end (issue #8 item 2): Session
# Expiry Interval (0 ends with the connection, N keeps queued QoS 1 messages
# N seconds, DISCONNECT may change it but not raise it from 0, capped by
# max_session_expiry and CONNACK says so), will delay, Assigned Client
# Identifier, Server Keep Alive, and the reason codes of the DISCONNECT the
# broker sends (session taken over, keepalive timeout, shutting down).
# Clients: paho 5.0, mosquitto_sub -V 5 -c -x and hand-made 5.0 packets.
import subprocess
import time

import pytest

from conftest import SANITIZER_MARKERS, TIMEOUT, Broker, unique_topic
from mqtt5 import (ASSIGNED_CLIENT_ID, CONTENT_TYPE, MESSAGE_EXPIRY, SERVER_KEEPALIVE,
                   SESSION_EXPIRY, USER_PROPERTY, WILL_DELAY, Client5, Raw5, disconnect5, pprops,
                   props, raw5_connected)
from paho.mqtt.packettypes import PacketTypes

BROKER_OPTIONS = {"max_session_expiry": "30", "max_keepalive": "20"}
BROKER_LISTENERS = ("plain",)


@pytest.fixture
def raw(broker):
    made = []

    def make(client_id, properties=b"\x00", **kw):
        c = raw5_connected(broker.ports["plain"], client_id, properties, **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


@pytest.fixture
def paho5(broker):
    made = []

    def make(*a, **kw):
        c = Client5(*a, **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def reconnect(broker, client_id, expiry=None):
    """A Clean Start 0 reconnect; returns (client, CONNACK)."""
    c = Raw5(broker.ports["plain"])
    p = props((SESSION_EXPIRY, expiry)) if expiry is not None else b"\x00"
    ack = c.connect5(client_id, properties=p, clean=False)
    assert ack.reason == 0, ack
    return c, ack


def subscribe_and_leave(raw, client_id, topic, expiry, leave=disconnect5()):
    c = raw(client_id, props((SESSION_EXPIRY, expiry)) if expiry is not None else b"\x00",
            clean=True)
    assert c.subscribe(1, [(topic, 1)]) == [1]
    c.send(leave)
    assert c.is_closed()


def publish_qos1(paho5, broker, topic, payload):
    pub = paho5()
    pub.connect(broker.ports["plain"])
    pub.publish(topic, payload, qos=1)
    pub.disconnect()


def test_session_expiry_zero_ends_the_session_at_disconnect(broker, raw, paho5):
    topic = unique_topic("s0")
    subscribe_and_leave(raw, "se-zero", topic, None)
    publish_qos1(paho5, broker, topic, "lost")
    c, ack = reconnect(broker, "se-zero")
    assert ack.session_present is False
    assert c.silent()
    c.close()


def test_session_expiry_keeps_queued_messages_for_its_interval_then_drops_them(broker, raw,
                                                                              paho5):
    topic = unique_topic("sN")
    subscribe_and_leave(raw, "se-two", topic, 2)
    publish_qos1(paho5, broker, topic, "kept")
    c, ack = reconnect(broker, "se-two", expiry=2)
    assert ack.session_present is True
    m = c.expect(3)
    assert (m.topic, m.payload, m.qos) == (topic, b"kept", 1)
    c.send(bytes([0x40, 3]) + m.pid.to_bytes(2, "big") + b"\x00")
    c.send(disconnect5())
    assert c.is_closed()
    publish_qos1(paho5, broker, topic, "expired with its session")
    time.sleep(4)  # the interval is the behaviour: past 2 s (and a sweep) the session is gone
    c, ack = reconnect(broker, "se-two")
    assert ack.session_present is False
    assert c.silent()
    c.close()


def test_disconnect_may_lower_the_session_expiry_to_zero(broker, raw, paho5):
    topic = unique_topic("sD")
    subscribe_and_leave(raw, "se-lower", topic, 25,
                        leave=disconnect5(0, props((SESSION_EXPIRY, 0))))
    c, ack = reconnect(broker, "se-lower")
    assert ack.session_present is False
    c.close()


def test_disconnect_may_set_a_session_expiry_paho(broker, paho5):
    """paho sends the new interval in its DISCONNECT; the session survives."""
    c = paho5("se-paho")
    c.connect(broker.ports["plain"], properties=pprops(PacketTypes.CONNECT,
                                                       SessionExpiryInterval=20))
    assert c.subscribe(unique_topic("sp"), qos=1) == [1]
    c.disconnect(properties=pprops(PacketTypes.DISCONNECT, SessionExpiryInterval=10))
    again = paho5("se-paho")
    again.connect(broker.ports["plain"], clean_start=False)
    assert again.session_present
    again.disconnect(properties=pprops(PacketTypes.DISCONNECT, SessionExpiryInterval=0))


def test_raising_session_expiry_from_zero_in_disconnect_is_a_protocol_error(broker, raw):
    c = raw("se-raise")
    c.send(disconnect5(0, props((SESSION_EXPIRY, 60))))
    assert c.goodbye().reason == 0x82
    again, ack = reconnect(broker, "se-raise")
    assert ack.session_present is False
    again.close()


def test_session_expiry_is_capped_and_connack_says_so(broker, raw):
    r = Raw5(broker.ports["plain"])
    ack = r.connect5("se-cap", properties=props((SESSION_EXPIRY, 3600)))
    assert ack.props.get(SESSION_EXPIRY) == 30, ack
    r.close()
    r = Raw5(broker.ports["plain"])
    ack = r.connect5("se-cap3", properties=props((SESSION_EXPIRY, 10)))
    assert SESSION_EXPIRY not in ack.props, "an interval within the cap is not echoed"
    r.close()


def test_assigned_client_identifier_for_an_empty_client_id(broker, paho5):
    c = paho5("")
    c.connect(broker.ports["plain"])
    assigned = c.connack_props.AssignedClientIdentifier
    assert assigned
    r = Raw5(broker.ports["plain"])
    ack = r.connect5("")
    assert ack.props[ASSIGNED_CLIENT_ID] and ack.props[ASSIGNED_CLIENT_ID] != assigned
    r.close()
    # A ClientId of one's own is not echoed.
    r = Raw5(broker.ports["plain"])
    assert ASSIGNED_CLIENT_ID not in r.connect5("mine").props
    r.close()


@pytest.mark.parametrize("asked, told", [(100, 20), (0, 20), (10, None)])
def test_server_keep_alive_when_the_client_asks_above_max_keepalive(broker, asked, told):
    r = Raw5(broker.ports["plain"])
    ack = r.connect5(f"ka-{asked}", keepalive=asked)
    assert ack.reason == 0
    assert ack.props.get(SERVER_KEEPALIVE) == told, ack
    r.close()


def test_will_is_published_after_its_delay(broker, raw, paho5):
    topic = unique_topic("will")
    sub = paho5()
    sub.connect(broker.ports["plain"])
    sub.subscribe(topic, qos=1)
    c = raw("will-delay", props((SESSION_EXPIRY, 30)),
            will=(topic, b"gone", 1, False, props((WILL_DELAY, 1))))
    c.abort()
    t0 = time.monotonic()
    m = sub.get()
    assert m.payload == b"gone"
    assert time.monotonic() - t0 >= 0.9, "the will did not wait for its delay"


def test_reconnect_within_the_will_delay_cancels_the_will(broker, raw, paho5):
    topic = unique_topic("will")
    sub = paho5()
    sub.connect(broker.ports["plain"])
    sub.subscribe(topic, qos=1)
    c = raw("will-cancel", props((SESSION_EXPIRY, 30)),
            will=(topic, b"never", 1, False, props((WILL_DELAY, 2))))
    c.abort()
    back, ack = reconnect(broker, "will-cancel", expiry=30)
    assert ack.session_present is True
    assert sub.drain(3.5) == []  # past the delay (2 s, rounded up by one)
    back.send(disconnect5(0, props((SESSION_EXPIRY, 0))))
    assert back.is_closed()


def test_will_goes_out_at_once_when_the_session_is_taken_over(broker, paho5):
    """A paho 5.0 client with a will (no delay) is taken over: the will is
    published then, as the old connection ended without DISCONNECT."""
    topic = unique_topic("will")
    sub = paho5()
    sub.connect(broker.ports["plain"])
    sub.subscribe(topic)
    old = paho5("taken-with-will", will=(topic, "bye", 0, False, None))
    old.connect(broker.ports["plain"])
    assert sub.drain(0.3) == []
    new = Raw5(broker.ports["plain"])
    assert new.connect5("taken-with-will").reason == 0
    m = sub.get()
    assert m.payload == b"bye"
    assert old.disconnected.wait(TIMEOUT)
    new.send(disconnect5())
    new.close()


def test_session_taken_over_gets_disconnect_0x8e(broker, raw):
    old = raw("takeover")
    new = raw("takeover")
    assert old.goodbye().reason == 0x8E
    new.send(disconnect5())


def test_keepalive_timeout_gets_disconnect_0x8d(broker):
    c = Raw5(broker.ports["plain"])
    assert c.connect5("ka-timeout", keepalive=1).reason == 0
    t0 = time.monotonic()
    assert c.goodbye(timeout=5).reason == 0x8D
    assert time.monotonic() - t0 >= 1.0
    c.close()


def test_shutdown_gets_disconnect_0x8b(tmp_path, certs):
    b = Broker(tmp_path / "b", certs, listeners=("plain",)).start()
    try:
        c = raw5_connected(b.ports["plain"], "shut")
        b.signal(15)
        assert c.goodbye().reason == 0x8B
        assert b.proc.wait(TIMEOUT) == 0
        c.close()
        assert not any(m in b.stderr() for m in SANITIZER_MARKERS), b.stderr()
        b.proc = None
    finally:
        b.stop()


def test_assigned_client_identifier_resumes_its_session(broker):
    c = Raw5(broker.ports["plain"])
    ack = c.connect5("", properties=props((SESSION_EXPIRY, 20)))
    assigned = ack.props[ASSIGNED_CLIENT_ID]
    assert c.subscribe(1, [(unique_topic("aid"), 1)]) == [1]
    c.send(disconnect5())
    assert c.is_closed()
    again, ack = reconnect(broker, assigned, expiry=0)
    assert ack.session_present is True
    again.send(disconnect5())
    again.close()


def test_will_goes_out_when_the_session_ends_before_the_will_delay(broker, raw, paho5):
    topic = unique_topic("will")
    sub = paho5()
    sub.connect(broker.ports["plain"])
    sub.subscribe(topic, qos=1)
    c = raw("will-short-session", props((SESSION_EXPIRY, 1)),
            will=(topic, b"session over", 1, False, props((WILL_DELAY, 25))))
    c.abort()
    t0 = time.monotonic()
    assert sub.get().payload == b"session over"
    assert time.monotonic() - t0 < 5, "the will waited for its delay, past the session"


def test_server_keep_alive_is_the_one_enforced(tmp_path, certs):
    """A client asking 60 s is told 1 s (max_keepalive 1) and dropped with
    0x8D after 1.5 s of silence, not 90 s."""
    b = Broker(tmp_path / "b", certs, {"max_keepalive": "1"}, listeners=("plain",)).start()
    try:
        c = Raw5(b.ports["plain"])
        ack = c.connect5("ka-told", keepalive=60)
        assert ack.props[SERVER_KEEPALIVE] == 1
        assert c.goodbye(timeout=5).reason == 0x8D
        c.close()
    finally:
        b.stop()


def test_will_properties_pass_through(broker, raw, paho5):
    topic = unique_topic("will")
    sub = paho5()
    sub.connect(broker.ports["plain"])
    sub.subscribe(topic, qos=1)
    wprops = props((USER_PROPERTY, ("why", "power")), (CONTENT_TYPE, "text/plain"),
                   (MESSAGE_EXPIRY, 50))
    c = raw("will-props", will=(topic, b"lost power", 1, False, wprops))
    c.abort()
    m = sub.get()
    assert m.payload == b"lost power"
    assert m.properties.UserProperty == [("why", "power")]
    assert m.properties.ContentType == "text/plain"
    assert 45 <= m.properties.MessageExpiryInterval <= 50


def test_mosquitto_sub_session_expiry_keeps_its_queued_message(broker, paho5):
    """mosquitto_sub -V 5 -c -x 30 subscribes and leaves (-E); a QoS 1
    message published meanwhile is waiting when it comes back."""
    topic = unique_topic("msub")
    base = ["mosquitto_sub", "-V", "5", "-h", "127.0.0.1", "-p", str(broker.ports["plain"]),
            "-i", "msub-persist", "-c", "-x", "30", "-t", topic, "-q", "1"]
    r = subprocess.run(base + ["-E"], capture_output=True, text=True, timeout=TIMEOUT + 5)
    assert r.returncode == 0, r.stderr
    publish_qos1(paho5, broker, topic, "waiting for you")
    r = subprocess.run(base + ["-C", "1", "-W", str(int(TIMEOUT))], capture_output=True,
                       text=True, timeout=TIMEOUT + 5)
    assert (r.returncode, r.stdout) == (0, "waiting for you\n"), r.stderr


def test_mosquitto_sub_will_with_delay_when_killed(broker, paho5):
    """mosquitto_sub -V 5 --will-* with -D will will-delay-interval 1 and a
    session that outlives it (-c -x 30), killed: the will arrives, later."""
    topic = unique_topic("will")
    sub = paho5()
    sub.connect(broker.ports["plain"])
    sub.subscribe(topic, qos=1)
    ms = subprocess.Popen(["stdbuf", "-oL", "mosquitto_sub", "-V", "5", "-d", "-h", "127.0.0.1",
                           "-p", str(broker.ports["plain"]), "-i", "msub-will", "-c", "-x", "30",
                           "-t", "x/y", "--will-topic", topic, "--will-payload", "killed",
                           "--will-qos", "1", "-D", "will", "will-delay-interval", "1"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        deadline = time.monotonic() + TIMEOUT
        while not any("SUBACK" in ln for ln in lines):
            assert time.monotonic() < deadline and ms.poll() is None, lines
            lines.append(ms.stdout.readline())
        ms.kill()
        ms.wait()
        t0 = time.monotonic()
        m = sub.get()
        assert m.payload == b"killed"
        assert time.monotonic() - t0 >= 0.9
    finally:
        if ms.poll() is None:
            ms.kill()
        ms.communicate()


@pytest.mark.parametrize("options, told", [({"session_expiry": "100"}, 100),
                                           ({"max_session_expiry": "0"}, None)],
                         ids=["default-cap-is-session_expiry", "no-cap"])
def test_max_session_expiry_defaults_to_session_expiry(tmp_path, certs, options, told):
    b = Broker(tmp_path / "b", certs, options, listeners=("plain",)).start()
    try:
        c = Raw5(b.ports["plain"])
        ack = c.connect5("forever", properties=props((SESSION_EXPIRY, 0xFFFFFFFF)))
        assert ack.reason == 0 and ack.props.get(SESSION_EXPIRY) == told, ack
        c.send(disconnect5(0, props((SESSION_EXPIRY, 0))))
        c.close()
    finally:
        b.stop()
