/* MQTT 3.1.1 and 5.0 packet codec: pure functions, bytes in, structs out,
 * no I/O. Parsed structs borrow from the frame they were parsed from (zero
 * copy): they stay valid only while that frame's bytes do. Encoders append
 * to a struct buf. Every length read from the wire is checked before use.
 * 5.0 properties are props.h's; an encoder given properties (non-NULL)
 * writes the 5.0 form of its packet, given NULL the 3.1.1 form. */
#ifndef CERTMQ_MQTT_CODEC_H
#define CERTMQ_MQTT_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "mqtt/props.h"

enum mqtt_type {
    MQTT_CONNECT = 1,
    MQTT_CONNACK = 2,
    MQTT_PUBLISH = 3,
    MQTT_PUBACK = 4,
    MQTT_PUBREC = 5,
    MQTT_PUBREL = 6,
    MQTT_PUBCOMP = 7,
    MQTT_SUBSCRIBE = 8,
    MQTT_SUBACK = 9,
    MQTT_UNSUBSCRIBE = 10,
    MQTT_UNSUBACK = 11,
    MQTT_PINGREQ = 12,
    MQTT_PINGRESP = 13,
    MQTT_DISCONNECT = 14,
    MQTT_AUTH = 15, /* 5.0 only */
};

/* Protocol levels (the byte after the protocol name in CONNECT). */
enum { MQTT_V31 = 3, MQTT_V311 = 4, MQTT_V5 = 5 };

/* CONNACK return codes (3.1.1 table 3.1). */
enum mqtt_connack_rc {
    MQTT_CONNACK_ACCEPTED = 0,
    MQTT_CONNACK_BAD_PROTOCOL = 1,
    MQTT_CONNACK_ID_REJECTED = 2,
    MQTT_CONNACK_UNAVAILABLE = 3,
    MQTT_CONNACK_BAD_CREDENTIALS = 4,
    MQTT_CONNACK_NOT_AUTHORIZED = 5,
};

/* 5.0 reason codes (spec 2.4) the broker sends or checks. */
enum mqtt_reason {
    MQTT_RC_SUCCESS = 0x00,
    MQTT_RC_NO_MATCHING_SUBSCRIBERS = 0x10,
    MQTT_RC_NO_SUBSCRIPTION_EXISTED = 0x11,
    MQTT_RC_DISCONNECT_WITH_WILL = 0x04,
    MQTT_RC_UNSPECIFIED = 0x80,
    MQTT_RC_MALFORMED = 0x81,
    MQTT_RC_PROTOCOL_ERROR = 0x82,
    MQTT_RC_IMPLEMENTATION_SPECIFIC = 0x83,
    MQTT_RC_UNSUPPORTED_VERSION = 0x84,
    MQTT_RC_CLIENT_ID_NOT_VALID = 0x85,
    MQTT_RC_BAD_CREDENTIALS = 0x86,
    MQTT_RC_NOT_AUTHORIZED = 0x87,
    MQTT_RC_SERVER_UNAVAILABLE = 0x88,
    MQTT_RC_SERVER_BUSY = 0x89,
    MQTT_RC_BAD_AUTH_METHOD = 0x8C,
    MQTT_RC_KEEPALIVE_TIMEOUT = 0x8D,
    MQTT_RC_SESSION_TAKEN_OVER = 0x8E,
    MQTT_RC_TOPIC_FILTER_INVALID = 0x8F,
    MQTT_RC_TOPIC_NAME_INVALID = 0x90,
    MQTT_RC_PACKET_ID_IN_USE = 0x91,
    MQTT_RC_PACKET_ID_NOT_FOUND = 0x92,
    MQTT_RC_RECEIVE_MAX_EXCEEDED = 0x93,
    MQTT_RC_TOPIC_ALIAS_INVALID = 0x94,
    MQTT_RC_PACKET_TOO_LARGE = 0x95,
    MQTT_RC_QUOTA_EXCEEDED = 0x97,
    MQTT_RC_ADMINISTRATIVE_ACTION = 0x98,
    MQTT_RC_SHUTTING_DOWN = 0x8B,
    MQTT_RC_PAYLOAD_FORMAT_INVALID = 0x99,
    MQTT_RC_SHARED_SUB_UNSUPPORTED = 0x9E,
    MQTT_RC_SUB_ID_UNSUPPORTED = 0xA1,
    MQTT_RC_WILDCARD_SUB_UNSUPPORTED = 0xA2,
};

/* 5.0 subscription options (3.8.3.1): the byte after each filter. */
#define MQTT_SUB_QOS             0x03
#define MQTT_SUB_NO_LOCAL        0x04
#define MQTT_SUB_RETAIN_AS_PUB   0x08
#define MQTT_SUB_RETAIN_HANDLING 0x30 /* 0: send, 1: only if new, 2: never */

#define MQTT_SUBACK_FAILURE 0x80
#define MQTT_MAX_REMAINING  268435455u /* largest value of the 4-byte varint */

struct mqtt_connect {
    uint8_t protocol_level; /* 3 (MQIsdp), 4 or 5 (MQTT) */
    bool clean_session;     /* 5.0: Clean Start */
    uint16_t keepalive;
    struct mqtt_bytes client_id;
    bool will;
    uint8_t will_qos;
    bool will_retain;
    struct mqtt_bytes will_topic;
    struct mqtt_bytes will_payload;
    bool has_username;
    struct mqtt_bytes username;
    bool has_password;
    struct mqtt_bytes password;
};

struct mqtt_connack {
    bool session_present;
    uint8_t rc;
};

struct mqtt_publish {
    uint8_t qos;
    bool dup;
    bool retain;
    struct mqtt_bytes topic;
    uint16_t packet_id; /* 0 for QoS 0 */
    const uint8_t *payload;
    size_t payload_len;
    /* Encoding: the properties of a 5.0 PUBLISH (NULL: 3.1.1). Parsing a
     * 5.0 PUBLISH leaves them in mqtt_packet.props; an empty topic is then
     * allowed when they hold a Topic Alias. */
    const struct mqtt_props *props;
};

/* SUBSCRIBE / UNSUBSCRIBE / SUBACK: the list is validated by mqtt_parse.
 * Filters are walked with mqtt_topic_next; a SUBACK's return codes are the
 * bytes p[0..count). */
struct mqtt_list {
    uint16_t packet_id;
    uint16_t count; /* topic filters (or SUBACK return codes) */
    bool has_qos;   /* SUBSCRIBE: each filter is followed by its QoS byte
                       (5.0: its options byte, MQTT_SUB_*) */
    const uint8_t *p;
    size_t len;
};

struct mqtt_packet {
    enum mqtt_type type;
    uint8_t flags;   /* low nibble of the fixed header */
    uint8_t version; /* MQTT_V311 or MQTT_V5: the layout it was parsed with */
    uint8_t reason;  /* 5.0 acks, DISCONNECT, AUTH (CONNACK: connack.rc) */
    union {
        struct mqtt_connect connect;
        struct mqtt_connack connack;
        struct mqtt_publish publish;
        struct mqtt_list list; /* SUBSCRIBE, UNSUBSCRIBE, SUBACK, 5.0 UNSUBACK */
        uint16_t packet_id;    /* PUBACK, PUBREC, PUBREL, PUBCOMP, 3.1.1 UNSUBACK */
    };
    /* A 5.0 packet's properties (a CONNECT's will has its own, will_props).
     * Not set for 3.1.1 packets. */
    struct mqtt_props props, will_props;
};

/* Finds the first whole packet in buf[0..len).
 * Returns 1 and sets *frame_len (fixed header + remaining length) when one
 * is complete, 0 when more bytes are needed, ERR_MALFORMED for a bad
 * remaining-length encoding, ERR_TOO_LARGE when the packet would exceed
 * max_packet bytes (checked as soon as the length is known). */
MUST_USE int mqtt_frame(const uint8_t *buf, size_t len, size_t max_packet, size_t *frame_len);

/* Parses one whole frame (as found by mqtt_frame) laid out as version
 * (MQTT_V311 for 3.1 too, or MQTT_V5: what the connection's CONNECT said; a
 * CONNECT says it itself and sets out->version). Checks every rule of the
 * spec that can be checked on one packet alone: reserved flag bits, QoS 3,
 * DUP on QoS 0, zero packet ids, UTF-8 well-formedness and control
 * characters (mqtt_text_valid), wildcards in PUBLISH topics, empty SUBSCRIBE
 * lists, CONNECT flag combinations, 5.0 properties (props.h) and reason
 * codes. A CONNECT whose protocol name is neither "MQTT" nor "MQIsdp" is
 * malformed. Returns 0, ERR_MALFORMED, ERR_PROTO (5.0: a protocol error,
 * reason 0x82), or ERR_PROTO_VERSION for a CONNECT with a known name but an
 * unknown level: the caller answers CONNACK 1 then closes. */
MUST_USE int mqtt_parse(const uint8_t *frame, size_t len, uint8_t version, struct mqtt_packet *out);

/* Iterates a parsed SUBSCRIBE (qos set: the QoS, or in 5.0 the options
 * byte) or UNSUBSCRIBE (qos may be NULL) list. *pos starts at 0. Returns 1
 * with the next entry, 0 at the end. */
int mqtt_topic_next(const struct mqtt_list *l, size_t *pos, struct mqtt_bytes *filter,
                    uint8_t *qos);

/* Valid UTF-8 per MQTT 3.1.1 1.5.3: no U+0000, no surrogates, no overlongs. */
bool mqtt_utf8_valid(const uint8_t *p, size_t len);
/* mqtt_utf8_valid and no control character U+0001-U+001F or U+007F-U+009F:
 * what every string field of a packet must be (the spec lets a server close
 * the connection on them, and these strings end up in topics and logs). */
bool mqtt_text_valid(const uint8_t *p, size_t len);

/* Encoders append one packet to out. Return 0, ERR_TOO_LARGE or ERR_NOMEM.
 * props: the 5.0 properties (mqtt_props_none for none), NULL for 3.1.1. */
MUST_USE int mqtt_encode_connack(struct buf *out, bool session_present, uint8_t rc,
                                 const struct mqtt_props *props);
MUST_USE int mqtt_encode_publish(struct buf *out, const struct mqtt_publish *p);
/* PUBACK, PUBREC, PUBREL (flags 0x2 added), PUBCOMP; UNSUBACK in 3.1.1.
 * reason is 5.0's (ignored without props). */
MUST_USE int mqtt_encode_ack(struct buf *out, enum mqtt_type type, uint16_t packet_id,
                             uint8_t reason, const struct mqtt_props *props);
MUST_USE int mqtt_encode_suback(struct buf *out, uint16_t packet_id, const uint8_t *rcs, size_t n,
                                const struct mqtt_props *props);
/* 5.0 has a reason code per filter; 3.1.1 (props NULL) ignores rcs. */
MUST_USE int mqtt_encode_unsuback(struct buf *out, uint16_t packet_id, const uint8_t *rcs, size_t n,
                                  const struct mqtt_props *props);
MUST_USE int mqtt_encode_pingresp(struct buf *out);
/* Either direction. 3.1.1 (props NULL) has no reason code. */
MUST_USE int mqtt_encode_disconnect(struct buf *out, uint8_t reason,
                                    const struct mqtt_props *props);
/* 5.0 only (props must not be NULL). */
MUST_USE int mqtt_encode_auth(struct buf *out, uint8_t reason, const struct mqtt_props *props);

/* Client-side encoders (load generator, tests, fuzz round trips). A level
 * 5 CONNECT carries props and will_props (NULL: none); others ignore them. */
MUST_USE int mqtt_encode_connect(struct buf *out, const struct mqtt_connect *c,
                                 const struct mqtt_props *props,
                                 const struct mqtt_props *will_props);
MUST_USE int mqtt_encode_subscribe(struct buf *out, uint16_t packet_id,
                                   const struct mqtt_bytes *filters, const uint8_t *qos, size_t n,
                                   const struct mqtt_props *props);
MUST_USE int mqtt_encode_unsubscribe(struct buf *out, uint16_t packet_id,
                                     const struct mqtt_bytes *filters, size_t n,
                                     const struct mqtt_props *props);
MUST_USE int mqtt_encode_pingreq(struct buf *out);

/* Bytes a PUBLISH with this topic/payload/qos takes on the wire; props_len
 * is what its 5.0 properties take with their length (0 for 3.1.1). */
size_t mqtt_publish_size(size_t topic_len, size_t payload_len, uint8_t qos, size_t props_len);

#endif
