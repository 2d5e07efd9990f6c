/* The CRL cache and its fetch thread (crlfetch.h). HTTP is OpenSSL's own
 * client (OSSL_HTTP_get: timeout, response size limit, redirects), TLS for
 * https URLs through its connect callback; a CRL is parsed and verified by
 * revocation.c before it counts. */
#include "identity/crlfetch.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/err.h>
#include <openssl/http.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "core/log.h"
#include "core/map.h"
#include "identity/revocation.h"

#define CRL_URL_MAX       1024
#define CRL_DEFAULT_LIFE  3600 /* a CRL without nextUpdate is kept this long */
#define CRL_REFRESH_AHEAD 60   /* refetch this many seconds before nextUpdate */

struct cf_entry {
    X509 *issuer;  /* verifies the CRL */
    X509_CRL *crl; /* verified, or NULL */
    time_t next_update;
    time_t last_try; /* 0: never tried */
};

struct crlfetch {
    struct crlfetch_config cfg;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct map urls; /* url -> struct cf_entry */
    bool stop;
    pthread_t thread;
    SSL_CTX *tls;
    size_t fetched, failed;
};

static void entry_free(void *v)
{
    struct cf_entry *e = v;
    if (!e) return;
    X509_free(e->issuer);
    X509_CRL_free(e->crl);
    free(e);
}

/* The first http(s) URI of cert's CRL distribution points into url. */
static bool cdp_url(X509 *cert, char *url, size_t cap)
{
    STACK_OF(DIST_POINT) *dps = X509_get_ext_d2i(cert, NID_crl_distribution_points, NULL, NULL);
    bool found = false;
    for (int i = 0; !found && i < sk_DIST_POINT_num(dps); i++) {
        DIST_POINT *dp = sk_DIST_POINT_value(dps, i);
        if (!dp->distpoint || dp->distpoint->type != 0) continue;
        GENERAL_NAMES *names = dp->distpoint->name.fullname;
        for (int k = 0; !found && k < sk_GENERAL_NAME_num(names); k++) {
            GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, k);
            if (gn->type != GEN_URI) continue;
            const ASN1_IA5STRING *s = gn->d.uniformResourceIdentifier;
            size_t n = (size_t)ASN1_STRING_length(s);
            const char *p = (const char *)ASN1_STRING_get0_data(s);
            if (n == 0 || n >= cap || memchr(p, 0, n)) continue;
            if (strncasecmp(p, "http://", 7) != 0 && strncasecmp(p, "https://", 8) != 0) continue;
            memcpy(url, p, n);
            url[n] = 0;
            found = true;
        }
    }
    sk_DIST_POINT_pop_free(dps, DIST_POINT_free);
    return found;
}

enum crlfetch_state crlfetch_check(struct crlfetch *cf, X509 *cert, X509 *issuer, time_t now)
{
    char url[CRL_URL_MAX];
    if (!cf || !cdp_url(cert, url, sizeof url)) return CRLFETCH_NONE;
    enum crlfetch_state st = CRLFETCH_UNAVAILABLE;
    pthread_mutex_lock(&cf->mu);
    struct cf_entry *e = map_get(&cf->urls, url, strlen(url));
    if (e && e->crl && now < e->next_update) {
        X509_REVOKED *rev = NULL;
        st = X509_CRL_get0_by_cert(e->crl, &rev, cert) == 1 ? CRLFETCH_REVOKED : CRLFETCH_GOOD;
    } else if (!e && cf->urls.count < cf->cfg.max_urls && (e = calloc(1, sizeof *e))) {
        e->issuer = X509_up_ref(issuer) == 1 ? issuer : NULL;
        if (e->issuer && map_put(&cf->urls, url, strlen(url), e, NULL) == 0)
            pthread_cond_signal(&cf->cv);
        else
            entry_free(e);
    }
    pthread_mutex_unlock(&cf->mu);
    return st;
}

/* TLS below OpenSSL's HTTP client for https URLs (its connect callback). */
static BIO *tls_cb(BIO *bio, void *arg, int connect, int detail)
{
    if (connect && detail) {
        BIO *sbio = BIO_new_ssl((SSL_CTX *)arg, 1);
        return sbio ? BIO_push(sbio, bio) : NULL;
    }
    if (!connect) {
        BIO *inner = BIO_pop(bio);
        BIO_free(bio);
        return inner;
    }
    return bio;
}

/* GET url, parse and verify against issuer; *crl and *next on success. */
static int fetch_one(struct crlfetch *cf, const char *url, X509 *issuer, X509_CRL **crl,
                     time_t *next)
{
    bool tls = strncasecmp(url, "https://", 8) == 0;
    /* expect_asn1: the whole DER answer is read (RFC 5280: a CRL over HTTP
     * is DER) within the timeout, into a memory BIO */
    BIO *mem = OSSL_HTTP_get(url, NULL, NULL, NULL, NULL, tls ? tls_cb : NULL, cf->tls, 0, NULL,
                             NULL, 1, cf->cfg.max_bytes, (int)cf->cfg.timeout_s);
    if (!mem) return ERR_IO;
    /* copied out of the BIO, within max_bytes */
    size_t cap = 1u << 16, n = 0;
    uint8_t *data = malloc(cap);
    int rc = data ? 0 : ERR_NOMEM, r;
    while (rc == 0 && (r = BIO_read(mem, data + n, (int)(cap - n))) > 0) {
        n += (size_t)r;
        if (n == cap && cap >= cf->cfg.max_bytes) {
            rc = ERR_TOO_LARGE;
        } else if (n == cap) {
            uint8_t *more = realloc(data, cap * 2);
            if (more) {
                data = more;
                cap *= 2;
            } else {
                rc = ERR_NOMEM;
            }
        }
    }
    BIO_free_all(mem);
    if (rc == 0) rc = n > 0 ? revoc_crl_parse(data, n, crl) : ERR_MALFORMED;
    free(data);
    if (rc < 0) return rc;
    STACK_OF(X509) *cas = sk_X509_new_null();
    X509 *by = NULL;
    const char *why = NULL;
    rc = cas && sk_X509_push(cas, issuer) ? revoc_crl_verify(*crl, cas, &by, &why) : ERR_NOMEM;
    sk_X509_free(cas);
    struct tm tm;
    const ASN1_TIME *nu = X509_CRL_get0_nextUpdate(*crl);
    *next = nu && ASN1_TIME_to_tm(nu, &tm) == 1 ? timegm(&tm) : time(NULL) + CRL_DEFAULT_LIFE;
    if (rc < 0) {
        log_warn("CRL from %s refused: %s", url, why ? why : "cannot be verified");
        X509_CRL_free(*crl);
        *crl = NULL;
    }
    return rc;
}

struct due {
    time_t now;
    long retry;
    const char *url;
    struct cf_entry *e;
};

static void find_due(const char *key, void *value, void *arg)
{
    struct due *d = arg;
    struct cf_entry *e = value;
    if (d->url) return;
    bool stale = !e->crl || d->now + CRL_REFRESH_AHEAD >= e->next_update;
    if (stale && (e->last_try == 0 || d->now - e->last_try >= d->retry)) {
        d->url = key;
        d->e = e;
    }
}

/* One due entry fetched, with the lock dropped around the network. */
static void fetch_due(struct crlfetch *cf, struct due *d)
{
    char url[CRL_URL_MAX];
    snprintf(url, sizeof url, "%s", d->url);
    X509 *issuer = d->e->issuer;
    d->e->last_try = d->now;
    X509_up_ref(issuer);
    pthread_mutex_unlock(&cf->mu);
    X509_CRL *crl = NULL;
    time_t next = 0;
    int rc = fetch_one(cf, url, issuer, &crl, &next);
    X509_free(issuer);
    pthread_mutex_lock(&cf->mu);
    struct cf_entry *e = map_get(&cf->urls, url, strlen(url));
    if (rc == 0 && e) {
        X509_CRL_free(e->crl);
        e->crl = crl;
        e->next_update = next;
        cf->fetched++;
        log_info("CRL fetched from %s (%d revoked)", url,
                 sk_X509_REVOKED_num(X509_CRL_get_REVOKED(crl)));
    } else {
        X509_CRL_free(crl);
        cf->failed++;
        unsigned long err = ERR_peek_last_error();
        if (rc != 0)
            log_warn("CRL from %s could not be fetched (%s); retry in %ld s", url,
                     err ? ERR_reason_error_string(err) : err_str(rc), cf->cfg.retry_s);
        ERR_clear_error();
    }
}

static void *fetch_thread(void *arg)
{
    struct crlfetch *cf = arg;
    pthread_mutex_lock(&cf->mu);
    while (!cf->stop) {
        struct due d = {time(NULL), cf->cfg.retry_s, NULL, NULL};
        map_each(&cf->urls, find_due, &d);
        if (d.url) {
            fetch_due(cf, &d);
            continue;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&cf->cv, &cf->mu, &ts);
    }
    pthread_mutex_unlock(&cf->mu);
    return NULL;
}

int crlfetch_new(const struct crlfetch_config *cfg, struct crlfetch **out)
{
    struct crlfetch *cf = calloc(1, sizeof *cf);
    ENSURE(cf, ERR_NOMEM);
    cf->cfg = *cfg;
    if (cf->cfg.timeout_s <= 0) cf->cfg.timeout_s = 5;
    if (!cf->cfg.max_bytes) cf->cfg.max_bytes = 10u << 20;
    if (cf->cfg.retry_s <= 0) cf->cfg.retry_s = 60;
    if (!cf->cfg.max_urls) cf->cfg.max_urls = 10000;
    pthread_mutex_init(&cf->mu, NULL);
    pthread_cond_init(&cf->cv, NULL);
    map_init(&cf->urls);
    cf->tls = SSL_CTX_new(TLS_client_method());
    if (cf->tls) {
        SSL_CTX_set_verify(cf->tls, SSL_VERIFY_PEER, NULL);
        ignore_result(SSL_CTX_set_default_verify_paths(cf->tls) == 1 ? 0 : ERR_TLS);
    }
    if (!cf->tls || pthread_create(&cf->thread, NULL, fetch_thread, cf) != 0) {
        SSL_CTX_free(cf->tls);
        map_free(&cf->urls);
        free(cf);
        return ERR_INTERNAL;
    }
    *out = cf;
    return 0;
}

void crlfetch_free(struct crlfetch *cf)
{
    if (!cf) return;
    pthread_mutex_lock(&cf->mu);
    cf->stop = true;
    pthread_cond_signal(&cf->cv);
    pthread_mutex_unlock(&cf->mu);
    pthread_join(cf->thread, NULL);
    map_clear(&cf->urls, entry_free);
    map_free(&cf->urls);
    SSL_CTX_free(cf->tls);
    pthread_cond_destroy(&cf->cv);
    pthread_mutex_destroy(&cf->mu);
    free(cf);
}

void crlfetch_counts(struct crlfetch *cf, size_t *fetched, size_t *failed)
{
    pthread_mutex_lock(&cf->mu);
    *fetched = cf->fetched;
    *failed = cf->failed;
    pthread_mutex_unlock(&cf->mu);
}
