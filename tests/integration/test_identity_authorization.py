# Tenant topic authorization over REST: ordered rules (first match wins) with
# %c %u %t placeholders, subjects by user, device, role or everyone, named
# roles assigned to users, the tenant's default (option authorization /
# acl_default), live changes applied to connected clients, validation, and
# isolation between tenants. Real devices (mosquitto_pub, paho) over mutual TLS.
import pytest

from apiserver import ADMIN, assert_json_error
from identity_pki import pki, server_fixture  # noqa: F401

server = server_fixture("identity-authorization")

RULES = "/tenant/tenants/authz/authorization-rules"


def rule(effect, action, topic, stype, name=None, **extra):
    subject = {"type": stype}
    if name:
        subject["name"] = name
    return {"effect": effect, "action": action, "topic": topic, "subject": subject, **extra}


@pytest.fixture(scope="module")
def tenant(server, pki):
    admin = server.tenant("authz")
    server.trust("authz", admin, pki.ca_a.pem, auto=True)
    dash = server.user("authz", admin, "dash", "dash-secret-1")
    plain = server.user("authz", admin, "plain", "plain-secret-1")
    r = server.call("PUT", "/user/authz/users/dash/authorization-roles", admin,
                    {"roles": ["dashboard"]})
    assert r.status == 200 and r.json["roles"] == ["dashboard"], r
    for body in (rule("ALLOW", "ALL", "s/#", "EVERYONE"),
                 rule("ALLOW", "PUBLISH", "telemetry/%u/#", "ROLE", "ROLE_DEVICE"),
                 rule("DENY", "SUBSCRIBE", "telemetry/a1/secret", "ROLE", "dashboard"),
                 rule("ALLOW", "SUBSCRIBE", "telemetry/#", "ROLE", "dashboard"),
                 rule("ALLOW", "ALL", "clients/%c/#", "EVERYONE"),
                 rule("ALLOW", "SUBSCRIBE", "news/%t", "USER", "plain"),
                 rule("ALLOW", "ALL", "shared/#", "DEVICE", "a2")):
        r = server.call("POST", RULES, admin, body)
        assert r.status == 201, r
    r = server.call("PUT", "/tenant/options/authorization/acl_default", admin, {"value": "deny"})
    assert r.status == 200, r
    return {"admin": admin, "dash": dash, "plain": plain}


def online(server, clients, dev):
    c = server.connect_device(clients, dev)
    c.publish("s/us", f"100,{dev.cn}", qos=1)
    return c


def test_rules_are_listed_in_order_with_ids(server, tenant):
    r = server.call("GET", RULES, tenant["admin"])
    assert r.status == 200, r
    rules = r.json["rules"]
    assert [x["topic"] for x in rules][:4] == ["s/#", "telemetry/%u/#", "telemetry/a1/secret",
                                               "telemetry/#"]
    assert rules[2] == {"id": rules[2]["id"], "effect": "DENY", "action": "SUBSCRIBE",
                        "topic": "telemetry/a1/secret",
                        "subject": {"type": "ROLE", "name": "dashboard"}}
    assert len({x["id"] for x in rules}) == len(rules)


def test_device_publishes_only_under_its_own_name(server, pki, tenant, clients):
    dash = server.password_client(clients, tenant["dash"], "dash-1")
    dash.connect(server.mqtt_port, host="localhost")
    assert dash.subscribe("telemetry/#", 1) == (1,)
    a1 = online(server, clients, pki.a1)
    a1.publish("telemetry/a1/temp", "21", qos=1)
    a1.publish("telemetry/a2/temp", "forged", qos=1)   # %u is a1: dropped
    assert [(m.topic, m.payload) for m in dash.drain()] == [("telemetry/a1/temp", b"21")]
    # mosquitto_pub as a2: its own name is allowed.
    assert server.mosquitto_pub(pki.a2, "telemetry/a2/hum", "40").returncode == 0
    assert dash.get_on("telemetry/a2/hum").payload == b"40"


def test_deny_before_a_later_allow_wins(server, tenant, clients):
    dash = server.password_client(clients, tenant["dash"], "dash-2")
    dash.connect(server.mqtt_port, host="localhost")
    assert dash.subscribe("telemetry/a1/secret", 1) == (0x80,)
    assert dash.subscribe("telemetry/a1/temp", 1) == (1,)


def test_default_deny_and_subjects(server, pki, tenant, clients):
    plain = server.password_client(clients, tenant["plain"], "plain-1")
    plain.connect(server.mqtt_port, host="localhost")
    assert plain.subscribe("telemetry/#", 1) == (0x80,)   # no role: the default
    assert plain.subscribe("news/authz", 1) == (1,)       # %t, subject USER
    assert plain.subscribe("news/other", 1) == (0x80,)
    assert plain.subscribe("clients/plain-1/#", 1) == (1,)  # %c
    assert plain.subscribe("clients/plain-2/#", 1) == (0x80,)
    a2 = online(server, clients, pki.a2)
    assert a2.subscribe("shared/x", 1) == (1,)            # subject DEVICE a2
    a1 = online(server, clients, pki.a1)
    assert a1.subscribe("shared/x", 1) == (0x80,)


def test_validation_errors_are_422_and_change_nothing(server, tenant):
    before = server.call("GET", RULES, tenant["admin"]).json["rules"]
    bad = [rule("ALLOW", "ALL", "a/#/b", "EVERYONE"),
           rule("MAYBE", "ALL", "a", "EVERYONE"),
           rule("ALLOW", "READ", "a", "EVERYONE"),
           rule("ALLOW", "ALL", "a", "USER"),
           rule("ALLOW", "ALL", "a", "ROLE", "no spaces allowed"),
           rule("ALLOW", "ALL", "a", "GROUP", "x"),
           {"effect": "ALLOW"}]
    for body in bad:
        assert_json_error(server.call("POST", RULES, tenant["admin"], body), 422)
    r = server.call("PUT", "/user/authz/users/dash/authorization-roles", tenant["admin"],
                    {"roles": ["ROLE_TENANT_ADMIN"]})
    assert_json_error(r, 422)
    assert server.call("GET", RULES, tenant["admin"]).json["rules"] == before
    assert_json_error(server.call("DELETE", RULES + "/99999", tenant["admin"]), 404)
    assert_json_error(server.call("GET", "/user/authz/users/nobody/authorization-roles",
                                  tenant["admin"]), 404)


def test_other_tenants_cannot_read_or_write_the_rules(server, tenant):
    other = server.tenant("authz-other")
    assert_json_error(server.call("GET", RULES, other), 403)
    assert_json_error(server.call("POST", RULES, other, rule("ALLOW", "ALL", "#", "EVERYONE")),
                      403)
    assert_json_error(server.call("GET", RULES, tenant["dash"]), 403)
    # The other tenant has no rules: its clients are not affected by ours.
    r = server.call("GET", "/tenant/tenants/authz-other/authorization-rules", other)
    assert r.status == 200 and r.json["rules"] == []


def test_live_change_drops_subscriptions_no_longer_allowed(server, pki, tenant, clients):
    dash = server.password_client(clients, tenant["dash"], "dash-live")
    dash.connect(server.mqtt_port, host="localhost")
    assert dash.subscribe("telemetry/#", 1) == (1,)
    rules = server.call("GET", RULES, tenant["admin"]).json["rules"]
    grant = next(x for x in rules if x["topic"] == "telemetry/#")
    r = server.call("DELETE", f"{RULES}/{grant['id']}", tenant["admin"])
    assert r.status == 204, r
    try:
        assert server.mosquitto_pub(pki.a1, "telemetry/a1/temp", "22").returncode == 0
        assert dash.drain() == []
        assert dash.subscribe("telemetry/#", 1) == (0x80,)
    finally:
        body = {k: grant[k] for k in ("effect", "action", "topic", "subject")}
        r = server.call("POST", RULES, tenant["admin"], dict(body, position=3))
        assert r.status == 201, r
    assert dash.subscribe("telemetry/#", 1) == (1,)


def test_rules_and_roles_survive_a_restart(server, tenant):
    before = server.call("GET", RULES, tenant["admin"]).json["rules"]
    server.stop()
    server.start()
    assert server.call("GET", RULES, tenant["admin"]).json["rules"] == before
    r = server.call("GET", "/user/authz/users/dash/authorization-roles", tenant["admin"])
    assert r.json["roles"] == ["dashboard"]


def denied(server, action):
    r = server.call("GET", "/metrics", ADMIN)
    assert r.status == 200, r
    for line in r.body.decode().splitlines():
        if line.startswith(f'certmq_authorization_denied_total{{action="{action}"}}'):
            return int(line.split()[-1])
    raise AssertionError(f"no {action} line in /metrics")


def test_denials_are_counted_in_metrics(server, pki, tenant, clients):
    before = {a: denied(server, a) for a in ("publish", "subscribe")}
    plain = server.password_client(clients, tenant["plain"], "plain-metrics")
    plain.connect(server.mqtt_port, host="localhost")
    assert plain.subscribe("telemetry/#", 1) == (0x80,)
    plain.publish("telemetry/x", "not allowed", qos=1)
    assert denied(server, "subscribe") == before["subscribe"] + 1
    assert denied(server, "publish") == before["publish"] + 1
