/* Topic authorization rules: the mosquitto acl_file format and its order of
 * evaluation, placeholders, failing closed on values that would change a
 * pattern's levels, and the SUBSCRIBE verdict (whole filter allowed, denied,
 * or decided per topic). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "identity/acl.h"

static struct acl_matcher *compile(const char *text, bool default_allow, const char *user,
                                   const char *client_id)
{
    struct acl_rules r;
    char err[128];
    assert_int_equal(acl_file_parse(text, strlen(text), default_allow, &r, err, sizeof err), 0);
    struct acl_client c = {.user = user, .client_id = client_id, .tenant = "t1"};
    struct acl_matcher *m;
    assert_int_equal(acl_compile(&r, &c, &m), 0);
    acl_rules_free(&r);
    return m;
}

static bool may(const struct acl_matcher *m, enum acl_action a, const char *topic)
{
    return acl_may(m, a, topic, strlen(topic));
}

static enum acl_verdict sub(const struct acl_matcher *m, const char *filter)
{
    return acl_may_subscribe(m, filter, strlen(filter));
}

static const char *const MOSQ_EXAMPLE =
    "# This affects access control for clients with no username.\n"
    "topic read $SYS/#\n"
    "\n"
    "# This only affects clients with username \"roger\".\n"
    "user roger\n"
    "topic foo/bar\n"
    "\n"
    "# This affects all clients.\n"
    "pattern write $SYS/broker/connection/%c/state\n";

static void test_acl_file_sections(void **state)
{
    (void)state;
    struct acl_matcher *anon = compile(MOSQ_EXAMPLE, false, NULL, "c1");
    assert_true(may(anon, ACL_READ, "$SYS/broker/load"));
    assert_false(may(anon, ACL_WRITE, "$SYS/broker/load"));
    assert_false(may(anon, ACL_READ, "foo/bar"));
    assert_true(may(anon, ACL_WRITE, "$SYS/broker/connection/c1/state"));
    assert_false(may(anon, ACL_WRITE, "$SYS/broker/connection/c2/state"));
    acl_matcher_free(anon);

    struct acl_matcher *roger = compile(MOSQ_EXAMPLE, false, "roger", "c2");
    assert_true(may(roger, ACL_READ, "foo/bar"));
    assert_true(may(roger, ACL_WRITE, "foo/bar"));
    assert_false(may(roger, ACL_READ, "$SYS/broker/load"));
    assert_true(may(roger, ACL_WRITE, "$SYS/broker/connection/c2/state"));
    acl_matcher_free(roger);

    struct acl_matcher *other = compile(MOSQ_EXAMPLE, false, "sam", "c3");
    assert_false(may(other, ACL_READ, "foo/bar"));
    acl_matcher_free(other);
}

static void test_acl_deny_wins_over_a_grant_anywhere_in_the_file(void **state)
{
    (void)state;
    const char *text = "topic readwrite test/#\n"
                       "topic deny test/nosubscribe\n";
    struct acl_matcher *m = compile(text, true, NULL, "c");
    assert_false(may(m, ACL_READ, "test/nosubscribe"));
    assert_false(may(m, ACL_WRITE, "test/nosubscribe"));
    assert_true(may(m, ACL_WRITE, "test/other"));
    assert_true(may(m, ACL_READ, "elsewhere")); /* default allow */
    assert_int_equal(sub(m, "test/nosubscribe"), ACL_DENIED);
    assert_int_equal(sub(m, "test/other"), ACL_ALLOWED);
    assert_int_equal(sub(m, "test/#"), ACL_PER_TOPIC);
    assert_int_equal(sub(m, "#"), ACL_PER_TOPIC);
    acl_matcher_free(m);
}

static void test_acl_access_words_and_default(void **state)
{
    (void)state;
    const char *text = "topic read r/#\ntopic write w/#\ntopic a b/c\n";
    struct acl_matcher *m = compile(text, false, NULL, "c");
    assert_true(may(m, ACL_READ, "r/x"));
    assert_false(may(m, ACL_WRITE, "r/x"));
    assert_true(may(m, ACL_WRITE, "w/x"));
    assert_false(may(m, ACL_READ, "w/x"));
    /* No access word: the whole rest is the filter, read and write. */
    assert_true(may(m, ACL_READ, "a b/c"));
    assert_false(may(m, ACL_READ, "z"));
    assert_int_equal(sub(m, "z"), ACL_DENIED);
    assert_int_equal(sub(m, "w/#"), ACL_DENIED); /* write-only grants no read */
    acl_matcher_free(m);
}

static void test_acl_placeholders(void **state)
{
    (void)state;
    const char *text = "pattern readwrite telemetry/%u/#\n"
                       "pattern read cmd/%c\n"
                       "pattern read tenants/%t/news\n";
    struct acl_matcher *m = compile(text, false, "dev-1", "d:dev-1");
    assert_true(may(m, ACL_WRITE, "telemetry/dev-1/temp"));
    assert_false(may(m, ACL_WRITE, "telemetry/dev-2/temp"));
    assert_true(may(m, ACL_READ, "cmd/d:dev-1"));
    assert_true(may(m, ACL_READ, "tenants/t1/news"));
    assert_int_equal(sub(m, "telemetry/dev-1/#"), ACL_ALLOWED);
    assert_int_equal(sub(m, "telemetry/+/temp"), ACL_PER_TOPIC);
    assert_int_equal(sub(m, "telemetry/dev-2/#"), ACL_DENIED);
    acl_matcher_free(m);
    /* A pattern with %u does not apply to clients without a user name. */
    m = compile("pattern deny telemetry/%u/#\n", true, NULL, "c");
    assert_true(may(m, ACL_WRITE, "telemetry/x/y"));
    acl_matcher_free(m);
}

static void test_acl_unsafe_values_fail_closed(void **state)
{
    (void)state;
    /* A ClientId with '/' would reach another client's level. */
    struct acl_matcher *m = compile("pattern readwrite clients/%c/#\n", false, NULL, "a/b");
    assert_false(may(m, ACL_WRITE, "clients/a/b/x"));
    assert_false(may(m, ACL_WRITE, "clients/a/x"));
    acl_matcher_free(m);
    m = compile("pattern deny private/%c/#\n", true, NULL, "x+");
    assert_false(may(m, ACL_WRITE, "anything"));
    assert_false(may(m, ACL_READ, "$SYS/x"));
    assert_int_equal(sub(m, "#"), ACL_DENIED);
    acl_matcher_free(m);
}

static void test_acl_subscribe_verdicts(void **state)
{
    (void)state;
    const char *text = "topic read a/+/c\ntopic read b/#\ntopic read $SYS/#\n";
    struct acl_matcher *m = compile(text, false, NULL, "c");
    assert_int_equal(sub(m, "a/x/c"), ACL_ALLOWED);
    assert_int_equal(sub(m, "a/+/c"), ACL_ALLOWED);
    assert_int_equal(sub(m, "a/#"), ACL_PER_TOPIC);
    assert_int_equal(sub(m, "a/x"), ACL_DENIED);
    assert_int_equal(sub(m, "b"), ACL_ALLOWED); /* b/# matches its parent b */
    assert_int_equal(sub(m, "b/+/+"), ACL_ALLOWED);
    assert_int_equal(sub(m, "+/x/c"), ACL_PER_TOPIC);
    /* '#' and '+' first levels never reach $ topics, and the reverse. */
    assert_int_equal(sub(m, "$SYS/broker"), ACL_ALLOWED);
    assert_int_equal(sub(m, "#"), ACL_PER_TOPIC);
    acl_matcher_free(m);
    m = compile("topic read #\n", false, NULL, "c");
    assert_int_equal(sub(m, "$SYS/x"), ACL_DENIED);
    assert_int_equal(sub(m, "x/#"), ACL_ALLOWED);
    assert_false(may(m, ACL_READ, "$SYS/x"));
    acl_matcher_free(m);
}

static void test_acl_parse_errors_name_the_line(void **state)
{
    (void)state;
    struct acl_rules r;
    char err[128];
    const char *bad[] = {"user\n", "topic read a/#/b\n", "frobnicate x\n", "pattern\n",
                         "\n\ntopic read a+\n"};
    const char *lines[] = {"1: ", "1: ", "1: ", "1: ", "3: "};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(acl_file_parse(bad[i], strlen(bad[i]), true, &r, err, sizeof err),
                         ERR_INVALID);
        assert_memory_equal(err, lines[i], strlen(lines[i]));
    }
    const char nul[] = "topic read a\0b\n";
    assert_int_equal(acl_file_parse(nul, sizeof nul - 1, true, &r, err, sizeof err), ERR_INVALID);
}

static void test_acl_publish_answers_agree_with_the_rules_when_remembered(void **state)
{
    (void)state;
    struct acl_matcher *m = compile("topic write a/#\ntopic deny a/secret\n", false, NULL, "c");
    const char *topics[] = {"a/x", "a/x", "a/secret", "a/secret", "a/x", "b", "b", "a/x"};
    for (size_t i = 0; i < sizeof topics / sizeof topics[0]; i++)
        assert_int_equal(acl_may_publish(m, topics[i], strlen(topics[i])),
                         may(m, ACL_WRITE, topics[i]));
    char longer[100];
    memset(longer, 'x', sizeof longer - 1);
    longer[0] = 'a', longer[1] = '/', longer[sizeof longer - 1] = 0;
    assert_true(acl_may_publish(m, longer, strlen(longer)));
    assert_false(acl_may_publish(m, "a/secret", 8));
    acl_matcher_free(m);
}

static void test_acl_no_matcher_allows_everything(void **state)
{
    (void)state;
    assert_true(acl_may(NULL, ACL_WRITE, "x", 1));
    assert_int_equal(acl_may_subscribe(NULL, "#", 1), ACL_ALLOWED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_acl_file_sections),
        cmocka_unit_test(test_acl_deny_wins_over_a_grant_anywhere_in_the_file),
        cmocka_unit_test(test_acl_access_words_and_default),
        cmocka_unit_test(test_acl_placeholders),
        cmocka_unit_test(test_acl_unsafe_values_fail_closed),
        cmocka_unit_test(test_acl_subscribe_verdicts),
        cmocka_unit_test(test_acl_parse_errors_name_the_line),
        cmocka_unit_test(test_acl_publish_answers_agree_with_the_rules_when_remembered),
        cmocka_unit_test(test_acl_no_matcher_allows_everything),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
