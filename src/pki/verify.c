/* `pki verify CHAIN --trust CA`: the broker's own chain policy (ident_decide)
 * run on a chain file, with the --trust certificates as the enabled,
 * auto-registering anchors of one tenant ("verify"). Says OK with the
 * identity the broker would give the device, or the named refusal reason
 * with a hint; the result is one JSON object that the text view renders. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "identity/policy.h"
#include "identity/revocation.h"
#include "identity/trust.h"
#include "pki/pki_internal.h"

#define MAX_CHAIN_LIMIT 10 /* the broker's max_chain_length bound */

int pki_time_parse(const char *s, time_t *out)
{
    struct tm tm;
    const char *end;
    if (s[0] == '@') {
        char *e = NULL;
        long long v = strtoll(s + 1, &e, 10);
        ENSURE(s[1] && !*e && v >= 0 && v <= 253402300799LL, ERR_INVALID); /* <= 9999 */
        *out = (time_t)v;
        return 0;
    }
    memset(&tm, 0, sizeof tm);
    end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!end) {
        memset(&tm, 0, sizeof tm);
        end = strptime(s, "%Y-%m-%d", &tm);
    }
    ENSURE(end && (!*end || !strcmp(end, "Z")), ERR_INVALID);
    ENSURE(tm.tm_year >= 70 && tm.tm_year <= 8099, ERR_INVALID);
    *out = timegm(&tm);
    return 0;
}

/* Adds every serial of a CRL file (PEM or DER) to the tenant's revoked
 * serials and switches the tenant's CRL check on, as the broker does after
 * PUT .../settings/crl and the crl.offline.check.enabled option. The CRL
 * must verify against one of the --trust certificates, as an upload must. */
static int load_crl(struct trust_index *ti, const char *path, STACK_OF(X509) * anchors)
{
    char *data = NULL;
    size_t len = 0, n = 0;
    X509_CRL *crl = NULL;
    X509 *issuer;
    const char *why;
    struct store_crl_entry *e = NULL;
    int rc;
    GUARD(pki_read_file(path, &data, &len));
    rc = revoc_crl_parse((const uint8_t *)data, len, &crl);
    if (rc < 0) {
        pki_err("%s holds no CRL (PEM or DER expected)", path);
        goto out;
    }
    rc = revoc_crl_verify(crl, anchors, &issuer, &why);
    if (rc < 0) {
        pki_err("%s: %s", path, why);
        goto out;
    }
    GUARD_GOTO(rc, revoc_crl_entries(crl, &e, &n), out);
    for (size_t i = 0; i < n; i++)
        GUARD_GOTO(rc, trust_crl_add(ti, PKI_VERIFY_TENANT, e[i].serial), out);
    rc = trust_option_set(ti, PKI_VERIFY_TENANT, "configuration", "crl.offline.check.enabled",
                          "true");
out:
    free(e);
    X509_CRL_free(crl);
    free(data);
    return rc;
}

static int index_new(const struct pki_verify_in *in, struct trust_index **out)
{
    struct trust_index *ti = NULL;
    int rc;
    GUARD(trust_new(&ti));
    for (int i = 0; i < sk_X509_num(in->anchors); i++)
        GUARD_GOTO(rc,
                   trust_anchor_put(ti, PKI_VERIFY_TENANT, sk_X509_value(in->anchors, i), true,
                                    true, false),
                   out);
    rc = in->crl_path ? load_crl(ti, in->crl_path, in->anchors) : 0;
out:
    if (rc < 0)
        trust_free(ti);
    else
        *out = ti;
    return rc;
}

static int decide(const struct trust_index *ti, const struct pki_verify_in *in, int max_len,
                  struct ident_decision *d)
{
    struct ident_input ii = {
        .leaf = in->leaf,
        .chain = in->chain,
        .client_id = in->client_id,
        .client_id_len = in->client_id ? strlen(in->client_id) : 0,
        .now = in->at,
        .max_chain_length = max_len,
        .require_ca_in_chain = in->require_ca_in_chain,
        .allow_v1_leaf = in->allow_v1_leaf,
    };
    return ident_decide(ti, &ii, d);
}

int pki_verify_chain(const struct pki_verify_in *in, struct ident_decision *out,
                     int *needed_max_len)
{
    struct trust_index *ti = NULL;
    struct ident_decision more;
    int max_len = in->max_chain_length >= 2 ? in->max_chain_length : IDENT_DEFAULT_MAX_CHAIN;
    int rc;
    *needed_max_len = 0;
    GUARD(index_new(in, &ti));
    GUARD_GOTO(rc, decide(ti, in, max_len, out), out);
    /* A chain that is only too long: the smallest limit that would admit it. */
    for (int m = max_len + 1; out->reason == IDENT_CHAIN_TOO_LONG && m <= MAX_CHAIN_LIMIT; m++) {
        GUARD_GOTO(rc, decide(ti, in, m, &more), out);
        if (more.reason != IDENT_CHAIN_TOO_LONG) {
            *needed_max_len = more.accepted ? m : -m;
            break;
        }
    }
out:
    trust_free(ti);
    return rc;
}

/* One sentence on what to change, or NULL. */
static const char *hint(enum ident_reason r)
{
    switch (r) {
    case IDENT_CA_NOT_IN_CHAIN:
        return "the device must send the trusted CA itself after its certificate (use "
               "ID.chain.pem, not ID.pem), unless the broker runs with require_ca_in_chain "
               "false (--require-ca-in-chain false)";
    case IDENT_UNTRUSTED:
        return "no --trust certificate is in the chain or issued its topmost certificate";
    case IDENT_EXPIRED:
    case IDENT_NOT_YET_VALID:
        return "a certificate of the chain is outside its validity period at the checked time";
    case IDENT_BAD_SIGNATURE: return "a signature in the chain does not verify";
    case IDENT_SIGNER_NOT_CA:
        return "a certificate that signs another is not a CA (basicConstraints CA:TRUE, "
               "keyUsage keyCertSign)";
    case IDENT_PATH_LENGTH:
        return "a CA's pathlen allows fewer intermediate CAs below it than the chain has";
    case IDENT_CHAIN_TOO_LONG:
        return "the broker counts certificates including the device and the trusted CA; its "
               "max_chain_length option sets the limit (default 2: no intermediate)";
    case IDENT_MISSING_CLIENT_AUTH:
        return "the device certificate's extendedKeyUsage lacks clientAuth";
    case IDENT_REVOKED: return "the CRL lists a certificate of the chain";
    case IDENT_WEAK_KEY: return "RSA keys below 2048 bits and EC keys below 256 bits are refused";
    case IDENT_WEAK_SIGNATURE: return "MD5 and SHA-1 signatures are refused";
    case IDENT_BAD_COMMON_NAME:
        return "the device CN must be 1-120 bytes without ':', '/', '+', '#' or control "
               "characters";
    case IDENT_CLIENT_ID_MISMATCH: return "the MQTT ClientId must be CN, d:CN or d:CN:templateId";
    case IDENT_LEAF_IS_CA:
        return "the device certificate must be an end entity: basicConstraints CA:FALSE (or "
               "absent) and no keyCertSign";
    case IDENT_LEAF_V1:
        return "reissue the device certificate as X.509 v3 (openssl ca -extensions v3_signed), "
               "or run the broker with allow_v1_device_certificates true "
               "(--allow-v1-device-certificates true)";
    default: return NULL;
    }
}

/* The CN of the anchor whose fingerprint the decision names, or "". */
static void anchor_cn(const struct pki_verify_in *in, const char *fp, char *out, size_t cap)
{
    out[0] = '\0';
    for (int i = 0; i < sk_X509_num(in->anchors); i++) {
        char f[STORE_FP_MAX];
        X509 *x = sk_X509_value(in->anchors, i);
        if (trust_fingerprint(x, f) == 0 && !strcmp(f, fp)) {
            pki_name_cn(X509_get_subject_name(x), out, cap);
            return;
        }
    }
}

static json_t *result_json(const struct pki_verify_in *in, const struct ident_decision *d,
                           int needed)
{
    char when[32], acn[256], buf[512];
    struct tm tm;
    gmtime_r(&in->at, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    json_t *o =
        json_pack("{s:b, s:s}", "isValid", d->accepted, "reason", ident_reason_str(d->reason));
    if (!o) return NULL;
    if (d->tenant[0]) json_object_set_new(o, "tenantId", json_string(d->tenant));
    if (d->cn[0]) json_object_set_new(o, "commonName", json_string(d->cn));
    if (d->anchor_fp[0]) {
        json_object_set_new(o, "fingerprint", json_string(d->anchor_fp));
        anchor_cn(in, d->anchor_fp, acn, sizeof acn);
        json_object_set_new(o, "anchorCommonName", json_string(acn));
    }
    if (d->accepted) {
        json_t *ids = json_array();
        json_array_append_new(ids, json_string(d->cn));
        snprintf(buf, sizeof buf, "d:%s", d->cn);
        json_array_append_new(ids, json_string(buf));
        snprintf(buf, sizeof buf, "d:%s:<templateId>", d->cn);
        json_array_append_new(ids, json_string(buf));
        json_object_set_new(o, "clientIds", ids);
    }
    if (in->client_id) json_object_set_new(o, "clientId", json_string(in->client_id));
    json_object_set_new(
        o, "maxChainLength",
        json_integer(in->max_chain_length >= 2 ? in->max_chain_length : IDENT_DEFAULT_MAX_CHAIN));
    json_object_set_new(o, "requireCaInChain", json_boolean(in->require_ca_in_chain));
    json_object_set_new(o, "allowV1DeviceCertificates", json_boolean(in->allow_v1_leaf));
    json_object_set_new(o, "checkedAt", json_string(when));
    if (d->detail[0]) json_object_set_new(o, "detail", json_string(d->detail));
    if (!d->accepted && hint(d->reason))
        json_object_set_new(o, "hint", json_string(hint(d->reason)));
    if (needed > 0) json_object_set_new(o, "acceptedWithMaxChainLength", json_integer(needed));
    return o;
}

static const char *jstr(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

static void print_text(json_t *o, int needed)
{
    if (!json_is_true(json_object_get(o, "isValid"))) {
        printf("REFUSED: %s\n", jstr(o, "reason"));
        if (*jstr(o, "detail")) printf("  detail:       %s\n", jstr(o, "detail"));
        if (*jstr(o, "commonName")) printf("  common name:  %s\n", jstr(o, "commonName"));
        if (*jstr(o, "fingerprint"))
            printf("  anchor:       %s (%s)\n", jstr(o, "fingerprint"),
                   jstr(o, "anchorCommonName"));
        printf("  checked at:   %s\n", jstr(o, "checkedAt"));
        if (*jstr(o, "hint")) printf("  hint:         %s\n", jstr(o, "hint"));
        if (needed > 0)
            printf("  accepted with --max-chain-length %d (broker option max_chain_length %d)\n",
                   needed, needed);
        else if (needed < 0)
            printf("  with --max-chain-length %d the chain is still refused, for another reason: "
                   "run again with it to see which\n",
                   -needed);
        return;
    }
    json_t *ids = json_object_get(o, "clientIds");
    printf("OK\n");
    printf("  tenant:       %s\n", jstr(o, "tenantId"));
    printf("  common name:  %s\n", jstr(o, "commonName"));
    printf("  anchor:       %s (%s)\n", jstr(o, "fingerprint"), jstr(o, "anchorCommonName"));
    printf("  client ids:   %s, %s, %s\n", json_string_value(json_array_get(ids, 0)),
           json_string_value(json_array_get(ids, 1)), json_string_value(json_array_get(ids, 2)));
    printf("  checked at:   %s (max chain length %lld, CA in chain %s)\n", jstr(o, "checkedAt"),
           json_integer_value(json_object_get(o, "maxChainLength")),
           json_is_true(json_object_get(o, "requireCaInChain")) ? "required" : "not required");
}

/* Every certificate of every --trust file, in order. */
static int load_anchors(const struct pki_args *a, STACK_OF(X509) * *out)
{
    STACK_OF(X509) *all = sk_X509_new_null(), *one = NULL;
    int rc = 0;
    if (!all) return ERR_NOMEM;
    for (int i = 0; i < a->ntrust; i++) {
        GUARD_GOTO(rc, pki_certs_load(a->trust[i], &one), out);
        while (sk_X509_num(one) > 0) {
            X509 *x = sk_X509_shift(one);
            if (X509_check_ca(x) < 1)
                fprintf(stderr,
                        "certmq pki: note: %s is not a CA certificate; the server "
                        "refuses to upload it as a trusted certificate\n",
                        a->trust[i]);
            if (!sk_X509_push(all, x)) {
                X509_free(x);
                rc = ERR_NOMEM;
                goto out;
            }
        }
        sk_X509_free(one);
        one = NULL;
    }
out:
    sk_X509_pop_free(one, X509_free);
    if (rc < 0)
        sk_X509_pop_free(all, X509_free);
    else
        *out = all;
    return rc;
}

int pki_cmd_verify(struct pki_args *a)
{
    STACK_OF(X509) *chain = NULL, *anchors = NULL;
    X509 *leaf = NULL;
    struct ident_decision d;
    int needed = 0, rc;
    GUARD_GOTO(rc, pki_certs_load(a->pos[0], &chain), out);
    GUARD_GOTO(rc, load_anchors(a, &anchors), out);
    leaf = sk_X509_shift(chain);
    struct pki_verify_in in = {
        .leaf = leaf,
        .chain = chain,
        .anchors = anchors,
        .client_id = a->client_id,
        .at = a->at_given ? a->at : time(NULL),
        .max_chain_length = (int)a->max_chain,
        .require_ca_in_chain = a->require_ca != 0,
        .allow_v1_leaf = a->allow_v1,
        .crl_path = a->crl,
    };
    rc = pki_verify_chain(&in, &d, &needed);
    if (rc < 0) {
        pki_err("cannot run the chain policy on %s", a->pos[0]);
        goto out;
    }
    json_t *o = result_json(&in, &d, needed);
    rc = ERR_NOMEM;
    if (!o) goto out;
    if (a->json) {
        pki_json_print(o);
    } else {
        print_text(o, needed);
        json_decref(o);
    }
    rc = d.accepted ? 0 : ERR_AUTH;
out:
    X509_free(leaf);
    sk_X509_pop_free(chain, X509_free);
    sk_X509_pop_free(anchors, X509_free);
    return rc < 0 ? PKI_EXIT_FAIL : PKI_EXIT_OK;
}
