# The README's walkthrough, run as written: after the quick start's lines
# (test_pki_broker.ZERO_TO_DEVICE, checked here to be the README's), every
# `sh` block of the sections "Device tokens", "Proof of possession" and
# "REST API" runs in order in one shell, so a block that uses a file or a
# variable no earlier step made fails here. Only the ports and the binary's
# path are substituted.
import os
import re
import signal
import subprocess

import pytest

from conftest import CERTMQ_BIN, SANITIZER_MARKERS, terminate
from test_pki_broker import ZERO_TO_DEVICE, _start_like_make_run

README = (os.path.join(os.path.dirname(__file__), "..", "..", "README.md"))
SECTIONS = ["Device tokens", "Proof of possession", "REST API"]

pytestmark = pytest.mark.certmq_only


def readme_sections():
    text = open(README).read()
    parts = re.split(r"^## ", text, flags=re.M)
    return {p.split("\n", 1)[0].strip(): p for p in parts[1:]}


def sh_blocks(section):
    return re.findall(r"^```sh\n(.*?)^```", section, flags=re.M | re.S)


def test_quick_start_lines_are_the_readmes():
    blocks = sh_blocks(readme_sections()["From zero to a connected device"])
    lines = [ln for b in blocks for ln in b.splitlines()]
    for line in ZERO_TO_DEVICE:
        assert line in lines, f"not in the README's quick start: {line}"


def test_readme_rest_table_is_one_table():
    section = readme_sections()["REST API"]
    rows = re.findall(r"^\|.*\|$", section, flags=re.M)
    table = re.search(r"^\| method and path.*?(?=\n[^|])", section, flags=re.M | re.S).group(0)
    assert len(table.splitlines()) == len(rows), "the REST table is cut by a blank line"


def test_readme_walkthrough(tmp_path):
    sections = readme_sections()
    blocks = [b for name in SECTIONS for b in sh_blocks(sections[name])]
    assert len(blocks) >= 5
    proc, mqtt, http = _start_like_make_run(tmp_path)

    def sub(text):
        text = text.replace("./build/certmq", CERTMQ_BIN)
        text = text.replace("-p 8883", f"-p {mqtt}").replace('"localhost", 8883',
                                                             f'"localhost", {mqtt}')
        return text.replace("localhost:8080", f"localhost:{http}")

    env = dict(os.environ, PATH="/usr/bin:/bin:" + os.environ.get("PATH", ""))
    try:
        for line in ZERO_TO_DEVICE[1:4]:
            r = subprocess.run(["bash", "-c", sub(line)], cwd=tmp_path, capture_output=True,
                               text=True, timeout=60, env=env)
            assert r.returncode == 0, f"{line}\n{r.stdout}{r.stderr}"
        script = "set -euo pipefail\n" + "".join(
            f"echo '=== block {i}'\n{sub(b)}\n" for i, b in enumerate(blocks))
        r = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True,
                           text=True, timeout=120, env=env)
        assert r.returncode == 0, f"{r.stdout}\n{r.stderr}"
    finally:
        rc = terminate(proc)
    text = r.stdout.replace(" ", "")
    # tokens: the bearer call is sensor-1's device user, the key checks the JWT
    assert '"userName":"device_sensor-1"' in text, r.stdout
    assert "'sub':'device_sensor-1'" in text and "'ten':'management'" in text, r.stdout
    # proof of possession
    assert '"proofOfPossessionValid":true' in text, r.stdout
    # the REST session's device registered on its first connect
    assert "device_dev-1" in r.stdout.split(f"=== block {len(blocks) - 1}")[1], r.stdout
    err = (tmp_path / "broker.err").read_text(errors="replace")
    assert "eyJ" not in err  # tokens are never logged
    assert rc == 0, err[-3000:]
    for marker in SANITIZER_MARKERS:
        assert marker not in err, err[-5000:]


def deps_packages(*groups):
    text = open(os.path.join(os.path.dirname(README), "scripts", "deps.sh")).read()
    pkgs = set()
    for g in groups:
        m = re.search(rf"^{g}=\((.*?)\)", text, flags=re.M | re.S)
        assert m, f"no {g}=(...) in deps.sh"
        pkgs |= set(m.group(1).split())
    return pkgs


def package_of(path):
    real = os.path.realpath(path)
    for p in (path, real, real.replace("/usr/bin/", "/bin/"), path.replace("/usr/bin/", "/bin/")):
        r = subprocess.run(["dpkg", "-S", p], capture_output=True, text=True)
        if r.returncode == 0:
            return r.stdout.split(":", 1)[0].split(",")[0].strip()
    return None


def with_dependencies(pkgs, depth=2):
    """pkgs and what they depend on (installed packages, `depth` levels)."""
    out, frontier = set(pkgs), set(pkgs)
    for _ in range(depth):
        r = subprocess.run(["dpkg-query", "-W", "-f=${Depends}, ${Pre-Depends}\n",
                            *sorted(frontier)], capture_output=True, text=True)
        found = {re.split(r"[\s:(]", alt.strip())[0]
                 for dep in r.stdout.replace("\n", ",").split(",") for alt in dep.split("|")
                 if alt.strip()}
        frontier = found - out
        out |= found
    return out


def essential(pkg):
    r = subprocess.run(["dpkg-query", "-W", "-f=${Essential}", pkg], capture_output=True,
                       text=True)
    return r.stdout.strip() == "yes"


def test_make_run_installs_what_the_walkthrough_uses():
    """Every program the walkthrough's sh blocks run (and the Python modules
    they import) comes from a package `make run` installs (deps.sh build, run
    and walk lists) or from an Essential one."""
    import shutil
    sections = readme_sections()
    names = ["From zero to a connected device"] + SECTIONS
    text = "\n".join(b for n in names for b in sh_blocks(sections[n]))
    heredocs = re.findall(r"<<'EOF'\n(.*?)^EOF", text, flags=re.M | re.S)
    text = re.sub(r"<<'EOF'\n.*?^EOF", "", text, flags=re.M | re.S)
    allowed = with_dependencies(deps_packages("build", "run", "walk"))
    words = set(re.findall(r"(?:^|[|(;&]|\$\()\s*([a-z][\w.-]*)", text, flags=re.M))
    checked = []
    for w in sorted(words):
        path = shutil.which(w, path="/usr/bin:/bin")
        if not path:
            continue
        pkg = package_of(path)
        assert pkg, f"{w}: no package owns {path}"
        assert pkg in allowed or essential(pkg), f"{w} ({pkg}) is not installed by make run"
        checked.append(w)
    assert {"curl", "mosquitto_pub", "mosquitto_sub", "openssl", "python3"} <= set(checked)
    modules = set(re.findall(r"^import ([\w.]+)", "\n".join(heredocs), flags=re.M))
    modules |= set(re.findall(r"import ([\w.]+)", text))
    for mod in sorted(modules):
        top = mod.split(".")[0]
        spec = subprocess.run(["/usr/bin/python3", "-c",
                               f"import {top}, os; print(os.path.dirname({top}.__file__) "
                               f"if hasattr({top}, '__file__') and {top}.__file__ else '')"],
                              capture_output=True, text=True).stdout.strip()
        if not spec or "/usr/lib/python3." in spec and "dist-packages" not in spec:
            continue  # the standard library
        r = subprocess.run(["dpkg", "-S", spec], capture_output=True, text=True)
        assert r.returncode == 0, f"python module {mod}: {spec} not from a package"
        pkg = r.stdout.split(":", 1)[0].split(",")[0].strip()
        assert pkg in allowed, f"python module {mod} ({pkg}) is not installed by make run"
