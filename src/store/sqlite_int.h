/* Private to src/store: what sqlite.c lends the files that keep other
 * tables (sqlite_ca.c): the connection with the store's mutex held, and
 * the mapping of SQLite results to enum err. */
#ifndef CERTMQ_STORE_SQLITE_INT_H
#define CERTMQ_STORE_SQLITE_INT_H

#include <sqlite3.h>

#include "store/store.h"

struct store;

/* Takes the store's mutex and returns its connection; store_db_unlock
 * releases it. Every statement a caller prepares is finalised before. */
sqlite3 *store_db_lock(struct store *st);
void store_db_unlock(struct store *st);
/* 0 for SQLITE_OK/DONE/ROW, ERR_EXISTS for a key conflict, ERR_NOT_FOUND
 * for a foreign key, else ERR_DB (logged). Called with the mutex held. */
int store_db_rc(struct store *st, int rc);

/* sqlite_ca.c: the certificate-lifecycle calls of store.h for this backend
 * (sqlite.c puts them in its store_ops table). */
int sq_ca_insert(struct store *st, const char *tenant, const void *der, size_t der_len,
                 const void *sealed, size_t sealed_len);
int sq_ca_get(struct store *st, const char *tenant, struct store_ca *out);
int sq_ca_update_cert(struct store *st, const char *tenant, const void *der, size_t der_len);
int sq_ca_delete(struct store *st, const char *tenant);
int sq_ca_tenants(struct store *st, int (*cb)(void *arg, const char *tenant), void *arg);
int sq_enroll_token_put(struct store *st, const char *hash, const struct store_enroll_token *t);
int sq_enroll_token_get(struct store *st, const char *hash, struct store_enroll_token *out);
int sq_enroll_token_use(struct store *st, const char *hash);
int sq_issuance_add(struct store *st, const char *tenant, const struct store_issuance *i);
int sq_issuance_list(struct store *st, const char *tenant, size_t offset, size_t limit,
                     store_issuance_cb cb, void *arg);
int sq_issuance_count(struct store *st, const char *tenant, size_t *n);
int sq_issuance_get(struct store *st, const char *tenant, const char *serial,
                    struct store_issuance *out);
int sq_issuance_latest(struct store *st, const char *tenant, const char *cn,
                       struct store_issuance *out);

/* sqlite_ticket.c: the TLS ticket keys of store.h for this backend. */
int sq_ticket_key_put(struct store *st, int64_t period, int64_t slot, const void *sealed,
                      size_t sealed_len);
int sq_ticket_key_get(struct store *st, int64_t period, int64_t slot, void **sealed,
                      size_t *sealed_len);

#endif
