/* Pure request-head checks for the REST API (see httpcheck.h): they decide
 * on the headers alone whether a request may be read at all. */
#include "api/httpcheck.h"

#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

static bool name_is(const char *name, size_t len, const char *want)
{
    return len == strlen(want) && strncasecmp(name, want, len) == 0;
}

static void trim(const char **v, size_t *len)
{
    while (*len && (**v == ' ' || **v == '\t')) {
        (*v)++;
        (*len)--;
    }
    while (*len && ((*v)[*len - 1] == ' ' || (*v)[*len - 1] == '\t')) (*len)--;
}

/* A Content-Length value: 1-19 decimal digits, nothing else. */
static bool parse_length(const char *v, size_t len, uint64_t *out)
{
    if (len == 0 || len > 19) return false;
    uint64_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (v[i] < '0' || v[i] > '9') return false;
        n = n * 10 + (uint64_t)(v[i] - '0');
    }
    *out = n;
    return true;
}

void httpcheck_framing_add(struct httpcheck_framing *f, const char *name, size_t name_len,
                           const char *value, size_t value_len)
{
    if (!name || !value) return;
    trim(&value, &value_len);
    if (name_is(name, name_len, "Content-Length")) {
        uint64_t n = 0;
        if (!parse_length(value, value_len, &n) || (f->n_length && n != f->length))
            f->length_bad = true;
        f->length = n;
        if (f->n_length < UINT32_MAX) f->n_length++;
    } else if (name_is(name, name_len, "Transfer-Encoding")) {
        if (f->n_encoding || !name_is(value, value_len, "chunked")) f->encoding_bad = true;
        if (f->n_encoding < UINT32_MAX) f->n_encoding++;
    }
}

int httpcheck_framing_result(const struct httpcheck_framing *f)
{
    ENSURE(!f->length_bad && !f->encoding_bad, ERR_MALFORMED);
    ENSURE(!(f->n_length && f->n_encoding), ERR_MALFORMED);
    return 0;
}

int httpcheck_target(const char *target, size_t len)
{
    ENSURE(target, ERR_MALFORMED);
    ENSURE(!memchr(target, '\0', len), ERR_MALFORMED);
    for (size_t i = 0; i + 2 < len; i++)
        if (target[i] == '%' && target[i + 1] == '0' && target[i + 2] == '0') return ERR_MALFORMED;
    return 0;
}

/* Standard base64 with padding into out (cap bytes); the length or -1. */
static int b64_decode(const char *in, size_t len, unsigned char *out, size_t cap)
{
    if (len == 0 || len % 4 != 0 || len / 4 * 3 > cap || len > 4096) return -1;
    int n = EVP_DecodeBlock(out, (const unsigned char *)in, (int)len);
    if (n < 0) return -1;
    if (in[len - 1] == '=') n--;
    if (in[len - 2] == '=') n--;
    return n;
}

/* Splits dec (n bytes, no NUL) as tenant/user:password into out. */
static int split_basic(const char *dec, size_t n, struct httpcheck_basic *out)
{
    const char *colon = memchr(dec, ':', n);
    ENSURE(colon, ERR_AUTH);
    size_t head = (size_t)(colon - dec);
    const char *slash = memchr(dec, '/', head);
    ENSURE(slash, ERR_AUTH);
    size_t tl = (size_t)(slash - dec), ul = head - tl - 1, pl = n - head - 1;
    ENSURE(tl < sizeof out->tenant && ul < sizeof out->user && pl < sizeof out->password, ERR_AUTH);
    memcpy(out->tenant, dec, tl);
    out->tenant[tl] = '\0';
    memcpy(out->user, slash + 1, ul);
    out->user[ul] = '\0';
    memcpy(out->password, colon + 1, pl);
    out->password[pl] = '\0';
    out->password_len = pl;
    return 0;
}

/* Splits dec (n bytes, no NUL) as user:password (no tenant) into out. */
static int split_pair(const char *dec, size_t n, struct httpcheck_basic *out)
{
    const char *colon = memchr(dec, ':', n);
    ENSURE(colon && colon > dec, ERR_AUTH);
    size_t ul = (size_t)(colon - dec), pl = n - ul - 1;
    ENSURE(ul < sizeof out->user && pl < sizeof out->password, ERR_AUTH);
    memcpy(out->user, dec, ul);
    out->user[ul] = '\0';
    memcpy(out->password, colon + 1, pl);
    out->password[pl] = '\0';
    out->password_len = pl;
    return 0;
}

static int basic_parse(const char *value, size_t len, struct httpcheck_basic *out, bool pair)
{
    unsigned char dec[1024];
    memset(out, 0, sizeof *out);
    ENSURE(value && len >= 6 && strncasecmp(value, "Basic ", 6) == 0, ERR_AUTH);
    value += 6;
    len -= 6;
    trim(&value, &len);
    int n = b64_decode(value, len, dec, sizeof dec);
    int rc = ERR_AUTH;
    if (n <= 0) goto out;
    if (memchr(dec, '\0', (size_t)n))
        rc = ERR_MALFORMED;
    else
        rc = pair ? split_pair((char *)dec, (size_t)n, out)
                  : split_basic((char *)dec, (size_t)n, out);
out:
    OPENSSL_cleanse(dec, sizeof dec);
    return rc;
}

int httpcheck_basic(const char *value, size_t len, struct httpcheck_basic *out)
{
    return basic_parse(value, len, out, false);
}

int httpcheck_basic_pair(const char *value, size_t len, struct httpcheck_basic *out)
{
    return basic_parse(value, len, out, true);
}
