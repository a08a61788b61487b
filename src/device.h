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
