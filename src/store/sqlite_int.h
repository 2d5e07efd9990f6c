/* Private to src/store: what sqlite.c lends the files that keep other
 * tables (sqlite_ca.c): the connection with the store's mutex held, and
 * the mapping of SQLite results to enum err. */
#ifndef CERTMQ_STORE_SQLITE_INT_H
#define CERTMQ_STORE_SQLITE_INT_H

#include <sqlite3.h>

struct store;

/* Takes the store's mutex and returns its connection; store_db_unlock
 * releases it. Every statement a caller prepares is finalised before. */
sqlite3 *store_db_lock(struct store *st);
void store_db_unlock(struct store *st);
/* 0 for SQLITE_OK/DONE/ROW, ERR_EXISTS for a key conflict, ERR_NOT_FOUND
 * for a foreign key, else ERR_DB (logged). Called with the mutex held. */
int store_db_rc(struct store *st, int rc);

#endif
