# DELETE /user/{tenantId}/users/{userName} (issue 16 item 7): a tenant admin
# deletes a user (204, then 404); a device user takes its device
# registration with it, from the store and from the index the connect path
# reads, and its open connection is closed at once; a password user's MQTT
# connection likewise. Only the tenant's admins may delete, never their own
# user. A user with invalid UTF-8 left in an older database is listed and
# deleted without a 500.
import sqlite3
import time

import pytest

from apiserver import ADMIN, ApiServer, assert_json_error, make_tenant
from conftest import RawClient
from identity_pki import pki, server_fixture  # noqa: F401

server = server_fixture("user-delete")


def raw_device(server, dev):
    c = RawClient(server.mqtt_port, tls=dev.tls(server.server_ca))
    ack = c.connect(dev.cn)
    assert ack == b"\x20\x02\x00\x00", ack
    return c


def closed_within(client, started, limit=1.0):
    assert client.is_closed(timeout=limit + 2), "connection still open"
    took = time.monotonic() - started
    assert took < limit, f"closed after {took:.3f} s"


@pytest.fixture(scope="module")
def tenant_d(server, pki):
    auth = server.tenant("deld")
    server.trust("deld", auth, pki.ca_c.pem, auto=False)  # no re-registration on connect
    return auth


def test_delete_device_user_unregisters_and_disconnects_the_device(server, pki, tenant_d,
                                                                    tmp_path):
    auth = tenant_d
    b = server.bulk_register(auth, "ID;AUTH_TYPE\nc1;CERTIFICATES\nc2;CERTIFICATES\n",
                             tmp_path / "d.csv")
    assert b["numberOfCreated"] == 2, b
    dev = raw_device(server, pki.c1)
    bystander = raw_device(server, pki.c2)
    t0 = time.monotonic()
    r = server.call("DELETE", "/user/deld/users/device_c1", auth)
    assert r.status == 204 and r.body == b"", r
    closed_within(dev, t0)
    dev.close()
    assert "device_c1" not in server.users("deld", auth)
    assert_json_error(server.call("GET", "/user/deld/users/device_c1", auth), 404)
    assert_json_error(server.call("DELETE", "/user/deld/users/device_c1", auth), 404)
    # Not registered any more: refused on reconnect (the CA does not auto-register).
    again = RawClient(server.mqtt_port, tls=pki.c1.tls(server.server_ca))
    ack = again.connect("c1")
    assert ack[:3] == b"\x20\x02\x00" and ack[3] == 5, ack
    again.close()
    # The other device of the tenant is untouched.
    bystander.send(b"\xc0\x00")  # PINGREQ
    assert bystander.recv_packet() == b"\xd0\x00"
    bystander.close()
    # Registering it again works, and it connects again.
    b = server.bulk_register(auth, "ID;AUTH_TYPE\nc1;CERTIFICATES\n", tmp_path / "d2.csv")
    assert b["numberOfCreated"] == 1, b
    raw_device(server, pki.c1).close()
    assert "user device_c1 deleted with its device registration" in server.stderr()


def test_delete_password_user_closes_its_connection_and_its_api_access(server, pki, clients):
    auth = server.tenant("delp")
    bob = server.user("delp", auth, "bob", "bob-password-1")
    assert server.call("GET", "/user/currentUser", bob).status == 200
    c = server.password_client(clients, bob, "bob-client")
    c.connect(server.mqtt_port, host="localhost", expect_rc=0)
    t0 = time.monotonic()
    assert server.call("DELETE", "/user/delp/users/bob", auth).status == 204
    assert c.disconnected.wait(2), "password client not disconnected"
    assert time.monotonic() - t0 < 1.0
    assert_json_error(server.call("GET", "/user/currentUser", bob), 401)
    again = server.password_client(clients, bob, "bob-again")
    assert again.connect(server.mqtt_port, host="localhost", expect_rc=None) == 4


def test_only_the_tenants_admins_delete_and_never_themselves(server):
    a = server.tenant("delx")
    other = server.tenant("dely")
    server.user("delx", a, "carol", "carol-password-1")
    plain = server.user("delx", a, "dave", "dave-password-1")
    assert_json_error(server.call("DELETE", "/user/delx/users/carol", other), 403)
    assert_json_error(server.call("DELETE", "/user/delx/users/carol", plain), 403)
    assert_json_error(server.call("DELETE", "/user/delx/users/admin", a), 409)
    assert_json_error(server.call("DELETE", "/user/delx/users/nobody", a), 404)
    assert "carol" in server.users("delx", a)
    # The management tenant's admin may delete in any tenant.
    assert server.call("DELETE", "/user/delx/users/carol", ADMIN).status == 204
    assert "carol" not in server.users("delx", a)


def test_user_with_invalid_utf8_from_an_older_database_is_listed_and_deleted(tmp_path):
    s = ApiServer(tmp_path / "old").start()
    try:
        auth = make_tenant(s, "olddb")
        s.stop()
        db = sqlite3.connect(s.data / "certmq.db")
        with db:
            for name in (b"device_bad\xff\n", b"legacy\xc3"):
                db.execute("INSERT INTO users(tenant, name, email, pw_hash, roles, device,"
                           " created) VALUES('olddb', CAST(? AS TEXT), '', '', 8, ?, 0)",
                           (name, 1 if name.startswith(b"device_") else 0))
            db.execute("INSERT INTO devices(tenant, cn, created)"
                       " VALUES('olddb', CAST(? AS TEXT), 0)", (b"bad\xff\n",))
        db.close()
        s.start()
        r = s.call("GET", "/user/olddb/users?pageSize=100", auth)
        assert r.status == 200, r
        names = {u["userName"]: u for u in r.json["users"]}
        assert "device_bad\\xff\\n" in names and "legacy\\xc3" in names, names
        assert names["legacy\\xc3"]["self"].endswith("/user/olddb/users/legacy%C3"), names
        r = s.call("GET", "/user/olddb/users/legacy%C3", auth)
        assert r.status == 200 and r.json["userName"] == "legacy\\xc3", r
        assert s.call("DELETE", "/user/olddb/users/legacy%C3", auth).status == 204
        assert s.call("DELETE", "/user/olddb/users/device_bad%FF%0A", auth).status == 204
        r = s.call("GET", "/user/olddb/users?pageSize=100", auth)
        assert [u["userName"] for u in r.json["users"]] == ["admin"], r
    finally:
        s.stop()
    db = sqlite3.connect(s.data / "certmq.db")
    assert db.execute("SELECT count(*) FROM devices WHERE tenant = 'olddb'").fetchone()[0] == 0
    db.close()
