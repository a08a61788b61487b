/* refine_sim.c: db_refine, the simulator as one problem of the Levenberg-Marquardt driver (refine/lm.h). It reads
 * the simulation through the public API only: the selected pixels and boxes, parameter values, runs on the
 * selection. The background of each box is the driver's local terms (basis 1, x, y about the box's centre). */
#include "dualbragg.h"
#include "clock.h"
#include "error.h"
#include "lm.h"
#include "params.h" /* db_param_check_list */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAXP DB_REFINE_MAX_PARAMS

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
    if (!o) return;
    memset(o, 0, sizeof *o);
    o->max_iterations = 100;
    o->cost_tolerance = 1e-12;
    o->step_tolerance = 1e-10;
    /* 1e-2 of the scaled diagonal: at 1e-3 the first, nearly Gauss-Newton steps of a noise-free whole-image fit
     * (test_refine's carryover-off case) dim the model and end in a local minimum; at 1 a fit spends its first ten
     * steps bringing the damping down (the weak-still study: 19.6 trial steps at 1, 14.8 at 1e-2, the same
     * coverage) */
    o->initial_damping = 1e-2;
    o->weighting = DB_WEIGHTS_POISSON;
    o->objective = DB_OBJECTIVE_POISSON;
    o->background = DB_BACKGROUND_AUTO;
}

int db_refine_background_count(const db_sim *sim)
{
    if (!sim) return 0; /* the header: no simulation, no entries */
    int nb = db_sim_get_boxes(sim, NULL, 0);
    return nb > 0 ? nb : 1;
}

typedef struct adapter {
    db_sim *sim;
    const int *params;
    int n;
    int runs_with_derivatives, runs_without;
    /* the run with derivatives at the start, made before the fit to start the background from its model: the
     * driver's first linearisation at the same values takes it instead of running again */
    const double *first_x, *first_mu, *first_J;
    long m;
} adapter;

/* The driver's evaluate: a trial the geometry refuses (a cell that does not close) is infeasible, as is a primal
 * run that fails; a run with derivatives that fails stops the fit with its error. */
static int evaluate(void *user, const double *x, double *mu, double *J, db_error *err)
{
    adapter *a = (adapter *)user;
    db_error terr;
    if (J && a->first_x && memcmp(x, a->first_x, sizeof(double) * (size_t)a->n) == 0) {
        memcpy(mu, a->first_mu, sizeof(double) * (size_t)a->m);
        memcpy(J, a->first_J, sizeof(double) * (size_t)a->m * (size_t)a->n);
        a->first_x = NULL;
        return DB_OK;
    }
    if (db_sim_set_params(a->sim, a->params, x, a->n, J ? err : &terr)) return J ? err->code : DB_LM_INFEASIBLE;
    int rc = db_sim_run_selected(a->sim, a->params, J ? a->n : 0, mu, J, J ? err : &terr);
    if (J) a->runs_with_derivatives++;
    else a->runs_without++;
    if (rc) return J ? rc : DB_LM_INFEASIBLE;
    return DB_OK;
}

static void progress(void *user, const db_lm_iteration *it)
{
    const db_refine_options *o = (const db_refine_options *)user;
    db_refine_iteration r = {it->iteration, it->accepted, it->cost, it->damping, it->step, it->seconds};
    o->progress(o->progress_user, &r);
}

/* x and y of pixel (f, s) in the background plane of box b: pixels from the box's centre. */
static void plane_coordinates(const int *b, int f, int s, double *x, double *y)
{
    *x = f - 0.5 * (b[0] + b[1]);
    *y = s - 0.5 * (b[2] + b[3]);
}

double db_refine_background_at(const double *abc, const int *box, int fpixel, int spixel)
{
    if (!abc || !box) return NAN; /* the header: no background or no box */
    double x, y;
    plane_coordinates(box, fpixel, spixel, &x, &y);
    return abc[0] + abc[1] * x + abc[2] * y;
}

/* The background groups: each selected pixel belongs to the first box that holds it (boxes may overlap); boxes
 * with no pixel of their own get no group. Without boxes, one group: the selection, about its bounding box's
 * centre. Fills group[m], basis[m*q], the box of each entry and entry -> group (-1: none). */
static int make_groups(db_sim *sim, const long *pix, long m, int F, int q, int *group, double *basis, int *entry_box,
                       int *entry_group, int nentries, db_error *err)
{
    int nb = db_sim_get_boxes(sim, NULL, 0);
    int *boxes = NULL;
    if (nb > 0) {
        boxes = (int *)malloc((size_t)nb * 4 * sizeof(int));
        if (!boxes) return db_fail(err, DB_ERR_NOMEM, "refinement: out of memory for %d boxes", nb);
        db_sim_get_boxes(sim, boxes, nb);
        memcpy(entry_box, boxes, (size_t)nb * 4 * sizeof(int));
    } else {
        int x0 = F, x1 = -1, y0 = -1, y1 = -1;
        for (long i = 0; i < m; i++) {
            int f = (int)(pix[i] % F), s = (int)(pix[i] / F);
            if (f < x0) x0 = f;
            if (f > x1) x1 = f;
            if (y0 < 0) y0 = s;
            y1 = s;
        }
        entry_box[0] = x0, entry_box[1] = x1, entry_box[2] = y0, entry_box[3] = y1;
    }
    for (int e = 0; e < nentries; e++) entry_group[e] = -1;
    int ngroups = 0, last = 0;
    for (long i = 0; i < m; i++) {
        int f = (int)(pix[i] % F), s = (int)(pix[i] / F), e = 0;
        if (nb > 0) {
            const int *b = boxes + 4 * last; /* a box's row runs on: its pixels mostly follow one another */
            if (f >= b[0] && f <= b[1] && s >= b[2] && s <= b[3]) e = last;
            else
                for (e = 0; e < nb; e++) {
                    b = boxes + 4 * e;
                    if (f >= b[0] && f <= b[1] && s >= b[2] && s <= b[3]) break;
                }
            if (e < nb) last = e;
        }
        if (e >= nentries) { /* every selected pixel lies in some box; kept as a guard */
            group[i] = -1;
            continue;
        }
        if (entry_group[e] < 0) entry_group[e] = ngroups++;
        group[i] = entry_group[e];
        const int *b = entry_box + 4 * e;
        double *z = basis + (size_t)i * q;
        z[0] = 1.0;
        if (q == 3) plane_coordinates(b, f, s, &z[1], &z[2]);
    }
    free(boxes);
    return ngroups;
}

static int check_options(const db_refine_options *o, int nparams, const int *params, db_error *err)
{
    if (o->max_iterations < 1 || !(o->cost_tolerance >= 0) || !(o->step_tolerance >= 0) || !(o->initial_damping > 0) ||
        !isfinite(o->initial_damping) || (o->weighting != DB_WEIGHTS_POISSON && o->weighting != DB_WEIGHTS_UNIT))
        return db_fail(err, DB_ERR_ARGUMENT, "db_refine: bad options (max_iterations >= 1, tolerances >= 0, initial_damping > 0, "
                                             "weighting poisson or unit)");
    if (o->objective != DB_OBJECTIVE_POISSON && o->objective != DB_OBJECTIVE_LSQ)
        return db_fail(err, DB_ERR_ARGUMENT, "db_refine: objective must be poisson (%d) or lsq (%d), got %d", DB_OBJECTIVE_POISSON,
                       DB_OBJECTIVE_LSQ, o->objective);
    if (o->background < DB_BACKGROUND_AUTO || o->background > DB_BACKGROUND_PLANES)
        return db_fail(err, DB_ERR_ARGUMENT, "db_refine: background must be auto, none, constant or planes, got %d", o->background);
    if (!(o->readout_noise >= 0) || !(o->readout_noise <= 1e6))
        return db_fail(err, DB_ERR_ARGUMENT, "the readout noise must be a number from 0 to 1e6 (photons), got %g",
                       o->readout_noise);
    if (o->readout_noise > 0 && o->objective != DB_OBJECTIVE_POISSON)
        return db_fail(err, DB_ERR_ARGUMENT, "db_refine: the readout noise belongs to the Poisson objective (lsq takes weights)");
    if (o->typical_step)
        for (int j = 0; j < nparams; j++)
            if (!(o->typical_step[j] > 0) || !isfinite(o->typical_step[j]))
                return db_fail(err, DB_ERR_ARGUMENT, "db_refine: the typical step of %s must be a finite number > 0",
                               db_param_name(params[j]));
    return DB_OK;
}

/* The k-th smallest of a[0..n) (k from 0), by Hoare's selection: a is reordered so that a[0..k) <= a[k] <= a[k+1..n). */
static double kth_smallest(double *a, long n, long k)
{
    long lo = 0, hi = n - 1;
    while (lo < hi) {
        const double pivot = a[lo + (hi - lo) / 2];
        long i = lo, j = hi;
        while (i <= j) {
            while (a[i] < pivot) i++;
            while (a[j] > pivot) j--;
            if (i <= j) {
                double t = a[i];
                a[i++] = a[j];
                a[j--] = t;
            }
        }
        if (k <= j) hi = j;
        else if (k >= i) lo = i;
        else break;
    }
    return a[k];
}

/* A box's background from its k residuals observed - model (reordered in place): their mean within 3 standard
 * deviations of their median, the deviation of a count at the median plus the readout variance s2 (+1 so that an
 * empty box keeps a window). The median alone resists the spots the start misplaces, but a weak background's
 * median count is 0 (Poisson 0.5 photons: 61% of pixels hold none), and the Poisson fit then spends its first steps
 * doubling a mean near zero towards the counts (15 trial steps against 12 on the study's still with water); the
 * clipped mean keeps the median's resistance and the mean's level. */
static double start_background(double *resid, long k, double s2)
{
    if (k < 1) return 0.0;
    double med = kth_smallest(resid, k, k / 2);
    if (k % 2 == 0) { /* and the largest of the lower half, which the selection left below it */
        double below = resid[0];
        for (long i = 1; i < k / 2; i++) below = fmax(below, resid[i]);
        med = 0.5 * (below + med);
    }
    const double window = 3.0 * sqrt(fmax(med, 0.0) + s2 + 1.0);
    double sum = 0.0;
    long inside = 0;
    for (long i = 0; i < k; i++)
        if (fabs(resid[i] - med) <= window) {
            sum += resid[i];
            inside++;
        }
    return inside ? sum / (double)inside : med;
}

int db_refine(db_sim *sim, const int *params, int nparams, const double *observed, const double *weights,
              const db_refine_options *options, db_refine_result *result, db_error *err)
{
    db_error local_err; /* err may be NULL: the failures below read the code back from it */
    if (!err) err = &local_err;
    db_error_clear(err);
    db_refine_options defaults;
    db_refine_default_options(&defaults);
    const db_refine_options *o = options ? options : &defaults;
    if (!sim || !observed || !result) return db_fail(err, DB_ERR_ARGUMENT, "db_refine: no simulation, observed image or result");
    memset(result, 0, sizeof *result);
    if (nparams < 1 || nparams > MAXP || !params)
        return db_fail(err, DB_ERR_ARGUMENT, "db_refine: expected 1 to %d parameters, got %d", MAXP, nparams);
    int rc = db_param_check_list(params, nparams, err);
    if (rc || (rc = check_options(o, nparams, params, err))) return rc;
    const int poisson = o->objective == DB_OBJECTIVE_POISSON;
    if (poisson && weights)
        return db_fail(err, DB_ERR_ARGUMENT, "db_refine: weights belong to the lsq objective (the Poisson objective weighs "
                                             "each pixel by its model); pass NULL or set options->objective");
    const long m = db_sim_selected_count(sim);
    if (m == 0) return db_fail(err, DB_ERR_ARGUMENT, "refinement: no pixels are selected (check -roi, -mask and the boxes)");
    int F, S;
    db_sim_size(sim, &F, &S);
    int bg = o->background;
    if (bg == DB_BACKGROUND_AUTO) bg = db_sim_get_boxes(sim, NULL, 0) > 0 ? DB_BACKGROUND_PLANES : DB_BACKGROUND_NONE;
    const int q = bg == DB_BACKGROUND_PLANES ? 3 : bg == DB_BACKGROUND_CONSTANT ? 1 : 0;
    const int nentries = db_refine_background_count(sim);

    long *pix = (long *)malloc((size_t)m * sizeof(long));
    double *obs = (double *)malloc((size_t)m * sizeof(double)), *w = NULL;
    double *model = (double *)malloc((size_t)m * sizeof(double));
    int *group = NULL, *entry_box = NULL, *entry_group = NULL;
    double *basis = NULL, *y = NULL, *sy = NULL, *bounds = NULL, *first_J = NULL;
    if (!pix || !obs || !model) goto nomem;
    if (db_sim_selected_pixel_list(sim, pix, m, err) < 0) {
        rc = err->code;
        goto done;
    }
    const double s2 = poisson ? o->readout_noise * o->readout_noise : 0.0;
    for (long i = 0; i < m; i++) {
        double v = observed[pix[i]];
        if (!isfinite(v) || (poisson && v < 0.0 && s2 == 0.0)) {
            rc = db_fail(err, DB_ERR_ARGUMENT, "refinement: the observed value of pixel (fast %ld, slow %ld) is %g; %s", pix[i] % F, pix[i] / F,
                         v, isfinite(v) ? "a Poisson count cannot be negative (give the readout noise, or fit with the lsq objective)"
                                        : "observed values must be finite");
            goto done;
        }
        obs[i] = v;
    }
    if (!poisson) {
        w = (double *)malloc((size_t)m * sizeof(double));
        if (!w) goto nomem;
        for (long i = 0; i < m; i++) {
            double wi = weights ? weights[pix[i]]
                                : o->weighting == DB_WEIGHTS_UNIT ? 1.0 : 1.0 / (obs[i] > 1.0 ? obs[i] : 1.0);
            if (!(wi >= 0.0) || !isfinite(wi)) {
                rc = db_fail(err, DB_ERR_ARGUMENT, "refinement: the weight of pixel (fast %ld, slow %ld) is %g; weights must be finite and >= 0",
                             pix[i] % F, pix[i] / F, wi);
                goto done;
            }
            w[i] = wi;
        }
    }
    int ngroups = 0;
    if (q) {
        group = (int *)malloc((size_t)m * sizeof(int));
        basis = (double *)malloc((size_t)m * (size_t)q * sizeof(double));
        entry_box = (int *)malloc((size_t)nentries * 4 * sizeof(int));
        entry_group = (int *)malloc((size_t)nentries * sizeof(int));
        y = (double *)calloc((size_t)nentries * 3, sizeof(double));
        sy = (double *)calloc((size_t)nentries * 3, sizeof(double));
        if (!group || !basis || !entry_box || !entry_group || !y || !sy) goto nomem;
        if ((ngroups = make_groups(sim, pix, m, F, q, group, basis, entry_box, entry_group, nentries, err)) < 0) {
            rc = err->code;
            goto done;
        }
    }
    if (m <= nparams + (long)ngroups * q) {
        rc = db_fail(err, DB_ERR_ARGUMENT, "refinement: %ld selected pixels cannot determine %d parameters and %d background terms "
                     "(more pixels than parameters needed)", m, nparams, ngroups * q);
        goto done;
    }

    double x[MAXP], sx[MAXP], cov[MAXP * MAXP];
    if ((rc = db_sim_get_params(sim, params, x, nparams, err))) goto done;
    memcpy(result->start, x, sizeof(double) * (size_t)nparams);
    result->nparams = nparams;
    result->pixels = m;
    result->objective = o->objective;
    result->background = q == 3 ? DB_BACKGROUND_PLANES : q == 1 ? DB_BACKGROUND_CONSTANT : DB_BACKGROUND_NONE;
    result->nbackground = ngroups;
    const double t0 = db_now_seconds();
    adapter ad = {sim, params, nparams, 0, 0, NULL, NULL, NULL, m};
    double xstart[MAXP];
    memcpy(xstart, x, sizeof(double) * (size_t)nparams);
    if (q) {
        /* the background starts at a robust mean of observed - model over each box (start_background), kept above
         * zero so that the Poisson mean starts positive: the fit moves it wherever the counts say */
        if (!(first_J = (double *)malloc((size_t)m * (size_t)nparams * sizeof(double)))) goto nomem;
        if ((rc = db_sim_run_selected(sim, params, nparams, model, first_J, err))) goto done;
        ad.runs_with_derivatives++;
        ad.first_x = xstart;
        ad.first_mu = model;
        ad.first_J = first_J;
        /* the residuals box by box (a counting sort on the group) */
        double *resid = (double *)malloc((size_t)m * sizeof(double));
        long *first = (long *)calloc((size_t)ngroups + 1, sizeof(long));
        if (!resid || !first) {
            free(resid);
            free(first);
            goto nomem;
        }
        for (long i = 0; i < m; i++)
            if (group[i] >= 0) first[group[i] + 1]++;
        for (int g = 0; g < ngroups; g++) first[g + 1] += first[g];
        for (long i = 0; i < m; i++)
            if (group[i] >= 0) resid[first[group[i]]++] = obs[i] - model[i];
        for (int g = 0; g < ngroups; g++) { /* first[g] now ends group g */
            const long start = g ? first[g - 1] : 0;
            y[g * q] = start_background(resid + start, first[g] - start, s2);
            if (poisson && y[g * q] < 1e-3) y[g * q] = 1e-3;
        }
        free(resid);
        free(first);
    }
    /* Poisson: each box's background is kept >= 0 at the corners of its box (so >= 0 on all of it), where real
     * backgrounds are; with a Bragg model >= 0 the mean then stays >= 0 without the fit crawling along mu = 0
     * when the background of an image without one is fitted (its estimate sits at the bound, 0) */
    int nbounds = 0;
    if (q && poisson) {
        nbounds = q == 3 ? 4 : 1;
        bounds = (double *)malloc((size_t)ngroups * (size_t)nbounds * (size_t)q * sizeof(double));
        if (!bounds) goto nomem;
        for (int e = 0; e < nentries; e++) {
            int g = entry_group[e];
            if (g < 0) continue;
            const int *b = entry_box + 4 * e;
            double hx = 0.5 * (b[1] - b[0]), hy = 0.5 * (b[3] - b[2]);
            for (int c = 0; c < nbounds; c++) {
                double *row = bounds + ((size_t)g * nbounds + c) * q;
                row[0] = 1.0;
                if (q == 3) {
                    row[1] = c & 1 ? hx : -hx;
                    row[2] = c & 2 ? hy : -hy;
                }
            }
        }
    }
    const char *names[MAXP];
    for (int j = 0; j < nparams; j++) names[j] = db_param_name(params[j]);
    db_lm_problem P = {m, nparams, evaluate, &ad, obs, poisson ? DB_LM_POISSON : DB_LM_LSQ, w, s2, ngroups, q, group,
                       basis, names, nbounds, bounds};
    db_lm_options lo;
    db_lm_default_options(&lo);
    lo.max_iterations = o->max_iterations;
    lo.cost_tolerance = o->cost_tolerance;
    lo.step_tolerance = o->step_tolerance;
    lo.initial_damping = o->initial_damping;
    lo.typical_step = o->typical_step;
    lo.refuse_inseparable = 1;
    if (poisson) lo.cost_decrease_tolerance = DB_LM_POISSON_COST_DECREASE;
    if (o->progress) {
        lo.progress = progress;
        lo.progress_user = (void *)o;
    }
    db_lm_result lr;
    rc = db_lm_fit(&P, &lo, x, y, sx, cov, sy, NULL, &lr, err);
    if (rc && lr.bad_observation >= 0) { /* say which pixel, not which observation */
        long i = lr.bad_observation;
        char msg[sizeof err->message + 200];
        snprintf(msg, sizeof msg, "%s (pixel fast %ld, slow %ld, observed %g)%s", err->message, pix[i] % F, pix[i] / F, obs[i],
                 poisson && !q ? "; fit a background (-background constant or planes)" : "");
        msg[sizeof err->message - 1] = 0;
        memcpy(err->message, msg, sizeof err->message);
    }
    if (rc && lr.bad_group >= 0) { /* say which box */
        int e = 0;
        while (e < nentries && entry_group[e] != lr.bad_group) e++;
        const int *b = entry_box + 4 * (e < nentries ? e : 0);
        db_fail(err, DB_ERR_ARGUMENT, "refinement: the background %s of box [%d-%d, %d-%d] cannot be determined by its "
                "pixels (too few of them, or all on one line or column: a box clipped at the detector's edge, or "
                "masked); use -background constant (background=\"constant\"), or other boxes",
                q == 3 ? "plane" : "constant", b[0], b[1], b[2], b[3]);
    }
    if (rc == DB_ERR_ARGUMENT && strstr(err->message, "cannot separate")) {
        size_t l = strlen(err->message);
        snprintf(err->message + l, sizeof err->message - l, " (for example phi0 and misset_z rotate about the same axis "
                 "when the spindle is z, as in the MOSFLM convention)");
    }
    if (rc) goto done;
    /* the simulation holds the fitted values (the last run may have been a rejected trial) */
    if ((rc = db_sim_set_params(sim, params, x, nparams, err))) goto done;
    memcpy(result->values, x, sizeof(double) * (size_t)nparams);
    result->start_cost = lr.start_cost;
    result->cost = lr.cost;
    result->dof = lr.dof;
    result->reduced_chi2 = lr.dof > 0 ? lr.pearson_chi2 / (double)lr.dof : NAN;
    for (int j = 0; j < nparams; j++) {
        result->sigma[j] = sx[j];
        result->sigma_scaled[j] = sx[j] >= 0 && lr.dof > 0 ? sx[j] * sqrt(result->reduced_chi2) : -1.0;
        for (int i = 0; i < nparams; i++) {
            double c = cov[i * nparams + j], d = cov[i * nparams + i] * cov[j * nparams + j];
            result->correlation[i * nparams + j] = sx[i] >= 0 && sx[j] >= 0 && d > 0 ? c / sqrt(d) : (i == j ? 1.0 : 0.0);
        }
    }
    result->deviance = lr.deviance;
    result->deviance_per_dof = lr.dof > 0 ? lr.deviance / (double)lr.dof : NAN;
    result->expected_deviance_per_dof = lr.dof > 0 ? lr.expected_deviance / (double)lr.dof : NAN;
    result->deviance_z = lr.deviance_sd > 0 ? (lr.deviance - lr.expected_deviance) / lr.deviance_sd : 0.0;
    result->poor_fit = poisson && result->deviance_z > DB_POOR_FIT_Z;
    result->iterations = lr.iterations;
    result->derivative_runs = ad.runs_with_derivatives;
    result->primal_runs = ad.runs_without;
    result->stop_reason = lr.stop_reason;
    for (int e = 0; e < nentries; e++) {
        int g = q ? entry_group[e] : -1;
        for (int k = 0; k < 3; k++) {
            double v = g < 0 ? NAN : k < q ? y[g * q + k] : 0.0, sv = g < 0 ? NAN : k < q ? sy[g * q + k] : 0.0;
            if (q == 0) v = sv = NAN;
            if (o->background_values) o->background_values[3 * e + k] = v;
            if (o->background_sigma) o->background_sigma[3 * e + k] = sv;
        }
        if (o->background_boxes) {
            if (q) memcpy(o->background_boxes + 4 * e, entry_box + 4 * e, 4 * sizeof(int));
            else memset(o->background_boxes + 4 * e, 0, 4 * sizeof(int));
        }
    }
    result->seconds = db_now_seconds() - t0;
    rc = DB_OK;
    goto done;
nomem:
    rc = db_fail(err, DB_ERR_NOMEM, "refinement: out of memory for %ld pixels x %d parameters", m, nparams);
done:
    free(pix);
    free(obs);
    free(w);
    free(model);
    free(group);
    free(basis);
    free(entry_box);
    free(entry_group);
    free(y);
    free(sy);
    free(bounds);
    free(first_J);
    return rc;
}
