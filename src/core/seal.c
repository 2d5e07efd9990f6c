/* Secrets at rest (see seal.h): the KEK file's checks and creation, and
 * AES-256-GCM sealing with OpenSSL EVP. The key lives in one struct that is
 * read-only after seal_open, so sealing is safe from any thread. */
#include "core/seal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "core/log.h"

struct seal {
    uint8_t key[SEAL_KEY_LEN];
    uint8_t kid[SEAL_KID_LEN];
};

static int key_id(const uint8_t key[SEAL_KEY_LEN], uint8_t kid[SEAL_KID_LEN])
{
    static const char label[] = "certmq kek id";
    uint8_t md[32];
    unsigned mdlen = 0;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    int ok = c && EVP_DigestInit_ex(c, EVP_sha256(), NULL) == 1 &&
             EVP_DigestUpdate(c, label, sizeof label - 1) == 1 &&
             EVP_DigestUpdate(c, key, SEAL_KEY_LEN) == 1 && EVP_DigestFinal_ex(c, md, &mdlen) == 1;
    EVP_MD_CTX_free(c);
    if (!ok) return ERR_INTERNAL;
    memcpy(kid, md, SEAL_KID_LEN);
    return 0;
}

int seal_new(const uint8_t key[SEAL_KEY_LEN], struct seal **out)
{
    struct seal *s = calloc(1, sizeof *s);
    if (!s) return ERR_NOMEM;
    memcpy(s->key, key, SEAL_KEY_LEN);
    int rc = key_id(key, s->kid);
    if (rc < 0) {
        seal_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

void seal_free(struct seal *s)
{
    if (!s) return;
    OPENSSL_cleanse(s, sizeof *s);
    free(s);
}

void seal_key_id(const struct seal *s, char hex[2 * SEAL_KID_LEN + 1])
{
    for (size_t i = 0; i < SEAL_KID_LEN; i++) snprintf(hex + 2 * i, 3, "%02x", s->kid[i]);
}

/* Reads exactly SEAL_KEY_LEN bytes from a regular file that only its owner
 * may access. */
static int read_key_file(const char *path, uint8_t key[SEAL_KEY_LEN], char *err, size_t errlen)
{
    int rc = ERR_INVALID;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    if (fd < 0) {
        snprintf(err, errlen, "key-encryption key %s: %s", path, strerror(errno));
        return ERR_IO;
    }
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        snprintf(err, errlen, "key-encryption key %s: not a regular file", path);
        goto out;
    }
    if (sb.st_mode & 077) {
        snprintf(err, errlen,
                 "key-encryption key %s: mode %03o lets group or others access it (chmod 600)",
                 path, (unsigned)(sb.st_mode & 0777));
        goto out;
    }
    if (sb.st_size != SEAL_KEY_LEN) {
        snprintf(err, errlen,
                 "key-encryption key %s: holds %lld bytes, must hold exactly %d random bytes "
                 "(openssl rand -out FILE %d)",
                 path, (long long)sb.st_size, SEAL_KEY_LEN, SEAL_KEY_LEN);
        goto out;
    }
    if (read(fd, key, SEAL_KEY_LEN) != SEAL_KEY_LEN) {
        snprintf(err, errlen, "key-encryption key %s: short read", path);
        rc = ERR_IO;
        goto out;
    }
    rc = 0;
out:
    close(fd);
    return rc;
}

/* Makes path with SEAL_KEY_LEN random bytes, mode 0600, atomically: written
 * to a temporary name first and linked into place, so a crash never leaves
 * a short key and a concurrent creator's key is kept. */
static int create_key_file(const char *path, char *err, size_t errlen)
{
    char tmp[4200];
    uint8_t key[SEAL_KEY_LEN];
    int n = snprintf(tmp, sizeof tmp, "%s.tmp%ld", path, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof tmp) return ERR_INVALID;
    int rc = ERR_IO;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, errlen, "cannot create key-encryption key %s: %s", tmp, strerror(errno));
        return ERR_IO;
    }
    if (RAND_priv_bytes(key, sizeof key) != 1) {
        snprintf(err, errlen, "no randomness for the key-encryption key");
        rc = ERR_INTERNAL;
    } else if (write(fd, key, sizeof key) != (ssize_t)sizeof key || fsync(fd) != 0) {
        snprintf(err, errlen, "cannot write key-encryption key %s: %s", tmp, strerror(errno));
    } else if (link(tmp, path) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "cannot create key-encryption key %s: %s", path, strerror(errno));
    } else {
        rc = 0;
    }
    OPENSSL_cleanse(key, sizeof key);
    close(fd);
    unlink(tmp);
    return rc;
}

int seal_open(const char *key_file, const char *data_dir, struct seal **out, char *err,
              size_t errlen)
{
    char path[4096];
    uint8_t key[SEAL_KEY_LEN];
    int n = key_file && *key_file ? snprintf(path, sizeof path, "%s", key_file)
                                  : snprintf(path, sizeof path, "%s/kek", data_dir);
    if (n < 0 || (size_t)n >= sizeof path) {
        snprintf(err, errlen, "key-encryption key path too long");
        return ERR_INVALID;
    }
    if (!(key_file && *key_file) && access(path, F_OK) != 0 && errno == ENOENT) {
        if (mkdir(data_dir, 0700) != 0 && errno != EEXIST) {
            snprintf(err, errlen, "cannot create data dir %s: %s", data_dir, strerror(errno));
            return ERR_IO;
        }
        GUARD(create_key_file(path, err, errlen));
        log_info("created the key-encryption key %s (keep it with the database)", path);
    }
    GUARD(read_key_file(path, key, err, errlen));
    int rc = seal_new(key, out);
    OPENSSL_cleanse(key, sizeof key);
    return rc;
}

/* One AES-256-GCM pass: encrypts (enc 1: out gets n bytes, tag is written)
 * or decrypts (enc 0: the tag is checked). aad is header then context. */
static int gcm(const struct seal *s, int enc, const uint8_t *nonce, const uint8_t *header,
               const char *context, const uint8_t *in, size_t n, uint8_t *out, uint8_t *tag)
{
    int rc = enc ? ERR_INTERNAL : ERR_AUTH, len = 0;
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    if (!c || n > SEAL_MAX_PLAIN) goto out;
    if (EVP_CipherInit_ex(c, EVP_aes_256_gcm(), NULL, s->key, nonce, enc) != 1) goto out;
    if (EVP_CipherUpdate(c, NULL, &len, header, SEAL_HEADER_LEN) != 1) goto out;
    if (EVP_CipherUpdate(c, NULL, &len, (const uint8_t *)context, (int)strlen(context)) != 1)
        goto out;
    if (n && EVP_CipherUpdate(c, out, &len, in, (int)n) != 1) goto out;
    if (!enc && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, SEAL_TAG_LEN, tag) != 1) goto out;
    if (EVP_CipherFinal_ex(c, out + n, &len) != 1) goto out;
    if (enc && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, SEAL_TAG_LEN, tag) != 1) goto out;
    rc = 0;
out:
    EVP_CIPHER_CTX_free(c);
    return rc;
}

int seal_wrap(const struct seal *s, const char *context, const void *plain, size_t n,
              uint8_t **blob, size_t *blob_len)
{
    if (n > SEAL_MAX_PLAIN || strlen(context) > 1024) return ERR_TOO_LARGE;
    uint8_t *b = malloc(SEAL_OVERHEAD + n);
    if (!b) return ERR_NOMEM;
    memcpy(b, SEAL_MAGIC, 4);
    b[4] = SEAL_VERSION;
    memcpy(b + 5, s->kid, SEAL_KID_LEN);
    uint8_t *nonce = b + SEAL_HEADER_LEN, *ct = nonce + SEAL_NONCE_LEN;
    int rc = RAND_bytes(nonce, SEAL_NONCE_LEN) == 1 ? 0 : ERR_INTERNAL;
    if (rc == 0) rc = gcm(s, 1, nonce, b, context, plain, n, ct, ct + n);
    if (rc < 0) {
        free(b);
        return rc;
    }
    *blob = b;
    *blob_len = SEAL_OVERHEAD + n;
    return 0;
}

int seal_check(const struct seal *s, const void *blob, size_t n)
{
    const uint8_t *b = blob;
    if (n < SEAL_OVERHEAD || memcmp(b, SEAL_MAGIC, 4) != 0 || b[4] != SEAL_VERSION)
        return ERR_MALFORMED;
    if (CRYPTO_memcmp(b + 5, s->kid, SEAL_KID_LEN) != 0) return ERR_CONFLICT;
    return 0;
}

int seal_unwrap(const struct seal *s, const char *context, const void *blob, size_t n, char **plain,
                size_t *plain_len)
{
    GUARD(seal_check(s, blob, n));
    const uint8_t *b = blob, *nonce = b + SEAL_HEADER_LEN, *ct = nonce + SEAL_NONCE_LEN;
    size_t len = n - SEAL_OVERHEAD;
    uint8_t tag[SEAL_TAG_LEN];
    memcpy(tag, ct + len, SEAL_TAG_LEN);
    char *p = malloc(len + 1);
    if (!p) return ERR_NOMEM;
    int rc = gcm(s, 0, nonce, b, context, ct, len, (uint8_t *)p, tag);
    if (rc < 0) {
        seal_secret_free(p, len);
        return rc;
    }
    p[len] = 0;
    *plain = p;
    *plain_len = len;
    return 0;
}

void seal_secret_free(char *p, size_t n)
{
    if (!p) return;
    OPENSSL_cleanse(p, n + 1);
    free(p);
}
