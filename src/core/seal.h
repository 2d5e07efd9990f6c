/* Secrets at rest: AES-256-GCM under one server key-encryption key (KEK)
 * that the operator names (`ca_key_file`) or that is made once as
 * DATA_DIR/kek (0600). Device-token signing keys and tenant CA keys are
 * stored only as sealed blobs; the KEK itself is never logged. */
#ifndef CERTMQ_SEAL_H
#define CERTMQ_SEAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

#define SEAL_KEY_LEN 32 /* the KEK file holds exactly this many raw bytes */

/* A sealed blob, version 1:
 *   "CMQS" | version (1 byte) | KEK id (8) | nonce (12) | ciphertext | tag (16)
 * The KEK id is the first 8 bytes of SHA-256("certmq kek id" || KEK), so a
 * blob names the key it needs (rotation keeps old ids readable). The
 * additional authenticated data is the first 13 bytes followed by the
 * caller's context string, which binds a blob to what and whose it is. */
#define SEAL_MAGIC      "CMQS"
#define SEAL_VERSION    1
#define SEAL_KID_LEN    8
#define SEAL_NONCE_LEN  12
#define SEAL_TAG_LEN    16
#define SEAL_HEADER_LEN (4 + 1 + SEAL_KID_LEN)
#define SEAL_OVERHEAD   (SEAL_HEADER_LEN + SEAL_NONCE_LEN + SEAL_TAG_LEN)
#define SEAL_MAX_PLAIN  (1u << 20)

struct seal;

/* Loads the KEK from key_file or, when key_file is empty, from
 * data_dir/kek, creating that (0600, random) if it does not exist. Refuses
 * a file that is not a regular file, is accessible to group or others, or
 * does not hold exactly SEAL_KEY_LEN bytes, with the reason in err. */
MUST_USE int seal_open(const char *key_file, const char *data_dir, struct seal **out, char *err,
                       size_t errlen);
/* A seal over a given key (tests, tools). */
MUST_USE int seal_new(const uint8_t key[SEAL_KEY_LEN], struct seal **out);
/* Wipes the key and frees. */
void seal_free(struct seal *s);
/* The KEK id as 16 hex digits plus NUL (for messages: it reveals nothing). */
void seal_key_id(const struct seal *s, char hex[2 * SEAL_KID_LEN + 1]);

/* Seals n bytes under context; *blob (malloc'd, *blob_len bytes) is the
 * caller's. */
MUST_USE int seal_wrap(const struct seal *s, const char *context, const void *plain, size_t n,
                       uint8_t **blob, size_t *blob_len);
/* Opens a blob sealed under context. On success *plain is a malloc'd copy
 * with a NUL after its *plain_len bytes; release it with seal_secret_free.
 * ERR_MALFORMED: not a blob of a known version; ERR_CONFLICT: sealed under
 * another KEK; ERR_AUTH: altered, or sealed under another context. */
MUST_USE int seal_unwrap(const struct seal *s, const char *context, const void *blob, size_t n,
                         char **plain, size_t *plain_len);
/* Checks the header only: 0 when the blob is a known version sealed under
 * this KEK, else as seal_unwrap. */
MUST_USE int seal_check(const struct seal *s, const void *blob, size_t n);
/* Wipes n bytes (and the NUL after them) and frees. */
void seal_secret_free(char *p, size_t n);

#endif
