/* dualbragg: the command line. A thin front over the library (include/dualbragg.h): it owns the current
 * folder's conventions (default file names, the Fdump.bin cache) and the printing. */
#include "dualbragg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct progress_state {
    struct timespec start;
    int last_percent;
    int shown;
} progress_state;

static double seconds_since(const struct timespec *t0)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t0->tv_sec) + 1e-9 * (double)(now.tv_nsec - t0->tv_nsec);
}

/* One line on stderr, updated in place, once the run has taken more than a second. */
static void show_progress(void *user, double fraction)
{
    progress_state *ps = (progress_state *)user;
    int percent = (int)(fraction * 100.0);
    if (percent == ps->last_percent || seconds_since(&ps->start) < 1.0) return;
    ps->last_percent = percent;
    ps->shown = 1;
    fprintf(stderr, "\r%3d%% done", percent);
    fflush(stderr);
}

/* Outputs are checked before the run, so that a bad path fails early instead of after other files are written. */
static int check_writable(const char *path)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == path) snprintf(dir, sizeof dir, "/");
    else snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    if (access(dir, W_OK | X_OK) != 0) {
        fprintf(stderr, "dualbragg: error: cannot write '%s': folder '%s' %s\n", path, dir,
                access(dir, F_OK) ? "does not exist" : "is not writable");
        return 1;
    }
    return 0;
}

static int fail(const db_error *err)
{
    fprintf(stderr, "dualbragg: error: %s\n", err->message);
    return err->code == DB_ERR_ARGUMENT ? 2 : 1;
}

int main(int argc, char **argv)
{
    db_error err;
    int params[64], nparams = 0, tf, ts;
    double *grads = NULL;
    if (argc < 2) {
        fprintf(stderr, "usage: dualbragg (-cell a b c alpha beta gamma | -mat FILE) (-hkl FILE | -default_F F) [flags]\n"
                        "       nanoBragg's flags; see README.md for the complete list\n");
        return 2;
    }
    db_config *cfg = db_config_create();
    if (!cfg) {
        fprintf(stderr, "dualbragg: error: out of memory\n");
        return 1;
    }
    int rc = db_config_parse(cfg, argc - 1, (const char *const *)(argv + 1), &err);
    if (rc) {
        db_config_destroy(cfg);
        return fail(&err);
    }
    fputs(db_config_warnings(cfg), stderr);

    const db_output_kind kinds[] = {DB_OUT_FLOAT, DB_OUT_INT, DB_OUT_PGM, DB_OUT_NOISE, DB_OUT_FLOAT64};
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        const char *p = db_config_output_path(cfg, kinds[k]);
        if (p && check_writable(p)) {
            db_config_destroy(cfg);
            return 1;
        }
    }
    if (db_config_grad_list(cfg)) {
        char prefix[4096];
        if (db_config_grad_prefix(cfg, prefix, sizeof prefix) == 0 && check_writable(prefix)) {
            db_config_destroy(cfg);
            return 1;
        }
    }

    /* without -hkl the reference reads the cache left by an earlier run; say so, always */
    const char *dump = db_config_output_path(cfg, DB_OUT_FDUMP);
    const char *fdump_in = NULL;
    if (!db_config_has_hkl(cfg) && access(dump, F_OK) == 0) {
        fdump_in = dump;
        printf("reading Fs from %s (no -hkl given)\n", dump);
    }
    db_sim *sim;
    rc = db_sim_create(&sim, cfg, fdump_in, &err);
    if (rc) {
        db_config_destroy(cfg);
        return fail(&err);
    }
    if (db_config_has_hkl(cfg)) {
        if (db_sim_write_fdump(sim, dump, &err)) fprintf(stderr, "dualbragg: warning: %s\n", err.message);
        else printf("writing dump file for next time: %s\n", dump);
    }

    int F, S;
    db_sim_size(sim, &F, &S);
    size_t n = (size_t)F * (size_t)S;
    float *image = (float *)malloc(n * sizeof(float));
    const char *f64 = db_config_output_path(cfg, DB_OUT_FLOAT64);
    double *image64 = f64 ? (double *)malloc(n * sizeof(double)) : NULL;
    if (!image || (f64 && !image64)) {
        fprintf(stderr, "dualbragg: error: out of memory for a %d x %d image\n", F, S);
        rc = 1;
        goto done;
    }
    if (db_config_grad_list(cfg)) {
        nparams = db_param_parse_list(db_config_grad_list(cfg), params, &err);
        grads = nparams > 0 ? (double *)malloc((size_t)nparams * n * sizeof(double)) : NULL;
        if (!grads) {
            fprintf(stderr, "dualbragg: error: out of memory for %d derivative images\n", nparams);
            rc = 1;
            goto done;
        }
        if (db_config_grad_chunk(cfg) > 0) db_sim_set_chunk(sim, db_config_grad_chunk(cfg));
    }
    progress_state ps = {{0, 0}, -1, 0};
    clock_gettime(CLOCK_MONOTONIC, &ps.start);
    /* as the reference, printout suppresses the progress meter */
    if (db_config_progress(cfg) && !db_config_printout(cfg, &tf, &ts)) db_sim_set_progress(sim, show_progress, &ps);
    rc = nparams > 0 ? db_sim_run_grad(sim, params, nparams, image, image64, grads, &err)
                     : db_sim_run(sim, image, image64, &err);
    if (ps.shown) fprintf(stderr, "\r100%% done\n");
    if (rc) {
        rc = fail(&err);
        goto done;
    }

    /* as the reference: the -printout block comes out during the run, before the summary */
    if (db_config_printout(cfg, &tf, &ts)) {
        fflush(stdout);
        if ((rc = db_sim_printout(sim, tf, ts, image, stdout, &err))) goto failed;
    }
    db_run_summary sum;
    db_sim_summary(sim, &sum);
    const db_geometry *g = &sum.geometry;
    printf("Unit Cell: %g %g %g %g %g %g\n", g->cell[0], g->cell[1], g->cell[2], g->cell[3], g->cell[4], g->cell[5]);
    printf("volume = %g A^3\n", sum.volume);
    printf("  distance=%g mm close_distance=%g mm  Fbeam=%g Sbeam=%g mm  ORGX=%g ORGY=%g\n", g->distance_mm,
           g->close_distance_mm, g->Fbeam_mm, g->Sbeam_mm, g->ORGX, g->ORGY);
    printf("  %d x %d pixels, %d sources, %d mosaic domains, %d phi steps, %dx%d oversampling (%d steps)\n", g->fpixels,
           g->spixels, g->sources, g->mosaic_domains, g->phisteps, g->oversample, g->oversample, g->steps);
    printf("  interpolation of F: %s%s\n", g->interpolate ? "on" : "off",
           sum.interpolation_switched_off ? " (switched off at an out-of-range sample, as the reference)" : "");
    printf("solid angle subtended by detector = %g steradian ( %g%% sphere)\n", sum.solid_angle,
           100 * sum.solid_angle / 4 / 3.14159265358979323846);

    const char *path = db_config_output_path(cfg, DB_OUT_FLOAT);
    if ((rc = db_write_float_image(path, image, n, &err))) goto failed;
    printf("writing %s as %zu 4-byte floats\n", path, n);
    if (f64) {
        if ((rc = db_write_float64_image(f64, image64, n, &err))) goto failed;
        printf("writing %s as %zu 8-byte floats\n", f64, n);
    }
    printf("max_I = %g  at %g %g\n", sum.max_I, sum.max_I_x, sum.max_I_y);
    printf("mean= %g rms= %g rmsd= %g\n", sum.mean, sum.rms, sum.rmsd);
    if (nparams > 0) {
        char prefix[4096], name[4200];
        if (db_config_grad_prefix(cfg, prefix, sizeof prefix)) {
            fprintf(stderr, "dualbragg: error: -gradprefix is too long\n");
            rc = 1;
            goto done;
        }
        for (int k = 0; k < nparams; k++) {
            snprintf(name, sizeof name, "%s%s.bin", prefix, db_param_name(params[k]));
            if ((rc = db_write_float64_image(name, grads + (size_t)k * n, n, &err))) goto failed;
            printf("writing %s: d(pixel)/d(%s) per %s, %zu 8-byte floats\n", name, db_param_name(params[k]),
                   db_param_unit(params[k]), n);
        }
    }
    if (db_config_trace_pixel(cfg, &tf, &ts)) {
        if (nparams > DB_MAX_CHUNK)
            fprintf(stderr, "dualbragg: warning: -trace_pixel shows the tangents of the first %d of the %d -grad parameters\n",
                    DB_MAX_CHUNK, nparams);
        fflush(stdout);
        if ((rc = db_sim_trace_pixel(sim, tf, ts, params, nparams > DB_MAX_CHUNK ? DB_MAX_CHUNK : nparams, stdout, &err)))
            goto failed;
    }
    double scale;
    path = db_config_output_path(cfg, DB_OUT_INT);
    if ((rc = db_sim_write_int_image(sim, path, image, &scale, &err))) goto failed;
    printf("intfile_scale = %g\n", scale);
    printf("writing %s as 2-byte integers\n", path);
    if ((path = db_config_output_path(cfg, DB_OUT_PGM))) {
        if ((rc = db_sim_write_pgm(sim, path, image, &scale, &err))) goto failed;
        printf("pgm_scale = %g\n", scale);
        printf("writing %s as 1-byte integers\n", path);
    }
    if ((path = db_config_output_path(cfg, DB_OUT_NOISE))) {
        double photons;
        int overloads;
        if ((rc = db_sim_write_noise_image(sim, path, image, &photons, &overloads, &err))) goto failed;
        printf("%.0f photons on noise image (%d overloads)\n", photons, overloads);
        printf("writing %s as 2-byte integers\n", path);
    }
    rc = 0;
    goto done;
failed:
    rc = fail(&err);
done:
    free(image);
    free(image64);
    free(grads);
    db_sim_destroy(sim);
    db_config_destroy(cfg);
    return rc;
}
