/* The primal engine compiled for AVX2: VEX encoding and inline rounding (ceil, floor) for the per-pixel work
 * around the reference's sines, about 7% of a light run. Chosen at run time when the CPU has AVX2; the same bits as
 * the portable build (IEEE operations in source order, no contraction). The plain-geometry helpers of the
 * derivative passes stay in the portable build only (engine_impl.h). */
#define AD_N 0
#define DB_ENGINE_AVX2 1
#define DB_ENGINE_SUFFIX _n0_avx2
#include "engine_impl.h"
