/* The reference's random generators (spec appendix A1-A3), bit-exact, with every piece of state that the
 * reference keeps in statics held in a db_rng instead, so two simulations in one process stay independent.
 * One db_rng per simulation: all seed streams of that simulation share its shuffle table, as in the reference. */
#ifndef DB_RNG_H
#define DB_RNG_H

#ifdef __cplusplus
extern "C" {
#endif

typedef struct db_rng {
    long iy;                  /* ran1's previous output; 0 means "never seeded" (A1) */
    long iv[32];              /* ran1 shuffle table, shared by every seed stream of one simulation */
    int gauss_iset;           /* gaussdev: 1 when gauss_gset holds a cached deviate (A3.2) */
    float gauss_gset;
    float poi_oldm, poi_g, poi_sq, poi_alxm; /* poidev's per-mean cache (A3.3); poi_oldm starts at -1.0f */
} db_rng;

/* The state of a freshly started reference process. */
void db_rng_init(db_rng *r);

/* A1: one uniform deviate in (0, 1), updating *idum. idum <= 0 (or the first use of r) re-seeds the table. */
float db_ran1(db_rng *r, long *idum);

/* A2: one random rotation matrix U (row-major) of at most `mosaicity` radians (a float, as in the reference).
 * If axis_out is non-NULL it receives the unit axis (v1, v2, v3); if angle_factor_out is non-NULL it receives
 * p = powf(q, 1/3) such that the angle is rot = (double)(mosaicity * p), rounded in float. */
void db_mosaic_rotation_umat(db_rng *r, float mosaicity, double U[9], long *seed, double axis_out[3],
                             float *angle_factor_out);

/* A3.1: ln(Gamma(xx)), Lanczos form, float in and out. */
float db_gammln(float xx);

/* A3.2: one standard normal deviate (polar Box-Muller with one cached value). */
float db_gaussdev(db_rng *r, long *idum);

/* A3.3: one Poisson deviate of mean xm (Gaussian approximation above 1e6). */
float db_poidev(db_rng *r, float xm, long *idum);

#ifdef __cplusplus
}
#endif
#endif
