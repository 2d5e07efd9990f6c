/* PostgreSQL backend of the session store (sessions.h): sess_* tables in
 * the store's database on a connection of its own, one transaction per
 * batch (durable when it returns: synchronous commit). Record strings are
 * bytea in binary; the load's binary results are borrowed while fn runs. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

#include "core/log.h"
#include "store/pg_int.h"
#include "store/sessions_int.h"

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS sess_sessions(key BYTEA PRIMARY KEY, tenant BYTEA,"
    " client_id BYTEA, identity BYTEA, anchor BYTEA, kind INT, device INT, has_user_name INT,"
    " roles BIGINT, expiry BIGINT, offline_since BIGINT, will_delay BIGINT, will_expiry BIGINT,"
    " will_topic BYTEA, will_payload BYTEA, will_props BYTEA, will_qos INT, will_retain INT,"
    " will_expire_at BIGINT);"
    "CREATE TABLE IF NOT EXISTS sess_subs(key BYTEA, filter BYTEA, grp BYTEA, qos INT, opts INT,"
    " sub_id BIGINT, PRIMARY KEY(key, filter, grp));"
    "CREATE TABLE IF NOT EXISTS sess_msgs(pid BIGINT PRIMARY KEY, topic BYTEA, payload BYTEA,"
    " props BYTEA, qos INT, retain INT, expire_at BIGINT);"
    "CREATE TABLE IF NOT EXISTS sess_items(seq BIGINT PRIMARY KEY, key BYTEA, pid BIGINT,"
    " qos INT, retain INT, state INT, packet_id INT, ids BYTEA);"
    "CREATE INDEX IF NOT EXISTS sess_items_key ON sess_items(key);"
    "CREATE TABLE IF NOT EXISTS sess_rx(key BYTEA, packet_id INT, PRIMARY KEY(key, packet_id));"
    /* Items of sessions that are gone (as sessions_sqlite.c). */
    "DELETE FROM sess_items WHERE key NOT IN (SELECT key FROM sess_sessions);";
/* pg_advisory_xact_lock key of the schema: nodes starting together. */
#define SCHEMA_LOCK "7303012"

/* A cluster node's sessions are in a schema of its own, named from its
 * node_id; public.sess_nodes lists them. While a node runs, its writer's
 * connection holds an advisory lock keyed like its schema: a node that
 * takes over a session from another's schema takes that lock first, so it
 * takes only from nodes that are gone. */
#define NODES_TABLE                                                                                \
    "CREATE TABLE IF NOT EXISTS public.sess_nodes(schema TEXT PRIMARY KEY, node TEXT NOT NULL,"    \
    " lock_key BIGINT NOT NULL)"

struct sstore_pg {
    struct sstore base; /* first: the handle callers hold */
    struct pg_conn c;   /* the one writer's (the caller serialises) */
    char schema[32];    /* a cluster node's ("": public, a single node) */
};

static const struct sstore_ops pg_ops;

static void spg_close(struct sstore *base)
{
    struct sstore_pg *s = (struct sstore_pg *)base;
    if (!s) return;
    pg_conn_close(&s->c);
    free(s);
}

static int make_schema(struct pg_conn *c)
{
    int rc = pg_begin(c);
    if (rc == 0) rc = pg_exec(c, "SELECT pg_advisory_xact_lock(" SCHEMA_LOCK ")", NULL, NULL, NULL);
    if (rc == 0) {
        /* A constant script of several statements: the simple protocol. */
        PGresult *r = PQexec(c->conn, schema);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            log_error("session store: %s", PQresultErrorMessage(r));
            rc = ERR_DB;
        }
        PQclear(r);
    }
    return pg_end(c, rc);
}

/* The schema and lock key of node: from the first 8 bytes of its SHA-256. */
static void node_schema(const char *node, char nsp[32], int64_t *lock_key)
{
    unsigned char h[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)node, strlen(node), h);
    uint64_t k = 0;
    for (int i = 0; i < 8; i++) k = k << 8 | h[i];
    snprintf(nsp, 32, "certmq_sess_%016" PRIx64, k);
    *lock_key = (int64_t)k;
}

/* Registers node's schema; the writer's connection then works in it and
 * holds the node's lock (refused while another process has it). */
static int node_open(struct sstore_pg *s, const char *node, bool writer)
{
    int64_t key;
    node_schema(node, s->schema, &key);
    struct pg_params p = {0};
    pg_text(&p, s->schema);
    pg_text(&p, node);
    pg_int(&p, key);
    int rc = pg_begin(&s->c);
    if (rc == 0)
        rc = pg_exec(&s->c, "SELECT pg_advisory_xact_lock(" SCHEMA_LOCK ")", NULL, NULL, NULL);
    if (rc == 0) rc = pg_exec(&s->c, NODES_TABLE, NULL, NULL, NULL);
    if (rc == 0)
        rc = pg_exec(&s->c,
                     "INSERT INTO public.sess_nodes VALUES($1, $2, $3) ON CONFLICT DO NOTHING", &p,
                     NULL, NULL);
    char sql[160];
    snprintf(sql, sizeof sql, "CREATE SCHEMA IF NOT EXISTS %s", s->schema);
    if (rc == 0) rc = pg_exec(&s->c, sql, NULL, NULL, NULL);
    rc = pg_end(&s->c, rc);
    if (rc < 0 || !writer) return rc;
    snprintf(sql, sizeof sql, "SET search_path TO %s; SELECT pg_try_advisory_lock(%" PRId64 ")",
             s->schema, key);
    rc = pg_conn_setup(&s->c, sql);
    if (rc < 0)
        log_error("session store: the sessions of node '%s' are held by another process (two "
                  "nodes with one node_id?)",
                  node);
    return rc;
}

int sstore_pg_open(const char *conninfo, const char *node, bool writer, struct sstore **out)
{
    struct sstore_pg *s = calloc(1, sizeof *s);
    ENSURE(s, ERR_NOMEM);
    s->base.ops = &pg_ops;
    int rc = pg_conn_open(&s->c, conninfo);
    if (rc == 0 && node) rc = node_open(s, node, writer);
    if (rc == 0 && writer) rc = make_schema(&s->c);
    if (rc < 0) {
        spg_close(&s->base);
        return rc;
    }
    *out = &s->base;
    return 0;
}

/* ---- apply ---- */

static void bytes(struct pg_params *p, struct jstr v)
{
    pg_blob(p, v.len ? (const void *)v.p : "", v.len);
}

static int put_session(struct pg_conn *c, const struct jrec *r)
{
    struct pg_params p = {0};
    bytes(&p, r->key);
    bytes(&p, r->tenant);
    bytes(&p, r->client_id);
    bytes(&p, r->identity);
    bytes(&p, r->anchor);
    pg_int(&p, r->kind);
    pg_int(&p, r->device);
    pg_int(&p, r->has_user_name);
    pg_int(&p, r->roles);
    pg_int(&p, r->expiry);
    pg_int(&p, r->offline_since);
    if (r->has_will) {
        pg_int(&p, r->will_delay);
        pg_int(&p, r->will_expiry);
        bytes(&p, r->topic);
        bytes(&p, r->payload);
        bytes(&p, r->props);
        pg_int(&p, r->qos);
        pg_int(&p, r->retain);
        pg_int(&p, r->expire_at);
    } else {
        for (int i = 0; i < 8; i++) pg_null(&p);
    }
    return pg_exec(c,
                   "INSERT INTO sess_sessions VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,"
                   "$14,$15,$16,$17,$18,$19) ON CONFLICT(key) DO UPDATE SET"
                   " tenant = excluded.tenant, client_id = excluded.client_id,"
                   " identity = excluded.identity, anchor = excluded.anchor,"
                   " kind = excluded.kind, device = excluded.device,"
                   " has_user_name = excluded.has_user_name, roles = excluded.roles,"
                   " expiry = excluded.expiry, offline_since = excluded.offline_since,"
                   " will_delay = excluded.will_delay, will_expiry = excluded.will_expiry,"
                   " will_topic = excluded.will_topic, will_payload = excluded.will_payload,"
                   " will_props = excluded.will_props, will_qos = excluded.will_qos,"
                   " will_retain = excluded.will_retain, will_expire_at = excluded.will_expire_at",
                   &p, NULL, NULL);
}

/* Runs sql with the record's key bound as $1. */
static int by_key(struct pg_conn *c, const char *sql, const struct jrec *r)
{
    struct pg_params p = {0};
    bytes(&p, r->key);
    return pg_exec(c, sql, &p, NULL, NULL);
}

static int put_sub(struct pg_conn *c, const struct jrec *r, bool del)
{
    struct pg_params p = {0};
    bytes(&p, r->key);
    bytes(&p, r->filter);
    bytes(&p, r->group);
    if (del)
        return pg_exec(c, "DELETE FROM sess_subs WHERE key = $1 AND filter = $2 AND grp = $3", &p,
                       NULL, NULL);
    pg_int(&p, r->qos);
    pg_int(&p, r->opts);
    pg_int(&p, r->sub_id);
    return pg_exec(c,
                   "INSERT INTO sess_subs VALUES($1,$2,$3,$4,$5,$6) ON CONFLICT(key, filter, grp)"
                   " DO UPDATE SET qos = excluded.qos, opts = excluded.opts,"
                   " sub_id = excluded.sub_id",
                   &p, NULL, NULL);
}

static int put_msg(struct pg_conn *c, const struct jrec *r)
{
    struct pg_params p = {0};
    pg_int(&p, (int64_t)r->pid);
    bytes(&p, r->topic);
    bytes(&p, r->payload);
    bytes(&p, r->props);
    pg_int(&p, r->qos);
    pg_int(&p, r->retain);
    pg_int(&p, r->expire_at);
    return pg_exec(c,
                   "INSERT INTO sess_msgs VALUES($1,$2,$3,$4,$5,$6,$7) ON CONFLICT(pid) DO UPDATE"
                   " SET topic = excluded.topic, payload = excluded.payload,"
                   " props = excluded.props, qos = excluded.qos, retain = excluded.retain,"
                   " expire_at = excluded.expire_at",
                   &p, NULL, NULL);
}

static int put_item(struct pg_conn *c, const struct jrec *r)
{
    struct pg_params p = {0};
    pg_int(&p, (int64_t)r->seq);
    bytes(&p, r->key);
    pg_int(&p, (int64_t)r->pid);
    pg_int(&p, r->qos);
    pg_int(&p, r->retain);
    pg_int(&p, r->state);
    pg_int(&p, r->packet_id);
    pg_blob(&p, r->n_ids ? (const void *)r->ids : "", (size_t)r->n_ids * 4);
    return pg_exec(c,
                   "INSERT INTO sess_items VALUES($1,$2,$3,$4,$5,$6,$7,$8) ON CONFLICT(seq) DO"
                   " UPDATE SET key = excluded.key, pid = excluded.pid, qos = excluded.qos,"
                   " retain = excluded.retain, state = excluded.state,"
                   " packet_id = excluded.packet_id, ids = excluded.ids",
                   &p, NULL, NULL);
}

/* A statement keyed by one integer (a message's pid, an item's seq). */
static int by_id(struct pg_conn *c, const char *sql, uint64_t id)
{
    struct pg_params p = {0};
    pg_int(&p, (int64_t)id);
    return pg_exec(c, sql, &p, NULL, NULL);
}

static int put_rx(struct pg_conn *c, const struct jrec *r, bool del)
{
    struct pg_params p = {0};
    bytes(&p, r->key);
    pg_int(&p, r->packet_id);
    return pg_exec(c,
                   del ? "DELETE FROM sess_rx WHERE key = $1 AND packet_id = $2"
                       : "INSERT INTO sess_rx VALUES($1,$2) ON CONFLICT DO NOTHING",
                   &p, NULL, NULL);
}

static int apply_one(struct pg_conn *c, const struct jrec *r)
{
    struct pg_params p = {0};
    switch ((enum jtype)r->type) {
    case J_SESSION_PUT: return put_session(c, r);
    case J_SESSION_DEL:
        GUARD(by_key(c, "DELETE FROM sess_subs WHERE key = $1", r));
        GUARD(by_key(c, "DELETE FROM sess_items WHERE key = $1", r));
        GUARD(by_key(c, "DELETE FROM sess_rx WHERE key = $1", r));
        return by_key(c, "DELETE FROM sess_sessions WHERE key = $1", r);
    case J_SUB_PUT: return put_sub(c, r, false);
    case J_SUB_DEL: return put_sub(c, r, true);
    case J_MSG_PUT: return put_msg(c, r);
    case J_MSG_DEL: return by_id(c, "DELETE FROM sess_msgs WHERE pid = $1", r->pid);
    case J_ITEM_PUT: return put_item(c, r);
    case J_ITEM_UPD:
        pg_int(&p, r->state);
        pg_int(&p, r->packet_id);
        pg_int(&p, (int64_t)r->seq);
        return pg_exec(c, "UPDATE sess_items SET state = $1, packet_id = $2 WHERE seq = $3", &p,
                       NULL, NULL);
    case J_ITEM_DEL: return by_id(c, "DELETE FROM sess_items WHERE seq = $1", r->seq);
    case J_RX_PUT: return put_rx(c, r, false);
    case J_RX_DEL: return put_rx(c, r, true);
    }
    return ERR_MALFORMED;
}

static int spg_apply(struct sstore *base, const uint8_t *j, size_t len)
{
    struct pg_conn *c = &((struct sstore_pg *)base)->c;
    /* One round trip per chunk of records, not per record. */
    GUARD(pg_pipeline_begin(c));
    struct rd r = rd_make(j, len);
    struct jrec rec;
    int rc = 0;
    while (rc == 0 && rd_left(&r)) {
        rc = journal_next(&r, &rec);
        if (rc == 0) rc = apply_one(c, &rec);
    }
    return pg_pipeline_end(c, rc);
}

/* ---- load ---- */

/* A bytea column of a binary result; "" (never NULL) when empty or NULL:
 * the records' users copy from it with memcpy. */
static struct jstr col_str(const PGresult *r, int row, int col)
{
    if (PQgetisnull(r, row, col)) return (struct jstr){(const uint8_t *)"", 0};
    return (struct jstr){(const uint8_t *)PQgetvalue(r, row, col),
                         (uint32_t)PQgetlength(r, row, col)};
}

static void row_session(const PGresult *q, int i, struct jrec *r)
{
    r->type = J_SESSION_PUT;
    r->key = col_str(q, i, 0);
    r->tenant = col_str(q, i, 1);
    r->client_id = col_str(q, i, 2);
    r->identity = col_str(q, i, 3);
    r->anchor = col_str(q, i, 4);
    r->kind = (uint8_t)pg_bin_int(q, i, 5);
    r->device = (uint8_t)pg_bin_int(q, i, 6);
    r->has_user_name = (uint8_t)pg_bin_int(q, i, 7);
    r->roles = (uint32_t)pg_bin_int(q, i, 8);
    r->expiry = (uint32_t)pg_bin_int(q, i, 9);
    r->offline_since = pg_bin_int(q, i, 10);
    r->has_will = !PQgetisnull(q, i, 13);
    r->will_delay = (uint32_t)pg_bin_int(q, i, 11);
    r->will_expiry = (uint32_t)pg_bin_int(q, i, 12);
    r->topic = col_str(q, i, 13);
    r->payload = col_str(q, i, 14);
    r->props = col_str(q, i, 15);
    r->qos = (uint8_t)pg_bin_int(q, i, 16);
    r->retain = (uint8_t)pg_bin_int(q, i, 17);
    r->expire_at = pg_bin_int(q, i, 18);
}

static void row_sub(const PGresult *q, int i, struct jrec *r)
{
    r->type = J_SUB_PUT;
    r->key = col_str(q, i, 0);
    r->filter = col_str(q, i, 1);
    r->group = col_str(q, i, 2);
    r->qos = (uint8_t)pg_bin_int(q, i, 3);
    r->opts = (uint8_t)pg_bin_int(q, i, 4);
    r->sub_id = (uint32_t)pg_bin_int(q, i, 5);
}

static void row_msg(const PGresult *q, int i, struct jrec *r)
{
    r->type = J_MSG_PUT;
    r->pid = (uint64_t)pg_bin_int(q, i, 0);
    r->topic = col_str(q, i, 1);
    r->payload = col_str(q, i, 2);
    r->props = col_str(q, i, 3);
    r->qos = (uint8_t)pg_bin_int(q, i, 4);
    r->retain = (uint8_t)pg_bin_int(q, i, 5);
    r->expire_at = pg_bin_int(q, i, 6);
}

static void row_item(const PGresult *q, int i, struct jrec *r)
{
    r->type = J_ITEM_PUT;
    r->seq = (uint64_t)pg_bin_int(q, i, 0);
    r->key = col_str(q, i, 1);
    r->pid = (uint64_t)pg_bin_int(q, i, 2);
    r->qos = (uint8_t)pg_bin_int(q, i, 3);
    r->retain = (uint8_t)pg_bin_int(q, i, 4);
    r->state = (uint8_t)pg_bin_int(q, i, 5);
    r->packet_id = (uint16_t)pg_bin_int(q, i, 6);
    struct jstr ids = col_str(q, i, 7);
    r->n_ids = (uint16_t)(ids.len / 4);
    r->ids = ids.p;
}

static void row_rx(const PGresult *q, int i, struct jrec *r)
{
    r->type = J_RX_PUT;
    r->key = col_str(q, i, 0);
    r->packet_id = (uint16_t)pg_bin_int(q, i, 1);
}

/* Runs query and hands each row, made a record by conv, to fn. */
static int load_rows(struct pg_conn *c, const char *query,
                     void (*conv)(const PGresult *, int, struct jrec *), sstore_load_fn fn,
                     void *arg)
{
    PGresult *q = NULL;
    int rc = pg_exec_fmt(c, query, NULL, &q, NULL, 1);
    for (int i = 0; rc == 0 && q && i < PQntuples(q); i++) {
        struct jrec rec = {0};
        conv(q, i, &rec);
        rc = fn(arg, &rec);
    }
    PQclear(q);
    return rc;
}

static int spg_load(struct sstore *base, sstore_load_fn fn, void *arg)
{
    struct pg_conn *c = &((struct sstore_pg *)base)->c;
    GUARD(load_rows(c, "SELECT * FROM sess_sessions", row_session, fn, arg));
    GUARD(load_rows(c, "SELECT * FROM sess_subs", row_sub, fn, arg));
    GUARD(load_rows(c, "SELECT * FROM sess_msgs ORDER BY pid", row_msg, fn, arg));
    GUARD(load_rows(c, "SELECT * FROM sess_items ORDER BY seq", row_item, fn, arg));
    return load_rows(c, "SELECT * FROM sess_rx", row_rx, fn, arg);
}

/* ---- taking a session from a node that is gone ---- */

struct take {
    struct buf *out;
    size_t rows;
};

static int take_row(void *arg, const struct jrec *r)
{
    struct take *t = arg;
    t->rows++;
    return journal_put(t->out, r);
}

/* Appends the rows of sql (key bound as $1) to t as records. */
static int read_rows(struct pg_conn *c, const char *sql, const struct pg_params *kp,
                     void (*conv)(const PGresult *, int, struct jrec *), struct take *t)
{
    PGresult *q = NULL;
    int rc = pg_exec_fmt(c, sql, kp, &q, NULL, 1);
    for (int row = 0; rc == 0 && q && row < PQntuples(q); row++) {
        struct jrec rec = {0};
        conv(q, row, &rec);
        rc = take_row(t, &rec);
    }
    PQclear(q);
    return rc;
}

/* Reads key's rows in schema nsp as records into out, then deletes them
 * (not its messages: the node's restart drops those no item holds). */
static int take_from(struct pg_conn *c, const char *nsp, const struct pg_params *kp,
                     struct buf *out, bool *found)
{
    char sql[256];
    struct take t = {out, 0};
    snprintf(sql, sizeof sql, "SELECT * FROM %s.sess_sessions WHERE key = $1", nsp);
    GUARD(read_rows(c, sql, kp, row_session, &t));
    if (!t.rows) return 0; /* not there */
    snprintf(sql, sizeof sql, "SELECT * FROM %s.sess_subs WHERE key = $1", nsp);
    GUARD(read_rows(c, sql, kp, row_sub, &t));
    snprintf(sql, sizeof sql,
             "SELECT * FROM %s.sess_msgs WHERE pid IN (SELECT pid FROM %s.sess_items WHERE key ="
             " $1) ORDER BY pid",
             nsp, nsp);
    GUARD(read_rows(c, sql, kp, row_msg, &t));
    snprintf(sql, sizeof sql, "SELECT * FROM %s.sess_items WHERE key = $1 ORDER BY seq", nsp);
    GUARD(read_rows(c, sql, kp, row_item, &t));
    snprintf(sql, sizeof sql, "SELECT * FROM %s.sess_rx WHERE key = $1", nsp);
    GUARD(read_rows(c, sql, kp, row_rx, &t));
    static const char *const tables[] = {"sess_subs", "sess_items", "sess_rx", "sess_sessions"};
    for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++) {
        snprintf(sql, sizeof sql, "DELETE FROM %s.%s WHERE key = $1", nsp, tables[i]);
        GUARD(pg_exec(c, sql, kp, NULL, NULL));
    }
    *found = true;
    return 0;
}

/* The schemas of the other nodes, and whether each is gone (its lock is
 * free: taken now, to the end of this transaction). */
static bool named(const char *const *live, const char *node)
{
    for (; live && *live; live++)
        if (!strcmp(*live, node)) return true;
    return false;
}

static int spg_take(struct sstore *base, const char *key, size_t klen, const char *const *live,
                    struct buf *out)
{
    struct sstore_pg *s = (struct sstore_pg *)base;
    struct pg_conn *c = &s->c;
    struct pg_params me = {0}, kp = {0};
    pg_text(&me, s->schema);
    pg_blob(&kp, key, klen);
    size_t used = buf_used(out);
    bool found = false;
    PGresult *nodes = NULL;
    int rc = pg_begin(c);
    if (rc == 0)
        rc = pg_exec(
            c,
            "SELECT schema, pg_try_advisory_xact_lock(lock_key), node FROM public.sess_nodes"
            " WHERE schema <> $1",
            &me, &nodes, NULL);
    for (int i = 0; rc == 0 && nodes && !found && i < PQntuples(nodes); i++) {
        if (strcmp(pg_col(nodes, i, 1), "t") != 0 || named(live, pg_col(nodes, i, 2)))
            continue; /* alive */
        rc = take_from(c, pg_col(nodes, i, 0), &kp, out, &found);
        if (found) log_info("session store: a session of %s taken over", pg_col(nodes, i, 0));
    }
    PQclear(nodes);
    rc = pg_end(c, rc);
    if (rc < 0) out->len = out->off + used;
    return rc < 0 ? rc : found;
}

static const struct sstore_ops pg_ops = {
    .close = spg_close,
    .apply = spg_apply,
    .load = spg_load,
    .take = spg_take,
};
