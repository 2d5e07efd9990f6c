/* The PROXY protocol version 2 header a load balancer (HAProxy's
 * `send-proxy-v2`) puts in front of a connection it passes on: the client's
 * real address. Pure parsing of bytes, no I/O; the server reads the header
 * before the TLS handshake on listeners with `proxy_protocol true`. */
#ifndef CERTMQ_NET_PROXYPROTO_H
#define CERTMQ_NET_PROXYPROTO_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

#define PROXY_V2_FIXED 16 /* signature, version/command, family, length */

struct proxy_addr {
    /* false: the LOCAL command (the balancer's own health check) or an
     * address family without one (UNSPEC, UNIX): keep the socket's address. */
    int has_addr;
    int family; /* AF_INET or AF_INET6 */
    uint8_t ip[16];
    uint16_t port;
};

/* Looks at the first len bytes of a connection. Returns 1 when they start
 * with a complete, valid header: *need is its length (to consume, not one
 * byte more) and *out the address it carries. Returns 0 when more bytes are
 * needed: *need is how many there must be in all to decide. ERR_PROTO when
 * the bytes are not a valid version 2 header (also a version 1 text
 * header, which certmq does not take). */
MUST_USE int proxy_parse(const uint8_t *p, size_t len, size_t *need, struct proxy_addr *out);

/* "ip:port" of a parsed address, as the server names every peer; cap >= 56
 * is always enough. */
void proxy_addr_format(const struct proxy_addr *a, char *dst, size_t cap);

#endif
