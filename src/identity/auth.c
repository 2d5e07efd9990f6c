/* Connection authentication (see auth.h). Certificate clients on a listener
 * with a static cafile are verified against it and named by their CN;
 * clients without a certificate are admitted only when allow_anonymous is
 * set. Each refusal has a named reason and a counter. */
#include "identity/auth.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/x509v3.h>

#include "core/config.h"
#include "core/log.h"
#include "mqtt/codec.h"

enum reason {
    R_NO_CREDENTIALS,
    R_UNTRUSTED,
    R_CHAIN_INVALID,
    R_BAD_CN,
    R_COUNT,
};

static const char *const reason_text[R_COUNT] = {
    [R_NO_CREDENTIALS] = "no certificate and no credentials",
    [R_UNTRUSTED] = "certificate not trusted",
    [R_CHAIN_INVALID] = "certificate chain invalid",
    [R_BAD_CN] = "bad common name",
};

struct auth {
    bool allow_anonymous;
    atomic_ulong refused[R_COUNT];
};

int auth_new(const struct config *cfg, struct auth **out)
{
    struct auth *a = calloc(1, sizeof *a);
    if (!a) return ERR_NOMEM;
    a->allow_anonymous = cfg->allow_anonymous;
    *out = a;
    return 0;
}

void auth_free(struct auth *a)
{
    free(a);
}

static int refuse(struct auth *a, struct auth_result *res, enum reason r)
{
    atomic_fetch_add(&a->refused[r], 1);
    res->connack_rc = MQTT_CONNACK_NOT_AUTHORIZED;
    res->reason = reason_text[r];
    return 0;
}

/* The leaf's CN: non-empty, no ':' (it names the device in topics). */
static bool leaf_cn(X509 *leaf, char *out, size_t n)
{
    X509_NAME *name = X509_get_subject_name(leaf);
    int i = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
    if (i < 0) return false;
    ASN1_STRING *d = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i));
    unsigned char *utf8 = NULL;
    int len = ASN1_STRING_to_UTF8(&utf8, d);
    bool ok = len > 0 && (size_t)len < n && !memchr(utf8, 0, (size_t)len) &&
              !memchr(utf8, ':', (size_t)len);
    if (ok) {
        memcpy(out, utf8, (size_t)len);
        out[len] = 0;
    }
    OPENSSL_free(utf8);
    return ok;
}

static int verify_static(X509_STORE *store, X509 *leaf, STACK_OF(X509) * chain, time_t now,
                         const char **why)
{
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    if (!ctx || !X509_STORE_CTX_init(ctx, store, leaf, chain)) {
        X509_STORE_CTX_free(ctx);
        return ERR_NOMEM;
    }
    X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT);
    X509_VERIFY_PARAM_set_time(X509_STORE_CTX_get0_param(ctx), now);
    int ok = X509_verify_cert(ctx);
    *why = ok == 1 ? NULL : X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx));
    X509_STORE_CTX_free(ctx);
    return ok == 1 ? 0 : ERR_AUTH;
}

int auth_connect(struct auth *a, const struct auth_request *rq, struct auth_result *res)
{
    memset(res, 0, sizeof *res);
    if (rq->leaf) {
        if (!leaf_cn(rq->leaf, res->identity, sizeof res->identity))
            return refuse(a, res, R_BAD_CN);
        if (!rq->listener_ca) return refuse(a, res, R_UNTRUSTED);
        const char *why;
        int rc = verify_static(rq->listener_ca, rq->leaf, rq->chain, rq->now, &why);
        if (rc == ERR_NOMEM) return rc;
        if (rc < 0) {
            log_info("certificate of '%s' refused: %s", res->identity, why);
            return refuse(a, res, R_CHAIN_INVALID);
        }
        return 0;
    }
    if (!a->allow_anonymous) return refuse(a, res, R_NO_CREDENTIALS);
    const char *name = rq->username ? rq->username : rq->client_id;
    size_t len = rq->username ? rq->username_len : rq->client_id_len;
    snprintf(res->identity, sizeof res->identity, "%.*s", (int)(len < 127 ? len : 127), name);
    return 0;
}

void auth_log_counters(struct auth *a)
{
    for (int i = 0; i < R_COUNT; i++) {
        unsigned long n = atomic_load(&a->refused[i]);
        if (n) log_info("refused connections, %s: %lu", reason_text[i], n);
    }
}
