/* libFuzzer target for the streaming multipart/form-data reader. The input
 * is "<boundary>\n<body>": the body is read whole and again in pieces of
 * random sizes (drawn from a generator seeded by the input), and both reads
 * must give the same result and the same file bytes as a plain search of
 * the whole body (memmem) for its delimiters. */
#include <ctype.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/multipart.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct out {
    uint8_t *p;
    size_t len, cap;
};

static int collect(void *arg, const uint8_t *p, size_t n)
{
    struct out *o = arg;
    if (n == 0 || o->len + n > o->cap) abort(); /* never empty, never more than the body */
    memcpy(o->p + o->len, p, n);
    o->len += n;
    return 0;
}

static size_t next_cut(uint64_t *x, size_t left)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    size_t n = (size_t)(*x % 4 == 0 ? *x % 300 : *x % 8);
    return n < left ? n : left;
}

/* Reads body in pieces (seed 0: whole); the file's bytes go to o. */
static int read_body(const char *ct, const uint8_t *body, size_t n, uint64_t seed, struct out *o)
{
    struct multipart *m = NULL;
    o->len = 0;
    int rc = multipart_new(ct, collect, o, &m);
    if (rc < 0) return rc;
    for (size_t at = 0; rc == 0 && at < n;) {
        size_t k = seed ? next_cut(&seed, n - at) : n;
        rc = multipart_feed(m, body + at, k);
        at += k;
    }
    if (rc == 0) rc = multipart_finish(m);
    multipart_free(m);
    return rc;
}

static bool ref_names_file(const uint8_t *h, size_t n)
{
    for (size_t i = 0; i + 11 <= n; i++)
        if (strncasecmp((const char *)h + i, "name=", 5) == 0 &&
            memcmp(h + i + 5, "\"file\"", 6) == 0 &&
            (i == 0 || !(isalnum(h[i - 1]) || h[i - 1] == '-' || h[i - 1] == '_')))
            return true;
    return false;
}

/* The reference: "\r\n" + body searched whole. 0 and the file's bytes, or
 * ERR_INVALID. */
static int reference(const char *boundary, size_t bl, const uint8_t *body, size_t n, struct out *o)
{
    uint8_t d[4 + MULTIPART_BOUNDARY_MAX];
    if (bl == 0 || bl > MULTIPART_BOUNDARY_MAX) return ERR_INVALID;
    memcpy(d, "\r\n--", 4);
    memcpy(d + 4, boundary, bl);
    size_t dl = 4 + bl;
    uint8_t *all = malloc(n + 2);
    memcpy(all, "\r\n", 2);
    memcpy(all + 2, body, n);
    const uint8_t *end = all + n + 2;
    const uint8_t *p = memmem(all, n + 2, d, dl);
    int rc = ERR_INVALID;
    while (p) {
        p += dl;
        if (end - p >= 2 && p[0] == '-' && p[1] == '-') break;
        const uint8_t *he = memmem(p, (size_t)(end - p), "\r\n\r\n", 4);
        if (!he || (size_t)(he + 4 - p) > MULTIPART_HEADER_MAX) break;
        const uint8_t *data = he + 4, *stop = memmem(data, (size_t)(end - data), d, dl);
        if (!stop) break;
        if (ref_names_file(p, (size_t)(he - p))) {
            memcpy(o->p, data, (size_t)(stop - data));
            o->len = (size_t)(stop - data);
            rc = 0;
            break;
        }
        p = stop;
    }
    free(all);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nl = memchr(data, '\n', size < 256 ? size : 256);
    if (!nl) return 0;
    char ct[300];
    snprintf(ct, sizeof ct, "multipart/form-data; boundary=%.*s", (int)(nl - data),
             (const char *)data);
    const uint8_t *body = nl + 1;
    size_t n = size - (size_t)(body - data);
    uint64_t seed = 1469598103934665603ull;
    for (size_t i = 0; i < size; i++) seed = (seed ^ data[i]) * 1099511628211ull;
    struct out whole = {malloc(n + 1), 0, n}, pieces = {malloc(n + 1), 0, n};
    struct out ref = {malloc(n + 1), 0, n};
    int rc = read_body(ct, body, n, 0, &whole);
    int rc2 = read_body(ct, body, n, seed | 1, &pieces);
    /* The boundary as multipart_new takes it: up to ';', quotes stripped. */
    const char *b = (const char *)data;
    const uint8_t *semi = memchr(data, ';', (size_t)(nl - data));
    size_t bl = (size_t)((semi ? semi : nl) - data);
    if (bl >= 2 && b[0] == '"' && b[bl - 1] == '"') {
        b++;
        bl -= 2;
    }
    int rc3 = memchr(data, 0, (size_t)(nl - data)) ? rc : reference(b, bl, body, n, &ref);
    if (rc != rc2 || rc != rc3) abort();
    if (rc == 0 && (whole.len != pieces.len || memcmp(whole.p, pieces.p, whole.len) != 0)) abort();
    if (rc == 0 && rc3 == 0 && !memchr(data, 0, (size_t)(nl - data)) &&
        (whole.len != ref.len || memcmp(whole.p, ref.p, whole.len) != 0))
        abort();
    free(whole.p);
    free(pieces.p);
    free(ref.p);
    return 0;
}
