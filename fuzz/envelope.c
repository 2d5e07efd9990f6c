/* libFuzzer target for src/cluster/envelope.c. An envelope that parses is
 * written again from what was read and parsed a second time: both reads
 * must agree, and the borrowed views must lie inside the input. */
#include <stdint.h>
#include <string.h>

#include "cluster/envelope.h"

static bool inside(const uint8_t *p, size_t n, const uint8_t *d, size_t size)
{
    return n == 0 || (p >= d && p + n <= d + size);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct envelope e, again;
    if (envelope_parse(data, size, &e) < 0) return 0;
    if (!inside(e.props, e.props_len, data, size) || !inside(e.payload, e.payload_len, data, size))
        __builtin_trap();
    struct buf b;
    buf_init(&b, 0);
    if (envelope_write(&b, &e) < 0) __builtin_trap();
    if (envelope_parse(buf_head(&b), buf_used(&b), &again) < 0) __builtin_trap();
    if (again.qos != e.qos || again.retain != e.retain || again.origin != e.origin ||
        again.seq != e.seq || again.expiry != e.expiry || again.props_len != e.props_len ||
        again.payload_len != e.payload_len ||
        (e.props_len && memcmp(again.props, e.props, e.props_len)) ||
        (e.payload_len && memcmp(again.payload, e.payload, e.payload_len)))
        __builtin_trap();
    buf_free(&b);
    return 0;
}
