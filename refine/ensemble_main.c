/* dualbragg-ensemble: refines many stills together with the structure factors they share (README "Ensemble
 * refinement"; refine/ensemble.h has the rules). Single process. Outputs are written all or nothing. */
#ifdef DB_HAVE_MPI
#include <mpi.h>
#endif
#include "dualbragg.h"
#include "cli_args.h" /* number parsing, JSON numbers */
#include "ensemble.h"
#include "error.h"    /* db_fail */
#include "fileio.h"   /* the output transaction */
#include "io_paths.h" /* no output over an input */
#include "tempfiles.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PROG "dualbragg-ensemble"

typedef struct ens_args {
    const char *stills, *refine_still, *hklout, *json;
    int refine_F, noprogress;
    db_ensemble_options o;
    const char **rest; /* dualbragg's shared flags */
    int nrest;
} ens_args;

static int usage(void)
{
    fprintf(stderr,
            "usage: " PROG " -stills FILE [-refine_still LIST] [-refine_shared LIST] [-refine_F] [shared dualbragg\n"
            "       flags: -cell, -hkl FILE, detector, beam, -boxes FILE ...] [-spots N] [-spot_size S] [-obs_adc ADC]\n"
            "       [-gain G] [-obs_float64] [-max_iterations N] [-damping D] [-prior_still NAME=SD,...] [-hklout FILE]\n"
            "       [-json FILE] [-noprogress]\n"
            "  -stills FILE       one still a line: IMAGE [its own dualbragg flags, -spots, -boxes, -obs_adc ...]\n"
            "  -refine_still LIST per-still parameters (misset_x,misset_y,misset_z,a,b,c,fluence,...)\n"
            "  -refine_shared LIST one value every still shares (distance,xbeam,ybeam,...), started at the shared\n"
            "                     flags' value; no still line may give it its own, and not fluence with -refine_F\n"
            "  -refine_F          refine the structure factors of the -hkl table that fitted pixels touch\n"
            "  -prior_still NAME=SD,... a Gaussian prior on a -refine_still parameter of every still, centred on the\n"
            "                     still's start (its indexed orientation), SD in the parameter's units (degrees for\n"
            "                     the missets): misset_x=0.05,misset_y=0.05,misset_z=0.05\n"
            "  scale rule: with fluence in -refine_still and -refine_F, the first still's fluence is held at its\n"
            "  given value (fluence x F^2 is one degeneracy); see README.md \"Ensemble refinement\"\n"
            "  -hklout FILE       'h k l F sigF' for every listed reflection (sigF nan: not refined)\n");
    return 2;
}

static int arg_error(const char *fmt, const char *a)
{
    fprintf(stderr, PROG ": error: ");
    fprintf(stderr, fmt, a);
    fputc('\n', stderr);
    return 2;
}

/* dualbragg's output flags: this program writes none of them (a shared image output would be every still's). */
static const char *const NOT_WRITTEN[] = {"-floatfile", "-floatimage", "-intfile", "-intimage", "-noisefile",
                                          "-noiseimage", "-pgmfile", "-pgmimage", "-floatfile64", "-grad",
                                          "-gradprefix", "-gradpng", "-grad_F", "-pngfile", "-trace_pixel",
                                          "-printout", "-printout_pixel"};

static int parse_args(int argc, char **argv, ens_args *a)
{
    memset(a, 0, sizeof *a);
    db_ensemble_default_options(&a->o);
    a->rest = (const char **)calloc((size_t)argc + 2, sizeof(char *));
    if (!a->rest) return arg_error("out of memory%s", "");
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        const int left = argc - 1 - i;
        const char **str = NULL;
        if (!strcmp(f, "-stills")) str = &a->stills;
        else if (!strcmp(f, "-refine_still")) str = &a->refine_still;
        else if (!strcmp(f, "-refine_shared")) str = &a->o.refine_shared;
        else if (!strcmp(f, "-prior_still")) str = &a->o.prior_still;
        else if (!strcmp(f, "-hklout")) str = &a->hklout;
        else if (!strcmp(f, "-json")) str = &a->json;
        if (str) {
            if (left < 1) return arg_error("%s is missing its value", f);
            *str = argv[++i];
            continue;
        }
        if (!strcmp(f, "-refine_F")) a->refine_F = 1;
        else if (!strcmp(f, "-noprogress")) a->noprogress = 1;
        else if (!strcmp(f, "-obs_float64")) a->o.obs_float64 = 1;
        else if (!strcmp(f, "-spots") || !strcmp(f, "-spot_size") || !strcmp(f, "-max_iterations") ||
                 !strcmp(f, "-maxiter")) {
            if (left < 1) return arg_error("%s is missing its value", f);
            int *dst = !strcmp(f, "-spots") ? &a->o.spots : !strcmp(f, "-spot_size") ? &a->o.spot_size
                                                                                       : &a->o.max_iterations;
            if (!db_arg_whole(PROG, f, argv[++i], 1, !strcmp(f, "-spots") ? 100000 : !strcmp(f, "-spot_size") ? 10000 : 1000000, dst))
                return 2;
        } else if (!strcmp(f, "-obs_adc") || !strcmp(f, "-gain") || !strcmp(f, "-damping")) {
            if (left < 1) return arg_error("%s is missing its value", f);
            double v;
            if (!db_arg_number(PROG, f, argv[++i], &v)) return 2;
            if (!strcmp(f, "-obs_adc")) a->o.obs_adc = v;
            else if (!(v > 0)) return arg_error("%s expects a number > 0", f);
            else if (!strcmp(f, "-gain")) a->o.gain = v;
            else a->o.initial_damping = v;
        } else {
            for (size_t k = 0; k < sizeof NOT_WRITTEN / sizeof NOT_WRITTEN[0]; k++)
                if (!strcmp(f, NOT_WRITTEN[k]))
                    return arg_error("%s is not written by " PROG " (its outputs are -hklout and -json)", f);
            a->rest[a->nrest++] = f;
        }
    }
    if (!a->stills) return arg_error("-stills FILE (one observed image and its flags a line) is required%s", "");
    return 0;
}

static void show_iteration(void *user, const db_ensemble_iteration *it)
{
    (void)user;
    fprintf(stderr, PROG ": iteration %d %s cost %.10e damping %.3e step %.3e seconds %.2f pixels %ld stills %ld\n",
            it->iteration, it->accepted ? "accepted" : "rejected", it->cost, it->damping, it->step, it->seconds,
            it->pixels, it->nstills);
    fflush(stderr);
}

static void json_string(FILE *o, const char *s)
{
    fputc('"', o);
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '"' || *c == '\\') fprintf(o, "\\%c", *c);
        else if (*c < 0x20) fprintf(o, "\\u%04x", *c);
        else fputc(*c, o);
    }
    fputc('"', o);
}

static void json_params(FILE *o, const char *key, const db_ensemble_result *r, const double *v, int sigma)
{
    fprintf(o, "\"%s\": {", key);
    for (int j = 0; j < r->nparams; j++) {
        fprintf(o, "%s\"%s\": ", j ? ", " : "", db_param_name(r->params[j]));
        db_json_number(o, sigma && v[j] < 0 ? NAN : v[j]); /* undetermined or held: null */
    }
    fputc('}', o);
}

static int write_json(const char *path, const ens_args *a, const db_stills *st, const db_ensemble_result *r,
                      db_error *err)
{
    FILE *o = fopen(path, "w");
    if (!o) return db_fail(err, DB_ERR_IO, "cannot write '%s'", path);
    fputs("{\n  \"stills_file\": ", o);
    json_string(o, a->stills);
    fputs(",\n  \"refine_still\": [", o);
    for (int j = 0; j < r->nparams; j++) fprintf(o, "%s\"%s\"", j ? ", " : "", db_param_name(r->params[j]));
    fprintf(o, "],\n  \"refine_F\": %s,\n  \"units\": {", r->refine_F ? "true" : "false");
    for (int j = 0; j < r->nparams; j++)
        fprintf(o, "%s\"%s\": \"%s\"", j ? ", " : "", db_param_name(r->params[j]), db_param_unit(r->params[j]));
    fputs("},\n", o);
    int priors = 0;
    for (int j = 0; j < r->nparams; j++) priors += isfinite(r->prior_sd[j]);
    if (priors) { /* only then: a run without -prior_still writes the JSON it always did */
        fputs("  \"prior_sd\": {", o);
        for (int j = 0, k = 0; j < r->nparams; j++)
            if (isfinite(r->prior_sd[j])) {
                fprintf(o, "%s\"%s\": ", k++ ? ", " : "", db_param_name(r->params[j]));
                db_json_number(o, r->prior_sd[j]);
            }
        fputs("},\n", o);
    }
    fputs("  \"fluence_fixed_still\": ", o);
    if (r->fluence_fixed_still >= 0) fprintf(o, "%d", r->fluence_fixed_still);
    else fputs("null", o);
    fputs(",\n  \"stills\": [", o);
    for (long s = 0; s < r->nstills; s++) {
        const db_ensemble_still_result *sr = &r->stills[s];
        fprintf(o, "%s\n    {\"index\": %ld, \"line\": %ld, \"image\": ", s ? "," : "", s, sr->line);
        json_string(o, st->s[s].obs_path);
        fprintf(o, ", \"pixels\": %ld,\n     ", sr->pixels);
        json_params(o, "start", r, sr->start, 0);
        fputs(",\n     ", o);
        json_params(o, "values", r, sr->values, 0);
        fputs(",\n     ", o);
        json_params(o, "sigma", r, sr->sigma, 1);
        fputs(",\n     \"fixed\": [", o);
        int first = 1;
        for (int j = 0; j < r->nparams; j++)
            if (sr->fixed[j]) {
                fprintf(o, "%s\"%s\"", first ? "" : ", ", db_param_name(r->params[j]));
                first = 0;
            }
        fputs("],\n     \"start_cost\": ", o);
        db_json_number(o, sr->start_cost);
        fputs(", \"cost\": ", o);
        db_json_number(o, sr->cost);
        fputs(",\n     \"background\": [", o);
        for (int e = 0; e < sr->nboxes; e++) {
            const int *b = sr->boxes + 4 * e;
            static const char *const key[6] = {"a", "b", "c", "sigma_a", "sigma_b", "sigma_c"};
            fprintf(o, "%s{\"box\": [%d, %d, %d, %d]", e ? ", " : "", b[0], b[1], b[2], b[3]);
            for (int k = 0; k < 6; k++) {
                fprintf(o, ", \"%s\": ", key[k]);
                double v = k < 3 ? sr->background[3 * e + k] : sr->background_sigma[3 * e + k - 3];
                db_json_number(o, k >= 3 && v < 0 ? NAN : v);
            }
            fputc('}', o);
        }
        fputs("]}", o);
    }
    fprintf(o, "\n  ],\n  \"F\": {\"listed\": %ld, \"refined\": %ld, \"hklout\": ", r->nF, r->nF_refined);
    if (a->hklout) json_string(o, a->hklout);
    else fputs("null", o);
    double rel = 0.0;
    long nrel = 0;
    for (long j = 0; j < r->nF; j++)
        if (r->F_refined[j] && r->F_start[j] > 0) {
            rel += fabs(r->F[j] / r->F_start[j] - 1.0);
            nrel++;
        }
    fputs(", \"mean_relative_change\": ", o);
    db_json_number(o, nrel ? rel / (double)nrel : NAN);
    fputs("},\n", o);
    if (r->nshared) { /* only then: a run without -refine_shared writes the JSON it always did */
        fputs("  \"shared\": {", o);
        for (int j = 0; j < r->nshared; j++) {
            fprintf(o, "%s\n    \"%s\": {\"unit\": \"%s\", \"start\": ", j ? "," : "", db_param_name(r->shared[j]),
                    db_param_unit(r->shared[j]));
            db_json_number(o, r->shared_start[j]);
            fputs(", \"value\": ", o);
            db_json_number(o, r->shared_value[j]);
            fputs(", \"sigma\": ", o);
            db_json_number(o, r->shared_sigma[j] < 0 ? NAN : r->shared_sigma[j]); /* undetermined: null */
            fputc('}', o);
        }
        fputs("\n  },\n", o);
    }
    const char *keys[] = {"start_cost", "cost", "deviance"};
    const double vals[] = {r->start_cost, r->cost, r->deviance};
    for (int k = 0; k < 3; k++) {
        fprintf(o, "  \"%s\": ", keys[k]);
        db_json_number(o, vals[k]);
        fputs(",\n", o);
    }
    fprintf(o, "  \"pixels\": %ld,\n  \"dof\": %ld,\n  \"iterations\": %d,\n  \"evaluations\": %d,\n", r->pixels, r->dof,
            r->iterations, r->evaluations);
    fputs("  \"stop_reason\": ", o);
    json_string(o, db_stop_reason_text(r->stop_reason));
    /* the timings last: the tests compare the bytes before "seconds" across runs and rank counts */
    fprintf(o, ",\n  \"seconds\": %.3f,\n", r->seconds);
    fprintf(o, "  \"seconds_by_phase\": {\"linearise\": %.3f, \"trial\": %.3f, \"stills\": %.3f, \"reduced\": %.3f},\n",
            r->seconds_linearise, r->seconds_trial, r->seconds_stills, r->seconds_reduced);
    fprintf(o, "  \"reduced_solves\": %d,\n  \"reduced_factors\": %d,\n  \"reduced_cg_iterations\": %ld\n}\n",
            r->reduced_solves, r->reduced_factors, r->reduced_cg_iterations);
    int bad = ferror(o);
    bad |= fclose(o) != 0;
    if (bad) return db_fail(err, DB_ERR_IO, "cannot write '%s' (disk full?)", path);
    return 0;
}

/* 'h k l F sigF' for every listed reflection, in the table's order; sigF nan where F was not refined (or cannot be
 * determined). 17 digits: F reads back to the same double through -hkl. */
static int write_hkl(const char *path, const db_ensemble_result *r, db_error *err)
{
    FILE *o = fopen(path, "w");
    if (!o) return db_fail(err, DB_ERR_IO, "cannot write '%s'", path);
    for (long j = 0; j < r->nF; j++) {
        const int *h = r->hkl + 3 * j;
        fprintf(o, "%d %d %d %.17g ", h[0], h[1], h[2], r->F[j]);
        if (r->F_refined[j] && r->sigma_F[j] >= 0) fprintf(o, "%.17g\n", r->sigma_F[j]);
        else fputs("nan\n", o);
    }
    int bad = ferror(o);
    bad |= fclose(o) != 0;
    if (bad) return db_fail(err, DB_ERR_IO, "cannot write '%s' (disk full?)", path);
    return 0;
}

static void print_results(const db_ensemble_result *r)
{
    printf("\nstopped after %d iterations: %s\n", r->iterations, db_stop_reason_text(r->stop_reason));
    printf("cost %.10e (start %.10e) over %ld pixels of %ld stills, %ld degrees of freedom, %.2f s\n", r->cost,
           r->start_cost, r->pixels, r->nstills, r->dof, r->seconds);
    if (r->nparams) {
        printf("\n%-6s %-6s", "still", "line");
        for (int j = 0; j < r->nparams; j++) printf(" %24s %12s", db_param_name(r->params[j]), "sigma");
        printf("\n");
        for (long s = 0; s < r->nstills; s++) {
            const db_ensemble_still_result *sr = &r->stills[s];
            printf("%-6ld %-6ld", s, sr->line);
            for (int j = 0; j < r->nparams; j++) {
                if (sr->fixed[j]) printf(" %24.15g %12s", sr->values[j], "held");
                else if (sr->sigma[j] < 0) printf(" %24.15g %12s", sr->values[j], "undetermined");
                else printf(" %24.15g %12.4g", sr->values[j], sr->sigma[j]);
            }
            printf("\n");
        }
    }
    if (r->nshared) {
        printf("\nshared by every still:\n");
        for (int j = 0; j < r->nshared; j++) {
            printf("%-14s %24.15g (start %.15g) %s", db_param_name(r->shared[j]), r->shared_value[j],
                   r->shared_start[j], db_param_unit(r->shared[j]));
            if (r->shared_sigma[j] < 0) printf("  undetermined\n");
            else printf("  sigma %.4g\n", r->shared_sigma[j]);
        }
    }
    if (r->refine_F) printf("\nstructure factors: %ld of %ld listed refined (the others keep their start)\n",
                            r->nF_refined, r->nF);
    if (r->fluence_fixed_still >= 0)
        printf("scale: still %d's fluence held at its given value (fluence x F^2 is one degeneracy)\n",
               r->fluence_fixed_still);
}

static int rank0 = 1; /* under mpirun: only rank 0 prints and writes */

static int run(int argc, char **argv)
{
    ens_args a;
    db_error err;
    db_stills stills;
    memset(&stills, 0, sizeof stills);
    db_ensemble_result res;
    memset(&res, 0, sizeof res);
    db_out_set *txn = NULL;
    db_config *cfg = NULL;
    db_named_path *in = NULL;
    int rc;
    db_temp_cleanup_on_signals();
    if (argc < 2) return usage();
    if ((rc = parse_args(argc, argv, &a))) goto done;
    rc = 2;
    const char *out_path[2] = {a.hklout, a.json}, *out_flag[2] = {"-hklout", "-json"};
    for (int k = 0; k < 2; k++)
        if (out_path[k] && db_check_output_path(out_path[k], out_flag[k], &err)) goto fail;
    if (a.hklout && !a.refine_F)
        fprintf(stderr, PROG ": warning: -hklout without -refine_F writes the starting F (every sigF nan)\n");
    if (db_stills_read(a.stills, &stills, &err)) goto fail;
    /* no output over an input: the shared configuration's files, the stills file, every still's image and files */
    cfg = db_config_create();
    if (!cfg) {
        fprintf(stderr, PROG ": error: out of memory\n");
        rc = 1;
        goto done;
    }
    if (db_config_parse(cfg, a.nrest, a.rest, &err)) goto fail;
    long cap = DB_IO_MAX_INPUTS + 1;
    for (long s = 0; s < stills.n; s++) cap += 1 + stills.s[s].argc;
    in = (db_named_path *)calloc((size_t)cap, sizeof *in);
    if (!in) {
        fprintf(stderr, PROG ": error: out of memory\n");
        rc = 1;
        goto done;
    }
    int nin = db_io_inputs(cfg, 1, in);
    in[nin].path = a.stills;
    in[nin++].flag = "-stills";
    for (long s = 0; s < stills.n; s++) {
        const db_still_line *l = &stills.s[s];
        in[nin].path = l->obs_path;
        in[nin++].flag = "a still's image (-stills)";
        for (int k = 0; k + 1 < l->argc; k++)
            if (db_stills_is_file_flag(l->argv[k])) {
                in[nin].path = l->argv[k + 1];
                in[nin++].flag = l->argv[k];
            }
    }
    db_named_path outs[2] = {{a.hklout, "-hklout"}, {a.json, "-json"}};
    if (db_io_check_distinct(outs, 2, in, nin, &err)) goto fail;
    fputs(db_config_warnings(cfg), stderr);

    if (!a.noprogress) a.o.progress = show_iteration;
    printf(PROG ": %ld stills from '%s', refining %s%s%s", stills.n, a.stills,
           a.refine_still && *a.refine_still ? a.refine_still : "", a.refine_still && *a.refine_still && a.refine_F ? " and " : "",
           a.refine_F ? "the structure factors" : "");
    if (a.o.refine_shared && *a.o.refine_shared)
        printf("%sshared %s", (a.refine_still && *a.refine_still) || a.refine_F ? ", " : "", a.o.refine_shared);
    printf("\n");
    fflush(stdout);
    rc = 1;
    if (db_ensemble_refine(a.nrest, a.rest, &stills, a.refine_still, a.refine_F, &a.o, &res, &err)) goto fail;
    print_results(&res);
    if (!rank0) { /* every rank holds the result; rank 0 writes it */
        rc = res.stop_reason == DB_STOP_MAXITER || res.stop_reason == DB_STOP_NO_PROGRESS ? 3 : 0;
        goto done;
    }

    txn = db_out_set_create();
    if (!txn) goto done;
    const char *tmp[2] = {NULL, NULL};
    for (int k = 0; k < 2; k++)
        if (out_path[k] && !(tmp[k] = db_out_set_add(txn, out_path[k], &err))) goto fail;
    if (a.hklout && write_hkl(tmp[0], &res, &err)) goto fail;
    if (a.json && write_json(tmp[1], &a, &stills, &res, &err)) goto fail;
    if (db_out_set_commit(txn, &err)) goto fail;
    for (int k = 0; k < 2; k++)
        if (out_path[k]) printf("wrote %s (%s)\n", out_path[k], out_flag[k]);
    if (res.stop_reason == DB_STOP_MAXITER || res.stop_reason == DB_STOP_NO_PROGRESS) {
        fprintf(stderr, PROG ": warning: the fit did not converge (%s); the values above are the best found\n",
                db_stop_reason_text(res.stop_reason));
        rc = 3;
    } else {
        rc = 0;
    }
    goto done;
fail:
    fprintf(stderr, PROG ": error: %s\n", err.message);
    if (err.code == DB_ERR_ARGUMENT) rc = 2;
done:
    db_out_set_destroy(txn);
    db_ensemble_result_free(&res);
    db_stills_free(&stills);
    db_config_destroy(cfg);
    free(in);
    free(a.rest);
    return rc;
}

/* Under mpirun (built with MPI): the stills split over the ranks (refine/ensemble_lm.h has the rules: the same bits
 * for any number of ranks); every rank parses the same flags and finds the same errors, a still's error stops every
 * rank with one message; only rank 0 prints (the other ranks' stdout and stderr go to /dev/null) and writes the
 * outputs. Without mpirun, MPI_Init makes a one-rank world: the one-process run. */
void openblas_set_num_threads(int num_threads); /* OpenBLAS's (cblas.h), declared here: its header's folder varies */

int main(int argc, char **argv)
{
    /* CHOLMOD's supernodal BLAS on one thread: the reduced system is small (one row per structure factor) and
     * threaded BLAS rounds differently for each thread count, which made the fitted values' last bits depend on
     * OMP_NUM_THREADS; the stills themselves run on the OpenMP threads (db_elm_problem.concurrent_stills) */
    openblas_set_num_threads(1);
#ifdef DB_HAVE_MPI
    MPI_Init(&argc, &argv);
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    rank0 = rank == 0;
    if (!rank0) {
        if (!freopen("/dev/null", "w", stdout)) return 1;
        if (!freopen("/dev/null", "w", stderr)) return 1;
    }
    int rc = run(argc, argv);
    MPI_Finalize();
    return rc;
#else
    return run(argc, argv);
#endif
}
