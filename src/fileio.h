/* Whole-file reading and atomic writing of output files. */
#ifndef DB_FILEIO_H
#define DB_FILEIO_H

#include "dualbragg.h"
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Writes the concatenation of n buffers (bufs[i] may be NULL when lens[i] is 0) to path through a temporary
 * file in the same folder and a rename, so that path holds either its old content or the complete new one.
 * On failure the temporary file is removed and DB_ERR_IO is returned with a message naming path and the
 * system error. A path that exists and is not a regular file (a device such as /dev/null, a FIFO) is written
 * in place, because replacing it by a regular file would be wrong. */
int db_write_file_atomic(const char *path, const void *const *bufs, const size_t *lens, int n, db_error *err);

/* Reads the whole file into a malloc'd buffer with one NUL byte appended (not counted in *len), so text
 * parsers can stop at it. On failure *data is NULL and *len 0. */
int db_read_file(const char *path, char **data, size_t *len, db_error *err);

#ifdef __cplusplus
}
#endif
#endif
