/* gradcheck.h: finite-difference verification of dualbragg's derivative images on a small region.
 *
 * For each parameter, the derivative images from the dual numbers are compared with central differences of
 * the double pixel value (step h = cbrt(DBL_EPSILON) max(1, |x|) in the command line's unit; a 4-point stencil
 * with `precise`). The finite-difference runs replay every discrete decision of the base run (carry mapping,
 * exceptional sample, nearest Miller indices, tricubic grid, -dmin cuts, zero-shape skips, the tophat test,
 * oversampling, interpolation, step counts), so they differentiate the same model. Mosaic angles are
 * evaluated in double precision in all gradcheck runs (the reference rounds them to float, which no finite
 * difference can resolve), and the SQUARE lattice factor in its dh form sin(N pi dh)/sin(pi dh), dh = h - h0:
 * the same function up to sign at integer N, whose value is free of the rounding noise of sin(N pi h) at large
 * h that a finite difference would otherwise amplify. (The derivative images of ordinary runs take their
 * lattice slopes from this same form; test_gradcheck checks that both forms give the same tangents.)
 * A pixel passes when |ad - fd| <= atol + rtol |fd|; atol = max(atol_factor * max |fd| over the region, the
 * rounding-noise floor DB_GC_NOISE_ULPS * DBL_EPSILON * max |pixel| / h), unless atol_abs >= 0 is given. The
 * floor is what a difference quotient of values carrying a few ulps of rounding can resolve; it stays far
 * below real derivative errors (a planted 2e-5 relative error fails).
 *
 * Structure factors (db_gradcheck_F): the column d pixel / d F(h k l) of db_sim_run_selected_F against central
 * differences of F (set in place by db_sim_set_structure_factors_hkl; step h = cbrt(DBL_EPSILON) max(1, |F|)),
 * with the same region, replay and pass rule. F must stay >= 0: where F < 2h both are taken at F = 2h. */
#ifndef DB_GRADCHECK_H
#define DB_GRADCHECK_H

#define DB_GC_NOISE_ULPS 64.0

#include "dualbragg.h"

typedef struct db_gc_options {
    int roi[4];          /* xmin xmax ymin ymax (inclusive); roi[0] < 0: the configuration's -boxes, or else 16x16
                          * around the brightest pixel */
    double rtol;         /* default 1e-6 */
    double atol_factor;  /* default 1e-8 (times the largest |fd| of that parameter) */
    double atol_abs;     /* < 0: use atol_factor */
    int precise;         /* 4-point stencil */
    int chunk;           /* directions per pass (0 = default) */
    const char *fdump_path; /* structure-factor cache to read when the configuration has no -hkl (or NULL) */
} db_gc_options;

/* python/dualbragg/_capi.py mirrors db_gc_options, db_gc_row and db_gc_report field by field */
typedef struct db_gc_row {
    int param;           /* the parameter (db_param_name), or -1 for a structure factor */
    long pixels;
    double max_abs_err, max_rel_err; /* over checked pixels */
    int worst_f, worst_s;
    double worst_ad, worst_fd;
    double atol, noise_floor, max_abs_fd, step;
    int pass;
    int structure_factor; /* 1: the row checks F(hkl[0] hkl[1] hkl[2]) */
    int hkl[3];
    double F, F_at;      /* structure factor rows: the table's F, and the F it was checked at (2 step when F is below) */
} db_gc_row;

#define DB_GC_MAX_ROWS 32

typedef struct db_gc_report {
    int roi[4];          /* the check region, or the bounding box of the -boxes */
    int boxes;           /* 1 for a region, else the number of -boxes */
    int nrows;
    db_gc_row rows[DB_GC_MAX_ROWS];
    int all_pass;
} db_gc_report;

void db_gc_default_options(db_gc_options *o);
int db_gradcheck(const db_config *cfg, const int *params, int nparams, const db_gc_options *o, db_gc_report *rep,
                 db_error *err);
/* Structure factors: hkl[3*i..3*i+2] (1 to DB_GC_MAX_ROWS reflections of the table's list; one that is not listed is
 * an error naming it). Needs a structure-factor table (-hkl or an Fdump cache); the runs are the CPU's. */
int db_gradcheck_F(const db_config *cfg, const int *hkl, int nhkl, const db_gc_options *o, db_gc_report *rep,
                   db_error *err);
/* Both in one report from one base run: the parameters' rows, then the structure factors'. nparams, nhkl >= 0,
 * 1 to DB_GC_MAX_ROWS rows in all; params (hkl) may be NULL when nparams (nhkl) is 0. */
int db_gradcheck_with_F(const db_config *cfg, const int *params, int nparams, const int *hkl, int nhkl,
                        const db_gc_options *o, db_gc_report *rep, db_error *err);
/* One line per parameter or structure factor ("F(1 2 3)"), as the command-line tool prints it. */
void db_gc_print(const db_gc_report *rep, void *file);
int db_gc_write_json(const char *path, const db_gc_report *rep, const db_gc_options *o, db_error *err);

#endif
