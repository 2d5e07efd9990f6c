/* What other nodes changed, applied here: the store tells of every committed
 * change nodes hold in memory (store_watch), and this module reads the row
 * again and updates the trust index, the authorization rules and the
 * broker's retained messages as the REST API and the broker do after their
 * own writes, then calls the same hooks, so that a certificate disabled or a
 * device revoked on any node disconnects its devices on this one too. A
 * single node (SQLite) has nothing to apply. */
#ifndef CERTMQ_CLUSTER_CHANGES_H
#define CERTMQ_CLUSTER_CHANGES_H

#include <stdbool.h>

#include "core/err.h"

struct store;
struct trust_index;
struct authz;
struct tenant_ca;
struct store_change;
struct broker;

struct changes_config {
    struct store *st;
    struct trust_index *ti;
    struct authz *authz;   /* may be NULL */
    struct tenant_ca *ca;  /* may be NULL */
    struct broker *broker; /* retained messages; may be NULL (built with retain_digests) */
    /* The REST API's hooks (api.h), each may be NULL. */
    void (*on_anchor_change)(void *arg, const char *tenant, const char *fp, bool still_enabled);
    void (*on_user_delete)(void *arg, const char *tenant, const char *user, const char *device_cn);
    void (*on_crl_change)(void *arg, const char *tenant);
    void (*on_authz_change)(void *arg, const char *tenant);
    void *hook_arg;
};

/* Applies one change (the store_change_cb of store_watch; arg is the
 * struct changes_config, which must outlive the store's watch). */
void changes_apply(void *arg, const struct store_change *c);

#endif
