/* libmicrohttpd glue for the REST API: route table, body collection under a
 * size limit, Basic/Bearer authentication against the trust index, dispatch
 * and the reply helpers. A thread per connection; handlers touch only the
 * store and the trust index, both thread-safe. */
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
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>

#include "api/handlers.h"
#include "core/buf.h"
#include "core/log.h"
#include "identity/trust.h"

struct route {
    const char *method;
    const char *path;
    api_handler fn;
};

/* Every reply, API or console: scripts and styles from this origin only, no
 * inline script, no framing. */
#define API_CSP                                                                                    \
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "              \
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

static const struct route routes[] = {
    {"POST", "/tenant/tenants", api_h_tenant_create},
    {"GET", "/tenant/tenants", api_h_tenant_list},
    {"GET", "/tenant/tenants/{tenantId}", api_h_tenant_get},
    {"POST", "/tenant/tenants/{tenantId}/trusted-certificates", api_h_cert_create},
    {"GET", "/tenant/tenants/{tenantId}/trusted-certificates", api_h_cert_list},
    {"POST", "/tenant/tenants/{tenantId}/trusted-certificates/bulk", api_h_cert_bulk},
    {"GET", "/tenant/tenants/{tenantId}/trusted-certificates/{fingerprint}", api_h_cert_get},
    {"PUT", "/tenant/tenants/{tenantId}/trusted-certificates/{fingerprint}", api_h_cert_update},
    {"DELETE", "/tenant/tenants/{tenantId}/trusted-certificates/{fingerprint}", api_h_cert_delete},
    {"POST", "/tenant/tenants/{tenantId}/trusted-certificates-pop/{fingerprint}/verification-code",
     api_h_pop_code},
    {"POST", "/tenant/tenants/{tenantId}/trusted-certificates-pop/{fingerprint}/pop",
     api_h_pop_verify},
    {"POST", "/tenant/tenants/{tenantId}/trusted-certificates-pop/{fingerprint}/confirmed",
     api_h_pop_confirm},
    {"GET", "/tenant/tenants/{tenantId}/device-token-key", api_h_token_key},
    {"PUT", "/tenant/trusted-certificates/settings/crl", api_h_crl_put},
    {"GET", "/tenant/trusted-certificates/settings/crl", api_h_crl_get},
    {"POST", "/tenant/trusted-certificates/verify-cert-chain", api_h_verify_chain},
    {"GET", "/tenant/options", api_h_option_list},
    {"POST", "/tenant/options", api_h_option_create},
    {"GET", "/tenant/options/{category}/{key}", api_h_option_get},
    {"PUT", "/tenant/options/{category}/{key}", api_h_option_put},
    {"DELETE", "/tenant/options/{category}/{key}", api_h_option_delete},
    {"GET", "/user/currentUser", api_h_current_user},
    {"GET", "/user/{tenantId}/users", api_h_user_list},
    {"POST", "/user/{tenantId}/users", api_h_user_create},
    {"GET", "/user/{tenantId}/users/{userName}", api_h_user_get},
    {"POST", "/devicecontrol/bulkNewDeviceRequests", api_h_bulk_register},
    {"POST", "/devicecontrol/newDeviceRequests", api_h_single_register},
    {"GET", "/devices", api_h_device_list},
    {"GET", "/devices/connections", api_h_connection_list},
    {"DELETE", "/devices/connections/{clientId}", api_h_connection_delete},
    {"GET", "/devices/refusals", api_h_refusal_list},
    {"GET", "/metrics", api_h_metrics},
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

json_t *api_page(const struct api_req *r, const char *key, json_t *items, size_t page, size_t size,
                 size_t total)
{
    json_t *j = json_object();
    json_object_set_new(j, key, items);
    size_t pages = total ? (total + size - 1) / size : 0;
    json_object_set_new(j, "statistics",
                        json_pack("{s:I, s:I, s:I}", "currentPage", (json_int_t)page, "pageSize",
                                  (json_int_t)size, "totalPages", (json_int_t)pages));
    char *self = api_url(r, "%s?pageSize=%zu&currentPage=%zu", r->path, size, page);
    if (self) json_object_set_new(j, "self", json_string(self));
    free(self);
    if (page < pages) {
        char *next = api_url(r, "%s?pageSize=%zu&currentPage=%zu", r->path, size, page + 1);
        if (next) json_object_set_new(j, "next", json_string(next));
        free(next);
    }
    if (page > 1) {
        char *prev = api_url(r, "%s?pageSize=%zu&currentPage=%zu", r->path, size, page - 1);
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

json_t *api_user_json(const struct api_req *r, const struct store_user *u)
{
    char *self = api_url(r, "/user/%s/users/%s", u->tenant, u->name);
    json_t *roles = json_array();
    for (unsigned i = 0; i < STORE_ROLE_COUNT; i++)
        if (u->roles & (1u << i))
            json_array_append_new(roles, json_pack("{s:s, s:s}", "id", store_role_name(i), "name",
                                                   store_role_name(i)));
    json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:b, s:b, s:o}", "id", u->name, "userName", u->name,
                          "self", self ? self : "", "email", u->email, "enabled", 1, "deviceUser",
                          u->device, "effectiveRoles", roles);
    free(self);
    return j;
}

/* ---- authentication ---- */

/* Decodes standard base64 (with padding) into out; returns the length or -1. */
static int b64_decode(const char *in, size_t len, unsigned char *out, size_t cap)
{
    if (len == 0 || len % 4 != 0 || len / 4 * 3 > cap || len > INT32_MAX) return -1;
    int n = EVP_DecodeBlock(out, (const unsigned char *)in, (int)len);
    if (n < 0) return -1;
    if (in[len - 1] == '=') n--;
    if (in[len - 2] == '=') n--;
    return n;
}

int api_authenticate(struct api_req *r)
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
    if (strncasecmp(h, "Basic ", 6) != 0) return ERR_AUTH;
    const char *b = h + 6;
    while (*b == ' ') b++;
    unsigned char dec[768];
    int n = b64_decode(b, strlen(b), dec, sizeof dec - 1);
    if (n <= 0) return ERR_AUTH;
    dec[n] = '\0';
    char *colon = memchr(dec, ':', (size_t)n);
    if (!colon) return ERR_AUTH;
    *colon = '\0';
    char *slash = strchr((char *)dec, '/');
    if (!slash) return ERR_AUTH;
    *slash = '\0';
    const char *tenant = (const char *)dec, *user = slash + 1, *pw = colon + 1;
    size_t pw_len = (size_t)n - (size_t)(pw - (const char *)dec);
    int rc = ERR_AUTH;
    size_t tl = strlen(tenant), ul = strlen(user);
    if (tl < sizeof r->tenant && ul < sizeof r->user &&
        trust_check_password(r->api->ti, tenant, user, pw, pw_len, &r->roles) == 0) {
        memcpy(r->tenant, tenant, tl + 1);
        memcpy(r->user, user, ul + 1);
        rc = 0;
    }
    OPENSSL_cleanse(dec, sizeof dec);
    return rc;
}

/* ---- dispatch ---- */

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

/* Does the route's template match the request's segments? */
static bool route_matches(const struct route *rt, const struct api_req *r)
{
    char tmpl[256];
    char *save = NULL;
    int i = 0;
    snprintf(tmpl, sizeof tmpl, "%s", rt->path);
    for (char *s = strtok_r(tmpl, "/", &save); s; s = strtok_r(NULL, "/", &save), i++) {
        if (i >= r->nseg) return false;
        if (s[0] == '{') continue;
        if (strcmp(s, r->seg[i]) != 0) return false;
    }
    return i == r->nseg;
}

static void dispatch(struct api_req *r)
{
    char copy[2048];
    const struct route *found = NULL;
    bool path_known = false;
    if (strlen(r->path) >= sizeof copy) {
        ignore_result(api_reply_error(r, 404, "No such resource"));
        return;
    }
    snprintf(copy, sizeof copy, "%s", r->path);
    if (split_path(r, copy) < 0) {
        ignore_result(api_reply_error(r, 404, "No such resource"));
        return;
    }
    for (size_t i = 0; i < NROUTES && !found; i++) {
        if (!route_matches(&routes[i], r)) continue;
        path_known = true;
        if (strcmp(routes[i].method, r->method) == 0) found = &routes[i];
    }
    if (!found && !path_known && api_console_serve(r)) return;
    if (!found) {
        ignore_result(api_reply_error(r, path_known ? 405 : 404,
                                      path_known ? "Method not allowed" : "No such resource"));
        return;
    }
    /* GET /metrics authenticates itself: it also takes the metrics token. */
    if (found->fn != api_h_metrics && api_authenticate(r) < 0) {
        ignore_result(api_reply_error(r, 401, "Invalid or missing credentials"));
        return;
    }
    int rc = found->fn(r);
    if (rc < 0 && !r->status) {
        int status = err_http_status(rc);
        ignore_result(api_reply_error(r, status, status >= 500 ? "Internal error" : err_str(rc)));
    } else if (!r->status) {
        ignore_result(api_reply_error(r, 500, "Internal error"));
    }
}

/* ---- libmicrohttpd callbacks ---- */

struct conn_state {
    struct buf body;
    bool too_large;
};

static enum MHD_Result send_reply(struct MHD_Connection *conn, struct api_req *r)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(r->resp_len, r->resp ? r->resp : (void *)"",
                                        r->resp ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!resp) {
        free(r->resp);
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
    enum MHD_Result ret = MHD_queue_response(conn, (unsigned)r->status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls)
{
    struct api *a = cls;
    struct conn_state *cs = *con_cls;
    if (!cs) {
        cs = calloc(1, sizeof *cs);
        if (!cs) return MHD_NO;
        buf_init(&cs->body, a->max_body + 1);
        *con_cls = cs;
        return MHD_YES;
    }
    if (*upload_size) {
        if (!cs->too_large && buf_append(&cs->body, upload, *upload_size) < 0) {
            cs->too_large = true;
            buf_free(&cs->body);
        }
        *upload_size = 0;
        return MHD_YES;
    }
    struct api_req r;
    memset(&r, 0, sizeof r);
    r.api = a;
    r.conn = conn;
    r.method = method;
    r.path = url;
    if (cs->too_large || buf_used(&cs->body) > a->max_body) {
        ignore_result(api_reply_error(&r, 413, "The request body is too large"));
    } else if (buf_append(&cs->body, "", 1) < 0) {
        ignore_result(api_reply_error(&r, 413, "The request body is too large"));
    } else {
        r.body = (const char *)buf_head(&cs->body);
        r.body_len = buf_used(&cs->body) - 1;
        dispatch(&r);
    }
    enum MHD_Result ret = send_reply(conn, &r);
    free(r.location);
    return ret;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct conn_state *cs = *con_cls;
    if (!cs) return;
    buf_free(&cs->body);
    free(cs);
    *con_cls = NULL;
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *data = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (cap - len < 4097) {
            if (cap > (1u << 20)) break; /* a key or certificate file is small */
            cap = cap ? cap * 2 : 8192;
            char *p = realloc(data, cap);
            if (!p) break;
            data = p;
        }
        size_t n = fread(data + len, 1, cap - len - 1, f);
        len += n;
        if (n == 0) {
            data[len] = '\0';
            fclose(f);
            return data;
        }
    }
    fclose(f);
    free(data);
    return NULL;
}

static int api_free(struct api *a, int rc)
{
    if (a->daemon) MHD_stop_daemon(a->daemon);
    if (a->tls_key) OPENSSL_cleanse(a->tls_key, strlen(a->tls_key));
    free(a->tls_key);
    free(a->tls_cert);
    EVP_PKEY_free(a->crl_key);
    free(a);
    return rc;
}

int api_start(const struct api_config *cfg, struct store *st, struct trust_index *ti,
              struct api **out)
{
    struct api *a = calloc(1, sizeof *a);
    if (!a) return ERR_NOMEM;
    a->cfg = *cfg;
    if (!a->cfg.max_connections) a->cfg.max_connections = 256;
    if (!a->cfg.timeout_s) a->cfg.timeout_s = 30;
    a->st = st;
    a->ti = ti;
    a->max_body = cfg->max_body_bytes ? cfg->max_body_bytes : API_DEFAULT_MAX_BODY;
    if (cfg->console_dir && *cfg->console_dir)
        snprintf(a->console_dir, sizeof a->console_dir, "%s", cfg->console_dir);
    else
        api_console_default_dir(a->console_dir, sizeof a->console_dir);
    if (cfg->node && *cfg->node)
        snprintf(a->node, sizeof a->node, "%s", cfg->node);
    else if (gethostname(a->node, sizeof a->node - 1) != 0)
        snprintf(a->node, sizeof a->node, "certmq");
    a->crl_key = EVP_EC_gen("P-256");
    if (!a->crl_key) return api_free(a, ERR_INTERNAL);
    unsigned flags =
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ERROR_LOG;
    if (cfg->certfile && *cfg->certfile && cfg->keyfile && *cfg->keyfile) {
        a->tls_cert = read_file(cfg->certfile);
        a->tls_key = read_file(cfg->keyfile);
        if (!a->tls_cert || !a->tls_key) {
            log_error("api: cannot read %s or %s", cfg->certfile, cfg->keyfile);
            return api_free(a, ERR_IO);
        }
        a->tls = true;
        flags |= MHD_USE_TLS;
    }
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
    const char *addr = cfg->bind_addr && *cfg->bind_addr ? cfg->bind_addr : NULL;
    if (addr && inet_pton(AF_INET6, addr, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(cfg->port);
        flags |= MHD_USE_IPv6;
    } else {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(cfg->port);
        v4->sin_addr.s_addr = htonl(INADDR_ANY);
        if (addr && inet_pton(AF_INET, addr, &v4->sin_addr) != 1) {
            log_error("api: bad listen address %s", addr);
            return api_free(a, ERR_INVALID);
        }
    }
    if (a->tls)
        a->daemon = MHD_start_daemon(
            flags, cfg->port, NULL, NULL, on_request, a, MHD_OPTION_SOCK_ADDR, &ss,
            MHD_OPTION_NOTIFY_COMPLETED, on_completed, a, MHD_OPTION_CONNECTION_TIMEOUT,
            (unsigned)a->cfg.timeout_s, MHD_OPTION_CONNECTION_LIMIT,
            (unsigned)a->cfg.max_connections, MHD_OPTION_HTTPS_MEM_CERT, a->tls_cert,
            MHD_OPTION_HTTPS_MEM_KEY, a->tls_key, MHD_OPTION_END);
    else
        a->daemon = MHD_start_daemon(flags, cfg->port, NULL, NULL, on_request, a,
                                     MHD_OPTION_SOCK_ADDR, &ss, MHD_OPTION_NOTIFY_COMPLETED,
                                     on_completed, a, MHD_OPTION_CONNECTION_TIMEOUT,
                                     (unsigned)a->cfg.timeout_s, MHD_OPTION_CONNECTION_LIMIT,
                                     (unsigned)a->cfg.max_connections, MHD_OPTION_END);
    if (!a->daemon) {
        log_error("api: cannot listen on port %u", (unsigned)cfg->port);
        return api_free(a, ERR_IO);
    }
    *out = a;
    return 0;
}

void api_stop(struct api *a)
{
    if (a) ignore_result(api_free(a, 0));
}
