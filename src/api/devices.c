/* The live view of a tenant's devices: GET /devices (inventory with
 * last-seen and certificate notAfter, ?expiringWithinDays=N),
 * GET /devices/connections (connected clients), DELETE
 * /devices/connections/{clientId} and GET /devices/refusals (the latest
 * refused attempts, newest first). The caller's own tenant, or ?tenant=X
 * for the management admin; the broker is reached only through the hooks
 * in api_config, never directly. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/handlers.h"
#include "broker/broker.h"
#include "identity/activity.h"
#include "identity/auth.h"

#define MAX_EXPIRY_DAYS 36500

/* The tenant a live-view route is about, gated as every tenant route. */
static int live_tenant(struct api_req *r, const char **tenant)
{
    const char *t = api_query(r, "tenant");
    if (!t || !*t) t = r->tenant;
    if (!api_valid_id(t, STORE_TENANT_MAX)) {
        ignore_result(api_reply_error(r, 404, "No such tenant"));
        return ERR_NOT_FOUND;
    }
    GUARD(api_tenant_gate(r, t));
    *tenant = t;
    return 0;
}

static const char *kind_name(uint8_t kind)
{
    switch (kind) {
    case AUTH_CERTIFICATE_DEVICE: return "certificate";
    case AUTH_PASSWORD: return "password";
    case AUTH_STATIC: return "static";
    default: return "anonymous";
    }
}

static const char *protocol_name(uint8_t level)
{
    switch (level) {
    case 3: return "3.1";
    case 4: return "3.1.1";
    case 5: return "5.0";
    default: return "";
    }
}

static json_t *time_or_null(int64_t t)
{
    char iso[40];
    if (!t) return json_null();
    api_iso_time(t, iso, sizeof iso);
    return json_string(iso);
}

static json_t *connection_json(const struct api_req *r, const struct broker_conn *c)
{
    char since[40];
    api_iso_time(c->since, since, sizeof since);
    json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "clientId", c->client_id, "cn",
                          c->identity, "kind", kind_name(c->kind), "node", r->api->node,
                          "remoteAddress", c->remote, "connectedSince", since, "protocolVersion",
                          protocol_name(c->protocol_level));
    json_object_set_new(j, "tlsVersion",
                        c->tls_version[0] ? json_string(c->tls_version) : json_null());
    json_object_set_new(j, "cipher", c->cipher[0] ? json_string(c->cipher) : json_null());
    json_object_set_new(j, "handshake",
                        json_string(!c->tls_version[0] ? "none"
                                    : c->resumed       ? "resumed"
                                                       : "full"));
    json_object_set_new(j, "notAfter", time_or_null(c->not_after));
    json_object_set_new(j, "anchorFingerprint",
                        c->anchor_fp[0] ? json_string(c->anchor_fp) : json_null());
    json_object_set_new(j, "serialNumber", c->serial[0] ? json_string(c->serial) : json_null());
    return j;
}

/* ?q= matches a substring of the ClientId or CN. */
static bool conn_matches(const struct broker_conn *c, const char *q)
{
    return !q || !*q || strstr(c->client_id, q) || strstr(c->identity, q);
}

int api_h_connection_list(struct api_req *r)
{
    const char *tenant, *q = api_query(r, "q");
    size_t page, size, n = 0, total = 0;
    struct broker_conn *v = NULL;
    GUARD(live_tenant(r, &tenant));
    GUARD(api_paging(r, &page, &size));
    if (!r->api->cfg.connections) return api_reply_error(r, 404, "No live view on this node");
    GUARD(r->api->cfg.connections(r->api->cfg.hook_arg, tenant, &v, &n));
    json_t *items = json_array();
    for (size_t i = 0; i < n; i++) {
        if (!conn_matches(&v[i], q)) continue;
        if (total >= (page - 1) * size && total < page * size)
            json_array_append_new(items, connection_json(r, &v[i]));
        total++;
    }
    free(v);
    return api_reply_json(r, 200, api_page(r, "connections", items, page, size, total));
}

int api_h_connection_delete(struct api_req *r)
{
    const char *tenant;
    GUARD(live_tenant(r, &tenant));
    if (!r->api->cfg.disconnect) return api_reply_error(r, 404, "No live view on this node");
    int rc = r->api->cfg.disconnect(r->api->cfg.hook_arg, tenant, r->seg[2]);
    if (rc == ERR_NOT_FOUND) return api_reply_error(r, 404, "No such connected client");
    GUARD(rc);
    return api_reply_empty(r, 204);
}

static json_t *refusal_json(const struct refusal *f)
{
    char t[40];
    api_iso_time(f->time, t, sizeof t);
    json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:s}", "time", t, "remoteAddress", f->remote,
                          "clientId", f->client_id, "cn", f->cn, "reason", f->reason);
    json_object_set_new(j, "anchorFingerprint",
                        f->anchor_fp[0] ? json_string(f->anchor_fp) : json_null());
    return j;
}

int api_h_refusal_list(struct api_req *r)
{
    const char *tenant;
    size_t page, size, n = 0;
    struct refusal *v = NULL;
    GUARD(live_tenant(r, &tenant));
    GUARD(api_paging(r, &page, &size));
    if (r->api->cfg.activity) GUARD(activity_refusals(r->api->cfg.activity, tenant, &v, &n));
    json_t *items = json_array();
    for (size_t i = (page - 1) * size; i < n && i < page * size; i++)
        json_array_append_new(items, refusal_json(&v[i]));
    free(v);
    return api_reply_json(r, 200, api_page(r, "refusals", items, page, size, n));
}

/* ---- inventory ---- */

struct inventory {
    struct api_req *r;
    const char *q;
    int64_t expiring_before; /* 0: no filter */
    size_t page, size, total;
    json_t *items;
    struct broker_conn *live; /* sorted by ClientId */
    size_t n_live;
};

static int by_identity(const void *a, const void *b)
{
    return strcmp(((const struct broker_conn *)a)->identity,
                  ((const struct broker_conn *)b)->identity);
}

/* inv->live is sorted by identity (CN) here. */
static bool is_connected(const struct inventory *inv, const char *cn)
{
    struct broker_conn key;
    if (!inv->n_live) return false;
    snprintf(key.identity, sizeof key.identity, "%s", cn);
    const struct broker_conn *c = bsearch(&key, inv->live, inv->n_live, sizeof key, by_identity);
    if (!c) return false;
    /* Neighbours with the same CN may be password users: look for a device. */
    for (const struct broker_conn *p = c; p >= inv->live && !strcmp(p->identity, cn); p--)
        if (p->kind == AUTH_CERTIFICATE_DEVICE) return true;
    for (const struct broker_conn *p = c; p < inv->live + inv->n_live && !strcmp(p->identity, cn);
         p++)
        if (p->kind == AUTH_CERTIFICATE_DEVICE) return true;
    return false;
}

static int inventory_row(void *arg, const char *tenant, const char *cn)
{
    struct inventory *inv = arg;
    struct device_seen seen = {0};
    bool known = activity_device(inv->r->api->cfg.activity, tenant, cn, &seen);
    if (inv->q && *inv->q && !strstr(cn, inv->q)) return 0;
    if (inv->expiring_before &&
        (!known || !seen.not_after || seen.not_after > inv->expiring_before))
        return 0;
    if (inv->total >= (inv->page - 1) * inv->size && inv->total < inv->page * inv->size) {
        json_t *j = json_pack("{s:s, s:b}", "id", cn, "connected", is_connected(inv, cn));
        json_object_set_new(j, "lastSeen", time_or_null(known ? seen.last_seen : 0));
        json_object_set_new(j, "notAfter", time_or_null(known ? seen.not_after : 0));
        json_array_append_new(inv->items, j);
    }
    inv->total++;
    return 0;
}

static int parse_days(struct api_req *r, int64_t *before)
{
    const char *s = api_query(r, "expiringWithinDays");
    *before = 0;
    if (!s) return 0;
    char *end = NULL;
    errno = 0;
    long d = isdigit((unsigned char)*s) ? strtol(s, &end, 10) : -1;
    if (d < 0 || errno || !end || *end || d > MAX_EXPIRY_DAYS) {
        ignore_result(
            api_reply_error(r, 422, "expiringWithinDays must be an integer from 0 to 36500"));
        return ERR_INVALID;
    }
    *before = (int64_t)time(NULL) + (int64_t)d * 86400;
    return 0;
}

int api_h_device_list(struct api_req *r)
{
    const char *tenant;
    struct inventory inv = {.r = r, .q = api_query(r, "q")};
    GUARD(live_tenant(r, &tenant));
    GUARD(api_paging(r, &inv.page, &inv.size));
    GUARD(parse_days(r, &inv.expiring_before));
    if (r->api->cfg.connections)
        GUARD(r->api->cfg.connections(r->api->cfg.hook_arg, tenant, &inv.live, &inv.n_live));
    if (inv.n_live) qsort(inv.live, inv.n_live, sizeof *inv.live, by_identity);
    inv.items = json_array();
    int rc = store_device_list(r->api->st, tenant, inventory_row, &inv);
    free(inv.live);
    if (rc < 0) {
        json_decref(inv.items);
        return rc;
    }
    return api_reply_json(r, 200, api_page(r, "devices", inv.items, inv.page, inv.size, inv.total));
}
