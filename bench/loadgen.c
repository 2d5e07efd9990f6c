/* certmq-loadgen: mutual-TLS MQTT load for bench/compare.sh. Modes:
 *   handshake  C slots loop: connect, full TLS handshake (--resume: resumed),
 *              CONNECT, CONNACK, close
 *   pubsub     N subscribers on bench/<i>, N publishers at QoS 0/1 with a window
 *   idle       K connections opened and held (the caller reads broker memory)
 *   storm      K connections opened and held, then all dropped at once (by the
 *              generator, or by a node dying behind a balancer): the time until
 *              every one is connected again, with or without TLS resumption
 *   path       no network: the broker's CPU per message, 3.1.1 vs 5.0 (lg_path.c)
 * Results are printed as one "RESULT key=value ..." line for scripts. */
#include "lg.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <openssl/err.h>

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

/* Run state the hooks update. */
struct run {
    int phase;          /* pubsub: 0 subscribing, 1 publishers connecting, 2 running */
    bool measuring;     /* counters below count only while measuring */
    bool holding;       /* idle: all connected, now holding */
    uint64_t completed; /* handshake: CONNACKs; idle: connections up */
    uint64_t failures;  /* connections that ended in an error */
    uint64_t subs_ready, pubs_ready;
    uint64_t received, lost, dups, dropped;
    struct lg_hist hist;
    /* storm: */
    bool storming;        /* the drop happened: count and time the reconnects */
    uint64_t inflight;    /* connections started, not yet up nor closed */
    uint64_t first_drop;  /* when the first connection was lost (ns) */
    uint64_t resumed;     /* reconnects that resumed their TLS session */
    uint64_t reconnected; /* reconnects that reached CONNACK */
    int next_free;        /* where the search for a slot to (re)start goes on */
};

static struct run g_run;

/* Pair idx's topic: bench/<idx>, or bench/<tag>/<idx>. */
static int pair_topic(const struct lg *lg, int idx, char *out, size_t cap)
{
    if (lg->o.tag) return snprintf(out, cap, "bench/%s/%d", lg->o.tag, idx);
    return snprintf(out, cap, "bench/%d", idx);
}

static struct lg_conn *pair_conn(struct lg *lg, enum lg_role role, int idx)
{
    return &lg->conns[role == ROLE_SUB ? idx : lg->o.conns + idx];
}

/* An idle connection held at that step counts as up. */
static int idle_held(struct lg_conn *c)
{
    c->ready = true;
    g_run.completed++;
    return LG_CONTINUE;
}

int lg_on_tcp_up(struct lg *lg, struct lg_conn *c)
{
    (void)lg;
    return idle_held(c);
}

int lg_on_tls_up(struct lg *lg, struct lg_conn *c)
{
    if (c->role == ROLE_IDLE && lg->o.hold == LG_HOLD_TLS) return idle_held(c);
    GUARD(lg_queue_connect(lg, c));
    return LG_CONTINUE;
}

/* storm: a connection reached CONNACK; after the drop its delay counts. */
static void storm_up(struct lg_conn *c)
{
    g_run.inflight--;
    if (!g_run.storming || !c->down_ns) return;
    lg_hist_add(&g_run.hist, lg_now_ns() - c->down_ns);
    c->down_ns = 0;
    g_run.reconnected++;
    if (SSL_session_reused(c->ssl)) g_run.resumed++;
}

/* storm: a slot's connection ended; the slot is started again by
 * storm_fill. One that ended before its CONNACK is a failed attempt; a held
 * one lost starts the storm. */
static void storm_closed(struct lg_conn *c)
{
    if (!c->ready) {
        g_run.inflight--;
        g_run.failures++;
        return;
    }
    g_run.completed--;
    if (!g_run.holding) return; /* lost while the others were still connecting */
    g_run.dropped++;
    uint64_t now = lg_now_ns();
    if (!g_run.storming) {
        g_run.storming = true;
        g_run.first_drop = now;
    }
    c->down_ns = now;
}

static int on_connack(struct lg *lg, struct lg_conn *c, const struct mqtt_packet *p)
{
    if (p->connack.rc != MQTT_CONNACK_ACCEPTED) {
        if (lg->errors_shown++ < 5)
            fprintf(stderr, "loadgen: conn %d: CONNACK refused, code %u\n", c->idx, p->connack.rc);
        return ERR_AUTH;
    }
    switch (c->role) {
    case ROLE_HANDSHAKE:
        if (g_run.measuring) g_run.completed++;
        return LG_CLOSE;
    case ROLE_IDLE:
        if (lg->o.mode == LG_STORM) storm_up(c);
        return idle_held(c);
    case ROLE_SUB: {
        char topic[64];
        int n = pair_topic(lg, c->idx, topic, sizeof topic);
        struct mqtt_bytes f = {(const uint8_t *)topic, (uint16_t)n};
        uint8_t qos = (uint8_t)lg->o.qos;
        GUARD(mqtt_encode_subscribe(&c->out, 1, &f, &qos, 1, lg_props(lg)));
        /* A device announces itself on s/us before anything is delivered to
         * it (the platform rule certmq enforces; elsewhere a plain publish). */
        struct mqtt_publish hello = {.topic = {(const uint8_t *)"s/us", 4}, .props = lg_props(lg)};
        GUARD(mqtt_encode_publish(&c->out, &hello));
        return LG_CONTINUE;
    }
    case ROLE_PUB:
        c->ready = true;
        g_run.pubs_ready++;
        return LG_CONTINUE;
    }
    return ERR_INTERNAL;
}

/* A subscriber's message: payload starts with the publisher's sequence
 * number and CLOCK_MONOTONIC send time (same process, so comparable). */
static int on_message(struct lg *lg, struct lg_conn *c, const struct mqtt_publish *m)
{
    if (m->qos == 1) GUARD(mqtt_encode_ack(&c->out, MQTT_PUBACK, m->packet_id, 0, lg_props(lg)));
    if (m->payload_len < 16) return ERR_MALFORMED;
    uint64_t seq, sent;
    memcpy(&seq, m->payload, 8);
    memcpy(&sent, m->payload + 8, 8);
    uint64_t now = lg_now_ns();
    if (seq < c->seq) {
        g_run.dups++;
        return LG_CONTINUE;
    }
    if (g_run.measuring) {
        g_run.lost += seq - c->seq;
        g_run.received++;
        lg_hist_add(&g_run.hist, now - sent);
    }
    c->seq = seq + 1;
    lg_conn_kick_later(lg, pair_conn(lg, ROLE_PUB, c->idx)); /* its window moved */
    return LG_CONTINUE;
}

int lg_on_packet(struct lg *lg, struct lg_conn *c, const struct mqtt_packet *p)
{
    switch (p->type) {
    case MQTT_CONNACK: return c->ready ? ERR_PROTO : on_connack(lg, c, p);
    case MQTT_SUBACK:
        /* One filter was asked for: one return code in list.p. */
        if (c->role != ROLE_SUB || c->ready || p->list.count != 1) return ERR_PROTO;
        if (p->list.p[0] == MQTT_SUBACK_FAILURE) return ERR_NOT_AUTHORIZED;
        c->ready = true;
        g_run.subs_ready++;
        return LG_CONTINUE;
    case MQTT_PUBLISH:
        if (c->role != ROLE_SUB) return ERR_PROTO;
        return on_message(lg, c, &p->publish);
    case MQTT_PUBACK:
        if (c->role != ROLE_PUB || !c->unacked) return ERR_PROTO;
        c->unacked--;
        return LG_CONTINUE;
    case MQTT_PINGRESP: return LG_CONTINUE;
    default: return ERR_PROTO;
    }
}

/* A publisher sends while it has fewer than window messages in flight, end
 * to end (sent but not yet seen by its subscriber) and, at QoS 1, also
 * fewer than window without PUBACK. A lost QoS 0 message frees its credit as
 * soon as a later one arrives, since credit counts from the highest seen. */
int lg_on_fill(struct lg *lg, struct lg_conn *c)
{
    if (c->role != ROLE_PUB || !c->ready || g_run.phase != 2 || g_stop) return LG_CONTINUE;
    const struct lg_conn *sub = pair_conn(lg, ROLE_SUB, c->idx);
    char topic[64];
    int tn = pair_topic(lg, c->idx, topic, sizeof topic);
    uint8_t payload[4096];
    size_t plen = (size_t)lg->o.payload;
    memset(payload + 16, 'x', plen - 16);
    uint64_t win = (uint64_t)lg->o.window;
    while (c->seq - sub->seq < win && (lg->o.qos == 0 || c->unacked < win)) {
        uint64_t now = lg_now_ns();
        memcpy(payload, &c->seq, 8);
        memcpy(payload + 8, &now, 8);
        struct mqtt_publish m = {
            .qos = (uint8_t)lg->o.qos,
            .topic = {(const uint8_t *)topic, (uint16_t)tn},
            .payload = payload,
            .payload_len = plen,
            .props = lg_props(lg),
        };
        if (m.qos) {
            m.packet_id = c->next_pid;
            c->next_pid = c->next_pid == UINT16_MAX ? 1 : c->next_pid + 1;
            c->unacked++;
        }
        GUARD(mqtt_encode_publish(&c->out, &m));
        c->seq++;
    }
    return LG_CONTINUE;
}

void lg_on_closed(struct lg *lg, struct lg_conn *c, int rc)
{
    if (lg->o.mode == LG_STORM && !g_stop) {
        storm_closed(c);
        return;
    }
    if (rc < 0) g_run.failures++;
    if (g_stop) return;
    switch (c->role) {
    case ROLE_HANDSHAKE:
        /* The slot starts its next connection at once. */
        if (lg_conn_start(lg, c, ROLE_HANDSHAKE, c->idx) < 0) g_run.failures++;
        return;
    case ROLE_IDLE:
        if (c->ready && g_run.completed) g_run.completed--;
        if (g_run.holding) {
            g_run.dropped++;
            return;
        }
        if (lg_conn_start(lg, c, ROLE_IDLE, c->idx) < 0) g_run.failures++;
        return;
    case ROLE_SUB:
    case ROLE_PUB: lg->fatal = true; return;
    }
}

/* Polls until cond() holds, the deadline passes or the run fails. */
static int poll_until(struct lg *lg, bool (*cond)(struct lg *), uint64_t deadline)
{
    while (!cond(lg)) {
        if (g_stop) return ERR_CLOSED;
        if (lg->fatal) return ERR_IO;
        if (deadline && lg_now_ns() >= deadline) return ERR_AGAIN;
        GUARD(lg_poll(lg, 50));
    }
    return 0;
}

static bool never(struct lg *lg)
{
    (void)lg;
    return false;
}

static uint64_t secs_ns(double s)
{
    return (uint64_t)(s * 1e9);
}

/* CPU the generator itself used while measuring: near the measured seconds,
 * the generator (not the broker) may be what limits the rate. */
struct cpu_mark {
    double broker, self;
};

static struct cpu_mark cpu_mark(const struct lg *lg)
{
    struct cpu_mark m = {-1, lg_proc_cpu(getpid())};
    if (lg->o.broker_pid) m.broker = lg_proc_cpu(lg->o.broker_pid);
    if (lg->o.broker_pid2 && m.broker >= 0) {
        double other = lg_proc_cpu(lg->o.broker_pid2);
        m.broker = other < 0 ? -1 : m.broker + other;
    }
    return m;
}

static void print_cpu(const struct cpu_mark *a, const struct cpu_mark *b, double work)
{
    if (a->self >= 0 && b->self >= 0) printf(" gen_cpu=%.3f", b->self - a->self);
    if (a->broker < 0 || b->broker < 0) return;
    double used = b->broker - a->broker;
    printf(" broker_cpu=%.3f per_cpu_s=%.1f", used, used > 0 ? work / used : 0.0);
}

static int mode_handshake(struct lg *lg)
{
    uint64_t t0 = lg_now_ns();
    for (int i = 0; i < lg->o.conns; i++)
        if (lg_conn_start(lg, &lg->conns[i], ROLE_HANDSHAKE, i) < 0) g_run.failures++;
    int rc = poll_until(lg, never, t0 + secs_ns(lg->o.warmup));
    if (rc != ERR_AGAIN) return rc;
    struct cpu_mark cpu0 = cpu_mark(lg);
    uint64_t fail0 = g_run.failures, res0 = lg->resumed, m0 = lg_now_ns();
    g_run.measuring = true;
    rc = poll_until(lg, never, m0 + secs_ns(lg->o.duration));
    if (rc != ERR_AGAIN) return rc;
    g_run.measuring = false;
    double secs = (double)(lg_now_ns() - m0) / 1e9;
    struct cpu_mark cpu1 = cpu_mark(lg);
    printf("RESULT mode=handshake conns=%d devices=%d seconds=%.2f completed=%llu rate=%.1f "
           "failures=%llu",
           lg->o.conns, lg->ndev, secs, (unsigned long long)g_run.completed,
           (double)g_run.completed / secs, (unsigned long long)(g_run.failures - fail0));
    if (lg->o.resume) printf(" resumed=%llu", (unsigned long long)(lg->resumed - res0));
    print_cpu(&cpu0, &cpu1, (double)g_run.completed);
    printf("\n");
    return g_run.completed ? 0 : ERR_IO;
}

static bool subs_ready(struct lg *lg)
{
    return g_run.subs_ready == (uint64_t)lg->o.conns;
}

static bool pubs_ready(struct lg *lg)
{
    return g_run.pubs_ready == (uint64_t)lg->o.conns;
}

static int mode_pubsub(struct lg *lg)
{
    int n = lg->o.conns;
    uint64_t setup = lg_now_ns() + secs_ns(30);
    for (int i = 0; i < n; i++) GUARD(lg_conn_start(lg, pair_conn(lg, ROLE_SUB, i), ROLE_SUB, i));
    GUARD(poll_until(lg, subs_ready, setup));
    g_run.phase = 1;
    for (int i = 0; i < n; i++) GUARD(lg_conn_start(lg, pair_conn(lg, ROLE_PUB, i), ROLE_PUB, i));
    GUARD(poll_until(lg, pubs_ready, setup));
    g_run.phase = 2;
    uint64_t t0 = lg_now_ns();
    for (int i = 0; i < n; i++) lg_conn_kick(lg, pair_conn(lg, ROLE_PUB, i));
    int rc = poll_until(lg, never, t0 + secs_ns(lg->o.warmup));
    if (rc != ERR_AGAIN) return rc;
    struct cpu_mark cpu0 = cpu_mark(lg);
    uint64_t m0 = lg_now_ns();
    g_run.measuring = true;
    rc = poll_until(lg, never, m0 + secs_ns(lg->o.duration));
    if (rc != ERR_AGAIN) return rc;
    g_run.measuring = false;
    double secs = (double)(lg_now_ns() - m0) / 1e9;
    struct cpu_mark cpu1 = cpu_mark(lg);
    printf("RESULT mode=pubsub qos=%d pairs=%d window=%d payload=%d seconds=%.2f received=%llu "
           "rate=%.1f p50_us=%.1f p99_us=%.1f lost=%llu dups=%llu",
           lg->o.qos, n, lg->o.window, lg->o.payload, secs, (unsigned long long)g_run.received,
           (double)g_run.received / secs, (double)lg_hist_quantile(&g_run.hist, 0.50) / 1e3,
           (double)lg_hist_quantile(&g_run.hist, 0.99) / 1e3, (unsigned long long)g_run.lost,
           (unsigned long long)g_run.dups);
    print_cpu(&cpu0, &cpu1, (double)g_run.received);
    printf("\n");
    return g_run.received ? 0 : ERR_IO;
}

static bool idle_ready(struct lg *lg)
{
    return g_run.completed == (uint64_t)lg->o.conns;
}

/* Opens connections with at most `pending` handshakes in flight, so the
 * broker's accept backlog never overflows, then holds them. */
static int mode_idle(struct lg *lg)
{
    int started = 0;
    /* 120 s, or more for connection counts the generator's own handshake
     * CPU (~1.5 ms each) needs longer to open. */
    double limit = 120 + lg->o.conns / 400.0;
    uint64_t t0 = lg_now_ns(), setup = t0 + secs_ns(limit);
    while (!idle_ready(lg)) {
        while (started < lg->o.conns &&
               (uint64_t)started - g_run.completed < (uint64_t)lg->o.pending) {
            if (lg_conn_start(lg, &lg->conns[started], ROLE_IDLE, started) < 0) return ERR_IO;
            started++;
        }
        if (g_stop) return ERR_CLOSED;
        if (lg_now_ns() >= setup || g_run.failures > (uint64_t)lg->o.conns) return ERR_AGAIN;
        GUARD(lg_poll(lg, 50));
    }
    g_run.holding = true;
    printf("READY conns=%d seconds=%.2f failures=%llu\n", lg->o.conns,
           (double)(lg_now_ns() - t0) / 1e9, (unsigned long long)g_run.failures);
    fflush(stdout);
    int rc = poll_until(lg, never, lg->o.duration > 0 ? lg_now_ns() + secs_ns(lg->o.duration) : 0);
    if (rc != ERR_AGAIN && rc != ERR_CLOSED) return rc;
    printf("RESULT mode=idle conns=%d up=%llu dropped=%llu\n", lg->o.conns,
           (unsigned long long)g_run.completed, (unsigned long long)g_run.dropped);
    return g_run.dropped ? ERR_CLOSED : 0;
}

/* storm: starts free slots while fewer than `pending` handshakes are in
 * flight (a real fleet's reconnects are spread by its clients' backoff; this
 * keeps the broker's accept queue from overflowing into SYN retries). */
static int storm_fill(struct lg *lg)
{
    int n = lg->o.conns;
    for (int k = 0; k < n && g_run.inflight < (uint64_t)lg->o.pending; k++) {
        struct lg_conn *c = &lg->conns[g_run.next_free];
        g_run.next_free = (g_run.next_free + 1) % n;
        if (c->st != ST_FREE) continue;
        g_run.inflight++;
        if (lg_conn_start(lg, c, ROLE_IDLE, (int)(c - lg->conns)) < 0) {
            g_run.inflight--;
            g_run.failures++;
        }
    }
    return 0;
}

static bool all_up(struct lg *lg)
{
    return g_run.completed == (uint64_t)lg->o.conns;
}

/* Keeps slots restarting until all are up or the deadline passes. */
static int storm_until_up(struct lg *lg, uint64_t deadline)
{
    while (!all_up(lg)) {
        if (g_stop) return ERR_CLOSED;
        if (lg_now_ns() >= deadline) return ERR_AGAIN;
        if (g_run.failures > 20 * (uint64_t)lg->o.conns) return ERR_IO;
        GUARD(storm_fill(lg));
        GUARD(lg_poll(lg, 20));
    }
    return 0;
}

/* The generator drops every connection at once (no DISCONNECT: the TCP
 * connection just ends), as a fleet does when its network comes back. */
static void storm_drop_all(struct lg *lg)
{
    uint64_t now = lg_now_ns();
    g_run.storming = true;
    g_run.first_drop = now;
    for (int i = 0; i < lg->o.conns; i++) {
        struct lg_conn *c = &lg->conns[i];
        if (c->st == ST_FREE) continue;
        lg_conn_close(lg, c);
        c->down_ns = now;
    }
    g_run.dropped = (uint64_t)lg->o.conns;
    g_run.completed = 0;
    g_run.inflight = 0;
}

/* Waits until a connection is lost (or the generator drops them all). */
static int storm_wait_drop(struct lg *lg)
{
    uint64_t until = lg->o.drop_after >= 0 ? lg_now_ns() + secs_ns(lg->o.drop_after) : 0;
    while (!g_run.storming) {
        if (g_stop) return ERR_CLOSED;
        if (until && lg_now_ns() >= until) {
            storm_drop_all(lg);
            break;
        }
        GUARD(lg_poll(lg, 20));
    }
    return 0;
}

static int mode_storm(struct lg *lg)
{
    uint64_t t0 = lg_now_ns();
    int rc = storm_until_up(lg, t0 + secs_ns(120 + lg->o.conns / 400.0));
    if (rc < 0) return rc;
    printf("READY conns=%d seconds=%.2f failures=%llu\n", lg->o.conns,
           (double)(lg_now_ns() - t0) / 1e9, (unsigned long long)g_run.failures);
    fflush(stdout);
    g_run.holding = true;
    uint64_t fail0 = g_run.failures;
    GUARD(storm_wait_drop(lg));
    struct cpu_mark cpu0 = cpu_mark(lg);
    rc = storm_until_up(lg, g_run.first_drop + secs_ns(lg->o.timeout));
    double secs = (double)(lg_now_ns() - g_run.first_drop) / 1e9;
    struct cpu_mark cpu1 = cpu_mark(lg);
    printf("RESULT mode=storm conns=%d dropped=%llu up=%llu seconds=%.3f p50_ms=%.1f "
           "p99_ms=%.1f resumed=%llu failures=%llu",
           lg->o.conns, (unsigned long long)g_run.dropped, (unsigned long long)g_run.completed,
           secs, (double)lg_hist_quantile(&g_run.hist, 0.50) / 1e6,
           (double)lg_hist_quantile(&g_run.hist, 0.99) / 1e6, (unsigned long long)g_run.resumed,
           (unsigned long long)(g_run.failures - fail0));
    print_cpu(&cpu0, &cpu1, (double)g_run.reconnected);
    printf("\n");
    return rc;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: certmq-loadgen MODE [options]   MODE: handshake|pubsub|idle|storm|path\n"
               "  --host ADDR        broker address (numeric, default 127.0.0.1)\n"
               "  --port N           broker port (default 8883)\n"
               "  --sub-port N       pubsub: subscribers connect to this port (another node)\n"
               "  --sni NAME         server name sent and verified (default localhost)\n"
               "  --cafile FILE      CA of the broker's certificate (required but for path)\n"
               "  --devices DIR      dev-N.pem (chain) and dev-N.key files (required)\n"
               "  --max-devices N    use only dev-0 .. dev-(N-1)\n"
               "  -c, --conns N      handshake: concurrency (32); pubsub: pairs (10);\n"
               "                     idle, storm: connections (1000)\n"
               "  --pending N        idle, storm: handshakes in flight at once (64)\n"
               "  --hold STEP        idle: hold each connection after mqtt (CONNACK, default),\n"
               "                     tls (handshake done, no CONNECT) or tcp (no TLS)\n"
               "  --ciphersuites L   TLS 1.3 suites offered (OpenSSL list syntax)\n"
               "  --resume           handshake, storm: TLS 1.3 only, each device (storm: each\n"
               "                     connection) resumes with the last ticket it got\n"
               "                     (resumed= counts them)\n"
               "  --sources N        bind connections in turn to 127.0.0.2 .. 127.0.0.(N+1)\n"
               "                     (IPv4 host only): N times the ephemeral port range\n"
               "  -d, --duration S   seconds measured (5); idle: hold time, 0 = until SIGTERM\n"
               "  --warmup S         seconds before measuring (1)\n"
               "  --qos 0|1          pubsub QoS (0)\n"
               "  --mqtt 3|5         protocol: 3.1.1 (3, default) or 5.0\n"
               "  --window N         pubsub: messages in flight per publisher (100)\n"
               "  --payload N        pubsub payload bytes, >= 16 (64)\n"
               "  --keepalive S      CONNECT keepalive (0 = none)\n"
               "  --plain-id         ClientId = certificate CN (default d:<CN>:<n>)\n"
               "  --tag T            ClientIds d:<CN>:T-<n>, pubsub topics bench/T/<i> (several\n"
               "                     generators in one tenant; T: 1-16 letters or digits)\n"
               "  --persistent       pubsub: subscribers keep their session (clean session 0;\n"
               "                     5.0: session expiry 3600 s), so the broker stores their\n"
               "                     QoS 1 messages\n"
               "  --drop-after S     storm: hold S seconds, then drop every connection at once\n"
               "                     (default: wait until the broker side drops some)\n"
               "  --timeout S        storm: seconds allowed for all to be up again (120)\n"
               "  --broker-pid PID   report the broker's CPU seconds over the measurement\n"
               "  --broker-pid2 PID  a second node's CPU seconds counted with it\n");
}

static int parse_mode(const char *s, enum lg_mode *m)
{
    if (!strcmp(s, "handshake"))
        *m = LG_HANDSHAKE;
    else if (!strcmp(s, "pubsub"))
        *m = LG_PUBSUB;
    else if (!strcmp(s, "idle"))
        *m = LG_IDLE;
    else if (!strcmp(s, "storm"))
        *m = LG_STORM;
    else if (!strcmp(s, "path"))
        *m = LG_PATH;
    else
        return ERR_INVALID;
    return 0;
}

static int parse_int(const char *s, long lo, long hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return ERR_INVALID;
    *out = (int)v;
    return 0;
}

static int parse_secs(const char *s, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !(v >= 0 && v < 86400)) return ERR_INVALID;
    *out = v;
    return 0;
}

static int parse_hold(const char *s, enum lg_hold *h)
{
    if (!strcmp(s, "mqtt"))
        *h = LG_HOLD_MQTT;
    else if (!strcmp(s, "tls"))
        *h = LG_HOLD_TLS;
    else if (!strcmp(s, "tcp"))
        *h = LG_HOLD_TCP;
    else
        return ERR_INVALID;
    return 0;
}

static int parse_opt(struct lg_opts *o, int opt, const char *arg)
{
    int pid = 0;
    switch (opt) {
    case 'H': o->host = arg; return 0;
    case 'p': return parse_int(arg, 1, 65535, &o->port);
    case 'u': return parse_int(arg, 1, 65535, &o->sub_port);
    case 'S': o->sni = arg; return 0;
    case 'A': o->cafile = arg; return 0;
    case 'D': o->devdir = arg; return 0;
    case 'M': return parse_int(arg, 1, 1000000, &o->max_devices);
    case 'c': return parse_int(arg, 1, 1000000, &o->conns);
    case 'P': return parse_int(arg, 1, 100000, &o->pending);
    case 's': return parse_int(arg, 0, 250, &o->sources);
    case 'T': return parse_hold(arg, &o->hold);
    case 'C': o->suites = arg; return 0;
    case 'd': return parse_secs(arg, &o->duration);
    case 'w': return parse_secs(arg, &o->warmup);
    case 'q': return parse_int(arg, 0, 1, &o->qos);
    case 'W': return parse_int(arg, 1, 60000, &o->window);
    case 'L': return parse_int(arg, 16, 4096, &o->payload);
    case 'k': return parse_int(arg, 0, 65535, &o->keepalive);
    case 'I': o->plain_id = true; return 0;
    case 'g':
        ENSURE(*arg && strlen(arg) <= 16 &&
                   strspn(arg, "abcdefghijklmnopqrstuvwxyz"
                               "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") == strlen(arg),
               ERR_INVALID);
        o->tag = arg;
        return 0;
    case 'R': o->persistent = true; return 0;
    case 'r': o->resume = true; return 0;
    case 'X': return parse_secs(arg, &o->drop_after);
    case 'O': return parse_secs(arg, &o->timeout);
    case 'V': {
        int v;
        GUARD(parse_int(arg, 3, 5, &v));
        ENSURE(v == 3 || v == 5, ERR_INVALID);
        o->version = v == 5 ? MQTT_V5 : MQTT_V311;
        return 0;
    }
    case 'B':
    case 'b':
        GUARD(parse_int(arg, 1, 1 << 30, &pid));
        *(opt == 'B' ? &o->broker_pid : &o->broker_pid2) = pid;
        return 0;
    default: return ERR_INVALID;
    }
}

static int parse_args(int argc, char **argv, struct lg_opts *o)
{
    static const struct option longopts[] = {
        {"host", 1, 0, 'H'},
        {"port", 1, 0, 'p'},
        {"sub-port", 1, 0, 'u'},
        {"sni", 1, 0, 'S'},
        {"cafile", 1, 0, 'A'},
        {"devices", 1, 0, 'D'},
        {"max-devices", 1, 0, 'M'},
        {"conns", 1, 0, 'c'},
        {"pending", 1, 0, 'P'},
        {"duration", 1, 0, 'd'},
        {"warmup", 1, 0, 'w'},
        {"qos", 1, 0, 'q'},
        {"window", 1, 0, 'W'},
        {"payload", 1, 0, 'L'},
        {"keepalive", 1, 0, 'k'},
        {"plain-id", 0, 0, 'I'},
        {"persistent", 0, 0, 'R'},
        {"broker-pid", 1, 0, 'B'},
        {"broker-pid2", 1, 0, 'b'},
        {"mqtt", 1, 0, 'V'},
        {"sources", 1, 0, 's'},
        {"hold", 1, 0, 'T'},
        {"ciphersuites", 1, 0, 'C'},
        {"resume", 0, 0, 'r'},
        {"drop-after", 1, 0, 'X'},
        {"timeout", 1, 0, 'O'},
        {"tag", 1, 0, 'g'},
        {"help", 0, 0, 'h'},
        {0, 0, 0, 0},
    };
    if (argc < 2 || parse_mode(argv[1], &o->mode) < 0) return ERR_INVALID;
    *o = (struct lg_opts){.mode = o->mode,
                          .host = "127.0.0.1",
                          .port = 8883,
                          .sni = "localhost",
                          .pending = 64,
                          .duration = 5,
                          .warmup = 1,
                          .window = 100,
                          .payload = 64,
                          .drop_after = -1,
                          .timeout = 120,
                          .version = MQTT_V311};
    o->conns = o->mode == LG_HANDSHAKE ? 32 : o->mode == LG_PUBSUB ? 10 : 1000;
    optind = 2;
    int opt;
    while ((opt = getopt_long(argc, argv, "c:d:h", longopts, NULL)) != -1) {
        if (opt == 'h') return ERR_INVALID;
        if (parse_opt(o, opt, optarg) < 0) {
            fprintf(stderr, "loadgen: bad value for option -%c: %s\n", opt, optarg ? optarg : "");
            return ERR_INVALID;
        }
    }
    if (optind != argc) return ERR_INVALID;
    if (o->mode != LG_PATH && (!o->cafile || !o->devdir)) return ERR_INVALID;
    if (o->hold != LG_HOLD_MQTT && o->mode != LG_IDLE) return ERR_INVALID;
    if (o->resume && o->mode != LG_HANDSHAKE && o->mode != LG_STORM) return ERR_INVALID;
    return 0;
}

/* Enough descriptors for every connection (the hard limit allows it). */
static void raise_nofile(int want)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
    rlim_t need = (rlim_t)want + 64;
    if (rl.rlim_cur >= need) return;
    rl.rlim_cur = need < rl.rlim_max ? need : rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur < need)
        fprintf(stderr, "loadgen: only %llu descriptors allowed, %d wanted\n",
                (unsigned long long)rl.rlim_cur, want);
}

int main(int argc, char **argv)
{
    struct lg lg = {.epfd = -1};
    if (parse_args(argc, argv, &lg.o) < 0) {
        usage(stderr);
        return 2;
    }
    if (lg.o.mode == LG_PATH) return lg_run_path(&lg.o) < 0 ? 1 : 0;
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    lg.nconns = lg.o.mode == LG_PUBSUB ? 2 * lg.o.conns : lg.o.conns;
    raise_nofile(lg.nconns);

    int rc = lg_init(&lg);
    if (rc == 0) {
        switch (lg.o.mode) {
        case LG_HANDSHAKE: rc = mode_handshake(&lg); break;
        case LG_PUBSUB: rc = mode_pubsub(&lg); break;
        case LG_IDLE: rc = mode_idle(&lg); break;
        case LG_STORM: rc = mode_storm(&lg); break;
        case LG_PATH: break; /* handled above */
        }
    }
    fflush(stdout);
    if (rc < 0)
        fprintf(stderr, "loadgen: %s failed: %s (failures %llu)\n", argv[1], err_str(rc),
                (unsigned long long)g_run.failures);
    lg_fini(&lg);
    return rc < 0 ? 1 : 0;
}
