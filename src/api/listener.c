/* The REST API's listening side: its socket (one address parser with MQTT),
 * the libmicrohttpd daemon (epoll, a small thread pool, per-address and
 * total connection limits), TLS reload by a new daemon on the same socket,
 * the deadline for a request head and the budget shared by all bodies. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include "api/handlers.h"
#include "api/login.h"
#include "net/keypass.h"
#include "core/log.h"
#include "net/addr.h"

/* A connection that is (or may be) sending a request head. */
struct api_conn {
    struct api_conn *prev, *next;
    int fd;
    bool head_done;
    bool cut;     /* shut down once already */
    time_t since; /* monotonic: accept, or end of the previous request */
};

static time_t mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec;
}

/* ---- shared body budget ---- */

int api_budget_take(struct api *a, size_t n)
{
    size_t cur = atomic_load(&a->body_total);
    do {
        if (n > a->cfg.max_body_total || cur > a->cfg.max_body_total - n) return ERR_LIMIT;
    } while (!atomic_compare_exchange_weak(&a->body_total, &cur, cur + n));
    return 0;
}

void api_budget_give(struct api *a, size_t n)
{
    atomic_fetch_sub(&a->body_total, n);
}

/* ---- request-head deadline ---- */

/* libmicrohttpd tells us about each socket: the tracking record lives from
 * STARTED to CLOSED (called before the socket is closed), under conns_lock. */
static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    struct api *a = cls;
    struct api_conn *c = *socket_context;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        c = calloc(1, sizeof *c);
        if (!c || !ci) {
            free(c);
            return;
        }
        c->fd = ci->connect_fd;
        c->since = mono_now();
        pthread_mutex_lock(&a->conns_lock);
        c->next = a->conns;
        if (a->conns) a->conns->prev = c;
        a->conns = c;
        pthread_mutex_unlock(&a->conns_lock);
        *socket_context = c;
        return;
    }
    if (!c) return;
    pthread_mutex_lock(&a->conns_lock);
    if (c->prev)
        c->prev->next = c->next;
    else
        a->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    pthread_mutex_unlock(&a->conns_lock);
    free(c);
    *socket_context = NULL;
}

void api_conn_head_done(struct api *a, struct MHD_Connection *conn, bool done)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    if (!ci || !ci->socket_context) return;
    struct api_conn *c = ci->socket_context;
    pthread_mutex_lock(&a->conns_lock);
    c->head_done = done;
    c->since = mono_now();
    pthread_mutex_unlock(&a->conns_lock);
}

/* Shuts down (does not close: libmicrohttpd owns the descriptor and sees
 * the end of stream) every connection whose head is overdue. */
static void reap_slow_heads(struct api *a, time_t now)
{
    unsigned n = 0;
    for (struct api_conn *c = a->conns; c; c = c->next) {
        if (c->head_done || c->cut || now - c->since < (time_t)a->cfg.header_timeout_s) continue;
        shutdown(c->fd, SHUT_RDWR);
        c->cut = true;
        n++;
    }
    if (n)
        log_info("api: closed %u connections that sent no complete request head in %u s", n,
                 a->cfg.header_timeout_s);
}

static void *reaper_main(void *arg)
{
    struct api *a = arg;
    pthread_mutex_lock(&a->conns_lock);
    while (!a->stopping) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&a->reaper_cv, &a->conns_lock, &ts);
        if (!a->stopping) reap_slow_heads(a, mono_now());
    }
    pthread_mutex_unlock(&a->conns_lock);
    return NULL;
}

/* ---- files and daemon ---- */

static char *read_small_file(const char *path)
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

static void free_secret(char *s)
{
    if (s) OPENSSL_cleanse(s, strlen(s));
    free(s);
}

/* A daemon on a->listen_fd serving cert/key (both NULL: plain HTTP); pw
 * unlocks an encrypted key (NULL: none). */
static struct MHD_Daemon *daemon_start(struct api *a, const char *cert, const char *key,
                                       const char *pw)
{
    unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    struct MHD_OptionItem tls[5];
    size_t n = 0;
    if (cert) {
        flags |= MHD_USE_TLS;
        tls[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, (void *)cert};
        tls[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, (void *)key};
        if (pw) tls[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_KEY_PASSWORD, 0, (void *)pw};
        /* EST re-enrollment over mutual TLS: a trust list makes the server
         * ask for (never require) a client certificate; which one counts is
         * decided per request by the chain policy (peercert.c), not here. */
        if (a->cfg.ca)
            tls[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_TRUST, 0, (void *)cert};
    }
    tls[n] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    return MHD_start_daemon(
        flags, 0, NULL, NULL, api_on_request, a, MHD_OPTION_LISTEN_SOCKET, a->listen_fd,
        MHD_OPTION_THREAD_POOL_SIZE, a->cfg.threads, MHD_OPTION_NOTIFY_COMPLETED, api_on_completed,
        a, MHD_OPTION_NOTIFY_CONNECTION, on_connection, a, MHD_OPTION_URI_LOG_CALLBACK, api_on_uri,
        a, MHD_OPTION_CONNECTION_TIMEOUT, a->cfg.timeout_s, MHD_OPTION_CONNECTION_LIMIT,
        a->cfg.max_connections, MHD_OPTION_PER_IP_CONNECTION_LIMIT, a->cfg.max_per_ip,
        MHD_OPTION_ARRAY, tls, MHD_OPTION_END);
}

/* Does the PEM pair parse and belong together? libmicrohttpd closes the
 * listening socket it was given when it fails to start, so a reload checks
 * the files first and only then starts a daemon on the shared socket. */
static bool pem_pair_usable(const char *cert, const char *key, const char *pw)
{
    BIO *cb = BIO_new_mem_buf(cert, -1), *kb = BIO_new_mem_buf(key, -1);
    X509 *x = cb ? PEM_read_bio_X509(cb, NULL, NULL, NULL) : NULL;
    EVP_PKEY *k = kb ? PEM_read_bio_PrivateKey(kb, NULL, NULL, (void *)(pw ? pw : "")) : NULL;
    bool ok = x && k && X509_check_private_key(x, k) == 1;
    X509_free(x);
    EVP_PKEY_free(k);
    BIO_free(cb);
    BIO_free(kb);
    ERR_clear_error();
    return ok;
}

/* Reads cfg's certificate, key and key password (keyfile_password_file,
 * read again at every start so that a reload sees a changed one) and starts
 * a daemon with them; the PEM text and password are only needed while
 * starting. */
static int daemon_start_tls(struct api *a, struct MHD_Daemon **out, char *err, size_t n)
{
    int rc = 0;
    char pw[KEYPASS_MAX] = "";
    bool has_pw = a->cfg.keyfile_password_file && *a->cfg.keyfile_password_file;
    char *cert = read_small_file(a->cfg.certfile), *key = read_small_file(a->cfg.keyfile);
    if (!cert || !key) {
        snprintf(err, n, "cannot read %s: %s", cert ? a->cfg.keyfile : a->cfg.certfile,
                 strerror(errno));
        rc = ERR_IO;
        goto out;
    }
    if (has_pw && (rc = keypass_read(a->cfg.keyfile_password_file, pw, err, n)) < 0) goto out;
    if (!pem_pair_usable(cert, key, has_pw ? pw : NULL) ||
        !(*out = daemon_start(a, cert, key, has_pw ? pw : NULL))) {
        snprintf(err, n, "%s or %s is not a usable certificate and key%s", a->cfg.certfile,
                 a->cfg.keyfile, has_pw ? " (with keyfile_password_file)" : "");
        rc = ERR_TLS;
    }
out:
    keypass_wipe(pw);
    free(cert);
    free_secret(key);
    return rc;
}

static void api_defaults(struct api_config *c)
{
    if (!c->max_connections) c->max_connections = 256;
    if (!c->timeout_s) c->timeout_s = 30;
    if (!c->threads) c->threads = 4;
    if (!c->max_body_total) c->max_body_total = 256u << 20;
    if (!c->header_timeout_s) c->header_timeout_s = 10;
    if (!c->max_per_ip) c->max_per_ip = 32;
}

static int api_free(struct api *a, int rc)
{
    if (a->reaper_running) {
        pthread_mutex_lock(&a->conns_lock);
        a->stopping = true;
        pthread_cond_signal(&a->reaper_cv);
        pthread_mutex_unlock(&a->conns_lock);
        pthread_join(a->reaper, NULL);
    }
    api_login_release(a); /* no daemon may stop with suspended connections */
    if (a->daemon)
        MHD_stop_daemon(a->daemon); /* closes listen_fd */
    else if (a->listen_fd >= 0)
        close(a->listen_fd);
    pthread_cond_destroy(&a->reaper_cv);
    pthread_mutex_destroy(&a->conns_lock);
    pthread_mutex_destroy(&a->parked_lock);
    EVP_PKEY_free(a->crl_key);
    free(a);
    return rc;
}

static int api_listen(struct api *a)
{
    struct addr ad;
    char why[256];
    if (addr_parse(a->cfg.bind_addr, a->cfg.port, &ad) < 0) {
        log_error("api: bad listen address %s", a->cfg.bind_addr);
        return ERR_INVALID;
    }
    if (addr_listen(&ad, false, &a->listen_fd, why, sizeof why) < 0) {
        log_error("api: cannot listen on port %u: %s", (unsigned)a->cfg.port, why);
        return ERR_IO;
    }
    return 0;
}

int api_start(const struct api_config *cfg, struct store *st, struct trust_index *ti,
              struct api **out)
{
    char err[1024];
    struct api *a = calloc(1, sizeof *a);
    if (!a) return ERR_NOMEM;
    a->cfg = *cfg;
    a->listen_fd = -1;
    api_defaults(&a->cfg);
    pthread_mutex_init(&a->conns_lock, NULL);
    pthread_mutex_init(&a->parked_lock, NULL);
    pthread_cond_init(&a->reaper_cv, NULL);
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
    a->tls = cfg->certfile && *cfg->certfile && cfg->keyfile && *cfg->keyfile;
    int rc = api_listen(a);
    if (rc < 0) return api_free(a, rc);
    if (a->tls) {
        rc = daemon_start_tls(a, &a->daemon, err, sizeof err);
        if (rc < 0) log_error("api: %s", err);
    } else if (!(a->daemon = daemon_start(a, NULL, NULL, NULL))) {
        log_error("api: cannot start the HTTP daemon on port %u", (unsigned)cfg->port);
        rc = ERR_IO;
    }
    if (rc < 0) return api_free(a, rc);
    if (pthread_create(&a->reaper, NULL, reaper_main, a) != 0) return api_free(a, ERR_INTERNAL);
    a->reaper_running = true;
    *out = a;
    return 0;
}

int api_reload_tls(struct api *a, char *err, size_t n)
{
    if (!a || !a->tls) return 0;
    struct MHD_Daemon *fresh = NULL;
    GUARD(daemon_start_tls(a, &fresh, err, n));
    struct MHD_Daemon *old = a->daemon;
    a->daemon = fresh;
    /* The old daemon stops accepting (the socket stays open for the new
     * one), then finishes; its open connections are closed. */
    if (MHD_quiesce_daemon(old) == MHD_INVALID_SOCKET)
        log_warn("api: the old HTTPS daemon had no listening socket");
    api_login_release(a); /* its requests still checking a password get 503 */
    MHD_stop_daemon(old);
    return 0;
}

void api_stop(struct api *a)
{
    if (a) ignore_result(api_free(a, 0));
}
