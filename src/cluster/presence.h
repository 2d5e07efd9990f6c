/* Presence between nodes over NATS: one ClientId, one connection,
 * cluster-wide. Every node sends a heartbeat, so each knows which others
 * are alive. A CONNECT claims its client (tenant, ClientId) from the other
 * nodes: a node holding a connection of it closes it (0x8E in 5.0), and a
 * node holding its continuing session hands it over in the reply; the
 * CONNECT is answered once every live node replied, one handed the
 * session over, or cluster_claim_timeout passed; a session none handed
 * over may still be taken from the store of a node that died. One thread here does the
 * broker's side of claims and the heartbeats; no libnats thread waits for
 * the broker lock. */
#ifndef CERTMQ_CLUSTER_PRESENCE_H
#define CERTMQ_CLUSTER_PRESENCE_H

#include "broker/broker.h"
#include "cluster/bridge.h"
#include "core/err.h"

struct presence_config {
    const char *node_id;
    long heartbeat_ms;     /* between heartbeats; a node silent for 3 is gone */
    long claim_timeout_ms; /* a CONNECT waits at most this long for the others */
    /* A session no live node handed over is looked for in the stores of
     * nodes that are gone (sstore_take), never of one in live (the names
     * heard lately, NULL-terminated): 1 and its records appended to out
     * when found. Called on this module's thread. NULL: not looked for. */
    int (*take_stored)(void *arg, const char *key, size_t klen, const char *const *live,
                       struct buf *out);
    void *take_arg;
};

struct presence;

/* Subscribes on the bridge's connection and makes the broker's claim
 * calls go here (bridge_set_claims): before the broker is made. */
MUST_USE int presence_new(const struct presence_config *cfg, struct bridge *br,
                          struct presence **out);
/* Claims are served for b from now on (the thread starts). */
MUST_USE int presence_attach(struct presence *p, struct broker *b);
/* Stops the thread; the subscriptions go with the bridge's connection. */
void presence_free(struct presence *p);

#endif
