/* MQTT 3.1.1 and 5.0 codec (see codec.h): framing by remaining length, one
 * parser per packet type that enforces every rule checkable on a single
 * packet, and encoders that size a packet first and reserve it whole, so a
 * failed encode leaves the output buffer as it was. Parsing never allocates.
 * The 5.0 layouts differ from 3.1.1 by properties after the variable header
 * and reason codes in the acknowledgements; both share every function. */
#include "mqtt/codec.h"

#include <string.h>

#define VARINT_MAX_BYTES 4

/* CONNECT flag bits (3.1.2.3). */
#define CF_RESERVED 0x01
#define CF_CLEAN    0x02
#define CF_WILL     0x04
#define CF_WILL_QOS 0x18
#define CF_RETAIN   0x20
#define CF_PASSWORD 0x40
#define CF_USERNAME 0x80

/* PUBLISH fixed-header flag bits (3.3.1). */
#define PF_RETAIN 0x01
#define PF_QOS    0x06
#define PF_DUP    0x08

/* Decodes the remaining length at p[0..len): returns the bytes it took (1..4),
 * 0 when more bytes are needed, ERR_MALFORMED when the fourth byte still has
 * its continuation bit set. Non-minimal encodings are accepted (3.1.1 does
 * not forbid them). */
static int varint_read(const uint8_t *p, size_t len, uint32_t *value)
{
    uint32_t v = 0;
    for (size_t i = 0; i < VARINT_MAX_BYTES; i++) {
        if (i >= len) return 0;
        v |= (uint32_t)(p[i] & 0x7f) << (7 * i);
        if (!(p[i] & 0x80)) {
            *value = v;
            return (int)i + 1;
        }
    }
    return ERR_MALFORMED;
}

static size_t varint_size(size_t v)
{
    return v < 128 ? 1 : v < 16384 ? 2 : v < 2097152 ? 3 : 4;
}

/* max_packet 0 means no limit beyond the protocol's own. */
int mqtt_frame(const uint8_t *buf, size_t len, size_t max_packet, size_t *frame_len)
{
    if (len < 2) return 0;
    uint32_t rl = 0;
    int n = varint_read(buf + 1, len - 1, &rl);
    if (n <= 0) return n;
    size_t total = 1 + (size_t)n + rl;
    if (max_packet && total > max_packet) return ERR_TOO_LARGE;
    if (len < total) return 0;
    *frame_len = total;
    return 1;
}

bool mqtt_utf8_valid(const uint8_t *p, size_t len)
{
    const uint64_t high = 0x8080808080808080ull, ones = 0x0101010101010101ull;
    size_t i = 0;
    while (i < len) {
        /* Topics are mostly ASCII: skip eight bytes at a time when none has
         * its high bit set and none is zero. */
        if (len - i >= 8) {
            uint64_t w;
            memcpy(&w, p + i, 8);
            if (!(w & high) && !((w - ones) & ~w & high)) {
                i += 8;
                continue;
            }
        }
        uint8_t c = p[i];
        if (c < 0x80) {
            if (!c) return false;
            i++;
            continue;
        }
        size_t n;
        uint32_t cp, min;
        if ((c & 0xe0) == 0xc0) {
            n = 2, cp = c & 0x1f, min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            n = 3, cp = c & 0x0f, min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            n = 4, cp = c & 0x07, min = 0x10000;
        } else {
            return false;
        }
        if (len - i < n) return false;
        for (size_t k = 1; k < n; k++) {
            uint8_t cc = p[i + k];
            if ((cc & 0xc0) != 0x80) return false;
            cp = cp << 6 | (cc & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
        i += n;
    }
    return true;
}

/* Given valid UTF-8: true when it holds no control character U+0001-U+001F
 * or U+007F-U+009F (3.1.1 1.5.3.1 lets a server close on them). U+0080-U+009F
 * are the two-byte sequences C2 80 .. C2 9F. */
static bool no_controls(const uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (p[i] < 0x20 || p[i] == 0x7f) return false;
        if (p[i] == 0xc2 && i + 1 < len && p[i + 1] <= 0x9f) return false;
    }
    return true;
}

bool mqtt_text_valid(const uint8_t *p, size_t len)
{
    return mqtt_utf8_valid(p, len) && no_controls(p, len);
}

/* Reads a length-prefixed field that is binary data (no UTF-8 rule). */
static int rd_binary(struct rd *r, struct mqtt_bytes *b)
{
    return rd_lp16(r, &b->p, &b->len);
}

/* Reads a UTF-8 encoded string (1.5.3). Every string of a 3.1.1 packet is a
 * name the broker keeps, routes or logs (ClientId, user name, topic names
 * and filters), so control characters are refused as well. */
static int rd_string(struct rd *r, struct mqtt_bytes *b)
{
    GUARD(rd_lp16(r, &b->p, &b->len));
    ENSURE(mqtt_text_valid(b->p, b->len), ERR_MALFORMED);
    return 0;
}

/* A topic name one may publish to: non-empty and without wildcards. Filter
 * syntax and '$' rules belong to the broker (topic.h). */
static bool topic_name_ok(const struct mqtt_bytes *t)
{
    return t->len && !memchr(t->p, '+', t->len) && !memchr(t->p, '#', t->len);
}

/* The rest of a CONNECT after the protocol name and level. 3.1 (MQIsdp)
 * leaves the reserved flag bit unused rather than zero: it is ignored there. */
static int parse_connect_body(struct rd *r, bool v31, struct mqtt_packet *out)
{
    struct mqtt_connect *c = &out->connect;
    bool v5 = c->protocol_level == MQTT_V5;
    uint8_t flags;
    GUARD(rd_u8(r, &flags));
    GUARD(rd_u16(r, &c->keepalive));
    c->clean_session = flags & CF_CLEAN;
    c->will = flags & CF_WILL;
    c->will_qos = (flags & CF_WILL_QOS) >> 3;
    c->will_retain = flags & CF_RETAIN;
    c->has_username = flags & CF_USERNAME;
    c->has_password = flags & CF_PASSWORD;
    ENSURE(v31 || !(flags & CF_RESERVED), ERR_MALFORMED);
    ENSURE(c->will || (!c->will_qos && !c->will_retain), ERR_MALFORMED);
    ENSURE(c->will_qos <= 2, ERR_MALFORMED);
    ENSURE(v5 || c->has_username || !c->has_password, ERR_MALFORMED);
    if (v5) GUARD(mqtt_props_parse(r, MQTT_IN_CONNECT, &out->props));

    GUARD(rd_string(r, &c->client_id));
    if (c->will) {
        if (v5) GUARD(mqtt_props_parse(r, MQTT_IN_WILL, &out->will_props));
        GUARD(rd_string(r, &c->will_topic));
        ENSURE(topic_name_ok(&c->will_topic), ERR_MALFORMED);
        GUARD(rd_binary(r, &c->will_payload));
    }
    if (c->has_username) GUARD(rd_string(r, &c->username));
    if (c->has_password) GUARD(rd_binary(r, &c->password));
    ENSURE(rd_left(r) == 0, ERR_MALFORMED);
    return 0;
}

/* A known protocol name with an unknown level is answered with CONNACK 1
 * at once: its body may follow another layout. Any other name is not MQTT:
 * the connection is closed without a CONNACK (3.1.2.1 allows both; mosquitto
 * closes). The fixed-header flags must be zero, except in 3.1, whose CONNECT
 * carried the DUP/QoS/RETAIN bits unused. out->version is set as soon as the
 * level is known, so a failed 5.0 CONNECT can be answered in 5.0. */
static int parse_connect(struct rd *r, uint8_t header_flags, struct mqtt_packet *out)
{
    struct mqtt_connect *c = &out->connect;
    const uint8_t *name;
    uint16_t name_len;
    GUARD(rd_lp16(r, &name, &name_len));
    GUARD(rd_u8(r, &c->protocol_level));
    bool mqtt = name_len == 4 && !memcmp(name, "MQTT", 4);
    bool mqisdp = name_len == 6 && !memcmp(name, "MQIsdp", 6);
    ENSURE(mqtt || mqisdp, ERR_MALFORMED);
    ENSURE(mqisdp ? c->protocol_level == MQTT_V31
                  : c->protocol_level == MQTT_V311 || c->protocol_level == MQTT_V5,
           ERR_PROTO_VERSION);
    out->version = c->protocol_level == MQTT_V5 ? MQTT_V5 : MQTT_V311;
    ENSURE(mqisdp || !header_flags, ERR_MALFORMED);
    return parse_connect_body(r, mqisdp, out);
}

static int parse_connack(struct rd *r, struct mqtt_packet *out)
{
    struct mqtt_connack *a = &out->connack;
    bool v5 = out->version == MQTT_V5;
    uint8_t ack_flags;
    ENSURE(v5 || rd_left(r) == 2, ERR_MALFORMED);
    GUARD(rd_u8(r, &ack_flags));
    GUARD(rd_u8(r, &a->rc));
    ENSURE(!(ack_flags & 0xfe), ERR_MALFORMED);
    ENSURE(v5 ? a->rc == 0 || a->rc >= 0x80 : a->rc <= MQTT_CONNACK_NOT_AUTHORIZED, ERR_MALFORMED);
    a->session_present = ack_flags & 1;
    ENSURE(!a->session_present || a->rc == MQTT_CONNACK_ACCEPTED, ERR_MALFORMED);
    if (v5) GUARD(mqtt_props_parse(r, MQTT_IN_CONNACK, &out->props));
    return rd_left(r) ? ERR_MALFORMED : 0;
}

/* A 5.0 PUBLISH may leave its topic empty when it names a Topic Alias. */
static int parse_publish(struct rd *r, uint8_t flags, struct mqtt_packet *out)
{
    struct mqtt_publish *p = &out->publish;
    p->qos = (flags & PF_QOS) >> 1;
    p->dup = flags & PF_DUP;
    p->retain = flags & PF_RETAIN;
    ENSURE(p->qos <= 2, ERR_MALFORMED);
    ENSURE(p->qos || !p->dup, ERR_MALFORMED);
    GUARD(rd_string(r, &p->topic));
    if (p->qos) {
        GUARD(rd_u16(r, &p->packet_id));
        ENSURE(p->packet_id, ERR_MALFORMED);
    }
    if (out->version == MQTT_V5) {
        GUARD(mqtt_props_parse(r, MQTT_IN_PUBLISH, &out->props));
        if (!p->topic.len && mqtt_props_has(&out->props, MQTT_PROP_TOPIC_ALIAS))
            p->topic.p = NULL;
        else
            ENSURE(topic_name_ok(&p->topic), p->topic.len ? ERR_MALFORMED : ERR_PROTO);
    } else {
        ENSURE(topic_name_ok(&p->topic), ERR_MALFORMED);
    }
    p->payload_len = rd_left(r);
    return rd_bytes(r, p->payload_len, &p->payload);
}

static int parse_packet_id(struct rd *r, uint16_t *id)
{
    ENSURE(rd_left(r) == 2, ERR_MALFORMED);
    GUARD(rd_u16(r, id));
    ENSURE(*id, ERR_MALFORMED);
    return 0;
}

/* The reason codes a 5.0 PUBACK/PUBREC (3.4.2.1) or PUBREL/PUBCOMP
 * (3.6.2.1) may carry. */
static bool ack_reason_ok(unsigned type, uint8_t rc)
{
    if (type == MQTT_PUBREL || type == MQTT_PUBCOMP) return rc == 0 || rc == 0x92;
    switch (rc) {
    case 0x00:
    case 0x10:
    case 0x80:
    case 0x83:
    case 0x87:
    case 0x90:
    case 0x91:
    case 0x97:
    case 0x99: return true;
    default: return false;
    }
}

/* A 5.0 PUBACK, PUBREC, PUBREL or PUBCOMP: the packet id, then a reason
 * code and properties that may be left out (3.4.2.1). */
static int parse_ack5(struct rd *r, unsigned type, struct mqtt_packet *out)
{
    GUARD(rd_u16(r, &out->packet_id));
    ENSURE(out->packet_id, ERR_MALFORMED);
    if (!rd_left(r)) return 0;
    GUARD(rd_u8(r, &out->reason));
    ENSURE(ack_reason_ok(type, out->reason), ERR_MALFORMED);
    if (rd_left(r)) GUARD(mqtt_props_parse(r, MQTT_IN_PUBACK, &out->props));
    return rd_left(r) ? ERR_MALFORMED : 0;
}

/* DISCONNECT or AUTH in 5.0: an optional reason code and properties. */
static int parse_reason_only(struct rd *r, enum mqtt_props_where where, struct mqtt_packet *out)
{
    if (!rd_left(r)) return 0;
    GUARD(rd_u8(r, &out->reason));
    if (where == MQTT_IN_AUTH)
        ENSURE(out->reason == 0 || out->reason == 0x18 || out->reason == 0x19, ERR_MALFORMED);
    else
        ENSURE(out->reason <= 0x04 || out->reason >= 0x80, ERR_MALFORMED);
    if (rd_left(r)) GUARD(mqtt_props_parse(r, where, &out->props));
    return rd_left(r) ? ERR_MALFORMED : 0;
}

/* SUBSCRIBE (has_qos) and UNSUBSCRIBE: a packet id, then at least one
 * non-empty filter, each followed by a QoS byte for SUBSCRIBE. */
static int parse_filters(struct rd *r, bool has_qos, struct mqtt_packet *out)
{
    struct mqtt_list *l = &out->list;
    bool v5 = out->version == MQTT_V5;
    GUARD(rd_u16(r, &l->packet_id));
    ENSURE(l->packet_id, ERR_MALFORMED);
    if (v5)
        GUARD(mqtt_props_parse(r, has_qos ? MQTT_IN_SUBSCRIBE : MQTT_IN_UNSUBSCRIBE, &out->props));
    l->has_qos = has_qos;
    l->p = r->p + r->pos;
    l->len = rd_left(r);
    size_t count = 0;
    while (rd_left(r)) {
        struct mqtt_bytes f;
        GUARD(rd_string(r, &f));
        ENSURE(f.len, ERR_MALFORMED);
        if (has_qos) {
            uint8_t q;
            GUARD(rd_u8(r, &q));
            if (v5) { /* reserved bits are malformed; QoS 3 and Retain
                         Handling 3 are protocol errors (3.8.3.1) */
                ENSURE(!(q & 0xc0), ERR_MALFORMED);
                ENSURE((q & MQTT_SUB_QOS) <= 2 &&
                           (q & MQTT_SUB_RETAIN_HANDLING) != MQTT_SUB_RETAIN_HANDLING,
                       ERR_PROTO);
            } else
                ENSURE(q <= 2, ERR_MALFORMED); /* also the six reserved bits */
        }
        count++;
    }
    ENSURE(count >= 1 && count <= UINT16_MAX, ERR_MALFORMED);
    l->count = (uint16_t)count;
    return 0;
}

/* SUBACK, and the 5.0 UNSUBACK: a packet id, (5.0) properties and one
 * reason code per filter. */
static int parse_suback(struct rd *r, unsigned type, struct mqtt_packet *out)
{
    struct mqtt_list *l = &out->list;
    bool v5 = out->version == MQTT_V5;
    GUARD(rd_u16(r, &l->packet_id));
    ENSURE(l->packet_id, ERR_MALFORMED);
    if (v5)
        GUARD(mqtt_props_parse(r, type == MQTT_SUBACK ? MQTT_IN_SUBACK : MQTT_IN_UNSUBACK,
                               &out->props));
    l->len = rd_left(r);
    ENSURE(l->len >= 1 && l->len <= UINT16_MAX, ERR_MALFORMED);
    GUARD(rd_bytes(r, l->len, &l->p));
    for (size_t i = 0; i < l->len; i++)
        ENSURE(v5 ? l->p[i] <= 2 || l->p[i] >= 0x80 || (type == MQTT_UNSUBACK && l->p[i] == 0x11)
                  : l->p[i] <= 2 || l->p[i] == MQTT_SUBACK_FAILURE,
               ERR_MALFORMED);
    l->count = (uint16_t)l->len;
    return 0;
}

/* Fixed-header flags every type but PUBLISH must carry (table 2.2). */
static int required_flags(unsigned type)
{
    switch (type) {
    case MQTT_PUBREL:
    case MQTT_SUBSCRIBE:
    case MQTT_UNSUBSCRIBE: return 0x2;
    default: return 0;
    }
}

/* Clears what a parser may leave unset. The property structs are large and
 * only 5.0 packets use them: their counters are cleared, not all of them. */
static void packet_init(struct mqtt_packet *out, unsigned type, unsigned flags, uint8_t version)
{
    memset(out, 0, offsetof(struct mqtt_packet, props));
    out->type = (enum mqtt_type)type;
    out->flags = (uint8_t)flags;
    out->version = version == MQTT_V5 ? MQTT_V5 : MQTT_V311;
    out->props.has = 0;
    out->props.n_users = out->props.n_sub_ids = out->props.raw_len = out->props.tail_len = 0;
    out->will_props.has = 0;
    out->will_props.n_users = out->will_props.n_sub_ids = 0;
    out->will_props.raw_len = out->will_props.tail_len = 0;
}

int mqtt_parse(const uint8_t *frame, size_t len, uint8_t version, struct mqtt_packet *out)
{
    uint32_t rl = 0;
    ENSURE(len >= 2, ERR_MALFORMED);
    int n = varint_read(frame + 1, len - 1, &rl);
    ENSURE(n > 0 && 1 + (size_t)n + rl == len, ERR_MALFORMED);
    struct rd r = rd_make(frame + 1 + n, rl);
    unsigned type = frame[0] >> 4, flags = frame[0] & 0x0f;
    packet_init(out, type, flags, version);
    bool v5 = out->version == MQTT_V5;
    /* 5.0 forbids longer encodings than needed (1.5.5); 3.1.1 does not. */
    ENSURE(!v5 || (size_t)n == varint_size(rl), ERR_MALFORMED);
    ENSURE(type >= MQTT_CONNECT && (type <= MQTT_DISCONNECT || (v5 && type == MQTT_AUTH)),
           ERR_MALFORMED);
    /* PUBLISH carries its own flags; CONNECT's depend on the protocol. */
    ENSURE(type == MQTT_PUBLISH || type == MQTT_CONNECT || (int)flags == required_flags(type),
           ERR_MALFORMED);

    switch ((enum mqtt_type)type) {
    case MQTT_CONNECT: return parse_connect(&r, (uint8_t)flags, out);
    case MQTT_CONNACK: return parse_connack(&r, out);
    case MQTT_PUBLISH: return parse_publish(&r, (uint8_t)flags, out);
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBREL:
    case MQTT_PUBCOMP: return v5 ? parse_ack5(&r, type, out) : parse_packet_id(&r, &out->packet_id);
    case MQTT_UNSUBACK:
        return v5 ? parse_suback(&r, type, out) : parse_packet_id(&r, &out->packet_id);
    case MQTT_SUBSCRIBE: return parse_filters(&r, true, out);
    case MQTT_UNSUBSCRIBE: return parse_filters(&r, false, out);
    case MQTT_SUBACK: return parse_suback(&r, type, out);
    case MQTT_PINGREQ:
    case MQTT_PINGRESP: return rl == 0 ? 0 : ERR_MALFORMED;
    case MQTT_DISCONNECT:
        if (v5) return parse_reason_only(&r, MQTT_IN_DISCONNECT, out);
        return rl == 0 ? 0 : ERR_MALFORMED;
    case MQTT_AUTH: return parse_reason_only(&r, MQTT_IN_AUTH, out);
    }
    return ERR_MALFORMED;
}

/* Walks a list mqtt_parse validated; the bounds are checked again anyway, so
 * a list built by hand cannot make it read past l->p + l->len. */
int mqtt_topic_next(const struct mqtt_list *l, size_t *pos, struct mqtt_bytes *filter, uint8_t *qos)
{
    if (*pos >= l->len) return 0;
    struct rd r = rd_make(l->p, l->len);
    struct mqtt_bytes f;
    uint8_t q = 0;
    r.pos = *pos;
    if (rd_binary(&r, &f) < 0) return 0;
    if (l->has_qos && rd_u8(&r, &q) < 0) return 0;
    *filter = f;
    if (qos) *qos = q;
    *pos = r.pos;
    return 1;
}

/* Appends the fixed header of a packet with remaining length rl, after
 * reserving room for the whole packet: the appends that follow cannot fail
 * halfway and leave a partial packet in out. */
static int put_header(struct buf *out, uint8_t byte0, size_t rl)
{
    ENSURE(rl <= MQTT_MAX_REMAINING, ERR_TOO_LARGE);
    uint8_t h[1 + VARINT_MAX_BYTES];
    size_t n = 0;
    h[n++] = byte0;
    size_t v = rl;
    do {
        uint8_t b = v & 0x7f;
        v >>= 7;
        h[n++] = (uint8_t)(v ? b | 0x80 : b);
    } while (v);
    GUARD(buf_reserve(out, n + rl));
    return buf_append(out, h, n);
}

static int put_lp16(struct buf *out, const struct mqtt_bytes *b)
{
    GUARD(buf_put_u16(out, b->len));
    return buf_append(out, b->p, b->len);
}

/* Bytes a property list takes with its length in front; 0 without one
 * (3.1.1). */
static size_t props_part(const struct mqtt_props *props)
{
    return !props ? 0 : props == &mqtt_props_none ? 1 : mqtt_props_wire_size(props);
}

/* Appends a property list (nothing in 3.1.1); the empty one, nearly every
 * packet's, without a call. */
static int put_props(struct buf *out, enum mqtt_props_where where, const struct mqtt_props *props)
{
    if (!props) return 0;
    if (props == &mqtt_props_none) return buf_put_u8(out, 0);
    return mqtt_props_encode(out, where, props);
}

int mqtt_encode_connack(struct buf *out, bool session_present, uint8_t rc,
                        const struct mqtt_props *props)
{
    GUARD(put_header(out, MQTT_CONNACK << 4, 2 + props_part(props)));
    GUARD(buf_put_u8(out, session_present ? 1 : 0));
    GUARD(buf_put_u8(out, rc));
    return put_props(out, MQTT_IN_CONNACK, props);
}

/* DUP is dropped on QoS 0 (3.3.1.1 requires it clear there); a QoS above 2 or
 * a zero packet id with QoS > 0 is the caller's bug: ERR_INVALID. A 5.0
 * PUBLISH may have an empty topic (a Topic Alias stands for it). */
int mqtt_encode_publish(struct buf *out, const struct mqtt_publish *p)
{
    ENSURE(p->qos <= 2, ERR_INVALID);
    ENSURE(!p->qos || p->packet_id, ERR_INVALID);
    size_t head = 2 + (size_t)p->topic.len + (p->qos ? 2 : 0) + props_part(p->props);
    ENSURE(p->payload_len <= MQTT_MAX_REMAINING - head, ERR_TOO_LARGE);
    uint8_t b0 = (uint8_t)(MQTT_PUBLISH << 4 | p->qos << 1);
    if (p->qos && p->dup) b0 |= PF_DUP;
    if (p->retain) b0 |= PF_RETAIN;
    GUARD(put_header(out, b0, head + p->payload_len));
    GUARD(put_lp16(out, &p->topic));
    if (p->qos) GUARD(buf_put_u16(out, p->packet_id));
    GUARD(put_props(out, MQTT_IN_PUBLISH, p->props));
    return buf_append(out, p->payload, p->payload_len);
}

/* The 5.0 form leaves out a success reason without properties (3.4.2.1). */
int mqtt_encode_ack(struct buf *out, enum mqtt_type type, uint16_t packet_id, uint8_t reason,
                    const struct mqtt_props *props)
{
    ENSURE(type == MQTT_PUBACK || type == MQTT_PUBREC || type == MQTT_PUBREL ||
               type == MQTT_PUBCOMP || (type == MQTT_UNSUBACK && !props),
           ERR_INVALID);
    ENSURE(packet_id, ERR_INVALID);
    bool with_props = props && props != &mqtt_props_none && mqtt_props_size(props);
    bool with_reason = props && (reason || with_props);
    size_t rl = 2 + (with_reason ? 1 : 0) + (with_props ? props_part(props) : 0);
    GUARD(put_header(out, (uint8_t)(type << 4 | required_flags(type)), rl));
    GUARD(buf_put_u16(out, packet_id));
    if (with_reason) GUARD(buf_put_u8(out, reason));
    return with_props ? put_props(out, MQTT_IN_PUBACK, props) : 0;
}

/* SUBACK, and UNSUBACK in 5.0 (props non-NULL): reason codes per filter. */
static int encode_codes(struct buf *out, enum mqtt_type type, uint16_t packet_id,
                        const uint8_t *rcs, size_t n, const struct mqtt_props *props)
{
    ENSURE(packet_id && n, ERR_INVALID);
    ENSURE(n <= UINT16_MAX, ERR_TOO_LARGE);
    if (!props)
        for (size_t i = 0; i < n; i++)
            ENSURE(rcs[i] <= 2 || rcs[i] == MQTT_SUBACK_FAILURE, ERR_INVALID);
    GUARD(put_header(out, (uint8_t)(type << 4), 2 + props_part(props) + n));
    GUARD(buf_put_u16(out, packet_id));
    GUARD(put_props(out, type == MQTT_SUBACK ? MQTT_IN_SUBACK : MQTT_IN_UNSUBACK, props));
    return buf_append(out, rcs, n);
}

int mqtt_encode_suback(struct buf *out, uint16_t packet_id, const uint8_t *rcs, size_t n,
                       const struct mqtt_props *props)
{
    return encode_codes(out, MQTT_SUBACK, packet_id, rcs, n, props);
}

int mqtt_encode_unsuback(struct buf *out, uint16_t packet_id, const uint8_t *rcs, size_t n,
                         const struct mqtt_props *props)
{
    if (!props) return mqtt_encode_ack(out, MQTT_UNSUBACK, packet_id, 0, NULL);
    return encode_codes(out, MQTT_UNSUBACK, packet_id, rcs, n, props);
}

static int encode_empty(struct buf *out, enum mqtt_type type)
{
    return put_header(out, (uint8_t)(type << 4), 0);
}

int mqtt_encode_pingresp(struct buf *out)
{
    return encode_empty(out, MQTT_PINGRESP);
}

int mqtt_encode_pingreq(struct buf *out)
{
    return encode_empty(out, MQTT_PINGREQ);
}

/* DISCONNECT and AUTH: in 5.0 a reason code and properties, both left out
 * for a success without properties. */
static int encode_reason_only(struct buf *out, enum mqtt_type type, uint8_t reason,
                              const struct mqtt_props *props)
{
    bool with_props = props && props != &mqtt_props_none && mqtt_props_size(props);
    if (!props || (!reason && !with_props)) return encode_empty(out, type);
    GUARD(put_header(out, (uint8_t)(type << 4), 1 + (with_props ? props_part(props) : 0)));
    GUARD(buf_put_u8(out, reason));
    if (!with_props) return 0;
    return mqtt_props_encode(out, type == MQTT_AUTH ? MQTT_IN_AUTH : MQTT_IN_DISCONNECT, props);
}

int mqtt_encode_disconnect(struct buf *out, uint8_t reason, const struct mqtt_props *props)
{
    return encode_reason_only(out, MQTT_DISCONNECT, reason, props);
}

int mqtt_encode_auth(struct buf *out, uint8_t reason, const struct mqtt_props *props)
{
    ENSURE(props, ERR_INVALID);
    return encode_reason_only(out, MQTT_AUTH, reason, props);
}

/* Level 3 is sent as "MQIsdp", every other level as "MQTT" (so tests can
 * produce a CONNECT of an unknown level). Will QoS/retain are sent only with
 * a will. Level 5 writes props and will_props (NULL: none). */
int mqtt_encode_connect(struct buf *out, const struct mqtt_connect *c,
                        const struct mqtt_props *props, const struct mqtt_props *will_props)
{
    bool v5 = c->protocol_level == MQTT_V5;
    ENSURE(c->will_qos <= 2, ERR_INVALID);
    ENSURE(v5 || c->has_username || !c->has_password, ERR_INVALID);
    static const struct mqtt_bytes mqtt = {(const uint8_t *)"MQTT", 4};
    static const struct mqtt_bytes mqisdp = {(const uint8_t *)"MQIsdp", 6};
    const struct mqtt_bytes *name = c->protocol_level == 3 ? &mqisdp : &mqtt;
    if (v5 && !props) props = &mqtt_props_none;
    if (v5 && !will_props) will_props = &mqtt_props_none;
    if (!v5) props = will_props = NULL;
    uint8_t flags = 0;
    size_t rl = 2 + (size_t)name->len + 4 + props_part(props) + 2 + c->client_id.len;
    if (c->clean_session) flags |= CF_CLEAN;
    if (c->will) {
        flags |= (uint8_t)(CF_WILL | c->will_qos << 3 | (c->will_retain ? CF_RETAIN : 0));
        rl += props_part(will_props) + 4 + (size_t)c->will_topic.len + c->will_payload.len;
    }
    if (c->has_username) {
        flags |= CF_USERNAME;
        rl += 2 + (size_t)c->username.len;
    }
    if (c->has_password) {
        flags |= CF_PASSWORD;
        rl += 2 + (size_t)c->password.len;
    }

    GUARD(put_header(out, MQTT_CONNECT << 4, rl));
    GUARD(put_lp16(out, name));
    GUARD(buf_put_u8(out, c->protocol_level));
    GUARD(buf_put_u8(out, flags));
    GUARD(buf_put_u16(out, c->keepalive));
    GUARD(put_props(out, MQTT_IN_CONNECT, props));
    GUARD(put_lp16(out, &c->client_id));
    if (c->will) {
        GUARD(put_props(out, MQTT_IN_WILL, will_props));
        GUARD(put_lp16(out, &c->will_topic));
        GUARD(put_lp16(out, &c->will_payload));
    }
    if (c->has_username) GUARD(put_lp16(out, &c->username));
    if (c->has_password) GUARD(put_lp16(out, &c->password));
    return 0;
}

/* SUBSCRIBE (qos given: QoS or 5.0 options bytes) and UNSUBSCRIBE (qos NULL). */
static int encode_filters(struct buf *out, enum mqtt_type type, uint16_t packet_id,
                          const struct mqtt_bytes *filters, const uint8_t *qos, size_t n,
                          const struct mqtt_props *props)
{
    ENSURE(packet_id && n, ERR_INVALID);
    ENSURE(n <= UINT16_MAX, ERR_TOO_LARGE);
    size_t rl = 2 + props_part(props);
    for (size_t i = 0; i < n; i++) {
        ENSURE(filters[i].len, ERR_INVALID);
        ENSURE(!qos || (props ? (qos[i] & MQTT_SUB_QOS) <= 2 : qos[i] <= 2), ERR_INVALID);
        rl += 2 + (size_t)filters[i].len + (qos ? 1 : 0);
        ENSURE(rl <= MQTT_MAX_REMAINING, ERR_TOO_LARGE);
    }
    GUARD(put_header(out, (uint8_t)(type << 4 | 0x2), rl));
    GUARD(buf_put_u16(out, packet_id));
    GUARD(put_props(out, qos ? MQTT_IN_SUBSCRIBE : MQTT_IN_UNSUBSCRIBE, props));
    for (size_t i = 0; i < n; i++) {
        GUARD(put_lp16(out, &filters[i]));
        if (qos) GUARD(buf_put_u8(out, qos[i]));
    }
    return 0;
}

int mqtt_encode_subscribe(struct buf *out, uint16_t packet_id, const struct mqtt_bytes *filters,
                          const uint8_t *qos, size_t n, const struct mqtt_props *props)
{
    ENSURE(qos, ERR_INVALID);
    return encode_filters(out, MQTT_SUBSCRIBE, packet_id, filters, qos, n, props);
}

int mqtt_encode_unsubscribe(struct buf *out, uint16_t packet_id, const struct mqtt_bytes *filters,
                            size_t n, const struct mqtt_props *props)
{
    return encode_filters(out, MQTT_UNSUBSCRIBE, packet_id, filters, NULL, n, props);
}

/* SIZE_MAX when no PUBLISH can carry that much. */
size_t mqtt_publish_size(size_t topic_len, size_t payload_len, uint8_t qos, size_t props_len)
{
    if (topic_len > UINT16_MAX || payload_len > MQTT_MAX_REMAINING ||
        props_len > MQTT_MAX_REMAINING)
        return SIZE_MAX;
    size_t rl = 2 + topic_len + (qos ? 2 : 0) + payload_len + props_len;
    if (rl > MQTT_MAX_REMAINING) return SIZE_MAX;
    return 1 + varint_size(rl) + rl;
}
