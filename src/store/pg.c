/* PostgreSQL backend of the store (store.h) over libpq: one connection
 * under one mutex, bound parameters only, SQLite's schema versions in a
 * schema_version table, and a lost connection reset once, then retried at
 * most once a second (calls in between answer ERR_UNAVAILABLE). */
#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "core/metrics.h"
#include "store/pg_int.h"

/* Schema migrations: entry i brings the database from version i to i+1,
 * the same numbering as sqlite.c. seq columns keep insertion order, which
 * SQLite's rowid gives. */
static const char *const migrations[] = {
    "CREATE TABLE tenants(id TEXT PRIMARY KEY, domain TEXT NOT NULL DEFAULT '',"
    " company TEXT NOT NULL DEFAULT '', created BIGINT NOT NULL, seq BIGSERIAL);"
    "CREATE TABLE users(tenant TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,"
    " name TEXT NOT NULL, email TEXT NOT NULL DEFAULT '', pw_hash TEXT NOT NULL DEFAULT '',"
    " roles INTEGER NOT NULL, device INTEGER NOT NULL DEFAULT 0, created BIGINT NOT NULL,"
    " seq BIGSERIAL, PRIMARY KEY(tenant, name));"
    "CREATE TABLE trusted_certs(tenant TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,"
    " fingerprint TEXT NOT NULL, name TEXT NOT NULL DEFAULT '', enabled INTEGER NOT NULL,"
    " auto_registration INTEGER NOT NULL, der BYTEA NOT NULL, pop_valid INTEGER NOT NULL"
    " DEFAULT 0, pop_code TEXT NOT NULL DEFAULT '', pop_until BIGINT NOT NULL DEFAULT 0,"
    " created BIGINT NOT NULL, seq BIGSERIAL, PRIMARY KEY(tenant, fingerprint));"
    "CREATE TABLE devices(tenant TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,"
    " cn TEXT NOT NULL, type TEXT NOT NULL DEFAULT '', name TEXT NOT NULL DEFAULT '',"
    " auth_type TEXT NOT NULL DEFAULT '', props TEXT NOT NULL DEFAULT '{}',"
    " created BIGINT NOT NULL, seq BIGSERIAL, PRIMARY KEY(tenant, cn));"
    "CREATE TABLE options(tenant TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,"
    " category TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,"
    " PRIMARY KEY(tenant, category, key));"
    "CREATE TABLE crl_entries(tenant TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,"
    " serial TEXT NOT NULL, revoked BIGINT NOT NULL, seq BIGSERIAL,"
    " PRIMARY KEY(tenant, serial));",
    /* 2: per-tenant device-token signing keys */
    "CREATE TABLE token_keys(tenant TEXT PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,"
    " priv_pem TEXT NOT NULL, pub_pem TEXT NOT NULL, created BIGINT NOT NULL);",
    /* 3: retained messages by topic space ("" is the static space: no FK) */
    "CREATE TABLE retained(tenant TEXT NOT NULL, topic BYTEA NOT NULL, payload BYTEA NOT NULL,"
    " qos INTEGER NOT NULL, seq BIGSERIAL, PRIMARY KEY(tenant, topic));",
    /* 4: token keys sealed (core/seal.h) */
    "ALTER TABLE token_keys ADD COLUMN priv_sealed BYTEA;",
    /* 5: topic authorization */
    "CREATE TABLE authz_rules(tenant TEXT PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,"
    " rules TEXT NOT NULL);"
    "CREATE TABLE authz_roles(tenant TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,"
    " \"user\" TEXT NOT NULL, roles TEXT NOT NULL, PRIMARY KEY(tenant, \"user\"));",
    /* 6: certificate lifecycle (pg_ca.c) */
    "CREATE TABLE tenant_ca(tenant TEXT PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,"
    " der BYTEA NOT NULL, key_sealed BYTEA NOT NULL, created BIGINT NOT NULL);"
    "CREATE TABLE enroll_tokens(hash TEXT PRIMARY KEY, tenant TEXT NOT NULL"
    " REFERENCES tenants(id) ON DELETE CASCADE, device TEXT NOT NULL, valid_until BIGINT"
    " NOT NULL, used INTEGER NOT NULL DEFAULT 0, created BIGINT NOT NULL);"
    "CREATE TABLE issuances(tenant TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,"
    " serial TEXT NOT NULL, cn TEXT NOT NULL, not_after BIGINT NOT NULL, method TEXT NOT NULL,"
    " actor TEXT NOT NULL, issued BIGINT NOT NULL, seq BIGSERIAL, PRIMARY KEY(tenant, serial));",
    /* 7: when each device last connected, and its certificate's notAfter */
    "CREATE TABLE device_seen(tenant TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,"
    " cn TEXT NOT NULL, last_seen BIGINT NOT NULL, not_after BIGINT NOT NULL,"
    " PRIMARY KEY(tenant, cn));",
    /* 8: every committed change to what nodes hold in memory is announced on
     * channel certmq as a JSON array [table, op, tenant, key...] (pg_watch.c) */
    "CREATE FUNCTION certmq_notify() RETURNS trigger LANGUAGE plpgsql AS $$"
    " DECLARE r jsonb; a jsonb; BEGIN"
    " IF TG_OP = 'DELETE' THEN r := to_jsonb(OLD); ELSE r := to_jsonb(NEW); END IF;"
    " a := jsonb_build_array(TG_TABLE_NAME, TG_OP);"
    " FOR i IN 0 .. TG_NARGS - 1 LOOP a := a || jsonb_build_array(r->>TG_ARGV[i]); END LOOP;"
    " PERFORM pg_notify('certmq', a::text); RETURN NULL; END $$;"
    "CREATE TRIGGER notify AFTER INSERT OR UPDATE OR DELETE ON tenants FOR EACH ROW"
    " EXECUTE FUNCTION certmq_notify('id');"
    "CREATE TRIGGER notify AFTER INSERT OR UPDATE OR DELETE ON trusted_certs FOR EACH ROW"
    " EXECUTE FUNCTION certmq_notify('tenant', 'fingerprint');"
    "CREATE TRIGGER notify AFTER INSERT OR DELETE ON devices FOR EACH ROW"
    " EXECUTE FUNCTION certmq_notify('tenant', 'cn');"
    "CREATE TRIGGER notify AFTER INSERT OR UPDATE OR DELETE ON users FOR EACH ROW"
    " EXECUTE FUNCTION certmq_notify('tenant', 'name');"
    "CREATE TRIGGER notify AFTER INSERT OR UPDATE OR DELETE ON crl_entries FOR EACH ROW"
    " EXECUTE FUNCTION certmq_notify('tenant', 'serial');"
    "CREATE TRIGGER notify AFTER INSERT OR UPDATE OR DELETE ON options FOR EACH ROW"
    " EXECUTE FUNCTION certmq_notify('tenant', 'category', 'key');"
    "CREATE TRIGGER notify AFTER INSERT OR UPDATE OR DELETE ON authz_rules FOR EACH ROW"
    " EXECUTE FUNCTION certmq_notify('tenant');"
    "CREATE TRIGGER notify AFTER INSERT OR UPDATE OR DELETE ON authz_roles FOR EACH ROW"
    " EXECUTE FUNCTION certmq_notify('tenant', 'user');"
    "CREATE TRIGGER notify AFTER INSERT OR UPDATE OR DELETE ON tenant_ca FOR EACH ROW"
    " EXECUTE FUNCTION certmq_notify('tenant');",
    /* 9: retained messages announced too, by the hex SHA-256 of the topic (a
     * topic may be 64 KiB, a notice at most 8000 bytes), and found again by
     * that digest through an index on it */
    "CREATE FUNCTION certmq_notify_retained() RETURNS trigger LANGUAGE plpgsql AS $$"
    " DECLARE r retained; BEGIN"
    " IF TG_OP = 'DELETE' THEN r := OLD; ELSE r := NEW; END IF;"
    " PERFORM pg_notify('certmq', jsonb_build_array(TG_TABLE_NAME, TG_OP, r.tenant,"
    " encode(sha256(r.topic), 'hex'))::text); RETURN NULL; END $$;"
    "CREATE TRIGGER notify AFTER INSERT OR UPDATE OR DELETE ON retained FOR EACH ROW"
    " EXECUTE FUNCTION certmq_notify_retained();"
    "CREATE INDEX retained_digest ON retained(tenant, encode(sha256(topic), 'hex'));",
    /* 10: TLS session-ticket keys shared by the nodes, sealed (pg_ticket.c) */
    "CREATE TABLE ticket_keys(period BIGINT NOT NULL, slot BIGINT NOT NULL,"
    " sealed BYTEA NOT NULL, created BIGINT NOT NULL, PRIMARY KEY(period, slot));",
};
#define SCHEMA_VERSION ((int)(sizeof migrations / sizeof migrations[0]))
/* pg_advisory_xact_lock key of the migrations: nodes starting together
 * migrate one after the other. */
#define MIGRATE_LOCK "7303011"

#define RECONNECT_EVERY_US 1000000

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* ---- connection ---- */

static void conn_describe(struct pg_conn *c)
{
    const char *h = PQhost(c->conn), *p = PQport(c->conn), *d = PQdb(c->conn);
    snprintf(c->where, sizeof c->where, "%s:%s/%s", h ? h : "?", p ? p : "?", d ? d : "?");
}

/* The connection's setup statements: their last row must say true. */
static bool run_setup(struct pg_conn *c)
{
    PGresult *r = PQexec(c->conn, c->setup);
    bool ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
              !strcmp(PQgetvalue(r, 0, 0), "t");
    if (!ok)
        log_error("store: postgresql %s: %s", c->where,
                  PQresultStatus(r) == PGRES_TUPLES_OK ? "connection setup refused"
                                                       : PQresultErrorMessage(r));
    PQclear(r);
    return ok;
}

/* (Re)connects unless the last attempt is under a second old. */
static int conn_try(struct pg_conn *c)
{
    uint64_t now = mono_us();
    if (c->down && now - c->last_try_us < RECONNECT_EVERY_US) return ERR_UNAVAILABLE;
    c->last_try_us = now;
    if (c->conn) {
        PQreset(c->conn);
    } else {
        /* connect_timeout first: the URI may set its own. */
        const char *const keys[] = {"connect_timeout", "dbname", NULL};
        const char *const vals[] = {"3", c->conninfo, NULL};
        c->conn = PQconnectdbParams(keys, vals, 1);
        if (!c->conn) return ERR_NOMEM;
        conn_describe(c);
    }
    bool ok = PQstatus(c->conn) == CONNECTION_OK;
    if (ok && c->down) log_info("store: connected again to postgresql %s", c->where);
    if (!ok && !c->down)
        log_error("store: postgresql %s unavailable: %s", c->where, PQerrorMessage(c->conn));
    c->down = !ok;
    c->in_tx = false;
    if (ok) {
        PGresult *r = PQexec(c->conn, "SET client_min_messages = warning");
        PQclear(r);
    }
    if (ok && c->setup && !run_setup(c)) {
        PQfinish(c->conn);
        c->conn = NULL;
        c->down = true;
        ok = false;
    }
    return ok ? 0 : ERR_UNAVAILABLE;
}

int pg_conn_setup(struct pg_conn *c, const char *setup)
{
    c->setup = strdup(setup);
    ENSURE(c->setup, ERR_NOMEM);
    if (c->conn && PQstatus(c->conn) == CONNECTION_OK && run_setup(c)) return 0;
    c->down = true;
    return ERR_UNAVAILABLE;
}

int pg_conn_open(struct pg_conn *c, const char *conninfo)
{
    memset(c, 0, sizeof *c);
    c->conninfo = strdup(conninfo);
    ENSURE(c->conninfo, ERR_NOMEM);
    return conn_try(c);
}

void pg_conn_close(struct pg_conn *c)
{
    if (c->conn) PQfinish(c->conn);
    if (c->conninfo) explicit_bzero(c->conninfo, strlen(c->conninfo));
    free(c->conninfo);
    free(c->setup);
    memset(c, 0, sizeof *c);
}

/* ---- parameters and columns ---- */

static bool param_room(struct pg_params *p)
{
    if (p->n < PG_MAX_PARAMS) return true;
    log_error("store: too many query parameters");
    return false;
}

void pg_text(struct pg_params *p, const char *s)
{
    if (!param_room(p)) return;
    p->v[p->n] = s ? s : "";
    p->len[p->n] = 0;
    p->fmt[p->n] = 0;
    p->n++;
}

void pg_int(struct pg_params *p, int64_t v)
{
    if (!param_room(p)) return;
    snprintf(p->num[p->n], sizeof p->num[0], "%lld", (long long)v);
    pg_text(p, p->num[p->n]);
}

void pg_null(struct pg_params *p)
{
    if (!param_room(p)) return;
    pg_text(p, NULL);
    p->v[p->n - 1] = NULL;
}

void pg_blob(struct pg_params *p, const void *b, size_t n)
{
    if (!param_room(p)) return;
    p->v[p->n] = b ? b : "";
    p->len[p->n] = (int)n;
    p->fmt[p->n] = 1;
    p->n++;
}

const char *pg_col(const PGresult *r, int row, int col)
{
    return PQgetvalue(r, row, col);
}

int64_t pg_col_int(const PGresult *r, int row, int col)
{
    return strtoll(PQgetvalue(r, row, col), NULL, 10);
}

int64_t pg_bin_int(const PGresult *r, int row, int col)
{
    if (PQgetisnull(r, row, col)) return 0;
    const unsigned char *b = (const unsigned char *)PQgetvalue(r, row, col);
    int n = PQgetlength(r, row, col);
    uint64_t v = n > 0 && (b[0] & 0x80) ? UINT64_MAX : 0; /* sign-extended */
    for (int i = 0; i < n && i < 8; i++) v = v << 8 | b[i];
    return (int64_t)v;
}

int pg_col_blob(const PGresult *r, int row, int col, void **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (PQgetisnull(r, row, col)) return 0;
    size_t len = 0;
    unsigned char *b = PQunescapeBytea((const unsigned char *)PQgetvalue(r, row, col), &len);
    ENSURE(b, ERR_NOMEM);
    *out = malloc(len ? len : 1);
    if (*out && len) memcpy(*out, b, len);
    PQfreemem(b);
    ENSURE(*out, ERR_NOMEM);
    *n = len;
    return 0;
}

/* ---- statements ---- */

static int map_result(struct pg_conn *c, const PGresult *r)
{
    ExecStatusType s = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK) return 0;
    if (PQstatus(c->conn) != CONNECTION_OK) return ERR_UNAVAILABLE;
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    if (state && strcmp(state, "23505") == 0) return ERR_EXISTS;
    if (state && strcmp(state, "23503") == 0) return ERR_NOT_FOUND;
    log_error("store: postgresql: %s", r ? PQresultErrorMessage(r) : PQerrorMessage(c->conn));
    return ERR_DB;
}

static PGresult *exec_params(struct pg_conn *c, const char *sql, const struct pg_params *p,
                             int binary)
{
    return PQexecParams(c->conn, sql, p ? p->n : 0, NULL, p ? p->v : NULL, p ? p->len : NULL,
                        p ? p->fmt : NULL, binary);
}

int pg_exec(struct pg_conn *c, const char *sql, const struct pg_params *p, PGresult **res,
            size_t *changed)
{
    return pg_exec_fmt(c, sql, p, res, changed, 0);
}

/* ---- pipelines ---- */

/* Statements sent before a sync collects their results: small enough that
 * their results never fill the socket while the client is still writing. */
#define PIPELINE_CHUNK 256

/* Drops a connection whose pipeline broke: the next call connects anew. */
static int pipeline_lost(struct pg_conn *c)
{
    PQfinish(c->conn);
    c->conn = NULL;
    c->pipeline = false;
    c->in_tx = false;
    c->queued = 0;
    c->down = false;
    ignore_result(conn_try(c));
    return ERR_UNAVAILABLE;
}

/* Syncs and reads the results of the statements queued since the last
 * sync; the first failure is the status (aborted followers are not). */
static int pipeline_collect(struct pg_conn *c)
{
    int rc = PQpipelineSync(c->conn) == 1 ? 0 : ERR_UNAVAILABLE;
    for (int i = 0; rc != ERR_UNAVAILABLE && i < c->queued; i++) {
        PGresult *r = PQgetResult(c->conn);
        if (!r) {
            rc = ERR_UNAVAILABLE;
            break;
        }
        if (PQresultStatus(r) != PGRES_PIPELINE_ABORTED && c->pipe_rc == 0)
            c->pipe_rc = map_result(c, r);
        PQclear(r);
        PQclear(PQgetResult(c->conn)); /* the NULL that ends each statement's results */
    }
    c->queued = 0;
    if (rc == 0) {
        PGresult *r = PQgetResult(c->conn);
        if (!r || PQresultStatus(r) != PGRES_PIPELINE_SYNC) rc = ERR_UNAVAILABLE;
        PQclear(r);
    }
    return rc < 0 ? rc : c->pipe_rc;
}

int pg_pipeline_begin(struct pg_conn *c)
{
    if (!c->conn || c->down || PQstatus(c->conn) != CONNECTION_OK) GUARD(conn_try(c));
    if (PQenterPipelineMode(c->conn) != 1) return pipeline_lost(c);
    c->pipeline = true;
    c->queued = 0;
    c->pipe_rc = 0;
    if (pg_exec(c, "BEGIN", NULL, NULL, NULL) < 0) return pipeline_lost(c);
    c->in_tx = true;
    return 0;
}

int pg_pipeline_end(struct pg_conn *c, int rc)
{
    if (!c->pipeline) return rc < 0 ? rc : ERR_UNAVAILABLE;
    if (rc == 0) rc = c->pipe_rc;
    int sent = pg_exec(c, rc == 0 ? "COMMIT" : "ROLLBACK", NULL, NULL, NULL);
    int got = sent == 0 ? pipeline_collect(c) : sent;
    if (got == ERR_UNAVAILABLE || PQexitPipelineMode(c->conn) != 1) return pipeline_lost(c);
    c->pipeline = false;
    c->in_tx = false;
    /* A statement of the last chunk failed: its COMMIT was skipped and the
     * transaction waits, aborted, for a ROLLBACK. */
    if (PQtransactionStatus(c->conn) != PQTRANS_IDLE) {
        PGresult *r = PQexec(c->conn, "ROLLBACK");
        PQclear(r);
    }
    return rc < 0 ? rc : got;
}

/* In a pipeline: queues the statement (results come with the next sync). */
static int pipeline_send(struct pg_conn *c, const char *sql, const struct pg_params *p)
{
    if (c->pipe_rc < 0) return c->pipe_rc; /* an earlier statement failed: stop */
    if (PQsendQueryParams(c->conn, sql, p ? p->n : 0, NULL, p ? p->v : NULL, p ? p->len : NULL,
                          p ? p->fmt : NULL, 0) != 1)
        return ERR_UNAVAILABLE;
    if (++c->queued < PIPELINE_CHUNK) return 0;
    return pipeline_collect(c);
}

int pg_exec_fmt(struct pg_conn *c, const char *sql, const struct pg_params *p, PGresult **res,
                size_t *changed, int binary)
{
    if (c->pipeline) return pipeline_send(c, sql, p);
    if (res) *res = NULL;
    if (!c->conn || c->down || PQstatus(c->conn) != CONNECTION_OK) GUARD(conn_try(c));
    PGresult *r = exec_params(c, sql, p, binary);
    int rc = map_result(c, r);
    if (rc == ERR_UNAVAILABLE) {
        /* Lost: reset once. Outside a transaction the statement runs again
         * (it never reached a commit); inside one the work is gone. */
        bool was_tx = c->in_tx;
        PQclear(r);
        r = NULL;
        c->down = false;
        rc = conn_try(c);
        if (rc == 0 && was_tx) rc = ERR_UNAVAILABLE;
        if (rc == 0) {
            r = exec_params(c, sql, p, binary);
            rc = map_result(c, r);
        }
    }
    if (rc == 0 && changed) *changed = (size_t)strtoull(PQcmdTuples(r), NULL, 10);
    if (rc == 0 && res && PQresultStatus(r) == PGRES_TUPLES_OK) {
        *res = r;
        r = NULL;
    }
    PQclear(r);
    return rc;
}

int pg_begin(struct pg_conn *c)
{
    GUARD(pg_exec(c, "BEGIN", NULL, NULL, NULL));
    c->in_tx = true;
    return 0;
}

int pg_end(struct pg_conn *c, int rc)
{
    if (!c->in_tx) return rc < 0 ? rc : ERR_UNAVAILABLE; /* lost with its connection */
    if (rc == 0)
        rc = pg_exec(c, "COMMIT", NULL, NULL, NULL);
    else if (PQstatus(c->conn) == CONNECTION_OK)
        ignore_result(pg_exec(c, "ROLLBACK", NULL, NULL, NULL));
    c->in_tx = false;
    return rc;
}

/* ---- the handle ---- */

static struct store_pg *pgs(struct store *st)
{
    return (struct store_pg *)st;
}

struct pg_conn *pg_lock(struct store *st)
{
    uint64_t t0 = mono_us();
    pthread_mutex_lock(&pgs(st)->mu);
    pgs(st)->op_start_us = t0;
    return &pgs(st)->c;
}

void pg_unlock(struct store *st)
{
    uint64_t took = mono_us() - pgs(st)->op_start_us;
    pthread_mutex_unlock(&pgs(st)->mu);
    metrics_store_op(took);
}

int pg_run(struct store *st, const char *sql, const struct pg_params *p, PGresult **res,
           size_t *changed)
{
    int rc = pg_exec(pg_lock(st), sql, p, res, changed);
    pg_unlock(st);
    return rc;
}

int pg_each(struct store *st, const char *sql, const struct pg_params *p, pg_row_fn row,
            const struct pg_visit *v)
{
    PGresult *r = NULL;
    int rc = pg_run(st, sql, p, &r, NULL);
    for (int i = 0; rc == 0 && r && i < PQntuples(r); i++) rc = row(r, i, v);
    PQclear(r);
    return rc;
}

int pg_one(struct store *st, const char *sql, const struct pg_params *p, PGresult **r)
{
    int rc = pg_run(st, sql, p, r, NULL);
    if (rc == 0 && (!*r || PQntuples(*r) == 0)) rc = ERR_NOT_FOUND;
    if (rc < 0) {
        PQclear(*r);
        *r = NULL;
    }
    return rc;
}

int pg_count(struct store *st, const char *sql, const char *param, size_t *n)
{
    struct pg_params p = {0};
    if (param) pg_text(&p, param);
    PGresult *r = NULL;
    int rc = pg_one(st, sql, &p, &r);
    if (rc == 0) *n = (size_t)pg_col_int(r, 0, 0);
    PQclear(r);
    return rc;
}

void pg_limit(struct pg_params *p, size_t limit)
{
    if (limit == 0 || limit > INT64_MAX)
        pg_null(p);
    else
        pg_int(p, (int64_t)limit);
}

/* Applies every migration above the recorded version in one transaction,
 * under an advisory lock so that nodes starting together take turns. */
static int migrate(struct store_pg *st)
{
    struct pg_conn *c = &st->c;
    PGresult *r = NULL;
    int v = 0;
    int rc = pg_begin(c);
    if (rc == 0)
        rc = pg_exec(c, "SELECT pg_advisory_xact_lock(" MIGRATE_LOCK ")", NULL, NULL, NULL);
    if (rc == 0)
        rc = pg_exec(c, "CREATE TABLE IF NOT EXISTS schema_version(version INTEGER NOT NULL)", NULL,
                     NULL, NULL);
    if (rc == 0)
        rc = pg_exec(c, "SELECT coalesce(max(version), 0) FROM schema_version", NULL, &r, NULL);
    if (rc == 0) v = (int)pg_col_int(r, 0, 0);
    PQclear(r);
    if (rc == 0 && v > SCHEMA_VERSION) {
        log_error("store: database schema %d is newer than this build (%d)", v, SCHEMA_VERSION);
        rc = ERR_DB;
    }
    for (int i = v; rc == 0 && i < SCHEMA_VERSION; i++) {
        /* A constant script of several statements: the simple protocol. */
        PGresult *m = PQexec(c->conn, migrations[i]);
        rc = map_result(c, m);
        PQclear(m);
    }
    if (rc == 0 && v < SCHEMA_VERSION) {
        struct pg_params p = {0};
        pg_int(&p, SCHEMA_VERSION);
        rc = pg_exec(c, "DELETE FROM schema_version", NULL, NULL, NULL);
        if (rc == 0) rc = pg_exec(c, "INSERT INTO schema_version VALUES($1::int)", &p, NULL, NULL);
    }
    rc = pg_end(c, rc);
    if (rc == 0) st->version = v > SCHEMA_VERSION ? v : SCHEMA_VERSION;
    return rc;
}

static const struct store_ops pg_ops;

static void pg_close(struct store *base)
{
    struct store_pg *st = pgs(base);
    pg_watch_stop(st);
    pg_conn_close(&st->c);
    pthread_mutex_destroy(&st->mu);
    free(st);
}

int store_pg_open(const char *conninfo, struct store **out)
{
    struct store_pg *st = calloc(1, sizeof *st);
    ENSURE(st, ERR_NOMEM);
    st->base.ops = &pg_ops;
    pthread_mutex_init(&st->mu, NULL);
    int rc = pg_conn_open(&st->c, conninfo);
    if (rc == 0) rc = migrate(st);
    if (rc < 0) {
        pg_close(&st->base);
        return rc;
    }
    log_info("store: postgresql %s, schema %d", st->c.where, st->version);
    *out = &st->base;
    return 0;
}

static int pg_schema_version(struct store *st)
{
    return pgs(st)->version;
}

static const struct store_ops pg_ops = {.close = pg_close,
                                        .schema_version = pg_schema_version,
                                        .watch = pgs_watch,
                                        .unwatch = pgs_unwatch,
#define PG_OP(name) .name = pgs_##name,
                                        PG_STORE_OPS(PG_OP)
#undef PG_OP
};
