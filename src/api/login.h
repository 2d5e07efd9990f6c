/* Private to src/api: Basic-auth password checks off the HTTP threads. A
 * request whose password is not answered at once (cache, failure limits) is
 * parked: its connection is suspended while identity/pwcheck's pool checks,
 * and resumed when the verdict is in. api_login_release lets every parked
 * request go (a daemon may not stop with suspended connections). */
#ifndef CERTMQ_API_LOGIN_H
#define CERTMQ_API_LOGIN_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include <microhttpd.h>

#include "api/httpcheck.h"
#include "core/err.h"
#include "store/store.h"

struct api;
struct pwcheck_job;

/* One request's login, embedded in its connection state. */
struct api_login {
    struct api_login *prev, *next; /* the api's parked list */
    struct MHD_Connection *conn;
    struct pwcheck_job *job; /* the check running; NULL when none or cancelled */
    atomic_bool suspended;
    bool parked;
    char tenant[STORE_TENANT_MAX];
    char user[STORE_NAME_MAX];
    char source[64]; /* the client's address, for failure limits */
};

/* Checks Basic credentials b for the request on conn. Returns 0 (verified:
 * *roles, l->tenant and l->user set), 1 when the check was parked (the
 * caller returns MHD_YES and is called again after the resume, then calls
 * api_login_finish), ERR_BAD_CREDENTIALS, ERR_LIMIT (too many failures) or
 * ERR_QUEUE_FULL. */
MUST_USE int api_login_start(struct api *a, struct api_login *l, struct MHD_Connection *conn,
                             const struct httpcheck_basic *b, unsigned *roles);
/* The parked check's verdict (as api_login_start's), on the resumed call. */
MUST_USE int api_login_finish(struct api *a, struct api_login *l, unsigned *roles);
/* The request ends: forgets a parked check. */
void api_login_end(struct api *a, struct api_login *l);
/* Cancels every parked check and resumes its connection (its request is
 * then answered 503). Before MHD_stop_daemon. */
void api_login_release(struct api *a);

#endif
