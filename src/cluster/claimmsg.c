/* Claim messages (claimmsg.h): version, flags, a 64-bit claim number, the
 * tenant, the ClientId and the sender's node_id each with a 16-bit length,
 * then the records. */
#include "cluster/claimmsg.h"

#include <string.h>

#define FLAG_TAKE  1u
#define TENANT_MAX 63 /* auth_result's tenant, less its NUL */

int claimmsg_write(struct buf *out, const struct claimmsg *m)
{
    GUARD(buf_put_u8(out, CLAIMMSG_VERSION));
    GUARD(buf_put_u8(out, m->take ? FLAG_TAKE : 0));
    GUARD(buf_put_u32(out, (uint32_t)(m->id >> 32)));
    GUARD(buf_put_u32(out, (uint32_t)m->id));
    GUARD(buf_put_u16(out, m->tenant_len));
    GUARD(buf_append(out, m->tenant, m->tenant_len));
    GUARD(buf_put_u16(out, m->client_id_len));
    GUARD(buf_append(out, m->client_id, m->client_id_len));
    GUARD(buf_put_u16(out, m->node_len));
    GUARD(buf_append(out, m->node, m->node_len));
    return buf_append(out, m->rec, m->rec_len);
}

static bool name_ok(const uint8_t *p, uint16_t n, uint16_t max)
{
    return n <= max && (!n || !memchr(p, 0, n));
}

int claimmsg_parse(const uint8_t *d, size_t n, struct claimmsg *out)
{
    memset(out, 0, sizeof *out);
    struct rd r = rd_make(d, n);
    uint8_t version, flags;
    uint32_t hi, lo;
    GUARD(rd_u8(&r, &version));
    GUARD(rd_u8(&r, &flags));
    ENSURE(version == CLAIMMSG_VERSION && !(flags & ~FLAG_TAKE), ERR_MALFORMED);
    GUARD(rd_u32(&r, &hi));
    GUARD(rd_u32(&r, &lo));
    GUARD(rd_lp16(&r, &out->tenant, &out->tenant_len));
    GUARD(rd_lp16(&r, &out->client_id, &out->client_id_len));
    GUARD(rd_lp16(&r, &out->node, &out->node_len));
    ENSURE(name_ok(out->tenant, out->tenant_len, TENANT_MAX) && out->client_id_len &&
               name_ok(out->client_id, out->client_id_len, UINT16_MAX) && out->node_len &&
               name_ok(out->node, out->node_len, CLAIMMSG_NODE_MAX),
           ERR_MALFORMED);
    out->id = (uint64_t)hi << 32 | lo;
    out->take = flags & FLAG_TAKE;
    out->rec_len = rd_left(&r);
    if (out->rec_len) GUARD(rd_bytes(&r, out->rec_len, &out->rec));
    return 0;
}
