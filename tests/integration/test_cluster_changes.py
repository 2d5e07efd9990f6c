# Change propagation in a cluster (issue 9 item 2): two nodes on one
# PostgreSQL database (and one NATS), and what the REST API of either one
# changes reaches the other within a second through LISTEN/NOTIFY: a CA
# uploaded on node 1 admits devices on node 2; disabling it, deleting it or
# revoking a device through node 2 disconnects the devices on node 1 within
# a second; a password user made on one node logs in on the other; after
# PostgreSQL was stopped and started again under the nodes, changes flow
# again without restarting them.
import time

import pytest

from cluster import nats  # noqa: F401 (fixture)
from conftest import RawClient
from identity_pki import IdentityServer, pki  # noqa: F401 (fixture)
from test_store_pg import own_postgresql

pytestmark = pytest.mark.certmq_only


@pytest.fixture(scope="module")
def pg():
    """A PostgreSQL of this module's own: one test stops it under the nodes."""
    yield from own_postgresql("certmq-pg-changes-", "changes")


@pytest.fixture(scope="module")
def nodes(tmp_path_factory, pki, pg, nats):  # noqa: F811
    made = []
    for name in ("n1", "n2"):
        opts = {"store": pg.uri, "cluster": nats.url, "node_id": name}
        made.append(IdentityServer(tmp_path_factory.mktemp(name), pki, options=opts).start())
    yield made
    for n in made:
        n.stop()


@pytest.fixture(scope="module")
def tenant(nodes, pki):  # noqa: F811
    n1, _ = nodes
    auth = n1.tenant("spread")
    fp = n1.trust("spread", auth, pki.ca_w.pem)
    return auth, fp


def raw_device(node, dev, client_id=None, timeout=1.0):
    """A mutual-TLS MQTT connection that got CONNACK 0, retried for up to
    timeout seconds (a change made on the other node may be on its way)."""
    deadline = time.monotonic() + timeout
    while True:
        c = RawClient(node.mqtt_port, tls=dev.tls(node.server_ca))
        ack = c.connect(client_id or dev.cn)
        if ack == b"\x20\x02\x00\x00":
            return c
        c.close()
        assert time.monotonic() < deadline, f"refused on {node.dir.name}: {ack!r}"
        time.sleep(0.05)


def closed_within(client, started, limit=1.0):
    assert client.is_closed(timeout=limit + 2), "connection still open"
    took = time.monotonic() - started
    assert took < limit, f"closed after {took:.3f} s"
    return took


def test_a_ca_uploaded_on_one_node_admits_devices_on_the_other(nodes, tenant, pki):  # noqa: F811
    _, n2 = nodes
    raw_device(n2, pki.w1).close()


def test_disabling_on_node_2_disconnects_on_node_1_within_a_second(nodes, tenant, pki):  # noqa: F811
    n1, n2 = nodes
    auth, fp = tenant
    raw = raw_device(n1, pki.w1)
    t0 = time.monotonic()
    n2.set_cert("spread", auth, fp, status="DISABLED")
    took = closed_within(raw, t0)
    raw.close()
    assert "device(s) disconnected" in n1.stderr()
    # Refused on node 1 while disabled; admitted again once node 2 enables it.
    c = RawClient(n1.mqtt_port, tls=pki.w1.tls(n1.server_ca))
    assert c.connect("w1") == b"\x20\x02\x00\x05"
    c.close()
    n2.set_cert("spread", auth, fp, status="ENABLED")
    raw_device(n1, pki.w1).close()
    print(f"disabled on node 2, device on node 1 closed after {took * 1000:.0f} ms")


def test_revoking_a_device_on_node_2_disconnects_it_on_node_1(nodes, tenant, pki):  # noqa: F811
    n1, n2 = nodes
    auth, _ = tenant
    raw = raw_device(n1, pki.w2)
    other = raw_device(n1, pki.w3)
    t0 = time.monotonic()
    r = n2.call("DELETE", "/user/spread/users/device_w2", auth)
    assert r.status == 204, r
    closed_within(raw, t0)
    raw.close()
    assert not other.is_closed(timeout=0.3), "another device of the tenant was dropped"
    other.close()


def test_deleting_on_node_1_disconnects_on_node_2(nodes, tenant, pki):  # noqa: F811
    n1, n2 = nodes
    auth, fp = tenant
    raw = raw_device(n2, pki.w3)
    t0 = time.monotonic()
    r = n1.call("DELETE", f"/tenant/tenants/spread/trusted-certificates/{fp}", auth)
    assert r.status == 204, r
    closed_within(raw, t0)
    raw.close()
    # Uploaded again (on node 2 this time): node 1 admits again.
    assert n2.trust("spread", auth, pki.ca_w.pem) == fp
    raw_device(n1, pki.w3).close()


def test_a_user_made_on_one_node_logs_in_on_the_other(nodes, tenant, clients):
    n1, n2 = nodes
    auth, _ = tenant
    login = n1.user("spread", auth, "ops", "ops-secret-1", roles=["ROLE_TENANT_ADMIN"])
    deadline = time.monotonic() + 1.0
    while True:
        r = n2.call("GET", "/user/currentUser", login)
        if r.status == 200:
            break
        assert time.monotonic() < deadline, r
        time.sleep(0.05)
    # Deleted on node 2: node 1 refuses it within a second.
    assert n2.call("DELETE", "/user/spread/users/ops", auth).status == 204
    deadline = time.monotonic() + 1.0
    while n1.call("GET", "/user/currentUser", login).status == 200:
        assert time.monotonic() < deadline, "node 1 still accepts a deleted user"
        time.sleep(0.05)


def test_changes_flow_again_after_postgresql_comes_back(nodes, tenant, pki, pg):  # noqa: F811
    n1, n2 = nodes
    auth, fp = tenant
    pg.ctl("pause")
    try:
        r = n1.call("PUT", f"/tenant/tenants/spread/trusted-certificates/{fp}", auth,
                    {"status": "DISABLED"})
        assert r.status == 503, r
    finally:
        pg.ctl("resume")
    raw = raw_device(n2, pki.w1, timeout=5.0)  # node 2's store is back too
    # Node 1 writes as soon as its store reconnects; node 2's watch has
    # listened again by then or within its one-second retry.
    t0 = time.monotonic()
    deadline = t0 + 10
    while True:
        r = n1.call("PUT", f"/tenant/tenants/spread/trusted-certificates/{fp}", auth,
                    {"status": "DISABLED"})
        if r.status == 200:
            break
        assert time.monotonic() < deadline, r
        time.sleep(0.2)
    assert raw.is_closed(timeout=5), "node 2 never heard of the change after the restart"
    raw.close()
    n1.set_cert("spread", auth, fp, status="ENABLED")
    raw_device(n2, pki.w1, timeout=3.0).close()
