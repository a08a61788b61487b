/* test_structure_factors.c: the structure factors as values and their sparse Jacobian (issue 19; README
 * "Structure factors"):
 *  - the list, get and set (all, by hkl), refusals (an hkl outside the list, F < 0, non-finite, a wrong count)
 *    that change nothing, and a set that equals, bit for bit, a fresh simulation from an hkl file with those values;
 *  - on every golden configuration (its own -hkl, or b_triclinic's P1.hkl added where it has none), over a box
 *    around its brightest pixel:
 *      values and the eleven mission derivatives equal bit for bit with and without the F-Jacobian;
 *      every F column touched (up to 24 of them) matches central differences of F (4-point stencil, rtol 1e-6);
 *      the homogeneity identity sum_j F_j dI/dF_j = 2 (I - I0), I0 the pixel with every listed F set to 0,
 *      on every pixel (and = 2 I where I0 = 0: every sample hit a listed hkl and there is no water);
 *  - the refusals: no table, a GPU device. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "dualbragg.h"
#include "cli_harness.h"
#include "golden_case.h"
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MISSION "a,b,c,alpha,beta,gamma,misset_x,misset_y,misset_z,phi0,osc"
#define BOX 6 /* half-width of the checked box: 13 x 13 pixels */
#define MAX_COLUMNS 24

static int has_flag(const harness_args *a, const char *flag)
{
    for (int i = 0; i < a->argc; i++)
        if (strcmp(a->argv[i], flag) == 0) return 1;
    return 0;
}

/* The case's command line, with b_triclinic's P1.hkl where it has no -hkl. */
static db_sim *case_sim(const char *name)
{
    harness_args a;
    case_args(name, &a);
    if (!has_flag(&a, "-hkl")) {
        char p1[4096];
        snprintf(p1, sizeof p1, "%s/b_triclinic/P1.hkl", DB_GOLDEN_DIR);
        harness_push(&a, "-hkl");
        harness_push(&a, p1);
    }
    db_sim *sim = sim_from(&a);
    harness_args_free(&a);
    return sim;
}

/* A box of (2 BOX + 1)^2 pixels around the brightest pixel of the case's own ROI. */
static void select_bright_box(db_sim *sim)
{
    int F, S;
    db_sim_size(sim, &F, &S);
    size_t n = (size_t)F * S;
    float *img = malloc(n * sizeof(float));
    db_error err;
    if (db_sim_run(sim, img, NULL, &err)) fail_msg("run: %s", err.message);
    size_t best = 0;
    for (size_t i = 1; i < n; i++)
        if (img[i] > img[best]) best = i;
    free(img);
    int f = (int)(best % (size_t)F), s = (int)(best / (size_t)F);
    int box[4] = {f - BOX < 0 ? 0 : f - BOX, f + BOX >= F ? F - 1 : f + BOX, s - BOX < 0 ? 0 : s - BOX,
                  s + BOX >= S ? S - 1 : s + BOX};
    if (db_sim_select_boxes(sim, box, 1, &err)) fail_msg("boxes: %s", err.message);
}

static double *values_at(db_sim *sim, long m)
{
    double *v = malloc((size_t)m * sizeof(double));
    db_error err;
    if (db_sim_run_selected(sim, NULL, 0, v, NULL, &err)) fail_msg("run_selected: %s", err.message);
    return v;
}

static void set_one(db_sim *sim, long j, double F)
{
    int hkl[3];
    db_error err;
    double old;
    assert_int_equal(db_sim_get_structure_factors(sim, NULL, NULL, 0, &err), 0);
    long n = db_sim_structure_factor_count(sim);
    int *all = malloc((size_t)n * 3 * sizeof(int));
    assert_int_equal(db_sim_get_structure_factors(sim, all, NULL, n, &err), n);
    memcpy(hkl, all + 3 * j, sizeof hkl);
    free(all);
    (void)old;
    if (db_sim_set_structure_factors_hkl(sim, hkl, &F, 1, &err)) fail_msg("set F: %s", err.message);
}

static void check_case(const char *name)
{
    test_context("case %s", name);
    db_sim *sim = case_sim(name);
    select_bright_box(sim);
    long m = db_sim_selected_count(sim), n = db_sim_structure_factor_count(sim);
    assert_true(m > 0 && n > 0);
    db_error err;
    int params[DB_MAX_CHUNK];
    int np = db_param_parse_list(MISSION, params, &err);
    assert_int_equal(np, 11);

    /* values and the dense Jacobian: the same bits with and without the F-Jacobian */
    double *v0 = malloc((size_t)m * sizeof(double)), *j0 = malloc((size_t)m * np * sizeof(double));
    double *v1 = malloc((size_t)m * sizeof(double)), *j1 = malloc((size_t)m * np * sizeof(double));
    if (db_sim_run_selected(sim, params, np, v0, j0, &err)) fail_msg("run_selected: %s", err.message);
    db_csr J;
    if (db_sim_run_selected_F(sim, params, np, v1, j1, &J, &err)) fail_msg("run_selected_F: %s", err.message);
    assert_memory_equal(v0, v1, (size_t)m * sizeof(double));
    assert_memory_equal(j0, j1, (size_t)m * np * sizeof(double));
    assert_int_equal(J.rows, m);
    assert_int_equal(J.cols, n);
    assert_true(J.nnz > 0);
    for (long i = 0; i < m; i++)
        for (long e = J.row_ptr[i] + 1; e < J.row_ptr[i + 1]; e++) assert_true(J.col[e - 1] < J.col[e]);
    /* the primal pass gives the same F-Jacobian as the derivative pass */
    db_csr J0;
    if (db_sim_run_selected_F(sim, NULL, 0, v1, NULL, &J0, &err)) fail_msg("run_selected_F: %s", err.message);
    assert_memory_equal(v0, v1, (size_t)m * sizeof(double));
    assert_int_equal(J0.nnz, J.nnz);
    assert_memory_equal(J0.row_ptr, J.row_ptr, (size_t)(m + 1) * sizeof(long));
    assert_memory_equal(J0.col, J.col, (size_t)J.nnz * sizeof(long));
    for (long e = 0; e < J.nnz; e++) test_util_assert_close(J0.val[e], J.val[e], 1e-13, 0.0, "J0", "J", __FILE__, __LINE__);
    db_csr_free(&J0);

    double *F = malloc((size_t)n * sizeof(double));
    assert_int_equal(db_sim_get_structure_factors(sim, NULL, F, n, &err), n);

    /* homogeneity: every listed F to 0 leaves I0, the part no listed F reaches */
    double *zero = calloc((size_t)n, sizeof(double));
    if (db_sim_set_structure_factors(sim, zero, n, &err)) fail_msg("set: %s", err.message);
    double *I0 = values_at(sim, m);
    if (db_sim_set_structure_factors(sim, F, n, &err)) fail_msg("set: %s", err.message);
    double *back = values_at(sim, m);
    assert_memory_equal(back, v0, (size_t)m * sizeof(double)); /* F put back: the same bits */
    long pure = 0;
    for (long i = 0; i < m; i++) {
        double sum = 0.0, mag = 0.0;
        for (long e = J.row_ptr[i]; e < J.row_ptr[i + 1]; e++) {
            sum += F[J.col[e]] * J.val[e];
            mag += fabs(F[J.col[e]] * J.val[e]);
        }
        /* rounding: each entry and the value are sums of up to a few thousand terms of one sign, each a handful of
         * roundings; 1e-11 of the magnitude is far above that and far below any missing or doubled term */
        double tol = 1e-11 * (mag + fabs(v0[i]) + fabs(I0[i]));
        test_context("case %s pixel %ld: sum F dI/dF = %.17g, 2 (I - I0) = %.17g", name, i, sum, 2.0 * (v0[i] - I0[i]));
        test_util_assert_close(sum, 2.0 * (v0[i] - I0[i]), 0.0, tol, "sum F dI/dF", "2 (I - I0)", __FILE__, __LINE__);
        if (I0[i] == 0.0) {
            test_util_assert_close(sum, 2.0 * v0[i], 0.0, tol, "sum F dI/dF", "2 I", __FILE__, __LINE__);
            pure++;
        }
    }
    (void)pure;

    /* central differences of F, 4-point stencil (exact for the quadratic the pixel is in F, up to rounding) */
    long ncols = 0;
    long *cols = malloc((size_t)(J.nnz > 0 ? J.nnz : 1) * sizeof(long));
    for (long e = 0; e < J.nnz; e++) {
        long c = J.col[e], k;
        for (k = 0; k < ncols && cols[k] != c; k++) {
        }
        if (k == ncols) cols[ncols++] = c;
    }
    long stride = ncols > MAX_COLUMNS ? ncols / MAX_COLUMNS : 1;
    int checked = 0;
    for (long k = 0; k < ncols; k += stride) {
        long c = cols[k];
        double h = cbrt(2.2e-16) * (fabs(F[c]) > 1.0 ? fabs(F[c]) : 1.0);
        double Fc = F[c] < 2 * h ? 2 * h : F[c]; /* F >= 0: evaluate at a point the stencil stays non-negative */
        double *vp2, *vp1, *vm1, *vm2;
        set_one(sim, c, Fc + 2 * h);
        vp2 = values_at(sim, m);
        set_one(sim, c, Fc + h);
        vp1 = values_at(sim, m);
        set_one(sim, c, Fc - h);
        vm1 = values_at(sim, m);
        set_one(sim, c, Fc - 2 * h);
        vm2 = values_at(sim, m);
        set_one(sim, c, Fc);
        db_csr Jc;
        double *vc = malloc((size_t)m * sizeof(double));
        if (db_sim_run_selected_F(sim, NULL, 0, vc, NULL, &Jc, &err)) fail_msg("run_selected_F: %s", err.message);
        double maxfd = 0.0;
        for (long i = 0; i < m; i++) {
            double fd = (8.0 * (vp1[i] - vm1[i]) - (vp2[i] - vm2[i])) / (12.0 * h);
            if (fabs(fd) > maxfd) maxfd = fabs(fd);
        }
        for (long i = 0; i < m; i++) {
            double fd = (8.0 * (vp1[i] - vm1[i]) - (vp2[i] - vm2[i])) / (12.0 * h), ad = 0.0;
            for (long e = Jc.row_ptr[i]; e < Jc.row_ptr[i + 1]; e++)
                if (Jc.col[e] == c) ad = Jc.val[e];
            /* rtol 1e-6 (the gradcheck's); atol: the difference quotient's rounding, a few ulps of the pixel over h */
            double atol = 64.0 * 2.2e-16 * fabs(vc[i]) / h + 1e-8 * maxfd;
            test_context("case %s column %ld pixel %ld: ad %.17g fd %.17g", name, c, i, ad, fd);
            test_util_assert_close(ad, fd, 1e-6, atol, "dI/dF", "central difference", __FILE__, __LINE__);
        }
        set_one(sim, c, F[c]);
        db_csr_free(&Jc);
        free(vc);
        free(vp2);
        free(vp1);
        free(vm1);
        free(vm2);
        checked++;
    }
    assert_true(checked > 0);
    print_message("  %-22s %4ld pixels, %6ld nonzeros (%.1f per pixel), %ld columns, %d checked by differences, %ld "
                  "pixels all-listed\n",
                  name, m, J.nnz, (double)J.nnz / (double)m, ncols, checked, pure);
    free(cols);
    db_csr_free(&J);
    free(F);
    free(zero);
    free(I0);
    free(back);
    free(v0);
    free(j0);
    free(v1);
    free(j1);
    db_sim_destroy(sim);
}

static const char *const CASES[] = {"a_cubic",          "a2_cubic_autoos", "b_triclinic",        "b2_interp",
                                    "c_phi0_carryover", "d_phi005_nocarry", "e_mosaic",          "f2_hdiv_only",
                                    "f_div_disp",       "g2_oversample_flags", "g_os_thick_polar", "h2_dials_rot_twotheta",
                                    "h3_mosflm_rot_twotheta", "h_xds_rot_twotheta", "i2_gauss", "i3_tophat",
                                    "i_round",          "j_roi",           "k_matfile",          "l_water",
                                    "m2_pointpix_nopolar", "m_curved_det", "n_sourcefile",       "o_flux_dmin"};

static void test_every_golden_configuration(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) check_case(CASES[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_golden_configuration),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
