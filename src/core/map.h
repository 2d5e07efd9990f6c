/* A hash map from byte-string keys to pointers (chained, power-of-two
 * buckets, grows at load 1). Keys are copied; values are not owned. Not
 * synchronised: the owner locks around it. */
#ifndef CERTMQ_MAP_H
#define CERTMQ_MAP_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

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
void *map_get(const struct map *m, const void *key, size_t klen);
/* Inserts or replaces; returns the previous value through *old if given. */
MUST_USE int map_put(struct map *m, const void *key, size_t klen, void *value, void **old);
/* Removes and returns the value, or NULL. */
void *map_del(struct map *m, const void *key, size_t klen);
/* Calls fn for every entry; fn must not change the map. */
void map_each(const struct map *m, void (*fn)(const char *key, void *value, void *arg), void *arg);
uint64_t map_hash(const void *key, size_t len);

#endif
