/* The tenant CA's REST resources, HTTP glue over ca/tenantca.h:
 * POST|GET|DELETE /certificate-authority and .../renew for the caller's
 * tenant, the issuance records (.../issued-certificates) and the one-time
 * enrollment tokens (POST /tenant/tenants/{tenantId}/enrollment-tokens). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/handlers.h"
#include "ca/enroll.h"
#include "ca/tenantca.h"
#include "identity/policy.h"
#include "identity/trust.h"

/* The caller's tenant when it administers it, else a 403/404 reply and NULL. */
static const char *own_tenant(struct api_req *r)
{
    if (!r->api->cfg.ca) {
        ignore_result(api_reply_error(r, 404, "The certificate authority is not enabled"));
        return NULL;
    }
    if (!r->tenant[0] || !(r->roles & STORE_ROLE_TENANT_ADMIN)) {
        ignore_result(api_reply_error(r, 403, "Only a tenant admin may manage its tenant's CA"));
        return NULL;
    }
    return r->tenant;
}

/* "ec:P-256" (default), "rsa:3072" or "rsa:4096" from an optional body
 * {"keyAlgorithm": "EC"|"RSA", "keySize": N}; NULL after a 422 reply. */
static const char *key_choice(struct api_req *r)
{
    if (r->body_len == 0) return "ec:P-256";
    json_t *j = api_body_json(r);
    if (!j) return NULL;
    const char *alg = json_string_value(json_object_get(j, "keyAlgorithm"));
    json_int_t size = json_integer_value(json_object_get(j, "keySize"));
    const char *spec = NULL;
    if (!alg || !strcasecmp(alg, "EC"))
        spec = size == 0 || size == 256 ? "ec:P-256" : NULL;
    else if (!strcasecmp(alg, "RSA"))
        spec = size == 3072 || size == 0 ? "rsa:3072" : size == 4096 ? "rsa:4096" : NULL;
    json_decref(j);
    if (!spec)
        ignore_result(api_reply_error(r, 422,
                                      "keyAlgorithm must be EC (keySize 256) or RSA (keySize "
                                      "3072 or 4096)"));
    return spec;
}

/* Replies the trusted-certificate object of (tenant, fp). */
static int reply_ca(struct api_req *r, int status, const char *tenant, const char *fp)
{
    struct store_cert c;
    GUARD(store_cert_get(r->api->st, tenant, fp, &c));
    const unsigned char *p = c.der;
    X509 *x = d2i_X509(NULL, &p, (long)c.der_len);
    int rc = ERR_INTERNAL;
    if (x) {
        rc = api_reply_json(r, status, api_cert_json(r, &c, x));
    }
    X509_free(x);
    store_cert_clear(&c);
    return rc;
}

int api_h_ca_create(struct api_req *r)
{
    const char *tenant = own_tenant(r), *spec;
    char fp[STORE_FP_MAX];
    if (!tenant || !(spec = key_choice(r))) return 0;
    int rc = tenant_ca_create(r->api->cfg.ca, tenant, spec, time(NULL), fp);
    if (rc == ERR_EXISTS)
        return api_reply_error(r, 409, "This tenant already has a certificate authority");
    GUARD(rc);
    r->location = api_url(r, "/certificate-authority");
    return reply_ca(r, 201, tenant, fp);
}

int api_h_ca_get(struct api_req *r)
{
    const char *tenant = own_tenant(r);
    X509 *x = NULL;
    char fp[STORE_FP_MAX];
    if (!tenant) return 0;
    int rc = tenant_ca_cert(r->api->cfg.ca, tenant, &x);
    if (rc == ERR_NOT_FOUND)
        return api_reply_error(r, 404, "This tenant has no certificate authority");
    GUARD(rc);
    rc = trust_fingerprint(x, fp);
    X509_free(x);
    GUARD(rc);
    return reply_ca(r, 200, tenant, fp);
}

int api_h_ca_renew(struct api_req *r)
{
    const char *tenant = own_tenant(r);
    char fp[STORE_FP_MAX];
    if (!tenant) return 0;
    const char *force = api_query(r, "force");
    int rc =
        tenant_ca_renew(r->api->cfg.ca, tenant, time(NULL), force && !strcmp(force, "true"), fp);
    if (rc == ERR_NOT_FOUND)
        return api_reply_error(r, 404, "This tenant has no certificate authority");
    if (rc == ERR_CONFLICT)
        return api_reply_error(r, 422,
                               "The CA certificate is not within its renewal window "
                               "(certificate-authority / renewal.window.days); add ?force=true "
                               "to renew anyway");
    GUARD(rc);
    return reply_ca(r, 200, tenant, fp);
}

int api_h_ca_delete(struct api_req *r)
{
    const char *tenant = own_tenant(r);
    if (!tenant) return 0;
    const char *confirm = api_query(r, "confirm");
    if (!confirm || strcmp(confirm, "true") != 0)
        return api_reply_error(r, 400,
                               "Deleting the CA removes its trust: every device it issued is "
                               "refused. Repeat with ?confirm=true");
    int rc = tenant_ca_delete(r->api->cfg.ca, tenant);
    if (rc == ERR_NOT_FOUND)
        return api_reply_error(r, 404, "This tenant has no certificate authority");
    GUARD(rc);
    return api_reply_empty(r, 204);
}

struct issued_ctx {
    json_t *items;
    struct trust_index *ti;
    const char *tenant;
};

static int add_issuance(void *arg, const struct store_issuance *i)
{
    struct issued_ctx *ic = arg;
    trust_read_lock(ic->ti);
    bool revoked = trust_crl_revoked_locked(ic->ti, ic->tenant, i->serial);
    trust_read_unlock(ic->ti);
    char na[40], at[40];
    api_iso_time(i->not_after, na, sizeof na);
    api_iso_time(i->issued, at, sizeof at);
    json_t *j =
        json_pack("{s:s, s:o, s:s, s:s, s:s, s:o, s:b}", "serialNumberInHex", i->serial,
                  "commonName", api_json_text(i->cn), "notAfter", na, "issuedAt", at, "method",
                  i->method, "issuedTo", api_json_text(i->actor), "revoked", revoked);
    return j && json_array_append_new(ic->items, j) == 0 ? 0 : ERR_NOMEM;
}

int api_h_ca_issued_list(struct api_req *r)
{
    const char *tenant = own_tenant(r);
    size_t page, size, total = 0;
    if (!tenant) return 0;
    GUARD(api_paging(r, &page, &size));
    GUARD(store_issuance_count(r->api->st, tenant, &total));
    struct issued_ctx ic = {json_array(), r->api->ti, tenant};
    int rc = store_issuance_list(r->api->st, tenant, (page - 1) * size, size, add_issuance, &ic);
    if (rc < 0) {
        json_decref(ic.items);
        return rc;
    }
    return api_reply_json(r, 200, api_page(r, "certificates", ic.items, page, size, total));
}

int api_h_ca_revoke(struct api_req *r)
{
    const char *tenant = own_tenant(r);
    if (!tenant) return 0;
    int rc = tenant_ca_revoke(r->api->cfg.ca, tenant, r->seg[2], time(NULL));
    if (rc == ERR_NOT_FOUND)
        return api_reply_error(r, 404, "The tenant CA issued no certificate with this serial");
    GUARD(rc);
    if (r->api->cfg.on_crl_change) r->api->cfg.on_crl_change(r->api->cfg.hook_arg, tenant);
    return api_reply_empty(r, 204);
}

int api_ca_revoke_device(struct api_req *r, const char *tenant, const char *cn)
{
    size_t n = 0;
    if (!r->api->cfg.ca) return 0;
    int rc = tenant_ca_revoke_cn(r->api->cfg.ca, tenant, cn, time(NULL), &n);
    if (rc == 0 && n && r->api->cfg.on_crl_change)
        r->api->cfg.on_crl_change(r->api->cfg.hook_arg, tenant);
    return rc;
}

/* The CA's CRL, public as a CRL distribution point is (no credentials). */
int api_h_ca_crl(struct api_req *r)
{
    unsigned char *der = NULL;
    size_t len = 0;
    if (!r->api->cfg.ca) return api_reply_error(r, 404, "The certificate authority is not enabled");
    int rc = tenant_ca_crl(r->api->cfg.ca, r->seg[1], time(NULL), &der, &len);
    if (rc == ERR_NOT_FOUND)
        return api_reply_error(r, 404, "This tenant has no certificate authority");
    GUARD(rc);
    char *copy = malloc(len);
    if (copy) memcpy(copy, der, len);
    OPENSSL_free(der);
    ENSURE(copy, ERR_NOMEM);
    return api_reply_raw(r, 200, "application/pkix-crl", copy, len);
}

/* ---- enrollment tokens ---- */

static long max_validity(const struct api_req *r)
{
    long m = r->api->cfg.enroll_token_max_validity;
    return m > 0 ? m : 2592000;
}

int api_h_enroll_token_create(struct api_req *r)
{
    const char *tenant = r->seg[2];
    char token[ENROLL_TOKEN_LEN + 1], msg[160], until_s[40];
    int64_t until = 0;
    GUARD(api_tenant_gate(r, tenant));
    json_t *j = api_body_json(r);
    if (!j) return 0;
    const char *device = json_string_value(json_object_get(j, "deviceId"));
    json_t *v = json_object_get(j, "validitySeconds");
    long validity = v ? (long)json_integer_value(v) : 86400;
    int rc = 0;
    if (!device || !ident_cn_acceptable(device)) {
        rc = api_reply_error(r, 422, "deviceId must be a valid device id (a certificate CN)");
    } else if ((v && !json_is_integer(v)) || validity < 1 || validity > max_validity(r)) {
        snprintf(msg, sizeof msg, "validitySeconds must be an integer from 1 to %ld",
                 max_validity(r));
        rc = api_reply_error(r, 422, msg);
    } else if ((rc = enroll_token_new(r->api->st, tenant, device, validity, time(NULL), token,
                                      &until)) == 0) {
        api_iso_time(until, until_s, sizeof until_s);
        rc = api_reply_json(r, 201,
                            json_pack("{s:s, s:s, s:s}", "deviceId", device, "token", token,
                                      "validUntil", until_s));
        OPENSSL_cleanse(token, sizeof token);
    }
    json_decref(j);
    return rc;
}
