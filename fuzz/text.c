/* libFuzzer target for untrusted-text handling: any bytes must validate,
 * and their escape must be valid UTF-8 without control characters, never
 * longer than its buffer, and agree with the validator on clean input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/text.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    bool ok = text_utf8_valid(in, size);
    size_t cap = size * 4 + 1;
    char *out = malloc(cap);
    if (!out) return 0;
    size_t n = text_escape(in, size, out, cap);
    if (n >= cap || out[n] != '\0' || !text_printable(out) || strlen(out) != n) abort();
    if (ok && !memchr(in, '\\', size) && n == size && memcmp(in, out, n) != 0) abort();
    char small[7];
    size_t m = text_escape(in, size, small, sizeof small);
    if (m >= sizeof small || memcmp(small, out, m) != 0) abort();
    /* A redacted URL list: within its room, never longer than "***" per
     * user-information part could make it. */
    text_url_redact(in, size, out, cap);
    if (strlen(out) >= cap) abort();
    text_url_redact(in, size, small, sizeof small);
    if (strlen(small) >= sizeof small) abort();
    free(out);
    return 0;
}
