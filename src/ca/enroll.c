/* Enrollment tokens (enroll.h): values from RAND_bytes, kept as the hex
 * SHA-256 of the value only (a 256-bit random secret needs no slow hash). */
#include "ca/enroll.h"

#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

static void token_hash(const char *token, char hex[65])
{
    unsigned char md[32];
    unsigned int n = 0;
    EVP_Digest(token, strlen(token), md, &n, EVP_sha256(), NULL);
    for (unsigned i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

static void b64url(const unsigned char *in, size_t n, char *out)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        acc = (acc << 8) | in[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out[o++] = a[(acc >> bits) & 63];
        }
    }
    if (bits) out[o++] = a[(acc << (6 - bits)) & 63];
    out[o] = 0;
}

int enroll_token_put(struct store *st, const char *tenant, const char *device, const char *token,
                     int64_t until)
{
    ENSURE(token && strlen(token) >= 16, ERR_INVALID);
    struct store_enroll_token t = {.valid_until = until};
    char hash[65];
    snprintf(t.tenant, sizeof t.tenant, "%s", tenant);
    snprintf(t.device, sizeof t.device, "%s", device);
    token_hash(token, hash);
    return store_enroll_token_put(st, hash, &t);
}

int enroll_token_new(struct store *st, const char *tenant, const char *device, long validity_s,
                     time_t now, char *token, int64_t *until)
{
    unsigned char raw[32];
    ENSURE(RAND_bytes(raw, sizeof raw) == 1, ERR_INTERNAL);
    b64url(raw, sizeof raw, token);
    OPENSSL_cleanse(raw, sizeof raw);
    *until = (int64_t)now + validity_s;
    int rc = enroll_token_put(st, tenant, device, token, *until);
    if (rc < 0) OPENSSL_cleanse(token, ENROLL_TOKEN_LEN + 1);
    return rc;
}

enum enroll_refusal enroll_token_check(struct store *st, const char *device, const char *token,
                                       const char *tenant, time_t now,
                                       struct store_enroll_token *out)
{
    char hash[65];
    token_hash(token, hash);
    if (store_enroll_token_get(st, hash, out) < 0) return ENROLL_UNKNOWN;
    if (strcmp(out->device, device) != 0) return ENROLL_UNKNOWN;
    if (tenant && strcmp(out->tenant, tenant) != 0) return ENROLL_WRONG_TENANT;
    if (out->used) return ENROLL_USED;
    if ((int64_t)now >= out->valid_until) return ENROLL_EXPIRED;
    return ENROLL_OK;
}

int enroll_token_spend(struct store *st, const char *token)
{
    char hash[65];
    token_hash(token, hash);
    return store_enroll_token_use(st, hash);
}

const char *enroll_refusal_str(enum enroll_refusal r)
{
    switch (r) {
    case ENROLL_OK: return "ok";
    case ENROLL_UNKNOWN: return "Invalid enrollment token for this device";
    case ENROLL_USED: return "This enrollment token was already used";
    case ENROLL_EXPIRED: return "This enrollment token has expired";
    case ENROLL_WRONG_TENANT: return "This enrollment token belongs to another tenant";
    }
    return "Invalid enrollment token";
}
