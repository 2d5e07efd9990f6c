/* GET /health: whether this node can serve, for a load balancer's health
 * check (no credentials, nothing about any tenant): 200 when the store
 * answers, 503 when it does not, so the balancer sends devices elsewhere. */
#include <jansson.h>

#include "api/handlers.h"
#include "store/store.h"

int api_h_health(struct api_req *r)
{
    size_t n;
    bool up = store_tenant_count(r->api->st, &n) == 0;
    json_t *j = json_pack("{s:s, s:s}", "status", up ? "UP" : "DOWN", "store", up ? "UP" : "DOWN");
    if (!j) return ERR_NOMEM;
    return api_reply_json(r, up ? 200 : 503, j);
}
