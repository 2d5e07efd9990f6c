/* Topic authorization rules (see acl.h): the acl_file parser, compiling the
 * rules that apply to one client, and the checks. A SUBSCRIBE is decided by
 * the first rule whose filter overlaps the subscribed one: when that rule
 * covers the whole filter, its answer holds for every topic the filter can
 * match; otherwise each delivered message is checked. */
#include "identity/acl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/topic.h"
#include "store/store.h"

#define ACL_FILE_MAX (16u * 1024u * 1024u)

struct crule {
    bool allow;
    bool all; /* matches every topic, '$' ones too (a pattern that cannot apply) */
    uint8_t actions;
    uint16_t len;
    char *filter;
};

#define LAST_TOPIC_MAX 64 /* publish topics up to this long are remembered */

struct acl_matcher {
    bool default_allow;
    /* The last PUBLISH topic decided, and the answer: a client publishes to
     * the same few topics again and again. */
    bool last_allow;
    uint8_t last_len; /* 0: none */
    char last[LAST_TOPIC_MAX];
    size_t n;
    struct crule r[];
};

/* ---- the acl_file ---- */

void acl_rules_free(struct acl_rules *r)
{
    for (size_t i = 0; i < r->n; i++) {
        free(r->v[i].who);
        free(r->v[i].filter);
    }
    free(r->v);
    r->v = NULL;
    r->n = 0;
}

int acl_rules_add(struct acl_rules *r, const struct acl_rule *rule)
{
    struct acl_rule copy = *rule;
    copy.filter = strdup(rule->filter);
    copy.who = rule->who ? strdup(rule->who) : NULL;
    if (!copy.filter || (rule->who && !copy.who)) {
        free(copy.filter);
        free(copy.who);
        return ERR_NOMEM;
    }
    struct acl_rule *v = realloc(r->v, (r->n + 1) * sizeof *v);
    if (!v) {
        free(copy.filter);
        free(copy.who);
        return ERR_NOMEM;
    }
    r->v = v;
    r->v[r->n++] = copy;
    return 0;
}

static int push_rule(struct acl_rules *r, const struct acl_rule *rule)
{
    struct acl_rule *v = realloc(r->v, (r->n + 1) * sizeof *v);
    if (!v) return ERR_NOMEM;
    r->v = v;
    r->v[r->n++] = *rule;
    return 0;
}

/* "read", "write", "readwrite" or "deny" into rule; 0 or ERR_INVALID. */
static int parse_access(const char *word, struct acl_rule *rule)
{
    static const struct {
        const char *name;
        bool allow;
        uint8_t actions;
    } kinds[] = {{"read", true, ACL_READ},
                 {"write", true, ACL_WRITE},
                 {"readwrite", true, ACL_READ | ACL_WRITE},
                 {"deny", false, ACL_READ | ACL_WRITE}};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (!strcmp(word, kinds[i].name)) {
            rule->allow = kinds[i].allow;
            rule->actions = kinds[i].actions;
            return 0;
        }
    return ERR_INVALID;
}

/* One `topic` or `pattern` line's rest: "[ACCESS] FILTER" (the filter is
 * the rest of the line: it may contain spaces). */
static int parse_topic_line(char *rest, bool pattern, const char *user, struct acl_rule *rule,
                            const char **why)
{
    *rule = (struct acl_rule){.allow = true, .actions = ACL_READ | ACL_WRITE, .pattern = pattern};
    char *sp = strchr(rest, ' ');
    if (sp) {
        *sp = 0;
        if (parse_access(rest, rule) == 0)
            rest = sp + 1 + strspn(sp + 1, " \t");
        else
            *sp = ' '; /* no access word: the whole rest is the filter */
    }
    if (!topic_filter_valid(rest, strlen(rest))) {
        *why = "not a valid topic filter";
        return ERR_INVALID;
    }
    rule->subject = pattern ? ACL_ANYONE : user ? ACL_USER : ACL_ANONYMOUS;
    rule->filter = strdup(rest);
    rule->who = !pattern && user ? strdup(user) : NULL;
    if (!rule->filter || (!pattern && user && !rule->who)) {
        free(rule->filter);
        free(rule->who);
        return ERR_NOMEM;
    }
    return 0;
}

/* One line (NUL-terminated, trimmed). *user is the current `user` section. */
static int parse_line(char *line, char **user, struct acl_rules *groups, const char **why)
{
    char *sp = line + strcspn(line, " \t");
    char *rest = *sp ? sp + 1 + strspn(sp + 1, " \t") : sp;
    *sp = 0;
    if (!strcmp(line, "user")) {
        if (!*rest) {
            *why = "user needs a name";
            return ERR_INVALID;
        }
        free(*user);
        *user = strdup(rest);
        return *user ? 0 : ERR_NOMEM;
    }
    bool pattern = !strcmp(line, "pattern");
    if (!pattern && strcmp(line, "topic")) {
        *why = "expected user, topic or pattern";
        return ERR_INVALID;
    }
    struct acl_rule rule;
    GUARD(parse_topic_line(rest, pattern, *user, &rule, why));
    /* groups: 0 topic denies, 1 topic grants, 2 pattern denies, 3 grants */
    int rc = push_rule(&groups[(pattern ? 2 : 0) + (rule.allow ? 1 : 0)], &rule);
    if (rc < 0) {
        free(rule.filter);
        free(rule.who);
    }
    return rc;
}

static void trim(char *s)
{
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r')) s[--n] = 0;
}

/* Concatenates the four groups into out in evaluation order. */
static int join_groups(struct acl_rules *groups, struct acl_rules *out)
{
    for (int g = 0; g < 4; g++) {
        for (size_t i = 0; i < groups[g].n; i++) {
            GUARD(push_rule(out, &groups[g].v[i]));
            groups[g].v[i].who = groups[g].v[i].filter = NULL;
        }
    }
    return 0;
}

int acl_file_parse(const char *text, size_t len, bool default_allow, struct acl_rules *out,
                   char *err, size_t errlen)
{
    struct acl_rules groups[4] = {{0}, {0}, {0}, {0}};
    *out = (struct acl_rules){.default_allow = default_allow};
    char *user = NULL, *copy = malloc(len + 1);
    int rc = copy ? 0 : ERR_NOMEM;
    size_t lineno = 0;
    const char *why = "out of memory";
    if (copy) {
        memcpy(copy, text, len);
        copy[len] = 0;
    }
    for (char *line = copy, *next; rc == 0 && line && line < copy + len; line = next) {
        next = memchr(line, '\n', (size_t)(copy + len - line));
        if (next) *next++ = 0;
        lineno++;
        if (strlen(line) != (size_t)((next ? next - 1 : copy + len) - line)) {
            why = "NUL byte in line";
            rc = ERR_INVALID;
            break;
        }
        line += strspn(line, " \t");
        trim(line);
        if (*line && *line != '#') rc = parse_line(line, &user, groups, &why);
    }
    if (rc == 0) rc = join_groups(groups, out);
    if (rc < 0) {
        snprintf(err, errlen, "%zu: %s", lineno, rc == ERR_NOMEM ? "out of memory" : why);
        acl_rules_free(out);
    }
    for (int g = 0; g < 4; g++) acl_rules_free(&groups[g]);
    free(user);
    free(copy);
    return rc < 0 ? (rc == ERR_NOMEM ? rc : ERR_INVALID) : 0;
}

int acl_file_load(const char *path, bool default_allow, struct acl_rules *out, char *err,
                  size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return ERR_INVALID;
    }
    char *text = malloc(ACL_FILE_MAX);
    size_t n = text ? fread(text, 1, ACL_FILE_MAX, f) : 0;
    bool too_big = text && n == ACL_FILE_MAX;
    fclose(f);
    if (!text || too_big) {
        free(text);
        snprintf(err, errlen, "%s: %s", path, text ? "larger than 16 MiB" : "out of memory");
        return text ? ERR_INVALID : ERR_NOMEM;
    }
    char why[256];
    int rc = acl_file_parse(text, n, default_allow, out, why, sizeof why);
    if (rc < 0) snprintf(err, errlen, "%s:%s", path, why);
    free(text);
    return rc;
}

/* ---- compiling ---- */

/* Is name one of the comma-separated names in list? */
static bool listed(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list; p && *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == n && !memcmp(p, name, n)) return true;
        p = end ? end + 1 : NULL;
    }
    return false;
}

static bool applies(const struct acl_rule *r, const struct acl_client *c)
{
    switch ((enum acl_subject)r->subject) {
    case ACL_ANYONE: return true;
    case ACL_ANONYMOUS: return !c->user;
    case ACL_USER: return c->user && !c->device && !strcmp(c->user, r->who);
    case ACL_DEVICE: return c->user && c->device && !strcmp(c->user, r->who);
    case ACL_ROLE: {
        unsigned bit = store_role_parse(r->who);
        return bit ? (c->roles & bit) != 0 : listed(c->named_roles, r->who);
    }
    }
    return false;
}

/* The value a placeholder stands for; NULL for an unknown one. */
static const char *placeholder(char k, const struct acl_client *c)
{
    switch (k) {
    case 'c': return c->client_id ? c->client_id : "";
    case 'u': return c->user ? c->user : "";
    case 't': return c->tenant ? c->tenant : "";
    default: return NULL;
    }
}

/* Fills a pattern's placeholders into a new string. NULL with *unsafe set
 * when a value could change the filter's levels, or the result is invalid. */
static char *fill(const char *f, const struct acl_client *c, bool *unsafe)
{
    size_t cap = strlen(f) + 1, n = 0;
    for (const char *p = f; *p; p++)
        if (p[0] == '%' && placeholder(p[1], c)) cap += strlen(placeholder(p[1], c));
    char *out = malloc(cap);
    if (!out) return NULL;
    for (const char *p = f; *p; p++) {
        const char *v = p[0] == '%' ? placeholder(p[1], c) : NULL;
        if (!v) {
            out[n++] = *p;
            continue;
        }
        if (!*v || strpbrk(v, "/+#")) *unsafe = true;
        memcpy(out + n, v, strlen(v));
        n += strlen(v);
        p++;
    }
    out[n] = 0;
    if (!topic_filter_valid(out, n)) *unsafe = true;
    if (*unsafe) {
        free(out);
        return NULL;
    }
    return out;
}

static int add_compiled(struct acl_matcher *m, const struct acl_rule *r, const struct acl_client *c)
{
    bool unsafe = false;
    /* As mosquitto: a pattern naming the user does not apply to clients
     * without a user name. */
    if (r->pattern && !c->user && strstr(r->filter, "%u")) return 0;
    char *f = r->pattern ? fill(r->filter, c, &unsafe) : strdup(r->filter);
    if (unsafe) {
        /* Fail closed: it grants nothing, and as a deny it denies all. */
        if (!r->allow)
            m->r[m->n++] = (struct crule){.allow = false, .all = true, .actions = r->actions};
        return 0;
    }
    if (!f) return ERR_NOMEM;
    m->r[m->n++] = (struct crule){
        .allow = r->allow, .actions = r->actions, .len = (uint16_t)strlen(f), .filter = f};
    return 0;
}

int acl_compile(const struct acl_rules *r, const struct acl_client *c, struct acl_matcher **out)
{
    *out = NULL;
    if (!r) return 0;
    struct acl_matcher *m = calloc(1, sizeof *m + (r->n + 1) * sizeof m->r[0]);
    if (!m) return ERR_NOMEM;
    m->default_allow = r->default_allow;
    for (size_t i = 0; i < r->n; i++) {
        if (!applies(&r->v[i], c)) continue;
        int rc = add_compiled(m, &r->v[i], c);
        if (rc < 0) {
            acl_matcher_free(m);
            return rc;
        }
    }
    *out = m;
    return 0;
}

void acl_matcher_free(struct acl_matcher *m)
{
    if (!m) return;
    for (size_t i = 0; i < m->n; i++) free(m->r[i].filter);
    free(m);
}

size_t acl_matcher_size(const struct acl_matcher *m)
{
    return m ? m->n : 0;
}

/* ---- checks ---- */

bool acl_may(const struct acl_matcher *m, enum acl_action a, const char *topic, size_t len)
{
    if (!m) return true;
    for (size_t i = 0; i < m->n; i++) {
        const struct crule *r = &m->r[i];
        if (!(r->actions & a)) continue;
        if (r->all || topic_matches(r->filter, r->len, topic, len)) return r->allow;
    }
    return m->default_allow;
}

bool acl_may_publish(struct acl_matcher *m, const char *topic, size_t len)
{
    if (!m) return true;
    if (len && len == m->last_len && !memcmp(m->last, topic, len)) return m->last_allow;
    bool ok = acl_may(m, ACL_WRITE, topic, len);
    if (len && len <= LAST_TOPIC_MAX) {
        memcpy(m->last, topic, len);
        m->last_len = (uint8_t)len;
        m->last_allow = ok;
    }
    return ok;
}

/* The next level of a filter at *pos: its bytes in *lv and *lvlen; false at
 * the end. */
static bool next_level(const char *f, size_t len, size_t *pos, const char **lv, size_t *lvlen)
{
    if (*pos > len) return false;
    const char *start = f + *pos;
    const char *slash = memchr(start, '/', len - *pos);
    *lv = start;
    *lvlen = slash ? (size_t)(slash - start) : len - *pos;
    *pos += *lvlen + 1;
    return true;
}

static bool is(const char *lv, size_t n, char c)
{
    return n == 1 && lv[0] == c;
}

/* Topics starting with '$' match only filters whose first level is not a
 * wildcard (topic_matches' rule): such a pair shares no topic. */
static bool dollar_apart(const char *r, size_t rlen, const char *f, size_t flen)
{
    bool r_wild = rlen && (r[0] == '+' || r[0] == '#'),
         f_wild = flen && (f[0] == '+' || f[0] == '#');
    return (r_wild && flen && f[0] == '$') || (f_wild && rlen && r[0] == '$');
}

/* Does some topic match both filters? */
static bool overlaps(const char *r, size_t rlen, const char *f, size_t flen)
{
    size_t rp = 0, fp = 0, rn, fn;
    const char *rl, *fl;
    if (dollar_apart(r, rlen, f, flen)) return false;
    for (;;) {
        bool rh = next_level(r, rlen, &rp, &rl, &rn), fh = next_level(f, flen, &fp, &fl, &fn);
        if ((rh && is(rl, rn, '#')) || (fh && is(fl, fn, '#'))) return true;
        if (!rh || !fh) return !rh && !fh;
        if (is(rl, rn, '+') || is(fl, fn, '+')) continue;
        if (rn != fn || memcmp(rl, fl, rn)) return false;
    }
}

/* Does rule filter r match every topic f matches? */
static bool covers(const char *r, size_t rlen, const char *f, size_t flen)
{
    size_t rp = 0, fp = 0, rn, fn;
    const char *rl, *fl;
    if (dollar_apart(r, rlen, f, flen)) return false;
    for (;;) {
        bool rh = next_level(r, rlen, &rp, &rl, &rn), fh = next_level(f, flen, &fp, &fl, &fn);
        if (rh && is(rl, rn, '#')) return true; /* any rest, the parent level too */
        if (!rh || !fh) return !rh && !fh;
        if (is(fl, fn, '#')) return false; /* f reaches deeper than r follows */
        if (is(rl, rn, '+')) continue;
        if (is(fl, fn, '+') || rn != fn || memcmp(rl, fl, rn)) return false;
    }
}

/* The rules that overlap the filter decide the topics it can match, up to
 * the first that covers it all; the default decides the rest. Allowed only
 * when nothing there denies, denied when nothing allows, else per topic. */
enum acl_verdict acl_may_subscribe(const struct acl_matcher *m, const char *filter, size_t len)
{
    if (!m) return ACL_ALLOWED;
    bool any_allow = false, any_deny = false, covered = false;
    for (size_t i = 0; i < m->n && !covered; i++) {
        const struct crule *r = &m->r[i];
        if (!(r->actions & ACL_READ)) continue;
        if (!r->all && !overlaps(r->filter, r->len, filter, len)) continue;
        if (r->allow)
            any_allow = true;
        else
            any_deny = true;
        covered = r->all || covers(r->filter, r->len, filter, len);
    }
    if (!covered) {
        if (m->default_allow)
            any_allow = true;
        else
            any_deny = true;
    }
    return !any_allow ? ACL_DENIED : !any_deny ? ACL_ALLOWED : ACL_PER_TOPIC;
}
