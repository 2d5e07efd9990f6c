/* Proof of possession of a trusted CA: POST .../trusted-certificates-pop/
 * {fingerprint}/verification-code (a fresh random code with an expiry),
 * .../pop (the code signed with the CA key, checked against the certificate)
 * and .../confirmed (the management admin's audited override). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "api/handlers.h"
#include "core/buf.h"
#include "core/log.h"
#include "identity/trust.h"

#define CODE_BYTES        32 /* 256 random bits, 64 hex digits */
#define MAX_SIG_B64       4096
#define POP_FIELD         "proofOfPossessionSignedVerificationCode"
#define CODE_LIFE_CAT     "proof-of-possession"
#define CODE_LIFE_KEY     "verification-code.lifespan.seconds"
#define CODE_LIFE_DEFAULT 600

static int b64_value(uint8_t ch)
{
    if (ch >= 'A' && ch <= 'Z') return ch - 'A';
    if (ch >= 'a' && ch <= 'z') return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9') return ch - '0' + 52;
    if (ch == '+' || ch == '-') return 62;
    if (ch == '/' || ch == '_') return 63;
    return -1;
}

/* Decodes base64 (standard or URL alphabet, padding optional, line breaks
 * and spaces ignored, as `base64` without -w0 prints it). Returns the
 * length, or ERR_MALFORMED for anything else or output beyond cap. */
static long b64_decode(struct rd *in, uint8_t *out, size_t cap)
{
    uint32_t acc = 0;
    int bits = 0, pad = 0;
    size_t o = 0;
    while (rd_left(in)) {
        uint8_t ch;
        if (rd_u8(in, &ch) < 0) return ERR_MALFORMED;
        if (ch == ' ' || ch == '\r' || ch == '\n' || ch == '\t') continue;
        if (ch == '=') {
            if (++pad > 2) return ERR_MALFORMED;
            continue;
        }
        int v = b64_value(ch);
        if (v < 0 || pad) return ERR_MALFORMED; /* data after padding */
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o == cap) return ERR_MALFORMED;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    if (bits >= 6) return ERR_MALFORMED; /* a lone trailing character */
    return (long)o;
}

/* Does sig verify over msg with key (SHA-256; RSA PKCS#1 v1.5 or ECDSA)? */
static bool verifies(EVP_PKEY *key, const uint8_t *sig, size_t sig_len, const char *msg,
                     size_t msg_len)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    bool ok = md && EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, key) == 1 &&
              EVP_DigestVerify(md, sig, sig_len, (const unsigned char *)msg, msg_len) == 1;
    EVP_MD_CTX_free(md);
    return ok;
}

int api_pop_check(const char *body, size_t len, const char *code, X509 *cert)
{
    uint8_t sig[MAX_SIG_B64];
    char line[STORE_NAME_MAX + 1];
    json_error_t e;
    int rc = ERR_MALFORMED;
    json_t *j = json_loadb(body, len, 0, &e);
    json_t *v = json_is_object(j) ? json_object_get(j, POP_FIELD) : NULL;
    if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > MAX_SIG_B64)
        goto out;
    struct rd in = rd_make(json_string_value(v), json_string_length(v));
    long n = b64_decode(&in, sig, sizeof sig);
    if (n <= 0) goto out;
    rc = ERR_INVALID;
    EVP_PKEY *key = X509_get0_pubkey(cert);
    if (!key || !(EVP_PKEY_is_a(key, "RSA") || EVP_PKEY_is_a(key, "EC"))) goto out;
    size_t cl = strlen(code);
    if (cl == 0 || cl >= sizeof line - 1) goto out;
    /* The code as given, or as `echo CODE > f.txt` stores it. */
    snprintf(line, sizeof line, "%s\n", code);
    if (verifies(key, sig, (size_t)n, code, cl) || verifies(key, sig, (size_t)n, line, cl + 1))
        rc = 0;
out:
    json_decref(j);
    return rc;
}

/* Tenant option proof-of-possession / verification-code.lifespan.seconds. */
static long code_lifespan(struct api_req *r, const char *tenant)
{
    char v[32];
    if (store_option_get(r->api->st, tenant, CODE_LIFE_CAT, CODE_LIFE_KEY, v, sizeof v) < 0)
        return CODE_LIFE_DEFAULT;
    char *end = NULL;
    long n = strtol(v, &end, 10);
    return *v && !*end && n > 0 ? n : CODE_LIFE_DEFAULT;
}

/* Writes c's proof fields to the store, then the trust index (the chain
 * policy's tenant choice reads pop_valid there), and replies with c. */
static int save(struct api_req *r, struct store_cert *c, X509 *x)
{
    GUARD(store_cert_update(r->api->st, c));
    GUARD(
        trust_anchor_put(r->api->ti, c->tenant, x, c->enabled, c->auto_registration, c->pop_valid));
    return api_reply_json(r, 200, api_cert_json(r, c, x));
}

int api_h_pop_code(struct api_req *r)
{
    const char *tenant = r->seg[2];
    struct store_cert c;
    X509 *x = NULL;
    unsigned char raw[CODE_BYTES];
    GUARD(api_tenant_gate(r, tenant));
    GUARD(api_cert_load(r, tenant, &c, &x));
    int rc = ERR_INTERNAL;
    if (RAND_priv_bytes(raw, sizeof raw) != 1) goto out;
    for (size_t i = 0; i < sizeof raw; i++) snprintf(c.pop_code + 2 * i, 3, "%02x", raw[i]);
    c.pop_until = (int64_t)time(NULL) + code_lifespan(r, tenant);
    rc = save(r, &c, x);
out:
    X509_free(x);
    store_cert_clear(&c);
    return rc;
}

int api_h_pop_verify(struct api_req *r)
{
    const char *tenant = r->seg[2];
    struct store_cert c;
    X509 *x = NULL;
    GUARD(api_tenant_gate(r, tenant));
    GUARD(api_cert_load(r, tenant, &c, &x));
    int rc;
    if (!c.pop_code[0] || (int64_t)time(NULL) >= c.pop_until) {
        rc = api_reply_error(r, 422, "No usable verification code: request a new one");
        goto out;
    }
    rc = api_pop_check(r->body, r->body_len, c.pop_code, x);
    if (rc == ERR_MALFORMED) {
        rc = api_reply_error(r, 422, POP_FIELD " must be the base64 signature of the code");
        goto out;
    }
    if (rc < 0) {
        rc = api_reply_error(r, 422,
                             "The signature does not verify with this certificate's public key "
                             "over the current verification code");
        goto out;
    }
    c.pop_valid = true;
    c.pop_code[0] = '\0'; /* a code proves once */
    c.pop_until = 0;
    rc = save(r, &c, x);
    if (rc == 0)
        log_info("tenant '%s': proof of possession of trusted certificate %s verified", tenant,
                 c.fingerprint);
out:
    X509_free(x);
    store_cert_clear(&c);
    return rc;
}

int api_h_pop_confirm(struct api_req *r)
{
    const char *tenant = r->seg[2];
    struct store_cert c;
    X509 *x = NULL;
    if (!api_is_management_admin(r))
        return api_reply_error(r, 403, "Only the management tenant's admin may confirm a proof");
    GUARD(api_tenant_gate(r, tenant));
    GUARD(api_cert_load(r, tenant, &c, &x));
    c.pop_valid = true;
    c.pop_code[0] = '\0';
    c.pop_until = 0;
    int rc = save(r, &c, x);
    if (rc == 0)
        log_warn("tenant '%s': proof of possession of trusted certificate %s confirmed without "
                 "a signature by %s/%s (operator override)",
                 tenant, c.fingerprint, r->tenant, r->user);
    X509_free(x);
    store_cert_clear(&c);
    return rc;
}
