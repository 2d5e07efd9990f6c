/* Topic names, filters and the subscription tree (MQTT 3.1.1 section 4.7).
 * The tree maps filters to opaque subscribers and also holds retained
 * messages by topic name. It is not synchronised: its owner (the broker)
 * holds a lock around every call. */
#ifndef CERTMQ_BROKER_TOPIC_H
#define CERTMQ_BROKER_TOPIC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

/* A topic name for PUBLISH: 1..65535 bytes, no '+' or '#'. */
bool topic_name_valid(const char *t, size_t len);
/* A filter: 1..65535 bytes, '+' alone in its level, '#' alone and last. */
bool topic_filter_valid(const char *f, size_t len);
/* Does filter match name? Applies the rule that a leading '+' or '#' does not
 * match a name starting with '$'. Both must be valid. */
bool topic_matches(const char *filter, size_t flen, const char *name, size_t nlen);

/* Levels in a name or filter ("a/b/c" has 3). */
size_t topic_levels(const char *t, size_t len);
/* Bytes a subscription to a filter of len bytes and levels levels holds
 * (the session's copy, the tree nodes it may create), an upper estimate
 * that limits are counted in. */
size_t topic_filter_cost(size_t len, size_t levels);

struct topic_tree;

struct topic_tree *topic_tree_new(void);
/* Frees the tree; subscribers and retained values are not owned. */
void topic_tree_free(struct topic_tree *t);

/* Adds (or updates the QoS of) subscriber's subscription to filter.
 * Returns 1 when new, 0 when updated, ERR_NOMEM (ERR_INVALID for an invalid
 * filter). */
MUST_USE int topic_subscribe(struct topic_tree *t, const char *filter, size_t len, void *sub,
                             uint8_t qos);
/* Returns 1 when removed, 0 when there was no such subscription. */
int topic_unsubscribe(struct topic_tree *t, const char *filter, size_t len, void *sub);

/* Calls fn once per (subscription, subscriber) whose filter matches name. A
 * subscriber with several matching filters is reported once per filter. */
typedef void (*topic_sub_fn)(void *sub, uint8_t qos, void *arg);
void topic_match(struct topic_tree *t, const char *name, size_t len, topic_sub_fn fn, void *arg);

/* Retained messages: sets the value for a topic name (NULL clears it) and
 * returns the previous value (the caller frees it). When the name is invalid
 * or memory runs out, value is not stored and is returned instead. */
void *topic_retain_set(struct topic_tree *t, const char *name, size_t len, void *value);
/* Calls fn for every retained value whose topic name matches filter. The
 * callbacks of topic_match and topic_retain_match must not modify the tree. */
typedef void (*topic_retained_fn)(void *value, void *arg);
void topic_retain_match(struct topic_tree *t, const char *filter, size_t len, topic_retained_fn fn,
                        void *arg);
/* Number of retained values (for stats and tests). */
size_t topic_retain_count(const struct topic_tree *t);
/* Number of tree nodes besides the root (stats; shows that pruning works). */
size_t topic_node_count(const struct topic_tree *t);
/* Calls fn on every retained value and clears them (shutdown). */
void topic_retain_clear(struct topic_tree *t, topic_retained_fn fn, void *arg);

#endif
