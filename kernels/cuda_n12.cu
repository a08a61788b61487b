// The CUDA renderer with 12 tangent direction(s) (cuda_impl.cuh).
#define AD_N 12
#define DB_ENGINE_SUFFIX _n12
#include "cuda_impl.cuh"
