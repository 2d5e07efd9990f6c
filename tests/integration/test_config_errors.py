# Configuration errors an operator meets on first start (issue 16 item 13):
# a missing certfile, keyfile or cafile is named with the system's reason
# and a configuration without a listener is refused, both with exit status 2
# before anything listens; a certificate that disappears before SIGHUP is
# reported the same way and the old one is kept.
import shutil
import signal
import subprocess
import time

import pytest

from conftest import CERTMQ_BIN, SANITIZER_MARKERS, TIMEOUT, Broker, RawClient, free_port

pytestmark = pytest.mark.certmq_only


def serve(conf):
    return subprocess.run([CERTMQ_BIN, "serve", "--config", str(conf)], capture_output=True,
                          text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)


def assert_refused(r, *texts):
    assert r.returncode == 2, f"exit {r.returncode}: {r.stderr}"
    for t in texts:
        assert t in r.stderr, r.stderr
    assert "system lib" not in r.stderr
    for marker in SANITIZER_MARKERS:
        assert marker not in r.stderr


def tls_listener_config(tmp_path, certs, protocol="mqtt", **override):
    files = {"certfile": certs.server_pem, "keyfile": certs.server_key, "cafile": certs.ca_pem}
    files.update(override)
    port = free_port()
    lines = [f"data_dir {tmp_path / 'var'}", f"listener {port} 127.0.0.1",
             f"protocol {protocol}"]
    lines += [f"{k} {v}" for k, v in files.items()
              if not (protocol == "http" and k == "cafile")]
    p = tmp_path / "certmq.conf"
    p.write_text("\n".join(lines) + "\n")
    return p, port


@pytest.mark.parametrize("which", ["certfile", "keyfile", "cafile"])
def test_missing_tls_file_is_named_with_no_such_file_and_exits_2(tmp_path, certs, which):
    missing = tmp_path / f"absent-{which}.pem"
    conf, port = tls_listener_config(tmp_path, certs, **{which: missing})
    r = serve(conf)
    assert_refused(r, which, str(missing), "No such file or directory", f"listener {port}")


def test_missing_https_api_certificate_exits_2(tmp_path, certs):
    missing = tmp_path / "api.pem"
    conf, _ = tls_listener_config(tmp_path, certs, protocol="http", certfile=missing)
    assert_refused(serve(conf), str(missing), "No such file or directory")


def test_unreadable_key_names_the_reason(tmp_path, certs):
    conf, _ = tls_listener_config(tmp_path, certs, keyfile=tmp_path)  # a directory
    assert_refused(serve(conf), "keyfile", "Is a directory")


def test_configuration_without_listener_is_refused(tmp_path):
    p = tmp_path / "certmq.conf"
    p.write_text(f"data_dir {tmp_path / 'var'}\nallow_anonymous true\n")
    r = serve(p)
    assert_refused(r, "no listener configured")
    assert not (tmp_path / "var").exists()  # refused before anything was set up


def test_certificate_gone_at_reload_is_named_and_old_one_kept(tmp_path, certs):
    b = Broker(tmp_path / "b", certs, {"allow_anonymous": "true"}, ("tls",)).start()
    try:
        (tmp_path / "b" / "server.pem").unlink()
        b.signal(signal.SIGHUP)
        deadline = time.monotonic() + TIMEOUT
        while "reload failed" not in b.stderr():
            assert time.monotonic() < deadline, b.stderr()
            time.sleep(0.05)
        err = b.stderr()
        assert "server.pem: No such file or directory" in err, err
        assert "system lib" not in err
        c = RawClient(b.ports["tls"], tls={"cafile": certs.ca_pem})
        ack = c.connect("after-failed-reload")
        assert ack == b"\x20\x02\x00\x00", ack
        c.close()
    finally:
        shutil.copyfile(certs.server_pem, tmp_path / "b" / "server.pem")
        b.stop()
