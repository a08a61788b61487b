/* gpu_job.h: what one launch of the GPU renderer computes, in plain C (no dual numbers), shared by the CUDA
 * renderer (kernels/cuda_*.cu), its host emulation (kernels/emul_*.c) and the host side that scatters the results
 * into the run layer's outputs (kernels/gpu_host.c). */
#ifndef DB_GPU_JOB_H
#define DB_GPU_JOB_H

#include "backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One thread per selected pixel at positions from .. from+n-1 (the selection's row-major order). Pointers are
 * device pointers on the GPU and host pointers in the emulation; the outputs are compact, by i = pos - from. */
typedef struct db_thread_job {
    const void *block;            /* the table block, uploaded in one copy */
    const double *F;              /* the structure factors, uploaded once per simulation (NULL: none) */
    const db_span *spans;
    long nspans;
    long from, n;
    int interpolate;              /* the run layer's decisions, as for the CPU renderer */
    long interp_trip;
    long exc_pos;                 /* the carryover's exceptional sample, as a pixel position */
    int exc_sample;
    int ndirs;
    double *value;                /* [n] */
    double *tangents;             /* [k*n + i], k < ndirs: component-major */
    unsigned char *tripped;       /* [n] */
    double *omega;                /* [n] */
} db_thread_job;

/* The thread job of a render job over compact buffers of n = count - from pixels (pointers filled by the caller). */
void db_gpu_job_from(const db_render_job *job, db_thread_job *tj);
/* Writes compact results (host memory) into the render job's outputs: image, image64, tangents, omega, tripped. */
void db_gpu_scatter(const db_render_job *job, const double *value, const double *tangents, const unsigned char *tripped,
                    const double *omega);

#ifdef __cplusplus
}
#endif
#endif
