/* `certmq pki enroll` and `certmq pki reenroll`: the device side of EST for
 * scripts and factories. The key is made here and never sent; the CSR goes
 * to the server's /.well-known/est[/TENANT]/simple(re)enroll and the chain
 * it answers is written beside the key. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "pki/pki_internal.h"

/* A CSR for cn signed by k, as base64 DER with line breaks (*out: free()). */
static int csr_b64(EVP_PKEY *k, const char *cn, char **out, size_t *len)
{
    X509_REQ *req = X509_REQ_new();
    unsigned char *der = NULL;
    int rc = ERR_INTERNAL, n = 0;
    if (!req ||
        !X509_NAME_add_entry_by_txt(X509_REQ_get_subject_name(req), "CN", MBSTRING_UTF8,
                                    (const unsigned char *)cn, -1, -1, 0) ||
        X509_REQ_set_pubkey(req, k) != 1 || X509_REQ_sign(req, k, pki_key_md(k)) <= 0 ||
        (n = i2d_X509_REQ(req, &der)) <= 0)
        goto out;
    *out = malloc((size_t)n * 2 + 8);
    if (!*out) {
        rc = ERR_NOMEM;
        goto out;
    }
    *len = (size_t)EVP_EncodeBlock((unsigned char *)*out, der, n);
    rc = 0;
out:
    OPENSSL_free(der);
    X509_REQ_free(req);
    return rc;
}

/* "/.well-known/est[/tenant]/<op>" */
static void est_path(const struct pki_args *a, const char *op, char *out, size_t cap)
{
    snprintf(out, cap, "/.well-known/est%s%s/%s", a->tenant ? "/" : "", a->tenant ? a->tenant : "",
             op);
}

/* Sends the request; on 200 *certs gets the answered chain, else the
 * server's status and message are printed. */
static int exchange(const struct pki_est_req *rq, STACK_OF(X509) * *certs)
{
    char *resp = NULL;
    const char *body = NULL;
    size_t len = 0, blen = 0;
    int status = 0;
    GUARD(pki_est_post(rq, &resp, &len));
    int rc = pki_http_split(resp, len, &status, &body, &blen);
    if (rc < 0) {
        pki_err("the server's answer is not HTTP");
    } else if (status != 200) {
        pki_err("the server refused (HTTP %d): %.*s", status, (int)(blen > 400 ? 400 : blen), body);
        rc = ERR_AUTH;
    } else if ((rc = pki_pkcs7_certs(body, blen, certs)) < 0) {
        pki_err("the server's answer holds no PKCS#7 certificates");
    }
    free(resp);
    return rc;
}

/* Before anything is asked of the server (a token works once): DIR exists
 * (made 0700 when absent) and, unless --force, holds none of the files. */
static int out_ready(const struct pki_args *a, const char *id)
{
    static const char *const ext[] = {".key", ".pem", ".chain.pem"};
    char path[4096], name[128];
    if (mkdir(a->out, 0700) != 0 && errno != EEXIST) {
        pki_err("cannot make %s: %s", a->out, strerror(errno));
        return ERR_IO;
    }
    for (size_t i = 0; !a->force && i < 3; i++) {
        snprintf(name, sizeof name, "%s%s", id, ext[i]);
        GUARD(pki_path(path, sizeof path, a->out, name));
        if (access(path, F_OK) == 0) {
            pki_err("%s exists (use --force to overwrite)", path);
            return ERR_EXISTS;
        }
    }
    return 0;
}

/* Writes DIR/ID.key (0600), DIR/ID.pem and DIR/ID.chain.pem. */
static int write_out(const struct pki_args *a, const char *id, EVP_PKEY *k, STACK_OF(X509) * certs)
{
    char path[4096], name[128], *pem = NULL;
    size_t len = 0;
    int rc = 0;
    snprintf(name, sizeof name, "%s.key", id);
    GUARD(pki_path(path, sizeof path, a->out, name));
    GUARD(pki_key_pem(k, NULL, &pem, &len));
    rc = pki_write_file(path, pem, len, 0600, a->force);
    OPENSSL_cleanse(pem, len);
    free(pem);
    GUARD(rc);
    BIO *chain = BIO_new(BIO_s_mem());
    ENSURE(chain, ERR_NOMEM);
    for (int i = 0; rc == 0 && i < sk_X509_num(certs); i++) {
        GUARD_GOTO(rc, pki_cert_pem(sk_X509_value(certs, i), &pem, &len), out);
        if (i == 0) {
            snprintf(name, sizeof name, "%s.pem", id);
            if ((rc = pki_path(path, sizeof path, a->out, name)) == 0)
                rc = pki_write_file(path, pem, len, 0644, a->force);
        }
        BIO_write(chain, pem, (int)len);
        free(pem);
    }
    char *data = NULL;
    long n = BIO_get_mem_data(chain, &data);
    snprintf(name, sizeof name, "%s.chain.pem", id);
    if (rc == 0 && (rc = pki_path(path, sizeof path, a->out, name)) == 0)
        rc = pki_write_file(path, data, (size_t)n, 0644, a->force);
out:
    BIO_free(chain);
    return rc;
}

static void report(const struct pki_args *a, const char *id, STACK_OF(X509) * certs)
{
    X509 *x = sk_X509_value(certs, 0);
    char until[40];
    pki_time_iso(X509_get0_notAfter(x), until, sizeof until);
    if (a->json) {
        pki_json_print(json_pack("{s:s, s:s, s:s, s:s}", "id", id, "notAfter", until, "chain",
                                 a->out, "certificates", "written"));
        return;
    }
    printf("enrolled %s: certificate valid until %s\n  %s/%s.key  %s/%s.pem  %s/%s.chain.pem\n", id,
           until, a->out, id, a->out, id, a->out, id);
}

/* The parsed --url; prints why on failure. */
static int url_of(const struct pki_args *a, struct pki_url *u)
{
    if (pki_url_parse(a->url, strlen(a->url), u) == 0) return 0;
    pki_err("--url must be http(s)://host[:port], not \"%s\"", a->url);
    return ERR_INVALID;
}

/* A fresh key (--key SPEC, default ec:P-256). */
static int new_key(const char *spec, EVP_PKEY **k)
{
    struct pki_keyspec ks;
    struct pki_keygen *g = NULL;
    GUARD(pki_keyspec_parse(spec, &ks));
    GUARD(pki_keygen_new(&ks, &g));
    int rc = pki_keygen_next(g, k);
    pki_keygen_free(g);
    return rc;
}

int pki_cmd_enroll(struct pki_args *a)
{
    struct pki_url u;
    const char *why = NULL;
    EVP_PKEY *k = NULL;
    STACK_OF(X509) *certs = NULL;
    char *csr = NULL, path[600];
    size_t len = 0;
    if (pki_id_check(a->id, &why) < 0) {
        pki_err("--id %s: %s", a->id, why);
        return PKI_EXIT_USAGE;
    }
    if (url_of(a, &u) < 0) return PKI_EXIT_USAGE;
    int rc = new_key(a->key, &k);
    if (rc < 0) {
        pki_err("unknown --key %s; use ec:P-256, ec:P-384, rsa:2048, rsa:3072 or rsa:4096", a->key);
        return PKI_EXIT_USAGE;
    }
    est_path(a, "simpleenroll", path, sizeof path);
    GUARD_GOTO(rc, out_ready(a, a->id), out);
    GUARD_GOTO(rc, csr_b64(k, a->id, &csr, &len), out);
    struct pki_est_req rq = {&u, path, a->cafile, a->id, a->token, NULL, NULL, NULL, csr, len};
    GUARD_GOTO(rc, exchange(&rq, &certs), out);
    GUARD_GOTO(rc, write_out(a, a->id, k, certs), out);
    report(a, a->id, certs);
out:
    sk_X509_pop_free(certs, X509_free);
    free(csr);
    EVP_PKEY_free(k);
    return rc < 0 ? PKI_EXIT_FAIL : PKI_EXIT_OK;
}

int pki_cmd_reenroll(struct pki_args *a)
{
    struct pki_url u;
    struct pki_pass pass = {a->pass_file, "CERTMQ_PKI_PASS", "the device key", false, false};
    STACK_OF(X509) *mine = NULL, *certs = NULL;
    EVP_PKEY *cur = NULL, *k = NULL;
    char *csr = NULL, path[600], id[PKI_CN_MAX + 1];
    size_t len = 0;
    if (url_of(a, &u) < 0) return PKI_EXIT_USAGE;
    int rc = pki_certs_load(a->certs[0], &mine);
    if (rc < 0 || sk_X509_num(mine) < 1) {
        pki_err("cannot read the device certificate %s", a->certs[0]);
        sk_X509_pop_free(mine, X509_free);
        return PKI_EXIT_FAIL;
    }
    X509 *leaf = sk_X509_shift(mine);
    pki_name_cn(X509_get_subject_name(leaf), id, sizeof id);
    GUARD_GOTO(rc, pki_key_load(a->key, &pass, &cur), out);
    GUARD_GOTO(rc, new_key(NULL, &k), out);
    est_path(a, "simplereenroll", path, sizeof path);
    GUARD_GOTO(rc, out_ready(a, id), out);
    GUARD_GOTO(rc, csr_b64(k, id, &csr, &len), out);
    struct pki_est_req rq = {&u, path, a->cafile, NULL, NULL, leaf, mine, cur, csr, len};
    GUARD_GOTO(rc, exchange(&rq, &certs), out);
    GUARD_GOTO(rc, write_out(a, id, k, certs), out);
    report(a, id, certs);
out:
    X509_free(leaf);
    sk_X509_pop_free(mine, X509_free);
    sk_X509_pop_free(certs, X509_free);
    free(csr);
    EVP_PKEY_free(cur);
    EVP_PKEY_free(k);
    return rc < 0 ? PKI_EXIT_FAIL : PKI_EXIT_OK;
}
