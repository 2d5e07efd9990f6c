/* Connection authentication: the one hook the broker calls after the TLS
 * handshake and CONNECT. It sees the peer chain (if any), the ClientId and
 * the credentials, and decides who the client is and in which tenant's topic
 * space it lives. Thread-safe: workers call it concurrently. */
#ifndef CERTMQ_IDENTITY_AUTH_H
#define CERTMQ_IDENTITY_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <openssl/x509.h>

#include "core/err.h"
#include "identity/revocation.h"

struct activity;
struct crlfetch;
struct config;
struct auth;
struct pwcheck;
struct store;
struct trust_index;

struct auth_request {
    X509_STORE *listener_ca; /* the listener's static cafile, or NULL */
    X509 *leaf;              /* peer certificate, or NULL (borrowed) */
    STACK_OF(X509) * chain;  /* certificates sent after the leaf, or NULL */
    const char *client_id;
    size_t client_id_len;
    const char *username; /* NULL when absent */
    size_t username_len;
    const uint8_t *password; /* NULL when absent */
    size_t password_len;
    bool chain_proven;  /* resumed TLS session whose full handshake showed the CA */
    const char *source; /* peer address without port, for failure limits; may be NULL */
    int pw_verdict;     /* 0: not checked yet; 1: password verified (pw_roles);
                           negative: the check's error (pwcheck_verify's codes) */
    unsigned pw_roles;
    time_t now;
};

/* How a client proved who it is. */
enum auth_kind {
    AUTH_CERTIFICATE_DEVICE, /* a tenant's certificate device */
    AUTH_PASSWORD,           /* <tenantId>/<user> and a password */
    AUTH_STATIC,             /* a listener cafile's client, named by its CN */
    AUTH_ANONYMOUS,
};

struct auth_result {
    uint8_t connack_rc; /* 0 accepted, else an MQTT 3.1.1 CONNACK code */
    uint8_t kind;       /* enum auth_kind */
    const char *reason; /* named reason for a refusal (static text) */
    char tenant[64];    /* topic space; "" is the static/anonymous space */
    char identity[128]; /* certificate CN or user name */
    char anchor_fp[41]; /* hex SHA-1 of the trust anchor, "" when none */
    bool device;        /* a tenant's device (certificate, or a password user holding
                           ROLE_DEVICE): its s/ topics are its own, identity is its ID */
    unsigned roles;     /* password users: STORE_ROLE_* bits; devices: ROLE_DEVICE */
    bool has_user_name; /* identity is a user name or CN (not an anonymous ClientId) */
    bool chain_proven;  /* the presented chain held the anchor (for resumption) */
    /* serials of the validated path (leaf first, no anchor), for revocation */
    struct revoc_path path;
};

/* ti, st and pw are borrowed (ti NULL: no tenants, static trust only; pw
 * NULL: passwords are checked on the calling thread without limits). */
MUST_USE int auth_new(const struct config *cfg, struct trust_index *ti, struct store *st,
                      struct pwcheck *pw, struct auth **out);
void auth_free(struct auth *a);

/* Refusals with a tenant go to act's rings, accepted devices to its
 * last-seen table (act is borrowed; call before the workers start). */
void auth_set_activity(struct auth *a, struct activity *act);
/* Online CRLs for the chain policy (borrowed; call before the workers
 * start; see crlfetch.h). */
void auth_set_crlfetch(struct auth *a, struct crlfetch *crls);

/* Decides one CONNECT. Always fills res; returns 0 when a decision was
 * made (accepted or refused: see res->connack_rc), negative on an internal
 * failure (the broker answers CONNACK 3, server unavailable). */
MUST_USE int auth_connect(struct auth *a, const struct auth_request *rq, struct auth_result *res);

/* Splits a password login's user name "<tenantId>/<user>". 0, or
 * ERR_INVALID when it has no '/', an empty part or a part too long. */
MUST_USE int auth_split_username(const char *name, size_t len, char *tenant, size_t tcap,
                                 char *user, size_t ucap);

/* May this client read and command other devices' topics (devices/X/s/...)?
 * Only a tenant's users holding a device-control role. */
bool auth_may_control_devices(const struct auth_result *who);

/* The device ID a ClientId names when it has a device's form (<ID>, d:<ID>
 * or d:<ID>:<template>): 0 and the ID in out, ERR_NOT_FOUND otherwise. */
MUST_USE int auth_client_id_device(const char *client_id, size_t len, char *out, size_t cap);

/* Counters of refusals by reason, for the log and stats. */
void auth_log_counters(struct auth *a);

#endif
