/* TLS server contexts (see tls.h): TLS 1.2+, partial writes and released
 * buffers for small idle connections, client certificates requested per
 * the listener's mode, session tickets for returning clients (per node, or
 * stateless under the store's shared keys), and an idle connection's own
 * session (with the peer certificate) let go of. */
#include "net/tls.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>

#include "net/keypass.h"
#include "net/ticketkeys.h"
#include "net/tlslib.h"

/* "what file: reason" from the OpenSSL error queue (then cleared). A failed
 * open is reported by the system's reason ("No such file or directory"),
 * not by OpenSSL's wrapper for it ("system lib"). */
static void ssl_reason(char *err, size_t n, const char *what, const char *file)
{
    unsigned long e, last = 0;
    int sys = 0;
    while ((e = ERR_get_error()) != 0) {
        if (!sys && ERR_SYSTEM_ERROR(e)) sys = ERR_GET_REASON(e);
        last = e;
    }
    const char *r = sys ? strerror(sys) : last ? ERR_reason_error_string(last) : NULL;
    snprintf(err, n, "%s %s: %s", what, file, r ? r : "failed");
}

/* The handshake admits any presented chain; it is verified at CONNECT. */
static int accept_any_chain(X509_STORE_CTX *ctx, void *arg)
{
    (void)ctx;
    (void)arg;
    return 1;
}

/* What the PEM password callback hands OpenSSL: the listener's password,
 * if it has one; never a terminal prompt. */
struct key_pass {
    const char *pw; /* NULL: none configured */
    bool asked;     /* the key turned out to be encrypted */
};

static int key_pass_cb(char *buf, int size, int rwflag, void *arg)
{
    (void)rwflag;
    struct key_pass *kp = arg;
    kp->asked = true;
    if (!kp->pw) return -1;
    size_t len = strlen(kp->pw);
    if (len > (size_t)size) return -1;
    memcpy(buf, kp->pw, len);
    return (int)len;
}

/* The key is read in OpenSSL's default library context, which decodes every
 * PEM key format; the lean TLS context (tlslib.h) reads only certificates.
 * An encrypted key is opened with the listener's keyfile_password_file. */
MUST_USE static int use_private_key(SSL_CTX *ctx, const struct listener_config *lc, char *err,
                                    size_t n)
{
    char pw[KEYPASS_MAX];
    struct key_pass kp = {NULL, false};
    if (lc->keyfile_password_file[0]) {
        GUARD(keypass_read(lc->keyfile_password_file, pw, err, n));
        kp.pw = pw;
    }
    int rc = ERR_TLS;
    EVP_PKEY *key = NULL;
    BIO *in = BIO_new_file(lc->keyfile, "r");
    if (in) key = PEM_read_bio_PrivateKey_ex(in, NULL, key_pass_cb, &kp, NULL, NULL);
    if (kp.pw) keypass_wipe(pw);
    BIO_free(in);
    if (key && SSL_CTX_use_PrivateKey(ctx, key) == 1)
        rc = 0;
    else if (key || !kp.asked)
        ssl_reason(err, n, "cannot load private key", lc->keyfile);
    else if (!kp.pw)
        snprintf(err, n, "private key %s is encrypted: give its password in keyfile_password_file",
                 lc->keyfile);
    else
        snprintf(err, n, "cannot decrypt private key %s with the password in %s", lc->keyfile,
                 lc->keyfile_password_file);
    if (rc < 0) ERR_clear_error();
    EVP_PKEY_free(key);
    return rc;
}

/* The shared ticket keys (tls_tickets store): set once before the listeners
 * are made and cleared after the workers stopped, so the handshake
 * callbacks read it without a lock. NULL: per-node session cache only. */
static struct ticketkeys *ticket_keys;

void tls_use_ticket_keys(struct ticketkeys *tk)
{
    ticket_keys = tk;
}

/* What a ticket says of its session's full handshake (its application data;
 * ex_data is not serialised). Anything else, or nothing, is not proven. */
static const char ticket_proven[] = "certmq:1:chain-proven";
static const char ticket_plain[] = "certmq:1:-";

static int proven_index = -1;
static pthread_once_t proven_once = PTHREAD_ONCE_INIT;

static void proven_init(void)
{
    proven_index = SSL_SESSION_get_ex_new_index(0, "certmq: chain proven", NULL, NULL, NULL);
}

static int ticket_key_cb(SSL *s, unsigned char name[16], unsigned char *iv, EVP_CIPHER_CTX *cctx,
                         EVP_MAC_CTX *hctx, int enc)
{
    (void)s;
    return ticket_keys ? ticketkeys_cipher(ticket_keys, name, iv, cctx, hctx, enc) : -1;
}

/* A ticket is made: it carries whether the session proved the anchor. */
static int ticket_gen_cb(SSL *s, void *arg)
{
    (void)arg;
    pthread_once(&proven_once, proven_init);
    SSL_SESSION *sess = SSL_get_session(s);
    if (!sess) return 0;
    bool proven = proven_index >= 0 && SSL_SESSION_get_ex_data(sess, proven_index) != NULL;
    const char *tag = proven ? ticket_proven : ticket_plain;
    return SSL_SESSION_set1_ticket_appdata(sess, tag, strlen(tag));
}

bool tls_ticket_appdata_proven(const void *data, size_t len)
{
    return data && len == sizeof ticket_proven - 1 && !memcmp(data, ticket_proven, len);
}

/* A ticket was opened: its session is marked proven only when the ticket
 * says so; unknown keys and damaged tickets mean a full handshake. */
static SSL_TICKET_RETURN ticket_dec_cb(SSL *s, SSL_SESSION *ss, const unsigned char *name,
                                       size_t name_len, SSL_TICKET_STATUS status, void *arg)
{
    (void)s;
    (void)name;
    (void)name_len;
    (void)arg;
    if (status == SSL_TICKET_EMPTY || status == SSL_TICKET_NO_DECRYPT)
        return SSL_TICKET_RETURN_IGNORE_RENEW;
    if (status != SSL_TICKET_SUCCESS && status != SSL_TICKET_SUCCESS_RENEW)
        return status == SSL_TICKET_NONE ? SSL_TICKET_RETURN_IGNORE : SSL_TICKET_RETURN_ABORT;
    pthread_once(&proven_once, proven_init);
    void *data = NULL;
    size_t len = 0;
    if (SSL_SESSION_get0_ticket_appdata(ss, &data, &len) != 1) data = NULL;
    if (proven_index < 0 ||
        SSL_SESSION_set_ex_data(ss, proven_index,
                                tls_ticket_appdata_proven(data, len) ? (void *)1 : NULL) != 1)
        return SSL_TICKET_RETURN_IGNORE_RENEW;
    return status == SSL_TICKET_SUCCESS ? SSL_TICKET_RETURN_USE : SSL_TICKET_RETURN_USE_RENEW;
}

bool tls_hello_offers_tls13(const unsigned char *p, size_t n)
{
    if (n < 1) return false;
    size_t len = p[0];
    if (len > n - 1) len = n - 1;
    for (size_t i = 1; i + 1 < len + 1; i += 2)
        if (p[i] == 0x03 && p[i + 1] == 0x04) return true;
    return false;
}

/* A client that cannot speak TLS 1.3 resumes through the node's session
 * cache: a TLS 1.2 ticket is issued inside the handshake, before CONNECT has
 * decided whether the chain proved anything, so it would never resume a
 * device. */
static int hello_cb(SSL *s, int *alert, void *arg)
{
    (void)alert;
    (void)arg;
    const unsigned char *p = NULL;
    size_t n = 0;
    if (SSL_client_hello_get0_ext(s, TLSEXT_TYPE_supported_versions, &p, &n) != 1 ||
        !tls_hello_offers_tls13(p, n))
        SSL_set_options(s, SSL_OP_NO_TICKET);
    return SSL_CLIENT_HELLO_SUCCESS;
}

/* Stateless TLS 1.3 tickets under the shared keys: any node of the store
 * opens them, also after a restart. None is sent at the end of the handshake
 * (num_tickets 0): tls_ticket_send issues one once CONNECT has decided, so
 * that it can say whether the chain proved the anchor. */
static void use_shared_tickets(SSL_CTX *ctx)
{
    SSL_CTX_clear_options(ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_num_tickets(ctx, 0);
    SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_key_cb);
    SSL_CTX_set_session_ticket_cb(ctx, ticket_gen_cb, ticket_dec_cb, NULL);
    SSL_CTX_set_client_hello_cb(ctx, hello_cb, NULL);
}

int tls_ticket_send(SSL *ssl)
{
    if (!ticket_keys || SSL_version(ssl) != TLS1_3_VERSION ||
        (SSL_get_options(ssl) & SSL_OP_NO_TICKET))
        return 0;
    ERR_clear_error();
    if (SSL_new_session_ticket(ssl) != 1) return ERR_TLS;
    int r = SSL_do_handshake(ssl);
    if (r == 1) return 0;
    int e = SSL_get_error(ssl, r);
    if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) return 1;
    ERR_clear_error();
    return ERR_TLS;
}

int tls_ctx_new(const struct listener_config *lc, SSL_CTX **out, char *err, size_t n)
{
    /* Client chains are parsed in the lean context, where setting up a key
     * decoder per certificate is cheap; without it, in the default one. */
    OSSL_LIB_CTX *libctx = NULL;
    if (tls_lib_ctx(&libctx) < 0) libctx = NULL;
    SSL_CTX *ctx = SSL_CTX_new_ex(libctx, NULL, TLS_server_method());
    if (!ctx) {
        snprintf(err, n, "cannot create a TLS context");
        return ERR_TLS;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    /* One read() per flight instead of two per record (header, then body):
     * a full handshake's client records took 16 reads. The server reads
     * until SSL_read wants more, so records read ahead are not left behind. */
    SSL_CTX_set_read_ahead(ctx, 1);
    if (SSL_CTX_use_certificate_chain_file(ctx, lc->certfile) != 1) {
        ssl_reason(err, n, "cannot load certificate", lc->certfile);
        goto fail;
    }
    if (use_private_key(ctx, lc, err, n) < 0) goto fail;
    if (SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(err, n, "%s does not match the certificate in %s", lc->keyfile, lc->certfile);
        goto fail;
    }
    static const unsigned char sid_ctx[] = "certmq";
    SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof sid_ctx - 1);
    /* Stateful TLS 1.3 tickets: a returning client resumes without sending
     * its certificate again, and issuing one costs a cache insert, where a
     * stateless ticket would re-encode and re-parse the whole session
     * (certificates included) on every handshake. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    SSL_CTX_sess_set_cache_size(ctx, lc->tls_session_cache);
    SSL_CTX_set_num_tickets(ctx, lc->tls_session_cache ? 1 : 0);
    if (ticket_keys && lc->tls_session_cache) use_shared_tickets(ctx);
    int mode = SSL_VERIFY_NONE;
    if (lc->client_certs != CLIENT_CERTS_OFF) {
        mode = SSL_VERIFY_PEER;
        if (lc->client_certs == CLIENT_CERTS_REQUIRED) mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
        SSL_CTX_set_cert_verify_callback(ctx, accept_any_chain, NULL);
    }
    SSL_CTX_set_verify(ctx, mode, NULL);
    *out = ctx;
    return 0;
fail:
    SSL_CTX_free(ctx);
    return ERR_TLS;
}

int tls_ca_store_new(const char *cafile, X509_STORE **out, char *err, size_t n)
{
    X509_STORE *st = X509_STORE_new();
    if (!st) return ERR_NOMEM;
    if (X509_STORE_load_file(st, cafile) != 1) {
        ssl_reason(err, n, "cannot load CA file", cafile);
        X509_STORE_free(st);
        return ERR_TLS;
    }
    *out = st;
    return 0;
}

void tls_session_mark_chain_proven(SSL *ssl)
{
    pthread_once(&proven_once, proven_init);
    SSL_SESSION *sess = SSL_get_session(ssl);
    if (sess && proven_index >= 0) SSL_SESSION_set_ex_data(sess, proven_index, (void *)1);
}

bool tls_session_chain_proven(SSL *ssl)
{
    pthread_once(&proven_once, proven_init);
    SSL_SESSION *sess = SSL_get_session(ssl);
    return SSL_session_reused(ssl) && sess && proven_index >= 0 &&
           SSL_SESSION_get_ex_data(sess, proven_index) != NULL;
}

/* One context per negotiated protocol method, made on first use and kept
 * for the process's life; guarded by method_lock. */
static struct {
    const SSL_METHOD *method;
    SSL_CTX *ctx;
} method_ctxs[4];
static pthread_mutex_t method_lock = PTHREAD_MUTEX_INITIALIZER;

static SSL_CTX *method_ctx(const SSL_METHOD *m)
{
    SSL_CTX *ctx = NULL;
    pthread_mutex_lock(&method_lock);
    for (size_t i = 0; i < sizeof method_ctxs / sizeof method_ctxs[0] && !ctx; i++) {
        if (method_ctxs[i].method == m) {
            ctx = method_ctxs[i].ctx;
        } else if (!method_ctxs[i].method) {
            OSSL_LIB_CTX *libctx = NULL;
            if (tls_lib_ctx(&libctx) < 0) libctx = NULL;
            ctx = SSL_CTX_new_ex(libctx, NULL, m);
            if (!ctx) break;
            method_ctxs[i].method = m;
            method_ctxs[i].ctx = ctx;
        }
    }
    pthread_mutex_unlock(&method_lock);
    return ctx;
}

/* SSL_set_session(ssl, NULL) releases the session, but on its own it would
 * also reset an established connection to its context's generic method (its
 * negotiated state lost) and take the session out of the cache. So, around
 * it, the connection is pointed at a context of its negotiated method (no
 * reset) and marked as having sent close_notify (not a failed session, which
 * is what keeps it cached); both are put back after. The context holds a
 * reference meanwhile: a reload may have let go of the listener's. */
int tls_session_drop(SSL *ssl)
{
    if (SSL_version(ssl) != TLS1_3_VERSION) return 0;
    SSL_CTX *same = method_ctx(SSL_get_ssl_method(ssl));
    SSL_CTX *orig = SSL_get_SSL_CTX(ssl);
    if (!same || !SSL_CTX_up_ref(orig)) return ERR_TLS;
    int rc = ERR_TLS;
    int flags = SSL_get_shutdown(ssl);
    if (SSL_set_SSL_CTX(ssl, same) != same) goto out;
    SSL_set_shutdown(ssl, flags | SSL_SENT_SHUTDOWN);
    if (SSL_set_session(ssl, NULL) == 1) rc = 0;
    SSL_set_shutdown(ssl, flags);
    if (SSL_set_SSL_CTX(ssl, orig) != orig) rc = ERR_TLS;
out:
    SSL_CTX_free(orig);
    return rc;
}
