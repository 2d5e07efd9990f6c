/* Keystores and truststores: the device PKCS#12 keystore (one key entry
 * with its chain) and `pki truststore`, a PEM bundle or a PKCS#12 whose
 * certificate bags carry Java's trusted-key-usage attribute, so keytool
 * lists them as trustedCertEntry and JSSE loads the file as a trust store. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/err.h>
#include <openssl/pkcs12.h>

#include "pki/pki_internal.h"

/* Oracle's attribute on a certificate bag marking it trusted for a purpose;
 * the value anyExtendedKeyUsage means trusted for everything. */
#define JAVA_TRUSTED_KEY_USAGE "2.16.840.1.113894.746875.1.1"
#define ANY_EXTENDED_KEY_USAGE "2.5.29.37.0"

static int p12_der(PKCS12 *p12, char **out, size_t *len)
{
    unsigned char *der = NULL;
    int n = i2d_PKCS12(p12, &der);
    if (n <= 0) return ERR_TLS;
    *out = malloc((size_t)n);
    if (!*out) {
        OPENSSL_free(der);
        return ERR_NOMEM;
    }
    memcpy(*out, der, (size_t)n);
    *len = (size_t)n;
    OPENSSL_free(der);
    return 0;
}

/* OpenSSL 3's defaults: AES-256-CBC with PBKDF2 for key and certificates,
 * an HMAC-SHA256 MAC; Java 11.0.12+ and 17 read these. */
int pki_p12_keystore(EVP_PKEY *key, X509 *cert, STACK_OF(X509) * cas, const char *alias,
                     const char *pass, char **out, size_t *len)
{
    PKCS12 *p12 = PKCS12_create(pass, alias, key, cert, cas, 0, 0, 0, 0, 0);
    if (!p12) return ERR_TLS;
    int rc = p12_der(p12, out, len);
    PKCS12_free(p12);
    return rc;
}

/* A keytool-friendly alias from the certificate's CN: lower case, unique. */
static void trust_alias(X509 *x, const char *given, int idx, char *out, size_t cap)
{
    char cn[128];
    if (given) {
        if (idx == 0)
            snprintf(out, cap, "%s", given);
        else
            snprintf(out, cap, "%s-%d", given, idx + 1);
        return;
    }
    pki_name_cn(X509_get_subject_name(x), cn, sizeof cn);
    if (!cn[0]) snprintf(cn, sizeof cn, "certificate");
    for (char *p = cn; *p; p++) *p = (char)tolower((unsigned char)*p);
    snprintf(out, cap, "%s", cn);
}

static int trusted_bag(STACK_OF(PKCS12_SAFEBAG) * *bags, X509 *x, const char *alias)
{
    int rc = ERR_TLS;
    ASN1_OBJECT *any = OBJ_txt2obj(ANY_EXTENDED_KEY_USAGE, 1);
    PKCS12_SAFEBAG *bag = PKCS12_add_cert(bags, x);
    if (!any || !bag) goto out;
    /* len -1 with V_ASN1_OBJECT: the value is the ASN1_OBJECT itself. */
    if (PKCS12_add1_attr_by_txt(bag, JAVA_TRUSTED_KEY_USAGE, V_ASN1_OBJECT,
                                (const unsigned char *)any, -1) != 1)
        goto out;
    if (PKCS12_add_friendlyname_utf8(bag, alias, -1) != 1) goto out;
    rc = 0;
out:
    ASN1_OBJECT_free(any);
    return rc;
}

static bool alias_taken(char (*aliases)[160], int n, const char *a)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(aliases[i], a)) return true;
    return false;
}

static int truststore_p12(STACK_OF(X509) * certs, const char *alias, const char *pass, char **out,
                          size_t *len)
{
    STACK_OF(PKCS12_SAFEBAG) *bags = NULL;
    STACK_OF(PKCS7) *safes = NULL;
    PKCS7 *p7 = NULL;
    PKCS12 *p12 = NULL;
    char aliases[64][160];
    int rc = ERR_TLS, n = sk_X509_num(certs);
    if (n > 64) {
        pki_err("a truststore holds at most 64 certificates");
        return ERR_LIMIT;
    }
    for (int i = 0; i < n; i++) {
        X509 *x = sk_X509_value(certs, i);
        char base[140];
        trust_alias(x, alias, i, base, sizeof base);
        snprintf(aliases[i], sizeof aliases[i], "%s", base);
        for (int k = 2; alias_taken(aliases, i, aliases[i]); k++)
            snprintf(aliases[i], sizeof aliases[i], "%s-%d", base, k);
        GUARD_GOTO(rc, trusted_bag(&bags, x, aliases[i]), out);
    }
    rc = ERR_TLS;
    p7 = PKCS12_pack_p7encdata(NID_aes_256_cbc, pass, -1, NULL, 0, PKCS12_DEFAULT_ITER, bags);
    safes = sk_PKCS7_new_null();
    if (!p7 || !safes || !sk_PKCS7_push(safes, p7)) goto out;
    p7 = NULL;
    p12 = PKCS12_add_safes(safes, 0);
    if (!p12 || !PKCS12_set_mac(p12, pass, -1, NULL, 0, PKCS12_DEFAULT_ITER, EVP_sha256()))
        goto out;
    rc = p12_der(p12, out, len);
out:
    PKCS12_free(p12);
    PKCS7_free(p7);
    sk_PKCS7_pop_free(safes, PKCS7_free);
    sk_PKCS12_SAFEBAG_pop_free(bags, PKCS12_SAFEBAG_free);
    return rc;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcasecmp(s + n - m, suffix);
}

static int truststore_pem(STACK_OF(X509) * certs, char **out, size_t *len)
{
    char *all = NULL;
    size_t total = 0;
    for (int i = 0; i < sk_X509_num(certs); i++) {
        char *p = NULL;
        size_t n = 0;
        int rc = pki_cert_pem(sk_X509_value(certs, i), &p, &n);
        char *grown = rc == 0 ? realloc(all, total + n + 1) : NULL;
        if (!grown) {
            free(p);
            free(all);
            return rc < 0 ? rc : ERR_NOMEM;
        }
        all = grown;
        memcpy(all + total, p, n + 1);
        total += n;
        free(p);
    }
    *out = all;
    *len = total;
    return 0;
}

int pki_cmd_truststore(struct pki_args *a)
{
    STACK_OF(X509) *certs = sk_X509_new_null();
    char *data = NULL;
    size_t len = 0;
    int rc = 0;
    bool p12 =
        ends_with(a->out, ".p12") || ends_with(a->out, ".pfx") || ends_with(a->out, ".pkcs12");
    const char *pass = p12 ? pki_p12_pass(a) : NULL;
    if (!certs) return PKI_EXIT_FAIL;
    if (p12 && !pass) {
        pki_err("a PKCS#12 truststore needs a password: give --p12-pass PASS or set "
                "CERTMQ_PKI_P12_PASS (there is no default password)");
        sk_X509_free(certs);
        return PKI_EXIT_USAGE;
    }
    for (int i = 0; i < a->ncerts; i++) {
        STACK_OF(X509) *one = NULL;
        GUARD_GOTO(rc, pki_certs_load(a->certs[i], &one), out);
        while (sk_X509_num(one) > 0) {
            X509 *x = sk_X509_shift(one);
            bool dup = false;
            for (int k = 0; k < sk_X509_num(certs) && !dup; k++)
                dup = X509_cmp(sk_X509_value(certs, k), x) == 0;
            if (dup || !sk_X509_push(certs, x)) X509_free(x);
        }
        sk_X509_free(one);
    }
    if (p12)
        GUARD_GOTO(rc, truststore_p12(certs, a->alias, pass, &data, &len), out);
    else
        GUARD_GOTO(rc, truststore_pem(certs, &data, &len), out);
    GUARD_GOTO(rc, pki_write_file(a->out, data, len, 0644, a->force), out);
    if (a->json) {
        json_t *o = json_pack("{s:s, s:s, s:i}", "out", a->out, "format", p12 ? "pkcs12" : "pem",
                              "certificates", (json_int_t)sk_X509_num(certs));
        if (o) pki_json_print(o);
    } else {
        printf("truststore %s (%s) with %d trusted certificate%s\n", a->out,
               p12 ? "PKCS#12, entries are trustedCertEntry for Java" : "PEM bundle",
               sk_X509_num(certs), sk_X509_num(certs) == 1 ? "" : "s");
        for (int i = 0; i < sk_X509_num(certs); i++) {
            char cn[128], sha1[41];
            pki_name_cn(X509_get_subject_name(sk_X509_value(certs, i)), cn, sizeof cn);
            pki_fingerprint(sk_X509_value(certs, i), EVP_sha1(), sha1, sizeof sha1);
            printf("  %s  %s\n", sha1, cn);
        }
    }
out:
    if (rc < 0 && rc != ERR_EXISTS && rc != ERR_IO && rc != ERR_NOT_FOUND && rc != ERR_INVALID)
        pki_err("cannot build the truststore %s", a->out);
    free(data);
    sk_X509_pop_free(certs, X509_free);
    return rc < 0 ? PKI_EXIT_FAIL : PKI_EXIT_OK;
}
