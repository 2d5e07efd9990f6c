# Certificate lifecycle through the tenant CA and EST (RFC 7030), with
# clients nobody here wrote: curl for HTTP, `openssl req` for every CSR,
# `openssl pkcs7 -print_certs` on the answers, mosquitto_pub connecting with
# the enrolled certificate. Covers the tenant CA resource, one-time
# enrollment tokens, simpleenroll / simplereenroll in both URL forms, the
# issuance records, and each bad input's clear refusal that issues nothing.
import base64
import sqlite3
import subprocess
import time

import pytest

from apiserver import assert_json_error, make_tenant
from conftest import TIMEOUT
from test_tokens import DeviceServer, request_token

TENANT = "life1"
OTHER = "life2"
PKCS7 = "application/pkcs7-mime"


@pytest.fixture(scope="module")
def srv(tmp_path_factory, certs):
    s = DeviceServer(tmp_path_factory.mktemp("lifecycle"), certs).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def admin(srv):
    auth = make_tenant(srv, TENANT)
    r = srv.call("POST", "/certificate-authority", auth)
    assert r.status == 201, r
    return auth


@pytest.fixture(scope="module")
def other_admin(srv):
    auth = make_tenant(srv, OTHER)
    r = srv.call("POST", "/certificate-authority", auth, {"keyAlgorithm": "RSA", "keySize": 3072})
    assert r.status == 201, r
    return auth


def run(cmd, data=None):
    r = subprocess.run(cmd, input=data, capture_output=True, timeout=60)
    assert r.returncode == 0, (cmd, r.stderr.decode())
    return r.stdout


def make_csr(d, cn, key="ec", name=None):
    """openssl req: a new key and a CSR for CN; returns (key path, base64 DER)."""
    name = name or cn
    keyf = d / f"{name}.key"
    newkey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"] if key == "ec" \
        else ["-newkey", key]
    der = run(["openssl", "req", "-new", *newkey, "-nodes", "-keyout", str(keyf),
               "-subj", f"/CN={cn}", "-outform", "DER"])
    return keyf, base64.encodebytes(der)


def token_for(srv, auth, device, tenant=TENANT, validity=86400):
    r = srv.call("POST", f"/tenant/tenants/{tenant}/enrollment-tokens", auth,
                 {"deviceId": device, "validitySeconds": validity})
    assert r.status == 201, r
    return r.json


def est(srv, path, body, auth=None, bearer=None):
    headers = {"Content-Type": "application/pkcs10"}
    if bearer:
        headers["Authorization"] = f"Bearer {bearer}"
    return srv.call("POST", "/.well-known/est" + path, auth, data=body, headers=headers)


def print_certs(body):
    """The PEM certificates of a base64 certs-only PKCS#7, by openssl."""
    der = base64.b64decode(body)
    return run(["openssl", "pkcs7", "-inform", "DER", "-print_certs"], der).decode()


def split_pem(text):
    out, cur = [], []
    for line in text.splitlines():
        if line.startswith("-----BEGIN CERTIFICATE"):
            cur = [line]
        elif line.startswith("-----END CERTIFICATE"):
            out.append("\n".join(cur + [line]) + "\n")
            cur = []
        elif cur:
            cur.append(line)
    return out


def cert_text(pem):
    return run(["openssl", "x509", "-noout", "-text"], pem.encode()).decode()


def issued_count(srv, auth):
    r = srv.call("GET", "/certificate-authority/issued-certificates?pageSize=2000", auth)
    assert r.status == 200, r
    return len(r.json["certificates"])


def enroll(srv, auth, d, device, path="/simpleenroll"):
    tok = token_for(srv, auth, device)
    keyf, csr = make_csr(d, device)
    r = est(srv, path, csr, auth=(device, tok["token"]))
    assert r.status == 200, r
    assert r.headers["content-type"].startswith(PKCS7), r.headers
    assert "smime-type=certs-only" in r.headers["content-type"]
    assert r.headers["content-transfer-encoding"] == "base64"
    chain = d / f"{device}.chain.pem"
    chain.write_text(print_certs(r.body))
    return keyf, chain


def mosquitto_pub(srv, certs, chain, keyf, client_id, topic="s/us", msg="100,hello"):
    return subprocess.run(
        ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(srv.mqtt_port), "--cafile", certs.ca_pem,
         "--cert", str(chain), "--key", str(keyf), "-i", client_id, "-t", topic, "-m", msg,
         "-q", "1"], capture_output=True, timeout=TIMEOUT + 5)


# ---------------------------------------------------------------- the tenant CA

def test_tenant_ca_is_a_trusted_certificate_with_auto_registration_and_pop(srv, admin):
    r = srv.call("GET", "/certificate-authority", admin)
    assert r.status == 200, r
    ca = r.json
    assert ca["tenantCertificateAuthority"] is True
    assert ca["autoRegistrationEnabled"] is True
    assert ca["proofOfPossessionValid"] is True
    assert ca["status"] == "ENABLED"
    assert ca["algorithmName"].upper().startswith("EC")
    assert "PRIVATE" not in r.body.decode()
    listed = srv.call("GET", f"/tenant/tenants/{TENANT}/trusted-certificates", admin).json
    flags = {c["fingerprint"]: c["tenantCertificateAuthority"] for c in listed["certificates"]}
    assert flags == {ca["fingerprint"]: True}


def test_second_ca_is_a_conflict(srv, admin):
    assert_json_error(srv.call("POST", "/certificate-authority", admin), 409)


def test_rsa_ca_on_request_and_bad_key_choice_refused(srv, other_admin):
    r = srv.call("GET", "/certificate-authority", other_admin)
    assert r.status == 200 and r.json["algorithmName"].upper().startswith("RSA"), r
    t = make_tenant(srv, "life3")
    assert_json_error(srv.call("POST", "/certificate-authority", t,
                               {"keyAlgorithm": "RSA", "keySize": 1024}), 422)
    assert_json_error(srv.call("GET", "/certificate-authority", t), 404)


def test_ca_key_is_stored_sealed(srv, admin):
    db = sqlite3.connect(srv.data / "certmq.db")
    try:
        (blob,) = db.execute("SELECT key_sealed FROM tenant_ca WHERE tenant = ?",
                             (TENANT,)).fetchone()
    finally:
        db.close()
    assert blob[:4] == b"CMQS"
    assert b"PRIVATE KEY" not in blob


def test_renew_outside_window_refused_then_forced(srv, other_admin):
    before = srv.call("GET", "/certificate-authority", other_admin).json
    assert_json_error(srv.call("POST", "/certificate-authority/renew", other_admin), 422)
    r = srv.call("POST", "/certificate-authority/renew?force=true", other_admin)
    assert r.status == 200, r
    assert r.json["fingerprint"] != before["fingerprint"]
    assert r.json["subject"] == before["subject"]
    # same key: the public key of both certificates is the same
    def pub(c):
        pem = "-----BEGIN CERTIFICATE-----\n" + c["certInPemFormat"] + "\n-----END CERTIFICATE-----\n"
        return run(["openssl", "x509", "-noout", "-pubkey"], pem.encode())
    assert pub(r.json) == pub(before)


def test_delete_needs_confirmation_and_removes_trust(srv):
    t = make_tenant(srv, "life4")
    assert srv.call("POST", "/certificate-authority", t).status == 201
    fp = srv.call("GET", "/certificate-authority", t).json["fingerprint"]
    assert_json_error(srv.call("DELETE", "/certificate-authority", t), 400)
    assert srv.call("DELETE", "/certificate-authority?confirm=true", t).status == 204
    assert_json_error(srv.call("GET", "/certificate-authority", t), 404)
    assert srv.call("GET", f"/tenant/tenants/life4/trusted-certificates/{fp}", t).status == 404


# ---------------------------------------------------------------- enrollment tokens

def test_enrollment_token_is_shown_once_and_stored_as_hash(srv, admin):
    tok = token_for(srv, admin, "dev-hash", validity=600)
    assert tok["deviceId"] == "dev-hash" and len(tok["token"]) >= 32
    assert tok["validUntil"].endswith("Z")
    db = sqlite3.connect(srv.data / "certmq.db")
    try:
        rows = db.execute("SELECT * FROM enroll_tokens").fetchall()
    finally:
        db.close()
    assert rows and tok["token"] not in repr(rows)


def test_enrollment_token_validity_is_bounded(srv, admin):
    r = srv.call("POST", f"/tenant/tenants/{TENANT}/enrollment-tokens", admin,
                 {"deviceId": "dev-x", "validitySeconds": 10 ** 9})
    assert_json_error(r, 422)
    r = srv.call("POST", f"/tenant/tenants/{TENANT}/enrollment-tokens", admin,
                 {"deviceId": "bad:id", "validitySeconds": 60})
    assert_json_error(r, 422)


def test_other_tenant_admin_cannot_make_tokens_here(srv, admin, other_admin):
    r = srv.call("POST", f"/tenant/tenants/{TENANT}/enrollment-tokens", other_admin,
                 {"deviceId": "dev-y", "validitySeconds": 60})
    assert_json_error(r, 403)


# ---------------------------------------------------------------- EST

def test_cacerts_labelled_and_by_credential(srv, admin, tmp_path):
    ca = srv.call("GET", "/certificate-authority", admin).json
    r = srv.call("GET", f"/.well-known/est/{TENANT}/cacerts")
    assert r.status == 200, r
    assert r.headers["content-type"].startswith(PKCS7)
    pems = split_pem(print_certs(r.body))
    assert len(pems) == 1
    assert ca["certInPemFormat"] in pems[0].replace("\n", "")
    assert_json_error(srv.call("GET", "/.well-known/est/cacerts"), 400)
    tok = token_for(srv, admin, "dev-cacerts")
    r = srv.call("GET", "/.well-known/est/cacerts", ("dev-cacerts", tok["token"]))
    assert r.status == 200 and split_pem(print_certs(r.body)) == pems, r


def test_enroll_with_curl_and_openssl_then_connect_with_mosquitto(srv, admin, certs, tmp_path):
    n0 = issued_count(srv, admin)
    keyf, chain = enroll(srv, admin, tmp_path, "dev-1")
    pems = split_pem(chain.read_text())
    assert len(pems) == 2  # the certificate, then the tenant CA
    text = cert_text(pems[0])
    assert "Subject: CN = dev-1" in text
    assert "TLS Web Client Authentication" in text
    assert "CA:FALSE" in text
    assert f"/certificate-authority/{TENANT}/crl" in text  # CRL distribution point
    ca = srv.call("GET", "/certificate-authority", admin).json
    assert ca["certInPemFormat"] in pems[1].replace("\n", "")
    # validity: the tenant's default of 365 days
    end = run(["openssl", "x509", "-noout", "-enddate"], pems[0].encode()).decode()
    not_after = time.mktime(time.strptime(end.strip().split("=", 1)[1], "%b %d %H:%M:%S %Y %Z"))
    assert abs(not_after - time.time() - 365 * 86400) < 2 * 86400
    r = mosquitto_pub(srv, certs, chain, keyf, "dev-1")
    assert r.returncode == 0, (r.stderr, srv.stderr()[-2000:])
    recs = srv.call("GET", "/certificate-authority/issued-certificates", admin).json
    assert issued_count(srv, admin) == n0 + 1
    assert recs["certificates"][0]["commonName"] == "dev-1"
    assert recs["certificates"][0]["method"] == "est-enroll"


def test_enroll_labelled_url(srv, admin, certs, tmp_path):
    keyf, chain = enroll(srv, admin, tmp_path, "dev-label", path=f"/{TENANT}/simpleenroll")
    assert mosquitto_pub(srv, certs, chain, keyf, "dev-label").returncode == 0


def test_device_certificate_validity_follows_tenant_option(srv, admin, tmp_path):
    r = srv.call("POST", "/tenant/options", admin,
                 {"category": "certificate-authority", "key": "device-certificate.validity.days",
                  "value": "30"})
    assert r.status in (200, 201), r
    try:
        _, chain = enroll(srv, admin, tmp_path, "dev-30")
        pem = split_pem(chain.read_text())[0]
        end = run(["openssl", "x509", "-noout", "-enddate"], pem.encode()).decode()
        not_after = time.mktime(time.strptime(end.strip().split("=", 1)[1],
                                              "%b %d %H:%M:%S %Y %Z"))
        assert abs(not_after - time.time() - 30 * 86400) < 2 * 86400
    finally:
        srv.call("DELETE", "/tenant/options/certificate-authority/device-certificate.validity.days",
                 admin)


def refused(srv, admin, r, status, words):
    assert_json_error(r, status)
    assert words.lower() in r.json["message"].lower(), r
    srv.assert_alive()


def test_used_token_refused(srv, admin, tmp_path):
    tok = token_for(srv, admin, "dev-once")
    _, csr = make_csr(tmp_path, "dev-once")
    assert est(srv, "/simpleenroll", csr, auth=("dev-once", tok["token"])).status == 200
    n = issued_count(srv, admin)
    r = est(srv, "/simpleenroll", csr, auth=("dev-once", tok["token"]))
    refused(srv, admin, r, 401, "already used")
    assert issued_count(srv, admin) == n


def test_bad_inputs_issue_nothing_and_leave_the_token_usable(srv, admin, tmp_path):
    tok = token_for(srv, admin, "dev-bad")
    auth = ("dev-bad", tok["token"])
    n = issued_count(srv, admin)
    # wrong token, and a right token for another device id
    _, csr = make_csr(tmp_path, "dev-bad")
    refused(srv, admin, est(srv, "/simpleenroll", csr, auth=("dev-bad", "x" * 43)), 401,
            "invalid enrollment token")
    refused(srv, admin, est(srv, "/simpleenroll", csr, auth=("dev-other", tok["token"])), 401,
            "invalid enrollment token")
    refused(srv, admin, est(srv, "/simpleenroll", csr), 401, "deviceId")
    # CN mismatch
    _, other = make_csr(tmp_path, "someone-else")
    refused(srv, admin, est(srv, "/simpleenroll", other, auth=auth), 403, "common name")
    # weak key: RSA-1024
    _, weak = make_csr(tmp_path, "dev-bad", key="rsa:1024", name="weak")
    refused(srv, admin, est(srv, "/simpleenroll", weak, auth=auth), 422, "2048")
    # a CSR whose signature does not verify: the last byte of the DER flipped
    der = bytearray(base64.decodebytes(csr))
    der[-1] ^= 0x01
    refused(srv, admin, est(srv, "/simpleenroll", base64.encodebytes(bytes(der)), auth=auth), 400,
            "signature")
    # garbage base64
    refused(srv, admin, est(srv, "/simpleenroll", b"!!! not base64 ***", auth=auth), 400,
            "PKCS#10")
    # the token of this tenant on another tenant's label
    refused(srv, admin, est(srv, f"/{OTHER}/simpleenroll", csr, auth=auth), 403, "another tenant")
    assert issued_count(srv, admin) == n
    # none of that spent the token
    assert est(srv, "/simpleenroll", csr, auth=auth).status == 200


def test_expired_token_refused(srv, admin, tmp_path):
    tok = token_for(srv, admin, "dev-exp", validity=1)
    auth = ("dev-exp", tok["token"])
    _, csr = make_csr(tmp_path, "dev-exp")
    _, probe = make_csr(tmp_path, "not-dev-exp")
    n = issued_count(srv, admin)
    # A CSR for another CN is refused without spending the token: 403 while
    # the token is valid, 401 once it expired (one second after it was made).
    deadline = time.monotonic() + TIMEOUT
    while est(srv, "/simpleenroll", probe, auth=auth).status == 403:
        assert time.monotonic() < deadline, "the token never expired"
        time.sleep(0.1)
    refused(srv, admin, est(srv, "/simpleenroll", csr, auth=auth), 401, "expired")
    assert issued_count(srv, admin) == n


def test_reenroll_with_device_token_and_new_key(srv, admin, certs, clients, tmp_path):
    keyf, chain = enroll(srv, admin, tmp_path, "dev-re")
    c = clients("dev-re", tls={"cafile": certs.ca_pem, "certfile": str(chain),
                               "keyfile": str(keyf)})
    c.connect(srv.mqtt_port)
    jwt = request_token(c)
    c.disconnect()
    newkey, csr = make_csr(tmp_path, "dev-re", name="dev-re-new")
    r = est(srv, "/simplereenroll", csr, bearer=jwt)
    assert r.status == 200, r
    newchain = tmp_path / "dev-re-new.pem"
    newchain.write_text(print_certs(r.body))
    assert mosquitto_pub(srv, certs, newchain, newkey, "dev-re").returncode == 0
    recs = srv.call("GET", "/certificate-authority/issued-certificates", admin).json
    assert recs["certificates"][0]["method"] == "est-reenroll"
    # labelled form, the device's own tenant: also fine; another tenant: 403
    assert est(srv, f"/{TENANT}/simplereenroll", csr, bearer=jwt).status == 200
    n = issued_count(srv, admin)
    refused(srv, admin, est(srv, f"/{OTHER}/simplereenroll", csr, bearer=jwt), 403,
            "another tenant")
    # another device's CN, no token, a forged token
    _, other = make_csr(tmp_path, "dev-1", name="steal")
    refused(srv, admin, est(srv, "/simplereenroll", other, bearer=jwt), 403, "common name")
    refused(srv, admin, est(srv, "/simplereenroll", csr), 401, "token")
    refused(srv, admin, est(srv, "/simplereenroll", csr, bearer=jwt[:-4] + "AAAA"), 401, "token")
    assert issued_count(srv, admin) == n


def test_bulk_csv_enrollment_token_column(srv, admin, certs, tmp_path):
    csv = tmp_path / "devices.csv"
    csv.write_text("ID;AUTH_TYPE;TYPE;ENROLLMENT_TOKEN\n"
                   "dev-csv;CERTIFICATES;sensor;factory-secret-0001\n"
                   "dev-short;CERTIFICATES;sensor;short\n")
    r = srv.call("POST", "/devicecontrol/bulkNewDeviceRequests", admin, files={"file": csv})
    assert r.status == 201, r
    assert r.json["numberOfCreated"] == 1
    assert [f["deviceId"] for f in r.json["failedCreationList"]] == ["dev-short"]
    keyf, csr = make_csr(tmp_path, "dev-csv")
    r = est(srv, "/simpleenroll", csr, auth=("dev-csv", "factory-secret-0001"))
    assert r.status == 200, r
    chain = tmp_path / "dev-csv.pem"
    chain.write_text(print_certs(r.body))
    assert mosquitto_pub(srv, certs, chain, keyf, "dev-csv").returncode == 0
    refused(srv, admin, est(srv, "/simpleenroll", csr, auth=("dev-csv", "factory-secret-0001")),
            401, "already used")
    # the token is no device property and not stored in the clear
    db = sqlite3.connect(srv.data / "certmq.db")
    try:
        dump = "\n".join(db.iterdump())
    finally:
        db.close()
    assert "factory-secret-0001" not in dump


# ---------------------------------------------------------------- revocation

def serial_of(chain):
    pem = split_pem(chain.read_text())[0]
    out = run(["openssl", "x509", "-noout", "-serial"], pem.encode()).decode()
    return out.strip().split("=", 1)[1]


def crl_url(chain):
    text = cert_text(split_pem(chain.read_text())[0])
    line = [x for x in text.splitlines() if "URI:" in x][0]
    return line.split("URI:", 1)[1].strip()


def test_revoke_disconnects_refuses_and_lists_in_the_served_crl(srv, admin, certs, clients,
                                                                tmp_path):
    keyf, chain = enroll(srv, admin, tmp_path, "dev-rev")
    c = clients("dev-rev", tls={"cafile": certs.ca_pem, "certfile": str(chain),
                                "keyfile": str(keyf)})
    c.connect(srv.mqtt_port)
    serial = serial_of(chain)
    r = srv.call("POST", f"/certificate-authority/issued-certificates/{serial}/revoke", admin)
    assert r.status == 204, r
    assert c.disconnected.wait(TIMEOUT), "the revoked device stayed connected"
    assert mosquitto_pub(srv, certs, chain, keyf, "dev-rev").returncode != 0
    recs = srv.call("GET", "/certificate-authority/issued-certificates?pageSize=2000", admin).json
    assert [x["revoked"] for x in recs["certificates"] if x["serialNumberInHex"] == serial.lstrip("0")
            or x["serialNumberInHex"] == serial] == [True]
    # the CRL at the URL the certificate names, fetched without credentials
    url = crl_url(chain)
    assert url.startswith(f"http://localhost:{srv.port}/")
    crl = tmp_path / "tenant.crl"
    out = subprocess.run(["curl", "-sS", "-o", str(crl), "-w", "%{http_code}",
                          url.replace("localhost", "127.0.0.1")], capture_output=True)
    assert out.stdout == b"200", out
    ca = srv.call("GET", "/certificate-authority", admin).json
    capem = tmp_path / "ca.pem"
    capem.write_text("-----BEGIN CERTIFICATE-----\n" + ca["certInPemFormat"] +
                     "\n-----END CERTIFICATE-----\n")
    v = subprocess.run(["openssl", "crl", "-inform", "DER", "-in", str(crl), "-CAfile",
                        str(capem), "-noout", "-text"], capture_output=True, text=True)
    assert v.returncode == 0 and "verify OK" in v.stderr + v.stdout, v
    assert serial.upper().lstrip("0") in v.stdout.replace(":", "").upper(), v.stdout
    # openssl verify with that CRL says revoked too
    leaf = tmp_path / "leaf.pem"
    leaf.write_text(split_pem(chain.read_text())[0])
    crlpem = tmp_path / "crl.pem"
    crlpem.write_text(run(["openssl", "crl", "-inform", "DER", "-in", str(crl)]).decode())
    v = subprocess.run(["openssl", "verify", "-crl_check", "-CAfile", str(capem), "-CRLfile",
                        str(crlpem), str(leaf)], capture_output=True, text=True)
    assert v.returncode != 0 and "revoked" in (v.stdout + v.stderr).lower(), v


def test_revoked_device_cannot_reenroll_with_the_token_it_still_holds(srv, admin, certs, clients,
                                                                     tmp_path):
    """A device token outlives the revocation of the certificate it was
    given for: re-enrolling with it must not bring the device back."""
    keyf, chain = enroll(srv, admin, tmp_path, "dev-revtok")
    c = clients("dev-revtok", tls={"cafile": certs.ca_pem, "certfile": str(chain),
                                   "keyfile": str(keyf)})
    c.connect(srv.mqtt_port)
    jwt = request_token(c)
    c.disconnect()
    serial = serial_of(chain)
    r = srv.call("POST", f"/certificate-authority/issued-certificates/{serial}/revoke", admin)
    assert r.status == 204, r
    n = issued_count(srv, admin)
    _, csr = make_csr(tmp_path, "dev-revtok", name="dev-revtok-new")
    refused(srv, admin, est(srv, "/simplereenroll", csr, bearer=jwt), 403, "revoked")
    assert issued_count(srv, admin) == n


def test_revoke_unknown_serial_and_other_tenants_serial(srv, admin, other_admin, tmp_path):
    assert_json_error(srv.call("POST", "/certificate-authority/issued-certificates/ABCDEF/revoke",
                               admin), 404)
    _, chain = enroll(srv, admin, tmp_path, "dev-mine")
    r = srv.call("POST", f"/certificate-authority/issued-certificates/{serial_of(chain)}/revoke",
                 other_admin)
    assert_json_error(r, 404)
    assert_json_error(srv.call("GET", "/certificate-authority/nosuchtenant/crl"), 404)


def test_deleting_the_device_revokes_its_certificates(srv, admin, certs, tmp_path):
    keyf, chain = enroll(srv, admin, tmp_path, "dev-del")
    assert mosquitto_pub(srv, certs, chain, keyf, "dev-del").returncode == 0  # auto-registered
    r = srv.call("DELETE", f"/user/{TENANT}/users/device_dev-del", admin)
    assert r.status == 204, r
    # auto-registration would admit it again; the revocation keeps it out
    assert mosquitto_pub(srv, certs, chain, keyf, "dev-del").returncode != 0


# ---------------------------------------------------------------- renewal over MQTT

def pem_csr(d, cn, name, key="ec"):
    keyf = d / f"{name}.key"
    newkey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"] if key == "ec" \
        else ["-newkey", key]
    pem = run(["openssl", "req", "-new", *newkey, "-nodes", "-keyout", str(keyf), "-subj",
               f"/CN={cn}"])
    return keyf, pem


def test_renewal_over_mqtt_with_paho(srv, admin, certs, clients, tmp_path):
    keyf, chain = enroll(srv, admin, tmp_path, "dev-mq")
    c = clients("dev-mq", tls={"cafile": certs.ca_pem, "certfile": str(chain),
                               "keyfile": str(keyf)})
    c.connect(srv.mqtt_port)
    c.subscribe("s/dcr", 0)
    c.subscribe("s/e", 0)
    n = issued_count(srv, admin)
    newkey, csr = pem_csr(tmp_path, "dev-mq", "dev-mq-new")
    c.publish("s/ucr", csr, qos=1)
    m = c.get_on("s/dcr")
    pems = split_pem(m.payload.decode())
    assert len(pems) == 2
    assert "Subject: CN = dev-mq" in cert_text(pems[0])
    newchain = tmp_path / "dev-mq-new.pem"
    newchain.write_text("".join(pems))
    # (another ClientId of the same device: "dev-mq" would take over c's session)
    assert mosquitto_pub(srv, certs, newchain, newkey, "d:dev-mq").returncode == 0
    recs = srv.call("GET", "/certificate-authority/issued-certificates", admin).json
    assert recs["certificates"][0]["method"] == "mqtt-renew"
    assert issued_count(srv, admin) == n + 1
    # the base64 DER form (as EST sends it) works too
    _, der_b64 = make_csr(tmp_path, "dev-mq", name="dev-mq-b64")
    c.publish("s/ucr", der_b64, qos=1)
    assert len(split_pem(c.get_on("s/dcr").payload.decode())) == 2


def test_renewal_over_mqtt_refusals_name_the_reason(srv, admin, certs, clients, tmp_path):
    keyf, chain = enroll(srv, admin, tmp_path, "dev-mqbad")
    c = clients("dev-mqbad", tls={"cafile": certs.ca_pem, "certfile": str(chain),
                                  "keyfile": str(keyf)})
    c.connect(srv.mqtt_port)
    c.subscribe("s/dcr", 0)
    c.subscribe("s/e", 0)
    n = issued_count(srv, admin)
    cases = [(pem_csr(tmp_path, "someone-else", "mq-other")[1], "common name"),
             (pem_csr(tmp_path, "dev-mqbad", "mq-weak", key="rsa:1024")[1], "2048"),
             (b"!!! not a csr", "PKCS#10")]
    for payload, words in cases:
        c.publish("s/ucr", payload, qos=1)
        text = c.get_on("s/e").payload.decode()
        code, template, message = text.split(",", 2)
        assert code == "40" and template == "0" and words.lower() in message.lower(), text
    assert [m for m in c.drain() if m.topic == "s/dcr"] == []
    assert issued_count(srv, admin) == n
    # a tenant user (password login) gets no certificate either
    u = clients("mq-user", tls={"cafile": certs.ca_pem}, username=f"{TENANT}/admin",
                password=admin[1])
    u.connect(srv.mqtt_port)
    u.subscribe("s/e", 0)
    u.publish("s/ucr", pem_csr(tmp_path, "admin", "mq-admin")[1], qos=1)
    assert u.get_on("s/e").payload.decode().startswith("40,0,")
    assert issued_count(srv, admin) == n


# ---------------------------------------------------------------- expiry

def test_renewal_notice_once_per_connection_within_the_window(srv, admin, certs, clients,
                                                               tmp_path):
    keyf, chain = enroll(srv, admin, tmp_path, "dev-old")
    tls = {"cafile": certs.ca_pem, "certfile": str(chain), "keyfile": str(keyf)}
    # 365 days left, default window 30 days: no notice
    c = clients("dev-old", tls=tls)
    c.connect(srv.mqtt_port)
    c.subscribe("s/ds", 0)
    c.publish("s/us", b"100,hello", qos=1)
    assert [m for m in c.drain() if m.topic == "s/ds"] == []
    c.disconnect()
    r = srv.call("POST", "/tenant/options", admin,
                 {"category": "certificate-authority", "key": "renewal.window.days",
                  "value": "400"})
    assert r.status in (200, 201), r
    try:
        c = clients("dev-old", tls=tls)
        c.connect(srv.mqtt_port)
        c.subscribe("s/ds", 0)
        c.publish("s/us", b"100,hello", qos=1)
        text = c.get_on("s/ds").payload.decode()
        code, when, message = text.split(",", 2)
        assert code == "73" and when.endswith("Z") and "s/ucr" in message, text
        c.publish("s/us", b"100,again", qos=1)
        assert [m for m in c.drain() if m.topic == "s/ds"] == []  # once per connection
        from apiserver import ADMIN
        metrics = srv.call("GET", "/metrics", ADMIN).body.decode()
        notices = [x for x in metrics.splitlines()
                   if x.startswith("certmq_certificate_renewal_notices_total ")]
        assert notices and int(notices[0].split()[1]) >= 1, metrics[-2000:]
        assert 'certmq_certificates_issued_total{method="est-enroll"}' in metrics
        assert 'certmq_device_certificates_expiring{within_days="30"}' in metrics
        # devices listed as expiring within 400 days include it
        r = srv.call("GET", "/devices?expiringWithinDays=400&pageSize=2000", admin)
        assert r.status == 200, r
        assert "dev-old" in r.body.decode()
    finally:
        srv.call("DELETE", "/tenant/options/certificate-authority/renewal.window.days", admin)


def test_token_of_a_tenant_without_ca_is_not_spent(srv, tmp_path):
    t = make_tenant(srv, "life5")
    tok = token_for(srv, t, "dev-noca", tenant="life5")
    _, csr = make_csr(tmp_path, "dev-noca")
    r = est(srv, "/simpleenroll", csr, auth=("dev-noca", tok["token"]))
    assert_json_error(r, 404)
    assert srv.call("POST", "/certificate-authority", t).status == 201
    assert est(srv, "/simpleenroll", csr, auth=("dev-noca", tok["token"])).status == 200


def test_expiring_devices_gauge(srv, admin, certs, tmp_path):
    from apiserver import ADMIN

    def gauge(days):
        text = srv.call("GET", "/metrics", ADMIN).body.decode()
        line = f'certmq_device_certificates_expiring{{within_days="{days}"}} '
        return int([x for x in text.splitlines() if x.startswith(line)][0].split()[1])

    before = gauge(7)
    r = srv.call("POST", "/tenant/options", admin,
                 {"category": "certificate-authority", "key": "device-certificate.validity.days",
                  "value": "2"})
    assert r.status in (200, 201), r
    try:
        keyf, chain = enroll(srv, admin, tmp_path, "dev-soon")
    finally:
        srv.call("DELETE", "/tenant/options/certificate-authority/device-certificate.validity.days",
                 admin)
    assert mosquitto_pub(srv, certs, chain, keyf, "dev-soon").returncode == 0
    assert gauge(7) == before + 1
    assert gauge(0) == 0 or gauge(0) < gauge(7)


def test_zz_tenant_ca_survives_a_restart(srv, admin, certs, tmp_path):
    """Last in the module: restarts the server. The sealed CA key is opened
    again with the key-encryption key in the data dir."""
    before = srv.call("GET", "/certificate-authority", admin).json
    srv.stop()
    srv.start()
    listed = srv.call("GET", f"/tenant/tenants/{TENANT}/trusted-certificates?pageSize=100",
                      admin).json
    assert {c["fingerprint"] for c in listed["certificates"]
            if c["tenantCertificateAuthority"]} == {before["fingerprint"]}
    keyf, chain = enroll(srv, admin, tmp_path, "dev-after-restart")
    assert mosquitto_pub(srv, certs, chain, keyf, "dev-after-restart").returncode == 0
