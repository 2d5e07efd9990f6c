/* The option table and the mosquitto-style file parser (see config.h). */
#include "core/config.h"

#include "core/buf.h"
#include "core/text.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum opt_type { OPT_LONG, OPT_BOOL, OPT_STR, OPT_ENUM };

struct option {
    const char *name;
    enum opt_type type;
    bool per_listener;
    size_t offset; /* into struct config or struct listener_config */
    size_t size;   /* OPT_STR: buffer size */
    long min, max, def_long;
    const char *def_str;
    const char *const *choices; /* OPT_ENUM, NULL-terminated */
    const char *help;
};

static const char *const cert_choices[] = {"off", "optional", "required", NULL};
static const char *const proto_choices[] = {"mqtt", "http", NULL};
static const char *const level_choices[] = {"debug", "info", "warn", "error", NULL};
static const char *const acl_choices[] = {"allow", "deny", NULL};
static const char *const ticket_choices[] = {"node", "store", NULL};

#define G_LONG(n, f, lo, hi, d, h)                                                                 \
    {                                                                                              \
        n, OPT_LONG, false, offsetof(struct config, f), 0, lo, hi, d, NULL, NULL, h                \
    }
#define G_BOOL(n, f, d, h)                                                                         \
    {                                                                                              \
        n, OPT_BOOL, false, offsetof(struct config, f), 0, 0, 1, d, NULL, NULL, h                  \
    }
#define G_STR(n, f, d, h)                                                                          \
    {                                                                                              \
        n, OPT_STR, false, offsetof(struct config, f), sizeof(((struct config *)0)->f), 0, 0, 0,   \
            d, NULL, h                                                                             \
    }
#define G_ENUM(n, f, ch, d, h)                                                                     \
    {                                                                                              \
        n, OPT_ENUM, false, offsetof(struct config, f), 0, 0, 0, d, NULL, ch, h                    \
    }
#define L_STR(n, f, h)                                                                             \
    {                                                                                              \
        n, OPT_STR, true, offsetof(struct listener_config, f),                                     \
            sizeof(((struct listener_config *)0)->f), 0, 0, 0, "", NULL, h                         \
    }
#define L_LONG(n, f, lo, hi, d, h)                                                                 \
    {                                                                                              \
        n, OPT_LONG, true, offsetof(struct listener_config, f), 0, lo, hi, d, NULL, NULL, h        \
    }
#define L_BOOL(n, f, d, h)                                                                         \
    {                                                                                              \
        n, OPT_BOOL, true, offsetof(struct listener_config, f), 0, 0, 1, d, NULL, NULL, h          \
    }
#define L_ENUM(n, f, ch, d, h)                                                                     \
    {                                                                                              \
        n, OPT_ENUM, true, offsetof(struct listener_config, f), 0, 0, 0, d, NULL, ch, h            \
    }

static const struct option options[] = {
    G_STR("data_dir", data_dir, "./var", "directory for the database, keys and dev certificates"),
    G_STR("store", store, "sqlite",
          "where the registry and the durable sessions live: sqlite (certmq.db and sessions.db "
          "in data_dir) or a PostgreSQL conninfo URI postgresql://user[:password]@host:port/db "
          "(the password is never logged)"),
    G_STR("ca_key_file", ca_key_file, "",
          "the key-encryption key for tenant CA keys and device-token signing keys: 32 random "
          "bytes, mode 0600 (empty: data_dir/kek, made on first start)"),
    G_STR("log_level", log_level, "info", "debug, info, warn or error"),
    G_LONG("workers", workers, 0, 256, 0, "worker threads; 0 = one per CPU the process may use"),
    G_LONG("max_connections", max_connections, 1, 10000000, 100000,
           "concurrent client connections; more are closed on accept"),
    G_LONG("max_packet_size", max_packet_size, 64, 268435460, 1048576,
           "largest MQTT packet accepted, in bytes; larger closes the connection"),
    G_LONG("max_inflight", max_inflight, 1, 65535, 20,
           "unacknowledged QoS 1/2 messages sent to one client at a time"),
    G_LONG("session_expiry", session_expiry, 0, 315360000, 604800,
           "seconds an offline MQTT 3.1.1 persistent session is kept (0: forever)"),
    G_LONG("max_session_expiry", max_session_expiry, -1, 4294967295, -1,
           "largest MQTT 5.0 Session Expiry Interval granted, in seconds; more is lowered "
           "and the client told (-1: session_expiry; 0: no limit)"),
    G_LONG("max_message_expiry", max_message_expiry, 0, 4294967295, 0,
           "largest Message Expiry Interval, in seconds; messages without one get it "
           "(0: none)"),
    G_LONG("max_topic_alias", max_topic_alias, 0, 65535, 64,
           "MQTT 5.0 topic aliases per connection, each way (0: none)"),
    G_LONG("max_receive", max_receive, 1, 65535, 100,
           "MQTT 5.0 Receive Maximum: unacknowledged QoS 2 messages a client may send; "
           "more closes the connection"),
    G_BOOL("persistence", persistence, 1,
           "keep sessions that outlive their connection, their subscriptions and queued "
           "QoS 1/2 messages in data_dir/sessions.db (they survive a restart or a crash)"),
    G_LONG("persistence_commit_interval", persistence_commit_interval, 1, 1000, 2,
           "milliseconds between commits of session changes; a QoS 1/2 message stored for a "
           "session is acknowledged and delivered after the commit"),
    G_BOOL("shared_subscriptions", shared_subscriptions, 1,
           "allow shared subscriptions ($share/{group}/{filter})"),
    G_LONG("max_queued", max_queued, 0, 10000000, 1000,
           "messages queued per session beyond max_inflight; more are dropped"),
    G_LONG("max_topic_levels", max_topic_levels, 1, 65535, 128,
           "levels in a topic name or filter; deeper subscriptions are refused, deeper "
           "publishes dropped"),
    G_LONG("max_subscriptions", max_subscriptions, 1, 10000000, 1000,
           "subscriptions one client (session) may hold; more are refused"),
    G_LONG("max_subscription_bytes", max_subscription_bytes, 1024, 1073741824, 1048576,
           "memory the subscriptions of one client may hold (filters and tree nodes), in bytes"),
    G_LONG("handshake_timeout", handshake_timeout, 1, 3600, 10, "seconds a TLS handshake may take"),
    G_LONG("connect_timeout", connect_timeout, 1, 3600, 10,
           "seconds between accept and the CONNECT packet"),
    G_LONG("max_keepalive", max_keepalive, 0, 65535, 65535,
           "longest silence allowed, in seconds: a client keepalive of 0 or above it "
           "is held to it (0: no limit)"),
    G_LONG("max_chain_length", max_chain_length, 1, 10, 2,
           "certificates in a device chain including leaf and anchor"),
    G_BOOL("require_ca_in_chain", require_ca_in_chain, 1,
           "the trusted CA must be inside the chain the device presents"),
    G_BOOL("allow_v1_device_certificates", allow_v1_device_certificates, 0,
           "accept X.509 v1 device certificates (nothing in them says they are not a CA)"),
    G_BOOL("allow_anonymous", allow_anonymous, 0,
           "accept clients that present neither a certificate nor credentials"),
    G_STR("acl_file", acl_file, "",
          "topic authorization rules for statically trusted and anonymous clients (mosquitto's "
          "acl_file format); reloaded on SIGHUP"),
    G_ENUM("acl_default", acl_default, acl_choices, ACL_DEFAULT_ALLOW,
           "allow or deny what no authorization rule matches"),
    G_LONG("auth_threads", auth_threads, 1, 64, 2,
           "threads that check passwords (PBKDF2), off the network threads"),
    G_LONG("auth_queue", auth_queue, 1, 1000000, 256,
           "password checks waiting for a thread; more are refused (server unavailable)"),
    G_LONG("auth_max_failures", auth_max_failures, 1, 1000000, 10,
           "failed password attempts per source address and per user within "
           "auth_failure_window; past it, attempts are refused unchecked"),
    G_LONG("auth_failure_window", auth_failure_window, 1, 86400, 60,
           "seconds over which failed password attempts are counted"),
    G_LONG("http_max_body", http_max_body, 1024, 1073741824, 67108864,
           "largest HTTP request body, in bytes"),
    G_LONG("http_max_connections", http_max_connections, 1, 100000, 256,
           "concurrent HTTP connections per API listener"),
    G_LONG("http_timeout", http_timeout, 1, 3600, 30, "seconds an idle HTTP connection is kept"),
    G_LONG("http_threads", http_threads, 1, 64, 4,
           "threads serving each HTTP API listener (epoll each)"),
    G_LONG("http_max_body_total", http_max_body_total, 1024, 17179869184L, 268435456,
           "request bodies of all HTTP connections together, in bytes; more answer 503"),
    G_LONG("http_header_timeout", http_header_timeout, 1, 3600, 10,
           "seconds a client may take to send a request's headers (from connect or "
           "the end of its previous request)"),
    G_LONG("http_max_connections_per_ip", http_max_connections_per_ip, 1, 100000, 32,
           "concurrent HTTP connections from one source address"),
    G_LONG("refusals_per_tenant", refusals_per_tenant, 0, 100000, 1000,
           "refused connection attempts kept in memory per tenant for GET /devices/refusals"),
    G_STR("metrics_token", metrics_token, "",
          "Bearer token that may read GET /metrics besides the management admin (empty: none)"),
    G_STR("console_dir", console_dir, "",
          "directory of the web console's files (empty: the source tree's web/ when run from "
          "the build directory, else the installed share/certmq/web)"),
    G_LONG("ca_validity_days", ca_validity_days, 1, 36500, 3650,
           "lifetime in days of a tenant CA certificate made or renewed by certmq"),
    G_LONG("enroll_token_max_validity", enroll_token_max_validity, 60, 31536000, 2592000,
           "longest validity in seconds an enrollment token may be given"),
    G_LONG("est_max_csr_bytes", est_max_csr_bytes, 256, 1048576, 16384,
           "largest certificate signing request accepted by EST and MQTT renewal, in bytes"),
    G_STR("public_url", public_url, "",
          "base URL of the HTTP API as devices reach it (https://host:8443), named in issued "
          "certificates as their CRL distribution point (empty: the first API listener on "
          "localhost)"),
    G_LONG("crl_fetch_timeout", crl_fetch_timeout, 1, 300, 5,
           "seconds one online CRL fetch may take (tenant option crl.online.check.enabled)"),
    G_LONG("crl_fetch_max_bytes", crl_fetch_max_bytes, 1024, 268435456, 10485760,
           "largest CRL fetched online, in bytes"),
    G_LONG("crl_fetch_retry", crl_fetch_retry, 1, 86400, 60,
           "seconds between attempts to fetch a CRL that could not be had"),
    G_LONG("crl_fetch_max_urls", crl_fetch_max_urls, 1, 1000000, 10000,
           "distinct CRL URLs kept for online checks; further ones count as unavailable"),
    G_STR("cluster", cluster, "",
          "NATS servers that carry messages between nodes, nats://host:port[,nats://...] "
          "(empty: a single node)"),
    G_STR("node_id", node_id, "", "this node's name in the cluster (empty: hostname-pid)"),
    G_LONG("cluster_reconnect_buffer", cluster_reconnect_buffer, 0, 1073741824, 8388608,
           "bytes of messages to other nodes kept while NATS is unreachable; more are lost"),
    G_LONG("cluster_max_pending", cluster_max_pending, 1, 100000000, 65536,
           "messages waiting to be sent to NATS, and received and not yet routed (per subscribed "
           "filter, and in the queue to the workers); more are lost"),
    G_LONG("cluster_reconnect_wait", cluster_reconnect_wait, 10, 600000, 500,
           "milliseconds between attempts to reach NATS again"),
    G_LONG("cluster_max_subject", cluster_max_subject, 64, 1048576, 4000,
           "bytes of the longest NATS subject a node sends, kept below the NATS servers' "
           "max_control_line; a message whose topic maps to a longer one reaches this node's "
           "subscribers only"),
    G_LONG("cluster_heartbeat", cluster_heartbeat, 50, 60000, 1000,
           "milliseconds between a node's heartbeats; a node silent for three is taken for gone"),
    G_LONG("cluster_claim_timeout", cluster_claim_timeout, 10, 60000, 1000,
           "milliseconds a CONNECT waits for the other nodes to close the client's connection "
           "there and hand over its session"),
    G_ENUM("tls_tickets", tls_tickets, ticket_choices, TLS_TICKETS_NODE,
           "TLS 1.3 session resumption: node (a session cache per node: cheapest per handshake, "
           "a client resumes only on the node it last used) or store (tickets encrypted with "
           "keys kept sealed in the store: a client resumes on any node of the store, also "
           "after a restart)"),
    G_LONG("tls_ticket_key_rotate", tls_ticket_key_rotate, 1, 2592000, 86400,
           "seconds each shared ticket key is used (tls_tickets store); a ticket of the "
           "previous key still resumes, an older one gets a full handshake"),
    {"listener", OPT_STR, false, 0, 0, 0, 0, 0, NULL, NULL,
     "PORT [ADDR]: starts a listener block (options below apply to it)"},
    L_ENUM("protocol", protocol, proto_choices, PROTO_MQTT, "mqtt or http"),
    L_STR("certfile", certfile, "server certificate chain (PEM); absent = plain TCP"),
    L_STR("keyfile", keyfile, "server private key (PEM)"),
    L_STR("keyfile_password_file", keyfile_password_file,
          "file holding the password of an encrypted keyfile (mode 0600 or stricter)"),
    L_STR("cafile", cafile, "static trusted client CAs (PEM); clients are identified by CN"),
    L_STR("crlfile", crlfile,
          "CRLs (PEM, or one DER) signed by the cafile CAs; revoked clients are refused "
          "and, on SIGHUP reload, dropped"),
    L_ENUM("client_certificates", client_certs, cert_choices, CLIENT_CERTS_OPTIONAL,
           "required, optional or off"),
    L_BOOL("proxy_protocol", proxy_protocol, 0,
           "every connection starts with a PROXY protocol v2 header (HAProxy send-proxy-v2) "
           "naming the client's address; MQTT listeners only, reachable only from the "
           "balancer"),
    L_LONG("tls_session_cache", tls_session_cache, 0, 10000000, 20480,
           "TLS sessions kept so returning clients resume without a full handshake (0: off)"),
};

#define N_OPTIONS (sizeof options / sizeof options[0])

static void listener_defaults(struct listener_config *l)
{
    memset(l, 0, sizeof *l);
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const struct option *o = &options[i];
        if (!o->per_listener) continue;
        if (o->type == OPT_ENUM) *(int *)((char *)l + o->offset) = (int)o->def_long;
        if (o->type == OPT_LONG) *(long *)((char *)l + o->offset) = o->def_long;
    }
}

void config_defaults(struct config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const struct option *o = &options[i];
        if (o->per_listener || !strcmp(o->name, "listener")) continue;
        char *p = (char *)cfg + o->offset;
        switch (o->type) {
        case OPT_LONG: *(long *)p = o->def_long; break;
        case OPT_BOOL: *(bool *)p = o->def_long != 0; break;
        case OPT_STR: snprintf(p, o->size, "%s", o->def_str); break;
        case OPT_ENUM: *(int *)p = (int)o->def_long; break;
        }
    }
}

void config_dev_defaults(struct config *cfg)
{
    config_defaults(cfg);
    cfg->n_listeners = 2;
    struct listener_config *m = &cfg->listeners[0], *h = &cfg->listeners[1];
    /* Loopback only: a development broker (and its plain-HTTP API) is not
     * reachable from the network until a config file opens it up. */
    listener_defaults(m);
    m->port = 8883;
    strcpy(m->addr, "127.0.0.1");
    strcpy(m->certfile, "./var/dev-ca/server.pem");
    strcpy(m->keyfile, "./var/dev-ca/server.key");
    strcpy(m->cafile, "./var/dev-ca/ca.pem");
    listener_defaults(h);
    h->port = 8080;
    strcpy(h->addr, "127.0.0.1");
    h->protocol = PROTO_HTTP;
}

static bool valid_level(const char *s)
{
    for (int i = 0; level_choices[i]; i++)
        if (!strcmp(level_choices[i], s)) return true;
    return false;
}

static const struct option *find_option(const char *name)
{
    for (size_t i = 0; i < N_OPTIONS; i++)
        if (!strcmp(options[i].name, name)) return &options[i];
    return NULL;
}

static int parse_long(const char *s, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end) return ERR_INVALID;
    *out = v;
    return 0;
}

/* Applies one option's value to its field; writes why into err on failure. */
static int apply(const struct option *o, void *base, const char *val, char *err, size_t errlen)
{
    char *p = (char *)base + o->offset;
    long v;
    switch (o->type) {
    case OPT_LONG:
        if (parse_long(val, &v) < 0 || v < o->min || v > o->max) {
            snprintf(err, errlen, "%s must be a whole number from %ld to %ld, not '%s'", o->name,
                     o->min, o->max, val);
            return ERR_INVALID;
        }
        *(long *)p = v;
        return 0;
    case OPT_BOOL:
        if (strcmp(val, "true") && strcmp(val, "false")) {
            snprintf(err, errlen, "%s must be true or false, not '%s'", o->name, val);
            return ERR_INVALID;
        }
        *(bool *)p = !strcmp(val, "true");
        return 0;
    case OPT_STR:
        if (strlen(val) >= o->size) {
            snprintf(err, errlen, "%s is too long", o->name);
            return ERR_INVALID;
        }
        snprintf(p, o->size, "%s", val);
        return 0;
    case OPT_ENUM:
        for (int i = 0; o->choices[i]; i++)
            if (!strcmp(o->choices[i], val)) {
                *(int *)p = i;
                return 0;
            }
        snprintf(err, errlen, "%s: unknown value '%s'", o->name, val);
        return ERR_INVALID;
    }
    return ERR_INVALID;
}

static int start_listener(struct config *cfg, const char *val, char *err, size_t errlen)
{
    if (cfg->n_listeners == CONFIG_MAX_LISTENERS) {
        snprintf(err, errlen, "too many listeners (at most %d)", CONFIG_MAX_LISTENERS);
        return ERR_INVALID;
    }
    struct listener_config *l = &cfg->listeners[cfg->n_listeners];
    listener_defaults(l);
    char port[16] = "", addr[64] = "";
    if (sscanf(val, "%15s %63s", port, addr) < 1) return ERR_INVALID;
    long v;
    if (parse_long(port, &v) < 0 || v < 1 || v > 65535) {
        snprintf(err, errlen, "listener port must be 1-65535, not '%s'", port);
        return ERR_INVALID;
    }
    l->port = (int)v;
    snprintf(l->addr, sizeof l->addr, "%s", addr);
    cfg->n_listeners++;
    return 0;
}

/* Splits a line into name and value, trimming blanks and comments. Returns
 * false for a blank or comment line. */
static bool split_line(char *line, char **name, char **val)
{
    char *hash = strchr(line, '#');
    if (hash) *hash = 0;
    char *s = line + strspn(line, " \t\r\n");
    if (!*s) return false;
    char *e = s + strlen(s);
    while (e > s && strchr(" \t\r\n", e[-1])) *--e = 0;
    *name = s;
    char *sp = s + strcspn(s, " \t");
    if (*sp) {
        *sp++ = 0;
        sp += strspn(sp, " \t");
    }
    *val = sp;
    return true;
}

/* Two listeners on one port clash when their addresses are equal or one of
 * them is the wildcard (empty: every address). */
static int check_listener_clash(const struct config *cfg, const char *name, char *err,
                                size_t errlen)
{
    for (size_t i = 0; i < cfg->n_listeners; i++)
        for (size_t j = i + 1; j < cfg->n_listeners; j++) {
            const struct listener_config *a = &cfg->listeners[i], *b = &cfg->listeners[j];
            if (a->port != b->port) continue;
            if (a->addr[0] && b->addr[0] && strcmp(a->addr, b->addr)) continue;
            snprintf(err, errlen, "%s: listener %d %s is given twice (listeners %zu and %zu)", name,
                     a->port, a->addr[0] ? a->addr : "*", i + 1, j + 1);
            return ERR_INVALID;
        }
    return 0;
}

/* Checks what single lines cannot: listener blocks that contradict themselves. */
static int config_check(const struct config *cfg, const char *name, char *err, size_t errlen)
{
    GUARD(check_listener_clash(cfg, name, err, errlen));
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        const struct listener_config *l = &cfg->listeners[i];
        if (!!l->certfile[0] != !!l->keyfile[0]) {
            snprintf(err, errlen, "%s: listener %d needs both certfile and keyfile", name, l->port);
            return ERR_INVALID;
        }
        if (l->keyfile_password_file[0] && !l->keyfile[0]) {
            snprintf(err, errlen, "%s: listener %d: keyfile_password_file needs a keyfile", name,
                     l->port);
            return ERR_INVALID;
        }
        if (l->proxy_protocol && l->protocol == PROTO_HTTP) {
            snprintf(err, errlen,
                     "%s: listener %d: proxy_protocol is for MQTT listeners (balance the HTTP "
                     "API in TCP mode without it)",
                     name, l->port);
            return ERR_INVALID;
        }
        if (!l->certfile[0] && l->client_certs == CLIENT_CERTS_REQUIRED) {
            snprintf(err, errlen, "%s: listener %d requires client certificates but has no TLS",
                     name, l->port);
            return ERR_INVALID;
        }
    }
    if (!valid_level(cfg->log_level)) {
        snprintf(err, errlen, "%s: log_level must be debug, info, warn or error", name);
        return ERR_INVALID;
    }
    if (strcmp(cfg->store, "sqlite") != 0 && strncmp(cfg->store, "postgresql://", 13) != 0 &&
        strncmp(cfg->store, "postgres://", 11) != 0) {
        snprintf(err, errlen, "%s: store must be sqlite or a postgresql:// URI", name);
        return ERR_INVALID;
    }
    return 0;
}

int config_parse(struct config *cfg, const char *text, size_t len, const char *name, char *err,
                 size_t errlen)
{
    char line[2048], why[512] = "";
    int rc = 0, lineno = 0;
    size_t pos = 0;
    while (pos < len) {
        size_t end = pos;
        while (end < len && text[end] != '\n') end++;
        lineno++;
        size_t n = end - pos;
        pos = end + 1;
        if (n >= sizeof line || memchr(text + pos - n - 1, 0, n)) {
            snprintf(why, sizeof why, n >= sizeof line ? "line too long" : "NUL byte in line");
            rc = ERR_INVALID;
            break;
        }
        memcpy(line, text + pos - n - 1, n);
        line[n] = 0;
        char *opt, *val;
        if (!split_line(line, &opt, &val)) continue;
        const struct option *o = find_option(opt);
        if (!o) {
            snprintf(why, sizeof why, "unknown option '%s'", opt);
            rc = ERR_INVALID;
        } else if (!*val) {
            snprintf(why, sizeof why, "%s needs a value", opt);
            rc = ERR_INVALID;
        } else if (!strcmp(opt, "listener")) {
            rc = start_listener(cfg, val, why, sizeof why);
        } else if (o->per_listener) {
            if (!cfg->n_listeners) {
                snprintf(why, sizeof why, "%s must follow a listener line", opt);
                rc = ERR_INVALID;
            } else {
                rc = apply(o, &cfg->listeners[cfg->n_listeners - 1], val, why, sizeof why);
            }
        } else {
            rc = apply(o, cfg, val, why, sizeof why);
        }
        if (rc < 0) break;
    }
    if (rc < 0) {
        snprintf(err, errlen, "%s:%d: %s", name, lineno, why);
        return rc;
    }
    return config_check(cfg, name, err, errlen);
}

int config_load(struct config *cfg, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return ERR_INVALID;
    }
    struct buf b;
    buf_init(&b, 16 * 1024 * 1024);
    char chunk[8192];
    size_t n;
    int rc = 0;
    while (rc == 0 && (n = fread(chunk, 1, sizeof chunk, f)) > 0) rc = buf_append(&b, chunk, n);
    bool failed = ferror(f);
    fclose(f);
    if (rc < 0 || failed) {
        snprintf(err, errlen, "%s: %s", path, rc < 0 ? "file too large" : "read error");
        buf_free(&b);
        return ERR_INVALID;
    }
    rc = config_parse(cfg, (const char *)buf_head(&b), buf_used(&b), path, err, errlen);
    buf_free(&b);
    return rc;
}

/* ERR_INVALID with the system's reason when path cannot be opened for reading. */
static int check_readable(const char *name, const struct listener_config *l, const char *what,
                          const char *path, char *err, size_t errlen)
{
    if (!path[0]) return 0;
    struct stat sb;
    FILE *f = fopen(path, "r");
    int e = !f ? errno : fstat(fileno(f), &sb) < 0 ? errno : S_ISDIR(sb.st_mode) ? EISDIR : 0;
    if (f) fclose(f);
    if (!e) return 0;
    snprintf(err, errlen, "%s: listener %d: %s %s: %s", name, l->port, what, path, strerror(e));
    return ERR_INVALID;
}

/* cluster: a comma list of at most CONFIG_MAX_CLUSTER_SERVERS nats:// URLs. */
static int check_cluster(const char *name, const char *list, char *err, size_t errlen)
{
    if (!list[0]) return 0;
    int n = 0;
    for (const char *p = list;; p++) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        while (len && *p == ' ') p++, len--;
        if (len <= 7 || strncmp(p, "nats://", 7) != 0 || ++n > CONFIG_MAX_CLUSTER_SERVERS) {
            char shown[sizeof((struct config *)0)->cluster];
            text_url_redact(p, len, shown, sizeof shown);
            snprintf(err, errlen, "%s: cluster: '%s' is not a nats://host:port URL (at most %d)",
                     name, shown, CONFIG_MAX_CLUSTER_SERVERS);
            return ERR_INVALID;
        }
        if (!end) return 0;
        p = end;
    }
}

int config_check_serve(const struct config *cfg, const char *name, char *err, size_t errlen)
{
    GUARD(check_cluster(name, cfg->cluster, err, errlen));
    if (cfg->n_listeners == 0) {
        snprintf(err, errlen,
                 "%s: no listener configured (add e.g. 'listener 8883' with certfile and "
                 "keyfile)",
                 name);
        return ERR_INVALID;
    }
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        const struct listener_config *l = &cfg->listeners[i];
        GUARD(check_readable(name, l, "certfile", l->certfile, err, errlen));
        GUARD(check_readable(name, l, "keyfile", l->keyfile, err, errlen));
        if (l->protocol != PROTO_HTTP)
            GUARD(check_readable(name, l, "cafile", l->cafile, err, errlen));
    }
    return 0;
}

/* The option's default as text ("" when it has none). */
static void default_text(const struct option *o, char *def, size_t n)
{
    def[0] = 0;
    switch (o->type) {
    case OPT_LONG: snprintf(def, n, "%ld", o->def_long); break;
    case OPT_BOOL: snprintf(def, n, "%s", o->def_long ? "true" : "false"); break;
    case OPT_STR: snprintf(def, n, "%s", o->def_str ? o->def_str : ""); break;
    case OPT_ENUM: snprintf(def, n, "%s", o->choices[o->def_long]); break;
    }
}

bool config_option_doc(size_t i, struct config_option_doc *out)
{
    if (i >= N_OPTIONS) return false;
    const struct option *o = &options[i];
    memset(out, 0, sizeof *out);
    out->name = o->name;
    out->help = o->help;
    out->per_listener = o->per_listener;
    out->is_listener = !strcmp(o->name, "listener");
    out->is_path = o->type == OPT_STR && strstr(o->name, "file") != NULL;
    if (!out->is_listener) default_text(o, out->def, sizeof out->def);
    if (o->type == OPT_LONG) {
        snprintf(out->range, sizeof out->range, "%ld to %ld", o->min, o->max);
    } else if (o->type == OPT_BOOL) {
        snprintf(out->range, sizeof out->range, "true or false");
    } else if (o->type == OPT_ENUM) {
        size_t len = 0;
        for (int k = 0; o->choices[k] && len < sizeof out->range; k++)
            len += (size_t)snprintf(out->range + len, sizeof out->range - len, "%s%s",
                                    k ? ", " : "", o->choices[k]);
    }
    return true;
}

void config_print_help(FILE *out)
{
    fprintf(out, "Configuration file options (mosquitto style, one per line):\n");
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const struct option *o = &options[i];
        char def[64] = "";
        switch (o->type) {
        case OPT_LONG: snprintf(def, sizeof def, " (default %ld)", o->def_long); break;
        case OPT_BOOL:
            snprintf(def, sizeof def, " (default %s)", o->def_long ? "true" : "false");
            break;
        case OPT_STR:
            if (o->def_str && *o->def_str) snprintf(def, sizeof def, " (default %s)", o->def_str);
            break;
        case OPT_ENUM: snprintf(def, sizeof def, " (default %s)", o->choices[o->def_long]); break;
        }
        fprintf(out, "  %s%-22s %s%s\n", o->per_listener ? "  " : "", o->name, o->help, def);
    }
}
