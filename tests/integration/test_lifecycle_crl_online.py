# Online CRL checking for an uploaded CA (tenant option configuration /
# crl.online.check.enabled): device certificates made with openssl name a
# CRL distribution point on a local HTTP server (Python's http.server). The
# broker fetches it
# in the background, never during a handshake: the first connect finds it
# not at hand (allowed, or refused when the tenant says so), later connects
# of a revoked device are refused. The CA comes from `certmq pki ca init`,
# its CRL from python3-cryptography.
import functools
import http.server
import subprocess
import threading
import time

import pytest

from apiserver import make_tenant, upload_ca
from conftest import CERTMQ_BIN, TIMEOUT, free_port
from test_tokens import DeviceServer

TENANT = "crlon"


class CrlServer:
    """http.server on a free port serving a directory; counts GETs per path."""

    def __init__(self, root):
        self.hits = {}
        outer = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self):
                outer.hits[self.path] = outer.hits.get(self.path, 0) + 1
                super().do_GET()

            def log_message(self, *a):
                pass

        self.port = free_port()
        self.httpd = http.server.ThreadingHTTPServer(
            ("127.0.0.1", self.port), functools.partial(Handler, directory=str(root)))
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def pki(*args):
    r = subprocess.run([CERTMQ_BIN, "pki", *args], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.fixture(scope="module")
def setup(tmp_path_factory, certs):
    d = tmp_path_factory.mktemp("crl-online")
    web = d / "web"
    web.mkdir()
    crl_srv = CrlServer(web)
    ca = d / "ca"
    pki("ca", "init", str(ca), "--cn", "Online CRL CA", "--key", "ec:P-256")
    srv = DeviceServer(d / "srv", certs).start()
    yield srv, crl_srv, ca, d, web
    srv.stop()
    crl_srv.close()


def device(d, ca, name, url):
    """A device certificate made with openssl, naming url as its CRL distribution point."""
    key, csr, pem = d / f"{name}.key", d / f"{name}.csr", d / f"{name}.pem"
    ext = d / f"{name}.ext"
    ext.write_text("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                   "extendedKeyUsage=clientAuth\nsubjectKeyIdentifier=hash\n"
                   "authorityKeyIdentifier=keyid\n"
                   f"crlDistributionPoints=URI:{url}\n")
    subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key), "-subj",
                    f"/CN={name}", "-out", str(csr)], check=True, capture_output=True)
    subprocess.run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca / "ca.pem"),
                    "-CAkey", str(ca / "ca.key"), "-CAcreateserial", "-days", "30", "-extfile",
                    str(ext), "-out", str(pem)], check=True, capture_output=True)
    chain = d / f"{name}.chain.pem"
    chain.write_text(pem.read_text() + (ca / "ca.pem").read_text())
    return key, chain, pem


def make_crl(ca, revoked):
    """A DER CRL of the CA listing revoked certificates (python3-cryptography),
    valid for a day."""
    import datetime
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    cacert = x509.load_pem_x509_certificate((ca / "ca.pem").read_bytes())
    key = serialization.load_pem_private_key((ca / "ca.key").read_bytes(), None)
    now = datetime.datetime.now(datetime.timezone.utc)
    b = (x509.CertificateRevocationListBuilder().issuer_name(cacert.subject)
         .last_update(now - datetime.timedelta(minutes=1))
         .next_update(now + datetime.timedelta(days=1))
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(cacert.public_key()),
                        False)
         .add_extension(x509.CRLNumber(1), False))
    for pem in revoked:
        c = x509.load_pem_x509_certificate(pem.read_bytes())
        b = b.add_revoked_certificate(x509.RevokedCertificateBuilder().serial_number(
            c.serial_number).revocation_date(now - datetime.timedelta(minutes=1)).build())
    return b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def connects(srv, certs, key, chain, cid):
    r = subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(srv.mqtt_port),
                        "--cafile", certs.ca_pem, "--cert", str(chain), "--key", str(key),
                        "-i", cid, "-t", "s/us", "-m", "100,x", "-q", "1"],
                       capture_output=True, timeout=TIMEOUT + 5)
    return r.returncode == 0


def set_option(srv, auth, key, value):
    r = srv.call("POST", "/tenant/options", auth,
                 {"category": "configuration", "key": key, "value": value})
    assert r.status in (200, 201), r


def test_revoked_device_refused_once_the_crl_is_fetched(setup, certs):
    srv, crl_srv, ca, d, web = setup
    auth = make_tenant(srv, TENANT)
    assert upload_ca(srv, TENANT, auth, str(ca / "ca.pem"), auto=True).status == 201
    url = f"http://127.0.0.1:{crl_srv.port}/ca.crl"
    bad_key, bad_chain, bad_pem = device(d, ca, "on-revoked", url)
    good_key, good_chain, _ = device(d, ca, "on-good", url)
    (web / "ca.crl").write_bytes(make_crl(ca, [bad_pem]))
    # off by default: the CRL is never fetched
    assert connects(srv, certs, bad_key, bad_chain, "on-revoked")
    assert crl_srv.hits.get("/ca.crl", 0) == 0
    set_option(srv, auth, "crl.online.check.enabled", "true")
    # the first connect finds no CRL at hand: allowed (logged), its fetch queued
    assert connects(srv, certs, bad_key, bad_chain, "on-revoked")
    deadline = time.monotonic() + TIMEOUT
    while connects(srv, certs, bad_key, bad_chain, "on-revoked"):
        assert time.monotonic() < deadline, "the revoked device is still admitted"
        time.sleep(0.2)
    assert crl_srv.hits.get("/ca.crl", 0) >= 1
    assert "CRL fetched from " + url in srv.stderr()
    assert connects(srv, certs, good_key, good_chain, "on-good")
    # cached until nextUpdate: further connects fetch nothing
    hits = crl_srv.hits["/ca.crl"]
    assert not connects(srv, certs, bad_key, bad_chain, "on-revoked")
    assert crl_srv.hits["/ca.crl"] == hits


def test_unavailable_crl_refused_when_the_tenant_says_so(setup, certs):
    srv, crl_srv, ca, d, web = setup
    auth = (f"{TENANT}/admin", "tenant-secret-1")
    key, chain, _ = device(d, ca, "on-missing", f"http://127.0.0.1:{crl_srv.port}/missing.crl")
    assert connects(srv, certs, key, chain, "on-missing")  # allowed while not at hand
    set_option(srv, auth, "crl.online.refuse.unavailable", "true")
    assert not connects(srv, certs, key, chain, "on-missing")
    assert "crl unavailable" in srv.stderr()
    r = srv.call("GET", "/devices/refusals", auth)
    assert r.status == 200 and "crl unavailable" in r.body.decode(), r
