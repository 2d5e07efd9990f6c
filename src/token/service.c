/* The device-token service (see service.h). One mutex guards the key and
 * current-token caches; signing happens under it, which is fine for a
 * request that a device makes once per half token lifetime. */
#include "token/service.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "core/log.h"
#include "core/map.h"
#include "core/seal.h"
#include "identity/trust.h"
#include "store/store.h"
#include "token/token.h"

struct tkeys {
    char *priv, *pub;
};

/* Wipes a private key's PEM text before it is freed. */
static void wipe(char *s)
{
    if (s) OPENSSL_cleanse(s, strlen(s));
}

struct current {
    char *jwt;
    int64_t iat, exp;
};

struct token_service {
    pthread_mutex_t lock;
    struct store *st;
    struct trust_index *ti;
    const struct seal *seal; /* the KEK: private keys are stored sealed */
    struct map keys;         /* tenant -> struct tkeys */
    struct map current;      /* tenant \x01 cn -> struct current */
};

/* What a tenant's sealed signing key is: a blob moved to another tenant's
 * row does not open. */
static int key_context(const char *tenant, char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "device-token-key:%s", tenant);
    return n < 0 || (size_t)n >= cap ? ERR_INVALID : 0;
}

/* store_token_key_rewrap callback: seals a plaintext key left by an older
 * schema; a sealed one must open with this KEK, or the start is refused. */
static int seal_stored_key(void *arg, const char *tenant, const char *priv_pem, const void *sealed,
                           size_t sealed_len, void **out, size_t *out_len)
{
    const struct seal *seal = arg;
    char ctx[STORE_TENANT_MAX + 32];
    GUARD(key_context(tenant, ctx, sizeof ctx));
    if (priv_pem) return seal_wrap(seal, ctx, priv_pem, strlen(priv_pem), (uint8_t **)out, out_len);
    int rc = seal_check(seal, sealed, sealed_len);
    if (rc == ERR_CONFLICT) {
        char kid[2 * SEAL_KID_LEN + 1];
        seal_key_id(seal, kid);
        log_error("tenant '%s': its device-token key was sealed under another key-encryption "
                  "key than this one (id %s): set ca_key_file to the key it was sealed with",
                  tenant, kid);
    } else if (rc < 0) {
        log_error("tenant '%s': its stored device-token key is not a sealed key", tenant);
    }
    return rc;
}

int token_service_new(struct store *st, struct trust_index *ti, const struct seal *seal,
                      struct token_service **out)
{
    size_t sealed = 0;
    GUARD(store_token_key_rewrap(st, seal_stored_key, (void *)seal, &sealed));
    if (sealed)
        log_info("sealed %zu device-token signing key(s) an older version stored in plaintext",
                 sealed);
    struct token_service *ts = calloc(1, sizeof *ts);
    if (!ts) return ERR_NOMEM;
    pthread_mutex_init(&ts->lock, NULL);
    ts->st = st;
    ts->ti = ti;
    ts->seal = seal;
    map_init(&ts->keys);
    map_init(&ts->current);
    *out = ts;
    return 0;
}

static void free_keys(const char *k, void *v, void *arg)
{
    (void)k;
    (void)arg;
    struct tkeys *t = v;
    wipe(t->priv);
    free(t->priv);
    free(t->pub);
    free(t);
}

static void free_current(const char *k, void *v, void *arg)
{
    (void)k;
    (void)arg;
    struct current *c = v;
    free(c->jwt);
    free(c);
}

void token_service_free(struct token_service *ts)
{
    if (!ts) return;
    map_each(&ts->keys, free_keys, NULL);
    map_free(&ts->keys);
    map_each(&ts->current, free_current, NULL);
    map_free(&ts->current);
    pthread_mutex_destroy(&ts->lock);
    free(ts);
}

/* Reads the tenant's stored key pair and opens the private key. */
static int load_keys(struct token_service *ts, const char *tenant, struct tkeys *k)
{
    char ctx[STORE_TENANT_MAX + 32];
    void *sealed = NULL;
    size_t sealed_len = 0, priv_len = 0;
    GUARD(key_context(tenant, ctx, sizeof ctx));
    int rc = store_token_key_get(ts->st, tenant, &sealed, &sealed_len, &k->pub);
    if (rc == 0) rc = seal_unwrap(ts->seal, ctx, sealed, sealed_len, &k->priv, &priv_len);
    if (rc < 0 && rc != ERR_NOT_FOUND)
        log_error("tenant '%s': the device-token key cannot be opened", tenant);
    free(sealed);
    return rc;
}

/* Makes a key pair and stores it sealed (first writer wins). */
static int create_keys(struct token_service *ts, const char *tenant)
{
    char ctx[STORE_TENANT_MAX + 32];
    char *priv = NULL, *pub = NULL;
    uint8_t *blob = NULL;
    size_t blob_len = 0;
    GUARD(key_context(tenant, ctx, sizeof ctx));
    int rc = token_key_new(&priv, &pub);
    if (rc == 0) rc = seal_wrap(ts->seal, ctx, priv, strlen(priv), &blob, &blob_len);
    if (rc == 0) rc = store_token_key_put(ts->st, tenant, blob, blob_len, pub);
    wipe(priv);
    free(priv);
    free(pub);
    free(blob);
    return rc;
}

/* The tenant's key pair: from memory, else the store, else a new one put
 * into the store and read back. With create false, a tenant without a key
 * gets ERR_NOT_FOUND. Lock held. */
static int tenant_keys(struct token_service *ts, const char *tenant, bool create,
                       struct tkeys **out)
{
    struct tkeys *k = map_get(&ts->keys, tenant, strlen(tenant));
    if (k) {
        *out = k;
        return 0;
    }
    k = calloc(1, sizeof *k);
    if (!k) return ERR_NOMEM;
    int rc = load_keys(ts, tenant, k);
    if (rc == ERR_NOT_FOUND && create) {
        rc = create_keys(ts, tenant);
        if (rc == 0) rc = load_keys(ts, tenant, k);
        if (rc == 0) log_info("tenant '%s': device-token signing key created", tenant);
    }
    if (rc == 0) rc = map_put(&ts->keys, tenant, strlen(tenant), k, NULL);
    if (rc < 0) {
        free_keys(NULL, k, NULL);
        return rc;
    }
    *out = k;
    return 0;
}

long token_lifespan(struct token_service *ts, const char *tenant)
{
    char v[32];
    if (trust_option_get(ts->ti, tenant, "oauth.internal", "device-token.lifespan.seconds", v,
                         sizeof v) < 0)
        return TOKEN_DEFAULT_LIFESPAN;
    char *end;
    long n = strtol(v, &end, 10);
    if (*end || n < TOKEN_MIN_LIFESPAN) return TOKEN_DEFAULT_LIFESPAN;
    return n;
}

int token_service_issue(struct token_service *ts, const char *tenant, const char *cn, time_t now,
                        char **jwt)
{
    char key[STORE_TENANT_MAX + 1 + 256];
    int klen = snprintf(key, sizeof key, "%s\x01%s", tenant, cn);
    if (klen < 0 || (size_t)klen >= sizeof key) return ERR_INVALID;
    int rc = 0;
    pthread_mutex_lock(&ts->lock);
    struct current *cur = map_get(&ts->current, key, (size_t)klen);
    if (cur && now >= cur->iat && now < cur->iat + (cur->exp - cur->iat) / 2) {
        *jwt = strdup(cur->jwt);
        rc = *jwt ? 0 : ERR_NOMEM;
        goto out;
    }
    struct tkeys *k;
    GUARD_GOTO(rc, tenant_keys(ts, tenant, true, &k), out);
    char user[300];
    snprintf(user, sizeof user, STORE_DEVICE_USER_PREFIX "%s", cn);
    struct token_claims c;
    char *fresh;
    GUARD_GOTO(rc, token_mint(k->priv, user, tenant, now, token_lifespan(ts, tenant), &c, &fresh),
               out);
    if (!cur) {
        cur = calloc(1, sizeof *cur);
        if (!cur || map_put(&ts->current, key, (size_t)klen, cur, NULL) < 0) {
            free(cur);
            free(fresh);
            rc = ERR_NOMEM;
            goto out;
        }
    }
    free(cur->jwt);
    cur->jwt = fresh;
    cur->iat = c.iat;
    cur->exp = c.exp;
    *jwt = strdup(fresh);
    rc = *jwt ? 0 : ERR_NOMEM;
out:
    pthread_mutex_unlock(&ts->lock);
    return rc;
}

int token_service_check(struct token_service *ts, const char *jwt, time_t now, char *tenant,
                        size_t tenant_cap, char *user, size_t user_cap)
{
    char ten[STORE_TENANT_MAX];
    if (token_peek_tenant(jwt, ten, sizeof ten) < 0) return ERR_AUTH;
    int rc;
    pthread_mutex_lock(&ts->lock);
    /* Only tenants that already have a key can have issued tokens:
     * never create one for a name an unauthenticated token chose. */
    struct tkeys *k = NULL;
    char *pub = NULL;
    if (tenant_keys(ts, ten, false, &k) < 0) k = NULL;
    pub = k ? strdup(k->pub) : NULL;
    pthread_mutex_unlock(&ts->lock);
    if (!pub) return ERR_AUTH;
    struct token_claims c;
    rc = token_verify(pub, jwt, ten, now, &c);
    free(pub);
    if (rc < 0) return ERR_AUTH;
    /* The tenant key signs device tokens only: a token naming a password
     * user (the tenant admin, say) is refused however well it is signed. */
    struct store_user u;
    if (store_user_get(ts->st, c.ten, c.sub, &u) < 0 || !u.device) return ERR_AUTH;
    snprintf(tenant, tenant_cap, "%s", c.ten);
    snprintf(user, user_cap, "%s", c.sub);
    return 0;
}

int token_service_public_key(struct token_service *ts, const char *tenant, char **pem)
{
    struct tkeys *k;
    pthread_mutex_lock(&ts->lock);
    int rc = tenant_keys(ts, tenant, true, &k);
    if (rc == 0) {
        *pem = strdup(k->pub);
        if (!*pem) rc = ERR_NOMEM;
    }
    pthread_mutex_unlock(&ts->lock);
    return rc;
}
