/* Socket-free tests of the broker's dispatch and QoS acknowledgement state
 * machine: packets are encoded, parsed by the codec and handed to
 * broker_handle as the network layer would; what the broker answers is read
 * back from the client's output buffer. Anonymous clients, no trust index. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "broker/broker.h"
#include "core/config.h"
#include "core/log.h"
#include "identity/auth.h"

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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
