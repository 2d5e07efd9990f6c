/* GET /health: whether this node serves, for a load balancer's health
 * check (no credentials, nothing about any tenant). 200 while the node
 * runs, with its store's state: a store that does not answer makes every
 * node alike unable to write, while known devices can still connect, so it
 * is reported, not a reason to take the node out of the balancer. A node
 * that stops closes its HTTP listeners first, and the check fails. */
#include <jansson.h>

#include "api/handlers.h"
#include "store/store.h"

int api_h_health(struct api_req *r)
{
    size_t n;
    bool store_up = store_tenant_count(r->api->st, &n) == 0;
    json_t *j = json_pack("{s:s, s:s}", "status", "UP", "store", store_up ? "UP" : "DOWN");
    if (!j) return ERR_NOMEM;
    return api_reply_json(r, 200, j);
}
