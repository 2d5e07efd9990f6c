/* Presence and claims between nodes (see presence.h). Subjects:
 * certmq.hb (heartbeats: incarnation and name), certmq.claim (requests,
 * to every node), and each node's own reply subject. The libnats thread
 * only records heartbeats and queues requests and replies; this module's
 * thread serves them (broker_release, broker_adopt) and sends heartbeats.
 * p->lock guards the members, the pending claims and the queue. */
#include "cluster/presence.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/rand.h>

#include "cluster/claimmsg.h"
#include "core/log.h"

#define SUBJ_HB     "certmq.hb"
#define SUBJ_CLAIM  "certmq.claim"
#define TICK_MS     50
#define NAME_CAP    (CLAIMMSG_NODE_MAX + 1)
#define QUEUE_MAX   65536 /* requests and replies waiting for the thread */
#define MAX_ANSWERS 32    /* answering nodes a claim remembers (not taken from) */

struct member {
    uint64_t inc; /* incarnation: random at each start */
    char name[NAME_CAP];
    uint64_t seen_ms;
    bool live;
};

/* A CONNECT waiting for the other nodes. */
struct pending {
    struct pending *next;
    uint64_t id;
    struct client *c; /* NULL once its connection went */
    unsigned expected, got;
    char *answered[MAX_ANSWERS + 1]; /* nodes that replied: alive (NULL-terminated) */
    bool busy;                       /* being settled by the thread (only it takes k out then) */
    uint64_t deadline_ms;
    char *tenant, *client_id;
    uint8_t *rec; /* the session handed over */
    size_t len;
};

struct inbound {
    struct inbound *next;
    char *reply_to; /* request: where the answer goes (NULL: none wanted) */
    bool is_reply;
    size_t len;
    uint8_t data[];
};

struct presence {
    natsConnection *nc;
    _Atomic(struct broker *) b;
    char node[NAME_CAP];
    uint64_t inc;
    char inbox[48];
    long hb_ms, timeout_ms;
    int (*take_stored)(void *arg, const char *key, size_t klen, const char *const *live,
                       struct buf *out);
    void *take_arg;
    natsSubscription *subs[3];
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct member *members;
    size_t n_members, cap_members;
    struct pending *pending;
    uint64_t next_id;
    struct inbound *in_head, *in_tail;
    size_t in_count;
    bool stop;
    pthread_t thread;
    bool running;
    atomic_bool stopping;
    atomic_int inflight; /* libnats callbacks running */
};

/* A libnats callback runs only while p is not being freed. */
static bool enter(struct presence *p)
{
    atomic_fetch_add(&p->inflight, 1);
    if (!atomic_load(&p->stopping)) return true;
    atomic_fetch_sub(&p->inflight, 1);
    return false;
}

static void leave(struct presence *p)
{
    atomic_fetch_sub(&p->inflight, 1);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- members (heartbeats) ---- */

static void on_hb(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)nc, (void)sub;
    struct presence *p = closure;
    if (!enter(p)) {
        natsMsg_Destroy(msg);
        return;
    }
    const uint8_t *d = (const uint8_t *)natsMsg_GetData(msg);
    int n = natsMsg_GetDataLength(msg);
    if (n < 9 || n > 8 + NAME_CAP - 1) goto out;
    uint64_t inc;
    memcpy(&inc, d, 8);
    pthread_mutex_lock(&p->lock);
    struct member *m = NULL;
    for (size_t i = 0; i < p->n_members && !m; i++)
        if (p->members[i].inc == inc) m = &p->members[i];
    if (!m && p->n_members == p->cap_members) {
        size_t cap = p->cap_members ? p->cap_members * 2 : 8;
        struct member *v = realloc(p->members, cap * sizeof *v);
        if (v) {
            p->members = v;
            p->cap_members = cap;
        }
    }
    if (!m && p->n_members < p->cap_members) {
        m = &p->members[p->n_members++];
        m->inc = inc;
        m->live = false;
        memcpy(m->name, d + 8, (size_t)n - 8);
        m->name[n - 8] = 0;
    }
    if (m) {
        if (!m->live) log_info("cluster: node '%s' is here", m->name);
        m->live = true;
        m->seen_ms = now_ms();
    }
    pthread_mutex_unlock(&p->lock);
out:
    natsMsg_Destroy(msg);
    leave(p);
}

/* Live members now; a silent one is forgotten (lock held). */
static unsigned live_members(struct presence *p, uint64_t now)
{
    unsigned n = 0;
    for (size_t i = 0; i < p->n_members;) {
        struct member *m = &p->members[i];
        if (now - m->seen_ms > (uint64_t)(3 * p->hb_ms)) {
            log_warn("cluster: node '%s' is silent: taken for gone", m->name);
            *m = p->members[--p->n_members];
            continue;
        }
        n++;
        i++;
    }
    return n;
}

static void send_heartbeat(struct presence *p)
{
    uint8_t d[8 + NAME_CAP];
    size_t n = strlen(p->node);
    memcpy(d, &p->inc, 8);
    memcpy(d + 8, p->node, n);
    natsConnection_Publish(p->nc, SUBJ_HB, d, (int)(8 + n));
}

/* ---- the claiming node ---- */

static struct pending *pending_take(struct presence *p, uint64_t id)
{
    for (struct pending **pp = &p->pending; *pp; pp = &(*pp)->next)
        if ((*pp)->id == id) {
            struct pending *k = *pp;
            *pp = k->next;
            return k;
        }
    return NULL;
}

static void pending_free(struct pending *k)
{
    for (char **a = k->answered; *a; a++) free(*a);
    free(k->tenant);
    free(k->client_id);
    free(k->rec);
    free(k);
}

static void adopt(struct presence *p, const char *tenant, const char *client_id, const uint8_t *rec,
                  size_t len)
{
    if (broker_adopt(atomic_load(&p->b), tenant, client_id, rec, len) < 0)
        log_warn("cluster: the session of client %s handed over here is lost", client_id);
}

/* Answers the CONNECT of k (busy, in the list) with the session handed
 * over or, when none was, one found in the store of a node that is gone;
 * when its connection went, keeps that session here. Without the lock. */
static void settle(struct presence *p, struct pending *k)
{
    if (!k->rec && p->take_stored) {
        char key[NAME_CAP + 1 + 65536];
        int klen = snprintf(key, sizeof key, "%s\x01%s", k->tenant, k->client_id);
        struct buf b;
        buf_init(&b, 0);
        if (klen > 0 && (size_t)klen < sizeof key &&
            p->take_stored(p->take_arg, key, (size_t)klen, (const char *const *)k->answered, &b) ==
                1 &&
            (k->rec = malloc(buf_used(&b)))) {
            memcpy(k->rec, buf_head(&b), buf_used(&b));
            k->len = buf_used(&b);
        }
        buf_free(&b);
    }
    pthread_mutex_lock(&p->lock);
    pending_take(p, k->id);
    bool answered = k->c != NULL;
    if (answered) {
        broker_claim_answered(atomic_load(&p->b), k->c, k->rec, k->len);
        k->rec = NULL;
    }
    pthread_mutex_unlock(&p->lock);
    if (!answered && k->rec) adopt(p, k->tenant, k->client_id, k->rec, k->len);
    pending_free(k);
}

static int send_claim(struct presence *p, uint64_t id, const char *tenant, const char *client_id,
                      bool take)
{
    struct claimmsg m = {.id = id,
                         .take = take,
                         .tenant = (const uint8_t *)tenant,
                         .tenant_len = (uint16_t)strlen(tenant),
                         .client_id = (const uint8_t *)client_id,
                         .client_id_len = (uint16_t)strlen(client_id),
                         .node = (const uint8_t *)p->node,
                         .node_len = (uint16_t)strlen(p->node)};
    struct buf b;
    buf_init(&b, 0);
    int rc = claimmsg_write(&b, &m);
    natsStatus s = NATS_OK;
    if (rc == 0 && take)
        s = natsConnection_PublishRequest(p->nc, SUBJ_CLAIM, p->inbox, buf_head(&b),
                                          (int)buf_used(&b));
    else if (rc == 0)
        s = natsConnection_Publish(p->nc, SUBJ_CLAIM, buf_head(&b), (int)buf_used(&b));
    buf_free(&b);
    return rc < 0 ? rc : s == NATS_OK ? 0 : ERR_UNAVAILABLE;
}

static int presence_claim(void *arg, struct client *c, const char *tenant, const char *client_id,
                          bool take)
{
    struct presence *p = arg;
    uint64_t now = now_ms(), id = 0;
    pthread_mutex_lock(&p->lock);
    unsigned live = live_members(p, now);
    /* With nobody to ask, a session may still be in a gone node's store. */
    if (take && (live || p->take_stored)) {
        struct pending *k = calloc(1, sizeof *k);
        if (k) {
            k->tenant = strdup(tenant);
            k->client_id = strdup(client_id);
        }
        if (k && k->tenant && k->client_id) {
            k->id = id = ++p->next_id;
            k->c = c;
            k->expected = live;
            k->deadline_ms = now + (live ? (uint64_t)p->timeout_ms : 0);
            k->next = p->pending;
            p->pending = k;
            pthread_cond_signal(&p->cond);
        } else if (k) {
            pending_free(k);
        }
    }
    pthread_mutex_unlock(&p->lock);
    /* Without a wait, the others still close their connection of it. Once
     * k is queued it belongs to the thread (it may be answered already):
     * a claim NATS did not take times out and is settled all the same. */
    if (send_claim(p, id, tenant, client_id, id != 0) < 0 && live)
        log_warn("cluster: cannot claim client %s from the other nodes (NATS unreachable)",
                 client_id);
    return id != 0;
}

static void presence_cancel(void *arg, struct client *c)
{
    struct presence *p = arg;
    pthread_mutex_lock(&p->lock);
    for (struct pending *k = p->pending; k; k = k->next)
        if (k->c == c) k->c = NULL;
    pthread_mutex_unlock(&p->lock);
}

/* A reply: the session, if it carries one, goes to the waiting CONNECT. */
static void serve_reply(struct presence *p, const struct claimmsg *m, const char *tenant,
                        const char *client_id)
{
    pthread_mutex_lock(&p->lock);
    struct pending *k = NULL;
    for (k = p->pending; k && k->id != m->id; k = k->next) {
    }
    bool mine = k && !k->busy && !strcmp(k->tenant, tenant) && !strcmp(k->client_id, client_id);
    bool done = false;
    if (mine) {
        /* It answered: it is alive, its store is not taken from. */
        if (k->got < MAX_ANSWERS) k->answered[k->got] = strndup((const char *)m->node, m->node_len);
        k->got++;
        if (m->take && m->rec_len && k->rec)
            log_warn("cluster: two nodes handed over the session of client %s; the later one "
                     "is dropped",
                     client_id);
        else if (m->take && m->rec_len && (k->rec = malloc(m->rec_len))) {
            memcpy(k->rec, m->rec, m->rec_len);
            k->len = m->rec_len;
        }
        done = k->busy = k->rec || k->got >= k->expected;
    }
    pthread_mutex_unlock(&p->lock);
    if (done) settle(p, k);
    /* Too late for its CONNECT (timed out): the session stays here. */
    if (!mine && m->take && m->rec_len) adopt(p, tenant, client_id, m->rec, m->rec_len);
}

/* CONNECTs whose wait is over are answered with what came. */
static void expire_pending(struct presence *p, uint64_t now)
{
    for (;;) {
        pthread_mutex_lock(&p->lock);
        struct pending *k;
        for (k = p->pending; k && (k->busy || k->deadline_ms > now); k = k->next) {
        }
        if (k) k->busy = true;
        pthread_mutex_unlock(&p->lock);
        if (!k) return;
        settle(p, k);
    }
}

/* ---- the node asked ---- */

static void serve_request(struct presence *p, const struct claimmsg *m, const char *tenant,
                          const char *client_id, const char *reply_to)
{
    struct broker *b = atomic_load(&p->b);
    struct buf rec;
    buf_init(&rec, 0);
    size_t max = (size_t)natsConnection_GetMaxPayload(p->nc);
    size_t head = 16 + m->tenant_len + m->client_id_len;
    max = max > head ? max - head : 0;
    int r = broker_release(b, tenant, client_id, m->take && reply_to, max, &rec);
    if (reply_to) {
        struct claimmsg a = *m;
        a.node = (const uint8_t *)p->node;
        a.node_len = (uint16_t)strlen(p->node);
        a.take = r == 1;
        a.rec = buf_head(&rec);
        a.rec_len = r == 1 ? buf_used(&rec) : 0;
        struct buf out;
        buf_init(&out, 0);
        bool sent =
            claimmsg_write(&out, &a) == 0 &&
            natsConnection_Publish(p->nc, reply_to, buf_head(&out), (int)buf_used(&out)) == NATS_OK;
        buf_free(&out);
        /* Not sent: the session stays here rather than nowhere. */
        if (!sent && r == 1) adopt(p, tenant, client_id, buf_head(&rec), buf_used(&rec));
    }
    buf_free(&rec);
}

static void serve(struct presence *p, struct inbound *in)
{
    struct claimmsg m;
    if (claimmsg_parse(in->data, in->len, &m) < 0) {
        log_warn("cluster: a malformed claim message is dropped");
        return;
    }
    char tenant[NAME_CAP];
    char *client_id = strndup((const char *)m.client_id, m.client_id_len);
    if (!client_id) return;
    memcpy(tenant, m.tenant, m.tenant_len);
    tenant[m.tenant_len] = 0;
    if (in->is_reply)
        serve_reply(p, &m, tenant, client_id);
    else
        serve_request(p, &m, tenant, client_id, in->reply_to);
    free(client_id);
}

/* ---- the libnats side: queue for the thread ---- */

static void enqueue(struct presence *p, natsMsg *msg, bool is_reply)
{
    if (!enter(p)) {
        natsMsg_Destroy(msg);
        return;
    }
    int n = natsMsg_GetDataLength(msg);
    const char *reply = natsMsg_GetReply(msg);
    struct inbound *in = malloc(sizeof *in + (size_t)(n > 0 ? n : 0));
    if (!in) goto out;
    in->next = NULL;
    in->is_reply = is_reply;
    in->len = (size_t)(n > 0 ? n : 0);
    memcpy(in->data, natsMsg_GetData(msg), in->len);
    in->reply_to = reply && *reply ? strdup(reply) : NULL;
    pthread_mutex_lock(&p->lock);
    if (p->in_count >= QUEUE_MAX) {
        pthread_mutex_unlock(&p->lock);
        log_warn("cluster: too many claims waiting; one is dropped");
        free(in->reply_to);
        free(in);
        goto out;
    }
    if (p->in_tail)
        p->in_tail->next = in;
    else
        p->in_head = in;
    p->in_tail = in;
    p->in_count++;
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
out:
    natsMsg_Destroy(msg);
    leave(p);
}

static void on_claim(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)nc, (void)sub;
    enqueue(closure, msg, false);
}

static void on_reply(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)nc, (void)sub;
    enqueue(closure, msg, true);
}

/* ---- the thread ---- */

static void *presence_main(void *arg)
{
    struct presence *p = arg;
    uint64_t next_hb = 0;
    pthread_mutex_lock(&p->lock);
    while (!p->stop) {
        struct inbound *in = p->in_head;
        if (in) {
            p->in_head = in->next;
            if (!p->in_head) p->in_tail = NULL;
            p->in_count--;
            pthread_mutex_unlock(&p->lock);
            serve(p, in);
            free(in->reply_to);
            free(in);
            pthread_mutex_lock(&p->lock);
            continue;
        }
        uint64_t now = now_ms();
        pthread_mutex_unlock(&p->lock);
        if (now >= next_hb) {
            send_heartbeat(p);
            next_hb = now + (uint64_t)p->hb_ms;
        }
        expire_pending(p, now);
        pthread_mutex_lock(&p->lock);
        if (p->stop || p->in_head) continue;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += TICK_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&p->cond, &p->lock, &ts);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

int presence_new(const struct presence_config *cfg, struct bridge *br, struct presence **out)
{
    struct presence *p = calloc(1, sizeof *p);
    ENSURE(p, ERR_NOMEM);
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    p->nc = bridge_nats(br);
    p->hb_ms = cfg->heartbeat_ms;
    p->timeout_ms = cfg->claim_timeout_ms;
    p->take_stored = cfg->take_stored;
    p->take_arg = cfg->take_arg;
    snprintf(p->node, sizeof p->node, "%s", cfg->node_id);
    if (RAND_bytes((unsigned char *)&p->inc, sizeof p->inc) != 1) {
        presence_free(p);
        return ERR_INTERNAL;
    }
    snprintf(p->inbox, sizeof p->inbox, "certmq.claimed.%016" PRIx64, p->inc);
    *out = p;
    bridge_set_claims(br, presence_claim, presence_cancel, p);
    return 0;
}

int presence_attach(struct presence *p, struct broker *b)
{
    atomic_store(&p->b, b);
    if (natsConnection_Subscribe(&p->subs[0], p->nc, SUBJ_HB, on_hb, p) != NATS_OK ||
        natsConnection_Subscribe(&p->subs[1], p->nc, SUBJ_CLAIM, on_claim, p) != NATS_OK ||
        natsConnection_Subscribe(&p->subs[2], p->nc, p->inbox, on_reply, p) != NATS_OK) {
        log_error("cluster: cannot subscribe to the presence subjects");
        return ERR_UNAVAILABLE;
    }
    p->running = pthread_create(&p->thread, NULL, presence_main, p) == 0;
    return p->running ? 0 : ERR_INTERNAL;
}

void presence_free(struct presence *p)
{
    if (!p) return;
    atomic_store(&p->stopping, true);
    for (int i = 0; i < 3; i++) {
        if (!p->subs[i]) continue;
        natsSubscription_Unsubscribe(p->subs[i]);
        natsSubscription_Destroy(p->subs[i]);
    }
    while (atomic_load(&p->inflight)) nanosleep(&(struct timespec){0, 1000000}, NULL);
    pthread_mutex_lock(&p->lock);
    p->stop = true;
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
    if (p->running) pthread_join(p->thread, NULL);
    while (p->in_head) {
        struct inbound *in = p->in_head;
        p->in_head = in->next;
        free(in->reply_to);
        free(in);
    }
    while (p->pending) pending_free(pending_take(p, p->pending->id));
    free(p->members);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->cond);
    free(p);
}
