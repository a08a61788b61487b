/* device.c: the devices, once: their names (the parser, config_flags.c, and the run layer, run.c, both read them)
 * and the registry of the places to render (device.h db_device_backend), with which renderer each takes for a
 * pass and what each refuses. */
#include "device.h"
#include "dualbragg.h" /* DB_MAX_CHUNK */

#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* ---- the CPU engines: the portable builds, or the AVX2 ones where the CPU has it */
#ifdef DB_HAVE_AVX2_ENGINES
/* DUALBRAGG_NO_AVX2 in the environment forces the portable engines (for comparisons) */
static int have_avx2(void) { return __builtin_cpu_supports("avx2") && !getenv("DUALBRAGG_NO_AVX2"); }
#endif

static const db_renderer *cpu_renderer(int ndirs)
{
#ifdef DB_HAVE_AVX2_ENGINES
    if (ndirs <= 0 && have_avx2()) return &db_cpu_renderer_n0_avx2;
#endif
    if (ndirs <= 0) return &db_cpu_renderer_n0;
    if (ndirs <= 1) return &db_cpu_renderer_n1;
#ifdef DB_HAVE_AVX2_ENGINES
    if (have_avx2()) return ndirs <= 4 ? &db_cpu_renderer_n4_avx2 : ndirs <= 12 ? &db_cpu_renderer_n12_avx2 : &db_cpu_renderer_n28_avx2;
#endif
    return ndirs <= 4 ? &db_cpu_renderer_n4 : ndirs <= 12 ? &db_cpu_renderer_n12 : &db_cpu_renderer_n28;
}

static int cpu_supports(int feature)
{
    (void)feature;
    return 1;
}

/* ---- the GPU renderer (CUDA) and its host emulation: passes of at most DB_GPU_MAX_DIRS directions, 2 and 3
 * directions on the 4-direction kernel, 5 to 12 on the 12-direction one (README "GPU") */
static int gpu_kernel(int ndirs) { return ndirs <= 0 ? 0 : ndirs == 1 ? 1 : ndirs <= 4 ? 2 : 3; }

static const db_renderer *cuda_renderer(int ndirs)
{
#ifdef DB_HAVE_CUDA
    static const db_renderer *const cuda[4] = {&db_cuda_renderer_n0, &db_cuda_renderer_n1, &db_cuda_renderer_n4,
                                               &db_cuda_renderer_n12};
    return cuda[gpu_kernel(ndirs)];
#else
    (void)ndirs;
    return NULL; /* never asked: db_cuda_usable says no in such a build */
#endif
}

static const db_renderer *emul_renderer(int ndirs)
{
    static const db_renderer *const emul[4] = {&db_emul_renderer_n0, &db_emul_renderer_n1, &db_emul_renderer_n4,
                                               &db_emul_renderer_n12};
    return emul[gpu_kernel(ndirs)];
}

/* the decision logs are recorded and replayed on the CPU only, and the F-Jacobian is the CPU engines' */
static int gpu_supports(int feature)
{
    (void)feature;
    return 0;
}

static const db_device_backend BACKENDS[] = {
    {DB_DEVICE_CPU, "cpu", NULL, cpu_renderer, DB_MAX_CHUNK, INT_MAX, NULL, cpu_supports},
    {DB_DEVICE_CUDA, "cuda", db_cuda_usable, cuda_renderer, DB_GPU_DEFAULT_CHUNK, DB_GPU_MAX_DIRS, db_cuda_context_free,
     gpu_supports},
    {DB_DEVICE_EMULATE, "emulate", NULL, emul_renderer, DB_GPU_DEFAULT_CHUNK, DB_GPU_MAX_DIRS, NULL, gpu_supports},
};

const db_device_backend *db_device_backend_of(int id)
{
    for (size_t i = 0; i < sizeof BACKENDS / sizeof BACKENDS[0]; i++)
        if (BACKENDS[i].id == id) return &BACKENDS[i];
    return NULL;
}

int db_device_from_name(const char *name)
{
    if (!name) return -1;
    if (strcmp(name, "auto") == 0) return DB_DEVICE_AUTO; /* a choice between backends, not one of its own */
    for (size_t i = 0; i < sizeof BACKENDS / sizeof BACKENDS[0]; i++)
        if (strcmp(name, BACKENDS[i].name) == 0) return BACKENDS[i].id;
    return -1;
}
