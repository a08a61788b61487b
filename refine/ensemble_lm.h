/* ensemble_lm.h: Levenberg-Marquardt over many stills that share global parameters (structure factors F),
 * independent of the simulator (issue 20; design.md "Structure factors and many stills").
 *
 * Still s has n_s counts obs_s, its own dense parameters x_s (p_s <= DB_LM_MAX_PARAMS), optional group-local
 * linear terms y_s (a background per box, as in lm.h), and sees the nF shared F through a sparse Jacobian. The
 * objective is the Poisson negative log-likelihood summed over stills (half the deviance, with lm.h's readout
 * variance offset), minimised by Fisher scoring: normal matrix J^T diag(1/mu') J, gradient J^T (1 - obs'/mu').
 *
 * Why a library of its own: the normal matrix over (all x_s, all y_s, F) is far too large for lm.c's dense solve,
 * but it is block-arrow shaped: each still's z_s = (x_s, y_s) couples only to itself and to the F it touches. So
 * each iteration eliminates every still's dense block (Schur complement), sums the reduced sparse system over F in
 * still order, solves it with CHOLMOD, and back-substitutes per still. The per-still parts (db_elm_block_*) and the
 * sum (db_elm_reduced_*) are separate calls so that an MPI layer can run the blocks on the rank that owns the still
 * and reduce; db_elm_fit is the one-process driver over them.
 *
 * Determinism: every entry of the reduced system is a sum of per-still terms added one still at a time, in still
 * order, starting from 0 (db_elm_reduced_zero, then db_elm_reduced_add for still 0, 1, ...). A still's own terms
 * depend on that still alone (no threaded BLAS in the blocks). Sums of rank-partial sums would NOT give the same
 * bits ((a+b)+(c+d) != ((a+b)+c)+d); a distributed reduction keeps the bits by passing the accumulator on
 * (db_elm_reduced_values: rank r receives it from rank r-1, adds its stills in order, sends it on) or by gathering
 * the stills' contributions to one rank that adds them in order. tests/ensemble/test_ensemble_lm.c checks the first. */
#ifndef DB_ENSEMBLE_LM_H
#define DB_ENSEMBLE_LM_H

#include "dualbragg.h"
#include "lm.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Still `still`'s model at (x_s, F): mu[n_s] without the local terms; when J is not NULL also J[j*n_s + i] =
 * d mu_i / d x_s[j] (column-major, p_s columns) and, in JF (n_s rows, nF columns, a db_csr the callback fills and
 * may reallocate: it is owned by the block and freed with db_csr_free), d mu_i / d F_k. J and JF are both NULL on a
 * trial evaluation (only mu is needed). The nonzero pattern of JF may change between linearisations (a pixel's
 * nearest hkl changes as the orientation moves): a still's F columns are the union of its Jacobians' nonzero
 * columns so far, and when they grow db_elm_fit analyses the reduced system's pattern again. Returns DB_OK,
 * DB_LM_INFEASIBLE (the trial is rejected), or an error code with err set (the fit stops with it). */
typedef int (*db_elm_evaluate_fn)(void *user, int still, const double *x_s, const double *F, double *mu, double *J,
                                  db_csr *JF, db_error *err);

typedef struct db_elm_still {
    long n;                /* observations (>= 1) */
    int p;                 /* own dense parameters, 0..DB_LM_MAX_PARAMS (0: a still whose scale is fixed) */
    const double *obs;     /* [n] counts */
    int ngroups, q;        /* local terms as lm.h: q (1..DB_LM_MAX_LOCAL) per group; ngroups 0 for none */
    const int *group;      /* [n] group of each observation, -1 for none (NULL when ngroups == 0) */
    const double *basis;   /* [n*q] basis values of each observation's local terms */
    /* bounds of the local terms as lm.h: c . y_g >= 0 for each row c of bounds[(g*nbounds + b)*q ..] (a background
     * plane kept >= 0 at the corners of its box); the start must satisfy them (to a rounding of 1e-12 (1 + sum
     * |c_k y_k|): a fit's result lands on a bound to rounding). 0 and NULL: none. Each trial step
     * keeps them by an active-set method: the active bounds of a still's groups are equality constraints of that
     * still's elimination (see db_elm_fit) */
    int nbounds;
    const double *bounds;
    /* a Gaussian prior (restraint) on the own parameters: the cost gains sum_j ((x_j - prior_mean[j]) / prior_sd[j])^2 / 2,
     * and the steps' and the uncertainties' matrices its 1 / prior_sd^2 on the diagonal (the sigmas are then the
     * posterior's). prior_sd[j] > 0; INFINITY for none on x_j. Both NULL: no prior. What it is for: an orientation
     * known from indexing to a stated precision, which a weak still's few spots determine worse (ensemble.h) */
    const double *prior_mean, *prior_sd;
} db_elm_still;

typedef struct db_elm_problem {
    int nstills;
    const db_elm_still *stills; /* [nstills] */
    long nF;                    /* shared parameters */
    db_elm_evaluate_fn evaluate;
    void *user;
    double variance_offset;     /* readout variance S^2 >= 0: counts obs + S^2 against mu + S^2 (lm.h) */
    /* 1: the model depends on each F only through F^2 (structure factors), so F may change sign inside the fit and
     * no step is refused for an F < 0 (a bound the model does not have); the result reports |F|. 0: a trial with
     * any F < 0 is infeasible. */
    int F_even;
    /* the last n_shared of the nF global parameters are not structure factors but parameters every still shares
     * (detector distance, beam centre: -refine_shared): F_even and the F >= 0 feasibility leave them alone.
     * 0 <= n_shared <= nF; 0 for none */
    long n_shared;
    /* 1: each mean depends on each structure factor F_k as a + c F_k^2 (the nearest-hkl lookup; not tricubic
     * interpolation, which mixes neighbours). The steps then add the cost's exact second-order F term where it is
     * positive (ensemble_lm.c second_order_F), without which a weak reflection's F overshoots through 0 step after
     * step. The optimum does not depend on it; the uncertainties gain it where the optimum is at F = 0 (where the
     * Fisher information in F vanishes). 0: Gauss-Newton in F. */
    int F_squared;
    /* 1: evaluate may run for different stills at the same time (each still's state is its own): the stills'
     * evaluations, eliminations and back-substitutions then run on OpenMP threads, one still per thread. The bits
     * are the same as with 0 (every sum over stills stays in still order; the lowest failing still's error is the
     * one returned). 0: one still after another. */
    int concurrent_stills;
} db_elm_problem;

typedef struct db_elm_options {
    int max_iterations;     /* trial steps (accepted or not); default 100 */
    double cost_tolerance;  /* relative decrease of an accepted step that ends the fit; default 1e-12 */
    /* an accepted step that lowers the cost by less than this (absolute, in the cost's units) ends the fit; default 0
     * (lm.h's rule of the same name: for a log-likelihood, 1e-6 per parameter is a change of about 1.4e-3 of each
     * parameter's standard uncertainty) */
    double cost_decrease_tolerance;
    double step_tolerance;  /* scaled step relative to the scaled parameters that ends the fit; default 1e-10 */
    double initial_damping; /* relative to the scaled diagonal (1 at the start); default 1e-3 */
    void (*progress)(void *user, const db_lm_iteration *it); /* per trial step, or NULL */
    void *progress_user;
} db_elm_options;
void db_elm_default_options(db_elm_options *o);

typedef struct db_elm_result {
    double start_cost, cost;  /* half the deviance, plus the priors' terms where stills have them */
    int iterations, evaluations, stop_reason; /* stop_reason: db_stop_reason */
    long dof;                 /* sum n_s - sum (p_s + ngroups_s q_s) - refined F */
    long nF_refined;          /* F columns some observation touches (the others keep their start) */
    double deviance;          /* 2 cost at the optimum */
    int bad_still;            /* on an error about one still: it; else -1 */
    /* the solver's seconds by phase, this rank's (their sum is within a few percent of the fit's time; the rest is
     * the steps' bookkeeping): the stills' linearisations (their derivative runs and normal equations), the trial
     * points' evaluations, the stills' own linear algebra (eliminations, active sets, back-substitutions), and the
     * reduced system (its sums in still order, CHOLMOD's analysis, factors and solves, the broadcasts); and how
     * many reduced solves (a step makes one more for each round of its active sets), how many of them factored the
     * reduced system (the later rounds re-solve with the first round's factor: db_elm_reduced_resolve) and the
     * re-solves' conjugate-gradient iterations */
    double seconds_linearise, seconds_trial, seconds_stills, seconds_reduced;
    int reduced_solves, reduced_factors;
    long reduced_cg_iterations;
} db_elm_result;

/* Fits x (all x_s concatenated in still order), y (all y_s concatenated: still s's ngroups_s*q_s terms) and F[nF]
 * (in: the start, F >= 0; out: the best values found). sigma_x, sigma_y (laid out as x, y) and sigma_F[nF] are the
 * square roots of the diagonal of the inverse undamped Fisher matrix at the optimum (not rescaled); -1 marks a
 * parameter that matrix cannot determine, NaN an F no observation touches. F_refined[nF]: 1 for a refined F, 0 for
 * an untouched one. Each of sigma_x, sigma_y, sigma_F, F_refined may be NULL; y may be NULL when no still has local
 * terms. Feasibility: a trial step with any F < 0 is rejected like an infeasible one (the damping rises and the
 * step shortens towards the gradient) rather than projected: projection would break the predicted-reduction test
 * and the Fisher step's meaning, and a start F >= 0 then stays feasible.
 * Bounds of the local terms (db_elm_still.nbounds): each damped step is the minimiser of the damped quadratic model
 * subject to the bounds, by an active-set method as lm.c's: bounds that hold with equality at the step's start are
 * active (the step stays on them); each round solves the reduced system with every still's active bounds as
 * equality constraints of its elimination, back-substitutes, and then, still by still, releases in each group the
 * active bound with the most negative Lagrange multiplier, or (when that still releases none) makes active the
 * bounds the step would cross, landing on them; the stills whose active sets changed are eliminated again and the
 * reduced system is summed and solved again, until no still changes (at most 4 q + 4 rounds; the ranks agree on
 * "some still changed"). The predicted reduction is then the undamped quadratic model's decrease along the step.
 * Uncertainties are those of the unconstrained Fisher matrix (as lm.h's). */
int db_elm_fit(const db_elm_problem *P, const db_elm_options *opt, double *x, double *y, double *F, double *sigma_x,
               double *sigma_y, double *sigma_F, unsigned char *F_refined, db_elm_result *res, db_error *err);

/* ---- distribution over processes (MPI ranks): the communication the driver needs, without MPI itself ----
 * Rank r of K owns the stills [first, last) of db_elm_comm_range (contiguous, in still order, rank 0 the first).
 * Every rank runs db_elm_fit_comm with the same problem sizes (n, p, ngroups, q of every still; obs, group, basis,
 * nbounds and bounds are needed only for the stills it owns) and the same options; it renders, linearises,
 * eliminates and back-substitutes only its own stills. THE DETERMINISM RULE: every sum over stills (the reduced
 * system, the costs, the predicted-reduction terms g.d, d.D.d and d.H.d, the scaled parameter norm) is passed along
 * the ranks as one accumulator: rank 0 starts from 0 and adds its stills in order, sends it to rank 1, which adds its stills and sends
 * it on; the last rank broadcasts the total. So the bits are those of one process for any K. Every rank then
 * factors the same reduced system (it needs the factor for its stills' uncertainties); rank 0's step (dF, g.d,
 * d.D.d, positive-definiteness) is broadcast so that every rank takes the same decisions whatever its BLAS does.
 * The bounds' active sets are each still's own (decided on its rank from the broadcast step); the ranks agree (max)
 * on whether some still's set changed, and so run the same rounds.
 * Errors: after every local phase the ranks agree (max) on an error flag; the lowest failing rank broadcasts its
 * db_error and its still, and every rank returns that error (no hang). At the end every rank holds all of x, y and
 * the sigmas (each rank's segments broadcast). The progress callback runs on rank 0 only. All operations block;
 * a transport failure is fatal (MPI's default error handler aborts every rank). NULL or size 1: one process. */
typedef struct db_elm_comm {
    int rank, size;
    void *user;
    void (*bcast)(void *user, int root, void *buf, long bytes);       /* root's buf to every rank */
    void (*send)(void *user, int to, const void *buf, long bytes);
    void (*recv)(void *user, int from, void *buf, long bytes);
    void (*max)(void *user, double *v, int n);                        /* element-wise max over ranks, in place */
} db_elm_comm;
/* The stills [*first, *last) that rank owns: [rank S / K, (rank + 1) S / K). */
void db_elm_comm_range(int nstills, int size, int rank, int *first, int *last);
/* The agreement step: rc is this rank's result (DB_OK or an error with err and *bad_still set). Returns DB_OK on
 * every rank when no rank failed; else the lowest failing rank's code, with its err and bad_still copied to every
 * rank. comm NULL or size 1: returns rc. */
int db_elm_comm_agree(const db_elm_comm *comm, int rc, db_error *err, int *bad_still);
/* Every rank's segment to every rank: rank r's bytes [off[r], off[r+1]) of buf (off[K] the total). */
void db_elm_comm_allgather(const db_elm_comm *comm, void *buf, const long *off);

/* db_elm_fit over the ranks of comm (NULL: one process, exactly db_elm_fit). x, y, sigma_x and sigma_y have the
 * global layout; on entry only the owned stills' parts of x and y are read, on return every rank holds all of
 * them. */
int db_elm_fit_comm(const db_elm_problem *P, const db_elm_options *opt, const db_elm_comm *comm, double *x, double *y,
                    double *F, double *sigma_x, double *sigma_y, double *sigma_F, unsigned char *F_refined,
                    db_elm_result *res, db_error *err);

/* ---- the per-still parts (what one MPI rank does for the stills it owns) ---- */
typedef struct db_elm_block db_elm_block;

/* A still's workspace: validates the still's sizes (DB_ERR_ARGUMENT). */
int db_elm_block_new(const db_elm_problem *P, int still, db_elm_block **out, db_error *err);
void db_elm_block_free(db_elm_block *b); /* b may be NULL */

/* Evaluates at (x_s, y_s, F) with Jacobians (W: the steps' weights, the floored observed curvature of objective.c;
 * the uncertainties use the Fisher weights): the cost, A = Jz^T W Jz over z = (x_s, y_s), B = Jz^T W JF and
 * C = JF^T W JF over the F the still touches (compact, ascending global columns), gradients g_z and g_F. The still's
 * F columns are the union of the nonzero columns of every JF it has linearised (a column once in stays in); a
 * reduced system built before they grew no longer fits the block (db_elm_fit builds a new one). */
int db_elm_block_linearise(db_elm_block *b, const double *x_s, const double *y_s, const double *F, db_error *err);
/* The still's F columns (ascending global indices) after its linearisations so far; returns their count. */
long db_elm_block_columns(const db_elm_block *b, const long **cols);
double db_elm_block_cost(const db_elm_block *b);
/* Eliminates z with damping lambda times the still's scaling (the largest diagonal of A seen) on A's diagonal:
 * the still's part of the reduced system, C - B^T A^-1 B and g_F - B^T A^-1 g_z. Returns 1, or 0 when the damped
 * block is not positive definite (lambda = 0 at the optimum: an undetermined x_s or y_s). Bounds made active inside
 * db_elm_fit are equality constraints here; a block outside the fit has none. */
int db_elm_block_eliminate(db_elm_block *b, double lambda);
/* dz = -(A + lambda D)^-1 (g_z + B dF) for the reduced system's solution dF[nF] (global indexing), after
 * eliminate with the same lambda; also adds the still's g_z.dz and dz.D.dz to *gd and *dDd (the predicted cost
 * reduction needs them). */
void db_elm_block_back_substitute(const db_elm_block *b, const double *dF, double *dz, double *gd, double *dDd);

/* ---- the reduced system over the refined F ---- */
typedef struct db_elm_reduced db_elm_reduced;

/* The pattern of the reduced system: the union of the stills' cliques (cols[s][0..counts[s]-1], from
 * db_elm_block_columns), analysed once by CHOLMOD. Columns no still lists are not refined. */
int db_elm_reduced_new(long nF, int nstills, const long *counts, const long *const *cols, db_elm_reduced **out,
                       db_error *err);
void db_elm_reduced_free(db_elm_reduced *R); /* R may be NULL */
/* Refined F columns: their count, and mask[nF] (1 refined) when mask is not NULL. */
long db_elm_reduced_refined(const db_elm_reduced *R, unsigned char *mask);
void db_elm_reduced_zero(db_elm_reduced *R);
/* Adds an eliminated still's contribution (the reduced matrix's entries, r, the F gradient and C's diagonal). The
 * bits depend only on the order of the calls. */
void db_elm_reduced_add(db_elm_reduced *R, const db_elm_block *b);
/* The accumulator as one array (length *count) for a distributed reduction to pass on; writing it back and then
 * adding further stills is the same as adding them to the original. */
double *db_elm_reduced_values(db_elm_reduced *R, long *count);
/* Solves (S + lambda D_F) dF = -r into dF[nF] (0 for unrefined columns), D_F the largest diagonal of sum C seen
 * (updated here when update_scaling is 1: after a new linearisation). Returns 1, 0 when not positive definite,
 * or -1 on a CHOLMOD failure with err set. *gd and *dDd gain g_F.dF and dF.D_F.dF. */
int db_elm_reduced_solve(db_elm_reduced *R, double lambda, int update_scaling, double *dF, double *gd, double *dDd,
                         db_error *err);
/* The same solve after a few stills' shares changed (a later round of a step's active sets) at the lambda and
 * scaling of the present factor: conjugate gradients preconditioned by that factor, to a residual 1e-12 of |r|;
 * falls back to db_elm_reduced_solve (a new factor) when they do not converge in a few iterations, and when there
 * is no good factor at this lambda. Same returns. */
int db_elm_reduced_resolve(db_elm_reduced *R, double lambda, double *dF, double *gd, double *dDd, db_error *err);
/* how many factorizations R made, and the re-solves' conjugate-gradient iterations (either may be NULL) */
void db_elm_reduced_counts(const db_elm_reduced *R, int *factors, long *cg_iterations);

#ifdef __cplusplus
}
#endif
#endif
