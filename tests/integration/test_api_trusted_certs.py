# REST API: trusted certificates. Upload as the guide does it (PEM with line
# breaks, autoRegistrationEnabled as the string "true"), without line
# breaks, without BEGIN/END lines; the upload checks with their 422
# messages and 409; list paging; get, update, delete; bulk; isolation
# between tenants.
import datetime
import hashlib
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from apiserver import ADMIN, ApiServer, assert_json_error, make_tenant, upload_ca


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    s = ApiServer(tmp_path_factory.mktemp("api-certs")).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def t1(api):
    return make_tenant(api, "certs1")


def make_cert(path, key=None, ca=True, days_from=-1, days_to=365, cn="Test CA"):
    key = key or ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.timezone.utc)
    b = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now + datetime.timedelta(days=days_from))
         .not_valid_after(now + datetime.timedelta(days=days_to))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    cert = b.sign(key, hashes.SHA256())
    Path(path).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert


def fingerprint(pem_path):
    der = x509.load_pem_x509_certificate(Path(pem_path).read_bytes()).public_bytes(
        serialization.Encoding.DER)
    return hashlib.sha1(der).hexdigest()


def test_upload_as_in_the_guide_returns_the_platform_object(api, t1, certs):
    r = upload_ca(api, "certs1", t1, certs.ca_pem)
    assert r.status == 201, r
    c = r.json
    assert c["fingerprint"] == fingerprint(certs.ca_pem)
    assert c["status"] == "ENABLED"
    assert c["autoRegistrationEnabled"] is True
    assert c["name"] == "ca"
    assert c["version"] == 3
    assert c["algorithmName"] == "RSA"
    assert "CN=" in c["subject"] and "CN=" in c["issuer"]
    assert c["notBefore"].endswith("Z") and c["notAfter"].endswith("Z")
    assert c["self"].endswith(f"/tenant/tenants/certs1/trusted-certificates/{c['fingerprint']}")
    assert c["proofOfPossessionValid"] is False
    for key in ("serialNumber", "certInPemFormat", "proofOfPossessionUnsignedVerificationCode",
                "proofOfPossessionVerificationCodeUsableUntil"):
        assert key in c
    # The same certificate again in this tenant: 409.
    assert_json_error(upload_ca(api, "certs1", t1, certs.ca_pem), 409)


def test_upload_without_line_breaks_or_markers(api, t1, tmp_path):
    for i, strip in enumerate(("newlines", "markers")):
        p = tmp_path / f"ca{i}.pem"
        make_cert(p, cn=f"flat {i}")
        text = p.read_text()
        if strip == "newlines":
            text = text.replace("\n", "")
        else:
            text = "".join(l for l in text.splitlines() if "-----" not in l)
        r = api.call("POST", "/tenant/tenants/certs1/trusted-certificates", t1,
                     {"status": "ENABLED", "name": strip, "autoRegistrationEnabled": False,
                      "certInPemFormat": text})
        assert r.status == 201, r
        assert r.json["fingerprint"] == fingerprint(p)
        assert r.json["autoRegistrationEnabled"] is False


@pytest.mark.parametrize("kind,message", [
    ("not_pem", "PEM"),
    ("v1", "version 3"),
    ("not_ca", "CA:true"),
    ("rsa1024", "2048"),
    ("ec224", "256"),
    ("expired", "expired"),
])
def test_upload_refusals_name_the_rule(api, t1, tmp_path, kind, message):
    p = tmp_path / f"{kind}.pem"
    if kind == "not_pem":
        p.write_text("this is not a certificate")
    elif kind == "v1":
        key = tmp_path / "v1.key"
        subprocess.run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                        "-out", str(tmp_path / "v1.csr"), "-subj", "/CN=v1"], check=True,
                       capture_output=True)
        subprocess.run(["openssl", "x509", "-req", "-in", str(tmp_path / "v1.csr"), "-signkey",
                        str(key), "-days", "30", "-out", str(p)], check=True, capture_output=True)
    elif kind == "not_ca":
        make_cert(p, ca=False)
    elif kind == "rsa1024":
        make_cert(p, key=rsa.generate_private_key(65537, 1024))
    elif kind == "ec224":
        make_cert(p, key=ec.generate_private_key(ec.SECP224R1()))
    elif kind == "expired":
        make_cert(p, days_from=-30, days_to=-1)
    r = upload_ca(api, "certs1", t1, p)
    assert_json_error(r, 422)
    assert message in r.json["message"], r


def test_upload_of_two_certificates_is_refused_and_stores_nothing(api, tmp_path):
    auth = make_tenant(api, "certs-two")
    a, b = tmp_path / "a.pem", tmp_path / "b.pem"
    make_cert(a, cn="first of two")
    make_cert(b, cn="second of two")
    both = tmp_path / "both.pem"
    both.write_text(a.read_text() + b.read_text())
    r = upload_ca(api, "certs-two", auth, both)
    assert_json_error(r, 422)
    assert "2 certificates" in r.json["message"] and "bulk" in r.json["message"], r
    listed = api.call("GET", "/tenant/tenants/certs-two/trusted-certificates", auth)
    assert listed.status == 200 and listed.json["certificates"] == [], listed
    # The same two as one object of a bulk upload: refused there too, nothing stored.
    r = api.call("POST", "/tenant/tenants/certs-two/trusted-certificates/bulk", auth,
                 {"certificates": [{"name": "both", "certInPemFormat": both.read_text()}]})
    assert_json_error(r, 422)
    assert "certificates[0]" in r.json["message"], r
    # Each on its own is fine.
    assert upload_ca(api, "certs-two", auth, a).status == 201
    assert upload_ca(api, "certs-two", auth, b).status == 201


def test_certificate_name_with_control_characters_is_refused(api, t1, tmp_path):
    p = tmp_path / "named.pem"
    make_cert(p, cn="named")
    r = upload_ca(api, "certs1", t1, p, name="evil\x1b[2Jname")
    assert_json_error(r, 422)
    assert "control characters" in r.json["message"], r
    assert_json_error(api.call("GET", f"/tenant/tenants/certs1/trusted-certificates/"
                                      f"{fingerprint(p)}", t1), 404)


def test_list_paging_get_update_delete(api, tmp_path):
    auth = make_tenant(api, "certs2")
    fps = []
    for i in range(7):
        p = tmp_path / f"p{i}.pem"
        make_cert(p, cn=f"page {i}")
        assert upload_ca(api, "certs2", auth, p, name=f"n{i}").status == 201
        fps.append(fingerprint(p))
    r = api.call("GET", "/tenant/tenants/certs2/trusted-certificates", auth)
    assert r.status == 200
    assert len(r.json["certificates"]) == 5  # default page size
    assert r.json["statistics"]["pageSize"] == 5
    assert r.json["statistics"]["currentPage"] == 1
    assert "currentPage=2" in r.json["next"]
    r2 = api.call("GET", "/tenant/tenants/certs2/trusted-certificates?pageSize=5&currentPage=2",
                  auth)
    assert [c["fingerprint"] for c in r2.json["certificates"]] == fps[5:]
    assert "next" not in r2.json
    big = api.call("GET", "/tenant/tenants/certs2/trusted-certificates?pageSize=5000", auth)
    assert big.json["statistics"]["pageSize"] == 2000
    assert len(big.json["certificates"]) == 7

    base = f"/tenant/tenants/certs2/trusted-certificates/{fps[0]}"
    assert api.call("GET", base, auth).json["name"] == "n0"
    r = api.call("PUT", base, auth, {"status": "DISABLED", "name": "renamed",
                                     "autoRegistrationEnabled": "true"})
    assert r.status == 200, r
    got = api.call("GET", base, auth).json
    assert (got["status"], got["name"], got["autoRegistrationEnabled"]) == \
        ("DISABLED", "renamed", True)
    assert_json_error(api.call("PUT", base, auth, {"status": "MAYBE"}), 422)
    assert api.call("DELETE", base, auth).status == 204
    assert_json_error(api.call("GET", base, auth), 404)
    assert_json_error(api.call("DELETE", base, auth), 404)


def test_bulk_upload_is_all_or_nothing(api, tmp_path):
    auth = make_tenant(api, "certs3")
    paths = []
    for i in range(3):
        p = tmp_path / f"b{i}.pem"
        make_cert(p, cn=f"bulk {i}")
        paths.append(p)
    body = {"certificates": [{"status": "ENABLED", "name": f"b{i}",
                              "certInPemFormat": p.read_text()} for i, p in enumerate(paths)]}
    r = api.call("POST", "/tenant/tenants/certs3/trusted-certificates/bulk", auth, body)
    assert r.status == 201, r
    assert len(r.json["certificates"]) == 3
    # A second upload with one new and one already trusted certificate stores nothing.
    p = tmp_path / "b-new.pem"
    make_cert(p, cn="bulk new")
    body = {"certificates": [{"certInPemFormat": p.read_text()},
                             {"certInPemFormat": paths[0].read_text()}]}
    assert_json_error(api.call("POST", "/tenant/tenants/certs3/trusted-certificates/bulk", auth,
                               body), 409)
    assert_json_error(api.call("GET", f"/tenant/tenants/certs3/trusted-certificates/"
                               f"{fingerprint(p)}", auth), 404)


def test_tenants_are_isolated(api, t1, certs):
    other = make_tenant(api, "certs4")
    fp = fingerprint(certs.ca_pem)
    assert_json_error(api.call("GET", "/tenant/tenants/certs1/trusted-certificates", other), 403)
    assert_json_error(api.call("GET", f"/tenant/tenants/certs1/trusted-certificates/{fp}",
                               other), 403)
    assert_json_error(api.call("DELETE", f"/tenant/tenants/certs1/trusted-certificates/{fp}",
                               other), 403)
    # Another tenant may trust the same CA: its own copy, no conflict.
    assert upload_ca(api, "certs4", other, certs.ca_pem).status == 201
    # The management admin acts on every tenant.
    assert api.call("GET", f"/tenant/tenants/certs1/trusted-certificates/{fp}", ADMIN).status \
        == 200
    assert_json_error(api.call("GET", "/tenant/tenants/nope/trusted-certificates", ADMIN), 404)
