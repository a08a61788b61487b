/* render_thread.h: the work of one GPU thread, one selected pixel, over the table block: the same physics
 * (src/physics.h) as the CPU renderer, with the run layer's decisions passed in. Compiled for the device
 * (kernels/cuda_n*.cu) and for the host (kernels/emul_n*.c), so that a test without a GPU runs exactly this
 * function over the very block a GPU would receive. Include after defining AD_N and DB_ENGINE_SUFFIX. */
#include "ad.h"
#include "physics.h"
#include "gpu_job.h"

#define DB_GPU_CAT_(a, b) a##b
#define DB_GPU_CAT(a, b) DB_GPU_CAT_(a, b)
#define DB_GPU_SFX(name) DB_GPU_CAT(name, DB_ENGINE_SUFFIX)
#define DB_GPU_XSTR_(x) #x
#define DB_GPU_XSTR(x) DB_GPU_XSTR_(x)

/* The span holding position pos: the last one whose first position is <= pos (spans are in row-major order). */
AD_INLINE long db_span_of(const db_span *spans, long nspans, long pos)
{
    long lo = 0, hi = nspans - 1;
    while (lo < hi) {
        long mid = (lo + hi + 1) / 2;
        if (spans[mid].first <= pos) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

/* 1 when a pass's block lets the thread drop the geometry's and N's tangents (db_pixel_value_geometry_constant) */
AD_INLINE int DB_GPU_SFX(db_block_geometry_constant)(const void *block)
{
    const db_tables *t = (const db_tables *)block;
    return AD_N > 0 && t->hdr.geometry_constant && t->N_constant;
}

/* geometry_constant, a compile-time constant: 1 only where db_block_geometry_constant holds for j->block (the
 * caller's choice of instance: one kernel each on the GPU, so that each gets its own register budget). */
AD_INLINE void DB_GPU_SFX(db_render_thread)(const db_thread_job *j, long i, const int geometry_constant)
{
    const long pos = j->from + i;
    const db_span *sp = &j->spans[db_span_of(j->spans, j->nspans, pos)];
    const int f = sp->f0 + (int)(pos - sp->first);
    db_pixel_flags fl;
    fl.first_sample = pos == j->exc_pos ? j->exc_sample : -1;
    fl.interpolate = j->interp_trip >= 0 && pos > j->interp_trip ? 0 : j->interpolate;
    fl.interp_tripped = 0;
    fl.omega_sum = 0.0;
    fl.fjac = 0; /* the structure-factor Jacobian is host-only (run.c refuses it on a GPU) */
    fl.probe_first = 0;
    fl.log = 0;    /* the GPU neither records nor replays decisions (backend.h) */
    fl.tracer = 0;
    const db_tables *t = (const db_tables *)j->block;
    /* no derivative reaches the geometry or N in most passes (cell, orientation, phi): a thread that knows it keeps
     * fewer tangents live */
    ad_num v = geometry_constant ? db_pixel_value_geometry_constant(t, j->F, f, sp->s, &fl)
                                 : db_pixel_value(t, j->F, f, sp->s, &fl, 0);
    j->value[i] = v.v;
#if AD_N > 0
    for (int k = 0; k < AD_N; k++)
        if (k < j->ndirs) j->tangents[(size_t)k * (size_t)j->n + (size_t)i] = AD_LANE(v, k);
#endif
    j->omega[i] = fl.omega_sum;
    j->tripped[i] = (unsigned char)fl.interp_tripped;
}
