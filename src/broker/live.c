/* The live view of the broker for operators: the connected clients of a
 * tenant, disconnecting one, and client counts for the metrics. Each takes
 * a space's lock for one pass over its sessions, copies what it needs and
 * sorts and formats outside the lock. */
#include "broker/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct conn_pass {
    const char *tenant;
    struct broker_conn *v;
    size_t n, cap;
    bool nomem;
};

/* The leaf's serial in the CRL form (uppercase hex, no leading zeros). */
static void leaf_serial(const struct revoc_path *p, char *out, size_t cap)
{
    out[0] = 0;
    if (!p->n || !p->s[0].len) return;
    size_t k = 0;
    for (uint8_t i = 0; i < p->s[0].len && k + 3 <= cap; i++)
        k += (size_t)snprintf(out + k, cap - k, k ? "%02X" : "%X", p->s[0].b[i]);
}

static void copy_conn(struct broker_conn *o, const struct session *s)
{
    const struct client *c = s->client;
    memset(o, 0, sizeof *o);
    snprintf(o->client_id, sizeof o->client_id, "%s", s->client_id);
    snprintf(o->identity, sizeof o->identity, "%s", s->who.identity);
    snprintf(o->anchor_fp, sizeof o->anchor_fp, "%s", s->who.anchor_fp);
    leaf_serial(&s->who.path, o->serial, sizeof o->serial);
    snprintf(o->remote, sizeof o->remote, "%s", c->peer);
    snprintf(o->tls_version, sizeof o->tls_version, "%s", c->tls_version ? c->tls_version : "");
    snprintf(o->cipher, sizeof o->cipher, "%s", c->cipher ? c->cipher : "");
    o->since = c->since;
    o->not_after = c->not_after;
    o->kind = s->who.kind;
    o->protocol_level = c->protocol_level;
    o->resumed = c->resumed;
}

static void collect_conn(const char *key, void *value, void *arg)
{
    (void)key;
    struct conn_pass *p = arg;
    const struct session *s = value;
    if (!s->client || s->client->kicked || strcmp(s->who.tenant, p->tenant) != 0) return;
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 64;
        struct broker_conn *v = realloc(p->v, cap * sizeof *v);
        if (!v) {
            p->nomem = true;
            return;
        }
        p->v = v;
        p->cap = cap;
    }
    copy_conn(&p->v[p->n++], s);
}

static int by_client_id(const void *a, const void *b)
{
    return strcmp(((const struct broker_conn *)a)->client_id,
                  ((const struct broker_conn *)b)->client_id);
}

int broker_connections(struct broker *b, const char *tenant, struct broker_conn **out, size_t *n)
{
    struct conn_pass p = {.tenant = tenant};
    struct space *sp = space_find(b, tenant);
    if (sp) {
        space_lock(b, sp);
        map_each(&sp->sessions, collect_conn, &p);
        space_unlock(sp);
    }
    if (p.nomem) {
        free(p.v);
        return ERR_NOMEM;
    }
    if (p.n) qsort(p.v, p.n, sizeof *p.v, by_client_id);
    *out = p.v;
    *n = p.n;
    return 0;
}

int broker_disconnect(struct broker *b, const char *tenant, const char *client_id)
{
    char *key = NULL;
    int klen = asprintf(&key, "%s\x01%s", tenant, client_id);
    if (klen < 0) return ERR_NOMEM;
    int rc = ERR_NOT_FOUND;
    struct space *sp = space_find(b, tenant);
    if (sp) {
        space_lock(b, sp);
        struct session *s = map_get(&sp->sessions, key, (size_t)klen);
        if (s && s->client && !s->client->kicked) {
            s->client->kicked = true;
            s->client->close_reason = MQTT_RC_ADMINISTRATIVE_ACTION;
            b->cfg.wake(s->client);
            rc = 0;
        }
        space_unlock(sp);
    }
    free(key);
    return rc;
}

struct count_pass {
    struct map by_key; /* tenant \x01 kind -> index + 1 into v */
    struct broker_count *v;
    size_t n, cap;
    bool nomem;
};

static void count_client(const char *key, void *value, void *arg)
{
    (void)key;
    struct count_pass *p = arg;
    const struct session *s = value;
    if (!s->client || p->nomem) return;
    char k[80];
    int kl = snprintf(k, sizeof k, "%s\x01%u", s->who.tenant, (unsigned)s->who.kind);
    uintptr_t idx = (uintptr_t)map_get(&p->by_key, k, (size_t)kl);
    if (!idx) {
        if (p->n == p->cap) {
            size_t cap = p->cap ? p->cap * 2 : 16;
            struct broker_count *v = realloc(p->v, cap * sizeof *v);
            if (!v) {
                p->nomem = true;
                return;
            }
            p->v = v;
            p->cap = cap;
        }
        struct broker_count *c = &p->v[p->n];
        snprintf(c->tenant, sizeof c->tenant, "%s", s->who.tenant);
        c->kind = s->who.kind;
        c->n = 0;
        idx = ++p->n;
        if (map_put(&p->by_key, k, (size_t)kl, (void *)idx, NULL) < 0) p->nomem = true;
    }
    p->v[idx - 1].n++;
}

static int by_tenant_kind(const void *a, const void *b)
{
    const struct broker_count *x = a, *y = b;
    int c = strcmp(x->tenant, y->tenant);
    return c ? c : (int)x->kind - (int)y->kind;
}

struct counts_ctx {
    struct count_pass *p;
    struct broker_stats *st;
};

static void count_space(struct broker *b, struct space *sp, void *arg)
{
    (void)b;
    struct counts_ctx *k = arg;
    if (k->st) stats_add(k->st, sp);
    map_each(&sp->sessions, count_client, k->p);
}

int broker_client_counts(struct broker *b, struct broker_count **out, size_t *n,
                         struct broker_stats *st)
{
    struct count_pass p = {0};
    map_init(&p.by_key);
    if (st) memset(st, 0, sizeof *st);
    spaces_each(b, count_space, &(struct counts_ctx){&p, st});
    if (st) {
        st->lock_waits = atomic_load_explicit(&b->lock_waits, memory_order_relaxed);
        st->lock_wait_ns = atomic_load_explicit(&b->lock_wait_ns, memory_order_relaxed);
    }
    map_free(&p.by_key);
    if (p.nomem) {
        free(p.v);
        return ERR_NOMEM;
    }
    if (p.n) qsort(p.v, p.n, sizeof *p.v, by_tenant_kind);
    *out = p.v;
    *n = p.n;
    return 0;
}
