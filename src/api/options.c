/* Tenant options: GET/POST /tenant/options and GET/PUT/DELETE
 * /tenant/options/{category}/{key}, always for the caller's own tenant.
 * Values certmq reads are checked here (token lifespan >= 300 s, PoP code
 * lifespan, the CRL switch true/false) and mirrored into the trust index. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/handlers.h"
#include "identity/trust.h"

#define MIN_TOKEN_LIFESPAN 300

static json_t *option_json(const struct api_req *r, const char *cat, const char *key,
                           const char *value)
{
    char *self = api_url(r, "/tenant/options/%s/%s", cat, key);
    json_t *j = json_pack("{s:s, s:s, s:s, s:s}", "category", cat, "key", key, "value", value,
                          "self", self ? self : "");
    free(self);
    return j;
}

/* Rules for the options certmq itself reads; msg says why on failure. */
static int check_option(const char *cat, const char *key, const char *value, char *msg, size_t cap)
{
    if (!api_valid_id(cat, STORE_NAME_MAX) || !api_valid_id(key, STORE_NAME_MAX)) {
        snprintf(msg, cap, "category and key may contain only letters, digits and -_.@");
        return ERR_INVALID;
    }
    if (strlen(value) >= STORE_VALUE_MAX) {
        snprintf(msg, cap, "value is longer than %d characters", STORE_VALUE_MAX - 1);
        return ERR_INVALID;
    }
    if (strcmp(cat, "oauth.internal") == 0 && strcmp(key, "device-token.lifespan.seconds") == 0) {
        char *end = NULL;
        long long v = strtoll(value, &end, 10);
        if (!*value || *end || v < MIN_TOKEN_LIFESPAN || v > 365LL * 86400) {
            snprintf(msg, cap, "device-token.lifespan.seconds must be an integer of at least %d",
                     MIN_TOKEN_LIFESPAN);
            return ERR_INVALID;
        }
    }
    if (strcmp(cat, "proof-of-possession") == 0 &&
        strcmp(key, "verification-code.lifespan.seconds") == 0) {
        char *end = NULL;
        long long v = strtoll(value, &end, 10);
        if (!*value || *end || v < 1 || v > 7LL * 86400) {
            snprintf(msg, cap,
                     "verification-code.lifespan.seconds must be an integer from 1 to 604800");
            return ERR_INVALID;
        }
    }
    if (strcmp(cat, "authorization") == 0 && strcmp(key, "acl_default") == 0 &&
        strcmp(value, "allow") != 0 && strcmp(value, "deny") != 0) {
        snprintf(msg, cap, "authorization acl_default must be allow or deny");
        return ERR_INVALID;
    }
    if (strcmp(cat, "configuration") == 0 && strcmp(key, "crl.offline.check.enabled") == 0 &&
        strcasecmp(value, "true") != 0 && strcasecmp(value, "false") != 0) {
        snprintf(msg, cap, "crl.offline.check.enabled must be true or false");
        return ERR_INVALID;
    }
    return 0;
}

/* The "value" member as text: strings as they are, numbers and booleans
 * in their JSON spelling. NULL when absent or of another type. */
static char *value_text(json_t *v)
{
    if (json_is_string(v)) return strdup(json_string_value(v));
    if (json_is_integer(v) || json_is_real(v) || json_is_boolean(v))
        return json_dumps(v, JSON_ENCODE_ANY);
    return NULL;
}

/* The authorization default applies to connected clients at once. */
static void authz_changed(struct api_req *r, const char *cat)
{
    if (!strcmp(cat, "authorization") && r->api->cfg.on_authz_change)
        r->api->cfg.on_authz_change(r->api->cfg.hook_arg, r->tenant);
}

static int gate(struct api_req *r)
{
    if (api_may_admin(r, r->tenant)) return 0;
    ignore_result(api_reply_error(r, 403, "Tenant options need ROLE_TENANT_ADMIN"));
    return ERR_FORBIDDEN;
}

/* Stores and mirrors one option, replying with status and the object. */
static int set_option(struct api_req *r, const char *cat, const char *key, json_t *v, int status)
{
    char msg[200];
    char *value = value_text(v);
    if (!value) return api_reply_error(r, 422, "value is required (a string)");
    int rc = check_option(cat, key, value, msg, sizeof msg);
    if (rc < 0) {
        rc = api_reply_error(r, 422, msg);
        goto out;
    }
    GUARD_GOTO(rc, store_option_set(r->api->st, r->tenant, cat, key, value), out);
    GUARD_GOTO(rc, trust_option_set(r->api->ti, r->tenant, cat, key, value), out);
    /* Turning CRL checking on applies to devices already connected too. */
    if (!strcmp(cat, "configuration") && !strcmp(key, "crl.offline.check.enabled") &&
        r->api->cfg.on_crl_change)
        r->api->cfg.on_crl_change(r->api->cfg.hook_arg, r->tenant);
    authz_changed(r, cat);
    rc = api_reply_json(r, status, option_json(r, cat, key, value));
out:
    free(value);
    return rc;
}

struct list_ctx {
    const struct api_req *r;
    json_t *items;
};

static int add_option(void *arg, const char *tenant, const char *cat, const char *key,
                      const char *value)
{
    struct list_ctx *lc = arg;
    return json_array_append_new(lc->items, option_json(lc->r, cat, key, value)) == 0 ? 0
                                                                                      : ERR_NOMEM;
}

int api_h_option_list(struct api_req *r)
{
    size_t page, size;
    GUARD(gate(r));
    GUARD(api_paging(r, &page, &size));
    struct list_ctx lc = {r, json_array()};
    int rc = store_option_list(r->api->st, r->tenant, add_option, &lc);
    if (rc < 0) {
        json_decref(lc.items);
        return rc;
    }
    size_t total = json_array_size(lc.items), from = (page - 1) * size;
    json_t *slice = json_array();
    for (size_t i = from; i < total && i < from + size; i++)
        json_array_append(slice, json_array_get(lc.items, i));
    json_decref(lc.items);
    return api_reply_json(r, 200, api_page(r, "options", slice, page, size, total));
}

int api_h_option_create(struct api_req *r)
{
    GUARD(gate(r));
    json_t *j = api_body_json(r);
    if (!j) return 0;
    json_t *cat = json_object_get(j, "category"), *key = json_object_get(j, "key");
    int rc;
    if (!json_is_string(cat) || !json_is_string(key))
        rc = api_reply_error(r, 422, "category and key are required");
    else
        rc = set_option(r, json_string_value(cat), json_string_value(key),
                        json_object_get(j, "value"), 201);
    json_decref(j);
    return rc;
}

int api_h_option_get(struct api_req *r)
{
    char value[STORE_VALUE_MAX];
    GUARD(gate(r));
    int rc = store_option_get(r->api->st, r->tenant, r->seg[2], r->seg[3], value, sizeof value);
    if (rc == ERR_NOT_FOUND) return api_reply_error(r, 404, "No such tenant option");
    GUARD(rc);
    return api_reply_json(r, 200, option_json(r, r->seg[2], r->seg[3], value));
}

int api_h_option_put(struct api_req *r)
{
    GUARD(gate(r));
    json_t *j = api_body_json(r);
    if (!j) return 0;
    int rc = set_option(r, r->seg[2], r->seg[3], json_object_get(j, "value"), 200);
    json_decref(j);
    return rc;
}

int api_h_option_delete(struct api_req *r)
{
    GUARD(gate(r));
    int rc = store_option_delete(r->api->st, r->tenant, r->seg[2], r->seg[3]);
    if (rc == ERR_NOT_FOUND) return api_reply_error(r, 404, "No such tenant option");
    GUARD(rc);
    GUARD(trust_option_set(r->api->ti, r->tenant, r->seg[2], r->seg[3], NULL));
    authz_changed(r, r->seg[2]);
    return api_reply_empty(r, 204);
}
