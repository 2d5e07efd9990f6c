# End-to-end identity on a TLS listener that also has a static `cafile`
# (issue #3): tenant trust still decides for every chain a tenant trusts
# (its refusals are not rescued by the cafile), the cafile admits only what
# no tenant trusts, identified by CN in a topic space of its own that never
# meets a tenant's, and certificate-less clients still need a password.
import pytest

from identity_pki import assert_mosquitto_refused, pki  # noqa: F401
from identity_pki import IdentityServer


@pytest.fixture(scope="module")
def server(tmp_path_factory, pki):
    d = tmp_path_factory.mktemp("identity-cafile")
    bundle = d / "static-cas.pem"
    # The cafile holds the static CA and, deliberately, tenant C's CA too.
    bundle.write_text(open(pki.static_ca.pem).read() + open(pki.ca_c.pem).read())
    s = IdentityServer(d, pki, cafile=str(bundle)).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def tenant(server, pki):
    auth = server.tenant("cfa")
    server.trust("cfa", auth, pki.ca_a.pem)
    fp_c = server.trust("cfa", auth, pki.ca_c.pem, auto=False, name="C without auto")
    return auth, fp_c


def test_cafile_device_lives_apart_from_tenants(server, pki, clients, tenant):
    auth, _ = tenant
    app = server.password_client(clients, auth, "app")
    app.connect(server.mqtt_port, host="localhost")
    app.subscribe("#")
    static = server.connect_device(clients, pki.st1)
    static.subscribe("#")
    tenant_dev = server.connect_device(clients, pki.a1)
    tenant_dev.publish("s/us", "100,a1", qos=1)
    tenant_dev.subscribe("#")
    # The static client publishes: only the static space hears it.
    r = server.mosquitto_pub(pki.st1, "plant/static", "from static", client_id="st1-pub")
    assert r.returncode == 0, r.stderr
    assert static.get_on("plant/static").payload == b"from static"
    # The tenant device publishes: only the tenant hears it.
    r = server.mosquitto_pub(pki.a1, "plant/tenant", "from tenant", client_id="d:a1")
    assert r.returncode == 0, r.stderr
    assert app.get_on("plant/tenant").payload == b"from tenant"
    assert tenant_dev.get_on("plant/tenant").payload == b"from tenant"
    assert [m.payload for m in static.drain()] == []
    assert [m.payload for m in app.drain(0.2) + tenant_dev.drain(0.2)] == []
    # No tenant learnt of the static client.
    assert "device_st1" not in server.users("cfa", auth)
    # The static client is named by its CN; leaf only is fine for a cafile.
    r = server.mosquitto_pub(pki.st1, "plant/static", "leaf only", client_id="st1-leaf",
                             chain=False)
    assert r.returncode == 0, r.stderr


def test_tenant_refusal_is_not_rescued_by_the_cafile(server, pki, clients, tenant):
    _, fp_c = tenant
    # Tenant cfa trusts C's CA without auto-registration; the cafile also
    # holds C's CA. The tenant's "device not registered" stands.
    assert server.connack(clients, pki.c1) == 5
    assert_mosquitto_refused(server.mosquitto_pub(pki.c1, "t/x", "m"))
    server.assert_refusal_logged("c1", "device not registered", "cfa", fp_c)
    # A tenant-trusted chain with a bad ClientId is refused too.
    assert server.connack(clients, pki.a2, "someone-else") == 5


def test_unknown_ca_and_anonymous_are_refused(server, pki, clients, tenant):
    assert server.connack(clients, pki.b1) == 5
    assert_mosquitto_refused(server.mosquitto_pub(pki.b1, "t/x", "m"))
    assert "certificate chain invalid for the listener cafile" in server.stderr()
    anon = clients("anon", tls={"cafile": server.server_ca})
    anon.connect(server.mqtt_port, host="localhost", expect_rc=5)
    server.assert_alive()
