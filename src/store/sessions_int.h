/* Private to src/store: the operations each backend of the session store
 * (sessions.h) fills; sessions.c dispatches through them. A backend's
 * handle starts with struct sstore. */
#ifndef CERTMQ_STORE_SESSIONS_INT_H
#define CERTMQ_STORE_SESSIONS_INT_H

#include "store/sessions.h"

struct sstore_ops {
    void (*close)(struct sstore *s);
    int (*apply)(struct sstore *s, const uint8_t *j, size_t len);
    int (*load)(struct sstore *s, sstore_load_fn fn, void *arg);
    int (*take)(struct sstore *s, const char *key, size_t klen, const char *const *live,
                struct buf *out); /* or NULL */
};

struct sstore {
    const struct sstore_ops *ops;
};

MUST_USE int sstore_sqlite_open(const char *path, struct sstore **out);
/* node: a cluster node's own schema (NULL: public); writer: the handle
 * that applies and loads (else one that only takes, sstore_take). */
MUST_USE int sstore_pg_open(const char *conninfo, const char *node, bool writer,
                            struct sstore **out);

#endif
