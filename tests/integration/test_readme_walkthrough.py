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

from conftest import CERTMQ_BIN, SANITIZER_MARKERS
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
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
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
