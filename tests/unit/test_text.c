/* Untrusted text: UTF-8 well-formedness (overlongs, surrogates, truncated
 * and out-of-range sequences), the printable rule for stored names, and the
 * escaping that logs and JSON replies use. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "core/text.h"

static bool valid(const char *s)
{
    return text_utf8_valid(s, strlen(s));
}

static void test_text_utf8_accepts_well_formed(void **state)
{
    (void)state;
    assert_true(valid(""));
    assert_true(valid("plain ascii"));
    assert_true(valid("caf\xc3\xa9"));       /* U+00E9 */
    assert_true(valid("\xe2\x82\xac"));      /* U+20AC */
    assert_true(valid("\xf0\x9f\x98\x80"));  /* U+1F600 */
    assert_true(valid("\xf4\x8f\xbf\xbf"));  /* U+10FFFF */
    assert_true(text_utf8_valid("a\0b", 3)); /* length is explicit */
}

static void test_text_utf8_refuses_malformed(void **state)
{
    (void)state;
    assert_false(valid("\xff"));
    assert_false(valid("\x80"));             /* lone continuation */
    assert_false(valid("\xc3"));             /* truncated */
    assert_false(valid("\xc3("));            /* bad continuation */
    assert_false(valid("\xc0\xaf"));         /* overlong '/' */
    assert_false(valid("\xe0\x80\xaf"));     /* overlong '/' */
    assert_false(valid("\xed\xa0\x80"));     /* surrogate U+D800 */
    assert_false(valid("\xf4\x90\x80\x80")); /* above U+10FFFF */
    assert_false(valid("\xf8\x88\x80\x80\x80"));
    assert_false(valid("ok\xe2\x82")); /* truncated at the end */
}

static void test_text_printable(void **state)
{
    (void)state;
    assert_true(text_printable("device-1.caf\xc3\xa9 \xe2\x82\xac"));
    assert_false(text_printable("a\nb"));
    assert_false(text_printable("a\tb"));
    assert_false(text_printable("esc\x1b[2J"));
    assert_false(text_printable("del\x7f"));
    assert_false(text_printable("nel\xc2\x85")); /* C1 control U+0085 */
    assert_true(text_printable("nbsp\xc2\xa0")); /* U+00A0 is not a control */
    assert_false(text_printable("bad\xff"));
}

static void expect_escape(const char *in, size_t len, const char *want)
{
    char out[256];
    size_t n = text_escape(in, len, out, sizeof out);
    assert_string_equal(out, want);
    assert_int_equal(n, strlen(want));
}

static void test_text_escape(void **state)
{
    (void)state;
    expect_escape("plain", 5, "plain");
    expect_escape("a\nb\r\tc", 6, "a\\nb\\r\\tc");
    expect_escape("\x1b[31m", 5, "\\x1b[31m");
    expect_escape("x\x7f", 2, "x\\x7f");
    expect_escape("a\0b", 3, "a\\x00b");
    expect_escape("nel\xc2\x85.", 6, "nel\\u0085.");
    expect_escape("bad\xff\xc3", 5, "bad\\xff\\xc3");
    expect_escape("caf\xc3\xa9", 5, "caf\xc3\xa9");
    expect_escape("back\\slash", 10, "back\\slash");
}

static void test_text_escape_never_cuts_an_escape(void **state)
{
    (void)state;
    char out[6];
    /* "ab\n" needs 4 bytes + NUL: fits; "ab\ncd" would need 6 + NUL. */
    assert_int_equal(text_escape("ab\ncd", 5, out, sizeof out), 5);
    assert_string_equal(out, "ab\\nc");
    char small[4];
    assert_int_equal(text_escape("ab\n", 3, small, sizeof small), 2);
    assert_string_equal(small, "ab");
    assert_int_equal(text_escape("x", 1, small, 0), 0);
}

static void test_text_escape_dup_worst_case(void **state)
{
    (void)state;
    char in[65];
    memset(in, 0xff, 64);
    in[64] = 0;
    char *e = text_escape_dup(in);
    assert_non_null(e);
    assert_int_equal(strlen(e), 64 * 4);
    assert_memory_equal(e, "\\xff\\xff", 8);
    free(e);
}

static void test_text_url_redact(void **state)
{
    (void)state;
    char out[128];
    const char *in = "nats://user:s3cret@h1:4222, nats://h2:4222,nats://tok@h3/x,nats://a/b@c";
    text_url_redact(in, strlen(in), out, sizeof out);
    assert_string_equal(out, "nats://***@h1:4222, nats://h2:4222,nats://***@h3/x,nats://a/b@c");
    text_url_redact(in, strlen(in), out, 12);
    assert_string_equal(out, "nats://***@");
    text_url_redact("://@", 4, out, sizeof out);
    assert_string_equal(out, "://***@");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_utf8_accepts_well_formed),
        cmocka_unit_test(test_text_utf8_refuses_malformed),
        cmocka_unit_test(test_text_printable),
        cmocka_unit_test(test_text_escape),
        cmocka_unit_test(test_text_escape_never_cuts_an_escape),
        cmocka_unit_test(test_text_escape_dup_worst_case),
        cmocka_unit_test(test_text_url_redact),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
