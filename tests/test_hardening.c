/* test_hardening.c: issue 8 at the library level: the readers' size arithmetic and limits, the two-phase
 * output writer and the output transaction, the output-path checks, the configuration's value checks, and the
 * gradcheck tool's refusals (run as a program). The command-line behaviour is in test_cli_errors.c. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <math.h>

#include "cli_harness.h"
#include "config.h"
#include "error.h"
#include "fileio.h"
#include "hkl.h"

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
