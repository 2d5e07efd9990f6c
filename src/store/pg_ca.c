/* PostgreSQL tables of key material and the certificate lifecycle
 * (store.h): device-token signing keys (sealed), tenant CAs with sealed
 * keys, one-time enrollment tokens by hash, and every issued certificate.
 * Same behaviour as sqlite.c and sqlite_ca.c; statements are bound. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/pg_int.h"

static void copy_col(char *dst, size_t cap, const PGresult *r, int row, int col)
{
    snprintf(dst, cap, "%s", pg_col(r, row, col));
}

/* ---- device-token keys ---- */

int pgs_token_key_put(struct store *st, const char *tenant, const void *sealed, size_t sealed_len,
                      const char *pub_pem)
{
    struct pg_params p = {0};
    pg_text(&p, tenant);
    pg_blob(&p, sealed, sealed_len);
    pg_text(&p, pub_pem);
    pg_int(&p, (int64_t)time(NULL));
    return pg_run(st,
                  "INSERT INTO token_keys(tenant, priv_pem, priv_sealed, pub_pem, created)"
                  " VALUES($1,'',$2,$3,$4) ON CONFLICT DO NOTHING",
                  &p, NULL, NULL);
}

int pgs_token_key_get(struct store *st, const char *tenant, void **sealed, size_t *sealed_len,
                      char **pub_pem)
{
    *sealed = NULL;
    *pub_pem = NULL;
    struct pg_params p = {0};
    pg_text(&p, tenant);
    PGresult *r = NULL;
    int rc = pg_one(st, "SELECT priv_sealed, pub_pem FROM token_keys WHERE tenant = $1", &p, &r);
    if (rc == 0) rc = pg_col_blob(r, 0, 0, sealed, sealed_len);
    if (rc == 0 && !(*pub_pem = strdup(pg_col(r, 0, 1)))) rc = ERR_NOMEM;
    if (rc == 0 && !*sealed) rc = ERR_DB; /* not sealed yet: rewrap runs first */
    if (rc < 0) {
        free(*sealed);
        free(*pub_pem);
        *sealed = NULL;
        *pub_pem = NULL;
    }
    PQclear(r);
    return rc;
}

/* Calls fn for row i and writes what it returns (in the transaction). */
static int rewrap_row(struct pg_conn *c, const PGresult *r, int i, store_token_key_fn fn, void *arg,
                      size_t *changed)
{
    const char *pem = pg_col(r, i, 1);
    void *sealed = NULL, *blob = NULL;
    size_t sealed_len = 0, len = 0;
    int rc = pg_col_blob(r, i, 2, &sealed, &sealed_len);
    if (rc == 0) rc = fn(arg, pg_col(r, i, 0), *pem ? pem : NULL, sealed, sealed_len, &blob, &len);
    if (rc == 0 && blob) {
        struct pg_params p = {0};
        pg_blob(&p, blob, len);
        pg_text(&p, pg_col(r, i, 0));
        rc = pg_exec(c, "UPDATE token_keys SET priv_sealed = $1, priv_pem = '' WHERE tenant = $2",
                     &p, NULL, NULL);
        if (rc == 0) (*changed)++;
    }
    free(blob);
    free(sealed);
    return rc;
}

int pgs_token_key_rewrap(struct store *st, store_token_key_fn fn, void *arg, size_t *changed)
{
    *changed = 0;
    PGresult *r = NULL;
    struct pg_conn *c = pg_lock(st);
    int rc = pg_begin(c);
    if (rc == 0) {
        rc = pg_exec(c,
                     "SELECT tenant, priv_pem, priv_sealed FROM token_keys ORDER BY tenant"
                     " FOR UPDATE",
                     NULL, &r, NULL);
        for (int i = 0; rc == 0 && r && i < PQntuples(r); i++)
            rc = rewrap_row(c, r, i, fn, arg, changed);
        rc = pg_end(c, rc);
    }
    if (r) {
        /* The result held plaintext keys of old rows. */
        for (int i = 0; i < PQntuples(r); i++) {
            char *pem = PQgetvalue(r, i, 1);
            explicit_bzero(pem, strlen(pem));
        }
        PQclear(r);
    }
    /* Replaced row versions stay in the table's pages until vacuumed. */
    if (rc == 0 && *changed) ignore_result(pg_exec(c, "VACUUM token_keys", NULL, NULL, NULL));
    pg_unlock(st);
    if (rc < 0) *changed = 0;
    return rc;
}

/* ---- tenant CAs ---- */

int pgs_ca_insert(struct store *st, const char *tenant, const void *der, size_t der_len,
                  const void *sealed, size_t sealed_len)
{
    struct pg_params p = {0};
    pg_text(&p, tenant);
    pg_blob(&p, der, der_len);
    pg_blob(&p, sealed, sealed_len);
    pg_int(&p, (int64_t)time(NULL));
    return pg_run(st, "INSERT INTO tenant_ca(tenant, der, key_sealed, created) VALUES($1,$2,$3,$4)",
                  &p, NULL, NULL);
}

int pgs_ca_get(struct store *st, const char *tenant, struct store_ca *out)
{
    memset(out, 0, sizeof *out);
    struct pg_params p = {0};
    pg_text(&p, tenant);
    PGresult *r = NULL;
    int rc = pg_one(st, "SELECT der, key_sealed, created FROM tenant_ca WHERE tenant = $1", &p, &r);
    void *der = NULL;
    if (rc == 0) rc = pg_col_blob(r, 0, 0, &der, &out->der_len);
    out->der = der;
    if (rc == 0) rc = pg_col_blob(r, 0, 1, &out->sealed, &out->sealed_len);
    if (rc == 0) out->created = pg_col_int(r, 0, 2);
    if (rc == 0 && (!out->der || !out->sealed)) rc = ERR_DB;
    if (rc < 0) store_ca_clear(out);
    PQclear(r);
    return rc;
}

int pgs_ca_update_cert(struct store *st, const char *tenant, const void *der, size_t der_len)
{
    struct pg_params p = {0};
    pg_blob(&p, der, der_len);
    pg_text(&p, tenant);
    size_t n = 0;
    int rc = pg_run(st, "UPDATE tenant_ca SET der = $1 WHERE tenant = $2", &p, NULL, &n);
    return rc == 0 && n == 0 ? ERR_NOT_FOUND : rc;
}

int pgs_ca_delete(struct store *st, const char *tenant)
{
    struct pg_params p = {0};
    pg_text(&p, tenant);
    size_t n = 0;
    int rc = pg_run(st, "DELETE FROM tenant_ca WHERE tenant = $1", &p, NULL, &n);
    return rc == 0 && n == 0 ? ERR_NOT_FOUND : rc;
}

static int ca_tenant_row(const PGresult *r, int i, const struct pg_visit *v)
{
    return ((int (*)(void *, const char *))v->cb)(v->arg, pg_col(r, i, 0));
}

int pgs_ca_tenants(struct store *st, int (*cb)(void *arg, const char *tenant), void *arg)
{
    return pg_each(st, "SELECT tenant FROM tenant_ca ORDER BY tenant", NULL, ca_tenant_row,
                   &(struct pg_visit){(void (*)(void))cb, arg});
}

/* ---- enrollment tokens ---- */

int pgs_enroll_token_put(struct store *st, const char *hash, const struct store_enroll_token *t)
{
    struct pg_params p = {0};
    pg_text(&p, hash);
    pg_text(&p, t->tenant);
    pg_text(&p, t->device);
    pg_int(&p, t->valid_until);
    pg_int(&p, (int64_t)time(NULL));
    return pg_run(st,
                  "INSERT INTO enroll_tokens(hash, tenant, device, valid_until, used, created)"
                  " VALUES($1,$2,$3,$4,0,$5)",
                  &p, NULL, NULL);
}

int pgs_enroll_token_get(struct store *st, const char *hash, struct store_enroll_token *out)
{
    memset(out, 0, sizeof *out);
    struct pg_params p = {0};
    pg_text(&p, hash);
    PGresult *r = NULL;
    int rc = pg_one(st,
                    "SELECT tenant, device, valid_until, used FROM enroll_tokens"
                    " WHERE hash = $1",
                    &p, &r);
    if (rc == 0) {
        copy_col(out->tenant, sizeof out->tenant, r, 0, 0);
        copy_col(out->device, sizeof out->device, r, 0, 1);
        out->valid_until = pg_col_int(r, 0, 2);
        out->used = pg_col_int(r, 0, 3) != 0;
    }
    PQclear(r);
    return rc;
}

/* One use only, also between nodes: the row lock of the UPDATE makes a
 * concurrent second one see used = 1 and change nothing. */
int pgs_enroll_token_use(struct store *st, const char *hash)
{
    struct pg_params p = {0};
    pg_text(&p, hash);
    size_t n = 0;
    int rc =
        pg_run(st, "UPDATE enroll_tokens SET used = 1 WHERE hash = $1 AND used = 0", &p, NULL, &n);
    return rc == 0 && n != 1 ? ERR_CONFLICT : rc;
}

/* ---- issuance records ---- */

#define ISSUANCE_COLS "serial, cn, not_after, issued, method, actor"

int pgs_issuance_add(struct store *st, const char *tenant, const struct store_issuance *i)
{
    struct pg_params p = {0};
    pg_text(&p, tenant);
    pg_text(&p, i->serial);
    pg_text(&p, i->cn);
    pg_int(&p, i->not_after);
    pg_int(&p, i->issued);
    pg_text(&p, i->method);
    pg_text(&p, i->actor);
    return pg_run(st,
                  "INSERT INTO issuances(tenant, " ISSUANCE_COLS ") VALUES($1,$2,$3,$4,$5,$6,$7)",
                  &p, NULL, NULL);
}

static void read_issuance(const PGresult *r, int row, struct store_issuance *i)
{
    memset(i, 0, sizeof *i);
    copy_col(i->serial, sizeof i->serial, r, row, 0);
    copy_col(i->cn, sizeof i->cn, r, row, 1);
    i->not_after = pg_col_int(r, row, 2);
    i->issued = pg_col_int(r, row, 3);
    copy_col(i->method, sizeof i->method, r, row, 4);
    copy_col(i->actor, sizeof i->actor, r, row, 5);
}

static int issuance_row(const PGresult *r, int row, const struct pg_visit *v)
{
    struct store_issuance i;
    read_issuance(r, row, &i);
    return ((store_issuance_cb)v->cb)(v->arg, &i);
}

int pgs_issuance_list(struct store *st, const char *tenant, size_t offset, size_t limit,
                      store_issuance_cb cb, void *arg)
{
    struct pg_params p = {0};
    pg_text(&p, tenant);
    pg_limit(&p, limit);
    pg_int(&p, (int64_t)offset);
    return pg_each(st,
                   "SELECT " ISSUANCE_COLS " FROM issuances WHERE tenant = $1"
                   " ORDER BY seq DESC LIMIT $2 OFFSET $3",
                   &p, issuance_row, &(struct pg_visit){(void (*)(void))cb, arg});
}

int pgs_issuance_count(struct store *st, const char *tenant, size_t *n)
{
    *n = 0;
    return pg_count(st, "SELECT count(*) FROM issuances WHERE tenant = $1", tenant, n);
}

static int issuance_one(struct store *st, const char *sql, const char *tenant, const char *key,
                        struct store_issuance *out)
{
    struct pg_params p = {0};
    pg_text(&p, tenant);
    pg_text(&p, key);
    PGresult *r = NULL;
    int rc = pg_one(st, sql, &p, &r);
    if (rc == 0) read_issuance(r, 0, out);
    PQclear(r);
    return rc;
}

int pgs_issuance_get(struct store *st, const char *tenant, const char *serial,
                     struct store_issuance *out)
{
    return issuance_one(st,
                        "SELECT " ISSUANCE_COLS " FROM issuances WHERE tenant = $1 AND"
                        " serial = $2",
                        tenant, serial, out);
}

int pgs_issuance_latest(struct store *st, const char *tenant, const char *cn,
                        struct store_issuance *out)
{
    return issuance_one(st,
                        "SELECT " ISSUANCE_COLS " FROM issuances WHERE tenant = $1 AND cn = $2"
                        " ORDER BY issued DESC, seq DESC LIMIT 1",
                        tenant, cn, out);
}
