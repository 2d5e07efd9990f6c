/* POST /tenant/trusted-certificates/verify-cert-chain: a chain (multipart
 * file, PEM body or X-Cumulocity-Client-Cert-Chain header) through the exact
 * connect-time policy, answered valid or with the named reason. An anchor of
 * another tenant is reported to a tenant admin as plain "untrusted". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/handlers.h"
#include "identity/policy.h"

#define CHAIN_HEADER "X-Cumulocity-Client-Cert-Chain"

int api_h_verify_chain(struct api_req *r)
{
    const char *data = api_header(r, CHAIN_HEADER);
    size_t len = data ? strlen(data) : 0;
    STACK_OF(X509) *chain = NULL;
    struct ident_decision d;
    if (!api_may_admin(r, r->tenant))
        return api_reply_error(r, 403, "Verifying chains needs ROLE_TENANT_ADMIN");
    if (!data && api_body_file(r, &data, &len) < 0)
        return api_reply_error(r, 400, "The multipart body has no part named file");
    if (!data || len == 0)
        return api_reply_error(r, 422,
                               "No certificate chain: send a file or the " CHAIN_HEADER " header");
    if (api_pem_chain(data, len, &chain) < 0 || sk_X509_num(chain) == 0) {
        sk_X509_pop_free(chain, X509_free);
        return api_reply_error(r, 422, "The chain is not a sequence of PEM certificates");
    }
    X509 *leaf = sk_X509_shift(chain);
    struct ident_input in = {
        .leaf = leaf,
        .chain = chain,
        .now = time(NULL),
        .max_chain_length = r->api->cfg.max_chain_length,
        .require_ca_in_chain = r->api->cfg.require_ca_in_chain,
        .allow_v1_leaf = r->api->cfg.allow_v1_leaf,
    };
    int rc = ident_decide(r->api->ti, &in, &d);
    X509_free(leaf);
    sk_X509_pop_free(chain, X509_free);
    GUARD(rc);
    if (d.tenant[0] && strcmp(d.tenant, r->tenant) != 0 && !api_is_management_admin(r)) {
        /* Another tenant's anchor: say no more than "not trusted here". */
        d.accepted = false;
        d.auto_register = false;
        d.reason = IDENT_UNTRUSTED;
        d.tenant[0] = d.anchor_fp[0] = d.detail[0] = '\0';
    }
    json_t *j = json_pack("{s:b, s:s, s:s?, s:s?, s:s?, s:b}", "isValid", d.accepted, "reason",
                          ident_reason_str(d.reason), "tenantId", d.tenant[0] ? d.tenant : NULL,
                          "commonName", d.cn[0] ? d.cn : NULL, "fingerprint",
                          d.anchor_fp[0] ? d.anchor_fp : NULL, "autoRegistration", d.auto_register);
    if (d.detail[0]) json_object_set_new(j, "detail", json_string(d.detail));
    return api_reply_json(r, 200, j);
}
