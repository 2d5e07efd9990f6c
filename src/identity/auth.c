/* Connection authentication (see auth.h).
 *
 * A client with a certificate is judged by the tenant chain policy
 * (policy.c). When no tenant trusts anything in its chain and the listener
 * has a static cafile, the chain is verified against that instead and the
 * client lives in the static topic space, named by its CN. A client without
 * a certificate logs in as <tenantId>/<user> with a password, or is admitted
 * to the static space when allow_anonymous is set. */
#include "identity/auth.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/x509v3.h>

#include "core/config.h"
#include "core/log.h"
#include "core/metrics.h"
#include "identity/activity.h"
#include "identity/policy.h"
#include "identity/pwcheck.h"
#include "identity/trust.h"
#include "mqtt/codec.h"

enum reason {
    R_NO_CREDENTIALS,
    R_BAD_PASSWORD,
    R_CHAIN_INVALID,
    R_BAD_CN,
    R_CLIENT_ID_OWNED,
    R_TOO_MANY_FAILURES,
    R_CHECK_UNAVAILABLE,
    R_REVOKED,
    R_COUNT,
};

static const char *const reason_text[R_COUNT] = {
    [R_NO_CREDENTIALS] = "no certificate and no credentials",
    [R_BAD_PASSWORD] = "bad user name or password",
    [R_CHAIN_INVALID] = "certificate chain invalid for the listener cafile",
    [R_BAD_CN] = "bad common name",
    [R_CLIENT_ID_OWNED] = "client id belongs to a device",
    [R_TOO_MANY_FAILURES] = "too many failed password attempts",
    [R_CHECK_UNAVAILABLE] = "password check unavailable",
    [R_REVOKED] = "certificate revoked by the listener crlfile",
};

/* Password users named device_<ID> holding ROLE_DEVICE are devices. */

struct auth {
    bool allow_anonymous;
    int max_chain_length;
    bool require_ca_in_chain;
    bool allow_v1_leaf;
    struct trust_index *ti;
    struct store *st;
    struct pwcheck *pw;
    struct activity *act;  /* NULL: no refusal rings, no last-seen */
    struct crlfetch *crls; /* NULL: no online CRL checks */
    atomic_ulong refused[R_COUNT];
};

int auth_new(const struct config *cfg, struct trust_index *ti, struct store *st, struct pwcheck *pw,
             struct auth **out)
{
    struct auth *a = calloc(1, sizeof *a);
    if (!a) return ERR_NOMEM;
    a->allow_anonymous = cfg->allow_anonymous;
    a->max_chain_length = (int)cfg->max_chain_length;
    a->require_ca_in_chain = cfg->require_ca_in_chain;
    a->allow_v1_leaf = cfg->allow_v1_device_certificates;
    a->ti = ti;
    a->st = st;
    a->pw = pw;
    *out = a;
    return 0;
}

void auth_free(struct auth *a)
{
    free(a);
}

static int refuse(struct auth *a, struct auth_result *res, enum reason r, uint8_t rc)
{
    atomic_fetch_add(&a->refused[r], 1);
    res->connack_rc = rc;
    res->reason = reason_text[r];
    return 0;
}

/* The leaf's CN for the static space: non-empty, no ':'. */
static bool leaf_cn(X509 *leaf, char *out, size_t n)
{
    X509_NAME *name = X509_get_subject_name(leaf);
    int i = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
    if (i < 0) return false;
    ASN1_STRING *d = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i));
    unsigned char *utf8 = NULL;
    int len = ASN1_STRING_to_UTF8(&utf8, d);
    bool ok = len > 0 && (size_t)len < n && !memchr(utf8, 0, (size_t)len) &&
              !memchr(utf8, ':', (size_t)len);
    if (ok) {
        memcpy(out, utf8, (size_t)len);
        out[len] = 0;
    }
    OPENSSL_free(utf8);
    return ok;
}

/* Verifies against the listener's cafile; on success keeps the validated
 * path in *path and checks it against the listener's crlfile (ERR_AUTH
 * with *why NULL when a certificate of it is revoked). */
static int verify_static(X509_STORE *store, X509 *leaf, STACK_OF(X509) * chain, time_t now,
                         const char **why, struct revoc_path *path)
{
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    if (!ctx || !X509_STORE_CTX_init(ctx, store, leaf, chain)) {
        X509_STORE_CTX_free(ctx);
        return ERR_NOMEM;
    }
    X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT);
    X509_VERIFY_PARAM_set_time(X509_STORE_CTX_get0_param(ctx), now);
    ident_strict_profile(ctx);
    int ok = X509_verify_cert(ctx);
    *why = ok == 1 ? NULL : X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx));
    if (ok == 1) {
        revoc_path_from_chain(path, X509_STORE_CTX_get0_chain(ctx));
        if (revoc_path_revoked_store(store, path)) ok = 0;
    }
    X509_STORE_CTX_free(ctx);
    return ok == 1 ? 0 : ERR_AUTH;
}

static int static_certificate(struct auth *a, const struct auth_request *rq,
                              struct auth_result *res)
{
    if (!leaf_cn(rq->leaf, res->identity, sizeof res->identity))
        return refuse(a, res, R_BAD_CN, MQTT_CONNACK_NOT_AUTHORIZED);
    const char *why;
    int rc = verify_static(rq->listener_ca, rq->leaf, rq->chain, rq->now, &why, &res->path);
    if (rc == ERR_NOMEM) return rc;
    if (rc < 0 && !why) {
        log_warn("refused certificate cn=%s (listener cafile): certificate revoked", res->identity);
        return refuse(a, res, R_REVOKED, MQTT_CONNACK_NOT_AUTHORIZED);
    }
    if (rc < 0) {
        log_warn("refused certificate cn=%s (listener cafile): %s", res->identity, why);
        return refuse(a, res, R_CHAIN_INVALID, MQTT_CONNACK_NOT_AUTHORIZED);
    }
    res->kind = AUTH_STATIC;
    res->has_user_name = true;
    return 0;
}

/* A tenant device: the chain policy decides; auto-registration writes. */
static int tenant_certificate(struct auth *a, const struct auth_request *rq,
                              struct auth_result *res, bool *no_tenant)
{
    struct ident_input in = {
        .leaf = rq->leaf,
        .chain = rq->chain,
        .client_id = rq->client_id,
        .client_id_len = rq->client_id_len,
        .now = rq->now,
        .max_chain_length = a->max_chain_length,
        .require_ca_in_chain = a->require_ca_in_chain && !rq->chain_proven,
        .allow_v1_leaf = a->allow_v1_leaf,
        .crls = a->crls,
    };
    struct ident_decision d;
    GUARD(ident_decide(a->ti, &in, &d));
    *no_tenant = !d.accepted && !d.tenant[0] &&
                 (d.reason == IDENT_UNTRUSTED || d.reason == IDENT_CA_NOT_IN_CHAIN);
    if (*no_tenant && rq->listener_ca) return 0; /* the static cafile decides */
    if (d.accepted && d.auto_register) {
        bool created;
        if (trust_register_device(a->ti, a->st, d.tenant, d.cn, &created) < 0) {
            log_error("tenant %s: cannot register device %s", d.tenant, d.cn);
            res->connack_rc = MQTT_CONNACK_UNAVAILABLE;
            res->reason = "registration failed";
            return 0;
        }
        if (created) log_info("tenant %s: device %s registered on first connect", d.tenant, d.cn);
    }
    ident_record(&d);
    snprintf(res->tenant, sizeof res->tenant, "%s", d.tenant);
    snprintf(res->identity, sizeof res->identity, "%s", d.cn);
    snprintf(res->anchor_fp, sizeof res->anchor_fp, "%s", d.anchor_fp);
    if (!d.accepted) {
        res->connack_rc = MQTT_CONNACK_NOT_AUTHORIZED;
        res->reason = ident_reason_str(d.reason);
        return 0;
    }
    res->kind = AUTH_CERTIFICATE_DEVICE;
    res->has_user_name = true;
    res->device = true;
    res->roles = STORE_ROLE_DEVICE;
    res->chain_proven = a->require_ca_in_chain;
    res->path = d.path;
    return 0;
}

bool auth_may_control_devices(const struct auth_result *who)
{
    return who->tenant[0] && !who->device &&
           (who->roles & (STORE_ROLE_TENANT_ADMIN | STORE_ROLE_DEVICE_CONTROL_ADMIN));
}

int auth_client_id_device(const char *id, size_t len, char *out, size_t cap)
{
    if (len > 2 && !memcmp(id, "d:", 2)) {
        id += 2;
        len -= 2;
        const char *colon = memchr(id, ':', len);
        if (colon) len = (size_t)(colon - id);
    } else if (memchr(id, ':', len)) {
        return ERR_NOT_FOUND; /* a device ID has no ':' */
    }
    ENSURE(len > 0 && len < cap && !memchr(id, 0, len), ERR_NOT_FOUND);
    memcpy(out, id, len);
    out[len] = 0;
    return 0;
}

/* A registered device's ClientIds belong to it: another identity of the
 * tenant using one would take over the device's session and its queued
 * commands. */
static int claim_client_id(struct auth *a, const struct auth_request *rq, struct auth_result *res)
{
    char id[IDENT_CN_MAX + 1];
    if (auth_client_id_device(rq->client_id, rq->client_id_len, id, sizeof id) < 0) return 0;
    if (res->device && !strcmp(id, res->identity)) return 0;
    if (!trust_device_registered(a->ti, res->tenant, id)) return 0;
    log_warn("refused client tenant=%s user=%s: client id '%s' belongs to device %s", res->tenant,
             res->identity, rq->client_id, id);
    res->device = false;
    return refuse(a, res, R_CLIENT_ID_OWNED, MQTT_CONNACK_NOT_AUTHORIZED);
}

int auth_split_username(const char *name, size_t len, char *tenant, size_t tcap, char *user,
                        size_t ucap)
{
    const char *slash = memchr(name, '/', len);
    ENSURE(slash, ERR_INVALID);
    size_t tlen = (size_t)(slash - name), ulen = len - tlen - 1;
    ENSURE(tlen > 0 && tlen < tcap && ulen > 0 && ulen < ucap, ERR_INVALID);
    memcpy(tenant, name, tlen);
    tenant[tlen] = 0;
    memcpy(user, slash + 1, ulen);
    user[ulen] = 0;
    return 0;
}

/* The password check's verdict: made earlier off the network thread
 * (rq->pw_verdict), else here. */
static int password_verdict(struct auth *a, const struct auth_request *rq, const char *tenant,
                            const char *user, unsigned *roles)
{
    if (rq->pw_verdict) {
        *roles = rq->pw_roles;
        return rq->pw_verdict > 0 ? 0 : rq->pw_verdict;
    }
    const char *pw = (const char *)rq->password;
    if (a->pw)
        return pwcheck_verify(a->pw, rq->source ? rq->source : "", rq->username, rq->username_len,
                              pw, rq->password_len, roles);
    return trust_check_password(a->ti, tenant, user, pw, rq->password_len, roles);
}

/* <tenantId>/<user> with a password, checked against the in-memory index. */
static int password_login(struct auth *a, const struct auth_request *rq, struct auth_result *res)
{
    char tenant[STORE_TENANT_MAX], user[STORE_NAME_MAX];
    unsigned roles = 0;
    if (!rq->password || auth_split_username(rq->username, rq->username_len, tenant, sizeof tenant,
                                             user, sizeof user) < 0)
        return refuse(a, res, R_BAD_PASSWORD, MQTT_CONNACK_BAD_CREDENTIALS);
    int rc = password_verdict(a, rq, tenant, user, &roles);
    if (rc == ERR_LIMIT) {
        log_warn("refused password login tenant=%s user=%s source=%s: too many failed attempts",
                 tenant, user, rq->source ? rq->source : "-");
        return refuse(a, res, R_TOO_MANY_FAILURES, MQTT_CONNACK_NOT_AUTHORIZED);
    }
    if (rc == ERR_BAD_CREDENTIALS) {
        log_warn("refused password login tenant=%s user=%s: bad user name or password", tenant,
                 user);
        return refuse(a, res, R_BAD_PASSWORD, MQTT_CONNACK_BAD_CREDENTIALS);
    }
    if (rc < 0) {
        log_warn("refused password login tenant=%s user=%s: password check unavailable", tenant,
                 user);
        return refuse(a, res, R_CHECK_UNAVAILABLE, MQTT_CONNACK_UNAVAILABLE);
    }
    res->kind = AUTH_PASSWORD;
    res->has_user_name = true;
    res->roles = roles;
    snprintf(res->tenant, sizeof res->tenant, "%s", tenant);
    const size_t plen = STORE_DEVICE_USER_PREFIX_LEN;
    res->device = (roles & STORE_ROLE_DEVICE) && !strncmp(user, STORE_DEVICE_USER_PREFIX, plen) &&
                  user[plen] != 0;
    snprintf(res->identity, sizeof res->identity, "%s", res->device ? user + plen : user);
    return claim_client_id(a, rq, res);
}

static int auth_decide(struct auth *a, const struct auth_request *rq, struct auth_result *res);

void auth_set_activity(struct auth *a, struct activity *act)
{
    a->act = act;
}

void auth_set_crlfetch(struct auth *a, struct crlfetch *crls)
{
    a->crls = crls;
}

/* The certificate's notAfter as Unix seconds, 0 when unreadable. */
static int64_t not_after_of(X509 *x)
{
    struct tm tm;
    if (!x || ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) != 1) return 0;
    return (int64_t)timegm(&tm);
}

/* The refusal ring, the per-reason metric and the device's last-seen time. */
static void note_decision(struct auth *a, const struct auth_request *rq,
                          const struct auth_result *res)
{
    if (res->connack_rc == 0) {
        if (res->kind == AUTH_CERTIFICATE_DEVICE)
            activity_seen(a->act, res->tenant, res->identity, (int64_t)rq->now,
                          not_after_of(rq->leaf));
        return;
    }
    metrics_refusal(res->reason);
    if (!a->act) return;
    struct refusal r = {.time = (int64_t)rq->now};
    const char *tenant = res->tenant;
    char login_tenant[STORE_TENANT_MAX], user[STORE_NAME_MAX];
    snprintf(r.cn, sizeof r.cn, "%s", res->identity);
    /* A refused password login of a user that exists is its tenant's to
     * see (only existing users: a made-up tenant must not get a ring). */
    if (!tenant[0] && !rq->leaf && rq->username && a->ti &&
        auth_split_username(rq->username, rq->username_len, login_tenant, sizeof login_tenant, user,
                            sizeof user) == 0 &&
        trust_user_known(a->ti, login_tenant, user)) {
        tenant = login_tenant;
        snprintf(r.cn, sizeof r.cn, "%s", user);
    }
    if (!tenant[0]) return;
    snprintf(r.remote, sizeof r.remote, "%s", rq->source ? rq->source : "");
    snprintf(r.client_id, sizeof r.client_id, "%.*s",
             (int)(rq->client_id_len < 128 ? rq->client_id_len : 128), rq->client_id);
    snprintf(r.anchor_fp, sizeof r.anchor_fp, "%s", res->anchor_fp);
    snprintf(r.reason, sizeof r.reason, "%s", res->reason ? res->reason : "");
    activity_refused(a->act, tenant, &r);
}

int auth_connect(struct auth *a, const struct auth_request *rq, struct auth_result *res)
{
    int rc = auth_decide(a, rq, res);
    if (rc == 0) note_decision(a, rq, res);
    return rc;
}

static int auth_decide(struct auth *a, const struct auth_request *rq, struct auth_result *res)
{
    memset(res, 0, sizeof *res);
    if (rq->leaf) {
        bool no_tenant = true;
        if (a->ti) GUARD(tenant_certificate(a, rq, res, &no_tenant));
        if (!no_tenant || res->connack_rc) return 0;
        if (rq->listener_ca) return static_certificate(a, rq, res);
        if (!a->ti) return refuse(a, res, R_CHAIN_INVALID, MQTT_CONNACK_NOT_AUTHORIZED);
        return 0; /* the tenant refusal stands */
    }
    if (rq->username && a->ti && memchr(rq->username, '/', rq->username_len))
        return password_login(a, rq, res);
    if (!a->allow_anonymous) return refuse(a, res, R_NO_CREDENTIALS, MQTT_CONNACK_NOT_AUTHORIZED);
    res->kind = AUTH_ANONYMOUS;
    res->has_user_name = rq->username != NULL;
    const char *name = rq->username ? rq->username : rq->client_id;
    size_t len = rq->username ? rq->username_len : rq->client_id_len;
    snprintf(res->identity, sizeof res->identity, "%.*s", (int)(len < 127 ? len : 127), name);
    return 0;
}

void auth_log_counters(struct auth *a)
{
    for (int i = 0; i < R_COUNT; i++) {
        unsigned long n = atomic_load(&a->refused[i]);
        if (n) log_info("refused connections, %s: %lu", reason_text[i], n);
    }
    for (int r = 1; r < IDENT_REASON_COUNT; r++) {
        uint64_t n = ident_counter((enum ident_reason)r);
        if (n)
            log_info("refused devices, %s: %llu", ident_reason_str((enum ident_reason)r),
                     (unsigned long long)n);
    }
}
