# Reads secrets the broker keeps sealed at rest, the way an operator holding
# the key-encryption key could: the sealed-blob format of src/core/seal.h
# opened with python3-cryptography's AES-GCM, independently of certmq's code.
import sqlite3

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

HEADER_LEN, NONCE_LEN = 13, 12


def unseal(kek, blob, context):
    blob = bytes(blob)
    assert blob[:5] == b"CMQS\x01", blob[:5]
    header, nonce, rest = blob[:HEADER_LEN], blob[HEADER_LEN:HEADER_LEN + NONCE_LEN], \
        blob[HEADER_LEN + NONCE_LEN:]
    return AESGCM(kek).decrypt(nonce, rest, header + context.encode())


def token_key_row(db_path, tenant):
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return db.execute("SELECT priv_pem, priv_sealed, pub_pem FROM token_keys WHERE tenant = ?",
                          (tenant,)).fetchone()
    finally:
        db.close()


def token_private_key(data_dir, tenant, kek_path=None):
    """The tenant's device-token signing key (PEM), opened with the KEK."""
    row = token_key_row(data_dir / "certmq.db", tenant)
    assert row, "no token key stored for the tenant"
    assert row[0] == "", "a plaintext private key is stored"
    kek = (kek_path or data_dir / "kek").read_bytes()
    return unseal(kek, row[1], f"device-token-key:{tenant}").decode()
