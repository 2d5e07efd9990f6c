/* SUBSCRIBE and UNSUBSCRIBE: the session's filter list, the topic tree (or
 * a shared subscription's group), and retained messages sent for each new
 * subscription. 5.0 adds subscription options (No Local, Retain As
 * Published, Retain Handling), subscription identifiers and reason codes;
 * $share/{group}/{filter} works in both versions. */
#include "broker/internal.h"

#include <stdlib.h>
#include <string.h>

#include "core/log.h"

#define MAX_FILTERS_PER_PACKET 256

/* One filter of a SUBSCRIBE as the client wrote it, split. */
struct want {
    struct mqtt_bytes filter; /* without $share/{group}/ */
    struct mqtt_bytes group;  /* .p NULL: not shared */
    uint8_t opts;             /* QoS and 5.0 options */
    uint32_t id;              /* subscription identifier; 0: none */
};

static struct sub *session_find_sub(struct session *s, const char *f, uint16_t len,
                                    const struct want *w)
{
    for (unsigned i = 0; i < s->n_subs; i++) {
        struct sub *sub = &s->subs[i];
        if (sub->len != len || memcmp(sub->filter, f, len)) continue;
        if (!w->group.p
                ? !sub->share
                : sub->share && share_named(sub->share, (const char *)w->group.p, w->group.len))
            return sub;
    }
    return NULL;
}

/* A new subscription must fit the client's limits: their count and the
 * memory they hold (max_subscriptions, max_subscription_bytes). */
static bool session_sub_fits(const struct broker *b, const struct session *s, size_t cost)
{
    return s->n_subs < (unsigned)b->cfg.max_subscriptions &&
           s->sub_bytes + cost <= (size_t)b->cfg.max_subscription_bytes;
}

static struct sub *session_add_sub(struct session *s, const char *f, uint16_t len, size_t cost)
{
    if (s->n_subs == s->cap_subs) {
        unsigned n = s->cap_subs ? s->cap_subs * 2 : 4;
        struct sub *subs = realloc(s->subs, n * sizeof *subs);
        if (!subs) return NULL;
        s->subs = subs;
        s->cap_subs = n;
    }
    char *copy = strndup(f, len);
    if (!copy) return NULL;
    struct sub *sub = &s->subs[s->n_subs++];
    *sub = (struct sub){.filter = copy, .len = len, .cost = (uint32_t)cost};
    s->sub_bytes += cost;
    return sub;
}

struct retained_ctx {
    struct broker *b;
    struct session *s;
    uint8_t qos;
    uint32_t id;
};

static void send_retained(void *value, void *arg)
{
    struct retained_ctx *r = arg;
    struct msg *m = value;
    if (!session_may_read(r->s, m)) {
        r->s->space->stats.acl_denied_delivery++;
        return;
    }
    struct delivery d = {m->qos < r->qos ? m->qos : r->qos, true, r->id ? 1 : 0, &r->id};
    session_enqueue(r->b, r->s, m, &d);
}

/* Splits $share/{group}/{filter}; false when it is a malformed one. */
static bool split_share(struct want *w)
{
    static const char prefix[] = "$share/";
    size_t n = sizeof prefix - 1;
    const uint8_t *p = w->filter.p;
    if (w->filter.len < n || memcmp(p, prefix, n)) return true;
    const uint8_t *slash = memchr(p + n, '/', w->filter.len - n);
    if (!slash || slash == p + n) return false;
    w->group = (struct mqtt_bytes){p + n, (uint16_t)(slash - (p + n))};
    if (memchr(w->group.p, '+', w->group.len) || memchr(w->group.p, '#', w->group.len))
        return false;
    w->filter = (struct mqtt_bytes){slash + 1, (uint16_t)(w->filter.len - (slash + 1 - p))};
    return w->filter.len > 0;
}

/* Puts the subscription in place: the tree or the share group, the
 * session's list, and the retained messages it is owed. */
static uint8_t subscribe_apply(struct broker *b, struct session *s, const struct want *w,
                               const char *filter, size_t flen)
{
    uint8_t qos = w->opts & MQTT_SUB_QOS;
    struct sub *old = session_find_sub(s, filter, (uint16_t)flen, w);
    size_t cost = topic_filter_cost(flen, topic_levels(filter, flen));
    if (!old && !session_sub_fits(b, s, cost)) {
        log_info("client %s: subscription refused, limit of %ld subscriptions or %ld bytes",
                 s->client_id, b->cfg.max_subscriptions, b->cfg.max_subscription_bytes);
        return MQTT_RC_QUOTA_EXCEEDED;
    }
    struct sub *sub = old ? old : session_add_sub(s, filter, (uint16_t)flen, cost);
    if (!sub) return MQTT_RC_UNSPECIFIED;
    sub->qos = qos;
    sub->opts = w->opts & (MQTT_SUB_NO_LOCAL | MQTT_SUB_RETAIN_AS_PUB);
    sub->id = w->id;
    if (sub->opts || sub->id) s->sub_detail = true;
    int rc = w->group.p ? share_join(s->space, (const char *)w->group.p, w->group.len, filter, flen,
                                     s, sub, &sub->share)
                        : topic_subscribe(s->space->tree, filter, flen, s, qos);
    if (rc == 1) /* a new subscription in the tree, or a new group */
        broker_interest(b, s->space, filter, flen, w->group.p ? share_group(sub->share) : NULL,
                        true);
    if (rc < 0) {
        if (!old) { /* nothing in the tree yet: just forget it */
            s->sub_bytes -= sub->cost;
            free(sub->filter);
            *sub = s->subs[--s->n_subs];
        }
        return MQTT_RC_UNSPECIFIED;
    }
    persist_sub(b, s, sub, false);
    unsigned handling = (w->opts & MQTT_SUB_RETAIN_HANDLING) >> 4;
    if (!w->group.p && (handling == 0 || (handling == 1 && !old))) {
        struct retained_ctx r = {b, s, qos, w->id};
        topic_retain_match(s->space->tree, filter, flen, send_retained, &r);
    }
    return qos;
}

/* One filter of a SUBSCRIBE: its 5.0 reason code (the granted QoS, or why
 * not). ERR_PROTO for No Local on a shared subscription (3.8.3.1). */
static int subscribe_one(struct broker *b, struct session *s, struct want *w)
{
    char filter[65536 + 320];
    size_t flen;
    if (!split_share(w)) return MQTT_RC_TOPIC_FILTER_INVALID;
    if (w->group.p && !b->cfg.shared_subscriptions) return MQTT_RC_SHARED_SUB_UNSUPPORTED;
    if (w->group.p && (w->opts & MQTT_SUB_NO_LOCAL)) return ERR_PROTO;
    const char *f = (const char *)w->filter.p;
    if (!topic_filter_valid(f, w->filter.len) ||
        topic_levels(f, w->filter.len) > (size_t)b->cfg.max_topic_levels)
        return MQTT_RC_TOPIC_FILTER_INVALID;
    if (devtopic_in(s, f, w->filter.len, DEVTOPIC_SUBSCRIBE, filter, sizeof filter, &flen) < 0 ||
        flen > UINT16_MAX)
        return MQTT_RC_NOT_AUTHORIZED;
    enum acl_verdict v = acl_may_subscribe(s->acl, f, w->filter.len);
    if (v == ACL_DENIED) {
        /* 0x80, as in 3.1.1: the rules are not revealed to the client. */
        log_debug("client %s: subscription to '%.*s' denied by authorization rules", s->client_id,
                  (int)w->filter.len, f);
        s->space->stats.acl_denied_subscribe++;
        return MQTT_RC_UNSPECIFIED;
    }
    if (v == ACL_PER_TOPIC) s->acl_recheck = true;
    return subscribe_apply(b, s, w, filter, flen);
}

int handle_subscribe(struct broker *b, struct client *c, const struct mqtt_packet *p)
{
    const struct mqtt_list *l = &p->list;
    uint8_t rcs[MAX_FILTERS_PER_PACKET];
    ENSURE(l->count <= MAX_FILTERS_PER_PACKET, ERR_LIMIT);
    bool v5 = client_v5(c);
    uint32_t id =
        v5 && mqtt_props_has(&p->props, MQTT_PROP_SUBSCRIPTION_ID) ? p->props.subscription_id : 0;
    size_t pos = 0, n = 0;
    struct want w = {.id = id};
    uint64_t before = c->space->jseq;
    while (mqtt_topic_next(l, &pos, &w.filter, &w.opts) == 1) {
        w.group = (struct mqtt_bytes){NULL, 0};
        int rc = subscribe_one(b, c->session, &w);
        if (rc < 0) {
            c->close_reason = MQTT_RC_PROTOCOL_ERROR;
            return rc;
        }
        /* 3.1.1 knows one failure code. */
        rcs[n++] = !v5 && rc >= 0x80 ? MQTT_SUBACK_FAILURE : (uint8_t)rc;
    }
    /* The SUBACK goes out before the retained messages queued above, and
     * once the subscriptions it acknowledges are committed. */
    if (b->sstore && (c->space->jseq != before || persist_acks_pending(c)))
        return persist_defer_suback(b, c, l->packet_id, rcs, (uint16_t)n);
    return mqtt_encode_suback(&c->out, l->packet_id, rcs, n, v5 ? &mqtt_props_none : NULL);
}

int session_restore_sub(struct broker *b, struct session *s, const char *filter, size_t flen,
                        const char *group, size_t glen, uint8_t qos, uint8_t opts, uint32_t id)
{
    ENSURE(flen && flen <= UINT16_MAX && glen <= UINT16_MAX && qos <= 2, ERR_MALFORMED);
    /* Retain Handling 2 (0x20): no retained messages for a restored one. */
    struct want w = {.filter = {(const uint8_t *)filter, (uint16_t)flen},
                     .group = {glen ? (const uint8_t *)group : NULL, (uint16_t)glen},
                     .opts = (uint8_t)(qos | (opts & ~MQTT_SUB_RETAIN_HANDLING) | 0x20),
                     .id = id};
    uint8_t rc = subscribe_apply(b, s, &w, filter, flen);
    return rc < 0x80 ? 0 : ERR_NOMEM;
}

int handle_unsubscribe(struct broker *b, struct client *c, const struct mqtt_packet *p)
{
    const struct mqtt_list *l = &p->list;
    struct session *s = c->session;
    uint8_t rcs[MAX_FILTERS_PER_PACKET];
    ENSURE(l->count <= MAX_FILTERS_PER_PACKET, ERR_LIMIT);
    size_t pos = 0, n = 0;
    struct want w = {0};
    char filter[65536 + 320];
    size_t flen;
    while (mqtt_topic_next(l, &pos, &w.filter, NULL) == 1) {
        w.group = (struct mqtt_bytes){NULL, 0};
        uint8_t rc = MQTT_RC_NO_SUBSCRIPTION_EXISTED;
        struct sub *sub = NULL;
        if (split_share(&w) &&
            devtopic_in(s, (const char *)w.filter.p, w.filter.len, DEVTOPIC_SUBSCRIBE, filter,
                        sizeof filter, &flen) == 0 &&
            flen <= UINT16_MAX)
            sub = session_find_sub(s, filter, (uint16_t)flen, &w);
        if (sub) {
            session_del_sub(b, s, sub);
            rc = MQTT_RC_SUCCESS;
        }
        rcs[n++] = rc;
    }
    return mqtt_encode_unsuback(&c->out, l->packet_id, rcs, n,
                                client_v5(c) ? &mqtt_props_none : NULL);
}
