/* The device-token service over an in-memory store: a device gets its current
 * token until half its lifetime has passed, then a new one; the lifetime
 * follows the tenant option; Bearer checks honour expiry and never create a
 * key for a tenant a token names. Time is a parameter, so no test waits. */
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/seal.h"
#include "identity/trust.h"
#include "store/store.h"
#include "token/service.h"
#include "token/token.h"

#define T0 1700000000

struct fx {
    struct seal *seal;
    struct store *st;
    struct trust_index *ti;
    struct token_service *ts;
};

static void add_tenant(struct store *st, const char *id)
{
    struct store_tenant t;
    memset(&t, 0, sizeof t);
    snprintf(t.id, sizeof t.id, "%s", id);
    assert_int_equal(store_tenant_create(st, &t, NULL), 0);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    uint8_t kek[SEAL_KEY_LEN] = {1, 2, 3};
    if (!f || seal_new(kek, &f->seal) < 0 || store_open_path(":memory:", &f->st) < 0 ||
        trust_new(&f->ti) < 0 || token_service_new(f->st, f->ti, f->seal, &f->ts) < 0)
        return -1;
    add_tenant(f->st, "t1");
    add_tenant(f->st, "t2");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    token_service_free(f->ts);
    trust_free(f->ti);
    store_close(f->st);
    seal_free(f->seal);
    free(f);
    return 0;
}

/* Issues a token for cn at now and returns its verified claims. */
static char *issue(struct fx *f, const char *tenant, const char *cn, time_t now,
                   struct token_claims *c)
{
    char *jwt = NULL, *pub = NULL;
    assert_int_equal(token_service_issue(f->ts, tenant, cn, now, &jwt), 0);
    assert_int_equal(token_service_public_key(f->ts, tenant, &pub), 0);
    assert_int_equal(token_verify(pub, jwt, tenant, now, c), 0);
    free(pub);
    return jwt;
}

static void test_token_service_reuses_until_half_life(void **state)
{
    struct fx *f = *state;
    struct token_claims c;
    char *a = issue(f, "t1", "d1", T0, &c);
    assert_int_equal(c.iat, T0);
    assert_int_equal(c.exp - c.iat, TOKEN_DEFAULT_LIFESPAN);
    assert_string_equal(c.sub, "device_d1");
    char *same = issue(f, "t1", "d1", T0 + TOKEN_DEFAULT_LIFESPAN / 2 - 1, &c);
    assert_string_equal(same, a);
    char *b = issue(f, "t1", "d1", T0 + TOKEN_DEFAULT_LIFESPAN / 2, &c);
    assert_string_not_equal(b, a);
    assert_int_equal(c.iat, T0 + TOKEN_DEFAULT_LIFESPAN / 2);
    char *b2 = issue(f, "t1", "d1", T0 + TOKEN_DEFAULT_LIFESPAN - 1, &c);
    assert_string_equal(b2, b);
    free(a);
    free(same);
    free(b);
    free(b2);
}

static void test_token_service_devices_and_tenants_apart(void **state)
{
    struct fx *f = *state;
    struct token_claims c;
    char *a = issue(f, "t1", "d1", T0, &c);
    char *b = issue(f, "t1", "d2", T0, &c);
    char *other = issue(f, "t2", "d1", T0, &c);
    assert_string_not_equal(a, b);
    assert_string_not_equal(a, other);
    assert_string_equal(c.ten, "t2");
    char *p1 = NULL, *p2 = NULL;
    assert_int_equal(token_service_public_key(f->ts, "t1", &p1), 0);
    assert_int_equal(token_service_public_key(f->ts, "t2", &p2), 0);
    assert_string_not_equal(p1, p2);
    assert_int_equal(token_verify(p1, other, "t2", T0, &c), ERR_AUTH);
    free(p1);
    free(p2);
    free(a);
    free(b);
    free(other);
}

static void test_token_service_lifespan_option(void **state)
{
    struct fx *f = *state;
    struct token_claims c;
    assert_int_equal(
        trust_option_set(f->ti, "t1", "oauth.internal", "device-token.lifespan.seconds", "600"), 0);
    assert_int_equal(token_lifespan(f->ts, "t1"), 600);
    assert_int_equal(token_lifespan(f->ts, "t2"), TOKEN_DEFAULT_LIFESPAN);
    char *a = issue(f, "t1", "d1", T0, &c);
    assert_int_equal(c.exp - c.iat, 600);
    char *b = issue(f, "t1", "d1", T0 + 300, &c); /* half of 600 */
    assert_string_not_equal(a, b);
    /* a value below the minimum (never accepted by the API) falls back */
    assert_int_equal(
        trust_option_set(f->ti, "t1", "oauth.internal", "device-token.lifespan.seconds", "10"), 0);
    assert_int_equal(token_lifespan(f->ts, "t1"), TOKEN_DEFAULT_LIFESPAN);
    free(a);
    free(b);
}

static void test_token_service_check(void **state)
{
    struct fx *f = *state;
    struct token_claims c;
    char ten[STORE_TENANT_MAX], user[STORE_NAME_MAX];
    bool created;
    assert_int_equal(store_device_register(f->st, "t1", "d1", "CERTIFICATES", &created), 0);
    char *a = issue(f, "t1", "d1", T0, &c);
    assert_int_equal(token_service_check(f->ts, a, T0 + 10, ten, sizeof ten, user, sizeof user), 0);
    assert_string_equal(ten, "t1");
    assert_string_equal(user, "device_d1");
    assert_int_equal(
        token_service_check(f->ts, a, (time_t)c.exp, ten, sizeof ten, user, sizeof user), ERR_AUTH);
    assert_int_equal(token_service_check(f->ts, a, T0 - 1, ten, sizeof ten, user, sizeof user),
                     ERR_AUTH);
    /* a token naming t2, which has no key yet: refused, and no key made */
    char *priv = NULL, *pub = NULL;
    assert_int_equal(token_key_new(&priv, &pub), 0);
    char *forged = NULL;
    assert_int_equal(token_mint(priv, "device_d1", "t2", T0, 3600, &c, &forged), 0);
    assert_int_equal(token_service_check(f->ts, forged, T0 + 1, ten, sizeof ten, user, sizeof user),
                     ERR_AUTH);
    void *kp = NULL;
    size_t klen = 0;
    char *kq = NULL;
    assert_int_equal(store_token_key_get(f->st, "t2", &kp, &klen, &kq), ERR_NOT_FOUND);
    free(forged);
    free(priv);
    free(pub);
    free(a);
}

/* The tenant's private key as the store keeps it, opened with the KEK. */
static char *stored_private_key(struct fx *f, const char *tenant)
{
    void *blob = NULL;
    size_t n = 0, plen = 0;
    char *pub = NULL, *priv = NULL, ctx[128];
    assert_int_equal(store_token_key_get(f->st, tenant, &blob, &n, &pub), 0);
    assert_null(memmem(blob, n, "PRIVATE KEY", 11));
    snprintf(ctx, sizeof ctx, "device-token-key:%s", tenant);
    assert_int_equal(seal_unwrap(f->seal, ctx, blob, n, &priv, &plen), 0);
    assert_non_null(strstr(priv, "-----BEGIN PRIVATE KEY-----"));
    /* bound to its tenant: the blob does not open as another tenant's */
    char *x = NULL;
    assert_int_equal(seal_unwrap(f->seal, "device-token-key:t2", blob, n, &x, &plen), ERR_AUTH);
    free(blob);
    free(pub);
    return priv;
}

static void test_token_service_only_device_users(void **state)
{
    struct fx *f = *state;
    struct token_claims c;
    char ten[STORE_TENANT_MAX], user[STORE_NAME_MAX];
    struct store_user admin;
    memset(&admin, 0, sizeof admin);
    snprintf(admin.tenant, sizeof admin.tenant, "t1");
    snprintf(admin.name, sizeof admin.name, "admin");
    snprintf(admin.pw_hash, sizeof admin.pw_hash, "x");
    admin.roles = STORE_ROLE_TENANT_ADMIN;
    assert_int_equal(store_user_create(f->st, &admin), 0);
    bool created;
    assert_int_equal(store_device_register(f->st, "t1", "d1", "CERTIFICATES", &created), 0);
    free(issue(f, "t1", "d1", T0, &c)); /* makes the tenant key */
    char *priv = stored_private_key(f, "t1");
    const char *subs[] = {"admin", "nobody", "device_d1"};
    for (size_t i = 0; i < 3; i++) {
        char *jwt = NULL;
        assert_int_equal(token_mint(priv, subs[i], "t1", T0, 3600, &c, &jwt), 0);
        assert_int_equal(
            token_service_check(f->ts, jwt, T0 + 1, ten, sizeof ten, user, sizeof user),
            i == 2 ? 0 : ERR_AUTH);
        free(jwt);
    }
    free(priv);
}

/* Keys sealed under one KEK: a service started with another refuses to
 * start rather than fail every token later. */
static void test_token_service_refuses_another_kek(void **state)
{
    struct fx *f = *state;
    struct token_claims c;
    free(issue(f, "t1", "d1", T0, &c));
    uint8_t other_key[SEAL_KEY_LEN] = {9};
    struct seal *other = NULL;
    struct token_service *ts = NULL;
    assert_int_equal(seal_new(other_key, &other), 0);
    assert_int_equal(token_service_new(f->st, f->ti, other, &ts), ERR_CONFLICT);
    assert_null(ts);
    assert_int_equal(token_service_new(f->st, f->ti, f->seal, &ts), 0);
    token_service_free(ts);
    seal_free(other);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_token_service_reuses_until_half_life, setup, teardown),
        cmocka_unit_test_setup_teardown(test_token_service_devices_and_tenants_apart, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_token_service_lifespan_option, setup, teardown),
        cmocka_unit_test_setup_teardown(test_token_service_check, setup, teardown),
        cmocka_unit_test_setup_teardown(test_token_service_only_device_users, setup, teardown),
        cmocka_unit_test_setup_teardown(test_token_service_refuses_another_kek, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
