/* The engine with 12 tangent direction(s) per pass (derivatives; see sim.h). */
#define AD_N 12
#define DB_ENGINE_SUFFIX _n12
#include "engine_impl.h"
