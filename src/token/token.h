/* Device tokens: ES256 JWTs signed with a per-tenant P-256 key. Pure
 * functions over PEM keys and token strings (time is a parameter); the
 * caller keeps keys in the store and decides lifetimes. */
#ifndef CERTMQ_TOKEN_H
#define CERTMQ_TOKEN_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "core/err.h"

#define TOKEN_DEFAULT_LIFESPAN 3600
#define TOKEN_MIN_LIFESPAN     300

struct token_claims {
    char iss[128]; /* issuer: "certmq" */
    char sub[192]; /* device user name */
    char ten[64];  /* tenant id */
    char jti[33];  /* random id, hex */
    int64_t iat, nbf, exp;
};

/* Makes a new P-256 key pair as PEM strings (PKCS#8 private, SPKI public).
 * The caller frees both with free(). */
MUST_USE int token_key_new(char **priv_pem, char **pub_pem);
/* Signs a token for sub in tenant ten, valid from now for lifespan
 * seconds; fills c (with a fresh jti) and returns the JWT in *jwt (free()). */
MUST_USE int token_mint(const char *priv_pem, const char *sub, const char *ten, time_t now,
                        long lifespan, struct token_claims *c, char **jwt);
/* Reads the tenant claim without verifying anything, to pick the key. */
MUST_USE int token_peek_tenant(const char *jwt, char *ten, size_t n);
/* Verifies signature (ES256 only: any other alg, "none" included, is
 * refused), expiry and not-before against now, and that the tenant claim
 * equals ten. Returns 0 with the claims, or ERR_AUTH. */
MUST_USE int token_verify(const char *pub_pem, const char *jwt, const char *ten, time_t now,
                          struct token_claims *c);

#endif
