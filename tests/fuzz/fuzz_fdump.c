/* libFuzzer harness: the Fdump.bin cache reader (db_fdump_read). */
#include "fuzz_common.h"
#include "error.h"
#include "hkl.h"

#include <math.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    db_hkl_table t;
    db_error err;
    const char *path = fuzz_temp_file("fdump", data, size);
    if (db_fdump_read(path, &t, &err) == DB_OK) {
        size_t n = (size_t)(t.h_range + 1) * (size_t)(t.k_range + 1) * (size_t)(t.l_range + 1);
        for (size_t i = 0; i < n; i++)
            if (!isfinite(t.F[i])) abort(); /* refused by the reader */
        db_hkl_free(&t);
    }
    return 0;
}
