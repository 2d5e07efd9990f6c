/* String-keyed hash map (see map.h); FNV-1a hashing. */
#include "core/map.h"

#include <stdlib.h>
#include <string.h>

uint64_t map_hash(const void *key, size_t len)
{
    const uint8_t *p = key;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}

void map_init(struct map *m)
{
    memset(m, 0, sizeof *m);
}

void map_free(struct map *m)
{
    for (size_t i = 0; i < m->nbuckets; i++) {
        struct map_entry *e = m->buckets[i];
        while (e) {
            struct map_entry *n = e->next;
            free(e);
            e = n;
        }
    }
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
