/* The table builder for 12 tangent directions (src/tables_impl.h). */
#define AD_N 12
#define DB_ENGINE_SUFFIX _n12
#include "tables_impl.h"
