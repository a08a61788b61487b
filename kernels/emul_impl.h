/* emul_impl.h: the GPU renderer's host emulation: the thread function of render_thread.h run over every selected
 * pixel on the CPU, over the same table block and with the same host-side scatter as the CUDA renderer; only the
 * copies and the launch differ. Included once per direction count by kernels/emul_n*.c. */
#include "render_thread.h"
#include "device.h"
#include "error.h"

#include <stdlib.h>

static int DB_GPU_SFX(emul_first_sample)(const void *block, const double *F, const db_span *spans, long nspans, long *pos,
                                         int *sample, db_error *err)
{
    /* the same block layout as the CPU renderer of this direction count: the same search */
    return DB_GPU_CAT(db_cpu_renderer, DB_ENGINE_SUFFIX).first_sample(block, F, spans, nspans, pos, sample, err);
}

static int DB_GPU_SFX(emul_render)(const db_render_job *job, db_error *err)
{
    if (job->logs) return db_fail(err, DB_ERR_INTERNAL, "the GPU renderer neither records nor replays decisions");
    db_thread_job tj;
    db_gpu_job_from(job, &tj);
    const long n = tj.n;
    if (n <= 0) return DB_OK;
    tj.value = (double *)malloc((size_t)n * sizeof(double));
    tj.tangents = (double *)malloc((size_t)n * (size_t)(tj.ndirs > 0 ? tj.ndirs : 1) * sizeof(double));
    tj.tripped = (unsigned char *)malloc((size_t)n);
    tj.omega = (double *)malloc((size_t)n * sizeof(double));
    int rc = DB_OK;
    if (!tj.value || !tj.tangents || !tj.tripped || !tj.omega) {
        rc = db_fail(err, DB_ERR_NOMEM, "out of memory for %ld pixels", n);
    } else {
        /* the instance the GPU launches for this block (cuda_impl.cuh) */
        if (DB_GPU_SFX(db_block_geometry_constant)(job->block)) {
#pragma omp parallel for schedule(dynamic, 64)
            for (long i = 0; i < n; i++) DB_GPU_SFX(db_render_thread)(&tj, i, 1);
        } else {
#pragma omp parallel for schedule(dynamic, 64)
            for (long i = 0; i < n; i++) DB_GPU_SFX(db_render_thread)(&tj, i, 0);
        }
        db_gpu_scatter(job, tj.value, tj.tangents, tj.tripped, tj.omega);
    }
    free(tj.value);
    free(tj.tangents);
    free(tj.tripped);
    free(tj.omega);
    return rc;
}

const db_renderer DB_GPU_SFX(db_emul_renderer) = {"emulated-gpu" DB_GPU_XSTR(DB_ENGINE_SUFFIX), AD_N,
                                                  DB_GPU_CAT(db_tables_build_n, AD_N), DB_GPU_SFX(emul_first_sample),
                                                  DB_GPU_SFX(emul_render)};
