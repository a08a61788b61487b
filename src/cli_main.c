/* dualbragg: the command line. A thin front over the library (include/dualbragg.h): it owns the current
 * folder's conventions (default file names, the Fdump.bin cache) and the printing. */
#include "dualbragg.h"
#include "config.h"
#include "io_paths.h"
#include "tempfiles.h"
#include "fileio.h" /* output checks and the output transaction */
#include "picture.h"
#include "error.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef struct progress_state {
    struct timespec start;
    int last_percent;
    double last_shown;      /* seconds since start at the last update */
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
    double t = seconds_since(&ps->start);
    /* a new percent, or at least once a second with the time left */
    if (t < 1.0 || (percent == ps->last_percent && t - ps->last_shown < 1.0)) return;
    ps->last_percent = percent;
    ps->last_shown = t;
    ps->shown = 1;
    if (fraction > 0.0)
        fprintf(stderr, "\r%3d%% done, about %.0f s left   ", percent, t / fraction * (1.0 - fraction));
    else
        fprintf(stderr, "\r%3d%% done", percent);
    fflush(stderr);
}

static int fail(const db_error *err)
{
    fprintf(stderr, "dualbragg: error: %s\n", err->message);
    return err->code == DB_ERR_ARGUMENT ? 2 : 1;
}

/* The run's output files: final name, the flag that names it, and the name it is written to during the run
 * (a temporary in the same folder, renamed into place with all the others once every output is written). */
#define MAX_OUTPUTS (8 + 2 * 64) /* the fixed outputs, then a derivative image and its picture per parameter */
typedef struct output {
    char path[4200];
    const char *flag;
    const char *tmp;
} output;

typedef struct outputs {
    output o[MAX_OUTPUTS];
    int n;
} outputs;

static output *add_output(outputs *out, const char *path, const char *flag)
{
    output *o = &out->o[out->n++];
    snprintf(o->path, sizeof o->path, "%s", path);
    o->flag = flag;
    o->tmp = NULL;
    return o;
}

static output *find_output(outputs *out, const char *flag)
{
    for (int i = 0; i < out->n; i++)
        if (strcmp(out->o[i].flag, flag) == 0) return &out->o[i];
    return NULL;
}

/* Everything that can be known before the run: each output can be created, and no two names (outputs, or an
 * output and an input) are the same file. Returns the exit status, 0 when all is well. */
static int check_outputs(const outputs *out, const db_config *cfg)
{
    db_error err;
    for (int i = 0; i < out->n; i++)
        if (db_check_output_path(out->o[i].path, out->o[i].flag, &err)) return fail(&err);
    db_named_path in[DB_IO_MAX_INPUTS], names[MAX_OUTPUTS];
    const int nin = db_io_inputs(cfg, 0, in); /* the Fdump cache is this program's output when -hkl is given */
    for (int i = 0; i < out->n; i++) {
        names[i].path = out->o[i].path;
        names[i].flag = out->o[i].flag;
    }
    if (db_io_check_distinct(names, out->n, in, nin, &err)) {
        fprintf(stderr, "dualbragg: error: %s\n", err.message);
        return 2;
    }
    return 0;
}

/* -grad_F as text: a header naming the columns, then one line per nonzero of J (rows: the selected pixels,
 * pixels[i] = s*fpixels + f; columns: the structure-factor list, hkl[3*j..]), in J's order: rows as selected,
 * columns ascending within a row. %.17g gives back each double exactly. */
static int write_grad_F(const char *path, const db_csr *J, const long *pixels, int fpixels, const int *hkl,
                        db_error *err)
{
    FILE *f = fopen(path, "w");
    if (!f) return db_fail(err, DB_ERR_IO, "%s", strerror(errno));
    fputs("# fpixel spixel h k l dI/dF\n", f);
    for (long i = 0; i < J->rows; i++) {
        const int fp = (int)(pixels[i] % fpixels), sp = (int)(pixels[i] / fpixels);
        for (long e = J->row_ptr[i]; e < J->row_ptr[i + 1]; e++) {
            const int *x = hkl + 3 * J->col[e];
            fprintf(f, "%d %d %d %d %d %.17g\n", fp, sp, x[0], x[1], x[2], J->val[e]);
        }
    }
    int failed = ferror(f), why = errno;
    if (fclose(f) != 0 && !failed) { /* a full device shows up here, when the buffer is flushed */
        failed = 1;
        why = errno;
    }
    return failed ? db_fail(err, DB_ERR_IO, "%s", strerror(why)) : DB_OK;
}

/* A failed write of output o: the message names the final file, not its temporary. */
static int write_failed(const output *o, const db_error *err)
{
    fprintf(stderr, "dualbragg: error: cannot write '%s' (%s): %s\n", o->path, o->flag, err->message);
    return 1;
}

int main(int argc, char **argv)
{
    db_error err;
    int params[64], nparams = 0, tf, ts;
    db_temp_cleanup_on_signals(); /* an interrupt leaves no temporary output behind */
    double *grads = NULL, *fvalues = NULL;
    long *fpix = NULL;
    int *fhkl = NULL;
    db_csr fjac = {0};
    float *image = NULL;
    double *image64 = NULL;
    db_sim *sim = NULL;
    db_out_set *txn = NULL;
    outputs *outs = NULL;
    output *o;
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
    if (db_config_grad_png(cfg) && !db_config_grad_list(cfg)) {
        fprintf(stderr, "dualbragg: error: -gradpng draws the derivative images of -grad LIST, and -grad is not given\n");
        db_config_destroy(cfg);
        return 2;
    }

    outs = (outputs *)calloc(1, sizeof *outs);
    txn = db_out_set_create();
    if (!outs || !txn) {
        fprintf(stderr, "dualbragg: error: out of memory\n");
        rc = 1;
        goto done;
    }
    /* every output the run will write, in the order they are written */
    const char *dump = db_config_output_path(cfg, DB_OUT_FDUMP);
    if (db_config_has_hkl(cfg)) add_output(outs, dump, "-dump");
    add_output(outs, db_config_output_path(cfg, DB_OUT_FLOAT), "-floatfile");
    const char *f64 = db_config_output_path(cfg, DB_OUT_FLOAT64);
    if (f64) add_output(outs, f64, "-floatfile64");
    const char *png = db_config_output_path(cfg, DB_OUT_PNG);
    if (png) add_output(outs, png, "-pngfile");
    if (db_config_grad_list(cfg)) {
        nparams = db_param_parse_list(db_config_grad_list(cfg), params, &err);
        if (nparams < 0) {
            rc = fail(&err);
            goto done;
        }
        char prefix[4096], name[4200];
        if (db_config_grad_prefix(cfg, prefix, sizeof prefix)) {
            fprintf(stderr, "dualbragg: error: -gradprefix is too long\n");
            rc = 2;
            goto done;
        }
        for (int k = 0; k < nparams; k++) {
            snprintf(name, sizeof name, "%s%s.bin", prefix, db_param_name(params[k]));
            add_output(outs, name, "-grad");
        }
        /* after all the .bin names, so that each group is found as one run of outputs */
        for (int k = 0; db_config_grad_png(cfg) && k < nparams; k++) {
            snprintf(name, sizeof name, "%s%s.png", prefix, db_param_name(params[k]));
            add_output(outs, name, "-gradpng");
        }
    }
    add_output(outs, db_config_output_path(cfg, DB_OUT_INT), "-intfile");
    if (db_config_output_path(cfg, DB_OUT_PGM)) add_output(outs, db_config_output_path(cfg, DB_OUT_PGM), "-pgmfile");
    if (db_config_output_path(cfg, DB_OUT_NOISE)) add_output(outs, db_config_output_path(cfg, DB_OUT_NOISE), "-noisefile");
    const char *grad_F = db_config_grad_F_file(cfg);
    if (grad_F) add_output(outs, grad_F, "-grad_F");

    /* without -hkl the reference reads the cache left by an earlier run; say so, always */
    const char *fdump_in = NULL;
    if (!db_config_has_hkl(cfg) && access(dump, F_OK) == 0) fdump_in = dump;
    /* outputs are checked before the run, so that a bad path fails early instead of after other files are written */
    if ((rc = check_outputs(outs, cfg))) goto done;
    if (fdump_in) printf("reading Fs from %s (no -hkl given)\n", dump);

    rc = db_sim_create(&sim, cfg, fdump_in, &err);
    if (rc) {
        rc = fail(&err);
        goto done;
    }
    if (strcmp(db_sim_device(sim), "cpu") != 0) printf("device: %s\n", db_sim_device(sim));
    /* known once the table is read (-hkl, or the cache read without it): refused before any work */
    if (grad_F && !db_sim_has_hkl_table(sim)) {
        fprintf(stderr, "dualbragg: error: -grad_F %s: the structure-factor Jacobian has one column per reflection of "
                        "a structure-factor table, and this run has none (give -hkl FILE, or leave an Fdump cache to "
                        "read without -hkl); -default_F alone is not a parameter\n", grad_F);
        rc = 2;
        goto done;
    }
    if (grad_F && strncmp(db_sim_device(sim), "cpu", 3) != 0) { /* before the image renders, not after */
        fprintf(stderr, "dualbragg: error: -grad_F %s: the structure-factor Jacobian is computed by the CPU renderers "
                        "only, and this run renders on %s (use -device cpu)\n", grad_F, db_sim_device(sim));
        rc = 2;
        goto done;
    }
    /* all or nothing: every output goes to a temporary name, and all are renamed into place at the end */
    for (int i = 0; i < outs->n; i++)
        if (!(outs->o[i].tmp = db_out_set_add(txn, outs->o[i].path, &err))) {
            rc = write_failed(&outs->o[i], &err);
            goto done;
        }
    if ((o = find_output(outs, "-dump"))) {
        if ((rc = db_sim_write_fdump(sim, o->tmp, &err))) {
            rc = write_failed(o, &err);
            goto done;
        }
        printf("writing dump file for next time: %s\n", dump);
    }

    int F, S;
    db_sim_size(sim, &F, &S);
    size_t n = (size_t)F * (size_t)S;
    image = (float *)malloc(n * sizeof(float));
    image64 = f64 ? (double *)malloc(n * sizeof(double)) : NULL;
    if (!image || (f64 && !image64)) {
        fprintf(stderr, "dualbragg: error: out of memory for a %d x %d image\n", F, S);
        rc = 1;
        goto done;
    }
    if (nparams > 0) {
        /* the derivative images are the memory of a run: refuse what cannot fit before trying */
        double need = (double)nparams * (double)n * sizeof(double);
        double phys = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGE_SIZE);
        if (phys > 0 && need > 0.8 * phys) {
            fprintf(stderr, "dualbragg: error: -grad: %d derivative images of %d x %d pixels need %.1f GiB; this machine has "
                            "%.1f GiB (use -boxes or -roi through the library's db_sim_run_selected, or fewer parameters)\n",
                    nparams, F, S, need / 1073741824.0, phys / 1073741824.0);
            rc = 1;
            goto done;
        }
        grads = (double *)malloc((size_t)nparams * n * sizeof(double));
        if (!grads) {
            fprintf(stderr, "dualbragg: error: out of memory for %d derivative images\n", nparams);
            rc = 1;
            goto done;
        }
        if (db_config_grad_chunk(cfg) > 0) db_sim_set_chunk(sim, db_config_grad_chunk(cfg));
    }
    progress_state ps = {{0, 0}, -1, 0.0, 0};
    clock_gettime(CLOCK_MONOTONIC, &ps.start);
    /* a long run says so before it starts (the estimate assumes one core of the development machine class) */
    double iterations, seconds;
    if (db_sim_work_estimate(sim, &iterations, 0, &seconds, &err) == DB_OK && db_config_progress(cfg) &&
        seconds > (nparams > 0 ? 2.0 : 10.0))
        fprintf(stderr, "dualbragg: %.3g inner iterations: roughly %.0f s on one core for the image%s\n", iterations,
                seconds, nparams > 0 ? ", several times that with the derivative images" : "");
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

    o = find_output(outs, "-floatfile");
    if ((rc = db_write_float_image(o->tmp, image, n, &err))) goto write_failed;
    printf("writing %s as %zu 4-byte floats\n", o->path, n);
    if ((o = find_output(outs, "-floatfile64"))) {
        if ((rc = db_write_float64_image(o->tmp, image64, n, &err))) goto write_failed;
        printf("writing %s as %zu 8-byte floats\n", o->path, n);
    }
    if ((o = find_output(outs, "-pngfile"))) {
        if ((rc = db_png_write_float(o->tmp, image, F, S, DB_PICTURE_LOG, NULL, 0, &err))) goto write_failed;
        printf("writing %s: a %d x %d picture of the float image, log scale\n", o->path, F, S);
    }
    printf("max_I = %g  at %g %g\n", sum.max_I, sum.max_I_x, sum.max_I_y);
    printf("mean= %g rms= %g rmsd= %g\n", sum.mean, sum.rms, sum.rmsd);
    if (nparams > 0) {
        o = find_output(outs, "-grad");
        for (int k = 0; k < nparams; k++, o++) {
            if ((rc = db_write_float64_image(o->tmp, grads + (size_t)k * n, n, &err))) goto write_failed;
            printf("writing %s: d(pixel)/d(%s) per %s, %zu 8-byte floats\n", o->path, db_param_name(params[k]),
                   db_param_unit(params[k]), n);
        }
        o = find_output(outs, "-gradpng");
        for (int k = 0; o && k < nparams; k++, o++) {
            if ((rc = db_png_write(o->tmp, grads + (size_t)k * n, F, S, DB_PICTURE_DIVERGING, NULL, 0, &err)))
                goto write_failed;
            printf("writing %s: a picture of d(pixel)/d(%s), blue < 0 < red\n", o->path, db_param_name(params[k]));
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
    o = find_output(outs, "-intfile");
    if ((rc = db_sim_write_int_image(sim, o->tmp, image, &scale, &err))) goto write_failed;
    printf("intfile_scale = %g\n", scale);
    printf("writing %s as 2-byte integers\n", o->path);
    if ((o = find_output(outs, "-pgmfile"))) {
        if ((rc = db_sim_write_pgm(sim, o->tmp, image, &scale, &err))) goto write_failed;
        printf("pgm_scale = %g\n", scale);
        printf("writing %s as 1-byte integers\n", o->path);
    }
    if ((o = find_output(outs, "-noisefile"))) {
        double photons;
        int overloads;
        if ((rc = db_sim_write_noise_image(sim, o->tmp, image, &photons, &overloads, &err))) goto write_failed;
        printf("%.0f photons on noise image (%d overloads)\n", photons, overloads);
        printf("writing %s as 2-byte integers\n", o->path);
    }
    if ((o = find_output(outs, "-grad_F"))) {
        /* last: its run replaces the simulation's last run, which the summary, -trace_pixel and the integer
         * images above read */
        long m = db_sim_selected_count(sim), nF = db_sim_structure_factor_count(sim);
        fvalues = (double *)malloc((size_t)(m > 0 ? m : 1) * sizeof(double));
        fpix = (long *)malloc((size_t)(m > 0 ? m : 1) * sizeof(long));
        fhkl = (int *)malloc((size_t)(nF > 0 ? nF : 1) * 3 * sizeof(int));
        if (!fvalues || !fpix || !fhkl) {
            fprintf(stderr, "dualbragg: error: -grad_F: out of memory for %ld pixels and %ld structure factors\n", m,
                    nF);
            rc = 1;
            goto done;
        }
        ps = (progress_state){{0, 0}, -1, 0.0, 0};
        clock_gettime(CLOCK_MONOTONIC, &ps.start);
        rc = db_sim_run_selected_F(sim, NULL, 0, fvalues, NULL, &fjac, &err);
        if (ps.shown) fprintf(stderr, "\r100%% done\n");
        if (rc || db_sim_selected_pixel_list(sim, fpix, m, &err) != m ||
            db_sim_get_structure_factors(sim, fhkl, NULL, nF, &err) != nF) {
            fprintf(stderr, "dualbragg: error: -grad_F: %s\n", err.message);
            rc = err.code == DB_ERR_ARGUMENT ? 2 : 1;
            goto done;
        }
        if ((rc = write_grad_F(o->tmp, &fjac, fpix, F, fhkl, &err))) goto write_failed;
        printf("writing %s: d(pixel)/d(F) of %ld pixels x %ld structure factors, %ld nonzeros as text\n", o->path,
               fjac.rows, fjac.cols, fjac.nnz);
    }
    if ((rc = db_out_set_commit(txn, &err))) goto failed;
    rc = 0;
    goto done;
write_failed:
    rc = write_failed(o, &err);
    goto done;
failed:
    rc = fail(&err);
done:
    db_out_set_destroy(txn); /* removes every temporary that was not renamed into place */
    free(outs);
    free(image);
    free(image64);
    free(grads);
    free(fvalues);
    free(fpix);
    free(fhkl);
    db_csr_free(&fjac);
    db_sim_destroy(sim);
    db_config_destroy(cfg);
    return rc;
}
