/* fuzz_common.h: helpers of the libFuzzer harnesses (tests/fuzz/). The readers take file names, so each input
 * is written to a per-process temporary file first. */
#ifndef DB_FUZZ_COMMON_H
#define DB_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dualbragg.h"
#include "hkl.h"

/* Tables up to the 2 GiB limit are legitimate but take seconds each to fill and write: the fuzzers explore the
 * readers' logic on tables up to 16 MiB (the limit's refusal path is the same code either way). */
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    db_hkl_set_table_limit((size_t)16 << 20);
    return 0;
}

/* Writes data to "$TMPDIR/dualbragg-fuzz-<pid>.<tag>" and returns that name (static storage). */
static inline const char *fuzz_temp_file(const char *tag, const uint8_t *data, size_t size)
{
    static char path[4096];
    const char *base = getenv("TMPDIR");
    snprintf(path, sizeof path, "%s/dualbragg-fuzz-%ld.%s", base && *base ? base : "/tmp", (long)getpid(), tag);
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    if (size && fwrite(data, 1, size, f) != size) abort();
    if (fclose(f)) abort();
    return path;
}

/* Parses args and, when they parse, creates (and destroys) the simulation: reads every input file and derives the
 * geometry, without rendering. */
static inline void fuzz_config_and_create(int argc, const char *const *argv)
{
    db_error err;
    db_config *cfg = db_config_create();
    if (!cfg) abort();
    if (db_config_parse(cfg, argc, argv, &err) == DB_OK) {
        db_sim *sim = NULL;
        if (db_sim_create(&sim, cfg, NULL, &err) == DB_OK) {
            int f = 0, s = 0;
            db_sim_size(sim, &f, &s);
            if (f <= 0 || s <= 0) abort();
            db_sim_destroy(sim);
        } else if (!err.message[0]) {
            abort(); /* every failure must say why */
        }
    } else if (!err.message[0]) {
        abort();
    }
    db_config_destroy(cfg);
}

#endif
