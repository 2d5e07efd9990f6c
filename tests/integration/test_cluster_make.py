# `make cluster` (issue 9 item 6): scripts/cluster.sh brings up PostgreSQL,
# NATS, three nodes and HAProxy on the default ports, and the README's
# "From zero to a connected device" lines run through HAProxy unchanged
# (HAProxy balances by least connections, so the subscriber and the device
# are on different nodes and the message crosses between them). Then
# a node killed with -9: devices connect through HAProxy to the others at
# once, and a message still crosses between the nodes left. Then
# `cluster.sh down` stops everything. The ports are the walkthrough's
# (8883, 8080), so only a suite allowed the default ports runs it.
import os
import signal
import socket
import subprocess
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
    finally:
        sub.kill()
        sub.wait()
