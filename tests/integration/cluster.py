# Cluster kit for the test_cluster_*.py modules: a nats-server of the test
# session (started once, on a free port, restartable on the same port), and
# certmq nodes that carry messages between them over it. Each node has its
# own data_dir and SQLite database, a plain HTTP API listener (to set up the
# same tenants on every node) and a plain MQTT listener. A module imports the
# session fixture by name (`from cluster import nats`) to share the server.
import queue
import socket
import subprocess
import time

import pytest

from apiserver import ApiServer, make_tenant
from conftest import TIMEOUT, free_port, terminate


class NatsServer:
    """`nats-server -a 127.0.0.1 -p PORT`; kill() and start() again keep the port."""

    def __init__(self, workdir):
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.log = workdir / "nats.log"
        self.proc = None

    def start(self):
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(["nats-server", "-a", "127.0.0.1", "-p", str(self.port)],
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        deadline = time.monotonic() + TIMEOUT
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"nats-server exited with {self.proc.returncode}\n"
                            f"{self.log.read_text(errors='replace')[-3000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("nats-server never accepted")
                time.sleep(0.05)

    def kill(self):
        self.proc.kill()
        self.proc.wait()
        self.proc = None

    def stop(self):
        if self.proc is not None:
            terminate(self.proc)
            self.proc = None


@pytest.fixture(scope="session")
def nats(tmp_path_factory):
    """The session's NATS server (a test that kills it starts it again)."""
    n = NatsServer(tmp_path_factory.mktemp("nats")).start()
    yield n
    n.stop()


class ClusterNode(ApiServer):
    """`certmq serve` joined to a cluster: `cluster URL`, `node_id NAME`,
    anonymous plain MQTT on mqtt_port and the HTTP API on port."""

    def __init__(self, workdir, nats_url, node_id, options=None):
        opts = {"cluster": nats_url, "node_id": node_id, "allow_anonymous": "true",
                "log_level": "info", "max_queued": "5000"}
        opts.update(options or {})
        super().__init__(workdir, options=opts)
        self.mqtt_port = free_port()
        with open(self.conf, "a") as f:
            f.write(f"\nlistener {self.mqtt_port} 127.0.0.1\nprotocol mqtt\n")

    def start(self):
        super().start()
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.mqtt_port), timeout=0.5).close()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"MQTT listener never accepted\n{self.stderr()}")
                time.sleep(0.05)

    def tenant_user(self, tenant, user="app", password="app-secret-1"):
        """Makes the tenant and a user of it; returns the user's (login, password)."""
        admin = make_tenant(self, tenant)
        r = self.call("POST", f"/user/{tenant}/users", admin,
                      {"userName": user, "password": password,
                       "roles": ["ROLE_DEVICE_CONTROL_ADMIN"]})
        assert r.status == 201, r
        return (f"{tenant}/{user}", password)


def start_nodes(tmp_path_factory, nats, names, options=None):
    return [ClusterNode(tmp_path_factory.mktemp(f"node-{n}"), nats.url, n, options).start()
            for n in names]


def await_route(publish, receiver, topic, timeout=TIMEOUT):
    """Publishes b"probe <n>" on topic every 0.1 s until receiver (a
    conftest or mqtt5 Client) gets one: the subscriptions of its node have
    reached NATS. Then waits for the last probe sent (messages of one
    publishing node keep their order), so that no probe is left on its way."""
    deadline = time.monotonic() + timeout
    sent = 0
    while True:
        if time.monotonic() > deadline:
            pytest.fail(f"nothing published on {topic!r} crossed to the other node")
        sent += 1
        publish(topic, b"probe %d" % sent)
        try:
            m = receiver.messages.get(timeout=0.1)
        except queue.Empty:
            continue
        if not m.payload.startswith(b"probe "):
            pytest.fail(f"a message other than a probe arrived first: {m.topic} {m.payload!r}")
        break
    last = b"probe %d" % sent
    while m.payload != last:
        assert m.payload.startswith(b"probe "), (m.topic, m.payload)
        try:
            m = receiver.messages.get(timeout=max(0.01, deadline + TIMEOUT - time.monotonic()))
        except queue.Empty:
            pytest.fail(f"the last probe on {topic!r} never arrived")
