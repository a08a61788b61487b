/* sim.h: one simulation: the configuration's plan, the loaded inputs (structure factors, matrix, sources),
 * the random state, the mosaic matrices, and what a run leaves behind (geometry report, statistics). struct db_sim
 * is for the files that own it (sim.c, run.c, values.c, structure_factors.c, geometry_n0.c and the table builders
 * and engines); gradcheck, the benches and the tests read a simulation through run_clients.h (test_structure
 * checks who includes which). */
#ifndef DB_SIM_H
#define DB_SIM_H

#include "backend.h"
#include "config.h"
#include "hkl.h"
#include "params.h"
#include "rng.h"
#include "run_clients.h"

#include <stdint.h>

/* One rendering pass: which tangent direction carries which parameter (-1: not differentiated). */
typedef struct db_pass {
    int dir_of[DB_P_COUNT];
    int ndirs;
} db_pass;

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
    double mat_cell[6];                   /* -mat: the cell the matrix describes (A, rad), at the current lambda */
    double Na, Nb, Nc;
    int oversample, recommended_oversample, interpolate;
} db_crystal_report;

/* A table block built for the current values, kept until they change (src/run.c). */
typedef struct db_block_entry {
    void *block;
    int (*build)(struct db_sim *, const struct db_pass *, void **, db_error *);
    db_pass pass;
    int has_pass, dh;
    unsigned long used;                   /* clock of the last use, for eviction */
} db_block_entry;
#define DB_BLOCK_CACHE 4

struct db_sim {
    db_config *cfg;                       /* private copy of the caller's configuration (owned) */
    db_plan plan;
    db_hkl_table hkl;
    int have_hkl;
    unsigned long F_version;              /* counts in-place changes of hkl.F (a GPU renderer's copy goes stale) */
    /* the hkl list's grid entries, sorted, with their list positions: grid entry -> column of the F-Jacobian
     * (src/structure_factors.c; built on first use, NULL before) */
    size_t *sf_sorted_at;
    long *sf_sorted_col;
    int32_t *sf_col_of_grid;              /* the same as a direct map, when the grid is small enough (or NULL) */
    /* the F-Jacobian's working buffers, kept from run to run (a refinement asks for it every iteration: fresh
     * megabytes each time were page faults, which two threads pay for dearly) */
    db_fjac_buf *sf_bufs;                 /* [sf_nbufs], one per span */
    long sf_nbufs, sf_npix;
    size_t *sf_off;                       /* [sf_npix] */
    unsigned *sf_len;
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

    /* selected pixels (src/run.c): boxes, or the configuration's -roi and -mask when nboxes == 0 */
    int *boxes, nboxes;
    db_span *spans;
    long nspans, count;
    int selection_ready;
    db_block_entry blocks[DB_BLOCK_CACHE];
    unsigned long block_clock, block_serial;

    /* where it renders (src/device.h): DB_DEVICE_CPU, _CUDA or _EMULATE, resolved from -device at creation */
    int device;
    void *device_ctx;                     /* the CUDA renderer's memory on the device, or NULL */
    char device_name[160];

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
    /* db_sim_get_params returns a value exactly as db_sim_set_params was given it (a refinement loop compares
     * them) while the value computed from the configuration is still the one computed right after that set:
     * v / divisor * divisor need not give v back */
    double param_given[DB_P_COUNT], param_computed[DB_P_COUNT];
    unsigned char param_has_given[DB_P_COUNT];

    /* decision replay (gradcheck) */
    db_decisions captured;                /* filled by every run */
    db_decisions forced;                  /* applied when .active */
    struct db_decision_log *logs;         /* [selected count] or NULL; mode set per log */
    long nlogs;
};

/* The misset angles in force (rad), the one rule: the draw of -misset random, the given angles, or 0 without
 * -misset (a rotation by zero angles changes no bit, and a derivative at 0 is still wanted). */
const double *db_misset_in_force(const db_sim *sim);

/* ---- structure factors as values (src/structure_factors.c) ---- */
/* The grid entry (index into hkl.F) of list entry j. */
size_t db_sf_grid_at(const db_sim *sim, long j);
/* The CSR F-Jacobian of the selected pixels from a run's span buffers (backend.h db_fjac_buf): rows in selection
 * order, columns the hkl list, entries at grid entries no list entry names (left out of the file) dropped. */
int db_sf_assemble(db_sim *sim, const db_fjac_buf *bufs, const size_t *off, const unsigned *len, db_csr *out,
                   db_error *err);
void db_sf_free(db_sim *sim);
/* The working buffers for the current selection (emptied, kept from the last run when large enough). */
int db_sf_workspace(db_sim *sim, db_error *err);

static inline const double *db_sim_F(const db_sim *sim) { return sim->have_hkl ? sim->hkl.F : (const double *)0; }

/* ---- the run layer (src/run.c) ---- */
/* Resolves and sets the device (src/device.h); DB_ERR_DEVICE for cuda without a usable GPU. */
int db_sim_use_device(db_sim *sim, int device, db_error *err);
/* Drops the table blocks: the values they were built from have changed. */
void db_sim_invalidate(db_sim *sim);
/* The block of `build`'s direction count for the current values and this pass (cached). */
int db_sim_block(db_sim *sim, int (*build)(db_sim *, const db_pass *, void **, db_error *), const db_pass *pass,
                 const void **block, db_error *err);
int db_sim_selection(db_sim *sim, db_error *err); /* makes spans/count current */
/* -boxes FILE: one 'xmin xmax ymin ymax' line per box, '#' starts a comment. */
int db_sim_select_boxes_file(db_sim *sim, const char *path, db_error *err);
void db_sim_free_selection(db_sim *sim);
void db_sim_free_blocks(db_sim *sim);

/* ---- memory before work (run_clients.h has the limit and the check) ---- */
/* The same for a table block (ndirs tangent directions; 0: the primal tables), naming the counts behind it. */
int db_check_table_memory(const db_sim *sim, int ndirs, double bytes, double nsources, db_error *err);
/* The bytes a table builder (src/tables_impl.h) allocates at its peak for nsources sources and the plan's phi
 * steps and mosaic domains: its working arrays, the domain matrices, and the block they are copied into. */
double db_tables_bytes_n0(const db_sim *sim, double nsources);
double db_tables_bytes_n1(const db_sim *sim, double nsources);
double db_tables_bytes_n4(const db_sim *sim, double nsources);
double db_tables_bytes_n12(const db_sim *sim, double nsources);
double db_tables_bytes_n28(const db_sim *sim, double nsources);
/* The source count the tables will hold: the -sourcefile's, or the divergence and dispersion grid's (before the
 * round-divergence cut, an upper bound). */
double db_sim_source_count(const db_sim *sim);

#endif
