/* Users: GET/POST /user/{tenantId}/users, GET/DELETE
 * /user/{tenantId}/users/{name} and GET /user/currentUser. Device users
 * (device_<CN>, created by registration) are listed with the others; they
 * have no password, and deleting one deletes its device registration. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/handlers.h"
#include "core/log.h"
#include "core/text.h"
#include "identity/password.h"
#include "identity/trust.h"

#define MIN_PASSWORD 8

json_t *api_json_text(const char *s)
{
    if (text_utf8_valid(s, strlen(s))) return json_string(s);
    char *e = text_escape_dup(s);
    json_t *j = e ? json_string(e) : NULL;
    free(e);
    return j;
}

/* s percent-encoded for a URL path segment (malloc'ed, NULL when out of
 * memory): a name from an older database may hold any byte. */
static char *path_segment(const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(s);
    char *out = malloc(n * 3 + 1), *w = out;
    if (!out) return NULL;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            strchr("-._~@", c)) {
            *w++ = (char)c;
        } else {
            *w++ = '%';
            *w++ = hex[c >> 4];
            *w++ = hex[c & 15];
        }
    }
    *w = '\0';
    return out;
}

json_t *api_user_json(const struct api_req *r, const struct store_user *u)
{
    char *seg = path_segment(u->name);
    char *self = seg ? api_url(r, "/user/%s/users/%s", u->tenant, seg) : NULL;
    json_t *roles = json_array();
    for (unsigned i = 0; i < STORE_ROLE_COUNT; i++)
        if (u->roles & (1u << i))
            json_array_append_new(roles, json_pack("{s:s, s:s}", "id", store_role_name(i), "name",
                                                   store_role_name(i)));
    json_t *j = json_pack("{s:o, s:o, s:s, s:o, s:b, s:b, s:o}", "id", api_json_text(u->name),
                          "userName", api_json_text(u->name), "self", self ? self : "", "email",
                          api_json_text(u->email), "enabled", 1, "deviceUser", u->device,
                          "effectiveRoles", roles);
    free(self);
    free(seg);
    return j;
}

struct list_ctx {
    const struct api_req *r;
    json_t *items;
};

static int add_user(void *arg, const struct store_user *u)
{
    struct list_ctx *lc = arg;
    return json_array_append_new(lc->items, api_user_json(lc->r, u)) == 0 ? 0 : ERR_NOMEM;
}

int api_h_user_list(struct api_req *r)
{
    const char *tenant = r->seg[1];
    size_t page, size, total = 0;
    GUARD(api_tenant_gate(r, tenant));
    GUARD(api_paging(r, &page, &size));
    GUARD(store_user_count(r->api->st, tenant, &total));
    struct list_ctx lc = {r, json_array()};
    int rc = store_user_list(r->api->st, tenant, false, (page - 1) * size, size, add_user, &lc);
    if (rc < 0) {
        json_decref(lc.items);
        return rc;
    }
    return api_reply_json(r, 200, api_page(r, "users", lc.items, page, size, total));
}

/* Roles from a JSON array of names; ERR_INVALID for unknown or forbidden ones. */
static int parse_roles(struct api_req *r, json_t *arr, const char *tenant, unsigned *roles)
{
    size_t i;
    json_t *v;
    *roles = 0;
    if (!arr || json_is_null(arr)) return 0;
    if (!json_is_array(arr)) return ERR_INVALID;
    json_array_foreach(arr, i, v)
    {
        const char *name = json_is_string(v) ? json_string_value(v) : NULL;
        if (json_is_object(v)) {
            json_t *id = json_object_get(v, "id");
            name = json_is_string(id) ? json_string_value(id) : NULL;
        }
        unsigned bit = name ? store_role_parse(name) : 0;
        if (!bit || bit == STORE_ROLE_DEVICE) return ERR_INVALID;
        if (bit == STORE_ROLE_MANAGEMENT_ADMIN &&
            (!api_is_management_admin(r) || strcmp(tenant, API_MANAGEMENT_TENANT) != 0))
            return ERR_FORBIDDEN;
        *roles |= bit;
    }
    return 0;
}

int api_h_user_create(struct api_req *r)
{
    const char *tenant = r->seg[1];
    GUARD(api_tenant_gate(r, tenant));
    json_t *j = api_body_json(r);
    if (!j) return 0;
    int rc = 0;
    struct store_user u;
    memset(&u, 0, sizeof u);
    json_t *name = json_object_get(j, "userName"), *pw = json_object_get(j, "password"),
           *email = json_object_get(j, "email");
    if (!json_is_string(name) || !api_valid_id(json_string_value(name), sizeof u.name) ||
        strncmp(json_string_value(name), STORE_DEVICE_USER_PREFIX, STORE_DEVICE_USER_PREFIX_LEN) ==
            0) {
        rc = api_reply_error(r, 422, "userName is required (letters, digits, -_.@; not device_)");
        goto out;
    }
    if (!json_is_string(pw) || json_string_length(pw) < MIN_PASSWORD) {
        rc = api_reply_error(r, 422, "password is required and must have at least 8 characters");
        goto out;
    }
    if (email && !(json_is_string(email) && json_string_length(email) < sizeof u.email &&
                   text_printable(json_string_value(email)))) {
        rc = api_reply_error(r, 422, "email must be a string without control characters");
        goto out;
    }
    rc = parse_roles(r, json_object_get(j, "roles"), tenant, &u.roles);
    if (rc < 0) {
        rc = api_reply_error(r, rc == ERR_FORBIDDEN ? 403 : 422,
                             rc == ERR_FORBIDDEN ? "That role cannot be granted here"
                                                 : "roles must be known role names");
        goto out;
    }
    snprintf(u.tenant, sizeof u.tenant, "%s", tenant);
    snprintf(u.name, sizeof u.name, "%s", json_string_value(name));
    if (email) snprintf(u.email, sizeof u.email, "%s", json_string_value(email));
    GUARD_GOTO(rc,
               password_hash(json_string_value(pw), json_string_length(pw), 0, u.pw_hash,
                             sizeof u.pw_hash),
               out);
    rc = store_user_create(r->api->st, &u);
    if (rc == ERR_EXISTS) {
        rc = api_reply_error(r, 409, "A user with this name already exists");
        goto out;
    }
    if (rc < 0) goto out;
    GUARD_GOTO(rc, trust_user_put(r->api->ti, u.tenant, u.name, u.pw_hash, u.roles), out);
    GUARD_GOTO(rc, store_user_get(r->api->st, u.tenant, u.name, &u), out);
    r->location = api_url(r, "/user/%s/users/%s", u.tenant, u.name);
    rc = api_reply_json(r, 201, api_user_json(r, &u));
out:
    json_decref(j);
    return rc;
}

int api_h_user_get(struct api_req *r)
{
    const char *tenant = r->seg[1], *name = r->seg[3];
    struct store_user u;
    bool self = strcmp(tenant, r->tenant) == 0 && strcmp(name, r->user) == 0;
    if (!self && !api_may_admin(r, tenant))
        return api_reply_error(r, 403, "Not allowed for this tenant");
    int rc = store_user_get(r->api->st, tenant, name, &u);
    if (rc == ERR_NOT_FOUND) return api_reply_error(r, 404, "No such user");
    GUARD(rc);
    return api_reply_json(r, 200, api_user_json(r, &u));
}

int api_h_current_user(struct api_req *r)
{
    struct store_user u;
    int rc = store_user_get(r->api->st, r->tenant, r->user, &u);
    if (rc == ERR_NOT_FOUND) return api_reply_error(r, 404, "No such user");
    GUARD(rc);
    return api_reply_json(r, 200, api_user_json(r, &u));
}

/* Deletes a user; a device user takes its device registration with it,
 * from the store and the trust index, and the on_user_delete hook closes
 * what it has connected. The caller cannot delete itself (it would lock
 * itself out mid-session). */
int api_h_user_delete(struct api_req *r)
{
    const char *tenant = r->seg[1], *name = r->seg[3];
    char cn[STORE_NAME_MAX];
    GUARD(api_tenant_gate(r, tenant));
    if (strcmp(tenant, r->tenant) == 0 && strcmp(name, r->user) == 0)
        return api_reply_error(r, 409, "A user cannot delete itself");
    int rc = store_user_delete(r->api->st, tenant, name, cn, sizeof cn);
    if (rc == ERR_NOT_FOUND) return api_reply_error(r, 404, "No such user");
    GUARD(rc);
    ignore_result(trust_user_put(r->api->ti, tenant, name, "", 0));
    if (cn[0]) ignore_result(trust_device_remove(r->api->ti, tenant, cn));
    /* certificates the tenant CA issued for it are revoked: its CA's
     * auto-registration would otherwise admit the deleted device again */
    if (cn[0] && api_ca_revoke_device(r, tenant, cn) < 0)
        log_error("tenant %s: the certificates of deleted device %s could not be revoked", tenant,
                  cn);
    if (r->api->cfg.on_user_delete)
        r->api->cfg.on_user_delete(r->api->cfg.hook_arg, tenant, name, cn[0] ? cn : NULL);
    return api_reply_empty(r, 204);
}
