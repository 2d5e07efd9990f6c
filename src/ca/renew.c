/* Certificate renewal over MQTT (s/ucr -> s/dcr or s/e) for devices that
 * cannot speak HTTPS: the broker hands over the CSR a connected certificate
 * device published, and the same rules as EST simplereenroll apply (the
 * device is authenticated by the connection; same CN; key and signature
 * checked). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/pem.h>

#include "ca/csr.h"
#include "ca/tenantca.h"

static int refuse(char **out, int rc, const char *why)
{
    if (asprintf(out, "%s,0,%s", rc == ERR_INTERNAL || rc == ERR_DB ? "50" : "40", why) < 0)
        *out = NULL;
    return rc;
}

static int chain_pem(STACK_OF(X509) * chain, char **out)
{
    BIO *mem = BIO_new(BIO_s_mem());
    ENSURE(mem, ERR_NOMEM);
    int rc = 0;
    for (int i = 0; rc == 0 && i < sk_X509_num(chain); i++)
        if (PEM_write_bio_X509(mem, sk_X509_value(chain, i)) != 1) rc = ERR_INTERNAL;
    char *data = NULL;
    long n = BIO_get_mem_data(mem, &data);
    if (rc == 0 && (*out = malloc((size_t)n + 1))) {
        memcpy(*out, data, (size_t)n);
        (*out)[n] = 0;
    } else if (rc == 0) {
        rc = ERR_NOMEM;
    }
    BIO_free(mem);
    return rc;
}

int tenant_ca_renew_cert(void *arg, const char *tenant, const char *cn, const uint8_t *csr,
                         size_t len, time_t now, char **out)
{
    struct tenant_ca *ca = arg;
    size_t max = tenant_ca_max_csr(ca);
    char why[200], subject[128];
    X509_REQ *req = NULL;
    STACK_OF(X509) *chain = NULL;
    *out = NULL;
    if (len > max)
        return refuse(out, ERR_TOO_LARGE, "The certificate signing request is too large");
    int rc = ca_csr_parse((const char *)csr, len, &req, why, sizeof why);
    if (rc < 0) return refuse(out, rc, why);
    if (ca_csr_cn(req, subject, sizeof subject) < 0 || strcmp(subject, cn) != 0) {
        X509_REQ_free(req);
        snprintf(why, sizeof why, "The CSR's common name must be the device id '%.100s'", cn);
        return refuse(out, ERR_FORBIDDEN, why);
    }
    struct tenant_ca_issue in = {tenant, req, cn, "mqtt-renew", cn, now};
    rc = tenant_ca_issue(ca, &in, &chain);
    X509_REQ_free(req);
    if (rc == ERR_NOT_FOUND) return refuse(out, rc, "This tenant has no certificate authority");
    if (rc < 0) return refuse(out, ERR_INTERNAL, "Certificate could not be issued");
    rc = chain_pem(chain, out);
    sk_X509_pop_free(chain, X509_free);
    return rc < 0 ? refuse(out, ERR_INTERNAL, "Certificate could not be issued") : 0;
}

char *tenant_ca_renew_notice(void *arg, const char *tenant, const char *cn, int64_t not_after,
                             time_t now)
{
    struct tenant_ca *ca = arg;
    long days = tenant_ca_renewal_days(ca, tenant);
    if (days <= 0 || not_after > (int64_t)now + (int64_t)days * 86400) return NULL;
    struct tm tm;
    time_t t = (time_t)not_after;
    char when[32], *text = NULL;
    if (!gmtime_r(&t, &tm) || !strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm)) return NULL;
    if (asprintf(&text,
                 "73,%s,The certificate of %s expires within %ld days: publish a CSR on s/ucr "
                 "for a new one on s/dcr",
                 when, cn, days) < 0)
        return NULL;
    tenant_ca_count_notice(ca);
    return text;
}
