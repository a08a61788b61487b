// Compiles the shared physics headers as device code, so that the build fails when they stop being
// CUDA-compatible. The GPU driver and kernels build on this (a later issue); AD_N is set by CMake.
#include "physics.h"

#define DB_CHECK_KERNEL AD_CAT(db_physics_check_kernel_n, AD_N)

/* each direction count its own symbol */
__global__ void DB_CHECK_KERNEL(const db_tables *t, const double *F, double *out)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= t->fpixels * t->spixels) return;
    db_pixel_flags fl;
    fl.first_sample = -1;
    fl.interpolate = 0;
    fl.interp_tripped = 0;
    fl.omega_sum = 0.0;
    fl.fjac = 0; /* the structure-factor Jacobian is host-only (run.c refuses it on a GPU) */
    fl.probe_first = 0;
    ad_num v = db_pixel_value(t, F, i % t->fpixels, i / t->fpixels, &fl, NULL);
    out[i] = v.v;
}
