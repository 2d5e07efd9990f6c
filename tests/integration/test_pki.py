"""Interoperability tests of `certmq pki`: every artifact it makes is checked
with the real openssl and keytool command lines (and Java's JSSE), plus the
refusals and usage errors operators meet. The binary comes from CERTMQ_BIN
(default /work/main/build/certmq)."""
import json
import os
import re
import shutil
import stat
import subprocess
import time
from pathlib import Path

import pytest

BIN = os.environ.get("CERTMQ_BIN", "/work/main/build/certmq")
HAVE_JAVA = shutil.which("keytool") is not None and shutil.which("java") is not None


def pki(*args, env=None, cwd=None):
    e = dict(os.environ)
    e.pop("CERTMQ_PKI_PASS", None)
    e.pop("CERTMQ_PKI_P12_PASS", None)
    if env:
        e.update(env)
    return subprocess.run([BIN, "pki", *map(str, args)], capture_output=True, text=True,
                          env=e, cwd=cwd, stdin=subprocess.DEVNULL, start_new_session=True)


def ok(*args, **kw):
    r = pki(*args, **kw)
    assert r.returncode == 0, r.stderr
    return r


def run(*cmd, check=True):
    r = subprocess.run(list(map(str, cmd)), capture_output=True, text=True)
    if check:
        assert r.returncode == 0, f"{cmd}: {r.stdout}{r.stderr}"
    return r


def x509_text(path):
    return run("openssl", "x509", "-in", path, "-noout", "-text").stdout


def fingerprint(path):
    return run("openssl", "x509", "-in", path, "-noout", "-fingerprint", "-sha1").stdout


def forge_device(ca_dir, cn, out, days_ago=None, eku=True):
    """A device certificate made with python-cryptography from the CA's key,
    for what `issue device` refuses to make (CNs with ':', expired ones).
    Writes OUT.pem, OUT.key and OUT.chain.pem (device + CA); returns OUT.chain.pem."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_pem = (ca_dir / "ca.pem").read_bytes()
    ca = x509.load_pem_x509_certificate(ca_pem)
    ca_key = serialization.load_pem_private_key((ca_dir / "ca.key").read_bytes(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    start = now - datetime.timedelta(days=days_ago + 30 if days_ago else 1)
    end = now - datetime.timedelta(days=days_ago) if days_ago else now + datetime.timedelta(30)
    b = (x509.CertificateBuilder()
         .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
         .issuer_name(ca.subject).public_key(key.public_key())
         .serial_number(x509.random_serial_number())
         .not_valid_before(start).not_valid_after(end)
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         # key identifiers, as the RFC 5280 profile the broker applies asks
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                        critical=False)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.public_key()),
                        critical=False))
    if eku:
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                            critical=False)
    cert = b.sign(ca_key, hashes.SHA256())
    out = Path(out)
    pem = cert.public_bytes(serialization.Encoding.PEM)
    Path(f"{out}.pem").write_bytes(pem)
    Path(f"{out}.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    os.chmod(f"{out}.key", 0o600)
    Path(f"{out}.chain.pem").write_bytes(pem + ca_pem)
    return Path(f"{out}.chain.pem")


def split_pem(path):
    text = open(path).read()
    return re.findall(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----\n", text, re.S)


@pytest.fixture
def root(tmp_path):
    d = tmp_path / "root"
    ok("ca", "init", d, "--cn", "Test Root CA", "--pathlen", "1")
    return d


@pytest.fixture
def inter(tmp_path, root):
    d = tmp_path / "inter"
    ok("ca", "intermediate", d, "--parent", root, "--cn", "Test Intermediate CA")
    return d


# --- CA --------------------------------------------------------------------

def test_ca_init_makes_v3_ca_with_constraints(root):
    text = x509_text(root / "ca.pem")
    assert "Version: 3 (0x2)" in text
    assert re.search(r"Basic Constraints: critical\s+CA:TRUE, pathlen:1", text)
    assert re.search(r"Key Usage: critical\s+Digital Signature, Certificate Sign, CRL Sign", text)
    assert "Subject Key Identifier" in text and "Authority Key Identifier" in text
    assert "Subject: CN = Test Root CA" in text
    run("openssl", "verify", "-CAfile", root / "ca.pem", root / "ca.pem")


def test_ca_dir_layout_and_modes(root):
    assert stat.S_IMODE(os.stat(root).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(root / "ca.key").st_mode) == 0o600
    for f in ("chain.pem", "serial", "index.txt", "crlnumber", "crl.pem"):
        assert (root / f).exists(), f
    # an empty, valid CRL from the start
    r = run("openssl", "crl", "-in", root / "crl.pem", "-CAfile", root / "ca.pem", "-noout",
            "-verify", "-text")
    assert "verify OK" in r.stdout + r.stderr and "No Revoked Certificates" in r.stdout
    assert re.fullmatch(r"[0-9A-F]+\n", (root / "serial").read_text())
    assert (root / "index.txt").read_text() == ""
    assert (root / "chain.pem").read_text() == (root / "ca.pem").read_text()
    run("openssl", "pkey", "-in", root / "ca.key", "-noout")


def test_ca_init_rsa_key_and_days(tmp_path):
    d = tmp_path / "rsa"
    ok("ca", "init", d, "--cn", "RSA CA", "--key", "rsa:2048", "--days", "400")
    text = x509_text(d / "ca.pem")
    assert "Public-Key: (2048 bit)" in text and "sha256WithRSAEncryption" in text
    enddate = run("openssl", "x509", "-in", d / "ca.pem", "-noout", "-checkend",
                  str(399 * 86400)).returncode
    assert enddate == 0
    assert run("openssl", "x509", "-in", d / "ca.pem", "-noout", "-checkend",
               str(401 * 86400), check=False).returncode != 0


def test_ca_init_refuses_existing_ca(root):
    r = pki("ca", "init", root, "--cn", "again")
    assert r.returncode == 1
    assert "already holds a CA" in r.stderr


def test_ca_init_json(tmp_path):
    r = ok("ca", "init", tmp_path / "j", "--cn", "Json CA", "--json")
    out = json.loads(r.stdout)
    assert out["cn"] == "Json CA"
    sha1 = fingerprint(tmp_path / "j" / "ca.pem").split("=")[1].strip().replace(":", "").lower()
    assert out["sha1"] == sha1
    assert out["encrypted"] is False


# --- encrypted keys ----------------------------------------------------------

def test_encrypted_ca_key_needs_its_passphrase(tmp_path):
    d = tmp_path / "enc"
    good = tmp_path / "good.txt"
    bad = tmp_path / "bad.txt"
    good.write_text("correct horse battery\n")
    bad.write_text("wrong horse\n")
    ok("ca", "init", d, "--cn", "Encrypted CA", "--encrypt", "--pass-file", good)
    key = (d / "ca.key").read_text()
    assert "BEGIN ENCRYPTED PRIVATE KEY" in key
    # openssl itself cannot open it without the passphrase, and can with it
    assert run("openssl", "pkey", "-in", d / "ca.key", "-passin", "pass:nope", "-noout",
               check=False).returncode != 0
    run("openssl", "pkey", "-in", d / "ca.key", "-passin", f"file:{good}", "-noout")
    info = run("openssl", "asn1parse", "-in", d / "ca.key").stdout
    assert "aes-256-cbc" in info and "PBKDF2" in info

    out = tmp_path / "out"
    r = pki("issue", "device", "--ca", d, "--cn", "dev1", "--out", out)
    assert r.returncode == 1
    assert "encrypted" in r.stderr and "--pass-file" in r.stderr
    r = pki("issue", "device", "--ca", d, "--cn", "dev1", "--out", out, "--pass-file", bad)
    assert r.returncode == 1
    assert "wrong passphrase" in r.stderr
    assert not (out / "dev1.pem").exists()
    ok("issue", "device", "--ca", d, "--cn", "dev1", "--out", out,
       env={"CERTMQ_PKI_PASS": "correct horse battery"})
    run("openssl", "verify", "-CAfile", d / "ca.pem", out / "dev1.pem")


def _run_on_terminal(args, answers):
    """Runs certmq on a pseudo-terminal, answering each prompt in turn."""
    import pty
    import select
    pid, fd = pty.fork()
    if pid == 0:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CERTMQ_PKI_")}
        os.execve(BIN, [BIN, "pki", *map(str, args)], env)
    out, pending = b"", list(answers)
    while True:
        ready, _, _ = select.select([fd], [], [], 10)
        if not ready:
            break
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
        if pending and out.endswith(b": "):  # a prompt waits for its answer
            os.write(fd, pending.pop(0).encode() + b"\n")
    for _ in range(100):
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.05)
    else:  # stuck at a prompt: never hang the suite
        os.kill(pid, 9)
        _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), out.decode(errors="replace")


def test_passphrase_prompt_on_terminal(tmp_path):
    d = tmp_path / "tty"
    rc, out = _run_on_terminal(["ca", "init", d, "--cn", "Tty CA", "--encrypt"],
                               ["typed on tty 1", "typed on tty 1"])
    assert rc == 0, out
    assert "Passphrase for" in out and "Repeat" in out
    assert "typed on tty 1" not in out  # no echo
    run("openssl", "pkey", "-in", d / "ca.key", "-passin", "pass:typed on tty 1", "-noout")
    rc, out = _run_on_terminal(["ca", "init", tmp_path / "tty2", "--cn", "X", "--encrypt"],
                               ["first passphrase", "second passphrase"])
    assert rc == 1 and "differ" in out
    rc, out = _run_on_terminal(["issue", "device", "--ca", d, "--cn", "t1", "--out",
                                tmp_path / "o"], ["typed on tty 1"])
    assert rc == 0, out
    run("openssl", "verify", "-CAfile", d / "ca.pem", tmp_path / "o" / "t1.pem")


def test_encrypt_refuses_short_passphrase(tmp_path):
    r = pki("ca", "init", tmp_path / "c", "--cn", "X", "--encrypt",
            env={"CERTMQ_PKI_PASS": "short"})
    assert r.returncode == 1
    assert "shorter than" in r.stderr
    assert not (tmp_path / "c" / "ca.pem").exists()


def test_encrypt_without_any_passphrase_source(tmp_path):
    r = pki("ca", "init", tmp_path / "c", "--cn", "X", "--encrypt")
    assert r.returncode == 1
    assert "CERTMQ_PKI_PASS" in r.stderr


# --- devices -----------------------------------------------------------------

def test_device_certificate_profile_and_verify(tmp_path, root):
    out = tmp_path / "out"
    ok("issue", "device", "--ca", root, "--cn", "pump-0042", "--out", out)
    text = x509_text(out / "pump-0042.pem")
    assert "Subject: CN = pump-0042" in text
    assert re.search(r"Basic Constraints: critical\s+CA:FALSE", text)
    assert re.search(r"Key Usage: critical\s+Digital Signature, Key Encipherment", text)
    assert re.search(r"Extended Key Usage:\s+TLS Web Client Authentication", text)
    assert stat.S_IMODE(os.stat(out / "pump-0042.key").st_mode) == 0o600
    run("openssl", "verify", "-purpose", "sslclient", "-CAfile", root / "ca.pem",
        out / "pump-0042.pem")
    # the key belongs to the certificate
    pub_cert = run("openssl", "x509", "-in", out / "pump-0042.pem", "-noout", "-pubkey").stdout
    pub_key = run("openssl", "pkey", "-in", out / "pump-0042.key", "-pubout").stdout
    assert pub_cert == pub_key
    # recorded in the CA database
    idx = (root / "index.txt").read_text()
    assert re.search(r"^V\t\d{12}Z\t\t[0-9A-F]+\tunknown\t/CN=pump-0042$", idx, re.M)


def test_device_chain_with_intermediate(tmp_path, root, inter):
    out = tmp_path / "out"
    ok("issue", "device", "--ca", inter, "--cn", "dev1", "--out", out)
    run("openssl", "verify", "-CAfile", root / "ca.pem", "-untrusted", inter / "ca.pem",
        out / "dev1.pem")
    # without the intermediate there is no path
    assert run("openssl", "verify", "-CAfile", root / "ca.pem", out / "dev1.pem",
               check=False).returncode != 0
    chain = split_pem(out / "dev1.chain.pem")
    assert chain == split_pem(out / "dev1.pem") + split_pem(inter / "ca.pem") + \
        split_pem(root / "ca.pem")
    # the chain file alone (as a device presents it) verifies up to the root
    run("openssl", "verify", "-CAfile", root / "ca.pem", "-untrusted", out / "dev1.chain.pem",
        out / "dev1.pem")
    # the parent recorded the intermediate
    assert "/CN=Test Intermediate CA" in (root / "index.txt").read_text()


def test_intermediate_pathlen_enforced_by_openssl(tmp_path, root, inter):
    text = x509_text(inter / "ca.pem")
    assert re.search(r"CA:TRUE, pathlen:0", text)  # parent's 1 minus one
    # certmq refuses a CA below pathlen 0 ...
    r = pki("ca", "intermediate", tmp_path / "deep", "--parent", inter, "--cn", "Too Deep")
    assert r.returncode == 1 and "pathlen 0" in r.stderr
    # ... and openssl refuses a chain that violates it: a sub-CA made by hand
    sub_key, sub_csr, sub = tmp_path / "sub.key", tmp_path / "sub.csr", tmp_path / "sub.pem"
    ext = tmp_path / "ext.cnf"
    ext.write_text("basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"
                   "[leaf]\nbasicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n")
    run("openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
        "-nodes", "-keyout", sub_key, "-subj", "/CN=rogue sub CA", "-out", sub_csr)
    run("openssl", "x509", "-req", "-in", sub_csr, "-CA", inter / "ca.pem", "-CAkey",
        inter / "ca.key", "-CAcreateserial", "-days", "30", "-extfile", ext, "-out", sub)
    leaf_csr, leaf = tmp_path / "leaf.csr", tmp_path / "leaf.pem"
    run("openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
        "-nodes", "-keyout", tmp_path / "leaf.key", "-subj", "/CN=leaf", "-out", leaf_csr)
    run("openssl", "x509", "-req", "-in", leaf_csr, "-CA", sub, "-CAkey", sub_key,
        "-CAcreateserial", "-days", "10", "-extfile", ext, "-extensions", "leaf", "-out", leaf)
    untrusted = tmp_path / "untrusted.pem"
    untrusted.write_text(open(sub).read() + open(inter / "ca.pem").read())
    r = run("openssl", "verify", "-CAfile", root / "ca.pem", "-untrusted", untrusted, leaf,
            check=False)
    assert r.returncode != 0
    assert "path length constraint exceeded" in r.stdout + r.stderr


def test_intermediate_pathlen_must_shrink(tmp_path, root):
    r = pki("ca", "intermediate", tmp_path / "i", "--parent", root, "--cn", "I", "--pathlen", "1")
    assert r.returncode == 1
    assert "not below the parent's pathlen" in r.stderr


def test_colon_in_device_id_refused(tmp_path, root):
    out = tmp_path / "out"
    r = pki("issue", "device", "--ca", root, "--cn", "dev:1", "--out", out)
    assert r.returncode == 1
    assert "contains ':'" in r.stderr
    assert not out.exists() or not any(out.iterdir())
    assert (root / "index.txt").read_text() == ""


def test_existing_files_need_force(tmp_path, root):
    out = tmp_path / "out"
    ok("issue", "device", "--ca", root, "--cn", "d", "--out", out)
    first = (out / "d.pem").read_text()
    r = pki("issue", "device", "--ca", root, "--cn", "d", "--out", out)
    assert r.returncode == 1 and "--force" in r.stderr
    assert (out / "d.pem").read_text() == first
    ok("issue", "device", "--ca", root, "--cn", "d", "--out", out, "--force")
    assert (out / "d.pem").read_text() != first


def test_device_p12_keystore_openssl_and_keytool(tmp_path, root, inter):
    out = tmp_path / "out"
    ok("issue", "device", "--ca", inter, "--cn", "dev1", "--out", out, "--p12",
       "--p12-pass", "store-pass-1")
    p12 = out / "dev1.p12"
    assert stat.S_IMODE(os.stat(p12).st_mode) == 0o600
    info = run("openssl", "pkcs12", "-info", "-in", p12, "-passin", "pass:store-pass-1",
               "-nodes")
    text = info.stdout + info.stderr
    assert "friendlyName: devicekeyentry" in text
    assert text.count("BEGIN CERTIFICATE") == 3 and "BEGIN PRIVATE KEY" in text
    assert run("openssl", "pkcs12", "-info", "-in", p12, "-passin", "pass:wrong", "-noout",
               check=False).returncode != 0
    if not HAVE_JAVA:
        pytest.skip("keytool not installed")
    r = run("keytool", "-list", "-v", "-keystore", p12, "-storetype", "PKCS12", "-storepass",
            "store-pass-1")
    assert "Alias name: devicekeyentry" in r.stdout
    assert "Entry type: PrivateKeyEntry" in r.stdout
    assert "Certificate chain length: 3" in r.stdout


def test_p12_without_password_is_a_usage_error(tmp_path, root):
    r = pki("issue", "device", "--ca", root, "--cn", "d", "--out", tmp_path / "o", "--p12")
    assert r.returncode == 2
    assert "CERTMQ_PKI_P12_PASS" in r.stderr and "no default password" in r.stderr
    ok("issue", "device", "--ca", root, "--cn", "d", "--out", tmp_path / "o", "--p12",
       env={"CERTMQ_PKI_P12_PASS": "from-env-1"})
    run("openssl", "pkcs12", "-in", tmp_path / "o" / "d.p12", "-passin", "pass:from-env-1",
        "-noout")


# --- servers -----------------------------------------------------------------

def test_server_certificate_san_and_purpose(tmp_path, root):
    out = tmp_path / "out"
    ok("issue", "server", "--ca", root, "--cn", "mqtt.example.com", "--san",
       "DNS:broker.example.com,IP:10.0.0.5,IP:::1", "--out", out)
    crt = out / "mqtt.example.com.pem"
    text = x509_text(crt)
    assert "Subject: CN = mqtt.example.com" in text
    assert re.search(r"Extended Key Usage:\s+TLS Web Server Authentication", text)
    san = re.search(r"Subject Alternative Name:\s+(.*)", text).group(1)
    assert "DNS:mqtt.example.com" in san  # the CN is added
    assert "DNS:broker.example.com" in san and "IP Address:10.0.0.5" in san
    assert "IP Address:0:0:0:0:0:0:0:1" in san
    base = ["openssl", "verify", "-purpose", "sslserver", "-CAfile", root / "ca.pem"]
    run(*base, "-verify_hostname", "broker.example.com", crt)
    run(*base, "-verify_ip", "10.0.0.5", crt)
    run(*base, "-verify_ip", "::1", crt)
    r = run(*base, "-verify_hostname", "other.example.com", crt, check=False)
    assert r.returncode != 0
    # a device certificate is no server certificate
    ok("issue", "device", "--ca", root, "--cn", "d1", "--out", out)
    assert run(*base, out / "d1.pem", check=False).returncode != 0


def test_server_bad_san_is_usage_error(tmp_path, root):
    r = pki("issue", "server", "--ca", root, "--cn", "h", "--san", "IP:999.1.1.1")
    assert r.returncode == 2
    assert "IPv4 or IPv6" in r.stderr


# --- batch -------------------------------------------------------------------

def test_batch_issues_devices_and_bulk_csv(tmp_path, root):
    out = tmp_path / "fleet"
    r = ok("issue", "batch", "--ca", root, "--count", "25", "--prefix", "dev", "--out", out,
           "--json")
    res = json.loads(r.stdout)
    assert res["count"] == 25 and res["first"] == "dev0001" and res["last"] == "dev0025"
    rows = (out / "bulk-registration.csv").read_text().splitlines()
    assert rows[0].split(";") == ["ID", "AUTH_TYPE", "NAME"]
    assert len(rows) == 26
    assert rows[1] == "dev0001;CERTIFICATES;dev0001"
    serials = set()
    for i in range(1, 26):
        pem = out / f"dev{i:04d}.pem"
        run("openssl", "verify", "-CAfile", root / "ca.pem", pem)
        assert f"CN = dev{i:04d}" in x509_text(pem)
        serials.add(run("openssl", "x509", "-in", pem, "-noout", "-serial").stdout)
        assert len(split_pem(out / f"dev{i:04d}.chain.pem")) == 2
    assert len(serials) == 25
    assert len((root / "index.txt").read_text().splitlines()) == 25


def test_batch_custom_csv_and_p12(tmp_path, root):
    csv = tmp_path / "reg.csv"
    ok("issue", "batch", "--ca", root, "--count", "3", "--prefix", "pump-", "--start", "41",
       "--out", tmp_path / "o", "--csv", csv, "--p12", "--p12-pass", "batchpass")
    assert csv.read_text().splitlines()[1:] == [f"pump-{n:04d};CERTIFICATES;pump-{n:04d}"
                                                 for n in (41, 42, 43)]
    run("openssl", "pkcs12", "-in", tmp_path / "o" / "pump-0043.p12", "-passin",
        "pass:batchpass", "-noout")


def test_batch_prefix_with_colon_refused(tmp_path, root):
    r = pki("issue", "batch", "--ca", root, "--count", "2", "--prefix", "d:", "--out", tmp_path)
    assert r.returncode == 1
    assert "':'" in r.stderr


# --- truststores -------------------------------------------------------------

def test_truststore_pem_bundle(tmp_path, root, inter):
    ts = tmp_path / "trust.pem"
    ok("truststore", "--cert", root / "ca.pem", "--cert", inter / "chain.pem", "--out", ts)
    certs = split_pem(ts)
    assert len(certs) == 2  # the root given twice is kept once
    ok("issue", "device", "--ca", inter, "--cn", "d", "--out", tmp_path / "o")
    run("openssl", "verify", "-CAfile", ts, tmp_path / "o" / "d.pem")


def test_truststore_p12_is_trusted_for_keytool(tmp_path, root):
    ok("issue", "server", "--ca", root, "--cn", "localhost", "--out", tmp_path)
    ts = tmp_path / "trust.p12"
    ok("truststore", "--cert", tmp_path / "localhost.pem", "--cert", root / "ca.pem", "--out",
       ts, "--p12-pass", "trustpass", "--alias", "servercertificate")
    info = run("openssl", "pkcs12", "-info", "-in", ts, "-passin", "pass:trustpass", "-nokeys")
    text = info.stdout + info.stderr
    assert text.count("2.16.840.1.113894.746875.1.1") == 2
    assert "friendlyName: servercertificate" in text
    if not HAVE_JAVA:
        pytest.skip("keytool not installed")
    r = run("keytool", "-list", "-keystore", ts, "-storetype", "PKCS12", "-storepass",
            "trustpass")
    assert "Your keystore contains 2 entries" in r.stdout
    assert re.search(r"^servercertificate, .*trustedCertEntry", r.stdout, re.M)
    assert re.search(r"^servercertificate-2, .*trustedCertEntry", r.stdout, re.M)


def test_truststore_p12_needs_password(tmp_path, root):
    r = pki("truststore", "--cert", root / "ca.pem", "--out", tmp_path / "t.p12")
    assert r.returncode == 2 and "password" in r.stderr
    assert not (tmp_path / "t.p12").exists()


JSSE_CHECK = r"""
import java.io.FileInputStream;
import java.security.KeyStore;
import java.security.cert.Certificate;
import java.security.cert.X509Certificate;
import javax.net.ssl.*;

public class JsseCheck {
    public static void main(String[] a) throws Exception {
        char[] kp = a[1].toCharArray(), tp = a[3].toCharArray();
        KeyStore ks = KeyStore.getInstance("PKCS12");
        try (FileInputStream in = new FileInputStream(a[0])) { ks.load(in, kp); }
        KeyStore ts = KeyStore.getInstance("PKCS12");
        try (FileInputStream in = new FileInputStream(a[2])) { ts.load(in, tp); }
        KeyManagerFactory kmf = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
        kmf.init(ks, kp);
        TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        tmf.init(ts);
        X509TrustManager tm = (X509TrustManager) tmf.getTrustManagers()[0];
        Certificate[] chain = ks.getCertificateChain("devicekeyentry");
        X509Certificate[] xc = new X509Certificate[chain.length];
        for (int i = 0; i < chain.length; i++) xc[i] = (X509Certificate) chain[i];
        tm.checkClientTrusted(xc, "EC");
        SSLContext ctx = SSLContext.getInstance("TLS");
        ctx.init(kmf.getKeyManagers(), tmf.getTrustManagers(), null);
        X509KeyManager km = (X509KeyManager) kmf.getKeyManagers()[0];
        String alias = km.chooseClientAlias(new String[] {"EC"}, null, null);
        System.out.println("OK alias=" + alias + " chain=" + chain.length
                           + " anchors=" + tm.getAcceptedIssuers().length);
    }
}
"""


@pytest.mark.skipif(not HAVE_JAVA, reason="java not installed")
def test_jsse_loads_keystore_and_truststore(tmp_path, root, inter):
    out = tmp_path / "out"
    ok("issue", "device", "--ca", inter, "--cn", "jdev", "--out", out, "--p12", "--p12-pass",
       "keypass1")
    ok("truststore", "--cert", root / "ca.pem", "--out", tmp_path / "trust.p12", "--p12-pass",
       "trustpass")
    other = tmp_path / "other"
    ok("ca", "init", other, "--cn", "Unrelated CA")
    ok("truststore", "--cert", other / "ca.pem", "--out", tmp_path / "wrong.p12", "--p12-pass",
       "trustpass")
    src = tmp_path / "JsseCheck.java"
    src.write_text(JSSE_CHECK)
    r = run("java", src, out / "jdev.p12", "keypass1", tmp_path / "trust.p12", "trustpass")
    assert "OK alias=devicekeyentry chain=3 anchors=1" in r.stdout
    # the same device is refused by a trust store that does not hold its root
    r = run("java", src, out / "jdev.p12", "keypass1", tmp_path / "wrong.p12", "trustpass",
            check=False)
    assert r.returncode != 0
    assert "CertificateException" in r.stderr or "ValidatorException" in r.stderr


# --- revocation ----------------------------------------------------------------

def test_revoke_puts_certificate_in_crl(tmp_path, inter, root):
    out = tmp_path / "out"
    ok("issue", "device", "--ca", inter, "--cn", "bad", "--out", out)
    ok("issue", "device", "--ca", inter, "--cn", "good", "--out", out)
    serial = run("openssl", "x509", "-in", out / "bad.pem", "-noout", "-serial").stdout \
        .strip().split("=")[1]
    ok("revoke", "--ca", inter, "--cert", out / "bad.pem", "--reason", "keyCompromise")
    crl = inter / "crl.pem"
    text = run("openssl", "crl", "-in", crl, "-noout", "-text").stdout
    assert "Version 2" in text
    assert f"Serial Number: {serial}" in text
    assert "Key Compromise" in text
    assert "X509v3 CRL Number" in text and "Authority Key Identifier" in text
    r = run("openssl", "crl", "-in", crl, "-CAfile", inter / "ca.pem", "-noout", "-verify")
    assert "verify OK" in r.stdout + r.stderr
    base = ["openssl", "verify", "-crl_check", "-CRLfile", crl, "-CAfile", root / "ca.pem",
            "-untrusted", inter / "ca.pem"]
    r = run(*base, out / "bad.pem", check=False)
    assert r.returncode != 0 and "certificate revoked" in r.stdout + r.stderr
    run(*base, out / "good.pem")
    assert re.search(rf"^R\t\d{{12}}Z\t\d{{12}}Z,keyCompromise\t{serial}\t", (inter / "index.txt")
                     .read_text(), re.M)


def test_revoke_by_serial_and_crl_number_grows(tmp_path, root):
    out = tmp_path / "out"
    ok("issue", "device", "--ca", root, "--cn", "d1", "--out", out)
    serial = run("openssl", "x509", "-in", out / "d1.pem", "-noout", "-serial").stdout \
        .strip().split("=")[1]
    ok("revoke", "--ca", root, "--serial", serial.lower())
    n1 = json.loads(ok("crl", "--ca", root, "--json").stdout)["crl_number"]
    n2 = json.loads(ok("crl", "--ca", root, "--json").stdout)["crl_number"]
    assert int(n2, 16) == int(n1, 16) + 1
    assert serial in run("openssl", "crl", "-in", root / "crl.pem", "-noout", "-text").stdout
    r = pki("revoke", "--ca", root, "--serial", serial)
    assert r.returncode == 1 and "already revoked" in r.stderr
    r = pki("revoke", "--ca", root, "--serial", "ABCDEF0123")
    assert r.returncode == 1 and "did not issue" in r.stderr


def test_index_is_openssl_ca_compatible(tmp_path, root):
    out = tmp_path / "out"
    ok("issue", "device", "--ca", root, "--cn", "d1", "--out", out)
    serial = run("openssl", "x509", "-in", out / "d1.pem", "-noout", "-serial").stdout \
        .strip().split("=")[1]
    cnf = tmp_path / "ca.cnf"
    cnf.write_text(f"[ca]\ndefault_ca=d\n[d]\ndir={root}\ndatabase=$dir/index.txt\n"
                   "serial=$dir/serial\ncertificate=$dir/ca.pem\nprivate_key=$dir/ca.key\n"
                   "new_certs_dir=$dir\ndefault_md=sha256\npolicy=p\ncrlnumber=$dir/crlnumber\n"
                   "default_crl_days=7\n[p]\ncommonName=supplied\n")
    r = run("openssl", "ca", "-config", cnf, "-status", serial, check=False)
    assert f"{serial}=Valid (V)" in r.stdout + r.stderr
    ok("revoke", "--ca", root, "--serial", serial)
    r = run("openssl", "ca", "-config", cnf, "-status", serial, check=False)
    assert f"{serial}=Revoked (R)" in r.stdout + r.stderr
    # openssl ca can sign a CRL from certmq's database and counters
    run("openssl", "ca", "-config", cnf, "-gencrl", "-out", tmp_path / "o.crl")
    assert serial in run("openssl", "crl", "-in", tmp_path / "o.crl", "-noout", "-text").stdout


def test_revoke_needs_exactly_one_target(root):
    r = pki("revoke", "--ca", root)
    assert r.returncode == 2 and "exactly one" in r.stderr


# --- inspect -----------------------------------------------------------------

def test_inspect_certificate_json_matches_openssl(tmp_path, root):
    ok("issue", "server", "--ca", root, "--cn", "localhost", "--san", "IP:127.0.0.1",
       "--out", tmp_path)
    r = ok("inspect", tmp_path / "localhost.pem", "--json")
    item = json.loads(r.stdout)["items"][0]
    assert item["type"] == "certificate"
    assert item["subject"] == "CN=localhost" and item["issuer"] == "CN=Test Root CA"
    assert item["ca"] is False
    assert item["extended_key_usage"] == ["serverAuth"]
    assert item["subject_alt_names"] == ["DNS:localhost", "IP:127.0.0.1"]
    assert item["key"] == "EC P-256"
    sha1 = fingerprint(tmp_path / "localhost.pem").split("=")[1].strip().replace(":", "").lower()
    assert item["sha1"] == sha1
    serial = run("openssl", "x509", "-in", tmp_path / "localhost.pem", "-noout", "-serial") \
        .stdout.strip().split("=")[1]
    assert item["serial"] == serial
    root_item = json.loads(ok("inspect", root / "ca.pem", "--json").stdout)["items"][0]
    assert root_item["ca"] is True and root_item["pathlen"] == 1 and root_item["self_signed"]


def test_inspect_chain_order(tmp_path, root, inter):
    ok("issue", "device", "--ca", inter, "--cn", "d", "--out", tmp_path)
    r = ok("inspect", tmp_path / "d.chain.pem")
    assert "certificate [1/3]" in r.stdout and "certificate [3/3]" in r.stdout
    assert "ordered: each certificate is issued by the next" in r.stdout
    wrong = tmp_path / "wrong.pem"
    certs = split_pem(tmp_path / "d.chain.pem")
    wrong.write_text(certs[0] + certs[2] + certs[1])
    r = ok("inspect", wrong)
    assert "certificate 1 is not issued by certificate 2" in r.stdout


def test_inspect_crl_csr_key_and_p12(tmp_path, root):
    out = tmp_path / "out"
    ok("issue", "device", "--ca", root, "--cn", "d", "--out", out, "--p12", "--p12-pass",
       "p12pass1")
    ok("revoke", "--ca", root, "--cert", out / "d.pem", "--reason", "superseded")
    crl = json.loads(ok("inspect", root / "crl.pem", "--json").stdout)["items"][0]
    assert crl["type"] == "CRL" and crl["revoked"][0]["reason"] == "superseded"
    assert crl["authority_key_id"] is True
    run("openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", tmp_path / "r.key",
        "-subj", "/CN=from-csr", "-addext", "subjectAltName=DNS:csr.example", "-out",
        tmp_path / "r.csr")
    csr = json.loads(ok("inspect", tmp_path / "r.csr", "--json").stdout)["items"][0]
    assert csr["subject"] == "CN=from-csr" and csr["signature_valid"] is True
    assert csr["key"] == "RSA 2048" and csr["subject_alt_names"] == ["DNS:csr.example"]
    key = json.loads(ok("inspect", out / "d.key", "--json").stdout)["items"][0]
    assert key == {"type": "private key", "encrypted": False, "key": "EC P-256"}
    p12 = json.loads(ok("inspect", out / "d.p12", "--p12-pass", "p12pass1", "--json").stdout)
    types = {(i["type"], i.get("alias")) for i in p12["items"]}
    assert ("private key entry", "devicekeyentry") in types
    assert ("certificate", "devicekeyentry") in types
    r = pki("inspect", out / "d.p12", "--p12-pass", "wrong")
    assert r.returncode == 1 and "wrong PKCS#12 password" in r.stderr
    # DER input works too
    der = tmp_path / "d.der"
    run("openssl", "x509", "-in", out / "d.pem", "-outform", "DER", "-out", der)
    assert json.loads(ok("inspect", der, "--json").stdout)["items"][0]["subject"] == "CN=d"


def test_inspect_garbage_is_refused(tmp_path):
    f = tmp_path / "x.bin"
    f.write_bytes(b"\x01\x02not a certificate")
    r = pki("inspect", f)
    assert r.returncode == 1 and "is not a certificate" in r.stderr


# --- proof of possession -------------------------------------------------------

@pytest.mark.parametrize("key", ["ec:P-256", "rsa:2048"])
def test_pop_sign_verifies_with_openssl(tmp_path, key):
    d = tmp_path / "ca"
    ok("ca", "init", d, "--cn", "PoP CA", "--key", key)
    code = "XvD2n8Qk1Zp0aB"
    sig_b64 = ok("pop-sign", "--key", d / "ca.key", "--code", code).stdout.strip()
    import base64
    (tmp_path / "sig.bin").write_bytes(base64.b64decode(sig_b64, validate=True))
    (tmp_path / "code.txt").write_text(code)
    pub = tmp_path / "pub.pem"
    pub.write_text(run("openssl", "x509", "-in", d / "ca.pem", "-noout", "-pubkey").stdout)
    r = run("openssl", "dgst", "-sha256", "-verify", pub, "-signature", tmp_path / "sig.bin",
            tmp_path / "code.txt")
    assert "Verified OK" in r.stdout
    (tmp_path / "code.txt").write_text(code + "x")
    assert run("openssl", "dgst", "-sha256", "-verify", pub, "-signature", tmp_path / "sig.bin",
               tmp_path / "code.txt", check=False).returncode != 0
    j = json.loads(ok("pop-sign", "--key", d / "ca.key", "--code", code, "--json").stdout)
    assert "proofOfPossessionSignedVerificationCode" in j


def test_pop_sign_encrypted_key_wrong_passphrase(tmp_path):
    d = tmp_path / "ca"
    ok("ca", "init", d, "--cn", "X", "--encrypt", env={"CERTMQ_PKI_PASS": "long enough pass"})
    r = pki("pop-sign", "--key", d / "ca.key", "--code", "abc",
            env={"CERTMQ_PKI_PASS": "not the pass"})
    assert r.returncode == 1 and "wrong passphrase" in r.stderr
    ok("pop-sign", "--key", d / "ca.key", "--code", "abc",
       env={"CERTMQ_PKI_PASS": "long enough pass"})


# --- verify --------------------------------------------------------------------

def verify(*args):
    """`pki verify ... --json`: (exit status, parsed result)."""
    r = pki("verify", *args, "--json")
    assert r.returncode in (0, 1), r.stderr
    return r.returncode, json.loads(r.stdout)


def sha1_hex(path):
    return fingerprint(path).split("=")[1].strip().replace(":", "").lower()


def test_verify_valid_chain_prints_identity(tmp_path, root):
    ok("issue", "device", "--ca", root, "--cn", "pump-0042", "--out", tmp_path)
    r = ok("verify", tmp_path / "pump-0042.chain.pem", "--trust", root / "ca.pem")
    lines = r.stdout.splitlines()
    assert lines[0] == "OK"
    assert re.search(r"tenant:\s+verify$", r.stdout, re.M)
    assert re.search(r"common name:\s+pump-0042$", r.stdout, re.M)
    assert f"{sha1_hex(root / 'ca.pem')} (Test Root CA)" in r.stdout
    assert "pump-0042, d:pump-0042, d:pump-0042:<templateId>" in r.stdout
    rc, j = verify(tmp_path / "pump-0042.chain.pem", "--trust", root / "ca.pem")
    assert rc == 0 and j["isValid"] is True and j["reason"] == "accepted"
    assert (j["tenantId"], j["commonName"]) == ("verify", "pump-0042")
    assert j["fingerprint"] == sha1_hex(root / "ca.pem")
    assert j["clientIds"][:2] == ["pump-0042", "d:pump-0042"]
    assert j["maxChainLength"] == 2 and j["requireCaInChain"] is True


def test_verify_chain_without_ca(tmp_path, root):
    ok("issue", "device", "--ca", root, "--cn", "d1", "--out", tmp_path)
    r = pki("verify", tmp_path / "d1.pem", "--trust", root / "ca.pem")
    assert r.returncode == 1
    assert r.stdout.splitlines()[0] == "REFUSED: ca not in chain"
    assert "chain.pem" in r.stdout  # the hint names the file to send
    rc, j = verify(tmp_path / "d1.pem", "--trust", root / "ca.pem", "--require-ca-in-chain",
                   "false")
    assert rc == 0 and j["requireCaInChain"] is False


def test_verify_untrusted_ca(tmp_path, root):
    other = tmp_path / "other"
    ok("ca", "init", other, "--cn", "Other CA")
    ok("issue", "device", "--ca", root, "--cn", "d1", "--out", tmp_path)
    rc, j = verify(tmp_path / "d1.chain.pem", "--trust", other / "ca.pem")
    assert (rc, j["reason"]) == (1, "untrusted")
    assert "tenantId" not in j
    # several --trust files: any of them may be the anchor
    rc, j = verify(tmp_path / "d1.chain.pem", "--trust", other / "ca.pem", "--trust",
                   root / "ca.pem")
    assert rc == 0 and j["fingerprint"] == sha1_hex(root / "ca.pem")


def test_verify_expired(tmp_path, root):
    chain = forge_device(root, "old-pump", tmp_path / "old-pump", days_ago=3)
    rc, j = verify(chain, "--trust", root / "ca.pem")
    assert (rc, j["reason"]) == (1, "expired")
    # a fresh certificate is valid for its 365 days and expired after them
    ok("issue", "device", "--ca", root, "--cn", "new-pump", "--out", tmp_path)
    fresh = tmp_path / "new-pump.chain.pem"
    t = time.time() + 300 * 86400
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
    rc, j = verify(fresh, "--trust", root / "ca.pem", "--at", when)
    assert rc == 0 and j["checkedAt"] == when
    rc, j = verify(fresh, "--trust", root / "ca.pem", "--at", "@%d" % (t + 66 * 86400))
    assert (rc, j["reason"]) == (1, "expired")
    rc, j = verify(fresh, "--trust", root / "ca.pem", "--at", "2001-01-01")
    assert (rc, j["reason"]) == (1, "not yet valid")


def test_verify_cn_with_colon(tmp_path, root):
    chain = forge_device(root, "pump:7", tmp_path / "colon")
    r = pki("verify", chain, "--trust", root / "ca.pem")
    assert r.returncode == 1
    assert r.stdout.startswith("REFUSED: bad common name\n")
    assert "pump:7" in r.stdout and "':'" in r.stdout


def test_verify_chain_too_long_at_default_and_accepted_at_3(tmp_path, root, inter):
    ok("issue", "device", "--ca", inter, "--cn", "deep", "--out", tmp_path)
    chain = tmp_path / "deep.chain.pem"
    r = pki("verify", chain, "--trust", root / "ca.pem")
    assert r.returncode == 1 and r.stdout.startswith("REFUSED: chain too long\n")
    assert "accepted with --max-chain-length 3" in r.stdout
    rc, j = verify(chain, "--trust", root / "ca.pem", "--max-chain-length", "2")
    assert (rc, j["reason"], j["acceptedWithMaxChainLength"]) == (1, "chain too long", 3)
    rc, j = verify(chain, "--trust", root / "ca.pem", "--max-chain-length", "3")
    assert rc == 0 and j["commonName"] == "deep" and j["maxChainLength"] == 3
    # trusting the intermediate itself makes it a two-certificate chain
    rc, j = verify(chain, "--trust", inter / "ca.pem")
    assert rc == 0 and j["fingerprint"] == sha1_hex(inter / "ca.pem")


def test_verify_client_id_mismatch(tmp_path, root):
    ok("issue", "device", "--ca", root, "--cn", "pump-9", "--out", tmp_path)
    chain = tmp_path / "pump-9.chain.pem"
    for good in ("pump-9", "d:pump-9", "d:pump-9:c8y_Tpl"):
        rc, j = verify(chain, "--trust", root / "ca.pem", "--client-id", good)
        assert rc == 0, good
    for bad in ("pump-8", "d:pump-90", "pump-9:x"):
        rc, j = verify(chain, "--trust", root / "ca.pem", "--client-id", bad)
        assert (rc, j["reason"], j["clientId"]) == (1, "client id mismatch", bad)


def test_verify_revoked_with_crl(tmp_path, root):
    ok("issue", "device", "--ca", root, "--cn", "gone", "--out", tmp_path)
    ok("issue", "device", "--ca", root, "--cn", "kept", "--out", tmp_path)
    ok("revoke", "--ca", root, "--cert", tmp_path / "gone.pem")
    rc, j = verify(tmp_path / "gone.chain.pem", "--trust", root / "ca.pem", "--crl",
                   root / "crl.pem")
    assert (rc, j["reason"]) == (1, "revoked")
    rc, _ = verify(tmp_path / "kept.chain.pem", "--trust", root / "ca.pem", "--crl",
                   root / "crl.pem")
    assert rc == 0
    rc, _ = verify(tmp_path / "gone.chain.pem", "--trust", root / "ca.pem")
    assert rc == 0  # no CRL given: revocation is not checked


def test_verify_refuses_a_crl_its_trust_did_not_sign(tmp_path, root, inter):
    """A CRL under the root's name signed by another key, or by a CA that is
    not a --trust certificate, is refused before any serial is used."""
    ok("issue", "device", "--ca", root, "--cn", "dev", "--out", tmp_path)
    forger = tmp_path / "forger"
    ok("ca", "init", forger, "--cn", "Test Root CA")
    r = pki("verify", tmp_path / "dev.chain.pem", "--trust", root / "ca.pem", "--crl",
            forger / "crl.pem")
    assert r.returncode == 1 and "signature does not verify" in r.stderr, r.stderr
    r = pki("verify", tmp_path / "dev.chain.pem", "--trust", root / "ca.pem", "--crl",
            inter / "crl.pem")
    assert r.returncode == 1 and "not a trusted certificate" in r.stderr, r.stderr


def test_verify_missing_chain_file_fails(tmp_path, root):
    r = pki("verify", tmp_path / "nope.pem", "--trust", root / "ca.pem")
    assert r.returncode == 1 and "nope.pem" in r.stderr


# --- usage ---------------------------------------------------------------------

@pytest.mark.parametrize("args", [
    [],
    ["frobnicate"],
    ["ca"],
    ["ca", "init"],                               # missing DIR
    ["ca", "init", "d", "x", "--cn", "a"],        # extra argument
    ["ca", "init", "d"],                          # missing --cn
    ["ca", "init", "d", "--cn", "a", "--key", "dsa:1024"],
    ["ca", "init", "d", "--cn", "a", "--days", "0"],
    ["ca", "init", "d", "--cn", "a", "--pathlen", "x"],
    ["issue", "device", "--ca", "d"],
    ["issue", "device", "--ca", "d", "--cn", "x", "--nope"],
    ["issue", "device", "--ca"],                  # option without value
    ["issue", "batch", "--ca", "d", "--prefix", "p"],
    ["truststore", "--cert", "x.pem"],
    ["pop-sign", "--key", "k.pem"],
    ["inspect"],
    ["verify", "c.pem"],                          # missing --trust
    ["verify", "--trust", "ca.pem"],              # missing CHAIN
    ["verify", "c.pem", "--trust", "ca.pem", "--max-chain-length", "1"],
    ["verify", "c.pem", "--trust", "ca.pem", "--require-ca-in-chain", "maybe"],
    ["verify", "c.pem", "--trust", "ca.pem", "--at", "next week"],
])
def test_usage_errors_exit_2(tmp_path, args):
    r = pki(*args, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip()
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("cmd", [["ca", "init"], ["ca", "intermediate"], ["issue", "device"],
                                 ["issue", "server"], ["issue", "batch"], ["truststore"],
                                 ["revoke"], ["crl"], ["inspect"], ["pop-sign"],
                                 ["verify"]])
def test_every_command_has_help_with_example(cmd):
    r = pki(*cmd, "--help")
    assert r.returncode == 0
    assert r.stdout.startswith("usage: certmq pki " + " ".join(cmd))
    assert "example:" in r.stdout


def test_overview_help():
    r = pki("--help")
    assert r.returncode == 0
    for word in ("ca init", "issue batch", "truststore", "revoke", "pop-sign", "verify"):
        assert word in r.stdout


def test_missing_ca_dir_says_what_to_do(tmp_path):
    r = pki("issue", "device", "--ca", tmp_path / "nope", "--cn", "d", "--out", tmp_path)
    assert r.returncode == 1
    assert "certmq pki ca init" in r.stderr
