// The CUDA renderer with 1 tangent direction(s) (cuda_impl.cuh).
#define AD_N 1
#define DB_ENGINE_SUFFIX _n1
#include "cuda_impl.cuh"
