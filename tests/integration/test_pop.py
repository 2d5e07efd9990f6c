# Proof of possession of a trusted CA, end to end with curl and the openssl
# CLI: fresh random verification codes with an expiry, signatures made by the
# openssl pipeline the README shows (RSA and EC, with and without a trailing
# newline) and by `certmq pki pop-sign`, refusals that leave the certificate
# unchanged, the management admin's audited override, and the chain policy's
# tenant choice following the proof (a paho device admitted or refused).
import base64
import datetime
import re
import subprocess
import time

import pytest

from apiserver import ADMIN, assert_json_error, make_tenant, upload_ca
from conftest import CERTMQ_BIN, Client
from test_tokens import DeviceServer, device

CODE_OPTION = "/tenant/options/proof-of-possession/verification-code.lifespan.seconds"


@pytest.fixture(scope="module")
def srv(tmp_path_factory, certs):
    s = DeviceServer(tmp_path_factory.mktemp("pop"), certs).start()
    yield s
    s.stop()


_n = [0]


def tenant(srv):
    """A fresh tenant and its admin's credentials."""
    _n[0] += 1
    tid = f"pop{_n[0]}"
    return tid, make_tenant(srv, tid)


def make_ca(d, kind="rsa", name=None):
    """A self-signed CA made with the openssl CLI; returns (cert path, key path)."""
    name = name or f"ca-{kind}-{time.monotonic_ns()}"
    key, crt = d / f"{name}.key", d / f"{name}.pem"
    newkey = ["-newkey", "rsa:2048"] if kind == "rsa" else [
        "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
    subprocess.run(["openssl", "req", "-x509", *newkey, "-nodes", "-keyout", str(key), "-out",
                    str(crt), "-days", "30", "-subj", f"/CN={name}", "-addext",
                    "basicConstraints=critical,CA:TRUE", "-addext",
                    "keyUsage=critical,keyCertSign,cRLSign"],
                   check=True, capture_output=True)
    return str(crt), str(key)


def trusted(srv, tmp_path, kind="rsa"):
    """(tenant id, admin auth, fingerprint, CA key) for a fresh tenant trusting a fresh CA."""
    tid, auth = tenant(srv)
    crt, key = make_ca(tmp_path, kind)
    r = upload_ca(srv, tid, auth, crt, auto=False)
    assert r.status == 201, r
    return tid, auth, r.json["fingerprint"], key


def base(tid, fp):
    return f"/tenant/tenants/{tid}/trusted-certificates-pop/{fp}"


def new_code(srv, tid, auth, fp):
    r = srv.call("POST", base(tid, fp) + "/verification-code", auth)
    assert r.status == 200, r
    return r.json


def get_cert(srv, tid, auth, fp):
    r = srv.call("GET", f"/tenant/tenants/{tid}/trusted-certificates/{fp}", auth)
    assert r.status == 200, r
    return r.json


def upload(srv, tid, auth, fp, signature):
    return srv.call("POST", base(tid, fp) + "/pop", auth,
                    {"proofOfPossessionSignedVerificationCode": signature})


def openssl_sign(code, key):
    """The README pipeline: printf %s CODE | openssl dgst -sha256 -sign KEY | base64 -w0"""
    r = subprocess.run(f"printf %s '{code}' | openssl dgst -sha256 -sign '{key}' | base64 -w0",
                       shell=True, check=True, capture_output=True, text=True)
    return r.stdout


def iso(s):
    return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


# ---------------------------------------------------------------- codes

def test_each_call_gives_a_fresh_random_code_with_an_expiry(srv, tmp_path):
    tid, auth, fp, _ = trusted(srv, tmp_path)
    c = get_cert(srv, tid, auth, fp)
    assert c["proofOfPossessionValid"] is False
    assert c["proofOfPossessionUnsignedVerificationCode"] is None
    codes = set()
    for _ in range(5):
        before = time.time()
        j = new_code(srv, tid, auth, fp)
        code = j["proofOfPossessionUnsignedVerificationCode"]
        assert re.fullmatch(r"[0-9a-f]{64}", code), code  # 256 bits
        until = iso(j["proofOfPossessionVerificationCodeUsableUntil"])
        assert before + 600 - 2 <= until <= time.time() + 600 + 1  # default 10 minutes
        assert j["proofOfPossessionValid"] is False
        codes.add(code)
    assert len(codes) == 5
    assert get_cert(srv, tid, auth, fp)["proofOfPossessionUnsignedVerificationCode"] == code


def test_code_lifespan_is_a_tenant_option(srv, tmp_path):
    tid, auth, fp, _ = trusted(srv, tmp_path)
    for bad in ("0", "-1", "abc", "10m", "", "604801"):
        assert_json_error(srv.call("PUT", CODE_OPTION, auth, {"value": bad}), 422)
    assert srv.call("PUT", CODE_OPTION, auth, {"value": 900}).status == 200
    before = time.time()
    until = iso(new_code(srv, tid, auth, fp)["proofOfPossessionVerificationCodeUsableUntil"])
    assert before + 900 - 2 <= until <= time.time() + 900 + 1


def test_code_routes_need_the_tenants_admin(srv, tmp_path):
    tid, auth, fp, key = trusted(srv, tmp_path)
    _, stranger = tenant(srv)
    assert srv.call("POST", base(tid, fp) + "/verification-code").status == 401
    assert_json_error(srv.call("POST", base(tid, fp) + "/verification-code", stranger), 403)
    code = new_code(srv, tid, auth, fp)["proofOfPossessionUnsignedVerificationCode"]
    assert_json_error(upload(srv, tid, stranger, fp, openssl_sign(code, key)), 403)
    assert_json_error(srv.call("POST", base(tid, "ab" * 20) + "/verification-code", auth), 404)
    assert_json_error(srv.call("POST", base(tid, "xyz") + "/verification-code", auth), 404)
    assert get_cert(srv, tid, auth, fp)["proofOfPossessionValid"] is False
    # the management admin may act for any tenant
    assert new_code(srv, tid, ADMIN, fp)["proofOfPossessionUnsignedVerificationCode"] != code


# ---------------------------------------------------------------- accepted proofs

@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_openssl_pipeline_signature_is_accepted(srv, tmp_path, kind):
    tid, auth, fp, key = trusted(srv, tmp_path, kind)
    code = new_code(srv, tid, auth, fp)["proofOfPossessionUnsignedVerificationCode"]
    r = upload(srv, tid, auth, fp, openssl_sign(code, key))
    assert r.status == 200, r
    assert r.json["proofOfPossessionValid"] is True
    c = get_cert(srv, tid, auth, fp)
    assert c["proofOfPossessionValid"] is True
    assert c["proofOfPossessionUnsignedVerificationCode"] is None  # a code proves once


@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_signature_of_echoed_code_file_wrapped_base64_is_accepted(srv, tmp_path, kind):
    # The guide's way: echo CODE > f.txt (adds a newline), sign the file,
    # plain `base64` (76-column lines).
    tid, auth, fp, key = trusted(srv, tmp_path, kind)
    code = new_code(srv, tid, auth, fp)["proofOfPossessionUnsignedVerificationCode"]
    f, sig = tmp_path / "code.txt", tmp_path / "code.sig"
    subprocess.run(f"echo {code} > {f}", shell=True, check=True)
    subprocess.run(["openssl", "dgst", "-sha256", "-sign", key, "-out", str(sig), str(f)],
                   check=True)
    b64 = subprocess.run(["base64", str(sig)], check=True, capture_output=True,
                         text=True).stdout
    assert kind == "ec" or "\n" in b64.strip()  # RSA-2048: wrapped over several lines
    r = upload(srv, tid, auth, fp, b64)
    assert r.status == 200, r
    assert get_cert(srv, tid, auth, fp)["proofOfPossessionValid"] is True


@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_certmq_pki_pop_sign_output_is_accepted(srv, tmp_path, kind):
    tid, auth, fp, key = trusted(srv, tmp_path, kind)
    code = new_code(srv, tid, auth, fp)["proofOfPossessionUnsignedVerificationCode"]
    r = subprocess.run([CERTMQ_BIN, "pki", "pop-sign", "--key", key, "--code", code],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert upload(srv, tid, auth, fp, r.stdout.strip()).status == 200
    assert get_cert(srv, tid, auth, fp)["proofOfPossessionValid"] is True


# ---------------------------------------------------------------- refused proofs

def assert_refused_unchanged(srv, tid, auth, fp, signature, code):
    before = get_cert(srv, tid, auth, fp)
    assert_json_error(upload(srv, tid, auth, fp, signature), 422)
    after = get_cert(srv, tid, auth, fp)
    assert after == before
    assert after["proofOfPossessionValid"] is False
    assert after["proofOfPossessionUnsignedVerificationCode"] == code


def test_wrong_signatures_are_refused_and_change_nothing(srv, tmp_path, certs):
    tid, auth, fp, key = trusted(srv, tmp_path)
    code = new_code(srv, tid, auth, fp)["proofOfPossessionUnsignedVerificationCode"]
    good = openssl_sign(code, key)
    raw = bytearray(base64.b64decode(good))
    raw[len(raw) // 2] ^= 0x01
    for bad in [
            base64.b64encode(bytes(raw)).decode(),         # one bit flipped
            openssl_sign(code, certs.untrusted_ca_key),    # another key
            openssl_sign(code[:-1] + "0" if code[-1] != "0" else code[:-1] + "1", key),
            openssl_sign(code + "\n\n", key),              # more than one newline
            base64.b64encode(b"\x00" * 256).decode(),
            "not base64 at all!",
            "QUJD=QUJD",                                   # data after padding
            ""]:
        assert_refused_unchanged(srv, tid, auth, fp, bad, code)
    for body in ({}, {"proofOfPossessionSignedVerificationCode": 5}, {"other": good}):
        assert_json_error(srv.call("POST", base(tid, fp) + "/pop", auth, body), 422)
    r = srv.call("POST", base(tid, fp) + "/pop", auth, data=b"{nope",
                 headers={"Content-Type": "application/json"})
    assert r.status in (400, 422), r
    # the code is still usable after all the refusals
    assert upload(srv, tid, auth, fp, good).status == 200


def test_replaced_code_is_stale(srv, tmp_path):
    tid, auth, fp, key = trusted(srv, tmp_path)
    old = new_code(srv, tid, auth, fp)["proofOfPossessionUnsignedVerificationCode"]
    current = new_code(srv, tid, auth, fp)["proofOfPossessionUnsignedVerificationCode"]
    assert_refused_unchanged(srv, tid, auth, fp, openssl_sign(old, key), current)
    assert upload(srv, tid, auth, fp, openssl_sign(current, key)).status == 200


def test_expired_code_is_refused(srv, tmp_path):
    tid, auth, fp, key = trusted(srv, tmp_path)
    assert srv.call("PUT", CODE_OPTION, auth, {"value": "1"}).status == 200
    code = new_code(srv, tid, auth, fp)["proofOfPossessionUnsignedVerificationCode"]
    time.sleep(2.1)
    assert_refused_unchanged(srv, tid, auth, fp, openssl_sign(code, key), code)


def test_used_or_missing_code_is_refused(srv, tmp_path):
    tid, auth, fp, key = trusted(srv, tmp_path)
    assert_json_error(upload(srv, tid, auth, fp, openssl_sign("0" * 64, key)), 422)
    code = new_code(srv, tid, auth, fp)["proofOfPossessionUnsignedVerificationCode"]
    sig = openssl_sign(code, key)
    assert upload(srv, tid, auth, fp, sig).status == 200
    assert_json_error(upload(srv, tid, auth, fp, sig), 422)  # replayed
    assert get_cert(srv, tid, auth, fp)["proofOfPossessionValid"] is True


# ---------------------------------------------------------------- operator override

def test_only_the_management_admin_confirms_and_it_is_logged(srv, tmp_path):
    tid, auth, fp, _ = trusted(srv, tmp_path)
    assert_json_error(srv.call("POST", base(tid, fp) + "/confirmed", auth), 403)
    assert get_cert(srv, tid, auth, fp)["proofOfPossessionValid"] is False
    assert_json_error(srv.call("POST", base(tid, "ab" * 20) + "/confirmed", ADMIN), 404)
    r = srv.call("POST", base(tid, fp) + "/confirmed", ADMIN)
    assert r.status == 200, r
    assert r.json["proofOfPossessionValid"] is True
    assert get_cert(srv, tid, auth, fp)["proofOfPossessionValid"] is True
    deadline = time.monotonic() + 5
    while True:
        logs = srv.stdout() + srv.stderr()
        line = [x for x in logs.splitlines() if fp in x and "confirmed" in x]
        if line or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert line and "management/admin" in line[0] and tid in line[0], logs[-2000:]


# ---------------------------------------------------------------- tenant choice

def device_rc(srv, certs):
    c = Client("device1", tls=device(certs))
    try:
        rc = c.connect(srv.mqtt_port, expect_rc=None)  # a CONNACK must arrive
        srv.assert_alive()
        return rc
    finally:
        c.close()


def device_users(srv, tid, auth):
    r = srv.call("GET", f"/user/{tid}/users?pageSize=100", auth)
    assert r.status == 200, r
    return [u["userName"] for u in r.json["users"]]


def test_tenant_choice_follows_the_proof(srv, certs):
    # Two tenants trust the suite's CA (the one device1 chains to); a uploaded
    # first without auto registration: device1 is a's, unregistered (b's
    # unproven duplicate neither takes it nor makes it ambiguous).
    a, a_auth = tenant(srv)
    b, b_auth = tenant(srv)
    for tid, auth, auto in ((a, a_auth, False), (b, b_auth, True)):
        assert upload_ca(srv, tid, auth, certs.ca_pem, auto=auto).status == 201
    assert device_rc(srv, certs) == 5
    assert f'tenant={a} cn=device1' in srv.stderr()
    assert "ambiguous" not in srv.stderr()
    # b proves possession of the CA key (pop-sign): device1 is b's device now
    fp = get_cert_list(srv, b, b_auth)[0]["fingerprint"]
    code = new_code(srv, b, b_auth, fp)["proofOfPossessionUnsignedVerificationCode"]
    sig = subprocess.run([CERTMQ_BIN, "pki", "pop-sign", "--key", certs.ca_key, "--code", code],
                         capture_output=True, text=True, timeout=30, check=True).stdout.strip()
    assert upload(srv, b, b_auth, fp, sig).status == 200
    assert device_rc(srv, certs) == 0
    assert "device_device1" in device_users(srv, b, b_auth)
    assert "device_device1" not in device_users(srv, a, a_auth)
    # the operator confirms a's proof too: both proven, and device1, now
    # registered in b, stays with b
    assert srv.call("POST", base(a, fp) + "/confirmed", ADMIN).status == 200
    assert device_rc(srv, certs) == 0
    assert "device_device1" not in device_users(srv, a, a_auth)


def get_cert_list(srv, tid, auth):
    r = srv.call("GET", f"/tenant/tenants/{tid}/trusted-certificates", auth)
    assert r.status == 200, r
    return r.json["certificates"]
