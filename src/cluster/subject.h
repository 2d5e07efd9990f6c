/* MQTT topics <-> NATS subjects for cross-node messaging (pure, no I/O).
 * A topic "a/b" of tenant T is the subject "mq.T.a.b": the tenant is the
 * first token after the prefix, each topic level one token, escaped so that
 * every valid topic maps and only its own subject maps back. */
#ifndef CERTMQ_CLUSTER_SUBJECT_H
#define CERTMQ_CLUSTER_SUBJECT_H

#include <stdbool.h>
#include <stddef.h>

#include "core/err.h"

#define SUBJECT_PREFIX "mq"

/* Subject of topic name (a valid MQTT topic name) of tenant ("" is the
 * static space). ERR_INVALID for an invalid name, ERR_LIMIT when out
 * (cap bytes, NUL included) is too small. */
MUST_USE int subject_from_topic(const char *tenant, const char *topic, size_t len, char *out,
                                size_t cap, size_t *out_len);

/* Subject a node subscribes to for filter (a valid MQTT filter, without
 * $share/): '+' becomes '*', a trailing '#' '>'. *with_parent is set when
 * the filter ends in "/#", which also matches the parent level: the parent
 * subject is then out without its last two bytes (".>"). */
MUST_USE int subject_from_filter(const char *tenant, const char *filter, size_t len, char *out,
                                 size_t cap, size_t *out_len, bool *with_parent);

/* The tenant and topic name of a subject made by subject_from_topic.
 * ERR_INVALID for anything else (wildcards, another prefix, an escape that
 * subject_from_topic would not have written). Outputs are NUL-terminated. */
MUST_USE int subject_to_topic(const char *subj, size_t len, char *tenant, size_t tcap, char *topic,
                              size_t cap, size_t *topic_len);

/* The NATS queue group of a shared subscription's group in tenant. */
MUST_USE int subject_queue(const char *tenant, const char *group, size_t glen, char *out,
                           size_t cap);

#endif
