/* Tenant authorization rules and named roles (see authz.h). Each tenant's
 * rules are one JSON array (stored whole, so an edit is one write) plus the
 * acl_rules compiled from it; named roles are a map (tenant, user) -> list. */
#include "identity/authz.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "broker/topic.h"
#include "core/map.h"
#include "store/store.h"

#define NAME_MAX_LEN   127
#define ROLE_NAME_MAX  64
#define ROLES_PER_USER 16

struct tenant_rules {
    json_t *doc; /* array of rule objects, in order */
    long next_id;
    struct acl_rules rules;
};

struct authz {
    struct store *st;
    pthread_rwlock_t lock;
    struct map tenants; /* tenant -> struct tenant_rules */
    struct map roles;   /* tenant \x01 user -> char * (comma-separated) */
};

/* ---- one rule: JSON <-> acl_rule ---- */

static int fail(char *why, size_t n, const char *text)
{
    snprintf(why, n, "%s", text);
    return ERR_INVALID;
}

static bool printable(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max) return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) return false;
    return true;
}

/* A named role an admin may assign: letters, digits and "-_.", not ROLE_*. */
static bool role_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > ROLE_NAME_MAX || !strncmp(s, "ROLE_", 5)) return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && !strchr("-_.", s[i])) return false;
    return true;
}

/* The topic with each placeholder replaced by one level's worth of text
 * must be a valid filter. */
static bool topic_ok(const char *t)
{
    size_t n = strlen(t);
    if (n == 0 || n > 65535) return false;
    char *probe = malloc(n + 1);
    if (!probe) return false;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (t[i] == '%' && i + 1 < n && strchr("cut", t[i + 1])) {
            probe[k++] = 'x';
            i++;
        } else {
            probe[k++] = t[i];
        }
    }
    bool ok = topic_filter_valid(probe, k);
    free(probe);
    return ok;
}

static int parse_subject(json_t *s, struct acl_rule *out, char *why, size_t n)
{
    static const struct {
        const char *name;
        enum acl_subject subject;
    } types[] = {
        {"USER", ACL_USER}, {"DEVICE", ACL_DEVICE}, {"ROLE", ACL_ROLE}, {"EVERYONE", ACL_ANYONE}};
    const char *type = json_string_value(json_object_get(s, "type"));
    const char *name = json_string_value(json_object_get(s, "name"));
    size_t i = 0;
    while (type && i < sizeof types / sizeof types[0] && strcasecmp(type, types[i].name)) i++;
    if (!type || i == sizeof types / sizeof types[0])
        return fail(why, n, "subject.type must be USER, DEVICE, ROLE or EVERYONE");
    out->subject = (uint8_t)types[i].subject;
    if (out->subject == ACL_ANYONE) return 0;
    if (!name || !printable(name, NAME_MAX_LEN))
        return fail(why, n, "subject.name must be 1-127 printable characters");
    if (out->subject == ACL_ROLE && !store_role_parse(name) && !role_name_ok(name))
        return fail(why, n,
                    "subject.name must be a ROLE_* name or a named role (letters, "
                    "digits, -_.)");
    out->who = (char *)name;
    return 0;
}

/* Reads a rule object into out (strings borrowed from j) and writes its
 * normalised form into *norm. */
static int parse_rule(json_t *j, long id, struct acl_rule *out, json_t **norm, char *why, size_t n)
{
    if (!json_is_object(j)) return fail(why, n, "a rule is a JSON object");
    const char *effect = json_string_value(json_object_get(j, "effect"));
    const char *action = json_string_value(json_object_get(j, "action"));
    const char *topic = json_string_value(json_object_get(j, "topic"));
    json_t *subject = json_object_get(j, "subject");
    *out = (struct acl_rule){.pattern = true};
    if (!effect || (strcasecmp(effect, "ALLOW") && strcasecmp(effect, "DENY")))
        return fail(why, n, "effect must be ALLOW or DENY");
    out->allow = !strcasecmp(effect, "ALLOW");
    if (!action) return fail(why, n, "action must be PUBLISH, SUBSCRIBE or ALL");
    if (!strcasecmp(action, "PUBLISH"))
        out->actions = ACL_WRITE;
    else if (!strcasecmp(action, "SUBSCRIBE"))
        out->actions = ACL_READ;
    else if (!strcasecmp(action, "ALL"))
        out->actions = ACL_READ | ACL_WRITE;
    else
        return fail(why, n, "action must be PUBLISH, SUBSCRIBE or ALL");
    if (!topic || !topic_ok(topic))
        return fail(why, n,
                    "topic must be a valid topic filter ('+' alone in its level, '#' "
                    "alone and last; %c %u %t stand for one level's text)");
    out->filter = (char *)topic;
    if (!json_is_object(subject)) return fail(why, n, "subject must be an object with a type");
    GUARD(parse_subject(subject, out, why, n));
    static const char *const effects[] = {"DENY", "ALLOW"};
    static const char *const actions[] = {"", "SUBSCRIBE", "PUBLISH", "ALL"};
    static const char *const subjects[] = {"EVERYONE", "EVERYONE", "USER", "DEVICE", "ROLE"};
    json_t *s = out->who ? json_pack("{s:s, s:s}", "type", subjects[out->subject], "name", out->who)
                         : json_pack("{s:s}", "type", subjects[out->subject]);
    *norm =
        json_pack("{s:I, s:s, s:s, s:s, s:o}", "id", (json_int_t)id, "effect", effects[out->allow],
                  "action", actions[out->actions], "topic", topic, "subject", s);
    return *norm ? 0 : ERR_NOMEM;
}

/* ---- a tenant's rule list ---- */

static void tenant_rules_free(void *p)
{
    struct tenant_rules *t = p;
    if (!t) return;
    json_decref(t->doc);
    acl_rules_free(&t->rules);
    free(t);
}

/* A tenant_rules for doc (taken): its compiled rules and next id. */
static int tenant_rules_make(json_t *doc, struct tenant_rules **out)
{
    struct tenant_rules *t = calloc(1, sizeof *t);
    if (!t) {
        json_decref(doc);
        return ERR_NOMEM;
    }
    t->doc = doc;
    t->next_id = 1;
    size_t i;
    json_t *r;
    json_array_foreach(doc, i, r)
    {
        struct acl_rule rule;
        json_t *norm = NULL;
        char why[160];
        long id = (long)json_integer_value(json_object_get(r, "id"));
        int rc = parse_rule(r, id, &rule, &norm, why, sizeof why);
        json_decref(norm);
        if (rc == 0) rc = acl_rules_add(&t->rules, &rule);
        if (rc < 0) {
            tenant_rules_free(t);
            return rc;
        }
        if (id >= t->next_id) t->next_id = id + 1;
    }
    *out = t;
    return 0;
}

/* Stores doc as the tenant's rules, then installs it (taking doc). */
static int install(struct authz *az, const char *tenant, json_t *doc)
{
    char *text = json_dumps(doc, JSON_COMPACT);
    struct tenant_rules *t = NULL;
    int rc = text ? 0 : ERR_NOMEM;
    if (rc == 0) rc = store_authz_rules_put(az->st, tenant, text);
    free(text);
    if (rc == 0) {
        rc = tenant_rules_make(doc, &t);
        doc = NULL;
    }
    json_decref(doc);
    if (rc < 0) return rc;
    void *old = NULL;
    rc = map_put(&az->tenants, tenant, strlen(tenant), t, &old);
    if (rc < 0) {
        tenant_rules_free(t);
        return rc;
    }
    tenant_rules_free(old);
    return 0;
}

static json_t *current_doc(struct authz *az, const char *tenant)
{
    struct tenant_rules *t = map_get(&az->tenants, tenant, strlen(tenant));
    return t ? json_deep_copy(t->doc) : json_array();
}

static long next_id(struct authz *az, const char *tenant)
{
    struct tenant_rules *t = map_get(&az->tenants, tenant, strlen(tenant));
    return t ? t->next_id : 1;
}

json_t *authz_rules(struct authz *az, const char *tenant)
{
    pthread_rwlock_rdlock(&az->lock);
    json_t *doc = current_doc(az, tenant);
    pthread_rwlock_unlock(&az->lock);
    return doc;
}

/* The index of rule id in doc, or -1. */
static long find(json_t *doc, long id)
{
    size_t i;
    json_t *r;
    json_array_foreach(doc, i,
                       r) if (json_integer_value(json_object_get(r, "id")) == id) return (long)i;
    return -1;
}

/* Puts norm (taken) into doc at position (or where at is, replacing). */
static int place(json_t *doc, json_t *norm, long position, long at)
{
    if (at >= 0) json_array_remove(doc, (size_t)at);
    if (position < 0) position = at;
    if (position < 0 || (size_t)position >= json_array_size(doc))
        return json_array_append_new(doc, norm) ? ERR_NOMEM : 0;
    return json_array_insert_new(doc, (size_t)position, norm) ? ERR_NOMEM : 0;
}

/* add (id < 0) or replace rule id. */
static int write_rule(struct authz *az, const char *tenant, long id, json_t *rule, json_t **out,
                      char *why, size_t whylen)
{
    json_t *pos = json_object_get(rule, "position");
    if (pos && (!json_is_integer(pos) || json_integer_value(pos) < 0))
        return fail(why, whylen, "position must be a non-negative integer");
    long position = pos ? (long)json_integer_value(pos) : -1;
    pthread_rwlock_wrlock(&az->lock);
    json_t *doc = current_doc(az, tenant), *norm = NULL;
    long at = id < 0 ? -1 : find(doc, id);
    struct acl_rule parsed;
    int rc = doc ? 0 : ERR_NOMEM;
    if (rc == 0 && id >= 0 && at < 0) rc = ERR_NOT_FOUND;
    if (rc == 0 && id < 0 && json_array_size(doc) >= AUTHZ_MAX_RULES) rc = ERR_LIMIT;
    if (rc == 0)
        rc = parse_rule(rule, id < 0 ? next_id(az, tenant) : id, &parsed, &norm, why, whylen);
    if (rc == 0) {
        *out = json_incref(norm);
        rc = place(doc, norm, position, at);
        if (rc == 0) {
            rc = install(az, tenant, doc);
            doc = NULL;
        }
        if (rc < 0) json_decref(*out);
    } else {
        json_decref(norm);
    }
    json_decref(doc);
    pthread_rwlock_unlock(&az->lock);
    return rc;
}

int authz_rule_add(struct authz *az, const char *tenant, json_t *rule, json_t **created, char *why,
                   size_t whylen)
{
    return write_rule(az, tenant, -1, rule, created, why, whylen);
}

int authz_rule_put(struct authz *az, const char *tenant, long id, json_t *rule, json_t **updated,
                   char *why, size_t whylen)
{
    return write_rule(az, tenant, id, rule, updated, why, whylen);
}

int authz_rule_delete(struct authz *az, const char *tenant, long id)
{
    pthread_rwlock_wrlock(&az->lock);
    json_t *doc = current_doc(az, tenant);
    long at = doc ? find(doc, id) : -1;
    int rc = !doc ? ERR_NOMEM : at < 0 ? ERR_NOT_FOUND : 0;
    if (rc == 0) {
        json_array_remove(doc, (size_t)at);
        rc = install(az, tenant, doc);
        doc = NULL;
    }
    json_decref(doc);
    pthread_rwlock_unlock(&az->lock);
    return rc;
}

/* ---- named roles ---- */

static size_t role_key(char *out, size_t cap, const char *tenant, const char *user)
{
    int n = snprintf(out, cap, "%s\x01%s", tenant, user);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

void authz_roles_get(struct authz *az, const char *tenant, const char *user, char *out, size_t cap)
{
    char key[STORE_TENANT_MAX + STORE_NAME_MAX + 2];
    size_t klen = role_key(key, sizeof key, tenant, user);
    pthread_rwlock_rdlock(&az->lock);
    const char *v = klen ? map_get(&az->roles, key, klen) : NULL;
    snprintf(out, cap, "%s", v ? v : "");
    pthread_rwlock_unlock(&az->lock);
}

/* The JSON array of names as one comma-separated list. */
static int roles_csv(json_t *roles, char *out, size_t cap, char *why, size_t whylen)
{
    if (!json_is_array(roles) || json_array_size(roles) > ROLES_PER_USER)
        return fail(why, whylen, "roles must be an array of at most 16 role names");
    size_t i, n = 0;
    json_t *r;
    out[0] = 0;
    json_array_foreach(roles, i, r)
    {
        const char *name = json_string_value(r);
        if (!name || !role_name_ok(name))
            return fail(why, whylen,
                        "a role name is 1-64 letters, digits or -_. and does not "
                        "start with ROLE_");
        int k = snprintf(out + n, cap - n, "%s%s", n ? "," : "", name);
        if (k < 0 || (size_t)k >= cap - n) return fail(why, whylen, "too many roles");
        n += (size_t)k;
    }
    return 0;
}

static int roles_install(struct authz *az, const char *tenant, const char *user, const char *csv)
{
    char key[STORE_TENANT_MAX + STORE_NAME_MAX + 2];
    size_t klen = role_key(key, sizeof key, tenant, user);
    ENSURE(klen, ERR_INVALID);
    char *v = *csv ? strdup(csv) : NULL;
    if (*csv && !v) return ERR_NOMEM;
    free(map_del(&az->roles, key, klen));
    if (v && map_put(&az->roles, key, klen, v, NULL) < 0) {
        free(v);
        return ERR_NOMEM;
    }
    return 0;
}

int authz_roles_set(struct authz *az, const char *tenant, const char *user, json_t *roles,
                    char *why, size_t whylen)
{
    char csv[AUTHZ_ROLES_MAX];
    GUARD(roles_csv(roles, csv, sizeof csv, why, whylen));
    pthread_rwlock_wrlock(&az->lock);
    int rc = store_authz_roles_put(az->st, tenant, user, csv);
    if (rc == 0) rc = roles_install(az, tenant, user, csv);
    pthread_rwlock_unlock(&az->lock);
    return rc;
}

/* ---- compiling ---- */

int authz_compile(struct authz *az, const char *tenant, const char *login,
                  const struct acl_client *c, bool default_allow, struct acl_matcher **out)
{
    *out = NULL;
    char key[STORE_TENANT_MAX + STORE_NAME_MAX + 2];
    size_t klen = role_key(key, sizeof key, tenant, login ? login : "");
    int rc = 0;
    pthread_rwlock_rdlock(&az->lock);
    struct tenant_rules *t = map_get(&az->tenants, tenant, strlen(tenant));
    if (t || !default_allow) {
        struct acl_rules r = {0};
        if (t) r = t->rules; /* a view: the rules stay the tenant's */
        r.default_allow = default_allow;
        struct acl_client who = *c;
        who.named_roles = klen ? map_get(&az->roles, key, klen) : NULL;
        rc = acl_compile(&r, &who, out);
    }
    pthread_rwlock_unlock(&az->lock);
    return rc;
}

/* ---- loading ---- */

static int load_rules(void *arg, const char *tenant, const char *key, const char *value)
{
    (void)key;
    struct authz *az = arg;
    json_error_t e;
    json_t *doc = json_loads(value, 0, &e);
    struct tenant_rules *t;
    if (!json_is_array(doc)) {
        json_decref(doc);
        return ERR_DB;
    }
    GUARD(tenant_rules_make(doc, &t));
    if (map_put(&az->tenants, tenant, strlen(tenant), t, NULL) < 0) {
        tenant_rules_free(t);
        return ERR_NOMEM;
    }
    return 0;
}

static int load_roles(void *arg, const char *tenant, const char *user, const char *roles)
{
    return roles_install(arg, tenant, user, roles);
}

int authz_new(struct store *st, struct authz **out)
{
    struct authz *az = calloc(1, sizeof *az);
    if (!az) return ERR_NOMEM;
    az->st = st;
    pthread_rwlock_init(&az->lock, NULL);
    map_init(&az->tenants);
    map_init(&az->roles);
    int rc = st ? store_authz_rules_list(st, load_rules, az) : 0;
    if (rc == 0 && st) rc = store_authz_roles_list(st, load_roles, az);
    if (rc < 0) {
        authz_free(az);
        return rc;
    }
    *out = az;
    return 0;
}

static void free_tenant_cb(const char *key, void *value, void *arg)
{
    (void)key;
    (void)arg;
    tenant_rules_free(value);
}

static void free_cb(const char *key, void *value, void *arg)
{
    (void)key;
    (void)arg;
    free(value);
}

void authz_free(struct authz *az)
{
    if (!az) return;
    map_each(&az->tenants, free_tenant_cb, NULL);
    map_free(&az->tenants);
    map_each(&az->roles, free_cb, NULL);
    map_free(&az->roles);
    pthread_rwlock_destroy(&az->lock);
    free(az);
}

int authz_reload(struct authz *az)
{
    struct authz *fresh;
    GUARD(authz_new(az->st, &fresh));
    pthread_rwlock_wrlock(&az->lock);
    struct map tenants = az->tenants, roles = az->roles;
    az->tenants = fresh->tenants;
    az->roles = fresh->roles;
    fresh->tenants = tenants; /* the old ones go with fresh; compiled matchers own copies */
    fresh->roles = roles;
    pthread_rwlock_unlock(&az->lock);
    authz_free(fresh);
    return 0;
}
