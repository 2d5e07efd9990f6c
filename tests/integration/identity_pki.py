# End-to-end kit for the test_identity_*.py modules (issue #3): a PKI made with
# the openssl CLI exactly as the device-certificate guide does it (a CA
# directory with caConfig.cnf holding v3_ca / v3_signed sections, database.txt
# and serial, `openssl ca` for every signature, intermediates signed with
# `-extensions v3_ca`, chain files by `cat device.pem ... ca.pem`), made once
# per test session; a `certmq serve` with an MQTT TLS listener (client
# certificates optional, tenant trust only unless a cafile is asked for) and
# the HTTP API; and device / password clients (mosquitto_pub/sub and paho).
#
# Deviations from the guide, all for a non-interactive fast suite: RSA-2048
# instead of 4096; CA keys are -aes256 encrypted with a passphrase given by
# -passin/-passout; device keys are unencrypted (mosquitto would prompt).
import base64
import os
import socket
import sqlite3
import ssl
import subprocess
import threading
import time
from collections import namedtuple
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from apiserver import ADMIN, ApiServer, make_tenant
from conftest import TIMEOUT, assert_mosquitto_refused, connect_packet, free_port

CA_PASS = "pass:certmq-ca-passphrase"

CA_CONFIG = """\
[ ca ]
default_ca = CA_default

[ CA_default ]
dir               = {dir}
certs             = $dir
crl_dir           = $dir/crl
new_certs_dir     = $dir/deviceCertificates
database          = $dir/database.txt
serial            = $dir/serial
private_key       = $dir/{prefix}Key.pem
certificate       = $dir/{prefix}Cert.pem
default_md        = sha256
default_days      = 375
preserve          = no
policy            = signing_policy
unique_subject    = no
crl               = $crl_dir/{prefix}Crl.pem
crlnumber         = $crl_dir/crlnumber
crl_extensions    = crl_ext
default_crl_days  = 30

[ req ]
default_bits        = 2048
distinguished_name  = req_distinguished_name
string_mask         = utf8only
default_md          = sha256
x509_extensions     = v3_ca
prompt              = no

[ req_distinguished_name ]
commonName          = placeholder

[ v3_ca ]
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always,issuer
basicConstraints = critical, CA:true, pathlen:10
keyUsage = digitalSignature, cRLSign, keyCertSign

[ v3_ca_pathlen0 ]
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always,issuer
basicConstraints = critical, CA:true, pathlen:0
keyUsage = digitalSignature, cRLSign, keyCertSign

[ v3_signed ]
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid,issuer
basicConstraints = critical, CA:false
keyUsage = nonRepudiation, digitalSignature, keyEncipherment

[ v3_server ]
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid,issuer
basicConstraints = critical, CA:false
keyUsage = digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1

[ crl_ext ]
authorityKeyIdentifier=keyid:always

[ signing_policy ]
countryName             = optional
stateOrProvinceName     = optional
organizationName        = optional
organizationalUnitName  = optional
commonName              = supplied
emailAddress            = optional
"""


def tls13_context(cafile, dev, chain=True):
    """A TLS 1.3 client context presenting dev's chain (or its leaf alone)."""
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(dev.chain if chain else dev.pem, dev.key)
    return ctx


TlsConnect = namedtuple("TlsConnect", "rc session reused version")


def tls_mqtt_connect(port, ctx, client_id, session=None, while_connected=None):
    """One MQTT CONNECT over TLS: the CONNACK return code (None when there
    was none), the session after it (with the ticket sent before CONNACK),
    whether the handshake resumed, and the TLS version. while_connected()
    runs after a CONNACK 0, before the DISCONNECT."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    s = ctx.wrap_socket(raw, server_hostname="localhost", session=session)
    try:
        s.sendall(connect_packet(client_id))
        head = b""
        while len(head) < 4:
            chunk = s.recv(4 - len(head))
            if not chunk:
                break
            head += chunk
        rc = head[3] if len(head) == 4 and head[0] == 0x20 else None
        r = TlsConnect(rc, s.session, s.session_reused, s.version())
        if rc == 0:
            if while_connected:
                while_connected()
            s.sendall(b"\xe0\x00")  # DISCONNECT
        return r
    finally:
        s.close()


def openssl(*args, cwd=None):
    r = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"openssl {' '.join(args)}\n{r.stdout}\n{r.stderr}"
    return r.stdout


class Device:
    """A device's files: certificate, key and the chain file (leaf first)."""

    def __init__(self, name, cn, pem, key, chain):
        self.name, self.cn = name, cn
        self.pem, self.key, self.chain = str(pem), str(key), str(chain)

    @property
    def serial_hex(self):
        return openssl("x509", "-noout", "-serial", "-in", self.pem).strip().split("=")[1].lower()

    def tls(self, server_ca, chain=True):
        return {"cafile": server_ca, "certfile": self.chain if chain else self.pem,
                "keyfile": self.key}


class CaDir:
    """One CA laid out as in the guide. A root is self-signed with
    `openssl req -x509 -extensions EXT`; an intermediate has its own
    intermediateConfig.cnf and is signed by its parent's `openssl ca`."""

    def __init__(self, base, name, subj, parent=None, ext="v3_ca", bits=2048):
        self.dir = Path(base) / name
        (self.dir / "deviceCertificates").mkdir(parents=True)
        (self.dir / "crl").mkdir()
        (self.dir / "database.txt").write_text("")
        (self.dir / "serial").write_text("1000\n")
        prefix = "ca" if parent is None else "intermediate"
        self.config = self.dir / f"{prefix}Config.cnf"
        self.config.write_text(CA_CONFIG.format(dir=self.dir, prefix=prefix))
        self.key = self.dir / f"{prefix}Key.pem"
        self.pem = self.dir / f"{prefix}Cert.pem"
        openssl("genrsa", "-aes256", "-passout", CA_PASS, "-out", str(self.key), str(bits))
        if parent is None:
            openssl("req", "-config", str(self.config), "-key", str(self.key), "-passin", CA_PASS,
                    "-new", "-x509", "-days", "7300", "-sha256", "-extensions", ext, "-subj", subj,
                    "-out", str(self.pem))
            self.tail = [self.pem]
        else:
            csr = self.dir / f"{prefix}Csr.pem"
            openssl("req", "-config", str(self.config), "-new", "-sha256", "-key", str(self.key),
                    "-passin", CA_PASS, "-subj", subj, "-out", str(csr))
            parent.sign(csr, self.pem, ext, days=3650)
            self.tail = [self.pem] + parent.tail
        self.pem = str(self.pem)

    def sign(self, csr, out, ext, days=365, startdate=None, enddate=None):
        # ext None: no extensions section, so `openssl ca` makes a v1 certificate.
        args = ["ca", "-batch", "-config", str(self.config), "-passin", CA_PASS, "-days",
                str(days), "-notext", "-md", "sha256", "-in", str(csr), "-out", str(out)]
        if ext:
            args += ["-extensions", ext]
        if startdate:
            args += ["-startdate", startdate, "-enddate", enddate]
        openssl(*args)

    def device(self, name, cn, ext="v3_signed", **dates):
        """Key, CSR, `openssl ca -extensions v3_signed` and the chain file
        `cat deviceCert.pem [intermediateCert.pem ...] caCert.pem`."""
        d = self.dir / "deviceCertificates"
        key, csr, pem = d / f"{name}Key.pem", d / f"{name}Csr.pem", d / f"{name}Cert.pem"
        openssl("genrsa", "-out", str(key), "2048")
        openssl("req", "-config", str(self.config), "-new", "-sha256", "-key", str(key), "-subj",
                f"/C=US/O=certmq e2e/CN={cn}", "-out", str(csr))
        self.sign(csr, pem, ext, **dates)
        chain = d / f"{name}CertChain.pem"
        chain.write_bytes(b"".join(Path(p).read_bytes() for p in [pem] + self.tail))
        os.chmod(key, 0o600)
        return Device(name, cn, pem, key, chain)


class Pki:
    """Every CA and device the identity modules use (see build())."""


def build(base):
    """Makes every CA family in parallel (each family's `openssl ca` database
    is its own, so families do not race); RSA key generation dominates."""
    base = Path(base)
    p = Pki()
    p.dir = base

    def server():
        # The broker's own server certificate, from a CA that devices trust.
        p.server_ca = CaDir(base, "serverCa", "/O=certmq e2e/CN=certmq e2e server CA")
        srv = p.server_ca.device("server", "localhost", ext="v3_server")
        p.server_pem, p.server_key = srv.pem, srv.key

    def tenant_a():
        p.ca_a = CaDir(base, "caA", "/O=tenant A/CN=tenant A CA")
        p.a1 = p.ca_a.device("a1", "a1")
        p.a2 = p.ca_a.device("a2", "a2")
        p.a3 = p.ca_a.device("a3", "a3")
        p.a4 = p.ca_a.device("a4", "a4")
        p.a_colon = p.ca_a.device("acolon", "bad:cn")
        p.a_expired = p.ca_a.device("aexpired", "aexpired", startdate="20200101000000Z",
                                    enddate="20210101000000Z")
        # A self-signed device certificate (req -x509 with the device
        # extensions), alone and followed by tenant A's CA.
        d = base / "selfSigned"
        d.mkdir()
        key, pem = d / "selfieKey.pem", d / "selfieCert.pem"
        openssl("genrsa", "-out", str(key), "2048")
        openssl("req", "-config", str(p.ca_a.config), "-key", str(key), "-new", "-x509", "-days",
                "365", "-sha256", "-extensions", "v3_signed", "-subj", "/CN=selfie", "-out",
                str(pem))
        os.chmod(key, 0o600)
        p.selfie = Device("selfie", "selfie", pem, key, pem)
        with_ca = d / "selfieWithCaChain.pem"
        with_ca.write_bytes(pem.read_bytes() + Path(p.ca_a.pem).read_bytes())
        p.selfie_with_ca = Device("selfie", "selfie", pem, key, with_ca)

    def tenant_b():
        p.ca_b = CaDir(base, "caB", "/O=tenant B/CN=tenant B CA")
        p.b1 = p.ca_b.device("b1", "b1")
        p.b2 = p.ca_b.device("b2", "b2")

    def tenant_c():
        p.ca_c = CaDir(base, "caC", "/O=tenant C/CN=tenant C CA")
        p.c1 = p.ca_c.device("c1", "c1")
        p.c2 = p.ca_c.device("c2", "c2")

    def tenant_q():
        # Common names with SQL metacharacters.
        p.ca_q = CaDir(base, "caQ", "/O=tenant Q/CN=tenant Q CA")
        p.q_sql = p.ca_q.device("qsql", "rob'); DROP TABLE devices;--")
        p.q_or = p.ca_q.device("qor", "x' OR '1'='1")

    def shared():
        # Uploaded by two tenants: ambiguity and proof of possession.
        p.ca_s = CaDir(base, "caShared", "/O=shared/CN=shared CA")
        p.s1 = p.ca_s.device("s1", "s1")

    def intermediates():
        # Root -> intermediate (v3_ca) -> device, and one level deeper.
        p.root_i = CaDir(base, "rootI", "/O=inter/CN=root I")
        p.int_i = CaDir(p.root_i.dir, "intermediateCertificate", "/O=inter/CN=intermediate I",
                        parent=p.root_i)
        p.idev = p.int_i.device("idev", "idev")
        p.int_i2 = CaDir(p.int_i.dir, "intermediateCertificate", "/O=inter/CN=intermediate I2",
                         parent=p.int_i)
        p.idev2 = p.int_i2.device("idev2", "idev2")

    def pathlen():
        # pathlen:0 root -> intermediate -> device: the pathlen is exceeded.
        p.root_pl0 = CaDir(base, "rootPl0", "/O=pathlen/CN=root pathlen 0",
                           ext="v3_ca_pathlen0")
        p.int_pl0 = CaDir(p.root_pl0.dir, "intermediateCertificate", "/O=pathlen/CN=inter P",
                          parent=p.root_pl0)
        p.pdev = p.int_pl0.device("pdev", "pdev")

    def not_ca():
        # root -> signer made with v3_signed (CA:false) -> device.
        p.root_nca = CaDir(base, "rootNca", "/O=notca/CN=root N")
        p.notca = CaDir(p.root_nca.dir, "intermediateCertificate", "/O=notca/CN=not a CA",
                        parent=p.root_nca, ext="v3_signed")
        p.ncdev = p.notca.device("ncdev", "ncdev")

    def weak():
        # A CA with a 1024-bit key: refused at upload.
        p.weak_ca = CaDir(base, "weakCa", "/O=weak/CN=weak CA", bits=1024)

    def withdrawal():
        p.ca_w = CaDir(base, "caW", "/O=tenant W/CN=tenant W CA")
        p.w1 = p.ca_w.device("w1", "w1")
        p.w2 = p.ca_w.device("w2", "w2")
        p.w3 = p.ca_w.device("w3", "w3")

    def revocation():
        p.ca_r = CaDir(base, "caR", "/O=tenant R/CN=tenant R CA")
        p.r1 = p.ca_r.device("r1", "r1")
        p.r2 = p.ca_r.device("r2", "r2")

    def static():
        # A CA only the listener's static cafile knows.
        p.static_ca = CaDir(base, "staticCa", "/O=static/CN=static listener CA")
        p.st1 = p.static_ca.device("st1", "st1")

    families = [tenant_a, intermediates, tenant_c, withdrawal, server, tenant_b, shared,
                pathlen, not_ca, revocation, static, weak, tenant_q]
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as ex:
        for f in [ex.submit(fam) for fam in families]:
            f.result()
    openssl("verify", "-CAfile", p.ca_a.pem, p.a1.pem)
    openssl("verify", "-CAfile", p.root_i.pem, "-untrusted", p.int_i.pem, p.idev.pem)
    return p


_pki = None
_pki_lock = threading.Lock()


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    """The identity PKI, built once per test session (modules share it)."""
    global _pki
    with _pki_lock:
        if _pki is None:
            _pki = build(tmp_path_factory.mktemp("identity-pki"))
    return _pki


# ---------------------------------------------------------------- the server


class IdentityServer(ApiServer):
    """`certmq serve` with an MQTT TLS listener (client certificates optional,
    no cafile unless given) and a plain HTTP API listener."""

    def __init__(self, workdir, pki, options=None, cafile=None, crlfile=None):
        super().__init__(workdir)
        self.pki = pki
        self.mqtt_port = free_port()
        opts = {"data_dir": str(self.data), "allow_anonymous": "false", "log_level": "info"}
        opts.update(options or {})
        lines = [f"{k} {v}" for k, v in opts.items()]
        lines += ["", f"listener {self.mqtt_port} 127.0.0.1", "protocol mqtt",
                  f"certfile {pki.server_pem}", f"keyfile {pki.server_key}",
                  "client_certificates optional"]
        if cafile:
            lines.append(f"cafile {cafile}")
        if crlfile:
            lines.append(f"crlfile {crlfile}")
        lines += ["", f"listener {self.port} 127.0.0.1", "protocol http"]
        self.conf.write_text("\n".join(lines) + "\n")

    def start(self):
        super().start()
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.mqtt_port), timeout=0.5).close()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"MQTT listener never accepted\n{self.stderr()}")
                time.sleep(0.05)

    @property
    def server_ca(self):
        return self.pki.server_ca.pem

    # ---- REST shortcuts

    def tenant(self, tenant_id, **kw):
        return make_tenant(self, tenant_id, **kw)

    def trust(self, tenant, auth, pem, auto=True, status="ENABLED", name="ca"):
        """Uploads a CA as the guide's REST example does; returns its fingerprint."""
        r = self.call("POST", f"/tenant/tenants/{tenant}/trusted-certificates", auth,
                      {"status": status, "name": name,
                       "autoRegistrationEnabled": "true" if auto else "false",
                       "certInPemFormat": Path(pem).read_text()})
        assert r.status == 201, r
        return r.json["fingerprint"]

    def set_cert(self, tenant, auth, fp, **fields):
        r = self.call("PUT", f"/tenant/tenants/{tenant}/trusted-certificates/{fp}", auth, fields)
        assert r.status == 200, r
        return r

    def user(self, tenant, auth, name, password, roles=()):
        body = {"userName": name, "password": password}
        if roles:
            body["roles"] = list(roles)
        r = self.call("POST", f"/user/{tenant}/users", auth, body)
        assert r.status == 201, r
        return (f"{tenant}/{name}", password)

    def users(self, tenant, auth):
        r = self.call("GET", f"/user/{tenant}/users?pageSize=2000", auth)
        assert r.status == 200, r
        return {u["userName"]: u for u in r.json["users"]}

    def bulk_register(self, auth, csv_text, path):
        path.write_text(csv_text)
        r = self.call("POST", "/devicecontrol/bulkNewDeviceRequests", auth, files={"file": path})
        assert r.status == 201, r
        return r.json

    # ---- clients

    def device(self, clients, dev, client_id=None, chain=True, username=None, password=None):
        """A paho client presenting dev's chain (or only its leaf)."""
        return clients(client_id if client_id is not None else dev.cn,
                       tls=dev.tls(self.server_ca, chain), username=username, password=password)

    def password_client(self, clients, auth, client_id):
        """A paho client with <tenantId>/<user> + password over server-only TLS."""
        return clients(client_id, tls={"cafile": self.server_ca}, username=auth[0],
                       password=auth[1])

    def connect_device(self, clients, dev, client_id=None, **kw):
        c = self.device(clients, dev, client_id, **kw)
        c.connect(self.mqtt_port, host="localhost", expect_rc=0)
        return c

    def connack(self, clients, dev, client_id=None, **kw):
        """The CONNACK return code paho sees for dev. A connection closed
        without a CONNACK fails, and so does a server that died answering."""
        c = self.device(clients, dev, client_id, **kw)
        rc = c.connect(self.mqtt_port, host="localhost", expect_rc=None)
        self.assert_alive()
        return rc

    def mosquitto_pub(self, dev, topic, message, client_id=None, chain=True, qos=1, auth=None):
        cmd = ["mosquitto_pub", "-h", "localhost", "-p", str(self.mqtt_port), "-V", "mqttv311",
               "-t", topic, "-m", message, "-q", str(qos), "--cafile", self.server_ca]
        if dev is not None:
            cmd += ["-i", client_id if client_id is not None else dev.cn, "--cert",
                    dev.chain if chain else dev.pem, "--key", dev.key]
        elif client_id:
            cmd += ["-i", client_id]
        if auth:
            cmd += ["-u", auth[0], "-P", auth[1]]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT + 5)

    def mosquitto_sub(self, topic, auth=None, dev=None, client_id=None, count=1):
        cmd = ["mosquitto_sub", "-h", "localhost", "-p", str(self.mqtt_port), "-V", "mqttv311",
               "-t", topic, "-C", str(count), "-W", str(int(TIMEOUT) + 5), "-v",
               "--cafile", self.server_ca]
        if client_id:
            cmd += ["-i", client_id]
        if auth:
            cmd += ["-u", auth[0], "-P", auth[1]]
        if dev:
            cmd += ["--cert", dev.chain, "--key", dev.key]
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    # ---- log lines

    def refusal_lines(self, cn):
        return [ln for ln in self.stderr().splitlines()
                if "refused device" in ln and f"cn={cn} " in ln]

    def assert_refusal_logged(self, cn, reason, tenant="-", fp="-"):
        """The refusal's log line names tenant, CN, anchor fingerprint and reason."""
        want = f'tenant={tenant} cn={cn} anchor={fp} reason="{reason}"'
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            if any(want in ln for ln in self.refusal_lines(cn)):
                return
            time.sleep(0.05)
        raise AssertionError(f"no log line with {want!r}; lines for {cn}: "
                             f"{self.refusal_lines(cn)}")

    def prove_possession(self, tenant, auth, fp, key):
        """The README's proof-of-possession flow, signing the code with
        `openssl dgst` and the CA's own (passphrase-protected) key."""
        base = f"/tenant/tenants/{tenant}/trusted-certificates-pop/{fp}"
        r = self.call("POST", base + "/verification-code", auth)
        assert r.status == 200, r
        code = r.json["proofOfPossessionUnsignedVerificationCode"]
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(key), "-passin",
                              CA_PASS], input=code.encode(), capture_output=True,
                             check=True).stdout
        r = self.call("POST", base + "/pop", auth,
                      {"proofOfPossessionSignedVerificationCode":
                       base64.b64encode(sig).decode()})
        assert r.status == 200, r
        return r

    def set_pop_valid(self, tenant, fp):
        """Marks a trusted certificate's proof of possession as verified,
        directly in the database (server stopped)."""
        assert self.proc is None
        db = sqlite3.connect(self.data / "certmq.db")
        try:
            n = db.execute("UPDATE trusted_certs SET pop_valid = 1 WHERE tenant = ? AND "
                           "fingerprint = ?", (tenant, fp)).rowcount
            db.commit()
        finally:
            db.close()
        assert n == 1


def server_fixture(name, **kw):
    """A module-scoped IdentityServer fixture."""

    @pytest.fixture(scope="module")
    def server(tmp_path_factory, pki):
        s = IdentityServer(tmp_path_factory.mktemp(name), pki, **kw).start()
        yield s
        s.stop()

    return server


__all__ = ["ADMIN", "IdentityServer", "assert_mosquitto_refused", "pki", "server_fixture"]
