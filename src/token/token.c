/* Device JWTs with libjwt (ES256) and OpenSSL keys (see token.h). */
#include "token/token.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jwt.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include "core/buf.h"

static char *bio_to_string(BIO *b)
{
    char *data;
    long n = BIO_get_mem_data(b, &data);
    char *s = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (s) {
        memcpy(s, data, (size_t)n);
        s[n] = 0;
    }
    return s;
}

int token_key_new(char **priv_pem, char **pub_pem)
{
    int rc = ERR_INTERNAL;
    EVP_PKEY *k = EVP_EC_gen("P-256");
    BIO *a = BIO_new(BIO_s_mem()), *b = BIO_new(BIO_s_mem());
    *priv_pem = *pub_pem = NULL;
    if (!k || !a || !b) goto out;
    if (PEM_write_bio_PrivateKey(a, k, NULL, NULL, 0, NULL, NULL) != 1) goto out;
    if (PEM_write_bio_PUBKEY(b, k) != 1) goto out;
    *priv_pem = bio_to_string(a);
    *pub_pem = bio_to_string(b);
    if (!*priv_pem || !*pub_pem) {
        free(*priv_pem);
        free(*pub_pem);
        *priv_pem = *pub_pem = NULL;
        rc = ERR_NOMEM;
        goto out;
    }
    rc = 0;
out:
    BIO_free(a);
    BIO_free(b);
    EVP_PKEY_free(k);
    return rc;
}

int token_mint(const char *priv_pem, const char *sub, const char *ten, time_t now, long lifespan,
               struct token_claims *c, char **out)
{
    memset(c, 0, sizeof *c);
    unsigned char r[16];
    if (RAND_bytes(r, sizeof r) != 1) return ERR_INTERNAL;
    for (size_t i = 0; i < sizeof r; i++) snprintf(c->jti + 2 * i, 3, "%02x", r[i]);
    snprintf(c->iss, sizeof c->iss, "certmq");
    snprintf(c->sub, sizeof c->sub, "%s", sub);
    snprintf(c->ten, sizeof c->ten, "%s", ten);
    c->iat = c->nbf = now;
    c->exp = now + lifespan;

    jwt_t *j = NULL;
    int rc = ERR_INTERNAL;
    if (jwt_new(&j) != 0) return ERR_NOMEM;
    if (jwt_add_grant(j, "iss", c->iss) || jwt_add_grant(j, "sub", c->sub) ||
        jwt_add_grant(j, "ten", c->ten) || jwt_add_grant(j, "jti", c->jti) ||
        jwt_add_grant_int(j, "iat", (long)c->iat) || jwt_add_grant_int(j, "nbf", (long)c->nbf) ||
        jwt_add_grant_int(j, "exp", (long)c->exp))
        goto out;
    if (jwt_set_alg(j, JWT_ALG_ES256, (const unsigned char *)priv_pem, (int)strlen(priv_pem)))
        goto out;
    char *s = jwt_encode_str(j);
    if (!s) goto out;
    *out = strdup(s);
    free(s);
    rc = *out ? 0 : ERR_NOMEM;
out:
    jwt_free(j);
    return rc;
}

/* Decodes base64url (no padding) into out; returns the length or -1. */
static long b64url_decode(const char *in, size_t n, uint8_t *out, size_t cap)
{
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = in[i];
        int v = ch >= 'A' && ch <= 'Z'   ? ch - 'A'
                : ch >= 'a' && ch <= 'z' ? ch - 'a' + 26
                : ch >= '0' && ch <= '9' ? ch - '0' + 52
                : ch == '-'              ? 62
                : ch == '_'              ? 63
                                         : -1;
        if (v < 0) return -1;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o == cap) return -1;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    return (long)o;
}

int token_peek_tenant(const char *jwt, char *ten, size_t n)
{
    const char *d1 = strchr(jwt, '.');
    const char *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
    if (!d2 || (size_t)(d2 - d1 - 1) > 8192) return ERR_AUTH;
    uint8_t body[6200];
    long len = b64url_decode(d1 + 1, (size_t)(d2 - d1 - 1), body, sizeof body - 1);
    if (len < 0) return ERR_AUTH;
    body[len] = 0;
    /* The payload is JSON; find "ten":"..." without trusting its shape. */
    const char *k = strstr((const char *)body, "\"ten\"");
    if (!k) return ERR_AUTH;
    k += 5;
    while (*k == ' ' || *k == ':') k++;
    if (*k++ != '"') return ERR_AUTH;
    size_t i = 0;
    while (*k && *k != '"' && *k != '\\' && i + 1 < n) ten[i++] = *k++;
    if (*k != '"') return ERR_AUTH;
    ten[i] = 0;
    return 0;
}

int token_verify(const char *pub_pem, const char *jwt, const char *ten, time_t now,
                 struct token_claims *c)
{
    jwt_t *j = NULL;
    int rc = ERR_AUTH;
    memset(c, 0, sizeof *c);
    if (jwt_decode(&j, jwt, (const unsigned char *)pub_pem, (int)strlen(pub_pem)) != 0 || !j)
        goto out;
    if (jwt_get_alg(j) != JWT_ALG_ES256) goto out; /* no "none", no HS256 with our public key */
    const char *sub = jwt_get_grant(j, "sub"), *t = jwt_get_grant(j, "ten");
    const char *iss = jwt_get_grant(j, "iss"), *jti = jwt_get_grant(j, "jti");
    if (!sub || !t || strcmp(t, ten)) goto out;
    c->exp = jwt_get_grant_int(j, "exp");
    c->nbf = jwt_get_grant_int(j, "nbf");
    c->iat = jwt_get_grant_int(j, "iat");
    if (c->exp <= 0 || now >= c->exp || now < c->nbf) goto out;
    snprintf(c->sub, sizeof c->sub, "%s", sub);
    snprintf(c->ten, sizeof c->ten, "%s", t);
    snprintf(c->iss, sizeof c->iss, "%s", iss ? iss : "");
    snprintf(c->jti, sizeof c->jti, "%s", jti ? jti : "");
    rc = 0;
out:
    jwt_free(j);
    return rc;
}
