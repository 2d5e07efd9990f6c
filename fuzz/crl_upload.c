/* libFuzzer target for the CRL upload parser: any bytes go through
 * revoc_crl_parse() (PEM or DER, one CRL); a parsed CRL goes through the
 * issuer check (no candidate: refused, with a reason) and the entry reader,
 * which must accept or refuse without misbehaving. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "identity/revocation.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    X509_CRL *crl = NULL;
    if (revoc_crl_parse(data, size, &crl) < 0) {
        if (crl) abort(); /* a refusal owns nothing */
        return 0;
    }
    STACK_OF(X509) *none = sk_X509_new_null();
    X509 *issuer = NULL;
    const char *why = NULL;
    if (none && revoc_crl_verify(crl, none, &issuer, &why) == 0) abort();
    if (!why) abort();
    struct store_crl_entry *e = NULL;
    size_t n = 0;
    if (revoc_crl_entries(crl, &e, &n) == 0 && n > REVOC_MAX_ENTRIES) abort();
    free(e);
    sk_X509_free(none);
    X509_CRL_free(crl);
    return 0;
}
