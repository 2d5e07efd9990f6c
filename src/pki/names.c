/* Pure helpers of the pki module: subjectAltName lists, device ids,
 * certificate serials and the lines of openssl's CA database (index.txt).
 * No I/O here; the unit tests drive these directly. */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/bn.h>

#include "core/buf.h"
#include "identity/policy.h"
#include "pki/pki_internal.h"

/* A DNS name as certificates carry it: labels of letters, digits, '-' and
 * '_', an optional leading "*." wildcard, 1-253 bytes. */
static bool dns_name_ok(const char *s, size_t n)
{
    if (n == 0 || n > 253) return false;
    if (n >= 2 && s[0] == '*' && s[1] == '.') {
        s += 2;
        n -= 2;
    }
    size_t label = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '.') {
            if (label == 0) return false;
            label = 0;
            continue;
        }
        if (!isalnum((unsigned char)c) && c != '-' && c != '_') return false;
        if (++label > 63) return false;
    }
    return label > 0;
}

static int san_one(const char *item, size_t n, struct pki_san *out, const char **why)
{
    char tmp[256];
    const char *val = item;
    size_t vlen = n;
    int kind = -1; /* -1: guess from the value */

    if (n >= 4 && strncasecmp(item, "DNS:", 4) == 0) {
        kind = PKI_SAN_DNS;
        val += 4;
        vlen -= 4;
    } else if (n >= 3 && strncasecmp(item, "IP:", 3) == 0) {
        kind = PKI_SAN_IP;
        val += 3;
        vlen -= 3;
    }
    if (vlen == 0 || vlen >= sizeof tmp) {
        *why = "empty or overlong subjectAltName entry";
        return ERR_INVALID;
    }
    memcpy(tmp, val, vlen);
    tmp[vlen] = '\0';
    memset(out, 0, sizeof *out);
    if (kind != PKI_SAN_DNS) {
        if (inet_pton(AF_INET, tmp, out->ip) == 1) {
            out->type = PKI_SAN_IP;
            out->len = 4;
            return 0;
        }
        if (inet_pton(AF_INET6, tmp, out->ip) == 1) {
            out->type = PKI_SAN_IP;
            out->len = 16;
            return 0;
        }
        if (kind == PKI_SAN_IP) {
            *why = "IP: entry is not an IPv4 or IPv6 address";
            return ERR_INVALID;
        }
    }
    if (!dns_name_ok(tmp, vlen)) {
        *why = "DNS: entry is not a valid host name (letters, digits, '-', '.', optional '*.')";
        return ERR_INVALID;
    }
    out->type = PKI_SAN_DNS;
    out->len = vlen;
    memcpy(out->dns, tmp, vlen + 1);
    return 0;
}

int pki_san_parse(const char *spec, struct pki_san *out, size_t max, size_t *n, const char **why)
{
    *n = 0;
    *why = "";
    const char *p = spec;
    for (;;) {
        while (*p == ' ') p++;
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        while (len > 0 && p[len - 1] == ' ') len--;
        if (len > 0) {
            if (*n == max) {
                *why = "too many subjectAltName entries";
                return ERR_INVALID;
            }
            GUARD(san_one(p, len, &out[*n], why));
            (*n)++;
        }
        if (!end) break;
        p = end + 1;
    }
    if (*n == 0) {
        *why = "no subjectAltName entries given";
        return ERR_INVALID;
    }
    return 0;
}

int pki_id_check(const char *id, const char **why)
{
    size_t n = strlen(id);
    if (n == 0) {
        *why = "is empty";
        return ERR_INVALID;
    }
    if (n > PKI_CN_MAX) {
        *why = "is longer than 64 bytes (the X.509 limit for a common name)";
        return ERR_INVALID;
    }
    if (strchr(id, ':')) {
        *why = "contains ':', which the MQTT ClientId d:<CN>:<template> cannot carry; "
               "choose an id without ':'";
        return ERR_INVALID;
    }
    if (strchr(id, '/') || !strcmp(id, ".") || !strcmp(id, "..")) {
        *why = "contains '/' or is '.'/'..' (ids are also file names)";
        return ERR_INVALID;
    }
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)id[i] < 0x20 || id[i] == 0x7f) {
            *why = "contains a control character";
            return ERR_INVALID;
        }
    }
    if (strchr(id, '+') || strchr(id, '#')) {
        *why = "contains '+' or '#', which cannot stand in an MQTT topic level";
        return ERR_INVALID;
    }
    /* The broker's own rule has the last word: nothing is issued that it refuses. */
    if (!ident_cn_acceptable(id)) {
        *why = "is not a common name the broker accepts";
        return ERR_INVALID;
    }
    return 0;
}

const char *pki_id_broker_reason(const char *id)
{
    return ident_cn_acceptable(id) ? "" : ident_reason_str(IDENT_BAD_COMMON_NAME);
}

int pki_serial_parse(const char *s, BIGNUM **out)
{
    char hex[64];
    size_t n = 0;
    *out = NULL;
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) s += 2;
    for (; *s && *s != '\n' && *s != '\r'; s++) {
        if (*s == ':') continue;
        if (!isxdigit((unsigned char)*s)) return ERR_INVALID;
        if (n + 1 >= sizeof hex || n >= 40) return ERR_INVALID;
        hex[n++] = *s;
    }
    if (n == 0) return ERR_INVALID;
    hex[n] = '\0';
    if (!BN_hex2bn(out, hex)) return ERR_NOMEM;
    return 0;
}

int pki_serial_hex(const BIGNUM *bn, char *out, size_t cap)
{
    char *h = BN_bn2hex(bn);
    if (!h) return ERR_NOMEM;
    int rc = 0;
    const char *digits = h[0] == '-' ? h + 1 : h;
    size_t n = strlen(digits);
    bool pad = n % 2 == 1; /* whole bytes, as openssl's serial files */
    if (n + pad + 1 > cap) {
        rc = ERR_TOO_LARGE;
        goto out;
    }
    snprintf(out, cap, "%s%s", pad ? "0" : "", digits);
    if (!strcmp(out, "0")) snprintf(out, cap, "00");
out:
    OPENSSL_free(h);
    return rc;
}

/* Copies the next tab-separated field of r into out (NUL-terminated); a
 * field other than the last must end with a tab. */
static int index_field(struct rd *r, char *out, size_t cap, bool last)
{
    size_t n = 0;
    bool tab = false;
    while (rd_left(r) > 0) {
        uint8_t c;
        GUARD(rd_u8(r, &c));
        if (c == '\n' || c == '\r') break;
        if (c == '\t') {
            if (last) return ERR_MALFORMED;
            tab = true;
            break;
        }
        if (n + 1 >= cap) return ERR_TOO_LARGE;
        out[n++] = (char)c;
    }
    out[n] = '\0';
    return last || tab ? 0 : ERR_MALFORMED;
}

int pki_index_parse_line(const char *line, size_t len, struct pki_index_entry *e)
{
    struct rd r = rd_make(line, len);
    char status[4];
    memset(e, 0, sizeof *e);
    GUARD(index_field(&r, status, sizeof status, false));
    GUARD(index_field(&r, e->expiry, sizeof e->expiry, false));
    GUARD(index_field(&r, e->revoked, sizeof e->revoked, false));
    GUARD(index_field(&r, e->serial, sizeof e->serial, false));
    GUARD(index_field(&r, e->file, sizeof e->file, false));
    GUARD(index_field(&r, e->subject, sizeof e->subject, true));
    ENSURE(strlen(status) == 1 && strchr("VRE", status[0]), ERR_MALFORMED);
    ENSURE(strlen(e->expiry) >= 13 && e->serial[0] != '\0', ERR_MALFORMED);
    ENSURE((status[0] == 'R') == (e->revoked[0] != '\0'), ERR_MALFORMED);
    e->status = status[0];
    return 0;
}

int pki_index_format_line(const struct pki_index_entry *e, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%c\t%s\t%s\t%s\t%s\t%s\n", e->status, e->expiry, e->revoked,
                     e->serial, e->file[0] ? e->file : "unknown", e->subject);
    ENSURE(n > 0 && (size_t)n < cap, ERR_TOO_LARGE);
    return n;
}

static const char *const reasons[] = {
    "unspecified",   "keyCompromise",        "CACompromise",    "affiliationChanged",
    "superseded",    "cessationOfOperation", "certificateHold", NULL /* 7 unused */,
    "removeFromCRL", "privilegeWithdrawn",   "AACompromise",
};

int pki_reason_code(const char *name)
{
    for (int i = 0; i < (int)(sizeof reasons / sizeof reasons[0]); i++)
        if (reasons[i] && !strcasecmp(reasons[i], name)) return i;
    return -1;
}

const char *pki_reason_name(int code)
{
    if (code < 0 || code >= (int)(sizeof reasons / sizeof reasons[0]) || !reasons[code])
        return "unspecified";
    return reasons[code];
}
