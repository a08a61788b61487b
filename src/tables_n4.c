/* The table builder for 4 tangent directions (src/tables_impl.h). */
#define AD_N 4
#define DB_ENGINE_SUFFIX _n4
#include "tables_impl.h"
