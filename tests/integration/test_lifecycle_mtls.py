# EST over the HTTPS API listener, as devices reach it: enrollment with curl
# (server verified with --cacert), then re-enrollment authorised by the
# device's current certificate over mutual TLS (curl --cert/--key), with a
# new key; a revoked certificate, another tenant's certificate and a CSR for
# another CN are refused and issue nothing. `certmq pki enroll` and
# `certmq pki reenroll` do the same from the device side.
import base64
import os
import shutil
import subprocess

import pytest

from apiserver import ApiServer, assert_json_error, make_tenant
from test_lifecycle_est import (issued_count, make_csr, mosquitto_pub, print_certs, split_pem,
                                token_for)
from test_tokens import DeviceServer

TENANT = "mt1"
OTHER = "mt2"


class HttpsDeviceServer(DeviceServer):
    """DeviceServer whose API listener speaks HTTPS with the test server certificate."""

    def __init__(self, workdir, certs):
        super().__init__(workdir, certs)
        text = self.conf.read_text().replace(
            "protocol http\n",
            f"protocol http\ncertfile {self.dir / 'server.pem'}\nkeyfile {self.dir / 'server.key'}\n",
            1)
        self.conf.write_text(text)
        self.base = f"https://localhost:{self.port}"
        self.cafile = certs.ca_pem

    def call(self, method, path, auth=None, json_body=None, data=None, files=None, headers=None,
             timeout=60):
        # ApiServer.call runs curl; the server's CA comes from CURL_CA_BUNDLE
        os.environ["CURL_CA_BUNDLE"] = self.cafile
        try:
            return super().call(method, path, auth, json_body, data, files, headers, timeout)
        finally:
            os.environ.pop("CURL_CA_BUNDLE", None)


@pytest.fixture(scope="module")
def srv(tmp_path_factory, certs):
    s = HttpsDeviceServer(tmp_path_factory.mktemp("lifecycle-mtls"), certs).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def admin(srv):
    auth = make_tenant(srv, TENANT)
    assert srv.call("POST", "/certificate-authority", auth).status == 201
    return auth


@pytest.fixture(scope="module")
def other_admin(srv):
    auth = make_tenant(srv, OTHER)
    assert srv.call("POST", "/certificate-authority", auth).status == 201
    return auth


def curl_est(srv, path, csr, cert=None, key=None, user=None):
    """curl as a device runs it: HTTPS to the API, server checked against the CA."""
    out = srv.dir / "est.out"
    cmd = ["curl", "-sS", "-o", str(out), "-w", "%{http_code}", "--cacert", srv.cafile,
           "-H", "Content-Type: application/pkcs10", "--data-binary", "@-"]
    if cert:
        cmd += ["--cert", str(cert), "--key", str(key)]
    if user:
        cmd += ["-u", f"{user[0]}:{user[1]}"]
    cmd.append(f"{srv.base}/.well-known/est{path}")
    r = subprocess.run(cmd, input=csr, capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr.decode()
    return int(r.stdout), out.read_bytes()


def enrolled(srv, admin, d, device, tenant=TENANT):
    tok = token_for(srv, admin, device, tenant=tenant)
    keyf, csr = make_csr(d, device)
    status, body = curl_est(srv, "/simpleenroll", csr, user=(device, tok["token"]))
    assert status == 200, body
    chain = d / f"{device}.chain.pem"
    chain.write_text(print_certs(body))
    return keyf, chain


def test_enroll_over_https_then_reenroll_with_the_certificate(srv, admin, certs, tmp_path):
    keyf, chain = enrolled(srv, admin, tmp_path, "mt-dev")
    assert mosquitto_pub(srv, certs, chain, keyf, "mt-dev").returncode == 0
    newkey, csr = make_csr(tmp_path, "mt-dev", name="mt-dev-new")
    status, body = curl_est(srv, "/simplereenroll", csr, cert=chain, key=keyf)
    assert status == 200, body
    newchain = tmp_path / "mt-dev-new.pem"
    newchain.write_text(print_certs(body))
    old_leaf, new_leaf = split_pem(chain.read_text())[0], split_pem(newchain.read_text())[0]
    assert old_leaf != new_leaf
    assert mosquitto_pub(srv, certs, newchain, newkey, "mt-dev").returncode == 0
    # the labelled form with the device's own tenant
    status, body = curl_est(srv, f"/{TENANT}/simplereenroll", csr, cert=newchain, key=newkey)
    assert status == 200, body


def test_reenroll_refusals_issue_nothing(srv, admin, other_admin, certs, tmp_path):
    keyf, chain = enrolled(srv, admin, tmp_path, "mt-bad")
    okey, ochain = enrolled(srv, other_admin, tmp_path, "mt-foreign", tenant=OTHER)
    n = issued_count(srv, admin)
    _, csr = make_csr(tmp_path, "mt-bad", name="mt-bad-2")
    # a CSR for another device
    _, steal = make_csr(tmp_path, "mt-dev", name="steal")
    status, body = curl_est(srv, "/simplereenroll", steal, cert=chain, key=keyf)
    assert status == 403 and b"common name" in body, body
    # another tenant's certificate on this tenant's label
    _, fcsr = make_csr(tmp_path, "mt-foreign", name="foreign-2")
    status, body = curl_est(srv, f"/{TENANT}/simplereenroll", fcsr, cert=ochain, key=okey)
    assert status == 403 and b"another tenant" in body, body
    # no credential at all
    status, body = curl_est(srv, "/simplereenroll", csr)
    assert status == 401, body
    # revoked: the tenant puts the serial on its CRL
    serial = subprocess.run(["openssl", "x509", "-noout", "-serial"],
                            input=split_pem(chain.read_text())[0].encode(),
                            capture_output=True).stdout.decode().strip().split("=", 1)[1]
    r = srv.call("PUT", "/tenant/trusted-certificates/settings/crl", admin,
                 {"crls": [{"serialNumberInHex": serial}]})
    assert r.status in (200, 201, 204), r
    status, body = curl_est(srv, "/simplereenroll", csr, cert=chain, key=keyf)
    assert status == 403 and b"revoked" in body, body
    assert issued_count(srv, admin) == n
    srv.assert_alive()


def pki(*args):
    from conftest import CERTMQ_BIN
    return subprocess.run([CERTMQ_BIN, "pki", *args], capture_output=True, text=True, timeout=60)


def test_pki_enroll_and_reenroll_against_the_server(srv, admin, certs, tmp_path):
    tok = token_for(srv, admin, "pki-dev", tenant=TENANT)
    out = tmp_path / "dev"
    url = f"https://localhost:{srv.port}"
    r = pki("enroll", "--url", url, "--id", "pki-dev", "--token", tok["token"], "--out", str(out),
            "--cafile", certs.ca_pem)
    assert r.returncode == 0, r.stderr
    key, chain = out / "pki-dev.key", out / "pki-dev.chain.pem"
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    assert len(split_pem(chain.read_text())) == 2
    assert mosquitto_pub(srv, certs, chain, key, "pki-dev").returncode == 0
    # the token is spent: a second enrollment is refused with the server's reason
    r = pki("enroll", "--url", url, "--id", "pki-dev", "--token", tok["token"], "--out",
            str(tmp_path / "again"), "--cafile", certs.ca_pem)
    assert r.returncode == 1 and "already used" in r.stderr, r.stderr
    # renewal with the current certificate, labelled form, a new key
    new = tmp_path / "renewed"
    r = pki("reenroll", "--url", url, "--tenant", TENANT, "--cert", str(chain), "--key", str(key),
            "--out", str(new), "--cafile", certs.ca_pem)
    assert r.returncode == 0, r.stderr
    assert (new / "pki-dev.key").read_text() != key.read_text()
    assert mosquitto_pub(srv, certs, new / "pki-dev.chain.pem", new / "pki-dev.key",
                         "pki-dev").returncode == 0
    # the server is verified: without its CA the client refuses to talk
    r = pki("enroll", "--url", url, "--id", "pki-dev2", "--token", "x" * 43, "--out",
            str(tmp_path / "nocafile"))
    assert r.returncode == 1 and "TLS" in r.stderr, r.stderr
