/* Unit tests for the REST API's request-head checks (src/api/httpcheck.c):
 * framing (RFC 9112 6.3: one Content-Length value, or chunked alone), NUL in
 * the raw target, Basic credentials; and the shared listener-address parser
 * (src/net/addr.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>

#include "api/httpcheck.h"
#include "net/addr.h"

static int framing(const char *const *hdrs)
{
    struct httpcheck_framing f = {0};
    for (size_t i = 0; hdrs[i]; i += 2)
        httpcheck_framing_add(&f, hdrs[i], strlen(hdrs[i]), hdrs[i + 1], strlen(hdrs[i + 1]));
    return httpcheck_framing_result(&f);
}

static void test_framing_accepts_one_length_or_chunked(void **state)
{
    const char *none[] = {"Host", "x", NULL};
    const char *one[] = {"Content-Length", "12", NULL};
    const char *same[] = {"content-length", "12", "Content-Length", " 12 ", NULL};
    const char *chunked[] = {"Transfer-Encoding", "Chunked", NULL};
    assert_int_equal(framing(none), 0);
    assert_int_equal(framing(one), 0);
    assert_int_equal(framing(same), 0);
    assert_int_equal(framing(chunked), 0);
}

static void test_framing_refuses_ambiguous_lengths(void **state)
{
    const char *two[] = {"Content-Length", "5", "Content-Length", "50", NULL};
    const char *both[] = {"Content-Length", "5", "Transfer-Encoding", "chunked", NULL};
    const char *both_rev[] = {"Transfer-Encoding", "chunked", "Content-Length", "5", NULL};
    const char *list[] = {"Content-Length", "5, 5", NULL};
    const char *sign[] = {"Content-Length", "+5", NULL};
    const char *huge[] = {"Content-Length", "99999999999999999999", NULL};
    const char *gzip[] = {"Transfer-Encoding", "gzip, chunked", NULL};
    const char *te_twice[] = {"Transfer-Encoding", "chunked", "Transfer-Encoding", "chunked", NULL};
    assert_int_equal(framing(two), ERR_MALFORMED);
    assert_int_equal(framing(both), ERR_MALFORMED);
    assert_int_equal(framing(both_rev), ERR_MALFORMED);
    assert_int_equal(framing(list), ERR_MALFORMED);
    assert_int_equal(framing(sign), ERR_MALFORMED);
    assert_int_equal(framing(huge), ERR_MALFORMED);
    assert_int_equal(framing(gzip), ERR_MALFORMED);
    assert_int_equal(framing(te_twice), ERR_MALFORMED);
}

static void test_target_refuses_nul(void **state)
{
    assert_int_equal(httpcheck_target("/a/b?c=d%20e", 12), 0);
    assert_int_equal(httpcheck_target("/a%00b", 6), ERR_MALFORMED);
    assert_int_equal(httpcheck_target("/a?x=%00", 8), ERR_MALFORMED);
    assert_int_equal(httpcheck_target("/a\0b", 4), ERR_MALFORMED);
    assert_int_equal(httpcheck_target("/a%0", 4), 0); /* no room for %00 */
}

static int basic(const char *creds_b64, struct httpcheck_basic *out)
{
    char hdr[512];
    snprintf(hdr, sizeof hdr, "Basic %s", creds_b64);
    return httpcheck_basic(hdr, strlen(hdr), out);
}

static void test_basic_parses_tenant_user_password(void **state)
{
    struct httpcheck_basic b;
    /* management/admin:pa:ss */
    assert_int_equal(basic("bWFuYWdlbWVudC9hZG1pbjpwYTpzcw==", &b), 0);
    assert_string_equal(b.tenant, "management");
    assert_string_equal(b.user, "admin");
    assert_string_equal(b.password, "pa:ss");
    assert_int_equal(b.password_len, 5);
}

static void test_basic_refuses_nul_and_bad_forms(void **state)
{
    struct httpcheck_basic b;
    /* "management/ad\0min:pw" */
    assert_int_equal(basic("bWFuYWdlbWVudC9hZABtaW46cHc=", &b), ERR_MALFORMED);
    /* "t/u:p\0w" */
    assert_int_equal(basic("dC91OnAAdw==", &b), ERR_MALFORMED);
    assert_int_equal(basic("dXNlcjpwdw==", &b), ERR_AUTH); /* user:pw, no tenant */
    assert_int_equal(basic("dC91", &b), ERR_AUTH);         /* t/u, no colon */
    assert_int_equal(basic("!!!!", &b), ERR_AUTH);         /* not base64 */
    assert_int_equal(basic("abc", &b), ERR_AUTH);          /* bad length */
    assert_int_equal(httpcheck_basic("Bearer x", 8, &b), ERR_AUTH);
}

static void test_addr_no_address_is_dual_stack(void **state)
{
    struct addr a;
    assert_int_equal(addr_parse("", 1883, &a), 0);
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&a.ss;
    assert_int_equal(in6->sin6_family, AF_INET6);
    assert_memory_equal(&in6->sin6_addr, &in6addr_any, sizeof in6addr_any);
    assert_int_equal(ntohs(in6->sin6_port), 1883);
    assert_int_equal(addr_parse(NULL, 1, &a), 0);
    assert_int_equal(a.ss.ss_family, AF_INET6);
}

static void test_addr_literals(void **state)
{
    struct addr a;
    assert_int_equal(addr_parse("127.0.0.1", 80, &a), 0);
    assert_int_equal(a.ss.ss_family, AF_INET);
    assert_int_equal(a.len, sizeof(struct sockaddr_in));
    assert_int_equal(addr_parse("::1", 80, &a), 0);
    assert_int_equal(a.ss.ss_family, AF_INET6);
    assert_int_equal(addr_parse("localhost", 80, &a), ERR_INVALID);
    assert_int_equal(addr_parse("1.2.3.4.5", 80, &a), ERR_INVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_framing_accepts_one_length_or_chunked),
        cmocka_unit_test(test_framing_refuses_ambiguous_lengths),
        cmocka_unit_test(test_target_refuses_nul),
        cmocka_unit_test(test_basic_parses_tenant_user_password),
        cmocka_unit_test(test_basic_refuses_nul_and_bad_forms),
        cmocka_unit_test(test_addr_no_address_is_dual_stack),
        cmocka_unit_test(test_addr_literals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
