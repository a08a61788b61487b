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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_field_by_field_equals_arguments),
        cmocka_unit_test(test_geometry_read_back),
        cmocka_unit_test(test_two_simulations_alive_with_different_seeds),
        cmocka_unit_test(test_errors_are_codes_and_messages),
        cmocka_unit_test(test_library_is_silent_and_leaves_the_folder_alone),
        cmocka_unit_test(test_real_cell_counts),
    };
    return cmocka_run_group_tests_name("C API", tests, NULL, NULL);
}
