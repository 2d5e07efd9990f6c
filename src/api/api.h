/* The REST API: an HTTP(S) listener (libmicrohttpd, own threads) serving the
 * tenant, trusted-certificate, CRL, option, user and bulk-registration
 * resources, the tenant CA and EST enrollment. Writes go to the store, then the trust index (so
 * connects see them at once); hooks tell the broker about anchor and CRL changes. */
#ifndef CERTMQ_API_API_H
#define CERTMQ_API_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <openssl/x509.h>

#include "core/err.h"

struct activity;
struct broker_conn;
struct store;
struct trust_index;
struct api;
struct authz;
struct pwcheck;
struct tenant_ca;

#define API_DEFAULT_MAX_BODY  (32u * 1024u * 1024u) /* bulk CSV uploads are large */
#define API_MANAGEMENT_TENANT "management"

struct api_config {
    const char *bind_addr; /* NULL or "": all addresses */
    uint16_t port;
    const char *certfile; /* both set: HTTPS; else plain HTTP */
    const char *keyfile;
    const char *keyfile_password_file; /* NULL or "": keyfile is not encrypted */
    size_t max_body_bytes;             /* request body limit; 0: API_DEFAULT_MAX_BODY */
    unsigned max_connections;          /* concurrent HTTP connections; 0: 256 */
    unsigned timeout_s;                /* idle HTTP connection timeout; 0: 30 s */
    unsigned threads;                  /* request threads (epoll each); 0: 4 */
    size_t max_body_total;             /* bodies of all connections together; 0: 256 MiB */
    unsigned header_timeout_s;         /* time to send a request's headers; 0: 10 s */
    unsigned max_per_ip;               /* connections from one address; 0: 32 */
    int max_chain_length;              /* for verify-cert-chain; <2: policy default */
    bool require_ca_in_chain;          /* for verify-cert-chain, as the broker */
    bool allow_v1_leaf;                /* for verify-cert-chain, as the broker */
    /* Called after a trusted certificate was disabled, enabled, changed or
     * deleted (still_enabled false for delete): the broker closes the
     * connections that anchor admitted when !still_enabled. May be NULL. */
    void (*on_anchor_change)(void *arg, const char *tenant, const char *fingerprint,
                             bool still_enabled);
    /* Called after a user was deleted; device_cn is the CN of the device a
     * device user stood for (its registration is gone too), else NULL. The
     * broker closes what that user or device has connected. May be NULL. */
    void (*on_user_delete)(void *arg, const char *tenant, const char *user, const char *device_cn);
    /* Called after revoked serials were added to a tenant's CRL. May be NULL. */
    void (*on_crl_change)(void *arg, const char *tenant);
    /* Checks a Bearer token; 0 and tenant/user filled when valid. May be NULL
     * (Bearer is then refused with 401). */
    int (*bearer_check)(void *arg, const char *token, char *tenant, size_t tenant_cap, char *user,
                        size_t user_cap);
    /* The tenant's device-token public key as PEM (*pem: free()). May be
     * NULL (the key endpoint then answers 404). */
    int (*token_public_key)(void *arg, const char *tenant, char **pem);
    /* Topic authorization rules and roles (borrowed; NULL: the routes
     * answer 404), and the hook told after they changed for a tenant. */
    struct authz *authz;
    /* Password checks off the HTTP threads, with failure limits (borrowed;
     * NULL: checked on the HTTP thread). */
    struct pwcheck *pwcheck;
    void (*on_authz_change)(void *arg, const char *tenant);
    /* The live view: a tenant's connected clients (*out: free(), sorted by
     * ClientId) and closing one (ERR_NOT_FOUND when not connected). May be
     * NULL (the routes then answer 404). */
    int (*connections)(void *arg, const char *tenant, struct broker_conn **out, size_t *n);
    int (*disconnect)(void *arg, const char *tenant, const char *client_id);
    /* The Prometheus exposition of the broker (*text: free()). May be NULL. */
    int (*metrics)(void *arg, char **text, size_t *len);
    void *hook_arg;
    struct activity *activity; /* refusal rings and last-seen; borrowed, may be NULL */
    const char *metrics_token; /* Bearer token for GET /metrics; NULL or "": none */
    const char *console_dir;   /* the web console's files; NULL or "": the default */
    const char *node;          /* this node's name in the live view; NULL: the host name */
    /* Tenant CAs, EST enrollment and issuance records (borrowed; NULL: those
     * routes answer 404), with their limits. */
    struct tenant_ca *ca;
    long enroll_token_max_validity; /* seconds; 0: 30 days */
    size_t est_max_csr_bytes;       /* 0: 16 KiB */
};

/* Starts the listener. st and ti are borrowed and must outlive the api. */
MUST_USE int api_start(const struct api_config *cfg, struct store *st, struct trust_index *ti,
                       struct api **out);
/* Reloads an HTTPS listener's certificate and key from their files: a new
 * daemon takes over the same socket, the old one finishes. On failure the
 * old certificate stays in use and err says why. Plain HTTP: nothing. */
MUST_USE int api_reload_tls(struct api *a, char *err, size_t n);
/* Stops the listener and waits for its threads. NULL is fine. */
void api_stop(struct api *a);

/* First start: creates tenant "management" and its admin "admin" with
 * ROLE_TENANT_ADMIN and ROLE_TENANT_MANAGEMENT_ADMIN. The password comes from
 * CERTMQ_ADMIN_PASSWORD, else it is generated and written 0600 to
 * DATA_DIR/admin-password, whose path (never the password) goes to stdout.
 * Does nothing when the tenant exists. Call before trust_load() so the index sees the admin. */
MUST_USE int api_bootstrap_admin(struct store *st, const char *data_dir);

/* ---- pure parsing, shared with the fuzz targets ---- */

/* A certificate from PEM text with or without line breaks and with or
 * without BEGIN/END lines (the first certificate when several). */
MUST_USE int api_pem_to_x509(const char *text, size_t len, X509 **out);
/* Every certificate of a PEM chain (at most 16), in order. */
MUST_USE int api_pem_chain(const char *text, size_t len, STACK_OF(X509) * *out);

struct api_cert_upload {
    char name[128];
    bool enabled;
    bool auto_registration;
    X509 *cert; /* owned: api_cert_upload_free */
};

/* Parses and checks one upload object {status, name, autoRegistrationEnabled,
 * certInPemFormat}: exactly one PEM certificate (several: ERR_INVALID, the
 * bulk route takes several), X.509 v3, CA:true, not expired at now, RSA >= 2048
 * or EC >= 256 bits. On ERR_INVALID, msg says which rule failed. */
MUST_USE int api_parse_cert_upload(const char *json, size_t len, time_t now,
                                   struct api_cert_upload *out, char *msg, size_t msg_cap);
void api_cert_upload_free(struct api_cert_upload *u);

/* The implemented routes, for the OpenAPI document test. */
struct api_route_info {
    const char *method;
    const char *path; /* OpenAPI template: /tenant/tenants/{tenantId} */
};
size_t api_routes(const struct api_route_info **out);

#endif
