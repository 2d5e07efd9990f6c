/* The device side of EST for `certmq pki enroll|reenroll`: the server URL,
 * one HTTP/1.0 POST over OpenSSL (server verified against --cafile or the
 * system store, host name checked; a client certificate for re-enrollment),
 * and the answer's status and body. The two parsers (URL, response head)
 * are pure and fuzzed by fuzz/est_client.c. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "pki/pki_internal.h"

#define EST_MAX_RESPONSE (1u << 20)

int pki_url_parse(const char *url, size_t len, struct pki_url *out)
{
    memset(out, 0, sizeof *out);
    const char *p = url, *end = url + len;
    if (len > 7 && !strncasecmp(p, "http://", 7)) {
        p += 7;
    } else if (len > 8 && !strncasecmp(p, "https://", 8)) {
        out->tls = true;
        p += 8;
    } else {
        return ERR_INVALID;
    }
    const char *host = p;
    while (p < end && *p != ':' && *p != '/') p++;
    size_t hl = (size_t)(p - host);
    ENSURE(hl > 0 && hl < sizeof out->host, ERR_INVALID);
    for (size_t i = 0; i < hl; i++)
        ENSURE(isalnum((unsigned char)host[i]) || (host[i] && strchr(".-_", host[i])), ERR_INVALID);
    memcpy(out->host, host, hl);
    snprintf(out->port, sizeof out->port, "%s", out->tls ? "443" : "80");
    if (p < end && *p == ':') {
        const char *port = ++p;
        while (p < end && isdigit((unsigned char)*p)) p++;
        size_t pl = (size_t)(p - port);
        ENSURE(pl > 0 && pl < 6, ERR_INVALID);
        memcpy(out->port, port, pl);
        out->port[pl] = 0;
        ENSURE(atoi(out->port) > 0 && atoi(out->port) < 65536, ERR_INVALID);
    }
    size_t rest = (size_t)(end - p);
    while (rest && p[rest - 1] == '/') rest--; /* the prefix, without trailing slashes */
    ENSURE(rest < sizeof out->path && (rest == 0 || *p == '/'), ERR_INVALID);
    for (size_t i = 0; i < rest; i++)
        ENSURE(isgraph((unsigned char)p[i]) && p[i] != '?' && p[i] != '#', ERR_INVALID);
    memcpy(out->path, p, rest);
    out->path[rest] = 0;
    return 0;
}

int pki_http_split(const char *resp, size_t len, int *status, const char **body, size_t *body_len)
{
    ENSURE(len >= 12 && !memcmp(resp, "HTTP/1.", 7) && resp[8] == ' ', ERR_MALFORMED);
    ENSURE(isdigit((unsigned char)resp[9]) && isdigit((unsigned char)resp[10]) &&
               isdigit((unsigned char)resp[11]),
           ERR_MALFORMED);
    *status = (resp[9] - '0') * 100 + (resp[10] - '0') * 10 + (resp[11] - '0');
    const char *sep = memmem(resp, len, "\r\n\r\n", 4);
    ENSURE(sep, ERR_MALFORMED);
    *body = sep + 4;
    *body_len = len - (size_t)(*body - resp);
    return 0;
}

/* The TLS context: server verified (cafile, else the system's CAs), the
 * client's certificate chain and key when given. */
static SSL_CTX *tls_ctx(const struct pki_est_req *rq)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) return NULL;
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    int ok = rq->cafile ? SSL_CTX_load_verify_locations(ctx, rq->cafile, NULL)
                        : SSL_CTX_set_default_verify_paths(ctx);
    if (ok == 1 && rq->cert) {
        ok = SSL_CTX_use_certificate(ctx, rq->cert) == 1 &&
             SSL_CTX_use_PrivateKey(ctx, rq->key) == 1;
        for (int i = 0; ok && i < sk_X509_num(rq->extra); i++)
            ok = SSL_CTX_add1_chain_cert(ctx, sk_X509_value(rq->extra, i)) == 1;
    }
    if (ok != 1) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

static BIO *connect_bio(const struct pki_est_req *rq, SSL_CTX **ctx)
{
    char target[300];
    snprintf(target, sizeof target, "%s:%s", rq->url->host, rq->url->port);
    BIO *b = NULL;
    if (!rq->url->tls) {
        b = BIO_new_connect(target);
    } else if ((*ctx = tls_ctx(rq))) {
        b = BIO_new_ssl_connect(*ctx);
        SSL *ssl = NULL;
        if (b && BIO_get_ssl(b, &ssl) == 1) {
            SSL_set_tlsext_host_name(ssl, rq->url->host);
            SSL_set1_host(ssl, rq->url->host);
            BIO_set_conn_hostname(b, target);
        }
    }
    if (b && BIO_do_connect(b) <= 0) {
        BIO_free_all(b);
        b = NULL;
    }
    return b;
}

static char *request_head(const struct pki_est_req *rq)
{
    char auth[1200] = "";
    if (rq->user) {
        char plain[700];
        unsigned char b64[950];
        int n = snprintf(plain, sizeof plain, "%s:%s", rq->user, rq->pass ? rq->pass : "");
        if (n < 0 || (size_t)n >= sizeof plain) return NULL;
        EVP_EncodeBlock(b64, (const unsigned char *)plain, n);
        OPENSSL_cleanse(plain, sizeof plain);
        snprintf(auth, sizeof auth, "Authorization: Basic %s\r\n", b64);
        OPENSSL_cleanse(b64, sizeof b64);
    }
    char *head = NULL;
    int n = asprintf(&head,
                     "POST %s%s HTTP/1.0\r\nHost: %s:%s\r\nContent-Type: application/pkcs10\r\n"
                     "Content-Transfer-Encoding: base64\r\nContent-Length: %zu\r\n%s"
                     "Connection: close\r\n\r\n",
                     rq->url->path, rq->path, rq->url->host, rq->url->port, rq->len, auth);
    OPENSSL_cleanse(auth, sizeof auth);
    return n < 0 ? NULL : head;
}

/* Reads the whole answer (the server closes: HTTP/1.0). */
static int read_all(BIO *b, char **out, size_t *len)
{
    size_t cap = 8192, n = 0;
    char *buf = malloc(cap + 1);
    ENSURE(buf, ERR_NOMEM);
    for (;;) {
        if (n == cap) {
            char *nb = cap < EST_MAX_RESPONSE ? realloc(buf, cap * 2 + 1) : NULL;
            if (!nb) {
                free(buf);
                return ERR_TOO_LARGE;
            }
            buf = nb;
            cap *= 2;
        }
        int r = BIO_read(b, buf + n, (int)(cap - n));
        if (r <= 0) break;
        n += (size_t)r;
    }
    buf[n] = 0;
    *out = buf;
    *len = n;
    return n ? 0 : ERR_IO;
}

int pki_est_post(const struct pki_est_req *rq, char **resp, size_t *len)
{
    SSL_CTX *ctx = NULL;
    char *head = request_head(rq);
    BIO *b = head ? connect_bio(rq, &ctx) : NULL;
    int rc = ERR_IO;
    if (!b) {
        pki_err("cannot connect to %s:%s%s", rq->url->host, rq->url->port,
                rq->url->tls ? " over TLS (is --cafile the server's CA?)" : "");
        goto out;
    }
    if (BIO_write(b, head, (int)strlen(head)) <= 0 || BIO_write(b, rq->body, (int)rq->len) <= 0 ||
        BIO_flush(b) <= 0) {
        pki_err("cannot send the request to %s", rq->url->host);
        goto out;
    }
    rc = read_all(b, resp, len);
    if (rc < 0) pki_err("no answer from %s", rq->url->host);
out:
    if (head) OPENSSL_cleanse(head, strlen(head));
    free(head);
    BIO_free_all(b);
    SSL_CTX_free(ctx);
    return rc;
}

int pki_pkcs7_certs(const char *b64, size_t len, STACK_OF(X509) * *out)
{
    BIO *mem = BIO_new_mem_buf(b64, (int)len), *dec = BIO_new(BIO_f_base64());
    ENSURE(mem && dec, ERR_NOMEM);
    BIO *chain = BIO_push(dec, mem);
    PKCS7 *p7 = d2i_PKCS7_bio(chain, NULL);
    BIO_free_all(chain);
    int rc = ERR_MALFORMED;
    if (p7 && PKCS7_type_is_signed(p7) && p7->d.sign && p7->d.sign->cert &&
        sk_X509_num(p7->d.sign->cert) > 0) {
        *out = sk_X509_deep_copy(p7->d.sign->cert, X509_dup, X509_free);
        rc = *out ? 0 : ERR_NOMEM;
    }
    PKCS7_free(p7);
    return rc;
}
