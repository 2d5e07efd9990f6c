/* Private to src/api (the module's interface is api.h): the request type
 * http.c hands to the per-resource handlers (tenants.c, users.c, pop.c,
 * tokens.c, trusted_certs.c, crl.c, verify.c, options.c, bulk.c, tenantca.c,
 * est.c) and the reply, auth and paging helpers they share. */
#ifndef CERTMQ_API_HANDLERS_H
#define CERTMQ_API_HANDLERS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>
#include <microhttpd.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "api/api.h"
#include "store/store.h"

#define API_MAX_SEGS      12
#define API_PAGE_DEFAULT  5
#define API_PAGE_MAX      2000
#define API_MAX_CERT_BULK 100

struct api_conn;
struct api_csv_upload;
struct csv;

struct api_login;

struct api {
    struct MHD_Daemon *daemon;
    int listen_fd;
    struct api_config cfg;
    struct store *st;
    struct trust_index *ti;
    size_t max_body;
    bool tls;          /* HTTPS: certificate and key read from cfg's files */
    EVP_PKEY *crl_key; /* signs the CRLs served by GET .../settings/crl */
    /* Bytes of request bodies held or promised, all connections together
     * (atomic; api_budget_take/give). */
    _Atomic size_t body_total;
    /* Connections still sending a request head (listener.c): conns_lock
     * guards the list; the reaper thread shuts down the slow ones. */
    pthread_mutex_t conns_lock;
    pthread_cond_t reaper_cv;
    struct api_conn *conns;
    pthread_t reaper;
    bool reaper_running;
    bool stopping;
    /* Requests whose password check is running (login.c). */
    pthread_mutex_t parked_lock;
    struct api_login *parked;
    char console_dir[512]; /* resolved at start */
    char node[128];
};

struct api_req {
    struct api *api;
    struct MHD_Connection *conn;
    const char *method;
    const char *path;
    char *seg[API_MAX_SEGS]; /* decoded path segments */
    int nseg;
    const char *body; /* NUL-terminated copy of the request body */
    size_t body_len;
    /* A streamed route's body, parsed as it came (then body is ""): the
     * handler takes it with api_csv_upload_finish and sets it NULL. */
    struct api_csv_upload *upload;
    /* the authenticated caller */
    char tenant[STORE_TENANT_MAX];
    char user[STORE_NAME_MAX];
    unsigned roles;
    bool by_metrics_token; /* GET /metrics with the metrics token: no user */
    /* the reply */
    int status;
    char *resp; /* malloc'ed; handed to libmicrohttpd */
    size_t resp_len;
    const char *ctype;
    char *location;
    bool base64_body; /* Content-Transfer-Encoding: base64 (EST answers, RFC 7030) */
};

typedef int (*api_handler)(struct api_req *r);

/* metrics.c: does the request carry the configured metrics token? */
bool api_metrics_token_ok(const struct api_req *r);

/* Replies: each returns 0 so a handler can `return api_reply_...`. */
int api_reply_json(struct api_req *r, int status, json_t *j); /* steals j */
int api_reply_error(struct api_req *r, int status, const char *message);
/* Takes ownership of data (malloc'ed). */
int api_reply_raw(struct api_req *r, int status, const char *ctype, char *data, size_t len);
int api_reply_empty(struct api_req *r, int status);

/* True when the caller may administer tenant: its own tenant with
 * ROLE_TENANT_ADMIN, or any tenant as the management tenant's
 * ROLE_TENANT_MANAGEMENT_ADMIN. */
bool api_may_admin(const struct api_req *r, const char *tenant);
bool api_is_management_admin(const struct api_req *r);
/* api_may_admin() as a gate for tenant-scoped routes: replies 403, or 404
 * when the tenant does not exist, and returns negative then. */
int api_tenant_gate(struct api_req *r, const char *tenant);

const char *api_query(const struct api_req *r, const char *name);
const char *api_header(const struct api_req *r, const char *name);
/* The body as JSON, or NULL (then a 400 was already replied). */
json_t *api_body_json(struct api_req *r);
/* The multipart part named "file" (or the whole body when the request is
 * not multipart). ERR_INVALID when a multipart body has no such part. */
int api_body_file(struct api_req *r, const char **data, size_t *len);
/* csvupload.c: the CSV file of an upload (multipart part "file", or the
 * whole body when not multipart), parsed while the body arrives so that it
 * is never held whole. Feed errors are kept for finish. */
MUST_USE int api_csv_upload_new(const struct api_req *r, struct api_csv_upload **out);
void api_csv_upload_feed(struct api_csv_upload *u, const char *p, size_t n);
/* Bytes of memory u holds now: the rows so far and the readers' windows. */
size_t api_csv_upload_held(const struct api_csv_upload *u);
/* The body has ended: 0 and the table in out (csv_free); ERR_INVALID when
 * a multipart body has no complete part named "file", ERR_MALFORMED when
 * the file is not valid CSV. Frees u in every case. */
MUST_USE int api_csv_upload_finish(struct api_csv_upload *u, struct csv *out);
void api_csv_upload_free(struct api_csv_upload *u);
/* "<scheme>://<host><path>" into a malloc'ed string; path is printf-style. */
char *api_url(const struct api_req *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Paging: currentPage (1-based) and pageSize (default 5, at most 2000). */
int api_paging(struct api_req *r, size_t *page, size_t *size);
/* {"<key>": items, "statistics": {...}, "self", "next", "prev"}; steals items. */
json_t *api_page(const struct api_req *r, const char *key, json_t *items, size_t page, size_t size,
                 size_t total);

/* ISO-8601 UTC with milliseconds, e.g. 2024-05-01T10:00:00.000Z. */
void api_iso_time(int64_t t, char *out, size_t cap);
/* Valid tenant ids, user names, option categories and keys. */
bool api_valid_id(const char *s, size_t max);
/* users.c: the user object of the platform's API. */
json_t *api_user_json(const struct api_req *r, const struct store_user *u);
/* A JSON string for text that came from a client or an older database: as
 * is when valid UTF-8, else escaped (core/text.h), so no stored byte can
 * make a reply fail. Never NULL unless out of memory. */
json_t *api_json_text(const char *s);
/* certjson.c: one upload object already parsed (bulk upload), and the
 * status/name/autoRegistrationEnabled fields alone (update); msg says why
 * on ERR_INVALID. */
int api_cert_upload_from_json(json_t *j, time_t now, struct api_cert_upload *out, char *msg,
                              size_t cap);
int api_cert_fields_from_json(json_t *j, struct api_cert_upload *u, char *msg, size_t cap);
/* The trusted-certificate object of the platform's API. */
json_t *api_cert_json(const struct api_req *r, const struct store_cert *c, X509 *x);

/* ---- handlers, one file per resource ---- */
int api_h_tenant_create(struct api_req *r);
int api_h_tenant_list(struct api_req *r);
int api_h_tenant_get(struct api_req *r);
int api_h_user_list(struct api_req *r);
int api_h_user_create(struct api_req *r);
int api_h_user_get(struct api_req *r);
int api_h_user_delete(struct api_req *r);
int api_h_current_user(struct api_req *r);
int api_h_cert_create(struct api_req *r);
int api_h_cert_list(struct api_req *r);
int api_h_cert_get(struct api_req *r);
int api_h_cert_update(struct api_req *r);
int api_h_cert_delete(struct api_req *r);
int api_h_cert_bulk(struct api_req *r);
int api_h_crl_put(struct api_req *r);
int api_h_crl_get(struct api_req *r);
int api_h_verify_chain(struct api_req *r);
int api_h_option_list(struct api_req *r);
int api_h_option_create(struct api_req *r);
int api_h_option_get(struct api_req *r);
int api_h_option_put(struct api_req *r);
int api_h_option_delete(struct api_req *r);
int api_h_bulk_register(struct api_req *r);
int api_h_authz_list(struct api_req *r);
int api_h_authz_create(struct api_req *r);
int api_h_authz_update(struct api_req *r);
int api_h_authz_delete(struct api_req *r);
int api_h_authz_roles_get(struct api_req *r);
int api_h_authz_roles_put(struct api_req *r);
int api_h_single_register(struct api_req *r);
int api_h_pop_code(struct api_req *r);
int api_h_pop_verify(struct api_req *r);
int api_h_pop_confirm(struct api_req *r);
int api_h_token_key(struct api_req *r);
int api_h_device_list(struct api_req *r);
int api_h_connection_list(struct api_req *r);
int api_h_connection_delete(struct api_req *r);
int api_h_refusal_list(struct api_req *r);
int api_h_metrics(struct api_req *r);
int api_h_health(struct api_req *r);
int api_h_ca_create(struct api_req *r);
int api_h_ca_get(struct api_req *r);
int api_h_ca_delete(struct api_req *r);
int api_h_ca_renew(struct api_req *r);
int api_h_ca_issued_list(struct api_req *r);
int api_h_ca_revoke(struct api_req *r);
int api_h_ca_crl(struct api_req *r);
/* tenantca.c: revokes what the tenant CA issued for a device being deleted
 * and tells the broker (0 when there is no CA or nothing to revoke). */
MUST_USE int api_ca_revoke_device(struct api_req *r, const char *tenant, const char *cn);
int api_h_enroll_token_create(struct api_req *r);
int api_h_est_cacerts(struct api_req *r);
int api_h_est_enroll(struct api_req *r);
int api_h_est_reenroll(struct api_req *r);

/* console.c: serves the web console for GET/HEAD requests no route took
 * ("/" and "/console/<file>"); false when the path is not the console's. */
bool api_console_serve(struct api_req *r);
/* The console directory when none is configured. */
void api_console_default_dir(char *out, size_t cap);

/* pop.c, pure (fuzzed): checks a proof-of-possession body
 * {"proofOfPossessionSignedVerificationCode": "<base64>"} against code and
 * cert's public key (SHA-256; RSA PKCS#1 v1.5 or ECDSA; the code as given or
 * with one trailing newline). 0 when it verifies, ERR_MALFORMED when the body
 * or its base64 is not as above, ERR_INVALID when the signature is wrong. */
MUST_USE int api_pop_check(const char *body, size_t len, const char *code, X509 *cert);

/* Loads the trusted certificate named by the path's {fingerprint} (segment
 * 4) of tenant and parses it; replies 404 itself when absent. On success c
 * (store_cert_clear) and *x (X509_free) belong to the caller. */
MUST_USE int api_cert_load(struct api_req *r, const char *tenant, struct store_cert *c, X509 **x);

/* peercert.c: the certificates the client presented over HTTPS, leaf and
 * the rest (X509_free, sk_X509_pop_free); ERR_NOT_FOUND when none. */
MUST_USE int api_peer_chain(struct api_req *r, X509 **leaf, STACK_OF(X509) * *rest);

/* ---- between http.c (requests) and listener.c (daemon, limits) ---- */

/* libmicrohttpd callbacks of http.c, registered by listener.c. */
enum MHD_Result api_on_request(void *cls, struct MHD_Connection *conn, const char *url,
                               const char *method, const char *version, const char *upload,
                               size_t *upload_size, void **con_cls);
void api_on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                      enum MHD_RequestTerminationCode toe);
void *api_on_uri(void *cls, const char *uri, struct MHD_Connection *conn);
/* The connection's request head is complete (done) or a new one starts:
 * only connections waiting for a head are held to header_timeout_s. */
void api_conn_head_done(struct api *a, struct MHD_Connection *conn, bool done);
/* Takes n bytes from the shared body budget; ERR_LIMIT when it is spent. */
MUST_USE int api_budget_take(struct api *a, size_t n);
void api_budget_give(struct api *a, size_t n);

#endif
