/* The session journal: the changes to durable MQTT session state (sessions,
 * subscriptions, stored messages, queued and in-flight items, incoming QoS 2
 * ids) as records in a byte buffer. The broker appends records under its
 * lock; a session store (sessions.h) applies a buffer of them in one
 * transaction. Pure: encoding and decoding only, every length checked. */
#ifndef CERTMQ_STORE_JOURNAL_H
#define CERTMQ_STORE_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

enum jtype {
    J_SESSION_PUT = 1, /* a session (or its new expiry, offline time, will) */
    J_SESSION_DEL,     /* the session and everything it holds */
    J_SUB_PUT,
    J_SUB_DEL,
    J_MSG_PUT, /* a message body, stored once for every item that holds it */
    J_MSG_DEL,
    J_ITEM_PUT, /* a message queued for a session */
    J_ITEM_UPD, /* its packet id and state once sent or acknowledged (PUBREC) */
    J_ITEM_DEL,
    J_RX_PUT, /* an incoming QoS 2 packet id awaiting PUBREL */
    J_RX_DEL,
    J_TYPE_MAX = J_RX_DEL,
};

/* Borrowed bytes. */
struct jstr {
    const uint8_t *p;
    uint32_t len;
};

/* One record. Which fields a type uses is listed in journal.c; the others
 * are zero after decoding. Strings borrow from the buffer decoded. */
struct jrec {
    uint8_t type;    /* enum jtype */
    struct jstr key; /* session: tenant \x01 ClientId */
    struct jstr tenant, client_id, identity, anchor;
    uint8_t kind, device, has_user_name;
    uint32_t roles, expiry;
    int64_t offline_since; /* 0: connected */
    bool has_will;         /* the will is the message fields below */
    uint32_t will_delay, will_expiry;
    struct jstr filter, group; /* subscription; group "" when not shared */
    uint8_t opts;
    uint32_t sub_id;
    uint64_t pid; /* message id */
    struct jstr topic, payload, props;
    uint8_t qos, retain;
    int64_t expire_at;
    uint64_t seq;  /* item id */
    uint8_t state; /* enum qstate of the broker */
    uint16_t packet_id;
    uint16_t n_ids;
    const uint8_t *ids; /* n_ids subscription identifiers, 4 bytes each */
};

/* Appends one record. ERR_INVALID for an unknown type, ERR_TOO_LARGE for a
 * field beyond its length prefix, ERR_NOMEM. */
MUST_USE int journal_put(struct buf *out, const struct jrec *r);
/* Decodes the record at r's cursor. ERR_MALFORMED when it is cut short,
 * of an unknown type, or a string too long. */
MUST_USE int journal_next(struct rd *r, struct jrec *out);
/* Copies the records of in[0..len) to out, less those of items both put
 * and deleted within them and of messages both put and deleted within them
 * (a message delivered and acknowledged before its commit need not be
 * written at all). ERR_MALFORMED for a bad record, ERR_NOMEM. */
MUST_USE int journal_compact(const uint8_t *in, size_t len, struct buf *out);
/* Subscription identifier i of an item record. */
uint32_t journal_id(const struct jrec *r, uint16_t i);

#endif
