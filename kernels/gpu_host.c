/* gpu_host.c: the host side shared by the GPU renderer and its emulation (gpu_job.h). */
#include "gpu_job.h"

#include <string.h>

void db_gpu_job_from(const db_render_job *job, db_thread_job *tj)
{
    memset(tj, 0, sizeof *tj);
    tj->block = job->block;
    tj->F = job->F;
    tj->spans = job->spans;
    tj->nspans = job->nspans;
    tj->from = job->from;
    tj->n = job->count - job->from;
    tj->interpolate = job->interpolate;
    tj->interp_trip = job->interp_trip;
    tj->exc_pos = job->exc_pos;
    tj->exc_sample = job->exc_sample;
    tj->ndirs = job->tangents ? job->ndirs : 0;
}

void db_gpu_scatter(const db_render_job *job, const double *value, const double *tangents, const unsigned char *tripped,
                    const double *omega)
{
    const long n = job->count - job->from;
    const size_t F = (size_t)job->fpixels;
    for (long k = 0; k < job->nspans; k++) {
        const db_span *sp = &job->spans[k];
        for (int f = sp->f0; f <= sp->f1; f++) {
            long pos = sp->first + (f - sp->f0);
            if (pos < job->from) continue;
            long i = pos - job->from;
            size_t o = job->full ? (size_t)sp->s * F + (size_t)f : (size_t)pos;
            if (job->image) job->image[o] = db_to_float(value[i]);
            if (job->image64) job->image64[o] = value[i];
            if (job->tangents)
                for (int d = 0; d < job->ndirs; d++) job->tangents[(size_t)d * job->ld + o] = tangents[(size_t)d * (size_t)n + (size_t)i];
            if (job->omega) job->omega[pos] = omega[i];
            if (job->tripped) job->tripped[pos] = tripped[i];
        }
    }
    if (job->progress) job->progress(job->progress_user, 1.0);
}
