# Device-token signing keys at rest: the real `certmq serve` keeps them only
# sealed under the key-encryption key (DATA_DIR/kek, made 0600 on the first
# start, or the file `ca_key_file` names), never in the clear in the
# database; a database written before sealing is sealed on start and its
# tokens still verify; an unsafe, short or wrong KEK stops the start with
# its reason. Keys are opened here with python3-cryptography, not certmq.
import os
import sqlite3
import stat
import subprocess
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from apiserver import ApiServer, assert_json_error, make_tenant
from conftest import CERTMQ_BIN, TIMEOUT
from sealed import token_key_row, token_private_key

BULK = "/devicecontrol/bulkNewDeviceRequests"


def register_device(srv, tenant, auth, tmp_path, cn="d1"):
    f = tmp_path / f"{tenant}-{cn}.csv"
    f.write_text(f"ID;AUTH_TYPE\n{cn};CERTIFICATES\n")
    r = srv.call("POST", BULK, auth, files={"file": f})
    assert r.status == 201 and r.json["numberOfCreated"] == 1, r


def public_key(srv, tenant, auth):
    r = srv.call("GET", f"/tenant/tenants/{tenant}/device-token-key", auth)
    assert r.status == 200, r
    return r.json["publicKeyPem"]


def token(priv_pem, tenant, sub="device_d1"):
    now = int(time.time())
    return jwt.encode({"iss": "certmq", "sub": sub, "ten": tenant, "iat": now, "nbf": now,
                       "exp": now + 600, "jti": os.urandom(16).hex()}, priv_pem, algorithm="ES256")


def bearer(srv, tok):
    return srv.call("GET", "/user/currentUser", headers={"Authorization": f"Bearer {tok}"})


def files_bytes(data):
    """Everything SQLite keeps on disk for the database."""
    out = b""
    for name in ("certmq.db", "certmq.db-wal", "certmq.db-shm"):
        p = data / name
        if p.exists():
            out += p.read_bytes()
    return out


def pem_body(pem):
    """The first base64 line of a PEM: a piece of the key itself."""
    return pem.split("-----")[2].strip().splitlines()[0].encode()


def new_key_pair():
    k = ec.generate_private_key(ec.SECP256R1())
    priv = k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                           serialization.NoEncryption()).decode()
    pub = k.public_key().public_bytes(serialization.Encoding.PEM,
                                      serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return priv, pub


def same_public_key(priv_pem, pub_pem):
    priv = serialization.load_pem_private_key(priv_pem.encode(), None)
    pub = serialization.load_pem_public_key(pub_pem.encode())
    raw = serialization.PublicFormat.SubjectPublicKeyInfo
    return (priv.public_key().public_bytes(serialization.Encoding.DER, raw)
            == pub.public_bytes(serialization.Encoding.DER, raw))


def serve_fails(srv):
    """Runs `certmq serve` on srv's config, expecting it to refuse to start."""
    r = subprocess.run([CERTMQ_BIN, "serve", "--config", str(srv.conf)], cwd=srv.dir,
                       env=srv.env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=TIMEOUT + 10)
    assert r.returncode != 0, r.stderr
    return r.stdout + r.stderr


def test_kek_made_once_0600_and_the_key_stored_only_sealed(tmp_path):
    srv = ApiServer(tmp_path / "srv").start()
    try:
        auth = make_tenant(srv, "rest1")
        register_device(srv, "rest1", auth, tmp_path)
        pub = public_key(srv, "rest1", auth)
        kek = srv.data / "kek"
        assert stat.S_IMODE(kek.stat().st_mode) == 0o600
        assert kek.stat().st_size == 32
        priv = token_private_key(srv.data, "rest1")
        assert priv.startswith("-----BEGIN PRIVATE KEY-----")
        assert same_public_key(priv, pub)
        raw = files_bytes(srv.data)
        assert b"PRIVATE KEY" not in raw and pem_body(priv) not in raw
        # the key opened with the KEK signs tokens the broker accepts
        assert bearer(srv, token(priv, "rest1")).status == 200
        assert_json_error(bearer(srv, token(priv, "rest1", sub="admin")), 401)
        logs = srv.stdout() + srv.stderr()
        key = kek.read_bytes()
        assert key.hex() not in logs and "PRIVATE KEY" not in logs
        assert str(kek) in logs  # where the new KEK is, said once
        kid = kek.stat().st_mtime
    finally:
        srv.stop()
    srv.start()  # the same KEK is used again, not made anew
    try:
        assert (srv.data / "kek").stat().st_mtime == kid
        assert bearer(srv, token(priv, "rest1")).status == 200
    finally:
        srv.stop()


def test_plaintext_key_of_an_older_database_is_sealed_on_start(tmp_path):
    srv = ApiServer(tmp_path / "srv").start()
    try:
        auth = make_tenant(srv, "old")
        register_device(srv, "old", auth, tmp_path)
    finally:
        srv.stop()
    # The database as schema 3 wrote it: the private key in the clear.
    priv, pub = new_key_pair()
    db = sqlite3.connect(srv.data / "certmq.db")
    with db:
        db.execute("ALTER TABLE token_keys DROP COLUMN priv_sealed")
        db.execute("DELETE FROM token_keys WHERE tenant = 'old'")
        db.execute("INSERT INTO token_keys(tenant, priv_pem, pub_pem, created) VALUES(?,?,?,?)",
                   ("old", priv, pub, int(time.time())))
        db.execute("PRAGMA user_version = 3")
    db.close()
    assert b"PRIVATE KEY" in files_bytes(srv.data)
    srv.start()
    try:
        raw = files_bytes(srv.data)
        assert b"PRIVATE KEY" not in raw and pem_body(priv) not in raw
        assert "sealed 1 device-token signing key" in srv.stdout() + srv.stderr()
        plain, sealed, stored_pub = token_key_row(srv.data / "certmq.db", "old")
        assert plain == "" and sealed[:4] == b"CMQS" and stored_pub == pub
        assert token_private_key(srv.data, "old") == priv
        # tokens made with the old key still verify; the public key is the same
        assert bearer(srv, token(priv, "old")).status == 200
        assert public_key(srv, "old", auth) == pub
    finally:
        srv.stop()


def test_unsafe_short_or_other_kek_stops_the_start(tmp_path):
    srv = ApiServer(tmp_path / "srv").start()
    try:
        auth = make_tenant(srv, "kk")
        public_key(srv, "kk", auth)  # a key sealed under this KEK
    finally:
        srv.stop()
    kek = srv.data / "kek"
    good = kek.read_bytes()
    os.chmod(kek, 0o640)
    out = serve_fails(srv)
    assert str(kek) in out and "chmod 600" in out, out
    os.chmod(kek, 0o600)
    kek.write_bytes(good[:16])
    out = serve_fails(srv)
    assert str(kek) in out and "exactly 32" in out, out
    kek.write_bytes(os.urandom(32))
    out = serve_fails(srv)
    assert "another key-encryption key" in out and "kk" in out, out
    assert good.hex() not in out
    kek.write_bytes(good)
    srv.start()  # the right key again: starts, and the key opens
    try:
        assert public_key(srv, "kk", auth)
    finally:
        srv.stop()


def test_ca_key_file_names_the_kek(tmp_path):
    kek = tmp_path / "operator.kek"
    subprocess.run(["openssl", "rand", "-out", str(kek), "32"], check=True)
    os.chmod(kek, 0o600)
    srv = ApiServer(tmp_path / "srv", options={"ca_key_file": str(kek)}).start()
    try:
        auth = make_tenant(srv, "ck")
        register_device(srv, "ck", auth, tmp_path)
        pub = public_key(srv, "ck", auth)
        assert not (srv.data / "kek").exists()
        priv = token_private_key(srv.data, "ck", kek_path=kek)
        assert same_public_key(priv, pub)
        assert bearer(srv, token(priv, "ck")).status == 200
    finally:
        srv.stop()
    os.chmod(kek, 0o644)
    out = serve_fails(srv)
    assert str(kek) in out and "chmod 600" in out, out
    kek.unlink()
    out = serve_fails(srv)
    assert str(kek) in out and "No such file" in out, out
