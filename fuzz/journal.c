/* libFuzzer target for the session journal (src/store/journal.c): decodes
 * the input record by record; each record that decodes must encode back to
 * exactly the bytes it was decoded from (the format has one spelling). */
#include <stdlib.h>
#include <string.h>

#include "store/journal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct rd r = rd_make(data, size);
    struct buf b;
    buf_init(&b, 0);
    while (rd_left(&r)) {
        size_t start = r.pos;
        struct jrec rec;
        if (journal_next(&r, &rec) < 0) break;
        buf_consume(&b, buf_used(&b));
        if (journal_put(&b, &rec) < 0) abort();
        if (buf_used(&b) != r.pos - start || memcmp(buf_head(&b), data + start, buf_used(&b)))
            abort();
        for (uint16_t i = 0; i < rec.n_ids; i++) (void)journal_id(&rec, i);
    }
    buf_free(&b);
    return 0;
}
