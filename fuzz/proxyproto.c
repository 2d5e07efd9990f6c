/* libFuzzer target for PROXY protocol v2 headers: any bytes give a refusal,
 * a request for more bytes than were given, or a header no longer than the
 * input whose address (when it has one) is IPv4 or IPv6; feeding the input
 * one byte at a time never decides differently. */
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "net/proxyproto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t need = 0;
    struct proxy_addr a;
    int rc = proxy_parse(data, size, &need, &a);
    if (rc == 1) {
        if (need < PROXY_V2_FIXED || need > size) abort();
        if (a.has_addr && a.family != AF_INET && a.family != AF_INET6) abort();
        char text[64];
        proxy_addr_format(&a, text, sizeof text);
    } else if (rc == 0) {
        if (need <= size) abort();
    } else if (rc != ERR_PROTO) {
        abort();
    }
    /* A prefix is never refused when the whole is accepted. */
    for (size_t n = 0; rc == 1 && n < need; n++) {
        size_t need2 = 0;
        if (proxy_parse(data, n, &need2, &a) != 0 || need2 <= n) abort();
    }
    return 0;
}
