/* test_refine_stats.c: the refinement's statistics by simulation (tests/refine_study.h), with fewer seeds than the
 * bench (bench_refine_stats, 100 seeds, README "Refinement"):
 *  - the study's noise images are the program's own: seed 3 equals `dualbragg -seed 3 -noisefile` bit for bit;
 *  - 40 seeds of a weak still without and with a water background, Poisson objective with background planes: no
 *    fit fails or is flagged poor; pooled over the ten parameters (400 values) the fraction within 1 sigma is
 *    0.683 +- 0.08 and within 2 sigma 0.954 +- 0.04 (about three binomial standard deviations of 400 independent
 *    values, sqrt(0.683 * 0.317 / 400) = 0.023 and 0.010, widened for the correlation of the ten values of one
 *    seed), and every parameter's mean z is within 0.6 of 0 (its standard error is 1/sqrt(40) = 0.16: 0.6 is 3.8
 *    of them, so that the largest of ten stays inside by chance with probability 0.999);
 *  - the noise-free images with and without water give the same crystal within a tenth of its uncertainty (the
 *    planes take the water; the model never has it);
 *  - trial steps: a noise-free fit in no more than scipy's trf takes, a Poisson fit in no more than the old lsq fit.
 * The seeds are fixed, so the outcome is the same on every run: the bounds say what a correct fit gives. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "cli_harness.h"
#include "refine_study.h"
#include "test_util.h"

#include <unistd.h>

#define HKL DB_GOLDEN_DIR "/b_triclinic/P1.hkl"

static void test_noise_is_the_programs(void **state)
{
    (void)state;
    char dir[4096], path[4200];
    assert_int_equal(harness_mkdtemp(dir, sizeof dir), 0);
    char store[2][64];
    const char *argv[48];
    int argc = study_args(HKL, 0.025, store, argv);
    harness_args a = {0};
    for (int i = 0; i < argc; i++) harness_push(&a, argv[i]);
    harness_split(&a, "-seed 3 -noisefile n.img -floatfile f.bin -nopgm");
    assert_int_equal(harness_run(DB_CLI_PATH, dir, &a, 0), 0);
    harness_args_free(&a);
    snprintf(path, sizeof path, "%s/n.img", dir);
    size_t len;
    unsigned char *file = harness_read(path, &len);
    assert_non_null(file);
    assert_true(len == 512 + 256 * 256 * 2);
    snprintf(path, sizeof path, "%s/f.bin", dir);
    size_t flen;
    unsigned char *fimg = harness_read(path, &flen);
    assert_non_null(fimg);
    assert_true(flen == 256 * 256 * 4);
    float *img = malloc(flen);
    memcpy(img, fimg, flen);
    uint16_t *noise = malloc(256 * 256 * sizeof(uint16_t));
    double *obs = malloc(256 * 256 * sizeof(double));
    study_observed(img, 3, noise, obs);
    for (int i = 0; i < 256 * 256; i++) {
        uint16_t v = (uint16_t)(file[512 + 2 * i] | file[512 + 2 * i + 1] << 8);
        if (v != noise[i] || obs[i] != (double)v - 40.0)
            fail_msg("pixel %d: the program wrote %u, the study draws %u (observed %g)", i, v, noise[i], obs[i]);
    }
    free(obs);
    free(noise);
    free(img);
    free(fimg);
    free(file);
    harness_rmtree(dir);
}

static void check_study(double water)
{
    study_config c = {HKL, water, DB_OBJECTIVE_POISSON, DB_WEIGHTS_POISSON, DB_BACKGROUND_PLANES, 1, 40, 10, 15};
    study_result r;
    char msg[1200];
    if (study_run(&c, &r, 0, msg, sizeof msg)) fail_msg("%s", msg);
    char title[64];
    snprintf(title, sizeof title, "poisson, planes, water %g um", water);
    study_print(stderr, title, &c, &r);
    assert_int_equal(r.failed, 0);
    assert_int_equal(r.poor, 0);
    assert_int_equal(r.fits, 40);
    assert_close(r.within1, 0.683, 0.0, 0.08);
    assert_close(r.within2, 0.954, 0.0, 0.04);
    for (int j = 0; j < STUDY_NP; j++) {
        test_context("%s: mean z %+.3f", study_names[j], r.p[j].mean_z);
        assert_true(fabs(r.p[j].mean_z) <= 0.6);
    }
    test_context("%s", "");
}

static void test_coverage_without_water(void **state)
{
    (void)state;
    check_study(0.0);
}

static void test_coverage_with_water(void **state)
{
    (void)state;
    check_study(0.025);
}

/* The noise-free image with water (0.51 to 0.55 photons a pixel) and without: the planes take the water, and the
 * crystal comes out the same within a tenth of its uncertainty. */
static void test_water_taken_by_planes(void **state)
{
    (void)state;
    int params[STUDY_NP];
    db_error err;
    assert_int_equal(db_param_parse_list(STUDY_FIT, params, &err), STUDY_NP);
    double fitted[2][STUDY_NP], sigma[STUDY_NP], truth[STUDY_NP], start[STUDY_NP];
    char msg[1200];
    for (int w = 0; w < 2; w++) {
        db_sim *truth_sim = study_sim(HKL, w ? 0.025 : 0.0, msg, sizeof msg);
        db_sim *sim = study_sim(HKL, 0.0, msg, sizeof msg);
        assert_non_null(truth_sim);
        assert_non_null(sim);
        double *obs = malloc(256 * 256 * sizeof(double));
        float *img = malloc(256 * 256 * sizeof(float));
        assert_int_equal(db_sim_run(truth_sim, img, obs, &err), 0);
        int boxes[40];
        int nb = study_boxes(HKL, 10, 15, boxes, msg, sizeof msg); /* the same pixels for both images */
        assert_true(nb == 10);
        assert_int_equal(db_sim_select_boxes(sim, boxes, nb, &err), 0);
        assert_int_equal(db_sim_get_params(sim, params, truth, STUDY_NP, &err), 0);
        study_start(truth, start);
        assert_int_equal(db_sim_set_params(sim, params, start, STUDY_NP, &err), 0);
        db_refine_result r;
        if (db_refine(sim, params, STUDY_NP, obs, NULL, NULL, &r, &err)) fail_msg("%s", err.message);
        assert_true(r.stop_reason != DB_STOP_MAXITER && r.stop_reason != DB_STOP_NO_PROGRESS);
        assert_int_equal(r.background, DB_BACKGROUND_PLANES);
        print_message("water %s: %d iterations, deviance per dof %.3g\n", w ? "0.025 um" : "none", r.iterations,
                      r.deviance_per_dof);
        for (int j = 0; j < STUDY_NP; j++) {
            fitted[w][j] = r.values[j];
            if (w == 0) sigma[j] = r.sigma[j];
        }
        free(img);
        free(obs);
        db_sim_destroy(sim);
        db_sim_destroy(truth_sim);
    }
    for (int j = 0; j < STUDY_NP; j++) {
        test_context("%s: %.10g without water, %.10g with, sigma %.3g", study_names[j], fitted[0][j], fitted[1][j], sigma[j]);
        assert_true(fabs(fitted[1][j] - fitted[0][j]) <= 0.1 * sigma[j]);
        assert_true(fabs(fitted[0][j] - truth[j]) <= 0.1 * sigma[j]);
    }
    test_context("%s", "");
}

/* Trial steps, which the fit's time follows (issue 17's speed targets, measured by bench/bench_refine.c and
 * bench/bench_refine_scipy.py):
 *  - the noise-free still, least squares with unit weights and no background, from the study's start: at most 8,
 *    the function evaluations scipy.optimize.least_squares (trf, the same exact Jacobian, x_scale="jac") takes from
 *    there (bench_refine_scipy.py: 8, both ending within 4e-12 of the truth); the values here within 1e-9 (a fit
 *    on the float image is 5e-9 off, its rounding);
 *  - noise seed 1, without and with water: the Poisson fit with planes takes no more trial steps than the lsq fit
 *    weighted 1/max(obs, 1) without background (the default before it) on the same boxes and image. */
static void test_trial_steps(void **state)
{
    (void)state;
    int params[STUDY_NP];
    db_error err;
    assert_int_equal(db_param_parse_list(STUDY_FIT, params, &err), STUDY_NP);
    double truth[STUDY_NP], start[STUDY_NP];
    char msg[1200];
    int boxes[40];
    int nb = study_boxes(HKL, 10, 15, boxes, msg, sizeof msg);
    assert_true(nb == 10);
    db_sim *sim = study_sim(HKL, 0.0, msg, sizeof msg);
    assert_non_null(sim);
    assert_int_equal(db_sim_select_boxes(sim, boxes, nb, &err), 0);
    assert_int_equal(db_sim_get_params(sim, params, truth, STUDY_NP, &err), 0);
    study_start(truth, start);
    double *obs = malloc(256 * 256 * sizeof(double));
    float *img = malloc(256 * 256 * sizeof(float));
    uint16_t *noise = malloc(256 * 256 * sizeof(uint16_t));
    assert_true(obs && img && noise);
    for (int w = -1; w < 2; w++) { /* -1: noise-free; 0, 1: seed 1 without and with water */
        db_sim *truth_sim = study_sim(HKL, w == 1 ? 0.025 : 0.0, msg, sizeof msg);
        assert_non_null(truth_sim);
        /* noise-free: the image in double precision (the float image's rounding moves the fit by 5e-9) */
        assert_int_equal(db_sim_run(truth_sim, img, w < 0 ? obs : NULL, &err), 0);
        db_sim_destroy(truth_sim);
        if (w >= 0) study_observed(img, 1, noise, obs);
        db_refine_options o;
        db_refine_default_options(&o);
        o.objective = DB_OBJECTIVE_LSQ;
        o.weighting = w < 0 ? DB_WEIGHTS_UNIT : DB_WEIGHTS_POISSON;
        o.background = DB_BACKGROUND_NONE;
        db_refine_result lsq, poisson;
        assert_int_equal(db_sim_set_params(sim, params, start, STUDY_NP, &err), 0);
        if (db_refine(sim, params, STUDY_NP, obs, NULL, &o, &lsq, &err)) fail_msg("%s", err.message);
        if (w < 0) {
            print_message("noise-free, lsq: %d trial steps (scipy's trf: 8)\n", lsq.iterations);
            assert_true(lsq.iterations <= 8);
            for (int j = 0; j < STUDY_NP; j++) {
                test_context("%s = %.15g (true %.15g)", study_names[j], lsq.values[j], truth[j]);
                assert_true(fabs(lsq.values[j] - truth[j]) <= 1e-9 * fabs(truth[j]));
            }
            test_context("%s", "");
            continue;
        }
        assert_int_equal(db_sim_set_params(sim, params, start, STUDY_NP, &err), 0);
        if (db_refine(sim, params, STUDY_NP, obs, NULL, NULL, &poisson, &err)) fail_msg("%s", err.message);
        print_message("seed 1, %s: poisson with planes %d trial steps, lsq 1/max(obs, 1) %d\n", w ? "water" : "no water",
                      poisson.iterations, lsq.iterations);
        assert_true(poisson.stop_reason == DB_STOP_COST || poisson.stop_reason == DB_STOP_STEP);
        assert_true(poisson.iterations <= lsq.iterations);
    }
    free(obs);
    free(img);
    free(noise);
    db_sim_destroy(sim);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_noise_is_the_programs),
        cmocka_unit_test(test_coverage_without_water),
        cmocka_unit_test(test_coverage_with_water),
        cmocka_unit_test(test_water_taken_by_planes),
        cmocka_unit_test(test_trial_steps),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
