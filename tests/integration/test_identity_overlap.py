# Tenant choice with overlapping trust (issue 15 item 1): a tenant that
# uploads another tenant's public intermediate or root (the same bytes every
# device sends in its chain) takes none of that tenant's devices and makes
# none of them ambiguous until it proves possession of the CA's key; the
# upload answer says a proof is required, and the audit log names the other
# tenant. Real chains made with openssl ca, mosquitto_pub devices, paho
# password clients watching each tenant's topic space.
import pytest

from identity_pki import pki, server_fixture  # noqa: F401

server = server_fixture("identity-overlap", options={"max_chain_length": "3"})


@pytest.fixture(scope="module")
def tenants(server):
    return {t: server.tenant(t) for t in ("ovc", "ova", "ovb")}


def watcher(server, clients, tenants, t):
    """A password client of tenant t subscribed to everything in its space."""
    u = server.user(t, tenants[t], "watch", f"watch-secret-{t}")
    c = server.password_client(clients, u, f"watch-{t}")
    c.connect(server.mqtt_port, host="localhost")
    assert c.subscribe("#") == (0,)
    return c


def publish_lands_in(server, dev, topic, watchers, want):
    """dev publishes with mosquitto_pub; only tenant want's watcher gets it."""
    r = server.mosquitto_pub(dev, topic, f"from {dev.cn}")
    assert r.returncode == 0, r.stderr
    assert watchers[want].get_on(topic).payload == f"from {dev.cn}".encode()
    for t, w in watchers.items():
        if t != want:
            assert [m.topic for m in w.drain(0.3)] == [], t


def audit_lines(server, uploader):
    return [ln for ln in server.stderr().splitlines()
            if "audit trusted certificate overlap" in ln and f"tenant={uploader} " in ln]


def test_public_intermediate_of_another_tenant_takes_none_of_its_devices(
        server, pki, clients, tenants):
    c, a = tenants["ovc"], tenants["ova"]
    fp_root = server.trust("ovc", c, pki.root_i.pem)
    watchers = {t: watcher(server, clients, tenants, t) for t in ("ovc", "ova")}
    publish_lands_in(server, pki.idev, "fleet/idev", watchers, "ovc")
    assert "device_idev" in server.users("ovc", c)

    r = server.call("POST", "/tenant/tenants/ova/trusted-certificates", a,
                    {"status": "ENABLED", "name": "not ours", "autoRegistrationEnabled": "true",
                     "certInPemFormat": open(pki.int_i.pem).read()})
    assert r.status == 201, r
    assert r.json["proofOfPossessionRequired"] is True
    assert b"ovc" not in r.body
    lines = audit_lines(server, "ova")
    assert lines and "tenant=ovc" in lines[-1], lines
    # The earlier upload needs no proof.
    r = server.call("GET", f"/tenant/tenants/ovc/trusted-certificates/{fp_root}", c)
    assert r.json["proofOfPossessionRequired"] is False

    # The registered device stays with C, and so does a new one.
    publish_lands_in(server, pki.idev, "fleet/idev/again", watchers, "ovc")
    fresh = pki.int_i.device("ovfresh", "ovfresh")
    publish_lands_in(server, fresh, "fleet/ovfresh", watchers, "ovc")
    assert "device_ovfresh" in server.users("ovc", c)
    assert not {"device_idev", "device_ovfresh"} & set(server.users("ova", a))


def test_duplicate_root_never_makes_devices_ambiguous_until_proven(server, pki, clients,
                                                                    tenants):
    b, a = tenants["ovb"], tenants["ova"]
    server.trust("ovb", b, pki.ca_b.pem)
    watchers = {t: watcher(server, clients, tenants, t) for t in ("ovb",)}
    watchers["ova"] = server.password_client(clients, server.user("ova", a, "w2", "w2-secret"),
                                             "watch-ova-2")
    watchers["ova"].connect(server.mqtt_port, host="localhost")
    watchers["ova"].subscribe("#")
    publish_lands_in(server, pki.b1, "fleet/b1", watchers, "ovb")

    fp = server.trust("ova", a, pki.ca_b.pem)
    r = server.call("GET", f"/tenant/tenants/ova/trusted-certificates/{fp}", a)
    assert r.json["proofOfPossessionRequired"] is True
    assert any("tenant=ovb" in ln for ln in audit_lines(server, "ova"))
    publish_lands_in(server, pki.b1, "fleet/b1/again", watchers, "ovb")
    assert server.refusal_lines("b1") == []

    # A proves possession: new devices are A's, registered ones stay with B.
    r = server.prove_possession("ova", a, fp, pki.ca_b.key)
    assert r.json["proofOfPossessionValid"] is True
    assert r.json["proofOfPossessionRequired"] is False
    publish_lands_in(server, pki.b2, "fleet/b2", watchers, "ova")
    publish_lands_in(server, pki.b1, "fleet/b1/third", watchers, "ovb")
    assert "device_b2" in server.users("ova", a)
    assert "device_b2" not in server.users("ovb", b)
