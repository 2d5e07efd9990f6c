/* MQTT topic <-> NATS subject mapping (see subject.h). A token keeps the
 * printable ASCII bytes that mean nothing to NATS; every other byte ('.',
 * '*', '>', '%', space, control and non-ASCII bytes) is written "%XX"
 * (upper-case hex), and an empty level, which NATS forbids, is "%" alone.
 * Decoding accepts exactly what encoding writes, so the map is one-to-one. */
#include "cluster/subject.h"

#include <string.h>

#include "broker/topic.h"

static bool byte_plain(unsigned char c)
{
    return c > 0x20 && c < 0x7f && c != '.' && c != '*' && c != '>' && c != '%';
}

struct out {
    char *p;
    size_t cap, len;
    bool full;
};

static void put(struct out *o, const char *s, size_t n)
{
    if (o->full || o->cap - o->len <= n) { /* room for the NUL too */
        o->full = true;
        return;
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
    o->p[o->len] = '\0';
}

/* Writes one level (or the tenant) as a token. */
static void put_token(struct out *o, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    if (n == 0) put(o, "%", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (byte_plain(c)) {
            put(o, (const char *)&c, 1);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            put(o, e, 3);
        }
    }
}

static int finish(const struct out *o, size_t *out_len)
{
    if (o->full) return ERR_LIMIT;
    if (out_len) *out_len = o->len;
    return 0;
}

/* "mq.<tenant>" then one token per level of t; wildcards mapped when
 * filter is set. */
static int map_levels(const char *tenant, const char *t, size_t len, bool filter, char *out,
                      size_t cap, size_t *out_len)
{
    ENSURE(cap > 0, ERR_LIMIT);
    struct out o = {out, cap, 0, false};
    out[0] = '\0';
    put(&o, SUBJECT_PREFIX ".", sizeof SUBJECT_PREFIX);
    put_token(&o, tenant, strlen(tenant));
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && t[i] != '/') continue;
        const char *lv = t + start;
        size_t n = i - start;
        put(&o, ".", 1);
        if (filter && n == 1 && lv[0] == '+')
            put(&o, "*", 1);
        else if (filter && n == 1 && lv[0] == '#')
            put(&o, ">", 1);
        else
            put_token(&o, lv, n);
        start = i + 1;
    }
    return finish(&o, out_len);
}

int subject_from_topic(const char *tenant, const char *topic, size_t len, char *out, size_t cap,
                       size_t *out_len)
{
    ENSURE(topic_name_valid(topic, len), ERR_INVALID);
    return map_levels(tenant, topic, len, false, out, cap, out_len);
}

int subject_from_filter(const char *tenant, const char *filter, size_t len, char *out, size_t cap,
                        size_t *out_len, bool *with_parent)
{
    ENSURE(topic_filter_valid(filter, len), ERR_INVALID);
    *with_parent = len >= 2 && filter[len - 1] == '#' && filter[len - 2] == '/';
    return map_levels(tenant, filter, len, true, out, cap, out_len);
}

static int hex_val(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decodes one token into o; ERR_INVALID unless it is canonical. A topic
 * level never holds '/' (the encoder splits there); a tenant may. */
static int get_token(const char *s, size_t n, bool level, struct out *o)
{
    ENSURE(n > 0, ERR_INVALID);
    if (n == 1 && s[0] == '%') return 0; /* the empty level */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c != '%') {
            ENSURE(byte_plain(c) && !(level && c == '/'), ERR_INVALID);
            put(o, (const char *)&c, 1);
            continue;
        }
        ENSURE(n - i >= 3, ERR_INVALID);
        int hi = hex_val(s[i + 1]), lo = hex_val(s[i + 2]);
        ENSURE(hi >= 0 && lo >= 0, ERR_INVALID);
        char d = (char)(hi << 4 | lo);
        ENSURE(!byte_plain((unsigned char)d), ERR_INVALID);
        put(o, &d, 1);
        i += 2;
    }
    return 0;
}

int subject_to_topic(const char *subj, size_t len, char *tenant, size_t tcap, char *topic,
                     size_t cap, size_t *topic_len)
{
    size_t plen = sizeof SUBJECT_PREFIX; /* "mq." */
    ENSURE(tcap > 0 && cap > 0, ERR_LIMIT);
    ENSURE(len > plen && !memcmp(subj, SUBJECT_PREFIX ".", plen), ERR_INVALID);
    const char *p = subj + plen, *end = subj + len;
    const char *dot = memchr(p, '.', (size_t)(end - p));
    ENSURE(dot, ERR_INVALID); /* a tenant and at least one level */
    struct out t = {tenant, tcap, 0, false}, o = {topic, cap, 0, false};
    tenant[0] = topic[0] = '\0';
    GUARD(get_token(p, (size_t)(dot - p), false, &t));
    ENSURE(!t.full && strlen(tenant) == t.len, ERR_INVALID); /* no NUL inside a tenant */
    for (p = dot + 1;; p = dot + 1) {
        dot = memchr(p, '.', (size_t)(end - p));
        const char *tok_end = dot ? dot : end;
        GUARD(get_token(p, (size_t)(tok_end - p), true, &o));
        if (!dot) break;
        put(&o, "/", 1);
    }
    GUARD(finish(&o, topic_len));
    ENSURE(topic_name_valid(topic, o.len), ERR_INVALID);
    return 0;
}

int subject_queue(const char *tenant, const char *group, size_t glen, char *out, size_t cap)
{
    ENSURE(cap > 0, ERR_LIMIT);
    struct out o = {out, cap, 0, false};
    out[0] = '\0';
    put(&o, SUBJECT_PREFIX "q.", sizeof SUBJECT_PREFIX + 1);
    put_token(&o, tenant, strlen(tenant));
    put(&o, ".", 1);
    put_token(&o, group, glen);
    return finish(&o, NULL);
}
