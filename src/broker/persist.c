/* Durable sessions: every change to a session that outlives its connection
 * (expiry > 0) is appended to its space's journal under the space's lock; a
 * committer thread writes what accumulated in every space, every
 * persistence_commit_interval ms, to the session store in one transaction
 * (group commit). A QoS 1/2 PUBLISH
 * that made durable copies is acknowledged only once they are committed,
 * and a durable message goes out to its receiver only once committed, so
 * nothing acknowledged is lost and nothing is delivered twice by a restart.
 * At start the store is read back before the listeners open. */
#include "broker/internal.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"

/* ---- journal records ---- */

static struct jstr js(const void *p, size_t len)
{
    return (struct jstr){p, (uint32_t)len};
}

static struct jstr jz(const char *s)
{
    return js(s, strlen(s));
}

/* Puts sp on the committer's list (its lock held). */
static void mark_dirty(struct broker *b, struct space *sp)
{
    if (sp->dirty) return;
    pthread_mutex_lock(&b->dirty_lock);
    if (b->n_dirty == b->cap_dirty) {
        size_t cap = b->cap_dirty ? b->cap_dirty * 2 : 16;
        struct space **v = realloc(b->dirty, cap * sizeof *v);
        if (!v) {
            /* The records wait for the next change to this space. */
            pthread_mutex_unlock(&b->dirty_lock);
            log_error("persistence: a tenant's session changes wait for memory to be committed");
            return;
        }
        b->dirty = v;
        b->cap_dirty = cap;
    }
    b->dirty[b->n_dirty++] = sp;
    sp->dirty = true;
    pthread_mutex_unlock(&b->dirty_lock);
}

static void append(struct broker *b, struct space *sp, const struct jrec *r)
{
    if (b->restoring) return;
    if (journal_put(&sp->journal, r) < 0) {
        /* Memory ran out: the record is lost to the store (logged), the
         * broker goes on from memory. */
        log_error("persistence: a session change could not be journaled (out of memory)");
        return;
    }
    sp->jseq++;
    mark_dirty(b, sp);
}

static void msg_fields(struct jrec *r, const struct msg *m)
{
    r->topic = js(m->data, m->topic_len);
    r->payload = js(msg_payload(m), m->payload_len);
    r->props = js(msg_props(m), m->props_len);
    r->qos = m->qos;
    r->retain = m->retain;
    r->expire_at = m->expire_at;
}

static struct jrec session_rec(const struct session *s)
{
    const struct auth_result *w = &s->who;
    struct jrec r = {
        .type = J_SESSION_PUT,
        .key = jz(s->key),
        .tenant = jz(w->tenant),
        .client_id = jz(s->client_id),
        .identity = jz(w->identity),
        .anchor = jz(w->anchor_fp),
        .kind = w->kind,
        .device = w->device,
        .has_user_name = w->has_user_name,
        .roles = w->roles,
        .expiry = s->expiry,
        .offline_since = s->client ? 0 : s->offline_since,
        .has_will = s->will != NULL,
        .will_delay = s->will_delay,
        .will_expiry = s->will_expiry,
    };
    if (s->will) msg_fields(&r, s->will);
    return r;
}

void persist_session(struct broker *b, struct session *s)
{
    if (!s->durable) return;
    struct jrec r = session_rec(s);
    append(b, s->space, &r);
}

void persist_session_del(struct broker *b, struct session *s)
{
    if (!s->durable) return;
    append(b, s->space, &(struct jrec){.type = J_SESSION_DEL, .key = jz(s->key)});
    s->durable = false;
}

static struct jrec sub_rec(const struct session *s, const struct sub *sub, bool del)
{
    return (struct jrec){
        .type = del ? J_SUB_DEL : J_SUB_PUT,
        .key = jz(s->key),
        .filter = js(sub->filter, sub->len),
        .group = sub->share ? jz(share_group(sub->share)) : js("", 0),
        .qos = sub->qos,
        .opts = sub->opts,
        .sub_id = sub->id,
    };
}

void persist_sub(struct broker *b, struct session *s, const struct sub *sub, bool del)
{
    if (!s->durable) return;
    struct jrec r = sub_rec(s, sub, del);
    append(b, s->space, &r);
}

static void msg_hold(struct broker *b, struct space *sp, struct msg *m)
{
    if (!m->pid) {
        m->pid = atomic_fetch_add_explicit(&b->next_msg_pid, 1, memory_order_relaxed) + 1;
        struct jrec r = {.type = J_MSG_PUT, .pid = m->pid};
        msg_fields(&r, m);
        append(b, sp, &r);
    }
    m->durable_refs++;
}

static void msg_release(struct broker *b, struct space *sp, struct msg *m)
{
    if (!m->pid || --m->durable_refs) return;
    append(b, sp, &(struct jrec){.type = J_MSG_DEL, .pid = m->pid});
    m->pid = 0;
}

/* An item's record; ids is room for its first 16 subscription ids. */
static struct jrec item_rec(const struct session *s, const struct qitem *it, uint8_t ids[4 * 16])
{
    uint16_t n = it->n_ids < 16 ? it->n_ids : 16;
    for (uint16_t i = 0; i < n; i++) {
        uint32_t v = it->sub_ids[i];
        ids[4 * i] = (uint8_t)(v >> 24);
        ids[4 * i + 1] = (uint8_t)(v >> 16);
        ids[4 * i + 2] = (uint8_t)(v >> 8);
        ids[4 * i + 3] = (uint8_t)v;
    }
    return (struct jrec){.type = J_ITEM_PUT,
                         .key = jz(s->key),
                         .seq = it->seq,
                         .pid = it->msg->pid,
                         .qos = it->qos,
                         .retain = it->retain,
                         .state = it->state,
                         .packet_id = it->packet_id,
                         .n_ids = n,
                         .ids = ids};
}

void persist_item_put(struct broker *b, struct session *s, struct qitem *it)
{
    if (!s->durable || it->qos == 0) return;
    msg_hold(b, s->space, it->msg);
    it->seq = atomic_fetch_add_explicit(&b->next_item_seq, 1, memory_order_relaxed) + 1;
    uint8_t ids[4 * 16];
    struct jrec r = item_rec(s, it, ids);
    append(b, s->space, &r);
    it->jseq = s->space->jseq;
}

void persist_item_upd(struct broker *b, struct space *sp, const struct qitem *it)
{
    if (!it->seq) return;
    append(b, sp,
           &(struct jrec){
               .type = J_ITEM_UPD, .seq = it->seq, .state = it->state, .packet_id = it->packet_id});
}

void item_done(struct broker *b, struct space *sp, struct qitem *it)
{
    if (it->seq) {
        append(b, sp, &(struct jrec){.type = J_ITEM_DEL, .seq = it->seq});
        msg_release(b, sp, it->msg);
    }
    qitem_free(it);
}

void item_forget(struct broker *b, struct space *sp, struct qitem *it)
{
    if (it->seq) msg_release(b, sp, it->msg);
    qitem_free(it);
}

void persist_rx(struct broker *b, struct session *s, uint16_t id, bool del)
{
    if (!s->durable) return;
    append(b, s->space,
           &(struct jrec){.type = del ? J_RX_DEL : J_RX_PUT, .key = jz(s->key), .packet_id = id});
}

/* ---- a session's whole state (moved to another node) ---- */

/* The QoS 1/2 items of l as records, each with its own message (pid and
 * seq counted from *n). */
static int snapshot_items(struct buf *out, const struct session *s, const struct qlist *l,
                          uint64_t *n, bool msgs)
{
    uint64_t k = *n;
    for (const struct qitem *it = l->head; it; it = it->next) {
        if (!it->qos) continue;
        k++;
        if (msgs) {
            struct jrec r = {.type = J_MSG_PUT, .pid = k};
            msg_fields(&r, it->msg);
            GUARD(journal_put(out, &r));
            continue;
        }
        uint8_t ids[4 * 16];
        struct jrec r = item_rec(s, it, ids);
        r.seq = r.pid = k;
        GUARD(journal_put(out, &r));
    }
    *n = k;
    return 0;
}

int persist_snapshot(const struct session *s, struct buf *out)
{
    struct jrec r = session_rec(s);
    GUARD(journal_put(out, &r));
    for (unsigned i = 0; i < s->n_subs; i++) {
        r = sub_rec(s, &s->subs[i], false);
        GUARD(journal_put(out, &r));
    }
    /* The order sstore_load gives: messages, then items as queued. */
    for (int pass = 0; pass < 2; pass++) {
        uint64_t n = 0;
        GUARD(snapshot_items(out, s, &s->inflight, &n, pass == 0));
        GUARD(snapshot_items(out, s, &s->queue, &n, pass == 0));
    }
    for (unsigned i = 0; i < s->n_rx; i++) {
        r = (struct jrec){.type = J_RX_PUT, .key = jz(s->key), .packet_id = s->rx_ids[i]};
        GUARD(journal_put(out, &r));
    }
    return 0;
}

/* ---- acknowledgements that wait for a commit ---- */

struct pending_ack {
    uint64_t need; /* journal records that must be committed first */
    uint16_t id;
    uint8_t type, reason;
    uint8_t *rcs; /* SUBACK: its return codes (owned) */
    uint16_t n_rcs;
};

struct ackq {
    struct pending_ack *v;
    size_t head, n, cap;
    size_t subacks; /* SUBACKs among them */
};

void persist_await(struct broker *b, struct client *c)
{
    (void)b;
    struct space *sp = c->space;
    if (c->awaiting) return;
    if (sp->n_await == sp->cap_await) {
        size_t cap = sp->cap_await ? sp->cap_await * 2 : 64;
        struct client **v = realloc(sp->await, cap * sizeof *v);
        if (!v) return; /* woken by the next delivery instead */
        sp->await = v;
        sp->cap_await = cap;
    }
    sp->await[sp->n_await++] = c;
    c->awaiting = true;
}

bool persist_acks_pending(const struct client *c)
{
    return c->acks && c->acks->n;
}

static int defer(struct broker *b, struct client *c, struct pending_ack a)
{
    struct ackq *q = c->acks;
    if (!q) {
        q = c->acks = calloc(1, sizeof *q);
        ENSURE(q, ERR_NOMEM);
    }
    if (q->head + q->n == q->cap) {
        if (q->head) { /* slide down before growing */
            memmove(q->v, q->v + q->head, q->n * sizeof *q->v);
            q->head = 0;
        }
        if (q->n == q->cap) {
            size_t cap = q->cap ? q->cap * 2 : 16;
            struct pending_ack *v = realloc(q->v, cap * sizeof *v);
            ENSURE(v, ERR_NOMEM);
            q->v = v;
            q->cap = cap;
        }
    }
    q->v[q->head + q->n++] = a;
    if (a.rcs) q->subacks++;
    persist_await(b, c);
    return 0;
}

int persist_defer_ack(struct broker *b, struct client *c, enum mqtt_type type, uint16_t id,
                      uint8_t reason)
{
    return defer(b, c, (struct pending_ack){c->space->jseq, id, (uint8_t)type, reason, NULL, 0});
}

int persist_defer_suback(struct broker *b, struct client *c, uint16_t id, const uint8_t *rcs,
                         uint16_t n)
{
    uint8_t *copy = malloc(n ? n : 1);
    ENSURE(copy, ERR_NOMEM);
    memcpy(copy, rcs, n);
    int rc = defer(b, c, (struct pending_ack){c->space->jseq, id, MQTT_SUBACK, 0, copy, n});
    if (rc < 0) free(copy);
    return rc;
}

bool persist_suback_pending(const struct client *c)
{
    return c->acks && c->acks->subacks;
}

static int send_ack(struct client *c, const struct pending_ack *a, const struct mqtt_props *props)
{
    if (!a->rcs) return mqtt_encode_ack(&c->out, (enum mqtt_type)a->type, a->id, a->reason, props);
    return mqtt_encode_suback(&c->out, a->id, a->rcs, a->n_rcs, props);
}

int persist_release_acks(struct broker *b, struct client *c)
{
    struct ackq *q = c->acks;
    const struct mqtt_props *props = client_v5(c) ? &mqtt_props_none : NULL;
    while (q && q->n && q->v[q->head].need <= c->space->durable_seq) {
        struct pending_ack *a = &q->v[q->head];
        GUARD(send_ack(c, a, props));
        if (a->rcs) q->subacks--;
        free(a->rcs);
        q->head++;
        q->n--;
    }
    if (q && q->n) persist_await(b, c);
    return 0;
}

void persist_client_gone(struct broker *b, struct client *c)
{
    (void)b;
    struct space *sp = c->space;
    if (c->awaiting)
        for (size_t i = 0; i < sp->n_await; i++)
            if (sp->await[i] == c) {
                sp->await[i] = sp->await[--sp->n_await];
                break;
            }
    c->awaiting = false;
    if (c->acks) {
        for (size_t i = 0; i < c->acks->n; i++) free(c->acks->v[c->acks->head + i].rcs);
        free(c->acks->v);
    }
    free(c->acks);
    c->acks = NULL;
}

/* ---- the committer ---- */

/* One space's records in a commit. */
struct part {
    struct space *sp;
    struct buf batch;
    uint64_t end; /* its jseq when taken */
};

/* The records of the spaces on the list, each taken under its lock and
 * compacted (what came and went within the batch is not written). Returns
 * how many parts, or -1 when out of memory (nothing taken). */
static ssize_t take_parts(struct broker *b, struct part **out)
{
    pthread_mutex_lock(&b->dirty_lock);
    size_t n = b->n_dirty;
    struct part *parts = n ? calloc(n, sizeof *parts) : NULL;
    if (parts) {
        for (size_t i = 0; i < n; i++) parts[i].sp = b->dirty[i];
        b->n_dirty = 0;
    }
    pthread_mutex_unlock(&b->dirty_lock);
    if (n && !parts) return -1;
    for (size_t i = 0; i < n; i++) {
        struct part *p = &parts[i];
        space_lock(b, p->sp);
        p->batch = p->sp->journal;
        buf_init(&p->sp->journal, 0);
        p->end = p->sp->jseq;
        p->sp->dirty = false;
        space_unlock(p->sp);
        struct buf compact;
        buf_init(&compact, 0);
        if (journal_compact(buf_head(&p->batch), buf_used(&p->batch), &compact) == 0) {
            buf_free(&p->batch);
            p->batch = compact;
        } else {
            buf_free(&compact);
        }
    }
    *out = parts;
    return (ssize_t)n;
}

/* After the commit of p: its space's waiting clients are woken, or, when
 * the store refused it, its records go back in front of the space's. */
static void settle(struct broker *b, struct part *p, bool ok)
{
    struct space *sp = p->sp;
    space_lock(b, sp);
    if (ok) {
        sp->durable_seq = p->end;
        for (size_t i = 0; i < sp->n_await; i++) {
            sp->await[i]->awaiting = false;
            b->cfg.wake(sp->await[i]);
        }
        sp->n_await = 0;
        buf_free(&p->batch);
    } else if (buf_append(&p->batch, buf_head(&sp->journal), buf_used(&sp->journal)) == 0) {
        buf_free(&sp->journal);
        sp->journal = p->batch;
        mark_dirty(b, sp);
    } else {
        buf_free(&p->batch); /* out of memory as well: logged by the caller */
    }
    space_unlock(sp);
}

/* Writes what accumulated, every space's in one transaction; returns false
 * when the store refused it (the records are kept, in order, for the next
 * attempt). */
static bool commit_once(struct broker *b)
{
    struct part *parts;
    ssize_t n = take_parts(b, &parts);
    if (n <= 0) return n == 0;
    struct buf all;
    buf_init(&all, 0);
    int rc = 0;
    for (ssize_t i = 0; i < n && rc == 0; i++)
        rc = buf_append(&all, buf_head(&parts[i].batch), buf_used(&parts[i].batch));
    if (rc == 0 && buf_used(&all)) rc = sstore_apply(b->sstore, buf_head(&all), buf_used(&all));
    buf_free(&all);
    if (rc == 0 && atomic_exchange(&b->persist_broken, false))
        log_info("persistence: the session store takes writes again");
    if (rc < 0 && !atomic_exchange(&b->persist_broken, true))
        log_error("persistence: the session store cannot be written (%s); QoS 1/2 "
                  "publishes are refused until it can",
                  err_str(rc));
    for (ssize_t i = 0; i < n; i++) settle(b, &parts[i], rc == 0);
    free(parts);
    return rc == 0;
}

static void *committer(void *arg)
{
    struct broker *b = arg;
    struct timespec ts = {b->commit_ms / 1000, (b->commit_ms % 1000) * 1000000L};
    while (!atomic_load(&b->persist_stop)) {
        nanosleep(&ts, NULL);
        if (!commit_once(b)) {
            struct timespec back = {0, 200 * 1000000L}; /* a failing disk: retry slower */
            nanosleep(&back, NULL);
        }
    }
    return NULL;
}

int broker_persist_start(struct broker *b, struct sstore *st, long commit_ms)
{
    b->sstore = st;
    b->commit_ms = commit_ms > 0 ? commit_ms : 2;
    atomic_store(&b->persist_stop, false);
    ENSURE(pthread_create(&b->committer, NULL, committer, b) == 0, ERR_INTERNAL);
    b->committer_running = true;
    return 0;
}

void broker_persist_stop(struct broker *b)
{
    if (!b->committer_running) return;
    atomic_store(&b->persist_stop, true);
    pthread_join(b->committer, NULL);
    b->committer_running = false;
    if (!commit_once(b)) log_error("persistence: the last session changes could not be written");
}
