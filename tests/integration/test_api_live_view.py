# The live view of devices through REST (issue 11): GET /devices/connections
# (a tenant's connected clients with TLS and certificate details), DELETE
# /devices/connections/{clientId}, GET /devices/refusals (newest first, per
# tenant), GET /devices (inventory with last-seen, notAfter and
# ?expiringWithinDays=N). Real paho and mosquitto_pub clients over mutual TLS,
# curl for REST; every route is tenant-scoped.
import socket
import ssl
import time

import pytest

from apiserver import ADMIN
from conftest import TIMEOUT
from identity_pki import assert_mosquitto_refused, pki, server_fixture  # noqa: F401

server = server_fixture("live-view")

CONNS = "/devices/connections?pageSize=100"


@pytest.fixture(scope="module")
def tenants(server, pki):
    a = server.tenant("livea")
    fp_a = server.trust("livea", a, pki.ca_a.pem)
    b = server.tenant("liveb")
    server.trust("liveb", b, pki.ca_b.pem)
    return a, fp_a, b


def wait_for(fn, what):
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def connections(server, auth, query=""):
    r = server.call("GET", CONNS + query, auth)
    assert r.status == 200, r
    return {c["clientId"]: c for c in r.json["connections"]}


def test_connections_list_the_tenants_clients_with_tls_details(server, pki, clients, tenants):
    a, fp_a, b = tenants
    dev = server.connect_device(clients, pki.a1)
    other = server.connect_device(clients, pki.b1)
    conns = connections(server, a)
    c = conns["a1"]
    assert c["cn"] == "a1" and c["kind"] == "certificate"
    assert c["remoteAddress"].startswith("127.0.0.1:")
    assert c["protocolVersion"] == "3.1.1"
    assert c["tlsVersion"].startswith("TLSv1.") and c["cipher"]
    assert c["handshake"] == "full"
    assert c["anchorFingerprint"] == fp_a
    assert c["notAfter"].endswith("Z") and c["connectedSince"].endswith("Z")
    assert c["node"]
    assert "b1" not in conns, "tenant A sees tenant B's device"
    assert set(connections(server, b)) == {"b1"}
    # The management admin may look at any tenant.
    assert set(connections(server, ADMIN, "&tenant=liveb")) == {"b1"}
    # The search box: a substring of ClientId or CN.
    assert set(connections(server, a, "&q=zzz")) == set()
    dev.disconnect()
    other.disconnect()
    wait_for(lambda: "a1" not in connections(server, a), "a1 to leave the list")


def test_disconnect_closes_the_connection_and_is_tenant_scoped(server, pki, clients, tenants):
    a, _, b = tenants
    dev = server.connect_device(clients, pki.a2)
    # Tenant B cannot disconnect tenant A's device, not even by naming tenant A.
    r = server.call("DELETE", "/devices/connections/a2", b)
    assert r.status == 404, r
    r = server.call("DELETE", "/devices/connections/a2?tenant=livea", b)
    assert r.status == 403, r
    assert not dev.disconnected.is_set()
    r = server.call("DELETE", "/devices/connections/a2", a)
    assert r.status == 204, r
    assert dev.disconnected.wait(TIMEOUT), "device still connected"
    wait_for(lambda: "a2" not in connections(server, a), "a2 to leave the list")
    r = server.call("DELETE", "/devices/connections/a2", a)
    assert r.status == 404, r


def test_refusals_newest_first_with_reason_per_tenant(server, pki, clients, tenants):
    a, fp_a, b = tenants
    assert_mosquitto_refused(server.mosquitto_pub(pki.a_expired, "t/x", "m"))
    assert server.connack(clients, pki.a3, client_id="not-a3") == 5
    r = server.call("GET", "/devices/refusals?pageSize=1000", a)
    assert r.status == 200, r
    rows = r.json["refusals"]
    assert [x["cn"] for x in rows[:2]] == ["a3", "aexpired"], rows
    assert rows[0]["reason"] == "client id mismatch" and rows[0]["clientId"] == "not-a3"
    assert rows[1]["reason"] == "expired"
    assert rows[1]["anchorFingerprint"] == fp_a
    assert rows[1]["remoteAddress"] == "127.0.0.1"
    assert rows[0]["time"] >= rows[1]["time"]
    r = server.call("GET", "/devices/refusals?pageSize=1000", b)
    assert r.status == 200 and r.json["refusals"] == [], r


def test_inventory_has_last_seen_and_not_after_and_filters_expiry(server, pki, clients, tenants):
    a, _, _ = tenants
    dev = server.connect_device(clients, pki.a4)
    r = server.call("GET", "/devices?pageSize=100", a)
    assert r.status == 200, r
    devs = {d["id"]: d for d in r.json["devices"]}
    assert devs["a4"]["connected"] is True
    assert devs["a4"]["lastSeen"].endswith("Z") and devs["a4"]["notAfter"].endswith("Z")
    # a4 is valid for about a year: not within 30 days, within 400.
    r = server.call("GET", "/devices?pageSize=100&expiringWithinDays=30", a)
    assert "a4" not in {d["id"] for d in r.json["devices"]}, r
    r = server.call("GET", "/devices?pageSize=100&expiringWithinDays=400", a)
    assert "a4" in {d["id"] for d in r.json["devices"]}, r
    # The paging links keep the filter.
    r = server.call("GET", "/devices?pageSize=1&expiringWithinDays=400", a)
    assert "expiringWithinDays=400" in r.json["self"], r.json
    assert "next" not in r.json or "expiringWithinDays=400" in r.json["next"], r.json
    r = server.call("GET", "/devices?expiringWithinDays=soon", a)
    assert r.status == 422, r
    dev.disconnect()
    r = wait_for(lambda: (lambda x: x if not {d["id"]: d for d in x.json["devices"]}["a4"]
                          ["connected"] else None)(server.call("GET", "/devices?pageSize=100", a)),
                 "a4 to show as disconnected")
    assert {d["id"]: d for d in r.json["devices"]}["a4"]["lastSeen"]


def test_live_routes_need_a_tenant_admin(server, tenants):
    a, _, _ = tenants
    user = server.user("livea", a, "viewer", "viewer-secret-1")
    for path in ("/devices", "/devices/connections", "/devices/refusals"):
        assert server.call("GET", path, user).status == 403, path
        assert server.call("GET", path).status == 401, path
        assert server.call("GET", path + "?tenant=nosuch", a).status == 403, path


def _connect_packet(client_id):
    cid = client_id.encode()
    var = b"\x00\x04MQTT\x04\x02\x00\x3c" + len(cid).to_bytes(2, "big") + cid
    return bytes([0x10, len(var)]) + var


def _tls_mqtt(server, ctx, client_id, session=None):
    """A TLS 1.3 MQTT connection that got CONNACK 0 (the caller closes it)."""
    raw = socket.create_connection(("127.0.0.1", server.mqtt_port), timeout=10)
    s = ctx.wrap_socket(raw, server_hostname="localhost", session=session)
    s.sendall(_connect_packet(client_id))
    ack = b""
    while len(ack) < 4:
        chunk = s.recv(4 - len(ack))
        assert chunk, "closed before CONNACK"
        ack += chunk
    assert ack == b"\x20\x02\x00\x00", ack
    return s


def test_a_resumed_session_shows_as_resumed(server, pki, tenants):
    a, _, _ = tenants
    ctx = ssl.create_default_context(cafile=server.server_ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(pki.a3.chain, pki.a3.key)
    first = _tls_mqtt(server, ctx, "a3")
    assert connections(server, a)["a3"]["handshake"] == "full"
    session = first.session
    first.sendall(b"\xe0\x00")
    first.close()
    wait_for(lambda: "a3" not in connections(server, a), "a3 to leave")
    again = _tls_mqtt(server, ctx, "a3", session=session)
    try:
        assert again.session_reused
        c = connections(server, a)["a3"]
        assert c["handshake"] == "resumed"
        assert c["notAfter"], "a resumed session still knows the certificate"
    finally:
        again.close()


def test_refused_password_logins_of_known_users_are_listed(server, clients, tenants):
    a, _, b = tenants
    server.user("livea", a, "pwdev", "pwdev-secret-1")

    def login(user, password, client_id):
        c = clients(client_id, tls={"cafile": server.server_ca}, username=user, password=password)
        return c.connect(server.mqtt_port, host="localhost", expect_rc=None)

    assert login("livea/pwdev", "wrong-password", "pw-client") == 4
    assert login("livea/ghost", "wrong-password", "ghost-client") == 4
    rows = server.call("GET", "/devices/refusals?pageSize=1000", a).json["refusals"]
    assert rows[0]["cn"] == "pwdev" and rows[0]["reason"] == "bad user name or password", rows
    assert rows[0]["clientId"] == "pw-client" and rows[0]["anchorFingerprint"] is None
    assert "ghost" not in {r["cn"] for r in rows}, "an unknown user got into the ring"
    assert server.call("GET", "/devices/refusals?pageSize=1000", b).json["refusals"] == []


def test_last_seen_and_not_after_survive_a_restart(server, pki, clients, tenants):
    """Last in the module: it restarts the server. What the inventory knows
    of a device comes back from the store, the refusal ring (in memory, as
    the issue asks) does not."""
    a, _, _ = tenants
    dev = server.connect_device(clients, pki.a2)
    dev.disconnect()
    before = {d["id"]: d for d in server.call("GET", "/devices?pageSize=100", a).json["devices"]}
    assert before["a2"]["lastSeen"] and before["a2"]["notAfter"], before
    server.stop()  # SIGTERM: what was seen is written at stop
    server.start()
    after = {d["id"]: d for d in server.call("GET", "/devices?pageSize=100", a).json["devices"]}
    assert after["a2"]["connected"] is False
    assert after["a2"]["lastSeen"] == before["a2"]["lastSeen"], (before["a2"], after["a2"])
    assert after["a2"]["notAfter"] == before["a2"]["notAfter"], (before["a2"], after["a2"])
    r = server.call("GET", "/devices?pageSize=100&expiringWithinDays=400", a)
    assert "a2" in {d["id"] for d in r.json["devices"]}, r
