/* The GPU renderer's host emulation with 0 tangent direction(s) (emul_impl.h). */
#define AD_N 0
#define DB_ENGINE_SUFFIX _n0
#include "emul_impl.h"
