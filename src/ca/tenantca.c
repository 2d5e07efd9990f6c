/* Tenant CAs (tenantca.h): key generation and sealing, the CA certificate
 * and its trust, device certificates from CSRs and their records. Store
 * first, then the trust index, then the anchor hook. */
#include "ca/tenantca.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "core/log.h"
#include "core/map.h"
#include "core/metrics.h"
#include "core/seal.h"
#include "identity/trust.h"

struct tenant_ca {
    _Atomic uint64_t issued[3]; /* est-enroll, est-reenroll, mqtt-renew */
    _Atomic uint64_t notices;
    struct store *st;
    struct trust_index *ti;
    const struct seal *seal;
    struct ca_config cfg;
    char public_url[512];
    /* tenant -> struct ca_keys: the CA certificate and its opened key, so
     * an issuance neither reads the store nor decodes them again; dropped
     * on renew and delete (lock: keys_lock). */
    pthread_mutex_t keys_lock;
    struct map keys;
};

struct ca_keys {
    X509 *cert;
    EVP_PKEY *key;
};

static void keys_free(void *v)
{
    struct ca_keys *k = v;
    if (!k) return;
    X509_free(k->cert);
    EVP_PKEY_free(k->key);
    free(k);
}

int tenant_ca_new(struct store *st, struct trust_index *ti, const struct seal *seal,
                  const struct ca_config *cfg, struct tenant_ca **out)
{
    struct tenant_ca *ca = calloc(1, sizeof *ca);
    ENSURE(ca, ERR_NOMEM);
    ca->st = st;
    ca->ti = ti;
    ca->seal = seal;
    ca->cfg = *cfg;
    snprintf(ca->public_url, sizeof ca->public_url, "%s", cfg->public_url ? cfg->public_url : "");
    size_t n = strlen(ca->public_url);
    while (n && ca->public_url[n - 1] == '/') ca->public_url[--n] = 0;
    ca->cfg.public_url = ca->public_url;
    if (ca->cfg.ca_validity_days <= 0) ca->cfg.ca_validity_days = 3650;
    pthread_mutex_init(&ca->keys_lock, NULL);
    map_init(&ca->keys);
    *out = ca;
    return 0;
}

void tenant_ca_count_notice(struct tenant_ca *ca)
{
    atomic_fetch_add(&ca->notices, 1);
}

void tenant_ca_metrics_write(struct tenant_ca *ca, FILE *out)
{
    static const char *const method[3] = {"est-enroll", "est-reenroll", "mqtt-renew"};
    metrics_family(out, "certmq_certificates_issued_total", "counter",
                   "device certificates issued by tenant CAs, by how they were asked for");
    for (int i = 0; i < 3; i++)
        fprintf(out, "certmq_certificates_issued_total{method=\"%s\"} %llu\n", method[i],
                (unsigned long long)atomic_load(&ca->issued[i]));
    metrics_family(out, "certmq_certificate_renewal_notices_total", "counter",
                   "notices sent on s/ds to connected devices whose certificate is within the "
                   "tenant's renewal window");
    fprintf(out, "certmq_certificate_renewal_notices_total %llu\n",
            (unsigned long long)atomic_load(&ca->notices));
}

size_t tenant_ca_max_csr(const struct tenant_ca *ca)
{
    return ca->cfg.max_csr_bytes ? ca->cfg.max_csr_bytes : 16384;
}

void tenant_ca_free(struct tenant_ca *ca)
{
    if (!ca) return;
    map_clear(&ca->keys, keys_free);
    map_free(&ca->keys);
    pthread_mutex_destroy(&ca->keys_lock);
    free(ca);
}

/* ---- keys ---- */

static int key_context(const char *tenant, char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "certmq tenant ca key:%s", tenant);
    return n > 0 && (size_t)n < cap ? 0 : ERR_INVALID;
}

static int key_make(const char *spec, EVP_PKEY **out)
{
    if (!spec || !*spec || !strcasecmp(spec, "ec:P-256"))
        *out = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    else if (!strcasecmp(spec, "rsa:3072"))
        *out = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)3072);
    else if (!strcasecmp(spec, "rsa:4096"))
        *out = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)4096);
    else
        return ERR_INVALID;
    return *out ? 0 : ERR_INTERNAL;
}

static int key_seal(struct tenant_ca *ca, const char *tenant, EVP_PKEY *k, uint8_t **blob,
                    size_t *blob_len)
{
    char ctx[STORE_TENANT_MAX + 64];
    GUARD(key_context(tenant, ctx, sizeof ctx));
    BIO *mem = BIO_new(BIO_s_mem());
    ENSURE(mem, ERR_NOMEM);
    int rc = ERR_INTERNAL;
    char *pem = NULL;
    if (PEM_write_bio_PrivateKey(mem, k, NULL, NULL, 0, NULL, NULL) == 1) {
        long n = BIO_get_mem_data(mem, &pem);
        rc = seal_wrap(ca->seal, ctx, pem, (size_t)n, blob, blob_len);
        OPENSSL_cleanse(pem, (size_t)n);
    }
    BIO_free(mem);
    return rc;
}

static int key_unseal(struct tenant_ca *ca, const char *tenant, const struct store_ca *row,
                      EVP_PKEY **out)
{
    char ctx[STORE_TENANT_MAX + 64], *pem = NULL;
    size_t n = 0;
    GUARD(key_context(tenant, ctx, sizeof ctx));
    int rc = seal_unwrap(ca->seal, ctx, row->sealed, row->sealed_len, &pem, &n);
    if (rc < 0) {
        log_error("tenant %s: its CA key cannot be opened with this key-encryption key", tenant);
        return rc;
    }
    BIO *mem = BIO_new_mem_buf(pem, (int)n);
    *out = mem ? PEM_read_bio_PrivateKey(mem, NULL, NULL, NULL) : NULL;
    BIO_free(mem);
    seal_secret_free(pem, n);
    return *out ? 0 : ERR_INTERNAL;
}

/* ---- certificates ---- */

static int add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value)
{
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
    ENSURE(e, ERR_INTERNAL);
    int ok = X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
    return ok ? 0 : ERR_INTERNAL;
}

/* A random positive 127-bit serial. */
static int set_serial(X509 *x)
{
    unsigned char b[16];
    ENSURE(RAND_bytes(b, sizeof b) == 1, ERR_INTERNAL);
    b[0] = (unsigned char)((b[0] & 0x7f) | 0x40);
    BIGNUM *bn = BN_bin2bn(b, sizeof b, NULL);
    int ok = bn && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;
    BN_free(bn);
    return ok ? 0 : ERR_INTERNAL;
}

/* Version 3, serial, validity [now - 5 min, now + days], subject, key. */
static int cert_base(X509 *x, const X509_NAME *subject, EVP_PKEY *pub, time_t now, long days)
{
    ENSURE(X509_set_version(x, 2) == 1, ERR_INTERNAL);
    GUARD(set_serial(x));
    ENSURE(X509_time_adj_ex(X509_getm_notBefore(x), 0, -300, &now), ERR_INTERNAL);
    ENSURE(X509_time_adj_ex(X509_getm_notAfter(x), (int)days, 0, &now), ERR_INTERNAL);
    ENSURE(X509_set_subject_name(x, subject) == 1, ERR_INTERNAL);
    ENSURE(X509_set_pubkey(x, pub) == 1, ERR_INTERNAL);
    return 0;
}

static const EVP_MD *sign_md(EVP_PKEY *k)
{
    return EVP_PKEY_get_bits(k) > 3072 ? EVP_sha384() : EVP_sha256();
}

/* The self-signed CA certificate of key (subject "CN=<tenant> device CA"). */
static int ca_cert_make(const char *tenant, EVP_PKEY *key, const X509_NAME *subject, time_t now,
                        long days, X509 **out)
{
    int rc = ERR_INTERNAL;
    X509 *x = X509_new();
    X509_NAME *name = subject ? NULL : X509_NAME_new();
    X509V3_CTX ctx;
    ENSURE(x, ERR_NOMEM);
    if (name) {
        char cn[STORE_TENANT_MAX + 16];
        snprintf(cn, sizeof cn, "%s device CA", tenant);
        if (!X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, (const unsigned char *)"certmq",
                                        -1, -1, 0) ||
            !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1,
                                        -1, 0))
            goto out;
        subject = name;
    }
    GUARD_GOTO(rc, cert_base(x, subject, key, now, days), out);
    rc = ERR_INTERNAL;
    if (X509_set_issuer_name(x, subject) != 1) goto out;
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    if (add_ext(x, &ctx, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") < 0 ||
        add_ext(x, &ctx, NID_key_usage, "critical,keyCertSign,cRLSign") < 0 ||
        add_ext(x, &ctx, NID_subject_key_identifier, "hash") < 0 ||
        add_ext(x, &ctx, NID_authority_key_identifier, "keyid:always") < 0)
        goto out;
    if (X509_sign(x, key, sign_md(key)) <= 0) goto out;
    *out = x;
    x = NULL;
    rc = 0;
out:
    X509_NAME_free(name);
    X509_free(x);
    return rc;
}

/* Stores the CA certificate as a trusted certificate and indexes it. */
static int trust_add(struct tenant_ca *ca, const char *tenant, X509 *x, char *fp)
{
    unsigned char *der = NULL;
    int len = i2d_X509(x, &der);
    ENSURE(len > 0, ERR_INTERNAL);
    struct store_cert c = {.enabled = true, .auto_registration = true, .pop_valid = true};
    snprintf(c.tenant, sizeof c.tenant, "%s", tenant);
    snprintf(c.name, sizeof c.name, "%s device CA (certmq)", tenant);
    c.der = der;
    c.der_len = (size_t)len;
    c.created = (int64_t)time(NULL);
    int rc = trust_fingerprint(x, c.fingerprint);
    if (rc == 0) rc = store_cert_insert(ca->st, &c);
    if (rc == 0) {
        rc = trust_anchor_put(ca->ti, tenant, x, true, true, true);
        if (rc < 0) ignore_result(store_cert_delete(ca->st, tenant, c.fingerprint));
    }
    OPENSSL_free(der);
    if (rc < 0) return rc;
    snprintf(fp, STORE_FP_MAX, "%s", c.fingerprint);
    if (ca->cfg.anchor_changed) ca->cfg.anchor_changed(ca->cfg.arg, tenant, fp, true);
    return 0;
}

static int row_cert(const struct store_ca *row, X509 **out)
{
    const unsigned char *p = row->der;
    *out = d2i_X509(NULL, &p, (long)row->der_len);
    return *out ? 0 : ERR_DB;
}

/* A tenant CA's revocations must bite: its CA turns on the tenant's CRL
 * check (option configuration / crl.offline.check.enabled) unless the
 * tenant set that option itself. */
static void crl_check_on(struct tenant_ca *ca, const char *tenant)
{
    char v[16];
    if (store_option_get(ca->st, tenant, "configuration", "crl.offline.check.enabled", v,
                         sizeof v) != ERR_NOT_FOUND)
        return;
    if (store_option_set(ca->st, tenant, "configuration", "crl.offline.check.enabled", "true") == 0)
        ignore_result(
            trust_option_set(ca->ti, tenant, "configuration", "crl.offline.check.enabled", "true"));
}

static void keys_forget(struct tenant_ca *ca, const char *tenant)
{
    pthread_mutex_lock(&ca->keys_lock);
    struct ca_keys *k = map_del(&ca->keys, tenant, strlen(tenant));
    pthread_mutex_unlock(&ca->keys_lock);
    keys_free(k);
}

/* The tenant's CA certificate and key, each with a reference for the
 * caller: from the cache, else from the store (then cached). */
static int keys_get(struct tenant_ca *ca, const char *tenant, X509 **cert, EVP_PKEY **key)
{
    pthread_mutex_lock(&ca->keys_lock);
    struct ca_keys *k = map_get(&ca->keys, tenant, strlen(tenant));
    if (k && X509_up_ref(k->cert) == 1 && EVP_PKEY_up_ref(k->key) == 1) {
        *cert = k->cert;
        *key = k->key;
        pthread_mutex_unlock(&ca->keys_lock);
        return 0;
    }
    pthread_mutex_unlock(&ca->keys_lock);
    struct store_ca row;
    GUARD(store_ca_get(ca->st, tenant, &row));
    k = calloc(1, sizeof *k);
    int rc = k ? row_cert(&row, &k->cert) : ERR_NOMEM;
    if (rc == 0) rc = key_unseal(ca, tenant, &row, &k->key);
    store_ca_clear(&row);
    if (rc == 0 && (X509_up_ref(k->cert) != 1 || EVP_PKEY_up_ref(k->key) != 1)) rc = ERR_INTERNAL;
    if (rc < 0) {
        keys_free(k);
        return rc;
    }
    *cert = k->cert;
    *key = k->key;
    void *old = NULL;
    pthread_mutex_lock(&ca->keys_lock);
    if (map_put(&ca->keys, tenant, strlen(tenant), k, &old) < 0) old = k; /* not cached */
    pthread_mutex_unlock(&ca->keys_lock);
    keys_free(old);
    return 0;
}

bool tenant_ca_is_own(struct tenant_ca *ca, const char *tenant, X509 *x)
{
    if (!ca) return false;
    pthread_mutex_lock(&ca->keys_lock);
    struct ca_keys *k = map_get(&ca->keys, tenant, strlen(tenant));
    bool own = k && EVP_PKEY_eq(X509_get0_pubkey(x), X509_get0_pubkey(k->cert)) == 1;
    pthread_mutex_unlock(&ca->keys_lock);
    return own;
}

bool tenant_ca_exists(struct tenant_ca *ca, const char *tenant)
{
    X509 *cert = NULL;
    EVP_PKEY *key = NULL;
    if (!ca || keys_get(ca, tenant, &cert, &key) < 0) return false;
    X509_free(cert);
    EVP_PKEY_free(key);
    return true;
}

/* Puts the tenant's CA into the cache (after a change, or at start). */
static void keys_load(struct tenant_ca *ca, const char *tenant)
{
    X509 *cert = NULL;
    EVP_PKEY *key = NULL;
    if (keys_get(ca, tenant, &cert, &key) < 0) return;
    X509_free(cert);
    EVP_PKEY_free(key);
}

static int collect_tenant(void *arg, const char *tenant)
{
    struct map *names = arg;
    return map_put(names, tenant, strlen(tenant), NULL, NULL);
}

static void load_one(const char *tenant, void *value, void *arg)
{
    (void)value;
    keys_load(arg, tenant);
}

int tenant_ca_load(struct tenant_ca *ca)
{
    struct map names;
    map_init(&names);
    int rc = store_ca_tenants(ca->st, collect_tenant, &names);
    if (rc == 0) map_each(&names, load_one, ca);
    map_free(&names);
    return rc;
}

int tenant_ca_create(struct tenant_ca *ca, const char *tenant, const char *key, time_t now,
                     char *fp)
{
    EVP_PKEY *k = NULL;
    X509 *x = NULL;
    uint8_t *blob = NULL;
    unsigned char *der = NULL;
    size_t blob_len = 0;
    struct store_ca existing;
    int rc = store_ca_get(ca->st, tenant, &existing);
    if (rc == 0) store_ca_clear(&existing);
    if (rc != ERR_NOT_FOUND) return rc == 0 ? ERR_EXISTS : rc;
    GUARD(key_make(key, &k));
    GUARD_GOTO(rc, ca_cert_make(tenant, k, NULL, now, ca->cfg.ca_validity_days, &x), out);
    GUARD_GOTO(rc, key_seal(ca, tenant, k, &blob, &blob_len), out);
    int len = i2d_X509(x, &der);
    if (len <= 0) {
        rc = ERR_INTERNAL;
        goto out;
    }
    GUARD_GOTO(rc, store_ca_insert(ca->st, tenant, der, (size_t)len, blob, blob_len), out);
    rc = trust_add(ca, tenant, x, fp);
    if (rc < 0) ignore_result(store_ca_delete(ca->st, tenant));
    if (rc == 0) {
        crl_check_on(ca, tenant);
        keys_load(ca, tenant);
        log_info("audit tenant CA created: tenant=%s fp=%s", tenant, fp);
    }
out:
    OPENSSL_free(der);
    free(blob);
    X509_free(x);
    EVP_PKEY_free(k);
    return rc;
}

int tenant_ca_cert(struct tenant_ca *ca, const char *tenant, X509 **out)
{
    struct store_ca row;
    GUARD(store_ca_get(ca->st, tenant, &row));
    int rc = row_cert(&row, out);
    store_ca_clear(&row);
    return rc;
}

long tenant_ca_renewal_days(struct tenant_ca *ca, const char *tenant)
{
    char v[32];
    long days = CA_DEFAULT_RENEWAL;
    if (trust_option_get(ca->ti, tenant, CA_OPT_CATEGORY, CA_OPT_RENEWAL_DAYS, v, sizeof v) == 0) {
        char *end = NULL;
        long d = strtol(v, &end, 10);
        if (end != v && !*end && d >= 0 && d <= 36500) days = d;
    }
    return days;
}

/* Is x's notAfter within days of now? */
static bool due(X509 *x, time_t now, long days)
{
    time_t limit = now + (time_t)days * 86400;
    return X509_cmp_time(X509_get0_notAfter(x), &limit) <= 0;
}

int tenant_ca_renew(struct tenant_ca *ca, const char *tenant, time_t now, bool force, char *fp)
{
    struct store_ca row;
    X509 *old = NULL, *x = NULL;
    EVP_PKEY *k = NULL;
    unsigned char *der = NULL;
    GUARD(store_ca_get(ca->st, tenant, &row));
    int rc = row_cert(&row, &old);
    if (rc == 0 && !force && !due(old, now, tenant_ca_renewal_days(ca, tenant))) rc = ERR_CONFLICT;
    if (rc == 0) rc = key_unseal(ca, tenant, &row, &k);
    if (rc == 0)
        rc = ca_cert_make(tenant, k, X509_get_subject_name(old), now, ca->cfg.ca_validity_days, &x);
    int len = rc == 0 ? i2d_X509(x, &der) : 0;
    if (rc == 0 && len <= 0) rc = ERR_INTERNAL;
    if (rc == 0) rc = store_ca_update_cert(ca->st, tenant, der, (size_t)len);
    keys_forget(ca, tenant);
    keys_load(ca, tenant);
    if (rc == 0) rc = trust_add(ca, tenant, x, fp);
    if (rc == 0) log_info("audit tenant CA renewed: tenant=%s fp=%s", tenant, fp);
    OPENSSL_free(der);
    X509_free(x);
    X509_free(old);
    EVP_PKEY_free(k);
    store_ca_clear(&row);
    return rc;
}

struct key_match {
    EVP_PKEY *key;
    char fps[16][STORE_FP_MAX];
    size_t n;
};

static int collect_same_key(void *arg, const struct store_cert *c)
{
    struct key_match *m = arg;
    const unsigned char *p = c->der;
    X509 *x = d2i_X509(NULL, &p, (long)c->der_len);
    if (x && m->n < 16 && EVP_PKEY_eq(X509_get0_pubkey(x), m->key) == 1)
        snprintf(m->fps[m->n++], STORE_FP_MAX, "%s", c->fingerprint);
    X509_free(x);
    return 0;
}

int tenant_ca_delete(struct tenant_ca *ca, const char *tenant)
{
    X509 *x = NULL;
    GUARD(tenant_ca_cert(ca, tenant, &x));
    struct key_match m = {.key = X509_get0_pubkey(x)};
    int rc = store_cert_list(ca->st, tenant, 0, 0, collect_same_key, &m);
    if (rc == 0) rc = store_ca_delete(ca->st, tenant);
    keys_forget(ca, tenant);
    for (size_t i = 0; rc == 0 && i < m.n; i++) {
        ignore_result(store_cert_delete(ca->st, tenant, m.fps[i]));
        ignore_result(trust_anchor_remove(ca->ti, tenant, m.fps[i]));
        if (ca->cfg.anchor_changed) ca->cfg.anchor_changed(ca->cfg.arg, tenant, m.fps[i], false);
    }
    if (rc == 0) log_info("audit tenant CA deleted: tenant=%s", tenant);
    X509_free(x);
    return rc;
}

/* ---- device certificates ---- */

static long validity_days(struct tenant_ca *ca, const char *tenant)
{
    char v[32];
    long days = CA_DEFAULT_VALIDITY;
    if (trust_option_get(ca->ti, tenant, CA_OPT_CATEGORY, CA_OPT_VALIDITY_DAYS, v, sizeof v) == 0) {
        char *end = NULL;
        long d = strtol(v, &end, 10);
        if (end != v && !*end && d >= 1 && d <= 36500) days = d;
    }
    return days;
}

static int device_exts(struct tenant_ca *ca, const char *tenant, X509 *x, X509 *issuer)
{
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
    bool rsa = EVP_PKEY_get_base_id(X509_get0_pubkey(x)) == EVP_PKEY_RSA;
    GUARD(add_ext(x, &ctx, NID_basic_constraints, "critical,CA:FALSE"));
    GUARD(add_ext(x, &ctx, NID_key_usage,
                  rsa ? "critical,digitalSignature,keyEncipherment" : "critical,digitalSignature"));
    GUARD(add_ext(x, &ctx, NID_ext_key_usage, "clientAuth"));
    GUARD(add_ext(x, &ctx, NID_subject_key_identifier, "hash"));
    GUARD(add_ext(x, &ctx, NID_authority_key_identifier, "keyid:always"));
    if (ca->public_url[0]) {
        char uri[700];
        snprintf(uri, sizeof uri, "URI:%s/certificate-authority/%s/crl", ca->public_url, tenant);
        GUARD(add_ext(x, &ctx, NID_crl_distribution_points, uri));
    }
    return 0;
}

static int device_cert(struct tenant_ca *ca, const struct tenant_ca_issue *in, X509 *issuer,
                       EVP_PKEY *key, X509 **out)
{
    X509 *x = X509_new();
    X509_NAME *name = X509_NAME_new();
    int rc = ERR_INTERNAL;
    if (!x || !name ||
        !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)in->cn, -1,
                                    -1, 0))
        goto out;
    GUARD_GOTO(
        rc,
        cert_base(x, name, X509_REQ_get0_pubkey(in->req), in->now, validity_days(ca, in->tenant)),
        out);
    rc = ERR_INTERNAL;
    if (X509_set_issuer_name(x, X509_get_subject_name(issuer)) != 1) goto out;
    GUARD_GOTO(rc, device_exts(ca, in->tenant, x, issuer), out);
    rc = ERR_INTERNAL;
    if (X509_sign(x, key, sign_md(key)) <= 0) goto out;
    *out = x;
    x = NULL;
    rc = 0;
out:
    X509_NAME_free(name);
    X509_free(x);
    return rc;
}

static int record(struct tenant_ca *ca, const struct tenant_ca_issue *in, X509 *x)
{
    struct store_issuance rec = {.issued = (int64_t)in->now};
    GUARD(trust_serial_of(x, rec.serial, sizeof rec.serial));
    snprintf(rec.cn, sizeof rec.cn, "%s", in->cn);
    snprintf(rec.method, sizeof rec.method, "%s", in->method);
    snprintf(rec.actor, sizeof rec.actor, "%s", in->actor);
    struct tm tm;
    ENSURE(ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) == 1, ERR_INTERNAL);
    rec.not_after = (int64_t)timegm(&tm);
    GUARD(store_issuance_add(ca->st, in->tenant, &rec));
    int k = !strcmp(in->method, "est-enroll") ? 0 : !strcmp(in->method, "est-reenroll") ? 1 : 2;
    atomic_fetch_add(&ca->issued[k], 1);
    log_info("audit certificate issued: tenant=%s cn=%s serial=%s method=%s by=%s", in->tenant,
             in->cn, rec.serial, in->method, in->actor);
    return 0;
}

int tenant_ca_issue(struct tenant_ca *ca, const struct tenant_ca_issue *in, STACK_OF(X509) * *chain)
{
    X509 *issuer = NULL, *x = NULL;
    EVP_PKEY *k = NULL;
    GUARD(keys_get(ca, in->tenant, &issuer, &k));
    int rc = device_cert(ca, in, issuer, k, &x);
    if (rc == 0) rc = record(ca, in, x);
    if (rc == 0) {
        *chain = sk_X509_new_null();
        rc = ERR_NOMEM;
        if (*chain && sk_X509_push(*chain, x)) {
            x = NULL;
            if (sk_X509_push(*chain, issuer)) {
                issuer = NULL;
                rc = 0;
            }
        }
        if (rc < 0) {
            sk_X509_pop_free(*chain, X509_free);
            *chain = NULL;
        }
    }
    X509_free(x);
    X509_free(issuer);
    EVP_PKEY_free(k);
    return rc;
}

/* ---- revocation ---- */

static int revoke_serial(struct tenant_ca *ca, const char *tenant, const char *serial, time_t now)
{
    struct store_crl_entry e = {.revoked = (int64_t)now};
    snprintf(e.serial, sizeof e.serial, "%s", serial);
    GUARD(store_crl_add(ca->st, tenant, &e, 1));
    GUARD(trust_crl_add(ca->ti, tenant, e.serial));
    log_info("audit certificate revoked: tenant=%s serial=%s", tenant, serial);
    return 0;
}

int tenant_ca_revoke(struct tenant_ca *ca, const char *tenant, const char *serial, time_t now)
{
    struct store_issuance rec;
    char norm[STORE_SERIAL_MAX];
    ENSURE(trust_serial_normalize(serial, norm, sizeof norm) == 0, ERR_NOT_FOUND);
    GUARD(store_issuance_get(ca->st, tenant, norm, &rec));
    return revoke_serial(ca, tenant, norm, now);
}

struct cn_match {
    const char *cn;
    int64_t now;
    char serials[64][STORE_SERIAL_MAX];
    size_t n;
};

static int match_cn(void *arg, const struct store_issuance *i)
{
    struct cn_match *m = arg;
    if (m->n < 64 && strcmp(i->cn, m->cn) == 0 && i->not_after > m->now)
        snprintf(m->serials[m->n++], STORE_SERIAL_MAX, "%s", i->serial);
    return 0;
}

int tenant_ca_revoke_cn(struct tenant_ca *ca, const char *tenant, const char *cn, time_t now,
                        size_t *n)
{
    struct cn_match *m = calloc(1, sizeof *m);
    ENSURE(m, ERR_NOMEM);
    m->cn = cn;
    m->now = (int64_t)now;
    int rc = store_issuance_list(ca->st, tenant, 0, 0, match_cn, m);
    for (size_t i = 0; rc == 0 && i < m->n; i++) rc = revoke_serial(ca, tenant, m->serials[i], now);
    *n = rc == 0 ? m->n : 0;
    free(m);
    return rc;
}

/* The revoked entries, collected first: the store's list callback may not
 * call back into the store. */
struct crl_list {
    struct store_crl_entry *e;
    size_t n, cap;
};

static int collect_crl(void *arg, const char *tenant, const struct store_crl_entry *e)
{
    struct crl_list *l = arg;
    (void)tenant;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        struct store_crl_entry *ne = realloc(l->e, cap * sizeof *ne);
        ENSURE(ne, ERR_NOMEM);
        l->e = ne;
        l->cap = cap;
    }
    l->e[l->n++] = *e;
    return 0;
}

static int crl_revoked_entry(X509_CRL *crl, const struct store_crl_entry *e)
{
    BIGNUM *bn = NULL;
    X509_REVOKED *rv = X509_REVOKED_new();
    ASN1_TIME *t = ASN1_TIME_set(NULL, (time_t)e->revoked);
    int rc = ERR_INTERNAL;
    ASN1_INTEGER *sn = NULL;
    if (rv && t && BN_hex2bn(&bn, e->serial) > 0 && (sn = BN_to_ASN1_INTEGER(bn, NULL)) &&
        X509_REVOKED_set_serialNumber(rv, sn) == 1 && X509_REVOKED_set_revocationDate(rv, t) == 1 &&
        X509_CRL_add0_revoked(crl, rv) == 1) {
        rv = NULL;
        rc = 0;
    }
    ASN1_INTEGER_free(sn);
    BN_free(bn);
    ASN1_TIME_free(t);
    X509_REVOKED_free(rv);
    return rc;
}

static int crl_build(struct tenant_ca *ca, const char *tenant, X509 *issuer, EVP_PKEY *k,
                     time_t now, X509_CRL **out)
{
    struct crl_list l = {0};
    struct store_issuance rec;
    X509_CRL *crl = X509_CRL_new();
    ASN1_TIME *last = ASN1_TIME_set(NULL, now),
              *next = ASN1_TIME_adj(NULL, now, 0, CA_CRL_HOURS * 3600);
    ASN1_INTEGER *num = ASN1_INTEGER_new();
    X509V3_CTX ctx;
    int rc = store_crl_list(ca->st, tenant, collect_crl, &l);
    if (rc == 0 && (!crl || !last || !next || !num)) rc = ERR_NOMEM;
    if (rc == 0 &&
        (X509_CRL_set_version(crl, 1) != 1 ||
         X509_CRL_set_issuer_name(crl, X509_get_subject_name(issuer)) != 1 ||
         X509_CRL_set1_lastUpdate(crl, last) != 1 || X509_CRL_set1_nextUpdate(crl, next) != 1))
        rc = ERR_INTERNAL;
    for (size_t i = 0; rc == 0 && i < l.n; i++)
        if (store_issuance_get(ca->st, tenant, l.e[i].serial, &rec) == 0)
            rc = crl_revoked_entry(crl, &l.e[i]);
    if (rc == 0) {
        X509V3_set_ctx(&ctx, issuer, NULL, NULL, crl, 0);
        X509_EXTENSION *aki =
            X509V3_EXT_conf_nid(NULL, &ctx, NID_authority_key_identifier, "keyid:always");
        ASN1_INTEGER_set_int64(num, (int64_t)now);
        if (!aki || X509_CRL_add_ext(crl, aki, -1) != 1 ||
            X509_CRL_add1_ext_i2d(crl, NID_crl_number, num, 0, 0) != 1 || X509_CRL_sort(crl) != 1 ||
            X509_CRL_sign(crl, k, sign_md(k)) <= 0)
            rc = ERR_INTERNAL;
        X509_EXTENSION_free(aki);
    }
    if (rc == 0) {
        *out = crl;
        crl = NULL;
    }
    free(l.e);
    X509_CRL_free(crl);
    ASN1_TIME_free(last);
    ASN1_TIME_free(next);
    ASN1_INTEGER_free(num);
    return rc;
}

int tenant_ca_crl(struct tenant_ca *ca, const char *tenant, time_t now, unsigned char **der,
                  size_t *len)
{
    X509 *issuer = NULL;
    EVP_PKEY *k = NULL;
    X509_CRL *crl = NULL;
    GUARD(keys_get(ca, tenant, &issuer, &k));
    int rc = crl_build(ca, tenant, issuer, k, now, &crl);
    if (rc == 0) {
        *der = NULL;
        int n = i2d_X509_CRL(crl, der);
        rc = n > 0 ? 0 : ERR_INTERNAL;
        *len = n > 0 ? (size_t)n : 0;
    }
    X509_CRL_free(crl);
    EVP_PKEY_free(k);
    X509_free(issuer);
    return rc;
}

void tenant_ca_refresh(struct tenant_ca *ca, const char *tenant)
{
    if (!ca) return;
    keys_forget(ca, tenant);
    keys_load(ca, tenant);
}
