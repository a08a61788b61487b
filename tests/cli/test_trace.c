/* test_trace.c: the -trace_pixel format (README "Trace format") and gradcheck's -json output.
 * The trace is checked against quantities computed independently: the pixel line's value must be the
 * -floatfile64 pixel, its tangent the -grad image's pixel, and the sample lines' dI must add up to the
 * pixel's I (value = r_e^2 fluence I / steps * polar * omega * capture). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "cli_harness.h"

#include <math.h>

static const char *BASE = "-cell 100 100 100 90 90 90 -misset 10 20 30 -default_F 100 -N 5 -lambda 1 -distance 100 "
                          "-pixel 0.1 -detpixels 64 -oversample 1 -phi 0 -osc 0.1 -phisteps 3 -noprogress -nopgm -nonoise";

static double read_double_at(const char *path, long idx)
{
    size_t n;
    unsigned char *b = harness_read(path, &n);
    assert_non_null(b);
    assert_true((size_t)(idx + 1) * 8 <= n);
    double v;
    memcpy(&v, b + idx * 8, 8);
    free(b);
    return v;
}

static int count_fields(const char *line)
{
    int n = 0, in = 0;
    for (const char *p = line; *p && *p != '\n'; p++) {
        if (*p != ' ' && !in) n++;
        in = *p != ' ';
    }
    return n;
}

static void test_trace_pixel_format(void **state)
{
    (void)state;
    char dir[4096], line[8192], path[4200];
    assert_int_equal(harness_mkdtemp(dir, sizeof dir), 0);
    snprintf(line, sizeof line, "%s -floatfile f.bin -floatfile64 f64.bin -intfile i.img -grad a,phi0 -trace_pixel 20 30", BASE);
    harness_args a = {0};
    harness_split(&a, line);
    assert_int_equal(harness_run(DB_CLI_PATH, dir, &a, 0), 0);
    harness_args_free(&a);
    snprintf(path, sizeof path, "%s/out.log", dir);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char buf[8192];
    int samples = 0, pixel_lines = 0, header = 0;
    double sum_dI = 0.0, value = NAN, dvalue_a = NAN, polar = NAN, omega = NAN, capture = NAN;
    while (fgets(buf, sizeof buf, f)) {
        if (strncmp(buf, "# dualbragg trace v1: pixel 20 30", 33) == 0) header++;
        if (strncmp(buf, "sample ", 7) == 0) {
            /* 8 indices + 9 lattice components + h k l F_latt F_cell dI + 2 tangents + the word */
            assert_int_equal(count_fields(buf), 1 + 7 + 9 + 6 + 2);
            double v[32];
            int k = 0;
            char *p = buf + 7, *end;
            while (k < 24 && (v[k] = strtod(p, &end), end != p)) {
                p = end;
                k++;
            }
            assert_int_equal(k, 24);
            assert_true(v[6] >= 0 && v[6] < 3); /* carry slot: one of the three phi steps */
            sum_dI += v[21];
            samples++;
        }
        if (strncmp(buf, "pixel ", 6) == 0) {
            assert_int_equal(count_fields(buf), 1 + 4 + 2);
            assert_int_equal(sscanf(buf + 6, "%lf %lf %lf %lf %lf", &polar, &omega, &capture, &value, &dvalue_a), 5);
            pixel_lines++;
        }
    }
    fclose(f);
    assert_int_equal(header, 1);
    assert_int_equal(samples, 3); /* 1 layer x 1 sub-pixel x 1 source x 3 phi steps x 1 domain */
    assert_int_equal(pixel_lines, 1);
    long idx = 30L * 64 + 20;
    snprintf(path, sizeof path, "%s/f64.bin", dir);
    assert_true(value == read_double_at(path, idx));
    snprintf(path, sizeof path, "%s/f.da.bin", dir);
    assert_true(dvalue_a == read_double_at(path, idx));
    /* value = r_e^2 fluence (sum dI) / steps * polar * omega * capture, r_e^2 fluence = 1 by default */
    double expect = 7.94079248018965e-30 * 125932015286227086360700780544.0 * sum_dI / 3.0 * capture * polar * omega;
    assert_true(fabs(expect - value) <= 1e-12 * fabs(value));
    harness_rmtree(dir);
}

/* Runs dualbragg-gradcheck (it sits next to the simulator) with BASE and extra in a fresh folder; returns its exit
 * status and, in *json, the text of the gc.json it wrote (extra must ask for it). */
static int run_gradcheck(const char *extra, char **json)
{
    char dir[4096], line[8192], path[4200], gc[4200];
    assert_int_equal(harness_mkdtemp(dir, sizeof dir), 0);
    snprintf(line, sizeof line, "%s %s", BASE, extra);
    harness_args a = {0};
    harness_split(&a, line);
    snprintf(gc, sizeof gc, "%s", DB_CLI_PATH);
    char *slash = strrchr(gc, '/');
    assert_non_null(slash);
    snprintf(slash + 1, sizeof gc - (size_t)(slash + 1 - gc), "dualbragg-gradcheck");
    int status = harness_run(gc, dir, &a, 0);
    harness_args_free(&a);
    snprintf(path, sizeof path, "%s/gc.json", dir);
    size_t n;
    *json = (char *)harness_read(path, &n);
    harness_rmtree(dir);
    assert_non_null(*json);
    *json = realloc(*json, n + 1);
    (*json)[n] = '\0';
    return status;
}

static void test_gradcheck_json(void **state)
{
    (void)state;
    char *json;
    assert_int_equal(run_gradcheck("-grad a,misset_x -precise -check_roi 10 20 10 20 -json gc.json", &json), 0);
    assert_non_null(strstr(json, "\"roi\": [10, 20, 10, 20]"));
    assert_non_null(strstr(json, "\"all_pass\": true"));
    assert_non_null(strstr(json, "\"name\": \"a\""));
    assert_non_null(strstr(json, "\"name\": \"misset_x\""));
    assert_non_null(strstr(json, "\"pixels\": 121"));
    assert_null(strstr(json, "\"pass\": false"));
    free(json);
}

/* without -grad and -grad_hkl, gradcheck checks the eleven mission parameters (a..gamma, the misset, phi0, osc),
 * those and no others; whether each passes is test_gradcheck's business */
static void test_gradcheck_default_parameters(void **state)
{
    (void)state;
    char *json;
    int status = run_gradcheck("-check_roi 10 12 10 12 -json gc.json", &json);
    assert_true(status == 0 || status == 1);
    static const char *const mission[] = {"a",        "b",        "c",        "alpha", "beta", "gamma",
                                          "misset_x", "misset_y", "misset_z", "phi0",  "osc"};
    int names = 0;
    for (const char *p = json; (p = strstr(p, "\"name\": \"")); p++) names++;
    for (size_t k = 0; k < sizeof mission / sizeof mission[0]; k++) {
        char want[64];
        snprintf(want, sizeof want, "\"name\": \"%s\"", mission[k]);
        if (!strstr(json, want)) fail_msg("the default check lacks %s:\n%s", mission[k], json);
    }
    assert_int_equal(names, 11);
    free(json);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_trace_pixel_format),
        cmocka_unit_test(test_gradcheck_json),
        cmocka_unit_test(test_gradcheck_default_parameters),
    };
    return cmocka_run_group_tests_name("trace and gradcheck output", tests, NULL, NULL);
}
