/* Counters for GET /metrics (see metrics.h). Handshake counts and the
 * histogram are atomics bumped by the workers; the refusal table is a small
 * fixed array of (reason, count) whose slots are claimed once by a
 * compare-and-swap on the reason pointer, so no path here takes a lock. */
#include "core/metrics.h"

#include <stdatomic.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* Upper bounds of the handshake latency buckets, in seconds. */
static const double hs_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0};
#define N_BOUNDS (sizeof hs_bounds / sizeof hs_bounds[0])

struct hs_hist {
    atomic_ulong bucket[N_BOUNDS + 1]; /* last: above every bound */
    atomic_ulong sum_us;
    atomic_ulong count;
};

static struct hs_hist hs[2]; /* [0] full, [1] resumed */
static struct hs_hist store_ops;

struct reason_slot {
    _Atomic(const char *) reason;
    atomic_ulong n;
};

static struct reason_slot reasons[METRICS_MAX_REASONS];
static atomic_ulong reasons_other;

static void hist_add(struct hs_hist *h, uint64_t micros)
{
    size_t i = 0;
    while (i < N_BOUNDS && (double)micros / 1e6 > hs_bounds[i]) i++;
    atomic_fetch_add_explicit(&h->bucket[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_us, micros, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
}

void metrics_tls_handshake(bool resumed, uint64_t micros)
{
    hist_add(&hs[resumed ? 1 : 0], micros);
}

void metrics_store_op(uint64_t micros)
{
    hist_add(&store_ops, micros);
}

void metrics_refusal(const char *reason)
{
    if (!reason) reason = "unknown";
    for (size_t i = 0; i < METRICS_MAX_REASONS; i++) {
        const char *cur = atomic_load(&reasons[i].reason);
        if (!cur) {
            const char *expect = NULL;
            if (atomic_compare_exchange_strong(&reasons[i].reason, &expect, reason))
                cur = reason;
            else
                cur = expect;
        }
        if (cur == reason || strcmp(cur, reason) == 0) {
            atomic_fetch_add_explicit(&reasons[i].n, 1, memory_order_relaxed);
            return;
        }
    }
    atomic_fetch_add_explicit(&reasons_other, 1, memory_order_relaxed);
}

static atomic_ulong cluster[METRICS_CLUSTER_N];

void metrics_cluster(enum metrics_cluster what)
{
    atomic_fetch_add_explicit(&cluster[what], 1, memory_order_relaxed);
}

void metrics_family(FILE *out, const char *name, const char *type, const char *help)
{
    fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void metrics_label(FILE *out, const char *value)
{
    for (const char *p = value; *p; p++) {
        if (*p == '\\' || *p == '"')
            fprintf(out, "\\%c", *p);
        else if (*p == '\n')
            fputs("\\n", out);
        else
            fputc(*p, out);
    }
}

/* One histogram's samples; labels is "" or `mode="full",` (with the comma). */
static void write_hist(FILE *out, const char *name, const char *labels, struct hs_hist *h)
{
    unsigned long cum = 0;
    for (size_t i = 0; i <= N_BOUNDS; i++) {
        cum += atomic_load(&h->bucket[i]);
        if (i < N_BOUNDS)
            fprintf(out, "%s_bucket{%sle=\"%g\"} %lu\n", name, labels, hs_bounds[i], cum);
        else
            fprintf(out, "%s_bucket{%sle=\"+Inf\"} %lu\n", name, labels, cum);
    }
    size_t n = strlen(labels);
    /* The same labels without the trailing comma, in braces, or nothing. */
    if (n)
        fprintf(out, "%s_sum{%.*s} %.6f\n%s_count{%.*s} %lu\n", name, (int)n - 1, labels,
                (double)atomic_load(&h->sum_us) / 1e6, name, (int)n - 1, labels, cum);
    else
        fprintf(out, "%s_sum %.6f\n%s_count %lu\n", name, (double)atomic_load(&h->sum_us) / 1e6,
                name, cum);
}

static void write_handshakes(FILE *out)
{
    static const char *const mode[2] = {"full", "resumed"};
    static const char *const labels[2] = {"mode=\"full\",", "mode=\"resumed\","};
    metrics_family(out, "certmq_tls_handshakes_total", "counter",
                   "TLS handshakes completed on MQTT listeners, full or resumed");
    for (int m = 0; m < 2; m++)
        fprintf(out, "certmq_tls_handshakes_total{mode=\"%s\"} %lu\n", mode[m],
                atomic_load(&hs[m].count));
    metrics_family(out, "certmq_tls_handshake_seconds", "histogram",
                   "time from accept to the end of the TLS handshake");
    for (int m = 0; m < 2; m++) write_hist(out, "certmq_tls_handshake_seconds", labels[m], &hs[m]);
    metrics_family(out, "certmq_store_operation_seconds", "histogram",
                   "time of one store (SQLite) operation, waiting for the database included");
    write_hist(out, "certmq_store_operation_seconds", "", &store_ops);
}

static void write_refusals(FILE *out)
{
    metrics_family(out, "certmq_refusals_total", "counter",
                   "refused MQTT connection attempts by named reason");
    for (size_t i = 0; i < METRICS_MAX_REASONS; i++) {
        const char *r = atomic_load(&reasons[i].reason);
        if (!r) break;
        fputs("certmq_refusals_total{reason=\"", out);
        metrics_label(out, r);
        fprintf(out, "\"} %lu\n", atomic_load(&reasons[i].n));
    }
    unsigned long other = atomic_load(&reasons_other);
    if (other) fprintf(out, "certmq_refusals_total{reason=\"other\"} %lu\n", other);
}

/* Resident set size from /proc/self/statm (pages), 0 when unreadable. */
static unsigned long long rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long long size = 0, res = 0;
    if (!f) return 0;
    if (fscanf(f, "%llu %llu", &size, &res) != 2) res = 0;
    fclose(f);
    long page = sysconf(_SC_PAGESIZE);
    return res * (unsigned long long)(page > 0 ? page : 4096);
}

static void write_process(FILE *out)
{
    struct rusage ru;
    double cpu = 0;
    if (getrusage(RUSAGE_SELF, &ru) == 0)
        cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
              (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    metrics_family(out, "process_cpu_seconds_total", "counter",
                   "user and system CPU time spent, in seconds");
    fprintf(out, "process_cpu_seconds_total %.3f\n", cpu);
    metrics_family(out, "process_resident_memory_bytes", "gauge", "resident memory, in bytes");
    fprintf(out, "process_resident_memory_bytes %llu\n", rss_bytes());
}

static void write_cluster(FILE *out)
{
    static const char *const dir[] = {"out", "in"};
    metrics_family(out, "certmq_cluster_messages_total", "counter",
                   "messages between this node and the cluster, by direction");
    for (int i = 0; i < 2; i++)
        fprintf(out, "certmq_cluster_messages_total{direction=\"%s\"} %lu\n", dir[i],
                atomic_load(&cluster[i]));
    metrics_family(out, "certmq_cluster_errors_total", "counter",
                   "cluster messages refused (malformed envelope or subject), lost (could not be "
                   "published) or dropped as duplicates");
    static const char *const why[] = {"malformed", "lost", "duplicate"};
    for (int i = 0; i < 3; i++)
        fprintf(out, "certmq_cluster_errors_total{kind=\"%s\"} %lu\n", why[i],
                atomic_load(&cluster[METRICS_CLUSTER_BAD + i]));
}

void metrics_write(FILE *out)
{
    write_handshakes(out);
    write_refusals(out);
    write_cluster(out);
    write_process(out);
}
