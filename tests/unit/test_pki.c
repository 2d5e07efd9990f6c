/* Unit tests of the pki module's pure helpers (subjectAltName lists, device
 * ids, serials, index.txt lines, key specs) and of the development-PKI
 * bootstrap and batch CSV, which run in a temporary directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/bn.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "identity/csv.h"
#include "pki/pki.h"
#include "pki/pki_internal.h"

static void test_san_parse_mixed(void **state)
{
    (void)state;
    struct pki_san san[8];
    size_t n = 0;
    const char *why = NULL;
    assert_int_equal(
        pki_san_parse("DNS:broker.example.com, IP:10.0.0.5,IP:::1,mqtt.local", san, 8, &n, &why),
        0);
    assert_int_equal(n, 4);
    assert_int_equal(san[0].type, PKI_SAN_DNS);
    assert_string_equal(san[0].dns, "broker.example.com");
    assert_int_equal(san[1].type, PKI_SAN_IP);
    assert_int_equal(san[1].len, 4);
    assert_memory_equal(san[1].ip, "\x0a\x00\x00\x05", 4);
    assert_int_equal(san[2].type, PKI_SAN_IP);
    assert_int_equal(san[2].len, 16);
    assert_int_equal(san[2].ip[15], 1);
    assert_int_equal(san[3].type, PKI_SAN_DNS); /* bare name */
}

static void test_san_parse_bare_address_is_ip(void **state)
{
    (void)state;
    struct pki_san san[2];
    size_t n = 0;
    const char *why = NULL;
    assert_int_equal(pki_san_parse("127.0.0.1", san, 2, &n, &why), 0);
    assert_int_equal(san[0].type, PKI_SAN_IP);
    assert_int_equal(pki_san_parse("*.example.com", san, 2, &n, &why), 0);
    assert_int_equal(san[0].type, PKI_SAN_DNS);
}

static void test_san_parse_rejects(void **state)
{
    (void)state;
    struct pki_san san[2];
    size_t n = 0;
    const char *why = NULL;
    assert_int_equal(pki_san_parse("IP:300.1.1.1", san, 2, &n, &why), ERR_INVALID);
    assert_non_null(strstr(why, "IP"));
    assert_int_equal(pki_san_parse("DNS:bad host", san, 2, &n, &why), ERR_INVALID);
    assert_int_equal(pki_san_parse("DNS:a..b", san, 2, &n, &why), ERR_INVALID);
    assert_int_equal(pki_san_parse("", san, 2, &n, &why), ERR_INVALID);
    assert_int_equal(pki_san_parse(" , ", san, 2, &n, &why), ERR_INVALID);
    assert_int_equal(pki_san_parse("a.b,c.d,e.f", san, 2, &n, &why), ERR_INVALID); /* max */
    assert_int_equal(pki_san_parse("DNS:", san, 2, &n, &why), ERR_INVALID);
}

static void test_id_check(void **state)
{
    (void)state;
    const char *why = NULL;
    assert_int_equal(pki_id_check("pump-0042", &why), 0);
    assert_int_equal(pki_id_check("a:b", &why), ERR_INVALID);
    assert_non_null(strstr(why, "':'"));
    assert_int_equal(pki_id_check("", &why), ERR_INVALID);
    assert_int_equal(pki_id_check("a/b", &why), ERR_INVALID);
    assert_int_equal(pki_id_check("..", &why), ERR_INVALID);
    assert_int_equal(pki_id_check("tab\there", &why), ERR_INVALID);
    char longid[70];
    memset(longid, 'x', 65);
    longid[65] = '\0';
    assert_int_equal(pki_id_check(longid, &why), ERR_INVALID);
    longid[64] = '\0';
    assert_int_equal(pki_id_check(longid, &why), 0);
}

static void test_serial_parse_and_hex(void **state)
{
    (void)state;
    BIGNUM *bn = NULL;
    char hex[64];
    assert_int_equal(pki_serial_parse("1000\n", &bn), 0);
    assert_int_equal(BN_get_word(bn), 0x1000);
    assert_int_equal(pki_serial_hex(bn, hex, sizeof hex), 0);
    assert_string_equal(hex, "1000");
    BN_free(bn);
    assert_int_equal(pki_serial_parse("0x1a:2b", &bn), 0);
    assert_int_equal(BN_get_word(bn), 0x1a2b);
    BN_free(bn);
    assert_int_equal(pki_serial_parse("100", &bn), 0);
    assert_int_equal(pki_serial_hex(bn, hex, sizeof hex), 0);
    assert_string_equal(hex, "0100"); /* whole bytes, as openssl writes */
    BN_free(bn);
    assert_int_equal(pki_serial_parse("xyz", &bn), ERR_INVALID);
    assert_null(bn);
    assert_int_equal(pki_serial_parse("", &bn), ERR_INVALID);
    assert_int_equal(pki_serial_parse("11223344556677889900112233445566778899001", &bn),
                     ERR_INVALID); /* over 20 bytes */
}

static void test_index_line_round_trip(void **state)
{
    (void)state;
    const char *line = "R\t271123175857Z\t261123180000Z,keyCompromise\t570DEEDC757BD516\tunknown\t"
                       "/CN=dev1\n";
    struct pki_index_entry e;
    char out[512];
    assert_int_equal(pki_index_parse_line(line, strlen(line), &e), 0);
    assert_int_equal(e.status, 'R');
    assert_string_equal(e.serial, "570DEEDC757BD516");
    assert_string_equal(e.revoked, "261123180000Z,keyCompromise");
    assert_string_equal(e.subject, "/CN=dev1");
    int n = pki_index_format_line(&e, out, sizeof out);
    assert_int_equal(n, (int)strlen(line));
    assert_string_equal(out, line);
}

static void test_index_line_rejects(void **state)
{
    (void)state;
    struct pki_index_entry e;
    const char *bad[] = {
        "X\t271123175857Z\t\t01\tunknown\t/CN=a",              /* status */
        "V\t271123175857Z\t\t01\tunknown",                     /* too few fields */
        "V\t27\t\t01\tunknown\t/CN=a",                         /* short date */
        "V\t271123175857Z\t261123180000Z\t01\tunknown\t/CN=a", /* V with a revocation date */
        "R\t271123175857Z\t\t01\tunknown\t/CN=a",              /* R without one */
        "V\t271123175857Z\t\t01\tunknown\t/CN=a\tmore",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_true(pki_index_parse_line(bad[i], strlen(bad[i]), &e) < 0);
}

static void test_keyspec_parse(void **state)
{
    (void)state;
    struct pki_keyspec ks;
    assert_int_equal(pki_keyspec_parse(NULL, &ks), 0);
    assert_true(ks.ec);
    assert_string_equal(ks.name, "ec:P-256");
    assert_int_equal(pki_keyspec_parse("rsa:4096", &ks), 0);
    assert_false(ks.ec);
    assert_int_equal(ks.bits, 4096);
    assert_int_equal(pki_keyspec_parse("ec:P-384", &ks), 0);
    assert_int_equal(ks.curve_nid, NID_secp384r1);
    assert_int_equal(pki_keyspec_parse("rsa:1024", &ks), ERR_INVALID);
    assert_int_equal(pki_keyspec_parse("ed25519", &ks), ERR_INVALID);
}

static void test_reason_codes(void **state)
{
    (void)state;
    assert_int_equal(pki_reason_code("keyCompromise"), 1);
    assert_int_equal(pki_reason_code("superseded"), 4);
    assert_int_equal(pki_reason_code("nonsense"), -1);
    assert_string_equal(pki_reason_name(5), "cessationOfOperation");
    assert_string_equal(pki_reason_name(7), "unspecified");
}

static char *tmpdir_new(void)
{
    char tmpl[] = "/tmp/certmq-test-pki-XXXXXX";
    char *d = mkdtemp(tmpl);
    assert_non_null(d);
    return strdup(d);
}

static void rm_rf(const char *dir)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static X509 *read_cert(const char *path)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    assert_non_null(x);
    return x;
}

static void test_dev_bootstrap_creates_and_is_idempotent(void **state)
{
    (void)state;
    char *base = tmpdir_new(), dir[256], path[300];
    struct stat st;
    snprintf(dir, sizeof dir, "%s/dev-ca", base);
    assert_int_equal(pki_dev_bootstrap(dir), 0);
    assert_int_equal(stat(dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    const char *files[] = {"ca.pem",    "ca.key",     "chain.pem", "serial",
                           "index.txt", "server.pem", "server.key"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        assert_int_equal(stat(path, &st), 0);
        if (strstr(files[i], ".key")) assert_int_equal(st.st_mode & 0777, 0600);
    }
    snprintf(path, sizeof path, "%s/ca.pem", dir);
    X509 *ca = read_cert(path);
    snprintf(path, sizeof path, "%s/server.pem", dir);
    X509 *srv = read_cert(path);
    char cn[64];
    pki_name_cn(X509_get_subject_name(ca), cn, sizeof cn);
    assert_string_equal(cn, "certmq dev CA");
    assert_int_equal(X509_check_ca(ca), 1);
    assert_int_equal(EVP_PKEY_get_bits(X509_get0_pubkey(ca)), 256);
    assert_int_equal(X509_check_host(srv, "localhost", 0, 0, NULL), 1);
    assert_int_equal(X509_check_ip_asc(srv, "127.0.0.1", 0), 1);
    assert_int_equal(X509_check_ip_asc(srv, "::1", 0), 1);
    assert_int_equal(X509_check_ip_asc(srv, "10.0.0.1", 0), 0);

    /* The server certificate verifies against the CA as a TLS server. */
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    assert_int_equal(X509_STORE_add_cert(store, ca), 1);
    assert_int_equal(X509_STORE_CTX_init(ctx, store, srv, NULL), 1);
    X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_SERVER);
    assert_int_equal(X509_verify_cert(ctx), 1);
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);

    /* A second run keeps the CA and the server certificate. */
    assert_int_equal(pki_dev_bootstrap(dir), 0);
    X509 *srv_again = read_cert(path);
    assert_int_equal(X509_cmp(srv, srv_again), 0);
    snprintf(path, sizeof path, "%s/ca.pem", dir);
    X509 *ca3 = read_cert(path);
    assert_int_equal(X509_cmp(ca, ca3), 0);

    /* Without server.pem, a new server certificate comes from the same CA. */
    snprintf(path, sizeof path, "%s/server.pem", dir);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(pki_dev_bootstrap(dir), 0);
    X509 *srv2 = read_cert(path);
    assert_int_not_equal(X509_cmp(srv, srv2), 0);
    assert_int_equal(X509_check_issued(ca, srv2), X509_V_OK);

    X509_free(ca);
    X509_free(srv_again);
    X509_free(ca3);
    X509_free(srv);
    X509_free(srv2);
    rm_rf(base);
    free(base);
}

static int run_pki(char *const *args)
{
    int argc = 0;
    while (args[argc]) argc++;
    return pki_main(argc, (char **)args);
}

/* The batch CSV goes through the server's own bulk-registration parser. */
static void test_batch_csv_parses_with_server_parser(void **state)
{
    (void)state;
    char *base = tmpdir_new(), ca[256], out[256], csvp[300];
    snprintf(ca, sizeof ca, "%s/ca", base);
    snprintf(out, sizeof out, "%s/out", base);
    char *init[] = {"pki", "ca", "init", ca, "--cn", "Batch CA", "--json", NULL};
    assert_int_equal(run_pki(init), 0);
    char *batch[] = {"pki",      "issue", "batch", "--ca", ca,       "--count", "12",
                     "--prefix", "pump-", "--out", out,    "--json", NULL};
    assert_int_equal(run_pki(batch), 0);
    snprintf(csvp, sizeof csvp, "%s/bulk-registration.csv", out);
    char *data = NULL;
    size_t len = 0;
    assert_int_equal(pki_read_file(csvp, &data, &len), 0);
    struct csv c;
    assert_int_equal(csv_parse((const uint8_t *)data, len, &c), 0);
    assert_int_equal(c.nrows, 12);
    int id = csv_col(&c, "ID"), at = csv_col(&c, "AUTH_TYPE");
    assert_true(id >= 0 && at >= 0);
    assert_int_equal(csv_col(&c, "CREDENTIALS"), -1);
    assert_string_equal(csv_cell(&c, 0, id), "pump-0001");
    assert_string_equal(csv_cell(&c, 11, id), "pump-0012");
    for (size_t r = 0; r < c.nrows; r++) assert_string_equal(csv_cell(&c, r, at), "CERTIFICATES");
    csv_free(&c);
    free(data);
    rm_rf(base);
    free(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_san_parse_mixed),
        cmocka_unit_test(test_san_parse_bare_address_is_ip),
        cmocka_unit_test(test_san_parse_rejects),
        cmocka_unit_test(test_id_check),
        cmocka_unit_test(test_serial_parse_and_hex),
        cmocka_unit_test(test_index_line_round_trip),
        cmocka_unit_test(test_index_line_rejects),
        cmocka_unit_test(test_keyspec_parse),
        cmocka_unit_test(test_reason_codes),
        cmocka_unit_test(test_dev_bootstrap_creates_and_is_idempotent),
        cmocka_unit_test(test_batch_csv_parses_with_server_parser),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
