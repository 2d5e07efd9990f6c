/* Broker core: the lock, tenant topic spaces, sessions, routing, the
 * per-session queues and draining them into a client's output buffer.
 * Packet handlers live in handle_*.c. */
#include "broker/internal.h"

#include <stdlib.h>
#include <string.h>

#include "core/log.h"

/* Output buffered for one client before draining stops (backpressure). */
#define DRAIN_HIGH_WATER (256 * 1024)

struct msg *msg_new(const uint8_t *topic, size_t tlen, const uint8_t *payload, size_t plen,
                    uint8_t qos, bool retain)
{
    struct msg *m = malloc(sizeof *m + tlen + plen);
    if (!m) return NULL;
    m->refs = 1;
    m->qos = qos;
    m->retain = retain;
    m->topic_len = (uint16_t)tlen;
    m->payload_len = plen;
    memcpy(m->data, topic, tlen);
    if (plen) memcpy(m->data + tlen, payload, plen);
    return m;
}

void msg_unref(struct msg *m)
{
    if (m && --m->refs == 0) free(m);
}

void qlist_push(struct qlist *l, struct qitem *it)
{
    it->next = NULL;
    if (l->tail)
        l->tail->next = it;
    else
        l->head = it;
    l->tail = it;
    l->count++;
}

static struct qitem *qlist_pop(struct qlist *l)
{
    struct qitem *it = l->head;
    if (!it) return NULL;
    l->head = it->next;
    if (!l->head) l->tail = NULL;
    l->count--;
    return it;
}

void qitem_free(struct qitem *it)
{
    msg_unref(it->msg);
    free(it);
}

static void qlist_clear(struct qlist *l)
{
    struct qitem *it;
    while ((it = qlist_pop(l))) qitem_free(it);
}

int broker_new(const struct broker_config *cfg, struct broker **out)
{
    struct broker *b = calloc(1, sizeof *b);
    if (!b) return ERR_NOMEM;
    b->cfg = *cfg;
    pthread_mutex_init(&b->lock, NULL);
    map_init(&b->spaces);
    map_init(&b->sessions);
    *out = b;
    return 0;
}

static void free_retained(void *value, void *arg)
{
    (void)arg;
    msg_unref(value);
}

struct collect {
    struct session **v;
    size_t n;
};

static void collect_session(const char *key, void *value, void *arg)
{
    (void)key;
    struct collect *c = arg;
    c->v[c->n++] = value;
}

static void free_space_cb(const char *key, void *value, void *arg)
{
    (void)key;
    (void)arg;
    struct space *sp = value;
    topic_retain_clear(sp->tree, free_retained, NULL);
    topic_tree_free(sp->tree);
    free(sp->tenant);
    free(sp);
}

void broker_free(struct broker *b)
{
    if (!b) return;
    /* session_free unlinks from the map, so collect first, then free. */
    struct collect all = {calloc(b->sessions.count + 1, sizeof(struct session *)), 0};
    if (all.v) map_each(&b->sessions, collect_session, &all);
    for (size_t i = 0; i < all.n; i++) {
        all.v[i]->client = NULL;
        session_free(b, all.v[i]);
    }
    free(all.v);
    map_free(&b->sessions);
    map_each(&b->spaces, free_space_cb, NULL);
    map_free(&b->spaces);
    free(b->hits);
    pthread_mutex_destroy(&b->lock);
    free(b);
}

struct space *space_get(struct broker *b, const char *tenant)
{
    size_t len = strlen(tenant);
    struct space *sp = map_get(&b->spaces, tenant, len);
    if (sp) return sp;
    sp = calloc(1, sizeof *sp);
    if (!sp) return NULL;
    sp->tenant = strdup(tenant);
    sp->tree = topic_tree_new();
    if (!sp->tenant || !sp->tree || map_put(&b->spaces, tenant, len, sp, NULL) < 0) {
        topic_tree_free(sp->tree);
        free(sp->tenant);
        free(sp);
        return NULL;
    }
    return sp;
}

/* Removes the session from the registry and the topic tree and frees it. */
void session_free(struct broker *b, struct session *s)
{
    for (unsigned i = 0; i < s->n_subs; i++) {
        topic_unsubscribe(s->space->tree, s->subs[i].filter, s->subs[i].len, s);
        free(s->subs[i].filter);
    }
    free(s->subs);
    qlist_clear(&s->inflight);
    qlist_clear(&s->queue);
    free(s->rx_ids);
    msg_unref(s->will);
    acl_matcher_free(s->acl);
    if (map_get(&b->sessions, s->key, strlen(s->key)) == s)
        map_del(&b->sessions, s->key, strlen(s->key));
    free(s->key);
    free(s->client_id);
    free(s);
}

void session_enqueue(struct broker *b, struct session *s, struct msg *m, uint8_t qos, bool retain)
{
    if ((!s->client && qos == 0) || s->queue.count >= (unsigned)b->cfg.max_queued) {
        b->stats.msgs_dropped++;
        return;
    }
    struct qitem *it = malloc(sizeof *it);
    if (!it) {
        b->stats.msgs_dropped++;
        return;
    }
    it->msg = m;
    m->refs++;
    it->qos = qos;
    it->state = Q_QUEUED;
    it->packet_id = 0;
    it->retain = retain;
    bool was_empty = s->queue.count == 0;
    qlist_push(&s->queue, it);
    if (s->client && was_empty) b->cfg.wake(s->client);
}

static void collect_hit(void *subscriber, uint8_t qos, void *arg)
{
    struct broker *b = arg;
    struct session *s = subscriber;
    if (s->match_gen == b->gen) {
        if (qos > s->match_qos) s->match_qos = qos;
        return;
    }
    s->match_gen = b->gen;
    s->match_qos = qos;
    if (b->n_hits == b->cap_hits) {
        size_t n = b->cap_hits ? b->cap_hits * 2 : 64;
        struct session **h = realloc(b->hits, n * sizeof *h);
        if (!h) return; /* delivery to this subscriber is lost: counted below */
        b->hits = h;
        b->cap_hits = n;
    }
    b->hits[b->n_hits++] = s;
}

int broker_publish(struct broker *b, struct space *sp, struct msg *m)
{
    const char *topic = m->data;
    b->stats.msgs_in++;
    b->stats.msgs_in_qos[m->qos % 3]++;
    b->stats.bytes_in_qos[m->qos % 3] += m->payload_len;
    if (m->retain) {
        struct msg *old;
        if (b->cfg.on_retain)
            b->cfg.on_retain(b->cfg.retain_arg, sp->tenant, topic, m->topic_len, msg_payload(m),
                             m->payload_len, m->qos);
        if (m->payload_len == 0) {
            old = topic_retain_set(sp->tree, topic, m->topic_len, NULL);
        } else {
            m->refs++;
            old = topic_retain_set(sp->tree, topic, m->topic_len, m);
            if (!old) b->stats.retained++;
        }
        if (old && m->payload_len == 0 && b->stats.retained) b->stats.retained--;
        msg_unref(old);
    }
    b->gen++;
    b->n_hits = 0;
    topic_match(sp->tree, topic, m->topic_len, collect_hit, b);
    for (size_t i = 0; i < b->n_hits; i++) {
        struct session *s = b->hits[i];
        uint8_t qos = m->qos < s->match_qos ? m->qos : s->match_qos;
        if (s->acl_recheck && !session_may_read(s, m)) {
            b->stats.acl_denied_delivery++;
            continue;
        }
        session_enqueue(b, s, m, qos, false);
    }
    return 0;
}

bool session_may_read(const struct session *s, const struct msg *m)
{
    if (!s->acl) return true;
    size_t len;
    const char *name = devtopic_out(s, m->data, m->topic_len, &len);
    return acl_may(s->acl, ACL_READ, name, len);
}

void session_deliver_direct(struct broker *b, struct session *s, struct msg *m)
{
    int best = -1;
    for (unsigned i = 0; i < s->n_subs; i++)
        if (topic_matches(s->subs[i].filter, s->subs[i].len, m->data, m->topic_len) &&
            s->subs[i].qos > best)
            best = s->subs[i].qos;
    if (best >= 0 && session_may_read(s, m))
        session_enqueue(b, s, m, m->qos < best ? m->qos : (uint8_t)best, false);
}

int broker_restore_retained(struct broker *b, const char *tenant, const char *topic, size_t tlen,
                            const uint8_t *payload, size_t plen, uint8_t qos)
{
    if (tlen == 0 || tlen > UINT16_MAX || plen == 0 || qos > 2) return ERR_INVALID;
    int rc = ERR_NOMEM;
    pthread_mutex_lock(&b->lock);
    struct space *sp = space_get(b, tenant);
    struct msg *m = sp ? msg_new((const uint8_t *)topic, tlen, payload, plen, qos, true) : NULL;
    if (m) {
        struct msg *old = topic_retain_set(sp->tree, topic, tlen, m);
        if (!old) b->stats.retained++;
        msg_unref(old);
        rc = 0;
    }
    pthread_mutex_unlock(&b->lock);
    return rc;
}

static uint16_t next_packet_id(struct session *s)
{
    if (++s->next_id == 0) s->next_id = 1;
    return s->next_id;
}

static int send_publish(struct client *c, const struct qitem *it, bool dup)
{
    size_t tlen;
    const char *topic = devtopic_out(c->session, it->msg->data, it->msg->topic_len, &tlen);
    struct mqtt_publish p = {
        .qos = it->qos,
        .dup = dup,
        .retain = it->retain,
        .topic = {(const uint8_t *)topic, (uint16_t)tlen},
        .packet_id = it->packet_id,
        .payload = msg_payload(it->msg),
        .payload_len = it->msg->payload_len,
    };
    return mqtt_encode_publish(&c->out, &p);
}

/* Resends everything in flight after a reconnect (DUP set on PUBLISH). */
int broker_resend_inflight(struct broker *b, struct client *c)
{
    (void)b;
    for (struct qitem *it = c->session->inflight.head; it; it = it->next) {
        if (it->state == Q_WAIT_PUBCOMP)
            GUARD(mqtt_encode_ack(&c->out, MQTT_PUBREL, it->packet_id));
        else
            GUARD(send_publish(c, it, true));
    }
    return 0;
}

int broker_drain(struct broker *b, struct client *c)
{
    int rc = 0;
    pthread_mutex_lock(&b->lock);
    if (c->kicked) {
        rc = ERR_CLOSED;
        goto out;
    }
    struct session *s = c->session;
    if (!s || c->state != CLIENT_ACTIVE || s->gated) goto out;
    if (s->resend_pending) {
        s->resend_pending = false;
        GUARD_GOTO(rc, broker_resend_inflight(b, c), out);
    }
    while (s->queue.head && buf_used(&c->out) < DRAIN_HIGH_WATER) {
        struct qitem *it = s->queue.head;
        if (it->qos > 0 && s->inflight.count >= (unsigned)b->cfg.max_inflight) break;
        qlist_pop(&s->queue);
        if (it->qos > 0) it->packet_id = next_packet_id(s);
        rc = send_publish(c, it, false);
        if (rc < 0) {
            qitem_free(it);
            goto out;
        }
        b->stats.msgs_out++;
        b->stats.msgs_out_qos[it->qos % 3]++;
        b->stats.bytes_out_qos[it->qos % 3] += it->msg->payload_len;
        if (it->qos == 0) {
            qitem_free(it);
        } else {
            it->state = it->qos == 1 ? Q_WAIT_PUBACK : Q_WAIT_PUBREC;
            qlist_push(&s->inflight, it);
        }
    }
out:
    pthread_mutex_unlock(&b->lock);
    return rc;
}

void broker_close(struct broker *b, struct client *c, bool abnormal)
{
    pthread_mutex_lock(&b->lock);
    struct session *s = c->session;
    if (s && s->client == c) {
        b->stats.clients--;
        s->client = NULL;
        if (abnormal && s->will && !c->kicked) {
            ignore_result(broker_publish(b, s->space, s->will));
        }
        msg_unref(s->will);
        s->will = NULL;
        if (s->clean) {
            session_free(b, s);
            b->stats.sessions--;
        } else {
            /* Offline sessions keep QoS 1/2 only; in-flight QoS 0 is gone. */
            struct qlist keep = {0};
            struct qitem *it;
            while ((it = qlist_pop(&s->queue))) {
                if (it->qos)
                    qlist_push(&keep, it);
                else
                    qitem_free(it);
            }
            s->queue = keep;
            s->offline_since = time(NULL);
        }
    }
    c->session = NULL;
    c->state = CLIENT_GONE;
    pthread_mutex_unlock(&b->lock);
}

struct expire_ctx {
    struct session **v;
    size_t n, cap;
    time_t cutoff;
};

static void collect_expired(const char *key, void *value, void *arg)
{
    (void)key;
    struct expire_ctx *e = arg;
    struct session *s = value;
    if (s->client || !s->offline_since || s->offline_since > e->cutoff) return;
    if (e->n == e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 16;
        struct session **v = realloc(e->v, cap * sizeof *v);
        if (!v) return; /* the rest expire on a later sweep */
        e->v = v;
        e->cap = cap;
    }
    e->v[e->n++] = s;
}

int broker_expire_sessions(struct broker *b, time_t now)
{
    if (b->cfg.session_expiry <= 0) return 0;
    struct expire_ctx e = {NULL, 0, 0, now - b->cfg.session_expiry};
    pthread_mutex_lock(&b->lock);
    map_each(&b->sessions, collect_expired, &e);
    for (size_t i = 0; i < e.n; i++) session_free(b, e.v[i]);
    pthread_mutex_unlock(&b->lock);
    free(e.v);
    return (int)e.n;
}

/* ---- authorization changes ---- */

struct refresh_ctx {
    struct broker *b;
    const char *tenant;
    int dropped;
};

int session_set_acl(struct broker *b, struct session *s, struct acl_matcher *m)
{
    int dropped = 0;
    acl_matcher_free(s->acl);
    s->acl = m;
    s->acl_recheck = false;
    for (unsigned i = 0; i < s->n_subs;) {
        struct sub *sub = &s->subs[i];
        size_t len;
        const char *f = devtopic_out(s, sub->filter, sub->len, &len);
        enum acl_verdict v = acl_may_subscribe(m, f, len);
        if (v != ACL_DENIED) {
            s->acl_recheck = s->acl_recheck || v == ACL_PER_TOPIC;
            i++;
            continue;
        }
        log_info("client %s: subscription to '%.*s' dropped: no longer allowed", s->client_id,
                 (int)len, f);
        topic_unsubscribe(s->space->tree, sub->filter, sub->len, s);
        s->sub_bytes -= sub->cost;
        free(sub->filter);
        *sub = s->subs[--s->n_subs];
        dropped++;
    }
    (void)b;
    return dropped;
}

/* Recompiles one session's matcher and drops what it no longer allows. */
static void refresh_session(struct refresh_ctx *r, struct session *s)
{
    struct acl_matcher *m = NULL;
    if (r->b->cfg.acl_compile(r->b->cfg.acl_arg, &s->who, s->client_id, &m) < 0) {
        log_error("client %s: authorization rules could not be compiled; it keeps the old ones",
                  s->client_id);
        return;
    }
    r->dropped += session_set_acl(r->b, s, m);
}

static void refresh_cb(const char *key, void *value, void *arg)
{
    (void)key;
    struct refresh_ctx *r = arg;
    struct session *s = value;
    if (!strcmp(s->space->tenant, r->tenant)) refresh_session(r, s);
}

int broker_acl_refresh(struct broker *b, const char *tenant)
{
    struct refresh_ctx r = {b, tenant, 0};
    if (!b->cfg.acl_compile) return 0;
    pthread_mutex_lock(&b->lock);
    map_each(&b->sessions, refresh_cb, &r);
    pthread_mutex_unlock(&b->lock);
    return r.dropped;
}

struct kick_ctx {
    struct broker *b;
    bool (*pred)(const struct auth_result *who, void *arg);
    void *arg;
    int n;
};

static void kick_cb(const char *key, void *value, void *arg)
{
    (void)key;
    struct kick_ctx *k = arg;
    struct session *s = value;
    if (s->client && !s->client->kicked && k->pred(&s->who, k->arg)) {
        s->client->kicked = true;
        k->b->cfg.wake(s->client);
        k->n++;
    }
}

int broker_kick_where(struct broker *b, bool (*pred)(const struct auth_result *who, void *arg),
                      void *arg)
{
    struct kick_ctx k = {b, pred, arg, 0};
    pthread_mutex_lock(&b->lock);
    map_each(&b->sessions, kick_cb, &k);
    pthread_mutex_unlock(&b->lock);
    return k.n;
}

struct anchor_ref {
    const char *tenant, *fp;
};

static bool same_anchor(const struct auth_result *who, void *arg)
{
    const struct anchor_ref *a = arg;
    return !strcmp(who->tenant, a->tenant) && !strcmp(who->anchor_fp, a->fp);
}

int broker_kick_anchor(struct broker *b, const char *tenant, const char *anchor_fp)
{
    struct anchor_ref a = {tenant, anchor_fp};
    return broker_kick_where(b, same_anchor, &a);
}

void broker_stats(struct broker *b, struct broker_stats *st)
{
    pthread_mutex_lock(&b->lock);
    *st = b->stats;
    st->sessions = b->sessions.count;
    pthread_mutex_unlock(&b->lock);
}

/* The first packet must be a CONNECT (its ClientId rules, 3.1's included,
 * are handle_connect's). */
static int dispatch_first(struct broker *b, struct client *c, const struct mqtt_packet *p,
                          time_t now)
{
    ENSURE(p->type == MQTT_CONNECT, ERR_PROTO);
    return handle_connect(b, c, &p->connect, now);
}

int broker_handle(struct broker *b, struct client *c, const struct mqtt_packet *p, time_t now)
{
    if (c->state == CLIENT_NEW) return dispatch_first(b, c, p, now);
    int rc = 0;
    pthread_mutex_lock(&b->lock);
    if (!c->session || c->kicked) {
        rc = ERR_CLOSED;
        goto out;
    }
    switch (p->type) {
    case MQTT_PUBLISH: rc = handle_publish(b, c, &p->publish); break;
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBREL:
    case MQTT_PUBCOMP: rc = handle_ack(b, c, p->type, p->packet_id); break;
    case MQTT_SUBSCRIBE: rc = handle_subscribe(b, c, &p->list); break;
    case MQTT_UNSUBSCRIBE: rc = handle_unsubscribe(b, c, &p->list); break;
    case MQTT_PINGREQ: rc = mqtt_encode_pingresp(&c->out); break;
    case MQTT_DISCONNECT:
        /* A clean DISCONNECT discards the will. */
        msg_unref(c->session->will);
        c->session->will = NULL;
        rc = ERR_CLOSED;
        break;
    default: rc = ERR_PROTO; break; /* CONNECT twice, or server-to-client packets */
    }
out:
    pthread_mutex_unlock(&b->lock);
    return rc;
}
