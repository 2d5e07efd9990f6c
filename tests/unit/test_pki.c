/* Unit tests of the pki module's pure helpers (subjectAltName lists, device
 * ids, serials, index.txt lines, key specs, --at times), of the
 * development-PKI bootstrap and batch CSV, and of `pki verify` (the broker's
 * chain policy on files), which run in a temporary directory. */
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
#include "identity/policy.h"
#include "identity/trust.h"
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

/* ---- pki verify: one PKI (root, intermediate, devices) for the group ---- */

struct vfix {
    char *base;
    char root[256], inter[256], out[256];
};

static char *vpath(const struct vfix *f, const char *name)
{
    static char buf[512];
    snprintf(buf, sizeof buf, "%s/%s", f->out, name);
    return buf;
}

static int verify_setup(void **state)
{
    struct vfix *f = calloc(1, sizeof *f);
    f->base = tmpdir_new();
    snprintf(f->root, sizeof f->root, "%s/root", f->base);
    snprintf(f->inter, sizeof f->inter, "%s/inter", f->base);
    snprintf(f->out, sizeof f->out, "%s/out", f->base);
    char *init[] = {"pki", "ca", "init", f->root, "--cn", "Verify Root", "--json", NULL};
    char *inter[] = {"pki",   "ca",   "intermediate",        f->inter, "--parent",
                     f->root, "--cn", "Verify Intermediate", "--json", NULL};
    char *dev1[] = {"pki",    "issue", "device", "--ca",   f->root, "--cn",
                    "pump-1", "--out", f->out,   "--json", NULL};
    char *dev2[] = {"pki",    "issue", "device", "--ca",   f->inter, "--cn",
                    "pump-2", "--out", f->out,   "--json", NULL};
    if (run_pki(init) || run_pki(inter) || run_pki(dev1) || run_pki(dev2)) return -1;
    *state = f;
    return 0;
}

static int verify_teardown(void **state)
{
    struct vfix *f = *state;
    rm_rf(f->base);
    free(f->base);
    free(f);
    return 0;
}

/* Runs pki_verify_chain on a chain file with the certificates of trust_file
 * as anchors. */
static void verify_files(const char *chain_file, const char *trust_file, const char *client_id,
                         time_t at, int max_len, bool require_ca, struct ident_decision *d,
                         int *needed)
{
    STACK_OF(X509) *chain = NULL, *anchors = NULL;
    assert_int_equal(pki_certs_load(chain_file, &chain), 0);
    assert_int_equal(pki_certs_load(trust_file, &anchors), 0);
    X509 *leaf = sk_X509_shift(chain);
    struct pki_verify_in in = {
        .leaf = leaf,
        .chain = chain,
        .anchors = anchors,
        .client_id = client_id,
        .at = at ? at : time(NULL),
        .max_chain_length = max_len,
        .require_ca_in_chain = require_ca,
    };
    int n = 0;
    assert_int_equal(pki_verify_chain(&in, d, needed ? needed : &n), 0);
    X509_free(leaf);
    sk_X509_pop_free(chain, X509_free);
    sk_X509_pop_free(anchors, X509_free);
}

static void test_verify_valid_chain(void **state)
{
    struct vfix *f = *state;
    struct ident_decision d;
    char rootpem[300], fp[STORE_FP_MAX];
    snprintf(rootpem, sizeof rootpem, "%s/ca.pem", f->root);
    verify_files(vpath(f, "pump-1.chain.pem"), rootpem, NULL, 0, 0, true, &d, NULL);
    assert_true(d.accepted);
    assert_int_equal(d.reason, IDENT_OK);
    assert_string_equal(d.tenant, PKI_VERIFY_TENANT);
    assert_string_equal(d.cn, "pump-1");
    assert_true(d.auto_register); /* registration is never the refusal */
    X509 *ca = read_cert(rootpem);
    assert_int_equal(trust_fingerprint(ca, fp), 0);
    assert_string_equal(d.anchor_fp, fp);
    X509_free(ca);
    /* Another CA's certificate as the only anchor: untrusted. */
    char interpem[300];
    snprintf(interpem, sizeof interpem, "%s/ca.pem", f->inter);
    verify_files(vpath(f, "pump-1.chain.pem"), interpem, NULL, 0, 0, true, &d, NULL);
    assert_false(d.accepted);
    assert_int_equal(d.reason, IDENT_UNTRUSTED);
}

static void test_verify_chain_without_ca(void **state)
{
    struct vfix *f = *state;
    struct ident_decision d;
    char rootpem[300];
    snprintf(rootpem, sizeof rootpem, "%s/ca.pem", f->root);
    verify_files(vpath(f, "pump-1.pem"), rootpem, NULL, 0, 0, true, &d, NULL);
    assert_false(d.accepted);
    assert_int_equal(d.reason, IDENT_CA_NOT_IN_CHAIN);
    /* The relaxed broker setting accepts a chained-to anchor. */
    verify_files(vpath(f, "pump-1.pem"), rootpem, NULL, 0, 0, false, &d, NULL);
    assert_true(d.accepted);
}

static void test_verify_expired_and_not_yet_valid(void **state)
{
    struct vfix *f = *state;
    struct ident_decision d;
    char rootpem[300];
    snprintf(rootpem, sizeof rootpem, "%s/ca.pem", f->root);
    time_t now = time(NULL);
    verify_files(vpath(f, "pump-1.chain.pem"), rootpem, NULL, now + 400 * 86400L, 0, true, &d,
                 NULL);
    assert_int_equal(d.reason, IDENT_EXPIRED);
    verify_files(vpath(f, "pump-1.chain.pem"), rootpem, NULL, now - 2 * 86400L, 0, true, &d, NULL);
    assert_int_equal(d.reason, IDENT_NOT_YET_VALID);
    verify_files(vpath(f, "pump-1.chain.pem"), rootpem, NULL, now + 300 * 86400L, 0, true, &d,
                 NULL);
    assert_true(d.accepted);
}

static void test_verify_cn_with_colon(void **state)
{
    struct vfix *f = *state;
    struct pki_pass pass = {.env = "CERTMQ_PKI_PASS", .label = f->root};
    struct pki_ca ca = {.lock_fd = -1};
    struct pki_keyspec ks;
    struct pki_keygen *g = NULL;
    EVP_PKEY *key = NULL;
    X509 *x = NULL;
    char *pem = NULL, path[300], chain[8192];
    size_t len = 0;
    assert_int_equal(pki_ca_open(f->root, true, &pass, &ca), 0);
    assert_int_equal(pki_keyspec_parse(NULL, &ks), 0);
    assert_int_equal(pki_keygen_new(&ks, &g), 0);
    assert_int_equal(pki_keygen_next(g, &key), 0);
    struct pki_cert_req rq = {.profile = PKI_PROFILE_DEVICE,
                              .cn = "pump:7",
                              .key = key,
                              .days = 30,
                              .pathlen = -1,
                              .issuer = ca.cert,
                              .issuer_key = ca.key};
    assert_int_equal(pki_cert_make(&rq, &x), 0);
    assert_int_equal(pki_cert_pem(x, &pem, &len), 0);
    char *capem = NULL;
    size_t calen = 0;
    snprintf(path, sizeof path, "%s/ca.pem", f->root);
    assert_int_equal(pki_read_file(path, &capem, &calen), 0);
    assert_true(len + calen < sizeof chain);
    memcpy(chain, pem, len);
    memcpy(chain + len, capem, calen);
    assert_int_equal(pki_write_file(vpath(f, "colon.chain.pem"), chain, len + calen, 0644, true),
                     0);
    struct ident_decision d;
    verify_files(vpath(f, "colon.chain.pem"), path, NULL, 0, 0, true, &d, NULL);
    assert_false(d.accepted);
    assert_int_equal(d.reason, IDENT_BAD_COMMON_NAME);
    assert_string_equal(d.cn, "pump:7");
    free(capem);
    free(pem);
    X509_free(x);
    EVP_PKEY_free(key);
    pki_keygen_free(g);
    pki_ca_close(&ca);
}

static void test_verify_chain_too_long_until_limit_3(void **state)
{
    struct vfix *f = *state;
    struct ident_decision d;
    char rootpem[300];
    int needed = 0;
    snprintf(rootpem, sizeof rootpem, "%s/ca.pem", f->root);
    verify_files(vpath(f, "pump-2.chain.pem"), rootpem, NULL, 0, 0, true, &d, &needed);
    assert_false(d.accepted);
    assert_int_equal(d.reason, IDENT_CHAIN_TOO_LONG);
    assert_int_equal(needed, 3);
    verify_files(vpath(f, "pump-2.chain.pem"), rootpem, NULL, 0, 2, true, &d, &needed);
    assert_int_equal(d.reason, IDENT_CHAIN_TOO_LONG);
    verify_files(vpath(f, "pump-2.chain.pem"), rootpem, NULL, 0, 3, true, &d, &needed);
    assert_true(d.accepted);
    assert_int_equal(needed, 0);
    assert_string_equal(d.cn, "pump-2");
}

static void test_verify_client_id_forms(void **state)
{
    struct vfix *f = *state;
    struct ident_decision d;
    char rootpem[300];
    snprintf(rootpem, sizeof rootpem, "%s/ca.pem", f->root);
    const char *good[] = {"pump-1", "d:pump-1", "d:pump-1:c8y_Template"};
    const char *bad[] = {"pump-2", "d:pump-1x", "pump-1:x", "d:pump-1:", "", "x:pump-1"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        verify_files(vpath(f, "pump-1.chain.pem"), rootpem, good[i], 0, 0, true, &d, NULL);
        assert_true(d.accepted);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        verify_files(vpath(f, "pump-1.chain.pem"), rootpem, bad[i], 0, 0, true, &d, NULL);
        assert_int_equal(d.reason, IDENT_CLIENT_ID_MISMATCH);
    }
}

/* The command's exit codes: 0 accepted, 1 refused, 2 usage. */
static void test_verify_command_exit_codes(void **state)
{
    struct vfix *f = *state;
    char rootpem[300];
    snprintf(rootpem, sizeof rootpem, "%s/ca.pem", f->root);
    char *chain = strdup(vpath(f, "pump-1.chain.pem"));
    char *leaf = strdup(vpath(f, "pump-1.pem"));
    char *okv[] = {"pki", "verify", chain, "--trust", rootpem, "--client-id", "d:pump-1", NULL};
    char *refused[] = {"pki", "verify", leaf, "--trust", rootpem, "--json", NULL};
    char *relaxed[] = {"pki",   "verify", leaf, "--trust", rootpem, "--require-ca-in-chain",
                       "false", NULL};
    char *no_trust[] = {"pki", "verify", chain, NULL};
    char *bad_bool[] = {"pki", "verify", chain, "--trust", rootpem, "--require-ca-in-chain",
                        "yes", NULL};
    char *bad_len[] = {"pki", "verify", chain, "--trust", rootpem, "--max-chain-length",
                       "11",  NULL};
    char *missing[] = {"pki", "verify", "/nonexistent/chain.pem", "--trust", rootpem, NULL};
    assert_int_equal(run_pki(okv), 0);
    assert_int_equal(run_pki(refused), 1);
    assert_int_equal(run_pki(relaxed), 0);
    assert_int_equal(run_pki(no_trust), 2);
    assert_int_equal(run_pki(bad_bool), 2);
    assert_int_equal(run_pki(bad_len), 2);
    assert_int_equal(run_pki(missing), 1);
    free(chain);
    free(leaf);
}

static void test_time_parse_forms(void **state)
{
    (void)state;
    time_t t = 0;
    assert_int_equal(pki_time_parse("2030-01-31", &t), 0);
    assert_int_equal(t, 1896048000);
    assert_int_equal(pki_time_parse("2030-01-31T12:00:01Z", &t), 0);
    assert_int_equal(t, 1896048000 + 12 * 3600 + 1);
    assert_int_equal(pki_time_parse("2030-01-31T12:00:01", &t), 0);
    assert_int_equal(pki_time_parse("@1700000000", &t), 0);
    assert_int_equal(t, 1700000000);
    const char *bad[] = {"",
                         "@",
                         "@-5",
                         "@12x",
                         "tomorrow",
                         "2030-13-01",
                         "2030-01-31 junk",
                         "2030-01-31T12:00:00+01:00",
                         "1960-01-01"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(pki_time_parse(bad[i], &t), ERR_INVALID);
}

static void test_est_url_parse(void **state)
{
    (void)state;
    struct pki_url u;
    const char *ok = "https://certmq.example:8443/prefix/";
    assert_int_equal(pki_url_parse(ok, strlen(ok), &u), 0);
    assert_true(u.tls);
    assert_string_equal(u.host, "certmq.example");
    assert_string_equal(u.port, "8443");
    assert_string_equal(u.path, "/prefix");
    assert_int_equal(pki_url_parse("http://h", 8, &u), 0);
    assert_string_equal(u.port, "80");
    assert_string_equal(u.path, "");
    const char *bad[] = {"ftp://h",     "https://",    "https://:80", "https://h:99999",
                         "https://h:x", "https://h?q", "https://a b"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_int_equal(pki_url_parse(bad[i], strlen(bad[i]), &u), ERR_INVALID);
    assert_int_equal(pki_url_parse("https://\0\0", 10, &u), ERR_INVALID); /* NUL host */
}

static void test_est_http_split(void **state)
{
    (void)state;
    int status = 0;
    const char *body = NULL;
    size_t n = 0;
    const char *r = "HTTP/1.1 401 Unauthorized\r\nA: b\r\n\r\n{\"x\":1}";
    assert_int_equal(pki_http_split(r, strlen(r), &status, &body, &n), 0);
    assert_int_equal(status, 401);
    assert_int_equal(n, 7);
    assert_int_equal(pki_http_split("HTTP/1.1 200 OK\r\n", 17, &status, &body, &n), ERR_MALFORMED);
    assert_int_equal(pki_http_split("SMTP 220", 8, &status, &body, &n), ERR_MALFORMED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_est_url_parse),
        cmocka_unit_test(test_est_http_split),
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
        cmocka_unit_test(test_time_parse_forms),
    };
    const struct CMUnitTest verify_tests[] = {
        cmocka_unit_test(test_verify_valid_chain),
        cmocka_unit_test(test_verify_chain_without_ca),
        cmocka_unit_test(test_verify_expired_and_not_yet_valid),
        cmocka_unit_test(test_verify_cn_with_colon),
        cmocka_unit_test(test_verify_chain_too_long_until_limit_3),
        cmocka_unit_test(test_verify_client_id_forms),
        cmocka_unit_test(test_verify_command_exit_codes),
    };
    int failed = cmocka_run_group_tests_name("pki", tests, NULL, NULL);
    failed +=
        cmocka_run_group_tests_name("pki verify", verify_tests, verify_setup, verify_teardown);
    return failed;
}
