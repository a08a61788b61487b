/* ensemble.h: ensemble refinement of many stills that share one set of structure factors (issue 20; README
 * "Ensemble refinement"). When MPI is initialised with K > 1 ranks (built with DB_HAVE_MPI, run under mpirun), every
 * rank calls it with the same arguments: each sets up and renders the stills of db_elm_comm_range, the sums go along
 * the ranks in still order (ensemble_lm.h: the same bits for any K), an error about a still stops every rank with the
 * same error, and every rank returns the whole result. Otherwise one process. The simulator side of refine/ensemble_lm.h: every still is a db_sim
 * made from the shared flags followed by its own line of the -stills file (stills.h: db_stills_config), fitted
 * against its observed image on its chosen pixels, with one background plane per box; the structure factors F
 * (the whole list of the shared -hkl table, in its order) are one set for every still.
 *
 * Per still:
 *   - the observed image: the line's IMAGE, read with db_observed_read (-obs_adc, -obs_float64 and -gain from
 *     the line, else the options' shared defaults), divided by the gain (detector units to photons);
 *   - the pixels: the line's -spots N (boxes of -spot_size pixels around the N brightest spots of the observed
 *     image among the configuration's selected pixels, db_find_spots), else the line's -boxes FILE, else the
 *     options' shared -spots, else the shared -boxes (a dualbragg flag, in the shared argv), else the -roi and
 *     -mask selection (one background plane over it, about its bounding box's centre). A line with both -spots
 *     and -boxes is refused, and so are shared -spots with shared -boxes;
 *   - the background: a plane a + b x + c y per box (x, y pixels from the box's centre: the convention of
 *     db_refine and db_refine_background_at), over the pixels of the first box that holds them (boxes may
 *     overlap; a box without pixels of its own has no plane: NaN), started at the mean of observed - model over
 *     the box's pixels (at least 1e-3 photons, so that the Poisson mean starts positive) with zero slopes;
 *   - its parameters: the refined names (db_param_from_name, in the command line's units), started from the
 *     still's own configuration.
 * The objective is the Poisson negative log-likelihood (half the deviance) summed over stills, minimised by
 * db_elm_fit (Levenberg-Marquardt, Fisher scoring, each still's block eliminated, the reduced system over F
 * solved with CHOLMOD). Sigmas are the square roots of the diagonal of the inverse Fisher matrix at the optimum,
 * not rescaled.
 *
 * The structure factors: with refine_F, every listed reflection that some fitted pixel touches is refined (the
 * others keep their start and are reported unrefined, sigma NaN); without it F stays at the table's values.
 * An F that starts at 0 stays there (the intensity goes as F^2: its derivative is 0).
 *
 * SHARED PARAMETERS (options.refine_shared, -refine_shared): parameters every still shares (the detector distance,
 * the beam centre), one value each, fitted with the stills: the last entries of the solver's global vector, after
 * the structure factors (db_elm_problem.n_shared). Each starts at the shared flags' value, which every still then
 * has. Refused, naming -refine_shared and the parameter: an unknown or repeated name; a name also in refine_still;
 * fluence with refine_F (a fluence every still shares and F are one scale: no still's fluence is left to hold); a
 * still line that gives one a value of its own, named with the line: a flag that sets it directly (-distance or
 * -close_distance for distance, -Xbeam, -Xclose or -ORGX for xbeam, ...; ensemble.c OWN_FLAGS), or any other way
 * that leaves its start unlike the first still's (an -img header, another detector size moving the default beam
 * centre); a shared parameter without effect on a still's fitted pixels at the start (as for refine_still).
 *
 * THE SCALE RULE. The intensity is fluence x F^2: scaling every F by t and every fluence by 1/t^2 changes no
 * pixel. When fluence is refined per still AND F is refined, the first still of the file (still 0) keeps its
 * fluence at its given value (its -fluence, or the shared one) and every other still's fluence and every F are
 * refined relative to it. Its fluence is reported with sigma NaN and fixed = 1.
 *
 * Refused (DB_ERR_ARGUMENT, naming what): an unknown or repeated parameter name; nothing to refine (no
 * parameter, no shared parameter and F not refined); the shared parameters' refusals above; refine_F without a
 * structure-factor table (-hkl); a still line giving its own -hkl (F is shared: give -hkl once, on the shared
 * command line); a refined parameter that has no effect on a still's fitted pixels at the start (its derivative
 * is 0 on every one: it cannot be determined), named with the still's line; refine_F when no fitted pixel touches
 * a listed reflection. Other degeneracies that only show at the optimum come out as sigma -1 (undetermined).
 *
 * Errors about one still are prefixed "-stills FILE:LINE: ". Determinism: the stills are rendered and reduced in
 * file order, so two runs give the same bits. */
#ifndef DB_ENSEMBLE_H
#define DB_ENSEMBLE_H

#include "dualbragg.h"
#include "stills.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DB_ENSEMBLE_MAX_PARAMS 64

typedef struct db_ensemble_iteration {
    int iteration, accepted;
    double cost, damping, step, seconds; /* as db_lm_iteration: the cost after the step when accepted */
    long pixels;                         /* fitted pixels over all stills */
    long nstills;
} db_ensemble_iteration;

typedef struct db_ensemble_options {
    int max_iterations;     /* trial steps, accepted or not; default 100 */
    double cost_tolerance;  /* default 1e-12 (relative decrease of an accepted step that ends the fit) */
    double step_tolerance;  /* default 1e-10 */
    double initial_damping; /* default 1e-2 (as db_refine) */
    /* shared defaults of the per-image flags, for a still line that does not give its own */
    int spots;              /* -spots N: 0 for none (default) */
    int spot_size;          /* -spot_size S; default 15 */
    double obs_adc;         /* -obs_adc; default 40 (SMV images) */
    double gain;            /* -gain; default 1 */
    int obs_float64;        /* -obs_float64; default 0 */
    /* a comma list of parameter names every still shares, refined as one value each (-refine_shared
     * "distance,xbeam,ybeam"); NULL (the default) or "" for none */
    const char *refine_shared;
    /* Gaussian priors on the stills' own refined parameters, "name=sd,..." (-prior_still "misset_x=0.05,
     * misset_y=0.05,misset_z=0.05": sd in the parameter's command-line units, degrees for the missets), each centred
     * on the still's start value (its orientation from indexing, say, whose precision the sd states). Each named
     * parameter must be in refine_still. The cost then gains ((value - start) / sd)^2 / 2 per still and parameter,
     * and the sigmas are the posterior's. NULL (the default) or "" for none */
    const char *prior_still;
    void (*progress)(void *user, const db_ensemble_iteration *it); /* per trial step, or NULL */
    void *progress_user;
} db_ensemble_options;
void db_ensemble_default_options(db_ensemble_options *o);

typedef struct db_ensemble_still_result {
    long line;                                 /* its line in the stills file */
    long pixels;                               /* fitted pixels */
    double start[DB_ENSEMBLE_MAX_PARAMS];      /* the result's params, in its order */
    double values[DB_ENSEMBLE_MAX_PARAMS];
    double sigma[DB_ENSEMBLE_MAX_PARAMS];      /* -1: undetermined; NaN: held (fixed) */
    unsigned char fixed[DB_ENSEMBLE_MAX_PARAMS]; /* 1: held at its start by the scale rule */
    int nboxes;                                /* background entries: the boxes (or 1: the selection) */
    int *boxes;                                /* [4*nboxes] xmin xmax ymin ymax */
    double *background;                        /* [3*nboxes] a b c (NaN: a box without pixels of its own) */
    double *background_sigma;                  /* [3*nboxes] */
    double start_cost, cost;                   /* this still's half deviance at the start and at the end (the
                                                * data's alone: a prior's term is in the run's cost) */
} db_ensemble_still_result;

typedef struct db_ensemble_result {
    long nstills;
    db_ensemble_still_result *stills;          /* [nstills], in file order */
    int nparams;
    int params[DB_ENSEMBLE_MAX_PARAMS];        /* the refined per-still parameters, as listed */
    double prior_sd[DB_ENSEMBLE_MAX_PARAMS];   /* each one's prior sd (options.prior_still), INFINITY for none */
    int refine_F;
    int nshared;                               /* the shared parameters (options.refine_shared), as listed */
    int shared[DB_ENSEMBLE_MAX_PARAMS];
    double shared_start[DB_ENSEMBLE_MAX_PARAMS], shared_value[DB_ENSEMBLE_MAX_PARAMS];
    double shared_sigma[DB_ENSEMBLE_MAX_PARAMS]; /* -1: undetermined */
    int fluence_fixed_still;                   /* the still whose fluence the scale rule holds, or -1 */
    long nF, nF_refined;
    int *hkl;                                  /* [3*nF] the table's list */
    double *F_start, *F, *sigma_F;             /* [nF] (sigma_F may be longer); NaN where not refined (-1: undetermined) */
    unsigned char *F_refined;                  /* [nF] */
    double start_cost, cost, deviance;         /* summed over stills (half the deviance, plus the priors' terms
                                                * with options.prior_still; deviance: the data's alone, 2 cost
                                                * without priors) */
    long pixels, dof;
    int iterations, evaluations, stop_reason;  /* stop_reason: db_stop_reason (db_stop_reason_text) */
    double seconds;
    /* the solver's seconds by phase on rank 0 (db_elm_result's): the stills' linearisations, the trial points'
     * renders, the stills' own linear algebra, the reduced system; and its count of reduced solves, of the
     * factorizations among them, and of the re-solves' conjugate-gradient iterations */
    double seconds_linearise, seconds_trial, seconds_stills, seconds_reduced;
    int reduced_solves, reduced_factors;
    long reduced_cg_iterations;
} db_ensemble_result;
void db_ensemble_result_free(db_ensemble_result *r); /* r may be NULL; leaves it zeroed */

/* Refines the stills. shared_argv: dualbragg's flags shared by every still (cell, -hkl, detector, beam, -boxes,
 * ...; shared_argv may be NULL when shared_argc is 0); refine_still: a comma list of parameter names refined per
 * still ("misset_x,misset_y,misset_z,fluence"; NULL or "" for none); refine_F: 1 to refine the structure
 * factors. options may be NULL (the defaults). *result is zeroed first and filled on success (free it with
 * db_ensemble_result_free); on failure it holds nothing. Returns DB_OK or an error code with err set. */
int db_ensemble_refine(int shared_argc, const char *const *shared_argv, const db_stills *stills,
                       const char *refine_still, int refine_F, const db_ensemble_options *options,
                       db_ensemble_result *result, db_error *err);

#ifdef __cplusplus
}
#endif
#endif
