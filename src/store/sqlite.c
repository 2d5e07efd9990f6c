/* SQLite backend of the store (store.h): one connection in WAL mode with
 * foreign keys on, guarded by one mutex; schema versions applied in order
 * from the migrations table below; every query is a cached prepared
 * statement with bound parameters, so no SQL is ever built from input. */
#include "store/store.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <time.h>

#include "core/log.h"
#include "core/metrics.h"
#include "store/sqlite_int.h"
#include "store/store_ops.h"

/* Schema migrations: entry i brings the database from version i to i+1. */
static const char *const migrations[] = {
    "CREATE TABLE tenants(id TEXT PRIMARY KEY, domain TEXT NOT NULL DEFAULT '',"
    " company TEXT NOT NULL DEFAULT '', created INTEGER NOT NULL);"
    "CREATE TABLE users(tenant TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,"
    " name TEXT NOT NULL, email TEXT NOT NULL DEFAULT '', pw_hash TEXT NOT NULL DEFAULT '',"
    " roles INTEGER NOT NULL, device INTEGER NOT NULL DEFAULT 0, created INTEGER NOT NULL,"
    " PRIMARY KEY(tenant, name));"
    "CREATE TABLE trusted_certs(tenant TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,"
    " fingerprint TEXT NOT NULL, name TEXT NOT NULL DEFAULT '', enabled INTEGER NOT NULL,"
    " auto_registration INTEGER NOT NULL, der BLOB NOT NULL, pop_valid INTEGER NOT NULL"
    " DEFAULT 0, pop_code TEXT NOT NULL DEFAULT '', pop_until INTEGER NOT NULL DEFAULT 0,"
    " created INTEGER NOT NULL, PRIMARY KEY(tenant, fingerprint));"
    "CREATE TABLE devices(tenant TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,"
    " cn TEXT NOT NULL, type TEXT NOT NULL DEFAULT '', name TEXT NOT NULL DEFAULT '',"
    " auth_type TEXT NOT NULL DEFAULT '', props TEXT NOT NULL DEFAULT '{}',"
    " created INTEGER NOT NULL, PRIMARY KEY(tenant, cn));"
    "CREATE TABLE options(tenant TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,"
    " category TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,"
    " PRIMARY KEY(tenant, category, key));"
    "CREATE TABLE crl_entries(tenant TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,"
    " serial TEXT NOT NULL, revoked INTEGER NOT NULL, PRIMARY KEY(tenant, serial));",
    /* 2: per-tenant device-token signing keys */
    "CREATE TABLE token_keys(tenant TEXT PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,"
    " priv_pem TEXT NOT NULL, pub_pem TEXT NOT NULL, created INTEGER NOT NULL);",
    /* 3: retained messages by topic space ("" is the static space: no FK) */
    "CREATE TABLE retained(tenant TEXT NOT NULL, topic BLOB NOT NULL, payload BLOB NOT NULL,"
    " qos INTEGER NOT NULL, PRIMARY KEY(tenant, topic));",
    /* 4: token keys sealed (core/seal.h): priv_sealed holds the private key,
     * priv_pem is ''. Rows of versions 2-3 still hold a plaintext priv_pem
     * until the token service seals them on start (store_token_key_rewrap). */
    "ALTER TABLE token_keys ADD COLUMN priv_sealed BLOB;",
    /* 5: topic authorization: each tenant's ordered rules as one JSON
     * document, and the named roles assigned to users and devices */
    "CREATE TABLE IF NOT EXISTS authz_rules(tenant TEXT PRIMARY KEY REFERENCES tenants(id) ON "
    "DELETE CASCADE,"
    " rules TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS authz_roles(tenant TEXT NOT NULL REFERENCES tenants(id) ON DELETE "
    "CASCADE,"
    " user TEXT NOT NULL, roles TEXT NOT NULL, PRIMARY KEY(tenant, user));",
    /* 6: certificate lifecycle (sqlite_ca.c): each tenant's CA (key sealed),
     * one-time enrollment tokens (SHA-256 only) and every issuance */
    "CREATE TABLE IF NOT EXISTS tenant_ca(tenant TEXT PRIMARY KEY REFERENCES tenants(id) ON"
    " DELETE CASCADE, der BLOB NOT NULL, key_sealed BLOB NOT NULL, created INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS enroll_tokens(hash TEXT PRIMARY KEY, tenant TEXT NOT NULL"
    " REFERENCES tenants(id) ON DELETE CASCADE, device TEXT NOT NULL, valid_until INTEGER"
    " NOT NULL, used INTEGER NOT NULL DEFAULT 0, created INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS issuances(tenant TEXT NOT NULL REFERENCES tenants(id) ON DELETE"
    " CASCADE, serial TEXT NOT NULL, cn TEXT NOT NULL, not_after INTEGER NOT NULL,"
    " method TEXT NOT NULL, actor TEXT NOT NULL, issued INTEGER NOT NULL,"
    " PRIMARY KEY(tenant, serial));",
    /* 7: when each device last connected, and its certificate's notAfter */
    "CREATE TABLE IF NOT EXISTS device_seen(tenant TEXT NOT NULL REFERENCES tenants(id) ON "
    "DELETE CASCADE, cn TEXT NOT NULL, last_seen INTEGER NOT NULL, not_after INTEGER NOT NULL,"
    " PRIMARY KEY(tenant, cn));",
    /* 10: TLS session-ticket keys shared by the nodes, sealed (sqlite_ticket.c) */
    "CREATE TABLE IF NOT EXISTS ticket_keys(period INTEGER NOT NULL, slot INTEGER NOT NULL,"
    " sealed BLOB NOT NULL, created INTEGER NOT NULL, PRIMARY KEY(period, slot));",
};
#define SCHEMA_VERSION ((int)(sizeof migrations / sizeof migrations[0]))

enum q {
    Q_BEGIN,
    Q_COMMIT,
    Q_ROLLBACK,
    Q_TENANT_INSERT,
    Q_TENANT_GET,
    Q_TENANT_LIST,
    Q_TENANT_COUNT,
    Q_USER_INSERT,
    Q_USER_INSERT_IGNORE,
    Q_USER_GET,
    Q_USER_LIST,
    Q_USER_LIST_ALL_PW,
    Q_USER_COUNT,
    Q_USER_DELETE,
    Q_DEVICE_DELETE,
    Q_CERT_INSERT,
    Q_CERT_GET,
    Q_CERT_UPDATE,
    Q_CERT_DELETE,
    Q_CERT_LIST,
    Q_CERT_LIST_ALL,
    Q_CERT_COUNT,
    Q_DEVICE_INSERT,
    Q_DEVICE_LIST,
    Q_DEVICE_LIST_ALL,
    Q_DEVICE_COUNT,
    Q_OPTION_SET,
    Q_OPTION_GET,
    Q_OPTION_DELETE,
    Q_OPTION_LIST,
    Q_OPTION_LIST_ALL,
    Q_CRL_ADD,
    Q_CRL_LIST,
    Q_CRL_LIST_ALL,
    Q_TENANT_EXISTS,
    Q_KEY_PUT,
    Q_KEY_GET,
    Q_KEY_ALL,
    Q_KEY_REWRAP,
    Q_RETAIN_PUT,
    Q_RETAIN_DELETE,
    Q_RETAIN_LIST,
    Q_RETAIN_TENANT,
    Q_AUTHZ_RULES_PUT,
    Q_AUTHZ_RULES_LIST,
    Q_AUTHZ_ROLES_PUT,
    Q_AUTHZ_ROLES_DELETE,
    Q_AUTHZ_ROLES_LIST,
    Q_SEEN_PUT,
    Q_SEEN_LIST,
    Q_COUNT
};

#define USER_COLS "tenant, name, email, pw_hash, roles, device, created"
#define CERT_COLS                                                                                  \
    "tenant, fingerprint, name, enabled, auto_registration, der, pop_valid, pop_code,"             \
    " pop_until, created"

static const char *const sql[Q_COUNT] = {
    [Q_AUTHZ_RULES_PUT] = "INSERT INTO authz_rules(tenant, rules) VALUES(?,?)"
                          " ON CONFLICT(tenant) DO UPDATE SET rules = excluded.rules",
    [Q_AUTHZ_RULES_LIST] = "SELECT tenant, '', rules FROM authz_rules",
    [Q_AUTHZ_ROLES_PUT] = "INSERT INTO authz_roles(tenant, user, roles) VALUES(?,?,?)"
                          " ON CONFLICT(tenant, user) DO UPDATE SET roles = excluded.roles",
    [Q_AUTHZ_ROLES_DELETE] = "DELETE FROM authz_roles WHERE tenant = ? AND user = ?",
    [Q_AUTHZ_ROLES_LIST] = "SELECT tenant, user, roles FROM authz_roles",
    [Q_SEEN_PUT] = "INSERT INTO device_seen(tenant, cn, last_seen, not_after)"
                   " SELECT ?1, ?2, ?3, ?4 WHERE EXISTS(SELECT 1 FROM tenants WHERE id = ?1)"
                   " ON CONFLICT(tenant, cn) DO UPDATE SET last_seen = excluded.last_seen,"
                   " not_after = excluded.not_after",
    [Q_SEEN_LIST] = "SELECT tenant, cn, last_seen, not_after FROM device_seen",
    [Q_BEGIN] = "BEGIN IMMEDIATE",
    [Q_COMMIT] = "COMMIT",
    [Q_ROLLBACK] = "ROLLBACK",
    [Q_TENANT_INSERT] = "INSERT INTO tenants(id, domain, company, created) VALUES(?,?,?,?)",
    [Q_TENANT_GET] = "SELECT id, domain, company, created FROM tenants WHERE id = ?",
    [Q_TENANT_LIST] = "SELECT id, domain, company, created FROM tenants ORDER BY rowid"
                      " LIMIT ? OFFSET ?",
    [Q_TENANT_COUNT] = "SELECT count(*) FROM tenants",
    [Q_TENANT_EXISTS] = "SELECT 1 FROM tenants WHERE id = ?",
    [Q_USER_INSERT] = "INSERT INTO users(" USER_COLS ") VALUES(?,?,?,?,?,?,?)",
    [Q_USER_INSERT_IGNORE] = "INSERT OR IGNORE INTO users(" USER_COLS ") VALUES(?,?,?,?,?,?,?)",
    [Q_USER_GET] = "SELECT " USER_COLS " FROM users WHERE tenant = ? AND name = ?",
    [Q_USER_LIST] = "SELECT " USER_COLS " FROM users WHERE tenant = ? AND (? = 0 OR pw_hash <> '')"
                    " ORDER BY rowid LIMIT ? OFFSET ?",
    [Q_USER_LIST_ALL_PW] = "SELECT " USER_COLS " FROM users WHERE (? = 0 OR pw_hash <> '')"
                           " ORDER BY rowid LIMIT ? OFFSET ?",
    [Q_USER_COUNT] = "SELECT count(*) FROM users WHERE tenant = ?",
    [Q_USER_DELETE] = "DELETE FROM users WHERE tenant = ? AND name = ?",
    [Q_DEVICE_DELETE] = "DELETE FROM devices WHERE tenant = ? AND cn = ?",
    [Q_CERT_INSERT] = "INSERT INTO trusted_certs(" CERT_COLS ") VALUES(?,?,?,?,?,?,?,?,?,?)",
    [Q_CERT_GET] = "SELECT " CERT_COLS " FROM trusted_certs WHERE tenant = ? AND fingerprint = ?",
    [Q_CERT_UPDATE] = "UPDATE trusted_certs SET name = ?, enabled = ?, auto_registration = ?,"
                      " pop_valid = ?, pop_code = ?, pop_until = ?"
                      " WHERE tenant = ? AND fingerprint = ?",
    [Q_CERT_DELETE] = "DELETE FROM trusted_certs WHERE tenant = ? AND fingerprint = ?",
    [Q_CERT_LIST] = "SELECT " CERT_COLS " FROM trusted_certs WHERE tenant = ?"
                    " ORDER BY rowid LIMIT ? OFFSET ?",
    [Q_CERT_LIST_ALL] = "SELECT " CERT_COLS " FROM trusted_certs ORDER BY rowid LIMIT ? OFFSET ?",
    [Q_CERT_COUNT] = "SELECT count(*) FROM trusted_certs WHERE tenant = ?",
    [Q_DEVICE_INSERT] = "INSERT OR IGNORE INTO devices(tenant, cn, type, name, auth_type, props,"
                        " created) VALUES(?,?,?,?,?,?,?)",
    [Q_DEVICE_LIST] = "SELECT tenant, cn FROM devices WHERE tenant = ? ORDER BY rowid",
    [Q_DEVICE_LIST_ALL] = "SELECT tenant, cn FROM devices ORDER BY rowid",
    [Q_DEVICE_COUNT] = "SELECT count(*) FROM devices WHERE tenant = ?",
    [Q_OPTION_SET] = "INSERT INTO options(tenant, category, key, value) VALUES(?,?,?,?)"
                     " ON CONFLICT(tenant, category, key) DO UPDATE SET value = excluded.value",
    [Q_OPTION_GET] = "SELECT value FROM options WHERE tenant = ? AND category = ? AND key = ?",
    [Q_OPTION_DELETE] = "DELETE FROM options WHERE tenant = ? AND category = ? AND key = ?",
    [Q_OPTION_LIST] = "SELECT tenant, category, key, value FROM options WHERE tenant = ?"
                      " ORDER BY category, key",
    [Q_OPTION_LIST_ALL] = "SELECT tenant, category, key, value FROM options"
                          " ORDER BY tenant, category, key",
    [Q_CRL_ADD] = "INSERT INTO crl_entries(tenant, serial, revoked) VALUES(?,?,?)"
                  " ON CONFLICT(tenant, serial) DO UPDATE SET revoked = excluded.revoked",
    [Q_CRL_LIST] = "SELECT tenant, serial, revoked FROM crl_entries WHERE tenant = ?"
                   " ORDER BY rowid",
    [Q_CRL_LIST_ALL] = "SELECT tenant, serial, revoked FROM crl_entries ORDER BY rowid",
    [Q_KEY_PUT] = "INSERT OR IGNORE INTO token_keys(tenant, priv_pem, priv_sealed, pub_pem,"
                  " created) VALUES(?,'',?,?,?)",
    [Q_KEY_GET] = "SELECT priv_sealed, pub_pem FROM token_keys WHERE tenant = ?",
    [Q_KEY_ALL] = "SELECT tenant, priv_pem, priv_sealed FROM token_keys ORDER BY tenant",
    [Q_KEY_REWRAP] = "UPDATE token_keys SET priv_sealed = ?, priv_pem = '' WHERE tenant = ?",
    [Q_RETAIN_PUT] = "INSERT INTO retained(tenant, topic, payload, qos) VALUES(?,?,?,?)"
                     " ON CONFLICT(tenant, topic) DO UPDATE SET payload = excluded.payload,"
                     " qos = excluded.qos",
    [Q_RETAIN_DELETE] = "DELETE FROM retained WHERE tenant = ? AND topic = ?",
    [Q_RETAIN_LIST] = "SELECT tenant, topic, payload, qos FROM retained ORDER BY rowid",
    [Q_RETAIN_TENANT] = "SELECT tenant, topic, payload, qos FROM retained WHERE tenant = ?",
};

struct store_sqlite {
    struct store base; /* first: the handle callers hold */
    sqlite3 *db;
    pthread_mutex_t mu;
    sqlite3_stmt *stmts[Q_COUNT];
    int version;
    uint64_t op_start_us; /* under mu: when the running operation asked for it */
};

static const struct store_ops sqlite_ops;

/* The SQLite handle behind a store handle of this backend. */
static struct store_sqlite *sq(struct store *base)
{
    return (struct store_sqlite *)base;
}

static void copy_str(char *dst, size_t cap, const unsigned char *src)
{
    snprintf(dst, cap, "%s", src ? (const char *)src : "");
}

/* The cached statement for q, reset and with its bindings cleared. */
static sqlite3_stmt *stmt(struct store_sqlite *st, enum q id)
{
    sqlite3_stmt *s = st->stmts[id];
    if (!s) {
        if (sqlite3_prepare_v3(st->db, sql[id], -1, SQLITE_PREPARE_PERSISTENT, &s, NULL) !=
            SQLITE_OK) {
            log_error("store: cannot prepare query %d: %s", (int)id, sqlite3_errmsg(st->db));
            return NULL;
        }
        st->stmts[id] = s;
    }
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return s;
}

/* Maps an SQLite result to our codes; constraint violations are duplicates. */
static int map_rc(struct store_sqlite *st, int rc)
{
    if (rc == SQLITE_OK || rc == SQLITE_DONE || rc == SQLITE_ROW) return 0;
    int ext = sqlite3_extended_errcode(st->db);
    if (ext == SQLITE_CONSTRAINT_PRIMARYKEY || ext == SQLITE_CONSTRAINT_UNIQUE) return ERR_EXISTS;
    if (ext == SQLITE_CONSTRAINT_FOREIGNKEY) return ERR_NOT_FOUND;
    log_error("store: %s", sqlite3_errmsg(st->db));
    return ERR_DB;
}

/* Runs a statement that returns no rows. */
static int exec_done(struct store_sqlite *st, sqlite3_stmt *s)
{
    int rc = map_rc(st, sqlite3_step(s));
    sqlite3_reset(s);
    return rc;
}

static int run_simple(struct store_sqlite *st, enum q id)
{
    sqlite3_stmt *s = stmt(st, id);
    if (!s) return ERR_DB;
    return exec_done(st, s);
}

static void bind_text(sqlite3_stmt *s, int i, const char *v)
{
    sqlite3_bind_text(s, i, v ? v : "", -1, SQLITE_STATIC);
}

/* Executes a constant multi-statement script, one prepared statement at a time. */
static int exec_script(sqlite3 *db, const char *script)
{
    const char *p = script;
    while (p && *p) {
        sqlite3_stmt *s = NULL;
        const char *tail = NULL;
        if (sqlite3_prepare_v2(db, p, -1, &s, &tail) != SQLITE_OK) {
            log_error("store: schema: %s", sqlite3_errmsg(db));
            return ERR_DB;
        }
        if (s) {
            int rc = sqlite3_step(s);
            sqlite3_finalize(s);
            if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
                log_error("store: schema: %s", sqlite3_errmsg(db));
                return ERR_DB;
            }
        }
        p = tail;
    }
    return 0;
}

static int pragma_int(sqlite3 *db, const char *q, int *out)
{
    sqlite3_stmt *s = NULL;
    int rc = ERR_DB;
    if (sqlite3_prepare_v2(db, q, -1, &s, NULL) != SQLITE_OK) goto out;
    int step = sqlite3_step(s);
    if (step == SQLITE_ROW) {
        if (out) *out = sqlite3_column_int(s, 0);
        rc = 0;
    } else if (step == SQLITE_DONE) {
        rc = 0;
    }
out:
    sqlite3_finalize(s);
    return rc;
}

/* Applies every migration above the database's user_version, each in its
 * own transaction together with the version bump. */
static int migrate(struct store_sqlite *st)
{
    int v = 0;
    GUARD(pragma_int(st->db, "PRAGMA user_version", &v));
    if (v > SCHEMA_VERSION) {
        log_error("store: database schema %d is newer than this build (%d)", v, SCHEMA_VERSION);
        return ERR_DB;
    }
    for (; v < SCHEMA_VERSION; v++) {
        char bump[64];
        snprintf(bump, sizeof bump, "PRAGMA user_version = %d", v + 1);
        int rc = exec_script(st->db, "BEGIN IMMEDIATE");
        if (rc == 0) rc = exec_script(st->db, migrations[v]);
        if (rc == 0) rc = exec_script(st->db, bump);
        if (rc == 0) rc = exec_script(st->db, "COMMIT");
        if (rc < 0) {
            ignore_result(exec_script(st->db, "ROLLBACK"));
            return rc;
        }
    }
    st->version = v;
    return 0;
}

static void sq_close(struct store *base);

int store_sqlite_open(const char *path, struct store **out)
{
    int rc = ERR_DB;
    struct store_sqlite *st = calloc(1, sizeof *st);
    if (!st) return ERR_NOMEM;
    st->base.ops = &sqlite_ops;
    pthread_mutex_init(&st->mu, NULL);
    if (sqlite3_open_v2(path, &st->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                        NULL) != SQLITE_OK) {
        log_error("store: cannot open %s: %s", path,
                  st->db ? sqlite3_errmsg(st->db) : "out of memory");
        goto out;
    }
    sqlite3_busy_timeout(st->db, 5000);
    sqlite3_extended_result_codes(st->db, 1);
    GUARD_GOTO(rc, pragma_int(st->db, "PRAGMA journal_mode = WAL", NULL), out);
    GUARD_GOTO(rc, pragma_int(st->db, "PRAGMA foreign_keys = ON", NULL), out);
    GUARD_GOTO(rc, pragma_int(st->db, "PRAGMA synchronous = NORMAL", NULL), out);
    /* Deleted and replaced content (a key sealed in place) is zeroed, not
     * left in free space of the file. */
    GUARD_GOTO(rc, pragma_int(st->db, "PRAGMA secure_delete = ON", NULL), out);
    int fk = 0;
    GUARD_GOTO(rc, pragma_int(st->db, "PRAGMA foreign_keys", &fk), out);
    if (!fk) {
        rc = ERR_DB;
        goto out;
    }
    GUARD_GOTO(rc, migrate(st), out);
    *out = &st->base;
    st = NULL;
    rc = 0;
out:
    if (st) sq_close(&st->base);
    return rc;
}

int store_open(const char *data_dir, struct store **out)
{
    char path[4096];
    if (mkdir(data_dir, 0700) != 0) {
        struct stat sb;
        if (stat(data_dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
            log_error("store: data dir %s is not a directory", data_dir);
            return ERR_IO;
        }
    }
    int n = snprintf(path, sizeof path, "%s/certmq.db", data_dir);
    if (n < 0 || (size_t)n >= sizeof path) return ERR_INVALID;
    /* Password hashes live here: create it 0600 (SQLite gives -wal and
     * -shm the database file's mode). */
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        log_error("store: cannot create %s", path);
        return ERR_IO;
    }
    close(fd);
    return store_sqlite_open(path, out);
}

static void sq_close(struct store *base)
{
    struct store_sqlite *st = sq(base);
    if (!st) return;
    for (int i = 0; i < Q_COUNT; i++) sqlite3_finalize(st->stmts[i]);
    sqlite3_close(st->db);
    pthread_mutex_destroy(&st->mu);
    free(st);
}

static int sq_schema_version(struct store *base)
{
    struct store_sqlite *st = sq(base);
    return st->version;
}

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* Every operation runs between lock() and unlock(): its latency, waiting
 * for the connection included, goes to the store histogram of /metrics. */
static void lock(struct store_sqlite *st)
{
    uint64_t t0 = mono_us();
    pthread_mutex_lock(&st->mu);
    st->op_start_us = t0;
}

static void unlock(struct store_sqlite *st)
{
    uint64_t took = mono_us() - st->op_start_us;
    pthread_mutex_unlock(&st->mu);
    metrics_store_op(took);
}

sqlite3 *store_db_lock(struct store *base)
{
    struct store_sqlite *st = sq(base);
    lock(st);
    return st->db;
}

void store_db_unlock(struct store *base)
{
    unlock(sq(base));
}

int store_db_rc(struct store *base, int rc)
{
    struct store_sqlite *st = sq(base);
    return map_rc(st, rc);
}

static int64_t now_s(void)
{
    return (int64_t)time(NULL);
}

/* ---- transactions (called with the mutex held) ---- */

static int tx_begin(struct store_sqlite *st)
{
    return run_simple(st, Q_BEGIN);
}

/* Commits on rc == 0, rolls back otherwise; returns the final status. */
static int tx_end(struct store_sqlite *st, int rc)
{
    if (rc == 0) {
        rc = run_simple(st, Q_COMMIT);
        if (rc == 0) return 0;
    }
    if (!sqlite3_get_autocommit(st->db)) ignore_result(run_simple(st, Q_ROLLBACK));
    return rc;
}

/* ---- tenants ---- */

static void read_tenant(sqlite3_stmt *s, struct store_tenant *t)
{
    memset(t, 0, sizeof *t);
    copy_str(t->id, sizeof t->id, sqlite3_column_text(s, 0));
    copy_str(t->domain, sizeof t->domain, sqlite3_column_text(s, 1));
    copy_str(t->company, sizeof t->company, sqlite3_column_text(s, 2));
    t->created = sqlite3_column_int64(s, 3);
}

static int insert_user(struct store_sqlite *st, enum q id, const struct store_user *u)
{
    sqlite3_stmt *s = stmt(st, id);
    if (!s) return ERR_DB;
    bind_text(s, 1, u->tenant);
    bind_text(s, 2, u->name);
    bind_text(s, 3, u->email);
    bind_text(s, 4, u->pw_hash);
    sqlite3_bind_int(s, 5, (int)u->roles);
    sqlite3_bind_int(s, 6, u->device ? 1 : 0);
    sqlite3_bind_int64(s, 7, u->created ? u->created : now_s());
    return exec_done(st, s);
}

static int tenant_create_locked(struct store_sqlite *st, const struct store_tenant *t,
                                const struct store_user *admin)
{
    sqlite3_stmt *s = stmt(st, Q_TENANT_INSERT);
    if (!s) return ERR_DB;
    bind_text(s, 1, t->id);
    bind_text(s, 2, t->domain);
    bind_text(s, 3, t->company);
    sqlite3_bind_int64(s, 4, t->created ? t->created : now_s());
    GUARD(exec_done(st, s));
    if (admin) {
        struct store_user u = *admin;
        snprintf(u.tenant, sizeof u.tenant, "%s", t->id);
        GUARD(insert_user(st, Q_USER_INSERT, &u));
    }
    return 0;
}

static int sq_tenant_create(struct store *base, const struct store_tenant *t,
                            const struct store_user *admin)
{
    struct store_sqlite *st = sq(base);
    lock(st);
    int rc = tx_begin(st);
    if (rc == 0) rc = tx_end(st, tenant_create_locked(st, t, admin));
    unlock(st);
    return rc;
}

static int sq_tenant_get(struct store *base, const char *id, struct store_tenant *out)
{
    struct store_sqlite *st = sq(base);
    int rc = ERR_DB;
    lock(st);
    sqlite3_stmt *s = stmt(st, Q_TENANT_GET);
    if (!s) goto out;
    bind_text(s, 1, id);
    int step = sqlite3_step(s);
    if (step == SQLITE_ROW) {
        read_tenant(s, out);
        rc = 0;
    } else {
        rc = step == SQLITE_DONE ? ERR_NOT_FOUND : map_rc(st, step);
    }
    sqlite3_reset(s);
out:
    unlock(st);
    return rc;
}

static sqlite3_int64 lim(size_t limit)
{
    return limit == 0 || limit > INT64_MAX ? -1 : (sqlite3_int64)limit;
}

static void read_user(sqlite3_stmt *s, struct store_user *u);
static void read_cert(sqlite3_stmt *s, struct store_cert *c);

/* A list call's callback and its argument, for the row adapters below. */
struct visit {
    void (*cb)(void); /* the store_*_cb of the list call, cast back by its row adapter */
    void *arg;
};

/* Steps s to its end, handing each row to row(s, v) until one fails;
 * resets s. The store lock is held by the caller. */
static int each_row(struct store_sqlite *st, sqlite3_stmt *s,
                    int (*row)(sqlite3_stmt *s, const struct visit *v), const struct visit *v)
{
    int rc = 0, step;
    while (rc == 0 && (step = sqlite3_step(s)) == SQLITE_ROW) rc = row(s, v);
    if (rc == 0 && step != SQLITE_DONE) rc = map_rc(st, step);
    sqlite3_reset(s);
    return rc;
}

static int tenant_row(sqlite3_stmt *s, const struct visit *v)
{
    struct store_tenant t;
    read_tenant(s, &t);
    return ((store_tenant_cb)v->cb)(v->arg, &t);
}

static int user_row(sqlite3_stmt *s, const struct visit *v)
{
    struct store_user u;
    read_user(s, &u);
    return ((store_user_cb)v->cb)(v->arg, &u);
}

static int cert_row(sqlite3_stmt *s, const struct visit *v)
{
    struct store_cert c;
    read_cert(s, &c);
    return ((store_cert_cb)v->cb)(v->arg, &c);
}

static int device_row(sqlite3_stmt *s, const struct visit *v)
{
    return ((store_device_cb)v->cb)(v->arg, (const char *)sqlite3_column_text(s, 0),
                                    (const char *)sqlite3_column_text(s, 1));
}

static int option_row(sqlite3_stmt *s, const struct visit *v)
{
    return ((store_option_cb)v->cb)(
        v->arg, (const char *)sqlite3_column_text(s, 0), (const char *)sqlite3_column_text(s, 1),
        (const char *)sqlite3_column_text(s, 2), (const char *)sqlite3_column_text(s, 3));
}

static int crl_row(sqlite3_stmt *s, const struct visit *v)
{
    struct store_crl_entry e;
    copy_str(e.serial, sizeof e.serial, sqlite3_column_text(s, 1));
    e.revoked = sqlite3_column_int64(s, 2);
    return ((store_crl_cb)v->cb)(v->arg, (const char *)sqlite3_column_text(s, 0), &e);
}

static int retained_row(sqlite3_stmt *s, const struct visit *v)
{
    const char *tenant = (const char *)sqlite3_column_text(s, 0);
    return ((store_retained_cb)v->cb)(v->arg, tenant ? tenant : "", sqlite3_column_blob(s, 1),
                                      (size_t)sqlite3_column_bytes(s, 1), sqlite3_column_blob(s, 2),
                                      (size_t)sqlite3_column_bytes(s, 2), sqlite3_column_int(s, 3));
}

static int sq_tenant_list(struct store *base, size_t offset, size_t limit, store_tenant_cb cb,
                          void *arg)
{
    struct store_sqlite *st = sq(base);
    int rc = ERR_DB;
    lock(st);
    sqlite3_stmt *s = stmt(st, Q_TENANT_LIST);
    if (!s) goto out;
    sqlite3_bind_int64(s, 1, lim(limit));
    sqlite3_bind_int64(s, 2, (sqlite3_int64)offset);
    rc = each_row(st, s, tenant_row, &(struct visit){(void (*)(void))cb, arg});
out:
    unlock(st);
    return rc;
}

/* Runs a count(*) query with an optional text parameter. */
static int count_query(struct store_sqlite *st, enum q id, const char *param, size_t *n)
{
    int rc = ERR_DB;
    lock(st);
    sqlite3_stmt *s = stmt(st, id);
    if (!s) goto out;
    if (param) bind_text(s, 1, param);
    if (sqlite3_step(s) == SQLITE_ROW) {
        *n = (size_t)sqlite3_column_int64(s, 0);
        rc = 0;
    }
    sqlite3_reset(s);
out:
    unlock(st);
    return rc;
}

static int sq_tenant_count(struct store *base, size_t *n)
{
    struct store_sqlite *st = sq(base);
    return count_query(st, Q_TENANT_COUNT, NULL, n);
}

/* ---- users ---- */

static void read_user(sqlite3_stmt *s, struct store_user *u)
{
    memset(u, 0, sizeof *u);
    copy_str(u->tenant, sizeof u->tenant, sqlite3_column_text(s, 0));
    copy_str(u->name, sizeof u->name, sqlite3_column_text(s, 1));
    copy_str(u->email, sizeof u->email, sqlite3_column_text(s, 2));
    copy_str(u->pw_hash, sizeof u->pw_hash, sqlite3_column_text(s, 3));
    u->roles = (unsigned)sqlite3_column_int(s, 4);
    u->device = sqlite3_column_int(s, 5) != 0;
    u->created = sqlite3_column_int64(s, 6);
}

static int sq_user_create(struct store *base, const struct store_user *u)
{
    struct store_sqlite *st = sq(base);
    lock(st);
    int rc = insert_user(st, Q_USER_INSERT, u);
    unlock(st);
    return rc;
}

static int sq_user_get(struct store *base, const char *tenant, const char *name,
                       struct store_user *out)
{
    struct store_sqlite *st = sq(base);
    int rc = ERR_DB;
    lock(st);
    sqlite3_stmt *s = stmt(st, Q_USER_GET);
    if (!s) goto out;
    bind_text(s, 1, tenant);
    bind_text(s, 2, name);
    int step = sqlite3_step(s);
    if (step == SQLITE_ROW) {
        read_user(s, out);
        rc = 0;
    } else {
        rc = step == SQLITE_DONE ? ERR_NOT_FOUND : map_rc(st, step);
    }
    sqlite3_reset(s);
out:
    unlock(st);
    return rc;
}

static int sq_user_list(struct store *base, const char *tenant, bool password_only, size_t offset,
                        size_t limit, store_user_cb cb, void *arg)
{
    struct store_sqlite *st = sq(base);
    int rc = ERR_DB;
    lock(st);
    sqlite3_stmt *s = stmt(st, tenant ? Q_USER_LIST : Q_USER_LIST_ALL_PW);
    if (!s) goto out;
    int i = 1;
    if (tenant) bind_text(s, i++, tenant);
    sqlite3_bind_int(s, i++, password_only ? 1 : 0);
    sqlite3_bind_int64(s, i++, lim(limit));
    sqlite3_bind_int64(s, i, (sqlite3_int64)offset);
    rc = each_row(st, s, user_row, &(struct visit){(void (*)(void))cb, arg});
out:
    unlock(st);
    return rc;
}

static int sq_user_count(struct store *base, const char *tenant, size_t *n)
{
    struct store_sqlite *st = sq(base);
    return count_query(st, Q_USER_COUNT, tenant, n);
}

/* Deletes one row of (tenant, key) with query id; ERR_NOT_FOUND when none. */
static int delete_locked(struct store_sqlite *st, enum q id, const char *tenant, const char *key)
{
    sqlite3_stmt *s = stmt(st, id);
    if (!s) return ERR_DB;
    bind_text(s, 1, tenant);
    bind_text(s, 2, key);
    GUARD(exec_done(st, s));
    return sqlite3_changes(st->db) > 0 ? 0 : ERR_NOT_FOUND;
}

/* Reads the device flag of (tenant, name); ERR_NOT_FOUND when absent. */
static int user_is_device_locked(struct store_sqlite *st, const char *tenant, const char *name,
                                 bool *device)
{
    sqlite3_stmt *s = stmt(st, Q_USER_GET);
    if (!s) return ERR_DB;
    bind_text(s, 1, tenant);
    bind_text(s, 2, name);
    int step = sqlite3_step(s);
    if (step == SQLITE_ROW) *device = sqlite3_column_int(s, 5) != 0;
    sqlite3_reset(s);
    if (step == SQLITE_ROW) return 0;
    return step == SQLITE_DONE ? ERR_NOT_FOUND : map_rc(st, step);
}

static int sq_user_delete(struct store *base, const char *tenant, const char *name, char *device_cn,
                          size_t cap)
{
    struct store_sqlite *st = sq(base);
    bool device = false;
    if (cap) device_cn[0] = '\0';
    lock(st);
    int rc = tx_begin(st);
    if (rc == 0) {
        rc = user_is_device_locked(st, tenant, name, &device);
        if (rc == 0) rc = delete_locked(st, Q_USER_DELETE, tenant, name);
        if (rc == 0 && device &&
            strncmp(name, STORE_DEVICE_USER_PREFIX, STORE_DEVICE_USER_PREFIX_LEN) == 0) {
            rc = delete_locked(st, Q_DEVICE_DELETE, tenant, name + 7);
            if (rc == ERR_NOT_FOUND) rc = 0; /* a device user whose row went before */
            if (rc == 0 && cap) snprintf(device_cn, cap, "%s", name + 7);
        }
        rc = tx_end(st, rc);
    }
    unlock(st);
    return rc;
}

/* ---- trusted certificates ---- */

static void read_cert(sqlite3_stmt *s, struct store_cert *c)
{
    memset(c, 0, sizeof *c);
    copy_str(c->tenant, sizeof c->tenant, sqlite3_column_text(s, 0));
    copy_str(c->fingerprint, sizeof c->fingerprint, sqlite3_column_text(s, 1));
    copy_str(c->name, sizeof c->name, sqlite3_column_text(s, 2));
    c->enabled = sqlite3_column_int(s, 3) != 0;
    c->auto_registration = sqlite3_column_int(s, 4) != 0;
    c->der = (unsigned char *)sqlite3_column_blob(s, 5); /* borrowed until reset */
    c->der_len = (size_t)sqlite3_column_bytes(s, 5);
    c->pop_valid = sqlite3_column_int(s, 6) != 0;
    copy_str(c->pop_code, sizeof c->pop_code, sqlite3_column_text(s, 7));
    c->pop_until = sqlite3_column_int64(s, 8);
    c->created = sqlite3_column_int64(s, 9);
}

static int sq_cert_insert(struct store *base, const struct store_cert *c)
{
    struct store_sqlite *st = sq(base);
    int rc = ERR_DB;
    lock(st);
    sqlite3_stmt *s = stmt(st, Q_CERT_INSERT);
    if (!s) goto out;
    bind_text(s, 1, c->tenant);
    bind_text(s, 2, c->fingerprint);
    bind_text(s, 3, c->name);
    sqlite3_bind_int(s, 4, c->enabled);
    sqlite3_bind_int(s, 5, c->auto_registration);
    sqlite3_bind_blob(s, 6, c->der, (int)c->der_len, SQLITE_STATIC);
    sqlite3_bind_int(s, 7, c->pop_valid);
    bind_text(s, 8, c->pop_code);
    sqlite3_bind_int64(s, 9, c->pop_until);
    sqlite3_bind_int64(s, 10, c->created ? c->created : now_s());
    rc = exec_done(st, s);
out:
    unlock(st);
    return rc;
}

static int sq_cert_get(struct store *base, const char *tenant, const char *fp,
                       struct store_cert *out)
{
    struct store_sqlite *st = sq(base);
    int rc = ERR_DB;
    lock(st);
    sqlite3_stmt *s = stmt(st, Q_CERT_GET);
    if (!s) goto out;
    bind_text(s, 1, tenant);
    bind_text(s, 2, fp);
    int step = sqlite3_step(s);
    if (step == SQLITE_ROW) {
        read_cert(s, out);
        unsigned char *der = malloc(out->der_len ? out->der_len : 1);
        if (!der) {
            rc = ERR_NOMEM;
            out->der = NULL;
        } else {
            memcpy(der, out->der, out->der_len);
            out->der = der;
            rc = 0;
        }
    } else {
        rc = step == SQLITE_DONE ? ERR_NOT_FOUND : map_rc(st, step);
    }
    sqlite3_reset(s);
out:
    unlock(st);
    return rc;
}

static int sq_cert_update(struct store *base, const struct store_cert *c)
{
    struct store_sqlite *st = sq(base);
    int rc = ERR_DB;
    lock(st);
    sqlite3_stmt *s = stmt(st, Q_CERT_UPDATE);
    if (!s) goto out;
    bind_text(s, 1, c->name);
    sqlite3_bind_int(s, 2, c->enabled);
    sqlite3_bind_int(s, 3, c->auto_registration);
    sqlite3_bind_int(s, 4, c->pop_valid);
    bind_text(s, 5, c->pop_code);
    sqlite3_bind_int64(s, 6, c->pop_until);
    bind_text(s, 7, c->tenant);
    bind_text(s, 8, c->fingerprint);
    rc = exec_done(st, s);
    if (rc == 0 && sqlite3_changes(st->db) == 0) rc = ERR_NOT_FOUND;
out:
    unlock(st);
    return rc;
}

static int sq_cert_delete(struct store *base, const char *tenant, const char *fp)
{
    struct store_sqlite *st = sq(base);
    int rc = ERR_DB;
    lock(st);
    sqlite3_stmt *s = stmt(st, Q_CERT_DELETE);
    if (!s) goto out;
    bind_text(s, 1, tenant);
    bind_text(s, 2, fp);
    rc = exec_done(st, s);
    if (rc == 0 && sqlite3_changes(st->db) == 0) rc = ERR_NOT_FOUND;
out:
    unlock(st);
    return rc;
}

static int sq_cert_list(struct store *base, const char *tenant, size_t offset, size_t limit,
                        store_cert_cb cb, void *arg)
{
    struct store_sqlite *st = sq(base);
    int rc = ERR_DB;
    lock(st);
    sqlite3_stmt *s = stmt(st, tenant ? Q_CERT_LIST : Q_CERT_LIST_ALL);
    if (!s) goto out;
    int i = 1;
    if (tenant) bind_text(s, i++, tenant);
    sqlite3_bind_int64(s, i++, lim(limit));
    sqlite3_bind_int64(s, i, (sqlite3_int64)offset);
    rc = each_row(st, s, cert_row, &(struct visit){(void (*)(void))cb, arg});
out:
    unlock(st);
    return rc;
}

static int sq_cert_count(struct store *base, const char *tenant, size_t *n)
{
    struct store_sqlite *st = sq(base);
    return count_query(st, Q_CERT_COUNT, tenant, n);
}

/* ---- devices ---- */

/* Inserts the device row and its device user; *created reports a new row.
 * Called with the mutex held inside a transaction. */
static int device_insert_locked(struct store_sqlite *st, const char *tenant,
                                const struct store_device_new *d, int64_t now, bool *created)
{
    sqlite3_stmt *s = stmt(st, Q_DEVICE_INSERT);
    if (!s) return ERR_DB;
    bind_text(s, 1, tenant);
    bind_text(s, 2, d->cn);
    bind_text(s, 3, d->type);
    bind_text(s, 4, d->name);
    bind_text(s, 5, d->auth_type);
    bind_text(s, 6, d->props_json ? d->props_json : "{}");
    sqlite3_bind_int64(s, 7, now);
    GUARD(exec_done(st, s));
    *created = sqlite3_changes(st->db) > 0;
    if (!*created) return 0;
    struct store_user u;
    memset(&u, 0, sizeof u);
    snprintf(u.tenant, sizeof u.tenant, "%s", tenant);
    int n = snprintf(u.name, sizeof u.name, STORE_DEVICE_USER_PREFIX "%s", d->cn);
    if (n < 0 || (size_t)n >= sizeof u.name) return ERR_INVALID;
    if (d->pw_hash) snprintf(u.pw_hash, sizeof u.pw_hash, "%s", d->pw_hash);
    u.roles = STORE_ROLE_DEVICE;
    u.device = true;
    u.created = now;
    return insert_user(st, Q_USER_INSERT_IGNORE, &u);
}

static int tenant_exists_locked(struct store_sqlite *st, const char *tenant)
{
    sqlite3_stmt *s = stmt(st, Q_TENANT_EXISTS);
    if (!s) return ERR_DB;
    bind_text(s, 1, tenant);
    int step = sqlite3_step(s);
    sqlite3_reset(s);
    if (step == SQLITE_ROW) return 0;
    return step == SQLITE_DONE ? ERR_NOT_FOUND : ERR_DB;
}

static int sq_device_register(struct store *base, const char *tenant, const char *cn,
                              const char *auth_type, bool *created)
{
    struct store_sqlite *st = sq(base);
    struct store_device_new d = {.cn = cn, .auth_type = auth_type};
    bool made = false;
    lock(st);
    int rc = tx_begin(st);
    if (rc == 0) {
        rc = tenant_exists_locked(st, tenant);
        if (rc == 0) rc = device_insert_locked(st, tenant, &d, now_s(), &made);
        rc = tx_end(st, rc);
    }
    unlock(st);
    if (created) *created = rc == 0 && made;
    return rc;
}

static int sq_device_bulk(struct store *base, const char *tenant,
                          const struct store_device_new *rows, size_t n, int *row_rc)
{
    struct store_sqlite *st = sq(base);
    int64_t now = now_s();
    lock(st);
    int rc = tx_begin(st);
    if (rc == 0) {
        rc = tenant_exists_locked(st, tenant);
        for (size_t i = 0; rc == 0 && i < n; i++) {
            bool made = false;
            rc = device_insert_locked(st, tenant, &rows[i], now, &made);
            if (rc == 0) row_rc[i] = made ? 0 : ERR_EXISTS;
        }
        rc = tx_end(st, rc);
    }
    unlock(st);
    return rc;
}

static int sq_device_list(struct store *base, const char *tenant, store_device_cb cb, void *arg)
{
    struct store_sqlite *st = sq(base);
    int rc = ERR_DB;
    lock(st);
    sqlite3_stmt *s = stmt(st, tenant ? Q_DEVICE_LIST : Q_DEVICE_LIST_ALL);
    if (!s) goto out;
    if (tenant) bind_text(s, 1, tenant);
    rc = each_row(st, s, device_row, &(struct visit){(void (*)(void))cb, arg});
out:
    unlock(st);
    return rc;
}

static int sq_device_count(struct store *base, const char *tenant, size_t *n)
{
    struct store_sqlite *st = sq(base);
    return count_query(st, Q_DEVICE_COUNT, tenant, n);
}

/* ---- options ---- */

static int sq_option_set(struct store *base, const char *tenant, const char *category,
                         const char *key, const char *value)
{
    struct store_sqlite *st = sq(base);
    int rc = ERR_DB;
    lock(st);
    sqlite3_stmt *s = stmt(st, Q_OPTION_SET);
    if (!s) goto out;
    bind_text(s, 1, tenant);
    bind_text(s, 2, category);
    bind_text(s, 3, key);
    bind_text(s, 4, value);
    rc = exec_done(st, s);
out:
    unlock(st);
    return rc;
}

static int sq_option_get(struct store *base, const char *tenant, const char *category,
                         const char *key, char *value, size_t cap)
{
    struct store_sqlite *st = sq(base);
    int rc = ERR_DB;
    lock(st);
    sqlite3_stmt *s = stmt(st, Q_OPTION_GET);
    if (!s) goto out;
    bind_text(s, 1, tenant);
    bind_text(s, 2, category);
    bind_text(s, 3, key);
    int step = sqlite3_step(s);
    if (step == SQLITE_ROW) {
        copy_str(value, cap, sqlite3_column_text(s, 0));
        rc = 0;
    } else {
        rc = step == SQLITE_DONE ? ERR_NOT_FOUND : map_rc(st, step);
    }
    sqlite3_reset(s);
out:
    unlock(st);
    return rc;
}

static int sq_option_delete(struct store *base, const char *tenant, const char *category,
                            const char *key)
{
    struct store_sqlite *st = sq(base);
    int rc = ERR_DB;
    lock(st);
    sqlite3_stmt *s = stmt(st, Q_OPTION_DELETE);
    if (!s) goto out;
    bind_text(s, 1, tenant);
    bind_text(s, 2, category);
    bind_text(s, 3, key);
    rc = exec_done(st, s);
    if (rc == 0 && sqlite3_changes(st->db) == 0) rc = ERR_NOT_FOUND;
out:
    unlock(st);
    return rc;
}

static int sq_option_list(struct store *base, const char *tenant, store_option_cb cb, void *arg)
{
    struct store_sqlite *st = sq(base);
    int rc = ERR_DB;
    lock(st);
    sqlite3_stmt *s = stmt(st, tenant ? Q_OPTION_LIST : Q_OPTION_LIST_ALL);
    if (!s) goto out;
    if (tenant) bind_text(s, 1, tenant);
    rc = each_row(st, s, option_row, &(struct visit){(void (*)(void))cb, arg});
out:
    unlock(st);
    return rc;
}

/* ---- revoked serials ---- */

static int sq_crl_add(struct store *base, const char *tenant, const struct store_crl_entry *e,
                      size_t n)
{
    struct store_sqlite *st = sq(base);
    lock(st);
    int rc = tx_begin(st);
    if (rc == 0) {
        for (size_t i = 0; rc == 0 && i < n; i++) {
            sqlite3_stmt *s = stmt(st, Q_CRL_ADD);
            if (!s) {
                rc = ERR_DB;
                break;
            }
            bind_text(s, 1, tenant);
            bind_text(s, 2, e[i].serial);
            sqlite3_bind_int64(s, 3, e[i].revoked);
            rc = exec_done(st, s);
        }
        rc = tx_end(st, rc);
    }
    unlock(st);
    return rc;
}

static int sq_crl_list(struct store *base, const char *tenant, store_crl_cb cb, void *arg)
{
    struct store_sqlite *st = sq(base);
    int rc = ERR_DB;
    lock(st);
    sqlite3_stmt *s = stmt(st, tenant ? Q_CRL_LIST : Q_CRL_LIST_ALL);
    if (!s) goto out;
    if (tenant) bind_text(s, 1, tenant);
    rc = each_row(st, s, crl_row, &(struct visit){(void (*)(void))cb, arg});
out:
    unlock(st);
    return rc;
}

/* ---- device-token keys ---- */

static int sq_token_key_put(struct store *base, const char *tenant, const void *sealed,
                            size_t sealed_len, const char *pub_pem)
{
    struct store_sqlite *st = sq(base);
    int rc = ERR_DB;
    lock(st);
    sqlite3_stmt *s = stmt(st, Q_KEY_PUT);
    if (!s) goto out;
    bind_text(s, 1, tenant);
    sqlite3_bind_blob64(s, 2, sealed, sealed_len, SQLITE_STATIC);
    bind_text(s, 3, pub_pem);
    sqlite3_bind_int64(s, 4, now_s());
    rc = exec_done(st, s);
out:
    unlock(st);
    return rc;
}

/* A malloc'd copy of a blob column (NULL with *n 0 when the column is NULL). */
static int blob_copy(sqlite3_stmt *s, int col, void **out, size_t *n)
{
    const void *b = sqlite3_column_blob(s, col);
    *n = (size_t)sqlite3_column_bytes(s, col);
    *out = NULL;
    if (sqlite3_column_type(s, col) == SQLITE_NULL) return 0;
    *out = malloc(*n ? *n : 1);
    if (!*out) return ERR_NOMEM;
    if (*n) memcpy(*out, b, *n);
    return 0;
}

static int sq_token_key_get(struct store *base, const char *tenant, void **sealed,
                            size_t *sealed_len, char **pub_pem)
{
    struct store_sqlite *st = sq(base);
    int rc = ERR_DB;
    *sealed = NULL;
    *pub_pem = NULL;
    lock(st);
    sqlite3_stmt *s = stmt(st, Q_KEY_GET);
    if (!s) goto out;
    bind_text(s, 1, tenant);
    int step = sqlite3_step(s);
    if (step == SQLITE_ROW) {
        rc = blob_copy(s, 0, sealed, sealed_len);
        *pub_pem = strdup((const char *)sqlite3_column_text(s, 1));
        if (rc == 0 && !*pub_pem) rc = ERR_NOMEM;
        if (rc == 0 && !*sealed) rc = ERR_DB; /* not sealed yet: rewrap runs first */
        if (rc < 0) {
            free(*sealed);
            free(*pub_pem);
            *sealed = NULL;
            *pub_pem = NULL;
        }
    } else {
        rc = step == SQLITE_DONE ? ERR_NOT_FOUND : map_rc(st, step);
    }
    sqlite3_reset(s);
out:
    unlock(st);
    return rc;
}

struct key_row {
    char tenant[STORE_TENANT_MAX];
    char *priv; /* plaintext PEM of an unsealed row, else NULL */
    void *sealed;
    size_t sealed_len;
};

static void key_rows_free(struct key_row *r, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (r[i].priv) explicit_bzero(r[i].priv, strlen(r[i].priv));
        free(r[i].priv);
        free(r[i].sealed);
    }
    free(r);
}

/* Reads every token key row (lock held). */
static int key_rows(struct store_sqlite *st, struct key_row **out, size_t *n)
{
    sqlite3_stmt *s = stmt(st, Q_KEY_ALL);
    if (!s) return ERR_DB;
    struct key_row *r = NULL;
    size_t cap = 0;
    int rc = 0, step;
    *n = 0;
    while (rc == 0 && (step = sqlite3_step(s)) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            struct key_row *g = realloc(r, cap * sizeof *r);
            if (!g) {
                rc = ERR_NOMEM;
                break;
            }
            r = g;
        }
        struct key_row *k = &r[(*n)++];
        memset(k, 0, sizeof *k);
        copy_str(k->tenant, sizeof k->tenant, sqlite3_column_text(s, 0));
        const unsigned char *pem = sqlite3_column_text(s, 1);
        if (pem && *pem && !(k->priv = strdup((const char *)pem))) rc = ERR_NOMEM;
        if (rc == 0) rc = blob_copy(s, 2, &k->sealed, &k->sealed_len);
    }
    if (rc == 0 && step != SQLITE_DONE) rc = map_rc(st, step);
    sqlite3_reset(s);
    if (rc < 0) {
        key_rows_free(r, *n);
        return rc;
    }
    *out = r;
    return 0;
}

/* Calls fn for each row and writes what it returns (lock held, in a transaction). */
static int key_rows_rewrap(struct store_sqlite *st, struct key_row *r, size_t n,
                           store_token_key_fn fn, void *arg, size_t *changed)
{
    for (size_t i = 0; i < n; i++) {
        void *blob = NULL;
        size_t len = 0;
        GUARD(fn(arg, r[i].tenant, r[i].priv, r[i].sealed, r[i].sealed_len, &blob, &len));
        if (!blob) continue;
        sqlite3_stmt *s = stmt(st, Q_KEY_REWRAP);
        int rc = s ? 0 : ERR_DB;
        if (s) {
            sqlite3_bind_blob64(s, 1, blob, len, SQLITE_STATIC);
            bind_text(s, 2, r[i].tenant);
            rc = exec_done(st, s);
        }
        free(blob);
        GUARD(rc);
        (*changed)++;
    }
    return 0;
}

static int sq_token_key_rewrap(struct store *base, store_token_key_fn fn, void *arg,
                               size_t *changed)
{
    struct store_sqlite *st = sq(base);
    struct key_row *r = NULL;
    size_t n = 0;
    *changed = 0;
    lock(st);
    int rc = run_simple(st, Q_BEGIN);
    if (rc == 0) rc = key_rows(st, &r, &n);
    if (rc == 0) rc = key_rows_rewrap(st, r, n, fn, arg, changed);
    if (rc == 0) rc = run_simple(st, Q_COMMIT);
    if (rc < 0) {
        ignore_result(run_simple(st, Q_ROLLBACK));
        *changed = 0;
    }
    /* The replaced rows' pages go to the WAL and then over the old ones in
     * the database: checkpoint and truncate so no old copy stays on disk. */
    if (rc == 0 && *changed &&
        sqlite3_wal_checkpoint_v2(st->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL) !=
            SQLITE_OK) {
        log_error("store: checkpoint: %s", sqlite3_errmsg(st->db));
        rc = ERR_DB;
    }
    key_rows_free(r, n);
    unlock(st);
    return rc;
}

/* ---- retained messages ---- */

static int sq_retained_put(struct store *base, const char *tenant, const void *topic, size_t tlen,
                           const void *payload, size_t plen, int qos)
{
    struct store_sqlite *st = sq(base);
    int rc = ERR_DB;
    lock(st);
    sqlite3_stmt *s = stmt(st, plen ? Q_RETAIN_PUT : Q_RETAIN_DELETE);
    if (!s) goto out;
    bind_text(s, 1, tenant);
    sqlite3_bind_blob64(s, 2, topic, tlen, SQLITE_STATIC);
    if (plen) {
        sqlite3_bind_blob64(s, 3, payload, plen, SQLITE_STATIC);
        sqlite3_bind_int(s, 4, qos);
    }
    rc = exec_done(st, s);
out:
    unlock(st);
    return rc;
}

static int sq_retained_list(struct store *base, store_retained_cb cb, void *arg)
{
    struct store_sqlite *st = sq(base);
    int rc = ERR_DB;
    lock(st);
    sqlite3_stmt *s = stmt(st, Q_RETAIN_LIST);
    if (!s) goto out;
    rc = each_row(st, s, retained_row, &(struct visit){(void (*)(void))cb, arg});
out:
    unlock(st);
    return rc;
}

/* One node has no notices to follow: the digest is looked for among the
 * tenant's retained topics. */
struct digest_find {
    const char *digest;
    store_retained_cb cb;
    void *arg;
    bool found;
};

static int retained_digest_row(sqlite3_stmt *s, const struct visit *v)
{
    struct digest_find *f = v->arg;
    char hex[STORE_DIGEST_HEX + 1];
    store_retained_digest(sqlite3_column_blob(s, 1), (size_t)sqlite3_column_bytes(s, 1), hex);
    if (f->found || strcmp(hex, f->digest) != 0) return 0;
    f->found = true;
    return retained_row(s, &(struct visit){(void (*)(void))f->cb, f->arg});
}

static int sq_retained_get(struct store *base, const char *tenant, const char *digest,
                           store_retained_cb cb, void *arg)
{
    struct store_sqlite *st = sq(base);
    struct digest_find f = {digest, cb, arg, false};
    int rc = ERR_DB;
    lock(st);
    sqlite3_stmt *s = stmt(st, Q_RETAIN_TENANT);
    if (!s) goto out;
    bind_text(s, 1, tenant);
    rc = each_row(st, s, retained_digest_row, &(struct visit){NULL, &f});
    if (rc == 0 && !f.found) rc = ERR_NOT_FOUND;
out:
    unlock(st);
    return rc;
}

/* ---- topic authorization ---- */

static int sq_authz_rules_put(struct store *base, const char *tenant, const char *rules_json)
{
    struct store_sqlite *st = sq(base);
    int rc = ERR_DB;
    lock(st);
    sqlite3_stmt *s = stmt(st, Q_AUTHZ_RULES_PUT);
    if (!s) goto out;
    bind_text(s, 1, tenant);
    bind_text(s, 2, rules_json);
    rc = exec_done(st, s);
out:
    unlock(st);
    return rc;
}

static int sq_authz_roles_put(struct store *base, const char *tenant, const char *user,
                              const char *roles)
{
    struct store_sqlite *st = sq(base);
    int rc = ERR_DB;
    lock(st);
    sqlite3_stmt *s = stmt(st, roles && *roles ? Q_AUTHZ_ROLES_PUT : Q_AUTHZ_ROLES_DELETE);
    if (!s) goto out;
    bind_text(s, 1, tenant);
    bind_text(s, 2, user);
    if (roles && *roles) bind_text(s, 3, roles);
    rc = exec_done(st, s);
out:
    unlock(st);
    return rc;
}

static int authz_row(sqlite3_stmt *s, const struct visit *v)
{
    return ((store_authz_cb)v->cb)(v->arg, (const char *)sqlite3_column_text(s, 0),
                                   (const char *)sqlite3_column_text(s, 1),
                                   (const char *)sqlite3_column_text(s, 2));
}

static int authz_list(struct store_sqlite *st, enum q q, store_authz_cb cb, void *arg)
{
    int rc = ERR_DB;
    lock(st);
    sqlite3_stmt *s = stmt(st, q);
    if (s) rc = each_row(st, s, authz_row, &(struct visit){(void (*)(void))cb, arg});
    unlock(st);
    return rc;
}

static int sq_authz_rules_list(struct store *base, store_authz_cb cb, void *arg)
{
    struct store_sqlite *st = sq(base);
    return authz_list(st, Q_AUTHZ_RULES_LIST, cb, arg);
}

static int sq_authz_roles_list(struct store *base, store_authz_cb cb, void *arg)
{
    struct store_sqlite *st = sq(base);
    return authz_list(st, Q_AUTHZ_ROLES_LIST, cb, arg);
}

/* ---- when devices were last seen ---- */

static int sq_device_seen_put(struct store *base, const struct store_seen *v, size_t n)
{
    struct store_sqlite *st = sq(base);
    lock(st);
    int rc = tx_begin(st);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        sqlite3_stmt *s = stmt(st, Q_SEEN_PUT);
        if (!s) {
            rc = ERR_DB;
            break;
        }
        bind_text(s, 1, v[i].tenant);
        bind_text(s, 2, v[i].cn);
        sqlite3_bind_int64(s, 3, v[i].last_seen);
        sqlite3_bind_int64(s, 4, v[i].not_after);
        rc = exec_done(st, s);
    }
    rc = tx_end(st, rc);
    unlock(st);
    return rc;
}

static int seen_row(sqlite3_stmt *s, const struct visit *v)
{
    struct store_seen r = {(const char *)sqlite3_column_text(s, 0),
                           (const char *)sqlite3_column_text(s, 1), sqlite3_column_int64(s, 2),
                           sqlite3_column_int64(s, 3)};
    return ((store_seen_cb)v->cb)(v->arg, &r);
}

static int sq_device_seen_list(struct store *base, store_seen_cb cb, void *arg)
{
    struct store_sqlite *st = sq(base);
    int rc = ERR_DB;
    lock(st);
    sqlite3_stmt *s = stmt(st, Q_SEEN_LIST);
    if (s) rc = each_row(st, s, seen_row, &(struct visit){(void (*)(void))cb, arg});
    unlock(st);
    return rc;
}

static const struct store_ops sqlite_ops = {
    .close = sq_close,
    .schema_version = sq_schema_version,
    .tenant_create = sq_tenant_create,
    .tenant_get = sq_tenant_get,
    .tenant_list = sq_tenant_list,
    .tenant_count = sq_tenant_count,
    .user_create = sq_user_create,
    .user_get = sq_user_get,
    .user_list = sq_user_list,
    .user_count = sq_user_count,
    .user_delete = sq_user_delete,
    .cert_insert = sq_cert_insert,
    .cert_get = sq_cert_get,
    .cert_update = sq_cert_update,
    .cert_delete = sq_cert_delete,
    .cert_list = sq_cert_list,
    .cert_count = sq_cert_count,
    .device_register = sq_device_register,
    .device_bulk = sq_device_bulk,
    .device_list = sq_device_list,
    .device_count = sq_device_count,
    .option_set = sq_option_set,
    .option_get = sq_option_get,
    .option_delete = sq_option_delete,
    .option_list = sq_option_list,
    .crl_add = sq_crl_add,
    .crl_list = sq_crl_list,
    .token_key_put = sq_token_key_put,
    .token_key_get = sq_token_key_get,
    .token_key_rewrap = sq_token_key_rewrap,
    .retained_put = sq_retained_put,
    .retained_list = sq_retained_list,
    .retained_get = sq_retained_get,
    .authz_rules_put = sq_authz_rules_put,
    .authz_roles_put = sq_authz_roles_put,
    .authz_rules_list = sq_authz_rules_list,
    .authz_roles_list = sq_authz_roles_list,
    .device_seen_put = sq_device_seen_put,
    .device_seen_list = sq_device_seen_list,
    .ca_insert = sq_ca_insert,
    .ca_get = sq_ca_get,
    .ca_update_cert = sq_ca_update_cert,
    .ca_delete = sq_ca_delete,
    .ca_tenants = sq_ca_tenants,
    .enroll_token_put = sq_enroll_token_put,
    .enroll_token_get = sq_enroll_token_get,
    .enroll_token_use = sq_enroll_token_use,
    .issuance_add = sq_issuance_add,
    .issuance_list = sq_issuance_list,
    .issuance_count = sq_issuance_count,
    .issuance_latest = sq_issuance_latest,
    .issuance_get = sq_issuance_get,
    .ticket_key_put = sq_ticket_key_put,
    .ticket_key_get = sq_ticket_key_get,
};
