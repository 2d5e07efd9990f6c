/* Tenant topic authorization rules and named roles: the REST API's rule
 * documents, kept in the store and in memory, and compiled for a client at
 * CONNECT. A rule is JSON: {"id", "effect": "ALLOW"|"DENY", "action":
 * "PUBLISH"|"SUBSCRIBE"|"ALL", "topic": a filter with %c %u %t, "subject":
 * {"type": "USER"|"DEVICE"|"ROLE"|"EVERYONE", "name"}}. Writes go to the
 * store first, then memory; thread-safe (one rwlock). */
#ifndef CERTMQ_IDENTITY_AUTHZ_H
#define CERTMQ_IDENTITY_AUTHZ_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "core/err.h"
#include "identity/acl.h"

#define AUTHZ_MAX_RULES 1000 /* per tenant */
#define AUTHZ_ROLES_MAX 512  /* bytes of one user's comma-separated named roles */

struct store;
struct authz;

/* Loads every tenant's rules and roles. st is borrowed. */
MUST_USE int authz_new(struct store *st, struct authz **out);
void authz_free(struct authz *az);
/* Reads every tenant's rules and roles from the store again (another node
 * changed them); on failure the ones in memory stay. */
MUST_USE int authz_reload(struct authz *az);

/* A copy of the tenant's rules in order (a JSON array; the caller frees). */
json_t *authz_rules(struct authz *az, const char *tenant);
/* Validates rule (why says what is wrong: ERR_INVALID), gives it the next
 * id and inserts it at its "position" member (absent or past the end:
 * appended). *created is a copy of the stored rule. ERR_LIMIT past
 * AUTHZ_MAX_RULES. */
MUST_USE int authz_rule_add(struct authz *az, const char *tenant, json_t *rule, json_t **created,
                            char *why, size_t whylen);
/* Replaces rule id (keeping its place unless "position" is given);
 * ERR_NOT_FOUND when there is none. */
MUST_USE int authz_rule_put(struct authz *az, const char *tenant, long id, json_t *rule,
                            json_t **updated, char *why, size_t whylen);
MUST_USE int authz_rule_delete(struct authz *az, const char *tenant, long id);

/* A user's (or device user's) named roles, comma-separated ("" none). */
void authz_roles_get(struct authz *az, const char *tenant, const char *user, char *out, size_t cap);
/* Validates and stores them; roles is a JSON array of names. */
MUST_USE int authz_roles_set(struct authz *az, const char *tenant, const char *user, json_t *roles,
                             char *why, size_t whylen);

/* The matcher for a client of tenant: c says who (its named roles are
 * looked up here under login, the user name it has in the tenant).
 * *out NULL when the tenant has no rules and default_allow is set. */
MUST_USE int authz_compile(struct authz *az, const char *tenant, const char *login,
                           const struct acl_client *c, bool default_allow,
                           struct acl_matcher **out);

#endif
