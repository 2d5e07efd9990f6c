/* MQTT 5.0 properties: round trips through the encoder and parser, and each
 * way a property list can be wrong, with the error class the spec names for
 * it (malformed 0x81 or protocol error 0x82). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "mqtt/props.h"

#define BYTES(s) ((struct mqtt_bytes){(const uint8_t *)(s), (uint16_t)(sizeof(s) - 1)})

/* Parses a list given as its bytes after the length (the length is added). */
static int parse_raw(const uint8_t *p, size_t n, enum mqtt_props_where where,
                     struct mqtt_props *out)
{
    uint8_t buf[512];
    assert_true(n < 128);
    buf[0] = (uint8_t)n;
    if (n) memcpy(buf + 1, p, n);
    struct rd r = rd_make(buf, n + 1);
    int rc = mqtt_props_parse(&r, where, out);
    if (rc == 0) assert_int_equal(rd_left(&r), 0);
    return rc;
}

static void test_props_publish_round_trip(void **state)
{
    (void)state;
    struct mqtt_user_prop users[] = {{BYTES("site"), BYTES("hall 2")}, {BYTES("site"), BYTES("b")}};
    uint32_t ids[] = {7, 300000};
    struct mqtt_props in = {
        .has = 1ull << MQTT_PROP_PAYLOAD_FORMAT | 1ull << MQTT_PROP_MESSAGE_EXPIRY |
               1ull << MQTT_PROP_CONTENT_TYPE | 1ull << MQTT_PROP_RESPONSE_TOPIC |
               1ull << MQTT_PROP_CORRELATION_DATA | 1ull << MQTT_PROP_TOPIC_ALIAS,
        .payload_format = 1,
        .message_expiry = 3600,
        .content_type = BYTES("text/plain"),
        .response_topic = BYTES("reply/here"),
        .correlation_data = BYTES("\x00\x01\x02"),
        .topic_alias = 5,
        .users = users,
        .n_users = 2,
        .sub_ids = ids,
        .n_sub_ids = 2,
    };
    struct buf b;
    buf_init(&b, 0);
    assert_int_equal(mqtt_props_encode(&b, MQTT_IN_PUBLISH, &in), 0);
    assert_int_equal(buf_used(&b), 1 + mqtt_props_size(&in));
    struct rd r = rd_make(buf_head(&b), buf_used(&b));
    struct mqtt_props out;
    assert_int_equal(mqtt_props_parse(&r, MQTT_IN_PUBLISH, &out), 0);
    assert_int_equal(out.payload_format, 1);
    assert_int_equal(out.message_expiry, 3600);
    assert_memory_equal(out.content_type.p, "text/plain", 10);
    assert_memory_equal(out.response_topic.p, "reply/here", 10);
    assert_int_equal(out.correlation_data.len, 3);
    assert_int_equal(out.topic_alias, 5);
    assert_int_equal(out.n_users, 2);
    assert_int_equal(out.n_sub_ids, 2);
    assert_int_equal(out.subscription_id, 7);
    size_t pos = 0;
    struct mqtt_user_prop u;
    assert_int_equal(mqtt_props_next(&out, MQTT_PROP_USER_PROPERTY, &pos, &u, NULL), 1);
    assert_memory_equal(u.value.p, "hall 2", 6);
    assert_int_equal(mqtt_props_next(&out, MQTT_PROP_USER_PROPERTY, &pos, &u, NULL), 1);
    assert_memory_equal(u.value.p, "b", 1);
    assert_int_equal(mqtt_props_next(&out, MQTT_PROP_USER_PROPERTY, &pos, &u, NULL), 0);
    uint32_t id;
    pos = 0;
    assert_int_equal(mqtt_props_next(&out, MQTT_PROP_SUBSCRIPTION_ID, &pos, NULL, &id), 1);
    assert_int_equal(id, 7);
    assert_int_equal(mqtt_props_next(&out, MQTT_PROP_SUBSCRIPTION_ID, &pos, NULL, &id), 1);
    assert_int_equal(id, 300000);
    buf_free(&b);
}

static void test_props_connack_round_trip(void **state)
{
    (void)state;
    struct mqtt_props in = {
        .has = 1ull << MQTT_PROP_RECEIVE_MAXIMUM | 1ull << MQTT_PROP_TOPIC_ALIAS_MAXIMUM |
               1ull << MQTT_PROP_ASSIGNED_CLIENT_ID | 1ull << MQTT_PROP_REASON_STRING |
               1ull << MQTT_PROP_SERVER_KEEPALIVE | 1ull << MQTT_PROP_SHARED_SUB_AVAILABLE,
        .receive_maximum = 100,
        .topic_alias_maximum = 64,
        .assigned_client_id = BYTES("auto-1"),
        .reason_string = BYTES("ca not in chain"),
        .server_keepalive = 60,
        .shared_sub_available = 1,
    };
    struct buf b;
    buf_init(&b, 0);
    assert_int_equal(mqtt_props_encode(&b, MQTT_IN_CONNACK, &in), 0);
    struct rd r = rd_make(buf_head(&b), buf_used(&b));
    struct mqtt_props out;
    assert_int_equal(mqtt_props_parse(&r, MQTT_IN_CONNACK, &out), 0);
    assert_int_equal(out.has, in.has);
    assert_int_equal(out.receive_maximum, 100);
    assert_memory_equal(out.reason_string.p, "ca not in chain", 15);
    buf_free(&b);
    /* A property a CONNACK may not carry is not encoded into one. */
    struct mqtt_props bad = {.has = 1ull << MQTT_PROP_TOPIC_ALIAS, .topic_alias = 1};
    buf_init(&b, 0);
    assert_int_equal(mqtt_props_encode(&b, MQTT_IN_CONNACK, &bad), ERR_INVALID);
    buf_free(&b);
}

static void test_props_empty_list(void **state)
{
    (void)state;
    struct mqtt_props out;
    assert_int_equal(parse_raw(NULL, 0, MQTT_IN_DISCONNECT, &out), 0);
    assert_int_equal(out.has, 0);
}

static void test_props_duplicate_is_a_protocol_error(void **state)
{
    (void)state;
    struct mqtt_props out;
    const uint8_t twice[] = {0x11, 0, 0, 0, 1, 0x11, 0, 0, 0, 2};
    assert_int_equal(parse_raw(twice, sizeof twice, MQTT_IN_CONNECT, &out), ERR_PROTO);
    /* Several subscription identifiers: fine in PUBLISH, not in SUBSCRIBE. */
    const uint8_t ids[] = {0x0B, 1, 0x0B, 2};
    assert_int_equal(parse_raw(ids, sizeof ids, MQTT_IN_PUBLISH, &out), 0);
    assert_int_equal(parse_raw(ids, sizeof ids, MQTT_IN_SUBSCRIBE, &out), ERR_PROTO);
    /* User properties may repeat anywhere. */
    const uint8_t users[] = {0x26, 0, 1, 'a', 0, 0, 0x26, 0, 1, 'a', 0, 0};
    assert_int_equal(parse_raw(users, sizeof users, MQTT_IN_SUBACK, &out), 0);
    assert_int_equal(out.n_users, 2);
}

static void test_props_misplaced_or_unknown_is_malformed(void **state)
{
    (void)state;
    struct mqtt_props out;
    const uint8_t alias_in_connect[] = {0x23, 0, 1};
    assert_int_equal(parse_raw(alias_in_connect, 3, MQTT_IN_CONNECT, &out), ERR_MALFORMED);
    const uint8_t will_delay_in_publish[] = {0x18, 0, 0, 0, 5};
    assert_int_equal(parse_raw(will_delay_in_publish, 5, MQTT_IN_PUBLISH, &out), ERR_MALFORMED);
    assert_int_equal(parse_raw(will_delay_in_publish, 5, MQTT_IN_WILL, &out), 0);
    const uint8_t unknown[] = {0x04, 0};
    assert_int_equal(parse_raw(unknown, 2, MQTT_IN_PUBLISH, &out), ERR_MALFORMED);
    const uint8_t big_id[] = {0x80, 0x01, 0};
    assert_int_equal(parse_raw(big_id, 3, MQTT_IN_PUBLISH, &out), ERR_MALFORMED);
}

static void test_props_bad_values(void **state)
{
    (void)state;
    struct mqtt_props out;
    const uint8_t zero_rm[] = {0x21, 0, 0};
    assert_int_equal(parse_raw(zero_rm, 3, MQTT_IN_CONNECT, &out), ERR_PROTO);
    const uint8_t zero_mps[] = {0x27, 0, 0, 0, 0};
    assert_int_equal(parse_raw(zero_mps, 5, MQTT_IN_CONNECT, &out), ERR_PROTO);
    const uint8_t zero_alias[] = {0x23, 0, 0};
    assert_int_equal(parse_raw(zero_alias, 3, MQTT_IN_PUBLISH, &out), ERR_PROTO);
    const uint8_t zero_subid[] = {0x0B, 0};
    assert_int_equal(parse_raw(zero_subid, 2, MQTT_IN_SUBSCRIBE, &out), ERR_PROTO);
    const uint8_t pfi2[] = {0x01, 2};
    assert_int_equal(parse_raw(pfi2, 2, MQTT_IN_PUBLISH, &out), ERR_PROTO);
    const uint8_t rpi2[] = {0x17, 2};
    assert_int_equal(parse_raw(rpi2, 2, MQTT_IN_CONNECT, &out), ERR_PROTO);
    /* A Response Topic is a topic name: no wildcards, not empty. */
    const uint8_t resp_hash[] = {0x08, 0, 3, 'a', '/', '#'};
    assert_int_equal(parse_raw(resp_hash, 6, MQTT_IN_PUBLISH, &out), ERR_PROTO);
    const uint8_t resp_plus[] = {0x08, 0, 3, '+', '/', 'a'};
    assert_int_equal(parse_raw(resp_plus, 6, MQTT_IN_WILL, &out), ERR_PROTO);
    const uint8_t resp_empty[] = {0x08, 0, 0};
    assert_int_equal(parse_raw(resp_empty, 3, MQTT_IN_PUBLISH, &out), ERR_PROTO);
    const uint8_t resp_ok[] = {0x08, 0, 3, 'a', '/', 'b'};
    assert_int_equal(parse_raw(resp_ok, 6, MQTT_IN_PUBLISH, &out), 0);
    const uint8_t bad_utf8[] = {0x03, 0, 2, 0xc0, 0x80};
    assert_int_equal(parse_raw(bad_utf8, 5, MQTT_IN_PUBLISH, &out), ERR_MALFORMED);
    const uint8_t nul_in_key[] = {0x26, 0, 1, 0, 0, 0};
    assert_int_equal(parse_raw(nul_in_key, 6, MQTT_IN_PUBLISH, &out), ERR_MALFORMED);
}

static void test_props_truncated_is_malformed(void **state)
{
    (void)state;
    struct mqtt_props out;
    const uint8_t cut[] = {0x02, 0, 0, 0};
    assert_int_equal(parse_raw(cut, 4, MQTT_IN_PUBLISH, &out), ERR_MALFORMED);
    const uint8_t str_cut[] = {0x03, 0, 9, 'a'};
    assert_int_equal(parse_raw(str_cut, 4, MQTT_IN_PUBLISH, &out), ERR_MALFORMED);
    /* The property length says more than there is. */
    const uint8_t longer[] = {5, 0x01, 0};
    struct rd r = rd_make(longer, sizeof longer);
    assert_int_equal(mqtt_props_parse(&r, MQTT_IN_PUBLISH, &out), ERR_MALFORMED);
    /* A five-byte variable byte integer. */
    const uint8_t varint5[] = {0x80, 0x80, 0x80, 0x80, 0x01};
    r = rd_make(varint5, sizeof varint5);
    assert_int_equal(mqtt_props_parse(&r, MQTT_IN_PUBLISH, &out), ERR_MALFORMED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_props_publish_round_trip),
        cmocka_unit_test(test_props_connack_round_trip),
        cmocka_unit_test(test_props_empty_list),
        cmocka_unit_test(test_props_duplicate_is_a_protocol_error),
        cmocka_unit_test(test_props_misplaced_or_unknown_is_malformed),
        cmocka_unit_test(test_props_bad_values),
        cmocka_unit_test(test_props_truncated_is_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
