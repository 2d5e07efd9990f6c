/* libFuzzer target for the two small parsers of src/net/tls.c that read what
 * a client sent: the supported_versions body of a ClientHello (the answer
 * must equal a plain scan of the pairs the declared and present length
 * cover) and a session ticket's application data (proven only by the tag). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/tls.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned char *copy = malloc(size ? size : 1); /* exact size: ASan sees overreads */
    if (!copy) return 0;
    memcpy(copy, data, size);
    bool got = tls_hello_offers_tls13(copy, size);
    bool want = false;
    if (size >= 1) {
        size_t len = copy[0] < size - 1 ? copy[0] : size - 1;
        for (size_t i = 0; i + 1 < len; i += 2)
            if (copy[1 + i] == 3 && copy[2 + i] == 4) want = true;
    }
    if (got != want) __builtin_trap();
    bool proven = tls_ticket_appdata_proven(copy, size);
    if (proven && (size != 21 || memcmp(copy, "certmq:1:chain-proven", 21) != 0)) __builtin_trap();
    free(copy);
    return 0;
}
