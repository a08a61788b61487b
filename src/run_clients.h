/* run_clients.h: the run layer's face for its clients (gradcheck, refinement, the benches, the tests): what they
 * may read of a simulation and the replay and value controls they drive, without struct db_sim (sim.h, for the
 * files that own it). No client writes a db_sim or db_config field. */
#ifndef DB_RUN_CLIENTS_H
#define DB_RUN_CLIENTS_H

#include "dualbragg.h"
#include "backend.h"
#include "config.h"

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
    int force_phistep;                    /* osc finite differences: the step moves, the count stays, even */
    double phistep;                       /* rad; through osc = 0, where no -osc can say it */
} db_decisions;

/* (src/run.c, the run layer, which captures and replays them) */
void db_decisions_free(db_decisions *d);
int db_decisions_copy(db_decisions *dst, const db_decisions *src);

/* ---- what a client reads ---- */
/* 1 when the renderer this simulation renders on does the feature (device.h: enum db_device_feature), asked of
 * the renderer registry (src/device.c): a client refuses what the renderer would, before any work. */
int db_sim_device_supports(const db_sim *sim, int feature);
/* The plan's region of interest (xmin xmax ymin ymax, inclusive). */
void db_sim_roi(const db_sim *sim, int roi[4]);
/* -boxes: their count in *n and their corners (xmin xmax ymin ymax each), or NULL with *n = 0. */
const int *db_sim_boxes(const db_sim *sim, int *n);
/* 1 with the structure-factor table's index ranges (h_min h_max k_min k_max l_min l_max), or 0 without a table. */
int db_sim_hkl_ranges(const db_sim *sim, int ranges[6]);
/* F of the structure-factor list's entry j (0 <= j < db_sim_structure_factor_count; src/structure_factors.c) */
double db_sim_structure_factor_at(const db_sim *sim, long j);
/* 1 when pixel (f, s) is selected (the last run rendered it), its position in *pos. */
int db_sim_selected_pos(const db_sim *sim, int f, int s, long *pos);
/* The GPU context (kernels/cuda_context.h), NULL on the CPU: bench_gpu reads its kernel time. */
void *db_sim_device_context(const db_sim *sim);

/* ---- memory before work (src/run.c; issue 18) ----
 * Every table whose size the command line sets (mosaic domains, phi steps, sources, the per-run blocks) is
 * estimated before it is allocated and refused, with the figure and the flags, when it exceeds the limit: half
 * the machine's physical memory (sysconf; src/run.c DB_MEMORY_SHARE says why), or DB_MEMORY_LIMIT_ENV in the
 * environment (GiB, a positive number, at most the physical memory; anything else is ignored), for a machine
 * shared with other work, a dedicated one, and the tests. */
#define DB_MEMORY_LIMIT_ENV "DUALBRAGG_MAX_MEMORY_GIB"
double db_memory_limit(int *from_env); /* bytes; *from_env (may be NULL) = 1 when the environment set it */
/* DB_OK when bytes fit, else DB_ERR_ARGUMENT: "<what> would need X GiB of memory (<counts>), more than ..." */
int db_check_memory(double bytes, const char *what, const char *counts, db_error *err);

/* ---- for gradcheck and refinement ---- */
/* Evaluation choices of finite-difference checks: mosaic angles in double precision, SQUARE lattice factor in
 * its dh form in every run (README "Gradcheck"). */
void db_sim_set_fd_mode(db_sim *sim, int mosaic_double, int dh_form);
/* Replays the given run-level decisions in every later run (NULL: stop replaying). */
int db_sim_force_decisions(db_sim *sim, const db_decisions *d, db_error *err);
const db_decisions *db_sim_captured(const db_sim *sim);
/* While decisions are forced: the phi step to use (rad), or the plan's when on == 0. */
void db_sim_force_phistep(db_sim *sim, int on, double phistep);
/* Per-selected-pixel decision logs, recorded or replayed by the next runs (NULL: none). */
int db_sim_set_decision_logs(db_sim *sim, struct db_decision_log *logs, long count, db_error *err);
/* The pixel index (s*fpixels + f) of each selected pixel, in order: out[count]. */
void db_sim_selected_pixels(const db_sim *sim, long *out);
const unsigned short *db_sim_mask(const db_sim *sim);
/* The parameter values as a whole, to put back exactly what set_params moved. */
typedef struct db_values {
    db_config cfg;                        /* shallow: the same strings and mask as the simulation's */
    db_plan plan;
    double mat_cell_delta[6];
} db_values;
void db_sim_values_save(const db_sim *sim, db_values *v);
int db_sim_values_restore(db_sim *sim, const db_values *v, db_error *err);

#endif
