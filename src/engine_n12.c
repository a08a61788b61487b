/* The engine with 12 tangent direction(s) per pass (derivatives; see sim.h). */
#define AD_N 12
#define AD_VECTOR 1 /* tangents in vectors of four doubles (ad/ad.h) */
#define DB_ENGINE_SUFFIX _n12
#include "engine_impl.h"
