/* The table builder for 0 tangent directions (src/tables_impl.h). */
#define AD_N 0
#define DB_ENGINE_SUFFIX _n0
#include "tables_impl.h"
