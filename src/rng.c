/* Random generators of the reference (appendix A1-A3). Every float/double conversion below is deliberate:
 * the noise image and the mosaic matrices must match the reference to the last bit (A0), so do not
 * "simplify" a cast, reorder an expression or replace powf/floorf by their double versions. */
#include "rng.h"

#include <limits.h>
#include <math.h>

#define RAN1_IA 16807L
#define RAN1_IM 2147483647L
#define RAN1_IQ 127773L
#define RAN1_IR 2836L
#define RAN1_NTAB 32
#define RAN1_NDIV_SHIFT 26 /* NDIV = 1 + (IM - 1) / NTAB = 2^26 */
#define RAN1_AM (1.0 / RAN1_IM)
#define RAN1_RNMX (1.0 - 1.2e-7)

/* M_PI is not part of strict C11. */
#define RNG_PI 3.14159265358979323846

void db_rng_init(db_rng *r)
{
    r->iy = 0;
    for (int j = 0; j < RAN1_NTAB; j++)
        r->iv[j] = 0;
    r->gauss_iset = 0;
    r->gauss_gset = 0.0f;
    r->poi_oldm = -1.0f;
    r->poi_g = 0.0f;
    r->poi_sq = 0.0f;
    r->poi_alxm = 0.0f;
}

/* idum <- 16807 * idum mod (2^31 - 1) by Schrage's method, in long arithmetic exactly like the reference
 * (no overflow even for out-of-range seeds: k * IR stays far below LONG_MAX). */
static long lehmer_step(long idum)
{
    long k = idum / RAN1_IQ;
    idum = RAN1_IA * (idum - k * RAN1_IQ) - RAN1_IR * k;
    if (idum < 0)
        idum += RAN1_IM;
    return idum;
}

float db_ran1(db_rng *r, long *idum)
{
    if (*idum <= 0 || r->iy == 0) {
        /* The reference tests -idum < 1; on x86 -LONG_MIN wraps to LONG_MIN, which also takes the "= 1" path. */
        if (*idum >= 0 || *idum == LONG_MIN)
            *idum = 1;
        else
            *idum = -*idum;
        for (int j = RAN1_NTAB + 7; j >= 0; j--) {
            *idum = lehmer_step(*idum);
            if (j < RAN1_NTAB)
                r->iv[j] = *idum;
        }
        r->iy = r->iv[0];
    }
    *idum = lehmer_step(*idum);
    /* Equal to iy / NDIV for every valid state (1 <= iy < 2^31); the mask only keeps a state corrupted by an
     * absurd seed (> ~1e11) inside the table, where the reference would read out of bounds. */
    int j = (int)(((unsigned long)r->iy >> RAN1_NDIV_SHIFT) & (RAN1_NTAB - 1));
    r->iy = r->iv[j];
    r->iv[j] = *idum;
    float temp = (float)(RAN1_AM * (double)r->iy);
    if ((double)temp > RAN1_RNMX)
        return (float)RAN1_RNMX;
    return temp;
}

void db_mosaic_rotation_umat(db_rng *r, float mosaicity, double U[9], long *seed, double axis_out[3],
                             float *angle_factor_out)
{
    double r1 = 2.0 * (double)db_ran1(r, seed) - 1.0;
    double r2 = 2.0 * (double)db_ran1(r, seed) - 1.0;
    double r3 = 2.0 * (double)db_ran1(r, seed) - 1.0;

    double xyrad = sqrt(1.0 - r2 * r2);
    float q = (float)(1.0 - r3 * r3);
    float third = (float)(1.0 / 3.0);
    float p = powf(q, third);
    float rot_f = mosaicity * p; /* float x float, rounded to float before widening */
    double rot = (double)rot_f;

    double v1 = xyrad * sin(RNG_PI * r1);
    double v2 = xyrad * cos(RNG_PI * r1);
    double v3 = r2;

    double c = cos(rot);
    double s = sin(rot);
    double w = 1.0 - c;
    double p1 = w * v1;
    double p2 = w * v2;

    U[0] = c + w * (v1 * v1);
    U[1] = p1 * v2 - s * v3;
    U[2] = p1 * v3 + s * v2;
    U[3] = p1 * v2 + s * v3;
    U[4] = c + w * (v2 * v2);
    U[5] = p2 * v3 - s * v1;
    U[6] = p1 * v3 - s * v2;
    U[7] = p2 * v3 + s * v1;
    U[8] = c + w * (v3 * v3);

    if (axis_out) {
        axis_out[0] = v1;
        axis_out[1] = v2;
        axis_out[2] = v3;
    }
    if (angle_factor_out)
        *angle_factor_out = p;
}

float db_gammln(float xx)
{
    static const double cof[6] = {76.18009172947146,     -86.50532032941677,    24.01409824083091,
                                  -1.231739572450155,    0.1208650973866179e-2, -0.5395239384953e-5};
    double x = (double)xx;
    double y = x;
    double tmp = x + 5.5;
    tmp = tmp - (x + 0.5) * log(tmp);
    double ser = 1.000000000190015;
    for (int j = 0; j < 6; j++) {
        y = y + 1.0;
        ser = ser + cof[j] / y;
    }
    return (float)(-tmp + log((2.5066282746310005 * ser) / x));
}

float db_gaussdev(db_rng *r, long *idum)
{
    if (r->gauss_iset == 0) {
        float v1, v2, rsq;
        do {
            v1 = (float)(2.0 * (double)db_ran1(r, idum) - 1.0);
            v2 = (float)(2.0 * (double)db_ran1(r, idum) - 1.0);
            rsq = v1 * v1 + v2 * v2;
        } while (rsq >= 1.0f || rsq == 0.0f);
        float fac = (float)sqrt(-2.0 * log((double)rsq) / (double)rsq);
        r->gauss_gset = v1 * fac;
        r->gauss_iset = 1;
        return v2 * fac;
    }
    r->gauss_iset = 0;
    return r->gauss_gset;
}

float db_poidev(db_rng *r, float xm, long *idum)
{
    if (xm > 1.0e6f) /* Gaussian approximation; leaves the mean cache alone */
        return (float)((double)xm + sqrt((double)xm) * (double)db_gaussdev(r, idum));

    if (xm < 12.0f) { /* product of uniforms */
        if (xm != r->poi_oldm) {
            r->poi_oldm = xm;
            r->poi_g = (float)exp(-(double)xm);
        }
        float em = -1.0f;
        float t = 1.0f;
        do {
            em = em + 1.0f;
            t = t * db_ran1(r, idum);
        } while (t > r->poi_g);
        return em;
    }

    /* Rejection from a Lorentzian. The loop conditions are written as "continue while" so that a NaN mean
     * leaves after two uniforms, as in the reference. */
    if (xm != r->poi_oldm) {
        r->poi_oldm = xm;
        r->poi_sq = (float)sqrt(2.0 * (double)xm);
        r->poi_alxm = (float)log((double)xm);
        r->poi_g = xm * r->poi_alxm - db_gammln((float)((double)xm + 1.0));
    }
    float em, t, y;
    do {
        do {
            y = (float)tan(RNG_PI * (double)db_ran1(r, idum));
            em = r->poi_sq * y + xm;
        } while (em < 0.0f);
        em = floorf(em);
        float log_ratio = (em * r->poi_alxm - db_gammln((float)((double)em + 1.0))) - r->poi_g;
        t = (float)((0.9 * (1.0 + (double)(y * y))) * exp((double)log_ratio));
    } while (db_ran1(r, idum) > t);
    return em;
}
