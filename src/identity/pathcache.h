/* A cache of successful path validations. The signatures of a given set of
 * certificate bytes against a given anchor verify the same way every time, so
 * a device that reconnects with the same chain skips X509_verify_cert; what
 * can change (time, revocation, anchor state, key rules) is still checked on
 * every connect by the caller. Process-wide, guarded by one mutex. */
#ifndef CERTMQ_IDENTITY_PATHCACHE_H
#define CERTMQ_IDENTITY_PATHCACHE_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <openssl/x509.h>

#define PATHCACHE_MAX_CHAIN 10

struct pathcache_key {
    uint8_t digest[32]; /* SHA-256 of anchor, limits and every presented DER */
};

/* A validated path: positions of the presented certificates it used, in
 * chain order from the leaf (the anchor follows them), and the window in
 * which every certificate on it is valid. */
struct pathcache_entry {
    time_t not_before, not_after;
    uint8_t n;
    uint8_t pos[PATHCACHE_MAX_CHAIN];
};

/* Derives the key. Returns false when it cannot (then do not cache). */
bool pathcache_key(X509 *const *presented, int n, const char *anchor_fp, int max_len,
                   struct pathcache_key *key);
/* Copies a stored entry; false when absent. */
bool pathcache_get(const struct pathcache_key *key, struct pathcache_entry *out);
void pathcache_put(const struct pathcache_key *key, const struct pathcache_entry *e);
/* The validity window of a path of n certificates; false when a time is unreadable. */
bool pathcache_window(X509 *const *path, int n, time_t *not_before, time_t *not_after);
/* Forgets everything (tests). */
void pathcache_clear(void);

#endif
