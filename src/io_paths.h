/* io_paths.h: which files a program reads and writes, checked before any work so that no output replaces an input
 * (a user's hkl, boxes, mask or observed image) or another output. Used by dualbragg, dualbragg-refine and
 * dualbragg-gradcheck alike. */
#ifndef DB_IO_PATHS_H
#define DB_IO_PATHS_H

#include "dualbragg.h"

typedef struct db_named_path {
    const char *path;
    const char *flag; /* the option the user typed, for the message: "-hkl", "-json", ... */
} db_named_path;

/* The most inputs db_io_inputs gives: the configuration's files and the Fdump cache. */
#define DB_IO_MAX_INPUTS 8

/* The files a simulation built from cfg reads: -hkl, -mat, -sourcefile, -mask, -img, -boxes, and the Fdump cache
 * (-dump, default Fdump.bin) when it exists and protect_fdump is nonzero (programs that never write it protect it
 * whether or not -hkl makes it unused: it is the cache a later run reads). Fills in[] (DB_IO_MAX_INPUTS entries)
 * and returns the count. */
int db_io_inputs(const db_config *cfg, int protect_fdump, db_named_path *in);

/* DB_OK when no output is the same file as an input (same device and inode through links and "./" spellings, or
 * the same name in the same folder for a file not yet there) or as another output; else DB_ERR_ARGUMENT with a
 * message naming both flags and paths. Devices (/dev/null) may take several outputs; NULL paths are skipped. */
int db_io_check_distinct(const db_named_path *out, int nout, const db_named_path *in, int nin, db_error *err);

#endif
