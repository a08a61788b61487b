/* refine_study.h: the refinement's statistics by simulation (issue 17), shared by tests/refine/test_refine_stats.c (few
 * seeds, in CI) and bench/bench_refine_stats.c (100 seeds and more, figures printed).
 *
 * A weak still of the triclinic test crystal (b_triclinic: cell 70 80 90 75 85 95, misset 10 20 30, N 4 5 6,
 * 256 x 256 pixels of 0.1 mm at 100 mm, one phi step) at 0.4 of the default fluence (spot peaks 48 photons, median
 * pixel 0.003), optionally with a water background in the truth (-water 0.025: 0.51 to 0.55 photons per pixel).
 * Per noise seed k: the Poisson image of the program's own -seed k noise image (the reference's generator, bit for
 * bit: db_noise_image from a fresh random state, as `dualbragg -seed k -noisefile` writes it), minus the ADC
 * offset; then a fit of ten parameters (the cell, the misset, the fluence) from a start a few tenths of a percent
 * off (cell lengths +-0.3%, angles +-0.2%, misset +-0.05 deg, fluence +5%), the model always without water, on
 * boxes around the spots of the noise-free truth image (found once, so that which pixels are fitted does not
 * depend on the noise of each image). Reported per parameter: the mean of z = (fit - truth) / sigma, the fraction
 * of fits with |z| <= 1 and <= 2, and the spread of the fits over the mean reported sigma; pooled over parameters:
 * the fractions within 1 and 2 sigma. Fits that fail (an error, no convergence) or flag a poor fit are counted and
 * left out of the statistics (and reported). */
#ifndef DB_REFINE_STUDY_H
#define DB_REFINE_STUDY_H

#include "dualbragg.h"
#include "rng.h"
#include "smv.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define STUDY_NP 10
#define STUDY_MAX_BOXES 64
#define STUDY_FIT "a,b,c,alpha,beta,gamma,misset_x,misset_y,misset_z,fluence"
#define STUDY_FLUENCE 5.0372806114e28 /* 0.4 of the default 1.25932015286e29 photons/m^2 */

typedef struct study_config {
    const char *hkl;      /* the P1.hkl of b_triclinic */
    double water_um;      /* water droplet of the truth image, micrometres (0: none) */
    int objective;        /* DB_OBJECTIVE_POISSON or DB_OBJECTIVE_LSQ */
    int weighting;        /* for LSQ */
    int background;       /* db_background */
    int first_seed, seeds;
    int nboxes, box_size; /* spots boxes */
} study_config;

typedef struct study_param {
    double truth, mean_z, within1, within2, spread, mean_sigma;
} study_param;

typedef struct study_result {
    int fits, failed, poor;           /* fits in the statistics, errors or no convergence, poor fits */
    int nboxes;
    long pixels;
    study_param p[STUDY_NP];
    double within1, within2;          /* pooled over the parameters */
    double max_abs_mean_z;
    double mean_iterations, mean_seconds, mean_deviance_z;
} study_result;

static const char *study_names[STUDY_NP] = {"a", "b", "c", "alpha", "beta", "gamma", "misset_x", "misset_y",
                                            "misset_z", "fluence"};

/* The truth's command line (water 0: none). */
static inline int study_args(const char *hkl, double water_um, char store[][64], const char **argv)
{
    const char *fixed[] = {"-cell", "70", "80", "90", "75", "85", "95", "-misset", "10", "20", "30", "-hkl", hkl,
                           "-Na", "4", "-Nb", "5", "-Nc", "6", "-lambda", "1", "-distance", "100", "-pixel", "0.1",
                           "-detpixels", "256", "-oversample", "1", "-noprogress", "-fluence"};
    int n = 0;
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) argv[n++] = fixed[i];
    snprintf(store[0], 64, "%.12g", STUDY_FLUENCE);
    argv[n++] = store[0];
    if (water_um > 0) {
        argv[n++] = "-water";
        snprintf(store[1], 64, "%.12g", water_um);
        argv[n++] = store[1];
    }
    return n;
}

static inline db_sim *study_sim(const char *hkl, double water_um, char *msg, size_t msgsize)
{
    char store[2][64];
    const char *argv[48];
    int argc = study_args(hkl, water_um, store, argv);
    db_error err;
    db_config *cfg = db_config_create();
    db_sim *sim = NULL;
    if (!cfg || db_config_parse(cfg, argc, argv, &err) || db_sim_create(&sim, cfg, NULL, &err)) {
        snprintf(msg, msgsize, "study: %s", cfg ? err.message : "out of memory");
        sim = NULL;
    }
    db_config_destroy(cfg);
    return sim;
}

/* The start: a few tenths of a percent off, mixed in sign. */
static inline void study_start(const double *truth, double *start)
{
    static const double off[STUDY_NP] = {0.003, -0.003, 0.003, -0.002, 0.002, 0.002, 0.05, -0.05, 0.05, 0.05};
    for (int j = 0; j < STUDY_NP; j++)
        start[j] = j < 6 ? truth[j] * (1.0 + off[j]) : j < 9 ? truth[j] + off[j] : truth[j] * (1.0 + off[j]);
}

/* Boxes of size x size around the n brightest spots of the noise-free image without water (the same pixels for
 * every seed and both images); their count, or -1 with msg. */
static inline int study_boxes(const char *hkl, int n, int size, int *boxes, char *msg, size_t msgsize)
{
    const size_t npix = 256 * 256;
    db_error err;
    db_sim *clean = study_sim(hkl, 0.0, msg, msgsize);
    float *img = (float *)malloc(npix * sizeof(float));
    double *img64 = (double *)malloc(npix * sizeof(double));
    long *pix = (long *)malloc(npix * sizeof(long));
    int nb = -1;
    if (!clean || !img || !img64 || !pix) {
        if (clean) snprintf(msg, msgsize, "study: out of memory");
    } else if (db_sim_run(clean, img, img64, &err)) {
        snprintf(msg, msgsize, "study: %s", err.message);
    } else {
        for (size_t i = 0; i < npix; i++) pix[i] = (long)i;
        nb = db_find_spots(img64, 256, 256, pix, (long)npix, n, size, boxes, &err);
        if (nb <= 0) snprintf(msg, msgsize, "study: no spots (%s)", nb < 0 ? err.message : "none above the threshold");
        if (nb == 0) nb = -1;
    }
    db_sim_destroy(clean);
    free(img);
    free(img64);
    free(pix);
    return nb;
}

/* The observed image of seed k: the Poisson deviates of img (256 x 256) that `dualbragg -seed k -noisefile` writes
 * (a fresh random state started at -k, as config.c makes it), into noise, and less the ADC offset 40 into obs. */
static inline void study_observed(const float *img, int k, uint16_t *noise, double *obs)
{
    db_rng rng;
    db_rng_init(&rng);
    long seed = -(long)k;
    db_roi all = {0, 255, 0, 255};
    db_noise_image(&rng, &seed, img, 256, 256, &all, 40.0, noise, NULL, NULL);
    for (size_t i = 0; i < 256 * 256; i++) obs[i] = (double)noise[i] - 40.0;
}

static inline double study_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Runs the study; 0 on success, -1 with msg on a setup failure (a failed fit is counted, not an error). progress:
 * print one line per seed to stderr. */
static inline int study_run(const study_config *c, study_result *r, int progress, char *msg, size_t msgsize)
{
    memset(r, 0, sizeof *r);
    int params[STUDY_NP];
    db_error err;
    if (db_param_parse_list(STUDY_FIT, params, &err) != STUDY_NP) {
        snprintf(msg, msgsize, "study: %s", err.message);
        return -1;
    }
    const size_t npix = 256 * 256;
    float *img = (float *)malloc(npix * sizeof(float));
    double *obs = (double *)malloc(npix * sizeof(double));
    uint16_t *noise = (uint16_t *)malloc(npix * sizeof(uint16_t));
    double *z = (double *)malloc((size_t)c->seeds * STUDY_NP * sizeof(double));
    double *fit = (double *)malloc((size_t)c->seeds * STUDY_NP * sizeof(double));
    double *sig = (double *)malloc((size_t)c->seeds * STUDY_NP * sizeof(double));
    int boxes[4 * STUDY_MAX_BOXES];
    db_sim *truth_sim = NULL, *sim = NULL;
    int rc = -1;
    if (!img || !obs || !noise || !z || !fit || !sig) {
        snprintf(msg, msgsize, "study: out of memory");
        goto done;
    }
    int nb = study_boxes(c->hkl, c->nboxes < STUDY_MAX_BOXES ? c->nboxes : STUDY_MAX_BOXES, c->box_size, boxes, msg,
                         msgsize);
    if (nb < 0) goto done;
    r->nboxes = nb;
    /* the truth image, with water when asked for; the model never has it */
    if (!(truth_sim = study_sim(c->hkl, c->water_um, msg, msgsize))) goto done;
    if (db_sim_run(truth_sim, img, NULL, &err)) {
        snprintf(msg, msgsize, "study: %s", err.message);
        goto done;
    }
    if (!(sim = study_sim(c->hkl, 0.0, msg, msgsize))) goto done;
    double truth[STUDY_NP], start[STUDY_NP];
    if (db_sim_get_params(sim, params, truth, STUDY_NP, &err)) {
        snprintf(msg, msgsize, "study: %s", err.message);
        goto done;
    }
    study_start(truth, start);
    if (db_sim_select_boxes(sim, boxes, nb, &err)) {
        snprintf(msg, msgsize, "study: %s", err.message);
        goto done;
    }
    r->pixels = db_sim_selected_count(sim);
    int n = 0;
    for (int k = 0; k < c->seeds; k++) {
        const int seed = c->first_seed + k;
        study_observed(img, seed, noise, obs);
        db_refine_options o;
        db_refine_default_options(&o);
        o.objective = c->objective;
        o.weighting = c->weighting;
        o.background = c->background;
        db_refine_result res;
        double t0 = study_now();
        int frc = db_sim_set_params(sim, params, start, STUDY_NP, &err);
        if (!frc) frc = db_refine(sim, params, STUDY_NP, obs, NULL, &o, &res, &err);
        double dt = study_now() - t0;
        int bad = frc || res.stop_reason == DB_STOP_MAXITER || res.stop_reason == DB_STOP_NO_PROGRESS;
        if (!bad)
            for (int j = 0; j < STUDY_NP; j++) bad |= !(res.sigma[j] > 0);
        if (progress)
            fprintf(stderr, "  seed %d: %s%s, %d iterations, %.2f s, deviance z %+.2f\n", seed,
                    frc ? err.message : db_stop_reason_text(res.stop_reason), !frc && res.poor_fit ? " (poor fit)" : "",
                    frc ? 0 : res.iterations, dt, frc ? 0.0 : res.deviance_z);
        if (bad) {
            r->failed++;
            continue;
        }
        if (res.poor_fit) {
            r->poor++;
            continue;
        }
        for (int j = 0; j < STUDY_NP; j++) {
            fit[n * STUDY_NP + j] = res.values[j];
            sig[n * STUDY_NP + j] = res.sigma[j];
            z[n * STUDY_NP + j] = (res.values[j] - truth[j]) / res.sigma[j];
        }
        r->mean_iterations += res.iterations;
        r->mean_seconds += dt;
        r->mean_deviance_z += res.deviance_z;
        n++;
    }
    r->fits = n;
    if (n > 0) {
        r->mean_iterations /= n;
        r->mean_seconds /= n;
        r->mean_deviance_z /= n;
    }
    int in1 = 0, in2 = 0;
    for (int j = 0; j < STUDY_NP; j++) {
        study_param *p = &r->p[j];
        p->truth = truth[j];
        double mean = 0.0, var = 0.0;
        for (int k = 0; k < n; k++) {
            double zz = z[k * STUDY_NP + j];
            p->mean_z += zz / n;
            p->within1 += fabs(zz) <= 1.0;
            p->within2 += fabs(zz) <= 2.0;
            mean += fit[k * STUDY_NP + j] / n;
            p->mean_sigma += sig[k * STUDY_NP + j] / n;
        }
        in1 += (int)p->within1;
        in2 += (int)p->within2;
        for (int k = 0; k < n; k++) var += (fit[k * STUDY_NP + j] - mean) * (fit[k * STUDY_NP + j] - mean);
        p->spread = n > 1 ? sqrt(var / (n - 1)) / p->mean_sigma : NAN;
        if (n > 0) {
            p->within1 /= n;
            p->within2 /= n;
        }
        if (fabs(p->mean_z) > r->max_abs_mean_z) r->max_abs_mean_z = fabs(p->mean_z);
    }
    r->within1 = n ? (double)in1 / (n * STUDY_NP) : NAN;
    r->within2 = n ? (double)in2 / (n * STUDY_NP) : NAN;
    rc = 0;
done:
    db_sim_destroy(truth_sim);
    db_sim_destroy(sim);
    free(img);
    free(obs);
    free(noise);
    free(z);
    free(fit);
    free(sig);
    return rc;
}

static inline void study_print(FILE *o, const char *title, const study_config *c, const study_result *r)
{
    fprintf(o, "%s: %d seeds from %d, %d boxes of %d x %d (%ld pixels): %d fits, %d failed, %d poor; %.1f iterations, "
               "%.3f s a fit; mean deviance z %+.2f\n",
            title, c->seeds, c->first_seed, r->nboxes, c->box_size, c->box_size, r->pixels, r->fits, r->failed, r->poor,
            r->mean_iterations, r->mean_seconds, r->mean_deviance_z);
    fprintf(o, "  %-9s %14s %8s %8s %8s %8s\n", "parameter", "truth", "mean z", "|z|<=1", "|z|<=2", "spread");
    for (int j = 0; j < STUDY_NP; j++)
        fprintf(o, "  %-9s %14.8g %+8.3f %8.3f %8.3f %8.3f\n", study_names[j], r->p[j].truth, r->p[j].mean_z,
                r->p[j].within1, r->p[j].within2, r->p[j].spread);
    fprintf(o, "  pooled: within 1 sigma %.3f (0.683), within 2 sigma %.3f (0.954), largest |mean z| %.3f\n", r->within1,
            r->within2, r->max_abs_mean_z);
}

#endif
