/* Store tests: migrations and pragmas, tenants with their admin, users,
 * trusted certificates, devices (single and bulk, all-or-nothing), options
 * and revoked serials; then the trust index loaded from that store, and
 * password hashing with the index's credential check. The store tests run
 * on SQLite and again on PostgreSQL when CERTMQ_TEST_PG names a server
 * (pgtest.h), each test on a fresh database. */
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <pthread.h>

#include <openssl/evp.h>
#include <sqlite3.h>
#include <openssl/x509v3.h>

#include "identity/password.h"
#include "identity/trust.h"
#include "store/store.h"
#include "pgtest.h"

static char dir[256];
static bool use_pg; /* the group running: PostgreSQL, else SQLite */
static char pg_db[128], pg_uri[1024];
/* The newest schema: SQLite's 8 adds the TLS ticket keys; PostgreSQL's 8
 * adds the change-notice triggers, 9 those of retained messages, 10 the
 * ticket keys. */
#define SCHEMA_SQLITE 8
#define SCHEMA_PG     10

static int setup(void **state)
{
    struct store *st = NULL;
    if (use_pg) {
        assert_int_equal(pgtest_create(pg_db, sizeof pg_db, pg_uri, sizeof pg_uri), 0);
        assert_int_equal(store_open_path(pg_uri, &st), 0);
    } else {
        snprintf(dir, sizeof dir, "/tmp/certmq-test-store-XXXXXX");
        assert_non_null(mkdtemp(dir));
        assert_int_equal(store_open(dir, &st), 0);
    }
    *state = st;
    return 0;
}

static int teardown(void **state)
{
    store_close(*state);
    if (use_pg) {
        pgtest_drop(pg_db);
        return 0;
    }
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Opens a second handle on the database of the running test. */
static void open_again(struct store **out)
{
    if (use_pg)
        assert_int_equal(store_open_path(pg_uri, out), 0);
    else
        assert_int_equal(store_open(dir, out), 0);
}

static void make_tenant(struct store *st, const char *id, const char *admin, const char *hash)
{
    struct store_tenant t;
    struct store_user u;
    memset(&t, 0, sizeof t);
    memset(&u, 0, sizeof u);
    snprintf(t.id, sizeof t.id, "%s", id);
    snprintf(u.name, sizeof u.name, "%s", admin);
    snprintf(u.pw_hash, sizeof u.pw_hash, "%s", hash);
    u.roles = STORE_ROLE_TENANT_ADMIN;
    assert_int_equal(store_tenant_create(st, &t, &u), 0);
}

static X509 *self_signed_ca(const char *cn)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    X509_set_version(x, X509_VERSION_3);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 77);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                               (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(x));
    X509_set_pubkey(x, k);
    X509_sign(x, k, EVP_sha256());
    EVP_PKEY_free(k);
    return x;
}

static void test_store_opens_with_wal_and_schema(void **state)
{
    struct store *st = *state;
    assert_true(store_schema_version(st) >= 1);
    char path[300];
    snprintf(path, sizeof path, "%s/certmq.db", dir);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    snprintf(path, sizeof path, "%s/certmq.db-wal", dir);
    assert_int_equal(stat(path, &sb), 0); /* WAL mode leaves a -wal file */
    /* Reopening an already migrated database is a no-op. */
    struct store *again = NULL;
    assert_int_equal(store_open(dir, &again), 0);
    assert_int_equal(store_schema_version(again), store_schema_version(st));
    store_close(again);
}

static int count_users(void *arg, const struct store_user *u)
{
    (void)u;
    (*(int *)arg)++;
    return 0;
}

static void test_store_tenant_and_users(void **state)
{
    struct store *st = *state;
    make_tenant(st, "t1", "admin", "h");
    struct store_tenant t;
    assert_int_equal(store_tenant_get(st, "t1", &t), 0);
    assert_string_equal(t.id, "t1");
    assert_int_equal(store_tenant_get(st, "nope", &t), ERR_NOT_FOUND);
    /* Same id again: refused, and the duplicate admin was not written either. */
    struct store_tenant dup = {.id = "t1"};
    assert_int_equal(store_tenant_create(st, &dup, NULL), ERR_EXISTS);

    struct store_user u;
    assert_int_equal(store_user_get(st, "t1", "admin", &u), 0);
    assert_int_equal(u.roles, STORE_ROLE_TENANT_ADMIN);
    assert_string_equal(u.pw_hash, "h");
    struct store_user other = {.tenant = "t1", .name = "bob", .roles = 0};
    assert_int_equal(store_user_create(st, &other), 0);
    assert_int_equal(store_user_create(st, &other), ERR_EXISTS);
    struct store_user orphan = {.tenant = "ghost", .name = "x"};
    assert_int_equal(store_user_create(st, &orphan), ERR_NOT_FOUND); /* foreign key */
    int n = 0;
    assert_int_equal(store_user_list(st, "t1", false, 0, 0, count_users, &n), 0);
    assert_int_equal(n, 2);
    n = 0;
    assert_int_equal(store_user_list(st, "t1", false, 1, 5, count_users, &n), 0);
    assert_int_equal(n, 1); /* paging: offset 1 */
    n = 0;
    assert_int_equal(store_user_list(st, NULL, true, 0, 0, count_users, &n), 0);
    assert_int_equal(n, 1); /* only admin has a password hash */
    assert_int_equal(store_role_parse("ROLE_DEVICE_CONTROL_ADMIN"),
                     STORE_ROLE_DEVICE_CONTROL_ADMIN);
    assert_int_equal(store_role_parse("ROLE_NOPE"), 0);
}

static void test_store_certs(void **state)
{
    struct store *st = *state;
    make_tenant(st, "t1", "admin", "h");
    X509 *ca = self_signed_ca("ca1");
    unsigned char *der = NULL;
    int len = i2d_X509(ca, &der);
    assert_true(len > 0);
    struct store_cert c;
    memset(&c, 0, sizeof c);
    snprintf(c.tenant, sizeof c.tenant, "t1");
    assert_int_equal(trust_fingerprint(ca, c.fingerprint), 0);
    snprintf(c.name, sizeof c.name, "first");
    c.enabled = true;
    c.der = der;
    c.der_len = (size_t)len;
    assert_int_equal(store_cert_insert(st, &c), 0);
    assert_int_equal(store_cert_insert(st, &c), ERR_EXISTS);

    struct store_cert got;
    assert_int_equal(store_cert_get(st, "t1", c.fingerprint, &got), 0);
    assert_int_equal(got.der_len, (size_t)len);
    assert_memory_equal(got.der, der, (size_t)len);
    assert_true(got.enabled);
    assert_false(got.auto_registration);
    got.auto_registration = true;
    got.enabled = false;
    snprintf(got.name, sizeof got.name, "renamed");
    assert_int_equal(store_cert_update(st, &got), 0);
    store_cert_clear(&got);
    assert_int_equal(store_cert_get(st, "t1", c.fingerprint, &got), 0);
    assert_string_equal(got.name, "renamed");
    assert_false(got.enabled);
    assert_true(got.auto_registration);
    store_cert_clear(&got);
    size_t n = 0;
    assert_int_equal(store_cert_count(st, "t1", &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(store_cert_delete(st, "t1", c.fingerprint), 0);
    assert_int_equal(store_cert_delete(st, "t1", c.fingerprint), ERR_NOT_FOUND);
    assert_int_equal(store_cert_get(st, "t1", c.fingerprint, &got), ERR_NOT_FOUND);
    OPENSSL_free(der);
    X509_free(ca);
}

static void test_store_devices_bulk_and_single(void **state)
{
    struct store *st = *state;
    make_tenant(st, "t1", "admin", "h");
    bool created = false;
    assert_int_equal(store_device_register(st, "t1", "dev0", "CERTIFICATES", &created), 0);
    assert_true(created);
    assert_int_equal(store_device_register(st, "t1", "dev0", "CERTIFICATES", &created), 0);
    assert_false(created);
    struct store_user u;
    assert_int_equal(store_user_get(st, "t1", "device_dev0", &u), 0);
    assert_true(u.device);
    assert_int_equal(u.roles, STORE_ROLE_DEVICE);

    struct store_device_new rows[3] = {
        {.cn = "dev1", .auth_type = "CERTIFICATES"},
        {.cn = "dev0", .auth_type = "CERTIFICATES"},
        {.cn = "dev2", .auth_type = "CERTIFICATES", .props_json = "{\"com\":\"x\"}"},
    };
    int rc[3] = {-1, -1, -1};
    assert_int_equal(store_device_bulk(st, "t1", rows, 3, rc), 0);
    assert_int_equal(rc[0], 0);
    assert_int_equal(rc[1], ERR_EXISTS);
    assert_int_equal(rc[2], 0);
    size_t n = 0;
    assert_int_equal(store_device_count(st, "t1", &n), 0);
    assert_int_equal(n, 3);
    /* A tenant that does not exist: nothing is written. */
    assert_int_equal(store_device_bulk(st, "ghost", rows, 3, rc), ERR_NOT_FOUND);
}

static void test_store_user_delete_takes_the_device_with_it(void **state)
{
    struct store *st = *state;
    make_tenant(st, "t1", "admin", "h");
    make_tenant(st, "t2", "admin", "h");
    bool created = false;
    assert_int_equal(store_device_register(st, "t1", "dev0", "CERTIFICATES", &created), 0);
    assert_int_equal(store_device_register(st, "t2", "dev0", "CERTIFICATES", &created), 0);
    struct store_user bob = {.tenant = "t1", .name = "bob", .pw_hash = "h"};
    assert_int_equal(store_user_create(st, &bob), 0);
    char cn[STORE_NAME_MAX] = "junk";
    /* A password user: no device. */
    assert_int_equal(store_user_delete(st, "t1", "bob", cn, sizeof cn), 0);
    assert_string_equal(cn, "");
    struct store_user u;
    assert_int_equal(store_user_get(st, "t1", "bob", &u), ERR_NOT_FOUND);
    assert_int_equal(store_user_delete(st, "t1", "bob", cn, sizeof cn), ERR_NOT_FOUND);
    /* A device user: its device row goes too, in its own tenant only. */
    assert_int_equal(store_user_delete(st, "t1", "device_dev0", cn, sizeof cn), 0);
    assert_string_equal(cn, "dev0");
    size_t n = 99;
    assert_int_equal(store_device_count(st, "t1", &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(store_device_count(st, "t2", &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(store_user_get(st, "t2", "device_dev0", &u), 0);
    assert_int_equal(store_user_delete(st, "t3", "device_dev0", cn, sizeof cn), ERR_NOT_FOUND);
    /* Registering it again works. */
    assert_int_equal(store_device_register(st, "t1", "dev0", "CERTIFICATES", &created), 0);
    assert_true(created);
}

static void test_trust_device_remove(void **state)
{
    (void)state;
    struct trust_index *ti = NULL;
    assert_int_equal(trust_new(&ti), 0);
    assert_int_equal(trust_device_add(ti, "t1", "dev0"), 0);
    assert_int_equal(trust_device_add(ti, "t2", "dev0"), 0);
    assert_int_equal(trust_device_remove(ti, "t1", "dev0"), 0);
    assert_false(trust_device_registered(ti, "t1", "dev0"));
    assert_true(trust_device_registered(ti, "t2", "dev0"));
    assert_int_equal(trust_device_remove(ti, "t1", "dev0"), ERR_NOT_FOUND);
    trust_free(ti);
}

static void test_store_bulk_is_all_or_nothing(void **state)
{
    struct store *st = *state;
    make_tenant(st, "t1", "admin", "h");
    char big[300];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    /* The last row's device user name does not fit: the whole upload rolls back. */
    struct store_device_new rows[2] = {{.cn = "ok1"}, {.cn = big}};
    int rc[2];
    assert_true(store_device_bulk(st, "t1", rows, 2, rc) < 0);
    size_t n = 99;
    assert_int_equal(store_device_count(st, "t1", &n), 0);
    assert_int_equal(n, 0);
}

static void test_store_options_and_crl(void **state)
{
    struct store *st = *state;
    make_tenant(st, "t1", "admin", "h");
    char v[64];
    assert_int_equal(store_option_get(st, "t1", "c", "k", v, sizeof v), ERR_NOT_FOUND);
    assert_int_equal(store_option_set(st, "t1", "c", "k", "1"), 0);
    assert_int_equal(store_option_set(st, "t1", "c", "k", "2"), 0);
    assert_int_equal(store_option_get(st, "t1", "c", "k", v, sizeof v), 0);
    assert_string_equal(v, "2");
    assert_int_equal(store_option_delete(st, "t1", "c", "k"), 0);
    assert_int_equal(store_option_delete(st, "t1", "c", "k"), ERR_NOT_FOUND);
    struct store_crl_entry e[2] = {{.serial = "1A", .revoked = 5}, {.serial = "FF", .revoked = 6}};
    assert_int_equal(store_crl_add(st, "t1", e, 2), 0);
    assert_int_equal(store_crl_add(st, "t1", e, 1), 0); /* re-adding is fine */
}

static void test_trust_index_loads_from_store(void **state)
{
    struct store *st = *state;
    char hash[PASSWORD_HASH_MAX];
    assert_int_equal(password_hash("s3cret", 6, 1000, hash, sizeof hash), 0);
    make_tenant(st, "t1", "admin", hash);
    X509 *ca = self_signed_ca("ca-load");
    unsigned char *der = NULL;
    int len = i2d_X509(ca, &der);
    struct store_cert c = {.tenant = "t1", .enabled = true, .auto_registration = true};
    assert_int_equal(trust_fingerprint(ca, c.fingerprint), 0);
    c.der = der;
    c.der_len = (size_t)len;
    assert_int_equal(store_cert_insert(st, &c), 0);
    bool created;
    assert_int_equal(store_device_register(st, "t1", "devA", "CERTIFICATES", &created), 0);
    assert_int_equal(
        store_option_set(st, "t1", "configuration", "crl.offline.check.enabled", "TRUE"), 0);
    struct store_crl_entry e = {.serial = "4D", .revoked = 1};
    assert_int_equal(store_crl_add(st, "t1", &e, 1), 0);

    struct trust_index *ti = NULL;
    assert_int_equal(trust_new(&ti), 0);
    assert_int_equal(trust_load(ti, st), 0);
    struct trust_anchor a;
    assert_int_equal(trust_anchor_get(ti, "t1", c.fingerprint, &a), 0);
    assert_true(a.enabled);
    assert_true(a.auto_registration);
    assert_true(trust_device_registered(ti, "t1", "devA"));
    assert_false(trust_device_registered(ti, "t2", "devA"));
    trust_read_lock(ti);
    assert_true(trust_option_true_locked(ti, "t1", "configuration", "crl.offline.check.enabled"));
    assert_true(trust_crl_revoked_locked(ti, "t1", "4D"));
    assert_false(trust_crl_revoked_locked(ti, "t1", "4E"));
    const struct trust_anchor *found[4];
    assert_int_equal(trust_by_fp_locked(ti, c.fingerprint, found, 4), 1);
    assert_int_equal(trust_by_subject_locked(ti, X509_get_subject_name(ca), found, 4), 1);
    trust_read_unlock(ti);

    unsigned roles = 0;
    assert_int_equal(trust_check_password(ti, "t1", "admin", "s3cret", 6, &roles), 0);
    assert_int_equal(roles, STORE_ROLE_TENANT_ADMIN);
    /* Cached now; a wrong password must still fail. */
    assert_int_equal(trust_check_password(ti, "t1", "admin", "s3cret", 6, &roles), 0);
    assert_int_equal(trust_check_password(ti, "t1", "admin", "s3cre", 5, &roles),
                     ERR_BAD_CREDENTIALS);
    assert_int_equal(trust_check_password(ti, "t2", "admin", "s3cret", 6, &roles),
                     ERR_BAD_CREDENTIALS);
    /* A password change invalidates the cache. */
    char other[PASSWORD_HASH_MAX];
    assert_int_equal(password_hash("new", 3, 1000, other, sizeof other), 0);
    assert_int_equal(trust_user_put(ti, "t1", "admin", other, STORE_ROLE_TENANT_ADMIN), 0);
    assert_int_equal(trust_check_password(ti, "t1", "admin", "s3cret", 6, &roles),
                     ERR_BAD_CREDENTIALS);

    assert_int_equal(trust_anchor_remove(ti, "t1", c.fingerprint), 0);
    assert_int_equal(trust_anchor_remove(ti, "t1", c.fingerprint), ERR_NOT_FOUND);
    trust_free(ti);
    OPENSSL_free(der);
    X509_free(ca);
}

static void test_trust_register_device_writes_store_and_index(void **state)
{
    struct store *st = *state;
    make_tenant(st, "t1", "admin", "h");
    struct trust_index *ti = NULL;
    assert_int_equal(trust_new(&ti), 0);
    bool created = false;
    assert_false(trust_device_registered(ti, "t1", "auto1"));
    assert_int_equal(trust_register_device(ti, st, "t1", "auto1", &created), 0);
    assert_true(created);
    assert_true(trust_device_registered(ti, "t1", "auto1"));
    struct store_user u;
    assert_int_equal(store_user_get(st, "t1", "device_auto1", &u), 0);
    assert_true(u.device);
    /* A second connect of the same device registers nothing new. */
    assert_int_equal(trust_register_device(ti, st, "t1", "auto1", &created), 0);
    assert_false(created);
    assert_int_equal(trust_device_count(ti), 1);
    /* Unknown tenant: refused, nothing in the index. */
    assert_int_equal(trust_register_device(ti, st, "ghost", "auto1", &created), ERR_NOT_FOUND);
    assert_false(trust_device_registered(ti, "ghost", "auto1"));
    trust_free(ti);
}

static void test_store_token_keys_first_writer_wins(void **state)
{
    struct store *st = *state;
    make_tenant(st, "t1", "admin", "h");
    void *priv = NULL;
    size_t len = 0;
    char *pub = NULL;
    assert_true(store_schema_version(st) >= 4);
    assert_int_equal(store_token_key_get(st, "t1", &priv, &len, &pub), ERR_NOT_FOUND);
    assert_int_equal(store_token_key_put(st, "t1", "SEALED1", 7, "PUB1"), 0);
    assert_int_equal(store_token_key_put(st, "t1", "SEALED2", 7, "PUB2"), 0);
    assert_int_equal(store_token_key_get(st, "t1", &priv, &len, &pub), 0);
    assert_int_equal(len, 7);
    assert_memory_equal(priv, "SEALED1", 7);
    assert_string_equal(pub, "PUB1");
    free(priv);
    free(pub);
    assert_int_equal(store_token_key_put(st, "ghost", "P", 1, "Q"), ERR_NOT_FOUND);
}

/* TLS ticket keys: the first key put for a slot stays (nodes that make one
 * together agree), and a put prunes the keys older than the previous slot. */
static void test_store_ticket_keys_first_writer_wins_and_prunes(void **state)
{
    struct store *st = *state;
    void *blob = NULL;
    size_t len = 0;
    assert_int_equal(store_ticket_key_get(st, 60, 100, &blob, &len), ERR_NOT_FOUND);
    assert_int_equal(store_ticket_key_put(st, 60, 100, "KEY-A", 5), 0);
    assert_int_equal(store_ticket_key_put(st, 60, 100, "KEY-B", 5), 0);
    assert_int_equal(store_ticket_key_get(st, 60, 100, &blob, &len), 0);
    assert_int_equal(len, 5);
    assert_memory_equal(blob, "KEY-A", 5);
    free(blob);
    assert_int_equal(store_ticket_key_put(st, 30, 100, "OTHER", 5), 0); /* another period */
    assert_int_equal(store_ticket_key_put(st, 60, 101, "KEY-C", 5), 0);
    assert_int_equal(store_ticket_key_get(st, 60, 100, &blob, &len), 0); /* the previous slot */
    free(blob);
    assert_int_equal(store_ticket_key_put(st, 60, 102, "KEY-D", 5), 0);
    assert_int_equal(store_ticket_key_get(st, 60, 100, &blob, &len), ERR_NOT_FOUND);
    assert_int_equal(store_ticket_key_get(st, 60, 101, &blob, &len), 0);
    assert_memory_equal(blob, "KEY-C", 5);
    free(blob);
    assert_int_equal(store_ticket_key_get(st, 30, 100, &blob, &len), 0);
    free(blob);
}

/* A stand-in for sealing: the plaintext reversed, then 41 bytes (a real
 * seal's overhead, so the row grows); counts sealed rows. */
static int wrap_plain(void *arg, const char *tenant, const char *priv_pem, const void *sealed,
                      size_t sealed_len, void **out, size_t *out_len)
{
    (void)tenant;
    (void)sealed;
    (void)sealed_len;
    if (!priv_pem) return 0;
    (*(int *)arg)++;
    size_t n = strlen(priv_pem);
    char *b = malloc(n + 41);
    for (size_t i = 0; i < n; i++) b[i] = priv_pem[n - 1 - i];
    memset(b + n, '#', 41);
    *out = b;
    *out_len = n + 41;
    return 0;
}

static bool file_contains(const char *path, const char *needle)
{
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    return memmem(buf, n, needle, strlen(needle)) != NULL;
}

/* A database of schema 3 holds a plaintext key: after the migrations (4
 * seals token keys) and a rewrap, the key is only in its wrapped form and the plaintext is
 * nowhere in the database file or its WAL. */
static void test_store_token_keys_plaintext_rewrapped_and_gone(void **state)
{
    struct store *st = *state;
    make_tenant(st, "t1", "admin", "h");
    store_close(st);
    char path[300], wal[310];
    snprintf(path, sizeof path, "%s/certmq.db", dir);
    snprintf(wal, sizeof wal, "%s-wal", path);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    /* a PEM-sized secret (a P-256 PKCS#8 PEM is ~240 bytes) */
    assert_int_equal(sqlite3_exec(db,
                                  "DROP TABLE authz_rules; DROP TABLE authz_roles;"
                                  "DROP TABLE device_seen;"
                                  "ALTER TABLE token_keys DROP COLUMN priv_sealed;"
                                  "INSERT INTO token_keys VALUES('t1', 'PLAIN-SECRET-KEY' ||"
                                  " printf('%.224c', 'k'), 'PUB', 1);"
                                  "PRAGMA user_version = 3;",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
    assert_true(file_contains(path, "PLAIN-SECRET-KEY") || file_contains(wal, "PLAIN-SECRET-KEY"));
    assert_int_equal(store_open(dir, &st), 0);
    *state = st;
    assert_int_equal(store_schema_version(st), SCHEMA_SQLITE);
    int calls = 0;
    size_t changed = 0;
    assert_int_equal(store_token_key_rewrap(st, wrap_plain, &calls, &changed), 0);
    assert_int_equal(calls, 1);
    assert_int_equal(changed, 1);
    void *blob = NULL;
    size_t len = 0;
    char *pub = NULL;
    assert_int_equal(store_token_key_get(st, "t1", &blob, &len, &pub), 0);
    assert_int_equal(len, 240 + 41);
    assert_memory_equal((char *)blob + 224, "YEK-TERCES-NIALP", 16);
    free(blob);
    free(pub);
    assert_false(file_contains(path, "PLAIN-SECRET-KEY"));
    assert_false(file_contains(wal, "PLAIN-SECRET-KEY"));
    /* a second start finds nothing left to seal */
    calls = 0;
    assert_int_equal(store_token_key_rewrap(st, wrap_plain, &calls, &changed), 0);
    assert_int_equal(calls, 0);
    assert_int_equal(changed, 0);
}

static void test_password_hash_and_verify(void **state)
{
    (void)state;
    char h1[PASSWORD_HASH_MAX], h2[PASSWORD_HASH_MAX];
    assert_int_equal(password_hash("pw", 2, 1000, h1, sizeof h1), 0);
    assert_int_equal(password_hash("pw", 2, 1000, h2, sizeof h2), 0);
    assert_string_not_equal(h1, h2); /* salted */
    assert_true(password_verify(h1, "pw", 2));
    assert_false(password_verify(h1, "pW", 2));
    assert_false(password_verify("", "", 0));
    assert_false(password_verify("pbkdf2-sha256$0$00$00", "pw", 2));
    assert_int_equal(strncmp(h1, "pbkdf2-sha256$1000$", 19), 0);
    char r1[17], r2[17];
    assert_int_equal(password_random(r1, sizeof r1), 0);
    assert_int_equal(password_random(r2, sizeof r2), 0);
    assert_int_equal(strlen(r1), 16);
    assert_string_not_equal(r1, r2);
}

static void test_serial_normalize(void **state)
{
    (void)state;
    char out[STORE_SERIAL_MAX];
    assert_int_equal(trust_serial_normalize("0x00ab:CD", out, sizeof out), 0);
    assert_string_equal(out, "ABCD");
    assert_int_equal(trust_serial_normalize("000", out, sizeof out), 0);
    assert_string_equal(out, "0");
    assert_int_equal(trust_serial_normalize("xyz", out, sizeof out), ERR_INVALID);
    assert_int_equal(trust_serial_normalize("", out, sizeof out), ERR_INVALID);
}

static int count_tenant(void *arg, const struct store_tenant *t)
{
    char *seen = arg;
    strcat(seen, t->id);
    strcat(seen, ",");
    return 0;
}

static int count_device(void *arg, const char *tenant, const char *cn)
{
    char *seen = arg;
    strcat(seen, tenant);
    strcat(seen, "/");
    strcat(seen, cn);
    strcat(seen, ",");
    return 0;
}

static int count_crl(void *arg, const char *tenant, const struct store_crl_entry *e)
{
    char *seen = arg;
    (void)tenant;
    strcat(seen, e->serial);
    strcat(seen, ",");
    return 0;
}

static int count_option(void *arg, const char *tenant, const char *category, const char *key,
                        const char *value)
{
    char *seen = arg;
    (void)tenant;
    (void)category;
    strcat(seen, key);
    strcat(seen, "=");
    strcat(seen, value);
    strcat(seen, ",");
    return 0;
}

/* Lists come back in insertion order (options by key), with paging. */
static void test_store_lists_in_order_with_paging(void **state)
{
    struct store *st = *state;
    make_tenant(st, "zz", "admin", "h");
    make_tenant(st, "aa", "admin", "h");
    make_tenant(st, "mm", "admin", "h");
    char seen[512] = "";
    assert_int_equal(store_tenant_list(st, 0, 0, count_tenant, seen), 0);
    assert_string_equal(seen, "zz,aa,mm,");
    seen[0] = 0;
    assert_int_equal(store_tenant_list(st, 1, 1, count_tenant, seen), 0);
    assert_string_equal(seen, "aa,");
    size_t n = 0;
    assert_int_equal(store_tenant_count(st, &n), 0);
    assert_int_equal(n, 3);
    bool created;
    assert_int_equal(store_device_register(st, "mm", "d2", "CERTIFICATES", &created), 0);
    assert_int_equal(store_device_register(st, "aa", "d1", "CERTIFICATES", &created), 0);
    seen[0] = 0;
    assert_int_equal(store_device_list(st, NULL, count_device, seen), 0);
    assert_string_equal(seen, "mm/d2,aa/d1,");
    seen[0] = 0;
    assert_int_equal(store_device_list(st, "aa", count_device, seen), 0);
    assert_string_equal(seen, "aa/d1,");
    struct store_crl_entry e[2] = {{.serial = "FF", .revoked = 6}, {.serial = "1A", .revoked = 5}};
    assert_int_equal(store_crl_add(st, "aa", e, 2), 0);
    seen[0] = 0;
    assert_int_equal(store_crl_list(st, "aa", count_crl, seen), 0);
    assert_string_equal(seen, "FF,1A,");
    assert_int_equal(store_crl_add(st, "ghost", e, 2), ERR_NOT_FOUND);
    assert_int_equal(store_option_set(st, "aa", "c", "b", "2"), 0);
    assert_int_equal(store_option_set(st, "aa", "c", "a", "1"), 0);
    seen[0] = 0;
    assert_int_equal(store_option_list(st, "aa", count_option, seen), 0);
    assert_string_equal(seen, "a=1,b=2,");
    assert_int_equal(store_option_set(st, "ghost", "c", "a", "1"), ERR_NOT_FOUND);
}

struct kept {
    int n;
    char text[512];
};

static int keep_retained(void *arg, const char *tenant, const void *topic, size_t tlen,
                         const void *payload, size_t plen, int qos)
{
    struct kept *k = arg;
    k->n++;
    assert_int_equal(tlen, 3);
    assert_memory_equal(topic, "a\0b", 3); /* bytes, NUL included */
    assert_int_equal(plen, 2);
    assert_memory_equal(payload, "\xff\x00", 2);
    snprintf(k->text + strlen(k->text), sizeof k->text - strlen(k->text), "%s:%d,", tenant, qos);
    return 0;
}

static int keep_authz(void *arg, const char *tenant, const char *key, const char *value)
{
    struct kept *k = arg;
    k->n++;
    snprintf(k->text + strlen(k->text), sizeof k->text - strlen(k->text), "%s|%s|%s,", tenant, key,
             value);
    return 0;
}

static int keep_seen(void *arg, const struct store_seen *r)
{
    struct kept *k = arg;
    k->n++;
    snprintf(k->text + strlen(k->text), sizeof k->text - strlen(k->text), "%s/%s=%lld/%lld,",
             r->tenant, r->cn, (long long)r->last_seen, (long long)r->not_after);
    return 0;
}

static void test_store_retained_authz_and_seen(void **state)
{
    struct store *st = *state;
    make_tenant(st, "t1", "admin", "h");
    struct kept k = {0};
    assert_int_equal(store_retained_put(st, "t1", "a\0b", 3, "\x01", 1, 0), 0);
    assert_int_equal(store_retained_put(st, "t1", "a\0b", 3, "\xff\x00", 2, 1), 0);
    assert_int_equal(store_retained_put(st, "", "a\0b", 3, "\xff\x00", 2, 2), 0);
    assert_int_equal(store_retained_list(st, keep_retained, &k), 0);
    assert_int_equal(k.n, 2);
    assert_string_equal(k.text, "t1:1,:2,");
    assert_int_equal(store_retained_put(st, "t1", "a\0b", 3, NULL, 0, 0), 0); /* deletes */
    memset(&k, 0, sizeof k);
    assert_int_equal(store_retained_list(st, keep_retained, &k), 0);
    assert_int_equal(k.n, 1);

    memset(&k, 0, sizeof k);
    assert_int_equal(store_authz_rules_put(st, "t1", "[1]"), 0);
    assert_int_equal(store_authz_rules_put(st, "t1", "[2]"), 0);
    assert_int_equal(store_authz_rules_list(st, keep_authz, &k), 0);
    assert_string_equal(k.text, "t1||[2],");
    memset(&k, 0, sizeof k);
    assert_int_equal(store_authz_roles_put(st, "t1", "bob", "r1,r2"), 0);
    assert_int_equal(store_authz_roles_put(st, "t1", "eve", "r1"), 0);
    assert_int_equal(store_authz_roles_put(st, "t1", "eve", ""), 0); /* removes */
    assert_int_equal(store_authz_roles_list(st, keep_authz, &k), 0);
    assert_string_equal(k.text, "t1|bob|r1,r2,");
    assert_int_equal(store_authz_rules_put(st, "ghost", "[]"), ERR_NOT_FOUND);

    memset(&k, 0, sizeof k);
    struct store_seen v[3] = {{"t1", "d1", 10, 20}, {"ghost", "d1", 1, 2}, {"t1", "d1", 11, 21}};
    assert_int_equal(store_device_seen_put(st, v, 3), 0);
    assert_int_equal(store_device_seen_list(st, keep_seen, &k), 0);
    assert_string_equal(k.text, "t1/d1=11/21,");
}

/* Copies the one row store_retained_get gives. */
struct got_retained {
    int n, qos;
    char tenant[64];
    char topic[9000];
    size_t tlen;
    char payload[16];
    size_t plen;
};

static int get_retained(void *arg, const char *tenant, const void *topic, size_t tlen,
                        const void *payload, size_t plen, int qos)
{
    struct got_retained *g = arg;
    g->n++;
    snprintf(g->tenant, sizeof g->tenant, "%s", tenant);
    assert_true(tlen <= sizeof g->topic && plen <= sizeof g->payload);
    memcpy(g->topic, topic, tlen);
    memcpy(g->payload, payload, plen);
    g->tlen = tlen;
    g->plen = plen;
    g->qos = qos;
    return 0;
}

/* One retained row read back by (tenant, digest of its topic): the row as
 * stored now, the other tenant's row of the same topic never, a topic too
 * long for a change notice too; a bad digest is refused. */
static void test_store_retained_get_by_digest(void **state)
{
    struct store *st = *state;
    char d[STORE_DIGEST_HEX + 1];
    store_retained_digest("abc", 3, d);
    assert_string_equal(d, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    make_tenant(st, "t1", "admin", "h");
    make_tenant(st, "t2", "admin", "h");
    store_retained_digest("a\0b", 3, d);
    struct got_retained g = {0};
    assert_int_equal(store_retained_get(st, "t1", d, get_retained, &g), ERR_NOT_FOUND);
    assert_int_equal(store_retained_put(st, "t1", "a\0b", 3, "one", 3, 1), 0);
    assert_int_equal(store_retained_put(st, "t1", "a\0c", 3, "other", 5, 0), 0);
    assert_int_equal(store_retained_put(st, "t2", "a\0b", 3, "two", 3, 2), 0);
    assert_int_equal(store_retained_put(st, "t1", "a\0b", 3, "new", 3, 2), 0);
    assert_int_equal(store_retained_get(st, "t1", d, get_retained, &g), 0);
    assert_int_equal(g.n, 1);
    assert_string_equal(g.tenant, "t1");
    assert_int_equal(g.tlen, 3);
    assert_memory_equal(g.topic, "a\0b", 3);
    assert_int_equal(g.plen, 3);
    assert_memory_equal(g.payload, "new", 3);
    assert_int_equal(g.qos, 2);
    assert_int_equal(store_retained_put(st, "t1", "a\0b", 3, NULL, 0, 0), 0);
    assert_int_equal(store_retained_get(st, "t1", d, get_retained, &g), ERR_NOT_FOUND);
    memset(&g, 0, sizeof g);
    assert_int_equal(store_retained_get(st, "t2", d, get_retained, &g), 0);
    assert_memory_equal(g.payload, "two", 3);

    char topic[9000];
    memset(topic, 'x', sizeof topic);
    store_retained_digest(topic, sizeof topic, d);
    assert_int_equal(store_retained_put(st, "", topic, sizeof topic, "long", 4, 0), 0);
    memset(&g, 0, sizeof g);
    assert_int_equal(store_retained_get(st, "", d, get_retained, &g), 0);
    assert_int_equal(g.tlen, sizeof topic);
    assert_memory_equal(g.topic, topic, sizeof topic);

    assert_int_equal(store_retained_get(st, "", "abc", get_retained, &g), ERR_INVALID);
    d[0] = 'A';
    assert_int_equal(store_retained_get(st, "", d, get_retained, &g), ERR_INVALID);
}

static int keep_issuance(void *arg, const struct store_issuance *i)
{
    struct kept *k = arg;
    k->n++;
    snprintf(k->text + strlen(k->text), sizeof k->text - strlen(k->text), "%s,", i->serial);
    return 0;
}

static int keep_ca_tenant(void *arg, const char *tenant)
{
    struct kept *k = arg;
    k->n++;
    snprintf(k->text + strlen(k->text), sizeof k->text - strlen(k->text), "%s,", tenant);
    return 0;
}

static void test_store_ca_tokens_and_issuances(void **state)
{
    struct store *st = *state;
    make_tenant(st, "t1", "admin", "h");
    assert_int_equal(store_ca_insert(st, "t1", "D\0R", 3, "S", 1), 0);
    assert_int_equal(store_ca_insert(st, "t1", "X", 1, "Y", 1), ERR_EXISTS);
    struct store_ca ca;
    assert_int_equal(store_ca_get(st, "t2", &ca), ERR_NOT_FOUND);
    assert_int_equal(store_ca_update_cert(st, "t1", "N\0W", 3), 0);
    assert_int_equal(store_ca_get(st, "t1", &ca), 0);
    assert_int_equal(ca.der_len, 3);
    assert_memory_equal(ca.der, "N\0W", 3);
    assert_int_equal(ca.sealed_len, 1);
    store_ca_clear(&ca);
    struct kept k = {0};
    assert_int_equal(store_ca_tenants(st, keep_ca_tenant, &k), 0);
    assert_string_equal(k.text, "t1,");
    assert_int_equal(store_ca_delete(st, "t1"), 0);
    assert_int_equal(store_ca_delete(st, "t1"), ERR_NOT_FOUND);

    struct store_enroll_token t = {.tenant = "t1", .device = "d1", .valid_until = 99};
    assert_int_equal(store_enroll_token_put(st, "h1", &t), 0);
    struct store_enroll_token got;
    assert_int_equal(store_enroll_token_get(st, "h1", &got), 0);
    assert_string_equal(got.device, "d1");
    assert_false(got.used);
    assert_int_equal(store_enroll_token_use(st, "h1"), 0);
    assert_int_equal(store_enroll_token_use(st, "h1"), ERR_CONFLICT);
    assert_int_equal(store_enroll_token_get(st, "h1", &got), 0);
    assert_true(got.used);
    assert_int_equal(store_enroll_token_get(st, "h2", &got), ERR_NOT_FOUND);

    struct store_issuance i1 = {.serial = "A1", .cn = "d1", .issued = 5, .method = "est-enroll"};
    struct store_issuance i2 = {.serial = "B2", .cn = "d1", .issued = 7, .method = "mqtt-renew"};
    assert_int_equal(store_issuance_add(st, "t1", &i1), 0);
    assert_int_equal(store_issuance_add(st, "t1", &i2), 0);
    assert_int_equal(store_issuance_add(st, "t1", &i2), ERR_EXISTS);
    memset(&k, 0, sizeof k);
    assert_int_equal(store_issuance_list(st, "t1", 0, 0, keep_issuance, &k), 0);
    assert_string_equal(k.text, "B2,A1,"); /* newest first */
    memset(&k, 0, sizeof k);
    assert_int_equal(store_issuance_list(st, "t1", 1, 1, keep_issuance, &k), 0);
    assert_string_equal(k.text, "A1,");
    size_t n = 0;
    assert_int_equal(store_issuance_count(st, "t1", &n), 0);
    assert_int_equal(n, 2);
    struct store_issuance out;
    assert_int_equal(store_issuance_latest(st, "t1", "d1", &out), 0);
    assert_string_equal(out.serial, "B2");
    assert_int_equal(store_issuance_get(st, "t1", "A1", &out), 0);
    assert_string_equal(out.method, "est-enroll");
    assert_int_equal(store_issuance_get(st, "t1", "C3", &out), ERR_NOT_FOUND);
}

struct racer {
    struct store *st;
    const char *hash;
    int rc;
};

static void *use_token(void *arg)
{
    struct racer *r = arg;
    r->rc = store_enroll_token_use(r->st, r->hash);
    return NULL;
}

/* Two handles on one database (two nodes) use a token at the same time:
 * exactly one succeeds, the other gets ERR_CONFLICT. */
static void test_store_enroll_token_one_use_between_handles(void **state)
{
    struct store *st = *state;
    make_tenant(st, "t1", "admin", "h");
    struct store *other = NULL;
    open_again(&other);
    for (int round = 0; round < 10; round++) {
        char hash[16];
        snprintf(hash, sizeof hash, "race%d", round);
        struct store_enroll_token t = {.tenant = "t1", .device = "d1", .valid_until = 99};
        assert_int_equal(store_enroll_token_put(st, hash, &t), 0);
        struct racer r[2] = {{st, hash, 1}, {other, hash, 1}};
        pthread_t th[2];
        for (int i = 0; i < 2; i++)
            assert_int_equal(pthread_create(&th[i], NULL, use_token, &r[i]), 0);
        for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
        assert_true((r[0].rc == 0 && r[1].rc == ERR_CONFLICT) ||
                    (r[1].rc == 0 && r[0].rc == ERR_CONFLICT));
    }
    store_close(other);
}

/* Reopening finds the data and the schema as they were. */
static void test_store_reopen_keeps_data(void **state)
{
    struct store *st = *state;
    make_tenant(st, "t1", "admin", "h");
    struct store *again = NULL;
    open_again(&again);
    assert_int_equal(store_schema_version(again), store_schema_version(st));
    assert_int_equal(store_schema_version(again), use_pg ? SCHEMA_PG : SCHEMA_SQLITE);
    struct store_user u;
    assert_int_equal(store_user_get(again, "t1", "admin", &u), 0);
    store_close(again);
}

/* ---- PostgreSQL only ---- */

static void *open_and_close(void *arg)
{
    struct store *st = NULL;
    *(int *)arg = store_open_path(pg_uri, &st);
    store_close(st);
    return NULL;
}

/* Four nodes starting together on an empty database: one migrates, the
 * others wait on the advisory lock and find it done. */
static void test_store_pg_concurrent_migrations(void **state)
{
    (void)state;
    char db[128], uri[1024];
    assert_int_equal(pgtest_create(db, sizeof db, uri, sizeof uri), 0);
    char keep[1024];
    snprintf(keep, sizeof keep, "%s", pg_uri);
    snprintf(pg_uri, sizeof pg_uri, "%s", uri);
    pthread_t th[4];
    int rc[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&th[i], NULL, open_and_close, &rc[i]), 0);
    for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < 4; i++) assert_int_equal(rc[i], 0);
    struct store *st = NULL;
    assert_int_equal(store_open_path(uri, &st), 0);
    assert_int_equal(store_schema_version(st), SCHEMA_PG);
    store_close(st);
    snprintf(pg_uri, sizeof pg_uri, "%s", keep);
    pgtest_drop(db);
}

static void allow_connections(const char *db, bool allow)
{
    char sql[512];
    snprintf(sql, sizeof sql, "ALTER DATABASE %s ALLOW_CONNECTIONS %s", db,
             allow ? "true" : "false");
    assert_int_equal(pgtest_admin(sql), 0);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The server drops the connection: the next call reconnects by itself.
 * While the database refuses connections calls answer ERR_UNAVAILABLE,
 * and once it takes them again the store recovers without reopening. */
static void test_store_pg_connection_loss(void **state)
{
    struct store *st = *state;
    make_tenant(st, "t1", "admin", "h");
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
             " WHERE datname = '%s' AND pid <> pg_backend_pid()",
             pg_db);
    PGconn *c = PQconnectdb(pgtest_server());
    PQclear(PQexec(c, sql));
    struct store_tenant t;
    assert_int_equal(store_tenant_get(st, "t1", &t), 0);

    allow_connections(pg_db, false);
    PQclear(PQexec(c, sql));
    assert_int_equal(store_tenant_get(st, "t1", &t), ERR_UNAVAILABLE);
    struct store_tenant t2 = {.id = "t2"};
    assert_int_equal(store_tenant_create(st, &t2, NULL), ERR_UNAVAILABLE);
    allow_connections(pg_db, true);
    int64_t until = now_ms() + 5000;
    int rc;
    while ((rc = store_tenant_get(st, "t1", &t)) == ERR_UNAVAILABLE && now_ms() < until)
        usleep(50000);
    assert_int_equal(rc, 0);
    assert_int_equal(store_tenant_get(st, "t2", &t), ERR_NOT_FOUND); /* nothing half-written */
    PQfinish(c);

    struct store *none = NULL;
    assert_int_equal(store_open_path("postgresql://postgres@127.0.0.1:1/none", &none),
                     ERR_UNAVAILABLE);
}

/* The connection dies in the middle of a bulk registration (a trigger
 * ends its own server process at the second row): the call answers
 * ERR_UNAVAILABLE, the first row is not stored, and the store goes on. */
static void test_store_pg_connection_lost_inside_a_transaction(void **state)
{
    struct store *st = *state;
    make_tenant(st, "t1", "admin", "h");
    PGconn *c = PQconnectdb(pg_uri);
    PGresult *r = PQexec(c, "CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$"
                            " BEGIN IF NEW.cn = 'boom' THEN PERFORM pg_terminate_backend("
                            "pg_backend_pid()); END IF; RETURN NEW; END $$;"
                            "CREATE TRIGGER boom BEFORE INSERT ON devices FOR EACH ROW"
                            " EXECUTE FUNCTION boom()");
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    PQfinish(c);
    struct store_device_new rows[2] = {{.cn = "ok1"}, {.cn = "boom"}};
    int rc[2];
    assert_int_equal(store_device_bulk(st, "t1", rows, 2, rc), ERR_UNAVAILABLE);
    size_t n = 99;
    assert_int_equal(store_device_count(st, "t1", &n), 0);
    assert_int_equal(n, 0);
    struct store_user u;
    assert_int_equal(store_user_get(st, "t1", "device_ok1", &u), ERR_NOT_FOUND);
    assert_int_equal(store_device_bulk(st, "t1", rows, 1, rc), 0);
    assert_int_equal(store_device_count(st, "t1", &n), 0);
    assert_int_equal(n, 1);
}

/* A key row written before schema 4 (plaintext) is sealed by rewrap. */
static void test_store_pg_token_keys_plaintext_rewrapped(void **state)
{
    struct store *st = *state;
    make_tenant(st, "t1", "admin", "h");
    PGconn *c = PQconnectdb(pg_uri);
    PGresult *r = PQexec(c, "INSERT INTO token_keys(tenant, priv_pem, pub_pem, created)"
                            " VALUES('t1', 'PLAIN-SECRET-KEY', 'PUB', 1)");
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    void *blob = NULL;
    size_t len = 0;
    char *pub = NULL;
    assert_int_equal(store_token_key_get(st, "t1", &blob, &len, &pub), ERR_DB);
    int calls = 0;
    size_t changed = 0;
    assert_int_equal(store_token_key_rewrap(st, wrap_plain, &calls, &changed), 0);
    assert_int_equal(calls, 1);
    assert_int_equal(changed, 1);
    assert_int_equal(store_token_key_get(st, "t1", &blob, &len, &pub), 0);
    assert_int_equal(len, 16 + 41);
    assert_memory_equal(blob, "YEK-TERCES-NIALP", 16);
    free(blob);
    free(pub);
    r = PQexec(c, "SELECT count(*) FROM token_keys WHERE priv_pem <> ''");
    assert_string_equal(PQgetvalue(r, 0, 0), "0");
    PQclear(r);
    PQfinish(c);
}

#define STORE_TESTS                                                                                \
    cmocka_unit_test_setup_teardown(test_store_tenant_and_users, setup, teardown),                 \
        cmocka_unit_test_setup_teardown(test_store_certs, setup, teardown),                        \
        cmocka_unit_test_setup_teardown(test_store_devices_bulk_and_single, setup, teardown),      \
        cmocka_unit_test_setup_teardown(test_store_bulk_is_all_or_nothing, setup, teardown),       \
        cmocka_unit_test_setup_teardown(test_store_user_delete_takes_the_device_with_it, setup,    \
                                        teardown),                                                 \
        cmocka_unit_test_setup_teardown(test_store_options_and_crl, setup, teardown),              \
        cmocka_unit_test_setup_teardown(test_trust_index_loads_from_store, setup, teardown),       \
        cmocka_unit_test_setup_teardown(test_trust_register_device_writes_store_and_index, setup,  \
                                        teardown),                                                 \
        cmocka_unit_test_setup_teardown(test_store_token_keys_first_writer_wins, setup, teardown), \
        cmocka_unit_test_setup_teardown(test_store_ticket_keys_first_writer_wins_and_prunes,       \
                                        setup, teardown),                                          \
        cmocka_unit_test_setup_teardown(test_store_lists_in_order_with_paging, setup, teardown),   \
        cmocka_unit_test_setup_teardown(test_store_retained_authz_and_seen, setup, teardown),      \
        cmocka_unit_test_setup_teardown(test_store_retained_get_by_digest, setup, teardown),       \
        cmocka_unit_test_setup_teardown(test_store_ca_tokens_and_issuances, setup, teardown),      \
        cmocka_unit_test_setup_teardown(test_store_enroll_token_one_use_between_handles, setup,    \
                                        teardown),                                                 \
        cmocka_unit_test_setup_teardown(test_store_reopen_keeps_data, setup, teardown)

static int group_sqlite(void **state)
{
    (void)state;
    use_pg = false;
    return 0;
}

static int group_pg(void **state)
{
    (void)state;
    use_pg = true;
    return 0;
}

int main(void)
{
    const struct CMUnitTest sqlite_tests[] = {
        cmocka_unit_test_setup_teardown(test_store_opens_with_wal_and_schema, setup, teardown),
        STORE_TESTS,
        cmocka_unit_test_setup_teardown(test_store_token_keys_plaintext_rewrapped_and_gone, setup,
                                        teardown),
        cmocka_unit_test(test_trust_device_remove),
        cmocka_unit_test(test_password_hash_and_verify),
        cmocka_unit_test(test_serial_normalize),
    };
    const struct CMUnitTest pg_tests[] = {
        STORE_TESTS,
        cmocka_unit_test(test_store_pg_concurrent_migrations),
        cmocka_unit_test_setup_teardown(test_store_pg_connection_loss, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_pg_connection_lost_inside_a_transaction, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_store_pg_token_keys_plaintext_rewrapped, setup,
                                        teardown),
    };
    int rc = cmocka_run_group_tests_name("store on sqlite", sqlite_tests, group_sqlite, NULL);
    if (!pgtest_skip("test_store"))
        rc |= cmocka_run_group_tests_name("store on postgresql", pg_tests, group_pg, NULL);
    return rc;
}
