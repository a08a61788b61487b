/* objective.h: what one observation contributes to the refinement objective (refine/lm.h), for weighted least
 * squares and for the Poisson likelihood of counts (shifted by a readout variance), and the moments of the
 * Poisson deviance that say whether a fit's deviance is plausible. */
#ifndef DB_OBJECTIVE_H
#define DB_OBJECTIVE_H

typedef struct db_term {
    double cost;   /* LSQ: 0.5 w r^2; POISSON: half the deviance, mu' - obs' + obs' ln(obs'/mu') */
    double grad;   /* d cost / d mu */
    double fisher;    /* the expected curvature (Fisher information) of the cost in mu: w, or 1/mu' */
    double curvature; /* the normal-matrix weight of the steps: w, or obs'/mu'^2 floored at 1% of 1/mu' */
} db_term;

/* POISSON: an empty pixel (obs' = 0) whose mean mu' is below this gets the weights of this mean (1/mu' would
 * overflow the normal matrices: weights up to 1e290 times squared derivatives up to 1e16 stay inside the double
 * range; a higher floor, 1e-200, held the steps too loosely where means of 1e-289 need theirs, and the 20-cell
 * bench's seed 2 then made 5 reduced solves a step instead of 3 and stopped at a cost 0.23 higher) */
#define DB_TERM_WEIGHT_MEAN 1e-290

/* One observation's term. obs and mu are the raw values; for POISSON obs' = max(obs + s2, 0) and
 * mu' = mu + s2 (s2 = readout variance), for LSQ `scale` is the weight w. Returns 0 when mu is outside the
 * objective's domain (POISSON: mu' < 0, mu' = 0 with obs' > 0, or not finite), 1 otherwise. */
int db_term_eval(int objective, double obs, double mu, double scale, db_term *t);

/* Pearson's (obs - mu)^2 / variance of one observation (variance 1/w for LSQ, mu' for POISSON). */
double db_term_pearson(int objective, double obs, double mu, double scale);

/* db_poisson_deviance_moments (refine/lm.h) with ln k taken from logk[k] for k < nlog: a fit's goodness asks for
 * the moments at every pixel, and most terms' logarithms repeat from pixel to pixel. */
void db_poisson_deviance_moments_logs(double mu, const double *logk, long nlog, double *mean, double *variance);

#endif
