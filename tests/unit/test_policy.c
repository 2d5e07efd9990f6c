/* Chain-policy tests: builds the certificates described in policy_cases.txt
 * with the OpenSSL API at run time, then runs every case through
 * ident_decide() against a fresh trust index and compares the named reason
 * (and tenant, where a case asks). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include "identity/policy.h"
#include "identity/trust.h"

#define MAX_CERTS 64
#define DAY       86400L

struct named {
    char name[32];
    X509 *cert;
    EVP_PKEY *key;
};

static struct named certs[MAX_CERTS];
static int ncerts;
static time_t t0;

static struct named *find_cert(const char *name)
{
    for (int i = 0; i < ncerts; i++)
        if (strcmp(certs[i].name, name) == 0) return &certs[i];
    return NULL;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t') s++;
    char *e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' || e[-1] == '\r')) *--e = 0;
    return s;
}

/* Value of attribute "k=" in a space-separated list, or NULL; flags ("v1")
 * are found with want_flag. */
static const char *attr(const char *attrs, const char *k, char *buf, size_t cap)
{
    size_t kl = strlen(k);
    const char *p = attrs;
    while (*p) {
        while (*p == ' ') p++;
        const char *e = strchr(p, ' ');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len > kl && strncmp(p, k, kl) == 0 && p[kl] == '=') {
            snprintf(buf, cap, "%.*s", (int)(len - kl - 1), p + kl + 1);
            return buf;
        }
        p += len;
    }
    return NULL;
}

static int want_flag(const char *attrs, const char *flag)
{
    size_t fl = strlen(flag);
    const char *p = attrs;
    while ((p = strstr(p, flag)) != NULL) {
        if ((p == attrs || p[-1] == ' ') && (p[fl] == 0 || p[fl] == ' ')) return 1;
        p += fl;
    }
    return 0;
}

static EVP_PKEY *make_key(const char *spec)
{
    if (strcmp(spec, "rsa2048") == 0) return EVP_RSA_gen(2048);
    if (strcmp(spec, "rsa1024") == 0) return EVP_RSA_gen(1024);
    if (strcmp(spec, "ec224") == 0) return EVP_EC_gen("P-224");
    return EVP_EC_gen("P-256");
}

static void add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (!ext) fail_msg("extension %s=%s", OBJ_nid2sn(nid), value);
    assert_int_equal(X509_add_ext(x, ext, -1), 1);
    X509_EXTENSION_free(ext);
}

/* The issuer's key identifier: its SKI, or (when it has none, as a v1 CA or
 * one made with noski) the SHA-1 of its public key, as RFC 5280 suggests. */
static void add_aki(X509 *x, X509 *issuer)
{
    AUTHORITY_KEYID *akid = AUTHORITY_KEYID_new();
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    const ASN1_OCTET_STRING *ski = X509_get0_subject_key_id(issuer);
    akid->keyid = ski ? ASN1_OCTET_STRING_dup(ski) : ASN1_OCTET_STRING_new();
    if (!ski) {
        assert_int_equal(X509_pubkey_digest(issuer, EVP_sha1(), md, &n), 1);
        assert_int_equal(ASN1_OCTET_STRING_set(akid->keyid, md, (int)n), 1);
    }
    assert_int_equal(
        X509_add1_ext_i2d(x, NID_authority_key_identifier, akid, 0, X509V3_ADD_DEFAULT), 1);
    AUTHORITY_KEYID_free(akid);
}

static void build_cert(const char *name, const char *attrs)
{
    char b[128], ext[128];
    static long serial = 4096;
    assert_true(ncerts < MAX_CERTS);
    struct named *n = &certs[ncerts];
    snprintf(n->name, sizeof n->name, "%s", name);
    if (attr(attrs, "keyof", b, sizeof b)) { /* another certificate's key (key rollover) */
        struct named *other = find_cert(b);
        assert_non_null(other);
        n->key = other->key;
        EVP_PKEY_up_ref(n->key);
    } else {
        n->key = make_key(attr(attrs, "key", b, sizeof b) ? b : "ec256");
    }
    assert_non_null(n->key);
    X509 *x = X509_new();
    bool v1 = want_flag(attrs, "v1");
    X509_set_version(x, v1 ? X509_VERSION_1 : X509_VERSION_3);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
    long from = attr(attrs, "from", b, sizeof b) ? atol(b) : -1;
    long to = attr(attrs, "to", b, sizeof b) ? atol(b) : 365;
    X509_time_adj_ex(X509_getm_notBefore(x), (int)from, 0, &t0);
    X509_time_adj_ex(X509_getm_notAfter(x), (int)to, 0, &t0);
    X509_NAME *subj = X509_get_subject_name(x);
    bool empty = want_flag(attrs, "emptysubj");
    if (!empty)
        X509_NAME_add_entry_by_txt(subj, "O", MBSTRING_ASC, (const unsigned char *)"certmq test",
                                   -1, -1, 0);
    if (!empty && !want_flag(attrs, "nocn") && attr(attrs, "cn", b, sizeof b))
        X509_NAME_add_entry_by_txt(subj, "CN", MBSTRING_UTF8, (const unsigned char *)b, -1, -1, 0);
    assert_int_equal(X509_set_pubkey(x, n->key), 1);

    struct named *iss = NULL;
    const char *issuer = attr(attrs, "issuer", b, sizeof b);
    assert_non_null(issuer);
    if (strcmp(issuer, "self") != 0) {
        iss = find_cert(issuer);
        assert_non_null(iss);
    }
    X509_set_issuer_name(x, iss ? X509_get_subject_name(iss->cert) : subj);
    X509 *icert = iss ? iss->cert : x;
    if (!v1) {
        if (!want_flag(attrs, "noski")) add_ext(x, icert, NID_subject_key_identifier, "hash");
        if (iss && !want_flag(attrs, "noaki")) add_aki(x, iss->cert);
        if (attr(attrs, "ca", b, sizeof b)) {
            char pl[32];
            snprintf(ext, sizeof ext, "%sCA:%s%s%s",
                     want_flag(attrs, "bcnoncrit") ? "" : "critical,",
                     strcmp(b, "true") == 0 ? "TRUE" : "FALSE",
                     attr(attrs, "pathlen", pl, sizeof pl) ? ",pathlen:" : "",
                     attr(attrs, "pathlen", pl, sizeof pl) ? pl : "");
            add_ext(x, icert, NID_basic_constraints, ext);
        }
        if (attr(attrs, "ku", b, sizeof b))
            add_ext(x, icert, NID_key_usage,
                    strcmp(b, "certsign") == 0 ? "critical,keyCertSign,cRLSign,digitalSignature"
                                               : "critical,digitalSignature");
        if (attr(attrs, "eku", b, sizeof b)) add_ext(x, icert, NID_ext_key_usage, b);
        if (attr(attrs, "san", b, sizeof b)) add_ext(x, icert, NID_subject_alt_name, b);
        if (attr(attrs, "nc", b, sizeof b)) add_ext(x, icert, NID_name_constraints, b);
    }
    const EVP_MD *md =
        attr(attrs, "md", b, sizeof b) && strcmp(b, "sha1") == 0 ? EVP_sha1() : EVP_sha256();
    EVP_PKEY *signer = iss ? iss->key : n->key;
    EVP_PKEY *stranger = NULL;
    if (want_flag(attrs, "badsig")) signer = stranger = make_key("ec256");
    assert_true(X509_sign(x, signer, md) > 0);
    EVP_PKEY_free(stranger);
    n->cert = x;
    ncerts++;
}

/* Splits "a | b | c" in place into at most max fields. */
static int split(char *line, char **f, int max)
{
    int n = 0;
    char *p = line;
    while (n < max) {
        char *bar = strchr(p, '|');
        if (bar) *bar = 0;
        f[n++] = trim(p);
        if (!bar) break;
        p = bar + 1;
    }
    return n;
}

struct setting_ctx {
    struct trust_index *ti;
    struct ident_input in;
    char expect_tenant[64];
    char clientid[128];
};

/* Applies one settings word ("trust=t1:ca:auto,..." etc.) to the case. */
static void apply_setting(struct setting_ctx *s, char *word)
{
    char *eq = strchr(word, '=');
    char *val = eq ? eq + 1 : NULL;
    if (eq) *eq = 0;
    if (strcmp(word, "relaxed") == 0) {
        s->in.require_ca_in_chain = false;
    } else if (strcmp(word, "allowv1") == 0) {
        s->in.allow_v1_leaf = true;
    } else if (strcmp(word, "max") == 0) {
        s->in.max_chain_length = atoi(val);
    } else if (strcmp(word, "at") == 0) {
        s->in.now = t0 + atol(val) * DAY;
    } else if (strcmp(word, "clientid") == 0) {
        snprintf(s->clientid, sizeof s->clientid, "%s", val);
        s->in.client_id = s->clientid;
        s->in.client_id_len = strlen(s->clientid);
    } else if (strcmp(word, "tenant") == 0) {
        snprintf(s->expect_tenant, sizeof s->expect_tenant, "%s", val);
    } else if (strcmp(word, "crlcheck") == 0) {
        assert_int_equal(
            trust_option_set(s->ti, val, "configuration", "crl.offline.check.enabled", "true"), 0);
    } else if (strcmp(word, "trust") == 0 || strcmp(word, "registered") == 0 ||
               strcmp(word, "crl") == 0) {
        char *save = NULL;
        for (char *item = strtok_r(val, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
            char *parts[6] = {0};
            int np = 0;
            char *s2 = NULL;
            for (char *p = strtok_r(item, ":", &s2); p && np < 6; p = strtok_r(NULL, ":", &s2))
                parts[np++] = p;
            assert_true(np >= 2);
            if (strcmp(word, "registered") == 0) {
                assert_int_equal(trust_device_add(s->ti, parts[0], parts[1]), 0);
                continue;
            }
            struct named *c = find_cert(parts[1]);
            assert_non_null(c);
            if (strcmp(word, "crl") == 0) {
                char serial[STORE_SERIAL_MAX];
                assert_int_equal(trust_serial_of(c->cert, serial, sizeof serial), 0);
                assert_int_equal(trust_crl_add(s->ti, parts[0], serial), 0);
                continue;
            }
            bool autoreg = false, disabled = false, pop = false;
            for (int i = 2; i < np; i++) {
                autoreg |= strcmp(parts[i], "auto") == 0;
                disabled |= strcmp(parts[i], "disabled") == 0;
                pop |= strcmp(parts[i], "pop") == 0;
            }
            assert_int_equal(trust_anchor_put(s->ti, parts[0], c->cert, !disabled, autoreg, pop),
                             0);
        }
    } else {
        fail_msg("unknown setting %s", word);
    }
}

/* Runs one case; returns 1 when the decision matches the expectation. */
static int run_case(const char *name, char *chainspec, char *settings, const char *expect)
{
    struct setting_ctx s;
    memset(&s, 0, sizeof s);
    assert_int_equal(trust_new(&s.ti), 0);
    s.in.now = t0;
    s.in.require_ca_in_chain = true;
    STACK_OF(X509) *chain = sk_X509_new_null();
    char *save = NULL;
    int i = 0;
    if (strcmp(chainspec, "-") != 0) {
        for (char *c = strtok_r(chainspec, ",", &save); c; c = strtok_r(NULL, ",", &save), i++) {
            struct named *nc = find_cert(trim(c));
            if (!nc) fail_msg("case %s: unknown cert %s", name, c);
            if (i == 0)
                s.in.leaf = nc->cert;
            else
                sk_X509_push(chain, nc->cert);
        }
    }
    s.in.chain = chain;
    for (char *w = strtok_r(settings, " ", &save); w; w = strtok_r(NULL, " ", &save))
        apply_setting(&s, w);

    struct ident_decision d;
    assert_int_equal(ident_decide(s.ti, &s.in, &d), 0);
    char got[96];
    if (d.accepted)
        snprintf(got, sizeof got, "%s", d.auto_register ? "accepted+register" : "accepted");
    else
        snprintf(got, sizeof got, "%s", ident_reason_str(d.reason));
    int ok = strcmp(got, expect) == 0;
    if (ok && s.expect_tenant[0] && strcmp(s.expect_tenant, d.tenant) != 0) ok = 0;
    if (ok && d.accepted && (d.anchor_fp[0] == 0 || strcmp(d.cn, "") == 0)) ok = 0;
    if (!ok)
        print_error("case \"%s\": expected %s%s%s, got %s (tenant %s)%s%s\n", name, expect,
                    s.expect_tenant[0] ? " tenant " : "", s.expect_tenant, got, d.tenant,
                    d.detail[0] ? ": " : "", d.detail);
    sk_X509_free(chain);
    trust_free(s.ti);
    return ok;
}

static FILE *open_cases(void)
{
    char path[4096];
    const char *dir = getenv("CERTMQ_TEST_DATA");
    if (dir)
        snprintf(path, sizeof path, "%s/policy_cases.txt", dir);
    else {
        snprintf(path, sizeof path, "%s", __FILE__);
        char *slash = strrchr(path, '/');
        if (slash)
            snprintf(slash + 1, sizeof path - (size_t)(slash + 1 - path), "policy_cases.txt");
        else
            snprintf(path, sizeof path, "policy_cases.txt");
    }
    return fopen(path, "r");
}

static void test_policy_cases(void **state)
{
    (void)state;
    FILE *f = open_cases();
    assert_non_null(f);
    char line[1024];
    int cases = 0, failed = 0;
    t0 = time(NULL);
    while (fgets(line, sizeof line, f)) {
        char *l = trim(line);
        if (*l == 0 || *l == '#') continue;
        char *fld[5] = {0};
        int n = split(l, fld, 5);
        if (strcmp(fld[0], "cert") == 0 && n == 3) {
            build_cert(fld[1], fld[2]);
        } else if (strcmp(fld[0], "case") == 0 && n == 5) {
            cases++;
            failed += !run_case(fld[1], fld[2], fld[3], fld[4]);
        } else {
            fail_msg("bad line in policy_cases.txt: %s", l);
        }
    }
    fclose(f);
    print_message("policy: %d cases, %d failed\n", cases, failed);
    assert_true(cases >= 40);
    assert_int_equal(failed, 0);
}

static void test_policy_counters_and_names(void **state)
{
    (void)state;
    for (int r = 0; r < IDENT_REASON_COUNT; r++) {
        assert_non_null(ident_reason_str((enum ident_reason)r));
        assert_string_not_equal(ident_reason_str((enum ident_reason)r), "unknown");
    }
    assert_string_equal(ident_reason_str(IDENT_AMBIGUOUS_TENANT), "ambiguous tenant");
    uint64_t before = ident_counter(IDENT_NOT_REGISTERED);
    struct ident_decision d;
    memset(&d, 0, sizeof d);
    d.reason = IDENT_NOT_REGISTERED;
    snprintf(d.tenant, sizeof d.tenant, "t1");
    snprintf(d.cn, sizeof d.cn, "dev1");
    ident_record(&d);
    ident_record(&d);
    assert_int_equal(ident_counter(IDENT_NOT_REGISTERED), before + 2);
}

static void test_policy_no_leaf_is_no_certificate(void **state)
{
    (void)state;
    struct trust_index *ti = NULL;
    assert_int_equal(trust_new(&ti), 0);
    struct ident_input in = {.now = time(NULL), .require_ca_in_chain = true};
    struct ident_decision d;
    assert_int_equal(ident_decide(ti, &in, &d), 0);
    assert_false(d.accepted);
    assert_int_equal(d.reason, IDENT_NO_CERTIFICATE);
    trust_free(ti);
}

/* Upload-time overlap (certificates from policy_cases.txt, built by the
 * first test): same DER or one issued the other, other tenants only, and
 * whether an overlapping upload was earlier. */
static void test_policy_trust_overlaps(void **state)
{
    (void)state;
    struct trust_index *ti = NULL;
    char others[4][STORE_TENANT_MAX];
    char fp_ca[STORE_FP_MAX], fp_inter[STORE_FP_MAX], fp_ca2[STORE_FP_MAX];
    bool junior = true;
    assert_non_null(find_cert("ca"));
    assert_int_equal(trust_new(&ti), 0);
    assert_int_equal(trust_fingerprint(find_cert("ca")->cert, fp_ca), 0);
    assert_int_equal(trust_fingerprint(find_cert("inter")->cert, fp_inter), 0);
    assert_int_equal(trust_fingerprint(find_cert("ca2")->cert, fp_ca2), 0);
    assert_int_equal(trust_anchor_put(ti, "c", find_cert("ca")->cert, true, true, false), 0);
    assert_int_equal(trust_anchor_put(ti, "c", find_cert("inter")->cert, true, true, false), 0);
    assert_int_equal(trust_anchor_put(ti, "a", find_cert("inter")->cert, true, true, false), 0);
    assert_int_equal(trust_anchor_put(ti, "b", find_cert("ca")->cert, true, true, false), 0);
    assert_int_equal(trust_anchor_put(ti, "b", find_cert("ca2")->cert, true, true, false), 0);
    /* a's intermediate: c's copy and c's root (issuer) and b's root. */
    assert_int_equal(trust_overlaps(ti, "a", fp_inter, others, 4, &junior), 2);
    assert_true(junior);
    assert_true(strcmp(others[0], "c") == 0 || strcmp(others[1], "c") == 0);
    assert_true(strcmp(others[0], "b") == 0 || strcmp(others[1], "b") == 0);
    /* c's root was first: it overlaps a and b but needs no proof. */
    assert_int_equal(trust_overlaps(ti, "c", fp_ca, others, 4, &junior), 2);
    assert_false(junior);
    /* b's root came after c's copy. */
    assert_int_equal(trust_overlaps(ti, "b", fp_ca, others, 1, &junior), 1);
    assert_true(junior);
    /* An unrelated root overlaps nobody; an unknown anchor neither. */
    assert_int_equal(trust_overlaps(ti, "b", fp_ca2, others, 4, &junior), 0);
    assert_false(junior);
    assert_int_equal(trust_overlaps(ti, "a", fp_ca2, others, 4, &junior), 0);
    /* Replacing an anchor (an update) keeps its place in the upload order. */
    assert_int_equal(trust_anchor_put(ti, "c", find_cert("ca")->cert, false, true, false), 0);
    assert_int_equal(trust_overlaps(ti, "c", fp_ca, NULL, 0, &junior), 0);
    assert_false(junior);
    trust_free(ti);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_policy_cases),
        cmocka_unit_test(test_policy_counters_and_names),
        cmocka_unit_test(test_policy_no_leaf_is_no_certificate),
        cmocka_unit_test(test_policy_trust_overlaps),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    for (int i = 0; i < ncerts; i++) {
        X509_free(certs[i].cert);
        EVP_PKEY_free(certs[i].key);
    }
    return rc;
}
