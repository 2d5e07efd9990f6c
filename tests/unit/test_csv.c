/* CSV parser tests: separator detection, quoting, line ends, blank lines,
 * short and long rows, and the limits that make a row malformed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "identity/csv.h"

static int parse(const char *text, struct csv *c)
{
    return csv_parse((const uint8_t *)text, strlen(text), c);
}

static void test_csv_comma_with_header(void **state)
{
    (void)state;
    struct csv c;
    assert_int_equal(
        parse("ID,CREDENTIALS,AUTH_TYPE\ndev1,,CERTIFICATES\ndev2,,CERTIFICATES\n", &c), 0);
    assert_int_equal(c.sep, ',');
    assert_int_equal(c.ncols, 3);
    assert_int_equal(c.nrows, 2);
    assert_int_equal(csv_col(&c, "id"), 0);
    assert_int_equal(csv_col(&c, "AUTH_TYPE"), 2);
    assert_int_equal(csv_col(&c, "TYPE"), -1);
    assert_string_equal(csv_cell(&c, 1, 0), "dev2");
    assert_string_equal(csv_cell(&c, 1, 1), "");
    assert_string_equal(csv_cell(&c, 0, -1), "");
    assert_string_equal(csv_cell(&c, 5, 0), "");
    assert_int_equal(c.line[2], 3);
    csv_free(&c);
}

static void test_csv_detects_semicolon_and_tab(void **state)
{
    (void)state;
    struct csv c;
    assert_int_equal(parse("ID;AUTH_TYPE;NAME\r\nd1;CERTIFICATES;a,b\r\n", &c), 0);
    assert_int_equal(c.sep, ';');
    assert_string_equal(csv_cell(&c, 0, 2), "a,b");
    csv_free(&c);
    assert_int_equal(parse("ID\tAUTH_TYPE\td;x\nd1\tCERTIFICATES\tv;w\n", &c), 0);
    assert_int_equal(c.sep, '\t');
    assert_string_equal(csv_cell(&c, 0, 2), "v;w");
    csv_free(&c);
}

static void test_csv_quotes(void **state)
{
    (void)state;
    struct csv c;
    assert_int_equal(parse("ID,NAME\n\"d,1\",\"say \"\"hi\"\"\nthere\"\n", &c), 0);
    assert_int_equal(c.nrows, 1);
    assert_string_equal(csv_cell(&c, 0, 0), "d,1");
    assert_string_equal(csv_cell(&c, 0, 1), "say \"hi\"\nthere");
    csv_free(&c);
    assert_int_equal(parse("ID,NAME\n\"unterminated,x\n", &c), ERR_MALFORMED);
}

static void test_csv_blank_lines_bom_and_trim(void **state)
{
    (void)state;
    struct csv c;
    assert_int_equal(parse("\xEF\xBB\xBF ID , AUTH_TYPE \n\n  d1 , CERTIFICATES\n\n\nd2\n", &c), 0);
    assert_int_equal(c.nrows, 2);
    assert_int_equal(csv_col(&c, "ID"), 0);
    assert_string_equal(csv_cell(&c, 0, 0), "d1");
    assert_string_equal(csv_cell(&c, 1, 1), ""); /* short row padded */
    assert_int_equal(c.line[1], 3);
    assert_int_equal(c.line[2], 6);
    csv_free(&c);
}

static void test_csv_malformed(void **state)
{
    (void)state;
    struct csv c;
    assert_int_equal(parse("", &c), ERR_MALFORMED);
    assert_int_equal(parse("\n\n", &c), ERR_MALFORMED);
    assert_int_equal(parse("ID,AUTH_TYPE\na,b,c\n", &c), ERR_MALFORMED);
    char *wide = malloc(70 * 2 + 2);
    size_t n = 0;
    for (int i = 0; i < 70; i++) {
        wide[n++] = 'a';
        wide[n++] = ',';
    }
    wide[n] = 0;
    assert_int_equal(parse(wide, &c), ERR_MALFORMED);
    free(wide);
    char *longf = malloc(CSV_MAX_FIELD + 10);
    memset(longf, 'x', CSV_MAX_FIELD + 5);
    longf[CSV_MAX_FIELD + 5] = 0;
    assert_int_equal(parse(longf, &c), ERR_MALFORMED);
    free(longf);
}

static void test_csv_no_trailing_newline_and_cr_only(void **state)
{
    (void)state;
    struct csv c;
    assert_int_equal(parse("ID\rd1\rd2", &c), 0);
    assert_int_equal(c.nrows, 2);
    assert_string_equal(csv_cell(&c, 1, 0), "d2");
    csv_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_csv_comma_with_header),
        cmocka_unit_test(test_csv_detects_semicolon_and_tab),
        cmocka_unit_test(test_csv_quotes),
        cmocka_unit_test(test_csv_blank_lines_bom_and_trim),
        cmocka_unit_test(test_csv_malformed),
        cmocka_unit_test(test_csv_no_trailing_newline_and_cr_only),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
