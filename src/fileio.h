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

/* The same in two steps: db_write_file_temp writes the buffers to a new temporary file in path's folder and
 * returns its malloc'd name in *tmp_out (NULL when path is a device, written in place at once); then
 * db_commit_temp renames it to path, or db_abort_temp removes it. Both free the name. */
int db_write_file_temp(const char *path, const void *const *bufs, const size_t *lens, int n, char **tmp_out,
                       db_error *err);
int db_commit_temp(char *tmp, const char *path, db_error *err);
void db_abort_temp(char *tmp);

/* Checks, before anything is written, that path can become an output file: not empty, not a folder name, not
 * an existing folder, and its folder exists and is writable (a device such as /dev/null must be writable).
 * flag names the option in the message. DB_ERR_IO on failure. */
int db_check_output_path(const char *path, const char *flag, db_error *err);

/* 1 when a and b name the same file: the same device and inode when both exist, else the same name in the
 * same folder (compared by identity, so "x", "./x" and "dir/../x" match). */
int db_same_file(const char *a, const char *b);

/* A set of output files written as one transaction: db_out_set_add reserves a temporary name in each
 * output's folder (returned, owned by the set; a device is returned as is and written in place), the caller
 * writes there, and db_out_set_commit renames every temporary into place, or db_out_set_abort (also
 * db_out_set_destroy without a commit) removes them all. */
typedef struct db_out_set db_out_set;
db_out_set *db_out_set_create(void);
const char *db_out_set_add(db_out_set *s, const char *path, db_error *err);
int db_out_set_commit(db_out_set *s, db_error *err);
void db_out_set_abort(db_out_set *s);
void db_out_set_destroy(db_out_set *s);

/* Reads the whole file into a malloc'd buffer with one NUL byte appended (not counted in *len), so text
 * parsers can stop at it. On failure *data is NULL and *len 0. */
int db_read_file(const char *path, char **data, size_t *len, db_error *err);

#ifdef __cplusplus
}
#endif
#endif
