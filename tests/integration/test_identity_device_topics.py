# Who reaches a device's own topics, and who may use its ClientIds.
# Device topics (devices/X/s/...) are reachable only by the tenant's users
# holding a device-control role (ROLE_TENANT_ADMIN, ROLE_DEVICE_CONTROL_ADMIN);
# a password device (ROLE_DEVICE, from bulk CSV) is a device: its own s/
# topics only; s/dat and s/dcr are written by the broker alone; a registered
# device's ClientIds (CN, d:CN, d:CN:*) belong to it.
import pytest

from identity_pki import assert_mosquitto_refused, pki, server_fixture  # noqa: F401

server = server_fixture("identity-device-topics")


@pytest.fixture(scope="module")
def tenant(server, pki, tmp_path_factory):
    admin = server.tenant("devtop")
    server.trust("devtop", admin, pki.ca_a.pem, auto=True)
    plain = server.user("devtop", admin, "viewer", "viewer-secret-1")
    control = server.user("devtop", admin, "ops", "ops-secret-12",
                          roles=["ROLE_DEVICE_CONTROL_ADMIN"])
    csv = tmp_path_factory.mktemp("csv") / "pw.csv"
    b = server.bulk_register(admin, "ID;CREDENTIALS;AUTH_TYPE;TYPE\n"
                             "pwdev;pwdev-secret-1;BASIC;meter\n", csv)
    assert b["numberOfSuccessful"] == 1, b
    # a1 registers on its first connect.
    r = server.mosquitto_pub(pki.a1, "s/us", "100,a1")
    assert r.returncode == 0, r.stderr
    return {"admin": admin, "plain": plain, "control": control,
            "pwdev": ("devtop/device_pwdev", "pwdev-secret-1")}


def online_device(server, clients, pki):
    dev = server.connect_device(clients, pki.a1)
    assert dev.subscribe("s/ds", 1) == (1,)
    dev.publish("s/us", "100,a1", qos=1)  # opens the delivery gate
    return dev


@pytest.mark.parametrize("who", ["plain", "pwdev"])
def test_users_without_a_device_control_role_cannot_read_or_command_devices(
        server, pki, tenant, clients, who):
    dev = online_device(server, clients, pki)
    c = server.password_client(clients, tenant[who], f"nosy-{who}")
    c.connect(server.mqtt_port, host="localhost")
    assert c.subscribe("devices/a1/s/us", 1) == (0x80,)
    assert c.subscribe("devices/+/s/#", 1) == (0x80,)
    c.publish("devices/a1/s/ds", "510,fake operation", qos=1)
    dev.publish("s/us", "200,c8y_Temperature,T,20", qos=1)
    assert dev.drain() == []
    assert c.drain() == []


@pytest.mark.parametrize("who", ["admin", "control"])
def test_device_control_roles_read_and_command_devices(server, pki, tenant, clients, who):
    dev = online_device(server, clients, pki)
    c = server.password_client(clients, tenant[who], f"ctl-{who}")
    c.connect(server.mqtt_port, host="localhost")
    assert c.subscribe("devices/a1/s/us", 1) == (1,)
    dev.publish("s/us", f"200,from-a1-to-{who}", qos=1)
    assert c.get_on("devices/a1/s/us").payload == f"200,from-a1-to-{who}".encode()
    c.publish("devices/a1/s/ds", f"510,op-from-{who}", qos=1)
    assert dev.get_on("s/ds").payload == f"510,op-from-{who}".encode()


def test_nobody_but_the_broker_writes_s_dat(server, pki, tenant, clients):
    dev = online_device(server, clients, pki)
    assert dev.subscribe("s/dat", 1) == (1,)
    admin = server.password_client(clients, tenant["admin"], "forger")
    admin.connect(server.mqtt_port, host="localhost")
    admin.publish("devices/a1/s/dat", "71,forged.jwt.token", qos=1)
    admin.publish("devices/a1/s/dcr", "forged certificate", qos=1)
    dev.publish("s/dat", "71,self-made", qos=1)
    assert [m.payload for m in dev.drain()] == []
    # The broker itself still answers s/uat on s/dat.
    dev.publish("s/uat", "", qos=1)
    assert dev.get_on("s/dat").payload.startswith(b"71,ey")


def test_password_device_is_a_device_with_its_own_s_topics(server, pki, tenant, clients):
    ops = server.password_client(clients, tenant["control"], "ops-watch")
    ops.connect(server.mqtt_port, host="localhost")
    assert ops.subscribe("devices/pwdev/s/us", 1) == (1,)
    pw = server.password_client(clients, tenant["pwdev"], "pwdev")
    pw.connect(server.mqtt_port, host="localhost")
    assert pw.subscribe("s/ds", 1) == (1,)
    pw.publish("s/us", "200,meter,E,42", qos=1)
    assert ops.get_on("devices/pwdev/s/us").payload == b"200,meter,E,42"
    ops.publish("devices/pwdev/s/ds", "510,read meter", qos=1)
    assert pw.get_on("s/ds").payload == b"510,read meter"


@pytest.mark.parametrize("client_id", ["a1", "d:a1", "d:a1:tpl"])
def test_device_client_ids_belong_to_the_device(server, pki, tenant, clients, client_id):
    dev = online_device(server, clients, pki)
    thief = server.password_client(clients, tenant["admin"], client_id)
    assert thief.connect(server.mqtt_port, host="localhost", expect_rc=None) == 5
    r = server.mosquitto_pub(None, "x", "y", client_id=client_id, auth=tenant["plain"])
    assert_mosquitto_refused(r)
    # The device was not kicked, and still gets what is sent to it.
    ops = server.password_client(clients, tenant["control"], "ops-after-theft")
    ops.connect(server.mqtt_port, host="localhost")
    ops.publish("devices/a1/s/ds", "510,still here?", qos=1)
    assert dev.get_on("s/ds").payload == b"510,still here?"
    assert "client id belongs to a device" in server.stderr()


def test_other_client_ids_are_free(server, tenant, clients):
    for cid in ("a1x", "d:unregistered", "backend:1"):
        c = server.password_client(clients, tenant["admin"], cid)
        c.connect(server.mqtt_port, host="localhost")
        c.disconnect()
