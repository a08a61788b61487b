/* test_hardening.c: issue 8 at the library level: the readers' size arithmetic and limits, the two-phase
 * output writer and the output transaction, the output-path checks, the configuration's value checks, and the
 * gradcheck tool's refusals (run as a program). The command-line behaviour is in test_cli_errors.c. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "fifo_writer.h"

#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <sys/resource.h>

#include "cli_harness.h"
#include "config.h"
#include "error.h"
#include "fileio.h"
#include "hkl.h"
#include "observed.h"
#include "smv.h"

static char DIR_[4096];

static int setup(void **state)
{
    (void)state;
    return harness_mkdtemp(DIR_, sizeof DIR_);
}

static int teardown(void **state)
{
    (void)state;
    harness_rmtree(DIR_);
    return 0;
}

static void path_in(char *buf, size_t size, const char *name)
{
    snprintf(buf, size, "%s/%s", DIR_, name);
}

static void put(const char *name, const void *data, size_t len)
{
    char p[4200];
    path_in(p, sizeof p, name);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    if (len) assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static void put_text(const char *name, const char *text)
{
    put(name, text, strlen(text));
}

static int exists(const char *name)
{
    char p[4200];
    struct stat st;
    path_in(p, sizeof p, name);
    return stat(p, &st) == 0;
}

/* number of entries in the folder whose name contains ".tmp." */
static int temporaries(void)
{
    DIR *d = opendir(DIR_);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) n += strstr(e->d_name, ".tmp.") != NULL;
    closedir(d);
    return n;
}

/* ---- structure-factor tables ---- */

static int fdump_from_header(const char *header, size_t data_bytes, db_hkl_table *t, db_error *err)
{
    size_t hl = strlen(header);
    unsigned char *buf = calloc(1, hl + data_bytes + 1);
    assert_non_null(buf);
    memcpy(buf, header, hl);
    put("t.bin", buf, hl + data_bytes);
    free(buf);
    char p[4200];
    path_in(p, sizeof p, "t.bin");
    return db_fdump_read(p, t, err);
}

/* headers whose ranges overflow int, or whose table exceeds the limit, are refused before any allocation; the
 * size is never taken modulo 2^32 or 2^64 (a wrapped size of 0 bytes matched an empty data block before) */
static void test_fdump_header_sizes(void **state)
{
    (void)state;
    db_hkl_table t;
    db_error err;
    static const char *const bad[] = {
        "0 65534 0 2147483646 0 131070\n\f", "-2147483648 2147483647 0 0 0 0\n\f", "0 2147483647 0 0 0 0\n\f",
        "0 0 0 0 -2147483648 0\n\f",         "0 2147483648 0 0 0 0\n\f",           "0 2047 0 2047 0 1023\n\f",
        "1 0 0 0 0 0\n\f", /* h_max < h_min */
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int rc = fdump_from_header(bad[i], 0, &t, &err);
        if (rc == DB_OK) fail_msg("header '%s' was accepted", bad[i]);
        assert_null(t.F);
        assert_non_null(strstr(err.message, "t.bin"));
    }
    /* the header must end with a newline and a form feed, after six integers and nothing else */
    static const char *const malformed[] = {"0 0 0 0 0\n\f", "0 0 0 0 0 0 0\n\f", "0 0 0 0 0 0\f", "0 0 0 0 0 x\n\f",
                                            "0 0 0 0 0 0x\n\f"};
    for (size_t i = 0; i < sizeof malformed / sizeof *malformed; i++) {
        int rc = fdump_from_header(malformed[i], 8 * 8, &t, &err);
        if (rc != DB_ERR_FORMAT) fail_msg("malformed header %zu gave %d", i, rc);
        assert_non_null(strstr(err.message, "not a structure-factor cache"));
    }
    /* control: a good header with the right amount of data (2 x 2 x 2 padded entries) is read */
    assert_int_equal(fdump_from_header("0 0 0 0 0 0\n\f", 8 * 8, &t, &err), DB_OK);
    assert_int_equal(t.h_range, 1);
    db_hkl_free(&t);
    /* and one byte short of it is not */
    assert_int_equal(fdump_from_header("0 0 0 0 0 0\n\f", 8 * 8 - 1, &t, &err), DB_ERR_FORMAT);
}

/* the limit is a fixed ceiling (so the refusal does not depend on the machine beyond it) */
static void test_table_limit(void **state)
{
    (void)state;
    size_t limit = db_hkl_table_limit();
    assert_true(limit <= DB_HKL_TABLE_MAX_BYTES);
    assert_true(limit >= ((size_t)64 << 20)); /* any machine that runs the tests has 128 MiB */
    /* -390..390: 782^3 doubles = 3.6 GiB > 2 GiB: refused with the figure */
    put_text("big.hkl", "-390 -390 -390 1\n390 390 390 1\n");
    char p[4200];
    path_in(p, sizeof p, "big.hkl");
    db_hkl_table t;
    db_error err;
    assert_int_not_equal(db_hkl_read(p, 0.0, &t, &err), DB_OK);
    assert_null(t.F);
    assert_non_null(strstr(err.message, "3648.5 MiB"));
    /* -100..100 (66 MiB) is fine */
    put_text("ok.hkl", "-100 -100 -100 1\n100 100 100 1\n");
    path_in(p, sizeof p, "ok.hkl");
    assert_int_equal(db_hkl_read(p, 0.0, &t, &err), DB_OK);
    assert_int_equal(t.h_range, 201);
    db_hkl_free(&t);
    /* a lower per-process limit (the fuzzers' 16 MiB) refuses it, and 0 restores the default */
    db_hkl_set_table_limit((size_t)16 << 20);
    assert_int_equal(db_hkl_read(p, 0.0, &t, &err), DB_ERR_NOMEM);
    assert_non_null(strstr(err.message, "16.0 MiB"));
    db_hkl_set_table_limit(0);
    assert_int_equal(db_hkl_read(p, 0.0, &t, &err), DB_OK);
    db_hkl_free(&t);
}

/* hkl -> cache -> table gives the same F, and a NaN in the cache is refused with its indices */
static void test_fdump_roundtrip_and_nan(void **state)
{
    (void)state;
    put_text("s.hkl", "0 0 1 50\n1 0 0 40.5\n-1 2 0 -3\n");
    char p[4200], q[4200];
    path_in(p, sizeof p, "s.hkl");
    path_in(q, sizeof q, "s.bin");
    db_hkl_table t, u;
    db_error err;
    assert_int_equal(db_hkl_read(p, 0.0, &t, &err), DB_OK);
    assert_int_equal(db_fdump_write(q, &t, &err), DB_OK);
    assert_int_equal(db_fdump_read(q, &u, &err), DB_OK);
    size_t n = (size_t)(t.h_range + 1) * (t.k_range + 1) * (t.l_range + 1);
    assert_memory_equal(t.F, u.F, n * sizeof(double));
    db_hkl_free(&u);
    /* poison one entry: h 1 k 0 l 0 */
    size_t at = ((size_t)(1 - t.h_min) * (t.k_range + 1) + (size_t)(0 - t.k_min)) * (t.l_range + 1) + (size_t)(0 - t.l_min);
    t.F[at] = NAN;
    assert_int_equal(db_fdump_write(q, &t, &err), DB_OK);
    assert_int_equal(db_fdump_read(q, &u, &err), DB_ERR_FORMAT);
    assert_null(u.F);
    assert_non_null(strstr(err.message, "h 1 k 0 l 0"));
    t.F[at] = INFINITY;
    assert_int_equal(db_fdump_write(q, &t, &err), DB_OK);
    assert_int_equal(db_fdump_read(q, &u, &err), DB_ERR_FORMAT);
    db_hkl_free(&t);
}

/* ---- bounded reads (issue 18): no input can make a reader take memory or time without end ---- */

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

/* The address space of the children below: every refusal tested needs a few MiB (the largest, a 64 MiB -boxes
 * stream, about 130 MiB while its buffer grows); a reader that read on without bound fails with "out of
 * memory" here instead of taking the machine. Not under AddressSanitizer, whose shadow memory needs terabytes
 * of address space (there the fixed readers are bounded by themselves). */
#define CHILD_ADDRESS_SPACE ((rlim_t)1 << 30)

static void limit_this_process(void)
{
#ifndef UNDER_ASAN
    struct rlimit r = {CHILD_ADDRESS_SPACE, CHILD_ADDRESS_SPACE};
    if (setrlimit(RLIMIT_AS, &r) != 0) _exit(125);
#endif
    alarm(120); /* a reader that blocks: killed, so the test fails rather than hangs */
}

/* Runs fn in a limited child process; fn returns 0 when every check passed (printing what failed otherwise). */
static void in_limited_child(int (*fn)(void))
{
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        limit_this_process();
        _exit(fn());
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("the limited child %s %d", WIFEXITED(status) ? "exited with" : "was killed by signal",
                 WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
}

/* In a child: 0 when the call failed with code and a message holding every part, else 1 (and why). */
static int child_expect(const char *what, int rc, const db_error *err, int code, const char *const *parts)
{
    if (rc != code) {
        fprintf(stderr, "%s: status %d, expected %d (%s)\n", what, rc, code, rc ? err->message : "");
        return 1;
    }
    for (; *parts; parts++)
        if (!strstr(err->message, *parts)) {
            fprintf(stderr, "%s: the message lacks \"%s\":\n    %s\n", what, *parts, err->message);
            return 1;
        }
    return 0;
}

#define PARTS(...) ((const char *const[]){__VA_ARGS__, NULL})

/* dualbragg on a 32 x 32 detector with extra flags, inside DIR_, in a limited child; its exit status. */
static int dualbragg_limited(const char *extra)
{
    char line[4200];
    snprintf(line, sizeof line,
             "-cell 100 100 100 90 90 90 -default_F 100 -N 5 -lambda 1 -distance 100 -pixel 0.1 -detpixels 32 "
             "-oversample 1 -floatfile f.bin -nopgm %s",
             extra);
    harness_args a = {0};
    harness_split(&a, line);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        limit_this_process();
        if (chdir(DIR_) != 0) _exit(126);
        int fd = open("out.log", O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0) _exit(126);
        dup2(fd, 1);
        dup2(fd, 2);
        setenv("OMP_NUM_THREADS", "1", 1);
        harness_exec(DB_CLI_PATH, &a);
    }
    harness_args_free(&a);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static int log_has(const char *what);

/* dualbragg refuses with exit status 1 and a message holding every part. */
static void cli_refuses(const char *extra, const char *const *parts)
{
    int status = dualbragg_limited(extra);
    if (status != 1) fail_msg("dualbragg %s: exit status %d, expected 1", extra, status);
    for (; *parts; parts++) assert_true(log_has(*parts));
}

static int zero_library_readers(void)
{
    db_error err;
    db_hkl_table t;
    db_smv_image img;
    double *obs = NULL;
    int bad = 0;
    bad |= child_expect("hkl", db_hkl_read("/dev/zero", 0.0, &t, &err), &err, DB_ERR_FORMAT,
                        PARTS("-hkl /dev/zero:1: NUL byte in a text file (expected lines 'h k l F')"));
    bad |= child_expect("Fdump", db_fdump_read("/dev/zero", &t, &err), &err, DB_ERR_FORMAT,
                        PARTS("/dev/zero: not a structure-factor cache"));
    bad |= child_expect("mask", db_smv_read_flag("-mask", "/dev/zero", &img, &err), &err, DB_ERR_FORMAT,
                        PARTS("-mask '/dev/zero' is not an SMV image"));
    bad |= child_expect("obs", db_observed_read("/dev/zero", 32, 32, 0.0, 0, &obs, &err), &err, DB_ERR_FORMAT,
                        PARTS("-obs '/dev/zero' has more than 8192 bytes; a 32 x 32 float32 image has 4096"));
    return bad;
}

/* /dev/zero (and streams that never end) for every input: a refusal naming the flag and the file, at once or
 * at the input's size limit; before, each grew memory past 1.5 GB. */
static void test_endless_inputs(void **state)
{
    (void)state;
    in_limited_child(zero_library_readers);
    cli_refuses("-mat /dev/zero", PARTS("-mat /dev/zero:1: NUL byte", "expected 9 numbers"));
    cli_refuses("-sourcefile /dev/zero", PARTS("-sourcefile /dev/zero:1: NUL byte"));
    cli_refuses("-boxes /dev/zero", PARTS("-boxes /dev/zero:1: NUL byte"));
    cli_refuses("-hkl /dev/zero", PARTS("-hkl /dev/zero:1: NUL byte"));
    cli_refuses("-mask /dev/zero", PARTS("-mask '/dev/zero' is not an SMV image"));
    cli_refuses("-img /dev/zero", PARTS("-img '/dev/zero' is not an SMV image"));

    /* valid lines without end: refused at the file's size limit */
    static const struct {
        const char *flag, *line, *part;
    } endless[] = {
        {"-boxes", "0 0 0 0\n", "more than the limit of 67108864 bytes (expected lines 'xmin xmax ymin ymax'"},
        {"-sourcefile", "1 0 0\n", "more than the limit of 67108864 bytes (expected lines 'X Y Z I lambda'"},
        {"-mat", "1\n", "more than the limit of 65536 bytes (expected 9 numbers"},
        {"-hkl", "1111111111", "s.fifo:1: line longer than 4096 bytes"}, /* and no newline ever */
    };
    for (size_t i = 0; i < sizeof endless / sizeof *endless; i++) {
        char fifo[4200], extra[4300];
        path_in(fifo, sizeof fifo, "s.fifo");
        pid_t w = fifo_writer(fifo, endless[i].line, strlen(endless[i].line), 1);
        snprintf(extra, sizeof extra, "%s s.fifo", endless[i].flag);
        int status = dualbragg_limited(extra);
        fifo_reap(w);
        unlink(fifo);
        if (status != 1) fail_msg("dualbragg %s: exit status %d, expected 1", extra, status);
        assert_true(log_has(endless[i].flag));
        assert_true(log_has(endless[i].part));
    }
}

/* A sparse file of size bytes (no disk blocks) starting with head. */
static void put_sparse(const char *name, const char *head, size_t head_len, off_t size)
{
    char p[4200];
    path_in(p, sizeof p, name);
    put(name, head, head_len);
    assert_int_equal(truncate(p, size), 0);
}

static int huge_library_readers(void)
{
    char p[4200];
    db_error err;
    db_hkl_table t;
    db_smv_image img;
    double *obs = NULL;
    int bad = 0;
    path_in(p, sizeof p, "huge.hkl");
    bad |= child_expect("hkl", db_hkl_read(p, 0.0, &t, &err), &err, DB_ERR_FORMAT,
                        PARTS("-hkl ", "huge.hkl: the file has 1073741825 bytes, more than the limit of 1073741824 bytes"));
    path_in(p, sizeof p, "huge.bin");
    bad |= child_expect("obs", db_observed_read(p, 32, 32, 0.0, 0, &obs, &err), &err, DB_ERR_FORMAT,
                        PARTS("-obs '", "huge.bin' is 17179869184 bytes; a 32 x 32 float32 image has 4096"));
    path_in(p, sizeof p, "huge.img");
    bad |= child_expect("mask", db_smv_read_flag("-mask", p, &img, &err), &err, DB_ERR_FORMAT,
                        PARTS("-mask '", "huge.img' has 4294967296 bytes, 4294964736 more than the 2560 expected",
                              "SIZE1 32 x SIZE2 32"));
    path_in(p, sizeof p, "huge.fdump");
    bad |= child_expect("Fdump", db_fdump_read(p, &t, &err), &err, DB_ERR_FORMAT,
                        PARTS("huge.fdump' has 4294967296 bytes", "more than the 77 expected"));
    return bad;
}

/* Regular files larger than they may be are refused from their size, before their data are read (sparse files
 * here: no disk used); before, each was read whole. */
static void test_huge_files(void **state)
{
    (void)state;
    put_sparse("huge.hkl", "0 0 0 1\n", 8, (off_t)DB_HKL_TEXT_MAX_BYTES + 1);
    put_sparse("huge.bin", "", 0, (off_t)16 << 30);
    char smv[512];
    memset(smv, ' ', sizeof smv);
    const char *h = "{\nHEADER_BYTES=512;\nTYPE=unsigned_short;\nBYTE_ORDER=little_endian;\nSIZE1=32;\nSIZE2=32;\n}\f";
    memcpy(smv, h, strlen(h));
    put_sparse("huge.img", smv, sizeof smv, (off_t)4 << 30);
    put_sparse("huge.fdump", "0 0 0 0 0 0\n\f", 13, (off_t)4 << 30); /* 13 bytes of header and 8 doubles */
    in_limited_child(huge_library_readers);
    cli_refuses("-hkl huge.hkl", PARTS("-hkl huge.hkl: the file has 1073741825 bytes"));
    cli_refuses("-mask huge.img", PARTS("-mask 'huge.img' has 4294967296 bytes"));
}

/* db_read_text at its limits: the size (a regular file and a stream), the line length and line numbers across
 * the reads of a stream (64 KiB steps), NUL bytes. */
static void test_text_limits(void **state)
{
    (void)state;
    char p[4200], *data = NULL;
    size_t len;
    db_error err;
    char buf[200000];
    memset(buf, 'x', sizeof buf);
    for (size_t i = 99; i < sizeof buf; i += 100) buf[i] = '\n';
    path_in(p, sizeof p, "t.txt");
    /* the size: exactly the limit, and one byte more */
    put("t.txt", buf, 1000);
    assert_int_equal(db_read_text("-x", p, 1000, "things", &data, &len, &err), DB_OK);
    assert_int_equal(len, 1000);
    assert_int_equal(data[len], '\0');
    free(data);
    assert_int_equal(db_read_text("-x", p, 999, "things", &data, &len, &err), DB_ERR_FORMAT);
    assert_null(data);
    assert_non_null(strstr(err.message, "-x "));
    assert_non_null(strstr(err.message, "t.txt: the file has 1000 bytes, more than the limit of 999 bytes (expected things)"));
    char fifo[4200];
    path_in(fifo, sizeof fifo, "t.fifo");
    pid_t w = fifo_writer(fifo, buf, 1000, 0);
    assert_int_equal(db_read_text("-x", fifo, 1000, "things", &data, &len, &err), DB_OK);
    fifo_reap(w);
    unlink(fifo);
    assert_int_equal(len, 1000);
    free(data);
    w = fifo_writer(fifo, buf, 1000, 0);
    assert_int_equal(db_read_text("-x", fifo, 999, "things", &data, &len, &err), DB_ERR_FORMAT);
    fifo_reap(w);
    unlink(fifo);
    assert_non_null(strstr(err.message, "t.fifo: more than the limit of 999 bytes (expected things; a stream"));
    /* an empty file is an empty text */
    put("t.txt", "", 0);
    assert_int_equal(db_read_text("-x", p, 999, "things", &data, &len, &err), DB_OK);
    assert_int_equal(len, 0);
    assert_int_equal(data[0], '\0');
    free(data);

    /* lines: DB_TEXT_MAX_LINE bytes (its newline not counted) is fine, one more is not; the long line is line
     * 656 and crosses the first 64 KiB read of a stream (655 lines of 100 bytes end at 65500) */
    size_t at = 65500;
    memset(buf + at, 'y', DB_TEXT_MAX_LINE);
    buf[at + DB_TEXT_MAX_LINE] = '\n';
    for (int stream = 0; stream < 2; stream++) {
        for (int extra = 0; extra < 2; extra++) {
            if (extra) buf[at + DB_TEXT_MAX_LINE] = 'y';
            size_t n = at + DB_TEXT_MAX_LINE + 1 + 50;
            if (extra) buf[n - 1] = '\n';
            pid_t wr = 0;
            if (stream) wr = fifo_writer(fifo, buf, n, 0);
            else put("t.txt", buf, n);
            int rc = db_read_text("-x", stream ? fifo : p, sizeof buf, "things", &data, &len, &err);
            if (stream) {
                fifo_reap(wr);
                unlink(fifo);
            }
            if (!extra) {
                if (rc) fail_msg("a line of %d bytes: %s", DB_TEXT_MAX_LINE, err.message);
                free(data);
            } else {
                assert_int_equal(rc, DB_ERR_FORMAT);
                if (!strstr(err.message, stream ? "t.fifo:656: line longer than 4096 bytes (expected things)"
                                                : "t.txt:656: line longer than 4096 bytes (expected things)"))
                    fail_msg("%s", err.message);
            }
            buf[at + DB_TEXT_MAX_LINE] = '\n';
        }
    }
    /* the last line, without its newline: the same limit */
    char last[DB_TEXT_MAX_LINE + 1];
    memset(last, 'z', sizeof last);
    put("t.txt", last, DB_TEXT_MAX_LINE);
    assert_int_equal(db_read_text("-x", p, sizeof buf, "things", &data, &len, &err), DB_OK);
    free(data);
    put("t.txt", last, DB_TEXT_MAX_LINE + 1);
    assert_int_equal(db_read_text("-x", p, sizeof buf, "things", &data, &len, &err), DB_ERR_FORMAT);
    assert_non_null(strstr(err.message, "t.txt:1: line longer than 4096 bytes"));
    /* a NUL byte after the first 64 KiB of a stream, on line 700 */
    memset(buf, 'x', sizeof buf);
    for (size_t i = 99; i < sizeof buf; i += 100) buf[i] = '\n';
    buf[69950] = '\0';
    w = fifo_writer(fifo, buf, 80000, 0);
    assert_int_equal(db_read_text("-x", fifo, sizeof buf, "things", &data, &len, &err), DB_ERR_FORMAT);
    fifo_reap(w);
    unlink(fifo);
    assert_non_null(strstr(err.message, "t.fifo:700: NUL byte in a text file (expected things)"));
}

/* A reflection given twice with different F is refused naming both lines (the reference keeps the last without
 * a word); the same F twice is accepted. */
static void test_hkl_duplicates(void **state)
{
    (void)state;
    char p[4200];
    db_hkl_table t;
    db_error err;
    path_in(p, sizeof p, "dup.hkl");
    put_text("dup.hkl", "1 0 0 5\n0 0 0 1\n1 0 0 5.0\n-1 0 0 2\n");
    assert_int_equal(db_hkl_read(p, 0.0, &t, &err), DB_OK);
    assert_true(t.F[((size_t)(1 - t.h_min) * (t.k_range + 1)) * (t.l_range + 1)] == 5.0);
    db_hkl_free(&t);
    put_text("dup.hkl", "1 0 0 5\n0 0 0 1\n1 0 0 5.0\n-1 0 0 2\n1 0 0 5.000000000000001\n");
    assert_int_equal(db_hkl_read(p, 0.0, &t, &err), DB_ERR_FORMAT);
    assert_null(t.F);
    if (!strstr(err.message, "-hkl ") ||
        !strstr(err.message, "dup.hkl:5: h k l = 1 0 0 has F = 5.000000000000001, but line 1 gave it F = 5 "
                             "(expected each reflection once)"))
        fail_msg("%s", err.message);
    /* negative indices, the duplicate first given after another repeat */
    put_text("dup.hkl", "0 0 0 1\n-3 2 -1 7\n-3 2 -1 7\n-3 2 -1 -7\n");
    assert_int_equal(db_hkl_read(p, 0.0, &t, &err), DB_ERR_FORMAT);
    if (!strstr(err.message, "dup.hkl:4: h k l = -3 2 -1 has F = -7, but line 2 gave it F = 7"))
        fail_msg("%s", err.message);
}

/* ---- output files ---- */

static void test_write_temp_commit_abort(void **state)
{
    (void)state;
    char p[4200];
    path_in(p, sizeof p, "out.bin");
    const char data[] = "new content";
    const void *bufs[1] = {data};
    size_t lens[1] = {sizeof data};
    db_error err;
    char *tmp;
    put("out.bin", "old", 3);
    assert_int_equal(db_write_file_temp(p, bufs, lens, 1, &tmp, &err), DB_OK);
    assert_non_null(tmp);
    assert_int_equal(temporaries(), 1);
    db_abort_temp(tmp);
    assert_int_equal(temporaries(), 0);
    size_t n;
    unsigned char *got = harness_read(p, &n);
    assert_int_equal(n, 3); /* untouched */
    free(got);
    assert_int_equal(db_write_file_temp(p, bufs, lens, 1, &tmp, &err), DB_OK);
    assert_int_equal(db_commit_temp(tmp, p, &err), DB_OK);
    got = harness_read(p, &n);
    assert_int_equal(n, sizeof data);
    assert_memory_equal(got, data, sizeof data);
    free(got);
    assert_int_equal(temporaries(), 0);
    /* the same through the durable path (fsync before the rename, DUALBRAGG_FSYNC=1) */
    const char data2[] = "durable content";
    const void *bufs2[1] = {data2};
    size_t lens2[1] = {sizeof data2};
    setenv("DUALBRAGG_FSYNC", "1", 1);
    assert_int_equal(db_write_file_temp(p, bufs2, lens2, 1, &tmp, &err), DB_OK);
    assert_int_equal(db_commit_temp(tmp, p, &err), DB_OK);
    unsetenv("DUALBRAGG_FSYNC");
    got = harness_read(p, &n);
    assert_int_equal(n, sizeof data2);
    assert_memory_equal(got, data2, sizeof data2);
    free(got);
    assert_int_equal(temporaries(), 0);
    /* a device is written in place: no temporary name */
    assert_int_equal(db_write_file_temp("/dev/null", bufs, lens, 1, &tmp, &err), DB_OK);
    assert_null(tmp);
}

/* the output set: nothing appears under a final name before the commit; an abort leaves no file at all */
static void test_out_set(void **state)
{
    (void)state;
    char a[4200], b[4200];
    path_in(a, sizeof a, "a.bin");
    path_in(b, sizeof b, "b.bin");
    put("b.bin", "old b", 5);
    db_error err;
    const void *bufs[1] = {"x"};
    size_t lens[1] = {1};

    db_out_set *s = db_out_set_create();
    assert_non_null(s);
    const char *ta = db_out_set_add(s, a, &err), *tb = db_out_set_add(s, b, &err);
    assert_non_null(ta);
    assert_non_null(tb);
    assert_string_not_equal(ta, a);
    assert_int_equal(db_write_file_atomic(ta, bufs, lens, 1, &err), DB_OK);
    assert_false(exists("a.bin"));
    db_out_set_abort(s);
    assert_false(exists("a.bin"));
    assert_int_equal(temporaries(), 0);
    size_t n;
    unsigned char *got = harness_read(b, &n);
    assert_int_equal(n, 5); /* the old b survives */
    free(got);
    db_out_set_destroy(s);

    s = db_out_set_create();
    ta = db_out_set_add(s, a, &err);
    tb = db_out_set_add(s, b, &err);
    assert_int_equal(db_write_file_atomic(ta, bufs, lens, 1, &err), DB_OK);
    assert_int_equal(db_write_file_atomic(tb, bufs, lens, 1, &err), DB_OK);
    assert_int_equal(db_out_set_commit(s, &err), DB_OK);
    db_out_set_destroy(s);
    assert_true(exists("a.bin"));
    got = harness_read(b, &n);
    assert_int_equal(n, 1);
    free(got);
    assert_int_equal(temporaries(), 0);

    /* destroy without commit removes the temporaries too */
    s = db_out_set_create();
    assert_non_null(db_out_set_add(s, a, &err));
    assert_int_equal(temporaries(), 1);
    db_out_set_destroy(s);
    assert_int_equal(temporaries(), 0);

    /* a target that became a folder during the run: the commit renames nothing */
    char c[4200];
    path_in(c, sizeof c, "c.bin");
    s = db_out_set_create();
    ta = db_out_set_add(s, b, &err);
    assert_non_null(db_out_set_add(s, c, &err));
    assert_int_equal(db_write_file_atomic(ta, (const void *const[]){"yy"}, (const size_t[]){2}, 1, &err), DB_OK);
    assert_int_equal(mkdir(c, 0755), 0);
    assert_int_equal(db_out_set_commit(s, &err), DB_ERR_IO);
    assert_non_null(strstr(err.message, "c.bin"));
    db_out_set_destroy(s);
    got = harness_read(b, &n);
    assert_int_equal(n, 1); /* not the new "yy" */
    free(got);
    assert_int_equal(temporaries(), 0);
}

static void test_check_output_path(void **state)
{
    (void)state;
    char p[4200];
    db_error err;
    path_in(p, sizeof p, "fresh.bin");
    assert_int_equal(db_check_output_path(p, "-floatfile", &err), DB_OK);
    put("exists.bin", "x", 1);
    path_in(p, sizeof p, "exists.bin");
    assert_int_equal(db_check_output_path(p, "-floatfile", &err), DB_OK);
    assert_int_equal(db_check_output_path("/dev/null", "-floatfile", &err), DB_OK);
    path_in(p, sizeof p, "d");
    assert_int_equal(mkdir(p, 0755), 0);
    assert_int_equal(db_check_output_path(p, "-intfile", &err), DB_ERR_IO);
    assert_non_null(strstr(err.message, "-intfile"));
    assert_non_null(strstr(err.message, "folder"));
    path_in(p, sizeof p, "d/");
    assert_int_equal(db_check_output_path(p, "-intfile", &err), DB_ERR_IO);
    path_in(p, sizeof p, "missing/x.bin");
    assert_int_equal(db_check_output_path(p, "-dump", &err), DB_ERR_IO);
    assert_non_null(strstr(err.message, "does not exist"));
    path_in(p, sizeof p, "exists.bin/x.bin");
    assert_int_equal(db_check_output_path(p, "-dump", &err), DB_ERR_IO);
    assert_non_null(strstr(err.message, "not a folder"));
    assert_int_not_equal(db_check_output_path("", "-dump", &err), DB_OK);
}

static void test_same_file(void **state)
{
    (void)state;
    char a[4200], b[4200], sub[4200];
    put("f.hkl", "1", 1);
    path_in(a, sizeof a, "f.hkl");
    path_in(sub, sizeof sub, "sub");
    assert_int_equal(mkdir(sub, 0755), 0);
    path_in(b, sizeof b, "sub/../f.hkl");
    assert_true(db_same_file(a, b));
    path_in(b, sizeof b, "./f.hkl");
    assert_true(db_same_file(a, b));
    path_in(b, sizeof b, "hard.hkl");
    assert_int_equal(link(a, b), 0);
    assert_true(db_same_file(a, b));
    path_in(b, sizeof b, "sym.hkl");
    assert_int_equal(symlink("f.hkl", b), 0);
    assert_true(db_same_file(a, b));
    /* not yet existing: same folder and name */
    path_in(a, sizeof a, "new.bin");
    path_in(b, sizeof b, "sub/../new.bin");
    assert_true(db_same_file(a, b));
    /* different files */
    path_in(b, sizeof b, "sub/new.bin");
    assert_false(db_same_file(a, b));
    path_in(a, sizeof a, "f.hkl");
    path_in(b, sizeof b, "g.hkl");
    assert_false(db_same_file(a, b));
}

/* ---- configuration values ---- */

static int parse_line(const char *line, db_error *err)
{
    harness_args a = {0};
    harness_split(&a, line);
    db_config *c = db_config_create();
    assert_non_null(c);
    int rc = db_config_parse(c, a.argc, (const char *const *)a.argv, err);
    db_config_destroy(c);
    harness_args_free(&a);
    return rc;
}

static void test_cell_closure_boundaries(void **state)
{
    (void)state;
    db_error err;
    /* just inside each rule */
    assert_int_equal(parse_line("-cell 100 100 100 60 60 119.999", &err), DB_OK);
    assert_int_equal(parse_line("-cell 100 100 100 119.9 120 120", &err), DB_OK); /* sum 359.9 */
    assert_int_equal(parse_line("-cell 100 100 100 179", &err), DB_OK);          /* with 90 90 */
    assert_int_equal(parse_line("-cell 100 110 120 80 95 100", &err), DB_OK);
    /* on or beyond */
    assert_int_equal(parse_line("-cell 100 100 100 60 60 120", &err), DB_ERR_GEOMETRY);
    assert_non_null(strstr(err.message, "-cell"));
    assert_int_equal(parse_line("-cell 100 100 100 120 120 120", &err), DB_ERR_GEOMETRY); /* sum 360 */
    assert_int_equal(parse_line("-cell 100 100 100 140 40", &err), DB_ERR_GEOMETRY);      /* gamma 90: 140 > 40 + 90 */
    assert_int_equal(parse_line("-cell 100 100 100 120 40", &err), DB_OK);                /* 120 < 40 + 90 */
}

static void test_value_checks(void **state)
{
    (void)state;
    db_error err;
    assert_int_equal(parse_line("-N 1", &err), DB_OK);
    assert_int_equal(parse_line("-N 1.5", &err), DB_OK);
    assert_int_equal(parse_line("-N 0.999", &err), DB_ERR_GEOMETRY);
    assert_int_equal(parse_line("-fluence 0", &err), DB_OK);
    assert_int_equal(parse_line("-fluence -1e-300", &err), DB_ERR_GEOMETRY);
    assert_int_equal(parse_line("-oversample 1 -phisteps 1 -mosaic_dom 1 -dispsteps 1", &err), DB_OK);
    /* the setters go through the same checks */
    db_config *c = db_config_create();
    assert_int_equal(db_config_set_oversample(c, 0, &err), DB_ERR_GEOMETRY);
    assert_int_equal(db_config_set_phi(c, 0, 1, 0, &err), DB_ERR_GEOMETRY);
    assert_int_equal(db_config_set_mosaic(c, 0.1, 0, 1, &err), DB_ERR_GEOMETRY);
    assert_int_equal(db_config_set_cells(c, 5, 0, 5, &err), DB_ERR_GEOMETRY);
    assert_non_null(strstr(err.message, "-Nb"));
    assert_int_equal(db_config_set_cell(c, INFINITY, 100, 100, 90, 90, 90, &err), DB_ERR_ARGUMENT);
    db_config_destroy(c);
}

/* ---- gradcheck's own flags ---- */

static int gradcheck(const char *extra)
{
    char line[2048];
    snprintf(line, sizeof line,
             "-cell 100 100 100 90 90 90 -default_F 100 -N 5 -lambda 1 -distance 100 -pixel 0.1 -detpixels 32 "
             "-oversample 1 -grad a %s",
             extra);
    harness_args a = {0};
    harness_split(&a, line);
    int status = harness_run(DB_GRADCHECK_PATH, DIR_, &a, 1);
    harness_args_free(&a);
    return status;
}

static int log_has_v(const char *what, int loud)
{
    char p[4200];
    size_t n;
    path_in(p, sizeof p, "out.log");
    unsigned char *data = harness_read(p, &n);
    assert_non_null(data);
    char *s = malloc(n + 1);
    memcpy(s, data, n);
    s[n] = '\0';
    int has = strstr(s, what) != NULL;
    if (!has && loud) fprintf(stderr, "out.log lacks \"%s\":\n%s\n", what, s);
    free(s);
    free(data);
    return has;
}

static int log_has(const char *what) { return log_has_v(what, 1); }
static int log_has_quiet(const char *what) { return log_has_v(what, 0); }

static void test_gradcheck_refusals(void **state)
{
    (void)state;
    static const char *const bad[][2] = {
        {"-atol nan", "-atol"},
        {"-rtol inf", "-rtol"},
        {"-atol -1", "-atol"},
        {"-atol_factor -1e-8", "-atol_factor"},
        {"-check_roi 40 45 0 5", "outside the 32 x 32 detector"},
        {"-check_roi 0 5 30 32", "outside the 32 x 32 detector"},
        {"-check_roi 5 0 0 5", "empty"},
        {"-check_roi 0 5 -3 5", "-check_roi"},
        {"-check_roi 0 5.5 0 5", "-check_roi"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int status = gradcheck(bad[i][0]);
        if (status != 2) fail_msg("gradcheck %s: exit status %d, expected 2", bad[i][0], status);
        assert_true(log_has(bad[i][1]));
        assert_false(log_has_quiet("PASS"));
    }
    /* control: a box on the detector runs (and passes) */
    assert_int_equal(gradcheck("-precise -check_roi 10 13 10 13"), 0);
    assert_true(log_has("all parameters PASS"));
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_fdump_header_sizes),
        T(test_table_limit),
        T(test_fdump_roundtrip_and_nan),
        T(test_endless_inputs),
        T(test_huge_files),
        T(test_text_limits),
        T(test_hkl_duplicates),
        T(test_write_temp_commit_abort),
        T(test_out_set),
        T(test_check_output_path),
        T(test_same_file),
        T(test_cell_closure_boundaries),
        T(test_value_checks),
        T(test_gradcheck_refusals),
    };
#undef T
    return cmocka_run_group_tests_name("hardening (issue 8)", tests, NULL, NULL);
}
