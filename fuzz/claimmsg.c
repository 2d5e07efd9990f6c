/* libFuzzer target for src/cluster/claimmsg.c. A claim message that parses
 * is written again from what was read and parsed a second time: both reads
 * must agree, and the borrowed views must lie inside the input. */
#include <stdint.h>
#include <string.h>

#include "cluster/claimmsg.h"

static bool inside(const uint8_t *p, size_t n, const uint8_t *d, size_t size)
{
    return n == 0 || (p >= d && p + n <= d + size);
}

static bool same(const uint8_t *a, const uint8_t *b, size_t n)
{
    return n == 0 || memcmp(a, b, n) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct claimmsg m, again;
    if (claimmsg_parse(data, size, &m) < 0) return 0;
    if (!inside(m.tenant, m.tenant_len, data, size) ||
        !inside(m.client_id, m.client_id_len, data, size) ||
        !inside(m.node, m.node_len, data, size) || !inside(m.rec, m.rec_len, data, size))
        __builtin_trap();
    struct buf b;
    buf_init(&b, 0);
    if (claimmsg_write(&b, &m) < 0) __builtin_trap();
    if (claimmsg_parse(buf_head(&b), buf_used(&b), &again) < 0) __builtin_trap();
    if (again.id != m.id || again.take != m.take || again.tenant_len != m.tenant_len ||
        again.client_id_len != m.client_id_len || again.node_len != m.node_len ||
        again.rec_len != m.rec_len || !same(again.node, m.node, m.node_len) ||
        !same(again.tenant, m.tenant, m.tenant_len) ||
        !same(again.client_id, m.client_id, m.client_id_len) || !same(again.rec, m.rec, m.rec_len))
        __builtin_trap();
    buf_free(&b);
    return 0;
}
