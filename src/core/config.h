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

struct listener_config {
    int port;
    char addr[64];
    enum listener_protocol protocol;
    char certfile[512]; /* empty: plain TCP */
    char keyfile[512];
    char cafile[512]; /* static trusted client CAs */
    enum client_certs client_certs;
    long tls_session_cache; /* sessions kept for resumption; 0: none */
};

#define CONFIG_MAX_LISTENERS 16

struct config {
    char data_dir[512];
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
    long handshake_timeout;
    long connect_timeout;
    long max_keepalive;
    long max_chain_length;
    bool require_ca_in_chain;
    bool allow_anonymous;
    long auth_threads;
    long auth_queue;
    long auth_max_failures;
    long auth_failure_window;
    long http_max_body;
    long http_max_connections;
    long http_timeout;
    long refusals_per_tenant;
    char metrics_token[128];
    char console_dir[512];
    size_t n_listeners;
    struct listener_config listeners[CONFIG_MAX_LISTENERS];
};

/* Fills cfg with every default and no listeners. */
void config_defaults(struct config *cfg);
/* The built-in development setup used when no file is given: data in
 * ./var, MQTT over TLS on 8883 (client certificates optional) and HTTP on
 * 8080, with certificates from data_dir/dev-ca. */
void config_dev_defaults(struct config *cfg);
/* Reads a file on top of the defaults. On error writes "FILE:LINE: why"
 * into err and returns ERR_INVALID. */
MUST_USE int config_load(struct config *cfg, const char *path, char *err, size_t errlen);
/* The same from text in memory (name is used in messages); pure. */
MUST_USE int config_parse(struct config *cfg, const char *text, size_t len, const char *name,
                          char *err, size_t errlen);
/* Prints the option table (for --help). */
void config_print_help(FILE *out);

#endif
