/* Error codes shared by every module: 0 is success, failures are negative
 * values of one enum grouped by category. Text lives in one table (err.c);
 * err_connack() and err_http_status() map a code at the boundary. */
#ifndef CERTMQ_ERR_H
#define CERTMQ_ERR_H

#define MUST_USE __attribute__((warn_unused_result))

enum err {
    ERR_OK = 0,
    /* io */
    ERR_IO = -1,
    ERR_AGAIN = -2,
    ERR_CLOSED = -3,
    /* protocol */
    ERR_PROTO = -20,
    ERR_MALFORMED = -21,
    ERR_PROTO_VERSION = -22,
    ERR_PARTIAL = -23, /* not an error: more bytes are needed */
    /* auth */
    ERR_AUTH = -40,
    ERR_NOT_AUTHORIZED = -41,
    ERR_BAD_CREDENTIALS = -42,
    ERR_CLIENT_ID = -43,
    /* limit */
    ERR_LIMIT = -60,
    ERR_TOO_LARGE = -61,
    ERR_NOMEM = -62,
    ERR_QUEUE_FULL = -63,
    /* input (config, API, CLI) */
    ERR_INVALID = -80,
    ERR_NOT_FOUND = -81,
    ERR_EXISTS = -82,
    ERR_CONFLICT = -83,
    ERR_FORBIDDEN = -84,
    /* internal */
    ERR_INTERNAL = -100,
    ERR_TLS = -101,
    ERR_DB = -102,
    ERR_UNAVAILABLE = -103, /* a service the call needs (the database) is down */
};

/* Short text for a code; never NULL. */
const char *err_str(int code);
/* HTTP status for a code (200 for ERR_OK). */
int err_http_status(int code);
/* Process exit code for the CLI: 0 ok, 1 refused/failed, 2 usage. */
int err_exit_code(int code);

/* Propagate a failure: evaluates expr once, returns its value if negative. */
#define GUARD(expr)                                                                                \
    do {                                                                                           \
        int guard_rc_ = (expr);                                                                    \
        if (guard_rc_ < 0) return guard_rc_;                                                       \
    } while (0)

/* Jump to the function's cleanup label with rc set on failure. */
#define GUARD_GOTO(rc, expr, label)                                                                \
    do {                                                                                           \
        (rc) = (expr);                                                                             \
        if ((rc) < 0) goto label;                                                                  \
    } while (0)

/* Return code from a function when cond is false. */
#define ENSURE(cond, code)                                                                         \
    do {                                                                                           \
        if (!(cond)) return (code);                                                                \
    } while (0)

/* The one sanctioned way to drop a MUST_USE result. */
static inline void ignore_result(int rc)
{
    (void)rc;
}

#endif
