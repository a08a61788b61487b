/* bench_refine: what a refinement costs on golden case b_triclinic with -phi 0.05 -osc 0.2 -phisteps 4
 * -phi_carryover off, on three pixel selections (8 spot boxes of 15x15 found by db_find_spots on the observed
 * image, a 128x128 box, the whole 256x256 detector), at 1 and 2 threads:
 *   deriv11_s  one db_sim_run_selected with the eleven mission parameters (a b c alpha beta gamma misset_x
 *              misset_y misset_z phi0 osc: one pass of the 12-direction engine);
 *   primal_s   one db_sim_run_selected without derivatives (a trial step);
 *   iter_s     their sum: what an accepted Levenberg-Marquardt iteration costs in simulation;
 * (medians of RUNS repetitions), then one db_refine from the tests' perturbation (cell +-0.5% mixed in sign,
 * misset_x +0.3 deg, misset_y -0.3 deg, osc +0.02 deg) with unit weights on a noise-free image simulated at the
 * true values: its trial steps, derivative and primal runs, wall time, the time its runs account for
 * (derivative runs x deriv11_s + primal runs x primal_s) and the largest relative error of the fitted values.
 * The fit refines ten parameters, not the eleven: misset_z is left out because phi0 and misset_z rotate about the
 * same axis in the MOSFLM convention and db_refine refuses the pair.
 * Then the two objectives on the weak still with water of tests/refine_study.h (noise seed 1, 10 spot boxes of
 * 15 x 15 found on the noise-free image, the study's ten parameters from its start): the median time of RUNS fits
 * with the Poisson objective and background planes (the default), and with least squares weighted 1/max(obs, 1)
 * without background (the default before issue 17), fitted alternately, their ratio, trial steps and runs.
 * Usage: bench_refine [RUNS] [path/to/P1.hkl] */
#include "dualbragg.h"
#include "bench_util.h"
#include "observed.h"
#include "refine_study.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define FIT_LIST "a,b,c,alpha,beta,gamma,misset_x,misset_y,phi0,osc"
#define MISSION_LIST "a,b,c,alpha,beta,gamma,misset_x,misset_y,misset_z,phi0,osc"
#define MAX_BOXES 8

static void die(const char *what, const db_error *err)
{
    fprintf(stderr, "bench_refine: %s: %s\n", what, err ? err->message : "out of memory");
    exit(1);
}

/* The tests' perturbation (tests/refine/test_refine.c), mixed in sign so that no single scale factor undoes it. */
static double perturbed(const char *name, double v)
{
    static const char *const cell[6] = {"a", "b", "c", "alpha", "beta", "gamma"};
    static const double sign[6] = {1, -1, 1, -1, 1, 1};
    for (int k = 0; k < 6; k++)
        if (!strcmp(name, cell[k])) return v * (1.0 + 0.005 * sign[k]);
    if (!strcmp(name, "misset_x")) return v + 0.3;
    if (!strcmp(name, "misset_y")) return v - 0.3;
    if (!strcmp(name, "osc")) return v + 0.02;
    return v; /* phi0 starts at its true value */
}

typedef struct selection {
    const char *name;
    int boxes[4 * MAX_BOXES];
    int nboxes;
} selection;

/* Poisson with planes against least squares 1/max(obs, 1) without background, same boxes, same image, on the weak
 * still without and with water. */
static void objectives(int runs, const char *hkl)
{
    char msg[1200];
    db_error err;
    const size_t npix = 256 * 256;
    float *img = malloc(npix * sizeof(float));
    double *obs = malloc(npix * sizeof(double));
    uint16_t *noise = malloc(npix * sizeof(uint16_t));
    if (!img || !obs || !noise) die("malloc", NULL);
    int boxes[40];
    int nb = study_boxes(hkl, 10, 15, boxes, msg, sizeof msg);
    db_sim *sim = nb > 0 ? study_sim(hkl, 0.0, msg, sizeof msg) : NULL;
    if (!sim) {
        fprintf(stderr, "bench_refine: %s\n", msg);
        exit(1);
    }
    if (db_sim_select_boxes(sim, boxes, nb, &err)) die("db_sim_select_boxes", &err);
    int params[STUDY_NP];
    double truth[STUDY_NP], start[STUDY_NP];
    if (db_param_parse_list(STUDY_FIT, params, &err) != STUDY_NP) die("db_param_parse_list", &err);
    if (db_sim_get_params(sim, params, truth, STUDY_NP, &err)) die("db_sim_get_params", &err);
    study_start(truth, start);
#ifdef _OPENMP
    omp_set_num_threads(omp_get_num_procs());
#endif
    printf("\nobjectives: the weak still of tests/refine_study.h (noise seed 1), %d spot boxes of 15 x 15 (%ld pixels), "
           "%s from the study's start; median of %d fits each\n", nb, db_sim_selected_count(sim), STUDY_FIT, runs);
    /* what one run costs on this selection, so that the fit's own work shows beside its runs */
    long m = db_sim_selected_count(sim);
    double *values = malloc((size_t)m * sizeof(double)), *jac = malloc((size_t)m * STUDY_NP * sizeof(double));
    if (!values || !jac) die("malloc", NULL);
    double td[99], tp[99];
    for (int rr = 0; rr < runs; rr++) {
        double t0 = bench_now();
        if (db_sim_run_selected(sim, params, STUDY_NP, values, jac, &err)) die("db_sim_run_selected", &err);
        double t1 = bench_now();
        if (db_sim_run_selected(sim, params, 0, values, NULL, &err)) die("db_sim_run_selected", &err);
        td[rr] = t1 - t0;
        tp[rr] = bench_now() - t1;
    }
    const double deriv_s = bench_median(td, runs), primal_s = bench_median(tp, runs);
    free(values);
    free(jac);
    printf("one run with the ten derivatives %.5f s, without %.5f s (medians)\n", deriv_s, primal_s);
    printf("%-12s %-34s %9s %9s %6s %6s %6s %10s %10s\n", "image", "objective", "fit_s", "runs_s", "trials", "d_runs", "p_runs",
           "a - true", "sigma(a)");
    for (int w = 0; w < 2; w++) {
        db_sim *truth_sim = study_sim(hkl, w ? 0.025 : 0.0, msg, sizeof msg);
        if (!truth_sim) {
            fprintf(stderr, "bench_refine: %s\n", msg);
            exit(1);
        }
        if (db_sim_run(truth_sim, img, NULL, &err)) die("db_sim_run", &err);
        db_sim_destroy(truth_sim);
        study_observed(img, 1, noise, obs);
        /* the two objectives' fits alternate, so that the machine's slow moments fall on both alike */
        db_refine_options o[2];
        db_refine_default_options(&o[0]);
        db_refine_default_options(&o[1]);
        o[1].objective = DB_OBJECTIVE_LSQ;
        o[1].weighting = DB_WEIGHTS_POISSON;
        o[1].background = DB_BACKGROUND_NONE;
        double t[2][99], med[2];
        db_refine_result r[2];
        for (int rr = 0; rr < runs; rr++)
            for (int k = 0; k < 2; k++) {
                if (db_sim_set_params(sim, params, start, STUDY_NP, &err)) die("db_sim_set_params", &err);
                double t0 = bench_now();
                if (db_refine(sim, params, STUDY_NP, obs, NULL, &o[k], &r[k], &err)) die("db_refine", &err);
                t[k][rr] = bench_now() - t0;
            }
        for (int k = 0; k < 2; k++) {
            med[k] = bench_median(t[k], runs);
            printf("%-12s %-34s %9.4f %9.4f %6d %6d %6d %+10.4f %10.4f\n", w ? "water 0.025" : "no water",
                   k == 0 ? "poisson, planes (default)" : "lsq 1/max(obs,1), no background", med[k],
                   r[k].derivative_runs * deriv_s + r[k].primal_runs * primal_s, r[k].iterations, r[k].derivative_runs,
                   r[k].primal_runs, r[k].values[0] - truth[0], r[k].sigma[0]);
        }
        printf("%-12s poisson / lsq time: %.2f (target <= 1.2)\n", w ? "water 0.025" : "no water", med[0] / med[1]);
        if (w == 1)
            printf("runs_s = d_runs x (one run with derivatives) + p_runs x (one without): the fit's time in the simulator\n");
        fflush(stdout);
    }
    free(img);
    free(obs);
    free(noise);
    db_sim_destroy(sim);
}

int main(int argc, char **argv)
{
    int runs = argc > 1 ? atoi(argv[1]) : 5;
    if (runs < 1 || runs > 99) runs = 5;
    const char *hkl = argc > 2 ? argv[2] : DB_SOURCE_DIR "/tests/golden/b_triclinic/P1.hkl";
    const char *args[] = {"-cell", "70", "80", "90", "75", "85", "95", "-misset", "10", "20", "30", "-hkl", hkl,
                          "-Na", "4", "-Nb", "5", "-Nc", "6", "-lambda", "1", "-distance", "100", "-pixel", "0.1",
                          "-detpixels", "256", "-oversample", "1", "-phi", "0.05", "-osc", "0.2", "-phisteps", "4",
                          "-phi_carryover", "off"};
    db_error err;
    db_config *cfg = db_config_create();
    if (!cfg) die("db_config_create", NULL);
    if (db_config_parse(cfg, (int)(sizeof args / sizeof args[0]), args, &err)) die("db_config_parse", &err);
    db_sim *sim = NULL;
    if (db_sim_create(&sim, cfg, NULL, &err)) die("db_sim_create", &err);
    db_config_destroy(cfg);

    int fit[DB_REFINE_MAX_PARAMS], mission[DB_REFINE_MAX_PARAMS];
    int nfit = db_param_parse_list(FIT_LIST, fit, &err), nmission = db_param_parse_list(MISSION_LIST, mission, &err);
    if (nfit < 0 || nmission < 0) die("db_param_parse_list", &err);
    double truth[DB_REFINE_MAX_PARAMS], start[DB_REFINE_MAX_PARAMS];
    if (db_sim_get_params(sim, fit, truth, nfit, &err)) die("db_sim_get_params", &err);
    for (int j = 0; j < nfit; j++) start[j] = perturbed(db_param_name(fit[j]), truth[j]);

    /* the observed image at the true values, and the spots in it */
    int F, S;
    db_sim_size(sim, &F, &S);
    size_t npix = (size_t)F * S;
    float *image = malloc(npix * sizeof(float));
    double *observed = malloc(npix * sizeof(double));
    long *all = malloc(npix * sizeof(long));
    if (!image || !observed || !all) die("malloc", NULL);
    if (db_sim_run(sim, image, observed, &err)) die("db_sim_run", &err);
    for (size_t i = 0; i < npix; i++) all[i] = (long)i;
    selection sel[3] = {{"8 spots 15x15", {0}, 0}, {"box 128x128", {64, 191, 64, 191}, 1}, {"whole 256x256", {0, F - 1, 0, S - 1}, 1}};
    sel[0].nboxes = db_find_spots(observed, F, S, all, (long)npix, MAX_BOXES, 15, sel[0].boxes, &err);
    if (sel[0].nboxes < 0) die("db_find_spots", &err);
    free(all);

#ifdef _OPENMP
    printf("bench_refine: OpenMP, %d processors on this machine\n", omp_get_num_procs());
#else
    printf("bench_refine: no OpenMP, 1 thread only\n");
#endif
    printf("b_triclinic -phi 0.05 -osc 0.2 -phisteps 4 -phi_carryover off; %d spot boxes found\n", sel[0].nboxes);
    printf("iteration: median of %d runs of one run with the 11 derivatives of %s plus one primal run\n", runs, MISSION_LIST);
    printf("fit: db_refine of the 10 parameters %s (misset_z left out: it shares phi0's axis in MOSFLM), unit weights,\n"
           "     from cell +-0.5%%, misset_x +0.3, misset_y -0.3, osc +0.02 deg; one fit each\n", FIT_LIST);
    printf("%-14s %7s %7s %10s %10s %10s %6s %6s %6s %9s %9s %9s %-8s %s\n", "selection", "pixels", "threads", "deriv11_s",
           "primal_s", "iter_s", "trials", "d_runs", "p_runs", "fit_s", "runs_s", "max_err", "worst", "stop");
    for (int k = 0; k < 3; k++) {
        if (db_sim_select_boxes(sim, sel[k].boxes, sel[k].nboxes, &err)) die("db_sim_select_boxes", &err);
        long m = db_sim_selected_count(sim);
        double *values = malloc((size_t)m * sizeof(double)), *jac = malloc((size_t)nmission * m * sizeof(double));
        if (!values || !jac) die("malloc", NULL);
        for (int threads = 1; threads <= 2; threads++) {
#ifdef _OPENMP
            omp_set_num_threads(threads);
#else
            if (threads > 1) break;
#endif
            if (db_sim_set_params(sim, fit, truth, nfit, &err)) die("db_sim_set_params", &err);
            double td[99], tp[99], ti[99];
            for (int r = 0; r < runs; r++) {
                double t0 = bench_now();
                if (db_sim_run_selected(sim, mission, nmission, values, jac, &err)) die("db_sim_run_selected", &err);
                double t1 = bench_now();
                if (db_sim_run_selected(sim, mission, 0, values, NULL, &err)) die("db_sim_run_selected", &err);
                double t2 = bench_now();
                td[r] = t1 - t0;
                tp[r] = t2 - t1;
                ti[r] = t2 - t0;
            }
            double md = bench_median(td, runs), mp = bench_median(tp, runs), mi = bench_median(ti, runs);

            if (db_sim_set_params(sim, fit, start, nfit, &err)) die("db_sim_set_params", &err);
            db_refine_options o;
            db_refine_default_options(&o);
            o.objective = DB_OBJECTIVE_LSQ; /* noise-free: least squares, no background */
            o.weighting = DB_WEIGHTS_UNIT;
            o.background = DB_BACKGROUND_NONE;
            db_refine_result res;
            double t0 = bench_now();
            if (db_refine(sim, fit, nfit, observed, NULL, &o, &res, &err)) die("db_refine", &err);
            double fit_s = bench_now() - t0;
            double max_err = -1.0;
            int worst = 0;
            for (int j = 0; j < nfit; j++) {
                double e = fabs(res.values[j] - truth[j]) / fabs(truth[j]);
                if (e > max_err) {
                    max_err = e;
                    worst = j;
                }
            }
            printf("%-14s %7ld %7d %10.4f %10.4f %10.4f %6d %6d %6d %9.3f %9.3f %9.1e %-8s %s\n", sel[k].name, m, threads, md,
                   mp, mi, res.iterations, res.derivative_runs, res.primal_runs, fit_s,
                   res.derivative_runs * md + res.primal_runs * mp, max_err, db_param_name(fit[worst]), db_stop_reason_text(res.stop_reason));
            fflush(stdout);
        }
        free(values);
        free(jac);
    }
    printf("trials: db_refine's trial steps (accepted or not); d_runs/p_runs: its runs with derivatives/primal only;\n"
           "runs_s = d_runs x deriv11_s + p_runs x primal_s; max_err: largest |fitted - true| / |true|,\n"
           "of the parameter named in worst; stop: db_refine's stop reason\n");
    free(image);
    free(observed);
    db_sim_destroy(sim);
    objectives(runs, hkl);
    return 0;
}
