/* libFuzzer target for src/cluster/subject.c. The input is read both as a
 * NATS subject and as an MQTT topic name. A subject that decodes must be
 * exactly what its topic encodes to (one subject per topic); a valid topic
 * must come back unchanged from its subject, and a valid filter must map. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "broker/topic.h"
#include "cluster/subject.h"

#define CAP (3 * 65536 + 64)

static char subj[CAP], again[CAP], topic[65536 + 1], tenant[256];

static void as_subject(const char *d, size_t n)
{
    size_t tlen, slen;
    if (subject_to_topic(d, n, tenant, sizeof tenant, topic, sizeof topic, &tlen) < 0) return;
    if (subject_from_topic(tenant, topic, tlen, again, sizeof again, &slen) < 0) __builtin_trap();
    if (slen != n || memcmp(again, d, n)) __builtin_trap();
}

static void as_topic(const char *d, size_t n)
{
    size_t slen, tlen;
    bool parent;
    if (topic_filter_valid(d, n) &&
        subject_from_filter("t.x", d, n, subj, sizeof subj, &slen, &parent) < 0)
        __builtin_trap();
    if (!topic_name_valid(d, n)) return;
    if (subject_from_topic("t.x", d, n, subj, sizeof subj, &slen) < 0) __builtin_trap();
    if (subject_to_topic(subj, slen, tenant, sizeof tenant, topic, sizeof topic, &tlen) < 0)
        __builtin_trap();
    if (tlen != n || memcmp(topic, d, n) || strcmp(tenant, "t.x")) __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 65535) return 0;
    as_subject((const char *)data, size);
    as_topic((const char *)data, size);
    return 0;
}
