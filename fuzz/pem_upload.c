/* libFuzzer target for the trusted-certificate upload path: the JSON body
 * {status, name, autoRegistrationEnabled, certInPemFormat} through
 * api_parse_cert_upload(), and the same bytes as a PEM chain through
 * api_pem_chain(); both must accept or refuse without misbehaving. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char msg[256];
    struct api_cert_upload u;
    /* A fixed time keeps runs reproducible. */
    if (api_parse_cert_upload((const char *)data, size, 1700000000, &u, msg, sizeof msg) == 0) {
        if (!u.cert) abort();
        api_cert_upload_free(&u);
    } else if (u.cert) {
        abort(); /* a refusal owns nothing */
    }
    STACK_OF(X509) *chain = NULL;
    if (api_pem_chain((const char *)data, size, &chain) == 0) {
        if (sk_X509_num(chain) < 1) abort();
        sk_X509_pop_free(chain, X509_free);
    }
    return 0;
}
