/* Revocation: CRLs (PEM or DER) are parsed and verified against the CA that
 * issued them before any serial in them is used (tenant upload, listener
 * crlfile, `certmq pki verify --crl`), and a connected client keeps the
 * serials of its validated path compactly, so that a revocation of any
 * certificate in it (leaf or intermediate) can find and drop it. */
#ifndef CERTMQ_IDENTITY_REVOCATION_H
#define CERTMQ_IDENTITY_REVOCATION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/x509.h>

#include "core/err.h"
#include "store/store.h"

struct trust_index;

#define REVOC_PATH_MAX    9      /* certificates below the anchor at max_chain_length 10 */
#define REVOC_SERIAL_MAX  20     /* octets, RFC 5280 4.1.2.2 */
#define REVOC_MAX_ENTRIES 100000 /* revoked certificates in one uploaded CRL */

/* One certificate of a path: its issuer (which CRL applies) and serial. */
struct revoc_serial {
    uint32_t issuer_hash;        /* X509_NAME_hash_ex of the issuer name */
    uint8_t len;                 /* octets in b; 0: longer than REVOC_SERIAL_MAX */
    uint8_t b[REVOC_SERIAL_MAX]; /* magnitude, big-endian, no leading zeros */
};

/* The validated path of a connected client, leaf first, anchor excluded. */
struct revoc_path {
    uint8_t n;
    struct revoc_serial s[REVOC_PATH_MAX];
};

/* Keeps path[0..n-1] (at most REVOC_PATH_MAX; pass the path without its anchor). */
void revoc_path_set(struct revoc_path *p, X509 *const *path, int n);
/* The same from a validated chain (leaf first, the trust anchor last). */
void revoc_path_from_chain(struct revoc_path *p, STACK_OF(X509) * chain);
/* True when a serial of p is on the tenant's revoked list (hold the trust
 * read lock). A serial too long to keep counts as revoked: the client is
 * dropped and its reconnect is judged on the full certificates. */
bool revoc_path_revoked_tenant_locked(const struct trust_index *ti, const char *tenant,
                                      const struct revoc_path *p);
/* True when a CRL held in store (see revoc_crlfile_load) for a certificate's
 * issuer lists its serial. A serial too long to keep counts as revoked. */
bool revoc_path_revoked_store(X509_STORE *store, const struct revoc_path *p);

/* Parses one CRL, PEM ("X509 CRL" block) or DER. ERR_MALFORMED when the
 * bytes are neither or hold more than one CRL; *out is the caller's. */
MUST_USE int revoc_crl_parse(const uint8_t *data, size_t len, X509_CRL **out);
/* Verifies crl against candidate issuers: the issuer name matches one of
 * them, whose key verifies the signature and which has cRLSign when it has
 * keyUsage; no critical extension certmq does not apply (delta CRLs,
 * indirect entries). 0 and *issuer (borrowed from cas, may be NULL) when
 * valid; else ERR_INVALID and *why, a static reason. */
MUST_USE int revoc_crl_verify(X509_CRL *crl, STACK_OF(X509) * cas, X509 **issuer, const char **why);
/* The revoked serials of a verified CRL, normalized (trust_serial_normalize)
 * with their dates; ERR_TOO_LARGE above REVOC_MAX_ENTRIES. *out is the
 * caller's (free()). */
MUST_USE int revoc_crl_entries(X509_CRL *crl, struct store_crl_entry **out, size_t *n);
/* Reads a PEM file of CRLs (or one DER CRL), verifies each against the CA
 * certificates of store, and adds them to store. Nothing is added when any
 * fails; err then says which and why. */
MUST_USE int revoc_crlfile_load(X509_STORE *store, const char *file, char *err, size_t n);

#endif
