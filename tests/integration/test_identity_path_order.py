# Path building over what a device sends (issue 15 item 6), with chains made
# by `openssl ca` and sent by mosquitto_pub: certificates in an unusual
# order, a key rollover (the old root's key certified by the new root, a
# self-issued certificate) with the stale old root sent along, and, with
# require_ca_in_chain false, intermediates sent top first.
from pathlib import Path

import pytest

from identity_pki import CA_PASS, CaDir, Device, IdentityServer, openssl, pki  # noqa: F401

OPTS = {"max_chain_length": "4"}


def chain_file(path, *pems):
    Path(path).write_bytes(b"".join(Path(p).read_bytes() for p in pems))
    return str(path)


@pytest.fixture(scope="module")
def server(tmp_path_factory, pki):
    s = IdentityServer(tmp_path_factory.mktemp("identity-path-order"), pki, OPTS).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def rollover(tmp_path_factory):
    d = tmp_path_factory.mktemp("rollover")
    old = CaDir(d, "rollOld", "/O=rollover/CN=rollover root")
    new = CaDir(d, "rollNew", "/O=rollover/CN=rollover root")
    # The old key certified by the new root: same subject, a self-issued CA.
    csr = d / "oldWithNewCsr.pem"
    openssl("req", "-config", str(old.config), "-new", "-sha256", "-key", str(old.key), "-passin",
            CA_PASS, "-subj", "/O=rollover/CN=rollover root", "-out", str(csr))
    cross = d / "oldWithNewCert.pem"
    new.sign(csr, cross, "v3_ca", days=3650)
    dev = old.device("rolldev", "rolldev")
    # Sent: device, the stale old root, the rollover certificate, the new root.
    chain = chain_file(d / "rolldevChain.pem", dev.pem, old.pem, cross, new.pem)
    return {"old": old, "new": new, "cross": str(cross),
            "dev": Device("rolldev", "rolldev", dev.pem, dev.key, chain)}


def test_unusual_order_is_accepted(server, pki, clients, tmp_path):
    auth = server.tenant("order")
    server.trust("order", auth, pki.root_i.pem)
    app = server.password_client(clients, auth, "app")
    app.connect(server.mqtt_port, host="localhost")
    app.subscribe("#")
    # idev2 <- I2 <- I <- root I, sent as idev2, root I, I, I2.
    d = pki.idev2
    mixed = Device(d.name, d.cn, d.pem, d.key,
                   chain_file(tmp_path / "mixed.pem", d.pem, pki.root_i.pem, pki.int_i.pem,
                              pki.int_i2.pem))
    r = server.mosquitto_pub(mixed, "fleet/idev2", "mixed order")
    assert r.returncode == 0, r.stderr
    assert app.get_on("fleet/idev2").payload == b"mixed order"


def test_key_rollover_with_stale_root_sent_along(server, clients, rollover):
    auth = server.tenant("roll")
    server.trust("roll", auth, rollover["new"].pem)
    app = server.password_client(clients, auth, "app")
    app.connect(server.mqtt_port, host="localhost")
    app.subscribe("#")
    r = server.mosquitto_pub(rollover["dev"], "fleet/rolldev", "old key, new root")
    assert r.returncode == 0, r.stderr
    assert app.get_on("fleet/rolldev").payload == b"old key, new root"
    assert "device_rolldev" in server.users("roll", auth)


def test_relaxed_intermediates_sent_top_first(tmp_path, pki, clients):
    s = IdentityServer(tmp_path, pki, dict(OPTS, require_ca_in_chain="false")).start()
    try:
        auth = s.tenant("relaxed")
        s.trust("relaxed", auth, pki.root_i.pem)
        d = pki.idev2
        top_first = Device(d.name, d.cn, d.pem, d.key,
                           chain_file(tmp_path / "topfirst.pem", d.pem, pki.int_i.pem,
                                      pki.int_i2.pem))
        r = s.mosquitto_pub(top_first, "s/us", "100,idev2")
        assert r.returncode == 0, r.stderr
        assert "device_idev2" in s.users("relaxed", auth)
    finally:
        s.stop()
