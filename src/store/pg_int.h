/* Private to src/store: what pg.c lends the files that keep the tables of
 * the PostgreSQL backend (pg_registry.c, pg_ca.c) and the session store
 * (sessions_pg.c): one connection that reconnects by itself, queries with
 * bound parameters only, and the mapping of PostgreSQL errors to enum err. */
#ifndef CERTMQ_STORE_PG_INT_H
#define CERTMQ_STORE_PG_INT_H

#include <libpq-fe.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "store/store.h"
#include "store/store_ops.h"

/* One server connection. Not thread-safe by itself: its owner serialises. */
struct pg_conn {
    PGconn *conn;
    char *conninfo;       /* may hold a password: never logged */
    char where[192];      /* host:port/db, what logs say instead */
    bool in_tx;           /* a lost connection inside BEGIN is not retried */
    bool pipeline;        /* between pg_pipeline_begin and _end */
    int queued;           /* pipeline: statements sent since the last sync */
    int pipe_rc;          /* pipeline: the first statement failure */
    bool down;            /* the last connection attempt failed */
    uint64_t last_try_us; /* monotonic time of the last connection attempt */
    char *setup;          /* run after every (re)connect; NULL: none */
};

/* Connects (ERR_UNAVAILABLE when the server cannot be reached). */
MUST_USE int pg_conn_open(struct pg_conn *c, const char *conninfo);
void pg_conn_close(struct pg_conn *c);
/* setup (statements; the last one returns one boolean row) runs now and
 * after every reconnect: a connection whose setup fails or returns false
 * is not used (ERR_UNAVAILABLE). */
MUST_USE int pg_conn_setup(struct pg_conn *c, const char *setup);

/* The bound parameters of one query: text, integers or binary (bytea). */
#define PG_MAX_PARAMS 20
struct pg_params {
    int n;
    const char *v[PG_MAX_PARAMS];
    int len[PG_MAX_PARAMS];
    int fmt[PG_MAX_PARAMS];
    char num[PG_MAX_PARAMS][24];
};
void pg_text(struct pg_params *p, const char *s); /* NULL binds "" */
void pg_int(struct pg_params *p, int64_t v);
void pg_null(struct pg_params *p);
void pg_blob(struct pg_params *p, const void *b, size_t n); /* borrowed until the query ran */

/* Runs one statement. With res, a result with rows is handed over (PQclear
 * it); changed receives the affected row count. 0, ERR_EXISTS (unique),
 * ERR_NOT_FOUND (foreign key), ERR_UNAVAILABLE (connection lost and one
 * reconnect failed, or lost inside a transaction), else ERR_DB. */
MUST_USE int pg_exec(struct pg_conn *c, const char *sql, const struct pg_params *p, PGresult **res,
                     size_t *changed);
/* pg_exec with binary results when binary is 1 (bytea as raw bytes,
 * integers big-endian: read them with pg_bin_int). */
MUST_USE int pg_exec_fmt(struct pg_conn *c, const char *sql, const struct pg_params *p,
                         PGresult **res, size_t *changed, int binary);
/* An integer column of a binary result (0 for NULL). */
int64_t pg_bin_int(const PGresult *r, int row, int col);
/* BEGIN, and COMMIT on rc == 0 else ROLLBACK; returns the final status. */
MUST_USE int pg_begin(struct pg_conn *c);
MUST_USE int pg_end(struct pg_conn *c, int rc);

/* A transaction whose statements are sent without waiting for each
 * result (libpq pipeline mode): pg_exec only queues them (no rows, no
 * counts) and returns the first failure seen so far; pg_pipeline_end
 * commits on rc == 0 (else rolls back) and returns the final status. A
 * lost connection is ERR_UNAVAILABLE and nothing of it is committed. */
MUST_USE int pg_pipeline_begin(struct pg_conn *c);
MUST_USE int pg_pipeline_end(struct pg_conn *c, int rc);

/* Column readers over a text-format result ("" and 0 for NULL). */
const char *pg_col(const PGresult *r, int row, int col);
int64_t pg_col_int(const PGresult *r, int row, int col);
/* A malloc'd copy of a bytea column (*out NULL when the value is NULL). */
MUST_USE int pg_col_blob(const PGresult *r, int row, int col, void **out, size_t *n);

/* The store handle of this backend; every call holds mu. */
struct store_pg {
    struct store base; /* first: the handle callers hold */
    pthread_mutex_t mu;
    struct pg_conn c;
    int version;
    uint64_t op_start_us;
    struct pg_watch *watch; /* store_watch's thread, NULL until started */
};

/* pg_watch.c: store_watch for this backend, and its end at close. */
int pgs_watch(struct store *st, store_change_cb cb, void *arg);
void pgs_unwatch(struct store *st);
void pg_watch_stop(struct store_pg *st);

/* Takes the store's mutex and returns its connection; pg_unlock releases. */
struct pg_conn *pg_lock(struct store *st);
void pg_unlock(struct store *st);
/* A whole call: lock, pg_exec, unlock. */
MUST_USE int pg_run(struct store *st, const char *sql, const struct pg_params *p, PGresult **res,
                    size_t *changed);

/* A list call's callback and its argument, for the row adapters. */
struct pg_visit {
    void (*cb)(void); /* the store_*_cb of the list call, cast back by its row adapter */
    void *arg;
};
typedef int (*pg_row_fn)(const PGresult *r, int row, const struct pg_visit *v);
/* Runs a query and hands each row to row() (without the lock held) until
 * one fails. */
MUST_USE int pg_each(struct store *st, const char *sql, const struct pg_params *p, pg_row_fn row,
                     const struct pg_visit *v);
/* Runs a query expected to return one row: ERR_NOT_FOUND without one. */
MUST_USE int pg_one(struct store *st, const char *sql, const struct pg_params *p, PGresult **r);
/* A count(*) with an optional text parameter. */
MUST_USE int pg_count(struct store *st, const char *sql, const char *param, size_t *n);
/* LIMIT parameter: NULL (no limit) for 0. */
void pg_limit(struct pg_params *p, size_t limit);

/* pg_registry.c and pg_ca.c: the calls of store.h for this backend. */
int pgs_tenant_create(struct store *st, const struct store_tenant *t,
                      const struct store_user *admin);
int pgs_tenant_get(struct store *st, const char *id, struct store_tenant *out);
int pgs_tenant_list(struct store *st, size_t offset, size_t limit, store_tenant_cb cb, void *arg);
int pgs_tenant_count(struct store *st, size_t *n);
int pgs_user_create(struct store *st, const struct store_user *u);
int pgs_user_get(struct store *st, const char *tenant, const char *name, struct store_user *out);
int pgs_user_list(struct store *st, const char *tenant, bool password_only, size_t offset,
                  size_t limit, store_user_cb cb, void *arg);
int pgs_user_count(struct store *st, const char *tenant, size_t *n);
int pgs_user_delete(struct store *st, const char *tenant, const char *name, char *device_cn,
                    size_t cap);
int pgs_cert_insert(struct store *st, const struct store_cert *c);
int pgs_cert_get(struct store *st, const char *tenant, const char *fp, struct store_cert *out);
int pgs_cert_update(struct store *st, const struct store_cert *c);
int pgs_cert_delete(struct store *st, const char *tenant, const char *fp);
int pgs_cert_list(struct store *st, const char *tenant, size_t offset, size_t limit,
                  store_cert_cb cb, void *arg);
int pgs_cert_count(struct store *st, const char *tenant, size_t *n);
int pgs_device_register(struct store *st, const char *tenant, const char *cn, const char *auth_type,
                        bool *created);
int pgs_device_bulk(struct store *st, const char *tenant, const struct store_device_new *rows,
                    size_t n, int *row_rc);
int pgs_device_list(struct store *st, const char *tenant, store_device_cb cb, void *arg);
int pgs_device_count(struct store *st, const char *tenant, size_t *n);
int pgs_option_set(struct store *st, const char *tenant, const char *category, const char *key,
                   const char *value);
int pgs_option_get(struct store *st, const char *tenant, const char *category, const char *key,
                   char *value, size_t cap);
int pgs_option_delete(struct store *st, const char *tenant, const char *category, const char *key);
int pgs_option_list(struct store *st, const char *tenant, store_option_cb cb, void *arg);
int pgs_crl_add(struct store *st, const char *tenant, const struct store_crl_entry *e, size_t n);
int pgs_crl_list(struct store *st, const char *tenant, store_crl_cb cb, void *arg);
int pgs_token_key_put(struct store *st, const char *tenant, const void *sealed, size_t sealed_len,
                      const char *pub_pem);
int pgs_token_key_get(struct store *st, const char *tenant, void **sealed, size_t *sealed_len,
                      char **pub_pem);
int pgs_token_key_rewrap(struct store *st, store_token_key_fn fn, void *arg, size_t *changed);
int pgs_retained_put(struct store *st, const char *tenant, const void *topic, size_t tlen,
                     const void *payload, size_t plen, int qos);
int pgs_retained_list(struct store *st, store_retained_cb cb, void *arg);
int pgs_retained_get(struct store *st, const char *tenant, const char *digest, store_retained_cb cb,
                     void *arg);
int pgs_authz_rules_put(struct store *st, const char *tenant, const char *rules_json);
int pgs_authz_rules_list(struct store *st, store_authz_cb cb, void *arg);
int pgs_authz_roles_put(struct store *st, const char *tenant, const char *user, const char *roles);
int pgs_authz_roles_list(struct store *st, store_authz_cb cb, void *arg);
int pgs_ca_insert(struct store *st, const char *tenant, const void *der, size_t der_len,
                  const void *sealed, size_t sealed_len);
int pgs_ca_get(struct store *st, const char *tenant, struct store_ca *out);
int pgs_ca_update_cert(struct store *st, const char *tenant, const void *der, size_t der_len);
int pgs_ca_delete(struct store *st, const char *tenant);
int pgs_ca_tenants(struct store *st, int (*cb)(void *arg, const char *tenant), void *arg);
int pgs_enroll_token_put(struct store *st, const char *hash, const struct store_enroll_token *t);
int pgs_enroll_token_get(struct store *st, const char *hash, struct store_enroll_token *out);
int pgs_enroll_token_use(struct store *st, const char *hash);
int pgs_issuance_add(struct store *st, const char *tenant, const struct store_issuance *i);
int pgs_issuance_list(struct store *st, const char *tenant, size_t offset, size_t limit,
                      store_issuance_cb cb, void *arg);
int pgs_issuance_count(struct store *st, const char *tenant, size_t *n);
int pgs_issuance_latest(struct store *st, const char *tenant, const char *cn,
                        struct store_issuance *out);
int pgs_issuance_get(struct store *st, const char *tenant, const char *serial,
                     struct store_issuance *out);
int pgs_device_seen_put(struct store *st, const struct store_seen *v, size_t n);
int pgs_device_seen_list(struct store *st, store_seen_cb cb, void *arg);
/* pg_ticket.c: the TLS ticket keys. */
int pgs_ticket_key_put(struct store *st, int64_t period, int64_t slot, const void *sealed,
                       size_t sealed_len);
int pgs_ticket_key_get(struct store *st, int64_t period, int64_t slot, void **sealed,
                       size_t *sealed_len);

#define PG_STORE_OPS(X)                                                                            \
    X(tenant_create)                                                                               \
    X(tenant_get)                                                                                  \
    X(tenant_list)                                                                                 \
    X(tenant_count)                                                                                \
    X(user_create)                                                                                 \
    X(user_get)                                                                                    \
    X(user_list)                                                                                   \
    X(user_count)                                                                                  \
    X(user_delete)                                                                                 \
    X(cert_insert)                                                                                 \
    X(cert_get)                                                                                    \
    X(cert_update)                                                                                 \
    X(cert_delete)                                                                                 \
    X(cert_list)                                                                                   \
    X(cert_count)                                                                                  \
    X(device_register)                                                                             \
    X(device_bulk)                                                                                 \
    X(device_list)                                                                                 \
    X(device_count)                                                                                \
    X(option_set)                                                                                  \
    X(option_get)                                                                                  \
    X(option_delete)                                                                               \
    X(option_list)                                                                                 \
    X(crl_add)                                                                                     \
    X(crl_list)                                                                                    \
    X(token_key_put)                                                                               \
    X(token_key_get)                                                                               \
    X(token_key_rewrap)                                                                            \
    X(retained_put)                                                                                \
    X(retained_list)                                                                               \
    X(retained_get)                                                                                \
    X(authz_rules_put)                                                                             \
    X(authz_rules_list)                                                                            \
    X(authz_roles_put)                                                                             \
    X(authz_roles_list)                                                                            \
    X(ca_insert)                                                                                   \
    X(ca_get)                                                                                      \
    X(ca_update_cert)                                                                              \
    X(ca_delete)                                                                                   \
    X(ca_tenants)                                                                                  \
    X(enroll_token_put)                                                                            \
    X(enroll_token_get)                                                                            \
    X(enroll_token_use)                                                                            \
    X(issuance_add)                                                                                \
    X(issuance_list)                                                                               \
    X(issuance_count)                                                                              \
    X(issuance_latest)                                                                             \
    X(issuance_get)                                                                                \
    X(device_seen_put)                                                                             \
    X(device_seen_list)                                                                            \
    X(ticket_key_put)                                                                              \
    X(ticket_key_get)

#endif
