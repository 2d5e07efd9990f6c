# REST Basic auth checks passwords off the HTTP threads, with the failure
# limits MQTT logins have: a request whose password needs a PBKDF2 is parked
# (its connection suspended) while a small pool checks it, so other requests
# are served meanwhile; past auth_max_failures a user or source gets 429.
import base64
import http.client
import threading
import time

import pytest

from apiserver import ADMIN, ApiServer, make_tenant


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    s = ApiServer(tmp_path_factory.mktemp("api-pw"),
                  options={"http_threads": "1", "auth_threads": "1", "auth_max_failures": "4",
                           "auth_failure_window": "3600"}).start()
    yield s
    s.stop()


def get(api, path, auth, source="127.0.0.1"):
    """(status, seconds) of one GET with Basic auth from source."""
    c = http.client.HTTPConnection("127.0.0.1", api.port, timeout=30,
                                   source_address=(source, 0))
    token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    t0 = time.monotonic()
    c.request("GET", path, headers={"Authorization": f"Basic {token}"})
    r = c.getresponse()
    r.read()
    c.close()
    return r.status, time.monotonic() - t0


def test_failures_lock_the_user_with_429_then_others_still_log_in(api):
    auth = make_tenant(api, "pwlock")
    for i in range(4):
        assert get(api, "/tenant/tenants/pwlock", (auth[0], f"wrong-{i}"),
                   source=f"127.0.4.{i + 1}")[0] == 401
    assert get(api, "/tenant/tenants/pwlock", auth, source="127.0.4.99")[0] == 429
    other = make_tenant(api, "pwlock2")
    assert get(api, "/tenant/tenants/pwlock2", other, source="127.0.4.99")[0] == 200


def test_password_checks_do_not_hold_up_other_requests(api):
    """One HTTP thread, one check thread: six uncached wrong passwords are
    queued for ~0.5 s of PBKDF2; a request with a cached password sent after
    them is answered first."""
    assert get(api, "/tenant/tenants", ADMIN)[0] == 200  # now cached
    done = {}

    def wrong(i):
        done[i] = (get(api, "/tenant/tenants", (f"management/nobody{i}", "x"),
                       source=f"127.0.5.{i + 1}")[0], time.monotonic())

    threads = [threading.Thread(target=wrong, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    time.sleep(0.05)  # let them reach the server first
    status, _ = get(api, "/tenant/tenants", ADMIN)
    answered = time.monotonic()
    for t in threads:
        t.join(30)
    assert status == 200
    assert sorted(s for s, _ in done.values()) == [401] * 6
    assert answered < max(t for _, t in done.values()), (answered, done)
