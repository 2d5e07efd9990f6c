/* libFuzzer target for src/store/journal.c, the session journal records a
 * session store applies. Records are decoded until the input ends or one is
 * malformed; the decoded ones are encoded again, and that encoding must
 * decode to the same number of records and encode to the same bytes.
 * Compaction of the valid records must give records that all decode, no
 * more bytes than went in, and be a fixed point (compacting again changes
 * nothing). */
#include <stdint.h>
#include <string.h>

#include "store/journal.h"

static size_t reencode(const uint8_t *data, size_t size, struct buf *out)
{
    struct rd r = rd_make(data, size);
    struct jrec rec;
    size_t n = 0;
    while (rd_left(&r) && journal_next(&r, &rec) == 0) {
        for (uint16_t i = 0; i < rec.n_ids; i++) (void)journal_id(&rec, i);
        if (journal_put(out, &rec) < 0) __builtin_trap(); /* what decodes encodes */
        n++;
    }
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct buf a, b;
    buf_init(&a, 0);
    buf_init(&b, 0);
    size_t n = reencode(data, size, &a);
    size_t m = reencode(buf_head(&a), buf_used(&a), &b);
    if (n != m || buf_used(&a) != buf_used(&b) ||
        (buf_used(&a) && memcmp(buf_head(&a), buf_head(&b), buf_used(&a))))
        __builtin_trap();
    struct buf c, d;
    buf_init(&c, 0);
    buf_init(&d, 0);
    if (journal_compact(buf_head(&a), buf_used(&a), &c) == 0) {
        if (buf_used(&c) > buf_used(&a) || reencode(buf_head(&c), buf_used(&c), &d) > n)
            __builtin_trap();
        buf_consume(&d, buf_used(&d));
        if (journal_compact(buf_head(&c), buf_used(&c), &d) != 0 || buf_used(&d) != buf_used(&c))
            __builtin_trap();
    }
    buf_free(&a);
    buf_free(&b);
    buf_free(&c);
    buf_free(&d);
    return 0;
}
