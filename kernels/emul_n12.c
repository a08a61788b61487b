/* The GPU renderer's host emulation with 12 tangent direction(s) (emul_impl.h). */
#define AD_N 12
#define DB_ENGINE_SUFFIX _n12
#include "emul_impl.h"
