/* lm.c: the Levenberg-Marquardt driver of refine/lm.h. The normal matrix of the global parameters from OpenBLAS
 * (dsyrk), the damped solve and the covariance from LAPACK (dpotrf, dpotrs, dpotri), the separability check from
 * the eigenvalues of the normalised normal matrix (dsyev); the local blocks (q <= 3) are solved by hand. */
#include "lm.h"
#include "clock.h"
#include "error.h"
#include "objective.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAXP DB_LM_MAX_PARAMS
#define MAXQ DB_LM_MAX_LOCAL
/* Columns whose normalised normal matrix has an eigenvalue below this are linearly dependent for the fit: the
 * uncertainty of their combination is 1e5 times that of a well-determined parameter, and a solve in double loses
 * ten of its sixteen digits; identical columns (phi0 and misset_z about one axis) give about 1e-16. */
#define SEPARABLE_EIGENVALUE 1e-10
/* A parameter whose change by its own size (at least 1) moves the model by less than this fraction of the model's
 * norm has no effect: below the rounding of a float image (6e-8), an effect the data cannot hold. */
#define NO_EFFECT 1e-9

void db_lm_default_options(db_lm_options *o)
{
    memset(o, 0, sizeof *o);
    o->max_iterations = 100;
    o->cost_tolerance = 1e-12;
    o->step_tolerance = 1e-10;
    o->initial_damping = 1e-3;
}

typedef struct lm {
    const db_lm_problem *P;
    long n;
    int p, G, q;
    double *model, *trial_model, *mu; /* [n] model at x, at the trial x, model + local terms */
    double *J, *sqf;                  /* [n*p] Jacobian scaled by sqrt(weight), [n] sqrt(weight) */
    double *fisher;                   /* [n] Fisher weights (the weights above are the steps' curvature) */
    double *zs;                       /* [q*n] sqrt(weight) x basis, column by column */
    long *run_start, *run_end, nruns; /* runs of consecutive observations of one group: [start, end) */
    int *run_group;                   /* [nruns] their group */
    double *B, *C, *gy;               /* per group: B [p*q] (j*q + k), C [q*q], gradient [q] */
    double *W, *v;                    /* per group: K B^T [q*p] (k*p + j), K gy - k0 [q] (see reduce) */
    int *nact;                        /* per group: bounds active in this step */
    int *changed;                     /* per group: its bounds changed in this round of the active-set method */
    double *L, *K0;                   /* per group: the damped block's Cholesky factor and inverse [q*q] */
    double *act, *act_rhs;            /* per group: their rows [MAXQ*MAXQ] and right-hand sides [MAXQ] */
    const double *y;                  /* the present local terms (for the bounds) */
    double A[MAXP * MAXP], g[MAXP];   /* global normal matrix (both triangles, column-major) and gradient */
    double column_norm[MAXP], model_norm; /* |J_j| and |model| unweighted, at the first linearisation */
    double cost;
    int evaluations, jacobian_evaluations;
} lm;

static const char *pname(const db_lm_problem *P, int j, char *buf, size_t size)
{
    if (P->names && P->names[j]) return P->names[j];
    snprintf(buf, size, "x[%d]", j);
    return buf;
}

/* mu = model + local terms at y */
static void add_local(const lm *s, const double *model, const double *y, double *mu)
{
    const db_lm_problem *P = s->P;
    for (long i = 0; i < s->n; i++) {
        double v = model[i];
        int g = s->G ? P->group[i] : -1;
        if (g >= 0)
            for (int k = 0; k < s->q; k++) v += P->basis[i * s->q + k] * y[g * s->q + k];
        mu[i] = v;
    }
}

static double scale_of(const db_lm_problem *P, long i)
{
    if (P->objective == DB_LM_POISSON) return P->variance_offset;
    return P->weights ? P->weights[i] : 1.0;
}

/* The objective at mu; infinity when mu is outside its domain (and *bad = the first such observation). */
static double objective(const lm *s, const double *mu, long *bad)
{
    const db_lm_problem *P = s->P;
    double c = 0.0;
    for (long i = 0; i < s->n; i++) {
        db_term t;
        if (!db_term_eval(P->objective, P->obs[i], mu[i], scale_of(P, i), &t)) {
            if (bad) *bad = i;
            return INFINITY;
        }
        c += t.cost;
    }
    return isfinite(c) ? c : INFINITY;
}

static void normal_matrices(lm *s);

/* The model, Jacobian, normal matrices and gradients at (x, y). */
static int linearise(lm *s, const double *x, const double *y, long *bad, db_error *err)
{
    const db_lm_problem *P = s->P;
    const long n = s->n;
    const int p = s->p, q = s->q, G = s->G;
    int rc = P->evaluate(P->user, x, s->model, p ? s->J : NULL, err);
    s->evaluations++;
    s->jacobian_evaluations++;
    if (rc == DB_LM_INFEASIBLE)
        return db_fail(err, DB_ERR_ARGUMENT, "refinement: the model refuses the parameters it was linearised at");
    if (rc) return rc;
    add_local(s, s->model, y, s->mu);
    double *e = s->trial_model; /* scratch: d cost / d mu */
    s->cost = 0.0;
    for (long i = 0; i < n; i++) {
        db_term t;
        if (!db_term_eval(P->objective, P->obs[i], s->mu[i], scale_of(P, i), &t)) {
            *bad = i;
            return db_fail(err, DB_ERR_ARGUMENT, "refinement: the model is %g at observation %ld: the Poisson likelihood "
                                                 "needs a positive mean everywhere", s->mu[i], i);
        }
        s->cost += t.cost;
        e[i] = t.grad;
        s->sqf[i] = sqrt(t.curvature);
        s->fisher[i] = t.fisher;
    }
    const int first = s->jacobian_evaluations == 1;
    if (first) {
        double m2 = 0.0;
        for (long i = 0; i < n; i++) m2 += s->model[i] * s->model[i];
        s->model_norm = sqrt(m2);
    }
    for (int j = 0; j < p; j++) {
        double *col = s->J + (size_t)j * (size_t)n, gj = 0.0;
        if (first) {
            double c2 = 0.0;
            for (long i = 0; i < n; i++) c2 += col[i] * col[i];
            s->column_norm[j] = sqrt(c2);
        }
        for (long i = 0; i < n; i++) {
            if (!isfinite(col[i])) {
                char b[32];
                *bad = i;
                return db_fail(err, DB_ERR_GEOMETRY, "refinement: the derivative with respect to %s is not finite at observation %ld",
                               pname(P, j, b, sizeof b), i);
            }
            gj += col[i] * e[i];
            col[i] *= s->sqf[i];
        }
        s->g[j] = gj;
    }
    if (G) {
        memset(s->gy, 0, sizeof(double) * (size_t)G * (size_t)q);
        for (long i = 0; i < n; i++)
            if (P->group[i] >= 0)
                for (int k = 0; k < q; k++) s->gy[P->group[i] * q + k] += P->basis[i * q + k] * e[i];
    }
    normal_matrices(s);
    return DB_OK;
}

/* The normal matrices of the scaled Jacobian s->J (rows scaled by s->sqf): A = J^T W J, and per group
 * B = J^T W Z, C = Z^T W Z. */
static void normal_matrices(lm *s)
{
    const db_lm_problem *P = s->P;
    const long n = s->n;
    const int p = s->p, q = s->q, G = s->G;
    if (p) {
        cblas_dsyrk(CblasColMajor, CblasUpper, CblasTrans, p, (int)n, 1.0, s->J, (int)n, 0.0, s->A, p);
        for (int j = 0; j < p; j++)
            for (int i = j + 1; i < p; i++) s->A[j * p + i] = s->A[i * p + j]; /* lower from upper */
    }
    if (G) {
        /* over runs of consecutive observations of one group (a box's rows), with zs = sqrt(weight) basis held
         * column by column: B_g = J_s^T zs and C_g = zs^T zs as contiguous dot products */
        memset(s->B, 0, sizeof(double) * (size_t)G * (size_t)p * (size_t)q);
        memset(s->C, 0, sizeof(double) * (size_t)G * (size_t)q * (size_t)q);
        for (long i = 0; i < n; i++)
            for (int k = 0; k < q; k++) s->zs[(size_t)k * (size_t)n + (size_t)i] = s->sqf[i] * P->basis[i * q + k];
        for (long r = 0; r < s->nruns; r++) {
            const long i0 = s->run_start[r], len = s->run_end[r] - i0;
            const int g = s->run_group[r];
            const double *z[MAXQ];
            for (int k = 0; k < q; k++) z[k] = s->zs + (size_t)k * (size_t)n + (size_t)i0;
            for (int k = 0; k < q; k++)
                for (int l = 0; l <= k; l++) {
                    double v = 0.0;
                    for (long i = 0; i < len; i++) v += z[k][i] * z[l][i];
                    s->C[(g * q + k) * q + l] += v;
                    if (l != k) s->C[(g * q + l) * q + k] += v;
                }
            /* each Jacobian column read once for all q basis columns (runs are short: a box's row) */
            double *B = s->B + (size_t)g * p * q;
            if (q == 3) {
                for (int j = 0; j < p; j++) {
                    const double *col = s->J + (size_t)j * (size_t)n + (size_t)i0;
                    double v0 = 0.0, v1 = 0.0, v2 = 0.0;
                    for (long i = 0; i < len; i++) {
                        v0 += col[i] * z[0][i];
                        v1 += col[i] * z[1][i];
                        v2 += col[i] * z[2][i];
                    }
                    B[j * 3] += v0;
                    B[j * 3 + 1] += v1;
                    B[j * 3 + 2] += v2;
                }
            } else {
                for (int j = 0; j < p; j++) {
                    const double *col = s->J + (size_t)j * (size_t)n + (size_t)i0;
                    for (int k = 0; k < q; k++) {
                        double v = 0.0;
                        for (long i = 0; i < len; i++) v += col[i] * z[k][i];
                        B[j * q + k] += v;
                    }
                }
            }
        }
    }
}

/* In-place Cholesky of a small q x q matrix (row-major, lower triangle used) and its solve. */
static int small_cholesky(double *M, int q)
{
    for (int j = 0; j < q; j++) {
        double d = M[j * q + j];
        for (int k = 0; k < j; k++) d -= M[j * q + k] * M[j * q + k];
        if (!(d > 0.0)) return 0;
        d = sqrt(d);
        M[j * q + j] = d;
        for (int i = j + 1; i < q; i++) {
            double v = M[i * q + j];
            for (int k = 0; k < j; k++) v -= M[i * q + k] * M[j * q + k];
            M[i * q + j] = v / d;
        }
    }
    return 1;
}

static void small_solve(const double *L, int q, double *b)
{
    for (int i = 0; i < q; i++) {
        for (int k = 0; k < i; k++) b[i] -= L[i * q + k] * b[k];
        b[i] /= L[i * q + i];
    }
    for (int i = q - 1; i >= 0; i--) {
        for (int k = i + 1; k < q; k++) b[i] -= L[k * q + i] * b[k];
        b[i] /= L[i * q + i];
    }
}

/* Factors every group's damped block M = C_g + lambda Dy^2 (Dy NULL: undamped) into s->L (Cholesky) and s->K0
 * (M^-1); one factorisation serves all the rounds of the active-set method, whose bounds do not change M. 0 when a
 * block is not positive definite. */
static int factor_blocks(lm *s, double lambda, const double *Dy)
{
    const int q = s->q;
    for (int g = 0; g < s->G; g++) {
        double *L = s->L + (size_t)g * q * q, *K = s->K0 + (size_t)g * q * q;
        memcpy(L, s->C + (size_t)g * q * q, sizeof(double) * (size_t)q * (size_t)q);
        if (Dy)
            for (int k = 0; k < q; k++) L[k * q + k] += lambda * Dy[g * q + k] * Dy[g * q + k];
        if (!small_cholesky(L, q)) return 0;
        for (int k = 0; k < q; k++) { /* M^-1, column by column */
            double e[MAXQ] = {0};
            e[k] = 1.0;
            small_solve(L, q, e);
            for (int l = 0; l < q; l++) K[l * q + k] = e[l];
        }
    }
    return 1;
}

/* Eliminates group g's block (factored by factor_blocks) with its na active bounds as equality constraints
 * E dy = e (rows of s->act): the constrained minimiser of 0.5 dy^T M dy + dy^T u over E dy = e is dy = -K u + k0,
 * with K = M^-1 - M^-1 E^T (E M^-1 E^T)^-1 E M^-1 and k0 = M^-1 E^T (E M^-1 E^T)^-1 e (u = B_g^T dx + gy). Stores
 * W_g = K B_g^T and v_g = K gy - k0, so that dy = -v - W dx. 0 when the active rows are dependent. */
static int eliminate(lm *s, int g, int na)
{
    const int p = s->p, q = s->q;
    double K[MAXQ * MAXQ], k0[MAXQ] = {0};
    memcpy(K, s->K0 + (size_t)g * q * q, sizeof(double) * (size_t)q * (size_t)q);
    if (na > 0) {
        const double *E = s->act + (size_t)g * MAXQ * MAXQ, *ev = s->act_rhs + (size_t)g * MAXQ;
        double ME[MAXQ * MAXQ], G[MAXQ * MAXQ], GiE[MAXQ * MAXQ]; /* ME = M^-1 E^T (q x na) */
        for (int k = 0; k < q; k++)
            for (int a = 0; a < na; a++) {
                double v = 0.0;
                for (int l = 0; l < q; l++) v += K[k * q + l] * E[a * MAXQ + l];
                ME[k * MAXQ + a] = v;
            }
        for (int a = 0; a < na; a++)
            for (int b = 0; b < na; b++) {
                double v = 0.0;
                for (int l = 0; l < q; l++) v += E[a * MAXQ + l] * ME[l * MAXQ + b];
                G[a * na + b] = v;
            }
        if (!small_cholesky(G, na)) return 0; /* dependent rows are never made active together */
        for (int k = 0; k < q; k++) { /* GiE = G^-1 (M^-1 E^T)^T: na x q */
            double col[MAXQ];
            for (int a = 0; a < na; a++) col[a] = ME[k * MAXQ + a];
            small_solve(G, na, col);
            for (int a = 0; a < na; a++) GiE[a * MAXQ + k] = col[a];
        }
        double ge[MAXQ];
        for (int a = 0; a < na; a++) ge[a] = ev[a];
        small_solve(G, na, ge);
        for (int k = 0; k < q; k++) {
            for (int a = 0; a < na; a++) k0[k] += ME[k * MAXQ + a] * ge[a];
            for (int l = 0; l < q; l++) {
                double v = 0.0;
                for (int a = 0; a < na; a++) v += ME[k * MAXQ + a] * GiE[a * MAXQ + l];
                K[k * q + l] -= v;
            }
        }
    }
    const double *B = s->B + (size_t)g * p * q, *gy = s->gy + (size_t)g * q;
    double *W = s->W + (size_t)g * q * p, *v = s->v + (size_t)g * q;
    for (int k = 0; k < q; k++) {
        for (int j = 0; j < p; j++) {
            double w = 0.0;
            for (int l = 0; l < q; l++) w += K[k * q + l] * B[j * q + l];
            W[k * p + j] = w;
        }
        double vk = -k0[k];
        for (int l = 0; l < q; l++) vk += K[k * q + l] * gy[l];
        v[k] = vk;
    }
    return 1;
}

/* Adds (sign +1) or takes back (-1) group g's share of the reduced system: S -= B_g W_g, r += B_g v_g. */
static void group_share(const lm *s, int g, double sign, double *S, double *r)
{
    const int p = s->p, q = s->q;
    const double *B = s->B + (size_t)g * p * q, *W = s->W + (size_t)g * q * p, *v = s->v + (size_t)g * q;
    for (int j = 0; j < p; j++) {
        double rj = 0.0;
        for (int k = 0; k < q; k++) rj += B[j * q + k] * v[k];
        r[j] += sign * rj;
        for (int i = 0; i <= j; i++) {
            double sij = 0.0;
            for (int k = 0; k < q; k++) sij += B[i * q + k] * W[k * p + j];
            S[j * p + i] -= sign * sij;
            if (i != j) S[i * p + j] -= sign * sij;
        }
    }
}

/* The reduced system of the global parameters once every group's local terms are eliminated (with the bounds
 * active in s->nact when active is nonzero): S = A + lambda Dx^2 - sum B_g W_g, r = -g + sum B_g v_g. Dx and Dy
 * NULL: no damping. 0 when a block is not positive definite. */
static int reduce(lm *s, double lambda, const double *Dx, const double *Dy, int active, double *S, double *r)
{
    const int p = s->p;
    if (!factor_blocks(s, lambda, Dy)) return 0;
    memcpy(S, s->A, sizeof(double) * (size_t)p * (size_t)p);
    for (int j = 0; j < p; j++) {
        if (Dx) S[j * p + j] += lambda * Dx[j] * Dx[j];
        r[j] = -s->g[j];
    }
    for (int g = 0; g < s->G; g++) {
        if (!eliminate(s, g, active ? s->nact[g] : 0)) return 0;
        group_share(s, g, 1.0, S, r);
    }
    return 1;
}

/* The step from the reduced system (S, r): dx solves S dx = r, and each group's dy = -v - W dx. 0 when S is not
 * positive definite or the step is not finite. */
static int solve_reduced(lm *s, const double *S, const double *r, double *dx, double *dy)
{
    const int p = s->p, q = s->q;
    double F[MAXP * MAXP];
    memcpy(F, S, sizeof(double) * (size_t)p * (size_t)p);
    memcpy(dx, r, sizeof(double) * (size_t)p);
    if (p) {
        if (LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'U', p, F, p) != 0) return 0;
        if (LAPACKE_dpotrs(LAPACK_COL_MAJOR, 'U', p, 1, F, p, dx, p) != 0) return 0;
    }
    for (int g = 0; g < s->G; g++) {
        const double *W = s->W + (size_t)g * q * p, *v = s->v + (size_t)g * q;
        for (int k = 0; k < q; k++) {
            double d = -v[k];
            for (int j = 0; j < p; j++) d -= W[k * p + j] * dx[j];
            dy[g * q + k] = d;
        }
    }
    for (int j = 0; j < p; j++)
        if (!isfinite(dx[j])) return 0;
    for (long k = 0; k < (long)s->G * q; k++)
        if (!isfinite(dy[k])) return 0;
    return 1;
}

/* Makes row c (value now = c . y) active in group g, landing on it (c . dy = -now), when it is independent of the
 * rows already active (q <= 3: the Gram determinant of the rows, relative to the product of their norms). */
static int activate(lm *s, int g, const double *c, double now)
{
    const int q = s->q;
    int *na = s->nact + g;
    double *E = s->act + (size_t)g * MAXQ * MAXQ, *ev = s->act_rhs + (size_t)g * MAXQ;
    if (*na >= q) return 0;
    const int n = *na + 1;
    double Gm[MAXQ * MAXQ], scale = 1.0;
    for (int a = 0; a < n; a++)
        for (int b = 0; b < n; b++) {
            const double *ra = a < n - 1 ? E + a * MAXQ : c, *rb = b < n - 1 ? E + b * MAXQ : c;
            double v = 0.0;
            for (int k = 0; k < q; k++) v += ra[k] * rb[k];
            Gm[a * n + b] = v;
        }
    for (int a = 0; a < n; a++) scale *= Gm[a * n + a];
    if (!small_cholesky(Gm, n)) return 0;
    double det = 1.0;
    for (int a = 0; a < n; a++) det *= Gm[a * n + a] * Gm[a * n + a];
    if (det < 1e-10 * scale) return 0;
    for (int k = 0; k < q; k++) E[(n - 1) * MAXQ + k] = c[k];
    ev[n - 1] = -now;
    *na = n;
    return 1;
}

/* The most negative Lagrange multiplier of group g's active bounds at the step just solved, and its row (-1 when
 * none is negative): a negative one is a bound the step would rather leave. With M dy + u - E^T mu = 0 and
 * E dy = e: mu = (E M^-1 E^T)^-1 (e + E M^-1 u), u = B_g^T dx + gy. */
static int leaving_bound(const lm *s, int g, const double *dx)
{
    const int p = s->p, q = s->q, na = s->nact[g];
    const double *E = s->act + (size_t)g * MAXQ * MAXQ, *ev = s->act_rhs + (size_t)g * MAXQ;
    const double *B = s->B + (size_t)g * p * q, *L = s->L + (size_t)g * q * q; /* M's factor (factor_blocks) */
    double u[MAXQ], ME[MAXQ * MAXQ], G[MAXQ * MAXQ], mu[MAXQ];
    for (int k = 0; k < q; k++) {
        u[k] = s->gy[g * q + k];
        for (int j = 0; j < p; j++) u[k] += B[j * q + k] * dx[j];
    }
    small_solve(L, q, u); /* M^-1 u */
    for (int a = 0; a < na; a++) {
        double col[MAXQ];
        for (int k = 0; k < q; k++) col[k] = E[a * MAXQ + k];
        small_solve(L, q, col); /* M^-1 E^T, column a */
        for (int k = 0; k < q; k++) ME[k * MAXQ + a] = col[k];
    }
    for (int a = 0; a < na; a++) {
        mu[a] = ev[a];
        for (int k = 0; k < q; k++) mu[a] += E[a * MAXQ + k] * u[k];
        for (int b = 0; b < na; b++) {
            double v = 0.0;
            for (int k = 0; k < q; k++) v += E[a * MAXQ + k] * ME[k * MAXQ + b];
            G[a * na + b] = v;
        }
    }
    if (!small_cholesky(G, na)) return -1;
    small_solve(G, na, mu);
    int worst = -1;
    for (int a = 0; a < na; a++)
        if (mu[a] < 0.0 && (worst < 0 || mu[a] < mu[worst])) worst = a;
    return worst;
}

/* The damped step (dx, dy) that keeps every bound c . y >= 0 of the local terms, by an active-set method over the
 * small blocks: bounds that hold with equality start active (the step stays on them); a bound whose multiplier
 * says the step would rather leave it is released, and a bound the step would cross is made active, landing on it
 * exactly (c . dy = -c . y); the step is solved again after each change. 0 when the damped matrix is not positive
 * definite. */
static int damped_step(lm *s, double lambda, const double *Dx, const double *Dy, double *dx, double *dy)
{
    const db_lm_problem *P = s->P;
    const int q = s->q, nb = P->nbounds;
    double S[MAXP * MAXP], r[MAXP];
    if (s->G) memset(s->nact, 0, sizeof(int) * (size_t)s->G);
    if (nb && s->G)
        for (int g = 0; g < s->G; g++)
            for (int b = 0; b < nb; b++) {
                const double *c = P->bounds + ((size_t)g * nb + b) * q;
                double now = 0.0, size = 0.0;
                for (int k = 0; k < q; k++) {
                    now += c[k] * s->y[g * q + k];
                    size += fabs(c[k] * s->y[g * q + k]);
                }
                if (now <= 1e-12 * size) activate(s, g, c, now);
            }
    if (!reduce(s, lambda, Dx, Dy, 1, S, r)) return 0;
    if (!nb || !s->G) return solve_reduced(s, S, r, dx, dy);
    int *changed = s->changed;
    for (int round = 0; round < 4 * q + 4; round++) {
        if (!solve_reduced(s, S, r, dx, dy)) return 0;
        int any = 0;
        for (int g = 0; g < s->G; g++) {
            changed[g] = 0;
            if (s->nact[g] == 0) continue;
            int a = leaving_bound(s, g, dx);
            if (a < 0) continue;
            int n = --s->nact[g]; /* drop row a: the last row takes its place */
            double *E = s->act + (size_t)g * MAXQ * MAXQ, *ev = s->act_rhs + (size_t)g * MAXQ;
            memcpy(E + a * MAXQ, E + n * MAXQ, sizeof(double) * MAXQ);
            ev[a] = ev[n];
            changed[g] = any = 1;
        }
        if (!any)
            for (int g = 0; g < s->G; g++)
                for (int b = 0; b < nb; b++) {
                    const double *c = P->bounds + ((size_t)g * nb + b) * q;
                    double now = 0.0, change = 0.0, size = 0.0;
                    for (int k = 0; k < q; k++) {
                        now += c[k] * s->y[g * q + k];
                        change += c[k] * dy[g * q + k];
                        size += fabs(c[k] * s->y[g * q + k]) + fabs(c[k] * dy[g * q + k]);
                    }
                    if (now + change < -1e-12 * size && activate(s, g, c, now)) changed[g] = any = 1;
                }
        if (!any) break;
        /* only the groups whose bounds changed are eliminated again: their old share leaves the system, the new
         * one enters */
        for (int g = 0; g < s->G; g++)
            if (changed[g]) {
                group_share(s, g, -1.0, S, r);
                if (!eliminate(s, g, s->nact[g])) return 0;
                group_share(s, g, 1.0, S, r);
            }
    }
    return 1;
}

/* The decrease -g.d - 0.5 d^T N d of the undamped quadratic model along d = (dx, dy), N the full normal matrix. */
static double model_decrease(const lm *s, const double *dx, const double *dy, double t)
{
    const int p = s->p, q = s->q;
    double gd = 0.0, quad = 0.0;
    for (int j = 0; j < p; j++) {
        gd += s->g[j] * dx[j];
        for (int i = 0; i < p; i++) quad += dx[i] * s->A[j * p + i] * dx[j];
    }
    for (int g = 0; g < s->G; g++) {
        const double *B = s->B + (size_t)g * p * q, *C = s->C + (size_t)g * q * q, *d = dy + (size_t)g * q;
        for (int k = 0; k < q; k++) {
            gd += s->gy[g * q + k] * d[k];
            for (int l = 0; l < q; l++) quad += d[k] * C[k * q + l] * d[l];
            for (int j = 0; j < p; j++) quad += 2.0 * dx[j] * B[j * q + k] * d[k];
        }
    }
    return -t * gd - 0.5 * t * t * quad;
}

/* Refuses, by name, global parameters the data cannot determine once the local terms are eliminated, and groups
 * whose local terms their observations cannot determine. */
static int check_separable(lm *s, const double *x, int dependent_too, int *bad_group, db_error *err)
{
    const db_lm_problem *P = s->P;
    const int p = s->p, q = s->q;
    for (int g = 0; g < s->G; g++) {
        double L[MAXQ * MAXQ];
        memcpy(L, s->C + (size_t)g * q * q, sizeof(double) * (size_t)q * (size_t)q);
        if (!small_cholesky(L, q)) {
            *bad_group = g;
            return db_fail(err, DB_ERR_ARGUMENT, "refinement: the local terms of group %d cannot be determined by its "
                                                 "observations (too few, or all on one line)", g);
        }
    }
    /* a column zero up to rounding (lambda with -mat: the reciprocal cell scales with it and the image does not
     * move) passes the tests below and is "fitted" to any value: a change as large as the parameter itself (at
     * least 1) must move the model by more than NO_EFFECT of its size, below the float image's own rounding */
    for (int j = 0; j < p && s->model_norm > 0.0; j++) {
        const double effect = fmax(fabs(x[j]), 1.0) * s->column_norm[j] / s->model_norm;
        if (effect < NO_EFFECT) {
            char b[32];
            return db_fail(err, DB_ERR_ARGUMENT,
                           "refinement: %s has no effect on the chosen pixels (changing it by %g moves the model by %.1e "
                           "of its size: its derivative is zero up to rounding); fix it or choose other pixels",
                           pname(P, j, b, sizeof b), fmax(fabs(x[j]), 1.0), effect);
        }
    }
    double S[MAXP * MAXP], r[MAXP];
    if (!reduce(s, 0.0, NULL, NULL, 0, S, r)) return db_fail(err, DB_ERR_INTERNAL, "refinement: local block not positive definite");
    for (int j = 0; j < p; j++)
        if (!(S[j * p + j] > 1e-14 * s->A[j * p + j]) || !(s->A[j * p + j] > 0.0)) {
            char b[32];
            return db_fail(err, DB_ERR_ARGUMENT,
                           "refinement: %s has no effect on the chosen pixels (its Jacobian column is zero there, or "
                           "it only moves what the local terms already do); fix it or choose other pixels",
                           pname(P, j, b, sizeof b));
        }
    if (p < 2 || !dependent_too) return DB_OK;
    double Cn[MAXP * MAXP], w[MAXP];
    for (int j = 0; j < p; j++)
        for (int i = 0; i < p; i++) Cn[j * p + i] = S[j * p + i] / sqrt(S[i * p + i] * S[j * p + j]);
    if (LAPACKE_dsyev(LAPACK_COL_MAJOR, 'V', 'U', p, Cn, p, w) != 0)
        return db_fail(err, DB_ERR_INTERNAL, "refinement: the eigenvalues of the normal matrix did not converge");
    if (w[0] >= SEPARABLE_EIGENVALUE) return DB_OK;
    /* the eigenvector of the smallest eigenvalue (column 0) says which parameters move together */
    char names[600] = "", combo[800] = "";
    int order[MAXP], k = 0;
    for (int j = 0; j < p; j++)
        if (fabs(Cn[j]) >= 0.05) order[k++] = j;
    for (int a = 1; a < k; a++) /* largest share first */
        for (int b = a; b > 0 && fabs(Cn[order[b]]) > fabs(Cn[order[b - 1]]); b--) {
            int t = order[b];
            order[b] = order[b - 1];
            order[b - 1] = t;
        }
    for (int a = 0; a < k; a++) {
        char b[32];
        const char *nm = pname(P, order[a], b, sizeof b);
        size_t l = strlen(names);
        snprintf(names + l, sizeof names - l, "%s%s", a == 0 ? "" : (a == k - 1 ? " and " : ", "), nm);
        l = strlen(combo);
        snprintf(combo + l, sizeof combo - l, " %+.3f %s", Cn[order[a]], nm);
    }
    return db_fail(err, DB_ERR_ARGUMENT,
                   "refinement: the chosen pixels cannot separate %s: their Jacobian columns are linearly dependent "
                   "(smallest eigenvalue %.2g of the normalised normal matrix, combination%s); fix one of them",
                   names, w[0], combo);
}

/* Covariance of x (the inverse of the reduced normal matrix, inverted with unit diagonal so that parameters of
 * very different units do not limit its precision) and the standard uncertainties of x and y. */
static void covariance(lm *s, double *sigma_x, double *cov_x, double *sigma_y)
{
    const int p = s->p, q = s->q;
    double S[MAXP * MAXP], r[MAXP], d[MAXP], V[MAXP * MAXP];
    int ok = reduce(s, 0.0, NULL, NULL, 0, S, r);
    for (int j = 0; j < p; j++) {
        d[j] = S[j * p + j] > 0.0 ? sqrt(S[j * p + j]) : 0.0;
        if (d[j] == 0.0) ok = 0;
    }
    if (ok && p) {
        for (int j = 0; j < p; j++)
            for (int i = 0; i < p; i++) V[j * p + i] = S[j * p + i] / (d[i] * d[j]);
        ok = LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'U', p, V, p) == 0 && LAPACKE_dpotri(LAPACK_COL_MAJOR, 'U', p, V, p) == 0;
        for (int j = 0; j < p; j++)
            for (int i = 0; i < j; i++) V[i * p + j] = V[j * p + i];
        for (int j = 0; j < p; j++)
            for (int i = 0; i < p; i++) V[j * p + i] /= d[i] * d[j];
    }
    for (int j = 0; j < p; j++) {
        if (sigma_x) sigma_x[j] = ok && V[j * p + j] >= 0.0 ? sqrt(V[j * p + j]) : -1.0;
        if (cov_x)
            for (int i = 0; i < p; i++) cov_x[i * p + j] = ok ? V[j * p + i] : (i == j ? -1.0 : 0.0);
    }
    if (!sigma_y) return;
    for (int g = 0; g < s->G; g++) {
        double L[MAXQ * MAXQ];
        memcpy(L, s->C + (size_t)g * q * q, sizeof(double) * (size_t)q * (size_t)q);
        int okg = ok && small_cholesky(L, q);
        const double *W = s->W + (size_t)g * q * p; /* C_g^-1 B_g^T, from reduce at lambda 0 */
        for (int k = 0; k < q; k++) {
            double e[MAXQ] = {0};
            e[k] = 1.0;
            if (okg) small_solve(L, q, e);
            double var = e[k]; /* (C_g^-1)_kk */
            for (int i = 0; i < p && okg; i++)
                for (int j = 0; j < p; j++) var += W[k * p + i] * V[j * p + i] * W[k * p + j];
            sigma_y[g * q + k] = okg && var >= 0.0 ? sqrt(var) : -1.0;
        }
    }
}

/* The model at x + t dx, y + t dy into s->trial_model and its objective into *cost (infinity outside the domain);
 * DB_LM_INFEASIBLE when the model refuses the parameters. */
static int trial(lm *s, const double *x, const double *y, const double *dx, const double *dy, double t, double *xtrial,
                 double *ytrial, double *cost, db_error *err)
{
    const db_lm_problem *P = s->P;
    for (int j = 0; j < s->p; j++) xtrial[j] = x[j] + t * dx[j];
    for (long k = 0; k < (long)s->G * s->q; k++) ytrial[k] = y[k] + t * dy[k];
    db_error terr;
    *cost = INFINITY;
    int erc = P->evaluate(P->user, xtrial, s->trial_model, NULL, &terr);
    s->evaluations++;
    if (erc == DB_OK) {
        add_local(s, s->trial_model, ytrial, s->trial_model);
        *cost = objective(s, s->trial_model, NULL);
    } else if (erc != DB_LM_INFEASIBLE) {
        *err = terr;
    }
    return erc;
}

/* The fraction of the step that keeps every Poisson mean the full step took to zero or below at a tenth of its
 * present value, taking each such mean as linear between its present value and the trial's ("fraction to the
 * boundary", as interior-point methods do). Only the pixels that crossed count: a spot moving away from a pixel
 * lowers its mean far more than a linearisation allows without leaving the domain. */
static double boundary_fraction(const lm *s)
{
    const double s2 = s->P->variance_offset;
    double t = 1.0;
    for (long i = 0; i < s->n; i++) {
        double now = s->mu[i] + s2, then = s->trial_model[i] + s2;
        if (then > 0.0 || !(now > 0.0)) continue;
        double ti = 0.9 * now / (now - then);
        if (ti < t) t = ti;
    }
    return t;
}

/* The normal matrices weighted by the Fisher information instead of the steps' curvature (the uncertainties'). */
static void fisher_matrices(lm *s)
{
    for (long i = 0; i < s->n; i++) {
        double f = sqrt(s->fisher[i]), r = s->sqf[i] > 0.0 ? f / s->sqf[i] : 0.0;
        for (int j = 0; j < s->p; j++) s->J[(size_t)j * (size_t)s->n + (size_t)i] *= r;
        s->sqf[i] = f;
    }
    normal_matrices(s);
}

static double scaled_norm2(const double *D, const double *x, long n)
{
    double s = 0.0;
    for (long j = 0; j < n; j++) s += (D[j] * x[j]) * (D[j] * x[j]);
    return s;
}

static int check_problem(const db_lm_problem *P, const db_lm_options *o, db_error *err)
{
    if (!P || !P->evaluate || !P->obs || P->n < 1)
        return db_fail(err, DB_ERR_ARGUMENT, "db_lm_fit: no problem, evaluate function, observations, or n < 1");
    if (P->p < 0 || P->p > MAXP)
        return db_fail(err, DB_ERR_ARGUMENT, "db_lm_fit: expected 0 to %d global parameters, got %d", MAXP, P->p);
    if (P->objective != DB_LM_LSQ && P->objective != DB_LM_POISSON)
        return db_fail(err, DB_ERR_ARGUMENT, "db_lm_fit: unknown objective %d", P->objective);
    if (!(P->variance_offset >= 0.0) || !isfinite(P->variance_offset))
        return db_fail(err, DB_ERR_ARGUMENT, "db_lm_fit: the readout variance must be finite and >= 0");
    if (P->ngroups < 0 || (P->ngroups > 0 && (P->q < 1 || P->q > MAXQ || !P->group || !P->basis)))
        return db_fail(err, DB_ERR_ARGUMENT, "db_lm_fit: groups need 1 to %d local terms, a group list and a basis", MAXQ);
    if (P->p + (long)P->ngroups * (P->ngroups ? P->q : 0) < 1)
        return db_fail(err, DB_ERR_ARGUMENT, "db_lm_fit: nothing to fit (no parameters and no local terms)");
    if (P->n <= P->p + (long)P->ngroups * (P->ngroups ? P->q : 0))
        return db_fail(err, DB_ERR_ARGUMENT, "refinement: %ld observations cannot determine %ld parameters", P->n,
                       P->p + (long)P->ngroups * (P->ngroups ? P->q : 0));
    if (P->nbounds < 0 || (P->nbounds > 0 && (!P->bounds || P->ngroups == 0)))
        return db_fail(err, DB_ERR_ARGUMENT, "db_lm_fit: bounds need their rows and local terms");
    for (long i = 0; P->ngroups && i < P->n; i++)
        if (P->group[i] < -1 || P->group[i] >= P->ngroups)
            return db_fail(err, DB_ERR_ARGUMENT, "db_lm_fit: observation %ld is in group %d, outside -1..%d", i, P->group[i],
                           P->ngroups - 1);
    if (o->max_iterations < 1 || !(o->cost_tolerance >= 0) || !(o->step_tolerance >= 0) || !(o->initial_damping > 0) ||
        !isfinite(o->initial_damping))
        return db_fail(err, DB_ERR_ARGUMENT, "db_lm_fit: bad options (max_iterations >= 1, tolerances >= 0, "
                                             "initial_damping > 0)");
    if (o->typical_step)
        for (int j = 0; j < P->p; j++)
            if (!(o->typical_step[j] > 0) || !isfinite(o->typical_step[j])) {
                char b[32];
                return db_fail(err, DB_ERR_ARGUMENT, "db_lm_fit: the typical step of %s must be a finite number > 0",
                               pname(P, j, b, sizeof b));
            }
    return DB_OK;
}

static void lm_free(lm *s)
{
    free(s->model);
    free(s->trial_model);
    free(s->mu);
    free(s->J);
    free(s->sqf);
    free(s->fisher);
    free(s->zs);
    free(s->run_start);
    free(s->run_end);
    free(s->run_group);
    free(s->B);
    free(s->C);
    free(s->gy);
    free(s->W);
    free(s->v);
    free(s->nact);
    free(s->changed);
    free(s->L);
    free(s->K0);
    free(s->act);
    free(s->act_rhs);
}

/* Goodness of fit at the optimum (s->mu current). */
static void goodness(const lm *s, db_lm_result *res)
{
    const db_lm_problem *P = s->P;
    double pearson = 0.0, mean = 0.0, var = 0.0, logk[256] = {0};
    for (int k = 1; k < 256; k++) logk[k] = log((double)k);
    for (long i = 0; i < s->n; i++) {
        pearson += db_term_pearson(P->objective, P->obs[i], s->mu[i], scale_of(P, i));
        if (P->objective == DB_LM_POISSON) {
            double m, v;
            db_poisson_deviance_moments_logs(s->mu[i] + P->variance_offset, logk, 256, &m, &v);
            mean += m;
            var += v;
        }
    }
    const long fitted = s->n - res->dof;
    res->deviance = 2.0 * s->cost;
    res->pearson_chi2 = pearson;
    if (P->objective == DB_LM_POISSON) {
        res->expected_deviance = mean - (double)fitted;
        res->deviance_sd = sqrt(var);
    } else {
        res->expected_deviance = (double)res->dof;
        res->deviance_sd = sqrt(2.0 * (double)s->n);
    }
}

int db_lm_fit(const db_lm_problem *P, const db_lm_options *opt, double *x, double *y, double *sigma_x,
              double *cov_x, double *sigma_y, double *mu_out, db_lm_result *res, db_error *err)
{
    db_error_clear(err);
    db_lm_options defaults;
    db_lm_default_options(&defaults);
    const db_lm_options *o = opt ? opt : &defaults;
    if (!res) return db_fail(err, DB_ERR_ARGUMENT, "db_lm_fit: no result");
    memset(res, 0, sizeof *res);
    res->bad_observation = -1;
    res->bad_group = -1;
    int rc = check_problem(P, o, err);
    if (rc) return rc;
    lm s;
    memset(&s, 0, sizeof s);
    s.P = P;
    s.n = P->n;
    s.p = P->p;
    s.G = P->ngroups;
    s.q = s.G ? P->q : 0;
    const long n = s.n, ny = (long)s.G * s.q;
    const int p = s.p;
    if (ny && !y) return db_fail(err, DB_ERR_ARGUMENT, "db_lm_fit: local terms need their start values (y)");
    if (p && !x) return db_fail(err, DB_ERR_ARGUMENT, "db_lm_fit: no parameters (x)");
    res->dof = n - p - ny;
    for (long gb = 0; gb < (long)s.G * P->nbounds; gb++) {
        double v = 0.0;
        for (int k = 0; k < s.q; k++) v += P->bounds[gb * s.q + k] * y[(gb / P->nbounds) * s.q + k];
        if (v < 0.0)
            return db_fail(err, DB_ERR_ARGUMENT, "db_lm_fit: the start of group %ld's local terms breaks its bound %ld (%g < 0)",
                           gb / P->nbounds, gb % P->nbounds, v);
    }
    size_t nb = (size_t)n * sizeof(double);
    s.model = (double *)malloc(nb);
    s.trial_model = (double *)malloc(nb);
    s.mu = (double *)malloc(nb);
    s.sqf = (double *)malloc(nb);
    s.fisher = (double *)malloc(nb);
    s.J = (double *)malloc(nb * (size_t)(p ? p : 1));
    size_t gb = sizeof(double) * (size_t)(s.G ? s.G : 1);
    s.B = (double *)malloc(gb * (size_t)(p ? p : 1) * MAXQ);
    s.W = (double *)malloc(gb * (size_t)(p ? p : 1) * MAXQ);
    s.C = (double *)malloc(gb * MAXQ * MAXQ);
    s.gy = (double *)malloc(gb * MAXQ);
    s.v = (double *)malloc(gb * MAXQ);
    s.nact = (int *)calloc((size_t)(s.G ? s.G : 1), sizeof(int));
    s.changed = (int *)calloc((size_t)(s.G ? s.G : 1), sizeof(int));
    s.L = (double *)malloc(gb * MAXQ * MAXQ);
    s.K0 = (double *)malloc(gb * MAXQ * MAXQ);
    s.act = (double *)malloc(gb * MAXQ * MAXQ);
    s.act_rhs = (double *)malloc(gb * MAXQ);
    s.y = y;
    double *Dy = (double *)malloc(gb * MAXQ * 3), *dy = Dy + (size_t)(s.G ? s.G : 1) * MAXQ,
           *ytrial = dy + (size_t)(s.G ? s.G : 1) * MAXQ;
    if (s.G) {
        s.zs = (double *)malloc(nb * (size_t)s.q);
        s.run_start = (long *)malloc(sizeof(long) * (size_t)n);
        s.run_end = (long *)malloc(sizeof(long) * (size_t)n);
        s.run_group = (int *)malloc(sizeof(int) * (size_t)n);
        if (!s.zs || !s.run_start || !s.run_end || !s.run_group) {
            rc = db_fail(err, DB_ERR_NOMEM, "refinement: out of memory for %ld observations", n);
            goto done;
        }
        for (long i = 0; i < n; i++) {
            int g = P->group[i];
            if (g < 0) continue;
            if (s.nruns == 0 || s.run_group[s.nruns - 1] != g || s.run_end[s.nruns - 1] != i) {
                s.run_start[s.nruns] = i;
                s.run_group[s.nruns++] = g;
            }
            s.run_end[s.nruns - 1] = i + 1;
        }
    }
    if (!s.model || !s.trial_model || !s.mu || !s.sqf || !s.fisher || !s.J || !s.B || !s.W || !s.C || !s.gy || !s.v || !Dy || !s.nact || !s.changed || !s.L || !s.K0 || !s.act || !s.act_rhs) {
        rc = db_fail(err, DB_ERR_NOMEM, "refinement: out of memory for %ld observations x %d parameters", n, p);
        goto done;
    }
    double Dx[MAXP], dx[MAXP], xtrial[MAXP];
    long bad = -1;
    const double t0 = db_now_seconds();
    if ((rc = linearise(&s, x, y, &bad, err))) goto done;
    if ((rc = check_separable(&s, x, o->refuse_inseparable, &res->bad_group, err))) goto done;
    res->start_cost = s.cost;
    for (int j = 0; j < p; j++) Dx[j] = o->typical_step ? 1.0 / o->typical_step[j] : sqrt(s.A[j * p + j]);
    for (int g = 0; g < s.G; g++)
        for (int k = 0; k < s.q; k++) Dy[g * s.q + k] = sqrt(s.C[(g * s.q + k) * s.q + k]);
    double lambda = 0.0;
    for (int j = 0; j < p; j++) lambda = fmax(lambda, s.A[j * p + j] / (Dx[j] * Dx[j]));
    for (long k = 0; k < ny; k++) lambda = fmax(lambda, Dy[k] > 0 ? 1.0 : 0.0);
    lambda *= o->initial_damping;
    double nu = 2.0;
    int stop = 0, it = 0, streak = 0;
    if (s.cost == 0.0) stop = DB_STOP_EXACT;
    while (!stop) {
        if (it >= o->max_iterations) {
            stop = DB_STOP_MAXITER;
            break;
        }
        if (lambda > DB_LM_MAX_DAMPING) {
            stop = DB_STOP_NO_PROGRESS;
            break;
        }
        if (!damped_step(&s, lambda, Dx, Dy, dx, dy)) { /* not positive definite: more damping */
            lambda = lambda > 0.0 ? lambda * nu : 1e-12;
            nu *= 2.0;
            continue;
        }
        it++;
        double step2 = scaled_norm2(Dx, dx, p) + scaled_norm2(Dy, dy, ny);
        double norm2 = scaled_norm2(Dx, x, p) + scaled_norm2(Dy, y, ny);
        double step = sqrt(step2), pnorm = sqrt(norm2);
        double rel_step = pnorm > 0.0 ? step / pnorm : step;
        /* a step this small ends the fit, but it is still taken when it lowers the cost: it is the last quadratic
         * step of a converging fit, and without it parameters whose values are small beside the others' (phi0 =
         * 0.05 beside a = 70) would stop short by the step's size; the normal matrix stays the last one computed,
         * a relative step_tolerance away */
        const int last = step <= o->step_tolerance * (pnorm + o->step_tolerance);
        /* a trial the model refuses (a cell that does not close) or whose mu leaves the objective's domain (a
         * Poisson mean <= 0) is a failed step; but when the mean leaves it, the same direction is tried once more,
         * shortened to stop short of the boundary (below): more damping would turn the step towards the gradient
         * and crawl along the boundary where a background near zero keeps the fit */
        double tstep = 1.0, trial_cost = INFINITY;
        int erc = trial(&s, x, y, dx, dy, tstep, xtrial, ytrial, &trial_cost, err);
        if (erc != DB_OK && erc != DB_LM_INFEASIBLE) {
            rc = erc;
            goto done;
        }
        if (erc == DB_OK && trial_cost == INFINITY && P->objective == DB_LM_POISSON) {
            double tb = boundary_fraction(&s);
            if (tb < 1.0 && tb > 1e-6) {
                tstep = tb;
                erc = trial(&s, x, y, dx, dy, tstep, xtrial, ytrial, &trial_cost, err);
                if (erc != DB_OK && erc != DB_LM_INFEASIBLE) {
                    rc = erc;
                    goto done;
                }
            }
        }
        double predicted = model_decrease(&s, dx, dy, tstep); /* L(0) - L(t delta) of the quadratic model */
        double rho = predicted > 0.0 ? (s.cost - trial_cost) / predicted : -1.0;
        db_lm_iteration rep = {it, 0, s.cost, lambda, rel_step, 0.0};
        if (last) {
            stop = DB_STOP_STEP;
            if (trial_cost < s.cost) {
                if (p) memcpy(x, xtrial, sizeof(double) * (size_t)p);
                if (ny) memcpy(y, ytrial, sizeof(double) * (size_t)ny);
                s.cost = trial_cost;
                memcpy(s.mu, s.trial_model, nb);
                rep.accepted = 1;
                rep.cost = s.cost;
            }
            rep.seconds = db_now_seconds() - t0;
            if (o->progress) o->progress(o->progress_user, &rep);
            break;
        }
        if (trial_cost < s.cost && rho > 0.0) {
            double old_cost = s.cost;
            if (p) memcpy(x, xtrial, sizeof(double) * (size_t)p);
            if (ny) memcpy(y, ytrial, sizeof(double) * (size_t)ny);
            if ((rc = linearise(&s, x, y, &bad, err))) goto done;
            /* Nielsen's update, shrinking the damping at most 3 times a step; after steps the model predicted
             * well (rho > 0.9) two or three times in a row, at most 9 and 27 times: the model is trusted where it
             * has been right, and the last steps of a converging fit become Gauss-Newton's instead of crawling at
             * the damping's pace (a noise-free fit: 7 trial steps against 11), while the first steps of a fit
             * from far stay as cautious as before */
            double t = 2.0 * rho - 1.0;
            double shrink = 1.0 - t * t * t;
            streak = rho > 0.9 ? streak + 1 : 0;
            const double most = streak >= 3 ? 1.0 / 27.0 : streak == 2 ? 1.0 / 9.0 : 1.0 / 3.0;
            lambda *= shrink > most ? shrink : most;
            nu = 2.0;
            if (!o->typical_step)
                for (int j = 0; j < p; j++) Dx[j] = fmax(Dx[j], sqrt(s.A[j * p + j]));
            for (int g = 0; g < s.G; g++)
                for (int k = 0; k < s.q; k++) Dy[g * s.q + k] = fmax(Dy[g * s.q + k], sqrt(s.C[(g * s.q + k) * s.q + k]));
            rep.accepted = 1;
            rep.cost = s.cost;
            if (s.cost == 0.0) stop = DB_STOP_EXACT;
            else if (old_cost - s.cost <= o->cost_tolerance * old_cost || old_cost - s.cost < o->cost_decrease_tolerance)
                stop = DB_STOP_COST;
            else if (old_cost - s.cost < 1e3 * o->cost_decrease_tolerance && damped_step(&s, 0.0, Dx, Dy, dx, dy) &&
                     model_decrease(&s, dx, dy, 1.0) < o->cost_decrease_tolerance)
                /* near the optimum the full Gauss-Newton step's predicted decrease (the Newton decrement) says what
                 * is left to gain; below the tolerance the fit is as converged as the next step would leave it,
                 * and that step's two runs are saved */
                stop = DB_STOP_COST;
        } else if (predicted <= o->cost_tolerance * s.cost && fabs(s.cost - trial_cost) <= o->cost_tolerance * s.cost) {
            /* the model promises less than the tolerance and the trial moved the cost by less (MINPACK's test): the
             * cost is at its rounding, where more damping only repeats the step */
            stop = DB_STOP_COST;
        } else {
            lambda *= nu;
            nu *= 2.0;
            streak = 0;
        }
        rep.seconds = db_now_seconds() - t0;
        if (o->progress) o->progress(o->progress_user, &rep);
    }
    res->cost = s.cost;
    res->iterations = it;
    res->stop_reason = stop;
    res->evaluations = s.evaluations;
    res->jacobian_evaluations = s.jacobian_evaluations;
    fisher_matrices(&s);
    covariance(&s, sigma_x, cov_x, sigma_y);
    goodness(&s, res);
    if (mu_out) memcpy(mu_out, s.mu, nb);
    rc = DB_OK;
done:
    if (rc && bad >= 0) res->bad_observation = bad;
    free(Dy);
    lm_free(&s);
    return rc;
}
