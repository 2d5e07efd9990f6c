/* Unit tests for the cross-node message envelope (src/cluster/envelope.c):
 * round trips, every truncation refused, properties that do not travel
 * with a message refused, and the UTF-8 payload check. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cluster/envelope.h"
#include "mqtt/props.h"

/* content type "text/plain", user property ("k", "v") */
static const uint8_t props[] = {0x03, 0,   10,  't',  'e', 'x', 't', '/', 'p', 'l',
                                'a',  'i', 'n', 0x26, 0,   1,   'k', 0,   1,   'v'};

static void write_env(struct buf *b, const struct envelope *e)
{
    buf_init(b, 0);
    assert_int_equal(envelope_write(b, e), 0);
}

static void test_envelope_round_trip(void **state)
{
    (void)state;
    struct envelope e = {2,     true,         0x0102030405060708ull,    42, 60,
                         props, sizeof props, (const uint8_t *)"hello", 5};
    struct buf b;
    write_env(&b, &e);
    struct envelope got;
    assert_int_equal(envelope_parse(buf_head(&b), buf_used(&b), &got), 0);
    assert_int_equal(got.qos, 2);
    assert_true(got.retain);
    assert_true(got.origin == e.origin);
    assert_true(got.seq == 42);
    assert_int_equal(got.expiry, 60);
    assert_int_equal(got.props_len, sizeof props);
    assert_memory_equal(got.props, props, sizeof props);
    assert_int_equal(got.payload_len, 5);
    assert_memory_equal(got.payload, "hello", 5);
    /* every strict prefix of the header is refused */
    size_t header = buf_used(&b) - 5;
    for (size_t n = 0; n < header; n++)
        if (envelope_parse(buf_head(&b), n, &got) == 0) fail_msg("prefix %zu accepted", n);
    buf_free(&b);
}

static void test_envelope_empty(void **state)
{
    (void)state;
    struct envelope e = {0, false, 1, 1, 0, NULL, 0, NULL, 0}, got;
    struct buf b;
    write_env(&b, &e);
    assert_int_equal(envelope_parse(buf_head(&b), buf_used(&b), &got), 0);
    assert_int_equal(got.props_len, 0);
    assert_int_equal(got.payload_len, 0);
    assert_false(got.retain);
    buf_free(&b);
}

static int parse_mutated(size_t at, uint8_t v)
{
    struct envelope e = {1, false, 1, 1, 0, props, sizeof props, (const uint8_t *)"x", 1}, got;
    struct buf b;
    write_env(&b, &e);
    b.data[b.off + at] = v;
    int rc = envelope_parse(buf_head(&b), buf_used(&b), &got);
    buf_free(&b);
    return rc;
}

static void test_envelope_bad_header(void **state)
{
    (void)state;
    assert_int_equal(parse_mutated(0, 2), ERR_MALFORMED);     /* version */
    assert_int_equal(parse_mutated(1, 3), ERR_MALFORMED);     /* QoS 3 */
    assert_int_equal(parse_mutated(1, 0x09), ERR_MALFORMED);  /* unknown flag */
    assert_int_equal(parse_mutated(22, 100), ERR_MALFORMED);  /* props longer than the rest */
    assert_int_equal(parse_mutated(23, 0x99), ERR_MALFORMED); /* unknown property id */
}

static void test_envelope_refuses_foreign_props(void **state)
{
    (void)state;
    static const uint8_t alias[] = {0x23, 0, 5}, subid[] = {0x0B, 7}, expiry[] = {0x02, 0, 0, 0, 9};
    const uint8_t *bad[] = {alias, subid, expiry};
    size_t lens[] = {sizeof alias, sizeof subid, sizeof expiry};
    for (int i = 0; i < 3; i++) {
        struct envelope e = {0, false, 1, 1, 0, bad[i], lens[i], NULL, 0}, got;
        struct buf b;
        write_env(&b, &e);
        assert_int_equal(envelope_parse(buf_head(&b), buf_used(&b), &got), ERR_MALFORMED);
        buf_free(&b);
    }
}

static void test_envelope_utf8_payload(void **state)
{
    (void)state;
    static const uint8_t fmt[] = {0x01, 1};
    struct envelope e = {0, false, 1, 1, 0, fmt, sizeof fmt, (const uint8_t *)"\xff", 1}, got;
    struct buf b;
    write_env(&b, &e);
    assert_int_equal(envelope_parse(buf_head(&b), buf_used(&b), &got), ERR_PROTO);
    buf_free(&b);
    e.payload = (const uint8_t *)"ok";
    e.payload_len = 2;
    write_env(&b, &e);
    assert_int_equal(envelope_parse(buf_head(&b), buf_used(&b), &got), 0);
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_envelope_round_trip),
        cmocka_unit_test(test_envelope_empty),
        cmocka_unit_test(test_envelope_bad_header),
        cmocka_unit_test(test_envelope_refuses_foreign_props),
        cmocka_unit_test(test_envelope_utf8_payload),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
