# `certmq pki` against the real broker: a CA made by `pki ca init` is uploaded
# to a tenant through the REST API, and devices issued by `pki issue` connect
# over mutual TLS with Python's ssl module, mosquitto_pub/sub and a Java JSSE
# client; intermediate CAs, revocation, bulk registration, `pki verify`
# agreeing with the broker, and the README's "From zero to a connected
# device" commands, run as written.
import os
import re
import shutil
import signal
import socket
import subprocess
import time

import pytest

from apiserver import ApiServer, make_tenant, upload_ca
from conftest import (CERTMQ_BIN, SANITIZER_MARKERS, TIMEOUT, RawClient,
                      default_ports_allowed, free_port, mosquitto_pub, publish_packet, subscribe_packet,
                      terminate, unique_topic)
from test_pki import forge_device

CONNACK_OK = b"\x20\x02\x00\x00"
CONNACK_NOT_AUTHORIZED = b"\x20\x02\x00\x05"
HAVE_JAVA = shutil.which("javac") is not None and shutil.which("java") is not None
CRL = "/tenant/trusted-certificates/settings/crl"
CRL_OPTION = "/tenant/options/configuration/crl.offline.check.enabled"
BULK = "/devicecontrol/bulkNewDeviceRequests"


def pki(*args, cwd=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CERTMQ_PKI_")}
    return subprocess.run([CERTMQ_BIN, "pki", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, stdin=subprocess.DEVNULL, timeout=120)


def ok(*args, **kw):
    r = pki(*args, **kw)
    assert r.returncode == 0, f"certmq pki {args}: {r.stdout}{r.stderr}"
    return r


class PkiBroker(ApiServer):
    """`certmq serve` with the HTTP API listener of ApiServer plus an MQTT
    listener over TLS (client certificates optional, no static cafile: only
    tenant trust admits certificate devices)."""

    def __init__(self, workdir, server_pem, server_key, options=None):
        super().__init__(workdir, options=options)
        self.mqtt = free_port()
        self.conf.write_text(self.conf.read_text() +
                             f"\nlistener {self.mqtt} 127.0.0.1\ncertfile {server_pem}\n"
                             f"keyfile {server_key}\nclient_certificates optional\n")

    def start(self):
        super().start()
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.mqtt), timeout=0.5).close()
                return self
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    pytest.fail(f"MQTT listener never accepted\n{self.stderr()}")
                time.sleep(0.05)

    def refusal_logged(self, client_id, reason):
        """True once the broker has logged the refusal of client_id for reason."""
        pat = re.compile(rf'connect refused: .*client={re.escape(client_id)} .*'
                         rf'reason="{re.escape(reason)}"')
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            if pat.search(self.stderr() + self.stdout()):
                return True
            time.sleep(0.05)
        return False


class Pki:
    """The module's PKI, all made by `certmq pki`: a server CA and the
    broker's certificate, and a tenant root CA with an intermediate."""

    def __init__(self, d):
        self.dir = d
        self.server_ca = d / "server-ca"
        ok("ca", "init", self.server_ca, "--cn", "Broker Server CA")
        ok("issue", "server", "--ca", self.server_ca, "--cn", "localhost", "--san",
           "DNS:localhost,IP:127.0.0.1", "--out", d)
        self.server_pem, self.server_key = d / "localhost.pem", d / "localhost.key"
        self.root = d / "acme-ca"
        ok("ca", "init", self.root, "--cn", "Acme Devices CA", "--pathlen", "1")
        self.inter = d / "acme-plant"
        ok("ca", "intermediate", self.inter, "--parent", self.root, "--cn", "Acme Plant CA")
        self.devices = d / "devices"

    def device(self, cn, ca=None, *extra):
        ok("issue", "device", "--ca", ca or self.root, "--cn", cn, "--out", self.devices, *extra)
        return self.devices / f"{cn}.chain.pem", self.devices / f"{cn}.key"

    def tls(self, chain, key):
        return {"cafile": str(self.server_ca / "ca.pem"), "certfile": str(chain),
                "keyfile": str(key)}


@pytest.fixture(scope="module")
def pkis(tmp_path_factory):
    return Pki(tmp_path_factory.mktemp("pki-broker"))


def start_broker(path, pkis, options=None):
    return PkiBroker(path, pkis.server_pem, pkis.server_key, options).start()


@pytest.fixture(scope="module")
def broker(tmp_path_factory, pkis):
    """max_chain_length 2 (the default); tenant acme trusts the root CA."""
    b = start_broker(tmp_path_factory.mktemp("broker"), pkis)
    b.acme = make_tenant(b, "acme")
    r = upload_ca(b, "acme", b.acme, pkis.root / "ca.pem", auto=True)
    assert r.status == 201, r
    yield b
    b.stop()


def mqtt_connect(port, tls, client_id):
    """(client, CONNACK bytes) after a mutual-TLS handshake and CONNECT."""
    c = RawClient(port, tls=tls)
    return c, c.connect(client_id)


# --- Python ssl ------------------------------------------------------------------

def test_python_ssl_mutual_tls_and_connect(broker, pkis):
    chain, key = pkis.device("py-dev-1")
    c, ack = mqtt_connect(broker.mqtt, pkis.tls(chain, key), "py-dev-1")
    try:
        assert ack == CONNACK_OK
        assert c.sock.version() in ("TLSv1.2", "TLSv1.3")
        peer = dict(x[0] for x in c.sock.getpeercert()["subject"])
        assert peer["commonName"] == "localhost"
    finally:
        c.close()
    # the device is registered in tenant acme on this first connect
    r = broker.call("GET", "/user/acme/users?pageSize=2000", broker.acme)
    assert "device_py-dev-1" in {u["userName"] for u in r.json["users"]}, r


def test_device_of_unknown_ca_is_refused(broker, pkis, tmp_path):
    other = tmp_path / "other-ca"
    ok("ca", "init", other, "--cn", "Unknown CA")
    ok("issue", "device", "--ca", other, "--cn", "stranger", "--out", tmp_path)
    c, ack = mqtt_connect(broker.mqtt, pkis.tls(tmp_path / "stranger.chain.pem",
                                                tmp_path / "stranger.key"), "stranger")
    c.close()
    assert ack == CONNACK_NOT_AUTHORIZED
    assert broker.refusal_logged("stranger", "untrusted")


# --- mosquitto clients -------------------------------------------------------------

def test_mosquitto_pub_to_sub_of_same_tenant(broker, pkis):
    # mosquitto_sub logs in with the tenant's password user (server-only TLS):
    # a certificate device receives nothing until it publishes on s/us or
    # s/uat (DESIGN.md), which mosquitto_sub cannot do; the device
    # subscriber below does.
    pub_chain, pub_key = pkis.device("mq-pub")
    topic = unique_topic("plant")
    cmd = ["mosquitto_sub", "-h", "localhost", "-p", str(broker.mqtt), "-V", "mqttv311",
           "--cafile", str(pkis.server_ca / "ca.pem"), "-u", broker.acme[0], "-P",
           broker.acme[1], "-t", topic, "-C", "1", "-W", str(int(TIMEOUT) + 5), "-v"]
    sub = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # mosquitto_sub cannot say when it is subscribed: publish until it exits
    deadline = time.monotonic() + TIMEOUT
    while sub.poll() is None and time.monotonic() < deadline:
        r = mosquitto_pub(broker.mqtt, topic, "21.5", client_id="d:mq-pub",
                          tls=pkis.tls(pub_chain, pub_key))
        assert r.returncode == 0, r.stderr
        try:
            sub.wait(0.2)
        except subprocess.TimeoutExpired:
            pass
    if sub.poll() is None:
        sub.kill()
    out, err = sub.communicate(timeout=TIMEOUT)
    assert sub.returncode == 0, err
    assert out.splitlines()[0] == f"{topic} 21.5"


def test_mosquitto_pub_reaches_another_device_of_the_tenant(broker, pkis):
    sub_chain, sub_key = pkis.device("dev-sub")
    pub_chain, pub_key = pkis.device("mq-pub-3")
    topic = unique_topic("plant")
    dev = RawClient(broker.mqtt, tls=pkis.tls(sub_chain, sub_key))
    try:
        assert dev.connect("dev-sub") == CONNACK_OK
        dev.send(subscribe_packet(1, [(topic, 0)]))
        assert dev.recv_packet() == b"\x90\x03\x00\x01\x00"

        def publish(text):
            r = mosquitto_pub(broker.mqtt, topic, text, client_id="mq-pub-3",
                              tls=pkis.tls(pub_chain, pub_key))
            assert r.returncode == 0, r.stderr

        publish("before s/us")
        with pytest.raises(TimeoutError):  # the delivery gate is closed
            dev.recv_packet(timeout=1.0)
        dev.send(publish_packet("s/us", "400,c8y_Heartbeat"))
        publish("after s/us")
        want = publish_packet(topic, "after s/us")
        got = [dev.recv_packet() for _ in range(2)]
        assert want in got, got  # (the held message may come first)
    finally:
        dev.close()


def test_mosquitto_device_of_another_tenant_does_not_receive(broker, pkis, tmp_path):
    other = tmp_path / "other-ca"
    ok("ca", "init", other, "--cn", "Other Tenant CA")
    auth = make_tenant(broker, "othertenant")
    assert upload_ca(broker, "othertenant", auth, other / "ca.pem").status == 201
    ok("issue", "device", "--ca", other, "--cn", "outsider", "--out", tmp_path)
    pub_chain, pub_key = pkis.device("mq-pub-2")
    topic = unique_topic("plant")
    outsider = RawClient(broker.mqtt, tls=pkis.tls(tmp_path / "outsider.chain.pem",
                                                    tmp_path / "outsider.key"))
    try:
        assert outsider.connect("outsider") == CONNACK_OK
        outsider.send(subscribe_packet(1, [(topic, 0)]))
        assert outsider.recv_packet() == b"\x90\x03\x00\x01\x00"
        r = mosquitto_pub(broker.mqtt, topic, "private", client_id="mq-pub-2",
                          tls=pkis.tls(pub_chain, pub_key))
        assert r.returncode == 0, r.stderr
        with pytest.raises(TimeoutError):
            outsider.recv_packet(timeout=1.0)
    finally:
        outsider.close()


# --- Java JSSE ---------------------------------------------------------------------

JAVA_CLIENT = r"""
import java.io.*;
import java.security.KeyStore;
import javax.net.ssl.*;

/* Mutual TLS with a PKCS#12 keystore and truststore, then MQTT 3.1.1 CONNECT. */
public class MqttTlsConnect {
    public static void main(String[] a) throws Exception {
        KeyStore ks = KeyStore.getInstance("PKCS12");
        try (InputStream in = new FileInputStream(a[2])) { ks.load(in, a[3].toCharArray()); }
        KeyStore ts = KeyStore.getInstance("PKCS12");
        try (InputStream in = new FileInputStream(a[4])) { ts.load(in, a[5].toCharArray()); }
        KeyManagerFactory kmf = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
        kmf.init(ks, a[3].toCharArray());
        TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        tmf.init(ts);
        SSLContext ctx = SSLContext.getInstance("TLS");
        ctx.init(kmf.getKeyManagers(), tmf.getTrustManagers(), null);
        try (SSLSocket s = (SSLSocket) ctx.getSocketFactory().createSocket(a[0], Integer.parseInt(a[1]))) {
            SSLParameters p = s.getSSLParameters();
            p.setEndpointIdentificationAlgorithm("HTTPS"); /* check the host name */
            s.setSSLParameters(p);
            s.setSoTimeout(10000);
            s.startHandshake();
            byte[] id = a[6].getBytes("UTF-8");
            ByteArrayOutputStream c = new ByteArrayOutputStream();
            c.write(new byte[] {0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 60});
            c.write(id.length >> 8); c.write(id.length & 0xff); c.write(id);
            OutputStream out = s.getOutputStream();
            out.write(0x10); out.write(c.size()); out.write(c.toByteArray()); out.flush();
            DataInputStream in = new DataInputStream(s.getInputStream());
            byte[] ack = new byte[4];
            in.readFully(ack);
            StringBuilder hex = new StringBuilder();
            for (byte b : ack) hex.append(String.format("%02x", b));
            System.out.println("CONNACK " + hex + " " + s.getSession().getProtocol()
                               + " " + s.getSession().getPeerPrincipal().getName());
            out.write(new byte[] {(byte) 0xe0, 0}); out.flush();
        }
    }
}
"""


@pytest.fixture(scope="module")
def java_client(tmp_path_factory):
    if not HAVE_JAVA:
        pytest.skip("javac/java not installed")
    d = tmp_path_factory.mktemp("java")
    (d / "MqttTlsConnect.java").write_text(JAVA_CLIENT)
    r = subprocess.run(["javac", "-d", str(d), str(d / "MqttTlsConnect.java")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return d


def run_java(classes, port, keystore, kpass, truststore, tpass, client_id):
    return subprocess.run(["java", "-cp", str(classes), "MqttTlsConnect", "localhost", str(port),
                           str(keystore), kpass, str(truststore), tpass, client_id],
                          capture_output=True, text=True, timeout=60)


def test_java_jsse_mutual_tls_and_connect(broker, pkis, java_client, tmp_path):
    pkis.device("java-dev-1", None, "--p12", "--p12-pass", "keypass1")
    trust = tmp_path / "truststore.p12"
    ok("truststore", "--cert", pkis.server_ca / "ca.pem", "--out", trust, "--p12-pass",
       "trustpass1")
    r = run_java(java_client, broker.mqtt, pkis.devices / "java-dev-1.p12", "keypass1", trust,
                 "trustpass1", "java-dev-1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("CONNACK 20020000 TLSv1."), r.stdout
    assert "CN=localhost" in r.stdout
    # the same keystore with another device's ClientId is refused by the broker
    r = run_java(java_client, broker.mqtt, pkis.devices / "java-dev-1.p12", "keypass1", trust,
                 "trustpass1", "java-dev-2")
    assert r.stdout.startswith("CONNACK 20020005"), r.stdout + r.stderr
    # a truststore without the broker's CA: JSSE refuses the server
    other = tmp_path / "other-ca"
    ok("ca", "init", other, "--cn", "Not The Server CA")
    ok("truststore", "--cert", other / "ca.pem", "--out", tmp_path / "wrong.p12", "--p12-pass",
       "trustpass1")
    r = run_java(java_client, broker.mqtt, pkis.devices / "java-dev-1.p12", "keypass1",
                 tmp_path / "wrong.p12", "trustpass1", "java-dev-1")
    assert r.returncode != 0 and "SSLHandshakeException" in r.stderr, r.stderr


# --- intermediate CA and max_chain_length ---------------------------------------------

def test_intermediate_device_needs_max_chain_length_3(broker, pkis, tmp_path):
    chain, key = pkis.device("plant-dev-1", pkis.inter)
    # default max_chain_length 2: device + intermediate + root is one too many
    c, ack = mqtt_connect(broker.mqtt, pkis.tls(chain, key), "plant-dev-1")
    c.close()
    assert ack == CONNACK_NOT_AUTHORIZED
    assert broker.refusal_logged("plant-dev-1", "chain too long")
    # a broker with max_chain_length 3 trusting the same root admits it
    b3 = PkiBroker(tmp_path / "b3", pkis.server_pem, pkis.server_key,
                   {"max_chain_length": "3"}).start()
    try:
        assert upload_ca(b3, "management", ("management/admin", "management-secret-1"),
                         pkis.root / "ca.pem").status == 201
        c, ack = mqtt_connect(b3.mqtt, pkis.tls(chain, key), "plant-dev-1")
        c.close()
        assert ack == CONNACK_OK
    finally:
        b3.stop()


# --- pki verify agrees with the broker --------------------------------------------------

def _case_chain(pkis, case, tmp_path):
    """(chain file, key, ClientId, reason or None) for one case."""
    if case == "valid":
        chain, key = pkis.device("cmp-valid")
        return chain, key, "d:cmp-valid", None
    if case == "no-ca-in-chain":
        chain, key = pkis.device("cmp-leaf")
        return pkis.devices / "cmp-leaf.pem", key, "cmp-leaf", "ca not in chain"
    if case == "too-long":
        chain, key = pkis.device("cmp-deep", pkis.inter)
        return chain, key, "cmp-deep", "chain too long"
    if case == "client-id":
        chain, key = pkis.device("cmp-id")
        return chain, key, "cmp-id-other", "client id mismatch"
    if case == "expired":
        chain = forge_device(pkis.root, "cmp-old", tmp_path / "cmp-old", days_ago=2)
        return chain, tmp_path / "cmp-old.key", "cmp-old", "expired"
    if case == "colon":
        chain = forge_device(pkis.root, "cmp:colon", tmp_path / "cmp-colon")
        return chain, tmp_path / "cmp-colon.key", "cmp:colon", "bad common name"
    raise ValueError(case)


@pytest.mark.parametrize("case", ["valid", "no-ca-in-chain", "too-long", "client-id", "expired",
                                  "colon"])
def test_verify_agrees_with_broker(broker, pkis, tmp_path, case):
    chain, key, client_id, reason = _case_chain(pkis, case, tmp_path)
    r = pki("verify", chain, "--trust", pkis.root / "ca.pem", "--client-id", client_id)
    assert r.returncode == (0 if reason is None else 1), r.stdout + r.stderr
    first = r.stdout.splitlines()[0]
    assert first == ("OK" if reason is None else f"REFUSED: {reason}")
    try:
        c, ack = mqtt_connect(broker.mqtt, pkis.tls(chain, key), client_id)
        c.close()
    except OSError as e:  # a TLS-level refusal would be a disagreement too
        pytest.fail(f"handshake failed for {case}: {e}\n{broker.stderr()[-2000:]}")
    if reason is None:
        assert ack == CONNACK_OK
    else:
        assert ack == CONNACK_NOT_AUTHORIZED
        assert broker.refusal_logged(client_id, reason), broker.stderr()[-3000:]


# --- revocation ------------------------------------------------------------------------

def test_revoked_device_in_crl_is_refused_once_tenant_crl_uploaded(broker, pkis, tmp_path):
    ca = tmp_path / "crl-ca"
    ok("ca", "init", ca, "--cn", "Revoking CA")
    auth = make_tenant(broker, "revco")
    assert upload_ca(broker, "revco", auth, ca / "ca.pem").status == 201
    for cn in ("rev-bad", "rev-good"):
        ok("issue", "device", "--ca", ca, "--cn", cn, "--out", tmp_path)
    bad_tls = pkis.tls(tmp_path / "rev-bad.chain.pem", tmp_path / "rev-bad.key")
    good_tls = pkis.tls(tmp_path / "rev-good.chain.pem", tmp_path / "rev-good.key")
    early = RawClient(broker.mqtt, tls=bad_tls)
    try:
        assert early.connect("rev-bad") == CONNACK_OK  # not yet revoked
        ok("revoke", "--ca", ca, "--cert", tmp_path / "rev-bad.pem", "--reason", "keyCompromise")
        ok("crl", "--ca", ca)
        # the CRL lists the device (read with openssl), and only it
        text = subprocess.run(["openssl", "crl", "-in", str(ca / "crl.pem"), "-noout", "-text"],
                              capture_output=True, text=True, check=True).stdout
        serial = subprocess.run(["openssl", "x509", "-in", str(tmp_path / "rev-bad.pem"),
                                 "-noout", "-serial"], capture_output=True, text=True,
                                check=True).stdout.strip().split("=")[1]
        listed = re.findall(r"Serial Number: ([0-9A-F]+)", text)
        assert listed == [serial]
        # switch the tenant's CRL check on, then upload the CRL's serials
        assert broker.call("PUT", CRL_OPTION, auth, {"value": "true"}).status == 200
        assert not early.is_closed(0.3)
        r = broker.call("PUT", CRL, auth, {"crls": [{"serialNumberInHex": s,
                                                      "revocationDate": "2024-01-02T03:04:05Z"}
                                                     for s in listed]})
        assert r.status == 200, r
        # the connected device is closed, a new connection refused, the other still admitted
        assert early.is_closed(), "revoked device still connected"
    finally:
        early.close()
    c, ack = mqtt_connect(broker.mqtt, bad_tls, "rev-bad")
    c.close()
    assert ack == CONNACK_NOT_AUTHORIZED
    assert broker.refusal_logged("rev-bad", "revoked")
    c, ack = mqtt_connect(broker.mqtt, good_tls, "rev-good")
    c.close()
    assert ack == CONNACK_OK
    # pki verify, given the same CRL, says the same
    r = pki("verify", tmp_path / "rev-bad.chain.pem", "--trust", ca / "ca.pem", "--crl",
            ca / "crl.pem")
    assert (r.returncode, r.stdout.splitlines()[0]) == (1, "REFUSED: revoked")


def test_enabling_crl_check_disconnects_already_revoked_device(broker, pkis, tmp_path):
    ca = tmp_path / "crl-ca2"
    ok("ca", "init", ca, "--cn", "Revoking CA 2")
    auth = make_tenant(broker, "revco2")
    assert upload_ca(broker, "revco2", auth, ca / "ca.pem").status == 201
    ok("issue", "device", "--ca", ca, "--cn", "rev2-bad", "--out", tmp_path)
    early = RawClient(broker.mqtt, tls=pkis.tls(tmp_path / "rev2-bad.chain.pem",
                                                tmp_path / "rev2-bad.key"))
    try:
        assert early.connect("rev2-bad") == CONNACK_OK
        ok("revoke", "--ca", ca, "--cert", tmp_path / "rev2-bad.pem")
        serial = subprocess.run(["openssl", "x509", "-in", str(tmp_path / "rev2-bad.pem"),
                                 "-noout", "-serial"], capture_output=True, text=True,
                                check=True).stdout.strip().split("=")[1]
        # the order of the description: CRL first, then the option
        assert broker.call("PUT", CRL, auth,
                           {"crls": [{"serialNumberInHex": serial}]}).status == 200
        assert broker.call("PUT", CRL_OPTION, auth, {"value": "true"}).status == 200
        assert early.is_closed(), "revoked device still connected after the check was enabled"
    finally:
        early.close()


# --- bulk registration -----------------------------------------------------------------

def test_batch_csv_bulk_registers_devices_that_then_connect(broker, pkis, tmp_path):
    ca = tmp_path / "bulk-ca"
    ok("ca", "init", ca, "--cn", "Bulk CA")
    auth = make_tenant(broker, "bulkco")
    # no auto-registration: only registered devices get in
    assert upload_ca(broker, "bulkco", auth, ca / "ca.pem", auto=False).status == 201
    out = tmp_path / "fleet"
    ok("issue", "batch", "--ca", ca, "--count", "3", "--prefix", "fleet-", "--out", out)
    tls = [pkis.tls(out / f"fleet-000{i}.chain.pem", out / f"fleet-000{i}.key")
           for i in (1, 2, 3)]
    c, ack = mqtt_connect(broker.mqtt, tls[0], "fleet-0001")
    c.close()
    assert ack == CONNACK_NOT_AUTHORIZED
    assert broker.refusal_logged("fleet-0001", "device not registered")
    r = broker.call("POST", BULK, auth, files={"file": out / "bulk-registration.csv"})
    assert r.status == 201, r
    b = r.json
    assert (b["numberOfAll"], b["numberOfCreated"], b["numberOfFailed"]) == (3, 3, 0), b
    for i, t in enumerate(tls, 1):
        c, ack = mqtt_connect(broker.mqtt, t, f"fleet-000{i}")
        c.close()
        assert ack == CONNACK_OK, f"fleet-000{i}"


# --- README: From zero to a connected device -------------------------------------------

# The README section's commands, verbatim. The test substitutes the broker
# binary, ports and (when 8883/8080 are taken) the way the broker starts.
ZERO_TO_DEVICE = [
    "make run",
    './build/certmq pki ca init var/acme-ca --cn "Acme Devices CA"',
    "curl -sS -u \"management/admin:$(cat var/admin-password)\" "
    "-H 'Content-Type: application/json' "
    "-d \"{\\\"name\\\":\\\"acme\\\",\\\"status\\\":\\\"ENABLED\\\","
    "\\\"autoRegistrationEnabled\\\":true,"
    "\\\"certInPemFormat\\\":\\\"$(tr -d '\\n' < var/acme-ca/ca.pem)\\\"}\" "
    "http://localhost:8080/tenant/tenants/management/trusted-certificates",
    "./build/certmq pki issue device --ca var/acme-ca --cn sensor-1 --out var/devices",
    "mosquitto_sub -h localhost -p 8883 --cafile var/dev-ca/ca.pem "
    "-u management/admin -P \"$(cat var/admin-password)\" -t 'demo/#' -v",
    "mosquitto_pub -h localhost -p 8883 --cafile var/dev-ca/ca.pem "
    "--cert var/devices/sensor-1.chain.pem --key var/devices/sensor-1.key -i sensor-1 "
    "-t demo/hello -m 'hello from sensor-1'",
]


def _port_free(port):
    if not default_ports_allowed():
        return False
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
            return True
        except OSError:
            return False


def _start_like_make_run(cwd):
    """`make run` is `./build/certmq serve` in the clone: with no config it
    makes ./var/dev-ca and listens on 8883 and 8080. When those ports are
    taken here, the same layout is made with `certmq pki` and served from a
    config on free ports. Returns (process, mqtt port, http port)."""
    env = {k: v for k, v in os.environ.items() if k != "CERTMQ_ADMIN_PASSWORD"}
    if _port_free(8883) and _port_free(8080):
        cmd, mqtt, http = [CERTMQ_BIN, "serve"], 8883, 8080
    else:
        mqtt, http = free_port(), free_port()
        dev = cwd / "var" / "dev-ca"
        dev.parent.mkdir(mode=0o700)
        ok("ca", "init", dev, "--cn", "certmq dev CA")
        ok("issue", "server", "--ca", dev, "--cn", "localhost", "--san",
           "DNS:localhost,IP:127.0.0.1", "--out", dev)
        (dev / "localhost.pem").rename(dev / "server.pem")
        (dev / "localhost.key").rename(dev / "server.key")
        conf = cwd / "dev.conf"
        conf.write_text(f"data_dir ./var\n\nlistener {mqtt} 127.0.0.1\n"
                        "certfile ./var/dev-ca/server.pem\nkeyfile ./var/dev-ca/server.key\n"
                        "cafile ./var/dev-ca/ca.pem\nclient_certificates optional\n\n"
                        f"listener {http} 127.0.0.1\nprotocol http\n")
        cmd = [CERTMQ_BIN, "serve", "--config", str(conf)]
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                            stdout=open(cwd / "broker.out", "wb"),
                            stderr=open(cwd / "broker.err", "wb"))
    deadline = time.monotonic() + 3 * TIMEOUT
    for port in (mqtt, http):
        while True:
            if proc.poll() is not None:
                pytest.fail(f"broker exited: {(cwd / 'broker.err').read_text()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    proc.kill()
                    pytest.fail(f"port {port} never accepted")
                time.sleep(0.05)
    return proc, mqtt, http


def walk_setup(cwd, rewrite):
    """Runs the walkthrough's set-up lines (CA, upload, device) in cwd, each
    through rewrite (binary path and ports of the broker at hand)."""
    for line in ZERO_TO_DEVICE[1:4]:
        r = subprocess.run(["bash", "-c", rewrite(line)], cwd=cwd, capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0, f"{line}\n{r.stdout}{r.stderr}"
        if line.startswith("curl"):
            assert '"status":"ENABLED"' in r.stdout.replace(" ", ""), r.stdout


def walk_message_arrives(cwd, rewrite):
    """Starts the walkthrough's subscriber and runs its publisher until the
    subscriber prints the device's message."""
    sub = subprocess.Popen(["bash", "-c", "exec " + rewrite(ZERO_TO_DEVICE[4])], cwd=cwd,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        got = ""
        deadline = time.monotonic() + 2 * TIMEOUT
        os.set_blocking(sub.stdout.fileno(), False)
        while "demo/hello hello from sensor-1" not in got:
            assert time.monotonic() < deadline, f"nothing arrived: {got!r}"
            assert sub.poll() is None, sub.stderr.read()
            r = subprocess.run(["bash", "-c", rewrite(ZERO_TO_DEVICE[5])], cwd=cwd,
                               capture_output=True, text=True, timeout=30)
            assert r.returncode == 0, r.stderr
            time.sleep(0.3)
            try:  # raw reads: a non-blocking text stream can fail mid-read
                got += os.read(sub.stdout.fileno(), 65536).decode(errors="replace")
            except BlockingIOError:
                pass
    finally:
        sub.kill()
        sub.communicate()


def test_readme_from_zero_to_a_connected_device(tmp_path):
    assert len(ZERO_TO_DEVICE) <= 6
    assert ZERO_TO_DEVICE[0] == "make run"
    proc, mqtt, http = _start_like_make_run(tmp_path)

    def sh(line):
        line = line.replace("./build/certmq", CERTMQ_BIN)
        line = line.replace("-p 8883", f"-p {mqtt}").replace("localhost:8080",
                                                             f"localhost:{http}")
        return line

    try:
        assert (tmp_path / "var" / "admin-password").exists()
        walk_setup(tmp_path, sh)
        walk_message_arrives(tmp_path, sh)
    finally:
        rc = terminate(proc)
    err = (tmp_path / "broker.err").read_text(errors="replace")
    assert rc == 0, err[-3000:]
    for marker in SANITIZER_MARKERS:
        assert marker not in err, err[-5000:]
