/* PUBLISH from a client and the acknowledgement packets of both QoS flows:
 * PUBACK/PUBREC/PUBCOMP for messages we sent, PUBREL for QoS 2 messages we
 * received (delivered on PUBLISH, the id remembered until PUBREL). */
#include "broker/internal.h"

#include <stdlib.h>
#include <string.h>

static bool rx_has(const struct session *s, uint16_t id)
{
    for (unsigned i = 0; i < s->n_rx; i++)
        if (s->rx_ids[i] == id) return true;
    return false;
}

static int rx_add(struct broker *b, struct session *s, uint16_t id)
{
    if (s->n_rx == s->cap_rx) {
        if (s->cap_rx >= (unsigned)b->cfg.max_inflight * 4 + 64) return ERR_LIMIT;
        unsigned n = s->cap_rx ? s->cap_rx * 2 : 8;
        uint16_t *ids = realloc(s->rx_ids, n * sizeof *ids);
        if (!ids) return ERR_NOMEM;
        s->rx_ids = ids;
        s->cap_rx = n;
    }
    s->rx_ids[s->n_rx++] = id;
    return 0;
}

static void rx_del(struct session *s, uint16_t id)
{
    for (unsigned i = 0; i < s->n_rx; i++)
        if (s->rx_ids[i] == id) {
            s->rx_ids[i] = s->rx_ids[--s->n_rx];
            return;
        }
}

int handle_publish(struct broker *b, struct client *c, const struct mqtt_publish *p)
{
    struct session *s = c->session;
    if (!topic_name_valid((const char *)p->topic.p, p->topic.len)) return ERR_PROTO;
    if (p->qos == 2 && rx_has(s, p->packet_id))
        return mqtt_encode_ack(&c->out, MQTT_PUBREC, p->packet_id); /* duplicate */

    struct msg *m =
        msg_new(p->topic.p, p->topic.len, p->payload, p->payload_len, p->qos, p->retain);
    if (!m) return ERR_NOMEM;
    int rc = broker_publish(b, s->space, m);
    msg_unref(m);
    GUARD(rc);
    if (p->qos == 1) return mqtt_encode_ack(&c->out, MQTT_PUBACK, p->packet_id);
    if (p->qos == 2) {
        GUARD(rx_add(b, s, p->packet_id));
        return mqtt_encode_ack(&c->out, MQTT_PUBREC, p->packet_id);
    }
    return 0;
}

/* Finds the in-flight item with this packet id, returning the link to it. */
static struct qitem **find_inflight(struct session *s, uint16_t id, struct qitem **prev)
{
    *prev = NULL;
    for (struct qitem **pp = &s->inflight.head; *pp; *prev = *pp, pp = &(*pp)->next)
        if ((*pp)->packet_id == id) return pp;
    return NULL;
}

static void inflight_remove(struct broker *b, struct client *c, struct qitem **pp,
                            struct qitem *prev)
{
    struct session *s = c->session;
    struct qitem *it = *pp;
    *pp = it->next;
    if (s->inflight.tail == it) s->inflight.tail = prev;
    s->inflight.count--;
    qitem_free(it);
    if (s->queue.count) b->cfg.wake(c); /* room for more */
}

int handle_ack(struct broker *b, struct client *c, enum mqtt_type type, uint16_t id)
{
    struct session *s = c->session;
    if (type == MQTT_PUBREL) {
        rx_del(s, id);
        return mqtt_encode_ack(&c->out, MQTT_PUBCOMP, id);
    }
    struct qitem *prev;
    struct qitem **pp = find_inflight(s, id, &prev);
    if (!pp) return 0; /* unknown or duplicate acknowledgement: ignore */
    struct qitem *it = *pp;
    switch (type) {
    case MQTT_PUBACK:
        if (it->state == Q_WAIT_PUBACK) inflight_remove(b, c, pp, prev);
        return 0;
    case MQTT_PUBREC:
        if (it->state == Q_WAIT_PUBREC) it->state = Q_WAIT_PUBCOMP;
        if (it->state == Q_WAIT_PUBCOMP) return mqtt_encode_ack(&c->out, MQTT_PUBREL, id);
        return 0;
    case MQTT_PUBCOMP:
        if (it->state == Q_WAIT_PUBCOMP) inflight_remove(b, c, pp, prev);
        return 0;
    default: return ERR_PROTO;
    }
}
