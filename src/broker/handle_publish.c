/* PUBLISH from a client and the acknowledgement packets of both QoS flows:
 * PUBACK/PUBREC/PUBCOMP for messages we sent, PUBREL for QoS 2 messages we
 * received (delivered on PUBLISH, the id remembered until PUBREL). Also the
 * device requests carried by PUBLISH: s/uat asks for a token, s/ucr for a
 * renewed certificate. */
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

/* Sends text to this client's own s/<leaf> topic (token, error report). */
static void reply_own(struct broker *b, struct session *s, const char *leaf, const char *text)
{
    char topic[512];
    size_t tlen;
    if (devtopic_in(s, leaf, strlen(leaf), DEVTOPIC_BROKER, topic, sizeof topic, &tlen) < 0) return;
    struct msg *m =
        msg_new((const uint8_t *)topic, tlen, (const uint8_t *)text, strlen(text), 1, false);
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
        pthread_mutex_unlock(&b->lock);
        rc = b->cfg.issue_token(b->cfg.token_arg, tenant, cn, time(NULL), &jwt);
        pthread_mutex_lock(&b->lock);
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
    pthread_mutex_unlock(&b->lock);
    int rc = b->cfg.renew_cert(b->cfg.renew_arg, tenant, cn, csr, p->payload_len, time(NULL), &out);
    pthread_mutex_lock(&b->lock);
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
    pthread_mutex_unlock(&b->lock);
    char *text = b->cfg.renew_notice(b->cfg.renew_arg, tenant, cn, not_after, time(NULL));
    pthread_mutex_lock(&b->lock);
    if (text && c->session == s && !c->kicked) reply_own(b, s, "s/ds", text);
    free(text);
}

int handle_publish(struct broker *b, struct client *c, const struct mqtt_publish *p)
{
    struct session *s = c->session;
    if (p->qos == 2 && rx_has(s, p->packet_id))
        return mqtt_encode_ack(&c->out, MQTT_PUBREC, p->packet_id); /* duplicate */

    char topic[65536 + 320];
    size_t tlen;
    int rc = devtopic_in(s, (const char *)p->topic.p, p->topic.len, DEVTOPIC_PUBLISH, topic,
                         sizeof topic, &tlen);
    if (rc == 0 && !acl_may_publish(s->acl, (const char *)p->topic.p, p->topic.len)) {
        /* 3.1.1 has no negative PUBACK: acknowledged, delivered to nobody. */
        log_debug("client %s: publish to '%.*s' denied by authorization rules", s->client_id,
                  (int)p->topic.len, (const char *)p->topic.p);
        b->stats.acl_denied_publish++;
    } else if (rc == 0 && topic_levels((const char *)p->topic.p, p->topic.len) >
                              (size_t)b->cfg.max_topic_levels) {
        /* Dropped as a refused publish is in 3.1.1: acknowledged, delivered
         * to nobody (a deep retained topic would hold one node per level). */
        log_debug("client %s: publish to a topic of more than %ld levels dropped", s->client_id,
                  b->cfg.max_topic_levels);
    } else if (rc == ERR_FORBIDDEN) {
        log_info("client %s: publish to '%.*s' refused", s->client_id, (int)p->topic.len,
                 (const char *)p->topic.p);
        reply_own(b, s, "s/e", "41,0,Topic not allowed");
    } else if (rc < 0) {
        return rc;
    } else {
        bool uat = p->topic.len == 5 && !memcmp(p->topic.p, "s/uat", 5);
        bool us = p->topic.len == 4 && !memcmp(p->topic.p, "s/us", 4);
        bool ucr = p->topic.len == 5 && !memcmp(p->topic.p, "s/ucr", 5);
        if (s->gated && (uat || us || ucr)) {
            s->gated = false;
            b->cfg.wake(c);
            renew_notice(b, c);
            if (c->session != s || c->kicked) return ERR_CLOSED; /* taken over meanwhile */
        }
        struct msg *m =
            msg_new((const uint8_t *)topic, tlen, p->payload, p->payload_len, p->qos, p->retain);
        if (!m) return ERR_NOMEM;
        rc = broker_publish(b, s->space, m);
        msg_unref(m);
        GUARD(rc);
        if (uat || ucr) {
            if (uat)
                token_request(b, c);
            else
                cert_request(b, c, p);
            if (c->session != s || c->kicked) return ERR_CLOSED; /* taken over meanwhile */
        }
    }
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

/* The acknowledgements of messages we sent, checked against the flow each
 * message is in: an ack from the other QoS flow (PUBREC or PUBCOMP for QoS 1,
 * PUBACK for QoS 2) is a protocol error that closes the connection, as
 * mosquitto does. PUBACK or PUBCOMP for an unknown id is a late duplicate and
 * ignored; PUBREC for an unknown or already released id is answered with
 * PUBREL (4.3.3), so a client that lost our PUBREL can finish. */
int handle_ack(struct broker *b, struct client *c, enum mqtt_type type, uint16_t id)
{
    struct session *s = c->session;
    if (type == MQTT_PUBREL) {
        rx_del(s, id);
        return mqtt_encode_ack(&c->out, MQTT_PUBCOMP, id);
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
        if (it) it->state = Q_WAIT_PUBCOMP;
        return mqtt_encode_ack(&c->out, MQTT_PUBREL, id);
    case MQTT_PUBCOMP:
        if (!it) return 0;
        ENSURE(it->state == Q_WAIT_PUBCOMP, ERR_PROTO);
        inflight_remove(b, c, pp, prev);
        return 0;
    default: return ERR_PROTO;
    }
}
