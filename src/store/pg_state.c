/* PostgreSQL tables of what the broker keeps across restarts (store.h):
 * retained messages, topic-authorization rules and roles, and when each
 * device was last seen. Same behaviour as sqlite.c; statements are bound. */
#include <stdlib.h>
#include <string.h>

#include "store/pg_int.h"

/* ---- retained messages ---- */

int pgs_retained_put(struct store *st, const char *tenant, const void *topic, size_t tlen,
                     const void *payload, size_t plen, int qos)
{
    struct pg_params p = {0};
    pg_text(&p, tenant);
    pg_blob(&p, topic, tlen);
    if (!plen)
        return pg_run(st, "DELETE FROM retained WHERE tenant = $1 AND topic = $2", &p, NULL, NULL);
    pg_blob(&p, payload, plen);
    pg_int(&p, qos);
    return pg_run(st,
                  "INSERT INTO retained(tenant, topic, payload, qos) VALUES($1,$2,$3,$4)"
                  " ON CONFLICT(tenant, topic) DO UPDATE SET payload = excluded.payload,"
                  " qos = excluded.qos",
                  &p, NULL, NULL);
}

static int retained_row(const PGresult *r, int i, const struct pg_visit *v)
{
    void *topic = NULL, *payload = NULL;
    size_t tlen = 0, plen = 0;
    int rc = pg_col_blob(r, i, 1, &topic, &tlen);
    if (rc == 0) rc = pg_col_blob(r, i, 2, &payload, &plen);
    if (rc == 0)
        rc = ((store_retained_cb)v->cb)(v->arg, pg_col(r, i, 0), topic, tlen, payload, plen,
                                        (int)pg_col_int(r, i, 3));
    free(topic);
    free(payload);
    return rc;
}

int pgs_retained_list(struct store *st, store_retained_cb cb, void *arg)
{
    return pg_each(st, "SELECT tenant, topic, payload, qos FROM retained ORDER BY seq", NULL,
                   retained_row, &(struct pg_visit){(void (*)(void))cb, arg});
}

/* By the digest of schema 9's notices, through its index. */
int pgs_retained_get(struct store *st, const char *tenant, const char *digest, store_retained_cb cb,
                     void *arg)
{
    struct pg_params p = {0};
    pg_text(&p, tenant);
    pg_text(&p, digest);
    PGresult *r = NULL;
    int rc = pg_one(st,
                    "SELECT tenant, topic, payload, qos FROM retained"
                    " WHERE tenant = $1 AND encode(sha256(topic), 'hex') = $2",
                    &p, &r);
    if (rc == 0) rc = retained_row(r, 0, &(struct pg_visit){(void (*)(void))cb, arg});
    PQclear(r);
    return rc;
}

/* ---- topic authorization ---- */

int pgs_authz_rules_put(struct store *st, const char *tenant, const char *rules_json)
{
    struct pg_params p = {0};
    pg_text(&p, tenant);
    pg_text(&p, rules_json);
    return pg_run(st,
                  "INSERT INTO authz_rules(tenant, rules) VALUES($1,$2)"
                  " ON CONFLICT(tenant) DO UPDATE SET rules = excluded.rules",
                  &p, NULL, NULL);
}

int pgs_authz_roles_put(struct store *st, const char *tenant, const char *user, const char *roles)
{
    struct pg_params p = {0};
    pg_text(&p, tenant);
    pg_text(&p, user);
    if (!roles || !*roles)
        return pg_run(st, "DELETE FROM authz_roles WHERE tenant = $1 AND \"user\" = $2", &p, NULL,
                      NULL);
    pg_text(&p, roles);
    return pg_run(st,
                  "INSERT INTO authz_roles(tenant, \"user\", roles) VALUES($1,$2,$3)"
                  " ON CONFLICT(tenant, \"user\") DO UPDATE SET roles = excluded.roles",
                  &p, NULL, NULL);
}

static int authz_row(const PGresult *r, int i, const struct pg_visit *v)
{
    return ((store_authz_cb)v->cb)(v->arg, pg_col(r, i, 0), pg_col(r, i, 1), pg_col(r, i, 2));
}

int pgs_authz_rules_list(struct store *st, store_authz_cb cb, void *arg)
{
    return pg_each(st, "SELECT tenant, '', rules FROM authz_rules", NULL, authz_row,
                   &(struct pg_visit){(void (*)(void))cb, arg});
}

int pgs_authz_roles_list(struct store *st, store_authz_cb cb, void *arg)
{
    return pg_each(st, "SELECT tenant, \"user\", roles FROM authz_roles", NULL, authz_row,
                   &(struct pg_visit){(void (*)(void))cb, arg});
}

/* ---- when devices were last seen ---- */

int pgs_device_seen_put(struct store *st, const struct store_seen *v, size_t n)
{
    struct pg_conn *c = pg_lock(st);
    int rc = pg_begin(c);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        struct pg_params p = {0};
        pg_text(&p, v[i].tenant);
        pg_text(&p, v[i].cn);
        pg_int(&p, v[i].last_seen);
        pg_int(&p, v[i].not_after);
        rc = pg_exec(c,
                     "INSERT INTO device_seen(tenant, cn, last_seen, not_after)"
                     " SELECT $1::text, $2::text, $3::bigint, $4::bigint"
                     " WHERE EXISTS(SELECT 1 FROM tenants WHERE id = $1::text)"
                     " ON CONFLICT(tenant, cn) DO UPDATE SET last_seen = excluded.last_seen,"
                     " not_after = excluded.not_after",
                     &p, NULL, NULL);
    }
    if (c->in_tx) rc = pg_end(c, rc);
    pg_unlock(st);
    return rc;
}

static int seen_row(const PGresult *r, int i, const struct pg_visit *v)
{
    struct store_seen s = {pg_col(r, i, 0), pg_col(r, i, 1), pg_col_int(r, i, 2),
                           pg_col_int(r, i, 3)};
    return ((store_seen_cb)v->cb)(v->arg, &s);
}

int pgs_device_seen_list(struct store *st, store_seen_cb cb, void *arg)
{
    return pg_each(st, "SELECT tenant, cn, last_seen, not_after FROM device_seen", NULL, seen_row,
                   &(struct pg_visit){(void (*)(void))cb, arg});
}
