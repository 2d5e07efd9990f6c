/* One-time enrollment tokens: a random secret bound to (tenant, device id),
 * shown once when made and stored only as its SHA-256, spent by the one
 * enrollment it authorises. Thread-safe (the store is). */
#ifndef CERTMQ_CA_ENROLL_H
#define CERTMQ_CA_ENROLL_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "core/err.h"
#include "store/store.h"

struct store;

#define ENROLL_TOKEN_LEN 43 /* base64url of 32 random bytes, no padding */

/* Makes a token for (tenant, device) valid validity_s seconds from now:
 * token (ENROLL_TOKEN_LEN + 1 bytes) gets its value, *until its end.
 * ERR_NOT_FOUND without the tenant. */
MUST_USE int enroll_token_new(struct store *st, const char *tenant, const char *device,
                              long validity_s, time_t now, char *token, int64_t *until);
/* Stores a token chosen by the caller (the ENROLL_TOKEN column of a bulk
 * registration); ERR_INVALID when shorter than 16 bytes, ERR_EXISTS when
 * that value is already a token. */
MUST_USE int enroll_token_put(struct store *st, const char *tenant, const char *device,
                              const char *token, int64_t until);

/* Why a presented token does not authorise an enrollment. */
enum enroll_refusal {
    ENROLL_OK = 0,
    ENROLL_UNKNOWN,     /* no such token, or bound to another device */
    ENROLL_USED,        /* spent already */
    ENROLL_EXPIRED,     /* past its validity */
    ENROLL_WRONG_TENANT /* the URL names another tenant */
};
/* Checks a token presented for device (and, when tenant is not NULL, for
 * that tenant of the URL) at now without spending it; out gets its record
 * when ENROLL_OK. */
enum enroll_refusal enroll_token_check(struct store *st, const char *device, const char *token,
                                       const char *tenant, time_t now,
                                       struct store_enroll_token *out);
/* Spends the token: ERR_CONFLICT when another request spent it first. */
MUST_USE int enroll_token_spend(struct store *st, const char *token);
/* "Invalid enrollment token", ... */
const char *enroll_refusal_str(enum enroll_refusal r);

#endif
