/* MQTT 5.0 properties (spec 2.2.2): one table of every property (identifier,
 * type, the packets that may carry it, whether it may repeat) drives a pure
 * parser and an encoder. Parsed values borrow from the packet bytes. */
#ifndef CERTMQ_MQTT_PROPS_H
#define CERTMQ_MQTT_PROPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/buf.h"

/* Borrowed bytes (a parsed string passes mqtt_text_valid). */
struct mqtt_bytes {
    const uint8_t *p;
    uint16_t len;
};

enum mqtt_prop_id {
    MQTT_PROP_PAYLOAD_FORMAT = 0x01,
    MQTT_PROP_MESSAGE_EXPIRY = 0x02,
    MQTT_PROP_CONTENT_TYPE = 0x03,
    MQTT_PROP_RESPONSE_TOPIC = 0x08,
    MQTT_PROP_CORRELATION_DATA = 0x09,
    MQTT_PROP_SUBSCRIPTION_ID = 0x0B,
    MQTT_PROP_SESSION_EXPIRY = 0x11,
    MQTT_PROP_ASSIGNED_CLIENT_ID = 0x12,
    MQTT_PROP_SERVER_KEEPALIVE = 0x13,
    MQTT_PROP_AUTH_METHOD = 0x15,
    MQTT_PROP_AUTH_DATA = 0x16,
    MQTT_PROP_REQUEST_PROBLEM_INFO = 0x17,
    MQTT_PROP_WILL_DELAY = 0x18,
    MQTT_PROP_REQUEST_RESPONSE_INFO = 0x19,
    MQTT_PROP_RESPONSE_INFO = 0x1A,
    MQTT_PROP_SERVER_REFERENCE = 0x1C,
    MQTT_PROP_REASON_STRING = 0x1F,
    MQTT_PROP_RECEIVE_MAXIMUM = 0x21,
    MQTT_PROP_TOPIC_ALIAS_MAXIMUM = 0x22,
    MQTT_PROP_TOPIC_ALIAS = 0x23,
    MQTT_PROP_MAXIMUM_QOS = 0x24,
    MQTT_PROP_RETAIN_AVAILABLE = 0x25,
    MQTT_PROP_USER_PROPERTY = 0x26,
    MQTT_PROP_MAXIMUM_PACKET_SIZE = 0x27,
    MQTT_PROP_WILDCARD_SUB_AVAILABLE = 0x28,
    MQTT_PROP_SUB_ID_AVAILABLE = 0x29,
    MQTT_PROP_SHARED_SUB_AVAILABLE = 0x2A,
    MQTT_PROP_ID_MAX = 0x2A,
};

/* Where a property list stands: which packet (or the will of a CONNECT). */
enum mqtt_props_where {
    MQTT_IN_CONNECT,
    MQTT_IN_WILL,
    MQTT_IN_CONNACK,
    MQTT_IN_PUBLISH,
    MQTT_IN_PUBACK, /* also PUBREC, PUBREL, PUBCOMP */
    MQTT_IN_SUBSCRIBE,
    MQTT_IN_SUBACK,
    MQTT_IN_UNSUBSCRIBE,
    MQTT_IN_UNSUBACK,
    MQTT_IN_DISCONNECT,
    MQTT_IN_AUTH,
};

/* A user property (a UTF-8 string pair). */
struct mqtt_user_prop {
    struct mqtt_bytes key, value;
};

/* One packet's properties. has has bit (1 << id) for each present one; the
 * numbers of absent ones are 0, but a byte string (content_type and those
 * after it) is set only when its bit is: check mqtt_props_has first.
 * Parsing fills the first subscription identifier and counts user
 * properties and identifiers; mqtt_props_next walks all of them. For
 * encoding, users/n_users and sub_ids/n_sub_ids name the repeated ones
 * (without sub_ids, a has bit for MQTT_PROP_SUBSCRIPTION_ID writes
 * subscription_id once). */
struct mqtt_props {
    uint64_t has;
    uint8_t payload_format, request_problem_info, request_response_info;
    uint8_t maximum_qos, retain_available, wildcard_sub_available, sub_id_available,
        shared_sub_available;
    uint16_t server_keepalive, receive_maximum, topic_alias_maximum, topic_alias;
    uint32_t message_expiry, session_expiry, will_delay, maximum_packet_size;
    uint32_t subscription_id;
    struct mqtt_bytes content_type, response_topic, correlation_data, assigned_client_id,
        auth_method, auth_data, response_info, server_reference, reason_string;
    const struct mqtt_user_prop *users; /* encoding only */
    size_t n_users;
    const uint32_t *sub_ids; /* encoding only (PUBLISH may carry several) */
    size_t n_sub_ids;
    const uint8_t *raw; /* parsing: the property bytes, for mqtt_props_next */
    size_t raw_len;
    /* Encoding: properties already encoded (mqtt_props_copy), written
     * after the others as they are. */
    const uint8_t *tail;
    size_t tail_len;
};

/* No properties: what a 5.0 packet without any is encoded with. */
extern const struct mqtt_props mqtt_props_none;

static inline bool mqtt_props_has(const struct mqtt_props *p, enum mqtt_prop_id id)
{
    return (p->has >> id) & 1;
}

/* Reads a property length and the properties after it at r's cursor.
 * Returns 0, ERR_MALFORMED (reason 0x81: truncated, unknown identifier or one
 * not allowed in this packet, bad UTF-8) or ERR_PROTO (0x82: a property that
 * may appear once appears twice, or a value the spec forbids, such as a
 * Receive Maximum of 0). */
MUST_USE int mqtt_props_parse_list(struct rd *r, enum mqtt_props_where where,
                                   struct mqtt_props *out);
/* mqtt_props_parse_list, with the common case (no properties) inline. */
MUST_USE static inline int mqtt_props_parse(struct rd *r, enum mqtt_props_where where,
                                            struct mqtt_props *out)
{
    if (!rd_left(r) || r->p[r->pos] != 0) return mqtt_props_parse_list(r, where, out);
    r->pos++;
    memset(out, 0, offsetof(struct mqtt_props, content_type)); /* strings stay unset */
    out->n_users = out->n_sub_ids = out->raw_len = out->tail_len = 0;
    return 0;
}

/* Iterates the parsed user properties (id MQTT_PROP_USER_PROPERTY) or
 * subscription identifiers (MQTT_PROP_SUBSCRIPTION_ID; value in *sub_id).
 * *pos starts at 0. Returns 1 with the next one, 0 at the end. */
int mqtt_props_next(const struct mqtt_props *p, enum mqtt_prop_id id, size_t *pos,
                    struct mqtt_user_prop *user, uint32_t *sub_id);

/* Appends the parsed properties of p, less those whose id has its bit set
 * in drop (1 << id), to out as encoded bytes (no length in front): what
 * mqtt_props.tail takes. */
MUST_USE int mqtt_props_copy(struct buf *out, const struct mqtt_props *p, uint64_t drop);

/* Bytes the properties take encoded, without the length in front. */
size_t mqtt_props_size(const struct mqtt_props *p);
/* The same with the length in front: what they add to a packet. */
size_t mqtt_props_wire_size(const struct mqtt_props *p);
/* Appends the property length and the properties. Only properties allowed
 * in where are written; ERR_INVALID when p has one that is not. */
MUST_USE int mqtt_props_encode(struct buf *out, enum mqtt_props_where where,
                               const struct mqtt_props *p);

#endif
