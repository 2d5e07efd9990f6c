# Retained messages cluster-wide (issue 9 item 3): two nodes on one
# PostgreSQL (and one NATS). A retained message set, replaced or cleared
# through one node is what a new subscriber on the other node gets within a
# second (the store announces the change, each node reads the row again),
# per tenant, for topics too long for a change notice too; a node's own
# write coming back to it delivers nothing twice; and a node that heard no
# notices for a while catches up with what was set and cleared meanwhile.
import subprocess
import time

import pytest

from cluster import ClusterNode, await_route, nats  # noqa: F401 (fixture)
from conftest import QUIET, TIMEOUT, Client, unique_topic
from test_store_pg import own_postgresql

pytestmark = pytest.mark.certmq_only

LIMIT = 1.0  # seconds for a change made on one node to show on the other


@pytest.fixture(scope="module")
def pg():
    yield from own_postgresql("certmq-pg-retained-", "retained")


@pytest.fixture(scope="module")
def nodes(tmp_path_factory, pg, nats):  # noqa: F811
    # Node 2 logs in as a role of its own, which a test can lock out alone.
    pg.sql("CREATE ROLE node2 LOGIN SUPERUSER")
    uris = {"r1": pg.uri, "r2": pg.uri.replace("://postgres@", "://node2@")}
    made = [ClusterNode(tmp_path_factory.mktemp(name), nats.url, name, {"store": uris[name]})
            .start() for name in ("r1", "r2")]
    yield made
    for n in made:
        n.stop()


def logs_in(node, auth):
    """A paho client of node logged in as auth, retried for a while (the
    user was made on the other node and is on its way here)."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        c = Client(username=auth[0], password=auth[1])
        if c.connect(node.mqtt_port, expect_rc=None) == 0:
            return c
        c.close()
        assert time.monotonic() < deadline, f"{auth[0]} never logged in on {node.dir.name}"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def tenants(nodes):
    """Two tenants made through node 1, each with a user that logs in on both."""
    n1, n2 = nodes
    made = [n1.tenant_user("reta"), n1.tenant_user("retb")]
    for auth in made:
        logs_in(n2, auth).close()
    return made


def publish(node, auth, topic, payload, retain=True):
    """mosquitto_pub at QoS 1 as auth (None: anonymous)."""
    login = ["-u", auth[0], "-P", auth[1]] if auth else []
    r = subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(node.mqtt_port)] + login +
                       ["-t", topic, "-m", payload, "-q", "1", "-V", "mqttv311"] +
                       (["-r"] if retain else []),
                       capture_output=True, text=True, timeout=TIMEOUT + 5)
    assert r.returncode == 0, r.stderr


def new_subscriber(node, auth, topic, wait):
    """What a new subscriber to topic on node receives within wait seconds:
    [(payload, retain flag)]."""
    c = Client(username=auth[0], password=auth[1]) if auth else Client()
    try:
        c.connect(node.mqtt_port)
        c.subscribe(topic, 1)
        return [(m.payload, bool(m.retain)) for m in c.drain(wait)]
    finally:
        c.close()


def within_limit(node, auth, topic, want):
    """New subscribers on node, one after the other, until one receives
    exactly want; returns how long that took (which must be under LIMIT)."""
    t0 = time.monotonic()
    while True:
        got = new_subscriber(node, auth, topic, 0.15)
        took = time.monotonic() - t0
        if got == want:
            assert took < LIMIT, f"took {took:.3f} s"
            return took
        assert took < LIMIT, f"after {took:.3f} s a new subscriber still gets {got!r}"


def test_set_on_node_1_is_received_by_a_new_subscriber_on_node_2(nodes, tenants):
    n1, n2 = nodes
    a, _ = tenants
    topic = unique_topic("kept")
    publish(n1, a, topic, "on node 1")
    took = within_limit(n2, a, topic, [(b"on node 1", True)])
    print(f"set on node 1, seen by a new subscriber on node 2 after {took * 1000:.0f} ms")


def test_cleared_on_node_2_a_new_subscriber_on_node_1_gets_nothing(nodes, tenants):
    n1, n2 = nodes
    a, _ = tenants
    topic = unique_topic("clear")
    publish(n1, a, topic, "to be cleared")
    within_limit(n2, a, topic, [(b"to be cleared", True)])
    publish(n2, a, topic, "")
    within_limit(n1, a, topic, [])
    assert new_subscriber(n1, a, topic, QUIET) == []
    assert new_subscriber(n2, a, topic, QUIET) == []


def test_replaced_the_new_payload_only(nodes, tenants):
    n1, n2 = nodes
    a, _ = tenants
    topic = unique_topic("replace")
    publish(n1, a, topic, "old")
    within_limit(n2, a, topic, [(b"old", True)])
    publish(n2, a, topic, "new")
    within_limit(n1, a, topic, [(b"new", True)])
    publish(n1, a, topic, "newest")
    within_limit(n2, a, topic, [(b"newest", True)])
    assert new_subscriber(n1, a, topic, QUIET) == [(b"newest", True)]


def test_another_tenant_with_the_same_topic_gets_nothing(nodes, tenants):
    n1, n2 = nodes
    a, b = tenants
    topic = unique_topic("mine")
    publish(n1, a, topic, "tenant a only")
    within_limit(n2, a, topic, [(b"tenant a only", True)])
    assert new_subscriber(n2, b, topic, QUIET) == []
    assert new_subscriber(n1, b, topic, QUIET) == []
    # and b's own retained message on that topic leaves a's alone
    publish(n2, b, topic, "tenant b's")
    within_limit(n1, b, topic, [(b"tenant b's", True)])
    assert new_subscriber(n1, a, topic, QUIET) == [(b"tenant a only", True)]


def test_the_anonymous_space_too_and_apart_from_tenants(nodes, tenants):
    n1, n2 = nodes
    a, _ = tenants
    topic = unique_topic("anon")
    publish(n2, None, topic, "anonymous")
    within_limit(n1, None, topic, [(b"anonymous", True)])
    assert new_subscriber(n1, a, topic, QUIET) == []
    publish(n1, None, topic, "")
    within_limit(n2, None, topic, [])


def test_a_topic_longer_than_a_change_notice(nodes, tenants):
    n1, n2 = nodes
    a, _ = tenants
    topic = unique_topic("long") + "/" + "x" * 9000  # a notice holds at most 8000 bytes
    publish(n1, a, topic, "long one")
    within_limit(n2, a, topic, [(b"long one", True)])
    publish(n2, a, topic, "")
    within_limit(n1, a, topic, [])


def test_no_message_is_delivered_twice(nodes, tenants):
    """A live subscriber on node 2 gets the retained publish of node 1 once
    (over NATS, RETAIN 0 as a live delivery), not again when the store's
    notice arrives; node 1, whose own write comes back, keeps one copy."""
    n1, n2 = nodes
    a, _ = tenants
    topic = unique_topic("once")
    live = logs_in(n2, a)
    try:
        live.subscribe(topic, 1)
        await_route(lambda t, p: publish(n1, a, t, p.decode(), retain=False), live, topic)
        publish(n1, a, topic, "just once")
        within_limit(n2, a, topic, [(b"just once", True)])
        got = [(m.payload, bool(m.retain)) for m in live.drain(QUIET)]
        assert got == [(b"just once", False)]
    finally:
        live.close()
    assert new_subscriber(n1, a, topic, QUIET) == [(b"just once", True)]


def wait_log(node, text, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while text not in node.stderr():
        assert time.monotonic() < deadline, f"{node.dir.name} never logged {text!r}"
        time.sleep(0.05)


def test_a_node_that_missed_notices_catches_up(nodes, tenants, pg):
    """Node 2 loses PostgreSQL (its role locked out, its connections ended)
    while node 1 clears one retained message and sets another: once node 2
    listens again, it holds what the store holds."""
    n1, n2 = nodes
    a, _ = tenants
    cleared, added = unique_topic("gap-cleared"), unique_topic("gap-added")
    publish(n1, a, cleared, "before the gap")
    within_limit(n2, a, cleared, [(b"before the gap", True)])
    pg.sql("ALTER ROLE node2 NOLOGIN")
    try:
        pg.sql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
               " WHERE usename = 'node2'")
        wait_log(n2, "lost change notices")
        publish(n1, a, cleared, "")
        publish(n1, a, added, "during the gap")
        assert new_subscriber(n2, a, cleared, QUIET) == [(b"before the gap", True)]
    finally:
        pg.sql("ALTER ROLE node2 LOGIN")
    wait_log(n2, "again; changes meanwhile may be missed")
    deadline = time.monotonic() + TIMEOUT
    while (new_subscriber(n2, a, cleared, 0.15), new_subscriber(n2, a, added, 0.15)) != \
            ([], [(b"during the gap", True)]):
        assert time.monotonic() < deadline, "node 2 never caught up"
    assert new_subscriber(n2, a, cleared, QUIET) == []
