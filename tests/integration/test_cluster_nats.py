# Cross-node messaging over NATS (issue #9 item 3): two certmq nodes, each
# with its own data_dir and SQLite database, joined by the session's
# nats-server. Real clients (mosquitto_pub/sub, paho 3.1.1 and 5.0) publish
# on one node and subscribe on the other. Before a test relies on a route,
# it waits until a probe crossed it (a subscription reaches NATS a moment
# after its SUBACK). The NATS restart comes last: it breaks the routes.
import subprocess
import time

import pytest

from apiserver import ADMIN
from cluster import ClusterNode, NatsServer, await_route, nats, start_nodes  # noqa: F401
from conftest import CERTMQ_BIN, QUIET, TIMEOUT, Client, MosquittoSub, mosquitto_pub, unique_topic
from mqtt5 import Client5, pprops, user_props


@pytest.fixture(scope="module")
def nodes(tmp_path_factory, nats):  # noqa: F811
    a, b = start_nodes(tmp_path_factory, nats, ["a", "b"], {"max_packet_size": "2097152"})
    yield a, b
    a.stop()
    b.stop()


@pytest.fixture
def clients():
    """clients(node, client_id, **kw): a connected paho client (3.1.1, or
    5.0 with v5=True); closed after the test."""
    made = []

    def make(node, client_id="", v5=False, **kw):
        c = Client5(client_id, **kw) if v5 else Client(client_id, **kw)
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


def subscribed(node, other, clients, filt, probe, qos=0, client_id="", **kw):
    """A client of node subscribed to filt, once probe (a topic filt
    matches) published on other reaches it."""
    c = clients(node, client_id, **kw)
    c.subscribe(filt, qos)
    await_route(pub_on(other), c, probe)
    return c


def test_qos0_crosses_nodes(nodes, clients):
    a, b = nodes
    topic = unique_topic("x")
    sub = subscribed(b, a, clients, topic, topic)
    assert mosquitto_pub(a.mqtt_port, topic, "hello from a").returncode == 0
    m = sub.get_on(topic)
    assert (m.payload, m.qos) == (b"hello from a", 0)
    assert sub.drain() == []


@pytest.mark.parametrize("qos", [1, 2])
def test_qos1_and_qos2_cross_nodes(nodes, clients, qos):
    a, b = nodes
    topic = unique_topic(f"q{qos}")
    sub = subscribed(b, a, clients, topic, topic, qos=2)
    assert mosquitto_pub(a.mqtt_port, topic, f"at qos {qos}", qos=qos).returncode == 0
    m = sub.get_on(topic)
    assert (m.payload, m.qos) == (f"at qos {qos}".encode(), qos)
    assert sub.drain() == []


def test_mosquitto_sub_receives_qos2_from_the_other_node(nodes):
    a, b = nodes
    topic = unique_topic("ms")
    sub = MosquittoSub(b.mqtt_port, topic, count=1, qos=2)
    rc, out, err = sub.receive(lambda: mosquitto_pub(a.mqtt_port, topic, "via nats", qos=2))
    assert rc == 0, err
    assert out.strip() == f"{topic} via nats"


def test_delivered_qos_is_the_lower_of_publish_and_subscription(nodes, clients):
    a, b = nodes
    topic = unique_topic("min")
    sub = subscribed(b, a, clients, topic, topic, qos=1)
    assert mosquitto_pub(a.mqtt_port, topic, "two", qos=2).returncode == 0
    assert sub.get_on(topic).qos == 1


def test_retained_publish_is_delivered_live(nodes, clients):
    a, b = nodes
    topic = unique_topic("ret")
    sub = subscribed(b, a, clients, topic, topic, qos=1)
    assert mosquitto_pub(a.mqtt_port, topic, "kept", qos=1, retain=True).returncode == 0
    m = sub.get_on(topic)
    assert (m.payload, m.retain) == (b"kept", False)  # a live delivery (3.3.1.3)
    assert mosquitto_pub(a.mqtt_port, topic, "", qos=1, retain=True).returncode == 0


def test_wildcards(nodes, clients):
    a, b = nodes
    base = unique_topic("w")
    hash_ = subscribed(b, a, clients, f"{base}/#", f"{base}/probe")
    plus = subscribed(b, a, clients, f"{base}/+/temp", f"{base}/probe/temp")
    hash_.drain(0.3)
    names = [f"{base}/k1/temp", f"{base}/k1/hum", base, f"{base}/k1/k2/temp"]
    for t in names:
        assert mosquitto_pub(a.mqtt_port, t, "v:" + t, qos=1).returncode == 0
    got = [hash_.get().topic for _ in names]
    assert got == names  # '#' takes its parent level too
    assert plus.get().topic == f"{base}/k1/temp"
    assert plus.drain() == [] and hash_.drain() == []


SPECIAL = ["a.b", "*", ">", "a b", "%", "%2E", "a..b", " ", "x/*/y", "x/>", "dot./.dot"]


def test_topics_with_nats_special_characters_arrive_intact(nodes, clients):
    a, b = nodes
    base = unique_topic("sp")
    everything = subscribed(b, a, clients, f"{base}/#", f"{base}/probe")
    star = subscribed(b, a, clients, f"{base}/*", f"{base}/*")  # a literal '*' level
    dotted = subscribed(b, a, clients, f"{base}/a.b", f"{base}/a.b")
    plus = subscribed(b, a, clients, f"{base}/+", f"{base}/probe")
    empty = subscribed(b, a, clients, f"{base}//b", f"{base}//b")
    for c in (everything, star, dotted, plus, empty):
        c.drain(0.3)
    names = [f"{base}/{s}" for s in SPECIAL] + [f"{base}/a/b", f"{base}//b", f"{base}/"]
    for t in names:
        assert mosquitto_pub(a.mqtt_port, t, "p", qos=1).returncode == 0
    assert [everything.get().topic for _ in names] == names
    assert [m.topic for m in star.drain()] == [f"{base}/*"]
    assert [m.topic for m in dotted.drain()] == [f"{base}/a.b"]
    assert [m.topic for m in empty.drain()] == [f"{base}//b"]
    one_level = [t for t in names if "/" not in t[len(base) + 1:]]
    assert sorted(m.topic for m in plus.drain()) == sorted(one_level)
    assert everything.drain(0.2) == []


def test_a_thousand_messages_arrive_in_order(nodes, clients):
    a, b = nodes
    topic = unique_topic("order")
    sub = subscribed(b, a, clients, topic, topic, qos=1)
    lines = "".join(f"{i}\n" for i in range(1000))
    r = subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(a.mqtt_port), "-t", topic,
                        "-q", "1", "-l", "-V", "mqttv311"], input=lines, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    got = [int(sub.get(timeout=TIMEOUT).payload) for _ in range(1000)]
    assert got == list(range(1000))
    assert sub.drain() == []


def test_tenants_stay_apart_across_nodes(nodes, clients):
    a, b = nodes
    t1a, t1b = a.tenant_user("clt1"), b.tenant_user("clt1")
    t2a, t2b = a.tenant_user("clt2"), b.tenant_user("clt2")

    def user(node, auth, cid):
        return clients(node, cid, username=auth[0], password=auth[1])

    def pub(node, auth):
        def publish(topic, payload):
            r = subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(node.mqtt_port),
                                "-u", auth[0], "-P", auth[1], "-t", topic, "-m", payload.decode(),
                                "-q", "1", "-V", "mqttv311"], capture_output=True, text=True,
                               timeout=TIMEOUT + 5)
            assert r.returncode == 0, r.stderr
        return publish

    s1 = user(b, t1b, "same-id")
    s1.subscribe("#", 1)
    s2 = user(b, t2b, "same-id")
    s2.subscribe("#", 1)
    await_route(pub(a, t1a), s1, "iso/probe")
    await_route(pub(a, t2a), s2, "iso/probe")
    s1.drain(0.3)
    s2.drain(0.3)
    pub(a, t1a)("shared/topic", b"tenant one")
    pub(a, t2a)("shared/topic", b"tenant two")
    assert [(m.topic, m.payload) for m in s1.drain()] == [("shared/topic", b"tenant one")]
    assert [(m.topic, m.payload) for m in s2.drain()] == [("shared/topic", b"tenant two")]
    # the anonymous space is a tenant of its own too
    anon = clients(b, "anon")
    anon.subscribe("shared/#", 1)
    pub(a, t1a)("shared/topic", b"tenant one again")
    assert anon.drain() == []


def test_shared_subscription_members_on_both_nodes_get_each_message_once(nodes, clients):
    a, b = nodes
    base = unique_topic("share")
    members = [clients(a, "m-a"), clients(b, "m-b")]
    for m in members:
        m.subscribe(f"$share/g/{base}/#", 1)
    pub = clients(a, "share-pub")
    deadline = time.monotonic() + TIMEOUT
    seen = [False, False]
    while not all(seen):  # both nodes' queue subscriptions are in place
        assert time.monotonic() < deadline, f"probes reached {seen}"
        pub.publish(f"{base}/probe", b"probe", qos=1)
        for i, m in enumerate(members):
            seen[i] = seen[i] or bool(m.drain(0.05))

    def jobs(msgs):  # probes still on their way are not jobs
        return [int(x.payload) for x in msgs if x.topic.endswith("/job")]

    for i in range(40):
        pub.publish(f"{base}/job", str(i).encode(), qos=1)
    got = []
    deadline = time.monotonic() + TIMEOUT
    while len(got) < 40 and time.monotonic() < deadline:
        for m in members:
            got += jobs(m.drain(0.05))
    got += jobs(x for m in members for x in m.drain())
    assert sorted(got) == list(range(40))


def test_v5_properties_cross_nodes(nodes, clients):
    a, b = nodes
    topic = unique_topic("v5")
    sub = clients(b, "v5-sub", v5=True)
    sub.subscribe(topic, 1)
    await_route(pub_on(a), sub, topic)
    pub = clients(a, "v5-pub", v5=True)
    props = pprops(ContentType="application/json", ResponseTopic="reply/here",
                   CorrelationData=b"\x00\x01corr", PayloadFormatIndicator=1,
                   MessageExpiryInterval=300)
    props.UserProperty = [("k", "v"), ("k", "second"), ("unit", "°C")]
    pub.publish(topic, b'{"t": 21}', qos=1, properties=props)
    m = sub.get()
    assert m.payload == b'{"t": 21}'
    assert m.properties.ContentType == "application/json"
    assert m.properties.ResponseTopic == "reply/here"
    assert m.properties.CorrelationData == b"\x00\x01corr"
    assert m.properties.PayloadFormatIndicator == 1
    assert 0 < m.properties.MessageExpiryInterval <= 300
    assert user_props(m) == [("k", "v"), ("k", "second"), ("unit", "°C")]


def test_no_duplicates_on_either_node(nodes, clients):
    a, b = nodes
    base = unique_topic("dup")
    local = clients(a, "local")
    local.subscribe(f"{base}/#", 1)
    one = clients(b, "one")
    one.subscribe(f"{base}/+", 1)
    other = clients(b, "other")
    other.subscribe(f"{base}/#", 1)
    both = clients(b, "both")  # one session, two overlapping filters
    both.subscribe(f"{base}/+", 1)
    both.subscribe(f"{base}/x", 1)
    for c in (one, other, both):
        await_route(pub_on(a), c, f"{base}/x")
    for c in (local, one, other, both):
        c.drain(0.3)
    for i in range(5):
        assert mosquitto_pub(a.mqtt_port, f"{base}/x", str(i), qos=1).returncode == 0
    for c in (local, one, other, both):
        got = [int(m.payload) for m in c.drain(QUIET + 0.5)]
        assert got == list(range(5)), (c.c._client_id, got)


def test_a_will_reaches_the_other_node(nodes, clients):
    a, b = nodes
    topic = unique_topic("will")
    sub = subscribed(b, a, clients, topic, topic, qos=1)
    dying = clients(a, "dying", will=(topic, b"gone", 1, False))
    dying.close()  # the connection closes without DISCONNECT: the will goes out
    m = sub.get_on(topic)
    assert (m.payload, m.qos) == (b"gone", 1)


def test_a_restored_persistent_subscription_hears_the_other_node(nodes, clients):
    """A persistent session's subscription, read back when its node starts
    again, is subscribed in NATS again: QoS 1 messages from the other node
    wait in the session for its client."""
    a, b = nodes
    base = unique_topic("durable")
    durable = clients(b, "durable-b", clean_session=False)
    durable.subscribe(f"{base}/+", 1)
    durable.disconnect()
    b.stop()
    b.start()
    # A later subscription of b reaching NATS shows the earlier ones did.
    probe = subscribed(b, a, clients, f"{base}/p/q", f"{base}/p/q")
    assert mosquitto_pub(a.mqtt_port, f"{base}/m", "kept for you", qos=1).returncode == 0
    assert probe.drain() == []
    back = clients(b, "durable-b", clean_session=False)
    m = back.get()
    assert (m.topic, m.payload, m.qos) == (f"{base}/m", b"kept for you", 1)


def test_metrics_count_messages_to_and_from_the_cluster(nodes):
    a, b = nodes

    def value(node, line):
        r = node.call("GET", "/metrics", ADMIN)
        assert r.status == 200, r
        for ln in r.body.decode().splitlines():
            if ln.startswith(line + " "):
                return float(ln.split()[-1])
        pytest.fail(f"no {line} in /metrics")

    assert value(a, 'certmq_cluster_messages_total{direction="out"}') > 0
    assert value(b, 'certmq_cluster_messages_total{direction="in"}') > 0
    assert value(b, 'certmq_cluster_errors_total{kind="malformed"}') == 0


def test_a_cluster_that_is_not_a_nats_url_stops_the_start(tmp_path):
    node = ClusterNode(tmp_path, "nats://127.0.0.1:4222, http://127.0.0.1:4222", "bad")
    r = subprocess.run([CERTMQ_BIN, "serve", "--config", str(node.conf)], env=node.env,
                       capture_output=True, text=True, timeout=TIMEOUT + 5)
    assert r.returncode == 2
    assert "cluster: 'http://127.0.0.1:4222' is not a nats://host:port URL" in r.stderr
    assert not node.data.exists()  # refused before anything was written


def test_credentials_in_the_cluster_url_are_never_logged(tmp_path, nats):  # noqa: F811
    url = nats.url.replace("nats://", "nats://certmq:s3cret-pw@")
    node = ClusterNode(tmp_path / "creds", url, "creds").start()
    try:
        node.stop()
    finally:
        err = node.stderr()
    assert "publishing to NATS at nats://***@127.0.0.1" in err, err[-2000:]
    assert "s3cret-pw" not in err
    bad = ClusterNode(tmp_path / "bad", "nats://a:s3cret-pw@h:1,tls://b:s3cret-pw@h:2", "bad")
    r = subprocess.run([CERTMQ_BIN, "serve", "--config", str(bad.conf)], env=bad.env,
                       capture_output=True, text=True, timeout=TIMEOUT + 5)
    assert r.returncode == 2
    assert "cluster: 'tls://***@h:2' is not a nats://host:port URL" in r.stderr
    assert "s3cret-pw" not in r.stderr + r.stdout


def test_a_topic_too_long_for_a_nats_subject_stays_on_its_node(nodes, clients):
    a, b = nodes
    base = unique_topic("long")
    sub = subscribed(b, a, clients, f"{base}/#", f"{base}/probe", qos=1)
    local = clients(a, "long-local")
    local.subscribe(f"{base}/#", 1)
    lost_before = a.stderr().count("connection to NATS lost")
    long_topic = f"{base}/" + "." * 3000  # 9,000 bytes once escaped
    assert mosquitto_pub(a.mqtt_port, long_topic, "long", qos=1).returncode == 0
    assert mosquitto_pub(a.mqtt_port, f"{base}/short", "short", qos=1).returncode == 0
    assert local.get().topic == long_topic  # delivered on its own node
    assert sub.get().topic == f"{base}/short"
    assert a.stderr().count("connection to NATS lost") == lost_before


def test_a_message_beyond_the_nats_max_payload_stays_on_its_node(nodes, clients, tmp_path):
    """Node a takes MQTT packets of up to 2 MiB (max_packet_size); NATS
    carries 1 MiB (its max_payload)."""
    a, b = nodes
    base = unique_topic("big")
    sub = subscribed(b, a, clients, f"{base}/#", f"{base}/probe", qos=1)
    local = clients(a, "big-local")
    local.subscribe(f"{base}/#", 1)
    lost_before = a.stderr().count("connection to NATS lost")
    big = tmp_path / "big"
    big.write_bytes(b"x" * 1_500_000)
    r = subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(a.mqtt_port), "-t",
                        f"{base}/big", "-f", str(big), "-q", "1", "-V", "mqttv311"],
                       capture_output=True, text=True, timeout=TIMEOUT + 5)
    assert r.returncode == 0, r.stderr
    assert mosquitto_pub(a.mqtt_port, f"{base}/small", "small", qos=1).returncode == 0
    assert len(local.get().payload) == 1_500_000
    assert sub.get().topic == f"{base}/small"
    assert a.stderr().count("connection to NATS lost") == lost_before


def test_messages_from_the_cluster_go_out_at_once_on_a_single_worker(tmp_path_factory,
                                                                   nats):  # noqa: F811
    """The worker that routes what came from NATS writes to its own clients
    in the same turn (not at its next 250 ms tick): with one worker per
    node, 30 messages one after the other take a few ms each."""
    a, b = start_nodes(tmp_path_factory, nats, ["one-a", "one-b"], {"workers": "1"})
    try:
        pub, sub = Client("lat-pub"), Client("lat-sub")
        pub.connect(a.mqtt_port)
        sub.connect(b.mqtt_port)
        topic = unique_topic("lat")
        sub.subscribe(topic, 0)
        await_route(lambda t, p: pub.publish(t, p), sub, topic)
        took = []
        for _ in range(30):
            start = time.monotonic()
            pub.publish(topic, b"x")
            sub.get()
            took.append(time.monotonic() - start)
        took.sort()
        assert took[15] < 0.1, f"median {took[15] * 1000:.0f} ms"
        pub.close()
        sub.close()
    finally:
        a.stop()
        b.stop()


def test_nodes_started_before_nats_join_when_it_comes(tmp_path_factory):
    """A node whose NATS is not up yet starts all the same (its own clients
    are served) and connects when NATS comes."""
    late = NatsServer(tmp_path_factory.mktemp("nats-late"))
    a, b = [ClusterNode(tmp_path_factory.mktemp(f"late-{n}"), late.url, f"late-{n}").start()
            for n in ("a", "b")]
    try:
        assert "not reachable yet" in a.stderr()
        local = Client("late-local")
        local.connect(a.mqtt_port)
        local.subscribe("here", 1)
        assert mosquitto_pub(a.mqtt_port, "here", "served", qos=1).returncode == 0
        assert local.get().payload == b"served"
        local.close()
        lonely = ClusterNode(tmp_path_factory.mktemp("late-c"), late.url, "late-c").start()
        lonely.stop()  # stops cleanly (exit 0) while it still waits for NATS
        late.start()
        sub = Client("late-sub")
        sub.connect(b.mqtt_port)
        sub.subscribe("there", 1)
        await_route(pub_on(a, qos=1), sub, "there", timeout=TIMEOUT * 2)
        sub.close()
    finally:
        a.stop()
        b.stop()
        late.stop()


def test_nats_restart_cross_node_delivery_resumes(nodes, clients, nats):  # noqa: F811
    a, b = nodes
    topic = unique_topic("restart")
    sub = subscribed(b, a, clients, topic, topic, qos=1)
    nats.kill()
    nats.start()
    # libnats reconnects and subscribes again on its own: probes get through
    await_route(pub_on(a, qos=1), sub, topic, timeout=TIMEOUT * 2)
    assert mosquitto_pub(a.mqtt_port, topic, "after restart", qos=1).returncode == 0
    assert sub.get_on(topic).payload == b"after restart"
    a.assert_alive()
    b.assert_alive()
