# `make install` into a DESTDIR: the binary, certmq(1) and the example
# certmq.conf made from the option table (every option, with the default
# `serve --help` shows), the systemd unit (dedicated user, ProtectSystem=strict,
# NoNewPrivileges, reload on SIGHUP) and its sysusers entry; then the unit's
# own ExecStart and ExecReload lines run against the example config adapted to
# temporary paths, and the broker listens and reloads.
import os
import re
import shlex
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import time

import pytest

from conftest import CERTMQ_BIN, REPO, TIMEOUT, free_port, terminate

pytestmark = pytest.mark.certmq_only

FILES = {  # path under DESTDIR -> mode
    "usr/bin/certmq": 0o755,
    "usr/share/man/man1/certmq.1": 0o644,
    "usr/share/certmq/certmq.conf.example": 0o644,
    "etc/certmq/certmq.conf": 0o644,
    "usr/lib/systemd/system/certmq.service": 0o644,
    "usr/lib/sysusers.d/certmq.conf": 0o644,
}


@pytest.fixture(scope="module")
def dest(tmp_path_factory):
    d = tmp_path_factory.mktemp("destdir")
    r = subprocess.run(["make", "--no-print-directory", "-C", str(REPO), "install",
                        f"DESTDIR={d}", "PREFIX=/usr", f"CERTMQ={CERTMQ_BIN}"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return d


def help_options():
    """(name, default or None) for every option `certmq serve --help` lists."""
    out = subprocess.run([CERTMQ_BIN, "serve", "--help"], capture_output=True, text=True,
                         timeout=TIMEOUT).stdout
    table = out.split("Configuration file options", 1)[1]
    rows = re.findall(r"^\s+(\w+)\s+(.*)$", table, flags=re.M)
    assert len(rows) >= 20, table
    return [(name, (re.search(r"\(default ([^)]*)\)$", rest) or [None, None])[1])
            for name, rest in rows]


def test_files_and_modes(dest):
    for path, mode in FILES.items():
        p = dest / path
        assert p.is_file(), f"{path} not installed"
        assert stat.S_IMODE(p.stat().st_mode) == mode, f"{path}: {oct(p.stat().st_mode)}"
    r = subprocess.run([str(dest / "usr/bin/certmq"), "--version"], capture_output=True,
                       text=True, timeout=TIMEOUT)
    assert r.returncode == 0 and "certmq" in r.stdout


def test_an_existing_config_is_kept(dest):
    conf = dest / "etc/certmq/certmq.conf"
    conf.write_text(conf.read_text() + "# local change\n")
    r = subprocess.run(["make", "--no-print-directory", "-C", str(REPO), "install",
                        f"DESTDIR={dest}", "PREFIX=/usr", f"CERTMQ={CERTMQ_BIN}"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert conf.read_text().endswith("# local change\n")


def test_man_page_renders_and_lists_every_option(dest):
    page = dest / "usr/share/man/man1/certmq.1"
    r = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", str(page)],
                       capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 0 and not r.stderr.strip(), r.stderr
    r = subprocess.run(["man", "-l", str(page)], capture_output=True, text=True,
                       timeout=TIMEOUT, env=dict(os.environ, MANPAGER="cat", PAGER="cat",
                                                 MANWIDTH="100"))
    assert r.returncode == 0, r.stderr
    text = re.sub(r".\x08", "", r.stdout)
    assert "CERTMQ(1)" in text and "SIGHUP" in text
    for name, default in help_options():
        assert re.search(rf"^\s+{name}\b", text, flags=re.M), f"{name} not in certmq(1)"
        if default:
            assert f"Default: {default}." in re.sub(r"\s+", " ", text.split(name, 1)[1]), name


def test_example_config_has_every_option_with_its_default(dest):
    text = (dest / "usr/share/certmq/certmq.conf.example").read_text()
    assert (dest / "etc/certmq/certmq.conf").read_text().startswith(text)
    for name, default in help_options():
        m = re.search(rf"^#?{name} (.*)$", text, flags=re.M)
        assert m, f"{name} missing from the example config"
        if default and name != "data_dir":
            assert m.group(1) == default, (name, m.group(1), default)
    assert "data_dir /var/lib/certmq" in text.splitlines()


def test_unit_file_hardening(dest):
    unit = (dest / "usr/lib/systemd/system/certmq.service").read_text()
    keys = dict(re.findall(r"^(\w+)=(.*)$", unit, flags=re.M))
    assert keys["User"] == "certmq" and keys["Group"] == "certmq"
    assert keys["ProtectSystem"] == "strict"
    assert keys["NoNewPrivileges"] == "yes"
    assert "/var/lib/certmq" in keys["ReadWritePaths"].split()
    assert keys["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert keys["ExecStart"] == "/usr/bin/certmq serve --config /etc/certmq/certmq.conf"
    sysusers = (dest / "usr/lib/sysusers.d/certmq.conf").read_text()
    assert re.search(r"^u certmq - .* /var/lib/certmq$", sysusers, flags=re.M), sysusers
    if shutil.which("systemd-analyze"):
        local = dest / "certmq-verify.service"
        local.write_text(unit.replace("/usr/bin/certmq", str(dest / "usr/bin/certmq")))
        r = subprocess.run(["systemd-analyze", "verify", "--man=no", str(local)],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr


def test_unit_exec_start_listens_and_reloads(dest, tmp_path, certs):
    unit = (dest / "usr/lib/systemd/system/certmq.service").read_text()
    keys = dict(re.findall(r"^(\w+)=(.*)$", unit, flags=re.M))
    mqtt, http = free_port(), free_port()
    data = tmp_path / "state"
    data.mkdir(mode=0o700)  # StateDirectory= makes it, mode StateDirectoryMode=
    conf = tmp_path / "certmq.conf"
    conf.write_text((dest / "etc/certmq/certmq.conf").read_text()
                    .replace("/var/lib/certmq", str(data))
                    .replace("/etc/certmq/server.pem", certs.server_pem)
                    .replace("/etc/certmq/server.key", certs.server_key)
                    .replace("listener 8883", f"listener {mqtt}")
                    .replace("listener 8080", f"listener {http}"))
    argv = [a.replace("/usr/bin/certmq", str(dest / "usr/bin/certmq"))
             .replace("/etc/certmq/certmq.conf", str(conf))
            for a in shlex.split(keys["ExecStart"])]
    log = tmp_path / "journal"
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, cwd=data, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + TIMEOUT
        for port in (mqtt, http):
            while True:
                assert proc.poll() is None, log.read_text()
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT).close()
                    break
                except OSError:
                    assert time.monotonic() < deadline, f"{port} never listened"
                    time.sleep(0.05)
        ctx = ssl.create_default_context(cafile=certs.ca_pem)
        with socket.create_connection(("127.0.0.1", mqtt), timeout=TIMEOUT) as s:
            with ctx.wrap_socket(s, server_hostname="localhost") as t:
                assert t.version() in ("TLSv1.2", "TLSv1.3")
        reload = keys["ExecReload"].replace("$MAINPID", str(proc.pid))
        assert subprocess.run(shlex.split(reload), timeout=TIMEOUT).returncode == 0
        while "certificates and keys reloaded" not in log.read_text():
            assert time.monotonic() < deadline + TIMEOUT, log.read_text()
            time.sleep(0.05)
        assert (data / "certmq.db").is_file() and (data / "lock").is_file()
    finally:
        rc = terminate(proc)
    assert rc == 0, log.read_text()
