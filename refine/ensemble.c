/* ensemble.c: db_ensemble_refine, the stills as one problem of refine/ensemble_lm.h (ensemble.h has the rules).
 * The simulator is read through the public API only. */
#include "ensemble.h"
#include "clock.h"
#include "ensemble_lm.h"
#include "error.h"
#include "observed.h"
#include "params.h" /* db_param_parse_list_for, db_list_next_item */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef DB_HAVE_MPI
#include <mpi.h>
#endif

#define Q 3 /* background plane: 1, x, y */
#define NBOUNDS 4 /* a plane's bounds: >= 0 at the four corners of its box */

typedef struct still_data {
    db_sim *sim;
    int p;                                /* parameters refined for this still (the scale rule may drop one) */
    int params[DB_ENSEMBLE_MAX_PARAMS];
    int col[DB_ENSEMBLE_MAX_PARAMS];      /* the result's column of each */
    long n;
    long *pix;
    double *obs;
    int *group;
    double *basis;
    int nentries, ngroups;
    int *entry_box, *entry_group;
    double *bounds;                       /* [ngroups * NBOUNDS * Q]: each plane >= 0 at its box's corners */
    double *F_abs;                        /* [nF] with -refine_F: |F| for the simulation (the fit's F may be < 0) */
    double *prior_mean, *prior_sd;        /* [p] with -prior_still: its start values and the sds (INFINITY: none) */
} still_data;

typedef struct ensemble {
    still_data *st;
    long nstills;
    long nF;       /* structure factors: the global vector is (F[nF], the shared parameters' values[nshared]) */
    int refine_F;
    int nshared;
    int shared[DB_ENSEMBLE_MAX_PARAMS];
} ensemble;

void db_ensemble_default_options(db_ensemble_options *o)
{
    if (!o) return;
    db_refine_options one; /* the solver's defaults are one still's (db_refine: its damping's reasons are there) */
    db_refine_default_options(&one);
    memset(o, 0, sizeof *o);
    o->max_iterations = one.max_iterations;
    o->cost_tolerance = one.cost_tolerance;
    o->step_tolerance = one.step_tolerance;
    o->initial_damping = one.initial_damping;
    o->spot_size = 15;
    o->obs_adc = 40.0;
    o->gain = 1.0;
}

void db_ensemble_result_free(db_ensemble_result *r)
{
    if (!r) return;
    for (long s = 0; r->stills && s < r->nstills; s++) {
        free(r->stills[s].boxes);
        free(r->stills[s].background);
        free(r->stills[s].background_sigma);
    }
    free(r->stills);
    free(r->hkl);
    free(r->F_start);
    free(r->F);
    free(r->sigma_F);
    free(r->F_refined);
    memset(r, 0, sizeof *r);
}

/* "-stills FILE:LINE: " before the message already in err (unless it is there). */
static int still_fail(db_error *err, const db_stills *S, long i, int code)
{
    char prefix[512];
    snprintf(prefix, sizeof prefix, "-stills %s:%ld: ", S->path ? S->path : "?", S->s[i].line);
    if (strncmp(err->message, prefix, strlen(prefix)) != 0) {
        const size_t lp = strlen(prefix), cap = sizeof err->message;
        size_t lm = strlen(err->message);
        if (lp < cap) {
            if (lp + lm >= cap) lm = cap - 1 - lp;
            memmove(err->message + lp, err->message, lm);
            memcpy(err->message, prefix, lp);
            err->message[lp + lm] = '\0';
        }
    }
    err->code = code;
    return code;
}

static int line_has(const db_still_line *l, const char *flag)
{
    for (int k = 0; k < l->argc; k++)
        if (!strcmp(l->argv[k], flag)) return 1;
    return 0;
}

static int argv_has(int argc, const char *const *argv, const char *flag)
{
    for (int k = 0; k < argc; k++)
        if (argv[k] && !strcmp(argv[k], flag)) return 1;
    return 0;
}

/* JF as n empty rows of cols columns (no F refined). */
static int jf_empty(db_csr *JF, long n, long cols, db_error *err)
{
    if (JF->row_cap < n || !JF->row_ptr) {
        long *rp = (long *)realloc(JF->row_ptr, sizeof(long) * (size_t)(n + 1));
        if (!rp) return db_fail(err, DB_ERR_NOMEM, "ensemble: out of memory");
        JF->row_ptr = rp;
        JF->row_cap = n;
    }
    memset(JF->row_ptr, 0, sizeof(long) * (size_t)(n + 1));
    JF->rows = n;
    JF->cols = cols;
    JF->nnz = 0;
    return DB_OK;
}

/* Appends the k shared parameters' derivatives (column-major dS[j*n + i]) to every row of JF as columns nF + j:
 * in place, from the last row back (each row moves up by k entries per earlier row, never over a row not yet
 * moved), so a row stays ascending. The entries are dense, zeros included: the solver's pattern is that of the
 * first evaluation's nonzeros, and a shared parameter touches every still (one without effect is refused). */
static int jf_append_shared(db_csr *JF, const double *dS, long n, int k, long nF, db_error *err)
{
    const long old = JF->nnz, total = old + n * (long)k;
    if (JF->nnz_cap < total || !JF->col || !JF->val) {
        const size_t cap = (size_t)(total > 0 ? total : 1);
        long *col = (long *)realloc(JF->col, sizeof(long) * cap);
        if (col) JF->col = col;
        double *val = col ? (double *)realloc(JF->val, sizeof(double) * cap) : NULL;
        if (!col || !val) return db_fail(err, DB_ERR_NOMEM, "ensemble: out of memory for the shared derivatives");
        JF->val = val;
        JF->nnz_cap = (long)cap;
    }
    for (long i = n - 1; i >= 0; i--) {
        const long a = JF->row_ptr[i], b = JF->row_ptr[i + 1], to = a + i * k;
        memmove(JF->col + to, JF->col + a, sizeof(long) * (size_t)(b - a));
        memmove(JF->val + to, JF->val + a, sizeof(double) * (size_t)(b - a));
        for (int j = 0; j < k; j++) {
            JF->col[to + (b - a) + j] = nF + j;
            JF->val[to + (b - a) + j] = dS[(size_t)j * (size_t)n + (size_t)i];
        }
        JF->row_ptr[i + 1] = b + (i + 1) * k;
    }
    JF->nnz = total;
    JF->cols = nF + k;
    return DB_OK;
}

/* The model (no background) and optionally J and JF of still s at x_s and G = (F, the shared values). */
static int evaluate(void *user, int s, const double *x_s, const double *G, double *mu, double *J, db_csr *JF,
                    db_error *err)
{
    ensemble *e = (ensemble *)user;
    still_data *d = &e->st[s];
    db_error terr;
    db_error *ue = J ? err : &terr;
    const int p = d->p, k = e->nshared, m = p + k;
    /* the still's own parameters and the shared ones, set and differentiated together */
    int names[2 * DB_ENSEMBLE_MAX_PARAMS];
    double values[2 * DB_ENSEMBLE_MAX_PARAMS];
    for (int j = 0; j < p; j++) names[j] = d->params[j], values[j] = x_s[j];
    for (int j = 0; j < k; j++) names[p + j] = e->shared[j], values[p + j] = G[e->nF + j];
    if (m && db_sim_set_params(d->sim, names, values, m, ue)) return J ? err->code : DB_LM_INFEASIBLE;
    if (e->refine_F) {
        /* the pixel sees F^2 only: the simulation gets |F| (in the still's own buffer: stills run side by side),
         * and d/dF of F^2 changes sign with F */
        for (long j = 0; j < e->nF; j++) d->F_abs[j] = fabs(G[j]);
        if (db_sim_set_structure_factors(d->sim, d->F_abs, e->nF, ue)) return J ? err->code : DB_LM_INFEASIBLE;
    }
    /* with shared parameters one render's derivatives are split into J and JF: a buffer of the call's own (not one
     * in e: evaluate may run for several stills at once, db_elm_problem.concurrent_stills) */
    double *jac = J;
    if (J && k && !(jac = (double *)malloc(sizeof(double) * (size_t)d->n * (size_t)m)))
        return db_fail(err, DB_ERR_NOMEM, "ensemble: out of memory for still %d's derivatives", s);
    int rc;
    if (J && e->refine_F) {
        rc = db_sim_run_selected_F(d->sim, names, m, mu, jac, JF, err);
        for (long q = 0; !rc && q < JF->nnz; q++)
            if (G[JF->col[q]] < 0.0) JF->val[q] = -JF->val[q];
    } else {
        rc = db_sim_run_selected(d->sim, names, J ? m : 0, mu, jac, ue);
        if (!rc && J) rc = jf_empty(JF, d->n, e->nF, err); /* no F refined: no F entries */
    }
    if (!rc && J && k) {
        memcpy(J, jac, sizeof(double) * (size_t)d->n * (size_t)p);
        rc = jf_append_shared(JF, jac + (size_t)d->n * (size_t)p, d->n, k, e->nF, err);
    }
    if (jac != J) free(jac);
    if (rc) return J ? rc : DB_LM_INFEASIBLE;
    return DB_OK;
}

/* The driver's progress, with the pixels and stills. */
typedef struct progress_adapter {
    const db_ensemble_options *o;
    long pixels, nstills;
} progress_adapter;

static void progress(void *user, const db_lm_iteration *it)
{
    const progress_adapter *pa = (const progress_adapter *)user;
    db_ensemble_iteration e = {it->iteration, it->accepted, it->cost, it->damping, it->step, it->seconds,
                               pa->pixels, pa->nstills};
    pa->o->progress(pa->o->progress_user, &e);
}

/* x and y of pixel (f, s) in box b's plane, by db_refine_background_at (the convention of db_refine). */
static void plane_xy(const int *b, int f, int s, double *x, double *y)
{
    static const double ex[3] = {0, 1, 0}, ey[3] = {0, 0, 1};
    *x = db_refine_background_at(ex, b, f, s);
    *y = db_refine_background_at(ey, b, f, s);
}

/* Groups (a plane per box, from the first box that holds a pixel; without boxes one over the selection's
 * bounding box), their basis. */
static int make_groups(still_data *d, int F, db_error *err)
{
    int nb = db_sim_get_boxes(d->sim, NULL, 0);
    d->nentries = nb > 0 ? nb : 1;
    d->entry_box = (int *)malloc(sizeof(int) * 4 * (size_t)d->nentries);
    d->entry_group = (int *)malloc(sizeof(int) * (size_t)d->nentries);
    d->group = (int *)malloc(sizeof(int) * (size_t)d->n);
    d->basis = (double *)malloc(sizeof(double) * Q * (size_t)d->n);
    if (!d->entry_box || !d->entry_group || !d->group || !d->basis)
        return db_fail(err, DB_ERR_NOMEM, "ensemble: out of memory for %ld pixels", d->n);
    if (nb > 0) {
        db_sim_get_boxes(d->sim, d->entry_box, nb);
    } else {
        int x0 = F, x1 = -1, y0 = -1, y1 = -1;
        for (long i = 0; i < d->n; i++) {
            int f = (int)(d->pix[i] % F), s = (int)(d->pix[i] / F);
            if (f < x0) x0 = f;
            if (f > x1) x1 = f;
            if (y0 < 0 || s < y0) y0 = s;
            if (s > y1) y1 = s;
        }
        d->entry_box[0] = x0, d->entry_box[1] = x1, d->entry_box[2] = y0, d->entry_box[3] = y1;
    }
    for (int e = 0; e < d->nentries; e++) d->entry_group[e] = -1;
    d->ngroups = 0;
    for (long i = 0; i < d->n; i++) {
        int f = (int)(d->pix[i] % F), s = (int)(d->pix[i] / F), e = 0;
        if (nb > 0)
            for (e = 0; e < nb; e++) {
                const int *b = d->entry_box + 4 * e;
                if (f >= b[0] && f <= b[1] && s >= b[2] && s <= b[3]) break;
            }
        if (e >= d->nentries) {
            d->group[i] = -1;
            continue;
        }
        if (d->entry_group[e] < 0) d->entry_group[e] = d->ngroups++;
        d->group[i] = d->entry_group[e];
        double *z = d->basis + (size_t)i * Q;
        z[0] = 1.0;
        plane_xy(d->entry_box + 4 * e, f, s, &z[1], &z[2]);
    }
    /* each plane is kept >= 0 at the corners of its box (so >= 0 on all of it), db_refine's rule (refine_sim.c):
     * with the Bragg model >= 0 the Poisson mean then stays >= 0, and a weak box's plane cannot dip below 0 at a
     * pixel with no counts (an infinite cost that refuses the trial step). A corner is the centre of a corner pixel,
     * at (+-hx, +-hy) from the box's centre in plane_xy's coordinates */
    d->bounds = (double *)malloc(sizeof(double) * NBOUNDS * Q * (size_t)(d->ngroups ? d->ngroups : 1));
    if (!d->bounds) return db_fail(err, DB_ERR_NOMEM, "ensemble: out of memory for %d boxes", d->ngroups);
    for (int e = 0; e < d->nentries; e++) {
        const int g = d->entry_group[e];
        if (g < 0) continue;
        const int *b = d->entry_box + 4 * e;
        const double hx = 0.5 * (b[1] - b[0]), hy = 0.5 * (b[3] - b[2]);
        for (int c = 0; c < NBOUNDS; c++) {
            double *row = d->bounds + ((size_t)g * NBOUNDS + c) * Q;
            row[0] = 1.0;
            row[1] = c & 1 ? hx : -hx;
            row[2] = c & 2 ? hy : -hy;
        }
    }
    return DB_OK;
}

/* Half the Poisson deviance of obs against mu (+ the background y) over a still. */
static double still_cost(const still_data *d, const double *model, const double *y)
{
    double c = 0.0;
    for (long i = 0; i < d->n; i++) {
        double mu = model[i];
        if (d->group[i] >= 0 && y) {
            const double *z = d->basis + (size_t)i * Q, *yy = y + (size_t)d->group[i] * Q;
            mu += z[0] * yy[0] + z[1] * yy[1] + z[2] * yy[2];
        }
        double k = d->obs[i];
        if (!(mu > 0)) return INFINITY;
        c += k > 0 ? mu - k + k * log(k / mu) : mu;
    }
    return c;
}

static void still_free(still_data *d)
{
    db_sim_destroy(d->sim);
    free(d->pix);
    free(d->obs);
    free(d->group);
    free(d->basis);
    free(d->entry_box);
    free(d->entry_group);
    free(d->bounds);
    free(d->F_abs);
    free(d->prior_mean);
    free(d->prior_sd);
}

/* Still i: its simulation, observed counts on its chosen pixels, background groups. */
static int setup_still(const db_stills *S, long i, int shared_argc, const char *const *shared_argv,
                       const db_ensemble_options *o, int shared_boxes, const ensemble *e, still_data *d,
                       db_error *err)
{
    const db_still_line *l = &S->s[i];
    db_config *cfg = NULL;
    double *img = NULL;
    int rc;
    /* a flag of the line that gives a shared parameter its value directly (params.c: its flag and the others
     * that set it); other ways (an -img header, another detector size moving the default beam centre) are caught
     * by comparing the stills' start values */
    for (int j = 0; j < e->nshared; j++) {
        const db_param_info *info = db_param_info_of(e->shared[j]);
        for (int f = -1; f < DB_PARAM_MAX_ALSO; f++) {
            const char *flag = f < 0 ? info->flag : info->also[f];
            if (flag && line_has(l, flag)) {
                db_fail(err, DB_ERR_ARGUMENT, "-refine_shared: %s is shared by every still, but this still gives its "
                        "own %s (one value for all: give it once, with the shared flags, or refine %s per still with "
                        "-refine_still)", info->name, flag, info->name);
                return still_fail(err, S, i, DB_ERR_ARGUMENT);
            }
        }
    }
    if (line_has(l, "-hkl")) {
        db_fail(err, DB_ERR_ARGUMENT, "a still cannot give its own -hkl: the structure factors are shared by every "
                                      "still (give -hkl once, with the shared flags)");
        return still_fail(err, S, i, DB_ERR_ARGUMENT);
    }
    const int own_boxes = line_has(l, "-boxes");
    if (l->spots && own_boxes) {
        db_fail(err, DB_ERR_ARGUMENT, "-spots makes boxes around the spots when no -boxes FILE is given; give one or "
                                      "the other");
        return still_fail(err, S, i, DB_ERR_ARGUMENT);
    }
    if ((rc = db_stills_config(S, i, shared_argc, shared_argv, &cfg, err))) return rc;
    rc = db_sim_create(&d->sim, cfg, NULL, err);
    db_config_destroy(cfg);
    if (rc) return still_fail(err, S, i, rc);
    int F, Sp;
    db_sim_size(d->sim, &F, &Sp);
    const double adc = l->has_obs_adc ? l->obs_adc : o->obs_adc, gain = l->has_gain ? l->gain : o->gain;
    if ((rc = db_observed_read(l->obs_path, F, Sp, adc, l->obs_float64 || o->obs_float64, &img, err)))
        return still_fail(err, S, i, rc);
    const int spots = l->spots ? l->spots : own_boxes ? 0 : o->spots;
    const int size = l->spot_size ? l->spot_size : o->spot_size;
    (void)shared_boxes;
    long count = db_sim_selected_count(d->sim);
    if (count == 0) {
        db_fail(err, DB_ERR_ARGUMENT, "no pixels are selected (check -roi, -mask and -boxes)");
        rc = still_fail(err, S, i, DB_ERR_ARGUMENT);
        goto done;
    }
    if (spots) {
        long *pix = (long *)malloc(sizeof(long) * (size_t)count);
        int *boxes = (int *)malloc(sizeof(int) * 4 * (size_t)spots);
        if (!pix || !boxes) {
            free(pix);
            free(boxes);
            rc = db_fail(err, DB_ERR_NOMEM, "ensemble: out of memory");
            goto done;
        }
        int nboxes = -1;
        if (db_sim_selected_pixel_list(d->sim, pix, count, err) >= 0)
            nboxes = db_find_spots(img, F, Sp, pix, count, spots, size, boxes, err);
        if (nboxes == 0)
            db_fail(err, DB_ERR_ARGUMENT, "no spots above the background in '%s' (-spots %d); give -boxes FILE",
                    l->obs_path, spots);
        rc = nboxes > 0 ? db_sim_select_boxes(d->sim, boxes, nboxes, err) : nboxes == 0 ? DB_ERR_ARGUMENT : err->code;
        free(pix);
        free(boxes);
        if (rc) {
            rc = still_fail(err, S, i, rc);
            goto done;
        }
        count = db_sim_selected_count(d->sim);
    }
    d->n = count;
    d->pix = (long *)malloc(sizeof(long) * (size_t)count);
    d->obs = (double *)malloc(sizeof(double) * (size_t)count);
    if (!d->pix || !d->obs) {
        rc = db_fail(err, DB_ERR_NOMEM, "ensemble: out of memory for %ld pixels", count);
        goto done;
    }
    if (db_sim_selected_pixel_list(d->sim, d->pix, count, err) < 0) {
        rc = still_fail(err, S, i, err->code);
        goto done;
    }
    for (long k = 0; k < count; k++) {
        double v = img[d->pix[k]] / gain;
        if (!isfinite(v) || v < 0.0) {
            db_fail(err, DB_ERR_ARGUMENT, "the observed value of pixel (fast %ld, slow %ld) of '%s' is %g; the Poisson "
                    "likelihood needs finite counts >= 0", d->pix[k] % F, d->pix[k] / F, l->obs_path, v);
            rc = still_fail(err, S, i, DB_ERR_ARGUMENT);
            goto done;
        }
        d->obs[k] = v;
    }
    if ((rc = make_groups(d, F, err))) goto done;
done:
    free(img);
    return rc;
}

#ifdef DB_HAVE_MPI
/* The ensemble_lm.h communication over MPI_COMM_WORLD (blocking; MPI's default handler aborts on a failure). */
static void mpi_bcast(void *user, int root, void *buf, long bytes)
{
    (void)user;
    for (long o = 0; o < bytes; o += 1L << 30) {
        long k = bytes - o < (1L << 30) ? bytes - o : (1L << 30);
        MPI_Bcast((char *)buf + o, (int)k, MPI_BYTE, root, MPI_COMM_WORLD);
    }
}
static void mpi_send(void *user, int to, const void *buf, long bytes)
{
    (void)user;
    for (long o = 0; o < bytes; o += 1L << 30) {
        long k = bytes - o < (1L << 30) ? bytes - o : (1L << 30);
        MPI_Send((const char *)buf + o, (int)k, MPI_BYTE, to, 20, MPI_COMM_WORLD);
    }
}
static void mpi_recv(void *user, int from, void *buf, long bytes)
{
    (void)user;
    for (long o = 0; o < bytes; o += 1L << 30) {
        long k = bytes - o < (1L << 30) ? bytes - o : (1L << 30);
        MPI_Recv((char *)buf + o, (int)k, MPI_BYTE, from, 20, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    }
}
static void mpi_max(void *user, double *v, int n)
{
    (void)user;
    MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
}
#endif

/* The ranks of MPI_COMM_WORLD when MPI is initialised with more than one; else NULL (one process). */
static const db_elm_comm *world(db_elm_comm *c)
{
    memset(c, 0, sizeof *c);
    c->size = 1;
#ifdef DB_HAVE_MPI
    int inited = 0, finalized = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&finalized);
    if (inited && !finalized) {
        MPI_Comm_rank(MPI_COMM_WORLD, &c->rank);
        MPI_Comm_size(MPI_COMM_WORLD, &c->size);
        c->bcast = mpi_bcast;
        c->send = mpi_send;
        c->recv = mpi_recv;
        c->max = mpi_max;
    }
#endif
    return c->size > 1 ? c : NULL;
}

static void *xcalloc(size_t n, size_t k) /* inside a collective step: no way back in step with the other ranks */
{
    void *p = calloc(n ? n : 1, k);
    if (!p) {
        fprintf(stderr, "dualbragg-ensemble: out of memory while gathering the stills' results\n");
        abort();
    }
    return p;
}

/* options.prior_still ("name=sd,name=sd"; NULL or "" for none): sd[j] for each refined parameter params[j] named there
 * (in its command-line units; INFINITY for the others). Returns the count, or -1 with err set naming -prior_still. */
static int parse_priors(const char *list, const int *params, int np, double *sd, db_error *err)
{
    for (int j = 0; j < np; j++) sd[j] = INFINITY;
    int count = 0;
    const char *p = list && *list ? list : NULL; /* NULL and "": no prior */
    while (p) {
        char item[128];
        if (!db_list_next_item(&p, item, sizeof item)) {
            if (p > list && !*p) /* the empty item after the last comma */
                db_fail(err, DB_ERR_ARGUMENT, "-prior_still: \"%s\" ends with a comma", list);
            else
                db_fail(err, DB_ERR_ARGUMENT, "-prior_still: expected NAME=SD items separated by commas, got \"%s\"", list);
            return -1;
        }
        char *eq = strchr(item, '=');
        if (!eq) {
            db_fail(err, DB_ERR_ARGUMENT, "-prior_still: \"%s\" is not NAME=SD (a parameter of -refine_still and the "
                    "standard deviation of its prior, in the parameter's units)", item);
            return -1;
        }
        *eq = '\0';
        const int id = db_param_from_name(item);
        int j = 0;
        while (j < np && params[j] != id) j++;
        if (id < 0 || j == np) {
            db_fail(err, DB_ERR_ARGUMENT, "-prior_still: %s is not a parameter of -refine_still (a prior restrains "
                    "a still's own refined parameter)", item);
            return -1;
        }
        char *tail;
        const double v = strtod(eq + 1, &tail);
        if (tail == eq + 1 || *tail || !(v > 0.0) || !isfinite(v)) {
            db_fail(err, DB_ERR_ARGUMENT, "-prior_still: %s's sd \"%s\" is not a number > 0", item, eq + 1);
            return -1;
        }
        if (isfinite(sd[j])) {
            db_fail(err, DB_ERR_ARGUMENT, "-prior_still: %s is given twice", item);
            return -1;
        }
        sd[j] = v;
        count++;
    }
    return count;
}

int db_ensemble_refine(int shared_argc, const char *const *shared_argv, const db_stills *stills,
                       const char *refine_still, int refine_F, const db_ensemble_options *options,
                       db_ensemble_result *result, db_error *err)
{
    db_error local_err;
    if (!err) err = &local_err;
    db_error_clear(err);
    db_ensemble_options defaults;
    db_ensemble_default_options(&defaults);
    const db_ensemble_options *o = options ? options : &defaults;
    if (!result) return db_fail(err, DB_ERR_ARGUMENT, "db_ensemble_refine: no result");
    memset(result, 0, sizeof *result);
    if (!stills || stills->n < 1 || !stills->s)
        return db_fail(err, DB_ERR_ARGUMENT, "db_ensemble_refine: no stills");
    if (stills->n > 2147483647L) return db_fail(err, DB_ERR_ARGUMENT, "db_ensemble_refine: too many stills");
    if (shared_argc < 0 || (shared_argc > 0 && !shared_argv))
        return db_fail(err, DB_ERR_ARGUMENT, "db_ensemble_refine: bad shared flags");
    if (o->max_iterations < 1 || !(o->cost_tolerance >= 0) || !(o->step_tolerance >= 0) ||
        !(o->initial_damping > 0) || !isfinite(o->initial_damping) || o->spots < 0 || o->spot_size < 1 ||
        !isfinite(o->obs_adc) || !(o->gain > 0) || !isfinite(o->gain))
        return db_fail(err, DB_ERR_ARGUMENT, "db_ensemble_refine: bad options (max_iterations >= 1, tolerances >= 0, "
                                             "initial_damping > 0, spots >= 0, spot_size >= 1, gain > 0)");
    int params[DB_ENSEMBLE_MAX_PARAMS];
    int np = 0;
    if (refine_still && *refine_still) {
        np = db_param_parse_list_for("-refine_still", refine_still, params, err);
        if (np < 0) return err->code;
    }
    double prior_sd[DB_ENSEMBLE_MAX_PARAMS];
    const int nprior = parse_priors(o->prior_still, params, np, prior_sd, err); /* NULL or "": none */
    if (nprior < 0) return err->code;
    int shared[DB_ENSEMBLE_MAX_PARAMS];
    int nsh = 0;
    if (o->refine_shared && *o->refine_shared) {
        nsh = db_param_parse_list_for("-refine_shared", o->refine_shared, shared, err);
        if (nsh < 0) return err->code;
    }
    for (int j = 0; j < nsh; j++) {
        for (int i = 0; i < np; i++)
            if (params[i] == shared[j])
                return db_fail(err, DB_ERR_ARGUMENT, "-refine_shared: %s is also in -refine_still: a parameter is "
                               "either each still's own or one value every still shares, not both",
                               db_param_name(shared[j]));
        if (refine_F && shared[j] == db_param_from_name("fluence"))
            return db_fail(err, DB_ERR_ARGUMENT, "-refine_shared: fluence with -refine_F: the intensity is fluence "
                           "x F^2, so one fluence every still shares and the structure factors are one scale "
                           "(F times t and the fluence over t^2 change no pixel); refine F at the given fluence, or "
                           "fluence per still (-refine_still, where the first still's is held)");
    }
    if (np == 0 && nsh == 0 && !refine_F)
        return db_fail(err, DB_ERR_ARGUMENT, "nothing to refine: give per-still parameters (-refine_still LIST), "
                                             "shared ones (-refine_shared LIST) and/or the structure factors "
                                             "(-refine_F)");
    const int shared_boxes = argv_has(shared_argc, shared_argv, "-boxes");
    if (o->spots && shared_boxes)
        return db_fail(err, DB_ERR_ARGUMENT, "-spots makes boxes around the spots when no -boxes FILE is given; give "
                                             "one or the other");
    /* the shared flags alone, once (stills.h: a shared flag missing its value would take a still's word) */
    {
        db_config *cfg = db_config_create();
        if (!cfg) return db_fail(err, DB_ERR_NOMEM, "ensemble: out of memory");
        int rc = db_config_parse(cfg, shared_argc, shared_argv, err);
        int has_hkl = rc ? 0 : db_config_has_hkl(cfg);
        db_config_destroy(cfg);
        if (rc) return rc;
        if (refine_F && !has_hkl)
            return db_fail(err, DB_ERR_ARGUMENT, "-refine_F needs a structure-factor table: give -hkl FILE (the "
                                                 "starting F) with the shared flags");
    }
    const int fluence = db_param_from_name("fluence");
    int fixed_still = -1;
    for (int j = 0; j < np; j++)
        if (params[j] == fluence && refine_F) fixed_still = 0;

    const long S = stills->n;
    db_elm_comm comm_store;
    const db_elm_comm *comm = world(&comm_store);
    const int size = comm ? comm->size : 1, rank = comm ? comm->rank : 0;
    int first, last, bad = -1;
    db_elm_comm_range((int)S, size, rank, &first, &last);
    int owner0 = 0; /* the rank that owns still 0: not rank 0 when there are more ranks than stills */
    for (int q = 0; q < size; q++) {
        int a, b;
        db_elm_comm_range((int)S, size, q, &a, &b);
        if (a == 0 && b > 0) {
            owner0 = q;
            break;
        }
    }
    long *rec = (long *)calloc((size_t)S * 4 + 1, sizeof(long)), *goff = (long *)calloc((size_t)size + 1, sizeof(long));
    ensemble E;
    memset(&E, 0, sizeof E);
    E.nstills = S;
    E.refine_F = refine_F;
    E.nshared = nsh;
    memcpy(E.shared, shared, sizeof(int) * (size_t)nsh);
    E.st = (still_data *)calloc((size_t)S, sizeof(still_data));
    db_elm_still *es = (db_elm_still *)calloc((size_t)S, sizeof(db_elm_still));
    double *x = NULL, *y = NULL, *sx = NULL, *sy = NULL, *F = NULL, *model = NULL, *J = NULL;
    long *xoff = (long *)calloc((size_t)S + 1, sizeof(long)), *yoff = (long *)calloc((size_t)S + 1, sizeof(long));
    db_ensemble_result *r = result;
    int rc = DB_OK;
    if (!E.st || !es || !xoff || !yoff || !rec || !goff) goto nomem; /* every rank alike (small arrays) */
    r->nstills = S;
    r->stills = (db_ensemble_still_result *)calloc((size_t)S, sizeof *r->stills);
    if (!r->stills) goto nomem;
    r->nparams = np;
    memcpy(r->params, params, sizeof(int) * (size_t)np);
    memcpy(r->prior_sd, prior_sd, sizeof(double) * (size_t)np);
    r->refine_F = refine_F;
    r->nshared = nsh;
    memcpy(r->shared, shared, sizeof(int) * (size_t)nsh);
    r->fluence_fixed_still = fixed_still;
    const double t0 = db_now_seconds();

    /* each rank sets up the stills it owns; then their sizes (n, p, groups, listed F) go to every rank */
    long nmax = 0;
    for (long s = first; s < last && !rc; s++) {
        still_data *d = &E.st[s];
        if ((rc = setup_still(stills, s, shared_argc, shared_argv, o, shared_boxes, &E, d, err))) {
            bad = (int)s;
            break;
        }
        d->p = 0;
        for (int j = 0; j < np; j++) {
            if (s == fixed_still && params[j] == fluence) continue;
            d->col[d->p] = j;
            d->params[d->p++] = params[j];
        }
        if (d->n > nmax) nmax = d->n;
        rec[4 * s] = d->n;
        rec[4 * s + 1] = d->p;
        rec[4 * s + 2] = d->ngroups;
        rec[4 * s + 3] = db_sim_structure_factor_count(d->sim);
        if (s == 0 && rec[3] > 0) {
            r->hkl = (int *)malloc(sizeof(int) * 3 * (size_t)rec[3]);
            r->F_start = (double *)malloc(sizeof(double) * (size_t)rec[3]);
            if (!r->hkl || !r->F_start) rc = db_fail(err, DB_ERR_NOMEM, "ensemble: out of memory");
            else if (db_sim_get_structure_factors(d->sim, r->hkl, r->F_start, rec[3], err) < 0) rc = err->code;
            if (rc) bad = -1;
        }
    }
    if ((rc = db_elm_comm_agree(comm, rc, err, &bad))) goto fail;
    for (int q = 0; q <= size; q++) {
        int a, b;
        db_elm_comm_range((int)S, size, q < size ? q : size - 1, &a, &b);
        goff[q] = (long)sizeof(long) * 4 * (q < size ? a : b);
    }
    db_elm_comm_allgather(comm, rec, goff);
    E.nF = r->nF = rec[3];
    if (comm && rank != owner0 && E.nF > 0) {
        r->hkl = (int *)xcalloc(3 * (size_t)E.nF, sizeof(int));
        r->F_start = (double *)xcalloc((size_t)E.nF, sizeof(double));
    }
    if (comm && E.nF > 0) {
        comm->bcast(comm->user, owner0, r->hkl, (long)sizeof(int) * 3 * E.nF);
        comm->bcast(comm->user, owner0, r->F_start, (long)sizeof(double) * E.nF);
    }
    for (long s = 0; s < S; s++) { /* every rank alike */
        if (rec[4 * s + 3] != E.nF) {
            db_fail(err, DB_ERR_ARGUMENT, "this still lists %ld structure factors, the first %ld: they must be shared",
                    rec[4 * s + 3], E.nF);
            rc = still_fail(err, stills, s, DB_ERR_ARGUMENT);
            goto fail;
        }
        xoff[s + 1] = xoff[s] + rec[4 * s + 1];
        yoff[s + 1] = yoff[s] + rec[4 * s + 2] * Q;
        r->pixels += rec[4 * s];
    }
    const long nF = E.nF, nG = nF + nsh; /* the global vector: F, then the shared parameters */
    F = (double *)malloc(sizeof(double) * (size_t)(nG + 1));
    r->F = (double *)malloc(sizeof(double) * (size_t)(nF + 1));
    r->sigma_F = (double *)malloc(sizeof(double) * (size_t)(nG + 1));
    r->F_refined = (unsigned char *)calloc((size_t)nG + 1, 1);
    x = (double *)malloc(sizeof(double) * (size_t)(xoff[S] + 1));
    sx = (double *)malloc(sizeof(double) * (size_t)(xoff[S] + 1));
    y = (double *)calloc((size_t)(yoff[S] + 1), sizeof(double));
    sy = (double *)calloc((size_t)(yoff[S] + 1), sizeof(double));
    model = (double *)malloc(sizeof(double) * (size_t)(nmax + 1));
    J = (double *)malloc(sizeof(double) * (size_t)(nmax + 1) * (size_t)(np + nsh + 1));
    if (!F || !r->F || !r->sigma_F || !r->F_refined || !x || !sx || !y || !sy || !model || !J) goto nomem;
    if (nF) memcpy(F, r->F_start, sizeof(double) * (size_t)nF);

    /* the shared parameters start at the first still's values, on every rank; each still must start at the same
     * bits (a flag of its own that params.c's table does not list would otherwise make its start the still's, not the
     * shared flags') */
    if (nsh) {
        if (rank == owner0) rc = db_sim_get_params(E.st[0].sim, shared, r->shared_start, nsh, err);
        if ((rc = db_elm_comm_agree(comm, rc, err, &bad))) goto fail;
        if (comm) comm->bcast(comm->user, owner0, r->shared_start, (long)sizeof(double) * nsh);
        for (long s = first; s < last && !rc; s++) {
            double v[DB_ENSEMBLE_MAX_PARAMS];
            if ((rc = db_sim_get_params(E.st[s].sim, shared, v, nsh, err))) {
                rc = still_fail(err, stills, s, rc);
                bad = (int)s;
                break;
            }
            for (int j = 0; j < nsh; j++)
                if (!(v[j] == r->shared_start[j])) {
                    const char *name = db_param_name(shared[j]), *unit = db_param_unit(shared[j]);
                    db_fail(err, DB_ERR_ARGUMENT, "-refine_shared: %s is shared by every still, but this still's flags "
                            "start it at %.17g %s and the first still's (line %ld) at %.17g %s: give it once, with the "
                            "shared flags, or refine %s per still with -refine_still", name, v[j], unit,
                            stills->s[0].line, r->shared_start[j], unit, name);
                    rc = still_fail(err, stills, s, DB_ERR_ARGUMENT);
                    bad = (int)s;
                    break;
                }
        }
        if ((rc = db_elm_comm_agree(comm, rc, err, &bad))) goto fail;
        memcpy(F + nF, r->shared_start, sizeof(double) * (size_t)nsh);
    }

    for (long s = 0; s < S; s++) { /* the sizes of every still; the data of the owned ones */
        es[s].n = rec[4 * s];
        es[s].p = (int)rec[4 * s + 1];
        es[s].ngroups = (int)rec[4 * s + 2];
        es[s].q = es[s].ngroups ? Q : 0;
    }
    /* the start: values, a run with derivatives (parameters without effect are refused), the background */
    for (long s = first; s < last && !rc; s++) {
        still_data *d = &E.st[s];
        db_ensemble_still_result *sr = &r->stills[s];
        sr->line = stills->s[s].line;
        sr->pixels = d->n;
        if ((rc = db_sim_get_params(d->sim, params, sr->start, np, err))) goto fail_still;
        for (int j = 0; j < np; j++) sr->values[j] = sr->start[j];
        for (int k = 0; k < d->p; k++) x[xoff[s] + k] = sr->start[d->col[k]];
        int names[2 * DB_ENSEMBLE_MAX_PARAMS];
        memcpy(names, d->params, sizeof(int) * (size_t)d->p);
        memcpy(names + d->p, shared, sizeof(int) * (size_t)nsh);
        if ((rc = db_sim_run_selected(d->sim, names, d->p + nsh, model, J, err))) goto fail_still;
        for (int c = 0; c < d->p + nsh; c++) {
            const double *col = J + (size_t)c * (size_t)d->n;
            long i = 0;
            while (i < d->n && col[i] == 0.0) i++;
            if (i == d->n) {
                db_fail(err, DB_ERR_ARGUMENT, "%s: %s has no effect on this still's %ld fitted pixels at the start "
                        "(its derivative is 0 on every one): it cannot be refined",
                        c < d->p ? "-refine_still" : "-refine_shared", db_param_name(names[c]), d->n);
                rc = DB_ERR_ARGUMENT;
                goto fail_still;
            }
        }
        /* each group's background starts at the mean of observed - model over its pixels, at least 1e-3 */
        double *yy = y + yoff[s];
        long *cnt = (long *)calloc((size_t)d->ngroups + 1, sizeof(long));
        if (!cnt) {
            rc = db_fail(err, DB_ERR_NOMEM, "ensemble: out of memory");
            break;
        }
        for (long i = 0; i < d->n; i++)
            if (d->group[i] >= 0) {
                yy[(size_t)d->group[i] * Q] += d->obs[i] - model[i];
                cnt[d->group[i]]++;
            }
        for (int g = 0; g < d->ngroups; g++) {
            double a = cnt[g] ? yy[(size_t)g * Q] / (double)cnt[g] : 0.0;
            yy[(size_t)g * Q] = a > 1e-3 ? a : 1e-3;
        }
        free(cnt);
        sr->start_cost = still_cost(d, model, yy);
        es[s].n = d->n;
        es[s].p = d->p;
        es[s].obs = d->obs;
        es[s].ngroups = d->ngroups;
        es[s].q = d->ngroups ? Q : 0;
        es[s].group = d->ngroups ? d->group : NULL;
        es[s].basis = d->ngroups ? d->basis : NULL;
        es[s].nbounds = d->ngroups ? NBOUNDS : 0;
        es[s].bounds = d->ngroups ? d->bounds : NULL;
        if (nprior && d->p) { /* the prior is centred on the still's start (its orientation from indexing) */
            d->prior_mean = (double *)malloc(sizeof(double) * (size_t)d->p);
            d->prior_sd = (double *)malloc(sizeof(double) * (size_t)d->p);
            if (!d->prior_mean || !d->prior_sd) {
                rc = db_fail(err, DB_ERR_NOMEM, "ensemble: out of memory");
                break;
            }
            for (int k = 0; k < d->p; k++) {
                d->prior_mean[k] = sr->start[d->col[k]];
                d->prior_sd[k] = prior_sd[d->col[k]];
            }
            es[s].prior_mean = d->prior_mean;
            es[s].prior_sd = d->prior_sd;
        }
        continue;
    fail_still:
        rc = still_fail(err, stills, s, rc);
        bad = (int)s;
    }
    if ((rc = db_elm_comm_agree(comm, rc, err, &bad))) goto fail;

    db_elm_problem P = {.nstills = (int)S, .stills = es, .nF = nG, .evaluate = evaluate, .user = &E,
                        .variance_offset = 0.0, .F_even = refine_F, .n_shared = nsh};
    if (refine_F) { /* F enters as F^2 unless some still interpolates (on any rank) */
        double interp = 0.0;
        for (long s = first; s < last; s++) {
            db_geometry g;
            if (!db_sim_geometry(E.st[s].sim, &g) && g.interpolate) interp = 1.0;
        }
        if (comm && size > 1) comm->max(comm->user, &interp, 1);
        P.F_squared = interp == 0.0;
    }
    for (long s = first; refine_F && s < last; s++)
        if (!(E.st[s].F_abs = (double *)malloc(sizeof(double) * (size_t)(nF > 0 ? nF : 1)))) goto nomem;
    P.concurrent_stills = 1; /* evaluate touches only the still's own simulation and buffers */
    db_elm_options lo;
    db_elm_default_options(&lo);
    lo.max_iterations = o->max_iterations;
    lo.cost_tolerance = o->cost_tolerance;
    lo.cost_decrease_tolerance = DB_LM_POISSON_COST_DECREASE; /* as db_refine's Poisson fits */
    lo.step_tolerance = o->step_tolerance;
    lo.initial_damping = o->initial_damping;
    db_elm_result er;
    progress_adapter pa = {o, r->pixels, S};
    if (o->progress) {
        lo.progress = progress;
        lo.progress_user = &pa;
    }
    rc = db_elm_fit_comm(&P, &lo, comm, x, y, F, sx, sy, r->sigma_F, r->F_refined, &er, err);
    if (rc) {
        if (er.bad_still >= 0) still_fail(err, stills, er.bad_still, rc);
        goto fail;
    }
    r->nF_refined = 0; /* the solver's count holds the shared parameters too */
    for (long j = 0; j < nF; j++) r->nF_refined += r->F_refined[j];
    if (refine_F && r->nF_refined == 0) {
        rc = db_fail(err, DB_ERR_ARGUMENT, "-refine_F: no fitted pixel of any still touches a listed reflection "
                                           "(nothing to refine in F)");
        goto fail;
    }
    if (nF) memcpy(r->F, F, sizeof(double) * (size_t)nF);
    for (int j = 0; j < nsh; j++) {
        r->shared_value[j] = F[nF + j];
        r->shared_sigma[j] = r->sigma_F[nF + j];
    }
    r->start_cost = er.start_cost;
    r->cost = er.cost;
    r->deviance = er.deviance;
    r->dof = er.dof;
    r->iterations = er.iterations;
    r->evaluations = er.evaluations;
    r->stop_reason = er.stop_reason;
    r->seconds_linearise = er.seconds_linearise;
    r->seconds_trial = er.seconds_trial;
    r->seconds_stills = er.seconds_stills;
    r->seconds_reduced = er.seconds_reduced;
    r->reduced_solves = er.reduced_solves;
    r->reduced_factors = er.reduced_factors;
    r->reduced_cg_iterations = er.reduced_cg_iterations;
    /* per still: the fitted values, the background entries, and the simulation left at the fit (and its cost) */
    for (long s = first; s < last && !rc; s++) {
        still_data *d = &E.st[s];
        db_ensemble_still_result *sr = &r->stills[s];
        for (int j = 0; j < np; j++) {
            sr->sigma[j] = NAN;
            sr->fixed[j] = 1;
        }
        for (int k = 0; k < d->p; k++) {
            sr->values[d->col[k]] = x[xoff[s] + k];
            sr->sigma[d->col[k]] = sx[xoff[s] + k];
            sr->fixed[d->col[k]] = 0;
        }
        sr->nboxes = d->nentries;
        sr->boxes = (int *)malloc(sizeof(int) * 4 * (size_t)d->nentries);
        sr->background = (double *)malloc(sizeof(double) * 3 * (size_t)d->nentries);
        sr->background_sigma = (double *)malloc(sizeof(double) * 3 * (size_t)d->nentries);
        if (!sr->boxes || !sr->background || !sr->background_sigma) {
            rc = db_fail(err, DB_ERR_NOMEM, "ensemble: out of memory");
            break;
        }
        memcpy(sr->boxes, d->entry_box, sizeof(int) * 4 * (size_t)d->nentries);
        for (int e = 0; e < d->nentries; e++) {
            int g = d->entry_group[e];
            for (int k = 0; k < 3; k++) {
                sr->background[3 * e + k] = g < 0 ? NAN : y[yoff[s] + (long)g * Q + k];
                sr->background_sigma[3 * e + k] = g < 0 ? NAN : sy[yoff[s] + (long)g * Q + k];
            }
        }
        if ((rc = evaluate(&E, (int)s, x + xoff[s], F, model, NULL, NULL, err))) {
            if (rc == DB_LM_INFEASIBLE) rc = db_fail(err, DB_ERR_INTERNAL, "the fitted model cannot be rendered");
            rc = still_fail(err, stills, s, rc);
            bad = (int)s;
            break;
        }
        sr->cost = still_cost(d, model, y + yoff[s]);
    }
    if ((rc = db_elm_comm_agree(comm, rc, err, &bad))) goto fail;
    /* every still's result to every rank, in still order (only rank 0 writes them) */
    for (int q = 0; comm && q < size; q++) {
        int a, b;
        db_elm_comm_range((int)S, size, q, &a, &b);
        for (long s = a; s < b; s++) {
            db_ensemble_still_result *sr = &r->stills[s];
            db_ensemble_still_result keep = *sr;
            comm->bcast(comm->user, q, sr, (long)sizeof *sr);
            if (q != rank) {
                sr->boxes = (int *)xcalloc(4 * (size_t)sr->nboxes, sizeof(int));
                sr->background = (double *)xcalloc(3 * (size_t)sr->nboxes, sizeof(double));
                sr->background_sigma = (double *)xcalloc(3 * (size_t)sr->nboxes, sizeof(double));
            } else {
                sr->boxes = keep.boxes;
                sr->background = keep.background;
                sr->background_sigma = keep.background_sigma;
            }
            comm->bcast(comm->user, q, sr->boxes, (long)sizeof(int) * 4 * sr->nboxes);
            comm->bcast(comm->user, q, sr->background, (long)sizeof(double) * 3 * sr->nboxes);
            comm->bcast(comm->user, q, sr->background_sigma, (long)sizeof(double) * 3 * sr->nboxes);
        }
    }
    if (nprior) { /* the deviance is the data's: the cost less the priors' terms */
        double dev = 0.0;
        for (long s = 0; s < S; s++) dev += 2.0 * r->stills[s].cost;
        r->deviance = dev;
    }
    r->seconds = db_now_seconds() - t0;
    rc = DB_OK;
    goto done;
nomem:
    rc = db_fail(err, DB_ERR_NOMEM, "ensemble: out of memory");
fail:
    db_ensemble_result_free(r);
done:
    for (long s = 0; E.st && s < S; s++) still_free(&E.st[s]);
    free(E.st);
    free(es);
    free(xoff);
    free(yoff);
    free(rec);
    free(goff);
    free(x);
    free(y);
    free(sx);
    free(sy);
    free(F);
    free(model);
    free(J);
    return rc;
}

