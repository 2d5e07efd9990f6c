/* The lean TLS library context: one shared context, only the kept algorithms
 * (certificate key decoders among them), certificates parsed and verified in
 * it, and mutual-TLS handshakes over memory for TLS 1.2 and 1.3 with EC, RSA
 * and Ed25519 keys against a server context built on it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/decoder.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "net/tlslib.h"

static OSSL_LIB_CTX *lean_ctx(void)
{
    OSSL_LIB_CTX *ctx = NULL;
    assert_int_equal(tls_lib_ctx(&ctx), 0);
    assert_non_null(ctx);
    return ctx;
}

static EVP_PKEY *key_new(const char *type)
{
    EVP_PKEY *k = NULL;
    if (strcmp(type, "EC") == 0)
        k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    else if (strcmp(type, "RSA") == 0)
        k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    else
        k = EVP_PKEY_Q_keygen(NULL, NULL, type);
    assert_non_null(k);
    return k;
}

/* A certificate for key, named cn, signed by signer (issuer name isu). */
static X509 *cert_new(EVP_PKEY *key, const char *cn, EVP_PKEY *signer, const char *isu)
{
    X509 *x = X509_new();
    assert_non_null(x);
    assert_int_equal(X509_set_version(x, 2), 1);
    assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), 7), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_NAME *subj = X509_get_subject_name(x);
    X509_NAME *iss = X509_get_issuer_name(x);
    X509_NAME_add_entry_by_txt(subj, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_NAME_add_entry_by_txt(iss, "CN", MBSTRING_ASC, (const unsigned char *)isu, -1, -1, 0);
    assert_int_equal(X509_set_pubkey(x, key), 1);
    const EVP_MD *md = EVP_PKEY_is_a(signer, "ED25519") ? NULL : EVP_sha256();
    assert_true(X509_sign(x, signer, md) > 0);
    return x;
}

/* The same certificate read back from DER in libctx. */
static X509 *reparse(X509 *x, OSSL_LIB_CTX *libctx)
{
    unsigned char *der = NULL;
    int len = i2d_X509(x, &der);
    assert_true(len > 0);
    const unsigned char *p = der;
    X509 *y = X509_new_ex(libctx, NULL);
    assert_non_null(y);
    assert_non_null(d2i_X509(&y, &p, len));
    OPENSSL_free(der);
    return y;
}

static void test_one_shared_context(void **state)
{
    (void)state;
    OSSL_LIB_CTX *a = lean_ctx(), *b = lean_ctx();
    assert_ptr_equal(a, b);
    assert_ptr_not_equal(a, OSSL_LIB_CTX_get0_global_default());
}

static void count_decoder(OSSL_DECODER *d, void *arg)
{
    int *n = arg;
    const char *props = OSSL_DECODER_get0_properties(d);
    /* Only certificate public key decoders are offered. */
    assert_non_null(strstr(props, "structure=SubjectPublicKeyInfo"));
    (*n)++;
}

static void test_only_kept_algorithms(void **state)
{
    (void)state;
    OSSL_LIB_CTX *ctx = lean_ctx();
    static const char *const digests[] = {"SHA1", "SHA256", "SHA384", "SHA512"};
    for (size_t i = 0; i < sizeof digests / sizeof digests[0]; i++) {
        EVP_MD *md = EVP_MD_fetch(ctx, digests[i], NULL);
        assert_non_null(md);
        EVP_MD_free(md);
    }
    EVP_CIPHER *c = EVP_CIPHER_fetch(ctx, "AES-128-GCM", NULL);
    assert_non_null(c);
    EVP_CIPHER_free(c);
    c = EVP_CIPHER_fetch(ctx, "CAMELLIA-128-CBC", NULL);
    assert_null(c);
    EVP_MD *md5 = EVP_MD_fetch(ctx, "MD5", NULL);
    assert_null(md5);
    EVP_KEYMGMT *km = EVP_KEYMGMT_fetch(ctx, "DSA", NULL);
    assert_null(km);
    km = EVP_KEYMGMT_fetch(ctx, "EC", NULL);
    assert_non_null(km);
    EVP_KEYMGMT_free(km);
    int n = 0;
    OSSL_DECODER_do_all_provided(ctx, count_decoder, &n);
    assert_true(n >= 2 && n <= 5);
    /* The random generator works there (libssl draws from it). */
    unsigned char r[32] = {0}, zero[32] = {0};
    assert_int_equal(RAND_bytes_ex(ctx, r, sizeof r, 0), 1);
    assert_memory_not_equal(r, zero, sizeof r);
}

static void test_certificates_parse_and_verify(void **state)
{
    (void)state;
    OSSL_LIB_CTX *ctx = lean_ctx();
    static const char *const types[] = {"EC", "RSA", "ED25519"};
    EVP_PKEY *ca = key_new("EC");
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        EVP_PKEY *k = key_new(types[i]);
        X509 *x = cert_new(k, "dev-1", ca, "device CA");
        X509 *y = reparse(x, ctx);
        EVP_PKEY *pk = X509_get0_pubkey(y);
        assert_non_null(pk);
        assert_true(EVP_PKEY_is_a(pk, types[i]));
        assert_int_equal(EVP_PKEY_eq(pk, k), 1);
        assert_int_equal(X509_verify(y, ca), 1);
        /* A certificate signed by another key does not verify. */
        EVP_PKEY *other = key_new("EC");
        assert_true(X509_verify(y, other) <= 0);
        EVP_PKEY_free(other);
        X509_free(y);
        X509_free(x);
        EVP_PKEY_free(k);
    }
    EVP_PKEY_free(ca);
}

static int accept_any(X509_STORE_CTX *ctx, void *arg)
{
    (void)ctx;
    (void)arg;
    return 1;
}

/* Runs both ends over a BIO pair until each has finished its handshake. */
static void handshake(SSL *srv, SSL *cli)
{
    int s = 0, c = 0;
    for (int i = 0; i < 100 && !(s == 1 && c == 1); i++) {
        if (c != 1) c = SSL_do_handshake(cli);
        if (s != 1) s = SSL_do_handshake(srv);
    }
    assert_int_equal(c, 1);
    assert_int_equal(s, 1);
}

struct hs_case {
    int version;
    const char *server_key;
    const char *client_key;
};

static void run_handshake(const struct hs_case *hc)
{
    OSSL_LIB_CTX *ctx = lean_ctx();
    EVP_PKEY *root = key_new("EC"), *srv_key = key_new(hc->server_key);
    EVP_PKEY *dca = key_new("EC"), *dev_key = key_new(hc->client_key);
    X509 *srv_cert = cert_new(srv_key, "broker", root, "root");
    X509 *dca_cert = cert_new(dca, "device CA", dca, "device CA");
    X509 *dev_cert = cert_new(dev_key, "dev-1", dca, "device CA");

    SSL_CTX *sctx = SSL_CTX_new_ex(ctx, NULL, TLS_server_method());
    SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(sctx);
    assert_non_null(cctx);
    assert_int_equal(SSL_CTX_use_certificate(sctx, srv_cert), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey(sctx, srv_key), 1);
    assert_int_equal(SSL_CTX_check_private_key(sctx), 1);
    SSL_CTX_set_verify(sctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    SSL_CTX_set_cert_verify_callback(sctx, accept_any, NULL);
    assert_int_equal(SSL_CTX_use_certificate(cctx, dev_cert), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey(cctx, dev_key), 1);
    assert_int_equal(SSL_CTX_add1_chain_cert(cctx, dca_cert), 1);
    SSL_CTX_set_verify(cctx, SSL_VERIFY_NONE, NULL);
    for (SSL_CTX *c = sctx; c; c = c == sctx ? cctx : NULL) {
        assert_int_equal(SSL_CTX_set_min_proto_version(c, hc->version), 1);
        assert_int_equal(SSL_CTX_set_max_proto_version(c, hc->version), 1);
    }

    SSL *srv = SSL_new(sctx), *cli = SSL_new(cctx);
    assert_non_null(srv);
    assert_non_null(cli);
    BIO *bs = NULL, *bc = NULL;
    assert_int_equal(BIO_new_bio_pair(&bs, 0, &bc, 0), 1);
    SSL_set_bio(srv, bs, bs);
    SSL_set_bio(cli, bc, bc);
    SSL_set_accept_state(srv);
    SSL_set_connect_state(cli);
    handshake(srv, cli);
    assert_int_equal(SSL_version(srv), hc->version);

    /* The server holds the client's chain, parsed in the lean context, and
     * the leaf verifies under the device CA's key as presented. */
    X509 *leaf = SSL_get0_peer_certificate(srv);
    STACK_OF(X509) *chain = SSL_get_peer_cert_chain(srv);
    assert_non_null(leaf);
    assert_non_null(chain);
    assert_int_equal(X509_cmp(leaf, dev_cert), 0);
    assert_true(EVP_PKEY_is_a(X509_get0_pubkey(leaf), hc->client_key));
    X509 *ca_seen = sk_X509_value(chain, sk_X509_num(chain) - 1);
    assert_int_equal(X509_cmp(ca_seen, dca_cert), 0);
    assert_int_equal(X509_verify(leaf, X509_get0_pubkey(ca_seen)), 1);

    char buf[8] = {0};
    assert_int_equal(SSL_write(cli, "ping", 4), 4);
    assert_int_equal(SSL_read(srv, buf, sizeof buf), 4);
    assert_memory_equal(buf, "ping", 4);
    assert_int_equal(SSL_write(srv, "pong", 4), 4);
    assert_int_equal(SSL_read(cli, buf, sizeof buf), 4);
    assert_memory_equal(buf, "pong", 4);

    SSL_free(cli);
    SSL_free(srv);
    SSL_CTX_free(cctx);
    SSL_CTX_free(sctx);
    X509_free(dev_cert);
    X509_free(dca_cert);
    X509_free(srv_cert);
    EVP_PKEY_free(dev_key);
    EVP_PKEY_free(dca);
    EVP_PKEY_free(srv_key);
    EVP_PKEY_free(root);
}

static void test_handshakes(void **state)
{
    (void)state;
    static const struct hs_case cases[] = {
        {TLS1_3_VERSION, "EC", "EC"},      {TLS1_2_VERSION, "RSA", "EC"},
        {TLS1_3_VERSION, "RSA", "RSA"},    {TLS1_2_VERSION, "EC", "RSA"},
        {TLS1_3_VERSION, "EC", "ED25519"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_handshake(&cases[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_shared_context),
        cmocka_unit_test(test_only_kept_algorithms),
        cmocka_unit_test(test_certificates_parse_and_verify),
        cmocka_unit_test(test_handshakes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
