/* test_api.c: the C API on its own: configurations from arguments and field by field, geometry read back,
 * two simulations alive at once with different seeds, errors as codes and messages, and a library that
 * neither prints nor touches the current folder. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "cli_harness.h"
#include "dualbragg.h"
#include "run_clients.h" /* db_sim_force_decisions, db_sim_captured: the replay gradcheck uses */
#include "test_util.h"

#include <dirent.h>
#include <math.h>

static const char *const BASE[] = {"-cell", "100", "100", "100", "90", "90", "90", "-misset", "10", "20", "30",
                                   "-default_F", "100", "-N", "10", "-lambda", "1", "-distance", "100", "-pixel",
                                   "0.1", "-detpixels", "128", "-oversample", "1", "-phi", "0", "-osc", "0.1",
                                   "-phisteps", "3", "-mosaic", "0.2", "-mosaic_dom", "3", "-seed", "7"};
enum { NBASE = sizeof BASE / sizeof BASE[0] };

static db_config *base_config(void)
{
    db_config *cfg = db_config_create();
    db_error err;
    assert_non_null(cfg);
    assert_int_equal(db_config_parse(cfg, NBASE, BASE, &err), DB_OK);
    return cfg;
}

static float *render(const db_config *cfg, db_sim **keep)
{
    db_sim *sim;
    db_error err;
    assert_int_equal(db_sim_create(&sim, cfg, NULL, &err), DB_OK);
    int F, S;
    db_sim_size(sim, &F, &S);
    float *img = malloc((size_t)F * S * sizeof(float));
    assert_int_equal(db_sim_run(sim, img, NULL, &err), DB_OK);
    if (keep) *keep = sim;
    else db_sim_destroy(sim);
    return img;
}

static void test_field_by_field_equals_arguments(void **state)
{
    (void)state;
    db_config *a = base_config();
    db_config *b = db_config_create();
    db_error err;
    assert_int_equal(db_config_set_cell(b, 100, 100, 100, 90, 90, 90, &err), DB_OK);
    assert_int_equal(db_config_set_misset(b, 10, 20, 30, &err), DB_OK);
    assert_int_equal(db_config_set_default_F(b, 100, &err), DB_OK);
    assert_int_equal(db_config_set_cells(b, 10, 10, 10, &err), DB_OK);
    assert_int_equal(db_config_set_wavelength(b, 1, &err), DB_OK);
    assert_int_equal(db_config_set_detector(b, 128, 128, 0.1, 100, &err), DB_OK);
    assert_int_equal(db_config_set_oversample(b, 1, &err), DB_OK);
    assert_int_equal(db_config_set_phi(b, 0, 0.1, 3, &err), DB_OK);
    assert_int_equal(db_config_set_mosaic(b, 0.2, 3, 12345678, &err), DB_OK);
    assert_int_equal(db_config_set_noise_seed(b, 7, &err), DB_OK);
    float *ia = render(a, NULL), *ib = render(b, NULL);
    assert_memory_equal(ia, ib, 128 * 128 * sizeof(float));
    /* and a setter changes what it should */
    assert_int_equal(db_config_set_phi_carryover(b, 0, &err), DB_OK);
    float *ic = render(b, NULL);
    assert_true(memcmp(ia, ic, 128 * 128 * sizeof(float)) != 0);
    free(ia);
    free(ib);
    free(ic);
    db_config_destroy(a);
    db_config_destroy(b);
}

static void test_geometry_read_back(void **state)
{
    (void)state;
    db_config *cfg = base_config();
    db_sim *sim;
    db_error err;
    assert_int_equal(db_sim_create(&sim, cfg, NULL, &err), DB_OK);
    db_geometry g;
    assert_int_equal(db_sim_geometry(sim, &g), DB_OK);
    /* MOSFLM defaults on 128 x 0.1 mm (spec §3.3): Xbeam = Ybeam = (12.8 + 0.1)/2 = 6.45 mm, Fbeam = Sbeam = 6.5 mm */
    assert_int_equal(g.fpixels, 128);
    assert_int_equal(g.spixels, 128);
    assert_close(g.distance_mm, 100.0, 1e-12, 0);
    assert_close(g.close_distance_mm, 100.0, 1e-12, 0);
    assert_close(g.Fbeam_mm, 6.5, 1e-12, 0);
    assert_close(g.Sbeam_mm, 6.5, 1e-12, 0);
    assert_close(g.ORGX, 6.5 / 0.1 + 0.5, 1e-12, 0);
    assert_close(g.beam[0], 1.0, 0, 0);
    assert_close(g.fdet[2], 1.0, 0, 0);
    assert_close(g.sdet[1], -1.0, 0, 0);
    /* pix0 = -Fbeam fdet - Sbeam sdet + distance beam */
    assert_close(g.pix0_m[0], 0.1, 1e-12, 0);
    assert_close(g.pix0_m[1], 0.0065, 1e-12, 0);
    assert_close(g.pix0_m[2], -0.0065, 1e-12, 0);
    assert_int_equal(g.phisteps, 3);
    assert_int_equal(g.mosaic_domains, 3);
    assert_int_equal(g.sources, 1);
    assert_int_equal(g.steps, 9);
    assert_close(g.cell[0], 100.0, 1e-12, 0);
    assert_close(g.cell[3], 90.0, 1e-10, 0);
    db_sim_destroy(sim);
    db_config_destroy(cfg);
}

static unsigned char *read_all(const char *path, size_t *n)
{
    return harness_read(path, n);
}

/* The noise image of a configuration with seed s, from a simulation of its own. */
static unsigned char *noise_alone(const char *dir, long seed, size_t *n)
{
    db_config *cfg = base_config();
    db_error err;
    assert_int_equal(db_config_set_noise_seed(cfg, seed, &err), DB_OK);
    db_sim *sim;
    float *img = render(cfg, &sim);
    char path[4200];
    snprintf(path, sizeof path, "%s/alone_%ld.img", dir, seed);
    assert_int_equal(db_sim_write_noise_image(sim, path, img, NULL, NULL, &err), DB_OK);
    db_sim_destroy(sim);
    db_config_destroy(cfg);
    free(img);
    return read_all(path, n);
}

static void test_two_simulations_alive_with_different_seeds(void **state)
{
    (void)state;
    char dir[4096];
    assert_int_equal(harness_mkdtemp(dir, sizeof dir), 0);
    size_t n1, n2;
    unsigned char *alone1 = noise_alone(dir, 1, &n1), *alone2 = noise_alone(dir, 2, &n2);
    assert_non_null(alone1);
    assert_non_null(alone2);
    assert_true(n1 == n2 && memcmp(alone1, alone2, n1) != 0);

    /* both alive, rendered and written in interleaved order: each must equal its solo run */
    db_config *c1 = base_config(), *c2 = base_config();
    db_error err;
    assert_int_equal(db_config_set_noise_seed(c1, 1, &err), DB_OK);
    assert_int_equal(db_config_set_noise_seed(c2, 2, &err), DB_OK);
    db_sim *s1, *s2;
    assert_int_equal(db_sim_create(&s1, c1, NULL, &err), DB_OK);
    assert_int_equal(db_sim_create(&s2, c2, NULL, &err), DB_OK);
    float *i1 = malloc(128 * 128 * sizeof(float)), *i2 = malloc(128 * 128 * sizeof(float));
    assert_int_equal(db_sim_run(s2, i2, NULL, &err), DB_OK);
    assert_int_equal(db_sim_run(s1, i1, NULL, &err), DB_OK);
    char p1[4200], p2[4200];
    snprintf(p1, sizeof p1, "%s/both_1.img", dir);
    snprintf(p2, sizeof p2, "%s/both_2.img", dir);
    assert_int_equal(db_sim_write_noise_image(s2, p2, i2, NULL, NULL, &err), DB_OK);
    assert_int_equal(db_sim_write_noise_image(s1, p1, i1, NULL, NULL, &err), DB_OK);
    size_t m1, m2;
    unsigned char *both1 = read_all(p1, &m1), *both2 = read_all(p2, &m2);
    assert_int_equal(m1, n1);
    assert_int_equal(m2, n2);
    assert_memory_equal(both1, alone1, n1);
    assert_memory_equal(both2, alone2, n2);
    free(both1);
    free(both2);
    free(alone1);
    free(alone2);
    free(i1);
    free(i2);
    db_sim_destroy(s1);
    db_sim_destroy(s2);
    db_config_destroy(c1);
    db_config_destroy(c2);
    harness_rmtree(dir);
}

static void test_errors_are_codes_and_messages(void **state)
{
    (void)state;
    db_config *cfg = db_config_create();
    db_error err;
    const char *bad[] = {"-distance", "far"};
    assert_int_equal(db_config_parse(cfg, 2, bad, &err), DB_ERR_ARGUMENT);
    assert_int_equal(err.code, DB_ERR_ARGUMENT);
    assert_non_null(strstr(err.message, "-distance"));
    assert_non_null(strstr(err.message, "far"));
    assert_int_equal(db_config_set_convention(cfg, "sideways", &err), DB_ERR_ARGUMENT);
    assert_non_null(strstr(err.message, "sideways"));
    /* no crystal: the simulation refuses, with a message */
    db_sim *sim = (db_sim *)0x1;
    assert_int_equal(db_sim_create(&sim, cfg, NULL, &err), DB_ERR_ARGUMENT);
    assert_null(sim);
    assert_non_null(strstr(err.message, "-cell"));
    const char *hkl[] = {"-cell", "50", "-hkl", "/nonexistent/x.hkl"};
    db_config *c2 = db_config_create();
    assert_int_equal(db_config_parse(c2, 4, hkl, &err), DB_OK);
    assert_int_equal(db_sim_create(&sim, c2, NULL, &err), DB_ERR_IO);
    assert_non_null(strstr(err.message, "/nonexistent/x.hkl"));
    db_config_destroy(cfg);
    db_config_destroy(c2);
}

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

/* A whole run through the library, in an empty current folder with stdout and stderr captured: the folder
 * stays empty (no Fdump.bin, no default file names) and nothing is printed. */
static void test_library_is_silent_and_leaves_the_folder_alone(void **state)
{
    (void)state;
    char dir[4096], cwd[4096], log[4200];
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(harness_mkdtemp(dir, sizeof dir), 0);
    snprintf(log, sizeof log, "%s.log", dir);
    assert_int_equal(chdir(dir), 0);
    fflush(stdout);
    fflush(stderr);
    int out = dup(1), errfd = dup(2);
    int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    /* an -hkl run: the command line would write Fdump.bin here, the library must not */
    FILE *h = fopen("/tmp/dualbragg-api-test.hkl", "w");
    for (int i = -3; i <= 3; i++)
        for (int j = -3; j <= 3; j++)
            for (int k = -3; k <= 3; k++) fprintf(h, "%d %d %d %g\n", i, j, k, 10.0 + i + j + k);
    fclose(h);
    db_config *cfg = base_config();
    db_error err;
    int rc = db_config_set_hkl_file(cfg, "/tmp/dualbragg-api-test.hkl", &err);
    float *img = rc ? NULL : render(cfg, NULL);
    fflush(stdout);
    fflush(stderr);
    dup2(out, 1);
    dup2(errfd, 2);
    close(out);
    close(errfd);
    close(fd);
    assert_int_equal(rc, DB_OK);
    assert_int_equal(count_entries(dir), 0);
    size_t n;
    unsigned char *printed = harness_read(log, &n);
    assert_int_equal(n, 0);
    free(printed);
    free(img);
    db_config_destroy(cfg);
    assert_int_equal(chdir(cwd), 0);
    unlink(log);
    unlink("/tmp/dualbragg-api-test.hkl");
    harness_rmtree(dir);
}

/* -N accepts real numbers (the reference truncates): a whole number behaves as before, a fraction changes
 * the lattice factor sin(N pi h)/sin(pi h) */
static void test_real_cell_counts(void **state)
{
    (void)state;
    db_error err;
    db_config *a = base_config(), *b = base_config(), *c = base_config();
    assert_int_equal(db_config_set_cells(b, 10.0, 10.0, 10.0, &err), DB_OK);
    assert_int_equal(db_config_set_cells(c, 10.5, 10.0, 10.0, &err), DB_OK);
    float *ia = render(a, NULL), *ib = render(b, NULL), *ic = render(c, NULL);
    assert_memory_equal(ia, ib, 128 * 128 * sizeof(float));
    long differ = 0;
    for (int i = 0; i < 128 * 128; i++) differ += ia[i] != ic[i];
    assert_true(differ > 1000);
    free(ia);
    free(ib);
    free(ic);
    db_config_destroy(a);
    db_config_destroy(b);
    db_config_destroy(c);
}

/* ---- issue 18, class 5: every public function checks its pointers and sizes ---- */

/* a call refused with DB_ERR_ARGUMENT and a message (in the test's err) that names what was wrong */
#define ASSERT_REFUSED(call, word)                                                                                 \
    do {                                                                                                           \
        memset(&err, 0, sizeof err);                                                                               \
        int rc_ = (call);                                                                                          \
        if (rc_ != DB_ERR_ARGUMENT || !strstr(err.message, (word)))                                                \
            fail_msg("%s: status %d, message '%s' (expected DB_ERR_ARGUMENT naming '%s')", #call, rc_, err.message,  \
                     (word));                                                                                      \
    } while (0)

static void test_null_configuration_arguments(void **state)
{
    (void)state;
    db_error err;
    db_config *cfg = base_config();
    const char *ok[] = {"-distance", "50"};
    const char *holed[] = {"-distance", NULL};
    ASSERT_REFUSED(db_config_parse(NULL, 2, ok, &err), "no configuration");
    ASSERT_REFUSED(db_config_parse(cfg, 2, NULL, &err), "no argument array");
    ASSERT_REFUSED(db_config_parse(cfg, -1, ok, &err), "-1 arguments");
    ASSERT_REFUSED(db_config_parse(cfg, 2, holed, &err), "argument 1 of 2 is NULL (after '-distance')");
    /* err may be NULL: the status alone */
    assert_int_equal(db_config_parse(NULL, 2, ok, NULL), DB_ERR_ARGUMENT);
    assert_int_equal(db_config_parse(cfg, 2, holed, NULL), DB_ERR_ARGUMENT);
    /* nothing to apply is fine, and a refused call changed nothing (the distance is still the base's 100 mm) */
    assert_int_equal(db_config_parse(cfg, 0, NULL, &err), DB_OK);
    db_sim *sim;
    assert_int_equal(db_sim_create(&sim, cfg, NULL, &err), DB_OK);
    db_geometry g;
    assert_int_equal(db_sim_geometry(sim, &g), DB_OK);
    assert_close(g.distance_mm, 100.0, 1e-12, 0);
    db_sim_destroy(sim);

    /* every setter, on no configuration: refused, naming the flag it stands for */
    ASSERT_REFUSED(db_config_set_cell(NULL, 1, 1, 1, 90, 90, 90, &err), "-cell");
    ASSERT_REFUSED(db_config_set_matrix_file(NULL, "x.mat", &err), "-mat");
    ASSERT_REFUSED(db_config_set_misset(NULL, 1, 2, 3, &err), "-misset");
    ASSERT_REFUSED(db_config_set_cells(NULL, 2, 2, 2, &err), "-Na");
    ASSERT_REFUSED(db_config_set_hkl_file(NULL, "x.hkl", &err), "-hkl");
    ASSERT_REFUSED(db_config_set_default_F(NULL, 1, &err), "-default_F");
    ASSERT_REFUSED(db_config_set_wavelength(NULL, 1, &err), "-lambda");
    ASSERT_REFUSED(db_config_set_detector(NULL, 10, 10, 0.1, 100, &err), "-detpixels_f");
    ASSERT_REFUSED(db_config_set_beam_center(NULL, 1, 1, &err), "-Xbeam");
    ASSERT_REFUSED(db_config_set_convention(NULL, "xds", &err), "-xds");
    ASSERT_REFUSED(db_config_set_phi(NULL, 0, 1, 2, &err), "-phi");
    ASSERT_REFUSED(db_config_set_mosaic(NULL, 0.1, 2, 1, &err), "-mosaic");
    ASSERT_REFUSED(db_config_set_oversample(NULL, 1, &err), "-oversample");
    ASSERT_REFUSED(db_config_set_roi(NULL, 0, 1, 0, 1, &err), "-roi");
    ASSERT_REFUSED(db_config_set_noise_seed(NULL, 1, &err), "-seed");
    ASSERT_REFUSED(db_config_set_phi_carryover(NULL, 1, &err), "-phi_carryover");
    /* and the values a setter needs */
    ASSERT_REFUSED(db_config_set_matrix_file(cfg, NULL, &err), "-mat expects a file name, got NULL");
    ASSERT_REFUSED(db_config_set_hkl_file(cfg, NULL, &err), "-hkl expects a file name, got NULL");
    ASSERT_REFUSED(db_config_set_convention(cfg, NULL, &err), "(null)");
    assert_int_equal(db_config_set_cell(NULL, 1, 1, 1, 90, 90, 90, NULL), DB_ERR_ARGUMENT);

    /* the getters answer their documented safe values */
    assert_string_equal(db_config_warnings(NULL), "");
    assert_null(db_config_output_path(NULL, DB_OUT_FLOAT));
    assert_int_equal(db_config_has_hkl(NULL), 0);
    assert_int_equal(db_config_phi_carryover(NULL), 1);
    assert_int_equal(db_config_progress(NULL), 0);
    assert_null(db_config_grad_list(NULL));
    assert_int_equal(db_config_grad_chunk(NULL), 0);
    assert_int_equal(db_config_grad_png(NULL), 0);
    int f = 7, s = 7;
    assert_int_equal(db_config_trace_pixel(NULL, &f, &s), 0);
    assert_true(f == -1 && s == -1);
    f = s = 7;
    assert_int_equal(db_config_printout(NULL, &f, &s), 0);
    assert_true(f == -1 && s == -1);
    assert_int_equal(db_config_trace_pixel(cfg, NULL, NULL), 0);
    assert_int_equal(db_config_printout(cfg, NULL, NULL), 0);
    const char *pix[] = {"-trace_pixel", "5", "6"};
    assert_int_equal(db_config_parse(cfg, 3, pix, &err), DB_OK);
    assert_int_equal(db_config_trace_pixel(cfg, NULL, &s), 1);
    assert_int_equal(s, 6);

    /* the gradient prefix: "floatimage.d" (12 characters) needs 13 bytes; shorter is refused, never cut short */
    char buf[64];
    memset(buf, 'x', sizeof buf);
    assert_int_equal(db_config_grad_prefix(cfg, buf, 13), 0);
    assert_string_equal(buf, "floatimage.d");
    for (size_t n = 1; n <= 12; n++) {
        memset(buf, 'x', sizeof buf);
        assert_int_equal(db_config_grad_prefix(cfg, buf, n), -1);
        assert_string_equal(buf, "");
        assert_int_equal(buf[n], 'x'); /* nothing written past size */
    }
    assert_int_equal(db_config_grad_prefix(cfg, buf, 0), -1);
    assert_int_equal(db_config_grad_prefix(cfg, NULL, 64), -1);
    memset(buf, 'x', sizeof buf);
    assert_int_equal(db_config_grad_prefix(NULL, buf, sizeof buf), -1);
    assert_string_equal(buf, "");
    const char *gp[] = {"-gradprefix", "out/d"};
    assert_int_equal(db_config_parse(cfg, 2, gp, &err), DB_OK);
    assert_int_equal(db_config_grad_prefix(cfg, buf, 5), -1);
    assert_string_equal(buf, "");
    assert_int_equal(db_config_grad_prefix(cfg, buf, 6), 0);
    assert_string_equal(buf, "out/d");
    db_config_destroy(NULL);
    db_config_destroy(cfg);
}

static void test_null_simulation_arguments(void **state)
{
    (void)state;
    db_error err;
    db_config *cfg = base_config();
    db_sim *sim = (db_sim *)0x1;
    ASSERT_REFUSED(db_sim_create(NULL, cfg, NULL, &err), "out is NULL");
    ASSERT_REFUSED(db_sim_create(&sim, NULL, NULL, &err), "no configuration");
    assert_null(sim);
    assert_int_equal(db_sim_create(&sim, NULL, NULL, NULL), DB_ERR_ARGUMENT);

    /* no simulation: refused, or the documented answer */
    float img[16];
    double v[16], it;
    int params[2] = {0, 1};
    int F = 5, S = 5;
    db_sim_size(NULL, &F, &S);
    assert_true(F == 0 && S == 0);
    db_sim_size(NULL, NULL, NULL);
    db_sim_set_progress(NULL, NULL, NULL);
    db_sim_destroy(NULL);
    assert_string_equal(db_sim_device(NULL), "");
    ASSERT_REFUSED(db_sim_set_device(NULL, "cpu", &err), "no simulation");
    ASSERT_REFUSED(db_sim_run(NULL, img, NULL, &err), "no simulation");
    ASSERT_REFUSED(db_sim_run_grad(NULL, params, 2, img, NULL, v, &err), "no simulation");
    ASSERT_REFUSED(db_sim_set_params(NULL, params, v, 2, &err), "no simulation");
    ASSERT_REFUSED(db_sim_get_params(NULL, params, v, 2, &err), "no simulation");
    ASSERT_REFUSED(db_sim_select_boxes(NULL, NULL, 0, &err), "no simulation");
    ASSERT_REFUSED(db_sim_run_selected(NULL, NULL, 0, v, NULL, &err), "no simulation");
    ASSERT_REFUSED(db_sim_work_estimate(NULL, &it, 0, NULL, &err), "no simulation");
    ASSERT_REFUSED(db_sim_trace_pixel(NULL, 0, 0, NULL, 0, stdout, &err), "no simulation");
    ASSERT_REFUSED(db_sim_printout(NULL, 0, 0, img, stdout, &err), "no simulation");
    long list[4];
    assert_int_equal(db_sim_selected_pixel_list(NULL, list, 4, &err), -1);
    assert_non_null(strstr(err.message, "no simulation"));
    assert_int_equal(db_sim_geometry(NULL, NULL), DB_ERR_ARGUMENT);
    assert_int_equal(db_sim_summary(NULL, NULL), DB_ERR_ARGUMENT);
    assert_int_equal(db_sim_set_chunk(NULL, 4), DB_ERR_ARGUMENT);
    assert_int_equal(db_sim_selected_count(NULL), 0);
    assert_int_equal(db_sim_get_boxes(NULL, NULL, 0), 0);
    assert_int_equal(db_sim_has_hkl_table(NULL), 0);
    ASSERT_REFUSED(db_sim_write_int_image(NULL, "x.img", img, NULL, &err), "no simulation");
    ASSERT_REFUSED(db_sim_write_pgm(NULL, "x.pgm", img, NULL, &err), "no simulation");
    ASSERT_REFUSED(db_sim_write_noise_image(NULL, "x.img", img, NULL, NULL, &err), "no simulation");
    ASSERT_REFUSED(db_sim_write_fdump(NULL, "x.bin", &err), "no simulation");
    ASSERT_REFUSED(db_write_float_image(NULL, img, 16, &err), "no path");
    ASSERT_REFUSED(db_write_float_image("x.bin", NULL, 16, &err), "no image");
    ASSERT_REFUSED(db_write_float64_image(NULL, v, 16, &err), "no path");
    ASSERT_REFUSED(db_write_float64_image("x.bin", NULL, 16, &err), "no image");

    /* a simulation, and the other arguments missing or too small */
    assert_int_equal(db_sim_create(&sim, cfg, NULL, &err), DB_OK);
    int FP, SP;
    db_sim_size(sim, &FP, &SP);
    float *image = malloc((size_t)FP * SP * sizeof(float));
    ASSERT_REFUSED(db_sim_set_device(sim, NULL, &err), "no device name");
    ASSERT_REFUSED(db_sim_run(sim, NULL, NULL, &err), "no image buffer");
    ASSERT_REFUSED(db_sim_run_grad(sim, NULL, 2, image, NULL, v, &err), "no list");
    ASSERT_REFUSED(db_sim_run_grad(sim, params, 2, image, NULL, NULL, &err), "no buffer for the derivative images");
    ASSERT_REFUSED(db_sim_run_grad(sim, params, -1, image, NULL, v, &err), "-1 parameters");
    ASSERT_REFUSED(db_sim_set_params(sim, NULL, v, 2, &err), "without arrays");
    ASSERT_REFUSED(db_sim_set_params(sim, params, NULL, 2, &err), "without arrays");
    ASSERT_REFUSED(db_sim_get_params(sim, params, NULL, 2, &err), "without arrays");
    ASSERT_REFUSED(db_sim_get_params(sim, params, v, -1, &err), "-1 parameters");
    ASSERT_REFUSED(db_sim_select_boxes(sim, NULL, 2, &err), "but no array");
    ASSERT_REFUSED(db_sim_select_boxes(sim, params, -1, &err), "-1 boxes");
    ASSERT_REFUSED(db_sim_run_selected(sim, NULL, 0, NULL, NULL, &err), "no values buffer");
    ASSERT_REFUSED(db_sim_run_selected(sim, params, 2, v, NULL, &err), "no buffer for the Jacobian");
    ASSERT_REFUSED(db_sim_work_estimate(sim, NULL, 0, NULL, &err), "no output");
    ASSERT_REFUSED(db_sim_trace_pixel(sim, 0, 0, NULL, 0, NULL, &err), "no file");
    ASSERT_REFUSED(db_sim_printout(sim, 0, 0, NULL, stdout, &err), "no simulation, image or file");
    assert_int_equal(db_sim_selected_pixel_list(sim, list, 4, &err), -1); /* 16384 selected, room for 4 */
    assert_non_null(strstr(err.message, "room for 4"));
    assert_int_equal(db_sim_selected_pixel_list(sim, NULL, 1L << 20, &err), -1);
    assert_non_null(strstr(err.message, "room for 0"));
    assert_int_equal(db_sim_selected_pixel_list(sim, list, -5, &err), -1);
    ASSERT_REFUSED(db_sim_write_int_image(sim, NULL, image, NULL, &err), "no simulation, path or image");
    ASSERT_REFUSED(db_sim_write_pgm(sim, "x.pgm", NULL, NULL, &err), "no simulation, path or image");
    ASSERT_REFUSED(db_sim_write_noise_image(sim, NULL, image, NULL, NULL, &err), "no simulation, path or image");
    ASSERT_REFUSED(db_sim_write_fdump(sim, NULL, &err), "no simulation or path");
    assert_int_equal(db_sim_geometry(sim, NULL), DB_ERR_ARGUMENT);
    assert_int_equal(db_sim_summary(sim, NULL), DB_ERR_ARGUMENT);
    assert_int_equal(db_sim_set_chunk(sim, 0), DB_ERR_ARGUMENT);
    assert_int_equal(db_sim_set_chunk(sim, DB_MAX_CHUNK + 1), DB_ERR_ARGUMENT);
    /* err may be NULL everywhere */
    assert_int_equal(db_sim_run(sim, NULL, NULL, NULL), DB_ERR_ARGUMENT);
    assert_int_equal(db_sim_select_boxes(sim, NULL, 2, NULL), DB_ERR_ARGUMENT);

    /* the parameter table */
    assert_null(db_param_name(-1));
    assert_null(db_param_name(db_param_count()));
    assert_null(db_param_unit(-1));
    assert_null(db_param_unit(db_param_count()));
    assert_int_equal(db_param_from_name(NULL), -1);
    assert_int_equal(db_param_parse_list(NULL, params, &err), -1);
    assert_int_equal(db_param_parse_list("a", NULL, &err), -1);
    assert_int_equal(db_param_parse_list(NULL, NULL, NULL), -1);

    /* the refinement library's entry points */
    db_refine_result res;
    double obs[4] = {0, 0, 0, 0};
    ASSERT_REFUSED(db_refine(NULL, params, 1, obs, NULL, NULL, &res, &err), "no simulation");
    ASSERT_REFUSED(db_refine(sim, params, 1, NULL, NULL, NULL, &res, &err), "observed image");
    ASSERT_REFUSED(db_refine(sim, params, 1, obs, NULL, NULL, NULL, &err), "result");
    ASSERT_REFUSED(db_refine(sim, NULL, 1, obs, NULL, NULL, &res, &err), "parameters");
    ASSERT_REFUSED(db_refine(sim, params, 0, obs, NULL, NULL, &res, &err), "parameters");
    ASSERT_REFUSED(db_refine(sim, params, DB_REFINE_MAX_PARAMS + 1, obs, NULL, NULL, &res, &err), "parameters");
    /* a failure found deep inside (the observed image is too small for the selection is the caller's to get
     * right; a bad option is not): err NULL there too */
    db_refine_options o;
    db_refine_default_options(&o);
    o.objective = 7;
    assert_int_equal(db_refine(sim, params, 1, obs, NULL, &o, &res, NULL), DB_ERR_ARGUMENT);
    int bad_param[1] = {99};
    assert_int_equal(db_refine(sim, bad_param, 1, obs, NULL, NULL, &res, NULL), DB_ERR_ARGUMENT);
    /* a failure found inside the fit, err NULL: the status alone (the fit read its message back from err).
     * phi0 and misset_z turn about the same axis in MOSFLM: the data cannot separate them */
    int same_axis[2] = {db_param_from_name("phi0"), db_param_from_name("misset_z")};
    int rbox[4] = {40, 60, 40, 60};
    double *obs64 = malloc((size_t)FP * SP * sizeof(double));
    assert_int_equal(db_sim_run(sim, image, obs64, &err), DB_OK);
    assert_int_equal(db_sim_select_boxes(sim, rbox, 1, &err), DB_OK);
    assert_int_equal(db_refine(sim, same_axis, 2, obs64, NULL, NULL, &res, &err), DB_ERR_ARGUMENT);
    assert_non_null(strstr(err.message, "cannot separate"));
    assert_int_equal(db_refine(sim, same_axis, 2, obs64, NULL, NULL, &res, NULL), DB_ERR_ARGUMENT);
    free(obs64);
    db_refine_default_options(NULL);
    assert_int_equal(db_refine_background_count(NULL), 0);
    assert_int_equal(db_refine_background_count(sim), 1);
    int box[4] = {0, 2, 0, 2};
    double abc[3] = {1, 2, 3};
    assert_true(isnan(db_refine_background_at(NULL, box, 0, 0)));
    assert_true(isnan(db_refine_background_at(abc, NULL, 0, 0)));
    assert_close(db_refine_background_at(abc, box, 2, 0), 1 + 2 * 1 + 3 * -1, 0, 0);
    assert_non_null(db_stop_reason_text(-5));
    assert_non_null(db_stop_reason_text(1000));
    long spix[2] = {0, 1};
    int sbox[4];
    assert_int_equal(db_find_spots(NULL, 4, 4, spix, 2, 1, 3, sbox, &err), -1);
    assert_int_equal(db_find_spots(obs, 2, 2, NULL, 2, 1, 3, sbox, &err), -1);
    assert_int_equal(db_find_spots(obs, 2, 2, spix, 2, 1, 3, NULL, &err), -1);
    assert_int_equal(db_find_spots(obs, 2, 2, spix, -1, 1, 3, sbox, NULL), -1);

    free(image);
    db_sim_destroy(sim);
    db_config_destroy(cfg);
}

/* db_sim_force_decisions(sim, NULL) stops the replay: the next run is the plain run again (it read freed slots). */
static void test_forced_decisions_released(void **state)
{
    (void)state;
    db_error err;
    db_config *cfg = base_config();
    db_sim *sim;
    float *plain = render(cfg, &sim);
    int F, S;
    db_sim_size(sim, &F, &S);
    float *img = malloc((size_t)F * S * sizeof(float));
    assert_int_equal(db_sim_force_decisions(sim, db_sim_captured(sim), &err), DB_OK);
    assert_int_equal(db_sim_run(sim, img, NULL, &err), DB_OK);
    assert_memory_equal(img, plain, (size_t)F * S * sizeof(float));
    assert_int_equal(db_sim_force_decisions(sim, NULL, &err), DB_OK);
    assert_int_equal(db_sim_run(sim, img, NULL, &err), DB_OK);
    assert_memory_equal(img, plain, (size_t)F * S * sizeof(float));
    assert_int_equal(db_sim_force_decisions(NULL, NULL, &err), DB_ERR_ARGUMENT);
    /* released means released: a box away from pixel (0, 0) puts the carryover's exceptional sample (phi 0 is the
     * first step) in the box's first pixel, as in a fresh simulation; a replay still on would keep it at (0, 0) */
    int box[4] = {60, 67, 60, 67};
    double replayed[64], fresh[64];
    assert_int_equal(db_sim_select_boxes(sim, box, 1, &err), DB_OK);
    assert_int_equal(db_sim_run_selected(sim, NULL, 0, replayed, NULL, &err), DB_OK);
    db_sim *sim2;
    assert_int_equal(db_sim_create(&sim2, cfg, NULL, &err), DB_OK);
    assert_int_equal(db_sim_select_boxes(sim2, box, 1, &err), DB_OK);
    assert_int_equal(db_sim_run_selected(sim2, NULL, 0, fresh, NULL, &err), DB_OK);
    assert_memory_equal(replayed, fresh, sizeof fresh);
    db_sim_destroy(sim2);
    free(img);
    free(plain);
    db_sim_destroy(sim);
    db_config_destroy(cfg);
}

/* The memory limit: half the physical memory (computed here from sysconf), or the environment's GiB up to the
 * whole of it; a value that is not a positive number is ignored. */
static void test_memory_limit(void **state)
{
    (void)state;
    const double gib = 1073741824.0;
    const double phys = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGE_SIZE);
    int env = 7;
    unsetenv("DUALBRAGG_MAX_MEMORY_GIB");
    assert_true(db_memory_limit(&env) == 0.5 * phys);
    assert_int_equal(env, 0);
    setenv("DUALBRAGG_MAX_MEMORY_GIB", "0.25", 1);
    assert_true(db_memory_limit(&env) == 0.25 * gib);
    assert_int_equal(env, 1);
    setenv("DUALBRAGG_MAX_MEMORY_GIB", "1e12", 1); /* more than the machine: the machine */
    assert_true(db_memory_limit(NULL) == phys);
    static const char *const ignored[] = {"", "0", "-1", "abc", "1GiB", "nan"};
    for (size_t i = 0; i < sizeof ignored / sizeof ignored[0]; i++) {
        setenv("DUALBRAGG_MAX_MEMORY_GIB", ignored[i], 1);
        assert_true(db_memory_limit(&env) == 0.5 * phys);
        assert_int_equal(env, 0);
    }
    unsetenv("DUALBRAGG_MAX_MEMORY_GIB");
    /* the check itself: at the limit passes, above it is refused with the figure */
    db_error err;
    assert_int_equal(db_check_memory(0.5 * phys, "x", "y", &err), DB_OK);
    assert_int_equal(db_check_memory(0.5 * phys * 1.001, "the thing", "3 widgets (-widgets)", &err), DB_ERR_ARGUMENT);
    assert_non_null(strstr(err.message, "the thing would need"));
    assert_non_null(strstr(err.message, "GiB of memory (3 widgets (-widgets)), more than the"));
}

/* ---- issue 18, class 3: memory before work, and values beyond what the arithmetic holds ---- */

static db_config *base_plus(int n, const char *const *extra)
{
    db_config *cfg = base_config();
    db_error err;
    if (db_config_parse(cfg, n, extra, &err) != DB_OK) fail_msg("%s", err.message);
    return cfg;
}

/* db_sim_create refused, with a message holding each of words[] (a NULL-terminated list) */
static void assert_create_refused(const db_config *cfg, int code, const char *const *words)
{
    db_sim *sim = (db_sim *)0x1;
    db_error err;
    int rc = db_sim_create(&sim, cfg, NULL, &err);
    if (rc != code) fail_msg("db_sim_create: status %d (expected %d): %s", rc, code, rc ? err.message : "");
    assert_null(sim);
    for (const char *const *w = words; *w; w++)
        if (!strstr(err.message, *w)) fail_msg("'%s' not in: %s", *w, err.message);
}

/* teardown: a failed assertion skips the test's own unsetenv, and the limit would reach the tests after it */
static int unset_memory_limit(void **state)
{
    (void)state;
    unsetenv("DUALBRAGG_MAX_MEMORY_GIB");
    return 0;
}

static void test_memory_refused_before_allocation(void **state)
{
    (void)state;
    unsetenv("DUALBRAGG_MAX_MEMORY_GIB");
    /* beyond any machine: 1e8 phi steps x 2e9 domains of 72-byte lattice triples is about 2.7e10 GiB */
    const char *huge[] = {"-mosaic", "1", "-mosaic_dom", "2000000000", "-phisteps", "100000000"};
    db_config *cfg = base_plus(6, huge);
    const char *huge_words[] = {"GiB of memory", "100000000 phi steps (-phisteps", "2000000000 mosaic domains (-mosaic_dom)",
                                "half of this machine's memory", "nothing was allocated", NULL};
    assert_create_refused(cfg, DB_ERR_ARGUMENT, huge_words);
    db_config_destroy(cfg);

    /* a documented limit in the environment: 1 MiB */
    setenv("DUALBRAGG_MAX_MEMORY_GIB", "0.0009765625", 1);
    const char *dom[] = {"-mosaic", "1", "-mosaic_dom", "100000"}; /* 10 MB of domain matrices alone */
    cfg = base_plus(4, dom);
    const char *dom_words[] = {"the simulation's tables would need", "100000 mosaic domains (-mosaic_dom)",
                               "more than the 0.000977 GiB that DUALBRAGG_MAX_MEMORY_GIB allows", NULL};
    assert_create_refused(cfg, DB_ERR_ARGUMENT, dom_words);
    db_config_destroy(cfg);
    const char *phi[] = {"-phisteps", "100000"}; /* 4.8 MB of primal lattice */
    cfg = base_plus(2, phi);
    const char *phi_words[] = {"100000 phi steps (-phisteps", "DUALBRAGG_MAX_MEMORY_GIB", NULL};
    assert_create_refused(cfg, DB_ERR_ARGUMENT, phi_words);
    db_config_destroy(cfg);
    const char *det[] = {"-detpixels", "1024"}; /* a 4 MiB float image */
    cfg = base_plus(2, det);
    const char *det_words[] = {"the detector's float image would need", "1024 x 1024 pixels (-detpixels", NULL};
    assert_create_refused(cfg, DB_ERR_ARGUMENT, det_words);
    db_config_destroy(cfg);

    /* the derivative blocks are 29 times the primal one at 28 directions: 2000 domains x 3 phi steps take
     * 1.5 MB at creation, 6.5 MB for a 4-direction pass and 37 MB for a 28-direction one; limit 10 MiB */
    setenv("DUALBRAGG_MAX_MEMORY_GIB", "0.009765625", 1);
    const char *grad[] = {"-mosaic", "1", "-mosaic_dom", "2000"};
    cfg = base_plus(4, grad);
    db_sim *sim;
    db_error err;
    assert_int_equal(db_sim_create(&sim, cfg, NULL, &err), DB_OK);
    int box[4] = {60, 63, 60, 63};
    assert_int_equal(db_sim_select_boxes(sim, box, 1, &err), DB_OK);
    int all[DB_MAX_CHUNK];
    int n = db_param_parse_list("all", all, &err);
    double values[16], *jac = malloc((size_t)16 * n * sizeof(double));
    assert_int_equal(db_sim_run_selected(sim, all, n, values, jac, &err), DB_ERR_ARGUMENT);
    assert_non_null(strstr(err.message, "the tables of a derivative pass (28 directions; -grad_chunk lowers it)"));
    assert_non_null(strstr(err.message, "2000 mosaic domains (-mosaic_dom)"));
    assert_int_equal(db_sim_set_chunk(sim, 4), DB_OK);
    assert_int_equal(db_sim_run_selected(sim, all, n, values, jac, &err), DB_OK);
    free(jac);
    db_sim_destroy(sim);
    db_config_destroy(cfg);

    /* the decision logs a finite-difference check records (16 bytes per inner iteration): 256 pixels x 9
     * iterations of the base are 36 KiB, refused under a 16 KiB limit and accepted without one */
    cfg = base_config();
    assert_int_equal(db_sim_create(&sim, cfg, NULL, &err), DB_OK);
    int box16[4] = {50, 65, 50, 65};
    assert_int_equal(db_sim_select_boxes(sim, box16, 1, &err), DB_OK);
    db_decision_log *logs = calloc(256, sizeof *logs);
    setenv("DUALBRAGG_MAX_MEMORY_GIB", "0.0000152587890625", 1);
    assert_int_equal(db_sim_set_decision_logs(sim, logs, 256, &err), DB_ERR_ARGUMENT);
    assert_non_null(strstr(err.message, "the decision logs of a finite-difference check would need"));
    assert_non_null(strstr(err.message, "256 pixels x 9 inner iterations each"));
    unsetenv("DUALBRAGG_MAX_MEMORY_GIB");
    assert_int_equal(db_sim_set_decision_logs(sim, logs, 256, &err), DB_OK);
    assert_int_equal(db_sim_set_decision_logs(sim, NULL, 0, &err), DB_OK);
    free(logs);
    db_sim_destroy(sim);
    db_config_destroy(cfg);
}

/* A flag whose integer is missing or no integer fails cleanly and changes nothing. libFuzzer found "-seed" alone
 * storing the negation of a long no one had set (UBSan saw it the time that garbage was LONG_MIN); the seed given
 * before must survive a failed one. */
static void test_integer_flag_without_value(void **state)
{
    (void)state;
    db_error err;
    static const char *const flags[] = {"-seed", "-mosaic_seed", "-misset_seed", "-detpixels", "-phisteps", "-mosaic_dom"};
    for (size_t k = 0; k < sizeof flags / sizeof flags[0]; k++) {
        db_config *cfg = base_config();
        const char *alone[] = {flags[k]}, *word[] = {flags[k], "x"};
        assert_int_equal(db_config_parse(cfg, 1, alone, &err), DB_ERR_ARGUMENT);
        assert_non_null(strstr(err.message, flags[k]));
        assert_non_null(strstr(err.message, "command line ends"));
        assert_int_equal(db_config_parse(cfg, 2, word, &err), DB_ERR_ARGUMENT);
        assert_non_null(strstr(err.message, "got 'x'"));
        db_config_destroy(cfg);
    }
    db_config *cfg = base_config();
    const char *five[] = {"-seed", "5"}, *alone[] = {"-seed"}, *word[] = {"-seed", "x"};
    assert_int_equal(db_config_parse(cfg, 2, five, &err), DB_OK);
    assert_int_equal(db_config_parse(cfg, 1, alone, &err), DB_ERR_ARGUMENT);
    assert_int_equal(db_config_parse(cfg, 2, word, &err), DB_ERR_ARGUMENT);
    assert_int_equal(cfg->seed, -5); /* stored negated, as the reference */
    assert_int_equal(cfg->seed_given, 1);
    db_config_destroy(cfg);
}

static void test_values_beyond_the_arithmetic(void **state)
{
    (void)state;
    db_error err;
    db_config *cfg = base_config();
    /* -N and its spellings: 1 to 1e9 cells (the lattice factor takes (long)h0 * ((long)N - 1)) */
    const char *const flags[] = {"-N", "-Na", "-Nb", "-Nc"};
    for (int k = 0; k < 4; k++) {
        const char *big[] = {flags[k], "1e300"}, *edge[] = {flags[k], "1e9"}, *past[] = {flags[k], "1.000001e9"};
        assert_int_equal(db_config_parse(cfg, 2, big, &err), DB_ERR_GEOMETRY);
        assert_non_null(strstr(err.message, flags[k]));
        assert_non_null(strstr(err.message, ": must be from 1 to 1e+09 unit cells per crystal edge (got 1e+300)"));
        assert_int_equal(db_config_parse(cfg, 2, past, &err), DB_ERR_GEOMETRY);
        assert_int_equal(db_config_parse(cfg, 2, edge, &err), DB_OK);
    }
    assert_int_equal(db_config_set_cells(cfg, 2e9, 5, 5, &err), DB_ERR_GEOMETRY);
    assert_non_null(strstr(err.message, "-Na"));
    db_config_destroy(cfg);
    /* -mosaic: at most 360 degrees (the spread is rounded to float) */
    cfg = base_config();
    const char *mos[] = {"-mosaic", "1e300"}, *mos_edge[] = {"-mosaic", "360"};
    assert_int_equal(db_config_parse(cfg, 2, mos, &err), DB_ERR_GEOMETRY);
    assert_non_null(strstr(err.message, "-mosaic: must be a spread of at most 360 degrees (got 1e+300)"));
    assert_int_equal(db_config_parse(cfg, 2, mos_edge, &err), DB_OK);
    db_config_destroy(cfg);

    /* a crystal size that makes more cells than that */
    const char *size[] = {"-xtal_size", "1e300"};
    cfg = base_plus(2, size);
    const char *size_words[] = {"unit cells along a (-Na, or -xtal_size", "at most 1e+09", NULL};
    assert_create_refused(cfg, DB_ERR_GEOMETRY, size_words);
    db_config_destroy(cfg);
    /* Miller indices beyond int: a cell edge over a wavelength, whichever way they come */
    const char *cell[] = {"-cell", "1e12", "1e12", "1e12", "90", "90", "90"};
    cfg = base_plus(7, cell);
    const char *cell_words[] = {"the cell edge of 1e+12 A at the wavelength 1 A reaches Miller indices up to 2e+12",
                                "-cell", "-lambda", NULL};
    assert_create_refused(cfg, DB_ERR_GEOMETRY, cell_words);
    db_config_destroy(cfg);
    const char *lam[] = {"-lambda", "1e-300"};
    cfg = base_plus(2, lam);
    const char *lam_words[] = {"reaches Miller indices up to", "beyond the 1e+09", "-lambda", NULL};
    assert_create_refused(cfg, DB_ERR_GEOMETRY, lam_words);
    db_config_destroy(cfg);
    const char *disp[] = {"-dispersion", "300", "-dispsteps", "3"}; /* wavelengths -0.5, 1, 2.5 A */
    cfg = base_plus(4, disp);
    const char *disp_words[] = {"source 1 has the wavelength -0.5 A", "-dispersion below 200%", NULL};
    assert_create_refused(cfg, DB_ERR_GEOMETRY, disp_words);
    db_config_destroy(cfg);
    /* a large index below the bound is accepted: a 4e8 A cell at 1 A reaches 8e8 */
    const char *edge_cell[] = {"-cell", "4e8", "4e8", "4e8", "90", "90", "90", "-detpixels", "8"};
    cfg = base_plus(9, edge_cell);
    db_sim *sim;
    assert_int_equal(db_sim_create(&sim, cfg, NULL, &err), DB_OK);
    db_sim_destroy(sim);
    db_config_destroy(cfg);

    /* the same bounds when a value is set in place */
    cfg = base_config();
    assert_int_equal(db_sim_create(&sim, cfg, NULL, &err), DB_OK);
    int na = db_param_from_name("na"), mosaic = db_param_from_name("mosaic"), a = db_param_from_name("a");
    double v = 2e9, before;
    assert_int_equal(db_sim_get_params(sim, &na, &before, 1, &err), DB_OK);
    assert_int_equal(db_sim_set_params(sim, &na, &v, 1, &err), DB_ERR_GEOMETRY);
    assert_non_null(strstr(err.message, "na: must be from 1 to 1e+09 unit cells per crystal edge (got 2e+09)"));
    v = 400;
    assert_int_equal(db_sim_set_params(sim, &mosaic, &v, 1, &err), DB_ERR_GEOMETRY);
    assert_non_null(strstr(err.message, "at most 360 deg"));
    /* the CLI's lower bounds hold in place too: at least one cell, and a spread that keeps its domains */
    v = 0.5;
    assert_int_equal(db_sim_set_params(sim, &na, &v, 1, &err), DB_ERR_GEOMETRY);
    assert_non_null(strstr(err.message, "na: must be from 1 to 1e+09 unit cells per crystal edge (got 0.5)"));
    v = 0;
    assert_int_equal(db_sim_set_params(sim, &mosaic, &v, 1, &err), DB_ERR_GEOMETRY);
    assert_non_null(strstr(err.message, "mosaic: the spread must stay positive (got 0 deg"));
    v = 1e12;
    assert_int_equal(db_sim_set_params(sim, &a, &v, 1, &err), DB_ERR_GEOMETRY);
    assert_non_null(strstr(err.message, "Miller indices"));
    double after;
    assert_int_equal(db_sim_get_params(sim, &na, &after, 1, &err), DB_OK);
    assert_close(after, before, 0, 0);
    db_sim_destroy(sim);
    db_config_destroy(cfg);
}

/* -roi lies on the detector, as a -boxes box must: 0 <= xmin <= xmax <= fpixels-1, likewise y */
static void test_roi_beyond_the_detector(void **state)
{
    (void)state;
    db_error err;
    static const int bad[][4] = {{0, 128, 0, 10}, {0, 10, 0, 128}, {127, 127, 0, 200}, {200, 300, 0, 10}, {5, 4, 0, 10}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        db_config *cfg = base_config();
        assert_int_equal(db_config_set_roi(cfg, bad[i][0], bad[i][1], bad[i][2], bad[i][3], &err), DB_OK);
        char values[64];
        snprintf(values, sizeof values, "-roi %d %d %d %d", bad[i][0], bad[i][1], bad[i][2], bad[i][3]);
        const char *words[] = {values, "the 128 x 128 detector", "0 <= xmin <= xmax <= 127 and 0 <= ymin <= ymax <= 127",
                               NULL};
        assert_create_refused(cfg, DB_ERR_GEOMETRY, words);
        db_config_destroy(cfg);
    }
    /* the whole detector, given as a -roi, is the image without one */
    db_config *cfg = base_config(), *whole = base_config();
    assert_int_equal(db_config_set_roi(whole, 0, 127, 0, 127, &err), DB_OK);
    float *a = render(cfg, NULL), *b = render(whole, NULL);
    assert_memory_equal(a, b, 128 * 128 * sizeof(float));
    free(a);
    free(b);
    db_config_destroy(cfg);
    db_config_destroy(whole);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_field_by_field_equals_arguments),
        cmocka_unit_test(test_geometry_read_back),
        cmocka_unit_test(test_two_simulations_alive_with_different_seeds),
        cmocka_unit_test(test_errors_are_codes_and_messages),
        cmocka_unit_test(test_library_is_silent_and_leaves_the_folder_alone),
        cmocka_unit_test(test_real_cell_counts),
        cmocka_unit_test(test_null_configuration_arguments),
        cmocka_unit_test(test_null_simulation_arguments),
        cmocka_unit_test(test_forced_decisions_released),
        cmocka_unit_test_teardown(test_memory_limit, unset_memory_limit),
        cmocka_unit_test_teardown(test_memory_refused_before_allocation, unset_memory_limit),
        cmocka_unit_test(test_values_beyond_the_arithmetic),
        cmocka_unit_test(test_integer_flag_without_value),
        cmocka_unit_test(test_roi_beyond_the_detector),
    };
    return cmocka_run_group_tests_name("C API", tests, NULL, NULL);
}
