/* The session store's front (sessions.h): opens the backend its location
 * names (a file path: SQLite, sessions_sqlite.c; a postgresql:// URI:
 * sessions_pg.c) and dispatches the other calls to it. */
#include "store/sessions.h"

#include "store/sessions_int.h"
#include "store/store.h"

int sstore_open(const char *path, struct sstore **out)
{
    return store_is_pg(path) ? sstore_pg_open(path, NULL, true, out)
                             : sstore_sqlite_open(path, out);
}

int sstore_open_node(const char *conninfo, const char *node, bool writer, struct sstore **out)
{
    ENSURE(store_is_pg(conninfo), ERR_INVALID);
    return sstore_pg_open(conninfo, node, writer, out);
}

int sstore_take(struct sstore *s, const char *key, size_t klen, const char *const *live,
                struct buf *out)
{
    return s->ops->take ? s->ops->take(s, key, klen, live, out) : 0;
}

void sstore_close(struct sstore *s)
{
    if (s) s->ops->close(s);
}

int sstore_apply(struct sstore *s, const uint8_t *j, size_t len)
{
    return s->ops->apply(s, j, len);
}

int sstore_load(struct sstore *s, sstore_load_fn fn, void *arg)
{
    return s->ops->load(s, fn, arg);
}
