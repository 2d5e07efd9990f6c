/* PROXY protocol version 2 (haproxy.org/download/2.6/doc/proxy-protocol.txt,
 * section 2.2): a 12-byte signature, version and command, address family
 * and transport, a 16-bit length, then that many bytes of addresses and
 * TLVs. Only the length field says where the client's own bytes begin, so
 * it is checked against what the family needs and nothing past it is read. */
#include "net/proxyproto.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

static const uint8_t signature[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                      0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

enum { CMD_LOCAL = 0x0, CMD_PROXY = 0x1 };
enum { FAM_UNSPEC = 0x0, FAM_INET = 0x1, FAM_INET6 = 0x2, FAM_UNIX = 0x3 };
enum { TRANS_UNSPEC = 0x0, TRANS_STREAM = 0x1 };

/* Bytes of the address block for a family: source and destination address,
 * then (for IP) source and destination port. */
static size_t addr_block(unsigned fam)
{
    switch (fam) {
    case FAM_INET: return 4 + 4 + 2 + 2;
    case FAM_INET6: return 16 + 16 + 2 + 2;
    case FAM_UNIX: return 108 + 108;
    default: return 0;
    }
}

/* The TLVs after the addresses must tile the rest of the block exactly. */
static int check_tlvs(const uint8_t *p, size_t len)
{
    size_t pos = 0;
    while (pos < len) {
        ENSURE(len - pos >= 3, ERR_PROTO);
        size_t vlen = (size_t)p[pos + 1] << 8 | p[pos + 2];
        ENSURE(vlen <= len - pos - 3, ERR_PROTO);
        pos += 3 + vlen;
    }
    return 0;
}

int proxy_parse(const uint8_t *p, size_t len, size_t *need, struct proxy_addr *out)
{
    /* Every prefix of the signature might still become it; anything else,
     * a version 1 "PROXY " line included, cannot. */
    size_t sig = len < sizeof signature ? len : sizeof signature;
    ENSURE(!memcmp(p, signature, sig), ERR_PROTO);
    *need = PROXY_V2_FIXED;
    if (len < PROXY_V2_FIXED) return 0;
    unsigned ver = p[12] >> 4, cmd = p[12] & 0x0f, fam = p[13] >> 4, trans = p[13] & 0x0f;
    ENSURE(ver == 2 && (cmd == CMD_LOCAL || cmd == CMD_PROXY), ERR_PROTO);
    ENSURE(fam <= FAM_UNIX && (trans == TRANS_UNSPEC || trans == TRANS_STREAM), ERR_PROTO);
    size_t body = (size_t)p[14] << 8 | p[15];
    *need = PROXY_V2_FIXED + body;
    if (len < *need) return 0;
    const uint8_t *b = p + PROXY_V2_FIXED;
    memset(out, 0, sizeof *out);
    /* LOCAL (the balancer's own health check) and UNSPEC carry nothing to
     * use: their block is skipped unread and the socket's address kept. */
    if (cmd == CMD_LOCAL || fam == FAM_UNSPEC) return 1;
    size_t ab = addr_block(fam);
    ENSURE(body >= ab, ERR_PROTO);
    GUARD(check_tlvs(b + ab, body - ab));
    if (fam == FAM_INET) {
        out->has_addr = 1;
        out->family = AF_INET;
        memcpy(out->ip, b, 4);
        out->port = (uint16_t)(b[8] << 8 | b[9]);
    } else if (fam == FAM_INET6) {
        out->has_addr = 1;
        out->family = AF_INET6;
        memcpy(out->ip, b, 16);
        out->port = (uint16_t)(b[32] << 8 | b[33]);
    }
    return 1;
}

void proxy_addr_format(const struct proxy_addr *a, char *dst, size_t cap)
{
    char host[INET6_ADDRSTRLEN] = "?";
    if (a->has_addr) inet_ntop(a->family, a->ip, host, sizeof host);
    snprintf(dst, cap, "%s:%u", host, (unsigned)a->port);
}
