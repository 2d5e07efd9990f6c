/* A multipart/form-data body read as it arrives: the data of its first part
 * named "file" goes to a sink piece by piece, and only a part's headers and
 * a partly matched delimiter are held. Pure (no sockets, no libmicrohttpd):
 * fuzzed by fuzz/multipart.c, which cuts the same body in random pieces. */
#ifndef CERTMQ_API_MULTIPART_H
#define CERTMQ_API_MULTIPART_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

#define MULTIPART_BOUNDARY_MAX 199
#define MULTIPART_HEADER_MAX   8192 /* one part's header lines together */

/* Receives the file part's data in order; a negative return stops the
 * reader and is returned by every later call. */
typedef int (*multipart_sink)(void *arg, const uint8_t *p, size_t n);

struct multipart;

/* A reader for a body of content_type (its boundary= parameter, quoted or
 * not, 1 to MULTIPART_BOUNDARY_MAX bytes; else ERR_INVALID). */
MUST_USE int multipart_new(const char *content_type, multipart_sink sink, void *arg,
                           struct multipart **out);
MUST_USE int multipart_feed(struct multipart *m, const uint8_t *p, size_t n);
/* The body has ended: 0 when a part named "file" was read to its closing
 * delimiter, ERR_INVALID when none was (or the sink's error). */
MUST_USE int multipart_finish(struct multipart *m);
/* Bytes of memory m holds (fixed: its windows do not grow). */
size_t multipart_held(const struct multipart *m);
void multipart_free(struct multipart *m);

#endif
