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
#include "run_clients.h" /* db_sim_captured: where interpolation switched off */
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

/* The case's command line, with b_triclinic's P1.hkl where it has no -hkl, and a flag changed (or none). */
static db_sim *case_sim_with(const char *name, const char *flag, const char *value)
{
    harness_args a;
    case_args(name, &a);
    if (flag) harness_set(&a, flag, value);
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

static db_sim *case_sim(const char *name) { return case_sim_with(name, NULL, NULL); }

/* A box of (2 BOX + 1)^2 pixels around the brightest pixel of the case's own ROI, or around the pixel where
 * interpolation switched off (at_trip). */
static void select_box(db_sim *sim, int at_trip)
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
    if (at_trip) {
        db_run_summary sum;
        assert_int_equal(db_sim_summary(sim, &sum), DB_OK);
        assert_true(sum.interpolation_switched_off);
        best = (size_t)db_sim_captured(sim)->interp_trip;
    }
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

static void check_case(const char *name, db_sim *sim, int at_trip)
{
    test_context("case %s", name);
    select_box(sim, at_trip);
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
    db_csr J = {0};
    if (db_sim_run_selected_F(sim, params, np, v1, j1, &J, &err)) fail_msg("run_selected_F: %s", err.message);
    assert_memory_equal(v0, v1, (size_t)m * sizeof(double));
    assert_memory_equal(j0, j1, (size_t)m * np * sizeof(double));
    assert_int_equal(J.rows, m);
    assert_int_equal(J.cols, n);
    assert_true(J.nnz > 0);
    for (long i = 0; i < m; i++)
        for (long e = J.row_ptr[i] + 1; e < J.row_ptr[i + 1]; e++) assert_true(J.col[e - 1] < J.col[e]);
    /* the primal pass gives the same F-Jacobian as the derivative pass */
    db_csr J0 = {0};
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
        db_csr Jc = {0};
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

/* ---- the values: list, get, set, refusals ---- */

static void remove_flag(harness_args *a, const char *flag, int nvalues)
{
    for (int i = 0; i < a->argc; i++)
        if (strcmp(a->argv[i], flag) == 0) {
            for (int k = 0; k <= nvalues; k++) free(a->argv[i + k]);
            memmove(&a->argv[i], &a->argv[i + 1 + nvalues], (size_t)(a->argc - i - 1 - nvalues) * sizeof(char *));
            a->argc -= 1 + nvalues;
            return;
        }
}

static char tmpdir[64];

static void make_tmpdir(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/db_sf_XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
}

static void remove_tmpdir(const char *file)
{
    char p[256];
    snprintf(p, sizeof p, "%s/%s", tmpdir, file);
    unlink(p);
    rmdir(tmpdir);
}

static void test_list_get_set(void **state)
{
    (void)state;
    db_sim *sim = case_sim("b_triclinic");
    db_error err;
    long n = db_sim_structure_factor_count(sim);
    assert_int_equal(n, 15625); /* P1.hkl: every h k l of -12..12, one line each */
    int *hkl = malloc((size_t)n * 3 * sizeof(int));
    double *F = malloc((size_t)n * sizeof(double)), *G = malloc((size_t)n * sizeof(double));
    assert_int_equal(db_sim_get_structure_factors(sim, hkl, F, n, &err), n);
    /* the file's first line, and the order: the file's */
    FILE *f = fopen(DB_GOLDEN_DIR "/b_triclinic/P1.hkl", "r");
    assert_non_null(f);
    for (long j = 0; j < 3; j++) {
        int h, k, l;
        double v;
        assert_int_equal(fscanf(f, "%d %d %d %lf", &h, &k, &l, &v), 4);
        assert_int_equal(hkl[3 * j], h);
        assert_int_equal(hkl[3 * j + 1], k);
        assert_int_equal(hkl[3 * j + 2], l);
        assert_true(F[j] == v);
    }
    fclose(f);
    for (long j = 0; j < n; j += 997) assert_int_equal(db_sim_structure_factor_index(sim, hkl[3 * j], hkl[3 * j + 1], hkl[3 * j + 2]), j);
    assert_int_equal(db_sim_structure_factor_index(sim, 13, 0, 0), -1);
    assert_int_equal(db_sim_get_structure_factors(sim, NULL, G, 5, &err), 5); /* capacity bounds it */

    /* refusals change nothing */
    for (long j = 0; j < n; j++) G[j] = F[j] * 1.5;
    G[7] = -1.0;
    assert_int_equal(db_sim_set_structure_factors(sim, G, n, &err), DB_ERR_ARGUMENT);
    assert_non_null(strstr(err.message, ">= 0"));
    G[7] = NAN;
    assert_int_equal(db_sim_set_structure_factors(sim, G, n, &err), DB_ERR_ARGUMENT);
    assert_int_equal(db_sim_set_structure_factors(sim, G, n - 1, &err), DB_ERR_ARGUMENT);
    int out[6] = {1, 2, 3, 13, 0, 0};
    double two[2] = {5.0, 6.0};
    assert_int_equal(db_sim_set_structure_factors_hkl(sim, out, two, 2, &err), DB_ERR_ARGUMENT);
    assert_non_null(strstr(err.message, "13 0 0"));
    assert_non_null(strstr(err.message, "not in the table"));
    two[1] = INFINITY;
    out[3] = 1;
    assert_int_equal(db_sim_set_structure_factors_hkl(sim, out, two, 2, &err), DB_ERR_ARGUMENT);
    double *now = malloc((size_t)n * sizeof(double));
    assert_int_equal(db_sim_get_structure_factors(sim, NULL, now, n, &err), n);
    assert_memory_equal(now, F, (size_t)n * sizeof(double));

    /* set: the next run equals a fresh simulation from an hkl file holding those values */
    G[7] = 0.0;
    assert_int_equal(db_sim_set_structure_factors(sim, G, n, &err), DB_OK);
    double F123 = 42.25;
    int h123[3] = {1, 2, 3};
    assert_int_equal(db_sim_set_structure_factors_hkl(sim, h123, &F123, 1, &err), DB_OK);
    G[db_sim_structure_factor_index(sim, 1, 2, 3)] = F123;
    assert_int_equal(db_sim_get_structure_factors(sim, NULL, now, n, &err), n);
    assert_memory_equal(now, G, (size_t)n * sizeof(double));
    make_tmpdir();
    char path[256];
    snprintf(path, sizeof path, "%s/moved.hkl", tmpdir);
    f = fopen(path, "w");
    assert_non_null(f);
    for (long j = n - 1; j >= 0; j--) /* another order: the values count, not the order */
        fprintf(f, "%d %d %d %.17g\n", hkl[3 * j], hkl[3 * j + 1], hkl[3 * j + 2], G[j]);
    fclose(f);
    harness_args a;
    case_args("b_triclinic", &a);
    harness_set(&a, "-hkl", path);
    db_sim *fresh = sim_from(&a);
    harness_args_free(&a);
    int W, H;
    db_sim_size(sim, &W, &H);
    size_t npix = (size_t)W * H;
    float *i1 = malloc(npix * sizeof(float)), *i2 = malloc(npix * sizeof(float));
    double *d1 = malloc(npix * sizeof(double)), *d2 = malloc(npix * sizeof(double));
    assert_int_equal(db_sim_run(sim, i1, d1, &err), DB_OK);
    assert_int_equal(db_sim_run(fresh, i2, d2, &err), DB_OK);
    assert_memory_equal(d1, d2, npix * sizeof(double));
    assert_memory_equal(i1, i2, npix * sizeof(float));
    db_sim_destroy(fresh);
    remove_tmpdir("moved.hkl");
    free(i1);
    free(i2);
    free(d1);
    free(d2);
    free(now);
    free(hkl);
    free(F);
    free(G);
    db_sim_destroy(sim);
}

/* An Fdump cache lists every entry of its ranges, h, k, then l fastest; its F-Jacobian is the hkl file's, column
 * by column through the hkl. */
static void test_fdump_list(void **state)
{
    (void)state;
    db_sim *sim = case_sim("b_triclinic");
    db_error err;
    make_tmpdir();
    char path[256];
    snprintf(path, sizeof path, "%s/Fdump.bin", tmpdir);
    assert_int_equal(db_sim_write_fdump(sim, path, &err), DB_OK);
    harness_args a;
    case_args("b_triclinic", &a);
    remove_flag(&a, "-hkl", 1);
    db_config *cfg = db_config_create();
    assert_int_equal(db_config_parse(cfg, a.argc, (const char *const *)a.argv, &err), DB_OK);
    harness_args_free(&a);
    db_sim *dump = NULL;
    if (db_sim_create(&dump, cfg, path, &err)) fail_msg("create: %s", err.message);
    db_config_destroy(cfg);
    remove_tmpdir("Fdump.bin");
    long n = db_sim_structure_factor_count(dump);
    assert_int_equal(n, 25 * 25 * 25);
    int *hkl = malloc((size_t)n * 3 * sizeof(int));
    assert_int_equal(db_sim_get_structure_factors(dump, hkl, NULL, n, &err), n);
    assert_int_equal(hkl[0], -12);
    assert_int_equal(hkl[2], -12);
    assert_int_equal(hkl[5], -11); /* l fastest */
    assert_int_equal(hkl[3 * (n - 1)], 12);
    int box[4] = {100, 130, 100, 130};
    assert_int_equal(db_sim_select_boxes(sim, box, 1, &err), DB_OK);
    assert_int_equal(db_sim_select_boxes(dump, box, 1, &err), DB_OK);
    long m = db_sim_selected_count(sim);
    double *v1 = malloc((size_t)m * sizeof(double)), *v2 = malloc((size_t)m * sizeof(double));
    db_csr A = {0}, B = {0};
    assert_int_equal(db_sim_run_selected_F(sim, NULL, 0, v1, NULL, &A, &err), DB_OK);
    assert_int_equal(db_sim_run_selected_F(dump, NULL, 0, v2, NULL, &B, &err), DB_OK);
    assert_memory_equal(v1, v2, (size_t)m * sizeof(double));
    assert_int_equal(A.nnz, B.nnz);
    assert_true(A.nnz > 0);
    int *hA = malloc((size_t)n * 3 * sizeof(int));
    assert_int_equal(db_sim_get_structure_factors(sim, hA, NULL, n, &err), n);
    for (long i = 0; i < m; i++) {
        assert_int_equal(A.row_ptr[i + 1] - A.row_ptr[i], B.row_ptr[i + 1] - B.row_ptr[i]);
        for (long e = A.row_ptr[i]; e < A.row_ptr[i + 1]; e++) {
            const int *x = hA + 3 * A.col[e];
            long c = db_sim_structure_factor_index(dump, x[0], x[1], x[2]);
            long g;
            for (g = B.row_ptr[i]; g < B.row_ptr[i + 1] && B.col[g] != c; g++) {
            }
            assert_true(g < B.row_ptr[i + 1]);
            assert_true(A.val[e] == B.val[g]);
        }
    }
    db_csr_free(&A);
    db_csr_free(&B);
    free(v1);
    free(v2);
    free(hA);
    free(hkl);
    db_sim_destroy(dump);
    db_sim_destroy(sim);
}

/* No table (-default_F only), a GPU device, missing buffers: refused with a reason. */
static void test_refusals(void **state)
{
    (void)state;
    harness_args a;
    case_args("a_cubic", &a);
    db_sim *sim = sim_from(&a);
    harness_args_free(&a);
    db_error err;
    assert_int_equal(db_sim_structure_factor_count(sim), 0);
    double v[4], F = 1.0;
    int box[4] = {0, 1, 0, 1}, hkl[3] = {0, 0, 1};
    assert_int_equal(db_sim_select_boxes(sim, box, 1, &err), DB_OK);
    db_csr J = {0};
    assert_int_equal(db_sim_run_selected_F(sim, NULL, 0, v, NULL, &J, &err), DB_ERR_ARGUMENT);
    assert_non_null(strstr(err.message, "-default_F alone"));
    assert_int_equal(db_sim_set_structure_factors(sim, &F, 1, &err), DB_ERR_ARGUMENT);
    assert_int_equal(db_sim_set_structure_factors_hkl(sim, hkl, &F, 1, &err), DB_ERR_ARGUMENT);
    assert_int_equal(db_sim_run_selected_F(sim, NULL, 0, v, NULL, NULL, &err), DB_ERR_ARGUMENT);
    assert_int_equal(db_sim_run_selected_F(NULL, NULL, 0, v, NULL, &J, &err), DB_ERR_ARGUMENT);
    assert_int_equal(db_sim_get_structure_factors(NULL, NULL, NULL, 0, &err), -1);
    db_csr_free(NULL);
    db_sim_destroy(sim);

    sim = case_sim("b_triclinic");
    assert_int_equal(db_sim_set_device(sim, "emulate", &err), DB_OK);
    assert_int_equal(db_sim_select_boxes(sim, box, 1, &err), DB_OK);
    assert_int_equal(db_sim_run_selected_F(sim, NULL, 0, v, NULL, &J, &err), DB_ERR_DEVICE);
    assert_non_null(strstr(err.message, "-device cpu"));
    db_sim_destroy(sim);
}

/* A db_csr given back is reused: its arrays grow for a larger selection and serve a smaller one, and the results
 * are those of a fresh one. */
static void test_reuse(void **state)
{
    (void)state;
    db_sim *sim = case_sim("b2_interp");
    db_error err;
    const int boxes[3][4] = {{120, 129, 120, 129}, {100, 160, 100, 160}, {128, 131, 128, 131}};
    db_csr kept = {0};
    for (int b = 0; b < 3; b++) {
        assert_int_equal(db_sim_select_boxes(sim, boxes[b], 1, &err), DB_OK);
        long m = db_sim_selected_count(sim);
        double *v = malloc((size_t)m * sizeof(double));
        db_csr fresh = {0};
        assert_int_equal(db_sim_run_selected_F(sim, NULL, 0, v, NULL, &kept, &err), DB_OK);
        assert_int_equal(db_sim_run_selected_F(sim, NULL, 0, v, NULL, &fresh, &err), DB_OK);
        assert_int_equal(kept.rows, m);
        assert_int_equal(kept.nnz, fresh.nnz);
        assert_true(kept.row_cap >= m && kept.nnz_cap >= kept.nnz);
        assert_memory_equal(kept.row_ptr, fresh.row_ptr, (size_t)(m + 1) * sizeof(long));
        assert_memory_equal(kept.col, fresh.col, (size_t)fresh.nnz * sizeof(long));
        assert_memory_equal(kept.val, fresh.val, (size_t)fresh.nnz * sizeof(double));
        db_csr_free(&fresh);
        free(v);
    }
    db_csr_free(&kept);
    assert_null(kept.row_ptr);
    assert_int_equal(kept.nnz_cap, 0);
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
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) check_case(CASES[i], case_sim(CASES[i]), 0);
}

/* b2_interp nearer the crystal (130 mm): the last pixel of row 0 has a sample beyond the table's -12..12, which
 * switches interpolation off for the rest of the run (the reference's rule; the run layer renders the later pixels
 * again without it). The box around that pixel holds interpolated pixels before it and nearest-hkl ones after. */
static void test_interpolation_switched_off(void **state)
{
    (void)state;
    check_case("b2_interp -distance 130", case_sim_with("b2_interp", "-distance", "130"), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_list_get_set),
        cmocka_unit_test(test_fdump_list),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_reuse),
        cmocka_unit_test(test_every_golden_configuration),
        cmocka_unit_test(test_interpolation_switched_off),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
