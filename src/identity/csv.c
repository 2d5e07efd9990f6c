/* CSV parsing for bulk registration (see csv.h): one byte-at-a-time state
 * machine, so a table is the same however its input was cut. Bytes are
 * held only until the separator is known and while a field is read (a
 * fixed CSV_MAX_FIELD buffer); a finished field is copied, trimmed, into
 * blocks that never move, so cells point at stable text. */
#include "identity/csv.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CSV_BLOCK_MIN 8192
#define CSV_BLOCK_MAX 65536 /* > CSV_MAX_FIELD: a field always fits one block */

struct csv_block {
    struct csv_block *next;
    size_t used, cap;
    char data[];
};

enum field_state {
    F_START,      /* nothing of the field read yet */
    F_UNQUOTED,   /* in an unquoted field, or after a quoted part */
    F_QUOTED,     /* inside quotes */
    F_QUOTE_SEEN, /* a quote inside quotes: "" or the closing one */
};

struct csv_stream {
    struct csv out; /* the table so far */
    size_t cap_rows;
    size_t held; /* bytes of out's arrays and blocks and of head */
    int err;     /* the first error; every later call returns it */
    /* Until the separator is known: the input so far (BOM included) and the
     * first line's separator counts, outside quotes. */
    bool sniffed;
    uint8_t *head;
    size_t head_len, head_cap, scan;
    bool scan_quoted;
    size_t tab, semi, comma;
    /* The record being read. A CR's line counts once the next byte shows
     * it is not half of a CRLF; a LF right after a record's CR is its end. */
    bool in_record, skip_lf, cr_pending;
    size_t line, start_line;
    enum field_state fs;
    bool starts_quoted;
    size_t nf, flen;
    char *fields[CSV_MAX_COLS];
    char field[CSV_MAX_FIELD + 1];
};

static char empty_cell[] = "";

/* ---- the table ---- */

/* A NUL-terminated copy of n bytes in the blocks ("" is shared). */
static char *arena_copy(struct csv_stream *s, const char *t, size_t n)
{
    if (n == 0) return empty_cell;
    struct csv_block *b = s->out.arena;
    if (!b || b->cap - b->used < n + 1) {
        size_t cap = b ? b->cap * 2 : CSV_BLOCK_MIN;
        if (cap > CSV_BLOCK_MAX) cap = CSV_BLOCK_MAX;
        struct csv_block *nb = malloc(sizeof *nb + cap);
        if (!nb) return NULL;
        *nb = (struct csv_block){.next = b, .used = 0, .cap = cap};
        s->out.arena = nb;
        s->held += sizeof *nb + cap;
        b = nb;
    }
    char *d = b->data + b->used;
    memcpy(d, t, n);
    d[n] = '\0';
    b->used += n + 1;
    return d;
}

/* Appends the record's fields as row `row` (0 is the header). */
static int push_row(struct csv_stream *s, size_t row)
{
    struct csv *c = &s->out;
    if (row + 1 > s->cap_rows) {
        size_t cap = s->cap_rows ? s->cap_rows * 2 : 64;
        ENSURE(cap <= SIZE_MAX / (c->ncols * sizeof(char *) + sizeof(size_t)), ERR_NOMEM);
        char **cells = realloc(c->cells, cap * c->ncols * sizeof *cells);
        ENSURE(cells, ERR_NOMEM);
        c->cells = cells;
        size_t *lines = realloc(c->line, cap * sizeof *lines);
        ENSURE(lines, ERR_NOMEM);
        c->line = lines;
        s->held += (cap - s->cap_rows) * (c->ncols * sizeof *cells + sizeof *lines);
        s->cap_rows = cap;
    }
    for (size_t k = 0; k < c->ncols; k++)
        c->cells[row * c->ncols + k] = k < s->nf ? s->fields[k] : empty_cell;
    c->line[row] = s->start_line;
    return 0;
}

static int end_record(struct csv_stream *s)
{
    struct csv *c = &s->out;
    if (c->ncols == 0) {
        c->ncols = s->nf;
        return push_row(s, 0);
    }
    ENSURE(s->nf <= c->ncols, ERR_MALFORMED);
    GUARD(push_row(s, c->nrows + 1));
    c->nrows++;
    return 0;
}

/* Trims spaces (and tabs unless tab separates) around an unquoted field. */
static char *trim_field(char *t, char sep)
{
    while (*t == ' ' || (*t == '\t' && sep != '\t')) t++;
    size_t n = strlen(t);
    while (n && (t[n - 1] == ' ' || (t[n - 1] == '\t' && sep != '\t'))) t[--n] = '\0';
    return t;
}

/* The field read so far is complete; eor: so is its record. A record of
 * one empty unquoted field is a blank line and is skipped. */
static int end_field(struct csv_stream *s, bool eor)
{
    s->field[s->flen] = '\0';
    char *f = s->starts_quoted ? s->field : trim_field(s->field, s->out.sep);
    bool blank = eor && s->nf == 0 && !s->starts_quoted && !*f;
    s->fs = F_START;
    s->flen = 0;
    s->starts_quoted = false;
    if (!blank) {
        ENSURE(s->nf < CSV_MAX_COLS, ERR_MALFORMED);
        char *t = arena_copy(s, f, strlen(f));
        ENSURE(t, ERR_NOMEM);
        s->fields[s->nf++] = t;
    }
    if (!eor) return 0;
    s->in_record = false;
    return blank ? 0 : end_record(s);
}

static int put(struct csv_stream *s, uint8_t c)
{
    ENSURE(s->flen < CSV_MAX_FIELD, ERR_MALFORMED);
    s->field[s->flen++] = (char)c;
    return 0;
}

/* One input byte, once the separator is known. */
static int step(struct csv_stream *s, uint8_t c)
{
    if (s->cr_pending) {
        s->cr_pending = false;
        if (c != '\n') s->line++;
    }
    if (s->skip_lf) {
        s->skip_lf = false;
        if (c == '\n') {
            s->line++;
            return 0;
        }
    }
    if (!s->in_record) {
        s->in_record = true;
        s->start_line = s->line;
        s->nf = 0;
    }
    if (c == '\n') s->line++;
    if (c == '\r') s->cr_pending = true;
    switch (s->fs) {
    case F_START:
        if (c != '"') break;
        s->fs = F_QUOTED;
        s->starts_quoted = true;
        return 0;
    case F_QUOTED:
        if (c != '"') return put(s, c);
        s->fs = F_QUOTE_SEEN;
        return 0;
    case F_QUOTE_SEEN:
        if (c != '"') break; /* after the closing quote, read as unquoted */
        s->fs = F_QUOTED;
        return put(s, c);
    case F_UNQUOTED: break;
    }
    s->fs = F_UNQUOTED;
    if ((char)c == s->out.sep) return end_field(s, false);
    if (c == '\n' || c == '\r') {
        s->skip_lf = c == '\r';
        return end_field(s, true);
    }
    return put(s, c);
}

/* ---- the separator, from the first line ---- */

static bool has_bom(const struct csv_stream *s)
{
    const uint8_t *h = s->head;
    return s->head_len >= 3 && h[0] == 0xEF && h[1] == 0xBB && h[2] == 0xBF;
}

/* Counts candidate separators on head's first line, outside quotes; true
 * once the line (or its first CSV_SNIFF_MAX bytes) has been seen. */
static bool sniff_scan(struct csv_stream *s)
{
    size_t start = has_bom(s) ? 3 : 0;
    if (s->scan < start) s->scan = start;
    while (s->scan < s->head_len) {
        if (s->scan - start >= CSV_SNIFF_MAX) return true;
        uint8_t c = s->head[s->scan++];
        if (c == '"')
            s->scan_quoted = !s->scan_quoted;
        else if (s->scan_quoted)
            continue;
        else if (c == '\n' || c == '\r')
            return true;
        else if (c == '\t')
            s->tab++;
        else if (c == ';')
            s->semi++;
        else if (c == ',')
            s->comma++;
    }
    return s->scan - start >= CSV_SNIFF_MAX;
}

/* Settles the separator and parses the held bytes. */
static int sniff_end(struct csv_stream *s)
{
    if (s->tab && s->tab >= s->semi && s->tab >= s->comma)
        s->out.sep = '\t';
    else if (s->semi && s->semi >= s->comma)
        s->out.sep = ';';
    else
        s->out.sep = ',';
    uint8_t *h = s->head;
    size_t n = s->head_len, start = has_bom(s) ? 3 : 0;
    s->sniffed = true;
    s->head = NULL;
    s->held -= s->head_cap;
    s->head_cap = s->head_len = 0;
    int rc = 0;
    for (size_t i = start; i < n && rc == 0; i++) rc = step(s, h[i]);
    free(h);
    return rc;
}

/* Holds bytes of p until the separator is known; *used: bytes taken. */
static int sniff_feed(struct csv_stream *s, const uint8_t *p, size_t n, size_t *used)
{
    size_t i = 0;
    while (i < n) {
        if (s->head_len == s->head_cap) {
            size_t cap = s->head_cap ? s->head_cap * 2 : 4096;
            uint8_t *h = realloc(s->head, cap);
            ENSURE(h, ERR_NOMEM);
            s->held += cap - s->head_cap;
            s->head = h;
            s->head_cap = cap;
        }
        s->head[s->head_len++] = p[i++];
        if (s->head_len >= 3 && sniff_scan(s)) {
            *used = i;
            return sniff_end(s);
        }
    }
    *used = i;
    return 0;
}

/* ---- interface ---- */

int csv_stream_new(struct csv_stream **out)
{
    struct csv_stream *s = calloc(1, sizeof *s);
    ENSURE(s, ERR_NOMEM);
    s->line = 1;
    *out = s;
    return 0;
}

int csv_stream_feed(struct csv_stream *s, const uint8_t *p, size_t n)
{
    size_t i = 0;
    int rc = s->err;
    if (rc == 0 && !s->sniffed) rc = sniff_feed(s, p, n, &i);
    for (; rc == 0 && i < n; i++) rc = step(s, p[i]);
    if (rc < 0 && !s->err) {
        s->err = rc;
        csv_free(&s->out); /* nothing more is needed: release the rows now */
        s->cap_rows = 0;
        s->held = s->head_cap;
    }
    return rc;
}

int csv_stream_finish(struct csv_stream *s, struct csv *out)
{
    int rc = s->err;
    memset(out, 0, sizeof *out);
    if (rc == 0 && !s->sniffed) {
        ignore_result(sniff_scan(s));
        rc = sniff_end(s);
    }
    if (rc == 0 && s->in_record) rc = s->fs == F_QUOTED ? ERR_MALFORMED : end_field(s, true);
    if (rc == 0 && s->out.ncols == 0) rc = ERR_MALFORMED; /* no header */
    if (rc == 0) {
        *out = s->out;
        memset(&s->out, 0, sizeof s->out);
    }
    csv_stream_free(s);
    return rc;
}

size_t csv_stream_held(const struct csv_stream *s)
{
    return sizeof *s + s->held;
}

void csv_stream_free(struct csv_stream *s)
{
    if (!s) return;
    csv_free(&s->out);
    free(s->head);
    free(s);
}

int csv_parse(const uint8_t *p, size_t len, struct csv *out)
{
    struct csv_stream *s = NULL;
    memset(out, 0, sizeof *out);
    GUARD(csv_stream_new(&s));
    int rc = csv_stream_feed(s, p, len);
    if (rc < 0) {
        csv_stream_free(s);
        return rc;
    }
    return csv_stream_finish(s, out);
}

void csv_free(struct csv *c)
{
    while (c->arena) {
        struct csv_block *next = c->arena->next;
        free(c->arena);
        c->arena = next;
    }
    free(c->cells);
    free(c->line);
    memset(c, 0, sizeof *c);
}

int csv_col(const struct csv *c, const char *name)
{
    for (size_t k = 0; k < c->ncols; k++)
        if (strcasecmp(c->cells[k], name) == 0) return (int)k;
    return -1;
}

const char *csv_cell(const struct csv *c, size_t r, int k)
{
    if (k < 0 || (size_t)k >= c->ncols || r >= c->nrows) return "";
    return c->cells[(r + 1) * c->ncols + (size_t)k];
}
