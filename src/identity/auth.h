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

struct config;
struct auth;
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
    bool chain_proven; /* resumed TLS session whose full handshake showed the CA */
    time_t now;
};

struct auth_result {
    uint8_t connack_rc; /* 0 accepted, else an MQTT 3.1.1 CONNACK code */
    const char *reason; /* named reason for a refusal (static text) */
    char tenant[64];    /* topic space; "" is the static/anonymous space */
    char identity[128]; /* certificate CN or user name */
    char anchor_fp[41]; /* hex SHA-1 of the trust anchor, "" when none */
    bool device;        /* tenant certificate device: s/ topics are its own */
    bool chain_proven;  /* the presented chain held the anchor (for resumption) */
    /* serials of the validated path (leaf first, no anchor), for revocation */
    struct revoc_path path;
};

/* ti and st are borrowed (NULL: no tenants, static trust only). */
MUST_USE int auth_new(const struct config *cfg, struct trust_index *ti, struct store *st,
                      struct auth **out);
void auth_free(struct auth *a);

/* Decides one CONNECT. Always fills res; returns 0 when a decision was
 * made (accepted or refused: see res->connack_rc), negative on an internal
 * failure (the broker answers CONNACK 3, server unavailable). */
MUST_USE int auth_connect(struct auth *a, const struct auth_request *rq, struct auth_result *res);

/* Counters of refusals by reason, for the log and stats. */
void auth_log_counters(struct auth *a);

#endif
