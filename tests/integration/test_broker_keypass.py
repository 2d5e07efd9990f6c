# Encrypted server keys: `keyfile_password_file` (mode 0600 or stricter,
# never logged) unlocks an `openssl genrsa -aes256` key at start and on
# SIGHUP; a wrong password, a too-open file or a missing one is a clear error
# at start (exit 2) and, on reload, keeps the certificate and key in use.
import os
import signal
import socket
import ssl
import subprocess
import time

import pytest
from cryptography import x509

from conftest import CERTMQ_BIN, TIMEOUT, free_port
from test_broker_cli import assert_sanitizer_clean

pytestmark = pytest.mark.certmq_only

PASSWORD = "c0rrect-h0rse-4-server-key"


def openssl(*args):
    r = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def secret_file(path, text, mode=0o600):
    path.write_text(text + "\n")
    os.chmod(path, mode)
    return path


def encrypted_server(d, name, password):
    """An `openssl genrsa -aes256` key and a self-signed localhost certificate."""
    pw = secret_file(d / f"{name}.pw", password)
    key, crt = d / f"{name}.key", d / f"{name}.pem"
    openssl("genrsa", "-aes256", "-passout", f"file:{pw}", "-out", str(key), "2048")
    openssl("req", "-x509", "-new", "-key", str(key), "-passin", f"file:{pw}", "-subj",
            "/CN=localhost", "-addext", "subjectAltName=DNS:localhost", "-days", "2",
            "-out", str(crt))
    return crt, key


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("enckeys")
    return {"a": encrypted_server(d, "a", PASSWORD), "b": encrypted_server(d, "b", PASSWORD),
            "other": encrypted_server(d, "other", "not-the-same-password")}


def make_config(tmp_path, keys, which="a", password=PASSWORD, mode=0o600, with_pw=True):
    crt, key = keys[which]
    served_crt, served_key = tmp_path / "server.pem", tmp_path / "server.key"
    served_crt.write_bytes(crt.read_bytes())
    served_key.write_bytes(key.read_bytes())
    port = free_port()
    lines = [f"data_dir {tmp_path / 'var'}", "log_level debug", f"listener {port} 127.0.0.1",
             f"certfile {served_crt}", f"keyfile {served_key}", "client_certificates off"]
    if with_pw:
        secret_file(tmp_path / "key.pw", password, mode)
        lines.append(f"keyfile_password_file {tmp_path / 'key.pw'}")
    conf = tmp_path / "certmq.conf"
    conf.write_text("\n".join(lines) + "\n")
    return conf, port


def start(conf, tmp_path):
    """The broker, its stderr in tmp_path/stderr.log (read by log_text)."""
    with open(tmp_path / "stderr.log", "w") as err:
        return subprocess.Popen([CERTMQ_BIN, "serve", "--config", str(conf)], cwd=tmp_path,
                                stdin=subprocess.DEVNULL, stdout=err, stderr=subprocess.STDOUT,
                                text=True)


def log_text(tmp_path):
    return (tmp_path / "stderr.log").read_text(errors="replace")


def stop(proc, tmp_path):
    proc.send_signal(signal.SIGTERM)
    try:
        rc = proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        rc = "no exit within 10 s of SIGTERM"
    return rc, log_text(tmp_path)


def wait_for_log(tmp_path, text):
    deadline = time.monotonic() + TIMEOUT
    while text not in log_text(tmp_path):
        assert time.monotonic() < deadline, f"{text!r} never logged:\n{log_text(tmp_path)}"
        time.sleep(0.05)


def listening(port, proc):
    deadline = time.monotonic() + TIMEOUT
    while True:
        assert proc.poll() is None, f"certmq exited with {proc.returncode}"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT).close()
            return
        except OSError:
            assert time.monotonic() < deadline, f"nothing listening on {port}"
            time.sleep(0.05)


def served_cert(port, cafile):
    ctx = ssl.create_default_context(cafile=str(cafile))
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as s:
        with ctx.wrap_socket(s, server_hostname="localhost") as t:
            return x509.load_der_x509_certificate(t.getpeercert(binary_form=True))


def refused_at_start(conf, tmp_path):
    proc = start(conf, tmp_path)
    try:
        proc.wait(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        stop(proc, tmp_path)
        pytest.fail("certmq started")
    err = log_text(tmp_path)
    assert PASSWORD not in err
    assert_sanitizer_clean(err)
    return proc.returncode, err


def replace_served(tmp_path, pair):
    for src, dst in zip(pair, (tmp_path / "server.pem", tmp_path / "server.key")):
        dst.write_bytes(src.read_bytes())


def test_encrypted_key_starts_and_reloads_on_sighup(tmp_path, keys):
    conf, port = make_config(tmp_path, keys)
    proc = start(conf, tmp_path)
    try:
        listening(port, proc)
        a = served_cert(port, keys["a"][0])
        replace_served(tmp_path, keys["b"])
        proc.send_signal(signal.SIGHUP)
        wait_for_log(tmp_path, "certificates and keys reloaded")
        assert served_cert(port, keys["b"][0]).serial_number != a.serial_number
    finally:
        rc, err = stop(proc, tmp_path)
    assert rc == 0, err
    assert PASSWORD not in err
    assert_sanitizer_clean(err)


@pytest.mark.parametrize("change", ["key with another password", "password file"])
def test_wrong_password_on_reload_keeps_the_old_key(tmp_path, keys, change):
    conf, port = make_config(tmp_path, keys)
    proc = start(conf, tmp_path)
    try:
        listening(port, proc)
        before = served_cert(port, keys["a"][0]).serial_number
        if change == "password file":
            secret_file(tmp_path / "key.pw", "a wrong password")
            replace_served(tmp_path, keys["b"])
        else:
            replace_served(tmp_path, keys["other"])
        proc.send_signal(signal.SIGHUP)
        wait_for_log(tmp_path, "reload failed")
        assert "cannot decrypt private key" in log_text(tmp_path)
        assert served_cert(port, keys["a"][0]).serial_number == before
    finally:
        rc, err = stop(proc, tmp_path)
    assert rc == 0, err
    assert PASSWORD not in err and "a wrong password" not in err
    assert_sanitizer_clean(err)


def test_wrong_password_at_start_is_a_clear_error(tmp_path, keys):
    conf, _ = make_config(tmp_path, keys, password="not it")
    rc, err = refused_at_start(conf, tmp_path)
    assert rc == 2, err
    assert "cannot decrypt private key" in err and str(tmp_path / "key.pw") in err, err
    assert "not it" not in err


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o666])
def test_password_file_readable_by_others_is_refused(tmp_path, keys, mode):
    conf, _ = make_config(tmp_path, keys, mode=mode)
    rc, err = refused_at_start(conf, tmp_path)
    assert rc == 2, err
    assert "0600 or stricter" in err and "key.pw" in err, err


def test_encrypted_key_without_password_file_never_prompts(tmp_path, keys):
    conf, _ = make_config(tmp_path, keys, with_pw=False)
    rc, err = refused_at_start(conf, tmp_path)
    assert rc == 2, err
    assert "encrypted" in err and "keyfile_password_file" in err, err


def test_missing_password_file_is_named(tmp_path, keys):
    conf, _ = make_config(tmp_path, keys)
    os.unlink(tmp_path / "key.pw")
    rc, err = refused_at_start(conf, tmp_path)
    assert rc != 0, err
    assert "key.pw" in err and "No such file" in err, err


def test_https_api_with_an_encrypted_key(tmp_path, keys):
    crt, key = keys["a"]
    secret_file(tmp_path / "key.pw", PASSWORD)
    port = free_port()
    conf = tmp_path / "c.conf"
    conf.write_text(f"data_dir {tmp_path / 'var'}\nlistener {port} 127.0.0.1\n"
                    f"protocol http\ncertfile {crt}\nkeyfile {key}\n"
                    f"keyfile_password_file {tmp_path / 'key.pw'}\n")
    proc = start(conf, tmp_path)
    try:
        listening(port, proc)
        r = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert",
                            str(crt), f"https://localhost:{port}/user/currentUser"],
                           capture_output=True, text=True, timeout=TIMEOUT)
        assert r.stdout == "401", r.stdout + r.stderr  # served over TLS, wants credentials
    finally:
        rc, err = stop(proc, tmp_path)
    assert rc == 0, err
    assert PASSWORD not in err
    assert_sanitizer_clean(err)


def test_https_api_password_file_readable_by_others_is_refused(tmp_path, keys):
    crt, key = keys["a"]
    secret_file(tmp_path / "key.pw", PASSWORD, 0o644)
    conf = tmp_path / "c.conf"
    conf.write_text(f"data_dir {tmp_path / 'var'}\nlistener {free_port()} 127.0.0.1\n"
                    f"protocol http\ncertfile {crt}\nkeyfile {key}\n"
                    f"keyfile_password_file {tmp_path / 'key.pw'}\n")
    rc, err = refused_at_start(conf, tmp_path)
    assert rc == 2 and "0600 or stricter" in err, err
