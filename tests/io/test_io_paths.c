/* test_io_paths.c: no program writes an output over a file it reads, or two outputs over one file (issue 18,
 * class 1). Each case runs one of dualbragg, dualbragg-refine and dualbragg-gradcheck in a fresh folder holding
 * the inputs a run reads (P1.hkl, a -boxes file, an SMV -mask, an observed image, the Fdump.bin cache, a symbolic
 * link and a hard link to P1.hkl) and checks that it
 *   - exits 2 (a bad command line) before any work,
 *   - says which two flags name the same file ("same file"),
 *   - leaves every file in the folder as it was, and adds none but out.log (no output, no temporary).
 * The spellings cover what the check must see through: "./x", "sub/../x", a symbolic link, a hard link.
 * And a run stopped by SIGINT or SIGTERM leaves no temporary output behind (class 4). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli_harness.h"
#include "test_util.h"

#define GEOM "-cell 70 80 90 75 85 95 -N 4 -lambda 1 -distance 100 -pixel 0.1 -detpixels 48 -oversample 1 -noprogress"

typedef struct io_case {
    const char *prog;   /* "dualbragg", "refine" or "gradcheck" */
    const char *extra;  /* the flags after GEOM */
    const char *flag_a; /* the two flags the message must name */
    const char *flag_b;
} io_case;

static const char *program(const char *prog)
{
    if (!strcmp(prog, "refine")) return DB_REFINE_PATH;
    if (!strcmp(prog, "gradcheck")) return DB_GRADCHECK_PATH;
    return DB_CLI_PATH;
}

/* The folder's inputs: made once per case, so that every case starts from the same files. */
static void make_inputs(const char *dir)
{
    char src[4200], path[4200];
    snprintf(src, sizeof src, "%s/b_triclinic/P1.hkl", DB_GOLDEN_DIR);
    snprintf(path, sizeof path, "%s/P1.hkl", dir);
    assert_int_equal(harness_copy(src, path), 0);
    harness_args a = {0};
    /* the observed image, an SMV image used as the mask, and the Fdump cache, from one run */
    harness_split(&a, GEOM " -hkl P1.hkl -floatfile64 obs.f64 -intfile mask.img -nopgm -nonoise -floatfile float.bin");
    assert_int_equal(harness_run(DB_CLI_PATH, dir, &a, 1), 0);
    harness_args_free(&a);
    snprintf(path, sizeof path, "%s/boxes.txt", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("10 20 10 20\n25 35 25 35\n", f);
    fclose(f);
    snprintf(path, sizeof path, "%s/sub", dir);
    assert_int_equal(mkdir(path, 0755), 0);
    snprintf(path, sizeof path, "%s/link.hkl", dir);
    assert_int_equal(symlink("P1.hkl", path), 0);
    snprintf(src, sizeof src, "%s/P1.hkl", dir);
    snprintf(path, sizeof path, "%s/hard.hkl", dir);
    assert_int_equal(link(src, path), 0);
    snprintf(path, sizeof path, "%s/out.log", dir);
    unlink(path);
}

/* Every regular file of the folder (and sub/) with its bytes, to compare before and after a run. */
typedef struct snapshot {
    int n;
    char name[32][300];
    unsigned char *data[32];
    size_t len[32];
} snapshot;

static void take(const char *dir, snapshot *s)
{
    memset(s, 0, sizeof *s);
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d))) {
        char path[4400];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (!strcmp(e->d_name, "out.log") || lstat(path, &st) != 0 || !S_ISREG(st.st_mode)) continue;
        assert_true(s->n < 32);
        snprintf(s->name[s->n], sizeof s->name[0], "%s", e->d_name);
        s->data[s->n] = harness_read(path, &s->len[s->n]);
        s->n++;
    }
    closedir(d);
    char sub[4200];
    snprintf(sub, sizeof sub, "%s/sub", dir);
    d = opendir(sub);
    assert_non_null(d);
    while ((e = readdir(d))) /* sub/ stays empty */
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            assert_true(s->n < 32);
            snprintf(s->name[s->n++], sizeof s->name[0], "sub/%s", e->d_name);
        }
    closedir(d);
}

/* take() for a folder without sub/ */
static void take_flat(const char *dir, snapshot *s)
{
    char sub[4200];
    snprintf(sub, sizeof sub, "%s/sub", dir);
    mkdir(sub, 0755);
    take(dir, s);
    rmdir(sub);
}

static void release(snapshot *s)
{
    for (int k = 0; k < s->n; k++) free(s->data[k]);
}

/* 0 when the folder is as before; else prints what changed. */
static int compare(const snapshot *before, const snapshot *after, const char *line)
{
    int bad = 0;
    for (int k = 0; k < after->n; k++) {
        int found = -1;
        for (int j = 0; j < before->n; j++)
            if (!strcmp(before->name[j], after->name[k])) found = j;
        if (found < 0) {
            fprintf(stderr, "%s\n  wrote %s\n", line, after->name[k]);
            bad = 1;
        } else if (before->len[found] != after->len[k] ||
                   (after->len[k] && memcmp(before->data[found], after->data[k], after->len[k]))) {
            fprintf(stderr, "%s\n  changed %s\n", line, after->name[k]);
            bad = 1;
        }
    }
    if (before->n != after->n) {
        fprintf(stderr, "%s\n  %d files before, %d after\n", line, before->n, after->n);
        bad = 1;
    }
    return bad;
}

static int run_case(const io_case *c)
{
    char dir[4096], line[2048];
    assert_int_equal(harness_mkdtemp(dir, sizeof dir), 0);
    make_inputs(dir);
    harness_args a = {0};
    harness_split(&a, GEOM);
    if (strcmp(c->prog, "dualbragg") == 0) harness_split(&a, "-nopgm");
    harness_split(&a, c->extra);
    snprintf(line, sizeof line, "%s %s", c->prog, c->extra);
    snapshot before, after;
    take(dir, &before);
    int rc = harness_run(program(c->prog), dir, &a, 1);
    harness_args_free(&a);
    take(dir, &after);
    char path[4200];
    snprintf(path, sizeof path, "%s/out.log", dir);
    char *log = harness_read_text(path);
    int bad = compare(&before, &after, line);
    if (rc != 2) {
        fprintf(stderr, "%s\n  exit %d, expected 2\n", line, rc);
        bad = 1;
    }
    if (!log || !strstr(log, c->flag_a) || !strstr(log, c->flag_b) || !strstr(log, "same file")) {
        fprintf(stderr, "%s\n  the message does not name %s, %s and 'same file':\n%s\n", line, c->flag_a, c->flag_b,
                log ? log : "(no output)");
        bad = 1;
    }
    free(log);
    release(&before);
    release(&after);
    harness_rmtree(dir);
    return bad;
}

static void run_table(const io_case *cases, size_t n)
{
    int failed = 0;
    for (size_t i = 0; i < n; i++) failed += run_case(&cases[i]);
    if (failed) fail_msg("%d of %zu cases wrote over an input or another output, or said so wrongly", failed, n);
}

#define REFINE_BASE "-hkl P1.hkl -obs obs.f64 -obs_float64 -refine a,b -objective lsq -weights unit "

static void test_refine_outputs(void **state)
{
    (void)state;
    static const io_case cases[] = {
        {"refine", REFINE_BASE "-json P1.hkl", "-json", "-hkl"},
        {"refine", REFINE_BASE "-json ./sub/../P1.hkl", "-json", "-hkl"},
        {"refine", REFINE_BASE "-json link.hkl", "-json", "-hkl"},
        {"refine", REFINE_BASE "-cmdline hard.hkl", "-cmdline", "-hkl"},
        {"refine", REFINE_BASE "-boxes boxes.txt -floatfile ./boxes.txt", "-floatfile", "-boxes"},
        {"refine", REFINE_BASE "-mask mask.img -cmdline mask.img", "-cmdline", "-mask"},
        {"refine", REFINE_BASE "-json Fdump.bin", "-json", "Fdump"},
        {"refine", REFINE_BASE "-floatfile obs.f64", "-floatfile", "-obs"},
        {"refine", REFINE_BASE "-json fit.json -cmdline ./fit.json", "-json", "-cmdline"},
    };
    run_table(cases, sizeof cases / sizeof cases[0]);
}

static void test_gradcheck_outputs(void **state)
{
    (void)state;
    static const io_case cases[] = {
        {"gradcheck", "-hkl P1.hkl -grad a -check_roi 10 12 10 12 -json P1.hkl", "-json", "-hkl"},
        {"gradcheck", "-hkl P1.hkl -grad a -check_roi 10 12 10 12 -json link.hkl", "-json", "-hkl"},
        {"gradcheck", "-hkl P1.hkl -grad a -boxes boxes.txt -json boxes.txt", "-json", "-boxes"},
        {"gradcheck", "-hkl P1.hkl -grad a -mask mask.img -json ./mask.img", "-json", "-mask"},
        {"gradcheck", "-hkl P1.hkl -grad a -check_roi 10 12 10 12 -json Fdump.bin", "-json", "Fdump"},
        {"gradcheck", "-grad a -check_roi 10 12 10 12 -json Fdump.bin", "-json", "Fdump"}, /* read without -hkl */
    };
    run_table(cases, sizeof cases / sizeof cases[0]);
}

static void test_dualbragg_outputs(void **state)
{
    (void)state;
    static const io_case cases[] = {
        {"dualbragg", "-hkl P1.hkl -boxes boxes.txt -floatfile boxes.txt", "-floatfile", "-boxes"},
        {"dualbragg", "-hkl P1.hkl -mask mask.img -intfile ./mask.img", "-intfile", "-mask"},
        {"dualbragg", "-hkl P1.hkl -floatfile hard.hkl", "-floatfile", "-hkl"},
        {"dualbragg", "-floatfile64 Fdump.bin", "-floatfile64", "-dump"}, /* the cache read without -hkl */
        {"dualbragg", "-hkl P1.hkl -grad_F link.hkl", "-grad_F", "-hkl"},
        {"dualbragg", "-hkl P1.hkl -boxes boxes.txt -grad_F ./sub/../boxes.txt", "-grad_F", "-boxes"},
        {"dualbragg", "-grad_F Fdump.bin", "-grad_F", "-dump"}, /* the cache read without -hkl */
        {"dualbragg", "-hkl P1.hkl -floatfile f.bin -grad_F ./f.bin", "-floatfile", "-grad_F"},
    };
    run_table(cases, sizeof cases / sizeof cases[0]);
}

/* Interrupted runs (issue 18, class 4): dualbragg stopped by SIGINT or SIGTERM while its outputs are still
 * temporary files (a 1024 x 1024 run with 30 mosaic domains takes seconds; the temporaries exist from the start)
 * ends by that signal and leaves the folder as it was: no output, no "*.dualbragg.tmp.*". */
static int has_temporary(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *e;
    int found = 0;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".dualbragg.tmp.")) found = 1;
    closedir(d);
    return found;
}

static void test_interrupt_leaves_nothing(void **state)
{
    (void)state;
    static const int sigs[] = {SIGINT, SIGTERM};
    for (int k = 0; k < 2; k++) {
        char dir[4096], src[4200], path[4200];
        assert_int_equal(harness_mkdtemp(dir, sizeof dir), 0);
        snprintf(src, sizeof src, "%s/b_triclinic/P1.hkl", DB_GOLDEN_DIR);
        snprintf(path, sizeof path, "%s/P1.hkl", dir);
        assert_int_equal(harness_copy(src, path), 0);
        snapshot before, after;
        take_flat(dir, &before);
        harness_args a = {0};
        harness_split(&a, "-hkl P1.hkl -cell 70 80 90 75 85 95 -N 10 -lambda 1 -distance 100 -pixel 0.1 -detpixels 1024 "
                          "-mosaic_dom 30 -mosaic 0.5 -oversample 2 -noprogress");
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            if (chdir(dir) != 0) _exit(126);
            signal(SIGINT, SIG_DFL); /* as a program started from a terminal has them */
            signal(SIGTERM, SIG_DFL);
            int fd = open("/dev/null", O_WRONLY);
            if (fd >= 0) {
                dup2(fd, 1);
                dup2(fd, 2);
            }
            harness_exec(DB_CLI_PATH, &a);
        }
        harness_args_free(&a);
        int waited = 0;
        while (!has_temporary(dir) && waited < 2000) { /* 20 s at most */
            usleep(10000);
            waited++;
        }
        int status = 0, ended_early = waitpid(pid, &status, WNOHANG) == pid;
        if (!ended_early) {
            kill(pid, sigs[k]);
            assert_int_equal(waitpid(pid, &status, 0), pid);
        }
        take_flat(dir, &after);
        char line[64];
        snprintf(line, sizeof line, "dualbragg stopped by signal %d", sigs[k]);
        int changed = compare(&before, &after, line);
        release(&before);
        release(&after);
        harness_rmtree(dir);
        if (ended_early) fail_msg("the run ended before its temporary files appeared (exit status %d)", status);
        test_context("signal %d", sigs[k]);
        assert_true(WIFSIGNALED(status) && WTERMSIG(status) == sigs[k]);
        assert_false(changed);
        test_context("%s", "");
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refine_outputs),
        cmocka_unit_test(test_gradcheck_outputs),
        cmocka_unit_test(test_dualbragg_outputs),
        cmocka_unit_test(test_interrupt_leaves_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
