/* test_gradcheck.c: derivative images against finite differences on every golden configuration, carryover
 * on and off; chunk-size and thread-count invariance of the derivative images; the SQUARE lattice slopes of
 * ordinary runs against the dh form; the structure-factor check (db_gradcheck_F, -grad_hkl) on every golden
 * configuration with an hkl file, its refusals, and the command line's -grad_hkl.
 *
 * Tolerance: rtol 1e-6 with the 4-point stencil (-precise). Its truncation error is O(h^4 f^(5)), about 1e-12
 * relative at h = cbrt(eps) max(1,|x|); the 2-point stencil's O(h^2 f''') reaches 1e-6..1e-3 on sharp spots
 * at that step (measured: a_cubic distance 2e-5), which is a property of the finite difference, not of the
 * derivatives. atol is gradcheck's default: max(1e-8 max|fd|, 64 ulps of the largest pixel / h). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "gradcheck.h"
#include "cli_harness.h"
#include "golden_case.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

typedef struct gc_case {
    const char *name;
    const char *params; /* required parameters: the mission's eleven plus those the image depends on */
    const char *why;    /* parameters left out, and why */
} gc_case;

#define MISSION "a,b,c,alpha,beta,gamma,misset_x,misset_y,misset_z,phi0,osc"
#define BEAM_MOSFLM MISSION ",distance,xbeam,ybeam,lambda,na,nb,nc,fluence"
/* the detector's orientation: checked on the three configurations that rotate the detector */
#define DETECTOR_ROT ",detector_rotx,detector_roty,detector_rotz,twotheta"

static const gc_case CASES[] = {
    {"a2_cubic_autoos", BEAM_MOSFLM, "no mosaic; ORGX/ORGY unused by MOSFLM's beam pivot"},
    {"a_cubic", BEAM_MOSFLM, "as a2"},
    {"b2_interp", BEAM_MOSFLM, "as a2 (N=2: interpolated F)"},
    {"b_triclinic", BEAM_MOSFLM, "as a2"},
    {"c_phi0_carryover", BEAM_MOSFLM, "as a2"},
    {"d_phi005_nocarry", BEAM_MOSFLM, "as a2"},
    {"e_mosaic", BEAM_MOSFLM ",mosaic", "ORGX/ORGY unused"},
    {"f2_hdiv_only", BEAM_MOSFLM, "as a2"},
    {"f_div_disp", BEAM_MOSFLM, "as a2"},
    {"g2_oversample_flags", BEAM_MOSFLM, "as a2"},
    {"g_os_thick_polar", BEAM_MOSFLM, "as a2"},
    {"h2_dials_rot_twotheta", MISSION ",distance,orgx,orgy,lambda,na,nb,nc,fluence" DETECTOR_ROT,
     "DIALS pivots about the sample: -Xbeam/-Ybeam do not move the detector (spec 3.3)"},
    {"h3_mosflm_rot_twotheta", BEAM_MOSFLM DETECTOR_ROT, "as a2"},
    {"h_xds_rot_twotheta", MISSION ",distance,orgx,orgy,lambda,na,nb,nc,fluence" DETECTOR_ROT, "XDS: as h2"},
    {"i2_gauss", BEAM_MOSFLM, "as a2"},
    {"i3_tophat", BEAM_MOSFLM, "as a2"},
    {"i_round", BEAM_MOSFLM, "as a2"},
    {"j_roi", BEAM_MOSFLM, "as a2"},
    {"k_matfile", MISSION ",distance,xbeam,ybeam,na,nb,nc,fluence",
     "-mat: the matrix scales with 1/lambda, so h = a.S does not depend on lambda (the image is independent of it)"},
    {"l_water", BEAM_MOSFLM, "as a2"},
    {"m2_pointpix_nopolar", BEAM_MOSFLM, "as a2"},
    {"m_curved_det", BEAM_MOSFLM, "as a2"},
    {"n_sourcefile", MISSION ",distance,xbeam,ybeam,na,nb,nc,fluence",
     "every source has its own wavelength in sources.txt, so -lambda has no effect"},
    {"o_flux_dmin", MISSION ",distance,xbeam,ybeam,lambda,na,nb,nc",
     "-flux sets the fluence, so -fluence has no effect"},
};

/* Parses line 1 of the case's cmd.txt into a configuration; the working folder becomes the case's folder
 * (for P1.hkl, A.mat, sources.txt; the library writes nothing). */
static db_config *load_case(const char *name, const char *extra1, const char *extra2)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/%s", DB_GOLDEN_DIR, name);
    assert_int_equal(chdir(dir), 0);
    harness_args a = {0};
    assert_int_equal(harness_case_args(DB_GOLDEN_DIR, name, 1, &a), 0);
    if (extra1) harness_push(&a, extra1);
    if (extra2) harness_push(&a, extra2);
    db_config *cfg = db_config_create();
    db_error err;
    int rc = db_config_parse(cfg, a.argc, (const char *const *)a.argv, &err);
    harness_args_free(&a);
    if (rc) fail_msg("%s: %s", name, err.message);
    return cfg;
}

static void check_case(const gc_case *c, const char *carry)
{
    db_config *cfg = load_case(c->name, "-phi_carryover", carry);
    int params[64];
    db_error err;
    int n = db_param_parse_list(c->params, params, &err);
    assert_true(n > 0);
    db_gc_options o;
    db_gc_default_options(&o);
    o.precise = 1;
    db_gc_report rep;
    int rc = db_gradcheck(cfg, params, n, &o, &rep, &err);
    db_config_destroy(cfg);
    if (rc) fail_msg("%s: %s", c->name, err.message);
    assert_int_equal(rep.nrows, n);
    if (!rep.all_pass) {
        db_gc_print(&rep, stderr);
        fail_msg("%s (carryover %s): a derivative disagrees with finite differences", c->name, carry);
    }
    for (int k = 0; k < rep.nrows; k++) assert_true(rep.rows[k].pixels > 0);
}

static void test_case_on(void **state)
{
    check_case((const gc_case *)*state, "on");
}

static void test_case_off(void **state)
{
    check_case((const gc_case *)*state, "off");
}

/* The phi = 0 step's derivatives come through the carried lattice: with carryover on, d/d(osc) at a pixel
 * is not the off-image's. Both pass the finite-difference check above; here they must differ. */
static void test_carryover_changes_derivatives(void **state)
{
    (void)state;
    double *g[2];
    for (int m = 0; m < 2; m++) {
        db_config *cfg = load_case("c_phi0_carryover", "-phi_carryover", m ? "off" : "on");
        db_sim *sim;
        db_error err;
        assert_int_equal(db_sim_create(&sim, cfg, NULL, &err), DB_OK);
        int F, S;
        db_sim_size(sim, &F, &S);
        float *img = malloc((size_t)F * S * sizeof(float));
        g[m] = malloc((size_t)F * S * sizeof(double));
        int p = db_param_from_name("osc");
        assert_int_equal(db_sim_run_grad(sim, &p, 1, img, NULL, g[m], &err), DB_OK);
        free(img);
        db_sim_destroy(sim);
        db_config_destroy(cfg);
    }
    long differ = 0;
    for (long i = 0; i < 256L * 256; i++) differ += g[0][i] != g[1][i];
    assert_true(differ > 60000);
    free(g[0]);
    free(g[1]);
}

/* Derivative images for all parameters, with a given chunk size and thread count. */
static double *all_grads(const char *name, int chunk, int threads, int force_dh, size_t *npix_out)
{
    /* a region with spots, the first pixel (carryover's exception) and enough rows for several threads */
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/%s", DB_GOLDEN_DIR, name);
    assert_int_equal(chdir(dir), 0);
    harness_args a = {0};
    assert_int_equal(harness_case_args(DB_GOLDEN_DIR, name, 1, &a), 0);
    const char *roi[] = {"-roi", "0", "40", "0", "40"};
    for (int k = 0; k < 5; k++) harness_push(&a, roi[k]);
    db_config *cfg = db_config_create();
    db_error err;
    assert_int_equal(db_config_parse(cfg, a.argc, (const char *const *)a.argv, &err), DB_OK);
    harness_args_free(&a);
    db_sim *sim;
    assert_int_equal(db_sim_create(&sim, cfg, NULL, &err), DB_OK);
    int F, S;
    db_sim_size(sim, &F, &S);
    size_t npix = (size_t)F * S;
    int params[64];
    int n = db_param_parse_list("all", params, &err);
    float *img = malloc(npix * sizeof(float));
    double *g = malloc((size_t)n * npix * sizeof(double));
    assert_int_equal(db_sim_set_chunk(sim, chunk), DB_OK);
#ifdef _OPENMP
    omp_set_num_threads(threads);
#else
    (void)threads;
#endif
    if (force_dh) {
        /* -grad na uses the dh form for the whole run */
        int with_n[64];
        memcpy(with_n, params, sizeof params);
        assert_int_equal(db_sim_run_grad(sim, with_n, n, img, NULL, g, &err), DB_OK);
    } else {
        int mission[11];
        memcpy(mission, params, sizeof mission);
        assert_int_equal(db_sim_run_grad(sim, mission, 11, img, NULL, g, &err), DB_OK);
    }
    free(img);
    db_sim_destroy(sim);
    db_config_destroy(cfg);
    *npix_out = npix * (size_t)(force_dh ? n : 11);
    return g;
}

/* chunk 1 runs the portable one-direction engine (scalar tangents); chunks 4, 5, 12 and DB_MAX_CHUNK (28: all 26
 * parameters in one pass) the 4-, 12- and 28-direction engines, whose tangents are vectors of four doubles and
 * which are the AVX2 builds on CPUs that have it: their bits must agree with the scalar ones */
static void test_chunk_and_thread_invariance(void **state)
{
    (void)state;
    const char *cases[] = {"c_phi0_carryover", "e_mosaic", "b2_interp"};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        size_t n1, n2, n3, n4, n5;
        double *g12 = all_grads(cases[c], 12, 2, 1, &n1);
        double *g1 = all_grads(cases[c], 1, 1, 1, &n2);
        double *g4 = all_grads(cases[c], 4, 3, 1, &n3);
        double *g5 = all_grads(cases[c], 5, 2, 1, &n4);
        double *g28 = all_grads(cases[c], DB_MAX_CHUNK, 2, 1, &n5);
        assert_int_equal(n1, n2);
        assert_int_equal(n1, n3);
        assert_int_equal(n1, n4);
        assert_int_equal(n1, n5);
        assert_memory_equal(g12, g1, n1 * sizeof(double));
        assert_memory_equal(g12, g4, n1 * sizeof(double));
        assert_memory_equal(g12, g5, n1 * sizeof(double));
        assert_memory_equal(g12, g28, n1 * sizeof(double));
        long nonzero = 0;
        for (size_t i = 0; i < n1; i++) nonzero += g12[i] != 0.0;
        assert_true(nonzero > 1000);
        free(g12);
        free(g1);
        free(g4);
        free(g5);
        free(g28);
    }
#ifdef _OPENMP
    omp_set_num_threads(2);
#endif
}

/* Ordinary runs take the SQUARE lattice slopes from the dh form times (-1)^((N-1) h0); the dh-form run (used
 * for N derivatives) must give the same tangents up to rounding of the values they multiply. */
static void test_lattice_slopes_match_dh_form(void **state)
{
    (void)state;
    size_t n_ref, n_dh;
    double *ref = all_grads("b_triclinic", 12, 2, 0, &n_ref);
    double *dh = all_grads("b_triclinic", 12, 2, 1, &n_dh); /* first 11 components: the mission parameters */
    double maxabs = 0.0, maxerr = 0.0;
    for (size_t i = 0; i < n_ref; i++) {
        maxabs = fmax(maxabs, fabs(ref[i]));
        maxerr = fmax(maxerr, fabs(ref[i] - dh[i]));
    }
    assert_true(maxabs > 0.0);
    /* the two values of the lattice factor differ by rounding only (1e-13 relative at |h| ~ 20) */
    if (maxerr > 1e-9 * maxabs) fail_msg("tangents differ by %g (max %g)", maxerr, maxabs);
    free(ref);
    free(dh);
}

/* ---- structure factors (db_gradcheck_F) ----
 * Tolerance: the same rule and rtol 1e-6 as the parameters'. A pixel is a quadratic in each F (F_cell, nearest or
 * tricubic, is linear in the table's values), so both stencils are exact up to rounding: what is left is the
 * difference quotient's rounding, which atol's noise floor (64 ulps of the largest pixel / h) covers. */

/* The golden configurations that read an hkl file (the others have -default_F only: no structure factor to check). */
static const char *const F_CASES[] = {"b_triclinic",           "b2_interp",         "h_xds_rot_twotheta",
                                      "h2_dials_rot_twotheta", "h3_mosflm_rot_twotheta", "k_matfile"};

/* A planted relative error of this size in an analytic column must fail (the planted-library test's size). */
#define PLANTED 2e-5

/* The reflections whose columns are largest on the check region of db_gradcheck_F's default rule (found by a
 * check of the list's first entry, which reports the region): up to `want` of them, largest first, into
 * hkl[3*want], and the region into roi. The check then differentiates every pixel of the region for each: a reflection that touches it
 * is not a vacuous check. */
static int touching_reflections(const db_config *cfg, int want, int *hkl, int roi[4])
{
    db_sim *sim;
    db_error err;
    if (db_sim_create(&sim, cfg, NULL, &err)) fail_msg("create: %s", err.message);
    long n = db_sim_structure_factor_count(sim);
    assert_true(n > 0);
    int first[3];
    assert_int_equal(db_sim_get_structure_factors(sim, first, NULL, 1, &err), 1);
    db_gc_options o;
    db_gc_default_options(&o);
    db_gc_report rep;
    if (db_gradcheck_F(cfg, first, 1, &o, &rep, &err)) fail_msg("gradcheck_F: %s", err.message);
    assert_int_equal(rep.boxes, 1);
    memcpy(roi, rep.roi, sizeof rep.roi);
    if (db_sim_select_boxes(sim, rep.roi, 1, &err)) fail_msg("boxes: %s", err.message);
    long m = db_sim_selected_count(sim);
    double *v = malloc((size_t)m * sizeof(double)), *colmax = calloc((size_t)n, sizeof(double));
    db_csr J = {0};
    if (db_sim_run_selected_F(sim, NULL, 0, v, NULL, &J, &err)) fail_msg("run_selected_F: %s", err.message);
    for (long e = 0; e < J.nnz; e++) colmax[J.col[e]] = fmax(colmax[J.col[e]], fabs(J.val[e]));
    int *all = malloc((size_t)n * 3 * sizeof(int));
    assert_int_equal(db_sim_get_structure_factors(sim, all, NULL, n, &err), n);
    int got = 0;
    for (; got < want; got++) {
        long best = -1;
        for (long j = 0; j < n; j++)
            if (colmax[j] > 0.0 && (best < 0 || colmax[j] > colmax[best])) best = j;
        if (best < 0) break;
        memcpy(hkl + 3 * got, all + 3 * best, 3 * sizeof(int));
        colmax[best] = 0.0;
    }
    free(all);
    free(v);
    free(colmax);
    db_csr_free(&J);
    db_sim_destroy(sim);
    return got;
}

/* A row that passes and could not have passed with a planted error: at the pixel of its largest |fd| = M, an
 * analytic value off by PLANTED relative differs from fd by at least PLANTED (M - e) - e (e = the row's largest
 * error), which must exceed that pixel's allowance atol + rtol M. */
static void assert_row_telling(const char *name, const db_gc_row *r, double rtol)
{
    char row[64];
    snprintf(row, sizeof row, "F(%d %d %d)", r->hkl[0], r->hkl[1], r->hkl[2]);
    assert_true(r->structure_factor);
    assert_int_equal(r->param, -1);
    assert_true(r->pixels > 0);
    if (!(r->max_abs_fd > 0.0)) fail_msg("%s %s: max |fd| = 0, the check is vacuous", name, row);
    double e = r->max_abs_err, M = r->max_abs_fd;
    if (!(PLANTED * (M - e) - e > r->atol + rtol * M))
        fail_msg("%s %s: a %g relative error would pass (max |fd| %g, max err %g, atol %g)", name, row, PLANTED, M, e,
                 r->atol);
}

static void test_F_golden(void **state)
{
    (void)state;
    for (size_t c = 0; c < sizeof F_CASES / sizeof F_CASES[0]; c++) {
        const char *name = F_CASES[c];
        db_config *cfg = load_case(name, NULL, NULL);
        int hkl[9];
        int roi[4];
        int nhkl = touching_reflections(cfg, 3, hkl, roi);
        if (nhkl < 2) fail_msg("%s: only %d reflections reach the check region", name, nhkl);
        db_gc_options o;
        db_gc_default_options(&o);
        o.precise = 1;
        db_gc_report rep;
        db_error err;
        int rc = db_gradcheck_F(cfg, hkl, nhkl, &o, &rep, &err);
        db_config_destroy(cfg);
        if (rc) fail_msg("%s: %s", name, err.message);
        assert_int_equal(rep.nrows, nhkl);
        if (!rep.all_pass) {
            db_gc_print(&rep, stderr);
            fail_msg("%s: a structure-factor derivative disagrees with finite differences", name);
        }
        for (int k = 0; k < rep.nrows; k++) {
            const db_gc_row *r = &rep.rows[k];
            assert_memory_equal(r->hkl, hkl + 3 * k, sizeof r->hkl);
            assert_true(r->F_at == r->F); /* the golden tables' F are far above 2 steps */
            assert_row_telling(name, r, o.rtol);
            print_message("  %-22s F(%d %d %d) = %-7g %4ld pixels  max|fd| %.3e  max abs err %.3e  max rel err %.3e  "
                          "atol %.3e\n", name, r->hkl[0], r->hkl[1], r->hkl[2], r->F, r->pixels, r->max_abs_fd,
                          r->max_abs_err, r->max_rel_err, r->atol);
        }
    }
}

/* Parameters and structure factors in one report: the parameters' rows are those db_gradcheck gives alone (the
 * F-Jacobian comes from the same pass without changing its values or tangents), then the reflections'. */
static void test_F_with_params(void **state)
{
    (void)state;
    db_config *cfg = load_case("b_triclinic", NULL, NULL);
    int hkl[6], roi[4];
    assert_int_equal(touching_reflections(cfg, 2, hkl, roi), 2);
    int params[3];
    db_error err;
    assert_int_equal(db_param_parse_list("a,misset_x,phi0", params, &err), 3);
    db_gc_options o;
    db_gc_default_options(&o);
    o.precise = 1;
    db_gc_report alone, both, fonly;
    assert_int_equal(db_gradcheck(cfg, params, 3, &o, &alone, &err), DB_OK);
    if (db_gradcheck_with_F(cfg, params, 3, hkl, 2, &o, &both, &err)) fail_msg("with_F: %s", err.message);
    assert_int_equal(db_gradcheck_F(cfg, hkl, 2, &o, &fonly, &err), DB_OK);
    db_config_destroy(cfg);
    assert_int_equal(both.nrows, 5);
    assert_true(both.all_pass);
    assert_memory_equal(both.roi, alone.roi, sizeof both.roi);
    for (int k = 0; k < 3; k++) {
        assert_false(both.rows[k].structure_factor);
        assert_memory_equal(&both.rows[k], &alone.rows[k], sizeof both.rows[k]);
    }
    for (int k = 0; k < 2; k++) assert_memory_equal(&both.rows[3 + k], &fonly.rows[k], sizeof both.rows[k]);

    /* the report as text and JSON names the reflections */
    char path[] = "/tmp/dualbragg-gcF-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w+");
    db_gc_print(&both, f);
    fflush(f);
    rewind(f);
    char text[8192];
    size_t len = fread(text, 1, sizeof text - 1, f);
    text[len] = '\0';
    fclose(f);
    char want[64];
    snprintf(want, sizeof want, "F(%d %d %d)", hkl[0], hkl[1], hkl[2]);
    if (!strstr(text, want) || !strstr(text, "misset_x")) fail_msg("the report lacks %s or misset_x:\n%s", want, text);
    assert_int_equal(db_gc_write_json(path, &both, &o, &err), DB_OK);
    char *json = harness_read_text(path);
    assert_non_null(json);
    snprintf(want, sizeof want, "\"hkl\": [%d, %d, %d]", hkl[0], hkl[1], hkl[2]);
    if (!strstr(json, want) || !strstr(json, "\"name\": \"phi0\"")) fail_msg("the JSON lacks %s or phi0:\n%s", want, json);
    free(json);
    unlink(path);
}

/* F below two steps (here 0): both sides are taken at F = 2h, where the stencil stays >= 0. The reflection that
 * dominates b_triclinic's check region is set to 0 in a copy of its hkl file, and checked on that region (the
 * brightest pixel is elsewhere without it). */
static void test_F_at_zero(void **state)
{
    (void)state;
    db_config *cfg = load_case("b_triclinic", NULL, NULL);
    int hkl[3], roi[4];
    assert_int_equal(touching_reflections(cfg, 1, hkl, roi), 1);
    db_config_destroy(cfg);
    char dir[4096], path[4200], line[256];
    assert_int_equal(harness_mkdtemp(dir, sizeof dir), 0);
    snprintf(path, sizeof path, "%s/P1.hkl", dir);
    FILE *in = fopen(DB_GOLDEN_DIR "/b_triclinic/P1.hkl", "r"), *out = fopen(path, "w");
    assert_non_null(in);
    assert_non_null(out);
    int zeroed = 0;
    while (fgets(line, sizeof line, in)) {
        int h, k, l;
        if (sscanf(line, "%d %d %d", &h, &k, &l) == 3 && h == hkl[0] && k == hkl[1] && l == hkl[2]) {
            fprintf(out, "%d %d %d 0\n", h, k, l);
            zeroed++;
        } else {
            fputs(line, out);
        }
    }
    fclose(in);
    fclose(out);
    assert_int_equal(zeroed, 1);
    harness_args a;
    case_args("b_triclinic", &a);
    harness_set(&a, "-hkl", path);
    cfg = db_config_create();
    db_error err;
    if (db_config_parse(cfg, a.argc, (const char *const *)a.argv, &err)) fail_msg("parse: %s", err.message);
    harness_args_free(&a);
    db_gc_options o;
    db_gc_default_options(&o);
    o.precise = 1;
    memcpy(o.roi, roi, sizeof o.roi);
    db_gc_report rep;
    int rc = db_gradcheck_F(cfg, hkl, 1, &o, &rep, &err);
    db_config_destroy(cfg);
    harness_rmtree(dir);
    if (rc) fail_msg("gradcheck_F: %s", err.message);
    const db_gc_row *r = &rep.rows[0];
    if (!rep.all_pass) {
        db_gc_print(&rep, stderr);
        fail_msg("F = 0: the check at F = 2h fails");
    }
    assert_true(r->F == 0.0);
    assert_true(r->F_at == 2.0 * r->step);
    assert_true(r->step == cbrt(DBL_EPSILON));
    /* dI/dF = 2 F (...) is small at F = 2h, but not 0: the reflection still reaches the region, its differences
     * stand above the noise floor of the other reflections' values (measured: 1e3 times atol), so the check
     * resolves relative errors down to about 1e-3 there */
    assert_true(r->max_abs_fd > 100.0 * r->atol);
    print_message("  F(%d %d %d) = 0, checked at %.3e: max|fd| %.3e, max abs err %.3e, atol %.3e\n", r->hkl[0],
                  r->hkl[1], r->hkl[2], r->F_at, r->max_abs_fd, r->max_abs_err, r->atol);
}

/* Refusals, each naming what is wrong: an hkl outside the table, a configuration without one, too many rows. */
static void test_F_refusals(void **state)
{
    (void)state;
    db_config *cfg = load_case("b_triclinic", NULL, NULL);
    db_gc_options o;
    db_gc_default_options(&o);
    db_gc_report rep;
    db_error err;
    int outside[6] = {1, 2, 3, 40, 0, 0}; /* P1.hkl holds h, k, l in -12..12 */
    assert_int_equal(db_gradcheck_F(cfg, outside, 2, &o, &rep, &err), DB_ERR_ARGUMENT);
    if (!strstr(err.message, "F(40 0 0)") || !strstr(err.message, "not in the structure-factor table"))
        fail_msg("message: %s", err.message);
    assert_int_equal(rep.nrows, 0);
    int many[3 * (DB_GC_MAX_ROWS + 1)];
    for (int k = 0; k < DB_GC_MAX_ROWS + 1; k++) many[3 * k] = 0, many[3 * k + 1] = 0, many[3 * k + 2] = k % 12;
    assert_int_equal(db_gradcheck_F(cfg, many, DB_GC_MAX_ROWS + 1, &o, &rep, &err), DB_ERR_ARGUMENT);
    assert_non_null(strstr(err.message, "structure factors"));
    int params[DB_GC_MAX_ROWS];
    int np = db_param_parse_list("all", params, &err);
    assert_true(np + 7 > DB_GC_MAX_ROWS);
    assert_int_equal(db_gradcheck_with_F(cfg, params, np, many, 7, &o, &rep, &err), DB_ERR_ARGUMENT);
    assert_non_null(strstr(err.message, "rows in all"));
    assert_int_equal(db_gradcheck_F(cfg, NULL, 1, &o, &rep, &err), DB_ERR_ARGUMENT);
    db_config_destroy(cfg);
    /* -default_F alone: no table, so no structure factor is a parameter */
    cfg = load_case("a_cubic", NULL, NULL);
    assert_int_equal(db_gradcheck_F(cfg, outside, 1, &o, &rep, &err), DB_ERR_ARGUMENT);
    if (!strstr(err.message, "F(1 2 3)") || !strstr(err.message, "no structure-factor table"))
        fail_msg("message: %s", err.message);
    db_config_destroy(cfg);
}

/* ---- the command line's -grad_hkl ---- */

/* dualbragg-gradcheck beside dualbragg (both are built into the same bin folder) */
static const char *gradcheck_cli(void)
{
#ifdef DB_GRADCHECK_PATH
    return DB_GRADCHECK_PATH;
#else
    static char path[4096];
    snprintf(path, sizeof path, "%s", DB_CLI_PATH);
    char *slash = strrchr(path, '/');
    snprintf(slash ? slash + 1 : path, sizeof path - (size_t)(slash ? slash + 1 - path : 0), "dualbragg-gradcheck");
    if (access(path, X_OK) != 0) fail_msg("%s is missing: build the dualbragg_gradcheck_cli target", path);
    return path;
#endif
}

/* Runs dualbragg-gradcheck on b_triclinic's command line (its P1.hkl by absolute path) plus extra, in a fresh
 * folder; returns the exit status, *log what it printed (free it). */
static int run_gradcheck_cli(const char *const *extra, int nextra, char **log)
{
    harness_args a;
    case_args("b_triclinic", &a);
    harness_set(&a, "-hkl", DB_GOLDEN_DIR "/b_triclinic/P1.hkl");
    for (int i = 0; i < nextra; i++) harness_push(&a, extra[i]);
    char dir[4096], path[4200];
    assert_int_equal(harness_mkdtemp(dir, sizeof dir), 0);
    int status = harness_run(gradcheck_cli(), dir, &a, 1);
    harness_args_free(&a);
    snprintf(path, sizeof path, "%s/out.log", dir);
    *log = harness_read_text(path);
    assert_non_null(*log);
    harness_rmtree(dir);
    return status;
}

static void test_F_cli(void **state)
{
    (void)state;
    char *log;
    /* -grad_hkl alone: that structure factor only, no mission parameter */
    const char *one[] = {"-grad_hkl", "1 2 3", "-precise"};
    int status = run_gradcheck_cli(one, 3, &log);
    if (status != 0 || !strstr(log, "F(1 2 3)") || !strstr(log, "all parameters PASS") || strstr(log, "misset_x"))
        fail_msg("-grad_hkl \"1 2 3\": exit status %d\n%s", status, log);
    free(log);
    /* with -grad: both, the parameters first */
    const char *both[] = {"-grad", "a,phi0", "-grad_hkl", " -1  0 2 ", "-grad_hkl", "1 2 3"};
    status = run_gradcheck_cli(both, 6, &log);
    char *pa = strstr(log, "\na "), *pf = strstr(log, "F(-1 0 2)"), *pf2 = strstr(log, "F(1 2 3)");
    if (status != 0 || !pa || !strstr(log, "\nphi0 ") || !pf || !pf2 || pf < pa || strstr(log, "misset_x"))
        fail_msg("-grad a,phi0 -grad_hkl ...: exit status %d\n%s", status, log);
    free(log);
    /* bad values: exit 2, naming the flag and what it expects */
    static const char *const bad[] = {"1 2", "a b c", "1 2 3 4", "1.5 2 3", "1,2,3", "", "99999999999 0 0"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *args[] = {"-grad_hkl", bad[i]};
        status = run_gradcheck_cli(args, 2, &log);
        if (status != 2 || !strstr(log, "-grad_hkl expects three integers") || strstr(log, "PASS"))
            fail_msg("-grad_hkl '%s': exit status %d (expected 2)\n%s", bad[i], status, log);
        free(log);
    }
    const char *missing[] = {"-grad_hkl"};
    status = run_gradcheck_cli(missing, 1, &log);
    if (status != 2 || !strstr(log, "-grad_hkl is missing its value"))
        fail_msg("-grad_hkl without a value: exit status %d\n%s", status, log);
    free(log);
    /* a reflection outside the table */
    const char *outside[] = {"-grad_hkl", "40 0 0"};
    status = run_gradcheck_cli(outside, 2, &log);
    if (status == 0 || !strstr(log, "F(40 0 0) is not in the structure-factor table") || strstr(log, "PASS"))
        fail_msg("-grad_hkl \"40 0 0\": exit status %d\n%s", status, log);
    free(log);
    /* more checks than a report holds */
    harness_args many = {0};
    harness_push(&many, "-grad");
    harness_push(&many, "all");
    for (int k = 0; k < 7; k++) {
        harness_push(&many, "-grad_hkl");
        harness_push(&many, "1 2 3");
    }
    status = run_gradcheck_cli((const char *const *)many.argv, many.argc, &log);
    harness_args_free(&many);
    if (status != 2 || !strstr(log, "at most 32 checks"))
        fail_msg("-grad all and 7 -grad_hkl: exit status %d\n%s", status, log);
    free(log);
}

/* DUALBRAGG_TEST_QUICK (the sanitizer pass, where everything runs unoptimised and instrumented): one case of
 * each kind, not all 24. */
static int in_quick_set(const char *name)
{
    static const char *const QUICK[] = {"b2_interp", "c_phi0_carryover", "e_mosaic", "h_xds_rot_twotheta", "k_matfile",
                                        "n_sourcefile", "o_flux_dmin"};
    for (size_t q = 0; q < sizeof QUICK / sizeof QUICK[0]; q++)
        if (strcmp(QUICK[q], name) == 0) return 1;
    return 0;
}

int main(void)
{
    enum { N = sizeof CASES / sizeof CASES[0] };
    struct CMUnitTest tests[2 * N + 8];
    char names[2 * N][96];
    const char *quick = getenv("DUALBRAGG_TEST_QUICK");
    int nt = 0;
    for (int i = 0; i < N; i++) {
        if (quick && *quick && strcmp(quick, "0") != 0 && !in_quick_set(CASES[i].name)) continue;
        snprintf(names[2 * i], sizeof names[0], "%s carryover on", CASES[i].name);
        snprintf(names[2 * i + 1], sizeof names[0], "%s carryover off", CASES[i].name);
        struct CMUnitTest on = {names[2 * i], test_case_on, NULL, NULL, (void *)&CASES[i]};
        struct CMUnitTest off = {names[2 * i + 1], test_case_off, NULL, NULL, (void *)&CASES[i]};
        tests[nt++] = on;
        tests[nt++] = off;
    }
    struct CMUnitTest t1 = cmocka_unit_test(test_carryover_changes_derivatives);
    struct CMUnitTest t2 = cmocka_unit_test(test_chunk_and_thread_invariance);
    struct CMUnitTest t3 = cmocka_unit_test(test_lattice_slopes_match_dh_form);
    tests[nt++] = t1;
    tests[nt++] = t2;
    tests[nt++] = t3;
    const struct CMUnitTest f_tests[] = {cmocka_unit_test(test_F_golden), cmocka_unit_test(test_F_with_params),
                                         cmocka_unit_test(test_F_at_zero), cmocka_unit_test(test_F_refusals),
                                         cmocka_unit_test(test_F_cli)};
    for (size_t i = 0; i < sizeof f_tests / sizeof f_tests[0]; i++) tests[nt++] = f_tests[i];
    return _cmocka_run_group_tests("gradcheck", tests, (size_t)nt, NULL, NULL);
}
