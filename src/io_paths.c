/* io_paths.c: see io_paths.h. */
#define _POSIX_C_SOURCE 200809L
#include "io_paths.h"
#include "config.h"
#include "error.h"
#include "fileio.h"

#include <unistd.h>

int db_io_inputs(const db_config *cfg, int protect_fdump, db_named_path *in)
{
    const char *paths[DB_CONFIG_MAX_INPUTS], *flags[DB_CONFIG_MAX_INPUTS];
    int n = db_config_input_files(cfg, paths, flags);
    for (int k = 0; k < n; k++) {
        in[k].path = paths[k];
        in[k].flag = flags[k];
    }
    const char *dump = db_config_output_path(cfg, DB_OUT_FDUMP);
    if (dump && access(dump, F_OK) == 0 && (protect_fdump || !db_config_has_hkl(cfg))) {
        in[n].path = dump;
        in[n++].flag = db_config_has_hkl(cfg) ? "-dump (the Fdump cache)" : "-dump (read without -hkl)";
    }
    return n;
}

int db_io_check_distinct(const db_named_path *out, int nout, const db_named_path *in, int nin, db_error *err)
{
    for (int i = 0; i < nout; i++) {
        if (!out[i].path) continue;
        for (int k = 0; k < nin; k++)
            if (in[k].path && db_same_file(out[i].path, in[k].path))
                return db_fail(err, DB_ERR_ARGUMENT, "%s '%s' and %s '%s' are the same file: the output would overwrite the input",
                               out[i].flag, out[i].path, in[k].flag, in[k].path);
        for (int j = 0; j < i; j++)
            if (out[j].path && !db_is_device(out[i].path) && db_same_file(out[i].path, out[j].path))
                return db_fail(err, DB_ERR_ARGUMENT, "%s '%s' and %s '%s' are the same file: one output would replace the other",
                               out[j].flag, out[j].path, out[i].flag, out[i].path);
    }
    return DB_OK;
}
