/* Logging: one write per line, and a message whose fields hold newlines,
 * terminal escapes or invalid UTF-8 still comes out as exactly one line. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"

/* Runs log_info("client %s connected", field) with stderr on a pipe and
 * returns what was written. */
static size_t capture(const char *field, char *out, size_t cap)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    int saved = dup(STDERR_FILENO);
    assert_true(saved >= 0);
    assert_true(dup2(fds[1], STDERR_FILENO) >= 0);
    log_info("client %s connected", field);
    assert_true(dup2(saved, STDERR_FILENO) >= 0);
    close(saved);
    close(fds[1]);
    ssize_t n = read(fds[0], out, cap - 1);
    close(fds[0]);
    assert_true(n > 0);
    out[n] = '\0';
    return (size_t)n;
}

static void test_log_escapes_forged_line(void **state)
{
    (void)state;
    char out[8192];
    size_t n = capture("evil\n2026-01-01T00:00:00.000Z INFO admin logged in", out, sizeof out);
    assert_int_equal(out[n - 1], '\n');
    assert_null(memchr(out, '\n', n - 1)); /* one line only */
    assert_non_null(strstr(out, "client evil\\n2026-01-01T00:00:00.000Z INFO admin logged in "
                                "connected"));
}

static void test_log_escapes_terminal_and_invalid_bytes(void **state)
{
    (void)state;
    char out[8192];
    capture("\x1b[2J\r\xff", out, sizeof out);
    assert_non_null(strstr(out, "client \\x1b[2J\\r\\xff connected\n"));
}

static void test_log_long_line_stays_one_line(void **state)
{
    (void)state;
    char field[3000], out[8192];
    memset(field, '\n', sizeof field - 1);
    field[sizeof field - 1] = '\0';
    size_t n = capture(field, out, sizeof out);
    assert_int_equal(out[n - 1], '\n');
    assert_null(memchr(out, '\n', n - 1));
    assert_true(n <= 4096);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_log_escapes_forged_line),
        cmocka_unit_test(test_log_escapes_terminal_and_invalid_bytes),
        cmocka_unit_test(test_log_long_line_stays_one_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
