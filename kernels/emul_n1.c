/* The GPU renderer's host emulation with 1 tangent direction(s) (emul_impl.h). */
#define AD_N 1
#define DB_ENGINE_SUFFIX _n1
#include "emul_impl.h"
