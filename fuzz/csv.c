/* libFuzzer target for the bulk-registration CSV parser: any bytes must
 * parse or fail cleanly, and every cell of a parsed table must be readable. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "identity/csv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct csv c;
    if (csv_parse(data, size, &c) < 0) return 0;
    size_t total = 0;
    for (size_t r = 0; r < c.nrows; r++)
        for (size_t k = 0; k < c.ncols; k++) total += strlen(csv_cell(&c, r, (int)k));
    (void)csv_col(&c, "ID");
    csv_free(&c);
    return total > SIZE_MAX - 1 ? 1 : 0;
}
