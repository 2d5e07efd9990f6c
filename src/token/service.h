/* The device-token service: per-tenant signing keys (created on first use,
 * kept sealed in the store, pairs cached in memory), lifetimes from the
 * tenant option oauth.internal / device-token.lifespan.seconds, reuse of a
 * device's current token until half its life has passed, and Bearer checks
 * for the REST API. Thread-safe. */
#ifndef CERTMQ_TOKEN_SERVICE_H
#define CERTMQ_TOKEN_SERVICE_H

#include <stddef.h>
#include <time.h>

#include "core/err.h"

struct seal;
struct store;
struct trust_index;
struct token_service;

/* Private keys are stored sealed under seal (borrowed, outlives the
 * service). Seals any key an older version left in plaintext first, and
 * refuses (ERR_CONFLICT) when a stored key was sealed under another KEK. */
MUST_USE int token_service_new(struct store *st, struct trust_index *ti, const struct seal *seal,
                               struct token_service **out);
void token_service_free(struct token_service *ts);

/* The token of device cn (user device_<cn>) in tenant: the current one while
 * less than half its lifetime has passed, else a new one. *jwt: free(). */
MUST_USE int token_service_issue(struct token_service *ts, const char *tenant, const char *cn,
                                 time_t now, char **jwt);
/* Verifies a Bearer token (ES256 with its tenant's key, expiry) and that
 * its subject is a device user of that tenant. Fills tenant and user (the
 * device user name) on success; else ERR_AUTH. */
MUST_USE int token_service_check(struct token_service *ts, const char *jwt, time_t now,
                                 char *tenant, size_t tenant_cap, char *user, size_t user_cap);
/* The tenant's public key as PEM (created if the tenant has none yet);
 * *pem: free(). */
MUST_USE int token_service_public_key(struct token_service *ts, const char *tenant, char **pem);

/* Lifespan option bounds. */
long token_lifespan(struct token_service *ts, const char *tenant);

#endif
