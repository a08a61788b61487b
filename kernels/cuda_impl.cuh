// cuda_impl.cuh: the CUDA renderer of one direction count: the kernel (one thread per selected pixel, running
// render_thread.h) and its launch. Included by kernels/cuda_n*.cu after AD_N and DB_ENGINE_SUFFIX.
#include "cuda_context.h"
#include "render_thread.h"
#include "device.h"
#include "error.h"

#define DB_CUDA_BLOCK 128

/* The primal kernel's registers against occupancy: DB_CUDA_MIN_BLOCKS resident blocks per multiprocessor asked of
 * ptxas (0: its own choice; README "GPU" has the measurements) */
#if AD_N == 0 && defined(DB_CUDA_MIN_BLOCKS) && DB_CUDA_MIN_BLOCKS > 0
#define DB_KERNEL_BOUNDS __launch_bounds__(DB_CUDA_BLOCK, DB_CUDA_MIN_BLOCKS)
#else
#define DB_KERNEL_BOUNDS
#endif

__global__ void DB_KERNEL_BOUNDS DB_GPU_SFX(db_render_kernel)(db_thread_job j)
{
    long i = (long)blockIdx.x * DB_CUDA_BLOCK + threadIdx.x;
    if (i < j.n) DB_GPU_SFX(db_render_thread)(&j, i, 0);
}

#if AD_N > 0
/* the pass whose geometry and N carry no tangent: its own kernel, so that its registers are not the other's */
#if defined(DB_CUDA_GEO_BLOCKS) && DB_CUDA_GEO_BLOCKS > 0
#define DB_GEO_KERNEL_BOUNDS __launch_bounds__(DB_CUDA_BLOCK, DB_CUDA_GEO_BLOCKS)
#else
#define DB_GEO_KERNEL_BOUNDS
#endif
__global__ void DB_GEO_KERNEL_BOUNDS DB_GPU_SFX(db_render_kernel_geometry_constant)(db_thread_job j)
{
    long i = (long)blockIdx.x * DB_CUDA_BLOCK + threadIdx.x;
    if (i < j.n) DB_GPU_SFX(db_render_thread)(&j, i, 1);
}
#endif

static int DB_GPU_SFX(cuda_first_sample)(const void *block, const double *F, const db_span *spans, long nspans, long *pos,
                                         int *sample, db_error *err)
{
    /* the run layer's decision, on the host block the device copy was made from: the CPU's search */
    return DB_GPU_CAT(db_cpu_renderer, DB_ENGINE_SUFFIX).first_sample(block, F, spans, nspans, pos, sample, err);
}

static int DB_GPU_SFX(cuda_render)(const db_render_job *job, db_error *err)
{
    if (job->logs) return db_fail(err, DB_ERR_INTERNAL, "the GPU renderer neither records nor replays decisions");
    db_thread_job tj;
    db_gpu_job_from(job, &tj);
    const long n = tj.n;
    if (n <= 0) return DB_OK;
    db_cuda_ctx *c;
    int rc = db_cuda_ctx_get(job->device_ctx, &c, err);
    if (!rc) rc = db_cuda_prepare(c, job, n, tj.ndirs, err);
    if (rc) return rc;
    tj.block = c->block;
    tj.F = job->F ? c->F : NULL;
    tj.spans = c->spans;
    tj.value = c->value;
    tj.tangents = tj.ndirs > 0 ? c->tangents : NULL;
    tj.tripped = c->tripped;
    tj.omega = c->omega;
    const long blocks = (n + DB_CUDA_BLOCK - 1) / DB_CUDA_BLOCK;
    rc = db_cuda_check(cudaEventRecord(c->start), "cudaEventRecord", err);
    if (rc) return rc;
#if AD_N > 0
    if (DB_GPU_SFX(db_block_geometry_constant)(job->block))
        DB_GPU_SFX(db_render_kernel_geometry_constant)<<<(unsigned)blocks, DB_CUDA_BLOCK>>>(tj);
    else
#endif
        DB_GPU_SFX(db_render_kernel)<<<(unsigned)blocks, DB_CUDA_BLOCK>>>(tj);
    rc = db_cuda_check(cudaGetLastError(), "the kernel launch", err);
    if (!rc) rc = db_cuda_check(cudaEventRecord(c->stop), "cudaEventRecord", err);
    if (!rc) rc = db_cuda_check(cudaEventSynchronize(c->stop), "the kernel", err);
    if (!rc) rc = db_cuda_check(cudaEventElapsedTime(&c->last_ms, c->start, c->stop), "cudaEventElapsedTime", err);
    if (!rc) c->total_ms += c->last_ms;
    if (!rc) rc = db_cuda_finish(c, job, n, tj.ndirs, err);
    return rc;
}

extern "C" const db_renderer DB_GPU_SFX(db_cuda_renderer) = {"cuda" DB_GPU_XSTR(DB_ENGINE_SUFFIX), AD_N,
                                                             DB_GPU_CAT(db_tables_build_n, AD_N),
                                                             DB_GPU_SFX(cuda_first_sample), DB_GPU_SFX(cuda_render)};
