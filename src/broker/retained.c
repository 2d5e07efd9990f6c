/* Retained messages held in memory: the one place a tenant's retained copy
 * is set or cleared (publish, restore at start, a change another node
 * stored), which keeps the count and, when the store is shared by nodes,
 * an index by topic digest (a store notice names a topic by its digest
 * only, so a removal announced elsewhere is found through it, and a node
 * that missed notices sweeps away what the store no longer holds). */
#include "broker/internal.h"

#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "store/store.h"

void space_retain_set(struct broker *b, struct space *sp, const char *topic, size_t tlen,
                      struct msg *m)
{
    if (m) m->refs++;
    struct msg *old = topic_retain_set(sp->tree, topic, tlen, m);
    if (m && old == m) { /* not stored: invalid name or no memory */
        msg_unref(m);
        return;
    }
    if (m && !old) sp->stats.retained++;
    if (!m && old && sp->stats.retained) sp->stats.retained--;
    if (b->cfg.retain_digests && (m || old)) {
        char d[STORE_DIGEST_HEX + 1];
        store_retained_digest(topic, tlen, d);
        if (!m)
            map_del(&sp->retained, d, STORE_DIGEST_HEX);
        else if (map_put(&sp->retained, d, STORE_DIGEST_HEX, m, NULL) < 0)
            log_warn("retained message kept without its digest: a removal made on another node"
                     " will not reach it");
    }
    msg_unref(old);
}

static void found_retained(void *value, void *arg)
{
    *(struct msg **)arg = value;
}

/* The retained message of exactly this topic, or NULL. */
static struct msg *space_retained(struct space *sp, const char *topic, size_t tlen)
{
    struct msg *m = NULL;
    topic_retain_match(sp->tree, topic, tlen, found_retained, &m);
    return m && m->topic_len == tlen && memcmp(m->data, topic, tlen) == 0 ? m : NULL;
}

int broker_retained_put(struct broker *b, const char *tenant, const char *topic, size_t tlen,
                        const uint8_t *payload, size_t plen, uint8_t qos)
{
    ENSURE(tlen && tlen <= UINT16_MAX && qos <= 2 && (plen == 0 || payload), ERR_INVALID);
    int rc = 0;
    struct space *sp = plen ? space_get(b, tenant) : space_find(b, tenant);
    if (!sp) return plen ? ERR_NOMEM : 0;
    space_lock(b, sp);
    struct msg *held = space_retained(sp, topic, tlen);
    bool same = held && plen && held->qos == qos && held->payload_len == plen &&
                memcmp(msg_payload(held), payload, plen) == 0;
    if (!same && (held || plen)) {
        /* The store keeps no 5.0 properties and no expiry: none here either. */
        struct msg *m =
            plen ? msg_new((const uint8_t *)topic, tlen, payload, plen, qos, true, NULL, 0) : NULL;
        if (plen && !m)
            rc = ERR_NOMEM;
        else
            space_retain_set(b, sp, topic, tlen, m);
        msg_unref(m);
    }
    space_unlock(sp);
    return rc;
}

int broker_retained_clear_digest(struct broker *b, const char *tenant, const char *digest)
{
    ENSURE(b->cfg.retain_digests, ERR_INVALID);
    ENSURE(strlen(digest) == STORE_DIGEST_HEX, ERR_INVALID);
    struct space *sp = space_find(b, tenant);
    if (!sp) return 0;
    space_lock(b, sp);
    struct msg *m = map_get(&sp->retained, digest, STORE_DIGEST_HEX);
    if (m) space_retain_set(b, sp, m->data, m->topic_len, NULL);
    space_unlock(sp);
    return 0;
}

int broker_restore_retained(struct broker *b, const char *tenant, const char *topic, size_t tlen,
                            const uint8_t *payload, size_t plen, uint8_t qos)
{
    ENSURE(plen, ERR_INVALID);
    return broker_retained_put(b, tenant, topic, tlen, payload, plen, qos);
}

/* A sweep over every space: keep is asked for each retained message. */
struct sweep {
    struct broker *b;
    bool (*keep)(void *arg, const char *tenant, const char *digest);
    void *arg;
    const char *tenant;
    char (*gone)[STORE_DIGEST_HEX + 1];
    size_t n;
    int rc;
};

static void sweep_mark(const char *key, void *value, void *arg)
{
    (void)value;
    struct sweep *s = arg;
    if (!s->keep(s->arg, s->tenant, key)) memcpy(s->gone[s->n++], key, STORE_DIGEST_HEX + 1);
}

/* Clears the retained messages of one space that keep refuses (marked
 * first: clearing changes the map being walked). */
static void sweep_space(struct broker *b, struct space *sp, void *arg)
{
    (void)b;
    struct sweep *s = arg;
    if (!sp->retained.count) return;
    s->gone = malloc(sp->retained.count * sizeof *s->gone);
    if (!s->gone) {
        s->rc = ERR_NOMEM;
        return;
    }
    s->tenant = sp->tenant;
    s->n = 0;
    map_each(&sp->retained, sweep_mark, s);
    for (size_t i = 0; i < s->n; i++) {
        struct msg *m = map_get(&sp->retained, s->gone[i], STORE_DIGEST_HEX);
        if (m) space_retain_set(s->b, sp, m->data, m->topic_len, NULL);
    }
    free(s->gone);
    s->gone = NULL;
}

int broker_retained_sweep(struct broker *b,
                          bool (*keep)(void *arg, const char *tenant, const char *digest),
                          void *arg)
{
    ENSURE(b->cfg.retain_digests, ERR_INVALID);
    struct sweep s = {.b = b, .keep = keep, .arg = arg};
    spaces_each(b, sweep_space, &s);
    return s.rc;
}
