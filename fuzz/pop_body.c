/* libFuzzer target for the proof-of-possession upload: any bytes as the body
 * {"proofOfPossessionSignedVerificationCode": "<base64>"} through
 * api_pop_check() against a fixed code and EC certificate (JSON, base64 and
 * the signature check); only the seed signed with its key may verify. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/pem.h>

#include "api/handlers.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char code[] = "3f1c2a9e8b7d6c5f4e3d2c1b0a9f8e7d6c5b4a39281706f5e4d3c2b1a0f9e8d7";

/* The public certificate of a throwaway P-256 CA; its key signed the seed
 * corpus/pop_body/valid.json (SHA-256 over the code above). */
static const char cert_pem[] = "-----BEGIN CERTIFICATE-----\n"
                               "MIIBiDCCAS+gAwIBAgIUF/ZZz53Xpjhm8MkbA7kRZiSZL0kwCgYIKoZIzj0EAwIw\n"
                               "GTEXMBUGA1UEAwwOY2VydG1xLWZ1enotY2EwIBcNMjYxMTIzMTgzNDUyWhgPMjEy\n"
                               "NjEwMzAxODM0NTJaMBkxFzAVBgNVBAMMDmNlcnRtcS1mdXp6LWNhMFkwEwYHKoZI\n"
                               "zj0CAQYIKoZIzj0DAQcDQgAEvTonLfsDdlaxF7F329A+2a3uhNy4YP71nkCgYWf0\n"
                               "bdFgJnUAyMN7lEUJqKFsloXQoDsUiV2tMmq2064JLCfEAaNTMFEwHQYDVR0OBBYE\n"
                               "FFS3C6t8czVEURpzMBtc8CjJ8kCuMB8GA1UdIwQYMBaAFFS3C6t8czVEURpzMBtc\n"
                               "8CjJ8kCuMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDRwAwRAIge6aHNxzu\n"
                               "263uJRcd2O3lO9D/Rb5ijPpHMyi4ZoifoHECIH8MZYPMREm/NDaeZfDq+N+ME3Y0\n"
                               "DZRcfiPuoQnpF6ji\n"
                               "-----END CERTIFICATE-----\n";

static X509 *cert(void)
{
    static X509 *x;
    if (!x) {
        BIO *b = BIO_new_mem_buf(cert_pem, -1);
        x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
        BIO_free(b);
        if (!x) abort();
    }
    return x;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* api_pop_check reads exactly size bytes: give it a copy without slack
     * so reads past the end are caught. */
    char *body = malloc(size ? size : 1);
    if (!body) return 0;
    if (size) memcpy(body, data, size);
    int rc = api_pop_check(body, size, code, cert());
    if (rc != 0 && rc != ERR_MALFORMED && rc != ERR_INVALID) abort();
    free(body);
    return 0;
}
