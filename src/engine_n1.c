/* The engine with 1 tangent direction(s) per pass (derivatives; see sim.h). */
#define AD_N 1
#define DB_ENGINE_SUFFIX _n1
#include "engine_impl.h"
