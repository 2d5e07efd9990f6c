# docs/openapi.yaml lists exactly the routes the API implements: the route
# table in src/api/http.c and the document's paths must agree, and every
# documented route must be routed by the running server (never "No such
# resource" or 405), whatever its handler then answers.
import re
from pathlib import Path

import pytest

from apiserver import ADMIN, ApiServer

REPO = Path(__file__).resolve().parents[2]


def implemented_routes():
    text = (REPO / "src" / "api" / "http.c").read_text()
    table = text[text.index("static const struct route routes[]"):]
    table = table[:table.index("};")]
    found = re.findall(r'\{\s*"(GET|POST|PUT|DELETE)",\s*"(/[^"]*)"', table)
    assert len(found) >= 20
    return {(m, p) for m, p in found}


def documented_routes():
    routes, path = set(), None
    for line in (REPO / "docs" / "openapi.yaml").read_text().splitlines():
        m = re.match(r"^  (/\S*):\s*$", line)
        if m:
            path = m.group(1)
            continue
        if line and not line.startswith("  "):
            path = None
        m = re.match(r"^    (get|post|put|delete):", line)
        if path and m:
            routes.add((m.group(1).upper(), path))
    return routes


def test_every_implemented_route_is_documented_and_vice_versa():
    impl, doc = implemented_routes(), documented_routes()
    assert impl - doc == set(), f"implemented but not in docs/openapi.yaml: {impl - doc}"
    assert doc - impl == set(), f"documented but not implemented: {doc - impl}"


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    s = ApiServer(tmp_path_factory.mktemp("api-openapi")).start()
    yield s
    s.stop()


def test_every_documented_route_is_routed(api):
    for method, path in sorted(documented_routes()):
        concrete = re.sub(r"\{fingerprint\}", "0" * 40, path)
        concrete = re.sub(r"\{[^}]+\}", "management", concrete)
        r = api.call(method, concrete, ADMIN, json_body={} if method in ("POST", "PUT") else None)
        assert r.status != 405, (method, path, r)
        if r.status == 404:
            assert r.json["message"] != "No such resource", (method, path, r)
