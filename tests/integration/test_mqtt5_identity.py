# Device identity over MQTT 5.0 (issue #8 item 3) against the real binary
# with tenants, trusted CAs and devices made as the guide does (identity_pki):
# a refused certificate device gets CONNACK 0x87 whose Reason String names
# the reason (none when it asked for no problem information), as paho 5.0
# and `mosquitto_sub -V 5 -d` show; a bad password gets 0x86; device s/
# topics and the token flow work for a paho 5.0 device; and a connected 5.0
# device is told why it is dropped: 0x87 when its trusted certificate is
# disabled or deleted or it is revoked, 0x98 when disconnected through REST.
import subprocess

import pytest
from paho.mqtt.packettypes import PacketTypes

from conftest import TIMEOUT
from identity_pki import openssl, pki, server_fixture  # noqa: F401
from mqtt5 import (REASON_STRING, REQUEST_PROBLEM_INFO, TOPIC_ALIAS, Client5, Raw5, disconnect5,
                   pprops, props, publish5)

server = server_fixture("mqtt5-identity")

CRL = "/tenant/trusted-certificates/settings/crl"
CRL_OPTION = "/tenant/options/configuration/crl.offline.check.enabled"


@pytest.fixture
def paho5():
    made = []

    def make(*a, **kw):
        c = Client5(*a, **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


@pytest.fixture(scope="module")
def tenant_a(server, pki):
    auth = server.tenant("m5a")
    fp = server.trust("m5a", auth, pki.ca_a.pem, auto=True)
    return auth, fp


def device5(server, paho5, dev, client_id=None, chain=True):
    return paho5(client_id if client_id is not None else dev.cn,
                 tls=dev.tls(server.server_ca, chain))


def refusal(server, paho5, dev, chain=True, properties=None):
    """(reason code, Reason String or None) paho 5.0 gets for dev."""
    c = device5(server, paho5, dev, chain=chain)
    rc = c.connect(server.mqtt_port, host="localhost", expect=None, properties=properties)
    server.assert_alive()
    return rc, getattr(c.connack_props, "ReasonString", None)


def raw_device(server, dev):
    c = Raw5(server.mqtt_port, tls=dev.tls(server.server_ca))
    ack = c.connect5(dev.cn)
    assert ack.reason == 0, ack
    return c


# ---------------------------------------------------------------- refusals

def test_leaf_without_the_ca_gets_0x87_ca_not_in_chain(server, pki, tenant_a, paho5):
    assert refusal(server, paho5, pki.a3, chain=False) == (0x87, "ca not in chain")


def test_unregistered_device_gets_0x87_device_not_registered(server, pki, paho5):
    auth = server.tenant("m5c")
    server.trust("m5c", auth, pki.ca_c.pem, auto=False)
    assert refusal(server, paho5, pki.c1) == (0x87, "device not registered")


def test_chain_too_long_gets_0x87_chain_too_long(server, pki, paho5):
    auth = server.tenant("m5i")
    server.trust("m5i", auth, pki.root_i.pem)
    assert refusal(server, paho5, pki.idev) == (0x87, "chain too long")


def test_no_reason_string_when_problem_information_is_not_requested(server, pki, tenant_a,
                                                                    paho5):
    no_info = pprops(PacketTypes.CONNECT, RequestProblemInformation=0)
    assert refusal(server, paho5, pki.a3, chain=False, properties=no_info) == (0x87, None)
    # The same on the wire: a CONNACK with an empty property list.
    c = Raw5(server.mqtt_port, tls=pki.a3.tls(server.server_ca, chain=False))
    ack = c.connect5("a3", properties=props((REQUEST_PROBLEM_INFO, 0)))
    assert ack.reason == 0x87 and REASON_STRING not in ack.props, ack
    assert c.is_closed()
    c.close()


def test_mosquitto_sub_v5_shows_the_refusal(server, pki, tenant_a):
    """mosquitto_sub 2.0.11 prints the CONNACK reason code (135) and its
    own text for it, never the Reason String property (its connect callback
    prints mosquitto_reason_string(rc) only): that the string is on the
    wire is checked with paho and raw packets above."""
    r = subprocess.run(["mosquitto_sub", "-V", "5", "-d", "-h", "localhost", "-p",
                        str(server.mqtt_port), "-t", "x", "-i", "a3", "--cafile",
                        server.server_ca, "--cert", pki.a3.pem, "--key", pki.a3.key, "-C", "1",
                        "-W", str(int(TIMEOUT))],
                       capture_output=True, text=True, timeout=TIMEOUT + 5)
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    assert "received CONNACK (135)" in out, out
    assert "Connection error: Not authorized" in out, out


def test_bad_password_gets_0x86(server, tenant_a, paho5):
    auth, _ = tenant_a
    user, pw = server.user("m5a", auth, "app5", "app5-secret-1")
    ok = paho5("app5", tls={"cafile": server.server_ca}, username=user, password=pw)
    ok.connect(server.mqtt_port, host="localhost")
    bad = paho5("app5b", tls={"cafile": server.server_ca}, username=user, password="wrong")
    assert bad.connect(server.mqtt_port, host="localhost", expect=None) == 0x86
    nobody = paho5("app5c", tls={"cafile": server.server_ca}, username="m5a/nobody",
                   password="wrong")
    assert nobody.connect(server.mqtt_port, host="localhost", expect=None) == 0x86
    server.assert_alive()


# ---------------------------------------------------------------- device topics, tokens

def test_device_s_topics_and_token_flow_for_a_paho_5_device(server, pki, tenant_a, paho5):
    auth, _ = tenant_a
    # The tenant admin's application reads the device's s/us.
    app = paho5("backend5", tls={"cafile": server.server_ca}, username=auth[0],
                password=auth[1])
    app.connect(server.mqtt_port, host="localhost")
    app.subscribe("devices/a1/s/us", qos=1)
    dev = device5(server, paho5, pki.a1)
    dev.connect(server.mqtt_port, host="localhost")
    dev.subscribe("s/dat", qos=1)
    dev.publish("s/uat", b"", qos=1)
    m = dev.get()
    assert m.topic == "s/dat"
    text = m.payload.decode()
    assert text.startswith("71,") and text.count(".") == 2, text
    dev.publish("s/us", "100,a1,thermo", qos=1,
                properties=pprops(UserProperty=[("fw", "1.2")]))
    got = app.get()
    assert (got.topic, got.payload) == ("devices/a1/s/us", b"100,a1,thermo")
    assert got.properties.UserProperty == [("fw", "1.2")]
    # Another tenant's device topic stays out of reach.
    dev.publish("devices/b1/s/us", "intrusion", qos=1)
    assert app.drain() == []


# ---------------------------------------------------------------- server DISCONNECT

def test_disabling_the_trusted_certificate_sends_0x87(server, pki):
    auth = server.tenant("m5w")
    fp = server.trust("m5w", auth, pki.ca_w.pem)
    c = raw_device(server, pki.w1)
    server.set_cert("m5w", auth, fp, status="DISABLED")
    assert c.goodbye().reason == 0x87
    c.close()
    server.set_cert("m5w", auth, fp, status="ENABLED")
    c = raw_device(server, pki.w2)
    r = server.call("DELETE", f"/tenant/tenants/m5w/trusted-certificates/{fp}", auth)
    assert r.status == 204, r
    assert c.goodbye().reason == 0x87
    c.close()


def test_revoking_the_device_sends_0x87(server, pki):
    auth = server.tenant("m5r")
    server.trust("m5r", auth, pki.ca_r.pem)
    assert server.call("PUT", CRL_OPTION, auth, {"value": "true"}).status == 200
    c = raw_device(server, pki.r1)
    other = raw_device(server, pki.r2)
    serial = openssl("x509", "-noout", "-serial", "-in", pki.r1.pem).strip().split("=")[1]
    r = server.call("PUT", CRL, auth, {"crls": [{"serialNumberInHex": serial}]})
    assert r.status == 200, r
    assert c.goodbye().reason == 0x87
    c.close()
    other.send(b"\xc0\x00")
    assert other.expect(13), "the unrevoked device stays"
    other.close()


def test_disconnect_through_rest_sends_0x98(server, pki, tenant_a):
    auth, _ = tenant_a
    c = raw_device(server, pki.a4)
    r = server.call("DELETE", "/devices/connections/a4", auth)
    assert r.status == 204, r
    assert c.goodbye().reason == 0x98
    c.close()


def test_device_topic_alias_on_its_s_topics(server, pki, tenant_a, paho5):
    """A 5.0 device names s/us by alias: the alias stands for its own s/us,
    which the tenant application reads as devices/<ID>/s/us."""
    auth, _ = tenant_a
    app = paho5("backend5-alias", tls={"cafile": server.server_ca}, username=auth[0],
                password=auth[1])
    app.connect(server.mqtt_port, host="localhost")
    app.subscribe("devices/a2/s/us", qos=1)
    dev = raw_device(server, pki.a2)
    dev.send(publish5("s/us", "100,a2", qos=1, pid=1, properties=props((TOPIC_ALIAS, 1))))
    assert dev.expect(4).reason == 0
    dev.send(publish5("", "200,t,21", qos=1, pid=2, properties=props((TOPIC_ALIAS, 1))))
    assert dev.expect(4).reason == 0
    got = [app.get(), app.get()]
    assert [(m.topic, m.payload) for m in got] == [("devices/a2/s/us", b"100,a2"),
                                                   ("devices/a2/s/us", b"200,t,21")]
    dev.send(disconnect5())
    dev.close()


def test_refused_device_publish_is_acknowledged_with_0x87(server, pki, tenant_a):
    dev = raw_device(server, pki.a2)
    dev.send(publish5("s/dat", "forged token", qos=1, pid=3))
    ack = dev.expect(4)
    assert (ack.pid, ack.reason) == (3, 0x87)
    dev.send(disconnect5())
    dev.close()


def test_response_information_for_a_device_is_usable_by_it(server, pki, tenant_a, paho5):
    dev = device5(server, paho5, pki.a1)
    dev.connect(server.mqtt_port, host="localhost",
                properties=pprops(PacketTypes.CONNECT, RequestResponseInformation=1))
    info = dev.connack_props.ResponseInformation
    assert info
    assert dev.subscribe(info + "/#", qos=1) == [1]
    dev.publish("s/us", "100,a1", qos=1)  # opens the delivery gate
    dev.publish(info + "/r1", "to myself", qos=1)
    m = dev.get()
    assert (m.topic, m.payload) == (info + "/r1", b"to myself")


def test_tenants_stay_apart_for_5_0_clients(server, pki, tenant_a, paho5):
    auth_b = server.tenant("m5b")
    server.trust("m5b", auth_b, pki.ca_b.pem)
    theirs = device5(server, paho5, pki.b1)
    theirs.connect(server.mqtt_port, host="localhost")
    theirs.publish("s/us", "100,b1", qos=1)
    theirs.subscribe("plant/#", qos=1)
    theirs.subscribe("$share/g/plant/#", qos=1)
    ours = device5(server, paho5, pki.a3)
    ours.connect(server.mqtt_port, host="localhost")
    ours.publish("s/us", "100,a3", qos=1)
    ours.subscribe("plant/#", qos=1)
    ours.publish("plant/line", "tenant A only", qos=1, retain=True,
                 properties=pprops(UserProperty=[("t", "a")]))
    assert ours.get().payload == b"tenant A only"
    assert theirs.drain() == []
    late = device5(server, paho5, pki.b2)
    late.connect(server.mqtt_port, host="localhost")
    late.publish("s/us", "100,b2", qos=1)
    late.subscribe("plant/#", qos=1)
    assert late.drain() == [], "tenant B saw tenant A's retained message"
    ours.publish("plant/line", "", qos=1, retain=True)
