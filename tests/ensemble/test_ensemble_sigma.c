/* test_ensemble_sigma.c: the ensemble's uncertainties (refine/ensemble.h: "Sigmas are the square roots of the
 * diagonal of the inverse Fisher matrix at the optimum"), the shared parameters' above all, against a Fisher matrix
 * rebuilt here, densely and independently of the ensemble's code (its block elimination, CHOLMOD, and the way
 * ensemble.c merges the shared parameters' derivative columns into the F Jacobian, jf_append_shared).
 *
 * The problem: two noise-free stills (rendered here through the public API at distance 100.3 mm and xbeam 6.5 mm,
 * plus a constant background of 2 photons, written as float64 so the observed counts are the model's own doubles),
 * fitted by db_ensemble_refine from the shared flags' distance 100 mm and xbeam 6.45 mm, with missets started off by
 * up to 0.05 degrees: -refine_still misset_x,misset_y,misset_z, -refine_F, -refine_shared distance,xbeam, -spots 8
 * -spot_size 9. Fluence is not refined (no scale rule: F is refined at the given fluence).
 *
 * At the result the test rebuilds, for every still, its fitted pixels (the union of the boxes the result reports,
 * row by row, checked against the count the result gives and against the simulator's own list of the selection)
 * and the derivatives of each pixel's mean mu = model + a + b x + c y (x, y pixels from the centre of the first box
 * holding the pixel, ensemble.h's convention) in every fitted parameter: the still's missets, its boxes' planes,
 * every refined F, and the shared distance and xbeam. The model's derivatives come from the simulator's public API
 * (db_sim_run_selected_F on a simulation of the still's own, set to the fitted values); the shared columns are also
 * checked against central finite differences of renders. Then I = sum_i J_i^T J_i / mu_i over both stills, dense,
 * is inverted by a Cholesky factorisation written here, and sqrt(diag(I^-1)) is compared with the result's sigmas:
 * the shared ones (the gap this test closes: a Jacobian scaled by 0.9 has the same optimum, so only the sigmas can
 * show it, 11% off), and every misset, background and F sigma too.
 *
 * Tolerances:
 *  - the fit reaches the noise-free optimum: mu = obs on every fitted pixel to MU_RTOL = 1e-5 relative (measured
 *    about 2e-7: the fit stops at a relative step of 1e-10, where the weakest pixels (3 to 5 photons) are still some
 *    1e-6 photons off, far inside their Poisson sigma; a wrong pixel or model would be off by far more than 1e-5);
 *  - every sigma to ROUND_RTOL + bound, relative. Both sides evaluate the same simulator at the same values (the
 *    result's are the fit's bits, and the ensemble linearises at them before its sigmas), so J and mu agree to
 *    rounding. What differs: (1) rounding, from the order of the sums (J^T W J pixel by pixel here, per still and through
 *    a Schur complement there) and the factorisations (dense Cholesky of the unit-diagonal scaled matrix here,
 *    CHOLMOD of the reduced system there): about n eps cond, with n = 71 parameters and the scaled matrix's
 *    condition number bounded above by n sum_i VIF_i (asserted <= COND_MAX = 1e5; about 1e4 here), so below
 *    71 x 2.2e-16 x 1e5 = 1.6e-9, and ROUND_RTOL = 1e-8 leaves room for another CPU's rounding; (2) the ensemble's
 *    second-order F term (ensemble_lm.h F_squared): max(0, g_F / F) added to each F's diagonal, g_F the cost's
 *    gradient in F, 0 at an exact optimum and some 1e-8 of the Fisher diagonal here. Adding t_c to H_cc lowers every
 *    (H^-1)_ii by at most the relative amount t_c (H^-1)_cc (Sherman-Morrison and Cauchy-Schwarz), the additions
 *    only shrink H^-1, so each sigma is lowered by at most bound = sum_c t_c (H^-1)_cc relative, computed here from
 *    the test's own g_F (about 8e-9; asserted <= 1e-6: a fit that stopped short would otherwise loosen the test).
 *    The tolerance is about 2e-8; measured: 2e-10 for the shared sigmas, 1.4e-9 at worst (an F). (With the
 *    term added the two agree to 2e-15, which shows it is the whole difference.) The mutation it must catch moves
 *    the shared sigmas by 11%;
 *  - FD_RTOL = 1e-6 for the shared columns against central differences with a step of 3e-5 mm, measured as the
 *    Fisher-weighted norm of the difference over that of the column, sqrt(sum (fd - an)^2 / mu) /
 *    sqrt(sum an^2 / mu) (the relative error with which the column enters I). The truncation error goes as h^2
 *    (measured 3.5e-5 at h = 1e-3 mm, 3.5e-7 at 1e-4, 3.6e-9 at 1e-5, xbeam the worse), the rounding as 1/h (1e-7 at
 *    1e-6 mm, distance the worse); at 3e-5 mm both are at most 3e-8, 30 times below FD_RTOL.
 * Runtime: well under a second. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "dualbragg.h"
#include "ensemble.h"
#include "stills.h"
#include "cli_harness.h"
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NSTILLS 2
#define NMISSET 3
#define NSHARED 2
#define MODEL "-cell 70 80 90 75 85 95 -N 5 -lambda 1 -distance 100 -pixel 0.1 -detpixels 128 -oversample 1 " \
              "-fluence 5e28"
#define GEOMETRY_TRUE "-distance 100.3 -Xbeam 6.5"
#define GEOMETRY_START "-Xbeam 6.45"
#define BACKGROUND 2.0
#define DET 128

#define MU_RTOL 1e-5
#define SECOND_ORDER_MAX 1e-6
#define ROUND_RTOL 1e-8
#define COND_MAX 1e5
#define FD_STEP 3e-5
#define FD_RTOL 1e-6

static const double MISSET[NSTILLS][3] = {{10, 20, 30}, {17, 31, 43}};
static const double START[NSTILLS][3] = {{10.05, 19.95, 30.02}, {17.0, 31.05, 42.97}};

static char dir[4096];
static char hkl_path[4200];
static double *observed[NSTILLS]; /* [DET*DET] photons, the model's doubles plus the background */

static void path_in(char *out, size_t n, const char *name) { snprintf(out, n, "%s/%s", dir, name); }

/* A simulation from a command line (words separated by spaces) plus -hkl small.hkl; NULL on failure. */
static db_sim *make_sim(const char *line)
{
    harness_args a = {0};
    harness_split(&a, line);
    harness_push(&a, "-hkl");
    harness_push(&a, hkl_path);
    db_error err;
    db_config *cfg = db_config_create();
    db_sim *sim = NULL;
    int rc = cfg ? db_config_parse(cfg, a.argc, (const char *const *)a.argv, &err) : DB_ERR_NOMEM;
    if (!rc) rc = db_sim_create(&sim, cfg, NULL, &err);
    if (rc) fprintf(stderr, "make_sim(%s): %s\n", line, err.message);
    db_config_destroy(cfg);
    harness_args_free(&a);
    return rc ? NULL : sim;
}

/* small.hkl (b_triclinic's P1.hkl cut to |h|,|k|,|l| <= 8), the two observed images o0.f64 o1.f64, stills.txt */
static int setup(void **state)
{
    (void)state;
    if (harness_mkdtemp(dir, sizeof dir)) return -1;
    char p[4200];
    snprintf(p, sizeof p, "%s/b_triclinic/P1.hkl", DB_GOLDEN_DIR);
    FILE *in = fopen(p, "r");
    path_in(hkl_path, sizeof hkl_path, "small.hkl");
    FILE *out = fopen(hkl_path, "w");
    if (!in || !out) return -1;
    int h, k, l;
    double F;
    while (fscanf(in, "%d %d %d %lf", &h, &k, &l, &F) == 4)
        if (abs(h) <= 8 && abs(k) <= 8 && abs(l) <= 8) fprintf(out, "%d %d %d %.17g\n", h, k, l, F);
    fclose(in);
    if (fclose(out)) return -1;
    char stills[2048] = "# two noise-free stills at distance 100.3 mm, xbeam 6.5 mm\n";
    for (int s = 0; s < NSTILLS; s++) {
        char line[512];
        snprintf(line, sizeof line, MODEL " " GEOMETRY_TRUE " -misset %.17g %.17g %.17g", MISSET[s][0], MISSET[s][1],
                 MISSET[s][2]);
        db_sim *sim = make_sim(line);
        if (!sim) return -1;
        float *img = (float *)malloc(sizeof(float) * DET * DET);
        observed[s] = (double *)malloc(sizeof(double) * DET * DET);
        db_error err;
        if (!img || !observed[s] || db_sim_run(sim, img, observed[s], &err)) return -1;
        for (int i = 0; i < DET * DET; i++) observed[s][i] += BACKGROUND;
        free(img);
        db_sim_destroy(sim);
        char name[64];
        snprintf(name, sizeof name, "o%d.f64", s);
        path_in(p, sizeof p, name);
        if (db_write_float64_image(p, observed[s], DET * DET, &err)) return -1;
        size_t at = strlen(stills);
        snprintf(stills + at, sizeof stills - at, "o%d.f64 -misset %.17g %.17g %.17g\n", s, START[s][0], START[s][1],
                 START[s][2]);
    }
    path_in(p, sizeof p, "stills.txt");
    FILE *f = fopen(p, "w");
    if (!f) return -1;
    fputs(stills, f);
    return fclose(f) ? -1 : 0;
}

static int teardown(void **state)
{
    (void)state;
    harness_rmtree(dir);
    for (int s = 0; s < NSTILLS; s++) free(observed[s]);
    return 0;
}

/* var[i] = (H^-1)_ii of the symmetric positive definite H[n*n] (row-major), by a Cholesky factorisation of the
 * diagonally scaled matrix A = D^-1/2 H D^-1/2 (unit diagonal: parameters in different units get comparable
 * pivots; (H^-1)_ii = (A^-1)_ii / H_ii). Returns 0, or -1 when it is not positive definite. */
static int inverse_diagonal(const double *H, int n, double *var)
{
    double *L = (double *)calloc((size_t)n * (size_t)n, sizeof(double));
    double *d = (double *)malloc(sizeof(double) * (size_t)n), *z = (double *)malloc(sizeof(double) * (size_t)n);
    assert_non_null(L);
    assert_non_null(d);
    assert_non_null(z);
    for (int i = 0; i < n; i++) {
        if (!(H[(size_t)i * n + i] > 0)) return -1;
        d[i] = 1.0 / sqrt(H[(size_t)i * n + i]);
    }
    for (int j = 0; j < n; j++) {
        for (int i = j; i < n; i++) {
            double v = H[(size_t)i * n + j] * d[i] * d[j];
            for (int k = 0; k < j; k++) v -= L[(size_t)i * n + k] * L[(size_t)j * n + k];
            if (i == j) {
                if (!(v > 0)) return -1;
                L[(size_t)j * n + j] = sqrt(v);
            } else {
                L[(size_t)i * n + j] = v / L[(size_t)j * n + j];
            }
        }
    }
    /* (A^-1)_ii = |L^-1 e_i|^2: forward substitution from row i on */
    for (int i = 0; i < n; i++) {
        double sum = 0.0;
        for (int r = i; r < n; r++) {
            double v = r == i ? 1.0 : 0.0;
            for (int k = i; k < r; k++) v -= L[(size_t)r * n + k] * z[k];
            z[r] = v / L[(size_t)r * n + r];
            sum += z[r] * z[r];
        }
        var[i] = sum * d[i] * d[i];
    }
    free(L);
    free(d);
    free(z);
    return 0;
}

static double rel(double a, double b) { return fabs(a - b) / fabs(b); }

static void test_shared_sigmas_match_dense_fisher(void **state)
{
    (void)state;
    /* ---- the ensemble's fit ---- */
    char p[4200];
    path_in(p, sizeof p, "stills.txt");
    db_stills st;
    db_error err;
    assert_int_equal(db_stills_read(p, &st, &err), DB_OK);
    harness_args a = {0};
    harness_split(&a, MODEL " " GEOMETRY_START);
    harness_push(&a, "-hkl");
    harness_push(&a, hkl_path);
    db_ensemble_options o;
    db_ensemble_default_options(&o);
    o.spots = 8;
    o.spot_size = 9;
    o.obs_float64 = 1;
    o.refine_shared = "distance,xbeam";
    db_ensemble_result r;
    int rc = db_ensemble_refine(a.argc, (const char *const *)a.argv, &st, "misset_x,misset_y,misset_z", 1, &o, &r,
                                &err);
    test_context("rc %d: %s", rc, rc ? err.message : "");
    assert_int_equal(rc, DB_OK);
    test_context(NULL);
    harness_args_free(&a);
    db_stills_free(&st);
    assert_int_equal(r.nstills, NSTILLS);
    assert_int_equal(r.nparams, NMISSET);
    assert_int_equal(r.nshared, NSHARED);
    assert_int_equal(r.fluence_fixed_still, -1);
    assert_true(r.stop_reason == DB_STOP_STEP || r.stop_reason == DB_STOP_COST || r.stop_reason == DB_STOP_EXACT);
    assert_true(r.nF_refined >= 5);
    /* it found the truth (the sigmas are the Fisher matrix's at the optimum): to 1e-6 relative, 1e-4 mm of the
     * distance and 6.5e-6 mm of xbeam, some 3e-3 of their sigmas (0.044 and 0.0023 mm; test_ensemble.c checks the
     * values themselves more tightly). Stationarity, which the comparison needs, is checked below (mu = obs, and the
     * second-order bound) */
    assert_close(r.shared_value[0], 100.3, 1e-6, 0);
    assert_close(r.shared_value[1], 6.5, 1e-6, 0);

    /* ---- the layout of the dense parameter vector: per still its missets and its planes; the refined F; the
     * shared parameters ---- */
    int ngroups[NSTILLS], *group_of_box[NSTILLS], off_still[NSTILLS], off_bg[NSTILLS];
    int n = 0;
    long npix[NSTILLS];
    long *pix[NSTILLS];
    int *pix_box[NSTILLS]; /* the first box holding each pixel */
    for (int s = 0; s < NSTILLS; s++) {
        const db_ensemble_still_result *sr = &r.stills[s];
        assert_true(sr->nboxes >= 1);
        /* the fitted pixels: the boxes' union, each pixel once, in row-major order, with the first box holding it */
        pix[s] = (long *)malloc(sizeof(long) * DET * DET);
        pix_box[s] = (int *)malloc(sizeof(int) * DET * DET);
        group_of_box[s] = (int *)malloc(sizeof(int) * (size_t)sr->nboxes);
        assert_non_null(pix[s]);
        assert_non_null(pix_box[s]);
        assert_non_null(group_of_box[s]);
        npix[s] = 0;
        for (int y = 0; y < DET; y++)
            for (int x = 0; x < DET; x++) {
                int e = 0;
                while (e < sr->nboxes && !(x >= sr->boxes[4 * e] && x <= sr->boxes[4 * e + 1] &&
                                           y >= sr->boxes[4 * e + 2] && y <= sr->boxes[4 * e + 3]))
                    e++;
                if (e == sr->nboxes) continue;
                pix[s][npix[s]] = (long)y * DET + x;
                pix_box[s][npix[s]++] = e;
            }
        test_context("still %d: %ld pixels in its boxes, the result fitted %ld", s, npix[s], sr->pixels);
        assert_int_equal(npix[s], sr->pixels);
        /* a plane per box with pixels of its own (ensemble.h: the others are NaN) */
        for (int e = 0; e < sr->nboxes; e++) group_of_box[s][e] = -1;
        for (long i = 0; i < npix[s]; i++) group_of_box[s][pix_box[s][i]] = 0;
        ngroups[s] = 0;
        for (int e = 0; e < sr->nboxes; e++) {
            test_context("still %d box %d: background %g", s, e, sr->background[3 * e]);
            if (group_of_box[s][e] < 0) {
                assert_true(isnan(sr->background[3 * e]));
                continue;
            }
            assert_true(isfinite(sr->background[3 * e]));
            group_of_box[s][e] = ngroups[s]++;
        }
        off_still[s] = n;
        off_bg[s] = n + NMISSET;
        n += NMISSET + 3 * ngroups[s];
    }
    test_context(NULL);
    long *F_col = (long *)malloc(sizeof(long) * (size_t)(r.nF + 1));
    assert_non_null(F_col);
    const int off_F = n;
    for (long j = 0; j < r.nF; j++) F_col[j] = r.F_refined[j] ? n++ : -1;
    assert_int_equal(n - off_F, r.nF_refined);
    const int off_shared = n;
    n += NSHARED;

    double *H = (double *)calloc((size_t)n * (size_t)n, sizeof(double));
    double *gF = (double *)calloc((size_t)n, sizeof(double)); /* the cost's gradient in F, at the optimum */
    double *row = (double *)malloc(sizeof(double) * (size_t)n);
    double *absF = (double *)malloc(sizeof(double) * (size_t)(r.nF + 1));
    assert_non_null(H);
    assert_non_null(gF);
    assert_non_null(row);
    assert_non_null(absF);
    for (long j = 0; j < r.nF; j++) absF[j] = fabs(r.F[j]); /* the pixels see F^2 */
    double fd_worst = 0.0, mu_worst = 0.0;

    for (int s = 0; s < NSTILLS; s++) {
        const db_ensemble_still_result *sr = &r.stills[s];
        /* ---- the still's own simulation at the fit: its line's flags after the shared ones, then the fitted
         * values ---- */
        char line[512];
        snprintf(line, sizeof line, MODEL " " GEOMETRY_START " -misset %.17g %.17g %.17g", START[s][0], START[s][1],
                 START[s][2]);
        db_sim *sim = make_sim(line);
        assert_non_null(sim);
        const int names[NMISSET + NSHARED] = {db_param_from_name("misset_x"), db_param_from_name("misset_y"),
                                              db_param_from_name("misset_z"), db_param_from_name("distance"),
                                              db_param_from_name("xbeam")};
        for (int k = 0; k < NMISSET; k++) assert_int_equal(r.params[k], names[k]);
        for (int k = 0; k < NSHARED; k++) assert_int_equal(r.shared[k], names[NMISSET + k]);
        double values[NMISSET + NSHARED];
        for (int k = 0; k < NMISSET; k++) values[k] = sr->values[k];
        for (int k = 0; k < NSHARED; k++) values[NMISSET + k] = r.shared_value[k];
        assert_int_equal(db_sim_set_params(sim, names, values, NMISSET + NSHARED, &err), DB_OK);
        assert_int_equal(db_sim_structure_factor_count(sim), r.nF);
        assert_int_equal(db_sim_set_structure_factors(sim, absF, r.nF, &err), DB_OK);
        assert_int_equal(db_sim_select_boxes(sim, sr->boxes, sr->nboxes, &err), DB_OK);
        /* the simulator's selection is the pixel list rebuilt above, in the same order */
        const long m = npix[s];
        assert_int_equal(db_sim_selected_count(sim), m);
        long *sel = (long *)malloc(sizeof(long) * (size_t)m);
        assert_non_null(sel);
        assert_int_equal(db_sim_selected_pixel_list(sim, sel, m, &err), m);
        for (long i = 0; i < m; i++) assert_int_equal(sel[i], pix[s][i]);
        free(sel);
        double *model = (double *)malloc(sizeof(double) * (size_t)m);
        double *mu = (double *)malloc(sizeof(double) * (size_t)m);
        double *jac = (double *)malloc(sizeof(double) * (size_t)m * (NMISSET + NSHARED));
        assert_non_null(model);
        assert_non_null(mu);
        assert_non_null(jac);
        db_csr fjac = {0};
        assert_int_equal(db_sim_run_selected_F(sim, names, NMISSET + NSHARED, model, jac, &fjac, &err), DB_OK);
        assert_int_equal(fjac.rows, m);

        /* mu = model + the plane of the first box holding the pixel, x and y from that box's centre */
        for (long i = 0; i < m; i++) {
            const int e = pix_box[s][i];
            const int *b = sr->boxes + 4 * e;
            const double *abc = sr->background + 3 * e;
            const double x = (double)(pix[s][i] % DET) - 0.5 * (b[0] + b[1]);
            const double y = (double)(pix[s][i] / DET) - 0.5 * (b[2] + b[3]);
            mu[i] = model[i] + abc[0] + abc[1] * x + abc[2] * y;
            const double obs = observed[s][pix[s][i]], d = rel(mu[i], obs);
            if (d > mu_worst) mu_worst = d;
            test_context("still %d pixel %ld: mu %.17g, observed %.17g", s, pix[s][i], mu[i], obs);
            assert_close(mu[i], obs, MU_RTOL, 0);
            assert_true(mu[i] > 0);
        }
        test_context(NULL);

        /* ---- the rows of J, and sum_i J_i^T J_i / mu_i ---- */
        for (long i = 0; i < m; i++) {
            memset(row, 0, sizeof(double) * (size_t)n);
            for (int k = 0; k < NMISSET; k++) row[off_still[s] + k] = jac[(size_t)k * m + i];
            for (int k = 0; k < NSHARED; k++) row[off_shared + k] = jac[(size_t)(NMISSET + k) * m + i];
            const int e = pix_box[s][i];
            const int *b = sr->boxes + 4 * e;
            const int g = off_bg[s] + 3 * group_of_box[s][e];
            row[g] = 1.0;
            row[g + 1] = (double)(pix[s][i] % DET) - 0.5 * (b[0] + b[1]);
            row[g + 2] = (double)(pix[s][i] / DET) - 0.5 * (b[2] + b[3]);
            for (long q = fjac.row_ptr[i]; q < fjac.row_ptr[i + 1]; q++) {
                if (fjac.val[q] == 0.0) continue;
                const long c = F_col[fjac.col[q]];
                test_context("still %d pixel %ld touches F %ld, which the result did not refine", s, pix[s][i],
                             fjac.col[q]);
                assert_true(c >= 0);
                row[c] = fjac.val[q];
                gF[c] += (1.0 - observed[s][pix[s][i]] / mu[i]) * fjac.val[q];
            }
            const double w = 1.0 / mu[i];
            for (int u = 0; u < n; u++) {
                if (row[u] == 0.0) continue;
                const double wu = w * row[u];
                for (int v = 0; v <= u; v++) H[(size_t)u * n + v] += wu * row[v];
            }
        }
        test_context(NULL);

        /* ---- the shared columns against central differences of renders ---- */
        double *plus = (double *)malloc(sizeof(double) * (size_t)m), *minus = (double *)malloc(sizeof(double) * (size_t)m);
        assert_non_null(plus);
        assert_non_null(minus);
        for (int k = 0; k < NSHARED; k++) {
            const int name = names[NMISSET + k];
            const double v0 = r.shared_value[k];
            double v = v0 + FD_STEP;
            assert_int_equal(db_sim_set_params(sim, &name, &v, 1, &err), DB_OK);
            assert_int_equal(db_sim_run_selected(sim, NULL, 0, plus, NULL, &err), DB_OK);
            v = v0 - FD_STEP;
            assert_int_equal(db_sim_set_params(sim, &name, &v, 1, &err), DB_OK);
            assert_int_equal(db_sim_run_selected(sim, NULL, 0, minus, NULL, &err), DB_OK);
            assert_int_equal(db_sim_set_params(sim, &name, &v0, 1, &err), DB_OK);
            double num = 0.0, den = 0.0;
            for (long i = 0; i < m; i++) {
                const double an = jac[(size_t)(NMISSET + k) * m + i], fd = (plus[i] - minus[i]) / (2.0 * FD_STEP);
                num += (fd - an) * (fd - an) / mu[i];
                den += an * an / mu[i];
            }
            const double e = sqrt(num / den);
            if (e > fd_worst) fd_worst = e;
            test_context("still %d: d mu / d %s, central differences (step %g) against the API: weighted relative "
                         "error %.3g", s, db_param_name(name), FD_STEP, e);
            assert_true(den > 0);
            assert_true(e <= FD_RTOL);
        }
        test_context(NULL);
        free(plus);
        free(minus);
        db_csr_free(&fjac);
        free(model);
        free(mu);
        free(jac);
        db_sim_destroy(sim);
    }
    for (int u = 0; u < n; u++) /* the upper triangle from the lower */
        for (int v = u + 1; v < n; v++) H[(size_t)u * n + v] = H[(size_t)v * n + u];

    /* ---- sqrt(diag(I^-1)) ---- */
    double *var = (double *)malloc(sizeof(double) * (size_t)n);
    assert_non_null(var);
    assert_int_equal(inverse_diagonal(H, n, var), 0);
    /* the scaled matrix A's condition number: lambda_max <= trace = n, 1 / lambda_min <= trace(A^-1) = sum of the
     * variance inflation factors var_i H_ii */
    double vif_sum = 0.0;
    for (int i = 0; i < n; i++) vif_sum += var[i] * H[(size_t)i * n + i];
    const double cond = n * vif_sum;
    test_context("the scaled Fisher matrix's condition number is up to %.3g", cond);
    assert_true(cond <= COND_MAX);
    /* the ensemble's second-order F term (ensemble_lm.h F_squared): t_c = max(0, g_c / F_c) on F_c's diagonal, with
     * g_c = sum_i (1 - obs_i / mu_i) dmu_i / dF_c the cost's gradient at the optimum (0 at an exact one). Adding
     * t_c = eps_c H_cc to one diagonal entry lowers any (H^-1)_ii by the relative amount
     * eps_c VIF_c rho_ic^2 / (1 + eps_c VIF_c) <= eps_c VIF_c (Sherman-Morrison; rho_ic the correlation of i and c,
     * VIF_c = H_cc (H^-1)_cc), and each addition only shrinks H^-1 and so the later VIFs: every variance, and so
     * every sigma, is lowered by at most bound = sum_c eps_c VIF_c = sum_c t_c (H^-1)_cc (relative) */
    double bound = 0.0;
    for (long j = 0; j < r.nF; j++) {
        const long c = F_col[j];
        if (c < 0) continue;
        const double t = gF[c] / absF[j];
        if (t > 0) bound += t * var[c]; /* eps_c VIF_c = (t / H_cc) (var_c H_cc) */
    }
    const double SIGMA_RTOL = ROUND_RTOL + bound; /* the bound is asserted small at the end, after the sigmas, so
                                                    * that a wrong sigma is reported as one */

    /* ---- against the result ---- */
    double worst_shared = 0.0, worst_still = 0.0, worst_bg = 0.0, worst_F = 0.0;
    for (int k = 0; k < NSHARED; k++) {
        const double sig = sqrt(var[off_shared + k]), d = rel(r.shared_sigma[k], sig);
        if (d > worst_shared) worst_shared = d;
        test_context("shared %s: the ensemble's sigma %.17g, the dense Fisher matrix's %.17g (rel %.3g)",
                     db_param_name(r.shared[k]), r.shared_sigma[k], sig, d);
        assert_close(r.shared_sigma[k], sig, SIGMA_RTOL, 0);
    }
    for (int s = 0; s < NSTILLS; s++) {
        const db_ensemble_still_result *sr = &r.stills[s];
        for (int k = 0; k < NMISSET; k++) {
            const double sig = sqrt(var[off_still[s] + k]), d = rel(sr->sigma[k], sig);
            if (d > worst_still) worst_still = d;
            test_context("still %d %s: sigma %.17g, dense %.17g (rel %.3g)", s, db_param_name(r.params[k]),
                         sr->sigma[k], sig, d);
            assert_close(sr->sigma[k], sig, SIGMA_RTOL, 0);
        }
        for (int e = 0; e < sr->nboxes; e++) {
            if (group_of_box[s][e] < 0) continue;
            for (int k = 0; k < 3; k++) {
                const double sig = sqrt(var[off_bg[s] + 3 * group_of_box[s][e] + k]);
                const double d = rel(sr->background_sigma[3 * e + k], sig);
                if (d > worst_bg) worst_bg = d;
                test_context("still %d box %d plane term %d: sigma %.17g, dense %.17g (rel %.3g)", s, e, k,
                             sr->background_sigma[3 * e + k], sig, d);
                assert_close(sr->background_sigma[3 * e + k], sig, SIGMA_RTOL, 0);
            }
        }
    }
    for (long j = 0; j < r.nF; j++) {
        if (F_col[j] < 0) {
            assert_true(isnan(r.sigma_F[j]));
            continue;
        }
        const double sig = sqrt(var[F_col[j]]), d = rel(r.sigma_F[j], sig);
        if (d > worst_F) worst_F = d;
        test_context("F %d %d %d: sigma %.17g, dense %.17g (rel %.3g)", r.hkl[3 * j], r.hkl[3 * j + 1],
                     r.hkl[3 * j + 2], r.sigma_F[j], sig, d);
        assert_close(r.sigma_F[j], sig, SIGMA_RTOL, 0);
    }
    test_context("the second-order F term may lower a sigma by %.3g (relative)", bound);
    assert_true(bound <= SECOND_ORDER_MAX);
    test_context(NULL);
    print_message("%d parameters (%ld refined F), %ld + %ld pixels; scaled Fisher matrix's condition <= %.3g; "
                  "second-order bound %.3g, tolerance %.3g; worst relative differences: shared sigmas %.3g "
                  "(distance %.6g mm, xbeam %.6g mm), misset sigmas %.3g, background %.3g, F %.3g; mu vs observed "
                  "%.3g; finite differences %.3g\n",
                  n, r.nF_refined, npix[0], npix[1], cond, bound, SIGMA_RTOL, worst_shared, r.shared_sigma[0],
                  r.shared_sigma[1], worst_still, worst_bg, worst_F, mu_worst, fd_worst);

    free(var);
    free(H);
    free(gF);
    free(row);
    free(absF);
    free(F_col);
    for (int s = 0; s < NSTILLS; s++) {
        free(pix[s]);
        free(pix_box[s]);
        free(group_of_box[s]);
    }
    db_ensemble_result_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shared_sigmas_match_dense_fisher),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
