/* The chain policy (DESIGN.md "Trust and chain policy", steps 1-8) as one
 * function shared by CONNECT, verify-cert-chain and `certmq pki verify`:
 * ident_decide() only reads the trust index and its inputs (time included);
 * ident_record() is the side effect (per-reason counter and log line). */
#ifndef CERTMQ_IDENTITY_POLICY_H
#define CERTMQ_IDENTITY_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <openssl/x509.h>

#include "core/err.h"
#include "identity/revocation.h"
#include "store/store.h"

struct trust_index;
struct crlfetch;

#define IDENT_DEFAULT_MAX_CHAIN 2
#define IDENT_CN_MAX            120 /* so that "device_<CN>" fits a user name */

enum ident_reason {
    IDENT_OK = 0,
    IDENT_NO_CERTIFICATE,
    IDENT_CA_NOT_IN_CHAIN,
    IDENT_UNTRUSTED,
    IDENT_ANCHOR_DISABLED,
    IDENT_AMBIGUOUS_TENANT,
    IDENT_EXPIRED,
    IDENT_NOT_YET_VALID,
    IDENT_BAD_SIGNATURE,
    IDENT_SIGNER_NOT_CA,
    IDENT_PATH_LENGTH,
    IDENT_CHAIN_TOO_LONG,
    IDENT_MISSING_CLIENT_AUTH,
    IDENT_REVOKED,
    IDENT_WEAK_KEY,
    IDENT_WEAK_SIGNATURE,
    IDENT_BAD_COMMON_NAME,
    IDENT_CLIENT_ID_MISMATCH,
    IDENT_NOT_REGISTERED,
    IDENT_INVALID_CHAIN, /* any other path-validation failure (see detail) */
    IDENT_LEAF_IS_CA,
    IDENT_LEAF_V1,
    IDENT_CRL_UNAVAILABLE, /* online CRL check on, the CRL not at hand, tenant refuses then */
    IDENT_REASON_COUNT
};

struct ident_input {
    X509 *leaf;             /* the device certificate, NULL if none (borrowed) */
    STACK_OF(X509) * chain; /* certificates sent after the leaf, may be NULL */
    const char *client_id;  /* NULL: skip the ClientId rule (verify tools) */
    size_t client_id_len;
    time_t now;
    int max_chain_length;     /* certificates incl. leaf and anchor; <2 means default */
    bool require_ca_in_chain; /* DESIGN.md step 1; false: chained-to anchors count */
    bool allow_v1_leaf;       /* accept X.509 v1 device certificates (legacy fleets) */
    /* Online CRLs (crlfetch.h) for tenants with configuration /
     * crl.online.check.enabled; NULL: none. Looking one up may queue its
     * fetch, the only effect of a decision besides ident_record. */
    struct crlfetch *crls;
};

struct ident_decision {
    bool accepted;
    enum ident_reason reason;
    bool auto_register;            /* accepted, but the caller must register the device */
    char tenant[STORE_TENANT_MAX]; /* "" when no tenant was chosen */
    char cn[IDENT_CN_MAX + 8];
    char anchor_fp[STORE_FP_MAX];
    char detail[128]; /* OpenSSL's text for IDENT_INVALID_CHAIN, else "" */
    /* serials of the validated path below the anchor (once it validated) */
    struct revoc_path path;
};

/* Runs steps 1-7. Returns 0 when a decision was made (see out->accepted),
 * negative only on an internal failure (out then says IDENT_INVALID_CHAIN).
 * When out->auto_register is set the caller performs the registration write
 * (trust_register_device) before admitting the client. */
MUST_USE int ident_decide(const struct trust_index *ti, const struct ident_input *in,
                          struct ident_decision *out);

/* Puts ctx under the RFC 5280 profile (X509_V_FLAG_X509_STRICT: AKI and SKI
 * present, CA subjects non-empty, CA basicConstraints critical, no
 * keyCertSign on end entities, ...) on every path certmq validates. One
 * strict check is forgiven: a CA without keyUsage, which `openssl req -x509
 * -extensions v3_ca` with the stock openssl.cnf makes (the edge guide's CA);
 * signers still need CA:TRUE, and keyCertSign whenever keyUsage is present. */
void ident_strict_profile(X509_STORE_CTX *ctx);

/* DESIGN.md step 6 for a common name (also the bulk-registration ID rule):
 * 1..IDENT_CN_MAX bytes, no ':', no '/', '+' or '#' (it names an MQTT topic
 * level) and no control characters. */
bool ident_cn_acceptable(const char *cn);
/* "no certificate", "ca not in chain", ... ("accepted" for IDENT_OK). */
const char *ident_reason_str(enum ident_reason r);
/* Counts the decision under its reason and, for a refusal, logs one line
 * with tenant, CN, anchor fingerprint and reason. Thread-safe. */
void ident_record(const struct ident_decision *d);
/* The counter for one reason (IDENT_OK counts acceptances). */
uint64_t ident_counter(enum ident_reason r);

#endif
