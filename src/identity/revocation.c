/* Revocation (see revocation.h): CRL parsing and verification against the
 * issuing CA, and the compact per-connection path serials that tenant CRL
 * changes and listener crlfile reloads are checked against. */
#include "identity/revocation.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "identity/trust.h"

#define PEM_CRL_BEGIN "-----BEGIN X509 CRL-----"

/* ---- path serials ---- */

static void serial_set(struct revoc_serial *s, X509 *x)
{
    const ASN1_INTEGER *sn = X509_get0_serialNumber(x);
    const unsigned char *d = ASN1_STRING_get0_data(sn);
    int len = ASN1_STRING_length(sn);
    memset(s, 0, sizeof *s);
    s->issuer_hash = (uint32_t)X509_NAME_hash_ex(X509_get_issuer_name(x), NULL, NULL, NULL);
    while (len > 0 && d[0] == 0) { /* the magnitude, as the normalized hex form */
        d++;
        len--;
    }
    if (len <= REVOC_SERIAL_MAX) {
        memcpy(s->b, d, (size_t)len);
        s->len = (uint8_t)(len ? len : 1); /* serial 0 keeps one zero octet */
    }
}

void revoc_path_set(struct revoc_path *p, X509 *const *path, int n)
{
    p->n = 0;
    for (int i = 0; i < n && i < REVOC_PATH_MAX; i++) serial_set(&p->s[p->n++], path[i]);
}

void revoc_path_from_chain(struct revoc_path *p, STACK_OF(X509) * chain)
{
    p->n = 0;
    int n = sk_X509_num(chain) - 1; /* the last one is the trust anchor */
    for (int i = 0; i < n && i < REVOC_PATH_MAX; i++)
        serial_set(&p->s[p->n++], sk_X509_value(chain, i));
}

/* Normalized hex (uppercase, no leading zeros) of a kept serial. */
static void serial_hex(const struct revoc_serial *s, char *out, size_t cap)
{
    static const char digits[] = "0123456789ABCDEF";
    char raw[2 * REVOC_SERIAL_MAX + 1];
    size_t k = 0;
    for (uint8_t i = 0; i < s->len; i++) {
        raw[k++] = digits[s->b[i] >> 4];
        raw[k++] = digits[s->b[i] & 15];
    }
    raw[k] = 0;
    if (trust_serial_normalize(raw, out, cap) < 0) out[0] = 0;
}

bool revoc_path_revoked_tenant_locked(const struct trust_index *ti, const char *tenant,
                                      const struct revoc_path *p)
{
    for (uint8_t i = 0; i < p->n; i++) {
        char hex[STORE_SERIAL_MAX];
        if (p->s[i].len == 0) return true;
        serial_hex(&p->s[i], hex, sizeof hex);
        if (hex[0] && trust_crl_revoked_locked(ti, tenant, hex)) return true;
    }
    return false;
}

/* True when one of the store's CRLs for s's issuer lists s. Call with the
 * store locked (lookups sort its objects). */
static bool listed_locked(X509_STORE *store, const struct revoc_serial *s, ASN1_INTEGER *sn)
{
    STACK_OF(X509_OBJECT) *objs = X509_STORE_get0_objects(store);
    for (int i = 0; i < sk_X509_OBJECT_num(objs); i++) {
        X509_CRL *crl = X509_OBJECT_get0_X509_CRL(sk_X509_OBJECT_value(objs, i));
        X509_REVOKED *rv = NULL;
        if (!crl || (uint32_t)X509_NAME_hash_ex(X509_CRL_get_issuer(crl), NULL, NULL, NULL) !=
                        s->issuer_hash)
            continue;
        if (X509_CRL_get0_by_serial(crl, &rv, sn) == 1) return true;
    }
    return false;
}

bool revoc_path_revoked_store(X509_STORE *store, const struct revoc_path *p)
{
    bool revoked = false;
    if (!store) return false;
    X509_STORE_lock(store);
    for (uint8_t i = 0; i < p->n && !revoked; i++) {
        if (p->s[i].len == 0) {
            revoked = true;
            break;
        }
        BIGNUM *bn = BN_bin2bn(p->s[i].b, p->s[i].len, NULL);
        ASN1_INTEGER *sn = bn ? BN_to_ASN1_INTEGER(bn, NULL) : NULL;
        revoked = sn && listed_locked(store, &p->s[i], sn);
        ASN1_INTEGER_free(sn);
        BN_free(bn);
    }
    X509_STORE_unlock(store);
    return revoked;
}

/* ---- CRLs ---- */

int revoc_crl_parse(const uint8_t *data, size_t len, X509_CRL **out)
{
    *out = NULL;
    ENSURE(data && len > 0 && len < INT_MAX, ERR_MALFORMED);
    const char *pem = memmem(data, len, PEM_CRL_BEGIN, strlen(PEM_CRL_BEGIN));
    if (!pem) {
        const unsigned char *p = data;
        X509_CRL *crl = d2i_X509_CRL(NULL, &p, (long)len);
        if (crl && p != data + len) { /* trailing bytes: not one DER CRL */
            X509_CRL_free(crl);
            crl = NULL;
        }
        ERR_clear_error();
        ENSURE(crl, ERR_MALFORMED);
        *out = crl;
        return 0;
    }
    size_t rest = len - (size_t)((const uint8_t *)pem - data) - 1;
    ENSURE(!memmem(pem + 1, rest, PEM_CRL_BEGIN, strlen(PEM_CRL_BEGIN)), ERR_MALFORMED);
    BIO *bio = BIO_new_mem_buf(data, (int)len);
    ENSURE(bio, ERR_NOMEM);
    *out = PEM_read_bio_X509_CRL(bio, NULL, NULL, NULL);
    BIO_free(bio);
    ERR_clear_error();
    return *out ? 0 : ERR_MALFORMED;
}

/* Critical extensions certmq applies: the issuing distribution point (its
 * scope only narrows what the CRL covers). A delta CRL or an indirect
 * entry (certificateIssuer) would be misread as a full list of this CA. */
static const char *unknown_critical(X509_CRL *crl)
{
    for (int i = 0; i < X509_CRL_get_ext_count(crl); i++) {
        X509_EXTENSION *ext = X509_CRL_get_ext(crl, i);
        if (!X509_EXTENSION_get_critical(ext)) continue;
        int nid = OBJ_obj2nid(X509_EXTENSION_get_object(ext));
        if (nid == NID_delta_crl) return "delta CRLs are not supported";
        if (nid != NID_issuing_distribution_point)
            return "the CRL has an unknown critical extension";
    }
    STACK_OF(X509_REVOKED) *rev = X509_CRL_get_REVOKED(crl);
    for (int i = 0; i < sk_X509_REVOKED_num(rev); i++) {
        X509_REVOKED *r = sk_X509_REVOKED_value(rev, i);
        for (int k = 0; k < X509_REVOKED_get_ext_count(r); k++)
            if (X509_EXTENSION_get_critical(X509_REVOKED_get_ext(r, k)))
                return "a CRL entry has a critical extension (indirect CRLs are not supported)";
    }
    return NULL;
}

int revoc_crl_verify(X509_CRL *crl, STACK_OF(X509) * cas, X509 **issuer, const char **why)
{
    *issuer = NULL;
    *why = unknown_critical(crl);
    if (*why) return ERR_INVALID;
    *why = "the CRL issuer is not a trusted certificate";
    for (int i = 0; i < sk_X509_num(cas); i++) {
        X509 *ca = sk_X509_value(cas, i);
        if (X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_subject_name(ca)) != 0) continue;
        if ((X509_get_extension_flags(ca) & EXFLAG_KUSAGE) &&
            !(X509_get_key_usage(ca) & KU_CRL_SIGN)) {
            *why = "the trusted certificate named as the CRL issuer lacks cRLSign";
            continue;
        }
        EVP_PKEY *key = X509_get0_pubkey(ca);
        if (!key || X509_CRL_verify(crl, key) != 1) {
            ERR_clear_error();
            *why = "the CRL signature does not verify with the key of its issuer";
            continue;
        }
        *issuer = ca;
        *why = NULL;
        return 0;
    }
    return ERR_INVALID;
}

static int64_t asn1_unix(const ASN1_TIME *t)
{
    struct tm tm;
    if (!t || ASN1_TIME_to_tm(t, &tm) != 1) return (int64_t)time(NULL);
    return (int64_t)timegm(&tm);
}

int revoc_crl_entries(X509_CRL *crl, struct store_crl_entry **out, size_t *n)
{
    STACK_OF(X509_REVOKED) *rev = X509_CRL_get_REVOKED(crl);
    int count = rev ? sk_X509_REVOKED_num(rev) : 0; /* no list: nothing revoked */
    *out = NULL;
    *n = 0;
    ENSURE(count <= REVOC_MAX_ENTRIES, ERR_TOO_LARGE);
    *out = calloc((size_t)(count > 0 ? count : 1), sizeof **out);
    ENSURE(*out, ERR_NOMEM);
    for (int i = 0; i < count; i++) {
        X509_REVOKED *r = sk_X509_REVOKED_value(rev, i);
        BIGNUM *bn = ASN1_INTEGER_to_BN(X509_REVOKED_get0_serialNumber(r), NULL);
        char *hex = bn ? BN_bn2hex(bn) : NULL;
        int rc = hex ? trust_serial_normalize(hex[0] == '-' ? hex + 1 : hex, (*out)[i].serial,
                                              sizeof(*out)[i].serial)
                     : ERR_NOMEM;
        OPENSSL_free(hex);
        BN_free(bn);
        if (rc < 0) {
            free(*out);
            *out = NULL;
            return rc;
        }
        (*out)[i].revoked = asn1_unix(X509_REVOKED_get0_revocationDate(r));
    }
    *n = (size_t)count;
    return 0;
}

/* Every CRL in a file: PEM blocks, or else one DER CRL. */
static int crlfile_read(const char *file, STACK_OF(X509_CRL) * crls, char *err, size_t n)
{
    BIO *bio = BIO_new_file(file, "rb");
    if (!bio) {
        snprintf(err, n, "cannot open CRL file %s", file);
        ERR_clear_error();
        return ERR_IO;
    }
    X509_CRL *crl;
    while ((crl = PEM_read_bio_X509_CRL(bio, NULL, NULL, NULL)) != NULL)
        if (!sk_X509_CRL_push(crls, crl)) {
            X509_CRL_free(crl);
            BIO_free(bio);
            return ERR_NOMEM;
        }
    ERR_clear_error();
    if (sk_X509_CRL_num(crls) == 0 && BIO_reset(bio) == 0 &&
        (crl = d2i_X509_CRL_bio(bio, NULL)) != NULL && !sk_X509_CRL_push(crls, crl))
        X509_CRL_free(crl);
    BIO_free(bio);
    ERR_clear_error();
    if (sk_X509_CRL_num(crls) > 0) return 0;
    snprintf(err, n, "CRL file %s holds no CRL (PEM or DER expected)", file);
    return ERR_MALFORMED;
}

int revoc_crlfile_load(X509_STORE *store, const char *file, char *err, size_t n)
{
    STACK_OF(X509_CRL) *crls = sk_X509_CRL_new_null();
    STACK_OF(X509) *cas = X509_STORE_get1_all_certs(store);
    int rc = ERR_NOMEM;
    if (!crls || !cas) goto out;
    GUARD_GOTO(rc, crlfile_read(file, crls, err, n), out);
    for (int i = 0; i < sk_X509_CRL_num(crls); i++) {
        X509 *issuer;
        const char *why;
        if (revoc_crl_verify(sk_X509_CRL_value(crls, i), cas, &issuer, &why) < 0) {
            snprintf(err, n, "CRL file %s, CRL %d: %s", file, i + 1, why);
            rc = ERR_INVALID;
            goto out;
        }
    }
    rc = 0;
    for (int i = 0; i < sk_X509_CRL_num(crls) && rc == 0; i++)
        if (X509_STORE_add_crl(store, sk_X509_CRL_value(crls, i)) != 1) rc = ERR_NOMEM;
out:
    ERR_clear_error();
    sk_X509_CRL_pop_free(crls, X509_CRL_free);
    sk_X509_pop_free(cas, X509_free);
    return rc;
}
