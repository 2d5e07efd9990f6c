/* Files and messages for the pki module: atomic no-clobber writes with an
 * explicit mode (keys 0600), whole-file reads, certificate lists from PEM
 * or DER, fingerprints and times as text, and the one error printer that
 * turns OpenSSL's error queue into a short reason. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>

#include "pki/pki_internal.h"

void pki_err(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    unsigned long e = ERR_peek_error();
    if (e) {
        const char *why = ERR_reason_error_string(e);
        fprintf(stderr, "certmq pki: %s (openssl: %s)\n", msg, why ? why : "unknown error");
    } else {
        fprintf(stderr, "certmq pki: %s\n", msg);
    }
    ERR_clear_error();
}

int pki_path(char *out, size_t cap, const char *dir, const char *name)
{
    int n = snprintf(out, cap, "%s/%s", dir, name);
    return n > 0 && (size_t)n < cap ? 0 : ERR_TOO_LARGE;
}

static int write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return ERR_IO;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* A new file is created exclusively (never clobbering one that appeared
 * meanwhile) and removed again if writing fails; with force, a temporary
 * file beside path is renamed over it, so readers never see half a file. */
int pki_write_file(const char *path, const void *data, size_t len, int mode, bool force)
{
    char tmp[4200];
    const char *target = path;
    int rc = 0, fd;
    if (force) {
        if (snprintf(tmp, sizeof tmp, "%s.tmp%ld", path, (long)getpid()) >= (int)sizeof tmp)
            return ERR_TOO_LARGE;
        target = tmp;
    }
    fd = open(target, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0) {
        if (errno == EEXIST && !force) {
            pki_err("%s exists; remove it or pass --force to replace it", path);
            return ERR_EXISTS;
        }
        pki_err("cannot write %s: %s", path, strerror(errno));
        return ERR_IO;
    }
    if (fchmod(fd, (mode_t)mode) < 0 || write_all(fd, data, len) < 0) rc = ERR_IO;
    if (close(fd) < 0) rc = ERR_IO;
    if (rc == 0 && force && rename(tmp, path) < 0) rc = ERR_IO;
    if (rc < 0) {
        pki_err("cannot write %s: %s", path, strerror(errno));
        unlink(target);
    }
    return rc;
}

int pki_read_file(const char *path, char **out, size_t *len)
{
    int rc = 0;
    char *data = NULL;
    size_t cap = 0, n = 0;
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        pki_err("cannot read %s: %s", path, strerror(errno));
        return errno == ENOENT ? ERR_NOT_FOUND : ERR_IO;
    }
    for (;;) {
        if (n + 4096 + 1 > cap) {
            if (cap > ((size_t)64 << 20)) {
                pki_err("%s is too large", path);
                rc = ERR_TOO_LARGE;
                goto out;
            }
            cap = cap ? cap * 2 : 8192;
            char *p = realloc(data, cap);
            if (!p) {
                rc = ERR_NOMEM;
                goto out;
            }
            data = p;
        }
        size_t r = fread(data + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0) break;
    }
    if (ferror(f)) {
        pki_err("cannot read %s", path);
        rc = ERR_IO;
        goto out;
    }
    data[n] = '\0';
    *out = data;
    *len = n;
    data = NULL;
out:
    fclose(f);
    free(data);
    return rc;
}

int pki_cert_pem(X509 *x, char **out, size_t *len)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *mem;
    int rc = ERR_TLS;
    if (!bio) return ERR_NOMEM;
    if (!PEM_write_bio_X509(bio, x)) goto out;
    long n = BIO_get_mem_data(bio, &mem);
    *out = malloc((size_t)n + 1);
    if (!*out) {
        rc = ERR_NOMEM;
        goto out;
    }
    memcpy(*out, mem, (size_t)n);
    (*out)[n] = '\0';
    *len = (size_t)n;
    rc = 0;
out:
    BIO_free(bio);
    return rc;
}

int pki_certs_load(const char *path, STACK_OF(X509) * *out)
{
    char *data = NULL;
    size_t len = 0;
    int rc = 0;
    BIO *bio = NULL;
    STACK_OF(X509) *sk = sk_X509_new_null();
    if (!sk) return ERR_NOMEM;
    GUARD_GOTO(rc, pki_read_file(path, &data, &len), out);
    bio = BIO_new_mem_buf(data, (int)len);
    if (!bio) {
        rc = ERR_NOMEM;
        goto out;
    }
    if (strstr(data, "-----BEGIN")) {
        X509 *x;
        while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
            if (!sk_X509_push(sk, x)) {
                X509_free(x);
                rc = ERR_NOMEM;
                goto out;
            }
        }
        ERR_clear_error(); /* end of input */
    } else {
        const unsigned char *p = (const unsigned char *)data;
        X509 *x = d2i_X509(NULL, &p, (long)len);
        if (x && !sk_X509_push(sk, x)) {
            X509_free(x);
            rc = ERR_NOMEM;
            goto out;
        }
    }
    if (sk_X509_num(sk) == 0) {
        pki_err("%s holds no certificate (PEM or DER expected)", path);
        rc = ERR_INVALID;
        goto out;
    }
    *out = sk;
    sk = NULL;
out:
    sk_X509_pop_free(sk, X509_free);
    BIO_free(bio);
    free(data);
    return rc;
}

void pki_name_cn(const X509_NAME *n, char *out, size_t cap)
{
    out[0] = '\0';
    int i = X509_NAME_get_index_by_NID(n, NID_commonName, -1);
    if (i < 0) return;
    const ASN1_STRING *s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(n, i));
    unsigned char *utf8 = NULL;
    int len = ASN1_STRING_to_UTF8(&utf8, s);
    if (len < 0) return;
    snprintf(out, cap, "%.*s", len, (const char *)utf8);
    OPENSSL_free(utf8);
}

void pki_fingerprint(const X509 *x, const EVP_MD *md, char *out, size_t cap)
{
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    out[0] = '\0';
    if (!X509_digest(x, md, d, &n)) return;
    for (unsigned i = 0; i < n && 2 * i + 2 < cap; i++) snprintf(out + 2 * i, 3, "%02x", d[i]);
}

void pki_time_iso(const ASN1_TIME *t, char *out, size_t cap)
{
    struct tm tm;
    if (!t || !ASN1_TIME_to_tm(t, &tm)) {
        snprintf(out, cap, "?");
        return;
    }
    strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void pki_json_print(json_t *obj)
{
    char *s = json_dumps(obj, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (s) {
        puts(s);
        free(s);
    }
    json_decref(obj);
}

const char *pki_p12_pass(const struct pki_args *a)
{
    if (a->p12_pass && a->p12_pass[0]) return a->p12_pass;
    const char *env = getenv("CERTMQ_PKI_P12_PASS");
    return env && env[0] ? env : NULL;
}
