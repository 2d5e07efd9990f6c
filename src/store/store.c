/* The store's front: the public calls of store.h dispatched to the backend
 * the handle was opened with (store_ops.h), and what does not depend on a
 * backend: role names, freeing returned rows, choosing a backend from the
 * `store` option. */
#include "store/store.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "store/store_ops.h"

static const char *const role_names[STORE_ROLE_COUNT] = {
    "ROLE_TENANT_ADMIN",
    "ROLE_TENANT_MANAGEMENT_ADMIN",
    "ROLE_DEVICE_CONTROL_ADMIN",
    "ROLE_DEVICE",
};

const char *store_role_name(unsigned i)
{
    return i < STORE_ROLE_COUNT ? role_names[i] : "";
}

unsigned store_role_parse(const char *name)
{
    for (unsigned i = 0; i < STORE_ROLE_COUNT; i++)
        if (strcmp(name, role_names[i]) == 0) return 1u << i;
    return 0;
}

bool store_is_pg(const char *spec)
{
    return spec &&
           (strncmp(spec, "postgresql://", 13) == 0 || strncmp(spec, "postgres://", 11) == 0);
}

int store_open_path(const char *path, struct store **out)
{
    return store_is_pg(path) ? store_pg_open(path, out) : store_sqlite_open(path, out);
}

int store_open_config(const char *spec, const char *data_dir, struct store **out)
{
    if (store_is_pg(spec)) return store_pg_open(spec, out);
    if (spec && *spec && strcmp(spec, "sqlite") != 0) return ERR_INVALID;
    return store_open(data_dir, out);
}

void store_close(struct store *st)
{
    if (st) st->ops->close(st);
}

void store_cert_clear(struct store_cert *c)
{
    free(c->der);
    c->der = NULL;
    c->der_len = 0;
}

void store_ca_clear(struct store_ca *c)
{
    free(c->der);
    free(c->sealed);
    memset(c, 0, sizeof *c);
}

/* ---- dispatch ---- */

int store_schema_version(struct store *st)
{
    return st->ops->schema_version(st);
}

int store_tenant_create(struct store *st, const struct store_tenant *t,
                        const struct store_user *admin)
{
    return st->ops->tenant_create(st, t, admin);
}

int store_tenant_get(struct store *st, const char *id, struct store_tenant *out)
{
    return st->ops->tenant_get(st, id, out);
}

int store_tenant_list(struct store *st, size_t offset, size_t limit, store_tenant_cb cb, void *arg)
{
    return st->ops->tenant_list(st, offset, limit, cb, arg);
}

int store_tenant_count(struct store *st, size_t *n)
{
    return st->ops->tenant_count(st, n);
}

int store_user_create(struct store *st, const struct store_user *u)
{
    return st->ops->user_create(st, u);
}

int store_user_get(struct store *st, const char *tenant, const char *name, struct store_user *out)
{
    return st->ops->user_get(st, tenant, name, out);
}

int store_user_list(struct store *st, const char *tenant, bool password_only, size_t offset,
                    size_t limit, store_user_cb cb, void *arg)
{
    return st->ops->user_list(st, tenant, password_only, offset, limit, cb, arg);
}

int store_user_count(struct store *st, const char *tenant, size_t *n)
{
    return st->ops->user_count(st, tenant, n);
}

int store_user_delete(struct store *st, const char *tenant, const char *name, char *device_cn,
                      size_t cap)
{
    return st->ops->user_delete(st, tenant, name, device_cn, cap);
}

int store_cert_insert(struct store *st, const struct store_cert *c)
{
    return st->ops->cert_insert(st, c);
}

int store_cert_get(struct store *st, const char *tenant, const char *fp, struct store_cert *out)
{
    return st->ops->cert_get(st, tenant, fp, out);
}

int store_cert_update(struct store *st, const struct store_cert *c)
{
    return st->ops->cert_update(st, c);
}

int store_cert_delete(struct store *st, const char *tenant, const char *fp)
{
    return st->ops->cert_delete(st, tenant, fp);
}

int store_cert_list(struct store *st, const char *tenant, size_t offset, size_t limit,
                    store_cert_cb cb, void *arg)
{
    return st->ops->cert_list(st, tenant, offset, limit, cb, arg);
}

int store_cert_count(struct store *st, const char *tenant, size_t *n)
{
    return st->ops->cert_count(st, tenant, n);
}

int store_device_register(struct store *st, const char *tenant, const char *cn,
                          const char *auth_type, bool *created)
{
    return st->ops->device_register(st, tenant, cn, auth_type, created);
}

int store_device_bulk(struct store *st, const char *tenant, const struct store_device_new *rows,
                      size_t n, int *row_rc)
{
    return st->ops->device_bulk(st, tenant, rows, n, row_rc);
}

int store_device_list(struct store *st, const char *tenant, store_device_cb cb, void *arg)
{
    return st->ops->device_list(st, tenant, cb, arg);
}

int store_device_count(struct store *st, const char *tenant, size_t *n)
{
    return st->ops->device_count(st, tenant, n);
}

int store_option_set(struct store *st, const char *tenant, const char *category, const char *key,
                     const char *value)
{
    return st->ops->option_set(st, tenant, category, key, value);
}

int store_option_get(struct store *st, const char *tenant, const char *category, const char *key,
                     char *value, size_t cap)
{
    return st->ops->option_get(st, tenant, category, key, value, cap);
}

int store_option_delete(struct store *st, const char *tenant, const char *category, const char *key)
{
    return st->ops->option_delete(st, tenant, category, key);
}

int store_option_list(struct store *st, const char *tenant, store_option_cb cb, void *arg)
{
    return st->ops->option_list(st, tenant, cb, arg);
}

int store_crl_add(struct store *st, const char *tenant, const struct store_crl_entry *e, size_t n)
{
    return st->ops->crl_add(st, tenant, e, n);
}

int store_crl_list(struct store *st, const char *tenant, store_crl_cb cb, void *arg)
{
    return st->ops->crl_list(st, tenant, cb, arg);
}

int store_token_key_put(struct store *st, const char *tenant, const void *sealed, size_t sealed_len,
                        const char *pub_pem)
{
    return st->ops->token_key_put(st, tenant, sealed, sealed_len, pub_pem);
}

int store_token_key_get(struct store *st, const char *tenant, void **sealed, size_t *sealed_len,
                        char **pub_pem)
{
    return st->ops->token_key_get(st, tenant, sealed, sealed_len, pub_pem);
}

int store_token_key_rewrap(struct store *st, store_token_key_fn fn, void *arg, size_t *changed)
{
    return st->ops->token_key_rewrap(st, fn, arg, changed);
}

int store_retained_put(struct store *st, const char *tenant, const void *topic, size_t tlen,
                       const void *payload, size_t plen, int qos)
{
    return st->ops->retained_put(st, tenant, topic, tlen, payload, plen, qos);
}

int store_retained_list(struct store *st, store_retained_cb cb, void *arg)
{
    return st->ops->retained_list(st, cb, arg);
}

void store_retained_digest(const void *topic, size_t tlen, char out[STORE_DIGEST_HEX + 1])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[32] = {0};
    if (EVP_Digest(topic, tlen, md, NULL, EVP_sha256(), NULL) != 1)
        memset(md, 0, sizeof md); /* names no topic the store holds */
    for (size_t i = 0; i < sizeof md; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[STORE_DIGEST_HEX] = '\0';
}

int store_retained_get(struct store *st, const char *tenant, const char *digest,
                       store_retained_cb cb, void *arg)
{
    ENSURE(digest && strlen(digest) == STORE_DIGEST_HEX, ERR_INVALID);
    ENSURE(strspn(digest, "0123456789abcdef") == STORE_DIGEST_HEX, ERR_INVALID);
    return st->ops->retained_get(st, tenant, digest, cb, arg);
}

int store_authz_rules_put(struct store *st, const char *tenant, const char *rules_json)
{
    return st->ops->authz_rules_put(st, tenant, rules_json);
}

int store_authz_rules_list(struct store *st, store_authz_cb cb, void *arg)
{
    return st->ops->authz_rules_list(st, cb, arg);
}

int store_authz_roles_put(struct store *st, const char *tenant, const char *user, const char *roles)
{
    return st->ops->authz_roles_put(st, tenant, user, roles);
}

int store_authz_roles_list(struct store *st, store_authz_cb cb, void *arg)
{
    return st->ops->authz_roles_list(st, cb, arg);
}

int store_ca_insert(struct store *st, const char *tenant, const void *der, size_t der_len,
                    const void *sealed, size_t sealed_len)
{
    return st->ops->ca_insert(st, tenant, der, der_len, sealed, sealed_len);
}

int store_ca_get(struct store *st, const char *tenant, struct store_ca *out)
{
    return st->ops->ca_get(st, tenant, out);
}

int store_ca_update_cert(struct store *st, const char *tenant, const void *der, size_t der_len)
{
    return st->ops->ca_update_cert(st, tenant, der, der_len);
}

int store_ca_delete(struct store *st, const char *tenant)
{
    return st->ops->ca_delete(st, tenant);
}

int store_ca_tenants(struct store *st, int (*cb)(void *arg, const char *tenant), void *arg)
{
    return st->ops->ca_tenants(st, cb, arg);
}

int store_enroll_token_put(struct store *st, const char *hash, const struct store_enroll_token *t)
{
    return st->ops->enroll_token_put(st, hash, t);
}

int store_enroll_token_get(struct store *st, const char *hash, struct store_enroll_token *out)
{
    return st->ops->enroll_token_get(st, hash, out);
}

int store_enroll_token_use(struct store *st, const char *hash)
{
    return st->ops->enroll_token_use(st, hash);
}

int store_issuance_add(struct store *st, const char *tenant, const struct store_issuance *i)
{
    return st->ops->issuance_add(st, tenant, i);
}

int store_issuance_list(struct store *st, const char *tenant, size_t offset, size_t limit,
                        store_issuance_cb cb, void *arg)
{
    return st->ops->issuance_list(st, tenant, offset, limit, cb, arg);
}

int store_issuance_count(struct store *st, const char *tenant, size_t *n)
{
    return st->ops->issuance_count(st, tenant, n);
}

int store_issuance_latest(struct store *st, const char *tenant, const char *cn,
                          struct store_issuance *out)
{
    return st->ops->issuance_latest(st, tenant, cn, out);
}

int store_issuance_get(struct store *st, const char *tenant, const char *serial,
                       struct store_issuance *out)
{
    return st->ops->issuance_get(st, tenant, serial, out);
}

int store_device_seen_put(struct store *st, const struct store_seen *v, size_t n)
{
    return st->ops->device_seen_put(st, v, n);
}

int store_ticket_key_put(struct store *st, int64_t period, int64_t slot, const void *sealed,
                         size_t sealed_len)
{
    return st->ops->ticket_key_put(st, period, slot, sealed, sealed_len);
}

int store_ticket_key_get(struct store *st, int64_t period, int64_t slot, void **sealed,
                         size_t *sealed_len)
{
    return st->ops->ticket_key_get(st, period, slot, sealed, sealed_len);
}

int store_device_seen_list(struct store *st, store_seen_cb cb, void *arg)
{
    return st->ops->device_seen_list(st, cb, arg);
}

int store_watch(struct store *st, store_change_cb cb, void *arg)
{
    return st->ops->watch ? st->ops->watch(st, cb, arg) : 0;
}

void store_unwatch(struct store *st)
{
    if (st && st->ops->unwatch) st->ops->unwatch(st);
}
