/* Broker internals shared by broker.c and the packet handlers
 * (handle_*.c). Not an interface: nothing outside src/broker includes it.
 * Every function here expects the lock of the space it works in (the
 * session's, the client's) to be held unless it says. */
#ifndef CERTMQ_BROKER_INTERNAL_H
#define CERTMQ_BROKER_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>

#include "identity/acl.h"
#include "broker/broker.h"
#include "broker/topic.h"
#include "core/map.h"
#include "identity/auth.h"
#include "store/sessions.h"

/* A published message, shared by every queue it sits in. */
struct msg {
    unsigned refs;
    uint8_t qos;
    bool retain;
    uint16_t topic_len;
    uint32_t props_len;    /* 5.0 properties passed on as they came (encoded) */
    time_t expire_at;      /* Message Expiry: not delivered from then on; 0: never */
    uint64_t pid;          /* its id in the session store; 0: not stored */
    unsigned durable_refs; /* stored items that hold it */
    size_t payload_len;
    char data[]; /* topic, payload, properties */
};

enum qstate { Q_QUEUED, Q_WAIT_PUBACK, Q_WAIT_PUBREC, Q_WAIT_PUBCOMP };

struct qitem {
    struct qitem *next;
    struct msg *msg;
    uint16_t packet_id;
    uint8_t qos;
    uint8_t state;   /* enum qstate */
    bool retain;     /* the RETAIN flag it goes out with */
    bool maybe_sent; /* restored: it may have gone out before the stop (DUP) */
    bool held;       /* in flight from an earlier connection and not resent yet:
                        beyond the client's Receive Maximum (broker_resend_inflight) */
    uint64_t seq;    /* its id in the session store; 0: not stored */
    uint64_t jseq;   /* goes out only once this many journal records are committed */
    uint16_t n_ids;
    uint32_t sub_ids[]; /* 5.0 subscription identifiers of the matching filters */
};

/* How one message reaches one session: what session_enqueue needs. */
struct delivery {
    uint8_t qos;
    bool retain;
    uint16_t n_ids;
    const uint32_t *sub_ids;
};

struct qlist {
    struct qitem *head, *tail;
    unsigned count;
};

struct share;

struct sub {
    char *filter; /* as routed (without $share/{group}/) */
    uint16_t len;
    uint8_t qos;
    uint8_t opts;        /* 5.0 options: MQTT_SUB_NO_LOCAL, MQTT_SUB_RETAIN_AS_PUB */
    uint32_t id;         /* 5.0 subscription identifier; 0: none */
    uint32_t cost;       /* counted against max_subscription_bytes */
    struct share *share; /* a shared subscription's group; NULL: not shared */
};

/* A tenant's topic space: its sessions, subscriptions, retained messages
 * and queues, under a lock of its own. A session, its client and every
 * message routed to it belong to one space, so tenants never wait for each
 * other; the spaces map itself has a small lock (broker.spaces_lock), and
 * a space, once made, lives as long as the broker. */
struct space {
    pthread_mutex_t lock; /* taken through space_lock() */
    char *tenant;
    struct topic_tree *tree;
    struct map shares;   /* "group\x01filter" -> struct share */
    struct map sessions; /* session key -> struct session */
    /* topic digest (store_retained_digest) -> its retained struct msg, the
     * tree's reference; kept only with cfg.retain_digests (retained.c) */
    struct map retained;
    struct broker_stats stats; /* this space's counters; summed by broker_stats */
    /* routing scratch */
    uint64_t gen;
    struct session **hits;
    size_t n_hits, cap_hits;
    bool skip_shares; /* shared subscriptions take the cluster's copy */
    /* persistence (persist.c): this space's journal, committed by the
     * committer with every other space's in one transaction */
    struct buf journal;    /* records not yet committed */
    uint64_t jseq;         /* records appended since start */
    uint64_t durable_seq;  /* of them, committed */
    bool dirty;            /* on the committer's list (broker.dirty) */
    struct client **await; /* clients to wake after the next commit */
    size_t n_await, cap_await;
};

struct session {
    char *key; /* tenant \x01 client id: the sessions map key */
    char *client_id;
    struct space *space;
    struct client *client; /* NULL while offline */
    uint32_t expiry;       /* seconds it outlives its connection; SESSION_FOREVER */
    bool durable;          /* kept in the session store (persist.c) */
    bool expiry_was_zero;  /* 5.0: a DISCONNECT may not raise it from 0 */
    bool sub_detail;       /* a subscription has 5.0 options or an identifier */
    uint32_t will_delay;   /* 5.0 Will Delay Interval of the will */
    uint32_t will_expiry;  /* 5.0 Message Expiry Interval of the will; 0: none */
    time_t will_at;        /* a delayed will goes out then; 0: none pending */
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
    bool held_inflight;      /* some in-flight items are held (qitem.held) */
    uint64_t match_gen;      /* routing: last publish that matched this session */
    uint8_t match_qos;
    uint64_t share_gen; /* routing: last publish a shared subscription gave it */
    uint8_t share_qos;
    uint32_t share_id;
};

#define SESSION_FOREVER UINT32_MAX

/* A 5.0 will's timing, from its properties. */
struct session_will {
    uint32_t delay, expiry;
};

struct broker {
    struct broker_config cfg;
    pthread_mutex_t spaces_lock; /* the map only; never held while taking a space's */
    struct map spaces;           /* tenant -> struct space */
    /* Contention of the spaces' locks, kept outside them: takings that
     * found one held, and the nanoseconds they waited (see space_lock). */
    atomic_uint_least64_t lock_waits, lock_wait_ns;
    /* persistence (persist.c): sstore NULL when off */
    struct sstore *sstore;
    atomic_uint_least64_t next_msg_pid, next_item_seq;
    atomic_bool persist_broken; /* the last commit failed: QoS 1/2 publishes are refused */
    bool restoring;             /* reading the store back at start: nothing is journaled */
    pthread_mutex_t dirty_lock; /* taken inside a space's lock, never the other way */
    struct space **dirty;       /* spaces with records to commit */
    size_t n_dirty, cap_dirty;
    long commit_ms;
    pthread_t committer;
    bool committer_running;
    atomic_bool persist_stop;
};

/* Takes a space's lock. A taking that finds it free costs what
 * pthread_mutex_lock would; one that finds it held is counted with the time
 * it waited (two clock reads), for certmq_broker_lock_wait* in /metrics. The
 * clock is read here, not passed in: it measures the lock, not the broker. */
static inline void space_lock(struct broker *b, struct space *sp)
{
    if (pthread_mutex_trylock(&sp->lock) == 0) return;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pthread_mutex_lock(&sp->lock);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    uint64_t ns = (uint64_t)(t1.tv_sec - t0.tv_sec) * 1000000000u + (uint64_t)t1.tv_nsec -
                  (uint64_t)t0.tv_nsec;
    atomic_fetch_add_explicit(&b->lock_waits, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&b->lock_wait_ns, ns, memory_order_relaxed);
}

static inline void space_unlock(struct space *sp)
{
    pthread_mutex_unlock(&sp->lock);
}

/* The sessions map key of (tenant, ClientId): "tenant \x01 ClientId". */
#define SESSION_KEY_MAX (64 + 1 + 65535 + 1)
static inline int session_key(char *out, size_t cap, const char *tenant, const char *client_id)
{
    return snprintf(out, cap, "%s\x01%s", tenant, client_id);
}

/* props: 5.0 properties to pass on, encoded (props_len 0: none). */
struct msg *msg_new(const uint8_t *topic, size_t tlen, const uint8_t *payload, size_t plen,
                    uint8_t qos, bool retain, const uint8_t *props, size_t props_len);
static inline const uint8_t *msg_props(const struct msg *m)
{
    return (const uint8_t *)m->data + m->topic_len + m->payload_len;
}
void msg_unref(struct msg *m);
static inline const uint8_t *msg_payload(const struct msg *m)
{
    return (const uint8_t *)m->data + m->topic_len;
}

/* The space of tenant, made when missing (NULL: out of memory); not
 * locked. space_find: NULL when missing. Either may be called with a
 * space's lock held. */
struct space *space_get(struct broker *b, const char *tenant);
struct space *space_find(struct broker *b, const char *tenant);
/* The space named by a session key's tenant part, or NULL. */
struct space *space_of_key(struct broker *b, const char *key, size_t klen);
/* Calls fn for every space, with its lock held. */
void spaces_each(struct broker *b, void (*fn)(struct broker *b, struct space *sp, void *arg),
                 void *arg);
/* Sets the retained copy of topic in sp to m (a reference of its own is
 * taken; NULL clears it), keeping the count and the digest index. */
void space_retain_set(struct broker *b, struct space *sp, const char *topic, size_t tlen,
                      struct msg *m);
void session_free(struct broker *b, struct session *s);
/* Adds sp's counters (and its session count) to sum: every field of
 * struct broker_stats is a uint64_t counter. */
void stats_add(struct broker_stats *sum, const struct space *sp);

/* Routes m to every session of space subscribed to its topic, and stores
 * or clears the retained copy. from is the publishing session (No Local),
 * NULL for the broker's own messages and wills. Returns how many sessions
 * it was queued for, or a negative code. */
MUST_USE int broker_publish(struct broker *b, struct space *sp, struct msg *m,
                            const struct session *from);
/* Queues m for s (drops QoS 0 when offline, and expired messages; counts
 * drops). */
void session_enqueue(struct broker *b, struct session *s, struct msg *m, const struct delivery *d);
/* The session ends now: its will goes out (delayed or not), then it is freed. */
void session_end(struct broker *b, struct session *s);
/* Publishes s's will now and forgets it. */
void session_will_fire(struct broker *b, struct session *s);
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

/* Removes subscription sub of s from the tree (or its share group) and
 * from s's list. */
void session_del_sub(struct broker *b, struct session *s, struct sub *sub);

/* Closes s's connection: another connection takes the session over (0x8E
 * in 5.0). Its will goes out, unless it is a delayed one and
 * keep_delayed_will (the session continues). */
void session_kick(struct broker *b, struct session *s, bool keep_delayed_will);
/* Creates a session in sp (map key key) without a client. */
struct session *session_new(struct broker *b, struct space *sp, const char *key, size_t klen,
                            const char *client_id);
/* Puts back a stored subscription (no retained messages, no journal). */
MUST_USE int session_restore_sub(struct broker *b, struct session *s, const char *filter,
                                 size_t flen, const char *group, size_t glen, uint8_t qos,
                                 uint8_t opts, uint32_t id);
/* Remembers an incoming QoS 2 id awaiting PUBREL (no journal). */
MUST_USE int session_rx_add(struct broker *b, struct session *s, uint16_t id);

/* ---- durable sessions (persist.c, restore.c) ---- */
/* Journal records for a durable session's changes (nothing when it is not). */
void persist_session(struct broker *b, struct session *s);
void persist_session_del(struct broker *b, struct session *s);
void persist_sub(struct broker *b, struct session *s, const struct sub *sub, bool del);
/* A QoS 1/2 item queued for a durable session: stored, with its message. */
void persist_item_put(struct broker *b, struct session *s, struct qitem *it);
void persist_item_upd(struct broker *b, struct space *sp, const struct qitem *it);
void persist_rx(struct broker *b, struct session *s, uint16_t id, bool del);
/* s as the records that rebuild it (journal.h): the session, its
 * subscriptions, its QoS 1/2 items each with its message, its incoming
 * QoS 2 ids. */
MUST_USE int persist_snapshot(const struct session *s, struct buf *out);
/* Builds the session key (tenant \x01 ClientId) from such records (its
 * space's lock held), journaled here as new; ERR_MALFORMED for bad records or
 * records of another session. */
MUST_USE int broker_import(struct broker *b, const char *key, size_t klen, const uint8_t *rec,
                           size_t len, time_t now);

/* What a CONNECT waiting for the cluster keeps (client.claimed). */
struct claim {
    struct auth_result who; /* decided before the wait */
    char *key;              /* its session's */
    size_t klen;
    uint8_t *rec; /* the session handed over (journal records); NULL: none */
    size_t len;
};
/* Puts a handed-over session that nothing took here (offline) and frees
 * c->claimed. */
void claim_end(struct broker *b, struct client *c);
/* An item is done with (acknowledged, expired, dropped): out of the store
 * and freed. item_forget: its session's deletion removes it from the store. */
void item_done(struct broker *b, struct space *sp, struct qitem *it);
void item_forget(struct broker *b, struct space *sp, struct qitem *it);
/* Acknowledgements held until the records journaled so far are committed. */
MUST_USE int persist_defer_ack(struct broker *b, struct client *c, enum mqtt_type type, uint16_t id,
                               uint8_t reason);
bool persist_acks_pending(const struct client *c);
/* A SUBACK held until its subscriptions are committed (rcs copied); while
 * one is held the client's queue waits too, so that retained messages
 * still follow their SUBACK. */
MUST_USE int persist_defer_suback(struct broker *b, struct client *c, uint16_t id,
                                  const uint8_t *rcs, uint16_t n);
bool persist_suback_pending(const struct client *c);
/* Writes the held acknowledgements that are now committed (owner thread). */
MUST_USE int persist_release_acks(struct broker *b, struct client *c);
/* c is woken after the next commit of its space's records. */
void persist_await(struct broker *b, struct client *c);
void persist_client_gone(struct broker *b, struct client *c);

/* Tells the cluster (if any) that a subscription entered or left sp's tree. */
void broker_interest(struct broker *b, const struct space *sp, const char *filter, size_t flen,
                     const char *group, bool add);

/* ---- shared subscriptions (share.c) ---- */
/* Adds s to the group of $share/{group}/{filter} (filter as routed).
 * Returns 1 when s is the group's first member, 0 when not. */
MUST_USE int share_join(struct space *sp, const char *group, size_t glen, const char *filter,
                        size_t flen, struct session *s, const struct sub *sub, struct share **out);
/* Returns true when s was the group's last member (the group is gone). */
bool share_leave(struct space *sp, struct share *sh, struct session *s);
/* Queues m for one member of $share/{group}/{filter} when that group
 * exists and its filter matches (a message from the cluster). Returns 1
 * when queued. */
int share_deliver(struct broker *b, struct space *sp, const char *group, const char *filter,
                  size_t flen, struct msg *m);
/* Is sh the group named group (its filter is compared by the caller)? */
bool share_named(const struct share *sh, const char *group, size_t glen);
/* The group's name (NUL-terminated). */
const char *share_group(const struct share *sh);
/* A tree subscriber that is a share group, not a session? */
static inline bool share_is(const void *subscriber)
{
    return (uintptr_t)subscriber & 1;
}
/* The member a message goes to (round robin, connected ones first). Sets
 * its qos and subscription id. */
struct session *share_pick(const void *subscriber, uint8_t *qos, uint32_t *id);
void share_free_all(struct space *sp);

/* ---- MQTT 5.0 per-connection state (alias.c) ---- */
/* Topic aliases the client set (in) and the broker set (out). */
struct alias_slot {
    char *topic;
    uint16_t len;
};
struct aliases {
    uint16_t in_max, out_max, out_used;
    size_t in_bytes, in_budget;
    struct alias_slot *in, *out;
};
MUST_USE int alias_init(struct client *c, uint16_t in_max, uint16_t out_max, size_t in_budget);
void alias_free(struct client *c);
/* Resolves a PUBLISH's topic and alias: sets *topic. ERR_PROTO when the
 * alias is unknown or beyond the maximum (reason 0x94 set on c). */
MUST_USE int alias_in(struct client *c, uint16_t alias, struct mqtt_bytes *topic);
/* Does the client take aliases from the broker? */
static inline bool alias_out_enabled(const struct client *c)
{
    return c->aliases && c->aliases->out_max;
}
/* The alias to send topic with: returns it (0: none) and whether the topic
 * must still be sent (*send_topic: the alias is new). */
uint16_t alias_out(struct client *c, const char *topic, size_t len, bool *send_topic);

MUST_USE int handle_connect(struct broker *b, struct client *c, const struct mqtt_packet *p,
                            time_t now);
MUST_USE int handle_publish(struct broker *b, struct client *c, const struct mqtt_packet *p);
/* reason: a 5.0 ack's reason code (0 in 3.1.1). */
MUST_USE int handle_ack(struct broker *b, struct client *c, enum mqtt_type type, uint16_t id,
                        uint8_t reason);
MUST_USE int handle_subscribe(struct broker *b, struct client *c, const struct mqtt_packet *p);
MUST_USE int handle_unsubscribe(struct broker *b, struct client *c, const struct mqtt_packet *p);

#endif
