/* Envelope of a cross-node message (see envelope.h). Layout, big endian:
 * u8 version, u8 flags (bits 0-1 QoS, bit 2 RETAIN), u32+u32 origin,
 * u32+u32 sequence, u32 expiry left, varint properties length, properties,
 * then the payload up to the end. */
#include "cluster/envelope.h"

#include "mqtt/codec.h"
#include "mqtt/props.h"

#define FLAG_QOS    0x03
#define FLAG_RETAIN 0x04

static int put_u64(struct buf *out, uint64_t v)
{
    GUARD(buf_put_u32(out, (uint32_t)(v >> 32)));
    return buf_put_u32(out, (uint32_t)v);
}

int envelope_write(struct buf *out, const struct envelope *e)
{
    ENSURE(e->qos <= 2 && e->props_len < MQTT_MAX_REMAINING, ERR_INVALID);
    GUARD(buf_reserve(out, 32 + e->props_len + e->payload_len));
    GUARD(buf_put_u8(out, ENVELOPE_VERSION));
    GUARD(buf_put_u8(out, (uint8_t)(e->qos | (e->retain ? FLAG_RETAIN : 0))));
    GUARD(put_u64(out, e->origin));
    GUARD(put_u64(out, e->seq));
    GUARD(buf_put_u32(out, e->expiry));
    GUARD(buf_put_varint(out, (uint32_t)e->props_len));
    GUARD(buf_append(out, e->props, e->props_len));
    return buf_append(out, e->payload, e->payload_len);
}

static int rd_u64(struct rd *r, uint64_t *v)
{
    uint32_t hi, lo;
    GUARD(rd_u32(r, &hi));
    GUARD(rd_u32(r, &lo));
    *v = (uint64_t)hi << 32 | lo;
    return 0;
}

/* The properties at r: well formed, and only those a message carries. */
static int parse_props(struct rd *r, struct envelope *out, uint8_t *format)
{
    struct mqtt_props pr;
    if (mqtt_props_parse(r, MQTT_IN_PUBLISH, &pr) < 0) return ERR_MALFORMED;
    uint64_t stay = 1ull << MQTT_PROP_TOPIC_ALIAS | 1ull << MQTT_PROP_SUBSCRIPTION_ID |
                    1ull << MQTT_PROP_MESSAGE_EXPIRY;
    ENSURE(!(pr.has & stay), ERR_MALFORMED);
    out->props = pr.raw_len ? pr.raw : NULL;
    out->props_len = pr.raw_len;
    *format = mqtt_props_has(&pr, MQTT_PROP_PAYLOAD_FORMAT) ? pr.payload_format : 0;
    return 0;
}

int envelope_parse(const uint8_t *d, size_t n, struct envelope *out)
{
    struct rd r = rd_make(d, n);
    uint8_t version, flags, format;
    if (rd_u8(&r, &version) < 0 || rd_u8(&r, &flags) < 0) return ERR_MALFORMED;
    ENSURE(version == ENVELOPE_VERSION, ERR_MALFORMED);
    ENSURE(!(flags & ~(FLAG_QOS | FLAG_RETAIN)) && (flags & FLAG_QOS) != 3, ERR_MALFORMED);
    out->qos = flags & FLAG_QOS;
    out->retain = flags & FLAG_RETAIN;
    if (rd_u64(&r, &out->origin) < 0 || rd_u64(&r, &out->seq) < 0 || rd_u32(&r, &out->expiry) < 0)
        return ERR_MALFORMED;
    GUARD(parse_props(&r, out, &format));
    out->payload_len = rd_left(&r);
    out->payload = d + r.pos;
    if (format == 1 && !mqtt_utf8_valid(out->payload, out->payload_len)) return ERR_PROTO;
    return 0;
}
