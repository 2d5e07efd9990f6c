/* Listeners, worker threads and connections (see server.h).
 *
 * Each worker runs one level-triggered epoll loop over its listener sockets,
 * its connections and an eventfd. A connection moves through the TLS
 * handshake, then reads bytes into MQTT frames handed to the broker, and
 * writes whatever the broker put in its output buffer. Other threads never
 * touch a connection: they put it on its worker's dirty list (server_wake)
 * and the worker drains the broker's queue for it after its event batch. */
#include "net/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "broker/broker.h"
#include "core/buf.h"
#include "core/log.h"
#include "identity/auth.h"
#include "identity/revocation.h"
#include "core/metrics.h"
#include "mqtt/codec.h"
#include "identity/pwcheck.h"
#include "net/addr.h"
#include "net/proxyproto.h"
#include "net/tls.h"

#define READ_CHUNK (64 * 1024)
/* A client that sends faster than it reads (acks pile up in its output) is
 * not read from again until its output drains below OUT_RESUME. */
#define OUT_PAUSE  (1024 * 1024)
#define OUT_RESUME (64 * 1024)
#define TICK_MS    250
#define LINGER_MS  2000
#define EV_WAKE    63 /* epoll tag of the eventfd; listener tags are their index */

struct listener {
    struct listener_config cfg;
    pthread_mutex_t lock; /* guards ctx and ca against reload */
    SSL_CTX *ctx;         /* NULL: plain TCP */
    X509_STORE *ca;
};

/* CONN_LINGER: the broker closed a 5.0 client with a DISCONNECT; what the
 * client still sends is read and dropped until it closes or LINGER_MS pass,
 * so the DISCONNECT is not lost to a reset (4.13). */
/* CONN_PROXY: a proxy_protocol listener's connection before its PROXY
 * header is complete (proxyproto.h). */
enum conn_state { CONN_PROXY, CONN_HANDSHAKE, CONN_MQTT, CONN_LINGER };

struct conn {
    struct client cl; /* first: server_wake casts back */
    struct worker *w;
    struct listener *lis;
    struct conn *prev, *next;
    SSL *ssl;
    X509_STORE *ca; /* reference held for the connection's life */
    int fd;
    uint8_t state;
    bool out_armed; /* EPOLLOUT registered */
    bool paused;    /* EPOLLIN off: output above OUT_PAUSE */
    bool in_off;    /* EPOLLIN is off (paused, or waiting for a password check) */
    bool dead;
    struct pwcheck_job *auth_job; /* the CONNECT's password check, running */
    struct buf in;
    uint64_t deadline_ms; /* handshake or CONNECT deadline; 0 once connected */
    uint64_t last_rx_ms;
    uint64_t accept_us; /* for the handshake latency histogram */
};

struct worker {
    struct server *srv;
    int id;
    pthread_t thread;
    int epfd;
    int evfd;
    int lfds[CONFIG_MAX_LISTENERS];
    struct conn *conns;
    pthread_mutex_t dirty_lock;
    struct conn **dirty;
    size_t n_dirty, cap_dirty;
    uint8_t *rbuf;
};

struct server {
    const struct config *cfg;
    struct broker *broker;
    struct listener lis[CONFIG_MAX_LISTENERS];
    size_t n_lis;
    struct worker *workers;
    int n_workers;
    atomic_long n_conns;
    atomic_bool stop;
    struct pwcheck *pw;         /* NULL: passwords are checked on the worker */
    void (*work_fn)(void *arg); /* posted work: run by the first worker */
    void *work_arg;
    atomic_bool work_posted;
};

static _Thread_local struct worker *current_worker;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

int server_worker_count(const struct config *cfg)
{
    if (cfg->workers > 0) return (int)cfg->workers;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* ---- listeners ---- */

/* Binds and listens on the listener's address. The workers' sockets
 * share the port through SO_REUSEPORT; a probe socket goes without it, so
 * its bind fails while any other process listens on the port, SO_REUSEPORT
 * or not. */
static int bind_socket_mode(const struct listener_config *lc, bool probe, int *out, char *err,
                            size_t n)
{
    struct addr a;
    char why[256];
    if (addr_parse(lc->addr, (uint16_t)lc->port, &a) < 0) {
        snprintf(err, n, "listener %d: '%s' is not an IP address", lc->port, lc->addr);
        return ERR_INVALID;
    }
    if (addr_listen(&a, !probe, out, why, sizeof why) < 0) {
        if (probe && errno == EADDRINUSE)
            snprintf(err, n, "listener %d %s: the port is already in use by another process",
                     lc->port, lc->addr[0] ? lc->addr : "*");
        else
            snprintf(err, n, "listener %d %s: %s", lc->port, lc->addr, why);
        return ERR_IO;
    }
    return 0;
}

static int bind_socket(const struct listener_config *lc, int *out, char *err, size_t n)
{
    return bind_socket_mode(lc, false, out, err, n);
}

int server_probe_ports(const struct config *cfg, char *err, size_t n)
{
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        int fd = -1;
        GUARD(bind_socket_mode(&cfg->listeners[i], true, &fd, err, n));
        close(fd);
    }
    return 0;
}

/* Loads (or reloads) a listener's TLS context and CA store. */
static int listener_load(struct listener *l, char *err, size_t n)
{
    if (!l->cfg.certfile[0]) return 0;
    SSL_CTX *ctx = NULL;
    X509_STORE *ca = NULL;
    if (l->cfg.crlfile[0] && !l->cfg.cafile[0]) {
        snprintf(err, n, "crlfile %s: the listener has no cafile whose CRLs it could hold",
                 l->cfg.crlfile);
        return ERR_INVALID;
    }
    GUARD(tls_ctx_new(&l->cfg, &ctx, err, n));
    if (l->cfg.cafile[0] && l->cfg.client_certs != CLIENT_CERTS_OFF) {
        int rc = tls_ca_store_new(l->cfg.cafile, &ca, err, n);
        if (rc == 0 && l->cfg.crlfile[0]) rc = revoc_crlfile_load(ca, l->cfg.crlfile, err, n);
        if (rc < 0) {
            X509_STORE_free(ca);
            SSL_CTX_free(ctx);
            return rc;
        }
    }
    pthread_mutex_lock(&l->lock);
    SSL_CTX *old_ctx = l->ctx;
    X509_STORE *old_ca = l->ca;
    l->ctx = ctx;
    l->ca = ca;
    pthread_mutex_unlock(&l->lock);
    SSL_CTX_free(old_ctx);
    X509_STORE_free(old_ca);
    return 0;
}

/* ---- connections ---- */

static void conn_set_events(struct conn *c, bool out, bool paused)
{
    bool in_off = paused || c->auth_job || c->cl.claim == CLAIM_WAITING;
    c->paused = paused;
    if (c->out_armed == out && c->in_off == in_off) return;
    struct epoll_event ev = {.events = (in_off ? 0 : EPOLLIN) | (out ? EPOLLOUT : 0),
                             .data.ptr = c};
    epoll_ctl(c->w->epfd, EPOLL_CTL_MOD, c->fd, &ev);
    c->out_armed = out;
    c->in_off = in_off;
}

static void conn_arm_out(struct conn *c, bool on)
{
    conn_set_events(c, on, c->paused);
}

/* Writes as much of the output buffer as the socket takes. Returns true
 * when this lifted a read pause (the caller then reads again: TLS may hold
 * records that epoll cannot see). */
static bool conn_flush(struct conn *c)
{
    bool was_paused = c->paused;
    struct buf *out = &c->cl.out;
    while (buf_used(out) && !c->dead) {
        size_t len = buf_used(out);
        ssize_t n;
        if (c->ssl) {
            ERR_clear_error();
            int r = SSL_write(c->ssl, buf_head(out), (int)(len > INT32_MAX ? INT32_MAX : len));
            if (r <= 0) {
                int e = SSL_get_error(c->ssl, r);
                if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) break;
                c->dead = true;
                break;
            }
            n = r;
        } else {
            n = send(c->fd, buf_head(out), len, MSG_NOSIGNAL);
            if (n < 0) {
                if (errno == EAGAIN || errno == EINTR) break;
                c->dead = true;
                break;
            }
        }
        buf_consume(out, (size_t)n);
    }
    if (!buf_used(out)) buf_shrink(out);
    if (c->dead) return false;
    size_t used = buf_used(out);
    bool paused = used > OUT_PAUSE || (c->paused && used > OUT_RESUME);
    conn_set_events(c, used > 0, paused);
    return was_paused && !paused;
}

static void dirty_remove(struct worker *w, struct conn *c)
{
    pthread_mutex_lock(&w->dirty_lock);
    if (c->cl.dirty) {
        for (size_t i = 0; i < w->n_dirty; i++)
            if (w->dirty[i] == c) {
                w->dirty[i] = w->dirty[--w->n_dirty];
                break;
            }
        c->cl.dirty = false;
    }
    pthread_mutex_unlock(&w->dirty_lock);
}

static void conn_close(struct conn *c, bool abnormal)
{
    struct worker *w = c->w;
    if (!c->dead) conn_flush(c); /* a refusing CONNACK, for one */
    broker_close(w->srv->broker, &c->cl, abnormal);
    /* Before dirty_remove: after the cancel no check can wake c again. */
    if (c->auth_job) pwcheck_cancel(w->srv->pw, c->auth_job);
    dirty_remove(w, c);
    epoll_ctl(w->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    if (c->ssl) {
        if (!c->dead) SSL_shutdown(c->ssl);
        SSL_free(c->ssl);
    }
    X509_STORE_free(c->ca);
    close(c->fd);
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    buf_free(&c->in);
    buf_free(&c->cl.out);
    atomic_fetch_sub(&w->srv->n_conns, 1);
    free(c);
}

/* Ends a connection the way the broker left it: one whose client was sent
 * a DISCONNECT lingers (CONN_LINGER), any other closes at once. */
static void conn_finish(struct conn *c, bool abnormal)
{
    if (c->dead || !c->cl.said_goodbye || c->state != CONN_MQTT) {
        conn_close(c, abnormal);
        return;
    }
    broker_close(c->w->srv->broker, &c->cl, abnormal);
    conn_flush(c);
    if (c->dead) {
        conn_close(c, abnormal);
        return;
    }
    if (c->ssl)
        SSL_shutdown(c->ssl);
    else
        shutdown(c->fd, SHUT_WR);
    c->state = CONN_LINGER;
    c->deadline_ms = now_ms() + LINGER_MS;
    conn_set_events(c, false, false);
}

/* Reads and drops what a lingering connection receives; closes it at the
 * end of its input. */
static void conn_linger_read(struct conn *c)
{
    uint8_t *rbuf = c->w->rbuf;
    for (;;) {
        ssize_t n;
        if (c->ssl) {
            ERR_clear_error();
            n = SSL_read(c->ssl, rbuf, READ_CHUNK);
            if (n <= 0 && SSL_get_error(c->ssl, (int)n) == SSL_ERROR_WANT_READ) return;
        } else {
            n = recv(c->fd, rbuf, READ_CHUNK, 0);
            if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
        }
        if (n <= 0) break;
    }
    c->dead = true;
    conn_close(c, false);
}

static void conn_accept(struct worker *w, struct listener *l, int fd, const struct sockaddr *sa)
{
    struct server *s = w->srv;
    if (atomic_fetch_add(&s->n_conns, 1) >= s->cfg->max_connections) {
        atomic_fetch_sub(&s->n_conns, 1);
        log_warn("max_connections (%ld) reached: connection refused", s->cfg->max_connections);
        close(fd);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct conn *c = calloc(1, sizeof *c);
    if (!c) goto fail;
    c->fd = fd;
    c->w = w;
    c->lis = l;
    c->cl.owner = w;
    buf_init(&c->in, (size_t)s->cfg->max_packet_size + 8);
    buf_init(&c->cl.out, 0);
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (sa->sa_family == AF_INET) {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, host, sizeof host);
        port = ntohs(((const struct sockaddr_in *)sa)->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, host, sizeof host);
        port = ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
    }
    snprintf(c->cl.peer, sizeof c->cl.peer, "%s:%d", host, port);
    uint64_t now = now_ms();
    c->last_rx_ms = now;
    c->accept_us = now_us();
    c->cl.since = (int64_t)time(NULL);
    if (l->cfg.certfile[0]) {
        pthread_mutex_lock(&l->lock);
        c->ssl = SSL_new(l->ctx);
        if (l->ca && X509_STORE_up_ref(l->ca)) c->ca = l->ca;
        pthread_mutex_unlock(&l->lock);
        if (!c->ssl) goto fail;
        SSL_set_fd(c->ssl, fd);
        SSL_set_accept_state(c->ssl);
        c->state = CONN_HANDSHAKE;
        c->deadline_ms = now + (uint64_t)s->cfg->handshake_timeout * 1000;
    } else {
        c->state = CONN_MQTT;
        c->deadline_ms = now + (uint64_t)s->cfg->connect_timeout * 1000;
    }
    if (l->cfg.proxy_protocol) {
        c->state = CONN_PROXY; /* the handshake's deadline covers the header too */
        c->deadline_ms = now + (uint64_t)s->cfg->handshake_timeout * 1000;
    }
    c->cl.listener_ca = c->ca;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) goto fail;
    c->next = w->conns;
    if (w->conns) w->conns->prev = c;
    w->conns = c;
    return;
fail:
    log_error("cannot set up connection: out of memory");
    if (c) {
        SSL_free(c->ssl);
        X509_STORE_free(c->ca);
        buf_free(&c->in);
        free(c);
    }
    close(fd);
    atomic_fetch_sub(&s->n_conns, 1);
}

/* Reads the PROXY header, never a byte past it (the TLS handshake or MQTT
 * follows on the socket), into c->in; once it is complete the connection's
 * peer is the client the balancer names, for logs, limits and the API. */
static void conn_proxy_read(struct conn *c)
{
    for (;;) {
        size_t need;
        struct proxy_addr a;
        int rc = proxy_parse(buf_head(&c->in), buf_used(&c->in), &need, &a);
        if (rc < 0) {
            log_info("%s: no valid PROXY protocol v2 header, closing", c->cl.peer);
            c->dead = true;
            return;
        }
        if (rc == 1) {
            if (a.has_addr) proxy_addr_format(&a, c->cl.peer, sizeof c->cl.peer);
            buf_consume(&c->in, need);
            c->state = c->ssl ? CONN_HANDSHAKE : CONN_MQTT;
            if (!c->ssl)
                c->deadline_ms = now_ms() + (uint64_t)c->w->srv->cfg->connect_timeout * 1000;
            return;
        }
        uint8_t part[512];
        size_t want = need - buf_used(&c->in);
        ssize_t n = recv(c->fd, part, want < sizeof part ? want : sizeof part, 0);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
        if (n <= 0 || buf_append(&c->in, part, (size_t)n) < 0) {
            c->dead = true;
            return;
        }
    }
}

static void listener_ready(struct worker *w, size_t idx)
{
    for (int i = 0; i < 64; i++) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;
        int fd = accept4(w->lfds[idx], (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                log_warn("accept: %s", strerror(errno));
            return;
        }
        conn_accept(w, &w->srv->lis[idx], fd, (struct sockaddr *)&ss);
    }
}

/* After CONNECT the certificates sent behind the leaf are not needed again:
 * free them so an idle connection holds one parsed certificate, not three.
 * (The stack is the session's own, emptied through the public API.) */
static void release_peer_chain(struct conn *c)
{
    if (!c->cl.chain) return;
    X509 *x;
    while ((x = sk_X509_pop(c->cl.chain))) X509_free(x);
    c->cl.chain = NULL;
}

/* Once CONNECT has decided who the client is, the connection lets go of its
 * TLS session and the peer certificate in it: what later checks need is in
 * its broker session (identity, anchor, serials) and in cl (notAfter). */
MUST_USE static int release_session(struct conn *c)
{
    if (!c->ssl) return 0;
    c->cl.leaf = NULL;
    if (tls_session_drop(c->ssl) == 0) return 0;
    log_error("%s: cannot release the TLS session, closing", c->cl.peer);
    c->dead = true;
    return ERR_TLS;
}

/* With shared ticket keys the ticket goes out now that CONNECT has decided
 * (it says whether the chain proved the anchor), and the session is let go
 * of after it; one still queued for the socket keeps the session. */
MUST_USE static int send_ticket(struct conn *c)
{
    int t = c->ssl ? tls_ticket_send(c->ssl) : 0;
    if (t < 0) {
        log_info("%s: cannot send the TLS session ticket, closing", c->cl.peer);
        c->dead = true;
        return ERR_TLS;
    }
    return t == 0 ? release_session(c) : 0;
}

/* ---- password checks off the worker ---- */

static void auth_done(void *arg)
{
    server_wake(arg);
}

/* A CONNECT that logs in with a password is answered from the cache or the
 * failure limits at once; otherwise its check goes to the pool and the
 * connection stops reading until it is done (conn_auth_resume). Returns
 * true when the CONNECT must wait. */
static bool conn_auth_defer(struct conn *c, const struct mqtt_connect *p)
{
    struct pwcheck *pw = c->w->srv->pw;
    char source[sizeof c->cl.peer];
    const char *login = (const char *)p->username.p;
    if (!pw || c->cl.leaf || c->cl.pw_verdict || !p->has_username || !p->has_password ||
        !memchr(login, '/', p->username.len))
        return false;
    broker_client_source(&c->cl, source, sizeof source);
    const char *pwd = (const char *)p->password.p;
    int q =
        pwcheck_quick(pw, source, login, p->username.len, pwd, p->password.len, &c->cl.pw_roles);
    if (q != 0) {
        c->cl.pw_verdict = q == 1 ? 1 : q;
        return false;
    }
    q = pwcheck_submit(pw, source, login, p->username.len, pwd, p->password.len, auth_done, &c->cl,
                       &c->auth_job);
    if (q < 0) {
        c->cl.pw_verdict = ERR_QUEUE_FULL; /* CONNACK 3: server unavailable */
        return false;
    }
    conn_set_events(c, c->out_armed, c->paused); /* stop reading */
    return true;
}

static long conn_frames(struct conn *c, const uint8_t *data, size_t len, bool *abnormal);
static bool conn_readable(struct conn *c);

static void conn_frames_resume(struct conn *c);

/* The password check is done: its verdict goes with the CONNECT, which is
 * still first in c->in, and reading goes on. */
static void conn_auth_resume(struct conn *c)
{
    struct pwcheck *pw = c->w->srv->pw;
    if (!pwcheck_ready(pw, c->auth_job)) return;
    int rc = pwcheck_finish(pw, c->auth_job, &c->cl.pw_roles);
    c->auth_job = NULL;
    c->cl.pw_verdict = rc == 0 ? 1 : rc;
    conn_frames_resume(c);
}

/* The CONNECT waiting in c->in goes on, and reading too. */
static void conn_frames_resume(struct conn *c)
{
    bool abnormal = true;
    long used = conn_frames(c, buf_head(&c->in), buf_used(&c->in), &abnormal);
    if (used < 0) {
        conn_close(c, abnormal);
        return;
    }
    buf_consume(&c->in, (size_t)used);
    buf_shrink(&c->in);
    conn_flush(c);
    if (c->dead)
        conn_close(c, true);
    else
        conn_readable(c); /* TLS may hold records that epoll cannot see */
}

/* A packet that does not parse closes the connection. A CONNECT of an
 * unknown level is answered CONNACK 1 (3.1.1); a 5.0 CONNECT that breaks a
 * rule gets CONNACK 0x81/0x82, a 5.0 client's later packet a DISCONNECT. */
static void conn_refuse_packet(struct conn *c, const struct mqtt_packet *p, int rc)
{
    bool connect = p->type == MQTT_CONNECT && c->cl.state == CLIENT_NEW;
    uint8_t reason = rc == ERR_PROTO ? MQTT_RC_PROTOCOL_ERROR : MQTT_RC_MALFORMED;
    log_info("%s: %s packet, closing", c->cl.peer,
             rc == ERR_PROTO ? "protocol error in a" : "malformed");
    if (rc == ERR_PROTO_VERSION && connect)
        ignore_result(mqtt_encode_connack(&c->cl.out, false, MQTT_CONNACK_BAD_PROTOCOL, NULL));
    else if (connect && p->version == MQTT_V5)
        ignore_result(mqtt_encode_connack(&c->cl.out, false, reason, &mqtt_props_none));
    else
        broker_say_goodbye(&c->cl, reason);
}

/* Hands every whole frame in data to the broker; returns bytes used, or a
 * negative code when the connection must close. Stops before a CONNECT
 * whose password check has to wait. */
static long conn_frames(struct conn *c, const uint8_t *data, size_t len, bool *abnormal)
{
    struct server *s = c->w->srv;
    size_t used = 0;
    while (used < len && !c->auth_job && c->cl.claim != CLAIM_WAITING) {
        size_t flen;
        int rc = mqtt_frame(data + used, len - used, (size_t)s->cfg->max_packet_size, &flen);
        if (rc == 0) break;
        if (rc < 0) {
            log_info("%s: %s, closing", c->cl.peer,
                     rc == ERR_TOO_LARGE ? "packet exceeds max_packet_size" : "malformed packet");
            broker_say_goodbye(&c->cl, broker_close_reason(&c->cl, rc));
            return rc;
        }
        struct mqtt_packet p;
        rc = mqtt_parse(data + used, flen, c->cl.protocol_level, &p);
        if (rc < 0) {
            conn_refuse_packet(c, &p, rc);
            return rc;
        }
        if (p.type == MQTT_CONNECT && c->cl.state == CLIENT_NEW && conn_auth_defer(c, &p.connect))
            break;
        rc = broker_handle(s->broker, &c->cl, &p, time(NULL));
        if (rc == ERR_AGAIN) { /* the cluster answers first (conn_frames_resume) */
            conn_set_events(c, c->out_armed, c->paused);
            break;
        }
        used += flen;
        if (rc < 0 && rc != ERR_CLOSED && rc != ERR_NOT_AUTHORIZED)
            broker_say_goodbye(&c->cl, broker_close_reason(&c->cl, rc));
        if (rc < 0) {
            /* DISCONNECT and refused CONNECTs end normally: no will. */
            *abnormal = !(rc == ERR_CLOSED || rc == ERR_NOT_AUTHORIZED);
            return rc;
        }
        if (c->cl.state == CLIENT_ACTIVE && c->deadline_ms) {
            c->deadline_ms = 0;
            if (c->ssl && c->cl.chain_proven && !SSL_session_reused(c->ssl))
                tls_session_mark_chain_proven(c->ssl);
            release_peer_chain(c);
            if (send_ticket(c) < 0) return ERR_TLS;
        }
    }
    return (long)used;
}

/* Feeds received bytes through the frame parser, keeping a partial frame
 * in c->in. Parses straight from the read buffer when nothing is pending. */
static int conn_input(struct conn *c, const uint8_t *data, size_t len, bool *abnormal)
{
    if (buf_used(&c->in)) {
        if (buf_append(&c->in, data, len) < 0) {
            log_info("%s: packet exceeds max_packet_size, closing", c->cl.peer);
            return ERR_TOO_LARGE;
        }
        long used = conn_frames(c, buf_head(&c->in), buf_used(&c->in), abnormal);
        if (used < 0) return (int)used;
        buf_consume(&c->in, (size_t)used);
        buf_shrink(&c->in);
        return 0;
    }
    long used = conn_frames(c, data, len, abnormal);
    if (used < 0) return (int)used;
    if ((size_t)used < len && buf_append(&c->in, data + used, len - (size_t)used) < 0)
        return ERR_TOO_LARGE;
    return 0;
}

/* What the live view and the metrics show of a finished handshake. */
static void conn_note_tls(struct conn *c)
{
    c->cl.tls_version = SSL_get_version(c->ssl);
    c->cl.cipher = SSL_get_cipher_name(c->ssl);
    c->cl.resumed = SSL_session_reused(c->ssl);
    c->cl.not_after = 0;
    struct tm tm;
    if (c->cl.leaf && ASN1_TIME_to_tm(X509_get0_notAfter(c->cl.leaf), &tm) == 1)
        c->cl.not_after = (int64_t)timegm(&tm);
    metrics_tls_handshake(c->cl.resumed, now_us() - c->accept_us);
}

static void conn_handshake(struct conn *c)
{
    ERR_clear_error();
    int r = SSL_do_handshake(c->ssl);
    if (r == 1) {
        c->state = CONN_MQTT;
        c->deadline_ms = now_ms() + (uint64_t)c->w->srv->cfg->connect_timeout * 1000;
        c->cl.leaf = SSL_get0_peer_certificate(c->ssl);
        c->cl.chain = SSL_get_peer_cert_chain(c->ssl);
        c->cl.chain_proven = tls_session_chain_proven(c->ssl);
        conn_note_tls(c);
        return;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ) {
        conn_arm_out(c, false);
    } else if (e == SSL_ERROR_WANT_WRITE) {
        conn_arm_out(c, true);
    } else {
        unsigned long le = ERR_peek_last_error();
        log_debug("%s: TLS handshake failed: %s", c->cl.peer,
                  le ? ERR_reason_error_string(le) : "connection closed");
        ERR_clear_error();
        c->dead = true;
    }
}

/* Reads everything available and handles it. Returns false when closed. */
static bool conn_readable(struct conn *c)
{
    uint8_t *rbuf = c->w->rbuf;
    bool abnormal = true;
    for (;;) {
        ssize_t n;
        if (c->ssl) {
            ERR_clear_error();
            int r = SSL_read(c->ssl, rbuf, READ_CHUNK);
            if (r <= 0) {
                int e = SSL_get_error(c->ssl, r);
                if (e == SSL_ERROR_WANT_READ) break;
                if (e == SSL_ERROR_WANT_WRITE) {
                    conn_arm_out(c, true);
                    break;
                }
                c->dead = e != SSL_ERROR_ZERO_RETURN;
                goto close;
            }
            n = r;
        } else {
            n = recv(c->fd, rbuf, READ_CHUNK, 0);
            if (n == 0) goto close;
            if (n < 0) {
                if (errno == EAGAIN || errno == EINTR) break;
                c->dead = true;
                goto close;
            }
        }
        c->last_rx_ms = now_ms();
        if (conn_input(c, rbuf, (size_t)n, &abnormal) < 0) goto close;
        if (c->auth_job || c->cl.claim == CLAIM_WAITING)
            return true; /* resumed by conn_auth_resume or conn_frames_resume */
        if (buf_used(&c->cl.out) > OUT_PAUSE) {
            conn_flush(c);
            if (c->dead) goto close;
            if (c->paused) return true; /* resumed by conn_flush from EPOLLOUT */
        }
        if (!c->ssl && n < READ_CHUNK) break;
    }
    conn_flush(c);
    if (c->dead) goto close;
    return true;
close:
    conn_finish(c, abnormal);
    return false;
}

static void conn_event(struct conn *c, uint32_t events)
{
    if (c->state == CONN_LINGER) {
        conn_linger_read(c);
        return;
    }
    if (c->state == CONN_PROXY) {
        conn_proxy_read(c);
        if (c->dead) {
            conn_close(c, false);
            return;
        }
        if (c->state == CONN_PROXY) return;
    }
    if (c->state == CONN_HANDSHAKE) {
        conn_handshake(c);
        if (c->dead) {
            conn_close(c, false);
            return;
        }
        if (c->state == CONN_HANDSHAKE) return;
        /* Read ahead with the client's Finished, its CONNECT may already
         * sit in TLS's buffer, where epoll cannot see it. */
        events |= EPOLLIN;
    }
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        if (!conn_readable(c)) return;
    } else if (events & EPOLLOUT) {
        bool resumed = conn_flush(c);
        if (c->dead)
            conn_close(c, true);
        else if (resumed)
            conn_readable(c);
    }
}

/* Closes connections past their handshake, CONNECT or keepalive time. */
static void worker_tick(struct worker *w)
{
    uint64_t now = now_ms();
    struct conn *next;
    /* Worker 0 also ends expired offline sessions, once a second. */
    if (w->id == 0 && now / 1000 != (now - TICK_MS) / 1000) {
        int n = broker_expire_sessions(w->srv->broker, time(NULL));
        if (n) log_info("%d offline session(s) expired", n);
    }
    for (struct conn *c = w->conns; c; c = next) {
        next = c->next;
        if (c->deadline_ms && now > c->deadline_ms && c->state == CONN_LINGER) {
            conn_close(c, false);
        } else if (c->deadline_ms && now > c->deadline_ms) {
            log_info("%s: %s timeout, closing", c->cl.peer,
                     c->state == CONN_PROXY       ? "PROXY header"
                     : c->state == CONN_HANDSHAKE ? "handshake"
                                                  : "CONNECT");
            conn_close(c, false);
        } else if (c->cl.state == CLIENT_ACTIVE && c->cl.keepalive &&
                   now - c->last_rx_ms > (uint64_t)c->cl.keepalive * 1500) {
            log_info("%s: keepalive expired, closing", c->cl.peer);
            broker_say_goodbye(&c->cl, MQTT_RC_KEEPALIVE_TIMEOUT);
            conn_finish(c, true);
        }
    }
}

static void worker_drain_dirty(struct worker *w)
{
    pthread_mutex_lock(&w->dirty_lock);
    while (w->n_dirty) {
        struct conn *c = w->dirty[--w->n_dirty];
        c->cl.dirty = false;
        pthread_mutex_unlock(&w->dirty_lock);
        if (c->state == CONN_LINGER) {
            /* nothing more goes out */
        } else if (c->auth_job) {
            conn_auth_resume(c);
        } else if (c->cl.claim == CLAIM_DONE && c->cl.state == CLIENT_NEW) {
            conn_frames_resume(c); /* the cluster answered the CONNECT's claim */
        } else if (broker_drain(w->srv->broker, &c->cl) == ERR_CLOSED) {
            conn_finish(c, false);
        } else {
            bool resumed = conn_flush(c);
            if (c->dead)
                conn_close(c, true);
            else if (resumed)
                conn_readable(c);
        }
        pthread_mutex_lock(&w->dirty_lock);
    }
    pthread_mutex_unlock(&w->dirty_lock);
}

void server_wake(struct client *cl)
{
    struct conn *c = (struct conn *)cl;
    struct worker *w = c->w;
    bool notify = false;
    pthread_mutex_lock(&w->dirty_lock);
    if (!cl->dirty) {
        if (w->n_dirty == w->cap_dirty) {
            size_t n = w->cap_dirty ? w->cap_dirty * 2 : 64;
            struct conn **d = realloc(w->dirty, n * sizeof *d);
            if (!d) {
                pthread_mutex_unlock(&w->dirty_lock);
                log_error("out of memory queueing a delivery");
                return;
            }
            w->dirty = d;
            w->cap_dirty = n;
        }
        w->dirty[w->n_dirty++] = c;
        cl->dirty = true;
        notify = w->n_dirty == 1 && w != current_worker;
    }
    pthread_mutex_unlock(&w->dirty_lock);
    if (notify) {
        uint64_t one = 1;
        ssize_t r = write(w->evfd, &one, sizeof one);
        (void)r;
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    current_worker = w;
    struct epoll_event evs[256];
    uint64_t next_tick = now_ms() + TICK_MS;
    while (!atomic_load(&w->srv->stop)) {
        uint64_t now = now_ms();
        int timeout = now >= next_tick ? 0 : (int)(next_tick - now);
        int n = epoll_wait(w->epfd, evs, 256, timeout);
        for (int i = 0; i < n; i++) {
            uint64_t tag = evs[i].data.u64;
            if (tag == EV_WAKE) {
                uint64_t v;
                ssize_t r = read(w->evfd, &v, sizeof v);
                (void)r;
            } else if (tag < CONFIG_MAX_LISTENERS) {
                listener_ready(w, (size_t)tag);
            } else {
                conn_event(evs[i].data.ptr, evs[i].events);
            }
        }
        /* Posted work first: the clients it wakes on this worker are drained next. */
        if (w->id == 0 && atomic_exchange(&w->srv->work_posted, false) && w->srv->work_fn)
            w->srv->work_fn(w->srv->work_arg);
        worker_drain_dirty(w);
        if (now_ms() >= next_tick) {
            worker_tick(w);
            next_tick = now_ms() + TICK_MS;
        }
    }
    while (w->conns) {
        broker_say_goodbye(&w->conns->cl, MQTT_RC_SHUTTING_DOWN);
        conn_close(w->conns, false);
    }
    return NULL;
}

/* ---- server ---- */

static void worker_release(struct worker *w, size_t n_lis)
{
    for (size_t i = 0; i < n_lis; i++)
        if (w->lfds[i] >= 0) close(w->lfds[i]);
    if (w->epfd >= 0) close(w->epfd);
    if (w->evfd >= 0) close(w->evfd);
    pthread_mutex_destroy(&w->dirty_lock);
    free(w->dirty);
    free(w->rbuf);
}

static int worker_init(struct server *s, struct worker *w, char *err, size_t n)
{
    w->srv = s;
    w->epfd = epoll_create1(EPOLL_CLOEXEC);
    w->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    pthread_mutex_init(&w->dirty_lock, NULL);
    w->rbuf = malloc(READ_CHUNK);
    for (size_t i = 0; i < CONFIG_MAX_LISTENERS; i++) w->lfds[i] = -1;
    if (w->epfd < 0 || w->evfd < 0 || !w->rbuf) {
        snprintf(err, n, "cannot create worker: %s", strerror(errno));
        return ERR_IO;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = EV_WAKE};
    epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->evfd, &ev);
    for (size_t i = 0; i < s->n_lis; i++) {
        GUARD(bind_socket(&s->lis[i].cfg, &w->lfds[i], err, n));
        struct epoll_event lev = {.events = EPOLLIN, .data.u64 = i};
        epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->lfds[i], &lev);
    }
    return 0;
}

static void server_free(struct server *s)
{
    for (int i = 0; i < s->n_workers; i++) worker_release(&s->workers[i], s->n_lis);
    free(s->workers);
    for (size_t i = 0; i < s->n_lis; i++) {
        SSL_CTX_free(s->lis[i].ctx);
        X509_STORE_free(s->lis[i].ca);
        pthread_mutex_destroy(&s->lis[i].lock);
    }
    free(s);
}

int server_new(const struct config *cfg, struct broker *b, struct server **out, char *err, size_t n)
{
    struct server *s = calloc(1, sizeof *s);
    if (!s) return ERR_NOMEM;
    s->cfg = cfg;
    s->broker = b;
    int rc = 0;
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        if (cfg->listeners[i].protocol != PROTO_MQTT) continue;
        struct listener *l = &s->lis[s->n_lis++];
        l->cfg = cfg->listeners[i];
        pthread_mutex_init(&l->lock, NULL);
        GUARD_GOTO(rc, listener_load(l, err, n), fail);
    }
    s->n_workers = server_worker_count(cfg);
    s->workers = calloc((size_t)s->n_workers, sizeof *s->workers);
    if (!s->workers) {
        rc = ERR_NOMEM;
        goto fail;
    }
    for (int i = 0; i < s->n_workers; i++) {
        s->workers[i].epfd = s->workers[i].evfd = -1;
        s->workers[i].id = i;
        GUARD_GOTO(rc, worker_init(s, &s->workers[i], err, n), fail);
    }
    *out = s;
    return 0;
fail:
    server_free(s);
    return rc;
}

void server_set_pwcheck(struct server *s, struct pwcheck *pw)
{
    s->pw = pw;
}

void server_set_work(struct server *s, void (*fn)(void *arg), void *arg)
{
    s->work_fn = fn;
    s->work_arg = arg;
}

void server_post_work(struct server *s)
{
    if (atomic_exchange(&s->work_posted, true)) return; /* the first worker is told already */
    uint64_t one = 1;
    ssize_t r = write(s->workers[0].evfd, &one, sizeof one);
    (void)r;
}

int server_start(struct server *s)
{
    for (int i = 0; i < s->n_workers; i++)
        if (pthread_create(&s->workers[i].thread, NULL, worker_main, &s->workers[i]) != 0)
            return ERR_INTERNAL;
    return 0;
}

/* A client of the static space whose validated path a CRL of store lists. */
static bool static_revoked(const struct auth_result *who, void *store)
{
    return !who->device && !who->tenant[0] && revoc_path_revoked_store(store, &who->path);
}

/* Drops the connected clients that the listener's (new) crlfile revokes. */
static void listener_kick_revoked(struct server *s, struct listener *l)
{
    X509_STORE *ca = NULL;
    if (!l->cfg.crlfile[0]) return;
    pthread_mutex_lock(&l->lock);
    if (l->ca && X509_STORE_up_ref(l->ca)) ca = l->ca;
    pthread_mutex_unlock(&l->lock);
    if (!ca) return;
    int k = broker_kick_where(s->broker, static_revoked, ca);
    if (k) log_info("crlfile %s: %d revoked client(s) disconnected", l->cfg.crlfile, k);
    X509_STORE_free(ca);
}

int server_reload_tls(struct server *s, char *err, size_t n)
{
    for (size_t i = 0; i < s->n_lis; i++) {
        GUARD(listener_load(&s->lis[i], err, n));
        listener_kick_revoked(s, &s->lis[i]);
    }
    return 0;
}

void server_stop(struct server *s)
{
    atomic_store(&s->stop, true);
    for (int i = 0; i < s->n_workers; i++) {
        uint64_t one = 1;
        ssize_t r = write(s->workers[i].evfd, &one, sizeof one);
        (void)r;
    }
    for (int i = 0; i < s->n_workers; i++) pthread_join(s->workers[i].thread, NULL);
    server_free(s);
}
