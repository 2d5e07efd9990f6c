/* Unit tests for the MQTT topic <-> NATS subject mapping
 * (src/cluster/subject.c): known mappings, round trips of adversarial
 * topics, refusal of subjects the encoder never writes, and wildcard
 * equivalence checked against the broker's own topic matcher. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "broker/topic.h"
#include "cluster/subject.h"

#define BIG 4096

static void map_topic(const char *tenant, const char *topic, size_t len, char *out)
{
    size_t n;
    assert_int_equal(subject_from_topic(tenant, topic, len, out, BIG, &n), 0);
    assert_int_equal(n, strlen(out));
}

static void test_subject_known_mappings(void **state)
{
    (void)state;
    char out[BIG];
    map_topic("t1", "a/b", 3, out);
    assert_string_equal(out, "mq.t1.a.b");
    map_topic("", "a", 1, out);
    assert_string_equal(out, "mq.%.a");
    map_topic("t", "a.b/*/>/ x/%", 12, out);
    assert_string_equal(out, "mq.t.a%2Eb.%2A.%3E.%20x.%25");
    map_topic("t", "/", 1, out);
    assert_string_equal(out, "mq.t.%.%");
    map_topic("t.x", "caf\xc3\xa9", 5, out);
    assert_string_equal(out, "mq.t%2Ex.caf%C3%A9");
}

static void test_subject_filters(void **state)
{
    (void)state;
    char out[BIG];
    size_t n;
    bool parent;
    assert_int_equal(subject_from_filter("t", "a/+/c", 5, out, BIG, &n, &parent), 0);
    assert_string_equal(out, "mq.t.a.*.c");
    assert_false(parent);
    assert_int_equal(subject_from_filter("t", "a/#", 3, out, BIG, &n, &parent), 0);
    assert_string_equal(out, "mq.t.a.>");
    assert_true(parent);
    assert_int_equal(subject_from_filter("t", "#", 1, out, BIG, &n, &parent), 0);
    assert_string_equal(out, "mq.t.>");
    assert_false(parent);
    assert_int_equal(subject_from_filter("t", "a/b#", 4, out, BIG, &n, &parent), ERR_INVALID);
    assert_int_equal(subject_from_filter("t", "a+/b", 4, out, BIG, &n, &parent), ERR_INVALID);
}

static void test_subject_invalid_and_small(void **state)
{
    (void)state;
    char out[BIG];
    size_t n;
    assert_int_equal(subject_from_topic("t", "a/+", 3, out, BIG, &n), ERR_INVALID);
    assert_int_equal(subject_from_topic("t", "", 0, out, BIG, &n), ERR_INVALID);
    assert_int_equal(subject_from_topic("t", "a/b", 3, out, 8, &n), ERR_LIMIT);
    assert_int_equal(subject_from_topic("t", "a/b", 3, out, 9, &n), 0);
}

static void round_trip(const char *tenant, const char *topic, size_t len)
{
    char subj[BIG], t[256], back[BIG];
    size_t blen;
    map_topic(tenant, topic, len, subj);
    for (const char *p = subj; *p; p++) { /* nothing NATS could misread */
        assert_true(*p > 0x20 && *p < 0x7f);
        if (*p == '*' || *p == '>') fail_msg("wildcard byte in %s", subj);
    }
    assert_int_equal(subject_to_topic(subj, strlen(subj), t, sizeof t, back, sizeof back, &blen),
                     0);
    assert_string_equal(t, tenant);
    assert_int_equal(blen, len);
    assert_memory_equal(back, topic, len);
}

static void test_subject_round_trips(void **state)
{
    (void)state;
    static const char *topics[] = {"a",      "a/b/c",  "/",   "//",      "a//b",     "a/",
                                   "/a",     ".",      "..",  "a.b/c.d", "*",        ">",
                                   "a/*/>",  "%",      "%25", "%%",      " ",        "a b",
                                   "\t\r\n", "$SYS/x", "a>b", "é/ü",     "mq.t.a.b", "a\x7f"};
    for (size_t i = 0; i < sizeof topics / sizeof *topics; i++) {
        round_trip("t1", topics[i], strlen(topics[i]));
        round_trip("", topics[i], strlen(topics[i]));
        round_trip("a.b c%*>", topics[i], strlen(topics[i]));
    }
    srand(7);
    static const char alphabet[] = "ab/.*> %+#\t$";
    for (int k = 0; k < 20000; k++) {
        char topic[16];
        size_t len = 1 + (size_t)rand() % 12;
        for (size_t i = 0; i < len; i++) topic[i] = alphabet[rand() % (sizeof alphabet - 1)];
        if (!topic_name_valid(topic, len)) continue;
        round_trip("t", topic, len);
    }
}

static void test_subject_refuses_foreign(void **state)
{
    (void)state;
    static const char *bad[] = {
        "mq.t",      /* no level */
        "mq.t.",     /* empty token */
        "mq..a",     /* empty tenant token */
        "xx.t.a",    /* another prefix */
        "mq.t.*",    /* wildcard */
        "mq.t.>",    /* wildcard */
        "mq.t.%41",  /* 'A' need not be escaped: not what the encoder writes */
        "mq.t.%2e",  /* lower-case hex */
        "mq.t.%2",   /* truncated escape */
        "mq.t.a%",   /* '%' alone inside a token */
        "mq.t.%%",   /* two empties in one token */
        "mq.t.a+",   /* a wildcard byte in a topic name */
        "mq.t.%00",  /* NUL is not in a topic name */
        "mq.t%00.a", /* nor in a tenant */
        "mq.t.a b",  /* space */
        "mq.t.a/b",  /* a level separator inside a token */
        "mq",
    };
    char t[64], topic[64];
    size_t n;
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (subject_to_topic(bad[i], strlen(bad[i]), t, sizeof t, topic, sizeof topic, &n) == 0)
            fail_msg("accepted %s", bad[i]);
    assert_int_equal(subject_to_topic("mq.t.abc", 8, t, sizeof t, topic, 3, &n), ERR_LIMIT);
}

/* NATS subject matching: '*' one token, '>' one or more trailing tokens. */
static bool nats_match(const char *pat, const char *subj)
{
    for (;;) {
        const char *pe = strchr(pat, '.'), *se = strchr(subj, '.');
        size_t pl = pe ? (size_t)(pe - pat) : strlen(pat);
        size_t sl = se ? (size_t)(se - subj) : strlen(subj);
        if (pl == 1 && pat[0] == '>') return true;
        if (!(pl == 1 && pat[0] == '*') && (pl != sl || memcmp(pat, subj, pl))) return false;
        if (!pe || !se) return !pe && !se;
        pat = pe + 1;
        subj = se + 1;
    }
}

/* Does the NATS interest of filter (one or two subjects) take name? */
static bool interest_takes(const char *filter, const char *name)
{
    char fs[BIG], ns[BIG];
    size_t n;
    bool parent;
    assert_int_equal(subject_from_filter("t", filter, strlen(filter), fs, BIG, &n, &parent), 0);
    map_topic("t", name, strlen(name), ns);
    if (nats_match(fs, ns)) return true;
    if (!parent) return false;
    fs[n - 2] = '\0';
    return nats_match(fs, ns);
}

static void test_subject_wildcards_match_like_the_tree(void **state)
{
    (void)state;
    static const char lv[][4] = {"a", "b", "", ".", "*", ">", "$x", "%"};
    static const char wl[][2] = {"+", "#"};
    srand(11);
    for (int k = 0; k < 50000; k++) {
        char name[64] = "", filter[64] = "";
        int nl = 1 + rand() % 4, fl = 1 + rand() % 4;
        for (int i = 0; i < nl; i++) {
            if (i) strcat(name, "/");
            strcat(name, lv[rand() % 8]);
        }
        for (int i = 0; i < fl; i++) {
            if (i) strcat(filter, "/");
            int r = rand() % 10;
            strcat(filter, r < 2 ? wl[0] : r < 3 && i == fl - 1 ? wl[1] : lv[r % 8]);
        }
        if (!topic_name_valid(name, strlen(name)) || !topic_filter_valid(filter, strlen(filter)))
            continue;
        bool mqtt = topic_matches(filter, strlen(filter), name, strlen(name));
        bool nats = interest_takes(filter, name);
        /* NATS may carry more ('$' topics under a leading wildcard): the
         * tree matches again on arrival. It must never carry less. */
        if (mqtt && !nats) fail_msg("'%s' misses '%s'", filter, name);
        if (!mqtt && nats && name[0] != '$') fail_msg("'%s' takes '%s'", filter, name);
    }
}

static void test_subject_queue_names(void **state)
{
    (void)state;
    char q1[256], q2[256];
    assert_int_equal(subject_queue("t1", "g", 1, q1, sizeof q1), 0);
    assert_string_equal(q1, "mqq.t1.g");
    assert_int_equal(subject_queue("t1.g", "", 0, q2, sizeof q2), 0);
    assert_string_not_equal(q1, q2);
    assert_int_equal(subject_queue("t", "a b", 3, q2, sizeof q2), 0);
    assert_string_equal(q2, "mqq.t.a%20b");
    assert_int_equal(subject_queue("t", "g", 1, q2, 6), ERR_LIMIT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_subject_known_mappings),
        cmocka_unit_test(test_subject_filters),
        cmocka_unit_test(test_subject_invalid_and_small),
        cmocka_unit_test(test_subject_round_trips),
        cmocka_unit_test(test_subject_refuses_foreign),
        cmocka_unit_test(test_subject_wildcards_match_like_the_tree),
        cmocka_unit_test(test_subject_queue_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
