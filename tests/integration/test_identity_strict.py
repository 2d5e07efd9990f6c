# The RFC 5280 profile on every path (issue 15 item 7): a CA whose
# basicConstraints is not critical (which OpenSSL's default mode accepts) is
# refused on a static `cafile` listener, as a tenant's trusted CA and by
# `certmq pki verify`; certificates made exactly by the edge guide's openssl
# procedure (a CA from `openssl req -x509 -extensions v3_ca` with the stock
# openssl.cnf, so without keyUsage, and a v1 client certificate from
# `openssl x509 -req -CA`) still pass the static listener, and the device
# guide's (identity_pki's) still pass tenant trust and `certmq pki verify`.
import os
import subprocess
from pathlib import Path

import pytest

from conftest import CERTMQ_BIN, TIMEOUT
from identity_pki import IdentityServer, assert_mosquitto_refused, openssl, pki  # noqa: F401
from identity_pki import Device

BREAKER_EXT = """\
[ ca_bc_not_critical ]
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
basicConstraints = CA:true
keyUsage = critical, keyCertSign, cRLSign

[ leaf ]
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature
"""


def guide_client(d, ca_pem, ca_key, cn, extfile=None, ext=None):
    """Key, CSR and `openssl x509 -req -CA` as the edge guide does it."""
    key, csr, pem = d / f"{cn}.key", d / f"{cn}.csr", d / f"{cn}.pem"
    openssl("genrsa", "-out", str(key), "2048")
    openssl("req", "-out", str(csr), "-key", str(key), "-new", "-subj",
            f"/C=US/ST=Texas/O=THIS_COMPANY INC/CN={cn}/emailAddress=johnsmith@gmailname@company.com",
            "--outform", "PEM")
    args = ["x509", "-req", "-in", str(csr), "-CA", str(ca_pem), "-CAkey", str(ca_key),
            "-CAcreateserial", "-out", str(pem), "-days", "3650", "--outform", "PEM"]
    if extfile:
        args += ["-extfile", str(extfile), "-extensions", ext]
    openssl(*args)
    os.chmod(key, 0o600)
    chain = d / f"{cn}.chain.pem"
    chain.write_bytes(pem.read_bytes() + Path(ca_pem).read_bytes())
    return Device(cn, cn, pem, key, chain)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("strict-certs")
    env = dict(os.environ)
    env.pop("OPENSSL_CONF", None)  # the stock openssl.cnf, as the guide assumes
    c = type("Certs", (), {})()
    # The edge guide's CA (its unencrypted-key variant) and client.
    c.guide_key, c.guide_ca = d / "ca.key", d / "ca.pem"
    openssl("genrsa", "-out", str(c.guide_key), "2048")
    subprocess.run(["openssl", "req", "-new", "-x509", "-days", "3650", "-extensions", "v3_ca",
                    "-key", str(c.guide_key), "-out", str(c.guide_ca), "-subj",
                    "/C=US/ST=Texas/O=THIS_COMPANY INC/CN=John Smith/emailAddress=johnsmith@gmail.com",
                    "--outform", "PEM"], check=True, capture_output=True, env=env, timeout=60)
    c.guide_dev = guide_client(d, c.guide_ca, c.guide_key, "MyMqttWidgetMyEACM")
    assert "Version: 1 (0x0)" in openssl("x509", "-in", c.guide_dev.pem, "-noout", "-text")
    assert "Key Usage" not in openssl("x509", "-in", str(c.guide_ca), "-noout", "-text")
    # A CA whose basicConstraints is not critical, and a client it signed.
    ext = d / "breaker.cnf"
    ext.write_text(BREAKER_EXT)
    c.bad_key, c.bad_ca = d / "bad.key", d / "bad.pem"
    openssl("genrsa", "-out", str(c.bad_key), "2048")
    openssl("req", "-new", "-x509", "-days", "3650", "-key", str(c.bad_key), "-out",
            str(c.bad_ca), "-subj", "/O=breaker/CN=bc not critical CA", "-config", str(ext),
            "-extensions", "ca_bc_not_critical")
    c.bad_dev = guide_client(d, c.bad_ca, c.bad_key, "bcnc-dev", ext, "leaf")
    # OpenSSL's default mode accepts it; the strict profile does not.
    openssl("verify", "-CAfile", str(c.bad_ca), c.bad_dev.pem)
    r = subprocess.run(["openssl", "verify", "-x509_strict", "-CAfile", str(c.bad_ca),
                        c.bad_dev.pem], capture_output=True, text=True)
    assert r.returncode != 0 and "not marked critical" in r.stdout + r.stderr
    c.dir = d
    return c


@pytest.fixture(scope="module")
def server(tmp_path_factory, pki, certs):
    d = tmp_path_factory.mktemp("identity-strict")
    bundle = d / "static-cas.pem"
    bundle.write_text(Path(certs.guide_ca).read_text() + Path(certs.bad_ca).read_text())
    s = IdentityServer(d, pki, cafile=str(bundle)).start()
    yield s
    s.stop()


def test_static_listener_takes_the_edge_guide_and_refuses_profile_breakers(server, certs):
    r = server.mosquitto_pub(certs.guide_dev, "plant/x", "hello", client_id="edge-1", chain=False)
    assert r.returncode == 0, r.stderr
    assert_mosquitto_refused(server.mosquitto_pub(certs.bad_dev, "plant/x", "m",
                                                  client_id="edge-2", chain=False))
    assert "not marked critical" in server.stderr()


def test_tenant_trust_refuses_profile_breakers(server, pki, certs):
    auth = server.tenant("strict")
    fp = server.trust("strict", auth, certs.bad_ca)
    assert_mosquitto_refused(server.mosquitto_pub(certs.bad_dev, "s/us", "100,x"))
    server.assert_refusal_logged("bcnc-dev", "invalid chain", "strict", fp)
    assert "device_bcnc-dev" not in server.users("strict", auth)
    # The device guide's certificates pass (tenant A's CA and device a1).
    server.trust("strict", auth, pki.ca_a.pem)
    r = server.mosquitto_pub(pki.a1, "s/us", "100,a1")
    assert r.returncode == 0, r.stderr


def pki_verify(chain, trust, *extra):
    return subprocess.run([CERTMQ_BIN, "pki", "verify", str(chain), "--trust",
                           str(trust), *extra], capture_output=True, text=True,
                          timeout=TIMEOUT + 20)


def test_pki_verify_applies_the_profile(pki, certs):
    r = pki_verify(certs.bad_dev.chain, certs.bad_ca)
    assert r.returncode == 1 and "REFUSED" in r.stdout, (r.stdout, r.stderr)
    assert "invalid chain" in r.stdout and "not marked critical" in r.stdout, r.stdout
    for dev, ca, extra in ((pki.a1, pki.ca_a.pem, ()),
                           (pki.idev, pki.root_i.pem, ("--max-chain-length", "3"))):
        r = pki_verify(dev.chain, ca, *extra)
        assert r.returncode == 0 and "OK" in r.stdout, (r.stdout, r.stderr)
