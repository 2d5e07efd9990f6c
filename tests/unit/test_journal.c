/* Unit tests for the session journal (src/store/journal.c) and the session
 * store on SQLite (sessions_sqlite.c) and, when CERTMQ_TEST_PG names a
 * server, PostgreSQL (sessions_pg.c): every record type round trips; cut
 * or unknown records are refused; a batch applies in one transaction (all
 * or nothing) and loads back in rebuilding order with every field. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "store/journal.h"
#include "store/sessions.h"
#include "pgtest.h"

#define S(x) ((struct jstr){(const uint8_t *)(x), (uint32_t)(sizeof(x) - 1)})

static bool str_is(struct jstr a, const char *s)
{
    return a.len == strlen(s) && memcmp(a.p, s, a.len) == 0;
}

static const uint8_t ids[8] = {0, 0, 0, 7, 0x10, 0, 0, 1};

/* One record of every type, with every field its type carries set. */
static void sample(struct jrec *v)
{
    memset(v, 0, sizeof(struct jrec) * J_TYPE_MAX);
    v[0] = (struct jrec){.type = J_SESSION_PUT,
                         .key = S("t\x01"
                                  "c"),
                         .tenant = S("t"),
                         .client_id = S("c"),
                         .identity = S("dev-1"),
                         .anchor = S("ab"),
                         .kind = 1,
                         .device = 1,
                         .has_user_name = 1,
                         .roles = 9,
                         .expiry = 60,
                         .offline_since = 1700000000,
                         .has_will = true,
                         .will_delay = 5,
                         .will_expiry = 7,
                         .topic = S("w/t"),
                         .payload = S("bye"),
                         .props = S("\x03\x00\x01x"),
                         .qos = 1,
                         .retain = 1,
                         .expire_at = 3};
    v[1] = (struct jrec){.type = J_SESSION_DEL,
                         .key = S("t\x01"
                                  "c")};
    v[2] = (struct jrec){.type = J_SUB_PUT,
                         .key = S("t\x01"
                                  "c"),
                         .filter = S("a/+"),
                         .group = S("g"),
                         .qos = 2,
                         .opts = 4,
                         .sub_id = 99};
    v[3] = (struct jrec){.type = J_SUB_DEL,
                         .key = S("t\x01"
                                  "c"),
                         .filter = S("a/+"),
                         .group = S("")};
    v[4] = (struct jrec){.type = J_MSG_PUT,
                         .pid = 1ull << 40,
                         .topic = S("a/b"),
                         .payload = S("hello"),
                         .props = S(""),
                         .qos = 1,
                         .expire_at = -1};
    v[5] = (struct jrec){.type = J_MSG_DEL, .pid = 5};
    v[6] = (struct jrec){.type = J_ITEM_PUT,
                         .key = S("t\x01"
                                  "c"),
                         .seq = 77,
                         .pid = 1ull << 40,
                         .qos = 1,
                         .retain = 1,
                         .state = 1,
                         .packet_id = 12,
                         .n_ids = 2,
                         .ids = ids};
    v[7] = (struct jrec){.type = J_ITEM_UPD, .seq = 77, .state = 2, .packet_id = 13};
    v[8] = (struct jrec){.type = J_ITEM_DEL, .seq = 77};
    v[9] = (struct jrec){.type = J_RX_PUT,
                         .key = S("t\x01"
                                  "c"),
                         .packet_id = 4};
    v[10] = (struct jrec){.type = J_RX_DEL,
                          .key = S("t\x01"
                                   "c"),
                          .packet_id = 4};
}

static void test_round_trip(void **state)
{
    (void)state;
    struct jrec v[J_TYPE_MAX];
    sample(v);
    struct buf b;
    buf_init(&b, 0);
    for (int i = 0; i < J_TYPE_MAX; i++) assert_int_equal(journal_put(&b, &v[i]), 0);
    struct rd r = rd_make(buf_head(&b), buf_used(&b));
    struct jrec got;
    assert_int_equal(journal_next(&r, &got), 0);
    assert_true(str_is(got.identity, "dev-1") && str_is(got.payload, "bye"));
    assert_int_equal(got.offline_since, 1700000000);
    assert_true(got.has_will);
    assert_int_equal(got.will_expiry, 7);
    for (int i = 1; i < J_TYPE_MAX; i++) {
        assert_int_equal(journal_next(&r, &got), 0);
        assert_int_equal(got.type, v[i].type);
        assert_int_equal(got.seq, v[i].seq);
        assert_int_equal(got.pid, v[i].pid);
        assert_int_equal(got.packet_id, v[i].packet_id);
        if (got.type == J_ITEM_PUT) {
            assert_int_equal(got.n_ids, 2);
            assert_int_equal(journal_id(&got, 0), 7);
            assert_int_equal(journal_id(&got, 1), 0x10000001);
        }
        if (got.type == J_SUB_PUT) assert_true(str_is(got.group, "g") && got.sub_id == 99);
        if (got.type == J_MSG_PUT) assert_int_equal(got.expire_at, -1);
    }
    assert_int_equal(rd_left(&r), 0);
    buf_free(&b);
}

/* Every proper prefix of a record is refused, and so is an unknown type. */
static void test_cut_and_unknown(void **state)
{
    (void)state;
    struct jrec v[J_TYPE_MAX];
    sample(v);
    struct buf b;
    buf_init(&b, 0);
    assert_int_equal(journal_put(&b, &v[0]), 0);
    struct jrec got;
    for (size_t k = 0; k < buf_used(&b); k++) {
        struct rd r = rd_make(buf_head(&b), k);
        assert_int_equal(journal_next(&r, &got), ERR_MALFORMED);
    }
    struct rd r = rd_make("\x0c", 1);
    assert_int_equal(journal_next(&r, &got), ERR_MALFORMED);
    struct jrec bad = {.type = 0};
    assert_int_equal(journal_put(&b, &bad), ERR_INVALID);
    buf_free(&b);
}

struct seen {
    const struct jrec *want; /* sample(): loaded fields are compared to it */
    int types[64];
    int n;
    char filter[32];
    uint16_t packet_id;
    uint64_t seqs[8];
    int n_seqs;
};

static bool same(struct jstr a, struct jstr b)
{
    return a.len == b.len && memcmp(a.p, b.p, a.len) == 0;
}

/* The fields a backend stores come back as they were written. */
static void check_fields(const struct jrec *w, const struct jrec *r)
{
    if (r->type == J_SESSION_PUT) {
        const struct jrec *e = &w[0];
        assert_true(same(r->key, e->key) && same(r->tenant, e->tenant));
        assert_true(same(r->client_id, e->client_id) && same(r->identity, e->identity));
        assert_true(same(r->anchor, e->anchor));
        assert_true(r->kind == e->kind && r->device == e->device && r->roles == e->roles);
        assert_true(r->has_user_name == e->has_user_name && r->expiry == e->expiry);
        assert_int_equal(r->offline_since, e->offline_since);
        assert_true(r->has_will);
        assert_true(r->will_delay == e->will_delay && r->will_expiry == e->will_expiry);
        assert_true(same(r->topic, e->topic) && same(r->payload, e->payload));
        assert_true(same(r->props, e->props));
        assert_true(r->qos == e->qos && r->retain == e->retain && r->expire_at == e->expire_at);
    } else if (r->type == J_SUB_PUT) {
        const struct jrec *e = &w[2];
        assert_true(same(r->group, e->group) && r->qos == e->qos && r->opts == e->opts);
        assert_int_equal(r->sub_id, e->sub_id);
    } else if (r->type == J_MSG_PUT) {
        const struct jrec *e = &w[4];
        assert_int_equal(r->pid, e->pid);
        assert_true(same(r->topic, e->topic) && same(r->payload, e->payload));
        assert_true(r->qos == e->qos && r->retain == e->retain && r->expire_at == e->expire_at);
    } else if (r->type == J_ITEM_PUT && r->seq == w[6].seq) {
        const struct jrec *e = &w[6];
        assert_int_equal(r->pid, e->pid);
        assert_true(same(r->key, e->key) && r->qos == e->qos && r->retain == e->retain);
        assert_int_equal(r->n_ids, e->n_ids);
        assert_memory_equal(r->ids, e->ids, (size_t)e->n_ids * 4);
    }
}

static int collect(void *arg, const struct jrec *r)
{
    struct seen *s = arg;
    if (s->want) check_fields(s->want, r);
    if (s->n < 64) s->types[s->n++] = r->type;
    if (r->type == J_SUB_PUT)
        snprintf(s->filter, sizeof s->filter, "%.*s", (int)r->filter.len, r->filter.p);
    if (r->type == J_ITEM_PUT && s->n_seqs < 8) {
        s->seqs[s->n_seqs++] = r->seq;
        s->packet_id = r->packet_id;
    }
    return 0;
}

static void put_all(struct buf *b, const struct jrec *v, const int *which, size_t n)
{
    for (size_t i = 0; i < n; i++) assert_int_equal(journal_put(b, &v[which[i]]), 0);
}

/* The session store at path (a file or a postgresql:// URI) applies and
 * loads back; reopened, it holds what was committed. */
static void apply_and_load(const char *path)
{
    struct sstore *st;
    assert_int_equal(sstore_open(path, &st), 0);

    struct jrec v[J_TYPE_MAX];
    sample(v);
    struct jrec second = v[6];
    second.seq = 78;
    second.packet_id = 0;
    struct buf b;
    buf_init(&b, 0);
    put_all(&b, v, (int[]){0, 2, 4, 6, 9}, 5); /* session, sub, message, item, rx */
    assert_int_equal(journal_put(&b, &second), 0);
    assert_int_equal(journal_put(&b, &v[7]), 0); /* item 77 sent: packet id 13 */
    assert_int_equal(sstore_apply(st, buf_head(&b), buf_used(&b)), 0);

    struct seen s = {.want = v};
    assert_int_equal(sstore_load(st, collect, &s), 0);
    int want[] = {J_SESSION_PUT, J_SUB_PUT, J_MSG_PUT, J_ITEM_PUT, J_ITEM_PUT, J_RX_PUT};
    assert_int_equal(s.n, 6);
    assert_memory_equal(s.types, want, sizeof want);
    assert_string_equal(s.filter, "a/+");
    assert_int_equal(s.seqs[0], 77); /* queued order */
    assert_int_equal(s.seqs[1], 78);

    /* A batch with a bad record in the middle changes nothing. */
    buf_consume(&b, buf_used(&b));
    assert_int_equal(journal_put(&b, &v[8]), 0); /* item 77 done */
    assert_int_equal(buf_append(&b, "\x0c", 1), 0);
    assert_int_not_equal(sstore_apply(st, buf_head(&b), buf_used(&b)), 0);
    memset(&s, 0, sizeof s);
    assert_int_equal(sstore_load(st, collect, &s), 0);
    assert_int_equal(s.n_seqs, 2);

    /* Deleting the session takes everything it held; the message no item
     * holds is still read back (the broker deletes such after its load). */
    buf_consume(&b, buf_used(&b));
    assert_int_equal(journal_put(&b, &v[1]), 0);
    assert_int_equal(sstore_apply(st, buf_head(&b), buf_used(&b)), 0);
    sstore_close(st);
    assert_int_equal(sstore_open(path, &st), 0);
    memset(&s, 0, sizeof s);
    assert_int_equal(sstore_load(st, collect, &s), 0);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.types[0], J_MSG_PUT);
    sstore_close(st);
    buf_free(&b);
}

static void test_store_apply_and_load(void **state)
{
    (void)state;
    char dir[] = "/tmp/certmq-journal-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof path, "%s/sessions.db", dir);
    apply_and_load(path);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_store_apply_and_load_pg(void **state)
{
    (void)state;
    char db[128], uri[1024];
    assert_int_equal(pgtest_create(db, sizeof db, uri, sizeof uri), 0);
    apply_and_load(uri);
    pgtest_drop(db);
}

static int count_rx(void *arg, const struct jrec *r)
{
    if (r->type == J_RX_PUT) (*(int *)arg) += r->packet_id;
    return 0;
}

/* The database refuses one statement of a batch (a trigger here): nothing
 * of the batch is stored, and the next batch commits as usual. */
static void test_store_pg_refused_statement_rolls_back_its_batch(void **state)
{
    (void)state;
    char db[128], uri[1024];
    assert_int_equal(pgtest_create(db, sizeof db, uri, sizeof uri), 0);
    struct sstore *st;
    assert_int_equal(sstore_open(uri, &st), 0);
    PGconn *c = PQconnectdb(uri);
    PGresult *r = PQexec(c, "CREATE FUNCTION no13() RETURNS trigger LANGUAGE plpgsql AS $$"
                            " BEGIN IF NEW.packet_id = 13 THEN RAISE 'refused'; END IF;"
                            " RETURN NEW; END $$;"
                            "CREATE TRIGGER no13 BEFORE INSERT ON sess_rx FOR EACH ROW"
                            " EXECUTE FUNCTION no13()");
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    PQfinish(c);
    struct jrec v[J_TYPE_MAX];
    sample(v);
    struct buf b;
    buf_init(&b, 0);
    for (int round = 0; round < 2; round++) { /* the refusal in the first chunk, then the last */
        buf_consume(&b, buf_used(&b));
        assert_int_equal(journal_put(&b, &v[0]), 0);
        struct jrec rx = v[9];
        rx.packet_id = 13;
        assert_int_equal(journal_put(&b, &rx), 0);
        for (int i = 0; i < (round ? 0 : 300); i++) {
            rx.packet_id = (uint16_t)(100 + i);
            assert_int_equal(journal_put(&b, &rx), 0);
        }
        assert_true(sstore_apply(st, buf_head(&b), buf_used(&b)) < 0);
        int sum = 0;
        assert_int_equal(sstore_load(st, count_rx, &sum), 0);
        assert_int_equal(sum, 0);
    }
    buf_consume(&b, buf_used(&b));
    struct jrec rx = v[9];
    rx.packet_id = 14;
    assert_int_equal(journal_put(&b, &v[0]), 0);
    assert_int_equal(journal_put(&b, &rx), 0);
    assert_int_equal(sstore_apply(st, buf_head(&b), buf_used(&b)), 0);
    int sum = 0;
    assert_int_equal(sstore_load(st, count_rx, &sum), 0);
    assert_int_equal(sum, 14);
    sstore_close(st);
    buf_free(&b);
    pgtest_drop(db);
}

/* An item and a message that came and went within one batch are not
 * written; one put before, or still held, is. */
static void test_compact(void **state)
{
    (void)state;
    struct jrec v[J_TYPE_MAX];
    sample(v);
    struct jrec put = v[6], upd = v[7], del = v[8], msg = v[4], msg_del = v[5];
    msg.pid = put.pid;
    msg_del.pid = put.pid;
    struct jrec other = put;
    other.seq = 99; /* still queued at the commit; its message stored before */
    other.pid = 7;
    struct jrec gone = del;
    gone.seq = 50; /* put in an earlier batch */
    struct buf in, out;
    buf_init(&in, 0);
    buf_init(&out, 0);
    const struct jrec *batch[] = {&v[0], &msg, &put, &other, &upd, &del, &gone, &msg_del};
    for (size_t i = 0; i < sizeof batch / sizeof batch[0]; i++)
        assert_int_equal(journal_put(&in, batch[i]), 0);
    assert_int_equal(journal_compact(buf_head(&in), buf_used(&in), &out), 0);
    struct rd r = rd_make(buf_head(&out), buf_used(&out));
    struct jrec got;
    int types[8], n = 0;
    uint64_t seqs[8];
    while (rd_left(&r) && n < 8) {
        assert_int_equal(journal_next(&r, &got), 0);
        seqs[n] = got.seq;
        types[n++] = got.type;
    }
    /* the session, item 99, item 50's delete: item 77 and its message came
     * and went */
    assert_int_equal(n, 3);
    assert_int_equal(types[0], J_SESSION_PUT);
    assert_int_equal(types[1], J_ITEM_PUT);
    assert_int_equal(seqs[1], 99);
    assert_int_equal(types[2], J_ITEM_DEL);
    assert_int_equal(seqs[2], 50);
    buf_free(&in);
    buf_free(&out);
}

/* A cluster node's sessions are in its own schema; another node takes one
 * of them only once the first node's writer handle is closed (it died). */
static void test_store_pg_take_from_a_gone_node(void **state)
{
    (void)state;
    char db[128], uri[1024];
    assert_int_equal(pgtest_create(db, sizeof db, uri, sizeof uri), 0);
    struct sstore *x, *x_twin, *y_taker, *y;
    assert_int_equal(sstore_open_node(uri, "node-x", true, &x), 0);
    assert_int_not_equal(sstore_open_node(uri, "node-x", true, &x_twin), 0); /* x runs */
    assert_int_equal(sstore_open_node(uri, "node-y", true, &y), 0);
    assert_int_equal(sstore_open_node(uri, "node-y", false, &y_taker), 0);
    struct jrec v[J_TYPE_MAX];
    sample(v);
    struct buf b, got;
    buf_init(&b, 0);
    buf_init(&got, 0);
    put_all(&b, v, (int[]){0, 2, 4, 6, 9}, 5); /* session, sub, message, item, rx */
    assert_int_equal(sstore_apply(x, buf_head(&b), buf_used(&b)), 0);
    const char *key = (const char *)v[0].key.p;
    size_t klen = v[0].key.len;
    /* x is alive: nothing is taken; y's own schema does not have it either. */
    assert_int_equal(sstore_take(y_taker, key, klen, NULL, &got), 0);
    assert_int_equal(buf_used(&got), 0);
    struct seen s = {0};
    assert_int_equal(sstore_load(y, collect, &s), 0);
    assert_int_equal(s.n, 0);
    sstore_close(x); /* x dies: its server process ends a moment later */
    int taken = 0;
    for (int i = 0; i < 200 && taken == 0; i++) {
        /* Heard lately (a heartbeat): not taken from, lock or not. */
        assert_int_equal(sstore_take(y_taker, key, klen, (const char *[]){"node-x", NULL}, &got),
                         0);
        taken = sstore_take(y_taker, key, klen, NULL, &got);
        if (!taken) usleep(10000);
    }
    assert_int_equal(taken, 1);
    struct rd r = rd_make(buf_head(&got), buf_used(&got));
    struct jrec rec;
    memset(&s, 0, sizeof s);
    s.want = v;
    while (rd_left(&r)) {
        assert_int_equal(journal_next(&r, &rec), 0);
        assert_int_equal(collect(&s, &rec), 0);
    }
    int want[] = {J_SESSION_PUT, J_SUB_PUT, J_MSG_PUT, J_ITEM_PUT, J_RX_PUT};
    assert_int_equal(s.n, 5);
    assert_memory_equal(s.types, want, sizeof want);
    /* Taken once: x's schema no longer has it when x comes back. */
    buf_consume(&got, buf_used(&got));
    assert_int_equal(sstore_take(y_taker, key, klen, NULL, &got), 0);
    assert_int_equal(sstore_open_node(uri, "node-x", true, &x), 0);
    memset(&s, 0, sizeof s);
    assert_int_equal(sstore_load(x, collect, &s), 0);
    assert_int_equal(s.n, 1); /* its message alone, which x's broker drops */
    assert_int_equal(s.types[0], J_MSG_PUT);
    sstore_close(x);
    sstore_close(y);
    sstore_close(y_taker);
    buf_free(&b);
    buf_free(&got);
    pgtest_drop(db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_compact),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_cut_and_unknown),
        cmocka_unit_test(test_store_apply_and_load),
    };
    const struct CMUnitTest pg_tests[] = {
        cmocka_unit_test(test_store_apply_and_load_pg),
        cmocka_unit_test(test_store_pg_refused_statement_rolls_back_its_batch),
        cmocka_unit_test(test_store_pg_take_from_a_gone_node),
    };
    int rc = cmocka_run_group_tests_name("journal, sessions on sqlite", tests, NULL, NULL);
    if (!pgtest_skip("test_journal"))
        rc |= cmocka_run_group_tests_name("sessions on postgresql", pg_tests, NULL, NULL);
    return rc;
}
