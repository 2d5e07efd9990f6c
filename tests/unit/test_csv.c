/* CSV parser tests: separator detection, quoting, line ends, blank lines,
 * short and long rows, the limits that make a row malformed, and the same
 * table from input fed in pieces, cut anywhere. */
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

/* Feeds text in the pieces given by cuts (ascending offsets). */
static int parse_cut(const char *text, const size_t *cuts, size_t ncuts, struct csv *c)
{
    struct csv_stream *s = NULL;
    size_t len = strlen(text), at = 0;
    assert_int_equal(csv_stream_new(&s), 0);
    for (size_t i = 0; i <= ncuts; i++) {
        size_t end = i < ncuts ? cuts[i] : len;
        int rc = csv_stream_feed(s, (const uint8_t *)text + at, end - at);
        if (rc < 0) {
            assert_int_equal(csv_stream_feed(s, (const uint8_t *)"x", 1), rc); /* sticky */
            csv_stream_free(s);
            return rc;
        }
        at = end;
    }
    return csv_stream_finish(s, c);
}

static void assert_same_table(const struct csv *a, const struct csv *b)
{
    assert_int_equal(a->sep, b->sep);
    assert_int_equal(a->ncols, b->ncols);
    assert_int_equal(a->nrows, b->nrows);
    for (size_t r = 0; r <= a->nrows; r++) {
        assert_int_equal(a->line[r], b->line[r]);
        for (size_t k = 0; k < a->ncols; k++)
            assert_string_equal(a->cells[r * a->ncols + k], b->cells[r * b->ncols + k]);
    }
}

/* Quoted fields with separators, "" and CRLF inside, CRLF line ends, a
 * BOM, a blank CRLF line and a lone CR: every cut, in two and in three. */
static const char quoted_crlf[] = "\xEF\xBB\xBFID;NAME;AUTH_TYPE\r\n"
                                  "\"d;1\";\"say \"\"hi\"\"\r\nthere\";CERTIFICATES\r\n"
                                  "\r\n"
                                  " d2 ;\"\";BASIC\rd3;x\"y;\r\n";

static void check_quoted_crlf(const struct csv *c)
{
    assert_int_equal(c->sep, ';');
    assert_int_equal(c->ncols, 3);
    assert_int_equal(c->nrows, 3);
    assert_string_equal(csv_cell(c, 0, 0), "d;1");
    assert_string_equal(csv_cell(c, 0, 1), "say \"hi\"\r\nthere");
    assert_string_equal(csv_cell(c, 1, 0), "d2");
    assert_string_equal(csv_cell(c, 1, 1), "");
    assert_string_equal(csv_cell(c, 1, 2), "BASIC");
    assert_string_equal(csv_cell(c, 2, 1), "x\"y");
    assert_int_equal(c->line[1], 2);
    assert_int_equal(c->line[2], 5);
    assert_int_equal(c->line[3], 6);
}

static void test_csv_stream_split_at_every_byte(void **state)
{
    (void)state;
    struct csv whole, cut;
    size_t len = strlen(quoted_crlf);
    assert_int_equal(parse(quoted_crlf, &whole), 0);
    check_quoted_crlf(&whole);
    for (size_t i = 0; i <= len; i++) {
        assert_int_equal(parse_cut(quoted_crlf, &i, 1, &cut), 0);
        assert_same_table(&whole, &cut);
        csv_free(&cut);
        for (size_t j = i; j <= len; j++) {
            size_t cuts[2] = {i, j};
            assert_int_equal(parse_cut(quoted_crlf, cuts, 2, &cut), 0);
            assert_same_table(&whole, &cut);
            csv_free(&cut);
        }
    }
    size_t every[sizeof quoted_crlf];
    for (size_t i = 0; i < len; i++) every[i] = i + 1;
    assert_int_equal(parse_cut(quoted_crlf, every, len, &cut), 0);
    assert_same_table(&whole, &cut);
    csv_free(&cut);
    csv_free(&whole);
}

static void test_csv_stream_errors_at_every_cut(void **state)
{
    (void)state;
    const char *bad[] = {"ID,NAME\n\"open,x\r\n", "ID,AUTH_TYPE\r\na,b,c\r\n", "\r\n \r\n"};
    struct csv c;
    for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++)
        for (size_t i = 0; i <= strlen(bad[b]); i++)
            assert_int_equal(parse_cut(bad[b], &i, 1, &c), ERR_MALFORMED);
}

static void test_csv_stream_holds_rows_not_input(void **state)
{
    (void)state;
    struct csv_stream *s = NULL;
    struct csv c;
    char row[600];
    assert_int_equal(csv_stream_new(&s), 0);
    assert_int_equal(csv_stream_feed(s, (const uint8_t *)"ID,AUTH_TYPE,PAD\n", 17), 0);
    memset(row, ' ', sizeof row);
    memcpy(row, "dev,CERTIFICATES,", 17);
    row[sizeof row - 1] = '\n';
    for (int i = 0; i < 2000; i++)
        assert_int_equal(csv_stream_feed(s, (uint8_t *)row, sizeof row), 0);
    /* 1.2 MB of input; held: the rows' cells and one copy of each text */
    assert_true(csv_stream_held(s) < 200 * 1024);
    assert_int_equal(csv_stream_finish(s, &c), 0);
    assert_int_equal(c.nrows, 2000);
    assert_string_equal(csv_cell(&c, 1999, 2), "");
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
        cmocka_unit_test(test_csv_stream_split_at_every_byte),
        cmocka_unit_test(test_csv_stream_errors_at_every_cut),
        cmocka_unit_test(test_csv_stream_holds_rows_not_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
