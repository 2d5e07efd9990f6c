/* The tenant CA held by certmq: one per tenant, its key made here and kept
 * only sealed under the server's key-encryption key (core/seal.h), its
 * certificate one of the tenant's trusted certificates (autoRegistration
 * on, proof of possession valid by construction). Issues device
 * certificates from checked CSRs and records every issuance. Thread-safe
 * (the store and trust index are). */
#ifndef CERTMQ_CA_TENANTCA_H
#define CERTMQ_CA_TENANTCA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include <openssl/x509.h>

#include "core/err.h"
#include "store/store.h"

struct seal;
struct store;
struct trust_index;
struct tenant_ca;

#define CA_OPT_CATEGORY      "certificate-authority"
#define CA_OPT_VALIDITY_DAYS "device-certificate.validity.days"
#define CA_OPT_RENEWAL_DAYS  "renewal.window.days"
#define CA_DEFAULT_VALIDITY  365
#define CA_DEFAULT_RENEWAL   30

struct ca_config {
    long ca_validity_days; /* lifetime of a tenant CA certificate */
    /* Base URL the tenant CRL is served under ("https://host:8443"), named
     * in issued certificates as their CRL distribution point; "" or NULL:
     * none is named. */
    const char *public_url;
    size_t max_csr_bytes; /* CSRs on s/ucr; 0: 16 KiB */
    /* Told when a CA certificate became or stopped being a trusted
     * certificate of tenant (may be NULL). */
    void (*anchor_changed)(void *arg, const char *tenant, const char *fp, bool enabled);
    void *arg;
};

/* st, ti and seal are borrowed and must outlive the service. */
MUST_USE int tenant_ca_new(struct store *st, struct trust_index *ti, const struct seal *seal,
                           const struct ca_config *cfg, struct tenant_ca **out);
void tenant_ca_free(struct tenant_ca *ca);
/* Prometheus families: certificates issued by method, renewal notices. */
void tenant_ca_metrics_write(struct tenant_ca *ca, FILE *out);
void tenant_ca_count_notice(struct tenant_ca *ca);
/* The largest CSR accepted (ca_config.max_csr_bytes). */
size_t tenant_ca_max_csr(const struct tenant_ca *ca);

/* Makes the tenant's CA: key "ec:P-256" (default when NULL), "rsa:3072" or
 * "rsa:4096"; ERR_EXISTS when it has one, ERR_INVALID for another key.
 * Turns on the tenant's CRL check (configuration / crl.offline.check.enabled)
 * unless the tenant has set that option, so that revocations bite.
 * fp (STORE_FP_MAX) receives its trusted certificate's fingerprint. */
MUST_USE int tenant_ca_create(struct tenant_ca *ca, const char *tenant, const char *key, time_t now,
                              char *fp);
/* Does the tenant have a CA that can sign (opened from the store when not
 * in memory: not for store callbacks)? */
bool tenant_ca_exists(struct tenant_ca *ca, const char *tenant);
/* Reads the tenant's CA from the store again (another node created, renewed
 * or deleted it). NULL ca: nothing. */
void tenant_ca_refresh(struct tenant_ca *ca, const char *tenant);
/* Opens every tenant's CA into memory (at start, before requests): what
 * tenant_ca_is_own answers from. A CA that cannot be opened is logged. */
MUST_USE int tenant_ca_load(struct tenant_ca *ca);
/* Is x a certificate of the tenant's CA (its key)? From memory only, so
 * callable inside a store list callback; false without a CA. */
bool tenant_ca_is_own(struct tenant_ca *ca, const char *tenant, X509 *x);
/* The tenant's CA certificate (*out: X509_free); ERR_NOT_FOUND when none. */
MUST_USE int tenant_ca_cert(struct tenant_ca *ca, const char *tenant, X509 **out);
/* A new CA certificate with the same key and subject, trusted beside the
 * old one (chains of certificates it issued verify under either). Allowed
 * within the tenant's renewal window before notAfter (option
 * certificate-authority / renewal.window.days, default 30) unless force;
 * ERR_CONFLICT outside it. fp receives the new fingerprint. */
MUST_USE int tenant_ca_renew(struct tenant_ca *ca, const char *tenant, time_t now, bool force,
                             char *fp);
/* Removes the CA and every trusted certificate of its key. */
MUST_USE int tenant_ca_delete(struct tenant_ca *ca, const char *tenant);

struct tenant_ca_issue {
    const char *tenant;
    X509_REQ *req;      /* checked by ca_csr_parse; its key is certified */
    const char *cn;     /* the device id: the certificate's only subject CN */
    const char *method; /* recorded: "est-enroll", "est-reenroll", "mqtt-renew" */
    const char *actor;  /* recorded: who asked */
    time_t now;
};
/* Issues a device certificate (CN, clientAuth, the tenant's validity) and
 * records it. *chain: the certificate then the CA (sk_X509_pop_free). */
MUST_USE int tenant_ca_issue(struct tenant_ca *ca, const struct tenant_ca_issue *in,
                             STACK_OF(X509) * *chain);
/* Revokes a certificate the tenant CA issued: its serial (normalized hex)
 * goes on the tenant's CRL (store, then index). ERR_NOT_FOUND when the CA
 * issued no such serial. The caller tells the broker (on_crl_change). */
MUST_USE int tenant_ca_revoke(struct tenant_ca *ca, const char *tenant, const char *serial,
                              time_t now);
/* Revokes every unexpired certificate issued for cn; *n says how many. */
MUST_USE int tenant_ca_revoke_cn(struct tenant_ca *ca, const char *tenant, const char *cn,
                                 time_t now, size_t *n);
/* The CA's CRL (DER, *der: OPENSSL_free): the revoked serials it issued,
 * signed by the CA key, valid CA_CRL_HOURS. ERR_NOT_FOUND without a CA. */
#define CA_CRL_HOURS 24
MUST_USE int tenant_ca_crl(struct tenant_ca *ca, const char *tenant, time_t now,
                           unsigned char **der, size_t *len);
/* The broker's renew_cert hook (broker.h) over this service (arg): renewal
 * over MQTT by the rules of EST simplereenroll (renew.c). 0 and *out the
 * new chain as PEM, or negative and *out the "<code>,0,<reason>" line. */
int tenant_ca_renew_cert(void *arg, const char *tenant, const char *cn, const uint8_t *csr,
                         size_t len, time_t now, char **out);
/* The broker's renew_notice hook (broker.h): "73,<notAfter>,<text>" for
 * s/ds when not_after is within the tenant's renewal window, else NULL. */
char *tenant_ca_renew_notice(void *arg, const char *tenant, const char *cn, int64_t not_after,
                             time_t now);
/* The days within which a certificate counts as due for renewal. */
long tenant_ca_renewal_days(struct tenant_ca *ca, const char *tenant);

#endif
