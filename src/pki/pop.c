/* `pki pop-sign`: the proof of possession of a trusted CA. Signs the
 * server's verification code (its bytes as given) with the CA private key,
 * SHA-256 with RSA PKCS#1 v1.5 or ECDSA, and prints the base64 signature
 * to upload. Same result as
 *   printf %s CODE | openssl dgst -sha256 -sign ca.key | base64 -w0 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>

#include "pki/pki_internal.h"

static int sign_code(EVP_PKEY *key, const char *code, unsigned char **sig, size_t *siglen)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int rc = ERR_TLS;
    *sig = NULL;
    if (!md) return ERR_NOMEM;
    if (EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) <= 0) goto out;
    if (EVP_DigestSign(md, NULL, siglen, (const unsigned char *)code, strlen(code)) <= 0) goto out;
    *sig = OPENSSL_malloc(*siglen);
    if (!*sig) {
        rc = ERR_NOMEM;
        goto out;
    }
    if (EVP_DigestSign(md, *sig, siglen, (const unsigned char *)code, strlen(code)) <= 0) goto out;
    rc = 0;
out:
    if (rc < 0) {
        OPENSSL_free(*sig);
        *sig = NULL;
    }
    EVP_MD_CTX_free(md);
    return rc;
}

int pki_cmd_pop_sign(struct pki_args *a)
{
    struct pki_pass pass = {.file = a->pass_file, .env = "CERTMQ_PKI_PASS", .label = a->key};
    EVP_PKEY *key = NULL;
    unsigned char *sig = NULL;
    char *b64 = NULL;
    size_t siglen = 0;
    int rc;
    if (!a->code[0]) {
        pki_err("--code is empty; paste the unsigned verification code from the server");
        return PKI_EXIT_USAGE;
    }
    GUARD_GOTO(rc, pki_key_load(a->key, &pass, &key), out);
    if (!EVP_PKEY_is_a(key, "RSA") && !EVP_PKEY_is_a(key, "EC")) {
        pki_err("%s is neither an RSA nor an EC key; the server verifies only those", a->key);
        rc = ERR_INVALID;
        goto out;
    }
    rc = sign_code(key, a->code, &sig, &siglen);
    if (rc < 0) {
        pki_err("cannot sign with %s", a->key);
        goto out;
    }
    b64 = malloc(4 * ((siglen + 2) / 3) + 1);
    if (!b64) {
        rc = ERR_NOMEM;
        goto out;
    }
    EVP_EncodeBlock((unsigned char *)b64, sig, (int)siglen);
    if (a->json) {
        json_t *o = json_pack("{s:s}", "proofOfPossessionSignedVerificationCode", b64);
        if (o) pki_json_print(o);
    } else {
        printf("%s\n", b64);
    }
out:
    free(b64);
    OPENSSL_free(sig);
    EVP_PKEY_free(key);
    return rc < 0 ? PKI_EXIT_FAIL : PKI_EXIT_OK;
}
