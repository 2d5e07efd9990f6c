/* certmq entry point: `certmq serve` runs the broker, `certmq pki` the PKI
 * tooling. Parses the command line, builds the modules in dependency order
 * (auth -> broker -> network), and turns signals into reload and stop. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/api.h"
#include "identity/acl.h"
#include "broker/broker.h"
#include "core/config.h"
#include "core/configdoc.h"
#include "core/datalock.h"
#include "core/log.h"
#include "core/seal.h"
#include "ca/tenantca.h"
#include "cluster/bridge.h"
#include "cluster/presence.h"
#include "cluster/changes.h"
#include "identity/crlfetch.h"
#include "core/metrics.h"
#include "identity/activity.h"
#include "identity/auth.h"
#include "identity/authz.h"
#include "identity/pwcheck.h"
#include "identity/revocation.h"
#include "identity/trust.h"
#include "net/server.h"
#include "net/ticketkeys.h"
#include "net/tls.h"
#include "pki/pki.h"
#include "store/sessions.h"
#include "store/store.h"
#include "token/service.h"

static void usage(FILE *out)
{
    fprintf(out, "usage: certmq <command> [options]\n"
                 "\n"
                 "commands:\n"
                 "  serve [--config FILE]   run the broker (no FILE: development defaults)\n"
                 "  pki <subcommand> ...    make and check certificates ('certmq pki --help')\n"
                 "\n"
                 "options:\n"
                 "  -h, --help              this help\n"
                 "  -V, --version           print the version\n");
}

static void serve_usage(FILE *out)
{
    fprintf(out, "usage: certmq serve [--config FILE]\n"
                 "       certmq serve --help-man | --example-config\n"
                 "\n"
                 "Runs the MQTT broker. Without --config: data in ./var, a development CA and a\n"
                 "localhost server certificate in ./var/dev-ca, MQTT over TLS on 127.0.0.1:8883\n"
                 "(client certificates optional, trusted if issued by the development CA) and the\n"
                 "REST API over plain HTTP on 127.0.0.1:8080; a config file opens them up.\n"
                 "Signals: SIGHUP reloads certificates and keys, SIGINT/SIGTERM stop.\n"
                 "\n"
                 "example:\n"
                 "  certmq serve --config /etc/certmq/certmq.conf\n"
                 "\n");
    config_print_help(out);
}

/* Everything serve runs, built in dependency order and torn down in
 * reverse: store -> trust index -> tokens -> auth -> broker -> network/API. */
struct app {
    struct config cfg;
    struct store *store;
    struct trust_index *trust;
    struct pwcheck *pwcheck;
    struct seal *seal;
    struct authz *authz;
    struct activity *activity;
    struct token_service *tokens;
    struct ticketkeys *tickets; /* shared TLS ticket keys; NULL: tls_tickets node */
    struct tenant_ca *ca;
    struct crlfetch *crls;
    char public_url[300];
    struct auth *auth;
    struct broker *broker;
    struct bridge *bridge;     /* cross-node messaging; NULL: a single node */
    struct presence *presence; /* one connection per ClientId cluster-wide */
    char node[160];            /* this node's name in the cluster */
    struct sstore *taker;      /* takes sessions of gone nodes (PostgreSQL cluster) */
    struct sstore *sessions;   /* durable sessions; NULL with persistence off */
    struct server *srv;
    struct api *apis[CONFIG_MAX_LISTENERS];
    size_t n_apis;
    struct changes_config changes; /* what other nodes changed (store_watch) */
    /* Authorization rules of the static space (acl_file), swapped on SIGHUP. */
    pthread_rwlock_t acl_lock;
    struct acl_rules static_acl;
    bool has_static_acl;
};

/* ---- hooks from the REST API into the broker and the token service ---- */

static void on_anchor_change(void *arg, const char *tenant, const char *fp, bool still_enabled)
{
    struct app *app = arg;
    if (still_enabled) return;
    int n = broker_kick_anchor(app->broker, tenant, fp);
    if (n)
        log_info("tenant %s: trusted certificate %s withdrawn, %d device(s) disconnected", tenant,
                 fp, n);
}

struct revoked_ctx {
    struct app *app;
    const char *tenant;
};

static bool is_revoked(const struct auth_result *who, void *arg)
{
    struct revoked_ctx *r = arg;
    if (!who->device || strcmp(who->tenant, r->tenant)) return false;
    return revoc_path_revoked_tenant_locked(r->app->trust, who->tenant, &who->path);
}

static void on_crl_change(void *arg, const char *tenant)
{
    struct app *app = arg;
    struct revoked_ctx r = {app, tenant};
    int n = 0;
    trust_read_lock(app->trust); /* lock order: trust index, then broker */
    if (trust_option_true_locked(app->trust, tenant, "configuration", "crl.offline.check.enabled"))
        n = broker_kick_where(app->broker, is_revoked, &r);
    trust_read_unlock(app->trust);
    if (n) log_info("tenant %s: %d revoked device(s) disconnected", tenant, n);
}

struct gone_user {
    const char *tenant, *user, *device_cn;
};

/* The deleted user's password logins, and its device's certificate logins. */
static bool is_gone_user(const struct auth_result *who, void *arg)
{
    const struct gone_user *g = arg;
    if (strcmp(who->tenant, g->tenant) != 0) return false;
    if (who->device) return g->device_cn && strcmp(who->identity, g->device_cn) == 0;
    return strcmp(who->identity, g->user) == 0;
}

static void on_user_delete(void *arg, const char *tenant, const char *user, const char *device_cn)
{
    struct app *app = arg;
    struct gone_user g = {tenant, user, device_cn};
    int n = broker_kick_where(app->broker, is_gone_user, &g);
    log_info("tenant %s: user %s deleted%s, %d connection(s) closed", tenant, user,
             device_cn ? " with its device registration" : "", n);
}

static int bearer_check(void *arg, const char *token, char *tenant, size_t tenant_cap, char *user,
                        size_t user_cap)
{
    struct app *app = arg;
    return token_service_check(app->tokens, token, time(NULL), tenant, tenant_cap, user, user_cap);
}

static int token_public_key(void *arg, const char *tenant, char **pem)
{
    struct app *app = arg;
    return token_service_public_key(app->tokens, tenant, pem);
}

static int issue_token(void *arg, const char *tenant, const char *cn, time_t now, char **jwt)
{
    return token_service_issue(arg, tenant, cn, now, jwt);
}

static void on_retain(void *arg, const char *tenant, const char *topic, size_t tlen,
                      const uint8_t *payload, size_t plen, uint8_t qos)
{
    struct app *app = arg;
    if (store_retained_put(app->store, tenant, topic, tlen, payload, plen, qos) < 0)
        log_error("retained message on '%.*s' could not be stored", (int)(tlen > 200 ? 200 : tlen),
                  topic);
}

/* When devices were last seen: read back at start, written every
 * SEEN_FLUSH_S seconds and at stop (one transaction for all news). */
#define SEEN_FLUSH_S 10

static int restore_seen(void *arg, const struct store_seen *r)
{
    activity_restore(arg, r->tenant, r->cn, &(struct device_seen){r->last_seen, r->not_after});
    return 0;
}

static void flush_seen(struct app *app)
{
    struct seen_row *v = NULL;
    size_t n = 0;
    if (!app->activity || activity_take_dirty(app->activity, &v, &n) < 0 || !n) {
        free(v);
        return;
    }
    struct store_seen *rows = malloc(n * sizeof *rows);
    if (rows) {
        for (size_t i = 0; i < n; i++)
            rows[i] =
                (struct store_seen){v[i].tenant, v[i].cn, v[i].seen.last_seen, v[i].seen.not_after};
        if (store_device_seen_put(app->store, rows, n) < 0)
            log_warn("cannot write when %zu device(s) were last seen", n);
    }
    free(rows);
    free(v);
}

/* Cross-node messaging (option cluster): connected before the broker
 * exists, so that the subscriptions it restores reach NATS too. */
/* A session in the store of a node that is gone (presence.h). */
static int take_stored(void *arg, const char *key, size_t klen, const char *const *live,
                       struct buf *out)
{
    struct app *app = arg;
    return app->taker ? sstore_take(app->taker, key, klen, live, out) : 0;
}

static int start_cluster(struct app *app)
{
    const struct config *cfg = &app->cfg;
    if (!cfg->cluster[0]) return 0;
    char *node = app->node, err[512];
    if (cfg->node_id[0]) {
        snprintf(node, sizeof app->node, "%s", cfg->node_id);
    } else {
        char host[64] = "node";
        if (gethostname(host, sizeof host) != 0) snprintf(host, sizeof host, "node");
        host[sizeof host - 1] = '\0';
        snprintf(node, sizeof app->node, "%s-%ld", host, (long)getpid());
    }
    struct bridge_config bc = {
        .servers = cfg->cluster,
        .node_id = node,
        .reconnect_buffer = cfg->cluster_reconnect_buffer,
        .max_pending = cfg->cluster_max_pending,
        .reconnect_wait = cfg->cluster_reconnect_wait,
        .max_subject = cfg->cluster_max_subject,
    };
    int rc = bridge_new(&bc, &app->bridge, err, sizeof err);
    if (rc < 0) {
        log_error("%s", err);
        return rc;
    }
    struct presence_config pc = {
        .node_id = node,
        .heartbeat_ms = cfg->cluster_heartbeat,
        .claim_timeout_ms = cfg->cluster_claim_timeout,
        .take_stored = store_is_pg(cfg->store) && cfg->persistence ? take_stored : NULL,
        .take_arg = app,
    };
    return presence_new(&pc, app->bridge, &app->presence);
}

/* Messages from other nodes are routed by a worker (bridge_route). */
static void cluster_work(void *arg)
{
    bridge_route(arg);
}

static void cluster_notify(void *arg)
{
    server_post_work(arg);
}

/* Durable sessions: the session store beside the main database, read back
 * before the listeners open, then written as sessions change. */
static int open_sessions(struct app *app)
{
    const struct config *cfg = &app->cfg;
    if (!cfg->persistence) return 0;
    char path[4096];
    int n = snprintf(path, sizeof path, "%s/sessions.db", cfg->data_dir);
    ENSURE(n > 0 && (size_t)n < sizeof path, ERR_INVALID);
    /* On PostgreSQL the sessions live in the store's database: a cluster
     * node's in a schema of its own, from which a node that takes over a
     * client of a node that died reads its session (app->taker). */
    bool pg = store_is_pg(cfg->store);
    int rc;
    if (pg && cfg->cluster[0]) {
        rc = sstore_open_node(cfg->store, app->node, true, &app->sessions);
        if (rc == 0) rc = sstore_open_node(cfg->store, app->node, false, &app->taker);
    } else {
        rc = sstore_open(pg ? cfg->store : path, &app->sessions);
    }
    if (rc < 0 || broker_persist_load(app->broker, app->sessions, time(NULL)) < 0) {
        log_error("cannot read the sessions from %s", pg ? "the PostgreSQL store" : path);
        return ERR_DB;
    }
    return broker_persist_start(app->broker, app->sessions, cfg->persistence_commit_interval);
}

static int restore_retained(void *arg, const char *tenant, const void *topic, size_t tlen,
                            const void *payload, size_t plen, int qos)
{
    struct app *app = arg;
    if (broker_restore_retained(app->broker, tenant, topic, tlen, payload, plen, (uint8_t)qos) < 0)
        log_warn("a stored retained message was skipped (tenant '%s')", tenant);
    return 0;
}

/* ---- topic authorization ---- */

/* A tenant client's matcher: the tenant's REST rules, its named roles
 * (looked up under its user name: device_<ID> for devices) and the
 * tenant option authorization / acl_default. */
static int tenant_acl(struct app *app, const struct auth_result *who, const char *client_id,
                      struct acl_matcher **out)
{
    char login[STORE_NAME_MAX + 8], dflt[16];
    snprintf(login, sizeof login, "%s%s", who->device ? STORE_DEVICE_USER_PREFIX : "",
             who->identity);
    bool allow = trust_option_get(app->trust, who->tenant, "authorization", "acl_default", dflt,
                                  sizeof dflt) < 0 ||
                 strcmp(dflt, "deny") != 0;
    struct acl_client c = {.user = who->identity,
                           .client_id = client_id,
                           .tenant = who->tenant,
                           .device = who->device,
                           .roles = who->roles};
    return authz_compile(app->authz, who->tenant, login, &c, allow, out);
}

static int acl_compile_hook(void *arg, const struct auth_result *who, const char *client_id,
                            struct acl_matcher **out)
{
    struct app *app = arg;
    *out = NULL;
    if (who->tenant[0]) return tenant_acl(app, who, client_id, out);
    struct acl_client c = {
        .user = who->has_user_name ? who->identity : NULL, .client_id = client_id, .tenant = ""};
    pthread_rwlock_rdlock(&app->acl_lock);
    int rc = app->has_static_acl ? acl_compile(&app->static_acl, &c, out) : 0;
    pthread_rwlock_unlock(&app->acl_lock);
    return rc;
}

/* Reads acl_file (or, without one, an empty rule set when acl_default is
 * deny). Nothing changes when the file is bad. */
static int acl_load(struct app *app, char *err, size_t errlen)
{
    const struct config *cfg = &app->cfg;
    bool default_allow = cfg->acl_default == ACL_DEFAULT_ALLOW;
    struct acl_rules r = {.default_allow = default_allow};
    if (cfg->acl_file[0]) GUARD(acl_file_load(cfg->acl_file, default_allow, &r, err, errlen));
    pthread_rwlock_wrlock(&app->acl_lock);
    acl_rules_free(&app->static_acl);
    app->static_acl = r;
    app->has_static_acl = cfg->acl_file[0] || !default_allow;
    pthread_rwlock_unlock(&app->acl_lock);
    return 0;
}

static void acl_reload(struct app *app)
{
    char err[600];
    if (!app->cfg.acl_file[0]) return;
    if (acl_load(app, err, sizeof err) < 0) {
        log_error("acl_file reload failed, keeping the old rules: %s", err);
        return;
    }
    int n = broker_acl_refresh(app->broker, "");
    log_info("acl_file %s reloaded (%zu rules); %d subscription(s) no longer allowed were dropped",
             app->cfg.acl_file, app->static_acl.n, n);
}

static void on_authz_change(void *arg, const char *tenant)
{
    struct app *app = arg;
    int n = broker_acl_refresh(app->broker, tenant);
    log_info("tenant %s: authorization rules changed; %d subscription(s) no longer allowed were "
             "dropped",
             tenant, n);
}

/* ---- the live view and /metrics, from the broker ---- */

static int live_connections(void *arg, const char *tenant, struct broker_conn **out, size_t *n)
{
    struct app *app = arg;
    return broker_connections(app->broker, tenant, out, n);
}

static int live_disconnect(void *arg, const char *tenant, const char *client_id)
{
    struct app *app = arg;
    int rc = broker_disconnect(app->broker, tenant, client_id);
    if (rc == 0) log_info("tenant %s: client %s disconnected through the API", tenant, client_id);
    return rc;
}

/* Devices by how soon the certificate they last connected with expires. */
static void write_expiring(struct app *app, FILE *f)
{
    static const int days[] = {0, 7, 30};
    int64_t now = (int64_t)time(NULL);
    metrics_family(f, "certmq_device_certificates_expiring", "gauge",
                   "devices seen since start whose certificate expires within the given days "
                   "(0: expired)");
    for (size_t i = 0; i < sizeof days / sizeof days[0]; i++)
        fprintf(f, "certmq_device_certificates_expiring{within_days=\"%d\"} %zu\n", days[i],
                activity_expiring(app->activity, now + (int64_t)days[i] * 86400));
}

static int metrics_text(void *arg, char **text, size_t *len)
{
    struct app *app = arg;
    FILE *f = open_memstream(text, len);
    if (!f) return ERR_NOMEM;
    int rc = broker_metrics_write(app->broker, f);
    metrics_write(f);
    tenant_ca_metrics_write(app->ca, f);
    write_expiring(app, f);
    if (fclose(f) != 0 && rc == 0) rc = ERR_NOMEM;
    if (rc < 0) {
        free(*text);
        *text = NULL;
    }
    return rc;
}

/* The API's base URL as devices reach it, named in issued certificates:
 * public_url, else the first API listener on localhost. */
static void public_url_default(struct app *app)
{
    const struct config *cfg = &app->cfg;
    snprintf(app->public_url, sizeof app->public_url, "%s", cfg->public_url);
    for (size_t i = 0; !app->public_url[0] && i < cfg->n_listeners; i++) {
        const struct listener_config *l = &cfg->listeners[i];
        if (l->protocol == PROTO_HTTP)
            snprintf(app->public_url, sizeof app->public_url, "%s://localhost:%d",
                     l->certfile[0] ? "https" : "http", l->port);
    }
}

static int start_apis(struct app *app)
{
    for (size_t i = 0; i < app->cfg.n_listeners; i++) {
        const struct listener_config *l = &app->cfg.listeners[i];
        if (l->protocol != PROTO_HTTP) continue;
        struct api_config ac = {
            .bind_addr = l->addr,
            .port = (uint16_t)l->port,
            .certfile = l->certfile,
            .keyfile = l->keyfile,
            .keyfile_password_file = l->keyfile_password_file,
            .max_body_bytes = (size_t)app->cfg.http_max_body,
            .max_connections = (unsigned)app->cfg.http_max_connections,
            .timeout_s = (unsigned)app->cfg.http_timeout,
            .threads = (unsigned)app->cfg.http_threads,
            .max_body_total = (size_t)app->cfg.http_max_body_total,
            .header_timeout_s = (unsigned)app->cfg.http_header_timeout,
            .max_per_ip = (unsigned)app->cfg.http_max_connections_per_ip,
            .max_chain_length = (int)app->cfg.max_chain_length,
            .require_ca_in_chain = app->cfg.require_ca_in_chain,
            .allow_v1_leaf = app->cfg.allow_v1_device_certificates,
            .on_anchor_change = on_anchor_change,
            .on_crl_change = on_crl_change,
            .on_user_delete = on_user_delete,
            .bearer_check = bearer_check,
            .token_public_key = token_public_key,
            .authz = app->authz,
            .pwcheck = app->pwcheck,
            .on_authz_change = on_authz_change,
            .connections = live_connections,
            .disconnect = live_disconnect,
            .metrics = metrics_text,
            .hook_arg = app,
            .activity = app->activity,
            .metrics_token = app->cfg.metrics_token,
            .console_dir = app->cfg.console_dir,
            .ca = app->ca,
            .enroll_token_max_validity = app->cfg.enroll_token_max_validity,
            .est_max_csr_bytes = (size_t)app->cfg.est_max_csr_bytes,
        };
        GUARD(api_start(&ac, app->store, app->trust, &app->apis[app->n_apis]));
        app->n_apis++;
        log_info("listening on %s:%d (http api%s)", l->addr[0] ? l->addr : "*", l->port,
                 l->certfile[0] ? " over tls" : "");
    }
    return 0;
}

static void log_mqtt_listeners(const struct config *cfg)
{
    static const char *const modes[] = {"off", "optional", "required"};
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        const struct listener_config *l = &cfg->listeners[i];
        if (l->protocol == PROTO_HTTP) continue;
        if (l->certfile[0])
            log_info("listening on %s:%d (mqtt over tls, client certificates %s)",
                     l->addr[0] ? l->addr : "*", l->port, modes[l->client_certs]);
        else
            log_info("listening on %s:%d (mqtt, plain tcp)", l->addr[0] ? l->addr : "*", l->port);
    }
}

/* Changes other nodes commit to the shared store reach this node's memory
 * and hooks as this node's own REST writes do (nothing with SQLite). */
static int watch_changes(struct app *app)
{
    app->changes = (struct changes_config){
        .st = app->store,
        .ti = app->trust,
        .authz = app->authz,
        .ca = app->ca,
        .broker = app->broker,
        .on_anchor_change = on_anchor_change,
        .on_user_delete = on_user_delete,
        .on_crl_change = on_crl_change,
        .on_authz_change = on_authz_change,
        .hook_arg = app,
    };
    if (store_watch(app->store, changes_apply, &app->changes) < 0) {
        log_error("cannot listen for changes other nodes make to the store");
        return ERR_DB;
    }
    return 0;
}

/* tls_tickets store: the ticket keys every node of the store shares, in
 * place before the listeners' TLS contexts are made. */
static int start_ticket_keys(struct app *app)
{
    if (app->cfg.tls_tickets != TLS_TICKETS_STORE) return 0;
    struct ticketkeys_config tc = {
        .st = app->store,
        .seal = app->seal,
        .period = app->cfg.tls_ticket_key_rotate,
    };
    if (ticketkeys_start(&tc, &app->tickets) < 0) {
        log_error("cannot read or make the TLS ticket keys in the store");
        return ERR_DB;
    }
    tls_use_ticket_keys(app->tickets);
    return 0;
}

static int app_start(struct app *app)
{
    struct config *cfg = &app->cfg;
    char err[1024];
    /* The key-encryption key first: a bad one changes nothing on disk. */
    if (seal_open(cfg->ca_key_file, cfg->data_dir, &app->seal, err, sizeof err) < 0) {
        log_error("%s", err);
        return ERR_INVALID;
    }
    if (store_open_config(cfg->store, cfg->data_dir, &app->store) < 0 ||
        api_bootstrap_admin(app->store, cfg->data_dir) < 0 || trust_new(&app->trust) < 0 ||
        trust_load(app->trust, app->store) < 0) {
        if (store_is_pg(cfg->store))
            log_error("cannot open the store on PostgreSQL");
        else
            log_error("cannot open the store in %s", cfg->data_dir);
        return ERR_DB;
    }
    if (authz_new(app->store, &app->authz) < 0) {
        log_error("cannot read the authorization rules from the store");
        return ERR_DB;
    }
    if (token_service_new(app->store, app->trust, app->seal, &app->tokens) < 0) {
        log_error("cannot open the device-token signing keys in the store");
        return ERR_DB;
    }
    public_url_default(app);
    struct ca_config cc = {
        .ca_validity_days = cfg->ca_validity_days,
        .public_url = app->public_url,
        .max_csr_bytes = (size_t)cfg->est_max_csr_bytes,
        .anchor_changed = on_anchor_change,
        .arg = app,
    };
    GUARD(tenant_ca_new(app->store, app->trust, app->seal, &cc, &app->ca));
    if (tenant_ca_load(app->ca) < 0) {
        log_error("cannot read the tenant CAs from the store");
        return ERR_DB;
    }
    struct pwcheck_config pc = {
        .threads = (int)cfg->auth_threads,
        .queue_max = (int)cfg->auth_queue,
        .max_failures = (int)cfg->auth_max_failures,
        .window_s = (int)cfg->auth_failure_window,
    };
    GUARD(pwcheck_new(app->trust, &pc, &app->pwcheck));
    GUARD(auth_new(cfg, app->trust, app->store, app->pwcheck, &app->auth));
    GUARD(activity_new(cfg->refusals_per_tenant, &app->activity));
    if (store_device_seen_list(app->store, restore_seen, app->activity) < 0)
        log_warn("cannot read when devices were last seen; the inventory starts without it");
    auth_set_activity(app->auth, app->activity);
    struct crlfetch_config fc = {
        .timeout_s = cfg->crl_fetch_timeout,
        .max_bytes = (size_t)cfg->crl_fetch_max_bytes,
        .retry_s = cfg->crl_fetch_retry,
        .max_urls = (size_t)cfg->crl_fetch_max_urls,
    };
    GUARD(crlfetch_new(&fc, &app->crls));
    auth_set_crlfetch(app->auth, app->crls);
    struct broker_config bc = {
        .max_inflight = cfg->max_inflight,
        .max_queued = cfg->max_queued,
        .max_topic_levels = cfg->max_topic_levels,
        .max_subscriptions = cfg->max_subscriptions,
        .max_subscription_bytes = cfg->max_subscription_bytes,
        .session_expiry = cfg->session_expiry,
        .max_session_expiry =
            cfg->max_session_expiry < 0 ? cfg->session_expiry : cfg->max_session_expiry,
        .max_message_expiry = cfg->max_message_expiry,
        .max_topic_alias = cfg->max_topic_alias,
        .max_receive = cfg->max_receive,
        .max_packet_size = cfg->max_packet_size,
        .shared_subscriptions = cfg->shared_subscriptions,
        .max_keepalive = cfg->max_keepalive,
        .allow_anonymous = cfg->allow_anonymous,
        .auth = app->auth,
        .wake = server_wake,
        .issue_token = issue_token,
        .token_arg = app->tokens,
        .renew_cert = tenant_ca_renew_cert,
        .renew_arg = app->ca,
        .renew_notice = tenant_ca_renew_notice,
        .on_retain = on_retain,
        .retain_arg = app,
        .retain_digests = store_is_pg(cfg->store),
        .acl_compile = acl_compile_hook,
        .acl_arg = app,
    };
    GUARD(start_cluster(app));
    bc.cluster = app->bridge ? bridge_cluster(app->bridge) : NULL;
    GUARD(broker_new(&bc, &app->broker));
    if (app->bridge) bridge_attach(app->bridge, app->broker);
    if (store_retained_list(app->store, restore_retained, app) < 0) {
        log_error("cannot read the retained messages from the store");
        return ERR_DB;
    }
    GUARD(open_sessions(app));
    /* Claims are answered once this node's own sessions are back. */
    if (app->presence) GUARD(presence_attach(app->presence, app->broker));
    GUARD(start_ticket_keys(app));
    int rc = server_new(cfg, app->broker, &app->srv, err, sizeof err);
    if (rc < 0) {
        log_error("%s", err);
        return rc;
    }
    server_set_pwcheck(app->srv, app->pwcheck);
    if (app->bridge) server_set_work(app->srv, cluster_work, app->bridge);
    if (server_start(app->srv) < 0) {
        log_error("cannot start worker threads");
        return ERR_INTERNAL;
    }
    if (app->bridge) bridge_set_notify(app->bridge, cluster_notify, app->srv);
    GUARD(watch_changes(app));
    GUARD(start_apis(app));
    log_mqtt_listeners(cfg);
    return 0;
}

static void app_stop(struct app *app)
{
    store_unwatch(app->store);
    for (size_t i = 0; i < app->n_apis; i++) api_stop(app->apis[i]);
    bridge_stop(app->bridge); /* nothing from NATS is queued for the workers from here on */
    if (app->srv) server_stop(app->srv);
    presence_free(app->presence); /* after the connections: they cancel their claims */
    sstore_close(app->taker);
    if (app->broker) broker_persist_stop(app->broker);
    if (app->store) flush_seen(app);
    sstore_close(app->sessions);
    if (app->auth) auth_log_counters(app->auth);
    broker_free(app->broker);
    bridge_free(app->bridge);
    tls_use_ticket_keys(NULL); /* no handshake runs any more */
    ticketkeys_stop(app->tickets);
    auth_free(app->auth);
    crlfetch_free(app->crls);
    activity_free(app->activity);
    pwcheck_free(app->pwcheck);
    token_service_free(app->tokens);
    tenant_ca_free(app->ca);
    acl_rules_free(&app->static_acl);
    seal_free(app->seal);
    authz_free(app->authz);
    trust_free(app->trust);
    store_close(app->store);
}

/* SIGHUP: the MQTT listeners' and the HTTPS APIs' certificates and keys.
 * Each listener keeps its old material when its new files are bad. */
static void reload_tls(struct app *app)
{
    char err[1024];
    bool ok = true;
    if (server_reload_tls(app->srv, err, sizeof err) < 0) {
        log_error("reload failed, keeping the old certificates: %s", err);
        ok = false;
    }
    for (size_t i = 0; i < app->n_apis; i++) {
        if (api_reload_tls(app->apis[i], err, sizeof err) < 0) {
            log_error("http api reload failed, keeping the old certificate: %s", err);
            ok = false;
        }
    }
    if (ok) log_info("certificates and keys reloaded");
}

/* Waits for signals: SIGHUP reloads TLS material and the acl_file,
 * SIGINT/SIGTERM return; between them, writes when devices were seen. */
static void run_until_stopped(struct app *app, const sigset_t *set)
{
    for (;;) {
        struct timespec every = {SEEN_FLUSH_S, 0};
        int sig = sigtimedwait(set, NULL, &every);
        if (sig < 0) { /* timeout (or EINTR): the periodic work */
            flush_seen(app);
            continue;
        }
        if (sig == SIGHUP) {
            reload_tls(app);
            acl_reload(app);
            continue;
        }
        log_info("signal %d: stopping", sig);
        return;
    }
}

/* Thousands of device connections need thousands of descriptors: the soft
 * limit goes up to the hard one (a service manager sets the hard one). */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= rl.rlim_max) return;
    rlim_t want = rl.rlim_max;
    rl.rlim_cur = want;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        log_warn("cannot raise the open-file limit to %llu: %s", (unsigned long long)want,
                 strerror(errno));
}

/* Makes data_dir, locks it for this process (held until exit) and checks
 * that no other process owns one of the ports. Returns 0 or an exit status. */
static int claim_data_dir_and_ports(const struct config *cfg)
{
    static int data_lock = -1;
    char err[1024];
    if (mkdir(cfg->data_dir, 0700) < 0 && errno != EEXIST) {
        log_error("cannot create data_dir %s: %s", cfg->data_dir, strerror(errno));
        return 1;
    }
    int rc = datalock_acquire(cfg->data_dir, &data_lock, err, sizeof err);
    if (rc == 0) rc = server_probe_ports(cfg, err, sizeof err);
    if (rc < 0) log_error("%s", err);
    return rc == 0 ? 0 : rc == ERR_INVALID ? 2 : 1;
}

static int cmd_serve(int argc, char **argv)
{
    const char *config_path = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            serve_usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--help-man")) {
            configdoc_print_man(stdout, CERTMQ_VERSION);
            return 0;
        } else if (!strcmp(argv[i], "--example-config")) {
            configdoc_print_example(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--config") && i + 1 < argc) {
            config_path = argv[++i];
        } else {
            fprintf(stderr, "certmq serve: unknown argument '%s' (see certmq serve --help)\n",
                    argv[i]);
            return 2;
        }
    }

    static struct app app;
    char err[1024];
    if (config_path) {
        config_defaults(&app.cfg);
        if (config_load(&app.cfg, config_path, err, sizeof err) < 0 ||
            config_check_serve(&app.cfg, config_path, err, sizeof err) < 0) {
            fprintf(stderr, "certmq: %s\n", err);
            return 2;
        }
    } else {
        config_dev_defaults(&app.cfg);
    }
    log_set_level((enum log_level)log_level_parse(app.cfg.log_level));
    pthread_rwlock_init(&app.acl_lock, NULL);
    if (acl_load(&app, err, sizeof err) < 0) {
        fprintf(stderr, "certmq: acl_file %s\n", err);
        return 2;
    }
    int claimed = claim_data_dir_and_ports(&app.cfg);
    if (claimed != 0) return claimed;
    if (!config_path && pki_dev_bootstrap("./var/dev-ca") < 0) {
        log_error("cannot create the development PKI in ./var/dev-ca");
        return 1;
    }

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    raise_fd_limit();
    /* A listener's files that cannot be used (key, certificate, password
     * file) are configuration errors: exit 2, like a bad config line. */
    int rc = app_start(&app);
    if (rc == 0) {
        log_info("certmq %s started with %d worker threads", CERTMQ_VERSION,
                 server_worker_count(&app.cfg));
        run_until_stopped(&app, &set);
    }
    rc = rc == 0 ? 0 : rc == ERR_TLS || rc == ERR_FORBIDDEN ? 2 : err_exit_code(rc);
    app_stop(&app);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "-V")) {
        printf("certmq %s\n", CERTMQ_VERSION);
        return 0;
    }
    if (!strcmp(cmd, "serve")) return cmd_serve(argc - 1, argv + 1);
    if (!strcmp(cmd, "pki")) return pki_main(argc - 1, argv + 1);
    fprintf(stderr, "certmq: unknown command '%s' (see certmq --help)\n", cmd);
    return 2;
}
