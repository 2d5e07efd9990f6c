/* Listener address parsing and binding (see addr.h), shared by the MQTT
 * server and the REST API so both treat "no address" as dual-stack. */
#include "net/addr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int addr_parse(const char *text, uint16_t port, struct addr *out)
{
    memset(out, 0, sizeof *out);
    struct sockaddr_in *in4 = (struct sockaddr_in *)&out->ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&out->ss;
    if (!text || !*text || inet_pton(AF_INET6, text, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        if (!text || !*text) in6->sin6_addr = in6addr_any;
        out->len = sizeof *in6;
        return 0;
    }
    if (inet_pton(AF_INET, text, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons(port);
        out->len = sizeof *in4;
        return 0;
    }
    return ERR_INVALID;
}

int addr_listen(const struct addr *a, bool reuseport, int *fd, char *err, size_t n)
{
    int family = a->ss.ss_family;
    int s = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s < 0) goto fail;
    int one = 1, zero = 0;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (reuseport) setsockopt(s, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (family == AF_INET6) setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    if (bind(s, (const struct sockaddr *)&a->ss, a->len) < 0 || listen(s, 1024) < 0) goto fail;
    *fd = s;
    return 0;
fail:
    snprintf(err, n, "%s", strerror(errno));
    if (s >= 0) close(s);
    return ERR_IO;
}
