/* gradcheck.c: derivative images against central differences, with the base run's decisions replayed. */
#define AD_N 0
#include "gradcheck.h"
#include "config.h"
#include "error.h"
#include "fileio.h"
#include "physics.h"
#include "params.h"
#include "run_clients.h"
#include "units.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void db_gc_default_options(db_gc_options *o)
{
    memset(o, 0, sizeof *o);
    o->roi[0] = o->roi[1] = o->roi[2] = o->roi[3] = -1;
    o->rtol = 1e-6;
    o->atol_factor = 1e-8;
    o->atol_abs = -1.0;
}

/* The default check region: a 16x16 box around the brightest pixel of a primal run, inside the configuration's
 * own -roi. */
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
        int roi[4];
        db_sim_roi(s, roi);
        if (box[0] < roi[0]) box[0] = roi[0];
        if (box[1] > roi[1]) box[1] = roi[1];
        if (box[2] < roi[2]) box[2] = roi[2];
        if (box[3] > roi[3]) box[3] = roi[3];
    }
    free(img);
    db_sim_destroy(s);
    return rc;
}

/* The selected pixels' double values with parameter p moved to x + delta (command-line units), replaying the
 * base run's decisions; the values are put back afterwards. osc moves the forced phi step (an oscillation
 * range below 0 has no command-line spelling). */
static int fd_values(db_sim *sim, const db_values *base, double base_phistep, int p, double x, double delta, double *out,
                     db_error *err)
{
    int rc;
    if (p == DB_P_OSC) {
        db_geometry g;
        db_sim_geometry(sim, &g);
        db_sim_force_phistep(sim, 1, base_phistep + delta / DB_RTD / g.phisteps);
        rc = db_sim_run_selected(sim, NULL, 0, out, NULL, err);
        db_sim_force_phistep(sim, 0, 0.0);
        return rc;
    }
    double v = x + delta;
    rc = db_sim_set_params(sim, &p, &v, 1, err);
    if (!rc) rc = db_sim_run_selected(sim, NULL, 0, out, NULL, err);
    db_error e2;
    int rc2 = db_sim_values_restore(sim, base, &e2);
    if (!rc && rc2) {
        *err = e2;
        rc = rc2;
    }
    return rc;
}

/* A row's comparison: on entry fd holds the stencil's nfd runs (count values each), on exit fd[0..count) the
 * difference quotients; ad[count] is the analytic column, maxf the largest |pixel| (the noise floor's scale). */
static void compare(db_gc_row *row, const double *ad, double *fd, long count, const long *pixel, int F, double maxf,
                    double h, const db_gc_options *o)
{
    row->step = h;
    double maxfd = 0.0;
    /* pass 1: finite differences and their scale */
    for (long i = 0; i < count; i++) {
        double d;
        if (o->precise)
            /* differences first: equal values must give exactly 0 */
            d = (8.0 * (fd[count + i] - fd[2 * count + i]) - (fd[i] - fd[3 * count + i])) / (12.0 * h);
        else
            d = (fd[i] - fd[count + i]) / (2.0 * h);
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
    for (long i = 0; i < count; i++) {
        double a = ad[i], d = fd[i];
        double e = fabs(a - d);
        double rel = d != 0.0 ? e / fabs(d) : (e == 0.0 ? 0.0 : INFINITY);
        double allowed = row->atol + o->rtol * fabs(d);
        row->pixels++;
        if (e > row->max_abs_err) row->max_abs_err = e;
        if (rel > row->max_rel_err && e > row->atol) row->max_rel_err = rel;
        if (!(e <= allowed)) row->pass = 0;
        double excess = allowed > 0 ? e / allowed : (e > 0 ? INFINITY : 0);
        if (excess > worst_excess) {
            worst_excess = excess;
            row->worst_f = (int)(pixel[i] % F);
            row->worst_s = (int)(pixel[i] / F);
            row->worst_ad = a;
            row->worst_fd = d;
        }
    }
}

/* A finite-difference run that ran past its pixel's recorded decisions differentiates another model. */
static int check_replay(const db_decision_log *logs, const long *pixel, long count, int F, db_error *err)
{
    for (long i = 0; i < count; i++)
        if (logs[i].mismatch)
            return db_fail(err, DB_ERR_INTERNAL, "gradcheck: replay of pixel %ld,%ld ran out of recorded decisions",
                           pixel[i] % F, pixel[i] / F);
    return DB_OK;
}

/* Column col of a CSR matrix, dense: out[m->rows] (each row's columns are ascending). */
static void csr_column(const db_csr *m, long col, double *out)
{
    for (long i = 0; i < m->rows; i++) {
        out[i] = 0.0;
        long lo = m->row_ptr[i], hi = m->row_ptr[i + 1] - 1;
        while (lo <= hi) {
            long mid = lo + (hi - lo) / 2;
            if (m->col[mid] == col) {
                out[i] = m->val[mid];
                break;
            }
            if (m->col[mid] < col) lo = mid + 1;
            else hi = mid - 1;
        }
    }
}

/* Every requested reflection must be listed: a finite difference of an unlisted F (which the setter refuses, and on
 * which no pixel depends through the list) would check nothing. */
static int check_reflections(const db_sim *sim, const int *hkl, int nhkl, db_error *err)
{
    int ranges[6];
    if (nhkl > 0 && !db_sim_hkl_ranges(sim, ranges))
        return db_fail(err, DB_ERR_ARGUMENT, "gradcheck: F(%d %d %d): the configuration has no structure-factor table "
                       "(-hkl FILE or an Fdump cache); -default_F alone is not a parameter", hkl[0], hkl[1], hkl[2]);
    for (int r = 0; r < nhkl; r++) {
        const int *x = hkl + 3 * r;
        if (db_sim_structure_factor_index(sim, x[0], x[1], x[2]) < 0)
            return db_fail(err, DB_ERR_ARGUMENT,
                           "gradcheck: F(%d %d %d) is not in the structure-factor table (its list has %ld reflections, "
                           "h %d..%d k %d..%d l %d..%d)", x[0], x[1], x[2], db_sim_structure_factor_count(sim),
                           ranges[0], ranges[1], ranges[2], ranges[3], ranges[4], ranges[5]);
    }
    return DB_OK;
}

/* Sets F(hkl) to v in place; the run after it renders with v. */
static int set_F(db_sim *sim, const int *hkl, double v, db_error *err)
{
    return db_sim_set_structure_factors_hkl(sim, hkl, &v, 1, err);
}

/* The structure factors' rows: the analytic column from fjac (the base run's, at the table's F), or from a run at
 * F = 2h where F < 2h; the finite differences from primal runs with F(hkl) moved in place and put back. */
static int check_F_rows(db_sim *sim, const int *hkl, int nhkl, const db_csr *fjac, double maxf,
                        double *fd, const long *pixel, const db_decision_log *logs, long count, int F,
                        const db_gc_options *o, db_gc_report *rep, db_error *err)
{
    static const double stencil2[2] = {1, -1}, stencil4[4] = {2, 1, -1, -2};
    const double *offs = o->precise ? stencil4 : stencil2;
    int nfd = o->precise ? 4 : 2;
    double *ad = (double *)malloc((size_t)count * sizeof(double));
    double *v_at = (double *)malloc((size_t)count * sizeof(double));
    if (!ad || !v_at) {
        free(ad);
        free(v_at);
        return db_fail(err, DB_ERR_NOMEM, "out of memory for the check");
    }
    int rc = DB_OK;
    for (int r = 0; !rc && r < nhkl; r++) {
        const int *x = hkl + 3 * r;
        long col = db_sim_structure_factor_index(sim, x[0], x[1], x[2]);
        double F0 = db_sim_structure_factor_at(sim, col);
        double h = cbrt(DBL_EPSILON) * fmax(1.0, fabs(F0));
        /* the setter refuses F < 0, and F - 2h would be below 0 for F < 2h: there both sides are taken at F = 2h,
         * the nearest point whose stencil stays >= 0 (a pixel is a quadratic in F, so its slope there is as
         * telling as at F) */
        double at = F0 < 2.0 * h ? 2.0 * h : F0;
        double row_maxf = maxf;
        if (at != F0) {
            db_csr J = {0};
            rc = set_F(sim, x, at, err);
            if (!rc) rc = db_sim_run_selected_F(sim, NULL, 0, v_at, NULL, &J, err);
            if (!rc) {
                csr_column(&J, col, ad);
                row_maxf = 0.0;
                for (long i = 0; i < count; i++) row_maxf = fmax(row_maxf, fabs(v_at[i]));
            }
            db_csr_free(&J);
        } else {
            csr_column(fjac, col, ad);
        }
        for (int j = 0; j < nfd && !rc; j++) {
            rc = set_F(sim, x, at + offs[j] * h, err);
            if (!rc) rc = db_sim_run_selected(sim, NULL, 0, fd + (size_t)j * count, NULL, err);
        }
        /* the table's value back, exactly (also after a failed run) */
        db_error e2;
        int rc2 = set_F(sim, x, F0, &e2);
        if (!rc && rc2) {
            *err = e2;
            rc = rc2;
        }
        if (!rc) rc = check_replay(logs, pixel, count, F, err);
        if (rc) break;
        db_gc_row *row = &rep->rows[rep->nrows++];
        row->param = -1;
        row->structure_factor = 1;
        memcpy(row->hkl, x, sizeof row->hkl);
        row->F = F0;
        row->F_at = at;
        compare(row, ad, fd, count, pixel, F, row_maxf, h, o);
        if (!row->pass) rep->all_pass = 0;
    }
    free(ad);
    free(v_at);
    return rc;
}

static int gradcheck_run(const db_config *cfg, const int *params, int nparams, const int *hkl, int nhkl,
                         const db_gc_options *o, db_gc_report *rep, db_error *err)
{
    int box[4] = {o->roi[0], o->roi[1], o->roi[2], o->roi[3]};
    int rc = DB_OK;
    if (box[0] < 0 && !cfg->boxes_file) rc = find_brightest(cfg, o->fdump_path, box, err);
    db_sim *sim = NULL;
    if (!rc) rc = db_sim_create(&sim, cfg, o->fdump_path, err);
    if (rc) return rc;
    /* the F-Jacobian is the CPU renderers' (with decision logs every run is the CPU's anyway) */
    if (nhkl > 0) rc = check_reflections(sim, hkl, nhkl, err);
    if (!rc && nhkl > 0) rc = db_sim_set_device(sim, "cpu", err);
    if (rc) {
        db_sim_destroy(sim);
        return rc;
    }
    int F, S;
    db_sim_size(sim, &F, &S);
    if (box[0] >= 0) {
        /* the check region is the run's selection: every run renders only it (and the carryover's exceptional
         * sample is its first pixel) */
        rc = db_sim_select_boxes(sim, box, 1, err);
        if (rc) {
            db_fail(err, rc, "-check_roi %d %d %d %d: %s", box[0], box[1], box[2], box[3], err->message);
            db_sim_destroy(sim);
            return rc;
        }
        memcpy(rep->roi, box, sizeof box);
        rep->boxes = 1;
    } else {
        int nboxes;
        const int *boxes = db_sim_boxes(sim, &nboxes);
        rep->boxes = nboxes;
        rep->roi[0] = F, rep->roi[1] = -1, rep->roi[2] = S, rep->roi[3] = -1; /* the boxes' bounding box */
        for (int b = 0; b < nboxes; b++) {
            const int *x = boxes + 4 * b;
            if (x[0] < rep->roi[0]) rep->roi[0] = x[0];
            if (x[1] > rep->roi[1]) rep->roi[1] = x[1];
            if (x[2] < rep->roi[2]) rep->roi[2] = x[2];
            if (x[3] > rep->roi[3]) rep->roi[3] = x[3];
        }
    }
    long count = db_sim_selected_count(sim);
    if (count <= 0) {
        db_sim_destroy(sim);
        return db_fail(err, DB_ERR_GEOMETRY, "gradcheck: the check region holds no unmasked pixel");
    }
    int nfd = o->precise ? 4 : 2;
    double *values = (double *)malloc((size_t)count * sizeof(double));
    double *jac = (double *)malloc((size_t)(nparams > 0 ? nparams : 1) * count * sizeof(double));
    double *fd = (double *)malloc((size_t)nfd * count * sizeof(double));
    long *pixel = (long *)malloc((size_t)count * sizeof(long));
    db_decision_log *logs = (db_decision_log *)calloc((size_t)count, sizeof *logs);
    db_values *base = (db_values *)malloc(sizeof *base);
    db_csr fjac = {0};
    if (!values || !jac || !fd || !pixel || !logs || !base) rc = db_fail(err, DB_ERR_NOMEM, "out of memory for the check");
    if (!rc) {
        db_sim_selected_pixels(sim, pixel);
        for (long i = 0; i < count; i++) logs[i].mode = DB_LOG_RECORD;
        db_sim_set_fd_mode(sim, 1, 1);
        if (o->chunk > 0) db_sim_set_chunk(sim, o->chunk);
        rc = db_sim_set_decision_logs(sim, logs, count, err);
    }
    /* with structure factors, the F-Jacobian comes from the same pass (values and jac the same bits) */
    if (!rc) rc = nhkl > 0 ? db_sim_run_selected_F(sim, params, nparams, values, jac, &fjac, err)
                           : db_sim_run_selected(sim, params, nparams, values, jac, err);
    /* from here on every run replays the base run's decisions */
    for (long i = 0; !rc && i < count; i++) logs[i].mode = DB_LOG_REPLAY;
    if (!rc) rc = db_sim_force_decisions(sim, db_sim_captured(sim), err);
    if (!rc) db_sim_values_save(sim, base);
    double base_phistep = db_sim_captured(sim)->phistep;
    static const double stencil2[2] = {1, -1}, stencil4[4] = {2, 1, -1, -2};
    const double *offs = o->precise ? stencil4 : stencil2;
    rep->all_pass = 1;
    double maxf = 0.0;
    for (long i = 0; !rc && i < count; i++) maxf = fmax(maxf, fabs(values[i]));
    for (int k = 0; !rc && k < nparams; k++) {
        int p = params[k];
        double x;
        rc = db_sim_get_params(sim, &p, &x, 1, err);
        double h = cbrt(DBL_EPSILON) * fmax(1.0, fabs(x));
        for (int j = 0; j < nfd && !rc; j++) rc = fd_values(sim, base, base_phistep, p, x, offs[j] * h, fd + (size_t)j * count, err);
        if (!rc) rc = check_replay(logs, pixel, count, F, err);
        if (rc) break;
        db_gc_row *row = &rep->rows[rep->nrows++];
        row->param = p;
        compare(row, jac + (size_t)k * count, fd, count, pixel, F, maxf, h, o);
        if (!row->pass) rep->all_pass = 0;
    }
    if (!rc && nhkl > 0) rc = check_F_rows(sim, hkl, nhkl, &fjac, maxf, fd, pixel, logs, count, F, o, rep, err);
    if (sim) db_sim_set_decision_logs(sim, NULL, 0, NULL);
    for (long i = 0; logs && i < count; i++) free(logs[i].data);
    free(logs);
    free(values);
    free(jac);
    free(fd);
    free(pixel);
    free(base);
    db_csr_free(&fjac);
    db_sim_destroy(sim);
    return rc;
}

int db_gradcheck(const db_config *cfg, const int *params, int nparams, const db_gc_options *o, db_gc_report *rep,
                 db_error *err)
{
    db_error_clear(err);
    memset(rep, 0, sizeof *rep);
    if (nparams <= 0 || nparams > DB_GC_MAX_ROWS)
        return db_fail(err, DB_ERR_ARGUMENT, "gradcheck: 1 to %d parameters", DB_GC_MAX_ROWS);
    return gradcheck_run(cfg, params, nparams, NULL, 0, o, rep, err);
}

int db_gradcheck_with_F(const db_config *cfg, const int *params, int nparams, const int *hkl, int nhkl,
                        const db_gc_options *o, db_gc_report *rep, db_error *err)
{
    db_error_clear(err);
    if (!cfg || !o || !rep) return db_fail(err, DB_ERR_ARGUMENT, "gradcheck: no configuration, options or report");
    memset(rep, 0, sizeof *rep);
    if (nparams < 0 || nhkl < 0 || nparams + nhkl < 1 || nparams + nhkl > DB_GC_MAX_ROWS)
        return db_fail(err, DB_ERR_ARGUMENT,
                       "gradcheck: 1 to %d rows in all, parameters plus structure factors (got %d + %d)", DB_GC_MAX_ROWS,
                       nparams, nhkl);
    if ((nparams > 0 && !params) || (nhkl > 0 && !hkl))
        return db_fail(err, DB_ERR_ARGUMENT, "gradcheck: no %s list", nparams > 0 && !params ? "parameter" : "hkl");
    return gradcheck_run(cfg, params, nparams, hkl, nhkl, o, rep, err);
}

int db_gradcheck_F(const db_config *cfg, const int *hkl, int nhkl, const db_gc_options *o, db_gc_report *rep,
                   db_error *err)
{
    db_error_clear(err);
    if (rep) memset(rep, 0, sizeof *rep);
    if (nhkl <= 0 || nhkl > DB_GC_MAX_ROWS)
        return db_fail(err, DB_ERR_ARGUMENT, "gradcheck: 1 to %d structure factors (got %d)", DB_GC_MAX_ROWS, nhkl);
    return db_gradcheck_with_F(cfg, NULL, 0, hkl, nhkl, o, rep, err);
}

/* A row's name: the parameter's, or "F(h k l)". */
static const char *row_name(const db_gc_row *r, char *buf, size_t size)
{
    if (!r->structure_factor) return db_param_name(r->param);
    snprintf(buf, size, "F(%d %d %d)", r->hkl[0], r->hkl[1], r->hkl[2]);
    return buf;
}

void db_gc_print(const db_gc_report *rep, void *file)
{
    FILE *f = (FILE *)file;
    if (rep->boxes <= 1)
        fprintf(f, "gradcheck on ROI %d %d %d %d\n", rep->roi[0], rep->roi[1], rep->roi[2], rep->roi[3]);
    else
        fprintf(f, "gradcheck on %d boxes within %d %d %d %d\n", rep->boxes, rep->roi[0], rep->roi[1], rep->roi[2], rep->roi[3]);
    fprintf(f, "%-13s %7s %12s %12s %12s %10s %14s %14s %s\n", "param", "pixels", "max_abs_err", "max_rel_err",
            "atol", "worst_f,s", "ad", "fd", "result");
    for (int k = 0; k < rep->nrows; k++) {
        const db_gc_row *r = &rep->rows[k];
        char worst[32], name[64];
        snprintf(worst, sizeof worst, "%d,%d", r->worst_f, r->worst_s);
        fprintf(f, "%-13s %7ld %12.3e %12.3e %12.3e %10s %14.6e %14.6e %s\n", row_name(r, name, sizeof name), r->pixels,
                r->max_abs_err, r->max_rel_err, r->atol, worst, r->worst_ad, r->worst_fd, r->pass ? "PASS" : "FAIL");
    }
    /* what a structure factor's row cannot say in its columns */
    for (int k = 0; k < rep->nrows; k++) {
        const db_gc_row *r = &rep->rows[k];
        char name[64];
        if (!r->structure_factor) continue;
        if (r->F_at != r->F)
            fprintf(f, "note: %s = %g is below 2 steps: checked at F = %g, where the stencil stays >= 0\n",
                    row_name(r, name, sizeof name), r->F, r->F_at);
        if (r->max_abs_fd == 0.0)
            fprintf(f, "note: %s reaches no pixel of the region (every difference is 0): its check is empty; "
                       "-check_roi a region where its spot lies\n", row_name(r, name, sizeof name));
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
        char name[64], sf[160] = "";
        /* a structure factor's row: its reflection and F (the unit of F is the hkl file's) */
        if (r->structure_factor)
            snprintf(sf, sizeof sf, "\"hkl\": [%d, %d, %d], \"F\": %.17g, \"F_checked\": %.17g, ", r->hkl[0], r->hkl[1],
                     r->hkl[2], r->F, r->F_at);
        fprintf(m,
                "    {\"name\": \"%s\", \"unit\": \"%s\", %s\"pixels\": %ld, \"max_abs_err\": %.17g, \"max_rel_err\": %.17g, "
                "\"atol\": %.17g, \"noise_floor\": %.17g, \"max_abs_fd\": %.17g, \"step\": %.17g, \"worst_pixel\": [%d, %d], \"worst_ad\": %.17g, "
                "\"worst_fd\": %.17g, \"pass\": %s}%s\n",
                row_name(r, name, sizeof name), r->structure_factor ? "" : db_param_unit(r->param), sf, r->pixels, r->max_abs_err,
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
