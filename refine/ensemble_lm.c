/* ensemble_lm.c: the ensemble Levenberg-Marquardt of refine/ensemble_lm.h. The stills' dense blocks are factored
 * by hand (plain loops, no threaded BLAS: a still's bits must not depend on the machine's thread count, so that
 * any rank computes the same contribution); the reduced system over F is factored by CHOLMOD (the long-integer
 * API, matching db_csr's long indices), analysed once, refactored every trial. */
#include "ensemble_lm.h"
#include "clock.h"
#include "error.h"
#include "objective.h"

#include <cholmod.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* right-hand sides per CHOLMOD solve when the uncertainties are computed (BLAS-3 work in the supernodal solve) */
#define SOLVE_BATCH 64
/* The later rounds of a step's active sets change a few stills' shares: conjugate gradients preconditioned by the
 * first round's factor converge in 1-4 iterations there (bench, 300 stills), each a triangular solve and a product
 * (about 0.2 ms against 3.5 ms a factor). The tolerance is far below what the step's acceptance can tell (it
 * judges the cost at the step), and past DB_ELM_RESOLVE_MAX iterations a new factor is cheaper. */
#define DB_ELM_RESOLVE_TOL 1e-12
#define DB_ELM_RESOLVE_MAX 12

void db_elm_default_options(db_elm_options *o)
{
    db_lm_options one; /* the defaults of one still's fit (lm.c) */
    db_lm_default_options(&one);
    memset(o, 0, sizeof *o);
    o->max_iterations = one.max_iterations;
    o->cost_tolerance = one.cost_tolerance;
    o->cost_decrease_tolerance = one.cost_decrease_tolerance;
    o->step_tolerance = one.step_tolerance;
    o->initial_damping = one.initial_damping;
}

/* ======================================================================== one still */

struct db_elm_block {
    const db_elm_problem *P;
    const db_elm_still *st;
    int still;
    long n;
    int p, G, q, nz;      /* nz = p + G q: the still's dense unknowns z = (x_s, y_s) */
    double *model, *mu;   /* [n] model without / with the local terms */
    double *trial;        /* [n] the mean at a trial point */
    double *w, *wf, *e;   /* [n] the steps' weights (objective.c's floored observed curvature), the Fisher weights
                           * 1/mu' (the uncertainties'), gradients d cost / d mu */
    double *J;            /* [n*p] */
    double *x;            /* [p] the own parameters of the last linearisation (the prior's gradient needs them) */
    db_csr JF;
    /* a trial rendered with its derivatives (db_elm_fit speculates after an accepted step, since the next step is
     * accepted about 19 times in 20): the model, J and JF there, swapped in when the step is accepted */
    double *model_s, *J_s;
    db_csr JF_s;
    int have_pattern;
    int grew;             /* a linearisation added columns since the reduced system was built (update_pattern) */
    long m, *cols;        /* the still's F columns (ascending global indices) */
    long *loc;            /* [JF nnz] compact index of each JF entry (-1: an explicit zero outside the pattern) */
    long loc_cap;
    double *A, *B, *C;    /* [nz*nz], [nz*m] (column a: B[a*nz + k]), [m*m] lower (C[b*m + a], a >= b) */
    double *gz, *gF;      /* [nz], [m] */
    double *Dz2;          /* [nz] squared scaling: the largest diagonal of A with Fisher weights seen (1 where 0) */
    double *dzf, *dCf;    /* [nz], [m]: the diagonals of A and C with the Fisher weights (the scalings': the
                           * observed curvature obs/mu^2 of a count on a mean near 0 is huge, and a scaling that
                           * remembers it ended fits on "relative step below tolerance" far from the optimum) */
    double *L, *Y, *t;    /* the factor of T^T M T with M = A + lambda D2 [nzr*nzr] (lower, column-major), L^-1 T^T B
                           * [nz*m, column stride nz], L^-1 T^T (gz + M z0) [nzr] */
    double *Sc, *rc;      /* [m*m] lower: C - Y^T Y; [m]: gF + B^T z0 - Y^T t */
    double cost;
    int eliminated_ok;
    /* bounds of the local terms (db_elm_fit's active-set method): the active ones are equality constraints E dz = e
     * of the elimination, removed with the variables they fix. In a group with k active bounds, rows c_1..c_k,
     * c_j . dy_g = e_j, and E_g^T = Q1 R1 (Q1 orthonormal, q x k), dy_g = y0_g + N_g u_g with y0_g = Q1 R1^-T e_g and
     * N_g the q - k columns that complete Q1 to an orthonormal basis. So dz = z0 + T w over the free unknowns w
     * (nzr of them: the x_s, then each group's u_g); the still's block is T^T M T, factored (a group with q active
     * bounds leaves no unknown and no conditioning to lose). Without active bounds T = I: the plain elimination. */
    int nb;               /* bounds per group (0: none) */
    const double *bounds; /* the still's rows (db_elm_still.bounds) */
    int na, na_cap;       /* active bounds now; at most G min(q, nb) */
    int changed;          /* the active set changed in this round */
    int *act;             /* [na_cap] g nb + b of each active bound, in ascending order (so by group) */
    double *ev;           /* [na_cap] e: c . dy_g = e lands on the bound (e = -c . y_g) */
    double *mult;         /* [na_cap] the active bounds' Lagrange multipliers at the last back-substitution */
    int *kg, *gs;         /* [G] active bounds of each group, and where they start in act */
    double *Qg, *R1;      /* [G q q] per group with kg > 0: [Q1 N_g] (column-major q x q), R1 (k x k upper, stride q) */
    double *z0;           /* [nz] the particular solution (0 outside the groups with active bounds) */
    int nzr;              /* free unknowns: nz less the active bounds */
    int *wz, *wg;         /* [nz] free unknown j: its first z index, and its group's basis column (-1: a unit) */
    double lambda;        /* the damping of the last factor */
};

void db_elm_block_free(db_elm_block *b)
{
    if (!b) return;
    free(b->model);
    free(b->mu);
    free(b->trial);
    free(b->w);
    free(b->wf);
    free(b->e);
    free(b->J);
    free(b->x);
    db_csr_free(&b->JF);
    free(b->model_s);
    free(b->J_s);
    db_csr_free(&b->JF_s);
    free(b->cols);
    free(b->loc);
    free(b->A);
    free(b->B);
    free(b->C);
    free(b->gz);
    free(b->gF);
    free(b->Dz2);
    free(b->dzf);
    free(b->dCf);
    free(b->L);
    free(b->Y);
    free(b->t);
    free(b->Sc);
    free(b->rc);
    free(b->act);
    free(b->ev);
    free(b->kg);
    free(b->gs);
    free(b->Qg);
    free(b->R1);
    free(b->z0);
    free(b->wz);
    free(b->wg);
    free(b->mult);
    free(b);
}

static int check_still(const db_elm_problem *P, int s, db_error *err)
{
    const db_elm_still *st = &P->stills[s];
    if (st->n < 1) return db_fail(err, DB_ERR_ARGUMENT, "ensemble: still %d has %ld observations", s, st->n);
    if (st->p < 0 || st->p > DB_LM_MAX_PARAMS)
        return db_fail(err, DB_ERR_ARGUMENT, "ensemble: still %d has %d parameters, outside 0..%d", s, st->p,
                       DB_LM_MAX_PARAMS);
    if (!st->obs) return db_fail(err, DB_ERR_ARGUMENT, "ensemble: still %d has no observations (obs)", s);
    if (st->ngroups < 0) return db_fail(err, DB_ERR_ARGUMENT, "ensemble: still %d has %d groups", s, st->ngroups);
    if (st->ngroups > 0) {
        if (st->q < 1 || st->q > DB_LM_MAX_LOCAL)
            return db_fail(err, DB_ERR_ARGUMENT, "ensemble: still %d has %d local terms per group, outside 1..%d", s,
                           st->q, DB_LM_MAX_LOCAL);
        if (!st->group || !st->basis)
            return db_fail(err, DB_ERR_ARGUMENT, "ensemble: still %d's local terms need group and basis", s);
        for (long i = 0; i < st->n; i++)
            if (st->group[i] < -1 || st->group[i] >= st->ngroups)
                return db_fail(err, DB_ERR_ARGUMENT, "ensemble: still %d's observation %ld is in group %d, outside -1..%d",
                               s, i, st->group[i], st->ngroups - 1);
    }
    if (st->nbounds < 0 || (st->nbounds > 0 && st->ngroups > 0 && !st->bounds))
        return db_fail(err, DB_ERR_ARGUMENT, "ensemble: still %d's %d bounds need their rows", s, st->nbounds);
    if (!st->prior_mean != !st->prior_sd)
        return db_fail(err, DB_ERR_ARGUMENT, "ensemble: still %d's prior needs both its means and its sds", s);
    for (int j = 0; st->prior_sd && j < st->p; j++)
        if (!(st->prior_sd[j] > 0.0) || !isfinite(st->prior_mean[j]))
            return db_fail(err, DB_ERR_ARGUMENT, "ensemble: still %d's prior on parameter %d has sd %g and mean %g "
                                                 "(an sd > 0, INFINITY for none, and a finite mean)", s, j,
                           st->prior_sd[j], st->prior_mean[j]);
    return DB_OK;
}

int db_elm_block_new(const db_elm_problem *P, int still, db_elm_block **out, db_error *err)
{
    if (!out) return db_fail(err, DB_ERR_ARGUMENT, "db_elm_block_new: no output");
    *out = NULL;
    if (!P || !P->stills || still < 0 || still >= P->nstills)
        return db_fail(err, DB_ERR_ARGUMENT, "db_elm_block_new: no still %d", still);
    int rc = check_still(P, still, err);
    if (rc) return rc;
    db_elm_block *b = (db_elm_block *)calloc(1, sizeof *b);
    if (!b) return db_fail(err, DB_ERR_NOMEM, "ensemble: out of memory");
    const db_elm_still *st = &P->stills[still];
    b->P = P;
    b->st = st;
    b->still = still;
    b->n = st->n;
    b->p = st->p;
    b->G = st->ngroups;
    b->q = st->ngroups ? st->q : 0;
    b->nz = b->p + b->G * b->q;
    size_t n = (size_t)b->n, nz = (size_t)b->nz;
    b->model = (double *)malloc(n * sizeof(double));
    b->mu = (double *)malloc(n * sizeof(double));
    b->trial = (double *)malloc(n * sizeof(double));
    b->w = (double *)malloc(n * sizeof(double));
    b->wf = (double *)malloc(n * sizeof(double));
    b->e = (double *)malloc(n * sizeof(double));
    b->J = (double *)malloc(n * (size_t)(b->p ? b->p : 1) * sizeof(double));
    b->model_s = (double *)malloc(n * sizeof(double));
    b->J_s = (double *)malloc(n * (size_t)(b->p ? b->p : 1) * sizeof(double));
    b->x = (double *)calloc((size_t)b->p + 1, sizeof(double));
    b->A = (double *)calloc(nz * nz + 1, sizeof(double));
    b->L = (double *)calloc(nz * nz + 1, sizeof(double));
    b->gz = (double *)calloc(nz + 1, sizeof(double));
    b->t = (double *)calloc(nz + 1, sizeof(double));
    b->Dz2 = (double *)calloc(nz + 1, sizeof(double));
    b->dzf = (double *)calloc(nz + 1, sizeof(double));
    int bad = !b->model || !b->mu || !b->trial || !b->w || !b->wf || !b->e || !b->J || !b->x || !b->A || !b->L || !b->gz || !b->t ||
              !b->Dz2 || !b->dzf || !b->model_s || !b->J_s;
    if (b->G > 0 && st->nbounds > 0) {
        b->nb = st->nbounds;
        b->bounds = st->bounds;
        b->na_cap = b->G * (b->nb < b->q ? b->nb : b->q);
        size_t nc = (size_t)b->na_cap;
        b->act = (int *)calloc(nc, sizeof(int));
        b->ev = (double *)calloc(nc, sizeof(double));
        b->mult = (double *)calloc(nc, sizeof(double));
        const size_t G = (size_t)b->G, qq = (size_t)b->q * (size_t)b->q;
        b->kg = (int *)calloc(G, sizeof(int));
        b->gs = (int *)calloc(G, sizeof(int));
        b->Qg = (double *)calloc(G * qq, sizeof(double));
        b->R1 = (double *)calloc(G * qq, sizeof(double));
        b->z0 = (double *)calloc(nz, sizeof(double));
        b->wz = (int *)calloc(nz, sizeof(int));
        b->wg = (int *)calloc(nz, sizeof(int));
        bad = bad || !b->act || !b->ev || !b->mult || !b->kg || !b->gs || !b->Qg || !b->R1 || !b->z0 || !b->wz ||
              !b->wg;
    }
    if (bad) {
        db_elm_block_free(b);
        return db_fail(err, DB_ERR_NOMEM, "ensemble: out of memory for still %d (%ld observations)", still, b->n);
    }
    *out = b;
    return DB_OK;
}

long db_elm_block_columns(const db_elm_block *b, const long **cols)
{
    if (cols) *cols = b->cols;
    return b->m;
}

double db_elm_block_cost(const db_elm_block *b) { return b->cost; }

/* mu = model + local terms at y_s. With bounds, a plane lands on its bound (0 at a corner) to rounding, and where
 * the model is 0 (to rounding) at that pixel the sum is +-1e-17: a pixel with no counts whose mean is within the
 * rounding of its terms (8 eps sum |term|) of 0 has the mean 0 (cost 0, Fisher weight 0), not a rounding below 0
 * (an infinite cost that refuses the step) nor one above (a Fisher weight 1/mu of 1e17) */
static void add_local(const db_elm_block *b, const double *model, const double *y, double *mu)
{
    const db_elm_still *st = b->st;
    for (long i = 0; i < b->n; i++) {
        double v = model[i], size = fabs(v);
        int g = b->G ? st->group[i] : -1;
        if (g >= 0)
            for (int k = 0; k < b->q; k++) {
                const double t = st->basis[i * b->q + k] * y[g * b->q + k];
                v += t;
                size += fabs(t);
            }
        if (b->nb > 0 && g >= 0 && st->obs[i] == 0.0 && fabs(v) <= 8.0 * DBL_EPSILON * size) v = 0.0;
        mu[i] = v;
    }
}

static long find_long(const long *a, long n, long v) /* index of v in ascending a[n], or -1 */
{
    long lo = 0, hi = n;
    while (lo < hi) {
        long mid = lo + (hi - lo) / 2;
        if (a[mid] < v) lo = mid + 1;
        else hi = mid;
    }
    return lo < n && a[lo] == v ? lo : -1;
}

static int cmp_long(const void *a, const void *b)
{
    long x = *(const long *)a, y = *(const long *)b;
    return (x > y) - (x < y);
}

/* m-sized workspaces for m F columns (their contents are rebuilt at every linearisation and elimination) */
static int alloc_columns(db_elm_block *b, long m)
{
    size_t nz = (size_t)b->nz, mm = (size_t)(m ? m : 1);
    double **arr[7] = {&b->B, &b->Y, &b->C, &b->Sc, &b->gF, &b->dCf, &b->rc};
    size_t len[7] = {nz * mm + 1, nz * mm + 1, mm * mm, mm * mm, mm, mm, mm};
    for (int k = 0; k < 7; k++) {
        free(*arr[k]);
        *arr[k] = (double *)calloc(len[k], sizeof(double));
    }
    return b->B && b->Y && b->C && b->Sc && b->gF && b->dCf && b->rc;
}

/* Each JF entry's compact column (b->loc, -1 outside the still's columns); returns how many nonzero entries fall
 * outside. */
static long locate_entries(db_elm_block *b)
{
    const db_csr *M = &b->JF;
    long outside = 0;
    for (long k = 0; k < M->nnz; k++) {
        b->loc[k] = find_long(b->cols, b->m, M->col[k]);
        if (b->loc[k] < 0 && M->val[k] != 0.0) outside++;
    }
    return outside;
}

/* The still's F columns: every column its Jacobians have had a nonzero in, over all its linearisations. As a
 * still's orientation moves, a pixel's nearest hkl can change to one the start did not touch: that column joins
 * (b->grew is set, and db_elm_fit rebuilds the reduced system's pattern); a column once in stays in, its later
 * entries explicit zeros where they are 0. Called after locate_entries found nonzeros outside (or at the first
 * linearisation); the entries are located again here. */
static int update_pattern(db_elm_block *b, db_error *err)
{
    const db_csr *M = &b->JF;
    long cnt = 0;
    long *add = (long *)malloc(sizeof(long) * (size_t)(M->nnz ? M->nnz : 1));
    if (!add) return db_fail(err, DB_ERR_NOMEM, "ensemble: out of memory");
    for (long k = 0; k < M->nnz; k++)
        if (M->val[k] != 0.0 && b->loc[k] < 0) add[cnt++] = M->col[k];
    qsort(add, (size_t)cnt, sizeof(long), cmp_long);
    long *merged = (long *)malloc(sizeof(long) * (size_t)(b->m + cnt + 1));
    if (!merged) {
        free(add);
        return db_fail(err, DB_ERR_NOMEM, "ensemble: out of memory");
    }
    long m = 0, i = 0, j = 0; /* the union of two ascending lists, duplicates of add dropped */
    while (i < b->m || j < cnt) {
        long v = j >= cnt || (i < b->m && b->cols[i] <= add[j]) ? b->cols[i++] : add[j++];
        if (m == 0 || merged[m - 1] != v) merged[m++] = v;
    }
    free(add);
    free(b->cols);
    b->cols = merged;
    b->m = m;
    if (!alloc_columns(b, m))
        return db_fail(err, DB_ERR_NOMEM, "ensemble: out of memory for still %d's %ld structure factors", b->still, m);
    if (b->have_pattern) b->grew = 1;
    b->have_pattern = 1;
    locate_entries(b);
    return DB_OK;
}

static int check_jf(const db_elm_block *b, db_error *err)
{
    const db_csr *M = &b->JF;
    if (M->rows != b->n || M->cols != b->P->nF || !M->row_ptr || (M->nnz > 0 && (!M->col || !M->val)) ||
        M->row_ptr[0] != 0 || M->row_ptr[M->rows] != M->nnz)
        return db_fail(err, DB_ERR_ARGUMENT, "ensemble: still %d's F Jacobian is %ld x %ld (nnz %ld), not %ld x %ld",
                       b->still, M->rows, M->cols, M->nnz, b->n, b->P->nF);
    for (long i = 0; i < M->rows; i++) {
        if (M->row_ptr[i + 1] < M->row_ptr[i])
            return db_fail(err, DB_ERR_ARGUMENT, "ensemble: still %d's F Jacobian has a bad row pointer at row %ld",
                           b->still, i);
        for (long k = M->row_ptr[i]; k < M->row_ptr[i + 1]; k++) {
            if (M->col[k] < 0 || M->col[k] >= b->P->nF)
                return db_fail(err, DB_ERR_ARGUMENT, "ensemble: still %d's F Jacobian names column %ld of %ld", b->still,
                               M->col[k], b->P->nF);
            if (!isfinite(M->val[k]))
                return db_fail(err, DB_ERR_GEOMETRY, "ensemble: still %d: d mu / d F[%ld] is not finite at observation %ld",
                               b->still, M->col[k], i);
        }
    }
    return DB_OK;
}

/* The cost at mu (with local terms); infinity outside the objective's domain. When w/wf/e are not NULL also the
 * steps' weights (the floored observed curvature, as lm.c: Fisher scoring's 1/mu overstates the curvature where the
 * optimum holds means near zero, and the ensemble's weak stills with background planes crept along at rho 0.2-0.4),
 * the Fisher weights and the gradients. */
static double still_cost(const db_elm_block *b, const double *mu, double *w, double *wf, double *e)
{
    const db_elm_still *st = b->st;
    double c = 0.0;
    for (long i = 0; i < b->n; i++) {
        db_term t;
        if (!db_term_eval(DB_LM_POISSON, st->obs[i], mu[i], b->P->variance_offset, &t)) return INFINITY;
        c += t.cost;
        if (w) {
            w[i] = t.curvature;
            wf[i] = t.fisher;
            e[i] = t.grad;
        }
    }
    return isfinite(c) ? c : INFINITY;
}

/* the prior's term of the cost at the own parameters x_s (db_elm_still.prior_sd; 0 without one) */
static double prior_cost(const db_elm_block *b, const double *x_s)
{
    const db_elm_still *st = b->st;
    double c = 0.0;
    for (int j = 0; st->prior_sd && j < b->p; j++) {
        const double r = (x_s[j] - st->prior_mean[j]) / st->prior_sd[j];
        c += 0.5 * r * r;
    }
    return c;
}

/* A = Jz^T W Jz, B = Jz^T W JF, C = JF^T W JF and the gradients g_z, g_F from the still's Jacobians with weights w */
static void build_normal(db_elm_block *b, const double *w)
{
    const db_elm_still *st = b->st;
    const db_csr *M = &b->JF;
    const long n = b->n;
    const int p = b->p, q = b->q, nz = b->nz;
    const long m = b->m;
    memset(b->A, 0, sizeof(double) * (size_t)nz * (size_t)nz);
    memset(b->gz, 0, sizeof(double) * (size_t)nz);
    if (m) {
        memset(b->B, 0, sizeof(double) * (size_t)nz * (size_t)m);
        memset(b->C, 0, sizeof(double) * (size_t)m * (size_t)m);
        memset(b->gF, 0, sizeof(double) * (size_t)m);
    }
    double zr[DB_LM_MAX_PARAMS + DB_LM_MAX_LOCAL]; /* the row of Jz: x part, then the group's q basis values */
    int zi[DB_LM_MAX_PARAMS + DB_LM_MAX_LOCAL];    /* their columns in z */
    for (long i = 0; i < n; i++) {
        const double wi = w[i], ei = b->e[i];
        int len = 0;
        for (int j = 0; j < p; j++) {
            zr[len] = b->J[(size_t)j * (size_t)n + (size_t)i];
            zi[len++] = j;
        }
        int g = b->G ? st->group[i] : -1;
        if (g >= 0)
            for (int k = 0; k < q; k++) {
                zr[len] = st->basis[i * q + k];
                zi[len++] = p + g * q + k;
            }
        /* A (lower triangle; the z indices ascend along the row) and g_z */
        for (int a = 0; a < len; a++) {
            const double wa = wi * zr[a];
            b->gz[zi[a]] += zr[a] * ei;
            for (int c = 0; c <= a; c++) b->A[(size_t)zi[c] * (size_t)nz + (size_t)zi[a]] += wa * zr[c];
        }
        for (long k = M->row_ptr[i]; k < M->row_ptr[i + 1]; k++) {
            const long a = b->loc[k];
            if (a < 0) continue;
            const double v = M->val[k], wv = wi * v;
            b->gF[a] += v * ei;
            double *Ba = b->B + (size_t)a * (size_t)nz;
            for (int c = 0; c < len; c++) Ba[zi[c]] += wv * zr[c];
            for (long k2 = M->row_ptr[i]; k2 < M->row_ptr[i + 1]; k2++) {
                const long c = b->loc[k2];
                /* C[a][c] sums w v_k v_k2 over the ordered pairs of entries with compact columns (a, c), duplicates
                 * of a column within a row included; the lower triangle (c <= a) takes each such pair once */
                if (c < 0 || c > a) continue;
                b->C[(size_t)c * (size_t)m + (size_t)a] += wv * M->val[k2];
            }
        }
    }
    for (int j = 0; st->prior_sd && j < p; j++) { /* the prior's curvature and gradient (it is quadratic) */
        const double v = 1.0 / (st->prior_sd[j] * st->prior_sd[j]);
        b->A[(size_t)j * (size_t)nz + (size_t)j] += v;
        b->gz[j] += (b->x[j] - st->prior_mean[j]) * v;
    }
    for (int a = 0; a < nz; a++)
        for (int c = a + 1; c < nz; c++) b->A[(size_t)c * (size_t)nz + (size_t)a] = b->A[(size_t)a * (size_t)nz + (size_t)c];
}

/* The diagonals of A and C with the Fisher weights (the scalings'; duplicate columns within a row, which C's
 * diagonal would pair, are counted singly: a scaling needs the size, not the bits) */
static void fisher_diagonals(db_elm_block *b)
{
    const db_elm_still *st = b->st;
    const db_csr *M = &b->JF;
    const long n = b->n;
    const int p = b->p, q = b->q;
    memset(b->dzf, 0, sizeof(double) * (size_t)b->nz);
    if (b->m) memset(b->dCf, 0, sizeof(double) * (size_t)b->m);
    for (long i = 0; i < n; i++) {
        const double wi = b->wf[i];
        for (int j = 0; j < p; j++) {
            const double v = b->J[(size_t)j * (size_t)n + (size_t)i];
            b->dzf[j] += wi * v * v;
        }
        const int g = b->G ? st->group[i] : -1;
        if (g >= 0)
            for (int k = 0; k < q; k++) {
                const double v = st->basis[i * q + k];
                b->dzf[p + g * q + k] += wi * v * v;
            }
        for (long k = M->row_ptr[i]; k < M->row_ptr[i + 1]; k++)
            if (b->loc[k] >= 0) b->dCf[b->loc[k]] += wi * M->val[k] * M->val[k];
    }
    for (int j = 0; st->prior_sd && j < p; j++) b->dzf[j] += 1.0 / (st->prior_sd[j] * st->prior_sd[j]);
}

static int linearise_rendered(db_elm_block *b, const double *x_s, const double *y_s, db_error *err);

int db_elm_block_linearise(db_elm_block *b, const double *x_s, const double *y_s, const double *F, db_error *err)
{
    const db_elm_problem *P = b->P;
    int rc = P->evaluate(P->user, b->still, x_s, F, b->model, b->J, &b->JF, err);
    if (rc == DB_LM_INFEASIBLE)
        return db_fail(err, DB_ERR_ARGUMENT, "ensemble: still %d's model refuses the parameters it is linearised at",
                       b->still);
    if (rc) return rc;
    return linearise_rendered(b, x_s, y_s, err);
}

/* the speculative trial's render (model_s, J_s, JF_s) becomes the linearisation's: the step was accepted */
static int adopt_trial(db_elm_block *b, const double *x_s, const double *y_s, db_error *err)
{
    double *t = b->model;
    b->model = b->model_s;
    b->model_s = t;
    t = b->J;
    b->J = b->J_s;
    b->J_s = t;
    const db_csr c = b->JF;
    b->JF = b->JF_s;
    b->JF_s = c;
    return linearise_rendered(b, x_s, y_s, err);
}

/* the linearisation from the model, J and JF rendered at x_s: the means, cost, weights and normal matrices */
static int linearise_rendered(db_elm_block *b, const double *x_s, const double *y_s, db_error *err)
{
    const db_elm_problem *P = b->P;
    const db_elm_still *st = b->st;
    const long n = b->n;
    const int p = b->p;
    int rc;
    if ((rc = check_jf(b, err))) return rc;
    add_local(b, b->model, y_s, b->mu);
    if (p) memcpy(b->x, x_s, sizeof(double) * (size_t)p);
    b->cost = still_cost(b, b->mu, b->w, b->wf, b->e);
    if (b->cost != INFINITY) b->cost += prior_cost(b, x_s);
    if (b->cost == INFINITY) {
        for (long i = 0; i < n; i++) {
            db_term t;
            if (!db_term_eval(DB_LM_POISSON, st->obs[i], b->mu[i], P->variance_offset, &t))
                return db_fail(err, DB_ERR_ARGUMENT, "ensemble: still %d's model is %g at observation %ld: the Poisson "
                                                     "likelihood needs a positive mean", b->still, b->mu[i], i);
        }
        return db_fail(err, DB_ERR_ARGUMENT, "ensemble: still %d's cost is not finite", b->still);
    }
    for (long k = 0; k < (long)n * p; k++)
        if (!isfinite(b->J[k]))
            return db_fail(err, DB_ERR_GEOMETRY, "ensemble: still %d: d mu / d x[%ld] is not finite at observation %ld",
                           b->still, k / n, k % n);
    const db_csr *M = &b->JF;
    if (M->nnz > b->loc_cap) {
        long *l = (long *)realloc(b->loc, sizeof(long) * (size_t)M->nnz);
        if (!l) return db_fail(err, DB_ERR_NOMEM, "ensemble: out of memory");
        b->loc = l;
        b->loc_cap = M->nnz;
    }
    if ((locate_entries(b) > 0 || !b->have_pattern) && (rc = update_pattern(b, err))) return rc;
    build_normal(b, b->w);
    fisher_diagonals(b);
    for (int k = 0; k < b->nz; k++)
        if (b->dzf[k] > b->Dz2[k]) b->Dz2[k] = b->dzf[k];
    return DB_OK;
}

/* The still's normal matrices with the Fisher weights instead of the steps' (the uncertainties'), from the Jacobians
 * of its last linearisation; the gradients are the same with either. */
/* A pixel's Fisher weight 1/mu grows without bound as its mean goes to 0. A background plane pinned to 0 by its
 * bounds under a sharp spot's far tail gives means of 1e-289 at one pixel and 1e-20 at the next (the 20-cell
 * bench's seed 3): one pixel's weight outweighs its box's others by more than 1/DBL_EPSILON, and in the still's
 * Cholesky the plane's other directions cancel to exactly 0, so the block is "not positive definite" and every
 * sigma of the fit came out undetermined. Such a pixel expects no count (P(count > 0) ~ mu); what it carries is the
 * bound's information, pinning the plane. Its weight is capped at FISHER_CAP_RATIO over the still's mean pixel
 * mean: the pinned direction keeps a variance ~1e-6 of a typical one (a near-constraint, as the bound is), the
 * weights within a block then span at most ~1e6 over the typical one (well inside double precision), and no pixel
 * with a mean above 1e-6 of the still's mean changes weight (tests/ensemble/test_ensemble_lm.c test 13). */
#define FISHER_CAP_RATIO 1e6
static void use_fisher_weights(db_elm_block *b)
{
    const db_elm_still *st = b->st;
    double mean = 0.0;
    for (long i = 0; i < b->n; i++) mean += b->mu[i] + b->P->variance_offset;
    mean /= (double)b->n;
    if (mean > 0.0) {
        const double cap = FISHER_CAP_RATIO / mean;
        for (long i = 0; i < b->n; i++) {
            if (b->wf[i] > cap) b->wf[i] = cap;
            /* the limit of a mean going to 0 (1/mu capped): an empty pixel whose mean the bounds hold at exactly 0
             * (db_term_eval gives it no weight) pins its plane as its neighbours at 1e-300 do. Without it a box
             * with no count and no spot, its plane 0 at every corner, has no information on its plane at all, and
             * its still's block, hence every sigma of the fit, came out undetermined (seed 5, N = 300) */
            if (b->nb > 0 && st->group[i] >= 0 && st->obs[i] == 0.0 && b->mu[i] + b->P->variance_offset == 0.0)
                b->wf[i] = cap;
        }
    }
    build_normal(b, b->wf);
}

/* In-place Cholesky of the lower triangle of the column-major nz x nz matrix L (A = L L^T). 0 when not positive
 * definite. */
static int cholesky(double *L, int nz)
{
    for (int j = 0; j < nz; j++) {
        double d = L[(size_t)j * nz + j];
        for (int k = 0; k < j; k++) d -= L[(size_t)k * nz + j] * L[(size_t)k * nz + j];
        if (!(d > 0.0) || !isfinite(d)) return 0;
        d = sqrt(d);
        L[(size_t)j * nz + j] = d;
        for (int i = j + 1; i < nz; i++) {
            double v = L[(size_t)j * nz + i];
            for (int k = 0; k < j; k++) v -= L[(size_t)k * nz + i] * L[(size_t)k * nz + j];
            L[(size_t)j * nz + i] = v / d;
        }
    }
    return 1;
}

static void forward(const double *L, int nz, double *v) /* v = L^-1 v */
{
    for (int i = 0; i < nz; i++) {
        double s = v[i];
        for (int k = 0; k < i; k++) s -= L[(size_t)k * nz + i] * v[k];
        v[i] = s / L[(size_t)i * nz + i];
    }
}

static void backward(const double *L, int nz, double *v) /* v = L^-T v */
{
    for (int i = nz - 1; i >= 0; i--) {
        double s = v[i];
        for (int k = i + 1; k < nz; k++) s -= L[(size_t)i * nz + k] * v[k];
        v[i] = s / L[(size_t)i * nz + i];
    }
}

static double damping_weight(const db_elm_block *b, int k) { return b->Dz2[k] > 0.0 ? b->Dz2[k] : 1.0; }

/* no active bound: T = I and nzr = nz (group_bases), the plain elimination */
static int unconstrained(const db_elm_block *b) { return b->na == 0; }

/* v less its projections on the c orthonormal columns of Qm (q long), twice (Gram-Schmidt's second pass restores
 * the orthogonality the first loses for nearly parallel rows); the coefficients are added to coef[c] when coef.
 * Returns |v|^2 after. */
static double project_off(const double *Qm, int c, int q, double *v, double *coef)
{
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < c; i++) {
            const double *qi = Qm + (size_t)i * q;
            double d = 0.0;
            for (int l = 0; l < q; l++) d += qi[l] * v[l];
            for (int l = 0; l < q; l++) v[l] -= d * qi[l];
            if (coef) coef[i] += d;
        }
    double n2 = 0.0;
    for (int l = 0; l < q; l++) n2 += v[l] * v[l];
    return n2;
}

/* The active bounds' groups and the free unknowns (the null-space form above): sorts act (with ev) by (group,
 * bound), and per group with k active bounds builds Q1 R1 = E_g^T by Gram-Schmidt (twice: the rows are nearly
 * parallel only when activate's test lets them, and then one pass loses orthogonality), completes Q1 with the unit
 * vectors that stay largest once projected off, and sets y0_g = Q1 R1^-T e_g. Without active bounds nzr = nz and
 * T = I. */
static void group_bases(db_elm_block *b)
{
    const int p = b->p, q = b->q, na = b->na;
    b->nzr = b->nz;
    if (!b->nb) return;
    for (int a = 1; a < na; a++) /* insertion sort: the sets are small and nearly sorted */
        for (int c = a; c > 0 && b->act[c - 1] > b->act[c]; c--) {
            const int ta = b->act[c];
            const double te = b->ev[c];
            b->act[c] = b->act[c - 1];
            b->ev[c] = b->ev[c - 1];
            b->act[c - 1] = ta;
            b->ev[c - 1] = te;
        }
    memset(b->kg, 0, sizeof(int) * (size_t)b->G);
    memset(b->z0, 0, sizeof(double) * (size_t)b->nz);
    for (int a = na - 1; a >= 0; a--) {
        const int g = b->act[a] / b->nb;
        b->kg[g]++;
        b->gs[g] = a;
    }
    int j = 0;
    for (; j < p; j++) {
        b->wz[j] = j;
        b->wg[j] = -1;
    }
    for (int g = 0; g < b->G; g++) {
        const int k = b->kg[g];
        if (k == 0) {
            for (int l = 0; l < q; l++, j++) {
                b->wz[j] = p + g * q + l;
                b->wg[j] = -1;
            }
            continue;
        }
        double *Qm = b->Qg + (size_t)g * q * q, *R = b->R1 + (size_t)g * q * q;
        memset(R, 0, sizeof(double) * (size_t)q * q);
        for (int c = 0; c < k; c++) { /* Q1 column c and R1 column c from the bound's row */
            const double *row = b->bounds + (size_t)b->act[b->gs[g] + c] * q;
            double *qc = Qm + (size_t)c * q;
            for (int l = 0; l < q; l++) qc[l] = row[l];
            const double nrm = sqrt(project_off(Qm, c, q, qc, R + c * q));
            R[c * q + c] = nrm;
            for (int l = 0; l < q; l++) qc[l] /= nrm;
        }
        for (int c = k; c < q; c++) { /* N_g: the unit vector left largest by the projection, one at a time */
            double *qc = Qm + (size_t)c * q, best = -1.0;
            double cand[DB_LM_MAX_LOCAL];
            for (int u = 0; u < q; u++) {
                for (int l = 0; l < q; l++) cand[l] = l == u;
                const double nrm = project_off(Qm, c, q, cand, NULL);
                if (nrm > best) {
                    best = nrm;
                    for (int l = 0; l < q; l++) qc[l] = cand[l];
                }
            }
            best = sqrt(best);
            for (int l = 0; l < q; l++) qc[l] /= best;
            b->wz[j] = p + g * q;
            b->wg[j++] = c;
        }
        double sv[DB_LM_MAX_LOCAL]; /* R1^T s = e (forward), y0 = Q1 s */
        for (int c = 0; c < k; c++) {
            double v = b->ev[b->gs[g] + c];
            for (int i = 0; i < c; i++) v -= R[c * q + i] * sv[i];
            sv[c] = v / R[c * q + c];
        }
        for (int l = 0; l < q; l++) {
            double v = 0.0;
            for (int c = 0; c < k; c++) v += Qm[(size_t)c * q + l] * sv[c];
            b->z0[p + g * q + l] = v;
        }
    }
    b->nzr = j;
}

/* free unknown j's column of T: its z indices and values (1 entry for a unit, q for a group's basis column) */
static int t_column(const db_elm_block *b, int j, int *idx, double *val)
{
    if (unconstrained(b)) {
        idx[0] = j;
        val[0] = 1.0;
        return 1;
    }
    if (b->wg[j] < 0) {
        idx[0] = b->wz[j];
        val[0] = 1.0;
        return 1;
    }
    const int q = b->q, g = (b->wz[j] - b->p) / q;
    const double *col = b->Qg + ((size_t)g * q + b->wg[j]) * q;
    for (int l = 0; l < q; l++) {
        idx[l] = b->wz[j] + l;
        val[l] = col[l];
    }
    return q;
}

/* out[nzr] = T^T v[nz] */
static void t_transpose(const db_elm_block *b, const double *v, double *out)
{
    int idx[DB_LM_MAX_LOCAL];
    double val[DB_LM_MAX_LOCAL];
    for (int j = 0; j < b->nzr; j++) {
        const int len = t_column(b, j, idx, val);
        double s = 0.0;
        for (int l = 0; l < len; l++) s += val[l] * v[idx[l]];
        out[j] = s;
    }
}

/* (M v)_i = (A v)_i + lambda D2_i v_i for the rows i of [i0, i1) (A is stored whole) */
static void damped_product(const db_elm_block *b, const double *v, int i0, int i1, double *out)
{
    const int nz = b->nz;
    for (int i = i0; i < i1; i++) {
        double s = b->lambda * damping_weight(b, i) * v[i];
        for (int k = 0; k < nz; k++) s += b->A[(size_t)k * nz + i] * v[k];
        out[i - i0] = s;
    }
}

/* The factor of T^T M T, M = A + lambda D2 (with the active set's T: group_bases first); 0 when not positive
 * definite. Without active bounds it is M's factor, operation for operation as before the bounds. */
static int factor(db_elm_block *b, double lambda)
{
    const int nz = b->nz, nr = b->nzr;
    b->lambda = lambda;
    if (unconstrained(b)) {
        for (int j = 0; j < nz; j++)
            for (int i = j; i < nz; i++) b->L[(size_t)j * nz + i] = b->A[(size_t)j * nz + i];
        for (int j = 0; j < nz; j++) b->L[(size_t)j * nz + j] += lambda * damping_weight(b, j);
        return cholesky(b->L, nz);
    }
    int ia[DB_LM_MAX_LOCAL], ib[DB_LM_MAX_LOCAL];
    double va[DB_LM_MAX_LOCAL], vb[DB_LM_MAX_LOCAL];
    for (int j = 0; j < nr; j++) {
        const int lb = t_column(b, j, ib, vb);
        for (int i = j; i < nr; i++) {
            const int la = t_column(b, i, ia, va);
            double s = 0.0;
            for (int x = 0; x < la; x++)
                for (int y = 0; y < lb; y++) {
                    double m = b->A[(size_t)ib[y] * nz + ia[x]];
                    if (ia[x] == ib[y]) m += lambda * damping_weight(b, ia[x]);
                    s += va[x] * m * vb[y];
                }
            b->L[(size_t)j * nr + i] = s;
        }
    }
    return cholesky(b->L, nr);
}

/* The still's share of the reduced system from the factor: with t = L^-1 T^T (g_z + M z0) and Y = L^-1 T^T B,
 * C - Y^T Y and g_F + B^T z0 - Y^T t (the Schur complement of the free unknowns, z0's gradient added). */
static void reduce_share(db_elm_block *b)
{
    const int nz = b->nz, nr = b->nzr;
    const long m = b->m;
    const int plain = unconstrained(b);
    double buf[DB_LM_MAX_PARAMS + 1];
    double *u = nz <= DB_LM_MAX_PARAMS ? buf : (double *)malloc(sizeof(double) * (size_t)nz);
    if (!u) { /* cannot happen for small blocks; a large one's failed malloc leaves no share (the step fails) */
        b->eliminated_ok = 0;
        return;
    }
    if (plain) memcpy(b->t, b->gz, sizeof(double) * (size_t)nz);
    else {
        damped_product(b, b->z0, 0, nz, u);
        for (int k = 0; k < nz; k++) u[k] += b->gz[k];
        t_transpose(b, u, b->t);
    }
    forward(b->L, nr, b->t);
    for (long a = 0; a < m; a++) {
        double *Ya = b->Y + (size_t)a * (size_t)nz;
        const double *Ba = b->B + (size_t)a * (size_t)nz;
        if (plain) memcpy(Ya, Ba, sizeof(double) * (size_t)nz);
        else t_transpose(b, Ba, Ya);
        forward(b->L, nr, Ya);
    }
    for (long c = 0; c < m; c++) {
        const double *Yc = b->Y + (size_t)c * (size_t)nz;
        double r = b->gF[c];
        if (!plain) {
            const double *Bc = b->B + (size_t)c * (size_t)nz;
            for (int k = b->p; k < nz; k++) r += Bc[k] * b->z0[k];
        }
        for (int k = 0; k < nr; k++) r -= Yc[k] * b->t[k];
        b->rc[c] = r;
        for (long a = c; a < m; a++) {
            const double *Ya = b->Y + (size_t)a * (size_t)nz;
            double v = b->C[(size_t)c * (size_t)m + (size_t)a];
            for (int k = 0; k < nr; k++) v -= Ya[k] * Yc[k];
            b->Sc[(size_t)c * (size_t)m + (size_t)a] = v;
        }
    }
    if (u != buf) free(u);
}

int db_elm_block_eliminate(db_elm_block *b, double lambda)
{
    b->eliminated_ok = 0;
    group_bases(b);
    if (!factor(b, lambda)) return 0;
    b->eliminated_ok = 1;
    reduce_share(b);
    return b->eliminated_ok;
}

/* dz (the damping is the last factor's) and, when mult (may be NULL), the active bounds' Lagrange multipliers:
 * with r = g_z + M z0 + B dF, w = -(T^T M T)^-1 T^T r and dz = z0 + T w; then M dz + g_z + B dF = E^T mult on each
 * group with active bounds, so mult_g = R1^-1 Q1^T (M dz + g_z + B dF)_g. Needs only the factor (not
 * reduce_share's Y and t), so that a still can try active sets against a held dF cheaply. */
static void back_substitute(const db_elm_block *b, const double *dF, double *dz, double *mult, double *gd, double *dDd)
{
    const int nz = b->nz, nr = b->nzr, p = b->p, q = b->q;
    if (!nz) return;
    const int plain = unconstrained(b);
    double buf[3 * (DB_LM_MAX_PARAMS + 1)];
    double *r = nz <= DB_LM_MAX_PARAMS ? buf : (double *)malloc(sizeof(double) * 3 * (size_t)nz), *w = r + nz,
           *bd = w + nz;
    if (!r) { /* cannot happen for small blocks; for large ones malloc failure leaves dz at 0 */
        memset(dz, 0, sizeof(double) * (size_t)nz);
        return;
    }
    memset(bd, 0, sizeof(double) * (size_t)nz); /* B dF */
    for (long a = 0; a < b->m; a++) {
        const double d = dF[b->cols[a]];
        if (d == 0.0) continue;
        const double *Ba = b->B + (size_t)a * (size_t)nz;
        for (int k = 0; k < nz; k++) bd[k] += Ba[k] * d;
    }
    if (plain) {
        for (int k = 0; k < nz; k++) w[k] = b->gz[k] + bd[k];
    } else {
        damped_product(b, b->z0, 0, nz, r);
        for (int k = 0; k < nz; k++) r[k] += b->gz[k] + bd[k];
        t_transpose(b, r, w);
    }
    forward(b->L, nr, w);
    backward(b->L, nr, w);
    if (plain)
        for (int k = 0; k < nz; k++) dz[k] = -w[k];
    else {
        memcpy(dz, b->z0, sizeof(double) * (size_t)nz);
        int idx[DB_LM_MAX_LOCAL];
        double val[DB_LM_MAX_LOCAL];
        for (int j = 0; j < nr; j++) {
            const int len = t_column(b, j, idx, val);
            for (int l = 0; l < len; l++) dz[idx[l]] -= val[l] * w[j];
        }
    }
    for (int g = 0; mult && g < b->G && b->na > 0; g++) {
        const int k = b->kg[g], i0 = p + g * q;
        if (!k) continue;
        double rg[DB_LM_MAX_LOCAL], cm[DB_LM_MAX_LOCAL];
        damped_product(b, dz, i0, i0 + q, rg);
        for (int l = 0; l < q; l++) rg[l] += b->gz[i0 + l] + bd[i0 + l];
        const double *Qm = b->Qg + (size_t)g * q * q, *R = b->R1 + (size_t)g * q * q;
        for (int c = k - 1; c >= 0; c--) { /* R1 cm = Q1^T r_g (back substitution: R1 is upper) */
            double v = 0.0;
            for (int l = 0; l < q; l++) v += Qm[(size_t)c * q + l] * rg[l];
            for (int i = c + 1; i < k; i++) v -= R[i * q + c] * cm[i];
            cm[c] = v / R[c * q + c];
        }
        for (int c = 0; c < k; c++) mult[b->gs[g] + c] = cm[c];
    }
    double g = 0.0, qd = 0.0;
    for (int k = 0; k < nz; k++) {
        g += b->gz[k] * dz[k];
        qd += damping_weight(b, k) * dz[k] * dz[k];
    }
    if (gd) *gd += g;
    if (dDd) *dDd += qd;
    if (r != buf) free(r);
}

void db_elm_block_back_substitute(const db_elm_block *b, const double *dF, double *dz, double *gd, double *dDd)
{
    back_substitute(b, dF, dz, NULL, gd, dDd);
}

/* The still's share d^T N d of the undamped quadratic model along d = (dz, dF): dz A dz + 2 dF B^T dz + dF C dF */
static double still_quad(const db_elm_block *b, const double *dz, const double *dF)
{
    const int nz = b->nz;
    const long m = b->m;
    double qd = 0.0;
    for (int j = 0; j < nz; j++) {
        double v = 0.0;
        for (int i = 0; i < nz; i++) v += b->A[(size_t)j * nz + i] * dz[i];
        qd += dz[j] * v;
    }
    for (long c = 0; c < m; c++) {
        const double dc = dF[b->cols[c]];
        if (dc == 0.0) continue;
        const double *Bc = b->B + (size_t)c * (size_t)nz;
        double v = 0.0;
        for (int k = 0; k < nz; k++) v += Bc[k] * dz[k];
        qd += 2.0 * dc * v;
        const double *Cc = b->C + (size_t)c * (size_t)m; /* column c: rows a >= c */
        double w = 0.0;
        for (long a = c + 1; a < m; a++) w += Cc[a] * dF[b->cols[a]];
        qd += dc * (Cc[c] * dc + 2.0 * w);
    }
    return qd;
}

/* ---- the bounds' active set (as lm.c's, per still) */

/* c . y_g of bound bi of group g, and the size sum |c_k y_k| its rounding is judged against */
static double bound_value(const db_elm_block *b, int g, int bi, const double *y, double *size)
{
    const int q = b->q;
    const double *c = b->bounds + ((size_t)g * b->nb + bi) * q;
    double v = 0.0, sz = 0.0;
    for (int k = 0; k < q; k++) {
        v += c[k] * y[g * q + k];
        sz += fabs(c[k] * y[g * q + k]);
    }
    if (size) *size = sz;
    return v;
}

/* Makes bound bi of group g active, landing on it (c . dy_g = -now), when it is independent of the group's active
 * rows (the Gram determinant of the rows relative to the product of their norms, as lm.c); 1 when made active. */
static int activate(db_elm_block *b, int g, int bi, double now)
{
    const int q = b->q, nb = b->nb;
    const double *rows[DB_LM_MAX_LOCAL + 1];
    int n = 0;
    for (int a = 0; a < b->na; a++)
        if (b->act[a] / nb == g) {
            if (n >= q) return 0;
            rows[n++] = b->bounds + (size_t)b->act[a] * q;
        }
    if (n >= q || b->na >= b->na_cap) return 0;
    rows[n++] = b->bounds + ((size_t)g * nb + bi) * q;
    double Gm[(DB_LM_MAX_LOCAL + 1) * (DB_LM_MAX_LOCAL + 1)], scale = 1.0;
    for (int a = 0; a < n; a++)
        for (int c = 0; c < n; c++) {
            double v = 0.0;
            for (int k = 0; k < q; k++) v += rows[a][k] * rows[c][k];
            Gm[c * n + a] = v;
        }
    for (int a = 0; a < n; a++) scale *= Gm[a * n + a];
    if (!(scale > 0.0) || !cholesky(Gm, n)) return 0;
    double det = 1.0;
    for (int a = 0; a < n; a++) det *= Gm[a * n + a] * Gm[a * n + a];
    if (det < 1e-10 * scale) return 0;
    b->act[b->na] = g * nb + bi;
    b->ev[b->na] = -now;
    b->na++;
    return 1;
}

/* The active set at a step's start: the bounds that hold with equality (the step stays on them). */
static void start_active(db_elm_block *b, const double *y)
{
    b->na = 0;
    b->changed = 0;
    for (int g = 0; g < b->G; g++)
        for (int bi = 0; bi < b->nb; bi++) {
            double size, now = bound_value(b, g, bi, y, &size);
            if (now <= 1e-12 * size) activate(b, g, bi, now);
        }
}

/* One round of the active-set method from the last back-substitution (dy, b->mult): in each group the active bound
 * with the most negative multiplier is released; when none is, the bounds the step would cross are made active.
 * Returns 1 when the active set changed. */
static int update_active(db_elm_block *b, const double *y, const double *dy)
{
    const int q = b->q, nb = b->nb;
    int any = 0, keep = 0;
    for (int g = 0; g < b->G && b->na > 0; g++) {
        int worst = -1;
        for (int a = 0; a < b->na; a++)
            if (b->act[a] / nb == g && b->mult[a] < 0.0 && (worst < 0 || b->mult[a] < b->mult[worst])) worst = a;
        if (worst >= 0) {
            b->act[worst] = -1 - b->act[worst]; /* marked */
            any = 1;
        }
    }
    if (any) {
        for (int a = 0; a < b->na; a++)
            if (b->act[a] >= 0) {
                b->act[keep] = b->act[a];
                b->ev[keep++] = b->ev[a];
            }
        b->na = keep;
        return 1;
    }
    for (int g = 0; g < b->G; g++)
        for (int bi = 0; bi < nb; bi++) {
            int on = 0;
            for (int a = 0; a < b->na && !on; a++) on = b->act[a] == g * nb + bi;
            if (on) continue;
            const double *c = b->bounds + ((size_t)g * nb + bi) * q;
            double size, now = bound_value(b, g, bi, y, &size), change = 0.0;
            for (int k = 0; k < q; k++) {
                change += c[k] * dy[g * q + k];
                size += fabs(c[k] * dy[g * q + k]);
            }
            if (now + change < -1e-12 * size && activate(b, g, bi, now)) any = 1;
        }
    return any;
}

/* ======================================================================== the reduced system */

struct db_elm_reduced {
    long nF, nR;
    long *ridx;            /* [nF] reduced index of a global column, -1 when not refined */
    long *gidx;            /* [nR] global column of a reduced one */
    cholmod_common c;
    int started;
    cholmod_sparse *S;     /* lower triangle, columns' rows ascending */
    cholmod_factor *L;
    long nnz;
    long *diag;            /* [nR] position of each diagonal entry */
    double *acc;           /* [nnz + 3 nR]: S's values, r, g_F, diag(sum C) */
    double *DF2;           /* [nR] squared scaling of F */
    /* the steps' second-order F term (db_elm_problem.F_squared): the point it is taken at (NULL: none, as for the
     * uncertainties), how many leading global columns are structure factors, and the term per column [nR] */
    const double *F_at;
    long nF_squared;
    double *F2nd;
    /* the present factor is of S + lambda D_F at factored_lambda (factored: a good one exists); what the later
     * rounds of a step re-solve against (db_elm_reduced_resolve) */
    int factored;
    double factored_lambda;
    double *work;          /* [4 nR] the re-solve's vectors */
    long pcg_iterations;   /* re-solves' iterations and their fallbacks to a new factor, for the reports */
    int refactors;
};

void db_elm_reduced_free(db_elm_reduced *R)
{
    if (!R) return;
    if (R->started) {
        cholmod_l_free_sparse(&R->S, &R->c);
        cholmod_l_free_factor(&R->L, &R->c);
        cholmod_l_finish(&R->c);
    }
    free(R->ridx);
    free(R->gidx);
    free(R->diag);
    free(R->acc);
    free(R->DF2);
    free(R->F2nd);
    free(R->work);
    free(R);
}

int db_elm_reduced_new(long nF, int nstills, const long *counts, const long *const *cols, db_elm_reduced **out,
                       db_error *err)
{
    if (!out) return db_fail(err, DB_ERR_ARGUMENT, "db_elm_reduced_new: no output");
    *out = NULL;
    if (nF < 0 || nstills < 0 || (nstills && (!counts || !cols)))
        return db_fail(err, DB_ERR_ARGUMENT, "db_elm_reduced_new: bad sizes");
    db_elm_reduced *R = (db_elm_reduced *)calloc(1, sizeof *R);
    if (!R) return db_fail(err, DB_ERR_NOMEM, "ensemble: out of memory");
    R->nF = nF;
    R->ridx = (long *)malloc(sizeof(long) * (size_t)(nF ? nF : 1));
    long *inc_ptr = NULL, *inc = NULL, *mark = NULL, *colcount = NULL;
    int rc = DB_OK;
    if (!R->ridx) goto nomem;
    for (long j = 0; j < nF; j++) R->ridx[j] = -1;
    long total = 0;
    for (int s = 0; s < nstills; s++) {
        for (long a = 0; a < counts[s]; a++) {
            long j = cols[s][a];
            if (j < 0 || j >= nF || (a > 0 && cols[s][a - 1] >= j)) {
                rc = db_fail(err, DB_ERR_ARGUMENT, "db_elm_reduced_new: still %d's columns are not ascending in 0..%ld", s,
                             nF - 1);
                goto fail;
            }
            R->ridx[j] = 0;
        }
        total += counts[s];
    }
    for (long j = 0; j < nF; j++)
        if (R->ridx[j] == 0) R->ridx[j] = R->nR++;
    const long nR = R->nR;
    R->gidx = (long *)malloc(sizeof(long) * (size_t)(nR ? nR : 1));
    R->diag = (long *)malloc(sizeof(long) * (size_t)(nR ? nR : 1));
    R->DF2 = (double *)calloc((size_t)(nR ? nR : 1), sizeof(double));
    R->F2nd = (double *)calloc((size_t)(nR ? nR : 1), sizeof(double));
    inc_ptr = (long *)calloc((size_t)nR + 1, sizeof(long));
    inc = (long *)malloc(sizeof(long) * (size_t)(total ? total : 1));
    mark = (long *)malloc(sizeof(long) * (size_t)(nR ? nR : 1));
    colcount = (long *)calloc((size_t)nR + 1, sizeof(long));
    if (!R->gidx || !R->diag || !R->DF2 || !R->F2nd || !inc_ptr || !inc || !mark || !colcount) goto nomem;
    for (long j = 0; j < nF; j++)
        if (R->ridx[j] >= 0) R->gidx[R->ridx[j]] = j;
    /* the stills touching each reduced column (column -> stills incidence) */
    for (int s = 0; s < nstills; s++)
        for (long a = 0; a < counts[s]; a++) inc_ptr[R->ridx[cols[s][a]] + 1]++;
    for (long j = 0; j < nR; j++) inc_ptr[j + 1] += inc_ptr[j];
    {
        long *fill = (long *)malloc(sizeof(long) * (size_t)(nR ? nR : 1));
        if (!fill) goto nomem;
        memcpy(fill, inc_ptr, sizeof(long) * (size_t)nR);
        for (int s = 0; s < nstills; s++)
            for (long a = 0; a < counts[s]; a++) inc[fill[R->ridx[cols[s][a]]]++] = s;
        free(fill);
    }
    /* column j of the lower triangle: the union of the rows >= j of the stills touching j. Counted, then filled */
    for (long j = 0; j < nR; j++) mark[j] = -1;
    for (int pass = 0; pass < 2; pass++) {
        long pos = 0;
        for (long j = 0; j < nR; j++) {
            long start = pos;
            for (long k = inc_ptr[j]; k < inc_ptr[j + 1]; k++) {
                int s = (int)inc[k];
                long a0 = find_long(cols[s], counts[s], R->gidx[j]);
                for (long a = a0; a < counts[s]; a++) {
                    long i = R->ridx[cols[s][a]];
                    if (mark[i] == j) continue;
                    mark[i] = j;
                    if (pass == 1) ((long *)R->S->i)[pos] = i;
                    pos++;
                }
            }
            if (pass == 0) colcount[j] = pos - start;
            else {
                qsort((long *)R->S->i + start, (size_t)(pos - start), sizeof(long), cmp_long);
                R->diag[j] = start; /* the smallest row of column j is j itself */
            }
        }
        if (pass == 0) {
            R->nnz = pos;
            cholmod_l_start(&R->c);
            R->started = 1;
            R->c.print = 0; /* failures come back as return values, told through db_error */
            R->c.supernodal = CHOLMOD_AUTO;
            R->c.supernodal_switch = 200.0;
            /* The reduced system fills in to nearly dense (bench, 300 stills: L holds 215k of the 211k entries of
             * a dense 650 x 650 triangle), and CHOLMOD's default amalgamation (nrelax 4/16/48, zrelax
             * 0.8/0.1/0.05) left it in 54 supernodes of about 12 columns, whose small BLAS calls ran at 4
             * GFlop/s: 6.0 ms a factor. Merging supernodes while the result stays at least half nonzero (and
             * unconditionally up to 16 columns) gives 27 larger ones: 3.5 ms. A merge that is half zeros at most
             * doubles that supernode's work, so a sparser system stays sparse. */
            R->c.nrelax[0] = 16;
            R->c.nrelax[1] = 64;
            R->c.nrelax[2] = 256;
            R->c.zrelax[0] = 0.8;
            R->c.zrelax[1] = 0.5;
            R->c.zrelax[2] = 0.3;
            R->S = cholmod_l_allocate_sparse((size_t)nR, (size_t)nR, (size_t)(pos ? pos : 1), 1, 1, -1, CHOLMOD_REAL,
                                             &R->c);
            if (!R->S) goto nomem;
            long *Sp = (long *)R->S->p;
            Sp[0] = 0;
            for (long j = 0; j < nR; j++) Sp[j + 1] = Sp[j] + colcount[j];
            for (long j = 0; j < nR; j++) mark[j] = -1;
        }
    }
    memset(R->S->x, 0, sizeof(double) * (size_t)(R->nnz ? R->nnz : 1));
    R->acc = (double *)calloc((size_t)(R->nnz + 3 * nR + 1), sizeof(double));
    R->work = (double *)malloc(sizeof(double) * (size_t)(4 * nR + 1));
    if (!R->acc || !R->work) goto nomem;
    if (nR) {
        R->L = cholmod_l_analyze(R->S, &R->c);
        if (!R->L) {
            rc = db_fail(err, DB_ERR_INTERNAL, "ensemble: CHOLMOD's analysis of the %ld x %ld reduced system failed (status %d)",
                         nR, nR, R->c.status);
            goto fail;
        }
    }
    free(inc_ptr);
    free(inc);
    free(mark);
    free(colcount);
    *out = R;
    return DB_OK;
nomem:
    rc = db_fail(err, DB_ERR_NOMEM, "ensemble: out of memory for the reduced system over %ld structure factors", nF);
fail:
    free(inc_ptr);
    free(inc);
    free(mark);
    free(colcount);
    db_elm_reduced_free(R);
    return rc;
}

long db_elm_reduced_refined(const db_elm_reduced *R, unsigned char *mask)
{
    if (mask)
        for (long j = 0; j < R->nF; j++) mask[j] = R->ridx[j] >= 0;
    return R->nR;
}

void db_elm_reduced_zero(db_elm_reduced *R) { memset(R->acc, 0, sizeof(double) * (size_t)(R->nnz + 3 * R->nR)); }

double *db_elm_reduced_values(db_elm_reduced *R, long *count)
{
    if (count) *count = R->nnz + 3 * R->nR;
    return R->acc;
}

void db_elm_reduced_add(db_elm_reduced *R, const db_elm_block *b)
{
    const long m = b->m, nR = R->nR;
    const long *Sp = (const long *)R->S->p, *Si = (const long *)R->S->i;
    double *Sx = R->acc, *r = R->acc + R->nnz, *g = r + nR, *dC = g + nR;
    for (long c = 0; c < m; c++) {
        const long jc = R->ridx[b->cols[c]];
        long lo = Sp[jc];
        const long end = Sp[jc + 1];
        for (long a = c; a < m; a++) {
            const long ia = R->ridx[b->cols[a]];
            /* rows ascend with a: search on from the last match */
            long hi = end;
            while (lo < hi) {
                long mid = lo + (hi - lo) / 2;
                if (Si[mid] < ia) lo = mid + 1;
                else hi = mid;
            }
            Sx[lo] += b->Sc[(size_t)c * (size_t)m + (size_t)a];
        }
        r[jc] += b->rc[c];
        g[jc] += b->gF[c];
        dC[jc] += b->dCf[c];
    }
}

/* Factors S + lambda D_F; 1, 0 when not positive definite, -1 on an error. */
/* Where a pixel's mean is a + c F_k^2 in each F_k (the nearest-hkl lookup), the cost's exact F_k F_k curvature is
 * the Gauss-Newton one plus sum_i e_i d2mu_i/dF_k^2 = sum_i e_i 2 c_ik = g_F,k / F_k (e_i = d cost / d mu_i, no
 * cross terms between different F). Gauss-Newton drops it, and that is what made the ensemble creep: where the data
 * want |F| smaller (a weak reflection, g_F / F > 0) the Gauss-Newton curvature 4 F^2 sum w c^2 vanishes as F -> 0,
 * each step overshot through 0 and the damping rose to ~1 and stayed (rho 0.3-0.5 for 100 iterations). Its positive
 * part is added to the steps' matrix (a negative one would break positive definiteness; that side is Gauss-Newton's
 * as before) and to the Fisher matrix of the uncertainties (at an interior optimum g_F = 0 and it adds nothing; at
 * an F the data pull to 0 it is the curvature the Fisher information has lost). */
static void second_order_F(db_elm_reduced *R)
{
    const double *g = R->acc + R->nnz + R->nR;
    for (long j = 0; j < R->nR; j++) {
        const long k = R->gidx[j];
        if (!R->F_at || k >= R->nF_squared) {
            R->F2nd[j] = 0.0;
            continue;
        }
        /* an F the data pull to 0 gets there fast (each step multiplies it by about 4 F^2 b / a, the Gauss-Newton
         * curvature over this term) and ends at 0 or a denormal, where g_F = 2 F sum e c is 0 (underflow) and the
         * term cannot be formed: the last one formed stays (F2nd keeps it) */
        const double t = g[j] / R->F_at[k];
        if (R->F_at[k] == 0.0 || g[j] == 0.0 || !isnormal(t)) continue;
        R->F2nd[j] = t > 0.0 ? t : 0.0;
    }
}

/* S->x = the accumulated S + lambda D_F + the second-order F term: the matrix that is factored or re-solved */
static void load_matrix(db_elm_reduced *R, double lambda)
{
    double *x = (double *)R->S->x;
    memcpy(x, R->acc, sizeof(double) * (size_t)R->nnz);
    second_order_F(R);
    for (long j = 0; j < R->nR; j++) x[R->diag[j]] += lambda * (R->DF2[j] > 0.0 ? R->DF2[j] : 1.0) + R->F2nd[j];
}

static int reduced_factor(db_elm_reduced *R, double lambda, int update_scaling, db_error *err)
{
    const long nR = R->nR;
    R->factored = 0;
    if (!nR) return 1;
    const double *dC = R->acc + R->nnz + 2 * nR;
    if (update_scaling)
        for (long j = 0; j < nR; j++)
            if (dC[j] > R->DF2[j]) R->DF2[j] = dC[j];
    load_matrix(R, lambda);
    cholmod_l_factorize(R->S, R->L, &R->c);
    R->refactors++;
    if (R->c.status == CHOLMOD_NOT_POSDEF || R->L->minor < R->L->n) return 0;
    if (R->c.status < 0) {
        db_fail(err, DB_ERR_INTERNAL, "ensemble: CHOLMOD's factorization failed (status %d)", R->c.status);
        return -1;
    }
    R->factored = 1;
    R->factored_lambda = lambda;
    return 1;
}

/* X = S^-1 B for k dense right-hand sides of length nR (column-major, in place) with the present factor. */
static int reduced_solve_dense(db_elm_reduced *R, double *X, long k, db_error *err)
{
    const long nR = R->nR;
    if (!nR || !k) return DB_OK;
    cholmod_dense *Bd = cholmod_l_allocate_dense((size_t)nR, (size_t)k, (size_t)nR, CHOLMOD_REAL, &R->c);
    if (!Bd) return db_fail(err, DB_ERR_NOMEM, "ensemble: out of memory for CHOLMOD's right-hand sides");
    memcpy(Bd->x, X, sizeof(double) * (size_t)nR * (size_t)k);
    cholmod_dense *Xd = cholmod_l_solve(CHOLMOD_A, R->L, Bd, &R->c);
    cholmod_l_free_dense(&Bd, &R->c);
    if (!Xd) return db_fail(err, DB_ERR_INTERNAL, "ensemble: CHOLMOD's solve failed (status %d)", R->c.status);
    memcpy(X, Xd->x, sizeof(double) * (size_t)nR * (size_t)k);
    cholmod_l_free_dense(&Xd, &R->c);
    return DB_OK;
}

/* dF from the reduced solution v[nR]; *gd and *dDd gain g_F.dF and dF.D_F.dF */
static void scatter_step(const db_elm_reduced *R, const double *v, double *dF, double *gd, double *dDd)
{
    const double *g = R->acc + R->nnz + R->nR;
    double a = 0.0, q = 0.0;
    for (long j = 0; j < R->nR; j++) {
        dF[R->gidx[j]] = v[j];
        a += g[j] * v[j];
        q += (R->DF2[j] > 0.0 ? R->DF2[j] : 1.0) * v[j] * v[j];
    }
    if (gd) *gd += a;
    if (dDd) *dDd += q;
}

int db_elm_reduced_solve(db_elm_reduced *R, double lambda, int update_scaling, double *dF, double *gd, double *dDd,
                         db_error *err)
{
    const long nR = R->nR;
    for (long j = 0; j < R->nF; j++) dF[j] = 0.0;
    int ok = reduced_factor(R, lambda, update_scaling, err);
    if (ok <= 0) return ok;
    if (!nR) return 1;
    double *v = R->work;
    const double *r = R->acc + R->nnz;
    for (long j = 0; j < nR; j++) v[j] = -r[j];
    if (reduced_solve_dense(R, v, 1, err)) return -1;
    scatter_step(R, v, dF, gd, dDd);
    return 1;
}

/* y = S x for the lower triangle held in S->x */
static void symmetric_product(const db_elm_reduced *R, const double *x, double *y)
{
    const long *Sp = (const long *)R->S->p, *Si = (const long *)R->S->i;
    const double *a = (const double *)R->S->x;
    for (long j = 0; j < R->nR; j++) y[j] = 0.0;
    for (long j = 0; j < R->nR; j++) {
        double yj = 0.0;
        for (long p = Sp[j]; p < Sp[j + 1]; p++) {
            const long i = Si[p];
            y[i] += a[p] * x[j];
            if (i != j) yj += a[p] * x[i];
        }
        y[j] += yj;
    }
}

/* Conjugate gradients on (S + lambda D_F) v = -r preconditioned by the present factor (of the same damping, with
 * the previous active sets): 1 when |residual| <= DB_ELM_RESOLVE_TOL |r| within DB_ELM_RESOLVE_MAX iterations, 0
 * when not (or when the matrix shows itself indefinite: the caller factors, which tells), -1 on an error. */
static int preconditioned_cg(db_elm_reduced *R, double *v, db_error *err)
{
    const long n = R->nR;
    double *res = R->work + n, *z = res + n, *dir = z + n;
    const double *r = R->acc + R->nnz;
    double bnorm = 0.0;
    for (long j = 0; j < n; j++) {
        v[j] = -r[j];
        bnorm += r[j] * r[j];
    }
    bnorm = sqrt(bnorm);
    if (reduced_solve_dense(R, v, 1, err)) return -1; /* the start: the solution under the previous active sets */
    symmetric_product(R, v, res);
    for (long j = 0; j < n; j++) res[j] = -r[j] - res[j];
    double rz = 0.0;
    for (int it = 0;; it++) {
        double rnorm = 0.0;
        for (long j = 0; j < n; j++) rnorm += res[j] * res[j];
        if (sqrt(rnorm) <= DB_ELM_RESOLVE_TOL * bnorm) return 1;
        if (it == DB_ELM_RESOLVE_MAX) return 0;
        R->pcg_iterations++;
        memcpy(z, res, sizeof(double) * (size_t)n);
        if (reduced_solve_dense(R, z, 1, err)) return -1;
        double rz_new = 0.0;
        for (long j = 0; j < n; j++) rz_new += res[j] * z[j];
        if (it == 0) memcpy(dir, z, sizeof(double) * (size_t)n);
        else
            for (long j = 0; j < n; j++) dir[j] = z[j] + rz_new / rz * dir[j];
        rz = rz_new;
        double *q = z; /* z is spent: it holds the product now */
        symmetric_product(R, dir, q);
        double curv = 0.0;
        for (long j = 0; j < n; j++) curv += dir[j] * q[j];
        if (!(curv > 0.0) || !(rz > 0.0)) return 0;
        const double alpha = rz / curv;
        for (long j = 0; j < n; j++) {
            v[j] += alpha * dir[j];
            res[j] -= alpha * q[j];
        }
    }
}

int db_elm_reduced_resolve(db_elm_reduced *R, double lambda, double *dF, double *gd, double *dDd, db_error *err)
{
    if (!R->factored || lambda != R->factored_lambda || !R->nR) return db_elm_reduced_solve(R, lambda, 0, dF, gd, dDd, err);
    for (long j = 0; j < R->nF; j++) dF[j] = 0.0;
    load_matrix(R, lambda);
    const int ok = preconditioned_cg(R, R->work, err);
    if (ok < 0) return -1;
    if (!ok) return db_elm_reduced_solve(R, lambda, 0, dF, gd, dDd, err);
    scatter_step(R, R->work, dF, gd, dDd);
    return 1;
}

void db_elm_reduced_counts(const db_elm_reduced *R, int *factors, long *cg_iterations)
{
    if (factors) *factors = R->refactors;
    if (cg_iterations) *cg_iterations = R->pcg_iterations;
}

/* ======================================================================== the ranks */

void db_elm_comm_range(int nstills, int size, int rank, int *first, int *last)
{
    if (size < 1) size = 1;
    *first = (int)((long long)rank * nstills / size);
    *last = (int)((long long)(rank + 1) * nstills / size);
}

static int multi(const db_elm_comm *c) { return c && c->size > 1; }

int db_elm_comm_agree(const db_elm_comm *comm, int rc, db_error *err, int *bad_still)
{
    if (!multi(comm)) return rc;
    double v = rc ? (double)(comm->size - comm->rank) : 0.0;
    comm->max(comm->user, &v, 1);
    if (v == 0.0) return DB_OK;
    const int root = comm->size - (int)v;
    struct {
        int code, bad;
        db_error e;
    } m;
    memset(&m, 0, sizeof m);
    if (comm->rank == root) {
        m.code = rc;
        m.bad = bad_still ? *bad_still : -1;
        if (err) m.e = *err;
        if (!m.e.code) m.e.code = rc;
    }
    comm->bcast(comm->user, root, &m, (long)sizeof m);
    m.e.message[sizeof m.e.message - 1] = '\0';
    if (err) *err = m.e;
    if (bad_still) *bad_still = m.bad;
    return m.code;
}

void db_elm_comm_allgather(const db_elm_comm *comm, void *buf, const long *off)
{
    if (!multi(comm)) return;
    for (int r = 0; r < comm->size; r++)
        if (off[r + 1] > off[r]) comm->bcast(comm->user, r, (char *)buf + off[r], off[r + 1] - off[r]);
}

/* The ordered chain: rank r > 0 receives the accumulator from r - 1 (chain_in), adds its stills, and passes it on
 * (chain_out); the last rank broadcasts the total. */
static void chain_in(const db_elm_comm *c, void *buf, long bytes)
{
    if (multi(c) && c->rank > 0) c->recv(c->user, c->rank - 1, buf, bytes);
}
static void chain_out(const db_elm_comm *c, void *buf, long bytes)
{
    if (!multi(c)) return;
    if (c->rank < c->size - 1) c->send(c->user, c->rank + 1, buf, bytes);
    c->bcast(c->user, c->size - 1, buf, bytes);
}

/* ======================================================================== the driver */

enum { PHASE_LINEARISE, PHASE_TRIAL, PHASE_STILLS, PHASE_REDUCED, PHASES };

typedef struct fit {
    const db_elm_problem *P;
    const db_elm_comm *comm;
    int S, first, last;      /* this rank's stills [first, last) */
    db_elm_block **blk;      /* [S]: NULL outside [first, last) */
    long *xoff, *yoff, *zoff; /* [S+1] */
    db_elm_reduced *R;
    const double *F_at;      /* the reduced system's F_at (db_elm_problem.F_squared), kept across rebuilds */
    int bounded;             /* some still (on some rank) has bounds on its local terms */
    int max_rounds;          /* of the active-set method: 4 q + 4 */
    int threads;             /* the stills run on OpenMP threads (db_elm_problem.concurrent_stills) */
    double seconds[PHASES];  /* the solver's time by phase (db_elm_result's seconds_*) */
} fit;

/* adds the seconds since t to *acc; returns now */
static double lap(double *acc, double t)
{
    const double now = db_now_seconds();
    *acc += now - t;
    return now;
}

static void fit_free(fit *f)
{
    if (f->blk)
        for (int s = 0; s < f->S; s++) db_elm_block_free(f->blk[s]);
    free(f->blk);
    free(f->xoff);
    free(f->yoff);
    free(f->zoff);
    db_elm_reduced_free(f->R);
}

/* Runs still_fn for every owned still, on OpenMP threads when f->threads (each still's work touches only its own
 * block and its own evaluation; a still's rendering then runs on one thread: many small renders side by side beat
 * one small render's threads, whose start and barrier cost more than the render on a busy machine). Returns what the
 * serial loop would: DB_OK, or the lowest failing still's code with its error in err and *bad = that still. */
typedef int (*still_fn)(fit *f, int s, void *ctx, db_error *err);
static int for_each_still(fit *f, still_fn fn, void *ctx, int *bad, db_error *err)
{
    int first_bad = f->last, first_rc = DB_OK;
    /* without threads one thread runs the stills in order and skips the rest after a failure: the serial loop */
#ifdef _OPENMP
#pragma omp parallel if (f->threads)
#endif
    {
        db_error terr = {0};
        int my_bad = f->last, my_rc = DB_OK;
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
        for (int s = f->first; s < f->last; s++) {
            if (s > my_bad) continue; /* a lower still of this thread failed (its chunks ascend): terr keeps it */
            int rc = fn(f, s, ctx, &terr);
            if (rc && s < my_bad) {
                my_bad = s;
                my_rc = rc;
            }
        }
#ifdef _OPENMP
#pragma omp critical(db_elm_first_bad)
#endif
        if (my_rc && my_bad < first_bad) {
            first_bad = my_bad;
            first_rc = my_rc;
            if (err) *err = terr;
        }
    }
    if (first_rc) *bad = first_bad;
    return first_rc;
}

typedef struct point {
    const double *x, *y, *F;
    double *per_still; /* trial costs */
    int speculate;     /* the trial renders its derivatives too (trial_one), for adopt_trial */
} point;

static int linearise_one(fit *f, int s, void *ctx, db_error *err)
{
    const point *pt = (const point *)ctx;
    const double *y_s = pt->y ? pt->y + f->yoff[s] : NULL;
    if (pt->speculate) return adopt_trial(f->blk[s], pt->x + f->xoff[s], y_s, err);
    return db_elm_block_linearise(f->blk[s], pt->x + f->xoff[s], y_s, pt->F, err);
}

/* linearise every owned still at (x, y, F) (rendered there by the speculative trial when rendered != 0); the total
 * cost summed in still order over the ranks */
static int linearise_all(fit *f, const double *x, const double *y, const double *F, int rendered, double *cost,
                         int *bad, db_error *err)
{
    const double t = db_now_seconds();
    point pt = {x, y, F, NULL, rendered};
    int rc = for_each_still(f, linearise_one, &pt, bad, err);
    lap(&f->seconds[PHASE_LINEARISE], t);
    if ((rc = db_elm_comm_agree(f->comm, rc, err, bad))) return rc;
    double c = 0.0;
    chain_in(f->comm, &c, (long)sizeof c);
    for (int s = f->first; s < f->last; s++) c += f->blk[s]->cost;
    chain_out(f->comm, &c, (long)sizeof c);
    *cost = c;
    return DB_OK;
}

/* the reduced system summed over every still in still order (every rank gets the total); 1, or 0 when bad != 0 on
 * some rank (a still's block not positive definite) */
static int assemble(fit *f, double bad)
{
    const double t = db_now_seconds();
    if (multi(f->comm)) f->comm->max(f->comm->user, &bad, 1);
    if (bad != 0.0) return 0;
    long count;
    double *acc = db_elm_reduced_values(f->R, &count);
    db_elm_reduced_zero(f->R);
    chain_in(f->comm, acc, count * (long)sizeof(double));
    for (int s = f->first; s < f->last; s++) db_elm_reduced_add(f->R, f->blk[s]);
    chain_out(f->comm, acc, count * (long)sizeof(double));
    lap(&f->seconds[PHASE_REDUCED], t);
    return 1;
}

/* eliminate every owned still and assemble the reduced system at lambda; 1, or 0 when some still's damped block is
 * not positive definite */
static int eliminate_all(fit *f, double lambda)
{
    const double t = db_now_seconds();
    int bad = 0;
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 4) reduction(| : bad) if (f->threads)
#endif
    for (int s = f->first; s < f->last; s++)
        if (!db_elm_block_eliminate(f->blk[s], lambda)) bad = 1;
    lap(&f->seconds[PHASE_STILLS], t);
    return assemble(f, bad);
}

/* Against the reduced system's last dF, each still with bounds settles its own active set: the active-set method's
 * rounds (release the bound with the most negative multiplier in a group, or land on the bounds the step crosses)
 * with dF held, each a factor of the still's free unknowns and a back-substitution, no reduced solve. The global
 * rounds then count the coupling through F rather than every change of every still (one change of one still a
 * global round made 8 of them a step on sharp spots). Returns 1 when some still's set changed (b->changed); *bad
 * = 1 when a still's constrained block was not positive definite. */
static int settle_active(fit *f, const double *dF, const double *y, double *dz, int *bad)
{
    int changed = 0, failed = 0;
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1) reduction(| : changed, failed) if (f->threads)
#endif
    for (int s = f->first; s < f->last; s++) {
        db_elm_block *b = f->blk[s];
        if (b->nb <= 0) continue;
        for (int r = 0; r < f->max_rounds && update_active(b, y + f->yoff[s], dz + f->zoff[s] + b->p); r++) {
            b->changed = changed = 1;
            group_bases(b);
            if (!factor(b, b->lambda)) {
                failed = 1;
                break;
            }
            back_substitute(b, dF, dz + f->zoff[s], b->mult, NULL, NULL);
        }
    }
    *bad = failed;
    return changed;
}

/* the stills whose active sets changed (settle_active: their factors are current) form their shares
 * again, and the reduced system is summed anew in still order */
static int reeliminate_changed(fit *f, int bad)
{
    const double t = db_now_seconds();
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1) if (f->threads)
#endif
    for (int s = f->first; s < f->last; s++) {
        db_elm_block *b = f->blk[s];
        if (!b->changed) continue;
        b->changed = 0;
        if (!bad) reduce_share(b);
    }
    lap(&f->seconds[PHASE_STILLS], t);
    return assemble(f, bad);
}

/* The reduced system over the union of every still's F columns (gathered to every rank). Built after the first
 * linearisation, and again after a later one that brought some still new columns (update_pattern: a pixel's
 * nearest hkl changed as the orientation moved), with a new CHOLMOD analysis; the scalings and second-order terms
 * of the columns already refined carry over, so where nothing grew nothing changes. The ranks agree (max) on
 * whether some still grew, and so rebuild together. */
static int build_reduced(fit *f, int *bad, db_error *err)
{
    const double t = db_now_seconds();
    const db_elm_comm *comm = f->comm;
    const int S = f->S, size = multi(comm) ? comm->size : 1, rank = multi(comm) ? comm->rank : 0;
    double grew = f->R ? 0.0 : 1.0;
    for (int s = f->first; s < f->last; s++)
        if (f->blk[s]->grew) grew = 1.0;
    if (multi(comm)) comm->max(comm->user, &grew, 1);
    if (grew == 0.0) {
        lap(&f->seconds[PHASE_REDUCED], t);
        return DB_OK;
    }
    long *counts = (long *)calloc((size_t)S, sizeof(long)), *off = (long *)calloc((size_t)size + 1, sizeof(long));
    const long **cols = (const long **)calloc((size_t)S, sizeof(long *));
    long *cbuf = NULL;
    db_elm_reduced *R = NULL;
    int rc = counts && off && cols ? DB_OK : db_fail(err, DB_ERR_NOMEM, "ensemble: out of memory");
    if ((rc = db_elm_comm_agree(comm, rc, err, bad))) goto done;
    for (int s = f->first; s < f->last; s++) {
        counts[s] = db_elm_block_columns(f->blk[s], &cols[s]);
        f->blk[s]->grew = 0;
    }
    for (int r = 0; r <= size; r++) {
        int a, b;
        db_elm_comm_range(S, size, r < size ? r : size - 1, &a, &b);
        off[r] = (long)sizeof(long) * (r < size ? a : b);
    }
    db_elm_comm_allgather(comm, counts, off);
    if (multi(comm)) {
        long total = 0;
        for (int s = 0; s < S; s++) total += counts[s];
        cbuf = (long *)malloc(sizeof(long) * (size_t)(total + 1));
        rc = cbuf ? DB_OK : db_fail(err, DB_ERR_NOMEM, "ensemble: out of memory");
        if ((rc = db_elm_comm_agree(comm, rc, err, bad))) goto done;
        long pos = 0;
        for (int r = 0; r < size; r++) {
            int a, b;
            db_elm_comm_range(S, size, r, &a, &b);
            off[r] = (long)sizeof(long) * pos;
            for (int s = a; s < b; s++) {
                if (r == rank && counts[s]) memcpy(cbuf + pos, cols[s], sizeof(long) * (size_t)counts[s]);
                cols[s] = cbuf + pos;
                pos += counts[s];
            }
        }
        off[size] = (long)sizeof(long) * pos;
        db_elm_comm_allgather(comm, cbuf, off);
    }
    rc = db_elm_reduced_new(f->P->nF, S, counts, (const long *const *)cols, &R, err);
    if ((rc = db_elm_comm_agree(comm, rc, err, bad))) goto done;
    R->F_at = f->F_at;
    R->nF_squared = f->P->nF - f->P->n_shared;
    if (f->R)
        for (long j = 0; j < R->nR; j++) {
            const long old = f->R->ridx[R->gidx[j]];
            if (old < 0) continue;
            R->DF2[j] = f->R->DF2[old];
            R->F2nd[j] = f->R->F2nd[old];
        }
    db_elm_reduced_free(f->R);
    f->R = R;
    R = NULL;
done:
    db_elm_reduced_free(R);
    free(counts);
    free(off);
    free(cols);
    free(cbuf);
    lap(&f->seconds[PHASE_REDUCED], t);
    return rc;
}

static int trial_one(fit *f, int s, void *ctx, db_error *err)
{
    const point *pt = (const point *)ctx;
    db_elm_block *b = f->blk[s];
    double *model = pt->speculate ? b->model_s : b->trial;
    int rc = f->P->evaluate(f->P->user, s, pt->x + f->xoff[s], pt->F, model, pt->speculate ? b->J_s : NULL,
                            pt->speculate ? &b->JF_s : NULL, err);
    if (rc == DB_LM_INFEASIBLE) {
        db_error_clear(err);
        pt->per_still[s] = INFINITY;
        return DB_OK;
    }
    if (rc) return rc;
    add_local(b, model, pt->y ? pt->y + f->yoff[s] : NULL, b->trial);
    const double c = still_cost(b, b->trial, NULL, NULL, NULL);
    pt->per_still[s] = c == INFINITY ? c : c + prior_cost(b, pt->x + f->xoff[s]);
    return DB_OK;
}

/* the cost at the trial point; INFINITY when infeasible (F < 0, the model's refusal, a mean outside the domain) */
static int trial_cost(fit *f, const double *x, const double *y, const double *F, int speculate, double *cost,
                      int *bad, double *per_still, db_error *err)
{
    const db_elm_problem *P = f->P;
    for (long j = 0; !P->F_even && j < P->nF - P->n_shared; j++)
        if (!(F[j] >= 0.0)) {
            *cost = INFINITY;
            return DB_OK;
        }
    const double t = db_now_seconds();
    point pt = {x, y, F, per_still, speculate};
    int rc = for_each_still(f, trial_one, &pt, bad, err);
    lap(&f->seconds[PHASE_TRIAL], t);
    if ((rc = db_elm_comm_agree(f->comm, rc, err, bad))) return rc;
    double c = 0.0;
    chain_in(f->comm, &c, (long)sizeof c);
    for (int s = f->first; s < f->last && c != INFINITY; s++) c += per_still[s];
    chain_out(f->comm, &c, (long)sizeof c);
    *cost = c;
    return DB_OK;
}

static int check_problem(const db_elm_problem *P, const db_elm_options *o, db_error *err)
{
    if (!P) return db_fail(err, DB_ERR_ARGUMENT, "db_elm_fit: no problem");
    if (P->nstills < 1 || !P->stills) return db_fail(err, DB_ERR_ARGUMENT, "db_elm_fit: %d stills", P->nstills);
    if (P->nF < 0) return db_fail(err, DB_ERR_ARGUMENT, "db_elm_fit: %ld structure factors", P->nF);
    if (P->n_shared < 0 || P->n_shared > P->nF)
        return db_fail(err, DB_ERR_ARGUMENT, "db_elm_fit: %ld shared parameters among %ld global ones", P->n_shared,
                       P->nF);
    if (!P->evaluate) return db_fail(err, DB_ERR_ARGUMENT, "db_elm_fit: no evaluate callback");
    if (!(P->variance_offset >= 0.0) || !isfinite(P->variance_offset))
        return db_fail(err, DB_ERR_ARGUMENT, "db_elm_fit: the variance offset must be finite and >= 0");
    if (o->max_iterations < 1 || !(o->cost_tolerance >= 0) || !(o->step_tolerance >= 0) ||
        !(o->cost_decrease_tolerance >= 0) || !(o->initial_damping > 0) ||
        !isfinite(o->initial_damping))
        return db_fail(err, DB_ERR_ARGUMENT, "db_elm_fit: bad options (max_iterations >= 1, tolerances >= 0, "
                                             "initial_damping > 0)");
    for (int s = 0; s < P->nstills; s++) { /* the sizes every rank sees; the rest per owned still (block_new) */
        const db_elm_still *st = &P->stills[s];
        if (st->n < 1 || st->p < 0 || st->p > DB_LM_MAX_PARAMS || st->ngroups < 0 ||
            (st->ngroups > 0 && (st->q < 1 || st->q > DB_LM_MAX_LOCAL)))
            return check_still(P, s, err);
    }
    return DB_OK;
}

/* sigma of F (diagonal of S^-1) and of each still's z (diag(A^-1 + V S^-1 V^T), V = A^-1 B) from the undamped
 * factors; f's blocks are eliminated at lambda 0 and R factored. sz: [sum nz] laid out as z_off. */
static int uncertainties(fit *f, const int *block_ok, int reduced_ok, double *sF_red, double *sz, int do_F, db_error *err)
{
    db_elm_reduced *R = f->R;
    const long nR = R->nR;
    double *X = (double *)malloc(sizeof(double) * (size_t)(nR ? nR : 1) * SOLVE_BATCH);
    if (!X) return db_fail(err, DB_ERR_NOMEM, "ensemble: out of memory for the uncertainties");
    int rc = DB_OK;
    for (long j0 = 0; do_F && j0 < nR; j0 += SOLVE_BATCH) {
        long k = nR - j0 < SOLVE_BATCH ? nR - j0 : SOLVE_BATCH;
        if (!reduced_ok) {
            for (long j = 0; j < k; j++) sF_red[j0 + j] = -1.0;
            continue;
        }
        memset(X, 0, sizeof(double) * (size_t)nR * (size_t)k);
        for (long j = 0; j < k; j++) X[j * nR + j0 + j] = 1.0;
        if ((rc = reduced_solve_dense(R, X, k, err))) goto done;
        for (long j = 0; j < k; j++) {
            double v = X[j * nR + j0 + j];
            sF_red[j0 + j] = v > 0.0 && isfinite(v) ? sqrt(v) : -1.0;
        }
    }
    for (int s = f->first; s < f->last; s++) {
        db_elm_block *b = f->blk[s];
        const int nz = b->nz;
        const long m = b->m;
        double *out = sz + f->zoff[s];
        if (!nz) continue;
        if (!block_ok[s] || !reduced_ok) {
            for (int k = 0; k < nz; k++) out[k] = -1.0;
            continue;
        }
        /* V = L^-T Y: row k of V is still k's coupling to its F; (A^-1)_kk = |L^-1 e_k|^2 */
        double *V = (double *)malloc(sizeof(double) * (size_t)nz * (size_t)(m ? m : 1));
        double *u = (double *)malloc(sizeof(double) * (size_t)nz);
        if (!V || !u) {
            free(V);
            free(u);
            rc = db_fail(err, DB_ERR_NOMEM, "ensemble: out of memory for the uncertainties");
            goto done;
        }
        for (long a = 0; a < m; a++) {
            double *Va = V + (size_t)a * (size_t)nz;
            memcpy(Va, b->Y + (size_t)a * (size_t)nz, sizeof(double) * (size_t)nz);
            backward(b->L, nz, Va);
        }
        for (int k = 0; k < nz; k++) {
            memset(u, 0, sizeof(double) * (size_t)nz);
            u[k] = 1.0;
            forward(b->L, nz, u);
            double d = 0.0;
            for (int l = 0; l < nz; l++) d += u[l] * u[l];
            out[k] = d;
        }
        for (int k0 = 0; k0 < nz && m > 0; k0 += SOLVE_BATCH) {
            int kk = nz - k0 < SOLVE_BATCH ? nz - k0 : SOLVE_BATCH;
            memset(X, 0, sizeof(double) * (size_t)nR * (size_t)kk);
            for (int k = 0; k < kk; k++)
                for (long a = 0; a < m; a++) X[(size_t)k * nR + R->ridx[b->cols[a]]] = V[(size_t)a * nz + k0 + k];
            if ((rc = reduced_solve_dense(R, X, kk, err))) {
                free(V);
                free(u);
                goto done;
            }
            for (int k = 0; k < kk; k++) {
                double d = 0.0;
                for (long a = 0; a < m; a++) d += X[(size_t)k * nR + R->ridx[b->cols[a]]] * V[(size_t)a * nz + k0 + k];
                out[k0 + k] += d;
            }
        }
        for (int k = 0; k < nz; k++) out[k] = out[k] > 0.0 && isfinite(out[k]) ? sqrt(out[k]) : -1.0;
        free(V);
        free(u);
    }
done:
    free(X);
    return rc;
}

int db_elm_fit(const db_elm_problem *P, const db_elm_options *opt, double *x, double *y, double *F, double *sigma_x,
               double *sigma_y, double *sigma_F, unsigned char *F_refined, db_elm_result *res, db_error *err)
{
    return db_elm_fit_comm(P, opt, NULL, x, y, F, sigma_x, sigma_y, sigma_F, F_refined, res, err);
}

int db_elm_fit_comm(const db_elm_problem *P, const db_elm_options *opt, const db_elm_comm *comm, double *x, double *y,
                    double *F, double *sigma_x, double *sigma_y, double *sigma_F, unsigned char *F_refined,
                    db_elm_result *res, db_error *err)
{
    db_error_clear(err);
    db_elm_options defaults;
    db_elm_default_options(&defaults);
    const db_elm_options *o = opt ? opt : &defaults;
    if (!res) return db_fail(err, DB_ERR_ARGUMENT, "db_elm_fit: no result");
    memset(res, 0, sizeof *res);
    res->bad_still = -1;
    if (!multi(comm)) comm = NULL;
    const int rank = comm ? comm->rank : 0, size = comm ? comm->size : 1;
    int rc = check_problem(P, o, err);
    if (rc) return rc; /* the same on every rank: sizes and options only */
    fit f;
    memset(&f, 0, sizeof f);
    int bad = -1;
    f.P = P;
    f.comm = comm;
    f.S = P->nstills;
    f.threads = P->concurrent_stills != 0;
    const int S = f.S;
    db_elm_comm_range(S, size, rank, &f.first, &f.last);
    const long nF = P->nF;
    double *xt = NULL, *yt = NULL, *Ft = NULL, *dz = NULL, *dF = NULL, *sz = NULL, *sF = NULL;
    double *per_still = NULL, *bs_g = NULL, *bs_q = NULL;
    long *off = NULL;
    int *block_ok = NULL;
    long nobs = 0, nx = 0, ny = 0, nzt = 0;
    f.blk = (db_elm_block **)calloc((size_t)S, sizeof *f.blk);
    f.xoff = (long *)calloc((size_t)S + 1, sizeof(long));
    f.yoff = (long *)calloc((size_t)S + 1, sizeof(long));
    f.zoff = (long *)calloc((size_t)S + 1, sizeof(long));
    off = (long *)calloc((size_t)size + 1, sizeof(long));
    if (!f.blk || !f.xoff || !f.yoff || !f.zoff || !off) {
        rc = db_fail(err, DB_ERR_NOMEM, "ensemble: out of memory for %d stills", S);
        goto agree_setup;
    }
    for (int s = 0; s < S; s++) {
        const db_elm_still *st = &P->stills[s];
        f.xoff[s + 1] = f.xoff[s] + st->p;
        f.yoff[s + 1] = f.yoff[s] + (st->ngroups ? (long)st->ngroups * st->q : 0);
        f.zoff[s + 1] = f.zoff[s] + st->p + (st->ngroups ? (long)st->ngroups * st->q : 0);
        nobs += st->n;
    }
    nx = f.xoff[S];
    ny = f.yoff[S];
    nzt = f.zoff[S];
    if (nx && !x) {
        rc = db_fail(err, DB_ERR_ARGUMENT, "db_elm_fit: no parameters (x)");
        goto agree_setup;
    }
    if (ny && !y) {
        rc = db_fail(err, DB_ERR_ARGUMENT, "db_elm_fit: local terms need their start values (y)");
        goto agree_setup;
    }
    if (nF && !F) {
        rc = db_fail(err, DB_ERR_ARGUMENT, "db_elm_fit: no structure factors (F)");
        goto agree_setup;
    }
    for (long j = 0; j < nF; j++)
        if (!(F[j] >= 0.0) || !isfinite(F[j])) {
            rc = db_fail(err, DB_ERR_ARGUMENT, "db_elm_fit: the start F[%ld] = %g is not finite and >= 0", j, F[j]);
            goto agree_setup;
        }
    for (int s = f.first; s < f.last; s++)
        if ((rc = db_elm_block_new(P, s, &f.blk[s], err))) {
            bad = s;
            goto agree_setup;
        }
    for (int s = f.first; s < f.last; s++) { /* the start must satisfy the bounds */
        const db_elm_block *b = f.blk[s];
        if (b->nb > 0 && b->q > f.max_rounds) f.max_rounds = b->q;
        for (int g = 0; g < b->G; g++)
            for (int bi = 0; bi < b->nb; bi++) {
                double size, v = bound_value(b, g, bi, y + f.yoff[s], &size);
                if (!(v >= -1e-12 * (size + 1.0))) { /* rounding is forgiven: a fit's result lands on 0 so */
                    rc = db_fail(err, DB_ERR_ARGUMENT, "db_elm_fit: the start of still %d's group %d's local terms "
                                                       "breaks its bound %d (%g < 0)", s, g, bi, v);
                    bad = s;
                    goto agree_setup;
                }
            }
    }
    xt = (double *)malloc(sizeof(double) * (size_t)(nx + 1));
    yt = (double *)malloc(sizeof(double) * (size_t)(ny + 1));
    Ft = (double *)malloc(sizeof(double) * (size_t)(nF + 1));
    dF = (double *)calloc((size_t)(nF + 3), sizeof(double));
    dz = (double *)calloc((size_t)(nzt + 1), sizeof(double));
    per_still = (double *)calloc((size_t)S, sizeof(double));
    bs_g = (double *)calloc((size_t)S, sizeof(double));
    bs_q = (double *)calloc((size_t)S, sizeof(double));
    block_ok = (int *)calloc((size_t)S, sizeof(int));
    if (!xt || !yt || !Ft || !dF || !dz || !per_still || !bs_g || !bs_q || !block_ok)
        rc = db_fail(err, DB_ERR_NOMEM, "ensemble: out of memory");
agree_setup:
    if ((rc = db_elm_comm_agree(comm, rc, err, &bad))) goto done;
    {
        double q = f.max_rounds; /* the largest q of a bounded still, on any rank */
        if (comm) comm->max(comm->user, &q, 1);
        f.bounded = q > 0.0;
        f.max_rounds = 4 * (int)q + 4;
    }
    const double t0 = db_now_seconds();
    double cost;
    if ((rc = linearise_all(&f, x, y, F, 0, &cost, &bad, err))) goto done;
    res->evaluations = S;
    if ((rc = build_reduced(&f, &bad, err))) goto done;
    f.F_at = P->F_squared ? F : NULL; /* F is the linearisation point throughout (updated in place) */
    f.R->F_at = f.F_at;
    res->start_cost = cost;
    double lambda = o->initial_damping, nu = 2.0;
    /* after an accepted step the trial renders its derivatives too (speculate): the next step is accepted about 19
     * times in 20 (the bench's 20-cell seeds: 373 of 391 speculations), and then its linearisation needs no render
     * (a derivative render costs about twice a plain one, so one rejected speculation costs what one accepted one
     * saves) */
    int stop = 0, it = 0, fresh = 1, linearised_at_x = 1, accepted_last = 1;
    if (cost == 0.0) stop = DB_STOP_EXACT;
    while (!stop) {
        if (it >= o->max_iterations) {
            stop = DB_STOP_MAXITER;
            break;
        }
        if (lambda > DB_LM_MAX_DAMPING) {
            stop = DB_STOP_NO_PROGRESS;
            break;
        }
        double gd = 0.0, dDd = 0.0, quad = 0.0;
        if (f.bounded)
            for (int s = f.first; s < f.last; s++)
                if (f.blk[s]->nb > 0) start_active(f.blk[s], y + f.yoff[s]);
        int ok = eliminate_all(&f, lambda);
        /* the active-set method's rounds (one round without bounds): solve, back-substitute, and on a change of some
         * still's active set eliminate the stills that changed and solve again */
        for (int round = 0; ok; round++) {
            gd = 0.0;
            dDd = 0.0;
            /* every rank factors the same sum (its scaling and factor stay those of rank 0); rank 0's step rules */
            double t = db_now_seconds();
            int factors0, factors1;
            long cg0, cg1;
            db_elm_reduced_counts(f.R, &factors0, &cg0);
            ok = round ? db_elm_reduced_resolve(f.R, lambda, dF, &gd, &dDd, err)
                       : db_elm_reduced_solve(f.R, lambda, fresh, dF, &gd, &dDd, err);
            db_elm_reduced_counts(f.R, &factors1, &cg1);
            res->reduced_solves++;
            res->reduced_factors += factors1 - factors0;
            res->reduced_cg_iterations += cg1 - cg0;
            if ((rc = db_elm_comm_agree(comm, ok < 0 ? (err && err->code ? err->code : DB_ERR_INTERNAL) : DB_OK, err,
                                        &bad)))
                goto done;
            if (comm) {
                dF[nF] = gd;
                dF[nF + 1] = dDd;
                dF[nF + 2] = ok;
                comm->bcast(comm->user, 0, dF, (long)sizeof(double) * (nF + 3));
                gd = dF[nF];
                dDd = dF[nF + 1];
                ok = (int)dF[nF + 2];
            }
            t = lap(&f.seconds[PHASE_REDUCED], t);
            fresh = 0;
            if (!ok) break;
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 4) if (f.threads)
#endif
            for (int s = f.first; s < f.last; s++) {
                db_elm_block *b = f.blk[s];
                bs_g[s] = bs_q[s] = 0.0;
                back_substitute(b, dF, dz + f.zoff[s], b->mult, &bs_g[s], &bs_q[s]);
            }
            if (!f.bounded || round + 1 >= f.max_rounds) {
                lap(&f.seconds[PHASE_STILLS], t);
                break;
            }
            int failed = 0;
            double changed = settle_active(&f, dF, y, dz, &failed);
            if (multi(comm)) comm->max(comm->user, &changed, 1);
            lap(&f.seconds[PHASE_STILLS], t);
            if (changed == 0.0) break;
            ok = reeliminate_changed(&f, failed);
        }
        if (!ok) { /* not positive definite: more damping */
            lambda *= nu;
            nu *= 2.0;
            continue;
        }
        it++;
        {
            double acc3[3] = {gd, dDd, 0.0};
            chain_in(comm, acc3, (long)sizeof acc3);
            for (int s = f.first; s < f.last; s++) {
                acc3[0] += bs_g[s];
                acc3[1] += bs_q[s];
                if (f.bounded) acc3[2] += still_quad(f.blk[s], dz + f.zoff[s], dF);
            }
            chain_out(comm, acc3, (long)sizeof acc3);
            gd = acc3[0];
            dDd = acc3[1];
            quad = acc3[2];
            for (long j = 0; j < f.R->nR; j++) quad += f.R->F2nd[j] * dF[f.R->gidx[j]] * dF[f.R->gidx[j]];
        }
        /* the scaled step and parameters: |D delta| and |D p| with D^2 the largest diagonals seen */
        double norm2 = 0.0;
        chain_in(comm, &norm2, (long)sizeof norm2);
        for (int s = f.first; s < f.last; s++) {
            const db_elm_block *b = f.blk[s];
            for (int k = 0; k < b->nz; k++) {
                double v = k < b->p ? x[f.xoff[s] + k] : y[f.yoff[s] + k - b->p];
                norm2 += damping_weight(b, k) * v * v;
            }
        }
        chain_out(comm, &norm2, (long)sizeof norm2);
        for (long j = 0; j < f.R->nR; j++) {
            double v = F[f.R->gidx[j]];
            norm2 += (f.R->DF2[j] > 0.0 ? f.R->DF2[j] : 1.0) * v * v;
        }
        const double step = sqrt(dDd), pnorm = sqrt(norm2);
        const double rel_step = pnorm > 0.0 ? step / pnorm : step;
        const int last = step <= o->step_tolerance * (pnorm + o->step_tolerance);
        for (int s = f.first; s < f.last; s++) {
            const db_elm_block *b = f.blk[s];
            for (int k = 0; k < b->p; k++) xt[f.xoff[s] + k] = x[f.xoff[s] + k] + dz[f.zoff[s] + k];
            for (int k = b->p; k < b->nz; k++) yt[f.yoff[s] + k - b->p] = y[f.yoff[s] + k - b->p] + dz[f.zoff[s] + k];
        }
        for (long j = 0; j < nF; j++) Ft[j] = F[j] + dF[j];
        double tc;
        const int speculate = accepted_last && !last;
        if ((rc = trial_cost(&f, xt, yt, Ft, speculate, &tc, &bad, per_still, err))) goto done;
        res->evaluations += S;
        /* the quadratic model's decrease L(0) - L(delta) for delta solving (H + lambda D) delta = -g */
        /* with bounds the step solves (H + lambda D) delta = -g only on the free directions: the decrease of the
         * undamped model itself, -g.delta - delta^T H delta / 2 (lm.c's model_decrease) */
        const double predicted = f.bounded ? -gd - 0.5 * quad : 0.5 * (-gd + lambda * dDd);
        const double rho = predicted > 0.0 ? (cost - tc) / predicted : -1.0;
        db_lm_iteration rep = {it, 0, cost, lambda, rel_step, 0.0};
        const int better = tc < cost;
        accepted_last = better && (rho > 0.0 || last);
        if (accepted_last) {
            const double old = cost;
            for (int s = f.first; s < f.last; s++) {
                if (f.xoff[s + 1] > f.xoff[s])
                    memcpy(x + f.xoff[s], xt + f.xoff[s], sizeof(double) * (size_t)(f.xoff[s + 1] - f.xoff[s]));
                if (f.yoff[s + 1] > f.yoff[s])
                    memcpy(y + f.yoff[s], yt + f.yoff[s], sizeof(double) * (size_t)(f.yoff[s + 1] - f.yoff[s]));
            }
            if (nF) memcpy(F, Ft, sizeof(double) * (size_t)nF);
            cost = tc;
            rep.accepted = 1;
            rep.cost = cost;
            linearised_at_x = 0;
            if (last) stop = DB_STOP_STEP;
            else {
                double lin_cost;
                if ((rc = linearise_all(&f, x, y, F, speculate, &lin_cost, &bad, err))) goto done;
                if (!speculate) res->evaluations += S; /* else rendered by the trial */
                if ((rc = build_reduced(&f, &bad, err))) goto done;
                cost = lin_cost;
                linearised_at_x = 1;
                fresh = 1;
                double t = 2.0 * rho - 1.0, shrink = 1.0 - t * t * t;
                lambda *= shrink > 1.0 / 3.0 ? shrink : 1.0 / 3.0;
                nu = 2.0;
                if (cost == 0.0) stop = DB_STOP_EXACT;
                else if (old - cost <= o->cost_tolerance * old || old - cost < o->cost_decrease_tolerance)
                    stop = DB_STOP_COST;
            }
        } else if (last) {
            stop = DB_STOP_STEP;
        } else if (predicted <= o->cost_tolerance * cost && fabs(cost - tc) <= o->cost_tolerance * cost) {
            stop = DB_STOP_COST; /* the cost is at its rounding (MINPACK's test) */
        } else {
            lambda *= nu;
            nu *= 2.0;
        }
        rep.seconds = db_now_seconds() - t0;
        if (o->progress && rank == 0) o->progress(o->progress_user, &rep);
    }
    if (!linearised_at_x) {
        if ((rc = linearise_all(&f, x, y, F, 0, &cost, &bad, err))) goto done;
        res->evaluations += S;
        if ((rc = build_reduced(&f, &bad, err))) goto done;
        fresh = 1;
    }
    res->seconds_linearise = f.seconds[PHASE_LINEARISE];
    res->seconds_trial = f.seconds[PHASE_TRIAL];
    res->seconds_stills = f.seconds[PHASE_STILLS];
    res->seconds_reduced = f.seconds[PHASE_REDUCED];
    const long nR = f.R->nR;
    res->nF_refined = nR;
    res->dof = nobs - nzt - nR;
    res->cost = cost;
    res->deviance = 2.0 * cost;
    res->iterations = it;
    res->stop_reason = stop;
    if (F_refined) db_elm_reduced_refined(f.R, F_refined);
    if (sigma_x || sigma_y || sigma_F) {
        /* the undamped Fisher matrix at the optimum, plus second_order_F's term: where the data pull an F to 0 the
         * Fisher information 4 F^2 sum w c^2 vanishes with F and the likelihood's curvature there is that term (at
         * an interior optimum g_F = 0 and it is 0) */
        double all_bad = 0.0;
        for (int s = f.first; s < f.last; s++) {
            f.blk[s]->na = 0; /* the unconstrained Fisher matrix (as lm.c) */
            use_fisher_weights(f.blk[s]);
            block_ok[s] = db_elm_block_eliminate(f.blk[s], 0.0);
            if (!block_ok[s]) all_bad = 1.0;
            /* an undetermined still: its share is left out and every uncertainty is marked undetermined */
        }
        if (comm) comm->max(comm->user, &all_bad, 1);
        int reduced_ok = 0;
        if (all_bad == 0.0) {
            long count;
            double *acc = db_elm_reduced_values(f.R, &count);
            db_elm_reduced_zero(f.R);
            chain_in(comm, acc, count * (long)sizeof(double));
            for (int s = f.first; s < f.last; s++) db_elm_reduced_add(f.R, f.blk[s]);
            chain_out(comm, acc, count * (long)sizeof(double));
            reduced_ok = reduced_factor(f.R, 0.0, fresh, err);
            if ((rc = db_elm_comm_agree(comm, reduced_ok < 0 ? (err && err->code ? err->code : DB_ERR_INTERNAL) : DB_OK,
                                        err, &bad)))
                goto done;
            if (comm) { /* rank 0's verdict for all */
                double v = reduced_ok;
                comm->bcast(comm->user, 0, &v, (long)sizeof v);
                reduced_ok = (int)v;
            }
        }
        sz = (double *)calloc((size_t)(nzt + 1), sizeof(double));
        sF = (double *)calloc((size_t)(nR + 1), sizeof(double));
        if (!sz || !sF) rc = db_fail(err, DB_ERR_NOMEM, "ensemble: out of memory");
        else rc = uncertainties(&f, block_ok, reduced_ok, sF, sz, rank == 0, err);
        if ((rc = db_elm_comm_agree(comm, rc, err, &bad))) goto done;
        if (comm) comm->bcast(comm->user, 0, sF, (long)sizeof(double) * nR);
        for (int s = f.first; s < f.last; s++) {
            const db_elm_block *b = f.blk[s];
            for (int k = 0; k < b->p; k++)
                if (sigma_x) sigma_x[f.xoff[s] + k] = sz[f.zoff[s] + k];
            for (int k = b->p; k < b->nz; k++)
                if (sigma_y) sigma_y[f.yoff[s] + k - b->p] = sz[f.zoff[s] + k];
        }
        if (sigma_F) {
            for (long j = 0; j < nF; j++) sigma_F[j] = NAN;
            for (long j = 0; j < nR; j++) sigma_F[f.R->gidx[j]] = sF[j];
        }
    }
    if (comm) { /* every rank's x, y and sigmas to every rank */
        double *arr[4] = {x, y, sigma_x, sigma_y};
        const long *lay[4] = {f.xoff, f.yoff, f.xoff, f.yoff};
        for (int k = 0; k < 4; k++) {
            if (!arr[k]) continue;
            for (int r = 0; r < size; r++) {
                int a, b;
                db_elm_comm_range(S, size, r, &a, &b);
                off[r] = (long)sizeof(double) * lay[k][a];
                if (r == size - 1) off[size] = (long)sizeof(double) * lay[k][b];
            }
            db_elm_comm_allgather(comm, arr[k], off);
        }
    }
    for (long j = 0; P->F_even && j < nF - P->n_shared; j++) F[j] = fabs(F[j]); /* the sign of an even model's F means nothing */
    rc = DB_OK;
done:
    if (rc && bad >= 0) res->bad_still = bad;
    free(xt);
    free(yt);
    free(Ft);
    free(dF);
    free(dz);
    free(per_still);
    free(bs_g);
    free(bs_q);
    free(block_ok);
    free(sz);
    free(sF);
    free(off);
    fit_free(&f);
    return rc;
}
