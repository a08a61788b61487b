/* test_cli_errors.c: bad input to the command-line program.
 *
 * Every bad-input run starts build/bin/dualbragg in a fresh folder that holds two sentinel outputs with known content
 * (float.bin, given as -floatfile, and intimage.img, the default integer-image name) plus the inputs the case
 * writes, and checks:
 *   1. the exit status: 2 for a bad command line (unknown flag, missing or non-numeric value, a value without a
 *      flag, a bad keyword, a missing required input), 1 for anything else (unreadable or malformed file,
 *      impossible geometry or value, failed write) -- the rule README.md states;
 *   2. the message ("dualbragg: error: ...", on stderr; out.log holds stdout and stderr) names the flag or the
 *      file (and FILE:LINE for file content) and what was expected;
 *   3. nothing was written: the folder holds only the test's own files and out.log (no floatimage.bin,
 *      intimage.img, noiseimage.img, image.pgm, Fdump.bin, no *.tmp.* leftovers), and the sentinels are unchanged
 *      (so is a table row's input file).
 * All problems of one run are collected and reported together, with the command line and the program's output; a
 * test checks all of its runs before it fails.
 *
 * Most cases are rows of four tables (bad_case: the command line, the exit status, an optional text input file, the
 * wanted substrings), one test each: the command line, impossible values, malformed or missing input files, outputs.
 * The cases that need more than a text file are written out after them: folders, binary files, links, /dev/full, a
 * check after the run or a control run that must succeed, the GPU probe.
 *
 * The base command omits -nopgm so that a run that gets too far would also leave image.pgm behind. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <math.h>

#include "cli_harness.h"
#include "device.h" /* db_cuda_usable */

#define EXIT_ARG 2   /* bad command line */
#define EXIT_OTHER 1 /* unreadable/malformed input, impossible geometry, failed write */

#define GEOM "-N 5 -lambda 1 -distance 100 -pixel 0.1 -detpixels 64 -oversample 1 -noprogress -seed 1"
#define CELL "-cell 100 100 100 90 90 90"
/* arrays, not pointers: the static tables below take their addresses as constants */
static const char BASE[] = CELL " -default_F 100 " GEOM;
static const char BASE_NO_CELL[] = "-default_F 100 " GEOM;
static const char BASE_NO_F[] = CELL " " GEOM;
#define SMALL_HKL "0 0 1 50\n1 0 0 40\n"

static const char FLOAT_SENTINEL[] = "float.bin sentinel: must survive a failed run\n";
static const char INT_SENTINEL[] = "intimage.img sentinel: must survive a failed run\n";

/* ---------------------------------------------------------------------------------------------------------- */
/* fixture: one temporary folder at a time (removed by the teardown too, when an assertion jumps out) */

#define MAX_FILES 32
typedef struct fixture {
    char dir[4096];
    char line[8192];       /* the last command line run */
    const char *files[MAX_FILES]; /* names the test put in the folder (besides out.log) */
    int nfiles;
    char problems[8192];   /* what went wrong in the last check */
    const char *input;     /* a text input the run must leave as it was (NULL: none) */
    const char *input_text; /* its content */
} fixture;

static fixture FX;
static int FX_OPEN;
static int FAILED_RUNS; /* runs of the current test that failed a check */

static void fx_path(char *buf, size_t size, const char *name)
{
    snprintf(buf, size, "%s/%s", FX.dir, name);
}

static void fx_register(const char *name)
{
    assert_true(FX.nfiles < MAX_FILES);
    FX.files[FX.nfiles++] = name;
}

static void fx_put(const char *name, const void *data, size_t len)
{
    char path[4200];
    fx_path(path, sizeof path, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (len) assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
    fx_register(name);
}

static void fx_put_text(const char *name, const char *text)
{
    fx_put(name, text, strlen(text));
}

static void fx_mkdir(const char *name)
{
    char path[4200];
    fx_path(path, sizeof path, name);
    assert_int_equal(mkdir(path, 0755), 0);
    fx_register(name);
}

static int link_path_hard(const char *from, const char *to)
{
    return link(from, to);
}

static void fx_close(void)
{
    if (FX_OPEN) harness_rmtree(FX.dir);
    FX_OPEN = 0;
}

/* A fresh folder holding the two sentinels. */
static void fx_open(void)
{
    fx_close();
    memset(&FX, 0, sizeof FX);
    assert_int_equal(harness_mkdtemp(FX.dir, sizeof FX.dir), 0);
    FX_OPEN = 1;
    fx_put("float.bin", FLOAT_SENTINEL, sizeof FLOAT_SENTINEL - 1);
    fx_put("intimage.img", INT_SENTINEL, sizeof INT_SENTINEL - 1);
}

static int setup(void **state)
{
    (void)state;
    FAILED_RUNS = 0;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    fx_close();
    return 0;
}

/* Runs "<base> -floatfile float.bin <extra>" in the folder; returns the exit status. */
static int fx_run(const char *base, const char *extra)
{
    snprintf(FX.line, sizeof FX.line, "%s -floatfile float.bin %s", base, extra);
    harness_args a = {0};
    harness_split(&a, FX.line);
    int status = harness_run(DB_CLI_PATH, FX.dir, &a, 1);
    harness_args_free(&a);
    assert_true(status >= 0);
    return status;
}

/* out.log as a string (never NULL) */
static char *fx_log(void)
{
    char path[4200];
    size_t len;
    fx_path(path, sizeof path, "out.log");
    unsigned char *data = harness_read(path, &len);
    char *s = (char *)malloc(len + 1);
    assert_non_null(s);
    if (data) memcpy(s, data, len);
    s[data ? len : 0] = '\0';
    free(data);
    return s;
}

static int fx_file_is(const char *name, const char *content, size_t len)
{
    char path[4200];
    size_t n;
    fx_path(path, sizeof path, name);
    unsigned char *data = harness_read(path, &n);
    int same = data && n == len && memcmp(data, content, len) == 0;
    free(data);
    return same;
}

static int fx_exists(const char *name)
{
    char path[4200];
    struct stat st;
    fx_path(path, sizeof path, name);
    return stat(path, &st) == 0;
}

static void problem(const char *fmt, ...)
{
    size_t used = strlen(FX.problems);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(FX.problems + used, sizeof FX.problems - used, fmt, ap);
    va_end(ap);
}

/* Adds a problem for every file in the folder that the test did not put there (out.log aside). */
static void check_nothing_written(void)
{
    DIR *d = opendir(FX.dir);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0 || strcmp(e->d_name, "out.log") == 0) continue;
        int known = 0;
        for (int i = 0; i < FX.nfiles && !known; i++) known = strcmp(FX.files[i], e->d_name) == 0;
        if (!known) problem("  left behind: %s\n", e->d_name);
    }
    closedir(d);
    if (!fx_file_is("float.bin", FLOAT_SENTINEL, sizeof FLOAT_SENTINEL - 1))
        problem("  the existing float.bin (-floatfile) was changed\n");
    if (!fx_file_is("intimage.img", INT_SENTINEL, sizeof INT_SENTINEL - 1))
        problem("  the existing intimage.img (default -intfile) was changed\n");
    if (FX.input && !fx_file_is(FX.input, FX.input_text, strlen(FX.input_text)))
        problem("  the input %s was changed\n", FX.input);
}

/* The three checks on the last run; `want` is a NULL-terminated list of substrings the log must contain. */
static void check_failure_v(int status, int want_status, const char *const *want)
{
    FX.problems[0] = '\0';
    char *log = fx_log();
    if (status != want_status) problem("  exit status %d, expected %d\n", status, want_status);
    if (!strstr(log, "dualbragg: error: ")) problem("  no 'dualbragg: error: ' line\n");
    for (int i = 0; want[i]; i++)
        if (!strstr(log, want[i])) problem("  the message lacks \"%s\"\n", want[i]);
    check_nothing_written();
    if (FX.problems[0]) {
        fprintf(stderr, "command: dualbragg %s\n%soutput:\n%s\n", FX.line, FX.problems, log);
        fflush(stderr);
        FAILED_RUNS++;
    }
    free(log);
}

/* Ends a test: fails it when any of its runs misbehaved (every run is checked and reported first). */
static void finish(void)
{
    if (FAILED_RUNS) fail_msg("%d bad-input run(s) misbehaved (see above)", FAILED_RUNS);
}

#define CHECK_FAILURE(status, want_status, ...)                                                                  \
    do {                                                                                                         \
        const char *want_[] = {__VA_ARGS__, NULL};                                                               \
        check_failure_v((status), (want_status), want_);                                                         \
    } while (0)

/* The common shape: a fresh folder, one run, the checks. */
#define EXPECT_FAILURE(base, extra, want_status, ...)                                                            \
    do {                                                                                                         \
        fx_open();                                                                                               \
        CHECK_FAILURE(fx_run((base), (extra)), (want_status), __VA_ARGS__);                                      \
        fx_close();                                                                                              \
    } while (0)

/* A minimal SMV image: 512-byte header, n1 x n2 little-endian uint16 ones, less `cut` bytes at the end. */
static void fx_put_smv(const char *name, int n1, int n2, size_t cut)
{
    size_t npix = (size_t)n1 * (size_t)n2, len = 512 + 2 * npix;
    char *buf = (char *)malloc(len);
    assert_non_null(buf);
    memset(buf, ' ', 512);
    int h = snprintf(buf, 512,
                     "{\nHEADER_BYTES=512;\nDIM=2;\nBYTE_ORDER=little_endian;\nTYPE=unsigned_short;\nSIZE1=%d;\n"
                     "SIZE2=%d;\nPIXEL_SIZE=0.1;\n}\f",
                     n1, n2);
    buf[h] = ' '; /* snprintf's NUL */
    for (size_t i = 0; i < npix; i++) {
        buf[512 + 2 * i] = 1;
        buf[512 + 2 * i + 1] = 0;
    }
    assert_true(cut < len);
    fx_put(name, buf, len - cut);
    free(buf);
}

/* ---------------------------------------------------------------------------------------------------------- */
/* the tables */

/* One bad-input run: "<base> -floatfile float.bin <extra>" in a fresh folder, with `file` holding `content` when
 * file is not NULL. want: the substrings the message must hold, NULL-terminated (so at most 4). */
typedef struct bad_case {
    const char *base;
    const char *extra;
    int status;
    const char *file;
    const char *content;
    const char *want[5];
} bad_case;

/* Runs and checks every row (a failing one is printed with its command line), then fails the test if any failed. */
static void run_cases(const bad_case *t, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        assert_null(t[i].want[4]); /* check_failure_v reads up to the NULL */
        fx_open();
        if (t[i].file) {
            fx_put_text(t[i].file, t[i].content);
            FX.input = t[i].file;
            FX.input_text = t[i].content;
        }
        check_failure_v(fx_run(t[i].base, t[i].extra), t[i].status, t[i].want);
        fx_close();
    }
    finish();
}

#define RUN_CASES(table) run_cases((table), sizeof(table) / sizeof *(table))

/* A bad command line: exit status 2. */
static void test_command_line(void **state)
{
    (void)state;
    static const bad_case cases[] = {
        /* unknown flags */
        {BASE, "-bogus", EXIT_ARG, .want = {"unknown flag", "'-bogus'"}},
        {BASE, "-bogus 3", EXIT_ARG, .want = {"unknown flag", "'-bogus'"}},
        /* documented by the reference but never accepted by it (README: errors here) */
        {BASE, "-detsize_x 10", EXIT_ARG, .want = {"unknown flag", "'-detsize_x'"}},
        /* exact matching: neither a prefix nor an extension of a real flag is taken for it */
        {BASE, "-detpix 64", EXIT_ARG, .want = {"unknown flag", "'-detpix'"}},
        {BASE, "-mosaicityy 1", EXIT_ARG, .want = {"unknown flag", "'-mosaicityy'"}},
        {BASE, "-dist 100", EXIT_ARG, .want = {"unknown flag", "'-dist'"}},
        {BASE, "-distances 100", EXIT_ARG, .want = {"unknown flag", "'-distances'"}},
        /* the line ends before the flag's value(s) */
        {BASE, "-distance", EXIT_ARG, .want = {"-distance", "expects a distance in mm", "command line ends"}},
        {BASE, "-roi 1 2 3", EXIT_ARG, .want = {"-roi", "expects xmin xmax ymin ymax", "command line ends"}},
        {BASE, "-hkl", EXIT_ARG, .want = {"-hkl", "expects", "command line ends"}},
        {BASE, "-mask", EXIT_ARG, .want = {"-mask", "expects an SMV file", "command line ends"}},
        /* a value that is not a number of the kind the flag takes */
        {BASE, "-distance abc", EXIT_ARG, .want = {"-distance", "expects a distance in mm", "'abc'"}},
        {BASE, "-distance 10mm", EXIT_ARG, .want = {"-distance", "expects a distance in mm", "'10mm'"}},
        {BASE, "-N five", EXIT_ARG, .want = {"-N", "expects a number of unit cells", "'five'"}},
        {BASE, "-roi 1 2 x 4", EXIT_ARG, .want = {"-roi", "expects xmin xmax ymin ymax", "'x'"}},
        {BASE, "-detpixels 64.5", EXIT_ARG, .want = {"-detpixels", "integer", "'64.5'"}},
        {BASE, "-misset 1 2 x", EXIT_ARG, .want = {"-misset", "three angles", "'x'"}},
        {BASE, "-distance nan", EXIT_ARG, .want = {"-distance", "'nan'"}},
        /* -cell takes 1 to 6 numbers: the message must still point at -cell, not only at 'abc' */
        {BASE_NO_CELL, "-cell 100 abc", EXIT_ARG, .want = {"-cell", "'abc'"}},
        /* inf and nan are not numbers a flag can take: a command-line error, like any non-numeric value */
        {BASE, "-distance inf", EXIT_ARG, .want = {"-distance", "got 'inf'"}},
        {BASE, "-lambda nan", EXIT_ARG, .want = {"-lambda", "got 'nan'"}},
        {BASE_NO_CELL, "-cell inf", EXIT_ARG, .want = {"-cell", "'inf'"}},
        {BASE_NO_CELL, "-cell 100 100 100 90 nan 90", EXIT_ARG, .want = {"-cell", "'nan'"}},
        {BASE, "-N inf", EXIT_ARG, .want = {"-N", "'inf'"}},
        {BASE, "-fluence nan", EXIT_ARG, .want = {"-fluence", "'nan'"}},
        /* a value without a flag */
        {BASE, "42", EXIT_ARG, .want = {"unexpected argument '42'", "without a flag"}},
        {BASE, "-nopgm stray", EXIT_ARG, .want = {"unexpected argument 'stray'", "without a flag"}},
        /* keywords: -grad's parameter names, -phi_carryover, -pivot */
        {BASE, "-grad bogus", EXIT_ARG, .want = {"-grad", "unknown parameter 'bogus'", "expected 'all' or"}},
        {BASE, "-grad a,bogus", EXIT_ARG, .want = {"-grad", "'bogus'"}},
        {BASE, "-phi_carryover maybe", EXIT_ARG, .want = {"-phi_carryover", "'on' or 'off'", "'maybe'"}},
        {BASE, "-pivot sideways", EXIT_ARG, .want = {"-pivot", "'sample' or 'beam'", "'sideways'"}},
        /* a required input is missing: the crystal, or the structure factors (-default_F 0 gives none) */
        {BASE_NO_CELL, "", EXIT_ARG, .want = {"no crystal", "-cell", "-mat"}},
        {BASE_NO_F, "", EXIT_ARG, .want = {"no structure factors", "-hkl", "-default_F"}},
        {BASE_NO_F, "-default_F 0", EXIT_ARG, .want = {"no structure factors", "-hkl", "-default_F"}},
        /* -grad_F differentiates by the structure-factor table, which -default_F alone does not give; it is refused
         * before any work. Its refusals that need an -hkl file are in test_grad_F_refused */
        {BASE, "-grad_F fj.txt", EXIT_ARG, .want = {"-grad_F fj.txt", "structure-factor table", "-default_F alone"}},
        {BASE, "-grad_F", EXIT_ARG, .want = {"-grad_F expects a file name"}},
    };
    RUN_CASES(cases);
}

/* Values the command line can take but the geometry or the physics cannot: exit status 1. */
static void test_impossible_values(void **state)
{
    (void)state;
    static const bad_case cases[] = {
        /* -trace_pixel: the pixel must be checked before anything is rendered or written */
        {BASE, "-trace_pixel 64 0", EXIT_OTHER, .want = {"-trace_pixel", "outside", "64 x 64"}},
        {BASE, "-trace_pixel 0 64", EXIT_OTHER, .want = {"-trace_pixel", "outside", "64 x 64"}},
        {BASE, "-trace_pixel -1 0", EXIT_OTHER, .want = {"-trace_pixel", ">= 0", "-1 0"}},
        /* a detector, pixel, distance or wavelength that is zero or negative */
        {BASE, "-detpixels 0", EXIT_OTHER, .want = {"-detpixels", "positive number of pixels", "got 0"}},
        {BASE, "-detpixels -5", EXIT_OTHER, .want = {"-detpixels", "positive number of pixels", "got -5"}},
        {BASE, "-pixel 0", EXIT_OTHER, .want = {"-pixel", "must be positive"}},
        {BASE, "-pixel -0.1", EXIT_OTHER, .want = {"-pixel", "must be positive", "-0.1"}},
        {BASE, "-distance 0", EXIT_OTHER, .want = {"-distance", "must be positive"}},
        {BASE, "-distance -5", EXIT_OTHER, .want = {"-distance", "must be positive", "-5"}},
        {BASE, "-lambda 0", EXIT_OTHER, .want = {"-lambda", "must be positive"}},
        {BASE, "-lambda -1", EXIT_OTHER, .want = {"-lambda", "must be positive"}},
        /* -energy 0 gives an infinite wavelength */
        {BASE, "-energy 0", EXIT_OTHER, .want = {"-energy"}},
        /* a region of interest that selects no pixel */
        {BASE, "-roi 300 400 0 10", EXIT_OTHER, .want = {"-roi 300 400 0 10", "selects no pixel", "64 x 64"}},
        {BASE, "-roi 20 10 0 10", EXIT_OTHER, .want = {"-roi 20 10 0 10", "selects no pixel"}},
        {BASE, "-roi 0 10 20 10", EXIT_OTHER, .want = {"-roi 0 10 20 10", "selects no pixel"}},
        /* ymax < ymin as well, with a negative bound */
        {BASE, "-roi 1 2 3 -5", EXIT_OTHER, .want = {"-roi", ">= 0", "-5"}},
        /* a cell or matrix that is no crystal at all */
        {BASE_NO_CELL, "-cell 0", EXIT_OTHER, .want = {"-cell"}},
        {BASE_NO_CELL, "-cell -1 100 100", EXIT_OTHER, .want = {"-cell"}},
        {BASE_NO_CELL, "-mat zero.mat", EXIT_OTHER, "zero.mat", "0 0 0\n0 0 0\n0 0 0\n", {"zero.mat"}},
        /* the angles of a cell must close (the reference computes a NaN or negative volume and a NaN image) */
        /* gamma = alpha + beta */
        {BASE_NO_CELL, "-cell 100 100 100 60 60 120", EXIT_OTHER, .want = {"-cell", "do not close"}},
        /* gamma > alpha + beta */
        {BASE_NO_CELL, "-cell 100 100 100 30 40 100", EXIT_OTHER, .want = {"-cell", "do not close"}},
        /* sum > 360 */
        {BASE_NO_CELL, "-cell 100 100 100 170 170 100", EXIT_OTHER, .want = {"-cell", "do not close"}},
        /* gamma missing: 90 */
        {BASE_NO_CELL, "-cell 100 100 100 150 40", EXIT_OTHER, .want = {"-cell", "150 40 90"}},
        {BASE_NO_CELL, "-cell 100 100 100 0 90 90", EXIT_OTHER, .want = {"-cell", "between 0 and 180"}},
        /* values the reference replaces by a default without a word: the message names the flag and the value */
        {BASE, "-N 0", EXIT_OTHER, .want = {"-N", "got 0"}},
        {BASE, "-N -3", EXIT_OTHER, .want = {"-N", "got -3"}},
        {BASE, "-N 0.5", EXIT_OTHER, .want = {"-N", "got 0.5"}},
        {BASE, "-Na 0", EXIT_OTHER, .want = {"-Na", "got 0"}},
        {BASE, "-Nb -1", EXIT_OTHER, .want = {"-Nb", "got -1"}},
        {BASE, "-Nc 0", EXIT_OTHER, .want = {"-Nc", "got 0"}},
        {BASE, "-oversample 0", EXIT_OTHER, .want = {"-oversample", "got 0"}},
        {BASE, "-oversample -2", EXIT_OTHER, .want = {"-oversample", "got -2"}},
        {BASE, "-phisteps 0", EXIT_OTHER, .want = {"-phisteps", "got 0"}},
        {BASE, "-phisteps -1", EXIT_OTHER, .want = {"-phisteps", "got -1"}},
        {BASE, "-mosaic 1 -mosaic_dom 0", EXIT_OTHER, .want = {"-mosaic_dom", "got 0"}},
        {BASE, "-mosaic_domains -4", EXIT_OTHER, .want = {"-mosaic_domains", "got -4"}},
        {BASE, "-fluence -1", EXIT_OTHER, .want = {"-fluence", "got -1"}},
        {BASE, "-dispersion 1 -dispsteps 0", EXIT_OTHER, .want = {"-dispsteps", "got 0"}},
        {BASE, "-dispsteps -2", EXIT_OTHER, .want = {"-dispsteps", "got -2"}},
    };
    RUN_CASES(cases);
}

/* A malformed -hkl line: FILE:LINE, what was expected, and the format. */
#define BAD_HKL(content, where, what) {BASE, "-hkl bad.hkl", EXIT_OTHER, "bad.hkl", content, {where, what, "'h k l F'"}}

/* Missing or malformed text input files: exit status 1, the file named (with its line where one is at fault). */
static void test_bad_input_files(void **state)
{
    (void)state;
    static const bad_case cases[] = {
        /* missing files */
        {BASE, "-hkl missing.hkl", EXIT_OTHER, .want = {"cannot read 'missing.hkl'", "No such file"}},
        {BASE_NO_CELL, "-mat missing.mat", EXIT_OTHER, .want = {"cannot read 'missing.mat'", "No such file"}},
        {BASE, "-sourcefile missing.txt", EXIT_OTHER, .want = {"cannot read 'missing.txt'", "No such file"}},
        {BASE, "-mask missing.img", EXIT_OTHER, .want = {"cannot read 'missing.img'", "No such file"}},
        {BASE, "-img missing.img", EXIT_OTHER, .want = {"cannot read 'missing.img'", "No such file"}},
        /* -hkl: too few columns, an index that is no integer, an F that is no number, a text header */
        BAD_HKL("1 2 3 10\n1 2 3\n", "bad.hkl:2:", "integer h k l"),
        BAD_HKL("1 2 3 10\n1.5 2 3 10\n", "bad.hkl:2:", "integer h k l"),
        BAD_HKL("1 2 3 10\n\n0 0 1 abc\n", "bad.hkl:3:", "a number F"),
        BAD_HKL("h k l F\n1 2 3 10\n", "bad.hkl:1:", "integer h k l"),
        /* a fifth column, sigF (dualbragg-ensemble's -hklout), is read and ignored (test_hkl_sigF_column); a sixth
         * column, or a fifth that is no number, is refused */
        BAD_HKL("1 2 3 10 0.5 7\n", "bad.hkl:1:", "a number F"),
        BAD_HKL("1 2 3 10\n1 2 4 10 sig\n", "bad.hkl:2:", "optionally a number sigF"),
        BAD_HKL("1 2 3 10nan\n", "bad.hkl:1:", "a number F"),
        /* no reflections at all */
        BAD_HKL("", "bad.hkl: no reflections", "expected lines"),
        BAD_HKL("\n\n", "bad.hkl: no reflections", "expected lines"),
        /* an F that is not finite */
        BAD_HKL("1 2 3 10\n0 0 1 nan\n", "bad.hkl:2:", "finite"),
        BAD_HKL("0 0 1 inf\n", "bad.hkl:1:", "finite"),
        BAD_HKL("1 2 3 10\n\n0 0 1 -infinity\n", "bad.hkl:3:", "finite"),
        /* a tiny file spanning -390..390 on each axis asks for a 3.6 GiB table: refused with the figure, before
         * allocating */
        {BASE, "-hkl big.hkl", EXIT_OTHER, "big.hkl", "-390 -390 -390 1\n390 390 390 1\n",
         {"big.hkl", "h -390..390", "3648.5 MiB", "limit"}},
        /* -mat: too few numbers, a word among them */
        {BASE_NO_CELL, "-mat bad.mat", EXIT_OTHER, "bad.mat", "0.01 0 0\n0 0.01 0\n0 0\n",
         {"bad.mat", "expected 9 numbers", "found 8"}},
        {BASE_NO_CELL, "-mat bad.mat", EXIT_OTHER, "bad.mat", "0.01 0 0\n0 abc 0.01\n0 0 0.01\n",
         {"bad.mat:2:", "expected a number", "matrix element 5 of 9"}},
        /* every malformed -mat went through a use-after-free (caught by the sanitizer build); also trailing text
         * (a line of its own, a tenth number, a comment after a blank line, glued to the ninth number) and a NaN */
        {BASE_NO_CELL, "-mat bad.mat", EXIT_OTHER, "bad.mat", "0.01 0 0\n0 0.01 0\n0 0 0.01\njunk\n",
         {"bad.mat:4:", "after the 9 matrix elements"}},
        {BASE_NO_CELL, "-mat bad.mat", EXIT_OTHER, "bad.mat", "0.01 0 0\n0 0.01 0\n0 0 0.01 0.5\n",
         {"bad.mat:3:", "after the 9 matrix elements"}},
        {BASE_NO_CELL, "-mat bad.mat", EXIT_OTHER, "bad.mat", "0.01 0 0\n0 0.01 0\n0 0 0.01\n\n# a comment\n",
         {"bad.mat:5:", "after the 9 matrix elements"}},
        {BASE_NO_CELL, "-mat bad.mat", EXIT_OTHER, "bad.mat", "0.01 0 0\n0 0.01 0\n0 0 0.01x\n",
         {"bad.mat:3:", "matrix element 9 of 9"}},
        {BASE_NO_CELL, "-mat bad.mat", EXIT_OTHER, "bad.mat", "0.01 0 0\n0 nan 0\n0 0 0.01\n",
         {"bad.mat:2:", "element 5 of 9", "finite"}},
        /* -sourcefile: a word, more than 5 columns, a number that is not finite, no direction (0 0 0), a
         * wavelength that is not positive */
        {BASE, "-sourcefile src.txt", EXIT_OTHER, "src.txt", "0 0 -10 1 1e-10\n0 0 abc 1 1e-10\n",
         {"src.txt:2:", "expected numbers 'X Y Z I lambda'", "'abc"}},
        {BASE, "-sourcefile src.txt", EXIT_OTHER, "src.txt", "0 0 -10 1 1e-10\n0 0 -10 1 1e-10 7\n",
         {"src.txt:2:", "more than 5 columns"}},
        {BASE, "-sourcefile src.txt", EXIT_OTHER, "src.txt", "0 0 -10 1 1e-10\n0 0 -10 1 nan\n",
         {"src.txt:2:", "column 5 is not a finite number"}},
        {BASE, "-sourcefile src.txt", EXIT_OTHER, "src.txt", "0 0 -10 1 inf\n",
         {"src.txt:1:", "column 5 is not a finite number"}},
        {BASE, "-sourcefile src.txt", EXIT_OTHER, "src.txt", "0 inf -10 1 1e-10\n",
         {"src.txt:1:", "column 2 is not a finite number"}},
        {BASE, "-sourcefile src.txt", EXIT_OTHER, "src.txt", "0 0 -10 1 1e-10\n0 0 0 1 1e-10\n",
         {"src.txt:2:", "0 0 0"}},
        {BASE, "-sourcefile src.txt", EXIT_OTHER, "src.txt", "0 0 0\n", {"src.txt:1:", "0 0 0"}},
        {BASE, "-sourcefile src.txt", EXIT_OTHER, "src.txt", "0 0 -10 1 -1e-10\n", {"src.txt:1:", "must be positive"}},
        /* Fdump.bin, the structure-factor cache read when no -hkl is given: text is no cache */
        {BASE, "", EXIT_OTHER, "Fdump.bin", "garbage\n", {"Fdump.bin", "not a structure-factor cache"}},
        /* A cache header whose index ranges overflow int arithmetic: before the fix, (k_range+1) wrapped to INT_MIN,
         * the size check saw a negative count and the table size wrapped to 0 bytes, which matched the empty data:
         * the reads then went out of bounds. Every such header must be refused (the file named), never crash. */
        /* the size wraps to exactly 0 bytes in 64 bits */
        {BASE_NO_F, "", EXIT_OTHER, "Fdump.bin", "0 65534 0 2147483646 0 131070\n\f", {"Fdump.bin"}},
        /* the same with 7 bytes of data (38 bytes in all) */
        {BASE_NO_F, "", EXIT_OTHER, "Fdump.bin", "0 65534 0 2147483646 0 131070\n\f1234567", {"Fdump.bin"}},
        /* h_max - h_min + 1 overflows int */
        {BASE_NO_F, "", EXIT_OTHER, "Fdump.bin", "-2147483648 2147483647 0 0 0 0\n\f", {"Fdump.bin"}},
        /* h_range + 1 overflows int */
        {BASE_NO_F, "", EXIT_OTHER, "Fdump.bin", "0 2147483647 0 0 0 0\n\f", {"Fdump.bin"}},
        /* not an int at all */
        {BASE_NO_F, "", EXIT_OTHER, "Fdump.bin", "0 99999999999 0 0 0 0\n\f", {"Fdump.bin"}},
        /* 34 GB, far above the table limit */
        {BASE_NO_F, "", EXIT_OTHER, "Fdump.bin", "0 2047 0 2047 0 1023\n\f", {"Fdump.bin"}},
        /* -mask: text that is no SMV image, a header that does not end */
        {BASE, "-mask mask.img", EXIT_OTHER, "mask.img", "hello, not an image\n", {"'mask.img'", "not an SMV image"}},
        {BASE, "-mask mask.img", EXIT_OTHER, "mask.img", "{\nHEADER_BYTES=512;\n", {"'mask.img'", "no closing '}'"}},
    };
    RUN_CASES(cases);
}

/* Outputs that cannot be written, or that would replace an input or one another: exit status 1, or 2 for a name
 * given twice. Any output, the cache included, must then be missing, and the sentinels keep their content. */
static void test_outputs(void **state)
{
    (void)state;
    static const bad_case cases[] = {
        /* the first output's folder is missing; a nodir left behind would be reported by the check */
        {BASE, "-floatfile nodir/f.bin", EXIT_OTHER, .want = {"cannot write 'nodir/f.bin'", "does not exist"}},
        /* a later output's folder is missing: all or nothing, so the outputs written before it must not appear
         * either (float.bin is the -floatfile here and must keep its old content) */
        {BASE, "-intfile nodir/i.img", EXIT_OTHER, .want = {"cannot write 'nodir/i.img'", "does not exist"}},
        {BASE, "-pgmfile nodir/p.pgm", EXIT_OTHER, .want = {"cannot write 'nodir/p.pgm'", "does not exist"}},
        {BASE, "-noisefile nodir/n.img", EXIT_OTHER, .want = {"cannot write 'nodir/n.img'", "does not exist"}},
        {BASE, "-floatfile64 nodir/f64.bin", EXIT_OTHER, .want = {"cannot write 'nodir/f64.bin'", "does not exist"}},
        /* -dump used to warn and exit 0 when the cache could not be written */
        {BASE, "-hkl small.hkl -dump nodir/Fdump.bin", EXIT_OTHER, "small.hkl", SMALL_HKL,
         {"cannot write 'nodir/Fdump.bin'", "-dump", "does not exist"}},
        /* a folder name, and a "folder" that is a file (outputs that are folders: test_output_is_folder) */
        {BASE, "-intfile outdir/", EXIT_OTHER, .want = {"cannot write 'outdir/'", "folder name"}},
        {BASE, "-intfile float.bin/i.img", EXIT_OTHER, .want = {"cannot write 'float.bin/i.img'", "not a folder"}},
        /* an image output onto an input, and two outputs onto one file (the cache onto -hkl, also through links:
         * test_dump_overwrites_hkl) */
        {BASE, "-hkl in.hkl -intfile ./in.hkl", EXIT_ARG, "in.hkl", SMALL_HKL, {"-intfile", "-hkl", "same file"}},
        {BASE, "-intfile ./float.bin", EXIT_ARG, .want = {"-floatfile", "-intfile", "same file"}},
    };
    RUN_CASES(cases);
}

/* ---------------------------------------------------------------------------------------------------------- */
/* cases that need more than a text file */

static void test_hkl_is_directory(void **state)
{
    (void)state;
    fx_open();
    fx_mkdir("hkldir");
    CHECK_FAILURE(fx_run(BASE, "-hkl hkldir"), EXIT_OTHER, "cannot read 'hkldir'", "Is a directory");
    fx_close();
    finish();
}

/* A fifth column, sigF (dualbragg-ensemble's -hklout: 'h k l F sigF', nan for an unrefined F), is read and
 * ignored: the image equals the one of the four-column table. (Its refusals are rows of test_bad_input_files.) */
static void test_hkl_sigF_column(void **state)
{
    (void)state;
    fx_open();
    fx_put_text("four.hkl", "1 2 3 10\n0 0 1 5\n-1 0 2 7.5\n");
    fx_put_text("five.hkl", "1 2 3 10 0.5\n0 0 1 5 nan\n-1 0 2 7.5\t1e-3\n");
    char line[512];
    snprintf(line, sizeof line, "%s -hkl four.hkl -floatfile f4.bin -nopgm -nonoise", BASE);
    harness_args a = {0};
    harness_split(&a, line);
    assert_int_equal(harness_run(DB_CLI_PATH, FX.dir, &a, 1), 0);
    harness_args_free(&a);
    snprintf(line, sizeof line, "%s -hkl five.hkl -floatfile f5.bin -nopgm -nonoise", BASE);
    harness_split(&a, line);
    assert_int_equal(harness_run(DB_CLI_PATH, FX.dir, &a, 1), 0);
    harness_args_free(&a);
    char p4[4200], p5[4200];
    fx_path(p4, sizeof p4, "f4.bin");
    fx_path(p5, sizeof p5, "f5.bin");
    assert_true(harness_same_file(p4, p5));
    fx_close();
    finish();
}

/* the parser stopped at a NUL byte: the rest of the file was silently dropped */
static void test_nul_byte(void **state)
{
    (void)state;
    static const char hkl[] = "0 0 1 10\n0 0 2 20\n0 0 3 30\0\n0 0 4 40\n";
    fx_open();
    fx_put("bad.hkl", hkl, sizeof hkl - 1);
    CHECK_FAILURE(fx_run(BASE, "-hkl bad.hkl"), EXIT_OTHER, "bad.hkl:3:", "NUL byte");
    fx_close();
    fx_open();
    fx_put("bad.mat", "0.01 0 0\n0 0.01 0\n\0 0 0.01\n", 27);
    CHECK_FAILURE(fx_run(BASE_NO_CELL, "-mat bad.mat"), EXIT_OTHER, "bad.mat:3:", "NUL byte");
    fx_close();
    finish();
}

/* control for the -mat rows that refuse text after the ninth number: white space there is fine */
static void test_mat_trailing_space_accepted(void **state)
{
    (void)state;
    fx_open();
    fx_put_text("ok.mat", "0.01 0 0\n0 0.01 0\n0 0 0.01\n\n  \n");
    int status = fx_run(BASE_NO_CELL, "-mat ok.mat -nopgm -nonoise");
    char *log = fx_log();
    if (status != 0) fail_msg("command: dualbragg %s\nstatus %d, output:\n%s", FX.line, status, log);
    free(log);
    fx_close();
    finish();
}

static void test_fdump_truncated(void **state)
{
    (void)state;
    char golden[4096];
    snprintf(golden, sizeof golden, "%s/b_triclinic/Fdump.bin", DB_GOLDEN_DIR);
    size_t len;
    unsigned char *fdump = harness_read(golden, &len);
    assert_non_null(fdump);
    assert_true(len > 1000);
    fx_open();
    fx_put("Fdump.bin", fdump, 1000);
    CHECK_FAILURE(fx_run(BASE, ""), EXIT_OTHER, "Fdump.bin", "expected", "bytes");
    fx_close();
    free(fdump);
    finish();
}

/* a NaN structure factor in a cache would give a NaN image */
static void test_fdump_nan_F(void **state)
{
    (void)state;
    const char header[] = "0 0 0 0 0 1\n\f"; /* 2 x 2 x 3 padded entries */
    double F[12];
    for (int i = 0; i < 12; i++) F[i] = 100.0;
    F[1] = NAN;
    unsigned char buf[sizeof header - 1 + sizeof F];
    memcpy(buf, header, sizeof header - 1);
    memcpy(buf + sizeof header - 1, F, sizeof F);
    fx_open();
    fx_put("Fdump.bin", buf, sizeof buf);
    CHECK_FAILURE(fx_run(BASE_NO_F, ""), EXIT_OTHER, "Fdump.bin", "not a finite number", "h 0 k 0 l 1");
    fx_close();
    /* control: the same cache without the NaN is read */
    F[1] = 100.0;
    memcpy(buf + sizeof header - 1, F, sizeof F);
    fx_open();
    fx_put("Fdump.bin", buf, sizeof buf);
    int status = fx_run(BASE_NO_F, "-nopgm -nonoise");
    char *log = fx_log();
    if (status != 0) fail_msg("command: dualbragg %s\nstatus %d, output:\n%s", FX.line, status, log);
    free(log);
    fx_close();
    finish();
}

/* SMV masks: one cut short, one of another size than the detector */
static void test_mask_smv(void **state)
{
    (void)state;
    fx_open();
    fx_put_smv("mask.img", 64, 64, 100);
    CHECK_FAILURE(fx_run(BASE, "-mask mask.img"), EXIT_OTHER, "'mask.img'", "truncated");
    fx_close();
    fx_open();
    fx_put_smv("mask.img", 32, 32, 0);
    CHECK_FAILURE(fx_run(BASE, "-mask mask.img"), EXIT_OTHER, "-mask mask.img", "32 x 32", "64 x 64");
    fx_close();
    finish();
}

/* an output that is a folder fails before anything is written; -dump used to warn and exit 0 then */
static void test_output_is_folder(void **state)
{
    (void)state;
    static const char *const flags[] = {"-floatfile", "-intfile", "-pgmfile", "-noisefile", "-floatfile64"};
    for (size_t i = 0; i < sizeof flags / sizeof *flags; i++) {
        char extra[128];
        snprintf(extra, sizeof extra, "%s outdir", flags[i]);
        fx_open();
        fx_mkdir("outdir");
        CHECK_FAILURE(fx_run(BASE, extra), EXIT_OTHER, "cannot write 'outdir'", flags[i], "folder");
        fx_close();
    }
    fx_open();
    fx_put_text("small.hkl", SMALL_HKL);
    fx_mkdir("dumpdir");
    CHECK_FAILURE(fx_run(BASE, "-hkl small.hkl -dump dumpdir"), EXIT_OTHER, "cannot write 'dumpdir'", "-dump",
                  "folder");
    fx_close();
    finish();
}

/* the folder exists but cannot be written (root can write anywhere: skipped then) */
static void test_output_folder_not_writable(void **state)
{
    (void)state;
    if (geteuid() == 0) skip();
    fx_open();
    fx_mkdir("ro");
    char path[4200];
    fx_path(path, sizeof path, "ro");
    assert_int_equal(chmod(path, 0555), 0);
    CHECK_FAILURE(fx_run(BASE, "-noisefile ro/n.img"), EXIT_OTHER, "cannot write 'ro/n.img'", "not writable");
    chmod(path, 0755);
    fx_close();
    finish();
}

/* -hkl x -dump x overwrote the input with the binary cache; also through other spellings and links (the links make
 * these more than table rows) */
static void test_dump_overwrites_hkl(void **state)
{
    (void)state;
    static const char hkl[] = "0 0 1 50\n1 0 0 40\n";
    static const char *const extra[] = {"-hkl in.hkl -dump in.hkl", "-hkl in.hkl -dump ./in.hkl",
                                        "-hkl ./sub/../in.hkl -dump in.hkl", "-hkl in.hkl -dump link.hkl",
                                        "-hkl in.hkl -dump hard.hkl"};
    for (size_t i = 0; i < sizeof extra / sizeof *extra; i++) {
        fx_open();
        fx_put_text("in.hkl", hkl);
        fx_mkdir("sub");
        char target[4200], link[4200];
        fx_path(target, sizeof target, "in.hkl");
        fx_path(link, sizeof link, "link.hkl");
        assert_int_equal(symlink("in.hkl", link), 0);
        fx_register("link.hkl");
        fx_path(link, sizeof link, "hard.hkl");
        assert_int_equal(link_path_hard(target, link), 0);
        fx_register("hard.hkl");
        CHECK_FAILURE(fx_run(BASE, extra[i]), EXIT_ARG, "-dump", "-hkl", "same file");
        if (!fx_file_is("in.hkl", hkl, sizeof hkl - 1)) {
            fprintf(stderr, "command: dualbragg %s\n  in.hkl was changed\n", FX.line);
            FAILED_RUNS++;
        }
        fx_close();
    }
    finish();
}

/* without -hkl the cache is an input: no output may replace it */
static void test_output_overwrites_fdump_input(void **state)
{
    (void)state;
    char golden[4096];
    snprintf(golden, sizeof golden, "%s/b_triclinic/Fdump.bin", DB_GOLDEN_DIR);
    size_t len;
    unsigned char *fdump = harness_read(golden, &len);
    assert_non_null(fdump);
    fx_open();
    fx_put("Fdump.bin", fdump, len);
    CHECK_FAILURE(fx_run(BASE_NO_F, "-noisefile Fdump.bin"), EXIT_ARG, "-noisefile", "same file");
    fx_close();
    free(fdump);
    finish();
}

/* the last output fails during its write (a full device): the outputs written before it must not replace
 * anything (float.bin and intimage.img keep their sentinels) and no temporary may be left */
static void test_write_failure_rolls_back(void **state)
{
    (void)state;
    if (access("/dev/full", W_OK) != 0) skip();
    EXPECT_FAILURE(BASE, "-noisefile /dev/full", EXIT_OTHER, "cannot write '/dev/full'", "-noisefile", "No space");
    fx_open();
    fx_put_text("small.hkl", "0 0 1 50\n1 0 0 40\n");
    /* with -hkl: the cache, written first, must not appear either */
    CHECK_FAILURE(fx_run(BASE, "-hkl small.hkl -pgmfile /dev/full"), EXIT_OTHER, "cannot write '/dev/full'",
                  "-pgmfile");
    fx_close();
    finish();
}

/* a successful run writes every output and leaves no temporary behind */
static void test_outputs_complete_no_temporaries(void **state)
{
    (void)state;
    fx_open();
    fx_put_text("small.hkl", "0 0 1 50\n1 0 0 40\n0 1 0 30\n");
    int status = fx_run(BASE_NO_F, "-hkl small.hkl -floatfile64 f64.bin -grad a,b -grad_F fj.txt");
    char *log = fx_log();
    if (status != 0) fail_msg("command: dualbragg %s\nstatus %d, output:\n%s", FX.line, status, log);
    free(log);
    static const char *const expected[] = {"Fdump.bin",      "f64.bin",   "float.da.bin", "float.db.bin",
                                           "noiseimage.img", "image.pgm", "fj.txt"};
    for (size_t i = 0; i < sizeof expected / sizeof *expected; i++) {
        if (!fx_exists(expected[i])) fail_msg("%s was not written", expected[i]);
        fx_register(expected[i]);
    }
    assert_false(fx_file_is("float.bin", FLOAT_SENTINEL, sizeof FLOAT_SENTINEL - 1));
    /* several outputs onto one device are not "the same file" twice */
    status = fx_run(BASE, "-intfile /dev/null -noisefile /dev/null -pgmfile /dev/null");
    log = fx_log();
    if (status != 0) fail_msg("command: dualbragg %s\nstatus %d, output:\n%s", FX.line, status, log);
    free(log);
    assert_false(fx_file_is("intimage.img", INT_SENTINEL, sizeof INT_SENTINEL - 1));
    /* nothing else: no *.tmp.* leftovers */
    DIR *d = opendir(FX.dir);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".tmp.")) fail_msg("temporary left behind: %s", e->d_name);
    closedir(d);
    fx_close();
    finish();
}

/* -grad_F FILE (the structure-factor Jacobian as text): refused before any work over an input or another output, or
 * where it cannot be written; a failed write takes the other outputs with it. (Without a table to differentiate:
 * rows of test_command_line.) */
static void test_grad_F_refused(void **state)
{
    (void)state;
    static const char hkl[] = "0 0 1 50\n1 0 0 40\n0 1 0 30\n";
    static const struct {
        const char *extra;
        int status;
        const char *words[3];
    } cases[] = {
        {"-hkl small.hkl -grad_F small.hkl", EXIT_ARG, {"-grad_F 'small.hkl'", "-hkl", "same file"}},
        {"-hkl small.hkl -grad_F ./float.bin", EXIT_ARG, {"-floatfile", "-grad_F", "same file"}},
        {"-hkl small.hkl -grad_F nodir/fj.txt", EXIT_OTHER,
         {"cannot write 'nodir/fj.txt'", "-grad_F", "does not exist"}},
        {"-hkl small.hkl -grad_F /dev/full", EXIT_OTHER, {"cannot write '/dev/full'", "-grad_F", "No space"}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (strstr(cases[i].extra, "/dev/full") && access("/dev/full", W_OK) != 0) continue;
        fx_open();
        fx_put_text("small.hkl", hkl);
        CHECK_FAILURE(fx_run(BASE_NO_F, cases[i].extra), cases[i].status, cases[i].words[0], cases[i].words[1],
                      cases[i].words[2]);
        if (!fx_file_is("small.hkl", hkl, sizeof hkl - 1)) {
            fprintf(stderr, "command: dualbragg %s\n  small.hkl was changed\n", FX.line);
            FAILED_RUNS++;
        }
        fx_close();
    }
    finish();
}

/* positive: F from the cache, and the program says so */
static void test_fdump_read_without_hkl(void **state)
{
    (void)state;
    char golden[4096];
    snprintf(golden, sizeof golden, "%s/b_triclinic/Fdump.bin", DB_GOLDEN_DIR);
    size_t len, n;
    unsigned char *fdump = harness_read(golden, &len);
    assert_non_null(fdump);

    /* (a) a cache copied in; no -hkl and no -default_F: every F comes from it */
    fx_open();
    fx_put("Fdump.bin", fdump, len);
    int status = fx_run(BASE_NO_F, "-nopgm -nonoise");
    char *log = fx_log();
    if (status != 0 || !strstr(log, "reading Fs from Fdump.bin (no -hkl given)"))
        fail_msg("command: dualbragg %s\nstatus %d, output:\n%s", FX.line, status, log);
    free(log);
    assert_true(fx_file_is("Fdump.bin", (const char *)fdump, len)); /* read, not rewritten */
    char path[4200];
    fx_path(path, sizeof path, "float.bin");
    float *img = (float *)harness_read(path, &n);
    assert_non_null(img);
    assert_int_equal(n, 64 * 64 * sizeof(float));
    float max = 0;
    for (size_t i = 0; i < 64 * 64; i++) max = img[i] > max ? img[i] : max;
    assert_true(max > 0);
    free(img);
    fx_close();
    free(fdump);

    /* (b) a cache left by an earlier run with -hkl gives the same image as that run */
    fx_open();
    fx_put_text("small.hkl", "0 0 1 50\n1 0 0 40\n0 1 0 30\n1 1 0 20\n-1 0 0 40\n0 -1 0 30\n0 0 -1 50\n");
    status = fx_run(BASE_NO_F, "-nopgm -nonoise -hkl small.hkl -floatfile first.bin");
    log = fx_log();
    if (status != 0 || !strstr(log, "writing dump file for next time: Fdump.bin") || strstr(log, "reading Fs from"))
        fail_msg("command: dualbragg %s\nstatus %d, output:\n%s", FX.line, status, log);
    free(log);
    assert_true(fx_exists("Fdump.bin"));
    status = fx_run(BASE_NO_F, "-nopgm -nonoise -floatfile second.bin");
    log = fx_log();
    if (status != 0 || !strstr(log, "reading Fs from Fdump.bin (no -hkl given)"))
        fail_msg("command: dualbragg %s\nstatus %d, output:\n%s", FX.line, status, log);
    free(log);
    char a[4200], b[4200];
    fx_path(a, sizeof a, "first.bin");
    fx_path(b, sizeof b, "second.bin");
    assert_true(harness_same_file(a, b));
    fx_close();
    finish();
}

/* -device: a bad keyword is refused; cuda without a usable GPU (or in a build without CUDA) is one line naming the
 * reason, exit 1, and no output. On a machine with a usable GPU that second check cannot apply, and says so; there
 * -grad_F with -device cuda is checked instead (refused before the image renders: exit 2, no output). -grad_F with
 * -device emulate is refused the same way everywhere. */
static void test_device(void **state)
{
    (void)state;
    EXPECT_FAILURE(BASE, "-device gpu", EXIT_ARG, "-device expects cpu, cuda, auto or emulate", "'gpu'");
    char name[128], why[256];
    if (db_cuda_usable(name, sizeof name, why, sizeof why)) {
        print_message("a usable GPU (%s) is here: the failure of -device cuda is not checked\n", name);
        /* but -grad_F is: the structure-factor Jacobian comes from the CPU renderers only */
        fx_open();
        fx_put_text("small.hkl", "0 0 1 50\n1 0 0 40\n0 1 0 30\n");
        CHECK_FAILURE(fx_run(BASE_NO_F, "-hkl small.hkl -device cuda -grad_F fj.txt"), EXIT_ARG, "-grad_F fj.txt: ",
                      "CPU renderers only", "-device cpu");
        fx_close();
    } else {
        EXPECT_FAILURE(BASE, "-device cuda", EXIT_OTHER, "-device cuda: ", why);
    }
    /* the GPU renderer's host emulation refuses -grad_F as the GPU does (device.c: what each renderer supports) */
    fx_open();
    fx_put_text("small.hkl", "0 0 1 50\n1 0 0 40\n0 1 0 30\n");
    CHECK_FAILURE(fx_run(BASE_NO_F, "-hkl small.hkl -device emulate -grad_F fj.txt"), EXIT_ARG, "-grad_F fj.txt: ",
                  "CPU renderers only", "renders on emulate", "-device cpu");
    fx_close();
    finish();
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_command_line),
        T(test_impossible_values),
        T(test_bad_input_files),
        T(test_outputs),
        T(test_device),
        T(test_hkl_is_directory),
        T(test_hkl_sigF_column),
        T(test_nul_byte),
        T(test_mat_trailing_space_accepted),
        T(test_fdump_truncated),
        T(test_fdump_nan_F),
        T(test_fdump_read_without_hkl),
        T(test_mask_smv),
        T(test_output_is_folder),
        T(test_output_folder_not_writable),
        T(test_dump_overwrites_hkl),
        T(test_output_overwrites_fdump_input),
        T(test_outputs_complete_no_temporaries),
        T(test_write_failure_rolls_back),
        T(test_grad_F_refused),
    };
#undef T
    return cmocka_run_group_tests_name("command-line errors", tests, NULL, NULL);
}
