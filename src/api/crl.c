/* The tenant CRL: PUT /tenant/trusted-certificates/settings/crl adds revoked
 * serials (JSON, a CSV file, or an X.509 CRL in PEM or DER that verifies
 * against one of the tenant's trusted certificates), GET serves them as a DER
 * CRL signed by the API's own key (certmq never holds tenant CA keys).
 * Enforced by the policy when option configuration / crl.offline.check.enabled is true. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/x509.h>

#include "api/handlers.h"
#include "identity/csv.h"
#include "identity/revocation.h"
#include "identity/trust.h"

#define MAX_CRL_ENTRIES 100000

/* ISO-8601 date or date-time, read as UTC; "" means now. */
static int parse_date(const char *s, int64_t *out)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    if (!s || !*s) {
        *out = (int64_t)time(NULL);
        return 0;
    }
    const char *end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!end) {
        memset(&tm, 0, sizeof tm);
        end = strptime(s, "%Y-%m-%d", &tm);
    }
    ENSURE(end, ERR_INVALID);
    *out = (int64_t)timegm(&tm);
    return 0;
}

static int gate(struct api_req *r)
{
    if (api_may_admin(r, r->tenant)) return 0;
    ignore_result(api_reply_error(r, 403, "The CRL needs ROLE_TENANT_ADMIN"));
    return ERR_FORBIDDEN;
}

static int entries_from_json(json_t *j, struct store_crl_entry **out, size_t *n, char *msg,
                             size_t cap)
{
    json_t *arr = json_object_get(j, "crls"), *v;
    size_t i;
    if (!json_is_array(arr) || json_array_size(arr) > MAX_CRL_ENTRIES) {
        snprintf(msg, cap, "crls must be an array of at most %d entries", MAX_CRL_ENTRIES);
        return ERR_INVALID;
    }
    *out = calloc(json_array_size(arr) + 1, sizeof **out);
    ENSURE(*out, ERR_NOMEM);
    json_array_foreach(arr, i, v)
    {
        json_t *sn = json_object_get(v, "serialNumberInHex"),
               *d = json_object_get(v, "revocationDate");
        if (!json_is_string(sn) ||
            trust_serial_normalize(json_string_value(sn), (*out)[i].serial,
                                   sizeof(*out)[i].serial) < 0 ||
            parse_date(json_is_string(d) ? json_string_value(d) : "", &(*out)[i].revoked) < 0) {
            snprintf(msg, cap, "crls[%zu]: serialNumberInHex must be hex, revocationDate ISO-8601",
                     i);
            return ERR_INVALID;
        }
    }
    *n = json_array_size(arr);
    return 0;
}

static int find_col(const struct csv *c, const char *part)
{
    for (size_t k = 0; k < c->ncols; k++)
        if (strcasestr(c->cells[k], part)) return (int)k;
    return -1;
}

static int entries_from_csv(const char *data, size_t len, struct store_crl_entry **out, size_t *n,
                            char *msg, size_t cap)
{
    struct csv c;
    if (csv_parse((const uint8_t *)data, len, &c) < 0) {
        snprintf(msg, cap, "The CRL file is not a CSV file with a header row");
        return ERR_INVALID;
    }
    int rc = ERR_INVALID, ks = find_col(&c, "serial"), kd = find_col(&c, "date");
    if (ks < 0 || c.nrows > MAX_CRL_ENTRIES) {
        snprintf(msg, cap, "The CRL file needs a serial number column (e.g. SERIALNO)");
        goto out;
    }
    *out = calloc(c.nrows + 1, sizeof **out);
    if (!*out) {
        rc = ERR_NOMEM;
        goto out;
    }
    for (size_t i = 0; i < c.nrows; i++) {
        if (trust_serial_normalize(csv_cell(&c, i, ks), (*out)[i].serial, sizeof(*out)[i].serial) <
                0 ||
            parse_date(csv_cell(&c, i, kd), &(*out)[i].revoked) < 0) {
            snprintf(msg, cap, "line %zu: the serial must be hex and the date ISO-8601",
                     c.line[i + 1]);
            goto out;
        }
    }
    *n = c.nrows;
    rc = 0;
out:
    csv_free(&c);
    return rc;
}

/* A PEM or DER X.509 CRL: by content type, PEM marker, or a DER SEQUENCE
 * with a long-form length (text never has a byte >= 0x80 there). */
static bool is_x509_crl(const char *ct, const char *data, size_t len)
{
    if (ct && (strncasecmp(ct, "application/pkix-crl", 20) == 0 ||
               strncasecmp(ct, "application/x-pem-file", 22) == 0))
        return true;
    if (memmem(data, len, "-----BEGIN X509 CRL-----", 24)) return true;
    return len > 2 && (unsigned char)data[0] == 0x30 && (unsigned char)data[1] >= 0x80;
}

/* Verifies the CRL against the caller's tenant's trusted certificates (under
 * the trust read lock, so the anchors stay alive). */
static int verify_tenant_crl(struct api_req *r, X509_CRL *crl, const char **why)
{
    const struct trust_anchor *found[64];
    STACK_OF(X509) *cas = sk_X509_new_null();
    X509 *issuer;
    int rc = ERR_NOMEM;
    if (!cas) return rc;
    trust_read_lock(r->api->ti);
    size_t k = trust_by_subject_locked(r->api->ti, X509_CRL_get_issuer(crl), found, 64);
    for (size_t i = 0; i < k; i++)
        if (!strcmp(found[i]->tenant, r->tenant) && !sk_X509_push(cas, found[i]->cert)) goto out;
    rc = revoc_crl_verify(crl, cas, &issuer, why);
out:
    trust_read_unlock(r->api->ti);
    sk_X509_free(cas);
    return rc;
}

static int entries_from_crl(struct api_req *r, const char *data, size_t len,
                            struct store_crl_entry **out, size_t *n, char *msg, size_t cap)
{
    X509_CRL *crl = NULL;
    const char *why = NULL;
    int rc = revoc_crl_parse((const uint8_t *)data, len, &crl);
    if (rc < 0) {
        snprintf(msg, cap, "The body is not one X.509 CRL (PEM or DER)");
        return ERR_INVALID;
    }
    rc = verify_tenant_crl(r, crl, &why);
    if (rc == ERR_INVALID) snprintf(msg, cap, "The CRL was not applied: %s", why);
    if (rc == 0) rc = revoc_crl_entries(crl, out, n);
    if (rc == ERR_TOO_LARGE) {
        snprintf(msg, cap, "The CRL lists more than %d certificates", REVOC_MAX_ENTRIES);
        rc = ERR_INVALID;
    }
    X509_CRL_free(crl);
    return rc;
}

/* The revoked entries of the body, in whichever of the accepted forms. */
static int entries_from_body(struct api_req *r, struct store_crl_entry **e, size_t *n, char *msg,
                             size_t cap)
{
    const char *ct = api_header(r, MHD_HTTP_HEADER_CONTENT_TYPE);
    bool multipart = ct && strncasecmp(ct, "multipart/", 10) == 0;
    const char *data = r->body;
    size_t len = r->body_len;
    if (multipart && api_body_file(r, &data, &len) < 0) {
        snprintf(msg, cap, "No file part");
        return ERR_MALFORMED;
    }
    if (data && is_x509_crl(multipart ? NULL : ct, data, len))
        return entries_from_crl(r, data, len, e, n, msg, cap);
    if (multipart) return entries_from_csv(data, len, e, n, msg, cap);
    json_t *j = api_body_json(r);
    if (!j) return ERR_CLOSED; /* answered */
    int rc = entries_from_json(j, e, n, msg, cap);
    json_decref(j);
    return rc;
}

int api_h_crl_put(struct api_req *r)
{
    char msg[200];
    struct store_crl_entry *e = NULL;
    size_t n = 0;
    int rc;
    GUARD(gate(r));
    rc = entries_from_body(r, &e, &n, msg, sizeof msg);
    if (rc == ERR_CLOSED) return 0;
    if (rc == ERR_MALFORMED) return api_reply_error(r, 400, msg);
    if (rc == ERR_INVALID) {
        rc = api_reply_error(r, 422, msg);
        goto out;
    }
    if (rc < 0) goto out;
    GUARD_GOTO(rc, store_crl_add(r->api->st, r->tenant, e, n), out);
    json_t *items = json_array();
    for (size_t i = 0; i < n; i++) {
        char when[40];
        GUARD_GOTO(rc, trust_crl_add(r->api->ti, r->tenant, e[i].serial), out_items);
        api_iso_time(e[i].revoked, when, sizeof when);
        json_array_append_new(items, json_pack("{s:s, s:s}", "serialNumberInHex", e[i].serial,
                                               "revocationDate", when));
    }
    if (r->api->cfg.on_crl_change) r->api->cfg.on_crl_change(r->api->cfg.hook_arg, r->tenant);
    rc = api_reply_json(r, 200, json_pack("{s:o}", "crls", items));
    items = NULL;
out_items:
    json_decref(items);
out:
    free(e);
    return rc;
}

struct crl_ctx {
    X509_CRL *crl;
    int rc;
};

static int add_revoked(void *arg, const char *tenant, const struct store_crl_entry *e)
{
    struct crl_ctx *cc = arg;
    BIGNUM *bn = NULL;
    X509_REVOKED *rv = X509_REVOKED_new();
    ASN1_TIME *t = ASN1_TIME_set(NULL, (time_t)e->revoked);
    ASN1_INTEGER *serial = NULL;
    int rc = ERR_NOMEM;
    if (!rv || !t || !BN_hex2bn(&bn, e->serial)) goto out;
    serial = BN_to_ASN1_INTEGER(bn, NULL);
    if (!serial || !X509_REVOKED_set_serialNumber(rv, serial) ||
        !X509_REVOKED_set_revocationDate(rv, t) || !X509_CRL_add0_revoked(cc->crl, rv))
        goto out;
    rv = NULL;
    rc = 0;
out:
    X509_REVOKED_free(rv);
    ASN1_TIME_free(t);
    ASN1_INTEGER_free(serial);
    BN_free(bn);
    return rc;
}

int api_h_crl_get(struct api_req *r)
{
    int rc = ERR_INTERNAL;
    unsigned char *der = NULL;
    char cn[STORE_TENANT_MAX + 32];
    GUARD(gate(r));
    X509_CRL *crl = X509_CRL_new();
    X509_NAME *name = X509_NAME_new();
    ASN1_TIME *now = ASN1_TIME_set(NULL, time(NULL));
    ASN1_TIME *next = ASN1_TIME_set(NULL, time(NULL) + 86400);
    if (!crl || !name || !now || !next) goto out;
    snprintf(cn, sizeof cn, "certmq CRL of tenant %s", r->tenant);
    if (!X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1,
                                    0) ||
        !X509_CRL_set_version(crl, X509_CRL_VERSION_2) || !X509_CRL_set_issuer_name(crl, name) ||
        !X509_CRL_set1_lastUpdate(crl, now) || !X509_CRL_set1_nextUpdate(crl, next))
        goto out;
    struct crl_ctx cc = {crl, 0};
    GUARD_GOTO(rc, store_crl_list(r->api->st, r->tenant, add_revoked, &cc), out);
    rc = ERR_INTERNAL;
    if (!X509_CRL_sort(crl) || X509_CRL_sign(crl, r->api->crl_key, EVP_sha256()) <= 0) goto out;
    int len = i2d_X509_CRL(crl, &der);
    if (len <= 0) goto out;
    char *copy = malloc((size_t)len);
    if (!copy) goto out;
    memcpy(copy, der, (size_t)len);
    rc = api_reply_raw(r, 200, "application/pkix-crl", copy, (size_t)len);
out:
    OPENSSL_free(der);
    ASN1_TIME_free(now);
    ASN1_TIME_free(next);
    X509_NAME_free(name);
    X509_CRL_free(crl);
    return rc;
}
