/* The certmq store: tenants, users, trusted certificates, devices, options,
 * revoked serials and token keys behind one opaque handle, on SQLite
 * (sqlite.c) or PostgreSQL (pg.c), chosen when opened (store.c). Thread-safe:
 * every call holds a mutex, so list callbacks must not call back into the
 * store. A PostgreSQL store that lost its server answers ERR_UNAVAILABLE. */
#ifndef CERTMQ_STORE_STORE_H
#define CERTMQ_STORE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

#define STORE_TENANT_MAX 64 /* sizes include the terminating NUL */
#define STORE_NAME_MAX   128
#define STORE_FP_MAX     41 /* lowercase hex SHA-1 of the DER */
#define STORE_HASH_MAX   160
#define STORE_VALUE_MAX  1024
#define STORE_SERIAL_MAX 80

struct store;

/* Role bits; a user holds any combination. */
enum store_role {
    STORE_ROLE_TENANT_ADMIN = 1u << 0,
    STORE_ROLE_MANAGEMENT_ADMIN = 1u << 1, /* ROLE_TENANT_MANAGEMENT_ADMIN */
    STORE_ROLE_DEVICE_CONTROL_ADMIN = 1u << 2,
    STORE_ROLE_DEVICE = 1u << 3,
};
#define STORE_ROLE_COUNT 4

/* The user name a device's registration makes: this prefix, then its CN. */
#define STORE_DEVICE_USER_PREFIX     "device_"
#define STORE_DEVICE_USER_PREFIX_LEN (sizeof STORE_DEVICE_USER_PREFIX - 1)

/* "ROLE_TENANT_ADMIN" etc. for bit i (0..STORE_ROLE_COUNT-1). */
const char *store_role_name(unsigned i);
/* The bit for a role name, 0 when unknown. */
unsigned store_role_parse(const char *name);

struct store_tenant {
    char id[STORE_TENANT_MAX];
    char domain[STORE_NAME_MAX];
    char company[STORE_NAME_MAX];
    int64_t created; /* unix seconds */
};

struct store_user {
    char tenant[STORE_TENANT_MAX];
    char name[STORE_NAME_MAX];
    char email[STORE_NAME_MAX];
    char pw_hash[STORE_HASH_MAX]; /* "" for device users (no password) */
    unsigned roles;
    bool device;
    int64_t created;
};

struct store_cert {
    char tenant[STORE_TENANT_MAX];
    char fingerprint[STORE_FP_MAX];
    char name[STORE_NAME_MAX];
    bool enabled;
    bool auto_registration;
    bool pop_valid;
    char pop_code[STORE_NAME_MAX];
    int64_t pop_until;
    int64_t created;
    unsigned char *der; /* owned after store_cert_get (store_cert_clear) */
    size_t der_len;
};

/* One row of a bulk registration; strings borrowed, NULL means empty. */
struct store_device_new {
    const char *cn;
    const char *type;
    const char *name;
    const char *auth_type;
    const char *props_json;
    const char *pw_hash; /* device user's password hash, NULL: none */
};

struct store_crl_entry {
    char serial[STORE_SERIAL_MAX]; /* uppercase hex, no leading zeros */
    int64_t revoked;               /* unix seconds */
};

typedef int (*store_tenant_cb)(void *arg, const struct store_tenant *t);
typedef int (*store_user_cb)(void *arg, const struct store_user *u);
/* c->der is borrowed for the duration of the call. */
typedef int (*store_cert_cb)(void *arg, const struct store_cert *c);
typedef int (*store_device_cb)(void *arg, const char *tenant, const char *cn);
typedef int (*store_option_cb)(void *arg, const char *tenant, const char *category, const char *key,
                               const char *value);
typedef int (*store_crl_cb)(void *arg, const char *tenant, const struct store_crl_entry *e);

/* Opens (creating and migrating) DATA_DIR/certmq.db. */
MUST_USE int store_open(const char *data_dir, struct store **out);
/* Opens an explicit database: a SQLite path (":memory:" for tests) or a
 * postgresql:// conninfo URI. */
MUST_USE int store_open_path(const char *path, struct store **out);
/* Opens the store the `store` option names: "sqlite" (or empty) is
 * DATA_DIR/certmq.db, a postgresql:// URI a PostgreSQL database;
 * ERR_INVALID for anything else. */
MUST_USE int store_open_config(const char *spec, const char *data_dir, struct store **out);
/* Whether spec is a PostgreSQL conninfo URI. */
bool store_is_pg(const char *spec);
void store_close(struct store *st);
/* The schema version the database is at after migrations. */
int store_schema_version(struct store *st);

/* Creates a tenant and its admin user in one transaction (admin may be NULL).
 * ERR_EXISTS when the tenant id is taken. */
MUST_USE int store_tenant_create(struct store *st, const struct store_tenant *t,
                                 const struct store_user *admin);
MUST_USE int store_tenant_get(struct store *st, const char *id, struct store_tenant *out);
MUST_USE int store_tenant_list(struct store *st, size_t offset, size_t limit, store_tenant_cb cb,
                               void *arg);
MUST_USE int store_tenant_count(struct store *st, size_t *n);

/* ERR_EXISTS when (tenant, name) is taken, ERR_NOT_FOUND without the tenant. */
MUST_USE int store_user_create(struct store *st, const struct store_user *u);
MUST_USE int store_user_get(struct store *st, const char *tenant, const char *name,
                            struct store_user *out);
/* tenant NULL: every tenant's users. password_only: users with a hash only. */
MUST_USE int store_user_list(struct store *st, const char *tenant, bool password_only,
                             size_t offset, size_t limit, store_user_cb cb, void *arg);
MUST_USE int store_user_count(struct store *st, const char *tenant, size_t *n);
/* Deletes a user in one transaction; a device user ("device_<cn>", made by
 * registration) takes its device row with it, and device_cn (cap bytes)
 * receives the CN ("" for other users). ERR_NOT_FOUND when no such user. */
MUST_USE int store_user_delete(struct store *st, const char *tenant, const char *name,
                               char *device_cn, size_t cap);

/* c->der is borrowed. ERR_EXISTS when the tenant already trusts it. */
MUST_USE int store_cert_insert(struct store *st, const struct store_cert *c);
/* Fills out, allocating out->der: release with store_cert_clear. */
MUST_USE int store_cert_get(struct store *st, const char *tenant, const char *fp,
                            struct store_cert *out);
void store_cert_clear(struct store_cert *c);
/* Writes name, enabled, auto_registration and the proof-of-possession fields. */
MUST_USE int store_cert_update(struct store *st, const struct store_cert *c);
MUST_USE int store_cert_delete(struct store *st, const char *tenant, const char *fp);
/* tenant NULL: every tenant's certificates. */
MUST_USE int store_cert_list(struct store *st, const char *tenant, size_t offset, size_t limit,
                             store_cert_cb cb, void *arg);
MUST_USE int store_cert_count(struct store *st, const char *tenant, size_t *n);

/* Registers one device (row + device user "device_<cn>") in one transaction.
 * Idempotent: *created says whether it was new. */
MUST_USE int store_device_register(struct store *st, const char *tenant, const char *cn,
                                   const char *auth_type, bool *created);
/* Registers n devices in ONE transaction: row_rc[i] is 0 (created) or
 * ERR_EXISTS; any other failure rolls back everything and is returned. */
MUST_USE int store_device_bulk(struct store *st, const char *tenant,
                               const struct store_device_new *rows, size_t n, int *row_rc);
MUST_USE int store_device_list(struct store *st, const char *tenant, store_device_cb cb, void *arg);
MUST_USE int store_device_count(struct store *st, const char *tenant, size_t *n);

MUST_USE int store_option_set(struct store *st, const char *tenant, const char *category,
                              const char *key, const char *value);
MUST_USE int store_option_get(struct store *st, const char *tenant, const char *category,
                              const char *key, char *value, size_t cap);
MUST_USE int store_option_delete(struct store *st, const char *tenant, const char *category,
                                 const char *key);
MUST_USE int store_option_list(struct store *st, const char *tenant, store_option_cb cb, void *arg);

/* Adds (or re-dates) revoked serials in one transaction. */
MUST_USE int store_crl_add(struct store *st, const char *tenant, const struct store_crl_entry *e,
                           size_t n);
MUST_USE int store_crl_list(struct store *st, const char *tenant, store_crl_cb cb, void *arg);

/* The tenant's device-token signing key pair: the private key only as a
 * sealed blob (core/seal.h; the store never holds it in the clear), the
 * public key as PEM. put keeps an existing pair (first writer wins, so
 * concurrent creators agree: put, then get); get allocates both (free()),
 * ERR_NOT_FOUND when none. */
MUST_USE int store_token_key_put(struct store *st, const char *tenant, const void *sealed,
                                 size_t sealed_len, const char *pub_pem);
MUST_USE int store_token_key_get(struct store *st, const char *tenant, void **sealed,
                                 size_t *sealed_len, char **pub_pem);
/* Called by store_token_key_rewrap for each tenant's key: priv_pem is the
 * plaintext key of a row written before schema 4 (else NULL), sealed the
 * current blob (NULL before schema 4; both borrowed). Setting *out (malloc'd,
 * taken) replaces the sealed key and clears the plaintext; leaving it NULL
 * keeps the row; a negative return rolls everything back. */
typedef int (*store_token_key_fn)(void *arg, const char *tenant, const char *priv_pem,
                                  const void *sealed, size_t sealed_len, void **out,
                                  size_t *out_len);
/* Runs fn over every token key in one transaction (sealing old plaintext
 * rows, checking or rotating the key-encryption key); when rows changed,
 * truncates the WAL so no replaced plaintext stays on disk. *changed: rows
 * rewritten. */
MUST_USE int store_token_key_rewrap(struct store *st, store_token_key_fn fn, void *arg,
                                    size_t *changed);

/* Retained messages, by topic space and routed topic name (bytes). put
 * with plen 0 deletes; list calls cb for every stored message (borrowed). */
typedef int (*store_retained_cb)(void *arg, const char *tenant, const void *topic, size_t tlen,
                                 const void *payload, size_t plen, int qos);
MUST_USE int store_retained_put(struct store *st, const char *tenant, const void *topic,
                                size_t tlen, const void *payload, size_t plen, int qos);
MUST_USE int store_retained_list(struct store *st, store_retained_cb cb, void *arg);
/* A retained topic's digest: lowercase hex SHA-256 of its bytes, what the
 * store's change notices name it by (a topic is too long for a notice). */
#define STORE_DIGEST_HEX 64
void store_retained_digest(const void *topic, size_t tlen, char out[STORE_DIGEST_HEX + 1]);
/* Calls cb once with the retained message of tenant whose topic has that
 * digest (borrowed). ERR_NOT_FOUND when there is none, ERR_INVALID for a
 * digest that is not 64 lowercase hex digits. */
MUST_USE int store_retained_get(struct store *st, const char *tenant, const char *digest,
                                store_retained_cb cb, void *arg);

/* TLS session-ticket keys shared by the nodes of one store (net/ticketkeys.h):
 * one sealed key per rotation slot (slot = unix time / period). put keeps an
 * existing key of the slot (first writer wins: put, then get, and every node
 * uses the same key) and deletes the keys of that period older than the slot
 * before slot; get allocates *sealed (free()), ERR_NOT_FOUND when none. */
MUST_USE int store_ticket_key_put(struct store *st, int64_t period, int64_t slot,
                                  const void *sealed, size_t sealed_len);
MUST_USE int store_ticket_key_get(struct store *st, int64_t period, int64_t slot, void **sealed,
                                  size_t *sealed_len);

/* ---- topic authorization (identity/authz.h keeps them in memory) ---- */

/* (tenant, key, value): for rules key is "" and value the tenant's rule
 * list as JSON; for roles key is a user name and value its roles. */
typedef int (*store_authz_cb)(void *arg, const char *tenant, const char *key, const char *value);
MUST_USE int store_authz_rules_put(struct store *st, const char *tenant, const char *rules_json);
MUST_USE int store_authz_rules_list(struct store *st, store_authz_cb cb, void *arg);
/* roles: comma-separated named roles; "" or NULL removes the user's. */
MUST_USE int store_authz_roles_put(struct store *st, const char *tenant, const char *user,
                                   const char *roles);
MUST_USE int store_authz_roles_list(struct store *st, store_authz_cb cb, void *arg);

/* ---- certificate lifecycle (sqlite_ca.c) ---- */

/* A tenant's CA: its certificate and its private key sealed (core/seal.h). */
struct store_ca {
    unsigned char *der; /* owned after store_ca_get (store_ca_clear) */
    size_t der_len;
    void *sealed;
    size_t sealed_len;
    int64_t created;
};
/* der and sealed borrowed. ERR_EXISTS when the tenant has one. */
MUST_USE int store_ca_insert(struct store *st, const char *tenant, const void *der, size_t der_len,
                             const void *sealed, size_t sealed_len);
/* ERR_NOT_FOUND when the tenant has none. */
MUST_USE int store_ca_get(struct store *st, const char *tenant, struct store_ca *out);
void store_ca_clear(struct store_ca *c);
/* Replaces the certificate (renewal keeps the key). */
MUST_USE int store_ca_update_cert(struct store *st, const char *tenant, const void *der,
                                  size_t der_len);
MUST_USE int store_ca_delete(struct store *st, const char *tenant);
/* Calls cb for every tenant that has a CA (cb must not call the store). */
MUST_USE int store_ca_tenants(struct store *st, int (*cb)(void *arg, const char *tenant),
                              void *arg);

/* A one-time enrollment token, known only by the hex SHA-256 of its value. */
struct store_enroll_token {
    char tenant[STORE_TENANT_MAX];
    char device[STORE_NAME_MAX];
    int64_t valid_until;
    bool used;
};
MUST_USE int store_enroll_token_put(struct store *st, const char *hash,
                                    const struct store_enroll_token *t);
/* ERR_NOT_FOUND for an unknown hash. */
MUST_USE int store_enroll_token_get(struct store *st, const char *hash,
                                    struct store_enroll_token *out);
/* Marks the token used; ERR_CONFLICT when it already was (one use only,
 * also under concurrent requests). */
MUST_USE int store_enroll_token_use(struct store *st, const char *hash);

/* One certificate issued by a tenant CA. */
struct store_issuance {
    char serial[STORE_SERIAL_MAX]; /* uppercase hex, no leading zeros */
    char cn[STORE_NAME_MAX];
    int64_t not_after;
    int64_t issued;
    char method[32];            /* "est-enroll", "est-reenroll", "mqtt-renew" */
    char actor[STORE_NAME_MAX]; /* who asked: the token's device, a user, a device */
};
typedef int (*store_issuance_cb)(void *arg, const struct store_issuance *i);
MUST_USE int store_issuance_add(struct store *st, const char *tenant,
                                const struct store_issuance *i);
/* Newest first. */
MUST_USE int store_issuance_list(struct store *st, const char *tenant, size_t offset, size_t limit,
                                 store_issuance_cb cb, void *arg);
MUST_USE int store_issuance_count(struct store *st, const char *tenant, size_t *n);
/* The newest certificate the tenant's CA issued to cn; ERR_NOT_FOUND when
 * none. */
MUST_USE int store_issuance_latest(struct store *st, const char *tenant, const char *cn,
                                   struct store_issuance *out);
/* ERR_NOT_FOUND when the tenant's CA issued no such serial. */
MUST_USE int store_issuance_get(struct store *st, const char *tenant, const char *serial,
                                struct store_issuance *out);

/* When a device last connected and its certificate's notAfter (Unix
 * seconds), written in batches; rows of a tenant that no longer exists are
 * skipped. */
struct store_seen {
    const char *tenant, *cn;
    int64_t last_seen, not_after;
};
MUST_USE int store_device_seen_put(struct store *st, const struct store_seen *v, size_t n);
typedef int (*store_seen_cb)(void *arg, const struct store_seen *r);
MUST_USE int store_device_seen_list(struct store *st, store_seen_cb cb, void *arg);

/* ---- changes committed by any node (PostgreSQL: pg_watch.c) ---- */

/* One committed change to a row that nodes hold in memory: its table, what
 * happened ("INSERT", "UPDATE" or "DELETE"), the tenant and up to two key
 * columns of the row (NULL past the table's key). After the watch lost its
 * connection and got it back, table is NULL: changes may have been missed. */
struct store_change {
    const char *table, *op, *tenant, *k1, *k2;
};
typedef void (*store_change_cb)(void *arg, const struct store_change *c);
/* Calls cb, on a thread of the store's own, for every such change any node
 * commits (this one's included), until store_close. A backend that serves
 * one node (SQLite) has nothing to tell: 0 and no thread. */
MUST_USE int store_watch(struct store *st, store_change_cb cb, void *arg);
/* Stops the watch (waiting for a callback that runs); no callback after. */
void store_unwatch(struct store *st);

#endif
