/* test_gradcheck.c: derivative images against finite differences on every golden configuration, carryover
 * on and off; chunk-size and thread-count invariance of the derivative images; the SQUARE lattice slopes of
 * ordinary runs against the dh form.
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

#include <math.h>
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
    struct CMUnitTest tests[2 * N + 3];
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
    return _cmocka_run_group_tests("gradcheck", tests, (size_t)nt, NULL, NULL);
}
