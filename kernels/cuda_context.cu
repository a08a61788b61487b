// cuda_context.cu: the CUDA renderer's host side shared by every direction count (cuda_context.h): the device
// check, the context's memory, uploads and the copy back. Each kernel is in cuda_n*.cu.
#include "cuda_context.h"
#include "device.h"
#include "error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int db_cuda_check(cudaError_t e, const char *what, db_error *err)
{
    if (e == cudaSuccess) return DB_OK;
    return db_fail(err, e == cudaErrorMemoryAllocation ? DB_ERR_NOMEM : DB_ERR_INTERNAL, "-device cuda: %s failed: %s (%s)",
                   what, cudaGetErrorString(e), cudaGetErrorName(e));
}

extern "C" int db_cuda_usable(char *name, size_t name_size, char *why, size_t why_size)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        if (why)
            snprintf(why, why_size, "no usable CUDA GPU (%s)",
                     e != cudaSuccess ? cudaGetErrorString(e) : "cudaGetDeviceCount found no device");
        return 0;
    }
    cudaDeviceProp p;
    e = cudaGetDeviceProperties(&p, 0);
    if (e != cudaSuccess) {
        if (why) snprintf(why, why_size, "no usable CUDA GPU (%s)", cudaGetErrorString(e));
        return 0;
    }
    if (p.major < 7) { /* double-precision throughput and the sm_70+ code this build carries */
        if (why) snprintf(why, why_size, "the GPU %s has compute capability %d.%d; dualbragg needs 7.0 or newer", p.name, p.major, p.minor);
        return 0;
    }
    if (name) snprintf(name, name_size, "%s", p.name);
    return 1;
}

extern "C" void db_cuda_context_free(void *ctx)
{
    db_cuda_ctx *c = (db_cuda_ctx *)ctx;
    if (!c) return;
    cudaFree(c->F);
    cudaFree(c->block);
    cudaFree(c->spans);
    cudaFree(c->value);
    cudaFree(c->tangents);
    cudaFree(c->omega);
    cudaFree(c->tripped);
    if (c->events) {
        cudaEventDestroy(c->start);
        cudaEventDestroy(c->stop);
    }
    cudaFreeHost(c->h_value);
    cudaFreeHost(c->h_tangents);
    cudaFreeHost(c->h_omega);
    cudaFreeHost(c->h_tripped);
    free(c);
}

extern "C" double db_cuda_kernel_ms(const void *ctx) { return ctx ? ((const db_cuda_ctx *)ctx)->total_ms : 0.0; }
extern "C" size_t db_cuda_context_bytes(const void *ctx) { return ctx ? ((const db_cuda_ctx *)ctx)->bytes : 0; }

int db_cuda_ctx_get(void **slot, db_cuda_ctx **out, db_error *err)
{
    if (!slot) return db_fail(err, DB_ERR_INTERNAL, "-device cuda: no device context");
    if (!*slot) {
        db_cuda_ctx *c = (db_cuda_ctx *)calloc(1, sizeof(db_cuda_ctx));
        if (!c) return db_fail(err, DB_ERR_NOMEM, "out of memory");
        int rc = db_cuda_check(cudaEventCreate(&c->start), "cudaEventCreate", err);
        if (!rc) rc = db_cuda_check(cudaEventCreate(&c->stop), "cudaEventCreate", err);
        if (rc) {
            free(c);
            return rc;
        }
        c->events = 1;
        *slot = c;
    }
    *out = (db_cuda_ctx *)*slot;
    return DB_OK;
}

/* A device buffer of at least `need` bytes (grown, never shrunk, within a simulation). */
static int device_buffer(void **p, size_t *cap, size_t need, size_t *bytes, const char *what, db_error *err)
{
    if (need <= *cap && *p) return DB_OK;
    if (*p) {
        cudaFree(*p);
        *bytes -= *cap;
        *p = NULL;
        *cap = 0;
    }
    int rc = db_cuda_check(cudaMalloc(p, need ? need : 1), what, err);
    if (rc) return rc;
    *cap = need;
    *bytes += need;
    return DB_OK;
}

/* Page-locked host memory for the copies back: several times the bandwidth of pageable memory. */
static int host_buffer(void **p, size_t *cap, size_t need, db_error *err)
{
    if (need <= *cap && *p) return DB_OK;
    if (*p) cudaFreeHost(*p);
    *p = NULL;
    *cap = 0;
    int rc = db_cuda_check(cudaMallocHost(p, need ? need : 1), "cudaMallocHost (staging)", err);
    if (!rc) *cap = need;
    return rc;
}

int db_cuda_prepare(db_cuda_ctx *c, const db_render_job *job, long n, int ndirs, db_error *err)
{
    int rc = DB_OK;
    if (job->F && (c->F_host != job->F || c->F_count != job->F_count || c->F_version != job->F_version)) {
        size_t cap = 0;
        if (c->F) {
            cudaFree(c->F);
            c->bytes -= c->F_count * sizeof(double);
            c->F = NULL;
        }
        rc = device_buffer((void **)&c->F, &cap, job->F_count * sizeof(double), &c->bytes, "cudaMalloc (structure factors)", err);
        if (!rc) rc = db_cuda_check(cudaMemcpy(c->F, job->F, job->F_count * sizeof(double), cudaMemcpyHostToDevice),
                                    "cudaMemcpy (structure factors)", err);
        if (rc) return rc;
        c->F_host = job->F;
        c->F_count = job->F_count;
        c->F_version = job->F_version;
    }
    const size_t block_bytes = ((const db_block_header *)job->block)->bytes;
    if (c->block_host != job->block || c->block_version != job->block_version) {
        rc = device_buffer(&c->block, &c->block_cap, block_bytes, &c->bytes, "cudaMalloc (table block)", err);
        if (!rc) rc = db_cuda_check(cudaMemcpy(c->block, job->block, block_bytes, cudaMemcpyHostToDevice),
                                    "cudaMemcpy (table block)", err);
        if (rc) return rc;
        c->block_host = job->block;
        c->block_version = job->block_version;
    }
    /* the spans are a few kilobytes (one or a few per row): sent with every launch */
    rc = device_buffer((void **)&c->spans, &c->spans_cap, (size_t)job->nspans * sizeof(db_span), &c->bytes, "cudaMalloc (spans)", err);
    if (!rc) rc = db_cuda_check(cudaMemcpy(c->spans, job->spans, (size_t)job->nspans * sizeof(db_span), cudaMemcpyHostToDevice),
                                "cudaMemcpy (spans)", err);
    size_t cap;
    if (!rc) {
        cap = c->n_cap * sizeof(double);
        rc = device_buffer((void **)&c->value, &cap, (size_t)n * sizeof(double), &c->bytes, "cudaMalloc (values)", err);
    }
    if (!rc) {
        cap = c->n_cap * sizeof(double);
        rc = device_buffer((void **)&c->omega, &cap, (size_t)n * sizeof(double), &c->bytes, "cudaMalloc (solid angles)", err);
    }
    if (!rc) {
        cap = c->n_cap;
        rc = device_buffer((void **)&c->tripped, &cap, (size_t)n, &c->bytes, "cudaMalloc (flags)", err);
        if (!rc && (size_t)n > c->n_cap) c->n_cap = (size_t)n;
    }
    if (!rc && ndirs > 0) {
        cap = c->t_cap * sizeof(double);
        rc = device_buffer((void **)&c->tangents, &cap, (size_t)n * (size_t)ndirs * sizeof(double), &c->bytes,
                           "cudaMalloc (derivative images)", err);
        if (!rc && (size_t)n * (size_t)ndirs > c->t_cap) c->t_cap = (size_t)n * (size_t)ndirs;
    }
    return rc;
}

int db_cuda_finish(db_cuda_ctx *c, const db_render_job *job, long n, int ndirs, db_error *err)
{
    size_t cap = c->h_n_cap * sizeof(double);
    int rc = host_buffer((void **)&c->h_value, &cap, (size_t)n * sizeof(double), err);
    cap = c->h_n_cap * sizeof(double);
    if (!rc) rc = host_buffer((void **)&c->h_omega, &cap, (size_t)n * sizeof(double), err);
    cap = c->h_n_cap;
    if (!rc) rc = host_buffer((void **)&c->h_tripped, &cap, (size_t)n, err);
    if (!rc && (size_t)n > c->h_n_cap) c->h_n_cap = (size_t)n;
    if (!rc && ndirs > 0) {
        cap = c->h_t_cap * sizeof(double);
        rc = host_buffer((void **)&c->h_tangents, &cap, (size_t)n * (size_t)ndirs * sizeof(double), err);
        if (!rc && (size_t)n * (size_t)ndirs > c->h_t_cap) c->h_t_cap = (size_t)n * (size_t)ndirs;
    }
    if (rc) return rc;
    rc = db_cuda_check(cudaMemcpy(c->h_value, c->value, (size_t)n * sizeof(double), cudaMemcpyDeviceToHost), "cudaMemcpy (values back)", err);
    if (!rc) rc = db_cuda_check(cudaMemcpy(c->h_omega, c->omega, (size_t)n * sizeof(double), cudaMemcpyDeviceToHost), "cudaMemcpy (solid angles back)", err);
    if (!rc) rc = db_cuda_check(cudaMemcpy(c->h_tripped, c->tripped, (size_t)n, cudaMemcpyDeviceToHost), "cudaMemcpy (flags back)", err);
    if (!rc && ndirs > 0)
        rc = db_cuda_check(cudaMemcpy(c->h_tangents, c->tangents, (size_t)n * (size_t)ndirs * sizeof(double), cudaMemcpyDeviceToHost),
                           "cudaMemcpy (derivative images back)", err);
    if (rc) return rc;
    db_gpu_scatter(job, c->h_value, c->h_tangents, c->h_tripped, c->h_omega);
    return DB_OK;
}
