/* libFuzzer harness: the -hkl text reader (db_hkl_read) and the cache writer/reader round trip of what it read. */
#include "fuzz_common.h"
#include "error.h"
#include "hkl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    db_hkl_table t;
    db_error err;
    const char *path = fuzz_temp_file("hkl", data, size);
    if (db_hkl_read(path, size ? (double)data[0] : 0.0, &t, &err) == DB_OK) {
        /* a table that was read must survive the cache round trip bit for bit */
        char cache[4200];
        snprintf(cache, sizeof cache, "%s.Fdump", path);
        db_hkl_table u;
        if (db_fdump_write(cache, &t, &err) != DB_OK || db_fdump_read(cache, &u, &err) != DB_OK) abort();
        size_t n = (size_t)(t.h_range + 1) * (size_t)(t.k_range + 1) * (size_t)(t.l_range + 1);
        if (memcmp(t.F, u.F, n * sizeof(double)) != 0) abort();
        db_hkl_free(&u);
        unlink(cache);
        db_hkl_free(&t);
    } else if (t.F) {
        abort(); /* a failed read leaves no table */
    }
    return 0;
}
