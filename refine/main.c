/* dualbragg-refine: fits chosen parameters to an observed image (README "Refinement"). dualbragg's flags give the
 * starting model; this front reads the observed image, picks the pixels (-roi, -mask, -boxes, or -spots), runs
 * db_refine and writes what was asked for, all or nothing. */
#include "dualbragg.h"
#include "cli_args.h" /* number parsing, JSON numbers */
#include "error.h"    /* db_fail */
#include "fileio.h"   /* the output transaction */
#include "io_paths.h" /* no output over an input */
#include "params.h"   /* the -refine list, named as typed */
#include "tempfiles.h"
#include "observed.h" /* reading the observed image, spots */
#include "picture.h"  /* -pngprefix */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PROG "dualbragg-refine"

typedef struct refine_args {
    const char *obs, *refine, *json, *cmdline, *pngprefix, *floatfile, *weights, *objective, *background;
    double adc, damping, readout_noise, gain;
    int obs_float64, spots, spot_size, maxiter;
    const char **rest; /* dualbragg's flags */
    int nrest;
} refine_args;

static int usage(void)
{
    fprintf(stderr,
            "usage: " PROG " -obs FILE -refine LIST [dualbragg flags] [-roi ... | -mask FILE | -boxes FILE | -spots N]\n"
            "       [-spot_size S] [-obs_adc ADC] [-obs_float64] [-gain G] [-objective poisson|lsq] [-readout_noise S]\n"
            "       [-weights poisson|unit] [-background none|constant|planes] [-maxiter N] [-damping D] [-json FILE]\n"
            "       [-floatfile FILE] [-cmdline FILE] [-pngprefix P]; see README.md \"Refinement\"\n");
    return 2;
}

static int arg_error(const char *fmt, const char *a, const char *b)
{
    fprintf(stderr, PROG ": error: ");
    fprintf(stderr, fmt, a, b);
    fputc('\n', stderr);
    return 2;
}

/* Output flags of dualbragg that this program does not write: refused, rather than accepted without effect. */
static const char *const NOT_WRITTEN[] = {"-intfile", "-intimage", "-noisefile", "-noiseimage", "-pgmfile", "-pgmimage",
                                          "-floatfile64", "-grad", "-gradprefix", "-gradpng", "-grad_F", "-pngfile",
                                          "-trace_pixel", "-printout", "-printout_pixel", "-floatimage"};

static int parse_args(int argc, char **argv, refine_args *a)
{
    memset(a, 0, sizeof *a);
    a->adc = 40.0;
    a->damping = 1e-2;
    a->gain = 1.0;
    a->spot_size = 15;
    a->maxiter = 100;
    a->objective = "poisson";
    a->rest = (const char **)calloc((size_t)argc + 2, sizeof(char *));
    if (!a->rest) return arg_error("out of memory%s%s", "", "");
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        int left = argc - 1 - i;
        const char **str = NULL;
        if (!strcmp(f, "-obs")) str = &a->obs;
        else if (!strcmp(f, "-refine")) str = &a->refine;
        else if (!strcmp(f, "-json")) str = &a->json;
        else if (!strcmp(f, "-cmdline")) str = &a->cmdline;
        else if (!strcmp(f, "-pngprefix")) str = &a->pngprefix;
        else if (!strcmp(f, "-floatfile")) str = &a->floatfile;
        else if (!strcmp(f, "-weights")) str = &a->weights;
        else if (!strcmp(f, "-objective")) str = &a->objective;
        else if (!strcmp(f, "-background")) str = &a->background;
        if (str) {
            if (left < 1) return arg_error("%s is missing its value%s", f, "");
            *str = argv[++i];
            continue;
        }
        if (!strcmp(f, "-obs_adc")) {
            char *end;
            if (left < 1) return arg_error("%s is missing its value%s", f, "");
            a->adc = strtod(argv[++i], &end);
            if (end == argv[i] || *end || !isfinite(a->adc))
                return arg_error("-obs_adc expects a finite number (the ADC offset of the SMV counts), got '%s'%s", argv[i], "");
        } else if (!strcmp(f, "-readout_noise") || !strcmp(f, "-gain")) {
            char *end;
            int gain = !strcmp(f, "-gain");
            if (left < 1) return arg_error("%s is missing its value%s", f, "");
            double v = strtod(argv[++i], &end);
            if (end == argv[i] || *end || !isfinite(v) || (gain ? v <= 0 : v < 0 || v > 1e6))
                return arg_error(gain ? "-gain expects a number > 0 (detector units per photon), got '%s'%s"
                                      : "-readout_noise expects a number >= 0 and <= 1e6 (photons, the Gaussian readout "
                                        "noise), got '%s'%s",
                                 argv[i], "");
            *(gain ? &a->gain : &a->readout_noise) = v;
        } else if (!strcmp(f, "-damping")) {
            char *end;
            if (left < 1) return arg_error("%s is missing its value%s", f, "");
            a->damping = strtod(argv[++i], &end);
            if (end == argv[i] || *end || !isfinite(a->damping) || a->damping <= 0)
                return arg_error("-damping expects a number > 0 (the starting damping, relative to the scaled normal matrix), got '%s'%s", argv[i], "");
        } else if (!strcmp(f, "-obs_float64")) {
            a->obs_float64 = 1;
        } else if (!strcmp(f, "-spots")) {
            if (left < 1) return arg_error("%s is missing its value%s", f, "");
            if (!db_arg_whole(PROG, f, argv[++i], 1, 100000, &a->spots)) return 2;
        } else if (!strcmp(f, "-spot_size")) {
            if (left < 1) return arg_error("%s is missing its value%s", f, "");
            if (!db_arg_whole(PROG, f, argv[++i], 1, 10000, &a->spot_size)) return 2;
        } else if (!strcmp(f, "-maxiter")) {
            if (left < 1) return arg_error("%s is missing its value%s", f, "");
            if (!db_arg_whole(PROG, f, argv[++i], 1, 1000000, &a->maxiter)) return 2;
        } else {
            for (size_t k = 0; k < sizeof NOT_WRITTEN / sizeof NOT_WRITTEN[0]; k++)
                if (!strcmp(f, NOT_WRITTEN[k]))
                    return arg_error("%s is not written by " PROG " (its -floatfile is the fitted model; -cmdline FILE gives "
                                     "a dualbragg command line for the other outputs)%s", f, "");
            a->rest[a->nrest++] = f;
        }
    }
    if (!a->obs) return arg_error("-obs FILE (the observed image) is required%s%s", "", "");
    if (!a->refine) return arg_error("-refine LIST (the parameters to fit, names as for -grad) is required%s%s", "", "");
    if (strcmp(a->objective, "poisson") && strcmp(a->objective, "lsq"))
        return arg_error("-objective expects poisson (the likelihood of the counts) or lsq (weighted least squares), got '%s'%s",
                         a->objective, "");
    const int lsq = !strcmp(a->objective, "lsq");
    if (a->weights && !lsq)
        return arg_error("-weights %s belongs to -objective lsq (the Poisson objective weighs each pixel by its model "
                         "variance); add -objective lsq%s", a->weights, "");
    if (!a->weights) a->weights = "poisson";
    if (strcmp(a->weights, "poisson") && strcmp(a->weights, "unit"))
        return arg_error("-weights expects poisson or unit, got '%s'%s", a->weights, "");
    if (a->readout_noise > 0 && lsq)
        return arg_error("-readout_noise belongs to -objective poisson (lsq takes -weights)%s%s", "", "");
    if (a->background && strcmp(a->background, "none") && strcmp(a->background, "constant") && strcmp(a->background, "planes"))
        return arg_error("-background expects none, constant or planes, got '%s'%s", a->background, "");
    return 0;
}

static void show_iteration(void *user, const db_refine_iteration *it)
{
    (void)user;
    printf("%5d  %-8s %14.6e %10.2e %10.2e %9.2f\n", it->iteration, it->accepted ? "accepted" : "rejected", it->cost,
           it->damping, it->step, it->seconds);
    fflush(stdout);
}

/* ---- outputs ---- */

/* What the JSON reports beside the result: the boxes fitted and their backgrounds, and the noise model. */
typedef struct fit_report {
    const int *boxes;        /* [4*nboxes], the boxes fitted (-boxes or -spots), or NULL */
    int nboxes;
    const double *bg, *bg_sigma; /* [3*nbg] */
    const int *bg_boxes;     /* [4*nbg] */
    int nbg;
    const refine_args *a;
    int carryover;
} fit_report;

static void json_params(FILE *o, const char *key, const double *v, const int *params, int n, int sigma)
{
    fprintf(o, "  \"%s\": {", key);
    for (int j = 0; j < n; j++) {
        fprintf(o, "%s\"%s\": ", j ? ", " : "", db_param_name(params[j]));
        db_json_number(o, sigma && v[j] < 0 ? NAN : v[j]); /* an undetermined sigma is null */
    }
    fputs("},\n", o);
}

static int write_json(const char *path, const db_refine_result *r, const int *params, const fit_report *fr, db_error *err)
{
    FILE *o = fopen(path, "w");
    if (!o) return db_fail(err, DB_ERR_IO, "cannot write '%s'", path);
    const int n = r->nparams;
    fputs("{\n", o);
    json_params(o, "start", r->start, params, n, 0);
    json_params(o, "parameters", r->values, params, n, 0);
    json_params(o, "sigma", r->sigma, params, n, 1);
    json_params(o, "sigma_scaled", r->sigma_scaled, params, n, 1);
    fputs("  \"units\": {", o);
    for (int j = 0; j < n; j++) fprintf(o, "%s\"%s\": \"%s\"", j ? ", " : "", db_param_name(params[j]), db_param_unit(params[j]));
    fputs("},\n  \"correlation\": {", o);
    for (int i = 0; i < n; i++) {
        fprintf(o, "%s\n    \"%s\": {", i ? "," : "", db_param_name(params[i]));
        for (int j = 0; j < n; j++) {
            fprintf(o, "%s\"%s\": ", j ? ", " : "", db_param_name(params[j]));
            db_json_number(o, r->correlation[i * n + j]);
        }
        fputc('}', o);
    }
    fputs("\n  },\n", o);
    static const char *const bgname[4] = {"auto", "none", "constant", "planes"};
    fprintf(o, "  \"objective\": \"%s\",\n  \"background_model\": \"%s\",\n", r->objective == DB_OBJECTIVE_LSQ ? "lsq" : "poisson",
            bgname[r->background & 3]);
    if (r->objective == DB_OBJECTIVE_LSQ) fprintf(o, "  \"weights\": \"%s\",\n", fr->a->weights);
    fputs("  \"readout_noise\": ", o);
    db_json_number(o, fr->a->readout_noise);
    fputs(",\n  \"gain\": ", o);
    db_json_number(o, fr->a->gain);
    fputs(",\n  \"boxes\": [", o);
    for (int b = 0; b < fr->nboxes; b++)
        fprintf(o, "%s[%d, %d, %d, %d]", b ? ", " : "", fr->boxes[4 * b], fr->boxes[4 * b + 1], fr->boxes[4 * b + 2],
                fr->boxes[4 * b + 3]);
    fputs("],\n  \"background\": [", o);
    for (int b = 0; r->background != DB_BACKGROUND_NONE && b < fr->nbg; b++) {
        const double *v = fr->bg + 3 * b, *sv = fr->bg_sigma + 3 * b;
        const int *bx = fr->bg_boxes + 4 * b;
        static const char *const key[6] = {"a", "b", "c", "sigma_a", "sigma_b", "sigma_c"};
        fprintf(o, "%s\n    {\"box\": [%d, %d, %d, %d]", b ? "," : "", bx[0], bx[1], bx[2], bx[3]);
        for (int k = 0; k < 6; k++) {
            fprintf(o, ", \"%s\": ", key[k]);
            db_json_number(o, k < 3 ? v[k] : sv[k - 3]);
        }
        fputc('}', o);
    }
    fprintf(o, "%s],\n", r->background != DB_BACKGROUND_NONE && fr->nbg ? "\n  " : "");
    fprintf(o, "  \"iterations\": %d,\n  \"derivative_runs\": %d,\n  \"primal_runs\": %d,\n", r->iterations,
            r->derivative_runs, r->primal_runs);
    const char *keys[] = {"cost", "start_cost", "reduced_chi2", "deviance", "deviance_per_dof",
                          "expected_deviance_per_dof", "deviance_z"};
    const double vals[] = {r->cost, r->start_cost, r->reduced_chi2, r->deviance, r->deviance_per_dof,
                           r->expected_deviance_per_dof, r->deviance_z};
    for (size_t k = 0; k < sizeof vals / sizeof vals[0]; k++) {
        fprintf(o, "  \"%s\": ", keys[k]);
        db_json_number(o, vals[k]);
        fputs(",\n", o);
    }
    fprintf(o, "  \"poor_fit\": %s,\n  \"dof\": %ld,\n", r->poor_fit ? "true" : "false", r->dof);
    fprintf(o, "  \"pixels\": %ld,\n  \"stop_reason\": \"%s\",\n  \"phi_carryover\": \"%s\",\n  \"seconds\": %.3f\n}\n",
            r->pixels, db_stop_reason_text(r->stop_reason), fr->carryover ? "on" : "off", r->seconds);
    int bad = ferror(o);
    bad |= fclose(o) != 0;
    if (bad) return db_fail(err, DB_ERR_IO, "cannot write '%s' (disk full?)", path);
    return 0;
}

static void shell_word(FILE *o, const char *w)
{
    int plain = *w != 0;
    for (const char *c = w; *c; c++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./=:,+-", *c)) plain = 0;
    if (plain) {
        fputs(w, o);
        return;
    }
    fputc('\'', o);
    for (const char *c = w; *c; c++) {
        if (*c == '\'') fputs("'\\''", o);
        else fputc(*c, o);
    }
    fputc('\'', o);
}

/* The parameters that share p's flag (params.c: -cell holds six, -misset three): the first of them, and how many. */
static int flag_group_first(int p)
{
    int q = 0;
    while (strcmp(db_param_info_of(q)->flag, db_param_info_of(p)->flag)) q++;
    return q;
}

static int flag_group_size(int p)
{
    int k = 0;
    for (int q = 0; q < db_param_count(); q++) k += !strcmp(db_param_info_of(q)->flag, db_param_info_of(p)->flag);
    return k;
}

/* " FLAG v1 [v2 ...]": the values of every parameter under first's flag, first included */
static int write_values(FILE *o, db_sim *sim, int first, db_error *err)
{
    fprintf(o, " %s", db_param_info_of(first)->flag);
    for (int q = first; q < db_param_count(); q++) {
        if (strcmp(db_param_info_of(q)->flag, db_param_info_of(first)->flag)) continue;
        double v;
        int rc = db_sim_get_params(sim, &q, &v, 1, err);
        if (rc) return rc;
        fprintf(o, " %.17g", v);
    }
    return 0;
}

/* A dualbragg command line for the fitted model: the flags given, then the fitted values, which override them
 * (flags are read in order). Values are printed with 17 digits, which read back to the same doubles. */
static int write_cmdline(const char *path, const refine_args *a, int carryover, db_sim *sim, const int *params, int n,
                         db_error *err)
{
    FILE *o = fopen(path, "w");
    if (!o) return db_fail(err, DB_ERR_IO, "cannot write '%s'", path);
    fputs("dualbragg", o);
    for (int i = 0; i < a->nrest; i++) {
        fputc(' ', o);
        shell_word(o, a->rest[i]);
    }
    fprintf(o, " -phi_carryover %s", carryover ? "on" : "off");
    /* the single-valued parameters in the order refined, under their flags (params.c); a flag that holds several
     * (the cell's six, the misset's three) is written whole after them, in the table's order */
    for (int j = 0; j < n; j++) {
        int p = params[j];
        if (flag_group_size(p) == 1 && write_values(o, sim, p, err)) goto fail;
    }
    for (int p = 0; p < db_param_count(); p++) {
        int refined = 0;
        for (int j = 0; j < n; j++) refined |= flag_group_first(params[j]) == p; /* so p is its group's first */
        if (refined && flag_group_size(p) > 1 && write_values(o, sim, p, err)) goto fail;
    }
    fputc('\n', o);
    int bad = ferror(o);
    bad |= fclose(o) != 0;
    if (bad) return db_fail(err, DB_ERR_IO, "cannot write '%s' (disk full?)", path);
    return 0;
fail:
    fclose(o);
    return err->code;
}

static int has_flag(const refine_args *a, const char *flag)
{
    for (int i = 0; i < a->nrest; i++)
        if (!strcmp(a->rest[i], flag)) return 1;
    return 0;
}

static void print_results(const db_refine_result *r, const int *params, const fit_report *fr)
{
    const int n = r->nparams;
    printf("\nstopped after %d iterations: %s\n", r->iterations, db_stop_reason_text(r->stop_reason));
    printf("cost %.6e (start %.6e) over %ld pixels, %ld degrees of freedom, %d runs with derivatives, %d without, %.2f s\n",
           r->cost, r->start_cost, r->pixels, r->dof, r->derivative_runs, r->primal_runs, r->seconds);
    if (r->objective == DB_OBJECTIVE_POISSON)
        printf("deviance per degree of freedom %.4g (expected %.4g if the model is right: %+.1f standard deviations), "
               "Pearson chi-square per degree of freedom %.4g\n",
               r->deviance_per_dof, r->expected_deviance_per_dof, r->deviance_z, r->reduced_chi2);
    else
        printf("weighted chi-square per degree of freedom %.4g\n", r->reduced_chi2);
    printf("\n%-14s %-12s %22s %22s %14s %14s\n", "parameter", "unit", "start", "fitted", "sigma", "sigma_scaled");
    for (int j = 0; j < n; j++) {
        char sig[32], sigs[32];
        if (r->sigma[j] >= 0) snprintf(sig, sizeof sig, "%14.6g", r->sigma[j]);
        else snprintf(sig, sizeof sig, "%14s", "undetermined");
        if (r->sigma_scaled[j] >= 0) snprintf(sigs, sizeof sigs, "%14.6g", r->sigma_scaled[j]);
        else snprintf(sigs, sizeof sigs, "%14s", "undetermined");
        printf("%-14s %-12s %22.12g %22.12g %s %s\n", db_param_name(params[j]), db_param_unit(params[j]), r->start[j],
               r->values[j], sig, sigs);
    }
    if (r->background != DB_BACKGROUND_NONE && fr->nbg > 0) {
        printf("\nbackground (photons per pixel: a + b x + c y, x and y in pixels from the box's centre)\n");
        printf("%-22s %22s %22s %22s\n", "box", "a", "b", "c");
        for (int e = 0; e < fr->nbg; e++) {
            const int *bx = fr->bg_boxes + 4 * e;
            char box[64], col[3][64];
            snprintf(box, sizeof box, "[%d-%d, %d-%d]", bx[0], bx[1], bx[2], bx[3]);
            for (int k = 0; k < 3; k++)
                snprintf(col[k], sizeof col[k], "%.4g +- %.2g", fr->bg[3 * e + k], fr->bg_sigma[3 * e + k]);
            printf("%-22s %22s %22s %22s\n", box, col[0], col[1], col[2]);
        }
    }
    if (n > 1) {
        printf("\ncorrelation\n%-14s", "");
        for (int j = 0; j < n; j++) printf(" %8.8s", db_param_name(params[j]));
        printf("\n");
        for (int i = 0; i < n; i++) {
            printf("%-14s", db_param_name(params[i]));
            for (int j = 0; j < n; j++) printf(" %8.4f", r->correlation[i * n + j]);
            printf("\n");
        }
    }
}

/* ---- the run, phase by phase ---- */

/* What main's phases share; everything is freed once, by run_free. A phase returns 0 to go on, or the exit
 * status. */
typedef struct refine_run {
    refine_args a;
    db_error err;
    int params[64], nparams;
    db_config *cfg;
    db_sim *sim;
    int F, S, carryover;
    size_t npix;
    double *obs;
    long *pix;
    int *boxes, nboxes;          /* the boxes fitted (-boxes or -spots), for the JSON and the pictures */
    double *bg;                  /* the backgrounds' values [3 nbg] and sigmas [3 nbg] */
    int *bg_boxes, nbg;
    db_refine_result res;
    fit_report fr;
    /* outputs: -json, -floatfile, -cmdline, then the three pictures of -pngprefix */
    const char *out_path[6], *out_flag[6], *tmp[6];
    char png_path[3][4200];
    db_out_set *txn;
    float *image;
    double *image64, *resid;
} refine_run;

/* The error in r->err, and the exit status: 2 for a bad request, else rc. */
static int fail(refine_run *r, int rc)
{
    fprintf(stderr, PROG ": error: %s\n", r->err.message);
    return r->err.code == DB_ERR_ARGUMENT ? 2 : rc;
}

static int out_of_memory(const char *what)
{
    fprintf(stderr, PROG ": error: out of memory%s\n", what);
    return 1;
}

/* What the flags ask for, checked before any work: the parameters, the pixels' source, the outputs' paths. */
static int check_request(refine_run *r)
{
    const refine_args *a = &r->a;
    if ((r->nparams = db_param_parse_list_for("-refine", a->refine, r->params, &r->err)) < 0) return fail(r, 2);
    if (a->spots && has_flag(a, "-boxes")) {
        fprintf(stderr, PROG ": error: -spots makes boxes around the spots when no -boxes FILE is given; give one or the other\n");
        return 2;
    }
    int cell_refined = 0;
    for (int j = 0; j < r->nparams; j++) cell_refined |= db_param_info_of(r->params[j])->hold == DB_HOLD_CELL;
    if (a->cmdline && cell_refined && (has_flag(a, "-mat") || has_flag(a, "-matrix"))) {
        fprintf(stderr, PROG ": error: -cmdline cannot express a refined cell of a -mat crystal as dualbragg flags; "
                        "use -json for the fitted values\n");
        return 2;
    }
    /* written to temporary names, renamed into place together at the end */
    static const char *const png_kind[3] = {"observed", "model", "residual"};
    static const char *const flags[6] = {"-json", "-floatfile", "-cmdline", "-pngprefix", "-pngprefix", "-pngprefix"};
    const char *paths[3] = {a->json, a->floatfile, a->cmdline};
    for (int k = 0; k < 6; k++) {
        r->out_flag[k] = flags[k];
        r->out_path[k] = k < 3 ? paths[k] : NULL;
    }
    if (a->pngprefix)
        for (int k = 0; k < 3; k++) {
            snprintf(r->png_path[k], sizeof r->png_path[k], "%s%s.png", a->pngprefix, png_kind[k]);
            r->out_path[3 + k] = r->png_path[k];
        }
    for (int k = 0; k < 6; k++)
        if (r->out_path[k] && db_check_output_path(r->out_path[k], r->out_flag[k], &r->err)) return fail(r, 2);
    return 0;
}

/* dualbragg's flags as a configuration; no output may replace what the run reads (the observed image, the
 * configuration's files, the Fdump cache) or another output. */
static int read_configuration(refine_run *r)
{
    r->cfg = db_config_create();
    if (!r->cfg) return out_of_memory("");
    if (db_config_parse(r->cfg, r->a.nrest, r->a.rest, &r->err)) return fail(r, 2);
    db_named_path in[DB_IO_MAX_INPUTS + 1], outs[6];
    int nin = db_io_inputs(r->cfg, 1, in);
    in[nin].path = r->a.obs;
    in[nin++].flag = "-obs";
    for (int k = 0; k < 6; k++) {
        outs[k].path = r->out_path[k];
        outs[k].flag = r->out_flag[k];
    }
    if (db_io_check_distinct(outs, 6, in, nin, &r->err)) return fail(r, 2);
    return 0;
}

/* The simulation and the observed image, in photons. */
static int open_simulation(refine_run *r)
{
    /* the first line says which phi model is fitted, as dualbragg (and Python) would render it from these flags */
    r->carryover = db_config_phi_carryover(r->cfg);
    printf(PROG ": phi carryover %s%s\n", r->carryover ? "on" : "off",
           r->carryover ? " (dualbragg's default, the reference program's quirk; it matters only for a sweep from -phi 0: "
                          "-phi_carryover off gives the physical model)"
                        : " (the physical model)");
    fputs(db_config_warnings(r->cfg), stderr);
    const char *dump = db_config_output_path(r->cfg, DB_OUT_FDUMP), *fdump_in = NULL;
    if (!db_config_has_hkl(r->cfg) && access(dump, F_OK) == 0) {
        fdump_in = dump;
        printf("reading Fs from %s (no -hkl given)\n", dump);
    }
    if (db_sim_create(&r->sim, r->cfg, fdump_in, &r->err)) return fail(r, 1);
    db_sim_size(r->sim, &r->F, &r->S);
    r->npix = (size_t)r->F * (size_t)r->S;
    if (db_observed_read(r->a.obs, r->F, r->S, r->a.adc, r->a.obs_float64, &r->obs, &r->err)) return fail(r, 1);
    if (r->a.gain != 1.0) /* detector units to photons */
        for (size_t i = 0; i < r->npix; i++) r->obs[i] /= r->a.gain;
    return 0;
}

/* -spots: boxes around the brightest spots of the selection, said on one line (with the sizes of boxes the
 * detector's edge cuts). */
static int find_spot_boxes(refine_run *r, long count)
{
    const refine_args *a = &r->a;
    r->pix = (long *)malloc((size_t)count * sizeof(long));
    r->boxes = (int *)malloc((size_t)a->spots * 4 * sizeof(int));
    if (!r->pix || !r->boxes) return out_of_memory("");
    if (db_sim_selected_pixel_list(r->sim, r->pix, count, &r->err) < 0) return fail(r, 1);
    r->nboxes = db_find_spots(r->obs, r->F, r->S, r->pix, count, a->spots, a->spot_size, r->boxes, &r->err);
    if (r->nboxes < 0) return fail(r, 1);
    if (r->nboxes == 0) {
        fprintf(stderr, PROG ": error: no spots above the background in '%s' (-spots %d); give -boxes FILE or -roi\n",
                a->obs, a->spots);
        return 1;
    }
    printf("%d spot boxes of %d x %d pixels%s:", r->nboxes, a->spot_size, a->spot_size,
           r->nboxes < a->spots ? " (fewer spots than asked for)" : "");
    int clipped = 0;
    for (int b = 0; b < r->nboxes; b++) {
        const int *bx = r->boxes + 4 * b, w = bx[1] - bx[0] + 1, h = bx[3] - bx[2] + 1;
        printf(" [%d-%d, %d-%d]", bx[0], bx[1], bx[2], bx[3]);
        if (w != a->spot_size || h != a->spot_size) { /* cut by the detector's edge: say its real size */
            printf(" (%d x %d, at the edge)", w, h);
            clipped++;
        }
    }
    printf("\n");
    if (clipped) printf("%d of the boxes are cut by the detector's edge (their sizes are given beside them)\n", clipped);
    if (db_sim_select_boxes(r->sim, r->boxes, r->nboxes, &r->err)) return fail(r, 1);
    return 0;
}

/* The pixels fitted: -boxes, the spots, or the configuration's -roi and -mask. */
static int choose_pixels(refine_run *r)
{
    long count = db_sim_selected_count(r->sim);
    if (count == 0) {
        fprintf(stderr, PROG ": error: no pixels are selected (check -roi, -mask and -boxes)\n");
        return 1;
    }
    if (r->a.spots) return find_spot_boxes(r, count);
    if ((r->nboxes = db_sim_get_boxes(r->sim, NULL, 0)) > 0) { /* -boxes FILE: kept for the JSON and the pictures */
        r->boxes = (int *)malloc((size_t)r->nboxes * 4 * sizeof(int));
        if (!r->boxes) return 1;
        db_sim_get_boxes(r->sim, r->boxes, r->nboxes);
    }
    return 0;
}

/* db_refine with the flags' options, its progress a line an iteration, and the results printed. */
static int fit(refine_run *r)
{
    const refine_args *a = &r->a;
    db_refine_options o;
    db_refine_default_options(&o);
    o.max_iterations = a->maxiter;
    o.initial_damping = a->damping;
    o.objective = strcmp(a->objective, "lsq") ? DB_OBJECTIVE_POISSON : DB_OBJECTIVE_LSQ;
    o.weighting = strcmp(a->weights, "unit") ? DB_WEIGHTS_POISSON : DB_WEIGHTS_UNIT;
    o.readout_noise = a->readout_noise;
    o.background = !a->background ? DB_BACKGROUND_AUTO
                   : !strcmp(a->background, "none") ? DB_BACKGROUND_NONE
                   : !strcmp(a->background, "constant") ? DB_BACKGROUND_CONSTANT : DB_BACKGROUND_PLANES;
    r->nbg = db_refine_background_count(r->sim);
    r->bg = (double *)malloc((size_t)r->nbg * 6 * sizeof(double));
    r->bg_boxes = (int *)malloc((size_t)r->nbg * 4 * sizeof(int));
    if (!r->bg || !r->bg_boxes) return out_of_memory("");
    o.background_values = r->bg;
    o.background_sigma = r->bg + 3 * r->nbg;
    o.background_boxes = r->bg_boxes;
    o.progress = show_iteration;
    const char *background = a->background ? a->background : r->nboxes ? "planes" : "none";
    if (o.objective == DB_OBJECTIVE_POISSON)
        printf("fitting %s to %ld pixels of '%s' (Poisson likelihood%s, background %s)\n", a->refine,
               db_sim_selected_count(r->sim), a->obs, a->readout_noise > 0 ? " with readout noise" : "", background);
    else
        printf("fitting %s to %ld pixels of '%s' (least squares, %s weights, background %s)\n", a->refine,
               db_sim_selected_count(r->sim), a->obs, a->weights, background);
    printf("%5s  %-8s %14s %10s %10s %9s\n", "iter", "step", "cost", "damping", "step size", "seconds");
    if (db_refine(r->sim, r->params, r->nparams, r->obs, NULL, &o, &r->res, &r->err)) return fail(r, 1);
    fit_report fr = {r->boxes, r->nboxes, r->bg, r->bg + 3 * r->nbg, r->bg_boxes, r->res.nbackground ? r->nbg : 0,
                     &r->a, r->carryover};
    r->fr = fr;
    print_results(&r->res, r->params, &r->fr);
    return 0;
}

/* -floatfile and -pngprefix: the model on the whole selection of the configuration (not only the fitted boxes), at
 * the fitted values; the pictures' model holds each box's fitted background, as the fit saw it. */
static int write_model_images(refine_run *r)
{
    const size_t npix = r->npix;
    r->image = (float *)malloc(npix * sizeof(float));
    r->image64 = (double *)malloc(npix * sizeof(double));
    r->resid = (double *)malloc(npix * sizeof(double));
    if (!r->image || !r->image64 || !r->resid) return out_of_memory(" for the model image");
    if (db_sim_select_boxes(r->sim, NULL, 0, &r->err) || db_sim_run(r->sim, r->image, r->image64, &r->err))
        return fail(r, 1);
    if (r->a.floatfile && db_write_float_image(r->tmp[1], r->image, npix, &r->err)) return fail(r, 1);
    if (!r->a.pngprefix) return 0;
    long m = db_sim_selected_count(r->sim);
    free(r->pix);
    r->pix = (long *)malloc((size_t)m * sizeof(long));
    if (!r->pix) return 1;
    if (db_sim_selected_pixel_list(r->sim, r->pix, m, &r->err) < 0) return fail(r, 1);
    for (int e = 0; e < r->fr.nbg && r->res.background != DB_BACKGROUND_NONE; e++) {
        const int *bx = r->bg_boxes + 4 * e;
        const double *v = r->bg + 3 * e;
        if (!isfinite(v[0])) continue;
        for (int sl = bx[2]; sl <= bx[3]; sl++)
            for (int f = bx[0]; f <= bx[1]; f++) r->image64[(size_t)sl * r->F + f] += db_refine_background_at(v, bx, f, sl);
    }
    memset(r->resid, 0, npix * sizeof(double));
    for (long i = 0; i < m; i++) r->resid[r->pix[i]] = r->obs[r->pix[i]] - r->image64[r->pix[i]];
    if (db_png_write(r->tmp[3], r->obs, r->F, r->S, DB_PICTURE_LOG, r->boxes, r->nboxes, &r->err) ||
        db_png_write(r->tmp[4], r->image64, r->F, r->S, DB_PICTURE_LOG, r->boxes, r->nboxes, &r->err) ||
        db_png_write(r->tmp[5], r->resid, r->F, r->S, DB_PICTURE_DIVERGING, r->boxes, r->nboxes, &r->err))
        return fail(r, 1);
    return 0;
}

/* Every output to its temporary name, then all renamed into place together. */
static int write_outputs(refine_run *r)
{
    r->txn = db_out_set_create();
    if (!r->txn) return 1;
    for (int k = 0; k < 6; k++)
        if (r->out_path[k] && !(r->tmp[k] = db_out_set_add(r->txn, r->out_path[k], &r->err))) return fail(r, 1);
    if (r->a.json && write_json(r->tmp[0], &r->res, r->params, &r->fr, &r->err)) return fail(r, 1);
    if (r->a.cmdline && write_cmdline(r->tmp[2], &r->a, r->carryover, r->sim, r->params, r->nparams, &r->err))
        return fail(r, 1);
    int rc = r->a.floatfile || r->a.pngprefix ? write_model_images(r) : 0;
    if (rc) return rc;
    if (db_out_set_commit(r->txn, &r->err)) return fail(r, 1);
    for (int k = 0; k < 6; k++)
        if (r->out_path[k]) printf("wrote %s (%s)\n", r->out_path[k], r->out_flag[k]);
    return 0;
}

/* 0, or 3 when the fit did not converge, 4 when it fits poorly (README "Refinement": exit status) */
static int exit_status(const refine_run *r)
{
    if (r->res.stop_reason == DB_STOP_MAXITER || r->res.stop_reason == DB_STOP_NO_PROGRESS) {
        fprintf(stderr, PROG ": warning: the fit did not converge (%s); the values above are the best found\n",
                db_stop_reason_text(r->res.stop_reason));
        return 3;
    }
    if (r->res.poor_fit) {
        fprintf(stderr, PROG ": warning: poor fit: the deviance is %.1f standard deviations above what the fitted model "
                        "would give (a wrong local minimum, or a model missing what the image holds); do not trust these "
                        "values or their sigmas\n", r->res.deviance_z);
        return 4;
    }
    return 0;
}

static void run_free(refine_run *r)
{
    db_out_set_destroy(r->txn);
    free(r->a.rest);
    free(r->obs);
    free(r->image);
    free(r->image64);
    free(r->resid);
    free(r->bg);
    free(r->bg_boxes);
    free(r->pix);
    free(r->boxes);
    db_sim_destroy(r->sim);
    db_config_destroy(r->cfg);
}

int main(int argc, char **argv)
{
    db_temp_cleanup_on_signals(); /* an interrupt leaves no temporary output behind */
    if (argc < 2) return usage();
    refine_run *r = (refine_run *)calloc(1, sizeof *r);
    if (!r) return out_of_memory("");
    int rc = parse_args(argc, argv, &r->a);
    if (!rc) rc = check_request(r);
    if (!rc) rc = read_configuration(r);
    if (!rc) rc = open_simulation(r);
    if (!rc) rc = choose_pixels(r);
    if (!rc) rc = fit(r);
    if (!rc) rc = write_outputs(r);
    if (!rc) rc = exit_status(r);
    run_free(r);
    free(r);
    return rc;
}
