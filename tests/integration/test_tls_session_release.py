# An idle TLS 1.3 connection lets go of its own TLS session (and the peer
# certificate in it) once CONNECT is decided; the session stays in the
# broker's session cache. So a device whose connection dies without
# DISCONNECT or close_notify (it lost its network) resumes when it comes
# back, and the live view still shows what it showed of the connection.
# Python's ssl module is the client (real TLS 1.3 tickets), curl the REST.
import socket
import ssl
import time

import pytest

from conftest import TIMEOUT
from identity_pki import pki, server_fixture  # noqa: F401

server = server_fixture("tls-session-release")


def connect_packet(client_id):
    cid = client_id.encode()
    var = b"\x00\x04MQTT\x04\x02\x00\x3c" + len(cid).to_bytes(2, "big") + cid
    return bytes([0x10, len(var)]) + var


def tls_context(server, dev):
    ctx = ssl.create_default_context(cafile=server.server_ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(dev.chain, dev.key)
    return ctx


def connect(server, ctx, client_id, session=None):
    """An open TLS connection after its CONNACK: (socket, CONNACK code)."""
    raw = socket.create_connection(("127.0.0.1", server.mqtt_port), timeout=TIMEOUT)
    s = ctx.wrap_socket(raw, server_hostname="localhost", session=session)
    s.sendall(connect_packet(client_id))
    head = b""
    while len(head) < 4:
        chunk = s.recv(4 - len(head))
        assert chunk, "connection closed before CONNACK"
        head += chunk
    assert head[0] == 0x20
    return s, head[3]


def vanish(s):
    """Ends the TCP connection with neither DISCONNECT nor close_notify."""
    socket.socket.shutdown(s, socket.SHUT_RDWR)
    s.close()


def connections(server, auth):
    r = server.call("GET", "/devices/connections?pageSize=100", auth)
    assert r.status == 200, r
    return {c["clientId"]: c for c in r.json["connections"]}


def wait_for(fn, what):
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def tenant(server, pki):
    auth = server.tenant("release")
    server.trust("release", auth, pki.ca_a.pem, auto=True, name="release CA")
    return auth


def test_device_that_vanished_resumes_its_session(server, pki, tenant):
    ctx = tls_context(server, pki.a1)
    s, rc = connect(server, ctx, pki.a1.cn)
    assert rc == 0 and not s.session_reused
    session = s.session
    assert session is not None and session.has_ticket
    vanish(s)
    wait_for(lambda: pki.a1.cn not in connections(server, tenant), "the broker to see it gone")
    s, rc = connect(server, ctx, pki.a1.cn, session=session)
    try:
        assert s.session_reused, "the session of a connection that died was not resumable"
        assert rc == 0
    finally:
        s.close()


def test_connection_after_release_still_shows_its_certificate_details(server, pki, tenant):
    ctx = tls_context(server, pki.a2)
    s, rc = connect(server, ctx, pki.a2.cn)
    try:
        assert rc == 0
        c = wait_for(lambda: connections(server, tenant).get(pki.a2.cn), "the live view")
        assert c["tlsVersion"] == "TLSv1.3"
        assert c["notAfter"] and c["serialNumber"] and c["anchorFingerprint"]
        s.sendall(b"\xc0\x00")  # PINGREQ on the same TLS connection
        assert s.recv(2) == b"\xd0\x00"
    finally:
        s.close()
