/* lm.h: a Levenberg-Marquardt driver for a model mu(x) of n observations, independent of the simulator.
 *
 * The problem is GSL multifit_nlinear's {n, p, evaluate(x) -> mu, J}, plus two things refinement of images
 * needs and GSL has not:
 *  - the objective: weighted least squares, 0.5 sum w (mu - obs)^2, or the Poisson negative log-likelihood of
 *    the counts, written as half the deviance sum(mu - obs + obs ln(obs/mu)) (Fisher scoring: normal matrix
 *    J^T diag(1/mu) J, gradient J^T (1 - obs/mu)); a readout variance S^2 is the shifted-Poisson model
 *    (obs + S^2 counted against mu + S^2, so the variance is mu + S^2);
 *  - group-local linear terms: mu_i = model_i(x) + sum_k basis[i*q + k] y[g_i*q + k] for the group g_i of
 *    observation i (a background plane a + b x + c y per box: q = 3, basis 1, x, y). Their Jacobian columns
 *    are the basis itself, and each group's q x q block is eliminated (Schur complement) before the p x p
 *    solve, so many groups cost O(n) and not a normal matrix of 3 x groups rows.
 * Damping as in Nielsen (1999): a step is judged by the ratio of the actual to the predicted cost reduction.
 * Uncertainties are the square roots of the diagonal of the inverse normal (Fisher) matrix at the optimum,
 * not rescaled. */
#ifndef DB_LM_H
#define DB_LM_H

#include "dualbragg.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DB_LM_MAX_PARAMS 64       /* global parameters (the dense block) */
#define DB_LM_MAX_LOCAL 3         /* local terms per group */
#define DB_LM_INFEASIBLE (-1)     /* evaluate's answer for an x the model refuses: the trial step fails */

typedef enum { DB_LM_LSQ = 0, DB_LM_POISSON = 1 } db_lm_objective;

/* mu[n] = model at x (without the local terms); J[j*n + i] = d mu_i / d x_j (column-major) when J is not
 * NULL. Returns DB_OK, DB_LM_INFEASIBLE (x is outside the model's domain: the step is rejected), or an error
 * code with err set (the fit stops with it). */
typedef int (*db_lm_evaluate_fn)(void *user, const double *x, double *mu, double *J, db_error *err);

typedef struct db_lm_problem {
    long n;                       /* observations */
    int p;                        /* global parameters, 0..DB_LM_MAX_PARAMS */
    db_lm_evaluate_fn evaluate;
    void *user;
    const double *obs;            /* [n] */
    int objective;                /* db_lm_objective */
    const double *weights;        /* LSQ: [n] weights >= 0, or NULL for 1 */
    double variance_offset;       /* POISSON: the readout variance S^2 (>= 0) */
    int ngroups, q;               /* local terms: q per group (0..DB_LM_MAX_LOCAL), ngroups groups */
    const int *group;             /* [n] group of each observation, -1 for none (NULL when ngroups == 0) */
    const double *basis;          /* [n*q] basis values of each observation's local terms */
    const char *const *names;     /* [p] parameter names for messages, or NULL ("x[j]") */
    /* bounds of the local terms: c . y_g >= 0 for each row c of bounds[(g*nbounds + b)*q ..] (a background plane
     * kept >= 0 at the corners of its box); the start must satisfy them. 0 and NULL: none */
    int nbounds;
    const double *bounds;
} db_lm_problem;

typedef struct db_lm_iteration {
    int iteration, accepted;
    double cost, damping, step, seconds; /* cost after the step when accepted; step = |D delta| / |D x| */
} db_lm_iteration;

/* Beyond this damping (relative to the scaled diagonal) a step is shorter than any rounding of the parameters: the
 * Levenberg-Marquardt drivers (lm.c, ensemble_lm.c) stop there with "no progress". */
#define DB_LM_MAX_DAMPING 1e32

/* cost_decrease_tolerance of a Poisson fit (db_refine's and the ensemble's): the cost is a negative log-likelihood,
 * and a decrease below 1e-6 moves no parameter by more than about 1e-3 of its uncertainty, while the last quadratic
 * steps below it (1e-9 to 1e-12 of the cost) cost renders */
#define DB_LM_POISSON_COST_DECREASE 1e-6

typedef struct db_lm_options {
    int max_iterations;           /* trial steps (accepted or not); default 100 */
    double cost_tolerance;        /* relative decrease of an accepted step that ends the fit; default 1e-12 */
    double step_tolerance;        /* scaled step relative to the scaled parameters; default 1e-10 */
    double cost_decrease_tolerance; /* an accepted step that lowers the cost by less than this ends the fit, and so
                                   * does a point (after a step lowering it by less than 1000 times this) from which
                                   * the full Gauss-Newton step predicts less; default 0. For a likelihood (the cost
                                   * in log-likelihood units) 1e-6 is a parameter change of about
                                   * sqrt(2e-6) = 1.4e-3 of its standard uncertainty */
    double initial_damping;       /* relative to the largest scaled diagonal; default 1e-3 */
    const double *typical_step;   /* [p] fixed scaling of x, or NULL: Jacobian column norms (never decreasing) */
    int refuse_inseparable;       /* 1: refuse, before any step, parameters whose columns are linearly dependent at
                                   * the start (a model with a known degeneracy); 0 (default): only zero columns */
    void (*progress)(void *user, const db_lm_iteration *it);
    void *progress_user;
} db_lm_options;
void db_lm_default_options(db_lm_options *o);

typedef struct db_lm_result {
    double start_cost, cost;      /* the objective (half the deviance for POISSON) */
    int iterations, jacobian_evaluations, evaluations, stop_reason; /* stop_reason: db_stop_reason */
    long dof;                     /* n - p - ngroups*q (observations outside every group count) */
    /* goodness of fit at the optimum: deviance (2 cost), its expectation and standard deviation if the data
     * were drawn from the fitted model (POISSON: per observation from mu, less the parameters fitted; LSQ:
     * dof and sqrt(2 n), which assume weights = 1/variance), and Pearson's chi-square sum (obs - mu)^2 / var */
    double deviance, expected_deviance, deviance_sd, pearson_chi2;
    long bad_observation;         /* on an error about one observation (a mean <= 0, a derivative not finite): it */
    int bad_group;                /* on an error about one group (its local terms undetermined): it; else -1 */
} db_lm_result;

/* Fits x[p] and y[ngroups*q] (in: the start; out: the best values found). Each of sigma_x[p], cov_x[p*p]
 * (the covariance, [i*p + j]), sigma_y[ngroups*q] and mu_out[n] (the fitted mu, local terms included) may be
 * NULL. sigma < 0 marks a parameter the final normal matrix cannot determine. */
int db_lm_fit(const db_lm_problem *prob, const db_lm_options *opt, double *x, double *y, double *sigma_x,
              double *cov_x, double *sigma_y, double *mu_out, db_lm_result *res, db_error *err);

/* Mean and variance of the deviance term 2 (k ln(k/mu) - (k - mu)) of one count k ~ Poisson(mu). */
void db_poisson_deviance_moments(double mu, double *mean, double *variance);

#ifdef __cplusplus
}
#endif
#endif
