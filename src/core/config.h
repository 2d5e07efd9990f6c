/* Configuration: one table of options (name, type, bounds, default, help)
 * read by the file parser, `serve --help` and the README. The file format is
 * mosquitto's: one `name value` per line, `#` comments, `listener PORT
 * [ADDR]` starting a block whose options apply to that listener. */
#ifndef CERTMQ_CONFIG_H
#define CERTMQ_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "core/err.h"

enum client_certs { CLIENT_CERTS_OFF, CLIENT_CERTS_OPTIONAL, CLIENT_CERTS_REQUIRED };
enum listener_protocol { PROTO_MQTT, PROTO_HTTP };
enum acl_default { ACL_DEFAULT_ALLOW, ACL_DEFAULT_DENY };
enum tls_tickets { TLS_TICKETS_NODE, TLS_TICKETS_STORE };

struct listener_config {
    int port;
    char addr[64];
    enum listener_protocol protocol;
    char certfile[512]; /* empty: plain TCP */
    char keyfile[512];
    char keyfile_password_file[512]; /* empty: the key is not encrypted */
    char cafile[512];                /* static trusted client CAs */
    char crlfile[512];               /* CRLs of the cafile CAs (verified by them) */
    enum client_certs client_certs;
    long tls_session_cache; /* sessions kept for resumption; 0: none */
    bool proxy_protocol;    /* a PROXY v2 header first (MQTT listeners) */
};

#define CONFIG_MAX_LISTENERS       16
#define CONFIG_MAX_CLUSTER_SERVERS 16 /* NATS URLs in the cluster option */
#define CONFIG_CLUSTER_LEN         1024

struct config {
    char data_dir[512];
    char store[1024];      /* "sqlite" or a postgresql:// conninfo URI (secret: never logged) */
    char ca_key_file[512]; /* empty: data_dir/kek */
    char log_level[16];
    long workers;
    long max_connections;
    long max_packet_size;
    long max_inflight;
    long max_queued;
    long max_topic_levels;
    long max_subscriptions;
    long max_subscription_bytes;
    long session_expiry;
    long max_session_expiry;
    long max_message_expiry;
    long max_topic_alias;
    long max_receive;
    bool shared_subscriptions;
    bool persistence;
    long persistence_commit_interval;
    long handshake_timeout;
    long connect_timeout;
    long max_keepalive;
    long max_chain_length;
    bool require_ca_in_chain;
    bool allow_v1_device_certificates;
    bool allow_anonymous;
    char acl_file[512];
    int acl_default; /* enum acl_default */
    long auth_threads;
    long auth_queue;
    long auth_max_failures;
    long auth_failure_window;
    long http_max_body;
    long http_max_connections;
    long http_timeout;
    long http_threads;
    long http_max_body_total;
    long http_header_timeout;
    long http_max_connections_per_ip;
    long refusals_per_tenant;
    char metrics_token[128];
    char console_dir[512];
    long ca_validity_days;
    long enroll_token_max_validity;
    long est_max_csr_bytes;
    char public_url[256];
    long crl_fetch_timeout;
    long crl_fetch_max_bytes;
    long crl_fetch_retry;
    long crl_fetch_max_urls;
    char cluster[CONFIG_CLUSTER_LEN]; /* NATS servers; empty: a single node */
    char node_id[128];                /* empty: hostname-pid */
    long cluster_reconnect_buffer;
    long cluster_max_pending;
    long cluster_reconnect_wait;
    long cluster_max_subject;
    long cluster_heartbeat;     /* ms */
    long cluster_claim_timeout; /* ms */
    int tls_tickets;            /* enum tls_tickets */
    long tls_ticket_key_rotate;
    size_t n_listeners;
    struct listener_config listeners[CONFIG_MAX_LISTENERS];
};

/* Fills cfg with every default and no listeners. */
void config_defaults(struct config *cfg);
/* The built-in development setup used when no file is given: data in
 * ./var, MQTT over TLS on 8883 (client certificates optional) and HTTP on
 * 8080, both on 127.0.0.1 only, with certificates from data_dir/dev-ca. */
void config_dev_defaults(struct config *cfg);
/* Reads a file on top of the defaults. On error writes "FILE:LINE: why"
 * into err and returns ERR_INVALID. */
MUST_USE int config_load(struct config *cfg, const char *path, char *err, size_t errlen);
/* The same from text in memory (name is used in messages); pure. */
MUST_USE int config_parse(struct config *cfg, const char *text, size_t len, const char *name,
                          char *err, size_t errlen);
/* What a configuration must have to serve, beyond parsing (not checked by
 * config_parse, which judges text alone): at least one listener, and every
 * certfile, keyfile and cafile it names readable, and a cluster option
 * that is a list of nats:// URLs. On error writes e.g.
 * "FILE: listener 8883: certfile /x.pem: No such file or directory" into
 * err and returns ERR_INVALID. */
MUST_USE int config_check_serve(const struct config *cfg, const char *name, char *err,
                                size_t errlen);
/* Prints the option table (for --help). */
void config_print_help(FILE *out);

/* One row of the option table, for the documents made from it (configdoc.h). */
struct config_option_doc {
    const char *name;
    const char *help;
    bool per_listener; /* applies to the listener block it follows */
    bool is_listener;  /* the `listener PORT [ADDR]` line itself */
    bool is_path;      /* a file name */
    char def[80];      /* the default as written in a file; "" when none */
    char range[96];    /* "1 to 65535", "true or false", "mqtt, http"; "" for text */
};
/* Fills out with option i of the table, in table order; false past the end. */
bool config_option_doc(size_t i, struct config_option_doc *out);

#endif
