/* The process-wide metrics writer: handshake histograms are cumulative and
 * end in +Inf = count, refusal reasons are counted by text (a new pointer to
 * the same text shares the slot) and label values are escaped. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/metrics.h"

static char *render(void)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    metrics_write(f);
    fclose(f);
    return text;
}

static void test_metrics_handshake_histogram(void **state)
{
    (void)state;
    metrics_tls_handshake(false, 500);     /* 0.5 ms: first bucket */
    metrics_tls_handshake(false, 30000);   /* 30 ms */
    metrics_tls_handshake(false, 5000000); /* 5 s: only +Inf */
    metrics_tls_handshake(true, 100);
    char *t = render();
    assert_non_null(strstr(t, "certmq_tls_handshakes_total{mode=\"full\"} 3\n"));
    assert_non_null(strstr(t, "certmq_tls_handshakes_total{mode=\"resumed\"} 1\n"));
    assert_non_null(
        strstr(t, "certmq_tls_handshake_seconds_bucket{mode=\"full\",le=\"0.001\"} 1\n"));
    assert_non_null(
        strstr(t, "certmq_tls_handshake_seconds_bucket{mode=\"full\",le=\"0.05\"} 2\n"));
    assert_non_null(strstr(t, "certmq_tls_handshake_seconds_bucket{mode=\"full\",le=\"1\"} 2\n"));
    assert_non_null(
        strstr(t, "certmq_tls_handshake_seconds_bucket{mode=\"full\",le=\"+Inf\"} 3\n"));
    assert_non_null(strstr(t, "certmq_tls_handshake_seconds_count{mode=\"full\"} 3\n"));
    assert_non_null(strstr(t, "certmq_tls_handshake_seconds_sum{mode=\"full\"} 5.030500\n"));
    free(t);
}

static void test_metrics_refusals_by_text_and_escaped(void **state)
{
    (void)state;
    char copy[32];
    strcpy(copy, "expired");
    metrics_refusal("expired");
    metrics_refusal(copy); /* same text, another pointer */
    metrics_refusal("say \"no\"\\");
    char *t = render();
    assert_non_null(strstr(t, "certmq_refusals_total{reason=\"expired\"} 2\n"));
    assert_non_null(strstr(t, "certmq_refusals_total{reason=\"say \\\"no\\\"\\\\\"} 1\n"));
    assert_non_null(strstr(t, "# TYPE process_cpu_seconds_total counter\n"));
    assert_non_null(strstr(t, "process_resident_memory_bytes "));
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_metrics_handshake_histogram),
        cmocka_unit_test(test_metrics_refusals_by_text_and_escaped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
