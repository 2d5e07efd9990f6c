/* libFuzzer target for the REST API's request-head checks (httpcheck.c):
 * the first line of the input is a raw request target, each further line a
 * "Name: value" header fed to the framing check; an Authorization header
 * also goes through the Basic-credentials parser. Each piece is copied to
 * its own exact-size allocation so reads past it are caught. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/httpcheck.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *dup_exact(const uint8_t *p, size_t n)
{
    char *s = malloc(n ? n : 1);
    if (s && n) memcpy(s, p, n);
    return s;
}

static void header(struct httpcheck_framing *f, const uint8_t *p, size_t n)
{
    const uint8_t *colon = memchr(p, ':', n);
    if (!colon) return;
    size_t nl = (size_t)(colon - p), vl = n - nl - 1;
    char *name = dup_exact(p, nl), *value = dup_exact(colon + 1, vl);
    if (name && value) {
        httpcheck_framing_add(f, name, nl, value, vl);
        if (nl == 13 && !memcmp(name, "Authorization", 13)) {
            struct httpcheck_basic b;
            int rc = httpcheck_basic(value, vl, &b);
            if (rc != 0 && rc != ERR_AUTH && rc != ERR_MALFORMED) abort();
            if (rc == 0 && (strlen(b.password) != b.password_len || strchr(b.tenant, '/'))) abort();
            rc = httpcheck_basic_pair(value, vl, &b);
            if (rc != 0 && rc != ERR_AUTH && rc != ERR_MALFORMED) abort();
            if (rc == 0 && (strlen(b.password) != b.password_len || !b.user[0] || b.tenant[0]))
                abort();
        }
    }
    free(name);
    free(value);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nl = memchr(data, '\n', size);
    size_t tl = nl ? (size_t)(nl - data) : size;
    char *target = dup_exact(data, tl);
    if (!target) return 0;
    int rc = httpcheck_target(target, tl);
    if (rc == 0 && memchr(target, '\0', tl)) abort();
    free(target);
    struct httpcheck_framing f = {0};
    size_t pos = nl ? tl + 1 : size;
    while (pos < size) {
        const uint8_t *end = memchr(data + pos, '\n', size - pos);
        size_t len = end ? (size_t)(end - (data + pos)) : size - pos;
        header(&f, data + pos, len);
        pos += len + 1;
    }
    rc = httpcheck_framing_result(&f);
    if (rc == 0 && ((f.n_length && f.n_encoding) || f.n_encoding > 1)) abort();
    if (rc != 0 && rc != ERR_MALFORMED) abort();
    return 0;
}
