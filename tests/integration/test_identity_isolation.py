# End-to-end tenant isolation (issue #3): devices (mutual TLS) and password
# clients (<tenantId>/<user> over server-only TLS) of tenant A never receive
# what is published in tenant B, whatever the topic ('#' included, retained
# messages included, the same user names and ClientIds in both tenants), and a
# CA trusted only by B never admits a device into A.
import time

import pytest

from identity_pki import pki, server_fixture  # noqa: F401

server = server_fixture("identity-isolation")

TOPICS = ["shared/topic", "a", "devices", "x/y/z", "$SYS/x", "s/us", "s/ds"]


@pytest.fixture(scope="module")
def tenants(server, pki):
    a = server.tenant("isoa")
    b = server.tenant("isob")
    server.trust("isoa", a, pki.ca_a.pem)
    server.trust("isob", b, pki.ca_b.pem)
    # The same user name in both tenants, different passwords; both may
    # read their tenant's device topics.
    ua = server.user("isoa", a, "app", "app-secret-A", roles=["ROLE_DEVICE_CONTROL_ADMIN"])
    ub = server.user("isob", b, "app", "app-secret-B", roles=["ROLE_DEVICE_CONTROL_ADMIN"])
    return {"a": a, "b": b, "ua": ua, "ub": ub}


def listeners(server, pki, clients, tenants, who):
    """Every kind of subscriber of one tenant, each on '#' and a device's s/us."""
    dev, peer = (pki.a1, "a2") if who == "a" else (pki.b1, "b2")
    user = server.password_client(clients, tenants["u" + who], "same-client-id")
    user.connect(server.mqtt_port, host="localhost")
    assert user.subscribe("#") == (0,)
    user.subscribe("devices/+/s/us")
    device = server.connect_device(clients, dev)
    device.publish("s/us", "100,listener", qos=1)
    assert device.subscribe("#") == (0,)
    return user, device


def test_password_clients_and_devices_see_only_their_tenant(server, pki, clients, tenants):
    ua, da = listeners(server, pki, clients, tenants, "a")
    ub, db = listeners(server, pki, clients, tenants, "b")
    # Each tenant's user saw its own listener device's s/us, nothing else.
    assert [(m.topic, m.payload) for m in ua.drain(0.3)] == [("devices/a1/s/us", b"100,listener")]
    assert [(m.topic, m.payload) for m in ub.drain(0.3)] == [("devices/b1/s/us", b"100,listener")]
    # B publishes on everything it may: a device with mosquitto_pub, a
    # password client with paho (the same ClientId as A's client: no takeover).
    pub = server.password_client(clients, tenants["ub"], "same-client-id-pub")
    pub.connect(server.mqtt_port, host="localhost")
    for t in TOPICS:
        if not t.startswith("$"):
            pub.publish(t, f"user-b {t}", qos=1)
        r = server.mosquitto_pub(pki.b2, t, f"device-b {t}")
        assert r.returncode == 0 or t.startswith("$"), (t, r.stderr)
    pub.publish("retained/b", "kept", qos=1, retain=True)
    # B's subscribers get B's messages...
    got_b = {m.payload for m in ub.drain(1.5)}
    assert {b"user-b shared/topic", b"device-b shared/topic", b"device-b s/us",
            b"kept"} <= got_b, got_b
    assert b"device-b shared/topic" in {m.payload for m in db.drain(0.2)}
    # ...A's get none of them.
    assert [(m.topic, m.payload) for m in ua.drain(0.3) + da.drain(0.3)] == []
    # A's late '#' subscriber sees no retained message of B.
    late = server.password_client(clients, tenants["ua"], "late")
    late.connect(server.mqtt_port, host="localhost")
    late.subscribe("#")
    late.subscribe("retained/b")
    assert late.drain() == []
    # mosquitto_sub as A's user, '#': nothing of B arrives, A's own does.
    sub = server.mosquitto_sub("#", auth=tenants["ua"], client_id="mosq-a", count=1)
    time.sleep(0.5)
    for t in TOPICS[:2]:
        server.mosquitto_pub(pki.b2, t, "device-b again")
    assert server.mosquitto_pub(pki.a2, "shared/topic", "device-a").returncode == 0
    out, err = sub.communicate(timeout=15)
    assert out.strip() == "shared/topic device-a", (out, err)
    assert ua.get_on("shared/topic").payload == b"device-a"


def test_a_ca_trusted_only_by_b_never_admits_into_a(server, pki, clients, tenants):
    ua = server.password_client(clients, tenants["ua"], "watch-a")
    ua.connect(server.mqtt_port, host="localhost")
    ua.subscribe("#")
    ua.subscribe("devices/+/s/us")
    ub = server.password_client(clients, tenants["ub"], "watch-b")
    ub.connect(server.mqtt_port, host="localhost")
    ub.subscribe("devices/b2/s/us")
    # B's device claims A's identity with A's user name and password: the
    # certificate decides, the device is B's.
    r = server.mosquitto_pub(pki.b2, "s/us", "who am i", auth=tenants["ua"])
    assert r.returncode == 0, r.stderr
    assert ub.get_on("devices/b2/s/us").payload == b"who am i"
    assert ua.drain() == []
    # B's device never became a user of A.
    assert "device_b2" not in server.users("isoa", tenants["a"])
    # A leaf of B's CA presented with A's CA appended is not A's device.
    mixed = server.pki.dir / "b2WithCaA.pem"
    mixed.write_bytes(open(pki.b2.pem, "rb").read() + open(pki.ca_a.pem, "rb").read())
    c = clients("b2", tls={"cafile": server.server_ca, "certfile": str(mixed),
                           "keyfile": pki.b2.key})
    c.connect(server.mqtt_port, host="localhost", expect_rc=5)
    server.assert_alive()
    lines = server.refusal_lines("b2")
    assert lines and "tenant=isob" not in lines[-1], lines
    # A password login never reaches the other tenant with the other's password.
    wrong = server.password_client(clients, ("isoa/app", "app-secret-B"), "x")
    wrong.connect(server.mqtt_port, host="localhost", expect_rc=4)
    server.assert_alive()
    nobody = clients("anon", tls={"cafile": server.server_ca})
    nobody.connect(server.mqtt_port, host="localhost", expect_rc=5)
    server.assert_alive()
    assert ua.drain() == []
