/* Store tests: migrations and pragmas, tenants with their admin, users,
 * trusted certificates, devices (single and bulk, all-or-nothing), options
 * and revoked serials; then the trust index loaded from that store, and
 * password hashing with the index's credential check. */
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

#include <openssl/evp.h>
#include <sqlite3.h>
#include <openssl/x509v3.h>

#include "identity/password.h"
#include "identity/trust.h"
#include "store/store.h"

static char dir[256];

static int setup(void **state)
{
    snprintf(dir, sizeof dir, "/tmp/certmq-test-store-XXXXXX");
    assert_non_null(mkdtemp(dir));
    struct store *st = NULL;
    assert_int_equal(store_open(dir, &st), 0);
    *state = st;
    return 0;
}

static int teardown(void **state)
{
    store_close(*state);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
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
    assert_int_equal(store_schema_version(st), 7);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_store_opens_with_wal_and_schema, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_tenant_and_users, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_certs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_devices_bulk_and_single, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_bulk_is_all_or_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_user_delete_takes_the_device_with_it, setup,
                                        teardown),
        cmocka_unit_test(test_trust_device_remove),
        cmocka_unit_test_setup_teardown(test_store_options_and_crl, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trust_index_loads_from_store, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trust_register_device_writes_store_and_index, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_store_token_keys_first_writer_wins, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_token_keys_plaintext_rewrapped_and_gone, setup,
                                        teardown),
        cmocka_unit_test(test_password_hash_and_verify),
        cmocka_unit_test(test_serial_normalize),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
