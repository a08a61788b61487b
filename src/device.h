/* device.h: where a simulation renders (-device): the CPU engines, an NVIDIA GPU through CUDA (kernels/cuda_*.cu),
 * or the host emulation of the GPU renderer (kernels/emul_*.c: the GPU thread's function run on the CPU, for the
 * tests of the GPU path on machines without one). The run layer picks the renderer (src/run.c). */
#ifndef DB_DEVICE_H
#define DB_DEVICE_H

#include "backend.h"

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

enum db_device { DB_DEVICE_CPU = 0, DB_DEVICE_CUDA = 1, DB_DEVICE_AUTO = 2, DB_DEVICE_EMULATE = 3 };
/* The device names, once (src/device.c), for -device and db_sim_set_device alike: the enum's id, or -1 for an
 * unknown name. DB_DEVICE_NAMES lists them for messages. */
int db_device_from_name(const char *name);
#define DB_DEVICE_NAMES "cpu, cuda, auto or emulate"

/* What a renderer may refuse (db_device_backend.supports) */
enum db_device_feature {
    DB_FEATURE_DECISION_LOGS, /* gradcheck's per-pixel decision logs, recorded and replayed */
    DB_FEATURE_F_JACOBIAN     /* the structure-factor Jacobian (db_sim_run_selected_F, -grad_F) */
};

/* A place to render, one entry of the registry in src/device.c (as ggml's backends register themselves): the run
 * layer and the simulation loop over it instead of naming devices. Adding a renderer is its entry there (and its
 * renderers and build rules). */
typedef struct db_device_backend {
    int id;                   /* enum db_device */
    const char *name;
    /* 1 when it can render here (what it is in what, e.g. the GPU's name; may stay empty), else 0 and why */
    int (*usable)(char *what, size_t what_size, char *why, size_t why_size);
    const db_renderer *(*renderer)(int ndirs); /* for a pass of ndirs tangent directions */
    int default_chunk, max_chunk;              /* directions a pass: by default, and at most */
    void (*context_free)(void *ctx);           /* what its renderers leave on a simulation (db_sim.device_ctx) */
    int (*supports)(int feature);              /* 1 when it renders the feature (enum db_device_feature) */
} db_device_backend;
/* The entry of a device id; NULL for DB_DEVICE_AUTO (a choice between entries, db_sim_use_device) or an unknown id */
const db_device_backend *db_device_backend_of(int id);

/* Directions per pass of the GPU renderers: 0, 1, 4 and 12 are compiled; a run's default pass is
 * DB_GPU_DEFAULT_CHUNK directions, the fastest measured for the eleven mission derivatives (README "GPU"). */
#define DB_GPU_MAX_DIRS 12
#define DB_GPU_DEFAULT_CHUNK 12
extern const db_renderer db_emul_renderer_n0, db_emul_renderer_n1, db_emul_renderer_n4, db_emul_renderer_n12;
#ifdef DB_HAVE_CUDA
extern const db_renderer db_cuda_renderer_n0, db_cuda_renderer_n1, db_cuda_renderer_n4, db_cuda_renderer_n12;
#endif

/* 1 when a usable CUDA GPU is there (its name in name); else 0 and the reason in why. Both may be NULL. */
int db_cuda_usable(char *name, size_t name_size, char *why, size_t why_size);
/* A simulation's device memory and events (NULL: nothing to free). */
void db_cuda_context_free(void *ctx);
/* The kernels' time so far (ms, device events, summed over launches) and the device memory the context holds. */
double db_cuda_kernel_ms(const void *ctx);
size_t db_cuda_context_bytes(const void *ctx);

#ifdef __cplusplus
}
#endif
#endif
