# Topic authorization from a mosquitto-style acl_file for statically trusted
# (listener cafile, named by CN) and anonymous clients: denied SUBSCRIBEs get
# 0x80, denied PUBLISHes are acknowledged and dropped, deliveries on a broad
# subscription are filtered per topic (retained messages too), and a SIGHUP
# reload applies to connected clients at once.
import signal
import subprocess

import pytest

from conftest import CERTMQ_BIN, Broker, free_port, unique_topic

ACL = """\
# anonymous clients
topic readwrite test/#
topic deny test/nosubscribe
topic read public/#

user device1
topic readwrite private/device1/#
topic read public/#

# everyone
pattern readwrite clients/%c/#
pattern write telemetry/%u/#
"""


@pytest.fixture(scope="module")
def acl_broker(tmp_path_factory, certs):
    d = tmp_path_factory.mktemp("acl")
    acl = d / "acl"
    acl.write_text(ACL)
    b = Broker(d / "broker", certs, {"acl_file": str(acl), "acl_default": "deny"},
               ("plain", "mtls")).start()
    b.acl_path = acl
    yield b
    b.stop()


def anon(clients, broker, cid=None):
    c = clients(cid or unique_topic("anon").replace("/", "-"))
    c.connect(broker.ports["plain"])
    return c


def device1(clients, broker, certs, cid="device1"):
    c = clients(cid, tls={"cafile": certs.ca_pem, "certfile": certs.device1_pem,
                          "keyfile": certs.device1_key})
    c.connect(broker.ports["mtls"], host="localhost")
    return c


def test_denied_subscription_gets_0x80(acl_broker, clients):
    c = anon(clients, acl_broker)
    assert c.subscribe("test/nosubscribe", 1) == (0x80,)
    assert c.subscribe("test/ok", 1) == (1,)
    assert c.subscribe("private/device1/x", 0) == (0x80,)
    assert c.subscribe("nothing/granted", 0) == (0x80,)  # acl_default deny


def test_denied_publish_is_acknowledged_and_dropped(acl_broker, clients, certs):
    d = device1(clients, acl_broker, certs)
    assert d.subscribe("private/device1/#", 1) == (1,)
    a = anon(clients, acl_broker)
    a.publish("private/device1/in", "from anonymous", qos=1)  # PUBACK arrives
    d.publish("private/device1/self", "from device1", qos=1)
    assert d.get().payload == b"from device1"
    assert d.drain() == []


def test_broad_subscription_is_filtered_per_topic(acl_broker, clients, certs):
    a = anon(clients, acl_broker)
    assert a.subscribe("#", 1) == (1,)
    pub = anon(clients, acl_broker)
    pub.publish("test/nosubscribe", "hidden", qos=1)
    pub.publish("test/visible", "shown", qos=1)
    d = device1(clients, acl_broker, certs, cid="device1-pub")
    d.publish("private/device1/x", "private", qos=1)
    assert [m.payload for m in a.drain()] == [b"shown"]


def test_retained_message_on_a_denied_topic_is_not_delivered(acl_broker, clients, certs):
    topic = "private/device1/" + unique_topic("r")
    d = device1(clients, acl_broker, certs, cid="device1-ret")
    d.publish(topic, "kept", qos=1, retain=True)
    a = anon(clients, acl_broker)
    assert a.subscribe("#", 1) == (1,)
    assert a.drain() == []
    d2 = device1(clients, acl_broker, certs, cid="device1-ret2")
    d2.subscribe(topic, 1)
    assert d2.get().payload == b"kept"


def test_patterns_fill_in_client_id_and_user_name(acl_broker, clients, certs):
    a = anon(clients, acl_broker, cid="anon-7")
    assert a.subscribe("clients/anon-7/#", 1) == (1,)
    assert a.subscribe("clients/anon-8/#", 1) == (0x80,)
    d = device1(clients, acl_broker, certs, cid="device1-tel")
    assert d.subscribe("clients/device1-tel/in", 1) == (1,)
    a.publish("clients/device1-tel/in", "not mine to write", qos=1)
    d.publish("clients/device1-tel/in", "mine", qos=1)
    assert [m.payload for m in d.drain()] == [b"mine"]
    # write-only: device1 may publish telemetry/device1/..., nobody may read it.
    assert d.subscribe("telemetry/device1/t", 1) == (0x80,)


def test_sighup_reload_applies_to_connected_clients(acl_broker, clients):
    a = anon(clients, acl_broker)
    assert a.subscribe("test/live", 1) == (1,)
    acl_broker.acl_path.write_text(ACL.replace("topic readwrite test/#", "topic read test/other"))
    try:
        seen = acl_broker.stderr().count("reloaded (")
        acl_broker.signal(signal.SIGHUP)
        acl_broker.wait_log("reloaded (", seen)
        pub = anon(clients, acl_broker)
        pub.publish("test/live", "after reload", qos=1)
        assert a.drain() == []  # the subscription was dropped
        assert a.subscribe("test/live", 1) == (0x80,)
        assert a.subscribe("test/other", 1) == (1,)
    finally:
        acl_broker.acl_path.write_text(ACL)
        acl_broker.signal(signal.SIGHUP)


def test_bad_acl_file_is_refused_at_start_with_its_line(tmp_path, certs):
    acl = tmp_path / "acl"
    acl.write_text("user a\ntopic read a/#/b\n")
    conf = tmp_path / "c.conf"
    conf.write_text(f"data_dir {tmp_path}/var\nacl_file {acl}\nlistener {free_port()} 127.0.0.1\n")
    r = subprocess.run([CERTMQ_BIN, "serve", "--config", str(conf)], capture_output=True,
                       text=True, timeout=20)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert f"{acl}:2: not a valid topic filter" in r.stderr
