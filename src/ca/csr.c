/* CSR transfer forms and the PKCS#7 answer (csr.h). Pure: no store, no
 * clock; every length comes from the caller and OpenSSL decodes. */
#include "ca/csr.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/pkcs7.h>

#define PEM_CSR_MARK "-----BEGIN"

static void say(char *why, size_t cap, const char *text)
{
    if (why && cap) snprintf(why, cap, "%s", text);
}

/* base64 with whitespace to bytes (*out malloc'd). ERR_MALFORMED on any
 * other character or bad padding. */
static int b64_decode(const char *in, size_t len, unsigned char **out, size_t *n)
{
    if (len > (size_t)INT32_MAX) return ERR_TOO_LARGE;
    unsigned char *buf = malloc(len / 4 * 3 + 4);
    if (!buf) return ERR_NOMEM;
    EVP_ENCODE_CTX *ctx = EVP_ENCODE_CTX_new();
    int a = 0, b = 0, rc = ERR_MALFORMED;
    if (!ctx) {
        rc = ERR_NOMEM;
        goto out;
    }
    EVP_DecodeInit(ctx);
    if (EVP_DecodeUpdate(ctx, buf, &a, (const unsigned char *)in, (int)len) < 0) goto out;
    if (EVP_DecodeFinal(ctx, buf + a, &b) < 0) goto out;
    if (a + b == 0) goto out;
    *out = buf;
    *n = (size_t)(a + b);
    buf = NULL;
    rc = 0;
out:
    EVP_ENCODE_CTX_free(ctx);
    free(buf);
    return rc;
}

static X509_REQ *from_pem(const char *body, size_t len)
{
    BIO *bio = BIO_new_mem_buf(body, (int)len);
    X509_REQ *req = bio ? PEM_read_bio_X509_REQ(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    return req;
}

static X509_REQ *from_b64(const char *body, size_t len)
{
    unsigned char *der = NULL;
    size_t n = 0;
    if (b64_decode(body, len, &der, &n) < 0) return NULL;
    const unsigned char *p = der;
    X509_REQ *req = d2i_X509_REQ(NULL, &p, (long)n);
    if (req && p != der + n) { /* trailing bytes */
        X509_REQ_free(req);
        req = NULL;
    }
    free(der);
    return req;
}

bool ca_key_strong(EVP_PKEY *k, char *why, size_t cap)
{
    int bits = k ? EVP_PKEY_get_bits(k) : 0;
    switch (k ? EVP_PKEY_get_base_id(k) : 0) {
    case EVP_PKEY_RSA:
    case EVP_PKEY_RSA_PSS:
    case EVP_PKEY_DSA:
        if (bits >= 2048) return true;
        if (why)
            snprintf(why, cap, "Key too weak: RSA keys need at least 2048 bits (this has %d)",
                     bits);
        return false;
    case EVP_PKEY_EC:
        if (bits >= 256) return true;
        if (why)
            snprintf(why, cap, "Key too weak: EC keys need at least 256 bits (this has %d)", bits);
        return false;
    case EVP_PKEY_ED25519:
    case EVP_PKEY_ED448: return true;
    default: say(why, cap, "Unsupported key type"); return false;
    }
}

/* MD5 and SHA-1 (and older) signature hashes are refused. */
static bool hash_strong(X509_REQ *req)
{
    int md = NID_undef, pk = NID_undef;
    if (!OBJ_find_sigid_algs(X509_REQ_get_signature_nid(req), &md, &pk)) return false;
    return md != NID_md5 && md != NID_sha1 && md != NID_md4 && md != NID_md2 && md != NID_md5_sha1;
}

int ca_csr_parse(const char *body, size_t len, X509_REQ **out, char *why, size_t cap)
{
    *out = NULL;
    if (!body || len == 0 || len > (size_t)INT32_MAX) {
        say(why, cap, "The request body holds no certificate signing request");
        return ERR_MALFORMED;
    }
    bool pem = memmem(body, len, PEM_CSR_MARK, strlen(PEM_CSR_MARK)) != NULL;
    X509_REQ *req = pem ? from_pem(body, len) : from_b64(body, len);
    if (!req) {
        say(why, cap, "The body is not a PKCS#10 certificate signing request (base64 DER or PEM)");
        return ERR_MALFORMED;
    }
    EVP_PKEY *k = X509_REQ_get0_pubkey(req);
    int rc = 0;
    if (!k || X509_REQ_verify(req, k) != 1) {
        say(why, cap, "The signature of the certificate signing request does not verify");
        rc = ERR_AUTH;
    } else if (!ca_key_strong(k, why, cap)) {
        rc = ERR_INVALID;
    } else if (!hash_strong(req)) {
        say(why, cap, "Weak signature: MD5 and SHA-1 are refused");
        rc = ERR_INVALID;
    }
    if (rc < 0)
        X509_REQ_free(req);
    else
        *out = req;
    return rc;
}

int ca_csr_cn(X509_REQ *req, char *out, size_t cap)
{
    const X509_NAME *n = X509_REQ_get_subject_name(req);
    int i = X509_NAME_get_index_by_NID(n, NID_commonName, -1);
    ENSURE(i >= 0, ERR_INVALID);
    ENSURE(X509_NAME_get_index_by_NID(n, NID_commonName, i) < 0, ERR_INVALID);
    const ASN1_STRING *s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(n, i));
    unsigned char *utf8 = NULL;
    int len = ASN1_STRING_to_UTF8(&utf8, s);
    ENSURE(len >= 0, ERR_INVALID);
    int rc = ERR_INVALID;
    if ((size_t)len < cap && !memchr(utf8, 0, (size_t)len)) {
        memcpy(out, utf8, (size_t)len);
        out[len] = 0;
        rc = 0;
    }
    OPENSSL_free(utf8);
    return rc;
}

int ca_pkcs7_certs_b64(STACK_OF(X509) * certs, char **out, size_t *len)
{
    int rc = ERR_INTERNAL;
    PKCS7 *p7 = PKCS7_new();
    BIO *mem = BIO_new(BIO_s_mem()), *b64 = BIO_new(BIO_f_base64());
    if (!p7 || !mem || !b64 || !PKCS7_set_type(p7, NID_pkcs7_signed) ||
        !ASN1_INTEGER_set(p7->d.sign->version, 1))
        goto out;
    /* no content: as `openssl crl2pkcs7 -nocrl` writes it */
    p7->d.sign->contents->type = OBJ_nid2obj(NID_pkcs7_data);
    for (int i = 0; i < sk_X509_num(certs); i++)
        if (!PKCS7_add_certificate(p7, sk_X509_value(certs, i))) goto out;
    BIO *chain = BIO_push(b64, mem);
    b64 = NULL; /* owned by the chain now */
    if (i2d_PKCS7_bio(chain, p7) != 1 || BIO_flush(chain) != 1) {
        BIO_pop(chain);
        BIO_free(chain);
        goto out;
    }
    BIO_pop(chain);
    BIO_free(chain);
    char *data = NULL;
    long n = BIO_get_mem_data(mem, &data);
    *out = malloc((size_t)n + 1);
    if (!*out) {
        rc = ERR_NOMEM;
        goto out;
    }
    memcpy(*out, data, (size_t)n);
    (*out)[n] = 0;
    *len = (size_t)n;
    rc = 0;
out:
    BIO_free(b64);
    BIO_free(mem);
    PKCS7_free(p7);
    return rc;
}
