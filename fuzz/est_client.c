/* libFuzzer target for the two parsers of the EST client (`certmq pki
 * enroll|reenroll`, src/pki/estclient.c): the --url text and the server's
 * HTTP answer head. The input goes to both, each from an exact-size copy,
 * and what they accept must be consistent. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pki/pki_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *copy = malloc(size ? size : 1);
    if (!copy) return 0;
    if (size) memcpy(copy, data, size);
    struct pki_url u;
    if (pki_url_parse(copy, size, &u) == 0) {
        if (!u.host[0] || !u.port[0] || strlen(u.path) >= sizeof u.path) abort();
        if (u.path[0] && u.path[0] != '/') abort();
    }
    int status = 0;
    const char *body = NULL;
    size_t blen = 0;
    if (pki_http_split(copy, size, &status, &body, &blen) == 0) {
        if (status < 0 || status > 999 || body < copy || body + blen != copy + size) abort();
    }
    free(copy);
    return 0;
}
