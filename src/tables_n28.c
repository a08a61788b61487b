/* The table builder for 28 tangent directions (src/tables_impl.h). */
#define AD_N 28
#define DB_ENGINE_SUFFIX _n28
#include "tables_impl.h"
