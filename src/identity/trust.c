/* The trust index (see trust.h): a few hash maps (core/map.h, seeded per
 * process) under one rwlock, plus a mutex-guarded cache of verified
 * passwords. Keys are byte strings joining their parts with NUL (tenant ids
 * and names never contain NUL), so one map type serves every table. */
#include "identity/trust.h"

#include <ctype.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "core/log.h"
#include "core/map.h"
#include "identity/password.h"

#define KEY_MAX         1024
#define CACHE_TTL_S     60
#define CACHE_MAX_ITEMS 4096

/* Joins up to three parts with NUL into buf; returns the length, 0 if too long. */
static size_t mkkey(char *buf, const char *a, const char *b, const char *c)
{
    size_t la = strlen(a), lb = b ? strlen(b) : 0, lc = c ? strlen(c) : 0;
    if (la + lb + lc + 2 > KEY_MAX) return 0;
    memcpy(buf, a, la);
    size_t n = la;
    if (b) {
        buf[n++] = '\0';
        memcpy(buf + n, b, lb);
        n += lb;
    }
    if (c) {
        buf[n++] = '\0';
        memcpy(buf + n, c, lc);
        n += lc;
    }
    return n;
}

/* ---- the index ---- */

struct anchor_list {
    size_t n, cap;
    struct trust_anchor **a;
};

struct user_entry {
    char pw_hash[STORE_HASH_MAX];
    unsigned roles;
};

struct cache_entry {
    time_t expires;
    unsigned roles;
};

struct trust_index {
    pthread_rwlock_t lock;
    struct map anchors;    /* tenant\0fp -> struct trust_anchor (owner) */
    struct map by_fp;      /* fp -> anchor_list */
    struct map by_subject; /* subject DER -> anchor_list */
    struct map devices;    /* tenant\0cn -> (void *)1 */
    struct map users;      /* tenant\0name -> user_entry */
    struct map options;    /* tenant\0category\0key -> char * */
    struct map crl;        /* tenant\0serial -> (void *)1 */
    uint64_t anchor_seq;   /* last upload sequence number handed out */
    pthread_mutex_t cache_mu;
    struct map cache;         /* SHA-256(pepper, tenant, name, pw) -> cache_entry */
    unsigned char pepper[32]; /* random per process: cache keys never reveal passwords */
};

static void free_anchor(void *p)
{
    struct trust_anchor *a = p;
    if (!a) return;
    X509_free(a->cert);
    free(a);
}

static void free_list(void *p)
{
    struct anchor_list *l = p;
    if (!l) return;
    free(l->a);
    free(l);
}

int trust_new(struct trust_index **out)
{
    struct trust_index *ti = calloc(1, sizeof *ti);
    if (!ti) return ERR_NOMEM;
    struct map *maps[] = {&ti->anchors, &ti->by_fp,   &ti->by_subject, &ti->devices,
                          &ti->users,   &ti->options, &ti->crl,        &ti->cache};
    for (size_t i = 0; i < sizeof maps / sizeof maps[0]; i++) map_init(maps[i]);
    if (RAND_bytes(ti->pepper, sizeof ti->pepper) != 1) {
        free(ti);
        return ERR_INTERNAL;
    }
    pthread_rwlock_init(&ti->lock, NULL);
    pthread_mutex_init(&ti->cache_mu, NULL);
    *out = ti;
    return 0;
}

void trust_free(struct trust_index *ti)
{
    if (!ti) return;
    map_clear(&ti->by_fp, free_list);
    map_clear(&ti->by_subject, free_list);
    map_clear(&ti->anchors, free_anchor);
    map_clear(&ti->users, free);
    map_clear(&ti->options, free);
    map_clear(&ti->cache, free);
    struct map *maps[] = {&ti->anchors, &ti->by_fp,   &ti->by_subject, &ti->devices,
                          &ti->users,   &ti->options, &ti->crl,        &ti->cache};
    for (size_t i = 0; i < sizeof maps / sizeof maps[0]; i++) map_free(maps[i]);
    pthread_rwlock_destroy(&ti->lock);
    pthread_mutex_destroy(&ti->cache_mu);
    free(ti);
}

static void wlock(struct trust_index *ti)
{
    pthread_rwlock_wrlock(&ti->lock);
}

static void unlock(struct trust_index *ti)
{
    pthread_rwlock_unlock(&ti->lock);
}

void trust_read_lock(const struct trust_index *ti)
{
    pthread_rwlock_rdlock((pthread_rwlock_t *)&ti->lock);
}

void trust_read_unlock(const struct trust_index *ti)
{
    pthread_rwlock_unlock((pthread_rwlock_t *)&ti->lock);
}

/* ---- fingerprints and serials ---- */

int trust_fingerprint(X509 *cert, char *fp)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    static const char hx[] = "0123456789abcdef";
    ENSURE(cert, ERR_INVALID);
    ENSURE(X509_digest(cert, EVP_sha1(), md, &n) == 1 && n == 20, ERR_INTERNAL);
    for (unsigned i = 0; i < n; i++) {
        fp[2 * i] = hx[md[i] >> 4];
        fp[2 * i + 1] = hx[md[i] & 15];
    }
    fp[40] = '\0';
    return 0;
}

int trust_serial_normalize(const char *in, char *out, size_t cap)
{
    size_t n = 0;
    bool leading = true;
    ENSURE(in && cap >= 2, ERR_INVALID);
    while (*in == ' ') in++;
    if (in[0] == '0' && (in[1] == 'x' || in[1] == 'X')) in += 2;
    ENSURE(*in, ERR_INVALID);
    for (; *in; in++) {
        char c = *in;
        if (c == ':' || c == ' ') continue;
        ENSURE(isxdigit((unsigned char)c), ERR_INVALID);
        if (leading && c == '0') continue;
        leading = false;
        ENSURE(n + 1 < cap, ERR_TOO_LARGE);
        out[n++] = (char)toupper((unsigned char)c);
    }
    if (n == 0) out[n++] = '0';
    out[n] = '\0';
    return 0;
}

int trust_serial_of(X509 *cert, char *out, size_t cap)
{
    int rc = ERR_INTERNAL;
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL);
    char *hex = bn ? BN_bn2hex(bn) : NULL;
    if (!hex) goto out;
    rc = trust_serial_normalize(hex[0] == '-' ? hex + 1 : hex, out, cap);
out:
    OPENSSL_free(hex);
    BN_free(bn);
    return rc;
}

/* ---- anchors ---- */

static int list_add(struct map *m, const void *key, size_t len, struct trust_anchor *a)
{
    struct anchor_list *l = map_get(m, key, len);
    if (!l) {
        l = calloc(1, sizeof *l);
        if (!l) return ERR_NOMEM;
        if (map_put(m, key, len, l, NULL) < 0) {
            free(l);
            return ERR_NOMEM;
        }
    }
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 2;
        struct trust_anchor **p = realloc(l->a, cap * sizeof *p);
        if (!p) return ERR_NOMEM;
        l->a = p;
        l->cap = cap;
    }
    l->a[l->n++] = a;
    return 0;
}

static void list_remove(struct map *m, const void *key, size_t len, struct trust_anchor *a)
{
    struct anchor_list *l = map_get(m, key, len);
    if (!l) return;
    for (size_t i = 0; i < l->n; i++) {
        if (l->a[i] != a) continue;
        l->a[i] = l->a[--l->n];
        break;
    }
    if (l->n == 0) free_list(map_del(m, key, len));
}

static int subject_key(X509 *cert, const unsigned char **der, size_t *len)
{
    ENSURE(X509_NAME_get0_der(X509_get_subject_name(cert), der, len) == 1, ERR_INTERNAL);
    return 0;
}

/* Unlinks and frees the anchor stored under key (write lock held). */
static void anchor_drop(struct trust_index *ti, const char *key, size_t klen)
{
    struct trust_anchor *a = map_del(&ti->anchors, key, klen);
    if (!a) return;
    const unsigned char *der = NULL;
    size_t dlen = 0;
    list_remove(&ti->by_fp, a->fp, strlen(a->fp), a);
    if (subject_key(a->cert, &der, &dlen) == 0) list_remove(&ti->by_subject, der, dlen, a);
    free_anchor(a);
}

int trust_anchor_put(struct trust_index *ti, const char *tenant, X509 *cert, bool enabled,
                     bool auto_registration, bool pop_valid)
{
    char key[KEY_MAX];
    const unsigned char *der = NULL;
    size_t dlen = 0;
    struct trust_anchor *a = calloc(1, sizeof *a);
    if (!a) return ERR_NOMEM;
    int rc = trust_fingerprint(cert, a->fp);
    if (rc == 0) rc = subject_key(cert, &der, &dlen);
    if (rc < 0 || strlen(tenant) >= sizeof a->tenant) {
        free(a);
        return rc < 0 ? rc : ERR_INVALID;
    }
    snprintf(a->tenant, sizeof a->tenant, "%s", tenant);
    X509_up_ref(cert);
    a->cert = cert;
    a->enabled = enabled;
    a->auto_registration = auto_registration;
    a->pop_valid = pop_valid;
    size_t klen = mkkey(key, tenant, a->fp, NULL);

    wlock(ti);
    const struct trust_anchor *old = map_get(&ti->anchors, key, klen);
    a->seq = old ? old->seq : ++ti->anchor_seq;
    anchor_drop(ti, key, klen);
    rc = map_put(&ti->anchors, key, klen, a, NULL);
    if (rc == 0) rc = list_add(&ti->by_fp, a->fp, strlen(a->fp), a);
    if (rc == 0) rc = list_add(&ti->by_subject, der, dlen, a);
    if (rc < 0) anchor_drop(ti, key, klen);
    unlock(ti);
    return rc;
}

int trust_anchor_remove(struct trust_index *ti, const char *tenant, const char *fp)
{
    char key[KEY_MAX];
    size_t klen = mkkey(key, tenant, fp, NULL);
    ENSURE(klen, ERR_NOT_FOUND);
    wlock(ti);
    bool found = map_get(&ti->anchors, key, klen) != NULL;
    anchor_drop(ti, key, klen);
    unlock(ti);
    return found ? 0 : ERR_NOT_FOUND;
}

int trust_anchor_get(struct trust_index *ti, const char *tenant, const char *fp,
                     struct trust_anchor *out)
{
    char key[KEY_MAX];
    size_t klen = mkkey(key, tenant, fp, NULL);
    int rc = ERR_NOT_FOUND;
    ENSURE(klen, ERR_NOT_FOUND);
    trust_read_lock(ti);
    const struct trust_anchor *a = map_get(&ti->anchors, key, klen);
    if (a) {
        *out = *a;
        out->cert = NULL;
        rc = 0;
    }
    trust_read_unlock(ti);
    return rc;
}

/* One issued the other (a self-signed certificate issuing itself aside);
 * names are compared first, as most anchors are unrelated. */
static bool issued_either_way(X509 *x, X509 *y)
{
    if (X509_cmp(x, y) == 0) return false;
    if (X509_NAME_cmp(X509_get_subject_name(x), X509_get_issuer_name(y)) == 0 &&
        X509_check_issued(x, y) == X509_V_OK)
        return true;
    return X509_NAME_cmp(X509_get_subject_name(y), X509_get_issuer_name(x)) == 0 &&
           X509_check_issued(y, x) == X509_V_OK;
}

struct overlap_ctx {
    const struct trust_anchor *me;
    const char *tenant, *fp;
    char (*others)[STORE_TENANT_MAX];
    size_t n, max;
    bool junior;
};

static void overlap_cb(const char *key, void *value, void *arg)
{
    (void)key;
    struct overlap_ctx *o = arg;
    const struct trust_anchor *a = value;
    if (strcmp(a->tenant, o->tenant) == 0) return;
    if (strcmp(a->fp, o->fp) != 0 && !issued_either_way(a->cert, o->me->cert)) return;
    o->junior = o->junior || a->seq < o->me->seq;
    for (size_t i = 0; i < o->n; i++)
        if (strcmp(o->others[i], a->tenant) == 0) return;
    if (o->n < o->max) snprintf(o->others[o->n++], STORE_TENANT_MAX, "%s", a->tenant);
}

size_t trust_overlaps(struct trust_index *ti, const char *tenant, const char *fp,
                      char (*others)[STORE_TENANT_MAX], size_t max, bool *junior)
{
    char key[KEY_MAX];
    size_t klen = mkkey(key, tenant, fp, NULL);
    struct overlap_ctx o = {NULL, tenant, fp, others, 0, max, false};
    trust_read_lock(ti);
    o.me = klen ? map_get(&ti->anchors, key, klen) : NULL;
    if (o.me) map_each(&ti->anchors, overlap_cb, &o);
    trust_read_unlock(ti);
    *junior = o.junior;
    return o.n;
}

size_t trust_by_fp_locked(const struct trust_index *ti, const char *fp,
                          const struct trust_anchor **out, size_t max)
{
    const struct anchor_list *l = map_get(&ti->by_fp, fp, strlen(fp));
    size_t k = 0;
    for (size_t i = 0; l && i < l->n && k < max; i++) out[k++] = l->a[i];
    return k;
}

size_t trust_by_subject_locked(const struct trust_index *ti, const X509_NAME *name,
                               const struct trust_anchor **out, size_t max)
{
    const unsigned char *der = NULL;
    size_t len = 0;
    if (X509_NAME_get0_der((X509_NAME *)name, &der, &len) != 1) return 0;
    const struct anchor_list *l = map_get(&ti->by_subject, der, len);
    size_t k = 0;
    for (size_t i = 0; l && i < l->n && k < max; i++) out[k++] = l->a[i];
    return k;
}

/* ---- devices ---- */

int trust_device_add(struct trust_index *ti, const char *tenant, const char *cn)
{
    char key[KEY_MAX];
    size_t klen = mkkey(key, tenant, cn, NULL);
    ENSURE(klen, ERR_INVALID);
    int rc = 0;
    wlock(ti);
    if (!map_get(&ti->devices, key, klen)) rc = map_put(&ti->devices, key, klen, (void *)1, NULL);
    unlock(ti);
    return rc;
}

int trust_device_remove(struct trust_index *ti, const char *tenant, const char *cn)
{
    char key[KEY_MAX];
    size_t klen = mkkey(key, tenant, cn, NULL);
    ENSURE(klen, ERR_INVALID);
    wlock(ti);
    bool had = map_del(&ti->devices, key, klen) != NULL;
    unlock(ti);
    return had ? 0 : ERR_NOT_FOUND;
}

bool trust_device_registered_locked(const struct trust_index *ti, const char *tenant,
                                    const char *cn)
{
    char key[KEY_MAX];
    size_t klen = mkkey(key, tenant, cn, NULL);
    return klen && map_get(&ti->devices, key, klen) != NULL;
}

bool trust_device_registered(struct trust_index *ti, const char *tenant, const char *cn)
{
    trust_read_lock(ti);
    bool r = trust_device_registered_locked(ti, tenant, cn);
    trust_read_unlock(ti);
    return r;
}

bool trust_user_known(struct trust_index *ti, const char *tenant, const char *name)
{
    char key[KEY_MAX];
    size_t klen = mkkey(key, tenant, name, NULL);
    trust_read_lock(ti);
    bool r = klen && map_get(&ti->users, key, klen) != NULL;
    trust_read_unlock(ti);
    return r;
}

size_t trust_device_count(struct trust_index *ti)
{
    trust_read_lock(ti);
    size_t n = ti->devices.count;
    trust_read_unlock(ti);
    return n;
}

int trust_register_device(struct trust_index *ti, struct store *st, const char *tenant,
                          const char *cn, bool *created)
{
    /* A known device connects without the store (which may be a database
     * that is down for a moment): only a new one is written. */
    if (trust_device_registered(ti, tenant, cn)) {
        *created = false;
        return 0;
    }
    GUARD(store_device_register(st, tenant, cn, "CERTIFICATES", created));
    return trust_device_add(ti, tenant, cn);
}

/* ---- password users ---- */

int trust_user_put(struct trust_index *ti, const char *tenant, const char *name,
                   const char *pw_hash, unsigned roles)
{
    char key[KEY_MAX];
    size_t klen = mkkey(key, tenant, name, NULL);
    ENSURE(klen, ERR_INVALID);
    struct user_entry *u = NULL;
    if (pw_hash && *pw_hash) {
        u = calloc(1, sizeof *u);
        if (!u) return ERR_NOMEM;
        snprintf(u->pw_hash, sizeof u->pw_hash, "%s", pw_hash);
        u->roles = roles;
    }
    int rc = 0;
    wlock(ti);
    void *old = map_del(&ti->users, key, klen);
    bool replaced = old != NULL;
    free(old);
    if (u && map_put(&ti->users, key, klen, u, NULL) < 0) {
        free(u);
        rc = ERR_NOMEM;
    }
    unlock(ti);
    /* A changed or removed password must not be served from the cache. A
     * new user has nothing cached, and clearing for it would make every
     * tenant admin pay the slow hash again after each tenant or user
     * creation elsewhere. */
    if (replaced) {
        pthread_mutex_lock(&ti->cache_mu);
        map_clear(&ti->cache, free);
        pthread_mutex_unlock(&ti->cache_mu);
    }
    return rc;
}

static int cache_key(const struct trust_index *ti, const char *tenant, const char *name,
                     const char *pw, size_t pw_len, unsigned char *out)
{
    unsigned int n = 0;
    int rc = ERR_INTERNAL;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (!md) return ERR_NOMEM;
    if (EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 &&
        EVP_DigestUpdate(md, ti->pepper, sizeof ti->pepper) == 1 &&
        EVP_DigestUpdate(md, tenant, strlen(tenant) + 1) == 1 &&
        EVP_DigestUpdate(md, name, strlen(name) + 1) == 1 &&
        EVP_DigestUpdate(md, pw, pw_len) == 1 && EVP_DigestFinal_ex(md, out, &n) == 1 && n == 32)
        rc = 0;
    EVP_MD_CTX_free(md);
    return rc;
}

/* A hash of a random password at the real cost: an unknown user is checked
 * against it so that a miss takes as long as a wrong password (no user or
 * tenant enumeration by timing). */
static char dummy_hash[PASSWORD_HASH_MAX];
static pthread_once_t dummy_once = PTHREAD_ONCE_INIT;

static void dummy_hash_make(void)
{
    char pw[33];
    if (password_random(pw, sizeof pw) < 0 ||
        password_hash(pw, strlen(pw), 0, dummy_hash, sizeof dummy_hash) < 0)
        dummy_hash[0] = 0; /* password_verify then fails fast; logged below */
    OPENSSL_cleanse(pw, sizeof pw);
}

bool trust_password_cached(struct trust_index *ti, const char *tenant, const char *name,
                           const char *pw, size_t pw_len, unsigned *roles)
{
    unsigned char ck[32];
    if (cache_key(ti, tenant, name, pw, pw_len, ck) < 0) return false;
    bool hit = false;
    pthread_mutex_lock(&ti->cache_mu);
    const struct cache_entry *ce = map_get(&ti->cache, ck, sizeof ck);
    if (ce && ce->expires > time(NULL)) {
        *roles = ce->roles;
        hit = true;
    }
    pthread_mutex_unlock(&ti->cache_mu);
    return hit;
}

int trust_check_password(struct trust_index *ti, const char *tenant, const char *name,
                         const char *pw, size_t pw_len, unsigned *roles)
{
    char key[KEY_MAX];
    unsigned char ck[32];
    struct user_entry u;
    if (trust_password_cached(ti, tenant, name, pw, pw_len, roles)) return 0;
    size_t klen = mkkey(key, tenant, name, NULL);
    GUARD(cache_key(ti, tenant, name, pw, pw_len, ck));

    trust_read_lock(ti);
    const struct user_entry *found = klen ? map_get(&ti->users, key, klen) : NULL;
    if (found) u = *found;
    trust_read_unlock(ti);
    if (!found) {
        pthread_once(&dummy_once, dummy_hash_make);
        if (!dummy_hash[0]) log_error("password check: no dummy hash, timing may show misses");
        password_verify(dummy_hash, pw, pw_len); /* the same work as a wrong password */
        return ERR_BAD_CREDENTIALS;
    }
    if (!password_verify(u.pw_hash, pw, pw_len)) return ERR_BAD_CREDENTIALS;
    *roles = u.roles;

    struct cache_entry *e = malloc(sizeof *e);
    if (!e) return 0; /* verified; caching is only an optimisation */
    e->expires = time(NULL) + CACHE_TTL_S;
    e->roles = u.roles;
    pthread_mutex_lock(&ti->cache_mu);
    if (ti->cache.count >= CACHE_MAX_ITEMS) map_clear(&ti->cache, free);
    free(map_del(&ti->cache, ck, sizeof ck));
    if (map_put(&ti->cache, ck, sizeof ck, e, NULL) < 0) free(e);
    pthread_mutex_unlock(&ti->cache_mu);
    return 0;
}

/* ---- options ---- */

int trust_option_set(struct trust_index *ti, const char *tenant, const char *category,
                     const char *key, const char *value)
{
    char k[KEY_MAX];
    size_t klen = mkkey(k, tenant, category, key);
    ENSURE(klen, ERR_INVALID);
    char *v = NULL;
    if (value) {
        v = strdup(value);
        if (!v) return ERR_NOMEM;
    }
    int rc = 0;
    wlock(ti);
    free(map_del(&ti->options, k, klen));
    if (v && map_put(&ti->options, k, klen, v, NULL) < 0) {
        free(v);
        rc = ERR_NOMEM;
    }
    unlock(ti);
    return rc;
}

int trust_option_get(struct trust_index *ti, const char *tenant, const char *category,
                     const char *key, char *out, size_t cap)
{
    char k[KEY_MAX];
    size_t klen = mkkey(k, tenant, category, key);
    int rc = ERR_NOT_FOUND;
    ENSURE(klen, ERR_NOT_FOUND);
    trust_read_lock(ti);
    const char *v = map_get(&ti->options, k, klen);
    if (v) {
        snprintf(out, cap, "%s", v);
        rc = 0;
    }
    trust_read_unlock(ti);
    return rc;
}

bool trust_option_true_locked(const struct trust_index *ti, const char *tenant,
                              const char *category, const char *key)
{
    char k[KEY_MAX];
    size_t klen = mkkey(k, tenant, category, key);
    const char *v = klen ? map_get(&ti->options, k, klen) : NULL;
    return v && strcasecmp(v, "true") == 0;
}

/* ---- revoked serials ---- */

int trust_crl_add(struct trust_index *ti, const char *tenant, const char *serial)
{
    char key[KEY_MAX];
    size_t klen = mkkey(key, tenant, serial, NULL);
    ENSURE(klen, ERR_INVALID);
    int rc = 0;
    wlock(ti);
    if (!map_get(&ti->crl, key, klen)) rc = map_put(&ti->crl, key, klen, (void *)1, NULL);
    unlock(ti);
    return rc;
}

bool trust_crl_revoked_locked(const struct trust_index *ti, const char *tenant, const char *serial)
{
    char key[KEY_MAX];
    size_t klen = mkkey(key, tenant, serial, NULL);
    return klen && map_get(&ti->crl, key, klen) != NULL;
}

/* ---- loading from the store ---- */

static int load_cert(void *arg, const struct store_cert *c)
{
    struct trust_index *ti = arg;
    const unsigned char *p = c->der;
    X509 *x = d2i_X509(NULL, &p, (long)c->der_len);
    if (!x) {
        log_error("trust: stored certificate %s of %s does not parse", c->fingerprint, c->tenant);
        return 0;
    }
    int rc = trust_anchor_put(ti, c->tenant, x, c->enabled, c->auto_registration, c->pop_valid);
    X509_free(x);
    return rc;
}

static int load_device(void *arg, const char *tenant, const char *cn)
{
    return trust_device_add(arg, tenant, cn);
}

static int load_user(void *arg, const struct store_user *u)
{
    return trust_user_put(arg, u->tenant, u->name, u->pw_hash, u->roles);
}

static int load_option(void *arg, const char *tenant, const char *category, const char *key,
                       const char *value)
{
    return trust_option_set(arg, tenant, category, key, value);
}

static int load_crl(void *arg, const char *tenant, const struct store_crl_entry *e)
{
    return trust_crl_add(arg, tenant, e->serial);
}

int trust_load(struct trust_index *ti, struct store *st)
{
    GUARD(store_cert_list(st, NULL, 0, 0, load_cert, ti));
    GUARD(store_device_list(st, NULL, load_device, ti));
    GUARD(store_user_list(st, NULL, true, 0, 0, load_user, ti));
    GUARD(store_option_list(st, NULL, load_option, ti));
    GUARD(store_crl_list(st, NULL, load_crl, ti));
    return 0;
}
