/* Unit tests for topic validation, matching and the subscription tree
 * (src/broker/topic.c): spec example tables, tree bookkeeping, retained
 * values, and randomized cross-checks of the tree against topic_matches. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "broker/topic.h"

#define S(x) (x), strlen(x)

/* ---- pure matching ---- */

struct match_case {
    const char *filter;
    const char *name;
    bool expect;
};

static const struct match_case match_cases[] = {
    /* 4.7.1.2 multi-level wildcard */
    {"sport/tennis/player1/#", "sport/tennis/player1", true},
    {"sport/tennis/player1/#", "sport/tennis/player1/ranking", true},
    {"sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true},
    {"sport/tennis/player1/#", "sport/tennis/player2", false},
    {"sport/tennis/player1/#", "sport/tennis", false},
    {"sport/#", "sport", true},
    {"sport/#", "sport/", true},
    {"sport/#", "sports", false},
    {"#", "sport/tennis", true},
    {"#", "/", true},
    {"#", "a", true},
    /* 4.7.1.3 single-level wildcard */
    {"sport/tennis/+", "sport/tennis/player1", true},
    {"sport/tennis/+", "sport/tennis/player2", true},
    {"sport/tennis/+", "sport/tennis/player1/ranking", false},
    {"sport/+", "sport", false},
    {"sport/+", "sport/", true},
    {"+/+", "/finance", true},
    {"/+", "/finance", true},
    {"+", "/finance", false},
    {"+", "finance", true},
    {"+/tennis/#", "sport/tennis/player1", true},
    {"+/tennis/#", "sport/tennis", true},
    {"+/tennis/#", "sport/golf", false},
    /* 4.7.2 topics beginning with $ */
    {"#", "$SYS/x", false},
    {"#", "$SYS", false},
    {"+", "$SYS", false},
    {"+/monitor/Clients", "$SYS/monitor/Clients", false},
    {"$SYS/#", "$SYS/monitor/Clients", true},
    {"$SYS/#", "$SYS", true},
    {"$SYS/monitor/+", "$SYS/monitor/Clients", true},
    {"$SYS/+/Clients", "$SYS/monitor/Clients", true},
    {"a/$x", "a/$x", true},
    {"a/+", "a/$x", true}, /* the rule is for the first level only */
    {"a/#", "a/$x/y", true},
    /* empty levels and trailing '/' */
    {"a//b", "a//b", true},
    {"a/+/b", "a//b", true},
    {"a/b", "a//b", false},
    {"a//b", "a/b", false},
    {"a/", "a/", true},
    {"a/", "a", false},
    {"a", "a/", false},
    {"a/+", "a/", true},
    {"/", "/", true},
    {"+/+", "/", true},
    {"+", "/", false},
    {"//", "//", true},
    {"/#", "/", true},
    {"/#", "a", false},
    /* exact */
    {"a/b/c", "a/b/c", true},
    {"a/b/c", "a/b/cd", false},
    {"a/b/c", "a/b", false},
    {"a/b", "a/b/c", false},
    {"A", "a", false},
    /* invalid inputs never match */
    {"sport+", "sport+", false},
    {"a/#/b", "a/x/b", false},
    {"a/b", "a/+", false},
};

static void test_matches_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof match_cases / sizeof match_cases[0]; i++) {
        const struct match_case *c = &match_cases[i];
        bool got = topic_matches(S(c->filter), S(c->name));
        if (got != c->expect)
            fail_msg("filter '%s' name '%s': got %d want %d", c->filter, c->name, got, c->expect);
    }
}

static void test_matches_lengths_not_nul(void **state)
{
    (void)state;
    /* Only len bytes count: "a/bX" with length 3 is "a/b". */
    assert_true(topic_matches("a/bX", 3, "a/bY", 3));
    assert_true(topic_matches("a/#X", 3, "a", 1));
    assert_false(topic_matches("a/b", 3, "a/bc", 4));
}

struct valid_case {
    const char *s;
    bool filter_ok;
    bool name_ok;
};

static const struct valid_case valid_cases[] = {
    {"#", true, false},         {"+", true, false},
    {"sport/#", true, false},   {"sport/+/player", true, false},
    {"+/+", true, false},       {"/+", true, false},
    {"+/", true, false},        {"sport", true, true},
    {"/", true, true},          {"a//b", true, true},
    {"a/", true, true},         {"$SYS/x", true, true},
    {"sport+", false, false},   {"sport/#/x", false, false},
    {"sport/#x", false, false}, {"sport#", false, false},
    {"#/", false, false},       {"++", false, false},
    {"a/+b", false, false},     {"a/b+/c", false, false},
    {"", false, false},
};

static void test_valid_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof valid_cases / sizeof valid_cases[0]; i++) {
        const struct valid_case *c = &valid_cases[i];
        if (topic_filter_valid(S(c->s)) != c->filter_ok) fail_msg("filter '%s'", c->s);
        if (topic_name_valid(S(c->s)) != c->name_ok) fail_msg("name '%s'", c->s);
    }
}

static void test_valid_length_limits(void **state)
{
    (void)state;
    char *big = malloc(65536);
    assert_non_null(big);
    memset(big, 'a', 65536);
    assert_true(topic_name_valid(big, 65535));
    assert_true(topic_filter_valid(big, 65535));
    assert_false(topic_name_valid(big, 65536));
    assert_false(topic_filter_valid(big, 65536));
    big[65534] = '#';
    big[65533] = '/';
    assert_true(topic_filter_valid(big, 65535));
    assert_false(topic_name_valid(big, 65535));
    free(big);
    assert_false(topic_name_valid("a\0b", 3));
    assert_false(topic_filter_valid("a\0b", 3));
    assert_false(topic_name_valid(NULL, 0));
}

/* ---- tree helpers ---- */

#define MAX_SEEN 4096

struct seen {
    size_t n;
    void *sub[MAX_SEEN];
    uint8_t qos[MAX_SEEN];
};

static void collect(void *sub, uint8_t qos, void *arg)
{
    struct seen *s = arg;
    assert_true(s->n < MAX_SEEN);
    s->sub[s->n] = sub;
    s->qos[s->n] = qos;
    s->n++;
}

static size_t count_of(const struct seen *s, void *sub)
{
    size_t k = 0;
    for (size_t i = 0; i < s->n; i++) k += s->sub[i] == sub;
    return k;
}

static struct seen match_name(struct topic_tree *t, const char *name)
{
    struct seen s = {0};
    topic_match(t, S(name), collect, &s);
    return s;
}

static void collect_value(void *value, void *arg)
{
    collect(value, 0, arg);
}

static struct seen retained_for(struct topic_tree *t, const char *filter)
{
    struct seen s = {0};
    topic_retain_match(t, S(filter), collect_value, &s);
    return s;
}

static int A, B, C;

/* ---- tree ---- */

static void test_tree_subscribe_new_and_update(void **state)
{
    (void)state;
    struct topic_tree *t = topic_tree_new();
    assert_non_null(t);
    assert_int_equal(topic_subscribe(t, S("a/b"), &A, 0), 1);
    assert_int_equal(topic_subscribe(t, S("a/b"), &B, 1), 1);
    assert_int_equal(topic_subscribe(t, S("a/b"), &A, 2), 0);
    struct seen s = match_name(t, "a/b");
    assert_int_equal(s.n, 2);
    for (size_t i = 0; i < s.n; i++) assert_int_equal(s.qos[i], s.sub[i] == &A ? 2 : 1);
    assert_int_equal(match_name(t, "a").n, 0);
    assert_int_equal(match_name(t, "a/b/c").n, 0);
    topic_tree_free(t);
}

static void test_tree_subscribe_invalid(void **state)
{
    (void)state;
    struct topic_tree *t = topic_tree_new();
    assert_int_equal(topic_subscribe(t, S("a/#/b"), &A, 0), ERR_INVALID);
    assert_int_equal(topic_subscribe(t, S(""), &A, 0), ERR_INVALID);
    assert_int_equal(topic_subscribe(t, S("a+"), &A, 0), ERR_INVALID);
    assert_int_equal(topic_node_count(t), 0);
    assert_int_equal(topic_unsubscribe(t, S("a+"), &A), 0);
    topic_tree_free(t);
}

static void test_tree_unsubscribe_prunes(void **state)
{
    (void)state;
    struct topic_tree *t = topic_tree_new();
    assert_int_equal(topic_subscribe(t, S("a/b/c"), &A, 0), 1);
    assert_int_equal(topic_node_count(t), 3);
    assert_int_equal(topic_subscribe(t, S("a/+/#"), &A, 0), 1);
    assert_int_equal(topic_node_count(t), 5);
    assert_int_equal(topic_subscribe(t, S("a"), &B, 0), 1);
    assert_int_equal(topic_node_count(t), 5);

    assert_int_equal(topic_unsubscribe(t, S("a/b/c"), &B), 0); /* not B's */
    assert_int_equal(topic_unsubscribe(t, S("a/b"), &A), 0);   /* no such filter */
    assert_int_equal(topic_unsubscribe(t, S("x/y"), &A), 0);
    assert_int_equal(topic_node_count(t), 5);

    assert_int_equal(topic_unsubscribe(t, S("a/b/c"), &A), 1);
    assert_int_equal(topic_node_count(t), 3); /* a, +, # */
    assert_int_equal(topic_unsubscribe(t, S("a/b/c"), &A), 0);
    assert_int_equal(topic_unsubscribe(t, S("a/+/#"), &A), 1);
    assert_int_equal(topic_node_count(t), 1); /* a holds B */
    assert_int_equal(match_name(t, "a/b/c").n, 0);
    assert_int_equal(topic_unsubscribe(t, S("a"), &B), 1);
    assert_int_equal(topic_node_count(t), 0);
    assert_int_equal(match_name(t, "a").n, 0);
    topic_tree_free(t);
}

static void test_tree_prune_keeps_retained(void **state)
{
    (void)state;
    struct topic_tree *t = topic_tree_new();
    int v;
    assert_null(topic_retain_set(t, S("a/b"), &v));
    assert_int_equal(topic_subscribe(t, S("a/b/c"), &A, 1), 1);
    assert_int_equal(topic_unsubscribe(t, S("a/b/c"), &A), 1);
    assert_int_equal(topic_node_count(t), 2);
    assert_ptr_equal(topic_retain_set(t, S("a/b"), NULL), &v);
    assert_int_equal(topic_node_count(t), 0);
    topic_tree_free(t);
}

static void test_tree_match_overlapping_once_per_filter(void **state)
{
    (void)state;
    struct topic_tree *t = topic_tree_new();
    const char *filters[] = {
        "sport/tennis/player1", "sport/tennis/+",        "sport/#", "#", "+/+/player1",
        "sport/+/+/#",          "sport/tennis/player1/#"};
    for (size_t i = 0; i < sizeof filters / sizeof filters[0]; i++)
        assert_int_equal(topic_subscribe(t, S(filters[i]), &A, (uint8_t)(i % 3)), 1);
    assert_int_equal(topic_subscribe(t, S("sport/tennis/+"), &B, 2), 1);
    assert_int_equal(topic_subscribe(t, S("sport/golf"), &C, 0), 1);

    struct seen s = match_name(t, "sport/tennis/player1");
    assert_int_equal(count_of(&s, &A), 7);
    assert_int_equal(count_of(&s, &B), 1);
    assert_int_equal(count_of(&s, &C), 0);

    s = match_name(t, "sport");
    assert_int_equal(count_of(&s, &A), 2); /* sport/# and # */
    s = match_name(t, "sport/golf");
    assert_int_equal(count_of(&s, &A), 2);
    assert_int_equal(count_of(&s, &C), 1);
    s = match_name(t, "$SYS/tennis/player1");
    assert_int_equal(s.n, 0);
    topic_tree_free(t);
}

static void test_tree_match_dollar_first_level(void **state)
{
    (void)state;
    struct topic_tree *t = topic_tree_new();
    assert_int_equal(topic_subscribe(t, S("#"), &A, 0), 1);
    assert_int_equal(topic_subscribe(t, S("+/monitor/Clients"), &A, 0), 1);
    assert_int_equal(topic_subscribe(t, S("$SYS/#"), &B, 0), 1);
    assert_int_equal(topic_subscribe(t, S("$SYS/monitor/+"), &C, 0), 1);
    struct seen s = match_name(t, "$SYS/monitor/Clients");
    assert_int_equal(count_of(&s, &A), 0);
    assert_int_equal(count_of(&s, &B), 1);
    assert_int_equal(count_of(&s, &C), 1);
    s = match_name(t, "SYS/monitor/Clients");
    assert_int_equal(count_of(&s, &A), 2);
    assert_int_equal(count_of(&s, &B), 0);
    topic_tree_free(t);
}

/* Many children and many subscribers on one node take the indexed path;
 * removals in a scattered order exercise its deletion. */
static void test_tree_many_children_and_subscribers(void **state)
{
    (void)state;
    enum { N = 3000 };
    struct topic_tree *t = topic_tree_new();
    static char subs[N];
    char f[64];
    for (int i = 0; i < N; i++) {
        snprintf(f, sizeof f, "dev/%d/s/ds", i);
        assert_int_equal(topic_subscribe(t, S(f), &subs[i], 1), 1);
        assert_int_equal(topic_subscribe(t, S("dev/+/s/us"), &subs[i], 0), 1);
    }
    for (int i = 0; i < N; i += 7) {
        snprintf(f, sizeof f, "dev/%d/s/ds", i);
        struct seen s = match_name(t, f);
        assert_int_equal(s.n, 1);
        assert_ptr_equal(s.sub[0], &subs[i]);
    }
    assert_int_equal(match_name(t, "dev/x/s/us").n, N);
    /* remove in a scattered order, checking the rest stays reachable */
    for (int k = 0; k < N; k++) {
        int i = (int)(((long)k * 1237) % N);
        snprintf(f, sizeof f, "dev/%d/s/ds", i);
        assert_int_equal(topic_unsubscribe(t, S(f), &subs[i]), 1);
        assert_int_equal(topic_unsubscribe(t, S("dev/+/s/us"), &subs[i]), 1);
        if (k % 97 == 0) {
            int j = (int)(((long)(k + 1) * 1237) % N);
            snprintf(f, sizeof f, "dev/%d/s/ds", j);
            assert_int_equal(match_name(t, f).n, k + 1 < N ? 1 : 0);
            assert_int_equal(match_name(t, "dev/x/s/us").n, N - k - 1);
        }
    }
    assert_int_equal(topic_node_count(t), 0);
    topic_tree_free(t);
}

/* ---- retained ---- */

static void test_retain_set_replace_clear(void **state)
{
    (void)state;
    struct topic_tree *t = topic_tree_new();
    int v1, v2, v3;
    assert_null(topic_retain_set(t, S("a/b"), &v1));
    assert_int_equal(topic_retain_count(t), 1);
    assert_ptr_equal(topic_retain_set(t, S("a/b"), &v2), &v1);
    assert_int_equal(topic_retain_count(t), 1);
    assert_null(topic_retain_set(t, S("a"), &v3));
    assert_int_equal(topic_retain_count(t), 2);
    assert_ptr_equal(topic_retain_set(t, S("a/b"), NULL), &v2);
    assert_int_equal(topic_retain_count(t), 1);
    assert_null(topic_retain_set(t, S("a/b"), NULL));
    assert_null(topic_retain_set(t, S("x/y"), NULL));
    assert_int_equal(topic_retain_count(t), 1);
    assert_int_equal(topic_node_count(t), 1);
    /* an invalid name is not stored: the value comes back */
    assert_ptr_equal(topic_retain_set(t, S("a/+"), &v1), &v1);
    assert_int_equal(topic_retain_count(t), 1);

    struct seen cleared = {0};
    assert_null(topic_retain_set(t, S("$SYS/q"), &v1));
    assert_int_equal(topic_subscribe(t, S("a/z"), &A, 0), 1);
    topic_retain_clear(t, collect_value, &cleared);
    assert_int_equal(cleared.n, 2);
    assert_int_equal(count_of(&cleared, &v1), 1);
    assert_int_equal(count_of(&cleared, &v3), 1);
    assert_int_equal(topic_retain_count(t), 0);
    assert_int_equal(topic_node_count(t), 2); /* a/z still subscribed */
    assert_int_equal(retained_for(t, "#").n, 0);
    assert_int_equal(match_name(t, "a/z").n, 1);
    topic_tree_free(t);
}

static void test_retain_match_wildcards(void **state)
{
    (void)state;
    struct topic_tree *t = topic_tree_new();
    static int v[8];
    const char *names[] = {"sport",
                           "sport/tennis",
                           "sport/tennis/player1",
                           "sport/golf",
                           "$SYS/monitor/Clients",
                           "/finance",
                           "a//b",
                           "a/"};
    for (int i = 0; i < 8; i++) assert_null(topic_retain_set(t, S(names[i]), &v[i]));
    assert_int_equal(topic_subscribe(t, S("sport/+/x"), &A, 0), 1); /* not retained */

    struct {
        const char *filter;
        size_t n;
    } cases[] = {
        {"#", 7},          {"sport/#", 4},    {"sport/+", 2},   {"+", 1},
        {"+/+", 4},        {"+/tennis/#", 2}, {"$SYS/#", 1},    {"+/monitor/Clients", 0},
        {"/+", 1},         {"a/+/b", 1},      {"a/+", 1},       {"sport/tennis/player1/#", 1},
        {"sport/golf", 1}, {"sport/+/+", 1},  {"nothing/#", 0}, {"sport/+/x", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct seen s = retained_for(t, cases[i].filter);
        if (s.n != cases[i].n)
            fail_msg("filter '%s': %zu retained, want %zu", cases[i].filter, s.n, cases[i].n);
        for (size_t j = 0; j < s.n; j++) {
            const char *name = names[(int *)s.sub[j] - v];
            if (!topic_matches(S(cases[i].filter), S(name)))
                fail_msg("filter '%s' reported '%s'", cases[i].filter, name);
            assert_int_equal(count_of(&s, s.sub[j]), 1);
        }
    }
    topic_tree_free(t);
}

/* ---- randomized cross-checks against topic_matches ---- */

static uint64_t rng_state;

static uint32_t rnd(uint32_t n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state % n);
}

static const char *const levels[] = {"a", "b", "", "$s", "ab", "c"};

/* A random topic of 1-4 levels; filters also get '+' and a final '#'. The
 * level alphabet is widened to k0..k<wide-1> to grow nodes past the index
 * threshold. */
static void random_topic(char *out, size_t cap, bool filter, unsigned wide)
{
    size_t n = 1 + rnd(4), o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        char lv[16];
        uint32_t r = rnd(10);
        if (filter && r == 0)
            strcpy(lv, "+");
        else if (filter && r == 1 && i + 1 == n)
            strcpy(lv, "#");
        else if (wide && r < 5)
            snprintf(lv, sizeof lv, "k%u", rnd(wide));
        else
            strcpy(lv, levels[rnd(sizeof levels / sizeof levels[0])]);
        o += (size_t)snprintf(out + o, cap - o, "%s%s", i ? "/" : "", lv);
    }
    if (o == 0) strcpy(out, "/"); /* one empty level is the empty string: invalid */
}

#define NF 300

struct filt {
    char f[64];
    bool on;
};

static void cross_check(unsigned wide, uint64_t seed)
{
    static struct filt fl[NF];
    static unsigned hits[NF];
    rng_state = seed;
    struct topic_tree *t = topic_tree_new();
    for (int round = 0; round < 3; round++) {
        /* toggle a random subset of filters; each filter is its own subscriber */
        for (int i = 0; i < NF; i++) {
            if (round == 0) {
                random_topic(fl[i].f, 60, true, wide);
                fl[i].on = false;
            }
            if (rnd(3) == 0 && round > 0) {
                if (fl[i].on) assert_int_equal(topic_unsubscribe(t, S(fl[i].f), &fl[i]), 1);
                fl[i].on = false;
            } else if (!fl[i].on && rnd(2) == 0) {
                assert_int_equal(topic_subscribe(t, S(fl[i].f), &fl[i], 1), 1);
                fl[i].on = true;
            }
        }
        for (int q = 0; q < 400; q++) {
            char name[64];
            random_topic(name, sizeof name, false, wide);
            struct seen s = {0};
            topic_match(t, S(name), collect, &s);
            memset(hits, 0, sizeof hits);
            for (size_t j = 0; j < s.n; j++) hits[(struct filt *)s.sub[j] - fl]++;
            for (int i = 0; i < NF; i++) {
                unsigned want = fl[i].on && topic_matches(S(fl[i].f), S(name));
                if (hits[i] != want)
                    fail_msg("name '%s' filter '%s': %u hits, want %u", name, fl[i].f, hits[i],
                             want);
            }
        }
    }
    for (int i = 0; i < NF; i++)
        if (fl[i].on) assert_int_equal(topic_unsubscribe(t, S(fl[i].f), &fl[i]), 1);
    assert_int_equal(topic_node_count(t), 0);
    topic_tree_free(t);
}

static void test_random_match_against_brute_force(void **state)
{
    (void)state;
    cross_check(0, 0x9e3779b97f4a7c15ull);
    cross_check(40, 0x243f6a8885a308d3ull);
}

#define NN 300

static void test_random_retain_against_brute_force(void **state)
{
    (void)state;
    static char names[NN][64];
    static bool set[NN];
    static unsigned hits[NN];
    for (unsigned wide = 0; wide <= 40; wide += 40) {
        rng_state = 0x13198a2e03707344ull + wide;
        struct topic_tree *t = topic_tree_new();
        size_t count = 0;
        for (int i = 0; i < NN; i++) {
            set[i] = false;
            /* names must be distinct: each slot is one retained topic */
            bool dup;
            do {
                random_topic(names[i], 60, false, wide);
                dup = false;
                for (int j = 0; j < i; j++) dup |= strcmp(names[i], names[j]) == 0;
            } while (dup && rnd(1000) != 0);
            if (dup) names[i][0] = '\0';
        }
        for (int round = 0; round < 3; round++) {
            for (int i = 0; i < NN; i++) {
                if (!names[i][0] || rnd(2)) continue;
                void *old = topic_retain_set(t, S(names[i]), set[i] ? NULL : (void *)&set[i]);
                assert_ptr_equal(old, set[i] ? (void *)&set[i] : NULL);
                count += set[i] ? (size_t)-1 : 1;
                set[i] = !set[i];
            }
            assert_int_equal(topic_retain_count(t), count);
            for (int q = 0; q < 400; q++) {
                char filter[64];
                random_topic(filter, sizeof filter, true, wide);
                struct seen s = {0};
                topic_retain_match(t, S(filter), collect_value, &s);
                memset(hits, 0, sizeof hits);
                for (size_t j = 0; j < s.n; j++) hits[(bool *)s.sub[j] - set]++;
                for (int i = 0; i < NN; i++) {
                    unsigned want = set[i] && topic_matches(S(filter), S(names[i]));
                    if (hits[i] != want)
                        fail_msg("filter '%s' name '%s': %u hits, want %u", filter, names[i],
                                 hits[i], want);
                }
            }
        }
        struct seen cleared = {0};
        topic_retain_clear(t, collect_value, &cleared);
        assert_int_equal(cleared.n, count);
        assert_int_equal(topic_retain_count(t), 0);
        assert_int_equal(topic_node_count(t), 0);
        topic_tree_free(t);
    }
}

/* 100k subscriptions: building, matching and tearing down stay fast (this
 * would take minutes with linear child lookups). */
static void test_tree_hundred_thousand_subscriptions(void **state)
{
    (void)state;
    enum { N = 100000 };
    struct topic_tree *t = topic_tree_new();
    char f[64];
    for (uintptr_t i = 0; i < N; i++) {
        snprintf(f, sizeof f, "t%u/devices/d%lu/s/ds", (unsigned)(i % 4), (unsigned long)i);
        assert_int_equal(topic_subscribe(t, S(f), (void *)(i + 1), 1), 1);
        assert_int_equal(topic_subscribe(t, S("shared/+"), (void *)(i + 1), 0), 1);
    }
    for (uintptr_t i = 0; i < N; i += 101) {
        snprintf(f, sizeof f, "t%u/devices/d%lu/s/ds", (unsigned)(i % 4), (unsigned long)i);
        struct seen s = match_name(t, f);
        assert_int_equal(s.n, 1);
        assert_ptr_equal(s.sub[0], (void *)(i + 1));
    }
    for (uintptr_t i = 0; i < N; i += 3)
        assert_int_equal(topic_unsubscribe(t, S("shared/+"), (void *)(i + 1)), 1);
    assert_int_equal(topic_subscribe(t, S("shared/+"), (void *)1, 2), 1);
    assert_int_equal(topic_subscribe(t, S("shared/+"), (void *)2, 2), 0);
    topic_tree_free(t);
}

/* The longest topics have 32768 levels; every walk is iterative. */
static void test_tree_deep_topics(void **state)
{
    (void)state;
    size_t len = 65535;
    char *name = malloc(len), *filter = malloc(len);
    assert_non_null(name);
    assert_non_null(filter);
    for (size_t i = 0; i < len; i++) name[i] = i % 2 ? '/' : 'a';
    memcpy(filter, name, len);
    filter[len - 1] = '#'; /* a/a/.../a/# */
    struct topic_tree *t = topic_tree_new();
    assert_int_equal(topic_subscribe(t, filter, len, &A, 1), 1);
    assert_int_equal(topic_subscribe(t, name, len, &B, 1), 1);
    for (size_t i = 0; i < len; i += 4) filter[i] = '+';
    assert_int_equal(topic_subscribe(t, filter, len, &C, 1), 1);
    struct seen s = {0};
    topic_match(t, name, len, collect, &s);
    assert_int_equal(count_of(&s, &A), 1);
    assert_int_equal(count_of(&s, &B), 1);
    assert_int_equal(count_of(&s, &C), 1);
    assert_null(topic_retain_set(t, name, len, &A));
    s.n = 0;
    topic_retain_match(t, filter, len, collect_value, &s);
    assert_int_equal(s.n, 1);
    s.n = 0;
    topic_retain_match(t, S("#"), collect_value, &s);
    assert_int_equal(s.n, 1);
    assert_int_equal(topic_unsubscribe(t, name, len, &B), 1);
    topic_tree_free(t);
    free(name);
    free(filter);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_table),
        cmocka_unit_test(test_matches_lengths_not_nul),
        cmocka_unit_test(test_valid_table),
        cmocka_unit_test(test_valid_length_limits),
        cmocka_unit_test(test_tree_subscribe_new_and_update),
        cmocka_unit_test(test_tree_subscribe_invalid),
        cmocka_unit_test(test_tree_unsubscribe_prunes),
        cmocka_unit_test(test_tree_prune_keeps_retained),
        cmocka_unit_test(test_tree_match_overlapping_once_per_filter),
        cmocka_unit_test(test_tree_match_dollar_first_level),
        cmocka_unit_test(test_tree_many_children_and_subscribers),
        cmocka_unit_test(test_retain_set_replace_clear),
        cmocka_unit_test(test_retain_match_wildcards),
        cmocka_unit_test(test_random_match_against_brute_force),
        cmocka_unit_test(test_random_retain_against_brute_force),
        cmocka_unit_test(test_tree_hundred_thousand_subscriptions),
        cmocka_unit_test(test_tree_deep_topics),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
