/* libFuzzer target for the MQTT codec, 3.1.1 and 5.0: frames the input as a
 * stream of packets and parses each frame in both layouts, walks
 * SUBSCRIBE/UNSUBSCRIBE lists, and re-encodes each packet it accepted, which
 * must parse back to the same packet, properties included (and to the same
 * bytes when the sender used the minimal encodings). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mqtt/codec.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static bool bytes_eq(struct mqtt_bytes a, struct mqtt_bytes b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

/* UTF-8 as Unicode table 3-7 lists its well-formed byte sequences, minus
 * U+0000: a second, independent opinion for mqtt_utf8_valid. */
static bool utf8_reference(const uint8_t *p, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint8_t c = p[i];
        size_t n;
        uint8_t lo = 0x80, hi = 0xbf;
        if (c == 0) return false;
        if (c < 0x80)
            n = 1;
        else if (c >= 0xc2 && c <= 0xdf)
            n = 2;
        else if (c >= 0xe0 && c <= 0xef)
            n = 3;
        else if (c >= 0xf0 && c <= 0xf4)
            n = 4;
        else
            return false;
        if (c == 0xe0) lo = 0xa0;
        if (c == 0xed) hi = 0x9f;
        if (c == 0xf0) lo = 0x90;
        if (c == 0xf4) hi = 0x8f;
        if (len - i < n) return false;
        for (size_t k = 1; k < n; k++) {
            uint8_t cc = p[i + k];
            if (cc < (k == 1 ? lo : 0x80) || cc > (k == 1 ? hi : 0xbf)) return false;
        }
        i += n;
    }
    return true;
}

/* Given well-formed UTF-8: decodes each code point and looks for U+0001-U+001F
 * and U+007F-U+009F, a second opinion for mqtt_text_valid. */
static bool controls_reference(const uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len;) {
        uint8_t c = p[i];
        size_t n = c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
        uint32_t cp = n == 1 ? c : c & (0x7f >> n);
        for (size_t k = 1; k < n; k++) cp = cp << 6 | (p[i + k] & 0x3f);
        if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f)) return true;
        i += n;
    }
    return false;
}

static bool text_ok(struct mqtt_bytes b)
{
    return mqtt_text_valid(b.p, b.len);
}

/* Walks a SUBSCRIBE/UNSUBSCRIBE list: exactly count entries, each a
 * non-empty valid string, ending exactly at the list's end. */
static void walk_list(const struct mqtt_list *l, bool subscribe)
{
    size_t pos = 0, n = 0;
    struct mqtt_bytes f;
    uint8_t q = 0xff;
    CHECK(l->has_qos == subscribe);
    while (mqtt_topic_next(l, &pos, &f, &q)) {
        CHECK(f.len > 0 && text_ok(f));
        CHECK(f.p >= l->p && f.p + f.len <= l->p + l->len);
        CHECK(subscribe ? (q & MQTT_SUB_QOS) <= 2 : q == 0);
        n++;
    }
    CHECK(n == l->count && pos == l->len);
}

static bool connect_eq(const struct mqtt_connect *a, const struct mqtt_connect *b)
{
    return a->protocol_level == b->protocol_level && a->clean_session == b->clean_session &&
           a->keepalive == b->keepalive && bytes_eq(a->client_id, b->client_id) &&
           a->will == b->will && a->will_qos == b->will_qos && a->will_retain == b->will_retain &&
           bytes_eq(a->will_topic, b->will_topic) && bytes_eq(a->will_payload, b->will_payload) &&
           a->has_username == b->has_username && bytes_eq(a->username, b->username) &&
           a->has_password == b->has_password && bytes_eq(a->password, b->password);
}

static bool publish_eq(const struct mqtt_publish *a, const struct mqtt_publish *b)
{
    return a->qos == b->qos && a->dup == b->dup && a->retain == b->retain &&
           bytes_eq(a->topic, b->topic) && a->packet_id == b->packet_id &&
           a->payload_len == b->payload_len &&
           (a->payload_len == 0 || memcmp(a->payload, b->payload, a->payload_len) == 0);
}

static bool list_eq(const struct mqtt_list *a, const struct mqtt_list *b)
{
    return a->packet_id == b->packet_id && a->count == b->count && a->has_qos == b->has_qos &&
           a->len == b->len && (a->len == 0 || memcmp(a->p, b->p, a->len) == 0);
}

static bool props_eq(const struct mqtt_props *a, const struct mqtt_props *b)
{
    return a->has == b->has && a->raw_len == b->raw_len &&
           (a->raw_len == 0 || memcmp(a->raw, b->raw, a->raw_len) == 0);
}

static bool packet_eq(const struct mqtt_packet *a, const struct mqtt_packet *b)
{
    if (a->type != b->type || a->flags != b->flags || a->version != b->version ||
        a->reason != b->reason)
        return false;
    if (a->version == MQTT_V5 &&
        (!props_eq(&a->props, &b->props) || !props_eq(&a->will_props, &b->will_props)))
        return false;
    switch (a->type) {
    case MQTT_CONNECT: return connect_eq(&a->connect, &b->connect);
    case MQTT_CONNACK:
        return a->connack.session_present == b->connack.session_present &&
               a->connack.rc == b->connack.rc;
    case MQTT_PUBLISH: return publish_eq(&a->publish, &b->publish);
    case MQTT_SUBSCRIBE:
    case MQTT_UNSUBSCRIBE:
    case MQTT_SUBACK: return list_eq(&a->list, &b->list);
    case MQTT_UNSUBACK:
        return a->version == MQTT_V5 ? list_eq(&a->list, &b->list) : a->packet_id == b->packet_id;
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBREL:
    case MQTT_PUBCOMP: return a->packet_id == b->packet_id;
    case MQTT_PINGREQ:
    case MQTT_PINGRESP:
    case MQTT_DISCONNECT:
    case MQTT_AUTH: return true;
    }
    return false;
}

/* A parsed property list, to encode again as it came. */
static struct mqtt_props as_tail(const struct mqtt_props *p)
{
    return (struct mqtt_props){.tail = p->raw, .tail_len = p->raw_len};
}

/* Re-encodes a SUBSCRIBE or UNSUBSCRIBE from its walked entries. */
static int encode_list(struct buf *b, const struct mqtt_packet *pkt, const struct mqtt_props *pp)
{
    const struct mqtt_list *l = &pkt->list;
    struct mqtt_bytes *f = malloc((l->count + 1) * sizeof *f);
    uint8_t *q = malloc(l->count + 1u);
    CHECK(f && q);
    size_t pos = 0, n = 0;
    while (n < l->count && mqtt_topic_next(l, &pos, &f[n], &q[n])) n++;
    CHECK(n == l->count);
    int rc = pkt->type == MQTT_SUBSCRIBE ? mqtt_encode_subscribe(b, l->packet_id, f, q, n, pp)
                                         : mqtt_encode_unsubscribe(b, l->packet_id, f, n, pp);
    free(f);
    free(q);
    return rc;
}

static int encode(struct buf *b, const struct mqtt_packet *pkt)
{
    bool v5 = pkt->version == MQTT_V5;
    struct mqtt_props props = as_tail(&pkt->props), will = as_tail(&pkt->will_props);
    const struct mqtt_props *pp = v5 ? &props : NULL;
    struct mqtt_publish pub = pkt->publish;
    const struct mqtt_list *l = &pkt->list;
    switch (pkt->type) {
    case MQTT_CONNECT: return mqtt_encode_connect(b, &pkt->connect, pp, v5 ? &will : NULL);
    case MQTT_CONNACK:
        return mqtt_encode_connack(b, pkt->connack.session_present, pkt->connack.rc, pp);
    case MQTT_PUBLISH: pub.props = pp; return mqtt_encode_publish(b, &pub);
    case MQTT_SUBSCRIBE:
    case MQTT_UNSUBSCRIBE: return encode_list(b, pkt, pp);
    case MQTT_SUBACK: return mqtt_encode_suback(b, l->packet_id, l->p, l->count, pp);
    case MQTT_UNSUBACK:
        return v5 ? mqtt_encode_unsuback(b, l->packet_id, l->p, l->count, pp)
                  : mqtt_encode_ack(b, pkt->type, pkt->packet_id, 0, NULL);
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBREL:
    case MQTT_PUBCOMP: return mqtt_encode_ack(b, pkt->type, pkt->packet_id, pkt->reason, pp);
    case MQTT_PINGREQ: return mqtt_encode_pingreq(b);
    case MQTT_PINGRESP: return mqtt_encode_pingresp(b);
    case MQTT_DISCONNECT: return mqtt_encode_disconnect(b, pkt->reason, pp);
    case MQTT_AUTH: return mqtt_encode_auth(b, pkt->reason, pp);
    }
    return ERR_INTERNAL;
}

/* 5.0 acknowledgements, DISCONNECT and AUTH may spell out a success reason
 * and an empty property list that the encoder leaves out. */
static bool may_shrink(const struct mqtt_packet *pkt)
{
    if (pkt->version != MQTT_V5) return false;
    switch (pkt->type) {
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBREL:
    case MQTT_PUBCOMP:
    case MQTT_DISCONNECT:
    case MQTT_AUTH: return true;
    default: return false;
    }
}

/* Bytes the properties of a parsed packet take on the wire. */
static size_t props_wire(const struct mqtt_packet *pkt)
{
    if (pkt->version != MQTT_V5) return 0;
    struct mqtt_props t = as_tail(&pkt->props);
    return mqtt_props_wire_size(&t);
}

/* Length of the fixed header of a frame mqtt_frame accepted. */
static size_t header_len(const uint8_t *frame)
{
    size_t n = 1;
    while (frame[n] & 0x80) n++;
    return n + 1;
}

static size_t minimal_header_len(size_t rl)
{
    return 1 + (rl < 128 ? 1 : rl < 16384 ? 2 : rl < 2097152 ? 3 : 4);
}

static void round_trip(const uint8_t *frame, size_t len, const struct mqtt_packet *pkt)
{
    struct buf b;
    struct mqtt_packet again;
    size_t fl = 0;
    buf_init(&b, 0);
    CHECK(encode(&b, pkt) == 0);
    CHECK(mqtt_frame(buf_head(&b), buf_used(&b), buf_used(&b), &fl) == 1);
    CHECK(fl == buf_used(&b));
    CHECK(mqtt_parse(buf_head(&b), fl, pkt->version, &again) == 0);
    struct mqtt_packet want = *pkt;
    if (want.type == MQTT_CONNECT) want.flags = 0;
    CHECK(packet_eq(&want, &again));
    if (pkt->type == MQTT_PUBLISH)
        CHECK(fl == mqtt_publish_size(pkt->publish.topic.len, pkt->publish.payload_len,
                                      pkt->publish.qos, props_wire(pkt)));
    /* A 3.1 CONNECT may carry unused bits (fixed header, reserved flag) that
     * are not re-encoded. */
    bool v31 = pkt->type == MQTT_CONNECT && pkt->connect.protocol_level == 3;
    size_t h = header_len(frame);
    if (h == minimal_header_len(len - h) && !v31 && !(may_shrink(pkt) && fl < len))
        CHECK(fl == len && memcmp(buf_head(&b), frame, len) == 0);
    buf_free(&b);
}

/* Parses one frame as 3.1.1 and as 5.0 (a CONNECT says its own version). */
static void parse_both(const uint8_t *p, size_t fl)
{
    static struct mqtt_packet pkt; /* large: kept off the stack */
    for (uint8_t version = MQTT_V311; version <= MQTT_V5; version++) {
        int rc = mqtt_parse(p, fl, version, &pkt);
        CHECK(rc == 0 || rc == ERR_MALFORMED || rc == ERR_PROTO_VERSION || rc == ERR_PROTO);
        CHECK(rc != ERR_PROTO_VERSION || p[0] >> 4 == MQTT_CONNECT);
        if (rc != 0) continue;
        CHECK(pkt.type == p[0] >> 4);
        if (pkt.type == MQTT_SUBSCRIBE || pkt.type == MQTT_UNSUBSCRIBE)
            walk_list(&pkt.list, pkt.type == MQTT_SUBSCRIBE);
        if (pkt.type == MQTT_CONNECT)
            CHECK(text_ok(pkt.connect.client_id) && text_ok(pkt.connect.will_topic) &&
                  text_ok(pkt.connect.username));
        if (pkt.type == MQTT_PUBLISH) CHECK(text_ok(pkt.publish.topic));
        round_trip(p, fl, &pkt);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    bool utf8 = utf8_reference(data, size);
    CHECK(mqtt_utf8_valid(data, size) == utf8);
    CHECK(mqtt_text_valid(data, size) == (utf8 && !controls_reference(data, size)));

    size_t off = 0;
    while (off < size) {
        const uint8_t *p = data + off;
        size_t left = size - off, fl = 0, fl_small = 0;
        int rc = mqtt_frame(p, left, 0, &fl);
        int rc_small = mqtt_frame(p, left, 64, &fl_small);
        if (rc == 1) {
            CHECK(fl >= 2 && fl <= left);
            CHECK(mqtt_frame(p, fl - 1, 0, &fl_small) == 0);
            CHECK(rc_small == (fl > 64 ? ERR_TOO_LARGE : 1));
        } else {
            CHECK(rc == 0 || rc == ERR_MALFORMED);
            CHECK(rc_small == rc || rc_small == ERR_TOO_LARGE);
            break;
        }

        parse_both(p, fl);
        off += fl;
    }
    return 0;
}
