/* engine_impl.h: the CPU renderer (src/backend.h): evaluates the listed pixels over a table block with the
 * shared physics (physics.h), in parallel over row segments; plus the host-only -trace_pixel and -printout
 * readers. Included once per direction count (AD_N) by a small .c file that defines DB_ENGINE_SUFFIX;
 * everything here is static except the renderer table and the readers. The results do not depend on the
 * thread count: every pixel is evaluated on its own. */
#include "ad.h"
#include "physics.h"
#include "backend.h"
#include "error.h"
#include "sim.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define DB_CAT_(a, b) a##b
#define DB_CAT(a, b) DB_CAT_(a, b)
#define DB_SFX(name) DB_CAT(name, DB_ENGINE_SUFFIX)
#define DB_XSTR_(x) #x
#define DB_XSTR(x) DB_XSTR_(x)

/* The carryover's exceptional sample: the first (pixel, layer, sub-pixel, source) in the selection's order whose
 * phi loop runs. Only a -dmin cut can make a rendered pixel run no phi loop at all. */
static int DB_SFX(first_sample)(const void *block, const double *F, const db_span *spans, long nspans, long *pos,
                                int *sample, db_error *err)
{
    (void)err;
    const db_tables *t = (const db_tables *)block;
    *pos = -1;
    *sample = -1;
    for (long i = 0; i < nspans; i++) {
        const db_span *sp = &spans[i];
        for (int f = sp->f0; f <= sp->f1; f++) {
            db_pixel_flags fl;
            memset(&fl, 0, sizeof fl);
            fl.first_sample = -1;
            fl.probe_first = 1;
            (void)db_pixel_value(t, F, f, sp->s, &fl, NULL);
            if (fl.first_sample >= 0) {
                *pos = sp->first + (f - sp->f0);
                *sample = fl.first_sample;
                return DB_OK;
            }
        }
    }
    return DB_OK;
}

static int DB_SFX(render)(const db_render_job *job, db_error *err)
{
    (void)err;
    const db_tables *t = (const db_tables *)job->block;
    long pixels_done = 0;
#if AD_N == 0
    const int single = db_single_orientation(t);
#endif
#pragma omp parallel for schedule(dynamic, 1)
    for (long i = 0; i < job->nspans; i++) {
        const db_span *sp = &job->spans[i];
        long local = 0;
        double span_omega = 0.0;
        /* the span's buffer, worked on in a copy of its own: the threads' neighbouring spans share cache lines */
        db_fjac_buf fjac_span;
        db_fjac_buf *fjac = NULL;
        if (job->fjac) {
            fjac_span = job->fjac[i];
            fjac = &fjac_span;
        }
        db_fjac_pixel fjac_pixel;
#if AD_N == 0
        db_pregeo ahead[2]; /* this pixel's and the next one's first sub-sample geometry (physics.h, db_pregeo) */
        int cur = 0, ahead_f = -1;
#endif
        for (int f = sp->f0; f <= sp->f1; f++) {
            long pos = sp->first + (f - sp->f0);
            if (pos < job->from) continue;
#if AD_N == 0
            if (ahead_f != f) db_pixel_pregeo(t, f, sp->s, 0, 0, 0, 1, &ahead[cur]);
            if (f < sp->f1) db_pixel_pregeo(t, f + 1, sp->s, 0, 0, 0, 1, &ahead[cur ^ 1]);
            ahead_f = f + 1;
#endif
            size_t o = job->full ? (size_t)sp->s * (size_t)t->fpixels + (size_t)f : (size_t)pos;
            db_pixel_flags fl;
            memset(&fl, 0, sizeof fl);
            fl.first_sample = pos == job->exc_pos ? job->exc_sample : -1;
            fl.interpolate = job->interp_trip >= 0 && pos > job->interp_trip ? 0 : job->interpolate;
            if (fjac) {
                fjac_pixel.buf = fjac;
                fjac_pixel.start = fjac_pixel.last = fjac->n;
                fjac_pixel.block = (size_t)-1;
                fl.fjac = &fjac_pixel;
            }
            if (job->logs) {
                fl.log = &job->logs[pos];
                fl.log->pos = 0;
                if (fl.log->mode == DB_LOG_RECORD) fl.log->len = 0;
            }
#if AD_N == 0
            ad_num v = fjac ? (single ? db_pixel_value_ahead_single_fjac(t, job->F, f, sp->s, &fl, &ahead[cur])
                                      : db_pixel_value_ahead_fjac(t, job->F, f, sp->s, &fl, &ahead[cur]))
                            : (single ? db_pixel_value_ahead_single(t, job->F, f, sp->s, &fl, &ahead[cur])
                                      : db_pixel_value_ahead(t, job->F, f, sp->s, &fl, &ahead[cur]));
            cur ^= 1;
#else
            ad_num v = fjac ? db_pixel_value_fjac(t, job->F, f, sp->s, &fl, job->geo_block)
                            : db_pixel_value(t, job->F, f, sp->s, &fl, job->geo_block);
#endif
            if (fjac) {
                job->fjac_off[pos] = fjac_pixel.start;
                job->fjac_len[pos] = (unsigned)(fjac->n - fjac_pixel.start);
            }
            if (job->image) job->image[o] = db_to_float(v.v);
            if (job->image64) job->image64[o] = v.v;
#if AD_N > 0
            if (job->tangents)
                for (int k = 0; k < job->ndirs && k < AD_N; k++) job->tangents[(size_t)k * job->ld + o] = AD_LANE(v, k);
#endif
            span_omega += fl.omega_sum;
            if (job->tripped) job->tripped[pos] = (unsigned char)fl.interp_tripped;
            /* every 16 pixels, not per row: a slow configuration still reports within a few pixels' time, and
             * the threads do not contend for the counter on every pixel */
            if (job->progress && (++local == 16 || f == sp->f1)) {
                long done;
#pragma omp atomic capture
                done = pixels_done += local;
                local = 0;
#ifdef _OPENMP
                if (omp_get_thread_num() == 0)
#endif
                    job->progress(job->progress_user, (double)done / (double)(job->count > 0 ? job->count : 1));
            }
        }
        if (job->omega_span) job->omega_span[i] = span_omega;
        if (fjac) job->fjac[i] = fjac_span;
    }
    return DB_OK;
}

const db_renderer DB_SFX(db_cpu_renderer) = {"cpu" DB_XSTR(DB_ENGINE_SUFFIX), AD_N, AD_CAT(db_tables_build_n, AD_N),
                                             DB_SFX(first_sample), DB_SFX(render)};

/* Flags that re-render one pixel of the last run with its decisions: exceptional sample, interpolation. */
static void DB_SFX(replay_flags)(const db_sim *sim, long idx, const db_tracer *tr, db_pixel_flags *fl)
{
    memset(fl, 0, sizeof *fl);
    fl->first_sample = idx == sim->captured.exc_pixel ? sim->captured.exc_sample : -1;
    fl->interpolate = sim->captured.interp_trip >= 0 && idx > sim->captured.interp_trip ? 0 : sim->captured.interpolate;
    fl->tracer = tr;
}

/* ---- -trace_pixel ---- */
#include <stdio.h>

typedef struct DB_SFX(trace_ctx) {
    FILE *out;
    int ndirs;
} DB_SFX(trace_ctx);

static void DB_SFX(print_tangents)(FILE *out, ad_num x, int ndirs)
{
#if AD_N > 0
    for (int k = 0; k < ndirs && k < AD_N; k++) fprintf(out, " %.17g", AD_LANE(x, k));
#else
    (void)out;
    (void)x;
    (void)ndirs;
#endif
}

static void DB_SFX(trace_sample)(void *vctx, const db_trace_sample *r)
{
    DB_SFX(trace_ctx) *ctx = (DB_SFX(trace_ctx) *)vctx;
    FILE *o = ctx->out;
    fprintf(o, "sample %d %d %d %d %d %d %d", r->layer, r->subS, r->subF, r->source, r->phi_tic, r->mos, r->slot);
    for (int v = 0; v < 3; v++)
        for (int i = 0; i < 3; i++) fprintf(o, " %.17g", r->lattice[v].c[i].v);
    fprintf(o, " %.17g %.17g %.17g %.17g %.17g %.17g", r->h.v, r->k.v, r->l.v, r->F_latt.v, r->F_cell.v, r->term.v);
    DB_SFX(print_tangents)(o, r->term, ctx->ndirs);
    fputc('\n', o);
}

static void DB_SFX(trace_end)(void *vctx, const db_trace_end *r)
{
    DB_SFX(trace_ctx) *ctx = (DB_SFX(trace_ctx) *)vctx;
    fprintf(ctx->out, "pixel %.17g %.17g %.17g %.17g", r->polar.v, r->omega.v, r->capture.v, r->value.v);
    DB_SFX(print_tangents)(ctx->out, r->value, ctx->ndirs);
    fputc('\n', ctx->out);
}

/* Re-renders one pixel of the last run with a tracer (same decisions: exceptional sample, interpolation). The
 * caller has checked that the pixel is one the run rendered. */
int DB_SFX(db_cpu_trace)(const db_sim *sim, const void *block, int ndirs, int f, int s, void *file, db_error *err)
{
    (void)err;
    const db_tables *t = (const db_tables *)block;
    long idx = (long)s * t->fpixels + f;
    DB_SFX(trace_ctx) ctx = {(FILE *)file, ndirs};
    db_tracer tr = {DB_SFX(trace_sample), DB_SFX(trace_end), &ctx};
    db_pixel_flags fl;
    DB_SFX(replay_flags)(sim, idx, &tr, &fl);
    (void)db_pixel_value(t, db_sim_F(sim), f, s, &fl, NULL);
    return DB_OK;
}

/* ---- -printout / -printout_pixel: the reference's per-pixel block, from the last inner iteration ---- */
typedef struct DB_SFX(printout_ctx) {
    int have;
    db_trace_sample last;
    ad_vec3 lat[3];
    db_trace_end end;
} DB_SFX(printout_ctx);

static void DB_SFX(printout_sample)(void *vctx, const db_trace_sample *r)
{
    DB_SFX(printout_ctx) *ctx = (DB_SFX(printout_ctx) *)vctx;
    ctx->last = *r;
    for (int k = 0; k < 3; k++) ctx->lat[k] = r->lattice[k];
    ctx->have = 1;
}

static void DB_SFX(printout_end)(void *vctx, const db_trace_end *r)
{
    ((DB_SFX(printout_ctx) *)vctx)->end = *r;
}

/* One pixel's block; the caller has checked that the run rendered it. */
int DB_SFX(db_cpu_printout)(const db_sim *sim, const void *block, int fp, int sp, const float *image, void *file, db_error *err)
{
    (void)err;
    const db_tables *t = (const db_tables *)block;
    FILE *o = (FILE *)file;
    {
        {
            long idx = (long)sp * t->fpixels + fp;
            DB_SFX(printout_ctx) ctx;
            memset(&ctx, 0, sizeof ctx);
            db_tracer tr = {DB_SFX(printout_sample), DB_SFX(printout_end), &ctx};
            db_pixel_flags fl;
            DB_SFX(replay_flags)(sim, idx, &tr, &fl);
            (void)db_pixel_value(t, db_sim_F(sim), fp, sp, &fl, NULL);
            if (!ctx.have) return DB_OK;
            const db_trace_sample *L = &ctx.last;
            double px = L->pos.c[0].v, py = L->pos.c[1].v, pz = L->pos.c[2].v;
            double stol = 0.5 * ad_vec3_norm(L->S).v;
            double twotheta = atan2(sqrt(py * py + pz * pz), px);
            fprintf(o, "%4d %4d : stol = %g or %g\n", fp, sp, stol, sin(twotheta / 2.0) / (sim->cfg->lambda0 * 1e10));
            fprintf(o, "at %g %g %g\n", px, py, pz);
            fprintf(o, "hkl= %f %f %f  hkl0= %d %d %d\n", L->h.v, L->k.v, L->l.v, (int)ceil(L->h.v - 0.5),
                    (int)ceil(L->k.v - 0.5), (int)ceil(L->l.v - 0.5));
            fprintf(o, " F_cell=%g  F_latt=%g   I = %g\n", L->F_cell.v, L->F_latt.v, ctx.end.I.v);
            fprintf(o, "I/steps %15.10g\n", ctx.end.I.v / t->steps);
            fprintf(o, "polar   %15.10g\n", ctx.end.polar.v);
            fprintf(o, "omega   %15.10g\n", ctx.end.omega.v);
            fprintf(o, "capfrac %15.10g\n", ctx.end.capture.v);
            fprintf(o, "pixel   %15.10g\n", (double)image[idx]);
            fprintf(o, "real-space cell vectors (Angstrom):\n");
            fprintf(o, "     %-10s  %-10s  %-10s\n", "a", "b", "c");
            const char *axis = "XYZ";
            for (int i = 0; i < 3; i++)
                fprintf(o, "%c: %11.8f %11.8f %11.8f\n", axis[i], ctx.lat[0].c[i].v * 1e10, ctx.lat[1].c[i].v * 1e10,
                        ctx.lat[2].c[i].v * 1e10);
        }
    }
    return DB_OK;
}

