/* MQTT 5.0 topic aliases (3.3.2.3.4), per network connection: the client's
 * (a PUBLISH names a topic once, then its alias) and the broker's own, up to
 * the Topic Alias Maximum the other side announced. The broker gives out
 * aliases in order until they run out; later topics go out in full. The
 * topics the client's aliases hold count against max_subscription_bytes. */
#include "broker/internal.h"

#include <stdlib.h>
#include <string.h>

int alias_init(struct client *c, uint16_t in_max, uint16_t out_max, size_t in_budget)
{
    alias_free(c);
    if (!in_max && !out_max) return 0;
    struct aliases *a = calloc(1, sizeof *a);
    ENSURE(a, ERR_NOMEM);
    a->in_max = in_max;
    a->out_max = out_max;
    a->in_budget = in_budget;
    a->in = in_max ? calloc(in_max, sizeof *a->in) : NULL;
    a->out = out_max ? calloc(out_max, sizeof *a->out) : NULL;
    c->aliases = a;
    if ((in_max && !a->in) || (out_max && !a->out)) {
        alias_free(c);
        return ERR_NOMEM;
    }
    return 0;
}

static void slots_free(struct alias_slot *v, size_t n)
{
    for (size_t i = 0; v && i < n; i++) free(v[i].topic);
    free(v);
}

void alias_free(struct client *c)
{
    struct aliases *a = c->aliases;
    if (!a) return;
    slots_free(a->in, a->in_max);
    slots_free(a->out, a->out_used);
    free(a);
    c->aliases = NULL;
}

int alias_in(struct client *c, uint16_t alias, struct mqtt_bytes *topic)
{
    struct aliases *a = c->aliases;
    if (!a || alias == 0 || alias > a->in_max) {
        c->close_reason = MQTT_RC_TOPIC_ALIAS_INVALID;
        return ERR_PROTO;
    }
    struct alias_slot *slot = &a->in[alias - 1];
    if (!topic->len) { /* use it */
        if (!slot->topic) {
            c->close_reason = MQTT_RC_PROTOCOL_ERROR;
            return ERR_PROTO;
        }
        *topic = (struct mqtt_bytes){(const uint8_t *)slot->topic, slot->len};
        return 0;
    }
    size_t bytes = a->in_bytes - slot->len + topic->len;
    if (bytes > a->in_budget) {
        c->close_reason = MQTT_RC_QUOTA_EXCEEDED;
        return ERR_LIMIT;
    }
    char *copy = malloc(topic->len);
    ENSURE(copy, ERR_NOMEM);
    memcpy(copy, topic->p, topic->len);
    free(slot->topic);
    *slot = (struct alias_slot){copy, topic->len};
    a->in_bytes = bytes;
    return 0;
}

uint16_t alias_out(struct client *c, const char *topic, size_t len, bool *send_topic)
{
    struct aliases *a = c->aliases;
    *send_topic = true;
    if (!a || !a->out_max) return 0;
    for (uint16_t i = 0; i < a->out_used; i++)
        if (a->out[i].len == len && !memcmp(a->out[i].topic, topic, len)) {
            *send_topic = false;
            return (uint16_t)(i + 1);
        }
    if (a->out_used == a->out_max) return 0;
    char *copy = malloc(len ? len : 1);
    if (!copy) return 0;
    memcpy(copy, topic, len);
    a->out[a->out_used] = (struct alias_slot){copy, (uint16_t)len};
    return ++a->out_used;
}
