/* dualbragg: nanoBragg-compatible diffraction simulation with forward-mode derivatives.
 * The one public header. The library never exits and never prints unless asked; every failure is a
 * status code (DB_OK == 0 on success) plus a message in a caller-provided db_error. */
#ifndef DUALBRAGG_H
#define DUALBRAGG_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum db_status {
    DB_OK = 0,
    DB_ERR_ARGUMENT = 1, /* bad flag, missing or non-numeric value */
    DB_ERR_IO = 2,       /* a file could not be read or written */
    DB_ERR_FORMAT = 3,   /* a file's content is malformed */
    DB_ERR_GEOMETRY = 4, /* impossible geometry or sizes */
    DB_ERR_NOMEM = 5,
    DB_ERR_INTERNAL = 6,
    DB_ERR_DEVICE = 7    /* -device cuda without a usable GPU, or a GPU call failed */
};

typedef struct db_config db_config; /* a simulation configuration (nanoBragg-style) */

typedef struct db_error {
    int code;
    char message[1024];
} db_error;

typedef struct db_sim db_sim;       /* one simulation built from a configuration */

/* Arguments. Every function checks its pointers and sizes and never crashes on NULL. A pointer is required unless
 * its comment says "may be NULL"; a function with a db_error refuses a missing one with DB_ERR_ARGUMENT and a
 * message naming it, and err itself may always be NULL (the status alone then). A function without an error
 * channel returns the safe value its comment gives ("NULL: ..."). Sizes too: counts >= 0, and an output array
 * must hold what its comment says. */

/* Progress callback: fraction done in [0, 1]; called from the rendering thread, never required. */
typedef void (*db_progress_fn)(void *user, double fraction);

/* ---- configuration ---- */
db_config *db_config_create(void);  /* the reference's defaults; NULL when out of memory */
void db_config_destroy(db_config *cfg); /* cfg may be NULL (nothing is done) */
/* Applies nanoBragg-style arguments (argv[0] is a flag, not the program name). Flags are matched exactly
 * (README lists every spelling); unknown flags, missing or non-numeric values are errors. -img and -mask
 * headers are read here, before the other flags, as the reference does. cfg is required, argc >= 0, and argv and
 * each of its argc strings are required (argv may be NULL when argc is 0). All or nothing: on an error cfg is
 * unchanged. Values the arithmetic cannot hold are refused with their flag and range (README "Deviations from the
 * reference"). */
int db_config_parse(db_config *cfg, int argc, const char *const *argv, db_error *err);
/* Field by field: each setter applies the same conversions as the flag named in its comment (so a
 * configuration built either way renders the same image). Units are the command line's. cfg is required, and so
 * are the paths; name may be NULL (refused as an unknown convention). */
int db_config_set_cell(db_config *cfg, double a, double b, double c, double alpha, double beta, double gamma,
                       db_error *err);                                                     /* -cell */
int db_config_set_matrix_file(db_config *cfg, const char *path, db_error *err);           /* -mat */
int db_config_set_misset(db_config *cfg, double rx_deg, double ry_deg, double rz_deg, db_error *err); /* -misset */
int db_config_set_cells(db_config *cfg, double Na, double Nb, double Nc, db_error *err);  /* -Na -Nb -Nc */
int db_config_set_hkl_file(db_config *cfg, const char *path, db_error *err);              /* -hkl */
int db_config_set_default_F(db_config *cfg, double F, db_error *err);                     /* -default_F */
int db_config_set_wavelength(db_config *cfg, double angstrom, db_error *err);             /* -lambda */
int db_config_set_detector(db_config *cfg, int fpixels, int spixels, double pixel_mm, double distance_mm,
                           db_error *err);                        /* -detpixels_f -detpixels_s -pixel -distance */
int db_config_set_beam_center(db_config *cfg, double xbeam_mm, double ybeam_mm, db_error *err); /* -Xbeam -Ybeam */
int db_config_set_convention(db_config *cfg, const char *name, db_error *err); /* mosflm denzo adxv xds dials */
int db_config_set_phi(db_config *cfg, double phi0_deg, double osc_deg, int steps, db_error *err); /* -phi -osc -phisteps */
int db_config_set_mosaic(db_config *cfg, double spread_deg, int domains, long seed, db_error *err);
int db_config_set_oversample(db_config *cfg, int n, db_error *err);                      /* -oversample */
int db_config_set_roi(db_config *cfg, int xmin, int xmax, int ymin, int ymax, db_error *err); /* -roi */
int db_config_set_noise_seed(db_config *cfg, long seed, db_error *err);                  /* -seed */
int db_config_set_phi_carryover(db_config *cfg, int on, db_error *err);                  /* -phi_carryover */

/* Warnings collected while parsing (flags accepted without effect), one per line; "" when none (NULL cfg: ""). */
const char *db_config_warnings(const db_config *cfg);

/* Output files the command line asked for (NULL when not requested), and a few switches. A NULL cfg answers
 * NULL, or 0 (db_config_phi_carryover: 1, the default). */
typedef enum { DB_OUT_FLOAT, DB_OUT_INT, DB_OUT_PGM, DB_OUT_NOISE, DB_OUT_FLOAT64, DB_OUT_FDUMP, DB_OUT_PNG } db_output_kind;
const char *db_config_output_path(const db_config *cfg, db_output_kind kind);
int db_config_has_hkl(const db_config *cfg);      /* -hkl given */
int db_config_phi_carryover(const db_config *cfg); /* 1: the reference's phi carryover (-phi_carryover on, the default) */
int db_config_progress(const db_config *cfg);     /* progress meter wanted (-noprogress turns it off) */
const char *db_config_grad_list(const db_config *cfg); /* -grad LIST, or NULL */
int db_config_grad_chunk(const db_config *cfg);   /* -grad_chunk, 0 = default */
int db_config_grad_png(const db_config *cfg);     /* -gradpng: a PNG beside each derivative image */
const char *db_config_grad_F_file(const db_config *cfg); /* -grad_F FILE (the structure-factor Jacobian), or NULL */
/* The derivative images' prefix: -gradprefix, or the float file name without extension plus ".d", into buf[size].
 * 0, or -1 with buf "" (when buf has room) for a NULL cfg or buf, size 0, or a prefix that does not fit: it is
 * never handed back cut short. */
int db_config_grad_prefix(const db_config *cfg, char *buf, size_t size);
/* 1 when -trace_pixel / -printout(_pixel) was given, the pixel in *fpixel, *spixel (-1 -1: none, or every pixel for
 * -printout); fpixel and spixel may be NULL. NULL cfg: 0. */
int db_config_trace_pixel(const db_config *cfg, int *fpixel, int *spixel);
int db_config_printout(const db_config *cfg, int *fpixel, int *spixel);

/* ---- simulation ---- */
/* Builds a simulation: reads -hkl / -mat / -sourcefile, draws the mosaic domains. fdump_path, when not NULL
 * and the configuration has no -hkl, is a structure-factor cache (Fdump.bin format) to read instead. The
 * library itself never looks for files in the current folder. out and cfg are required (*out is NULL on any
 * error). Memory before work: the float image, the mosaic domains and the tables a run builds (and, at each run,
 * the tables of its derivative pass) are estimated before they are allocated, and refused with the figure and the
 * flags behind it (DB_ERR_ARGUMENT) above half the machine's physical memory, or the GiB that the environment
 * variable DUALBRAGG_MAX_MEMORY_GIB sets (README "Deviations from the reference"). */
int db_sim_create(db_sim **out, const db_config *cfg, const char *fdump_path, db_error *err);
void db_sim_destroy(db_sim *sim);                                /* sim may be NULL */
void db_sim_size(const db_sim *sim, int *fpixels, int *spixels); /* either output may be NULL; NULL sim: 0 x 0 */
void db_sim_set_progress(db_sim *sim, db_progress_fn fn, void *user); /* fn may be NULL (none); NULL sim: nothing */
/* Where the next runs render: "cpu", "cuda" (an NVIDIA GPU; DB_ERR_DEVICE without a usable one), "auto" (cuda when
 * usable, else cpu), or "emulate" (the GPU renderer's thread function run on the CPU: for tests). -device on the
 * command line does the same at creation. */
int db_sim_set_device(db_sim *sim, const char *device, db_error *err);
/* The device in use, as "cpu", "emulate" or "cuda (GPU name)"; NULL sim: "". */
const char *db_sim_device(const db_sim *sim);
/* Renders the float image (fpixels*spixels, index s*fpixels+f) into caller-owned buffers; image64 (may be
 * NULL) receives the double value before float rounding. Pixels outside the ROI or masked are 0. sim and image
 * are required. */
int db_sim_run(db_sim *sim, float *image, double *image64, db_error *err);

/* The derived geometry (spec §3.5), available as soon as the simulation exists. */
typedef struct db_geometry {
    int fpixels, spixels, oversample, sources, mosaic_domains, phisteps, steps;
    double pixel_mm, distance_mm, close_distance_mm;
    double Fbeam_mm, Sbeam_mm, Fclose_mm, Sclose_mm, ORGX, ORGY;
    double pix0_m[3], fdet[3], sdet[3], odet[3], beam[3];
    double cell[6];         /* A, deg: as recomputed from the real-space vectors */
    double Na, Nb, Nc;
    int interpolate;
} db_geometry;
int db_sim_geometry(const db_sim *sim, db_geometry *out); /* DB_ERR_ARGUMENT (no message) for a NULL argument */

/* What the last run computed: the geometry, and the statistics over rendered pixels as the reference prints
 * them (appendix A4.2). */
typedef struct db_run_summary {
    db_geometry geometry;
    double max_I, max_I_x, max_I_y, mean, rms, rmsd, solid_angle;
    double volume;                  /* A^3 */
    int interpolation_switched_off; /* an out-of-range sample switched tricubic interpolation off (spec §3.12) */
    long rendered_pixels;
} db_run_summary;
int db_sim_summary(const db_sim *sim, db_run_summary *out); /* DB_ERR_ARGUMENT for a NULL argument or no run yet */

/* ---- derivatives ----
 * Parameters, by name (unit of the command line): a b c (A), alpha beta gamma (deg), misset_x misset_y
 * misset_z (deg), phi0 (deg), osc (deg), distance (mm), xbeam ybeam (mm), orgx orgy (pixel), lambda (A),
 * na nb nc (cells), mosaic (deg), fluence (photons/m^2), detector_rotx detector_roty detector_rotz twotheta
 * (deg). See README "Derivatives". */
int db_param_count(void);
const char *db_param_name(int param);            /* NULL past the end */
const char *db_param_unit(int param);
int db_param_from_name(const char *name);        /* -1 when unknown or NULL */
/* Parses "a,b,phi0" or "all" into params (up to db_param_count()); returns the count or -1 with err set. */
int db_param_parse_list(const char *list, int *params, db_error *err);
/* Directions per pass (1..DB_MAX_CHUNK, default DB_MAX_CHUNK: every parameter in one pass on the CPU, 12 on a
 * GPU); results do not depend on it. */
#define DB_MAX_CHUNK 28
int db_sim_set_chunk(db_sim *sim, int directions_per_pass); /* DB_ERR_ARGUMENT: NULL sim, or out of range */
/* Like db_sim_run, plus grads[k*npix + pixel] = d pixel / d params[k] (component-major: column-major
 * pixels x parameters). Derivatives are of the double pixel value (image64). params and grads may be NULL when
 * nparams is 0. */
int db_sim_run_grad(db_sim *sim, const int *params, int nparams, float *image, double *image64, double *grads,
                    db_error *err);

/* ---- iterating: new values in place, chosen pixels ----
 * Values are in the command line's units (the parameter list above). Setting them keeps everything loaded or
 * drawn at creation: the structure factors, the -mat matrix (its U is kept and the cell parameters move B, as
 * their derivatives do), the sources, the mosaic domains' axes and draws, a -misset random's drawn angles, and
 * every discrete choice of the configuration (pivot, convention, step and domain counts). The next run equals
 * a fresh db_sim_create from a command line carrying the new values (README "Iterating"). A value that makes
 * the geometry impossible is refused with a message naming the parameter, and no value changes. */
/* params and values may be NULL when n is 0. */
int db_sim_set_params(db_sim *sim, const int *params, const double *values, int n, db_error *err);
int db_sim_get_params(const db_sim *sim, const int *params, double *values, int n, db_error *err);
/* Selects the pixels later runs evaluate: boxes[4*i..4*i+3] = xmin xmax ymin ymax (inclusive, fast and slow
 * pixel indices), overlaps counted once, the -mask still applied; they replace the configuration's -roi.
 * nboxes 0 returns to the -roi and -mask (boxes may then be NULL). */
int db_sim_select_boxes(db_sim *sim, const int *boxes, int nboxes, db_error *err);
long db_sim_selected_count(const db_sim *sim); /* NULL sim: 0 */
/* Evaluates the selected pixels only: values[i] (the double pixel value) and jac[k*count + i] = d values[i] /
 * d params[k] (column-major, leading dimension count) for the selected pixels in row-major order. Equal bit for
 * bit to the same pixels of db_sim_run_grad's images. params and jac may be NULL when nparams is 0. The carryover's
 * exceptional sample is in the first selected pixel whose phi loop runs, as with -roi. */
int db_sim_run_selected(db_sim *sim, const int *params, int nparams, double *values, double *jac, db_error *err);

/* ---- structure factors as values (README "Structure factors") ----
 * The table's reflections, in its order: an -hkl file's lines in file order (a repeated line once), or every entry
 * of an Fdump cache's index ranges (h, k, then l fastest). Reflections inside the ranges that the file leaves out
 * hold -default_F and are not listed; neither is anything outside the ranges. Setting F changes the values in
 * place: the next run equals a fresh simulation from an hkl file holding those values. F must be finite and
 * >= 0; a refused call changes nothing. */
long db_sim_structure_factor_count(const db_sim *sim); /* 0 without a table (only -default_F) or a NULL sim */
/* hkl[3*i..3*i+2] and F[i] of list entries 0..n-1, n = min(capacity, count); either buffer may be NULL. Returns n,
 * or -1 with err set. */
long db_sim_get_structure_factors(const db_sim *sim, int *hkl, double *F, long capacity, db_error *err);
/* Every listed F at once: n must be the count. */
int db_sim_set_structure_factors(db_sim *sim, const double *F, long n, db_error *err);
/* The reflections named: hkl[3*i..3*i+2] gets F[i]; an hkl the list does not hold is refused by name. */
int db_sim_set_structure_factors_hkl(db_sim *sim, const int *hkl, const double *F, long n, db_error *err);
/* The list position of h k l, or -1 when it is not listed. */
long db_sim_structure_factor_index(const db_sim *sim, int h, int k, int l);

/* A sparse matrix in compressed sparse row form: row i holds col[row_ptr[i] .. row_ptr[i+1]-1] (ascending) and
 * their values. Filled by the library, which reuses the arrays of an earlier result (growing them when needed):
 * zero it ({0}) before its first use; db_csr_free releases it (and leaves it zeroed, ready for reuse). */
typedef struct db_csr {
    long rows, cols, nnz;
    long *row_ptr; /* [rows + 1] */
    long *col;     /* [nnz] */
    double *val;   /* [nnz] */
    long row_cap, nnz_cap; /* the arrays' allocated lengths (row_ptr: row_cap + 1) */
} db_csr;
void db_csr_free(db_csr *m); /* m may be NULL */
/* db_sim_run_selected, plus fjac: d values[i] / d F_j for every listed structure factor j (rows: the selected
 * pixels in order; columns: the list above), from the same pass, exact through sub-pixels, layers, sources, phi
 * steps (carryover included), mosaic domains, the nearest-hkl lookup and tricubic interpolation (each sample's 64
 * neighbours, with their weights). Samples whose hkl is not listed (-default_F) contribute to no column. values
 * and jac are bit for bit those of db_sim_run_selected. fjac (required, zeroed or from an earlier call: a loop
 * allocates once) is overwritten, its arrays reused; free it with db_csr_free.
 * CPU only: a simulation on -device cuda or emulate refuses it (DB_ERR_DEVICE). */
int db_sim_run_selected_F(db_sim *sim, const int *params, int nparams, double *values, double *jac, db_csr *fjac,
                          db_error *err);

/* The work of the next run before it starts: inner iterations (selected pixels x detector layers x sub-pixels x
 * sources x phi steps x mosaic domains) for the primal image, and its time at the given rate (iterations per
 * second; 0 for a built-in guess of this machine class). Runs above DB_MAX_WORK iterations are refused. seconds may
 * be NULL. */
#define DB_MAX_WORK 1e15
int db_sim_work_estimate(db_sim *sim, double *iterations, double rate, double *seconds, db_error *err);

/* One line per inner iteration of one pixel of the last run, then the pixel's corrections and value, with
 * the tangents of params (at most DB_MAX_CHUNK; params may be NULL when nparams is 0), to a FILE *
 * (README "Trace format"). */
int db_sim_trace_pixel(db_sim *sim, int fpixel, int spixel, const int *params, int nparams, void *file,
                       db_error *err);

/* The reference's -printout block (values of the last inner iteration) for one pixel, or every rendered pixel
 * when fpixel < 0, of the last run, to a FILE *. */
int db_sim_printout(db_sim *sim, int fpixel, int spixel, const float *image, void *file, db_error *err);

/* ---- what the refinement library (libdualbragg_refine: refine/) provides, over the simulator's API: the spot
 * finder, the refinement, and the selection it reads. Link dualbragg_refine (CMake dualbragg::dualbragg_refine,
 * pkg-config dualbragg) for db_find_spots, db_refine*, db_stop_reason_text; the simulator needs none of its
 * dependencies (OpenBLAS, LAPACKE, libpng). ---- */

/* The selected pixels (s*fpixels + f, in the order of db_sim_run_selected) into pixels[capacity]; returns their
 * count, or -1 with err set (capacity too small, no simulation; pixels may be NULL only when none is selected). */
long db_sim_selected_pixel_list(db_sim *sim, long *pixels, long capacity, db_error *err);
/* The boxes of db_sim_select_boxes (or -boxes FILE) into boxes[4*capacity] (xmin xmax ymin ymax); returns how
 * many there are (0: the -roi/-mask selection), writing at most capacity. boxes may be NULL to count; NULL sim: 0. */
int db_sim_get_boxes(const db_sim *sim, int *boxes, int capacity);

/* Boxes of size x size pixels (clipped at the detector's edges) around the n brightest spots of obs among the
 * listed pixels (pixels[i] = s*fpixels + f, in any order; the unlisted ones, and listed ones that are not
 * finite, count as absent, also as neighbours). The rule (refine/spots.c has the details):
 *   background = median of the listed values, noise = max(1.4826 * median absolute deviation,
 *   sqrt(max(background, 1))), threshold = background + 5 * noise;
 *   a spot is a pixel above the threshold that is a local maximum among its listed 3x3 neighbours (ties go to
 *   the lower pixel index, so a flat rectangular plateau gives one maximum);
 *   in order of value (descending; ties by pixel index), a spot is taken when its centre is at least `size`
 *   pixels (Chebyshev distance) from every one taken before, until n are taken.
 * Box = centre - size/2 .. centre - size/2 + size - 1 in each direction, clipped. Writes up to n boxes
 * (xmin xmax ymin ymax, inclusive) to boxes[4*n] and returns how many were found (0: none; also for
 * count == 0), or -1 with err set (n < 1: -spots, size < 1: -spot_size, a pixel index outside the detector,
 * a NULL obs, pixels or boxes when count > 0: DB_ERR_ARGUMENT). Cost O(count log count) at most (O(count) for a sorted list). */
int db_find_spots(const double *obs, int fpixels, int spixels, const long *pixels, long count, int n, int size,
                  int *boxes, db_error *err);

/* ---- refinement: Levenberg-Marquardt over the selected pixels (README "Refinement") ----
 * Fits params to an observed image with the exact Jacobian of db_sim_run_selected, by the driver of refine/lm.h:
 * the objective is the Poisson likelihood of the counts (default; Fisher scoring, mu = model + background) or
 * weighted least squares; a background per box (a constant or a plane a + b x + c y, x and y in pixels from the
 * box's centre) is fitted jointly, its blocks eliminated box by box. Parameters the data cannot separate (a zero
 * Jacobian column, or linearly dependent columns such as phi0 and misset_z when the spindle and the last misset
 * rotation share an axis) are refused by name before the fit. A trial step costs one primal run on the selected
 * pixels, an accepted one one run with derivatives. */
#define DB_REFINE_MAX_PARAMS 32
typedef enum { DB_OBJECTIVE_POISSON = 0, DB_OBJECTIVE_LSQ = 1 } db_objective;
typedef enum { DB_WEIGHTS_POISSON = 0, DB_WEIGHTS_UNIT = 1 } db_weighting; /* LSQ weights; Poisson: 1 / max(observed, 1) */
typedef enum {
    DB_BACKGROUND_AUTO = 0,     /* planes when boxes are selected, none for a -roi/-mask selection */
    DB_BACKGROUND_NONE = 1,
    DB_BACKGROUND_CONSTANT = 2, /* a per box */
    DB_BACKGROUND_PLANES = 3    /* a + b x + c y per box */
} db_background;
typedef enum {
    DB_STOP_COST = 1,   /* relative cost change of an accepted step below cost_tolerance */
    DB_STOP_STEP,       /* scaled step below step_tolerance relative to the scaled parameters */
    DB_STOP_MAXITER,    /* max_iterations trial steps taken */
    DB_STOP_EXACT,      /* the cost is 0: the model equals the data on every pixel */
    DB_STOP_NO_PROGRESS /* no step reduces the cost at any damping: the best parameters found are kept */
} db_stop_reason;
const char *db_stop_reason_text(int reason); /* any value: "not run" for an unknown one */
/* A Poisson fit whose deviance is more than this many standard deviations above its expectation is a poor fit
 * (a wrong local minimum, or a model that misses what the image holds). */
#define DB_POOR_FIT_Z 6.0

typedef struct db_refine_iteration {
    int iteration, accepted;
    double cost, damping, step, seconds; /* cost after the step when accepted; step = |D delta| / |D p| */
} db_refine_iteration;
typedef void (*db_refine_progress_fn)(void *user, const db_refine_iteration *it);

typedef struct db_refine_options {
    int max_iterations;           /* trial steps (accepted or not); default 100 */
    double cost_tolerance;        /* default 1e-12 */
    double step_tolerance;        /* default 1e-10 */
    double initial_damping;       /* relative to the scaled normal matrix's diagonal; default 1e-2 (see README) */
    int weighting;                /* LSQ: db_weighting, used when the weights argument is NULL */
    const double *typical_step;   /* [nparams] fixed scaling (command-line units), or NULL: column norms */
    db_refine_progress_fn progress;
    void *progress_user;
    int objective;                /* db_objective; default DB_OBJECTIVE_POISSON */
    int background;               /* db_background; default DB_BACKGROUND_AUTO */
    double readout_noise;         /* POISSON: Gaussian readout noise in photons (variance mu + S^2); default 0 */
    /* optional outputs, one entry per box of the selection (or one for a -roi/-mask selection), in box order:
     * background_values[3*i..] = a b c (b = c = 0 for a constant; NaN for a box with no pixel of its own),
     * background_sigma likewise, background_boxes[4*i..] the box (the selection's bounding box without boxes).
     * Each may be NULL; db_refine_background_count gives the entries needed. */
    double *background_values, *background_sigma;
    int *background_boxes;
} db_refine_options;
void db_refine_default_options(db_refine_options *o); /* o may be NULL (nothing is done) */
/* The entries of the background outputs a fit of this simulation's selection writes: boxes, or 1 (NULL sim: 0). */
int db_refine_background_count(const db_sim *sim);
/* A fitted background at pixel (fpixel, spixel): abc[0] + abc[1] x + abc[2] y, x and y in pixels from the centre of
 * box[4] (xmin xmax ymin ymax), the plane's own coordinates (a constant has b = c = 0). NULL abc or box: NaN. */
double db_refine_background_at(const double *abc, const int *box, int fpixel, int spixel);

typedef struct db_refine_result {
    int nparams;
    double start[DB_REFINE_MAX_PARAMS], values[DB_REFINE_MAX_PARAMS]; /* command-line units */
    double sigma[DB_REFINE_MAX_PARAMS]; /* standard uncertainties: the inverse normal (Fisher) matrix, unscaled */
    double correlation[DB_REFINE_MAX_PARAMS * DB_REFINE_MAX_PARAMS]; /* [i*nparams + j] */
    double start_cost, cost;      /* POISSON: half the deviance; LSQ: 0.5 sum w (model - observed)^2 */
    double reduced_chi2;          /* Pearson's chi-square / dof (sum (obs - mu)^2 / variance) */
    long pixels;
    int iterations, derivative_runs, primal_runs;
    int stop_reason;              /* db_stop_reason */
    double seconds;
    /* since the Poisson objective (issue 17) */
    int objective, background;    /* what was fitted (background resolved: NONE, CONSTANT or PLANES) */
    int nbackground;              /* background entries fitted (boxes with pixels of their own) */
    long dof;                     /* pixels - parameters - background terms */
    double sigma_scaled[DB_REFINE_MAX_PARAMS]; /* sigma x sqrt(reduced_chi2) */
    double deviance;              /* POISSON: 2 sum(mu - obs + obs ln(obs/mu)); LSQ: the weighted chi-square */
    double deviance_per_dof, expected_deviance_per_dof; /* expectation if the data came from the fitted model */
    double deviance_z;            /* (deviance - expectation) / its standard deviation */
    int poor_fit;                 /* POISSON and deviance_z > DB_POOR_FIT_Z */
} db_refine_result;

/* observed[s*fpixels + f] in photons over the whole detector (only selected pixels are read; finite, and >= 0 for
 * the Poisson objective without readout noise); weights (LSQ only: NULL for the Poisson objective) likewise, or NULL for
 * options->weighting. On return
 * the simulation holds the fitted values (or, when the fit ends early, the best ones found). options may be NULL
 * (defaults); sim, params (1 to DB_REFINE_MAX_PARAMS), observed and result are required. */
int db_refine(db_sim *sim, const int *params, int nparams, const double *observed, const double *weights,
              const db_refine_options *options, db_refine_result *result, db_error *err);

/* ---- outputs (each written to a temporary name and renamed when complete) ----
 * path and image are required (image may be NULL when n is 0), and sim; scale_used, photons and overloads may be
 * NULL. */
int db_write_float_image(const char *path, const float *image, size_t n, db_error *err);
int db_write_float64_image(const char *path, const double *image, size_t n, db_error *err);
/* SMV noiseless image: -scale, or 55000/max_I; -adc offset. Needs a completed run. */
int db_sim_write_int_image(db_sim *sim, const char *path, const float *image, double *scale_used, db_error *err);
int db_sim_write_pgm(db_sim *sim, const char *path, const float *image, double *scale_used, db_error *err);
/* SMV image with the reference's Poisson noise (seed from -seed, the random state of this simulation). */
int db_sim_write_noise_image(db_sim *sim, const char *path, const float *image, double *photons, int *overloads,
                             db_error *err);
/* The structure-factor cache (Fdump.bin format) of the table read from -hkl. */
int db_sim_write_fdump(const db_sim *sim, const char *path, db_error *err);
int db_sim_has_hkl_table(const db_sim *sim); /* NULL sim: 0 */

#ifdef __cplusplus
}
#endif
#endif
