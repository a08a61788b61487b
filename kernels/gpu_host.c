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

/* Each span is a run of consecutive positions in the compact buffers and in the outputs (a row segment), so every
 * output takes one contiguous copy per span; spans in parallel (a full detector with twelve derivative images is
 * about 100 MB to move). */
void db_gpu_scatter(const db_render_job *job, const double *value, const double *tangents, const unsigned char *tripped,
                    const double *omega)
{
    const long n = job->count - job->from;
    const size_t F = (size_t)job->fpixels;
#pragma omp parallel for schedule(dynamic, 16)
    for (long k = 0; k < job->nspans; k++) {
        const db_span *sp = &job->spans[k];
        long pos = sp->first, len = sp->f1 - sp->f0 + 1;
        int f0 = sp->f0;
        if (pos + len <= job->from) continue;
        if (pos < job->from) { /* the run layer's first pass stopped inside this span */
            f0 += (int)(job->from - pos);
            len -= job->from - pos;
            pos = job->from;
        }
        const size_t i = (size_t)(pos - job->from);
        const size_t o = job->full ? (size_t)sp->s * F + (size_t)f0 : (size_t)pos;
        if (job->image)
            for (long m = 0; m < len; m++) job->image[o + (size_t)m] = db_to_float(value[i + (size_t)m]);
        if (job->image64) memcpy(job->image64 + o, value + i, (size_t)len * sizeof(double));
        if (job->tangents)
            for (int d = 0; d < job->ndirs; d++)
                memcpy(job->tangents + (size_t)d * job->ld + o, tangents + (size_t)d * (size_t)n + i, (size_t)len * sizeof(double));
        if (job->omega_span) {
            double sum = 0.0;
            for (long m = 0; m < len; m++) sum += omega[i + (size_t)m];
            job->omega_span[k] = sum;
        }
        if (job->tripped) memcpy(job->tripped + pos, tripped + i, (size_t)len);
    }
    if (job->progress) job->progress(job->progress_user, 1.0);
}
