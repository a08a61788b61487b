/* cuda_context.h: a simulation's device state for the CUDA renderer (C++, kernels/ only): the structure factors
 * (uploaded once per simulation), the table block (once per version: once per change of values), the selection's
 * spans, the compact output buffers, their host staging copies, and the events that time the kernel. */
#ifndef DB_CUDA_CONTEXT_H
#define DB_CUDA_CONTEXT_H

#include <cuda_runtime.h>

#include "gpu_job.h"

struct db_cuda_ctx {
    double *F;                  /* device */
    const double *F_host;
    size_t F_count;
    unsigned long F_version;    /* the job's F_version when uploaded: set_structure_factors changes F in place */
    void *block;                /* device */
    size_t block_cap;
    const void *block_host;
    unsigned long block_version;
    db_span *spans;             /* device */
    size_t spans_cap;
    double *value, *tangents, *omega; /* device, compact */
    unsigned char *tripped;
    size_t n_cap, t_cap;        /* pixels, tangent values */
    double *h_value, *h_tangents, *h_omega; /* host staging */
    unsigned char *h_tripped;
    size_t h_n_cap, h_t_cap;
    cudaEvent_t start, stop;
    int events;
    float last_ms;
    double total_ms;            /* every kernel of this simulation */
    size_t bytes;               /* device memory held */
};

/* Every CUDA call checked: an error becomes a status and a message naming the call, never a crash. */
int db_cuda_check(cudaError_t e, const char *what, db_error *err);
/* The simulation's context (created on first use). */
int db_cuda_ctx_get(void **slot, db_cuda_ctx **out, db_error *err);
/* Uploads what changed (F, block, spans) and sizes the output buffers for n pixels x ndirs tangents. */
int db_cuda_prepare(db_cuda_ctx *c, const db_render_job *job, long n, int ndirs, db_error *err);
/* Copies the compact results back and scatters them into the job's outputs. */
int db_cuda_finish(db_cuda_ctx *c, const db_render_job *job, long n, int ndirs, db_error *err);

#endif
