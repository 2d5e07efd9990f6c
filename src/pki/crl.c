/* Revocation: `pki revoke` marks a certificate revoked in the CA's
 * index.txt (openssl ca format) and `pki crl` (also run by revoke) signs a
 * v2 CRL from it with a CRL number and the authority key identifier. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "pki/pki_internal.h"

#define MAX_INDEX_LINES 2000000

struct index {
    struct pki_index_entry *e;
    size_t n;
};

static void index_free(struct index *ix)
{
    free(ix->e);
    ix->e = NULL;
    ix->n = 0;
}

static int index_load(const char *dir, struct index *ix)
{
    char path[4200], *data = NULL;
    size_t len = 0, cap = 0;
    int rc;
    memset(ix, 0, sizeof *ix);
    GUARD(pki_path(path, sizeof path, dir, "index.txt"));
    GUARD(pki_read_file(path, &data, &len));
    for (size_t pos = 0; pos < len;) {
        const char *line = data + pos;
        const char *nl = memchr(line, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - line) : len - pos;
        pos += n + 1;
        if (n == 0) continue;
        if (ix->n == cap) {
            if (cap >= MAX_INDEX_LINES) {
                rc = ERR_TOO_LARGE;
                goto out;
            }
            cap = cap ? cap * 2 : 64;
            struct pki_index_entry *grown = realloc(ix->e, cap * sizeof *grown);
            if (!grown) {
                rc = ERR_NOMEM;
                goto out;
            }
            ix->e = grown;
        }
        if (pki_index_parse_line(line, n, &ix->e[ix->n]) < 0) {
            pki_err("%s line %zu is not in openssl ca format", path, ix->n + 1);
            rc = ERR_MALFORMED;
            goto out;
        }
        ix->n++;
    }
    rc = 0;
out:
    free(data);
    if (rc < 0) index_free(ix);
    return rc;
}

static int index_save(const char *dir, const struct index *ix)
{
    char path[4200], line[1024];
    size_t len = 0;
    int rc = 0;
    char *all = malloc(ix->n * sizeof line + 1);
    if (!all) return ERR_NOMEM;
    for (size_t i = 0; i < ix->n; i++) {
        int n = pki_index_format_line(&ix->e[i], line, sizeof line);
        GUARD_GOTO(rc, n, out);
        memcpy(all + len, line, (size_t)n);
        len += (size_t)n;
    }
    GUARD_GOTO(rc, pki_path(path, sizeof path, dir, "index.txt"), out);
    rc = pki_write_file(path, all, len, 0644, true);
out:
    free(all);
    return rc;
}

/* Reads dir/name (hex), returns it and stores it plus one. */
static int bump_counter(const char *dir, const char *name, BIGNUM **value)
{
    char path[4200], *text = NULL, hex[96];
    size_t len = 0;
    BIGNUM *next = NULL;
    int rc;
    *value = NULL;
    GUARD(pki_path(path, sizeof path, dir, name));
    if (access(path, F_OK) != 0) {
        GUARD(pki_write_file(path, "01\n", 3, 0644, false));
    }
    GUARD(pki_read_file(path, &text, &len));
    rc = pki_serial_parse(text, value);
    if (rc < 0) {
        pki_err("%s does not hold a hex number", path);
        goto out;
    }
    next = BN_dup(*value);
    rc = ERR_NOMEM;
    if (!next || !BN_add_word(next, 1)) goto out;
    GUARD_GOTO(rc, pki_serial_hex(next, hex, sizeof hex - 1), out);
    strcat(hex, "\n");
    rc = pki_write_file(path, hex, strlen(hex), 0644, true);
out:
    BN_free(next);
    free(text);
    if (rc < 0) {
        BN_free(*value);
        *value = NULL;
    }
    return rc;
}

static int add_revoked(X509_CRL *crl, const struct pki_index_entry *e)
{
    char date[64];
    BIGNUM *bn = NULL;
    ASN1_TIME *when = ASN1_TIME_new();
    ASN1_INTEGER *serial = NULL;
    ASN1_ENUMERATED *reason = NULL;
    X509_REVOKED *r = X509_REVOKED_new();
    int rc = ERR_TLS, code = 0;
    snprintf(date, sizeof date, "%s", e->revoked);
    char *comma = strchr(date, ',');
    if (comma) {
        *comma = '\0';
        code = pki_reason_code(comma + 1);
    }
    if (!r || !when || pki_serial_parse(e->serial, &bn) < 0) goto out;
    serial = BN_to_ASN1_INTEGER(bn, NULL);
    if (!serial || !ASN1_TIME_set_string_X509(when, date)) goto out;
    if (!X509_REVOKED_set_serialNumber(r, serial) || !X509_REVOKED_set_revocationDate(r, when))
        goto out;
    if (code > 0) {
        reason = ASN1_ENUMERATED_new();
        if (!reason || !ASN1_ENUMERATED_set(reason, code) ||
            !X509_REVOKED_add1_ext_i2d(r, NID_crl_reason, reason, 0, 0))
            goto out;
    }
    if (!X509_CRL_add0_revoked(crl, r)) goto out;
    r = NULL;
    rc = 0;
out:
    X509_REVOKED_free(r);
    ASN1_ENUMERATED_free(reason);
    ASN1_INTEGER_free(serial);
    ASN1_TIME_free(when);
    BN_free(bn);
    return rc;
}

static int crl_build(struct pki_ca *ca, const struct index *ix, const BIGNUM *number, long days,
                     X509_CRL **out)
{
    X509_CRL *crl = X509_CRL_new();
    ASN1_TIME *t = NULL;
    ASN1_INTEGER *num = NULL;
    X509_EXTENSION *aki = NULL;
    X509V3_CTX ctx;
    int rc = ERR_TLS;
    *out = NULL;
    if (!crl || !X509_CRL_set_version(crl, X509_CRL_VERSION_2) ||
        !X509_CRL_set_issuer_name(crl, X509_get_subject_name(ca->cert)))
        goto out;
    t = X509_gmtime_adj(NULL, 0);
    if (!t || !X509_CRL_set1_lastUpdate(crl, t)) goto out;
    if (!X509_time_adj_ex(t, (int)days, 0, NULL) || !X509_CRL_set1_nextUpdate(crl, t)) goto out;
    for (size_t i = 0; i < ix->n; i++)
        if (ix->e[i].status == 'R') GUARD_GOTO(rc, add_revoked(crl, &ix->e[i]), out);
    rc = ERR_TLS;
    X509V3_set_ctx(&ctx, ca->cert, NULL, NULL, crl, 0);
    aki = X509V3_EXT_conf_nid(NULL, &ctx, NID_authority_key_identifier, "keyid:always");
    num = BN_to_ASN1_INTEGER(number, NULL);
    if (!aki || !num || !X509_CRL_add_ext(crl, aki, -1) ||
        !X509_CRL_add1_ext_i2d(crl, NID_crl_number, num, 0, 0))
        goto out;
    if (!X509_CRL_sort(crl) || !X509_CRL_sign(crl, ca->key, pki_key_md(ca->key))) goto out;
    *out = crl;
    crl = NULL;
    rc = 0;
out:
    X509_EXTENSION_free(aki);
    ASN1_INTEGER_free(num);
    ASN1_TIME_free(t);
    X509_CRL_free(crl);
    return rc;
}

int pki_crl_write(struct pki_ca *ca, long days, X509_CRL **out)
{
    struct index ix;
    BIGNUM *number = NULL;
    X509_CRL *crl = NULL;
    BIO *bio = NULL;
    char path[4200], *mem;
    int rc;
    *out = NULL;
    GUARD(index_load(ca->dir, &ix));
    GUARD_GOTO(rc, bump_counter(ca->dir, "crlnumber", &number), out);
    GUARD_GOTO(rc, crl_build(ca, &ix, number, days, &crl), out);
    rc = ERR_TLS;
    bio = BIO_new(BIO_s_mem());
    if (!bio || !PEM_write_bio_X509_CRL(bio, crl)) goto out;
    long n = BIO_get_mem_data(bio, &mem);
    GUARD_GOTO(rc, pki_path(path, sizeof path, ca->dir, "crl.pem"), out);
    GUARD_GOTO(rc, pki_write_file(path, mem, (size_t)n, 0644, true), out);
    *out = crl;
    crl = NULL;
out:
    if (rc < 0 && ERR_peek_error()) pki_err("cannot sign the CRL of %s", ca->dir);
    BIO_free(bio);
    X509_CRL_free(crl);
    BN_free(number);
    index_free(&ix);
    return rc;
}

static void print_crl(const struct pki_args *a, const struct pki_ca *ca, X509_CRL *crl)
{
    char next[32], num[96] = "?";
    int crit = 0;
    ASN1_INTEGER *n = X509_CRL_get_ext_d2i(crl, NID_crl_number, &crit, NULL);
    BIGNUM *bn = n ? ASN1_INTEGER_to_BN(n, NULL) : NULL;
    if (bn) ignore_result(pki_serial_hex(bn, num, sizeof num));
    BN_free(bn);
    ASN1_INTEGER_free(n);
    pki_time_iso(X509_CRL_get0_nextUpdate(crl), next, sizeof next);
    int count = sk_X509_REVOKED_num(X509_CRL_get_REVOKED(crl));
    if (a->json) {
        json_t *o = json_pack("{s:s+, s:s, s:i, s:s}", "crl", ca->dir, "/crl.pem", "crl_number",
                              num, "revoked", (json_int_t)count, "next_update", next);
        if (o) pki_json_print(o);
        return;
    }
    printf("CRL %s/crl.pem: number %s, %d revoked, next update due %s\n", ca->dir, num, count,
           next);
}

int pki_cmd_crl(struct pki_args *a)
{
    struct pki_ca ca = {.lock_fd = -1};
    struct pki_pass pass = {.file = a->pass_file, .env = "CERTMQ_PKI_PASS", .label = a->ca};
    X509_CRL *crl = NULL;
    int rc;
    GUARD_GOTO(rc, pki_ca_open(a->ca, true, &pass, &ca), out);
    GUARD_GOTO(rc, pki_crl_write(&ca, a->days > 0 ? a->days : 30, &crl), out);
    print_crl(a, &ca, crl);
out:
    X509_CRL_free(crl);
    pki_ca_close(&ca);
    return rc < 0 ? PKI_EXIT_FAIL : PKI_EXIT_OK;
}

/* The serial to revoke, from --serial or from --cert (which must have been
 * issued by this CA). */
static int revoke_target(const struct pki_args *a, const struct pki_ca *ca, BIGNUM **serial)
{
    STACK_OF(X509) *certs = NULL;
    *serial = NULL;
    if (a->serial) {
        if (pki_serial_parse(a->serial, serial) < 0) {
            pki_err("--serial %s is not a hex serial number (example: --serial 1A2B3C)", a->serial);
            return ERR_INVALID;
        }
        return 0;
    }
    GUARD(pki_certs_load(a->certs[0], &certs));
    X509 *x = sk_X509_value(certs, 0);
    int rc = 0;
    if (X509_check_issued(ca->cert, x) != X509_V_OK) {
        pki_err("%s was not issued by the CA in %s", a->certs[0], a->ca);
        rc = ERR_NOT_FOUND;
    } else {
        *serial = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
        if (!*serial) rc = ERR_NOMEM;
    }
    sk_X509_pop_free(certs, X509_free);
    return rc;
}

static int mark_revoked(struct index *ix, const BIGNUM *serial, int reason, const char *dir,
                        struct pki_index_entry **hit)
{
    ASN1_TIME *now = X509_gmtime_adj(NULL, 0);
    int rc = ERR_NOT_FOUND;
    *hit = NULL;
    if (!now) return ERR_NOMEM;
    for (size_t i = 0; i < ix->n; i++) {
        BIGNUM *bn = NULL;
        if (pki_serial_parse(ix->e[i].serial, &bn) < 0) continue;
        bool same = BN_cmp(bn, serial) == 0;
        BN_free(bn);
        if (!same) continue;
        *hit = &ix->e[i];
        if (ix->e[i].status == 'R') {
            pki_err("serial %s (%s) is already revoked", ix->e[i].serial, ix->e[i].subject);
            rc = ERR_CONFLICT;
            goto out;
        }
        ix->e[i].status = 'R';
        snprintf(ix->e[i].revoked, sizeof ix->e[i].revoked, "%.*s%s%s", ASN1_STRING_length(now),
                 (const char *)ASN1_STRING_get0_data(now), reason > 0 ? "," : "",
                 reason > 0 ? pki_reason_name(reason) : "");
        rc = 0;
        goto out;
    }
    char hex[96] = "?";
    ignore_result(pki_serial_hex(serial, hex, sizeof hex));
    pki_err("serial %s is not in %s/index.txt: this CA did not issue it", hex, dir);
out:
    ASN1_TIME_free(now);
    return rc;
}

int pki_cmd_revoke(struct pki_args *a)
{
    struct pki_ca ca = {.lock_fd = -1};
    struct pki_pass pass = {.file = a->pass_file, .env = "CERTMQ_PKI_PASS", .label = a->ca};
    struct index ix = {0};
    struct pki_index_entry *hit = NULL;
    BIGNUM *serial = NULL;
    X509_CRL *crl = NULL;
    int rc, reason = 0;
    if (!!a->serial == (a->ncerts > 0)) {
        pki_err("give exactly one of --serial S or --cert FILE");
        return PKI_EXIT_USAGE;
    }
    if (a->reason && (reason = pki_reason_code(a->reason)) < 0) {
        pki_err("unknown --reason %s; use keyCompromise, CACompromise, affiliationChanged, "
                "superseded, cessationOfOperation or unspecified",
                a->reason);
        return PKI_EXIT_USAGE;
    }
    /* The key is loaded first: a revocation without its CRL helps no one. */
    GUARD_GOTO(rc, pki_ca_open(a->ca, true, &pass, &ca), out);
    GUARD_GOTO(rc, revoke_target(a, &ca, &serial), out);
    GUARD_GOTO(rc, index_load(ca.dir, &ix), out);
    GUARD_GOTO(rc, mark_revoked(&ix, serial, reason, ca.dir, &hit), out);
    GUARD_GOTO(rc, index_save(ca.dir, &ix), out);
    GUARD_GOTO(rc, pki_crl_write(&ca, a->days > 0 ? a->days : 30, &crl), out);
    if (a->json) {
        json_t *o =
            json_pack("{s:s, s:s, s:s, s:s+}", "serial", hit->serial, "subject", hit->subject,
                      "reason", pki_reason_name(reason), "crl", ca.dir, "/crl.pem");
        if (o) pki_json_print(o);
    } else {
        printf("revoked serial %s (%s); %s/crl.pem updated: publish it to the server\n",
               hit->serial, hit->subject, ca.dir);
    }
out:
    X509_CRL_free(crl);
    BN_free(serial);
    index_free(&ix);
    pki_ca_close(&ca);
    return rc < 0 ? PKI_EXIT_FAIL : PKI_EXIT_OK;
}
