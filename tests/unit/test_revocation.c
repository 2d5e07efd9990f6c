/* Revocation module tests: CRLs built with the OpenSSL API at run time are
 * parsed (PEM, DER, refusals), verified against candidate issuers (good,
 * forged key, no cRLSign, unknown or delta critical extensions, unknown
 * issuer), read into normalized entries, and matched against a path's
 * compact serials through a CA store. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "identity/revocation.h"

static EVP_PKEY *ec_key(void)
{
    return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
}

static void add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    assert_non_null(e);
    assert_int_equal(X509_add_ext(x, e, -1), 1);
    X509_EXTENSION_free(e);
}

/* A certificate named cn, with serial, signed by ikey (self-signed when
 * issuer is NULL); ku NULL: no keyUsage. */
static X509 *make_cert(const char *cn, long serial, EVP_PKEY *key, X509 *issuer, EVP_PKEY *ikey,
                       const char *ku)
{
    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_UTF8,
                               (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : X509_get_subject_name(x));
    X509_gmtime_adj(X509_getm_notBefore(x), -86400);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400L * 365);
    X509_set_pubkey(x, key);
    add_ext(x, issuer ? issuer : x, NID_basic_constraints,
            issuer ? "CA:FALSE" : "critical,CA:TRUE");
    if (ku) add_ext(x, issuer ? issuer : x, NID_key_usage, ku);
    assert_true(X509_sign(x, issuer ? ikey : key, EVP_sha256()) > 0);
    return x;
}

/* A CRL under issuer's name listing serials, signed by key; ext_nid, when
 * not NID_undef, adds that extension as critical. */
static X509_CRL *make_crl(X509 *issuer, EVP_PKEY *key, const long *serials, int n, int ext_nid)
{
    X509_CRL *crl = X509_CRL_new();
    X509_CRL_set_version(crl, X509_CRL_VERSION_2);
    X509_CRL_set_issuer_name(crl, X509_get_subject_name(issuer));
    ASN1_TIME *now = ASN1_TIME_set(NULL, time(NULL));
    X509_CRL_set1_lastUpdate(crl, now);
    for (int i = 0; i < n; i++) {
        X509_REVOKED *r = X509_REVOKED_new();
        ASN1_INTEGER *sn = ASN1_INTEGER_new();
        ASN1_INTEGER_set(sn, serials[i]);
        X509_REVOKED_set_serialNumber(r, sn);
        X509_REVOKED_set_revocationDate(r, now);
        X509_CRL_add0_revoked(crl, r);
        ASN1_INTEGER_free(sn);
    }
    if (ext_nid != NID_undef) {
        ASN1_INTEGER *v = ASN1_INTEGER_new();
        ASN1_INTEGER_set(v, 1);
        assert_int_equal(X509_CRL_add1_ext_i2d(crl, ext_nid, v, 1, 0), 1);
        ASN1_INTEGER_free(v);
    }
    ASN1_TIME_free(now);
    X509_CRL_sort(crl);
    assert_true(X509_CRL_sign(crl, key, EVP_sha256()) > 0);
    return crl;
}

struct fixture {
    EVP_PKEY *ca_key, *forger_key, *dev_key;
    X509 *ca, *forger, *no_crlsign, *dev5, *dev6;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    f->ca_key = ec_key();
    f->forger_key = ec_key();
    f->dev_key = ec_key();
    f->ca = make_cert("rev CA", 1, f->ca_key, NULL, NULL, "critical,keyCertSign,cRLSign");
    f->forger = make_cert("rev CA", 1, f->forger_key, NULL, NULL, NULL);
    f->no_crlsign = make_cert("rev CA", 2, f->ca_key, NULL, NULL, "critical,keyCertSign");
    f->dev5 = make_cert("dev5", 5, f->dev_key, f->ca, f->ca_key, NULL);
    f->dev6 = make_cert("dev6", 0x1234, f->dev_key, f->ca, f->ca_key, NULL);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    X509 *certs[] = {f->ca, f->forger, f->no_crlsign, f->dev5, f->dev6};
    for (size_t i = 0; i < sizeof certs / sizeof *certs; i++) X509_free(certs[i]);
    EVP_PKEY_free(f->ca_key);
    EVP_PKEY_free(f->forger_key);
    EVP_PKEY_free(f->dev_key);
    free(f);
    return 0;
}

static size_t to_pem(X509_CRL *crl, char *buf, size_t cap)
{
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_X509_CRL(b, crl);
    int n = BIO_read(b, buf, (int)cap);
    BIO_free(b);
    assert_true(n > 0);
    return (size_t)n;
}

static void test_revocation_parse_pem_der_and_refusals(void **state)
{
    struct fixture *f = *state;
    long sn[] = {5};
    X509_CRL *crl = make_crl(f->ca, f->ca_key, sn, 1, NID_undef), *out = NULL;
    char pem[8192];
    size_t n = to_pem(crl, pem, sizeof pem / 2);
    assert_int_equal(revoc_crl_parse((const uint8_t *)pem, n, &out), 0);
    X509_CRL_free(out);
    memcpy(pem + n, pem, n); /* two CRLs in one upload */
    assert_int_equal(revoc_crl_parse((const uint8_t *)pem, 2 * n, &out), ERR_MALFORMED);
    assert_null(out);
    unsigned char *der = NULL;
    int dlen = i2d_X509_CRL(crl, &der);
    assert_int_equal(revoc_crl_parse(der, (size_t)dlen, &out), 0);
    X509_CRL_free(out);
    assert_int_equal(revoc_crl_parse(der, (size_t)dlen - 1, &out), ERR_MALFORMED);
    unsigned char *longer = malloc((size_t)dlen + 1);
    memcpy(longer, der, (size_t)dlen);
    longer[dlen] = 0;
    assert_int_equal(revoc_crl_parse(longer, (size_t)dlen + 1, &out), ERR_MALFORMED);
    assert_int_equal(revoc_crl_parse((const uint8_t *)"{\"crls\":[]}", 11, &out), ERR_MALFORMED);
    assert_null(out);
    free(longer);
    OPENSSL_free(der);
    X509_CRL_free(crl);
}

/* revoc_crl_verify against cas; returns the reason (NULL: valid). */
static const char *verdict(X509_CRL *crl, X509 *a, X509 *b)
{
    STACK_OF(X509) *cas = sk_X509_new_null();
    if (a) sk_X509_push(cas, a);
    if (b) sk_X509_push(cas, b);
    X509 *issuer = NULL;
    const char *why = NULL;
    int rc = revoc_crl_verify(crl, cas, &issuer, &why);
    sk_X509_free(cas);
    assert_true(rc == 0 ? why == NULL && issuer != NULL : why != NULL && issuer == NULL);
    return why;
}

static void test_revocation_verify_issuer_signature_usage_extensions(void **state)
{
    struct fixture *f = *state;
    long sn[] = {5};
    X509_CRL *good = make_crl(f->ca, f->ca_key, sn, 1, NID_undef);
    X509_CRL *forged = make_crl(f->ca, f->forger_key, sn, 1, NID_undef);
    X509_CRL *delta = make_crl(f->ca, f->ca_key, sn, 1, NID_delta_crl);
    X509_CRL *odd = make_crl(f->ca, f->ca_key, sn, 1, NID_crl_number); /* marked critical */
    assert_null(verdict(good, f->ca, NULL));
    assert_null(verdict(good, f->forger, f->ca)); /* a name twin is skipped */
    assert_non_null(strstr(verdict(forged, f->ca, NULL), "signature"));
    assert_non_null(strstr(verdict(good, f->forger, NULL), "signature"));
    assert_non_null(strstr(verdict(good, f->no_crlsign, NULL), "cRLSign"));
    assert_non_null(strstr(verdict(good, f->dev5, NULL), "not a trusted"));
    assert_non_null(strstr(verdict(good, NULL, NULL), "not a trusted"));
    assert_non_null(strstr(verdict(delta, f->ca, NULL), "delta"));
    assert_non_null(strstr(verdict(odd, f->ca, NULL), "critical"));
    X509_CRL_free(good);
    X509_CRL_free(forged);
    X509_CRL_free(delta);
    X509_CRL_free(odd);
}

static void test_revocation_entries_normalized_and_empty(void **state)
{
    struct fixture *f = *state;
    long sn[] = {0x0A0B, 0xFF01};
    X509_CRL *two = make_crl(f->ca, f->ca_key, sn, 2, NID_undef);
    X509_CRL *none = make_crl(f->ca, f->ca_key, NULL, 0, NID_undef);
    struct store_crl_entry *e = NULL;
    size_t n = 99;
    assert_int_equal(revoc_crl_entries(none, &e, &n), 0);
    assert_int_equal(n, 0);
    free(e);
    assert_int_equal(revoc_crl_entries(two, &e, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(e[0].serial, "A0B");
    assert_string_equal(e[1].serial, "FF01");
    assert_true(e[0].revoked > 0);
    free(e);
    X509_CRL_free(two);
    X509_CRL_free(none);
}

static void test_revocation_path_matched_through_the_store(void **state)
{
    struct fixture *f = *state;
    long sn[] = {0x1234};
    X509_STORE *store = X509_STORE_new();
    X509_STORE_add_cert(store, f->ca);
    struct revoc_path p5, p6;
    X509 *path5[] = {f->dev5}, *path6[] = {f->dev6};
    revoc_path_set(&p5, path5, 1);
    revoc_path_set(&p6, path6, 1);
    assert_int_equal(p6.n, 1);
    assert_int_equal(p6.s[0].len, 2);
    assert_false(revoc_path_revoked_store(store, &p6)); /* no CRL yet */
    X509_CRL *crl = make_crl(f->ca, f->ca_key, sn, 1, NID_undef);
    X509_STORE_add_crl(store, crl);
    assert_true(revoc_path_revoked_store(store, &p6));
    assert_false(revoc_path_revoked_store(store, &p5));
    /* Same serial under another issuer name: not this CRL's. */
    p6.s[0].issuer_hash ^= 1;
    assert_false(revoc_path_revoked_store(store, &p6));
    /* A serial too long to keep counts as revoked (the client reconnects). */
    p5.s[0].len = 0;
    assert_true(revoc_path_revoked_store(store, &p5));
    X509_CRL_free(crl);
    X509_STORE_free(store);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_revocation_parse_pem_der_and_refusals),
        cmocka_unit_test(test_revocation_verify_issuer_signature_usage_extensions),
        cmocka_unit_test(test_revocation_entries_normalized_and_empty),
        cmocka_unit_test(test_revocation_path_matched_through_the_store),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
