# MQTT 5.0 kit for the test_mqtt5_*.py modules: 5.0 packets encoded and
# decoded by hand for wire-exact checks (a RawClient subclass speaking 5.0),
# and a paho-mqtt 1.6.1 client in MQTTv5 mode with the same wait-for-the-ack
# discipline as conftest.Client, exposing CONNACK properties and the
# properties of every message received.
import queue
import struct
import threading
import time

import paho.mqtt.client as paho
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from conftest import QUIET, TIMEOUT, RawClient, enc_len, mqtt_str, packet

# ---------------------------------------------------------------- property ids

PAYLOAD_FORMAT = 0x01
MESSAGE_EXPIRY = 0x02
CONTENT_TYPE = 0x03
RESPONSE_TOPIC = 0x08
CORRELATION_DATA = 0x09
SUBSCRIPTION_ID = 0x0B
SESSION_EXPIRY = 0x11
ASSIGNED_CLIENT_ID = 0x12
SERVER_KEEPALIVE = 0x13
AUTH_METHOD = 0x15
AUTH_DATA = 0x16
REQUEST_PROBLEM_INFO = 0x17
WILL_DELAY = 0x18
REQUEST_RESPONSE_INFO = 0x19
RESPONSE_INFO = 0x1A
REASON_STRING = 0x1F
RECEIVE_MAXIMUM = 0x21
TOPIC_ALIAS_MAXIMUM = 0x22
TOPIC_ALIAS = 0x23
MAXIMUM_QOS = 0x24
RETAIN_AVAILABLE = 0x25
USER_PROPERTY = 0x26
MAXIMUM_PACKET_SIZE = 0x27
SHARED_SUB_AVAILABLE = 0x2A

_BYTE = {PAYLOAD_FORMAT, REQUEST_PROBLEM_INFO, REQUEST_RESPONSE_INFO, MAXIMUM_QOS,
         RETAIN_AVAILABLE, 0x28, 0x29, SHARED_SUB_AVAILABLE}
_U16 = {SERVER_KEEPALIVE, RECEIVE_MAXIMUM, TOPIC_ALIAS_MAXIMUM, TOPIC_ALIAS}
_U32 = {MESSAGE_EXPIRY, SESSION_EXPIRY, WILL_DELAY, MAXIMUM_PACKET_SIZE}
_STR = {CONTENT_TYPE, RESPONSE_TOPIC, ASSIGNED_CLIENT_ID, AUTH_METHOD, RESPONSE_INFO, 0x1C,
        REASON_STRING}
_BIN = {CORRELATION_DATA, AUTH_DATA}


def varint(n):
    return enc_len(n)


def prop(pid, value):
    """One encoded property; value type follows the identifier."""
    head = varint(pid)
    if pid in _BYTE:
        return head + bytes([value])
    if pid in _U16:
        return head + struct.pack(">H", value)
    if pid in _U32:
        return head + struct.pack(">I", value)
    if pid in _STR or pid in _BIN:
        return head + mqtt_str(value)
    if pid == SUBSCRIPTION_ID:
        return head + varint(value)
    if pid == USER_PROPERTY:
        k, v = value
        return head + mqtt_str(k) + mqtt_str(v)
    raise ValueError(pid)


def props(*items):
    """A property list with its length in front; items are (id, value) or
    already encoded bytes."""
    body = b"".join(i if isinstance(i, bytes) else prop(*i) for i in items)
    return varint(len(body)) + body


def _read_varint(b, i):
    n, mult = 0, 1
    while True:
        byte = b[i]
        i += 1
        n += (byte & 0x7F) * mult
        mult *= 128
        if not byte & 0x80:
            return n, i


def parse_props(b, i):
    """Decodes the property list at b[i:]; returns (dict, index after it).
    User properties are a list of (key, value) pairs under USER_PROPERTY,
    subscription identifiers a list under SUBSCRIPTION_ID."""
    n, i = _read_varint(b, i)
    end = i + n
    out = {}
    while i < end:
        pid, i = _read_varint(b, i)
        if pid in _BYTE:
            v, i = b[i], i + 1
        elif pid in _U16:
            v, i = struct.unpack(">H", b[i:i + 2])[0], i + 2
        elif pid in _U32:
            v, i = struct.unpack(">I", b[i:i + 4])[0], i + 4
        elif pid in _STR or pid in _BIN:
            ln = struct.unpack(">H", b[i:i + 2])[0]
            v, i = b[i + 2:i + 2 + ln], i + 2 + ln
            if pid in _STR:
                v = v.decode()
        elif pid == SUBSCRIPTION_ID:
            v, i = _read_varint(b, i)
            out.setdefault(pid, []).append(v)
            continue
        elif pid == USER_PROPERTY:
            kl = struct.unpack(">H", b[i:i + 2])[0]
            k = b[i + 2:i + 2 + kl].decode()
            i += 2 + kl
            vl = struct.unpack(">H", b[i:i + 2])[0]
            v = b[i + 2:i + 2 + vl].decode()
            i += 2 + vl
            out.setdefault(pid, []).append((k, v))
            continue
        else:
            raise AssertionError(f"unknown property 0x{pid:02x} in {b!r}")
        assert pid not in out, f"property 0x{pid:02x} twice"
        out[pid] = v
    assert i == end, f"property list overruns: {b!r}"
    return out, end


# ---------------------------------------------------------------- 5.0 packets

def connect5(client_id, properties=b"\x00", clean=True, keepalive=60, will=None,
             username=None, password=None):
    """A 5.0 CONNECT; will = (topic, payload, qos, retain, will properties)."""
    flags = 0x02 if clean else 0
    payload = mqtt_str(client_id)
    if will is not None:
        topic, msg, qos, retain, wprops = will
        flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
        payload += wprops + mqtt_str(topic) + mqtt_str(msg)
    if username is not None:
        flags |= 0x80
        payload += mqtt_str(username)
    if password is not None:
        flags |= 0x40
        payload += mqtt_str(password)
    var = mqtt_str("MQTT") + bytes([5, flags]) + keepalive.to_bytes(2, "big") + properties
    return packet(0x10, var + payload)


def publish5(topic, payload, qos=0, pid=1, properties=b"\x00", retain=False):
    first = 0x30 | (qos << 1) | (0x01 if retain else 0)
    body = mqtt_str(topic)
    if qos:
        body += pid.to_bytes(2, "big")
    body += properties
    return packet(first, body + (payload.encode() if isinstance(payload, str) else payload))


def subscribe5(pid, filters, properties=b"\x00"):
    """filters: [(filter, options byte)]."""
    body = pid.to_bytes(2, "big") + properties
    for f, opts in filters:
        body += mqtt_str(f) + bytes([opts])
    return packet(0x82, body)


def ack5(kind, pid, reason=0):
    """PUBACK (4), PUBREC (5), PUBREL (6) or PUBCOMP (7) with a reason code."""
    first = (kind << 4) | (0x02 if kind == 6 else 0)
    return packet(first, pid.to_bytes(2, "big") + bytes([reason]) + b"\x00")


def disconnect5(reason=0, properties=b"\x00"):
    return packet(0xE0, bytes([reason]) + properties)


class Packet:
    """A received 5.0 packet, decoded: type and the fields of its kind."""

    def __init__(self, raw):
        self.raw = raw
        self.type = raw[0] >> 4
        self.flags = raw[0] & 0x0F
        _, i = _read_varint(raw, 1)
        b = raw
        self.props = {}
        self.reason = 0
        if self.type == 2:  # CONNACK
            self.session_present = bool(b[i] & 1)
            self.reason = b[i + 1]
            self.props, _ = parse_props(b, i + 2)
        elif self.type == 3:  # PUBLISH
            self.qos = (self.flags >> 1) & 3
            self.retain = bool(self.flags & 1)
            tl = struct.unpack(">H", b[i:i + 2])[0]
            self.topic = b[i + 2:i + 2 + tl].decode()
            i += 2 + tl
            self.pid = 0
            if self.qos:
                self.pid = struct.unpack(">H", b[i:i + 2])[0]
                i += 2
            self.props, i = parse_props(b, i)
            self.payload = b[i:]
        elif self.type in (4, 5, 6, 7, 11, 9):  # acks, UNSUBACK, SUBACK
            self.pid = struct.unpack(">H", b[i:i + 2])[0]
            if self.type in (9, 11):
                self.props, j = parse_props(b, i + 2)
                self.codes = list(b[j:])
            elif len(b) > i + 2:
                self.reason = b[i + 2]
                if len(b) > i + 3:
                    self.props, _ = parse_props(b, i + 3)
        elif self.type in (14, 15):  # DISCONNECT, AUTH
            if len(b) > i:
                self.reason = b[i]
                if len(b) > i + 1:
                    self.props, _ = parse_props(b, i + 1)

    def __repr__(self):
        return f"<type {self.type} reason 0x{self.reason:02x} props {self.props} {self.raw!r}>"


class Raw5(RawClient):
    """RawClient speaking 5.0: connect5() returns the decoded CONNACK."""

    def packet(self, timeout=None):
        return Packet(self.recv_packet(timeout))

    def connect5(self, client_id, **kw):
        self.send(connect5(client_id, **kw))
        return self.packet()

    def expect(self, ptype, timeout=None):
        """The next packet, which must be of type ptype."""
        p = self.packet(timeout)
        assert p.type == ptype, f"want packet type {ptype}, got {p!r}"
        return p

    def subscribe(self, pid, filters, properties=b"\x00"):
        self.send(subscribe5(pid, filters, properties))
        ack = self.expect(9)
        assert ack.pid == pid
        return ack.codes

    def goodbye(self, timeout=None):
        """The server's DISCONNECT, then the connection must close; packets
        before the DISCONNECT are skipped. Returns the DISCONNECT."""
        deadline = time.monotonic() + (timeout or TIMEOUT)
        while True:
            p = self.packet(max(0.01, deadline - time.monotonic()))
            if p.type == 14:
                assert self.is_closed(TIMEOUT), "connection still open after DISCONNECT"
                return p

    def silent(self, wait=QUIET):
        """True if nothing arrives within wait seconds."""
        try:
            p = self.recv_packet(wait)
        except TimeoutError:
            return True
        raise AssertionError(f"unexpected packet {Packet(p)!r}")


def raw5_connected(port, client_id, properties=b"\x00", tls=None, **kw):
    c = Raw5(port, tls=tls)
    ack = c.connect5(client_id, properties=properties, **kw)
    assert ack.type == 2 and ack.reason == 0, ack
    return c


# ---------------------------------------------------------------- paho 5.0

def pprops(ptype=PacketTypes.PUBLISH, **fields):
    """paho Properties, e.g. pprops(MessageExpiryInterval=5)."""
    p = Properties(ptype)
    for k, v in fields.items():
        setattr(p, k, v)
    return p


class Client5:
    """paho-mqtt 1.6.1 in MQTTv5 mode, its own network thread, no automatic
    reconnect; each call waits for its acknowledgement."""

    def __init__(self, client_id="", tls=None, will=None, keepalive=60, username=None,
                 password=None, protocol=paho.MQTTv5):
        self.v5 = protocol == paho.MQTTv5
        self.c = paho.Client(client_id=client_id, protocol=protocol,
                             clean_session=None if self.v5 else True)
        self.keepalive = keepalive
        if tls is not None:
            self.c.tls_set(ca_certs=tls["cafile"], certfile=tls.get("certfile"),
                           keyfile=tls.get("keyfile"))
        if will is not None:
            topic, payload, qos, retain, wprops = will
            self.c.will_set(topic, payload, qos, retain, properties=wprops)
        if username is not None:
            self.c.username_pw_set(username, password)
        self.messages = queue.Queue()
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.reason = None
        self.connack_props = None
        self.session_present = None
        self._acks = {}
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = None
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = self._on_disconnect
        self.c.on_message = lambda c, u, m: self.messages.put(m)
        self.c.on_subscribe = self._on_subscribe

    def _on_connect(self, c, userdata, flags, rc, properties=None):
        self.reason = rc.value if hasattr(rc, "value") else rc
        self.connack_props = properties
        self.session_present = flags.get("session present")
        self.connected.set()

    def _on_disconnect(self, c, userdata, rc, properties=None):
        self.disconnected.set()

    def _on_subscribe(self, c, userdata, mid, granted, properties=None):
        with self._cond:
            self._acks[mid] = [g.value if hasattr(g, "value") else g for g in granted]
            self._cond.notify_all()

    def _run(self):
        while not self._stop.is_set():
            if self.c.loop(timeout=0.05) != paho.MQTT_ERR_SUCCESS:
                self.disconnected.set()
                return

    def connect(self, port, host="127.0.0.1", expect=0, clean_start=True, properties=None):
        """Connects; returns the CONNACK reason code (expect None: any)."""
        kw = {"clean_start": clean_start, "properties": properties} if self.v5 else {}
        self.c.connect(host, port, keepalive=self.keepalive, **kw)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.c._thread = self._thread  # see conftest.Client.connect
        self._thread.start()
        deadline = time.monotonic() + TIMEOUT
        while not self.connected.wait(0.05):
            if self.disconnected.is_set() and not self.connected.wait(0.2):
                raise AssertionError("connection closed without a CONNACK")
            assert time.monotonic() < deadline, "no CONNACK"
        if expect is not None:
            assert self.reason == expect, f"CONNACK reason {self.reason}, want {expect}"
        return self.reason

    def subscribe(self, topic, qos=0, properties=None, **opts):
        """Subscribes with options (noLocal, retainAsPublished, retainHandling)."""
        if self.v5:
            rc, mid = self.c.subscribe(topic, options=SubscribeOptions(qos=qos, **opts),
                                       properties=properties)
        else:
            rc, mid = self.c.subscribe(topic, qos)
        assert rc == paho.MQTT_ERR_SUCCESS, f"subscribe: {paho.error_string(rc)}"
        with self._cond:
            assert self._cond.wait_for(lambda: mid in self._acks, TIMEOUT), "no SUBACK"
            return self._acks.pop(mid)

    def publish(self, topic, payload, qos=0, retain=False, properties=None):
        info = self.c.publish(topic, payload, qos, retain, properties=properties)
        assert info.rc == paho.MQTT_ERR_SUCCESS, f"publish: {paho.error_string(info.rc)}"
        info.wait_for_publish(TIMEOUT)
        assert info.is_published(), f"publish qos {qos} not acknowledged"

    def get(self, timeout=TIMEOUT):
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("no message arrived") from None

    def drain(self, wait=QUIET):
        out = []
        deadline = time.monotonic() + wait
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return out
            try:
                out.append(self.messages.get(timeout=left))
            except queue.Empty:
                return out

    def disconnect(self, properties=None):
        """DISCONNECT (with properties, e.g. a new Session Expiry Interval)."""
        if self.connected.is_set() and not self.disconnected.is_set():
            self.c.disconnect(properties=properties)
            self.disconnected.wait(TIMEOUT)
        self.close()

    def close(self):
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(TIMEOUT)
        try:
            if self.c.socket() is not None:
                self.c.socket().close()
        except OSError:
            pass


def user_props(msg):
    """The user properties of a paho message as a list of pairs."""
    return list(getattr(msg.properties, "UserProperty", []) or [])


# Fixtures for modules whose broker has a plain listener (import them).
@pytest.fixture
def port(broker):
    """The module broker's plain MQTT port."""
    return broker.ports["plain"]


@pytest.fixture
def paho5(port):
    """Makes paho 5.0 clients connected to port; closes them after the test."""
    made = []

    def make(*a, **kw):
        c = Client5(*a, **kw)
        c.connect(port)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()
