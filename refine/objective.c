/* objective.c: per-observation terms of the two objectives, and the Poisson deviance's moments. */
#include "objective.h"
#include "lm.h"

#include <math.h>

int db_term_eval(int objective, double obs, double mu, double scale, db_term *t)
{
    if (objective == DB_LM_LSQ) {
        double r = mu - obs;
        t->cost = 0.5 * scale * r * r;
        t->grad = scale * r;
        t->fisher = t->curvature = scale;
        return isfinite(t->cost);
    }
    double m = mu + scale, o = obs + scale;
    if (o < 0.0) o = 0.0; /* a count below -S^2: the shifted Poisson has no mass there; counted as 0 */
    if (m == 0.0 && o == 0.0) {
        /* a pixel the model leaves exactly empty (F = 0 outside the hkl table, no background) that holds no count:
         * P(0 | 0) = 1; the term is mu itself, linear, so its curvature (o / mu^2) is 0, not the Fisher 1/mu */
        t->cost = 0.0;
        t->grad = 1.0;
        t->fisher = t->curvature = 0.0;
        return 1;
    }
    if (!(m > 0.0) || !isfinite(m)) return 0;
    /* obs ln(obs/mu) as obs (ln obs - ln mu) would lose digits when obs and mu are close: log1p of the
     * relative difference keeps the cost's last digits, which the acceptance test compares */
    double d = o > 0.0 ? o * log1p((o - m) / m) : 0.0;
    t->cost = m - o + d;
    if (t->cost < 0.0) t->cost = 0.0; /* rounding of a term whose exact value is >= 0 */
    t->grad = 1.0 - o / m;
    /* an empty pixel's mean can be as small as a spot's far tail under a background plane pinned to 0 makes it:
     * the 20-cell ensemble bench's seed 5 (N = 300) met 1.4e-310, whose 1/mu is infinite, and 3.2e-308, whose
     * weight times a squared derivative overflowed the damping's scale (the step's norm came out NaN); the first
     * refused that still's block at every damping. Its weights are those of the mean DB_TERM_WEIGHT_MEAN (still
     * a near-constraint on the plane, as the bound is) */
    t->fisher = 1.0 / (o == 0.0 && m < DB_TERM_WEIGHT_MEAN ? DB_TERM_WEIGHT_MEAN : m);
    /* the observed curvature of the cost, obs/mu^2, steers the steps: where the optimum holds means near zero
     * (a background fitted to an image without one) the Fisher weight 1/mu overstates it, and Fisher scoring
     * converges linearly (87 trial steps against 10 on the d_phi005 Poisson image with background planes); it is
     * floored at 1% of the Fisher weight so that empty pixels still hold the normal matrix positive definite */
    t->curvature = o / (m * m) > 0.01 * t->fisher ? o / (m * m) : 0.01 * t->fisher;
    return 1;
}

double db_term_pearson(int objective, double obs, double mu, double scale)
{
    if (objective == DB_LM_LSQ) return scale * (mu - obs) * (mu - obs);
    double m = mu + scale, o = obs + scale;
    if (o < 0.0) o = 0.0;
    if (m == 0.0) return 0.0; /* only with o == 0 (db_term_eval) */
    return (o - m) * (o - m) / m;
}

/* Summed over the probability mass from the mode outwards (the terms by the recurrence p(k+1) = p(k) mu / (k+1)),
 * each way until a term's share of the second moment falls below 1e-17; above mu = 1000 the expansion
 * E = 1 + 1/(6 mu) + 1/(6 mu^2), Var = 2 + 2/(3 mu) (the deviance of a large count is a chi-square of one degree of
 * freedom), whose error there is below 1e-6 of the values (tests/refine/test_lm.c compares both with a direct sum). */
void db_poisson_deviance_moments(double mu, double *mean, double *variance)
{
    db_poisson_deviance_moments_logs(mu, NULL, 0, mean, variance);
}

void db_poisson_deviance_moments_logs(double mu, const double *logk, long nlog, double *mean, double *variance)
{
    if (!(mu > 0.0)) {
        *mean = 0.0;
        *variance = 0.0;
        return;
    }
    if (mu > 1000.0) {
        *mean = 1.0 + 1.0 / (6.0 * mu) + 1.0 / (6.0 * mu * mu);
        *variance = 2.0 + 2.0 / (3.0 * mu);
        return;
    }
    const double lmu = log(mu);
    const long mode = (long)floor(mu);
    const double p_mode = mode == 0 ? exp(-mu) : exp((double)mode * lmu - mu - lgamma((double)mode + 1.0));
    double s1 = 0.0, s2 = 0.0;
    for (int dir = 0; dir < 2; dir++) { /* up from the mode, then down from the one below it */
        double p = p_mode;
        long k = mode;
        if (dir == 1) {
            if (mode == 0) break;
            p = p_mode * (double)mode / mu;
            k = mode - 1;
        }
        for (;;) {
            double kk = (double)k;
            double d = 2.0 * ((k > 0 ? kk * ((k < nlog ? logk[k] : log(kk)) - lmu) : 0.0) - (kk - mu));
            double t1 = p * d, t2 = p * d * d;
            s1 += t1;
            s2 += t2;
            if (t2 < 1e-17 * s2 && p < 1e-17 && (dir == 1 || kk > mu + 1.0)) break;
            if (dir == 0) {
                p *= mu / (kk + 1.0);
                k++;
            } else {
                if (k == 0) break;
                p *= kk / mu;
                k--;
            }
        }
    }
    *mean = s1;
    *variance = s2 - s1 * s1 > 0.0 ? s2 - s1 * s1 : 0.0;
}
