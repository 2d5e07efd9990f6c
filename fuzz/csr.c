/* libFuzzer target for the tenant CA's CSR intake (ca/csr.h): the bytes of
 * an EST or s/ucr body through ca_csr_parse() (base64 DER or PEM, signature
 * and key checks), then the CN reader on whatever it accepted. A refusal
 * must own nothing; an acceptance must hand back a request. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ca/csr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char why[200], cn[128];
    X509_REQ *req = NULL;
    /* An exact-size copy, so a read past the body is caught. */
    char *body = malloc(size ? size : 1);
    if (!body) return 0;
    if (size) memcpy(body, data, size);
    int rc = ca_csr_parse(body, size, &req, why, sizeof why);
    if (rc == 0) {
        if (!req) abort();
        if (ca_csr_cn(req, cn, sizeof cn) == 0 && strlen(cn) >= sizeof cn) abort();
        X509_REQ_free(req);
    } else if (req || (rc != ERR_MALFORMED && rc != ERR_AUTH && rc != ERR_INVALID)) {
        abort();
    }
    free(body);
    return 0;
}
