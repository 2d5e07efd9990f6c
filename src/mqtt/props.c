/* MQTT 5.0 properties (see props.h): the table of the spec's section 2.2.2.2,
 * a parser that checks every property against it, and the encoder. */
#include "mqtt/props.h"

#include <stddef.h>
#include <string.h>

#include "mqtt/codec.h"

const struct mqtt_props mqtt_props_none;

/* Bits of every identifier in the table (has may hold no others). */
#define ALL_IDS ((2ull << MQTT_PROP_ID_MAX) - 2)

enum prop_type { T_BYTE, T_U16, T_U32, T_VARINT, T_UTF8, T_BINARY, T_PAIR };

#define W(x) (1u << MQTT_IN_##x)
#define ACKS (W(PUBACK))
/* Reason String and User Property stand in every packet but CONNECT,
 * PUBLISH, the will and SUBSCRIBE / UNSUBSCRIBE (user properties are there too). */
#define REPLIES    (W(CONNACK) | ACKS | W(SUBACK) | W(UNSUBACK) | W(DISCONNECT) | W(AUTH))
#define EVERYWHERE (REPLIES | W(CONNECT) | W(WILL) | W(PUBLISH) | W(SUBSCRIBE) | W(UNSUBSCRIBE))

struct prop_def {
    uint8_t type;      /* enum prop_type */
    bool repeats;      /* may appear more than once (PUBLISH for subscription ids) */
    bool zero_invalid; /* a value of 0 is a protocol error */
    bool boolean;      /* only 0 or 1 */
    bool topic_name;   /* a topic name: not empty, no wildcards (MQTT-3.3.2-14) */
    uint16_t where;    /* bits of enum mqtt_props_where */
    size_t off;        /* field in struct mqtt_props (not for T_PAIR) */
};

#define P(id, t, w, f, ...)                                                                        \
    [id] = {.type = t, .where = w, .off = offsetof(struct mqtt_props, f), __VA_ARGS__}

static const struct prop_def defs[MQTT_PROP_ID_MAX + 1] = {
    P(MQTT_PROP_PAYLOAD_FORMAT, T_BYTE, W(PUBLISH) | W(WILL), payload_format, .boolean = true),
    P(MQTT_PROP_MESSAGE_EXPIRY, T_U32, W(PUBLISH) | W(WILL), message_expiry),
    P(MQTT_PROP_CONTENT_TYPE, T_UTF8, W(PUBLISH) | W(WILL), content_type),
    P(MQTT_PROP_RESPONSE_TOPIC, T_UTF8, W(PUBLISH) | W(WILL), response_topic, .topic_name = true),
    P(MQTT_PROP_CORRELATION_DATA, T_BINARY, W(PUBLISH) | W(WILL), correlation_data),
    P(MQTT_PROP_SUBSCRIPTION_ID, T_VARINT, W(PUBLISH) | W(SUBSCRIBE), subscription_id,
      .zero_invalid = true),
    P(MQTT_PROP_SESSION_EXPIRY, T_U32, W(CONNECT) | W(CONNACK) | W(DISCONNECT), session_expiry),
    P(MQTT_PROP_ASSIGNED_CLIENT_ID, T_UTF8, W(CONNACK), assigned_client_id),
    P(MQTT_PROP_SERVER_KEEPALIVE, T_U16, W(CONNACK), server_keepalive),
    P(MQTT_PROP_AUTH_METHOD, T_UTF8, W(CONNECT) | W(CONNACK) | W(AUTH), auth_method),
    P(MQTT_PROP_AUTH_DATA, T_BINARY, W(CONNECT) | W(CONNACK) | W(AUTH), auth_data),
    P(MQTT_PROP_REQUEST_PROBLEM_INFO, T_BYTE, W(CONNECT), request_problem_info, .boolean = true),
    P(MQTT_PROP_WILL_DELAY, T_U32, W(WILL), will_delay),
    P(MQTT_PROP_REQUEST_RESPONSE_INFO, T_BYTE, W(CONNECT), request_response_info, .boolean = true),
    P(MQTT_PROP_RESPONSE_INFO, T_UTF8, W(CONNACK), response_info),
    P(MQTT_PROP_SERVER_REFERENCE, T_UTF8, W(CONNACK) | W(DISCONNECT), server_reference),
    P(MQTT_PROP_REASON_STRING, T_UTF8, REPLIES, reason_string),
    P(MQTT_PROP_RECEIVE_MAXIMUM, T_U16, W(CONNECT) | W(CONNACK), receive_maximum,
      .zero_invalid = true),
    P(MQTT_PROP_TOPIC_ALIAS_MAXIMUM, T_U16, W(CONNECT) | W(CONNACK), topic_alias_maximum),
    P(MQTT_PROP_TOPIC_ALIAS, T_U16, W(PUBLISH), topic_alias, .zero_invalid = true),
    P(MQTT_PROP_MAXIMUM_QOS, T_BYTE, W(CONNACK), maximum_qos, .boolean = true),
    P(MQTT_PROP_RETAIN_AVAILABLE, T_BYTE, W(CONNACK), retain_available, .boolean = true),
    [MQTT_PROP_USER_PROPERTY] = {.type = T_PAIR, .repeats = true, .where = EVERYWHERE},
    P(MQTT_PROP_MAXIMUM_PACKET_SIZE, T_U32, W(CONNECT) | W(CONNACK), maximum_packet_size,
      .zero_invalid = true),
    P(MQTT_PROP_WILDCARD_SUB_AVAILABLE, T_BYTE, W(CONNACK), wildcard_sub_available,
      .boolean = true),
    P(MQTT_PROP_SUB_ID_AVAILABLE, T_BYTE, W(CONNACK), sub_id_available, .boolean = true),
    P(MQTT_PROP_SHARED_SUB_AVAILABLE, T_BYTE, W(CONNACK), shared_sub_available, .boolean = true),
};

/* The definition of id if it may stand in where, else NULL. */
static const struct prop_def *def_for(uint32_t id, enum mqtt_props_where where)
{
    if (id > MQTT_PROP_ID_MAX || !defs[id].where || !(defs[id].where & (1u << where))) return NULL;
    return &defs[id];
}

static int rd_utf8(struct rd *r, struct mqtt_bytes *b)
{
    GUARD(rd_lp16(r, &b->p, &b->len));
    ENSURE(mqtt_utf8_valid(b->p, b->len), ERR_MALFORMED);
    return 0;
}

/* Reads one value of def's type into the struct (or skips a pair). */
static int read_value(struct rd *r, const struct prop_def *d, struct mqtt_props *out, uint32_t *num)
{
    void *f = (char *)out + d->off;
    uint8_t u8;
    uint16_t u16;
    struct mqtt_user_prop up;
    *num = 1; /* not zero: only numeric types are checked against 0 */
    switch ((enum prop_type)d->type) {
    case T_BYTE:
        GUARD(rd_u8(r, &u8));
        *num = u8;
        *(uint8_t *)f = u8;
        return 0;
    case T_U16:
        GUARD(rd_u16(r, &u16));
        *num = u16;
        *(uint16_t *)f = u16;
        return 0;
    case T_U32:
        GUARD(rd_u32(r, num));
        *(uint32_t *)f = *num;
        return 0;
    case T_VARINT:
        GUARD(rd_varint(r, num));
        *(uint32_t *)f = *num;
        return 0;
    case T_UTF8: return rd_utf8(r, f);
    case T_BINARY: return rd_lp16(r, &((struct mqtt_bytes *)f)->p, &((struct mqtt_bytes *)f)->len);
    case T_PAIR: GUARD(rd_utf8(r, &up.key)); return rd_utf8(r, &up.value);
    }
    return ERR_MALFORMED;
}

/* One property at r's cursor: checks it against the table and stores it. */
static int parse_one(struct rd *r, enum mqtt_props_where where, struct mqtt_props *out,
                     uint32_t *n_subids)
{
    uint32_t id, num;
    GUARD(rd_varint(r, &id));
    const struct prop_def *d = def_for(id, where);
    ENSURE(d, ERR_MALFORMED);
    bool seen = mqtt_props_has(out, (enum mqtt_prop_id)id);
    bool repeats = d->repeats || (id == MQTT_PROP_SUBSCRIPTION_ID && where == MQTT_IN_PUBLISH);
    ENSURE(!seen || repeats, ERR_PROTO);
    uint32_t first_subid = out->subscription_id;
    GUARD(read_value(r, d, out, &num));
    if (d->zero_invalid) ENSURE(num != 0, ERR_PROTO);
    if (d->boolean) ENSURE(num <= 1, ERR_PROTO);
    if (d->topic_name) {
        const struct mqtt_bytes *t = (const void *)((const uint8_t *)out + d->off);
        ENSURE(t->len && !memchr(t->p, '+', t->len) && !memchr(t->p, '#', t->len), ERR_PROTO);
    }
    if (id == MQTT_PROP_SUBSCRIPTION_ID) {
        ENSURE(num <= 268435455u, ERR_MALFORMED);
        if (seen) out->subscription_id = first_subid;
        (*n_subids)++;
    }
    if (id == MQTT_PROP_USER_PROPERTY) out->n_users++;
    out->has |= 1ull << id;
    return 0;
}

int mqtt_props_parse_list(struct rd *r, enum mqtt_props_where where, struct mqtt_props *out)
{
    uint32_t len, n_subids = 0;
    GUARD(rd_varint(r, &len));
    memset(out, 0, sizeof *out);
    const uint8_t *p;
    GUARD(rd_bytes(r, len, &p));
    struct rd pr = rd_make(p, len);
    while (rd_left(&pr)) GUARD(parse_one(&pr, where, out, &n_subids));
    out->raw = p;
    out->raw_len = len;
    out->n_sub_ids = n_subids;
    return 0;
}

int mqtt_props_next(const struct mqtt_props *p, enum mqtt_prop_id want, size_t *pos,
                    struct mqtt_user_prop *user, uint32_t *sub_id)
{
    struct rd r = rd_make(p->raw, p->raw_len);
    r.pos = *pos;
    struct mqtt_props scratch;
    memset(&scratch, 0, sizeof scratch);
    while (rd_left(&r)) {
        uint32_t id, num;
        /* The list was validated by mqtt_props_parse: reads cannot fail. */
        if (rd_varint(&r, &id) < 0 || id > MQTT_PROP_ID_MAX || !defs[id].where) return 0;
        if (id == MQTT_PROP_USER_PROPERTY) {
            struct mqtt_user_prop up;
            if (rd_utf8(&r, &up.key) < 0 || rd_utf8(&r, &up.value) < 0) return 0;
            if (want != MQTT_PROP_USER_PROPERTY) continue;
            if (user) *user = up;
        } else {
            if (read_value(&r, &defs[id], &scratch, &num) < 0) return 0;
            if (id != want) continue;
            if (sub_id) *sub_id = num;
        }
        *pos = r.pos;
        return 1;
    }
    *pos = r.pos;
    return 0;
}

int mqtt_props_copy(struct buf *out, const struct mqtt_props *p, uint64_t drop)
{
    struct rd r = rd_make(p->raw, p->raw_len);
    struct mqtt_props scratch;
    memset(&scratch, 0, sizeof scratch);
    while (rd_left(&r)) {
        size_t start = r.pos;
        uint32_t id, num;
        GUARD(rd_varint(&r, &id));
        ENSURE(id <= MQTT_PROP_ID_MAX && defs[id].where, ERR_MALFORMED);
        GUARD(read_value(&r, &defs[id], &scratch, &num));
        if (!((drop >> id) & 1)) GUARD(buf_append(out, p->raw + start, r.pos - start));
    }
    return 0;
}

static size_t varint_len(uint32_t v)
{
    return v < 128 ? 1 : v < 16384 ? 2 : v < 2097152 ? 3 : 4;
}

/* Encoded size of one present single-valued property (id byte included). */
static size_t one_size(const struct mqtt_props *p, uint32_t id)
{
    const struct prop_def *d = &defs[id];
    const void *f = (const char *)p + d->off;
    switch ((enum prop_type)d->type) {
    case T_BYTE: return 2;
    case T_U16: return 3;
    case T_U32: return 5;
    case T_VARINT: return 1 + varint_len(*(const uint32_t *)f);
    case T_UTF8:
    case T_BINARY: return 3 + ((const struct mqtt_bytes *)f)->len;
    case T_PAIR: return 0;
    }
    return 0;
}

size_t mqtt_props_size(const struct mqtt_props *p)
{
    if (!p->has && !p->n_users && !p->n_sub_ids) return p->tail_len;
    size_t n = 0;
    for (uint64_t m = p->has & ALL_IDS; m; m &= m - 1) {
        uint32_t id = (uint32_t)__builtin_ctzll(m);
        if (id == MQTT_PROP_USER_PROPERTY || (id == MQTT_PROP_SUBSCRIPTION_ID && p->sub_ids))
            continue;
        if (defs[id].where) n += one_size(p, id);
    }
    for (size_t i = 0; i < p->n_sub_ids && p->sub_ids; i++) n += 1 + varint_len(p->sub_ids[i]);
    for (size_t i = 0; i < p->n_users && p->users; i++)
        n += 5 + p->users[i].key.len + p->users[i].value.len;
    return n + p->tail_len;
}

size_t mqtt_props_wire_size(const struct mqtt_props *p)
{
    if (p == &mqtt_props_none) return 1;
    size_t n = mqtt_props_size(p);
    return varint_len((uint32_t)n) + n;
}

static int put_lp16(struct buf *out, const struct mqtt_bytes *b)
{
    GUARD(buf_put_u16(out, b->len));
    return buf_append(out, b->p, b->len);
}

static int put_one(struct buf *out, const struct mqtt_props *p, uint32_t id)
{
    const struct prop_def *d = &defs[id];
    const void *f = (const char *)p + d->off;
    GUARD(buf_put_u8(out, (uint8_t)id));
    switch ((enum prop_type)d->type) {
    case T_BYTE: return buf_put_u8(out, *(const uint8_t *)f);
    case T_U16: return buf_put_u16(out, *(const uint16_t *)f);
    case T_U32: return buf_put_u32(out, *(const uint32_t *)f);
    case T_VARINT: return buf_put_varint(out, *(const uint32_t *)f);
    case T_UTF8:
    case T_BINARY: return put_lp16(out, f);
    case T_PAIR: return ERR_INTERNAL;
    }
    return ERR_INTERNAL;
}

int mqtt_props_encode(struct buf *out, enum mqtt_props_where where, const struct mqtt_props *p)
{
    if (p == &mqtt_props_none || (!p->has && !p->n_users && !p->n_sub_ids && !p->tail_len))
        return buf_put_u8(out, 0);
    for (uint64_t m = p->has; m; m &= m - 1)
        if (!def_for((uint32_t)__builtin_ctzll(m), where)) return ERR_INVALID;
    if ((p->n_users && !def_for(MQTT_PROP_USER_PROPERTY, where)) ||
        (p->n_sub_ids && !def_for(MQTT_PROP_SUBSCRIPTION_ID, where)))
        return ERR_INVALID;
    size_t len = mqtt_props_size(p);
    ENSURE(len < (1u << 28), ERR_TOO_LARGE);
    GUARD(buf_put_varint(out, (uint32_t)len));
    for (uint64_t m = p->has; m; m &= m - 1) { /* set bits only, in id order */
        uint32_t id = (uint32_t)__builtin_ctzll(m);
        if (id == MQTT_PROP_USER_PROPERTY || (id == MQTT_PROP_SUBSCRIPTION_ID && p->sub_ids))
            continue;
        GUARD(put_one(out, p, id));
    }
    for (size_t i = 0; i < p->n_sub_ids && p->sub_ids; i++) {
        GUARD(buf_put_u8(out, MQTT_PROP_SUBSCRIPTION_ID));
        GUARD(buf_put_varint(out, p->sub_ids[i]));
    }
    for (size_t i = 0; i < p->n_users && p->users; i++) {
        GUARD(buf_put_u8(out, MQTT_PROP_USER_PROPERTY));
        GUARD(put_lp16(out, &p->users[i].key));
        GUARD(put_lp16(out, &p->users[i].value));
    }
    return p->tail_len ? buf_append(out, p->tail, p->tail_len) : 0;
}
