/* backend.h: the renderer interface between the run layer (src/run.c) and whatever evaluates pixels.
 *
 * The run layer owns every decision of a run: which pixels (the selection), the table block for the current
 * values, the carryover's exceptional sample, the interpolation switch-off, decision capture and replay, the
 * statistics and progress. A renderer only evaluates the physics of listed pixels over a table block, as a
 * small table of function pointers (ggml's backends are the model): the CPU engines (src/engine_impl.h, one
 * per direction count) are the first; a GPU renderer plugs in beside them. */
#ifndef DB_BACKEND_H
#define DB_BACKEND_H

#include "dualbragg.h"

#include <float.h>
#include <math.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

struct db_sim;
struct db_pass;

/* What every table block starts with, whatever its direction count: the run layer reads it. */
typedef struct db_block_header {
    size_t bytes;         /* the whole block, header included: one copy moves it */
    int ad_n;             /* tangent directions of its dual numbers */
    int nphi;
    int geometry_constant; /* no derivative of this pass reaches the detector, beam or sources */
    size_t off_slot_normal, off_slot_first; /* int[nphi] each, from the block's start */
    unsigned long serial; /* set by the run layer: a new number for every block a simulation builds */
} db_block_header;

/* Discrete decisions of one pixel (which Miller index is nearest, whether a source is cut by -dmin, whether a
 * spot shape is zero, ...), recorded at a base point and replayed at finite-difference points so that those
 * see the same model (design.md "Finite differences replay discrete decisions"). Host only: the GPU never
 * records or replays. */
typedef struct db_decision_log {
    int *data;
    size_t len, cap, pos;
    int mode; /* DB_LOG_RECORD or DB_LOG_REPLAY */
    int mismatch; /* replay ran past the recording */
} db_decision_log;
enum { DB_LOG_RECORD = 1, DB_LOG_REPLAY = 2 };

/* Selected pixels as row segments, in row-major order: row s, columns f0..f1 (inclusive); `first` is the
 * position of (f0, s) in the selection (the selection's pixels are numbered 0..count-1 row-major). */
typedef struct db_span {
    int s, f0, f1;
    long first;
} db_span;

/* double to float as IEEE does it (an infinity beyond float's range), spelled out: C leaves that case
 * undefined, and UBSan's float-cast-overflow flags it. The image's one conversion, for every renderer. */
/* The structure-factor Jacobian of a run (host renderers): every pixel's dI/dF entries, appended to its span's
 * buffer as (grid index of F, value) pairs; a pixel's entries are one run of that buffer, each grid index once.
 * Grid indices are those of the F array (db_render_job.F); the run layer maps them to the hkl list. */
typedef struct db_fjac_buf {
    size_t *at;
    double *val;
    size_t n, cap;
    int failed; /* out of memory: the run fails */
} db_fjac_buf;

/* One pixel's place in its span's buffer while the renderer evaluates it (physics.h, db_fjac_add). */
typedef struct db_fjac_pixel {
    db_fjac_buf *buf;
    size_t start;     /* where this pixel's entries start in buf */
    size_t last;      /* the entry the last sample added to (samples of a pixel mostly share one hkl) */
    size_t block;     /* tricubic: where the 64 entries of the grid block at block_hkl start, or (size_t)-1 */
    int block_hkl[3];
} db_fjac_pixel;

static inline float db_to_float(double v) { return fabs(v) <= FLT_MAX ? (float)v : (float)copysign(INFINITY, v); }

typedef struct db_render_job {
    const void *block;           /* the table block, of the renderer's direction count */
    const double *F;             /* the structure-factor values (NULL without a table) */
    const void *geo_block;       /* host renderers with derivatives: the primal block, when the geometry can be
                                  * evaluated in plain doubles (header geometry_constant); else NULL */
    const db_span *spans;
    long nspans, count;
    long from;                   /* evaluate only positions >= from */
    int interpolate;             /* tricubic interpolation on at the start of each pixel... */
    long interp_trip;            /* ...unless the pixel's position is after this one (-1: none) */
    long exc_pos;                /* position of the pixel holding the carryover's exceptional sample, or -1 */
    int exc_sample;              /* its ordinal inside that pixel */
    /* outputs, written at index o = (full ? s*fpixels + f : position); any may be NULL */
    int full;
    float *image;
    double *image64;
    double *tangents;            /* tangents[k*ld + o], k < ndirs */
    size_t ld;
    int ndirs;
    unsigned char *tripped;      /* [count]: interpolation switched off inside this pixel */
    double *omega_span;          /* [nspans]: each span's solid angles, summed pixel by pixel from its first (for
                                  * the summary; a per-pixel array was 8 MB to fault in on a 1024x1024 run) */
    db_decision_log *logs;        /* [count] or NULL: record/replay discrete decisions (host renderers only) */
    db_fjac_buf *fjac;            /* [nspans] or NULL: the structure-factor Jacobian (host renderers only): pixel
                                  * `pos` of span i holds fjac[i].at/val[fjac_off[pos] .. + fjac_len[pos]] */
    size_t *fjac_off;
    unsigned *fjac_len;
    db_progress_fn progress;
    void *progress_user;
    /* device renderers: the detector's width, the structure-factor count, the simulation's device context (created
     * by the renderer on first use, freed with the simulation) and the block's version (a new one per change of
     * values), so that F is uploaded once per simulation and a block once per version */
    int fpixels;
    size_t F_count;
    void **device_ctx;
    unsigned long block_version;
    unsigned long F_version;     /* a new number whenever the structure factors change in place */
} db_render_job;

typedef struct db_renderer {
    const char *name;
    int ad_n;   /* direction count of the tables it reads; the tables are built on the host by build() */
    int (*build)(struct db_sim *sim, const struct db_pass *pass, void **block, db_error *err);
    /* The carryover's exceptional sample: the first listed pixel (and the sample in it) whose phi loop runs. */
    int (*first_sample)(const void *block, const double *F, const db_span *spans, long nspans, long *pos, int *sample,
                        db_error *err);
    int (*render)(const db_render_job *job, db_error *err);
} db_renderer;

/* The CPU renderers, one per compiled direction count (the AVX2 builds read the same blocks as the portable
 * ones of their count). */
extern const db_renderer db_cpu_renderer_n0, db_cpu_renderer_n1, db_cpu_renderer_n4, db_cpu_renderer_n12,
    db_cpu_renderer_n28;
#ifdef DB_HAVE_AVX2_ENGINES
extern const db_renderer db_cpu_renderer_n0_avx2, db_cpu_renderer_n4_avx2, db_cpu_renderer_n12_avx2, db_cpu_renderer_n28_avx2;
#endif

/* Table builders, one per direction count (src/tables_impl.h): the block for the simulation's current values,
 * with the pass's parameters seeded (pass NULL: none). They also fill the simulation's geometry and crystal
 * reports and the run-level decisions a finite-difference point replays. */
int db_tables_build_n0(struct db_sim *sim, const struct db_pass *pass, void **block, db_error *err);
int db_tables_build_n1(struct db_sim *sim, const struct db_pass *pass, void **block, db_error *err);
int db_tables_build_n4(struct db_sim *sim, const struct db_pass *pass, void **block, db_error *err);
int db_tables_build_n12(struct db_sim *sim, const struct db_pass *pass, void **block, db_error *err);
int db_tables_build_n28(struct db_sim *sim, const struct db_pass *pass, void **block, db_error *err);

/* Host-only readers of a block: -trace_pixel (0 or 28 directions) and -printout (0). */
int db_cpu_trace_n0(const struct db_sim *sim, const void *block, int ndirs, int f, int s, void *file, db_error *err);
int db_cpu_trace_n28(const struct db_sim *sim, const void *block, int ndirs, int f, int s, void *file, db_error *err);
int db_cpu_printout_n0(const struct db_sim *sim, const void *block, int f, int s, const float *image, void *file,
                       db_error *err);

#ifdef __cplusplus
}
#endif
#endif
