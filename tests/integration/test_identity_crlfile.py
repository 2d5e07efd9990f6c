# A static `cafile` listener with a `crlfile` (issue 15 item 9): a client
# whose certificate (or an intermediate of its chain) a CRL of the file lists
# is refused; SIGHUP reloads the file and drops connected clients it now
# revokes; a bad or forged file is refused with an error in the log and the
# old CRLs are kept; CRLs are made with `openssl ca -gencrl`, clients are
# mosquitto_pub and a byte-level client.
import shutil
import signal
import subprocess
import time

import pytest

from conftest import CERTMQ_BIN, TIMEOUT, RawClient, free_port
from identity_pki import CA_PASS, CaDir, IdentityServer, assert_mosquitto_refused, openssl
from identity_pki import pki  # noqa: F401

OK = b"\x20\x02\x00\x00"


def gencrl(ca, out, revoke=()):
    number = ca.dir / "crl" / "crlnumber"
    if not number.exists():
        number.write_text("1000\n")
    for pem in revoke:
        openssl("ca", "-config", str(ca.config), "-passin", CA_PASS, "-revoke", str(pem))
    openssl("ca", "-config", str(ca.config), "-passin", CA_PASS, "-gencrl", "-out", str(out))


class StaticPki:
    pass


@pytest.fixture(scope="module")
def spki(tmp_path_factory):
    base = tmp_path_factory.mktemp("crlfile-pki")
    p = StaticPki()
    p.root = CaDir(base, "root", "/O=crlfile/CN=crlfile root")
    (p.root.dir / "serial").write_text("5000\n")
    p.inter = CaDir(p.root.dir, "intermediateCertificate", "/O=crlfile/CN=crlfile inter",
                    parent=p.root)
    (p.inter.dir / "serial").write_text("6000\n")
    p.gone = p.root.device("gone", "gone")
    p.later = p.root.device("later", "later")
    p.kept = p.root.device("kept", "kept")
    p.under = p.inter.device("under", "under")
    p.forger = CaDir(base, "forger", "/O=crlfile/CN=crlfile root")
    p.crl = base / "listener-crl.pem"
    gencrl(p.root, p.crl, revoke=[p.gone.pem])
    return p


@pytest.fixture(scope="module")
def server(tmp_path_factory, pki, spki):
    d = tmp_path_factory.mktemp("identity-crlfile")
    s = IdentityServer(d, pki, cafile=spki.root.pem, crlfile=str(spki.crl)).start()
    yield s
    s.stop()


def raw(server, dev):
    return RawClient(server.mqtt_port, tls=dev.tls(server.server_ca))


def sighup_and_wait(server, text):
    """Sends SIGHUP and waits for the next log line holding text."""
    before = server.stderr().count(text)
    server.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + TIMEOUT
    while server.stderr().count(text) == before:
        assert time.monotonic() < deadline, f"no {text!r} after SIGHUP:\n{server.stderr()}"
        time.sleep(0.05)


def test_revoked_client_is_refused(server, spki):
    assert_mosquitto_refused(server.mosquitto_pub(spki.gone, "t/x", "m"))
    assert "certificate revoked" in server.stderr()
    r = server.mosquitto_pub(spki.kept, "t/x", "m")
    assert r.returncode == 0, r.stderr
    c = raw(server, spki.under)
    assert c.connect("under") == OK
    c.close()


def test_sighup_reload_drops_newly_revoked_clients(server, spki):
    later, under, kept = raw(server, spki.later), raw(server, spki.under), raw(server, spki.kept)
    for c, cid in ((later, "later"), (under, "under"), (kept, "kept")):
        assert c.connect(cid) == OK
    # The root revokes a device and the intermediate ("under" sits below it).
    gencrl(spki.root, spki.crl, revoke=[spki.later.pem, spki.inter.pem])
    sighup_and_wait(server, "certificates and keys reloaded")
    assert later.is_closed(timeout=3) and under.is_closed(timeout=3)
    assert not kept.is_closed(timeout=0.5)
    assert "2 revoked client(s) disconnected" in server.stderr()
    assert_mosquitto_refused(server.mosquitto_pub(spki.later, "t/x", "m"))
    assert_mosquitto_refused(server.mosquitto_pub(spki.under, "t/x", "m"))
    for c in (later, under, kept):
        c.close()


@pytest.mark.parametrize("bad", ["garbage", "forged"])
def test_bad_crlfile_on_reload_keeps_the_old_crls(server, spki, bad, tmp_path):
    saved = tmp_path / "good.pem"
    shutil.copy(spki.crl, saved)
    kept = raw(server, spki.kept)
    assert kept.connect("kept") == OK
    if bad == "garbage":
        spki.crl.write_text("not a CRL\n")
        want = "holds no CRL"
    else:
        # Same issuer name, another key; it lists "kept"'s serial.
        (spki.forger.dir / "serial").write_text(
            openssl("x509", "-noout", "-serial", "-in", spki.kept.pem).strip().split("=")[1])
        fake = spki.forger.device(f"fake{time.monotonic_ns()}", "fake")
        gencrl(spki.forger, spki.crl, revoke=[fake.pem])
        want = "signature does not verify"
    try:
        sighup_and_wait(server, "reload failed")
        assert want in server.stderr()
        assert not kept.is_closed(timeout=0.5)
        # The old CRLs still apply.
        assert_mosquitto_refused(server.mosquitto_pub(spki.gone, "t/x", "m"))
        assert server.mosquitto_pub(spki.kept, "t/x", "m", client_id="kept2").returncode == 0
    finally:
        kept.close()
        shutil.copy(saved, spki.crl)


def test_start_refuses_a_forged_crlfile(pki, spki, tmp_path):
    forged = tmp_path / "forged.pem"
    gencrl(spki.forger, forged)
    conf = tmp_path / "c.conf"
    conf.write_text(f"data_dir {tmp_path / 'var'}\n\n"
                    f"listener {free_port()} 127.0.0.1\nprotocol mqtt\n"
                    f"certfile {pki.server_pem}\nkeyfile {pki.server_key}\n"
                    f"cafile {spki.root.pem}\ncrlfile {forged}\n")
    r = subprocess.run([CERTMQ_BIN, "serve", "--config", str(conf)], capture_output=True,
                       text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)
    assert r.returncode != 0
    assert "signature does not verify" in r.stderr, r.stderr
