/* Output files are written to a temporary name in the same folder and renamed into place, so a crash or a
 * full disk never leaves a half-written image that looks valid. */
#define _POSIX_C_SOURCE 200809L
#include "fileio.h"
#include "error.h"
#include "tempfiles.h"

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

/* DUALBRAGG_FSYNC set and not "0": every output file is flushed to the disk before it is renamed into place. */
static int durable_writes(void)
{
    const char *e = getenv("DUALBRAGG_FSYNC");
    return e && *e && strcmp(e, "0") != 0;
}

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

/* "<path>.dualbragg.tmp.<pid>.<n>" (whose it is, and matched by the project's *.tmp.* ignore rule); a shorter name
 * in the same folder when the file name is so long that the suffix could exceed the system's name limit. */
static void make_temp_name(char *tmp, size_t size, const char *path)
{
    unsigned id = atomic_fetch_add(&temp_name_counter, 1u);
    long pid = (long)getpid();
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    if (strlen(base) < 200) {
        snprintf(tmp, size, "%s.dualbragg.tmp.%ld.%u", path, pid, id);
    } else {
        int dir_len = (int)(base - path);
        snprintf(tmp, size, "%.*sdualbragg.tmp.%ld.%u", dir_len, path, pid, id);
    }
}

/* Creates an empty temporary file in path's folder; its name is returned in *tmp_out (malloc'd). */
static int create_temp(const char *path, char **tmp_out, int *fd_out, db_error *err)
{
    size_t tmp_size = strlen(path) + 64;
    char *tmp = malloc(tmp_size);
    if (!tmp)
        return db_fail(err, DB_ERR_NOMEM, "out of memory writing '%s'", path);
    int fd = -1;
    for (int attempt = 0; attempt < 100; attempt++) {
        make_temp_name(tmp, tmp_size, path);
        /* known before it exists: an interrupt between its creation and its registration would leave it */
        db_temp_register(tmp); /* removed by an interrupt until it is renamed or removed (tempfiles.h) */
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd >= 0)
            break;
        int errnum = errno;
        db_temp_forget(tmp);
        errno = errnum;
        if (errnum != EEXIST)
            break;
    }
    if (fd < 0) {
        int errnum = errno;
        free(tmp);
        return io_failure(err, path, errnum);
    }
    *tmp_out = tmp;
    *fd_out = fd;
    return DB_OK;
}

static int check_buffers(const char *path, const void *const *bufs, const size_t *lens, int n, db_error *err)
{
    if (!path || !*path || n < 0 || (n > 0 && (!bufs || !lens)))
        return db_fail(err, DB_ERR_ARGUMENT, "db_write_file_atomic: no file name or bad buffer list");
    for (int i = 0; i < n; i++)
        if (lens[i] > 0 && !bufs[i])
            return db_fail(err, DB_ERR_ARGUMENT, "db_write_file_atomic: buffer %d of '%s' is NULL", i, path);
    return DB_OK;
}

int db_is_device(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode);
}

int db_write_file_temp(const char *path, const void *const *bufs, const size_t *lens, int n, char **tmp_out,
                       db_error *err)
{
    *tmp_out = NULL;
    int rc = check_buffers(path, bufs, lens, n, err);
    if (rc)
        return rc;
    if (db_is_device(path))
        return write_in_place(path, bufs, lens, n, err);

    char *tmp;
    int fd;
    rc = create_temp(path, &tmp, &fd, err);
    if (rc)
        return rc;
    int failed = 0, errnum = 0;
    if (write_buffers(fd, bufs, lens, n) != 0) {
        failed = 1;
        errnum = errno;
    }
    /* Durability against a system crash (without fsync, a power loss after the rename can leave an empty file under
     * the final name) only when asked with DUALBRAGG_FSYNC=1: it waits for the disk, 54 ms of a 0.3 s light run here
     * (strace), which the reference does not pay; the rename alone keeps a killed or failed run from leaving a
     * half-written file. Some file systems do not support fsync (EINVAL); that is not a write failure. */
    if (!failed && durable_writes() && fsync(fd) != 0 && errno != EINVAL && errno != ENOTSUP) {
        failed = 1;
        errnum = errno;
    }
    if (close(fd) != 0 && !failed) {
        failed = 1;
        errnum = errno;
    }
    if (failed) {
        unlink(tmp);
        db_temp_forget(tmp);
        free(tmp);
        return io_failure(err, path, errnum);
    }
    *tmp_out = tmp;
    return DB_OK;
}

int db_commit_temp(char *tmp, const char *path, db_error *err)
{
    if (!tmp)
        return DB_OK; /* written in place */
    int rc = DB_OK;
    if (rename(tmp, path) != 0) {
        int errnum = errno;
        unlink(tmp);
        rc = io_failure(err, path, errnum);
    }
    db_temp_forget(tmp);
    free(tmp);
    return rc;
}

void db_abort_temp(char *tmp)
{
    if (!tmp)
        return;
    unlink(tmp);
    db_temp_forget(tmp);
    free(tmp);
}

int db_write_file_atomic(const char *path, const void *const *bufs, const size_t *lens, int n, db_error *err)
{
    char *tmp;
    int rc = db_write_file_temp(path, bufs, lens, n, &tmp, err);
    if (rc)
        return rc;
    return db_commit_temp(tmp, path, err);
}

/* ---- checks of output paths and the output set ---- */

/* The folder part of path ("." when there is none, "/" for a file in the root). */
static void folder_of(const char *path, char *dir, size_t size)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, size, ".");
    else if (slash == path)
        snprintf(dir, size, "/");
    else
        snprintf(dir, size, "%.*s", (int)(slash - path), path);
}

int db_check_output_path(const char *path, const char *flag, db_error *err)
{
    const char *what = flag ? flag : "output";
    if (!path || !*path)
        return db_fail(err, DB_ERR_ARGUMENT, "%s: empty file name", what);
    size_t len = strlen(path);
    if (path[len - 1] == '/')
        return db_fail(err, DB_ERR_IO, "cannot write '%s' (%s): expected a file name, got a folder name", path, what);
    struct stat st;
    if (stat(path, &st) == 0) {
        if (S_ISDIR(st.st_mode))
            return db_fail(err, DB_ERR_IO, "cannot write '%s' (%s): it is a folder, expected a file name", path, what);
        if (!S_ISREG(st.st_mode)) {
            if (access(path, W_OK) != 0)
                return db_fail(err, DB_ERR_IO, "cannot write '%s' (%s): %s", path, what, strerror(errno));
            return DB_OK; /* a device, written in place */
        }
    }
    char dir[4096];
    if (len >= sizeof dir)
        return db_fail(err, DB_ERR_IO, "cannot write '%s' (%s): the name is too long", path, what);
    folder_of(path, dir, sizeof dir);
    if (stat(dir, &st) != 0)
        return db_fail(err, DB_ERR_IO, "cannot write '%s' (%s): folder '%s' %s", path, what, dir,
                       errno == ENOENT ? "does not exist" : strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return db_fail(err, DB_ERR_IO, "cannot write '%s' (%s): '%s' is not a folder", path, what, dir);
    if (access(dir, W_OK | X_OK) != 0)
        return db_fail(err, DB_ERR_IO, "cannot write '%s' (%s): folder '%s' is not writable (%s)", path, what, dir,
                       strerror(errno));
    return DB_OK;
}

int db_same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    if (a && b && stat(a, &sa) == 0 && stat(b, &sb) == 0)
        return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
    if (!a || !b)
        return 0;
    /* a file that does not exist yet: the same folder (by identity) and the same name */
    const char *na = strrchr(a, '/'), *nb = strrchr(b, '/');
    na = na ? na + 1 : a;
    nb = nb ? nb + 1 : b;
    if (strcmp(na, nb) != 0)
        return 0;
    char da[4096], db[4096];
    if (strlen(a) >= sizeof da || strlen(b) >= sizeof db)
        return strcmp(a, b) == 0;
    folder_of(a, da, sizeof da);
    folder_of(b, db, sizeof db);
    if (stat(da, &sa) == 0 && stat(db, &sb) == 0)
        return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
    return strcmp(a, b) == 0;
}

struct db_out_set {
    int n, cap;
    char **paths; /* final names */
    char **tmps;  /* temporary names; NULL for a device written in place */
};

db_out_set *db_out_set_create(void)
{
    return calloc(1, sizeof(db_out_set));
}

const char *db_out_set_add(db_out_set *s, const char *path, db_error *err)
{
    if (!s || !path || !*path) {
        db_fail(err, DB_ERR_ARGUMENT, "db_out_set_add: no file name");
        return NULL;
    }
    if (s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 8;
        char **p = realloc(s->paths, (size_t)cap * sizeof *p);
        if (p)
            s->paths = p;
        char **t = realloc(s->tmps, (size_t)cap * sizeof *t);
        if (t)
            s->tmps = t;
        if (!p || !t) {
            db_fail(err, DB_ERR_NOMEM, "out of memory");
            return NULL;
        }
        s->cap = cap;
    }
    char *copy = strdup(path);
    if (!copy) {
        db_fail(err, DB_ERR_NOMEM, "out of memory");
        return NULL;
    }
    char *tmp = NULL;
    if (!db_is_device(path)) {
        int fd;
        if (create_temp(path, &tmp, &fd, err)) {
            free(copy);
            return NULL;
        }
        close(fd);
    }
    s->paths[s->n] = copy;
    s->tmps[s->n] = tmp;
    s->n++;
    return tmp ? tmp : copy;
}

int db_out_set_commit(db_out_set *s, db_error *err)
{
    /* last checks before the first rename: a target that became a folder would fail half-way */
    for (int i = 0; i < s->n; i++) {
        struct stat st;
        if (s->tmps[i] && stat(s->paths[i], &st) == 0 && S_ISDIR(st.st_mode)) {
            int rc = db_fail(err, DB_ERR_IO, "cannot write '%s': it is a folder, expected a file name", s->paths[i]);
            db_out_set_abort(s);
            return rc;
        }
    }
    int rc = DB_OK;
    db_temp_hold(); /* an interrupt now would leave some outputs replaced and others not */
    for (int i = 0; i < s->n; i++) {
        if (!s->tmps[i])
            continue;
        if (!rc && rename(s->tmps[i], s->paths[i]) != 0)
            rc = io_failure(err, s->paths[i], errno);
        if (rc)
            unlink(s->tmps[i]);
        db_temp_forget(s->tmps[i]);
        free(s->tmps[i]);
        s->tmps[i] = NULL;
    }
    db_temp_release();
    return rc;
}

void db_out_set_abort(db_out_set *s)
{
    if (!s)
        return;
    for (int i = 0; i < s->n; i++) {
        if (s->tmps[i]) {
            unlink(s->tmps[i]);
            db_temp_forget(s->tmps[i]);
        }
        free(s->tmps[i]);
        s->tmps[i] = NULL;
    }
}

void db_out_set_destroy(db_out_set *s)
{
    if (!s)
        return;
    db_out_set_abort(s);
    for (int i = 0; i < s->n; i++)
        free(s->paths[i]);
    free(s->paths);
    free(s->tmps);
    free(s);
}

/* ---- bounded reading ---- */

int db_input_open(db_input *in, const char *flag, const char *path, db_error *err)
{
    memset(in, 0, sizeof *in);
    in->flag = flag ? flag : "";
    in->path = path ? path : "";
    in->size = -1;
    if (!path || !*path) return db_fail(err, DB_ERR_ARGUMENT, "%s%sno file name", in->flag, *in->flag ? ": " : "");
    in->f = fopen(path, "rb");
    struct stat st;
    int errnum = !in->f ? errno : fstat(fileno(in->f), &st) != 0 ? errno : S_ISDIR(st.st_mode) ? EISDIR : 0;
    if (errnum) {
        db_input_close(in);
        return db_fail(err, DB_ERR_IO, "%s%scannot read '%s': %s", in->flag, *in->flag ? ": " : "", path,
                       strerror(errnum));
    }
    if (S_ISREG(st.st_mode)) in->size = (long long)st.st_size;
    return DB_OK;
}

int db_input_fill(db_input *in, size_t want, db_error *err)
{
    while (in->len < want && !in->at_end) {
        /* a stream grows its buffer geometrically; a regular file is read in one step, one byte past its size
         * (a file that grew since fstat is noticed), and never past want */
        size_t step = in->len < 65536 ? 65536 : in->len;
        if (in->size >= 0 && (unsigned long long)in->size >= in->len && (unsigned long long)in->size - in->len < SIZE_MAX / 2)
            step = (size_t)in->size - in->len + 1;
        size_t target = want - in->len > step ? in->len + step : want;
        if (target + 1 > in->cap) {
            /* geometric growth (small steps stay cheap), but never past want or a regular file's size */
            size_t cap = in->cap < SIZE_MAX / 2 && 2 * in->cap > target + 1 ? 2 * in->cap : target + 1;
            if (cap > want + 1) cap = want + 1;
            if (in->size >= 0 && (unsigned long long)cap > (unsigned long long)in->size + 2)
                cap = target + 1 > (size_t)in->size + 2 ? target + 1 : (size_t)in->size + 2;
            char *bigger = realloc(in->buf, cap);
            if (!bigger)
                return db_fail(err, DB_ERR_NOMEM, "%s%s'%s': out of memory after reading %zu bytes", DB_INPUT_NAME(in),
                               in->len);
            in->buf = bigger;
            in->cap = cap;
        }
        errno = 0;
        size_t got = fread(in->buf + in->len, 1, target - in->len, in->f);
        in->len += got;
        in->buf[in->len] = '\0';
        if (in->len < target) {
            if (ferror(in->f))
                return db_fail(err, DB_ERR_IO, "%s%scannot read '%s': %s", in->flag, *in->flag ? ": " : "", in->path,
                               strerror(errno ? errno : EIO));
            in->at_end = 1;
        }
    }
    return DB_OK;
}

int db_input_fill_until(db_input *in, char c, size_t limit, db_error *err)
{
    size_t searched = 0;
    for (;;) {
        size_t upto = in->len < limit ? in->len : limit;
        if ((upto > searched && memchr(in->buf + searched, c, upto - searched)) || upto == limit || in->at_end)
            return DB_OK;
        searched = upto;
        /* small steps: a header is a few hundred bytes and the data after it need not be read yet */
        size_t want = in->len + 4096 < limit ? in->len + 4096 : limit;
        int rc = db_input_fill(in, want, err);
        if (rc) return rc;
    }
}

int db_input_read_exact(db_input *in, size_t total, const char *layout, db_error *err)
{
    if (in->size >= 0 && (unsigned long long)in->size < (unsigned long long)total)
        return db_fail(err, DB_ERR_FORMAT, "%s%s'%s' is truncated: it has %lld bytes, expected %zu (%s)", DB_INPUT_NAME(in),
                       in->size, total, layout);
    if (in->size >= 0 && (unsigned long long)in->size > (unsigned long long)total)
        return db_fail(err, DB_ERR_FORMAT, "%s%s'%s' has %lld bytes, %llu more than the %zu expected (%s)",
                       DB_INPUT_NAME(in), in->size, (unsigned long long)in->size - total, total, layout);
    int rc = db_input_fill(in, total + 1, err);
    if (rc) return rc;
    if (in->len < total)
        return db_fail(err, DB_ERR_FORMAT, "%s%s'%s' is truncated: it ends after %zu bytes, expected %zu (%s)",
                       DB_INPUT_NAME(in), in->len, total, layout);
    if (in->len > total)
        return db_fail(err, DB_ERR_FORMAT, "%s%s'%s' has more than the %zu bytes expected (%s)", DB_INPUT_NAME(in), total,
                       layout);
    return DB_OK;
}

void db_input_close(db_input *in)
{
    if (in->f) fclose(in->f);
    in->f = NULL;
    free(in->buf);
    in->buf = NULL;
    in->len = in->cap = 0;
}

/* The bytes held, NUL-terminated (an empty file too), handed to the caller; NULL when out of memory. */
static char *input_take(db_input *in, size_t *len)
{
    char *data = in->buf ? in->buf : calloc(1, 1);
    *len = data ? in->len : 0;
    in->buf = NULL;
    in->len = in->cap = 0;
    return data;
}

int db_read_text(const char *flag, const char *path, size_t max_bytes, const char *expected, char **data,
                 size_t *len, db_error *err)
{
    *data = NULL;
    *len = 0;
    db_input in;
    int rc = db_input_open(&in, flag, path, err);
    if (rc) return rc;
    const char *fl = in.flag, *sp = *fl ? " " : "";
    if (in.size >= 0 && (unsigned long long)in.size > max_bytes) {
        rc = db_fail(err, DB_ERR_FORMAT, "%s%s%s: the file has %lld bytes, more than the limit of %zu bytes (expected %s)",
                     fl, sp, path, in.size, max_bytes, expected);
        goto done;
    }
    /* NUL bytes and line lengths are checked as the data arrive, so /dev/zero or a newline-less stream stops at
     * its first bytes */
    size_t scanned = 0, line_start = 0;
    long line = 1;
    while (!rc && !in.at_end && in.len <= max_bytes) {
        size_t want = in.len + (in.len < 65536 ? 65536 : in.len);
        if (want > max_bytes + 1 || in.size >= 0) want = max_bytes + 1; /* a regular file: in one step */
        if ((rc = db_input_fill(&in, want, err)) || in.len == scanned) break;
        const char *nul = memchr(in.buf + scanned, '\0', in.len - scanned);
        size_t end = nul ? (size_t)(nul - in.buf) : in.len;
        const char *nl;
        while (scanned < end && (nl = memchr(in.buf + scanned, '\n', end - scanned))) {
            if ((size_t)(nl - in.buf) - line_start > DB_TEXT_MAX_LINE) break; /* reported below */
            line++;
            line_start = scanned = (size_t)(nl - in.buf) + 1;
        }
        scanned = end;
        if (end - line_start > DB_TEXT_MAX_LINE)
            rc = db_fail(err, DB_ERR_FORMAT, "%s%s%s:%ld: line longer than %d bytes (expected %s)", fl, sp, path, line,
                         DB_TEXT_MAX_LINE, expected);
        else if (nul)
            rc = db_fail(err, DB_ERR_FORMAT, "%s%s%s:%ld: NUL byte in a text file (expected %s)", fl, sp, path, line,
                         expected);
    }
    if (!rc && in.len > max_bytes)
        rc = db_fail(err, DB_ERR_FORMAT,
                     "%s%s%s: more than the limit of %zu bytes (expected %s; a stream that does not end?)",
                     fl, sp, path, max_bytes, expected);
    if (!rc && !(*data = input_take(&in, len))) rc = db_fail(err, DB_ERR_NOMEM, "out of memory reading '%s'", path);
done:
    db_input_close(&in);
    return rc;
}

int db_read_file(const char *path, char **data, size_t *len, db_error *err)
{
    *data = NULL;
    *len = 0;
    if (!path || !*path) return db_fail(err, DB_ERR_ARGUMENT, "db_read_file: no file name");
    db_input in;
    int rc = db_input_open(&in, NULL, path, err);
    if (!rc && in.size > (long long)DB_READ_FILE_MAX_BYTES)
        rc = db_fail(err, DB_ERR_FORMAT, "'%s' has %lld bytes, more than the limit of %zu", path, in.size,
                     DB_READ_FILE_MAX_BYTES);
    if (!rc) rc = db_input_fill(&in, DB_READ_FILE_MAX_BYTES + 1, err);
    if (!rc && in.len > DB_READ_FILE_MAX_BYTES)
        rc = db_fail(err, DB_ERR_FORMAT, "'%s' has more than %zu bytes (a stream that does not end?)", path,
                     DB_READ_FILE_MAX_BYTES);
    if (!rc && !(*data = input_take(&in, len))) rc = db_fail(err, DB_ERR_NOMEM, "out of memory reading '%s'", path);
    db_input_close(&in);
    return rc;
}
