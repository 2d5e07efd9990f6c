/* Device tokens: mint and verify round trip, expiry, not-before, tenant
 * binding, tampering, and refusal of every algorithm but ES256. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jwt.h>

#include "token/token.h"

static char *priv, *pub;

static int setup(void **state)
{
    (void)state;
    return token_key_new(&priv, &pub);
}

static int teardown(void **state)
{
    (void)state;
    free(priv);
    free(pub);
    return 0;
}

static void test_token_round_trip(void **state)
{
    (void)state;
    struct token_claims c, v;
    char *jwt;
    assert_int_equal(token_mint(priv, "device_d1", "t1", 1000, 3600, &c, &jwt), 0);
    assert_int_equal(strlen(c.jti), 32);
    assert_int_equal(token_verify(pub, jwt, "t1", 1500, &v), 0);
    assert_string_equal(v.sub, "device_d1");
    assert_string_equal(v.ten, "t1");
    assert_string_equal(v.jti, c.jti);
    assert_int_equal(v.exp, 4600);
    char ten[64];
    assert_int_equal(token_peek_tenant(jwt, ten, sizeof ten), 0);
    assert_string_equal(ten, "t1");
    free(jwt);
}

static void test_token_time_bounds(void **state)
{
    (void)state;
    struct token_claims c, v;
    char *jwt;
    assert_int_equal(token_mint(priv, "device_d1", "t1", 1000, 300, &c, &jwt), 0);
    assert_int_equal(token_verify(pub, jwt, "t1", 1299, &v), 0);
    assert_int_equal(token_verify(pub, jwt, "t1", 1300, &v), ERR_AUTH); /* expired */
    assert_int_equal(token_verify(pub, jwt, "t1", 999, &v), ERR_AUTH);  /* not yet valid */
    free(jwt);
}

static void test_token_wrong_tenant_and_key(void **state)
{
    (void)state;
    struct token_claims c, v;
    char *jwt, *p2, *q2;
    assert_int_equal(token_mint(priv, "device_d1", "t1", 1000, 3600, &c, &jwt), 0);
    assert_int_equal(token_verify(pub, jwt, "t2", 1001, &v), ERR_AUTH);
    assert_int_equal(token_key_new(&p2, &q2), 0);
    assert_int_equal(token_verify(q2, jwt, "t1", 1001, &v), ERR_AUTH);
    free(p2);
    free(q2);
    free(jwt);
}

static void test_token_tampered(void **state)
{
    (void)state;
    struct token_claims c, v;
    char *jwt;
    assert_int_equal(token_mint(priv, "device_d1", "t1", 1000, 3600, &c, &jwt), 0);
    char *dot = strchr(jwt, '.');
    dot[3] = dot[3] == 'A' ? 'B' : 'A'; /* flip a payload character */
    assert_int_equal(token_verify(pub, jwt, "t1", 1001, &v), ERR_AUTH);
    free(jwt);
}

/* A token signed with HS256 using the public key as secret, or with no
 * signature at all, must not pass. */
static void test_token_other_algorithms(void **state)
{
    (void)state;
    struct token_claims v;
    jwt_t *j;
    assert_int_equal(jwt_new(&j), 0);
    jwt_add_grant(j, "sub", "device_d1");
    jwt_add_grant(j, "ten", "t1");
    jwt_add_grant_int(j, "exp", 999999);
    jwt_add_grant_int(j, "nbf", 0);
    assert_int_equal(jwt_set_alg(j, JWT_ALG_HS256, (const unsigned char *)pub, (int)strlen(pub)),
                     0);
    char *hs = jwt_encode_str(j);
    assert_non_null(hs);
    assert_int_equal(token_verify(pub, hs, "t1", 1001, &v), ERR_AUTH);
    assert_int_equal(jwt_set_alg(j, JWT_ALG_NONE, NULL, 0), 0);
    char *none = jwt_encode_str(j);
    assert_non_null(none);
    assert_int_equal(token_verify(pub, none, "t1", 1001, &v), ERR_AUTH);
    free(hs);
    free(none);
    jwt_free(j);
}

static void test_token_garbage(void **state)
{
    (void)state;
    struct token_claims v;
    char ten[64];
    assert_int_equal(token_verify(pub, "not.a.token", "t1", 1, &v), ERR_AUTH);
    assert_int_equal(token_verify(pub, "", "t1", 1, &v), ERR_AUTH);
    assert_int_equal(token_peek_tenant("abc", ten, sizeof ten), ERR_AUTH);
    assert_int_equal(token_peek_tenant("a.!!!.c", ten, sizeof ten), ERR_AUTH);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_token_round_trip),           cmocka_unit_test(test_token_time_bounds),
        cmocka_unit_test(test_token_wrong_tenant_and_key), cmocka_unit_test(test_token_tampered),
        cmocka_unit_test(test_token_other_algorithms),     cmocka_unit_test(test_token_garbage),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
