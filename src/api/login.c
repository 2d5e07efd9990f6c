/* Basic-auth password checks off the HTTP threads (see login.h). Lock
 * order: parked_lock, then the pwcheck pool's lock (pwcheck_cancel); the
 * pool's done callback takes no lock of ours, only the suspended flag. */
#include "api/login.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "api/handlers.h"
#include "identity/pwcheck.h"
#include "identity/trust.h"

static void client_source(struct MHD_Connection *conn, char *out, size_t cap)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *sa = ci ? ci->client_addr : NULL;
    out[0] = 0;
    if (sa && sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, (socklen_t)cap);
    else if (sa && sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, out, (socklen_t)cap);
}

static void park(struct api *a, struct api_login *l)
{
    pthread_mutex_lock(&a->parked_lock);
    l->prev = NULL;
    l->next = a->parked;
    if (a->parked) a->parked->prev = l;
    a->parked = l;
    l->parked = true;
    pthread_mutex_unlock(&a->parked_lock);
}

/* parked_lock held. */
static void unpark_locked(struct api *a, struct api_login *l)
{
    if (!l->parked) return;
    if (l->prev)
        l->prev->next = l->next;
    else
        a->parked = l->next;
    if (l->next) l->next->prev = l->prev;
    l->parked = false;
}

/* On a pool thread, the pool's lock held: only wakes the connection. */
static void check_done(void *arg)
{
    struct api_login *l = arg;
    if (atomic_exchange(&l->suspended, false)) MHD_resume_connection(l->conn);
}

int api_login_start(struct api *a, struct api_login *l, struct MHD_Connection *conn,
                    const struct httpcheck_basic *b, unsigned *roles)
{
    char login[sizeof l->tenant + sizeof l->user + 1];
    size_t tl = strlen(b->tenant), ul = strlen(b->user);
    ENSURE(tl < sizeof l->tenant && ul < sizeof l->user, ERR_BAD_CREDENTIALS);
    memcpy(l->tenant, b->tenant, tl + 1);
    memcpy(l->user, b->user, ul + 1);
    l->conn = conn;
    struct pwcheck *pc = a->cfg.pwcheck;
    if (!pc)
        return trust_check_password(a->ti, l->tenant, l->user, b->password, b->password_len,
                                    roles) < 0
                   ? ERR_BAD_CREDENTIALS
                   : 0;
    client_source(conn, l->source, sizeof l->source);
    int n = snprintf(login, sizeof login, "%s/%s", l->tenant, l->user);
    int q = pwcheck_quick(pc, l->source, login, (size_t)n, b->password, b->password_len, roles);
    if (q != 0) return q == 1 ? 0 : q;
    /* Suspended before the check starts, so its end always finds it so. */
    MHD_suspend_connection(conn);
    atomic_store(&l->suspended, true);
    park(a, l);
    int rc = pwcheck_submit(pc, l->source, login, (size_t)n, b->password, b->password_len,
                            check_done, l, &l->job);
    if (rc < 0) {
        l->job = NULL;
        check_done(l); /* resumed at once: api_login_finish says why */
    }
    return 1;
}

int api_login_finish(struct api *a, struct api_login *l, unsigned *roles)
{
    pthread_mutex_lock(&a->parked_lock);
    struct pwcheck_job *job = l->job;
    l->job = NULL;
    unpark_locked(a, l);
    pthread_mutex_unlock(&a->parked_lock);
    if (!job) return ERR_QUEUE_FULL; /* refused by the pool, or released at a stop */
    int rc = pwcheck_finish(a->cfg.pwcheck, job, roles);
    return rc == ERR_LIMIT || rc == 0 ? rc : ERR_BAD_CREDENTIALS;
}

void api_login_end(struct api *a, struct api_login *l)
{
    pthread_mutex_lock(&a->parked_lock);
    if (l->job) pwcheck_cancel(a->cfg.pwcheck, l->job);
    l->job = NULL;
    unpark_locked(a, l);
    pthread_mutex_unlock(&a->parked_lock);
}

void api_login_release(struct api *a)
{
    pthread_mutex_lock(&a->parked_lock);
    for (struct api_login *l = a->parked; l; l = l->next) {
        if (l->job) pwcheck_cancel(a->cfg.pwcheck, l->job);
        l->job = NULL;
        check_done(l);
    }
    pthread_mutex_unlock(&a->parked_lock);
}
