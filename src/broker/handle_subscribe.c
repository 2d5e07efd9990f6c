/* SUBSCRIBE and UNSUBSCRIBE: the session's filter list, the topic tree, and
 * retained messages sent for each new subscription. */
#include "broker/internal.h"

#include <stdlib.h>
#include <string.h>

#define MAX_FILTERS_PER_PACKET 256

static int session_add_sub(struct session *s, const char *f, uint16_t len, uint8_t qos)
{
    for (unsigned i = 0; i < s->n_subs; i++)
        if (s->subs[i].len == len && !memcmp(s->subs[i].filter, f, len)) {
            s->subs[i].qos = qos;
            return 0;
        }
    if (s->n_subs == s->cap_subs) {
        unsigned n = s->cap_subs ? s->cap_subs * 2 : 4;
        struct sub *subs = realloc(s->subs, n * sizeof *subs);
        if (!subs) return ERR_NOMEM;
        s->subs = subs;
        s->cap_subs = n;
    }
    char *copy = strndup(f, len);
    if (!copy) return ERR_NOMEM;
    s->subs[s->n_subs++] = (struct sub){copy, len, qos};
    return 0;
}

static void session_del_sub(struct session *s, const char *f, uint16_t len)
{
    for (unsigned i = 0; i < s->n_subs; i++)
        if (s->subs[i].len == len && !memcmp(s->subs[i].filter, f, len)) {
            free(s->subs[i].filter);
            s->subs[i] = s->subs[--s->n_subs];
            return;
        }
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
    session_enqueue(r->b, r->s, m, m->qos < r->qos ? m->qos : r->qos, true);
}

int handle_subscribe(struct broker *b, struct client *c, const struct mqtt_list *l)
{
    struct session *s = c->session;
    uint8_t rcs[MAX_FILTERS_PER_PACKET];
    ENSURE(l->count <= MAX_FILTERS_PER_PACKET, ERR_LIMIT);
    size_t pos = 0, n = 0;
    struct mqtt_bytes f;
    uint8_t qos;
    char filter[65536 + 320];
    size_t flen;
    while (mqtt_topic_next(l, &pos, &f, &qos) == 1) {
        if (!topic_filter_valid((const char *)f.p, f.len) ||
            devtopic_in(s, (const char *)f.p, f.len, false, filter, sizeof filter, &flen) < 0 ||
            flen > UINT16_MAX) {
            rcs[n++] = MQTT_SUBACK_FAILURE;
            continue;
        }
        int rc = topic_subscribe(s->space->tree, filter, flen, s, qos);
        if (rc >= 0) rc = session_add_sub(s, filter, (uint16_t)flen, qos);
        if (rc < 0) {
            rcs[n++] = MQTT_SUBACK_FAILURE;
            continue;
        }
        rcs[n++] = qos;
        struct retained_ctx r = {b, s, qos};
        topic_retain_match(s->space->tree, filter, flen, send_retained, &r);
    }
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
        if (devtopic_in(s, (const char *)f.p, f.len, false, filter, sizeof filter, &flen) < 0 ||
            flen > UINT16_MAX)
            continue;
        topic_unsubscribe(s->space->tree, filter, flen, s);
        session_del_sub(s, filter, (uint16_t)flen);
    }
    return mqtt_encode_ack(&c->out, MQTT_UNSUBACK, l->packet_id);
}
