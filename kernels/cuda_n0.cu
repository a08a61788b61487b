// The CUDA renderer with 0 tangent direction(s) (cuda_impl.cuh).
#define AD_N 0
#define DB_ENGINE_SUFFIX _n0
#include "cuda_impl.cuh"
