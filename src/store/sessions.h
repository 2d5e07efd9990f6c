/* The session store: where durable MQTT session state lives (journal.h
 * records). One writer applies batches of records, each batch in one
 * transaction; at start everything is read back. Backends: SQLite
 * (sessions_sqlite.c) and PostgreSQL (sessions_pg.c), chosen by sstore_open. */
#ifndef CERTMQ_STORE_SESSIONS_H
#define CERTMQ_STORE_SESSIONS_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "core/buf.h"
#include "store/journal.h"

struct sstore;

/* Opens the session store at path: a file (SQLite, created mode 0600) or
 * a postgresql:// conninfo URI (its own tables in that database). */
MUST_USE int sstore_open(const char *path, struct sstore **out);
/* The session store of a cluster node on PostgreSQL (conninfo): its own
 * schema, named from node, in the store's database. The writer handle
 * (applies, loads) marks the node as running while it is open; ERR_UNAVAILABLE
 * when another process has it. Another handle (writer false) only takes. */
MUST_USE int sstore_open_node(const char *conninfo, const char *node, bool writer,
                              struct sstore **out);
void sstore_close(struct sstore *s);

/* Takes the session key (tenant \x01 ClientId) from the store of a node
 * that is gone (its writer handle is closed: the process ended; and it is
 * not named in live, NULL-terminated, NULL: none): its
 * records are appended to out, as sstore_load orders them, and its rows
 * deleted, in one transaction. 1: taken; 0: no such session (or a SQLite
 * store); ERR_UNAVAILABLE or ERR_DB, and out unchanged, when it failed. */
MUST_USE int sstore_take(struct sstore *s, const char *key, size_t klen, const char *const *live,
                         struct buf *out);

/* Applies the records in j[0..len) in one transaction, durable on disk
 * (fsync) when it returns 0. On failure nothing of it is applied
 * (ERR_UNAVAILABLE when a PostgreSQL server cannot be reached). */
MUST_USE int sstore_apply(struct sstore *s, const uint8_t *j, size_t len);

/* Reads everything back as records, in an order that rebuilds it: every
 * J_SESSION_PUT, then J_SUB_PUT, J_MSG_PUT (messages some item holds, in increasing pid order),
 * J_ITEM_PUT in the order they were queued, J_RX_PUT. fn's error stops the
 * load and is returned. */
typedef int (*sstore_load_fn)(void *arg, const struct jrec *r);
MUST_USE int sstore_load(struct sstore *s, sstore_load_fn fn, void *arg);

#endif
