/* SQLite tables of the certificate lifecycle (store.h, schema 6): tenant
 * CAs with sealed keys, one-time enrollment tokens by hash, and the record
 * of every issued certificate. Statements are bound, never built from
 * input; each call holds the store's mutex (sqlite_int.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/sqlite_int.h"
#include "store/store.h"

/* One statement, prepared under the lock; finalised by done(). */
static sqlite3_stmt *prep(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK) return NULL;
    return s;
}

static void text(sqlite3_stmt *s, int i, const char *v)
{
    sqlite3_bind_text(s, i, v ? v : "", -1, SQLITE_STATIC);
}

static void copy_col(char *dst, size_t cap, sqlite3_stmt *s, int col)
{
    const unsigned char *v = sqlite3_column_text(s, col);
    snprintf(dst, cap, "%s", v ? (const char *)v : "");
}

/* Steps a statement that returns no rows, finalises it, unlocks. */
static int run_unlock(struct store *st, sqlite3_stmt *s)
{
    int rc = s ? store_db_rc(st, sqlite3_step(s)) : ERR_DB;
    sqlite3_finalize(s);
    store_db_unlock(st);
    return rc;
}

static void *dup_blob(sqlite3_stmt *s, int col, size_t *n)
{
    *n = (size_t)sqlite3_column_bytes(s, col);
    void *p = malloc(*n ? *n : 1);
    if (p && *n) memcpy(p, sqlite3_column_blob(s, col), *n);
    return p;
}

int sq_ca_insert(struct store *st, const char *tenant, const void *der, size_t der_len,
                 const void *sealed, size_t sealed_len)
{
    sqlite3_stmt *s = prep(store_db_lock(st), "INSERT INTO tenant_ca(tenant, der, key_sealed,"
                                              " created) VALUES(?,?,?,?)");
    if (s) {
        text(s, 1, tenant);
        sqlite3_bind_blob64(s, 2, der, der_len, SQLITE_STATIC);
        sqlite3_bind_blob64(s, 3, sealed, sealed_len, SQLITE_STATIC);
        sqlite3_bind_int64(s, 4, (sqlite3_int64)time(NULL));
    }
    return run_unlock(st, s);
}

int sq_ca_get(struct store *st, const char *tenant, struct store_ca *out)
{
    int rc = ERR_DB;
    memset(out, 0, sizeof *out);
    sqlite3_stmt *s = prep(store_db_lock(st), "SELECT der, key_sealed, created FROM tenant_ca"
                                              " WHERE tenant = ?");
    if (!s) goto out;
    text(s, 1, tenant);
    int step = sqlite3_step(s);
    if (step != SQLITE_ROW) {
        rc = step == SQLITE_DONE ? ERR_NOT_FOUND : store_db_rc(st, step);
        goto out;
    }
    out->der = dup_blob(s, 0, &out->der_len);
    out->sealed = dup_blob(s, 1, &out->sealed_len);
    out->created = sqlite3_column_int64(s, 2);
    rc = out->der && out->sealed ? 0 : ERR_NOMEM;
    if (rc < 0) store_ca_clear(out);
out:
    sqlite3_finalize(s);
    store_db_unlock(st);
    return rc;
}

int sq_ca_update_cert(struct store *st, const char *tenant, const void *der, size_t der_len)
{
    sqlite3 *db = store_db_lock(st);
    sqlite3_stmt *s = prep(db, "UPDATE tenant_ca SET der = ? WHERE tenant = ?");
    if (!s) return run_unlock(st, s);
    sqlite3_bind_blob64(s, 1, der, der_len, SQLITE_STATIC);
    text(s, 2, tenant);
    int rc = store_db_rc(st, sqlite3_step(s));
    if (rc == 0 && sqlite3_changes(db) == 0) rc = ERR_NOT_FOUND;
    sqlite3_finalize(s);
    store_db_unlock(st);
    return rc;
}

int sq_ca_delete(struct store *st, const char *tenant)
{
    sqlite3 *db = store_db_lock(st);
    sqlite3_stmt *s = prep(db, "DELETE FROM tenant_ca WHERE tenant = ?");
    if (!s) return run_unlock(st, s);
    text(s, 1, tenant);
    int rc = store_db_rc(st, sqlite3_step(s));
    if (rc == 0 && sqlite3_changes(db) == 0) rc = ERR_NOT_FOUND;
    sqlite3_finalize(s);
    store_db_unlock(st);
    return rc;
}

int sq_ca_tenants(struct store *st, int (*cb)(void *arg, const char *tenant), void *arg)
{
    int rc = ERR_DB, step;
    sqlite3_stmt *s = prep(store_db_lock(st), "SELECT tenant FROM tenant_ca ORDER BY tenant");
    if (!s) goto out;
    rc = 0;
    while (rc == 0 && (step = sqlite3_step(s)) == SQLITE_ROW)
        rc = cb(arg, (const char *)sqlite3_column_text(s, 0));
    if (rc == 0 && step != SQLITE_DONE) rc = store_db_rc(st, step);
out:
    sqlite3_finalize(s);
    store_db_unlock(st);
    return rc;
}

/* ---- enrollment tokens ---- */

int sq_enroll_token_put(struct store *st, const char *hash, const struct store_enroll_token *t)
{
    sqlite3_stmt *s = prep(store_db_lock(st), "INSERT INTO enroll_tokens(hash, tenant, device,"
                                              " valid_until, used, created) VALUES(?,?,?,?,0,?)");
    if (s) {
        text(s, 1, hash);
        text(s, 2, t->tenant);
        text(s, 3, t->device);
        sqlite3_bind_int64(s, 4, t->valid_until);
        sqlite3_bind_int64(s, 5, (sqlite3_int64)time(NULL));
    }
    return run_unlock(st, s);
}

int sq_enroll_token_get(struct store *st, const char *hash, struct store_enroll_token *out)
{
    int rc = ERR_DB;
    memset(out, 0, sizeof *out);
    sqlite3_stmt *s = prep(store_db_lock(st), "SELECT tenant, device, valid_until, used FROM"
                                              " enroll_tokens WHERE hash = ?");
    if (!s) goto out;
    text(s, 1, hash);
    int step = sqlite3_step(s);
    if (step == SQLITE_ROW) {
        copy_col(out->tenant, sizeof out->tenant, s, 0);
        copy_col(out->device, sizeof out->device, s, 1);
        out->valid_until = sqlite3_column_int64(s, 2);
        out->used = sqlite3_column_int(s, 3) != 0;
        rc = 0;
    } else {
        rc = step == SQLITE_DONE ? ERR_NOT_FOUND : store_db_rc(st, step);
    }
out:
    sqlite3_finalize(s);
    store_db_unlock(st);
    return rc;
}

int sq_enroll_token_use(struct store *st, const char *hash)
{
    sqlite3 *db = store_db_lock(st);
    sqlite3_stmt *s = prep(db, "UPDATE enroll_tokens SET used = 1 WHERE hash = ? AND used = 0");
    if (!s) return run_unlock(st, s);
    text(s, 1, hash);
    int rc = store_db_rc(st, sqlite3_step(s));
    if (rc == 0 && sqlite3_changes(db) != 1) rc = ERR_CONFLICT;
    sqlite3_finalize(s);
    store_db_unlock(st);
    return rc;
}

/* ---- issuance records ---- */

#define ISSUANCE_COLS "serial, cn, not_after, issued, method, actor"

int sq_issuance_add(struct store *st, const char *tenant, const struct store_issuance *i)
{
    sqlite3_stmt *s = prep(store_db_lock(st), "INSERT INTO issuances(tenant, " ISSUANCE_COLS
                                              ") VALUES(?,?,?,?,?,?,?)");
    if (s) {
        text(s, 1, tenant);
        text(s, 2, i->serial);
        text(s, 3, i->cn);
        sqlite3_bind_int64(s, 4, i->not_after);
        sqlite3_bind_int64(s, 5, i->issued);
        text(s, 6, i->method);
        text(s, 7, i->actor);
    }
    return run_unlock(st, s);
}

static void read_issuance(sqlite3_stmt *s, struct store_issuance *i)
{
    memset(i, 0, sizeof *i);
    copy_col(i->serial, sizeof i->serial, s, 0);
    copy_col(i->cn, sizeof i->cn, s, 1);
    i->not_after = sqlite3_column_int64(s, 2);
    i->issued = sqlite3_column_int64(s, 3);
    copy_col(i->method, sizeof i->method, s, 4);
    copy_col(i->actor, sizeof i->actor, s, 5);
}

int sq_issuance_list(struct store *st, const char *tenant, size_t offset, size_t limit,
                     store_issuance_cb cb, void *arg)
{
    int rc = ERR_DB, step;
    sqlite3_stmt *s = prep(store_db_lock(st), "SELECT " ISSUANCE_COLS " FROM issuances WHERE"
                                              " tenant = ? ORDER BY rowid DESC LIMIT ? OFFSET ?");
    if (!s) goto out;
    text(s, 1, tenant);
    sqlite3_bind_int64(s, 2, limit ? (sqlite3_int64)limit : -1);
    sqlite3_bind_int64(s, 3, (sqlite3_int64)offset);
    rc = 0;
    while (rc == 0 && (step = sqlite3_step(s)) == SQLITE_ROW) {
        struct store_issuance i;
        read_issuance(s, &i);
        rc = cb(arg, &i);
    }
    if (rc == 0 && step != SQLITE_DONE) rc = store_db_rc(st, step);
out:
    sqlite3_finalize(s);
    store_db_unlock(st);
    return rc;
}

int sq_issuance_count(struct store *st, const char *tenant, size_t *n)
{
    int rc = ERR_DB;
    *n = 0;
    sqlite3_stmt *s = prep(store_db_lock(st), "SELECT count(*) FROM issuances WHERE tenant = ?");
    if (!s) goto out;
    text(s, 1, tenant);
    int step = sqlite3_step(s);
    rc = step == SQLITE_ROW ? 0 : store_db_rc(st, step);
    if (rc == 0) *n = (size_t)sqlite3_column_int64(s, 0);
out:
    sqlite3_finalize(s);
    store_db_unlock(st);
    return rc;
}

/* One issuance by key: a serial, or (latest) the newest for a CN. */
static int issuance_one(struct store *st, const char *tenant, const char *key, bool latest,
                        struct store_issuance *out)
{
    int rc = ERR_DB;
    sqlite3_stmt *s =
        prep(store_db_lock(st),
             latest ? "SELECT " ISSUANCE_COLS " FROM issuances WHERE tenant = ? AND cn = ?"
                      " ORDER BY issued DESC, rowid DESC LIMIT 1"
                    : "SELECT " ISSUANCE_COLS " FROM issuances WHERE tenant = ? AND serial = ?");
    if (!s) goto out;
    text(s, 1, tenant);
    text(s, 2, key);
    int step = sqlite3_step(s);
    if (step == SQLITE_ROW) {
        read_issuance(s, out);
        rc = 0;
    } else {
        rc = step == SQLITE_DONE ? ERR_NOT_FOUND : store_db_rc(st, step);
    }
out:
    sqlite3_finalize(s);
    store_db_unlock(st);
    return rc;
}

int sq_issuance_get(struct store *st, const char *tenant, const char *serial,
                    struct store_issuance *out)
{
    return issuance_one(st, tenant, serial, false, out);
}

int sq_issuance_latest(struct store *st, const char *tenant, const char *cn,
                       struct store_issuance *out)
{
    return issuance_one(st, tenant, cn, true, out);
}
