# REST API: first-start bootstrap of the management tenant, HTTP Basic
# authentication as <tenantId>/<user>, roles (401 without or with wrong
# credentials, 403 for the wrong tenant or role), tenant creation, users.
import os
import stat
import time

import pytest

from apiserver import ADMIN, ADMIN_PASSWORD, ApiServer, assert_json_error, make_tenant


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    s = ApiServer(tmp_path_factory.mktemp("api-auth")).start()
    yield s
    s.stop()


def test_generated_admin_password_is_stored_0600_and_never_printed(tmp_path):
    s = ApiServer(tmp_path / "gen", env={}).start()
    try:
        pw_file = s.data / "admin-password"
        password = pw_file.read_text().strip()
        assert len(password) >= 16
        assert stat.S_IMODE(os.stat(pw_file).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(s.data / "certmq.db").st_mode) & 0o077 == 0
        assert password not in s.stdout() + s.stderr()
        assert str(pw_file) in s.stdout() or "admin-password" in s.stdout(), s.stdout()
        assert s.call("GET", "/user/currentUser", ("management/admin", password)).status == 200
    finally:
        s.stop()
    # Second start: same data dir, nothing printed, the password still works.
    s.start()
    try:
        assert password not in s.stdout()
        assert s.call("GET", "/user/currentUser", ("management/admin", password)).status == 200
    finally:
        s.stop()


def test_admin_password_from_environment(api):
    r = api.call("GET", "/user/currentUser", ADMIN)
    assert r.status == 200, r
    user = r.json
    assert user["userName"] == "admin"
    roles = {x["id"] for x in user["effectiveRoles"]}
    assert {"ROLE_TENANT_ADMIN", "ROLE_TENANT_MANAGEMENT_ADMIN"} <= roles
    assert not (api.data / "admin-password").exists()
    assert ADMIN_PASSWORD not in api.stdout() + api.stderr()


def test_missing_or_wrong_credentials_are_401(api):
    r = api.call("GET", "/user/currentUser")
    assert_json_error(r, 401)
    assert "basic" in r.headers.get("www-authenticate", "").lower()
    assert_json_error(api.call("GET", "/user/currentUser", ("management/admin", "wrong")), 401)
    assert_json_error(api.call("GET", "/user/currentUser", ("admin", ADMIN_PASSWORD)), 401)
    assert_json_error(api.call("GET", "/user/currentUser", ("other/admin", ADMIN_PASSWORD)), 401)
    assert_json_error(api.call("GET", "/user/currentUser",
                               headers={"Authorization": "Basic !!!"}), 401)


def test_create_tenant_and_log_in_as_its_admin(api):
    auth = make_tenant(api, "acme", admin="boss", password="boss-secret-1")
    me = api.call("GET", "/user/currentUser", auth)
    assert me.status == 200 and me.json["userName"] == "boss"
    roles = {x["id"] for x in me.json["effectiveRoles"]}
    assert "ROLE_TENANT_ADMIN" in roles and "ROLE_TENANT_MANAGEMENT_ADMIN" not in roles
    t = api.call("GET", "/tenant/tenants/acme", auth)
    assert t.status == 200 and t.json["id"] == "acme"
    # Taken id: 409; a tenant admin cannot create or list tenants: 403.
    r = api.call("POST", "/tenant/tenants", ADMIN,
                 {"id": "acme", "adminName": "x", "adminPass": "password-1"})
    assert_json_error(r, 409)
    assert_json_error(api.call("POST", "/tenant/tenants", auth,
                               {"id": "evil", "adminName": "x", "adminPass": "password-1"}), 403)
    assert_json_error(api.call("GET", "/tenant/tenants", auth), 403)
    assert_json_error(api.call("GET", "/tenant/tenants/management", auth), 403)
    ids = [x["id"] for x in api.call("GET", "/tenant/tenants?pageSize=100", ADMIN).json["tenants"]]
    assert "management" in ids and "acme" in ids


def test_generated_tenant_id_and_validation(api):
    r = api.call("POST", "/tenant/tenants", ADMIN,
                 {"domain": "gen.example", "adminName": "a", "adminPass": "password-1"})
    assert r.status == 201, r
    assert r.json["id"].startswith("t")
    assert_json_error(api.call("POST", "/tenant/tenants", ADMIN,
                               {"id": "bad/id", "adminName": "a", "adminPass": "password-1"}), 422)
    assert_json_error(api.call("POST", "/tenant/tenants", ADMIN,
                               {"id": "short", "adminName": "a", "adminPass": "123"}), 422)
    assert_json_error(api.call("POST", "/tenant/tenants", ADMIN, data=b"{not json"), 400)


def test_text_fields_with_control_characters_are_refused(api):
    r = api.call("POST", "/tenant/tenants", ADMIN,
                 {"id": "ctl1", "company": "ACME\nINFO forged", "adminName": "a",
                  "adminPass": "password-1"})
    assert_json_error(r, 422)
    assert "control characters" in r.json["message"], r
    assert_json_error(api.call("GET", "/tenant/tenants/ctl1", ADMIN), 404)  # nothing stored
    auth = make_tenant(api, "ctl2")
    r = api.call("POST", "/user/ctl2/users", auth,
                 {"userName": "eve", "password": "password-1", "email": "e@x\u0085"})
    assert_json_error(r, 422)
    assert_json_error(api.call("GET", "/user/ctl2/users/eve", auth), 404)


def test_users_of_a_tenant_and_roles(api):
    auth = make_tenant(api, "roles1")
    other = make_tenant(api, "roles2")
    r = api.call("POST", "/user/roles1/users", auth,
                 {"userName": "viewer", "password": "viewer-secret", "email": "v@example"})
    assert r.status == 201, r
    viewer = ("roles1/viewer", "viewer-secret")
    # A user without admin roles sees itself but not the tenant's users: 403.
    assert api.call("GET", "/user/currentUser", viewer).json["userName"] == "viewer"
    assert_json_error(api.call("GET", "/user/roles1/users", viewer), 403)
    assert_json_error(api.call("GET", "/tenant/options", viewer), 403)
    # An admin of another tenant: 403; the management admin: allowed.
    assert_json_error(api.call("GET", "/user/roles1/users", other), 403)
    listing = api.call("GET", "/user/roles1/users", ADMIN)
    assert sorted(u["userName"] for u in listing.json["users"]) == ["admin", "viewer"]
    # Only the management admin grants ROLE_TENANT_MANAGEMENT_ADMIN, and only there.
    assert_json_error(api.call("POST", "/user/roles1/users", auth,
                               {"userName": "sneaky", "password": "password-1",
                                "roles": ["ROLE_TENANT_MANAGEMENT_ADMIN"]}), 403)
    assert_json_error(api.call("POST", "/user/roles1/users", auth,
                               {"userName": "viewer", "password": "password-1"}), 409)


def test_repeated_basic_auth_is_fast(api):
    auth = make_tenant(api, "fast1")
    api.call("GET", "/user/currentUser", auth)
    start = time.monotonic()
    for _ in range(20):
        assert api.call("GET", "/user/currentUser", auth).status == 200
    per_request = (time.monotonic() - start) / 20
    assert per_request < 0.25, per_request


def test_unknown_route_and_method(api):
    assert_json_error(api.call("GET", "/nothing/here", ADMIN), 404)
    assert_json_error(api.call("PATCH", "/tenant/options", ADMIN), 405)


def test_request_body_over_the_configured_limit_is_413(tmp_path):
    s = ApiServer(tmp_path / "small", options={"http_max_body": "2048"}).start()
    try:
        assert_json_error(s.call("POST", "/tenant/tenants", ADMIN, data=b"x" * 5000), 413)
        # Under the limit the same route answers normally.
        r = s.call("POST", "/tenant/tenants", ADMIN,
                   {"id": "fits", "adminName": "a", "adminPass": "password-1"})
        assert r.status == 201, r
    finally:
        s.stop()
