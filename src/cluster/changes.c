/* Applying another node's committed changes (see changes.h): one function
 * per table, each reading the row's current state from the store, so that
 * a notice that arrives twice, late, or for this node's own write changes
 * nothing more than the write itself did. */
#include "cluster/changes.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/x509.h>

#include "broker/broker.h"
#include "ca/tenantca.h"
#include "core/map.h"
#include "core/log.h"
#include "identity/auth.h"
#include "identity/authz.h"
#include "identity/trust.h"
#include "store/store.h"

/* A trusted certificate added, changed or deleted: the anchor follows the
 * store, and the hook closes what a withdrawn anchor admitted. */
static void apply_cert(const struct changes_config *cfg, const char *tenant, const char *fp)
{
    struct store_cert c = {0};
    int rc = store_cert_get(cfg->st, tenant, fp, &c);
    bool enabled = false;
    if (rc == ERR_NOT_FOUND) {
        if (trust_anchor_remove(cfg->ti, tenant, fp) < 0) return; /* not here either */
    } else if (rc == 0) {
        const unsigned char *p = c.der;
        X509 *x = d2i_X509(NULL, &p, (long)c.der_len);
        rc = x ? trust_anchor_put(cfg->ti, tenant, x, c.enabled, c.auto_registration, c.pop_valid)
               : ERR_INVALID;
        enabled = c.enabled;
        X509_free(x);
        store_cert_clear(&c);
    }
    if (rc < 0 && rc != ERR_NOT_FOUND) {
        log_warn("tenant %s: trusted certificate %s changed elsewhere, not applied: %s", tenant, fp,
                 err_str(rc));
        return;
    }
    if (cfg->on_anchor_change) cfg->on_anchor_change(cfg->hook_arg, tenant, fp, enabled);
}

static void apply_device(const struct changes_config *cfg, const char *op, const char *tenant,
                         const char *cn)
{
    if (!strcmp(op, "DELETE"))
        ignore_result(trust_device_remove(cfg->ti, tenant, cn));
    else
        ignore_result(trust_device_add(cfg->ti, tenant, cn));
}

/* A password user's hash and roles follow the store; a deleted user (or
 * device user) has its logins closed as the REST delete does. */
static void apply_user(const struct changes_config *cfg, const char *tenant, const char *name)
{
    struct store_user u;
    int rc = store_user_get(cfg->st, tenant, name, &u);
    if (rc == 0 && u.pw_hash[0]) {
        ignore_result(trust_user_put(cfg->ti, tenant, name, u.pw_hash, u.roles));
    } else if (rc == ERR_NOT_FOUND) {
        ignore_result(trust_user_put(cfg->ti, tenant, name, "", 0));
        size_t pre = STORE_DEVICE_USER_PREFIX_LEN;
        const char *cn = strncmp(name, STORE_DEVICE_USER_PREFIX, pre) == 0 ? name + pre : NULL;
        if (cfg->on_user_delete) cfg->on_user_delete(cfg->hook_arg, tenant, name, cn);
    }
}

static void apply_crl(const struct changes_config *cfg, const char *tenant, const char *serial)
{
    if (trust_crl_add(cfg->ti, tenant, serial) < 0) return;
    if (cfg->on_crl_change) cfg->on_crl_change(cfg->hook_arg, tenant);
}

static void apply_option(const struct changes_config *cfg, const char *tenant, const char *cat,
                         const char *key)
{
    char value[STORE_VALUE_MAX];
    int rc = store_option_get(cfg->st, tenant, cat, key, value, sizeof value);
    if (rc < 0 && rc != ERR_NOT_FOUND) return;
    ignore_result(trust_option_set(cfg->ti, tenant, cat, key, rc == 0 ? value : NULL));
    if (!strcmp(cat, "authorization") && cfg->on_authz_change)
        cfg->on_authz_change(cfg->hook_arg, tenant);
}

static void apply_authz(const struct changes_config *cfg, const char *tenant)
{
    if (!cfg->authz || authz_reload(cfg->authz) < 0) return;
    if (cfg->on_authz_change) cfg->on_authz_change(cfg->hook_arg, tenant);
}

/* After a gap: every stored retained message is set again, and noted by
 * "tenant \x01 digest" so that the ones cleared meanwhile can be swept. */
struct stored_retained {
    struct broker *broker;
    struct map seen; /* values unused (non-NULL) */
};

#define RETAINED_KEY_MAX (STORE_TENANT_MAX + 1 + STORE_DIGEST_HEX + 1)

static int retained_key(char key[RETAINED_KEY_MAX], const char *tenant, const char *digest)
{
    int n = snprintf(key, RETAINED_KEY_MAX, "%s\x01%s", tenant, digest);
    return n > 0 && n < RETAINED_KEY_MAX ? n : ERR_INVALID;
}

/* Row callback of the resync's store_retained_list: PostgreSQL (the only
 * store with a watch) visits its rows after releasing its connection, so
 * the broker lock taken here never waits on the store's. */
static int put_retained(void *arg, const char *tenant, const void *topic, size_t tlen,
                        const void *payload, size_t plen, int qos)
{
    struct stored_retained *r = arg;
    char digest[STORE_DIGEST_HEX + 1], key[RETAINED_KEY_MAX];
    store_retained_digest(topic, tlen, digest);
    int n = retained_key(key, tenant, digest);
    GUARD(n);
    GUARD(broker_retained_put(r->broker, tenant, topic, tlen, payload, plen, (uint8_t)qos));
    return map_put(&r->seen, key, (size_t)n, r, NULL);
}

static bool still_stored(void *arg, const char *tenant, const char *digest)
{
    const struct stored_retained *r = arg;
    char key[RETAINED_KEY_MAX];
    int n = retained_key(key, tenant, digest);
    return n < 0 || map_get(&r->seen, key, (size_t)n) != NULL;
}

static int resync_retained(const struct changes_config *cfg)
{
    if (!cfg->broker) return 0;
    struct stored_retained r = {.broker = cfg->broker};
    map_init(&r.seen);
    int rc = store_retained_list(cfg->st, put_retained, &r);
    if (rc == 0) rc = broker_retained_sweep(cfg->broker, still_stored, &r);
    map_free(&r.seen);
    return rc;
}

/* One retained row copied out of the store's callback (owned). */
struct retained_copy {
    void *topic, *payload;
    size_t tlen, plen;
    int qos;
};

static int copy_retained(void *arg, const char *tenant, const void *topic, size_t tlen,
                         const void *payload, size_t plen, int qos)
{
    (void)tenant;
    struct retained_copy *c = arg;
    c->topic = malloc(tlen ? tlen : 1);
    c->payload = malloc(plen ? plen : 1);
    ENSURE(c->topic && c->payload, ERR_NOMEM);
    memcpy(c->topic, topic, tlen);
    if (plen) memcpy(c->payload, payload, plen);
    c->tlen = tlen;
    c->plen = plen;
    c->qos = qos;
    return 0;
}

/* A retained message set or cleared: the notice names its topic by digest;
 * the row as the store holds it now is what this node keeps (two racing
 * writes end the same on every node). Future subscribers only: nothing is
 * delivered now (the publishing node's live subscribers got it already). */
static void apply_retained(const struct changes_config *cfg, const char *tenant, const char *digest)
{
    struct retained_copy c = {0};
    int rc = store_retained_get(cfg->st, tenant, digest, copy_retained, &c);
    if (rc == 0)
        rc = broker_retained_put(cfg->broker, tenant, c.topic, c.tlen, c.payload, c.plen,
                                 (uint8_t)c.qos);
    else if (rc == ERR_NOT_FOUND)
        rc = broker_retained_clear_digest(cfg->broker, tenant, digest);
    free(c.topic);
    free(c.payload);
    if (rc < 0)
        log_warn("tenant %s: retained message %.16s... changed elsewhere, not applied: %s", tenant,
                 digest, err_str(rc));
}

/* A certificate device whose anchor is no longer trusted and enabled. */
static bool anchor_withdrawn(const struct auth_result *who, void *arg)
{
    const struct trust_index *ti = arg;
    if (who->kind != AUTH_CERTIFICATE_DEVICE || !who->anchor_fp[0]) return false;
    const struct trust_anchor *a[16];
    size_t n = trust_by_fp_locked(ti, who->anchor_fp, a, 16);
    for (size_t i = 0; i < n; i++)
        if (!strcmp(a[i]->tenant, who->tenant) && a[i]->enabled) return false;
    return true;
}

/* After a gap in the notices: whatever was added or changed meanwhile is
 * read again, and devices of anchors withdrawn meanwhile are closed (other
 * deletions meanwhile stay in memory until a restart, but for retained
 * messages, which are swept). */
static void resync(const struct changes_config *cfg)
{
    if (trust_load(cfg->ti, cfg->st) < 0 || (cfg->authz && authz_reload(cfg->authz) < 0) ||
        resync_retained(cfg) < 0) {
        log_warn("store: reading changes made elsewhere again failed");
        return;
    }
    if (!cfg->broker) return;
    /* An anchor disabled or deleted meanwhile closes its devices here too. */
    trust_read_lock(cfg->ti); /* lock order: trust index, then broker */
    int n = broker_kick_where(cfg->broker, anchor_withdrawn, cfg->ti);
    trust_read_unlock(cfg->ti);
    if (n) log_info("store: %d device(s) of trusted certificates withdrawn meanwhile closed", n);
}

void changes_apply(void *arg, const struct store_change *c)
{
    const struct changes_config *cfg = arg;
    if (!c->table) {
        resync(cfg);
        return;
    }
    const char *t = c->table;
    bool key1 = c->k1 != NULL;
    if (!strcmp(t, "trusted_certs") && key1)
        apply_cert(cfg, c->tenant, c->k1);
    else if (!strcmp(t, "devices") && key1)
        apply_device(cfg, c->op, c->tenant, c->k1);
    else if (!strcmp(t, "users") && key1)
        apply_user(cfg, c->tenant, c->k1);
    else if (!strcmp(t, "crl_entries") && key1 && strcmp(c->op, "DELETE"))
        apply_crl(cfg, c->tenant, c->k1);
    else if (!strcmp(t, "options") && key1 && c->k2)
        apply_option(cfg, c->tenant, c->k1, c->k2);
    else if (!strcmp(t, "authz_rules") || !strcmp(t, "authz_roles"))
        apply_authz(cfg, c->tenant);
    else if (!strcmp(t, "tenant_ca"))
        tenant_ca_refresh(cfg->ca, c->tenant);
    else if (!strcmp(t, "retained") && key1 && cfg->broker)
        apply_retained(cfg, c->tenant, c->k1);
    /* tenants: nothing held in memory. */
}
