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
        db_sim_force_phistep(sim, 1, base_phistep + delta / RTD / g.phisteps);
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

int db_gradcheck(const db_config *cfg, const int *params, int nparams, const db_gc_options *o, db_gc_report *rep,
                 db_error *err)
{
    db_error_clear(err);
    memset(rep, 0, sizeof *rep);
    if (nparams <= 0 || nparams > DB_GC_MAX_ROWS)
        return db_fail(err, DB_ERR_ARGUMENT, "gradcheck: 1 to %d parameters", DB_GC_MAX_ROWS);
    int box[4] = {o->roi[0], o->roi[1], o->roi[2], o->roi[3]};
    int rc = DB_OK;
    if (box[0] < 0 && !cfg->boxes_file) rc = find_brightest(cfg, o->fdump_path, box, err);
    db_sim *sim = NULL;
    if (!rc) rc = db_sim_create(&sim, cfg, o->fdump_path, err);
    if (rc) return rc;
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
        rep->boxes = sim->nboxes;
        rep->roi[0] = F, rep->roi[1] = -1, rep->roi[2] = S, rep->roi[3] = -1; /* the boxes' bounding box */
        for (int b = 0; b < sim->nboxes; b++) {
            const int *x = sim->boxes + 4 * b;
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
    double *jac = (double *)malloc((size_t)nparams * count * sizeof(double));
    double *fd = (double *)malloc((size_t)nfd * count * sizeof(double));
    long *pixel = (long *)malloc((size_t)count * sizeof(long));
    db_decision_log *logs = (db_decision_log *)calloc((size_t)count, sizeof *logs);
    db_values *base = (db_values *)malloc(sizeof *base);
    if (!values || !jac || !fd || !pixel || !logs || !base) rc = db_fail(err, DB_ERR_NOMEM, "out of memory for the check");
    if (!rc) {
        db_sim_selected_pixels(sim, pixel);
        for (long i = 0; i < count; i++) logs[i].mode = DB_LOG_RECORD;
        db_sim_set_fd_mode(sim, 1, 1);
        if (o->chunk > 0) db_sim_set_chunk(sim, o->chunk);
        rc = db_sim_set_decision_logs(sim, logs, count, err);
    }
    if (!rc) rc = db_sim_run_selected(sim, params, nparams, values, jac, err);
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
        if (rc) break;
        for (long i = 0; i < count; i++) {
            if (logs[i].mismatch) {
                rc = db_fail(err, DB_ERR_INTERNAL, "gradcheck: replay of pixel %ld,%ld ran out of recorded decisions",
                             pixel[i] % F, pixel[i] / F);
                break;
            }
        }
        if (rc) break;
        db_gc_row *row = &rep->rows[rep->nrows++];
        row->param = p;
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
            double ad = jac[(size_t)k * count + i], d = fd[i];
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
                row->worst_f = (int)(pixel[i] % F);
                row->worst_s = (int)(pixel[i] / F);
                row->worst_ad = ad;
                row->worst_fd = d;
            }
        }
        if (!row->pass) rep->all_pass = 0;
    }
    if (sim) db_sim_set_decision_logs(sim, NULL, 0, NULL);
    for (long i = 0; logs && i < count; i++) free(logs[i].data);
    free(logs);
    free(values);
    free(jac);
    free(fd);
    free(pixel);
    free(base);
    db_sim_destroy(sim);
    return rc;
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
        char worst[32];
        snprintf(worst, sizeof worst, "%d,%d", r->worst_f, r->worst_s);
        fprintf(f, "%-13s %7ld %12.3e %12.3e %12.3e %10s %14.6e %14.6e %s\n", db_param_name(r->param), r->pixels,
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
