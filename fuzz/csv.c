/* libFuzzer target for the bulk-registration CSV parser: any bytes must
 * parse or fail cleanly, every cell of a parsed table must be readable,
 * and the same bytes fed as a stream in pieces of random sizes (drawn from
 * a generator seeded by the input) must give the same result and table. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "identity/csv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint64_t seed_of(const uint8_t *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h | 1;
}

static size_t next_cut(uint64_t *x, size_t left)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    size_t n = (size_t)(*x % 4 == 0 ? *x % 300 : *x % 8); /* mostly tiny, some long */
    return n < left ? n : left;
}

static int parse_in_pieces(const uint8_t *p, size_t n, struct csv *out)
{
    struct csv_stream *s = NULL;
    uint64_t x = seed_of(p, n);
    if (csv_stream_new(&s) < 0) abort();
    for (size_t at = 0; at < n;) {
        size_t k = next_cut(&x, n - at);
        int rc = csv_stream_feed(s, p + at, k); /* k may be 0: nothing happens */
        if (rc < 0) {
            csv_stream_free(s);
            memset(out, 0, sizeof *out);
            return rc;
        }
        at += k;
    }
    return csv_stream_finish(s, out);
}

static bool same_table(const struct csv *a, const struct csv *b)
{
    if (a->sep != b->sep || a->ncols != b->ncols || a->nrows != b->nrows) return false;
    for (size_t r = 0; r <= a->nrows; r++) {
        if (a->line[r] != b->line[r]) return false;
        for (size_t k = 0; k < a->ncols; k++)
            if (strcmp(a->cells[r * a->ncols + k], b->cells[r * b->ncols + k]) != 0) return false;
    }
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct csv c, pieces;
    int rc = csv_parse(data, size, &c);
    int rc2 = parse_in_pieces(data, size, &pieces);
    if (rc != rc2) abort();
    if (rc < 0) return 0;
    if (!same_table(&c, &pieces)) abort();
    size_t total = 0;
    for (size_t r = 0; r < c.nrows; r++)
        for (size_t k = 0; k < c.ncols; k++) total += strlen(csv_cell(&c, r, (int)k));
    (void)csv_col(&c, "ID");
    csv_free(&c);
    csv_free(&pieces);
    return total > SIZE_MAX - 1 ? 1 : 0;
}
