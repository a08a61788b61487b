/* dualbragg: the command line. A thin front over the library (include/dualbragg.h): it owns the current
 * folder's conventions (default file names, the Fdump.bin cache) and the printing. */
#include "dualbragg.h"
#include "config.h"
#include "device.h"      /* the features a renderer may refuse */
#include "run_clients.h" /* db_sim_device_supports */
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

/* One command line's run: the configuration, the simulation, the outputs and the buffers main's phases share
 * (each phase returns the exit status, 0 to go on; main frees everything). */
typedef struct cli_run {
    db_config *cfg;
    db_sim *sim;
    db_out_set *txn;
    outputs *outs;
    int params[64], nparams;
    const char *dump, *f64, *grad_F, *fdump_in;
    int F, S;
    size_t n;
    float *image;
    double *image64, *grads, *fvalues;
    long *fpix;
    int *fhkl;
    db_csr fjac;
    progress_state ps;
    db_run_summary sum;     /* the run's, read once after it (the -grad_F run that follows replaces it) */
} cli_run;

/* Every output the run will write, in the order they are written, checked before the run (a bad path fails early
 * instead of after other files are written). */
static int list_outputs(cli_run *r)
{
    db_error err;
    const db_config *cfg = r->cfg;
    outputs *outs = r->outs;
    r->dump = db_config_output_path(cfg, DB_OUT_FDUMP);
    if (db_config_has_hkl(cfg)) add_output(outs, r->dump, "-dump");
    add_output(outs, db_config_output_path(cfg, DB_OUT_FLOAT), "-floatfile");
    r->f64 = db_config_output_path(cfg, DB_OUT_FLOAT64);
    if (r->f64) add_output(outs, r->f64, "-floatfile64");
    const char *png = db_config_output_path(cfg, DB_OUT_PNG);
    if (png) add_output(outs, png, "-pngfile");
    if (db_config_grad_list(cfg)) {
        r->nparams = db_param_parse_list(db_config_grad_list(cfg), r->params, &err);
        if (r->nparams < 0) return fail(&err);
        char prefix[4096], name[4200];
        if (db_config_grad_prefix(cfg, prefix, sizeof prefix)) {
            fprintf(stderr, "dualbragg: error: -gradprefix is too long\n");
            return 2;
        }
        for (int k = 0; k < r->nparams; k++) {
            snprintf(name, sizeof name, "%s%s.bin", prefix, db_param_name(r->params[k]));
            add_output(outs, name, "-grad");
        }
        /* after all the .bin names, so that each group is found as one run of outputs */
        for (int k = 0; db_config_grad_png(cfg) && k < r->nparams; k++) {
            snprintf(name, sizeof name, "%s%s.png", prefix, db_param_name(r->params[k]));
            add_output(outs, name, "-gradpng");
        }
    }
    add_output(outs, db_config_output_path(cfg, DB_OUT_INT), "-intfile");
    if (db_config_output_path(cfg, DB_OUT_PGM)) add_output(outs, db_config_output_path(cfg, DB_OUT_PGM), "-pgmfile");
    if (db_config_output_path(cfg, DB_OUT_NOISE)) add_output(outs, db_config_output_path(cfg, DB_OUT_NOISE), "-noisefile");
    r->grad_F = db_config_grad_F_file(cfg);
    if (r->grad_F) add_output(outs, r->grad_F, "-grad_F");

    /* without -hkl the reference reads the cache left by an earlier run; say so, always */
    if (!db_config_has_hkl(cfg) && access(r->dump, F_OK) == 0) r->fdump_in = r->dump;
    int rc = check_outputs(outs, cfg);
    if (rc) return rc;
    if (r->fdump_in) printf("reading Fs from %s (no -hkl given)\n", r->dump);
    return 0;
}

/* The simulation, the refusals known once it exists, every output's temporary name, the Fdump cache, and the
 * image buffers (the derivative images refused before trying when they cannot fit). */
static int prepare(cli_run *r)
{
    db_error err;
    if (db_sim_create(&r->sim, r->cfg, r->fdump_in, &err)) return fail(&err);
    db_sim *sim = r->sim;
    if (strcmp(db_sim_device(sim), "cpu") != 0) printf("device: %s\n", db_sim_device(sim));
    /* known once the table is read (-hkl, or the cache read without it): refused before any work */
    if (r->grad_F && !db_sim_has_hkl_table(sim)) {
        fprintf(stderr, "dualbragg: error: -grad_F %s: the structure-factor Jacobian has one column per reflection of "
                        "a structure-factor table, and this run has none (give -hkl FILE, or leave an Fdump cache to "
                        "read without -hkl); -default_F alone is not a parameter\n", r->grad_F);
        return 2;
    }
    if (r->grad_F && !db_sim_device_supports(sim, DB_FEATURE_F_JACOBIAN)) { /* before the image renders, not after */
        fprintf(stderr, "dualbragg: error: -grad_F %s: the structure-factor Jacobian is computed by the CPU renderers "
                        "only, and this run renders on %s (use -device cpu)\n", r->grad_F, db_sim_device(sim));
        return 2;
    }
    /* all or nothing: every output goes to a temporary name, and all are renamed into place at the end */
    outputs *outs = r->outs;
    for (int i = 0; i < outs->n; i++)
        if (!(outs->o[i].tmp = db_out_set_add(r->txn, outs->o[i].path, &err))) return write_failed(&outs->o[i], &err);
    output *o;
    if ((o = find_output(outs, "-dump"))) {
        if (db_sim_write_fdump(sim, o->tmp, &err)) return write_failed(o, &err);
        printf("writing dump file for next time: %s\n", r->dump);
    }
    db_sim_size(sim, &r->F, &r->S);
    r->n = (size_t)r->F * (size_t)r->S;
    r->image = (float *)malloc(r->n * sizeof(float));
    r->image64 = r->f64 ? (double *)malloc(r->n * sizeof(double)) : NULL;
    if (!r->image || (r->f64 && !r->image64)) {
        fprintf(stderr, "dualbragg: error: out of memory for a %d x %d image\n", r->F, r->S);
        return 1;
    }
    if (r->nparams > 0) {
        /* the derivative images are the memory of a run: refuse what cannot fit before trying */
        double need = (double)r->nparams * (double)r->n * sizeof(double);
        double phys = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGE_SIZE);
        if (phys > 0 && need > 0.8 * phys) {
            fprintf(stderr, "dualbragg: error: -grad: %d derivative images of %d x %d pixels need %.1f GiB; this machine has "
                            "%.1f GiB (use -boxes or -roi through the library's db_sim_run_selected, or fewer parameters)\n",
                    r->nparams, r->F, r->S, need / 1073741824.0, phys / 1073741824.0);
            return 1;
        }
        r->grads = (double *)malloc((size_t)r->nparams * r->n * sizeof(double));
        if (!r->grads) {
            fprintf(stderr, "dualbragg: error: out of memory for %d derivative images\n", r->nparams);
            return 1;
        }
        if (db_config_grad_chunk(r->cfg) > 0) db_sim_set_chunk(sim, db_config_grad_chunk(r->cfg));
    }
    return 0;
}

/* The run, with the estimate of a long one and the progress line */
static int render(cli_run *r)
{
    db_error err;
    int tf, ts;
    r->ps = (progress_state){{0, 0}, -1, 0.0, 0};
    clock_gettime(CLOCK_MONOTONIC, &r->ps.start);
    /* a long run says so before it starts (the estimate assumes one core of the development machine class) */
    double iterations, seconds;
    if (db_sim_work_estimate(r->sim, &iterations, 0, &seconds, &err) == DB_OK && db_config_progress(r->cfg) &&
        seconds > (r->nparams > 0 ? 2.0 : 10.0))
        fprintf(stderr, "dualbragg: %.3g inner iterations: roughly %.0f s on one core for the image%s\n", iterations,
                seconds, r->nparams > 0 ? ", several times that with the derivative images" : "");
    /* as the reference, printout suppresses the progress meter */
    if (db_config_progress(r->cfg) && !db_config_printout(r->cfg, &tf, &ts)) db_sim_set_progress(r->sim, show_progress, &r->ps);
    int rc = r->nparams > 0 ? db_sim_run_grad(r->sim, r->params, r->nparams, r->image, r->image64, r->grads, &err)
                            : db_sim_run(r->sim, r->image, r->image64, &err);
    if (r->ps.shown) fprintf(stderr, "\r100%% done\n");
    return rc ? fail(&err) : 0;
}

/* The -printout block and the summary, as the reference prints them */
static int print_summary(cli_run *r)
{
    db_error err;
    int tf, ts;
    /* as the reference: the -printout block comes out during the run, before the summary */
    if (db_config_printout(r->cfg, &tf, &ts)) {
        fflush(stdout);
        if (db_sim_printout(r->sim, tf, ts, r->image, stdout, &err)) return fail(&err);
    }
    db_sim_summary(r->sim, &r->sum);
    const db_run_summary *sum = &r->sum;
    const db_geometry *g = &sum->geometry;
    printf("Unit Cell: %g %g %g %g %g %g\n", g->cell[0], g->cell[1], g->cell[2], g->cell[3], g->cell[4], g->cell[5]);
    printf("volume = %g A^3\n", sum->volume);
    printf("  distance=%g mm close_distance=%g mm  Fbeam=%g Sbeam=%g mm  ORGX=%g ORGY=%g\n", g->distance_mm,
           g->close_distance_mm, g->Fbeam_mm, g->Sbeam_mm, g->ORGX, g->ORGY);
    printf("  %d x %d pixels, %d sources, %d mosaic domains, %d phi steps, %dx%d oversampling (%d steps)\n", g->fpixels,
           g->spixels, g->sources, g->mosaic_domains, g->phisteps, g->oversample, g->oversample, g->steps);
    printf("  interpolation of F: %s%s\n", g->interpolate ? "on" : "off",
           sum->interpolation_switched_off ? " (switched off at an out-of-range sample, as the reference)" : "");
    printf("solid angle subtended by detector = %g steradian ( %g%% sphere)\n", sum->solid_angle,
           100 * sum->solid_angle / 4 / 3.14159265358979323846);
    return 0;
}

/* The float images, the picture, the statistics line and the derivative images (with their pictures), then
 * -trace_pixel, then the integer images */
static int write_images(cli_run *r)
{
    db_error err;
    outputs *outs = r->outs;
    const size_t n = r->n;
    output *o = find_output(outs, "-floatfile");
    if (db_write_float_image(o->tmp, r->image, n, &err)) return write_failed(o, &err);
    printf("writing %s as %zu 4-byte floats\n", o->path, n);
    if ((o = find_output(outs, "-floatfile64"))) {
        if (db_write_float64_image(o->tmp, r->image64, n, &err)) return write_failed(o, &err);
        printf("writing %s as %zu 8-byte floats\n", o->path, n);
    }
    if ((o = find_output(outs, "-pngfile"))) {
        if (db_png_write_float(o->tmp, r->image, r->F, r->S, DB_PICTURE_LOG, NULL, 0, &err)) return write_failed(o, &err);
        printf("writing %s: a %d x %d picture of the float image, log scale\n", o->path, r->F, r->S);
    }
    printf("max_I = %g  at %g %g\n", r->sum.max_I, r->sum.max_I_x, r->sum.max_I_y);
    printf("mean= %g rms= %g rmsd= %g\n", r->sum.mean, r->sum.rms, r->sum.rmsd);
    if (r->nparams > 0) {
        o = find_output(outs, "-grad");
        for (int k = 0; k < r->nparams; k++, o++) {
            if (db_write_float64_image(o->tmp, r->grads + (size_t)k * n, n, &err)) return write_failed(o, &err);
            printf("writing %s: d(pixel)/d(%s) per %s, %zu 8-byte floats\n", o->path, db_param_name(r->params[k]),
                   db_param_unit(r->params[k]), n);
        }
        o = find_output(outs, "-gradpng");
        for (int k = 0; o && k < r->nparams; k++, o++) {
            if (db_png_write(o->tmp, r->grads + (size_t)k * n, r->F, r->S, DB_PICTURE_DIVERGING, NULL, 0, &err))
                return write_failed(o, &err);
            printf("writing %s: a picture of d(pixel)/d(%s), blue < 0 < red\n", o->path, db_param_name(r->params[k]));
        }
    }
    int tf, ts;
    if (db_config_trace_pixel(r->cfg, &tf, &ts)) {
        if (r->nparams > DB_MAX_CHUNK)
            fprintf(stderr, "dualbragg: warning: -trace_pixel shows the tangents of the first %d of the %d -grad parameters\n",
                    DB_MAX_CHUNK, r->nparams);
        fflush(stdout);
        if (db_sim_trace_pixel(r->sim, tf, ts, r->params, r->nparams > DB_MAX_CHUNK ? DB_MAX_CHUNK : r->nparams, stdout, &err))
            return fail(&err);
    }
    double scale;
    o = find_output(outs, "-intfile");
    if (db_sim_write_int_image(r->sim, o->tmp, r->image, &scale, &err)) return write_failed(o, &err);
    printf("intfile_scale = %g\n", scale);
    printf("writing %s as 2-byte integers\n", o->path);
    if ((o = find_output(outs, "-pgmfile"))) {
        if (db_sim_write_pgm(r->sim, o->tmp, r->image, &scale, &err)) return write_failed(o, &err);
        printf("pgm_scale = %g\n", scale);
        printf("writing %s as 1-byte integers\n", o->path);
    }
    if ((o = find_output(outs, "-noisefile"))) {
        double photons;
        int overloads;
        if (db_sim_write_noise_image(r->sim, o->tmp, r->image, &photons, &overloads, &err)) return write_failed(o, &err);
        printf("%.0f photons on noise image (%d overloads)\n", photons, overloads);
        printf("writing %s as 2-byte integers\n", o->path);
    }
    return 0;
}

/* -grad_F, last: its run replaces the simulation's last run, which the summary, -trace_pixel and the integer
 * images read */
static int write_structure_factor_jacobian(cli_run *r)
{
    db_error err;
    output *o = find_output(r->outs, "-grad_F");
    if (!o) return 0;
    long m = db_sim_selected_count(r->sim), nF = db_sim_structure_factor_count(r->sim);
    r->fvalues = (double *)malloc((size_t)(m > 0 ? m : 1) * sizeof(double));
    r->fpix = (long *)malloc((size_t)(m > 0 ? m : 1) * sizeof(long));
    r->fhkl = (int *)malloc((size_t)(nF > 0 ? nF : 1) * 3 * sizeof(int));
    if (!r->fvalues || !r->fpix || !r->fhkl) {
        fprintf(stderr, "dualbragg: error: -grad_F: out of memory for %ld pixels and %ld structure factors\n", m, nF);
        return 1;
    }
    r->ps = (progress_state){{0, 0}, -1, 0.0, 0};
    clock_gettime(CLOCK_MONOTONIC, &r->ps.start);
    int rc = db_sim_run_selected_F(r->sim, NULL, 0, r->fvalues, NULL, &r->fjac, &err);
    if (r->ps.shown) fprintf(stderr, "\r100%% done\n");
    if (rc || db_sim_selected_pixel_list(r->sim, r->fpix, m, &err) != m ||
        db_sim_get_structure_factors(r->sim, r->fhkl, NULL, nF, &err) != nF) {
        fprintf(stderr, "dualbragg: error: -grad_F: %s\n", err.message);
        return err.code == DB_ERR_ARGUMENT ? 2 : 1;
    }
    if (write_grad_F(o->tmp, &r->fjac, r->fpix, r->F, r->fhkl, &err)) return write_failed(o, &err);
    printf("writing %s: d(pixel)/d(F) of %ld pixels x %ld structure factors, %ld nonzeros as text\n", o->path,
           r->fjac.rows, r->fjac.cols, r->fjac.nnz);
    return 0;
}

int main(int argc, char **argv)
{
    db_error err;
    db_temp_cleanup_on_signals(); /* an interrupt leaves no temporary output behind */
    if (argc < 2) {
        fprintf(stderr, "usage: dualbragg (-cell a b c alpha beta gamma | -mat FILE) (-hkl FILE | -default_F F) [flags]\n"
                        "       nanoBragg's flags; see README.md for the complete list\n");
        return 2;
    }
    cli_run r;
    memset(&r, 0, sizeof r);
    r.cfg = db_config_create();
    if (!r.cfg) {
        fprintf(stderr, "dualbragg: error: out of memory\n");
        return 1;
    }
    int rc = db_config_parse(r.cfg, argc - 1, (const char *const *)(argv + 1), &err);
    if (rc) {
        db_config_destroy(r.cfg);
        return fail(&err);
    }
    fputs(db_config_warnings(r.cfg), stderr);
    if (db_config_grad_png(r.cfg) && !db_config_grad_list(r.cfg)) {
        fprintf(stderr, "dualbragg: error: -gradpng draws the derivative images of -grad LIST, and -grad is not given\n");
        db_config_destroy(r.cfg);
        return 2;
    }
    r.outs = (outputs *)calloc(1, sizeof *r.outs);
    r.txn = db_out_set_create();
    if (!r.outs || !r.txn) {
        fprintf(stderr, "dualbragg: error: out of memory\n");
        rc = 1;
    }
    if (!rc) rc = list_outputs(&r);
    if (!rc) rc = prepare(&r);
    if (!rc) rc = render(&r);
    if (!rc) rc = print_summary(&r);
    if (!rc) rc = write_images(&r);
    if (!rc) rc = write_structure_factor_jacobian(&r);
    if (!rc && db_out_set_commit(r.txn, &err)) rc = fail(&err);
    db_out_set_destroy(r.txn); /* removes every temporary that was not renamed into place */
    free(r.outs);
    free(r.image);
    free(r.image64);
    free(r.grads);
    free(r.fvalues);
    free(r.fpix);
    free(r.fhkl);
    db_csr_free(&r.fjac);
    db_sim_destroy(r.sim);
    db_config_destroy(r.cfg);
    return rc;
}
