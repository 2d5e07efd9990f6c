/* Tenants: POST/GET /tenant/tenants and GET /tenant/tenants/{tenantId}, and
 * the first-start bootstrap of the management tenant and its admin. Only
 * the management tenant's ROLE_TENANT_MANAGEMENT_ADMIN creates or lists
 * tenants; a tenant admin may read its own tenant. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "api/handlers.h"
#include "core/text.h"
#include "core/log.h"
#include "identity/password.h"
#include "identity/trust.h"

#define MIN_PASSWORD 8

static json_t *tenant_json(const struct api_req *r, const struct store_tenant *t)
{
    char created[40];
    char *self = api_url(r, "/tenant/tenants/%s", t->id);
    api_iso_time(t->created, created, sizeof created);
    json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "id", t->id, "domain", t->domain,
                          "company", t->company, "status", "ACTIVE", "creationTime", created,
                          "self", self ? self : "");
    free(self);
    return j;
}

/* A string member of j, "" when absent; NULL when present but not a string. */
static const char *str_member(json_t *j, const char *key)
{
    json_t *v = json_object_get(j, key);
    if (!v || json_is_null(v)) return "";
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static int random_tenant_id(char *out, size_t cap)
{
    unsigned char b[4];
    ENSURE(RAND_bytes(b, sizeof b) == 1, ERR_INTERNAL);
    unsigned long v =
        ((unsigned long)b[0] << 24 | (unsigned long)b[1] << 16 | (unsigned long)b[2] << 8 | b[3]) %
        100000000ul;
    snprintf(out, cap, "t%08lu", v);
    return 0;
}

int api_h_tenant_create(struct api_req *r)
{
    if (!api_is_management_admin(r))
        return api_reply_error(r, 403, "Only the management tenant's admin creates tenants");
    json_t *j = api_body_json(r);
    if (!j) return 0;
    int rc = 0;
    struct store_tenant t;
    struct store_user admin;
    memset(&t, 0, sizeof t);
    memset(&admin, 0, sizeof admin);
    const char *id = str_member(j, "id"), *domain = str_member(j, "domain"),
               *company = str_member(j, "company"), *name = str_member(j, "adminName"),
               *pass = str_member(j, "adminPass"), *email = str_member(j, "adminEmail");
    if (!id || !domain || !company || !name || !pass || !email) {
        rc = api_reply_error(r, 422, "Tenant fields must be strings");
        goto out;
    }
    if (*id && !api_valid_id(id, sizeof t.id)) {
        rc = api_reply_error(r, 422, "id may contain only letters, digits, '-', '_' and '.'");
        goto out;
    }
    if (!api_valid_id(name, sizeof admin.name)) {
        rc = api_reply_error(r, 422, "adminName is required (letters, digits, -_.@)");
        goto out;
    }
    if (strlen(pass) < MIN_PASSWORD) {
        rc = api_reply_error(r, 422, "adminPass is required and must have at least 8 characters");
        goto out;
    }
    if (strlen(domain) >= sizeof t.domain || strlen(company) >= sizeof t.company ||
        strlen(email) >= sizeof admin.email) {
        rc = api_reply_error(r, 422, "domain, company or adminEmail is too long");
        goto out;
    }
    if (!text_printable(domain) || !text_printable(company) || !text_printable(email)) {
        rc = api_reply_error(r, 422,
                             "domain, company and adminEmail must not hold control characters");
        goto out;
    }
    if (*id)
        snprintf(t.id, sizeof t.id, "%s", id);
    else
        GUARD_GOTO(rc, random_tenant_id(t.id, sizeof t.id), out);
    snprintf(t.domain, sizeof t.domain, "%s", domain);
    snprintf(t.company, sizeof t.company, "%s", company);
    snprintf(admin.name, sizeof admin.name, "%s", name);
    snprintf(admin.email, sizeof admin.email, "%s", email);
    admin.roles = STORE_ROLE_TENANT_ADMIN | STORE_ROLE_DEVICE_CONTROL_ADMIN;
    GUARD_GOTO(rc, password_hash(pass, strlen(pass), 0, admin.pw_hash, sizeof admin.pw_hash), out);
    rc = store_tenant_create(r->api->st, &t, &admin);
    if (rc == ERR_EXISTS) {
        rc = api_reply_error(r, 409, "A tenant with this id already exists");
        goto out;
    }
    if (rc < 0) goto out;
    GUARD_GOTO(rc, trust_user_put(r->api->ti, t.id, admin.name, admin.pw_hash, admin.roles), out);
    /* The tenant's device-token signing key is made with the tenant. */
    char *pem = NULL;
    if (r->api->cfg.token_public_key &&
        r->api->cfg.token_public_key(r->api->cfg.hook_arg, t.id, &pem) < 0)
        log_warn("tenant %s: device-token key not created yet (made on first use)", t.id);
    free(pem);
    GUARD_GOTO(rc, store_tenant_get(r->api->st, t.id, &t), out);
    json_t *tj = tenant_json(r, &t);
    json_object_set_new(tj, "adminName", json_string(admin.name));
    r->location = api_url(r, "/tenant/tenants/%s", t.id);
    rc = api_reply_json(r, 201, tj);
out:
    json_decref(j);
    return rc;
}

struct list_ctx {
    const struct api_req *r;
    json_t *items;
};

static int add_tenant(void *arg, const struct store_tenant *t)
{
    struct list_ctx *lc = arg;
    return json_array_append_new(lc->items, tenant_json(lc->r, t)) == 0 ? 0 : ERR_NOMEM;
}

int api_h_tenant_list(struct api_req *r)
{
    size_t page, size, total = 0;
    if (!api_is_management_admin(r))
        return api_reply_error(r, 403, "Only the management tenant's admin lists tenants");
    GUARD(api_paging(r, &page, &size));
    GUARD(store_tenant_count(r->api->st, &total));
    struct list_ctx lc = {r, json_array()};
    int rc = store_tenant_list(r->api->st, (page - 1) * size, size, add_tenant, &lc);
    if (rc < 0) {
        json_decref(lc.items);
        return rc;
    }
    return api_reply_json(r, 200, api_page(r, "tenants", lc.items, page, size, total));
}

int api_h_tenant_get(struct api_req *r)
{
    const char *id = r->seg[2];
    struct store_tenant t;
    if (!api_may_admin(r, id)) return api_reply_error(r, 403, "Not allowed for this tenant");
    int rc = store_tenant_get(r->api->st, id, &t);
    if (rc == ERR_NOT_FOUND) return api_reply_error(r, 404, "No such tenant");
    GUARD(rc);
    return api_reply_json(r, 200, tenant_json(r, &t));
}

/* Writes the generated password to DATA_DIR/admin-password, mode 0600. */
static int save_password(const char *data_dir, const char *pw)
{
    char path[4096];
    int n = snprintf(path, sizeof path, "%s/admin-password", data_dir);
    ENSURE(n > 0 && (size_t)n < sizeof path, ERR_INVALID);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ENSURE(fd >= 0, ERR_IO);
    int rc = 0;
    size_t len = strlen(pw);
    if (fchmod(fd, 0600) != 0 || write(fd, pw, len) != (ssize_t)len || write(fd, "\n", 1) != 1)
        rc = ERR_IO;
    if (close(fd) != 0) rc = ERR_IO;
    return rc;
}

int api_bootstrap_admin(struct store *st, const char *data_dir)
{
    struct store_tenant t;
    struct store_user admin;
    char generated[25];
    if (store_tenant_get(st, API_MANAGEMENT_TENANT, &t) == 0) return 0;
    memset(&t, 0, sizeof t);
    memset(&admin, 0, sizeof admin);
    snprintf(t.id, sizeof t.id, "%s", API_MANAGEMENT_TENANT);
    snprintf(t.company, sizeof t.company, "certmq");
    snprintf(admin.name, sizeof admin.name, "admin");
    admin.roles =
        STORE_ROLE_TENANT_ADMIN | STORE_ROLE_MANAGEMENT_ADMIN | STORE_ROLE_DEVICE_CONTROL_ADMIN;
    const char *pw = getenv("CERTMQ_ADMIN_PASSWORD");
    bool made = !pw || !*pw;
    if (made) {
        GUARD(password_random(generated, sizeof generated));
        pw = generated;
    }
    GUARD(password_hash(pw, strlen(pw), 0, admin.pw_hash, sizeof admin.pw_hash));
    /* Saved before the tenant exists, so a failed write loses nothing. */
    if (made) GUARD(save_password(data_dir, pw));
    GUARD(store_tenant_create(st, &t, &admin));
    if (made) {
        /* Where, never what: stdout often ends up in a log file. */
        printf("certmq: created tenant %s with admin user %s/admin; its generated password is "
               "in %s/admin-password (mode 0600)\n",
               API_MANAGEMENT_TENANT, API_MANAGEMENT_TENANT, data_dir);
        fflush(stdout);
    } else {
        printf("certmq: created tenant %s with admin user %s/admin (password from "
               "CERTMQ_ADMIN_PASSWORD)\n",
               API_MANAGEMENT_TENANT, API_MANAGEMENT_TENANT);
        fflush(stdout);
    }
    return 0;
}
