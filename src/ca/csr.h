/* Pure helpers of the tenant CA's wire formats, shared by EST, MQTT renewal
 * and the fuzzer: a PKCS#10 request from its transfer form (base64 DER as
 * RFC 7030 sends it, or PEM) with its signature and key checked, and a
 * certs-only PKCS#7 answer. OpenSSL does every parse and encoding. */
#ifndef CERTMQ_CA_CSR_H
#define CERTMQ_CA_CSR_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/x509.h>

#include "core/err.h"

/* Parses a CSR from len bytes: PEM ("-----BEGIN CERTIFICATE REQUEST-----")
 * or base64 of its DER with any whitespace. Checks its self-signature, that
 * the signature hash is not MD5 or SHA-1 and the key strength (RSA >= 2048,
 * EC >= 256 bits). ERR_MALFORMED when it is not a CSR (garbage, bad base64,
 * trailing bytes), ERR_AUTH when its signature does not verify, ERR_INVALID
 * for a weak key or hash; why (cap bytes) says which. On 0 *out is the
 * caller's (X509_REQ_free). */
MUST_USE int ca_csr_parse(const char *body, size_t len, X509_REQ **out, char *why, size_t cap);
/* The subject's single commonName as UTF-8 into out; ERR_INVALID when it
 * has none, several, or one that does not fit. */
MUST_USE int ca_csr_cn(X509_REQ *req, char *out, size_t cap);
/* RSA/DSA >= 2048 bits, EC >= 256, Ed25519/Ed448; why says what is weak. */
bool ca_key_strong(EVP_PKEY *k, char *why, size_t cap);
/* A degenerate certs-only PKCS#7 (SignedData, no signers) of certs, as
 * base64 with line breaks (RFC 7030 section 4.1.3): *out malloc'd,
 * NUL-terminated, *len bytes. */
MUST_USE int ca_pkcs7_certs_b64(STACK_OF(X509) * certs, char **out, size_t *len);

#endif
