/* Preloaded into certmq by bench/idlemem.sh (not part of the broker): counts
 * OpenSSL's live allocations (via CRYPTO_set_mem_functions) by allocating
 * source line, in jemalloc size classes; memtally_dump(path), called from a
 * debugger, writes the table. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

size_t nallocx(size_t size, int flags); /* jemalloc */

#define SITES 8192
#define HDR   16

struct site {
    const char *file;
    int line;
    atomic_long count, bytes, with_hdr, asked; /* with_hdr: with the tally's own
                                                * header; asked: as requested */
};

static struct site sites[SITES];
static pthread_mutex_t sites_lock = PTHREAD_MUTEX_INITIALIZER;

static uint32_t site_of(const char *file, int line)
{
    uint32_t h = (uint32_t)(((uintptr_t)file >> 3) * 2654435761u) ^ (uint32_t)line * 40503u;
    for (uint32_t i = 0; i < SITES; i++) {
        struct site *s = &sites[(h + i) % SITES];
        const char *f = __atomic_load_n(&s->file, __ATOMIC_ACQUIRE);
        if (f == file && s->line == line) return (h + i) % SITES;
        if (!f) {
            pthread_mutex_lock(&sites_lock);
            if (!s->file) {
                s->line = line;
                __atomic_store_n(&s->file, file, __ATOMIC_RELEASE);
            }
            pthread_mutex_unlock(&sites_lock);
            if (s->file == file && s->line == line) return (h + i) % SITES;
        }
    }
    return 0;
}

static void account(uint32_t idx, size_t n, long sign)
{
    atomic_fetch_add(&sites[idx].count, sign);
    atomic_fetch_add(&sites[idx].bytes, sign * (long)(n ? nallocx(n, 0) : 0));
    atomic_fetch_add(&sites[idx].with_hdr, sign * (long)nallocx(n + HDR, 0));
    atomic_fetch_add(&sites[idx].asked, sign * (long)n);
}

static void *t_malloc(size_t n, const char *file, int line)
{
    uint8_t *p = malloc(n + HDR);
    if (!p) return NULL;
    uint32_t idx = site_of(file ? file : "?", line);
    memcpy(p, &idx, sizeof idx);
    memcpy(p + 8, &n, sizeof n);
    account(idx, n, 1);
    return p + HDR;
}

static void t_free(void *ptr, const char *file, int line)
{
    (void)file;
    (void)line;
    if (!ptr) return;
    uint8_t *p = (uint8_t *)ptr - HDR;
    uint32_t idx;
    size_t n;
    memcpy(&idx, p, sizeof idx);
    memcpy(&n, p + 8, sizeof n);
    account(idx, n, -1);
    free(p);
}

static void *t_realloc(void *ptr, size_t n, const char *file, int line)
{
    if (!ptr) return t_malloc(n, file, line);
    if (!n) {
        t_free(ptr, file, line);
        return NULL;
    }
    uint8_t *old = (uint8_t *)ptr - HDR;
    uint32_t idx;
    size_t was;
    memcpy(&idx, old, sizeof idx);
    memcpy(&was, old + 8, sizeof was);
    uint8_t *p = realloc(old, n + HDR);
    if (!p) return NULL;
    account(idx, was, -1);
    idx = site_of(file ? file : "?", line);
    memcpy(p, &idx, sizeof idx);
    memcpy(p + 8, &n, sizeof n);
    account(idx, n, 1);
    return p + HDR;
}

__attribute__((constructor)) static void memtally_init(void)
{
    if (!CRYPTO_set_mem_functions(t_malloc, t_realloc, t_free))
        fprintf(stderr, "memtally: OpenSSL allocated before the preload ran\n");
}

/* One line per allocating site: live count, live bytes, file:line, and the
 * live bytes with the tally's header and as requested. */
__attribute__((visibility("default"))) int memtally_dump(const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    for (int i = 0; i < SITES; i++)
        if (sites[i].file)
            fprintf(f, "%ld %ld %s:%d %ld %ld\n", atomic_load(&sites[i].count),
                    atomic_load(&sites[i].bytes), sites[i].file, sites[i].line,
                    atomic_load(&sites[i].with_hdr), atomic_load(&sites[i].asked));
    fclose(f);
    return 0;
}
