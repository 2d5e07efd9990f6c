/* The CSV file of an upload (bulk registration) parsed while its body
 * arrives: a multipart body's part named "file" (multipart.c), or the whole
 * body, goes straight into a CSV stream (identity/csv.c), so the body is
 * never held; what is held (the rows so far and the readers' windows) is
 * reported for the shared body budget. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/handlers.h"
#include "api/multipart.h"
#include "identity/csv.h"

struct api_csv_upload {
    struct csv_stream *csv;
    struct multipart *mp; /* NULL when the body is the file itself */
    int mp_err;           /* the multipart reader's first error */
    int csv_err;          /* the CSV parser's first error */
};

/* The multipart reader's sink: a CSV error stops the reader and is kept. */
static int feed_csv(void *arg, const uint8_t *p, size_t n)
{
    struct api_csv_upload *u = arg;
    int rc = csv_stream_feed(u->csv, p, n);
    if (rc < 0) u->csv_err = rc;
    return rc;
}

int api_csv_upload_new(const struct api_req *r, struct api_csv_upload **out)
{
    const char *ct = api_header(r, MHD_HTTP_HEADER_CONTENT_TYPE);
    struct api_csv_upload *u = calloc(1, sizeof *u);
    ENSURE(u, ERR_NOMEM);
    int rc = csv_stream_new(&u->csv);
    if (rc == 0 && ct && strncasecmp(ct, "multipart/", 10) == 0) {
        rc = multipart_new(ct, feed_csv, u, &u->mp);
        if (rc == ERR_INVALID) { /* no usable boundary: refused when the body has come */
            u->mp_err = rc;
            rc = 0;
        }
    }
    if (rc < 0) {
        api_csv_upload_free(u);
        return rc;
    }
    *out = u;
    return 0;
}

void api_csv_upload_feed(struct api_csv_upload *u, const char *p, size_t n)
{
    const uint8_t *b = (const uint8_t *)p;
    if (u->mp_err || u->csv_err) return; /* the answer is known: drop the rest */
    if (u->mp) {
        int rc = multipart_feed(u->mp, b, n);
        if (rc < 0 && !u->csv_err) u->mp_err = rc;
    } else {
        u->csv_err = csv_stream_feed(u->csv, b, n);
    }
}

size_t api_csv_upload_held(const struct api_csv_upload *u)
{
    return sizeof *u + csv_stream_held(u->csv) + (u->mp ? multipart_held(u->mp) : 0);
}

int api_csv_upload_finish(struct api_csv_upload *u, struct csv *out)
{
    int rc = u->csv_err ? u->csv_err : u->mp_err;
    memset(out, 0, sizeof *out);
    if (rc == 0 && u->mp) rc = multipart_finish(u->mp);
    if (rc == 0) {
        rc = csv_stream_finish(u->csv, out); /* frees the stream */
        u->csv = NULL;
    }
    api_csv_upload_free(u);
    return rc;
}

void api_csv_upload_free(struct api_csv_upload *u)
{
    if (!u) return;
    csv_stream_free(u->csv);
    multipart_free(u->mp);
    free(u);
}
