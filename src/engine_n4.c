/* The engine with 4 tangent direction(s) per pass (derivatives; see sim.h). */
#define AD_N 4
#define DB_ENGINE_SUFFIX _n4
#include "engine_impl.h"
