# REST API: device registration. Bulk CSV upload (multipart "file"; ',' ';'
# or tab; header row with ID and AUTH_TYPE) with counts and a reason per
# failed row, device users visible in the users list, roles, the refusal of
# single registration for certificate devices, one transaction per upload
# (a SIGKILL mid-upload leaves all or nothing), and the 100,000-row benchmark.
import subprocess
import time

import pytest

from apiserver import ADMIN, ApiServer, assert_json_error, make_tenant

BULK = "/devicecontrol/bulkNewDeviceRequests"


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    s = ApiServer(tmp_path_factory.mktemp("api-reg")).start()
    yield s
    s.stop()


def user_names(api, tenant, auth):
    r = api.call("GET", f"/user/{tenant}/users?pageSize=2000", auth)
    assert r.status == 200, r
    return {u["userName"]: u for u in r.json["users"]}


def user_count(api, tenant, auth):
    r = api.call("GET", f"/user/{tenant}/users?pageSize=1", auth)
    assert r.status == 200, r
    return r.json["statistics"]["totalPages"]


@pytest.mark.parametrize("sep", [",", ";", "\t"])
def test_bulk_registration_with_each_separator(api, tmp_path, sep):
    tenant = {",": "comma", ";": "semi", "\t": "tab"}[sep]
    auth = make_tenant(api, tenant)
    rows = [["ID", "CREDENTIALS", "AUTH_TYPE", "TYPE", "NAME", "com_location"],
            ["d1", "", "CERTIFICATES", "thermo", "Device 1", "hall"],
            ["d2", "", "CERTIFICATES", "", "", ""]]
    f = tmp_path / "devices.csv"
    f.write_text("\n".join(sep.join(r) for r in rows) + "\n")
    r = api.call("POST", BULK, auth, files={"file": f})
    assert r.status == 201, r
    b = r.json
    assert (b["numberOfAll"], b["numberOfCreated"], b["numberOfFailed"],
            b["numberOfSuccessful"]) == (2, 2, 0, 2)
    assert b["failedCreationList"] == [] and b["credentialUpdatedList"] == []
    users = user_names(api, tenant, auth)
    assert "device_d1" in users and "device_d2" in users
    assert users["device_d1"]["deviceUser"] is True


def test_bulk_rows_fail_with_reasons_and_valid_rows_register(api, tmp_path):
    auth = make_tenant(api, "mixed")
    f = tmp_path / "mixed.csv"
    f.write_text("ID;CREDENTIALS;AUTH_TYPE\n"
                 "ok1;;CERTIFICATES\n"
                 "ok1;;CERTIFICATES\n"
                 "a:b;;CERTIFICATES\n"
                 "pw1;secret;CERTIFICATES\n"
                 ";;CERTIFICATES\n"
                 "x1;;TOKEN\n"
                 "ok2;;certificates\n")
    r = api.call("POST", BULK, auth, files={"file": f})
    assert r.status == 201, r
    b = r.json
    assert (b["numberOfAll"], b["numberOfCreated"], b["numberOfFailed"]) == (7, 2, 5)
    reasons = {(x["deviceId"], x["line"]): x["failureReason"] for x in b["failedCreationList"]}
    assert "Duplicate" in reasons[("ok1", 3)]
    assert "common name" in reasons[("a:b", 4)]
    assert "CREDENTIALS must be empty" in reasons[("pw1", 5)]
    assert "Missing ID" in reasons[("", 6)]
    assert "AUTH_TYPE" in reasons[("x1", 7)]
    # Uploading again: every row is now already registered.
    again = api.call("POST", BULK, auth, files={"file": f}).json
    assert again["numberOfCreated"] == 0
    assert any("already registered" in x["failureReason"] for x in again["failedCreationList"])


def test_bulk_rows_with_invalid_text_fail_and_store_nothing(api, tmp_path):
    auth = make_tenant(api, "badtext")
    f = tmp_path / "badtext.csv"
    f.write_bytes(b"ID;AUTH_TYPE;NAME;com_note\n"
                  b"bad\xff;CERTIFICATES;;\n"                # invalid UTF-8 in the ID
                  b"\xc0\xafetc;CERTIFICATES;;\n"            # overlong '/'
                  b"\"nl\nid\";CERTIFICATES;;\n"             # newline in a quoted ID
                  b"esc1;CERTIFICATES;\x1b[2J;\n"            # escape in NAME
                  b"c1ctl;CERTIFICATES;;x\xc2\x85y\n"         # C1 control in a property
                  b"badprop;CERTIFICATES;;\xfe\n"             # invalid UTF-8 in a property
                  b"caf\xc3\xa9;CERTIFICATES;Caf\xc3\xa9 1;hall\n")  # valid UTF-8: fine
    r = api.call("POST", BULK, auth, files={"file": f})
    assert r.status == 201, r
    b = r.json
    assert (b["numberOfAll"], b["numberOfCreated"], b["numberOfFailed"]) == (7, 1, 6), b
    reasons = {x["line"]: (x["deviceId"], x["failureReason"]) for x in b["failedCreationList"]}
    assert reasons[2] == ("bad\\xff", "ID is not valid UTF-8 text or holds a control character")
    assert reasons[3][0] == "\\xc0\\xafetc" and reasons[3][1].startswith("ID ")
    assert reasons[4] == ("nl\nid", "ID is not valid UTF-8 text or holds a control character")
    for line in (6, 7, 8):
        assert "A field is not valid UTF-8" in reasons[line][1], reasons
    # Nothing of the bad rows was stored; the page of users answers 200.
    users = user_names(api, "badtext", auth)
    assert set(users) == {"admin", "device_caf\u00e9"}, users
    # A header with a bad column name refuses the whole file.
    f.write_bytes(b"ID;AUTH_TYPE;com_\xff\nh1;CERTIFICATES;x\n")
    r = api.call("POST", BULK, auth, files={"file": f})
    assert_json_error(r, 422)
    assert "header" in r.json["message"], r
    assert "device_h1" not in user_names(api, "badtext", auth)


def test_bulk_needs_id_and_auth_type_columns_and_valid_csv(api, tmp_path):
    auth = make_tenant(api, "badcsv")
    f = tmp_path / "noauth.csv"
    f.write_text("ID,NAME\nd1,x\n")
    assert_json_error(api.call("POST", BULK, auth, files={"file": f}), 422)
    f.write_text('ID,AUTH_TYPE\n"unterminated,CERTIFICATES\n')
    assert_json_error(api.call("POST", BULK, auth, files={"file": f}), 422)
    assert user_count(api, "badcsv", auth) == 1  # just the admin


def test_bulk_roles(api, tmp_path):
    auth = make_tenant(api, "bulkroles")
    for name, roles in (("plain", []), ("devctl", ["ROLE_DEVICE_CONTROL_ADMIN"])):
        r = api.call("POST", "/user/bulkroles/users", auth,
                     {"userName": name, "password": "password-1", "roles": roles})
        assert r.status == 201, r
    f = tmp_path / "r.csv"
    f.write_text("ID,AUTH_TYPE\nrole1,CERTIFICATES\n")
    assert_json_error(api.call("POST", BULK, ("bulkroles/plain", "password-1"),
                               files={"file": f}), 403)
    r = api.call("POST", BULK, ("bulkroles/devctl", "password-1"), files={"file": f})
    assert r.status == 201 and r.json["numberOfCreated"] == 1, r
    assert_json_error(api.call("POST", BULK, None, files={"file": f}), 401)


def test_single_registration_of_a_certificate_device_is_refused(api):
    auth = make_tenant(api, "single")
    r = api.call("POST", "/devicecontrol/newDeviceRequests", auth,
                 {"id": "dev1", "authType": "CERTIFICATES"})
    assert_json_error(r, 422)
    assert "certificates" in r.json["message"].lower()
    assert "bulk" in r.json["message"].lower()
    assert "device_dev1" not in user_names(api, "single", auth)


def wal_size(server):
    try:
        return (server.data / "certmq.db-wal").stat().st_size
    except FileNotFoundError:
        return 0


def big_csv(path, n, prefix="dev"):
    with open(path, "w") as f:
        f.write("ID;CREDENTIALS;AUTH_TYPE;TYPE;NAME\n")
        for i in range(n):
            f.write(f"{prefix}{i:06d};;CERTIFICATES;c8y_Device;Device {i}\n")


def test_crash_mid_upload_leaves_all_or_nothing(tmp_path):
    s = ApiServer(tmp_path / "crash").start()
    try:
        auth = make_tenant(s, "crash")
        n = 60000
        f = tmp_path / "big.csv"
        big_csv(f, n)
        base = wal_size(s)
        curl = subprocess.Popen(["curl", "-s", "-u", f"{auth[0]}:{auth[1]}", "-F", f"file=@{f}",
                                 s.base + BULK], stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        # Kill as soon as the upload is being written to the database.
        while wal_size(s) < base + 256 * 1024 and time.monotonic() < deadline:
            time.sleep(0.002)
        s.kill()
        curl.wait(timeout=30)
        s.start()
        count = user_count(s, "crash", auth) - 1
        print(f"crash mid-upload: {count} of {n} devices after restart")
        assert count in (0, n), f"{count} of {n} devices survived a crash"
    finally:
        s.stop()


def test_100000_rows_in_one_upload(api, tmp_path):
    # Correctness at size; how fast it goes is bench/bulk_register.sh's job.
    auth = make_tenant(api, "bench")
    f = tmp_path / "bench.csv"
    big_csv(f, 100000)
    r = api.call("POST", BULK, auth, files={"file": f}, timeout=120)
    assert r.status == 201, r
    assert r.json["numberOfCreated"] == 100000
    assert user_count(api, "bench", auth) == 100001
