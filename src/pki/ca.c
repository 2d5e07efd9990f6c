/* CA directories and certificate building: `pki ca init` and `pki ca
 * intermediate`, the directory layout openssl's `ca` also understands
 * (ca.pem, ca.key, chain.pem, serial, index.txt, crlnumber), serial
 * allocation under a lock, and the one function that signs certificates. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "pki/pki_internal.h"

#define MIN_PASS 8

static int add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value)
{
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
    if (!ext) return ERR_TLS;
    int ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    return ok ? 0 : ERR_TLS;
}

static int add_san(X509 *x, const struct pki_san *san, size_t n)
{
    int rc = ERR_NOMEM;
    GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
    if (!gens) return ERR_NOMEM;
    for (size_t i = 0; i < n; i++) {
        GENERAL_NAME *g = GENERAL_NAME_new();
        ASN1_STRING *s =
            san[i].type == PKI_SAN_DNS ? ASN1_IA5STRING_new() : ASN1_OCTET_STRING_new();
        const void *v = san[i].type == PKI_SAN_DNS ? (const void *)san[i].dns : san[i].ip;
        if (!g || !s || !ASN1_STRING_set(s, v, (int)san[i].len)) {
            GENERAL_NAME_free(g);
            ASN1_STRING_free(s);
            goto out;
        }
        GENERAL_NAME_set0_value(g, san[i].type == PKI_SAN_DNS ? GEN_DNS : GEN_IPADD, s);
        if (!sk_GENERAL_NAME_push(gens, g)) {
            GENERAL_NAME_free(g);
            goto out;
        }
    }
    rc = X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, X509V3_ADD_DEFAULT) ? 0 : ERR_TLS;
out:
    GENERAL_NAMES_free(gens);
    return rc;
}

static int add_profile_exts(X509 *x, X509V3_CTX *ctx, const struct pki_cert_req *rq)
{
    char bc[64];
    GUARD(add_ext(x, ctx, NID_subject_key_identifier, "hash"));
    GUARD(add_ext(x, ctx, NID_authority_key_identifier, "keyid:always"));
    switch (rq->profile) {
    case PKI_PROFILE_CA:
        if (rq->pathlen >= 0)
            snprintf(bc, sizeof bc, "critical,CA:TRUE,pathlen:%ld", rq->pathlen);
        else
            snprintf(bc, sizeof bc, "critical,CA:TRUE");
        GUARD(add_ext(x, ctx, NID_basic_constraints, bc));
        GUARD(add_ext(x, ctx, NID_key_usage, "critical,keyCertSign,cRLSign,digitalSignature"));
        break;
    case PKI_PROFILE_DEVICE:
    case PKI_PROFILE_SERVER:
        GUARD(add_ext(x, ctx, NID_basic_constraints, "critical,CA:FALSE"));
        GUARD(add_ext(x, ctx, NID_key_usage, "critical,digitalSignature,keyEncipherment"));
        GUARD(add_ext(x, ctx, NID_ext_key_usage,
                      rq->profile == PKI_PROFILE_DEVICE ? "clientAuth" : "serverAuth"));
        break;
    }
    if (rq->nsan > 0) GUARD(add_san(x, rq->san, rq->nsan));
    return 0;
}

int pki_cert_make(const struct pki_cert_req *rq, X509 **out)
{
    int rc = ERR_TLS;
    X509 *x = X509_new();
    BIGNUM *rnd = NULL;
    X509V3_CTX ctx;
    EVP_PKEY *signer = rq->issuer ? rq->issuer_key : rq->key;
    *out = NULL;
    if (!x) return ERR_NOMEM;
    if (!X509_set_version(x, X509_VERSION_3)) goto out;
    if (rq->serial) {
        if (!BN_to_ASN1_INTEGER(rq->serial, X509_get_serialNumber(x))) goto out;
    } else {
        rnd = BN_new();
        if (!rnd || !BN_rand(rnd, 159, BN_RAND_TOP_ONE, BN_RAND_BOTTOM_ANY) ||
            !BN_to_ASN1_INTEGER(rnd, X509_get_serialNumber(x)))
            goto out;
    }
    X509_NAME *subj = X509_get_subject_name(x);
    if (!X509_NAME_add_entry_by_NID(subj, NID_commonName, MBSTRING_UTF8,
                                    (const unsigned char *)rq->cn, -1, -1, 0))
        goto out;
    if (!X509_set_issuer_name(x, rq->issuer ? X509_get_subject_name(rq->issuer) : subj)) goto out;
    /* Five minutes of slack for device clocks that run slightly behind. */
    if (!X509_gmtime_adj(X509_getm_notBefore(x), -300)) goto out;
    if (!X509_time_adj_ex(X509_getm_notAfter(x), (int)rq->days, 0, NULL)) goto out;
    /* Never outlive the issuer: clients reject such chains anyway. */
    if (rq->issuer && ASN1_TIME_compare(X509_get0_notAfter(x), X509_get0_notAfter(rq->issuer)) > 0)
        if (!X509_set1_notAfter(x, X509_get0_notAfter(rq->issuer))) goto out;
    if (!X509_set_pubkey(x, rq->key)) goto out;
    X509V3_set_ctx(&ctx, rq->issuer ? rq->issuer : x, x, NULL, NULL, 0);
    GUARD_GOTO(rc, add_profile_exts(x, &ctx, rq), out);
    rc = ERR_TLS;
    if (!X509_sign(x, signer, pki_key_md(signer))) goto out;
    *out = x;
    x = NULL;
    rc = 0;
out:
    BN_free(rnd);
    X509_free(x);
    return rc;
}

/* --- the CA directory --- */

static int write_text(const char *dir, const char *name, const char *text, int mode)
{
    char path[4200];
    GUARD(pki_path(path, sizeof path, dir, name));
    return pki_write_file(path, text, strlen(text), mode, false);
}

static int first_crl(const char *dir, X509 *cert, EVP_PKEY *key)
{
    struct pki_ca ca = {.cert = cert, .key = key, .lock_fd = -1};
    X509_CRL *crl = NULL;
    if (snprintf(ca.dir, sizeof ca.dir, "%s", dir) >= (int)sizeof ca.dir) return ERR_TOO_LARGE;
    int rc = pki_crl_write(&ca, 30, &crl);
    X509_CRL_free(crl);
    return rc;
}

/* Writes every file of a new CA directory; ca.pem goes last so that its
 * presence means the directory is complete. parent_chain is NULL for a
 * root. */
static int ca_dir_write(const char *dir, X509 *cert, EVP_PKEY *key, const char *pass,
                        STACK_OF(X509) * parent_chain)
{
    char *pem = NULL, *kpem = NULL, *chain = NULL, serial[64];
    size_t plen = 0, klen = 0, clen = 0;
    unsigned char rnd[8];
    BIGNUM *bn = NULL;
    int rc;
    GUARD_GOTO(rc, pki_key_pem(key, pass, &kpem, &klen), out);
    GUARD_GOTO(rc, write_text(dir, "ca.key", kpem, 0600), out);
    GUARD_GOTO(rc, pki_cert_pem(cert, &pem, &plen), out);
    /* chain.pem: this CA, then its parents up to the root. */
    clen = plen;
    for (int i = 0; parent_chain && i < sk_X509_num(parent_chain); i++) {
        char *p = NULL;
        size_t n = 0;
        GUARD_GOTO(rc, pki_cert_pem(sk_X509_value(parent_chain, i), &p, &n), out);
        char *grown = realloc(chain, clen + n + 1);
        if (!grown) {
            free(p);
            rc = ERR_NOMEM;
            goto out;
        }
        chain = grown;
        if (clen == plen) memcpy(chain, pem, plen);
        memcpy(chain + clen, p, n + 1);
        clen += n;
        free(p);
    }
    GUARD_GOTO(rc, write_text(dir, "chain.pem", chain ? chain : pem, 0644), out);
    /* First serial: random 63 bits, so two CAs' serials rarely meet. */
    rc = ERR_TLS;
    if (RAND_bytes(rnd, sizeof rnd) != 1) goto out;
    rnd[0] = (unsigned char)((rnd[0] & 0x7f) | 0x10);
    bn = BN_bin2bn(rnd, sizeof rnd, NULL);
    if (!bn) goto out;
    GUARD_GOTO(rc, pki_serial_hex(bn, serial, sizeof serial - 1), out);
    strcat(serial, "\n");
    GUARD_GOTO(rc, write_text(dir, "serial", serial, 0644), out);
    GUARD_GOTO(rc, write_text(dir, "index.txt", "", 0644), out);
    GUARD_GOTO(rc, write_text(dir, "index.txt.attr", "unique_subject = no\n", 0644), out);
    GUARD_GOTO(rc, write_text(dir, "crlnumber", "01\n", 0644), out);
    /* An empty CRL from the start: relying parties can load one at once. */
    GUARD_GOTO(rc, first_crl(dir, cert, key), out);
    GUARD_GOTO(rc, write_text(dir, "ca.pem", pem, 0644), out);
out:
    BN_free(bn);
    if (kpem) OPENSSL_cleanse(kpem, klen);
    free(kpem);
    free(pem);
    free(chain);
    return rc;
}

/* Creates dir (0700) or accepts an existing one without a CA in it. */
static int ca_dir_prepare(const char *dir)
{
    char path[4200];
    struct stat st;
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        pki_err("cannot create %s: %s", dir, strerror(errno));
        return ERR_IO;
    }
    if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
        pki_err("%s is not a directory", dir);
        return ERR_INVALID;
    }
    GUARD(pki_path(path, sizeof path, dir, "ca.pem"));
    if (access(path, F_OK) == 0) {
        pki_err("%s already holds a CA (ca.pem); choose another directory", dir);
        return ERR_EXISTS;
    }
    GUARD(pki_path(path, sizeof path, dir, "ca.key"));
    if (access(path, F_OK) == 0) {
        pki_err("%s holds a ca.key but no ca.pem; remove it or choose another directory", dir);
        return ERR_EXISTS;
    }
    return 0;
}

int pki_ca_create(const struct pki_ca_init *in, X509 **cert_out)
{
    struct pki_keygen *g = NULL;
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    int rc;
    GUARD(ca_dir_prepare(in->dir));
    GUARD_GOTO(rc, pki_keygen_new(&in->ks, &g), out);
    GUARD_GOTO(rc, pki_keygen_next(g, &key), out);
    struct pki_cert_req rq = {.profile = PKI_PROFILE_CA,
                              .cn = in->cn,
                              .key = key,
                              .days = in->days,
                              .pathlen = in->pathlen};
    GUARD_GOTO(rc, pki_cert_make(&rq, &cert), out);
    GUARD_GOTO(rc, ca_dir_write(in->dir, cert, key, in->pass, NULL), out);
    if (cert_out) {
        *cert_out = cert;
        cert = NULL;
    }
out:
    if (rc < 0 && rc != ERR_EXISTS && rc != ERR_IO) pki_err("cannot create the CA in %s", in->dir);
    X509_free(cert);
    EVP_PKEY_free(key);
    pki_keygen_free(g);
    return rc;
}

int pki_ca_open(const char *dir, bool with_key, struct pki_pass *pass, struct pki_ca *ca)
{
    char path[4200];
    STACK_OF(X509) *one = NULL;
    int rc;
    memset(ca, 0, sizeof *ca);
    ca->lock_fd = -1;
    if (snprintf(ca->dir, sizeof ca->dir, "%s", dir) >= (int)sizeof ca->dir) return ERR_TOO_LARGE;
    GUARD_GOTO(rc, pki_path(path, sizeof path, dir, "serial"), out);
    ca->lock_fd = open(path, O_RDWR | O_CLOEXEC);
    if (ca->lock_fd < 0) {
        pki_err("%s is not a certmq CA directory (no serial file); create one with "
                "`certmq pki ca init %s --cn NAME`",
                dir, dir);
        rc = ERR_NOT_FOUND;
        goto out;
    }
    if (flock(ca->lock_fd, LOCK_EX) < 0) {
        pki_err("cannot lock %s: %s", path, strerror(errno));
        rc = ERR_IO;
        goto out;
    }
    GUARD_GOTO(rc, pki_path(path, sizeof path, dir, "ca.pem"), out);
    GUARD_GOTO(rc, pki_certs_load(path, &one), out);
    ca->cert = sk_X509_shift(one);
    if (X509_check_ca(ca->cert) < 1) {
        pki_err("%s is not a CA certificate (basicConstraints CA:TRUE missing)", path);
        rc = ERR_INVALID;
        goto out;
    }
    GUARD_GOTO(rc, pki_path(path, sizeof path, dir, "chain.pem"), out);
    if (access(path, F_OK) == 0) {
        GUARD_GOTO(rc, pki_certs_load(path, &ca->chain), out);
    } else {
        ca->chain = sk_X509_new_null();
        if (!ca->chain || !X509_up_ref(ca->cert) || !sk_X509_push(ca->chain, ca->cert)) {
            rc = ERR_NOMEM;
            goto out;
        }
    }
    if (X509_cmp(sk_X509_value(ca->chain, 0), ca->cert) != 0) {
        pki_err("%s/chain.pem does not start with ca.pem; the directory is inconsistent", dir);
        rc = ERR_INVALID;
        goto out;
    }
    if (with_key) {
        GUARD_GOTO(rc, pki_path(path, sizeof path, dir, "ca.key"), out);
        GUARD_GOTO(rc, pki_key_load(path, pass, &ca->key), out);
        if (!X509_check_private_key(ca->cert, ca->key)) {
            pki_err("%s does not belong to %s/ca.pem", path, dir);
            rc = ERR_INVALID;
            goto out;
        }
    }
    rc = 0;
out:
    sk_X509_pop_free(one, X509_free);
    if (rc < 0) pki_ca_close(ca);
    return rc;
}

void pki_ca_close(struct pki_ca *ca)
{
    X509_free(ca->cert);
    EVP_PKEY_free(ca->key);
    sk_X509_pop_free(ca->chain, X509_free);
    if (ca->lock_fd >= 0) close(ca->lock_fd); /* releases the flock */
    ca->cert = NULL;
    ca->key = NULL;
    ca->chain = NULL;
    ca->lock_fd = -1;
}

/* The serial file is rewritten in place: the flock lives on it. */
int pki_ca_take_serials(struct pki_ca *ca, long n, BIGNUM **first)
{
    char text[128], hex[96];
    BIGNUM *next = NULL;
    int rc = ERR_INVALID;
    *first = NULL;
    ssize_t r = pread(ca->lock_fd, text, sizeof text - 1, 0);
    if (r <= 0) {
        pki_err("%s/serial is empty or unreadable", ca->dir);
        return ERR_IO;
    }
    text[r] = '\0';
    if (pki_serial_parse(text, first) < 0) {
        pki_err("%s/serial does not hold a hex serial number", ca->dir);
        return ERR_INVALID;
    }
    next = BN_dup(*first);
    if (!next || !BN_add_word(next, (BN_ULONG)n)) {
        rc = ERR_NOMEM;
        goto out;
    }
    GUARD_GOTO(rc, pki_serial_hex(next, hex, sizeof hex - 1), out);
    strcat(hex, "\n");
    size_t len = strlen(hex);
    if (pwrite(ca->lock_fd, hex, len, 0) != (ssize_t)len ||
        ftruncate(ca->lock_fd, (off_t)len) < 0) {
        pki_err("cannot update %s/serial: %s", ca->dir, strerror(errno));
        rc = ERR_IO;
        goto out;
    }
    rc = 0;
out:
    BN_free(next);
    if (rc < 0) {
        BN_free(*first);
        *first = NULL;
    }
    return rc;
}

int pki_ca_record(struct pki_ca *ca, STACK_OF(X509) * issued)
{
    char path[4200], line[1024];
    size_t cap = 1024 * (size_t)sk_X509_num(issued) + 1, len = 0;
    char *all = malloc(cap);
    int rc = 0, fd = -1;
    if (!all) return ERR_NOMEM;
    for (int i = 0; i < sk_X509_num(issued); i++) {
        X509 *x = sk_X509_value(issued, i);
        struct pki_index_entry e = {.status = 'V'};
        const ASN1_TIME *na = X509_get0_notAfter(x);
        BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
        snprintf(e.expiry, sizeof e.expiry, "%.*s", ASN1_STRING_length(na),
                 (const char *)ASN1_STRING_get0_data(na));
        rc = bn ? pki_serial_hex(bn, e.serial, sizeof e.serial) : ERR_NOMEM;
        BN_free(bn);
        if (rc < 0) goto out;
        snprintf(e.file, sizeof e.file, "unknown");
        X509_NAME_oneline(X509_get_subject_name(x), e.subject, sizeof e.subject);
        int n = pki_index_format_line(&e, line, sizeof line);
        GUARD_GOTO(rc, n, out);
        memcpy(all + len, line, (size_t)n);
        len += (size_t)n;
    }
    GUARD_GOTO(rc, pki_path(path, sizeof path, ca->dir, "index.txt"), out);
    fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, all, len) != (ssize_t)len) {
        pki_err("cannot append to %s: %s", path, strerror(errno));
        rc = ERR_IO;
    }
out:
    if (fd >= 0) close(fd);
    free(all);
    return rc;
}

/* --- commands --- */

/* Reads the passphrase for a new key when --encrypt is given. */
static int new_key_pass(const struct pki_args *a, char *pass, size_t cap)
{
    struct pki_pass p = {.file = a->pass_file, .env = "CERTMQ_PKI_PASS", .label = "the new CA key"};
    int n = pki_pass_read(&p, true, pass, cap);
    if (n < 0) {
        if (p.missing)
            pki_err("--encrypt needs a passphrase: give --pass-file FILE, set CERTMQ_PKI_PASS, "
                    "or run on a terminal to be asked");
        return n;
    }
    if (n < MIN_PASS) {
        pki_err("the passphrase is shorter than %d characters; choose a longer one", MIN_PASS);
        return ERR_INVALID;
    }
    return 0;
}

static void print_ca(const struct pki_args *a, const char *what, const char *dir, X509 *cert,
                     bool encrypted)
{
    char sha1[41], serial[96] = "", notafter[32], cn[128], keydesc[32];
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL);
    if (bn) ignore_result(pki_serial_hex(bn, serial, sizeof serial));
    BN_free(bn);
    pki_fingerprint(cert, EVP_sha1(), sha1, sizeof sha1);
    pki_time_iso(X509_get0_notAfter(cert), notafter, sizeof notafter);
    pki_name_cn(X509_get_subject_name(cert), cn, sizeof cn);
    pki_key_describe(X509_get0_pubkey(cert), keydesc, sizeof keydesc);
    if (a->json) {
        json_t *o =
            json_pack("{s:s, s:s, s:s, s:s+, s:s+, s:s+, s:b, s:s, s:s, s:s, s:s}", "dir", dir,
                      "cn", cn, "kind", what, "certificate", dir, "/ca.pem", "key", dir, "/ca.key",
                      "chain", dir, "/chain.pem", "encrypted", encrypted, "serial", serial, "sha1",
                      sha1, "not_after", notafter, "key_type", keydesc);
        if (o) pki_json_print(o);
        return;
    }
    printf("%s \"%s\" created in %s\n", what, cn, dir);
    printf("  certificate  %s/ca.pem  (%s, valid until %s)\n", dir, keydesc, notafter);
    printf("  private key  %s/ca.key  (mode 0600, %s)\n", dir,
           encrypted ? "AES-256 encrypted" : "not encrypted: keep this directory private");
    printf("  chain        %s/chain.pem\n", dir);
    printf("  sha1         %s  (the trusted-certificate id on the server)\n", sha1);
    printf("next: certmq pki issue device --ca %s --cn DEVICE_ID\n", dir);
}

int pki_cmd_ca_init(struct pki_args *a)
{
    char pass[1024] = "";
    X509 *cert = NULL;
    int rc;
    struct pki_ca_init in = {
        .dir = a->pos[0], .cn = a->cn, .days = a->days > 0 ? a->days : 7300, .pathlen = a->pathlen};
    if (pki_keyspec_parse(a->key, &in.ks) < 0) {
        pki_err("unknown --key %s; use rsa:2048, rsa:3072, rsa:4096, ec:P-256 or ec:P-384", a->key);
        return PKI_EXIT_USAGE;
    }
    if (a->encrypt) {
        GUARD_GOTO(rc, new_key_pass(a, pass, sizeof pass), out);
        in.pass = pass;
    }
    GUARD_GOTO(rc, pki_ca_create(&in, &cert), out);
    print_ca(a, "CA", in.dir, cert, a->encrypt);
out:
    OPENSSL_cleanse(pass, sizeof pass);
    X509_free(cert);
    return rc < 0 ? PKI_EXIT_FAIL : PKI_EXIT_OK;
}

/* The pathlen of a new intermediate: as asked, below the parent's limit. */
static int intermediate_pathlen(const struct pki_args *a, X509 *parent, long *out)
{
    long plen = X509_get_pathlen(parent);
    if (plen == 0) {
        pki_err("%s has pathlen 0: it may sign devices but no further CA; create the "
                "intermediate under a CA with a larger (or no) pathlen",
                a->parent);
        return ERR_FORBIDDEN;
    }
    if (a->pathlen >= 0 && plen > 0 && a->pathlen >= plen) {
        pki_err("--pathlen %ld is not below the parent's pathlen %ld; use at most %ld", a->pathlen,
                plen, plen - 1);
        return ERR_FORBIDDEN;
    }
    *out = a->pathlen >= 0 ? a->pathlen : (plen > 0 ? plen - 1 : -1);
    return 0;
}

int pki_cmd_ca_intermediate(struct pki_args *a)
{
    char pass[1024] = "";
    struct pki_ca parent = {.lock_fd = -1};
    struct pki_pass ppass = {.file = a->parent_pass_file ? a->parent_pass_file : a->pass_file,
                             .env = "CERTMQ_PKI_PASS",
                             .label = a->parent};
    struct pki_keyspec ks;
    struct pki_keygen *g = NULL;
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    BIGNUM *serial = NULL;
    STACK_OF(X509) *rec = NULL;
    long pathlen = -1;
    int rc;
    if (pki_keyspec_parse(a->key, &ks) < 0) {
        pki_err("unknown --key %s; use rsa:2048, rsa:3072, rsa:4096, ec:P-256 or ec:P-384", a->key);
        return PKI_EXIT_USAGE;
    }
    GUARD_GOTO(rc, pki_ca_open(a->parent, true, &ppass, &parent), out);
    GUARD_GOTO(rc, intermediate_pathlen(a, parent.cert, &pathlen), out);
    GUARD_GOTO(rc, ca_dir_prepare(a->pos[0]), out);
    if (a->encrypt) GUARD_GOTO(rc, new_key_pass(a, pass, sizeof pass), out);
    GUARD_GOTO(rc, pki_keygen_new(&ks, &g), out);
    GUARD_GOTO(rc, pki_keygen_next(g, &key), out);
    GUARD_GOTO(rc, pki_ca_take_serials(&parent, 1, &serial), out);
    struct pki_cert_req rq = {.profile = PKI_PROFILE_CA,
                              .cn = a->cn,
                              .key = key,
                              .days = a->days > 0 ? a->days : 3650,
                              .pathlen = pathlen,
                              .serial = serial,
                              .issuer = parent.cert,
                              .issuer_key = parent.key};
    GUARD_GOTO(rc, pki_cert_make(&rq, &cert), out);
    GUARD_GOTO(rc, ca_dir_write(a->pos[0], cert, key, a->encrypt ? pass : NULL, parent.chain), out);
    rec = sk_X509_new_null();
    if (!rec || !sk_X509_push(rec, cert)) {
        rc = ERR_NOMEM;
        goto out;
    }
    GUARD_GOTO(rc, pki_ca_record(&parent, rec), out);
    print_ca(a, "intermediate CA", a->pos[0], cert, a->encrypt);
out:
    if (rc < 0 && rc != ERR_NOMEM && ERR_peek_error()) pki_err("cannot create the intermediate CA");
    OPENSSL_cleanse(pass, sizeof pass);
    sk_X509_free(rec);
    X509_free(cert);
    BN_free(serial);
    EVP_PKEY_free(key);
    pki_keygen_free(g);
    pki_ca_close(&parent);
    return rc < 0 ? PKI_EXIT_FAIL : PKI_EXIT_OK;
}
