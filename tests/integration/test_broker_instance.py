# One broker per data directory and per port: a second `certmq serve` with
# the same data_dir, or on a port another process listens on (SO_REUSEPORT
# or not), refuses to start with a clear message; a config naming the same
# listener twice is a config error (exit 2).
import signal
import socket
import subprocess

import pytest

from conftest import CERTMQ_BIN, TIMEOUT, free_port
from test_broker_cli import assert_sanitizer_clean, terminate, wait_accepting

pytestmark = pytest.mark.certmq_only


def write_conf(path, data_dir, *ports):
    lines = [f"data_dir {data_dir}", "allow_anonymous true"]
    lines += [f"listener {p} 127.0.0.1" for p in ports]
    path.write_text("\n".join(lines) + "\n")
    return path


def serve(conf, cwd):
    return subprocess.Popen([CERTMQ_BIN, "serve", "--config", str(conf)], cwd=cwd,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def run_to_exit(conf, cwd):
    """Starts a serve that must refuse; returns (exit status, stderr)."""
    proc = serve(conf, cwd)
    try:
        _, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        terminate(proc)
        pytest.fail("the second certmq kept running")
    return proc.returncode, err


@pytest.fixture
def first(tmp_path):
    port = free_port()
    conf = write_conf(tmp_path / "first.conf", tmp_path / "var", port)
    proc = serve(conf, tmp_path)
    wait_accepting(port, proc).close()
    yield port
    rc, err = terminate(proc)
    assert rc == 0, err
    assert_sanitizer_clean(err)


def test_second_serve_with_the_same_data_dir_refuses(tmp_path, first):
    conf = write_conf(tmp_path / "second.conf", tmp_path / "var", free_port())
    rc, err = run_to_exit(conf, tmp_path)
    assert rc == 1, err
    assert "already running" in err and str(tmp_path / "var") in err, err
    assert_sanitizer_clean(err)


def test_second_serve_on_a_port_in_use_refuses(tmp_path, first):
    conf = write_conf(tmp_path / "second.conf", tmp_path / "var2", first)
    rc, err = run_to_exit(conf, tmp_path)
    assert rc == 1, err
    assert f"listener {first}" in err and "in use" in err, err
    assert_sanitizer_clean(err)


@pytest.mark.parametrize("reuseport", [False, True])
def test_serve_on_a_port_another_program_listens_on_refuses(tmp_path, reuseport):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        if reuseport:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        conf = write_conf(tmp_path / "c.conf", tmp_path / "var", port)
        rc, err = run_to_exit(conf, tmp_path)
    assert rc == 1, err
    assert "in use" in err, err


def test_port_is_free_again_after_a_stop(tmp_path):
    port = free_port()
    conf = write_conf(tmp_path / "c.conf", tmp_path / "var", port)
    for _ in range(2):  # the lock and the port are released on exit
        proc = serve(conf, tmp_path)
        wait_accepting(port, proc).close()
        proc.send_signal(signal.SIGTERM)
        rc, err = terminate(proc)
        assert rc == 0, err


@pytest.mark.parametrize("second", ["127.0.0.1", "", "PORT_ONLY"])
def test_the_same_listener_twice_is_a_config_error(tmp_path, second):
    port = free_port()
    text = (f"data_dir {tmp_path / 'var'}\nlistener {port} 127.0.0.1\n"
            f"listener {port} {second if second != 'PORT_ONLY' else ''}\n")
    (tmp_path / "c.conf").write_text(text)
    r = subprocess.run([CERTMQ_BIN, "serve", "--config", str(tmp_path / "c.conf")],
                       capture_output=True, text=True, timeout=TIMEOUT, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert f"listener {port}" in r.stderr and "twice" in r.stderr, r.stderr
    assert not (tmp_path / "var").exists()  # refused before touching anything


def test_one_port_on_two_addresses_is_fine(tmp_path):
    port = free_port()
    (tmp_path / "c.conf").write_text(f"data_dir {tmp_path / 'var'}\nallow_anonymous true\n"
                                     f"listener {port} 127.0.0.1\nlistener {port} 127.0.0.2\n")
    proc = serve(tmp_path / "c.conf", tmp_path)
    wait_accepting(port, proc).close()
    rc, err = terminate(proc)
    assert rc == 0, err


def test_http_port_in_use_refuses_before_touching_the_data_dir(tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        conf = tmp_path / "c.conf"
        conf.write_text(f"data_dir {tmp_path / 'var'}\nlistener {free_port()} 127.0.0.1\n"
                        f"listener {port} 127.0.0.1\nprotocol http\n")
        rc, err = run_to_exit(conf, tmp_path)
    assert rc == 1, err
    assert f"listener {port}" in err and "in use" in err, err
    assert not (tmp_path / "var" / "certmq.db").exists()
    assert not (tmp_path / "var" / "admin-password").exists()
