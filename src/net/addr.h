/* Listener addresses, one parser for the MQTT and HTTP listeners: an empty
 * address is the dual-stack wildcard (IPv6 any, IPv4 mapped), otherwise an
 * IPv4 or IPv6 literal. addr_listen() makes the listening socket. */
#ifndef CERTMQ_NET_ADDR_H
#define CERTMQ_NET_ADDR_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/err.h"

struct addr {
    struct sockaddr_storage ss;
    socklen_t len;
};

/* Parses text ("" or NULL: every address, both families) with port. Pure;
 * ERR_INVALID when text is not an IP literal. */
MUST_USE int addr_parse(const char *text, uint16_t port, struct addr *out);
/* A non-blocking, close-on-exec socket bound to a and listening. IPv6
 * sockets accept IPv4 too. reuseport lets several workers bind the same
 * address. *fd is set on success; err says why on failure. */
MUST_USE int addr_listen(const struct addr *a, bool reuseport, int *fd, char *err, size_t n);

#endif
