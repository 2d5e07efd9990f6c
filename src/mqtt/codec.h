/* MQTT 3.1.1 packet codec: pure functions, bytes in, structs out, no I/O.
 * Parsed structs borrow from the frame they were parsed from (zero copy):
 * they stay valid only while that frame's bytes do. Encoders append to a
 * struct buf. Every length read from the wire is checked before use. */
#ifndef CERTMQ_MQTT_CODEC_H
#define CERTMQ_MQTT_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

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
};

/* CONNACK return codes (3.1.1 table 3.1). */
enum mqtt_connack_rc {
    MQTT_CONNACK_ACCEPTED = 0,
    MQTT_CONNACK_BAD_PROTOCOL = 1,
    MQTT_CONNACK_ID_REJECTED = 2,
    MQTT_CONNACK_UNAVAILABLE = 3,
    MQTT_CONNACK_BAD_CREDENTIALS = 4,
    MQTT_CONNACK_NOT_AUTHORIZED = 5,
};

#define MQTT_SUBACK_FAILURE 0x80
#define MQTT_MAX_REMAINING  268435455u /* largest value of the 4-byte varint */

/* Borrowed bytes (a parsed string passes mqtt_text_valid). */
struct mqtt_bytes {
    const uint8_t *p;
    uint16_t len;
};

struct mqtt_connect {
    uint8_t protocol_level; /* 3 (MQIsdp) or 4 (MQTT) */
    bool clean_session;
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
};

/* SUBSCRIBE / UNSUBSCRIBE / SUBACK: the list is validated by mqtt_parse.
 * Filters are walked with mqtt_topic_next; a SUBACK's return codes are the
 * bytes p[0..count). */
struct mqtt_list {
    uint16_t packet_id;
    uint16_t count; /* topic filters (or SUBACK return codes) */
    bool has_qos;   /* SUBSCRIBE: each filter is followed by its QoS byte */
    const uint8_t *p;
    size_t len;
};

struct mqtt_packet {
    enum mqtt_type type;
    uint8_t flags; /* low nibble of the fixed header */
    union {
        struct mqtt_connect connect;
        struct mqtt_connack connack;
        struct mqtt_publish publish;
        struct mqtt_list list; /* SUBSCRIBE, UNSUBSCRIBE, SUBACK */
        uint16_t packet_id;    /* PUBACK, PUBREC, PUBREL, PUBCOMP, UNSUBACK */
    };
};

/* Finds the first whole packet in buf[0..len).
 * Returns 1 and sets *frame_len (fixed header + remaining length) when one
 * is complete, 0 when more bytes are needed, ERR_MALFORMED for a bad
 * remaining-length encoding, ERR_TOO_LARGE when the packet would exceed
 * max_packet bytes (checked as soon as the length is known). */
MUST_USE int mqtt_frame(const uint8_t *buf, size_t len, size_t max_packet, size_t *frame_len);

/* Parses one whole frame (as found by mqtt_frame). Checks every rule of the
 * 3.1.1 spec that can be checked on one packet alone: reserved flag bits,
 * QoS 3, DUP on QoS 0, zero packet ids, UTF-8 well-formedness and control
 * characters (mqtt_text_valid), wildcards in PUBLISH topics, empty SUBSCRIBE
 * lists, CONNECT flag combinations. A CONNECT whose protocol name is neither
 * "MQTT" nor "MQIsdp" is malformed. Returns 0, ERR_MALFORMED, or
 * ERR_PROTO_VERSION for a CONNECT with a known name but a level other than
 * 4 (MQTT) or 3 (MQIsdp): the caller answers CONNACK 1 then closes. */
MUST_USE int mqtt_parse(const uint8_t *frame, size_t len, struct mqtt_packet *out);

/* Iterates a parsed SUBSCRIBE (qos set) or UNSUBSCRIBE (qos may be NULL)
 * list. *pos starts at 0. Returns 1 with the next entry, 0 at the end. */
int mqtt_topic_next(const struct mqtt_list *l, size_t *pos, struct mqtt_bytes *filter,
                    uint8_t *qos);

/* Valid UTF-8 per MQTT 3.1.1 1.5.3: no U+0000, no surrogates, no overlongs. */
bool mqtt_utf8_valid(const uint8_t *p, size_t len);
/* mqtt_utf8_valid and no control character U+0001-U+001F or U+007F-U+009F:
 * what every string field of a packet must be (the spec lets a server close
 * the connection on them, and these strings end up in topics and logs). */
bool mqtt_text_valid(const uint8_t *p, size_t len);

/* Encoders append one packet to out. Return 0, ERR_TOO_LARGE or ERR_NOMEM. */
MUST_USE int mqtt_encode_connack(struct buf *out, bool session_present, uint8_t rc);
MUST_USE int mqtt_encode_publish(struct buf *out, const struct mqtt_publish *p);
/* PUBACK, PUBREC, PUBREL (flags 0x2 added), PUBCOMP, UNSUBACK. */
MUST_USE int mqtt_encode_ack(struct buf *out, enum mqtt_type type, uint16_t packet_id);
MUST_USE int mqtt_encode_suback(struct buf *out, uint16_t packet_id, const uint8_t *rcs, size_t n);
MUST_USE int mqtt_encode_pingresp(struct buf *out);

/* Client-side encoders (load generator, tests, fuzz round trips). */
MUST_USE int mqtt_encode_connect(struct buf *out, const struct mqtt_connect *c);
MUST_USE int mqtt_encode_subscribe(struct buf *out, uint16_t packet_id,
                                   const struct mqtt_bytes *filters, const uint8_t *qos, size_t n);
MUST_USE int mqtt_encode_unsubscribe(struct buf *out, uint16_t packet_id,
                                     const struct mqtt_bytes *filters, size_t n);
MUST_USE int mqtt_encode_pingreq(struct buf *out);
MUST_USE int mqtt_encode_disconnect(struct buf *out);

/* Bytes a PUBLISH with this topic/payload/qos takes on the wire. */
size_t mqtt_publish_size(size_t topic_len, size_t payload_len, uint8_t qos);

#endif
