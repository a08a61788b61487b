/* test_gpu.c: the GPU renderer against the CPU renderer on every golden case: the image over the whole detector, and
 * the derivative images of every parameter the case can differentiate on three 24 x 24 boxes (corner, centre,
 * opposite corner; the carryover's exceptional sample then falls in the first box), with 12, 6, 4, 3, 2 and 1
 * directions per GPU pass in turn over the cases.
 *
 * Built twice (CMakeLists.txt):
 *  - test_gpu_emulated (DB_TEST_DEVICE "emulate"): the GPU thread's function run on the CPU over the very table block
 *    a GPU receives, and the same host-side scatter: bitwise equal to the CPU renderer, on any machine;
 *  - test_gpu (DB_TEST_DEVICE "cuda"): on a GPU, max |gpu - cpu| <= 1e-12 x max |cpu| per image (the device's sin,
 *    cos, exp and sqrt differ from glibc's in the last bits, and a sum of many terms carries that to about 1e-14 of
 *    its size), and the float image against the reference's float.bin: max |gpu - ref| <= 2^-23 x max |ref| (float32
 *    rounding of values that differ at 1e-12: at most one unit in the last place of the largest pixel), with the
 *    number of images that stay bitwise reported. Exit status 77 (skipped) without a usable GPU.
 * No cmocka: this program runs on GPU machines that have none. */
#include "dualbragg.h"
#include "cli_harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef DB_TEST_DEVICE
#define DB_TEST_DEVICE "emulate"
#endif
static const int bitwise = DB_TEST_DEVICE[0] == 'e';

static const char *const CASES[] = {"a_cubic", "a2_cubic_autoos", "b_triclinic", "b2_interp", "c_phi0_carryover",
                                    "d_phi005_nocarry", "e_mosaic", "f_div_disp", "f2_hdiv_only", "g_os_thick_polar",
                                    "g2_oversample_flags", "h_xds_rot_twotheta", "h2_dials_rot_twotheta",
                                    "h3_mosflm_rot_twotheta", "i_round", "i2_gauss", "i3_tophat", "j_roi", "k_matfile",
                                    "l_water", "m_curved_det", "m2_pointpix_nopolar", "n_sourcefile", "o_flux_dmin"};

static int failures;
static const char *golden_dir = DB_GOLDEN_DIR;

static db_sim *sim_of(const char *name, const char *device)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/%s", golden_dir, name);
    if (chdir(dir) != 0) return NULL;
    harness_args a = {0};
    if (harness_case_args(golden_dir, name, 1, &a)) return NULL;
    int has_hkl = 0;
    for (int i = 0; i < a.argc; i++) has_hkl |= strcmp(a.argv[i], "-hkl") == 0;
    db_config *cfg = db_config_create();
    db_error err;
    db_sim *sim = NULL;
    if (db_config_parse(cfg, a.argc, (const char *const *)a.argv, &err) ||
        db_sim_create(&sim, cfg, !has_hkl && access("Fdump.bin", F_OK) == 0 ? "Fdump.bin" : NULL, &err) ||
        db_sim_set_device(sim, device, &err)) {
        fprintf(stderr, "%s (%s): %s\n", name, device, err.message);
        db_sim_destroy(sim);
        sim = NULL;
    }
    db_config_destroy(cfg);
    harness_args_free(&a);
    return sim;
}

/* |a - b| over an image against its scale; counts values that differ in any bit. */
static void compare(const char *what, const char *name, const double *cpu, const double *gpu, size_t n)
{
    double scale = 0.0, worst = 0.0;
    long differ = 0;
    for (size_t i = 0; i < n; i++) {
        if (fabs(cpu[i]) > scale) scale = fabs(cpu[i]);
        double d = fabs(gpu[i] - cpu[i]);
        if (d > worst || isnan(d)) worst = isnan(d) ? INFINITY : d;
        if (memcmp(&cpu[i], &gpu[i], sizeof(double)) != 0) differ++;
    }
    int ok = bitwise ? differ == 0 : worst <= 1e-12 * scale;
    if (!ok) {
        failures++;
        printf("FAIL %s %s: %ld values differ, max |gpu - cpu| = %.3g (scale %.3g)\n", name, what, differ, worst, scale);
    }
}

static double *run64(db_sim *sim, const int *params, int np, double **grads)
{
    int F, S;
    db_sim_size(sim, &F, &S);
    size_t n = (size_t)F * S;
    float *img = malloc(n * sizeof(float));
    double *img64 = calloc(n, sizeof(double));
    db_error err;
    if (np > 0) *grads = calloc((size_t)np * n, sizeof(double));
    int rc = np > 0 ? db_sim_run_grad(sim, params, np, img, img64, *grads, &err) : db_sim_run(sim, img, img64, &err);
    free(img);
    if (rc) {
        printf("FAIL run: %s\n", err.message);
        failures++;
        free(img64);
        return NULL;
    }
    return img64;
}

/* The derivatives a case can take: all 26, less those its configuration refuses (fluence set by -flux, mosaic
 * without domains, N from a crystal size). */
static int case_params(db_sim *sim, int *params)
{
    db_error err;
    int all[64], n = db_param_parse_list("all", all, &err), k = 0;
    for (int j = 0; j < n; j++) {
        double v;
        if (db_sim_get_params(sim, &all[j], &v, 1, &err) == 0 && db_sim_set_params(sim, &all[j], &v, 1, &err) == 0)
            params[k++] = all[j];
    }
    return k;
}

int main(int argc, char **argv)
{
    if (argc > 1) golden_dir = argv[1]; /* a copy of the tree elsewhere (a GPU machine) */
    if (!bitwise) {
        db_config *cfg = db_config_create();
        const char *args[] = {"-cell", "100", "100", "100", "90", "90", "90", "-default_F", "1", "-detpixels", "8"};
        db_sim *probe = NULL;
        db_error err;
        db_config_parse(cfg, 11, args, &err);
        db_sim_create(&probe, cfg, NULL, &err);
        int rc = db_sim_set_device(probe, "cuda", &err);
        db_sim_destroy(probe);
        db_config_destroy(cfg);
        if (rc) {
            printf("test_gpu: skipped: %s\n", err.message);
            return 77;
        }
    }
    int images = 0, ref_bitwise = 0;
    for (size_t c = 0; c < sizeof CASES / sizeof CASES[0]; c++) {
        const char *name = CASES[c];
        db_sim *cpu = sim_of(name, "cpu"), *gpu = sim_of(name, DB_TEST_DEVICE);
        if (!cpu || !gpu) {
            failures++;
            printf("FAIL %s: no simulation\n", name);
            db_sim_destroy(cpu);
            db_sim_destroy(gpu);
            continue;
        }
        int F, S;
        db_sim_size(cpu, &F, &S);
        size_t n = (size_t)F * S;
        /* the image over the whole detector (the case's -roi and -mask) */
        double *a = run64(cpu, NULL, 0, NULL), *b = run64(gpu, NULL, 0, NULL);
        if (a && b) {
            compare("image", name, a, b, n);
            /* the summary's solid angle: the renderer's per-span sums (the GPU's summed on the host) */
            db_run_summary sa, sb;
            db_sim_summary(cpu, &sa);
            db_sim_summary(gpu, &sb);
            compare("solid angle", name, &sa.solid_angle, &sb.solid_angle, 1);
            images++;
            if (!bitwise) { /* the reference's float image */
                char path[4200];
                snprintf(path, sizeof path, "%s/%s/float.bin", golden_dir, name);
                size_t len;
                float *ref = (float *)harness_read(path, &len);
                if (ref && len == n * sizeof(float)) {
                    double scale = 0.0, worst = 0.0;
                    long differ = 0;
                    for (size_t i = 0; i < n; i++) {
                        float g = (float)b[i];
                        if (fabs(ref[i]) > scale) scale = fabs(ref[i]);
                        if (fabs((double)g - ref[i]) > worst) worst = fabs((double)g - ref[i]);
                        differ += memcmp(&g, &ref[i], sizeof g) != 0;
                    }
                    ref_bitwise += differ == 0;
                    if (worst > ldexp(1.0, -23) * scale) {
                        failures++;
                        printf("FAIL %s float image against the reference: max diff %.3g of %.3g\n", name, worst, scale);
                    }
                    printf("%-24s float image: %s (%ld of %zu pixels differ from the reference's)\n", name,
                           differ ? "within float rounding" : "bitwise", differ, n);
                } else {
                    failures++;
                    printf("FAIL %s: cannot read %s\n", name, path);
                }
                free(ref);
            }
        }
        free(a);
        free(b);
        /* every derivative image on three boxes */
        int params[64], np = case_params(cpu, params);
        const int B = 24;
        int boxes[12] = {0, B - 1, 0, B - 1, F / 2 - B / 2, F / 2 + B / 2 - 1, S / 2 - B / 2, S / 2 + B / 2 - 1,
                         F - B, F - 1, S - B, S - 1};
        db_error err;
        /* every GPU pass width in turn over the cases: 12, 6, 4, 3, 2, 1 directions per pass (the 12-direction
         * kernel takes 5 to 12, the 4-direction one 2 to 4) */
        static const int widths[6] = {12, 6, 4, 3, 2, 1};
        db_sim_set_chunk(gpu, widths[c % 6]);
        if (db_sim_select_boxes(cpu, boxes, 3, &err) || db_sim_select_boxes(gpu, boxes, 3, &err)) {
            failures++;
            printf("FAIL %s boxes: %s\n", name, err.message);
        } else {
            double *ga = NULL, *gb = NULL;
            a = run64(cpu, params, np, &ga);
            b = run64(gpu, params, np, &gb);
            if (a && b) {
                compare("image on boxes", name, a, b, n);
                for (int k = 0; k < np; k++) {
                    char what[64];
                    snprintf(what, sizeof what, "d/d%s", db_param_name(params[k]));
                    compare(what, name, ga + (size_t)k * n, gb + (size_t)k * n, n);
                    images++;
                }
            }
            free(a);
            free(b);
            free(ga);
            free(gb);
        }
        printf("%-24s %s: image and %d derivative images checked (%d directions per pass)\n", name, DB_TEST_DEVICE, np,
               widths[c % 6]);
        db_sim_destroy(cpu);
        db_sim_destroy(gpu);
    }
    printf("%d images compared (%s against cpu, %s)%s", images, DB_TEST_DEVICE,
           bitwise ? "bitwise" : "max |gpu - cpu| <= 1e-12 max |cpu|", bitwise ? "\n" : "");
    if (!bitwise) printf("; %d of %zu float images bitwise equal to the reference's\n", ref_bitwise, sizeof CASES / sizeof CASES[0]);
    printf("%s\n", failures ? "FAILED" : "all passed");
    return failures ? 1 : 0;
}
