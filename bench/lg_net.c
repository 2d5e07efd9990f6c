/* certmq-loadgen connections: one SSL_CTX per device certificate, non-blocking
 * TCP connects with TCP_NODELAY, full TLS handshakes (no tickets, no session
 * cache: every connection sends its certificate chain; with --resume, TLS 1.3
 * resumption with the last ticket kept) and MQTT framing over one
 * edge-triggered epoll set. Modes see only whole parsed packets. */
#include "lg.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509.h>

#define LG_MAX_PACKET  (1u << 20)
#define LG_READ_CHUNK  16384
#define LG_WRITE_CHUNK 16384 /* one TLS record: many small packets per record */

/* --resume: a copy of the ticket the broker just sent replaces the one kept
 * (c->ticket: a storm slot's own, as a slot is one device; else its
 * device's, as devices take turns over the slots). A copy, as a device
 * stores its ticket: the SSL's own session is marked not resumable when the
 * connection is freed without a close_notify, which is how a storm ends it. */
static int on_new_session(SSL *ssl, SSL_SESSION *sess)
{
    struct lg_conn *c = SSL_get_app_data(ssl);
    if (!c || !c->ticket || !SSL_SESSION_is_resumable(sess)) return 0;
    SSL_SESSION *copy = SSL_SESSION_dup(sess);
    if (!copy) return 0;
    if (*c->ticket) SSL_SESSION_free(*c->ticket);
    *c->ticket = copy;
    return 0;
}

/* The CA file is parsed once: every device's context shares its store
 * (thousands of contexts would otherwise each parse it). */
static SSL_CTX *ctx_new(const struct lg_opts *o, X509_STORE *cas, const char *chain,
                        const char *key)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) return NULL;
    SSL_CTX_set_min_proto_version(ctx, o->resume ? TLS1_3_VERSION : TLS1_2_VERSION);
    if (o->resume) {
        /* Each slot keeps its own ticket (on_new_session); no shared cache. */
        SSL_CTX_set_session_cache_mode(ctx,
                                       SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
        SSL_CTX_sess_set_new_cb(ctx, on_new_session);
    } else {
        /* Every connection is a full handshake: no tickets offered or kept. */
        SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    }
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* A broker that sends one small record per packet would otherwise cost
     * the generator one read() per record. */
    SSL_CTX_set_read_ahead(ctx, 1);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if ((o->suites && SSL_CTX_set_ciphersuites(ctx, o->suites) != 1) ||
        SSL_CTX_set1_verify_cert_store(ctx, cas) != 1 ||
        SSL_CTX_use_certificate_chain_file(ctx, chain) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

static int dev_cn(SSL_CTX *ctx, char *cn, size_t len)
{
    X509 *x = SSL_CTX_get0_certificate(ctx);
    if (!x) return ERR_INVALID;
    int n = X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, (int)len);
    return n > 0 ? 0 : ERR_INVALID;
}

/* Loads dev-0, dev-1, ... from the device directory until one is missing
 * or max devices are loaded. */
static int load_devices_with(struct lg *lg, X509_STORE *cas, int max)
{
    int cap = 16;
    lg->devs = calloc((size_t)cap, sizeof *lg->devs);
    if (!lg->devs) return ERR_NOMEM;
    for (int i = 0; !max || i < max; i++) {
        char chain[4096], key[4096];
        snprintf(chain, sizeof chain, "%s/dev-%d.pem", lg->o.devdir, i);
        snprintf(key, sizeof key, "%s/dev-%d.key", lg->o.devdir, i);
        if (access(chain, R_OK) != 0 || access(key, R_OK) != 0) break;
        if (lg->ndev == cap) {
            struct lg_dev *d = realloc(lg->devs, (size_t)cap * 2 * sizeof *d);
            if (!d) return ERR_NOMEM;
            lg->devs = d;
            cap *= 2;
        }
        struct lg_dev *d = &lg->devs[lg->ndev];
        *d = (struct lg_dev){0};
        d->ctx = ctx_new(&lg->o, cas, chain, key);
        if (!d->ctx) {
            fprintf(stderr, "loadgen: cannot load %s / %s (CA %s)\n", chain, key, lg->o.cafile);
            ERR_print_errors_fp(stderr);
            return ERR_TLS;
        }
        lg->ndev++;
        if (dev_cn(d->ctx, d->cn, sizeof d->cn) < 0) return ERR_INVALID;
    }
    if (!lg->ndev) {
        fprintf(stderr, "loadgen: no dev-0.pem/dev-0.key in %s\n", lg->o.devdir);
        return ERR_NOT_FOUND;
    }
    return 0;
}

/* A storm slot uses one device each: no more are loaded than slots. */
static int load_devices(struct lg *lg)
{
    int max = lg->o.max_devices;
    if (!max && lg->o.mode == LG_STORM) max = lg->o.conns;
    X509_STORE *cas = X509_STORE_new();
    if (!cas) return ERR_NOMEM;
    int rc = ERR_TLS;
    if (X509_STORE_load_file(cas, lg->o.cafile) != 1) {
        fprintf(stderr, "loadgen: cannot load the CA file %s\n", lg->o.cafile);
        goto out;
    }
    rc = load_devices_with(lg, cas, max);
out:
    X509_STORE_free(cas); /* the contexts hold their own references */
    return rc;
}

static int parse_addr(struct lg *lg)
{
    struct sockaddr_in *a4 = (struct sockaddr_in *)&lg->addr;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&lg->addr;
    memset(&lg->addr, 0, sizeof lg->addr);
    if (inet_pton(AF_INET, lg->o.host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)lg->o.port);
        lg->addrlen = sizeof *a4;
        return 0;
    }
    if (inet_pton(AF_INET6, lg->o.host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)lg->o.port);
        lg->addrlen = sizeof *a6;
        return 0;
    }
    fprintf(stderr, "loadgen: --host must be a numeric address: %s\n", lg->o.host);
    return ERR_INVALID;
}

int lg_init(struct lg *lg)
{
    GUARD(parse_addr(lg));
    lg->sub_addr = lg->addr;
    if (lg->o.sub_port) {
        uint16_t p = htons((uint16_t)lg->o.sub_port);
        if (lg->addr.ss_family == AF_INET)
            ((struct sockaddr_in *)&lg->sub_addr)->sin_port = p;
        else
            ((struct sockaddr_in6 *)&lg->sub_addr)->sin6_port = p;
    }
    GUARD(load_devices(lg));
    lg->conns = calloc((size_t)lg->nconns, sizeof *lg->conns);
    if (!lg->conns) return ERR_NOMEM;
    for (int i = 0; i < lg->nconns; i++) lg->conns[i].fd = -1;
    lg->epfd = epoll_create1(EPOLL_CLOEXEC);
    return lg->epfd < 0 ? ERR_IO : 0;
}

void lg_fini(struct lg *lg)
{
    for (int i = 0; lg->conns && i < lg->nconns; i++) {
        if (lg->conns[i].st != ST_FREE) lg_conn_close(lg, &lg->conns[i]);
        if (lg->conns[i].sess) SSL_SESSION_free(lg->conns[i].sess);
    }
    free(lg->conns);
    for (int i = 0; i < lg->ndev; i++) {
        SSL_SESSION_free(lg->devs[i].ticket);
        SSL_CTX_free(lg->devs[i].ctx);
    }
    free(lg->devs);
    if (lg->epfd >= 0) close(lg->epfd);
}

void lg_report_error(struct lg *lg, struct lg_conn *c, const char *what, int rc)
{
    if (lg->errors_shown >= 5) {
        ERR_clear_error();
        return;
    }
    lg->errors_shown++;
    unsigned long e = ERR_get_error();
    char tls[256] = "";
    if (e) ERR_error_string_n(e, tls, sizeof tls);
    int sys = errno;
    fprintf(stderr, "loadgen: conn %d: %s: %s%s%s%s%s\n", c->idx, what, err_str(rc),
            sys ? ": " : "", sys ? strerror(sys) : "", tls[0] ? ": " : "", tls);
    ERR_clear_error();
}

/* With o.sources, binds the socket to the next loopback source address;
 * the port is left to connect() (IP_BIND_ADDRESS_NO_PORT), so each address
 * has its own ephemeral port range towards the broker. */
static int bind_source(struct lg *lg, int fd)
{
    if (!lg->o.sources || lg->addr.ss_family != AF_INET) return 0;
    int one = 1;
    if (setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one) < 0) return ERR_IO;
    uint32_t host = 0x7f000002u + (uint32_t)(lg->src_seq++ % (uint64_t)lg->o.sources);
    struct sockaddr_in src = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(host)};
    return bind(fd, (struct sockaddr *)&src, sizeof src) < 0 ? ERR_IO : 0;
}

int lg_conn_start(struct lg *lg, struct lg_conn *c, enum lg_role role, int idx)
{
    int rc = ERR_IO;
    struct lg_conn kept = *c;
    memset(c, 0, sizeof *c);
    c->gen = kept.gen;
    c->sess = kept.sess;
    c->down_ns = kept.down_ns;
    c->fd = -1;
    c->role = role;
    c->idx = idx;
    c->next_pid = 1;
    buf_init(&c->in, LG_MAX_PACKET + LG_READ_CHUNK);
    buf_init(&c->out, 0);
    /* A storm slot is one device: it always presents the same certificate
     * (its ticket is bound to it); other modes take the devices in turn. */
    uint64_t pick = lg->o.mode == LG_STORM ? (uint64_t)idx : lg->conn_seq++;
    struct lg_dev *dev = &lg->devs[pick % (uint64_t)lg->ndev];
    c->dev = dev;

    c->fd = socket(lg->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) goto out;
    int one = 1;
    if (setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0) goto out;
    if (bind_source(lg, c->fd) < 0) goto out;
    const struct sockaddr_storage *to = role == ROLE_SUB ? &lg->sub_addr : &lg->addr;
    if (connect(c->fd, (const struct sockaddr *)to, lg->addrlen) < 0 && errno != EINPROGRESS)
        goto out;
    c->st = ST_TCP;
    rc = ERR_TLS;
    c->ssl = SSL_new(dev->ctx);
    if (!c->ssl || SSL_set_fd(c->ssl, c->fd) != 1) goto out;
    SSL_set_tlsext_host_name(c->ssl, lg->o.sni);
    if (SSL_set1_host(c->ssl, lg->o.sni) != 1) goto out;
    SSL_set_connect_state(c->ssl);
    SSL_set_app_data(c->ssl, c);
    c->ticket = lg->o.mode == LG_STORM ? &c->sess : &dev->ticket;
    if (*c->ticket && SSL_set_session(c->ssl, *c->ticket) != 1) goto out;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET};
    ev.data.u64 = ((uint64_t)(c - lg->conns) << 32) | c->gen;
    rc = ERR_IO;
    if (epoll_ctl(lg->epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0) goto out;
    rc = 0;
out:
    if (rc < 0) {
        lg_report_error(lg, c, "connect", rc);
        lg_conn_close(lg, c);
    }
    return rc;
}

void lg_conn_close(struct lg *lg, struct lg_conn *c)
{
    if (c->ssl) SSL_free(c->ssl);
    if (c->fd >= 0) close(c->fd); /* also leaves the epoll set */
    c->ssl = NULL;
    c->fd = -1;
    buf_free(&c->in);
    buf_free(&c->out);
    c->st = ST_FREE;
    c->gen++;
}

int lg_queue_connect(struct lg *lg, struct lg_conn *c)
{
    const struct lg_dev *dev = c->dev;
    char id[128];
    if (lg->o.plain_id)
        snprintf(id, sizeof id, "%s", dev->cn);
    else if (lg->o.tag)
        snprintf(id, sizeof id, "d:%s:%s-%llu", dev->cn, lg->o.tag,
                 (unsigned long long)lg->client_seq++);
    else
        snprintf(id, sizeof id, "d:%s:%llu", dev->cn, (unsigned long long)lg->client_seq++);
    /* A persistent subscriber: the broker stores what it queues for it. */
    bool keep = lg->o.persistent && c->role == ROLE_SUB;
    struct mqtt_connect cn = {
        .protocol_level = lg->o.version,
        .clean_session = !keep,
        .keepalive = (uint16_t)lg->o.keepalive,
        .client_id = {(const uint8_t *)id, (uint16_t)strlen(id)},
    };
    struct mqtt_props props = {0};
    if (keep) {
        props.has = 1ull << MQTT_PROP_SESSION_EXPIRY;
        props.session_expiry = 3600;
    }
    return mqtt_encode_connect(&c->out, &cn, &props, NULL);
}

/* Writes buffered packets, at most one TLS record per SSL_write. Returns 0
 * when all is written or the socket is full, a negative error otherwise. */
static int conn_flush(struct lg_conn *c)
{
    while (buf_used(&c->out)) {
        size_t n = buf_used(&c->out);
        if (n > LG_WRITE_CHUNK) n = LG_WRITE_CHUNK;
        int w = SSL_write(c->ssl, buf_head(&c->out), (int)n);
        if (w > 0) {
            buf_consume(&c->out, (size_t)w);
            continue;
        }
        int e = SSL_get_error(c->ssl, w);
        if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) return 0;
        return e == SSL_ERROR_ZERO_RETURN ? ERR_CLOSED : ERR_TLS;
    }
    buf_shrink(&c->out);
    return 0;
}

/* Hands every whole packet in c->in to the mode. */
static int conn_dispatch(struct lg *lg, struct lg_conn *c)
{
    for (;;) {
        size_t flen = 0;
        int rc = mqtt_frame(buf_head(&c->in), buf_used(&c->in), LG_MAX_PACKET, &flen);
        if (rc <= 0) return rc;
        struct mqtt_packet p;
        GUARD(mqtt_parse(buf_head(&c->in), flen, lg->o.version, &p));
        rc = lg_on_packet(lg, c, &p);
        buf_consume(&c->in, flen);
        if (rc != LG_CONTINUE) return rc;
    }
}

/* Reads until the socket is drained (edge-triggered epoll needs that). */
static int conn_read(struct lg *lg, struct lg_conn *c)
{
    for (;;) {
        GUARD(buf_reserve(&c->in, LG_READ_CHUNK));
        int r = SSL_read(c->ssl, c->in.data + c->in.len, (int)(c->in.cap - c->in.len));
        if (r > 0) {
            c->in.len += (size_t)r;
            int rc = conn_dispatch(lg, c);
            if (rc != LG_CONTINUE) return rc;
            continue;
        }
        int e = SSL_get_error(c->ssl, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) break;
        return e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && !ERR_peek_error())
                   ? ERR_CLOSED
                   : ERR_TLS;
    }
    buf_shrink(&c->in);
    return LG_CONTINUE;
}

/* Runs the TCP and TLS steps; returns 1 once MQTT can flow, 0 to wait. */
static int conn_establish(struct lg *lg, struct lg_conn *c, uint32_t events)
{
    if (c->st == ST_TCP) {
        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return 0;
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0 || soerr) {
            errno = soerr;
            return ERR_IO;
        }
        if (lg->o.hold == LG_HOLD_TCP) {
            if (c->ready) return events & (EPOLLRDHUP | EPOLLHUP) ? ERR_CLOSED : 0;
            return lg_on_tcp_up(lg, c);
        }
        c->st = ST_TLS;
    }
    if (c->st == ST_TLS) {
        int r = SSL_connect(c->ssl);
        if (r != 1) {
            int e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return 0;
            return ERR_TLS;
        }
        c->st = ST_MQTT;
        if (SSL_session_reused(c->ssl)) lg->resumed++;
        int rc = lg_on_tls_up(lg, c);
        if (rc != LG_CONTINUE) return rc < 0 ? rc : ERR_INTERNAL;
    }
    return 1;
}

/* Ends a connection the mode asked to close: a polite DISCONNECT and
 * close_notify are attempted once, without waiting. */
static void conn_finish(struct lg *lg, struct lg_conn *c, int rc)
{
    if (rc == LG_CLOSE) {
        if (mqtt_encode_disconnect(&c->out, 0, NULL) == 0) ignore_result(conn_flush(c));
        (void)SSL_shutdown(c->ssl);
        rc = 0;
    }
    ERR_clear_error();
    lg_conn_close(lg, c);
    lg_on_closed(lg, c, rc);
}

static void conn_drive(struct lg *lg, struct lg_conn *c, uint32_t events)
{
    errno = 0;
    int rc = conn_establish(lg, c, events);
    if (rc <= 0) goto out;
    rc = conn_read(lg, c);
    if (rc != LG_CONTINUE) goto out;
    rc = lg_on_fill(lg, c);
    if (rc != LG_CONTINUE) goto out;
    rc = conn_flush(c);
out:
    if (rc < 0) lg_report_error(lg, c, c->st == ST_MQTT ? "mqtt" : "handshake", rc);
    if (rc != LG_CONTINUE) conn_finish(lg, c, rc);
}

void lg_conn_kick(struct lg *lg, struct lg_conn *c)
{
    if (c->st != ST_MQTT) return;
    errno = 0;
    int rc = lg_on_fill(lg, c);
    if (rc == LG_CONTINUE) rc = conn_flush(c);
    if (rc < 0) lg_report_error(lg, c, "kick", rc);
    if (rc != LG_CONTINUE) conn_finish(lg, c, rc);
}

void lg_conn_kick_later(struct lg *lg, struct lg_conn *c)
{
    c->kick = true;
    lg->kicks = true;
}

int lg_poll(struct lg *lg, int timeout_ms)
{
    struct epoll_event evs[256];
    int n = epoll_wait(lg->epfd, evs, 256, timeout_ms);
    if (n < 0) return errno == EINTR ? 0 : ERR_IO;
    for (int i = 0; i < n; i++) {
        uint32_t slot = (uint32_t)(evs[i].data.u64 >> 32);
        uint32_t gen = (uint32_t)evs[i].data.u64;
        if (slot >= (uint32_t)lg->nconns) continue;
        struct lg_conn *c = &lg->conns[slot];
        if (c->gen != gen || c->st == ST_FREE) continue; /* closed since */
        conn_drive(lg, c, evs[i].events);
    }
    if (lg->kicks) {
        lg->kicks = false;
        for (int i = 0; i < lg->nconns; i++) {
            if (!lg->conns[i].kick) continue;
            lg->conns[i].kick = false;
            lg_conn_kick(lg, &lg->conns[i]);
        }
    }
    return n;
}
