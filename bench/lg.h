/* certmq-loadgen internals shared by the bench/ files: one epoll loop drives
 * many non-blocking mutual-TLS MQTT client connections (lg_net.c); the modes
 * in loadgen.c react to their packets through the lg_on_* hooks; lg_stats.c
 * holds the latency histogram, the clock and the /proc readers. */
#ifndef CERTMQ_BENCH_LG_H
#define CERTMQ_BENCH_LG_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <openssl/ssl.h>

#include "core/buf.h"
#include "mqtt/codec.h"

enum lg_mode { LG_HANDSHAKE, LG_PUBSUB, LG_IDLE, LG_STORM, LG_PATH };
/* idle: how far each connection goes before it is held. */
enum lg_hold { LG_HOLD_MQTT, LG_HOLD_TLS, LG_HOLD_TCP };

struct lg_opts {
    enum lg_mode mode;
    const char *host; /* numeric IPv4/IPv6 address of the broker */
    int port;
    int sub_port;       /* pubsub: subscribers connect here (another node); 0: port */
    const char *sni;    /* server name sent and verified (default localhost) */
    const char *cafile; /* CA that signed the broker's certificate */
    const char *devdir; /* dev-N.pem (chain) + dev-N.key, N = 0.. */
    int max_devices;    /* 0: all found */
    int conns;          /* handshake: concurrency; idle: connections; pubsub: pairs */
    int pending;        /* idle: handshakes in flight at once */
    double duration;    /* seconds measured (idle: hold time, 0 = until signalled) */
    double warmup;      /* seconds run before measuring starts */
    int qos;            /* pubsub: 0 or 1 */
    int window;         /* pubsub: messages in flight per publisher */
    int payload;        /* pubsub: payload bytes (>= 16) */
    int keepalive;      /* seconds put in CONNECT */
    bool plain_id;      /* ClientId = CN instead of d:<CN>:<n> */
    const char *tag;    /* NULL, or: ClientIds d:<CN>:<tag>-<n> and pubsub topics
                         * bench/<tag>/<i>, so that several generators share
                         * one tenant without meeting */
    bool persistent;    /* pubsub: subscribers keep their session (clean session 0,
                         * 5.0 session expiry 3600 s) */
    uint8_t version;    /* MQTT_V311 or MQTT_V5 */
    const char *suites; /* TLS 1.3 cipher suites offered (NULL: OpenSSL's default) */
    enum lg_hold hold;  /* idle: CONNACK received (default), TLS up, or TCP only */
    bool resume;        /* handshake, storm: resume with the last ticket kept (TLS
                         * 1.3): the device's (handshake) or the connection's (storm) */
    int sources;        /* IPv4 only: bind each connection to one of 127.0.0.2 ..
                         * 127.0.0.(1+sources), in turn, before connecting, so
                         * more connections fit than one ephemeral port range;
                         * 0: the kernel picks the source address */
    double drop_after;  /* storm: seconds held before the generator drops every
                         * connection itself; < 0: wait for the broker side to
                         * drop them (a node killed behind a balancer) */
    double timeout;     /* storm: seconds allowed for everyone to be up again */
    pid_t broker_pid;   /* 0: no CPU accounting */
    pid_t broker_pid2;  /* a second node whose CPU counts too (--sub-port's); 0: none */
};

enum lg_state { ST_FREE, ST_TCP, ST_TLS, ST_MQTT, ST_DONE };
enum lg_role { ROLE_HANDSHAKE, ROLE_IDLE, ROLE_SUB, ROLE_PUB };

/* Hook results: keep going, or close the connection normally. */
/* The properties a packet of this run carries: none in 5.0, NULL in 3.1.1. */
#define lg_props(lg) ((lg)->o.version == MQTT_V5 ? &mqtt_props_none : NULL)

#define LG_CONTINUE 0
#define LG_CLOSE    1

struct lg_conn {
    int fd;
    SSL *ssl;
    uint32_t gen; /* bumped on close: stale epoll events are ignored */
    enum lg_state st;
    enum lg_role role;
    int idx;          /* slot, or pair index for ROLE_SUB/ROLE_PUB */
    bool ready;       /* CONNACK (and SUBACK for subscribers) seen */
    struct buf in;    /* decrypted bytes not yet framed */
    struct buf out;   /* encoded packets not yet written */
    uint64_t seq;     /* publisher: next sequence; subscriber: highest seen + 1 */
    uint32_t unacked; /* publisher, QoS 1: PUBLISHes without PUBACK */
    uint16_t next_pid;
    bool kick;          /* lg_conn_kick it once the current event batch is done */
    struct lg_dev *dev; /* the certificate this connection presents */
    /* Kept across lg_conn_start of the same slot (storm): */
    SSL_SESSION *sess; /* --resume: the last ticket the broker gave this slot */
    SSL_SESSION *
        *ticket;      /* --resume: where this connection's ticket is kept (sess, or its device's) */
    uint64_t down_ns; /* when the slot lost its connection; 0: up or never was */
};

struct lg_dev {
    SSL_CTX *ctx;
    char cn[64];
    SSL_SESSION *ticket; /* --resume: the newest ticket, taken by the next connection */
};

/* Log-linear histogram of nanosecond values: 64 buckets per power of two. */
#define LG_HIST_BUCKETS (59 * 64)
struct lg_hist {
    uint64_t count;
    uint64_t b[LG_HIST_BUCKETS];
};

struct lg {
    struct lg_opts o;
    int epfd;
    struct lg_dev *devs;
    int ndev;
    struct lg_conn *conns;
    int nconns;
    struct sockaddr_storage addr, sub_addr; /* sub_addr: --sub-port, else addr */
    socklen_t addrlen;
    uint64_t conn_seq;   /* connections started: picks the device certificate */
    uint64_t client_seq; /* CONNECTs sent: makes each ClientId unique */
    uint64_t src_seq;    /* sockets bound: picks the source address (o.sources) */
    uint64_t resumed;    /* --resume: handshakes the server resumed */
    bool fatal;          /* a failure that ends the run (pubsub, idle hold) */
    bool kicks;          /* some connection has kick set */
    int errors_shown;
};

/* lg_net.c */
MUST_USE int lg_init(struct lg *lg);
void lg_fini(struct lg *lg);
/* Opens a new connection in slot c (which must be ST_FREE). */
MUST_USE int lg_conn_start(struct lg *lg, struct lg_conn *c, enum lg_role role, int idx);
/* Frees the slot's socket, TLS state and buffers; the slot becomes ST_FREE. */
void lg_conn_close(struct lg *lg, struct lg_conn *c);
/* Waits up to timeout_ms for events and drives the connections they name. */
MUST_USE int lg_poll(struct lg *lg, int timeout_ms);
/* Runs the fill hook and writes what is buffered (used when another
 * connection's progress frees this one's credit). */
void lg_conn_kick(struct lg *lg, struct lg_conn *c);
/* The same, deferred to the end of the current event batch, so that credit
 * freed by many packets is spent in one write. */
void lg_conn_kick_later(struct lg *lg, struct lg_conn *c);
/* Appends one MQTT CONNECT for this connection to c->out. */
MUST_USE int lg_queue_connect(struct lg *lg, struct lg_conn *c);
void lg_report_error(struct lg *lg, struct lg_conn *c, const char *what, int rc);

/* Hooks, implemented by the modes (loadgen.c). Each returns LG_CONTINUE,
 * LG_CLOSE, or a negative error (the connection is then closed as failed);
 * lg_on_closed is told how it ended (0 or an error) once the slot is free. */
int lg_on_tls_up(struct lg *lg, struct lg_conn *c);
/* Only with o.hold LG_HOLD_TCP: the TCP connection is up, TLS never starts. */
int lg_on_tcp_up(struct lg *lg, struct lg_conn *c);
int lg_on_packet(struct lg *lg, struct lg_conn *c, const struct mqtt_packet *p);
int lg_on_fill(struct lg *lg, struct lg_conn *c);
void lg_on_closed(struct lg *lg, struct lg_conn *c, int rc);

/* lg_stats.c */
uint64_t lg_now_ns(void);
void lg_hist_add(struct lg_hist *h, uint64_t v);
/* Value at quantile q (0..1), from the bucket's midpoint; 0 if empty. */
uint64_t lg_hist_quantile(const struct lg_hist *h, double q);
/* User + system CPU seconds the process has used, all threads; < 0 if unknown. */
double lg_proc_cpu(pid_t pid);

/* path mode (lg_path.c): the broker's per-message CPU cost, 3.1.1 vs 5.0,
 * in-process. */
int lg_run_path(const struct lg_opts *o);

#endif
