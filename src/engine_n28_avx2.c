/* The 28-direction engine compiled for AVX2 (4 doubles per vector instead of 2). Chosen at run time when the
 * CPU has AVX2; the results are the same bits as the portable build's (IEEE lanes, no FMA contraction). */
#define AD_N 28
#define AD_VECTOR 1 /* tangents in vectors of four doubles (ad/ad.h) */
#define DB_ENGINE_SUFFIX _n28_avx2
#include "engine_impl.h"
