/* test_carryover.c: the phi carryover (spec §4) and thread-count independence.
 *
 * The rule: with phi == 0 in the sweep, the reference skips that step's rotation and reuses the lattice left
 * from the last rotated step; only the first sample whose phi loop runs (row-major; -roi, -mask and -dmin move
 * it) starts from the unrotated lattice. The tests construct the expected image from runs whose behaviour is
 * known independently (full detector with carryover on = every pixel but (0,0) "normal"; carryover off =
 * unrotated lattice) and check the exceptional pixel lands where the rule says. All comparisons are exact. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "cli_harness.h"

#define NPIX 256
/* case c: 100 A cubic, N=10, -phi 0 -osc 0.1 -phisteps 10 (phi = 0 .. 0.09 deg) */
static const char *BASE =
    "-cell 100 100 100 90 90 90 -misset 10 20 30 -default_F 100 -N 10 -lambda 1 -distance 100 -pixel 0.1 "
    "-detpixels 256 -oversample 1 -noprogress -nopgm -nonoise -seed 1";

typedef struct image {
    float *v;
    size_t n;
} image;

/* Runs BASE plus `extra`, returns the float image. */
static image run_image(const char *extra, int threads)
{
    char dir[4096], line[8192], path[4200];
    assert_int_equal(harness_mkdtemp(dir, sizeof dir), 0);
    snprintf(line, sizeof line, "%s %s -floatfile img.bin -intfile img.img", BASE, extra);
    harness_args a = {0};
    harness_split(&a, line);
    int status = harness_run(DB_CLI_PATH, dir, &a, threads);
    harness_args_free(&a);
    assert_int_equal(status, 0);
    snprintf(path, sizeof path, "%s/img.bin", dir);
    image im;
    size_t len;
    im.v = (float *)harness_read(path, &len);
    assert_non_null(im.v);
    im.n = len / sizeof(float);
    assert_int_equal(im.n, NPIX * NPIX);
    harness_rmtree(dir);
    return im;
}

static image read_golden(const char *file)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/c_phi0_carryover/%s", DB_GOLDEN_DIR, file);
    image im;
    size_t len;
    im.v = (float *)harness_read(path, &len);
    assert_non_null(im.v);
    im.n = len / sizeof(float);
    return im;
}

static long count_differences(const image *a, const image *b)
{
    long n = 0;
    for (size_t i = 0; i < a->n; i++) n += memcmp(&a->v[i], &b->v[i], sizeof(float)) != 0;
    return n;
}

/* off = the physically intended image: bit for bit the reference build patched to use a0 at phi == 0 */
static void test_off_matches_patched_reference(void **state)
{
    (void)state;
    image off = run_image("-phi 0 -osc 0.1 -phisteps 10 -phi_carryover off", 0);
    image patched = read_golden("float_fixedphi_PATCHED.bin");
    assert_int_equal(count_differences(&off, &patched), 0);
    image on = read_golden("float.bin");
    /* the quirk matters: nearly every pixel differs between on and off */
    assert_true(count_differences(&off, &on) > 65000);
    free(off.v);
    free(patched.v);
    free(on.v);
}

/* on, full detector: only pixel (0,0) uses a0, so it equals the off image there and nowhere else */
static void test_on_exception_is_first_pixel(void **state)
{
    (void)state;
    image on = run_image("-phi 0 -osc 0.1 -phisteps 10", 0);
    image off = run_image("-phi 0 -osc 0.1 -phisteps 10 -phi_carryover off", 0);
    assert_memory_equal(&on.v[0], &off.v[0], sizeof(float));
    image emul = read_golden("float_emulcarry_PATCHED.bin");
    if (emul.v) {
        /* the reference patched to always use R(phi_last) differs from the original only at (0,0) */
        long d = count_differences(&on, &emul);
        assert_int_equal(d, 1);
        assert_true(memcmp(&on.v[0], &emul.v[0], sizeof(float)) != 0);
        free(emul.v);
    }
    free(on.v);
    free(off.v);
}

/* Expected image of an on-run in which pixel `exc` holds the exceptional sample (one sample per pixel here):
 * the full on-image everywhere it renders, the off-image at exc. */
static void expect_moved_exception(const image *got, const image *full_on, const image *off, long exc,
                                   int (*rendered)(long idx, const image *got))
{
    for (long i = 0; i < (long)got->n; i++) {
        if (!rendered(i, got)) {
            assert_true(got->v[i] == 0.0f);
            continue;
        }
        const image *want = i == exc ? off : full_on;
        if (memcmp(&got->v[i], &want->v[i], sizeof(float)) != 0)
            fail_msg("pixel f=%ld s=%ld: got %.9g want %.9g (%s)", i % NPIX, i / NPIX, got->v[i], want->v[i],
                     i == exc ? "exceptional" : "normal");
    }
    /* and the exception really moved: the full-detector run treats that pixel as normal */
    assert_true(memcmp(&got->v[exc], &full_on->v[exc], sizeof(float)) != 0);
}

static int in_roi_10_20_30_40(long idx, const image *im)
{
    (void)im;
    long f = idx % NPIX, s = idx / NPIX;
    return f >= 10 && f <= 20 && s >= 30 && s <= 40;
}

static void test_on_roi_moves_exception(void **state)
{
    (void)state;
    image full_on = run_image("-phi 0 -osc 0.1 -phisteps 10", 0);
    image off = run_image("-phi 0 -osc 0.1 -phisteps 10 -phi_carryover off", 0);
    image roi = run_image("-phi 0 -osc 0.1 -phisteps 10 -roi 10 20 30 40", 0);
    expect_moved_exception(&roi, &full_on, &off, 30L * NPIX + 10, in_roi_10_20_30_40);
    free(full_on.v);
    free(off.v);
    free(roi.v);
}

static int nonzero(long idx, const image *im)
{
    return im->v[idx] != 0.0f;
}

/* -dmin 7 cuts the detector corners (d about 5.6 A there): the first sample whose phi loop runs is the
 * first pixel, row-major, that the cut leaves (found here as the first non-zero pixel). */
static void test_on_dmin_moves_exception(void **state)
{
    (void)state;
    image full_on = run_image("-phi 0 -osc 0.1 -phisteps 10 -dmin 7", 0);
    image off = run_image("-phi 0 -osc 0.1 -phisteps 10 -dmin 7 -phi_carryover off", 0);
    image nocut = run_image("-phi 0 -osc 0.1 -phisteps 10", 0);
    long first = -1;
    for (long i = 0; i < (long)full_on.n && first < 0; i++)
        if (full_on.v[i] != 0.0f) first = i;
    assert_true(first > 0); /* pixel (0,0) is cut, so the exception moved */
    /* every pixel that survives the cut, except the first, equals the uncut on-image (pixel (0,0) of the
     * uncut run is exceptional but is cut here) */
    expect_moved_exception(&full_on, &nocut, &off, first, nonzero);
    free(full_on.v);
    free(off.v);
    free(nocut.v);
}

/* A zero step inside the sweep reuses the step before it: phi = -0.05, 0 gives twice the -0.05 slice,
 * which (scaled by 1/steps, an exact power of two) equals the single-step image at -0.05 bit for bit. */
static void test_mid_sweep_zero_reuses_previous_step(void **state)
{
    (void)state;
    image sweep = run_image("-phi -0.05 -osc 0.1 -phisteps 2", 0);
    image single = run_image("-phi -0.05 -osc 0.05 -phisteps 1", 0);
    assert_int_equal(count_differences(&sweep, &single), 0);
    image off = run_image("-phi -0.05 -osc 0.1 -phisteps 2 -phi_carryover off", 0);
    assert_true(count_differences(&sweep, &off) > 60000);
    free(sweep.v);
    free(single.v);
    free(off.v);
}

/* Results do not depend on the thread count (the reference's 1-thread behaviour is reproduced). */
static void test_thread_count_invariance(void **state)
{
    (void)state;
    const char *extra = "-phi 0 -osc 0.1 -phisteps 10 -mosaic 0.2 -mosaic_dom 3 -roi 3 200 5 250";
    image t1 = run_image(extra, 1);
    image t2 = run_image(extra, 2);
    image t3 = run_image(extra, 3);
    assert_int_equal(count_differences(&t1, &t2), 0);
    assert_int_equal(count_differences(&t1, &t3), 0);
    free(t1.v);
    free(t2.v);
    free(t3.v);
    image g1 = run_image("-phi 0 -osc 0.1 -phisteps 10", 1);
    image g3 = run_image("-phi 0 -osc 0.1 -phisteps 10", 3);
    image golden = read_golden("float.bin");
    assert_int_equal(count_differences(&g1, &golden), 0);
    assert_int_equal(count_differences(&g3, &golden), 0);
    free(g1.v);
    free(g3.v);
    free(golden.v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_off_matches_patched_reference),
        cmocka_unit_test(test_on_exception_is_first_pixel),
        cmocka_unit_test(test_on_roi_moves_exception),
        cmocka_unit_test(test_on_dmin_moves_exception),
        cmocka_unit_test(test_mid_sweep_zero_reuses_previous_step),
        cmocka_unit_test(test_thread_count_invariance),
    };
    return cmocka_run_group_tests_name("phi carryover", tests, NULL, NULL);
}
