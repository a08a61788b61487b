/* bench_selected: the cost of a run on chosen pixels follows the pixels, not the detector. The same 32x32 box
 * (the same pixels relative to the beam, so the same physics) with the eleven mission derivatives, on 256x256,
 * 1024x1024 and 2048x2048 detectors, evaluated three ways:
 *   selected   db_sim_select_boxes + db_sim_run_selected (values and Jacobian of the box only);
 *   roi_images db_sim_run_grad with the box as -roi (full-size images, zero outside the box);
 *   iterate    db_sim_set_params (a moved) + db_sim_run_selected, as a refinement loop does.
 * In-process time (creation excluded), median of RUNS repetitions; the last column is the selected time over the
 * 256x256 one (target: at most 1.5 at 2048x2048). */
#include "dualbragg.h"
#include "bench_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static db_sim *make(int det, int roi, const int box[4])
{
    char buf[1024];
    snprintf(buf, sizeof buf,
             "-cell 100 100 100 90 90 90 -misset 10 20 30 -default_F 100 -N 5 -lambda 1 -distance 100 -pixel 0.1 "
             "-detpixels %d -oversample 1 -phi 0 -osc 0.1 -phisteps 2",
             det);
    if (roi) snprintf(buf + strlen(buf), sizeof buf - strlen(buf), " -roi %d %d %d %d", box[0], box[1], box[2], box[3]);
    char *argv[64], *save = NULL;
    int argc = 0;
    for (char *t = strtok_r(buf, " ", &save); t && argc < 63; t = strtok_r(NULL, " ", &save)) argv[argc++] = t;
    db_config *cfg = db_config_create();
    db_sim *sim = NULL;
    db_error err;
    if (db_config_parse(cfg, argc, (const char *const *)argv, &err) || db_sim_create(&sim, cfg, NULL, &err)) {
        fprintf(stderr, "bench_selected: %s\n", err.message);
        exit(1);
    }
    db_config_destroy(cfg);
    return sim;
}

int main(int argc, char **argv)
{
    int runs = argc > 1 ? atoi(argv[1]) : 5;
    if (runs < 1 || runs > 99) runs = 5;
    const int dets[] = {256, 1024, 2048};
    int params[11];
    for (int k = 0; k < 11; k++) params[k] = k; /* a..gamma, misset_x..z, phi0, osc */
    printf("bench_selected: a 32x32 box, value + 11 derivatives, median of %d runs, in-process time (creation excluded)\n", runs);
    printf("%-10s %12s %14s %12s %16s\n", "detector", "selected_s", "roi_images_s", "iterate_s", "selected/256");
    double base = 0.0;
    for (size_t d = 0; d < sizeof dets / sizeof dets[0]; d++) {
        int N = dets[d];
        int box[4] = {N / 2 + 40, N / 2 + 71, N / 2 + 40, N / 2 + 71};
        db_sim *sel = make(N, 0, box), *roi = make(N, 1, box);
        db_error err;
        if (db_sim_select_boxes(sel, box, 1, &err)) {
            fprintf(stderr, "bench_selected: %s\n", err.message);
            return 1;
        }
        long count = db_sim_selected_count(sel);
        double *values = malloc((size_t)count * sizeof(double)), *jac = malloc((size_t)11 * count * sizeof(double));
        size_t npix = (size_t)N * N;
        float *img = malloc(npix * sizeof(float));
        double *grads = malloc((size_t)11 * npix * sizeof(double));
        double ts[99], tr[99], ti[99];
        int pa = 0;
        double a0;
        db_sim_get_params(sel, &pa, &a0, 1, &err);
        for (int r = 0; r < runs; r++) {
            double t0 = bench_now();
            int rc = db_sim_run_selected(sel, params, 11, values, jac, &err);
            double t1 = bench_now();
            rc |= db_sim_run_grad(roi, params, 11, img, NULL, grads, &err);
            double t2 = bench_now();
            double a = a0 + 0.01 * (r + 1);
            rc |= db_sim_set_params(sel, &pa, &a, 1, &err);
            rc |= db_sim_run_selected(sel, params, 11, values, jac, &err);
            double t3 = bench_now();
            if (rc) {
                fprintf(stderr, "bench_selected: %s\n", err.message);
                return 1;
            }
            ts[r] = t1 - t0;
            tr[r] = t2 - t1;
            ti[r] = t3 - t2;
            db_sim_set_params(sel, &pa, &a0, 1, &err);
        }
        double ms = bench_median(ts, runs), mr = bench_median(tr, runs), mi = bench_median(ti, runs);
        if (d == 0) base = ms;
        char label[32];
        snprintf(label, sizeof label, "%dx%d", N, N);
        printf("%-10s %12.4f %14.4f %12.4f %16.2f\n", label, ms, mr, mi, ms / base);
        fflush(stdout);
        free(values);
        free(jac);
        free(img);
        free(grads);
        db_sim_destroy(sel);
        db_sim_destroy(roi);
    }
    return 0;
}
