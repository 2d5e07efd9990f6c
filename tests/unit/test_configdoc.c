/* Documents made from the option table: the example file parses (with
 * every commented-out default switched on, too), and it and the manual page
 * name every option of the table; plus the listener checks config_parse
 * makes across lines (a listener given twice, a key password file without
 * a key). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/config.h"
#include "core/configdoc.h"

static char *capture(void (*print)(FILE *))
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    print(f);
    fclose(f);
    return text;
}

static void print_example(FILE *f)
{
    configdoc_print_example(f);
}

static void print_man(FILE *f)
{
    configdoc_print_man(f, "9.9.9");
}

/* Uncomments every "#name value" line whose name is an option and whose
 * value is not a placeholder (a path, or VALUE for an empty default). */
static char *switch_on_defaults(const char *text)
{
    char *out = calloc(1, strlen(text) + 1), *o = out;
    struct config_option_doc d;
    for (const char *line = text; *line;) {
        size_t n = strcspn(line, "\n");
        bool on = false;
        for (size_t i = 0; line[0] == '#' && config_option_doc(i, &d); i++) {
            size_t k = strlen(d.name);
            if (!strncmp(line + 1, d.name, k) && line[1 + k] == ' ' &&
                !memmem(line, n, "/etc/certmq/FILE", 16) && !memmem(line, n, " VALUE", 6))
                on = true;
        }
        memcpy(o, line + on, n - on);
        o += n - on;
        *o++ = '\n';
        line += n + (line[n] == '\n');
    }
    return out;
}

static void test_configdoc_example_parses(void **state)
{
    (void)state;
    char *text = capture(print_example), err[512] = "";
    struct config cfg;
    config_defaults(&cfg);
    assert_int_equal(config_parse(&cfg, text, strlen(text), "example", err, sizeof err), 0);
    assert_string_equal(cfg.data_dir, "/var/lib/certmq");
    assert_int_equal(cfg.n_listeners, 2);
    assert_int_equal(cfg.listeners[0].port, 8883);
    assert_string_equal(cfg.listeners[0].certfile, "/etc/certmq/server.pem");
    assert_int_equal(cfg.listeners[1].protocol, PROTO_HTTP);
    assert_string_equal(cfg.listeners[1].addr, "127.0.0.1");

    char *on = switch_on_defaults(text);
    struct config with_defaults;
    config_defaults(&with_defaults);
    assert_int_equal(config_parse(&with_defaults, on, strlen(on), "on", err, sizeof err), 0);
    assert_memory_equal(&cfg, &with_defaults, sizeof cfg); /* the comments are the defaults */
    free(on);
    free(text);
}

static void test_configdoc_every_option_documented(void **state)
{
    (void)state;
    char *example = capture(print_example), *man = capture(print_man);
    struct config_option_doc d;
    size_t i = 0;
    for (; config_option_doc(i, &d); i++) {
        char on[96], off[96];
        snprintf(on, sizeof on, "\n%s ", d.name);
        snprintf(off, sizeof off, "\n#%s ", d.name);
        assert_true(strstr(example, on) || strstr(example, off));
        char want[96];
        snprintf(want, sizeof want, ".B %s\n", d.name);
        assert_true(d.is_listener || strstr(man, want));
    }
    assert_true(i >= 20);
    assert_non_null(strstr(man, ".TH CERTMQ 1"));
    assert_non_null(strstr(man, "certmq 9.9.9"));
    free(example);
    free(man);
}

static int parse(const char *text, char *err, size_t n)
{
    struct config cfg;
    config_defaults(&cfg);
    return config_parse(&cfg, text, strlen(text), "t.conf", err, n);
}

static void test_config_listener_given_twice(void **state)
{
    (void)state;
    char err[256];
    assert_int_equal(parse("listener 1883\nlistener 1883\n", err, sizeof err), ERR_INVALID);
    assert_non_null(strstr(err, "listener 1883 * is given twice"));
    assert_int_equal(parse("listener 1883 ::1\nlistener 1883\n", err, sizeof err), ERR_INVALID);
    assert_int_equal(
        parse("listener 1883 10.0.0.1\nlistener 1883 10.0.0.1\nprotocol http\n", err, sizeof err),
        ERR_INVALID);
    assert_int_equal(parse("listener 1883 10.0.0.1\nlistener 1883 10.0.0.2\n", err, sizeof err), 0);
    assert_int_equal(parse("listener 1883\nlistener 1884\n", err, sizeof err), 0);
}

static void test_config_key_password_file_needs_a_key(void **state)
{
    (void)state;
    char err[256];
    assert_int_equal(parse("listener 1883\nkeyfile_password_file /k.pw\n", err, sizeof err),
                     ERR_INVALID);
    assert_non_null(strstr(err, "needs a keyfile"));
    assert_int_equal(parse("listener 1883\nprotocol http\ncertfile /c\nkeyfile /k\n"
                           "keyfile_password_file /k.pw\n",
                           err, sizeof err),
                     0);
    assert_int_equal(parse("listener 1883\ncertfile /c\nkeyfile /k\nkeyfile_password_file /k.pw\n",
                           err, sizeof err),
                     0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_configdoc_example_parses),
        cmocka_unit_test(test_configdoc_every_option_documented),
        cmocka_unit_test(test_config_listener_given_twice),
        cmocka_unit_test(test_config_key_password_file_needs_a_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
