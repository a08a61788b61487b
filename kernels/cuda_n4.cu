// The CUDA renderer with 4 tangent direction(s) (cuda_impl.cuh).
#define AD_N 4
#define DB_ENGINE_SUFFIX _n4
#include "cuda_impl.cuh"
