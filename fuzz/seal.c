/* libFuzzer target for opening sealed blobs (what the store hands back):
 * arbitrary bytes, and arbitrary bytes behind a valid header of this KEK so
 * the nonce/ciphertext/tag split and AES-GCM run too, must never crash, and
 * nothing made without the key may open. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "core/seal.h"

static struct seal *s;
static uint8_t header[SEAL_HEADER_LEN];

static void setup(void)
{
    uint8_t key[SEAL_KEY_LEN], *blob = NULL;
    size_t n = 0;
    /* A random key made after the input exists: no input can carry a tag for it. */
    if (RAND_bytes(key, sizeof key) != 1 || seal_new(key, &s) < 0) abort();
    if (seal_wrap(s, "fuzz", "x", 1, &blob, &n) < 0) abort();
    memcpy(header, blob, sizeof header);
    free(blob);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!s) setup();
    char *plain = NULL;
    size_t plen = 0;
    if (seal_unwrap(s, "fuzz", data, size, &plain, &plen) == 0) abort();
    uint8_t *b = malloc(sizeof header + size);
    if (!b) return 0;
    memcpy(b, header, sizeof header);
    if (size) memcpy(b + sizeof header, data, size);
    if (seal_unwrap(s, "fuzz", b, sizeof header + size, &plain, &plen) == 0) abort();
    free(b);
    return 0;
}
