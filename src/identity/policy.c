/* The chain policy (see policy.h), in DESIGN.md's order: anchor among the
 * presented certificates, tenant choice, OpenSSL path validation against that
 * one anchor, CRL, key strength, CN, ClientId, registration. The read lock is
 * held for the whole decision, so the anchors handed out stay alive. */
#include "identity/policy.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509v3.h>

#include "core/log.h"
#include "identity/crlfetch.h"
#include "identity/pathcache.h"
#include "identity/trust.h"

#define MAX_PRESENTED  16
#define MAX_CANDIDATES 32

static const char *const reason_text[IDENT_REASON_COUNT] = {
    [IDENT_OK] = "accepted",
    [IDENT_NO_CERTIFICATE] = "no certificate",
    [IDENT_CA_NOT_IN_CHAIN] = "ca not in chain",
    [IDENT_UNTRUSTED] = "untrusted",
    [IDENT_ANCHOR_DISABLED] = "anchor disabled",
    [IDENT_AMBIGUOUS_TENANT] = "ambiguous tenant",
    [IDENT_EXPIRED] = "expired",
    [IDENT_NOT_YET_VALID] = "not yet valid",
    [IDENT_BAD_SIGNATURE] = "bad signature",
    [IDENT_SIGNER_NOT_CA] = "signer not a CA",
    [IDENT_PATH_LENGTH] = "path length exceeded",
    [IDENT_CHAIN_TOO_LONG] = "chain too long",
    [IDENT_MISSING_CLIENT_AUTH] = "missing clientAuth",
    [IDENT_REVOKED] = "revoked",
    [IDENT_WEAK_KEY] = "weak key",
    [IDENT_WEAK_SIGNATURE] = "weak signature",
    [IDENT_BAD_COMMON_NAME] = "bad common name",
    [IDENT_CLIENT_ID_MISMATCH] = "client id mismatch",
    [IDENT_NOT_REGISTERED] = "device not registered",
    [IDENT_INVALID_CHAIN] = "invalid chain",
    [IDENT_LEAF_IS_CA] = "device certificate is a CA",
    [IDENT_LEAF_V1] = "device certificate is v1",
    [IDENT_CRL_UNAVAILABLE] = "crl unavailable",
};

static _Atomic uint64_t counters[IDENT_REASON_COUNT];

const char *ident_reason_str(enum ident_reason r)
{
    return (unsigned)r < IDENT_REASON_COUNT ? reason_text[r] : "unknown";
}

uint64_t ident_counter(enum ident_reason r)
{
    return (unsigned)r < IDENT_REASON_COUNT ? atomic_load(&counters[r]) : 0;
}

void ident_record(const struct ident_decision *d)
{
    unsigned r =
        (unsigned)d->reason < IDENT_REASON_COUNT ? (unsigned)d->reason : IDENT_INVALID_CHAIN;
    atomic_fetch_add(&counters[r], 1);
    if (d->accepted) return;
    log_warn("refused device tenant=%s cn=%s anchor=%s reason=\"%s\"%s%s",
             d->tenant[0] ? d->tenant : "-", d->cn[0] ? d->cn : "-",
             d->anchor_fp[0] ? d->anchor_fp : "-", reason_text[r], d->detail[0] ? " detail=" : "",
             d->detail);
}

static int refuse(struct ident_decision *out, enum ident_reason r)
{
    out->accepted = false;
    out->auto_register = false;
    out->reason = r;
    return 0;
}

/* The leaf's single common name as UTF-8 into out (cap bytes). Returns 0
 * when it exists, is unique and fits; the content rules are checked later. */
static int leaf_cn(X509 *leaf, char *out, size_t cap)
{
    X509_NAME *name = X509_get_subject_name(leaf);
    int i = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
    ENSURE(i >= 0, ERR_NOT_FOUND);
    ENSURE(X509_NAME_get_index_by_NID(name, NID_commonName, i) < 0, ERR_INVALID);
    unsigned char *utf8 = NULL;
    int n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i)));
    int rc = ERR_INVALID;
    if (n < 0) return ERR_INVALID;
    if ((size_t)n < cap && memchr(utf8, '\0', (size_t)n) == NULL) {
        memcpy(out, utf8, (size_t)n);
        out[n] = '\0';
        rc = 0;
    }
    OPENSSL_free(utf8);
    return rc;
}

/* DESIGN.md step 6: non-empty, no ':', and nothing that cannot stand in
 * one MQTT topic level ('/', '+', '#') or is a control character. */
bool ident_cn_acceptable(const char *cn)
{
    size_t n = strlen(cn);
    if (n == 0 || n > IDENT_CN_MAX) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)cn[i];
        if (c < 0x20 || c == 0x7f || c == ':' || c == '/' || c == '+' || c == '#') return false;
    }
    return true;
}

/* ClientId must be <CN>, d:<CN> or d:<CN>:<templateId>. */
static bool client_id_matches(const char *cn, const char *id, size_t len)
{
    size_t n = strlen(cn);
    if (len == n && memcmp(id, cn, n) == 0) return true;
    if (len < 2 + n || memcmp(id, "d:", 2) != 0 || memcmp(id + 2, cn, n) != 0) return false;
    if (len == 2 + n) return true;
    return len > 3 + n && id[2 + n] == ':';
}

static enum ident_reason map_verify_error(int err)
{
    switch (err) {
    case X509_V_ERR_CERT_HAS_EXPIRED: return IDENT_EXPIRED;
    case X509_V_ERR_CERT_NOT_YET_VALID: return IDENT_NOT_YET_VALID;
    case X509_V_ERR_CERT_SIGNATURE_FAILURE:
    case X509_V_ERR_UNABLE_TO_DECRYPT_CERT_SIGNATURE:
    case X509_V_ERR_UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY: return IDENT_BAD_SIGNATURE;
    case X509_V_ERR_INVALID_CA:
    case X509_V_ERR_KEYUSAGE_NO_CERTSIGN: return IDENT_SIGNER_NOT_CA;
    case X509_V_ERR_PATH_LENGTH_EXCEEDED: return IDENT_PATH_LENGTH;
    case X509_V_ERR_CERT_CHAIN_TOO_LONG: return IDENT_CHAIN_TOO_LONG;
    case X509_V_ERR_INVALID_PURPOSE: return IDENT_MISSING_CLIENT_AUTH;
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_CERT_UNTRUSTED: return IDENT_UNTRUSTED;
    case X509_V_ERR_EE_KEY_TOO_SMALL:
    case X509_V_ERR_CA_KEY_TOO_SMALL: return IDENT_WEAK_KEY;
    case X509_V_ERR_CA_MD_TOO_WEAK: return IDENT_WEAK_SIGNATURE;
    default: return IDENT_INVALID_CHAIN;
    }
}

static int strict_verify_cb(int ok, X509_STORE_CTX *ctx)
{
    if (!ok && X509_STORE_CTX_get_error(ctx) == X509_V_ERR_CA_CERT_MISSING_KEY_USAGE) {
        X509_STORE_CTX_set_error(ctx, X509_V_OK);
        return 1;
    }
    return ok;
}

void ident_strict_profile(X509_STORE_CTX *ctx)
{
    X509_VERIFY_PARAM_set_flags(X509_STORE_CTX_get0_param(ctx), X509_V_FLAG_X509_STRICT);
    X509_STORE_CTX_set_verify_cb(ctx, strict_verify_cb);
}

/* DESIGN.md step 5 for one certificate: RSA/DSA >= 2048 bits, EC >= 256. */
static bool key_strong(X509 *x)
{
    EVP_PKEY *pk = X509_get0_pubkey(x);
    if (!pk) return false;
    int bits = EVP_PKEY_get_bits(pk);
    switch (EVP_PKEY_get_base_id(pk)) {
    case EVP_PKEY_RSA:
    case EVP_PKEY_RSA_PSS:
    case EVP_PKEY_DSA: return bits >= 2048;
    case EVP_PKEY_EC: return bits >= 256;
    case EVP_PKEY_ED25519:
    case EVP_PKEY_ED448: return true;
    default: return bits >= 256;
    }
}

/* MD5 and SHA-1 (and older) signatures are refused. */
static bool signature_strong(X509 *x)
{
    int mdnid = NID_undef, pknid = NID_undef, secbits = 0;
    uint32_t flags = 0;
    if (X509_get_signature_info(x, &mdnid, &pknid, &secbits, &flags) != 1) return false;
    switch (mdnid) {
    case NID_md2:
    case NID_md4:
    case NID_md5:
    case NID_mdc2:
    case NID_sha1:
    case NID_md5_sha1: return false;
    default: return true;
    }
}

struct cand {
    const struct trust_anchor *a;
    int pos; /* index in the presented list; n for a chained-to anchor */
};

struct presented {
    X509 *c[MAX_PRESENTED];
    int n;
};

/* Seniority (DESIGN.md step 3): an anchor counts without a proof of
 * possession only when no other tenant's anchor in this chain, enabled or
 * not, was trusted before it. */
static bool senior(const struct trust_anchor *a, const struct cand *all, int nall)
{
    for (int i = 0; i < nall; i++)
        if (all[i].a->seq < a->seq && strcmp(all[i].a->tenant, a->tenant) != 0) return false;
    return true;
}

/* Step 3 over the enabled candidates c[]: the ones that count (proven or
 * senior), then a tenant the device is registered in, then proven ones, then
 * the most specific; a tie between tenants is ambiguous. */
static enum ident_reason pick_candidate(const struct trust_index *ti, const struct cand *c, int nc,
                                        const struct cand *all, int nall, const char *cn,
                                        struct cand *chosen)
{
    bool keep[MAX_CANDIDATES];
    bool any = false, registered = false, any_pop = false;
    for (int i = 0; i < nc; i++) {
        keep[i] = c[i].a->pop_valid || senior(c[i].a, all, nall);
        any = any || keep[i];
        if (keep[i] && cn && trust_device_registered_locked(ti, c[i].a->tenant, cn))
            registered = true;
    }
    if (!any) return IDENT_ANCHOR_DISABLED; /* only juniors of a withdrawn anchor */
    for (int i = 0; i < nc; i++) {
        if (registered && keep[i] && !trust_device_registered_locked(ti, c[i].a->tenant, cn))
            keep[i] = false;
        any_pop = any_pop || (keep[i] && c[i].a->pop_valid);
    }
    int best = -1;
    for (int i = 0; i < nc; i++) {
        if (any_pop && !c[i].a->pop_valid) keep[i] = false;
        if (keep[i] && (best < 0 || c[i].pos < c[best].pos)) best = i;
    }
    for (int i = 0; i < nc; i++) {
        if (i == best || !keep[i]) continue;
        if (c[i].pos == c[best].pos && strcmp(c[i].a->tenant, c[best].a->tenant) != 0)
            return IDENT_AMBIGUOUS_TENANT;
    }
    *chosen = c[best];
    return IDENT_OK;
}

/* Anchors that issued presented certificate i without being presented
 * themselves: candidates (position p->n, the least specific) when the CA
 * need not be in the chain; otherwise they only tell "ca not in chain" from
 * "untrusted". */
static void chained_to(const struct trust_index *ti, const struct presented *p, int i,
                       bool require_ca, struct cand *c, int *nc, struct cand *all, int *nall,
                       bool *issuer_known, bool *saw_disabled, const struct trust_anchor **disabled)
{
    const struct trust_anchor *found[MAX_CANDIDATES];
    X509 *x = p->c[i];
    size_t k = trust_by_subject_locked(ti, X509_get_issuer_name(x), found, MAX_CANDIDATES);
    for (size_t j = 0; j < k && *nc == 0; j++) {
        if (X509_check_issued(found[j]->cert, x) != X509_V_OK) continue;
        if (X509_cmp(found[j]->cert, x) == 0) continue; /* x is itself the anchor */
        *issuer_known = true;
        if (require_ca) continue;
        if (*nall < MAX_CANDIDATES) all[(*nall)++] = (struct cand){found[j], p->n};
        if (!found[j]->enabled) {
            if (!*saw_disabled) *disabled = found[j];
            *saw_disabled = true;
        } else if (*nc < MAX_CANDIDATES) {
            c[(*nc)++] = (struct cand){found[j], p->n};
        }
    }
}

/* Steps 1-3: collects the anchors among the presented certificates (or,
 * when relaxed, ones that issued a presented certificate) and picks one of
 * the enabled ones.
 * Returns IDENT_OK and *chosen, or the refusal reason; for
 * IDENT_ANCHOR_DISABLED, *disabled is a disabled anchor seen (so the refusal
 * can name it). cn (NULL when the leaf has none) is the leaf's common name. */
static enum ident_reason choose_anchor(const struct trust_index *ti, const struct presented *p,
                                       bool require_ca, const char *cn, struct cand *chosen,
                                       const struct trust_anchor **disabled)
{
    struct cand c[MAX_CANDIDATES], all[MAX_CANDIDATES];
    const struct trust_anchor *found[MAX_CANDIDATES];
    int nc = 0, nall = 0;
    bool saw_disabled = false;
    for (int i = 1; i < p->n; i++) {
        char fp[STORE_FP_MAX];
        if (trust_fingerprint(p->c[i], fp) < 0) continue;
        size_t k = trust_by_fp_locked(ti, fp, found, MAX_CANDIDATES);
        for (size_t j = 0; j < k; j++) {
            if (nall < MAX_CANDIDATES) all[nall++] = (struct cand){found[j], i};
            if (!found[j]->enabled) {
                if (!saw_disabled) *disabled = found[j];
                saw_disabled = true;
            } else if (nc < MAX_CANDIDATES)
                c[nc++] = (struct cand){found[j], i};
        }
    }
    /* Anchors that issued a presented certificate (whatever the order sent). */
    bool issuer_known = false;
    for (int i = p->n - 1; i >= 0 && nc == 0; i--)
        chained_to(ti, p, i, require_ca, c, &nc, all, &nall, &issuer_known, &saw_disabled,
                   disabled);
    if (nc == 0) {
        if (saw_disabled) return IDENT_ANCHOR_DISABLED;
        return issuer_known ? IDENT_CA_NOT_IN_CHAIN : IDENT_UNTRUSTED;
    }
    enum ident_reason r = pick_candidate(ti, c, nc, all, nall, cn, chosen);
    for (int i = 0; r == IDENT_ANCHOR_DISABLED && !saw_disabled && i < nall; i++) {
        if (all[i].a->enabled) continue;
        *disabled = all[i].a;
        saw_disabled = true;
    }
    return r;
}

/* One OpenSSL validation of the leaf over untrusted, with the anchor as the
 * only trusted certificate. Returns true and copies the chain into path[]
 * (leaf first, anchor last, at most PATHCACHE_MAX_CHAIN), else *err. */
static bool openssl_path(const struct ident_input *in, X509 *leaf, STACK_OF(X509) * untrusted,
                         X509 *anchor, int max_len, X509 **path, int *plen, int *err)
{
    bool ok = false;
    STACK_OF(X509) *trusted = sk_X509_new_null();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    *err = X509_V_ERR_OUT_OF_MEM;
    if (!trusted || !ctx || !sk_X509_push(trusted, anchor)) goto out;
    if (X509_STORE_CTX_init(ctx, NULL, leaf, untrusted) != 1) goto out;
    X509_STORE_CTX_set0_trusted_stack(ctx, trusted);
    X509_VERIFY_PARAM *param = X509_STORE_CTX_get0_param(ctx);
    X509_VERIFY_PARAM_set_time(param, in->now);
    X509_VERIFY_PARAM_set_depth(param, max_len - 2);
    /* The anchor may be an intermediate: trusting it is the tenant's choice. */
    X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_PARTIAL_CHAIN);
    ident_strict_profile(ctx);
    if (X509_get_extension_flags(leaf) & EXFLAG_XKUSAGE)
        X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT);
    if (X509_verify_cert(ctx) != 1) {
        *err = X509_STORE_CTX_get_error(ctx);
        goto out;
    }
    STACK_OF(X509) *chain = X509_STORE_CTX_get0_chain(ctx);
    *plen = sk_X509_num(chain);
    if (*plen > max_len || *plen > PATHCACHE_MAX_CHAIN) {
        *err = X509_V_ERR_CERT_CHAIN_TOO_LONG;
        goto out;
    }
    for (int i = 0; i < *plen; i++) path[i] = sk_X509_value(chain, i);
    ok = true;
out:
    X509_STORE_CTX_free(ctx);
    sk_X509_free(trusted);
    return ok;
}

#define MAX_PATH_TRIES  16
#define MAX_PATH_VISITS 256

/* Path building over the presented certificates for what OpenSSL's greedy
 * choice of issuer misses (key rollover with self-issued certificates,
 * cross-certificates, a stale root sent along): depth first from the leaf,
 * each step to a presented certificate that issued the current one, until
 * the anchor issued it; every such path is validated with exactly its own
 * intermediates. */
struct path_search {
    const struct ident_input *in;
    const struct presented *p;
    X509 *anchor;
    int max_len;
    X509 *steps[PATHCACHE_MAX_CHAIN]; /* leaf and intermediates so far */
    int n;
    int tries;
    int visits;
    X509 **path;
    int *plen;
};

static bool search_from(struct path_search *s)
{
    X509 *cur = s->steps[s->n - 1];
    if (++s->visits > MAX_PATH_VISITS) return false;
    if (X509_check_issued(s->anchor, cur) == X509_V_OK && s->tries++ < MAX_PATH_TRIES) {
        STACK_OF(X509) *mid = sk_X509_new_null();
        bool ok = mid != NULL;
        for (int i = 1; ok && i < s->n; i++) ok = sk_X509_push(mid, s->steps[i]) > 0;
        int err;
        ok = ok &&
             openssl_path(s->in, s->steps[0], mid, s->anchor, s->max_len, s->path, s->plen, &err);
        sk_X509_free(mid);
        if (ok) return true;
    }
    if (s->n + 1 >= s->max_len || s->n + 1 >= PATHCACHE_MAX_CHAIN) return false;
    for (int i = 1; i < s->p->n && s->tries < MAX_PATH_TRIES; i++) {
        X509 *c = s->p->c[i];
        bool used = X509_cmp(c, s->anchor) == 0;
        for (int k = 0; k < s->n && !used; k++) used = s->steps[k] == c;
        if (used || X509_check_issued(c, cur) != X509_V_OK) continue;
        s->steps[s->n++] = c;
        if (search_from(s)) return true;
        s->n--;
    }
    return false;
}

/* Step 4 with OpenSSL: path validation with the one anchor as the only
 * trusted certificate, first over everything presented, then over each
 * path the presented certificates allow. On success fills path[] (leaf
 * first, anchor last) and, when key is given, remembers the validated path. */
static enum ident_reason verify_path(const struct ident_input *in, const struct presented *p,
                                     const struct cand *ch, int max_len,
                                     const struct pathcache_key *key, struct ident_decision *out,
                                     X509 **path, int *plen)
{
    int err = X509_V_ERR_OUT_OF_MEM;
    STACK_OF(X509) *untrusted = sk_X509_new_null();
    bool ok = untrusted != NULL;
    for (int i = 1; ok && i < p->n; i++)
        if (i != ch->pos) ok = sk_X509_push(untrusted, p->c[i]) > 0;
    ok = ok && openssl_path(in, p->c[0], untrusted, ch->a->cert, max_len, path, plen, &err);
    sk_X509_free(untrusted);
    if (!ok && err != X509_V_ERR_OUT_OF_MEM) {
        struct path_search s = {.in = in,
                                .p = p,
                                .anchor = ch->a->cert,
                                .max_len = max_len,
                                .steps = {p->c[0]},
                                .n = 1,
                                .path = path,
                                .plen = plen};
        ok = search_from(&s);
    }
    if (!ok) {
        enum ident_reason r = map_verify_error(err);
        if (r == IDENT_INVALID_CHAIN)
            snprintf(out->detail, sizeof out->detail, "%s", X509_verify_cert_error_string(err));
        return r;
    }
    struct pathcache_entry e = {.n = (uint8_t)(*plen - 1)};
    bool cacheable = key && pathcache_window(path, *plen, &e.not_before, &e.not_after);
    for (int i = 0; i < *plen - 1; i++) {
        int pos = -1;
        for (int k = 0; k < p->n && pos < 0; k++)
            if (p->c[k] == path[i]) pos = k;
        if (pos < 0) cacheable = false;
        e.pos[i] = (uint8_t)(pos < 0 ? 0 : pos);
    }
    if (cacheable) pathcache_put(key, &e);
    return IDENT_OK;
}

/* Online CRLs (tenant option configuration / crl.online.check.enabled): each
 * certificate below the anchor against the CRL its distribution point names,
 * as the fetch thread has it. One not at hand is allowed (logged) unless the
 * tenant sets configuration / crl.online.refuse.unavailable. */
static enum ident_reason online_crls(const struct trust_index *ti, const struct ident_input *in,
                                     const char *tenant, X509 **path, int len)
{
    if (!in->crls ||
        !trust_option_true_locked(ti, tenant, "configuration", "crl.online.check.enabled"))
        return IDENT_OK;
    for (int i = 0; i < len - 1; i++) {
        enum crlfetch_state st = crlfetch_check(in->crls, path[i], path[i + 1], in->now);
        if (st == CRLFETCH_REVOKED) return IDENT_REVOKED;
        if (st != CRLFETCH_UNAVAILABLE) continue;
        if (trust_option_true_locked(ti, tenant, "configuration", "crl.online.refuse.unavailable"))
            return IDENT_CRL_UNAVAILABLE;
        log_info("tenant %s: the CRL of a device chain is not at hand yet; allowed "
                 "(crl.online.refuse.unavailable is not true)",
                 tenant);
    }
    return IDENT_OK;
}

/* Step 4: the validated path (from the cache when this exact chain was
 * validated against this anchor before and is still within its validity
 * window), then the checks that can change between connects: revocation,
 * key strength and signature algorithms. */
static enum ident_reason validate_path(const struct trust_index *ti, const struct ident_input *in,
                                       const struct presented *p, const struct cand *ch,
                                       int max_len, struct ident_decision *out)
{
    X509 *path[PATHCACHE_MAX_CHAIN];
    int len = 0;
    struct pathcache_key key;
    /* A device is an end entity: a CA leaf could issue other devices'
     * certificates, and a v1 leaf has nothing that says it is not a CA. */
    if (X509_get_version(p->c[0]) != X509_VERSION_3 && !in->allow_v1_leaf) return IDENT_LEAF_V1;
    if ((X509_get_extension_flags(p->c[0]) & EXFLAG_CA) || X509_check_ca(p->c[0]) != 0)
        return IDENT_LEAF_IS_CA; /* CA:TRUE, or keyCertSign without basicConstraints */
    struct pathcache_entry e;
    bool keyed = pathcache_key(p->c, p->n, ch->a->fp, max_len, &key);
    if (keyed && pathcache_get(&key, &e) && in->now >= e.not_before && in->now <= e.not_after &&
        e.n + 1 <= max_len) {
        for (int i = 0; i < e.n; i++) path[len++] = p->c[e.pos[i]];
        path[len++] = ch->a->cert;
    } else {
        enum ident_reason r = verify_path(in, p, ch, max_len, keyed ? &key : NULL, out, path, &len);
        if (r != IDENT_OK) return r;
    }
    revoc_path_set(&out->path, path, len - 1);
    bool crl =
        trust_option_true_locked(ti, ch->a->tenant, "configuration", "crl.offline.check.enabled");
    for (int i = 0; i < len - 1; i++) {
        char serial[STORE_SERIAL_MAX];
        if (crl && trust_serial_of(path[i], serial, sizeof serial) == 0 &&
            trust_crl_revoked_locked(ti, ch->a->tenant, serial))
            return IDENT_REVOKED;
    }
    enum ident_reason online = online_crls(ti, in, ch->a->tenant, path, len);
    if (online != IDENT_OK) return online;
    for (int i = 0; i < len; i++) {
        if (!key_strong(path[i])) return IDENT_WEAK_KEY;
        /* The anchor's own self-signature is not relied upon. */
        if (i < len - 1 && !signature_strong(path[i])) return IDENT_WEAK_SIGNATURE;
    }
    return IDENT_OK;
}

int ident_decide(const struct trust_index *ti, const struct ident_input *in,
                 struct ident_decision *out)
{
    struct presented p = {.n = 0};
    struct cand ch = {NULL, 0};
    enum ident_reason r;
    char cn[IDENT_CN_MAX + 8];
    memset(out, 0, sizeof *out);
    if (!in->leaf) return refuse(out, IDENT_NO_CERTIFICATE);
    int max_len = in->max_chain_length >= 2 ? in->max_chain_length : IDENT_DEFAULT_MAX_CHAIN;
    p.c[p.n++] = in->leaf;
    for (int i = 0; in->chain && i < sk_X509_num(in->chain); i++) {
        X509 *x = sk_X509_value(in->chain, i);
        if (!x || X509_cmp(x, in->leaf) == 0) continue;
        if (p.n == MAX_PRESENTED) return refuse(out, IDENT_CHAIN_TOO_LONG);
        p.c[p.n++] = x;
    }
    bool cn_ok = leaf_cn(in->leaf, cn, sizeof cn) == 0;
    if (cn_ok) snprintf(out->cn, sizeof out->cn, "%s", cn);

    trust_read_lock(ti);
    const struct trust_anchor *disabled = NULL;
    r = choose_anchor(ti, &p, in->require_ca_in_chain, cn_ok ? cn : NULL, &ch, &disabled);
    if (r == IDENT_ANCHOR_DISABLED && disabled) {
        /* Name the withdrawn anchor in the log line; callers that answer
         * other tenants (verify-cert-chain) hide it as they hide any. */
        snprintf(out->tenant, sizeof out->tenant, "%s", disabled->tenant);
        snprintf(out->anchor_fp, sizeof out->anchor_fp, "%s", disabled->fp);
    }
    if (r != IDENT_OK) goto out;
    snprintf(out->tenant, sizeof out->tenant, "%s", ch.a->tenant);
    snprintf(out->anchor_fp, sizeof out->anchor_fp, "%s", ch.a->fp);
    r = validate_path(ti, in, &p, &ch, max_len, out);
    if (r != IDENT_OK) goto out;
    if (!cn_ok || !ident_cn_acceptable(cn)) {
        r = IDENT_BAD_COMMON_NAME;
        goto out;
    }
    if (in->client_id && !client_id_matches(cn, in->client_id, in->client_id_len)) {
        r = IDENT_CLIENT_ID_MISMATCH;
        goto out;
    }
    if (!trust_device_registered_locked(ti, ch.a->tenant, cn)) {
        if (!ch.a->auto_registration) {
            r = IDENT_NOT_REGISTERED;
            goto out;
        }
        out->auto_register = true;
    }
out:
    trust_read_unlock(ti);
    out->reason = r;
    out->accepted = r == IDENT_OK;
    if (!out->accepted) out->auto_register = false;
    return 0;
}
