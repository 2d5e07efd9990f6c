# REST API under load and bad input: answers with 2,000 MQTT connections
# open (epoll, the process raises its own descriptor limit), refuses on the
# headers before reading a body (401/403/404/413, a shared body budget: 503),
# survives slow-header clients (per-address limit, header deadline), refuses
# ambiguous framing and NUL bytes with 400, listens dual-stack when given no
# address (MQTT too), and reloads its HTTPS certificate on SIGHUP.
import base64
import os
import re
import resource
import select
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from apiserver import ADMIN, ADMIN_PASSWORD, ApiServer, assert_json_error
from conftest import TIMEOUT, connect_packet, free_port

# The README's bound: unauthenticated uploads hold no body memory, so 50 of
# them (64 MB each) may not grow the process by more than this.
RSS_GROWTH_BOUND_KB = 48 * 1024


class RobustServer(ApiServer):
    """ApiServer with an HTTP API and a plain MQTT listener, both on every
    address (no address given), and extra options."""

    def __init__(self, workdir, options=None, https=None):
        super().__init__(workdir, options=options)
        self.mqtt_port = free_port()
        opts = {"data_dir": str(self.data), "allow_anonymous": "true",
                "max_connections": "5000"}
        opts.update(options or {})
        lines = [f"{k} {v}" for k, v in opts.items()]
        lines += ["", f"listener {self.port}", "protocol http"]
        if https:
            lines += [f"certfile {https[0]}", f"keyfile {https[1]}"]
            self.base = f"https://127.0.0.1:{self.port}"
        lines += ["", f"listener {self.mqtt_port}", "protocol mqtt"]
        self.conf.write_text("\n".join(lines) + "\n")

    def pid(self):
        return self.proc.pid

    def rss_kb(self):
        text = Path(f"/proc/{self.pid()}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+) kB", text).group(1))

    def wait_log(self, needle, start=0):
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            err = self.stderr()
            if needle in err[start:]:
                return
            time.sleep(0.05)
        pytest.fail(f"{needle!r} never logged\n{self.stderr()[-3000:]}")


def basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def raw_conn(port, source="127.0.0.1", host="127.0.0.1"):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    if fam == socket.AF_INET:
        s.bind((source, 0))
    s.settimeout(TIMEOUT)
    s.connect((host, port))
    return s


def read_until_closed(s, limit=1 << 20):
    """Everything the server sends until it closes (or TIMEOUT)."""
    data = b""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline and len(data) < limit:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            break
        except ConnectionResetError:
            break
        if not chunk:
            return data, True
        data += chunk
    return data, False


def read_head(s):
    """One response's status line and headers."""
    data = b""
    deadline = time.monotonic() + TIMEOUT
    while b"\r\n\r\n" not in data and time.monotonic() < deadline:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def status_of(data):
    m = re.match(rb"HTTP/1\.[01] (\d{3})", data)
    return int(m.group(1)) if m else None


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    # A soft descriptor limit under 2,000: the broker must raise its own.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))
    try:
        s = RobustServer(tmp_path_factory.mktemp("api-robust"),
                         options={"http_header_timeout": "3",
                                  "http_max_body_total": str(8 << 20),
                                  "http_max_body": str(4 << 20)}).start()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    yield s
    s.stop()


# ---------------------------------------------------------------- item 1

def test_process_raises_its_descriptor_limit(srv):
    limits = Path(f"/proc/{srv.pid()}/limits").read_text()
    m = re.search(r"Max open files\s+(\d+)\s+(\d+)", limits)
    assert m and m.group(1) == m.group(2), limits


def test_rest_answers_with_2000_mqtt_connections_open(srv):
    socks = []
    try:
        for i in range(2100):
            s = socket.create_connection(("127.0.0.1", srv.mqtt_port), timeout=TIMEOUT)
            s.sendall(connect_packet(f"load-{i}"))
            socks.append(s)
        for s in socks:  # every one is a live MQTT session
            assert s.recv(4)[:2] == b"\x20\x02"
        for _ in range(3):
            r = srv.call("GET", "/user/currentUser", ADMIN)
            assert r.status == 200, r
    finally:
        for s in socks:
            s.close()


# ---------------------------------------------------------------- item 2

def test_unauthenticated_uploads_are_refused_on_the_headers(srv):
    before = srv.rss_kb()
    socks = []
    try:
        for i in range(50):
            # 25 per source address: under the per-address limit
            s = raw_conn(srv.port, source=f"127.0.0.{10 + i % 2}")
            s.sendall(b"POST /devicecontrol/bulkNewDeviceRequests HTTP/1.1\r\n"
                      b"Host: x\r\nContent-Type: text/csv\r\n"
                      b"Content-Length: 67108864\r\n\r\n" + b"A" * (256 << 10))
            socks.append(s)
        for s in socks:
            head = read_head(s)
            assert status_of(head) == 401, head
        grown = srv.rss_kb() - before
        assert grown < RSS_GROWTH_BOUND_KB, f"RSS grew {grown} kB"
        assert srv.call("GET", "/user/currentUser", ADMIN).status == 200
    finally:
        for s in socks:
            s.close()


def test_route_role_and_length_are_decided_on_the_headers(srv):
    def head_only(path, auth, length):
        s = raw_conn(srv.port)
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n"
                  f"Content-Length: {length}\r\n\r\n".encode())
        status = status_of(read_head(s))
        s.close()
        return status

    admin = basic(*ADMIN)
    assert head_only("/no/such/route", admin, 1000) == 404
    assert head_only("/tenant/tenants", basic("management/admin", "wrong"), 1000) == 401
    assert head_only("/tenant/tenants", admin, 5 << 20) == 413
    r = srv.call("POST", "/tenant/tenants", ADMIN,
                 {"id": "early", "adminName": "a", "adminPass": "password-1"})
    assert r.status == 201, r
    # A tenant admin may not upload into another tenant: 403 before the body.
    assert head_only("/tenant/tenants/management/trusted-certificates",
                     basic("early/a", "password-1"), 1000) == 403


def test_bodies_of_all_connections_share_one_bound(srv):
    admin = basic(*ADMIN)

    def start_upload(length, expect):
        """A POST whose head is sent; with expect, waits for the server's
        100 Continue: its head was accepted and its budget taken."""
        s = raw_conn(srv.port)
        s.sendall(f"POST /tenant/tenants HTTP/1.1\r\nHost: x\r\nAuthorization: {admin}\r\n"
                  f"Content-Type: application/json\r\nContent-Length: {length}\r\n"
                  f"{'Expect: 100-continue' + chr(13) + chr(10) if expect else ''}\r\n"
                  .encode())
        if expect:
            assert status_of(read_head(s)) == 100
        s.sendall(b"{")
        return s

    # The budget is taken once the caller is known: with the password
    # verified (and so cached) first, the uploads are judged in order.
    assert srv.call("GET", "/user/currentUser", ADMIN).status == 200
    held = [start_upload(3 << 20, True), start_upload(3 << 20, True)]  # 6 of 8 MiB promised
    try:
        third = start_upload(3 << 20, False)
        assert status_of(read_head(third)) == 503
        third.close()
    finally:
        for s in held:
            s.close()
    # Released when the server has seen those connections close (an ASan
    # build on a loaded machine can take a while): a body fits again.
    deadline = time.monotonic() + 3 * TIMEOUT
    while True:
        r = srv.call("POST", "/tenant/tenants", ADMIN, data=b"x" * (3 << 20))
        if r.status != 503 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert_json_error(r, 400)


# ---------------------------------------------------------------- item 3

def test_slow_header_clients_do_not_block_others(srv):
    slow = []
    try:
        for _ in range(300):
            try:
                s = raw_conn(srv.port, source="127.0.0.2")
                s.setblocking(False)
                s.send(b"GET /user/currentUser HTTP/1.1\r\n")
                slow.append(s)
            except OSError:
                pass
        for rnd in range(3):
            for s in slow:
                try:
                    s.send(f"X-Slow-{rnd}: 1\r\n".encode())
                except OSError:
                    pass
            r = srv.call("GET", "/user/currentUser", ADMIN, timeout=5)
            assert r.status == 200, r
            time.sleep(1)
        # Only http_max_connections_per_ip (32) of them are held open.
        alive = 0
        for s in slow:
            try:
                if s.recv(1) == b"":
                    continue
            except BlockingIOError:
                alive += 1
            except OSError:
                continue
        assert alive <= 32, alive
    finally:
        for s in slow:
            s.close()


def test_a_request_head_has_a_deadline_even_when_bytes_trickle(srv):
    s = raw_conn(srv.port, source="127.0.0.3")
    s.sendall(b"GET /user/currentUser HTTP/1.1\r\n")
    start = time.monotonic()
    closed = False
    while time.monotonic() - start < 3 + TIMEOUT:
        try:
            s.sendall(b"X-Trickle: 1\r\n")
        except OSError:
            closed = True
            break
        r, _, _ = select.select([s], [], [], 0.5)
        if r:
            try:
                closed = s.recv(1024) == b""
            except OSError:
                closed = True
            if closed:
                break
    elapsed = time.monotonic() - start
    s.close()
    assert closed, "a trickling request head was never cut"
    # http_header_timeout is 3 s, counted from accept and checked once a
    # second: not cut at once, cut within the bound above.
    assert elapsed >= 1.5, elapsed


# ---------------------------------------------------------------- item 4

@pytest.mark.parametrize("framing", [
    b"Content-Length: 5\r\nContent-Length: 50\r\n",
    b"Content-Length: 50\r\nTransfer-Encoding: chunked\r\n",
    b"Transfer-Encoding: chunked\r\nContent-Length: 50\r\n",
])
def test_ambiguous_length_is_400_and_nothing_runs_after_it(srv, framing):
    smuggled = (b"GET /user/currentUser HTTP/1.1\r\nHost: x\r\n"
                b"Authorization: " + basic(*ADMIN).encode() + b"\r\n\r\n")
    s = raw_conn(srv.port)
    s.sendall(b"POST /tenant/tenants HTTP/1.1\r\nHost: x\r\n" + framing + b"\r\n"
              + b"0\r\n\r\n" + smuggled)
    data, closed = read_until_closed(s)
    s.close()
    assert status_of(data) == 400, data
    assert data.count(b"HTTP/1.1 ") == 1, data  # the leftover bytes never ran
    assert closed


def test_one_content_length_repeated_with_the_same_value_is_fine(srv):
    s = raw_conn(srv.port)
    s.sendall(b"POST /tenant/tenants HTTP/1.1\r\nHost: x\r\nAuthorization: "
              + basic(*ADMIN).encode()
              + b"\r\nContent-Length: 2\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
    data, _ = read_until_closed(s)
    s.close()
    assert status_of(data) == 422 or status_of(data) == 400, data


# ---------------------------------------------------------------- item 5

def test_nul_in_path_query_or_credentials_is_400(srv):
    assert_json_error(srv.call("GET", "/tenant/tenants/management%00x", ADMIN), 400)
    assert_json_error(srv.call("GET", "/tenant/tenants?pageSize=5%00", ADMIN), 400)
    nul_user = "Basic " + base64.b64encode(
        b"management/admin\x00junk:" + ADMIN_PASSWORD.encode()).decode()
    assert_json_error(srv.call("GET", "/user/currentUser", headers={"Authorization": nul_user}),
                      400)
    s = raw_conn(srv.port)
    s.sendall(b"GET /tenant/tenants/management\x00x HTTP/1.1\r\nHost: x\r\nAuthorization: "
              + basic(*ADMIN).encode() + b"\r\n\r\n")
    data, _ = read_until_closed(s)
    s.close()
    assert status_of(data) in (400, None), data
    # The same requests without the NUL are served.
    assert srv.call("GET", "/tenant/tenants/management", ADMIN).status == 200


# ---------------------------------------------------------------- item 18

def test_http_and_mqtt_without_address_listen_on_ipv4_and_ipv6(srv):
    for host in ("127.0.0.1", "[::1]"):
        r = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-u",
                            f"{ADMIN[0]}:{ADMIN[1]}", f"http://{host}:{srv.port}/user/currentUser"],
                           capture_output=True, timeout=TIMEOUT)
        assert r.stdout == b"200", (host, r)
    for fam, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        with socket.socket(fam, socket.SOCK_STREAM) as s:
            s.settimeout(TIMEOUT)
            s.connect((host, srv.mqtt_port))
            s.sendall(connect_packet(f"dual-{fam}"))
            assert s.recv(4) == b"\x20\x02\x00\x00"


# ---------------------------------------------------------------- item 17

def make_cert(d, name, cn="localhost"):
    key, pem = d / f"{name}.key", d / f"{name}.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj", f"/CN={cn}",
                    "-keyout", str(key), "-out", str(pem)], check=True, capture_output=True)
    serial = subprocess.run(["openssl", "x509", "-noout", "-serial", "-in", str(pem)],
                            check=True, capture_output=True, text=True).stdout.strip()
    return pem, key, serial


def served_serial(port):
    r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}",
                        "-servername", "localhost"], input=b"", capture_output=True,
                       timeout=TIMEOUT)
    pem = re.search(rb"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", r.stdout,
                    re.S)
    assert pem, r.stdout[-2000:] + r.stderr[-2000:]
    return subprocess.run(["openssl", "x509", "-noout", "-serial"], input=pem.group(0),
                          capture_output=True, check=True).stdout.decode().strip()


def test_sighup_reloads_the_https_certificate(tmp_path):
    pem_a, key_a, serial_a = make_cert(tmp_path, "a")
    pem_b, key_b, serial_b = make_cert(tmp_path, "b")
    live_pem, live_key = tmp_path / "live.pem", tmp_path / "live.key"
    live_pem.write_bytes(pem_a.read_bytes())
    live_key.write_bytes(key_a.read_bytes())
    s = RobustServer(tmp_path / "srv", https=(live_pem, live_key)).start()
    try:
        assert served_serial(s.port) == serial_a
        live_pem.write_bytes(pem_b.read_bytes())
        live_key.write_bytes(key_b.read_bytes())
        mark = len(s.stderr())
        s.proc.send_signal(signal.SIGHUP)
        s.wait_log("certificates and keys reloaded", mark)
        assert served_serial(s.port) == serial_b
        # A bad new file: logged, the current certificate stays.
        live_pem.write_text("not a certificate\n")
        mark = len(s.stderr())
        s.proc.send_signal(signal.SIGHUP)
        s.wait_log("http api reload failed", mark)
        assert served_serial(s.port) == serial_b
        r = subprocess.run(["curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", "-u",
                            f"{ADMIN[0]}:{ADMIN[1]}",
                            f"https://127.0.0.1:{s.port}/user/currentUser"],
                           capture_output=True, timeout=TIMEOUT)
        assert r.stdout == b"200", r
    finally:
        s.stop()
