/* Unit tests for the MQTT 5.0 layouts of the codec (src/mqtt/codec.c with
 * props.c): every 5.0 packet through encode -> parse with its properties and
 * reason codes, the rules on where a property may stand and how often, and
 * the 5.0-only refusals (AUTH in 3.1.1, non-minimal integers, bad options). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mqtt/codec.h"

#define BYTES(s) ((struct mqtt_bytes){(const uint8_t *)(s), (uint16_t)(sizeof(s) - 1)})
#define HAS(id)  (1ull << (id))

static bool bytes_is(struct mqtt_bytes a, const char *s)
{
    return a.len == strlen(s) && memcmp(a.p, s, a.len) == 0;
}

/* Parses the single packet in b as 5.0 (whole frame, nothing left over). */
static void parse5(const struct buf *b, struct mqtt_packet *pkt)
{
    size_t fl = 0;
    assert_int_equal(mqtt_frame(buf_head(b), buf_used(b), 0, &fl), 1);
    assert_int_equal(fl, buf_used(b));
    assert_int_equal(mqtt_parse(buf_head(b), fl, MQTT_V5, pkt), 0);
    assert_int_equal(pkt->version, MQTT_V5);
}

static int parse_raw(const char *bytes, size_t len, uint8_t version)
{
    static struct mqtt_packet pkt;
    return mqtt_parse((const uint8_t *)bytes, len, version, &pkt);
}

static void test_connect_round_trip(void **state)
{
    (void)state;
    struct mqtt_user_prop up = {BYTES("site"), BYTES("north")};
    struct mqtt_props props = {.has = HAS(MQTT_PROP_SESSION_EXPIRY) |
                                      HAS(MQTT_PROP_RECEIVE_MAXIMUM) |
                                      HAS(MQTT_PROP_TOPIC_ALIAS_MAXIMUM),
                               .session_expiry = 3600,
                               .receive_maximum = 7,
                               .topic_alias_maximum = 5,
                               .users = &up,
                               .n_users = 1};
    struct mqtt_props will = {.has = HAS(MQTT_PROP_WILL_DELAY) | HAS(MQTT_PROP_CONTENT_TYPE),
                              .will_delay = 30,
                              .content_type = BYTES("text/plain")};
    struct mqtt_connect c = {.protocol_level = MQTT_V5,
                             .clean_session = true,
                             .keepalive = 30,
                             .client_id = BYTES("dev-1"),
                             .will = true,
                             .will_qos = 1,
                             .will_topic = BYTES("w/t"),
                             .will_payload = BYTES("gone"),
                             .has_password = true, /* 5.0: a password without a user name */
                             .password = BYTES("pw")};
    struct buf b;
    buf_init(&b, 0);
    assert_int_equal(mqtt_encode_connect(&b, &c, &props, &will), 0);
    static struct mqtt_packet pkt;
    assert_int_equal(mqtt_parse(buf_head(&b), buf_used(&b), 0, &pkt), 0);
    assert_int_equal(pkt.version, MQTT_V5);
    assert_int_equal(pkt.connect.protocol_level, MQTT_V5);
    assert_true(bytes_is(pkt.connect.client_id, "dev-1"));
    assert_true(pkt.connect.has_password && !pkt.connect.has_username);
    assert_int_equal(pkt.props.session_expiry, 3600);
    assert_int_equal(pkt.props.receive_maximum, 7);
    assert_int_equal(pkt.props.topic_alias_maximum, 5);
    assert_int_equal(pkt.props.n_users, 1);
    size_t pos = 0;
    struct mqtt_user_prop got;
    assert_int_equal(mqtt_props_next(&pkt.props, MQTT_PROP_USER_PROPERTY, &pos, &got, NULL), 1);
    assert_true(bytes_is(got.key, "site") && bytes_is(got.value, "north"));
    assert_int_equal(pkt.will_props.will_delay, 30);
    assert_true(bytes_is(pkt.will_props.content_type, "text/plain"));
    assert_true(bytes_is(pkt.connect.will_payload, "gone"));
    buf_free(&b);
}

static void test_connack_round_trip(void **state)
{
    (void)state;
    struct mqtt_props props = {.has = HAS(MQTT_PROP_ASSIGNED_CLIENT_ID) |
                                      HAS(MQTT_PROP_SERVER_KEEPALIVE) |
                                      HAS(MQTT_PROP_REASON_STRING),
                               .assigned_client_id = BYTES("auto-1"),
                               .server_keepalive = 60,
                               .reason_string = BYTES("device not registered")};
    struct buf b;
    buf_init(&b, 0);
    assert_int_equal(mqtt_encode_connack(&b, false, MQTT_RC_NOT_AUTHORIZED, &props), 0);
    static struct mqtt_packet pkt;
    parse5(&b, &pkt);
    assert_int_equal(pkt.connack.rc, MQTT_RC_NOT_AUTHORIZED);
    assert_true(bytes_is(pkt.props.assigned_client_id, "auto-1"));
    assert_int_equal(pkt.props.server_keepalive, 60);
    assert_true(bytes_is(pkt.props.reason_string, "device not registered"));
    buf_free(&b);
}

static void test_publish_round_trip(void **state)
{
    (void)state;
    uint32_t ids[] = {2, 268435455};
    struct mqtt_props props = {.has = HAS(MQTT_PROP_MESSAGE_EXPIRY) | HAS(MQTT_PROP_TOPIC_ALIAS) |
                                      HAS(MQTT_PROP_CORRELATION_DATA),
                               .message_expiry = 90,
                               .topic_alias = 3,
                               .correlation_data = BYTES("\x00\x01"),
                               .sub_ids = ids,
                               .n_sub_ids = 2};
    struct mqtt_publish p = {.qos = 1,
                             .topic = BYTES("a/b"),
                             .packet_id = 7,
                             .payload = (const uint8_t *)"xyz",
                             .payload_len = 3,
                             .props = &props};
    struct buf b;
    buf_init(&b, 0);
    assert_int_equal(mqtt_encode_publish(&b, &p), 0);
    assert_int_equal(buf_used(&b), mqtt_publish_size(3, 3, 1, mqtt_props_wire_size(&props)));
    static struct mqtt_packet pkt;
    parse5(&b, &pkt);
    assert_true(bytes_is(pkt.publish.topic, "a/b"));
    assert_int_equal(pkt.publish.packet_id, 7);
    assert_int_equal(pkt.publish.payload_len, 3);
    assert_int_equal(pkt.props.message_expiry, 90);
    assert_int_equal(pkt.props.topic_alias, 3);
    assert_int_equal(pkt.props.n_sub_ids, 2);
    size_t pos = 0;
    uint32_t id = 0;
    assert_int_equal(mqtt_props_next(&pkt.props, MQTT_PROP_SUBSCRIPTION_ID, &pos, NULL, &id), 1);
    assert_int_equal(id, 2);
    assert_int_equal(mqtt_props_next(&pkt.props, MQTT_PROP_SUBSCRIPTION_ID, &pos, NULL, &id), 1);
    assert_int_equal(id, 268435455);

    /* An alias may stand for the topic; without one an empty topic is a
     * protocol error. */
    buf_free(&b);
    buf_init(&b, 0);
    p.topic = BYTES("");
    assert_int_equal(mqtt_encode_publish(&b, &p), 0);
    parse5(&b, &pkt);
    assert_int_equal(pkt.publish.topic.len, 0);
    buf_free(&b);
    buf_init(&b, 0);
    props.has &= ~HAS(MQTT_PROP_TOPIC_ALIAS);
    assert_int_equal(mqtt_encode_publish(&b, &p), 0);
    assert_int_equal(mqtt_parse(buf_head(&b), buf_used(&b), MQTT_V5, &pkt), ERR_PROTO);
    buf_free(&b);
}

/* The 5.0 acknowledgement leaves out a success reason without properties. */
static void test_ack_reasons(void **state)
{
    (void)state;
    static struct mqtt_packet pkt;
    struct buf b;
    buf_init(&b, 0);
    assert_int_equal(mqtt_encode_ack(&b, MQTT_PUBACK, 5, 0, &mqtt_props_none), 0);
    assert_int_equal(buf_used(&b), 4);
    parse5(&b, &pkt);
    assert_int_equal(pkt.reason, 0);
    buf_free(&b);

    buf_init(&b, 0);
    assert_int_equal(mqtt_encode_ack(&b, MQTT_PUBACK, 5, MQTT_RC_NOT_AUTHORIZED, &mqtt_props_none),
                     0);
    assert_int_equal(buf_used(&b), 5);
    parse5(&b, &pkt);
    assert_int_equal(pkt.reason, MQTT_RC_NOT_AUTHORIZED);
    assert_int_equal(pkt.packet_id, 5);
    buf_free(&b);

    struct mqtt_props why = {.has = HAS(MQTT_PROP_REASON_STRING), .reason_string = BYTES("no")};
    buf_init(&b, 0);
    assert_int_equal(mqtt_encode_ack(&b, MQTT_PUBREL, 6, MQTT_RC_PACKET_ID_NOT_FOUND, &why), 0);
    assert_int_equal(buf_head(&b)[0], 0x62);
    parse5(&b, &pkt);
    assert_int_equal(pkt.reason, MQTT_RC_PACKET_ID_NOT_FOUND);
    assert_true(bytes_is(pkt.props.reason_string, "no"));
    buf_free(&b);

    /* A reason code the packet may not carry is malformed. */
    assert_int_equal(parse_raw("\x40\x03\x00\x05\x92", 5, MQTT_V5), ERR_MALFORMED);
    assert_int_equal(parse_raw("\x70\x03\x00\x05\x87", 5, MQTT_V5), ERR_MALFORMED);
    /* 3.1.1 has no reason byte. */
    assert_int_equal(parse_raw("\x40\x03\x00\x05\x00", 5, MQTT_V311), ERR_MALFORMED);
}

static void test_subscribe_options(void **state)
{
    (void)state;
    struct mqtt_bytes f[] = {BYTES("a/+"), BYTES("b/#")};
    uint8_t opts[] = {2 | MQTT_SUB_NO_LOCAL | MQTT_SUB_RETAIN_AS_PUB, 1 | 0x20};
    struct mqtt_props props = {.has = HAS(MQTT_PROP_SUBSCRIPTION_ID), .subscription_id = 456789};
    struct buf b;
    buf_init(&b, 0);
    assert_int_equal(mqtt_encode_subscribe(&b, 3, f, opts, 2, &props), 0);
    static struct mqtt_packet pkt;
    parse5(&b, &pkt);
    assert_int_equal(pkt.props.subscription_id, 456789);
    size_t pos = 0;
    struct mqtt_bytes got;
    uint8_t o;
    assert_int_equal(mqtt_topic_next(&pkt.list, &pos, &got, &o), 1);
    assert_int_equal(o, opts[0]);
    assert_int_equal(mqtt_topic_next(&pkt.list, &pos, &got, &o), 1);
    assert_int_equal(o, opts[1]);
    assert_true(bytes_is(got, "b/#"));
    buf_free(&b);

    /* Reserved bits are malformed; QoS 3 and Retain Handling 3 protocol
     * errors (3.8.3.1). */
    assert_int_equal(parse_raw("\x82\x07\x00\x01\x00\x00\x01t\x40", 9, MQTT_V5), ERR_MALFORMED);
    assert_int_equal(parse_raw("\x82\x07\x00\x01\x00\x00\x01t\x30", 9, MQTT_V5), ERR_PROTO);
    assert_int_equal(parse_raw("\x82\x07\x00\x01\x00\x00\x01t\x03", 9, MQTT_V5), ERR_PROTO);
    assert_int_equal(parse_raw("\x82\x07\x00\x01\x00\x00\x01t\x2e", 9, MQTT_V5), 0);
    /* The same options byte is malformed in 3.1.1. */
    assert_int_equal(parse_raw("\x82\x06\x00\x01\x00\x01t\x2e", 8, MQTT_V311), ERR_MALFORMED);
}

static void test_suback_unsuback(void **state)
{
    (void)state;
    uint8_t rcs[] = {1, MQTT_RC_NOT_AUTHORIZED, MQTT_RC_SHARED_SUB_UNSUPPORTED};
    struct buf b;
    buf_init(&b, 0);
    assert_int_equal(mqtt_encode_suback(&b, 9, rcs, 3, &mqtt_props_none), 0);
    static struct mqtt_packet pkt;
    parse5(&b, &pkt);
    assert_int_equal(pkt.list.count, 3);
    assert_memory_equal(pkt.list.p, rcs, 3);
    buf_free(&b);
    /* 3.1.1 SUBACK knows 0x80 only. */
    buf_init(&b, 0);
    assert_int_equal(mqtt_encode_suback(&b, 9, rcs, 3, NULL), ERR_INVALID);
    buf_free(&b);

    uint8_t un[] = {MQTT_RC_SUCCESS, MQTT_RC_NO_SUBSCRIPTION_EXISTED};
    buf_init(&b, 0);
    assert_int_equal(mqtt_encode_unsuback(&b, 4, un, 2, &mqtt_props_none), 0);
    parse5(&b, &pkt);
    assert_int_equal(pkt.type, MQTT_UNSUBACK);
    assert_int_equal(pkt.list.packet_id, 4);
    assert_int_equal(pkt.list.count, 2);
    assert_memory_equal(pkt.list.p, un, 2);
    buf_free(&b);
    buf_init(&b, 0);
    assert_int_equal(mqtt_encode_unsuback(&b, 4, un, 2, NULL), 0);
    assert_int_equal(buf_used(&b), 4); /* 3.1.1: the packet id only */
    buf_free(&b);
}

static void test_disconnect_and_auth(void **state)
{
    (void)state;
    static struct mqtt_packet pkt;
    struct buf b;
    buf_init(&b, 0);
    assert_int_equal(mqtt_encode_disconnect(&b, 0, &mqtt_props_none), 0);
    assert_int_equal(buf_used(&b), 2);
    parse5(&b, &pkt);
    assert_int_equal(pkt.reason, 0);
    buf_free(&b);

    struct mqtt_props props = {.has = HAS(MQTT_PROP_SESSION_EXPIRY), .session_expiry = 10};
    buf_init(&b, 0);
    assert_int_equal(mqtt_encode_disconnect(&b, MQTT_RC_SESSION_TAKEN_OVER, &props), 0);
    parse5(&b, &pkt);
    assert_int_equal(pkt.reason, MQTT_RC_SESSION_TAKEN_OVER);
    assert_int_equal(pkt.props.session_expiry, 10);
    buf_free(&b);

    struct mqtt_props method = {.has = HAS(MQTT_PROP_AUTH_METHOD), .auth_method = BYTES("SCRAM")};
    buf_init(&b, 0);
    assert_int_equal(mqtt_encode_auth(&b, 0x18, &method), 0);
    parse5(&b, &pkt);
    assert_int_equal(pkt.type, MQTT_AUTH);
    assert_int_equal(pkt.reason, 0x18);
    assert_true(bytes_is(pkt.props.auth_method, "SCRAM"));
    /* AUTH does not exist in 3.1.1, nor an AUTH reason outside 0, 0x18, 0x19. */
    assert_int_equal(mqtt_parse(buf_head(&b), buf_used(&b), MQTT_V311, &pkt), ERR_MALFORMED);
    assert_int_equal(parse_raw("\xf0\x01\x87", 3, MQTT_V5), ERR_MALFORMED);
    buf_free(&b);
}

/* A property outside the packets that may carry it, a repeated one, a
 * forbidden value and a longer integer than needed. */
static void test_property_rules(void **state)
{
    (void)state;
    /* PUBLISH "t" QoS 0 with properties {Topic Alias Maximum 1}: CONNECT only. */
    assert_int_equal(parse_raw("\x30\x07\x00\x01t\x03\x22\x00\x01", 9, MQTT_V5), ERR_MALFORMED);
    /* Message Expiry twice: a protocol error. */
    assert_int_equal(
        parse_raw("\x30\x0e\x00\x01t\x0a\x02\x00\x00\x00\x01\x02\x00\x00\x00\x02", 16, MQTT_V5),
        ERR_PROTO);
    /* Topic Alias 0 is a protocol error. */
    assert_int_equal(parse_raw("\x30\x07\x00\x01t\x03\x23\x00\x00", 9, MQTT_V5), ERR_PROTO);
    /* Property length 0 written in two bytes. */
    assert_int_equal(parse_raw("\x30\x05\x00\x01t\x80\x00", 7, MQTT_V5), ERR_MALFORMED);
    /* A remaining length written in two bytes. */
    assert_int_equal(parse_raw("\xc0\x80\x00", 3, MQTT_V5), ERR_MALFORMED);
    assert_int_equal(parse_raw("\xc0\x80\x00", 3, MQTT_V311), 0);
    /* A property list longer than the packet. */
    assert_int_equal(parse_raw("\x30\x05\x00\x01t\x09\x02", 7, MQTT_V5), ERR_MALFORMED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_connect_round_trip),  cmocka_unit_test(test_connack_round_trip),
        cmocka_unit_test(test_publish_round_trip),  cmocka_unit_test(test_ack_reasons),
        cmocka_unit_test(test_subscribe_options),   cmocka_unit_test(test_suback_unsuback),
        cmocka_unit_test(test_disconnect_and_auth), cmocka_unit_test(test_property_rules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
