/* EST (RFC 7030) on the API listener, unlabelled (/.well-known/est/...: the
 * tenant follows from the credential) and labelled with the tenant
 * (/.well-known/est/{tenantId}/...): cacerts, simpleenroll (one-time
 * enrollment token as Basic deviceId:token) and simplereenroll (the
 * device's current certificate over mutual TLS, or its token from MQTT as
 * Bearer). These routes authenticate here, not
 * in http.c: their credentials are not tenant users'. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>

#include "api/handlers.h"
#include "api/httpcheck.h"
#include "ca/csr.h"
#include "ca/enroll.h"
#include "ca/tenantca.h"
#include "identity/policy.h"
#include "identity/trust.h"

#define EST_CERTS_ONLY "application/pkcs7-mime; smime-type=certs-only"
#define EST_CACERTS    "application/pkcs7-mime"

/* The tenant the labelled form names, or NULL for the unlabelled one. */
static const char *label(const struct api_req *r)
{
    return r->nseg == 4 ? r->seg[2] : NULL;
}

static int reply_certs(struct api_req *r, STACK_OF(X509) * certs, const char *ctype)
{
    char *b64 = NULL;
    size_t n = 0;
    GUARD(ca_pkcs7_certs_b64(certs, &b64, &n));
    r->base64_body = true;
    return api_reply_raw(r, 200, ctype, b64, n);
}

static bool ca_enabled(struct api_req *r)
{
    if (r->api->cfg.ca) return true;
    ignore_result(api_reply_error(r, 404, "EST is not enabled on this server"));
    return false;
}

/* The tenant a Bearer device token or a Basic deviceId:token names
 * (without spending the token); "" when neither does. */
static void tenant_of_credential(struct api_req *r, char *tenant, size_t cap)
{
    const char *h = api_header(r, MHD_HTTP_HEADER_AUTHORIZATION);
    char user[STORE_NAME_MAX];
    tenant[0] = 0;
    if (!h) return;
    if (!strncasecmp(h, "Bearer ", 7) && r->api->cfg.bearer_check) {
        if (r->api->cfg.bearer_check(r->api->cfg.hook_arg, h + 7, tenant, cap, user, sizeof user) !=
            0)
            tenant[0] = 0;
        return;
    }
    struct httpcheck_basic b;
    struct store_enroll_token t;
    if (httpcheck_basic_pair(h, strlen(h), &b) == 0 &&
        enroll_token_check(r->api->st, b.user, b.password, NULL, time(NULL), &t) != ENROLL_UNKNOWN)
        snprintf(tenant, cap, "%s", t.tenant);
    OPENSSL_cleanse(&b, sizeof b);
}

int api_h_est_cacerts(struct api_req *r)
{
    char tenant[STORE_TENANT_MAX];
    X509 *x = NULL;
    if (!ca_enabled(r)) return 0;
    if (label(r))
        snprintf(tenant, sizeof tenant, "%s", label(r));
    else
        tenant_of_credential(r, tenant, sizeof tenant);
    if (!tenant[0])
        return api_reply_error(r, 400,
                               "Name the tenant (/.well-known/est/{tenantId}/cacerts) or send "
                               "an enrollment token or device token");
    int rc = tenant_ca_cert(r->api->cfg.ca, tenant, &x);
    if (rc == ERR_NOT_FOUND)
        return api_reply_error(r, 404, "This tenant has no certificate authority");
    GUARD(rc);
    STACK_OF(X509) *certs = sk_X509_new_null();
    rc = certs && sk_X509_push(certs, x) ? reply_certs(r, certs, EST_CACERTS) : ERR_NOMEM;
    if (certs && sk_X509_num(certs) == 1) x = NULL;
    sk_X509_pop_free(certs, X509_free);
    X509_free(x);
    return rc;
}

/* The request's CSR, checked, with its CN equal to device; NULL after the
 * refusal was replied (400 unparsable or bad signature, 413 too large, 422
 * weak key, 403 another CN). */
static X509_REQ *checked_csr(struct api_req *r, const char *device)
{
    char why[200], cn[STORE_NAME_MAX];
    size_t max = r->api->cfg.est_max_csr_bytes ? r->api->cfg.est_max_csr_bytes : 16384;
    X509_REQ *req = NULL;
    if (r->body_len > max) {
        ignore_result(api_reply_error(r, 413, "The certificate signing request is too large"));
        return NULL;
    }
    int rc = ca_csr_parse(r->body, r->body_len, &req, why, sizeof why);
    if (rc < 0) {
        ignore_result(api_reply_error(r, rc == ERR_INVALID ? 422 : 400, why));
        return NULL;
    }
    if (ca_csr_cn(req, cn, sizeof cn) < 0 || strcmp(cn, device) != 0) {
        snprintf(why, sizeof why, "The CSR's common name must be the device id '%.100s'", device);
        ignore_result(api_reply_error(r, 403, why));
        X509_REQ_free(req);
        return NULL;
    }
    return req;
}

/* Issues from req for (tenant, device) and replies the chain. */
static int issue_reply(struct api_req *r, const char *tenant, const char *device, X509_REQ *req,
                       const char *method, const char *actor)
{
    STACK_OF(X509) *chain = NULL;
    struct tenant_ca_issue in = {tenant, req, device, method, actor, time(NULL)};
    int rc = tenant_ca_issue(r->api->cfg.ca, &in, &chain);
    if (rc == ERR_NOT_FOUND)
        return api_reply_error(r, 404, "This tenant has no certificate authority");
    GUARD(rc);
    rc = reply_certs(r, chain, EST_CERTS_ONLY);
    sk_X509_pop_free(chain, X509_free);
    return rc;
}

static int enroll_refused(struct api_req *r, enum enroll_refusal why)
{
    return api_reply_error(r, why == ENROLL_WRONG_TENANT ? 403 : 401, enroll_refusal_str(why));
}

int api_h_est_enroll(struct api_req *r)
{
    const char *h = api_header(r, MHD_HTTP_HEADER_AUTHORIZATION);
    struct httpcheck_basic b;
    struct store_enroll_token t;
    if (!ca_enabled(r)) return 0;
    if (!h || httpcheck_basic_pair(h, strlen(h), &b) < 0)
        return api_reply_error(r, 401,
                               "Enrollment needs HTTP Basic credentials deviceId:enrollmentToken");
    int rc = 0;
    X509_REQ *req = NULL;
    enum enroll_refusal why =
        enroll_token_check(r->api->st, b.user, b.password, label(r), time(NULL), &t);
    if (why != ENROLL_OK) {
        rc = enroll_refused(r, why);
    } else if (!tenant_ca_exists(r->api->cfg.ca, t.tenant)) {
        rc = api_reply_error(r, 404, "This tenant has no certificate authority");
    } else if ((req = checked_csr(r, b.user)) != NULL) {
        if (enroll_token_spend(r->api->st, b.password) < 0)
            rc = enroll_refused(r, ENROLL_USED);
        else
            rc = issue_reply(r, t.tenant, b.user, req, "est-enroll", b.user);
    }
    X509_REQ_free(req);
    OPENSSL_cleanse(&b, sizeof b);
    return rc;
}

/* The device a Bearer device token stands for: tenant and CN; a 401/403
 * reply and negative when there is none. */
static int bearer_device(struct api_req *r, char *tenant, char *cn, size_t cap)
{
    const char *h = api_header(r, MHD_HTTP_HEADER_AUTHORIZATION);
    char user[STORE_NAME_MAX];
    if (!h || strncasecmp(h, "Bearer ", 7) != 0 || !r->api->cfg.bearer_check ||
        r->api->cfg.bearer_check(r->api->cfg.hook_arg, h + 7, tenant, STORE_TENANT_MAX, user,
                                 sizeof user) != 0) {
        ignore_result(api_reply_error(r, 401,
                                      "Re-enrollment needs the device's current certificate "
                                      "(mutual TLS) or its token (Authorization: Bearer, from "
                                      "s/uat)"));
        return ERR_AUTH;
    }
    if (strncmp(user, STORE_DEVICE_USER_PREFIX, STORE_DEVICE_USER_PREFIX_LEN) != 0) {
        ignore_result(api_reply_error(r, 403, "Only a device may re-enroll itself"));
        return ERR_FORBIDDEN;
    }
    if (label(r) && strcmp(label(r), tenant) != 0) {
        ignore_result(api_reply_error(r, 403, "This device belongs to another tenant"));
        return ERR_FORBIDDEN;
    }
    snprintf(cn, cap, "%s", user + 7);
    /* A token outlives a revocation: the newest certificate the tenant's CA
     * gave this device must not be revoked, or a revoked device could get
     * a fresh one with the token it still holds. */
    struct store_issuance last;
    if (store_issuance_latest(r->api->st, tenant, cn, &last) == 0) {
        trust_read_lock(r->api->ti);
        bool revoked = trust_crl_revoked_locked(r->api->ti, tenant, last.serial);
        trust_read_unlock(r->api->ti);
        if (revoked) {
            ignore_result(api_reply_error(r, 403, "The device's certificate is revoked"));
            return ERR_FORBIDDEN;
        }
    }
    return 0;
}

/* The device whose certificate the client presented over mutual TLS, by
 * the broker's own chain policy at now; a revoked serial (tenant CRL) is
 * refused whether or not the tenant enforces its CRL on connect. 1 when no
 * certificate was presented; a 403 reply and negative when it does not
 * pass. */
static int cert_device(struct api_req *r, char *tenant, char *cn, size_t cap)
{
    X509 *leaf = NULL;
    STACK_OF(X509) *rest = NULL;
    char serial[STORE_SERIAL_MAX], why[200];
    if (api_peer_chain(r, &leaf, &rest) < 0) return 1;
    struct ident_input in = {.leaf = leaf,
                             .chain = rest,
                             .now = time(NULL),
                             .max_chain_length = r->api->cfg.max_chain_length,
                             .require_ca_in_chain = r->api->cfg.require_ca_in_chain,
                             .allow_v1_leaf = r->api->cfg.allow_v1_leaf};
    struct ident_decision d;
    int rc = ident_decide(r->api->ti, &in, &d);
    bool revoked = false;
    if (rc == 0 && d.accepted && trust_serial_of(leaf, serial, sizeof serial) == 0) {
        trust_read_lock(r->api->ti);
        revoked = trust_crl_revoked_locked(r->api->ti, d.tenant, serial);
        trust_read_unlock(r->api->ti);
    }
    X509_free(leaf);
    sk_X509_pop_free(rest, X509_free);
    if (rc < 0 || !d.accepted || revoked) {
        snprintf(why, sizeof why, "The client certificate is refused: %s",
                 revoked ? "revoked" : ident_reason_str(d.reason));
        ignore_result(api_reply_error(r, 403, why));
        return ERR_FORBIDDEN;
    }
    if (label(r) && strcmp(label(r), d.tenant) != 0) {
        ignore_result(api_reply_error(r, 403, "This device belongs to another tenant"));
        return ERR_FORBIDDEN;
    }
    snprintf(tenant, STORE_TENANT_MAX, "%s", d.tenant);
    snprintf(cn, cap, "%s", d.cn);
    return 0;
}

int api_h_est_reenroll(struct api_req *r)
{
    char tenant[STORE_TENANT_MAX], cn[STORE_NAME_MAX];
    if (!ca_enabled(r)) return 0;
    int rc =
        api_header(r, MHD_HTTP_HEADER_AUTHORIZATION) ? 1 : cert_device(r, tenant, cn, sizeof cn);
    if (rc < 0) return 0;
    if (rc == 1 && bearer_device(r, tenant, cn, sizeof cn) < 0) return 0;
    X509_REQ *req = checked_csr(r, cn);
    if (!req) return 0;
    rc = issue_reply(r, tenant, cn, req, "est-reenroll", cn);
    X509_REQ_free(req);
    return rc;
}
