/* The envelope of a message carried between nodes over NATS: a small binary
 * header (version, QoS, RETAIN, origin and sequence, Message Expiry left,
 * the 5.0 properties that travel with a message) followed by the payload.
 * The topic travels in the subject. Parsing is pure and trusts no length. */
#ifndef CERTMQ_CLUSTER_ENVELOPE_H
#define CERTMQ_CLUSTER_ENVELOPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/err.h"

#define ENVELOPE_VERSION 1

struct envelope {
    uint8_t qos;
    bool retain;
    uint64_t origin;      /* the publishing node's incarnation (random at start) */
    uint64_t seq;         /* its publish counter: duplicates and order */
    uint32_t expiry;      /* seconds of Message Expiry left; 0: none */
    const uint8_t *props; /* encoded 5.0 properties (no length in front); borrowed */
    size_t props_len;
    const uint8_t *payload; /* borrowed */
    size_t payload_len;
};

/* Appends e to out. */
MUST_USE int envelope_write(struct buf *out, const struct envelope *e);

/* Reads an envelope from d (n bytes); out borrows from d. ERR_MALFORMED for
 * a truncated header, another version, unknown flag bits, QoS 3, or
 * properties that are malformed or do not travel with a message (Topic
 * Alias, Subscription Identifier, Message Expiry: it is in the header);
 * ERR_PROTO for a payload that its Payload Format Indicator says is UTF-8
 * but is not. */
MUST_USE int envelope_parse(const uint8_t *d, size_t n, struct envelope *out);

#endif
