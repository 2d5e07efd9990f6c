/* SQLite backend of the session store (sessions.h): its own database file
 * beside the main one, in WAL mode with synchronous = FULL, so a committed
 * batch survives a crash and a power loss (as far as the disk honours
 * fsync). One statement per record type, prepared once. */
#include "store/sessions.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/log.h"
#include "store/sessions_int.h"

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS sessions(key BLOB PRIMARY KEY, tenant BLOB, client_id BLOB,"
    " identity BLOB, anchor BLOB, kind INT, device INT, has_user_name INT, roles INT,"
    " expiry INT, offline_since INT, will_delay INT, will_expiry INT, will_topic BLOB,"
    " will_payload BLOB, will_props BLOB, will_qos INT, will_retain INT, will_expire_at INT);"
    "CREATE TABLE IF NOT EXISTS subs(key BLOB, filter BLOB, grp BLOB, qos INT, opts INT,"
    " sub_id INT, PRIMARY KEY(key, filter, grp));"
    "CREATE TABLE IF NOT EXISTS msgs(pid INTEGER PRIMARY KEY, topic BLOB, payload BLOB,"
    " props BLOB, qos INT, retain INT, expire_at INT);"
    "CREATE TABLE IF NOT EXISTS items(seq INTEGER PRIMARY KEY, key BLOB, pid INT, qos INT,"
    " retain INT, state INT, packet_id INT, ids BLOB);"
    "CREATE INDEX IF NOT EXISTS items_key ON items(key);"
    "CREATE TABLE IF NOT EXISTS rx(key BLOB, packet_id INT, PRIMARY KEY(key, packet_id));"
    /* Items of sessions that are gone. Messages no item holds are deleted
     * by the broker after the load (the check here, without an index on
     * items.pid, took 1.5 s with a million stored messages). */
    "DELETE FROM items WHERE key NOT IN (SELECT key FROM sessions);";

enum {
    S_BEGIN,
    S_COMMIT,
    S_ROLLBACK,
    S_SESSION_PUT,
    S_SESSION_DEL,
    S_SESSION_DEL_SUBS,
    S_SESSION_DEL_ITEMS,
    S_SESSION_DEL_RX,
    S_SUB_PUT,
    S_SUB_DEL,
    S_MSG_PUT,
    S_MSG_DEL,
    S_ITEM_PUT,
    S_ITEM_UPD,
    S_ITEM_DEL,
    S_RX_PUT,
    S_RX_DEL,
    S_COUNT
};

static const char *const sql[S_COUNT] = {
    [S_BEGIN] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    [S_SESSION_PUT] =
        "INSERT OR REPLACE INTO sessions VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
    [S_SESSION_DEL] = "DELETE FROM sessions WHERE key = ?",
    [S_SESSION_DEL_SUBS] = "DELETE FROM subs WHERE key = ?",
    [S_SESSION_DEL_ITEMS] = "DELETE FROM items WHERE key = ?",
    [S_SESSION_DEL_RX] = "DELETE FROM rx WHERE key = ?",
    [S_SUB_PUT] = "INSERT OR REPLACE INTO subs VALUES(?,?,?,?,?,?)",
    [S_SUB_DEL] = "DELETE FROM subs WHERE key = ? AND filter = ? AND grp = ?",
    [S_MSG_PUT] = "INSERT OR REPLACE INTO msgs VALUES(?,?,?,?,?,?,?)",
    [S_MSG_DEL] = "DELETE FROM msgs WHERE pid = ?",
    [S_ITEM_PUT] = "INSERT OR REPLACE INTO items VALUES(?,?,?,?,?,?,?,?)",
    [S_ITEM_UPD] = "UPDATE items SET state = ?, packet_id = ? WHERE seq = ?",
    [S_ITEM_DEL] = "DELETE FROM items WHERE seq = ?",
    [S_RX_PUT] = "INSERT OR IGNORE INTO rx VALUES(?,?)",
    [S_RX_DEL] = "DELETE FROM rx WHERE key = ? AND packet_id = ?",
};

struct sstore_sqlite {
    struct sstore base; /* first: the handle callers hold */
    sqlite3 *db;
    sqlite3_stmt *st[S_COUNT];
};

static int exec(struct sstore_sqlite *s, const char *what)
{
    char *err = NULL;
    if (sqlite3_exec(s->db, what, NULL, NULL, &err) == SQLITE_OK) return 0;
    log_error("session store: %s", err ? err : sqlite3_errmsg(s->db));
    sqlite3_free(err);
    return ERR_DB;
}

static const struct sstore_ops sqlite_ops;
static void sq_close(struct sstore *base);

int sstore_sqlite_open(const char *path, struct sstore **out)
{
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        log_error("session store: cannot create %s", path);
        return ERR_IO;
    }
    close(fd);
    struct sstore_sqlite *s = calloc(1, sizeof *s);
    ENSURE(s, ERR_NOMEM);
    s->base.ops = &sqlite_ops;
    int rc = ERR_DB;
    if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        log_error("session store: cannot open %s: %s", path,
                  s->db ? sqlite3_errmsg(s->db) : "out of memory");
        goto out;
    }
    sqlite3_busy_timeout(s->db, 5000);
    GUARD_GOTO(rc, exec(s, "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;"), out);
    GUARD_GOTO(rc, exec(s, schema), out);
    for (int i = 0; i < S_COUNT; i++)
        if (sqlite3_prepare_v3(s->db, sql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->st[i], NULL) !=
            SQLITE_OK) {
            log_error("session store: %s", sqlite3_errmsg(s->db));
            rc = ERR_DB;
            goto out;
        }
    *out = &s->base;
    return 0;
out:
    sq_close(&s->base);
    return rc;
}

static void sq_close(struct sstore *base)
{
    struct sstore_sqlite *s = (struct sstore_sqlite *)base;
    if (!s) return;
    for (int i = 0; i < S_COUNT; i++) sqlite3_finalize(s->st[i]);
    sqlite3_close(s->db);
    free(s);
}

static void bind_str(sqlite3_stmt *st, int i, struct jstr v)
{
    sqlite3_bind_blob(st, i, v.len ? (const void *)v.p : "", (int)v.len, SQLITE_STATIC);
}

/* Runs a bound statement to its end and resets it. */
static int run(struct sstore_sqlite *s, sqlite3_stmt *st)
{
    int r = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (r == SQLITE_DONE || r == SQLITE_ROW) return 0;
    log_error("session store: %s", sqlite3_errmsg(s->db));
    return ERR_DB;
}

static int put_session(struct sstore_sqlite *s, const struct jrec *r)
{
    sqlite3_stmt *st = s->st[S_SESSION_PUT];
    bind_str(st, 1, r->key);
    bind_str(st, 2, r->tenant);
    bind_str(st, 3, r->client_id);
    bind_str(st, 4, r->identity);
    bind_str(st, 5, r->anchor);
    sqlite3_bind_int(st, 6, r->kind);
    sqlite3_bind_int(st, 7, r->device);
    sqlite3_bind_int(st, 8, r->has_user_name);
    sqlite3_bind_int64(st, 9, r->roles);
    sqlite3_bind_int64(st, 10, r->expiry);
    sqlite3_bind_int64(st, 11, r->offline_since);
    if (r->has_will) {
        sqlite3_bind_int64(st, 12, r->will_delay);
        sqlite3_bind_int64(st, 13, r->will_expiry);
        bind_str(st, 14, r->topic);
        bind_str(st, 15, r->payload);
        bind_str(st, 16, r->props);
        sqlite3_bind_int(st, 17, r->qos);
        sqlite3_bind_int(st, 18, r->retain);
        sqlite3_bind_int64(st, 19, r->expire_at);
    }
    return run(s, st);
}

/* Binds the record's key to statement which and runs it. */
static int by_key(struct sstore_sqlite *s, int which, const struct jrec *r)
{
    bind_str(s->st[which], 1, r->key);
    return run(s, s->st[which]);
}

static int put_sub(struct sstore_sqlite *s, const struct jrec *r, bool del)
{
    sqlite3_stmt *st = s->st[del ? S_SUB_DEL : S_SUB_PUT];
    bind_str(st, 1, r->key);
    bind_str(st, 2, r->filter);
    bind_str(st, 3, r->group);
    if (!del) {
        sqlite3_bind_int(st, 4, r->qos);
        sqlite3_bind_int(st, 5, r->opts);
        sqlite3_bind_int64(st, 6, r->sub_id);
    }
    return run(s, st);
}

static int put_msg(struct sstore_sqlite *s, const struct jrec *r)
{
    sqlite3_stmt *st = s->st[S_MSG_PUT];
    sqlite3_bind_int64(st, 1, (sqlite3_int64)r->pid);
    bind_str(st, 2, r->topic);
    bind_str(st, 3, r->payload);
    bind_str(st, 4, r->props);
    sqlite3_bind_int(st, 5, r->qos);
    sqlite3_bind_int(st, 6, r->retain);
    sqlite3_bind_int64(st, 7, r->expire_at);
    return run(s, st);
}

static int put_item(struct sstore_sqlite *s, const struct jrec *r)
{
    sqlite3_stmt *st = s->st[S_ITEM_PUT];
    sqlite3_bind_int64(st, 1, (sqlite3_int64)r->seq);
    bind_str(st, 2, r->key);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)r->pid);
    sqlite3_bind_int(st, 4, r->qos);
    sqlite3_bind_int(st, 5, r->retain);
    sqlite3_bind_int(st, 6, r->state);
    sqlite3_bind_int(st, 7, r->packet_id);
    sqlite3_bind_blob(st, 8, r->n_ids ? (const void *)r->ids : "", r->n_ids * 4, SQLITE_STATIC);
    return run(s, st);
}

static int apply_one(struct sstore_sqlite *s, const struct jrec *r)
{
    sqlite3_stmt *st;
    switch ((enum jtype)r->type) {
    case J_SESSION_PUT: return put_session(s, r);
    case J_SESSION_DEL:
        GUARD(by_key(s, S_SESSION_DEL_SUBS, r));
        GUARD(by_key(s, S_SESSION_DEL_ITEMS, r));
        GUARD(by_key(s, S_SESSION_DEL_RX, r));
        return by_key(s, S_SESSION_DEL, r);
    case J_SUB_PUT: return put_sub(s, r, false);
    case J_SUB_DEL: return put_sub(s, r, true);
    case J_MSG_PUT: return put_msg(s, r);
    case J_MSG_DEL:
        sqlite3_bind_int64(s->st[S_MSG_DEL], 1, (sqlite3_int64)r->pid);
        return run(s, s->st[S_MSG_DEL]);
    case J_ITEM_PUT: return put_item(s, r);
    case J_ITEM_UPD:
        st = s->st[S_ITEM_UPD];
        sqlite3_bind_int(st, 1, r->state);
        sqlite3_bind_int(st, 2, r->packet_id);
        sqlite3_bind_int64(st, 3, (sqlite3_int64)r->seq);
        return run(s, st);
    case J_ITEM_DEL:
        sqlite3_bind_int64(s->st[S_ITEM_DEL], 1, (sqlite3_int64)r->seq);
        return run(s, s->st[S_ITEM_DEL]);
    case J_RX_PUT:
    case J_RX_DEL:
        st = s->st[r->type == J_RX_PUT ? S_RX_PUT : S_RX_DEL];
        bind_str(st, 1, r->key);
        sqlite3_bind_int(st, 2, r->packet_id);
        return run(s, st);
    }
    return ERR_MALFORMED;
}

static int sq_apply(struct sstore *base, const uint8_t *j, size_t len)
{
    struct sstore_sqlite *s = (struct sstore_sqlite *)base;
    GUARD(run(s, s->st[S_BEGIN]));
    struct rd r = rd_make(j, len);
    struct jrec rec;
    int rc = 0;
    while (rc == 0 && rd_left(&r)) {
        rc = journal_next(&r, &rec);
        if (rc == 0) rc = apply_one(s, &rec);
    }
    if (rc == 0) rc = run(s, s->st[S_COMMIT]);
    /* SQLite may have rolled back already (a full disk does that). */
    if (rc < 0 && !sqlite3_get_autocommit(s->db)) ignore_result(run(s, s->st[S_ROLLBACK]));
    return rc;
}

/* ---- load ---- */

/* An empty or NULL column is "" (SQLite gives NULL for it), never a null
 * pointer: the records' users copy from it with memcpy. */
static struct jstr col_str(sqlite3_stmt *st, int i)
{
    const uint8_t *p = sqlite3_column_blob(st, i);
    uint32_t n = (uint32_t)sqlite3_column_bytes(st, i);
    return (struct jstr){p ? p : (const uint8_t *)"", p ? n : 0};
}

static void row_session(sqlite3_stmt *st, struct jrec *r)
{
    r->type = J_SESSION_PUT;
    r->key = col_str(st, 0);
    r->tenant = col_str(st, 1);
    r->client_id = col_str(st, 2);
    r->identity = col_str(st, 3);
    r->anchor = col_str(st, 4);
    r->kind = (uint8_t)sqlite3_column_int(st, 5);
    r->device = (uint8_t)sqlite3_column_int(st, 6);
    r->has_user_name = (uint8_t)sqlite3_column_int(st, 7);
    r->roles = (uint32_t)sqlite3_column_int64(st, 8);
    r->expiry = (uint32_t)sqlite3_column_int64(st, 9);
    r->offline_since = sqlite3_column_int64(st, 10);
    r->has_will = sqlite3_column_type(st, 13) != SQLITE_NULL;
    r->will_delay = (uint32_t)sqlite3_column_int64(st, 11);
    r->will_expiry = (uint32_t)sqlite3_column_int64(st, 12);
    r->topic = col_str(st, 13);
    r->payload = col_str(st, 14);
    r->props = col_str(st, 15);
    r->qos = (uint8_t)sqlite3_column_int(st, 16);
    r->retain = (uint8_t)sqlite3_column_int(st, 17);
    r->expire_at = sqlite3_column_int64(st, 18);
}

static void row_sub(sqlite3_stmt *st, struct jrec *r)
{
    r->type = J_SUB_PUT;
    r->key = col_str(st, 0);
    r->filter = col_str(st, 1);
    r->group = col_str(st, 2);
    r->qos = (uint8_t)sqlite3_column_int(st, 3);
    r->opts = (uint8_t)sqlite3_column_int(st, 4);
    r->sub_id = (uint32_t)sqlite3_column_int64(st, 5);
}

static void row_msg(sqlite3_stmt *st, struct jrec *r)
{
    r->type = J_MSG_PUT;
    r->pid = (uint64_t)sqlite3_column_int64(st, 0);
    r->topic = col_str(st, 1);
    r->payload = col_str(st, 2);
    r->props = col_str(st, 3);
    r->qos = (uint8_t)sqlite3_column_int(st, 4);
    r->retain = (uint8_t)sqlite3_column_int(st, 5);
    r->expire_at = sqlite3_column_int64(st, 6);
}

static void row_item(sqlite3_stmt *st, struct jrec *r)
{
    r->type = J_ITEM_PUT;
    r->seq = (uint64_t)sqlite3_column_int64(st, 0);
    r->key = col_str(st, 1);
    r->pid = (uint64_t)sqlite3_column_int64(st, 2);
    r->qos = (uint8_t)sqlite3_column_int(st, 3);
    r->retain = (uint8_t)sqlite3_column_int(st, 4);
    r->state = (uint8_t)sqlite3_column_int(st, 5);
    r->packet_id = (uint16_t)sqlite3_column_int(st, 6);
    struct jstr ids = col_str(st, 7);
    r->n_ids = (uint16_t)(ids.len / 4);
    r->ids = ids.p;
}

static void row_rx(sqlite3_stmt *st, struct jrec *r)
{
    r->type = J_RX_PUT;
    r->key = col_str(st, 0);
    r->packet_id = (uint16_t)sqlite3_column_int(st, 1);
}

/* Runs query and hands each row, made a record by conv, to fn. */
static int load_rows(struct sstore_sqlite *s, const char *query,
                     void (*conv)(sqlite3_stmt *, struct jrec *), sstore_load_fn fn, void *arg)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, query, -1, &st, NULL) != SQLITE_OK) {
        log_error("session store: %s", sqlite3_errmsg(s->db));
        return ERR_DB;
    }
    int rc = 0, r;
    while (rc == 0 && (r = sqlite3_step(st)) == SQLITE_ROW) {
        struct jrec rec = {0};
        conv(st, &rec);
        rc = fn(arg, &rec);
    }
    if (rc == 0 && r != SQLITE_DONE) {
        log_error("session store: %s", sqlite3_errmsg(s->db));
        rc = ERR_DB;
    }
    sqlite3_finalize(st);
    return rc;
}

static int sq_load(struct sstore *base, sstore_load_fn fn, void *arg)
{
    struct sstore_sqlite *s = (struct sstore_sqlite *)base;
    GUARD(load_rows(s, "SELECT * FROM sessions", row_session, fn, arg));
    GUARD(load_rows(s, "SELECT * FROM subs", row_sub, fn, arg));
    GUARD(load_rows(s, "SELECT * FROM msgs ORDER BY pid", row_msg, fn, arg));
    GUARD(load_rows(s, "SELECT * FROM items ORDER BY seq", row_item, fn, arg));
    return load_rows(s, "SELECT * FROM rx", row_rx, fn, arg);
}

static const struct sstore_ops sqlite_ops = {
    .close = sq_close,
    .apply = sq_apply,
    .load = sq_load,
};
