/* Password hashing for tenant users: PBKDF2-HMAC-SHA256 with a random salt,
 * stored as "pbkdf2-sha256$<iterations>$<salt hex>$<hash hex>", and random
 * password generation for the bootstrap admin. Pure apart from the RNG. */
#ifndef CERTMQ_IDENTITY_PASSWORD_H
#define CERTMQ_IDENTITY_PASSWORD_H

#include <stdbool.h>
#include <stddef.h>

#include "core/err.h"

#define PASSWORD_HASH_MAX   160
#define PASSWORD_ITERATIONS 150000u

/* Hashes pw into out (at least PASSWORD_HASH_MAX bytes). iterations 0 means
 * PASSWORD_ITERATIONS; tests pass a small count to stay fast. */
MUST_USE int password_hash(const char *pw, size_t len, unsigned iterations, char *out, size_t cap);
/* Constant-time check of pw against a stored hash; false for "" or junk. */
bool password_verify(const char *stored, const char *pw, size_t len);
/* A random password of len-1 characters from [A-Za-z0-9] plus NUL. */
MUST_USE int password_random(char *out, size_t len);

#endif
