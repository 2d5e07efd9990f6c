/* PBKDF2-HMAC-SHA256 password hashes (see password.h). The iteration count
 * is stored in each hash, so it can be raised later without breaking
 * existing users. */
#include "identity/password.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#define SALT_LEN 16
#define KEY_LEN  32
#define MAX_ITER 10000000u

static void to_hex(const unsigned char *p, size_t n, char *out)
{
    static const char hx[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hx[p[i] >> 4];
        out[2 * i + 1] = hx[p[i] & 15];
    }
    out[2 * n] = '\0';
}

static int hex_val(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* Decodes exactly n bytes of lowercase hex from s; returns the end or NULL. */
static const char *from_hex(const char *s, unsigned char *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int hi = hex_val(s[2 * i]);
        if (hi < 0) return NULL;
        int lo = hex_val(s[2 * i + 1]);
        if (lo < 0) return NULL;
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return s + 2 * n;
}

static int derive(const char *pw, size_t len, const unsigned char *salt, unsigned iter,
                  unsigned char *key)
{
    if (len > INT32_MAX) return ERR_INVALID;
    if (PKCS5_PBKDF2_HMAC(pw, (int)len, salt, SALT_LEN, (int)iter, EVP_sha256(), KEY_LEN, key) != 1)
        return ERR_INTERNAL;
    return 0;
}

int password_hash(const char *pw, size_t len, unsigned iterations, char *out, size_t cap)
{
    unsigned char salt[SALT_LEN], key[KEY_LEN];
    char salt_hex[2 * SALT_LEN + 1], key_hex[2 * KEY_LEN + 1];
    if (iterations == 0) iterations = PASSWORD_ITERATIONS;
    ENSURE(iterations <= MAX_ITER, ERR_INVALID);
    ENSURE(RAND_bytes(salt, sizeof salt) == 1, ERR_INTERNAL);
    GUARD(derive(pw, len, salt, iterations, key));
    to_hex(salt, sizeof salt, salt_hex);
    to_hex(key, sizeof key, key_hex);
    OPENSSL_cleanse(key, sizeof key);
    int n = snprintf(out, cap, "pbkdf2-sha256$%u$%s$%s", iterations, salt_hex, key_hex);
    ENSURE(n > 0 && (size_t)n < cap, ERR_TOO_LARGE);
    return 0;
}

bool password_verify(const char *stored, const char *pw, size_t len)
{
    static const char prefix[] = "pbkdf2-sha256$";
    unsigned char salt[SALT_LEN], want[KEY_LEN], got[KEY_LEN];
    if (!stored || strncmp(stored, prefix, sizeof prefix - 1) != 0) return false;
    const char *p = stored + sizeof prefix - 1;
    char *end = NULL;
    unsigned long iter = strtoul(p, &end, 10);
    if (end == p || *end != '$' || iter == 0 || iter > MAX_ITER) return false;
    p = from_hex(end + 1, salt, sizeof salt);
    if (!p || *p != '$') return false;
    p = from_hex(p + 1, want, sizeof want);
    if (!p || *p != '\0') return false;
    if (derive(pw, len, salt, (unsigned)iter, got) < 0) return false;
    bool ok = CRYPTO_memcmp(got, want, KEY_LEN) == 0;
    OPENSSL_cleanse(got, sizeof got);
    return ok;
}

int password_random(char *out, size_t len)
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    ENSURE(len >= 2, ERR_INVALID);
    for (size_t i = 0; i + 1 < len; i++) {
        unsigned char b;
        do {
            ENSURE(RAND_bytes(&b, 1) == 1, ERR_INTERNAL);
        } while (b >= 248); /* 248 = 4 * 62: no modulo bias */
        out[i] = alphabet[b % 62];
    }
    out[len - 1] = '\0';
    return 0;
}
