/* Cross-node messaging over NATS. Every message routed on this node is
 * published once to NATS (subject from subject.h, envelope from
 * envelope.h); a node subscribes to the subjects of the filters its own
 * clients hold, so it receives only what they want, and hands what arrives
 * to a worker through a queue, which routes it (broker_remote_publish):
 * matched again in that tenant's space alone. Shared subscriptions are NATS queue groups, so each
 * message goes to one node of the group and there to one member. */
#ifndef CERTMQ_CLUSTER_BRIDGE_H
#define CERTMQ_CLUSTER_BRIDGE_H

#include <stddef.h>

#include <nats/nats.h>

#include "broker/broker.h"
#include "core/err.h"

struct bridge_config {
    const char *servers;   /* "nats://host:port[,nats://...]" */
    const char *node_id;   /* the connection name NATS shows */
    long reconnect_buffer; /* bytes published while NATS is unreachable, kept */
    long max_pending;      /* messages waiting: to be sent, and received and not yet
                              routed (per subscription and in the queue to the workers) */
    long reconnect_wait;   /* milliseconds between reconnection attempts */
    long max_subject;      /* bytes of the longest subject sent (below the servers'
                              max_control_line): longer topics stay on their node */
};

struct bridge;

/* Connects (in the background when NATS is not up yet: the node starts
 * anyway and connects when it can). ERR_INVALID with the reason in err for
 * a bad server list. */
MUST_USE int bridge_new(const struct bridge_config *cfg, struct bridge **out, char *err,
                        size_t errlen);
/* What the broker calls (broker_config.cluster); valid until bridge_free. */
const struct broker_cluster *bridge_cluster(struct bridge *br);
/* The broker's claim calls (struct broker_cluster) go to these; set
 * before the broker is made. */
void bridge_set_claims(struct bridge *br,
                       int (*claim)(void *arg, struct client *c, const char *tenant,
                                    const char *client_id, bool take),
                       void (*cancel)(void *arg, struct client *c), void *arg);
/* The connection that publishes, without echo (a node does not hear what
 * it sends): for the other cluster modules. */
natsConnection *bridge_nats(struct bridge *br);
/* Messages from NATS go to b from now on (before: dropped). */
void bridge_attach(struct bridge *br, struct broker *b);
/* Messages from NATS wait in a queue for a worker: notify(arg) is called
 * (from a libnats thread, and at once if messages wait) when the queue
 * turns non-empty; the worker then calls bridge_route. */
void bridge_set_notify(struct bridge *br, void (*notify)(void *arg), void *arg);
/* Routes the queued messages (broker_remote_publish). A worker thread. */
void bridge_route(struct bridge *br);
/* Nothing is queued and notify is not called any more once this returns;
 * the broker's calls still may come (and do nothing). Closes the NATS
 * connections. Call it before the notify target goes. */
void bridge_stop(struct bridge *br);
void bridge_free(struct bridge *br);

#endif
