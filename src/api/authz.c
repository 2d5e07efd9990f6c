/* Topic authorization over REST: a tenant's ordered rules
 * (GET|POST /tenant/tenants/{tenantId}/authorization-rules, PUT|DELETE
 * .../{id}) and the named roles of a user or device user
 * (GET|PUT /user/{tenantId}/users/{userName}/authorization-roles). The
 * rules live in identity/authz; a change is announced so the broker applies
 * it to connected clients at once. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/handlers.h"
#include "identity/authz.h"

static struct authz *registry(struct api_req *r)
{
    return r->api->cfg.authz;
}

static void changed(struct api_req *r, const char *tenant)
{
    if (r->api->cfg.on_authz_change) r->api->cfg.on_authz_change(r->api->cfg.hook_arg, tenant);
}

/* The {id} segment as a positive number; replies 404 otherwise. */
static int rule_id(struct api_req *r, long *id)
{
    char *end = NULL;
    long v = strtol(r->seg[4], &end, 10);
    if (!*r->seg[4] || *end || v <= 0) {
        ignore_result(api_reply_error(r, 404, "No such authorization rule"));
        return ERR_NOT_FOUND;
    }
    *id = v;
    return 0;
}

static int gate(struct api_req *r, const char *tenant)
{
    if (!registry(r)) return api_reply_error(r, 404, "Topic authorization is not available");
    return api_tenant_gate(r, tenant);
}

int api_h_authz_list(struct api_req *r)
{
    const char *tenant = r->seg[2];
    GUARD(gate(r, tenant));
    if (r->status) return 0;
    json_t *rules = authz_rules(registry(r), tenant);
    if (!rules) return ERR_NOMEM;
    return api_reply_json(r, 200, json_pack("{s:o}", "rules", rules));
}

/* The reply to a rule write: the rule, or the error it earned. */
static int write_reply(struct api_req *r, const char *tenant, int rc, int ok_status, json_t *rule,
                       const char *why)
{
    if (rc == ERR_INVALID) return api_reply_error(r, 422, why);
    if (rc == ERR_NOT_FOUND) return api_reply_error(r, 404, "No such authorization rule");
    if (rc == ERR_LIMIT) return api_reply_error(r, 422, "A tenant holds at most 1000 rules");
    GUARD(rc);
    changed(r, tenant);
    return api_reply_json(r, ok_status, rule);
}

int api_h_authz_create(struct api_req *r)
{
    const char *tenant = r->seg[2];
    GUARD(gate(r, tenant));
    if (r->status) return 0;
    json_t *j = api_body_json(r), *rule = NULL;
    if (!j) return 0;
    char why[200] = "";
    int rc = authz_rule_add(registry(r), tenant, j, &rule, why, sizeof why);
    json_decref(j);
    return write_reply(r, tenant, rc, 201, rule, why);
}

int api_h_authz_update(struct api_req *r)
{
    const char *tenant = r->seg[2];
    long id;
    GUARD(gate(r, tenant));
    if (r->status) return 0;
    if (rule_id(r, &id) < 0) return 0;
    json_t *j = api_body_json(r), *rule = NULL;
    if (!j) return 0;
    char why[200] = "";
    int rc = authz_rule_put(registry(r), tenant, id, j, &rule, why, sizeof why);
    json_decref(j);
    return write_reply(r, tenant, rc, 200, rule, why);
}

int api_h_authz_delete(struct api_req *r)
{
    const char *tenant = r->seg[2];
    long id;
    GUARD(gate(r, tenant));
    if (r->status) return 0;
    if (rule_id(r, &id) < 0) return 0;
    int rc = authz_rule_delete(registry(r), tenant, id);
    if (rc == ERR_NOT_FOUND) return api_reply_error(r, 404, "No such authorization rule");
    GUARD(rc);
    changed(r, tenant);
    return api_reply_empty(r, 204);
}

/* The named roles as a JSON array. */
static json_t *roles_json(const char *csv)
{
    json_t *a = json_array();
    for (const char *p = csv; a && *p;) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        json_array_append_new(a, json_stringn(p, n));
        p = end ? end + 1 : p + n;
    }
    return a;
}

/* Gate and existence check for the roles routes; replies on failure. */
static int user_gate(struct api_req *r, const char *tenant, const char *name)
{
    GUARD(gate(r, tenant));
    if (r->status) return ERR_FORBIDDEN;
    struct store_user u;
    int rc = store_user_get(r->api->st, tenant, name, &u);
    if (rc == ERR_NOT_FOUND) {
        ignore_result(api_reply_error(r, 404, "No such user"));
        return rc;
    }
    return rc;
}

int api_h_authz_roles_get(struct api_req *r)
{
    const char *tenant = r->seg[1], *name = r->seg[3];
    if (user_gate(r, tenant, name) < 0) return r->status ? 0 : ERR_DB;
    char csv[AUTHZ_ROLES_MAX];
    authz_roles_get(registry(r), tenant, name, csv, sizeof csv);
    return api_reply_json(r, 200, json_pack("{s:o}", "roles", roles_json(csv)));
}

int api_h_authz_roles_put(struct api_req *r)
{
    const char *tenant = r->seg[1], *name = r->seg[3];
    if (user_gate(r, tenant, name) < 0) return r->status ? 0 : ERR_DB;
    json_t *j = api_body_json(r);
    if (!j) return 0;
    char why[200] = "";
    int rc =
        authz_roles_set(registry(r), tenant, name, json_object_get(j, "roles"), why, sizeof why);
    json_decref(j);
    if (rc == ERR_INVALID) return api_reply_error(r, 422, why);
    GUARD(rc);
    changed(r, tenant);
    char csv[AUTHZ_ROLES_MAX];
    authz_roles_get(registry(r), tenant, name, csv, sizeof csv);
    return api_reply_json(r, 200, json_pack("{s:o}", "roles", roles_json(csv)));
}
