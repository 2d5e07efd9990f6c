/* certmq-loadgen path: the broker's CPU cost per message without sockets or
 * TLS, for MQTT 3.1.1 and 5.0 on the same load. In one process, a
 * publisher's PUBLISH bytes go through the codec and broker_handle, the
 * subscriber's queue is drained into its output buffer, and at QoS 1 the
 * subscriber's PUBACK comes back; the CPU time of each version is measured
 * over the same number of messages and printed with their ratio (5.0 /
 * 3.1.1; 1.0 means the same cost). */
#include "lg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "broker/broker.h"
#include "core/config.h"
#include "identity/auth.h"

#define PATH_MSGS 2000000

static void no_wake(struct client *c)
{
    (void)c;
}

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Drops every packet in c->out (the client's side is not measured: only
 * framing, and the packet id of a PUBLISH read where it stands); returns
 * the packet id of the last QoS 1 PUBLISH seen (0: none). */
static uint16_t drain_out(struct client *c)
{
    uint16_t last = 0;
    while (buf_used(&c->out)) {
        size_t fl = 0;
        const uint8_t *f = buf_head(&c->out);
        if (mqtt_frame(f, buf_used(&c->out), 0, &fl) != 1) break;
        if (f[0] >> 4 == MQTT_PUBLISH && (f[0] & 0x06)) {
            size_t h = 2;
            while (f[h - 1] & 0x80) h++;
            size_t tlen = (size_t)f[h] << 8 | f[h + 1];
            last = (uint16_t)(f[h + 2 + tlen] << 8 | f[h + 3 + tlen]);
        }
        buf_consume(&c->out, fl);
    }
    return last;
}

/* Sets the packet id of an encoded PUBLISH (topic of tlen bytes) or ack. */
static void set_id(struct buf *b, size_t tlen, bool publish, uint16_t id)
{
    uint8_t *f = (uint8_t *)buf_head(b);
    size_t h = 2;
    while (f[h - 1] & 0x80) h++;
    size_t at = publish ? h + 2 + tlen : h;
    f[at] = (uint8_t)(id >> 8);
    f[at + 1] = (uint8_t)id;
}

static int feed(struct broker *b, struct client *c, const struct buf *pkt)
{
    static struct mqtt_packet p;
    GUARD(mqtt_parse(buf_head(pkt), buf_used(pkt), c->protocol_level, &p));
    return broker_handle(b, c, &p, time(NULL));
}

static int connect_one(struct broker *b, struct client *c, const char *id, uint8_t level)
{
    struct buf t;
    buf_init(&t, 0);
    struct mqtt_connect m = {.protocol_level = level,
                             .clean_session = true,
                             .keepalive = 60,
                             .client_id = {(const uint8_t *)id, (uint16_t)strlen(id)}};
    int rc = mqtt_encode_connect(&t, &m, NULL, NULL);
    if (rc == 0) rc = feed(b, c, &t);
    buf_free(&t);
    drain_out(c);
    return rc;
}

/* One run: PATH_MSGS messages at qos through a fresh broker. */
static int run_path(struct auth *auth, uint8_t level, uint8_t qos, int payload, double *secs)
{
    const struct mqtt_props *props = level == MQTT_V5 ? &mqtt_props_none : NULL;
    struct broker_config bc = {.max_inflight = 65535,
                               .max_queued = 1000,
                               .max_topic_levels = 128,
                               .max_subscriptions = 10,
                               .max_subscription_bytes = 1 << 20,
                               .max_topic_alias = 64,
                               .max_receive = 100,
                               .max_packet_size = 1 << 20,
                               .shared_subscriptions = true,
                               .auth = auth,
                               .wake = no_wake};
    struct broker *b;
    GUARD(broker_new(&bc, &b));
    struct client sub = {0}, pub = {0};
    buf_init(&sub.out, 0);
    buf_init(&pub.out, 0);
    snprintf(sub.peer, sizeof sub.peer, "127.0.0.1:1");
    snprintf(pub.peer, sizeof pub.peer, "127.0.0.1:2");
    struct buf pkt, ack;
    buf_init(&pkt, 0);
    buf_init(&ack, 0);
    uint8_t payload_bytes[4096] = {0};
    struct mqtt_bytes filter = {(const uint8_t *)"bench/0", 7};
    int rc = connect_one(b, &sub, "sub", level);
    if (rc == 0) rc = connect_one(b, &pub, "pub", level);
    if (rc == 0) rc = mqtt_encode_subscribe(&pkt, 1, &filter, &qos, 1, props);
    if (rc == 0) rc = feed(b, &sub, &pkt);
    drain_out(&sub);
    /* The client's packets are encoded once; only their ids change. */
    struct mqtt_publish m = {.qos = qos,
                             .topic = filter,
                             .packet_id = 1,
                             .payload = payload_bytes,
                             .payload_len = (size_t)payload,
                             .props = props};
    buf_consume(&pkt, buf_used(&pkt));
    if (rc == 0) rc = mqtt_encode_publish(&pkt, &m);
    if (rc == 0) rc = mqtt_encode_ack(&ack, MQTT_PUBACK, 1, 0, props);
    double t0 = cpu_now();
    for (uint32_t i = 0; rc == 0 && i < PATH_MSGS; i++) {
        if (qos) set_id(&pkt, filter.len, true, (uint16_t)(i % 65535 + 1));
        rc = feed(b, &pub, &pkt);
        if (rc == 0) rc = broker_drain(b, &sub);
        drain_out(&pub);
        uint16_t id = drain_out(&sub);
        if (rc == 0 && qos && id) {
            set_id(&ack, 0, false, id);
            rc = feed(b, &sub, &ack);
        }
    }
    *secs = cpu_now() - t0;
    broker_close(b, &sub, false);
    broker_close(b, &pub, false);
    buf_free(&pkt);
    buf_free(&ack);
    buf_free(&sub.out);
    buf_free(&pub.out);
    broker_free(b);
    return rc;
}

int lg_run_path(const struct lg_opts *o)
{
    struct config cfg;
    config_defaults(&cfg);
    cfg.allow_anonymous = true;
    struct auth *auth;
    GUARD(auth_new(&cfg, NULL, NULL, NULL, &auth));
    double best[2] = {1e9, 1e9};
    int rc = 0;
    /* Alternate the versions so that noise hits both alike; keep each best.
     * --mqtt 5 alone (for a profiler): only 5.0 runs. */
    for (int rep = 0; rc == 0 && rep < 3; rep++)
        for (int v = o->version == MQTT_V5 ? 1 : 0; rc == 0 && v < 2; v++) {
            if (getenv("CERTMQ_PATH_311_ONLY") && v) break;
            double s = 0;
            rc = run_path(auth, v ? MQTT_V5 : MQTT_V311, (uint8_t)o->qos, o->payload, &s);
            if (s < best[v]) best[v] = s;
        }
    auth_free(auth);
    GUARD(rc);
    printf("RESULT mode=path qos=%d payload=%d msgs=%d ns_per_msg_311=%.1f ns_per_msg_5=%.1f "
           "ratio=%.3f\n",
           o->qos, o->payload, PATH_MSGS, best[0] * 1e9 / PATH_MSGS, best[1] * 1e9 / PATH_MSGS,
           best[1] / best[0]);
    return 0;
}
