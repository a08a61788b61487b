/* The table builder for 1 tangent directions (src/tables_impl.h). */
#define AD_N 1
#define DB_ENGINE_SUFFIX _n1
#include "tables_impl.h"
