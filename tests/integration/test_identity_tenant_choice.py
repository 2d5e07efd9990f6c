# End-to-end tenant choice (issue #3, issue 15 item 1): the same CA uploaded
# by two tenants is the first uploader's (the second, unproven, upload never
# makes the device ambiguous, also after a restart); once the second tenant's
# trusted certificate has a verified proof of possession (set directly in the
# SQLite file while the server is stopped) that tenant wins for a device not
# registered yet, and the device lands in its topic space only.
import pytest

from identity_pki import IdentityServer, assert_mosquitto_refused, pki  # noqa: F401


@pytest.fixture(scope="module")
def server(tmp_path_factory, pki):
    s = IdentityServer(tmp_path_factory.mktemp("identity-choice"), pki).start()
    yield s
    s.stop()


def test_same_ca_in_two_tenants_is_the_first_uploaders_until_the_other_proves_possession(
        server, pki, clients):
    t1 = server.tenant("choice1")
    t2 = server.tenant("choice2")
    fp1 = server.trust("choice1", t1, pki.ca_s.pem, auto=False)
    fp2 = server.trust("choice2", t2, pki.ca_s.pem)
    assert fp1 == fp2
    # Tenant 1 uploaded first and has no auto registration: the device is
    # tenant 1's, unregistered; never "ambiguous", never tenant 2's.
    for restart in (False, True):
        if restart:
            server.stop()
            server.start()
        assert server.connack(clients, pki.s1) == 5
        assert_mosquitto_refused(server.mosquitto_pub(pki.s1, "t/x", "m"))
        server.assert_refusal_logged("s1", "device not registered", "choice1", fp1)
        assert not any("ambiguous" in ln for ln in server.refusal_lines("s1"))
        for t, auth in (("choice1", t1), ("choice2", t2)):
            assert "device_s1" not in server.users(t, auth)

    server.stop()
    server.set_pop_valid("choice2", fp2)
    server.start()
    r = server.call("GET", f"/tenant/tenants/choice2/trusted-certificates/{fp2}", t2)
    assert r.json["proofOfPossessionValid"] is True, r
    r = server.call("GET", f"/tenant/tenants/choice1/trusted-certificates/{fp1}", t1)
    assert r.json["proofOfPossessionValid"] is False, r

    app1 = server.password_client(clients, t1, "app")
    app1.connect(server.mqtt_port, host="localhost")
    app1.subscribe("devices/s1/s/us")
    app1.subscribe("#")
    app2 = server.password_client(clients, t2, "app")
    app2.connect(server.mqtt_port, host="localhost")
    app2.subscribe("devices/s1/s/us")
    app2.subscribe("#")
    r = server.mosquitto_pub(pki.s1, "s/us", "100,s1")
    assert r.returncode == 0, r.stderr
    r = server.mosquitto_pub(pki.s1, "fleet/s1", "hello")
    assert r.returncode == 0, r.stderr
    assert app2.get_on("devices/s1/s/us").payload == b"100,s1"
    assert app2.get_on("fleet/s1").payload == b"hello"
    assert app1.drain() == []
    assert "device_s1" in server.users("choice2", t2)
    assert "device_s1" not in server.users("choice1", t1)
    # Tenant 2 disables its certificate: tenant 1's is then the only enabled
    # one, so the device is tenant 1's (a new device user there).
    server.set_cert("choice2", t2, fp2, status="DISABLED")
    server.set_cert("choice1", t1, fp1, autoRegistrationEnabled=True)
    assert server.connack(clients, pki.s1) == 0
    r = server.mosquitto_pub(pki.s1, "fleet/s1", "now in tenant 1")
    assert r.returncode == 0, r.stderr
    assert app1.get_on("fleet/s1").payload == b"now in tenant 1"
    assert [m.topic for m in app2.drain()] == []
