# One ClientId, one connection, cluster-wide (issue #9 item 4): two certmq
# nodes joined by the session's nats-server, each with its own data_dir.
# A client that connects on node B while its old connection is on node A
# takes over (A closes the old one, 0x8E in 5.0), and its persistent
# session (subscriptions, queued and in-flight QoS 1/2 messages) moves to B
# with it. Real clients: paho 3.1.1 and 5.0, mosquitto_sub, and raw 5.0
# packets where the wire must be checked (DISCONNECT reason, DUP).
import os
import subprocess
import time

import pytest

from cluster import ClusterNode, await_route, nats, start_nodes  # noqa: F401
from conftest import TIMEOUT, Client, mosquitto_pub, unique_topic
from mqtt5 import Client5, Raw5, disconnect5, pprops, props
from test_store_pg import Pg, own_postgresql

SESSION_EXPIRY = 0x11


def await_log(node, text):
    deadline = time.monotonic() + TIMEOUT
    while text not in node.stderr():
        assert time.monotonic() < deadline, f"{text!r} never logged\n{node.stderr()[-3000:]}"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def nodes(tmp_path_factory, nats):  # noqa: F811
    a, b = start_nodes(tmp_path_factory, nats, ["a", "b"], {"cluster_heartbeat": "200"})
    # Each hears the other's heartbeats: claims wait for the other node.
    await_log(a, "node 'b' is here")
    await_log(b, "node 'a' is here")
    yield a, b
    a.stop()
    b.stop()


@pytest.fixture
def clients():
    made = []

    def make(node, client_id, v5=True, clean=True, expiry=300, expect_present=None, **kw):
        c = Client5(client_id, **kw) if v5 else Client(client_id, clean_session=clean, **kw)
        made.append(c)
        if v5:
            p = pprops(1, SessionExpiryInterval=expiry) if expiry else None  # CONNECT
            c.connect(node.mqtt_port, clean_start=clean, properties=p)
        else:
            c.connect(node.mqtt_port)
        if expect_present is not None:
            assert bool(c.session_present) == expect_present
        return c

    yield make
    for c in made:
        c.close()


def pub_on(node, qos=0):
    def publish(topic, payload):
        r = mosquitto_pub(node.mqtt_port, topic, payload.decode(), qos=qos)
        assert r.returncode == 0, r.stderr
    return publish


def test_a_connection_on_another_node_is_closed_with_0x8e(nodes):
    a, b = nodes
    old = Raw5(a.mqtt_port)
    assert old.connect5("tk-raw").reason == 0
    new = Raw5(b.mqtt_port)
    assert new.connect5("tk-raw").reason == 0
    assert old.goodbye().reason == 0x8E
    new.send(disconnect5())
    new.close()


def test_a_311_client_is_taken_over_across_nodes(nodes, clients):
    a, b = nodes
    old = clients(a, "tk-311", v5=False)
    clients(b, "tk-311", v5=False)
    assert old.disconnected.wait(TIMEOUT), "the old connection on node a stayed open"


def test_the_same_client_id_in_another_tenant_is_another_client(nodes):
    a, b = nodes
    one = a.tenant_user("tkone")
    assert b.tenant_user("tkone") == one  # each node has its own database here
    two = b.tenant_user("tktwo")
    first = Client5("tk-shared", username=one[0], password=one[1])
    first.connect(a.mqtt_port)
    second = Client5("tk-shared", username=two[0], password=two[1])
    second.connect(b.mqtt_port)
    anon = Client5("tk-shared")  # the static space: a third tenant
    anon.connect(b.mqtt_port)
    assert not first.disconnected.wait(1.0), "a client of another tenant took over"
    # The same tenant on the other node does take it over.
    third = Client5("tk-shared", username=one[0], password=one[1])
    third.connect(b.mqtt_port)
    assert first.disconnected.wait(TIMEOUT)
    assert not second.disconnected.is_set() and not anon.disconnected.is_set()
    for c in (second, anon, third):
        c.disconnect()


def test_a_persistent_session_moves_with_its_queued_messages(nodes, clients):
    a, b = nodes
    topic = unique_topic("move")
    first = clients(a, "tk-mover", clean=False, expect_present=False)
    assert first.subscribe(topic, 1) == [1]
    first.disconnect()
    for i in range(5):
        assert mosquitto_pub(a.mqtt_port, topic, f"queued {i}", qos=1).returncode == 0
    moved = clients(b, "tk-mover", clean=False, expect_present=True)
    got = [moved.get() for _ in range(5)]
    assert [(m.payload, m.qos) for m in got] == [(f"queued {i}".encode(), 1) for i in range(5)]
    assert moved.drain() == []
    # The subscription moved too: messages published on a reach b now.
    await_route(pub_on(a), moved, topic)
    assert mosquitto_pub(a.mqtt_port, topic, "after the move", qos=1).returncode == 0
    assert moved.get().payload == b"after the move"
    moved.disconnect()
    # Node a ended its copy: the session comes back from b, with nothing twice.
    assert mosquitto_pub(b.mqtt_port, topic, "while away", qos=1).returncode == 0
    back = clients(a, "tk-mover", clean=False, expect_present=True)
    assert [m.payload for m in [back.get()] + back.drain()] == [b"while away"]


def test_clean_start_on_another_node_discards_the_session(nodes, clients):
    a, b = nodes
    topic = unique_topic("clean")
    first = clients(a, "tk-clean", clean=False)
    first.subscribe(topic, 1)
    first.disconnect()
    assert mosquitto_pub(a.mqtt_port, topic, "for the old session", qos=1).returncode == 0
    fresh = clients(b, "tk-clean", clean=True, expiry=0, expect_present=False)
    assert fresh.drain() == []
    fresh.disconnect()
    again = clients(a, "tk-clean", clean=False, expect_present=False)
    assert again.drain() == []


def test_an_unacknowledged_message_moves_and_goes_out_again_with_dup(nodes):
    a, b = nodes
    topic = unique_topic("dup")
    c = Raw5(a.mqtt_port)
    assert c.connect5("tk-dup", properties=props((SESSION_EXPIRY, 300)), clean=False).reason == 0
    assert c.subscribe(1, [(topic, 1)]) == [1]
    assert mosquitto_pub(a.mqtt_port, topic, "not acknowledged", qos=1).returncode == 0
    p = c.expect(3)
    assert (p.payload, p.qos, p.flags & 0x08) == (b"not acknowledged", 1, 0)
    c.close()  # no PUBACK
    d = Raw5(b.mqtt_port)
    ack = d.connect5("tk-dup", properties=props((SESSION_EXPIRY, 300)), clean=False)
    assert (ack.reason, ack.session_present) == (0, True)
    again = d.expect(3)
    assert (again.payload, again.pid, again.flags & 0x08) == (b"not acknowledged", p.pid, 0x08)
    d.send(disconnect5(0, props((SESSION_EXPIRY, 0))))
    d.close()


def test_mosquitto_sub_resumes_its_session_on_the_other_node(nodes):
    a, b = nodes
    topic = unique_topic("mosq")
    cid = "tk-mosquitto"
    common = ["-i", cid, "-c", "-q", "1", "-t", topic, "-V", "mqttv311"]
    first = subprocess.run(["mosquitto_sub", "-p", str(a.mqtt_port), "-E"] + common,
                           capture_output=True, text=True, timeout=TIMEOUT)
    assert first.returncode == 0, first.stderr
    for i in range(3):
        assert mosquitto_pub(a.mqtt_port, topic, f"m{i}", qos=1).returncode == 0
    second = subprocess.run(["mosquitto_sub", "-p", str(b.mqtt_port), "-C", "3", "-W", "10"]
                            + common, capture_output=True, text=True, timeout=TIMEOUT + 10)
    assert second.returncode == 0, second.stderr
    assert second.stdout.split() == ["m0", "m1", "m2"]


# ---- on PostgreSQL: the sessions of a node that died ----
# Nodes on one PostgreSQL keep their sessions there, each in a schema of its
# own that it holds (an advisory lock) while it runs. A node that a client
# of a dead node connects to takes the session from there.

@pytest.fixture(scope="module")
def pg():
    db = f"takeover_{os.getpid()}"
    server = os.environ.get("CERTMQ_TEST_PG")
    if not server:  # run alone: a server of this module's own
        yield from own_postgresql("certmq-pg-takeover-", db)
        return
    p = Pg(None, server)
    p.create(db)
    p.uri = p.uri_of(db)
    yield p


@pytest.fixture(scope="module")
def pg_nodes(tmp_path_factory, nats, pg):  # noqa: F811
    opts = {"cluster_heartbeat": "200", "store": pg.uri, "persistence": "true"}
    c, d = start_nodes(tmp_path_factory, nats, ["c", "d"], opts)
    await_log(c, "node 'd' is here")
    await_log(d, "node 'c' is here")
    yield c, d
    for n in (c, d):
        if n.proc is not None:
            n.stop()


def test_the_sessions_of_a_killed_node_are_taken_from_postgresql(pg_nodes, clients):
    c, d = pg_nodes
    topic = unique_topic("dead")
    first = clients(c, "tk-dead", clean=False, expect_present=False)
    assert first.subscribe(topic, 1) == [1]
    first.disconnect()
    # Each PUBACK comes once the message is committed to node c's schema.
    for i in range(20):
        assert mosquitto_pub(c.mqtt_port, topic, f"kept {i}", qos=1).returncode == 0
    c.kill()
    moved = clients(d, "tk-dead", clean=False, expect_present=True)
    got = [moved.get() for _ in range(20)]
    assert [m.payload for m in got] == [f"kept {i}".encode() for i in range(20)]
    assert moved.drain() == []
    moved.disconnect()
    assert "session of certmq_sess_" in d.stderr()
    # Node c comes back without the session (d took it from c's schema); its
    # client connecting there gets it from d, with nothing twice.
    c.start()
    await_log(c, "node 'd' is here")
    back = clients(c, "tk-dead", clean=False, expect_present=True)
    assert back.drain() == []


def test_a_running_node_keeps_its_sessions_in_postgresql(pg_nodes, pg, nats, tmp_path):  # noqa: F811
    """A second process with a running node's node_id cannot take its schema."""
    twin = ClusterNode(tmp_path, nats.url, "d", {"store": pg.uri, "persistence": "true"})
    with pytest.raises(BaseException):
        twin.start()
    assert "held by another process" in twin.stderr()
