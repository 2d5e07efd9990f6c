/* libmicrohttpd glue for the REST API: route table, the decisions made on a
 * request's head (target, framing, route, credentials, role, length) before
 * its body is read, body collection under the limits (bulk CSV is parsed
 * as it arrives instead, csvupload.c), dispatch and the reply helpers.
 * Handlers run on the daemon's pool threads and touch only the store and
 * the trust index, both thread-safe. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>

#include "api/handlers.h"
#include "api/httpcheck.h"
#include "api/login.h"
#include "core/buf.h"
#include "core/log.h"
#include "identity/trust.h"

/* What a route's caller must be, checked on the headers before the body
 * is read (EARLY_NONE: only the handler decides). */
enum route_early {
    EARLY_NONE,
    EARLY_TENANT_ADMIN, /* administers the {tenantId} of the path */
    EARLY_MANAGEMENT,   /* the management tenant's admin */
    EARLY_REGISTRAR,    /* ROLE_TENANT_ADMIN or ROLE_DEVICE_CONTROL_ADMIN */
    EARLY_OWN_AUTH,     /* no user login: the handler checks its own credentials (EST) */
};

/* Every reply, API or console: scripts and styles from this origin only, no
 * inline script, no framing. */
#define API_CSP                                                                                    \
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "              \
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

struct route {
    const char *method;
    const char *path;
    api_handler fn;
    enum route_early early;
};

static const struct route routes[] = {
    {"POST", "/tenant/tenants", api_h_tenant_create, EARLY_MANAGEMENT},
    {"GET", "/tenant/tenants", api_h_tenant_list, EARLY_MANAGEMENT},
    {"GET", "/tenant/tenants/{tenantId}", api_h_tenant_get, EARLY_TENANT_ADMIN},
    {"POST", "/tenant/tenants/{tenantId}/trusted-certificates", api_h_cert_create,
     EARLY_TENANT_ADMIN},
    {"GET", "/tenant/tenants/{tenantId}/trusted-certificates", api_h_cert_list, EARLY_TENANT_ADMIN},
    {"POST", "/tenant/tenants/{tenantId}/trusted-certificates/bulk", api_h_cert_bulk,
     EARLY_TENANT_ADMIN},
    {"GET", "/tenant/tenants/{tenantId}/trusted-certificates/{fingerprint}", api_h_cert_get,
     EARLY_TENANT_ADMIN},
    {"PUT", "/tenant/tenants/{tenantId}/trusted-certificates/{fingerprint}", api_h_cert_update,
     EARLY_TENANT_ADMIN},
    {"DELETE", "/tenant/tenants/{tenantId}/trusted-certificates/{fingerprint}", api_h_cert_delete,
     EARLY_TENANT_ADMIN},
    {"POST", "/tenant/tenants/{tenantId}/trusted-certificates-pop/{fingerprint}/verification-code",
     api_h_pop_code, EARLY_TENANT_ADMIN},
    {"POST", "/tenant/tenants/{tenantId}/trusted-certificates-pop/{fingerprint}/pop",
     api_h_pop_verify, EARLY_TENANT_ADMIN},
    {"POST", "/tenant/tenants/{tenantId}/trusted-certificates-pop/{fingerprint}/confirmed",
     api_h_pop_confirm, EARLY_MANAGEMENT},
    {"GET", "/tenant/tenants/{tenantId}/device-token-key", api_h_token_key, EARLY_TENANT_ADMIN},
    {"GET", "/tenant/tenants/{tenantId}/authorization-rules", api_h_authz_list, EARLY_TENANT_ADMIN},
    {"POST", "/tenant/tenants/{tenantId}/authorization-rules", api_h_authz_create,
     EARLY_TENANT_ADMIN},
    {"PUT", "/tenant/tenants/{tenantId}/authorization-rules/{id}", api_h_authz_update,
     EARLY_TENANT_ADMIN},
    {"DELETE", "/tenant/tenants/{tenantId}/authorization-rules/{id}", api_h_authz_delete,
     EARLY_TENANT_ADMIN},
    {"PUT", "/tenant/trusted-certificates/settings/crl", api_h_crl_put, EARLY_NONE},
    {"GET", "/tenant/trusted-certificates/settings/crl", api_h_crl_get, EARLY_NONE},
    {"POST", "/tenant/trusted-certificates/verify-cert-chain", api_h_verify_chain, EARLY_NONE},
    {"GET", "/tenant/options", api_h_option_list, EARLY_NONE},
    {"POST", "/tenant/options", api_h_option_create, EARLY_NONE},
    {"GET", "/tenant/options/{category}/{key}", api_h_option_get, EARLY_NONE},
    {"PUT", "/tenant/options/{category}/{key}", api_h_option_put, EARLY_NONE},
    {"DELETE", "/tenant/options/{category}/{key}", api_h_option_delete, EARLY_NONE},
    {"GET", "/user/currentUser", api_h_current_user, EARLY_NONE},
    {"GET", "/user/{tenantId}/users", api_h_user_list, EARLY_TENANT_ADMIN},
    {"POST", "/user/{tenantId}/users", api_h_user_create, EARLY_TENANT_ADMIN},
    {"GET", "/user/{tenantId}/users/{userName}", api_h_user_get, EARLY_NONE},
    {"DELETE", "/user/{tenantId}/users/{userName}", api_h_user_delete, EARLY_TENANT_ADMIN},
    {"GET", "/user/{tenantId}/users/{userName}/authorization-roles", api_h_authz_roles_get,
     EARLY_TENANT_ADMIN},
    {"PUT", "/user/{tenantId}/users/{userName}/authorization-roles", api_h_authz_roles_put,
     EARLY_TENANT_ADMIN},
    {"POST", "/devicecontrol/bulkNewDeviceRequests", api_h_bulk_register, EARLY_REGISTRAR},
    {"POST", "/devicecontrol/newDeviceRequests", api_h_single_register, EARLY_NONE},
    {"GET", "/devices", api_h_device_list, EARLY_NONE},
    {"GET", "/devices/connections", api_h_connection_list, EARLY_NONE},
    {"DELETE", "/devices/connections/{clientId}", api_h_connection_delete, EARLY_NONE},
    {"GET", "/devices/refusals", api_h_refusal_list, EARLY_NONE},
    {"GET", "/metrics", api_h_metrics, EARLY_NONE},
    {"GET", "/health", api_h_health, EARLY_OWN_AUTH},
    {"POST", "/certificate-authority", api_h_ca_create, EARLY_NONE},
    {"GET", "/certificate-authority", api_h_ca_get, EARLY_NONE},
    {"DELETE", "/certificate-authority", api_h_ca_delete, EARLY_NONE},
    {"POST", "/certificate-authority/renew", api_h_ca_renew, EARLY_NONE},
    {"GET", "/certificate-authority/issued-certificates", api_h_ca_issued_list, EARLY_NONE},
    {"POST", "/certificate-authority/issued-certificates/{serial}/revoke", api_h_ca_revoke,
     EARLY_NONE},
    {"GET", "/certificate-authority/{tenantId}/crl", api_h_ca_crl, EARLY_OWN_AUTH},
    {"POST", "/tenant/tenants/{tenantId}/enrollment-tokens", api_h_enroll_token_create,
     EARLY_TENANT_ADMIN},
    {"GET", "/.well-known/est/cacerts", api_h_est_cacerts, EARLY_OWN_AUTH},
    {"POST", "/.well-known/est/simpleenroll", api_h_est_enroll, EARLY_OWN_AUTH},
    {"POST", "/.well-known/est/simplereenroll", api_h_est_reenroll, EARLY_OWN_AUTH},
    {"GET", "/.well-known/est/{tenantId}/cacerts", api_h_est_cacerts, EARLY_OWN_AUTH},
    {"POST", "/.well-known/est/{tenantId}/simpleenroll", api_h_est_enroll, EARLY_OWN_AUTH},
    {"POST", "/.well-known/est/{tenantId}/simplereenroll", api_h_est_reenroll, EARLY_OWN_AUTH},
};
#define NROUTES (sizeof routes / sizeof routes[0])

static struct api_route_info route_info[NROUTES];

size_t api_routes(const struct api_route_info **out)
{
    for (size_t i = 0; i < NROUTES; i++)
        route_info[i] = (struct api_route_info){routes[i].method, routes[i].path};
    *out = route_info;
    return NROUTES;
}

/* ---- replies ---- */

int api_reply_raw(struct api_req *r, int status, const char *ctype, char *data, size_t len)
{
    free(r->resp);
    r->status = status;
    r->ctype = ctype;
    r->resp = data;
    r->resp_len = len;
    return 0;
}

int api_reply_json(struct api_req *r, int status, json_t *j)
{
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!s) return ERR_NOMEM;
    return api_reply_raw(r, status, "application/json", s, strlen(s));
}

static const char *error_code(int status)
{
    switch (status) {
    case 400: return "general/badRequest";
    case 401: return "security/Unauthorized";
    case 403: return "security/Forbidden";
    case 404: return "general/notFound";
    case 405: return "general/methodNotAllowed";
    case 409: return "general/conflict";
    case 413: return "general/requestTooLarge";
    case 503: return "general/serviceUnavailable";
    case 422: return "general/unprocessableEntity";
    default: return "general/internalError";
    }
}

int api_reply_error(struct api_req *r, int status, const char *message)
{
    json_t *j = json_pack("{s:s, s:s}", "error", error_code(status), "message", message);
    return api_reply_json(r, status, j);
}

int api_reply_empty(struct api_req *r, int status)
{
    return api_reply_raw(r, status, NULL, NULL, 0);
}

/* ---- request helpers ---- */

const char *api_query(const struct api_req *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
}

const char *api_header(const struct api_req *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

json_t *api_body_json(struct api_req *r)
{
    json_error_t e;
    json_t *j = r->body_len ? json_loadb(r->body, r->body_len, 0, &e) : NULL;
    if (!j || !json_is_object(j)) {
        json_decref(j);
        ignore_result(api_reply_error(r, 400, "The request body is not a JSON object"));
        return NULL;
    }
    return j;
}

static const char *memmem_str(const char *h, size_t hl, const char *n)
{
    return memmem(h, hl, n, strlen(n));
}

/* Finds the multipart part named "file": boundary from Content-Type, then
 * the part whose Content-Disposition names it; its data runs to the next
 * CRLF--boundary. Never reads past the body. */
int api_body_file(struct api_req *r, const char **data, size_t *len)
{
    const char *ct = api_header(r, MHD_HTTP_HEADER_CONTENT_TYPE);
    if (!ct || strncasecmp(ct, "multipart/", 10) != 0) {
        *data = r->body;
        *len = r->body_len;
        return 0;
    }
    const char *b = strcasestr(ct, "boundary=");
    ENSURE(b, ERR_INVALID);
    b += 9;
    char delim[256];
    size_t bl = strcspn(b, ";");
    if (bl >= 2 && b[0] == '"' && b[bl - 1] == '"') {
        b++;
        bl -= 2;
    }
    ENSURE(bl > 0 && bl < 200, ERR_INVALID);
    snprintf(delim, sizeof delim, "--%.*s", (int)bl, b);
    const char *p = r->body, *end = r->body + r->body_len;
    for (;;) {
        const char *start = memmem_str(p, (size_t)(end - p), delim);
        if (!start) return ERR_INVALID;
        p = start + strlen(delim);
        if (end - p >= 2 && p[0] == '-' && p[1] == '-') return ERR_INVALID; /* last boundary */
        const char *hdr_end = memmem_str(p, (size_t)(end - p), "\r\n\r\n");
        if (!hdr_end) return ERR_INVALID;
        const char *name = memmem_str(p, (size_t)(hdr_end - p), "name=\"file\"");
        const char *body = hdr_end + 4;
        char close[260];
        snprintf(close, sizeof close, "\r\n%s", delim);
        const char *stop = memmem_str(body, (size_t)(end - body), close);
        if (!stop) return ERR_INVALID;
        if (name) {
            *data = body;
            *len = (size_t)(stop - body);
            return 0;
        }
        p = stop + 2;
    }
}

char *api_url(const struct api_req *r, const char *fmt, ...)
{
    char path[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(path, sizeof path, fmt, ap);
    va_end(ap);
    const char *host = api_header(r, MHD_HTTP_HEADER_HOST);
    if (!host || !*host || strpbrk(host, "\"\\ \r\n")) host = "localhost";
    char *out = NULL;
    if (asprintf(&out, "%s://%s%s", r->api->tls ? "https" : "http", host, path) < 0) return NULL;
    return out;
}

static bool parse_size(const char *s, size_t *out)
{
    char *end = NULL;
    if (!s || !*s || !isdigit((unsigned char)*s)) return false;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end) return false;
    *out = (size_t)v;
    return true;
}

int api_paging(struct api_req *r, size_t *page, size_t *size)
{
    const char *p = api_query(r, "currentPage"), *s = api_query(r, "pageSize");
    *page = 1;
    *size = API_PAGE_DEFAULT;
    if (p && (!parse_size(p, page) || *page == 0)) {
        ignore_result(api_reply_error(r, 422, "currentPage must be a positive integer"));
        return ERR_INVALID;
    }
    if (s && (!parse_size(s, size) || *size == 0)) {
        ignore_result(api_reply_error(r, 422, "pageSize must be a positive integer"));
        return ERR_INVALID;
    }
    if (*size > API_PAGE_MAX) *size = API_PAGE_MAX;
    if (*page > SIZE_MAX / *size) *page = SIZE_MAX / *size;
    return 0;
}

struct query_ctx {
    char *out;
    size_t cap, len;
};

static void query_put(struct query_ctx *q, const char *s)
{
    for (; *s && q->len + 4 < q->cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (isalnum(c) || strchr("-._~", c))
            q->out[q->len++] = (char)c;
        else
            q->len += (size_t)snprintf(q->out + q->len, q->cap - q->len, "%%%02X", c);
    }
    q->out[q->len] = 0;
}

static void query_sep(struct query_ctx *q, char c)
{
    if (q->len + 2 < q->cap) {
        q->out[q->len++] = c;
        q->out[q->len] = 0;
    }
}

static enum MHD_Result query_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                 const char *value)
{
    struct query_ctx *q = cls;
    if (!strcmp(key, "pageSize") || !strcmp(key, "currentPage")) return MHD_YES;
    query_sep(q, '&');
    query_put(q, key);
    if (value) {
        query_sep(q, '=');
        query_put(q, value);
    }
    return MHD_YES;
}

/* The request's other query arguments (filters), for the paging links. */
static void page_filters(const struct api_req *r, char *out, size_t cap)
{
    struct query_ctx q = {out, cap, 0};
    out[0] = 0;
    if (r->conn) MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, query_arg, &q);
}

json_t *api_page(const struct api_req *r, const char *key, json_t *items, size_t page, size_t size,
                 size_t total)
{
    char filters[1024];
    page_filters(r, filters, sizeof filters);
    json_t *j = json_object();
    json_object_set_new(j, key, items);
    size_t pages = total ? (total + size - 1) / size : 0;
    json_object_set_new(j, "statistics",
                        json_pack("{s:I, s:I, s:I}", "currentPage", (json_int_t)page, "pageSize",
                                  (json_int_t)size, "totalPages", (json_int_t)pages));
    char *self = api_url(r, "%s?pageSize=%zu&currentPage=%zu%s", r->path, size, page, filters);
    if (self) json_object_set_new(j, "self", json_string(self));
    free(self);
    if (page < pages) {
        char *next =
            api_url(r, "%s?pageSize=%zu&currentPage=%zu%s", r->path, size, page + 1, filters);
        if (next) json_object_set_new(j, "next", json_string(next));
        free(next);
    }
    if (page > 1) {
        char *prev =
            api_url(r, "%s?pageSize=%zu&currentPage=%zu%s", r->path, size, page - 1, filters);
        if (prev) json_object_set_new(j, "prev", json_string(prev));
        free(prev);
    }
    return j;
}

void api_iso_time(int64_t t, char *out, size_t cap)
{
    struct tm tm;
    time_t tt = (time_t)t;
    if (!gmtime_r(&tt, &tm)) {
        snprintf(out, cap, "1970-01-01T00:00:00.000Z");
        return;
    }
    strftime(out, cap, "%Y-%m-%dT%H:%M:%S.000Z", &tm);
}

bool api_valid_id(const char *s, size_t max)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n >= max) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!isalnum(c) && c != '_' && c != '-' && c != '.' && c != '@') return false;
    }
    return true;
}

bool api_is_management_admin(const struct api_req *r)
{
    return (r->roles & STORE_ROLE_MANAGEMENT_ADMIN) &&
           strcmp(r->tenant, API_MANAGEMENT_TENANT) == 0;
}

bool api_may_admin(const struct api_req *r, const char *tenant)
{
    if (api_is_management_admin(r)) return true;
    return (r->roles & STORE_ROLE_TENANT_ADMIN) && strcmp(r->tenant, tenant) == 0;
}

/* 403 unless the caller administers tenant; 404 when it does not exist. */
int api_tenant_gate(struct api_req *r, const char *tenant)
{
    struct store_tenant t;
    if (!api_may_admin(r, tenant)) {
        ignore_result(api_reply_error(r, 403, "Not allowed for this tenant"));
        return ERR_FORBIDDEN;
    }
    int rc = store_tenant_get(r->api->st, tenant, &t);
    if (rc == ERR_NOT_FOUND) {
        ignore_result(api_reply_error(r, 404, "No such tenant"));
        return rc;
    }
    return rc;
}

/* ---- authentication ---- */

/* Fills r->tenant/user/roles from the Authorization header. Returns 0,
 * ERR_MALFORMED for a NUL byte in Basic credentials, or ERR_AUTH when
 * credentials are absent or wrong. */
/* The verified login becomes the request's caller. */
static void login_take(struct api_req *r, const struct api_login *l)
{
    snprintf(r->tenant, sizeof r->tenant, "%s", l->tenant);
    snprintf(r->user, sizeof r->user, "%s", l->user);
}

/* Identifies the caller from the headers: 0, 1 when a password check was
 * parked (api_login.h), or the refusal's code. */
static int authenticate(struct api_req *r, struct api_login *login)
{
    const char *h = api_header(r, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h) return ERR_AUTH;
    if (strncasecmp(h, "Bearer ", 7) == 0) {
        if (!r->api->cfg.bearer_check) return ERR_AUTH;
        if (r->api->cfg.bearer_check(r->api->cfg.hook_arg, h + 7, r->tenant, sizeof r->tenant,
                                     r->user, sizeof r->user) != 0)
            return ERR_AUTH;
        struct store_user u;
        if (store_user_get(r->api->st, r->tenant, r->user, &u) != 0) return ERR_AUTH;
        r->roles = u.roles;
        return 0;
    }
    struct httpcheck_basic b;
    int rc = httpcheck_basic(h, strlen(h), &b);
    if (rc == 0) rc = api_login_start(r->api, login, r->conn, &b, &r->roles);
    if (rc == 0) login_take(r, login);
    OPENSSL_cleanse(&b, sizeof b);
    return rc;
}

/* ---- routing ---- */

static int split_path(struct api_req *r, char *copy)
{
    r->nseg = 0;
    char *save = NULL;
    for (char *s = strtok_r(copy, "/", &save); s; s = strtok_r(NULL, "/", &save)) {
        if (r->nseg == API_MAX_SEGS) return ERR_NOT_FOUND;
        r->seg[r->nseg++] = s;
    }
    return 0;
}

/* Does the route's template match the request's segments? *tenant_seg is
 * the index of its {tenantId} segment (-1: none). */
static bool route_matches(const struct route *rt, const struct api_req *r, int *tenant_seg)
{
    char tmpl[256];
    char *save = NULL;
    int i = 0;
    *tenant_seg = -1;
    snprintf(tmpl, sizeof tmpl, "%s", rt->path);
    for (char *s = strtok_r(tmpl, "/", &save); s; s = strtok_r(NULL, "/", &save), i++) {
        if (i >= r->nseg) return false;
        if (!strcmp(s, "{tenantId}")) *tenant_seg = i;
        if (s[0] == '{') continue;
        if (strcmp(s, r->seg[i]) != 0) return false;
    }
    return i == r->nseg;
}

/* The route for the request, or a 404/405 reply. */
static const struct route *find_route(struct api_req *r, char *copy, size_t cap, int *tenant_seg)
{
    bool path_known = false;
    if (strlen(r->path) >= cap || (snprintf(copy, cap, "%s", r->path), split_path(r, copy) < 0)) {
        ignore_result(api_reply_error(r, 404, "No such resource"));
        return NULL;
    }
    for (size_t i = 0; i < NROUTES; i++) {
        if (!route_matches(&routes[i], r, tenant_seg)) continue;
        path_known = true;
        if (strcmp(routes[i].method, r->method) == 0) return &routes[i];
    }
    if (!path_known && api_console_serve(r)) return NULL; /* the console's static files */
    ignore_result(api_reply_error(r, path_known ? 405 : 404,
                                  path_known ? "Method not allowed" : "No such resource"));
    return NULL;
}

/* The role check a route allows on the headers (the handler checks again). */
static void early_gate(struct api_req *r, const struct route *rt, int tenant_seg)
{
    switch (rt->early) {
    case EARLY_NONE:
    case EARLY_OWN_AUTH: return;
    case EARLY_MANAGEMENT:
        if (!api_is_management_admin(r))
            ignore_result(
                api_reply_error(r, 403, "Only the management tenant's admin may do this"));
        return;
    case EARLY_TENANT_ADMIN:
        if (tenant_seg >= 0 && !api_may_admin(r, r->seg[tenant_seg]))
            ignore_result(api_reply_error(r, 403, "Not allowed for this tenant"));
        return;
    case EARLY_REGISTRAR:
        if (!(r->roles & (STORE_ROLE_TENANT_ADMIN | STORE_ROLE_DEVICE_CONTROL_ADMIN)))
            ignore_result(api_reply_error(r, 403,
                                          "Bulk registration needs ROLE_TENANT_ADMIN or "
                                          "ROLE_DEVICE_CONTROL_ADMIN"));
        return;
    }
}

static void run_handler(struct api_req *r, const struct route *rt)
{
    int rc = rt->fn(r);
    if (rc < 0 && !r->status) {
        int status = err_http_status(rc);
        /* 503 says what is down (the database); other 5xx stay vague. */
        const char *msg = status == 503   ? err_str(rc)
                          : status >= 500 ? "Internal error"
                                          : err_str(rc);
        ignore_result(api_reply_error(r, status, msg));
    } else if (!r->status) {
        ignore_result(api_reply_error(r, 500, "Internal error"));
    }
}

/* ---- libmicrohttpd callbacks ---- */

/* One request: its parsed head, the caller and its body so far. Owned by
 * libmicrohttpd's con_cls from the head to api_on_completed. */
struct conn_state {
    struct api_req r;
    const struct route *route;
    char path[2048]; /* r.seg point into it */
    bool bad_target; /* NUL in the raw request target */
    bool head_seen;
    bool close;       /* reply with Connection: close */
    bool too_large;   /* body over http_max_body */
    bool over_budget; /* body over http_max_body_total */
    size_t reserved;  /* bytes taken from the shared body budget */
    size_t received;  /* body bytes of a streamed route so far */
    struct buf body;
    struct api_login login;
    bool auth_parked; /* the password check is running: check_head goes on after it */
    int tenant_seg;
    struct httpcheck_framing f;
};

/* Marks a request whose raw target failed httpcheck_target (a sentinel,
 * never freed: api_on_request replaces it). */
static char bad_target_mark;

/* Called with the raw request target, before percent-decoding and the
 * query split. libmicrohttpd has cut the request line in place, writing a
 * NUL over the space before the version: when the NUL found first is not
 * that one (the version does not follow it), the target held a raw NUL. */
void *api_on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    if (!uri) return &bad_target_mark;
    size_t n = strlen(uri);
    if (httpcheck_target(uri, n) < 0 || strncmp(uri + n + 1, "HTTP/", 5) != 0)
        return &bad_target_mark;
    return NULL;
}

static enum MHD_Result add_framing(void *cls, enum MHD_ValueKind kind, const char *key,
                                   size_t key_size, const char *value, size_t value_size)
{
    httpcheck_framing_add(cls, key, key_size, value, value_size);
    return MHD_YES;
}

static void check_head_after_auth(struct api *a, struct conn_state *cs, int rc);

/* Routes whose body is parsed as it arrives (r->upload), never held. */
static bool route_streamed(const struct route *rt)
{
    return rt->fn == api_h_bulk_register;
}

static void stream_drop(struct conn_state *cs)
{
    api_csv_upload_free(cs->r.upload);
    cs->r.upload = NULL;
}

/* A streamed route holds the rows parsed from its body, never the body:
 * the shared budget is taken for what the parser holds, as that grows
 * (stream_body), not for the declared length. */
static void start_stream(struct api *a, struct conn_state *cs)
{
    struct api_req *r = &cs->r;
    if (api_csv_upload_new(r, &r->upload) < 0) {
        ignore_result(api_reply_error(r, 503, "Out of memory; retry later"));
        return;
    }
    size_t held = api_csv_upload_held(r->upload);
    if (api_budget_take(a, held) < 0) {
        stream_drop(cs);
        ignore_result(api_reply_error(r, 503, "Too many request bodies in transit; retry later"));
        return;
    }
    cs->reserved = held;
}

/* A body chunk of a streamed route: counted against http_max_body, parsed,
 * and the growth of what the parser holds taken from the shared budget.
 * Past either limit the parse is dropped and the rest of the body with it. */
static void stream_body(struct api *a, struct conn_state *cs, const char *data, size_t n)
{
    if (n > a->max_body - cs->received) {
        cs->too_large = true;
    } else {
        cs->received += n;
        api_csv_upload_feed(cs->r.upload, data, n);
        size_t held = api_csv_upload_held(cs->r.upload);
        if (held > cs->reserved && api_budget_take(a, held - cs->reserved) < 0)
            cs->over_budget = true;
        else if (held > cs->reserved)
            cs->reserved = held;
    }
    if (cs->too_large || cs->over_budget) stream_drop(cs);
}

/* Refusals on the request line and headers: the reply is set in cs->r
 * when the request is refused. Its body is then never read. */
static void check_head(struct api *a, struct MHD_Connection *conn, struct conn_state *cs)
{
    struct api_req *r = &cs->r;
    struct httpcheck_framing f = {0};
    int tenant_seg = -1;
    MHD_get_connection_values_n(conn, MHD_HEADER_KIND, add_framing, &f);
    cs->close = f.n_length ? f.length > 0 : f.n_encoding > 0;
    if (cs->bad_target) {
        ignore_result(api_reply_error(r, 400, "The request target holds a NUL byte"));
        return;
    }
    if (httpcheck_framing_result(&f) < 0) {
        cs->close = true;
        ignore_result(api_reply_error(r, 400,
                                      "Ambiguous message length (Content-Length and "
                                      "Transfer-Encoding)"));
        return;
    }
    if (!(cs->route = find_route(r, cs->path, sizeof cs->path, &tenant_seg))) return;
    cs->tenant_seg = tenant_seg;
    cs->f = f;
    /* GET /metrics also takes the metrics token instead of credentials. */
    if (cs->route->fn == api_h_metrics && api_metrics_token_ok(r)) {
        r->by_metrics_token = true;
        check_head_after_auth(a, cs, 0);
        return;
    }
    if (cs->route->early == EARLY_OWN_AUTH) {
        check_head_after_auth(a, cs, 0);
        return;
    }
    int rc = authenticate(r, &cs->login);
    if (rc == 1) {
        cs->auth_parked = true;
        return;
    }
    check_head_after_auth(a, cs, rc);
}

/* The rest of check_head, once the caller is known (rc: authenticate's). */
static void check_head_after_auth(struct api *a, struct conn_state *cs, int rc)
{
    struct api_req *r = &cs->r;
    const struct httpcheck_framing f = cs->f;
    if (rc == ERR_MALFORMED) {
        ignore_result(api_reply_error(r, 400, "The credentials hold a NUL byte"));
        return;
    }
    if (rc == ERR_LIMIT) {
        ignore_result(api_reply_error(r, 429, "Too many failed attempts; retry later"));
        return;
    }
    if (rc == ERR_QUEUE_FULL) {
        ignore_result(api_reply_error(r, 503, "Too many password checks waiting; retry later"));
        return;
    }
    if (rc < 0) {
        ignore_result(api_reply_error(r, 401, "Invalid or missing credentials"));
        return;
    }
    early_gate(r, cs->route, cs->tenant_seg);
    if (r->status) return;
    if (f.n_length && f.length > a->max_body) {
        ignore_result(api_reply_error(r, 413, "The request body is too large"));
    } else if (route_streamed(cs->route)) {
        start_stream(a, cs);
    } else if (f.n_length && api_budget_take(a, (size_t)f.length + 1) < 0) {
        ignore_result(api_reply_error(r, 503, "Too many request bodies in transit; retry later"));
    } else if (f.n_length) {
        cs->reserved = (size_t)f.length + 1;
        if (buf_reserve(&cs->body, cs->reserved) < 0) cs->too_large = true;
    }
}

static enum MHD_Result send_reply(struct MHD_Connection *conn, struct api_req *r, bool close)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(r->resp_len, r->resp ? r->resp : (void *)"",
                                        r->resp ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!resp) {
        free(r->resp);
        r->resp = NULL;
        return MHD_NO;
    }
    r->resp = NULL;
    if (r->ctype) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->ctype);
    /* The console's fetch() calls say X-Requested-With: no browser login box for them. */
    if (r->status == 401 && !api_header(r, "X-Requested-With"))
        MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Basic realm=\"certmq\"");
    MHD_add_response_header(resp, "Content-Security-Policy", API_CSP);
    MHD_add_response_header(resp, "X-Frame-Options", "DENY");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (r->location) MHD_add_response_header(resp, MHD_HTTP_HEADER_LOCATION, r->location);
    if (r->base64_body && r->status == 200)
        MHD_add_response_header(resp, "Content-Transfer-Encoding", "base64");
    if (close) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result ret = MHD_queue_response(conn, (unsigned)r->status, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* Keeps a body chunk within http_max_body and, for bodies of no declared
 * length, within the shared budget; past either the bytes are dropped. */
static void take_body(struct api *a, struct conn_state *cs, const char *data, size_t n)
{
    if (cs->too_large || cs->over_budget) return;
    if (cs->r.upload) {
        stream_body(a, cs, data, n);
        return;
    }
    size_t after = buf_used(&cs->body) + n + 1;
    if (after > cs->reserved && api_budget_take(a, after - cs->reserved) < 0) {
        cs->over_budget = true;
    } else {
        if (after > cs->reserved) cs->reserved = after;
        if (buf_used(&cs->body) + n > a->max_body || buf_append(&cs->body, data, n) < 0)
            cs->too_large = true;
    }
    if (cs->too_large || cs->over_budget) buf_free(&cs->body);
}

static struct conn_state *conn_state_new(struct api *a, struct MHD_Connection *conn,
                                         const char *url, const char *method, bool bad_target)
{
    struct conn_state *cs = calloc(1, sizeof *cs);
    if (!cs) return NULL;
    buf_init(&cs->body, a->max_body + 1);
    cs->bad_target = bad_target;
    cs->r.api = a;
    cs->r.conn = conn;
    cs->r.method = method;
    cs->r.path = url;
    return cs;
}

enum MHD_Result api_on_request(void *cls, struct MHD_Connection *conn, const char *url,
                               const char *method, const char *version, const char *upload,
                               size_t *upload_size, void **con_cls)
{
    struct api *a = cls;
    struct conn_state *cs = *con_cls == &bad_target_mark ? NULL : *con_cls;
    if (!cs) {
        cs = conn_state_new(a, conn, url, method, *con_cls == &bad_target_mark);
        *con_cls = cs;
        if (!cs) return MHD_NO;
        api_conn_head_done(a, conn, true);
        check_head(a, conn, cs);
        return cs->r.status ? send_reply(conn, &cs->r, cs->close) : MHD_YES;
    }
    if (cs->auth_parked) {
        /* Resumed: libmicrohttpd repeats the call that parked the request
         * (nothing of the body read yet); the body and the final call follow. */
        cs->auth_parked = false;
        int rc = api_login_finish(a, &cs->login, &cs->r.roles);
        if (rc == 0) login_take(&cs->r, &cs->login);
        check_head_after_auth(a, cs, rc);
        return cs->r.status ? send_reply(conn, &cs->r, cs->close) : MHD_YES;
    }
    if (*upload_size) {
        take_body(a, cs, upload, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }
    struct api_req *r = &cs->r;
    if (cs->over_budget) {
        ignore_result(api_reply_error(r, 503, "Too many request bodies in transit; retry later"));
    } else if (cs->too_large || buf_append(&cs->body, "", 1) < 0) {
        ignore_result(api_reply_error(r, 413, "The request body is too large"));
    } else {
        r->body = (const char *)buf_head(&cs->body);
        r->body_len = buf_used(&cs->body) - 1;
        run_handler(r, cs->route);
    }
    return send_reply(conn, r, false);
}

void api_on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                      enum MHD_RequestTerminationCode toe)
{
    struct conn_state *cs = *con_cls;
    *con_cls = NULL;
    if (!cs || cs == (void *)&bad_target_mark) return;
    api_login_end(cls, &cs->login);
    if (toe == MHD_REQUEST_TERMINATED_COMPLETED_OK) api_conn_head_done(cls, conn, false);
    api_budget_give(cls, cs->reserved);
    api_csv_upload_free(cs->r.upload);
    buf_free(&cs->body);
    free(cs->r.resp);
    free(cs->r.location);
    free(cs);
}
