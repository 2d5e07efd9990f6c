/* Config table and file parser: defaults, listener blocks, and every kind
 * of bad line naming its file and line number. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/config.h"

static char path[64];

static int load(struct config *cfg, const char *text, char *err, size_t n)
{
    strcpy(path, "/tmp/certmq-test-config-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    config_defaults(cfg);
    int rc = config_load(cfg, path, err, n);
    unlink(path);
    return rc;
}

static void test_config_defaults(void **state)
{
    (void)state;
    struct config c;
    config_defaults(&c);
    assert_string_equal(c.data_dir, "./var");
    assert_int_equal(c.max_chain_length, 2);
    assert_true(c.require_ca_in_chain);
    assert_false(c.allow_anonymous);
    assert_int_equal(c.max_packet_size, 1048576);
    assert_int_equal(c.n_listeners, 0);
}

static void test_config_listener_blocks(void **state)
{
    (void)state;
    struct config c;
    char err[256];
    const char *text = "# comment\n"
                       "max_inflight 5   # trailing comment\n"
                       "listener 8883 127.0.0.1\n"
                       "certfile /s.pem\n"
                       "keyfile /s.key\n"
                       "client_certificates required\n"
                       "listener 1883\n"
                       "listener 8080\n"
                       "protocol http\n";
    assert_int_equal(load(&c, text, err, sizeof err), 0);
    assert_int_equal(c.max_inflight, 5);
    assert_int_equal(c.n_listeners, 3);
    assert_int_equal(c.listeners[0].port, 8883);
    assert_string_equal(c.listeners[0].addr, "127.0.0.1");
    assert_string_equal(c.listeners[0].certfile, "/s.pem");
    assert_int_equal(c.listeners[0].client_certs, CLIENT_CERTS_REQUIRED);
    assert_int_equal(c.listeners[1].client_certs, CLIENT_CERTS_OPTIONAL);
    assert_string_equal(c.listeners[1].certfile, "");
    assert_int_equal(c.listeners[2].protocol, PROTO_HTTP);
}

static void expect_error(const char *text, const char *line, const char *needle)
{
    struct config c;
    char err[512];
    assert_int_equal(load(&c, text, err, sizeof err), ERR_INVALID);
    char where[96];
    snprintf(where, sizeof where, "%s:%s:", path, line);
    if (!strstr(err, where) || !strstr(err, needle)) fail_msg("unexpected error text: %s", err);
}

static void test_config_bad_lines(void **state)
{
    (void)state;
    expect_error("max_inflight -3\n", "1", "max_inflight must be");
    expect_error("\n\nbogus_option 1\n", "3", "unknown option 'bogus_option'");
    expect_error("allow_anonymous yes\n", "1", "true or false");
    expect_error("certfile /x.pem\n", "1", "must follow a listener");
    expect_error("listener 70000\n", "1", "port must be");
    expect_error("listener 1\nclient_certificates sometimes\n", "2", "unknown value");
    expect_error("max_packet_size\n", "1", "needs a value");
    expect_error("max_connections 12abc\n", "1", "whole number");
}

static void test_config_listener_consistency(void **state)
{
    (void)state;
    struct config c;
    char err[512];
    assert_int_equal(load(&c, "listener 1\ncertfile /a.pem\n", err, sizeof err), ERR_INVALID);
    assert_non_null(strstr(err, "both certfile and keyfile"));
    assert_int_equal(load(&c, "listener 1\nclient_certificates required\n", err, sizeof err),
                     ERR_INVALID);
    assert_non_null(strstr(err, "no TLS"));
}

static void test_config_missing_file(void **state)
{
    (void)state;
    struct config c;
    char err[512];
    config_defaults(&c);
    assert_int_equal(config_load(&c, "/nonexistent/certmq.conf", err, sizeof err), ERR_INVALID);
    assert_non_null(strstr(err, "No such file"));
}

static void test_config_check_serve(void **state)
{
    (void)state;
    struct config c;
    char err[512];
    config_defaults(&c);
    assert_int_equal(config_check_serve(&c, "x.conf", err, sizeof err), ERR_INVALID);
    assert_non_null(strstr(err, "no listener configured"));
    assert_int_equal(load(&c, "listener 1883\n", err, sizeof err), 0);
    assert_int_equal(config_check_serve(&c, "x.conf", err, sizeof err), 0);
    const char *text = "listener 8883\n"
                       "certfile /dev/null\n"
                       "keyfile /nonexistent/k.pem\n";
    assert_int_equal(load(&c, text, err, sizeof err), 0);
    assert_int_equal(config_check_serve(&c, "x.conf", err, sizeof err), ERR_INVALID);
    assert_string_equal(
        err, "x.conf: listener 8883: keyfile /nonexistent/k.pem: No such file or directory");
    assert_int_equal(load(&c, "listener 8883\ncertfile /tmp\nkeyfile /dev/null\n", err, sizeof err),
                     0);
    assert_int_equal(config_check_serve(&c, "x.conf", err, sizeof err), ERR_INVALID);
    assert_non_null(strstr(err, "certfile /tmp: Is a directory"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_defaults),
        cmocka_unit_test(test_config_check_serve),
        cmocka_unit_test(test_config_listener_blocks),
        cmocka_unit_test(test_config_bad_lines),
        cmocka_unit_test(test_config_listener_consistency),
        cmocka_unit_test(test_config_missing_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
