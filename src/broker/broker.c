/* Broker core: tenant topic spaces and their locks, sessions, routing, the
 * per-session queues and draining them into a client's output buffer.
 * Packet handlers live in handle_*.c. */
#include "broker/internal.h"

#include <stdlib.h>
#include <string.h>

#include "core/log.h"

/* Output buffered for one client before draining stops (backpressure). */
#define DRAIN_HIGH_WATER (256 * 1024)

struct msg *msg_new(const uint8_t *topic, size_t tlen, const uint8_t *payload, size_t plen,
                    uint8_t qos, bool retain, const uint8_t *props, size_t props_len)
{
    struct msg *m = malloc(sizeof *m + tlen + plen + props_len);
    if (!m) return NULL;
    m->refs = 1;
    m->qos = qos;
    m->retain = retain;
    m->topic_len = (uint16_t)tlen;
    m->props_len = (uint32_t)props_len;
    m->expire_at = 0;
    m->pid = 0;
    m->durable_refs = 0;
    m->payload_len = plen;
    memcpy(m->data, topic, tlen);
    if (plen) memcpy(m->data + tlen, payload, plen);
    if (props_len) memcpy(m->data + tlen + plen, props, props_len);
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

/* The items of a session that ends (its store record goes with it). */
static void qlist_clear(struct broker *b, struct space *sp, struct qlist *l)
{
    struct qitem *it;
    while ((it = qlist_pop(l))) item_forget(b, sp, it);
}

int broker_new(const struct broker_config *cfg, struct broker **out)
{
    struct broker *b = calloc(1, sizeof *b);
    if (!b) return ERR_NOMEM;
    b->cfg = *cfg;
    pthread_mutex_init(&b->spaces_lock, NULL);
    pthread_mutex_init(&b->dirty_lock, NULL);
    map_init(&b->spaces);
    *out = b;
    return 0;
}

static void free_retained(void *value, void *arg)
{
    (void)arg;
    msg_unref(value);
}

static void collect_session(const char *key, void *value, void *arg)
{
    (void)key;
    struct session ***v = arg;
    *(*v)++ = value;
}

static void free_space_cb(const char *key, void *value, void *arg)
{
    (void)key;
    struct space *sp = value;
    struct broker *b = arg;
    /* session_free unlinks from the map, so collect first, then free. */
    struct session **all = calloc(sp->sessions.count + 1, sizeof *all), **end = all;
    if (all) map_each(&sp->sessions, collect_session, &end);
    for (struct session **s = all; s < end; s++) {
        (*s)->client = NULL;
        session_free(b, *s);
    }
    free(all);
    map_free(&sp->sessions);
    share_free_all(sp);
    topic_retain_clear(sp->tree, free_retained, NULL);
    map_free(&sp->retained);
    topic_tree_free(sp->tree);
    free(sp->hits);
    buf_free(&sp->journal);
    free(sp->await);
    pthread_mutex_destroy(&sp->lock);
    free(sp->tenant);
    free(sp);
}

void broker_free(struct broker *b)
{
    if (!b) return;
    map_each(&b->spaces, free_space_cb, b);
    map_free(&b->spaces);
    free(b->dirty);
    pthread_mutex_destroy(&b->spaces_lock);
    pthread_mutex_destroy(&b->dirty_lock);
    free(b);
}

static struct space *space_new(const char *tenant)
{
    struct space *sp = calloc(1, sizeof *sp);
    if (!sp) return NULL;
    sp->tenant = strdup(tenant);
    sp->tree = topic_tree_new();
    if (!sp->tenant || !sp->tree) {
        topic_tree_free(sp->tree);
        free(sp->tenant);
        free(sp);
        return NULL;
    }
    pthread_mutex_init(&sp->lock, NULL);
    map_init(&sp->shares);
    map_init(&sp->sessions);
    map_init(&sp->retained);
    buf_init(&sp->journal, 0);
    return sp;
}

struct space *space_find(struct broker *b, const char *tenant)
{
    pthread_mutex_lock(&b->spaces_lock);
    struct space *sp = map_get(&b->spaces, tenant, strlen(tenant));
    pthread_mutex_unlock(&b->spaces_lock);
    return sp;
}

struct space *space_get(struct broker *b, const char *tenant)
{
    size_t len = strlen(tenant);
    pthread_mutex_lock(&b->spaces_lock);
    struct space *sp = map_get(&b->spaces, tenant, len);
    if (!sp && (sp = space_new(tenant)) && map_put(&b->spaces, tenant, len, sp, NULL) < 0) {
        pthread_mutex_destroy(&sp->lock);
        topic_tree_free(sp->tree);
        free(sp->tenant);
        free(sp);
        sp = NULL;
    }
    pthread_mutex_unlock(&b->spaces_lock);
    return sp;
}

struct space *space_of_key(struct broker *b, const char *key, size_t klen)
{
    const char *sep = memchr(key, 1, klen);
    if (!sep || (size_t)(sep - key) > 64) return NULL;
    char tenant[65];
    memcpy(tenant, key, (size_t)(sep - key));
    tenant[sep - key] = 0;
    return space_find(b, tenant);
}

struct spaces_snap {
    struct space **v;
    size_t n;
};

static void snap_space(const char *key, void *value, void *arg)
{
    (void)key;
    struct spaces_snap *s = arg;
    s->v[s->n++] = value;
}

void spaces_each(struct broker *b, void (*fn)(struct broker *b, struct space *sp, void *arg),
                 void *arg)
{
    /* Spaces live as long as the broker: a snapshot of the map stays valid
     * without its lock, and no space's lock is taken under it. */
    pthread_mutex_lock(&b->spaces_lock);
    struct spaces_snap s = {malloc((b->spaces.count + 1) * sizeof *s.v), 0};
    if (s.v) map_each(&b->spaces, snap_space, &s);
    pthread_mutex_unlock(&b->spaces_lock);
    if (!s.v) log_error("broker: out of memory walking the tenant spaces; nothing done");
    for (size_t i = 0; i < s.n; i++) {
        space_lock(b, s.v[i]);
        fn(b, s.v[i], arg);
        space_unlock(s.v[i]);
    }
    free(s.v);
}

void broker_interest(struct broker *b, const struct space *sp, const char *filter, size_t flen,
                     const char *group, bool add)
{
    const struct broker_cluster *cl = b->cfg.cluster;
    if (cl) cl->interest(cl->arg, sp->tenant, filter, flen, group, add);
}

void session_del_sub(struct broker *b, struct session *s, struct sub *sub)
{
    persist_sub(b, s, sub, true);
    if (sub->share) {
        char *group = strdup(share_group(sub->share));
        if (share_leave(s->space, sub->share, s) && group)
            broker_interest(b, s->space, sub->filter, sub->len, group, false);
        free(group);
    } else if (topic_unsubscribe(s->space->tree, sub->filter, sub->len, s) == 1) {
        broker_interest(b, s->space, sub->filter, sub->len, NULL, false);
    }
    s->sub_bytes -= sub->cost;
    free(sub->filter);
    *sub = s->subs[--s->n_subs];
}

/* Removes the session from the registry and the topic tree and frees it. */
void session_free(struct broker *b, struct session *s)
{
    persist_session_del(b, s);
    while (s->n_subs) session_del_sub(b, s, &s->subs[s->n_subs - 1]);
    free(s->subs);
    qlist_clear(b, s->space, &s->inflight);
    qlist_clear(b, s->space, &s->queue);
    free(s->rx_ids);
    msg_unref(s->will);
    acl_matcher_free(s->acl);
    struct map *sessions = &s->space->sessions;
    if (map_get(sessions, s->key, strlen(s->key)) == s) map_del(sessions, s->key, strlen(s->key));
    free(s->key);
    free(s->client_id);
    free(s);
}

static bool msg_expired(const struct msg *m, time_t now)
{
    return m->expire_at && now >= m->expire_at;
}

void session_enqueue(struct broker *b, struct session *s, struct msg *m, const struct delivery *d)
{
    struct broker_stats *st = &s->space->stats;
    if ((!s->client && d->qos == 0) || s->queue.count >= (unsigned)b->cfg.max_queued) {
        st->msgs_dropped++;
        return;
    }
    if (msg_expired(m, time(NULL))) {
        st->msgs_expired++;
        return;
    }
    struct qitem *it = malloc(sizeof *it + d->n_ids * sizeof it->sub_ids[0]);
    if (!it) {
        st->msgs_dropped++;
        return;
    }
    it->msg = m;
    m->refs++;
    it->qos = d->qos;
    it->state = Q_QUEUED;
    it->packet_id = 0;
    it->retain = d->retain;
    it->maybe_sent = false;
    it->held = false;
    it->seq = it->jseq = 0;
    it->n_ids = d->n_ids;
    if (d->n_ids) memcpy(it->sub_ids, d->sub_ids, d->n_ids * sizeof it->sub_ids[0]);
    persist_item_put(b, s, it);
    bool was_empty = s->queue.count == 0;
    qlist_push(&s->queue, it);
    if (s->client && was_empty) b->cfg.wake(s->client);
}

static void collect_hit(void *subscriber, uint8_t qos, void *arg)
{
    struct space *sp = arg;
    struct session *s = subscriber;
    if (share_is(subscriber)) {
        if (sp->skip_shares) return;
        uint32_t id;
        s = share_pick(subscriber, &qos, &id);
        if (!s) return;
        s->share_gen = sp->gen;
        s->share_qos = qos;
        s->share_id = id;
        if (s->match_gen == sp->gen) return;
        qos = 0; /* its own subscriptions are weighed in session_detail */
    }
    if (s->match_gen == sp->gen) {
        if (qos > s->match_qos) s->match_qos = qos;
        return;
    }
    s->match_gen = sp->gen;
    s->match_qos = qos;
    if (sp->n_hits == sp->cap_hits) {
        size_t n = sp->cap_hits ? sp->cap_hits * 2 : 64;
        struct session **h = realloc(sp->hits, n * sizeof *h);
        if (!h) return; /* delivery to this subscriber is lost: counted below */
        sp->hits = h;
        sp->cap_hits = n;
    }
    sp->hits[sp->n_hits++] = s;
}

/* How m reaches s when s has subscriptions with 5.0 options or a shared
 * one: the best QoS over the matching filters that No Local leaves, the
 * RETAIN flag (Retain As Published), and their identifiers. false when
 * none is left. ids has room for n_subs + 1. */
static bool session_detail(const struct session *s, const struct msg *m, const struct session *from,
                           struct delivery *d, uint32_t *ids)
{
    int best = -1;
    d->retain = false;
    d->n_ids = 0;
    for (unsigned i = 0; i < s->n_subs; i++) {
        const struct sub *sub = &s->subs[i];
        if (sub->share || ((sub->opts & MQTT_SUB_NO_LOCAL) && s == from)) continue;
        if (!topic_matches(sub->filter, sub->len, m->data, m->topic_len)) continue;
        if (sub->qos > best) best = sub->qos;
        if (sub->opts & MQTT_SUB_RETAIN_AS_PUB) d->retain = m->retain;
        if (sub->id) ids[d->n_ids++] = sub->id;
    }
    if (s->share_gen == s->space->gen) {
        if (s->share_qos > best) best = s->share_qos;
        if (s->share_id) ids[d->n_ids++] = s->share_id;
    }
    if (best < 0) return false;
    d->qos = m->qos < best ? m->qos : (uint8_t)best;
    d->sub_ids = ids;
    return true;
}

/* Queues m for one session the tree matched; returns 1 when queued. */
static int deliver_one(struct broker *b, struct session *s, struct msg *m,
                       const struct session *from)
{
    struct delivery d = {m->qos < s->match_qos ? m->qos : s->match_qos, false, 0, NULL};
    uint32_t small[16], *ids = small;
    int rc = 0;
    if (s->sub_detail || s->share_gen == s->space->gen) {
        if (s->n_subs + 1 > 16) ids = malloc((s->n_subs + 1) * sizeof *ids);
        if (!ids) {
            s->space->stats.msgs_dropped++;
            return 0;
        }
        if (!session_detail(s, m, from, &d, ids)) goto out;
    }
    if (s->acl_recheck && !session_may_read(s, m)) {
        s->space->stats.acl_denied_delivery++;
        goto out;
    }
    session_enqueue(b, s, m, &d);
    rc = 1;
out:
    if (ids != small) free(ids);
    return rc;
}

/* Queues m for the sessions of sp's tree that match it (the shared
 * subscriptions too unless skip_shares); returns how many. */
static int route(struct broker *b, struct space *sp, struct msg *m, const struct session *from,
                 bool skip_shares)
{
    sp->gen++;
    sp->n_hits = 0;
    sp->skip_shares = skip_shares;
    topic_match(sp->tree, m->data, m->topic_len, collect_hit, sp);
    int queued = 0;
    for (size_t i = 0; i < sp->n_hits; i++) queued += deliver_one(b, sp->hits[i], m, from);
    return queued;
}

int broker_publish(struct broker *b, struct space *sp, struct msg *m, const struct session *from)
{
    const char *topic = m->data;
    sp->stats.msgs_in++;
    sp->stats.msgs_in_qos[m->qos % 3]++;
    sp->stats.bytes_in_qos[m->qos % 3] += m->payload_len;
    if (m->retain) {
        if (b->cfg.on_retain)
            b->cfg.on_retain(b->cfg.retain_arg, sp->tenant, topic, m->topic_len, msg_payload(m),
                             m->payload_len, m->qos);
        space_retain_set(b, sp, topic, m->topic_len, m->payload_len ? m : NULL);
    }
    int queued = route(b, sp, m, from, b->cfg.cluster != NULL);
    const struct broker_cluster *cl = b->cfg.cluster;
    if (cl) {
        time_t now = time(NULL);
        uint32_t left = !m->expire_at ? 0 : m->expire_at > now ? (uint32_t)(m->expire_at - now) : 1;
        cl->publish(cl->arg, sp->tenant, topic, m->topic_len, msg_payload(m), m->payload_len,
                    msg_props(m), m->props_len, m->qos, m->retain, left);
    }
    return queued;
}

int broker_remote_publish(struct broker *b, const struct broker_remote *r)
{
    ENSURE(r->tlen && r->tlen <= UINT16_MAX && r->qos <= 2, ERR_INVALID);
    struct msg *m = msg_new((const uint8_t *)r->topic, r->tlen, r->payload, r->plen, r->qos,
                            r->retain, r->props, r->props_len);
    ENSURE(m, ERR_NOMEM);
    if (r->expiry) m->expire_at = time(NULL) + r->expiry;
    int queued = 0;
    struct space *sp = space_find(b, r->tenant);
    if (!sp) { /* no client of that tenant ever connected here */
        msg_unref(m);
        return 0;
    }
    space_lock(b, sp);
    if (r->group)
        queued = share_deliver(b, sp, r->group, r->filter, r->flen, m);
    else
        queued = route(b, sp, m, NULL, true);
    msg_unref(m); /* under the lock: the queues it went into share its count */
    space_unlock(sp);
    return queued;
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
        if (!s->subs[i].share &&
            topic_matches(s->subs[i].filter, s->subs[i].len, m->data, m->topic_len) &&
            s->subs[i].qos > best)
            best = s->subs[i].qos;
    struct delivery d = {m->qos < best ? m->qos : (uint8_t)best, false, 0, NULL};
    if (best >= 0 && session_may_read(s, m)) session_enqueue(b, s, m, &d);
}

static uint16_t next_packet_id(struct session *s)
{
    if (++s->next_id == 0) s->next_id = 1;
    return s->next_id;
}

/* The properties of a PUBLISH to a 5.0 client: what the message carried,
 * the time left of its expiry, and the identifiers of the matching
 * subscriptions. */
static void publish_props(struct mqtt_props *pr, const struct qitem *it, time_t now)
{
    const struct msg *m = it->msg;
    pr->tail = msg_props(m);
    pr->tail_len = m->props_len;
    if (m->expire_at) {
        pr->has |= 1ull << MQTT_PROP_MESSAGE_EXPIRY;
        pr->message_expiry = m->expire_at > now ? (uint32_t)(m->expire_at - now) : 1;
    }
    pr->sub_ids = it->sub_ids;
    pr->n_sub_ids = it->n_ids;
}

/* Whether a Topic Alias keeps this PUBLISH within the client's Maximum
 * Packet Size: the most it adds is its own 3 bytes, when the topic is still
 * sent. Past that the PUBLISH goes without one (an alias assigned but never
 * sent would be unknown to the client). */
static bool alias_fits(const struct client *c, const struct mqtt_publish *p, struct mqtt_props *pr)
{
    if (!c->max_packet_out) return true;
    pr->has |= 1ull << MQTT_PROP_TOPIC_ALIAS;
    pr->topic_alias = UINT16_MAX;
    size_t n = mqtt_publish_size(p->topic.len, p->payload_len, p->qos, mqtt_props_wire_size(pr));
    pr->has &= ~(1ull << MQTT_PROP_TOPIC_ALIAS);
    pr->topic_alias = 0;
    return n <= c->max_packet_out;
}

/* A 5.0 PUBLISH with properties (message expiry, subscription ids, those
 * the publisher sent, a Topic Alias) or under a Maximum Packet Size; kept
 * out of send_publish so that the common case has no property list on its
 * stack. Returns 1 without writing it when it exceeds that size. */
static __attribute__((noinline)) int send_publish_props(struct client *c, const struct qitem *it,
                                                        struct mqtt_publish *p, time_t now)
{
    struct mqtt_props pr;
    memset(&pr, 0, sizeof pr);
    publish_props(&pr, it, now);
    if (c->max_packet_out && mqtt_publish_size(p->topic.len, p->payload_len, p->qos,
                                               mqtt_props_wire_size(&pr)) > c->max_packet_out)
        return 1;
    bool send_topic = true;
    uint16_t alias = alias_fits(c, p, &pr)
                         ? alias_out(c, (const char *)p->topic.p, p->topic.len, &send_topic)
                         : 0;
    if (alias) {
        pr.has |= 1ull << MQTT_PROP_TOPIC_ALIAS;
        pr.topic_alias = alias;
        if (!send_topic) p->topic.len = 0;
    }
    p->props = &pr;
    return mqtt_encode_publish(&c->out, p);
}

/* Writes one PUBLISH for c. Returns 1 without writing it when it exceeds
 * the client's Maximum Packet Size (it counts as delivered, 3.1.2.11.4). */
static int send_publish(struct client *c, const struct qitem *it, bool dup, time_t now)
{
    size_t tlen;
    const char *topic = devtopic_out(c->session, it->msg->data, it->msg->topic_len, &tlen);
    struct mqtt_publish p = {
        .qos = it->qos,
        .dup = dup || it->maybe_sent,
        .retain = it->retain,
        .topic = {(const uint8_t *)topic, (uint16_t)tlen},
        .packet_id = it->packet_id,
        .payload = msg_payload(it->msg),
        .payload_len = it->msg->payload_len,
    };
    if (!client_v5(c)) return mqtt_encode_publish(&c->out, &p);
    bool plain = !it->msg->props_len && !it->msg->expire_at && !it->n_ids && !alias_out_enabled(c);
    if (!plain || c->max_packet_out) return send_publish_props(c, it, &p, now);
    p.props = &mqtt_props_none; /* the common case: no properties at all */
    return mqtt_encode_publish(&c->out, &p);
}

static int send_pubrel(struct client *c, uint16_t id)
{
    return mqtt_encode_ack(&c->out, MQTT_PUBREL, id, 0, client_v5(c) ? &mqtt_props_none : NULL);
}

/* Sends one in-flight item again after a reconnect: PUBREL for a QoS 2
 * message the client has received, else the PUBLISH with DUP set. */
static int resend_one(struct client *c, struct qitem *it, time_t now)
{
    it->held = false;
    if (it->state == Q_WAIT_PUBCOMP) return send_pubrel(c, it->packet_id);
    int rc = send_publish(c, it, true, now);
    return rc < 0 ? rc : 0;
}

/* Resends what is in flight after a reconnect, as much of it as the
 * client's Receive Maximum allows (4.9: unacknowledged QoS 1 and 2 messages
 * count, resent or not); the rest is held and goes out as acknowledgements
 * make room (resend_held). */
int broker_resend_inflight(struct broker *b, struct client *c)
{
    (void)b;
    struct session *s = c->session;
    time_t now = time(NULL);
    unsigned n = 0;
    s->held_inflight = false;
    for (struct qitem *it = s->inflight.head; it; it = it->next) {
        if (n++ >= c->inflight_max) {
            it->held = true;
            s->held_inflight = true;
            continue;
        }
        GUARD(resend_one(c, it, now));
    }
    return 0;
}

/* Resends held in-flight items while fewer than the client's Receive
 * Maximum are out unacknowledged. */
static int resend_held(struct client *c, time_t now)
{
    struct session *s = c->session;
    unsigned out = 0;
    for (struct qitem *it = s->inflight.head; it; it = it->next)
        if (!it->held) out++;
    s->held_inflight = false;
    for (struct qitem *it = s->inflight.head; it; it = it->next) {
        if (!it->held) continue;
        if (out >= c->inflight_max) {
            s->held_inflight = true;
            break;
        }
        GUARD(resend_one(c, it, now));
        out++;
    }
    return 0;
}

void broker_say_goodbye(struct client *c, uint8_t reason)
{
    if (!client_v5(c) || c->state != CLIENT_ACTIVE || c->said_goodbye) return;
    c->said_goodbye = mqtt_encode_disconnect(&c->out, reason, &mqtt_props_none) == 0;
}

uint8_t broker_close_reason(const struct client *c, int rc)
{
    if (c->close_reason) return c->close_reason;
    switch (rc) {
    case ERR_MALFORMED: return MQTT_RC_MALFORMED;
    case ERR_PROTO: return MQTT_RC_PROTOCOL_ERROR;
    case ERR_TOO_LARGE: return MQTT_RC_PACKET_TOO_LARGE;
    case ERR_LIMIT: return MQTT_RC_QUOTA_EXCEEDED;
    case ERR_NOT_AUTHORIZED: return MQTT_RC_NOT_AUTHORIZED;
    default: return MQTT_RC_UNSPECIFIED;
    }
}

/* c was kicked: a 5.0 client is told why (0x87 unless the kick said). */
static int kicked(struct client *c)
{
    broker_say_goodbye(c, c->close_reason ? c->close_reason : MQTT_RC_NOT_AUTHORIZED);
    return ERR_CLOSED;
}

/* Writes one queued item; it moves in flight, or is done with. */
static int drain_one(struct broker *b, struct client *c, struct qitem *it, time_t now)
{
    struct session *s = c->session;
    bool assigned = it->packet_id != 0; /* a stored QoS 2 item: id committed first */
    if (it->qos > 0 && !assigned) it->packet_id = next_packet_id(s);
    struct space *sp = s->space;
    int rc = send_publish(c, it, false, now);
    if (rc < 0) {
        item_done(b, sp, it);
        return rc;
    }
    if (rc == 1) {
        sp->stats.msgs_too_large++;
        item_done(b, sp, it);
        return 0;
    }
    sp->stats.msgs_out++;
    sp->stats.msgs_out_qos[it->qos % 3]++;
    sp->stats.bytes_out_qos[it->qos % 3] += it->msg->payload_len;
    if (it->qos == 0) {
        qitem_free(it);
    } else {
        it->state = it->qos == 1 ? Q_WAIT_PUBACK : Q_WAIT_PUBREC;
        if (!assigned) persist_item_upd(b, sp, it);
        qlist_push(&s->inflight, it);
    }
    return 0;
}

/* Stored QoS 2 messages at the head of s's queue get their packet ids (as
 * many as the in-flight window takes), journaled; they go out after the
 * commit, so a restart resends each with the id the receiver may already
 * hold (exactly once across a crash). */
static void assign_ahead(struct broker *b, struct client *c, struct session *s)
{
    unsigned room = c->inflight_max > s->inflight.count ? c->inflight_max - s->inflight.count : 0;
    for (struct qitem *it = s->queue.head; it && room; it = it->next, room--) {
        if (it->qos != 2 || !it->seq || it->packet_id) break;
        it->packet_id = next_packet_id(s);
        it->state = Q_WAIT_PUBREC;
        persist_item_upd(b, s->space, it);
        it->jseq = s->space->jseq;
    }
    persist_await(b, c);
}

int broker_drain(struct broker *b, struct client *c)
{
    int rc = 0;
    struct space *sp = c->space;
    if (!sp) return 0; /* never connected: nothing to send */
    space_lock(b, sp);
    if (c->kicked) {
        rc = kicked(c);
        goto out;
    }
    struct session *s = c->session;
    if (!s || c->state != CLIENT_ACTIVE) goto out;
    GUARD_GOTO(rc, persist_release_acks(b, c), out);
    if (s->gated || persist_suback_pending(c)) goto out;
    if (s->resend_pending) {
        s->resend_pending = false;
        GUARD_GOTO(rc, broker_resend_inflight(b, c), out);
    }
    time_t now = time(NULL);
    if (s->held_inflight) GUARD_GOTO(rc, resend_held(c, now), out);
    while (s->queue.head && buf_used(&c->out) < DRAIN_HIGH_WATER) {
        struct qitem *it = s->queue.head;
        if (it->qos > 0 && s->inflight.count >= c->inflight_max) break;
        /* A stored QoS 2 message goes out once stored (exactly once across
         * a crash); QoS 1 at once: a crash before the commit loses nothing
         * acknowledged (its publisher has no PUBACK yet and sends it again),
         * and one acknowledged before the commit is never written at all. */
        if (it->qos == 2 && it->jseq > sp->durable_seq) {
            persist_await(b, c);
            break;
        }
        if (it->qos == 2 && it->seq && !it->packet_id) {
            assign_ahead(b, c, s);
            break;
        }
        qlist_pop(&s->queue);
        if (msg_expired(it->msg, now)) {
            sp->stats.msgs_expired++;
            item_done(b, sp, it);
            continue;
        }
        GUARD_GOTO(rc, drain_one(b, c, it, now), out);
    }
out:
    space_unlock(sp);
    return rc;
}

void session_will_fire(struct broker *b, struct session *s)
{
    if (s->will && s->will_expiry) s->will->expire_at = time(NULL) + s->will_expiry;
    if (s->will) ignore_result(broker_publish(b, s->space, s->will, NULL));
    msg_unref(s->will);
    s->will = NULL;
    s->will_at = 0;
}

void session_end(struct broker *b, struct session *s)
{
    if (s->will_at) session_will_fire(b, s);
    session_free(b, s);
}

/* The connection of s ended abnormally: its will goes out now, or after its
 * delay when the session outlives the connection (a reconnect within the
 * delay cancels it, 3.1.3.2.2). */
static void will_on_close(struct broker *b, struct session *s, time_t now)
{
    if (!s->will) return;
    if (!s->will_delay || !s->expiry) {
        session_will_fire(b, s);
        return;
    }
    /* Whole seconds, rounded up: never before the delay. */
    uint32_t delay = s->will_delay < s->expiry ? s->will_delay : s->expiry;
    s->will_at = now + delay + 1;
}

void broker_close(struct broker *b, struct client *c, bool abnormal)
{
    const struct broker_cluster *cl = b->cfg.cluster;
    if (c->claimed && cl && cl->claim_cancel) cl->claim_cancel(cl->claim_arg, c);
    /* A CONNECT still waiting for the cluster has no space yet: a session
     * handed over to it goes to its tenant's. */
    struct space *sp = c->space     ? c->space
                       : c->claimed ? space_get(b, c->claimed->who.tenant)
                                    : NULL;
    if (!sp) {
        claim_end(b, c); /* out of memory: the handed-over session is dropped */
        alias_free(c);
        c->state = CLIENT_GONE;
        return;
    }
    space_lock(b, sp);
    c->space = sp;
    claim_end(b, c);
    struct session *s = c->session;
    time_t now = time(NULL);
    if (s && s->client == c) {
        sp->stats.clients--;
        s->client = NULL;
        if ((abnormal || c->will_on_disconnect) && !c->kicked) will_on_close(b, s, now);
        if (!s->will_at) {
            msg_unref(s->will);
            s->will = NULL;
        }
        if (s->expiry == 0) {
            session_end(b, s);
        } else {
            s->offline_since = now;
            persist_session(b, s);
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
            s->offline_since = now;
        }
    }
    alias_free(c);
    persist_client_gone(b, c);
    c->session = NULL;
    c->state = CLIENT_GONE;
    space_unlock(sp);
}

struct expire_ctx {
    struct broker *b;
    struct session **v;
    size_t n, cap;
    time_t now;
};

/* Fires due delayed wills and collects sessions past their expiry. */
static void collect_expired(const char *key, void *value, void *arg)
{
    (void)key;
    struct expire_ctx *e = arg;
    struct session *s = value;
    if (s->client || !s->offline_since) return;
    if (s->will_at && e->now >= s->will_at) session_will_fire(e->b, s);
    /* Whole seconds: it ends after its interval, never before. */
    if (s->expiry == SESSION_FOREVER || e->now - s->offline_since <= (time_t)s->expiry) return;
    if (e->n == e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 16;
        struct session **v = realloc(e->v, cap * sizeof *v);
        if (!v) return; /* the rest expire on a later sweep */
        e->v = v;
        e->cap = cap;
    }
    e->v[e->n++] = s;
}

static void expire_space(struct broker *b, struct space *sp, void *arg)
{
    (void)b;
    struct expire_ctx *e = arg;
    size_t first = e->n;
    map_each(&sp->sessions, collect_expired, e);
    for (size_t i = first; i < e->n; i++) session_end(e->b, e->v[i]);
}

int broker_expire_sessions(struct broker *b, time_t now)
{
    struct expire_ctx e = {b, NULL, 0, 0, now};
    spaces_each(b, expire_space, &e);
    free(e.v);
    return (int)e.n;
}

/* ---- authorization changes ---- */

struct refresh_ctx {
    struct broker *b;
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
        session_del_sub(b, s, sub);
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
    refresh_session(arg, value);
}

int broker_acl_refresh(struct broker *b, const char *tenant)
{
    struct refresh_ctx r = {b, 0};
    struct space *sp = b->cfg.acl_compile ? space_find(b, tenant) : NULL;
    if (!sp) return 0;
    space_lock(b, sp);
    map_each(&sp->sessions, refresh_cb, &r);
    space_unlock(sp);
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
        s->client->close_reason = MQTT_RC_NOT_AUTHORIZED;
        k->b->cfg.wake(s->client);
        k->n++;
    }
}

static void kick_space(struct broker *b, struct space *sp, void *arg)
{
    (void)b;
    map_each(&sp->sessions, kick_cb, arg);
}

int broker_kick_where(struct broker *b, bool (*pred)(const struct auth_result *who, void *arg),
                      void *arg)
{
    struct kick_ctx k = {b, pred, arg, 0};
    spaces_each(b, kick_space, &k);
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

_Static_assert(sizeof(struct broker_stats) % sizeof(uint64_t) == 0,
               "struct broker_stats holds uint64_t counters only");

void stats_add(struct broker_stats *sum, const struct space *sp)
{
    const uint64_t *from = (const uint64_t *)&sp->stats;
    uint64_t *to = (uint64_t *)sum;
    for (size_t i = 0; i < sizeof *sum / sizeof *to; i++) to[i] += from[i];
    sum->sessions += sp->sessions.count;
}

static void stats_space(struct broker *b, struct space *sp, void *arg)
{
    (void)b;
    stats_add(arg, sp);
}

void broker_stats(struct broker *b, struct broker_stats *st)
{
    memset(st, 0, sizeof *st);
    spaces_each(b, stats_space, st);
    st->lock_waits = atomic_load_explicit(&b->lock_waits, memory_order_relaxed);
    st->lock_wait_ns = atomic_load_explicit(&b->lock_wait_ns, memory_order_relaxed);
}

/* The first packet must be a CONNECT (its ClientId rules, 3.1's included,
 * are handle_connect's). */
static int dispatch_first(struct broker *b, struct client *c, const struct mqtt_packet *p,
                          time_t now)
{
    ENSURE(p->type == MQTT_CONNECT, ERR_PROTO);
    return handle_connect(b, c, p, now);
}

/* A 5.0 DISCONNECT may set a new Session Expiry Interval, but not raise it
 * from 0 (3.14.2.2.2), and 0x04 asks for the will to go out. */
static int handle_disconnect(struct broker *b, struct client *c, const struct mqtt_packet *p)
{
    struct session *s = c->session;
    if (client_v5(c) && mqtt_props_has(&p->props, MQTT_PROP_SESSION_EXPIRY)) {
        uint32_t v = p->props.session_expiry;
        if (s->expiry_was_zero && v) {
            c->close_reason = MQTT_RC_PROTOCOL_ERROR;
            return ERR_PROTO;
        }
        long cap = b->cfg.max_session_expiry;
        s->expiry = cap && v > (unsigned long)cap ? (uint32_t)cap : v;
        persist_session(b, s);
    }
    if (client_v5(c) && p->reason == MQTT_RC_DISCONNECT_WITH_WILL) {
        c->will_on_disconnect = true;
    } else {
        msg_unref(s->will); /* a normal DISCONNECT discards the will */
        s->will = NULL;
    }
    return ERR_CLOSED;
}

/* certmq knows no extended authentication method (4.12). */
static int handle_auth(struct client *c)
{
    c->close_reason = MQTT_RC_BAD_AUTH_METHOD;
    return ERR_PROTO;
}

int broker_handle(struct broker *b, struct client *c, const struct mqtt_packet *p, time_t now)
{
    if (c->state == CLIENT_NEW) return dispatch_first(b, c, p, now);
    struct space *sp = c->space;
    if (!sp) return ERR_CLOSED; /* its CONNECT was refused */
    int rc = 0;
    space_lock(b, sp);
    if (c->kicked) {
        rc = kicked(c);
        goto out;
    }
    if (!c->session) {
        rc = ERR_CLOSED;
        goto out;
    }
    switch (p->type) {
    case MQTT_PUBLISH: rc = handle_publish(b, c, p); break;
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBREL:
    case MQTT_PUBCOMP: rc = handle_ack(b, c, p->type, p->packet_id, p->reason); break;
    case MQTT_SUBSCRIBE: rc = handle_subscribe(b, c, p); break;
    case MQTT_UNSUBSCRIBE: rc = handle_unsubscribe(b, c, p); break;
    case MQTT_PINGREQ: rc = mqtt_encode_pingresp(&c->out); break;
    case MQTT_DISCONNECT: rc = handle_disconnect(b, c, p); break;
    case MQTT_AUTH: rc = handle_auth(c); break;
    default: rc = ERR_PROTO; break; /* CONNECT twice, or server-to-client packets */
    }
out:
    space_unlock(sp);
    return rc;
}
