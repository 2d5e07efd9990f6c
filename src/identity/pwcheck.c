/* The password-check pool and the failed-attempt limiter (see pwcheck.h).
 * One mutex guards the job queue, job states and the limiter's table; the
 * PBKDF2 itself runs without it. */
#include "identity/pwcheck.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "core/log.h"
#include "core/map.h"
#include "identity/auth.h"
#include "identity/trust.h"
#include "store/store.h"

/* Distinct sources and users with recent failures that are remembered; past
 * it, expired entries are swept and new ones not recorded (user limits of
 * remembered users still hold). */
#define LIMITER_MAX_ENTRIES 65536
#define SOURCE_MAX          64

enum job_state { JOB_QUEUED, JOB_RUNNING, JOB_DONE, JOB_CANCELLED };

struct pwcheck_job {
    struct pwcheck_job *next;
    enum job_state state;
    int rc;
    unsigned roles;
    void (*done)(void *arg);
    void *arg;
    char source[SOURCE_MAX];
    char tenant[STORE_TENANT_MAX];
    char user[STORE_NAME_MAX];
    size_t pw_len;
    char pw[];
};

struct failures {
    time_t since;
    unsigned n;
};

struct pwcheck {
    struct trust_index *ti;
    struct pwcheck_config cfg;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct pwcheck_job *head, *tail;
    int queued;
    bool stop;
    struct map fails; /* "s\x01<source>" or "u\x01<tenant>\x01<user>" -> struct failures */
    pthread_t *threads;
    int n_threads;
};

static time_t clock_now(const struct pwcheck *pc)
{
    return pc->cfg.now ? pc->cfg.now() : time(NULL);
}

/* ---- the limiter (pc->mu held) ---- */

static size_t limiter_key(char *out, size_t cap, char kind, const char *a, const char *b)
{
    int n = snprintf(out, cap, "%c\x01%s\x01%s", kind, a, b ? b : "");
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

/* The entry for key, reset when its window has passed; NULL when absent. */
static struct failures *limiter_get(struct pwcheck *pc, const char *key, size_t klen, time_t now)
{
    struct failures *f = map_get(&pc->fails, key, klen);
    if (f && now - f->since >= pc->cfg.window_s) {
        f->since = now;
        f->n = 0;
    }
    return f;
}

struct sweep {
    time_t cutoff;
    char **keys;
    size_t n;
};

static void collect_expired(const char *key, void *value, void *arg)
{
    struct sweep *s = arg;
    if (s->keys && ((struct failures *)value)->since < s->cutoff) s->keys[s->n++] = (char *)key;
}

/* Forgets entries whose window has passed. */
static void limiter_sweep(struct pwcheck *pc, time_t now)
{
    struct sweep s = {now - pc->cfg.window_s, calloc(pc->fails.count + 1, sizeof(char *)), 0};
    map_each(&pc->fails, collect_expired, &s);
    for (size_t i = 0; i < s.n; i++) {
        /* The key lives in the entry map_del frees: copy it first. */
        char key[SOURCE_MAX + STORE_TENANT_MAX + STORE_NAME_MAX + 8];
        size_t klen = strlen(s.keys[i]);
        if (klen >= sizeof key) continue;
        memcpy(key, s.keys[i], klen + 1);
        free(map_del(&pc->fails, key, klen));
    }
    free(s.keys);
}

static bool limiter_over(struct pwcheck *pc, const char *source, const char *tenant,
                         const char *user, time_t now)
{
    char key[SOURCE_MAX + STORE_TENANT_MAX + STORE_NAME_MAX + 8];
    size_t klen;
    struct failures *f;
    if (source[0] && (klen = limiter_key(key, sizeof key, 's', source, NULL)) &&
        (f = limiter_get(pc, key, klen, now)) && f->n >= (unsigned)pc->cfg.max_failures)
        return true;
    klen = limiter_key(key, sizeof key, 'u', tenant, user);
    return klen && (f = limiter_get(pc, key, klen, now)) && f->n >= (unsigned)pc->cfg.max_failures;
}

static void limiter_count(struct pwcheck *pc, const char *key, size_t klen, time_t now)
{
    if (!klen) return;
    struct failures *f = limiter_get(pc, key, klen, now);
    if (!f) {
        if (pc->fails.count >= LIMITER_MAX_ENTRIES) limiter_sweep(pc, now);
        if (pc->fails.count >= LIMITER_MAX_ENTRIES || !(f = calloc(1, sizeof *f))) return;
        f->since = now;
        if (map_put(&pc->fails, key, klen, f, NULL) < 0) {
            free(f);
            return;
        }
    }
    f->n++;
}

/* Counts a result: failures against the source and the user; a success
 * clears the user's count (a forgotten password, then the right one). */
static void limiter_record(struct pwcheck *pc, const char *source, const char *tenant,
                           const char *user, int rc, time_t now)
{
    char key[SOURCE_MAX + STORE_TENANT_MAX + STORE_NAME_MAX + 8];
    size_t klen = limiter_key(key, sizeof key, 'u', tenant, user);
    if (rc == 0) {
        if (klen) free(map_del(&pc->fails, key, klen));
        return;
    }
    limiter_count(pc, key, klen, now);
    if (source[0]) limiter_count(pc, key, limiter_key(key, sizeof key, 's', source, NULL), now);
}

/* ---- checks ---- */

struct login {
    char tenant[STORE_TENANT_MAX];
    char user[STORE_NAME_MAX];
};

static int split_login(const char *login, size_t len, struct login *out)
{
    if (auth_split_username(login, len, out->tenant, sizeof out->tenant, out->user,
                            sizeof out->user) < 0 ||
        memchr(login, 0, len))
        return ERR_BAD_CREDENTIALS;
    return 0;
}

static int quick(struct pwcheck *pc, const char *source, const char *tenant, const char *user,
                 const char *pw, size_t pw_len, unsigned *roles)
{
    pthread_mutex_lock(&pc->mu);
    bool over = limiter_over(pc, source, tenant, user, clock_now(pc));
    pthread_mutex_unlock(&pc->mu);
    if (over) return ERR_LIMIT;
    return trust_password_cached(pc->ti, tenant, user, pw, pw_len, roles) ? 1 : 0;
}

/* The slow part, without the lock; then the result is counted. */
static int check_and_count(struct pwcheck *pc, const char *source, const char *tenant,
                           const char *user, const char *pw, size_t pw_len, unsigned *roles)
{
    int rc = trust_check_password(pc->ti, tenant, user, pw, pw_len, roles);
    if (rc < 0) rc = ERR_BAD_CREDENTIALS;
    pthread_mutex_lock(&pc->mu);
    limiter_record(pc, source, tenant, user, rc, clock_now(pc));
    pthread_mutex_unlock(&pc->mu);
    return rc;
}

int pwcheck_quick(struct pwcheck *pc, const char *source, const char *login, size_t login_len,
                  const char *pw, size_t pw_len, unsigned *roles)
{
    struct login l;
    GUARD(split_login(login, login_len, &l));
    return quick(pc, source, l.tenant, l.user, pw, pw_len, roles);
}

int pwcheck_verify(struct pwcheck *pc, const char *source, const char *login, size_t login_len,
                   const char *pw, size_t pw_len, unsigned *roles)
{
    struct login l;
    GUARD(split_login(login, login_len, &l));
    int q = quick(pc, source, l.tenant, l.user, pw, pw_len, roles);
    if (q != 0) return q == 1 ? 0 : q;
    return check_and_count(pc, source, l.tenant, l.user, pw, pw_len, roles);
}

/* ---- the pool ---- */

static void job_free(struct pwcheck_job *j)
{
    OPENSSL_cleanse(j->pw, j->pw_len);
    free(j);
}

static void *pool_main(void *arg)
{
    struct pwcheck *pc = arg;
    pthread_mutex_lock(&pc->mu);
    for (;;) {
        while (!pc->head && !pc->stop) pthread_cond_wait(&pc->cv, &pc->mu);
        if (pc->stop) break;
        struct pwcheck_job *j = pc->head;
        pc->head = j->next;
        if (!pc->head) pc->tail = NULL;
        pc->queued--;
        j->state = JOB_RUNNING;
        pthread_mutex_unlock(&pc->mu);
        int rc = check_and_count(pc, j->source, j->tenant, j->user, j->pw, j->pw_len, &j->roles);
        pthread_mutex_lock(&pc->mu);
        OPENSSL_cleanse(j->pw, j->pw_len);
        if (j->state == JOB_CANCELLED) {
            job_free(j);
            continue;
        }
        j->rc = rc;
        j->state = JOB_DONE;
        j->done(j->arg);
    }
    pthread_mutex_unlock(&pc->mu);
    return NULL;
}

int pwcheck_submit(struct pwcheck *pc, const char *source, const char *login, size_t login_len,
                   const char *pw, size_t pw_len, void (*done)(void *arg), void *arg,
                   struct pwcheck_job **out)
{
    struct login l;
    GUARD(split_login(login, login_len, &l));
    struct pwcheck_job *j = calloc(1, sizeof *j + pw_len + 1);
    if (!j) return ERR_NOMEM;
    snprintf(j->source, sizeof j->source, "%s", source);
    memcpy(j->tenant, l.tenant, sizeof j->tenant);
    memcpy(j->user, l.user, sizeof j->user);
    memcpy(j->pw, pw, pw_len);
    j->pw_len = pw_len;
    j->done = done;
    j->arg = arg;
    pthread_mutex_lock(&pc->mu);
    if (pc->queued >= pc->cfg.queue_max || pc->stop) {
        pthread_mutex_unlock(&pc->mu);
        job_free(j);
        return ERR_LIMIT;
    }
    if (pc->tail)
        pc->tail->next = j;
    else
        pc->head = j;
    pc->tail = j;
    pc->queued++;
    pthread_cond_signal(&pc->cv);
    pthread_mutex_unlock(&pc->mu);
    *out = j;
    return 0;
}

bool pwcheck_ready(struct pwcheck *pc, struct pwcheck_job *job)
{
    pthread_mutex_lock(&pc->mu);
    bool ready = job->state == JOB_DONE;
    pthread_mutex_unlock(&pc->mu);
    return ready;
}

int pwcheck_finish(struct pwcheck *pc, struct pwcheck_job *job, unsigned *roles)
{
    pthread_mutex_lock(&pc->mu);
    int rc = job->state == JOB_DONE ? job->rc : ERR_INTERNAL;
    *roles = job->roles;
    pthread_mutex_unlock(&pc->mu);
    job_free(job);
    return rc;
}

/* Unlinks a queued job (pc->mu held). */
static void queue_remove(struct pwcheck *pc, struct pwcheck_job *job)
{
    struct pwcheck_job *prev = NULL;
    for (struct pwcheck_job *j = pc->head; j; prev = j, j = j->next) {
        if (j != job) continue;
        if (prev)
            prev->next = j->next;
        else
            pc->head = j->next;
        if (pc->tail == j) pc->tail = prev;
        pc->queued--;
        return;
    }
}

void pwcheck_cancel(struct pwcheck *pc, struct pwcheck_job *job)
{
    pthread_mutex_lock(&pc->mu);
    bool free_now = job->state != JOB_RUNNING;
    if (job->state == JOB_QUEUED) queue_remove(pc, job);
    job->state = JOB_CANCELLED;
    pthread_mutex_unlock(&pc->mu);
    if (free_now) job_free(job);
}

int pwcheck_new(struct trust_index *ti, const struct pwcheck_config *cfg, struct pwcheck **out)
{
    struct pwcheck *pc = calloc(1, sizeof *pc);
    if (!pc) return ERR_NOMEM;
    pc->ti = ti;
    pc->cfg = *cfg;
    if (pc->cfg.threads < 1) pc->cfg.threads = 1;
    if (pc->cfg.window_s < 1) pc->cfg.window_s = 1;
    pthread_mutex_init(&pc->mu, NULL);
    pthread_cond_init(&pc->cv, NULL);
    map_init(&pc->fails);
    pc->threads = calloc((size_t)pc->cfg.threads, sizeof *pc->threads);
    if (!pc->threads) {
        pwcheck_free(pc);
        return ERR_NOMEM;
    }
    for (; pc->n_threads < pc->cfg.threads; pc->n_threads++) {
        if (pthread_create(&pc->threads[pc->n_threads], NULL, pool_main, pc) != 0) {
            pwcheck_free(pc);
            return ERR_INTERNAL;
        }
    }
    *out = pc;
    return 0;
}

static void free_value(const char *key, void *value, void *arg)
{
    (void)key;
    (void)arg;
    free(value);
}

void pwcheck_free(struct pwcheck *pc)
{
    if (!pc) return;
    pthread_mutex_lock(&pc->mu);
    pc->stop = true;
    pthread_cond_broadcast(&pc->cv);
    pthread_mutex_unlock(&pc->mu);
    for (int i = 0; i < pc->n_threads; i++) pthread_join(pc->threads[i], NULL);
    for (struct pwcheck_job *j = pc->head, *next; j; j = next) {
        next = j->next;
        job_free(j);
    }
    map_each(&pc->fails, free_value, NULL);
    map_free(&pc->fails);
    free(pc->threads);
    pthread_cond_destroy(&pc->cv);
    pthread_mutex_destroy(&pc->mu);
    free(pc);
}
