/* Online CRL checking for chains of uploaded CAs (tenant option
 * configuration / crl.online.check.enabled): the CRLs named in certificates
 * (CRL distribution points, http or https) are fetched by one background
 * thread with a timeout and a size limit, verified against the certificate's
 * issuer and kept until their nextUpdate (refreshed ahead of it). The
 * connect path only looks into that cache and never waits for the network:
 * a CRL not fetched yet is "unavailable" for that connect, and its fetch is
 * queued. Thread-safe (one mutex; lock order: trust index, then this). */
#ifndef CERTMQ_IDENTITY_CRLFETCH_H
#define CERTMQ_IDENTITY_CRLFETCH_H

#include <stddef.h>
#include <time.h>

#include <openssl/x509.h>

#include "core/err.h"

struct crlfetch;

struct crlfetch_config {
    long timeout_s;   /* one fetch, connect to last byte */
    size_t max_bytes; /* largest CRL accepted */
    long retry_s;     /* wait after a failed fetch before the next try */
    size_t max_urls;  /* distinct CRL URLs kept; further ones are unavailable */
};

/* Starts the fetch thread. */
MUST_USE int crlfetch_new(const struct crlfetch_config *cfg, struct crlfetch **out);
/* Stops the thread (an ongoing fetch ends within its timeout) and frees. */
void crlfetch_free(struct crlfetch *cf);

enum crlfetch_state {
    CRLFETCH_GOOD,        /* a current CRL does not list cert */
    CRLFETCH_REVOKED,     /* a current CRL lists cert */
    CRLFETCH_UNAVAILABLE, /* cert names a CRL that is not (yet, or no longer) at hand */
    CRLFETCH_NONE,        /* cert names no http(s) CRL distribution point */
};
/* The hot-path look-up for cert issued by issuer at now; queues a fetch
 * when the CRL is unknown. Never blocks on the network. */
enum crlfetch_state crlfetch_check(struct crlfetch *cf, X509 *cert, X509 *issuer, time_t now);
/* CRLs at hand and fetches that failed, for logs and tests. */
void crlfetch_counts(struct crlfetch *cf, size_t *fetched, size_t *failed);

#endif
