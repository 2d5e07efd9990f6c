/* Secrets at rest: sealed blobs open only with their KEK and context and
 * refuse any change; the KEK file is made once (0600, 32 bytes) and a file
 * that others may read, or of the wrong size, is refused with its reason. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/seal.h"

static char dir[256];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/certmq-test-seal-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static struct seal *seal_of(uint8_t first)
{
    uint8_t key[SEAL_KEY_LEN] = {first};
    struct seal *s = NULL;
    assert_int_equal(seal_new(key, &s), 0);
    return s;
}

static void test_seal_round_trip_and_refusals(void **state)
{
    (void)state;
    struct seal *s = seal_of(1), *other = seal_of(2);
    static const char secret[] = "-----BEGIN PRIVATE KEY-----\nabc\n";
    uint8_t *blob = NULL;
    size_t n = 0, plen = 0;
    char *plain = NULL;
    assert_int_equal(seal_wrap(s, "ctx:t1", secret, strlen(secret), &blob, &n), 0);
    assert_int_equal(n, strlen(secret) + SEAL_OVERHEAD);
    assert_memory_equal(blob, "CMQS\x01", 5);
    assert_null(memmem(blob, n, "PRIVATE", 7));
    assert_int_equal(seal_unwrap(s, "ctx:t1", blob, n, &plain, &plen), 0);
    assert_int_equal(plen, strlen(secret));
    assert_string_equal(plain, secret);
    seal_secret_free(plain, plen);
    /* two seals of the same secret differ (fresh nonce) */
    uint8_t *again = NULL;
    size_t n2 = 0;
    assert_int_equal(seal_wrap(s, "ctx:t1", secret, strlen(secret), &again, &n2), 0);
    assert_memory_not_equal(again, blob, n);
    free(again);
    /* another context, another KEK, any flipped byte, bad headers */
    assert_int_equal(seal_unwrap(s, "ctx:t2", blob, n, &plain, &plen), ERR_AUTH);
    assert_int_equal(seal_unwrap(other, "ctx:t1", blob, n, &plain, &plen), ERR_CONFLICT);
    assert_int_equal(seal_check(other, blob, n), ERR_CONFLICT);
    assert_int_equal(seal_check(s, blob, n), 0);
    for (size_t i = SEAL_HEADER_LEN; i < n; i++) {
        blob[i] ^= 0x40;
        assert_int_equal(seal_unwrap(s, "ctx:t1", blob, n, &plain, &plen), ERR_AUTH);
        blob[i] ^= 0x40;
    }
    assert_int_equal(seal_unwrap(s, "ctx:t1", blob, SEAL_OVERHEAD - 1, &plain, &plen),
                     ERR_MALFORMED);
    blob[4] = 2; /* an unknown version */
    assert_int_equal(seal_unwrap(s, "ctx:t1", blob, n, &plain, &plen), ERR_MALFORMED);
    blob[4] = SEAL_VERSION;
    blob[0] = 'X';
    assert_int_equal(seal_unwrap(s, "ctx:t1", blob, n, &plain, &plen), ERR_MALFORMED);
    free(blob);
    /* an empty secret is fine too */
    assert_int_equal(seal_wrap(s, "c", "", 0, &blob, &n), 0);
    assert_int_equal(seal_unwrap(s, "c", blob, n, &plain, &plen), 0);
    assert_int_equal(plen, 0);
    seal_secret_free(plain, plen);
    free(blob);
    seal_free(s);
    seal_free(other);
}

static void test_seal_open_creates_the_kek_once(void **state)
{
    (void)state;
    char err[512] = "", path[300], id1[17], id2[17];
    struct seal *a = NULL, *b = NULL;
    assert_int_equal(seal_open("", dir, &a, err, sizeof err), 0);
    snprintf(path, sizeof path, "%s/kek", dir);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    assert_int_equal(sb.st_size, SEAL_KEY_LEN);
    assert_int_equal(seal_open(NULL, dir, &b, err, sizeof err), 0);
    seal_key_id(a, id1);
    seal_key_id(b, id2);
    assert_string_equal(id1, id2);
    /* the same file named as ca_key_file is the same key */
    seal_free(b);
    assert_int_equal(seal_open(path, "/nonexistent", &b, err, sizeof err), 0);
    seal_key_id(b, id2);
    assert_string_equal(id1, id2);
    seal_free(a);
    seal_free(b);
}

static void test_seal_open_refuses_bad_key_files(void **state)
{
    (void)state;
    char err[512] = "", path[300];
    struct seal *s = NULL;
    snprintf(path, sizeof path, "%s/kek", dir);
    assert_int_equal(seal_open("", dir, &s, err, sizeof err), 0);
    seal_free(s);
    s = NULL;
    assert_int_equal(chmod(path, 0640), 0);
    assert_int_equal(seal_open("", dir, &s, err, sizeof err), ERR_INVALID);
    assert_null(s);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "chmod 600"));
    assert_int_equal(chmod(path, 0604), 0);
    assert_int_equal(seal_open(path, dir, &s, err, sizeof err), ERR_INVALID);
    assert_int_equal(chmod(path, 0600), 0);
    assert_int_equal(truncate(path, 31), 0);
    assert_int_equal(seal_open("", dir, &s, err, sizeof err), ERR_INVALID);
    assert_non_null(strstr(err, "exactly 32"));
    char missing[300];
    snprintf(missing, sizeof missing, "%s/absent", dir);
    assert_int_equal(seal_open(missing, dir, &s, err, sizeof err), ERR_IO);
    assert_non_null(strstr(err, "No such file"));
    assert_int_equal(seal_open(dir, dir, &s, err, sizeof err), ERR_INVALID); /* a directory */
    assert_null(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seal_round_trip_and_refusals),
        cmocka_unit_test_setup_teardown(test_seal_open_creates_the_kek_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_seal_open_refuses_bad_key_files, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
