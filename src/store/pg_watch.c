/* store_watch on PostgreSQL: a connection of its own LISTENs on channel
 * certmq, where the triggers of schema 8 announce every committed change
 * nodes hold in memory as a JSON array [table, op, tenant, key...]. A
 * thread waits on that connection's socket and hands each change to the
 * callback; a lost connection is tried again every second, and once back
 * the callback hears that changes may have been missed. */
#include <jansson.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "core/log.h"
#include "store/pg_int.h"

#define WATCH_POLL_MS  250 /* how soon a stop is seen */
#define WATCH_RETRY_MS 1000

struct pg_watch {
    pthread_t thread;
    atomic_bool stop;
    store_change_cb cb;
    void *arg;
    char *conninfo; /* may hold a password: never logged */
    char where[192];
};

/* One notification's payload: 3 to 5 strings (keys may be JSON null). */
static void deliver(struct pg_watch *w, const char *payload)
{
    json_error_t e;
    json_t *a = json_loads(payload, 0, &e);
    size_t n = json_is_array(a) ? json_array_size(a) : 0;
    const char *f[5] = {NULL};
    bool ok = n >= 3 && n <= 5;
    for (size_t i = 0; ok && i < n; i++) {
        json_t *v = json_array_get(a, i);
        ok = json_is_string(v) || (i >= 3 && json_is_null(v));
        f[i] = json_string_value(v);
    }
    if (ok) {
        struct store_change c = {f[0], f[1], f[2], f[3], f[4]};
        w->cb(w->arg, &c);
    } else {
        log_warn("store: change notice not understood, ignored");
    }
    json_decref(a);
}

static PGconn *listen_conn(struct pg_watch *w)
{
    PGconn *c = PQconnectdb(w->conninfo);
    if (PQstatus(c) == CONNECTION_OK) {
        PGresult *r = PQexec(c, "LISTEN certmq");
        bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        PQclear(r);
        if (ok && PQsetnonblocking(c, 1) == 0) return c;
    }
    PQfinish(c);
    return NULL;
}

static void sleep_unless_stopped(struct pg_watch *w, int ms)
{
    for (int t = 0; t < ms && !atomic_load(&w->stop); t += WATCH_POLL_MS)
        poll(NULL, 0, WATCH_POLL_MS);
}

/* Waits for notifications until the connection fails or stop is set. */
static void watch_conn(struct pg_watch *w, PGconn *c)
{
    while (!atomic_load(&w->stop)) {
        struct pollfd p = {.fd = PQsocket(c), .events = POLLIN};
        if (poll(&p, 1, WATCH_POLL_MS) < 0) continue;
        if (p.revents && !PQconsumeInput(c)) return;
        PGnotify *n;
        while ((n = PQnotifies(c))) {
            deliver(w, n->extra);
            PQfreemem(n);
        }
        if (PQstatus(c) != CONNECTION_OK) return;
    }
}

static void *watch_main(void *arg)
{
    struct pg_watch *w = arg;
    bool first = true;
    while (!atomic_load(&w->stop)) {
        PGconn *c = listen_conn(w);
        if (!c) {
            sleep_unless_stopped(w, WATCH_RETRY_MS);
            continue;
        }
        if (!first) {
            log_warn("store: change notices from %s again; changes meanwhile may be missed",
                     w->where);
            w->cb(w->arg, &(struct store_change){NULL, NULL, NULL, NULL, NULL});
        }
        first = false;
        watch_conn(w, c);
        PQfinish(c);
        if (!atomic_load(&w->stop)) log_warn("store: lost change notices from %s", w->where);
    }
    return NULL;
}

int pgs_watch(struct store *base, store_change_cb cb, void *arg)
{
    struct store_pg *st = (struct store_pg *)base;
    ENSURE(!st->watch, ERR_EXISTS);
    struct pg_watch *w = calloc(1, sizeof *w);
    ENSURE(w, ERR_NOMEM);
    w->cb = cb;
    w->arg = arg;
    w->conninfo = strdup(st->c.conninfo);
    snprintf(w->where, sizeof w->where, "%s", st->c.where);
    /* The first connection here, so that a watch that cannot listen fails
     * the start instead of missing changes silently. */
    PGconn *probe = w->conninfo ? listen_conn(w) : NULL;
    PQfinish(probe);
    if (!probe || pthread_create(&w->thread, NULL, watch_main, w) != 0) {
        free(w->conninfo);
        free(w);
        return probe ? ERR_INTERNAL : ERR_UNAVAILABLE;
    }
    st->watch = w;
    return 0;
}

void pg_watch_stop(struct store_pg *st)
{
    struct pg_watch *w = st->watch;
    if (!w) return;
    atomic_store(&w->stop, true);
    pthread_join(w->thread, NULL);
    free(w->conninfo);
    free(w);
    st->watch = NULL;
}

void pgs_unwatch(struct store *st)
{
    pg_watch_stop((struct store_pg *)st);
}
