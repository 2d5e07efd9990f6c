/* End-entity issuance: `pki issue device|server|batch` and the server's
 * development-PKI bootstrap. One issuer context (CA key, key generator, the
 * CA chain as PEM) is set up once and reused, so a batch pays only for the
 * per-device key, signature and files. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>

#include "pki/pki.h"
#include "pki/pki_internal.h"

struct issuer {
    struct pki_ca *ca;
    struct pki_keygen *g;
    char *chain_pem; /* the CA chain (CA up to the root) as PEM */
    size_t chain_len;
};

static void issuer_free(struct issuer *is)
{
    pki_keygen_free(is->g);
    free(is->chain_pem);
    memset(is, 0, sizeof *is);
}

static int issuer_init(struct issuer *is, struct pki_ca *ca, const struct pki_keyspec *ks)
{
    int rc;
    memset(is, 0, sizeof *is);
    is->ca = ca;
    GUARD_GOTO(rc, pki_keygen_new(ks, &is->g), out);
    for (int i = 0; i < sk_X509_num(ca->chain); i++) {
        char *p = NULL;
        size_t n = 0;
        GUARD_GOTO(rc, pki_cert_pem(sk_X509_value(ca->chain, i), &p, &n), out);
        char *grown = realloc(is->chain_pem, is->chain_len + n + 1);
        if (!grown) {
            free(p);
            rc = ERR_NOMEM;
            goto out;
        }
        is->chain_pem = grown;
        memcpy(is->chain_pem + is->chain_len, p, n + 1);
        is->chain_len += n;
        free(p);
    }
out:
    if (rc < 0) issuer_free(is);
    return rc;
}

static int paths_for(const struct pki_issue_opts *o, struct pki_issued *res)
{
    char base[4096];
    const char *name = o->name ? o->name : o->cn;
    GUARD(pki_path(base, sizeof base, o->outdir, name));
    memset(res, 0, sizeof *res);
#define PATH(field, suffix)                                                                        \
    ENSURE(snprintf(res->field, sizeof res->field, "%s%s", base, suffix) < (int)sizeof res->field, \
           ERR_TOO_LARGE)
    PATH(key_path, ".key");
    PATH(cert_path, ".pem");
    if (!o->pem_is_chain) PATH(chain_path, ".chain.pem");
    if (o->p12_pass) PATH(p12_path, ".p12");
#undef PATH
    if (o->force) return 0;
    const char *all[] = {res->key_path, res->cert_path, res->chain_path, res->p12_path};
    for (size_t i = 0; i < 4; i++) {
        if (all[i][0] && access(all[i], F_OK) == 0) {
            pki_err("%s exists; remove it, choose another --out, or pass --force", all[i]);
            return ERR_EXISTS;
        }
    }
    return 0;
}

/* Makes one key and certificate with the given serial and writes its files.
 * On success *cert_out is the new certificate (caller frees). */
static int issue_files(struct issuer *is, const struct pki_issue_opts *o, const BIGNUM *serial,
                       X509 **cert_out, struct pki_issued *res)
{
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    char *kpem = NULL, *cpem = NULL, *chain = NULL, *p12 = NULL;
    size_t klen = 0, clen = 0, p12len = 0;
    int rc;
    *cert_out = NULL;
    GUARD_GOTO(rc, paths_for(o, res), out);
    GUARD_GOTO(rc, pki_keygen_next(is->g, &key), out);
    struct pki_cert_req rq = {.profile = o->profile,
                              .cn = o->cn,
                              .key = key,
                              .days = o->days,
                              .pathlen = -1,
                              .san = o->san,
                              .nsan = o->nsan,
                              .serial = serial,
                              .issuer = is->ca->cert,
                              .issuer_key = is->ca->key};
    GUARD_GOTO(rc, pki_cert_make(&rq, &cert), out);
    GUARD_GOTO(rc, pki_key_pem(key, NULL, &kpem, &klen), out);
    GUARD_GOTO(rc, pki_cert_pem(cert, &cpem, &clen), out);
    chain = malloc(clen + is->chain_len + 1);
    if (!chain) {
        rc = ERR_NOMEM;
        goto out;
    }
    memcpy(chain, cpem, clen);
    memcpy(chain + clen, is->chain_pem, is->chain_len + 1);
    GUARD_GOTO(rc, pki_write_file(res->key_path, kpem, klen, 0600, o->force), out);
    if (o->pem_is_chain) {
        GUARD_GOTO(rc, pki_write_file(res->cert_path, chain, clen + is->chain_len, 0644, o->force),
                   out);
    } else {
        GUARD_GOTO(rc, pki_write_file(res->cert_path, cpem, clen, 0644, o->force), out);
        GUARD_GOTO(rc, pki_write_file(res->chain_path, chain, clen + is->chain_len, 0644, o->force),
                   out);
    }
    if (o->p12_pass) {
        GUARD_GOTO(rc,
                   pki_p12_keystore(key, cert, is->ca->chain, "devicekeyentry", o->p12_pass, &p12,
                                    &p12len),
                   out);
        GUARD_GOTO(rc, pki_write_file(res->p12_path, p12, p12len, 0600, o->force), out);
    }
    ignore_result(pki_serial_hex(serial, res->serial, sizeof res->serial));
    pki_fingerprint(cert, EVP_sha1(), res->sha1, sizeof res->sha1);
    pki_time_iso(X509_get0_notAfter(cert), res->not_after, sizeof res->not_after);
    pki_key_describe(key, res->key_type, sizeof res->key_type);
    *cert_out = cert;
    cert = NULL;
out:
    if (rc < 0 && rc != ERR_EXISTS && rc != ERR_IO)
        pki_err("cannot issue the certificate for %s", o->cn);
    if (kpem) OPENSSL_cleanse(kpem, klen);
    free(kpem);
    free(cpem);
    free(chain);
    free(p12);
    X509_free(cert);
    EVP_PKEY_free(key);
    return rc;
}

int pki_issue_one(struct pki_ca *ca, const struct pki_issue_opts *o, struct pki_issued *res)
{
    struct issuer is;
    BIGNUM *serial = NULL;
    X509 *cert = NULL;
    STACK_OF(X509) *rec = NULL;
    int rc;
    GUARD(issuer_init(&is, ca, o->ks));
    GUARD_GOTO(rc, paths_for(o, res), out);
    GUARD_GOTO(rc, pki_ca_take_serials(ca, 1, &serial), out);
    GUARD_GOTO(rc, issue_files(&is, o, serial, &cert, res), out);
    rec = sk_X509_new_null();
    if (!rec || !sk_X509_push(rec, cert)) {
        rc = ERR_NOMEM;
        goto out;
    }
    rc = pki_ca_record(ca, rec);
out:
    sk_X509_free(rec);
    X509_free(cert);
    BN_free(serial);
    issuer_free(&is);
    return rc;
}

/* --- commands --- */

static int open_signing_ca(const struct pki_args *a, struct pki_ca *ca)
{
    struct pki_pass pass = {.file = a->pass_file, .env = "CERTMQ_PKI_PASS", .label = a->ca};
    return pki_ca_open(a->ca, true, &pass, ca);
}

static int ensure_outdir(const char *dir)
{
    struct stat st;
    if (mkdir(dir, 0755) < 0 && (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))) {
        pki_err("cannot use --out %s: not a directory that can be created", dir);
        return ERR_IO;
    }
    return 0;
}

static void print_issued(const struct pki_args *a, const char *what, const char *cn,
                         const struct pki_issued *r)
{
    if (a->json) {
        json_t *o =
            json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "kind", what, "cn", cn, "serial",
                      r->serial, "sha1", r->sha1, "not_after", r->not_after, "key_type",
                      r->key_type, "key", r->key_path, "certificate", r->cert_path);
        if (!o) return;
        if (r->chain_path[0]) json_object_set_new(o, "chain", json_string(r->chain_path));
        if (r->p12_path[0]) json_object_set_new(o, "p12", json_string(r->p12_path));
        pki_json_print(o);
        return;
    }
    printf("%s certificate for \"%s\" (serial %s, %s, valid until %s)\n", what, cn, r->serial,
           r->key_type, r->not_after);
    printf("  key          %s  (mode 0600, not encrypted)\n", r->key_path);
    printf("  certificate  %s\n", r->cert_path);
    if (r->chain_path[0])
        printf("  chain        %s  (certificate, then every CA up to the root)\n", r->chain_path);
    if (r->p12_path[0]) printf("  keystore     %s  (PKCS#12, alias devicekeyentry)\n", r->p12_path);
    printf("  sha1         %s\n", r->sha1);
}

/* --key and --p12/--p12-pass of the device commands; explains a refusal. */
static int device_key_options(const struct pki_args *a, struct pki_keyspec *ks,
                              const char **p12_pass)
{
    if (pki_keyspec_parse(a->key, ks) < 0) {
        pki_err("unknown --key %s; use rsa:2048, rsa:3072, rsa:4096, ec:P-256 or ec:P-384", a->key);
        return ERR_INVALID;
    }
    *p12_pass = a->p12 ? pki_p12_pass(a) : NULL;
    if (a->p12 && !*p12_pass) {
        pki_err("--p12 needs a keystore password: give --p12-pass PASS or set "
                "CERTMQ_PKI_P12_PASS (there is no default password)");
        return ERR_INVALID;
    }
    return 0;
}

int pki_cmd_issue_device(struct pki_args *a)
{
    struct pki_ca ca = {.lock_fd = -1};
    struct pki_keyspec ks;
    struct pki_issued res;
    const char *why = "";
    int rc;
    if (pki_id_check(a->cn, &why) < 0) {
        const char *broker = pki_id_broker_reason(a->cn);
        pki_err("refusing device id \"%s\": it %s%s%s%s", a->cn, why,
                *broker ? " (the broker would refuse it: \"" : "", broker, *broker ? "\")" : "");
        return PKI_EXIT_FAIL;
    }
    const char *p12_pass;
    if (device_key_options(a, &ks, &p12_pass) < 0) return PKI_EXIT_USAGE;
    const char *outdir = a->out ? a->out : ".";
    GUARD_GOTO(rc, ensure_outdir(outdir), out);
    GUARD_GOTO(rc, open_signing_ca(a, &ca), out);
    struct pki_issue_opts o = {.profile = PKI_PROFILE_DEVICE,
                               .cn = a->cn,
                               .ks = &ks,
                               .days = a->days > 0 ? a->days : 365,
                               .outdir = outdir,
                               .p12_pass = p12_pass,
                               .force = a->force};
    GUARD_GOTO(rc, pki_issue_one(&ca, &o, &res), out);
    print_issued(a, "device", a->cn, &res);
    if (!a->json) printf("MQTT ClientId: %s (or d:%s)\n", a->cn, a->cn);
out:
    pki_ca_close(&ca);
    return rc < 0 ? PKI_EXIT_FAIL : PKI_EXIT_OK;
}

/* The SAN list of a server certificate: --san as given, plus the CN itself
 * when it is a host name or address not already listed (clients match
 * subjectAltName only). */
static int server_sans(const struct pki_args *a, struct pki_san *san, size_t *n)
{
    struct pki_san cn_san;
    size_t one = 0;
    const char *why = "";
    *n = 0;
    if (a->san && pki_san_parse(a->san, san, PKI_MAX_SAN - 1, n, &why) < 0) {
        pki_err("bad --san \"%s\": %s (example: --san DNS:broker.example.com,IP:10.0.0.5)", a->san,
                why);
        return ERR_INVALID;
    }
    if (pki_san_parse(a->cn, &cn_san, 1, &one, &why) < 0) {
        if (*n == 0) {
            pki_err("the CN \"%s\" is not a host name or address; give the names clients "
                    "connect to with --san DNS:NAME,IP:ADDR",
                    a->cn);
            return ERR_INVALID;
        }
        return 0;
    }
    for (size_t i = 0; i < *n; i++)
        if (san[i].type == cn_san.type && san[i].len == cn_san.len &&
            !memcmp(san[i].type == PKI_SAN_DNS ? (const void *)san[i].dns : san[i].ip,
                    cn_san.type == PKI_SAN_DNS ? (const void *)cn_san.dns : cn_san.ip, cn_san.len))
            return 0;
    memmove(san + 1, san, *n * sizeof *san);
    san[0] = cn_san;
    (*n)++;
    return 0;
}

int pki_cmd_issue_server(struct pki_args *a)
{
    struct pki_ca ca = {.lock_fd = -1};
    struct pki_keyspec ks;
    struct pki_issued res;
    struct pki_san san[PKI_MAX_SAN];
    size_t nsan = 0;
    int rc;
    size_t cnlen = strlen(a->cn);
    if (cnlen == 0 || cnlen > PKI_CN_MAX || strchr(a->cn, '/')) {
        pki_err("refusing server name \"%s\": it must be 1-64 bytes without '/'", a->cn);
        return PKI_EXIT_FAIL;
    }
    if (pki_keyspec_parse(a->key, &ks) < 0) {
        pki_err("unknown --key %s; use rsa:2048, rsa:3072, rsa:4096, ec:P-256 or ec:P-384", a->key);
        return PKI_EXIT_USAGE;
    }
    if (server_sans(a, san, &nsan) < 0) return PKI_EXIT_USAGE;
    const char *outdir = a->out ? a->out : ".";
    GUARD_GOTO(rc, ensure_outdir(outdir), out);
    GUARD_GOTO(rc, open_signing_ca(a, &ca), out);
    struct pki_issue_opts o = {.profile = PKI_PROFILE_SERVER,
                               .cn = a->cn,
                               .ks = &ks,
                               .days = a->days > 0 ? a->days : 825,
                               .san = san,
                               .nsan = nsan,
                               .outdir = outdir,
                               .force = a->force};
    GUARD_GOTO(rc, pki_issue_one(&ca, &o, &res), out);
    print_issued(a, "server", a->cn, &res);
out:
    pki_ca_close(&ca);
    return rc < 0 ? PKI_EXIT_FAIL : PKI_EXIT_OK;
}

static void progress(long done, long total)
{
    int width = 40, fill = (int)(done * width / total);
    fprintf(stderr, "\r[%.*s%*s] %ld/%ld", fill, "########################################",
            width - fill, "", done, total);
    if (done == total) fputc('\n', stderr);
}

/* The bulk-registration CSV the server's upload accepts: one certificate
 * device per row, AUTH_TYPE=CERTIFICATES, no CREDENTIALS column. */
static int write_csv(const char *path, const char *prefix, long start, long count, int width,
                     bool force)
{
    size_t cap = 64 + (size_t)count * (2 * (strlen(prefix) + 24) + 16), len = 0;
    char *csv = malloc(cap);
    int rc;
    if (!csv) return ERR_NOMEM;
    len += (size_t)snprintf(csv, cap, "ID;AUTH_TYPE;NAME\n");
    for (long i = start; i < start + count; i++)
        len += (size_t)snprintf(csv + len, cap - len, "%s%0*ld;CERTIFICATES;%s%0*ld\n", prefix,
                                width, i, prefix, width, i);
    rc = pki_write_file(path, csv, len, 0644, force);
    free(csv);
    return rc;
}

static int batch_id(char *out, size_t cap, const char *prefix, int width, long n)
{
    int len = snprintf(out, cap, "%s%0*ld", prefix, width, n);
    return len > 0 && (size_t)len < cap ? 0 : ERR_TOO_LARGE;
}

static int batch_width(long last)
{
    int w = 1;
    for (long v = last; v >= 10; v /= 10) w++;
    return w < 4 ? 4 : w;
}

/* Issues count devices prefix<start..>; records what was issued even when
 * a later device fails. */
static int batch_run(const struct pki_args *a, struct pki_ca *ca, const struct pki_keyspec *ks,
                     const char *outdir, const char *p12_pass, int width, long *done)
{
    struct issuer is;
    BIGNUM *serial = NULL;
    STACK_OF(X509) *rec = sk_X509_new_null();
    struct pki_issued res;
    bool bar = isatty(STDERR_FILENO) && !a->json;
    int rc;
    *done = 0;
    if (!rec) return ERR_NOMEM;
    GUARD_GOTO(rc, issuer_init(&is, ca, ks), out_rec);
    GUARD_GOTO(rc, pki_ca_take_serials(ca, a->count, &serial), out);
    for (long i = 0; i < a->count; i++) {
        char id[PKI_CN_MAX + 32];
        X509 *cert = NULL;
        GUARD_GOTO(rc, batch_id(id, sizeof id, a->prefix, width, a->start + i), out);
        struct pki_issue_opts o = {.profile = PKI_PROFILE_DEVICE,
                                   .cn = id,
                                   .ks = ks,
                                   .days = a->days > 0 ? a->days : 365,
                                   .outdir = outdir,
                                   .p12_pass = p12_pass,
                                   .force = a->force};
        GUARD_GOTO(rc, issue_files(&is, &o, serial, &cert, &res), out);
        if (!sk_X509_push(rec, cert)) {
            X509_free(cert);
            rc = ERR_NOMEM;
            goto out;
        }
        (*done)++;
        if (!BN_add_word(serial, 1)) {
            rc = ERR_NOMEM;
            goto out;
        }
        if (bar && ((i + 1) % 25 == 0 || i + 1 == a->count)) progress(i + 1, a->count);
    }
out:
    if (sk_X509_num(rec) > 0) {
        int rc2 = pki_ca_record(ca, rec);
        if (rc == 0) rc = rc2;
    }
    BN_free(serial);
    issuer_free(&is);
out_rec:
    sk_X509_pop_free(rec, X509_free);
    return rc;
}

int pki_cmd_issue_batch(struct pki_args *a)
{
    struct pki_ca ca = {.lock_fd = -1};
    struct pki_keyspec ks;
    char csv[4200], first[PKI_CN_MAX + 32], last[PKI_CN_MAX + 32];
    const char *why = "";
    struct timespec t0, t1;
    long done = 0;
    int rc;
    if (a->count <= 0 || a->count > 1000000) {
        pki_err("--count must be between 1 and 1000000");
        return PKI_EXIT_USAGE;
    }
    if (a->start < 0) a->start = 1;
    int width = batch_width(a->start + a->count - 1);
    if (batch_id(first, sizeof first, a->prefix, width, a->start) < 0 ||
        batch_id(last, sizeof last, a->prefix, width, a->start + a->count - 1) < 0) {
        pki_err("refusing --prefix \"%s\": the device ids would be longer than 64 bytes",
                a->prefix);
        return PKI_EXIT_FAIL;
    }
    if (pki_id_check(first, &why) < 0 || pki_id_check(last, &why) < 0) {
        const char *broker = pki_id_broker_reason(last);
        pki_err("refusing --prefix \"%s\": the device ids it makes (%s) %s%s%s%s", a->prefix, last,
                why, *broker ? " (the broker would refuse them: \"" : "", broker,
                *broker ? "\")" : "");
        return PKI_EXIT_FAIL;
    }
    const char *p12_pass;
    if (device_key_options(a, &ks, &p12_pass) < 0) return PKI_EXIT_USAGE;
    const char *outdir = a->out ? a->out : ".";
    GUARD_GOTO(rc, ensure_outdir(outdir), out);
    if (a->csv)
        snprintf(csv, sizeof csv, "%s", a->csv);
    else
        GUARD_GOTO(rc, pki_path(csv, sizeof csv, outdir, "bulk-registration.csv"), out);
    if (!a->force && access(csv, F_OK) == 0) {
        pki_err("%s exists; remove it, give --csv FILE, or pass --force", csv);
        rc = ERR_EXISTS;
        goto out;
    }
    GUARD_GOTO(rc, open_signing_ca(a, &ca), out);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    rc = batch_run(a, &ca, &ks, outdir, p12_pass, width, &done);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (rc < 0) {
        pki_err("stopped after %ld of %ld devices; those are recorded in %s/index.txt", done,
                a->count, a->ca);
        goto out;
    }
    GUARD_GOTO(rc, write_csv(csv, a->prefix, a->start, a->count, width, a->force), out);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    if (a->json) {
        json_t *o = json_pack("{s:i, s:s, s:s, s:s, s:s, s:f, s:b}", "count", (json_int_t)done,
                              "first", first, "last", last, "out", outdir, "csv", csv, "seconds",
                              secs, "p12", p12_pass != NULL);
        if (o) pki_json_print(o);
    } else {
        printf("issued %ld device certificates %s .. %s in %.2f s\n", done, first, last, secs);
        printf("  files        %s/<id>.key, <id>.pem, <id>.chain.pem%s\n", outdir,
               p12_pass ? ", <id>.p12" : "");
        printf("  bulk CSV     %s  (upload it to register the devices)\n", csv);
    }
out:
    pki_ca_close(&ca);
    return rc < 0 ? PKI_EXIT_FAIL : PKI_EXIT_OK;
}

int pki_dev_bootstrap(const char *dir)
{
    char path[4200];
    struct pki_ca ca = {.lock_fd = -1};
    struct pki_pass pass = {.env = "CERTMQ_PKI_PASS", .label = dir};
    struct pki_issued res;
    struct pki_keyspec ks;
    struct pki_san san[3];
    size_t nsan = 0;
    const char *why = "";
    int rc;
    GUARD(pki_keyspec_parse("ec:P-256", &ks));
    GUARD(pki_path(path, sizeof path, dir, "ca.pem"));
    if (access(path, F_OK) != 0) {
        struct pki_ca_init in = {
            .dir = dir, .cn = "certmq dev CA", .ks = ks, .days = 7300, .pathlen = -1};
        GUARD(pki_ca_create(&in, NULL));
    }
    GUARD(pki_path(path, sizeof path, dir, "server.pem"));
    if (access(path, F_OK) == 0) return 0;
    GUARD(pki_san_parse("DNS:localhost,IP:127.0.0.1,IP:::1", san, 3, &nsan, &why));
    GUARD(pki_ca_open(dir, true, &pass, &ca));
    struct pki_issue_opts o = {.profile = PKI_PROFILE_SERVER,
                               .cn = "localhost",
                               .ks = &ks,
                               .days = 825,
                               .san = san,
                               .nsan = nsan,
                               .outdir = dir,
                               .name = "server",
                               .pem_is_chain = true,
                               .force = true};
    rc = pki_issue_one(&ca, &o, &res);
    pki_ca_close(&ca);
    return rc;
}
