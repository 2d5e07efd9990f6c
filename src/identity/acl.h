/* Topic authorization: ordered allow/deny rules (first match wins, a default
 * when none matches), read from a mosquitto-style acl_file, and compiled per
 * client at CONNECT into a matcher with its placeholders (%c ClientId, %u user
 * name or device CN, %t tenant) filled in. Pure: no I/O but the file read,
 * no locks, no globals; the broker owns the matchers of its sessions. */
#ifndef CERTMQ_IDENTITY_ACL_H
#define CERTMQ_IDENTITY_ACL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

enum acl_action { ACL_READ = 1, ACL_WRITE = 2 }; /* subscribe and receive; publish */

enum acl_subject {
    ACL_ANYONE,    /* every client (mosquitto's `pattern` lines) */
    ACL_ANONYMOUS, /* clients without a user name (lines before any `user`) */
    ACL_USER,      /* one user name (acl_file: or a statically trusted client's CN) */
    ACL_DEVICE,    /* one device, by its ID (certificate CN) */
    ACL_ROLE,      /* holders of a role: ROLE_* or a named role */
};

struct acl_rule {
    bool allow;
    uint8_t actions; /* ACL_READ | ACL_WRITE; a deny rule denies both */
    uint8_t subject; /* enum acl_subject */
    bool pattern;    /* placeholders are filled in */
    char *who;       /* ACL_USER: the name */
    char *filter;    /* a topic filter */
};

struct acl_rules {
    struct acl_rule *v;
    size_t n;
    bool default_allow; /* when no rule matches */
};

/* Parses an acl_file's text (mosquitto's format: `user NAME`, `topic
 * [read|write|readwrite|deny] FILTER`, `pattern [...] FILTER`, `#`
 * comments) into rules in mosquitto's order of evaluation: topic denies,
 * topic grants, pattern denies, pattern grants. On error writes "LINE: why"
 * into err and returns ERR_INVALID. */
MUST_USE int acl_file_parse(const char *text, size_t len, bool default_allow, struct acl_rules *out,
                            char *err, size_t errlen);
/* Reads and parses a file ("FILE:LINE: why" in err). */
MUST_USE int acl_file_load(const char *path, bool default_allow, struct acl_rules *out, char *err,
                           size_t errlen);
void acl_rules_free(struct acl_rules *r);

/* Who a matcher is compiled for. */
struct acl_client {
    const char *user; /* user name or device CN; NULL: none */
    const char *client_id;
    const char *tenant;
    bool device;             /* user is a device's ID */
    unsigned roles;          /* STORE_ROLE_* bits */
    const char *named_roles; /* roles an admin assigned, comma-separated; NULL: none */
};

/* Appends a copy of rule to r (the strings are copied). */
MUST_USE int acl_rules_add(struct acl_rules *r, const struct acl_rule *rule);

struct acl_matcher;

/* The rules that apply to c, placeholders filled in. A pattern whose value
 * would change its levels (a '/', '+' or '#' in the ClientId or name) grants
 * nothing, and as a deny it denies everything. */
MUST_USE int acl_compile(const struct acl_rules *r, const struct acl_client *c,
                         struct acl_matcher **out);
void acl_matcher_free(struct acl_matcher *m);
/* Rules in the matcher (for the cost a check has). */
size_t acl_matcher_size(const struct acl_matcher *m);

/* May the client do action on this topic name? NULL matcher: yes. */
bool acl_may(const struct acl_matcher *m, enum acl_action a, const char *topic, size_t len);

/* acl_may for a PUBLISH, answering a repeated topic from the matcher's
 * memory of the last one (the matcher's owner serialises its calls). */
bool acl_may_publish(struct acl_matcher *m, const char *topic, size_t len);

enum acl_verdict { ACL_DENIED, ACL_ALLOWED, ACL_PER_TOPIC };
/* A SUBSCRIBE's filter: allowed for every topic it matches, denied for
 * every one, or decided per topic (acl_may on each message delivered). */
enum acl_verdict acl_may_subscribe(const struct acl_matcher *m, const char *filter, size_t len);

#endif
