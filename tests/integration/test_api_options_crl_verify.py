# REST API: tenant options (CRUD and the checked values), the tenant CRL
# (PUT as JSON or CSV, GET as a DER CRL) and verify-cert-chain, which runs
# chains made with the openssl CLI through the connect-time policy: valid,
# CA missing from the chain, revoked, anchor disabled, not registered.
import pytest
from cryptography import x509

from apiserver import ADMIN, ApiServer, assert_json_error, make_tenant, upload_ca

VERIFY = "/tenant/trusted-certificates/verify-cert-chain"
CRL = "/tenant/trusted-certificates/settings/crl"


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    s = ApiServer(tmp_path_factory.mktemp("api-opts")).start()
    yield s
    s.stop()


def test_options_crud_and_checks(api):
    auth = make_tenant(api, "opts")
    path = "/tenant/options/oauth.internal/device-token.lifespan.seconds"
    assert_json_error(api.call("GET", path, auth), 404)
    assert_json_error(api.call("PUT", path, auth, {"value": "299"}), 422)
    assert_json_error(api.call("PUT", path, auth, {"value": "ten"}), 422)
    r = api.call("PUT", path, auth, {"value": "300"})
    assert r.status == 200, r
    assert r.json == {"category": "oauth.internal", "key": "device-token.lifespan.seconds",
                      "value": "300", "self": r.json["self"]}
    assert api.call("GET", path, auth).json["value"] == "300"
    r = api.call("POST", "/tenant/options", auth, {"category": "c1", "key": "k1", "value": 7})
    assert r.status == 201 and r.json["value"] == "7", r
    listing = api.call("GET", "/tenant/options", auth).json["options"]
    assert {(o["category"], o["key"]) for o in listing} == {
        ("oauth.internal", "device-token.lifespan.seconds"), ("c1", "k1")}
    assert_json_error(api.call("PUT", "/tenant/options/configuration/crl.offline.check.enabled",
                               auth, {"value": "yes"}), 422)
    # Options belong to the caller's tenant only.
    other = make_tenant(api, "opts2")
    assert_json_error(api.call("GET", path, other), 404)
    assert api.call("DELETE", path, auth).status == 204
    assert_json_error(api.call("DELETE", path, auth), 404)


def test_verify_chain_made_by_openssl(api, certs):
    auth = make_tenant(api, "ver1")
    # Nobody trusts the CA yet.
    r = api.call("POST", VERIFY, auth, files={"file": certs.device1_chain})
    assert r.status == 200 and r.json["isValid"] is False and r.json["reason"] == "untrusted", r
    assert upload_ca(api, "ver1", auth, certs.ca_pem, auto=False).status == 201
    r = api.call("POST", VERIFY, auth, files={"file": certs.device1_chain})
    assert r.json["isValid"] is False and r.json["reason"] == "device not registered", r
    fp = r.json["fingerprint"]
    assert api.call("PUT", f"/tenant/tenants/ver1/trusted-certificates/{fp}", auth,
                    {"autoRegistrationEnabled": True}).status == 200
    r = api.call("POST", VERIFY, auth, files={"file": certs.device1_chain})
    assert r.json["isValid"] is True, r
    assert (r.json["tenantId"], r.json["commonName"], r.json["autoRegistration"]) == \
        ("ver1", "device1", True)
    # The header form, PEM without line breaks.
    flat = open(certs.device1_chain).read().replace("\n", "")
    r = api.call("POST", VERIFY, auth, headers={"X-Cumulocity-Client-Cert-Chain": flat})
    assert r.json["isValid"] is True, r
    # Only the leaf: the CA must be in the presented chain.
    r = api.call("POST", VERIFY, auth, files={"file": certs.device1_pem})
    assert r.json["reason"] == "ca not in chain", r
    # A registered device passes without auto-registration.
    f = api.dir / "reg.csv"
    f.write_text("ID,AUTH_TYPE\ndevice1,CERTIFICATES\n")
    assert api.call("POST", "/devicecontrol/bulkNewDeviceRequests", auth,
                    files={"file": f}).status == 201
    assert api.call("PUT", f"/tenant/tenants/ver1/trusted-certificates/{fp}", auth,
                    {"autoRegistrationEnabled": False}).status == 200
    r = api.call("POST", VERIFY, auth, files={"file": certs.device1_chain})
    assert r.json["isValid"] is True and r.json["autoRegistration"] is False, r
    # Disabled anchor.
    assert api.call("PUT", f"/tenant/tenants/ver1/trusted-certificates/{fp}", auth,
                    {"status": "DISABLED"}).status == 200
    r = api.call("POST", VERIFY, auth, files={"file": certs.device1_chain})
    assert r.json["reason"] == "anchor disabled", r
    assert_json_error(api.call("POST", VERIFY, auth, data=b"garbage"), 422)


def test_another_tenants_anchor_is_not_revealed(api, certs):
    owner = make_tenant(api, "ver2")
    assert upload_ca(api, "ver2", owner, certs.untrusted_ca_pem).status == 201
    stranger = make_tenant(api, "ver3")
    r = api.call("POST", VERIFY, stranger, files={"file": certs.rogue_chain})
    assert r.json["isValid"] is False and r.json["reason"] == "untrusted", r
    assert r.json["tenantId"] is None and r.json["fingerprint"] is None
    r = api.call("POST", VERIFY, ADMIN, files={"file": certs.rogue_chain})
    assert r.json["tenantId"] == "ver2", r


def test_crl_put_get_and_enforcement(api, certs, tmp_path):
    auth = make_tenant(api, "crl1")
    r = upload_ca(api, "crl1", auth, certs.ca_pem, auto=True)
    assert r.status == 201
    # ver1 trusted the same CA first: crl1's copy counts once its proof of
    # possession is confirmed (here by the management tenant's admin).
    assert r.json["proofOfPossessionRequired"] is True
    fp = r.json["fingerprint"]
    assert api.call("POST", f"/tenant/tenants/crl1/trusted-certificates-pop/{fp}/confirmed",
                    ADMIN).status == 200
    serial = x509.load_pem_x509_certificate(open(certs.device2_pem, "rb").read()).serial_number
    r = api.call("PUT", CRL, auth, {"crls": [{"serialNumberInHex": format(serial, "x"),
                                              "revocationDate": "2024-01-02T03:04:05Z"}]})
    assert r.status == 200, r
    # Revoked but the tenant has not switched the CRL check on: still valid.
    r = api.call("POST", VERIFY, auth, files={"file": certs.device2_chain})
    assert r.json["isValid"] is True, r
    assert api.call("PUT", "/tenant/options/configuration/crl.offline.check.enabled", auth,
                    {"value": "true"}).status == 200
    r = api.call("POST", VERIFY, auth, files={"file": certs.device2_chain})
    assert (r.json["isValid"], r.json["reason"]) == (False, "revoked"), r
    r = api.call("POST", VERIFY, auth, files={"file": certs.device1_chain})
    assert r.json["isValid"] is True, r
    # CSV form adds more serials.
    f = tmp_path / "crl.csv"
    f.write_text("SERIALNO,DATE\n0A0B,2024-05-06\nFF01,\n")
    assert api.call("PUT", CRL, auth, files={"file": f}).status == 200
    r = api.call("GET", CRL, auth)
    assert r.status == 200 and r.headers["content-type"] == "application/pkix-crl"
    crl = x509.load_der_x509_crl(r.body)
    revoked = {e.serial_number for e in crl}
    assert revoked == {serial, 0x0A0B, 0xFF01}
    assert_json_error(api.call("PUT", CRL, auth, {"crls": [{"serialNumberInHex": "xyz"}]}), 422)
    # Another tenant's CRL is its own.
    other = make_tenant(api, "crl2")
    assert len(list(x509.load_der_x509_crl(api.call("GET", CRL, other).body))) == 0
