/* The primal engine: the physics compiled with no tangent directions (plain double arithmetic). */
#define AD_N 0
#define DB_ENGINE_SUFFIX _n0
#include "engine_impl.h"
