/* PUBLISH from a client and the acknowledgement packets of both QoS flows:
 * PUBACK/PUBREC/PUBCOMP for messages we sent, PUBREL for QoS 2 messages we
 * received (delivered on PUBLISH, the id remembered until PUBREL). Also the
 * device requests carried by PUBLISH: s/uat asks for a token, s/ucr for a
 * renewed certificate. In 5.0 a
 * PUBLISH may name its topic by alias, carries properties that pass on with
 * the message, and its acknowledgement says why it was refused. */
#include "broker/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

static bool rx_has(const struct session *s, uint16_t id)
{
    for (unsigned i = 0; i < s->n_rx; i++)
        if (s->rx_ids[i] == id) return true;
    return false;
}

int session_rx_add(struct broker *b, struct session *s, uint16_t id)
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

static int rx_add(struct broker *b, struct session *s, uint16_t id)
{
    GUARD(session_rx_add(b, s, id));
    persist_rx(b, s, id, false);
    return 0;
}

static void rx_del(struct broker *b, struct session *s, uint16_t id)
{
    for (unsigned i = 0; i < s->n_rx; i++)
        if (s->rx_ids[i] == id) {
            s->rx_ids[i] = s->rx_ids[--s->n_rx];
            persist_rx(b, s, id, true);
            return;
        }
}

/* Answers a PUBLISH or PUBREL. With persistence, the answer waits until
 * what the PUBLISH stored is committed (journal records appended since
 * before), and answers keep their order behind one that waits. */
static int answer(struct broker *b, struct client *c, enum mqtt_type type, uint16_t id,
                  uint8_t reason, uint64_t before)
{
    if (b->sstore && (c->space->jseq != before || persist_acks_pending(c)))
        return persist_defer_ack(b, c, type, id, reason);
    return mqtt_encode_ack(&c->out, type, id, reason, client_v5(c) ? &mqtt_props_none : NULL);
}

/* The session store cannot be written: a QoS 1/2 PUBLISH is not taken
 * (5.0: PUBACK/PUBREC 0x97; 3.1.1 has no way to say so: the connection
 * closes without an acknowledgement, and the client sends it again). The
 * refusal keeps its place behind acknowledgements still held (they go out
 * in the order of the PUBLISHes). */
static int refuse_unstorable(struct broker *b, struct client *c, const struct mqtt_publish *p)
{
    log_warn("client %s: QoS %u publish refused: the session store cannot be written",
             c->session->client_id, p->qos);
    if (!client_v5(c)) return ERR_DB;
    enum mqtt_type type = p->qos == 1 ? MQTT_PUBACK : MQTT_PUBREC;
    if (persist_acks_pending(c))
        return persist_defer_ack(b, c, type, p->packet_id, MQTT_RC_QUOTA_EXCEEDED);
    return mqtt_encode_ack(&c->out, type, p->packet_id, MQTT_RC_QUOTA_EXCEEDED, &mqtt_props_none);
}

/* Sends text to this client's own s/<leaf> topic (token, error report). */
static void reply_own(struct broker *b, struct session *s, const char *leaf, const char *text)
{
    char topic[512];
    size_t tlen;
    if (devtopic_in(s, leaf, strlen(leaf), DEVTOPIC_BROKER, topic, sizeof topic, &tlen) < 0) return;
    struct msg *m = msg_new((const uint8_t *)topic, tlen, (const uint8_t *)text, strlen(text), 1,
                            false, NULL, 0);
    if (!m) return;
    session_deliver_direct(b, s, m);
    msg_unref(m);
}

/* s/uat: the device asks for its token; it comes back as "71,<JWT>" on its
 * s/dat. Minting runs without the broker lock (it may sign). */
static void token_request(struct broker *b, struct client *c)
{
    struct session *s = c->session;
    if (s->who.kind != AUTH_CERTIFICATE_DEVICE) {
        reply_own(b, s, "s/e", "40,0,Tokens are issued to certificate devices only");
        return;
    }
    char *jwt = NULL;
    char tenant[sizeof s->who.tenant], cn[sizeof s->who.identity];
    memcpy(tenant, s->who.tenant, sizeof tenant);
    memcpy(cn, s->who.identity, sizeof cn);
    int rc = ERR_INTERNAL;
    if (b->cfg.issue_token) {
        space_unlock(c->space);
        rc = b->cfg.issue_token(b->cfg.token_arg, tenant, cn, time(NULL), &jwt);
        space_lock(b, c->space);
        if (c->session != s || c->kicked) { /* taken over meanwhile: s may be gone */
            free(jwt);
            return;
        }
    }
    if (rc < 0 || !jwt) {
        log_warn("token for device '%s' of tenant '%s' could not be issued", cn, tenant);
        reply_own(b, s, "s/e", "50,0,Token could not be issued");
    } else {
        size_t n = strlen(jwt) + 4;
        char *text = malloc(n);
        if (text) {
            snprintf(text, n, "71,%s", jwt);
            reply_own(b, s, "s/dat", text);
            free(text);
        }
    }
    free(jwt);
}

/* s/ucr: the device publishes a CSR (PEM or base64 DER) and gets its new
 * certificate chain on s/dcr, or the reason on s/e. The CSR is copied and
 * signed without the broker lock. */
static void cert_request(struct broker *b, struct client *c, const struct mqtt_publish *p)
{
    struct session *s = c->session;
    if (s->who.kind != AUTH_CERTIFICATE_DEVICE || !b->cfg.renew_cert) {
        reply_own(b, s, "s/e", "40,0,Certificates are renewed for certificate devices only");
        return;
    }
    char tenant[sizeof s->who.tenant], cn[sizeof s->who.identity], *out = NULL;
    memcpy(tenant, s->who.tenant, sizeof tenant);
    memcpy(cn, s->who.identity, sizeof cn);
    uint8_t *csr = malloc(p->payload_len ? p->payload_len : 1);
    if (!csr) return;
    if (p->payload_len) memcpy(csr, p->payload, p->payload_len);
    space_unlock(c->space);
    int rc = b->cfg.renew_cert(b->cfg.renew_arg, tenant, cn, csr, p->payload_len, time(NULL), &out);
    space_lock(b, c->space);
    free(csr);
    if (c->session == s && !c->kicked) /* else taken over meanwhile: s may be gone */
        reply_own(b, s, rc == 0 ? "s/dcr" : "s/e",
                  out ? out : "50,0,Certificate could not be issued");
    free(out);
}

/* Once per connection, as the device's gate opens: a certificate due for
 * renewal earns a notice on its s/ds (see broker_config.renew_notice). */
static void renew_notice(struct broker *b, struct client *c)
{
    struct session *s = c->session;
    if (s->who.kind != AUTH_CERTIFICATE_DEVICE || !c->not_after || !b->cfg.renew_notice) return;
    char tenant[sizeof s->who.tenant], cn[sizeof s->who.identity];
    memcpy(tenant, s->who.tenant, sizeof tenant);
    memcpy(cn, s->who.identity, sizeof cn);
    int64_t not_after = c->not_after;
    space_unlock(c->space);
    char *text = b->cfg.renew_notice(b->cfg.renew_arg, tenant, cn, not_after, time(NULL));
    space_lock(b, c->space);
    if (text && c->session == s && !c->kicked) reply_own(b, s, "s/ds", text);
    free(text);
}

/* A 5.0 PUBLISH's properties: the topic its alias stands for, the rules on
 * what a client may send, and the message made with what passes on. */
static int publish_v5_msg(struct broker *b, const struct mqtt_packet *pk, const char *topic,
                          size_t tlen, struct msg **out)
{
    const struct mqtt_props *pr = &pk->props;
    const struct mqtt_publish *p = &pk->publish;
    ENSURE(!mqtt_props_has(pr, MQTT_PROP_SUBSCRIPTION_ID), ERR_PROTO);
    uint64_t drop = 1ull << MQTT_PROP_TOPIC_ALIAS | 1ull << MQTT_PROP_MESSAGE_EXPIRY |
                    1ull << MQTT_PROP_SUBSCRIPTION_ID;
    int rc = 0;
    if (!pr->raw_len) { /* no properties: nothing to copy */
        *out = msg_new((const uint8_t *)topic, tlen, p->payload, p->payload_len, p->qos, p->retain,
                       NULL, 0);
    } else {
        struct buf props;
        buf_init(&props, 0);
        rc = mqtt_props_copy(&props, pr, drop);
        *out = rc < 0 ? NULL
                      : msg_new((const uint8_t *)topic, tlen, p->payload, p->payload_len, p->qos,
                                p->retain, buf_head(&props), buf_used(&props));
        buf_free(&props);
    }
    GUARD(rc);
    ENSURE(*out, ERR_NOMEM);
    uint32_t expiry = mqtt_props_has(pr, MQTT_PROP_MESSAGE_EXPIRY) ? pr->message_expiry : 0;
    long cap = b->cfg.max_message_expiry;
    if (cap > 0 && (!expiry || expiry > (unsigned long)cap)) expiry = (uint32_t)cap;
    if (expiry) (*out)->expire_at = time(NULL) + expiry;
    return 0;
}

/* Why a PUBLISH goes nowhere: 0 when it may be routed, else the 5.0
 * reason code it is acknowledged with. */
static uint8_t publish_refusal(struct broker *b, struct session *s, const struct mqtt_packet *pk,
                               struct mqtt_bytes name, int route_rc)
{
    const struct mqtt_publish *p = &pk->publish;
    if (route_rc == 0 && !acl_may_publish(s->acl, (const char *)name.p, name.len)) {
        log_debug("client %s: publish to '%.*s' denied by authorization rules", s->client_id,
                  (int)name.len, (const char *)name.p);
        s->space->stats.acl_denied_publish++;
        return MQTT_RC_NOT_AUTHORIZED;
    }
    if (route_rc == 0 &&
        topic_levels((const char *)name.p, name.len) > (size_t)b->cfg.max_topic_levels) {
        /* A deep retained topic would hold one node per level. */
        log_debug("client %s: publish to a topic of more than %ld levels dropped", s->client_id,
                  b->cfg.max_topic_levels);
        return MQTT_RC_TOPIC_NAME_INVALID;
    }
    if (route_rc == ERR_FORBIDDEN) {
        log_info("client %s: publish to '%.*s' refused", s->client_id, (int)name.len,
                 (const char *)name.p);
        reply_own(b, s, "s/e", "41,0,Topic not allowed");
        return MQTT_RC_NOT_AUTHORIZED;
    }
    if (pk->version == MQTT_V5 && pk->props.payload_format == 1 &&
        !mqtt_utf8_valid(p->payload, p->payload_len))
        return MQTT_RC_PAYLOAD_FORMAT_INVALID;
    return 0;
}

/* Routes an accepted PUBLISH (and answers device requests it carries). */
static int publish_route(struct broker *b, struct client *c, const struct mqtt_packet *pk,
                         struct mqtt_bytes name, const char *topic, size_t tlen)
{
    struct session *s = c->session;
    const struct mqtt_publish *p = &pk->publish;
    bool uat = name.len == 5 && !memcmp(name.p, "s/uat", 5);
    bool us = name.len == 4 && !memcmp(name.p, "s/us", 4);
    bool ucr = name.len == 5 && !memcmp(name.p, "s/ucr", 5);
    if (s->gated && (uat || us || ucr)) {
        s->gated = false;
        b->cfg.wake(c);
        renew_notice(b, c);
        if (c->session != s || c->kicked) return ERR_CLOSED; /* taken over meanwhile */
    }
    struct msg *m;
    if (pk->version == MQTT_V5) {
        GUARD(publish_v5_msg(b, pk, topic, tlen, &m));
    } else {
        m = msg_new((const uint8_t *)topic, tlen, p->payload, p->payload_len, p->qos, p->retain,
                    NULL, 0);
        ENSURE(m, ERR_NOMEM);
    }
    int rc = broker_publish(b, s->space, m, s);
    msg_unref(m);
    GUARD(rc);
    if (uat || ucr) {
        if (uat)
            token_request(b, c);
        else
            cert_request(b, c, p);
        if (c->session != s || c->kicked) return ERR_CLOSED; /* taken over meanwhile */
    }
    return 0;
}

int handle_publish(struct broker *b, struct client *c, const struct mqtt_packet *pk)
{
    struct session *s = c->session;
    const struct mqtt_publish *p = &pk->publish;
    uint64_t before = s->space->jseq;
    if (p->qos == 2 && rx_has(s, p->packet_id))
        return answer(b, c, MQTT_PUBREC, p->packet_id, 0, before); /* duplicate */
    if (p->qos && atomic_load_explicit(&b->persist_broken, memory_order_relaxed))
        return refuse_unstorable(b, c, p);
    if (p->qos == 2 && client_v5(c) && s->n_rx >= (unsigned)b->cfg.max_receive) {
        c->close_reason = MQTT_RC_RECEIVE_MAX_EXCEEDED;
        return ERR_PROTO;
    }
    struct mqtt_bytes name = p->topic;
    if (client_v5(c) && mqtt_props_has(&pk->props, MQTT_PROP_TOPIC_ALIAS))
        GUARD(alias_in(c, pk->props.topic_alias, &name));

    char topic[65536 + 320];
    size_t tlen;
    int rc = devtopic_in(s, (const char *)name.p, name.len, DEVTOPIC_PUBLISH, topic, sizeof topic,
                         &tlen);
    if (rc < 0 && rc != ERR_FORBIDDEN) return rc;
    /* 3.1.1 has no negative PUBACK: a refused PUBLISH is acknowledged and
     * delivered to nobody; 5.0 says why in the acknowledgement. */
    uint8_t reason = publish_refusal(b, s, pk, name, rc);
    if (!reason) GUARD(publish_route(b, c, pk, name, topic, tlen));
    if (p->qos == 1) return answer(b, c, MQTT_PUBACK, p->packet_id, reason, before);
    if (p->qos == 2) {
        if (!reason || !client_v5(c)) GUARD(rx_add(b, s, p->packet_id));
        return answer(b, c, MQTT_PUBREC, p->packet_id, reason, before);
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
    item_done(b, s->space, it);
    if (s->queue.count || s->held_inflight) b->cfg.wake(c); /* room for more */
}

/* The acknowledgements of messages we sent, checked against the flow each
 * message is in: an ack from the other QoS flow (PUBREC or PUBCOMP for QoS 1,
 * PUBACK for QoS 2) is a protocol error that closes the connection, as
 * mosquitto does. PUBACK or PUBCOMP for an unknown id is a late duplicate and
 * ignored; PUBREC for an unknown or already released id is answered with
 * PUBREL (4.3.3), so a client that lost our PUBREL can finish. */
int handle_ack(struct broker *b, struct client *c, enum mqtt_type type, uint16_t id, uint8_t reason)
{
    struct session *s = c->session;
    if (type == MQTT_PUBREL) {
        /* 5.0: a PUBREL for an id we do not hold is answered 0x92. */
        uint8_t why = rx_has(s, id) ? 0 : MQTT_RC_PACKET_ID_NOT_FOUND;
        rx_del(b, s, id);
        /* PUBCOMP needs nothing stored first: it waits only behind held answers. */
        return answer(b, c, MQTT_PUBCOMP, id, why, s->space->jseq);
    }
    struct qitem *prev;
    struct qitem **pp = find_inflight(s, id, &prev);
    struct qitem *it = pp ? *pp : NULL;
    switch (type) {
    case MQTT_PUBACK:
        if (!it) return 0;
        ENSURE(it->state == Q_WAIT_PUBACK, ERR_PROTO);
        inflight_remove(b, c, pp, prev);
        return 0;
    case MQTT_PUBREC:
        ENSURE(!it || it->state != Q_WAIT_PUBACK, ERR_PROTO);
        /* 5.0: a PUBREC with an error reason ends the flow (4.3.3). */
        if (it && client_v5(c) && reason >= 0x80) {
            inflight_remove(b, c, pp, prev);
            return 0;
        }
        uint64_t before = s->space->jseq;
        if (it) {
            if (it->state != Q_WAIT_PUBCOMP) {
                it->state = Q_WAIT_PUBCOMP;
                persist_item_upd(b, s->space, it);
            }
            it->held = false; /* the PUBREL below is its resend */
        }
        /* A stored message's PUBREL waits for its new state's commit. */
        return answer(b, c, MQTT_PUBREL, id, it ? 0 : MQTT_RC_PACKET_ID_NOT_FOUND, before);
    case MQTT_PUBCOMP:
        if (!it) return 0;
        ENSURE(it->state == Q_WAIT_PUBCOMP, ERR_PROTO);
        inflight_remove(b, c, pp, prev);
        return 0;
    default: return ERR_PROTO;
    }
}
