/* sim.h: one simulation: the configuration's plan, the loaded inputs (structure factors, matrix, sources),
 * the random state, the mosaic matrices, and what a run leaves behind (geometry report, statistics). */
#ifndef DB_SIM_H
#define DB_SIM_H

#include "config.h"
#include "hkl.h"
#include "rng.h"

typedef struct db_geometry_report {
    double distance, close_distance;      /* m, derived (spec §3.5 step 5) */
    double Fclose, Sclose, Fbeam, Sbeam;  /* m */
    double ORGX, ORGY;
    double dials_origin[3];               /* mm */
    double pix0[3], fdet[3], sdet[3], odet[3], beam[3];
} db_geometry_report;

typedef struct db_crystal_report {
    double cell[6];                       /* a b c (A) alpha beta gamma (deg), recomputed from the real vectors */
    double a[3], b[3], c[3];              /* real vectors, Angstrom */
    double volume;                        /* A^3 */
    double Na, Nb, Nc;
    int oversample, recommended_oversample, interpolate;
} db_crystal_report;

struct db_sim {
    db_config *cfg;                       /* private copy of the caller's configuration (owned) */
    db_plan plan;
    db_hkl_table hkl;
    int have_hkl;
    double mat[9];                        /* -mat numbers, row by row */
    int nsources;
    double *src_pos;                      /* [3*nsources] from -sourcefile (before unitizing) */
    double *src_lambda_file;              /* [nsources] from -sourcefile (m) */
    db_rng rng;
    long mosaic_seed, misset_seed, noise_seed;
    double misset_random_angles[3];       /* rad, when -misset random */
    double *umats;                        /* [9*domains] */
    double *mosaic_axes;                  /* [3*domains] */
    float *mosaic_angle_factors;          /* [domains] */

    /* filled by a run */
    int ran;
    db_geometry_report geo;
    db_crystal_report xtal;
    int steps;
    double omega_sum;
    double max_I, max_I_x, max_I_y, mean, rms, rmsd;
    long rendered;
    int interp_switched_off;
    db_progress_fn progress;
    void *progress_user;
};

/* Engine entry point for the primal (AD_N = 0) build: computes the float image, the double image (may be
 * NULL) and fills the run fields of sim. */
int db_engine_run_n0(db_sim *sim, float *image, double *image64, db_error *err);

#endif
