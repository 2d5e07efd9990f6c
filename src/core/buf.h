/* Bounded byte buffers. struct buf owns a growable array with a read cursor
 * (off) and a write end (len) and never grows past its max. struct rd is a
 * read-only cursor over borrowed bytes: every read checks the length first,
 * so parsers built on it never trust a length they were sent. */
#ifndef CERTMQ_BUF_H
#define CERTMQ_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/err.h"

struct buf {
    uint8_t *data;
    size_t off; /* first unread byte */
    size_t len; /* end of written bytes */
    size_t cap;
    size_t max; /* 0: unbounded */
};

void buf_init(struct buf *b, size_t max);
/* Frees the storage; the buf may be reused after buf_init. */
void buf_free(struct buf *b);
/* Room for n more bytes at data + len (compacts or grows). */
MUST_USE int buf_reserve(struct buf *b, size_t n);
/* buf_append when it has to make room first. */
MUST_USE int buf_append_slow(struct buf *b, const void *p, size_t n);
/* Appends n bytes: inline when they fit (encoders reserve a packet whole,
 * then append its fields). */
MUST_USE static inline int buf_append(struct buf *b, const void *p, size_t n)
{
    if (b->cap - b->len < n) return buf_append_slow(b, p, n);
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}
MUST_USE static inline int buf_put_u8(struct buf *b, uint8_t v)
{
    return buf_append(b, &v, 1);
}
MUST_USE static inline int buf_put_u16(struct buf *b, uint16_t v) /* big endian */
{
    uint8_t x[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    return buf_append(b, x, 2);
}
MUST_USE int buf_put_u32(struct buf *b, uint32_t v); /* big endian */
/* MQTT's variable byte integer (1-4 bytes; v < 268435456). */
MUST_USE int buf_put_varint(struct buf *b, uint32_t v);
/* Unread bytes. */
static inline size_t buf_used(const struct buf *b)
{
    return b->len - b->off;
}
/* Never NULL (an empty buffer without storage gives a zero-length view). */
static inline const uint8_t *buf_head(const struct buf *b)
{
    return b->data ? b->data + b->off : (const uint8_t *)"";
}
/* Marks n unread bytes as read; resets to empty when all are read. */
void buf_consume(struct buf *b, size_t n);
/* Releases storage when the buffer is empty (idle connections hold none). */
void buf_shrink(struct buf *b);

struct rd {
    const uint8_t *p;
    size_t len;
    size_t pos;
};

static inline struct rd rd_make(const void *p, size_t len)
{
    struct rd r = {(const uint8_t *)p, len, 0};
    return r;
}
static inline size_t rd_left(const struct rd *r)
{
    return r->len - r->pos;
}
MUST_USE int rd_u8(struct rd *r, uint8_t *v);
MUST_USE int rd_u16(struct rd *r, uint16_t *v);
MUST_USE int rd_u32(struct rd *r, uint32_t *v);
/* MQTT's variable byte integer: ERR_MALFORMED when truncated, longer than
 * four bytes, or longer than its value needs (5.0, 1.5.5). */
MUST_USE int rd_varint(struct rd *r, uint32_t *v);
/* Points *p at the next n bytes (no copy). */
MUST_USE int rd_bytes(struct rd *r, size_t n, const uint8_t **p);
/* A 16-bit length-prefixed field (MQTT string or binary data). */
MUST_USE int rd_lp16(struct rd *r, const uint8_t **p, uint16_t *n);

#endif
