/* Output files are written to a temporary name in the same folder and renamed into place, so a crash or a
 * full disk never leaves a half-written image that looks valid. */
#define _POSIX_C_SOURCE 200809L
#include "fileio.h"
#include "error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

/* Distinguishes temporary names of concurrent writers inside one process; the pid does it across processes. */
static atomic_uint temp_name_counter;

static int write_all(int fd, const void *buf, size_t len)
{
    const unsigned char *p = buf;
    while (len > 0) {
        size_t chunk = len < ((size_t)1 << 30) ? len : ((size_t)1 << 30);
        ssize_t written = write(fd, p, chunk);
        if (written < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += written;
        len -= (size_t)written;
    }
    return 0;
}

static int write_buffers(int fd, const void *const *bufs, const size_t *lens, int n)
{
    for (int i = 0; i < n; i++)
        if (lens[i] > 0 && write_all(fd, bufs[i], lens[i]) != 0)
            return -1;
    return 0;
}

static int io_failure(db_error *err, const char *path, int errnum)
{
    return db_fail(err, DB_ERR_IO, "cannot write '%s': %s", path, strerror(errnum));
}

/* Devices and FIFOs (e.g. /dev/null) cannot be replaced atomically and must not be replaced at all. */
static int write_in_place(const char *path, const void *const *bufs, const size_t *lens, int n, db_error *err)
{
    int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
    if (fd < 0)
        return io_failure(err, path, errno);
    int failed = write_buffers(fd, bufs, lens, n) != 0;
    int errnum = errno;
    if (close(fd) != 0 && !failed) {
        failed = 1;
        errnum = errno;
    }
    return failed ? io_failure(err, path, errnum) : DB_OK;
}

/* "<path>.tmp.<pid>.<n>" (matched by the project's *.tmp.* ignore rule); a shorter name in the same folder
 * when the file name is so long that the suffix could exceed the system's name limit. */
static void make_temp_name(char *tmp, size_t size, const char *path)
{
    unsigned id = atomic_fetch_add(&temp_name_counter, 1u);
    long pid = (long)getpid();
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    if (strlen(base) < 200) {
        snprintf(tmp, size, "%s.tmp.%ld.%u", path, pid, id);
    } else {
        int dir_len = (int)(base - path);
        snprintf(tmp, size, "%.*sdualbragg.tmp.%ld.%u", dir_len, path, pid, id);
    }
}

int db_write_file_atomic(const char *path, const void *const *bufs, const size_t *lens, int n, db_error *err)
{
    if (!path || !*path || n < 0 || (n > 0 && (!bufs || !lens)))
        return db_fail(err, DB_ERR_ARGUMENT, "db_write_file_atomic: no file name or bad buffer list");
    for (int i = 0; i < n; i++)
        if (lens[i] > 0 && !bufs[i])
            return db_fail(err, DB_ERR_ARGUMENT, "db_write_file_atomic: buffer %d of '%s' is NULL", i, path);

    struct stat st;
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))
        return write_in_place(path, bufs, lens, n, err);

    size_t tmp_size = strlen(path) + 64;
    char *tmp = malloc(tmp_size);
    if (!tmp)
        return db_fail(err, DB_ERR_NOMEM, "out of memory writing '%s'", path);

    int fd = -1;
    for (int attempt = 0; attempt < 100; attempt++) {
        make_temp_name(tmp, tmp_size, path);
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd >= 0 || errno != EEXIST)
            break;
    }
    if (fd < 0) {
        int errnum = errno;
        free(tmp);
        return io_failure(err, path, errnum);
    }

    int failed = 0, errnum = 0;
    if (write_buffers(fd, bufs, lens, n) != 0) {
        failed = 1;
        errnum = errno;
    }
    /* Without fsync a system crash after the rename can leave an empty file under the final name.
     * Some file systems do not support it (EINVAL); that is not a write failure. */
    if (!failed && fsync(fd) != 0 && errno != EINVAL && errno != ENOTSUP) {
        failed = 1;
        errnum = errno;
    }
    if (close(fd) != 0 && !failed) {
        failed = 1;
        errnum = errno;
    }
    if (!failed && rename(tmp, path) != 0) {
        failed = 1;
        errnum = errno;
    }
    if (failed) {
        unlink(tmp);
        free(tmp);
        return io_failure(err, path, errnum);
    }
    free(tmp);
    return DB_OK;
}

int db_read_file(const char *path, char **data, size_t *len, db_error *err)
{
    *data = NULL;
    *len = 0;
    if (!path || !*path)
        return db_fail(err, DB_ERR_ARGUMENT, "db_read_file: no file name");
    FILE *f = fopen(path, "rb");
    if (!f)
        return db_fail(err, DB_ERR_IO, "cannot read '%s': %s", path, strerror(errno));

    size_t cap = 65536, used = 0;
    char *buf = malloc(cap);
    if (!buf) {
        fclose(f);
        return db_fail(err, DB_ERR_NOMEM, "out of memory reading '%s'", path);
    }
    for (;;) {
        if (cap - used < 2) { /* keep room for the NUL */
            char *bigger = cap <= SIZE_MAX / 2 ? realloc(buf, cap * 2) : NULL;
            if (!bigger) {
                free(buf);
                fclose(f);
                return db_fail(err, DB_ERR_NOMEM, "out of memory reading '%s'", path);
            }
            buf = bigger;
            cap *= 2;
        }
        errno = 0;
        size_t got = fread(buf + used, 1, cap - used - 1, f);
        used += got;
        if (got == 0) {
            if (ferror(f)) {
                int errnum = errno ? errno : EIO;
                free(buf);
                fclose(f);
                return db_fail(err, DB_ERR_IO, "cannot read '%s': %s", path, strerror(errnum));
            }
            break;
        }
    }
    fclose(f);
    buf[used] = '\0';
    *data = buf;
    *len = used;
    return DB_OK;
}
