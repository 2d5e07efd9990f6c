/* Validated-path cache (see pathcache.h): a direct-mapped table of 4096
 * entries keyed by SHA-256, so a colliding chain would need a SHA-256
 * collision, not just the same name or serial. */
#include "identity/pathcache.h"

#include <pthread.h>
#include <string.h>

#include <openssl/evp.h>

#define SLOTS 4096

struct slot {
    bool used;
    struct pathcache_key key;
    struct pathcache_entry e;
};

static struct slot table[SLOTS];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static EVP_MD *sha256;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void init_md(void)
{
    sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
}

bool pathcache_key(X509 *const *presented, int n, const char *anchor_fp, int max_len,
                   struct pathcache_key *key)
{
    pthread_once(&once, init_md);
    EVP_MD_CTX *ctx = sha256 ? EVP_MD_CTX_new() : NULL;
    bool ok = ctx && EVP_DigestInit_ex(ctx, sha256, NULL) == 1 &&
              EVP_DigestUpdate(ctx, anchor_fp, strlen(anchor_fp) + 1) == 1 &&
              EVP_DigestUpdate(ctx, &max_len, sizeof max_len) == 1;
    for (int i = 0; ok && i < n; i++) {
        unsigned char *der = NULL;
        int len = i2d_X509(presented[i], &der);
        uint32_t l = (uint32_t)len;
        ok = len > 0 && EVP_DigestUpdate(ctx, &l, sizeof l) == 1 &&
             EVP_DigestUpdate(ctx, der, (size_t)len) == 1;
        OPENSSL_free(der);
    }
    unsigned int dlen = 0;
    ok = ok && EVP_DigestFinal_ex(ctx, key->digest, &dlen) == 1 && dlen == sizeof key->digest;
    EVP_MD_CTX_free(ctx);
    return ok;
}

static struct slot *slot_of(const struct pathcache_key *key)
{
    unsigned idx = ((unsigned)key->digest[0] << 8 | key->digest[1]) % SLOTS;
    return &table[idx];
}

bool pathcache_get(const struct pathcache_key *key, struct pathcache_entry *out)
{
    pthread_mutex_lock(&lock);
    struct slot *s = slot_of(key);
    bool hit = s->used && !memcmp(&s->key, key, sizeof *key);
    if (hit) *out = s->e;
    pthread_mutex_unlock(&lock);
    return hit;
}

void pathcache_put(const struct pathcache_key *key, const struct pathcache_entry *e)
{
    pthread_mutex_lock(&lock);
    struct slot *s = slot_of(key);
    s->used = true;
    s->key = *key;
    s->e = *e;
    pthread_mutex_unlock(&lock);
}

static bool to_time(const ASN1_TIME *t, time_t *out)
{
    struct tm tm;
    if (!t || ASN1_TIME_to_tm(t, &tm) != 1) return false;
    *out = timegm(&tm);
    return true;
}

bool pathcache_window(X509 *const *path, int n, time_t *not_before, time_t *not_after)
{
    *not_before = 0;
    *not_after = (time_t)INT64_MAX;
    for (int i = 0; i < n; i++) {
        X509 *x = path[i];
        time_t nb, na;
        if (!to_time(X509_get0_notBefore(x), &nb) || !to_time(X509_get0_notAfter(x), &na))
            return false;
        if (nb > *not_before) *not_before = nb;
        if (na < *not_after) *not_after = na;
    }
    return true;
}

void pathcache_clear(void)
{
    pthread_mutex_lock(&lock);
    memset(table, 0, sizeof table);
    pthread_mutex_unlock(&lock);
}
