# The web console's files (issue 11): served at / and /console/<file> from
# console_dir on the HTTP listener, with a Content-Security-Policy that allows
# no inline script, X-Frame-Options DENY and nosniff; nothing outside the
# directory is reachable; the console's own calls (X-Requested-With) get no
# browser login box on 401. curl only; test_console_browser.py drives it.
import re
import shutil
from pathlib import Path

import pytest

from apiserver import ADMIN, ApiServer

WEB = Path(__file__).resolve().parents[2] / "web"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    d = tmp_path_factory.mktemp("console-static")
    web = d / "web"
    shutil.copytree(WEB, web)
    (d / "secret.txt").write_text("outside the console directory\n")
    s = ApiServer(d / "srv", options={"console_dir": str(web)}).start()
    yield s
    s.stop()


def test_index_is_served_with_security_headers(server):
    r = server.call("GET", "/")
    assert r.status == 200, r
    assert r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["x-content-type-options"] == "nosniff"
    html = r.body.decode()
    # No inline script: every <script> has a src on this origin.
    for tag in re.findall(r"<script[^>]*>", html):
        assert re.search(r'src="/console/[\w.-]+"', tag), tag
    assert not re.search(r"<script[^>]*>\s*[^<\s]", html), "inline script"
    assert " on" + "click=" not in html and "style=" not in html


def test_assets_have_their_types(server):
    js = server.call("GET", "/console/console.js")
    assert js.status == 200 and js.headers["content-type"].startswith("text/javascript")
    assert b"localStorage" not in js.body and b"sessionStorage" not in js.body
    css = server.call("GET", "/console/console.css")
    assert css.status == 200 and css.headers["content-type"].startswith("text/css")


@pytest.mark.parametrize("path", ["/console/..%2Fsecret.txt", "/console/../secret.txt",
                                  "/console/.hidden", "/console/nosuch.js", "/console/a/b.js",
                                  "/secret.txt"])
def test_nothing_outside_the_directory(server, path):
    r = server.call("GET", path)
    assert r.status == 404, r
    assert b"outside the console" not in r.body


def test_api_still_answers_and_console_calls_get_no_login_box(server):
    assert server.call("GET", "/user/currentUser", ADMIN).status == 200
    r = server.call("GET", "/user/currentUser")
    assert r.status == 401 and "www-authenticate" in r.headers
    r = server.call("GET", "/user/currentUser", headers={"X-Requested-With": "certmq-console"})
    assert r.status == 401 and "www-authenticate" not in r.headers
    assert server.call("POST", "/").status == 404
