/* certmq entry point: `certmq serve` runs the broker, `certmq pki` the PKI
 * tooling. Parses the command line, builds the modules in dependency order
 * (auth -> broker -> network), and turns signals into reload and stop. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "api/api.h"
#include "broker/broker.h"
#include "core/config.h"
#include "core/log.h"
#include "identity/auth.h"
#include "identity/trust.h"
#include "net/server.h"
#include "pki/pki.h"
#include "store/store.h"

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
    fprintf(out,
            "usage: certmq serve [--config FILE]\n"
            "\n"
            "Runs the MQTT broker. Without --config: data in ./var, a development CA and a\n"
            "localhost server certificate in ./var/dev-ca, MQTT over TLS on port 8883 (client\n"
            "certificates optional, trusted if issued by the development CA).\n"
            "Signals: SIGHUP reloads certificates and keys, SIGINT/SIGTERM stop.\n"
            "\n"
            "example:\n"
            "  certmq serve --config /etc/certmq/certmq.conf\n"
            "\n");
    config_print_help(out);
}

/* Waits for signals: SIGHUP reloads TLS material, SIGINT/SIGTERM return. */
static void run_until_stopped(struct server *srv, const sigset_t *set)
{
    for (;;) {
        int sig;
        if (sigwait(set, &sig) != 0) continue;
        if (sig == SIGHUP) {
            char err[512];
            if (server_reload_tls(srv, err, sizeof err) < 0)
                log_error("reload failed, keeping the old certificates: %s", err);
            else
                log_info("certificates and keys reloaded");
            continue;
        }
        log_info("signal %d: stopping", sig);
        return;
    }
}

static int cmd_serve(int argc, char **argv)
{
    const char *config_path = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            serve_usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--config") && i + 1 < argc) {
            config_path = argv[++i];
        } else {
            fprintf(stderr, "certmq serve: unknown argument '%s' (see certmq serve --help)\n",
                    argv[i]);
            return 2;
        }
    }

    static struct config cfg;
    char err[1024];
    if (config_path) {
        config_defaults(&cfg);
        if (config_load(&cfg, config_path, err, sizeof err) < 0) {
            fprintf(stderr, "certmq: %s\n", err);
            return 2;
        }
    } else {
        config_dev_defaults(&cfg);
    }
    log_set_level((enum log_level)log_level_parse(cfg.log_level));
    if (mkdir(cfg.data_dir, 0700) < 0 && errno != EEXIST) {
        log_error("cannot create data_dir %s: %s", cfg.data_dir, strerror(errno));
        return 1;
    }
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

    int rc = 1;
    struct auth *auth = NULL;
    struct broker *broker = NULL;
    struct server *srv = NULL;
    /* ---- identity store and REST API (begin) ---- */
    struct store *store = NULL;
    struct trust_index *trust = NULL;
    struct api *apis[CONFIG_MAX_LISTENERS] = {0};
    size_t n_apis = 0;
    if (store_open(cfg.data_dir, &store) < 0 || api_bootstrap_admin(store, cfg.data_dir) < 0 ||
        trust_new(&trust) < 0 || trust_load(trust, store) < 0) {
        log_error("cannot open the store in %s", cfg.data_dir);
        goto out;
    }
    for (size_t i = 0; i < cfg.n_listeners; i++) {
        const struct listener_config *l = &cfg.listeners[i];
        if (l->protocol != PROTO_HTTP) continue;
        struct api_config ac = {
            .bind_addr = l->addr,
            .port = (uint16_t)l->port,
            .certfile = l->certfile,
            .keyfile = l->keyfile,
            .max_body_bytes = (size_t)cfg.http_max_body,
            .max_chain_length = (int)cfg.max_chain_length,
            .require_ca_in_chain = cfg.require_ca_in_chain,
        };
        if (api_start(&ac, store, trust, &apis[n_apis]) < 0) goto out;
        n_apis++;
        log_info("listening on %s:%d (http api%s)", l->addr[0] ? l->addr : "*", l->port,
                 l->certfile[0] ? " over tls" : "");
    }
    /* ---- identity store and REST API (end) ---- */
    if (auth_new(&cfg, &auth) < 0) goto out;
    struct broker_config bc = {
        .max_inflight = cfg.max_inflight,
        .max_queued = cfg.max_queued,
        .max_keepalive = cfg.max_keepalive,
        .allow_anonymous = cfg.allow_anonymous,
        .auth = auth,
        .wake = server_wake,
    };
    if (broker_new(&bc, &broker) < 0) goto out;
    if (server_new(&cfg, broker, &srv, err, sizeof err) < 0) {
        log_error("%s", err);
        goto out;
    }
    if (server_start(srv) < 0) {
        log_error("cannot start worker threads");
        goto out;
    }
    for (size_t i = 0; i < cfg.n_listeners; i++) {
        const struct listener_config *l = &cfg.listeners[i];
        if (l->protocol == PROTO_HTTP) continue; /* started with the store above */
        static const char *const modes[] = {"off", "optional", "required"};
        if (l->certfile[0])
            log_info("listening on %s:%d (mqtt over tls, client certificates %s)",
                     l->addr[0] ? l->addr : "*", l->port, modes[l->client_certs]);
        else
            log_info("listening on %s:%d (mqtt, plain tcp)", l->addr[0] ? l->addr : "*", l->port);
    }
    log_info("certmq %s started with %d worker threads", CERTMQ_VERSION, server_worker_count(&cfg));
    run_until_stopped(srv, &set);
    server_stop(srv);
    srv = NULL;
    auth_log_counters(auth);
    rc = 0;
out:
    if (srv) server_stop(srv);
    for (size_t i = 0; i < n_apis; i++) api_stop(apis[i]); /* identity store and REST API */
    broker_free(broker);
    auth_free(auth);
    trust_free(trust);
    store_close(store);
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
