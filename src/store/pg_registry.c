/* PostgreSQL tables of the registry (store.h): tenants with their admin,
 * users, trusted certificates, devices (single and bulk, all or nothing),
 * options, revoked serials and device-token keys. The same behaviour as
 * sqlite.c; statements are bound, never built from input (pg_int.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/pg_int.h"

#define USER_COLS "tenant, name, email, pw_hash, roles, device, created"
#define CERT_COLS                                                                                  \
    "tenant, fingerprint, name, enabled, auto_registration, der, pop_valid, pop_code,"             \
    " pop_until, created"

static int64_t now_s(void)
{
    return (int64_t)time(NULL);
}

static void copy_col(char *dst, size_t cap, const PGresult *r, int row, int col)
{
    snprintf(dst, cap, "%s", pg_col(r, row, col));
}

/* ---- tenants ---- */

static void read_tenant(const PGresult *r, int i, struct store_tenant *t)
{
    memset(t, 0, sizeof *t);
    copy_col(t->id, sizeof t->id, r, i, 0);
    copy_col(t->domain, sizeof t->domain, r, i, 1);
    copy_col(t->company, sizeof t->company, r, i, 2);
    t->created = pg_col_int(r, i, 3);
}

static int insert_user(struct pg_conn *c, bool ignore, const struct store_user *u)
{
    struct pg_params p = {0};
    pg_text(&p, u->tenant);
    pg_text(&p, u->name);
    pg_text(&p, u->email);
    pg_text(&p, u->pw_hash);
    pg_int(&p, (int64_t)u->roles);
    pg_int(&p, u->device ? 1 : 0);
    pg_int(&p, u->created ? u->created : now_s());
    return pg_exec(c,
                   ignore ? "INSERT INTO users(" USER_COLS ") VALUES($1,$2,$3,$4,$5,$6,$7)"
                            " ON CONFLICT DO NOTHING"
                          : "INSERT INTO users(" USER_COLS ") VALUES($1,$2,$3,$4,$5,$6,$7)",
                   &p, NULL, NULL);
}

static int tenant_create_tx(struct pg_conn *c, const struct store_tenant *t,
                            const struct store_user *admin)
{
    struct pg_params p = {0};
    pg_text(&p, t->id);
    pg_text(&p, t->domain);
    pg_text(&p, t->company);
    pg_int(&p, t->created ? t->created : now_s());
    GUARD(pg_exec(c, "INSERT INTO tenants(id, domain, company, created) VALUES($1,$2,$3,$4)", &p,
                  NULL, NULL));
    if (!admin) return 0;
    struct store_user u = *admin;
    snprintf(u.tenant, sizeof u.tenant, "%s", t->id);
    return insert_user(c, false, &u);
}

int pgs_tenant_create(struct store *st, const struct store_tenant *t,
                      const struct store_user *admin)
{
    struct pg_conn *c = pg_lock(st);
    int rc = pg_begin(c);
    if (rc == 0) rc = pg_end(c, tenant_create_tx(c, t, admin));
    pg_unlock(st);
    return rc;
}

int pgs_tenant_get(struct store *st, const char *id, struct store_tenant *out)
{
    struct pg_params p = {0};
    pg_text(&p, id);
    PGresult *r = NULL;
    int rc = pg_one(st, "SELECT id, domain, company, created FROM tenants WHERE id = $1", &p, &r);
    if (rc == 0) read_tenant(r, 0, out);
    PQclear(r);
    return rc;
}

static int tenant_row(const PGresult *r, int i, const struct pg_visit *v)
{
    struct store_tenant t;
    read_tenant(r, i, &t);
    return ((store_tenant_cb)v->cb)(v->arg, &t);
}

int pgs_tenant_list(struct store *st, size_t offset, size_t limit, store_tenant_cb cb, void *arg)
{
    struct pg_params p = {0};
    pg_limit(&p, limit);
    pg_int(&p, (int64_t)offset);
    return pg_each(st,
                   "SELECT id, domain, company, created FROM tenants ORDER BY seq"
                   " LIMIT $1 OFFSET $2",
                   &p, tenant_row, &(struct pg_visit){(void (*)(void))cb, arg});
}

int pgs_tenant_count(struct store *st, size_t *n)
{
    return pg_count(st, "SELECT count(*) FROM tenants", NULL, n);
}

/* ---- users ---- */

static void read_user(const PGresult *r, int i, struct store_user *u)
{
    memset(u, 0, sizeof *u);
    copy_col(u->tenant, sizeof u->tenant, r, i, 0);
    copy_col(u->name, sizeof u->name, r, i, 1);
    copy_col(u->email, sizeof u->email, r, i, 2);
    copy_col(u->pw_hash, sizeof u->pw_hash, r, i, 3);
    u->roles = (unsigned)pg_col_int(r, i, 4);
    u->device = pg_col_int(r, i, 5) != 0;
    u->created = pg_col_int(r, i, 6);
}

int pgs_user_create(struct store *st, const struct store_user *u)
{
    int rc = insert_user(pg_lock(st), false, u);
    pg_unlock(st);
    return rc;
}

int pgs_user_get(struct store *st, const char *tenant, const char *name, struct store_user *out)
{
    struct pg_params p = {0};
    pg_text(&p, tenant);
    pg_text(&p, name);
    PGresult *r = NULL;
    int rc = pg_one(st, "SELECT " USER_COLS " FROM users WHERE tenant = $1 AND name = $2", &p, &r);
    if (rc == 0) read_user(r, 0, out);
    PQclear(r);
    return rc;
}

static int user_row(const PGresult *r, int i, const struct pg_visit *v)
{
    struct store_user u;
    read_user(r, i, &u);
    return ((store_user_cb)v->cb)(v->arg, &u);
}

int pgs_user_list(struct store *st, const char *tenant, bool password_only, size_t offset,
                  size_t limit, store_user_cb cb, void *arg)
{
    struct pg_params p = {0};
    if (tenant) pg_text(&p, tenant);
    pg_int(&p, password_only ? 1 : 0);
    pg_limit(&p, limit);
    pg_int(&p, (int64_t)offset);
    return pg_each(st,
                   tenant ? "SELECT " USER_COLS " FROM users WHERE tenant = $1 AND ($2::int = 0"
                            " OR pw_hash <> '') ORDER BY seq LIMIT $3 OFFSET $4"
                          : "SELECT " USER_COLS " FROM users WHERE ($1::int = 0 OR pw_hash <> '')"
                            " ORDER BY seq LIMIT $2 OFFSET $3",
                   &p, user_row, &(struct pg_visit){(void (*)(void))cb, arg});
}

int pgs_user_count(struct store *st, const char *tenant, size_t *n)
{
    return pg_count(st, "SELECT count(*) FROM users WHERE tenant = $1", tenant, n);
}

/* Deletes the row of (tenant, key) with sql; ERR_NOT_FOUND when none. */
static int delete_two(struct pg_conn *c, const char *sql, const char *tenant, const char *key)
{
    struct pg_params p = {0};
    pg_text(&p, tenant);
    pg_text(&p, key);
    size_t n = 0;
    GUARD(pg_exec(c, sql, &p, NULL, &n));
    return n ? 0 : ERR_NOT_FOUND;
}

static int user_delete_tx(struct pg_conn *c, const char *tenant, const char *name, char *device_cn,
                          size_t cap)
{
    struct pg_params p = {0};
    pg_text(&p, tenant);
    pg_text(&p, name);
    PGresult *r = NULL;
    int rc = pg_exec(c, "DELETE FROM users WHERE tenant = $1 AND name = $2 RETURNING device", &p,
                     &r, NULL);
    bool found = rc == 0 && r && PQntuples(r) > 0;
    bool device = found && pg_col_int(r, 0, 0) != 0;
    PQclear(r);
    GUARD(rc);
    ENSURE(found, ERR_NOT_FOUND);
    if (!device || strncmp(name, STORE_DEVICE_USER_PREFIX, STORE_DEVICE_USER_PREFIX_LEN) != 0)
        return 0;
    rc = delete_two(c, "DELETE FROM devices WHERE tenant = $1 AND cn = $2", tenant, name + 7);
    if (rc == ERR_NOT_FOUND) rc = 0; /* a device user whose row went before */
    if (rc == 0 && cap) snprintf(device_cn, cap, "%s", name + 7);
    return rc;
}

int pgs_user_delete(struct store *st, const char *tenant, const char *name, char *device_cn,
                    size_t cap)
{
    if (cap) device_cn[0] = '\0';
    struct pg_conn *c = pg_lock(st);
    int rc = pg_begin(c);
    if (rc == 0) rc = pg_end(c, user_delete_tx(c, tenant, name, device_cn, cap));
    pg_unlock(st);
    if (rc < 0 && cap) device_cn[0] = '\0';
    return rc;
}

/* ---- trusted certificates ---- */

/* Fills c from row i; c->der is malloc'd (store_cert_clear). */
static int read_cert(const PGresult *r, int i, struct store_cert *c)
{
    memset(c, 0, sizeof *c);
    copy_col(c->tenant, sizeof c->tenant, r, i, 0);
    copy_col(c->fingerprint, sizeof c->fingerprint, r, i, 1);
    copy_col(c->name, sizeof c->name, r, i, 2);
    c->enabled = pg_col_int(r, i, 3) != 0;
    c->auto_registration = pg_col_int(r, i, 4) != 0;
    c->pop_valid = pg_col_int(r, i, 6) != 0;
    copy_col(c->pop_code, sizeof c->pop_code, r, i, 7);
    c->pop_until = pg_col_int(r, i, 8);
    c->created = pg_col_int(r, i, 9);
    void *der = NULL;
    GUARD(pg_col_blob(r, i, 5, &der, &c->der_len));
    c->der = der;
    return 0;
}

int pgs_cert_insert(struct store *st, const struct store_cert *c)
{
    struct pg_params p = {0};
    pg_text(&p, c->tenant);
    pg_text(&p, c->fingerprint);
    pg_text(&p, c->name);
    pg_int(&p, c->enabled);
    pg_int(&p, c->auto_registration);
    pg_blob(&p, c->der, c->der_len);
    pg_int(&p, c->pop_valid);
    pg_text(&p, c->pop_code);
    pg_int(&p, c->pop_until);
    pg_int(&p, c->created ? c->created : now_s());
    return pg_run(st,
                  "INSERT INTO trusted_certs(" CERT_COLS ") VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,"
                  "$10)",
                  &p, NULL, NULL);
}

int pgs_cert_get(struct store *st, const char *tenant, const char *fp, struct store_cert *out)
{
    struct pg_params p = {0};
    pg_text(&p, tenant);
    pg_text(&p, fp);
    PGresult *r = NULL;
    int rc =
        pg_one(st, "SELECT " CERT_COLS " FROM trusted_certs WHERE tenant = $1 AND fingerprint = $2",
               &p, &r);
    if (rc == 0) rc = read_cert(r, 0, out);
    PQclear(r);
    return rc;
}

int pgs_cert_update(struct store *st, const struct store_cert *c)
{
    struct pg_params p = {0};
    pg_text(&p, c->name);
    pg_int(&p, c->enabled);
    pg_int(&p, c->auto_registration);
    pg_int(&p, c->pop_valid);
    pg_text(&p, c->pop_code);
    pg_int(&p, c->pop_until);
    pg_text(&p, c->tenant);
    pg_text(&p, c->fingerprint);
    size_t n = 0;
    int rc = pg_run(st,
                    "UPDATE trusted_certs SET name = $1, enabled = $2, auto_registration = $3,"
                    " pop_valid = $4, pop_code = $5, pop_until = $6"
                    " WHERE tenant = $7 AND fingerprint = $8",
                    &p, NULL, &n);
    return rc == 0 && n == 0 ? ERR_NOT_FOUND : rc;
}

int pgs_cert_delete(struct store *st, const char *tenant, const char *fp)
{
    int rc = delete_two(pg_lock(st),
                        "DELETE FROM trusted_certs WHERE tenant = $1 AND"
                        " fingerprint = $2",
                        tenant, fp);
    pg_unlock(st);
    return rc;
}

static int cert_row(const PGresult *r, int i, const struct pg_visit *v)
{
    struct store_cert c;
    int rc = read_cert(r, i, &c);
    if (rc == 0) rc = ((store_cert_cb)v->cb)(v->arg, &c);
    store_cert_clear(&c);
    return rc;
}

int pgs_cert_list(struct store *st, const char *tenant, size_t offset, size_t limit,
                  store_cert_cb cb, void *arg)
{
    struct pg_params p = {0};
    if (tenant) pg_text(&p, tenant);
    pg_limit(&p, limit);
    pg_int(&p, (int64_t)offset);
    return pg_each(st,
                   tenant ? "SELECT " CERT_COLS " FROM trusted_certs WHERE tenant = $1"
                            " ORDER BY seq LIMIT $2 OFFSET $3"
                          : "SELECT " CERT_COLS
                            " FROM trusted_certs ORDER BY seq LIMIT $1 OFFSET $2",
                   &p, cert_row, &(struct pg_visit){(void (*)(void))cb, arg});
}

int pgs_cert_count(struct store *st, const char *tenant, size_t *n)
{
    return pg_count(st, "SELECT count(*) FROM trusted_certs WHERE tenant = $1", tenant, n);
}

/* ---- devices ---- */

/* Inserts the device row and its device user inside a transaction;
 * *created reports a new row. */
static int device_insert_tx(struct pg_conn *c, const char *tenant, const struct store_device_new *d,
                            int64_t now, bool *created)
{
    struct pg_params p = {0};
    pg_text(&p, tenant);
    pg_text(&p, d->cn);
    pg_text(&p, d->type);
    pg_text(&p, d->name);
    pg_text(&p, d->auth_type);
    pg_text(&p, d->props_json ? d->props_json : "{}");
    pg_int(&p, now);
    size_t n = 0;
    GUARD(pg_exec(c,
                  "INSERT INTO devices(tenant, cn, type, name, auth_type, props, created)"
                  " VALUES($1,$2,$3,$4,$5,$6,$7) ON CONFLICT DO NOTHING",
                  &p, NULL, &n));
    *created = n > 0;
    if (!*created) return 0;
    struct store_user u;
    memset(&u, 0, sizeof u);
    snprintf(u.tenant, sizeof u.tenant, "%s", tenant);
    int len = snprintf(u.name, sizeof u.name, STORE_DEVICE_USER_PREFIX "%s", d->cn);
    if (len < 0 || (size_t)len >= sizeof u.name) return ERR_INVALID;
    if (d->pw_hash) snprintf(u.pw_hash, sizeof u.pw_hash, "%s", d->pw_hash);
    u.roles = STORE_ROLE_DEVICE;
    u.device = true;
    u.created = now;
    return insert_user(c, true, &u);
}

static int tenant_exists_tx(struct pg_conn *c, const char *tenant)
{
    struct pg_params p = {0};
    pg_text(&p, tenant);
    PGresult *r = NULL;
    int rc = pg_exec(c, "SELECT 1 FROM tenants WHERE id = $1 FOR SHARE", &p, &r, NULL);
    if (rc == 0 && (!r || PQntuples(r) == 0)) rc = ERR_NOT_FOUND;
    PQclear(r);
    return rc;
}

int pgs_device_register(struct store *st, const char *tenant, const char *cn, const char *auth_type,
                        bool *created)
{
    struct store_device_new d = {.cn = cn, .auth_type = auth_type};
    bool made = false;
    struct pg_conn *c = pg_lock(st);
    int rc = pg_begin(c);
    if (rc == 0) {
        rc = tenant_exists_tx(c, tenant);
        if (rc == 0) rc = device_insert_tx(c, tenant, &d, now_s(), &made);
        rc = pg_end(c, rc);
    }
    pg_unlock(st);
    if (created) *created = rc == 0 && made;
    return rc;
}

int pgs_device_bulk(struct store *st, const char *tenant, const struct store_device_new *rows,
                    size_t n, int *row_rc)
{
    int64_t now = now_s();
    struct pg_conn *c = pg_lock(st);
    int rc = pg_begin(c);
    if (rc == 0) {
        rc = tenant_exists_tx(c, tenant);
        for (size_t i = 0; rc == 0 && i < n; i++) {
            bool made = false;
            rc = device_insert_tx(c, tenant, &rows[i], now, &made);
            if (rc == 0) row_rc[i] = made ? 0 : ERR_EXISTS;
        }
        rc = pg_end(c, rc);
    }
    pg_unlock(st);
    return rc;
}

static int device_row(const PGresult *r, int i, const struct pg_visit *v)
{
    return ((store_device_cb)v->cb)(v->arg, pg_col(r, i, 0), pg_col(r, i, 1));
}

int pgs_device_list(struct store *st, const char *tenant, store_device_cb cb, void *arg)
{
    struct pg_params p = {0};
    if (tenant) pg_text(&p, tenant);
    return pg_each(st,
                   tenant ? "SELECT tenant, cn FROM devices WHERE tenant = $1 ORDER BY seq"
                          : "SELECT tenant, cn FROM devices ORDER BY seq",
                   &p, device_row, &(struct pg_visit){(void (*)(void))cb, arg});
}

int pgs_device_count(struct store *st, const char *tenant, size_t *n)
{
    return pg_count(st, "SELECT count(*) FROM devices WHERE tenant = $1", tenant, n);
}

/* ---- options ---- */

static void option_key(struct pg_params *p, const char *tenant, const char *category,
                       const char *key)
{
    pg_text(p, tenant);
    pg_text(p, category);
    pg_text(p, key);
}

int pgs_option_set(struct store *st, const char *tenant, const char *category, const char *key,
                   const char *value)
{
    struct pg_params p = {0};
    option_key(&p, tenant, category, key);
    pg_text(&p, value);
    return pg_run(st,
                  "INSERT INTO options(tenant, category, key, value) VALUES($1,$2,$3,$4)"
                  " ON CONFLICT(tenant, category, key) DO UPDATE SET value = excluded.value",
                  &p, NULL, NULL);
}

int pgs_option_get(struct store *st, const char *tenant, const char *category, const char *key,
                   char *value, size_t cap)
{
    struct pg_params p = {0};
    option_key(&p, tenant, category, key);
    PGresult *r = NULL;
    int rc = pg_one(
        st, "SELECT value FROM options WHERE tenant = $1 AND category = $2 AND key = $3", &p, &r);
    if (rc == 0) copy_col(value, cap, r, 0, 0);
    PQclear(r);
    return rc;
}

int pgs_option_delete(struct store *st, const char *tenant, const char *category, const char *key)
{
    struct pg_params p = {0};
    option_key(&p, tenant, category, key);
    size_t n = 0;
    int rc = pg_run(st, "DELETE FROM options WHERE tenant = $1 AND category = $2 AND key = $3", &p,
                    NULL, &n);
    return rc == 0 && n == 0 ? ERR_NOT_FOUND : rc;
}

static int option_row(const PGresult *r, int i, const struct pg_visit *v)
{
    return ((store_option_cb)v->cb)(v->arg, pg_col(r, i, 0), pg_col(r, i, 1), pg_col(r, i, 2),
                                    pg_col(r, i, 3));
}

int pgs_option_list(struct store *st, const char *tenant, store_option_cb cb, void *arg)
{
    struct pg_params p = {0};
    if (tenant) pg_text(&p, tenant);
    return pg_each(st,
                   tenant ? "SELECT tenant, category, key, value FROM options WHERE tenant = $1"
                            " ORDER BY category, key"
                          : "SELECT tenant, category, key, value FROM options"
                            " ORDER BY tenant, category, key",
                   &p, option_row, &(struct pg_visit){(void (*)(void))cb, arg});
}

/* ---- revoked serials ---- */

int pgs_crl_add(struct store *st, const char *tenant, const struct store_crl_entry *e, size_t n)
{
    struct pg_conn *c = pg_lock(st);
    int rc = pg_begin(c);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        struct pg_params p = {0};
        pg_text(&p, tenant);
        pg_text(&p, e[i].serial);
        pg_int(&p, e[i].revoked);
        rc = pg_exec(c,
                     "INSERT INTO crl_entries(tenant, serial, revoked) VALUES($1,$2,$3)"
                     " ON CONFLICT(tenant, serial) DO UPDATE SET revoked = excluded.revoked",
                     &p, NULL, NULL);
    }
    if (c->in_tx) rc = pg_end(c, rc);
    pg_unlock(st);
    return rc;
}

static int crl_row(const PGresult *r, int i, const struct pg_visit *v)
{
    struct store_crl_entry e;
    copy_col(e.serial, sizeof e.serial, r, i, 1);
    e.revoked = pg_col_int(r, i, 2);
    return ((store_crl_cb)v->cb)(v->arg, pg_col(r, i, 0), &e);
}

int pgs_crl_list(struct store *st, const char *tenant, store_crl_cb cb, void *arg)
{
    struct pg_params p = {0};
    if (tenant) pg_text(&p, tenant);
    return pg_each(st,
                   tenant ? "SELECT tenant, serial, revoked FROM crl_entries WHERE tenant = $1"
                            " ORDER BY seq"
                          : "SELECT tenant, serial, revoked FROM crl_entries ORDER BY seq",
                   &p, crl_row, &(struct pg_visit){(void (*)(void))cb, arg});
}
