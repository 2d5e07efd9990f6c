/* Streaming multipart/form-data reader: the file part's bytes, whatever the
 * pieces the body arrives in, boundaries that overlap themselves, data that
 * almost holds a delimiter, parts skipped, and the bodies that are refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/multipart.h"

struct sink {
    char data[4096];
    size_t len;
    size_t calls;
    int fail_after; /* > 0: the n-th call fails */
};

static int collect(void *arg, const uint8_t *p, size_t n)
{
    struct sink *s = arg;
    s->calls++;
    if (s->fail_after && (int)s->calls >= s->fail_after) return ERR_MALFORMED;
    assert_true(n > 0 && s->len + n <= sizeof s->data);
    memcpy(s->data + s->len, p, n);
    s->len += n;
    return 0;
}

/* Feeds body cut at the given offsets; returns finish's result. */
static int read_cut(const char *ct, const char *body, size_t len, const size_t *cuts, size_t ncuts,
                    struct sink *s)
{
    struct multipart *m = NULL;
    size_t at = 0;
    memset(s, 0, sizeof *s);
    int rc = multipart_new(ct, collect, s, &m);
    if (rc < 0) return rc;
    for (size_t i = 0; i <= ncuts && rc == 0; i++) {
        size_t end = i < ncuts ? cuts[i] : len;
        rc = multipart_feed(m, (const uint8_t *)body + at, end - at);
        at = end;
    }
    if (rc == 0) rc = multipart_finish(m);
    multipart_free(m);
    return rc;
}

static int read_whole(const char *ct, const char *body, struct sink *s)
{
    return read_cut(ct, body, strlen(body), NULL, 0, s);
}

/* As curl -F sends it: the boundary is dashes and hex, so "\r\n--" and
 * runs of '-' in the data start matches that fail late. */
#define CURL_CT "multipart/form-data; boundary=------------------------d74496d66958873e"
static const char curl_body[] = "--------------------------d74496d66958873e\r\n"
                                "Content-Disposition: form-data; name=\"note\"\r\n\r\n"
                                "not this\r\n"
                                "--------------------------d74496d66958873e\r\n"
                                "Content-Disposition: form-data; name=\"file\"; "
                                "filename=\"d.csv\"\r\n"
                                "Content-Type: text/csv\r\n\r\n"
                                "ID,AUTH_TYPE\r\n--\r\n\r\n---------------------------d744\r\n"
                                "--------------------------d74496d66958873\r\nend"
                                "\r\n--------------------------d74496d66958873e--\r\n";
static const char curl_file[] = "ID,AUTH_TYPE\r\n--\r\n\r\n---------------------------d744\r\n"
                                "--------------------------d74496d66958873\r\nend";

static void test_multipart_file_part_at_every_cut(void **state)
{
    (void)state;
    struct sink s;
    size_t len = strlen(curl_body);
    assert_int_equal(read_whole(CURL_CT, curl_body, &s), 0);
    assert_int_equal(s.len, strlen(curl_file));
    assert_memory_equal(s.data, curl_file, s.len);
    for (size_t i = 0; i <= len; i++)
        for (size_t j = i; j <= len; j += 7) {
            size_t cuts[2] = {i, j};
            assert_int_equal(read_cut(CURL_CT, curl_body, len, cuts, 2, &s), 0);
            assert_int_equal(s.len, strlen(curl_file));
            assert_memory_equal(s.data, curl_file, s.len);
        }
    size_t *every = malloc(len * sizeof *every);
    for (size_t i = 0; i < len; i++) every[i] = i + 1;
    assert_int_equal(read_cut(CURL_CT, curl_body, len, every, len, &s), 0);
    assert_memory_equal(s.data, curl_file, s.len);
    free(every);
}

static void test_multipart_quoted_boundary_and_only_the_first_file(void **state)
{
    (void)state;
    struct sink s;
    const char *body = "preamble\r\n--b\"x\r\n"
                       "Content-Disposition: form-data; name=\"other\"; filename=\"file\"\r\n\r\n"
                       "no\r\n--b\"x\r\n"
                       "content-disposition: form-data; NAME=\"file\"\r\n\r\n"
                       "yes\r\n--b\"x\r\n"
                       "Content-Disposition: form-data; name=\"file\"\r\n\r\n"
                       "again\r\n--b\"x--\r\n";
    assert_int_equal(read_whole("multipart/form-data; boundary=\"b\"x\"", body, &s), 0);
    assert_int_equal(s.len, 3);
    assert_memory_equal(s.data, "yes", 3);
}

static void test_multipart_refusals(void **state)
{
    (void)state;
    struct sink s;
    struct multipart *m = NULL;
    assert_int_equal(multipart_new("text/csv", collect, &s, &m), ERR_INVALID);
    assert_int_equal(multipart_new("multipart/form-data", collect, &s, &m), ERR_INVALID);
    assert_int_equal(multipart_new("multipart/form-data; boundary=", collect, &s, &m), ERR_INVALID);
    char ct[300];
    snprintf(ct, sizeof ct, "multipart/form-data; boundary=%0*d", MULTIPART_BOUNDARY_MAX + 1, 0);
    assert_int_equal(multipart_new(ct, collect, &s, &m), ERR_INVALID);
    const char *ct_b = "multipart/form-data; boundary=B";
    /* no part named file; cut before its end; the last delimiter first */
    assert_int_equal(
        read_whole(ct_b, "--B\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\nv\r\n--B--\r\n",
                   &s),
        ERR_INVALID);
    assert_int_equal(
        read_whole(ct_b, "--B\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nID,A\n", &s),
        ERR_INVALID);
    assert_int_equal(s.len, 5); /* what came was passed on; finish says it is incomplete */
    assert_int_equal(read_whole(ct_b, "--B--\r\n--B\r\n", &s), ERR_INVALID);
    /* header lines past MULTIPART_HEADER_MAX */
    size_t n = MULTIPART_HEADER_MAX + 100;
    char *big = malloc(n + 1);
    memset(big, 'h', n);
    memcpy(big, "--B\r\n", 5);
    big[n] = 0;
    assert_int_equal(read_whole(ct_b, big, &s), ERR_INVALID);
    free(big);
}

static void test_multipart_sink_error_is_kept(void **state)
{
    (void)state;
    struct sink s;
    struct multipart *m = NULL;
    const char *body = "--B\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nabc";
    memset(&s, 0, sizeof s);
    s.fail_after = 1;
    assert_int_equal(multipart_new("multipart/form-data; boundary=B", collect, &s, &m), 0);
    assert_int_equal(multipart_feed(m, (const uint8_t *)body, strlen(body)), ERR_MALFORMED);
    assert_int_equal(multipart_feed(m, (const uint8_t *)"\r\n--B--", 7), ERR_MALFORMED);
    assert_int_equal(multipart_finish(m), ERR_MALFORMED);
    multipart_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_multipart_file_part_at_every_cut),
        cmocka_unit_test(test_multipart_quoted_boundary_and_only_the_first_file),
        cmocka_unit_test(test_multipart_refusals),
        cmocka_unit_test(test_multipart_sink_error_is_kept),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
