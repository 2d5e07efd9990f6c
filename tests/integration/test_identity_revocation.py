# Revocation of connected devices (issue 15 items 5 and 8, issue 16 item 9):
# revoking any certificate of a connected device's validated chain through
# the tenant CRL (an intermediate as well as the leaf) drops the device at
# once; the CRL upload takes a PEM or DER X.509 CRL (as `openssl ca -gencrl`
# and `certmq pki revoke` write it) only when it verifies against one of the
# tenant's trusted certificates, and refuses a forged one with 422.
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from cryptography import x509

from conftest import CERTMQ_BIN, SANITIZER_MARKERS, RawClient
from identity_pki import CA_PASS, CaDir, assert_mosquitto_refused, openssl, pki  # noqa: F401
from identity_pki import server_fixture

server = server_fixture("identity-revocation", options={"max_chain_length": "4"})

CRL = "/tenant/trusted-certificates/settings/crl"
CRL_OPTION = "/tenant/options/configuration/crl.offline.check.enabled"


class RevPki:
    """root -> intermediate -> intermediate 2 -> devices, every CA with its
    own serial range so that no two certificates share a serial."""


def set_serial(ca, first):
    (ca.dir / "serial").write_text(f"{first}\n")


@pytest.fixture(scope="module")
def rev(tmp_path_factory):
    base = tmp_path_factory.mktemp("rev-pki")
    p = RevPki()
    p.root = CaDir(base, "root", "/O=rev/CN=rev root")
    set_serial(p.root, "2000")
    p.inter = CaDir(p.root.dir, "intermediateCertificate", "/O=rev/CN=rev intermediate",
                    parent=p.root)
    set_serial(p.inter, "3000")
    p.inter2 = CaDir(p.inter.dir, "intermediateCertificate", "/O=rev/CN=rev intermediate 2",
                     parent=p.inter)
    set_serial(p.inter2, "4000")
    p.d1 = p.inter.device("revd1", "revd1")
    p.d2 = p.inter2.device("revd2", "revd2")
    p.d3 = p.inter.device("revd3", "revd3")
    p.d4 = p.root.device("revd4", "revd4")
    # Same subject as the root, another key: its CRLs are forgeries.
    p.forger = CaDir(base, "forger", "/O=rev/CN=rev root")
    return p


def serial_of(pem):
    return openssl("x509", "-noout", "-serial", "-in", str(pem)).strip().split("=")[1]


def raw_device(server, dev):
    c = RawClient(server.mqtt_port, tls=dev.tls(server.server_ca))
    ack = c.connect(dev.cn)
    assert ack == b"\x20\x02\x00\x00", ack
    return c


def gencrl(ca, revoke=(), der=False):
    """`openssl ca -revoke` each certificate, then `openssl ca -gencrl`."""
    number = ca.dir / "crl" / "crlnumber"
    if not number.exists():
        number.write_text("1000\n")
    for pem in revoke:
        openssl("ca", "-config", str(ca.config), "-passin", CA_PASS, "-revoke", str(pem))
    out = ca.dir / "crl" / f"crl-{time.monotonic_ns()}.pem"
    openssl("ca", "-config", str(ca.config), "-passin", CA_PASS, "-gencrl", "-out", str(out))
    if der:
        openssl("crl", "-in", str(out), "-outform", "DER", "-out", str(out) + ".der")
        return Path(str(out) + ".der")
    return out


@pytest.fixture(scope="module")
def tenant(server, rev):
    auth = server.tenant("revt")
    fp = server.trust("revt", auth, rev.root.pem)
    assert server.call("PUT", CRL_OPTION, auth, {"value": "true"}).status == 200
    return auth, fp


def test_revoking_an_intermediate_drops_the_devices_under_it(server, rev, clients, tenant):
    auth, fp = tenant
    under_inter2 = raw_device(server, rev.d2)
    under_inter = server.connect_device(clients, rev.d1)
    r = server.call("PUT", CRL, auth, {"crls": [{"serialNumberInHex": serial_of(rev.inter2.pem)}]})
    assert r.status == 200, r
    assert under_inter2.is_closed(timeout=3), "device under the revoked intermediate still online"
    under_inter2.close()
    # A device whose chain does not hold the revoked intermediate stays.
    under_inter.publish("s/us", "still here", qos=1)
    assert not under_inter.disconnected.is_set()
    assert server.connack(clients, rev.d2) == 5
    assert_mosquitto_refused(server.mosquitto_pub(rev.d2, "t/x", "m"))
    server.assert_refusal_logged("revd2", "revoked", "revt", fp)
    assert server.mosquitto_pub(rev.d1, "t/x", "m", client_id="d:revd1").returncode == 0


def crl_put(server, auth, path, multipart=False, der=False):
    if multipart:
        return server.call("PUT", CRL, auth, files={"file": path})
    ctype = "application/pkix-crl" if der else "application/x-pem-file"
    return server.call("PUT", CRL, auth, data=Path(path).read_bytes(),
                       headers={"Content-Type": ctype})


def test_forged_and_foreign_crls_are_refused_and_change_nothing(server, rev, clients, tenant):
    auth, _ = tenant
    dev = raw_device(server, rev.d4)
    # The forger revokes d4's serial under the root's name, with its own key.
    set_serial(rev.forger, serial_of(rev.d4.pem))
    fake = rev.forger.device("fake", "fake")
    assert serial_of(fake.pem) == serial_of(rev.d4.pem)
    forged = gencrl(rev.forger, revoke=[fake.pem])
    r = crl_put(server, auth, forged)
    assert r.status == 422 and "signature" in r.json["message"], r
    r = crl_put(server, auth, forged, multipart=True)
    assert r.status == 422, r
    # A CRL of a CA the tenant does not trust.
    r = crl_put(server, auth, gencrl(server.pki.ca_b))
    assert r.status == 422 and "not a trusted certificate" in r.json["message"], r
    broken = b"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n"
    r = server.call("PUT", CRL, auth, data=broken,
                    headers={"Content-Type": "application/x-pem-file"})
    assert r.status == 422, r
    r = crl_put(server, auth, rev.d4.pem)  # a certificate, not a CRL
    assert r.status == 422 and "not one X.509 CRL" in r.json["message"], r
    assert not dev.is_closed(timeout=0.5)
    listed = server.call("GET", CRL, auth)
    assert int(serial_of(rev.d4.pem), 16) not in {e.serial_number for e in
                                                  x509.load_der_x509_crl(listed.body)}
    dev.close()


def test_openssl_gencrl_pem_and_der_drop_devices(server, rev, clients, tenant):
    auth, _ = tenant
    d3 = raw_device(server, rev.d3)
    d4 = raw_device(server, rev.d4)
    # The intermediate's own CRL: not a trusted certificate of the tenant.
    r = crl_put(server, auth, gencrl(rev.inter, revoke=[rev.d3.pem]))
    assert r.status == 422, r
    assert not d3.is_closed(timeout=0.3)
    # The root's CRL as DER, revoking the intermediate: d3 (under it) goes.
    r = crl_put(server, auth, gencrl(rev.root, revoke=[rev.inter.pem], der=True), der=True)
    assert r.status == 200, r
    assert serial_of(rev.inter.pem).upper() in {e["serialNumberInHex"] for e in r.json["crls"]}
    assert d3.is_closed(timeout=3)
    d3.close()
    # The root's CRL as PEM in a multipart file, now revoking d4 too.
    r = crl_put(server, auth, gencrl(rev.root, revoke=[rev.d4.pem]), multipart=True)
    assert r.status == 200, r
    assert d4.is_closed(timeout=3)
    d4.close()
    assert server.connack(clients, rev.d4) == 5


def pki_cli(*args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CERTMQ_PKI_")}
    r = subprocess.run([CERTMQ_BIN, "pki", *map(str, args)], capture_output=True, text=True,
                       env=env, stdin=subprocess.DEVNULL, timeout=120)
    assert r.returncode == 0, f"certmq pki {args}: {r.stdout}{r.stderr}"
    return r


def test_revocation_is_two_commands_with_certmq_pki(server, clients, tmp_path):
    """README "Revoking a device": `certmq pki revoke`, then upload crl.pem."""
    auth = server.tenant("revp")
    ca = tmp_path / "ca"
    pki_cli("ca", "init", ca, "--cn", "revp CA")
    server.trust("revp", auth, ca / "ca.pem")
    assert server.call("PUT", CRL_OPTION, auth, {"value": "true"}).status == 200
    # `pki ca init` wrote an empty CRL: it verifies and revokes nothing.
    r = server.call("PUT", CRL, auth, data=(ca / "crl.pem").read_bytes(),
                    headers={"Content-Type": "application/x-pem-file"})
    assert r.status == 200 and r.json["crls"] == [], r
    out = tmp_path / "devices"
    pki_cli("issue", "device", "--ca", ca, "--cn", "pdev1", "--out", out)
    c = RawClient(server.mqtt_port, tls={"cafile": server.server_ca,
                                         "certfile": str(out / "pdev1.chain.pem"),
                                         "keyfile": str(out / "pdev1.key")})
    assert c.connect("pdev1") == b"\x20\x02\x00\x00"
    pki_cli("revoke", "--ca", ca, "--cert", out / "pdev1.pem")
    r = server.call("PUT", CRL, auth, data=(ca / "crl.pem").read_bytes(),
                    headers={"Content-Type": "application/x-pem-file"})
    assert r.status == 200, r
    assert c.is_closed(timeout=3)
    c.close()
    r = subprocess.run(["mosquitto_pub", "-h", "localhost", "-p", str(server.mqtt_port),
                        "-V", "mqttv311", "-t", "t/x", "-m", "m", "--cafile", server.server_ca,
                        "-i", "pdev1", "--cert", str(out / "pdev1.chain.pem"),
                        "--key", str(out / "pdev1.key")], capture_output=True, text=True,
                       timeout=30)
    assert_mosquitto_refused(r)


def readme_block(title):
    """The command lines of the first sh block of a README section."""
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip()]


def test_readme_revoking_a_device(tmp_path):
    """The README's "Revoking a device" lines, verbatim, after the walkthrough's."""
    from test_pki_broker import ZERO_TO_DEVICE, _start_like_make_run
    lines = readme_block("Revoking a device")
    assert len(lines) == 3 and "pki revoke" in lines[1]
    proc, mqtt, http = _start_like_make_run(tmp_path)

    def sh(line):
        line = line.replace("./build/certmq", CERTMQ_BIN)
        return line.replace("-p 8883", f"-p {mqtt}").replace("localhost:8080",
                                                             f"localhost:{http}")

    def run(line):
        r = subprocess.run(["bash", "-c", sh(line)], cwd=tmp_path, capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0, f"{line}\n{r.stdout}{r.stderr}"
        return r.stdout

    try:
        for line in ZERO_TO_DEVICE[1:4]:
            run(line)
        dev = RawClient(mqtt, tls={"cafile": str(tmp_path / "var/dev-ca/ca.pem"),
                                   "certfile": str(tmp_path / "var/devices/sensor-1.chain.pem"),
                                   "keyfile": str(tmp_path / "var/devices/sensor-1.key")})
        try:
            assert dev.connect("sensor-1") == b"\x20\x02\x00\x00"
            assert '"value"' in run(lines[0])
            run(lines[1])
            serial = serial_of(tmp_path / "var/devices/sensor-1.pem").upper().lstrip("0")
            assert serial in run(lines[2])
            assert dev.is_closed(timeout=3), "revoked sensor-1 still connected"
        finally:
            dev.close()
        assert_mosquitto_refused(subprocess.run(["bash", "-c", sh(ZERO_TO_DEVICE[5])],
                                                cwd=tmp_path, capture_output=True, text=True,
                                                timeout=30))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    err = (tmp_path / "broker.err").read_text(errors="replace")
    for marker in SANITIZER_MARKERS:
        assert marker not in err, err[-5000:]
