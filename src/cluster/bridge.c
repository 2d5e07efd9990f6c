/* The NATS side of cross-node messaging (see bridge.h). Two connections:
 * "pub" publishes every local message and holds the plain interest
 * subscriptions, with no echo so a node never hears its own messages;
 * "queue" holds the shared subscriptions' queue groups and does hear them,
 * as the publishing node may be the group member NATS picks. libnats
 * delivers on one thread for both (the global delivery pool of size 1), in
 * the order messages came off the sockets. A message that matches several
 * filters of a node comes once per subscription: the second copy has the
 * same (origin, sequence) and is dropped. Outgoing messages go through a
 * queue to one sender thread (in order; a stalled NATS connection blocks
 * it, not the broker lock). Incoming ones are parsed and queued by the
 * libnats thread and routed by the first worker (bridge_route), so no
 * libnats thread waits for the broker lock. bridge->lock guards the maps,
 * the scratch buffers and the duplicate table; in_lock and out_lock the
 * two queues. The broker calls in with its lock held; no bridge lock is
 * held while calling the broker. */
#include "cluster/bridge.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nats/nats.h>
#include <openssl/rand.h>

#include "cluster/envelope.h"
#include "cluster/subject.h"
#include "core/buf.h"
#include "core/config.h"
#include "core/log.h"
#include "core/map.h"
#include "core/metrics.h"
#include "core/text.h"

#define MAX_SERVERS  CONFIG_MAX_CLUSTER_SERVERS
#define SEEN_SLOTS   64 /* origins remembered for duplicates (least recently seen goes) */
#define TENANT_CAP   256
#define ENV_KEEP     (64 * 1024) /* envelope scratch kept between publishes */
#define STOP_WAIT_US 1000

/* The NATS subscriptions of one (tenant, filter): two when the filter
 * ends in "/#" (the parent level too). */
struct interest {
    unsigned refs; /* session subscriptions to it on this node */
    natsSubscription *sub[2];
};

/* A shared subscription's queue group; the closure of its callbacks, freed
 * when the last of its subscriptions completed. */
struct qsub {
    struct bridge *br;
    struct qsub *prev, *next; /* br->qsubs: not yet completed */
    unsigned live;            /* subscriptions not yet completed */
    natsSubscription *sub[2];
    char *tenant, *group, *filter;
    size_t flen;
};

struct seen {
    uint64_t origin, seq, used;
};

struct bridge {
    natsConnection *pub, *queue;
    _Atomic(struct broker *) broker;
    struct broker_cluster ops;
    long max_pending;
    size_t max_subject; /* longest subject (and queue name) sent to NATS */
    atomic_bool stopping;
    atomic_int inflight;     /* callbacks that may still queue or notify */
    pthread_mutex_t in_lock; /* guards the queue to the workers and notify */
    struct inmsg *in_head, *in_tail;
    long in_count;
    void (*notify)(void *arg);
    void *notify_arg;
    pthread_mutex_t out_lock; /* guards the queue to the sender thread */
    pthread_cond_t out_cond;
    struct outmsg *out_head, *out_tail;
    long out_count;
    bool out_stop;
    pthread_t sender;
    bool sender_running;
    pthread_mutex_t lock;
    struct map interest; /* tenant \x01 filter -> struct interest */
    struct map groups;   /* tenant \x01 group \x01 filter -> struct qsub */
    struct qsub *qsubs;
    struct buf env;
    char *subject;
    uint64_t origin, seq, seen_clock;
    struct seen seen[SEEN_SLOTS];
};

/* ---- connections ---- */

static void on_disconnected(natsConnection *nc, void *closure)
{
    log_warn("cluster: %s connection to NATS lost; reconnecting (messages between nodes are "
             "lost until it is back)",
             (const char *)closure);
}

/* The first connection, made in the background (NATS was not up at start). */
static void on_connected(natsConnection *nc, void *closure)
{
    log_info("cluster: %s connection to NATS made", (const char *)closure);
}

static void on_reconnected(natsConnection *nc, void *closure)
{
    log_info("cluster: %s connection to NATS back", (const char *)closure);
}

static void on_async_error(natsConnection *nc, natsSubscription *sub, natsStatus s, void *closure)
{
    log_warn("cluster: NATS: %s", natsStatus_GetText(s));
    if (s == NATS_SLOW_CONSUMER) metrics_cluster(METRICS_CLUSTER_LOST);
}

/* Splits "a,b,c" into at most MAX_SERVERS URLs (pointers into copy). */
static int split_servers(char *copy, const char **urls, int *n, char *err, size_t errlen)
{
    *n = 0;
    for (char *save = NULL, *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        while (*t == ' ') t++;
        if (strncmp(t, "nats://", 7) != 0 || !t[7] || *n == MAX_SERVERS) {
            char shown[CONFIG_CLUSTER_LEN];
            text_url_redact(t, strlen(t), shown, sizeof shown);
            snprintf(err, errlen, "cluster: '%s' is not a nats://host:port URL (at most %d)", shown,
                     MAX_SERVERS);
            return ERR_INVALID;
        }
        urls[(*n)++] = t;
    }
    if (*n) return 0;
    snprintf(err, errlen, "cluster: no NATS server given");
    return ERR_INVALID;
}

static int options_new(const struct bridge_config *cfg, const char **urls, int n, bool pub,
                       natsOptions **out)
{
    natsOptions *o = NULL;
    const char *role = pub ? "publishing" : "queue";
    natsStatus s = natsOptions_Create(&o);
    if (s == NATS_OK) s = natsOptions_SetServers(o, urls, n);
    if (s == NATS_OK) s = natsOptions_SetName(o, cfg->node_id);
    if (s == NATS_OK) s = natsOptions_SetNoEcho(o, pub);
    if (s == NATS_OK) s = natsOptions_SetMaxReconnect(o, -1);
    if (s == NATS_OK) s = natsOptions_SetReconnectWait(o, cfg->reconnect_wait);
    if (s == NATS_OK) s = natsOptions_SetReconnectBufSize(o, (int)cfg->reconnect_buffer);
    /* With a callback, a first connect that fails returns at once and goes
     * on in the background (without one it would retry here, forever). */
    if (s == NATS_OK) s = natsOptions_SetRetryOnFailedConnect(o, true, on_connected, (void *)role);
    if (s == NATS_OK) s = natsOptions_UseGlobalMessageDelivery(o, true);
    if (s == NATS_OK) s = natsOptions_SetDisconnectedCB(o, on_disconnected, (void *)role);
    if (s == NATS_OK) s = natsOptions_SetReconnectedCB(o, on_reconnected, (void *)role);
    if (s == NATS_OK) s = natsOptions_SetErrorHandler(o, on_async_error, NULL);
    if (s != NATS_OK) {
        natsOptions_Destroy(o);
        return ERR_INTERNAL;
    }
    *out = o;
    return 0;
}

static int connect_one(const struct bridge_config *cfg, const char **urls, int n, bool pub,
                       natsConnection **out, char *err, size_t errlen)
{
    char shown[CONFIG_CLUSTER_LEN]; /* the list without passwords */
    text_url_redact(cfg->servers, strlen(cfg->servers), shown, sizeof shown);
    natsOptions *o;
    GUARD(options_new(cfg, urls, n, pub, &o));
    natsStatus s = natsConnection_Connect(out, o);
    natsOptions_Destroy(o);
    if (s == NATS_NOT_YET_CONNECTED) {
        log_warn("cluster: NATS at %s not reachable yet; retrying in the background", shown);
        return 0;
    }
    if (s == NATS_OK) return 0;
    snprintf(err, errlen, "cluster: cannot connect to %s: %s", shown, natsStatus_GetText(s));
    return ERR_IO;
}

static int bridge_connect(struct bridge *br, const struct bridge_config *cfg, char *err,
                          size_t errlen)
{
    char *copy = strdup(cfg->servers);
    const char *urls[MAX_SERVERS];
    int n, rc = ERR_NOMEM;
    if (!copy) goto out;
    rc = split_servers(copy, urls, &n, err, errlen);
    if (rc < 0) goto out;
    if (nats_SetMessageDeliveryPoolSize(1) != NATS_OK) {
        rc = ERR_INTERNAL;
        goto out;
    }
    rc = connect_one(cfg, urls, n, true, &br->pub, err, errlen);
    if (rc == 0) rc = connect_one(cfg, urls, n, false, &br->queue, err, errlen);
out:
    free(copy);
    return rc;
}

/* ---- from NATS ---- */

/* Was (origin, seq) seen already? Remembers it. Under br->lock. */
static bool seen_before(struct bridge *br, uint64_t origin, uint64_t seq)
{
    struct seen *slot = &br->seen[0];
    for (int i = 0; i < SEEN_SLOTS; i++) {
        struct seen *s = &br->seen[i];
        if (s->used && s->origin == origin) {
            s->used = ++br->seen_clock;
            if (seq <= s->seq) return true;
            s->seq = seq;
            return false;
        }
        if (s->used < slot->used) slot = s;
    }
    *slot = (struct seen){origin, seq, ++br->seen_clock};
    return false;
}

/* Reads msg into r (borrowing from msg and the thread's buffers). */
static int read_msg(natsMsg *msg, struct broker_remote *r, struct envelope *e)
{
    static _Thread_local char tenant[TENANT_CAP], topic[65536 + 1];
    const char *subj = natsMsg_GetSubject(msg);
    size_t tlen;
    GUARD(subject_to_topic(subj, strlen(subj), tenant, sizeof tenant, topic, sizeof topic, &tlen));
    int n = natsMsg_GetDataLength(msg);
    ENSURE(n >= 0, ERR_MALFORMED);
    GUARD(envelope_parse((const uint8_t *)natsMsg_GetData(msg), (size_t)n, e));
    *r = (struct broker_remote){
        .tenant = tenant,
        .topic = topic,
        .tlen = tlen,
        .payload = e->payload,
        .plen = e->payload_len,
        .props = e->props,
        .props_len = e->props_len,
        .qos = e->qos,
        .retain = e->retain,
        .expiry = e->expiry,
    };
    return 0;
}

/* A message from NATS waiting for a worker to route it (all in one block). */
struct inmsg {
    struct inmsg *next;
    struct broker_remote r; /* its pointers are into data */
    char data[];
};

static struct inmsg *inmsg_new(const struct broker_remote *r)
{
    size_t tn = strlen(r->tenant) + 1, gn = r->group ? strlen(r->group) + 1 : 0;
    size_t fn = r->group ? r->flen + 1 : 0;
    struct inmsg *m = malloc(sizeof *m + tn + r->tlen + 1 + r->props_len + r->plen + gn + fn);
    if (!m) return NULL;
    m->next = NULL;
    m->r = *r;
    char *p = m->data;
    m->r.tenant = memcpy(p, r->tenant, tn);
    p += tn;
    m->r.topic = memcpy(p, r->topic, r->tlen);
    p[r->tlen] = '\0';
    p += r->tlen + 1;
    m->r.props = r->props_len ? memcpy(p, r->props, r->props_len) : NULL;
    p += r->props_len;
    m->r.payload = r->plen ? memcpy(p, r->payload, r->plen) : NULL;
    p += r->plen;
    if (r->group) {
        m->r.group = memcpy(p, r->group, gn);
        p += gn;
        m->r.filter = memcpy(p, r->filter, r->flen);
        p[r->flen] = '\0';
    }
    return m;
}

/* Queues one message for the workers unless the bridge is stopping or the
 * queue is full; tells them when it was empty. The broker lock is not
 * taken here: a worker routes it (bridge_route). */
static void deliver(struct bridge *br, const struct broker_remote *r)
{
    atomic_fetch_add(&br->inflight, 1);
    struct inmsg *m = atomic_load(&br->stopping) ? NULL : inmsg_new(r);
    bool first = false, full = false;
    if (m) {
        pthread_mutex_lock(&br->in_lock);
        full = br->in_count >= br->max_pending;
        if (!full) {
            first = !br->in_head;
            if (br->in_tail)
                br->in_tail->next = m;
            else
                br->in_head = m;
            br->in_tail = m;
            br->in_count++;
        }
        if (first && br->notify) br->notify(br->notify_arg);
        pthread_mutex_unlock(&br->in_lock);
    }
    if (!m || full) {
        free(m);
        if (!atomic_load(&br->stopping)) metrics_cluster(METRICS_CLUSTER_LOST);
    }
    atomic_fetch_sub(&br->inflight, 1);
}

void bridge_route(struct bridge *br)
{
    pthread_mutex_lock(&br->in_lock);
    struct inmsg *m = br->in_head;
    br->in_head = br->in_tail = NULL;
    br->in_count = 0;
    pthread_mutex_unlock(&br->in_lock);
    struct broker *b = atomic_load(&br->broker);
    while (m) {
        struct inmsg *next = m->next;
        if (b) {
            metrics_cluster(METRICS_CLUSTER_IN);
            ignore_result(broker_remote_publish(b, &m->r));
        }
        free(m);
        m = next;
    }
}

void bridge_set_notify(struct bridge *br, void (*notify)(void *arg), void *arg)
{
    pthread_mutex_lock(&br->in_lock);
    br->notify = notify;
    br->notify_arg = arg;
    if (br->in_head && notify) notify(arg);
    pthread_mutex_unlock(&br->in_lock);
}

static void on_plain(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    struct bridge *br = closure;
    struct broker_remote r;
    struct envelope e;
    if (read_msg(msg, &r, &e) < 0) {
        metrics_cluster(METRICS_CLUSTER_BAD);
        log_debug("cluster: a malformed message on '%s' dropped", natsMsg_GetSubject(msg));
        goto out;
    }
    pthread_mutex_lock(&br->lock);
    bool dup = seen_before(br, e.origin, e.seq);
    pthread_mutex_unlock(&br->lock);
    if (dup)
        metrics_cluster(METRICS_CLUSTER_DUPLICATE);
    else
        deliver(br, &r);
out:
    natsMsg_Destroy(msg);
}

static void on_group(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    struct qsub *q = closure;
    struct broker_remote r;
    struct envelope e;
    if (read_msg(msg, &r, &e) < 0 || strcmp(r.tenant, q->tenant) != 0) {
        metrics_cluster(METRICS_CLUSTER_BAD);
        goto out;
    }
    r.group = q->group;
    r.filter = q->filter;
    r.flen = q->flen;
    deliver(q->br, &r);
out:
    natsMsg_Destroy(msg);
}

/* ---- to NATS ---- */

/* A message for NATS waiting for the sender thread: its subject (NUL
 * terminated), then its envelope. */
struct outmsg {
    struct outmsg *next;
    size_t slen, len;
    char data[];
};

/* The sender thread: publishes the queued messages in their order, so a
 * stalled NATS connection blocks this thread, never the broker lock. */
static void *sender_main(void *arg)
{
    struct bridge *br = arg;
    pthread_mutex_lock(&br->out_lock);
    for (;;) {
        while (!br->out_head && !br->out_stop) pthread_cond_wait(&br->out_cond, &br->out_lock);
        if (br->out_stop) break;
        struct outmsg *m = br->out_head;
        br->out_head = br->out_tail = NULL;
        br->out_count = 0;
        pthread_mutex_unlock(&br->out_lock);
        while (m) {
            struct outmsg *next = m->next;
            natsStatus s =
                natsConnection_Publish(br->pub, m->data, m->data + m->slen + 1, (int)m->len);
            metrics_cluster(s == NATS_OK ? METRICS_CLUSTER_OUT : METRICS_CLUSTER_LOST);
            if (s != NATS_OK)
                log_debug("cluster: a message not published: %s", natsStatus_GetText(s));
            free(m);
            m = next;
        }
        pthread_mutex_lock(&br->out_lock);
    }
    pthread_mutex_unlock(&br->out_lock);
    return NULL;
}

/* Queues subject and envelope for the sender (copied); false when the
 * queue is full or memory is out. */
static bool send_queue(struct bridge *br, const char *subj, size_t slen, const struct buf *env)
{
    struct outmsg *m = malloc(sizeof *m + slen + 1 + buf_used(env));
    if (!m) return false;
    m->next = NULL;
    m->slen = slen;
    m->len = buf_used(env);
    memcpy(m->data, subj, slen + 1);
    memcpy(m->data + slen + 1, buf_head(env), m->len);
    pthread_mutex_lock(&br->out_lock);
    bool ok = br->out_count < br->max_pending && !br->out_stop;
    if (ok) {
        if (br->out_tail)
            br->out_tail->next = m;
        else
            br->out_head = m;
        br->out_tail = m;
        if (br->out_count++ == 0) pthread_cond_signal(&br->out_cond);
    }
    pthread_mutex_unlock(&br->out_lock);
    if (!ok) free(m);
    return ok;
}

static void bridge_publish(void *arg, const char *tenant, const char *topic, size_t tlen,
                           const uint8_t *payload, size_t plen, const uint8_t *props,
                           size_t props_len, uint8_t qos, bool retain, uint32_t expiry)
{
    struct bridge *br = arg;
    size_t slen;
    pthread_mutex_lock(&br->lock);
    struct envelope e = {qos,   retain,    br->origin, ++br->seq, expiry,
                         props, props_len, payload,    plen};
    buf_consume(&br->env, buf_used(&br->env)); /* the scratch is kept, up to ENV_KEEP */
    if (br->env.cap > ENV_KEEP) buf_free(&br->env);
    int rc = subject_from_topic(tenant, topic, tlen, br->subject, br->max_subject + 1, &slen);
    if (rc == 0) rc = envelope_write(&br->env, &e);
    if (rc == 0 && !send_queue(br, br->subject, slen, &br->env)) rc = ERR_LIMIT;
    pthread_mutex_unlock(&br->lock);
    if (rc == 0) return;
    metrics_cluster(METRICS_CLUSTER_LOST);
    log_debug("cluster: a message of tenant '%s' not published: %s", tenant, err_str(rc));
}

/* Subscribes the subject(s) of filter on nc (queue: a queue group). */
static int subscribe_filter(struct bridge *br, natsConnection *nc, const char *tenant,
                            const char *filter, size_t flen, const char *queue, natsMsgHandler cb,
                            void *closure, natsSubscription *subs[2])
{
    size_t slen;
    bool parent;
    subs[0] = subs[1] = NULL;
    /* A control line beyond the server's max_control_line gets the whole
     * connection closed: such a filter is not subscribed at all. */
    size_t room = br->max_subject + 1 - (queue ? strlen(queue) + 1 : 0);
    ENSURE(!queue || strlen(queue) + 1 < br->max_subject, ERR_LIMIT);
    int rc = subject_from_filter(tenant, filter, flen, br->subject, room, &slen, &parent);
    if (rc == ERR_LIMIT)
        log_warn("cluster: a filter of tenant '%s' is too long for a NATS subject "
                 "(cluster_max_subject): its subscribers get this node's messages only",
                 tenant);
    GUARD(rc);
    for (int i = 0; i < (parent ? 2 : 1); i++) {
        if (i) br->subject[slen - 2] = '\0'; /* "a.>" -> "a": MQTT's a/# takes a too */
        natsStatus s =
            queue ? natsConnection_QueueSubscribe(&subs[i], nc, br->subject, queue, cb, closure)
                  : natsConnection_Subscribe(&subs[i], nc, br->subject, cb, closure);
        if (s != NATS_OK) {
            log_warn("cluster: cannot subscribe to '%s': %s", br->subject, natsStatus_GetText(s));
            return ERR_IO;
        }
        if (natsSubscription_SetPendingLimits(subs[i], (int)br->max_pending, -1) != NATS_OK)
            log_warn("cluster: the pending limit of '%s' could not be set", br->subject);
    }
    return 0;
}

static void unsubscribe_all(natsSubscription *subs[2])
{
    for (int i = 0; i < 2; i++)
        if (subs[i]) {
            natsSubscription_Unsubscribe(subs[i]);
            natsSubscription_Destroy(subs[i]);
            subs[i] = NULL;
        }
}

static int key_of(char *key, size_t cap, const char *tenant, const char *group, const char *filter,
                  size_t flen)
{
    int n = group ? snprintf(key, cap, "%s\x01%s\x01%.*s", tenant, group, (int)flen, filter)
                  : snprintf(key, cap, "%s\x01%.*s", tenant, (int)flen, filter);
    return n < 0 || (size_t)n >= cap ? ERR_LIMIT : n;
}

/* A plain filter's reference count; subscribed on the first. Under lock. */
static void interest_plain(struct bridge *br, const char *key, size_t klen, const char *tenant,
                           const char *filter, size_t flen, bool add)
{
    struct interest *in = map_get(&br->interest, key, klen);
    if (!add) {
        if (!in || --in->refs) return;
        unsubscribe_all(in->sub);
        map_del(&br->interest, key, klen);
        free(in);
        return;
    }
    if (in) {
        in->refs++;
        return;
    }
    in = calloc(1, sizeof *in);
    if (!in || map_put(&br->interest, key, klen, in, NULL) < 0) {
        free(in);
        log_warn("cluster: out of memory: filter of tenant '%s' not subscribed", tenant);
        return;
    }
    in->refs = 1;
    if (subscribe_filter(br, br->pub, tenant, filter, flen, NULL, on_plain, br, in->sub) < 0)
        unsubscribe_all(in->sub); /* counted still: the unsubscribe finds it */
}

/* libnats is done with one of q's subscriptions (no callback runs now). */
static void qsub_complete(void *closure)
{
    struct qsub *q = closure;
    struct bridge *br = q->br;
    pthread_mutex_lock(&br->lock);
    bool last = --q->live == 0;
    if (last) {
        if (q->prev)
            q->prev->next = q->next;
        else
            br->qsubs = q->next;
        if (q->next) q->next->prev = q->prev;
    }
    pthread_mutex_unlock(&br->lock);
    if (!last) return;
    free(q->tenant);
    free(q->group);
    free(q->filter);
    free(q);
}

static struct qsub *qsub_new(struct bridge *br, const char *tenant, const char *group,
                             const char *filter, size_t flen)
{
    struct qsub *q = calloc(1, sizeof *q);
    if (!q) return NULL;
    q->br = br;
    q->tenant = strdup(tenant);
    q->group = strdup(group);
    q->filter = strndup(filter, flen);
    q->flen = flen;
    if (q->tenant && q->group && q->filter) return q;
    free(q->tenant);
    free(q->group);
    free(q->filter);
    free(q);
    return NULL;
}

/* Subscribes q's queue group; each subscription it got completes once. */
static void qsub_start(struct bridge *br, struct qsub *q)
{
    char *queue = malloc(br->max_subject + 1);
    int rc = queue
                 ? subject_queue(q->tenant, q->group, strlen(q->group), queue, br->max_subject + 1)
                 : ERR_NOMEM;
    if (rc == 0)
        rc = subscribe_filter(br, br->queue, q->tenant, q->filter, q->flen, queue, on_group, q,
                              q->sub);
    free(queue);
    q->next = br->qsubs;
    if (q->next) q->next->prev = q;
    br->qsubs = q;
    for (int i = 0; i < 2; i++)
        if (q->sub[i] && natsSubscription_SetOnCompleteCB(q->sub[i], qsub_complete, q) == NATS_OK)
            q->live++;
    if (rc < 0)
        log_warn("cluster: shared subscription '%s' of tenant '%s' not subscribed", q->group,
                 q->tenant);
}

/* A shared subscription's group: one queue subscription per node. Under lock. */
static void interest_group(struct bridge *br, const char *key, size_t klen, const char *tenant,
                           const char *group, const char *filter, size_t flen, bool add)
{
    struct qsub *q = map_get(&br->groups, key, klen);
    if (!add) {
        if (!q) return;
        map_del(&br->groups, key, klen);
        bool none = q->live == 0;
        unsubscribe_all(q->sub); /* its completions free q */
        if (none) {              /* no completion will come */
            q->live = 1;
            pthread_mutex_unlock(&br->lock);
            qsub_complete(q);
            pthread_mutex_lock(&br->lock);
        }
        return;
    }
    if (q) return;
    q = qsub_new(br, tenant, group, filter, flen);
    if (!q || map_put(&br->groups, key, klen, q, NULL) < 0) {
        if (q) { /* freed by bridge_free */
            q->live = 1;
            q->next = br->qsubs;
            if (q->next) q->next->prev = q;
            br->qsubs = q;
        }
        log_warn("cluster: out of memory: shared subscription of tenant '%s' not subscribed",
                 tenant);
        return;
    }
    qsub_start(br, q);
}

static void bridge_interest(void *arg, const char *tenant, const char *filter, size_t flen,
                            const char *group, bool add)
{
    struct bridge *br = arg;
    char *key = malloc(2 * 65536 + TENANT_CAP);
    int klen = key ? key_of(key, 2 * 65536 + TENANT_CAP, tenant, group, filter, flen) : ERR_NOMEM;
    pthread_mutex_lock(&br->lock);
    if (klen < 0 || atomic_load(&br->stopping))
        ;
    else if (group)
        interest_group(br, key, (size_t)klen, tenant, group, filter, flen, add);
    else
        interest_plain(br, key, (size_t)klen, tenant, filter, flen, add);
    pthread_mutex_unlock(&br->lock);
    free(key);
}

/* ---- life ---- */

int bridge_new(const struct bridge_config *cfg, struct bridge **out, char *err, size_t errlen)
{
    struct bridge *br = calloc(1, sizeof *br);
    ENSURE(br, ERR_NOMEM);
    pthread_mutex_init(&br->lock, NULL);
    pthread_mutex_init(&br->in_lock, NULL);
    pthread_mutex_init(&br->out_lock, NULL);
    pthread_cond_init(&br->out_cond, NULL);
    map_init(&br->interest);
    map_init(&br->groups);
    buf_init(&br->env, 0);
    br->max_pending = cfg->max_pending;
    br->max_subject = (size_t)cfg->max_subject;
    br->ops =
        (struct broker_cluster){.publish = bridge_publish, .interest = bridge_interest, .arg = br};
    br->subject = malloc(br->max_subject + 1);
    int rc = ERR_NOMEM;
    if (br->subject && RAND_bytes((unsigned char *)&br->origin, sizeof br->origin) == 1)
        rc = bridge_connect(br, cfg, err, errlen);
    if (rc == 0) {
        br->sender_running = pthread_create(&br->sender, NULL, sender_main, br) == 0;
        if (!br->sender_running) rc = ERR_INTERNAL;
    }
    if (rc < 0) {
        if (rc == ERR_NOMEM) snprintf(err, errlen, "cluster: out of memory");
        bridge_stop(br);
        bridge_free(br);
        return rc;
    }
    char shown[CONFIG_CLUSTER_LEN];
    text_url_redact(cfg->servers, strlen(cfg->servers), shown, sizeof shown);
    log_info("cluster: node '%s' publishing to NATS at %s", cfg->node_id, shown);
    *out = br;
    return 0;
}

const struct broker_cluster *bridge_cluster(struct bridge *br)
{
    return &br->ops;
}

void bridge_set_claims(struct bridge *br,
                       int (*claim)(void *arg, struct client *c, const char *tenant,
                                    const char *client_id, bool take),
                       void (*cancel)(void *arg, struct client *c), void *arg)
{
    br->ops.claim = claim;
    br->ops.claim_cancel = cancel;
    br->ops.claim_arg = arg;
}

natsConnection *bridge_nats(struct bridge *br)
{
    return br->pub;
}

void bridge_attach(struct bridge *br, struct broker *b)
{
    atomic_store(&br->broker, b);
}

void bridge_stop(struct bridge *br)
{
    if (!br || atomic_exchange(&br->stopping, true)) return;
    while (atomic_load(&br->inflight) > 0) {
        struct timespec ts = {0, STOP_WAIT_US * 1000};
        nanosleep(&ts, NULL);
    }
    pthread_mutex_lock(&br->out_lock);
    br->out_stop = true;
    pthread_cond_signal(&br->out_cond);
    pthread_mutex_unlock(&br->out_lock);
    if (br->sender_running) pthread_join(br->sender, NULL);
    br->sender_running = false;
    if (br->pub) natsConnection_Close(br->pub);
    if (br->queue) natsConnection_Close(br->queue);
}

static void free_interest(void *value)
{
    struct interest *in = value;
    for (int i = 0; i < 2; i++) natsSubscription_Destroy(in->sub[i]);
    free(in);
}

void bridge_free(struct bridge *br)
{
    if (!br) return;
    map_clear(&br->interest, free_interest);
    map_free(&br->interest);
    map_free(&br->groups);         /* the qsubs are on br->qsubs */
    pthread_mutex_lock(&br->lock); /* a completion may be on its way: it waits */
    for (struct qsub *q = br->qsubs; q; q = q->next)
        for (int i = 0; i < 2; i++) {
            natsSubscription_Destroy(q->sub[i]);
            q->sub[i] = NULL;
        }
    pthread_mutex_unlock(&br->lock);
    natsConnection_Destroy(br->pub);
    natsConnection_Destroy(br->queue);
    nats_CloseAndWait(2000); /* every libnats thread (and completion) is over */
    while (br->qsubs) {
        struct qsub *q = br->qsubs;
        br->qsubs = q->next;
        free(q->tenant);
        free(q->group);
        free(q->filter);
        free(q);
    }
    atomic_store(&br->broker, NULL);
    bridge_route(br);      /* frees what is still queued */
    while (br->out_head) { /* not sent before the stop */
        struct outmsg *m = br->out_head;
        br->out_head = m->next;
        free(m);
    }
    buf_free(&br->env);
    free(br->subject);
    pthread_mutex_destroy(&br->lock);
    pthread_mutex_destroy(&br->in_lock);
    pthread_mutex_destroy(&br->out_lock);
    pthread_cond_destroy(&br->out_cond);
    free(br);
}
