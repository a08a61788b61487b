/* clock.h: seconds on the monotonic clock, for the refinement drivers' progress lines and results (one
 * definition for lm.c, refine_sim.c, ensemble_lm.c and ensemble.c). */
#ifndef DB_CLOCK_H
#define DB_CLOCK_H

#include <time.h>

static inline double db_now_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

#endif
