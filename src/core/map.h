/* A hash map from byte-string keys to pointers (chained, power-of-two
 * buckets, grows at load 1), the one map of the process. Keys are often
 * client-chosen (ClientIds, names), so the hash is SipHash-2-4 under a
 * random key drawn once per process: nobody outside can aim keys at one
 * bucket. Keys are copied; values are not owned. Not synchronised: the
 * owner locks around it. */
#ifndef CERTMQ_MAP_H
#define CERTMQ_MAP_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

#define MAP_SEED_LEN 16

struct map_entry {
    struct map_entry *next;
    uint64_t hash;
    void *value;
    size_t klen;
    char key[]; /* NUL-terminated copy */
};

struct map {
    struct map_entry **buckets;
    size_t nbuckets;
    size_t count;
};

void map_init(struct map *m);
/* Frees the entries (not the values). */
void map_free(struct map *m);
/* Removes every entry, calling free_value (if given) on each value; the
 * map stays usable. */
void map_clear(struct map *m, void (*free_value)(void *));
void *map_get(const struct map *m, const void *key, size_t klen);
/* Inserts or replaces; returns the previous value through *old if given. */
MUST_USE int map_put(struct map *m, const void *key, size_t klen, void *value, void **old);
/* Removes and returns the value, or NULL. */
void *map_del(struct map *m, const void *key, size_t klen);
/* Calls fn for every entry; fn must not change the map. */
void map_each(const struct map *m, void (*fn)(const char *key, void *value, void *arg), void *arg);
/* The hash every map uses: SipHash-2-4 under the process's seed. */
uint64_t map_hash(const void *key, size_t len);
/* SipHash-2-4 of data under an explicit 16-byte seed (pure; for tests). */
uint64_t map_siphash(const uint8_t seed[MAP_SEED_LEN], const void *data, size_t len);

#endif
