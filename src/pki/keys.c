/* Keys for the pki module: key specs ("ec:P-256"), generation (a reusable
 * context for batches), passphrases (file, environment, terminal prompt),
 * and reading and writing PEM private keys, AES-256 encrypted on request. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include "pki/pki_internal.h"

int pki_keyspec_parse(const char *s, struct pki_keyspec *out)
{
    memset(out, 0, sizeof *out);
    if (!s) s = "ec:P-256";
    if (!strcasecmp(s, "ec:P-256") || !strcasecmp(s, "ec:prime256v1")) {
        out->ec = true;
        out->curve_nid = NID_X9_62_prime256v1;
        snprintf(out->name, sizeof out->name, "ec:P-256");
        return 0;
    }
    if (!strcasecmp(s, "ec:P-384") || !strcasecmp(s, "ec:secp384r1")) {
        out->ec = true;
        out->curve_nid = NID_secp384r1;
        snprintf(out->name, sizeof out->name, "ec:P-384");
        return 0;
    }
    if (!strcasecmp(s, "rsa:2048") || !strcasecmp(s, "rsa:3072") || !strcasecmp(s, "rsa:4096")) {
        out->bits = atoi(s + 4);
        snprintf(out->name, sizeof out->name, "rsa:%d", out->bits);
        return 0;
    }
    return ERR_INVALID;
}

struct pki_keygen {
    EVP_PKEY_CTX *ctx;
};

int pki_keygen_new(const struct pki_keyspec *ks, struct pki_keygen **out)
{
    int rc = ERR_TLS;
    struct pki_keygen *g = calloc(1, sizeof *g);
    if (!g) return ERR_NOMEM;
    g->ctx = EVP_PKEY_CTX_new_from_name(NULL, ks->ec ? "EC" : "RSA", NULL);
    if (!g->ctx || EVP_PKEY_keygen_init(g->ctx) <= 0) goto out;
    if (ks->ec) {
        if (EVP_PKEY_CTX_set_group_name(g->ctx, OBJ_nid2sn(ks->curve_nid)) <= 0) goto out;
    } else if (EVP_PKEY_CTX_set_rsa_keygen_bits(g->ctx, ks->bits) <= 0) {
        goto out;
    }
    *out = g;
    g = NULL;
    rc = 0;
out:
    pki_keygen_free(g);
    return rc;
}

int pki_keygen_next(struct pki_keygen *g, EVP_PKEY **out)
{
    *out = NULL;
    return EVP_PKEY_generate(g->ctx, out) > 0 ? 0 : ERR_TLS;
}

void pki_keygen_free(struct pki_keygen *g)
{
    if (!g) return;
    EVP_PKEY_CTX_free(g->ctx);
    free(g);
}

void pki_key_describe(const EVP_PKEY *k, char *out, size_t cap)
{
    char group[64] = "";
    size_t glen = 0;
    if (EVP_PKEY_is_a(k, "EC") &&
        EVP_PKEY_get_utf8_string_param(k, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, &glen)) {
        int nid = OBJ_sn2nid(group);
        const char *nist = nid != NID_undef ? EC_curve_nid2nist(nid) : NULL;
        snprintf(out, cap, "EC %s", nist ? nist : group);
    } else if (EVP_PKEY_is_a(k, "RSA")) {
        snprintf(out, cap, "RSA %d", EVP_PKEY_get_bits(k));
    } else {
        snprintf(out, cap, "%s %d", EVP_PKEY_get0_type_name(k), EVP_PKEY_get_bits(k));
    }
}

const EVP_MD *pki_key_md(const EVP_PKEY *k)
{
    if (EVP_PKEY_is_a(k, "EC") && EVP_PKEY_get_bits(k) >= 384) return EVP_sha384();
    return EVP_sha256();
}

/* Reads one line from fd into out without echo when fd is a terminal. */
static int tty_line(int fd, const char *prompt, char *out, size_t cap)
{
    struct termios old, quiet;
    bool restore = false;
    size_t n = 0;
    int rc = 0;
    /* Echo goes off before the prompt is shown, and without flushing input,
     * so an answer typed (or sent) right after the prompt is neither echoed
     * nor lost. */
    if (tcgetattr(fd, &old) == 0) {
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        restore = tcsetattr(fd, TCSANOW, &quiet) == 0;
    }
    if (write(fd, prompt, strlen(prompt)) < 0) {
        if (restore) ignore_result(tcsetattr(fd, TCSANOW, &old));
        return ERR_IO;
    }
    for (;;) {
        char c;
        ssize_t r = read(fd, &c, 1);
        if (r <= 0 || c == '\n') break;
        if (n + 1 < cap) out[n++] = c;
    }
    out[n] = '\0';
    if (restore) ignore_result(tcsetattr(fd, TCSANOW, &old));
    if (write(fd, "\n", 1) < 0) rc = ERR_IO;
    return rc < 0 ? rc : (int)n;
}

static int prompt_pass(struct pki_pass *p, bool confirm, char *out, size_t cap)
{
    char again[1024], prompt[512];
    int rc;
    int fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) {
        p->missing = true;
        return ERR_NOT_FOUND;
    }
    snprintf(prompt, sizeof prompt, "Passphrase for %s: ", p->label);
    rc = tty_line(fd, prompt, out, cap);
    if (rc >= 0 && confirm) {
        int rc2 = tty_line(fd, "Repeat the passphrase: ", again, sizeof again);
        if (rc2 < 0 || strcmp(again, out) != 0) {
            pki_err("the two passphrases differ");
            rc = ERR_INVALID;
        }
        OPENSSL_cleanse(again, sizeof again);
    }
    close(fd);
    return rc;
}

int pki_pass_read(struct pki_pass *p, bool confirm, char *out, size_t cap)
{
    if (cap == 0) return ERR_INVALID;
    out[0] = '\0';
    if (p->file) {
        FILE *f = fopen(p->file, "r");
        if (!f) {
            pki_err("cannot read the passphrase file %s: %s", p->file, strerror(errno));
            return ERR_NOT_FOUND;
        }
        char *line = fgets(out, (int)cap, f);
        fclose(f);
        if (!line) out[0] = '\0';
        out[strcspn(out, "\r\n")] = '\0';
        if (!out[0]) {
            pki_err("the passphrase file %s is empty", p->file);
            return ERR_INVALID;
        }
        return (int)strlen(out);
    }
    const char *env = p->env ? getenv(p->env) : NULL;
    if (env && env[0]) {
        if (strlen(env) >= cap) return ERR_TOO_LARGE;
        snprintf(out, cap, "%s", env);
        return (int)strlen(out);
    }
    return prompt_pass(p, confirm, out, cap);
}

static int pem_pass_cb(char *buf, int size, int rwflag, void *u)
{
    struct pki_pass *p = u;
    (void)rwflag;
    int n = pki_pass_read(p, false, buf, (size_t)size);
    if (n < 0) return -1;
    p->tried = true;
    return n;
}

int pki_key_load(const char *path, struct pki_pass *p, EVP_PKEY **out)
{
    char *data = NULL;
    size_t len = 0;
    int rc = 0;
    BIO *bio = NULL;
    *out = NULL;
    GUARD(pki_read_file(path, &data, &len));
    bio = BIO_new_mem_buf(data, (int)len);
    if (!bio) {
        rc = ERR_NOMEM;
        goto out;
    }
    p->missing = p->tried = false;
    *out = PEM_read_bio_PrivateKey(bio, NULL, pem_pass_cb, p);
    if (*out) goto out;
    rc = ERR_INVALID;
    ERR_clear_error();
    if (p->missing)
        pki_err("%s is encrypted: give its passphrase with --pass-file FILE or the environment "
                "variable %s (or run on a terminal to be asked)",
                path, p->env ? p->env : "CERTMQ_PKI_PASS");
    else if (p->tried)
        pki_err("wrong passphrase for %s (the key stays locked)", path);
    else if (strstr(data, "ENCRYPTED"))
        pki_err("%s is encrypted and no passphrase could be read", path);
    else
        pki_err("%s does not hold a PEM private key", path);
out:
    BIO_free(bio);
    if (data) OPENSSL_cleanse(data, len);
    free(data);
    return rc;
}

int pki_key_pem(EVP_PKEY *k, const char *pass, char **out, size_t *len)
{
    int rc = ERR_TLS;
    BIO *bio = BIO_new(BIO_s_secmem()); /* cleansed when freed */
    char *mem = NULL;
    long n;
    *out = NULL;
    if (!bio) return ERR_NOMEM;
    if (pass) {
        if (!PEM_write_bio_PKCS8PrivateKey(bio, k, EVP_aes_256_cbc(), pass, (int)strlen(pass), NULL,
                                           NULL))
            goto out;
    } else if (!PEM_write_bio_PrivateKey(bio, k, NULL, NULL, 0, NULL, NULL)) {
        goto out;
    }
    n = BIO_get_mem_data(bio, &mem);
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
