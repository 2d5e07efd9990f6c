/* The error table: one line of text and an HTTP status per code. */
#include "core/err.h"

#include <stddef.h>

struct err_info {
    int code;
    int http;
    const char *text;
};

static const struct err_info table[] = {
    {ERR_OK, 200, "ok"},
    {ERR_IO, 500, "i/o error"},
    {ERR_AGAIN, 503, "try again"},
    {ERR_CLOSED, 500, "connection closed"},
    {ERR_PROTO, 400, "protocol error"},
    {ERR_MALFORMED, 400, "malformed packet"},
    {ERR_PROTO_VERSION, 400, "unsupported protocol version"},
    {ERR_PARTIAL, 400, "incomplete input"},
    {ERR_AUTH, 401, "authentication failed"},
    {ERR_NOT_AUTHORIZED, 403, "not authorized"},
    {ERR_BAD_CREDENTIALS, 401, "bad user name or password"},
    {ERR_CLIENT_ID, 400, "client identifier rejected"},
    {ERR_LIMIT, 413, "limit exceeded"},
    {ERR_TOO_LARGE, 413, "too large"},
    {ERR_NOMEM, 500, "out of memory"},
    {ERR_QUEUE_FULL, 503, "queue full"},
    {ERR_INVALID, 422, "invalid input"},
    {ERR_NOT_FOUND, 404, "not found"},
    {ERR_EXISTS, 409, "already exists"},
    {ERR_CONFLICT, 409, "conflict"},
    {ERR_FORBIDDEN, 403, "forbidden"},
    {ERR_INTERNAL, 500, "internal error"},
    {ERR_TLS, 500, "tls error"},
    {ERR_DB, 500, "database error"},
    {ERR_UNAVAILABLE, 503, "the database is unavailable; try again"},
};

static const struct err_info *lookup(int code)
{
    for (unsigned i = 0; i < sizeof table / sizeof table[0]; i++)
        if (table[i].code == code) return &table[i];
    return NULL;
}

/* An unknown code reads as internal. */
static const struct err_info *find(int code)
{
    const struct err_info *e = lookup(code);
    return e ? e : lookup(ERR_INTERNAL);
}

const char *err_str(int code)
{
    return find(code)->text;
}

int err_http_status(int code)
{
    return find(code)->http;
}

int err_exit_code(int code)
{
    if (code == ERR_OK) return 0;
    if (code == ERR_INVALID) return 2;
    return 1;
}
