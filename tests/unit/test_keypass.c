/* Key password files: the first line is the password (LF or CRLF), a file
 * others may read is refused, and an empty or overlong one is an error that
 * never echoes the content. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "net/keypass.h"

static char path[64];

static int read_from(const char *text, size_t len, mode_t mode, char *pw, char *err)
{
    strcpy(path, "/tmp/certmq-test-keypass-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
    assert_int_equal(chmod(path, mode), 0);
    int rc = keypass_read(path, pw, err, 256);
    unlink(path);
    return rc;
}

static void test_keypass_first_line(void **state)
{
    (void)state;
    char pw[KEYPASS_MAX], err[256];
    assert_int_equal(read_from("s3cret\n", 7, 0600, pw, err), 0);
    assert_string_equal(pw, "s3cret");
    assert_int_equal(read_from("s3cret\r\nmore\n", 13, 0400, pw, err), 0);
    assert_string_equal(pw, "s3cret");
    assert_int_equal(read_from("no newline", 10, 0600, pw, err), 0);
    assert_string_equal(pw, "no newline");
    keypass_wipe(pw);
    assert_int_equal(pw[0], 0);
}

static void test_keypass_open_modes_refused(void **state)
{
    (void)state;
    char pw[KEYPASS_MAX], err[256];
    static const mode_t modes[] = {0640, 0604, 0660, 0644, 0610};
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        assert_int_equal(read_from("s3cret\n", 7, modes[i], pw, err), ERR_FORBIDDEN);
        assert_non_null(strstr(err, "0600 or stricter"));
        assert_null(strstr(err, "s3cret"));
        assert_int_equal(pw[0], 0);
    }
}

static void test_keypass_empty_or_too_long(void **state)
{
    (void)state;
    char pw[KEYPASS_MAX], err[256];
    assert_int_equal(read_from("", 0, 0600, pw, err), ERR_INVALID);
    assert_int_equal(read_from("\nsecond line\n", 13, 0600, pw, err), ERR_INVALID);
    assert_int_equal(read_from("a\0b\n", 4, 0600, pw, err), ERR_INVALID);
    char big[KEYPASS_MAX + 10];
    memset(big, 'x', sizeof big);
    assert_int_equal(read_from(big, sizeof big, 0600, pw, err), ERR_INVALID);
    assert_non_null(strstr(err, "longer than"));
    assert_null(strstr(err, "xxxx"));
    big[KEYPASS_MAX - 2] = '\n'; /* KEYPASS_MAX - 2 bytes: the longest accepted */
    assert_int_equal(read_from(big, sizeof big, 0600, pw, err), 0);
    assert_int_equal(strlen(pw), KEYPASS_MAX - 2);
}

static void test_keypass_missing_file_named(void **state)
{
    (void)state;
    char pw[KEYPASS_MAX], err[256];
    assert_int_equal(keypass_read("/nonexistent/key.pw", pw, err, sizeof err), ERR_IO);
    assert_non_null(strstr(err, "/nonexistent/key.pw"));
    assert_non_null(strstr(err, "No such file"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keypass_first_line),
        cmocka_unit_test(test_keypass_open_modes_refused),
        cmocka_unit_test(test_keypass_empty_or_too_long),
        cmocka_unit_test(test_keypass_missing_file_named),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
