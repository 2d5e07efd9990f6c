/* Refusal rings and device last-seen times (see activity.h). Rings grow
 * by doubling up to ring_size, so a tenant with few refusals holds little. */
#include "identity/activity.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/map.h"

struct ring {
    struct refusal *v;
    size_t cap;  /* allocated slots, <= ring_size */
    size_t n;    /* filled slots */
    size_t next; /* slot the next refusal goes to (once n == ring_size) */
};

struct activity {
    pthread_mutex_t lock;
    size_t ring_size;
    struct map rings; /* tenant -> struct ring */
    struct map seen;  /* tenant \x01 cn -> struct seen_entry */
};

int activity_new(long ring_size, struct activity **out)
{
    struct activity *a = calloc(1, sizeof *a);
    if (!a) return ERR_NOMEM;
    pthread_mutex_init(&a->lock, NULL);
    a->ring_size = ring_size > 0 ? (size_t)ring_size : 0;
    map_init(&a->rings);
    map_init(&a->seen);
    *out = a;
    return 0;
}

static void free_ring(const char *key, void *value, void *arg)
{
    (void)key;
    (void)arg;
    struct ring *r = value;
    free(r->v);
    free(r);
}

static void free_value(const char *key, void *value, void *arg)
{
    (void)key;
    (void)arg;
    free(value);
}

void activity_free(struct activity *a)
{
    if (!a) return;
    map_each(&a->rings, free_ring, NULL);
    map_free(&a->rings);
    map_each(&a->seen, free_value, NULL);
    map_free(&a->seen);
    pthread_mutex_destroy(&a->lock);
    free(a);
}

static struct ring *ring_get(struct activity *a, const char *tenant)
{
    struct ring *r = map_get(&a->rings, tenant, strlen(tenant));
    if (r) return r;
    r = calloc(1, sizeof *r);
    if (r && map_put(&a->rings, tenant, strlen(tenant), r, NULL) < 0) {
        free(r);
        r = NULL;
    }
    return r;
}

/* Room for one more while the ring is below ring_size. */
static bool ring_grow(struct ring *r, size_t max)
{
    if (r->n < r->cap) return true;
    size_t cap = r->cap ? r->cap * 2 : 16;
    if (cap > max) cap = max;
    struct refusal *v = realloc(r->v, cap * sizeof *v);
    if (!v) return false;
    r->v = v;
    r->cap = cap;
    return true;
}

void activity_refused(struct activity *a, const char *tenant, const struct refusal *rf)
{
    if (!a || !a->ring_size || !tenant || !tenant[0]) return;
    pthread_mutex_lock(&a->lock);
    struct ring *r = ring_get(a, tenant);
    if (r && r->n < a->ring_size) {
        if (ring_grow(r, a->ring_size)) {
            r->v[r->n++] = *rf;
            r->next = r->n % a->ring_size;
        }
    } else if (r) {
        r->v[r->next] = *rf;
        r->next = (r->next + 1) % a->ring_size;
    }
    pthread_mutex_unlock(&a->lock);
}

int activity_refusals(struct activity *a, const char *tenant, struct refusal **out, size_t *n)
{
    int rc = 0;
    *out = NULL;
    *n = 0;
    pthread_mutex_lock(&a->lock);
    struct ring *r = map_get(&a->rings, tenant, strlen(tenant));
    if (r && r->n) {
        struct refusal *v = malloc(r->n * sizeof *v);
        if (!v) {
            rc = ERR_NOMEM;
            goto out;
        }
        /* The newest is just before next (the ring wraps once full). */
        size_t newest = (r->next + r->n - 1) % r->n;
        for (size_t i = 0; i < r->n; i++) v[i] = r->v[(newest + r->n - i) % r->n];
        *out = v;
        *n = r->n;
    }
out:
    pthread_mutex_unlock(&a->lock);
    return rc;
}

/* What is kept per device: what was seen, and whether the store has it. */
struct seen_entry {
    struct device_seen v;
    bool dirty;
};

static void put_seen(struct activity *a, const char *tenant, const char *cn,
                     const struct device_seen *v, bool dirty)
{
    char key[256];
    int kl = snprintf(key, sizeof key, "%s\x01%s", tenant, cn);
    if (kl < 0 || (size_t)kl >= sizeof key) return;
    pthread_mutex_lock(&a->lock);
    struct seen_entry *d = map_get(&a->seen, key, (size_t)kl);
    if (!d) {
        d = calloc(1, sizeof *d);
        if (d && map_put(&a->seen, key, (size_t)kl, d, NULL) < 0) {
            free(d);
            d = NULL;
        }
    }
    if (d && (dirty || !d->v.last_seen)) {
        d->v = *v;
        d->dirty = d->dirty || dirty;
    }
    pthread_mutex_unlock(&a->lock);
}

void activity_seen(struct activity *a, const char *tenant, const char *cn, int64_t now,
                   int64_t not_after)
{
    if (!a) return;
    put_seen(a, tenant, cn, &(struct device_seen){now, not_after}, true);
}

void activity_restore(struct activity *a, const char *tenant, const char *cn,
                      const struct device_seen *v)
{
    put_seen(a, tenant, cn, v, false);
}

struct take {
    struct seen_row *v;
    size_t n, cap;
    bool nomem;
};

static void take_dirty(const char *key, void *value, void *arg)
{
    struct take *t = arg;
    struct seen_entry *d = value;
    if (!d->dirty || t->nomem) return;
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        struct seen_row *v = realloc(t->v, cap * sizeof *v);
        if (!v) {
            t->nomem = true;
            return;
        }
        t->v = v;
        t->cap = cap;
    }
    struct seen_row *r = &t->v[t->n];
    const char *sep = strchr(key, '\x01');
    if (!sep) return;
    snprintf(r->tenant, sizeof r->tenant, "%.*s", (int)(sep - key), key);
    snprintf(r->cn, sizeof r->cn, "%s", sep + 1);
    r->seen = d->v;
    d->dirty = false;
    t->n++;
}

int activity_take_dirty(struct activity *a, struct seen_row **out, size_t *n)
{
    struct take t = {0};
    pthread_mutex_lock(&a->lock);
    map_each(&a->seen, take_dirty, &t);
    pthread_mutex_unlock(&a->lock);
    *out = t.v;
    *n = t.n;
    return t.nomem ? ERR_NOMEM : 0; /* the rest stay dirty for the next time */
}

bool activity_device(struct activity *a, const char *tenant, const char *cn,
                     struct device_seen *out)
{
    char key[256];
    int kl = snprintf(key, sizeof key, "%s\x01%s", tenant, cn);
    if (!a || kl < 0 || (size_t)kl >= sizeof key) return false;
    pthread_mutex_lock(&a->lock);
    struct seen_entry *d = map_get(&a->seen, key, (size_t)kl);
    if (d) *out = d->v;
    pthread_mutex_unlock(&a->lock);
    return d != NULL;
}

struct expiring {
    int64_t before;
    size_t n;
};

static void count_expiring(const char *key, void *value, void *arg)
{
    (void)key;
    const struct seen_entry *d = value;
    struct expiring *e = arg;
    if (d->v.not_after && d->v.not_after <= e->before) e->n++;
}

size_t activity_expiring(struct activity *a, int64_t before)
{
    struct expiring e = {before, 0};
    if (!a) return 0;
    pthread_mutex_lock(&a->lock);
    map_each(&a->seen, count_expiring, &e);
    pthread_mutex_unlock(&a->lock);
    return e.n;
}
