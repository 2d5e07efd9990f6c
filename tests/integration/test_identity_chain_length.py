# End-to-end chain policy with intermediates (issue #3), max_chain_length 3:
# root -> intermediate (openssl ca -extensions v3_ca) -> device is accepted,
# one more intermediate is too long, a pathlen:0 root refuses an
# intermediate, and a CA:false signer never signs a device. The default
# maximum (2) refusing the intermediate chain is in test_identity_connect.py.
from identity_pki import assert_mosquitto_refused, openssl, pki, server_fixture  # noqa: F401

server = server_fixture("identity-chain3", options={"max_chain_length": "3"})


def test_intermediate_chain_accepted_at_three(server, pki, clients):
    auth = server.tenant("chi")
    server.trust("chi", auth, pki.root_i.pem)
    app = server.password_client(clients, auth, "app")
    app.connect(server.mqtt_port, host="localhost")
    app.subscribe("devices/idev/s/us")
    r = server.mosquitto_pub(pki.idev, "s/us", "100,idev")
    assert r.returncode == 0, r.stderr
    assert app.get_on("devices/idev/s/us").payload == b"100,idev"
    dev = server.connect_device(clients, pki.idev, "d:idev")
    dev.disconnect()
    # The chain without the root is refused: the CA must be presented.
    assert server.connack(clients, pki.idev, chain=False) == 5
    # Two intermediates make four certificates: too long at 3.
    assert server.connack(clients, pki.idev2) == 5
    assert_mosquitto_refused(server.mosquitto_pub(pki.idev2, "t/x", "m"))
    fp = server.call("GET", "/tenant/tenants/chi/trusted-certificates", auth) \
        .json["certificates"][0]["fingerprint"]
    server.assert_refusal_logged("idev2", "chain too long", "chi", fp)


def test_pathlen_exceeded(server, pki, clients):
    auth = server.tenant("chp")
    fp = server.trust("chp", auth, pki.root_pl0.pem)
    assert server.connack(clients, pki.pdev) == 5
    assert_mosquitto_refused(server.mosquitto_pub(pki.pdev, "t/x", "m"))
    server.assert_refusal_logged("pdev", "path length exceeded", "chp", fp)


def test_signer_with_ca_false_is_refused(server, pki, clients):
    auth = server.tenant("chn")
    fp = server.trust("chn", auth, pki.root_nca.pem)
    assert server.connack(clients, pki.ncdev) == 5
    assert_mosquitto_refused(server.mosquitto_pub(pki.ncdev, "t/x", "m"))
    server.assert_refusal_logged("ncdev", "signer not a CA", "chn", fp)
    # The CA:false certificate itself cannot be uploaded as a trusted CA.
    r = server.call("POST", "/tenant/tenants/chn/trusted-certificates", auth,
                    {"status": "ENABLED", "name": "not a CA", "autoRegistrationEnabled": True,
                     "certInPemFormat": open(pki.notca.pem).read()})
    assert r.status == 422, r


def test_intermediate_uploaded_as_anchor_is_the_most_specific_once_proven(server, pki,
                                                                          clients):
    """A second tenant trusting the intermediate below the root other tenants
    trusted first takes part once it proves possession of the intermediate's
    key; it then wins (closest to the leaf), and the path ends at the
    intermediate."""
    root_t = server.tenant("chroot")
    inter_t = server.tenant("chint")
    server.trust("chroot", root_t, pki.root_i.pem)
    fp = server.trust("chint", inter_t, pki.int_i.pem)
    a = server.password_client(clients, inter_t, "app-int")
    a.connect(server.mqtt_port, host="localhost")
    a.subscribe("devices/idev2/s/us")
    b = server.password_client(clients, root_t, "app-root")
    b.connect(server.mqtt_port, host="localhost")
    b.subscribe("#")
    b.subscribe("devices/idev2/s/us")
    # Unproven, the intermediate does not count: anchored at the root (the
    # first upload's, tenant chi) idev2's chain is 4 long, too long at 3.
    before = len(server.refusal_lines("idev2"))
    assert_mosquitto_refused(server.mosquitto_pub(pki.idev2, "s/us", "100,idev2"))
    root_fp = openssl("x509", "-in", pki.root_i.pem, "-noout", "-fingerprint", "-sha1")
    root_fp = root_fp.strip().split("=")[1].replace(":", "").lower()
    new = server.refusal_lines("idev2")[before:]
    assert new and all(f'tenant=chi cn=idev2 anchor={root_fp} reason="chain too long"' in ln
                       for ln in new), new
    server.prove_possession("chint", inter_t, fp, pki.int_i.key)
    # idev2's chain: idev2, I2, I, root I. Anchored at I it is 3 long.
    r = server.mosquitto_pub(pki.idev2, "s/us", "100,idev2")
    assert r.returncode == 0, r.stderr
    assert a.get_on("devices/idev2/s/us").payload == b"100,idev2"
    assert b.drain() == []
