# Durable sessions end to end: persistent sessions, their subscriptions and
# their queued and in-flight QoS 1/2 messages survive a clean restart and a
# kill -9 of the broker (checked message by message against what the
# publisher was acknowledged), expire across the downtime, keep 5.0
# subscription options; persistence off keeps nothing; a store that cannot be
# written makes the broker refuse QoS publishes instead of acknowledging them.
import os
import re
import sqlite3
import stat
import subprocess
import threading
import time
import uuid

import paho.mqtt.client as paho
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from conftest import (DISCONNECT, PINGREQ, QUIET, TIMEOUT, Broker, RawClient, publish_packet,
                      subscribe_packet, unique_topic)

FLOOD = 10000
KILL_AFTER = 2500  # acknowledgements the publisher has seen when the broker is killed
OPTIONS = {"max_queued": "20000", "max_inflight": "100"}


@pytest.fixture
def durable(tmp_path, certs):
    """A broker of its own per test (tests kill it), plain TCP only."""
    made = []

    def make(**options):
        b = Broker(tmp_path / f"broker{len(made)}", certs, {**OPTIONS, **options},
                   ("plain",)).start()
        made.append(b)
        return b

    yield make
    for b in made:
        b.stop()


def kill9(b):
    b.proc.kill()
    b.proc.wait()


def restart_after_kill(b):
    kill9(b)
    return b.start()


def numbers(n=FLOOD):
    return [f"{i:05d}" for i in range(1, n + 1)]


def wait_for(pred, timeout=TIMEOUT, what="condition"):
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def check_delivery(got, acked, exactly_once):
    """got: [(number, dup)] in arrival order. Every acknowledged number is
    there, nothing that was never sent, first arrivals in publish order, and
    a repeat only with DUP (QoS 1) or never (QoS 2)."""
    sent = set(range(1, FLOOD + 1))
    nums = [n for n, _ in got]
    assert set(nums) <= sent, "a number that was never published arrived"
    missing = sorted(acked - set(nums))
    assert not missing, f"{len(missing)} acknowledged messages lost, e.g. {missing[:10]}"
    seen, first = set(), []
    for n, dup in got:
        if n in seen:
            assert not exactly_once, f"QoS 2 message {n} delivered twice"
            assert dup, f"message {n} repeated without DUP"
        else:
            seen.add(n)
            first.append(n)
    assert first == sorted(first), "messages came back out of order"


# ---------------------------------------------------------------- paho helpers

class V5:
    """A paho MQTT 5.0 client on its own network thread (plain TCP)."""

    def __init__(self, client_id, expiry):
        self.c = paho.Client(client_id=client_id, protocol=paho.MQTTv5)
        self.expiry = expiry
        self.messages = []
        self.connected = threading.Event()
        self.session_present = None
        self.lock = threading.Lock()
        self.c.on_connect = self._on_connect
        self.c.on_message = self._on_message
        self.subacks = {}
        self.c.on_subscribe = lambda c, u, mid, rcs, p: self.subacks.__setitem__(mid, rcs)

    def _on_connect(self, c, u, flags, rc, props):
        self.session_present = flags.get("session present")
        self.rc = rc
        self.connected.set()

    def _on_message(self, c, u, m):
        with self.lock:
            self.messages.append(m)

    def connect(self, port):
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.expiry
        self.connected.clear()
        self.c.connect("127.0.0.1", port, clean_start=False, properties=props)
        self.c.loop_start()
        assert self.connected.wait(TIMEOUT), "no CONNACK"
        assert self.rc == 0
        return self

    def subscribe(self, topic, qos=1, sub_id=None, no_local=False):
        props = None
        if sub_id is not None:
            props = Properties(PacketTypes.SUBSCRIBE)
            props.SubscriptionIdentifier = sub_id
        _, mid = self.c.subscribe((topic, SubscribeOptions(qos=qos, noLocal=no_local)),
                                  properties=props)
        wait_for(lambda: mid in self.subacks, what="SUBACK")

    def wait_messages(self, n):
        wait_for(lambda: len(self.messages) >= n, what=f"{n} messages")
        return list(self.messages)

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def paho_flood(b, qos, topic):
    """A paho 3.1.1 publisher sends FLOOD numbered messages with many in
    flight; the broker is killed after KILL_AFTER acknowledgements. Returns
    the numbers the publisher saw acknowledged (PUBACK, or PUBCOMP)."""
    pub = paho.Client(client_id="flood-" + uuid.uuid4().hex[:6], protocol=paho.MQTTv311)
    pub.max_inflight_messages_set(100)
    acked, by_mid, lock = set(), {}, threading.Lock()
    enough = threading.Event()

    def on_publish(c, u, mid):
        with lock:
            acked.add(mid)
            if len(acked) >= KILL_AFTER:
                enough.set()

    pub.on_publish = on_publish
    pub.connect("127.0.0.1", b.ports["plain"])
    pub.loop_start()
    for n in range(1, FLOOD + 1):
        info = pub.publish(topic, f"{n:05d}", qos)
        by_mid[info.mid] = n
    assert enough.wait(TIMEOUT * 3), f"only {len(acked)} acknowledgements"
    kill9(b)
    pub.loop_stop()
    with lock:
        done = {by_mid[m] for m in acked}
    assert len(done) < FLOOD, "the flood ended before the kill; nothing was tested"
    return done


def paho_collect(sub, acked):
    """Messages of a reconnected conftest Client until every acknowledged
    number has arrived, then QUIET longer: [(number, dup)]."""
    got = []
    deadline = time.monotonic() + TIMEOUT * 3
    have = set()
    while not acked <= have:
        assert time.monotonic() < deadline, f"{len(acked - have)} acknowledged never arrived"
        try:
            m = sub.messages.get(timeout=0.5)
        except Exception:
            continue
        got.append((int(m.payload), m.dup))
        have.add(int(m.payload))
    got += [(int(m.payload), m.dup) for m in sub.drain()]
    return got


# ---------------------------------------------------------------- kill -9 during a flood

def test_mosquitto_clients_kill9_loses_nothing_acknowledged(durable):
    b = durable()
    port, topic, sub_id = b.ports["plain"], unique_topic("flood"), "msub-" + uuid.uuid4().hex[:6]
    base = ["-h", "127.0.0.1", "-p", str(port), "-V", "mqttv311"]
    r = subprocess.run(["mosquitto_sub", *base, "-c", "-q", "1", "-i", sub_id, "-t", topic,
                        "-E"], capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr

    lines = b.dir / "numbers.txt"
    lines.write_text("\n".join(numbers()) + "\n")
    with open(lines) as stdin:
        pub = subprocess.Popen(["stdbuf", "-oL", "mosquitto_pub", *base, "-q", "1", "-l", "-d",
                                "-M", "100", "-t", topic], stdin=stdin,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # mosquitto_pub numbers its packets 1, 2, ... in line order.
    acked, killed = set(), False
    for line in pub.stdout:
        m = re.search(r"received PUBACK \(Mid: (\d+), RC:0\)", line)
        if m:
            acked.add(int(m.group(1)))
        if len(acked) >= KILL_AFTER:
            kill9(b)
            killed = True
            break
    assert killed, f"mosquitto_pub ended after {len(acked)} acknowledgements"
    # The rest of what it printed: acknowledgements read before the kill.
    try:
        pub.wait(TIMEOUT)
    except subprocess.TimeoutExpired:
        pub.kill()
    out = pub.stdout.read()
    pub.wait()
    acked |= {int(x) for x in re.findall(r"received PUBACK \(Mid: (\d+), RC:0\)", out)}
    assert len(acked) < FLOOD, "the flood ended before the kill; nothing was tested"

    b.start()
    sub = subprocess.Popen(["stdbuf", "-oL", "mosquitto_sub", *base, "-c", "-q", "1", "-i",
                            sub_id, "-t", topic, "-d"], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    got, lock, dup = [], threading.Lock(), [None]

    def reader():
        for line in sub.stdout:
            m = re.search(r"received PUBLISH \(d(\d), q1", line)
            if m:
                dup[0] = m.group(1) == "1"
            elif re.fullmatch(r"\d{5}\n", line):
                with lock:
                    got.append((int(line), dup[0]))

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    wait_for(lambda: acked <= {n for n, _ in got}, TIMEOUT * 3,
             "every acknowledged message at the subscriber")
    time.sleep(QUIET)  # anything else (duplicates) arrives now or never
    sub.terminate()
    sub.wait(TIMEOUT)
    t.join(TIMEOUT)
    check_delivery(got, acked, exactly_once=False)


@pytest.mark.parametrize("qos", [1, 2])
def test_paho_kill9_loses_nothing_acknowledged(durable, clients, qos):
    b = durable()
    topic, cid = unique_topic("flood"), "psub-" + uuid.uuid4().hex[:6]
    sub = clients(cid, clean_session=False)
    sub.connect(b.ports["plain"])
    assert sub.subscribe(topic, qos=qos) == (qos,)
    sub.disconnect()

    acked = paho_flood(b, qos, topic)
    b.start()
    sub = clients(cid, clean_session=False)
    sub.connect(b.ports["plain"])
    assert sub.session_present
    check_delivery(paho_collect(sub, acked), acked, exactly_once=qos == 2)


# ---------------------------------------------------------------- restarts and expiry

def test_clean_restart_keeps_queues_and_subscriptions(durable, clients):
    b = durable()
    port = b.ports["plain"]
    t1, t2, cid = unique_topic("q1"), unique_topic("q2"), "keep-" + uuid.uuid4().hex[:6]
    sub = clients(cid, clean_session=False)
    sub.connect(port)
    assert sub.subscribe(t1, qos=1) == (1,)
    assert sub.subscribe(t2, qos=2) == (2,)
    sub.disconnect()
    pub = clients("keep-pub")
    pub.connect(port)
    for i in range(50):
        pub.publish(t1, f"a{i}", qos=1)
        pub.publish(t2, f"b{i}", qos=2)
    pub.disconnect()

    b.stop()
    b.start()
    # Published after the restart, before the subscriber is back: queued
    # only if its subscription came back.
    pub = clients("keep-pub2")
    pub.connect(port)
    pub.publish(t1, "after", qos=1)
    sub = clients(cid, clean_session=False)
    sub.connect(port)
    assert sub.session_present
    got = [sub.get() for _ in range(101)]
    assert [m.payload.decode() for m in got if m.topic == t1] == \
        [f"a{i}" for i in range(50)] + ["after"]
    assert [m.payload.decode() for m in got if m.topic == t2] == [f"b{i}" for i in range(50)]
    assert [m.qos for m in got if m.topic == t2] == [2] * 50
    assert sub.drain() == []


def test_session_expired_during_downtime_is_gone(durable, clients):
    b = durable()
    port, topic = b.ports["plain"], unique_topic("exp")
    short, long_ = V5("short-" + uuid.uuid4().hex[:6], 2), V5("long-" + uuid.uuid4().hex[:6], 300)
    for c in (short, long_):
        c.connect(port).subscribe(topic)
        c.close()
    pub = clients("exp-pub")
    pub.connect(port)
    pub.publish(topic, "queued", qos=1)  # acknowledged: both sessions' copies are stored
    pub.disconnect()

    kill9(b)
    time.sleep(3.2)  # the downtime outlasts the short session's 2 s expiry
    b.start()
    short.connect(port)
    assert not short.session_present, "an expired session came back"
    long_.connect(port)
    assert long_.session_present
    assert [m.payload for m in long_.wait_messages(1)] == [b"queued"]
    time.sleep(QUIET)
    assert short.messages == [], "the expired session's queue was delivered"
    short.close()
    long_.close()


def test_v5_subscription_options_survive_restart(durable, clients):
    b = durable()
    port, topic = b.ports["plain"], unique_topic("opts")
    c = V5("opts-" + uuid.uuid4().hex[:6], 300).connect(port)
    c.subscribe(topic, sub_id=7, no_local=True)
    c.close()
    pub = clients("opts-pub")
    pub.connect(port)
    pub.publish(topic, "before", qos=1)
    pub.disconnect()

    kill9(b)
    b.start()
    c.connect(port)
    assert c.session_present
    m = c.wait_messages(1)[0]
    assert (m.payload, m.properties.SubscriptionIdentifier) == (b"before", [7])
    c.c.publish(topic, "own", qos=1).wait_for_publish(TIMEOUT)  # no local: not back to it
    pub = clients("opts-pub2")
    pub.connect(port)
    pub.publish(topic, "after", qos=1)
    msgs = c.wait_messages(2)
    time.sleep(QUIET)
    assert [m.payload for m in c.messages] == [b"before", b"after"]
    assert msgs[1].properties.SubscriptionIdentifier == [7]
    c.close()


def test_in_flight_messages_come_back_with_dup(durable, clients):
    b = durable()
    port, topic, cid = b.ports["plain"], unique_topic("infl"), "infl-" + uuid.uuid4().hex[:6]
    raw = RawClient(port)
    assert raw.connect(cid, clean=False) == b"\x20\x02\x00\x00"
    raw.send(subscribe_packet(1, [(topic, 1)]))
    assert raw.recv_packet()[0] == 0x90
    pub = clients("infl-pub")
    pub.connect(port)
    for i in range(3):
        pub.publish(topic, f"m{i}", qos=1)
    first = [raw.recv_packet() for _ in range(3)]
    assert all(p[0] == 0x32 for p in first), first  # QoS 1, no DUP; never acknowledged
    db = b.dir / "var" / "sessions.db"

    def sent_in_store():
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
            return con.execute("SELECT count(*) FROM items WHERE state = 1").fetchone()[0]

    wait_for(lambda: sent_in_store() == 3, what="the sent state in sessions.db")
    raw.abort()

    restart_after_kill(b)
    raw = RawClient(port)
    assert raw.connect(cid, clean=False) == b"\x20\x02\x01\x00"  # session present
    again = [raw.recv_packet() for _ in range(3)]
    assert [p[0] for p in again] == [0x3A] * 3  # DUP set
    assert [p[2:] for p in again] == [p[2:] for p in first]  # same ids and payloads, in order
    for p in again:
        pid_at = 4 + int.from_bytes(p[2:4], "big")
        raw.send(b"\x40\x02" + p[pid_at:pid_at + 2])  # PUBACK
    raw.send(PINGREQ)  # answered in order: the acknowledgements were taken
    assert raw.recv_packet() == b"\xd0\x00"
    raw.send(DISCONNECT)
    raw.close()
    b.stop()
    b.start()
    raw = RawClient(port)
    assert raw.connect(cid, clean=False) == b"\x20\x02\x01\x00"
    assert raw.is_closed(QUIET) is False and raw.buf == b"", "acknowledged messages came back"
    raw.close()


# ---------------------------------------------------------------- the store itself

def test_persistence_off_keeps_nothing(durable, clients):
    b = durable(persistence="false")
    port, topic, cid = b.ports["plain"], unique_topic("off"), "off-" + uuid.uuid4().hex[:6]
    sub = clients(cid, clean_session=False)
    sub.connect(port)
    sub.subscribe(topic, qos=1)
    sub.disconnect()
    pub = clients("off-pub")
    pub.connect(port)
    pub.publish(topic, "x", qos=1)
    pub.disconnect()
    b.stop()
    b.start()
    sub = clients(cid, clean_session=False)
    sub.connect(port)
    assert not sub.session_present
    assert sub.drain() == []
    assert not (b.dir / "var" / "sessions.db").exists()


def test_database_files_are_private(durable, clients):
    b = durable()
    sub = clients("mode-sub", clean_session=False)
    sub.connect(b.ports["plain"])
    sub.subscribe(unique_topic("mode"), qos=1)  # a write: the WAL exists
    var = b.dir / "var"
    for name in ("sessions.db", "sessions.db-wal", "sessions.db-shm"):
        assert stat.S_IMODE(os.stat(var / name).st_mode) == 0o600, name


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB tmpfs for data_dir, so the test can fill it."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill ({r.stderr.strip()}); as root the "
                    "file modes cannot make the store unwritable")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def fill(mnt):
    """Fills the file system; returns the filler file."""
    filler = mnt / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while os.write(fd, b"\0" * 4096) > 0:
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    return filler


def v5_connect(port, cid):
    raw = RawClient(port)
    # CONNECT 5.0: clean start, no properties.
    body = (b"\x00\x04MQTT\x05\x02\x00\x3c\x00" + len(cid).to_bytes(2, "big") + cid.encode())
    raw.send(bytes([0x10, len(body)]) + body)
    ack = raw.recv_packet()
    assert ack[0] == 0x20 and ack[3] == 0, ack
    return raw


def v5_publish(raw, topic, payload, pid):
    t = topic.encode()
    body = len(t).to_bytes(2, "big") + t + pid.to_bytes(2, "big") + b"\x00" + payload
    raw.send(bytes([0x32]) + enc_var(len(body)) + body)


def enc_var(n):
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def puback(p):
    """{packet id: reason code} of a PUBACK."""
    assert p[0] == 0x40, p
    return {int.from_bytes(p[2:4], "big"): p[4] if p[1] > 2 else 0}


def test_full_disk_refuses_publishes_instead_of_dropping(small_disk, durable, clients):
    b = durable(data_dir=str(small_disk))
    port, topic, cid = b.ports["plain"], unique_topic("full"), "full-" + uuid.uuid4().hex[:6]
    # The subscriber's DISCONNECT is handled (the broker closes the
    # connection) before the next publish, so that its session's change is
    # in the commit that publish waits for, not in one after the disk fills.
    sub = RawClient(port)
    assert sub.connect(cid, clean=False) == b"\x20\x02\x00\x00"
    sub.send(subscribe_packet(1, [(topic, 1)]))
    assert sub.recv_packet() == b"\x90\x03\x00\x01\x01"
    sub.send(DISCONNECT)
    assert sub.is_closed()
    sub.close()
    pub = clients("full-pub")
    pub.connect(port)
    pub.publish(topic, b"0", qos=1)  # acknowledged: everything before it is committed
    pub.disconnect()
    big = b"x" * 100000  # needs new pages in the WAL

    filler = fill(small_disk)
    v5 = v5_connect(port, "full-pub5")
    v5_publish(v5, topic, b"1" + big, 1)  # its commit fails: no acknowledgement yet
    b.wait_log("the session store cannot be written")
    v5_publish(v5, topic, b"2" + big, 2)  # refused, answered after the held PUBACK 1
    fresh = v5_connect(port, "full-pub5b")
    v5_publish(fresh, topic, b"5" + big, 5)
    assert puback(fresh.recv_packet()) == {5: 0x97}
    fresh.close()
    v3 = RawClient(port)
    assert v3.connect("full-pub3") == b"\x20\x02\x00\x00"
    v3.send(publish_packet(topic, b"3" + big, qos=1, pid=3))
    assert v3.is_closed(), "a 3.1.1 publish the store cannot take was not refused"
    assert v3.buf == b"", "a 3.1.1 publish was acknowledged although it could not be stored"
    v3.close()

    filler.unlink()
    b.wait_log("takes writes again")
    assert "cannot rollback" not in b.stderr()
    assert puback(v5.recv_packet()) == {1: 0}  # the first one, now stored
    assert puback(v5.recv_packet()) == {2: 0x97}  # in the order of the PUBLISHes
    v5_publish(v5, topic, b"4" + big, 4)
    assert puback(v5.recv_packet()) == {4: 0}
    v5.close()
    b.stop()
    b.start()
    sub = clients(cid, clean_session=False)
    sub.connect(port)
    got = [m.payload[:1] for m in [sub.get(), sub.get(), sub.get()] + sub.drain()]
    assert got == [b"0", b"1", b"4"], "refused publishes must not arrive, accepted ones must"


def test_torn_write_at_the_end_of_the_wal_loses_nothing_committed(durable, clients):
    b = durable()
    port, topic, cid = b.ports["plain"], unique_topic("torn"), "torn-" + uuid.uuid4().hex[:6]
    sub = clients(cid, clean_session=False)
    sub.connect(port)
    sub.subscribe(topic, qos=1)
    sub.disconnect()
    pub = clients("torn-pub")
    pub.connect(port)
    for i in range(100):
        pub.publish(topic, f"{i}", qos=1)
    pub.disconnect()
    kill9(b)
    # A write cut short by the crash: part of a frame after the committed ones.
    wal = b.dir / "var" / "sessions.db-wal"
    assert wal.stat().st_size > 0
    with open(wal, "ab") as f:
        f.write(os.urandom(3000))
    b.start()
    sub = clients(cid, clean_session=False)
    sub.connect(port)
    assert sub.session_present
    assert [int(sub.get().payload) for _ in range(100)] == list(range(100))
    assert sub.drain() == []


def test_acknowledged_subscription_survives_kill9_at_once(durable, clients):
    # A long commit interval makes the window the test needs certain.
    b = durable(persistence_commit_interval="1000")
    port, topic, cid = b.ports["plain"], unique_topic("suback"), "suback-" + uuid.uuid4().hex[:6]
    sub = clients(cid, clean_session=False)
    sub.connect(port)
    assert sub.subscribe(topic, qos=1) == (1,)
    kill9(b)
    b.start()
    pub = clients("suback-pub")
    pub.connect(port)
    pub.publish(topic, "after", qos=1)
    sub = clients(cid, clean_session=False)
    sub.connect(port)
    assert sub.get(QUIET * 2).payload == b"after"


def test_stored_messages_no_session_holds_are_removed_at_start(durable, clients):
    b = durable()
    sub = clients("orphan-sub", clean_session=False)
    sub.connect(b.ports["plain"])
    sub.subscribe(unique_topic("orphan"), qos=1)  # the store exists, with a session
    sub.disconnect()
    b.stop()
    db = b.dir / "var" / "sessions.db"
    with sqlite3.connect(db) as con:  # as a crash between two deletions may leave it
        con.execute("INSERT INTO msgs VALUES(999999, 'a/b', 'left over', NULL, 1, 0, 0)")
    b.start()
    b.stop()
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT count(*) FROM msgs").fetchone()[0] == 0
    b.start()
