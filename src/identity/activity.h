/* What the broker saw of each tenant's devices, for the operator's live
 * view: a bounded ring of the latest refused connection attempts per tenant
 * (in memory only: a restart starts it empty) and, per registered device,
 * when it last connected and its certificate's notAfter (written to the
 * store from time to time by the caller: activity_take_dirty, and read back
 * at start: activity_restore). One mutex guards it. */
#ifndef CERTMQ_IDENTITY_ACTIVITY_H
#define CERTMQ_IDENTITY_ACTIVITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

struct activity;

struct refusal {
    int64_t time;
    char remote[56]; /* peer address without port */
    char client_id[129];
    char cn[128];
    char anchor_fp[41];
    char reason[96];
};

struct device_seen {
    int64_t last_seen; /* last accepted connect, Unix seconds */
    int64_t not_after; /* of the certificate it connected with; 0: none */
};

/* ring_size: refusals kept per tenant (0: none kept). */
MUST_USE int activity_new(long ring_size, struct activity **out);
void activity_free(struct activity *a);

/* Keeps r in tenant's ring, overwriting the oldest when full. */
void activity_refused(struct activity *a, const char *tenant, const struct refusal *r);
/* A copy of tenant's ring, newest first: *out (free()) holds *n entries. */
MUST_USE int activity_refusals(struct activity *a, const char *tenant, struct refusal **out,
                               size_t *n);

/* A device of tenant connected at now with a certificate valid to not_after. */
void activity_seen(struct activity *a, const char *tenant, const char *cn, int64_t now,
                   int64_t not_after);
/* Puts back what the store kept of a device (at start; newer news wins). */
void activity_restore(struct activity *a, const char *tenant, const char *cn,
                      const struct device_seen *v);

/* One device's news, to write to the store. */
struct seen_row {
    char tenant[64];
    char cn[128];
    struct device_seen seen;
};
/* The devices seen since the last call: *out (free()) holds *n rows. */
MUST_USE int activity_take_dirty(struct activity *a, struct seen_row **out, size_t *n);

/* What was seen of one device: false when it never connected (as far as
 * the store remembers). */
bool activity_device(struct activity *a, const char *tenant, const char *cn,
                     struct device_seen *out);
/* Devices known (seen, or read back from the store) whose certificate's
 * notAfter is at or before before (expired ones included). */
size_t activity_expiring(struct activity *a, int64_t before);

#endif
