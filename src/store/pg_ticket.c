/* PostgreSQL table of the TLS session-ticket keys (store.h): one sealed key
 * per rotation period and slot; nodes that make one at the same moment
 * agree because the first insert wins (ON CONFLICT DO NOTHING, then get). */
#include <stdlib.h>
#include <time.h>

#include "store/pg_int.h"

int pgs_ticket_key_put(struct store *st, int64_t period, int64_t slot, const void *sealed,
                       size_t sealed_len)
{
    struct pg_params p = {0};
    pg_int(&p, period);
    pg_int(&p, slot);
    pg_blob(&p, sealed, sealed_len);
    pg_int(&p, (int64_t)time(NULL));
    struct pg_conn *c = pg_lock(st);
    int rc = pg_exec(c,
                     "INSERT INTO ticket_keys(period, slot, sealed, created) VALUES($1,$2,$3,$4)"
                     " ON CONFLICT DO NOTHING",
                     &p, NULL, NULL);
    struct pg_params d = {0};
    pg_int(&d, period);
    pg_int(&d, slot);
    if (rc == 0)
        rc = pg_exec(c, "DELETE FROM ticket_keys WHERE period = $1 AND slot < $2::bigint - 1", &d,
                     NULL, NULL);
    pg_unlock(st);
    return rc;
}

int pgs_ticket_key_get(struct store *st, int64_t period, int64_t slot, void **sealed,
                       size_t *sealed_len)
{
    *sealed = NULL;
    *sealed_len = 0;
    struct pg_params p = {0};
    pg_int(&p, period);
    pg_int(&p, slot);
    PGresult *r = NULL;
    int rc = pg_one(st, "SELECT sealed FROM ticket_keys WHERE period = $1 AND slot = $2", &p, &r);
    if (rc == 0) rc = pg_col_blob(r, 0, 0, sealed, sealed_len);
    if (rc == 0 && !*sealed) rc = ERR_DB;
    PQclear(r);
    return rc;
}
