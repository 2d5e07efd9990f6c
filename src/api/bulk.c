/* Device registration: POST /devicecontrol/bulkNewDeviceRequests checks every
 * CSV row and registers the valid ones in ONE store transaction (a crash
 * leaves nothing half-applied), reporting a reason per invalid row. Single
 * registration (POST /devicecontrol/newDeviceRequests) is refused. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "api/handlers.h"
#include "ca/enroll.h"
#include "core/text.h"
#include "identity/csv.h"
#include "identity/password.h"
#include "identity/policy.h"
#include "identity/trust.h"

#define MAX_PASSWORD_ROWS 1000 /* each costs a slow hash */

struct row {
    size_t idx; /* CSV data row */
    const char *id;
    const char *fail; /* static reason, NULL while valid */
    int store_idx;    /* index into the rows handed to the store, -1 if none */
    char *props;      /* JSON object text of the other columns */
    char *pw_hash;
};

static int cmp_id(const void *a, const void *b)
{
    const struct row *x = *(struct row *const *)a, *y = *(struct row *const *)b;
    int c = strcmp(x->id, y->id);
    if (c) return c;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Marks every repetition of an ID after its first row. */
static int mark_duplicates(struct row *rows, size_t n)
{
    struct row **by = malloc((n + 1) * sizeof *by);
    ENSURE(by, ERR_NOMEM);
    for (size_t i = 0; i < n; i++) by[i] = &rows[i];
    qsort(by, n, sizeof *by, cmp_id);
    for (size_t i = 1; i < n; i++)
        if (*by[i]->id && strcmp(by[i]->id, by[i - 1]->id) == 0 && !by[i]->fail)
            by[i]->fail = "Duplicate ID in this file";
    free(by);
    return 0;
}

struct cols {
    int id, auth, cred, type, name;
    int token; /* ENROLLMENT_TOKEN: a one-time EST token, stored as a hash only */
};

/* Every text field of the row must be text an operator can read back:
 * valid UTF-8 without control characters (nothing else is stored). */
static const char *row_text_failure(const struct csv *c, const struct cols *k, size_t idx)
{
    if (!text_printable(csv_cell(c, idx, k->id)))
        return "ID is not valid UTF-8 text or holds a control character";
    for (size_t col = 0; col < c->ncols; col++)
        if (!text_printable(csv_cell(c, idx, (int)col)))
            return "A field is not valid UTF-8 text or holds a control character";
    return NULL;
}

/* Validates one row and prepares its store record. */
static int check_row(const struct csv *c, const struct cols *k, struct row *rw, size_t *pw_rows)
{
    const char *auth = csv_cell(c, rw->idx, k->auth), *cred = csv_cell(c, rw->idx, k->cred);
    if (!rw->fail) rw->fail = row_text_failure(c, k, rw->idx);
    if (rw->fail) return 0;
    if (!*rw->id) {
        rw->fail = "Missing ID";
        return 0;
    }
    if (!ident_cn_acceptable(rw->id)) {
        rw->fail = "ID must be a valid certificate common name (no ':', '/', '+', '#')";
        return 0;
    }
    const char *token = csv_cell(c, rw->idx, k->token);
    if (strcasecmp(auth, "CERTIFICATES") == 0) {
        if (*cred) rw->fail = "CREDENTIALS must be empty for AUTH_TYPE CERTIFICATES";
        if (*token && strlen(token) < 16)
            rw->fail = "ENROLLMENT_TOKEN must have at least 16 characters";
    } else if (*token) {
        rw->fail = "ENROLLMENT_TOKEN is only for AUTH_TYPE CERTIFICATES";
    } else if (strcasecmp(auth, "BASIC") == 0 || *auth == '\0') {
        if (strlen(cred) < 8)
            rw->fail = "CREDENTIALS (at least 8 characters) are required";
        else if (++*pw_rows > MAX_PASSWORD_ROWS)
            rw->fail = "Too many password devices in one upload (at most 1000)";
    } else {
        rw->fail = "AUTH_TYPE must be CERTIFICATES or BASIC";
    }
    if (rw->fail) return 0;
    json_t *props = json_object();
    for (size_t col = 0; col < c->ncols; col++) {
        int ci = (int)col;
        const char *v = csv_cell(c, rw->idx, ci);
        if (ci == k->id || ci == k->auth || ci == k->cred || ci == k->type || ci == k->name ||
            ci == k->token || !*v)
            continue;
        json_object_set_new(props, c->cells[col], json_string(v));
    }
    rw->props = json_dumps(props, JSON_COMPACT);
    json_decref(props);
    ENSURE(rw->props, ERR_NOMEM);
    if (*cred) {
        rw->pw_hash = malloc(PASSWORD_HASH_MAX);
        ENSURE(rw->pw_hash, ERR_NOMEM);
        GUARD(password_hash(cred, strlen(cred), 0, rw->pw_hash, PASSWORD_HASH_MAX));
    }
    return 0;
}

/* Writes the valid rows in one transaction and mirrors them into the index. */
static int register_rows(struct api_req *r, const struct csv *c, const struct cols *k,
                         struct row *rows, size_t n, size_t *created)
{
    struct store_device_new *sd = calloc(n + 1, sizeof *sd);
    int *rc_rows = calloc(n + 1, sizeof *rc_rows);
    size_t m = 0;
    int rc = ERR_NOMEM;
    if (!sd || !rc_rows) goto out;
    for (size_t i = 0; i < n; i++) {
        rows[i].store_idx = -1;
        if (rows[i].fail) continue;
        rows[i].store_idx = (int)m;
        sd[m++] = (struct store_device_new){
            .cn = rows[i].id,
            .type = csv_cell(c, rows[i].idx, k->type),
            .name = csv_cell(c, rows[i].idx, k->name),
            .auth_type = rows[i].pw_hash ? "BASIC" : "CERTIFICATES",
            .props_json = rows[i].props,
            .pw_hash = rows[i].pw_hash,
        };
    }
    GUARD_GOTO(rc, store_device_bulk(r->api->st, r->tenant, sd, m, rc_rows), out);
    *created = 0;
    for (size_t i = 0; i < n; i++) {
        if (rows[i].store_idx < 0) continue;
        if (rc_rows[rows[i].store_idx] == ERR_EXISTS) {
            rows[i].fail = "Device already registered";
            continue;
        }
        (*created)++;
        GUARD_GOTO(rc, trust_device_add(r->api->ti, r->tenant, rows[i].id), out);
        if (rows[i].pw_hash) {
            char user[STORE_NAME_MAX];
            snprintf(user, sizeof user, STORE_DEVICE_USER_PREFIX "%s", rows[i].id);
            GUARD_GOTO(
                rc, trust_user_put(r->api->ti, r->tenant, user, rows[i].pw_hash, STORE_ROLE_DEVICE),
                out);
        }
    }
    rc = 0;
out:
    free(sd);
    free(rc_rows);
    return rc;
}

/* The ENROLLMENT_TOKEN of every row registered now, valid for
 * enroll_token_max_validity; a value already in use fails its row. */
static void store_tokens(struct api_req *r, const struct csv *c, const struct cols *k,
                         struct row *rows, size_t n)
{
    long validity = r->api->cfg.enroll_token_max_validity;
    int64_t until = (int64_t)time(NULL) + (validity > 0 ? validity : 2592000);
    for (size_t i = 0; k->token >= 0 && i < n; i++) {
        const char *token = csv_cell(c, rows[i].idx, k->token);
        if (rows[i].fail || !*token) continue;
        if (enroll_token_put(r->api->st, r->tenant, rows[i].id, token, until) < 0)
            rows[i].fail = "Device registered, but its ENROLLMENT_TOKEN is already in use";
    }
}

static json_t *result_json(const struct csv *c, const struct row *rows, size_t n, size_t created)
{
    json_t *failed = json_array();
    for (size_t i = 0; i < n; i++) {
        if (!rows[i].fail) continue;
        json_array_append_new(failed, json_pack("{s:s, s:o, s:s, s:I}", "bulkNewDeviceStatus",
                                                "FAILED", "deviceId", api_json_text(rows[i].id),
                                                "failureReason", rows[i].fail, "line",
                                                (json_int_t)c->line[rows[i].idx + 1]));
    }
    size_t nfailed = json_array_size(failed);
    return json_pack("{s:I, s:I, s:I, s:I, s:[], s:o}", "numberOfAll", (json_int_t)n,
                     "numberOfCreated", (json_int_t)created, "numberOfFailed", (json_int_t)nfailed,
                     "numberOfSuccessful", (json_int_t)created, "credentialUpdatedList",
                     "failedCreationList", failed);
}

int api_h_bulk_register(struct api_req *r)
{
    size_t created = 0, pw_rows = 0;
    struct csv c;
    struct row *rows = NULL;
    int rc = 0;
    if (!(r->roles & (STORE_ROLE_TENANT_ADMIN | STORE_ROLE_DEVICE_CONTROL_ADMIN)))
        return api_reply_error(r, 403,
                               "Bulk registration needs ROLE_TENANT_ADMIN or "
                               "ROLE_DEVICE_CONTROL_ADMIN");
    ENSURE(r->upload, ERR_INTERNAL); /* the route is streamed (http.c) */
    rc = api_csv_upload_finish(r->upload, &c);
    r->upload = NULL;
    if (rc == ERR_INVALID)
        return api_reply_error(r, 400, "The multipart body has no part named file");
    if (rc == ERR_NOMEM) return rc;
    if (rc < 0)
        return api_reply_error(r, 422,
                               "The file is not valid CSV (header row, separator ',', ';' or "
                               "tab, balanced quotes, no row longer than the header)");
    struct cols k = {csv_col(&c, "ID"),          csv_col(&c, "AUTH_TYPE"),
                     csv_col(&c, "CREDENTIALS"), csv_col(&c, "TYPE"),
                     csv_col(&c, "NAME"),        csv_col(&c, "ENROLLMENT_TOKEN")};
    for (size_t col = 0; col < c.ncols; col++) {
        if (text_printable(c.cells[col])) continue;
        rc = api_reply_error(r, 422,
                             "The CSV header holds a column name that is not valid UTF-8 text "
                             "or holds a control character");
        goto out;
    }
    if (k.id < 0 || k.auth < 0) {
        rc = api_reply_error(r, 422, "The CSV header must have the columns ID and AUTH_TYPE");
        goto out;
    }
    rows = calloc(c.nrows + 1, sizeof *rows);
    if (!rows) {
        rc = ERR_NOMEM;
        goto out;
    }
    for (size_t i = 0; i < c.nrows; i++)
        rows[i] = (struct row){i, csv_cell(&c, i, k.id), NULL, -1, NULL, NULL};
    GUARD_GOTO(rc, mark_duplicates(rows, c.nrows), out);
    for (size_t i = 0; i < c.nrows; i++) GUARD_GOTO(rc, check_row(&c, &k, &rows[i], &pw_rows), out);
    GUARD_GOTO(rc, register_rows(r, &c, &k, rows, c.nrows, &created), out);
    store_tokens(r, &c, &k, rows, c.nrows);
    rc = api_reply_json(r, 201, result_json(&c, rows, c.nrows, created));
out:
    for (size_t i = 0; rows && i < c.nrows; i++) {
        free(rows[i].props);
        free(rows[i].pw_hash);
    }
    free(rows);
    csv_free(&c);
    return rc;
}

int api_h_single_register(struct api_req *r)
{
    json_t *j = api_body_json(r);
    if (!j) return 0;
    json_t *a = json_object_get(j, "authType");
    if (!a) a = json_object_get(j, "AUTH_TYPE");
    bool cert = json_is_string(a) && strcasecmp(json_string_value(a), "CERTIFICATES") == 0;
    json_decref(j);
    return api_reply_error(r, 422,
                           cert ? "Single registration is not supported for devices that "
                                  "authenticate with certificates: use bulk registration "
                                  "(AUTH_TYPE CERTIFICATES) or a trusted certificate with "
                                  "autoRegistrationEnabled"
                                : "Single registration is not supported by certmq: use bulk "
                                  "registration (POST /devicecontrol/bulkNewDeviceRequests)");
}
