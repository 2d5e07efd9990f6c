/* GET /metrics: the Prometheus text exposition, for the management
 * tenant's admin or a scraper holding the configured metrics_token (sent
 * as "Authorization: Bearer <token>"). The text comes from the metrics hook
 * (the broker's one pass over its counters, then the process counters). */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "api/handlers.h"

bool api_metrics_token_ok(const struct api_req *r)
{
    const char *want = r->api->cfg.metrics_token;
    const char *h = api_header(r, "Authorization");
    if (!want || !*want || !h || strncasecmp(h, "Bearer ", 7) != 0) return false;
    h += 7;
    size_t n = strlen(want);
    return strlen(h) == n && CRYPTO_memcmp(h, want, n) == 0;
}

int api_h_metrics(struct api_req *r)
{
    /* The caller was authenticated on the request's head, or came with the
     * metrics token (http.c). */
    if (!r->by_metrics_token && !api_is_management_admin(r))
        return api_reply_error(r, 403, "Only the management admin or the metrics token");
    if (!r->api->cfg.metrics) return api_reply_error(r, 404, "No metrics on this node");
    char *text = NULL;
    size_t len = 0;
    GUARD(r->api->cfg.metrics(r->api->cfg.hook_arg, &text, &len));
    return api_reply_raw(r, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
}
