/* Tests of the reference's random generators (appendix A1-A3) against the golden data: the e_mosaic matrices
 * from the reference's own mosaic_rotation_umat, and noise images rebuilt from golden float images. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "fileio.h"
#include "rng.h"
#include "smv.h"

#ifndef DB_GOLDEN_DIR
#error "compile with -DDB_GOLDEN_DIR=\"<path to tests/golden>\""
#endif

#define RAN1_IM 2147483647L
#define TEST_M_1_PI 0.31830988618379067154 /* M_1_PI is not strict C11 */
#define IMG_SIDE 256
#define IMG_PIXELS (IMG_SIDE * IMG_SIDE)
#define SMV_HEADER 512

static char *read_golden(const char *case_name, const char *file, size_t *len)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s/%s", DB_GOLDEN_DIR, case_name, file);
    char *data = NULL;
    db_error err;
    int rc = db_read_file(path, &data, len, &err);
    if (rc != DB_OK)
        fail_msg("%s", err.message);
    return data;
}

static float *read_golden_floats(const char *case_name)
{
    size_t len;
    char *raw = read_golden(case_name, "float.bin", &len);
    assert_int_equal(len, IMG_PIXELS * sizeof(float));
    float *img = malloc(len);
    assert_non_null(img);
    memcpy(img, raw, len);
    free(raw);
    return img;
}

/* 16807^n mod (2^31 - 1), computed without Schrage's trick as an independent check of the Lehmer steps. */
static long lehmer_power(int n)
{
    uint64_t x = 1;
    for (int i = 0; i < n; i++)
        x = (x * 16807u) % (uint64_t)RAN1_IM;
    return (long)x;
}

static void test_first_draw_matches_lehmer_arithmetic(void **state)
{
    (void)state;
    db_rng r;
    db_rng_init(&r);
    long idum = -1;
    float u = db_ran1(&r, &idum);
    /* Seeding makes 40 steps (iv[j] = 16807^(40-j)); the draw makes one more and returns the shuffled entry
     * picked by the previous output iy = iv[0]. */
    assert_int_equal(idum, lehmer_power(41));
    long picked = lehmer_power(40) / 67108864L;
    float expected = (float)((1.0 / RAN1_IM) * (double)lehmer_power(40 - (int)picked));
    assert_true(u == expected);
    assert_int_equal(r.iv[picked], lehmer_power(41));
}

/* One draw from a hand-made table whose picked entry is `entry`. */
static float draw_with_entry(long entry)
{
    db_rng r;
    db_rng_init(&r);
    for (int k = 0; k < 32; k++)
        r.iv[k] = 1;
    r.iy = 5L << 26; /* picks iv[5] */
    r.iv[5] = entry;
    long idum = 1;
    return db_ran1(&r, &idum);
}

static void test_ran1_rounds_the_double_product(void **state)
{
    (void)state;
    /* iy = 2^30 + 64 lies on a float rounding midpoint of iy / 2^31; iy / (2^31 - 1) is just above it, so the
     * double product rounds up. Dividing in float (or by 2^31) would tie to even and give 0.5. */
    assert_true(draw_with_entry((1L << 30) + 64) == 0.5f + 0x1p-24f);
    /* the largest outputs round to 1.0f and are clamped to 1 - 2^-23 */
    assert_true(draw_with_entry(RAN1_IM - 1) == 1.0f - 0x1p-23f);
    assert_true(draw_with_entry(1) == (float)(1.0 / RAN1_IM));
}

static void test_seed_zero_and_minus_one_give_same_stream(void **state)
{
    (void)state;
    db_rng a, b, c;
    db_rng_init(&a);
    db_rng_init(&b);
    db_rng_init(&c);
    long seed_a = 0, seed_b = -1, seed_c = 7; /* a positive seed on first use also becomes 1 */
    for (int i = 0; i < 5000; i++) {
        float ua = db_ran1(&a, &seed_a);
        float ub = db_ran1(&b, &seed_b);
        float uc = db_ran1(&c, &seed_c);
        assert_true(ua == ub);
        assert_true(ua == uc);
        assert_true(ua > 0.0f && ua < 1.0f);
        assert_int_equal(seed_a, seed_b);
        assert_int_equal(seed_a, seed_c);
    }
    /* and a different negative seed gives a different stream */
    db_rng d;
    db_rng_init(&d);
    long seed_d = -2;
    long seed_e = -1;
    db_rng e;
    db_rng_init(&e);
    assert_true(db_ran1(&d, &seed_d) != db_ran1(&e, &seed_e));
}

static void test_positive_seed_continues_shared_table(void **state)
{
    (void)state;
    db_rng r;
    db_rng_init(&r);
    long mosaic_seed = -12345678;
    double U[9];
    db_mosaic_rotation_umat(&r, 0.0f, U, &mosaic_seed, NULL, NULL);
    db_rng before = r;

    /* `-seed -5` gives idum = +5: no re-seeding, one Lehmer step from 5, output from the mosaic stream's table */
    long idum = 5;
    float u = db_ran1(&r, &idum);
    int j = (int)(before.iy / 67108864L);
    assert_int_equal(idum, 16807L * 5);
    assert_true(u == (float)((1.0 / RAN1_IM) * (double)before.iv[j]));
    assert_int_equal(r.iy, before.iv[j]);
    assert_int_equal(r.iv[j], 16807L * 5);
    for (int k = 0; k < 32; k++)
        if (k != j)
            assert_int_equal(r.iv[k], before.iv[k]);

    /* a negative seed re-seeds: the same draws as from a fresh generator, whatever came before */
    db_rng fresh;
    db_rng_init(&fresh);
    long s1 = -5, s2 = -5;
    for (int i = 0; i < 100; i++)
        assert_true(db_ran1(&r, &s1) == db_ran1(&fresh, &s2));
}

static void test_two_generators_are_independent(void **state)
{
    (void)state;
    db_rng alone, x, y;
    db_rng_init(&alone);
    db_rng_init(&x);
    db_rng_init(&y);
    long s_alone = -42, s_x = -42, s_y = -99;
    for (int i = 0; i < 1000; i++) {
        float want = db_poidev(&alone, 20.0f, &s_alone);
        db_poidev(&y, 3.0e6f, &s_y); /* interleaved use of another simulation's generator */
        assert_true(db_poidev(&x, 20.0f, &s_x) == want);
    }
}

static void test_mosaic_matrices_match_reference_harness(void **state)
{
    (void)state;
    size_t len;
    char *text = read_golden("e_mosaic", "umats_from_harness.txt", &len);
    const double rtd = 180.0 * TEST_M_1_PI;
    const float spread = (float)(0.5 / rtd); /* -mosaic 0.5 (deg), rounded to float on the call */
    db_rng r;
    db_rng_init(&r);
    long seed = -12345678;

    char *line = strchr(text, '\n'); /* skip the '#' comment line */
    assert_non_null(line);
    for (int m = 0; m < 10; m++) {
        double U[9], axis[3];
        float angle_factor;
        db_mosaic_rotation_umat(&r, spread, U, &seed, axis, &angle_factor);

        /* the returned axis and angle rebuild the same matrix (used by the spread derivative) */
        double rot = (double)(spread * angle_factor);
        double c = cos(rot);
        assert_true(U[0] == c + (1.0 - c) * (axis[0] * axis[0]));
        assert_true(fabs(axis[0] * axis[0] + axis[1] * axis[1] + axis[2] * axis[2] - 1.0) < 1e-15);

        if (m == 0) { /* domain 0 is the unrotated crystal; its three numbers are still consumed */
            static const double identity[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1};
            memcpy(U, identity, sizeof U);
        }
        char *p = line + 1;
        long index = strtol(p, &p, 10);
        assert_int_equal(index, m);
        for (int k = 0; k < 9; k++) {
            double expected = strtod(p, &p);
            if (memcmp(&expected, &U[k], sizeof(double)) != 0)
                fail_msg("domain %d element %d: %.17g != harness %.17g", m, k, U[k], expected);
        }
        line = strchr(p, '\n');
        assert_true(line != NULL || m == 9);
    }
    free(text);
}

static void test_gammln_is_log_gamma(void **state)
{
    (void)state;
    static const float args[] = {0.5f, 1.0f, 2.0f, 5.0f, 12.0f, 13.5f, 100.0f, 1.0e6f};
    for (size_t i = 0; i < sizeof args / sizeof args[0]; i++) {
        double want = lgamma((double)args[i]);
        double got = db_gammln(args[i]);
        assert_true(fabs(got - want) <= 1e-6 * fmax(1.0, fabs(want)));
    }
}

/* How many uniforms a poidev call used: replay the same number of ran1 calls on a twin generator. */
static int uniforms_used(long idum_before, const db_rng *r_before, long idum_after)
{
    db_rng twin = *r_before;
    long idum = idum_before;
    for (int n = 1; n <= 100; n++) {
        db_ran1(&twin, &idum);
        if (idum == idum_after)
            return n;
    }
    return -1;
}

static void test_poidev_small_and_odd_means(void **state)
{
    (void)state;
    db_rng r;
    db_rng_init(&r);
    long idum = -3;
    db_ran1(&r, &idum); /* seed the table */

    db_rng before = r;
    long idum_before = idum;
    assert_true(db_poidev(&r, 0.0f, &idum) == 0.0f);
    assert_int_equal(uniforms_used(idum_before, &before, idum), 1);

    before = r;
    idum_before = idum;
    assert_true(db_poidev(&r, -5.0f, &idum) == 0.0f);
    assert_int_equal(uniforms_used(idum_before, &before, idum), 1);

    before = r;
    idum_before = idum;
    assert_true(isnan(db_poidev(&r, NAN, &idum)));
    assert_int_equal(uniforms_used(idum_before, &before, idum), 2);

    /* a sample mean of many deviates is close to the mean, in every branch */
    static const float means[] = {3.5f, 40.0f, 2.0e6f};
    for (size_t i = 0; i < sizeof means / sizeof means[0]; i++) {
        double sum = 0.0;
        const int n = 20000;
        for (int k = 0; k < n; k++)
            sum += db_poidev(&r, means[i], &idum);
        double sample_mean = sum / n;
        assert_true(fabs(sample_mean - means[i]) < 5.0 * sqrt(means[i] / n));
    }
}

struct noise_case {
    const char *name;
    db_roi roi;
    const char *printed_photons; /* "%.0f photons" line of the reference's stdout */
    int overloads;
};

static void check_noise_case(const struct noise_case *nc)
{
    float *img = read_golden_floats(nc->name);
    size_t len;
    char *golden = read_golden(nc->name, "noise.img", &len);
    assert_int_equal(len, SMV_HEADER + IMG_PIXELS * 2);

    db_rng r;
    db_rng_init(&r);
    /* program order (A1): the mosaic generator always runs first, then the noise stream (-seed 1 -> -1) */
    long mosaic_seed = -12345678;
    double U[9];
    db_mosaic_rotation_umat(&r, 0.0f, U, &mosaic_seed, NULL, NULL);
    long seed = -1;
    uint16_t *noise = malloc(IMG_PIXELS * sizeof *noise);
    assert_non_null(noise);
    double photons = -1.0;
    int overloads = -1;
    db_noise_image(&r, &seed, img, IMG_SIDE, IMG_SIDE, &nc->roi, 40.0, noise, &photons, &overloads);

    const unsigned char *bytes = (const unsigned char *)golden + SMV_HEADER;
    int mismatches = 0, first = -1;
    for (int i = 0; i < IMG_PIXELS; i++) {
        uint16_t want = (uint16_t)(bytes[2 * i] | (bytes[2 * i + 1] << 8));
        if (noise[i] != want && mismatches++ == 0)
            first = i;
    }
    if (mismatches)
        fail_msg("%s: %d noise pixels differ, first at f=%d s=%d", nc->name, mismatches, first % IMG_SIDE,
                 first / IMG_SIDE);
    char printed[64];
    snprintf(printed, sizeof printed, "%.0f", photons);
    assert_string_equal(printed, nc->printed_photons);
    assert_int_equal(overloads, nc->overloads);
    free(noise);
    free(golden);
    free(img);
}

static const db_roi full_roi = {0, IMG_SIDE, 0, IMG_SIDE}; /* the reference's default: xmax = fpixels */

static void test_noise_a_cubic(void **state)
{
    (void)state;
    struct noise_case nc = {"a_cubic", full_roi, "71527", 0};
    check_noise_case(&nc);
}

static void test_noise_c_phi0_carryover(void **state)
{
    (void)state;
    struct noise_case nc = {"c_phi0_carryover", full_roi, "668188", 0};
    check_noise_case(&nc);
}

static void test_noise_m2_all_poidev_branches(void **state)
{
    (void)state;
    /* make sure this case really exercises all three poidev branches (A3.4 gives the counts) */
    float *img = read_golden_floats("m2_pointpix_nopolar");
    int direct = 0, rejection = 0, gaussian = 0;
    for (int i = 0; i < IMG_PIXELS; i++) {
        if (img[i] > 1.0e6f)
            gaussian++;
        else if (img[i] < 12.0f)
            direct++;
        else
            rejection++;
    }
    free(img);
    assert_int_equal(direct, 701);
    assert_int_equal(rejection, 31164);
    assert_int_equal(gaussian, 33671);
    struct noise_case nc = {"m2_pointpix_nopolar", full_roi, "68230507715570", 50475};
    check_noise_case(&nc);
}

static void test_noise_j_roi(void **state)
{
    (void)state;
    struct noise_case nc = {"j_roi", {50, 150, 60, 200}, "159224", 0};
    check_noise_case(&nc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_draw_matches_lehmer_arithmetic),
        cmocka_unit_test(test_ran1_rounds_the_double_product),
        cmocka_unit_test(test_seed_zero_and_minus_one_give_same_stream),
        cmocka_unit_test(test_positive_seed_continues_shared_table),
        cmocka_unit_test(test_two_generators_are_independent),
        cmocka_unit_test(test_mosaic_matrices_match_reference_harness),
        cmocka_unit_test(test_gammln_is_log_gamma),
        cmocka_unit_test(test_poidev_small_and_odd_means),
        cmocka_unit_test(test_noise_a_cubic),
        cmocka_unit_test(test_noise_c_phi0_carryover),
        cmocka_unit_test(test_noise_m2_all_poidev_branches),
        cmocka_unit_test(test_noise_j_roi),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
