/* The GPU renderer's host emulation with 4 tangent direction(s) (emul_impl.h). */
#define AD_N 4
#define DB_ENGINE_SUFFIX _n4
#include "emul_impl.h"
