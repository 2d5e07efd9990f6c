/* libFuzzer target for the configuration parser: any text either parses
 * into a consistent config or yields an error naming a line; never more
 * listeners than the table holds, never an out-of-range value. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct config cfg;
    char err[1024];
    config_defaults(&cfg);
    int rc = config_parse(&cfg, (const char *)data, size, "fuzz", err, sizeof err);
    if (rc == 0) {
        if (cfg.n_listeners > CONFIG_MAX_LISTENERS) abort();
        if (cfg.max_chain_length < 1 || cfg.max_chain_length > 10) abort();
        if (cfg.max_packet_size < 64) abort();
        for (size_t i = 0; i < cfg.n_listeners; i++)
            if (cfg.listeners[i].port < 1 || cfg.listeners[i].port > 65535) abort();
    } else if (rc != ERR_INVALID || strncmp(err, "fuzz", 4) != 0) {
        abort();
    }
    return 0;
}
