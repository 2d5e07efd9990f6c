/* The session store: where durable MQTT session state lives (journal.h
 * records). One writer applies batches of records, each batch in one
 * transaction; at start everything is read back. Backends: SQLite
 * (sessions_sqlite.c) and PostgreSQL (sessions_pg.c), chosen by sstore_open. */
#ifndef CERTMQ_STORE_SESSIONS_H
#define CERTMQ_STORE_SESSIONS_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "store/journal.h"

struct sstore;

/* Opens the session store at path: a file (SQLite, created mode 0600) or
 * a postgresql:// conninfo URI (its own tables in that database). */
MUST_USE int sstore_open(const char *path, struct sstore **out);
void sstore_close(struct sstore *s);

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
