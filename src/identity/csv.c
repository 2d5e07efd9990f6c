/* CSV parsing for bulk registration (see csv.h). Reads through struct rd;
 * every cell is copied into one arena sized from the input (text plus one
 * NUL per field can never exceed twice the input), so no cell can overrun. */
#include "identity/csv.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/buf.h"

/* Counts candidate separators on the first line, outside quotes. */
static char detect_sep(const uint8_t *p, size_t len)
{
    size_t tab = 0, semi = 0, comma = 0;
    bool quoted = false;
    for (size_t i = 0; i < len; i++) {
        uint8_t c = p[i];
        if (c == '"')
            quoted = !quoted;
        else if (quoted)
            continue;
        else if (c == '\n' || c == '\r')
            break;
        else if (c == '\t')
            tab++;
        else if (c == ';')
            semi++;
        else if (c == ',')
            comma++;
    }
    if (tab && tab >= semi && tab >= comma) return '\t';
    if (semi && semi >= comma) return ';';
    return ',';
}

struct parser {
    struct rd r;
    char sep;
    char *arena;
    size_t used;
    size_t cap;
};

/* Reads one field into the arena; *end_of_record is set at a line end or
 * the end of input. Returns the field text. */
static int read_field(struct parser *ps, char **text, bool *end_of_record)
{
    char *start = ps->arena + ps->used;
    size_t n = 0;
    uint8_t c = 0;
    bool quoted = false;
    *end_of_record = false;
    if (rd_left(&ps->r) > 0 && ps->r.p[ps->r.pos] == '"') {
        quoted = true;
        ps->r.pos++;
    }
    for (;;) {
        if (rd_left(&ps->r) == 0) {
            if (quoted) return ERR_MALFORMED; /* unterminated quote */
            *end_of_record = true;
            break;
        }
        GUARD(rd_u8(&ps->r, &c));
        if (quoted) {
            if (c == '"') {
                if (rd_left(&ps->r) > 0 && ps->r.p[ps->r.pos] == '"') {
                    ps->r.pos++;
                } else {
                    quoted = false; /* closing quote; anything after is kept */
                    continue;
                }
            }
        } else if ((char)c == ps->sep) {
            break;
        } else if (c == '\n' || c == '\r') {
            if (c == '\r' && rd_left(&ps->r) > 0 && ps->r.p[ps->r.pos] == '\n') ps->r.pos++;
            *end_of_record = true;
            break;
        }
        if (n >= CSV_MAX_FIELD) return ERR_MALFORMED;
        ENSURE(ps->used + n + 1 < ps->cap, ERR_INTERNAL);
        start[n++] = (char)c;
    }
    start[n] = '\0';
    ps->used += n + 1;
    *text = start;
    return 0;
}

/* Trims spaces (and tabs unless tab separates) around an unquoted field. */
static char *trim_field(char *s, char sep)
{
    while (*s == ' ' || (*s == '\t' && sep != '\t')) s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || (s[n - 1] == '\t' && sep != '\t'))) s[--n] = '\0';
    return s;
}

/* Appends fields as cells row `row` (0 is the header). */
static int push_row(struct csv *c, size_t *cap_rows, size_t row, char **fields, size_t nf,
                    size_t line)
{
    if (row + 1 > *cap_rows) {
        size_t cap = *cap_rows ? *cap_rows * 2 : 64;
        char **cells = realloc(c->cells, cap * c->ncols * sizeof *cells);
        if (!cells) return ERR_NOMEM;
        c->cells = cells;
        size_t *lines = realloc(c->line, cap * sizeof *lines);
        if (!lines) return ERR_NOMEM;
        c->line = lines;
        *cap_rows = cap;
    }
    static char empty[] = "";
    for (size_t k = 0; k < c->ncols; k++) c->cells[row * c->ncols + k] = k < nf ? fields[k] : empty;
    c->line[row] = line;
    return 0;
}

int csv_parse(const uint8_t *p, size_t len, struct csv *out)
{
    int rc = 0;
    char *fields[CSV_MAX_COLS];
    size_t cap_rows = 0, line = 1;
    struct parser ps;
    memset(out, 0, sizeof *out);
    if (len >= 3 && p[0] == 0xEF && p[1] == 0xBB && p[2] == 0xBF) {
        p += 3;
        len -= 3;
    }
    ENSURE(len <= (SIZE_MAX - 2) / 2, ERR_TOO_LARGE);
    ps.r = rd_make(p, len);
    ps.sep = detect_sep(p, len);
    ps.cap = 2 * len + 2;
    ps.used = 0;
    ps.arena = malloc(ps.cap);
    ENSURE(ps.arena, ERR_NOMEM);
    out->arena = ps.arena;
    out->sep = ps.sep;
    while (rd_left(&ps.r) > 0) {
        size_t nf = 0, start_line = line;
        bool eor = false, blank = true;
        while (!eor) {
            char *f = NULL;
            size_t before = ps.r.pos;
            bool starts_quoted = rd_left(&ps.r) > 0 && ps.r.p[ps.r.pos] == '"';
            GUARD_GOTO(rc, read_field(&ps, &f, &eor), out);
            for (size_t i = before; i < ps.r.pos; i++) {
                bool lone_cr = ps.r.p[i] == '\r' && (i + 1 >= ps.r.len || ps.r.p[i + 1] != '\n');
                if (ps.r.p[i] == '\n' || lone_cr) line++;
            }
            if (!starts_quoted) f = trim_field(f, ps.sep);
            if (starts_quoted || *f || !eor || nf) blank = false;
            if (nf == CSV_MAX_COLS) {
                rc = ERR_MALFORMED;
                goto out;
            }
            fields[nf++] = f;
        }
        if (blank) continue;
        if (out->ncols == 0) {
            out->ncols = nf;
            GUARD_GOTO(rc, push_row(out, &cap_rows, 0, fields, nf, start_line), out);
            continue;
        }
        if (nf > out->ncols) {
            rc = ERR_MALFORMED;
            goto out;
        }
        GUARD_GOTO(rc, push_row(out, &cap_rows, out->nrows + 1, fields, nf, start_line), out);
        out->nrows++;
    }
    if (out->ncols == 0) rc = ERR_MALFORMED; /* no header */
out:
    if (rc < 0) csv_free(out);
    return rc;
}

void csv_free(struct csv *c)
{
    free(c->cells);
    free(c->line);
    free(c->arena);
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
