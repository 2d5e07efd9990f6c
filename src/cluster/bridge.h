/* Cross-node messaging over NATS. Every message routed on this node is
 * published once to NATS (subject from subject.h, envelope from
 * envelope.h); a node subscribes to the subjects of the filters its own
 * clients hold, so it receives only what they want, and hands what arrives
 * to the broker (broker_remote_publish), which matches it again in that
 * tenant's space alone. Shared subscriptions are NATS queue groups, so each
 * message goes to one node of the group and there to one member. */
#ifndef CERTMQ_CLUSTER_BRIDGE_H
#define CERTMQ_CLUSTER_BRIDGE_H

#include <stddef.h>

#include "broker/broker.h"
#include "core/err.h"

struct bridge_config {
    const char *servers;   /* "nats://host:port[,nats://...]" */
    const char *node_id;   /* the connection name NATS shows */
    long reconnect_buffer; /* bytes published while NATS is unreachable, kept */
    long max_pending;      /* messages received and not yet routed, per subscription */
    long reconnect_wait;   /* milliseconds between reconnection attempts */
};

struct bridge;

/* Connects (in the background when NATS is not up yet: the node starts
 * anyway and connects when it can). ERR_INVALID with the reason in err for
 * a bad server list. */
MUST_USE int bridge_new(const struct bridge_config *cfg, struct bridge **out, char *err,
                        size_t errlen);
/* What the broker calls (broker_config.cluster); valid until bridge_free. */
const struct broker_cluster *bridge_cluster(struct bridge *br);
/* Messages from NATS go to b from now on (before: dropped). */
void bridge_attach(struct bridge *br, struct broker *b);
/* No message reaches the broker any more once this returns; the broker's
 * calls still may come (and do nothing). Closes the NATS connections. */
void bridge_stop(struct bridge *br);
void bridge_free(struct bridge *br);

#endif
