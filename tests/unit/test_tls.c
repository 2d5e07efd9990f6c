/* TLS context tests: a server context from tls_ctx_new and an OpenSSL client
 * run real handshakes over a BIO pair; after tls_session_drop a TLS 1.3
 * connection holds no session or peer certificate, still carries data and
 * KeyUpdates both ways and shuts down cleanly, while the session stays
 * cached and resumes with the peer certificate; TLS 1.2 keeps its session. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "net/tls.h"

struct fixture {
    char dir[64];
    SSL_CTX *server;
    SSL_CTX *client;
};

/* A self-signed EC P-256 certificate named cn for key. */
static X509 *self_signed(const char *cn, EVP_PKEY *key)
{
    X509 *x = X509_new();
    assert_non_null(x);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 7);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_UTF8,
                               (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(x));
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, key);
    assert_true(X509_sign(x, key, EVP_sha256()) > 0);
    return x;
}

static void write_pem(const char *path, X509 *x, EVP_PKEY *key)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    if (x) assert_int_equal(PEM_write_X509(f, x), 1);
    if (key) assert_int_equal(PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL), 1);
    fclose(f);
}

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof *fx);
    assert_non_null(fx);
    snprintf(fx->dir, sizeof fx->dir, "/tmp/certmq-test-tls-XXXXXX");
    assert_non_null(mkdtemp(fx->dir));
    EVP_PKEY *skey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    EVP_PKEY *ckey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509 *scert = self_signed("localhost", skey);
    X509 *ccert = self_signed("device-1", ckey);
    struct listener_config lc = {.client_certs = CLIENT_CERTS_REQUIRED, .tls_session_cache = 100};
    snprintf(lc.certfile, sizeof lc.certfile, "%s/server.pem", fx->dir);
    snprintf(lc.keyfile, sizeof lc.keyfile, "%s/server.key", fx->dir);
    write_pem(lc.certfile, scert, NULL);
    write_pem(lc.keyfile, NULL, skey);
    char err[256];
    assert_int_equal(tls_ctx_new(&lc, &fx->server, err, sizeof err), 0);
    fx->client = SSL_CTX_new(TLS_client_method());
    assert_non_null(fx->client);
    assert_int_equal(SSL_CTX_use_certificate(fx->client, ccert), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey(fx->client, ckey), 1);
    SSL_CTX_set_session_cache_mode(fx->client, SSL_SESS_CACHE_CLIENT);
    X509_free(scert);
    X509_free(ccert);
    EVP_PKEY_free(skey);
    EVP_PKEY_free(ckey);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    SSL_CTX_free(fx->server);
    SSL_CTX_free(fx->client);
    char path[128];
    snprintf(path, sizeof path, "%s/server.pem", fx->dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/server.key", fx->dir);
    unlink(path);
    rmdir(fx->dir);
    free(fx);
    return 0;
}

/* A server and a client SSL joined by a BIO pair; the client resumes sess
 * when given. */
static void pair_new(struct fixture *fx, SSL_SESSION *sess, SSL **srv, SSL **cli)
{
    BIO *a = NULL, *b = NULL;
    assert_int_equal(BIO_new_bio_pair(&a, 0, &b, 0), 1);
    *srv = SSL_new(fx->server);
    *cli = SSL_new(fx->client);
    assert_non_null(*srv);
    assert_non_null(*cli);
    SSL_set_bio(*srv, a, a);
    SSL_set_bio(*cli, b, b);
    SSL_set_accept_state(*srv);
    SSL_set_connect_state(*cli);
    if (sess) assert_int_equal(SSL_set_session(*cli, sess), 1);
}

static void handshake(SSL *srv, SSL *cli)
{
    int s = 0, c = 0;
    for (int i = 0; i < 100 && (s != 1 || c != 1); i++) {
        if (c != 1) c = SSL_do_handshake(cli);
        if (s != 1) s = SSL_do_handshake(srv);
    }
    assert_int_equal(s, 1);
    assert_int_equal(c, 1);
}

/* from writes text, to reads it back whole (the reader also processes any
 * KeyUpdate or ticket that came first). */
static void carry(SSL *from, SSL *to, const char *text)
{
    size_t len = strlen(text);
    assert_int_equal(SSL_write(from, text, (int)len), (int)len);
    char got[64] = "";
    int n = SSL_read(to, got, sizeof got - 1);
    assert_int_equal(n, (int)len);
    assert_memory_equal(got, text, len);
}

static void test_tls_session_drop_keeps_connection(void **state)
{
    struct fixture *fx = *state;
    SSL *srv, *cli;
    pair_new(fx, NULL, &srv, &cli);
    handshake(srv, cli);
    carry(srv, cli, "connack"); /* the client takes its ticket too */
    assert_int_equal(SSL_version(srv), TLS1_3_VERSION);
    assert_non_null(SSL_get0_peer_certificate(srv));
    assert_int_equal(SSL_CTX_sess_number(fx->server), 1);

    SSL_SESSION *sess = SSL_get1_session(cli); /* the ticket's */
    assert_non_null(sess);
    assert_int_equal(tls_session_drop(srv), 0);
    assert_null(SSL_get_session(srv));
    assert_null(SSL_get0_peer_certificate(srv));
    assert_int_equal(SSL_CTX_sess_number(fx->server), 1);
    assert_ptr_equal(SSL_get_SSL_CTX(srv), fx->server);

    carry(cli, srv, "publish");
    carry(srv, cli, "puback");
    /* KeyUpdate both ways: the client asks for the server's too. */
    assert_int_equal(SSL_key_update(cli, SSL_KEY_UPDATE_REQUESTED), 1);
    carry(cli, srv, "after client update");
    carry(srv, cli, "after server update");
    assert_int_equal(SSL_key_update(srv, SSL_KEY_UPDATE_NOT_REQUESTED), 1);
    carry(srv, cli, "after another");
    carry(cli, srv, "still");

    assert_int_equal(SSL_shutdown(srv), 0);
    char buf[8];
    assert_int_equal(SSL_read(cli, buf, sizeof buf), 0);
    assert_int_equal(SSL_get_error(cli, 0), SSL_ERROR_ZERO_RETURN);
    assert_int_equal(SSL_shutdown(cli), 1); /* else the client gives up its session */
    SSL_free(srv);
    SSL_free(cli);

    /* The cached session resumes, with its peer certificate. */
    pair_new(fx, sess, &srv, &cli);
    handshake(srv, cli);
    assert_true(SSL_session_reused(srv));
    X509 *peer = SSL_get0_peer_certificate(srv);
    assert_non_null(peer);
    char cn[32] = "";
    X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn, sizeof cn);
    assert_string_equal(cn, "device-1");
    carry(cli, srv, "again");
    SSL_SESSION_free(sess);
    SSL_free(srv);
    SSL_free(cli);
}

static void test_tls_session_drop_unclean_end(void **state)
{
    struct fixture *fx = *state;
    SSL *srv, *cli;
    pair_new(fx, NULL, &srv, &cli);
    handshake(srv, cli);
    carry(srv, cli, "connack");
    long before = SSL_CTX_sess_number(fx->server);
    assert_int_equal(tls_session_drop(srv), 0);
    SSL_free(cli); /* the client goes without close_notify */
    char buf[8];
    assert_true(SSL_read(srv, buf, sizeof buf) <= 0);
    SSL_free(srv);
    assert_int_equal(SSL_CTX_sess_number(fx->server), before);
}

static void test_tls_session_drop_leaves_tls12(void **state)
{
    struct fixture *fx = *state;
    SSL *srv, *cli;
    pair_new(fx, NULL, &srv, &cli);
    assert_int_equal(SSL_set_max_proto_version(cli, TLS1_2_VERSION), 1);
    handshake(srv, cli);
    assert_int_equal(SSL_version(srv), TLS1_2_VERSION);
    assert_int_equal(tls_session_drop(srv), 0);
    assert_non_null(SSL_get_session(srv));
    assert_non_null(SSL_get0_peer_certificate(srv));
    carry(cli, srv, "publish");
    assert_int_equal(SSL_shutdown(srv), 0);
    SSL_free(srv);
    SSL_free(cli);
}

/* A ticket is proven only by the exact tag; missing or altered data is not. */
static void test_tls_ticket_appdata_proven_only_exactly(void **state)
{
    (void)state;
    static const char tag[] = "certmq:1:chain-proven";
    assert_true(tls_ticket_appdata_proven(tag, sizeof tag - 1));
    assert_false(tls_ticket_appdata_proven(NULL, 0));
    assert_false(tls_ticket_appdata_proven(tag, 0));
    assert_false(tls_ticket_appdata_proven(tag, sizeof tag)); /* with the NUL */
    assert_false(tls_ticket_appdata_proven(tag, sizeof tag - 2));
    assert_false(tls_ticket_appdata_proven("certmq:1:-", 10));
    assert_false(tls_ticket_appdata_proven("certmq:1:chain-provem", sizeof tag - 1));
}

static void test_tls_hello_offers_tls13(void **state)
{
    (void)state;
    const unsigned char both[] = {4, 0x03, 0x04, 0x03, 0x03};
    const unsigned char only12[] = {2, 0x03, 0x03};
    const unsigned char lying[] = {8, 0x03, 0x03};           /* says 8 bytes, has 2 */
    const unsigned char odd[] = {3, 0x03, 0x03, 0x03, 0x04}; /* 0304 is past the list */
    const unsigned char grease[] = {4, 0x7a, 0x7a, 0x03, 0x04};
    assert_true(tls_hello_offers_tls13(both, sizeof both));
    assert_false(tls_hello_offers_tls13(only12, sizeof only12));
    assert_false(tls_hello_offers_tls13(lying, sizeof lying));
    assert_false(tls_hello_offers_tls13(odd, sizeof odd));
    assert_true(tls_hello_offers_tls13(grease, sizeof grease));
    assert_false(tls_hello_offers_tls13(both, 0));
    assert_false(tls_hello_offers_tls13(both, 2)); /* cut inside 0304 */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tls_session_drop_keeps_connection),
        cmocka_unit_test(test_tls_session_drop_unclean_end),
        cmocka_unit_test(test_tls_session_drop_leaves_tls12),
        cmocka_unit_test(test_tls_ticket_appdata_proven_only_exactly),
        cmocka_unit_test(test_tls_hello_offers_tls13),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
