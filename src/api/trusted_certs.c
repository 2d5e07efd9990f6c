/* Trusted certificates: POST/GET .../trusted-certificates, GET/PUT/DELETE
 * .../{fingerprint} and POST .../bulk under /tenant/tenants/{tenantId}. Each
 * change goes to the store, then the trust index, then the on_anchor_change
 * hook so the broker can close what a disabled or deleted anchor admitted. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/handlers.h"
#include "core/log.h"
#include "identity/trust.h"

static void announce(struct api_req *r, const char *tenant, const char *fp, bool enabled)
{
    if (r->api->cfg.on_anchor_change)
        r->api->cfg.on_anchor_change(r->api->cfg.hook_arg, tenant, fp, enabled);
}

/* The {fingerprint} segment, lowercased; false unless 40 hex digits. */
static bool path_fp(const char *seg, char *fp)
{
    if (strlen(seg) != 40) return false;
    for (int i = 0; i < 40; i++) {
        if (!isxdigit((unsigned char)seg[i])) return false;
        fp[i] = (char)tolower((unsigned char)seg[i]);
    }
    fp[40] = '\0';
    return true;
}

/* Audit: the new certificate overlaps other tenants' trust (same DER, or
 * one issued the other). Named here for those tenants' admins and the
 * management tenant; the uploader's answer only says a proof is required. */
static void audit_overlaps(struct api_req *r, const char *tenant, const char *fp)
{
    char others[8][STORE_TENANT_MAX];
    bool junior = false;
    size_t n = trust_overlaps(r->api->ti, tenant, fp, others, 8, &junior);
    for (size_t i = 0; i < n; i++)
        log_warn("audit trusted certificate overlap: tenant=%s uploaded fp=%s overlapping "
                 "trust of tenant=%s; it takes part in tenant choice only with a valid proof "
                 "of possession",
                 tenant, fp, others[i]);
}

/* Stores one checked upload for tenant and adds it to the trust index.
 * c receives the stored row (der borrowed from the caller's buffer). */
static int insert_cert(struct api_req *r, const char *tenant, const struct api_cert_upload *u,
                       struct store_cert *c, unsigned char **der)
{
    memset(c, 0, sizeof *c);
    int len = i2d_X509(u->cert, der);
    ENSURE(len > 0, ERR_INTERNAL);
    snprintf(c->tenant, sizeof c->tenant, "%s", tenant);
    GUARD(trust_fingerprint(u->cert, c->fingerprint));
    snprintf(c->name, sizeof c->name, "%s", u->name);
    c->enabled = u->enabled;
    c->auto_registration = u->auto_registration;
    c->der = *der;
    c->der_len = (size_t)len;
    c->created = (int64_t)time(NULL);
    GUARD(store_cert_insert(r->api->st, c));
    int rc = trust_anchor_put(r->api->ti, tenant, u->cert, c->enabled, c->auto_registration,
                              c->pop_valid);
    if (rc < 0) {
        ignore_result(store_cert_delete(r->api->st, tenant, c->fingerprint));
        return rc;
    }
    audit_overlaps(r, tenant, c->fingerprint);
    announce(r, tenant, c->fingerprint, c->enabled);
    return 0;
}

int api_h_cert_create(struct api_req *r)
{
    const char *tenant = r->seg[2];
    char msg[256];
    struct api_cert_upload u;
    struct store_cert c;
    unsigned char *der = NULL;
    GUARD(api_tenant_gate(r, tenant));
    json_t *j = api_body_json(r);
    if (!j) return 0;
    int rc = api_cert_upload_from_json(j, time(NULL), &u, msg, sizeof msg);
    json_decref(j);
    if (rc < 0) return api_reply_error(r, rc == ERR_MALFORMED ? 400 : 422, msg);
    rc = insert_cert(r, tenant, &u, &c, &der);
    if (rc == ERR_EXISTS) {
        rc = api_reply_error(r, 409, "This certificate is already trusted by this tenant");
    } else if (rc == 0) {
        r->location =
            api_url(r, "/tenant/tenants/%s/trusted-certificates/%s", tenant, c.fingerprint);
        rc = api_reply_json(r, 201, api_cert_json(r, &c, u.cert));
    }
    OPENSSL_free(der);
    api_cert_upload_free(&u);
    return rc;
}

struct list_ctx {
    const struct api_req *r;
    json_t *items;
};

static int add_cert_json(void *arg, const struct store_cert *c)
{
    struct list_ctx *lc = arg;
    const unsigned char *p = c->der;
    X509 *x = d2i_X509(NULL, &p, (long)c->der_len);
    if (!x) return 0; /* a stored row that no longer parses is skipped */
    int rc = json_array_append_new(lc->items, api_cert_json(lc->r, c, x)) == 0 ? 0 : ERR_NOMEM;
    X509_free(x);
    return rc;
}

int api_h_cert_list(struct api_req *r)
{
    const char *tenant = r->seg[2];
    size_t page, size, total = 0;
    GUARD(api_tenant_gate(r, tenant));
    GUARD(api_paging(r, &page, &size));
    GUARD(store_cert_count(r->api->st, tenant, &total));
    struct list_ctx lc = {r, json_array()};
    int rc = store_cert_list(r->api->st, tenant, (page - 1) * size, size, add_cert_json, &lc);
    if (rc < 0) {
        json_decref(lc.items);
        return rc;
    }
    return api_reply_json(r, 200, api_page(r, "certificates", lc.items, page, size, total));
}

int api_cert_load(struct api_req *r, const char *tenant, struct store_cert *c, X509 **x)
{
    char fp[STORE_FP_MAX];
    int rc = path_fp(r->seg[4], fp) ? store_cert_get(r->api->st, tenant, fp, c) : ERR_NOT_FOUND;
    if (rc == ERR_NOT_FOUND) {
        ignore_result(api_reply_error(r, 404, "No such trusted certificate in this tenant"));
        return rc;
    }
    GUARD(rc);
    const unsigned char *p = c->der;
    *x = d2i_X509(NULL, &p, (long)c->der_len);
    if (!*x) {
        store_cert_clear(c);
        return ERR_INTERNAL;
    }
    return 0;
}

int api_h_cert_get(struct api_req *r)
{
    const char *tenant = r->seg[2];
    struct store_cert c;
    X509 *x = NULL;
    GUARD(api_tenant_gate(r, tenant));
    GUARD(api_cert_load(r, tenant, &c, &x));
    int rc = api_reply_json(r, 200, api_cert_json(r, &c, x));
    X509_free(x);
    store_cert_clear(&c);
    return rc;
}

int api_h_cert_update(struct api_req *r)
{
    const char *tenant = r->seg[2];
    struct store_cert c;
    X509 *x = NULL;
    char msg[256];
    GUARD(api_tenant_gate(r, tenant));
    json_t *j = api_body_json(r);
    if (!j) return 0;
    int rc = api_cert_load(r, tenant, &c, &x);
    if (rc < 0) {
        json_decref(j);
        return rc;
    }
    struct api_cert_upload u = {.enabled = c.enabled, .auto_registration = c.auto_registration};
    snprintf(u.name, sizeof u.name, "%s", c.name);
    rc = api_cert_fields_from_json(j, &u, msg, sizeof msg);
    if (rc < 0) {
        rc = api_reply_error(r, 422, msg);
        goto out;
    }
    snprintf(c.name, sizeof c.name, "%s", u.name);
    c.enabled = u.enabled;
    c.auto_registration = u.auto_registration;
    GUARD_GOTO(rc, store_cert_update(r->api->st, &c), out);
    GUARD_GOTO(rc,
               trust_anchor_put(r->api->ti, tenant, x, c.enabled, c.auto_registration, c.pop_valid),
               out);
    announce(r, tenant, c.fingerprint, c.enabled);
    rc = api_reply_json(r, 200, api_cert_json(r, &c, x));
out:
    json_decref(j);
    X509_free(x);
    store_cert_clear(&c);
    return rc;
}

int api_h_cert_delete(struct api_req *r)
{
    const char *tenant = r->seg[2];
    char fp[STORE_FP_MAX];
    GUARD(api_tenant_gate(r, tenant));
    int rc = path_fp(r->seg[4], fp) ? store_cert_delete(r->api->st, tenant, fp) : ERR_NOT_FOUND;
    if (rc == ERR_NOT_FOUND)
        return api_reply_error(r, 404, "No such trusted certificate in this tenant");
    GUARD(rc);
    ignore_result(trust_anchor_remove(r->api->ti, tenant, fp));
    announce(r, tenant, fp, false);
    return api_reply_empty(r, 204);
}

/* Bulk upload: every object is checked first; then all are stored, and a
 * duplicate undoes the ones already stored, so the upload applies whole. */
int api_h_cert_bulk(struct api_req *r)
{
    const char *tenant = r->seg[2];
    char msg[256], full[300];
    struct api_cert_upload u[API_MAX_CERT_BULK];
    struct store_cert c;
    size_t n = 0, stored = 0, i;
    int rc = 0;
    GUARD(api_tenant_gate(r, tenant));
    json_t *j = api_body_json(r);
    if (!j) return 0;
    json_t *arr = json_object_get(j, "certificates"), *v;
    if (!json_is_array(arr) || json_array_size(arr) == 0 ||
        json_array_size(arr) > API_MAX_CERT_BULK) {
        json_decref(j);
        return api_reply_error(r, 422, "certificates must be an array of 1 to 100 objects");
    }
    json_array_foreach(arr, i, v)
    {
        rc = api_cert_upload_from_json(v, time(NULL), &u[n], msg, sizeof msg);
        if (rc < 0) {
            snprintf(full, sizeof full, "certificates[%zu]: %s", i, msg);
            rc = api_reply_error(r, 422, full);
            goto out;
        }
        n++;
    }
    json_t *items = json_array();
    for (i = 0; i < n; i++, stored++) {
        unsigned char *der = NULL;
        rc = insert_cert(r, tenant, &u[i], &c, &der);
        if (rc == 0) json_array_append_new(items, api_cert_json(r, &c, u[i].cert));
        OPENSSL_free(der);
        if (rc < 0) break;
    }
    if (rc < 0) {
        for (size_t k = 0; k < stored; k++) {
            char fp[STORE_FP_MAX];
            if (trust_fingerprint(u[k].cert, fp) < 0) continue;
            ignore_result(store_cert_delete(r->api->st, tenant, fp));
            ignore_result(trust_anchor_remove(r->api->ti, tenant, fp));
            announce(r, tenant, fp, false);
        }
        json_decref(items);
        if (rc == ERR_EXISTS) {
            snprintf(full, sizeof full,
                     "certificates[%zu]: this certificate is already trusted by this tenant",
                     stored);
            rc = api_reply_error(r, 409, full);
        }
        goto out;
    }
    rc = api_reply_json(r, 201, json_pack("{s:o}", "certificates", items));
out:
    for (i = 0; i < n; i++) api_cert_upload_free(&u[i]);
    json_decref(j);
    return rc;
}
