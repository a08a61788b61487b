/* gradcheck.c: derivative images against central differences, with the base run's decisions replayed. */
#define AD_N 0
#include "gradcheck.h"
#include "config.h"
#include "error.h"
#include "fileio.h"
#include "physics.h"
#include "sim.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RTD (180.0 * M_1_PI)

void db_gc_default_options(db_gc_options *o)
{
    memset(o, 0, sizeof *o);
    o->roi[0] = o->roi[1] = o->roi[2] = o->roi[3] = -1;
    o->rtol = 1e-6;
    o->atol_factor = 1e-8;
    o->atol_abs = -1.0;
}

/* Where a parameter lives in the configuration, and d(internal)/d(command-line value). */
static double *param_slot(db_config *c, int p, double *factor)
{
    switch (p) {
    case DB_P_A: *factor = 1.0; return &c->cell_a;
    case DB_P_B: *factor = 1.0; return &c->cell_b;
    case DB_P_C: *factor = 1.0; return &c->cell_c;
    case DB_P_ALPHA: *factor = 1.0 / RTD; return &c->cell_alpha;
    case DB_P_BETA: *factor = 1.0 / RTD; return &c->cell_beta;
    case DB_P_GAMMA: *factor = 1.0 / RTD; return &c->cell_gamma;
    case DB_P_MISSET_X: *factor = 1.0 / RTD; return &c->misset[0];
    case DB_P_MISSET_Y: *factor = 1.0 / RTD; return &c->misset[1];
    case DB_P_MISSET_Z: *factor = 1.0 / RTD; return &c->misset[2];
    case DB_P_PHI0: *factor = 1.0 / RTD; return &c->phi0;
    case DB_P_DISTANCE: *factor = 1e-3; return &c->distance;
    case DB_P_XBEAM: *factor = 1e-3; return &c->Xbeam;
    case DB_P_YBEAM: *factor = 1e-3; return &c->Ybeam;
    case DB_P_ORGX: *factor = 1.0; return &c->ORGX;
    case DB_P_ORGY: *factor = 1.0; return &c->ORGY;
    case DB_P_LAMBDA: *factor = 1e-10; return &c->lambda0;
    case DB_P_NA: *factor = 1.0; return &c->Na;
    case DB_P_NB: *factor = 1.0; return &c->Nb;
    case DB_P_NC: *factor = 1.0; return &c->Nc;
    case DB_P_MOSAIC: *factor = 1.0 / RTD; return &c->mosaic_spread;
    case DB_P_FLUENCE: *factor = 1.0; return &c->fluence;
    default: *factor = 1.0; return NULL; /* osc: through the forced phistep */
    }
}

/* Gives every differentiable value an explicit setting equal to what the reference would use, so that a
 * perturbation changes only that value (absent b, c follow a; an absent beam centre follows the detector). */
static int materialize(db_config *c, const char *fdump, db_error *err)
{
    if (c->user_cell) {
        if (c->cell_b <= 0.0) c->cell_b = c->cell_a;
        if (c->cell_c <= 0.0) c->cell_c = c->cell_a;
        if (c->cell_alpha <= 0.0) c->cell_alpha = M_PI / 2;
        if (c->cell_beta <= 0.0) c->cell_beta = M_PI / 2;
        if (c->cell_gamma <= 0.0) c->cell_gamma = M_PI / 2;
    }
    if (c->misset_random) {
        db_sim *s;
        int rc = db_sim_create(&s, c, fdump, err);
        if (rc) return rc;
        memcpy(c->misset, s->misset_random_angles, sizeof c->misset);
        c->misset_random = 0;
        db_sim_destroy(s);
    }
    c->misset_given = 1; /* zero angles rotate nothing, exactly */
    db_plan plan;
    int rc = db_make_plan(c, &plan, err);
    if (rc) return rc;
    if (isnan(c->Xbeam)) c->Xbeam = plan.Xbeam;
    if (isnan(c->Ybeam)) c->Ybeam = plan.Ybeam;
    return DB_OK;
}

static int find_brightest(const db_config *c, const char *fdump, int box[4], db_error *err)
{
    db_sim *s;
    int rc = db_sim_create(&s, c, fdump, err);
    if (rc) return rc;
    int F, S;
    db_sim_size(s, &F, &S);
    float *img = (float *)malloc((size_t)F * S * sizeof(float));
    if (!img) {
        db_sim_destroy(s);
        return db_fail(err, DB_ERR_NOMEM, "out of memory");
    }
    rc = db_sim_run(s, img, NULL, err);
    if (!rc) {
        long best = 0;
        for (long i = 1; i < (long)F * S; i++)
            if (img[i] > img[best]) best = i;
        int f = (int)(best % F), sl = (int)(best / F);
        box[0] = f - 8 < 0 ? 0 : f - 8;
        box[1] = box[0] + 15 > F - 1 ? F - 1 : box[0] + 15;
        box[2] = sl - 8 < 0 ? 0 : sl - 8;
        box[3] = box[2] + 15 > S - 1 ? S - 1 : box[2] + 15;
        /* stay inside the configuration's own ROI */
        const db_plan *p = &s->plan;
        if (box[0] < p->roi_xmin) box[0] = p->roi_xmin;
        if (box[1] > p->roi_xmax) box[1] = p->roi_xmax;
        if (box[2] < p->roi_ymin) box[2] = p->roi_ymin;
        if (box[3] > p->roi_ymax) box[3] = p->roi_ymax;
    }
    free(img);
    db_sim_destroy(s);
    return rc;
}

typedef struct fd_context {
    const db_config *base;
    const char *fdump;
    const db_decisions *decisions;
    db_decision_log *logs;
    int dh_form;
    size_t npix;
} fd_context;

/* The double image at the base configuration with parameter p moved by delta (command-line units). */
static int fd_image(const fd_context *fc, int p, double delta, double *out, db_error *err)
{
    db_config *c = db_config_clone(fc->base);
    if (!c) return db_fail(err, DB_ERR_NOMEM, "out of memory");
    double factor, orgx_base = 0.0;
    double *slot = param_slot(c, p, &factor);
    int mat_cell = c->mat_file && !c->user_cell && p <= DB_P_GAMMA;
    db_sim *s = NULL;
    int rc = DB_OK;
    if ((p == DB_P_ORGX || p == DB_P_ORGY) && isnan(*slot)) {
        /* absent: the detector centre, as a pixel coordinate */
        db_plan plan;
        rc = db_make_plan(c, &plan, err);
        orgx_base = (p == DB_P_ORGX ? plan.Fclose : plan.Sclose) / c->pixel_size + 0.5;
        *slot = orgx_base;
    }
    if (!rc && slot && !mat_cell) *slot += delta * factor;
    if (!rc) rc = db_sim_create(&s, c, fc->fdump, err);
    db_config_free(c);
    if (rc) return rc;
    s->mosaic_double = 1;
    s->force_dh_form = fc->dh_form;
    if (mat_cell) s->mat_cell_delta[p - DB_P_A] = delta;
    rc = db_decisions_copy(&s->forced, fc->decisions);
    s->forced.active = 1;
    if (p == DB_P_OSC) {
        s->forced.force_phistep = 1;
        s->forced.phistep = fc->decisions->phistep + delta / RTD / s->plan.phisteps;
    }
    s->logs = fc->logs;
    float *img = (float *)malloc(fc->npix * sizeof(float));
    if (!rc && !img) rc = db_fail(err, DB_ERR_NOMEM, "out of memory");
    if (!rc) rc = db_sim_run(s, img, out, err);
    s->logs = NULL;
    free(img);
    db_sim_destroy(s);
    return rc;
}

static double param_value(const db_config *base, int p, double phistep, int phisteps)
{
    db_config tmp = *base;
    double factor;
    double *slot = param_slot(&tmp, p, &factor);
    if (p == DB_P_OSC) return phistep * phisteps * RTD;
    if (!slot || isnan(*slot)) return 0.0;
    return *slot / factor;
}

int db_gradcheck(const db_config *cfg_user, const int *params, int nparams, const db_gc_options *o, db_gc_report *rep,
                 db_error *err)
{
    db_error_clear(err);
    memset(rep, 0, sizeof *rep);
    if (nparams <= 0 || nparams > 32) return db_fail(err, DB_ERR_ARGUMENT, "gradcheck: 1 to 32 parameters");
    db_config *base = db_config_clone(cfg_user);
    if (!base) return db_fail(err, DB_ERR_NOMEM, "out of memory");
    int rc = materialize(base, o->fdump_path, err);
    int box[4] = {o->roi[0], o->roi[1], o->roi[2], o->roi[3]};
    if (!rc && box[0] < 0) rc = find_brightest(base, o->fdump_path, box, err);
    if (!rc && (box[0] > box[1] || box[2] > box[3]))
        rc = db_fail(err, DB_ERR_GEOMETRY, "-check_roi %d %d %d %d is empty", box[0], box[1], box[2], box[3]);
    if (rc) {
        db_config_free(base);
        return rc;
    }
    base->roi_xmin = box[0];
    base->roi_xmax = box[1];
    base->roi_ymin = box[2];
    base->roi_ymax = box[3];
    memcpy(rep->roi, box, sizeof box);

    db_sim *sim = NULL;
    rc = db_sim_create(&sim, base, o->fdump_path, err);
    if (rc) {
        db_config_free(base);
        return rc;
    }
    int F, S;
    db_sim_size(sim, &F, &S);
    size_t npix = (size_t)F * S;
    float *img = (float *)malloc(npix * sizeof(float));
    double *img64 = (double *)malloc(npix * sizeof(double));
    double *grads = (double *)malloc((size_t)nparams * npix * sizeof(double));
    int nfd = o->precise ? 4 : 2;
    double *fd = (double *)malloc((size_t)nfd * npix * sizeof(double));
    db_decision_log *logs = (db_decision_log *)calloc(npix, sizeof *logs);
    if (!img || !img64 || !grads || !fd || !logs) rc = db_fail(err, DB_ERR_NOMEM, "out of memory for the check");
    if (!rc) {
        for (size_t i = 0; i < npix; i++) logs[i].mode = DB_LOG_RECORD;
        sim->mosaic_double = 1;
        sim->force_dh_form = 1;
        sim->logs = logs;
        if (o->chunk > 0) db_sim_set_chunk(sim, o->chunk);
        rc = db_sim_run_grad(sim, params, nparams, img, img64, grads, err);
        sim->logs = NULL;
    }
    for (size_t i = 0; !rc && i < npix; i++) logs[i].mode = DB_LOG_REPLAY;
    fd_context fc = {base, o->fdump_path, &sim->captured, logs, 1, npix};
    static const double stencil2[2] = {1, -1}, stencil4[4] = {2, 1, -1, -2};
    const double *offs = o->precise ? stencil4 : stencil2;
    rep->all_pass = 1;
    double maxf = 0.0;
    for (size_t i = 0; !rc && i < npix; i++) maxf = fmax(maxf, fabs(img64[i]));
    for (int k = 0; !rc && k < nparams; k++) {
        int p = params[k];
        double x = param_value(base, p, sim->captured.phistep, sim->plan.phisteps);
        double h = cbrt(DBL_EPSILON) * fmax(1.0, fabs(x));
        for (int j = 0; j < nfd && !rc; j++) rc = fd_image(&fc, p, offs[j] * h, fd + (size_t)j * npix, err);
        if (rc) break;
        for (size_t i = 0; i < npix; i++) {
            if (logs[i].mismatch) {
                rc = db_fail(err, DB_ERR_INTERNAL, "gradcheck: replay of pixel %zu ran out of recorded decisions", i);
                break;
            }
        }
        if (rc) break;
        db_gc_row *row = &rep->rows[rep->nrows++];
        row->param = p;
        row->step = h;
        double maxfd = 0.0;
        /* pass 1: finite differences and their scale */
        for (size_t i = 0; i < npix; i++) {
            double d;
            if (o->precise)
                /* differences first: equal values must give exactly 0 */
                d = (8.0 * (fd[npix + i] - fd[2 * npix + i]) - (fd[i] - fd[3 * npix + i])) / (12.0 * h);
            else
                d = (fd[i] - fd[npix + i]) / (2.0 * h);
            fd[i] = d;
            if (fabs(d) > maxfd) maxfd = fabs(d);
        }
        row->max_abs_fd = maxfd;
        /* a difference quotient cannot resolve below the rounding noise of the pixel values it differences,
         * amplified by 1/h: DB_GC_NOISE_ULPS ulps of the largest pixel value per step */
        row->noise_floor = DB_GC_NOISE_ULPS * DBL_EPSILON * maxf / h;
        row->atol = o->atol_abs >= 0 ? o->atol_abs : fmax(o->atol_factor * maxfd, row->noise_floor);
        row->pass = 1;
        double worst_excess = -1.0;
        for (int s = box[2]; s <= box[3]; s++)
            for (int f = box[0]; f <= box[1]; f++) {
                size_t i = (size_t)s * F + f;
                if (sim->cfg->mask && sim->cfg->mask[i] == 0) continue;
                double ad = grads[(size_t)k * npix + i], d = fd[i];
                double e = fabs(ad - d);
                double rel = d != 0.0 ? e / fabs(d) : (e == 0.0 ? 0.0 : INFINITY);
                double allowed = row->atol + o->rtol * fabs(d);
                row->pixels++;
                if (e > row->max_abs_err) row->max_abs_err = e;
                if (rel > row->max_rel_err && e > row->atol) row->max_rel_err = rel;
                if (!(e <= allowed)) row->pass = 0;
                double excess = allowed > 0 ? e / allowed : (e > 0 ? INFINITY : 0);
                if (excess > worst_excess) {
                    worst_excess = excess;
                    row->worst_f = f;
                    row->worst_s = s;
                    row->worst_ad = ad;
                    row->worst_fd = d;
                }
            }
        if (!row->pass) rep->all_pass = 0;
    }
    for (size_t i = 0; logs && i < npix; i++) free(logs[i].data);
    free(logs);
    free(img);
    free(img64);
    free(grads);
    free(fd);
    db_sim_destroy(sim);
    db_config_free(base);
    return rc;
}

void db_gc_print(const db_gc_report *rep, void *file)
{
    FILE *f = (FILE *)file;
    fprintf(f, "gradcheck on ROI %d %d %d %d\n", rep->roi[0], rep->roi[1], rep->roi[2], rep->roi[3]);
    fprintf(f, "%-10s %7s %12s %12s %12s %10s %14s %14s %s\n", "param", "pixels", "max_abs_err", "max_rel_err",
            "atol", "worst_f,s", "ad", "fd", "result");
    for (int k = 0; k < rep->nrows; k++) {
        const db_gc_row *r = &rep->rows[k];
        char worst[32];
        snprintf(worst, sizeof worst, "%d,%d", r->worst_f, r->worst_s);
        fprintf(f, "%-10s %7ld %12.3e %12.3e %12.3e %10s %14.6e %14.6e %s\n", db_param_name(r->param), r->pixels,
                r->max_abs_err, r->max_rel_err, r->atol, worst, r->worst_ad, r->worst_fd, r->pass ? "PASS" : "FAIL");
    }
}

int db_gc_write_json(const char *path, const db_gc_report *rep, const db_gc_options *o, db_error *err)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    if (!m) return db_fail(err, DB_ERR_NOMEM, "out of memory");
    fprintf(m, "{\n  \"roi\": [%d, %d, %d, %d],\n  \"rtol\": %.17g,\n  \"precise\": %s,\n  \"all_pass\": %s,\n  \"params\": [\n",
            rep->roi[0], rep->roi[1], rep->roi[2], rep->roi[3], o->rtol, o->precise ? "true" : "false",
            rep->all_pass ? "true" : "false");
    for (int k = 0; k < rep->nrows; k++) {
        const db_gc_row *r = &rep->rows[k];
        fprintf(m,
                "    {\"name\": \"%s\", \"unit\": \"%s\", \"pixels\": %ld, \"max_abs_err\": %.17g, \"max_rel_err\": %.17g, "
                "\"atol\": %.17g, \"noise_floor\": %.17g, \"max_abs_fd\": %.17g, \"step\": %.17g, \"worst_pixel\": [%d, %d], \"worst_ad\": %.17g, "
                "\"worst_fd\": %.17g, \"pass\": %s}%s\n",
                db_param_name(r->param), db_param_unit(r->param), r->pixels, r->max_abs_err,
                isinf(r->max_rel_err) ? 1e308 : r->max_rel_err, r->atol, r->noise_floor, r->max_abs_fd, r->step, r->worst_f, r->worst_s,
                r->worst_ad, r->worst_fd, r->pass ? "true" : "false", k + 1 < rep->nrows ? "," : "");
    }
    fprintf(m, "  ]\n}\n");
    fclose(m);
    const void *bufs[1] = {buf};
    size_t lens[1] = {len};
    int rc = db_write_file_atomic(path, bufs, lens, 1, err);
    free(buf);
    return rc;
}
