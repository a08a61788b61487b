/* test_golden.c: parity with the reference program on every golden case (tests/golden/<case>/, copied from
 * ../shared/golden). Each case's first command line runs in a fresh temporary folder with the test's own
 * output names; float.bin, int.img, noise.img and (after -hkl) Fdump.bin must be identical byte for byte.
 * The three cases with a PGM run their third line and compare image.pgm. The summary's solid-angle line must read
 * as the reference's stdout.log does (six digits).
 * Tolerance: none. Every case is bitwise (the reference's evaluation order is reproduced, spec appendix A0). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <setjmp.h>
#include <cmocka.h>

#include "cli_harness.h"

static const char *const CASES[] = {
    "a2_cubic_autoos", "a_cubic", "b2_interp", "b_triclinic", "c_phi0_carryover", "d_phi005_nocarry",
    "e_mosaic", "f2_hdiv_only", "f_div_disp", "g2_oversample_flags", "g_os_thick_polar",
    "h2_dials_rot_twotheta", "h3_mosflm_rot_twotheta", "h_xds_rot_twotheta", "i2_gauss", "i3_tophat", "i_round",
    "j_roi", "k_matfile", "l_water", "m2_pointpix_nopolar", "m_curved_det", "n_sourcefile", "o_flux_dmin",
};

static int file_exists(const char *p)
{
    return access(p, F_OK) == 0;
}

/* Copies the case's inputs and runs line `line_no` of its cmd.txt with our output names. */
static void run_case(const char *name, int line_no, char *dir, size_t dirsize)
{
    char src[4096], dst[4096];
    assert_int_equal(harness_mkdtemp(dir, dirsize), 0);
    const char *inputs[] = {"P1.hkl", "A.mat", "sources.txt"};
    for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++) {
        snprintf(src, sizeof src, "%s/%s/%s", DB_GOLDEN_DIR, name, inputs[i]);
        snprintf(dst, sizeof dst, "%s/%s", dir, inputs[i]);
        if (file_exists(src)) assert_int_equal(harness_copy(src, dst), 0);
    }
    harness_args args = {0};
    assert_int_equal(harness_case_args(DB_GOLDEN_DIR, name, line_no, &args), 0);
    harness_set(&args, "-floatfile", "test_float.bin");
    harness_set(&args, "-intfile", "test_int.img");
    harness_set(&args, "-noisefile", "test_noise.img");
    if (line_no == 3) harness_set(&args, "-pgmfile", "test_image.pgm");
    int status = harness_run(DB_CLI_PATH, dir, &args, 0);
    harness_args_free(&args);
    if (status != 0) {
        snprintf(src, sizeof src, "cat '%s/out.log' >&2", dir);
        if (system(src) != 0) fprintf(stderr, "(no log)\n");
    }
    assert_int_equal(status, 0);
}

static void expect_same(const char *dir, const char *ours, const char *name, const char *golden_file)
{
    char a[4096], b[4096];
    snprintf(a, sizeof a, "%s/%s", dir, ours);
    snprintf(b, sizeof b, "%s/%s/%s", DB_GOLDEN_DIR, name, golden_file);
    if (!harness_same_file(a, b)) fail_msg("%s: %s differs from the reference's %s", name, ours, golden_file);
}

/* The line of our log and of the reference's stdout.log that starts with prefix: the same text (%g, six digits). */
static void expect_same_line(const char *dir, const char *name, const char *prefix)
{
    char path[4200], line[1024], ours[1024] = "", theirs[1024] = "";
    for (int k = 0; k < 2; k++) {
        if (k == 0)
            snprintf(path, sizeof path, "%s/out.log", dir);
        else
            snprintf(path, sizeof path, "%s/%s/stdout.log", DB_GOLDEN_DIR, name);
        FILE *f = fopen(path, "r");
        if (!f) fail_msg("%s: cannot read %s", name, path);
        while (fgets(line, sizeof line, f))
            if (strncmp(line, prefix, strlen(prefix)) == 0) snprintf(k == 0 ? ours : theirs, sizeof ours, "%s", line);
        fclose(f);
    }
    if (!theirs[0]) fail_msg("%s: no '%s' line in the reference's stdout.log", name, prefix);
    if (strcmp(ours, theirs) != 0) fail_msg("%s: ours '%s', the reference's '%s'", name, ours, theirs);
}

static void test_case(void **state)
{
    const char *name = (const char *)*state;
    char dir[4096], path[4096];
    run_case(name, 1, dir, sizeof dir);
    expect_same(dir, "test_float.bin", name, "float.bin");
    expect_same(dir, "test_int.img", name, "int.img");
    expect_same(dir, "test_noise.img", name, "noise.img");
    snprintf(path, sizeof path, "%s/%s/Fdump.bin", DB_GOLDEN_DIR, name);
    if (file_exists(path)) expect_same(dir, "Fdump.bin", name, "Fdump.bin");
    /* the summary's solid angle: the per-pixel solid angles summed over what was rendered */
    expect_same_line(dir, name, "solid angle subtended by detector");
    /* the run summary (issue 18): the brightest pixel (the first of equal maxima, the position of its last
     * sub-pixel) and the statistics, against the reference's printout */
    expect_same_line(dir, name, "max_I = ");
    expect_same_line(dir, name, "mean= ");
    harness_rmtree(dir);

    snprintf(path, sizeof path, "%s/%s/image.pgm", DB_GOLDEN_DIR, name);
    if (file_exists(path)) {
        run_case(name, 3, dir, sizeof dir);
        expect_same(dir, "test_image.pgm", name, "image.pgm");
        harness_rmtree(dir);
    }
}

int main(void)
{
    enum { N = sizeof CASES / sizeof CASES[0] };
    struct CMUnitTest tests[N];
    for (int i = 0; i < N; i++) {
        tests[i].name = CASES[i];
        tests[i].test_func = test_case;
        tests[i].setup_func = NULL;
        tests[i].teardown_func = NULL;
        tests[i].initial_state = (void *)CASES[i];
    }
    return cmocka_run_group_tests_name("golden parity", tests, NULL, NULL);
}
