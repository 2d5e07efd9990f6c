/* The broker: sessions, subscriptions, routing, retained messages, wills
 * and the QoS flows. Its state is kept per tenant space (a tenant's
 * sessions, topic tree, retained messages and queues), each space behind a
 * mutex of its own, "the broker lock" below: a worker holds its client's
 * tenant's lock only while it handles one packet or drains one client's
 * queue, and devices of different tenants never wait for each other.
 *
 * The network layer owns connections and embeds a struct client in each.
 * Only the owning worker thread touches client->out; other threads deliver by
 * queueing on the client's session and calling the wake callback, after which
 * the owner calls broker_drain(). */
#ifndef CERTMQ_BROKER_H
#define CERTMQ_BROKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include <openssl/x509.h>

#include "core/buf.h"
#include "core/err.h"
#include "mqtt/codec.h"

struct acl_matcher;
struct auth;
struct auth_result;
struct broker;
struct session;
struct sstore;

enum client_state { CLIENT_NEW, CLIENT_ACTIVE, CLIENT_GONE };

struct client {
    struct buf out;          /* encoded packets for the peer; owner thread only */
    struct session *session; /* under its space's lock */
    struct space *space;     /* its tenant's space, set once at CONNECT: its lock is
                                the broker lock for this client */
    void *owner;             /* the worker, passed back to the wake callback */
    X509 *leaf;              /* peer certificate (owned by the TLS layer); NULL once
                                CONNECT is decided and the TLS session released */
    STACK_OF(X509) * chain;  /* certificates after the leaf (owned by TLS) */
    X509_STORE *listener_ca; /* the listener's static client CAs, or NULL */
    uint16_t keepalive;      /* seconds, from CONNECT */
    uint8_t state;           /* enum client_state */
    bool kicked;             /* under the broker lock: close without will */
    bool dirty;              /* under the owner's lock: on its drain list */
    bool chain_proven;       /* in: a resumed TLS session already proved the anchor was in
                                the chain; out: this CONNECT's chain did */
    char peer[56];           /* "address:port" for log lines */
    int pw_verdict;          /* a password check made before CONNECT reached the broker
                                (auth_request.pw_verdict); 0: none */
    unsigned pw_roles;
    /* For the live view (broker_connections): set by the network layer
     * before CONNECT reaches the broker, read under the broker lock. */
    int64_t since;           /* accept time, Unix seconds */
    const char *tls_version; /* static text; NULL: plain TCP */
    const char *cipher;      /* static text; NULL: plain TCP */
    bool resumed;            /* the TLS session was resumed (no full handshake) */
    int64_t not_after;       /* the peer certificate's notAfter; 0: none */
    uint8_t protocol_level;  /* from CONNECT (set by the broker) */
    /* MQTT 5.0, set by the broker at CONNECT, under its lock. */
    uint8_t close_reason;    /* the DISCONNECT reason sent before the broker closes */
    bool problem_info;       /* Request Problem Information: reason strings wanted */
    bool will_on_disconnect; /* DISCONNECT 0x04: publish the will all the same */
    bool said_goodbye;       /* a DISCONNECT went into out: the network layer lingers */
    uint16_t inflight_max;   /* max_inflight, or the client's Receive Maximum if lower */
    uint32_t max_packet_out; /* the client's Maximum Packet Size; 0: no limit */
    struct aliases *aliases; /* topic aliases both ways; NULL: none */
    struct ackq *acks;       /* acknowledgements waiting for a commit (persist.c) */
    bool awaiting;           /* on the broker's list to wake after a commit */
    /* A CONNECT that waits for the other nodes of a cluster
     * (broker_cluster.claim); what it keeps meanwhile is the broker's. */
    _Atomic uint8_t claim; /* enum client_claim */
    struct claim *claimed;
};

enum client_claim { CLAIM_NONE, CLAIM_WAITING, CLAIM_DONE };

/* The client speaks MQTT 5.0. */
static inline bool client_v5(const struct client *c)
{
    return c->protocol_level == MQTT_V5;
}

/* Cross-node messaging (cluster/bridge.c). Both calls come with the broker
 * lock held and must not call into the broker. */
struct broker_cluster {
    /* A message routed here goes to the other nodes too: topic as routed,
     * props the 5.0 properties that travel (encoded), expiry the seconds
     * of Message Expiry left (0: none). */
    void (*publish)(void *arg, const char *tenant, const char *topic, size_t tlen,
                    const uint8_t *payload, size_t plen, const uint8_t *props, size_t props_len,
                    uint8_t qos, bool retain, uint32_t expiry);
    /* A subscription to filter entered (add) or left the tenant's tree:
     * one call per session subscription; group names a shared
     * subscription's group (NULL: not shared), whose call comes once for
     * the group's first and last member here. */
    void (*interest)(void *arg, const char *tenant, const char *filter, size_t flen,
                     const char *group, bool add);
    void *arg;
    /* Before c's CONNECT is answered, without the broker lock: the other
     * nodes close their connection of (tenant, client_id) and, when take
     * is set, hand over the session they hold. Returns 1 when the answer
     * comes later (broker_claim_answered), 0 when there is nothing to wait
     * for. NULL: no claims. */
    int (*claim)(void *arg, struct client *c, const char *tenant, const char *client_id, bool take);
    /* c goes before its claim was answered; nothing touches c after this
     * returns. */
    void (*claim_cancel)(void *arg, struct client *c);
    void *claim_arg;
};

struct broker_config {
    long max_inflight;
    long max_queued;
    long max_topic_levels;       /* deeper names are dropped, deeper filters refused */
    long max_subscriptions;      /* per session */
    long max_subscription_bytes; /* per session: filters and the tree nodes they make */
    long session_expiry;         /* seconds a 3.1.1 persistent session outlives its
                                    connection; 0: forever */
    long max_session_expiry;     /* cap on a 5.0 Session Expiry Interval; 0: none */
    long max_keepalive;
    long max_topic_alias;      /* 5.0 Topic Alias Maximum, both ways */
    long max_receive;          /* 5.0 Receive Maximum the broker announces */
    long max_message_expiry;   /* cap on a Message Expiry Interval, s; 0: none */
    long max_packet_size;      /* announced as the 5.0 Maximum Packet Size */
    bool shared_subscriptions; /* $share/{group}/{filter} allowed */
    bool allow_anonymous;
    struct auth *auth;
    /* Asks the owner of c to call broker_drain(c) soon. Called with the
     * broker lock held, from any thread. */
    void (*wake)(struct client *c);
    /* Issues (or reissues) the device token of cn in tenant: writes a JWT
     * the caller frees into *jwt. NULL: tokens are not available. Called
     * without the broker lock. */
    int (*issue_token)(void *arg, const char *tenant, const char *cn, time_t now, char **jwt);
    void *token_arg;
    /* Renews the certificate of device cn in tenant from the CSR it
     * published on s/ucr (bytes borrowed): 0 and *out the certificate chain
     * (PEM) for its s/dcr, or negative and *out the "<code>,0,<reason>" line
     * for its s/e; *out is the caller's (free). NULL: s/ucr answers an
     * error. Called without the broker lock. */
    int (*renew_cert)(void *arg, const char *tenant, const char *cn, const uint8_t *csr, size_t len,
                      time_t now, char **out);
    void *renew_arg;
    /* The notice for a certificate device whose certificate (valid to
     * not_after) is within its tenant's renewal window, or NULL (the
     * caller frees it). Asked once per connection, when the device first
     * publishes on s/us, s/uat or s/ucr; the notice goes to its s/ds.
     * NULL: no notices. Called without the broker lock. */
    char *(*renew_notice)(void *arg, const char *tenant, const char *cn, int64_t not_after,
                          time_t now);
    /* Keeps a retained message (plen 0: its removal) beyond a restart.
     * Called with the broker lock held. NULL: retained messages live in
     * memory only. */
    void (*on_retain)(void *arg, const char *tenant, const char *topic, size_t tlen,
                      const uint8_t *payload, size_t plen, uint8_t qos);
    void *retain_arg;
    /* Retained topics are also indexed by their digest, so that
     * broker_retained_clear_digest finds them (a store shared by nodes). */
    bool retain_digests;
    /* Compiles the topic authorization rules that apply to a client into
     * *out (NULL: everything allowed). Called at CONNECT without the broker
     * lock, and by broker_acl_refresh with it. NULL: no authorization. */
    int (*acl_compile)(void *arg, const struct auth_result *who, const char *client_id,
                       struct acl_matcher **out);
    void *acl_arg;
    /* NULL: a single node. With it, shared subscriptions take their
     * messages from the cluster only (broker_remote_publish with a group),
     * so that each goes to one member cluster-wide. */
    const struct broker_cluster *cluster;
};

MUST_USE int broker_new(const struct broker_config *cfg, struct broker **out);
void broker_free(struct broker *b);

/* The peer's address without its port (what failure limits count by). */
void broker_client_source(const struct client *c, char *out, size_t cap);

/* Handles one parsed packet from c. A negative return means the connection
 * must be closed (protocol violation or refused CONNECT, whose CONNACK is
 * already in c->out). */
MUST_USE int broker_handle(struct broker *b, struct client *c, const struct mqtt_packet *p,
                           time_t now);

/* Moves queued messages into c->out within the inflight and buffer limits.
 * Returns ERR_CLOSED when c was kicked and must be closed (a 5.0 client's
 * DISCONNECT with the reason is then in c->out). */
MUST_USE int broker_drain(struct broker *b, struct client *c);

/* The connection is gone: detaches c from its session, publishes the will
 * when abnormal, and ends a clean session. c may be freed afterwards. */
void broker_close(struct broker *b, struct client *c, bool abnormal);

/* Closes every connected client whose identity pred accepts (called with
 * the broker lock held; pred must not call into the broker). Returns how
 * many were kicked. */
int broker_kick_where(struct broker *b, bool (*pred)(const struct auth_result *who, void *arg),
                      void *arg);
/* Closes every client admitted through the given trust anchor (hex SHA-1)
 * of a tenant. Returns how many were kicked. */
int broker_kick_anchor(struct broker *b, const char *tenant, const char *anchor_fp);

/* The rules changed: recompiles the matchers of the connected and offline
 * sessions of a tenant ("" is the static space) and drops subscriptions
 * they no longer allow. Returns how many subscriptions were dropped. */
int broker_acl_refresh(struct broker *b, const char *tenant);

/* ---- one ClientId, one connection, cluster-wide (move.c) ---- */
/* Another node claims (tenant, client_id): its connection here is closed
 * (0x8E in 5.0) and, when take is set and it outlives its connection, the
 * session is written to out as journal records (at most max bytes) and
 * ends here. Returns 1 when it was written, 0 when there was none to hand
 * over, ERR_TOO_LARGE when it is kept here (more than max bytes). */
MUST_USE int broker_release(struct broker *b, const char *tenant, const char *client_id, bool take,
                            size_t max, struct buf *out);
/* Puts a session of (tenant, client_id) handed over by another node
 * (records from broker_release) here, offline: the claim it answers is
 * gone. ERR_MALFORMED for records that are not all of that session. */
MUST_USE int broker_adopt(struct broker *b, const char *tenant, const char *client_id,
                          const uint8_t *rec, size_t len);
/* The claim of c is answered, with the session handed over (rec, taken;
 * NULL: none): its CONNECT goes on (the owner is woken). */
void broker_claim_answered(struct broker *b, struct client *c, uint8_t *rec, size_t len);

/* A message from another node (see struct broker_cluster). */
struct broker_remote {
    const char *tenant;
    const char *topic;
    size_t tlen;
    const uint8_t *payload;
    size_t plen;
    const uint8_t *props; /* 5.0 properties, encoded and checked */
    size_t props_len;
    uint8_t qos;
    bool retain;
    uint32_t expiry; /* seconds of Message Expiry left; 0: none */
    /* NULL: for the tenant's subscriptions that are not shared; else for
     * the shared subscription $share/{group}/{filter} alone. */
    const char *group;
    const char *filter;
    size_t flen;
};
/* Routes a message from another node in its tenant's space (any thread;
 * takes the broker lock): matched again by the topic tree, queued with
 * min(message, subscription) QoS, never stored as retained and never
 * published to the cluster again. Returns how many sessions it was queued
 * for, or a negative code. */
MUST_USE int broker_remote_publish(struct broker *b, const struct broker_remote *r);

/* Puts back a retained message kept by on_retain (at start, before clients). */
MUST_USE int broker_restore_retained(struct broker *b, const char *tenant, const char *topic,
                                     size_t tlen, const uint8_t *payload, size_t plen, uint8_t qos);

/* Retained messages another node stored (cluster/changes.c). Any thread;
 * each takes the broker lock. Only what future subscribers receive
 * changes: nothing is routed to live subscribers, nothing goes to
 * on_retain or to the cluster again. */
/* Sets (plen > 0) or clears (plen 0) the retained message of (tenant,
 * topic). One equal to the message held (payload and QoS) leaves it as it
 * is, so a node's own write coming back changes nothing. */
MUST_USE int broker_retained_put(struct broker *b, const char *tenant, const char *topic,
                                 size_t tlen, const uint8_t *payload, size_t plen, uint8_t qos);
/* Clears the retained message of tenant whose topic has this digest
 * (store_retained_digest): 0 also when there is none. ERR_INVALID without
 * cfg.retain_digests. */
MUST_USE int broker_retained_clear_digest(struct broker *b, const char *tenant, const char *digest);
/* Clears every retained message whose (tenant, digest) keep refuses (keep
 * runs under the broker lock and must not call into the broker): what a
 * node missed while it heard no notices. ERR_INVALID without
 * cfg.retain_digests. */
MUST_USE int broker_retained_sweep(struct broker *b,
                                   bool (*keep)(void *arg, const char *tenant, const char *digest),
                                   void *arg);

/* Writes a 5.0 client's DISCONNECT with reason before the network layer
 * closes it (nothing for 3.1.1). */
void broker_say_goodbye(struct client *c, uint8_t reason);
/* The reason a 5.0 client is told when a handler's error code closes it. */
uint8_t broker_close_reason(const struct client *c, int rc);

/* Durable sessions. broker_persist_load reads the session store back (at
 * start, before any client); broker_persist_start then journals every
 * change of a session with an expiry and commits it every commit_ms
 * milliseconds; broker_persist_stop commits the rest and stops (after the
 * network layer closed every client). st stays the caller's. */
MUST_USE int broker_persist_load(struct broker *b, struct sstore *st, time_t now);
MUST_USE int broker_persist_start(struct broker *b, struct sstore *st, long commit_ms);
void broker_persist_stop(struct broker *b);

/* Frees sessions past their expiry interval and publishes delayed wills
 * that are due. Any thread; takes the broker lock. Returns how many
 * sessions went. */
int broker_expire_sessions(struct broker *b, time_t now);

struct broker_stats {
    uint64_t clients;
    uint64_t sessions;
    uint64_t retained;
    uint64_t msgs_in;
    uint64_t msgs_out;
    uint64_t msgs_dropped;
    uint64_t msgs_expired;   /* Message Expiry passed before delivery */
    uint64_t msgs_too_large; /* larger than the client's Maximum Packet Size */
    uint64_t msgs_in_qos[3]; /* PUBLISH routed (wills included), by QoS */
    uint64_t bytes_in_qos[3];
    uint64_t msgs_out_qos[3]; /* PUBLISH written to clients, by QoS */
    uint64_t bytes_out_qos[3];
    /* topic authorization: PUBLISHes dropped, SUBSCRIBE filters refused,
     * deliveries withheld (a subscription allowed for some topics only) */
    uint64_t acl_denied_publish, acl_denied_subscribe, acl_denied_delivery;
    /* the spaces' locks: takings that had to wait, and the time they waited */
    uint64_t lock_waits, lock_wait_ns;
};
void broker_stats(struct broker *b, struct broker_stats *st);

/* ---- the live view (live.c): copies taken in one pass under the lock ---- */

#define BROKER_CLIENT_ID_SHOWN 256 /* longer ClientIds are shown truncated */

/* One connected client as the operator sees it. */
struct broker_conn {
    char client_id[BROKER_CLIENT_ID_SHOWN + 1];
    char identity[128];
    char anchor_fp[41];
    char serial[48]; /* device certificate serial (hex), "" when none */
    char remote[56];
    char tls_version[16]; /* "" for plain TCP */
    char cipher[64];
    int64_t since;
    int64_t not_after; /* 0: no certificate */
    uint8_t kind;      /* enum auth_kind */
    uint8_t protocol_level;
    bool resumed;
};

/* The connected clients of tenant ("" is the static/anonymous space),
 * sorted by ClientId: *out (free()) holds *n entries. */
MUST_USE int broker_connections(struct broker *b, const char *tenant, struct broker_conn **out,
                                size_t *n);
/* Closes the connection of (tenant, client_id), without its will. 0 when one
 * was closed, ERR_NOT_FOUND when that client is not connected. */
MUST_USE int broker_disconnect(struct broker *b, const char *tenant, const char *client_id);

/* Connected clients counted by tenant and kind. */
struct broker_count {
    char tenant[64];
    uint8_t kind; /* enum auth_kind */
    uint64_t n;
};
/* *out (free()) holds *n counts, sorted by tenant then kind; st (may be
 * NULL) gets broker_stats() taken under the same hold of the lock. */
MUST_USE int broker_client_counts(struct broker *b, struct broker_count **out, size_t *n,
                                  struct broker_stats *st);
/* Writes the broker's metric families in the Prometheus text format. */
MUST_USE int broker_metrics_write(struct broker *b, FILE *out);

#endif
