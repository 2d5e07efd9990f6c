/* libFuzzer target for src/broker/topic.c. The input is a filter and a topic
 * name split at the first NUL. Filters and names derived from them are put
 * in a tree (as subscriptions and retained values), and every answer the
 * tree gives is checked against topic_matches; the tree must end up empty. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "broker/topic.h"

#define MAX_ITEMS 16

struct item {
    const char *s;
    size_t len;
    unsigned hits;
};

struct set {
    struct item it[MAX_ITEMS];
    size_t n;
};

static void add(struct set *set, const char *s, size_t len, bool (*valid)(const char *, size_t))
{
    if (set->n == MAX_ITEMS || !valid(s, len)) return;
    for (size_t i = 0; i < set->n; i++)
        if (set->it[i].len == len && memcmp(set->it[i].s, s, len) == 0) return;
    set->it[set->n].s = s;
    set->it[set->n].len = len;
    set->n++;
}

/* The topic itself and its prefixes ending before each '/'. */
static void add_prefixes(struct set *set, const char *s, size_t len,
                         bool (*valid)(const char *, size_t))
{
    add(set, s, len, valid);
    for (size_t i = 0; i < len; i++)
        if (s[i] == '/') add(set, s, i, valid);
}

static void hit(void *sub, uint8_t qos, void *arg)
{
    (void)qos;
    (void)arg;
    ((struct item *)sub)->hits++;
}

static void hit_value(void *value, void *arg)
{
    hit(value, 0, arg);
}

/* Every subscribed item whose filter matches name is hit exactly once; items
 * outside filters only count hits. */
static void check_match(struct topic_tree *t, struct set *filters, const char *name, size_t len)
{
    for (size_t i = 0; i < filters->n; i++) filters->it[i].hits = 0;
    topic_match(t, name, len, hit, NULL);
    for (size_t i = 0; i < filters->n; i++) {
        struct item *f = &filters->it[i];
        if (f->hits != (unsigned)topic_matches(f->s, f->len, name, len)) abort();
    }
}

static void check_retained(struct topic_tree *t, struct set *names, const char *filter, size_t len)
{
    for (size_t i = 0; i < names->n; i++) names->it[i].hits = 0;
    topic_retain_match(t, filter, len, hit_value, NULL);
    for (size_t i = 0; i < names->n; i++) {
        struct item *n = &names->it[i];
        if (n->hits != (unsigned)topic_matches(filter, len, n->s, n->len)) abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    const char *nul = memchr(in, '\0', size);
    const char *filter = in, *name = in;
    size_t flen = size, nlen = size;
    if (nul) {
        flen = (size_t)(nul - in);
        name = nul + 1;
        nlen = size - flen - 1;
    }
    bool fv = topic_filter_valid(filter, flen), nv = topic_name_valid(name, nlen);
    if (topic_name_valid(filter, flen) && !fv) abort(); /* every name is a filter */
    if (topic_matches(filter, flen, name, nlen) && !(fv && nv)) abort();

    struct topic_tree *t = topic_tree_new();
    if (!t) return 0;
    struct set filters = {0}, names = {0};
    add_prefixes(&filters, filter, flen, topic_filter_valid);
    add_prefixes(&filters, name, nlen, topic_filter_valid);
    add_prefixes(&names, name, nlen, topic_name_valid);
    add_prefixes(&names, filter, flen, topic_name_valid);

    for (size_t i = 0; i < filters.n; i++)
        if (topic_subscribe(t, filters.it[i].s, filters.it[i].len, &filters.it[i], 1) != 1) abort();
    for (size_t i = 0; i < names.n; i++)
        if (topic_retain_set(t, names.it[i].s, names.it[i].len, &names.it[i]) != NULL) abort();
    if (topic_retain_count(t) != names.n) abort();

    for (size_t i = 0; i < names.n; i++) check_match(t, &filters, names.it[i].s, names.it[i].len);
    for (size_t i = 0; i < filters.n; i++)
        check_retained(t, &names, filters.it[i].s, filters.it[i].len);

    /* drop every other subscription and check again, then the rest */
    for (size_t i = 0; i < filters.n; i += 2) {
        if (topic_unsubscribe(t, filters.it[i].s, filters.it[i].len, &filters.it[i]) != 1) abort();
        if (topic_unsubscribe(t, filters.it[i].s, filters.it[i].len, &filters.it[i]) != 0) abort();
    }
    /* the survivors get a second subscriber each (copies in rest) */
    struct set rest = {0};
    for (size_t i = 1; i < filters.n; i += 2) rest.it[rest.n++] = filters.it[i];
    for (size_t i = 0; i < rest.n; i++)
        if (topic_subscribe(t, rest.it[i].s, rest.it[i].len, &rest.it[i], 2) != 1) abort();
    for (size_t i = 0; i < names.n; i++) {
        for (size_t j = 0; j < filters.n; j++) filters.it[j].hits = 0;
        check_match(t, &rest, names.it[i].s, names.it[i].len);
        for (size_t j = 0; j < filters.n; j += 2)
            if (filters.it[j].hits) abort(); /* unsubscribed */
    }
    for (size_t i = 1; i < filters.n; i += 2)
        if (topic_unsubscribe(t, filters.it[i].s, filters.it[i].len, &filters.it[i]) != 1) abort();
    for (size_t i = 0; i < rest.n; i++)
        if (topic_unsubscribe(t, rest.it[i].s, rest.it[i].len, &rest.it[i]) != 1) abort();

    /* clear half the retained values one by one, the rest in bulk */
    for (size_t i = 0; i < names.n; i += 2)
        if (topic_retain_set(t, names.it[i].s, names.it[i].len, NULL) != &names.it[i]) abort();
    for (size_t i = 0; i < names.n; i++) names.it[i].hits = 0;
    topic_retain_clear(t, hit_value, NULL);
    for (size_t i = 0; i < names.n; i++)
        if (names.it[i].hits != (i % 2 ? 1u : 0u)) abort();
    if (topic_retain_count(t) != 0 || topic_node_count(t) != 0) abort();
    topic_tree_free(t);
    return 0;
}
