# Cross-node messaging over NATS (issue #9 item 3): two certmq nodes, each
# with its own data_dir and SQLite database, joined by the session's
# nats-server. Real clients (mosquitto_pub/sub, paho 3.1.1 and 5.0) publish
# on one node and subscribe on the other.
import subprocess

import pytest

from cluster import await_route, nats, start_nodes  # noqa: F401
from conftest import TIMEOUT, Client, mosquitto_pub, unique_topic


@pytest.fixture(scope="module")
def nodes(tmp_path_factory, nats):  # noqa: F811
    a, b = start_nodes(tmp_path_factory, nats, ["a", "b"])
    yield a, b
    a.stop()
    b.stop()


@pytest.fixture
def clients():
    made = []

    def make(node, client_id="", **kw):
        c = Client(client_id, **kw)
        made.append(c)
        c.connect(node.mqtt_port)
        return c

    yield make
    for c in made:
        c.close()


def pub_on(node, qos=0, **kw):
    """A publish function for await_route: mosquitto_pub to node."""
    def publish(topic, payload):
        r = mosquitto_pub(node.mqtt_port, topic, payload.decode(), qos=qos, **kw)
        assert r.returncode == 0, r.stderr
    return publish


def test_qos0_crosses_nodes(nodes, clients):
    a, b = nodes
    topic = unique_topic("x")
    sub = clients(b, "sub-b")
    sub.subscribe(topic, 0)
    await_route(pub_on(a), sub, topic)
    assert mosquitto_pub(a.mqtt_port, topic, "hello from a").returncode == 0
    m = sub.get_on(topic)
    assert (m.payload, m.qos) == (b"hello from a", 0)
    assert sub.drain() == []
