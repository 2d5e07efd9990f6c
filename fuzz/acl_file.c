/* libFuzzer target for src/broker/acl.c. The input is an acl_file and a
 * topic name split at the first NUL. A file that parses is compiled for two
 * clients; for a topic without wildcards the SUBSCRIBE verdict must agree
 * with the per-topic check (one topic: no "per topic" answer). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "identity/acl.h"
#include "broker/topic.h"

static void check(const struct acl_rules *r, const struct acl_client *c, const char *topic,
                  size_t tlen)
{
    struct acl_matcher *m;
    if (acl_compile(r, c, &m) < 0) return;
    if (tlen && topic_name_valid(topic, tlen) && topic_filter_valid(topic, tlen)) {
        bool read = acl_may(m, ACL_READ, topic, tlen);
        enum acl_verdict v = acl_may_subscribe(m, topic, tlen);
        if (v != (read ? ACL_ALLOWED : ACL_DENIED)) __builtin_trap();
        bool write = acl_may(m, ACL_WRITE, topic, tlen);
        /* The remembered answer is the rules' answer, twice in a row. */
        if (acl_may_publish(m, topic, tlen) != write || acl_may_publish(m, topic, tlen) != write)
            __builtin_trap();
    } else if (tlen && topic_filter_valid(topic, tlen)) {
        (void)acl_may_subscribe(m, topic, tlen);
    }
    acl_matcher_free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t flen = nul ? (size_t)(nul - data) : size;
    const char *topic = nul ? (const char *)nul + 1 : "";
    size_t tlen = nul ? size - flen - 1 : 0;
    struct acl_rules r;
    char err[128];
    if (acl_file_parse((const char *)data, flen, data[0] & 1, &r, err, sizeof err) < 0) return 0;
    struct acl_client named = {.user = "dev-1", .client_id = "d:dev-1", .tenant = "t1"};
    struct acl_client anon = {.user = NULL, .client_id = "c/x", .tenant = ""};
    check(&r, &named, topic, tlen);
    check(&r, &anon, topic, tlen);
    acl_rules_free(&r);
    return 0;
}
