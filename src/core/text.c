/* Untrusted text checks and escaping (see text.h). One decoder step,
 * utf8_next(), is the only place that reads a multi-byte sequence. */
#include "core/text.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Length (1-4) of the well-formed sequence at p (len > 0 bytes left) and
 * its code point in *cp, or 0 when the bytes there are not UTF-8. */
static size_t utf8_next(const unsigned char *p, size_t len, uint32_t *cp)
{
    unsigned char c = p[0];
    size_t n;
    uint32_t v, min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2, v = c & 0x1Fu, min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3, v = c & 0x0Fu, min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4, v = c & 0x07u, min = 0x10000;
    } else {
        return 0; /* continuation byte, C0/C1 overlong lead, or above F4 */
    }
    if (len < n) return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80) return 0;
        v = (v << 6) | (p[i] & 0x3Fu);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    *cp = v;
    return n;
}

static bool is_control(uint32_t cp)
{
    return cp < 0x20 || (cp >= 0x7F && cp <= 0x9F);
}

bool text_utf8_valid(const char *p, size_t len)
{
    const unsigned char *u = (const unsigned char *)p;
    uint32_t cp;
    for (size_t i = 0; i < len;) {
        size_t n = utf8_next(u + i, len - i, &cp);
        if (!n) return false;
        i += n;
    }
    return true;
}

bool text_printable(const char *s)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t len = strlen(s);
    uint32_t cp;
    for (size_t i = 0; i < len;) {
        size_t n = utf8_next(u + i, len - i, &cp);
        if (!n || is_control(cp)) return false;
        i += n;
    }
    return true;
}

/* The escape for one control code point or stray byte into e[8]. */
static size_t escape_one(uint32_t v, bool stray_byte, char *e)
{
    switch (stray_byte ? 0x100 : v) {
    case '\n': return (size_t)snprintf(e, 8, "\\n");
    case '\r': return (size_t)snprintf(e, 8, "\\r");
    case '\t': return (size_t)snprintf(e, 8, "\\t");
    default: break;
    }
    if (!stray_byte && v >= 0x80) return (size_t)snprintf(e, 8, "\\u%04x", (unsigned)v);
    return (size_t)snprintf(e, 8, "\\x%02x", (unsigned)v);
}

size_t text_escape(const char *in, size_t len, char *out, size_t cap)
{
    const unsigned char *u = (const unsigned char *)in;
    size_t w = 0;
    if (cap == 0) return 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp = 0;
        char e[8];
        const char *src = e;
        size_t n = utf8_next(u + i, len - i, &cp), elen;
        if (n == 0) {
            elen = escape_one(u[i], true, e);
            n = 1;
        } else if (is_control(cp)) {
            elen = escape_one(cp, false, e);
        } else {
            src = in + i;
            elen = n;
        }
        if (w + elen >= cap) break;
        memcpy(out + w, src, elen);
        w += elen;
        i += n;
    }
    out[w] = '\0';
    return w;
}

char *text_escape_dup(const char *s)
{
    size_t len = strlen(s);
    if (len > (SIZE_MAX - 1) / 4) return NULL;
    size_t cap = len * 4 + 1; /* at most "\xNN" per byte ("\u0085" is 6 for 2) */
    char *out = malloc(cap);
    if (out) text_escape(s, len, out, cap);
    return out;
}

void text_url_redact(const char *in, size_t len, char *out, size_t cap)
{
    size_t o = 0;
    if (!cap) return;
    for (size_t i = 0; i < len && o + 1 < cap; i++) {
        out[o++] = in[i];
        if (i < 2 || in[i] != '/' || in[i - 1] != '/' || in[i - 2] != ':') continue;
        size_t at = i + 1; /* after "://": user information ends at '@' */
        while (at < len && in[at] != '@' && in[at] != '/' && in[at] != ',') at++;
        if (at >= len || in[at] != '@') continue;
        for (const char *m = "***"; *m && o + 1 < cap; m++) out[o++] = *m;
        i = at - 1;
    }
    out[o] = '\0';
}
