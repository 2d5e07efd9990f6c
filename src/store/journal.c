/* Session journal records (see journal.h): a type byte, then the fields
 * that type carries, in a fixed order, integers big endian and byte
 * strings with a 4-byte length. */
#include "store/journal.h"

#include <string.h>

#include "core/map.h"

#define MAX_STR (1u << 28) /* no field of an MQTT packet is longer */

/* The field groups, and which record type carries which. */
enum {
    G_KEY = 1 << 0,     /* key */
    G_WHO = 1 << 1,     /* tenant, client_id, identity, anchor, kind, device, ... */
    G_LIFE = 1 << 2,    /* expiry, offline_since, will (the message fields) */
    G_SUB = 1 << 3,     /* filter, group, qos, opts, sub_id */
    G_MSG = 1 << 4,     /* pid, topic, payload, props, qos, retain, expire_at */
    G_PID = 1 << 5,     /* pid */
    G_SEQ = 1 << 6,     /* seq */
    G_ITEM = 1 << 7,    /* pid, qos, retain, state, packet_id, ids */
    G_STATE = 1 << 8,   /* state, packet_id */
    G_PACKET = 1 << 9,  /* packet_id */
    G_SUBKEY = 1 << 10, /* filter, group */
};

static const uint16_t groups[J_TYPE_MAX + 1] = {
    [J_SESSION_PUT] = G_KEY | G_WHO | G_LIFE,
    [J_SESSION_DEL] = G_KEY,
    [J_SUB_PUT] = G_KEY | G_SUB,
    [J_SUB_DEL] = G_KEY | G_SUBKEY,
    [J_MSG_PUT] = G_MSG,
    [J_MSG_DEL] = G_PID,
    [J_ITEM_PUT] = G_KEY | G_SEQ | G_ITEM,
    [J_ITEM_UPD] = G_SEQ | G_STATE,
    [J_ITEM_DEL] = G_SEQ,
    [J_RX_PUT] = G_KEY | G_PACKET,
    [J_RX_DEL] = G_KEY | G_PACKET,
};

static int put_str(struct buf *b, struct jstr s)
{
    ENSURE(s.len < MAX_STR, ERR_TOO_LARGE);
    GUARD(buf_put_u32(b, s.len));
    return s.len ? buf_append(b, s.p, s.len) : 0;
}

static int put_u64(struct buf *b, uint64_t v)
{
    GUARD(buf_put_u32(b, (uint32_t)(v >> 32)));
    return buf_put_u32(b, (uint32_t)v);
}

static int put_msg(struct buf *b, const struct jrec *r)
{
    GUARD(put_str(b, r->topic));
    GUARD(put_str(b, r->payload));
    GUARD(put_str(b, r->props));
    GUARD(buf_put_u8(b, r->qos));
    GUARD(buf_put_u8(b, r->retain));
    return put_u64(b, (uint64_t)r->expire_at);
}

static int put_groups(struct buf *b, const struct jrec *r, unsigned g)
{
    if (g & G_KEY) GUARD(put_str(b, r->key));
    if (g & G_WHO) {
        GUARD(put_str(b, r->tenant));
        GUARD(put_str(b, r->client_id));
        GUARD(put_str(b, r->identity));
        GUARD(put_str(b, r->anchor));
        GUARD(buf_put_u8(b, r->kind));
        GUARD(buf_put_u8(b, r->device));
        GUARD(buf_put_u8(b, r->has_user_name));
        GUARD(buf_put_u32(b, r->roles));
    }
    if (g & G_LIFE) {
        GUARD(buf_put_u32(b, r->expiry));
        GUARD(put_u64(b, (uint64_t)r->offline_since));
        GUARD(buf_put_u8(b, r->has_will));
        if (r->has_will) {
            GUARD(buf_put_u32(b, r->will_delay));
            GUARD(buf_put_u32(b, r->will_expiry));
            GUARD(put_msg(b, r));
        }
    }
    if (g & (G_SUB | G_SUBKEY)) {
        GUARD(put_str(b, r->filter));
        GUARD(put_str(b, r->group));
    }
    if (g & G_SUB) {
        GUARD(buf_put_u8(b, r->qos));
        GUARD(buf_put_u8(b, r->opts));
        GUARD(buf_put_u32(b, r->sub_id));
    }
    if (g & (G_MSG | G_PID | G_ITEM)) GUARD(put_u64(b, r->pid));
    if (g & G_MSG) GUARD(put_msg(b, r));
    if (g & G_SEQ) GUARD(put_u64(b, r->seq));
    if (g & G_ITEM) {
        GUARD(buf_put_u8(b, r->qos));
        GUARD(buf_put_u8(b, r->retain));
        GUARD(buf_put_u16(b, r->n_ids));
        if (r->n_ids) GUARD(buf_append(b, r->ids, (size_t)r->n_ids * 4));
    }
    if (g & (G_ITEM | G_STATE)) GUARD(buf_put_u8(b, r->state));
    if (g & (G_ITEM | G_STATE | G_PACKET)) GUARD(buf_put_u16(b, r->packet_id));
    return 0;
}

int journal_put(struct buf *out, const struct jrec *r)
{
    ENSURE(r->type >= 1 && r->type <= J_TYPE_MAX, ERR_INVALID);
    size_t mark = buf_used(out);
    int rc = buf_put_u8(out, r->type);
    if (rc == 0) rc = put_groups(out, r, groups[r->type]);
    if (rc < 0) out->len = out->off + mark; /* no half record */
    return rc;
}

static int get_str(struct rd *r, struct jstr *s)
{
    GUARD(rd_u32(r, &s->len));
    ENSURE(s->len < MAX_STR, ERR_MALFORMED);
    return rd_bytes(r, s->len, &s->p);
}

static int get_u64(struct rd *r, uint64_t *v)
{
    uint32_t hi, lo;
    GUARD(rd_u32(r, &hi));
    GUARD(rd_u32(r, &lo));
    *v = (uint64_t)hi << 32 | lo;
    return 0;
}

static int get_msg(struct rd *r, struct jrec *o)
{
    uint64_t e;
    GUARD(get_str(r, &o->topic));
    GUARD(get_str(r, &o->payload));
    GUARD(get_str(r, &o->props));
    GUARD(rd_u8(r, &o->qos));
    GUARD(rd_u8(r, &o->retain));
    GUARD(get_u64(r, &e));
    o->expire_at = (int64_t)e;
    return 0;
}

static int get_life(struct rd *r, struct jrec *o)
{
    uint64_t off;
    uint8_t w;
    GUARD(rd_u32(r, &o->expiry));
    GUARD(get_u64(r, &off));
    o->offline_since = (int64_t)off;
    GUARD(rd_u8(r, &w));
    ENSURE(w <= 1, ERR_MALFORMED);
    o->has_will = w;
    if (!o->has_will) return 0;
    GUARD(rd_u32(r, &o->will_delay));
    GUARD(rd_u32(r, &o->will_expiry));
    return get_msg(r, o);
}

static int get_groups(struct rd *r, struct jrec *o, unsigned g)
{
    if (g & G_KEY) GUARD(get_str(r, &o->key));
    if (g & G_WHO) {
        GUARD(get_str(r, &o->tenant));
        GUARD(get_str(r, &o->client_id));
        GUARD(get_str(r, &o->identity));
        GUARD(get_str(r, &o->anchor));
        GUARD(rd_u8(r, &o->kind));
        GUARD(rd_u8(r, &o->device));
        GUARD(rd_u8(r, &o->has_user_name));
        GUARD(rd_u32(r, &o->roles));
    }
    if (g & G_LIFE) GUARD(get_life(r, o));
    if (g & (G_SUB | G_SUBKEY)) {
        GUARD(get_str(r, &o->filter));
        GUARD(get_str(r, &o->group));
    }
    if (g & G_SUB) {
        GUARD(rd_u8(r, &o->qos));
        GUARD(rd_u8(r, &o->opts));
        GUARD(rd_u32(r, &o->sub_id));
    }
    if (g & (G_MSG | G_PID | G_ITEM)) GUARD(get_u64(r, &o->pid));
    if (g & G_MSG) GUARD(get_msg(r, o));
    if (g & G_SEQ) GUARD(get_u64(r, &o->seq));
    if (g & G_ITEM) {
        GUARD(rd_u8(r, &o->qos));
        GUARD(rd_u8(r, &o->retain));
        GUARD(rd_u16(r, &o->n_ids));
        GUARD(rd_bytes(r, (size_t)o->n_ids * 4, &o->ids));
    }
    if (g & (G_ITEM | G_STATE)) GUARD(rd_u8(r, &o->state));
    if (g & (G_ITEM | G_STATE | G_PACKET)) GUARD(rd_u16(r, &o->packet_id));
    return 0;
}

int journal_next(struct rd *r, struct jrec *out)
{
    memset(out, 0, sizeof *out);
    GUARD(rd_u8(r, &out->type));
    ENSURE(out->type >= 1 && out->type <= J_TYPE_MAX, ERR_MALFORMED);
    return get_groups(r, out, groups[out->type]);
}

uint32_t journal_id(const struct jrec *r, uint16_t i)
{
    if (i >= r->n_ids) return 0;
    const uint8_t *p = r->ids + (size_t)i * 4;
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* ---- compaction ---- */

/* Bit 1: put in this batch; bit 2: deleted in it. Keys: 'i' or 'm', then
 * the 8-byte id. */
static int mark(struct map *m, char kind, uint64_t id, uintptr_t bit)
{
    char key[9];
    key[0] = kind;
    memcpy(key + 1, &id, 8);
    uintptr_t v = (uintptr_t)map_get(m, key, sizeof key);
    return map_put(m, key, sizeof key, (void *)(v | bit), NULL);
}

static bool both(const struct map *m, char kind, uint64_t id)
{
    char key[9];
    key[0] = kind;
    memcpy(key + 1, &id, 8);
    return (uintptr_t)map_get(m, key, sizeof key) == 3;
}

/* Is r about an item or a message that came and went within the batch? */
static bool transient(const struct map *m, const struct jrec *r)
{
    switch (r->type) {
    case J_ITEM_PUT:
    case J_ITEM_UPD:
    case J_ITEM_DEL: return both(m, 'i', r->seq);
    case J_MSG_PUT:
    case J_MSG_DEL: return both(m, 'm', r->pid);
    default: return false;
    }
}

int journal_compact(const uint8_t *in, size_t len, struct buf *out)
{
    struct map m;
    map_init(&m);
    struct rd r = rd_make(in, len);
    struct jrec rec;
    int rc = 0;
    while (rc == 0 && rd_left(&r)) {
        rc = journal_next(&r, &rec);
        if (rc < 0) break;
        if (rec.type == J_ITEM_PUT || rec.type == J_ITEM_DEL)
            rc = mark(&m, 'i', rec.seq, rec.type == J_ITEM_PUT ? 1 : 2);
        else if (rec.type == J_MSG_PUT || rec.type == J_MSG_DEL)
            rc = mark(&m, 'm', rec.pid, rec.type == J_MSG_PUT ? 1 : 2);
    }
    r = rd_make(in, len);
    while (rc == 0 && rd_left(&r)) {
        size_t start = r.pos;
        rc = journal_next(&r, &rec);
        if (rc == 0 && !transient(&m, &rec)) rc = buf_append(out, in + start, r.pos - start);
    }
    map_free(&m);
    return rc;
}
