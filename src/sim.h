/* sim.h: one simulation: the configuration's plan, the loaded inputs (structure factors, matrix, sources),
 * the random state, the mosaic matrices, and what a run leaves behind (geometry report, statistics). */
#ifndef DB_SIM_H
#define DB_SIM_H

#include "config.h"
#include "hkl.h"
#include "params.h"
#include "rng.h"

/* One rendering pass: which tangent direction carries which parameter (-1: not differentiated). */
typedef struct db_pass {
    int dir_of[DB_P_COUNT];
    int ndirs;
} db_pass;

/* The discrete decisions of a run that a finite-difference point must replay (design.md): captured from a base
 * run, forced on the runs at perturbed parameters. Per-pixel decisions live in the decision logs. */
typedef struct db_decisions {
    int active;
    int oversample, interpolate;
    int n_from_size[3];
    double N[3];                          /* Na, Nb, Nc when they came from a crystal size */
    int nphi;
    int *slot_normal, *slot_first;        /* carry mapping [nphi] */
    long exc_pixel;
    int exc_sample;                       /* the carryover's exceptional sample */
    long interp_trip;                     /* first pixel where interpolation switched off, -1 none */
    int force_phistep;
    double phistep;                       /* rad, when forced (osc finite differences) */
} db_decisions;

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
    int steps, run_sources;
    double omega_sum;
    double max_I, max_I_x, max_I_y, mean, rms, rmsd;
    long rendered;
    int interp_switched_off;
    db_progress_fn progress;
    void *progress_user;

    /* derivative options */
    int chunk;                            /* directions per pass */
    int lattice_dh_form;                  /* this run: SQUARE lattice factor as sin(N pi dh)/sin(pi dh) */
    int force_dh_form;                    /* every run in the dh form (gradcheck) */
    int mosaic_double;                    /* mosaic angles in double precision (gradcheck), not the float of the reference */
    double mat_cell_delta[6];             /* -mat: cell change (A, deg) applied as A = U B(cell + delta) (gradcheck) */

    /* decision replay (gradcheck) */
    db_decisions captured;                /* filled by every run */
    db_decisions forced;                  /* applied when .active */
    struct db_decision_log *logs;         /* [npix] or NULL; mode set per log */
};

void db_decisions_free(db_decisions *d);
int db_decisions_copy(db_decisions *dst, const db_decisions *src);

/* Engine entry points, one per compiled direction count (AD_N = 0, 1, 4, 12): compute the float image, the
 * double image (may be NULL), tangents[k*npix + pixel] for the pass's directions k < pass->ndirs (may be
 * NULL), and fill the run fields of sim. pass may be NULL (no derivatives). */
int db_engine_run_n0(db_sim *sim, const db_pass *pass, float *image, double *image64, double *tangents, db_error *err);
int db_engine_run_n1(db_sim *sim, const db_pass *pass, float *image, double *image64, double *tangents, db_error *err);
int db_engine_run_n4(db_sim *sim, const db_pass *pass, float *image, double *image64, double *tangents, db_error *err);
int db_engine_run_n12(db_sim *sim, const db_pass *pass, float *image, double *image64, double *tangents, db_error *err);
int db_engine_run_n4_avx2(db_sim *sim, const db_pass *pass, float *image, double *image64, double *tangents, db_error *err);
int db_engine_run_n12_avx2(db_sim *sim, const db_pass *pass, float *image, double *image64, double *tangents, db_error *err);
int db_engine_setup_n0(db_sim *sim, db_error *err);
int db_engine_printout_n0(db_sim *sim, int f, int s, const float *image, void *file, db_error *err);
int db_engine_trace_n0(db_sim *sim, const db_pass *pass, int f, int s, void *file, db_error *err);
int db_engine_trace_n12(db_sim *sim, const db_pass *pass, int f, int s, void *file, db_error *err);

#endif
