# End-to-end device identity (issue #3) against the real binary: a tenant is
# created, its admin uploads a CA made with the openssl CLI as the guide does,
# devices connect with mosquitto_pub and paho over mutual TLS (listener with
# client certificates optional and no cafile: only tenant trust applies), and
# the chain policy's refusals are CONNACK 5 plus a log line naming tenant, CN,
# anchor fingerprint and reason. Default max_chain_length (2).
import pytest

from identity_pki import ADMIN, assert_mosquitto_refused, pki, server_fixture  # noqa: F401

server = server_fixture("identity-connect")


@pytest.fixture(scope="module")
def tenant_a(server, pki):
    auth = server.tenant("conna")
    fp = server.trust("conna", auth, pki.ca_a.pem, auto=True, name="tenant A devices")
    return auth, fp


def test_device_connects_with_its_chain_and_publishes_and_subscribes(server, pki, tenant_a,
                                                                      clients):
    auth, fp = tenant_a
    app = server.password_client(clients, auth, "backend-1")
    app.connect(server.mqtt_port, host="localhost")
    app.subscribe("devices/a1/s/us")
    app.subscribe("plant/#")
    # mosquitto_pub as device a1, ClientId = CN, chain = device + CA.
    r = server.mosquitto_pub(pki.a1, "s/us", "200,c8y_Temperature,T,21")
    assert r.returncode == 0, r.stderr
    m = app.get_on("devices/a1/s/us")
    assert m.payload == b"200,c8y_Temperature,T,21"
    # A paho device subscribes to a shared topic (after its first s/us) and
    # receives what mosquitto_pub as another device publishes there.
    dev = server.connect_device(clients, pki.a2)
    dev.publish("s/us", "100,a2,thermo", qos=1)
    assert dev.subscribe("plant/line1", qos=1) == (1,)
    r = server.mosquitto_pub(pki.a1, "plant/line1", "hello from a1")
    assert r.returncode == 0, r.stderr
    assert dev.get_on("plant/line1").payload == b"hello from a1"
    assert app.get_on("plant/line1").payload == b"hello from a1"
    dev.disconnect()


def test_leaf_without_the_ca_is_refused(server, pki, tenant_a, clients):
    assert server.connack(clients, pki.a3, chain=False) == 5
    assert_mosquitto_refused(server.mosquitto_pub(pki.a3, "t/x", "m", chain=False))
    server.assert_refusal_logged("a3", "ca not in chain")
    # The same device with its chain is fine.
    assert server.connack(clients, pki.a3) == 0


def test_intermediate_chain_is_too_long_at_the_default_maximum(server, pki, clients):
    auth = server.tenant("conni")
    fp = server.trust("conni", auth, pki.root_i.pem)
    assert server.connack(clients, pki.idev) == 5
    assert_mosquitto_refused(server.mosquitto_pub(pki.idev, "t/x", "m"))
    server.assert_refusal_logged("idev", "chain too long", "conni", fp)


def test_expired_device_certificate(server, pki, tenant_a, clients):
    _, fp = tenant_a
    assert server.connack(clients, pki.a_expired) == 5
    assert_mosquitto_refused(server.mosquitto_pub(pki.a_expired, "t/x", "m"))
    server.assert_refusal_logged("aexpired", "expired", "conna", fp)


def test_self_signed_device_is_refused_alone_and_with_a_trusted_ca_appended(server, pki,
                                                                           tenant_a, clients):
    _, fp = tenant_a
    assert server.connack(clients, pki.selfie) == 5
    assert_mosquitto_refused(server.mosquitto_pub(pki.selfie, "t/x", "m"))
    server.assert_refusal_logged("selfie", "untrusted")
    # Appending tenant A's CA to the chain does not make it A's device.
    assert server.connack(clients, pki.selfie_with_ca) == 5
    assert_mosquitto_refused(server.mosquitto_pub(pki.selfie_with_ca, "t/x", "m"))
    lines = [ln for ln in server.refusal_lines("selfie") if "tenant=conna" in ln]
    assert lines and all(f"anchor={fp}" in ln for ln in lines), lines
    assert not any('reason="accepted"' in ln for ln in lines)


def test_common_name_with_a_colon_is_refused(server, pki, tenant_a, clients):
    _, fp = tenant_a
    assert server.connack(clients, pki.a_colon) == 5
    assert_mosquitto_refused(server.mosquitto_pub(pki.a_colon, "t/x", "m"))
    server.assert_refusal_logged("bad:cn", "bad common name", "conna", fp)


@pytest.mark.parametrize("client_id", ["a2", "d:a2", "d:a2:tmpl7"])
def test_client_id_forms_that_match_the_cn(server, pki, tenant_a, clients, client_id):
    c = server.connect_device(clients, pki.a2, client_id)
    c.disconnect()
    r = server.mosquitto_pub(pki.a2, "t/x", "m", client_id=client_id)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("client_id", ["a1", "a2x", "xa2", "d:a2:", "d:a2x", "e:a2", "d:", "A2"])
def test_client_id_not_matching_the_cn_is_refused(server, pki, tenant_a, clients, client_id):
    _, fp = tenant_a
    assert server.connack(clients, pki.a2, client_id) == 5
    assert_mosquitto_refused(server.mosquitto_pub(pki.a2, "t/x", "m", client_id=client_id))
    server.assert_refusal_logged("a2", "client id mismatch", "conna", fp)


def test_disabled_anchor_refuses_until_enabled(server, pki, clients):
    auth = server.tenant("connd")
    fp = server.trust("connd", auth, pki.ca_b.pem, status="DISABLED")
    assert server.connack(clients, pki.b1) == 5
    assert_mosquitto_refused(server.mosquitto_pub(pki.b1, "t/x", "m"))
    server.assert_refusal_logged("b1", "anchor disabled", "connd", fp)
    server.set_cert("connd", auth, fp, status="ENABLED")
    assert server.connack(clients, pki.b1) == 0
    assert server.mosquitto_pub(pki.b1, "t/x", "m").returncode == 0


def test_unregistered_device_refused_until_bulk_registered(server, pki, clients, tmp_path):
    auth = server.tenant("connc")
    fp = server.trust("connc", auth, pki.ca_c.pem, auto=False)
    assert server.connack(clients, pki.c1) == 5
    assert_mosquitto_refused(server.mosquitto_pub(pki.c1, "t/x", "m"))
    server.assert_refusal_logged("c1", "device not registered", "connc", fp)
    assert "device_c1" not in server.users("connc", auth)
    b = server.bulk_register(auth, "ID;CREDENTIALS;AUTH_TYPE;TYPE;NAME\n"
                             "c1;;CERTIFICATES;thermo;Boiler 1\n", tmp_path / "bulk.csv")
    assert (b["numberOfCreated"], b["numberOfFailed"]) == (1, 0), b
    assert server.connack(clients, pki.c1) == 0
    assert server.mosquitto_pub(pki.c1, "s/us", "100,c1").returncode == 0
    # Its neighbour under the same CA is still unregistered.
    assert server.connack(clients, pki.c2) == 5


def test_auto_registration_creates_the_device_user(server, pki, tenant_a, clients):
    auth, _ = tenant_a
    assert "device_a4" not in server.users("conna", auth)
    r = server.mosquitto_pub(pki.a4, "s/us", "100,a4")
    assert r.returncode == 0, r.stderr
    users = server.users("conna", auth)
    assert users["device_a4"]["deviceUser"] is True
    assert "device_a4" in server.users("conna", ADMIN)
    assert "tenant conna: device a4 registered on first connect" in server.stderr()
    # A second connection finds it registered: no second user, no new line.
    assert server.connack(clients, pki.a4, "d:a4") == 0
    assert list(server.users("conna", auth)).count("device_a4") == 1
    assert server.stderr().count("device a4 registered on first connect") == 1
    # Visible in its own tenant only.
    other = server.tenant("conn-other")
    assert "device_a4" not in server.users("conn-other", other)


def test_ca_with_a_1024_bit_key_is_refused_at_upload(server, pki):
    auth = server.tenant("connw")
    r = server.call("POST", "/tenant/tenants/connw/trusted-certificates", auth,
                    {"status": "ENABLED", "name": "weak", "autoRegistrationEnabled": True,
                     "certInPemFormat": open(pki.weak_ca.pem).read()})
    assert r.status == 422, r
    listing = server.call("GET", "/tenant/tenants/connw/trusted-certificates", auth)
    assert listing.json["certificates"] == []


def test_sql_metacharacters_in_names_and_csv_are_data(server, pki, clients, tmp_path):
    # Tenant fields: the id is refused (only [A-Za-z0-9_.@-]), the others stored verbatim.
    evil = "x'); DROP TABLE tenants;--"
    r = server.call("POST", "/tenant/tenants", ADMIN,
                    {"id": "a'; DROP TABLE users;--", "adminName": "admin",
                     "adminPass": "password-1"})
    assert r.status == 422, r
    r = server.call("POST", "/tenant/tenants", ADMIN,
                    {"id": "connsql", "domain": evil, "company": "Bobby' OR '1'='1",
                     "adminName": "admin", "adminPass": "tenant-secret-1"})
    assert r.status == 201, r
    auth = ("connsql/admin", "tenant-secret-1")
    t = server.call("GET", "/tenant/tenants/connsql", auth).json
    assert (t["domain"], t["company"]) == (evil, "Bobby' OR '1'='1")
    # Certificate name.
    name = "ca\"'; DELETE FROM trusted_certs; --"
    fp = server.trust("connsql", auth, pki.ca_q.pem, auto=False, name=name)
    assert server.call("GET", f"/tenant/tenants/connsql/trusted-certificates/{fp}",
                       auth).json["name"] == name
    # CSV IDs with quotes and SQL: the device named so registers and connects
    # (CN = ClientId); a quote trick registers nothing else.
    b = server.bulk_register(auth, f"ID,AUTH_TYPE,NAME\n{pki.q_sql.cn},CERTIFICATES,{evil}\n"
                             f"{pki.q_or.cn}x,CERTIFICATES,x\n", tmp_path / "sql.csv")
    assert (b["numberOfCreated"], b["numberOfFailed"]) == (2, 0), b
    users = server.users("connsql", auth)
    assert {f"device_{pki.q_sql.cn}", f"device_{pki.q_or.cn}x"} <= set(users)
    assert f"device_{pki.q_or.cn}" not in users
    assert server.connack(clients, pki.q_sql) == 0
    assert server.mosquitto_pub(pki.q_sql, "s/us", "100,x").returncode == 0
    assert server.connack(clients, pki.q_or) == 5
    server.assert_refusal_logged(pki.q_or.cn, "device not registered", "connsql", fp)
    # Everything else is intact: other tenants, their certificates and devices.
    ids = {x["id"] for x in server.call("GET", "/tenant/tenants?pageSize=100", ADMIN)
           .json["tenants"]}
    assert {"management", "connsql", "connc"} <= ids
    assert server.connack(clients, pki.a1) == 0
