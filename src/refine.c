/* refine.c: Levenberg-Marquardt over the selected pixels (include/dualbragg.h, "refinement"). The model and its
 * exact Jacobian come from db_sim_run_selected; the normal equations from OpenBLAS (dsyrk, dgemv), the damped
 * solve and the inverse for the uncertainties from LAPACK (dpotrf, dpotrs, dpotri), the separability check from
 * the eigenvalues of the normalised normal matrix (dsyev). Damping update as in Nielsen (1999): the step is
 * judged by the ratio of the actual to the predicted cost reduction. */
#include "sim.h"
#include "error.h"
#include "observed.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAXP DB_REFINE_MAX_PARAMS

/* Columns whose normalised normal matrix has an eigenvalue below this are linearly dependent for the fit: the
 * uncertainty of their combination is 1e5 times that of a well-determined parameter, and a solve in double loses
 * ten of its sixteen digits; identical columns (phi0 and misset_z about one axis) give about 1e-16. */
#define DB_SEPARABLE_EIGENVALUE 1e-10
/* Beyond this damping (relative to the scaled diagonal) a step is shorter than any rounding of the parameters. */
#define DB_MAX_DAMPING 1e32

const char *db_stop_reason_text(int reason)
{
    switch (reason) {
    case DB_STOP_COST: return "relative cost change below tolerance";
    case DB_STOP_STEP: return "relative step below tolerance";
    case DB_STOP_MAXITER: return "maximum number of iterations reached";
    case DB_STOP_EXACT: return "exact fit (cost 0)";
    case DB_STOP_NO_PROGRESS: return "no step reduces the cost (the best parameters found are kept)";
    }
    return "not run";
}

void db_refine_default_options(db_refine_options *o)
{
    memset(o, 0, sizeof *o);
    o->max_iterations = 100;
    o->cost_tolerance = 1e-12;
    o->step_tolerance = 1e-10;
    o->initial_damping = 1.0;
    o->weighting = DB_WEIGHTS_POISSON;
}

static double now_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

typedef struct fit {
    db_sim *sim;
    const int *params;
    int n;
    long m;
    double *obs, *sw;         /* observed photons and sqrt(weight) of each selected pixel */
    double *model, *J, *r;    /* model [m], weighted Jacobian [n*m] column-major, weighted residual [m] */
    double A[MAXP * MAXP], g[MAXP]; /* J^T J (both triangles), J^T r */
    double cost;
    int derivative_runs, primal_runs;
} fit;

static double half_sum_squares(const fit *f, const double *model)
{
    double c = 0.0;
    for (long i = 0; i < f->m; i++) {
        double ri = f->sw[i] * (model[i] - f->obs[i]);
        c += ri * ri;
    }
    return 0.5 * c;
}

/* The model, Jacobian, normal matrix and gradient at the simulation's current values. */
static int evaluate_with_jacobian(fit *f, db_error *err)
{
    const long m = f->m;
    const int n = f->n;
    int rc = db_sim_run_selected(f->sim, f->params, n, f->model, f->J, err);
    f->derivative_runs++;
    if (rc) return rc;
    for (long i = 0; i < m; i++) {
        f->r[i] = f->sw[i] * (f->model[i] - f->obs[i]);
        if (!isfinite(f->r[i]))
            return db_fail(err, DB_ERR_GEOMETRY, "refinement: the model is not finite at selected pixel %ld", i);
    }
    for (int j = 0; j < n; j++) {
        double *col = f->J + (size_t)j * (size_t)m;
        for (long i = 0; i < m; i++) {
            col[i] *= f->sw[i];
            if (!isfinite(col[i]))
                return db_fail(err, DB_ERR_GEOMETRY, "refinement: the derivative with respect to %s is not finite at selected pixel %ld",
                               db_param_name(f->params[j]), i);
        }
    }
    f->cost = half_sum_squares(f, f->model);
    cblas_dsyrk(CblasColMajor, CblasUpper, CblasTrans, n, (int)m, 1.0, f->J, (int)m, 0.0, f->A, n);
    for (int j = 0; j < n; j++)
        for (int i = j + 1; i < n; i++) f->A[j * n + i] = f->A[i * n + j]; /* lower from upper (column-major) */
    cblas_dgemv(CblasColMajor, CblasTrans, (int)m, n, 1.0, f->J, (int)m, f->r, 1, 0.0, f->g, 1);
    return DB_OK;
}

/* Refuses, by name, parameters the chosen pixels cannot determine, before any step is taken. */
static int check_separable(const fit *f, db_error *err)
{
    const int n = f->n;
    for (int j = 0; j < n; j++)
        if (!(f->A[j * n + j] > 0.0))
            return db_fail(err, DB_ERR_ARGUMENT,
                           "refinement: %s has no effect on the chosen pixels (its Jacobian column is zero there); "
                           "fix it or choose other pixels", db_param_name(f->params[j]));
    if (n < 2) return DB_OK;
    double C[MAXP * MAXP], w[MAXP];
    for (int j = 0; j < n; j++)
        for (int i = 0; i < n; i++) C[j * n + i] = f->A[j * n + i] / sqrt(f->A[i * n + i] * f->A[j * n + j]);
    if (LAPACKE_dsyev(LAPACK_COL_MAJOR, 'V', 'U', n, C, n, w) != 0)
        return db_fail(err, DB_ERR_INTERNAL, "refinement: the eigenvalues of the normal matrix did not converge");
    if (w[0] >= DB_SEPARABLE_EIGENVALUE) return DB_OK;
    /* the eigenvector of the smallest eigenvalue (column 0) says which parameters move together */
    char names[600] = "", combo[800] = "";
    int order[MAXP], k = 0;
    for (int j = 0; j < n; j++)
        if (fabs(C[j]) >= 0.05) order[k++] = j;
    for (int a = 1; a < k; a++) /* largest share first */
        for (int b = a; b > 0 && fabs(C[order[b]]) > fabs(C[order[b - 1]]); b--) {
            int t = order[b];
            order[b] = order[b - 1];
            order[b - 1] = t;
        }
    for (int a = 0; a < k; a++) {
        const char *nm = db_param_name(f->params[order[a]]);
        size_t l = strlen(names);
        snprintf(names + l, sizeof names - l, "%s%s", a == 0 ? "" : (a == k - 1 ? " and " : ", "), nm);
        l = strlen(combo);
        snprintf(combo + l, sizeof combo - l, " %+.3f %s", C[order[a]], nm);
    }
    return db_fail(err, DB_ERR_ARGUMENT,
                   "refinement: the chosen pixels cannot separate %s: their Jacobian columns are linearly dependent "
                   "(smallest eigenvalue %.2g of the normalised normal matrix, combination%s); fix one of them "
                   "(for example phi0 and misset_z rotate about the same axis when the spindle is z, as in the "
                   "MOSFLM convention)", names, w[0], combo);
}

/* Solves (A + lambda diag(D^2)) delta = -g; 0 when the damped matrix is not positive definite. */
static int damped_step(const fit *f, const double *D, double lambda, double *delta)
{
    const int n = f->n;
    double M[MAXP * MAXP];
    memcpy(M, f->A, sizeof(double) * (size_t)n * (size_t)n);
    for (int j = 0; j < n; j++) {
        M[j * n + j] += lambda * D[j] * D[j];
        delta[j] = -f->g[j];
    }
    if (LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'U', n, M, n) != 0) return 0;
    if (LAPACKE_dpotrs(LAPACK_COL_MAJOR, 'U', n, 1, M, n, delta, n) != 0) return 0;
    for (int j = 0; j < n; j++)
        if (!isfinite(delta[j])) return 0;
    return 1;
}

static double scaled_norm(const double *D, const double *x, int n)
{
    double s = 0.0;
    for (int j = 0; j < n; j++) s += (D[j] * x[j]) * (D[j] * x[j]);
    return sqrt(s);
}

/* Standard uncertainties and correlations from the inverse of the normal matrix at the fitted values. The matrix
 * is inverted with unit diagonal (scaled by its column norms) so that parameters of very different units (fluence
 * against degrees) do not limit the inversion's precision. sigma = -1 when it is singular. */
static void uncertainties(const fit *f, db_refine_result *res)
{
    const int n = f->n;
    double S[MAXP * MAXP], d[MAXP];
    for (int j = 0; j < n; j++) d[j] = sqrt(f->A[j * n + j]);
    for (int j = 0; j < n; j++)
        for (int i = 0; i < n; i++) S[j * n + i] = f->A[j * n + i] / (d[i] * d[j]);
    int ok = LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'U', n, S, n) == 0 && LAPACKE_dpotri(LAPACK_COL_MAJOR, 'U', n, S, n) == 0;
    for (int j = 0; j < n; j++)
        for (int i = j + 1; i < n; i++) S[j * n + i] = S[i * n + j];
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            double c = ok ? S[j * n + i] / sqrt(S[i * n + i] * S[j * n + j]) : (i == j ? 1.0 : 0.0);
            res->correlation[i * n + j] = c;
        }
    for (int j = 0; j < n; j++)
        res->sigma[j] = ok && S[j * n + j] >= 0.0 ? sqrt(res->reduced_chi2 * S[j * n + j]) / d[j] : -1.0;
}

static void fit_free(fit *f)
{
    free(f->obs);
    free(f->sw);
    free(f->model);
    free(f->J);
    free(f->r);
}

int db_refine(db_sim *sim, const int *params, int nparams, const double *observed, const double *weights,
              const db_refine_options *options, db_refine_result *result, db_error *err)
{
    db_error_clear(err);
    db_refine_options defaults;
    db_refine_default_options(&defaults);
    const db_refine_options *o = options ? options : &defaults;
    if (!sim || !observed || !result) return db_fail(err, DB_ERR_ARGUMENT, "db_refine: no simulation, observed image or result");
    memset(result, 0, sizeof *result);
    if (nparams < 1 || nparams > MAXP || !params)
        return db_fail(err, DB_ERR_ARGUMENT, "db_refine: expected 1 to %d parameters, got %d", MAXP, nparams);
    int rc = db_param_check_list(params, nparams, err);
    if (rc) return rc;
    if (o->max_iterations < 1 || !(o->cost_tolerance >= 0) || !(o->step_tolerance >= 0) || !(o->initial_damping > 0) ||
        !isfinite(o->initial_damping) || (o->weighting != DB_WEIGHTS_POISSON && o->weighting != DB_WEIGHTS_UNIT))
        return db_fail(err, DB_ERR_ARGUMENT, "db_refine: bad options (max_iterations >= 1, tolerances >= 0, initial_damping > 0, "
                                             "weighting poisson or unit)");
    if (o->typical_step)
        for (int j = 0; j < nparams; j++)
            if (!(o->typical_step[j] > 0) || !isfinite(o->typical_step[j]))
                return db_fail(err, DB_ERR_ARGUMENT, "db_refine: the typical step of %s must be a finite number > 0",
                               db_param_name(params[j]));
    if ((rc = db_sim_selection(sim, err))) return rc;
    const long m = sim->count;
    if (m == 0) return db_fail(err, DB_ERR_ARGUMENT, "refinement: no pixels are selected (check -roi, -mask and the boxes)");
    if (m <= nparams)
        return db_fail(err, DB_ERR_ARGUMENT, "refinement: %ld selected pixels cannot determine %d parameters (more pixels than parameters needed)",
                       m, nparams);
    const int F = sim->plan.fpixels;

    fit f;
    memset(&f, 0, sizeof f);
    f.sim = sim;
    f.params = params;
    f.n = nparams;
    f.m = m;
    long *pix = (long *)malloc((size_t)m * sizeof(long));
    f.obs = (double *)malloc((size_t)m * sizeof(double));
    f.sw = (double *)malloc((size_t)m * sizeof(double));
    f.model = (double *)malloc((size_t)m * sizeof(double));
    f.r = (double *)malloc((size_t)m * sizeof(double));
    f.J = (double *)malloc((size_t)m * (size_t)nparams * sizeof(double));
    double *trial = (double *)malloc((size_t)m * sizeof(double));
    if (!pix || !f.obs || !f.sw || !f.model || !f.r || !f.J || !trial) {
        rc = db_fail(err, DB_ERR_NOMEM, "refinement: out of memory for %ld pixels x %d parameters", m, nparams);
        goto done;
    }
    db_sim_selected_pixels(sim, pix);
    if ((rc = db_observed_check("the observed image", observed, F, pix, m, err))) goto done;
    for (long i = 0; i < m; i++) {
        double w;
        f.obs[i] = observed[pix[i]];
        if (weights) {
            w = weights[pix[i]];
            if (!(w >= 0.0) || !isfinite(w)) {
                rc = db_fail(err, DB_ERR_ARGUMENT, "refinement: the weight of pixel (%ld, %ld) is %g; weights must be finite and >= 0",
                             pix[i] % F, pix[i] / F, w);
                goto done;
            }
        } else {
            w = o->weighting == DB_WEIGHTS_UNIT ? 1.0 : 1.0 / (f.obs[i] > 1.0 ? f.obs[i] : 1.0);
        }
        f.sw[i] = sqrt(w);
    }

    double p[MAXP], D[MAXP], delta[MAXP], ptrial[MAXP];
    if ((rc = db_sim_get_params(sim, params, p, nparams, err))) goto done;
    memcpy(result->start, p, sizeof(double) * (size_t)nparams);
    result->nparams = nparams;
    result->pixels = m;
    const double t0 = now_seconds();
    if ((rc = evaluate_with_jacobian(&f, err))) goto done;
    if ((rc = check_separable(&f, err))) goto done;
    result->start_cost = f.cost;
    for (int j = 0; j < nparams; j++) D[j] = o->typical_step ? 1.0 / o->typical_step[j] : sqrt(f.A[j * nparams + j]);
    double lambda = 0.0;
    for (int j = 0; j < nparams; j++) {
        double s = f.A[j * nparams + j] / (D[j] * D[j]);
        if (s > lambda) lambda = s;
    }
    lambda *= o->initial_damping;
    double nu = 2.0;
    int stop = 0, it = 0;
    if (f.cost == 0.0) stop = DB_STOP_EXACT;
    while (!stop) {
        if (it >= o->max_iterations) {
            stop = DB_STOP_MAXITER;
            break;
        }
        if (lambda > DB_MAX_DAMPING) {
            stop = DB_STOP_NO_PROGRESS;
            break;
        }
        if (!damped_step(&f, D, lambda, delta)) { /* not positive definite: more damping */
            lambda *= nu;
            nu *= 2.0;
            continue;
        }
        it++;
        double step = scaled_norm(D, delta, nparams), pnorm = scaled_norm(D, p, nparams);
        double rel_step = pnorm > 0.0 ? step / pnorm : step;
        /* a step this small ends the fit, but it is still taken when it lowers the cost: it is the last quadratic
         * step of a converging fit, and without it parameters whose values are small beside the others' (phi0 =
         * 0.05 beside a = 70) would stop short by the step's size; the normal matrix stays the last one computed,
         * a relative step_tolerance away */
        const int last = step <= o->step_tolerance * (pnorm + o->step_tolerance);
        for (int j = 0; j < nparams; j++) ptrial[j] = p[j] + delta[j];
        double trial_cost = INFINITY;
        db_error terr;
        /* a trial the geometry refuses (a cell that does not close) or whose model is not finite is a bad step */
        if (db_sim_set_params(sim, params, ptrial, nparams, &terr) == DB_OK) {
            f.primal_runs++;
            if (db_sim_run_selected(sim, params, 0, trial, NULL, &terr) == DB_OK) {
                double c = half_sum_squares(&f, trial);
                if (isfinite(c)) trial_cost = c;
            }
        }
        double gd = 0.0, dd = 0.0;
        for (int j = 0; j < nparams; j++) {
            gd += f.g[j] * delta[j];
            dd += D[j] * D[j] * delta[j] * delta[j];
        }
        double predicted = 0.5 * (lambda * dd - gd); /* L(0) - L(delta) of the damped linear model, > 0 */
        double rho = predicted > 0.0 ? (f.cost - trial_cost) / predicted : -1.0;
        db_refine_iteration rep = {it, 0, f.cost, lambda, rel_step, 0.0};
        if (last) {
            stop = DB_STOP_STEP;
            if (trial_cost < f.cost) {
                memcpy(p, ptrial, sizeof(double) * (size_t)nparams);
                f.cost = trial_cost;
                memcpy(f.model, trial, sizeof(double) * (size_t)m);
            } else if ((rc = db_sim_set_params(sim, params, p, nparams, err))) {
                goto done;
            }
            break;
        }
        if (trial_cost < f.cost && rho > 0.0) {
            double old_cost = f.cost;
            memcpy(p, ptrial, sizeof(double) * (size_t)nparams);
            if ((rc = evaluate_with_jacobian(&f, err))) goto done;
            double t = 2.0 * rho - 1.0;
            double shrink = 1.0 - t * t * t;
            lambda *= shrink > 1.0 / 3.0 ? shrink : 1.0 / 3.0;
            nu = 2.0;
            if (!o->typical_step)
                for (int j = 0; j < nparams; j++) {
                    double dj = sqrt(f.A[j * nparams + j]);
                    if (dj > D[j]) D[j] = dj;
                }
            rep.accepted = 1;
            rep.cost = f.cost;
            if (f.cost == 0.0) stop = DB_STOP_EXACT;
            else if (old_cost - f.cost <= o->cost_tolerance * old_cost) stop = DB_STOP_COST;
        } else {
            if ((rc = db_sim_set_params(sim, params, p, nparams, err))) goto done; /* back to the best values */
            lambda *= nu;
            nu *= 2.0;
        }
        rep.seconds = now_seconds() - t0;
        if (o->progress) o->progress(o->progress_user, &rep);
    }
    /* the simulation holds p (its last derivative run was at p, or a step below step_tolerance before it) */
    memcpy(result->values, p, sizeof(double) * (size_t)nparams);
    result->cost = f.cost;
    result->reduced_chi2 = 2.0 * f.cost / (double)(m - nparams);
    result->iterations = it;
    result->derivative_runs = f.derivative_runs;
    result->primal_runs = f.primal_runs;
    result->stop_reason = stop;
    uncertainties(&f, result);
    result->seconds = now_seconds() - t0;
    rc = DB_OK;
done:
    free(pix);
    free(trial);
    fit_free(&f);
    return rc;
}
