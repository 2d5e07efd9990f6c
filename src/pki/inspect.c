/* `pki inspect FILE`: a short, readable summary of a certificate, chain,
 * CSR, CRL, private key or PKCS#12 keystore (PEM or DER). Every item is
 * described once as a JSON object; text output renders those objects, so
 * --json and the human view never disagree. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/x509v3.h>

#include "pki/pki_internal.h"

#define JAVA_TRUSTED_KEY_USAGE "2.16.840.1.113894.746875.1.1"

static json_t *name_json(const X509_NAME *n)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *mem = NULL;
    json_t *s;
    if (!bio) return json_string("?");
    X509_NAME_print_ex(bio, n, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
    long len = BIO_get_mem_data(bio, &mem);
    s = json_stringn(mem ? mem : "", (size_t)len);
    BIO_free(bio);
    return s ? s : json_string("?");
}

static json_t *time_json(const ASN1_TIME *t)
{
    char buf[32];
    pki_time_iso(t, buf, sizeof buf);
    return json_string(buf);
}

static json_t *serial_json(const ASN1_INTEGER *i)
{
    char hex[96] = "?";
    BIGNUM *bn = ASN1_INTEGER_to_BN(i, NULL);
    if (bn) ignore_result(pki_serial_hex(bn, hex, sizeof hex));
    BN_free(bn);
    return json_string(hex);
}

static json_t *key_usage_json(X509 *x)
{
    static const struct {
        uint32_t bit;
        const char *name;
    } ku[] = {{KU_DIGITAL_SIGNATURE, "digitalSignature"},
              {KU_NON_REPUDIATION, "nonRepudiation"},
              {KU_KEY_ENCIPHERMENT, "keyEncipherment"},
              {KU_DATA_ENCIPHERMENT, "dataEncipherment"},
              {KU_KEY_AGREEMENT, "keyAgreement"},
              {KU_KEY_CERT_SIGN, "keyCertSign"},
              {KU_CRL_SIGN, "cRLSign"},
              {KU_ENCIPHER_ONLY, "encipherOnly"},
              {KU_DECIPHER_ONLY, "decipherOnly"}};
    json_t *a = json_array();
    uint32_t v = X509_get_key_usage(x);
    for (size_t i = 0; a && i < sizeof ku / sizeof ku[0]; i++)
        if (v & ku[i].bit) json_array_append_new(a, json_string(ku[i].name));
    return a;
}

static json_t *eku_json(X509 *x)
{
    EXTENDED_KEY_USAGE *eku = X509_get_ext_d2i(x, NID_ext_key_usage, NULL, NULL);
    json_t *a = json_array();
    for (int i = 0; a && i < sk_ASN1_OBJECT_num(eku); i++) {
        char buf[80];
        ASN1_OBJECT *o = sk_ASN1_OBJECT_value(eku, i);
        int nid = OBJ_obj2nid(o);
        if (nid != NID_undef)
            snprintf(buf, sizeof buf, "%s", OBJ_nid2sn(nid));
        else
            OBJ_obj2txt(buf, sizeof buf, o, 1);
        json_array_append_new(a, json_string(buf));
    }
    EXTENDED_KEY_USAGE_free(eku);
    return a;
}

static json_t *san_json(const GENERAL_NAMES *gens)
{
    json_t *a = json_array();
    for (int i = 0; a && i < sk_GENERAL_NAME_num(gens); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        char buf[300] = "", ip[INET6_ADDRSTRLEN] = "?";
        if (g->type == GEN_DNS || g->type == GEN_EMAIL || g->type == GEN_URI) {
            const ASN1_IA5STRING *s = g->d.ia5;
            snprintf(buf, sizeof buf, "%s:%.*s",
                     g->type == GEN_DNS     ? "DNS"
                     : g->type == GEN_EMAIL ? "email"
                                            : "URI",
                     ASN1_STRING_length(s), (const char *)ASN1_STRING_get0_data(s));
        } else if (g->type == GEN_IPADD) {
            int len = ASN1_STRING_length(g->d.ip);
            const unsigned char *p = ASN1_STRING_get0_data(g->d.ip);
            if (len == 4 || len == 16) inet_ntop(len == 4 ? AF_INET : AF_INET6, p, ip, sizeof ip);
            snprintf(buf, sizeof buf, "IP:%s", ip);
        } else {
            snprintf(buf, sizeof buf, "other name (type %d)", g->type);
        }
        json_array_append_new(a, json_string(buf));
    }
    return a;
}

static json_t *cert_json(X509 *x)
{
    char buf[160];
    json_t *o = json_object();
    if (!o) return NULL;
    json_object_set_new(o, "type", json_string("certificate"));
    json_object_set_new(o, "subject", name_json(X509_get_subject_name(x)));
    json_object_set_new(o, "issuer", name_json(X509_get_issuer_name(x)));
    json_object_set_new(o, "serial", serial_json(X509_get0_serialNumber(x)));
    json_object_set_new(o, "not_before", time_json(X509_get0_notBefore(x)));
    json_object_set_new(o, "not_after", time_json(X509_get0_notAfter(x)));
    const char *status = "valid now";
    if (X509_cmp_current_time(X509_get0_notBefore(x)) > 0) status = "not yet valid";
    if (X509_cmp_current_time(X509_get0_notAfter(x)) < 0) status = "EXPIRED";
    json_object_set_new(o, "status", json_string(status));
    EVP_PKEY *pk = X509_get0_pubkey(x);
    if (pk) {
        pki_key_describe(pk, buf, sizeof buf);
        json_object_set_new(o, "key", json_string(buf));
    }
    json_object_set_new(o, "signature", json_string(OBJ_nid2ln(X509_get_signature_nid(x))));
    json_object_set_new(o, "version", json_integer(X509_get_version(x) + 1));
    uint32_t flags = X509_get_extension_flags(x);
    json_object_set_new(o, "ca", json_boolean(flags & EXFLAG_CA));
    if ((flags & EXFLAG_CA) && X509_get_pathlen(x) >= 0)
        json_object_set_new(o, "pathlen", json_integer(X509_get_pathlen(x)));
    if (flags & EXFLAG_KUSAGE) json_object_set_new(o, "key_usage", key_usage_json(x));
    if (flags & EXFLAG_XKUSAGE) json_object_set_new(o, "extended_key_usage", eku_json(x));
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    if (gens) json_object_set_new(o, "subject_alt_names", san_json(gens));
    GENERAL_NAMES_free(gens);
    json_object_set_new(o, "self_signed", json_boolean(flags & EXFLAG_SS));
    pki_fingerprint(x, EVP_sha1(), buf, sizeof buf);
    json_object_set_new(o, "sha1", json_string(buf));
    pki_fingerprint(x, EVP_sha256(), buf, sizeof buf);
    json_object_set_new(o, "sha256", json_string(buf));
    return o;
}

static json_t *crl_json(X509_CRL *crl)
{
    json_t *o = json_object(), *rev = json_array();
    if (!o || !rev) {
        json_decref(o);
        json_decref(rev);
        return NULL;
    }
    json_object_set_new(o, "type", json_string("CRL"));
    json_object_set_new(o, "issuer", name_json(X509_CRL_get_issuer(crl)));
    json_object_set_new(o, "version", json_integer(X509_CRL_get_version(crl) + 1));
    json_object_set_new(o, "last_update", time_json(X509_CRL_get0_lastUpdate(crl)));
    json_object_set_new(o, "next_update", time_json(X509_CRL_get0_nextUpdate(crl)));
    ASN1_INTEGER *num = X509_CRL_get_ext_d2i(crl, NID_crl_number, NULL, NULL);
    if (num) json_object_set_new(o, "crl_number", serial_json(num));
    ASN1_INTEGER_free(num);
    AUTHORITY_KEYID *aki = X509_CRL_get_ext_d2i(crl, NID_authority_key_identifier, NULL, NULL);
    json_object_set_new(o, "authority_key_id", json_boolean(aki && aki->keyid));
    AUTHORITY_KEYID_free(aki);
    STACK_OF(X509_REVOKED) *rs = X509_CRL_get_REVOKED(crl);
    for (int i = 0; i < sk_X509_REVOKED_num(rs); i++) {
        X509_REVOKED *r = sk_X509_REVOKED_value(rs, i);
        ASN1_ENUMERATED *why = X509_REVOKED_get_ext_d2i(r, NID_crl_reason, NULL, NULL);
        char date[32];
        pki_time_iso(X509_REVOKED_get0_revocationDate(r), date, sizeof date);
        json_t *e = json_object();
        json_object_set_new(e, "serial", serial_json(X509_REVOKED_get0_serialNumber(r)));
        json_object_set_new(e, "date", json_string(date));
        json_object_set_new(e, "reason",
                            json_string(pki_reason_name(why ? (int)ASN1_ENUMERATED_get(why) : 0)));
        ASN1_ENUMERATED_free(why);
        json_array_append_new(rev, e);
    }
    json_object_set_new(o, "revoked", rev);
    json_object_set_new(o, "signature", json_string(OBJ_nid2ln(X509_CRL_get_signature_nid(crl))));
    return o;
}

static json_t *req_json(X509_REQ *req)
{
    char buf[64];
    json_t *o = json_object();
    if (!o) return NULL;
    json_object_set_new(o, "type", json_string("certificate request"));
    json_object_set_new(o, "subject", name_json(X509_REQ_get_subject_name(req)));
    EVP_PKEY *pk = X509_REQ_get0_pubkey(req);
    if (pk) {
        pki_key_describe(pk, buf, sizeof buf);
        json_object_set_new(o, "key", json_string(buf));
    }
    json_object_set_new(o, "signature_valid", json_boolean(pk && X509_REQ_verify(req, pk) == 1));
    STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(req);
    for (int i = 0; i < sk_X509_EXTENSION_num(exts); i++) {
        X509_EXTENSION *ext = sk_X509_EXTENSION_value(exts, i);
        if (OBJ_obj2nid(X509_EXTENSION_get_object(ext)) == NID_subject_alt_name) {
            GENERAL_NAMES *g = X509V3_EXT_d2i(ext);
            if (g) json_object_set_new(o, "subject_alt_names", san_json(g));
            GENERAL_NAMES_free(g);
        }
    }
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    ERR_clear_error();
    return o;
}

static json_t *key_json(const char *pem_name, const unsigned char *der, long len)
{
    json_t *o = json_pack("{s:s}", "type", "private key");
    if (!o) return NULL;
    if (strstr(pem_name, "ENCRYPTED")) {
        json_object_set_new(o, "encrypted", json_true());
        return o;
    }
    const unsigned char *p = der;
    EVP_PKEY *k =
        strstr(pem_name, "PUBLIC") ? d2i_PUBKEY(NULL, &p, len) : d2i_AutoPrivateKey(NULL, &p, len);
    if (strstr(pem_name, "PUBLIC"))
        json_object_set_new(o, "type", json_string("public key"));
    else
        json_object_set_new(o, "encrypted", json_false());
    if (k) {
        char buf[64];
        pki_key_describe(k, buf, sizeof buf);
        json_object_set_new(o, "key", json_string(buf));
    }
    EVP_PKEY_free(k);
    return o;
}

/* The entries of a PKCS#12 file, bag by bag, with aliases and whether
 * Java treats each certificate as trusted. */
static int p12_items(PKCS12 *p12, const char *pass, const char *path, json_t *items)
{
    STACK_OF(PKCS7) *safes = NULL;
    int rc = ERR_AUTH;
    if (!PKCS12_verify_mac(p12, pass, -1)) {
        ERR_clear_error(); /* "wrong tag" says less than we do */
        pki_err("%s: wrong PKCS#12 password%s", path,
                pass[0] ? "" : " (give it with --p12-pass or CERTMQ_PKI_P12_PASS)");
        return ERR_AUTH;
    }
    safes = PKCS12_unpack_authsafes(p12);
    if (!safes) goto out;
    for (int i = 0; i < sk_PKCS7_num(safes); i++) {
        PKCS7 *p7 = sk_PKCS7_value(safes, i);
        int nid = OBJ_obj2nid(p7->type);
        STACK_OF(PKCS12_SAFEBAG) *bags = nid == NID_pkcs7_data ? PKCS12_unpack_p7data(p7)
                                         : nid == NID_pkcs7_encrypted
                                             ? PKCS12_unpack_p7encdata(p7, pass, -1)
                                             : NULL;
        for (int b = 0; b < sk_PKCS12_SAFEBAG_num(bags); b++) {
            PKCS12_SAFEBAG *bag = sk_PKCS12_SAFEBAG_value(bags, b);
            char *alias = PKCS12_get_friendlyname(bag);
            json_t *o = NULL;
            if (PKCS12_SAFEBAG_get_nid(bag) == NID_certBag) {
                X509 *x = PKCS12_SAFEBAG_get1_cert(bag);
                o = x ? cert_json(x) : NULL;
                X509_free(x);
                ASN1_OBJECT *tku = OBJ_txt2obj(JAVA_TRUSTED_KEY_USAGE, 1);
                bool trusted =
                    tku && X509at_get_attr_by_OBJ(PKCS12_SAFEBAG_get0_attrs(bag), tku, -1) >= 0;
                ASN1_OBJECT_free(tku);
                if (o) {
                    json_object_set_new(
                        o, "type", json_string(trusted ? "trusted certificate" : "certificate"));
                }
            } else if (PKCS12_SAFEBAG_get_nid(bag) == NID_pkcs8ShroudedKeyBag ||
                       PKCS12_SAFEBAG_get_nid(bag) == NID_keyBag) {
                PKCS8_PRIV_KEY_INFO *p8 = PKCS12_SAFEBAG_get_nid(bag) == NID_keyBag
                                              ? NULL
                                              : PKCS12_decrypt_skey(bag, pass, -1);
                EVP_PKEY *k = p8 ? EVP_PKCS82PKEY(p8) : NULL;
                char buf[64] = "?";
                if (k) pki_key_describe(k, buf, sizeof buf);
                o = json_pack("{s:s, s:s}", "type", "private key entry", "key", buf);
                EVP_PKEY_free(k);
                PKCS8_PRIV_KEY_INFO_free(p8);
            }
            if (o) {
                if (alias) json_object_set_new(o, "alias", json_string(alias));
                json_array_append_new(items, o);
            }
            OPENSSL_free(alias);
        }
        sk_PKCS12_SAFEBAG_pop_free(bags, PKCS12_SAFEBAG_free);
    }
    rc = 0;
out:
    ERR_clear_error();
    sk_PKCS7_pop_free(safes, PKCS7_free);
    return rc;
}

/* Adds one PEM block's item; unknown block types are named, not fatal. */
static void pem_item(const char *name, const unsigned char *der, long len, json_t *items,
                     STACK_OF(X509) * certs)
{
    const unsigned char *p = der;
    json_t *o = NULL;
    if (!strcmp(name, "CERTIFICATE") || !strcmp(name, "TRUSTED CERTIFICATE") ||
        !strcmp(name, "X509 CERTIFICATE")) {
        X509 *x = d2i_X509(NULL, &p, len);
        if (x) {
            o = cert_json(x);
            if (!sk_X509_push(certs, x)) X509_free(x);
        }
    } else if (!strcmp(name, "X509 CRL")) {
        X509_CRL *c = d2i_X509_CRL(NULL, &p, len);
        if (c) o = crl_json(c);
        X509_CRL_free(c);
    } else if (strstr(name, "CERTIFICATE REQUEST")) {
        X509_REQ *r = d2i_X509_REQ(NULL, &p, len);
        if (r) o = req_json(r);
        X509_REQ_free(r);
    } else if (strstr(name, "KEY")) {
        o = key_json(name, der, len);
    }
    if (!o) o = json_pack("{s:s, s:s}", "type", "unreadable PEM block", "label", name);
    if (o) json_array_append_new(items, o);
}

static int der_items(const char *data, size_t len, const char *path, const char *pass,
                     json_t *items, STACK_OF(X509) * certs)
{
    const unsigned char *p = (const unsigned char *)data;
    X509 *x = d2i_X509(NULL, &p, (long)len);
    if (x) {
        json_array_append_new(items, cert_json(x));
        if (!sk_X509_push(certs, x)) X509_free(x);
        return 0;
    }
    p = (const unsigned char *)data;
    X509_CRL *crl = d2i_X509_CRL(NULL, &p, (long)len);
    if (crl) {
        json_array_append_new(items, crl_json(crl));
        X509_CRL_free(crl);
        return 0;
    }
    p = (const unsigned char *)data;
    X509_REQ *req = d2i_X509_REQ(NULL, &p, (long)len);
    if (req) {
        json_array_append_new(items, req_json(req));
        X509_REQ_free(req);
        return 0;
    }
    p = (const unsigned char *)data;
    PKCS12 *p12 = d2i_PKCS12(NULL, &p, (long)len);
    if (p12) {
        int rc = p12_items(p12, pass, path, items);
        PKCS12_free(p12);
        return rc;
    }
    ERR_clear_error();
    pki_err("%s is not a certificate, chain, CSR, CRL, key or PKCS#12 file", path);
    return ERR_INVALID;
}

/* For two or more certificates: is each one issued by the next? */
static json_t *chain_note(STACK_OF(X509) * certs)
{
    char msg[200];
    int n = sk_X509_num(certs);
    for (int i = 0; i + 1 < n; i++) {
        if (X509_check_issued(sk_X509_value(certs, i + 1), sk_X509_value(certs, i)) != X509_V_OK) {
            snprintf(msg, sizeof msg,
                     "certificate %d is not issued by certificate %d: the order is wrong or a "
                     "CA is missing",
                     i + 1, i + 2);
            return json_string(msg);
        }
    }
    snprintf(msg, sizeof msg, "ordered: each certificate is issued by the next%s",
             X509_get_extension_flags(sk_X509_value(certs, n - 1)) & EXFLAG_SS
                 ? ", ending at a self-signed root"
                 : "");
    return json_string(msg);
}

static void print_value(const json_t *v)
{
    if (json_is_string(v))
        printf("%s", json_string_value(v));
    else if (json_is_boolean(v))
        printf("%s", json_is_true(v) ? "yes" : "no");
    else if (json_is_integer(v))
        printf("%lld", (long long)json_integer_value(v));
}

static void print_item(const json_t *o, size_t idx, size_t total)
{
    const char *key;
    json_t *v;
    printf("%s", json_string_value(json_object_get(o, "type")));
    if (total > 1) printf(" [%zu/%zu]", idx + 1, total);
    printf("\n");
    json_object_foreach((json_t *)o, key, v)
    {
        char label[32];
        if (!strcmp(key, "type")) continue;
        snprintf(label, sizeof label, "%s", key);
        for (char *c = label; *c; c++)
            if (*c == '_') *c = ' ';
        printf("  %-19s ", label);
        if (json_is_array(v)) {
            size_t i;
            json_t *e;
            if (json_array_size(v) == 0) printf("none");
            json_array_foreach(v, i, e)
            {
                if (json_is_object(e)) {
                    printf("\n    - serial %s, %s, %s",
                           json_string_value(json_object_get(e, "serial")),
                           json_string_value(json_object_get(e, "date")),
                           json_string_value(json_object_get(e, "reason")));
                } else {
                    printf("%s", i ? ", " : "");
                    print_value(e);
                }
            }
        } else {
            print_value(v);
        }
        printf("\n");
    }
}

int pki_cmd_inspect(struct pki_args *a)
{
    const char *path = a->pos[0];
    char *data = NULL, *name = NULL, *header = NULL;
    unsigned char *der = NULL;
    long dlen = 0;
    size_t len = 0;
    int rc;
    json_t *items = json_array();
    STACK_OF(X509) *certs = sk_X509_new_null();
    BIO *bio = NULL;
    const char *pass = pki_p12_pass(a);
    if (!items || !certs) {
        rc = ERR_NOMEM;
        goto out;
    }
    GUARD_GOTO(rc, pki_read_file(path, &data, &len), out);
    if (strstr(data, "-----BEGIN ")) {
        bio = BIO_new_mem_buf(data, (int)len);
        while (bio && PEM_read_bio(bio, &name, &header, &der, &dlen)) {
            pem_item(name, der, dlen, items, certs);
            OPENSSL_free(name);
            OPENSSL_free(header);
            OPENSSL_free(der);
            name = header = NULL;
            der = NULL;
        }
        ERR_clear_error();
        if (json_array_size(items) == 0) {
            pki_err("%s holds no readable PEM block", path);
            rc = ERR_INVALID;
            goto out;
        }
    } else {
        GUARD_GOTO(rc, der_items(data, len, path, pass ? pass : "", items, certs), out);
    }
    json_t *result = json_pack("{s:s, s:O}", "file", path, "items", items);
    if (result && sk_X509_num(certs) > 1) json_object_set_new(result, "chain", chain_note(certs));
    if (a->json) {
        if (result) pki_json_print(result);
    } else if (result) {
        size_t i;
        json_t *o;
        json_array_foreach(items, i, o)
        {
            if (i) printf("\n");
            print_item(o, i, json_array_size(items));
        }
        if (json_object_get(result, "chain"))
            printf("\nchain: %s\n", json_string_value(json_object_get(result, "chain")));
        json_decref(result);
    }
    rc = 0;
out:
    BIO_free(bio);
    free(data);
    json_decref(items);
    sk_X509_pop_free(certs, X509_free);
    return rc < 0 ? PKI_EXIT_FAIL : PKI_EXIT_OK;
}
