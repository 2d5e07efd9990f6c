/* Socket-free tests of the broker's dispatch and QoS acknowledgement state
 * machine: packets are encoded, parsed by the codec and handed to
 * broker_handle as the network layer would; what the broker answers is read
 * back from the client's output buffer. Anonymous clients, no trust index. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <pthread.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "broker/broker.h"
#include "broker/internal.h"
#include "core/config.h"
#include "core/log.h"
#include "identity/auth.h"
#include "store/store.h"

#define BYTES(s) ((struct mqtt_bytes){(const uint8_t *)(s), (uint16_t)(sizeof(s) - 1)})
#define NOW      1700000000

struct fixture {
    struct auth *auth;
    struct broker *b;
    struct client sub, pub;
};

static void wake(struct client *c)
{
    (void)c;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    struct config cfg;
    config_defaults(&cfg);
    cfg.allow_anonymous = true;
    log_set_level(LOG_ERROR);
    assert_int_equal(auth_new(&cfg, NULL, NULL, NULL, &f->auth), 0);
    struct broker_config bc = {.max_inflight = 20,
                               .max_queued = 100,
                               .max_topic_levels = cfg.max_topic_levels,
                               .max_subscriptions = cfg.max_subscriptions,
                               .max_subscription_bytes = cfg.max_subscription_bytes,
                               .max_topic_alias = 4,
                               .max_receive = 3,
                               .max_packet_size = cfg.max_packet_size,
                               .shared_subscriptions = true,
                               .auth = f->auth,
                               .wake = wake};
    assert_int_equal(broker_new(&bc, &f->b), 0);
    buf_init(&f->sub.out, 0);
    buf_init(&f->pub.out, 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    broker_close(f->b, &f->sub, false);
    broker_close(f->b, &f->pub, false);
    buf_free(&f->sub.out);
    buf_free(&f->pub.out);
    broker_free(f->b);
    auth_free(f->auth);
    free(f);
    return 0;
}

/* Parses the encoded packet in tmp and hands it to the broker. */
static int feed(struct fixture *f, struct client *c, struct buf *tmp)
{
    struct mqtt_packet p;
    assert_int_equal(mqtt_parse(buf_head(tmp), buf_used(tmp), c->protocol_level, &p), 0);
    int rc = broker_handle(f->b, c, &p, NOW);
    buf_free(tmp);
    buf_init(tmp, 0);
    return rc;
}

static int send_connect(struct fixture *f, struct client *c, const char *id, uint8_t level,
                        bool clean)
{
    struct buf t;
    buf_init(&t, 0);
    struct mqtt_connect m = {.protocol_level = level,
                             .clean_session = clean,
                             .keepalive = 60,
                             .client_id = {(const uint8_t *)id, (uint16_t)strlen(id)}};
    assert_int_equal(mqtt_encode_connect(&t, &m, NULL, NULL), 0);
    int rc = feed(f, c, &t);
    buf_free(&t);
    return rc;
}

static int send_ack(struct fixture *f, struct client *c, enum mqtt_type type, uint16_t id)
{
    struct buf t;
    buf_init(&t, 0);
    assert_int_equal(mqtt_encode_ack(&t, type, id, 0, NULL), 0);
    int rc = feed(f, c, &t);
    buf_free(&t);
    return rc;
}

/* Takes the next whole packet out of c->out. */
static void next_out(struct client *c, struct mqtt_packet *p)
{
    size_t fl = 0;
    assert_int_equal(mqtt_frame(buf_head(&c->out), buf_used(&c->out), 0, &fl), 1);
    assert_int_equal(mqtt_parse(buf_head(&c->out), fl, c->protocol_level, p), 0);
    buf_consume(&c->out, fl);
}

static void expect_ack_out(struct client *c, enum mqtt_type type, uint16_t id)
{
    struct mqtt_packet p;
    next_out(c, &p);
    assert_int_equal(p.type, type);
    assert_int_equal(p.packet_id, id);
}

static void expect_connack(struct client *c, bool present, uint8_t rc)
{
    struct mqtt_packet p;
    next_out(c, &p);
    assert_int_equal(p.type, MQTT_CONNACK);
    assert_int_equal(p.connack.session_present, present);
    assert_int_equal(p.connack.rc, rc);
}

/* sub subscribes to "t" at qos, pub publishes one message at qos, and the
 * broker writes it to sub: returns its packet id. */
static uint16_t deliver_one(struct fixture *f, uint8_t qos)
{
    struct buf t;
    buf_init(&t, 0);
    assert_int_equal(send_connect(f, &f->sub, "sub", 4, true), 0);
    assert_int_equal(send_connect(f, &f->pub, "pub", 4, true), 0);
    expect_connack(&f->sub, false, 0);
    expect_connack(&f->pub, false, 0);
    struct mqtt_bytes filter = BYTES("t");
    assert_int_equal(mqtt_encode_subscribe(&t, 1, &filter, &qos, 1, NULL), 0);
    assert_int_equal(feed(f, &f->sub, &t), 0);
    struct mqtt_packet p;
    next_out(&f->sub, &p);
    assert_int_equal(p.type, MQTT_SUBACK);

    struct mqtt_publish m = {.qos = qos,
                             .topic = BYTES("t"),
                             .packet_id = 9,
                             .payload = (const uint8_t *)"m",
                             .payload_len = 1};
    assert_int_equal(mqtt_encode_publish(&t, &m), 0);
    assert_int_equal(feed(f, &f->pub, &t), 0);
    buf_free(&t);
    assert_int_equal(broker_drain(f->b, &f->sub), 0);
    next_out(&f->sub, &p);
    assert_int_equal(p.type, MQTT_PUBLISH);
    assert_int_equal(p.publish.qos, qos);
    assert_int_equal(buf_used(&f->sub.out), 0);
    return p.publish.packet_id;
}

static void test_ack_qos1_puback_completes(void **state)
{
    struct fixture *f = *state;
    uint16_t id = deliver_one(f, 1);
    assert_int_equal(send_ack(f, &f->sub, MQTT_PUBACK, id), 0);
    /* A late duplicate is ignored. */
    assert_int_equal(send_ack(f, &f->sub, MQTT_PUBACK, id), 0);
    assert_int_equal(buf_used(&f->sub.out), 0);
}

static void test_ack_qos1_pubrec_is_protocol_error(void **state)
{
    struct fixture *f = *state;
    uint16_t id = deliver_one(f, 1);
    assert_int_equal(send_ack(f, &f->sub, MQTT_PUBREC, id), ERR_PROTO);
    assert_int_equal(buf_used(&f->sub.out), 0);
}

static void test_ack_qos1_pubcomp_is_protocol_error(void **state)
{
    struct fixture *f = *state;
    uint16_t id = deliver_one(f, 1);
    assert_int_equal(send_ack(f, &f->sub, MQTT_PUBCOMP, id), ERR_PROTO);
}

static void test_ack_qos2_puback_is_protocol_error(void **state)
{
    struct fixture *f = *state;
    uint16_t id = deliver_one(f, 2);
    assert_int_equal(send_ack(f, &f->sub, MQTT_PUBACK, id), ERR_PROTO);
}

static void test_ack_qos2_pubcomp_before_pubrec_is_protocol_error(void **state)
{
    struct fixture *f = *state;
    uint16_t id = deliver_one(f, 2);
    assert_int_equal(send_ack(f, &f->sub, MQTT_PUBCOMP, id), ERR_PROTO);
}

static void test_ack_qos2_flow(void **state)
{
    struct fixture *f = *state;
    uint16_t id = deliver_one(f, 2);
    assert_int_equal(send_ack(f, &f->sub, MQTT_PUBREC, id), 0);
    expect_ack_out(&f->sub, MQTT_PUBREL, id);
    /* A repeated PUBREC (our PUBREL was lost) gets PUBREL again. */
    assert_int_equal(send_ack(f, &f->sub, MQTT_PUBREC, id), 0);
    expect_ack_out(&f->sub, MQTT_PUBREL, id);
    assert_int_equal(send_ack(f, &f->sub, MQTT_PUBCOMP, id), 0);
    assert_int_equal(buf_used(&f->sub.out), 0);
    /* Released: a PUBREC now is unknown, and still answered. */
    assert_int_equal(send_ack(f, &f->sub, MQTT_PUBREC, id), 0);
    expect_ack_out(&f->sub, MQTT_PUBREL, id);
}

static void test_ack_qos2_puback_after_pubrel_is_protocol_error(void **state)
{
    struct fixture *f = *state;
    uint16_t id = deliver_one(f, 2);
    assert_int_equal(send_ack(f, &f->sub, MQTT_PUBREC, id), 0);
    expect_ack_out(&f->sub, MQTT_PUBREL, id);
    assert_int_equal(send_ack(f, &f->sub, MQTT_PUBACK, id), ERR_PROTO);
}

static void test_ack_unsolicited(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(send_connect(f, &f->sub, "lonely", 4, true), 0);
    expect_connack(&f->sub, false, 0);
    assert_int_equal(send_ack(f, &f->sub, MQTT_PUBACK, 1), 0);
    assert_int_equal(send_ack(f, &f->sub, MQTT_PUBCOMP, 2), 0);
    assert_int_equal(buf_used(&f->sub.out), 0);
    assert_int_equal(send_ack(f, &f->sub, MQTT_PUBREC, 3), 0);
    expect_ack_out(&f->sub, MQTT_PUBREL, 3);
    assert_int_equal(send_ack(f, &f->sub, MQTT_PUBREL, 4), 0);
    expect_ack_out(&f->sub, MQTT_PUBCOMP, 4);
}

static void test_dispatch_first_packet_must_be_connect(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(send_ack(f, &f->sub, MQTT_PUBACK, 1), ERR_PROTO);
    assert_int_equal(buf_used(&f->sub.out), 0);
}

static void test_dispatch_v31_empty_client_id_refused(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(send_connect(f, &f->sub, "", 3, true), ERR_NOT_AUTHORIZED);
    expect_connack(&f->sub, false, MQTT_CONNACK_ID_REJECTED);
    assert_int_equal(f->sub.state, CLIENT_NEW);
    /* 3.1.1 assigns one. */
    assert_int_equal(send_connect(f, &f->pub, "", 4, true), 0);
    expect_connack(&f->pub, false, MQTT_CONNACK_ACCEPTED);
}

static void test_dispatch_v31_never_session_present(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(send_connect(f, &f->sub, "keep", 3, false), 0);
    expect_connack(&f->sub, false, 0);
    broker_close(f->b, &f->sub, false);
    f->sub.state = CLIENT_NEW;
    assert_int_equal(send_connect(f, &f->sub, "keep", 3, false), 0);
    expect_connack(&f->sub, false, 0);
    broker_close(f->b, &f->sub, false);
    f->sub.state = CLIENT_NEW;
    assert_int_equal(send_connect(f, &f->sub, "keep", 4, false), 0);
    expect_connack(&f->sub, true, 0);
}

/* ---- cross-node messaging: the hooks a cluster bridge gets ---- */

struct recorder {
    int adds, dels, publishes, retains;
    char last_filter[64], last_group[16], last_topic[64];
    uint8_t last_qos;
};
static struct recorder rec;

static void rec_publish(void *arg, const char *tenant, const char *topic, size_t tlen,
                        const uint8_t *payload, size_t plen, const uint8_t *props, size_t props_len,
                        uint8_t qos, bool retain, uint32_t expiry)
{
    rec.publishes++;
    snprintf(rec.last_topic, sizeof rec.last_topic, "%s|%.*s", tenant, (int)tlen, topic);
    rec.last_qos = qos;
}

static void rec_interest(void *arg, const char *tenant, const char *filter, size_t flen,
                         const char *group, bool add)
{
    if (add)
        rec.adds++;
    else
        rec.dels++;
    snprintf(rec.last_filter, sizeof rec.last_filter, "%.*s", (int)flen, filter);
    snprintf(rec.last_group, sizeof rec.last_group, "%s", group ? group : "-");
}

static void rec_retain(void *arg, const char *tenant, const char *topic, size_t tlen,
                       const uint8_t *payload, size_t plen, uint8_t qos)
{
    rec.retains++;
}

static const struct broker_cluster rec_ops = {.publish = rec_publish, .interest = rec_interest};

static int setup_cluster(void **state)
{
    GUARD(setup(state));
    struct fixture *f = *state;
    broker_free(f->b);
    memset(&rec, 0, sizeof rec);
    struct broker_config bc = {.max_inflight = 20,
                               .max_queued = 100,
                               .max_topic_levels = 128,
                               .max_subscriptions = 100,
                               .max_subscription_bytes = 1 << 20,
                               .shared_subscriptions = true,
                               .auth = f->auth,
                               .wake = wake,
                               .on_retain = rec_retain,
                               .retain_digests = true,
                               .cluster = &rec_ops};
    assert_int_equal(broker_new(&bc, &f->b), 0);
    return 0;
}

static void subscribe(struct fixture *f, struct client *c, const char *filter, uint8_t qos)
{
    struct buf t;
    buf_init(&t, 0);
    struct mqtt_bytes fb = {(const uint8_t *)filter, (uint16_t)strlen(filter)};
    assert_int_equal(mqtt_encode_subscribe(&t, 1, &fb, &qos, 1, NULL), 0);
    assert_int_equal(feed(f, c, &t), 0);
    buf_free(&t);
    struct mqtt_packet p;
    next_out(c, &p);
    assert_int_equal(p.type, MQTT_SUBACK);
}

static void unsubscribe(struct fixture *f, struct client *c, const char *filter)
{
    struct buf t;
    buf_init(&t, 0);
    struct mqtt_bytes fb = {(const uint8_t *)filter, (uint16_t)strlen(filter)};
    assert_int_equal(mqtt_encode_unsubscribe(&t, 2, &fb, 1, NULL), 0);
    assert_int_equal(feed(f, c, &t), 0);
    buf_free(&t);
    struct mqtt_packet p;
    next_out(c, &p);
    assert_int_equal(p.type, MQTT_UNSUBACK);
}

static void publish(struct fixture *f, struct client *c, const char *topic, uint8_t qos)
{
    struct buf t;
    buf_init(&t, 0);
    struct mqtt_publish m = {.qos = qos,
                             .topic = {(const uint8_t *)topic, (uint16_t)strlen(topic)},
                             .packet_id = 7,
                             .payload = (const uint8_t *)"m",
                             .payload_len = 1};
    assert_int_equal(mqtt_encode_publish(&t, &m), 0);
    assert_int_equal(feed(f, c, &t), 0);
    buf_free(&t);
    if (qos) {
        struct mqtt_packet p;
        next_out(c, &p); /* its PUBACK / PUBREC */
    }
}

static void connect_both(struct fixture *f)
{
    assert_int_equal(send_connect(f, &f->sub, "sub", 4, true), 0);
    assert_int_equal(send_connect(f, &f->pub, "pub", 4, true), 0);
    expect_connack(&f->sub, false, 0);
    expect_connack(&f->pub, false, 0);
}

static void test_cluster_interest_follows_subscriptions(void **state)
{
    struct fixture *f = *state;
    connect_both(f);
    subscribe(f, &f->sub, "a/#", 1);
    assert_int_equal(rec.adds, 1);
    assert_string_equal(rec.last_filter, "a/#");
    assert_string_equal(rec.last_group, "-");
    subscribe(f, &f->sub, "a/#", 2); /* a new QoS only */
    assert_int_equal(rec.adds, 1);
    subscribe(f, &f->pub, "a/#", 0); /* a second session: the bridge counts it */
    assert_int_equal(rec.adds, 2);
    unsubscribe(f, &f->sub, "a/#");
    assert_int_equal(rec.dels, 1);
    broker_close(f->b, &f->pub, false); /* a clean session ends: its subscription goes */
    assert_int_equal(rec.dels, 2);
}

static void test_cluster_share_group_interest_once(void **state)
{
    struct fixture *f = *state;
    connect_both(f);
    subscribe(f, &f->sub, "$share/g/jobs/+", 1);
    subscribe(f, &f->pub, "$share/g/jobs/+", 1);
    assert_int_equal(rec.adds, 1);
    assert_string_equal(rec.last_filter, "jobs/+");
    assert_string_equal(rec.last_group, "g");
    unsubscribe(f, &f->sub, "$share/g/jobs/+");
    assert_int_equal(rec.dels, 0);
    unsubscribe(f, &f->pub, "$share/g/jobs/+");
    assert_int_equal(rec.dels, 1);
    assert_string_equal(rec.last_group, "g");
}

static void test_cluster_publish_goes_out_once_shares_wait_for_it(void **state)
{
    struct fixture *f = *state;
    connect_both(f);
    subscribe(f, &f->sub, "$share/g/x", 1);
    publish(f, &f->pub, "x", 1);
    assert_int_equal(rec.publishes, 1);
    assert_string_equal(rec.last_topic, "|x");
    assert_int_equal(rec.last_qos, 1);
    assert_int_equal(broker_drain(f->b, &f->sub), 0);
    assert_int_equal(buf_used(&f->sub.out), 0); /* the group takes the cluster's copy */
    struct broker_remote r = {.tenant = "",
                              .topic = "x",
                              .tlen = 1,
                              .payload = (const uint8_t *)"m",
                              .plen = 1,
                              .qos = 2,
                              .group = "g",
                              .filter = "x",
                              .flen = 1};
    assert_int_equal(broker_remote_publish(f->b, &r), 1);
    assert_int_equal(broker_drain(f->b, &f->sub), 0);
    struct mqtt_packet p;
    next_out(&f->sub, &p);
    assert_int_equal(p.type, MQTT_PUBLISH);
    assert_int_equal(p.publish.qos, 1); /* the member's QoS */
    assert_int_equal(rec.publishes, 1); /* not published again */
    r.group = "other";
    assert_int_equal(broker_remote_publish(f->b, &r), 0);
}

static void test_cluster_remote_publish_matches_in_its_tenant(void **state)
{
    struct fixture *f = *state;
    connect_both(f);
    subscribe(f, &f->sub, "a/+", 2);
    struct broker_remote r = {.tenant = "",
                              .topic = "a/b",
                              .tlen = 3,
                              .payload = (const uint8_t *)"m",
                              .plen = 1,
                              .qos = 1};
    assert_int_equal(broker_remote_publish(f->b, &r), 1);
    r.topic = "a/b/c"; /* NATS may send more than matches: the tree decides */
    r.tlen = 5;
    assert_int_equal(broker_remote_publish(f->b, &r), 0);
    r.tenant = "someone-else";
    r.topic = "a/b";
    r.tlen = 3;
    assert_int_equal(broker_remote_publish(f->b, &r), 0);
    assert_int_equal(rec.publishes, 0);
    assert_int_equal(broker_drain(f->b, &f->sub), 0);
    struct mqtt_packet p;
    next_out(&f->sub, &p);
    assert_int_equal(p.publish.qos, 1);
    assert_int_equal(buf_used(&f->sub.out), 0);
}

/* ---- handing a session over to another node (move.c) ---- */

/* A client of b with a persistent session "mover" subscribed to "t" at QoS
 * 1 goes offline, and two QoS 1 messages are queued for it. */
static void offline_with_two_queued(struct fixture *f)
{
    assert_int_equal(send_connect(f, &f->sub, "mover", 4, false), 0);
    assert_int_equal(send_connect(f, &f->pub, "pub", 4, true), 0);
    expect_connack(&f->sub, false, 0);
    expect_connack(&f->pub, false, 0);
    subscribe(f, &f->sub, "t", 1);
    broker_close(f->b, &f->sub, false);
    publish(f, &f->pub, "t", 1);
    publish(f, &f->pub, "t", 1);
}

/* A fresh client connects to b as "mover" (persistent): returns whether
 * the session was present, and how many messages it then received. */
static int reconnect_mover(struct fixture *f, struct broker *b, bool *present)
{
    struct client c = {0};
    buf_init(&c.out, 0);
    struct broker *keep = f->b;
    f->b = b;
    assert_int_equal(send_connect(f, &c, "mover", 4, false), 0);
    struct mqtt_packet p;
    next_out(&c, &p);
    assert_int_equal(p.type, MQTT_CONNACK);
    *present = p.connack.session_present;
    assert_int_equal(broker_drain(b, &c), 0);
    int n = 0;
    while (buf_used(&c.out)) {
        next_out(&c, &p);
        assert_int_equal(p.type, MQTT_PUBLISH);
        n++;
    }
    broker_close(b, &c, false);
    buf_free(&c.out);
    f->b = keep;
    return n;
}

static struct broker *second_broker(struct fixture *f)
{
    struct broker_config bc = {.max_inflight = 20,
                               .max_queued = 100,
                               .max_topic_levels = 128,
                               .max_subscriptions = 100,
                               .max_subscription_bytes = 1 << 20,
                               .auth = f->auth,
                               .wake = wake};
    struct broker *b;
    assert_int_equal(broker_new(&bc, &b), 0);
    return b;
}

static void test_release_hands_the_session_over_with_its_queue(void **state)
{
    struct fixture *f = *state;
    offline_with_two_queued(f);
    struct buf snap;
    buf_init(&snap, 0);
    assert_int_equal(broker_release(f->b, "", "mover", true, 1 << 20, &snap), 1);
    struct broker *b2 = second_broker(f);
    assert_int_equal(broker_adopt(b2, "", "mover", buf_head(&snap), buf_used(&snap)), 0);
    bool present;
    assert_int_equal(reconnect_mover(f, b2, &present), 2);
    assert_true(present);
    /* The node it left ended its copy. */
    assert_int_equal(reconnect_mover(f, f->b, &present), 0);
    assert_false(present);
    buf_free(&snap);
    broker_free(b2);
}

static void test_adopt_refuses_a_session_of_another_tenant(void **state)
{
    struct fixture *f = *state;
    offline_with_two_queued(f);
    struct buf snap;
    buf_init(&snap, 0);
    assert_int_equal(broker_release(f->b, "", "mover", true, 1 << 20, &snap), 1);
    struct broker *b2 = second_broker(f);
    /* Records of ("", mover) offered as (acme, mover), or as another id. */
    assert_int_equal(broker_adopt(b2, "acme", "mover", buf_head(&snap), buf_used(&snap)),
                     ERR_MALFORMED);
    assert_int_equal(broker_adopt(b2, "", "other", buf_head(&snap), buf_used(&snap)),
                     ERR_MALFORMED);
    /* Cut short: nothing half-made stays. */
    assert_int_equal(broker_adopt(b2, "", "mover", buf_head(&snap), buf_used(&snap) - 3),
                     ERR_MALFORMED);
    bool present;
    assert_int_equal(reconnect_mover(f, b2, &present), 0);
    assert_false(present);
    buf_free(&snap);
    broker_free(b2);
}

static void test_release_keeps_a_session_too_large_to_send(void **state)
{
    struct fixture *f = *state;
    offline_with_two_queued(f);
    struct buf snap;
    buf_init(&snap, 0);
    assert_int_equal(broker_release(f->b, "", "mover", true, 40, &snap), ERR_TOO_LARGE);
    assert_int_equal(buf_used(&snap), 0);
    bool present;
    assert_int_equal(reconnect_mover(f, f->b, &present), 2);
    assert_true(present);
    /* Claimed for a clean start elsewhere: it ends here, nothing is sent. */
    assert_int_equal(broker_release(f->b, "", "mover", false, 1 << 20, &snap), 0);
    assert_int_equal(buf_used(&snap), 0);
    assert_int_equal(reconnect_mover(f, f->b, &present), 0);
    assert_false(present);
    buf_free(&snap);
}

static uint64_t retained_count(struct fixture *f)
{
    struct broker_stats s;
    broker_stats(f->b, &s);
    return s.retained;
}

/* A retained message another node stored: kept for the subscriptions made
 * from now on, delivered to no one now, neither stored nor published to
 * the cluster again; cleared by the digest of its topic; its tenant's only. */
static void test_cluster_retained_from_another_node(void **state)
{
    struct fixture *f = *state;
    connect_both(f);
    subscribe(f, &f->sub, "r/#", 1);
    assert_int_equal(broker_retained_put(f->b, "", "r/1", 3, (const uint8_t *)"v1", 2, 1), 0);
    assert_int_equal(broker_retained_put(f->b, "other", "r/1", 3, (const uint8_t *)"v2", 2, 1), 0);
    assert_int_equal(broker_retained_put(f->b, "", "r/1", 3, (const uint8_t *)"v1", 2, 1), 0);
    assert_int_equal(broker_drain(f->b, &f->sub), 0);
    assert_int_equal(buf_used(&f->sub.out), 0);
    assert_int_equal(rec.publishes + rec.retains, 0);
    assert_int_equal(retained_count(f), 2);

    subscribe(f, &f->pub, "r/#", 2);
    assert_int_equal(broker_drain(f->b, &f->pub), 0);
    struct mqtt_packet p;
    next_out(&f->pub, &p);
    assert_int_equal(p.type, MQTT_PUBLISH);
    assert_true(p.publish.retain);
    assert_int_equal(p.publish.qos, 1);
    assert_int_equal(p.publish.payload_len, 2);
    assert_memory_equal(p.publish.payload, "v1", 2);
    assert_int_equal(buf_used(&f->pub.out), 0);
    assert_int_equal(send_ack(f, &f->pub, MQTT_PUBACK, p.packet_id), 0);

    char d[STORE_DIGEST_HEX + 1];
    store_retained_digest("r/1", 3, d);
    assert_int_equal(broker_retained_clear_digest(f->b, "nobody", d), 0);
    assert_int_equal(broker_retained_clear_digest(f->b, "", d), 0);
    assert_int_equal(retained_count(f), 1);
    unsubscribe(f, &f->pub, "r/#");
    subscribe(f, &f->pub, "r/#", 2);
    assert_int_equal(broker_drain(f->b, &f->pub), 0);
    assert_int_equal(buf_used(&f->pub.out), 0);
    assert_int_equal(broker_retained_put(f->b, "", "r/1", 3, NULL, 0, 0), 0); /* none: fine */
    assert_int_equal(rec.retains, 0);
}

/* A client's own retained publish is indexed too: a removal announced by
 * digest finds it. */
static void test_cluster_retained_publish_is_found_by_digest(void **state)
{
    struct fixture *f = *state;
    connect_both(f);
    struct buf t;
    buf_init(&t, 0);
    struct mqtt_publish m = {
        .retain = true, .topic = BYTES("k/1"), .payload = (const uint8_t *)"m", .payload_len = 1};
    assert_int_equal(mqtt_encode_publish(&t, &m), 0);
    assert_int_equal(feed(f, &f->pub, &t), 0);
    buf_free(&t);
    assert_int_equal(rec.retains, 1);
    assert_int_equal(retained_count(f), 1);
    char d[STORE_DIGEST_HEX + 1];
    store_retained_digest("k/1", 3, d);
    assert_int_equal(broker_retained_clear_digest(f->b, "", d), 0);
    assert_int_equal(retained_count(f), 0);
    subscribe(f, &f->sub, "k/#", 1);
    assert_int_equal(broker_drain(f->b, &f->sub), 0);
    assert_int_equal(buf_used(&f->sub.out), 0);
}

static bool keep_only(void *arg, const char *tenant, const char *digest)
{
    char d[STORE_DIGEST_HEX + 1];
    store_retained_digest("s/keep", 6, d);
    (*(int *)arg)++;
    return !strcmp(tenant, "t1") && !strcmp(digest, d);
}

/* After missed notices: what the store no longer holds is swept away, in
 * every tenant, and only that. */
static void test_cluster_retained_sweep(void **state)
{
    struct fixture *f = *state;
    const uint8_t *v = (const uint8_t *)"v";
    assert_int_equal(broker_retained_put(f->b, "t1", "s/keep", 6, v, 1, 0), 0);
    assert_int_equal(broker_retained_put(f->b, "t1", "s/gone", 6, v, 1, 0), 0);
    assert_int_equal(broker_retained_put(f->b, "t2", "s/keep", 6, v, 1, 0), 0);
    assert_int_equal(broker_retained_put(f->b, "", "s/gone", 6, v, 1, 0), 0);
    assert_int_equal(retained_count(f), 4);
    int asked = 0;
    assert_int_equal(broker_retained_sweep(f->b, keep_only, &asked), 0);
    assert_int_equal(asked, 4);
    assert_int_equal(retained_count(f), 1);
    char d[STORE_DIGEST_HEX + 1];
    store_retained_digest("s/keep", 6, d);
    assert_int_equal(broker_retained_clear_digest(f->b, "t1", d), 0);
    assert_int_equal(retained_count(f), 0);
}

/* A thread that works in one tenant's space while the test holds another's
 * or the same one's lock: it publishes a retained message there, then reads
 * the stats (which walk every space). */
struct lock_taker {
    struct broker *b;
    const char *tenant;
    _Atomic long tid;
    _Atomic bool done;
    struct broker_stats st;
};

static void *take_lock(void *arg)
{
    struct lock_taker *t = arg;
    t->tid = (long)syscall(SYS_gettid);
    const uint8_t v = '1';
    assert_int_equal(broker_retained_put(t->b, t->tenant, "a/b", 3, &v, 1, 0), 0);
    t->done = true;
    broker_stats(t->b, &t->st);
    return NULL;
}

/* The thread's state letter from /proc ('S' while it sleeps on the lock). */
static char thread_state(long tid)
{
    char path[64], line[512], st = '?';
    snprintf(path, sizeof path, "/proc/self/task/%ld/stat", tid);
    FILE *f = fopen(path, "r");
    if (!f) return st;
    if (fgets(line, sizeof line, f)) {
        const char *p = strrchr(line, ')');
        if (p && p[1] == ' ') st = p[2];
    }
    fclose(f);
    return st;
}

static void test_lock_contention_counted(void **state)
{
    struct fixture *f = *state;
    struct broker_stats st;
    broker_stats(f->b, &st);
    assert_int_equal(st.lock_waits, 0); /* free takings are not counted */
    assert_int_equal(st.lock_wait_ns, 0);
    struct lock_taker t = {.b = f->b, .tenant = "t1"};
    struct space *sp = space_get(f->b, "t1");
    assert_non_null(sp);
    space_lock(f->b, sp);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, take_lock, &t), 0);
    while (!t.tid || thread_state(t.tid) != 'S') sched_yield(); /* blocked on the lock */
    assert_false(t.done);
    space_unlock(sp);
    assert_int_equal(pthread_join(th, NULL), 0);
    broker_stats(f->b, &st);
    assert_int_equal(st.lock_waits, 1);
    assert_true(st.lock_wait_ns > 0);
    assert_int_equal(t.st.lock_waits, 1); /* counted as soon as it had the lock */
}

/* Tenants do not wait for each other: while one space's lock is held, a
 * publish in another tenant goes through, and nothing waited. */
static void test_tenants_do_not_share_a_lock(void **state)
{
    struct fixture *f = *state;
    struct space *sp = space_get(f->b, "t1");
    assert_non_null(sp);
    space_lock(f->b, sp);
    struct lock_taker t = {.b = f->b, .tenant = "t2"};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, take_lock, &t), 0);
    for (int i = 0; i < 5000 && !t.done; i++) usleep(1000);
    bool done = t.done; /* read before letting go: it must not need t1's lock */
    space_unlock(sp);   /* (stats walk every space: they may wait for it) */
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_true(done);
    struct broker_stats st;
    broker_stats(f->b, &st);
    assert_int_equal(st.retained, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ack_qos1_puback_completes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ack_qos1_pubrec_is_protocol_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ack_qos1_pubcomp_is_protocol_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ack_qos2_puback_is_protocol_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ack_qos2_pubcomp_before_pubrec_is_protocol_error,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_ack_qos2_flow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ack_qos2_puback_after_pubrel_is_protocol_error, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_ack_unsolicited, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dispatch_first_packet_must_be_connect, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_dispatch_v31_empty_client_id_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dispatch_v31_never_session_present, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock_contention_counted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tenants_do_not_share_a_lock, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cluster_interest_follows_subscriptions, setup_cluster,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_cluster_share_group_interest_once, setup_cluster,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_cluster_publish_goes_out_once_shares_wait_for_it,
                                        setup_cluster, teardown),
        cmocka_unit_test_setup_teardown(test_release_hands_the_session_over_with_its_queue, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_adopt_refuses_a_session_of_another_tenant, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_release_keeps_a_session_too_large_to_send, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_cluster_remote_publish_matches_in_its_tenant,
                                        setup_cluster, teardown),
        cmocka_unit_test_setup_teardown(test_cluster_retained_from_another_node, setup_cluster,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_cluster_retained_publish_is_found_by_digest,
                                        setup_cluster, teardown),
        cmocka_unit_test_setup_teardown(test_cluster_retained_sweep, setup_cluster, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
