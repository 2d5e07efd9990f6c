/* The in-memory trust index the connect path reads instead of the store:
 * anchors (by DER SHA-1 and by subject), registered devices, password users
 * with a cache of verified passwords, revoked serials and tenant options.
 * Loaded at start, updated after every store write; one rwlock (see *_locked). */
#ifndef CERTMQ_IDENTITY_TRUST_H
#define CERTMQ_IDENTITY_TRUST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/x509.h>

#include "core/err.h"
#include "store/store.h"

struct trust_index;

/* One trusted certificate of one tenant. Valid while the read lock is held. */
struct trust_anchor {
    char tenant[STORE_TENANT_MAX];
    char fp[STORE_FP_MAX];
    X509 *cert; /* owned by the index */
    bool enabled;
    bool auto_registration;
    bool pop_valid;
    uint64_t seq; /* upload order: lower was trusted first (kept across updates) */
};

MUST_USE int trust_new(struct trust_index **out);
void trust_free(struct trust_index *ti);
/* Fills the index from the store (anchors, devices, password users,
 * options, revoked serials). Call once at start, before serving. */
MUST_USE int trust_load(struct trust_index *ti, struct store *st);

/* Lowercase hex SHA-1 of the certificate's DER into fp[STORE_FP_MAX]. */
MUST_USE int trust_fingerprint(X509 *cert, char *fp);
/* Uppercase hex without leading zeros ("0" for zero); ERR_INVALID unless
 * the input is hex (optionally "0x"-prefixed, with ':' or space separators). */
MUST_USE int trust_serial_normalize(const char *in, char *out, size_t cap);
/* A certificate's serial number in the normalized form above. */
MUST_USE int trust_serial_of(X509 *cert, char *out, size_t cap);

/* Adds or replaces (tenant, fingerprint of cert). Takes a reference on cert.
 * A new anchor gets the next upload sequence number; a replaced one keeps its
 * own (trust_load adds anchors in upload order, so seniority survives restarts). */
MUST_USE int trust_anchor_put(struct trust_index *ti, const char *tenant, X509 *cert, bool enabled,
                              bool auto_registration, bool pop_valid);
/* ERR_NOT_FOUND when the tenant does not trust fp. */
MUST_USE int trust_anchor_remove(struct trust_index *ti, const char *tenant, const char *fp);
/* Copies the anchor's flags (cert set to NULL); ERR_NOT_FOUND if absent. */
MUST_USE int trust_anchor_get(struct trust_index *ti, const char *tenant, const char *fp,
                              struct trust_anchor *out);

/* Other tenants' anchors that overlap (tenant, fp): the same DER, or one
 * issued the other. Writes the distinct tenant ids, up to max, into others
 * and returns how many it wrote; *junior says whether one of the overlapping
 * anchors was trusted before (tenant, fp), which then needs a proof of
 * possession to take part in tenant choice. 0 when (tenant, fp) is unknown. */
size_t trust_overlaps(struct trust_index *ti, const char *tenant, const char *fp,
                      char (*others)[STORE_TENANT_MAX], size_t max, bool *junior);

MUST_USE int trust_device_add(struct trust_index *ti, const char *tenant, const char *cn);
/* ERR_NOT_FOUND when the device was not registered. */
MUST_USE int trust_device_remove(struct trust_index *ti, const char *tenant, const char *cn);
bool trust_device_registered(struct trust_index *ti, const char *tenant, const char *cn);
size_t trust_device_count(struct trust_index *ti);
/* The registration write of a connect (auto-registration): store first,
 * then the index; a device the index knows is not written again (its
 * connect needs no store). *created says whether the device is new. */
MUST_USE int trust_register_device(struct trust_index *ti, struct store *st, const char *tenant,
                                   const char *cn, bool *created);

/* Is (tenant, name) a user, with or without a password? */
bool trust_user_known(struct trust_index *ti, const char *tenant, const char *name);
/* Password users: (tenant, name) -> hash and roles; "" hash removes. */
MUST_USE int trust_user_put(struct trust_index *ti, const char *tenant, const char *name,
                            const char *pw_hash, unsigned roles);
/* Checks <tenant>/<name> + password without touching the store; a verified
 * password is cached for a minute under a salted SHA-256 of the triple, so
 * repeated requests skip PBKDF2. An unknown user costs a PBKDF2 too. 0 and
 * *roles on success, else ERR_BAD_CREDENTIALS. Slow: see pwcheck.h. */
MUST_USE int trust_check_password(struct trust_index *ti, const char *tenant, const char *name,
                                  const char *pw, size_t pw_len, unsigned *roles);
/* The fast half of trust_check_password: true (and *roles) when this exact
 * triple was verified within the cache's lifetime. Never runs PBKDF2. */
bool trust_password_cached(struct trust_index *ti, const char *tenant, const char *name,
                           const char *pw, size_t pw_len, unsigned *roles);

/* Tenant options the hot path needs; value NULL deletes. */
MUST_USE int trust_option_set(struct trust_index *ti, const char *tenant, const char *category,
                              const char *key, const char *value);
/* ERR_NOT_FOUND when unset. */
MUST_USE int trust_option_get(struct trust_index *ti, const char *tenant, const char *category,
                              const char *key, char *out, size_t cap);

/* Revoked serials (normalized, see trust_serial_normalize) per tenant. */
MUST_USE int trust_crl_add(struct trust_index *ti, const char *tenant, const char *serial);

/* ---- read side for the chain policy: hold the read lock around these ---- */
void trust_read_lock(const struct trust_index *ti);
void trust_read_unlock(const struct trust_index *ti);
/* Anchors of any tenant with this fingerprint; returns how many (up to max). */
size_t trust_by_fp_locked(const struct trust_index *ti, const char *fp,
                          const struct trust_anchor **out, size_t max);
/* Anchors of any tenant whose subject name equals name. */
size_t trust_by_subject_locked(const struct trust_index *ti, const X509_NAME *name,
                               const struct trust_anchor **out, size_t max);
bool trust_device_registered_locked(const struct trust_index *ti, const char *tenant,
                                    const char *cn);
bool trust_crl_revoked_locked(const struct trust_index *ti, const char *tenant, const char *serial);
/* True when the option is set to "true" (case-insensitive). */
bool trust_option_true_locked(const struct trust_index *ti, const char *tenant,
                              const char *category, const char *key);

#endif
