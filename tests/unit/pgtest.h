/* PostgreSQL for unit tests: CERTMQ_TEST_PG names a server whose user may
 * create databases; each test gets a fresh one (CERTMQ_TEST_PG_PREFIX keeps
 * side-by-side suites apart). Unset: the PostgreSQL groups are skipped with
 * a message; set but unreachable: they fail. */
#ifndef CERTMQ_TESTS_PGTEST_H
#define CERTMQ_TESTS_PGTEST_H

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *pgtest_server(void)
{
    const char *s = getenv("CERTMQ_TEST_PG");
    return s && *s ? s : NULL;
}

/* Says why the PostgreSQL tests of this program do not run; 0 when they do. */
static int pgtest_skip(const char *what)
{
    if (pgtest_server()) return 0;
    fprintf(stderr,
            "%s: PostgreSQL tests skipped: CERTMQ_TEST_PG is not set"
            " (make test starts a server with scripts/pgtest.sh)\n",
            what);
    return 1;
}

/* uri with its database path replaced by db. */
static int pgtest_uri(const char *uri, const char *db, char *out, size_t cap)
{
    const char *hostp = strstr(uri, "://");
    if (!hostp) return -1;
    const char *path = strchr(hostp + 3, '/');
    const char *query = strchr(hostp + 3, '?');
    size_t head = path ? (size_t)(path - uri) : query ? (size_t)(query - uri) : strlen(uri);
    int n = snprintf(out, cap, "%.*s/%s%s", (int)head, uri, db, query ? query : "");
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

static int pgtest_admin(const char *sql)
{
    PGconn *c = PQconnectdb(pgtest_server());
    int rc = -1;
    if (PQstatus(c) == CONNECTION_OK) {
        PGresult *r = PQexec(c, sql);
        rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : -1;
        if (rc < 0) fprintf(stderr, "pgtest: %s: %s", sql, PQresultErrorMessage(r));
        PQclear(r);
    } else {
        fprintf(stderr, "pgtest: cannot reach CERTMQ_TEST_PG: %s", PQerrorMessage(c));
    }
    PQfinish(c);
    return rc;
}

/* Creates a fresh database: its name in name, its conninfo in uri. */
static int pgtest_create(char *name, size_t ncap, char *uri, size_t ucap)
{
    static unsigned seq;
    const char *prefix = getenv("CERTMQ_TEST_PG_PREFIX");
    snprintf(name, ncap, "%s_%ld_%u", prefix && *prefix ? prefix : "certmq_t", (long)getpid(),
             seq++);
    char sql[256];
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", name);
    if (pgtest_admin(sql) < 0) return -1;
    return pgtest_uri(pgtest_server(), name, uri, ucap);
}

static void pgtest_drop(const char *name)
{
    char sql[256];
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", name);
    (void)pgtest_admin(sql);
}

#endif
