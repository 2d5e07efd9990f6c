/* Password checks off the network threads: the failed-attempt limits per
 * source and per user (with an injected clock, so no test waits for a window
 * to pass), the pool's asynchronous answers and their cancellation, and an
 * unknown user costing as much as a wrong password. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <pthread.h>

#include "identity/password.h"
#include "identity/pwcheck.h"
#include "identity/trust.h"
#include "store/store.h"

static time_t fake_now = 1700000000;

static time_t clock_fake(void)
{
    return fake_now;
}

struct fx {
    struct trust_index *ti;
    struct pwcheck *pc;
};

static void add_user(struct trust_index *ti, const char *tenant, const char *name, const char *pw,
                     unsigned iterations)
{
    char hash[PASSWORD_HASH_MAX];
    assert_int_equal(password_hash(pw, strlen(pw), iterations, hash, sizeof hash), 0);
    assert_int_equal(trust_user_put(ti, tenant, name, hash, STORE_ROLE_TENANT_ADMIN), 0);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    struct pwcheck_config cfg = {
        .threads = 2, .queue_max = 4, .max_failures = 3, .window_s = 60, .now = clock_fake};
    if (!f || trust_new(&f->ti) < 0 || pwcheck_new(f->ti, &cfg, &f->pc) < 0) return -1;
    add_user(f->ti, "t1", "alice", "alice-secret", 1000);
    add_user(f->ti, "t1", "bob", "bob-secret", 1000);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    pwcheck_free(f->pc);
    trust_free(f->ti);
    free(f);
    return 0;
}

static int verify(struct fx *f, const char *source, const char *login, const char *pw)
{
    unsigned roles = 0;
    int rc = pwcheck_verify(f->pc, source, login, strlen(login), pw, strlen(pw), &roles);
    if (rc == 0) assert_int_equal(roles, STORE_ROLE_TENANT_ADMIN);
    return rc;
}

static void test_pwcheck_right_and_wrong_passwords(void **state)
{
    struct fx *f = *state;
    assert_int_equal(verify(f, "10.0.0.1", "t1/alice", "alice-secret"), 0);
    assert_int_equal(verify(f, "10.0.0.1", "t1/alice", "wrong"), ERR_BAD_CREDENTIALS);
    assert_int_equal(verify(f, "10.0.0.1", "t1/nobody", "x"), ERR_BAD_CREDENTIALS);
    assert_int_equal(verify(f, "10.0.0.1", "no-slash", "x"), ERR_BAD_CREDENTIALS);
}

static void test_pwcheck_user_locked_after_max_failures_then_window_passes(void **state)
{
    struct fx *f = *state;
    /* Failures from three sources: the user's own limit is reached. */
    const char *sources[] = {"10.0.1.1", "10.0.1.2", "10.0.1.3"};
    for (int i = 0; i < 3; i++)
        assert_int_equal(verify(f, sources[i], "t1/alice", "guess"), ERR_BAD_CREDENTIALS);
    /* Even the right password is refused now, unchecked, from a fresh source... */
    assert_int_equal(verify(f, "10.0.1.9", "t1/alice", "alice-secret"), ERR_LIMIT);
    /* ...while another user is unaffected. */
    assert_int_equal(verify(f, "10.0.1.9", "t1/bob", "bob-secret"), 0);
    fake_now += 61;
    assert_int_equal(verify(f, "10.0.1.9", "t1/alice", "alice-secret"), 0);
}

static void test_pwcheck_source_locked_across_users(void **state)
{
    struct fx *f = *state;
    assert_int_equal(verify(f, "10.0.2.1", "t1/u1", "x"), ERR_BAD_CREDENTIALS);
    assert_int_equal(verify(f, "10.0.2.1", "t1/u2", "x"), ERR_BAD_CREDENTIALS);
    assert_int_equal(verify(f, "10.0.2.1", "t2/u3", "x"), ERR_BAD_CREDENTIALS);
    assert_int_equal(verify(f, "10.0.2.1", "t1/bob", "bob-secret"), ERR_LIMIT);
    assert_int_equal(verify(f, "10.0.2.2", "t1/bob", "bob-secret"), 0);
    fake_now += 61;
}

static void test_pwcheck_success_clears_the_users_count(void **state)
{
    struct fx *f = *state;
    assert_int_equal(verify(f, "10.0.3.1", "t1/bob", "typo"), ERR_BAD_CREDENTIALS);
    assert_int_equal(verify(f, "10.0.3.2", "t1/bob", "typo"), ERR_BAD_CREDENTIALS);
    assert_int_equal(verify(f, "10.0.3.3", "t1/bob", "bob-secret"), 0);
    assert_int_equal(verify(f, "10.0.3.4", "t1/bob", "typo"), ERR_BAD_CREDENTIALS);
    assert_int_equal(verify(f, "10.0.3.5", "t1/bob", "typo"), ERR_BAD_CREDENTIALS);
    assert_int_equal(verify(f, "10.0.3.6", "t1/bob", "bob-secret"), 0);
    fake_now += 61;
}

static void test_pwcheck_quick_answers_only_from_the_cache(void **state)
{
    struct fx *f = *state;
    unsigned roles = 0;
    const char *pw = "bob-secret";
    /* A fresh check is needed for a password nobody verified yet. */
    assert_int_equal(pwcheck_quick(f->pc, "10.0.4.1", "t1/bob", 6, "other-pw", 8, &roles), 0);
    assert_int_equal(verify(f, "10.0.4.1", "t1/bob", pw), 0);
    assert_int_equal(pwcheck_quick(f->pc, "10.0.4.1", "t1/bob", 6, pw, strlen(pw), &roles), 1);
    assert_int_equal(roles, STORE_ROLE_TENANT_ADMIN);
}

struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
};

static void on_done(void *arg)
{
    struct waiter *w = arg;
    pthread_mutex_lock(&w->mu);
    w->done++;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static void test_pwcheck_pool_answers_asynchronously(void **state)
{
    struct fx *f = *state;
    struct waiter w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
    struct pwcheck_job *good, *bad;
    assert_int_equal(
        pwcheck_submit(f->pc, "10.0.5.1", "t1/alice", 8, "alice-secret", 12, on_done, &w, &good),
        0);
    assert_int_equal(pwcheck_submit(f->pc, "10.0.5.1", "t1/alice", 8, "nope", 4, on_done, &w, &bad),
                     0);
    pthread_mutex_lock(&w.mu);
    while (w.done < 2) pthread_cond_wait(&w.cv, &w.mu);
    pthread_mutex_unlock(&w.mu);
    unsigned roles = 0;
    assert_true(pwcheck_ready(f->pc, good) && pwcheck_ready(f->pc, bad));
    assert_int_equal(pwcheck_finish(f->pc, good, &roles), 0);
    assert_int_equal(roles, STORE_ROLE_TENANT_ADMIN);
    assert_int_equal(pwcheck_finish(f->pc, bad, &roles), ERR_BAD_CREDENTIALS);
}

static void test_pwcheck_queue_is_bounded_and_cancel_frees(void **state)
{
    struct fx *f = *state;
    struct waiter w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
    struct pwcheck_job *jobs[16];
    int n = 0, refused = 0;
    /* Two threads and a queue of four: some of 16 quick submissions are refused.
     * Each is an unknown user from its own source, so every check is a full
     * hash at the production cost (nothing cached, no lockout shortcut) and the
     * threads cannot drain the queue as fast as it is filled. */
    for (int i = 0; i < 16; i++) {
        char source[32], login[32];
        snprintf(source, sizeof source, "10.0.6.%d", i + 1);
        int len = snprintf(login, sizeof login, "t1/ghost%d", i);
        int rc =
            pwcheck_submit(f->pc, source, login, (size_t)len, "guess", 5, on_done, &w, &jobs[n]);
        if (rc == ERR_LIMIT) {
            refused++;
        } else {
            assert_int_equal(rc, 0);
            n++;
        }
    }
    assert_true(refused > 0);
    for (int i = 0; i < n; i++) pwcheck_cancel(f->pc, jobs[i]); /* queued, running or done */
}

static void test_pwcheck_unknown_user_costs_a_real_check(void **state)
{
    struct fx *f = *state;
    add_user(f->ti, "t1", "carol", "carol-secret", 0); /* the production cost */
    clock_t t0 = clock();
    for (int i = 0; i < 3; i++)
        assert_int_equal(verify(f, "10.0.7.1", "t1/carol", "wrong"), ERR_BAD_CREDENTIALS);
    clock_t known = clock() - t0;
    fake_now += 61;
    t0 = clock();
    for (int i = 0; i < 3; i++)
        assert_int_equal(verify(f, "10.0.7.2", "t9/nobody", "wrong"), ERR_BAD_CREDENTIALS);
    clock_t unknown = clock() - t0;
    /* Same work, so the same order of CPU time (the first unknown also makes
     * the dummy hash once: unknown may be larger, never much smaller). */
    assert_true(unknown * 2 > known);
    fake_now += 61;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_pwcheck_right_and_wrong_passwords, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_pwcheck_user_locked_after_max_failures_then_window_passes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pwcheck_source_locked_across_users, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pwcheck_success_clears_the_users_count, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_pwcheck_quick_answers_only_from_the_cache, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_pwcheck_pool_answers_asynchronously, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pwcheck_queue_is_bounded_and_cancel_frees, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_pwcheck_unknown_user_costs_a_real_check, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
