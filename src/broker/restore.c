/* Reading the session store back at start (before any client connects):
 * sessions with their identity, expiry and will, their subscriptions (the
 * topic tree and share groups again), the messages queued or in flight for
 * them in the order they were queued, and the incoming QoS 2 ids awaiting
 * PUBREL. Sessions that expired while the broker was down end here (their
 * wills go out). What was possibly sent before the stop goes out again
 * with DUP set. */
#include "broker/internal.h"

#include <stdlib.h>
#include <string.h>

#include "core/log.h"

/* The stored messages come in increasing pid order, so they are kept in an
 * array sorted by pid; items mostly name them in that order too, so a
 * lookup tries the one after the last found before a binary search (a
 * million queued messages are found without a hash lookup each).
 * The same records also bring a session handed over by another node
 * (import): then nothing keeps the other node's ids, and everything is
 * journaled here as new. */
struct restore {
    struct broker *b;
    struct space *sp;  /* the space whose lock is held (import: the caller's) */
    struct msg **msgs; /* one reference held on each */
    uint64_t *pids;    /* msgs[i]'s id in the records */
    size_t n_msgs, cap_msgs, hint;
    time_t now;
    size_t sessions, items;
    bool import;
    struct jstr key; /* import: the one session the records may name */
};

static void copy_str(char *dst, size_t cap, struct jstr s)
{
    size_t n = s.len < cap - 1 ? s.len : cap - 1;
    memcpy(dst, s.p, n);
    dst[n] = 0;
}

/* At start, holds the lock of sp, the space the next record works in:
 * records of every tenant come, one space's lock at a time. (An import
 * works in the one space its caller holds.) */
static void enter(struct restore *rs, struct space *sp)
{
    if (rs->import || sp == rs->sp) return;
    if (rs->sp) space_unlock(rs->sp);
    rs->sp = sp;
    if (sp) space_lock(rs->b, sp);
}

static struct session *find(struct restore *rs, struct jstr key)
{
    if (!rs->import) enter(rs, space_of_key(rs->b, (const char *)key.p, key.len));
    return rs->sp ? map_get(&rs->sp->sessions, (const char *)key.p, key.len) : NULL;
}

static struct msg *msg_from(const struct jrec *r)
{
    struct msg *m = msg_new(r->topic.p, r->topic.len, r->payload.p, r->payload.len, r->qos,
                            r->retain, r->props.p, r->props.len);
    if (m) m->expire_at = r->expire_at;
    return m;
}

static int restore_session(struct restore *rs, const struct jrec *r)
{
    struct broker *b = rs->b;
    char tenant[sizeof((struct auth_result *)0)->tenant];
    copy_str(tenant, sizeof tenant, r->tenant);
    char *client_id = strndup((const char *)r->client_id.p, r->client_id.len);
    ENSURE(client_id, ERR_NOMEM);
    struct space *sp = rs->import ? rs->sp : space_get(b, tenant);
    enter(rs, sp);
    struct session *s =
        sp ? session_new(b, sp, (const char *)r->key.p, r->key.len, client_id) : NULL;
    free(client_id);
    ENSURE(s, ERR_NOMEM);
    struct auth_result *w = &s->who;
    memcpy(w->tenant, tenant, sizeof tenant);
    copy_str(w->identity, sizeof w->identity, r->identity);
    copy_str(w->anchor_fp, sizeof w->anchor_fp, r->anchor);
    w->kind = r->kind;
    w->device = r->device;
    w->has_user_name = r->has_user_name;
    w->roles = r->roles;
    s->durable = !rs->import || (b->sstore && r->expiry);
    s->expiry = r->expiry;
    s->expiry_was_zero = false;
    s->offline_since = r->offline_since ? r->offline_since : rs->now;
    if (r->has_will) {
        s->will = msg_from(r);
        ENSURE(s->will, ERR_NOMEM);
        s->will_delay = r->will_delay;
        s->will_expiry = r->will_expiry;
        /* Connected when the broker stopped: the connection was lost. */
        uint32_t delay = s->will_delay < s->expiry ? s->will_delay : s->expiry;
        s->will_at = s->offline_since + delay + 1;
    }
    struct acl_matcher *acl = NULL;
    if (b->cfg.acl_compile && b->cfg.acl_compile(b->cfg.acl_arg, w, s->client_id, &acl) < 0)
        log_error("session %s: authorization rules could not be compiled", s->client_id);
    session_set_acl(b, s, acl);
    if (rs->import) persist_session(b, s); /* journaled here */
    rs->sessions++;
    return 0;
}

static int restore_sub(struct restore *rs, const struct jrec *r)
{
    struct session *s = find(rs, r->key);
    if (!s) return 0;
    return session_restore_sub(rs->b, s, (const char *)r->filter.p, r->filter.len,
                               (const char *)r->group.p, r->group.len, r->qos, r->opts, r->sub_id);
}

static int restore_msg(struct restore *rs, const struct jrec *r)
{
    ENSURE(!rs->n_msgs || r->pid > rs->pids[rs->n_msgs - 1], ERR_MALFORMED);
    if (rs->n_msgs == rs->cap_msgs) {
        size_t cap = rs->cap_msgs ? rs->cap_msgs * 2 : 1024;
        struct msg **v = realloc(rs->msgs, cap * sizeof *v);
        ENSURE(v, ERR_NOMEM);
        rs->msgs = v;
        uint64_t *p = realloc(rs->pids, cap * sizeof *p);
        ENSURE(p, ERR_NOMEM);
        rs->pids = p;
        rs->cap_msgs = cap;
    }
    struct msg *m = msg_from(r);
    ENSURE(m, ERR_NOMEM);
    if (!rs->import) {
        m->pid = r->pid;
        if (r->pid > rs->b->next_msg_pid) rs->b->next_msg_pid = r->pid; /* before any thread */
    }
    rs->pids[rs->n_msgs] = r->pid;
    rs->msgs[rs->n_msgs++] = m;
    return 0;
}

static struct msg *msg_find(struct restore *rs, uint64_t pid)
{
    size_t i = rs->hint;
    if (i < rs->n_msgs && rs->pids[i] == pid) return rs->msgs[i];
    if (++i < rs->n_msgs && rs->pids[i] == pid) {
        rs->hint = i;
        return rs->msgs[i];
    }
    size_t lo = 0, hi = rs->n_msgs;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (rs->pids[mid] < pid)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == rs->n_msgs || rs->pids[lo] != pid) return NULL;
    rs->hint = lo;
    return rs->msgs[lo];
}

static int restore_item(struct restore *rs, const struct jrec *r)
{
    struct broker *b = rs->b;
    struct session *s = find(rs, r->key);
    struct msg *m = msg_find(rs, r->pid);
    if (!rs->import && r->seq > b->next_item_seq) b->next_item_seq = r->seq;
    if (!s || !m || r->qos == 0 || r->qos > 2) return 0;
    struct qitem *it = calloc(1, sizeof *it + r->n_ids * sizeof it->sub_ids[0]);
    ENSURE(it, ERR_NOMEM);
    it->msg = m;
    m->refs++;
    it->qos = r->qos;
    it->retain = r->retain;
    it->state = r->state;
    it->packet_id = r->packet_id;
    if (!rs->import) {
        m->durable_refs++;
        it->seq = r->seq;
    }
    it->maybe_sent = true;
    it->n_ids = r->n_ids;
    for (uint16_t i = 0; i < r->n_ids; i++) it->sub_ids[i] = journal_id(r, i);
    if (it->state != Q_QUEUED && it->packet_id) {
        qlist_push(&s->inflight, it);
        if (it->packet_id > s->next_id) s->next_id = it->packet_id;
    } else {
        it->state = Q_QUEUED;
        it->packet_id = 0;
        qlist_push(&s->queue, it);
    }
    if (rs->import) persist_item_put(b, s, it); /* stored here, with its message */
    rs->items++;
    return 0;
}

/* Records handed over by another node name the session claimed and no
 * other: a node never gives another tenant's session. */
static bool foreign(const struct restore *rs, const struct jrec *r)
{
    if (!rs->import || r->type == J_MSG_PUT) return false;
    const struct jstr *k = &rs->key;
    if (r->key.len != k->len || memcmp(r->key.p, k->p, k->len)) return true;
    if (r->type != J_SESSION_PUT) return false;
    return r->tenant.len >= k->len || memcmp(r->tenant.p, k->p, r->tenant.len) ||
           k->p[r->tenant.len] != 1;
}

static int restore_one(void *arg, const struct jrec *r)
{
    struct restore *rs = arg;
    if (foreign(rs, r)) return ERR_MALFORMED;
    switch ((enum jtype)r->type) {
    case J_SESSION_PUT: return restore_session(rs, r);
    case J_SUB_PUT: return restore_sub(rs, r);
    case J_MSG_PUT: return restore_msg(rs, r);
    case J_ITEM_PUT: return restore_item(rs, r);
    case J_RX_PUT: {
        struct session *s = find(rs, r->key);
        if (!s) return 0;
        GUARD(session_rx_add(rs->b, s, r->packet_id));
        if (rs->import) persist_rx(rs->b, s, r->packet_id, false);
        return 0;
    }
    default: return ERR_MALFORMED;
    }
}

/* Messages no restored item holds (their sessions are gone) leave the
 * store now. */
static void drop_orphans(struct broker *b, const struct restore *rs)
{
    struct buf out;
    buf_init(&out, 0);
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < rs->n_msgs; i++)
        if (!rs->msgs[i]->durable_refs)
            rc = journal_put(&out, &(struct jrec){.type = J_MSG_DEL, .pid = rs->msgs[i]->pid});
    if (rc == 0 && buf_used(&out)) rc = sstore_apply(b->sstore, buf_head(&out), buf_used(&out));
    if (rc < 0)
        log_warn("persistence: stored messages no session holds stay stored (%s)", err_str(rc));
    buf_free(&out);
}

int broker_persist_load(struct broker *b, struct sstore *st, time_t now)
{
    struct restore rs = {.b = b, .now = now};
    b->sstore = st;
    b->restoring = true;
    int rc = sstore_load(st, restore_one, &rs);
    b->restoring = false;
    enter(&rs, NULL);
    if (rc == 0) drop_orphans(b, &rs);
    for (size_t i = 0; i < rs.n_msgs; i++) msg_unref(rs.msgs[i]);
    free(rs.msgs);
    free(rs.pids);
    if (rc < 0) return rc;
    int expired = broker_expire_sessions(b, now);
    log_info("persistence: %zu session(s) and %zu queued message(s) restored%s",
             rs.sessions - expired, rs.items, expired ? ", expired ones ended" : "");
    return 0;
}

int broker_import(struct broker *b, const char *key, size_t klen, const uint8_t *rec, size_t len,
                  time_t now)
{
    struct space *sp = space_of_key(b, key, klen);
    ENSURE(sp, ERR_INVALID);
    struct restore rs = {
        .b = b, .sp = sp, .now = now, .import = true, .key = {(const uint8_t *)key, klen}};
    struct rd r = rd_make(rec, len);
    int rc = 0;
    while (rc == 0 && rd_left(&r)) {
        struct jrec j;
        rc = journal_next(&r, &j);
        if (rc == 0) rc = restore_one(&rs, &j);
    }
    for (size_t i = 0; i < rs.n_msgs; i++) msg_unref(rs.msgs[i]);
    free(rs.msgs);
    free(rs.pids);
    if (rc < 0) {
        struct session *s = map_get(&sp->sessions, key, klen);
        if (s && !s->client) session_free(b, s);
        log_error("a session handed over by another node is malformed: dropped");
    }
    return rc;
}
