/* Shared TLS ticket keys over a real SQLite store and real seals: two
 * handles on one store (two nodes) use the same key; after one period the
 * old key is the previous one (accepted, renew), after two it is unknown;
 * a handle with another key-encryption key uses a key of its own and opens
 * none of the shared tickets; the stored key is a sealed blob. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "core/seal.h"
#include "net/ticketkeys.h"
#include "store/store.h"

#define PERIOD 1000000 /* the refresh thread never fires during a test */
#define T0     ((int64_t)4000 * PERIOD + 17)

struct fixture {
    char dir[64];
    struct store *st;
    struct seal *kek, *other;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    snprintf(f->dir, sizeof f->dir, "/tmp/certmq-tk-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    assert_int_equal(store_open(f->dir, &f->st), 0);
    uint8_t k1[SEAL_KEY_LEN], k2[SEAL_KEY_LEN];
    memset(k1, 1, sizeof k1);
    memset(k2, 2, sizeof k2);
    assert_int_equal(seal_new(k1, &f->kek), 0);
    assert_int_equal(seal_new(k2, &f->other), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    store_close(f->st);
    seal_free(f->kek);
    seal_free(f->other);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static struct ticketkeys *node(struct fixture *f, struct seal *kek, int64_t now)
{
    struct ticketkeys_config c = {.st = f->st, .seal = kek, .period = PERIOD};
    struct ticketkeys *tk = NULL;
    assert_int_equal(ticketkeys_start(&c, &tk), 0);
    assert_int_equal(ticketkeys_refresh(tk, now), 0);
    return tk;
}

/* The key name a new ticket of tk carries. */
static void issue(struct ticketkeys *tk, unsigned char name[TICKETKEYS_NAME_LEN])
{
    unsigned char iv[EVP_MAX_IV_LENGTH];
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *h = EVP_MAC_CTX_new(mac);
    assert_int_equal(ticketkeys_cipher(tk, name, iv, c, h, 1), 1);
    EVP_MAC_CTX_free(h);
    EVP_MAC_free(mac);
    EVP_CIPHER_CTX_free(c);
}

/* What tk answers for a ticket under name: 1 current, 2 previous, 0 unknown. */
static int accept(struct ticketkeys *tk, const unsigned char name[TICKETKEYS_NAME_LEN])
{
    unsigned char n[TICKETKEYS_NAME_LEN], iv[EVP_MAX_IV_LENGTH] = {0};
    memcpy(n, name, sizeof n);
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *h = EVP_MAC_CTX_new(mac);
    int rc = ticketkeys_cipher(tk, n, iv, c, h, 0);
    EVP_MAC_CTX_free(h);
    EVP_MAC_free(mac);
    EVP_CIPHER_CTX_free(c);
    return rc;
}

static void test_ticketkeys_two_nodes_share_the_key(void **state)
{
    struct fixture *f = *state;
    struct ticketkeys *a = node(f, f->kek, T0), *b = node(f, f->kek, T0 + 5);
    unsigned char na[TICKETKEYS_NAME_LEN], nb[TICKETKEYS_NAME_LEN];
    issue(a, na);
    issue(b, nb);
    assert_memory_equal(na, nb, sizeof na);
    assert_int_equal(accept(b, na), 1);
    void *blob = NULL;
    size_t len = 0;
    assert_int_equal(store_ticket_key_get(f->st, PERIOD, T0 / PERIOD, &blob, &len), 0);
    assert_int_equal(len, SEAL_OVERHEAD + 80);
    assert_memory_equal(blob, SEAL_MAGIC, 4);
    assert_null(memmem(blob, len, na, sizeof na)); /* the name is not in the clear */
    free(blob);
    ticketkeys_stop(a);
    ticketkeys_stop(b);
}

static void test_ticketkeys_previous_key_renews_older_is_unknown(void **state)
{
    struct fixture *f = *state;
    struct ticketkeys *a = node(f, f->kek, T0);
    unsigned char n0[TICKETKEYS_NAME_LEN], n1[TICKETKEYS_NAME_LEN];
    issue(a, n0);
    assert_int_equal(ticketkeys_refresh(a, T0 + PERIOD), 0);
    issue(a, n1);
    assert_memory_not_equal(n0, n1, sizeof n0);
    assert_int_equal(accept(a, n1), 1);
    assert_int_equal(accept(a, n0), 2);
    /* A node starting now reads the same two keys. */
    struct ticketkeys *b = node(f, f->kek, T0 + PERIOD);
    assert_int_equal(accept(b, n0), 2);
    assert_int_equal(accept(b, n1), 1);
    ticketkeys_stop(b);
    assert_int_equal(ticketkeys_refresh(a, T0 + 2 * PERIOD), 0);
    assert_int_equal(accept(a, n0), 0);
    assert_int_equal(accept(a, n1), 2);
    /* After a gap of a whole period the old key is not the previous one. */
    assert_int_equal(ticketkeys_refresh(a, T0 + 4 * PERIOD), 0);
    assert_int_equal(accept(a, n1), 0);
    ticketkeys_stop(a);
}

static void test_ticketkeys_another_kek_uses_its_own_key(void **state)
{
    struct fixture *f = *state;
    struct ticketkeys *a = node(f, f->kek, T0), *c = node(f, f->other, T0);
    unsigned char na[TICKETKEYS_NAME_LEN], nc[TICKETKEYS_NAME_LEN];
    issue(a, na);
    issue(c, nc);
    assert_memory_not_equal(na, nc, sizeof na);
    assert_int_equal(accept(c, na), 0);
    assert_int_equal(accept(a, nc), 0);
    assert_int_equal(accept(c, nc), 1);
    ticketkeys_stop(c);
    /* The shared key was left as it was. */
    struct ticketkeys *b = node(f, f->kek, T0);
    assert_int_equal(accept(b, na), 1);
    ticketkeys_stop(b);
    ticketkeys_stop(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ticketkeys_two_nodes_share_the_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ticketkeys_previous_key_renews_older_is_unknown, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_ticketkeys_another_kek_uses_its_own_key, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
