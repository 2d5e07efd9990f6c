# TLS session resumption on any node (issue 9 item 5), option tls_tickets
# store: TLS 1.3 tickets are encrypted with keys that the nodes of one store
# share (made by one node, kept sealed in the store, rotated every
# tls_ticket_key_rotate seconds), so a device resumes on another node than the
# one it last used, and after a restart. The ticket says whether its full
# handshake proved the tenant CA: only such a session resumes as a tenant
# device. Python's ssl module is the client (real TLS 1.3 tickets, resumed
# with the session object of the earlier connection).
import os
import sqlite3
import ssl
import time

import pytest

from cluster import nats  # noqa: F401 (fixture)
from conftest import TIMEOUT
from identity_pki import IdentityServer, pki, tls13_context, tls_mqtt_connect  # noqa: F401
from test_store_pg import own_postgresql

pytestmark = pytest.mark.certmq_only

SEAL_OVERHEAD = 4 + 1 + 8 + 12 + 16  # core/seal.h: header, nonce, tag
KEY_LEN = 16 + 32 + 32  # name, AES-256 key, HMAC-SHA256 key


def client_context(node, dev, chain=True):
    return tls13_context(node.server_ca, dev, chain)


def mqtt_connect(node, ctx, client_id, session=None, while_connected=None):
    """tls_mqtt_connect to node's MQTT listener."""
    return tls_mqtt_connect(node.mqtt_port, ctx, client_id, session, while_connected)


def connected(node, ctx, client_id, timeout=TIMEOUT):
    """A full handshake that got CONNACK 0, retried while a change made on the
    other node is on its way."""
    deadline = time.monotonic() + timeout
    while True:
        r = mqtt_connect(node, ctx, client_id)
        if r.rc == 0:
            return r
        assert time.monotonic() < deadline, f"refused on {node.dir.name}: {r.rc}"
        time.sleep(0.05)


def wait_log(node, text, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while text not in node.stderr():
        assert time.monotonic() < deadline, f"{text!r} never logged\n{node.stderr()[-3000:]}"
        time.sleep(0.05)


def write_kek(path):
    path.write_bytes(os.urandom(32))
    os.chmod(path, 0o600)
    return str(path)


# ---- two nodes on one PostgreSQL


@pytest.fixture(scope="module")
def pg():
    yield from own_postgresql("certmq-pg-tickets-", "tickets")


@pytest.fixture(scope="module")
def nodes(tmp_path_factory, pki, pg, nats):  # noqa: F811
    # The nodes of one store share the key-encryption key (ca_key_file).
    kek = write_kek(tmp_path_factory.mktemp("kek") / "kek")
    made = []
    for name in ("t1", "t2"):
        opts = {"store": pg.uri, "cluster": nats.url, "node_id": name, "tls_tickets": "store",
                "ca_key_file": kek}
        # The listener also trusts tenant A's CA statically: a leaf alone is
        # then admitted, but as a static client, not as the tenant's device.
        made.append(IdentityServer(tmp_path_factory.mktemp(name), pki, options=opts,
                                   cafile=pki.ca_a.pem).start())
    yield made
    for n in made:
        n.stop()


@pytest.fixture(scope="module")
def tenant(nodes, pki):  # noqa: F811
    n1, n2 = nodes
    auth = n1.tenant("tickets")
    n1.trust("tickets", auth, pki.ca_a.pem, name="tickets CA")
    n1.trust("tickets", auth, pki.ca_b.pem, name="second CA")
    connected(n2, client_context(n2, pki.a2), pki.a2.cn)  # the CA has reached node 2
    return auth


def tenant_connections(node, auth):
    r = node.call("GET", "/devices/connections?pageSize=100", auth)
    assert r.status == 200, r
    return {c["clientId"]: c for c in r.json["connections"]}


def test_a_ticket_from_node_1_resumes_as_the_device_on_node_2(nodes, tenant, pki):  # noqa: F811
    n1, n2 = nodes
    ctx = client_context(n1, pki.a1)
    full = connected(n1, ctx, pki.a1.cn)
    assert not full.reused and full.session.has_ticket
    seen = {}
    again = mqtt_connect(n2, ctx, pki.a1.cn, session=full.session,
                         while_connected=lambda: seen.update(tenant_connections(n2, tenant)))
    assert again.reused, "node 2 did not resume the session of node 1"
    assert again.version == "TLSv1.3"
    assert again.rc == 0, "the resumed device was not accepted as the tenant's device"
    c = seen[pki.a1.cn]
    assert c["kind"] == "certificate" and c["handshake"] == "resumed", c


def test_a_resumed_session_gets_a_ticket_that_resumes_again(nodes, tenant, pki):  # noqa: F811
    n1, n2 = nodes
    ctx = client_context(n1, pki.a2)
    first = connected(n1, ctx, pki.a2.cn)
    second = mqtt_connect(n2, ctx, pki.a2.cn, session=first.session)
    assert second.reused and second.rc == 0
    third = mqtt_connect(n1, ctx, pki.a2.cn, session=second.session)
    assert third.reused and third.rc == 0


def test_a_session_that_did_not_prove_the_ca_is_no_device_on_node_2(nodes, tenant, pki):  # noqa: F811
    # Leaf only, CA in the listener's cafile: the tenant's CA is not in the
    # presented chain, so the client is admitted as a static client, and its
    # ticket says nothing was proven. Resumed on node 2 it is again a static
    # client, never the tenant's device.
    n1, n2 = nodes
    ctx = client_context(n1, pki.a3, chain=False)
    seen = {}
    full = mqtt_connect(n1, ctx, pki.a3.cn,
                        while_connected=lambda: seen.update(tenant_connections(n1, tenant)))
    assert full.rc == 0 and not full.reused and full.session.has_ticket
    assert pki.a3.cn not in seen, "a leaf alone was admitted as the tenant's device"
    seen.clear()
    again = mqtt_connect(n2, ctx, pki.a3.cn, session=full.session,
                         while_connected=lambda: seen.update(tenant_connections(n2, tenant)))
    assert again.reused and again.rc == 0
    assert pki.a3.cn not in seen, "a session that proved nothing resumed as the tenant's device"


def test_a_refused_session_gets_no_ticket(nodes, tenant, pki):  # noqa: F811
    # Leaf only of the tenant's second CA, which no cafile holds: refused,
    # and a refused CONNECT gets no ticket: on node 2 there is nothing to
    # resume, and the full handshake is refused again.
    n1, n2 = nodes
    ctx = client_context(n1, pki.b1, chain=False)
    full = mqtt_connect(n1, ctx, pki.b1.cn)
    assert full.rc == 5 and not full.reused
    assert full.session is None or not full.session.has_ticket
    again = mqtt_connect(n2, ctx, pki.b1.cn, session=full.session)
    assert not again.reused and again.rc == 5


def test_the_resumed_device_is_judged_by_the_current_policy(nodes, tenant, pki):  # noqa: F811
    n1, n2 = nodes
    ctx = client_context(n1, pki.a1)
    full = connected(n1, ctx, pki.a1.cn)
    again = mqtt_connect(n2, ctx, "someone-else", session=full.session)
    assert again.reused and again.rc == 5


def test_the_stored_key_is_sealed(nodes, tenant, pg):  # noqa: F811
    rows = pg.sql("SELECT encode(substr(sealed, 1, 4), 'escape'), length(sealed)"
                  " FROM ticket_keys").splitlines()
    assert rows, "no ticket key in the store"
    for row in rows:
        magic, length = row.split("|")
        assert magic == "CMQS" and int(length) == KEY_LEN + SEAL_OVERHEAD, row


def anonymous_context(node):
    ctx = ssl.create_default_context(cafile=node.server_ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    return ctx


def test_a_node_with_another_kek_says_so_and_does_full_handshakes(
        pki, pg, tmp_path_factory):  # noqa: F811
    # A store of their own (no tenant: a node with another KEK would not open
    # the tenants' sealed keys at all) and anonymous clients.
    pg.create("tickets_kek")
    uri = pg.uri_of("tickets_kek")
    made = []
    try:
        for name in ("k1", "k2"):
            d = tmp_path_factory.mktemp(name)
            opts = {"store": uri, "tls_tickets": "store", "allow_anonymous": "true",
                    "ca_key_file": write_kek(d / "kek")}
            made.append(IdentityServer(d, pki, options=opts).start())
        k1, k2 = made
        wait_log(k2, "sealed under another key-encryption key")
        assert "this node's own" in k2.stderr()
        assert "this node's own" not in k1.stderr()
        ctx = anonymous_context(k1)
        full = mqtt_connect(k1, ctx, "anon-1")
        assert full.rc == 0 and full.session.has_ticket
        assert mqtt_connect(k1, ctx, "anon-1", session=full.session).reused
        other = mqtt_connect(k2, ctx, "anon-1", session=full.session)
        assert not other.reused, "a ticket under a key this node cannot open resumed"
        assert other.rc == 0, "the full handshake that followed failed"
        mine = mqtt_connect(k2, ctx, "anon-1", session=other.session)
        assert mine.reused and mine.rc == 0, "the node's own tickets do not resume on it"
    finally:
        for n in made:
            n.stop()


# ---- one node on SQLite


def sqlite_node(tmp_path_factory, pki, name, **options):  # noqa: F811
    opts = {"tls_tickets": "store"}
    opts.update(options)
    n = IdentityServer(tmp_path_factory.mktemp(name), pki, options=opts).start()
    auth = n.tenant("solo")
    n.trust("solo", auth, pki.ca_a.pem, name="solo CA")
    return n


@pytest.fixture
def solo(tmp_path_factory, pki):  # noqa: F811
    n = sqlite_node(tmp_path_factory, pki, "solo")
    yield n
    n.stop()


def test_a_ticket_resumes_after_a_restart(solo, pki):  # noqa: F811
    ctx = client_context(solo, pki.a1)
    full = connected(solo, ctx, pki.a1.cn)
    solo.stop()
    solo.start()
    again = mqtt_connect(solo, ctx, pki.a1.cn, session=full.session)
    assert again.reused, "the ticket did not survive the restart"
    assert again.rc == 0 and again.version == "TLSv1.3"


def test_tls12_clients_resume_through_the_node_cache(solo, pki):  # noqa: F811
    # A TLS 1.2 ticket would be made before CONNECT decided anything: TLS 1.2
    # clients get none and resume by session id from the node's cache.
    ctx = client_context(solo, pki.a2)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    full = connected(solo, ctx, pki.a2.cn)
    assert full.version == "TLSv1.2" and not full.session.has_ticket
    again = mqtt_connect(solo, ctx, pki.a2.cn, session=full.session)
    assert again.reused and again.rc == 0


def test_the_sqlite_row_is_sealed(solo):
    db = sqlite3.connect(str(solo.data / "certmq.db"))
    try:
        rows = db.execute("SELECT sealed FROM ticket_keys").fetchall()
    finally:
        db.close()
    assert rows
    for (blob,) in rows:
        assert blob[:4] == b"CMQS" and len(blob) == KEY_LEN + SEAL_OVERHEAD


def test_node_mode_keeps_tickets_on_the_node(tmp_path_factory, pki):  # noqa: F811
    n = sqlite_node(tmp_path_factory, pki, "pernode", tls_tickets="node")
    try:
        ctx = client_context(n, pki.a1)
        full = connected(n, ctx, pki.a1.cn)
        assert mqtt_connect(n, ctx, pki.a1.cn, session=full.session).reused
        n.stop()
        n.start()
        again = mqtt_connect(n, ctx, pki.a1.cn, session=full.session)
        assert not again.reused and again.rc == 0
        db = sqlite3.connect(str(n.data / "certmq.db"))
        try:
            assert db.execute("SELECT count(*) FROM ticket_keys").fetchone()[0] == 0
        finally:
            db.close()
    finally:
        n.stop()


PERIOD = 4


def in_one_slot(action):
    """Runs action inside one rotation slot (again when a slot ended during
    it); returns its result and the slot."""
    while True:
        into = time.time() % PERIOD
        if into < 0.5:  # the node switches keys a moment after the slot starts
            time.sleep(0.5 - into)
        before = int(time.time()) // PERIOD
        r = action()
        if int(time.time()) // PERIOD == before:
            return r, before


def test_rotation_previous_key_resumes_older_gets_a_full_handshake(tmp_path_factory, pki):  # noqa: F811
    n = sqlite_node(tmp_path_factory, pki, "rotate", tls_ticket_key_rotate=str(PERIOD))
    try:
        ctx = client_context(n, pki.a1)
        old, slot = in_one_slot(lambda: connected(n, ctx, pki.a1.cn))
        wait_log(n, f"key of slot {slot + 1} in use", timeout=PERIOD + TIMEOUT)
        renewed, now = in_one_slot(lambda: mqtt_connect(n, ctx, pki.a1.cn, session=old.session))
        assert now == slot + 1
        assert renewed.reused, "a ticket of the previous key did not resume"
        assert renewed.rc == 0
        wait_log(n, f"key of slot {slot + 2} in use", timeout=PERIOD + TIMEOUT)
        late = mqtt_connect(n, ctx, pki.a1.cn, session=old.session)
        assert not late.reused, "a ticket two keys old resumed"
        assert late.rc == 0, "the full handshake that followed failed"
        # The ticket renewed under the slot+1 key is now of the previous key.
        if int(time.time()) // PERIOD == slot + 2:
            r = mqtt_connect(n, ctx, pki.a1.cn, session=renewed.session)
            assert r.reused and r.rc == 0
    finally:
        n.stop()
