/* Trusted-certificate text formats: PEM as operators paste it (with or
 * without line breaks or BEGIN/END lines), the upload object and its checks,
 * and the JSON object the API returns. The parsing half is pure and fuzzed
 * (fuzz/pem_upload.c). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include "api/handlers.h"
#include "ca/tenantca.h"
#include "core/text.h"
#include "identity/trust.h"

#define PEM_BEGIN "-----BEGIN CERTIFICATE-----"
#define PEM_END   "-----END CERTIFICATE-----"
#define MAX_CHAIN 16
#define MAX_DER   (64 * 1024)

/* Decodes the base64 in [p, p+len), skipping whitespace and literal "\n"
 * sequences (as left by copying a JSON-escaped PEM), into a DER certificate. */
static int b64_to_x509(const char *p, size_t len, X509 **out)
{
    int rc = ERR_INVALID;
    char *clean = malloc(len + 4);
    unsigned char *der = NULL;
    size_t n = 0;
    if (!clean) return ERR_NOMEM;
    for (size_t i = 0; i < len; i++) {
        char c = p[i];
        if (c == '\\' && i + 1 < len && (p[i + 1] == 'n' || p[i + 1] == 'r')) {
            i++;
            continue;
        }
        if (isspace((unsigned char)c)) continue;
        if (!isalnum((unsigned char)c) && c != '+' && c != '/' && c != '=') goto out;
        clean[n++] = c;
    }
    if (n == 0 || n % 4 != 0 || n / 4 * 3 > MAX_DER) goto out;
    der = malloc(n / 4 * 3 + 1);
    if (!der) {
        rc = ERR_NOMEM;
        goto out;
    }
    int dl = EVP_DecodeBlock(der, (unsigned char *)clean, (int)n);
    if (dl < 0) goto out;
    if (clean[n - 1] == '=') dl--;
    if (clean[n - 2] == '=') dl--;
    const unsigned char *q = der;
    X509 *x = d2i_X509(NULL, &q, dl);
    if (!x) goto out;
    if (q != der + dl) {
        X509_free(x); /* trailing bytes after the certificate */
        goto out;
    }
    *out = x;
    rc = 0;
out:
    free(der);
    free(clean);
    return rc;
}

int api_pem_chain(const char *text, size_t len, STACK_OF(X509) * *out)
{
    int rc = ERR_INVALID;
    STACK_OF(X509) *sk = sk_X509_new_null();
    if (!sk) return ERR_NOMEM;
    const char *p = text, *end = text + len;
    const char *b = memmem(p, len, PEM_BEGIN, strlen(PEM_BEGIN));
    if (!b) {
        X509 *x = NULL;
        GUARD_GOTO(rc, b64_to_x509(text, len, &x), out);
        if (!sk_X509_push(sk, x)) {
            X509_free(x);
            rc = ERR_NOMEM;
            goto out;
        }
    }
    while (b) {
        const char *body = b + strlen(PEM_BEGIN);
        const char *e = memmem(body, (size_t)(end - body), PEM_END, strlen(PEM_END));
        if (!e || sk_X509_num(sk) == MAX_CHAIN) {
            rc = ERR_INVALID;
            goto out;
        }
        X509 *x = NULL;
        GUARD_GOTO(rc, b64_to_x509(body, (size_t)(e - body), &x), out);
        if (!sk_X509_push(sk, x)) {
            X509_free(x);
            rc = ERR_NOMEM;
            goto out;
        }
        p = e + strlen(PEM_END);
        b = memmem(p, (size_t)(end - p), PEM_BEGIN, strlen(PEM_BEGIN));
    }
    *out = sk;
    sk = NULL;
    rc = 0;
out:
    sk_X509_pop_free(sk, X509_free);
    return rc;
}

int api_pem_to_x509(const char *text, size_t len, X509 **out)
{
    STACK_OF(X509) *sk = NULL;
    GUARD(api_pem_chain(text, len, &sk));
    *out = sk_X509_shift(sk);
    sk_X509_pop_free(sk, X509_free);
    return *out ? 0 : ERR_INVALID;
}

/* Upload rules beyond parsing; msg names the failed one. */
static int check_ca(X509 *x, time_t now, char *msg, size_t cap)
{
    if (X509_get_version(x) != X509_VERSION_3) {
        snprintf(msg, cap, "Certificate must be an X.509 version 3 certificate");
        return ERR_INVALID;
    }
    if ((X509_get_extension_flags(x) & EXFLAG_CA) == 0) {
        snprintf(msg, cap, "Certificate must have basicConstraints CA:true");
        return ERR_INVALID;
    }
    if (X509_cmp_time(X509_get0_notAfter(x), &now) <= 0) {
        snprintf(msg, cap, "Certificate has expired");
        return ERR_INVALID;
    }
    EVP_PKEY *pk = X509_get0_pubkey(x);
    int id = pk ? EVP_PKEY_get_base_id(pk) : 0, bits = pk ? EVP_PKEY_get_bits(pk) : 0;
    if ((id == EVP_PKEY_RSA || id == EVP_PKEY_RSA_PSS || id == EVP_PKEY_DSA) && bits < 2048) {
        snprintf(msg, cap, "Key too weak: RSA keys must have at least 2048 bits (this has %d)",
                 bits);
        return ERR_INVALID;
    }
    if (id == EVP_PKEY_EC && bits < 256) {
        snprintf(msg, cap, "Key too weak: EC keys must have at least 256 bits (this has %d)", bits);
        return ERR_INVALID;
    }
    if (!pk) {
        snprintf(msg, cap, "Certificate public key cannot be read");
        return ERR_INVALID;
    }
    return 0;
}

/* autoRegistrationEnabled as a boolean or the string "true"/"false". */
static int json_flag(json_t *v, bool *out)
{
    if (!v || json_is_null(v)) return 0;
    if (json_is_boolean(v)) {
        *out = json_is_true(v);
        return 0;
    }
    if (json_is_string(v)) {
        if (strcasecmp(json_string_value(v), "true") == 0)
            *out = true;
        else if (strcasecmp(json_string_value(v), "false") == 0)
            *out = false;
        else
            return ERR_INVALID;
        return 0;
    }
    return ERR_INVALID;
}

/* Reads status/name/autoRegistrationEnabled from j into u (fields absent
 * stay as they are). Shared with the update handler. */
static int read_fields(json_t *j, struct api_cert_upload *u, char *msg, size_t cap)
{
    json_t *status = json_object_get(j, "status"), *name = json_object_get(j, "name");
    if (status && !json_is_null(status)) {
        const char *s = json_is_string(status) ? json_string_value(status) : "";
        if (strcasecmp(s, "ENABLED") == 0)
            u->enabled = true;
        else if (strcasecmp(s, "DISABLED") == 0)
            u->enabled = false;
        else {
            snprintf(msg, cap, "status must be ENABLED or DISABLED");
            return ERR_INVALID;
        }
    }
    if (name && !json_is_null(name)) {
        if (!json_is_string(name) || strlen(json_string_value(name)) >= sizeof u->name ||
            !text_printable(json_string_value(name))) {
            snprintf(msg, cap,
                     "name must be a string of at most %zu bytes without control characters",
                     sizeof u->name - 1);
            return ERR_INVALID;
        }
        snprintf(u->name, sizeof u->name, "%s", json_string_value(name));
    }
    if (json_flag(json_object_get(j, "autoRegistrationEnabled"), &u->auto_registration) < 0) {
        snprintf(msg, cap, "autoRegistrationEnabled must be true or false");
        return ERR_INVALID;
    }
    return 0;
}

/* The single certificate of certInPemFormat. Several are refused rather
 * than the first kept: the rest would be dropped without a word. */
static int one_certificate(const char *text, size_t len, X509 **out, char *msg, size_t cap)
{
    STACK_OF(X509) *sk = NULL;
    if (api_pem_chain(text, len, &sk) < 0) {
        snprintf(msg, cap, "certInPemFormat is not a PEM encoded X.509 certificate");
        return ERR_INVALID;
    }
    int n = sk_X509_num(sk), rc = ERR_INVALID;
    if (n == 1) {
        *out = sk_X509_shift(sk);
        rc = 0;
    } else {
        snprintf(msg, cap,
                 "certInPemFormat holds %d certificates; upload one per request, or several "
                 "with POST .../trusted-certificates/bulk",
                 n);
    }
    sk_X509_pop_free(sk, X509_free);
    return rc;
}

static int parse_upload_object(json_t *j, time_t now, struct api_cert_upload *out, char *msg,
                               size_t cap)
{
    memset(out, 0, sizeof *out);
    out->enabled = true;
    if (!json_is_object(j)) {
        snprintf(msg, cap, "The request body is not a JSON object");
        return ERR_MALFORMED;
    }
    GUARD(read_fields(j, out, msg, cap));
    json_t *pem = json_object_get(j, "certInPemFormat");
    if (!json_is_string(pem)) {
        snprintf(msg, cap, "certInPemFormat is required");
        return ERR_INVALID;
    }
    GUARD(one_certificate(json_string_value(pem), json_string_length(pem), &out->cert, msg, cap));
    int rc = check_ca(out->cert, now, msg, cap);
    if (rc < 0) api_cert_upload_free(out);
    return rc;
}

int api_parse_cert_upload(const char *json, size_t len, time_t now, struct api_cert_upload *out,
                          char *msg, size_t msg_cap)
{
    json_error_t e;
    json_t *j = json_loadb(json, len, 0, &e);
    memset(out, 0, sizeof *out);
    if (!j) {
        snprintf(msg, msg_cap, "The request body is not valid JSON");
        return ERR_MALFORMED;
    }
    int rc = parse_upload_object(j, now, out, msg, msg_cap);
    json_decref(j);
    return rc;
}

void api_cert_upload_free(struct api_cert_upload *u)
{
    X509_free(u->cert);
    u->cert = NULL;
}

/* ---- the returned object ---- */

static char *name_text(const X509_NAME *n)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *out = NULL;
    if (!b) return NULL;
    if (X509_NAME_print_ex(b, n, 0, XN_FLAG_RFC2253) >= 0) {
        char *p = NULL;
        long len = BIO_get_mem_data(b, &p);
        out = strndup(p ? p : "", (size_t)(len > 0 ? len : 0));
    }
    BIO_free(b);
    return out;
}

static void asn1_iso(const ASN1_TIME *t, char *out, size_t cap)
{
    struct tm tm;
    if (ASN1_TIME_to_tm(t, &tm) != 1) {
        snprintf(out, cap, "%s", "");
        return;
    }
    strftime(out, cap, "%Y-%m-%dT%H:%M:%S.000Z", &tm);
}

static const char *algorithm_name(X509 *x)
{
    EVP_PKEY *pk = X509_get0_pubkey(x);
    switch (pk ? EVP_PKEY_get_base_id(pk) : 0) {
    case EVP_PKEY_RSA: return "RSA";
    case EVP_PKEY_RSA_PSS: return "RSASSA-PSS";
    case EVP_PKEY_EC: return "EC";
    case EVP_PKEY_ED25519: return "Ed25519";
    case EVP_PKEY_ED448: return "Ed448";
    case EVP_PKEY_DSA: return "DSA";
    default: return "unknown";
    }
}

static json_t *cert_b64(X509 *x)
{
    unsigned char *der = NULL;
    int len = i2d_X509(x, &der);
    if (len <= 0) return json_string("");
    char *b64 = malloc((size_t)len / 3 * 4 + 8);
    json_t *j = NULL;
    if (b64) {
        EVP_EncodeBlock((unsigned char *)b64, der, len);
        j = json_string(b64);
    }
    free(b64);
    OPENSSL_free(der);
    return j ? j : json_string("");
}

json_t *api_cert_json(const struct api_req *r, const struct store_cert *c, X509 *x)
{
    char nb[40], na[40], until[40];
    char *issuer = name_text(X509_get_issuer_name(x));
    char *subject = name_text(X509_get_subject_name(x));
    char *self =
        api_url(r, "/tenant/tenants/%s/trusted-certificates/%s", c->tenant, c->fingerprint);
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    char *serial = bn ? BN_bn2dec(bn) : NULL;
    asn1_iso(X509_get0_notBefore(x), nb, sizeof nb);
    asn1_iso(X509_get0_notAfter(x), na, sizeof na);
    json_t *j = json_object();
    json_object_set_new(j, "name", json_string(c->name));
    json_object_set_new(j, "status", json_string(c->enabled ? "ENABLED" : "DISABLED"));
    json_object_set_new(j, "autoRegistrationEnabled", json_boolean(c->auto_registration));
    json_object_set_new(j, "certInPemFormat", cert_b64(x));
    json_object_set_new(j, "fingerprint", json_string(c->fingerprint));
    json_object_set_new(j, "algorithmName", json_string(algorithm_name(x)));
    json_object_set_new(j, "issuer", json_string(issuer ? issuer : ""));
    json_object_set_new(j, "subject", json_string(subject ? subject : ""));
    json_object_set_new(j, "notBefore", json_string(nb));
    json_object_set_new(j, "notAfter", json_string(na));
    json_object_set_new(j, "serialNumber", json_string(serial ? serial : ""));
    json_object_set_new(j, "version", json_integer(X509_get_version(x) + 1));
    json_object_set_new(j, "self", json_string(self ? self : ""));
    json_object_set_new(j, "tenantCertificateAuthority",
                        json_boolean(tenant_ca_is_own(r->api->cfg.ca, c->tenant, x)));
    json_object_set_new(j, "proofOfPossessionValid", json_boolean(c->pop_valid));
    /* Another tenant trusted an overlapping certificate first: this one takes
     * part in tenant choice only once its proof of possession is valid. */
    bool junior = false;
    (void)trust_overlaps(r->api->ti, c->tenant, c->fingerprint, NULL, 0, &junior);
    json_object_set_new(j, "proofOfPossessionRequired", json_boolean(junior && !c->pop_valid));
    json_object_set_new(j, "proofOfPossessionUnsignedVerificationCode",
                        c->pop_code[0] ? json_string(c->pop_code) : json_null());
    if (c->pop_until) {
        api_iso_time(c->pop_until, until, sizeof until);
        json_object_set_new(j, "proofOfPossessionVerificationCodeUsableUntil", json_string(until));
    } else {
        json_object_set_new(j, "proofOfPossessionVerificationCodeUsableUntil", json_null());
    }
    OPENSSL_free(serial);
    BN_free(bn);
    free(issuer);
    free(subject);
    free(self);
    return j;
}

int api_cert_upload_from_json(json_t *j, time_t now, struct api_cert_upload *out, char *msg,
                              size_t cap)
{
    return parse_upload_object(j, now, out, msg, cap);
}

int api_cert_fields_from_json(json_t *j, struct api_cert_upload *u, char *msg, size_t cap)
{
    return read_fields(j, u, msg, cap);
}
