/* The tenant CA without sockets: CSR intake (base64 DER, PEM, garbage, a
 * bad signature, a weak key), the certs-only PKCS#7 answer, a tenant CA on
 * an in-memory store (one per tenant, key sealed, trusted with
 * autoRegistration and PoP), issuance and its record, and enrollment
 * tokens that work once, for their device only, until they expire. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs7.h>
#include <openssl/x509v3.h>

#include "ca/csr.h"
#include "ca/enroll.h"
#include "ca/tenantca.h"
#include "core/seal.h"
#include "identity/trust.h"
#include "store/store.h"
#include "pgtest.h"

#define NOW 1900000000

/* A CSR for cn signed with a new key of spec ("EC" or "RSA" + bits). */
static X509_REQ *csr_make(const char *cn, const char *type, size_t bits)
{
    EVP_PKEY *k = !strcmp(type, "EC") ? EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256")
                                      : EVP_PKEY_Q_keygen(NULL, NULL, "RSA", bits);
    X509_REQ *req = X509_REQ_new();
    X509_NAME *n = X509_REQ_get_subject_name(req);
    assert_true(
        X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0));
    assert_true(X509_REQ_set_pubkey(req, k));
    assert_true(X509_REQ_sign(req, k, EVP_sha256()) > 0);
    EVP_PKEY_free(k);
    return req;
}

static char *b64_of(X509_REQ *req, size_t *len, bool corrupt)
{
    unsigned char *der = NULL;
    int n = i2d_X509_REQ(req, &der);
    assert_true(n > 0);
    if (corrupt) der[n - 1] ^= 1;
    char *out = malloc((size_t)n * 2 + 4);
    *len = (size_t)EVP_EncodeBlock((unsigned char *)out, der, n);
    OPENSSL_free(der);
    return out;
}

static void test_csr_parse_base64_and_pem(void **state)
{
    (void)state;
    char why[200], cn[64];
    size_t len;
    X509_REQ *req = csr_make("dev-1", "EC", 0), *out = NULL;
    char *b64 = b64_of(req, &len, false);
    assert_int_equal(ca_csr_parse(b64, len, &out, why, sizeof why), 0);
    assert_int_equal(ca_csr_cn(out, cn, sizeof cn), 0);
    assert_string_equal(cn, "dev-1");
    X509_REQ_free(out);
    BIO *mem = BIO_new(BIO_s_mem());
    assert_true(PEM_write_bio_X509_REQ(mem, req));
    char *pem = NULL;
    long n = BIO_get_mem_data(mem, &pem);
    assert_int_equal(ca_csr_parse(pem, (size_t)n, &out, why, sizeof why), 0);
    X509_REQ_free(out);
    BIO_free(mem);
    free(b64);
    X509_REQ_free(req);
}

static void test_csr_parse_refusals(void **state)
{
    (void)state;
    char why[200];
    size_t len;
    X509_REQ *out = NULL, *req = csr_make("dev-1", "EC", 0);
    assert_int_equal(ca_csr_parse("!!garbage**", 11, &out, why, sizeof why), ERR_MALFORMED);
    assert_null(out);
    assert_int_equal(ca_csr_parse("", 0, &out, why, sizeof why), ERR_MALFORMED);
    char *bad = b64_of(req, &len, true);
    assert_int_equal(ca_csr_parse(bad, len, &out, why, sizeof why), ERR_AUTH);
    assert_non_null(strstr(why, "signature"));
    free(bad);
    X509_REQ_free(req);
    req = csr_make("dev-1", "RSA", 1024);
    char *weak = b64_of(req, &len, false);
    assert_int_equal(ca_csr_parse(weak, len, &out, why, sizeof why), ERR_INVALID);
    assert_non_null(strstr(why, "2048"));
    assert_null(out);
    free(weak);
    X509_REQ_free(req);
}

struct fixture {
    struct store *st;
    struct trust_index *ti;
    struct seal *seal;
    struct tenant_ca *ca;
};

/* The store the group runs on: SQLite in memory, or a fresh PostgreSQL
 * database when CERTMQ_TEST_PG names a server (pgtest.h). */
static const char *store_at = ":memory:";
static char pg_db[128], pg_uri[1024];

static int setup(void **state)
{
    static struct fixture f;
    uint8_t key[SEAL_KEY_LEN] = {7};
    struct store_tenant t = {.id = "t1"}, t2 = {.id = "t2"};
    if (store_open_path(store_at, &f.st) < 0 || trust_new(&f.ti) < 0 ||
        seal_new(key, &f.seal) < 0 || store_tenant_create(f.st, &t, NULL) < 0 ||
        store_tenant_create(f.st, &t2, NULL) < 0)
        return -1;
    struct ca_config cfg = {.ca_validity_days = 3650, .public_url = "https://example:8443/"};
    if (tenant_ca_new(f.st, f.ti, f.seal, &cfg, &f.ca) < 0) return -1;
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    tenant_ca_free(f->ca);
    seal_free(f->seal);
    trust_free(f->ti);
    store_close(f->st);
    return 0;
}

static void test_tenant_ca_create_once_trusted_sealed(void **state)
{
    struct fixture *f = *state;
    char fp[STORE_FP_MAX], fp2[STORE_FP_MAX];
    assert_int_equal(tenant_ca_create(f->ca, "t1", NULL, NOW, fp), 0);
    assert_int_equal(tenant_ca_create(f->ca, "t1", NULL, NOW, fp2), ERR_EXISTS);
    assert_int_equal(tenant_ca_create(f->ca, "t2", "rsa:1024", NOW, fp2), ERR_INVALID);
    struct trust_anchor a;
    assert_int_equal(trust_anchor_get(f->ti, "t1", fp, &a), 0);
    assert_true(a.enabled && a.auto_registration && a.pop_valid);
    struct store_ca row;
    assert_int_equal(store_ca_get(f->st, "t1", &row), 0);
    assert_memory_equal(row.sealed, "CMQS", 4);
    assert_null(memmem(row.sealed, row.sealed_len, "PRIVATE", 7));
    store_ca_clear(&row);
    X509 *cert = NULL;
    assert_int_equal(tenant_ca_cert(f->ca, "t1", &cert), 0);
    assert_true(tenant_ca_is_own(f->ca, "t1", cert));
    assert_false(tenant_ca_is_own(f->ca, "t2", cert));
    X509_free(cert);
    /* outside the renewal window: refused; forced: a new fingerprint */
    assert_int_equal(tenant_ca_renew(f->ca, "t1", NOW, false, fp2), ERR_CONFLICT);
    assert_int_equal(tenant_ca_renew(f->ca, "t1", NOW + 3640L * 86400, false, fp2), 0);
    assert_string_not_equal(fp, fp2);
}

static void test_tenant_ca_issues_and_records(void **state)
{
    struct fixture *f = *state;
    X509_REQ *req = csr_make("dev-9", "EC", 0);
    STACK_OF(X509) *chain = NULL;
    struct tenant_ca_issue in = {"t1", req, "dev-9", "est-enroll", "dev-9", NOW};
    assert_int_equal(tenant_ca_issue(f->ca, &in, &chain), 0);
    assert_int_equal(sk_X509_num(chain), 2);
    X509 *leaf = sk_X509_value(chain, 0), *ca = sk_X509_value(chain, 1);
    assert_int_equal(X509_verify(leaf, X509_get0_pubkey(ca)), 1);
    assert_true(X509_get_extended_key_usage(leaf) & XKU_SSL_CLIENT);
    assert_int_equal(X509_check_ca(leaf), 0);
    char serial[STORE_SERIAL_MAX];
    assert_int_equal(trust_serial_of(leaf, serial, sizeof serial), 0);
    struct store_issuance rec;
    assert_int_equal(store_issuance_get(f->st, "t1", serial, &rec), 0);
    assert_string_equal(rec.cn, "dev-9");
    assert_string_equal(rec.method, "est-enroll");
    assert_true(rec.not_after > NOW + 364L * 86400);
    char *b64 = NULL;
    size_t n = 0;
    assert_int_equal(ca_pkcs7_certs_b64(chain, &b64, &n), 0);
    assert_true(n > 100 && strlen(b64) == n);
    free(b64);
    sk_X509_pop_free(chain, X509_free);
    /* a tenant without a CA issues nothing */
    in.tenant = "t2";
    assert_int_equal(tenant_ca_issue(f->ca, &in, &chain), ERR_NOT_FOUND);
    X509_REQ_free(req);
}

static void test_enroll_token_one_use_own_device_until_expiry(void **state)
{
    struct fixture *f = *state;
    char tok[ENROLL_TOKEN_LEN + 1];
    int64_t until = 0;
    struct store_enroll_token t;
    assert_int_equal(enroll_token_new(f->st, "t1", "dev-1", 60, NOW, tok, &until), 0);
    assert_int_equal(strlen(tok), ENROLL_TOKEN_LEN);
    assert_int_equal(until, NOW + 60);
    assert_int_equal(enroll_token_check(f->st, "dev-1", tok, NULL, NOW, &t), ENROLL_OK);
    assert_string_equal(t.tenant, "t1");
    assert_int_equal(enroll_token_check(f->st, "dev-2", tok, NULL, NOW, &t), ENROLL_UNKNOWN);
    assert_int_equal(enroll_token_check(f->st, "dev-1", "nope-nope-nope-nope", NULL, NOW, &t),
                     ENROLL_UNKNOWN);
    assert_int_equal(enroll_token_check(f->st, "dev-1", tok, "t2", NOW, &t), ENROLL_WRONG_TENANT);
    assert_int_equal(enroll_token_check(f->st, "dev-1", tok, NULL, NOW + 60, &t), ENROLL_EXPIRED);
    assert_int_equal(enroll_token_spend(f->st, tok), 0);
    assert_int_equal(enroll_token_spend(f->st, tok), ERR_CONFLICT);
    assert_int_equal(enroll_token_check(f->st, "dev-1", tok, NULL, NOW, &t), ENROLL_USED);
}

int main(void)
{
    const struct CMUnitTest plain[] = {
        cmocka_unit_test(test_csr_parse_base64_and_pem),
        cmocka_unit_test(test_csr_parse_refusals),
    };
    const struct CMUnitTest with_store[] = {
        cmocka_unit_test(test_tenant_ca_create_once_trusted_sealed),
        cmocka_unit_test(test_tenant_ca_issues_and_records),
        cmocka_unit_test(test_enroll_token_one_use_own_device_until_expiry),
    };
    int rc = cmocka_run_group_tests(plain, NULL, NULL);
    rc += cmocka_run_group_tests_name("tenant CA on sqlite", with_store, setup, teardown);
    if (pgtest_skip("test_ca")) return rc;
    if (pgtest_create(pg_db, sizeof pg_db, pg_uri, sizeof pg_uri) < 0) return rc + 1;
    store_at = pg_uri;
    rc += cmocka_run_group_tests_name("tenant CA on postgresql", with_store, setup, teardown);
    pgtest_drop(pg_db);
    return rc;
}
