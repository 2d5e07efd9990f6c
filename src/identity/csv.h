/* The bulk-registration CSV parser: pure, bytes in, table out, fed whole or
 * in pieces as they arrive (the table is the same however the input is cut).
 * The separator (tab, ';' or ',') is detected from the header row; fields
 * may be quoted with "" as an escaped quote; CRLF or LF line ends; blank
 * lines are skipped and a UTF-8 byte order mark is ignored. */
#ifndef CERTMQ_IDENTITY_CSV_H
#define CERTMQ_IDENTITY_CSV_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

#define CSV_MAX_COLS  64
#define CSV_MAX_FIELD 4096
/* The separator is counted on the first line's first CSV_SNIFF_MAX bytes:
 * a stream holds at most that much before it parses rows. */
#define CSV_SNIFF_MAX 65536

struct csv_block;

struct csv {
    char sep;
    size_t ncols;            /* header fields */
    size_t nrows;            /* data rows, header excluded */
    char **cells;            /* (nrows + 1) * ncols, row 0 is the header; never NULL */
    size_t *line;            /* source line number of each row (row 0 = header) */
    struct csv_block *arena; /* owns every cell's text */
};

/* Parses len bytes. On success fills out (release with csv_free). Rows
 * with fewer fields than the header get "" for the rest; extra fields are
 * an error (ERR_MALFORMED), as are an unterminated quote, an empty
 * header, more than CSV_MAX_COLS columns or a field over CSV_MAX_FIELD. */
MUST_USE int csv_parse(const uint8_t *p, size_t len, struct csv *out);
void csv_free(struct csv *c);
/* Column index of a header name (case-insensitive, trimmed), or -1. */
int csv_col(const struct csv *c, const char *name);
/* Cell text of data row r (0-based) and column k; "" when k < 0. */
const char *csv_cell(const struct csv *c, size_t r, int k);

/* The same parser fed piece by piece: it keeps the rows parsed so far and
 * at most CSV_SNIFF_MAX bytes plus one field of the input, never the input
 * itself. csv_stream_feed returns the first error again on every later
 * call; csv_stream_finish ends the input, fills out as csv_parse would
 * and frees s either way. */
struct csv_stream;
MUST_USE int csv_stream_new(struct csv_stream **out);
MUST_USE int csv_stream_feed(struct csv_stream *s, const uint8_t *p, size_t n);
MUST_USE int csv_stream_finish(struct csv_stream *s, struct csv *out);
/* Bytes of memory s holds now (its rows, their text and its window). */
size_t csv_stream_held(const struct csv_stream *s);
void csv_stream_free(struct csv_stream *s);

#endif
