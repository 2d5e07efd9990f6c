/* libFuzzer target for key password files: any bytes give either a password
 * that is the first line (non-empty, no NUL, no line end, NUL-terminated in
 * the buffer) or a refusal with a reason. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/keypass.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char pw[KEYPASS_MAX];
    const char *why = "";
    if (keypass_parse((const char *)data, size, pw, &why) == 0) {
        size_t n = strlen(pw);
        if (n == 0 || n > KEYPASS_MAX - 2 || n > size || memcmp(pw, data, n)) abort();
        if (strpbrk(pw, "\r\n")) abort();
        if (n < size && data[n] != '\n' && data[n] != '\r') abort();
    } else if (!why || !*why) {
        abort();
    }
    keypass_wipe(pw);
    return 0;
}
