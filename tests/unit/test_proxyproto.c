/* PROXY protocol v2 headers: the client's IPv4 and IPv6 addresses, LOCAL
 * and UNIX headers keeping the socket's, a header read in pieces, and every
 * malformed one (version 1 text, bad signature, version, command, family,
 * a length shorter than its addresses, TLVs that overrun) refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "net/proxyproto.h"

static const uint8_t sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

/* A header with command/version byte vc, family byte fam and body. */
static size_t header(uint8_t *out, uint8_t vc, uint8_t fam, const void *body, size_t len)
{
    memcpy(out, sig, 12);
    out[12] = vc;
    out[13] = fam;
    out[14] = (uint8_t)(len >> 8);
    out[15] = (uint8_t)len;
    memcpy(out + 16, body, len);
    return 16 + len;
}

static const uint8_t inet_body[12] = {192, 0, 2, 7, 127, 0, 0, 1, 0x9c, 0x40, 0x22, 0xb3};

static void test_proxyproto_inet_and_what_follows_is_left(void **state)
{
    (void)state;
    uint8_t h[128];
    size_t n = header(h, 0x21, 0x11, inet_body, sizeof inet_body);
    h[n] = 0x16; /* the TLS ClientHello that follows */
    size_t need;
    struct proxy_addr a;
    assert_int_equal(proxy_parse(h, n + 1, &need, &a), 1);
    assert_int_equal(need, 28);
    assert_true(a.has_addr);
    assert_int_equal(a.family, AF_INET);
    char text[64];
    proxy_addr_format(&a, text, sizeof text);
    assert_string_equal(text, "192.0.2.7:40000");
}

static void test_proxyproto_inet6_with_tlvs(void **state)
{
    (void)state;
    uint8_t body[36 + 7] = {0x20, 0x01, 0x0d, 0xb8};
    body[15] = 1;    /* 2001:db8::1 */
    body[32] = 0x01; /* port 443 */
    body[33] = 0xbb;
    memcpy(body + 36, "\x01\x00\x04h2h2", 7); /* an ALPN TLV */
    uint8_t h[128];
    size_t n = header(h, 0x21, 0x21, body, sizeof body), need;
    struct proxy_addr a;
    assert_int_equal(proxy_parse(h, n, &need, &a), 1);
    assert_int_equal(need, n);
    char text[64];
    proxy_addr_format(&a, text, sizeof text);
    assert_string_equal(text, "2001:db8::1:443");
}

static void test_proxyproto_local_and_unix_keep_the_socket_address(void **state)
{
    (void)state;
    uint8_t h[300], body[216] = "/run/x.sock";
    size_t need;
    struct proxy_addr a;
    size_t n = header(h, 0x20, 0x00, "", 0);
    assert_int_equal(proxy_parse(h, n, &need, &a), 1);
    assert_false(a.has_addr);
    n = header(h, 0x20, 0x11, "junk", 4); /* LOCAL: the block is skipped unread */
    assert_int_equal(proxy_parse(h, n, &need, &a), 1);
    assert_int_equal(need, 20);
    n = header(h, 0x21, 0x31, body, sizeof body);
    assert_int_equal(proxy_parse(h, n, &need, &a), 1);
    assert_false(a.has_addr);
}

static void test_proxyproto_pieces_ask_for_the_rest(void **state)
{
    (void)state;
    uint8_t h[128];
    size_t n = header(h, 0x21, 0x11, inet_body, sizeof inet_body), need;
    struct proxy_addr a;
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(proxy_parse(h, i, &need, &a), 0);
        assert_int_equal(need, i < 16 ? 16 : n);
    }
}

static void test_proxyproto_malformed_headers_are_refused(void **state)
{
    (void)state;
    uint8_t h[128];
    size_t need;
    struct proxy_addr a;
    const char *v1 = "PROXY TCP4 192.0.2.7 127.0.0.1 40000 8883\r\n";
    assert_int_equal(proxy_parse((const uint8_t *)v1, strlen(v1), &need, &a), ERR_PROTO);
    assert_int_equal(proxy_parse((const uint8_t *)"\x16\x03\x01", 3, &need, &a), ERR_PROTO);
    size_t n = header(h, 0x21, 0x11, inet_body, sizeof inet_body);
    h[3] ^= 1; /* signature */
    assert_int_equal(proxy_parse(h, n, &need, &a), ERR_PROTO);
    header(h, 0x11, 0x11, inet_body, sizeof inet_body); /* version 1 in binary */
    assert_int_equal(proxy_parse(h, n, &need, &a), ERR_PROTO);
    header(h, 0x22, 0x11, inet_body, sizeof inet_body); /* command 2 */
    assert_int_equal(proxy_parse(h, n, &need, &a), ERR_PROTO);
    header(h, 0x21, 0x41, inet_body, sizeof inet_body); /* family 4 */
    assert_int_equal(proxy_parse(h, n, &need, &a), ERR_PROTO);
    header(h, 0x21, 0x12, inet_body, sizeof inet_body); /* datagram */
    assert_int_equal(proxy_parse(h, n, &need, &a), ERR_PROTO);
    n = header(h, 0x21, 0x11, inet_body, 8); /* shorter than two addresses and ports */
    assert_int_equal(proxy_parse(h, n, &need, &a), ERR_PROTO);
    uint8_t body[12 + 3];
    memcpy(body, inet_body, 12);
    memcpy(body + 12, "\x01\x00\x09", 3); /* a TLV longer than what is left */
    n = header(h, 0x21, 0x11, body, sizeof body);
    assert_int_equal(proxy_parse(h, n, &need, &a), ERR_PROTO);
    n = header(h, 0x21, 0x11, body, 14); /* a TLV cut in its own header */
    assert_int_equal(proxy_parse(h, n, &need, &a), ERR_PROTO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_proxyproto_inet_and_what_follows_is_left),
        cmocka_unit_test(test_proxyproto_inet6_with_tlvs),
        cmocka_unit_test(test_proxyproto_local_and_unix_keep_the_socket_address),
        cmocka_unit_test(test_proxyproto_pieces_ask_for_the_rest),
        cmocka_unit_test(test_proxyproto_malformed_headers_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
