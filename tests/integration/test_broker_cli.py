# The certmq command line: help and version, exit status 2 with a message for
# bad options and bad config files (naming the offending line), and the
# zero-config start that makes a dev CA under ./var and listens on 8883 and
# 8080 (run only when both ports are free on this machine).
import http.client
import os
import re
import signal
import socket
import ssl
import stat
import subprocess
import time

import pytest

from conftest import (CERTMQ_BIN, CONNACK_OK, SANITIZER_MARKERS, TIMEOUT, connect_packet,
                      default_ports_allowed, free_port)

pytestmark = pytest.mark.certmq_only


def run(*args, cwd=None, timeout=TIMEOUT):
    return subprocess.run([CERTMQ_BIN, *args], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def assert_sanitizer_clean(text):
    for marker in SANITIZER_MARKERS:
        assert marker not in text, text


def test_help_exits_0_and_prints_usage():
    r = run("--help")
    assert r.returncode == 0, r.stderr
    assert re.search(r"usage", r.stdout, re.I), r.stdout
    assert "serve" in r.stdout


def test_serve_help_exits_0_and_mentions_config():
    r = run("serve", "--help")
    assert r.returncode == 0, r.stderr
    assert re.search(r"usage", r.stdout, re.I)
    assert "--config" in r.stdout


def test_version_exits_0_and_prints_version():
    r = run("--version")
    assert r.returncode == 0, r.stderr
    assert re.search(r"\b\d+\.\d+\.\d+\b", r.stdout), r.stdout


def test_unknown_option_exits_2_with_message():
    r = run("--no-such-option")
    assert r.returncode == 2
    assert "no-such-option" in r.stderr
    assert_sanitizer_clean(r.stderr)


def test_serve_unknown_option_exits_2_with_message():
    r = run("serve", "--no-such-option")
    assert r.returncode == 2
    assert "no-such-option" in r.stderr
    assert_sanitizer_clean(r.stderr)


def test_missing_config_file_fails_with_message(tmp_path):
    missing = tmp_path / "absent.conf"
    r = run("serve", "--config", str(missing))
    assert r.returncode != 0
    assert "absent.conf" in r.stderr
    assert_sanitizer_clean(r.stderr)


def write_config(tmp_path, bad_line, bad_at=4):
    """A config whose line bad_at (1-based) is bad_line; the rest is valid."""
    lines = ["# certmq config with one mistake",
             f"data_dir {tmp_path / 'var'}",
             "allow_anonymous true"]
    lines.insert(bad_at - 1, bad_line)
    lines += [f"listener {free_port()} 127.0.0.1"]
    p = tmp_path / "certmq.conf"
    p.write_text("\n".join(lines) + "\n")
    return p


def names_line(text, n):
    return re.search(rf"(line\s*{n}\b|:{n}\b)", text) is not None


def test_unknown_directive_exits_2_naming_the_line(tmp_path):
    conf = write_config(tmp_path, "frobnicate yes", bad_at=3)
    r = run("serve", "--config", str(conf))
    assert r.returncode == 2, r.stderr
    assert names_line(r.stderr, 3), r.stderr
    assert "frobnicate" in r.stderr
    assert_sanitizer_clean(r.stderr)


@pytest.mark.parametrize("bad_line", [
    "max_inflight -3",
    "max_packet_size lots",
    "allow_anonymous maybe",
    "max_connections 0",
    "max_connections 12abc",
])
def test_bad_global_value_exits_2_naming_the_line(tmp_path, bad_line):
    conf = write_config(tmp_path, bad_line, bad_at=4)
    r = run("serve", "--config", str(conf))
    assert r.returncode == 2, f"{bad_line!r} accepted: {r.stderr}"
    assert names_line(r.stderr, 4), r.stderr
    assert bad_line.split()[0] in r.stderr
    assert_sanitizer_clean(r.stderr)


@pytest.mark.parametrize("bad_line", [
    "listener 99999 127.0.0.1",
    "listener http 127.0.0.1",
])
def test_bad_listener_port_exits_2_naming_the_line(tmp_path, bad_line):
    conf = write_config(tmp_path, bad_line, bad_at=4)
    r = run("serve", "--config", str(conf))
    assert r.returncode == 2, r.stderr
    assert names_line(r.stderr, 4), r.stderr


def test_bad_client_certificates_value_exits_2_naming_the_line(tmp_path, certs):
    p = tmp_path / "certmq.conf"
    p.write_text(f"data_dir {tmp_path / 'var'}\n"
                 f"listener {free_port()} 127.0.0.1\n"
                 f"certfile {certs.server_pem}\n"
                 f"keyfile {certs.server_key}\n"
                 "client_certificates sometimes\n")
    r = run("serve", "--config", str(p))
    assert r.returncode == 2, r.stderr
    assert names_line(r.stderr, 5), r.stderr
    assert "client_certificates" in r.stderr


def test_comments_and_blank_lines_are_ignored(tmp_path):
    port = free_port()
    p = tmp_path / "certmq.conf"
    p.write_text("# leading comment\n\n"
                 f"data_dir {tmp_path / 'var'}\n"
                 "   # indented comment\n"
                 "allow_anonymous true\n\n"
                 f"listener {port} 127.0.0.1\n")
    proc = subprocess.Popen([CERTMQ_BIN, "serve", "--config", str(p)], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        s = wait_accepting(port, proc)
        s.sendall(connect_packet("cli-comments"))
        assert s.recv(4) == CONNACK_OK
        s.close()
    finally:
        rc, err = terminate(proc)
    assert rc == 0, err
    assert_sanitizer_clean(err)


def wait_accepting(port, proc, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            pytest.fail(f"certmq exited with {proc.returncode}: {proc.stderr.read()}")
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        except OSError:
            assert time.monotonic() < deadline, f"nothing listening on {port}"
            time.sleep(0.05)


def terminate(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        return "no exit within 10 s of SIGTERM", err
    return proc.returncode, err


def port_is_free(port):
    if not default_ports_allowed():
        return False
    for family, addr in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        try:
            with socket.socket(family, socket.SOCK_STREAM) as s:
                s.bind((addr, port))
        except OSError as e:
            if family == socket.AF_INET6 and e.errno == 97:  # no IPv6 here
                continue
            return False
    return True


def test_zero_config_start_makes_dev_ca_and_listens_on_8883_and_8080(tmp_path):
    if not (port_is_free(8883) and port_is_free(8080)):
        pytest.skip("ports 8883/8080 are in use on this machine; zero-config start not tested")
    env = dict(os.environ, CERTMQ_ADMIN_PASSWORD="integration-test-password")
    proc = subprocess.Popen([CERTMQ_BIN, "serve"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        try:
            wait_accepting(8883, proc, timeout=30).close()
        except pytest.fail.Exception as e:
            if "in use" in str(e).lower():
                pytest.skip("8883/8080 taken by another process meanwhile")
            raise
        wait_accepting(8080, proc).close()
        for port in (8883, 8080):  # development defaults: loopback only
            ss = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True,
                                text=True, timeout=TIMEOUT).stdout.split()
            assert ss and ss[3] == f"127.0.0.1:{port}", ss
        api = http.client.HTTPConnection("127.0.0.1", 8080, timeout=TIMEOUT)
        api.request("GET", "/user/currentUser")
        assert api.getresponse().status == 401  # the HTTP API answers, and wants auth
        api.close()
        dev = tmp_path / "var" / "dev-ca"
        for name in ("ca.pem", "ca.key", "server.pem"):
            assert (dev / name).is_file(), f"var/dev-ca/{name} missing"
        assert stat.S_IMODE((dev / "ca.key").stat().st_mode) == 0o600
        ctx = ssl.create_default_context(cafile=str(dev / "ca.pem"))
        with socket.create_connection(("127.0.0.1", 8883), timeout=TIMEOUT) as s:
            with ctx.wrap_socket(s, server_hostname="localhost") as t:
                assert t.version() in ("TLSv1.2", "TLSv1.3")
    finally:
        rc, err = terminate(proc)
    assert rc == 0, err
    assert_sanitizer_clean(err)
