/* Unit tests for the MQTT 3.1.1 codec (src/mqtt/codec.c): every packet type
 * through encode -> frame -> parse, framing at every split point and at the
 * remaining-length boundaries, size limits, and a table of hand-written
 * malformed packets each with the rejection it must earn. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mqtt/codec.h"

#define BYTES(s) ((struct mqtt_bytes){(const uint8_t *)(s), (uint16_t)(sizeof(s) - 1)})

static bool bytes_eq(struct mqtt_bytes a, struct mqtt_bytes b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

/* Frames then parses the single packet in b. Every proper prefix must ask for
 * more bytes; the whole packet, alone or followed by the start of another,
 * must be one frame of exactly its size; a max_packet one byte short must
 * refuse it. */
/* 5.0 subscription options (3.8.3.1): reserved bits make the SUBSCRIBE
 * malformed; QoS 3 and Retain Handling 3 are protocol errors. */
static void test_parse_v5_subscribe_options(void **state)
{
    (void)state;
    static const struct {
        uint8_t options;
        int rc;
    } cases[] = {
        {0x2e, 0},         {0x40, ERR_MALFORMED}, {0x80, ERR_MALFORMED}, {0xb0, ERR_MALFORMED},
        {0x03, ERR_PROTO}, {0x30, ERR_PROTO}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        /* SUBSCRIBE id 1, no properties, filter "a", options. */
        const uint8_t f[] = {0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, 'a', cases[i].options};
        struct mqtt_packet pkt;
        assert_int_equal(mqtt_parse(f, sizeof f, MQTT_V5, &pkt), cases[i].rc);
    }
}

static void frame_and_parse(const struct buf *b, struct mqtt_packet *pkt)
{
    const uint8_t *p = buf_head(b);
    size_t len = buf_used(b), fl = 0;
    for (size_t k = 0; k < len; k++) assert_int_equal(mqtt_frame(p, k, 0, &fl), 0);

    uint8_t *more = malloc(len + 3);
    assert_non_null(more);
    memcpy(more, p, len);
    memcpy(more + len, "\x30\x05\x00", 3);
    fl = 0;
    assert_int_equal(mqtt_frame(more, len + 3, 0, &fl), 1);
    assert_int_equal(fl, len);
    free(more);

    fl = 0;
    assert_int_equal(mqtt_frame(p, len, len, &fl), 1);
    assert_int_equal(fl, len);
    assert_int_equal(mqtt_frame(p, len, len - 1, &fl), ERR_TOO_LARGE);
    assert_int_equal(mqtt_parse(p, len, 4, pkt), 0);
}

static void connect_round_trip(const struct mqtt_connect *in)
{
    struct buf b;
    struct mqtt_packet pkt;
    buf_init(&b, 0);
    assert_int_equal(mqtt_encode_connect(&b, in, NULL, NULL), 0);
    frame_and_parse(&b, &pkt);
    assert_int_equal(pkt.type, MQTT_CONNECT);
    assert_int_equal(pkt.flags, 0);
    const struct mqtt_connect *c = &pkt.connect;
    assert_int_equal(c->protocol_level, in->protocol_level);
    assert_int_equal(c->clean_session, in->clean_session);
    assert_int_equal(c->keepalive, in->keepalive);
    assert_true(bytes_eq(c->client_id, in->client_id));
    assert_int_equal(c->will, in->will);
    assert_int_equal(c->will_qos, in->will ? in->will_qos : 0);
    assert_int_equal(c->will_retain, in->will && in->will_retain);
    if (in->will) {
        assert_true(bytes_eq(c->will_topic, in->will_topic));
        assert_true(bytes_eq(c->will_payload, in->will_payload));
    }
    assert_int_equal(c->has_username, in->has_username);
    if (in->has_username) assert_true(bytes_eq(c->username, in->username));
    assert_int_equal(c->has_password, in->has_password);
    if (in->has_password) assert_true(bytes_eq(c->password, in->password));
    buf_free(&b);
}

static void test_connect_round_trip_minimal(void **state)
{
    (void)state;
    struct mqtt_connect c = {.protocol_level = 4, .clean_session = true, .keepalive = 60};
    connect_round_trip(&c); /* empty client id is legal on the wire */
    c.client_id = BYTES("d:sensor-1");
    c.clean_session = false;
    c.keepalive = 0xffff;
    connect_round_trip(&c);
}

static void test_connect_round_trip_full(void **state)
{
    (void)state;
    struct mqtt_connect c = {
        .protocol_level = 4,
        .clean_session = true,
        .keepalive = 30,
        .client_id = BYTES("d:\xc3\xa9t\xc3\xa9:tmpl"),
        .will = true,
        .will_qos = 2,
        .will_retain = true,
        .will_topic = BYTES("devices/1/status"),
        .will_payload = BYTES("off\0line"),
        .has_username = true,
        .username = BYTES("acme/alice"),
        .has_password = true,
        .password = BYTES("\x00\xff\xfe secret"),
    };
    connect_round_trip(&c);
    c.will_qos = 1;
    c.will_retain = false;
    c.has_password = false;
    connect_round_trip(&c);
}

static void test_connect_round_trip_v31(void **state)
{
    (void)state;
    struct mqtt_connect c = {.protocol_level = 3, .keepalive = 10, .client_id = BYTES("old")};
    connect_round_trip(&c);
    struct buf b;
    buf_init(&b, 0);
    assert_int_equal(mqtt_encode_connect(&b, &c, NULL, NULL), 0);
    assert_memory_equal(buf_head(&b) + 2, "\x00\x06MQIsdp\x03", 9);
    buf_free(&b);
}

static void test_connack_round_trip(void **state)
{
    (void)state;
    for (uint8_t rc = 0; rc <= MQTT_CONNACK_NOT_AUTHORIZED; rc++) {
        for (int sp = 0; sp <= (rc == 0); sp++) {
            struct buf b;
            struct mqtt_packet pkt;
            buf_init(&b, 0);
            assert_int_equal(mqtt_encode_connack(&b, sp, rc, NULL), 0);
            assert_int_equal(buf_used(&b), 4);
            frame_and_parse(&b, &pkt);
            assert_int_equal(pkt.type, MQTT_CONNACK);
            assert_int_equal(pkt.connack.rc, rc);
            assert_int_equal(pkt.connack.session_present, sp);
            buf_free(&b);
        }
    }
}

static void publish_round_trip(const struct mqtt_publish *in)
{
    struct buf b;
    struct mqtt_packet pkt;
    buf_init(&b, 0);
    assert_int_equal(mqtt_encode_publish(&b, in), 0);
    assert_int_equal(buf_used(&b),
                     mqtt_publish_size(in->topic.len, in->payload_len, in->qos,
                                       in->props ? mqtt_props_wire_size(in->props) : 0));
    frame_and_parse(&b, &pkt);
    const struct mqtt_publish *p = &pkt.publish;
    assert_int_equal(pkt.type, MQTT_PUBLISH);
    assert_int_equal(p->qos, in->qos);
    assert_int_equal(p->dup, in->dup && in->qos > 0);
    assert_int_equal(p->retain, in->retain);
    assert_true(bytes_eq(p->topic, in->topic));
    assert_int_equal(p->packet_id, in->qos ? in->packet_id : 0);
    assert_int_equal(p->payload_len, in->payload_len);
    if (in->payload_len) assert_memory_equal(p->payload, in->payload, in->payload_len);
    buf_free(&b);
}

static void test_publish_round_trip_qos0(void **state)
{
    (void)state;
    struct mqtt_publish p = {
        .topic = BYTES("a/b/c"), .payload = (const uint8_t *)"hello", .payload_len = 5};
    publish_round_trip(&p);
    p.retain = true;
    p.payload_len = 0; /* empty payload: clears a retained message */
    publish_round_trip(&p);
    p.dup = true; /* dropped by the encoder: DUP is forbidden on QoS 0 */
    publish_round_trip(&p);
}

static void test_publish_round_trip_qos1_qos2(void **state)
{
    (void)state;
    struct mqtt_publish p = {.qos = 1,
                             .packet_id = 1,
                             .topic = BYTES("$SYS/x"),
                             .payload = (const uint8_t *)"\0\1\2",
                             .payload_len = 3};
    publish_round_trip(&p);
    p.qos = 2;
    p.dup = true;
    p.packet_id = 0xffff;
    publish_round_trip(&p);
    p.retain = true;
    p.topic = BYTES("/"); /* a lone separator is a valid name */
    publish_round_trip(&p);
}

static void test_publish_round_trip_max_topic(void **state)
{
    (void)state;
    uint8_t *topic = malloc(65535);
    assert_non_null(topic);
    memset(topic, 'x', 65535);
    struct mqtt_publish p = {.qos = 1, .packet_id = 7, .topic = {topic, 65535}};
    publish_round_trip(&p);
    free(topic);
}

static void test_ack_round_trip_all_types(void **state)
{
    (void)state;
    static const enum mqtt_type types[] = {MQTT_PUBACK, MQTT_PUBREC, MQTT_PUBREL, MQTT_PUBCOMP,
                                           MQTT_UNSUBACK};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        struct buf b;
        struct mqtt_packet pkt;
        buf_init(&b, 0);
        assert_int_equal(mqtt_encode_ack(&b, types[i], (uint16_t)(0x1234 + i), 0, NULL), 0);
        assert_int_equal(buf_used(&b), 4);
        assert_int_equal(buf_head(&b)[0], types[i] << 4 | (types[i] == MQTT_PUBREL ? 2 : 0));
        frame_and_parse(&b, &pkt);
        assert_int_equal(pkt.type, types[i]);
        assert_int_equal(pkt.packet_id, 0x1234 + i);
        buf_free(&b);
    }
}

static void test_subscribe_round_trip(void **state)
{
    (void)state;
    const struct mqtt_bytes filters[] = {BYTES("a/+/c"), BYTES("#"), BYTES("x/\xe2\x82\xac/#")};
    const uint8_t qos[] = {0, 2, 1};
    struct buf b;
    struct mqtt_packet pkt;
    buf_init(&b, 0);
    assert_int_equal(mqtt_encode_subscribe(&b, 42, filters, qos, 3, NULL), 0);
    assert_int_equal(buf_head(&b)[0], 0x82);
    frame_and_parse(&b, &pkt);
    assert_int_equal(pkt.type, MQTT_SUBSCRIBE);
    assert_int_equal(pkt.list.packet_id, 42);
    assert_int_equal(pkt.list.count, 3);
    size_t pos = 0, n = 0;
    struct mqtt_bytes f;
    uint8_t q = 0xff;
    while (mqtt_topic_next(&pkt.list, &pos, &f, &q)) {
        assert_true(n < 3);
        assert_true(bytes_eq(f, filters[n]));
        assert_int_equal(q, qos[n]);
        n++;
    }
    assert_int_equal(n, 3);
    assert_int_equal(pos, pkt.list.len);
    buf_free(&b);
}

static void test_unsubscribe_round_trip(void **state)
{
    (void)state;
    const struct mqtt_bytes filters[] = {BYTES("a/b"), BYTES("+/+")};
    struct buf b;
    struct mqtt_packet pkt;
    buf_init(&b, 0);
    assert_int_equal(mqtt_encode_unsubscribe(&b, 9, filters, 2, NULL), 0);
    assert_int_equal(buf_head(&b)[0], 0xa2);
    frame_and_parse(&b, &pkt);
    assert_int_equal(pkt.type, MQTT_UNSUBSCRIBE);
    assert_int_equal(pkt.list.packet_id, 9);
    assert_int_equal(pkt.list.count, 2);
    size_t pos = 0, n = 0;
    struct mqtt_bytes f;
    uint8_t q = 0xff;
    /* A qos pointer on an UNSUBSCRIBE list must not shift the walk. */
    while (mqtt_topic_next(&pkt.list, &pos, &f, n ? &q : NULL)) {
        assert_true(n < 2);
        assert_true(bytes_eq(f, filters[n]));
        if (n) assert_int_equal(q, 0);
        n++;
    }
    assert_int_equal(n, 2);
    buf_free(&b);
}

static void test_suback_round_trip(void **state)
{
    (void)state;
    const uint8_t rcs[] = {0, 1, 2, MQTT_SUBACK_FAILURE};
    struct buf b;
    struct mqtt_packet pkt;
    buf_init(&b, 0);
    assert_int_equal(mqtt_encode_suback(&b, 0xbeef, rcs, 4, NULL), 0);
    frame_and_parse(&b, &pkt);
    assert_int_equal(pkt.type, MQTT_SUBACK);
    assert_int_equal(pkt.list.packet_id, 0xbeef);
    assert_int_equal(pkt.list.count, 4);
    assert_int_equal(pkt.list.len, 4);
    assert_memory_equal(pkt.list.p, rcs, 4);
    buf_free(&b);
}

static int encode_disconnect_v311(struct buf *b)
{
    return mqtt_encode_disconnect(b, 0, NULL);
}

static void test_empty_packets_round_trip(void **state)
{
    (void)state;
    struct {
        int (*enc)(struct buf *);
        enum mqtt_type type;
        uint8_t byte0;
    } cases[] = {{mqtt_encode_pingreq, MQTT_PINGREQ, 0xc0},
                 {mqtt_encode_pingresp, MQTT_PINGRESP, 0xd0},
                 {encode_disconnect_v311, MQTT_DISCONNECT, 0xe0}};
    for (size_t i = 0; i < 3; i++) {
        struct buf b;
        struct mqtt_packet pkt;
        buf_init(&b, 0);
        assert_int_equal(cases[i].enc(&b), 0);
        assert_int_equal(buf_used(&b), 2);
        assert_int_equal(buf_head(&b)[0], cases[i].byte0);
        assert_int_equal(buf_head(&b)[1], 0);
        frame_and_parse(&b, &pkt);
        assert_int_equal(pkt.type, cases[i].type);
        buf_free(&b);
    }
}

/* Several packets back to back, delivered one byte more at a time, come out
 * as the same frames in the same order. */
static void test_frame_partial_stream(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 0);
    const struct mqtt_publish p = {.qos = 1,
                                   .packet_id = 5,
                                   .topic = BYTES("t"),
                                   .payload = (const uint8_t *)"xyz",
                                   .payload_len = 3};
    assert_int_equal(mqtt_encode_pingreq(&b), 0);
    assert_int_equal(mqtt_encode_publish(&b, &p), 0);
    assert_int_equal(mqtt_encode_ack(&b, MQTT_PUBREL, 5, 0, NULL), 0);
    const uint8_t *s = buf_head(&b);
    size_t total = buf_used(&b), off = 0, avail = 0, fl = 0;
    enum mqtt_type seen[3];
    size_t n = 0;
    while (off < total) {
        avail++;
        assert_true(off + avail <= total);
        int rc = mqtt_frame(s + off, avail, 1024, &fl);
        assert_true(rc >= 0);
        if (rc == 0) continue;
        struct mqtt_packet pkt;
        assert_int_equal(fl, avail);
        assert_int_equal(mqtt_parse(s + off, fl, 4, &pkt), 0);
        assert_true(n < 3);
        seen[n++] = pkt.type;
        off += fl;
        avail = 0;
    }
    assert_int_equal(n, 3);
    assert_int_equal(seen[0], MQTT_PINGREQ);
    assert_int_equal(seen[1], MQTT_PUBLISH);
    assert_int_equal(seen[2], MQTT_PUBREL);
    buf_free(&b);
}

/* Writes the minimal varint for v, returns its length. */
static size_t put_varint(uint8_t *out, uint32_t v)
{
    size_t n = 0;
    do {
        out[n] = v & 0x7f;
        v >>= 7;
        if (v) out[n] |= 0x80;
        n++;
    } while (v);
    return n;
}

static void test_frame_remaining_length_boundaries(void **state)
{
    (void)state;
    static const struct {
        uint32_t rl;
        size_t bytes;
    } cases[] = {{127, 1},     {128, 2},     {16383, 2},    {16384, 3},
                 {2097151, 3}, {2097152, 4}, {268435455, 4}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t h[8] = {0x30};
        size_t n = put_varint(h + 1, cases[i].rl), fl = 0;
        assert_int_equal(n, cases[i].bytes);
        size_t total = 1 + n + cases[i].rl;
        /* Header only: the body is still to come, unless it is too big. */
        assert_int_equal(mqtt_frame(h, 1 + n, 0, &fl), 0);
        assert_int_equal(mqtt_frame(h, 1 + n, total, &fl), 0);
        assert_int_equal(mqtt_frame(h, 1 + n, total - 1, &fl), ERR_TOO_LARGE);
        assert_int_equal(mqtt_publish_size(1, cases[i].rl - 3, 0, 0), total);
        if (cases[i].rl > 2097152) continue;

        /* Whole PUBLISH of exactly that remaining length, encoded and parsed. */
        uint8_t *payload = calloc(1, cases[i].rl);
        assert_non_null(payload);
        struct mqtt_publish p = {
            .topic = BYTES("t"), .payload = payload, .payload_len = cases[i].rl - 3};
        struct buf b;
        struct mqtt_packet pkt;
        buf_init(&b, 0);
        assert_int_equal(mqtt_encode_publish(&b, &p), 0);
        assert_int_equal(buf_used(&b), total);
        assert_memory_equal(buf_head(&b), h, 1 + n);
        assert_int_equal(mqtt_frame(buf_head(&b), total - 1, 0, &fl), 0);
        assert_int_equal(mqtt_frame(buf_head(&b), total, total, &fl), 1);
        assert_int_equal(fl, total);
        assert_int_equal(mqtt_parse(buf_head(&b), total, 4, &pkt), 0);
        assert_int_equal(pkt.publish.payload_len, cases[i].rl - 3);
        buf_free(&b);
        free(payload);
    }
}

static void test_frame_varint_too_long(void **state)
{
    (void)state;
    size_t fl = 0;
    /* A fourth length byte with its continuation bit set announces a fifth. */
    assert_int_equal(mqtt_frame((const uint8_t *)"\x30\xff\xff\xff\xff\x01", 6, 0, &fl),
                     ERR_MALFORMED);
    assert_int_equal(mqtt_frame((const uint8_t *)"\x30\x80\x80\x80\x80", 5, 0, &fl), ERR_MALFORMED);
    /* Three continuation bytes so far: still waiting for the fourth. */
    assert_int_equal(mqtt_frame((const uint8_t *)"\x30\xff\xff\xff", 4, 0, &fl), 0);
    assert_int_equal(mqtt_frame((const uint8_t *)"\x30", 1, 0, &fl), 0);
    assert_int_equal(mqtt_frame((const uint8_t *)"", 0, 0, &fl), 0);
    /* A non-minimal length is still a length (3.1.1 does not forbid it). */
    assert_int_equal(mqtt_frame((const uint8_t *)"\xc0\x80\x00", 3, 0, &fl), 1);
    assert_int_equal(fl, 3);
    struct mqtt_packet pkt;
    assert_int_equal(mqtt_parse((const uint8_t *)"\xc0\x80\x00", 3, 4, &pkt), 0);
    assert_int_equal(pkt.type, MQTT_PINGREQ);
}

static void test_frame_oversize_max_packet(void **state)
{
    (void)state;
    size_t fl = 0;
    /* 0x30, rl 200 (2 bytes): total 203. Refused before the body arrives. */
    const uint8_t h[] = {0x30, 0xc8, 0x01};
    assert_int_equal(mqtt_frame(h, 3, 202, &fl), ERR_TOO_LARGE);
    assert_int_equal(mqtt_frame(h, 3, 203, &fl), 0);
    assert_int_equal(mqtt_frame(h, 3, 0, &fl), 0);
    /* A tiny packet fits a tiny limit. */
    assert_int_equal(mqtt_frame((const uint8_t *)"\xc0\x00", 2, 2, &fl), 1);
    assert_int_equal(mqtt_frame((const uint8_t *)"\xc0\x00", 2, 1, &fl), ERR_TOO_LARGE);
}

static void test_encode_publish_too_large(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 0);
    static const uint8_t dummy[1];
    /* 2 + 1 (topic) + 2 (id) + payload = MQTT_MAX_REMAINING + 1 */
    struct mqtt_publish p = {.qos = 1,
                             .packet_id = 1,
                             .topic = BYTES("t"),
                             .payload = dummy,
                             .payload_len = MQTT_MAX_REMAINING - 4};
    assert_int_equal(mqtt_encode_publish(&b, &p), ERR_TOO_LARGE);
    p.payload_len = SIZE_MAX;
    assert_int_equal(mqtt_encode_publish(&b, &p), ERR_TOO_LARGE);
    assert_int_equal(buf_used(&b), 0);
    assert_int_equal(mqtt_publish_size(1, MQTT_MAX_REMAINING - 4, 1, 0), SIZE_MAX);
    assert_int_equal(mqtt_publish_size(1, MQTT_MAX_REMAINING - 5, 1, 0), MQTT_MAX_REMAINING + 5);
    assert_int_equal(mqtt_publish_size(65536, 0, 0, 0), SIZE_MAX);
    buf_free(&b);
}

static void test_encode_too_many_entries(void **state)
{
    (void)state;
    size_t n = 65536;
    struct mqtt_bytes *f = malloc(n * sizeof *f);
    uint8_t *q = calloc(n, 1);
    assert_non_null(f);
    assert_non_null(q);
    for (size_t i = 0; i < n; i++) f[i] = BYTES("a");
    struct buf b;
    buf_init(&b, 0);
    assert_int_equal(mqtt_encode_subscribe(&b, 1, f, q, n, NULL), ERR_TOO_LARGE);
    assert_int_equal(mqtt_encode_unsubscribe(&b, 1, f, n, NULL), ERR_TOO_LARGE);
    assert_int_equal(mqtt_encode_suback(&b, 1, q, n, NULL), ERR_TOO_LARGE);
    assert_int_equal(buf_used(&b), 0);
    /* One fewer fits, and parses back with the full count. */
    struct mqtt_packet pkt;
    assert_int_equal(mqtt_encode_subscribe(&b, 1, f, q, n - 1, NULL), 0);
    assert_int_equal(mqtt_parse(buf_head(&b), buf_used(&b), 4, &pkt), 0);
    assert_int_equal(pkt.list.count, 65535);
    buf_free(&b);
    free(f);
    free(q);
}

/* A bounded output buffer that cannot take the packet keeps its old bytes. */
static void test_encode_failure_leaves_buffer(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 16);
    assert_int_equal(mqtt_encode_pingreq(&b), 0);
    uint8_t big[32] = {0};
    struct mqtt_publish p = {.topic = BYTES("t"), .payload = big, .payload_len = sizeof big};
    assert_int_equal(mqtt_encode_publish(&b, &p), ERR_TOO_LARGE);
    assert_int_equal(buf_used(&b), 2);
    assert_memory_equal(buf_head(&b), "\xc0\x00", 2);
    buf_free(&b);
}

static void test_encode_rejects_invalid_arguments(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 0);
    struct mqtt_publish p = {.qos = 3, .packet_id = 1, .topic = BYTES("t")};
    assert_int_equal(mqtt_encode_publish(&b, &p), ERR_INVALID);
    p.qos = 1;
    p.packet_id = 0;
    assert_int_equal(mqtt_encode_publish(&b, &p), ERR_INVALID);
    assert_int_equal(mqtt_encode_ack(&b, MQTT_PUBACK, 0, 0, NULL), ERR_INVALID);
    assert_int_equal(mqtt_encode_ack(&b, MQTT_CONNACK, 1, 0, NULL), ERR_INVALID);
    const uint8_t bad_rc = 3, q3 = 3;
    assert_int_equal(mqtt_encode_suback(&b, 1, &bad_rc, 1, NULL), ERR_INVALID);
    assert_int_equal(mqtt_encode_suback(&b, 1, &bad_rc, 0, NULL), ERR_INVALID);
    const struct mqtt_bytes empty = {NULL, 0}, a = BYTES("a");
    assert_int_equal(mqtt_encode_subscribe(&b, 1, &empty, &bad_rc, 1, NULL), ERR_INVALID);
    assert_int_equal(mqtt_encode_subscribe(&b, 1, &a, &q3, 1, NULL), ERR_INVALID);
    assert_int_equal(mqtt_encode_subscribe(&b, 0, &a, &bad_rc, 0, NULL), ERR_INVALID);
    assert_int_equal(mqtt_encode_unsubscribe(&b, 1, &a, 0, NULL), ERR_INVALID);
    struct mqtt_connect c = {.protocol_level = 4, .has_password = true};
    assert_int_equal(mqtt_encode_connect(&b, &c, NULL, NULL), ERR_INVALID);
    c.has_password = false;
    c.will = true;
    c.will_qos = 3;
    assert_int_equal(mqtt_encode_connect(&b, &c, NULL, NULL), ERR_INVALID);
    assert_int_equal(buf_used(&b), 0);
    buf_free(&b);
}

struct bad_case {
    const char *name;
    const char *bytes;
    size_t len;
    int want;
    bool framed; /* the frame itself is sound: mqtt_frame sees exactly len bytes */
};

#define CASE(name, s, want)                                                                        \
    {                                                                                              \
        name, s, sizeof(s) - 1, want, true                                                         \
    }
#define CONNECT_HDR "\x00\x04MQTT\x04"

static const struct bad_case bad_cases[] = {
    /* CONNECT */
    CASE("connect reserved flag bit",
         "\x10\x0d" CONNECT_HDR "\x03\x00\x3c\x00\x01"
         "a",
         ERR_MALFORMED),
    CASE("connect fixed header flags",
         "\x11\x0d" CONNECT_HDR "\x02\x00\x3c\x00\x01"
         "a",
         ERR_MALFORMED),
    CASE("connect client id overlong nul", "\x10\x0e" CONNECT_HDR "\x02\x00\x3c\x00\x02\xc0\x80",
         ERR_MALFORMED),
    CASE("connect client id nul", "\x10\x0d" CONNECT_HDR "\x02\x00\x3c\x00\x01\x00", ERR_MALFORMED),
    CASE("connect client id surrogate", "\x10\x0f" CONNECT_HDR "\x02\x00\x3c\x00\x03\xed\xa0\x80",
         ERR_MALFORMED),
    CASE("connect client id above U+10FFFF",
         "\x10\x10" CONNECT_HDR "\x02\x00\x3c\x00\x04\xf4\x90\x80\x80", ERR_MALFORMED),
    CASE("connect client id truncated sequence", "\x10\x0d" CONNECT_HDR "\x02\x00\x3c\x00\x01\xe2",
         ERR_MALFORMED),
    CASE("connect will qos 3",
         "\x10\x12" CONNECT_HDR "\x1e\x00\x3c\x00\x01"
         "a\x00\x01t\x00\x00",
         ERR_MALFORMED),
    CASE("connect will qos without will",
         "\x10\x0d" CONNECT_HDR "\x0a\x00\x3c\x00\x01"
         "a",
         ERR_MALFORMED),
    CASE("connect will retain without will",
         "\x10\x0d" CONNECT_HDR "\x22\x00\x3c\x00\x01"
         "a",
         ERR_MALFORMED),
    CASE("connect password without username",
         "\x10\x10" CONNECT_HDR "\x42\x00\x3c\x00\x01"
         "a\x00\x01p",
         ERR_MALFORMED),
    CASE("connect username flag but no username",
         "\x10\x0d" CONNECT_HDR "\x82\x00\x3c\x00\x01"
         "a",
         ERR_MALFORMED),
    CASE("connect client id runs past end",
         "\x10\x0d" CONNECT_HDR "\x02\x00\x3c\x00\x05"
         "a",
         ERR_MALFORMED),
    CASE("connect trailing byte",
         "\x10\x0e" CONNECT_HDR "\x02\x00\x3c\x00\x01"
         "a\x00",
         ERR_MALFORMED),
    CASE("connect will topic wildcard",
         "\x10\x12" CONNECT_HDR "\x06\x00\x3c\x00\x01"
         "a\x00\x01#\x00\x00",
         ERR_MALFORMED),
    CASE("connect will topic empty",
         "\x10\x11" CONNECT_HDR "\x06\x00\x3c\x00\x01"
         "a\x00\x00\x00\x00",
         ERR_MALFORMED),
    CASE("connect will message missing",
         "\x10\x10" CONNECT_HDR "\x06\x00\x3c\x00\x01"
         "a\x00\x01t",
         ERR_MALFORMED),
    CASE("connect ends after name", "\x10\x06\x00\x04MQTT", ERR_MALFORMED),
    CASE("connect name runs past end", "\x10\x03\x00\x09M", ERR_MALFORMED),
    CASE("connect unknown name and reserved bit",
         "\x10\x0d\x00\x04MQTX\x04\x03\x00\x3c\x00\x01"
         "a",
         ERR_MALFORMED),
    CASE("connect unknown name and short body", "\x10\x08\x00\x04MQTX\x04\x02", ERR_MALFORMED),
    /* CONNECT: protocol name and level. An unknown name is not MQTT at all:
     * closed without a CONNACK, as mosquitto does. */
    CASE("connect unknown name well formed",
         "\x10\x0d\x00\x04MQTX\x04\x02\x00\x3c\x00\x01"
         "a",
         ERR_MALFORMED),
    CASE("connect name MQTU", "\x10\x0d\x00\x04MQTU\x04\x02\x00\x0a\x00\x01p", ERR_MALFORMED),
    CASE("connect short name", "\x10\x0c\x00\x03MQT\x04\x02\x00\x0a\x00\x01p", ERR_MALFORMED),
    CASE("connect empty name", "\x10\x09\x00\x00\x04\x02\x00\x0a\x00\x01p", ERR_MALFORMED),
    CASE("connect long name", "\x10\x0e\x00\x05MQTTT\x04\x02\x00\x0a\x00\x01p", ERR_MALFORMED),
    CASE("connect unknown name level 5", "\x10\x0d\x00\x04MQTX\x05\x02\x00\x0a\x00\x01p",
         ERR_MALFORMED),
    CASE("connect mqtt level 2",
         "\x10\x0d\x00\x04MQTT\x02\x00\x00\x0a\x00\x01"
         "p",
         ERR_PROTO_VERSION),
    CASE("connect mqtt level 6",
         "\x10\x0d\x00\x04MQTT\x06\x00\x00\x0a\x00\x01"
         "p",
         ERR_PROTO_VERSION),
    CASE("connect mqisdp level 2", "\x10\x0f\x00\x06MQIsdp\x02\x00\x00\x0a\x00\x01p",
         ERR_PROTO_VERSION),
    CASE("connect mqtt level 6",
         "\x10\x0e\x00\x04MQTT\x06\x02\x00\x3c\x00\x00\x01"
         "a",
         ERR_PROTO_VERSION),
    CASE("connect mqtt level 5 nothing after", "\x10\x07\x00\x04MQTT\x05", ERR_MALFORMED),
    CASE("connect mqtt level 3",
         "\x10\x0d\x00\x04MQTT\x03\x02\x00\x3c\x00\x01"
         "a",
         ERR_PROTO_VERSION),
    CASE("connect mqisdp level 4",
         "\x10\x0f\x00\x06MQIsdp\x04\x02\x00\x3c\x00\x01"
         "a",
         ERR_PROTO_VERSION),
    /* CONNACK */
    CASE("connack length 3", "\x20\x03\x00\x00\x00", ERR_MALFORMED),
    CASE("connack reserved ack flags", "\x20\x02\x02\x00", ERR_MALFORMED),
    CASE("connack return code 6", "\x20\x02\x00\x06", ERR_MALFORMED),
    CASE("connack session present on refusal", "\x20\x02\x01\x05", ERR_MALFORMED),
    CASE("connack fixed header flags", "\x21\x02\x00\x00", ERR_MALFORMED),
    /* PUBLISH */
    CASE("publish qos 3", "\x36\x03\x00\x01t", ERR_MALFORMED),
    CASE("publish dup on qos 0", "\x38\x03\x00\x01t", ERR_MALFORMED),
    CASE("publish packet id 0", "\x32\x05\x00\x01t\x00\x00", ERR_MALFORMED),
    CASE("publish packet id missing", "\x32\x03\x00\x01t", ERR_MALFORMED),
    CASE("publish topic plus wildcard",
         "\x30\x05\x00\x03"
         "a/+",
         ERR_MALFORMED),
    CASE("publish topic hash wildcard", "\x30\x03\x00\x01#", ERR_MALFORMED),
    CASE("publish empty topic", "\x30\x02\x00\x00", ERR_MALFORMED),
    CASE("publish topic runs past end",
         "\x30\x03\x00\x05"
         "a",
         ERR_MALFORMED),
    CASE("publish topic bad utf8", "\x30\x03\x00\x01\xff", ERR_MALFORMED),
    CASE("publish topic nul", "\x30\x04\x00\x02t\x00", ERR_MALFORMED),
    CASE("publish no topic length", "\x30\x01\x00", ERR_MALFORMED),
    /* SUBSCRIBE / UNSUBSCRIBE */
    CASE("subscribe flags 0",
         "\x80\x06\x00\x01\x00\x01"
         "a\x00",
         ERR_MALFORMED),
    CASE("subscribe empty", "\x82\x02\x00\x01", ERR_MALFORMED),
    CASE("subscribe qos 3",
         "\x82\x06\x00\x01\x00\x01"
         "a\x03",
         ERR_MALFORMED),
    CASE("subscribe reserved qos bits",
         "\x82\x06\x00\x01\x00\x01"
         "a\x04",
         ERR_MALFORMED),
    CASE("subscribe qos byte missing",
         "\x82\x05\x00\x01\x00\x01"
         "a",
         ERR_MALFORMED),
    CASE("subscribe empty filter", "\x82\x05\x00\x01\x00\x00\x00", ERR_MALFORMED),
    CASE("subscribe packet id 0",
         "\x82\x06\x00\x00\x00\x01"
         "a\x00",
         ERR_MALFORMED),
    CASE("subscribe filter bad utf8", "\x82\x07\x00\x01\x00\x02\xc3\x28\x00", ERR_MALFORMED),
    CASE("subscribe second filter runs past end",
         "\x82\x09\x00\x01\x00\x01"
         "a\x00\x00\x07x",
         ERR_MALFORMED),
    CASE("unsubscribe flags 0",
         "\xa0\x05\x00\x01\x00\x01"
         "a",
         ERR_MALFORMED),
    CASE("unsubscribe empty", "\xa2\x02\x00\x01", ERR_MALFORMED),
    CASE("unsubscribe empty filter", "\xa2\x04\x00\x01\x00\x00", ERR_MALFORMED),
    CASE("unsubscribe no packet id", "\xa2\x01\x00", ERR_MALFORMED),
    /* SUBACK */
    CASE("suback code 3", "\x90\x03\x00\x01\x03", ERR_MALFORMED),
    CASE("suback no codes", "\x90\x02\x00\x01", ERR_MALFORMED),
    CASE("suback packet id 0", "\x90\x03\x00\x00\x00", ERR_MALFORMED),
    /* acks */
    CASE("puback length 3", "\x40\x03\x00\x01\x00", ERR_MALFORMED),
    CASE("puback length 1", "\x40\x01\x01", ERR_MALFORMED),
    CASE("puback packet id 0", "\x40\x02\x00\x00", ERR_MALFORMED),
    CASE("pubrec flags 2", "\x52\x02\x00\x01", ERR_MALFORMED),
    CASE("pubrel flags 0", "\x60\x02\x00\x01", ERR_MALFORMED),
    CASE("pubcomp packet id 0", "\x70\x02\x00\x00", ERR_MALFORMED),
    CASE("unsuback length 0", "\xb0\x00", ERR_MALFORMED),
    /* empty packets and types */
    CASE("pingreq length 1", "\xc0\x01\x00", ERR_MALFORMED),
    CASE("pingresp flags", "\xd8\x00", ERR_MALFORMED),
    CASE("disconnect flags", "\xe1\x00", ERR_MALFORMED),
    CASE("disconnect length 2", "\xe0\x02\x00\x00", ERR_MALFORMED),
    CASE("reserved type 0", "\x00\x00", ERR_MALFORMED),
    CASE("reserved type 15", "\xf0\x00", ERR_MALFORMED),
    /* frames handed to parse that are not one whole frame */
    {"bytes after the frame", "\x30\x03\x00\x01tx", 6, ERR_MALFORMED, false},
    {"frame shorter than its length", "\x30\x05\x00\x01t", 5, ERR_MALFORMED, false},
    {"one byte", "\xc0", 1, ERR_MALFORMED, false},
    {"five byte length", "\x30\xff\xff\xff\xff\x01", 6, ERR_MALFORMED, false},
};

static void test_parse_malformed_table(void **state)
{
    (void)state;
    size_t n = sizeof bad_cases / sizeof bad_cases[0];
    assert_true(n >= 30);
    for (size_t i = 0; i < n; i++) {
        const struct bad_case *c = &bad_cases[i];
        const uint8_t *p = (const uint8_t *)c->bytes;
        struct mqtt_packet pkt;
        size_t fl = 0;
        if (c->framed) {
            /* The hand-written length is right, so the rejection below is
             * for the reason the case names. */
            assert_int_equal(mqtt_frame(p, c->len, 0, &fl), 1);
            assert_int_equal(fl, c->len);
        }
        int rc = mqtt_parse(p, c->len, 4, &pkt);
        if (rc != c->want) print_error("case \"%s\": got %d, want %d\n", c->name, rc, c->want);
        assert_int_equal(rc, c->want);
    }
}

/* The protocol-level cases in the table are rejected only for their level:
 * the same bytes with the right name and level parse. */
static void test_parse_connect_accepts_controls(void **state)
{
    (void)state;
    struct mqtt_packet pkt;
    const char ok311[] = "\x10\x0d\x00\x04MQTT\x04\x02\x00\x3c\x00\x01"
                         "a";
    assert_int_equal(mqtt_parse((const uint8_t *)ok311, sizeof ok311 - 1, 4, &pkt), 0);
    assert_int_equal(pkt.connect.protocol_level, 4);
    assert_true(pkt.connect.clean_session);
    assert_int_equal(pkt.connect.keepalive, 60);
    const char ok31[] = "\x10\x0f\x00\x06MQIsdp\x03\x02\x00\x3c\x00\x01"
                        "a";
    assert_int_equal(mqtt_parse((const uint8_t *)ok31, sizeof ok31 - 1, 4, &pkt), 0);
    assert_int_equal(pkt.connect.protocol_level, 3);
    const char will[] = "\x10\x12\x00\x04MQTT\x04\x36\x00\x3c\x00\x01"
                        "a\x00\x01t\x00\x00";
    assert_int_equal(mqtt_parse((const uint8_t *)will, sizeof will - 1, 4, &pkt), 0);
    assert_true(pkt.connect.will);
    assert_int_equal(pkt.connect.will_qos, 2);
    assert_true(pkt.connect.will_retain);
    assert_int_equal(pkt.connect.will_payload.len, 0);
}

static void test_utf8_valid_accepts(void **state)
{
    (void)state;
    static const char *ok[] = {
        "",
        "plain ascii topic that is longer than eight bytes",
        "\x01\x1f\x7f",         /* control characters are only discouraged */
        "\xc2\x80",             /* U+0080 */
        "\xdf\xbf",             /* U+07FF */
        "\xe0\xa0\x80",         /* U+0800 */
        "\xed\x9f\xbf",         /* U+D7FF */
        "\xee\x80\x80",         /* U+E000 */
        "\xef\xbf\xbf",         /* U+FFFF */
        "\xf0\x90\x80\x80",     /* U+10000 */
        "\xf4\x8f\xbf\xbf",     /* U+10FFFF */
        "abcdefg\xc3\xa9hijklm" /* multibyte across the 8-byte fast path */
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        assert_true(mqtt_utf8_valid((const uint8_t *)ok[i], strlen(ok[i])));
}

static void test_utf8_valid_rejects(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        size_t len;
    } bad[] = {
        {"\x00", 1},                  /* U+0000 */
        {"abcdefgh\x00ijklmnop", 17}, /* U+0000 inside a word */
        {"abcdefg\x00", 8},           /* U+0000 at the end of a word */
        {"\xc0\x80", 2},              /* overlong U+0000 */
        {"\xc1\xbf", 2},              /* overlong U+007F */
        {"\xe0\x9f\xbf", 3},          /* overlong U+07FF */
        {"\xf0\x8f\xbf\xbf", 4},      /* overlong U+FFFF */
        {"\xed\xa0\x80", 3},          /* U+D800 */
        {"\xed\xbf\xbf", 3},          /* U+DFFF */
        {"\xf4\x90\x80\x80", 4},      /* U+110000 */
        {"\xf8\x88\x80\x80\x80", 5},  /* 5-byte form */
        {"\x80", 1},                  /* lone continuation */
        {"\xc3", 1},                  /* truncated */
        {"\xe2\x82", 2},              /* truncated */
        {"\xc3\x28", 2},              /* bad continuation */
        {"\xff", 1},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_false(mqtt_utf8_valid((const uint8_t *)bad[i].s, bad[i].len));
}

/* Control characters: "t" + one of them + "p", for each string field. */
static const char *const controls[] = {"t\x01p", "t\x1fp", "t\x7fp", "t\xc2\x80p", "t\xc2\x9fp"};
#define N_CONTROLS (sizeof controls / sizeof controls[0])

static struct mqtt_bytes text(const char *s)
{
    return (struct mqtt_bytes){(const uint8_t *)s, (uint16_t)strlen(s)};
}

/* Encodes one packet with field (0 client id, 1 will topic, 2 user name,
 * 3 PUBLISH topic, 4 SUBSCRIBE filter, 5 UNSUBSCRIBE filter) set to s and
 * returns what mqtt_parse makes of it. */
static int parse_with_field(int field, const char *s)
{
    struct buf b;
    buf_init(&b, 0);
    struct mqtt_connect c = {.protocol_level = 4, .clean_session = true, .client_id = BYTES("id")};
    struct mqtt_bytes t = text(s);
    uint8_t qos = 1;
    int rc;
    if (field <= 2) {
        if (field == 0) c.client_id = t;
        c.will = field == 1;
        c.will_topic = t;
        c.has_username = field == 2;
        c.username = t;
        rc = mqtt_encode_connect(&b, &c, NULL, NULL);
    } else if (field == 3) {
        struct mqtt_publish p = {.topic = t, .payload = (const uint8_t *)"x", .payload_len = 1};
        rc = mqtt_encode_publish(&b, &p);
    } else if (field == 4) {
        rc = mqtt_encode_subscribe(&b, 7, &t, &qos, 1, NULL);
    } else {
        rc = mqtt_encode_unsubscribe(&b, 7, &t, 1, NULL);
    }
    assert_int_equal(rc, 0);
    struct mqtt_packet pkt;
    rc = mqtt_parse(buf_head(&b), buf_used(&b), 4, &pkt);
    buf_free(&b);
    return rc;
}

static void test_parse_refuses_control_characters(void **state)
{
    (void)state;
    for (int field = 0; field <= 5; field++) {
        assert_int_equal(parse_with_field(field, "tp"), 0);
        for (size_t i = 0; i < N_CONTROLS; i++) {
            int rc = parse_with_field(field, controls[i]);
            if (rc != ERR_MALFORMED) print_error("field %d, control %zu: got %d\n", field, i, rc);
            assert_int_equal(rc, ERR_MALFORMED);
        }
        /* The neighbours of the two ranges are ordinary characters. */
        assert_int_equal(parse_with_field(field, "t p~"), 0);
        assert_int_equal(parse_with_field(field, "t\xc2\xa0p\xc3\x80"), 0); /* U+00A0, U+00C0 */
    }
}

/* Binary fields (password, will message, PUBLISH payload) may hold anything. */
static void test_parse_binary_fields_take_control_characters(void **state)
{
    (void)state;
    struct mqtt_connect c = {
        .protocol_level = 4,
        .client_id = BYTES("id"),
        .will = true,
        .will_topic = BYTES("w"),
        .will_payload = BYTES("\x01\x7f\xc2\x9f"),
        .has_username = true,
        .username = BYTES("u"),
        .has_password = true,
        .password = BYTES("\x01\x1f\x7f"),
    };
    connect_round_trip(&c);
    struct mqtt_publish p = {
        .topic = BYTES("t"), .payload = (const uint8_t *)"\x01\x1f", .payload_len = 2};
    struct buf b;
    buf_init(&b, 0);
    assert_int_equal(mqtt_encode_publish(&b, &p), 0);
    struct mqtt_packet pkt;
    assert_int_equal(mqtt_parse(buf_head(&b), buf_used(&b), 4, &pkt), 0);
    assert_int_equal(pkt.publish.payload_len, 2);
    buf_free(&b);
}

static void test_text_valid(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_CONTROLS; i++) {
        const uint8_t *p = (const uint8_t *)controls[i];
        assert_true(mqtt_utf8_valid(p, strlen(controls[i])));
        assert_false(mqtt_text_valid(p, strlen(controls[i])));
    }
    assert_true(mqtt_text_valid((const uint8_t *)"", 0));
    assert_true(mqtt_text_valid((const uint8_t *)"a/b c~\xc2\xa0\xef\xbf\xbf", 11));
    assert_false(mqtt_text_valid((const uint8_t *)"\xed\xa0\x80", 3)); /* still UTF-8 rules */
    assert_false(mqtt_text_valid((const uint8_t *)"long enough to be fast\x1f", 23));
}

/* MQTT 3.1 (MQIsdp) did not require the reserved CONNECT flag or the fixed
 * header's low bits to be zero: mosquitto accepts both there, so do we.
 * 3.1.1 requires them zero (table cases above). */
static void test_parse_v31_connect_ignores_unused_bits(void **state)
{
    (void)state;
    struct mqtt_packet pkt;
    const char reserved[] = "\x10\x0f\x00\x06MQIsdp\x03\x01\x00\x0a\x00\x01p";
    assert_int_equal(mqtt_parse((const uint8_t *)reserved, sizeof reserved - 1, 4, &pkt), 0);
    assert_int_equal(pkt.connect.protocol_level, 3);
    assert_false(pkt.connect.clean_session);
    const char qos1[] = "\x14\x0f\x00\x06MQIsdp\x03\x01\x00\x0a\x00\x01p";
    assert_int_equal(mqtt_parse((const uint8_t *)qos1, sizeof qos1 - 1, 4, &pkt), 0);
    const char v311[] = "\x14\x0d\x00\x04MQTT\x04\x02\x00\x0a\x00\x01p";
    assert_int_equal(mqtt_parse((const uint8_t *)v311, sizeof v311 - 1, 4, &pkt), ERR_MALFORMED);
}

static void test_topic_next_stops_at_bounds(void **state)
{
    (void)state;
    /* A list built by hand whose last entry runs past its end. */
    const uint8_t raw[] = {0x00, 0x01, 'a', 0x01, 0x00, 0x09, 'b'};
    struct mqtt_list l = {.packet_id = 1, .count = 2, .has_qos = true, .p = raw, .len = sizeof raw};
    size_t pos = 0;
    struct mqtt_bytes f;
    uint8_t q = 0;
    assert_int_equal(mqtt_topic_next(&l, &pos, &f, &q), 1);
    assert_int_equal(f.len, 1);
    assert_int_equal(q, 1);
    assert_int_equal(mqtt_topic_next(&l, &pos, &f, &q), 0);
    assert_int_equal(pos, 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_connect_round_trip_minimal),
        cmocka_unit_test(test_connect_round_trip_full),
        cmocka_unit_test(test_connect_round_trip_v31),
        cmocka_unit_test(test_connack_round_trip),
        cmocka_unit_test(test_publish_round_trip_qos0),
        cmocka_unit_test(test_publish_round_trip_qos1_qos2),
        cmocka_unit_test(test_publish_round_trip_max_topic),
        cmocka_unit_test(test_ack_round_trip_all_types),
        cmocka_unit_test(test_subscribe_round_trip),
        cmocka_unit_test(test_unsubscribe_round_trip),
        cmocka_unit_test(test_suback_round_trip),
        cmocka_unit_test(test_empty_packets_round_trip),
        cmocka_unit_test(test_frame_partial_stream),
        cmocka_unit_test(test_frame_remaining_length_boundaries),
        cmocka_unit_test(test_frame_varint_too_long),
        cmocka_unit_test(test_frame_oversize_max_packet),
        cmocka_unit_test(test_encode_publish_too_large),
        cmocka_unit_test(test_encode_too_many_entries),
        cmocka_unit_test(test_encode_failure_leaves_buffer),
        cmocka_unit_test(test_encode_rejects_invalid_arguments),
        cmocka_unit_test(test_parse_malformed_table),
        cmocka_unit_test(test_parse_connect_accepts_controls),
        cmocka_unit_test(test_utf8_valid_accepts),
        cmocka_unit_test(test_utf8_valid_rejects),
        cmocka_unit_test(test_parse_refuses_control_characters),
        cmocka_unit_test(test_parse_binary_fields_take_control_characters),
        cmocka_unit_test(test_text_valid),
        cmocka_unit_test(test_parse_v31_connect_ignores_unused_bits),
        cmocka_unit_test(test_topic_next_stops_at_bounds),
        cmocka_unit_test(test_parse_v5_subscribe_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
