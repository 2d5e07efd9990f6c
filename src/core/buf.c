/* Bounded byte buffers and read cursors (see buf.h). */
#include "core/buf.h"

#include <stdlib.h>
#include <string.h>

void buf_init(struct buf *b, size_t max)
{
    memset(b, 0, sizeof *b);
    b->max = max;
}

void buf_free(struct buf *b)
{
    free(b->data);
    b->data = NULL;
    b->off = b->len = b->cap = 0;
}

int buf_reserve(struct buf *b, size_t n)
{
    if (b->cap - b->len >= n) return 0;
    size_t used = b->len - b->off;
    if (b->max && (used > b->max || n > b->max - used)) return ERR_TOO_LARGE;
    if (b->off && b->cap - used >= n) {
        memmove(b->data, b->data + b->off, used);
        b->off = 0;
        b->len = used;
        return 0;
    }
    size_t want = b->cap ? b->cap : 256;
    while (want - used < n) {
        if (want > SIZE_MAX / 2) return ERR_NOMEM;
        want *= 2;
    }
    if (b->max && want > b->max) want = b->max;
    uint8_t *d = malloc(want);
    if (!d) return ERR_NOMEM;
    if (used) memcpy(d, b->data + b->off, used);
    free(b->data);
    b->data = d;
    b->cap = want;
    b->off = 0;
    b->len = used;
    return 0;
}

int buf_append_slow(struct buf *b, const void *p, size_t n)
{
    GUARD(buf_reserve(b, n));
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

int buf_put_u32(struct buf *b, uint32_t v)
{
    uint8_t p[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    return buf_append(b, p, sizeof p);
}

int buf_put_varint(struct buf *b, uint32_t v)
{
    ENSURE(v < (1u << 28), ERR_TOO_LARGE);
    uint8_t p[4];
    size_t n = 0;
    do {
        p[n] = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (v) p[n] |= 0x80;
        n++;
    } while (v);
    return buf_append(b, p, n);
}

void buf_consume(struct buf *b, size_t n)
{
    if (n > b->len - b->off) n = b->len - b->off;
    b->off += n;
    if (b->off == b->len) b->off = b->len = 0;
}

void buf_shrink(struct buf *b)
{
    if (b->off == b->len) buf_free(b);
}

int rd_u8(struct rd *r, uint8_t *v)
{
    ENSURE(rd_left(r) >= 1, ERR_MALFORMED);
    *v = r->p[r->pos++];
    return 0;
}

int rd_u16(struct rd *r, uint16_t *v)
{
    ENSURE(rd_left(r) >= 2, ERR_MALFORMED);
    *v = (uint16_t)(r->p[r->pos] << 8 | r->p[r->pos + 1]);
    r->pos += 2;
    return 0;
}

int rd_u32(struct rd *r, uint32_t *v)
{
    ENSURE(rd_left(r) >= 4, ERR_MALFORMED);
    const uint8_t *p = r->p + r->pos;
    *v = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
    r->pos += 4;
    return 0;
}

int rd_varint(struct rd *r, uint32_t *v)
{
    uint32_t x = 0;
    for (int i = 0; i < 4; i++) {
        uint8_t b;
        GUARD(rd_u8(r, &b));
        x |= (uint32_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            ENSURE(i == 0 || b != 0, ERR_MALFORMED); /* more bytes than needed */
            *v = x;
            return 0;
        }
    }
    return ERR_MALFORMED;
}

int rd_bytes(struct rd *r, size_t n, const uint8_t **p)
{
    ENSURE(rd_left(r) >= n, ERR_MALFORMED);
    *p = r->p + r->pos;
    r->pos += n;
    return 0;
}

int rd_lp16(struct rd *r, const uint8_t **p, uint16_t *n)
{
    GUARD(rd_u16(r, n));
    return rd_bytes(r, *n, p);
}
