/* Broker internals shared by broker.c and the packet handlers
 * (handle_*.c). Not an interface: nothing outside src/broker includes it.
 * Every function here expects the broker lock to be held unless it says. */
#ifndef CERTMQ_BROKER_INTERNAL_H
#define CERTMQ_BROKER_INTERNAL_H

#include <pthread.h>

#include "identity/acl.h"
#include "broker/broker.h"
#include "broker/topic.h"
#include "core/map.h"
#include "identity/auth.h"

/* A published message, shared by every queue it sits in. */
struct msg {
    unsigned refs;
    uint8_t qos;
    bool retain;
    uint16_t topic_len;
    size_t payload_len;
    char data[]; /* topic, then payload */
};

enum qstate { Q_QUEUED, Q_WAIT_PUBACK, Q_WAIT_PUBREC, Q_WAIT_PUBCOMP };

struct qitem {
    struct qitem *next;
    struct msg *msg;
    uint16_t packet_id;
    uint8_t qos;
    uint8_t state; /* enum qstate */
    bool retain;   /* sent because of a new subscription (RETAIN 1) */
};

struct qlist {
    struct qitem *head, *tail;
    unsigned count;
};

struct sub {
    char *filter;
    uint16_t len;
    uint8_t qos;
    uint32_t cost; /* counted against max_subscription_bytes */
};

/* A tenant's topic space: its own subscriptions and retained messages. */
struct space {
    char *tenant;
    struct topic_tree *tree;
};

struct session {
    char *key; /* tenant \x01 client id: the sessions map key */
    char *client_id;
    struct space *space;
    struct client *client; /* NULL while offline */
    bool clean;
    uint16_t next_id;
    time_t offline_since;  /* persistent sessions without a client */
    struct qlist inflight; /* sent, awaiting PUBACK/PUBREC/PUBCOMP */
    struct qlist queue;    /* not yet sent */
    uint16_t *rx_ids;      /* incoming QoS 2 ids awaiting PUBREL */
    unsigned n_rx, cap_rx;
    struct sub *subs;
    unsigned n_subs, cap_subs;
    size_t sub_bytes; /* sum of subs[].cost */
    struct msg *will;
    struct auth_result who;
    struct acl_matcher *acl; /* topic authorization; NULL: all allowed */
    bool acl_recheck;        /* a subscription is allowed for some of its topics only */
    bool gated;              /* device: deliver nothing until it publishes s/uat or s/us */
    bool resend_pending;     /* in-flight messages wait for the gate to open */
    uint64_t match_gen;      /* routing: last publish that matched this session */
    uint8_t match_qos;
};

struct broker {
    pthread_mutex_t lock;
    struct broker_config cfg;
    struct map spaces;   /* tenant -> struct space */
    struct map sessions; /* key -> struct session */
    uint64_t gen;
    struct session **hits; /* routing scratch */
    size_t n_hits, cap_hits;
    struct broker_stats stats;
};

struct msg *msg_new(const uint8_t *topic, size_t tlen, const uint8_t *payload, size_t plen,
                    uint8_t qos, bool retain);
void msg_unref(struct msg *m);
static inline const uint8_t *msg_payload(const struct msg *m)
{
    return (const uint8_t *)m->data + m->topic_len;
}

struct space *space_get(struct broker *b, const char *tenant);
void session_free(struct broker *b, struct session *s);

/* Routes m to every session of space subscribed to its topic, and stores
 * or clears the retained copy. */
MUST_USE int broker_publish(struct broker *b, struct space *sp, struct msg *m);
/* Queues m for s at qos (drops QoS 0 when offline; counts drops). retain
 * is the RETAIN flag it goes out with. */
void session_enqueue(struct broker *b, struct session *s, struct msg *m, uint8_t qos, bool retain);
/* Writes every in-flight message of c's session again (after a reconnect). */
MUST_USE int broker_resend_inflight(struct broker *b, struct client *c);
void qlist_push(struct qlist *l, struct qitem *it);
void qitem_free(struct qitem *it);

/* What a topic is used for: a client's SUBSCRIBE filter, a client's
 * PUBLISH name, or a message the broker itself sends the client. */
enum devtopic_use { DEVTOPIC_SUBSCRIBE, DEVTOPIC_PUBLISH, DEVTOPIC_BROKER };

/* Client topic -> routed topic (see devtopic.c). ERR_FORBIDDEN when the
 * client may not use it that way. */
MUST_USE int devtopic_in(const struct session *s, const char *t, size_t len, enum devtopic_use use,
                         char *out, size_t cap, size_t *out_len);
/* Routed topic -> the name s's client sees (a suffix of t, or t). */
const char *devtopic_out(const struct session *s, const char *t, size_t len, size_t *out_len);
/* Gives s a new matcher (taking it; NULL: all allowed), drops the
 * subscriptions it denies and notes whether deliveries need checks.
 * Returns how many subscriptions were dropped. */
int session_set_acl(struct broker *b, struct session *s, struct acl_matcher *m);
/* May s's client receive m (its authorization rules, on the name it sees)? */
bool session_may_read(const struct session *s, const struct msg *m);
/* Queues m for s alone if one of its filters matches m's topic. */
void session_deliver_direct(struct broker *b, struct session *s, struct msg *m);

MUST_USE int handle_connect(struct broker *b, struct client *c, const struct mqtt_connect *p,
                            time_t now);
MUST_USE int handle_publish(struct broker *b, struct client *c, const struct mqtt_publish *p);
MUST_USE int handle_ack(struct broker *b, struct client *c, enum mqtt_type type, uint16_t id);
MUST_USE int handle_subscribe(struct broker *b, struct client *c, const struct mqtt_list *l);
MUST_USE int handle_unsubscribe(struct broker *b, struct client *c, const struct mqtt_list *l);

#endif
