/* The messages of a claim between nodes (presence.h): a request names a
 * client (tenant, ClientId) that connected on the sending node; a reply
 * names it again and may carry its session (journal.h records); both name
 * the node that sent them. Parsing is
 * pure and trusts no length. */
#ifndef CERTMQ_CLUSTER_CLAIMMSG_H
#define CERTMQ_CLUSTER_CLAIMMSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/err.h"

#define CLAIMMSG_VERSION  1
#define CLAIMMSG_NODE_MAX 159 /* bytes of a node_id (hostname-pid included) */

struct claimmsg {
    uint64_t id;                       /* the claim's number at the claiming node */
    bool take;                         /* request: hand the session over; reply: rec holds it */
    const uint8_t *tenant, *client_id; /* borrowed; not NUL-terminated */
    uint16_t tenant_len, client_id_len;
    const uint8_t *node; /* the sender's node_id; borrowed */
    uint16_t node_len;
    const uint8_t *rec; /* reply: the session's records; borrowed */
    size_t rec_len;
};

MUST_USE int claimmsg_write(struct buf *out, const struct claimmsg *m);
/* ERR_MALFORMED for a truncated message, another version, unknown flag
 * bits, a tenant over 63 bytes, an empty ClientId, an empty node or one
 * over CLAIMMSG_NODE_MAX, or a NUL in any (the static space's tenant is
 * empty). */
MUST_USE int claimmsg_parse(const uint8_t *d, size_t n, struct claimmsg *out);

#endif
