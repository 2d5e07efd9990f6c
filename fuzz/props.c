/* libFuzzer target for src/mqtt/props.c. The first byte picks the packet the
 * property list stands in; the rest is the list (length first). A list that
 * parses is walked, re-encoded and parsed again: the second parse must give
 * the same values. */
#include <stdint.h>
#include <string.h>

#include "mqtt/props.h"

#define MAX_REPEATED 64

static void collect(const struct mqtt_props *p, struct mqtt_user_prop *users, uint32_t *ids,
                    struct mqtt_props *enc)
{
    size_t pos = 0, nu = 0, ni = 0;
    while (nu < MAX_REPEATED &&
           mqtt_props_next(p, MQTT_PROP_USER_PROPERTY, &pos, &users[nu], NULL) == 1)
        nu++;
    pos = 0;
    while (ni < MAX_REPEATED &&
           mqtt_props_next(p, MQTT_PROP_SUBSCRIPTION_ID, &pos, NULL, &ids[ni]) == 1)
        ni++;
    *enc = *p;
    enc->users = users;
    enc->n_users = nu;
    enc->sub_ids = ids;
    enc->n_sub_ids = ni;
    if (nu != p->n_users || ni != p->n_sub_ids) __builtin_trap(); /* walk and count agree */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    enum mqtt_props_where where = (enum mqtt_props_where)(data[0] % (MQTT_IN_AUTH + 1));
    struct rd r = rd_make(data + 1, size - 1);
    struct mqtt_props p;
    if (mqtt_props_parse(&r, where, &p) < 0) return 0;
    if (p.n_users > MAX_REPEATED || p.n_sub_ids > MAX_REPEATED) return 0;
    struct mqtt_user_prop users[MAX_REPEATED];
    uint32_t ids[MAX_REPEATED];
    struct mqtt_props enc;
    collect(&p, users, ids, &enc);
    struct buf b;
    buf_init(&b, 0);
    if (mqtt_props_encode(&b, where, &enc) < 0) __builtin_trap();
    struct rd r2 = rd_make(buf_head(&b), buf_used(&b));
    struct mqtt_props q;
    if (mqtt_props_parse(&r2, where, &q) < 0 || q.has != p.has || q.n_users != p.n_users ||
        q.n_sub_ids != p.n_sub_ids || q.message_expiry != p.message_expiry ||
        q.receive_maximum != p.receive_maximum || q.subscription_id != p.subscription_id)
        __builtin_trap();
    buf_free(&b);
    return 0;
}
