/* Password checks off the network threads. A check costs a PBKDF2 (~85 ms);
 * run on an MQTT worker or an HTTP thread it stalls every client behind it.
 * pwcheck runs them on a small bounded pool, answers from the trust index's
 * cache without the pool, and limits failed attempts per source address and
 * per user (a source or user over the limit is refused without a check). */
#ifndef CERTMQ_IDENTITY_PWCHECK_H
#define CERTMQ_IDENTITY_PWCHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "core/err.h"

struct trust_index;
struct pwcheck;
struct pwcheck_job;

struct pwcheck_config {
    int threads;      /* pool size */
    int queue_max;    /* checks waiting for a thread; more are refused (ERR_LIMIT) */
    int max_failures; /* failed attempts per source and per user within window_s */
    int window_s;
    time_t (*now)(void); /* the clock failures are counted by; NULL: time() */
};

/* ti is borrowed and must outlive the pool. */
MUST_USE int pwcheck_new(struct trust_index *ti, const struct pwcheck_config *cfg,
                         struct pwcheck **out);
/* Stops the threads; pending jobs are cancelled (their callbacks never run). */
void pwcheck_free(struct pwcheck *pc);

/* A login is "<tenantId>/<user>" (login_len bytes, not NUL-terminated);
 * source is the client's address without port ("" when unknown). */

/* The answer without a thread, when there is one now: 1 and *roles for a
 * cached verification, ERR_LIMIT when the source or user is over the
 * failure limit, ERR_BAD_CREDENTIALS for a malformed login, 0 when a full
 * check is needed. */
MUST_USE int pwcheck_quick(struct pwcheck *pc, const char *source, const char *login,
                           size_t login_len, const char *pw, size_t pw_len, unsigned *roles);

/* The whole check on the calling thread (limits, cache, PBKDF2): 0 and
 * *roles, ERR_BAD_CREDENTIALS or ERR_LIMIT. For callers that may block. */
MUST_USE int pwcheck_verify(struct pwcheck *pc, const char *source, const char *login,
                            size_t login_len, const char *pw, size_t pw_len, unsigned *roles);

/* Queues a full check; the arguments are copied (the password is wiped when
 * the job ends). done(arg) runs on a pool thread once the result is ready,
 * with an internal lock held: it must only signal (e.g. wake a worker), and
 * the owner then takes the result with pwcheck_finish. ERR_LIMIT when the
 * queue is full. */
MUST_USE int pwcheck_submit(struct pwcheck *pc, const char *source, const char *login,
                            size_t login_len, const char *pw, size_t pw_len,
                            void (*done)(void *arg), void *arg, struct pwcheck_job **out);
/* True once the job's result is ready. */
bool pwcheck_ready(struct pwcheck *pc, struct pwcheck_job *job);
/* Takes a ready job's result (as pwcheck_verify returns it) and frees it. */
MUST_USE int pwcheck_finish(struct pwcheck *pc, struct pwcheck_job *job, unsigned *roles);
/* The owner no longer wants the result (its connection closed): frees the
 * job now or when its thread is done with it. done() is not called after. */
void pwcheck_cancel(struct pwcheck *pc, struct pwcheck_job *job);

#endif
