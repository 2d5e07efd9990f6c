# End-to-end withdrawal of trust (issue #3): disabling (PUT status DISABLED)
# or deleting a trusted certificate closes the connections it admitted within
# one second (measured from the REST call), leaves other anchors' devices
# connected, and re-enabling admits them again; with the tenant option
# configuration/crl.offline.check.enabled true, a revoked device serial is
# refused and, if connected, disconnected.
import time

import pytest

from conftest import RawClient
from identity_pki import assert_mosquitto_refused, pki, server_fixture  # noqa: F401

server = server_fixture("identity-withdrawal")

CRL = "/tenant/trusted-certificates/settings/crl"


def raw_device(server, dev, client_id=None):
    """A byte-level MQTT client over mutual TLS, connected (CONNACK 0)."""
    c = RawClient(server.mqtt_port, tls=dev.tls(server.server_ca))
    ack = c.connect(client_id or dev.cn)
    assert ack == b"\x20\x02\x00\x00", ack
    return c


def closed_within(client, started, limit=1.0):
    """Seconds from started until the server closed client (fails past limit)."""
    assert client.is_closed(timeout=limit + 2), "connection still open"
    took = time.monotonic() - started
    assert took < limit, f"closed after {took:.3f} s"
    return took


@pytest.fixture(scope="module")
def tenant_w(server, pki):
    auth = server.tenant("withw")
    fp = server.trust("withw", auth, pki.ca_w.pem)
    # A second tenant whose device must survive W's changes.
    other = server.tenant("withb")
    server.trust("withb", other, pki.ca_b.pem)
    return auth, fp


def test_disable_closes_within_a_second_and_enable_admits_again(server, pki, clients, tenant_w):
    auth, fp = tenant_w
    raw = raw_device(server, pki.w1)
    paho = server.connect_device(clients, pki.w2, "d:w2")
    bystander = server.connect_device(clients, pki.b1)
    t0 = time.monotonic()
    server.set_cert("withw", auth, fp, status="DISABLED")
    took = closed_within(raw, t0)
    assert paho.disconnected.wait(max(0.01, 1.0 - (time.monotonic() - t0))), \
        "paho device not disconnected within 1 s"
    raw.close()
    assert "device(s) disconnected" in server.stderr()
    # The other tenant's device is untouched and still delivers.
    bystander.publish("s/us", "still here", qos=1)
    assert not bystander.disconnected.is_set()
    # Reconnecting is refused while disabled...
    assert server.connack(clients, pki.w1) == 5
    assert_mosquitto_refused(server.mosquitto_pub(pki.w2, "t/x", "m"))
    server.assert_refusal_logged("w1", "anchor disabled", "withw", fp)
    # ...and admitted again once enabled.
    server.set_cert("withw", auth, fp, status="ENABLED")
    raw_device(server, pki.w1).close()
    assert server.mosquitto_pub(pki.w2, "t/x", "m", client_id="d:w2").returncode == 0
    print(f"disable closed the device connection after {took * 1000:.0f} ms")


def test_delete_closes_within_a_second_and_reupload_admits_again(server, pki, clients, tenant_w):
    auth, fp = tenant_w
    raw = raw_device(server, pki.w3)
    paho = server.connect_device(clients, pki.w1)
    t0 = time.monotonic()
    r = server.call("DELETE", f"/tenant/tenants/withw/trusted-certificates/{fp}", auth)
    assert r.status == 204, r
    took = closed_within(raw, t0)
    assert paho.disconnected.wait(max(0.01, 1.0 - (time.monotonic() - t0)))
    raw.close()
    assert server.connack(clients, pki.w3) == 5
    server.assert_refusal_logged("w3", "untrusted")
    assert server.trust("withw", auth, pki.ca_w.pem) == fp
    raw_device(server, pki.w3).close()
    print(f"delete closed the device connection after {took * 1000:.0f} ms")


def test_revoked_serial_is_disconnected_and_refused(server, pki, clients):
    auth = server.tenant("withr")
    fp = server.trust("withr", auth, pki.ca_r.pem)
    r = server.call("PUT", "/tenant/options/configuration/crl.offline.check.enabled", auth,
                    {"value": "true"})
    assert r.status == 200, r
    revoked = raw_device(server, pki.r1)
    kept = server.connect_device(clients, pki.r2)
    t0 = time.monotonic()
    r = server.call("PUT", CRL, auth, {"crls": [{"serialNumberInHex": pki.r1.serial_hex,
                                                 "revocationDate": "2024-01-02T03:04:05Z"}]})
    assert r.status == 200, r
    closed_within(revoked, t0)
    revoked.close()
    assert server.connack(clients, pki.r1) == 5
    assert_mosquitto_refused(server.mosquitto_pub(pki.r1, "t/x", "m"))
    server.assert_refusal_logged("r1", "revoked", "withr", fp)
    # The device that is not on the list stays and reconnects.
    kept.publish("s/us", "fine", qos=1)
    assert not kept.disconnected.is_set()
    assert server.mosquitto_pub(pki.r2, "t/x", "m", client_id="d:r2").returncode == 0


def test_revocation_without_the_option_changes_nothing(server, pki, clients):
    """Tenant option off (the default): the CRL is kept but not enforced."""
    auth = server.tenant("withn")
    server.trust("withn", auth, pki.ca_s.pem)
    dev = raw_device(server, pki.s1)
    r = server.call("PUT", CRL, auth, {"crls": [{"serialNumberInHex": pki.s1.serial_hex,
                                                 "revocationDate": "2024-01-02T03:04:05Z"}]})
    assert r.status == 200, r
    assert not dev.is_closed(timeout=0.7)
    assert server.connack(clients, pki.s1) == 0
    dev.close()
