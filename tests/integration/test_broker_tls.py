# TLS listeners: server-only TLS verified against ca.pem for host localhost,
# mutual TLS with device certificates made by certs.sh (leaf or chain file),
# refusal of missing or untrusted client certificates, TLS 1.2 and 1.3, and
# reloading the server certificate on SIGHUP without dropping connections.
import os
import shutil
import signal
import socket
import ssl
import time

import pytest
from cryptography import x509

from conftest import (CONNACK_OK, PINGREQ, TIMEOUT, MosquittoSub, RawClient,
                      assert_mosquitto_refused, connect_packet, mosquitto_pub, tls_context,
                      tls_device, tls_server_only, unique_topic)


def tls_connect_outcome(port, tls, client_id, **ctx_kw):
    """Tries TLS + CONNECT. Returns ("alert", reason) when the server ended
    the handshake or the session with a TLS alert, "closed" when it closed
    without either an alert or a CONNACK (a crash looks like this), or the
    CONNACK bytes."""
    try:
        c = RawClient(port, tls=tls)
    except ssl.SSLError as e:
        return "alert", e.reason
    except (ConnectionError, socket.timeout, OSError):
        return "closed"
    try:
        c.send(connect_packet(client_id))
        return c.recv_packet()
    except ssl.SSLError as e:
        return "alert", e.reason
    except (EOFError, ConnectionError, OSError):
        return "closed"
    finally:
        c.close()


CONNACK_NOT_AUTHORIZED = b"\x20\x02\x00\x05"
# The alert for a missing client certificate: TLS 1.3 has its own, TLS 1.2
# ends the handshake with handshake_failure.
NO_CERT_ALERTS = ("TLSV13_ALERT_CERTIFICATE_REQUIRED", "SSLV3_ALERT_HANDSHAKE_FAILURE")


def assert_refused_with_connack_5(broker, outcome):
    assert outcome == CONNACK_NOT_AUTHORIZED, f"want CONNACK 5, got {outcome!r}"
    assert broker.alive(), "certmq died refusing the client"


def tls_alert_before_connect(port, tls):
    """Completes the handshake, sends nothing and waits: returns the reason of
    the TLS alert the server ends the session with, "closed" for a close
    without one, "open" when nothing happens. (Sending CONNECT first could
    make the server's close a reset that discards the alert.)"""
    try:
        c = RawClient(port, tls=tls)
    except ssl.SSLError as e:
        return e.reason or "closed"
    try:
        c.sock.settimeout(TIMEOUT)
        return "closed" if c.sock.recv(1) == b"" else "open"
    except ssl.SSLError as e:
        return e.reason or "closed"
    except socket.timeout:
        return "open"
    except OSError:
        return "closed"
    finally:
        c.close()


def assert_refused_for_no_certificate(broker, outcome):
    assert outcome in NO_CERT_ALERTS, \
        f"want a TLS alert for the missing certificate, got {outcome!r}"
    assert broker.alive(), "certmq died refusing the client"


@pytest.fixture
def watcher(broker, clients):
    """A plain-TCP subscriber that sees whatever arrives on a fresh topic."""
    topic = unique_topic("tls")
    w = clients("tls-watcher-" + topic.replace("/", "-"))
    w.connect(broker.ports["plain"])
    w.subscribe(topic, 1)
    w.topic = topic
    return w


def test_server_only_tls_connect_with_paho(broker, certs, clients, watcher):
    c = clients("tls-paho", tls=tls_server_only(certs))
    c.connect(broker.ports["tls"], host="localhost")
    c.publish(watcher.topic, b"over tls", 1)
    assert watcher.get_on(watcher.topic).payload == b"over tls"


def test_server_certificate_verifies_for_localhost(broker, certs):
    ctx = tls_context(certs.ca_pem)
    with socket.create_connection(("127.0.0.1", broker.ports["tls"]), timeout=TIMEOUT) as s:
        with ctx.wrap_socket(s, server_hostname="localhost") as t:
            peer = x509.load_der_x509_certificate(t.getpeercert(binary_form=True))
    assert peer.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == "localhost"


def test_mosquitto_clients_over_server_only_tls(broker, certs, watcher):
    topic = unique_topic("tls-mosq")
    sub = MosquittoSub(broker.ports["tls"], topic, qos=1, tls=tls_server_only(certs))
    rc, out, err = sub.receive(lambda: mosquitto_pub(broker.ports["tls"], topic, "hello tls",
                                                     qos=1, tls=tls_server_only(certs)))
    assert rc == 0, err
    assert out.splitlines()[0] == f"{topic} hello tls"


def test_mutual_tls_device_publishes_with_mosquitto_pub(broker, certs, watcher):
    r = mosquitto_pub(broker.ports["mtls"], watcher.topic, "from device1", qos=1,
                      client_id="device1", tls=tls_device(certs))
    assert r.returncode == 0, r.stderr
    assert watcher.get_on(watcher.topic).payload == b"from device1"


def test_mutual_tls_device_with_chain_file(broker, certs, watcher):
    r = mosquitto_pub(broker.ports["mtls"], watcher.topic, "chain", qos=1, client_id="device2",
                      tls=tls_device(certs, "device2", chain=True))
    assert r.returncode == 0, r.stderr
    assert watcher.get_on(watcher.topic).payload == b"chain"


def test_mutual_tls_device_receives_with_paho(broker, certs, clients, watcher):
    dev = clients("device1", tls=tls_device(certs))
    dev.connect(broker.ports["mtls"], host="localhost")
    topic = unique_topic("to-device")
    dev.subscribe(topic, 1)
    watcher.publish(topic, b"command", 1)
    assert dev.get_on(topic).payload == b"command"


def test_optional_listener_accepts_client_without_certificate(broker, certs):
    assert tls_connect_outcome(broker.ports["tls"], tls_server_only(certs), "anon-tls") \
        == CONNACK_OK


def test_optional_listener_accepts_trusted_device_certificate(broker, certs):
    assert tls_connect_outcome(broker.ports["tls"], tls_device(certs), "device1") == CONNACK_OK


def test_required_listener_refuses_client_without_certificate(broker, certs):
    assert_refused_for_no_certificate(
        broker, tls_alert_before_connect(broker.ports["mtls"], tls_server_only(certs)))


def test_required_listener_refuses_untrusted_certificate(broker, certs):
    rogue = {"cafile": certs.ca_pem, "certfile": certs.rogue_chain, "keyfile": certs.rogue_key}
    assert_refused_with_connack_5(broker, tls_connect_outcome(broker.ports["mtls"], rogue, "rogue"))


def test_untrusted_device_never_gets_to_publish(broker, certs, watcher):
    rogue = {"cafile": certs.ca_pem, "certfile": certs.rogue_pem, "keyfile": certs.rogue_key}
    r = mosquitto_pub(broker.ports["mtls"], watcher.topic, "intruder", qos=1, client_id="rogue",
                      tls=rogue)
    assert_mosquitto_refused(r, 5)
    watcher.publish(watcher.topic, b"sentinel", 1)
    assert watcher.get_on(watcher.topic).payload == b"sentinel"


@pytest.mark.certmq_only
def test_optional_cafile_listener_refuses_untrusted_certificate(broker, certs, watcher):
    """A presented certificate is checked even where certificates are optional
    (mosquitto does not request one there, hence certmq only)."""
    rogue = {"cafile": certs.ca_pem, "certfile": certs.rogue_chain, "keyfile": certs.rogue_key}
    assert_refused_with_connack_5(broker, tls_connect_outcome(broker.ports["tls"], rogue, "rogue"))
    r = mosquitto_pub(broker.ports["tls"], watcher.topic, "intruder", qos=1, client_id="rogue",
                      tls=rogue)
    assert_mosquitto_refused(r, 5)
    watcher.publish(watcher.topic, b"sentinel", 1)
    assert watcher.get_on(watcher.topic).payload == b"sentinel"


def test_required_listener_refuses_mosquitto_pub_without_certificate(broker, certs, watcher):
    # No CONNACK to check here: the refusal is the TLS alert (asserted with
    # a raw client above), which mosquitto_pub may lose to a reset when its
    # CONNECT crosses the alert. The broker must have refused, not died.
    r = mosquitto_pub(broker.ports["mtls"], watcher.topic, "no cert", qos=1,
                      tls=tls_server_only(certs))
    assert r.returncode != 0
    assert broker.alive(), "certmq died refusing the client"
    watcher.publish(watcher.topic, b"sentinel", 1)
    assert watcher.get_on(watcher.topic).payload == b"sentinel"


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_tls_versions_1_2_and_1_3_accepted(broker, certs, version):
    ctx = tls_context(certs.ca_pem, certs.device1_pem, certs.device1_key)
    ctx.minimum_version = ctx.maximum_version = version
    with socket.create_connection(("127.0.0.1", broker.ports["mtls"]), timeout=TIMEOUT) as s:
        with ctx.wrap_socket(s, server_hostname="localhost") as t:
            assert t.version() == {ssl.TLSVersion.TLSv1_2: "TLSv1.2",
                                   ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[version]
            t.sendall(connect_packet("device1"))
            assert t.recv(4) == CONNACK_OK


def test_plain_mqtt_on_tls_listener_is_closed(broker):
    c = RawClient(broker.ports["tls"])
    try:
        c.send(connect_packet("plain-on-tls"))
        assert c.is_closed()
        assert not c.buf.startswith(CONNACK_OK)
    finally:
        c.close()


def serial_seen_by_new_client(broker, certs):
    ctx = tls_context(certs.ca_pem)
    with socket.create_connection(("127.0.0.1", broker.ports["tls"]), timeout=TIMEOUT) as s:
        with ctx.wrap_socket(s, server_hostname="localhost") as t:
            return x509.load_der_x509_certificate(t.getpeercert(binary_form=True)).serial_number


def serial_of(path):
    with open(path, "rb") as f:
        return x509.load_pem_x509_certificate(f.read()).serial_number


def test_sighup_reloads_server_certificate_and_keeps_connections(broker, certs, clients):
    old, new = serial_of(certs.server_pem), serial_of(certs.server2_pem)
    assert old != new
    assert serial_seen_by_new_client(broker, certs) == old

    topic = unique_topic("sighup")
    existing = clients("sighup-existing", tls=tls_server_only(certs))
    existing.connect(broker.ports["tls"], host="localhost")
    existing.subscribe(topic, 1)
    raw = RawClient(broker.ports["mtls"], tls=tls_device(certs))
    try:
        assert raw.connect("device1") == CONNACK_OK
        for src, dst in ((certs.server2_pem, broker.server_pem),
                         (certs.server2_key, broker.server_key)):
            shutil.copyfile(src, dst + ".new")
            os.replace(dst + ".new", dst)
        broker.signal(signal.SIGHUP)

        deadline = time.monotonic() + TIMEOUT
        while serial_seen_by_new_client(broker, certs) != new:
            assert time.monotonic() < deadline, "new TLS clients still see the old certificate"
            time.sleep(0.1)
        assert broker.alive()

        raw.send(PINGREQ)
        assert raw.recv_packet() == b"\xd0\x00"
        pub = clients("sighup-pub")
        pub.connect(broker.ports["plain"])
        pub.publish(topic, b"still connected", 1)
        assert existing.get_on(topic).payload == b"still connected"
        assert not existing.disconnected.is_set()
    finally:
        raw.close()
