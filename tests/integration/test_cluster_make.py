# `make cluster` (issue 9 item 6): scripts/cluster.sh brings up PostgreSQL,
# NATS, three nodes and HAProxy on the default ports, and the README's
# "From zero to a connected device" lines run through HAProxy unchanged
# (HAProxy balances by least connections, so the subscriber and the device
# are on different nodes and the message crosses between them). Then
# a node killed with -9: devices connect through HAProxy to the others at
# once, a device whose TLS session node 1 made resumes it on another node,
# and a message still crosses between the nodes left; a persistent session
# on a killed node is taken over from PostgreSQL with the QoS 1 messages
# queued for it. Then
# `cluster.sh down` stops everything. The ports are the walkthrough's
# (8883, 8080), so only a suite allowed the default ports runs it.
import hashlib
import os
import signal
import socket
import ssl
import struct
import subprocess
import time
from pathlib import Path

import pytest

from conftest import CERTMQ_BIN, TIMEOUT, default_ports_allowed
from test_pki_broker import ZERO_TO_DEVICE, walk_message_arrives, walk_setup

REPO = Path(__file__).resolve().parents[2]
CLUSTER = str(REPO / "scripts" / "cluster.sh")
PORTS = (8883, 8080, 4222, 18831, 18832, 18833, 18081, 18082, 18083)

pytestmark = pytest.mark.certmq_only


def port_free(port):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


@pytest.fixture
def cluster(tmp_path):
    if not default_ports_allowed():
        pytest.skip("the default ports belong to the other suite (CERTMQ_DEFAULT_PORTS=0)")
    taken = [p for p in PORTS if not port_free(p)]
    if taken:
        pytest.skip(f"ports {taken} are taken here")
    env = {**os.environ, "CERTMQ_VAR": str(tmp_path / "var"), "CERTMQ_BIN": CERTMQ_BIN}
    env.pop("CERTMQ_ADMIN_PASSWORD", None)
    r = subprocess.run(["bash", CLUSTER, "up"], env=env, capture_output=True, text=True,
                       timeout=180)
    try:
        assert r.returncode == 0, r.stdout + r.stderr
        assert "cluster: up" in r.stdout, r.stdout
        yield tmp_path
    finally:
        d = subprocess.run(["bash", CLUSTER, "down"], env=env, capture_output=True, text=True,
                           timeout=120)
        assert d.returncode == 0, d.stdout + d.stderr
        assert all(port_free(p) for p in PORTS), "something still listens after down"


PROXY_V2 = b"\r\n\r\n\x00\r\nQUIT\n"


def device_context(cwd):
    dev = cwd / "var" / "devices"
    ctx = ssl.create_default_context(cafile=str(cwd / "var" / "dev-ca" / "ca.pem"))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(str(dev / "sensor-1.chain.pem"), str(dev / "sensor-1.key"))
    return ctx


def device_session(ctx, port, session=None, proxy=False):
    """sensor-1's MQTT CONNECT over mutual TLS (straight to a node's
    PROXY-protocol listener when proxy is set): (CONNACK code, the session
    with its ticket, whether the handshake resumed)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    if proxy:  # PROXY v2, TCP over IPv4, from 127.0.0.1:40000 to the node
        addrs = socket.inet_aton("127.0.0.1") * 2 + struct.pack("!HH", 40000, port)
        raw.sendall(PROXY_V2 + b"\x21\x11" + struct.pack("!H", len(addrs)) + addrs)
    s = ctx.wrap_socket(raw, server_hostname="localhost", session=session)
    try:
        var = b"\x00\x04MQTT\x04\x02\x00\x3c\x00\x08sensor-1"
        s.sendall(bytes([0x10, len(var)]) + var)
        ack = b""
        while len(ack) < 4:
            chunk = s.recv(4 - len(ack))
            if not chunk:
                break
            ack += chunk
        rc = ack[3] if len(ack) == 4 and ack[0] == 0x20 else None
        sess, reused = s.session, s.session_reused
        if rc == 0:
            s.sendall(b"\xe0\x00")
        return rc, sess, reused
    finally:
        s.close()


def in_repo(line):
    return line.replace("./build/certmq", CERTMQ_BIN)


def test_make_cluster_runs_the_readme_walkthrough_through_haproxy(cluster):
    cwd = cluster
    assert ZERO_TO_DEVICE[0] == "make run"
    walk_setup(cwd, in_repo)
    walk_message_arrives(cwd, in_repo)
    # The device was registered once, in the shared store, whichever node it reached.
    logs = "".join((cwd / "var" / "cluster" / f"node{n}.log").read_text() for n in (1, 2, 3))
    assert logs.count("device sensor-1 registered on first connect") == 1, logs[-3000:]


def test_devices_connect_through_haproxy_after_a_node_is_killed(cluster):
    cwd = cluster
    walk_setup(cwd, in_repo)  # the CA trusted, the device issued
    ctx = device_context(cwd)
    rc, session, _ = device_session(ctx, 18831, proxy=True)  # node 1 itself
    assert rc == 0 and session.has_ticket
    pid = int((cwd / "var" / "cluster" / "node1.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    pub = in_repo(ZERO_TO_DEVICE[5])
    sub = subprocess.Popen(["bash", "-c", "exec " + ZERO_TO_DEVICE[4] + " -C 1"], cwd=cwd,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # Every connect right after the kill succeeds: HAProxy passes a
        # refused one on to another node before its checks notice.
        for _ in range(6):
            r = subprocess.run(["bash", "-c", pub], cwd=cwd, capture_output=True, text=True,
                               timeout=30)
            assert r.returncode == 0, r.stderr
        out, err = sub.communicate(timeout=TIMEOUT)
        assert "demo/hello hello from sensor-1" in out, err
        # Node 1's ticket resumes on the node HAProxy picks now (tls_tickets store).
        rc, _, reused = device_session(ctx, 8883, session=session)
        assert reused, "the session of the dead node did not resume on another node"
        assert rc == 0
    finally:
        sub.kill()
        sub.wait()


def shell(cwd, cmd, timeout=30):
    r = subprocess.run(["bash", "-c", cmd], cwd=cwd, capture_output=True, text=True,
                       timeout=timeout)
    assert r.returncode == 0, r.stderr
    return r.stdout


def queued_on(cwd, client_id):
    """{node number: QoS 1/2 messages queued for client_id in its session schema}."""
    pgdir = (cwd / "var" / "cluster" / "pgdir").read_text().strip()
    uri = f"postgresql://postgres@127.0.0.1:{Path(pgdir, 'port').read_text().strip()}/certmq"
    out = {}
    for n in (1, 2, 3):
        schema = "certmq_sess_" + hashlib.sha256(f"node{n}".encode()).hexdigest()[:16]
        q = (f"SELECT count(*) FROM {schema}.sess_items i JOIN {schema}.sess_sessions s"
             f" ON s.key = i.key WHERE s.client_id = '{client_id}'::bytea")
        out[n] = int(shell(cwd, f"psql -X -tA '{uri}' -c \"{q}\"").strip())
    return out


def test_a_persistent_session_is_taken_over_when_its_node_is_killed(cluster):
    cwd = cluster
    walk_setup(cwd, in_repo)
    watch = ZERO_TO_DEVICE[4] + " -c -i ops-watch -q 1"
    shell(cwd, watch + " -E")  # subscribed, then gone: the session stays on its node
    for i in range(5):
        shell(cwd, in_repo(ZERO_TO_DEVICE[5]).replace("-m 'hello from sensor-1'",
                                                     f"-q 1 -m 'kept {i}'"))
    deadline = time.monotonic() + TIMEOUT
    while 5 not in (counts := queued_on(cwd, "ops-watch")).values():
        assert time.monotonic() < deadline, counts
        time.sleep(0.1)
    holder = next(n for n, c in counts.items() if c == 5)
    os.kill(int((cwd / "var" / "cluster" / f"node{holder}.pid").read_text()), signal.SIGKILL)
    out = shell(cwd, watch + " -C 5 -W 20", timeout=40)
    assert out.split("\n")[:5] == [f"demo/hello kept {i}" for i in range(5)], out
