/* Shared subscriptions ($share/{group}/{filter}, MQTT 5.0 4.8.2; 3.1.1
 * clients may use them too): the sessions subscribed with the same group
 * and filter form one subscriber in the topic tree, and each message goes to
 * one of them, in turn, preferring connected ones. A group is tagged in the
 * tree by the low bit of its pointer (share_is). */
#include "broker/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct member {
    struct session *s;
    uint8_t qos;
    uint32_t id; /* subscription identifier; 0: none */
};

struct share {
    char *key; /* group \x01 filter */
    char *group;
    size_t klen;
    char *filter;
    uint16_t flen;
    struct member *m;
    unsigned n, cap, next;
};

static void *tagged(struct share *sh)
{
    return (void *)((uintptr_t)sh | 1);
}

static struct share *untag(const void *subscriber)
{
    return (struct share *)((uintptr_t)subscriber & ~(uintptr_t)1);
}

static struct share *share_get(struct space *sp, const char *group, size_t glen, const char *filter,
                               size_t flen)
{
    char key[65536 * 2 + 2];
    int klen = snprintf(key, sizeof key, "%.*s\x01%.*s", (int)glen, group, (int)flen, filter);
    if (klen < 0 || (size_t)klen >= sizeof key) return NULL;
    struct share *sh = map_get(&sp->shares, key, (size_t)klen);
    if (sh) return sh;
    sh = calloc(1, sizeof *sh);
    if (!sh) return NULL;
    sh->key = strndup(key, (size_t)klen);
    sh->group = strndup(group, glen);
    sh->klen = (size_t)klen;
    sh->filter = strndup(filter, flen);
    sh->flen = (uint16_t)flen;
    if (!sh->key || !sh->group || !sh->filter ||
        map_put(&sp->shares, sh->key, sh->klen, sh, NULL) < 0) {
        free(sh->key);
        free(sh->group);
        free(sh->filter);
        free(sh);
        return NULL;
    }
    return sh;
}

static void share_drop(struct space *sp, struct share *sh)
{
    map_del(&sp->shares, sh->key, sh->klen);
    free(sh->m);
    free(sh->key);
    free(sh->group);
    free(sh->filter);
    free(sh);
}

int share_join(struct space *sp, const char *group, size_t glen, const char *filter, size_t flen,
               struct session *s, const struct sub *sub, struct share **out)
{
    struct share *sh = share_get(sp, group, glen, filter, flen);
    ENSURE(sh, ERR_NOMEM);
    for (unsigned i = 0; i < sh->n; i++)
        if (sh->m[i].s == s) { /* a resubscription: new options */
            sh->m[i].qos = sub->qos;
            sh->m[i].id = sub->id;
            *out = sh;
            return 0;
        }
    if (sh->n == sh->cap) {
        unsigned cap = sh->cap ? sh->cap * 2 : 4;
        struct member *m = realloc(sh->m, cap * sizeof *m);
        if (!m) {
            if (!sh->n) share_drop(sp, sh);
            return ERR_NOMEM;
        }
        sh->m = m;
        sh->cap = cap;
    }
    /* The group sits in the tree once, at QoS 2: each member's own QoS
     * applies when it is picked. */
    if (!sh->n && topic_subscribe(sp->tree, sh->filter, sh->flen, tagged(sh), 2) < 0) {
        share_drop(sp, sh);
        return ERR_NOMEM;
    }
    sh->m[sh->n++] = (struct member){s, sub->qos, sub->id};
    *out = sh;
    return sh->n == 1;
}

const char *share_group(const struct share *sh)
{
    return sh->group;
}

bool share_named(const struct share *sh, const char *group, size_t glen)
{
    return sh->klen > glen && !memcmp(sh->key, group, glen) && sh->key[glen] == '\x01';
}

bool share_leave(struct space *sp, struct share *sh, struct session *s)
{
    for (unsigned i = 0; i < sh->n; i++)
        if (sh->m[i].s == s) {
            sh->m[i] = sh->m[--sh->n];
            break;
        }
    if (sh->n) return false;
    topic_unsubscribe(sp->tree, sh->filter, sh->flen, tagged(sh));
    share_drop(sp, sh);
    return true;
}

int share_deliver(struct broker *b, struct space *sp, const char *group, const char *filter,
                  size_t flen, struct msg *m)
{
    char key[65536 * 2 + 2];
    int klen = snprintf(key, sizeof key, "%s\x01%.*s", group, (int)flen, filter);
    if (klen < 0 || (size_t)klen >= sizeof key) return 0;
    struct share *sh = map_get(&sp->shares, key, (size_t)klen);
    if (!sh || !topic_matches(sh->filter, sh->flen, m->data, m->topic_len)) return 0;
    uint8_t qos;
    uint32_t id;
    struct session *s = share_pick(tagged(sh), &qos, &id);
    if (!s) return 0;
    struct delivery d = {m->qos < qos ? m->qos : qos, false, id ? 1 : 0, &id};
    if (s->acl_recheck && !session_may_read(s, m)) {
        s->space->stats.acl_denied_delivery++;
        return 0;
    }
    session_enqueue(b, s, m, &d);
    return 1;
}

struct session *share_pick(const void *subscriber, uint8_t *qos, uint32_t *id)
{
    struct share *sh = untag(subscriber);
    if (!sh->n) return NULL;
    unsigned pick = sh->next % sh->n;
    for (unsigned k = 0; k < sh->n; k++) {
        unsigned i = (sh->next + k) % sh->n;
        if (sh->m[i].s->client) {
            pick = i;
            break;
        }
    }
    sh->next = pick + 1;
    *qos = sh->m[pick].qos;
    *id = sh->m[pick].id;
    return sh->m[pick].s;
}

static void free_cb(const char *key, void *value, void *arg)
{
    (void)key;
    (void)arg;
    struct share *sh = value;
    free(sh->m);
    free(sh->key);
    free(sh->group);
    free(sh->filter);
    free(sh);
}

void share_free_all(struct space *sp)
{
    map_each(&sp->shares, free_cb, NULL);
    map_free(&sp->shares);
}
