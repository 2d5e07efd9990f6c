/* Durable sessions: every change to a session that outlives its connection
 * (expiry > 0) is appended to the journal under the broker lock; a committer
 * thread writes what accumulated, every persistence_commit_interval ms, to
 * the session store in one transaction (group commit). A QoS 1/2 PUBLISH
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

static void append(struct broker *b, const struct jrec *r)
{
    if (b->restoring) return;
    if (journal_put(&b->journal, r) < 0) {
        /* Memory ran out: the record is lost to the store (logged), the
         * broker goes on from memory. */
        log_error("persistence: a session change could not be journaled (out of memory)");
        return;
    }
    b->jseq++;
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
    append(b, &r);
}

void persist_session_del(struct broker *b, struct session *s)
{
    if (!s->durable) return;
    append(b, &(struct jrec){.type = J_SESSION_DEL, .key = jz(s->key)});
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
    append(b, &r);
}

static void msg_hold(struct broker *b, struct msg *m)
{
    if (!m->pid) {
        m->pid = ++b->next_msg_pid;
        struct jrec r = {.type = J_MSG_PUT, .pid = m->pid};
        msg_fields(&r, m);
        append(b, &r);
    }
    m->durable_refs++;
}

static void msg_release(struct broker *b, struct msg *m, bool journal)
{
    if (!m->pid || --m->durable_refs) return;
    if (journal) append(b, &(struct jrec){.type = J_MSG_DEL, .pid = m->pid});
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
    msg_hold(b, it->msg);
    it->seq = ++b->next_item_seq;
    uint8_t ids[4 * 16];
    struct jrec r = item_rec(s, it, ids);
    append(b, &r);
    it->jseq = b->jseq;
}

void persist_item_upd(struct broker *b, const struct qitem *it)
{
    if (!it->seq) return;
    append(b,
           &(struct jrec){
               .type = J_ITEM_UPD, .seq = it->seq, .state = it->state, .packet_id = it->packet_id});
}

void item_done(struct broker *b, struct qitem *it)
{
    if (it->seq) {
        append(b, &(struct jrec){.type = J_ITEM_DEL, .seq = it->seq});
        msg_release(b, it->msg, true);
    }
    qitem_free(it);
}

void item_forget(struct broker *b, struct qitem *it)
{
    if (it->seq) msg_release(b, it->msg, true);
    qitem_free(it);
}

void persist_msg_del(struct broker *b, uint64_t pid)
{
    append(b, &(struct jrec){.type = J_MSG_DEL, .pid = pid});
}

void persist_rx(struct broker *b, struct session *s, uint16_t id, bool del)
{
    if (!s->durable) return;
    append(b,
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
    if (c->awaiting) return;
    if (b->n_await == b->cap_await) {
        size_t cap = b->cap_await ? b->cap_await * 2 : 64;
        struct client **v = realloc(b->await, cap * sizeof *v);
        if (!v) return; /* woken by the next delivery instead */
        b->await = v;
        b->cap_await = cap;
    }
    b->await[b->n_await++] = c;
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
    return defer(b, c, (struct pending_ack){b->jseq, id, (uint8_t)type, reason, NULL, 0});
}

int persist_defer_suback(struct broker *b, struct client *c, uint16_t id, const uint8_t *rcs,
                         uint16_t n)
{
    uint8_t *copy = malloc(n ? n : 1);
    ENSURE(copy, ERR_NOMEM);
    memcpy(copy, rcs, n);
    int rc = defer(b, c, (struct pending_ack){b->jseq, id, MQTT_SUBACK, 0, copy, n});
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
    while (q && q->n && q->v[q->head].need <= b->durable_seq) {
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
    if (c->awaiting)
        for (size_t i = 0; i < b->n_await; i++)
            if (b->await[i] == c) {
                b->await[i] = b->await[--b->n_await];
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

/* Writes what accumulated; returns false when the store refused it (the
 * records are kept, in order, for the next attempt). */
static bool commit_once(struct broker *b)
{
    broker_lock(b);
    if (!buf_used(&b->journal)) {
        broker_unlock(b);
        return true;
    }
    struct buf batch = b->journal;
    buf_init(&b->journal, 0);
    uint64_t end = b->jseq;
    broker_unlock(b);

    struct buf compact;
    buf_init(&compact, 0);
    int rc = journal_compact(buf_head(&batch), buf_used(&batch), &compact);
    if (rc == 0) { /* what came and went within the batch is not written */
        buf_free(&batch);
        batch = compact;
    } else {
        buf_free(&compact);
    }
    rc = buf_used(&batch) ? sstore_apply(b->sstore, buf_head(&batch), buf_used(&batch)) : 0;

    broker_lock(b);
    if (rc == 0) {
        b->durable_seq = end;
        if (b->persist_broken) log_info("persistence: the session store takes writes again");
        b->persist_broken = false;
        for (size_t i = 0; i < b->n_await; i++) {
            b->await[i]->awaiting = false;
            b->cfg.wake(b->await[i]);
        }
        b->n_await = 0;
        buf_free(&batch);
    } else {
        if (!b->persist_broken)
            log_error("persistence: the session store cannot be written (%s); QoS 1/2 "
                      "publishes are refused until it can",
                      err_str(rc));
        b->persist_broken = true;
        /* The failed batch goes first next time. */
        if (buf_append(&batch, buf_head(&b->journal), buf_used(&b->journal)) == 0) {
            buf_free(&b->journal);
            b->journal = batch;
        } else {
            buf_free(&batch); /* out of memory as well: logged above */
        }
    }
    broker_unlock(b);
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
