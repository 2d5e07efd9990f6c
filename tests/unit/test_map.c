/* The one hash map: SipHash-2-4 against the reference vectors, bucket
 * placement that depends on the seed, a seed that differs between two
 * processes (this binary run again with --hash), and the map operations
 * with binary keys, replacement, deletion, clearing and growth. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/map.h"

static const char *self_path;

static void test_map_siphash_reference_vectors(void **state)
{
    (void)state;
    uint8_t key[MAP_SEED_LEN], msg[64];
    for (int i = 0; i < MAP_SEED_LEN; i++) key[i] = (uint8_t)i;
    for (int i = 0; i < 64; i++) msg[i] = (uint8_t)i;
    /* SipHash-2-4, key 00..0f, message 00..(n-1): the paper's vectors */
    assert_true(map_siphash(key, msg, 0) == 0x726fdb47dd0e0e31ull);
    assert_true(map_siphash(key, msg, 8) == 0x93f5f5799a932462ull);
    assert_true(map_siphash(key, msg, 15) == 0xa129ca6149be45e5ull);
}

/* The bucket of each of 64 ClientIds in a 64-bucket table, under a seed. */
static void buckets_of(const uint8_t seed[MAP_SEED_LEN], unsigned out[64])
{
    for (unsigned i = 0; i < 64; i++) {
        char id[32];
        int n = snprintf(id, sizeof id, "client-%u", i);
        out[i] = (unsigned)(map_siphash(seed, id, (size_t)n) & 63);
    }
}

static void test_map_seed_changes_bucket_placement(void **state)
{
    (void)state;
    uint8_t a[MAP_SEED_LEN] = {1}, b[MAP_SEED_LEN] = {2};
    unsigned pa[64], pb[64], pa2[64];
    buckets_of(a, pa);
    buckets_of(a, pa2);
    buckets_of(b, pb);
    assert_memory_equal(pa, pa2, sizeof pa); /* deterministic under one seed */
    int same = 0;
    for (int i = 0; i < 64; i++) same += pa[i] == pb[i];
    assert_true(same < 16); /* ~1 expected by chance */
    /* keys that collide under one seed are spread under another */
    int collide = 0;
    for (int i = 1; i < 64; i++) collide += pa[i] == pa[0] && pb[i] == pb[0];
    assert_true(collide <= 1);
}

/* Runs this binary again: a new process, so a new seed. */
static uint64_t hash_in_new_process(const char *key)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "'%s' --hash '%s'", self_path, key);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    uint64_t h = 0;
    assert_int_equal(fscanf(p, "%" SCNx64, &h), 1);
    assert_int_equal(pclose(p), 0);
    return h;
}

static void test_map_two_processes_hash_differently(void **state)
{
    (void)state;
    const char *key = "d:device-1";
    uint64_t here = map_hash(key, strlen(key));
    assert_true(here == map_hash(key, strlen(key))); /* stable within the process */
    uint64_t p1 = hash_in_new_process(key), p2 = hash_in_new_process(key);
    assert_true(p1 != here);
    assert_true(p2 != here);
    assert_true(p1 != p2);
}

static void count_cb(const char *key, void *value, void *arg)
{
    (void)key;
    (void)value;
    (*(int *)arg)++;
}

static void test_map_operations(void **state)
{
    (void)state;
    struct map m;
    map_init(&m);
    int v[1000];
    char key[32];
    for (int i = 0; i < 1000; i++) {
        int n = snprintf(key, sizeof key, "k%d", i);
        assert_int_equal(map_put(&m, key, (size_t)n, &v[i], NULL), 0);
    }
    assert_int_equal(m.count, 1000);
    assert_true(m.nbuckets >= 1000);
    for (int i = 0; i < 1000; i++) {
        int n = snprintf(key, sizeof key, "k%d", i);
        assert_ptr_equal(map_get(&m, key, (size_t)n), &v[i]);
    }
    void *old = NULL;
    assert_int_equal(map_put(&m, "k1", 2, &v[5], &old), 0);
    assert_ptr_equal(old, &v[1]);
    assert_int_equal(m.count, 1000);
    /* binary keys with NULs are distinct by their bytes */
    assert_int_equal(map_put(&m, "a\0b", 3, &v[7], NULL), 0);
    assert_null(map_get(&m, "a\0c", 3));
    assert_null(map_get(&m, "a", 1));
    assert_ptr_equal(map_get(&m, "a\0b", 3), &v[7]);
    assert_ptr_equal(map_del(&m, "a\0b", 3), &v[7]);
    assert_null(map_del(&m, "a\0b", 3));
    int seen = 0;
    map_each(&m, count_cb, &seen);
    assert_int_equal(seen, 1000);
    map_clear(&m, NULL);
    assert_int_equal(m.count, 0);
    assert_null(map_get(&m, "k1", 2));
    assert_int_equal(map_put(&m, "again", 5, &v[0], NULL), 0); /* usable after clear */
    char *owned = strdup("x");
    assert_int_equal(map_put(&m, "owned", 5, owned, NULL), 0);
    assert_ptr_equal(map_del(&m, "again", 5), &v[0]);
    map_clear(&m, free); /* frees owned */
    map_free(&m);
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--hash") == 0) {
        printf("%016" PRIx64 "\n", map_hash(argv[2], strlen(argv[2])));
        return 0;
    }
    self_path = argv[0];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_map_siphash_reference_vectors),
        cmocka_unit_test(test_map_seed_changes_bucket_placement),
        cmocka_unit_test(test_map_two_processes_hash_differently),
        cmocka_unit_test(test_map_operations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
