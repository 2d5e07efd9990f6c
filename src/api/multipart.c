/* Streaming multipart/form-data reader (see multipart.h). The delimiter
 * "\r\n--<boundary>" is found with a Knuth-Morris-Pratt matcher, so bytes
 * that turn out not to start a delimiter are released in order whatever
 * the boundary; the body starts as if after a CRLF, so a delimiter may open
 * it. Released bytes of the file part pass through a small staging buffer. */
#include "api/multipart.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DELIM_MAX (4 + MULTIPART_BOUNDARY_MAX)

enum mp_state {
    MP_PREAMBLE, /* before the first delimiter: discarded */
    MP_HEADERS,  /* after a delimiter: "--" (the last one) or header lines */
    MP_DATA,     /* a part's data, up to the next delimiter */
    MP_END,      /* the file part is complete, or the last delimiter came */
};

struct multipart {
    multipart_sink sink;
    void *arg;
    int err;
    enum mp_state state;
    bool is_file;   /* the part being read is the file */
    bool file_seen; /* a part named file has started */
    bool file_done; /* ... and ended at a delimiter */
    size_t dlen, match;
    uint8_t delim[DELIM_MAX];
    size_t fail[DELIM_MAX + 1]; /* longest proper prefix that is a suffix, per matched length */
    size_t hlen, olen;
    uint8_t hdr[MULTIPART_HEADER_MAX];
    uint8_t out[4096];
};

/* The boundary parameter of a Content-Type value, into m->delim. */
static int parse_boundary(struct multipart *m, const char *ct)
{
    ENSURE(ct && strncasecmp(ct, "multipart/", 10) == 0, ERR_INVALID);
    const char *b = strcasestr(ct, "boundary=");
    ENSURE(b, ERR_INVALID);
    b += 9;
    size_t bl = strcspn(b, ";");
    if (bl >= 2 && b[0] == '"' && b[bl - 1] == '"') {
        b++;
        bl -= 2;
    }
    ENSURE(bl > 0 && bl <= MULTIPART_BOUNDARY_MAX, ERR_INVALID);
    memcpy(m->delim, "\r\n--", 4);
    memcpy(m->delim + 4, b, bl);
    m->dlen = 4 + bl;
    return 0;
}

static void build_fail(struct multipart *m)
{
    size_t k = 0;
    m->fail[0] = m->fail[1] = 0;
    for (size_t i = 1; i < m->dlen; i++) {
        while (k > 0 && m->delim[i] != m->delim[k]) k = m->fail[k];
        if (m->delim[i] == m->delim[k]) k++;
        m->fail[i + 1] = k;
    }
}

int multipart_new(const char *content_type, multipart_sink sink, void *arg, struct multipart **out)
{
    struct multipart *m = calloc(1, sizeof *m);
    ENSURE(m, ERR_NOMEM);
    int rc = parse_boundary(m, content_type);
    if (rc < 0) {
        free(m);
        return rc;
    }
    build_fail(m);
    m->sink = sink;
    m->arg = arg;
    m->state = MP_PREAMBLE;
    m->match = 2; /* the body starts as if after a CRLF */
    *out = m;
    return 0;
}

static int flush(struct multipart *m)
{
    size_t n = m->olen;
    m->olen = 0;
    return n ? m->sink(m->arg, m->out, n) : 0;
}

/* Bytes of the current part that are not a delimiter. */
static int release(struct multipart *m, const uint8_t *p, size_t n)
{
    if (m->state != MP_DATA || !m->is_file) return 0;
    while (n) {
        if (m->olen == sizeof m->out) GUARD(flush(m));
        size_t k = sizeof m->out - m->olen;
        if (k > n) k = n;
        memcpy(m->out + m->olen, p, k);
        m->olen += k;
        p += k;
        n -= k;
    }
    return 0;
}

/* Does the header block name the part "file" (name="file" as a parameter,
 * not inside filename=)? */
static bool names_file(const uint8_t *h, size_t n)
{
    static const char key[] = "name=\"file\"";
    size_t kl = sizeof key - 1;
    for (size_t i = 0; i + kl <= n; i++) {
        if (strncasecmp((const char *)h + i, "name=", 5) != 0) continue;
        if (i > 0 && (isalnum(h[i - 1]) || h[i - 1] == '-' || h[i - 1] == '_')) continue;
        if (memcmp(h + i + 5, key + 5, kl - 5) == 0) return true;
    }
    return false;
}

static int header_byte(struct multipart *m, uint8_t c)
{
    ENSURE(m->hlen < sizeof m->hdr, ERR_INVALID);
    m->hdr[m->hlen++] = c;
    if (m->hlen == 2 && memcmp(m->hdr, "--", 2) == 0) {
        m->state = MP_END; /* the last delimiter */
        return 0;
    }
    if (m->hlen < 4 || memcmp(m->hdr + m->hlen - 4, "\r\n\r\n", 4) != 0) return 0;
    m->is_file = !m->file_seen && names_file(m->hdr, m->hlen - 4);
    if (m->is_file) m->file_seen = true;
    m->state = MP_DATA;
    m->match = 0;
    return 0;
}

/* A whole delimiter was matched in the preamble or a part's data. */
static int on_delimiter(struct multipart *m)
{
    m->match = 0;
    if (m->state == MP_DATA && m->is_file) {
        GUARD(flush(m));
        m->file_done = true;
        m->state = MP_END; /* what follows the file is not read */
        return 0;
    }
    m->state = MP_HEADERS;
    m->hlen = 0;
    return 0;
}

static int scan_byte(struct multipart *m, uint8_t c)
{
    while (m->match > 0 && m->delim[m->match] != c) {
        size_t f = m->fail[m->match];
        GUARD(release(m, m->delim, m->match - f)); /* can no longer start a delimiter */
        m->match = f;
    }
    if (m->delim[m->match] != c) return release(m, &c, 1);
    if (++m->match == m->dlen) return on_delimiter(m);
    return 0;
}

int multipart_feed(struct multipart *m, const uint8_t *p, size_t n)
{
    int rc = m->err;
    for (size_t i = 0; rc == 0 && i < n && m->state != MP_END; i++)
        rc = m->state == MP_HEADERS ? header_byte(m, p[i]) : scan_byte(m, p[i]);
    if (rc == 0) rc = flush(m);
    if (rc < 0) m->err = rc;
    return rc;
}

int multipart_finish(struct multipart *m)
{
    int rc = m->err ? m->err : flush(m);
    if (rc == 0 && !m->file_done) rc = ERR_INVALID;
    return rc;
}

size_t multipart_held(const struct multipart *m)
{
    return sizeof *m;
}

void multipart_free(struct multipart *m)
{
    free(m);
}
