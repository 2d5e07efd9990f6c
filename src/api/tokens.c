/* Device-token key: GET /tenant/tenants/{tenantId}/device-token-key answers
 * the public half of the tenant's ES256 signing key (through the
 * token_public_key hook), so any JWT library can verify device tokens. The
 * private half never leaves the token service. */
#include <stdlib.h>

#include "api/handlers.h"

int api_h_token_key(struct api_req *r)
{
    const char *tenant = r->seg[2];
    char *pem = NULL;
    GUARD(api_tenant_gate(r, tenant));
    if (!r->api->cfg.token_public_key)
        return api_reply_error(r, 404, "Device tokens are not enabled on this server");
    GUARD(r->api->cfg.token_public_key(r->api->cfg.hook_arg, tenant, &pem));
    char *self = api_url(r, "/tenant/tenants/%s/device-token-key", tenant);
    json_t *j = json_pack("{s:s, s:s, s:s, s:s}", "tenant", tenant, "algorithm", "ES256",
                          "publicKeyPem", pem, "self", self ? self : "");
    free(self);
    free(pem);
    return api_reply_json(r, 200, j);
}
