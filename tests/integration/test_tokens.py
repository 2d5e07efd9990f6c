# Device tokens end to end: the real `certmq serve` with an MQTT TLS listener
# (client certificates optional, tenant trust only) and the HTTP API. A
# certificate device asks for its JWT on s/uat and gets `71,<JWT>` on its own
# s/dat; the token is checked by Debian's python3-jwt with the public key the
# API publishes, and authenticates REST calls as the device user; forged,
# expired, tampered, foreign and wrong-algorithm tokens get 401, admin routes
# 403. Also the delivery gate (nothing arrives before s/uat or s/us).
import base64
import hashlib
import hmac
import json
import os
import shutil
import socket
import stat
import subprocess
import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from apiserver import ADMIN, ApiServer, assert_json_error, make_tenant, upload_ca
from conftest import QUIET, TIMEOUT, free_port
from sealed import token_private_key

TENANT = "tok1"
OTHER = "tok2"


class DeviceServer(ApiServer):
    """ApiServer plus an MQTT over TLS listener without a cafile: devices are
    admitted by tenant trust alone, password clients log in as tenant users."""

    def __init__(self, workdir, certs):
        super().__init__(workdir)
        self.mqtt_port = free_port()
        key = self.dir / "server.key"
        shutil.copyfile(certs.server_pem, self.dir / "server.pem")
        shutil.copyfile(certs.server_key, key)
        os.chmod(key, 0o600)
        self.conf.write_text(self.conf.read_text() + "\n".join([
            "", f"listener {self.mqtt_port} 127.0.0.1", f"certfile {self.dir / 'server.pem'}",
            f"keyfile {key}", "client_certificates optional", ""]))

    def start(self):
        super().start()
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.mqtt_port), timeout=0.5).close()
                return self
            except OSError:
                assert time.monotonic() < deadline, self.stderr()
                time.sleep(0.05)


@pytest.fixture(scope="module")
def srv(tmp_path_factory, certs):
    s = DeviceServer(tmp_path_factory.mktemp("tokens"), certs).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def admin(srv, certs):
    auth = make_tenant(srv, TENANT)
    r = upload_ca(srv, TENANT, auth, certs.ca_pem, auto=True)
    assert r.status == 201, r
    return auth


@pytest.fixture(scope="module")
def other_admin(srv):
    return make_tenant(srv, OTHER)


def device(certs, name="device1"):
    return {"cafile": certs.ca_pem, "certfile": getattr(certs, f"{name}_chain"),
            "keyfile": getattr(certs, f"{name}_key")}


def connected_device(clients, srv, certs, name="device1", client_id=None):
    c = clients(client_id or name, tls=device(certs, name))
    c.connect(srv.mqtt_port)
    return c


def request_token(c):
    """Subscribes s/dat, publishes an empty s/uat and returns the JWT. QoS 0
    deliveries: paho 1.6 must not write a PUBACK from its network thread
    while this thread writes (TLS writes are not thread-safe there)."""
    c.subscribe("s/dat", 0)
    c.publish("s/uat", b"", qos=1)
    m = c.get_on("s/dat")
    text = m.payload.decode()
    assert text.startswith("71,"), text
    return text[3:]


def public_key(srv, auth, tenant=TENANT):
    r = srv.call("GET", f"/tenant/tenants/{tenant}/device-token-key", auth)
    assert r.status == 200, r
    assert r.json["algorithm"] == "ES256"
    return r.json["publicKeyPem"]


def private_key(srv, tenant=TENANT):
    """The tenant's signing key as the store keeps it, opened with the KEK
    in the data dir (which the test owns)."""
    return token_private_key(srv.data, tenant)


def bearer(srv, token, path="/user/currentUser", method="GET", body=None):
    return srv.call(method, path, headers={"Authorization": f"Bearer {token}"}, json_body=body)


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(now, **over):
    c = {"iss": "certmq", "sub": "device_device1", "ten": TENANT, "iat": now, "nbf": now,
         "exp": now + 3600, "jti": uuid.uuid4().hex}
    c.update(over)
    return c


# ---------------------------------------------------------------- token over MQTT

def test_device_gets_a_token_that_an_independent_library_verifies(srv, admin, certs, clients):
    c = connected_device(clients, srv, certs)
    before = int(time.time())
    token = request_token(c)
    pub = public_key(srv, admin)
    assert "PRIVATE" not in pub
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "ES256"
    body = jwt.decode(token, pub, algorithms=["ES256"],
                      options={"require": ["iss", "sub", "iat", "nbf", "exp", "jti"]})
    assert body["sub"] == "device_device1"
    assert body["ten"] == TENANT
    assert body["iss"] == "certmq"
    assert before - 1 <= body["iat"] <= time.time() + 1
    assert body["nbf"] == body["iat"]
    assert body["exp"] - body["iat"] == 3600  # the default lifespan
    assert len(body["jti"]) >= 16


def test_token_reaches_only_the_requesting_device(srv, admin, certs, clients):
    other = connected_device(clients, srv, certs, "device2")
    other.publish("s/us", b"100,ready", qos=1)  # opens device2's gate
    other.subscribe("s/dat", 1)
    backend = clients("tok-backend", tls={"cafile": certs.ca_pem}, username=f"{TENANT}/admin",
                      password=admin[1])
    backend.connect(srv.mqtt_port)
    backend.subscribe("#", 0)
    backend.subscribe("devices/+/s/#", 0)
    dev = connected_device(clients, srv, certs)
    token = request_token(dev)
    assert jwt.decode(token, options={"verify_signature": False})["sub"] == "device_device1"
    dev.publish("s/us", b"100,alive", qos=1)  # the backend's subscription is live
    seen = backend.drain() + other.drain()
    assert [m.topic for m in seen if m.payload == b"100,alive"] == ["devices/device1/s/us"]
    assert [m for m in seen if token.encode() in m.payload] == []
    # device2 is live: its own request is answered, with its own token
    other.publish("s/uat", b"", qos=1)
    mine = other.get_on("s/dat").payload.decode()
    assert mine.startswith("71,") and mine[3:] != token
    assert jwt.decode(mine[3:], options={"verify_signature": False})["sub"] == "device_device2"


def test_same_token_while_less_than_half_its_life_has_passed(srv, admin, certs, clients):
    c = connected_device(clients, srv, certs)
    first = request_token(c)
    c.publish("s/uat", b"", qos=1)
    again = c.get_on("s/dat").payload.decode()
    assert again == "71," + first
    c.disconnect()
    # a new connection of the same device is the same device: same token
    c2 = connected_device(clients, srv, certs, client_id="d:device1")
    assert request_token(c2) == first


def test_password_client_asking_for_a_token_gets_an_error_on_its_own_s_e(srv, admin, certs,
                                                                          clients):
    c = clients("tok-pw", tls={"cafile": certs.ca_pem}, username=f"{TENANT}/admin",
                password=admin[1])
    c.connect(srv.mqtt_port)
    c.subscribe("s/e", 1)
    c.subscribe("s/dat", 1)
    c.publish("s/uat", b"", qos=1)
    m = c.get_on("s/e")
    code, template, message = m.payload.decode().split(",", 2)
    assert code == "40" and template == "0" and message
    assert [x for x in c.drain() if x.topic == "s/dat"] == []


def test_tenant_password_client_reads_device_topics_under_devices(srv, admin, certs, clients):
    backend = clients("tok-backend2", tls={"cafile": certs.ca_pem},
                      username=f"{TENANT}/admin", password=admin[1])
    backend.connect(srv.mqtt_port)
    backend.subscribe("devices/device1/s/us", 1)
    dev = connected_device(clients, srv, certs)
    dev.publish("s/us", b"200,temperature", qos=1)
    m = backend.get_on("devices/device1/s/us")
    assert m.payload == b"200,temperature"


# ---------------------------------------------------------------- delivery gate

def test_nothing_is_delivered_before_the_first_s_uat_or_s_us(srv, admin, certs, clients):
    topic = f"fleet/{uuid.uuid4().hex[:8]}"
    pw = ("--username", f"{TENANT}/admin", "--pw", admin[1])
    r = mosquitto_pub_pw(srv, certs, topic, "retained-one", pw, retain=True)
    assert r.returncode == 0, r.stderr
    dev = connected_device(clients, srv, certs)
    dev.subscribe(topic, 1)
    r = mosquitto_pub_pw(srv, certs, topic, "live-one", pw)
    assert r.returncode == 0, r.stderr
    assert dev.drain(QUIET) == [], "delivered before the device spoke on s/uat or s/us"
    dev.publish("s/us", b"100,hello", qos=1)
    got = {dev.get_on(topic).payload, dev.get_on(topic).payload}
    assert got == {b"retained-one", b"live-one"}


def test_gate_opens_on_s_uat_too_and_holds_per_connection(srv, admin, certs, clients):
    topic = f"fleet/{uuid.uuid4().hex[:8]}"
    pw = ("--username", f"{TENANT}/admin", "--pw", admin[1])
    assert mosquitto_pub_pw(srv, certs, topic, "kept", pw, retain=True).returncode == 0
    dev = connected_device(clients, srv, certs)
    dev.subscribe(topic, 1)
    dev.subscribe("s/dat", 0)
    assert dev.drain(QUIET) == []
    dev.publish("s/uat", b"", qos=1)
    got = dict((m.topic, m.payload) for m in (dev.get(), dev.get()))
    assert got[topic] == b"kept"  # the held retained message, and the token
    assert got["s/dat"].startswith(b"71,")
    dev.disconnect()
    again = connected_device(clients, srv, certs)
    again.subscribe(topic, 1)
    assert again.drain(QUIET) == [], "the gate is per connection"


def mosquitto_pub_pw(srv, certs, topic, message, pw, retain=False):
    cmd = ["mosquitto_pub", "-h", "localhost", "-p", str(srv.mqtt_port), "--cafile",
           certs.ca_pem, "-t", topic, "-m", message, "-q", "1", "-V", "mqttv311",
           "-i", f"pub-{uuid.uuid4().hex[:8]}", *pw]
    if retain:
        cmd.append("-r")
    return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT + 5)


def test_backend_reading_the_devices_s_topics_never_sees_its_token(srv, admin, certs, clients):
    # mosquitto_sub as the tenant's backend on devices/device1/s/#: it gets
    # what device1 sends on s/us but never the token the broker sends it.
    sub = subprocess.Popen(
        ["mosquitto_sub", "-h", "localhost", "-p", str(srv.mqtt_port), "-t",
         "devices/device1/s/#", "-t", "devices/+/s/dat", "-v", "-W", "4", "-V", "mqttv311",
         "--cafile", certs.ca_pem, "--username", f"{TENANT}/admin", "--pw", admin[1]],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    dev = connected_device(clients, srv, certs)
    token = request_token(dev)
    dev.publish("s/us", b"100,after", qos=1)
    out, err = sub.communicate(timeout=TIMEOUT)
    assert "devices/device1/s/us 100,after" in out, (out, err)
    assert token not in out and "71," not in out


# ---------------------------------------------------------------- Bearer on the REST API

def test_bearer_token_authenticates_as_the_device_user(srv, admin, certs, clients):
    token = request_token(connected_device(clients, srv, certs))
    r = bearer(srv, token)
    assert r.status == 200, r
    assert r.json["userName"] == "device_device1"
    assert r.json["deviceUser"] is True
    assert [x["id"] for x in r.json["effectiveRoles"]] == ["ROLE_DEVICE"]


def test_token_made_by_another_jwt_library_with_the_tenant_key_is_accepted(srv, admin, certs,
                                                                          clients):
    request_token(connected_device(clients, srv, certs))  # the device user exists
    now = int(time.time())
    token = jwt.encode(claims(now), private_key(srv), algorithm="ES256")
    r = bearer(srv, token)
    assert r.status == 200, r
    assert r.json["userName"] == "device_device1"


def test_token_signed_with_the_tenant_key_for_a_password_user_is_refused(srv, admin, certs,
                                                                         clients):
    # Correctly signed with the tenant's real key, but for the tenant admin
    # (a password user): tokens are for device users only.
    request_token(connected_device(clients, srv, certs))
    now = int(time.time())
    key = private_key(srv)
    for sub in ("admin", "nosuch-user"):
        forged = jwt.encode(claims(now, sub=sub), key, algorithm="ES256")
        assert_json_error(bearer(srv, forged), 401)
        assert_json_error(bearer(srv, forged, f"/user/{TENANT}/users"), 401)
    # the same key and claims for the device user are fine
    assert bearer(srv, jwt.encode(claims(now), key, algorithm="ES256")).status == 200


def test_expired_token_is_refused(srv, admin, certs, clients):
    request_token(connected_device(clients, srv, certs))
    now = int(time.time())
    key = private_key(srv)
    expired = jwt.encode(claims(now - 7200, exp=now - 60), key, algorithm="ES256")
    assert_json_error(bearer(srv, expired), 401)
    future = jwt.encode(claims(now, nbf=now + 600), key, algorithm="ES256")
    assert_json_error(bearer(srv, future), 401)


def test_tampered_token_is_refused(srv, admin, certs, clients):
    token = request_token(connected_device(clients, srv, certs))
    h, p, s = token.split(".")
    body = json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))
    body["sub"] = "admin"
    forged = ".".join([h, b64url(json.dumps(body).encode()), s])
    assert_json_error(bearer(srv, forged), 401)
    flipped = s[:-2] + ("A" if s[-2] != "A" else "B") + s[-1]
    assert_json_error(bearer(srv, ".".join([h, p, flipped])), 401)
    assert_json_error(bearer(srv, "not-a-jwt"), 401)


def test_token_of_another_tenant_or_key_is_refused(srv, admin, other_admin, certs, clients):
    request_token(connected_device(clients, srv, certs))
    now = int(time.time())
    mine = private_key(srv, TENANT)
    # tenant tok2 has a key of its own once its public key was asked for
    public_key(srv, other_admin, OTHER)
    theirs = private_key(srv, OTHER)
    assert theirs != mine
    # our key, their tenant claim; their key, our tenant claim
    assert_json_error(bearer(srv, jwt.encode(claims(now, ten=OTHER), mine, "ES256")), 401)
    assert_json_error(bearer(srv, jwt.encode(claims(now), theirs, "ES256")), 401)
    # a tenant that has never had a key
    assert_json_error(bearer(srv, jwt.encode(claims(now, ten="nosuch"), mine, "ES256")), 401)
    # a valid token does not reach another tenant's data
    good = jwt.encode(claims(now), mine, "ES256")
    assert bearer(srv, good).status == 200
    assert_json_error(bearer(srv, good, f"/user/{OTHER}/users"), 403)


def test_alg_none_and_hs256_with_the_public_key_are_refused(srv, admin, certs, clients):
    request_token(connected_device(clients, srv, certs))
    now = int(time.time())
    payload = b64url(json.dumps(claims(now)).encode())
    none = b64url(b'{"alg":"none","typ":"JWT"}') + "." + payload + "."
    assert_json_error(bearer(srv, none), 401)
    pub = public_key(srv, admin).encode()
    head = b64url(b'{"alg":"HS256","typ":"JWT"}')
    mac = hmac.new(pub, f"{head}.{payload}".encode(), hashlib.sha256).digest()
    assert_json_error(bearer(srv, f"{head}.{payload}.{b64url(mac)}"), 401)
    # the same claims correctly signed are fine, so the refusals are the algorithm's
    assert bearer(srv, jwt.encode(claims(now), private_key(srv), "ES256")).status == 200


def test_device_token_cannot_call_admin_routes(srv, admin, certs, clients):
    token = request_token(connected_device(clients, srv, certs))
    for method, path, body in [
            ("GET", f"/tenant/tenants/{TENANT}/trusted-certificates", None),
            ("POST", f"/tenant/tenants/{TENANT}/trusted-certificates", {"name": "x"}),
            ("GET", f"/user/{TENANT}/users", None),
            ("GET", "/tenant/options", None),
            ("PUT", "/tenant/options/oauth.internal/device-token.lifespan.seconds",
             {"value": "300"}),
            ("POST", "/tenant/tenants", {"id": "x"}),
            ("GET", f"/tenant/tenants/{TENANT}/device-token-key", None)]:
        assert_json_error(bearer(srv, token, path, method, body), 403)


# ---------------------------------------------------------------- key and lifespan

def test_public_key_endpoint_needs_the_tenants_admin(srv, admin, other_admin):
    assert srv.call("GET", f"/tenant/tenants/{TENANT}/device-token-key").status == 401
    assert_json_error(srv.call("GET", f"/tenant/tenants/{TENANT}/device-token-key",
                               other_admin), 403)
    assert public_key(srv, ADMIN) == public_key(srv, admin)  # management admin may read it
    assert_json_error(srv.call("GET", "/tenant/tenants/nosuch/device-token-key", ADMIN), 404)
    pem = public_key(srv, admin)
    key = serialization.load_pem_public_key(pem.encode())
    assert key.curve.name == "secp256r1"


def test_private_key_never_leaves_the_store(srv, admin, certs, clients):
    request_token(connected_device(clients, srv, certs))
    db = srv.data / "certmq.db"
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    priv = private_key(srv)
    body = priv.split("-----")[2].strip().splitlines()[0]
    logs = srv.stdout() + srv.stderr()
    assert "PRIVATE KEY" not in logs and body not in logs


def test_lifespan_option_is_validated(srv, admin):
    path = "/tenant/options/oauth.internal/device-token.lifespan.seconds"
    for bad in ("299", "0", "-5", "abc", "600s", "", "1e3"):
        assert_json_error(srv.call("PUT", path, admin, {"value": bad}), 422)
    assert_json_error(srv.call("PUT", path, admin, {"value": 120}), 422)
    assert srv.call("GET", path, admin).status == 404  # nothing was stored
    r = srv.call("PUT", path, admin, {"value": "300"})
    assert r.status == 200, r
    assert r.json["value"] == "300"


def test_lifespan_option_sets_the_token_lifetime(srv, admin, other_admin, certs, clients):
    # tenant tok2 trusts the same CA in its own name, for device2 only after
    # tok1 stops trusting it; a fresh tenant keeps this test independent of
    # tok1's cached tokens.
    path = "/tenant/options/oauth.internal/device-token.lifespan.seconds"
    r = srv.call("PUT", path, other_admin, {"value": 900})
    assert r.status == 200, r
    r = srv.call("GET", path, other_admin)
    assert r.json["value"] == "900"
    fp = srv.call("GET", f"/tenant/tenants/{TENANT}/trusted-certificates", admin).json[
        "certificates"][0]["fingerprint"]
    assert srv.call("DELETE", f"/tenant/tenants/{TENANT}/trusted-certificates/{fp}",
                    admin).status == 204
    try:
        assert upload_ca(srv, OTHER, other_admin, certs.ca_pem, auto=True).status == 201
        token = request_token(connected_device(clients, srv, certs, "device2"))
        body = jwt.decode(token, public_key(srv, other_admin, OTHER), algorithms=["ES256"])
        assert body["ten"] == OTHER and body["sub"] == "device_device2"
        assert body["exp"] - body["iat"] == 900
    finally:
        assert srv.call("DELETE", f"/tenant/tenants/{OTHER}/trusted-certificates/{fp}",
                        other_admin).status == 204
        assert upload_ca(srv, TENANT, admin, certs.ca_pem, auto=True).status == 201
