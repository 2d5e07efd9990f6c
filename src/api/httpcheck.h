/* Pure checks of an HTTP request's head, made before anything reads its
 * body: message framing (RFC 9112 section 6.3), NUL bytes in the raw request
 * target, and the Basic-auth credentials. No sockets or state: fuzzed by
 * fuzz/http_headers.c. */
#ifndef CERTMQ_API_HTTPCHECK_H
#define CERTMQ_API_HTTPCHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

/* Framing collected header by header; zero-initialise, then feed every
 * request header to httpcheck_framing_add. */
struct httpcheck_framing {
    unsigned n_length;   /* Content-Length headers seen */
    uint64_t length;     /* their value (when valid and all equal) */
    bool length_bad;     /* not a decimal number, or two different values */
    unsigned n_encoding; /* Transfer-Encoding headers seen */
    bool encoding_bad;   /* anything but one "chunked" */
};

void httpcheck_framing_add(struct httpcheck_framing *f, const char *name, size_t name_len,
                           const char *value, size_t value_len);
/* 0 when the body's length is unambiguous: at most one Content-Length value,
 * or Transfer-Encoding: chunked alone. ERR_MALFORMED otherwise (the request
 * must be refused and the connection closed). */
MUST_USE int httpcheck_framing_result(const struct httpcheck_framing *f);

/* ERR_MALFORMED when the raw request target (path and query, before
 * percent-decoding) holds a NUL byte or its encoding %00. */
MUST_USE int httpcheck_target(const char *target, size_t len);

struct httpcheck_basic {
    char tenant[128];
    char user[256];
    char password[512];
    size_t password_len;
};

/* Parses the value of "Authorization: Basic base64(tenant/user:password)".
 * ERR_MALFORMED when the decoded credentials hold a NUL byte, ERR_AUTH when
 * they are not base64 of tenant/user:password or a part does not fit. The
 * caller wipes out->password after use. */
MUST_USE int httpcheck_basic(const char *value, size_t len, struct httpcheck_basic *out);
/* The same for "Basic base64(user:password)" without a tenant (EST's
 * deviceId:token): out->tenant stays empty, the user is what precedes the
 * first ':' and must not be empty. */
MUST_USE int httpcheck_basic_pair(const char *value, size_t len, struct httpcheck_basic *out);

#endif
