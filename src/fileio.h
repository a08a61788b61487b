/* Whole-file reading and atomic writing of output files. */
#ifndef DB_FILEIO_H
#define DB_FILEIO_H

#include "dualbragg.h"
#include <stddef.h>
#include <stdio.h>

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

/* 1 when path exists and is neither a regular file nor a folder (/dev/null, a FIFO): written in place, never
 * replaced, and it may take several outputs. */
int db_is_device(const char *path);

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
 * parsers can stop at it. At most DB_READ_FILE_MAX_BYTES: a larger file (or a stream that does not end) is
 * DB_ERR_FORMAT. On failure *data is NULL and *len 0. */
#define DB_READ_FILE_MAX_BYTES ((size_t)1 << 30)
int db_read_file(const char *path, char **data, size_t *len, db_error *err);

/* ---- bounded reading: no reader trusts a size it has not checked ----
 * An input is read only as far as its reader needs: a regular file's size (fstat) is checked before its data
 * are read, and anything else (a FIFO, a device such as /dev/zero) is read at most one byte past what is
 * needed, so a stream that never ends is an error, never a memory blow-up. Messages name the flag, the file
 * and what was expected. */

/* The longest line of a text input, its newline not counted. Every valid line of the text formats read here
 * (hkl, boxes, sources, matrix) holds at most five numbers, under 200 bytes even with generous padding or a
 * comment; a longer line is not one of them (or a stream that never sends a newline). */
#define DB_TEXT_MAX_LINE 4096

typedef struct db_input {
    const char *flag; /* the option that named the file ("-hkl"), "" when none */
    const char *path;
    FILE *f;
    long long size; /* a regular file's size from fstat, -1 for anything else */
    char *buf;      /* the bytes read so far, buf[len] == '\0' */
    size_t len, cap;
    int at_end; /* the file ended at len */
} db_input;

/* "%s%s'%s'" arguments naming an input in messages: -obs 'x.img' (or 'x.img' without a flag) */
#define DB_INPUT_NAME(in) (in)->flag, *(in)->flag ? " " : "", (in)->path

/* Opens path (flag may be NULL); a folder or an unreadable file is DB_ERR_IO with the system's reason. */
int db_input_open(db_input *in, const char *flag, const char *path, db_error *err);
/* Reads until at least want bytes are held or the file ends, never past want. */
int db_input_fill(db_input *in, size_t want, db_error *err);
/* Reads until byte c is among the first limit bytes held, or limit bytes are held, or the file ends. */
int db_input_fill_until(db_input *in, char c, size_t limit, db_error *err);
/* Makes the input exactly total bytes long, or fails with DB_ERR_FORMAT naming the sizes and layout (what
 * makes total, e.g. "SIZE1 x SIZE2 x 2 bytes"): a regular file of another size is refused before its data
 * are read; a stream is read to total bytes and one byte more is refused. */
int db_input_read_exact(db_input *in, size_t total, const char *layout, db_error *err);
void db_input_close(db_input *in);

/* A whole text input of at most max_bytes, each line at most DB_TEXT_MAX_LINE bytes and no NUL byte, checked
 * as it is read; expected says what its lines hold ("lines 'h k l F'") for the messages, which name the flag,
 * the file and the line. *data is malloc'd and NUL-terminated; on failure it is NULL. */
int db_read_text(const char *flag, const char *path, size_t max_bytes, const char *expected, char **data,
                 size_t *len, db_error *err);

#ifdef __cplusplus
}
#endif
#endif
