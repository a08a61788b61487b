/* test_iterate.c: a simulation that iterates (README "Iterating"):
 *  - values set in place equal, bit for bit, a fresh simulation from a command line carrying them (every
 *    parameter, several golden configurations, carryover on and off), and impossible values are refused with
 *    the parameter named and nothing changed;
 *  - chosen pixels: db_sim_run_selected equals the same pixels of db_sim_run_grad's images bit for bit,
 *    overlapping boxes count once, the mask applies inside them, one box equals the same -roi, and -boxes works
 *    on the command line;
 *  - several simulations run from several threads give the results of one after another; a trace or a
 *    printout leaves what the last run recorded as it was;
 *  - a non-whole N: the plain image is a lattice factor (not the reference's form, which explodes off whole N),
 *    and the na/nb/nc derivative images match central differences of plain runs. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "dualbragg.h"
#include "cli_harness.h"
#include "golden_case.h"
#include "run_clients.h"
#include "smv.h"
#include "test_util.h"

#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RTD (180.0 * M_1_PI)

static double *image64_of(db_sim *sim, size_t *n)
{
    int F, S;
    db_sim_size(sim, &F, &S);
    *n = (size_t)F * S;
    float *img = malloc(*n * sizeof(float));
    double *img64 = malloc(*n * sizeof(double));
    db_error err;
    if (db_sim_run(sim, img, img64, &err)) fail_msg("run: %s", err.message);
    free(img);
    return img64;
}

/* Replaces the k-th value after flag, or appends the flag with `count` values where only the k-th is given
 * (the others `fill`). */
static void set_value(harness_args *a, const char *flag, int k, int count, const char *value, const char *fill)
{
    for (int i = 0; i < a->argc; i++)
        if (strcmp(a->argv[i], flag) == 0) {
            assert_true(i + 1 + k < a->argc);
            free(a->argv[i + 1 + k]);
            a->argv[i + 1 + k] = strdup(value);
            return;
        }
    harness_push(a, flag);
    for (int j = 0; j < count; j++) harness_push(a, j == k ? value : fill);
}

typedef struct param_flag {
    const char *param, *flag;
    int k, count;
} param_flag;

static const param_flag FLAGS[] = {
    {"a", "-cell", 0, 6},          {"b", "-cell", 1, 6},           {"c", "-cell", 2, 6},
    {"alpha", "-cell", 3, 6},      {"beta", "-cell", 4, 6},        {"gamma", "-cell", 5, 6},
    {"misset_x", "-misset", 0, 3}, {"misset_y", "-misset", 1, 3},  {"misset_z", "-misset", 2, 3},
    {"phi0", "-phi", 0, 1},        {"osc", "-osc", 0, 1},          {"distance", "-distance", 0, 1},
    {"xbeam", "-Xbeam", 0, 1},     {"ybeam", "-Ybeam", 0, 1},      {"orgx", "-ORGX", 0, 1},
    {"orgy", "-ORGY", 0, 1},       {"lambda", "-lambda", 0, 1},    {"na", "-Na", 0, 1},
    {"nb", "-Nb", 0, 1},           {"nc", "-Nc", 0, 1},            {"mosaic", "-mosaic", 0, 1},
    {"fluence", "-fluence", 0, 1}, {"detector_rotx", "-detector_rotx", 0, 1},
    {"detector_roty", "-detector_roty", 0, 1}, {"detector_rotz", "-detector_rotz", 0, 1},
    {"twotheta", "-twotheta", 0, 1},
};

typedef struct iter_case {
    const char *name, *params; /* parameters whose flags the command line can carry without other effects */
} iter_case;

/* -Xbeam/-ORGX and -twotheta also choose the pivot; each case lists those that keep its pivot */
static const iter_case ITER_CASES[] = {
    {"a_cubic", "a,b,c,alpha,beta,gamma,misset_x,misset_y,misset_z,phi0,distance,xbeam,ybeam,lambda,na,nb,nc,fluence,"
                "detector_rotx,detector_roty,detector_rotz"},
    {"b_triclinic", "a,b,c,alpha,beta,gamma,misset_x,misset_y,misset_z,phi0,distance,lambda,na,nc"},
    {"c_phi0_carryover", "a,gamma,misset_z,phi0,osc,distance,xbeam,lambda,nb"},
    {"e_mosaic", "a,misset_y,phi0,mosaic,distance,na,fluence"},
    {"h3_mosflm_rot_twotheta", "a,beta,misset_x,distance,xbeam,ybeam,detector_rotx,detector_roty,detector_rotz,twotheta,lambda"},
    {"h_xds_rot_twotheta", "c,misset_z,distance,orgx,orgy,detector_rotx,twotheta,nc"},
    {"b2_interp", "a,misset_x,lambda,na"},
    {"n_sourcefile", "b,misset_y,distance,nc"},
};

static void check_set_equals_fresh(const iter_case *c, const char *carry)
{
    harness_args base;
    case_args(c->name, &base);
    /* a 64 x 64 region holds several spots of every case; the exceptional sample is its first pixel */
    const char *extra[] = {"-roi", "64", "127", "64", "127", "-phi_carryover", carry};
    for (int k = 0; k < 7; k++) harness_push(&base, extra[k]);
    db_sim *sim = sim_from(&base);
    size_t n;
    double *before = image64_of(sim, &n);
    long lit = 0;
    for (size_t i = 0; i < n; i++) lit += before[i] > 0.0;
    assert_true(lit > 100);
    int params[64];
    db_error err;
    int np = db_param_parse_list(c->params, params, &err);
    assert_true(np > 0);
    db_geometry g;
    db_sim_geometry(sim, &g);
    for (int q = 0; q < np; q++) {
        int p = params[q];
        const char *name = db_param_name(p);
        test_context("%s carryover %s, %s", c->name, carry, name);
        double x;
        assert_int_equal(db_sim_get_params(sim, &p, &x, 1, &err), DB_OK);
        /* a move of a few percent (angles: a few tenths of a degree) that keeps every discrete choice */
        double v = strcmp(db_param_unit(p), "deg") == 0 ? x + 0.37 : (x != 0.0 ? x * 1.013 : 0.21);
        if (p == db_param_from_name("fluence")) v = x * 1.5;
        char text[64];
        snprintf(text, sizeof text, "%.17g", v);
        assert_true(strtod(text, NULL) == v);
        /* the fresh command line: this value changed, everything else as given */
        harness_args moved = {0};
        for (int i = 0; i < base.argc; i++) harness_push(&moved, base.argv[i]);
        const param_flag *pf = NULL;
        for (size_t f = 0; f < sizeof FLAGS / sizeof FLAGS[0]; f++)
            if (strcmp(FLAGS[f].param, name) == 0) pf = &FLAGS[f];
        assert_non_null(pf);
        set_value(&moved, pf->flag, pf->k, pf->count, text, "0");
        if (strcmp(name, "osc") == 0) {
            char steps[16];
            snprintf(steps, sizeof steps, "%d", g.phisteps);
            harness_set(&moved, "-phisteps", steps); /* osc moves the step, the count stays */
        }
        db_sim *fresh = sim_from(&moved);
        harness_args_free(&moved);
        size_t n2;
        double *want = image64_of(fresh, &n2);
        db_sim_destroy(fresh);
        assert_int_equal(db_sim_set_params(sim, &p, &v, 1, &err), DB_OK);
        double got_v;
        assert_int_equal(db_sim_get_params(sim, &p, &got_v, 1, &err), DB_OK);
        /* through the internal unit and back: at most two roundings */
        if (strcmp(name, "osc") != 0) assert_close(got_v, v, 4 * DBL_EPSILON, 0);
        double *got = image64_of(sim, &n2);
        long differ = 0, moved_px = 0;
        for (size_t i = 0; i < n; i++) {
            differ += memcmp(&got[i], &want[i], sizeof(double)) != 0;
            moved_px += got[i] != before[i];
        }
        if (differ) fail_msg("%s carryover %s: %s = %s differs from a fresh run in %ld pixels", c->name, carry, name, text, differ);
        /* the value did something (fluence, lattice, geometry): the test would see a value that was not applied */
        if (moved_px == 0) fail_msg("%s carryover %s: %s = %s changed no pixel", c->name, carry, name, text);
        free(want);
        free(got);
        /* back to the start for the next parameter (the value read back: angles go through radians, a
         * rounding each way) */
        assert_int_equal(db_sim_set_params(sim, &p, &x, 1, &err), DB_OK);
    }
    test_context(NULL);
    free(before);
    db_sim_destroy(sim);
    harness_args_free(&base);
}

static void test_set_equals_fresh_on(void **state) { check_set_equals_fresh((const iter_case *)*state, "on"); }
static void test_set_equals_fresh_off(void **state) { check_set_equals_fresh((const iter_case *)*state, "off"); }

/* Impossible values: refused with the parameter named, and the simulation keeps what it had. */
static void test_impossible_values_refused(void **state)
{
    (void)state;
    harness_args a;
    case_args("b_triclinic", &a);
    harness_push(&a, "-roi");
    harness_push(&a, "64");
    harness_push(&a, "127");
    harness_push(&a, "64");
    harness_push(&a, "127");
    db_sim *sim = sim_from(&a);
    harness_args_free(&a);
    size_t n;
    double *before = image64_of(sim, &n);
    int all[64];
    db_error err;
    int np = db_param_parse_list("all", all, &err);
    double vals[64];
    assert_int_equal(db_sim_get_params(sim, all, vals, np, &err), DB_OK);
    struct {
        const char *params;
        double v[3];
        const char *named;
    } bad[] = {
        {"alpha,beta,gamma", {60, 60, 130}, "does not close"},
        {"gamma", {179.5, 0, 0}, "does not close"},
        {"distance", {-1, 0, 0}, "distance"},
        {"distance", {0, 0, 0}, "distance"},
        {"na", {0, 0, 0}, "na"},
        {"nc", {-2, 0, 0}, "nc"},
        {"nb", {0.5, 0, 0}, "nb"}, /* as -Nb 0.5 on a command line */
        {"a", {0, 0, 0}, "a:"},
        {"lambda", {NAN, 0, 0}, "lambda"},
        {"misset_x", {INFINITY, 0, 0}, "misset_x"},
        {"beta", {180, 0, 0}, "beta"},
        {"osc", {-0.1, 0, 0}, "osc"},
        {"mosaic", {0.1, 0, 0}, "mosaic"}, /* no mosaic domains in this configuration */
        {"a,b", {101, -3, 0}, "b:"},        /* the good one is not kept either */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int p[3];
        int k = db_param_parse_list(bad[i].params, p, &err);
        assert_true(k > 0);
        int rc = db_sim_set_params(sim, p, bad[i].v, k, &err);
        if (rc == DB_OK) fail_msg("%s = %g accepted", bad[i].params, bad[i].v[0]);
        if (!strstr(err.message, bad[i].named)) fail_msg("%s: message '%s' does not name '%s'", bad[i].params, err.message, bad[i].named);
        double now[64];
        assert_int_equal(db_sim_get_params(sim, all, now, np, &err), DB_OK);
        assert_memory_equal(now, vals, (size_t)np * sizeof(double));
    }
    size_t n2;
    double *after = image64_of(sim, &n2);
    assert_memory_equal(after, before, n * sizeof(double));
    /* and arguments are checked */
    int unknown = 99;
    double one = 1.0;
    assert_int_not_equal(db_sim_set_params(sim, &unknown, &one, 1, &err), DB_OK);
    assert_non_null(strstr(err.message, "99"));
    assert_int_not_equal(db_sim_get_params(sim, &unknown, &one, 1, &err), DB_OK);
    /* the last line of defence: values each within range whose image overflows are not handed back */
    int fl = db_param_from_name("fluence");
    double huge = 1e308;
    assert_int_equal(db_sim_set_params(sim, &fl, &huge, 1, &err), DB_OK);
    float *img = malloc(n * sizeof(float));
    assert_int_not_equal(db_sim_run(sim, img, NULL, &err), DB_OK);
    if (!strstr(err.message, "non-finite")) fail_msg("%s", err.message);
    free(img);
    free(before);
    free(after);
    db_sim_destroy(sim);
}

/* A -misset random draw, the mosaic draws and a -mat matrix stay when values move. */
static void test_loaded_inputs_stay(void **state)
{
    (void)state;
    harness_args a;
    case_args("e_mosaic", &a);
    harness_set(&a, "-misset", "random");
    /* -misset random takes one word: drop the two angles that followed */
    for (int i = 0; i + 3 < a.argc; i++)
        if (strcmp(a.argv[i], "-misset") == 0) {
            free(a.argv[i + 2]);
            free(a.argv[i + 3]);
            memmove(&a.argv[i + 2], &a.argv[i + 4], (size_t)(a.argc - i - 4) * sizeof a.argv[0]);
            a.argc -= 2;
        }
    harness_push(&a, "-roi");
    harness_push(&a, "64");
    harness_push(&a, "127");
    harness_push(&a, "64");
    harness_push(&a, "127");
    db_sim *sim = sim_from(&a); /* no -misset_seed: a time-based draw that must not be drawn again */
    harness_args_free(&a);
    size_t n;
    double *before = image64_of(sim, &n);
    int p = db_param_from_name("distance");
    double x, v;
    db_error err;
    assert_int_equal(db_sim_get_params(sim, &p, &x, 1, &err), DB_OK);
    v = x + 1.0;
    assert_int_equal(db_sim_set_params(sim, &p, &v, 1, &err), DB_OK);
    assert_int_equal(db_sim_set_params(sim, &p, &x, 1, &err), DB_OK);
    double *after = image64_of(sim, &n);
    assert_memory_equal(after, before, n * sizeof(double));
    /* moving one misset angle keeps the other two drawn angles */
    int m[3];
    assert_int_equal(db_param_parse_list("misset_x,misset_y,misset_z", m, &err), 3);
    double ang[3], ang2[3];
    assert_int_equal(db_sim_get_params(sim, m, ang, 3, &err), DB_OK);
    double mz = ang[2] + 1.0;
    assert_int_equal(db_sim_set_params(sim, &m[2], &mz, 1, &err), DB_OK);
    assert_int_equal(db_sim_get_params(sim, m, ang2, 3, &err), DB_OK);
    assert_bits_equal(ang2[0], ang[0]);
    assert_bits_equal(ang2[1], ang[1]);
    assert_close(ang2[2], mz, 4 * DBL_EPSILON, 0); /* through radians and back (the draw is time-seeded) */
    free(before);
    free(after);
    db_sim_destroy(sim);

    /* -mat: the cell moves B with U kept; back at the start, the image is the file's again */
    case_args("k_matfile", &a);
    harness_push(&a, "-roi");
    harness_push(&a, "64");
    harness_push(&a, "127");
    harness_push(&a, "64");
    harness_push(&a, "127");
    sim = sim_from(&a);
    harness_args_free(&a);
    before = image64_of(sim, &n);
    int c6[6];
    assert_int_equal(db_param_parse_list("a,b,c,alpha,beta,gamma", c6, &err), 6);
    double cell[6], moved[6], back[6];
    assert_int_equal(db_sim_get_params(sim, c6, cell, 6, &err), DB_OK);
    db_geometry g;
    db_sim_geometry(sim, &g);
    for (int k = 0; k < 6; k++) assert_close(cell[k], g.cell[k], 1e-9, 0); /* the matrix's cell */
    memcpy(moved, cell, sizeof cell);
    moved[0] += 0.5;
    moved[4] += 0.2;
    assert_int_equal(db_sim_set_params(sim, c6, moved, 6, &err), DB_OK);
    double *m_img = image64_of(sim, &n);
    db_sim_geometry(sim, &g);
    assert_close(g.cell[0], moved[0], 1e-9, 0);
    assert_close(g.cell[4], moved[4], 1e-9, 0);
    long differ = 0;
    for (size_t i = 0; i < n; i++) differ += m_img[i] != before[i];
    assert_true(differ > 100);
    assert_int_equal(db_sim_set_params(sim, c6, cell, 6, &err), DB_OK);
    assert_int_equal(db_sim_get_params(sim, c6, back, 6, &err), DB_OK);
    after = image64_of(sim, &n);
    assert_memory_equal(after, before, n * sizeof(double));
    free(before);
    free(after);
    free(m_img);
    db_sim_destroy(sim);
}

/* ---- chosen pixels ---- */

static const int BOXES[] = {10, 40, 20, 35, 30, 60, 30, 50, 100, 131, 90, 121, 0, 0, 0, 0};
enum { NBOXES = 4 };

static void test_run_selected_equals_grad_images(void **state)
{
    (void)state;
    const char *cases[] = {"c_phi0_carryover", "b2_interp", "e_mosaic"};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        test_context("%s", cases[c]);
        harness_args a;
        case_args(cases[c], &a);
        db_sim *sim = sim_from(&a);
        harness_args_free(&a);
        int F, S;
        db_sim_size(sim, &F, &S);
        size_t npix = (size_t)F * S;
        db_error err;
        assert_int_equal(db_sim_select_boxes(sim, BOXES, NBOXES, &err), DB_OK);
        /* the union, each pixel once */
        long want = 0;
        for (int s = 0; s < S; s++)
            for (int f = 0; f < F; f++) {
                int in = 0;
                for (int b = 0; b < NBOXES; b++)
                    in |= f >= BOXES[4 * b] && f <= BOXES[4 * b + 1] && s >= BOXES[4 * b + 2] && s <= BOXES[4 * b + 3];
                want += in;
            }
        long count = db_sim_selected_count(sim);
        assert_int_equal(count, want);
        int params[64];
        /* (no N: N derivatives switch the whole run to the dh form, whose values differ by rounding) */
        int np = db_param_parse_list("a,misset_x,phi0,osc,distance,lambda,fluence,b,c,alpha,beta,gamma,xbeam,ybeam", params, &err);
        float *img = malloc(npix * sizeof(float));
        double *img64 = malloc(npix * sizeof(double)), *grads = malloc((size_t)np * npix * sizeof(double));
        double *values = malloc((size_t)count * sizeof(double)), *jac = malloc((size_t)np * count * sizeof(double));
        /* buffers holding something else: the run zeroes what it does not render (a fresh allocation may be zero
         * already) */
        memset(img, 0xa5, npix * sizeof(float));
        memset(img64, 0xa5, npix * sizeof(double));
        memset(grads, 0xa5, (size_t)np * npix * sizeof(double));
        assert_int_equal(db_sim_run_grad(sim, params, np, img, img64, grads, &err), DB_OK);
        assert_int_equal(db_sim_run_selected(sim, params, np, values, jac, &err), DB_OK);
        long i = 0, lit = 0;
        for (int s = 0; s < S; s++)
            for (int f = 0; f < F; f++) {
                size_t idx = (size_t)s * F + f;
                int in = 0;
                for (int b = 0; b < NBOXES; b++)
                    in |= f >= BOXES[4 * b] && f <= BOXES[4 * b + 1] && s >= BOXES[4 * b + 2] && s <= BOXES[4 * b + 3];
                if (!in) {
                    /* outside the boxes: 0 in every image */
                    assert_true(img64[idx] == 0.0 && img[idx] == 0.0);
                    for (int k = 0; k < np; k++) assert_true(grads[(size_t)k * npix + idx] == 0.0);
                    continue;
                }
                assert_bits_equal(values[i], img64[idx]);
                for (int k = 0; k < np; k++) assert_bits_equal(jac[(size_t)k * count + i], grads[(size_t)k * npix + idx]);
                lit += values[i] > 0.0;
                i++;
            }
        assert_int_equal(i, count);
        assert_true(lit > 50);
        /* values only */
        double *v0 = malloc((size_t)count * sizeof(double));
        assert_int_equal(db_sim_run_selected(sim, NULL, 0, v0, NULL, &err), DB_OK);
        assert_memory_equal(v0, values, (size_t)count * sizeof(double));
        /* back to the configuration's ROI: the whole detector */
        assert_int_equal(db_sim_select_boxes(sim, NULL, 0, &err), DB_OK);
        assert_int_equal(db_sim_selected_count(sim), (long)npix);
        /* bad boxes are refused and say what was expected */
        const int outside[] = {0, F, 0, 3};
        assert_int_not_equal(db_sim_select_boxes(sim, outside, 1, &err), DB_OK);
        assert_non_null(strstr(err.message, "outside"));
        const int empty[] = {5, 4, 0, 3};
        assert_int_not_equal(db_sim_select_boxes(sim, empty, 1, &err), DB_OK);
        free(v0);
        free(img);
        free(img64);
        free(grads);
        free(values);
        free(jac);
        db_sim_destroy(sim);
    }
    test_context(NULL);
}

/* A 256 x 256 SMV mask file (0: masked) for the golden configurations' detector. */
static void write_mask(const char *path, const uint16_t *m)
{
    db_smv_header h;
    memset(&h, 0, sizeof h);
    h.fpixels = h.spixels = 256;
    h.pixel_size = 0.1;
    h.distance = 100;
    h.close_distance = 100;
    h.wavelength = 1;
    h.beam_center_x = h.beam_center_y = 12.8;
    db_error err;
    if (db_smv_write(path, &h, m, &err) != DB_OK) fail_msg("%s: %s", path, err.message);
}

/* One box is the same selection as the same -roi, exceptional sample included; the mask applies inside boxes. */
static void test_box_equals_roi_and_mask_applies(void **state)
{
    (void)state;
    harness_args a;
    case_args("c_phi0_carryover", &a);
    db_sim *sim = sim_from(&a);
    harness_push(&a, "-roi");
    harness_push(&a, "37");
    harness_push(&a, "90");
    harness_push(&a, "41");
    harness_push(&a, "77");
    db_sim *roi = sim_from(&a);
    harness_args_free(&a);
    const int box[] = {37, 90, 41, 77};
    db_error err;
    assert_int_equal(db_sim_select_boxes(sim, box, 1, &err), DB_OK);
    size_t n;
    double *x = image64_of(sim, &n), *y = image64_of(roi, &n);
    assert_memory_equal(x, y, n * sizeof(double));
    assert_int_equal(db_sim_captured(sim)->exc_pixel, 41L * 256 + 37);
    assert_int_equal(db_sim_captured(roi)->exc_pixel, 41L * 256 + 37);
    free(x);
    free(y);
    db_sim_destroy(sim);
    db_sim_destroy(roi);

    /* a mask: masked pixels inside the boxes are neither selected nor rendered */
    char dir[4096];
    assert_int_equal(harness_mkdtemp(dir, sizeof dir), 0);
    char mpath[4200];
    snprintf(mpath, sizeof mpath, "%s/mask.img", dir);
    uint16_t *m = malloc(256 * 256 * sizeof(uint16_t));
    long masked_in = 0;
    for (int s = 0; s < 256; s++)
        for (int f = 0; f < 256; f++) {
            int off = (f % 7 == 0 && s % 5 == 0) || s == 25;
            m[s * 256 + f] = off ? 0 : 1;
            int in = 0;
            for (int b = 0; b < NBOXES; b++)
                in |= f >= BOXES[4 * b] && f <= BOXES[4 * b + 1] && s >= BOXES[4 * b + 2] && s <= BOXES[4 * b + 3];
            masked_in += in && off;
        }
    write_mask(mpath, m);
    free(m);
    case_args("e_mosaic", &a); /* no carryover: the selection does not move the exceptional sample */
    harness_push(&a, "-mask");
    harness_push(&a, mpath);
    db_sim *boxed = sim_from(&a), *whole = sim_from(&a);
    harness_args_free(&a);
    assert_int_equal(db_sim_select_boxes(boxed, BOXES, NBOXES, &err), DB_OK);
    long count = db_sim_selected_count(boxed);
    assert_int_equal(count, 31L * 16 + 31 * 21 - 11 * 6 + 32L * 32 + 1 - masked_in);
    double *vals = malloc((size_t)count * sizeof(double));
    assert_int_equal(db_sim_run_selected(boxed, NULL, 0, vals, NULL, &err), DB_OK);
    double *full = image64_of(whole, &n);
    long *pix = malloc((size_t)count * sizeof(long));
    db_sim_selected_pixels(boxed, pix);
    for (long i = 0; i < count; i++) {
        assert_true(db_sim_mask(boxed)[pix[i]] != 0);
        assert_bits_equal(vals[i], full[pix[i]]);
    }
    free(pix);
    free(vals);
    free(full);
    db_sim_destroy(boxed);
    db_sim_destroy(whole);
    harness_rmtree(dir);
}

/* A masked whole-detector run into buffers that hold something else: every masked pixel comes back 0 in the
 * float image, the float64 image and each derivative image (the run zeroes only the gaps between the rendered
 * spans when they are most of the detector), and the rendered ones equal a run into zeroed buffers. */
static void test_unrendered_pixels_zeroed(void **state)
{
    (void)state;
    char dir[4096], mpath[4200];
    assert_int_equal(harness_mkdtemp(dir, sizeof dir), 0);
    snprintf(mpath, sizeof mpath, "%s/mask.img", dir);
    uint16_t *m = malloc(256 * 256 * sizeof(uint16_t));
    for (int s = 0; s < 256; s++)
        for (int f = 0; f < 256; f++) m[s * 256 + f] = ((f % 3 == 0 && s % 2 == 0) || s == 7 || f == 255) ? 0 : 1;
    write_mask(mpath, m);
    db_error err;
    harness_args a;
    case_args("c_phi0_carryover", &a);
    harness_push(&a, "-mask");
    harness_push(&a, mpath);
    db_sim *sim = sim_from(&a);
    harness_args_free(&a);
    size_t npix = 256 * 256;
    long count = db_sim_selected_count(sim);
    assert_true(count > (long)npix / 2 && count < (long)npix); /* the gaps path */
    int params[2];
    assert_int_equal(db_param_parse_list("a,distance", params, &err), 2);
    float *img[2];
    double *img64[2], *grads[2];
    for (int k = 0; k < 2; k++) {
        img[k] = malloc(npix * sizeof(float));
        img64[k] = malloc(npix * sizeof(double));
        grads[k] = malloc(2 * npix * sizeof(double));
        memset(img[k], k ? 0xa5 : 0, npix * sizeof(float));
        memset(img64[k], k ? 0xa5 : 0, npix * sizeof(double));
        memset(grads[k], k ? 0xa5 : 0, 2 * npix * sizeof(double));
        assert_int_equal(db_sim_run_grad(sim, params, 2, img[k], img64[k], grads[k], &err), DB_OK);
    }
    long lit = 0;
    for (size_t i = 0; i < npix; i++) {
        if (!m[i]) assert_true(img[1][i] == 0.0f && img64[1][i] == 0.0 && grads[1][i] == 0.0 && grads[1][npix + i] == 0.0);
        lit += m[i] && img64[1][i] > 0.0;
    }
    assert_true(lit > 100);
    assert_memory_equal(img[0], img[1], npix * sizeof(float));
    assert_memory_equal(img64[0], img64[1], npix * sizeof(double));
    assert_memory_equal(grads[0], grads[1], 2 * npix * sizeof(double));
    for (int k = 0; k < 2; k++) {
        free(img[k]);
        free(img64[k]);
        free(grads[k]);
    }
    free(m);
    db_sim_destroy(sim);
    harness_rmtree(dir);
}

/* -boxes FILE on the command line: the library's selection, pixels outside 0; errors name file and line. */
static void test_boxes_flag(void **state)
{
    (void)state;
    char dir[4096];
    assert_int_equal(harness_mkdtemp(dir, sizeof dir), 0);
    char path[4200];
    snprintf(path, sizeof path, "%s/boxes.txt", dir);
    FILE *f = fopen(path, "w");
    fprintf(f, "# spots\n10 40 20 35\n\n30 60 30 50   # overlaps the first\n100 131 90 121\n");
    fclose(f);
    harness_args a;
    case_args("c_phi0_carryover", &a);
    harness_set(&a, "-floatfile", "f.bin");
    harness_set(&a, "-intfile", "i.img");
    harness_set(&a, "-noisefile", "n.img");
    harness_push(&a, "-floatfile64");
    harness_push(&a, "f64.bin");
    harness_push(&a, "-boxes");
    harness_push(&a, path);
    char src[4200];
    snprintf(src, sizeof src, "%s/c_phi0_carryover", DB_GOLDEN_DIR);
    assert_int_equal(harness_run(DB_CLI_PATH, dir, &a, 2), 0);
    char out[4300];
    snprintf(out, sizeof out, "%s/f64.bin", dir);
    size_t len;
    unsigned char *cli = harness_read(out, &len);
    assert_non_null(cli);
    db_sim *sim = sim_from(&a);
    db_error err;
    assert_int_equal(db_sim_selected_count(sim), 31L * 16 + 31 * 21 - 11 * 6 + 32L * 32);
    size_t n;
    assert_int_equal(chdir(dir), 0);
    double *lib = image64_of(sim, &n);
    assert_int_equal(len, n * sizeof(double));
    assert_memory_equal(cli, lib, len);
    free(cli);
    free(lib);
    db_sim_destroy(sim);
    /* a malformed line */
    f = fopen(path, "w");
    fprintf(f, "10 40 20 35\n1 2 3\n");
    fclose(f);
    assert_int_equal(harness_run(DB_CLI_PATH, dir, &a, 2), 1);
    snprintf(out, sizeof out, "%s/out.log", dir);
    char *log = harness_read_text(out);
    assert_non_null(log);
    char want[4300];
    snprintf(want, sizeof want, "%s:2:", path);
    if (!strstr(log, want)) fail_msg("no '%s' in: %s", want, log);
    free(log);
    /* gradcheck checks the boxes */
    f = fopen(path, "w");
    fprintf(f, "120 127 120 127\n124 131 124 131\n");
    fclose(f);
    harness_args g = {0};
    for (int i = 0; i < a.argc; i++) harness_push(&g, a.argv[i]);
    harness_push(&g, "-grad");
    harness_push(&g, "a,phi0");
    harness_push(&g, "-precise");
    (void)err;
    assert_int_equal(harness_run(DB_GRADCHECK_PATH, dir, &g, 2), 0);
    log = harness_read_text(out);
    if (!strstr(log, "gradcheck on 2 boxes within 120 131 120 131") || !strstr(log, "   112 ")) fail_msg("%s", log);
    free(log);
    harness_args_free(&g);
    harness_args_free(&a);
    harness_rmtree(dir);
}

/* ---- threads, traces ---- */

typedef struct thread_job {
    harness_args a;
    double *grads;
    size_t n;
} thread_job;

/* The arguments, made in the main thread (the harness's tokenizer is not reentrant). */
static void job_args(thread_job *j, const char *name)
{
    memset(j, 0, sizeof *j);
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/%s", DB_GOLDEN_DIR, name);
    assert_int_equal(harness_case_args(DB_GOLDEN_DIR, name, 1, &j->a), 0);
    const char *roi[] = {"-roi", "30", "90", "30", "90"};
    for (int k = 0; k < 5; k++) harness_push(&j->a, roi[k]);
    /* absolute paths: the threads share one working folder */
    for (int i = 0; i + 1 < j->a.argc; i++)
        if (!strcmp(j->a.argv[i], "-hkl") || !strcmp(j->a.argv[i], "-mat") || !strcmp(j->a.argv[i], "-sourcefile")) {
            char p[4300];
            snprintf(p, sizeof p, "%s/%s", dir, j->a.argv[i + 1]);
            free(j->a.argv[i + 1]);
            j->a.argv[i + 1] = strdup(p);
        }
}

static void *grads_of_case(void *arg)
{
    thread_job *j = (thread_job *)arg;
    harness_args a = j->a;
    db_config *cfg = db_config_create();
    db_error err;
    db_sim *sim = NULL;
    if (!db_config_parse(cfg, a.argc, (const char *const *)a.argv, &err) && !db_sim_create(&sim, cfg, NULL, &err)) {
        int F, S;
        db_sim_size(sim, &F, &S);
        j->n = (size_t)F * S;
        int params[64];
        int np = db_param_parse_list("a,b,misset_y,phi0,osc,distance", params, &err);
        float *img = malloc(j->n * sizeof(float));
        j->grads = malloc((size_t)(np + 1) * j->n * sizeof(double));
        if (db_sim_run_grad(sim, params, np, img, j->grads + (size_t)np * j->n, j->grads, &err)) {
            free(j->grads);
            j->grads = NULL;
        }
        j->n *= (size_t)(np + 1);
        free(img);
    }
    db_sim_destroy(sim);
    db_config_destroy(cfg);
    return NULL;
}

static void test_simulations_in_threads(void **state)
{
    (void)state;
    const char *cases[] = {"c_phi0_carryover", "e_mosaic", "b2_interp", "k_matfile"};
    enum { NC = 4 };
    thread_job seq[NC], par[NC];
    for (int i = 0; i < NC; i++) {
        job_args(&seq[i], cases[i]);
        grads_of_case(&seq[i]);
        assert_non_null(seq[i].grads);
    }
    pthread_t t[NC];
    for (int i = 0; i < NC; i++) {
        job_args(&par[i], cases[i]);
        assert_int_equal(pthread_create(&t[i], NULL, grads_of_case, &par[i]), 0);
    }
    for (int i = 0; i < NC; i++) assert_int_equal(pthread_join(t[i], NULL), 0);
    for (int i = 0; i < NC; i++) {
        assert_non_null(par[i].grads);
        assert_int_equal(par[i].n, seq[i].n);
        assert_memory_equal(par[i].grads, seq[i].grads, seq[i].n * sizeof(double));
        free(par[i].grads);
        free(seq[i].grads);
        harness_args_free(&par[i].a);
        harness_args_free(&seq[i].a);
    }
}

static void test_trace_keeps_last_run(void **state)
{
    (void)state;
    harness_args a;
    case_args("b2_interp", &a); /* interpolation switches off mid-run: a recorded decision */
    db_sim *sim = sim_from(&a);
    harness_args_free(&a);
    size_t n;
    double *img = image64_of(sim, &n);
    db_decisions before;
    memset(&before, 0, sizeof before);
    assert_int_equal(db_decisions_copy(&before, db_sim_captured(sim)), DB_OK);
    db_run_summary s0, s1;
    assert_int_equal(db_sim_summary(sim, &s0), DB_OK);
    FILE *devnull = fopen("/dev/null", "w");
    db_error err;
    int params[3];
    assert_int_equal(db_param_parse_list("a,na,distance", params, &err), 3);
    assert_int_equal(db_sim_trace_pixel(sim, 100, 120, params, 3, devnull, &err), DB_OK);
    float *fimg = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) fimg[i] = (float)img[i];
    assert_int_equal(db_sim_printout(sim, 100, 120, fimg, devnull, &err), DB_OK);
    fclose(devnull);
    const db_decisions *after = db_sim_captured(sim);
    assert_int_equal(after->exc_pixel, before.exc_pixel);
    assert_int_equal(after->exc_sample, before.exc_sample);
    assert_int_equal(after->interp_trip, before.interp_trip);
    assert_int_equal(after->nphi, before.nphi);
    assert_memory_equal(after->slot_normal, before.slot_normal, (size_t)before.nphi * sizeof(int));
    assert_int_equal(db_sim_summary(sim, &s1), DB_OK);
    assert_memory_equal(&s0, &s1, sizeof s0);
    /* a pixel the run did not render is refused */
    int box[] = {0, 9, 0, 9};
    assert_int_equal(db_sim_select_boxes(sim, box, 1, &err), DB_OK);
    double v[100];
    assert_int_equal(db_sim_run_selected(sim, NULL, 0, v, NULL, &err), DB_OK);
    devnull = fopen("/dev/null", "w");
    assert_int_not_equal(db_sim_trace_pixel(sim, 100, 120, NULL, 0, devnull, &err), DB_OK);
    assert_non_null(strstr(err.message, "not rendered"));
    assert_int_not_equal(db_sim_printout(sim, 5000, 5000, fimg, devnull, &err), DB_OK);
    assert_non_null(strstr(err.message, "outside"));
    fclose(devnull);
    db_decisions_free(&before);
    free(fimg);
    free(img);
    db_sim_destroy(sim);
}

/* ---- a non-whole number of cells ---- */

static double max_of(const double *x, size_t n)
{
    double m = 0.0;
    for (size_t i = 0; i < n; i++) m = fmax(m, x[i]);
    return m;
}

static double *run_with_N(const char *flag, const char *value, size_t *n)
{
    harness_args a;
    case_args("a_cubic", &a);
    harness_push(&a, flag);
    harness_push(&a, value);
    harness_push(&a, "-roi");
    harness_push(&a, "100");
    harness_push(&a, "163");
    harness_push(&a, "100");
    harness_push(&a, "163");
    db_sim *sim = sim_from(&a);
    harness_args_free(&a);
    double *img = image64_of(sim, n);
    db_sim_destroy(sim);
    return img;
}

static void test_noninteger_N(void **state)
{
    (void)state;
    size_t n;
    /* the peak at N = 7.1 lies between those at 7 and 8 (N^2 per axis), not 1e5 times above */
    double *i7 = run_with_N("-Na", "7", &n), *i71 = run_with_N("-Na", "7.1", &n), *i8 = run_with_N("-Na", "8", &n);
    double m7 = max_of(i7, n), m71 = max_of(i71, n), m8 = max_of(i8, n);
    if (!(m71 > 0.9 * m7 && m71 < 1.1 * m8)) fail_msg("peak at Na 7.1 = %g, at 7 = %g, at 8 = %g", m71, m7, m8);
    free(i7);
    free(i71);
    free(i8);
    /* derivative images against central differences of plain runs (4-point stencil, h = 1e-3: truncation
     * O(h^4) ~ 1e-12 relative; rounding ~ 1e-16 |I| / h = 1e-13 |I|, far below rtol 1e-6 of |dI|) */
    const char *flags[] = {"-Na", "-Nb", "-Nc"};
    const char *names[] = {"na", "nb", "nc"};
    const double N0 = 6.3, h = 1e-3;
    for (int ax = 0; ax < 3; ax++) {
        test_context("%s at %g", names[ax], N0);
        double *fd[4];
        const double off[4] = {2, 1, -1, -2};
        for (int j = 0; j < 4; j++) {
            char v[64];
            snprintf(v, sizeof v, "%.17g", N0 + off[j] * h);
            fd[j] = run_with_N(flags[ax], v, &n);
        }
        char v0[32];
        snprintf(v0, sizeof v0, "%g", N0);
        harness_args a;
        case_args("a_cubic", &a);
        harness_push(&a, flags[ax]);
        harness_push(&a, v0);
        const char *roi[] = {"-roi", "100", "163", "100", "163"};
        for (int k = 0; k < 5; k++) harness_push(&a, roi[k]);
        db_sim *sim = sim_from(&a);
        harness_args_free(&a);
        int p = db_param_from_name(names[ax]);
        float *img = malloc(n * sizeof(float));
        double *g = malloc(n * sizeof(double)), *img64 = malloc(n * sizeof(double));
        db_error err;
        assert_int_equal(db_sim_run_grad(sim, &p, 1, img, img64, g, &err), DB_OK);
        /* the derivative run's image is the plain run's, up to the rounding of the reference's form on the other
         * two (whole-N) axes, which an N derivative run evaluates in the dh form too (1e-13 relative at |h| ~ 20) */
        double *plain = image64_of(sim, &n);
        double maxp = max_of(plain, n);
        for (size_t i = 0; i < n; i++) assert_close(img64[i], plain[i], 0, 1e-10 * maxp);
        double maxg = 0.0;
        for (size_t i = 0; i < n; i++) maxg = fmax(maxg, fabs(g[i]));
        assert_true(maxg > 0.0);
        long checked = 0;
        for (size_t i = 0; i < n; i++) {
            double d = (8.0 * (fd[1][i] - fd[2][i]) - (fd[0][i] - fd[3][i])) / (12.0 * h);
            assert_close(g[i], d, 1e-6, 1e-9 * maxg);
            checked += fabs(d) > 1e-3 * maxg;
        }
        assert_true(checked > 100);
        for (int j = 0; j < 4; j++) free(fd[j]);
        free(plain);
        free(img);
        free(g);
        free(img64);
        db_sim_destroy(sim);
    }
    test_context(NULL);
}

/* The work of a run, known before it starts; far too much is refused with the figure instead of running for
 * years. */
static void test_work_estimate(void **state)
{
    (void)state;
    harness_args a = {0};
    const char *args[] = {"-cell", "100", "100", "100", "90", "90", "90", "-default_F", "100", "-N", "5", "-detpixels", "64",
                          "-oversample", "3", "-phisteps", "4", "-osc", "0.4", "-mosaic", "0.2", "-mosaic_dom", "5",
                          "-hdivrange", "0.1", "-hdivsteps", "3"};
    for (size_t i = 0; i < sizeof args / sizeof args[0]; i++) harness_push(&a, args[i]);
    db_sim *sim = sim_from(&a);
    harness_args_free(&a);
    double it, sec;
    db_error err;
    assert_int_equal(db_sim_work_estimate(sim, &it, 1e6, &sec, &err), DB_OK);
    /* 64^2 pixels x 3^2 sub-pixels x 3 sources x 4 phi steps x 5 domains */
    assert_true(it == 64.0 * 64 * 9 * 3 * 4 * 5);
    assert_true(sec == it / 1e6);
    const int box[] = {0, 9, 0, 4};
    assert_int_equal(db_sim_select_boxes(sim, box, 1, &err), DB_OK);
    assert_int_equal(db_sim_work_estimate(sim, &it, 0, NULL, &err), DB_OK);
    assert_true(it == 50.0 * 9 * 3 * 4 * 5);
    db_sim_destroy(sim);

    const char *huge[] = {"-cell", "100", "100", "100", "90", "90", "90", "-default_F", "100", "-N", "5", "-detpixels", "2048",
                          "-oversample", "1000", "-detector_thick", "0.1", "-detector_thicksteps", "1000"};
    for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++) harness_push(&a, huge[i]);
    sim = sim_from(&a);
    harness_args_free(&a);
    float *img = malloc((size_t)2048 * 2048 * sizeof(float));
    assert_int_not_equal(db_sim_run(sim, img, NULL, &err), DB_OK);
    if (!strstr(err.message, "4.19e+15 inner iterations")) fail_msg("%s", err.message);
    free(img);
    db_sim_destroy(sim);
}

/* Passes that differentiate crystal parameters only evaluate the detector geometry in plain doubles (the primal
 * engine's functions); the images must be those of the all-dual evaluation. */
static void test_plain_geometry_equals_dual(void **state)
{
    (void)state;
    const char *cases[] = {"c_phi0_carryover", "g_os_thick_polar", "m_curved_det", "f_div_disp", "o_flux_dmin"};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        test_context("%s", cases[c]);
        harness_args a;
        case_args(cases[c], &a);
        const char *roi[] = {"-roi", "40", "103", "40", "103"};
        for (int k = 0; k < 5; k++) harness_push(&a, roi[k]);
        db_sim *sim = sim_from(&a);
        harness_args_free(&a);
        int F, S;
        db_sim_size(sim, &F, &S);
        size_t n = (size_t)F * S;
        int params[64];
        db_error err;
        int np = db_param_parse_list("a,b,c,alpha,beta,gamma,misset_x,misset_y,misset_z,phi0,osc", params, &err);
        float *img = malloc(n * sizeof(float));
        double *v[2], *g[2];
        for (int m = 0; m < 2; m++) {
            if (m) setenv("DUALBRAGG_DUAL_GEOMETRY", "1", 1);
            v[m] = malloc(n * sizeof(double));
            g[m] = malloc((size_t)np * n * sizeof(double));
            assert_int_equal(db_sim_run_grad(sim, params, np, img, v[m], g[m], &err), DB_OK);
            unsetenv("DUALBRAGG_DUAL_GEOMETRY");
        }
        assert_memory_equal(v[0], v[1], n * sizeof(double));
        long nonzero = 0;
        for (size_t i = 0; i < (size_t)np * n; i++) {
            assert_true(g[0][i] == g[1][i]); /* equal numbers; a zero may differ in sign */
            nonzero += g[0][i] != 0.0;
        }
        assert_true(nonzero > 1000);
        for (int m = 0; m < 2; m++) {
            free(v[m]);
            free(g[m]);
        }
        free(img);
        db_sim_destroy(sim);
    }
    test_context(NULL);
}

static void test_grad_list_trailing_comma(void **state)
{
    (void)state;
    int p[64];
    db_error err;
    assert_int_equal(db_param_parse_list("a,", p, &err), -1);
    assert_non_null(strstr(err.message, "empty"));
    assert_int_equal(db_param_parse_list(",a", p, &err), -1);
    assert_int_equal(db_param_parse_list("a,,b", p, &err), -1);
    assert_int_equal(db_param_parse_list("a,twotheta,detector_rotz", p, &err), 3);
    assert_int_equal(db_param_count(), 26);
    assert_string_equal(db_param_unit(db_param_from_name("detector_roty")), "deg");
}

/* db_sim_get_params gives back a set value exactly (a refinement loop compares them), though the configuration holds
 * it divided by its unit (mm to m, degrees to radians), which need not round-trip. */
static void test_get_returns_set_values(void **state)
{
    (void)state;
    harness_args a;
    case_args("b_triclinic", &a);
    db_sim *sim = sim_from(&a);
    /* ranges where v / unit * unit misses v for some values: mantissas above the unit's (1.79 for degrees to
     * radians, 1.95 for mm to m) */
    const struct { const char *name; double lo, hi, unit; } cases[] = {
        {"misset_x", 29.0, 31.9, 180.0 / M_PI}, {"alpha", 58.0, 63.9, 180.0 / M_PI},
        {"distance", 125.0, 127.9, 1000.0},     {"xbeam", 15.7, 15.99, 1000.0},
    };
    db_error err;
    int roundtrip_fails = 0;
    for (size_t n = 0; n < sizeof cases / sizeof cases[0]; n++) {
        int p = db_param_from_name(cases[n].name);
        double base;
        assert_int_equal(db_sim_get_params(sim, &p, &base, 1, &err), 0);
        for (int k = 0; k < 200; k++) {
            double v = cases[n].lo + (cases[n].hi - cases[n].lo) * k / 200.0, got;
            assert_int_equal(db_sim_set_params(sim, &p, &v, 1, &err), 0);
            assert_int_equal(db_sim_get_params(sim, &p, &got, 1, &err), 0);
            assert_true(memcmp(&got, &v, sizeof v) == 0);
            roundtrip_fails += v / cases[n].unit * cases[n].unit != v; /* what the stored value is for */
        }
        assert_int_equal(db_sim_set_params(sim, &p, &base, 1, &err), 0);
    }
    print_message("%d of 800 values would not have come back through the unit conversion alone\n", roundtrip_fails);
    assert_true(roundtrip_fails > 0);
    /* moving b leaves a's given value standing */
    int pa = db_param_from_name("a"), pb = db_param_from_name("b");
    double va = 70.00000000000001, vb = 80.5, got;
    assert_int_equal(db_sim_set_params(sim, &pa, &va, 1, &err), 0);
    assert_int_equal(db_sim_set_params(sim, &pb, &vb, 1, &err), 0);
    assert_int_equal(db_sim_get_params(sim, &pa, &got, 1, &err), 0);
    assert_true(memcmp(&got, &va, sizeof va) == 0);
    db_sim_destroy(sim);
    harness_args_free(&a);
}

/* ---- issue 18: the run layer against independent computations (each names the mutants of tests/mutation/ it
 * guards) ---- */

/* A simulation from a command line (files relative to the golden case `folder`), on `device` (NULL: the CPU). */
static db_sim *sim_of_line(const char *folder, const char *line, const char *device)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/%s", DB_GOLDEN_DIR, folder);
    assert_int_equal(chdir(dir), 0);
    harness_args a = {0};
    harness_split(&a, line);
    db_sim *sim = sim_from(&a);
    harness_args_free(&a);
    db_error err;
    if (device && db_sim_set_device(sim, device, &err)) fail_msg("%s: %s", device, err.message);
    return sim;
}

/* The float64 image of a run over the current selection (0 outside it). */
static double *run64(db_sim *sim)
{
    size_t n;
    return image64_of(sim, &n);
}

static int in_boxes(const int *boxes, int nboxes, int f, int s)
{
    for (int b = 0; b < nboxes; b++)
        if (f >= boxes[4 * b] && f <= boxes[4 * b + 1] && s >= boxes[4 * b + 2] && s <= boxes[4 * b + 3]) return 1;
    return 0;
}

/* Boxes at the detector's edges (its first and last row and column, a one-column box on the last column), boxes that
 * share exactly one column, touch without sharing, nest, and come in no row order: the selection (count, pixel list,
 * each pixel's position, the selected values of both runs) against the union computed here pixel by pixel, on a
 * rectangular detector (64 fast x 48 slow). Guards run-segment-last-pixel, run-merge-touching, run-merge-nested,
 * run-box-ymin, run-box-edge-check, run-find-span-end. */
static void test_selection_edges_against_a_mask(void **state)
{
    (void)state;
    const char *line = "-cell 100 -misset 10 20 30 -default_F 100 -N 5 -lambda 1 -distance 60 -pixel 0.1 "
                       "-detpixels_f 64 -detpixels_s 48 -oversample 1";
    db_sim *sim = sim_of_line("a_cubic", line, NULL), *whole = sim_of_line("a_cubic", line, NULL);
    const int F = 64, S = 48;
    const int boxes[] = {
        40, 60, 10, 20, /* first in the list, not the first row: the rows scanned start at the smallest ymin */
        45, 50, 12, 14, /* inside the one above */
        0, 9, 0, 4,     /* the detector's first row and column */
        10, 19, 2, 6,   /* touches the one above (column 10 follows 9) */
        19, 30, 3, 8,   /* shares column 19 with the one above */
        56, 63, 40, 47, /* the last rows and columns */
        63, 63, 20, 25, /* one column, the last */
    };
    const int nb = (int)(sizeof boxes / sizeof boxes[0] / 4);
    db_error err;
    assert_int_equal(db_sim_select_boxes(sim, boxes, nb, &err), DB_OK);
    long want = 0;
    for (int s = 0; s < S; s++)
        for (int f = 0; f < F; f++) want += in_boxes(boxes, nb, f, s);
    assert_int_equal(db_sim_selected_count(sim), want);
    long *pix = malloc((size_t)want * sizeof(long));
    assert_int_equal(db_sim_selected_pixel_list(sim, pix, want, &err), want);
    long k = 0;
    for (int s = 0; s < S; s++)
        for (int f = 0; f < F; f++) {
            long pos = -1;
            int found = db_sim_selected_pos(sim, f, s, &pos);
            if (!in_boxes(boxes, nb, f, s)) {
                if (found) fail_msg("pixel %d %d is outside the boxes but selected", f, s);
                continue;
            }
            if (!found || pos != k) fail_msg("pixel %d %d: selected %d at position %ld, expected %ld", f, s, found, pos, k);
            assert_int_equal(pix[k], (long)s * F + f);
            k++;
        }
    assert_int_equal(k, want);
    /* the values: the whole detector's image at the selected pixels, 0 elsewhere */
    double *full = run64(whole), *boxed = run64(sim), *vals = malloc((size_t)want * sizeof(double));
    assert_int_equal(db_sim_run_selected(sim, NULL, 0, vals, NULL, &err), DB_OK);
    long lit = 0;
    for (int i = 0; i < F * S; i++) {
        if (!in_boxes(boxes, nb, i % F, i / F)) assert_true(boxed[i] == 0.0);
        else assert_bits_equal(boxed[i], full[i]);
    }
    for (long i = 0; i < want; i++) {
        assert_bits_equal(vals[i], full[pix[i]]);
        lit += vals[i] > 0.0;
    }
    assert_true(lit > 20);
    /* boxes reaching the last row and column are accepted; one pixel further is refused */
    const int edge[] = {0, F - 1, 0, S - 1};
    assert_int_equal(db_sim_select_boxes(sim, edge, 1, &err), DB_OK);
    assert_int_equal(db_sim_selected_count(sim), (long)F * S);
    const int past[][4] = {{0, F - 1, 0, S}, {0, F, 0, S - 1}, {-1, 3, 0, 3}, {0, 3, -1, 3}, {F - 1, F, S - 1, S - 1}};
    for (size_t b = 0; b < sizeof past / sizeof past[0]; b++) {
        test_context("box %d %d %d %d", past[b][0], past[b][1], past[b][2], past[b][3]);
        assert_int_not_equal(db_sim_select_boxes(sim, past[b], 1, &err), DB_OK);
        assert_non_null(strstr(err.message, "outside"));
    }
    test_context(NULL);
    free(pix);
    free(full);
    free(boxed);
    free(vals);
    db_sim_destroy(sim);
    db_sim_destroy(whole);
}

/* b2_interp's crystal with -interpolate on a 96 x 80 detector whose beam centre puts the structure-factor table's
 * edge inside the detector: a run switches interpolation off at an out-of-range sample in the middle of the run
 * (row 63, column 0), with 2 x 2 sub-pixels so that the tripping pixel holds interpolated samples before the trip. */
#define TRIP_LINE "-cell 70 80 90 75 85 95 -misset 10 20 30 -hkl P1.hkl -N 2 -lambda 1 -distance 60 -pixel 0.1 " \
                  "-detpixels_f 96 -detpixels_s 80 -Xbeam 0 -Ybeam 6 -oversample 2 -interpolate"

/* One run's switch-off against what it must equal, computed without the switch-off: every selected pixel before the
 * tripping pixel P (row-major) equals a run over the pixels before P only (which never trips), every one after P
 * equals a run with -nointerpolate, and P equals neither (its samples before the trip are interpolated). `boxes`
 * NULL: the whole detector. The image, run_selected's values and the captured trip pixel; on `device`. */
static void check_switch_off(const char *device, const int *boxes, int nb, long P, const double *pre, const double *off)
{
    const int F = 96, S = 80;
    db_sim *sim = sim_of_line("b2_interp", TRIP_LINE, device);
    db_error err;
    if (boxes) assert_int_equal(db_sim_select_boxes(sim, boxes, nb, &err), DB_OK);
    double *img = run64(sim);
    db_run_summary sum;
    assert_int_equal(db_sim_summary(sim, &sum), DB_OK);
    assert_int_equal(sum.interpolation_switched_off, 1);
    assert_int_equal(db_sim_captured(sim)->interp_trip, P);
    long count = db_sim_selected_count(sim), k = 0, after = 0;
    double *vals = malloc((size_t)count * sizeof(double));
    assert_int_equal(db_sim_run_selected(sim, NULL, 0, vals, NULL, &err), DB_OK);
    assert_int_equal(db_sim_captured(sim)->interp_trip, P);
    for (long i = 0; i < (long)F * S; i++) {
        int sel = !boxes || in_boxes(boxes, nb, (int)(i % F), (int)(i / F));
        if (!sel) {
            assert_true(img[i] == 0.0);
            continue;
        }
        test_context("%s, %s, pixel %ld %ld (trip at %ld %ld)", device, boxes ? "boxes" : "whole detector", i % F, i / F,
                     P % F, P / F);
        if (i < P) {
            assert_bits_equal(img[i], pre[i]);
        } else if (i > P) {
            assert_bits_equal(img[i], off[i]);
            after++;
        } else {
            assert_true(img[i] != off[i] && img[i] != pre[i]);
        }
        assert_bits_equal(vals[k], img[i]);
        k++;
    }
    test_context(NULL);
    assert_int_equal(k, count);
    assert_true(after > 100);
    free(vals);
    free(img);
    db_sim_destroy(sim);
}

/* The interpolation switch-off in the middle of a run, on the CPU and on the emulated GPU (the GPU thread function
 * and the host-side scatter of kernels/gpu_host.c): the whole detector (the re-render starts inside row 63's span),
 * boxes where the tripping pixel is the last pixel of its span and the first of its span after a span of the row
 * before, and a replay of the captured decisions (what gradcheck's finite differences do). Guards
 * run-trip-rerender-from, run-trip-last, run-pos-to-pixel, run-count-upto, run-find-span-end, run-force-invalidate,
 * gpu-job-from, gpu-scatter-f0, gpu-scatter-compact, gpu-scatter-tripped, gpu-thread-trip. */
static void test_interpolation_switch_off_mid_run(void **state)
{
    (void)state;
    const int F = 96, S = 80;
    db_error err;
    db_sim *sim = sim_of_line("b2_interp", TRIP_LINE, NULL);
    double *img = run64(sim);
    const long P = db_sim_captured(sim)->interp_trip;
    const int fP = (int)(P % F), sP = (int)(P / F);
    /* the configuration is chosen for this: a trip in the middle of the run, at the first column */
    assert_int_equal(fP, 0);
    assert_true(sP > 20 && sP < S - 10);
    /* the pixels before P, alone: rows 0 .. sP - 1 (P is the first pixel of its row) */
    const int before[] = {0, F - 1, 0, sP - 1};
    db_sim *pre_sim = sim_of_line("b2_interp", TRIP_LINE, NULL);
    assert_int_equal(db_sim_select_boxes(pre_sim, before, 1, &err), DB_OK);
    double *pre = run64(pre_sim);
    db_run_summary sum;
    assert_int_equal(db_sim_summary(pre_sim, &sum), DB_OK);
    assert_int_equal(sum.interpolation_switched_off, 0);
    /* P alone trips at P */
    const int alone[] = {fP, fP, sP, sP};
    assert_int_equal(db_sim_select_boxes(pre_sim, alone, 1, &err), DB_OK);
    free(run64(pre_sim));
    assert_int_equal(db_sim_captured(pre_sim)->interp_trip, P);
    db_sim_destroy(pre_sim);
    db_sim *off_sim = sim_of_line("b2_interp", TRIP_LINE " -nointerpolate", NULL);
    double *off = run64(off_sim);
    db_sim_destroy(off_sim);

    /* boxes: P the last pixel of its span (a one-column box), and the first of its span after a span in row
     * sP - 1 (box 2 ends on the row before P's: its span precedes P's span in the selection) */
    const int last_of_span[] = {0, 0, sP - 8, sP + 8, 4, 40, sP - 3, sP + 12};
    const int first_of_span[] = {0, 30, sP, sP + 10, 20, 50, sP - 6, sP - 1};
    const char *devices[] = {"cpu", "emulate"};
    for (int d = 0; d < 2; d++) {
        check_switch_off(devices[d], NULL, 0, P, pre, off);
        check_switch_off(devices[d], last_of_span, 2, P, pre, off);
        check_switch_off(devices[d], first_of_span, 2, P, pre, off);
        /* a replay of the captured decisions gives the same image, and forcing nothing afterwards runs as before */
        db_sim *src = sim_of_line("b2_interp", TRIP_LINE, NULL), *rep = sim_of_line("b2_interp", TRIP_LINE, devices[d]);
        assert_int_equal(db_sim_select_boxes(src, last_of_span, 2, &err), DB_OK);
        assert_int_equal(db_sim_select_boxes(rep, last_of_span, 2, &err), DB_OK);
        double *want = run64(src), *first = run64(rep);
        assert_memory_equal(first, want, (size_t)F * S * sizeof(double));
        assert_int_equal(db_sim_force_decisions(rep, db_sim_captured(src), &err), DB_OK);
        double *forced = run64(rep);
        assert_memory_equal(forced, want, (size_t)F * S * sizeof(double));
        assert_int_equal(db_sim_force_decisions(rep, NULL, &err), DB_OK);
        double *unforced = run64(rep);
        assert_memory_equal(unforced, want, (size_t)F * S * sizeof(double));
        free(want);
        free(first);
        free(forced);
        free(unforced);
        /* forced decisions replace those of blocks already built: interpolation off, from a -nointerpolate run */
        db_sim *noint = sim_of_line("b2_interp", TRIP_LINE " -nointerpolate", NULL);
        free(run64(noint));
        assert_int_equal(db_sim_select_boxes(rep, NULL, 0, &err), DB_OK);
        free(run64(rep)); /* blocks built with interpolation on */
        assert_int_equal(db_sim_force_decisions(rep, db_sim_captured(noint), &err), DB_OK);
        double *as_off = run64(rep);
        assert_memory_equal(as_off, off, (size_t)F * S * sizeof(double));
        free(as_off);
        db_sim_destroy(noint);
        db_sim_destroy(src);
        db_sim_destroy(rep);
    }
    free(img);
    free(pre);
    free(off);
    db_sim_destroy(sim);
}

/* The table-block cache: a cached block must match everything its tables depend on. A plain run after runs with an N
 * derivative (the dh form of the lattice factor for the whole run, README "Derivatives"), a value change that
 * switches the lattice form (a non-whole N) and back, and runs of 1, 2, 5, 13 directions (more blocks than the
 * cache holds): each equal, bit for bit, to what a fresh simulation gives for the same run. Guards run-cache-dh,
 * run-cache-lru. */
static void test_block_cache_matches_fresh(void **state)
{
    (void)state;
    const char *line = "-cell 70 80 90 75 85 95 -misset 10 20 30 -hkl P1.hkl -Na 4 -Nb 5 -Nc 6 -lambda 1 -distance 100 "
                       "-pixel 0.1 -detpixels 64 -oversample 1";
    const size_t n = 64 * 64;
    db_error err;
    db_sim *fresh = sim_of_line("b_triclinic", line, NULL);
    double *plain = run64(fresh);
    /* the dh form's plain image (what gradcheck runs) differs from the reference's form by rounding somewhere: a
     * block of the other form would show */
    db_sim_set_fd_mode(fresh, 0, 1);
    double *dh_plain = run64(fresh);
    assert_true(memcmp(dh_plain, plain, n * sizeof(double)) != 0);
    free(dh_plain);
    db_sim_destroy(fresh);
    int na = db_param_from_name("na");
    float *img = malloc(n * sizeof(float));
    double *dh = malloc(n * sizeof(double)), *g = malloc(n * sizeof(double));
    double *dh2 = malloc(n * sizeof(double)), *g2 = malloc(n * sizeof(double));
    /* an N derivative first (its pass builds the primal block of the dh form for the geometry), then a plain run */
    db_sim *sim = sim_of_line("b_triclinic", line, NULL);
    assert_int_equal(db_sim_run_grad(sim, &na, 1, img, dh, g, &err), DB_OK);
    double *again = run64(sim);
    assert_memory_equal(again, plain, n * sizeof(double));
    free(again);
    /* a value set after the N derivative (set_params builds the primal block at once, in the last run's form): the
     * next plain run is a fresh simulation's at that value */
    int pa = db_param_from_name("a");
    double a1 = 70.1;
    assert_int_equal(db_sim_run_grad(sim, &na, 1, img, dh, g, &err), DB_OK);
    assert_int_equal(db_sim_set_params(sim, &pa, &a1, 1, &err), DB_OK);
    again = run64(sim);
    fresh = sim_of_line("b_triclinic", line, NULL);
    assert_int_equal(db_sim_set_params(fresh, &pa, &a1, 1, &err), DB_OK);
    double *fresh_a1 = run64(fresh);
    db_sim_destroy(fresh);
    assert_memory_equal(again, fresh_a1, n * sizeof(double));
    free(again);
    free(fresh_a1);
    double a0 = 70.0;
    assert_int_equal(db_sim_set_params(sim, &pa, &a0, 1, &err), DB_OK);
    assert_int_equal(db_sim_run_grad(sim, &na, 1, img, dh, g, &err), DB_OK);
    /* a plain run first, then the N derivative: the images of a fresh simulation's */
    db_sim *other = sim_of_line("b_triclinic", line, NULL);
    free(run64(other));
    assert_int_equal(db_sim_run_grad(other, &na, 1, img, dh2, g2, &err), DB_OK);
    assert_memory_equal(dh2, dh, n * sizeof(double));
    assert_memory_equal(g2, g, n * sizeof(double));
    db_sim_destroy(other);
    free(dh2);
    free(g2);
    /* a non-whole N (the dh form in every run) and back */
    double half = 4.5, whole = 4.0;
    assert_int_equal(db_sim_set_params(sim, &na, &half, 1, &err), DB_OK);
    double *at_half = run64(sim);
    char line_half[512];
    snprintf(line_half, sizeof line_half, "%s -Na 4.5", line);
    fresh = sim_of_line("b_triclinic", line_half, NULL);
    double *fresh_half = run64(fresh);
    db_sim_destroy(fresh);
    assert_memory_equal(at_half, fresh_half, n * sizeof(double));
    assert_int_equal(db_sim_set_params(sim, &na, &whole, 1, &err), DB_OK);
    again = run64(sim);
    assert_memory_equal(again, plain, n * sizeof(double));
    free(again);
    free(at_half);
    free(fresh_half);
    /* more blocks than the cache holds (n0, n1, n4, n12, n28): each pass against a fresh simulation's */
    const char *lists[] = {"a", "a,b", "a,b,c,alpha,beta", "a,b,c,alpha,beta,gamma,misset_x,misset_y,misset_z,phi0,distance,lambda,fluence",
                           "b", "a,b"};
    for (size_t l = 0; l < sizeof lists / sizeof lists[0]; l++) {
        test_context("-grad %s", lists[l]);
        int params[32], np = db_param_parse_list(lists[l], params, &err);
        assert_true(np > 0);
        double *ga = malloc((size_t)np * n * sizeof(double)), *gb = malloc((size_t)np * n * sizeof(double));
        double *ia = malloc(n * sizeof(double)), *ib = malloc(n * sizeof(double));
        assert_int_equal(db_sim_run_grad(sim, params, np, img, ia, ga, &err), DB_OK);
        fresh = sim_of_line("b_triclinic", line, NULL);
        assert_int_equal(db_sim_run_grad(fresh, params, np, img, ib, gb, &err), DB_OK);
        db_sim_destroy(fresh);
        assert_memory_equal(ia, ib, n * sizeof(double));
        assert_memory_equal(ga, gb, (size_t)np * n * sizeof(double));
        again = run64(sim);
        assert_memory_equal(again, plain, n * sizeof(double));
        free(again);
        free(ga);
        free(gb);
        free(ia);
        free(ib);
    }
    test_context(NULL);
    free(img);
    free(dh);
    free(g);
    free(plain);
    db_sim_destroy(sim);
}

/* The run summary against the image it summarises, computed here in the reference's way (appendix A4.2): over the
 * rendered pixels mean = sum / n, rms = sqrt(sum v^2 / (n - 1)), rmsd = sqrt(sum (v - mean)^2 / (n - 1)); the
 * maximum is the first brightest pixel in row-major order and its position that of its last sub-pixel,
 * (i * os + os - 1) * pixel / os + pixel / (2 os) in metres. A boxed run's statistics are over its boxes (not the
 * -roi with zeros), a symmetric image has ties for the maximum, and -oversample 2 moves the position. The sums are
 * of the same float values in the same order as the library's, so they agree to rounding: 1e-12 relative. Guards
 * run-stats-max-tie, run-stats-max-x, run-stats-rms, run-stats-boxed-rmsd. */
static void check_summary(db_sim *sim, const int *boxes, int nb, int os, int want_ties)
{
    int F, S;
    db_sim_size(sim, &F, &S);
    const size_t n = (size_t)F * S;
    float *img = malloc(n * sizeof(float));
    db_error err;
    if (boxes) assert_int_equal(db_sim_select_boxes(sim, boxes, nb, &err), DB_OK);
    assert_int_equal(db_sim_run(sim, img, NULL, &err), DB_OK);
    double sum = 0.0, sumsq = 0.0, max = 0.0;
    long cnt = 0, imax = -1, ties = 0;
    for (size_t i = 0; i < n; i++) {
        if (boxes && !in_boxes(boxes, nb, (int)(i % F), (int)(i / F))) continue;
        double v = img[i];
        sum += v;
        sumsq += (double)(img[i] * img[i]);
        cnt++;
        if (v > max) {
            max = v;
            imax = (long)i;
        }
    }
    for (size_t i = 0; i < n; i++) ties += img[i] == max && (!boxes || in_boxes(boxes, nb, (int)(i % F), (int)(i / F)));
    const double mean = sum / cnt;
    double dev = 0.0;
    for (size_t i = 0; i < n; i++)
        if (!boxes || in_boxes(boxes, nb, (int)(i % F), (int)(i / F))) dev += (img[i] - mean) * (img[i] - mean);
    db_run_summary sm;
    assert_int_equal(db_sim_summary(sim, &sm), DB_OK);
    const double pixel = 1e-4, sub = pixel / os;
    assert_int_equal(sm.rendered_pixels, cnt);
    assert_close(sm.mean, mean, 1e-12, 0);
    assert_close(sm.rms, sqrt(sumsq / (cnt - 1)), 1e-12, 0);
    assert_close(sm.rmsd, sqrt(dev / (cnt - 1)), 1e-12, 0);
    assert_close(sm.max_I, max, 0, 0);
    assert_close(sm.max_I_x, sub * ((imax % F) * os + os - 1) + sub / 2, 1e-12, 0);
    assert_close(sm.max_I_y, sub * ((imax / F) * os + os - 1) + sub / 2, 1e-12, 0);
    if (want_ties) assert_true(ties >= 2);
    free(img);
}

static void test_summary_against_the_image(void **state)
{
    (void)state;
    /* no misset, the beam at the centre: a symmetric image, its brightest value in two or more pixels */
    db_sim *sim = sim_of_line("a_cubic", "-cell 100 -default_F 100 -N 5 -lambda 1 -distance 100 -pixel 0.1 -detpixels 40 "
                                         "-oversample 1", NULL);
    check_summary(sim, NULL, 0, 1, 1);
    db_sim_destroy(sim);
    sim = sim_of_line("a_cubic", "-cell 100 -misset 10 20 30 -default_F 100 -N 5 -lambda 1 -distance 60 -pixel 0.1 "
                                 "-detpixels_f 64 -detpixels_s 48 -oversample 2", NULL);
    check_summary(sim, NULL, 0, 2, 0);
    const int boxes[] = {5, 30, 3, 20, 40, 63, 30, 47};
    check_summary(sim, boxes, 2, 2, 0);
    db_sim_destroy(sim);
}

/* The cell parameters of a -mat crystal, from the matrix here: the reciprocal vectors are its columns over the
 * wavelength (MOSFLM's matrix holds lambda), the real ones their cross products over the reciprocal volume. */
static void cell_of_matrix(const char *path, double lambda, double cell[6])
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    double m[9];
    for (int i = 0; i < 9; i++) assert_int_equal(fscanf(f, "%lf", &m[i]), 1);
    fclose(f);
    double r[3][3], v[3][3];
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < 3; i++) r[k][i] = m[3 * i + k] / lambda;
    for (int k = 0; k < 3; k++) {
        const double *p = r[(k + 1) % 3], *q = r[(k + 2) % 3];
        v[k][0] = p[1] * q[2] - p[2] * q[1];
        v[k][1] = p[2] * q[0] - p[0] * q[2];
        v[k][2] = p[0] * q[1] - p[1] * q[0];
    }
    double vstar = r[0][0] * v[0][0] + r[0][1] * v[0][1] + r[0][2] * v[0][2], len[3];
    for (int k = 0; k < 3; k++) {
        for (int i = 0; i < 3; i++) v[k][i] /= vstar;
        len[k] = sqrt(v[k][0] * v[k][0] + v[k][1] * v[k][1] + v[k][2] * v[k][2]);
        cell[k] = len[k];
    }
    for (int k = 0; k < 3; k++) {
        const double *p = v[(k + 1) % 3], *q = v[(k + 2) % 3];
        cell[3 + k] = acos((p[0] * q[0] + p[1] * q[1] + p[2] * q[2]) / (len[(k + 1) % 3] * len[(k + 2) % 3])) * RTD;
    }
}

static double get1(db_sim *sim, const char *name)
{
    int p = db_param_from_name(name);
    double v;
    db_error err;
    if (db_sim_get_params(sim, &p, &v, 1, &err)) fail_msg("get %s: %s", name, err.message);
    return v;
}

static void set1(db_sim *sim, const char *name, double v)
{
    int p = db_param_from_name(name);
    db_error err;
    if (db_sim_set_params(sim, &p, &v, 1, &err)) fail_msg("set %s: %s", name, err.message);
}

/* db_sim_get_params after sets that change other derived values, against values computed here: a -mat crystal's
 * cell from the matrix (after a set of lambda the cell scales with it, a moved a keeps its offset, a second set of
 * a lands on the value asked), the oscillation range of -osc over -phisteps, an absent b staying at the a it stood
 * for when a moves, the drawn angles of -misset random staying when one is set, and several values set at once.
 * The matrix's cell is computed in another order than the library's: 1e-12 relative. Guards values-given-stale,
 * values-mat-delta, tables-mat-cell-beta, values-osc, values-absent-b, values-misset-random, values-given-index. */
static void test_get_params_after_derived_changes(void **state)
{
    (void)state;
    char path[4200];
    snprintf(path, sizeof path, "%s/k_matfile/A.mat", DB_GOLDEN_DIR);
    const char *line = "-mat A.mat -hkl P1.hkl -N 6 -lambda 1 -distance 100 -pixel 0.1 -detpixels 32 -oversample 1";
    db_sim *sim = sim_of_line("k_matfile", line, NULL);
    static const char *const names[6] = {"a", "b", "c", "alpha", "beta", "gamma"};
    double cell[6], cell2[6];
    cell_of_matrix(path, 1.0, cell);
    for (int k = 0; k < 6; k++) {
        test_context("-mat cell parameter %s", names[k]);
        assert_close(get1(sim, names[k]), cell[k], 1e-12, 0);
    }
    /* a moved by 0.25, then the wavelength: the cell of the matrix at 1.02 A, a still 0.25 beyond it */
    set1(sim, "a", cell[0] + 0.25);
    assert_close(get1(sim, "a"), cell[0] + 0.25, 1e-12, 0);
    set1(sim, "lambda", 1.02);
    cell_of_matrix(path, 1.02, cell2);
    assert_close(get1(sim, "a"), cell2[0] + 0.25, 1e-12, 0);
    for (int k = 1; k < 6; k++) {
        test_context("-mat cell parameter %s after lambda", names[k]);
        assert_close(get1(sim, names[k]), cell2[k], 1e-12, 0);
    }
    /* a second set of a: the value asked, and the image a single set gives */
    set1(sim, "a", cell2[0] + 0.5);
    set1(sim, "lambda", 1.0);
    assert_close(get1(sim, "a"), cell[0] + 0.5, 1e-12, 0);
    double *twice = run64(sim);
    db_sim_destroy(sim);
    sim = sim_of_line("k_matfile", line, NULL);
    set1(sim, "a", cell[0] + 0.5);
    double *once = run64(sim);
    assert_memory_equal(twice, once, 32 * 32 * sizeof(double));
    free(twice);
    free(once);
    db_sim_destroy(sim);
    test_context(NULL);

    /* osc: -osc 0.1 over 10 steps */
    harness_args a;
    case_args("c_phi0_carryover", &a);
    sim = sim_from(&a);
    harness_args_free(&a);
    assert_close(get1(sim, "osc"), 0.1, 1e-15, 0);
    db_sim_destroy(sim);

    /* -cell 100: b and c stand for a; moving a leaves them at 100 (the image of -cell 101 100 100 90 90 90) */
    sim = sim_of_line("a_cubic", "-cell 100 -default_F 100 -N 5 -detpixels 32", NULL);
    set1(sim, "a", 101.0);
    assert_close(get1(sim, "b"), 100.0, 0, 0);
    assert_close(get1(sim, "c"), 100.0, 0, 0);
    double *moved = run64(sim);
    db_sim *explicit_cell = sim_of_line("a_cubic", "-cell 101 100 100 90 90 90 -default_F 100 -N 5 -detpixels 32", NULL);
    double *want = run64(explicit_cell);
    assert_memory_equal(moved, want, 32 * 32 * sizeof(double));
    free(moved);
    free(want);
    db_sim_destroy(explicit_cell);
    db_sim_destroy(sim);

    /* -misset random: the drawn angles stay when one of them is set */
    sim = sim_of_line("a_cubic", "-cell 100 -default_F 100 -N 5 -detpixels 32 -misset random -seed 7", NULL);
    double my = get1(sim, "misset_y"), mz = get1(sim, "misset_z");
    assert_true(my != 0.0 && mz != 0.0);
    set1(sim, "misset_x", 12.5);
    assert_close(get1(sim, "misset_y"), my, 0, 0);
    assert_close(get1(sim, "misset_z"), mz, 0, 0);
    db_sim_destroy(sim);

    /* several values at once, each coming back as given (values whose unit conversion does not round-trip) */
    sim = sim_of_line("a_cubic", "-cell 100 -default_F 100 -N 5 -detpixels 32", NULL);
    int ps[3] = {db_param_from_name("distance"), db_param_from_name("alpha"), db_param_from_name("xbeam")};
    double vs[3] = {126.3, 61.7, 1.63}, got[3];
    db_error err;
    assert_int_equal(db_sim_set_params(sim, ps, vs, 3, &err), DB_OK);
    assert_int_equal(db_sim_get_params(sim, ps, got, 3, &err), DB_OK);
    for (int k = 0; k < 3; k++) assert_true(memcmp(&got[k], &vs[k], sizeof got[k]) == 0);
    db_sim_destroy(sim);
}

/* The automatic interpolation (-interpolate absent) is on when any N is 2 or less, along c too: the image equals
 * the -interpolate one and not the -nointerpolate one. Guards tables-interp-auto. */
static void test_auto_interpolation_thin_along_c(void **state)
{
    (void)state;
    const char *line = "-cell 70 80 90 75 85 95 -misset 10 20 30 -hkl P1.hkl -Na 5 -Nb 5 -Nc 2 -lambda 1 -distance 200 "
                       "-pixel 0.1 -detpixels 48 -oversample 1";
    char on_line[512], off_line[512];
    snprintf(on_line, sizeof on_line, "%s -interpolate", line);
    snprintf(off_line, sizeof off_line, "%s -nointerpolate", line);
    db_sim *aut = sim_of_line("b2_interp", line, NULL), *on = sim_of_line("b2_interp", on_line, NULL),
           *off = sim_of_line("b2_interp", off_line, NULL);
    double *x = run64(aut), *y = run64(on), *z = run64(off);
    assert_int_equal(db_sim_captured(aut)->interpolate, 1);
    assert_memory_equal(x, y, 48 * 48 * sizeof(double));
    assert_true(memcmp(x, z, 48 * 48 * sizeof(double)) != 0);
    free(x);
    free(y);
    free(z);
    db_sim_destroy(aut);
    db_sim_destroy(on);
    db_sim_destroy(off);
}

/* A pixel's value from its own trace (-trace_pixel): the reference's formula (spec §3.13) value =
 * r_e^2 fluence (sum of the samples' dI) / steps x capture x polar x omega, evaluated here in that order from the
 * printed numbers (%.17g: they read back exactly); 0 and the parsed pixel line when the trace cannot be read. */
static double value_from_trace(db_sim *sim, int f, int s, double fluence, int steps, double *printed)
{
    FILE *t = tmpfile();
    assert_non_null(t);
    db_error err;
    if (db_sim_trace_pixel(sim, f, s, NULL, 0, t, &err)) fail_msg("trace %d %d: %s", f, s, err.message);
    rewind(t);
    char line[4096];
    double I = 0.0, polar = 0, omega = 0, capture = 0;
    *printed = -1.0;
    while (fgets(line, sizeof line, t)) {
        if (strncmp(line, "sample ", 7) == 0) {
            char *last = strrchr(line, ' ');
            I += strtod(last + 1, NULL);
        } else if (strncmp(line, "pixel ", 6) == 0) {
            assert_int_equal(sscanf(line + 6, "%lf %lf %lf %lf", &polar, &omega, &capture, printed), 4);
        }
    }
    fclose(t);
    const double r_e_sqr = 7.94079248018965e-30;
    double v = r_e_sqr * fluence * I / steps;
    v = v * capture;
    v = v * polar;
    return v * omega;
}

/* The division by the number of samples per pixel is the reference's (a division, not a multiplication by the
 * inverse, except where the two are the same: a power of two), bit for bit in the float64 values: c_phi0_carryover
 * (10 phi steps) at its ten brightest pixels against value_from_trace. The float images of the golden tests do not
 * see a difference in the last bit of a double. And -oversample_polar and -oversample_omega each change the image on
 * their own (polarization and solid angle per sub-pixel): the pixel-level formula holds without them and not with
 * -oversample_polar. Guards tables-steps-inverse, tables-os-polar. */
static void test_pixel_value_formula(void **state)
{
    (void)state;
    harness_args a;
    case_args("c_phi0_carryover", &a);
    db_sim *sim = sim_from(&a);
    harness_args_free(&a);
    size_t n;
    double *img = image64_of(sim, &n);
    double fluence;
    int pf = db_param_from_name("fluence");
    db_error err;
    assert_int_equal(db_sim_get_params(sim, &pf, &fluence, 1, &err), DB_OK);
    for (int k = 0; k < 10; k++) {
        size_t best = 0;
        for (size_t i = 0; i < n; i++)
            if (img[i] > img[best]) best = i;
        double printed, want = value_from_trace(sim, (int)(best % 256), (int)(best / 256), fluence, 10, &printed);
        test_context("pixel %zu %zu", best % 256, best / 256);
        assert_bits_equal(printed, img[best]);
        assert_bits_equal(img[best], want);
        img[best] = -1.0;
    }
    test_context(NULL);
    free(img);
    db_sim_destroy(sim);
    /* the oversampling flags */
    const char *base = "-cell 100 -misset 10 20 30 -default_F 100 -N 5 -lambda 1 -distance 60 -pixel 0.1 -detpixels 32 "
                       "-oversample 2 -polar 0.9";
    const char *flags[4] = {"", " -oversample_polar", " -oversample_omega", " -oversample_polar -oversample_omega"};
    double *im[4];
    for (int k = 0; k < 4; k++) {
        char line[512];
        snprintf(line, sizeof line, "%s%s", base, flags[k]);
        db_sim *s = sim_of_line("a_cubic", line, NULL);
        im[k] = run64(s);
        if (k < 2) {
            size_t best = 0;
            for (size_t i = 0; i < 32 * 32; i++)
                if (im[k][i] > im[k][best]) best = i;
            assert_int_equal(db_sim_get_params(s, &pf, &fluence, 1, &err), DB_OK);
            double printed, want = value_from_trace(s, (int)(best % 32), (int)(best / 32), fluence, 4, &printed);
            if (k == 0) assert_bits_equal(im[k][best], want);
            else assert_true(fabs(im[k][best] - want) > 1e-9 * want); /* polarization per sub-pixel, not per pixel */
        }
        db_sim_destroy(s);
    }
    for (int j = 0; j < 4; j++)
        for (int k = j + 1; k < 4; k++) {
            test_context("%s against%s", flags[j], flags[k]);
            assert_true(memcmp(im[j], im[k], 32 * 32 * sizeof(double)) != 0);
        }
    test_context(NULL);
    for (int k = 0; k < 4; k++) free(im[k]);
}

/* What the configuration fixes (params.c's fixing column, plan.c db_param_fixed): N from a crystal size and the
 * fluence from -flux, -exposure and -beamsize are refused by set_params with the reason, and their derivative
 * images are exactly 0 (the tables seed no tangent for them), where the same parameters of a configuration that
 * leaves them free have nonzero ones. */
static void test_fixed_parameters(void **state)
{
    (void)state;
    const char *base = "-cell 100 100 100 90 90 90 -default_F 100 -lambda 1 -distance 100 -pixel 0.1 -detpixels 24 "
                       "-oversample 1 -misset 10 20 30";
    char line[512];
    for (int fixed = 0; fixed < 2; fixed++) {
        snprintf(line, sizeof line, "%s %s", base,
                 fixed ? "-xtal_size 0.0005 -flux 1e12 -exposure 1 -beamsize 0.1 -mosaic -1 -mosaic_dom 5"
                       : "-N 50 -fluence 1e24");
        harness_args a = {0};
        harness_split(&a, line);
        db_sim *sim = sim_from(&a);
        harness_args_free(&a);
        int params[3] = {db_param_from_name("na"), db_param_from_name("fluence"), db_param_from_name("a")};
        db_error err;
        if (fixed) {
            /* a fixed value reads as what fixed it (spec: N = ceil(size / edge), 5000 A over 100 A; the fluence
             * flux * exposure / beamsize^2, 1e12 / (1e-4 m)^2; a negative spread is no mosaic, 0) */
            int got[3] = {db_param_from_name("na"), db_param_from_name("fluence"), db_param_from_name("mosaic")};
            double v[3];
            assert_int_equal(db_sim_get_params(sim, got, v, 3, &err), DB_OK);
            assert_true(v[0] == 50.0);
            assert_true(fabs(v[1] - 1e20) <= 1e-12 * 1e20);
            assert_true(v[2] == 0.0);
        }
        for (int k = 0; fixed && k < 2; k++) {
            double v = 10.0;
            assert_int_equal(db_sim_set_params(sim, &params[k], &v, 1, &err), DB_ERR_ARGUMENT);
            assert_non_null(strstr(err.message, k == 0 ? "na: set by the crystal size" : "fluence: set by -flux"));
            assert_non_null(strstr(err.message, "not a free value"));
        }
        const size_t n = 24 * 24;
        float *img = (float *)malloc(n * sizeof(float));
        double *grads = (double *)malloc(3 * n * sizeof(double));
        assert_int_equal(db_sim_run_grad(sim, params, 3, img, NULL, grads, &err), DB_OK);
        double size[3] = {0, 0, 0};
        for (int k = 0; k < 3; k++)
            for (size_t i = 0; i < n; i++) size[k] = fmax(size[k], fabs(grads[k * n + i]));
        assert_true(size[2] > 0.0); /* the crystal's a moves the image either way */
        if (fixed) {
            assert_true(size[0] == 0.0 && size[1] == 0.0);
        } else {
            assert_true(size[0] > 0.0 && size[1] > 0.0);
        }
        free(img);
        free(grads);
        db_sim_destroy(sim);
    }
}

int main(void)
{
    struct CMUnitTest rest[] = {
        cmocka_unit_test(test_impossible_values_refused),
        cmocka_unit_test(test_loaded_inputs_stay),
        cmocka_unit_test(test_run_selected_equals_grad_images),
        cmocka_unit_test(test_box_equals_roi_and_mask_applies),
        cmocka_unit_test(test_unrendered_pixels_zeroed),
        cmocka_unit_test(test_boxes_flag),
        cmocka_unit_test(test_simulations_in_threads),
        cmocka_unit_test(test_trace_keeps_last_run),
        cmocka_unit_test(test_noninteger_N),
        cmocka_unit_test(test_grad_list_trailing_comma),
        cmocka_unit_test(test_work_estimate),
        cmocka_unit_test(test_plain_geometry_equals_dual),
        cmocka_unit_test(test_get_returns_set_values),
        cmocka_unit_test(test_selection_edges_against_a_mask),
        cmocka_unit_test(test_interpolation_switch_off_mid_run),
        cmocka_unit_test(test_block_cache_matches_fresh),
        cmocka_unit_test(test_summary_against_the_image),
        cmocka_unit_test(test_get_params_after_derived_changes),
        cmocka_unit_test(test_auto_interpolation_thin_along_c),
        cmocka_unit_test(test_pixel_value_formula),
        cmocka_unit_test(test_fixed_parameters),
    };
    enum { N = sizeof ITER_CASES / sizeof ITER_CASES[0], NREST = sizeof rest / sizeof rest[0] };
    struct CMUnitTest tests[2 * N + NREST];
    char names[2 * N][96];
    /* DUALBRAGG_TEST_QUICK (the unoptimised sanitizer pass): three of the eight configurations */
    const char *quick = getenv("DUALBRAGG_TEST_QUICK");
    int q = quick && *quick && strcmp(quick, "0") != 0, nt = 0;
    for (int i = 0; i < N; i++) {
        if (q && strcmp(ITER_CASES[i].name, "c_phi0_carryover") && strcmp(ITER_CASES[i].name, "h3_mosflm_rot_twotheta") &&
            strcmp(ITER_CASES[i].name, "n_sourcefile"))
            continue;
        snprintf(names[2 * i], sizeof names[0], "set_params %s carryover on", ITER_CASES[i].name);
        snprintf(names[2 * i + 1], sizeof names[0], "set_params %s carryover off", ITER_CASES[i].name);
        struct CMUnitTest on = {names[2 * i], test_set_equals_fresh_on, NULL, NULL, (void *)&ITER_CASES[i]};
        struct CMUnitTest off = {names[2 * i + 1], test_set_equals_fresh_off, NULL, NULL, (void *)&ITER_CASES[i]};
        tests[nt++] = on;
        tests[nt++] = off;
    }
    for (int i = 0; i < NREST; i++) tests[nt++] = rest[i];
    return _cmocka_run_group_tests("iterate", tests, (size_t)nt, NULL, NULL);
}
