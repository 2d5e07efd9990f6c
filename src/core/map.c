/* String-keyed hash map (see map.h): SipHash-2-4 (Aumasson and Bernstein's
 * keyed PRF for short inputs) under a seed drawn from the kernel once per
 * process, so bucket placement differs from run to run. */
#include "core/map.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

static uint8_t process_seed[MAP_SEED_LEN];
static pthread_once_t seed_once = PTHREAD_ONCE_INIT;

/* getrandom only fails before the kernel's pool is ready, or without the
 * syscall; the fallback still differs per process and per start. */
static void seed_init(void)
{
    if (getrandom(process_seed, sizeof process_seed, 0) == (ssize_t)sizeof process_seed) return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t a = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30);
    uint64_t b = (uint64_t)getpid() ^ (uint64_t)(uintptr_t)&ts;
    memcpy(process_seed, &a, 8);
    memcpy(process_seed + 8, &b, 8);
}

static uint64_t rotl(uint64_t x, int b)
{
    return (x << b) | (x >> (64 - b));
}

static uint64_t load_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

struct sip {
    uint64_t v0, v1, v2, v3;
};

static void sip_rounds(struct sip *s, int n)
{
    while (n--) {
        s->v0 += s->v1;
        s->v1 = rotl(s->v1, 13) ^ s->v0;
        s->v0 = rotl(s->v0, 32);
        s->v2 += s->v3;
        s->v3 = rotl(s->v3, 16) ^ s->v2;
        s->v0 += s->v3;
        s->v3 = rotl(s->v3, 21) ^ s->v0;
        s->v2 += s->v1;
        s->v1 = rotl(s->v1, 17) ^ s->v2;
        s->v2 = rotl(s->v2, 32);
    }
}

static void sip_block(struct sip *s, uint64_t m)
{
    s->v3 ^= m;
    sip_rounds(s, 2);
    s->v0 ^= m;
}

uint64_t map_siphash(const uint8_t seed[MAP_SEED_LEN], const void *data, size_t len)
{
    const uint8_t *p = data;
    uint64_t k0 = load_le64(seed), k1 = load_le64(seed + 8);
    struct sip s = {k0 ^ 0x736f6d6570736575ull, k1 ^ 0x646f72616e646f6dull,
                    k0 ^ 0x6c7967656e657261ull, k1 ^ 0x7465646279746573ull};
    size_t full = len & ~(size_t)7;
    for (size_t i = 0; i < full; i += 8) sip_block(&s, load_le64(p + i));
    /* the last block: remaining bytes, then the length's low byte on top */
    uint64_t last = (uint64_t)(len & 0xff) << 56;
    for (size_t i = 0; i < (len & 7); i++) last |= (uint64_t)p[full + i] << (8 * i);
    sip_block(&s, last);
    s.v2 ^= 0xff;
    sip_rounds(&s, 4);
    return s.v0 ^ s.v1 ^ s.v2 ^ s.v3;
}

uint64_t map_hash(const void *key, size_t len)
{
    pthread_once(&seed_once, seed_init);
    return map_siphash(process_seed, key, len);
}

void map_init(struct map *m)
{
    memset(m, 0, sizeof *m);
}

void map_clear(struct map *m, void (*free_value)(void *))
{
    for (size_t i = 0; i < m->nbuckets; i++) {
        struct map_entry *e = m->buckets[i];
        while (e) {
            struct map_entry *n = e->next;
            if (free_value) free_value(e->value);
            free(e);
            e = n;
        }
        m->buckets[i] = NULL;
    }
    m->count = 0;
}

void map_free(struct map *m)
{
    map_clear(m, NULL);
    free(m->buckets);
    map_init(m);
}

static struct map_entry **find(const struct map *m, const void *key, size_t klen, uint64_t h)
{
    if (!m->nbuckets) return NULL;
    struct map_entry **pp = &m->buckets[h & (m->nbuckets - 1)];
    for (; *pp; pp = &(*pp)->next)
        if ((*pp)->hash == h && (*pp)->klen == klen && !memcmp((*pp)->key, key, klen)) return pp;
    return NULL;
}

void *map_get(const struct map *m, const void *key, size_t klen)
{
    struct map_entry **pp = find(m, key, klen, map_hash(key, klen));
    return pp ? (*pp)->value : NULL;
}

static int grow(struct map *m)
{
    size_t n = m->nbuckets ? m->nbuckets * 2 : 16;
    struct map_entry **b = calloc(n, sizeof *b);
    if (!b) return ERR_NOMEM;
    for (size_t i = 0; i < m->nbuckets; i++) {
        struct map_entry *e = m->buckets[i];
        while (e) {
            struct map_entry *next = e->next;
            e->next = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
            e = next;
        }
    }
    free(m->buckets);
    m->buckets = b;
    m->nbuckets = n;
    return 0;
}

int map_put(struct map *m, const void *key, size_t klen, void *value, void **old)
{
    uint64_t h = map_hash(key, klen);
    struct map_entry **pp = find(m, key, klen, h);
    if (old) *old = pp ? (*pp)->value : NULL;
    if (pp) {
        (*pp)->value = value;
        return 0;
    }
    if (m->count >= m->nbuckets) GUARD(grow(m));
    struct map_entry *e = malloc(sizeof *e + klen + 1);
    if (!e) return ERR_NOMEM;
    e->hash = h;
    e->value = value;
    e->klen = klen;
    memcpy(e->key, key, klen);
    e->key[klen] = 0;
    e->next = m->buckets[h & (m->nbuckets - 1)];
    m->buckets[h & (m->nbuckets - 1)] = e;
    m->count++;
    return 0;
}

void *map_del(struct map *m, const void *key, size_t klen)
{
    struct map_entry **pp = find(m, key, klen, map_hash(key, klen));
    if (!pp) return NULL;
    struct map_entry *e = *pp;
    void *v = e->value;
    *pp = e->next;
    free(e);
    m->count--;
    return v;
}

void map_each(const struct map *m, void (*fn)(const char *key, void *value, void *arg), void *arg)
{
    for (size_t i = 0; i < m->nbuckets; i++)
        for (struct map_entry *e = m->buckets[i]; e; e = e->next) fn(e->key, e->value, arg);
}
