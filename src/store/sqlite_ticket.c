/* SQLite table of the TLS session-ticket keys (store.h): one sealed key per
 * rotation period and slot, the first one written for a slot kept. Each
 * call holds the store's mutex (sqlite_int.h); statements are bound. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/sqlite_int.h"
#include "store/store.h"

int sq_ticket_key_put(struct store *st, int64_t period, int64_t slot, const void *sealed,
                      size_t sealed_len)
{
    sqlite3 *db = store_db_lock(st);
    sqlite3_stmt *ins = NULL, *del = NULL;
    int rc = ERR_DB;
    if (sqlite3_prepare_v2(db,
                           "INSERT OR IGNORE INTO ticket_keys(period, slot, sealed, created)"
                           " VALUES(?,?,?,?)",
                           -1, &ins, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "DELETE FROM ticket_keys WHERE period = ? AND slot < ? - 1", -1,
                           &del, NULL) != SQLITE_OK)
        goto out;
    sqlite3_bind_int64(ins, 1, period);
    sqlite3_bind_int64(ins, 2, slot);
    sqlite3_bind_blob64(ins, 3, sealed, sealed_len, SQLITE_STATIC);
    sqlite3_bind_int64(ins, 4, (sqlite3_int64)time(NULL));
    rc = store_db_rc(st, sqlite3_step(ins));
    sqlite3_bind_int64(del, 1, period);
    sqlite3_bind_int64(del, 2, slot);
    if (rc == 0) rc = store_db_rc(st, sqlite3_step(del));
out:
    sqlite3_finalize(ins);
    sqlite3_finalize(del);
    store_db_unlock(st);
    return rc;
}

int sq_ticket_key_get(struct store *st, int64_t period, int64_t slot, void **sealed,
                      size_t *sealed_len)
{
    *sealed = NULL;
    *sealed_len = 0;
    sqlite3 *db = store_db_lock(st);
    sqlite3_stmt *s = NULL;
    int rc = ERR_DB;
    if (sqlite3_prepare_v2(db, "SELECT sealed FROM ticket_keys WHERE period = ? AND slot = ?", -1,
                           &s, NULL) != SQLITE_OK)
        goto out;
    sqlite3_bind_int64(s, 1, period);
    sqlite3_bind_int64(s, 2, slot);
    int step = sqlite3_step(s);
    if (step != SQLITE_ROW) {
        rc = step == SQLITE_DONE ? ERR_NOT_FOUND : store_db_rc(st, step);
        goto out;
    }
    size_t n = (size_t)sqlite3_column_bytes(s, 0);
    *sealed = malloc(n ? n : 1);
    if (!*sealed) {
        rc = ERR_NOMEM;
        goto out;
    }
    if (n) memcpy(*sealed, sqlite3_column_blob(s, 0), n);
    *sealed_len = n;
    rc = 0;
out:
    sqlite3_finalize(s);
    store_db_unlock(st);
    return rc;
}
