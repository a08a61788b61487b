/* test_stills.c: the -stills FILE of the ensemble refinement (refine/stills.c, the format in refine/stills.h).
 *  - a good file: comments (whole lines, after words, inside a word), blank lines, CRLF, quoted words with
 *    spaces and joined quoted parts, the per-image flags taken out, relative paths (the image and every
 *    file-valued flag) resolved against the stills file's folder, absolute ones kept, a stills file named
 *    without a folder;
 *  - each error: the code, and a message naming -stills FILE:LINE and what was expected;
 *  - limits: 256 words accepted and 257 refused, the count of stills, a line too long, a NUL byte, /dev/zero, a
 *    file over 64 MiB (sparse), a missing file and a folder;
 *  - configurations: a repeated flag in db_config_parse takes the later value (-misset twice), a still's
 *    -misset and -lambda win over the shared ones (read back from the simulation), a still without them keeps
 *    the shared ones, a relative -mat on a still is read from the stills file's folder whatever the current
 *    folder, errors of a still's flags carry -stills FILE:LINE; every file-valued flag is one db_config_parse
 *    knows. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "dualbragg.h"
#include "cli_harness.h"
#include "fileio.h" /* DB_TEXT_MAX_LINE */
#include "stills.h"
#include "test_util.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
    int n = snprintf(buf, size, "%s/%s", DIR_, name);
    assert_true(n > 0 && (size_t)n < size);
}

static void write_bytes(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static void write_in(const char *name, const char *text)
{
    char p[4200];
    path_in(p, sizeof p, name);
    write_bytes(p, text, strlen(text));
}

static void assert_has(const char *message, const char *part)
{
    if (!strstr(message, part)) fail_msg("message lacks \"%s\":\n    %s", part, message);
}

static void assert_starts(const char *message, const char *head)
{
    if (strncmp(message, head, strlen(head))) fail_msg("message does not start with \"%s\":\n    %s", head, message);
}

static void assert_str(const char *actual, const char *expected)
{
    if (!actual || strcmp(actual, expected)) fail_msg("got '%s', expected '%s'", actual ? actual : "(null)", expected);
}

/* "DIR_/name" as a string to compare with */
static const char *in_dir(const char *name)
{
    static char buf[4][4200];
    static int k;
    k = (k + 1) % 4;
    path_in(buf[k], sizeof buf[k], name);
    return buf[k];
}

static void test_good_file(void **state)
{
    (void)state;
    write_in("stills.txt",
             "# stills of a test\n"
             "\n"
             "a.img -misset 1 2 3 -mat A.mat   # trailing comment\n"
             "   \t /abs/b.img -boxes \"my boxes.txt\" -lambda 1.5\n"
             "\"dir with space/c.img\" -fluence 1e24 -spots 10 -spot_size 7 -obs_adc 10 -gain 2 -obs_float64\n"
             "d\"x y\"e.img -hkl /abs/f.hkl -mask m.img\r\n"
             "e.img -sourcefile \"#s.txt\" -phi 0#comment inside a word\n"
             "   # indented comment\n"
             "f.img"); /* no newline at the end */
    char p[4200];
    path_in(p, sizeof p, "stills.txt");
    db_stills s;
    db_error err;
    int rc = db_stills_read(p, &s, &err);
    if (rc) fail_msg("%s", err.message);
    assert_int_equal(s.n, 6);
    assert_str(s.path, p);

    assert_int_equal(s.s[0].line, 3);
    assert_str(s.s[0].obs_path, in_dir("a.img"));
    assert_int_equal(s.s[0].argc, 6);
    const char *e0[] = {"-misset", "1", "2", "3", "-mat", in_dir("A.mat")};
    for (int k = 0; k < 6; k++) assert_str(s.s[0].argv[k], e0[k]);
    assert_null(s.s[0].argv[6]);
    assert_int_equal(s.s[0].spots, 0);
    assert_int_equal(s.s[0].has_gain, 0);

    assert_int_equal(s.s[1].line, 4);
    assert_str(s.s[1].obs_path, "/abs/b.img");
    assert_int_equal(s.s[1].argc, 4);
    assert_str(s.s[1].argv[1], in_dir("my boxes.txt"));
    assert_str(s.s[1].argv[3], "1.5");

    assert_int_equal(s.s[2].line, 5);
    assert_str(s.s[2].obs_path, in_dir("dir with space/c.img"));
    assert_int_equal(s.s[2].argc, 2);
    assert_str(s.s[2].argv[0], "-fluence");
    assert_str(s.s[2].argv[1], "1e24");
    assert_int_equal(s.s[2].spots, 10);
    assert_int_equal(s.s[2].spot_size, 7);
    assert_int_equal(s.s[2].has_obs_adc, 1);
    assert_close(s.s[2].obs_adc, 10.0, 0, 0);
    assert_int_equal(s.s[2].has_gain, 1);
    assert_close(s.s[2].gain, 2.0, 0, 0);
    assert_int_equal(s.s[2].obs_float64, 1);

    assert_int_equal(s.s[3].line, 6);
    assert_str(s.s[3].obs_path, in_dir("dx ye.img"));
    assert_int_equal(s.s[3].argc, 4);
    assert_str(s.s[3].argv[1], "/abs/f.hkl");
    assert_str(s.s[3].argv[3], in_dir("m.img")); /* the CR of CRLF is white space */

    assert_int_equal(s.s[4].line, 7);
    assert_int_equal(s.s[4].argc, 4);
    assert_str(s.s[4].argv[1], in_dir("#s.txt"));
    assert_str(s.s[4].argv[3], "0");

    assert_int_equal(s.s[5].line, 9);
    assert_str(s.s[5].obs_path, in_dir("f.img"));
    assert_int_equal(s.s[5].argc, 0);
    assert_null(s.s[5].argv[0]);
    db_stills_free(&s);
    assert_int_equal(s.n, 0);
    assert_null(s.s);
    db_stills_free(&s); /* twice: a zeroed set */
    db_stills_free(NULL);

    /* a stills file named without a folder: its folder is the current one, and paths stay as written */
    char cwd[4200];
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(DIR_), 0);
    rc = db_stills_read("stills.txt", &s, &err);
    assert_int_equal(chdir(cwd), 0);
    if (rc) fail_msg("%s", err.message);
    assert_str(s.s[0].obs_path, "a.img");
    assert_str(s.s[0].argv[5], "A.mat");
    assert_str(s.s[1].obs_path, "/abs/b.img");
    db_stills_free(&s);
}

/* every file-valued flag of a still is resolved; the values of other flags are not */
static void test_every_file_flag_resolved(void **state)
{
    (void)state;
    static const char *const flags[] = {"-hkl", "-mat", "-matrix", "-sourcefile", "-mask", "-img", "-boxes", "-dump",
                                        "-dumpfile", "-floatfile", "-floatimage", "-floatfile64", "-intfile",
                                        "-intimage", "-pgmfile", "-pgmimage", "-noisefile", "-noiseimage", "-pngfile",
                                        "-grad_F", "-gradprefix"};
    const int nf = (int)(sizeof flags / sizeof flags[0]);
    char line[4096] = "x.img";
    for (int k = 0; k < nf; k++) {
        strcat(line, " ");
        strcat(line, flags[k]);
        strcat(line, " v");
    }
    strcat(line, " -device cpu -phi_carryover off -grad a,b -mat\n"); /* a file flag without its value: kept as is */
    write_in("flags.txt", line);
    char p[4200];
    path_in(p, sizeof p, "flags.txt");
    db_stills s;
    db_error err;
    if (db_stills_read(p, &s, &err)) fail_msg("%s", err.message);
    assert_int_equal(s.s[0].argc, 2 * nf + 7);
    for (int k = 0; k < nf; k++) {
        test_context("%s", flags[k]);
        assert_str(s.s[0].argv[2 * k], flags[k]);
        assert_str(s.s[0].argv[2 * k + 1], in_dir("v"));
        assert_int_equal(db_stills_is_file_flag(flags[k]), 1);
        /* and db_config_parse knows each of them */
        db_config *c = db_config_create();
        const char *argv[2] = {flags[k], "/nonexistent-dir/v"};
        if (db_config_parse(c, 2, argv, &err)) {
            if (strstr(err.message, "unknown flag")) fail_msg("%s", err.message);
        }
        db_config_destroy(c);
    }
    test_context(NULL);
    assert_str(s.s[0].argv[2 * nf + 1], "cpu");
    assert_str(s.s[0].argv[2 * nf + 3], "off");
    assert_str(s.s[0].argv[2 * nf + 5], "a,b");
    assert_str(s.s[0].argv[2 * nf + 6], "-mat");
    assert_int_equal(db_stills_is_file_flag("-misset"), 0);
    assert_int_equal(db_stills_is_file_flag("-obs"), 0);
    assert_int_equal(db_stills_is_file_flag(NULL), 0);
    db_stills_free(&s);
}

typedef struct bad_case {
    const char *text;
    int code;
    const char *where; /* after "-stills DIR/bad.txt" */
    const char *what;
} bad_case;

static void test_errors(void **state)
{
    (void)state;
    static const bad_case cases[] = {
        {"a.img\n-misset 1 2 3\n", DB_ERR_FORMAT, ":2: ",
         "expected the observed image's path first, got the flag '-misset'"},
        {"  # only a comment\n-obs a.img\n", DB_ERR_FORMAT, ":2: ", "got the flag '-obs'"},
        {"a.img -mat \"A.mat\n", DB_ERR_FORMAT, ":1: ",
         "unterminated double quote (opened at column 12; expected a closing \" on the same line)"},
        {"a.img\n\"b.img -lambda 1\nc.img\"\n", DB_ERR_FORMAT, ":2: ", "unterminated double quote"},
        {"# nothing\n\n   \t\n", DB_ERR_FORMAT, ": ", "no stills (expected lines 'IMAGE [flags]'"},
        {"", DB_ERR_FORMAT, ": ", "no stills"},
        {"\"\" -misset 1 2 3\n", DB_ERR_FORMAT, ":1: ", "the image path is empty (expected 'IMAGE [flags]')"},
        {"a.img -spots x\n", DB_ERR_ARGUMENT, ":1: ", "-spots expects a whole number from 1 to 100000, got 'x'"},
        {"a.img -spots 0\n", DB_ERR_ARGUMENT, ":1: ", "-spots expects a whole number"},
        {"a.img -spot_size 2.5\n", DB_ERR_ARGUMENT, ":1: ", "-spot_size expects a whole number from 1 to 10000"},
        {"a.img\nb.img -lambda 1 -spots\n", DB_ERR_ARGUMENT, ":2: ", "-spots is missing its value (the line ends)"},
        {"a.img -gain 0\n", DB_ERR_ARGUMENT, ":1: ", "-gain expects a number > 0"},
        {"a.img -obs_adc nan\n", DB_ERR_ARGUMENT, ":1: ", "-obs_adc expects a finite number"},
        {"a.img -spots 5 -boxes b.txt\n", DB_ERR_ARGUMENT, ":1: ", "give one or the other"},
    };
    char p[4200];
    path_in(p, sizeof p, "bad.txt");
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        test_context("case %zu: %s", k, cases[k].text);
        write_in("bad.txt", cases[k].text);
        db_stills s;
        db_error err;
        int rc = db_stills_read(p, &s, &err);
        assert_int_equal(rc, cases[k].code);
        assert_int_equal(err.code, cases[k].code);
        char head[4400];
        snprintf(head, sizeof head, "-stills %s%s", p, cases[k].where);
        assert_starts(err.message, head);
        assert_has(err.message, cases[k].what);
        assert_int_equal(s.n, 0); /* zeroed on failure */
        assert_null(s.s);
        assert_null(s.path);
        rc = db_stills_read(p, &s, NULL); /* no error channel: the status alone */
        assert_int_equal(rc, cases[k].code);
    }
    test_context(NULL);

    db_stills s;
    db_error err;
    assert_int_equal(db_stills_read(NULL, &s, &err), DB_ERR_ARGUMENT);
    assert_int_equal(db_stills_read(p, NULL, &err), DB_ERR_ARGUMENT);
    path_in(p, sizeof p, "missing.txt");
    assert_int_equal(db_stills_read(p, &s, &err), DB_ERR_IO);
    assert_has(err.message, "-stills");
    assert_has(err.message, "missing.txt");
    assert_int_equal(db_stills_read(DIR_, &s, &err), DB_ERR_IO); /* a folder */
    assert_has(err.message, DIR_);
}

static void test_limits(void **state)
{
    (void)state;
    char p[4200];
    db_stills s;
    db_error err;
    path_in(p, sizeof p, "limits.txt");

    /* 256 words on a line: accepted; 257: refused */
    char line[4096];
    strcpy(line, "a.img");
    for (int k = 1; k < DB_STILLS_MAX_WORDS; k++) strcat(line, " -nopgm");
    strcat(line, "\n");
    write_in("limits.txt", line);
    if (db_stills_read(p, &s, &err)) fail_msg("%s", err.message);
    assert_int_equal(s.s[0].argc, DB_STILLS_MAX_WORDS - 1);
    db_stills_free(&s);
    line[strlen(line) - 1] = '\0';
    char two[4200];
    snprintf(two, sizeof two, "# first\n%s x\n", line);
    write_in("limits.txt", two);
    assert_int_equal(db_stills_read(p, &s, &err), DB_ERR_FORMAT);
    assert_has(err.message, "limits.txt:2: more than 256 words on one line (expected the image and at most 255");

    /* the count of stills */
    write_in("limits.txt", "a.img\nb.img\n\nc.img\n");
    if (db_stills_read_max(p, 3, &s, &err)) fail_msg("%s", err.message);
    assert_int_equal(s.n, 3);
    db_stills_free(&s);
    assert_int_equal(db_stills_read_max(p, 2, &s, &err), DB_ERR_FORMAT);
    assert_has(err.message, "limits.txt:4: more than 2 stills (the limit");
    assert_int_equal(db_stills_read_max(p, 0, &s, &err), DB_ERR_ARGUMENT);
    assert_int_equal(db_stills_read_max(p, DB_STILLS_MAX_COUNT + 1, &s, &err), DB_ERR_ARGUMENT);

    /* a line longer than db_read_text's limit */
    size_t n = DB_TEXT_MAX_LINE + 100;
    char *big = (char *)malloc(n + 20);
    assert_non_null(big);
    strcpy(big, "a.img\nb.img -hkl ");
    size_t at = strlen(big);
    memset(big + at, 'x', n - at);
    big[n] = '\n';
    write_bytes(p, big, n + 1);
    free(big);
    assert_int_equal(db_stills_read(p, &s, &err), DB_ERR_FORMAT);
    assert_has(err.message, "-stills ");
    assert_has(err.message, "limits.txt:2: line longer than 4096 bytes (expected lines 'IMAGE [flags]'");

    /* a NUL byte */
    write_bytes(p, "a.img -lambda 1\0\n", 17);
    assert_int_equal(db_stills_read(p, &s, &err), DB_ERR_FORMAT);
    assert_has(err.message, "limits.txt:1: NUL byte in a text file");

    /* /dev/zero: refused at its first bytes */
    assert_int_equal(db_stills_read("/dev/zero", &s, &err), DB_ERR_FORMAT);
    assert_has(err.message, "-stills /dev/zero:1: NUL byte");

    /* a file over the size limit (sparse: refused by its size before it is read) */
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (off_t)DB_STILLS_MAX_BYTES + 1), 0);
    assert_int_equal(close(fd), 0);
    assert_int_equal(db_stills_read(p, &s, &err), DB_ERR_FORMAT);
    assert_has(err.message, "limits.txt: the file has 67108865 bytes, more than the limit of 67108864 bytes");
    unlink(p);
}

/* the flags of the tests' simulations: a 32 x 32 detector, no files */
static const char *const BASE[] = {"-default_F", "100", "-N", "5", "-lambda", "1", "-distance", "100", "-pixel", "0.1",
                                   "-detpixels", "32", "-oversample", "1"};
#define NBASE ((int)(sizeof BASE / sizeof BASE[0]))

static void get(const db_sim *sim, const char *name, double *v)
{
    int p = db_param_from_name(name);
    db_error err;
    assert_true(p >= 0);
    if (db_sim_get_params(sim, &p, v, 1, &err)) fail_msg("%s", err.message);
}

static db_sim *sim_of(const db_config *c)
{
    db_sim *sim = NULL;
    db_error err;
    if (db_sim_create(&sim, c, NULL, &err)) fail_msg("%s", err.message);
    return sim;
}

static void assert_misset(const db_sim *sim, double x, double y, double z, double lambda)
{
    double v[4];
    get(sim, "misset_x", &v[0]);
    get(sim, "misset_y", &v[1]);
    get(sim, "misset_z", &v[2]);
    get(sim, "lambda", &v[3]);
    assert_close(v[0], x, 1e-12, 1e-12);
    assert_close(v[1], y, 1e-12, 1e-12);
    assert_close(v[2], z, 1e-12, 1e-12);
    assert_close(v[3], lambda, 1e-12, 0);
}

static void test_still_overrides_shared(void **state)
{
    (void)state;
    db_error err;
    /* db_config_parse itself: a repeated flag takes the later value */
    const char *argv[NBASE + 16];
    int argc = 0;
    for (int k = 0; k < NBASE; k++) argv[argc++] = BASE[k];
    const char *cell[] = {"-cell", "100", "100", "100", "90", "90", "90", "-misset", "1", "2", "3"};
    for (int k = 0; k < 11; k++) argv[argc++] = cell[k];
    const int shared_argc = argc;
    const char *again[] = {"-misset", "4", "5", "6"};
    for (int k = 0; k < 4; k++) argv[argc++] = again[k];
    db_config *c = db_config_create();
    if (db_config_parse(c, argc, argv, &err)) fail_msg("%s", err.message);
    db_sim *sim = sim_of(c);
    assert_misset(sim, 4, 5, 6, 1);
    db_sim_destroy(sim);
    db_config_destroy(c);

    /* a still's flags over the shared ones; a still without them keeps the shared values */
    write_in("over.txt", "a.img -misset 4 5 6 -lambda 1.5\n"
                         "b.img\n"
                         "c.img -lambda abc\n"
                         "d.img -fluence 1e24 -mat\n");
    char p[4200];
    path_in(p, sizeof p, "over.txt");
    db_stills s;
    if (db_stills_read(p, &s, &err)) fail_msg("%s", err.message);
    assert_int_equal(s.n, 4);
    if (db_stills_config(&s, 0, shared_argc, argv, &c, &err)) fail_msg("%s", err.message);
    sim = sim_of(c);
    assert_misset(sim, 4, 5, 6, 1.5);
    db_sim_destroy(sim);
    db_config_destroy(c);
    if (db_stills_config(&s, 1, shared_argc, argv, &c, &err)) fail_msg("%s", err.message);
    sim = sim_of(c);
    assert_misset(sim, 1, 2, 3, 1);
    db_sim_destroy(sim);
    db_config_destroy(c);

    /* a still's bad flag: db_config_parse's code and message, after -stills FILE:LINE */
    char head[4400];
    assert_int_equal(db_stills_config(&s, 2, shared_argc, argv, &c, &err), DB_ERR_ARGUMENT);
    assert_null(c);
    snprintf(head, sizeof head, "-stills %s:3: ", p);
    assert_starts(err.message, head);
    assert_has(err.message, "-lambda");
    assert_has(err.message, "abc");
    assert_int_equal(db_stills_config(&s, 3, shared_argc, argv, &c, &err), DB_ERR_ARGUMENT);
    snprintf(head, sizeof head, "-stills %s:4: -mat", p);
    assert_starts(err.message, head);

    /* the arguments */
    assert_int_equal(db_stills_config(&s, 4, shared_argc, argv, &c, &err), DB_ERR_ARGUMENT);
    assert_has(err.message, "still 4 of 4 (expected 0 to 3)");
    assert_int_equal(db_stills_config(&s, -1, shared_argc, argv, &c, &err), DB_ERR_ARGUMENT);
    assert_int_equal(db_stills_config(NULL, 0, shared_argc, argv, &c, &err), DB_ERR_ARGUMENT);
    assert_int_equal(db_stills_config(&s, 0, shared_argc, argv, NULL, &err), DB_ERR_ARGUMENT);
    assert_int_equal(db_stills_config(&s, 0, 3, NULL, &c, &err), DB_ERR_ARGUMENT);
    assert_int_equal(db_stills_config(&s, 0, -1, argv, &c, &err), DB_ERR_ARGUMENT);
    /* no shared flags: the still's alone (the defaults otherwise) */
    if (db_stills_config(&s, 1, 0, NULL, &c, &err)) fail_msg("%s", err.message);
    db_config_destroy(c);
    db_stills_free(&s);
}

/* a relative -mat on a still is read from the stills file's folder, whatever the current folder */
static void test_relative_matrix(void **state)
{
    (void)state;
    char sub[4200], mat[4200], p[4200];
    path_in(sub, sizeof sub, "sub");
    assert_int_equal(mkdir(sub, 0755), 0);
    path_in(mat, sizeof mat, "sub/A.mat");
    assert_int_equal(harness_copy(DB_GOLDEN_DIR "/k_matfile/A.mat", mat), 0);
    path_in(p, sizeof p, "sub/stills.txt");
    write_bytes(p, "x.img -mat A.mat\n", 17);
    db_stills s;
    db_error err;
    if (db_stills_read(p, &s, &err)) fail_msg("%s", err.message);
    assert_str(s.s[0].obs_path, in_dir("sub/x.img"));
    db_config *c;
    if (db_stills_config(&s, 0, NBASE, BASE, &c, &err)) fail_msg("%s", err.message);
    db_sim *sim = sim_of(c);
    db_config_destroy(c);
    /* the same matrix named by its full path */
    const char *argv[NBASE + 2];
    for (int k = 0; k < NBASE; k++) argv[k] = BASE[k];
    argv[NBASE] = "-mat";
    argv[NBASE + 1] = mat;
    c = db_config_create();
    if (db_config_parse(c, NBASE + 2, argv, &err)) fail_msg("%s", err.message);
    db_sim *ref = sim_of(c);
    db_config_destroy(c);
    db_geometry g, gr;
    assert_int_equal(db_sim_geometry(sim, &g), 0);
    assert_int_equal(db_sim_geometry(ref, &gr), 0);
    for (int k = 0; k < 6; k++) assert_bits_equal(g.cell[k], gr.cell[k]);
    assert_true(g.cell[0] > 1.0);
    db_sim_destroy(sim);
    db_sim_destroy(ref);
    db_stills_free(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_file),
        cmocka_unit_test(test_every_file_flag_resolved),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_still_overrides_shared),
        cmocka_unit_test(test_relative_matrix),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
