# End-entity rules (issue 15 item 4) with certificates made by `openssl ca`:
# a device certificate signed with the CA extensions (basicConstraints
# CA:TRUE) is refused as "device certificate is a CA"; one signed without any
# extensions section (X.509 v1) is refused as "device certificate is v1"
# unless the broker runs with allow_v1_device_certificates true; `certmq pki
# verify` says the same.
import json
import subprocess

import pytest

from conftest import CERTMQ_BIN, TIMEOUT
from identity_pki import (IdentityServer, assert_mosquitto_refused, openssl, pki,  # noqa: F401
                          server_fixture)

server = server_fixture("identity-leaf-rules", options={"max_chain_length": "3"})


@pytest.fixture(scope="module")
def devices(pki):
    caleaf = pki.ca_a.device("leafrulesca", "leafrulesca", ext="v3_ca")
    v1 = pki.ca_a.device("leafrulesv1", "leafrulesv1", ext=None)
    assert "CA:TRUE" in openssl("x509", "-in", caleaf.pem, "-noout", "-text")
    assert "Version: 1 (0x0)" in openssl("x509", "-in", v1.pem, "-noout", "-text")
    return {"ca": caleaf, "v1": v1}


def fingerprint(pem):
    out = openssl("x509", "-in", pem, "-noout", "-fingerprint", "-sha1")
    return out.strip().split("=")[1].replace(":", "").lower()


def test_ca_and_v1_device_certificates_are_refused(server, pki, clients, devices):
    auth = server.tenant("leafr")
    fp = server.trust("leafr", auth, pki.ca_a.pem)
    for key, reason in (("ca", "device certificate is a CA"), ("v1", "device certificate is v1")):
        dev = devices[key]
        assert_mosquitto_refused(server.mosquitto_pub(dev, "s/us", "100,x"))
        assert server.connack(clients, dev) == 5
        server.assert_refusal_logged(dev.cn, reason, "leafr", fp)
        assert f"device_{dev.cn}" not in server.users("leafr", auth)
    # verify-cert-chain says the same.
    r = server.call("POST", "/tenant/trusted-certificates/verify-cert-chain", auth,
                    files={"file": devices["ca"].chain})
    assert (r.json["isValid"], r.json["reason"]) == (False, "device certificate is a CA"), r
    # An ordinary device of the same CA still connects.
    r = server.mosquitto_pub(pki.a1, "s/us", "100,a1")
    assert r.returncode == 0, r.stderr


def test_v1_allowed_by_the_switch_but_never_a_ca_leaf(tmp_path, pki, clients, devices):
    s = IdentityServer(tmp_path, pki, options={"allow_v1_device_certificates": "true"}).start()
    try:
        auth = s.tenant("leafv1")
        s.trust("leafv1", auth, pki.ca_a.pem)
        r = s.mosquitto_pub(devices["v1"], "s/us", "100,v1")
        assert r.returncode == 0, r.stderr
        assert "device_leafrulesv1" in s.users("leafv1", auth)
        assert_mosquitto_refused(s.mosquitto_pub(devices["ca"], "s/us", "100,x"))
        s.assert_refusal_logged("leafrulesca", "device certificate is a CA", "leafv1",
                                fingerprint(pki.ca_a.pem))
    finally:
        s.stop()


def test_pki_verify_says_the_same(pki, devices):
    def verify(dev, *extra):
        return subprocess.run([CERTMQ_BIN, "pki", "verify", dev.chain, "--trust", pki.ca_a.pem,
                               *extra], capture_output=True, text=True, timeout=TIMEOUT + 20)

    r = verify(devices["ca"])
    assert r.returncode == 1 and r.stdout.startswith("REFUSED: device certificate is a CA"), r
    r = verify(devices["v1"])
    assert r.returncode == 1 and r.stdout.startswith("REFUSED: device certificate is v1"), r
    assert "--allow-v1-device-certificates true" in r.stdout
    r = verify(devices["v1"], "--allow-v1-device-certificates", "true")
    assert r.returncode == 0 and r.stdout.startswith("OK"), r
    r = verify(devices["v1"], "--allow-v1-device-certificates", "true", "--json")
    assert json.loads(r.stdout)["allowV1DeviceCertificates"] is True, r
    r = verify(devices["v1"], "--allow-v1-device-certificates", "maybe")
    assert r.returncode != 0 and "true or false" in r.stderr, r
    r = verify(devices["ca"], "--allow-v1-device-certificates", "true")
    assert r.returncode == 1, r
