/* Private to src/store: the table of operations every backend of store.h
 * fills (SQLite in sqlite.c, PostgreSQL in pg.c). A backend's handle starts
 * with struct store, so store.c dispatches each public call through ops and
 * the backend casts the handle back to its own type. */
#ifndef CERTMQ_STORE_STORE_OPS_H
#define CERTMQ_STORE_STORE_OPS_H

#include "store/store.h"

struct store_ops;

/* The first member of every backend's handle. */
struct store {
    const struct store_ops *ops;
};

struct store_ops {
    void (*close)(struct store *st);
    int (*schema_version)(struct store *st);
    int (*tenant_create)(struct store *st, const struct store_tenant *t,
                         const struct store_user *admin);
    int (*tenant_get)(struct store *st, const char *id, struct store_tenant *out);
    int (*tenant_list)(struct store *st, size_t offset, size_t limit, store_tenant_cb cb,
                       void *arg);
    int (*tenant_count)(struct store *st, size_t *n);
    int (*user_create)(struct store *st, const struct store_user *u);
    int (*user_get)(struct store *st, const char *tenant, const char *name, struct store_user *out);
    int (*user_list)(struct store *st, const char *tenant, bool password_only, size_t offset,
                     size_t limit, store_user_cb cb, void *arg);
    int (*user_count)(struct store *st, const char *tenant, size_t *n);
    int (*user_delete)(struct store *st, const char *tenant, const char *name, char *device_cn,
                       size_t cap);
    int (*cert_insert)(struct store *st, const struct store_cert *c);
    int (*cert_get)(struct store *st, const char *tenant, const char *fp, struct store_cert *out);
    int (*cert_update)(struct store *st, const struct store_cert *c);
    int (*cert_delete)(struct store *st, const char *tenant, const char *fp);
    int (*cert_list)(struct store *st, const char *tenant, size_t offset, size_t limit,
                     store_cert_cb cb, void *arg);
    int (*cert_count)(struct store *st, const char *tenant, size_t *n);
    int (*device_register)(struct store *st, const char *tenant, const char *cn,
                           const char *auth_type, bool *created);
    int (*device_bulk)(struct store *st, const char *tenant, const struct store_device_new *rows,
                       size_t n, int *row_rc);
    int (*device_list)(struct store *st, const char *tenant, store_device_cb cb, void *arg);
    int (*device_count)(struct store *st, const char *tenant, size_t *n);
    int (*option_set)(struct store *st, const char *tenant, const char *category, const char *key,
                      const char *value);
    int (*option_get)(struct store *st, const char *tenant, const char *category, const char *key,
                      char *value, size_t cap);
    int (*option_delete)(struct store *st, const char *tenant, const char *category,
                         const char *key);
    int (*option_list)(struct store *st, const char *tenant, store_option_cb cb, void *arg);
    int (*crl_add)(struct store *st, const char *tenant, const struct store_crl_entry *e, size_t n);
    int (*crl_list)(struct store *st, const char *tenant, store_crl_cb cb, void *arg);
    int (*token_key_put)(struct store *st, const char *tenant, const void *sealed,
                         size_t sealed_len, const char *pub_pem);
    int (*token_key_get)(struct store *st, const char *tenant, void **sealed, size_t *sealed_len,
                         char **pub_pem);
    int (*token_key_rewrap)(struct store *st, store_token_key_fn fn, void *arg, size_t *changed);
    int (*retained_put)(struct store *st, const char *tenant, const void *topic, size_t tlen,
                        const void *payload, size_t plen, int qos);
    int (*retained_list)(struct store *st, store_retained_cb cb, void *arg);
    int (*retained_get)(struct store *st, const char *tenant, const char *digest,
                        store_retained_cb cb, void *arg);
    int (*authz_rules_put)(struct store *st, const char *tenant, const char *rules_json);
    int (*authz_rules_list)(struct store *st, store_authz_cb cb, void *arg);
    int (*authz_roles_put)(struct store *st, const char *tenant, const char *user,
                           const char *roles);
    int (*authz_roles_list)(struct store *st, store_authz_cb cb, void *arg);
    int (*ca_insert)(struct store *st, const char *tenant, const void *der, size_t der_len,
                     const void *sealed, size_t sealed_len);
    int (*ca_get)(struct store *st, const char *tenant, struct store_ca *out);
    int (*ca_update_cert)(struct store *st, const char *tenant, const void *der, size_t der_len);
    int (*ca_delete)(struct store *st, const char *tenant);
    int (*ca_tenants)(struct store *st, int (*cb)(void *arg, const char *tenant), void *arg);
    int (*enroll_token_put)(struct store *st, const char *hash, const struct store_enroll_token *t);
    int (*enroll_token_get)(struct store *st, const char *hash, struct store_enroll_token *out);
    int (*enroll_token_use)(struct store *st, const char *hash);
    int (*issuance_add)(struct store *st, const char *tenant, const struct store_issuance *i);
    int (*issuance_list)(struct store *st, const char *tenant, size_t offset, size_t limit,
                         store_issuance_cb cb, void *arg);
    int (*issuance_count)(struct store *st, const char *tenant, size_t *n);
    int (*issuance_latest)(struct store *st, const char *tenant, const char *cn,
                           struct store_issuance *out);
    int (*issuance_get)(struct store *st, const char *tenant, const char *serial,
                        struct store_issuance *out);
    int (*device_seen_put)(struct store *st, const struct store_seen *v, size_t n);
    int (*device_seen_list)(struct store *st, store_seen_cb cb, void *arg);
    int (*ticket_key_put)(struct store *st, int64_t period, int64_t slot, const void *sealed,
                          size_t sealed_len);
    int (*ticket_key_get)(struct store *st, int64_t period, int64_t slot, void **sealed,
                          size_t *sealed_len);
    int (*watch)(struct store *st, store_change_cb cb, void *arg); /* NULL: one node */
    void (*unwatch)(struct store *st);
};

/* The backends' constructors (store.c picks one). */
MUST_USE int store_sqlite_open(const char *path, struct store **out);
MUST_USE int store_pg_open(const char *conninfo, struct store **out);

#endif
