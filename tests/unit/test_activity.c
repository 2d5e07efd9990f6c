/* The refusal rings and device last-seen table: newest first, bounded per
 * tenant (the oldest is overwritten), tenants apart, and a zero-sized ring
 * keeping nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "identity/activity.h"

static void add(struct activity *a, const char *tenant, int i)
{
    struct refusal r = {.time = i};
    snprintf(r.cn, sizeof r.cn, "d%d", i);
    snprintf(r.reason, sizeof r.reason, "expired");
    activity_refused(a, tenant, &r);
}

static void test_activity_refusals_newest_first(void **state)
{
    (void)state;
    struct activity *a;
    assert_int_equal(activity_new(1000, &a), 0);
    for (int i = 1; i <= 3; i++) add(a, "t1", i);
    struct refusal *v;
    size_t n;
    assert_int_equal(activity_refusals(a, "t1", &v, &n), 0);
    assert_int_equal(n, 3);
    assert_string_equal(v[0].cn, "d3");
    assert_string_equal(v[2].cn, "d1");
    free(v);
    activity_free(a);
}

static void test_activity_ring_keeps_the_latest(void **state)
{
    (void)state;
    struct activity *a;
    assert_int_equal(activity_new(5, &a), 0);
    for (int i = 1; i <= 12; i++) add(a, "t1", i);
    struct refusal *v;
    size_t n;
    assert_int_equal(activity_refusals(a, "t1", &v, &n), 0);
    assert_int_equal(n, 5);
    for (size_t i = 0; i < n; i++) assert_int_equal(v[i].time, 12 - (int)i);
    free(v);
    activity_free(a);
}

static void test_activity_tenants_apart(void **state)
{
    (void)state;
    struct activity *a;
    assert_int_equal(activity_new(10, &a), 0);
    add(a, "t1", 1);
    add(a, "", 2); /* no tenant: not kept */
    struct refusal *v;
    size_t n;
    assert_int_equal(activity_refusals(a, "t2", &v, &n), 0);
    assert_int_equal(n, 0);
    assert_null(v);
    assert_int_equal(activity_refusals(a, "", &v, &n), 0);
    assert_int_equal(n, 0);
    activity_free(a);
}

static void test_activity_zero_ring_keeps_nothing(void **state)
{
    (void)state;
    struct activity *a;
    assert_int_equal(activity_new(0, &a), 0);
    add(a, "t1", 1);
    struct refusal *v;
    size_t n;
    assert_int_equal(activity_refusals(a, "t1", &v, &n), 0);
    assert_int_equal(n, 0);
    activity_free(a);
}

static void test_activity_last_seen(void **state)
{
    (void)state;
    struct activity *a;
    struct device_seen d;
    assert_int_equal(activity_new(10, &a), 0);
    assert_false(activity_device(a, "t1", "d1", &d));
    activity_seen(a, "t1", "d1", 100, 5000);
    activity_seen(a, "t1", "d1", 200, 6000);
    assert_true(activity_device(a, "t1", "d1", &d));
    assert_int_equal(d.last_seen, 200);
    assert_int_equal(d.not_after, 6000);
    assert_false(activity_device(a, "t2", "d1", &d));
    activity_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_activity_refusals_newest_first),
        cmocka_unit_test(test_activity_ring_keeps_the_latest),
        cmocka_unit_test(test_activity_tenants_apart),
        cmocka_unit_test(test_activity_zero_ring_keeps_nothing),
        cmocka_unit_test(test_activity_last_seen),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
