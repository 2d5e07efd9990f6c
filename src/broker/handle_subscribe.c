/* SUBSCRIBE and UNSUBSCRIBE: the session's filter list, the topic tree, and
 * retained messages sent for each new subscription. */
#include "broker/internal.h"

#include <stdlib.h>
#include <string.h>

#include "core/log.h"

#define MAX_FILTERS_PER_PACKET 256

static struct sub *session_find_sub(struct session *s, const char *f, uint16_t len)
{
    for (unsigned i = 0; i < s->n_subs; i++)
        if (s->subs[i].len == len && !memcmp(s->subs[i].filter, f, len)) return &s->subs[i];
    return NULL;
}

/* A new subscription must fit the client's limits: their count and the
 * memory they hold (max_subscriptions, max_subscription_bytes). */
static bool session_sub_fits(const struct broker *b, const struct session *s, size_t cost)
{
    return s->n_subs < (unsigned)b->cfg.max_subscriptions &&
           s->sub_bytes + cost <= (size_t)b->cfg.max_subscription_bytes;
}

static int session_add_sub(struct session *s, const char *f, uint16_t len, uint8_t qos, size_t cost)
{
    if (s->n_subs == s->cap_subs) {
        unsigned n = s->cap_subs ? s->cap_subs * 2 : 4;
        struct sub *subs = realloc(s->subs, n * sizeof *subs);
        if (!subs) return ERR_NOMEM;
        s->subs = subs;
        s->cap_subs = n;
    }
    char *copy = strndup(f, len);
    if (!copy) return ERR_NOMEM;
    s->subs[s->n_subs++] = (struct sub){copy, len, qos, (uint32_t)cost};
    s->sub_bytes += cost;
    return 0;
}

static void session_del_sub(struct session *s, const char *f, uint16_t len)
{
    struct sub *sub = session_find_sub(s, f, len);
    if (!sub) return;
    s->sub_bytes -= sub->cost;
    free(sub->filter);
    *sub = s->subs[--s->n_subs];
}

struct retained_ctx {
    struct broker *b;
    struct session *s;
    uint8_t qos;
};

static void send_retained(void *value, void *arg)
{
    struct retained_ctx *r = arg;
    struct msg *m = value;
    if (!session_may_read(r->s, m)) {
        r->b->stats.acl_denied_delivery++;
        return;
    }
    session_enqueue(r->b, r->s, m, m->qos < r->qos ? m->qos : r->qos, true);
}

/* One filter of a SUBSCRIBE: its SUBACK return code. */
static uint8_t subscribe_one(struct broker *b, struct session *s, struct mqtt_bytes f, uint8_t qos)
{
    char filter[65536 + 320];
    size_t flen;
    if (!topic_filter_valid((const char *)f.p, f.len) ||
        topic_levels((const char *)f.p, f.len) > (size_t)b->cfg.max_topic_levels ||
        devtopic_in(s, (const char *)f.p, f.len, DEVTOPIC_SUBSCRIBE, filter, sizeof filter, &flen) <
            0 ||
        flen > UINT16_MAX)
        return MQTT_SUBACK_FAILURE;
    enum acl_verdict v = acl_may_subscribe(s->acl, (const char *)f.p, f.len);
    if (v == ACL_DENIED) {
        log_debug("client %s: subscription to '%.*s' denied by authorization rules", s->client_id,
                  (int)f.len, (const char *)f.p);
        b->stats.acl_denied_subscribe++;
        return MQTT_SUBACK_FAILURE;
    }
    if (v == ACL_PER_TOPIC) s->acl_recheck = true;
    struct sub *old = session_find_sub(s, filter, (uint16_t)flen);
    size_t cost = topic_filter_cost(flen, topic_levels(filter, flen));
    if (!old && !session_sub_fits(b, s, cost)) {
        log_info("client %s: subscription refused, limit of %ld subscriptions or %ld bytes",
                 s->client_id, b->cfg.max_subscriptions, b->cfg.max_subscription_bytes);
        return MQTT_SUBACK_FAILURE;
    }
    if (topic_subscribe(s->space->tree, filter, flen, s, qos) < 0) return MQTT_SUBACK_FAILURE;
    if (old) {
        old->qos = qos;
    } else if (session_add_sub(s, filter, (uint16_t)flen, qos, cost) < 0) {
        topic_unsubscribe(s->space->tree, filter, flen, s);
        return MQTT_SUBACK_FAILURE;
    }
    struct retained_ctx r = {b, s, qos};
    topic_retain_match(s->space->tree, filter, flen, send_retained, &r);
    return qos;
}

int handle_subscribe(struct broker *b, struct client *c, const struct mqtt_list *l)
{
    uint8_t rcs[MAX_FILTERS_PER_PACKET];
    ENSURE(l->count <= MAX_FILTERS_PER_PACKET, ERR_LIMIT);
    size_t pos = 0, n = 0;
    struct mqtt_bytes f;
    uint8_t qos;
    while (mqtt_topic_next(l, &pos, &f, &qos) == 1) rcs[n++] = subscribe_one(b, c->session, f, qos);
    /* The SUBACK goes out before the retained messages queued above. */
    return mqtt_encode_suback(&c->out, l->packet_id, rcs, n);
}

int handle_unsubscribe(struct broker *b, struct client *c, const struct mqtt_list *l)
{
    (void)b;
    struct session *s = c->session;
    size_t pos = 0;
    struct mqtt_bytes f;
    char filter[65536 + 320];
    size_t flen;
    while (mqtt_topic_next(l, &pos, &f, NULL) == 1) {
        if (devtopic_in(s, (const char *)f.p, f.len, DEVTOPIC_SUBSCRIBE, filter, sizeof filter,
                        &flen) < 0 ||
            flen > UINT16_MAX)
            continue;
        topic_unsubscribe(s->space->tree, filter, flen, s);
        session_del_sub(s, filter, (uint16_t)flen);
    }
    return mqtt_encode_ack(&c->out, MQTT_UNSUBACK, l->packet_id);
}
