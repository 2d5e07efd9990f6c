/* libFuzzer target for device-token parsing: the unverified tenant peek
 * and full verification of arbitrary text against a fixed key must never
 * crash, and nothing forged without the private key may verify. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "token/token.h"

static char *priv, *pub;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!pub && token_key_new(&priv, &pub) < 0) abort();
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = 0;
    char ten[64];
    struct token_claims c;
    if (token_peek_tenant(text, ten, sizeof ten) == 0 && strlen(ten) >= sizeof ten) abort();
    /* The key is made here, after the input was written: no input can carry
     * a valid signature for it. */
    if (token_verify(pub, text, "t1", 1000, &c) == 0) abort();
    free(text);
    return 0;
}
