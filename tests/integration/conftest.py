# Integration fixtures for the certmq broker: a test PKI made once per session
# by certs.sh, the real binary started once per test module from a generated
# config file, and small MQTT clients (hand-built raw packets, paho-mqtt,
# mosquitto_pub/sub) that the test_broker_*.py modules share.
#
# A module tunes its broker with module-level BROKER_OPTIONS (global config
# directives) and BROKER_LISTENERS (names of listener kinds, see LISTENER_KINDS).
import os
import queue
import re
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as paho
import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CERTMQ_BIN = os.environ.get("CERTMQ_BIN", str(REPO / "build" / "certmq"))
# Upper bound for waiting on something that should happen (ASan builds are slow);
# waits that succeed return as soon as the event is seen.
TIMEOUT = float(os.environ.get("CERTMQ_TEST_TIMEOUT", "10"))
# How long a negative check ("nothing arrives") waits.
QUIET = 0.7

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")

DEFAULT_OPTIONS = {
    "allow_anonymous": "true",
    "max_packet_size": "1048576",
    "max_connections": "1000",
    "max_inflight": "20",
    "max_queued": "1000",
    "handshake_timeout": "10",
    "connect_timeout": "10",
}

# Listener kinds a module may ask for: plain TCP, TLS with optional client
# certificates checked against the static cafile, TLS requiring them.
LISTENER_KINDS = {
    "plain": None,
    "tls": "optional",
    "mtls": "required",
    "api": None,  # the HTTP API, plain
}


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "certmq_only: behaviour that mosquitto 2.0.11 (used to cross-check "
        "this suite) does not have or gets wrong")
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:paho")


_HANDED_OUT = set()


def free_port():
    """A port below the ephemeral range (so no client connection takes it
    before the broker binds it), free on every address, IPv4 and IPv6, and
    not handed out before in this test session (nor outside CERTMQ_PORTS)."""
    import random
    # CERTMQ_PORTS=LO-HI keeps suites that run side by side apart.
    lo, hi = (int(x) for x in os.environ.get("CERTMQ_PORTS", "20000-32000").split("-"))
    for _ in range(200):
        port = random.randrange(lo, hi)
        if port in _HANDED_OUT:
            continue
        try:
            with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
                s.bind(("::", port))
            _HANDED_OUT.add(port)
            return port
        except OSError:
            continue
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def default_ports_allowed():
    """May a test use the fixed default ports (8883, 8080)? Not in a suite
    that runs beside another (CERTMQ_DEFAULT_PORTS=0): only one may."""
    return os.environ.get("CERTMQ_DEFAULT_PORTS", "1") != "0"


def terminate(proc, timeout=10):
    """SIGTERM, then SIGKILL if the process has not exited within timeout;
    returns its exit status."""
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def unique_topic(prefix="t"):
    return f"{prefix}/{uuid.uuid4().hex[:12]}"


# ---------------------------------------------------------------- PKI

class Certs:
    """Paths of the files certs.sh makes (see its header)."""

    def __init__(self, d):
        self.dir = Path(d)

    def __getattr__(self, name):
        # certs.ca_pem -> DIR/ca.pem, certs.device1_key -> DIR/device1.key,
        # certs.device1_chain -> DIR/device1_chain.pem
        if name.endswith("_pem"):
            p = self.dir / (name[:-4] + ".pem")
        elif name.endswith("_key"):
            p = self.dir / (name[:-4] + ".key")
        elif name.endswith("_chain"):
            p = self.dir / (name + ".pem")
        else:
            raise AttributeError(name)
        if not p.exists():
            raise AttributeError(f"{name}: {p} missing")
        return str(p)


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    r = subprocess.run(["bash", str(HERE / "certs.sh"), str(d)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, f"certs.sh failed:\n{r.stdout}\n{r.stderr}"
    return Certs(d)


# ---------------------------------------------------------------- broker process

class Broker:
    """One running `certmq serve` with its config, ports and output files."""

    def __init__(self, workdir, certs, options=None, listeners=("plain", "tls", "mtls"),
                 listener_options=None):
        self.dir = Path(workdir)
        self.listener_options = listener_options or {}  # {"plain": {"proxy_protocol": "true"}}
        self.dir.mkdir(parents=True, exist_ok=True)
        self.certs = certs
        self.ports = {name: free_port() for name in listeners}
        # The broker serves copies of the server certificate so a module may
        # replace them (SIGHUP reload) without touching the shared PKI.
        self.server_pem = str(self.dir / "server.pem")
        self.server_key = str(self.dir / "server.key")
        shutil.copyfile(certs.server_pem, self.server_pem)
        shutil.copyfile(certs.server_key, self.server_key)
        os.chmod(self.server_key, 0o600)
        opts = dict(DEFAULT_OPTIONS)
        opts["data_dir"] = str(self.dir / "var")
        opts.update(options or {})
        self.conf = self.dir / "certmq.conf"
        self.conf.write_text(self._config_text(opts))
        self.stdout_path = self.dir / "stdout.log"
        self.stderr_path = self.dir / "stderr.log"
        self.proc = None

    def _config_text(self, opts):
        lines = ["# certmq integration test broker"]
        lines += [f"{k} {v}" for k, v in opts.items()]
        for name, port in self.ports.items():
            lines.append("")
            lines.append(f"listener {port} 127.0.0.1")
            mode = LISTENER_KINDS[name]
            if name == "api":
                lines.append("protocol http")
            if mode is not None:
                lines.append(f"certfile {self.server_pem}")
                lines.append(f"keyfile {self.server_key}")
                lines.append(f"cafile {self.certs.ca_pem}")
                lines.append(f"client_certificates {mode}")
            lines += [f"{k} {v}" for k, v in self.listener_options.get(name, {}).items()]
        return "\n".join(lines) + "\n"

    def start(self):
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                [CERTMQ_BIN, "serve", "--config", str(self.conf)], cwd=self.dir,
                stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        deadline = time.monotonic() + TIMEOUT
        pending = dict(self.ports)
        while pending:
            if self.proc.poll() is not None:
                pytest.fail(f"certmq exited with {self.proc.returncode} at startup\n"
                            f"config:\n{self.conf.read_text()}\nstderr:\n{self.stderr()}")
            for name, port in list(pending.items()):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    del pending[name]
                except OSError:
                    pass
            if pending and time.monotonic() > deadline:
                self.proc.kill()
                pytest.fail(f"listeners {pending} never accepted\nstderr:\n{self.stderr()}")
            if pending:
                time.sleep(0.05)
        return self

    def stderr(self):
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def wait_log(self, text, seen=0):
        """Waits until stderr holds text more than `seen` times."""
        deadline = time.monotonic() + TIMEOUT
        while self.stderr().count(text) <= seen:
            if time.monotonic() > deadline:
                pytest.fail(f"no log line with {text!r}\nstderr:\n{self.stderr()[-5000:]}")
            time.sleep(0.05)

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self):
        """SIGTERM; the broker must exit 0 within 10 s with sanitizer-clean stderr."""
        if self.proc is None:
            return
        problems = []
        if self.proc.poll() is not None:
            problems.append(f"certmq died during the tests (exit {self.proc.returncode})")
        else:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout=10)
                if rc != 0:
                    problems.append(f"exit status {rc} after SIGTERM (want 0)")
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                problems.append("did not exit within 10 s of SIGTERM")
        err = self.stderr()
        for marker in SANITIZER_MARKERS:
            if marker in err:
                problems.append(f"sanitizer report in stderr ({marker!r})")
        self.proc = None
        if problems:
            pytest.fail("; ".join(problems) + f"\nstderr:\n{err[-20000:]}")


@pytest.fixture(scope="module")
def broker(request, tmp_path_factory, certs):
    """The module's broker: BROKER_OPTIONS / BROKER_LISTENERS from the module."""
    options = getattr(request.module, "BROKER_OPTIONS", {})
    listeners = getattr(request.module, "BROKER_LISTENERS", ("plain", "tls", "mtls"))
    b = Broker(tmp_path_factory.mktemp("broker"), certs, options, listeners).start()
    yield b
    b.stop()


# ---------------------------------------------------------------- raw MQTT packets

def enc_len(n):
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def mqtt_str(s):
    b = s.encode() if isinstance(s, str) else s
    return len(b).to_bytes(2, "big") + b


def packet(first_byte, body):
    return bytes([first_byte]) + enc_len(len(body)) + body


def connect_packet(client_id, clean=True, keepalive=60, will=None, username=None,
                   password=None, level=4, proto=b"MQTT", extra_flags=0):
    """CONNECT; will = (topic, payload, qos, retain). extra_flags ORs raw bits."""
    flags = extra_flags
    if clean:
        flags |= 0x02
    payload = mqtt_str(client_id)
    if will is not None:
        topic, msg, qos, retain = will
        flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
        payload += mqtt_str(topic) + mqtt_str(msg)
    if username is not None:
        flags |= 0x80
        payload += mqtt_str(username)
    if password is not None:
        flags |= 0x40
        payload += mqtt_str(password)
    var = mqtt_str(proto) + bytes([level, flags]) + keepalive.to_bytes(2, "big")
    return packet(0x10, var + payload)


def publish_packet(topic, payload, qos=0, retain=False, pid=None, dup=False):
    first = 0x30 | (qos << 1) | (0x01 if retain else 0) | (0x08 if dup else 0)
    body = mqtt_str(topic)
    if qos:
        body += (pid if pid is not None else 1).to_bytes(2, "big")
    return packet(first, body + (payload.encode() if isinstance(payload, str) else payload))


def subscribe_packet(pid, topics, first_byte=0x82):
    body = pid.to_bytes(2, "big")
    for topic, qos in topics:
        body += mqtt_str(topic) + bytes([qos])
    return packet(first_byte, body)


def unsubscribe_packet(pid, topics):
    body = pid.to_bytes(2, "big") + b"".join(mqtt_str(t) for t in topics)
    return packet(0xA2, body)


PINGREQ = b"\xc0\x00"
DISCONNECT = b"\xe0\x00"
CONNACK_OK = b"\x20\x02\x00\x00"


class RawClient:
    """A byte-level MQTT client over TCP or TLS, for exact wire checks."""

    def __init__(self, port, tls=None, timeout=TIMEOUT, source=None):
        """tls: None, or dict(cafile=..., certfile=..., keyfile=...); source: a
        loopback address to connect from (e.g. 127.0.0.2)."""
        self.timeout = timeout
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                        source_address=(source, 0) if source else None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls is not None:
            ctx = tls_context(**tls)
            sock = ctx.wrap_socket(sock, server_hostname="localhost")
        self.sock = sock
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, n, deadline):
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"waited for {n} bytes, have {self.buf!r}")
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(f"connection closed; have {self.buf!r}")
            self.buf += chunk

    def recv_bytes(self, n, timeout=None):
        self._fill(n, time.monotonic() + (timeout or self.timeout))
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv_packet(self, timeout=None):
        """One whole packet as raw bytes (fixed header included)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        self._fill(2, deadline)
        n, mult, i = 0, 1, 1
        while True:
            self._fill(i + 1, deadline)
            b = self.buf[i]
            n += (b & 0x7F) * mult
            mult *= 128
            i += 1
            if not b & 0x80:
                break
        self._fill(i + n, deadline)
        out, self.buf = self.buf[:i + n], self.buf[i + n:]
        return out

    def connect(self, client_id, **kw):
        """Sends CONNECT and returns the raw CONNACK packet."""
        self.send(connect_packet(client_id, **kw))
        return self.recv_packet()

    def is_closed(self, timeout=None):
        """True if the server closes the connection within timeout (data before
        the close is discarded); False if it is still open then."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except (socket.timeout, TimeoutError):
                return False
            except (ConnectionResetError, BrokenPipeError, ssl.SSLError, OSError):
                return True
            if not chunk:
                return True
            self.buf += chunk

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def abort(self):
        """Closes the TCP connection without DISCONNECT (RST, no FIN handshake)."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                 b"\x01\x00\x00\x00\x00\x00\x00\x00")
        except OSError:
            pass
        self.close()


def tls_context(cafile, certfile=None, keyfile=None):
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
    ctx.check_hostname = True
    if certfile:
        ctx.load_cert_chain(certfile, keyfile)
    return ctx


def raw_connected(port, client_id, tls=None, **kw):
    """A RawClient that has completed CONNECT with CONNACK accepted."""
    c = RawClient(port, tls=tls)
    ack = c.connect(client_id, **kw)
    assert ack[:2] == b"\x20\x02" and ack[3] == 0, f"CONNACK {ack!r}"
    return c


# ---------------------------------------------------------------- paho-mqtt

class Client:
    """paho-mqtt 1.6.1 client with a private network thread and no automatic
    reconnect; every call waits for its acknowledgement."""

    def __init__(self, client_id="", clean_session=True, tls=None, will=None,
                 keepalive=60, username=None, password=None):
        self.c = paho.Client(client_id=client_id, clean_session=clean_session,
                             protocol=paho.MQTTv311)
        self.keepalive = keepalive
        if tls is not None:
            self.c.tls_set(ca_certs=tls["cafile"], certfile=tls.get("certfile"),
                           keyfile=tls.get("keyfile"))
        if will is not None:
            topic, payload, qos, retain = will
            self.c.will_set(topic, payload, qos, retain)
        if username is not None:
            self.c.username_pw_set(username, password)
        self.messages = queue.Queue()
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.connack_rc = None
        self.session_present = None
        self.disconnect_rc = None
        self._subacks = {}
        self._sub_event = threading.Condition()
        self._stop = threading.Event()
        self._thread = None
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = self._on_disconnect
        self.c.on_message = lambda c, u, m: self.messages.put(m)
        self.c.on_subscribe = self._on_subscribe

    def _on_connect(self, c, userdata, flags, rc):
        self.connack_rc = rc
        self.session_present = flags.get("session present")
        self.connected.set()

    def _on_disconnect(self, c, userdata, rc):
        self.disconnect_rc = rc
        self.disconnected.set()

    def _on_subscribe(self, c, userdata, mid, granted):
        with self._sub_event:
            self._subacks[mid] = granted
            self._sub_event.notify_all()

    def _run(self):
        while not self._stop.is_set():
            if self.c.loop(timeout=0.05) != paho.MQTT_ERR_SUCCESS:
                if not self.disconnected.is_set():
                    self.disconnected.set()
                return

    def connect(self, port, host="127.0.0.1", expect_rc=0):
        """Connects and returns the CONNACK return code. A CONNACK must arrive:
        a connection closed without one (a crash, a dropped connection) fails
        the test at once, whatever expect_rc; with expect_rc (None: any code)
        its return code must be that."""
        self.c.connect(host, port, keepalive=self.keepalive)
        self._thread = threading.Thread(target=self._run, daemon=True)
        # paho 1.6.1 writes a queued packet from the calling thread unless it
        # knows of a network thread; two threads writing one TLS connection at
        # once corrupt it (SSL "bad length"). Telling paho about ours makes
        # publish/subscribe/disconnect hand their packets to it instead.
        self.c._thread = self._thread
        self._thread.start()
        deadline = time.monotonic() + TIMEOUT
        while not self.connected.wait(0.05):
            # A close may be seen just before the CONNACK read with it.
            if self.disconnected.is_set() and not self.connected.wait(0.2):
                raise AssertionError("connection closed without a CONNACK")
            assert time.monotonic() < deadline, "no CONNACK"
        if expect_rc is not None:
            assert self.connack_rc == expect_rc, f"CONNACK rc {self.connack_rc}, want {expect_rc}"
        return self.connack_rc

    def subscribe(self, topic, qos=0):
        rc, mid = self.c.subscribe(topic, qos)
        assert rc == paho.MQTT_ERR_SUCCESS, f"subscribe: {paho.error_string(rc)}"
        with self._sub_event:
            assert self._sub_event.wait_for(lambda: mid in self._subacks, TIMEOUT), "no SUBACK"
            return self._subacks.pop(mid)

    def unsubscribe(self, topic):
        done = threading.Event()
        self.c.on_unsubscribe = lambda c, u, mid: done.set()
        rc, _ = self.c.unsubscribe(topic)
        assert rc == paho.MQTT_ERR_SUCCESS
        assert done.wait(TIMEOUT), "no UNSUBACK"

    def publish(self, topic, payload, qos=0, retain=False):
        info = self.c.publish(topic, payload, qos, retain)
        assert info.rc == paho.MQTT_ERR_SUCCESS, f"publish: {paho.error_string(info.rc)}"
        info.wait_for_publish(TIMEOUT)
        assert info.is_published(), f"publish qos {qos} not acknowledged"

    def get(self, timeout=TIMEOUT):
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("no message arrived") from None

    def get_on(self, topic, timeout=TIMEOUT):
        """The next message on topic; messages on other topics are dropped."""
        deadline = time.monotonic() + timeout
        while True:
            m = self.get(max(0.01, deadline - time.monotonic()))
            if m.topic == topic:
                return m

    def drain(self, wait=QUIET):
        """All messages that arrive within wait seconds."""
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

    def disconnect(self):
        if self.connected.is_set() and not self.disconnected.is_set():
            self.c.disconnect()
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


@pytest.fixture
def clients():
    """Makes Client objects and closes them after the test."""
    made = []

    def make(*args, **kw):
        c = Client(*args, **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


@pytest.fixture
def raws():
    """Makes RawClient objects and closes them after the test."""
    made = []

    def make(*args, **kw):
        c = RawClient(*args, **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def tls_server_only(certs):
    return {"cafile": certs.ca_pem}


def tls_device(certs, name="device1", chain=False):
    return {"cafile": certs.ca_pem,
            "certfile": getattr(certs, f"{name}_chain" if chain else f"{name}_pem"),
            "keyfile": getattr(certs, f"{name}_key")}


# ---------------------------------------------------------------- mosquitto clients

# What mosquitto_pub/sub print for each CONNACK refusal code (3.1.1 table 3.1).
MOSQUITTO_REFUSALS = {
    1: r"unacceptable protocol version",
    2: r"identifier rejected",
    3: r"broker unavailable",
    4: r"bad user name or password",
    5: r"not authori[sz]ed",
}


def assert_mosquitto_refused(r, rc=5):
    """mosquitto_pub/sub (a CompletedProcess) got a CONNACK refusing with rc:
    it prints the refusal and exits non-zero. A connection closed without a
    CONNACK prints something else and fails."""
    out = r.stdout + r.stderr
    assert r.returncode != 0, (r.stdout, r.stderr)
    assert re.search(r"Connection Refused: " + MOSQUITTO_REFUSALS[rc], out, re.I), \
        f"no CONNACK {rc} refusal in mosquitto client output: {out!r}"


def mosquitto_tls_args(tls):
    if tls is None:
        return []
    args = ["--cafile", tls["cafile"]]
    if tls.get("certfile"):
        args += ["--cert", tls["certfile"], "--key", tls["keyfile"]]
    return args


def mosquitto_pub(port, topic, message, qos=0, client_id=None, tls=None, retain=False):
    cmd = ["mosquitto_pub", "-h", "localhost" if tls else "127.0.0.1", "-p", str(port),
           "-t", topic, "-m", message, "-q", str(qos), "-V", "mqttv311"]
    if client_id:
        cmd += ["-i", client_id]
    if retain:
        cmd.append("-r")
    cmd += mosquitto_tls_args(tls)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT + 5)


class MosquittoSub:
    """mosquitto_sub in the background; ready() waits until it is subscribed."""

    def __init__(self, port, topic, count=1, qos=0, client_id=None, tls=None):
        self.port = port
        cmd = ["mosquitto_sub", "-h", "localhost" if tls else "127.0.0.1", "-p", str(port),
               "-t", topic, "-q", str(qos), "-C", str(count), "-W", str(int(TIMEOUT) + 5),
               "-V", "mqttv311", "-v"]
        if client_id:
            cmd += ["-i", client_id]
        cmd += mosquitto_tls_args(tls)
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)

    def receive(self, publish):
        """Calls publish() every 0.2 s until mosquitto_sub has printed its
        message(s) and exited (it cannot tell us when it is subscribed).
        Returns (exit status, stdout, stderr)."""
        deadline = time.monotonic() + TIMEOUT
        while self.proc.poll() is None and time.monotonic() < deadline:
            publish()
            try:
                self.proc.wait(0.2)
            except subprocess.TimeoutExpired:
                pass
        if self.proc.poll() is None:
            self.proc.kill()
        out, err = self.proc.communicate(timeout=TIMEOUT)
        return self.proc.returncode, out, err
