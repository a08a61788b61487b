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
#include "lm.h"
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

/* ---- issue 18: the refinement's numbers against independent computations (each names the mutants of
 * tests/mutation/ it guards) ---- */

/* b_triclinic on a 64 x 64 detector, four boxes (each with its own background plane), one per quadrant and not
 * covering it (so that a selected pixel's position in the selection is not its pixel index) */
#define NUM_LINE "-cell 70 80 90 75 85 95 -misset 10 20 30 -hkl " HKL " -Na 4 -Nb 5 -Nc 6 -lambda 1 -distance 100 " \
                 "-pixel 0.1 -detpixels 64 -oversample 1"
#define NUM_NP 3
#define NUM_NB 4
#define NUM_NQ (NUM_NP + 3 * NUM_NB)
static const int NUM_BOXES[4 * NUM_NB] = {2, 29, 1, 30, 34, 62, 0, 30, 0, 30, 33, 63, 33, 63, 34, 61};
#define NUM_PIXELS (28L * 30 + 29 * 31 + 31 * 31 + 31 * 28)
static const double NUM_TRUTH[NUM_NP] = {70.0, 90.0, 0.0}, NUM_START[NUM_NP] = {70.04, 89.97, 0.015};
static const double NUM_PLANE[NUM_NB][3] = {{0.05, 0.002, -0.001}, {0.08, -0.001, 0.0015}, {0.03, 0.0005, 0.0005},
                                            {0.06, 0.0, -0.002}};

static db_sim *num_sim(void)
{
    harness_args a = {0};
    harness_split(&a, NUM_LINE);
    db_config *cfg = db_config_create();
    db_error err;
    db_sim *sim = NULL;
    if (db_config_parse(cfg, a.argc, (const char *const *)a.argv, &err) || db_sim_create(&sim, cfg, NULL, &err))
        fail_msg("%s", err.message);
    db_config_destroy(cfg);
    harness_args_free(&a);
    if (db_sim_select_boxes(sim, NUM_BOXES, NUM_NB, &err)) fail_msg("%s", err.message);
    return sim;
}

static void num_params(int *params)
{
    db_error err;
    assert_int_equal(db_param_parse_list("a,c,phi0", params, &err), NUM_NP);
}

/* The design matrix at the simulation's values, computed here: column j < NUM_NP the model's derivative (the run's
 * Jacobian), then per box the basis 1, x, y of its plane with x, y in pixels from the box's centre (README
 * "Refinement"); rows in the selection's (row-major) order; pix[i] the pixel of row i, box[i] its box, model[i]. */
static long num_design(db_sim *sim, const int *params, double **Z, long **pix, double **model)
{
    db_error err;
    long m = db_sim_selected_count(sim);
    double *jac = malloc((size_t)m * NUM_NP * sizeof(double));
    *model = malloc((size_t)m * sizeof(double));
    *pix = malloc((size_t)m * sizeof(long));
    *Z = calloc((size_t)m * NUM_NQ, sizeof(double));
    assert_int_equal(db_sim_run_selected(sim, params, NUM_NP, *model, jac, &err), DB_OK);
    assert_int_equal(db_sim_selected_pixel_list(sim, *pix, m, &err), m);
    for (long i = 0; i < m; i++) {
        int f = (int)((*pix)[i] % 64), s = (int)((*pix)[i] / 64), b = 0;
        while (!(f >= NUM_BOXES[4 * b] && f <= NUM_BOXES[4 * b + 1] && s >= NUM_BOXES[4 * b + 2] && s <= NUM_BOXES[4 * b + 3])) b++;
        double *z = *Z + (size_t)i * NUM_NQ;
        for (int j = 0; j < NUM_NP; j++) z[j] = jac[(size_t)j * m + i];
        z[NUM_NP + 3 * b] = 1.0;
        z[NUM_NP + 3 * b + 1] = f - 0.5 * (NUM_BOXES[4 * b] + NUM_BOXES[4 * b + 1]);
        z[NUM_NP + 3 * b + 2] = s - 0.5 * (NUM_BOXES[4 * b + 2] + NUM_BOXES[4 * b + 3]);
    }
    free(jac);
    return m;
}

/* The inverse of the q x q matrix N (row-major) by Gauss-Jordan elimination with partial pivoting. */
static void invert(const double *N, int q, double *inv)
{
    double M[NUM_NQ * 2 * NUM_NQ];
    for (int i = 0; i < q; i++)
        for (int j = 0; j < 2 * q; j++) M[i * 2 * q + j] = j < q ? N[i * q + j] : (j - q == i ? 1.0 : 0.0);
    for (int c = 0; c < q; c++) {
        int piv = c;
        for (int r = c + 1; r < q; r++)
            if (fabs(M[r * 2 * q + c]) > fabs(M[piv * 2 * q + c])) piv = r;
        for (int j = 0; j < 2 * q; j++) {
            double t = M[c * 2 * q + j];
            M[c * 2 * q + j] = M[piv * 2 * q + j];
            M[piv * 2 * q + j] = t;
        }
        double d = M[c * 2 * q + c];
        assert_true(d != 0.0);
        for (int j = 0; j < 2 * q; j++) M[c * 2 * q + j] /= d;
        for (int r = 0; r < q; r++)
            if (r != c) {
                double f = M[r * 2 * q + c];
                for (int j = 0; j < 2 * q; j++) M[r * 2 * q + j] -= f * M[c * 2 * q + j];
            }
    }
    for (int i = 0; i < q; i++)
        for (int j = 0; j < q; j++) inv[i * q + j] = M[i * 2 * q + q + j];
}

/* Checks a fit's uncertainties and correlations against (Z^T W Z)^-1 computed here from the design at the fitted
 * values and the weights w[i] (per selected pixel): the parameters' block, and the background terms' diagonal. The
 * library's inverse is LAPACK's Cholesky on a unit-diagonal scaling, this one Gauss-Jordan: they agree to the
 * conditioning of the matrix times rounding (here under 1e-9); 1e-6 leaves room and still sees any real error. */
static void check_covariance(db_sim *sim, const int *params, const db_refine_result *r, const double *bg_sigma,
                             double (*weight)(long i, const double *mu, void *u), void *u, const double *mu)
{
    double *Z, *model;
    long *pix;
    long m = num_design(sim, params, &Z, &pix, &model);
    double N[NUM_NQ * NUM_NQ] = {0}, C[NUM_NQ * NUM_NQ];
    for (long i = 0; i < m; i++) {
        const double *z = Z + (size_t)i * NUM_NQ, w = weight(i, mu, u);
        for (int a = 0; a < NUM_NQ; a++)
            for (int b = 0; b < NUM_NQ; b++) N[a * NUM_NQ + b] += w * z[a] * z[b];
    }
    invert(N, NUM_NQ, C);
    double largest = 0.0;
    int negative = 0;
    for (int j = 0; j < NUM_NP; j++) {
        test_context("sigma of %s", db_param_name(params[j]));
        assert_close(r->sigma[j], sqrt(C[j * NUM_NQ + j]), 1e-6, 0);
        for (int k = 0; k < NUM_NP; k++) {
            double want = C[j * NUM_NQ + k] / sqrt(C[j * NUM_NQ + j] * C[k * NUM_NQ + k]);
            test_context("correlation of %s and %s", db_param_name(params[j]), db_param_name(params[k]));
            assert_close(r->correlation[j * NUM_NP + k], want, 0, 1e-6);
            if (j != k && fabs(want) > largest) largest = fabs(want);
            negative += j != k && want < -0.01;
        }
    }
    for (int k = 0; k < 3 * NUM_NB; k++) {
        test_context("sigma of background term %d", k);
        assert_close(bg_sigma[k], sqrt(C[(NUM_NP + k) * NUM_NQ + NUM_NP + k]), 1e-6, 0);
    }
    test_context(NULL);
    /* correlations large enough, and of both signs, for the comparison to mean something */
    assert_true(largest > 0.05);
    assert_true(negative > 0);
    free(Z);
    free(model);
    free(pix);
}

/* mu at the fitted values: the model plus each box's plane, from the reported background */
static double *num_mu(db_sim *sim, const int *params, const double *bg, long *m_out)
{
    double *Z, *model;
    long *pix;
    long m = num_design(sim, params, &Z, &pix, &model);
    for (long i = 0; i < m; i++) {
        const double *z = Z + (size_t)i * NUM_NQ;
        for (int k = 0; k < 3 * NUM_NB; k++) model[i] += z[NUM_NP + k] * bg[k];
    }
    free(Z);
    free(pix);
    *m_out = m;
    return model;
}

static double lsq_weight(long i, const double *mu, void *u)
{
    (void)mu;
    return ((const double *)u)[i];
}

/* A Poisson count of mean mu by inversion of its distribution, from a fixed LCG (the same image on every run). */
static int poisson_count(double mu, uint64_t *state)
{
    *state = *state * 6364136223846793005ULL + 1442695040888963407ULL;
    double u = (double)(*state >> 11) / 9007199254740992.0, p = exp(-mu), c = p;
    int k = 0;
    while (u > c && k < 100000) {
        p *= mu / ++k;
        c += p;
    }
    return k;
}

/* The observed image: the truth at NUM_TRUTH, the planes, and a fixed ripple (so that the fit leaves a residual). */
static double *num_observed(double scale_photons, int counts)
{
    db_sim *sim = num_sim();
    int params[NUM_NP];
    num_params(params);
    db_error err;
    assert_int_equal(db_sim_set_params(sim, params, NUM_TRUTH, NUM_NP, &err), DB_OK);
    double *img = calloc(64 * 64, sizeof(double));
    float *f32 = malloc(64 * 64 * sizeof(float));
    assert_int_equal(db_sim_run(sim, f32, img, &err), DB_OK);
    uint64_t st = 12345;
    for (int i = 0; i < 64 * 64; i++) {
        int f = i % 64, s = i / 64, b = (f >= 32) + 2 * (s >= 32);
        double x = f - 0.5 * (NUM_BOXES[4 * b] + NUM_BOXES[4 * b + 1]), y = s - 0.5 * (NUM_BOXES[4 * b + 2] + NUM_BOXES[4 * b + 3]);
        double mu = scale_photons * (img[i] + NUM_PLANE[b][0] + NUM_PLANE[b][1] * x + NUM_PLANE[b][2] * y);
        if (!counts) {
            img[i] = mu + 0.003 * scale_photons * sin(1.7 * i);
            continue;
        }
        img[i] = poisson_count(mu, &st);
    }
    free(f32);
    db_sim_destroy(sim);
    return img;
}

/* Weighted least squares: scaling every weight by 4 leaves the fit and its correlations where they were, divides
 * the uncertainties by 2 (sqrt(4)), multiplies the reduced chi-square by 4 and leaves the scaled uncertainties;
 * the degrees of freedom are the pixels less the parameters and the planes' terms; the reduced chi-square is
 * sum w (obs - mu)^2 / dof recomputed here; the uncertainties and correlations (signs included) are those of
 * (Z^T W Z)^-1 computed here. The two fits take the same steps in exact arithmetic (every quantity the driver
 * compares scales with the weights), so they differ by rounding: 1e-6 of an uncertainty for the values, 1e-9
 * relative for the uncertainties. Guards refine-corr-sign, refine-sigma-scaled, refine-weights-index,
 * refine-plane-x, refine-reduced-chi2, refine-bg-sigma, lm-dof, lm-cov-scale, lm-cov-triangle. */
static void test_lsq_numbers_against_independent(void **state)
{
    (void)state;
    int params[NUM_NP];
    num_params(params);
    double *obs = num_observed(1.0, 0), *w = malloc(64 * 64 * sizeof(double)), *w4 = malloc(64 * 64 * sizeof(double));
    for (int i = 0; i < 64 * 64; i++) {
        w[i] = 1.0 / (0.02 + fabs(obs[i])) * (1.0 + 0.5 * ((i * 7) % 3)); /* unequal, and not a function of the value */
        w4[i] = 4.0 * w[i];
    }
    db_refine_result r[2];
    double bg[2][3 * NUM_NB], bgs[2][3 * NUM_NB];
    int bgbox[4 * NUM_NB];
    db_sim *sim[2];
    for (int k = 0; k < 2; k++) {
        sim[k] = num_sim();
        db_error err;
        assert_int_equal(db_sim_set_params(sim[k], params, NUM_START, NUM_NP, &err), DB_OK);
        db_refine_options o;
        db_refine_default_options(&o);
        o.objective = DB_OBJECTIVE_LSQ;
        o.background = DB_BACKGROUND_PLANES;
        o.background_values = bg[k];
        o.background_sigma = bgs[k];
        o.background_boxes = bgbox;
        if (db_refine(sim[k], params, NUM_NP, obs, k ? w4 : w, &o, &r[k], &err)) fail_msg("%s", err.message);
        assert_true(r[k].stop_reason == DB_STOP_COST || r[k].stop_reason == DB_STOP_STEP);
    }
    const long m = NUM_PIXELS;
    assert_int_equal(r[0].pixels, m);
    assert_int_equal(r[0].dof, m - NUM_NP - 3 * NUM_NB);
    assert_int_equal(r[1].dof, r[0].dof);
    for (int j = 0; j < NUM_NP; j++) {
        test_context("%s", db_param_name(params[j]));
        assert_close(r[0].values[j], NUM_TRUTH[j], 0, 20 * r[0].sigma_scaled[j]);
        assert_close(r[1].values[j], r[0].values[j], 0, 1e-6 * r[0].sigma[j]);
        assert_close(r[1].sigma[j], 0.5 * r[0].sigma[j], 1e-9, 0);
        assert_close(r[1].sigma_scaled[j], r[0].sigma_scaled[j], 1e-9, 0);
        assert_close(r[0].sigma_scaled[j], r[0].sigma[j] * sqrt(r[0].reduced_chi2), 1e-12, 0);
        for (int i = 0; i < NUM_NP; i++) assert_close(r[1].correlation[j * NUM_NP + i], r[0].correlation[j * NUM_NP + i], 0, 1e-9);
    }
    test_context(NULL);
    assert_close(r[1].reduced_chi2, 4.0 * r[0].reduced_chi2, 1e-9, 0);
    for (int k = 0; k < 3 * NUM_NB; k++) assert_close(bgs[1][k], 0.5 * bgs[0][k], 1e-9, 0);
    /* the reduced chi-square from the fitted model and planes */
    long mm;
    double *mu = num_mu(sim[0], params, bg[0], &mm);
    double *wsel = malloc((size_t)mm * sizeof(double)), pearson = 0.0;
    long *pix = malloc((size_t)mm * sizeof(long));
    db_error err;
    assert_int_equal(db_sim_selected_pixel_list(sim[0], pix, mm, &err), mm);
    for (long i = 0; i < mm; i++) {
        wsel[i] = w[pix[i]];
        pearson += wsel[i] * (obs[pix[i]] - mu[i]) * (obs[pix[i]] - mu[i]);
    }
    assert_close(r[0].reduced_chi2, pearson / (double)r[0].dof, 1e-9, 0);
    check_covariance(sim[0], params, &r[0], bgs[0], lsq_weight, wsel, mu);
    free(mu);
    free(wsel);
    free(pix);
    free(obs);
    free(w);
    free(w4);
    db_sim_destroy(sim[0]);
    db_sim_destroy(sim[1]);
}

/* E and Var of the Poisson deviance term 2 (k ln(k / mu) - (k - mu)) by direct summation over k (mu < 1000 here). */
static void deviance_moments(double mu, double *mean, double *var)
{
    double m1 = 0.0, m2 = 0.0, p = exp(-mu);
    long kmax = (long)(mu + 40.0 * sqrt(mu) + 60.0);
    for (long k = 0; k <= kmax; k++) {
        if (k > 0) p *= mu / (double)k;
        double d = 2.0 * ((k > 0 ? k * log(k / mu) : 0.0) - (k - mu));
        m1 += p * d;
        m2 += p * d * d;
    }
    *mean = m1;
    *var = m2 - m1 * m1;
}

static double fisher_weight(long i, const double *mu, void *u)
{
    (void)u;
    return 1.0 / mu[i];
}

/* The Poisson objective: uncertainties from the Fisher information (Z^T diag(1/mu) Z)^-1 at the fit (not the
 * steps' curvature obs/mu^2); the deviance per degree of freedom; its expectation and z-score against the moments
 * of each pixel's deviance term summed here (expectation less the fitted terms); the background never below 0 at
 * a box's corners. The moments are summed in another order than the library's: 1e-9 relative. Guards lm-fisher,
 * lm-expected-deviance, refine-deviance-z, refine-bounds-corner (with lm-dof, refine-bg-sigma). */
static void test_poisson_numbers_against_independent(void **state)
{
    (void)state;
    int params[NUM_NP];
    num_params(params);
    /* counts with the brightest pixel near 300 photons (the deviance moments are summed directly below 1000) */
    double *truth = num_observed(1.0, 0), peak = 0.0;
    for (int i = 0; i < 64 * 64; i++) peak = fmax(peak, truth[i]);
    free(truth);
    const double scale = 300.0 / peak;
    double *obs = num_observed(scale, 1);
    db_sim *sim = num_sim();
    db_error err;
    assert_int_equal(db_sim_set_params(sim, params, NUM_START, NUM_NP, &err), DB_OK);
    /* the model in photons: the fluence scaled like the observed image */
    int pf = db_param_from_name("fluence");
    double fl;
    assert_int_equal(db_sim_get_params(sim, &pf, &fl, 1, &err), DB_OK);
    fl *= scale;
    assert_int_equal(db_sim_set_params(sim, &pf, &fl, 1, &err), DB_OK);
    db_refine_options o;
    db_refine_default_options(&o);
    double bg[3 * NUM_NB], bgs[3 * NUM_NB];
    int bgbox[4 * NUM_NB];
    o.background = DB_BACKGROUND_PLANES;
    o.background_values = bg;
    o.background_sigma = bgs;
    o.background_boxes = bgbox;
    db_refine_result r;
    if (db_refine(sim, params, NUM_NP, obs, NULL, &o, &r, &err)) fail_msg("%s", err.message);
    assert_int_equal(r.dof, NUM_PIXELS - NUM_NP - 3 * NUM_NB);
    long m;
    double *mu = num_mu(sim, params, bg, &m);
    long *pix = malloc((size_t)m * sizeof(long));
    assert_int_equal(db_sim_selected_pixel_list(sim, pix, m, &err), m);
    double e = 0.0, v = 0.0, dev = 0.0, pearson = 0.0;
    for (long i = 0; i < m; i++) {
        double mi, vi, k = obs[pix[i]];
        assert_true(mu[i] > 0.0 && mu[i] < 1000.0);
        deviance_moments(mu[i], &mi, &vi);
        e += mi;
        v += vi;
        dev += 2.0 * ((k > 0 ? k * log(k / mu[i]) : 0.0) - (k - mu[i]));
        pearson += (k - mu[i]) * (k - mu[i]) / mu[i];
    }
    const double fitted = NUM_NP + 3 * NUM_NB, dof = (double)r.dof;
    assert_close(r.deviance, dev, 1e-9, 0);
    assert_close(r.deviance_per_dof, dev / dof, 1e-9, 0);
    assert_close(r.expected_deviance_per_dof, (e - fitted) / dof, 1e-9, 0);
    assert_close(r.deviance_z, (dev - (e - fitted)) / sqrt(v), 1e-6, 1e-9);
    assert_close(r.reduced_chi2, pearson / dof, 1e-9, 0);
    check_covariance(sim, params, &r, bgs, fisher_weight, NULL, mu);
    /* the planes at their boxes' corners */
    for (int b = 0; b < NUM_NB; b++)
        for (int c = 0; c < 4; c++) {
            double hx = 0.5 * (NUM_BOXES[4 * b + 1] - NUM_BOXES[4 * b]), hy = 0.5 * (NUM_BOXES[4 * b + 3] - NUM_BOXES[4 * b + 2]);
            double at = bg[3 * b] + bg[3 * b + 1] * (c & 1 ? hx : -hx) + bg[3 * b + 2] * (c & 2 ? hy : -hy);
            assert_true(at >= -1e-9 * bg[3 * b]);
        }
    free(mu);
    free(pix);
    free(obs);
    db_sim_destroy(sim);
}

/* A background that wants to go below 0 at a corner: counts of a spotless image whose true background is 0 on
 * the left half of each box and rises to the right. The Poisson fit's planes must stay >= 0 at all four corners of
 * every box (README "Refinement"). Guards refine-bounds-corner. */
static void test_poisson_planes_stay_nonnegative(void **state)
{
    (void)state;
    int params[NUM_NP];
    num_params(params);
    db_sim *sim = num_sim();
    db_error err;
    double *img = calloc(64 * 64, sizeof(double));
    float *f32 = malloc(64 * 64 * sizeof(float));
    assert_int_equal(db_sim_run(sim, f32, img, &err), DB_OK);
    uint64_t st = 99;
    for (int i = 0; i < 64 * 64; i++) {
        int f = i % 64, b = (f >= 32) + 2 * (i / 64 >= 32);
        double x = f - 0.5 * (NUM_BOXES[4 * b] + NUM_BOXES[4 * b + 1]);
        double mu = img[i] + (x > 0 ? 0.2 * x : 0.0);
        img[i] = poisson_count(mu, &st);
    }
    db_refine_options o;
    db_refine_default_options(&o);
    double bg[3 * NUM_NB];
    o.background = DB_BACKGROUND_PLANES;
    o.background_values = bg;
    db_refine_result r;
    if (db_refine(sim, params, NUM_NP, img, NULL, &o, &r, &err)) fail_msg("%s", err.message);
    int at_zero = 0;
    for (int b = 0; b < NUM_NB; b++)
        for (int c = 0; c < 4; c++) {
            double hx = 0.5 * (NUM_BOXES[4 * b + 1] - NUM_BOXES[4 * b]), hy = 0.5 * (NUM_BOXES[4 * b + 3] - NUM_BOXES[4 * b + 2]);
            double at = bg[3 * b] + bg[3 * b + 1] * (c & 1 ? hx : -hx) + bg[3 * b + 2] * (c & 2 ? hy : -hy);
            test_context("box %d corner %d: background %g", b, c, at);
            assert_true(at >= -1e-9 * fabs(bg[3 * b]));
            at_zero += at <= 1e-6 * fabs(bg[3 * b]);
        }
    test_context(NULL);
    assert_true(at_zero > 0); /* the bounds held somewhere: the unconstrained planes go below 0 */
    free(img);
    free(f32);
    db_sim_destroy(sim);
}

/* ---- the damping schedule, replayed: the driver on y = x0 exp(-x1 t) (40 points, a fixed ripple) from far away,
 * with every trial point (the evaluate calls) and damping (the progress reports) checked against the schedule
 * computed here from the README's rules: the start lambda = initial_damping x max_j A_jj / Dx_j^2 with
 * Dx_j = sqrt(A_jj) (so initial_damping itself); each step solves (A + lambda Dx^2) dx = -g; rho = actual / predicted
 * decrease, predicted = -g.dx - dx.A.dx / 2; accepted when the cost drops and rho > 0: lambda times
 * max(1 - (2 rho - 1)^3, 1/3), 1/9 after two steps in a row with rho > 0.9, 1/27 after three or more, nu = 2, and
 * Dx_j = max(Dx_j, sqrt(A_jj)); rejected: lambda times nu, nu doubled. The driver solves with LAPACK's Cholesky,
 * this replay a 2 x 2 system by hand, and rho enters each update: 1e-8 relative allows that rounding over the fit.
 * Guards lm-initial-damping, lm-reject-growth, lm-nu-reset, lm-shrink, lm-streak, lm-dx-scale. ---- */

#define EXP_N 40
typedef struct exp_log {
    int nx, nrep;
    double x[400][2];
    int with_jac[400];
    db_lm_iteration rep[200];
} exp_log;

static double exp_obs(int i) { return 5.0 * exp(-0.7 * 0.1 * i) + 0.01 * sin(7.0 * i); }

static int exp_eval(void *user, const double *x, double *mu, double *J, db_error *err)
{
    (void)err;
    exp_log *L = (exp_log *)user;
    if (L->nx < 400) {
        L->x[L->nx][0] = x[0];
        L->x[L->nx][1] = x[1];
        L->with_jac[L->nx++] = J != NULL;
    }
    for (int i = 0; i < EXP_N; i++) {
        double t = 0.1 * i, e = exp(-x[1] * t);
        mu[i] = x[0] * e;
        if (J) {
            J[i] = e;
            J[EXP_N + i] = -x[0] * t * e;
        }
    }
    return 0;
}

static void exp_progress(void *user, const db_lm_iteration *it)
{
    exp_log *L = (exp_log *)user;
    if (L->nrep < 200) L->rep[L->nrep++] = *it;
}

/* cost, gradient and normal matrix at x, computed here */
static double exp_lin(const double *x, double g[2], double A[4])
{
    double c = 0.0;
    g[0] = g[1] = A[0] = A[1] = A[2] = A[3] = 0.0;
    for (int i = 0; i < EXP_N; i++) {
        double t = 0.1 * i, e = exp(-x[1] * t), r = x[0] * e - exp_obs(i), j0 = e, j1 = -x[0] * t * e;
        c += 0.5 * r * r;
        g[0] += j0 * r;
        g[1] += j1 * r;
        A[0] += j0 * j0;
        A[1] += j0 * j1;
        A[3] += j1 * j1;
    }
    A[2] = A[1];
    return c;
}

static void test_damping_schedule_replayed(void **state)
{
    (void)state;
    double obs[EXP_N];
    for (int i = 0; i < EXP_N; i++) obs[i] = exp_obs(i);
    exp_log *L = calloc(1, sizeof *L);
    db_lm_problem P = {EXP_N, 2, exp_eval, L, obs, DB_LM_LSQ, NULL, 0.0, 0, 0, NULL, NULL, NULL, 0, NULL};
    db_lm_options o;
    db_lm_default_options(&o);
    o.initial_damping = 3e-5;
    o.progress = exp_progress;
    o.progress_user = L;
    double x[2] = {1.0, 4.0}, sx[2], cov[4];
    db_lm_result res;
    db_error err;
    if (db_lm_fit(&P, &o, x, NULL, sx, cov, NULL, NULL, &res, &err)) fail_msg("%s", err.message);
    assert_close(x[1], 0.7, 0.02, 0);
    /* the replay */
    double xc[2] = {1.0, 4.0}, g[2], A[4], D[2];
    double cost = exp_lin(xc, g, A);
    D[0] = sqrt(A[0]);
    D[1] = sqrt(A[3]);
    double lambda = o.initial_damping * fmax(A[0] / (D[0] * D[0]), A[3] / (D[1] * D[1])), nu = 2.0;
    int streak = 0, k = 1, rejections_in_a_row = 0;
    int seen_nu4 = 0, seen_reject_after_accept_after_reject = 0, seen_unclamped = 0, seen_9 = 0, seen_27 = 0, seen_dx_kept = 0;
    int last_accepted = 0, rejected_before = 0;
    assert_true(L->nrep >= 5);
    for (int it = 0; it < L->nrep; it++) {
        const db_lm_iteration *rep = &L->rep[it];
        test_context("iteration %d", rep->iteration);
        assert_close(rep->damping, lambda, 1e-8, 0);
        /* the trial point: the next evaluate without a Jacobian */
        while (k < L->nx && L->with_jac[k]) k++;
        assert_true(k < L->nx);
        double M[4] = {A[0] + lambda * D[0] * D[0], A[1], A[2], A[3] + lambda * D[1] * D[1]};
        double det = M[0] * M[3] - M[1] * M[2];
        double dx[2] = {(-g[0] * M[3] + g[1] * M[1]) / det, (-g[1] * M[0] + g[0] * M[2]) / det};
        double scale = fabs(dx[0]) + fabs(dx[1]);
        assert_close(L->x[k][0] - xc[0], dx[0], 0, 1e-8 * scale + 1e-14);
        assert_close(L->x[k][1] - xc[1], dx[1], 0, 1e-8 * scale + 1e-14);
        double xt[2] = {L->x[k][0], L->x[k][1]}, gt[2], At[4];
        double tcost = exp_lin(xt, gt, At);
        k++;
        double pred = -(g[0] * dx[0] + g[1] * dx[1]) -
                      0.5 * (dx[0] * (A[0] * dx[0] + A[1] * dx[1]) + dx[1] * (A[2] * dx[0] + A[3] * dx[1]));
        double rho = pred > 0 ? (cost - tcost) / pred : -1.0;
        if (rep->accepted) {
            assert_true(tcost < cost && rho > 0.0);
            if (it == L->nrep - 1) break; /* the last report: the fit ends (no update to check) */
            if (rejected_before) last_accepted = 1;
            double t = 2.0 * rho - 1.0, shrink = 1.0 - t * t * t;
            streak = rho > 0.9 ? streak + 1 : 0;
            double most = streak >= 3 ? 1.0 / 27.0 : streak == 2 ? 1.0 / 9.0 : 1.0 / 3.0;
            seen_unclamped |= shrink > most && shrink < 0.99;
            seen_9 |= streak == 2 && shrink < 1.0 / 9.0;
            seen_27 |= streak >= 3 && shrink < 1.0 / 27.0;
            lambda *= shrink > most ? shrink : most;
            nu = 2.0;
            xc[0] = xt[0];
            xc[1] = xt[1];
            cost = exp_lin(xc, g, A);
            seen_dx_kept |= sqrt(A[0]) < 0.99 * D[0] || sqrt(A[3]) < 0.99 * D[1];
            D[0] = fmax(D[0], sqrt(A[0]));
            D[1] = fmax(D[1], sqrt(A[3]));
            rejections_in_a_row = 0;
        } else {
            if (it == L->nrep - 1) break;
            seen_reject_after_accept_after_reject |= last_accepted && rejections_in_a_row == 0;
            rejected_before = 1;
            lambda *= nu;
            nu *= 2.0;
            streak = 0;
            seen_nu4 |= ++rejections_in_a_row >= 2;
        }
    }
    test_context(NULL);
    print_message("damping replay: %d trial steps; two rejections in a row %d, a rejection after nu was reset %d, "
                  "unclamped shrink %d, 1/9 %d, 1/27 %d, Dx kept above the diagonal %d\n",
                  L->nrep, seen_nu4, seen_reject_after_accept_after_reject, seen_unclamped, seen_9, seen_27, seen_dx_kept);
    /* the fit went through every rule the replay checks */
    assert_true(seen_nu4 && seen_reject_after_accept_after_reject && seen_unclamped && seen_9 && seen_27 && seen_dx_kept);
    free(L);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_noise_is_the_programs),
        cmocka_unit_test(test_coverage_without_water),
        cmocka_unit_test(test_coverage_with_water),
        cmocka_unit_test(test_water_taken_by_planes),
        cmocka_unit_test(test_trial_steps),
        cmocka_unit_test(test_lsq_numbers_against_independent),
        cmocka_unit_test(test_poisson_numbers_against_independent),
        cmocka_unit_test(test_poisson_planes_stay_nonnegative),
        cmocka_unit_test(test_damping_schedule_replayed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
