/* The engine with 28 tangent directions per pass: every parameter (26) in one pass, so that the reference's
 * sines and the geometry are evaluated once instead of once per pass of 12 (see sim.h). */
#define AD_N 28
#define AD_VECTOR 1 /* tangents in vectors of four doubles (ad/ad.h) */
#define DB_ENGINE_SUFFIX _n28
#include "engine_impl.h"
