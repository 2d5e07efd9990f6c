/* certmq-loadgen measurements: the monotonic clock, a fixed-size latency
 * histogram (so a long run never allocates per sample) and the broker's CPU
 * time read from /proc/PID/stat. */
#include "lg.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

uint64_t lg_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Values below 64 have a bucket each; above, a power of two 2^e is cut into
 * 64 buckets, so a bucket is at most 1/64 (1.6%) of its value wide. */
static size_t hist_index(uint64_t v)
{
    if (v < 64) return (size_t)v;
    int e = 63 - __builtin_clzll(v);
    size_t sub = (size_t)((v >> (e - 6)) & 63);
    size_t i = (size_t)(e - 5) * 64 + sub;
    return i < LG_HIST_BUCKETS ? i : LG_HIST_BUCKETS - 1;
}

static uint64_t hist_value(size_t i)
{
    if (i < 64) return i;
    int e = (int)(i / 64) + 5;
    uint64_t width = 1ull << (e - 6);
    return (64 + i % 64) * width + width / 2;
}

void lg_hist_add(struct lg_hist *h, uint64_t v)
{
    h->b[hist_index(v)]++;
    h->count++;
}

uint64_t lg_hist_quantile(const struct lg_hist *h, double q)
{
    if (!h->count) return 0;
    uint64_t rank = (uint64_t)(q * (double)h->count);
    if (rank >= h->count) rank = h->count - 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < LG_HIST_BUCKETS; i++) {
        seen += h->b[i];
        if (seen > rank) return hist_value(i);
    }
    return hist_value(LG_HIST_BUCKETS - 1);
}

double lg_proc_cpu(pid_t pid)
{
    char path[64], line[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(line, 1, sizeof line - 1, f);
    fclose(f);
    line[n] = '\0';
    /* The command name may hold spaces and parentheses: fields are counted
     * from the last ')'; utime and stime are fields 14 and 15. */
    const char *p = strrchr(line, ')');
    if (!p) return -1;
    unsigned long long ut = 0, st = 0;
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    long hz = sysconf(_SC_CLK_TCK);
    return (double)(ut + st) / (double)(hz > 0 ? hz : 100);
}
