# MQTT 5.0 messages the broker does not deliver are counted in GET /metrics
# (issue #8 item 2: "drop and count"): one larger than the client's Maximum
# Packet Size, one whose Message Expiry Interval passed. paho 5.0 clients
# over mutual TLS, curl for the scrape.
import time

import pytest
from paho.mqtt.packettypes import PacketTypes

from identity_pki import pki, server_fixture  # noqa: F401
from mqtt5 import Client5, pprops

server = server_fixture("mqtt5-metrics")

TOO_LARGE = "certmq_messages_too_large_total"
EXPIRED = "certmq_messages_expired_total"


def scrape(server):
    r = server.call("GET", "/metrics", ("management/admin", "management-secret-1"))
    assert r.status == 200, r
    values = {}
    for line in r.body.decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


@pytest.fixture(scope="module")
def tenant(server, pki):
    auth = server.tenant("m5m")
    server.trust("m5m", auth, pki.ca_a.pem)
    return auth


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


def test_message_above_the_clients_maximum_packet_size_is_counted(server, pki, tenant, paho5):
    before = scrape(server)[TOO_LARGE]
    dev = paho5("a1", tls=pki.a1.tls(server.server_ca))
    dev.connect(server.mqtt_port, host="localhost",
                properties=pprops(PacketTypes.CONNECT, MaximumPacketSize=300))
    dev.subscribe("plant/big", qos=1)
    dev.publish("s/us", "100,a1", qos=1)  # opens the delivery gate
    dev.publish("plant/big", "B" * 1000, qos=1)
    dev.publish("plant/big", "small", qos=1)
    assert dev.get().payload == b"small"
    assert scrape(server)[TOO_LARGE] == before + 1


def test_expired_message_is_counted(server, pki, tenant, paho5):
    before = scrape(server)[EXPIRED]
    dev = paho5("a2", tls=pki.a2.tls(server.server_ca))
    dev.connect(server.mqtt_port, host="localhost")
    dev.publish("plant/kept", "soon gone", qos=1, retain=True,
                properties=pprops(MessageExpiryInterval=1))
    time.sleep(2.2)  # the interval is the behaviour
    dev.publish("s/us", "100,a2", qos=1)
    dev.subscribe("plant/kept", qos=1)
    assert dev.drain() == []
    assert scrape(server)[EXPIRED] >= before + 1
