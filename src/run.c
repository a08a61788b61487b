/* run.c: the run layer. Every decision of a run is taken here, whatever renderer evaluates the pixels
 * (src/backend.h): the selected pixels, the table block for the current values (built once per change of
 * values, kept for later passes, traces and printouts), the carryover's exceptional sample, the interpolation
 * switch-off, decision capture and replay, statistics and progress. */
#include "sim.h"
#include "device.h"
#include "error.h"
#include "fileio.h"

#include <errno.h>
#include <limits.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- table blocks ---- */

void db_sim_free_blocks(db_sim *sim)
{
    for (int i = 0; i < DB_BLOCK_CACHE; i++) {
        free(sim->blocks[i].block);
        memset(&sim->blocks[i], 0, sizeof sim->blocks[i]);
    }
}

void db_sim_invalidate(db_sim *sim) { db_sim_free_blocks(sim); }

static int same_pass(const db_pass *a, const db_pass *b)
{
    if (a->ndirs != b->ndirs) return 0;
    for (int p = 0; p < DB_P_COUNT; p++)
        if (a->dir_of[p] != b->dir_of[p]) return 0;
    return 1;
}

int db_sim_block(db_sim *sim, int (*build)(db_sim *, const db_pass *, void **, db_error *), const db_pass *pass,
                 const void **block, db_error *err)
{
    int dh = sim->lattice_dh_form;
    int victim = 0;
    for (int i = 0; i < DB_BLOCK_CACHE; i++) {
        db_block_entry *e = &sim->blocks[i];
        if (e->block && e->build == build && e->dh == dh && e->has_pass == (pass != NULL) &&
            (!pass || same_pass(&e->pass, pass))) {
            e->used = ++sim->block_clock;
            *block = e->block;
            return DB_OK;
        }
        if (!e->block || (sim->blocks[victim].block && e->used < sim->blocks[victim].used)) victim = i;
    }
    void *b = NULL;
    int rc = build(sim, pass, &b, err);
    if (rc) return rc;
    ((db_block_header *)b)->serial = ++sim->block_serial; /* a device copy is current while this matches */
    db_block_entry *e = &sim->blocks[victim];
    free(e->block);
    memset(e, 0, sizeof *e);
    e->block = b;
    e->build = build;
    e->dh = dh;
    e->has_pass = pass != NULL;
    if (pass) e->pass = *pass;
    e->used = ++sim->block_clock;
    *block = b;
    return DB_OK;
}

/* ---- the selection ---- */

void db_sim_free_selection(db_sim *sim)
{
    free(sim->spans);
    sim->spans = NULL;
    sim->nspans = sim->count = 0;
    sim->selection_ready = 0;
}

typedef struct span_list {
    db_span *v;
    long n, cap, count;
} span_list;

/* Adds row s, columns f0..f1, less its masked pixels. */
static int add_segment(span_list *L, const unsigned short *mask, int F, int s, int f0, int f1)
{
    int f = f0;
    while (f <= f1) {
        if (mask)
            while (f <= f1 && mask[(size_t)s * F + f] == 0) f++;
        if (f > f1) break;
        int e = f;
        if (mask)
            while (e + 1 <= f1 && mask[(size_t)s * F + e + 1] != 0) e++;
        else
            e = f1;
        if (L->n == L->cap) {
            long cap = L->cap ? 2 * L->cap : 64;
            db_span *v = (db_span *)realloc(L->v, (size_t)cap * sizeof *v);
            if (!v) return DB_ERR_NOMEM;
            L->v = v;
            L->cap = cap;
        }
        db_span sp = {s, f, e, L->count};
        L->v[L->n++] = sp;
        L->count += e - f + 1;
        f = e + 1;
    }
    return DB_OK;
}

static int cmp_interval(const void *a, const void *b)
{
    const int *x = (const int *)a, *y = (const int *)b;
    return x[0] < y[0] ? -1 : x[0] > y[0];
}

int db_sim_selection(db_sim *sim, db_error *err)
{
    if (sim->selection_ready) return DB_OK;
    const db_plan *p = &sim->plan;
    const unsigned short *mask = sim->cfg->mask;
    span_list L = {NULL, 0, 0, 0};
    int rc = DB_OK;
    if (sim->nboxes == 0) {
        /* the plan's ROI may reach one past the last pixel (the reference's default) */
        int xmax = p->roi_xmax < p->fpixels - 1 ? p->roi_xmax : p->fpixels - 1;
        int ymax = p->roi_ymax < p->spixels - 1 ? p->roi_ymax : p->spixels - 1;
        for (int s = p->roi_ymin; s <= ymax && !rc; s++) rc = add_segment(&L, mask, p->fpixels, s, p->roi_xmin, xmax);
    } else {
        int ymin = sim->boxes[2], ymax = sim->boxes[3];
        for (int b = 1; b < sim->nboxes; b++) {
            if (sim->boxes[4 * b + 2] < ymin) ymin = sim->boxes[4 * b + 2];
            if (sim->boxes[4 * b + 3] > ymax) ymax = sim->boxes[4 * b + 3];
        }
        int *iv = (int *)malloc((size_t)sim->nboxes * 2 * sizeof(int));
        if (!iv) rc = DB_ERR_NOMEM;
        for (int s = ymin; s <= ymax && !rc; s++) {
            int n = 0;
            for (int b = 0; b < sim->nboxes; b++)
                if (s >= sim->boxes[4 * b + 2] && s <= sim->boxes[4 * b + 3]) {
                    iv[2 * n] = sim->boxes[4 * b];
                    iv[2 * n + 1] = sim->boxes[4 * b + 1];
                    n++;
                }
            qsort(iv, (size_t)n, 2 * sizeof(int), cmp_interval);
            /* overlapping or touching boxes merge: each pixel counted once */
            for (int i = 0; i < n && !rc;) {
                int f0 = iv[2 * i], f1 = iv[2 * i + 1];
                int j = i + 1;
                while (j < n && iv[2 * j] <= f1 + 1) {
                    if (iv[2 * j + 1] > f1) f1 = iv[2 * j + 1];
                    j++;
                }
                rc = add_segment(&L, mask, p->fpixels, s, f0, f1);
                i = j;
            }
        }
        free(iv);
    }
    if (rc) {
        free(L.v);
        return db_fail(err, DB_ERR_NOMEM, "out of memory for the pixel selection");
    }
    free(sim->spans);
    sim->spans = L.v;
    sim->nspans = L.n;
    sim->count = L.count;
    sim->selection_ready = 1;
    return DB_OK;
}

/* The span holding pixel (f, s), or the index of the first span after it (row-major) with *found = 0. */
static long find_span(const db_sim *sim, int f, int s, int *found)
{
    long lo = 0, hi = sim->nspans;
    while (lo < hi) {
        long mid = lo + (hi - lo) / 2;
        const db_span *sp = &sim->spans[mid];
        if (sp->s < s || (sp->s == s && sp->f1 < f))
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = lo < sim->nspans && sim->spans[lo].s == s && sim->spans[lo].f0 <= f && f <= sim->spans[lo].f1;
    return lo;
}

int db_sim_selected_pos(const db_sim *sim, int f, int s, long *pos)
{
    if (!sim->selection_ready) return 0;
    int found;
    long i = find_span(sim, f, s, &found);
    if (found && pos) *pos = sim->spans[i].first + (f - sim->spans[i].f0);
    return found;
}

/* How many selected pixels have an index (s*F + f) <= idx. */
static long count_upto(const db_sim *sim, long idx)
{
    if (idx < 0) return 0;
    int F = sim->plan.fpixels;
    int f = (int)(idx % F), s = (int)(idx / F);
    int found;
    long i = find_span(sim, f, s, &found);
    if (found) return sim->spans[i].first + (f - sim->spans[i].f0) + 1;
    return i < sim->nspans ? sim->spans[i].first : sim->count;
}

static long pos_to_pixel(const db_sim *sim, long pos)
{
    if (pos < 0) return -1;
    long lo = 0, hi = sim->nspans - 1;
    while (lo < hi) {
        long mid = lo + (hi - lo + 1) / 2;
        if (sim->spans[mid].first <= pos)
            lo = mid;
        else
            hi = mid - 1;
    }
    const db_span *sp = &sim->spans[lo];
    return (long)sp->s * sim->plan.fpixels + sp->f0 + (pos - sp->first);
}

void db_sim_selected_pixels(const db_sim *sim, long *out)
{
    for (long i = 0; i < sim->nspans; i++) {
        const db_span *sp = &sim->spans[i];
        for (int f = sp->f0; f <= sp->f1; f++) *out++ = (long)sp->s * sim->plan.fpixels + f;
    }
}

/* A box is non-empty and on the detector (long: a file's numbers are checked before they become ints). */
static int box_ok(const db_sim *sim, long x0, long x1, long y0, long y1)
{
    return x0 >= 0 && x1 < sim->plan.fpixels && y0 >= 0 && y1 < sim->plan.spixels && x0 <= x1 && y0 <= y1;
}

int db_sim_select_boxes(db_sim *sim, const int *boxes, int nboxes, db_error *err)
{
    db_error_clear(err);
    if (!sim) return db_fail(err, DB_ERR_ARGUMENT, "db_sim_select_boxes: no simulation");
    if (nboxes < 0 || (nboxes > 0 && !boxes))
        return db_fail(err, DB_ERR_ARGUMENT, "db_sim_select_boxes: %d boxes%s", nboxes, nboxes > 0 ? " but no array" : "");
    int F = sim->plan.fpixels, S = sim->plan.spixels;
    for (int b = 0; b < nboxes; b++) {
        const int *x = boxes + 4 * b;
        if (!box_ok(sim, x[0], x[1], x[2], x[3]))
            return db_fail(err, DB_ERR_ARGUMENT,
                           "box %d (xmin xmax ymin ymax = %d %d %d %d) is empty or outside the %d x %d detector "
                           "(expected 0 <= xmin <= xmax < %d and 0 <= ymin <= ymax < %d)",
                           b + 1, x[0], x[1], x[2], x[3], F, S, F, S);
    }
    int *copy = NULL;
    if (nboxes > 0) {
        copy = (int *)malloc((size_t)nboxes * 4 * sizeof(int));
        if (!copy) return db_fail(err, DB_ERR_NOMEM, "out of memory for %d boxes", nboxes);
        memcpy(copy, boxes, (size_t)nboxes * 4 * sizeof(int));
    }
    free(sim->boxes);
    sim->boxes = copy;
    sim->nboxes = nboxes;
    db_sim_free_selection(sim);
    sim->ran = 0; /* the last run's pixels are no longer the selection */
    return db_sim_selection(sim, err);
}

/* The largest -boxes file: a box line is at least 8 bytes ("0 0 0 0\n"), so 64 MiB holds millions of boxes,
 * more than any detector's spots; the whole text is held in memory while it is parsed. */
#define BOXES_FILE_MAX_BYTES ((size_t)64 << 20)

int db_sim_select_boxes_file(db_sim *sim, const char *path, db_error *err)
{
    char *data;
    size_t len;
    int rc = db_read_text("-boxes", path, BOXES_FILE_MAX_BYTES, "lines 'xmin xmax ymin ymax'", &data, &len, err);
    if (rc) return rc;
    int *boxes = NULL, n = 0, cap = 0, line = 0;
    char *p = data;
    while (!rc && p < data + len) {
        char *nl = memchr(p, '\n', (size_t)(data + len - p));
        char *end = nl ? nl : data + len;
        line++;
        *end = '\0'; /* db_read_text refused NUL bytes, so this is the line's only one */
        char *hash = strchr(p, '#');
        if (hash) *hash = '\0';
        long v[4];
        int k = 0;
        char *q = p;
        for (;;) {
            while (*q == ' ' || *q == '\t' || *q == '\r') q++;
            if (!*q) break;
            char *e;
            errno = 0;
            long x = strtol(q, &e, 10);
            if (e == q || errno == ERANGE || x < INT_MIN || x > INT_MAX || (*e && *e != ' ' && *e != '\t' && *e != '\r') || k == 4) {
                rc = db_fail(err, DB_ERR_FORMAT, "-boxes %s:%d: expected four integers 'xmin xmax ymin ymax' (pixels, inclusive)",
                             path, line);
                break;
            }
            v[k++] = x;
            q = e;
        }
        if (!rc && k != 0 && k != 4)
            rc = db_fail(err, DB_ERR_FORMAT, "-boxes %s:%d: expected four integers 'xmin xmax ymin ymax', found %d", path, line, k);
        if (!rc && k == 4) {
            if (n == cap) {
                cap = cap ? 2 * cap : 16;
                int *b = (int *)realloc(boxes, (size_t)cap * 4 * sizeof(int));
                if (!b) {
                    rc = db_fail(err, DB_ERR_NOMEM, "out of memory reading %s", path);
                    break;
                }
                boxes = b;
            }
            for (int i = 0; i < 4; i++) boxes[4 * n + i] = (int)v[i];
            n++;
            int F = sim->plan.fpixels, S = sim->plan.spixels;
            if (!box_ok(sim, v[0], v[1], v[2], v[3]))
                rc = db_fail(err, DB_ERR_FORMAT,
                             "-boxes %s:%d: box %ld %ld %ld %ld is empty or outside the %d x %d detector "
                             "(expected 0 <= xmin <= xmax < %d and 0 <= ymin <= ymax < %d)",
                             path, line, v[0], v[1], v[2], v[3], F, S, F, S);
        }
        if (!nl) break;
        p = nl + 1;
    }
    free(data);
    if (!rc && n == 0) rc = db_fail(err, DB_ERR_FORMAT, "-boxes %s: no boxes (expected lines 'xmin xmax ymin ymax')", path);
    if (!rc) rc = db_sim_select_boxes(sim, boxes, n, err);
    free(boxes);
    return rc;
}

long db_sim_selected_count(const db_sim *sim)
{
    if (!sim) return 0;
    if (!sim->selection_ready && db_sim_selection((db_sim *)sim, NULL)) return 0;
    return sim->count;
}

long db_sim_selected_pixel_list(db_sim *sim, long *pixels, long capacity, db_error *err)
{
    if (!sim) return db_fail(err, DB_ERR_ARGUMENT, "db_sim_selected_pixel_list: no simulation"), -1;
    if (db_sim_selection(sim, err)) return -1;
    if (capacity < sim->count || (!pixels && sim->count > 0))
        return db_fail(err, DB_ERR_ARGUMENT, "db_sim_selected_pixel_list: %ld pixels are selected, room for %ld", sim->count,
                       pixels ? capacity : 0), -1;
    db_sim_selected_pixels(sim, pixels);
    return sim->count;
}

int db_sim_get_boxes(const db_sim *sim, int *boxes, int capacity)
{
    if (!sim) return 0;
    for (int b = 0; boxes && b < sim->nboxes && b < capacity; b++) memcpy(boxes + 4 * b, sim->boxes + 4 * b, 4 * sizeof(int));
    return sim->nboxes;
}

/* ---- the work of a run ---- */

/* Inner iterations per second of the primal engine on one core of the development machine class (light case:
 * 1M pixels, 1 sample each, 0.165 s). */
#define DB_ITER_RATE_GUESS 6e6

int db_sim_work_estimate(db_sim *sim, double *iterations, double rate, double *seconds, db_error *err)
{
    db_error_clear(err);
    if (!sim || !iterations) return db_fail(err, DB_ERR_ARGUMENT, "db_sim_work_estimate: no simulation or no output");
    int rc = db_sim_selection(sim, err);
    if (rc) return rc;
    const db_plan *p = &sim->plan;
    double os = sim->xtal.oversample;
    *iterations = (double)sim->count * p->thicksteps * os * os * sim->run_sources * p->phisteps * p->mosaic_domains;
    if (seconds) *seconds = *iterations / (rate > 0 ? rate : DB_ITER_RATE_GUESS);
    return DB_OK;
}

/* ---- memory before work ---- */

#define DB_GIB 1073741824.0

/* The default share of the physical memory one table may take: a table is held beside the images, the cached
 * blocks of other direction counts (DB_BLOCK_CACHE) and whatever else the machine runs; one that needs more than
 * half of it leaves no room for them. */
#define DB_MEMORY_SHARE 0.5

double db_memory_limit(int *from_env)
{
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
    const double phys = pages > 0 && page > 0 ? (double)pages * (double)page : HUGE_VAL;
    if (from_env) *from_env = 0;
    const char *e = getenv(DB_MEMORY_LIMIT_ENV);
    if (e && *e) {
        char *end;
        double gib = strtod(e, &end);
        /* a value that is not a positive number is ignored (the library never prints; the README says so) */
        if (end != e && *end == '\0' && gib > 0.0) {
            if (from_env) *from_env = 1;
            return gib * DB_GIB < phys ? gib * DB_GIB : phys;
        }
    }
    return DB_MEMORY_SHARE * phys;
}

int db_check_memory(double bytes, const char *what, const char *counts, db_error *err)
{
    int env;
    const double limit = db_memory_limit(&env);
    if (bytes <= limit) return DB_OK;
    return db_fail(err, DB_ERR_ARGUMENT, "%s would need %.3g GiB of memory (%s), more than the %.3g GiB %s: nothing was allocated",
                   what, bytes / DB_GIB, counts, limit / DB_GIB,
                   env ? "that " DB_MEMORY_LIMIT_ENV " allows" : "a table may take (half of this machine's memory)");
}

int db_check_table_memory(const db_sim *sim, int ndirs, double bytes, double nsources, db_error *err)
{
    char what[96], counts[512];
    if (ndirs > 0) snprintf(what, sizeof what, "the tables of a derivative pass (%d directions; -grad_chunk lowers it)", ndirs);
    else snprintf(what, sizeof what, "the simulation's tables");
    snprintf(counts, sizeof counts,
             "%d phi steps (-phisteps, or -osc over -phistep) x %d mosaic domains (-mosaic_dom), and %.0f sources "
             "(-sourcefile, or -hdivsteps x -vdivsteps x -dispsteps)",
             sim->plan.phisteps, sim->plan.mosaic_domains, nsources);
    return db_check_memory(bytes, what, counts, err);
}

double db_sim_source_count(const db_sim *sim)
{
    const db_plan *p = &sim->plan;
    return sim->nsources > 0 ? (double)sim->nsources : (double)p->hdivsteps * p->vdivsteps * p->dispsteps;
}

static int check_work(db_sim *sim, db_error *err)
{
    double it;
    int rc = db_sim_work_estimate(sim, &it, 0, NULL, err);
    if (!rc && it > DB_MAX_WORK)
        rc = db_fail(err, DB_ERR_ARGUMENT,
                     "the run would take %.3g inner iterations (%ld pixels x %d layers x %d^2 sub-pixels x %d sources x %d "
                     "phi steps x %d domains), about %.2g days on one core; at most %.0e: check -detector_thicksteps, "
                     "-oversample and the step counts",
                     it, sim->count, sim->plan.thicksteps, sim->xtal.oversample, sim->run_sources, sim->plan.phisteps,
                     sim->plan.mosaic_domains, it / DB_ITER_RATE_GUESS / 86400.0, DB_MAX_WORK);
    return rc;
}

/* ---- one rendering pass ---- */

typedef struct run_out {
    int full;
    float *image;
    double *image64, *tangents;
    size_t ld;
    /* the F-Jacobian's span buffers and per-pixel runs (NULL: not asked for; backend.h db_fjac_buf) */
    db_fjac_buf *fjac;
    size_t *fjac_off;
    unsigned *fjac_len;
} run_out;

/* Whether a value is NaN or an infinity, from its bits (integer operations: the loops below vectorize). */
static inline int float_not_finite(float v)
{
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    return (u & 0x7f800000u) == 0x7f800000u;
}
static inline int double_not_finite(double v)
{
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    return (u & 0x7ff0000000000000u) == 0x7ff0000000000000u;
}

/* The last line of defence against impossible inputs that got this far: no image with a NaN or an infinity is
 * handed back as a result. The float image when there is one: a value beyond float's range is an infinity there. */
static int check_finite(const db_sim *sim, const run_out *out, db_error *err)
{
    long bad = 0, first = -1;
    for (long i = 0; i < sim->nspans; i++) {
        const db_span *sp = &sim->spans[i];
        size_t o = out->full ? (size_t)sp->s * sim->plan.fpixels + sp->f0 : (size_t)sp->first;
        int len = sp->f1 - sp->f0 + 1, n = 0;
        if (out->image)
            for (int k = 0; k < len; k++) n += float_not_finite(out->image[o + (size_t)k]);
        else if (out->image64)
            for (int k = 0; k < len; k++) n += double_not_finite(out->image64[o + (size_t)k]);
        if (n && first < 0)
            for (int k = 0; k < len && first < 0; k++)
                if (out->image ? float_not_finite(out->image[o + (size_t)k]) : double_not_finite(out->image64[o + (size_t)k]))
                    first = (long)sp->s * sim->plan.fpixels + sp->f0 + k;
        bad += n;
    }
    if (!bad) return DB_OK;
    return db_fail(err, DB_ERR_GEOMETRY,
                   "the image holds %ld non-finite pixel values (the first at pixel %ld %ld): an input is out of range "
                   "(check the cell, wavelength, structure factors and sources); nothing was written",
                   bad, first % sim->plan.fpixels, first / sim->plan.fpixels);
}

/* The renderer's job for this pass over the selected pixels (the per-pixel buffers tripped and omega given) */
static void fill_job(db_sim *sim, const db_pass *pass, const run_out *out, const void *block, unsigned char *tripped,
                     double *omega, db_render_job *job)
{
    const db_block_header *hdr = (const db_block_header *)block;
    const double *F = db_sim_F(sim);
    memset(job, 0, sizeof *job);
    job->block = block;
    job->F = F;
    job->spans = sim->spans;
    job->nspans = sim->nspans;
    job->count = sim->count;
    job->interpolate = sim->xtal.interpolate;
    job->interp_trip = -1;
    job->exc_pos = -1;
    job->exc_sample = -1;
    job->full = out->full;
    job->image = out->image;
    job->image64 = out->image64;
    job->tangents = out->tangents;
    job->ld = out->ld;
    job->ndirs = pass ? pass->ndirs : 0;
    job->tripped = tripped;
    job->omega_span = omega;
    job->logs = sim->logs;
    job->progress = sim->progress;
    job->progress_user = sim->progress_user;
    job->fpixels = sim->plan.fpixels;
    job->F_count = F ? (size_t)(sim->hkl.h_range + 1) * (size_t)(sim->hkl.k_range + 1) * (size_t)(sim->hkl.l_range + 1) : 0;
    job->device_ctx = &sim->device_ctx;
    job->block_version = hdr->serial;
    job->F_version = sim->F_version;
    job->fjac = out->fjac;
    job->fjac_off = out->fjac_off;
    job->fjac_len = out->fjac_len;
}

/* What a finite-difference point has to replay (sim->captured) and the solid angles' sum, after a good run */
static int capture_run(db_sim *sim, const db_block_header *hdr, const int *slot_normal, const int *slot_first,
                       const db_render_job *job, const double *omega, db_error *err)
{
    db_decisions *cap = &sim->captured;
    int *sn = (int *)malloc((size_t)(hdr->nphi > 0 ? hdr->nphi : 1) * sizeof(int));
    int *sf = (int *)malloc((size_t)(hdr->nphi > 0 ? hdr->nphi : 1) * sizeof(int));
    if (!sn || !sf) {
        free(sn);
        free(sf);
        return db_fail(err, DB_ERR_NOMEM, "out of memory");
    }
    memcpy(sn, slot_normal, (size_t)hdr->nphi * sizeof(int));
    memcpy(sf, slot_first, (size_t)hdr->nphi * sizeof(int));
    free(cap->slot_normal);
    free(cap->slot_first);
    cap->slot_normal = sn;
    cap->slot_first = sf;
    cap->nphi = hdr->nphi;
    cap->exc_pixel = pos_to_pixel(sim, job->exc_pos);
    cap->exc_sample = job->exc_pos >= 0 ? job->exc_sample : -1;
    cap->interp_trip = pos_to_pixel(sim, job->interp_trip);
    /* solid angles summed per span (by the renderer), per row, then over rows: the same sum for any
     * thread count */
    double osum = 0.0;
    for (long i = 0; i < sim->nspans;) {
        int s = sim->spans[i].s;
        double row = 0.0;
        for (; i < sim->nspans && sim->spans[i].s == s; i++) row += omega[i];
        osum += row;
    }
    sim->omega_sum = osum;
    return DB_OK;
}

static int run_pass(db_sim *sim, const db_renderer *r, const db_pass *pass, const run_out *out, db_error *err)
{
    const void *block;
    int rc = db_sim_block(sim, r->build, pass, &block, err);
    if (rc) return rc;
    const db_block_header *hdr = (const db_block_header *)block;
    const int *slot_normal = (const int *)((const char *)block + hdr->off_slot_normal);
    const int *slot_first = (const int *)((const char *)block + hdr->off_slot_first);
    long count = sim->count;
    /* which pixels switched interpolation off: only a run that interpolates can trip */
    unsigned char *tripped = sim->xtal.interpolate ? (unsigned char *)calloc((size_t)(count > 0 ? count : 1), 1) : NULL;
    double *omega = (double *)calloc((size_t)(sim->nspans > 0 ? sim->nspans : 1), sizeof(double));
    if ((sim->xtal.interpolate && !tripped) || !omega) {
        free(tripped);
        free(omega);
        return db_fail(err, DB_ERR_NOMEM, "out of memory for %ld pixels", count);
    }
    if (sim->logs && sim->nlogs != count) {
        free(tripped);
        free(omega);
        return db_fail(err, DB_ERR_INTERNAL, "decision logs for %ld pixels, %ld selected", sim->nlogs, count);
    }
    db_render_job job;
    fill_job(sim, pass, out, block, tripped, omega, &job);
    if (r->ad_n > 0 && hdr->geometry_constant && strncmp(r->name, "cpu", 3) == 0 && !getenv("DUALBRAGG_DUAL_GEOMETRY")) {
        /* the geometry in plain doubles: the primal block of the same values (it stays cached beside this one) */
        const void *b0;
        rc = db_sim_block(sim, db_tables_build_n0, NULL, &b0, err);
        if (rc) {
            free(tripped);
            free(omega);
            return rc;
        }
        job.geo_block = b0;
    }

    const db_decisions *fd = sim->forced.active ? &sim->forced : NULL;
    int differs = 0;
    for (int j = 0; j < hdr->nphi; j++) differs |= slot_first[j] != slot_normal[j];
    if (fd) {
        int found = 0;
        long pos = -1;
        if (fd->exc_pixel >= 0) found = db_sim_selected_pos(sim, (int)(fd->exc_pixel % sim->plan.fpixels),
                                                            (int)(fd->exc_pixel / sim->plan.fpixels), &pos);
        job.exc_pos = found ? pos : -1;
        job.exc_sample = fd->exc_sample;
        job.interp_trip = fd->interp_trip >= 0 ? count_upto(sim, fd->interp_trip) - 1 : -1;
    } else if (differs) {
        rc = r->first_sample(block, job.F, sim->spans, sim->nspans, &job.exc_pos, &job.exc_sample, err);
    }
    if (!rc) rc = r->render(&job, err);
    sim->interp_switched_off = job.interp_trip >= 0;
    if (!rc && tripped && !fd) {
        /* the reference switches interpolation off for the rest of the run at the first out-of-range sample:
         * every pixel after that one (row-major) is evaluated again without it */
        long first_trip = -1;
        for (long i = 0; i < count; i++)
            if (tripped[i]) {
                first_trip = i;
                break;
            }
        if (first_trip >= 0) {
            sim->interp_switched_off = 1;
            job.interp_trip = first_trip;
            job.from = first_trip + 1;
            job.omega_span = NULL; /* the solid angles do not depend on interpolation: the first render's stand */
            job.tripped = NULL;
            rc = r->render(&job, err);
        }
    }
    for (long i = 0; !rc && out->fjac && i < sim->nspans; i++)
        if (out->fjac[i].failed) rc = db_fail(err, DB_ERR_NOMEM, "out of memory for the F-Jacobian");
    if (!rc) rc = check_finite(sim, out, err);
    if (!rc) rc = capture_run(sim, hdr, slot_normal, slot_first, &job, omega, err);
    free(tripped);
    free(omega);
    return rc;
}

/* ---- statistics (appendix A4.2), in the single-threaded reference's order ---- */


static void compute_stats(db_sim *sim, const float *image, const double *values)
{
    const db_plan *p = &sim->plan;
    const int F = p->fpixels;
    double max_I = 0.0, sum = 0.0, sumsqr = 0.0;
    long sumn = 0, max_idx = -1;
    for (long i = 0; i < sim->nspans; i++) {
        const db_span *sp = &sim->spans[i];
        for (int f = sp->f0; f <= sp->f1; f++) {
            long idx = (long)sp->s * F + f;
            float v = image ? image[idx] : db_to_float(values[sp->first + (f - sp->f0)]);
            if ((double)v > max_I) {
                max_I = v;
                max_idx = idx;
            }
            sum += v;
            sumsqr += (double)(v * v);
            ++sumn;
        }
    }
    sim->rendered = sumn;
    if (sumn <= 0) sumn = 1;
    double avg = sum / sumn;
    if (sumn <= 1) sumn = 2;
    sim->rms = sqrt(sumsqr / (sumn - 1));
    double ss2 = 0.0;
    long n2 = 0;
    if (image && sim->nboxes == 0) {
        /* the reference's second pass covers the ROI with its masked pixels (their value 0) */
        int xmax = p->roi_xmax < F - 1 ? p->roi_xmax : F - 1;
        int ymax = p->roi_ymax < p->spixels - 1 ? p->roi_ymax : p->spixels - 1;
        for (int s = p->roi_ymin; s <= ymax; s++)
            for (int f = p->roi_xmin; f <= xmax; f++) {
                double d = image[(long)s * F + f] - avg;
                ss2 += d * d;
                ++n2;
            }
    } else {
        for (long i = 0; i < sim->nspans; i++) {
            const db_span *sp = &sim->spans[i];
            for (int f = sp->f0; f <= sp->f1; f++) {
                float v = image ? image[(long)sp->s * F + f] : db_to_float(values[sp->first + (f - sp->f0)]);
                double d = v - avg;
                ss2 += d * d;
                ++n2;
            }
        }
    }
    if (n2 <= 1) n2 = 2;
    sim->rmsd = sqrt(ss2 / (n2 - 1));
    sim->mean = avg;
    sim->max_I = max_I;
    /* the reference reports the last sub-pixel's Fdet, Sdet of the brightest pixel */
    int os = sim->xtal.oversample;
    double sub = sim->cfg->pixel_size / os;
    if (max_idx >= 0) {
        sim->max_I_x = sub * ((max_idx % F) * os + os - 1) + sub / 2.0;
        sim->max_I_y = sub * ((max_idx / F) * os + os - 1) + sub / 2.0;
    } else {
        sim->max_I_x = sim->max_I_y = 0.0;
    }
}

/* ---- the public runs ---- */


/* ---- the decisions a run captures and gradcheck replays ---- */

void db_decisions_free(db_decisions *d)
{
    free(d->slot_normal);
    free(d->slot_first);
    d->slot_normal = d->slot_first = NULL;
}

int db_decisions_copy(db_decisions *dst, const db_decisions *src)
{
    db_decisions_free(dst);
    *dst = *src;
    dst->slot_normal = dst->slot_first = NULL;
    if (src->nphi > 0 && src->slot_normal && src->slot_first) {
        dst->slot_normal = (int *)malloc((size_t)src->nphi * sizeof(int));
        dst->slot_first = (int *)malloc((size_t)src->nphi * sizeof(int));
        if (!dst->slot_normal || !dst->slot_first) return DB_ERR_NOMEM;
        memcpy(dst->slot_normal, src->slot_normal, (size_t)src->nphi * sizeof(int));
        memcpy(dst->slot_first, src->slot_first, (size_t)src->nphi * sizeof(int));
    }
    return DB_OK;
}

/* ---- the device ---- */

int db_sim_use_device(db_sim *sim, int device, db_error *err)
{
    char what[128] = "", why[256] = "";
    const db_device_backend *b = db_device_backend_of(device == DB_DEVICE_AUTO ? DB_DEVICE_CUDA : device);
    if (!b) return db_fail(err, DB_ERR_ARGUMENT, "unknown device %d", device);
    if (b->usable && !b->usable(what, sizeof what, why, sizeof why)) {
        if (device != DB_DEVICE_AUTO) return db_fail(err, DB_ERR_DEVICE, "-device %s: %s", b->name, why);
        b = db_device_backend_of(DB_DEVICE_CPU); /* auto: the GPU when usable, else the CPU, saying why */
        snprintf(what, sizeof what, "-device auto: %s", why);
    }
    /* a context the previous device's renderers left goes with it */
    const db_device_backend *was = db_device_backend_of(sim->device);
    if (was && was != b && was->context_free && sim->device_ctx) {
        was->context_free(sim->device_ctx);
        sim->device_ctx = NULL;
    }
    sim->device = b->id;
    if (what[0]) snprintf(sim->device_name, sizeof sim->device_name, "%s (%s)", b->name, what);
    else snprintf(sim->device_name, sizeof sim->device_name, "%s", b->name);
    return DB_OK;
}

void *db_sim_device_context(const db_sim *sim) { return sim->device_ctx; }

const int *db_sim_boxes(const db_sim *sim, int *n)
{
    *n = sim->nboxes;
    return sim->nboxes > 0 ? sim->boxes : NULL;
}

int db_sim_set_device(db_sim *sim, const char *device, db_error *err)
{
    db_error_clear(err);
    if (!sim || !device) return db_fail(err, DB_ERR_ARGUMENT, "db_sim_set_device: no simulation or no device name");
    const int id = db_device_from_name(device);
    if (id < 0) return db_fail(err, DB_ERR_ARGUMENT, "db_sim_set_device: expected " DB_DEVICE_NAMES ", got '%s'", device);
    return db_sim_use_device(sim, id, err);
}

const char *db_sim_device(const db_sim *sim) { return sim ? sim->device_name : ""; }

int db_sim_device_supports(const db_sim *sim, int feature)
{
    return sim && db_device_backend_of(sim->device)->supports(feature);
}

int db_sim_set_chunk(db_sim *sim, int k)
{
    if (!sim || k < 1 || k > DB_MAX_CHUNK) return DB_ERR_ARGUMENT;
    sim->chunk = k;
    return DB_OK;
}

/* The list checked, and whether it asks for an N derivative (which needs the dh form, README "Derivatives"). */
static int check_params(const int *params, int nparams, int *dh, db_error *err)
{
    *dh = 0;
    int rc = db_param_check_list(params, nparams, err);
    for (int k = 0; !rc && k < nparams; k++) *dh |= params[k] == DB_P_NA || params[k] == DB_P_NB || params[k] == DB_P_NC;
    return rc;
}

/* The pass that carries params[0..n-1] in tangent directions 0..n-1. */
static db_pass make_pass(const int *params, int n)
{
    db_pass pass;
    for (int p = 0; p < DB_P_COUNT; p++) pass.dir_of[p] = -1;
    pass.ndirs = n;
    for (int k = 0; k < n; k++) pass.dir_of[params[k]] = k;
    return pass;
}

/* Every pass of a run: the primal alone, or the parameters in chunks of at most sim->chunk directions. */
static int run_all(db_sim *sim, const int *params, int nparams, run_out *out, size_t ld_images, db_error *err)
{
    int rc = db_sim_selection(sim, err);
    if (!rc) rc = check_work(sim, err);
    if (rc) return rc;
    const db_device_backend *b = db_device_backend_of(sim->device);
    if (sim->logs && !b->supports(DB_FEATURE_DECISION_LOGS)) b = db_device_backend_of(DB_DEVICE_CPU);
    if (nparams == 0) return run_pass(sim, b->renderer(0), NULL, out, err);
    int chunk = sim->chunk > 0 ? sim->chunk : b->default_chunk;
    if (chunk > b->max_chunk) chunk = b->max_chunk;
    double *tangents = out->tangents;
    db_fjac_buf *fjac = out->fjac;
    for (int first = 0; first < nparams && !rc; first += chunk) {
        db_pass pass = make_pass(params + first, nparams - first < chunk ? nparams - first : chunk);
        out->tangents = tangents ? tangents + (size_t)first * ld_images : NULL;
        out->fjac = first == 0 ? fjac : NULL; /* the F-Jacobian once, with the first pass */
        rc = run_pass(sim, b->renderer(pass.ndirs), &pass, out, err);
    }
    out->tangents = tangents;
    out->fjac = fjac;
    return rc;
}

/* Zeroes the pixels of a full-detector image that the selection leaves out (the renderer writes every selected
 * one): the gaps between spans. A whole-detector run zeroes nothing (it was a 4 MB memset, and the page faults of
 * a fresh buffer, before the renderer wrote every pixel again). */
static void zero_unselected(const db_sim *sim, void *image, size_t elem, size_t npix)
{
    char *base = (char *)image;
    size_t next = 0; /* the first pixel not yet zeroed or selected */
    for (long i = 0; i < sim->nspans; i++) {
        const db_span *sp = &sim->spans[i];
        size_t start = (size_t)sp->s * (size_t)sim->plan.fpixels + (size_t)sp->f0;
        if (start > next) memset(base + next * elem, 0, (start - next) * elem);
        next = start + (size_t)(sp->f1 - sp->f0) + 1;
    }
    if (npix > next) memset(base + next * elem, 0, (npix - next) * elem);
}

int db_sim_run_grad(db_sim *sim, const int *params, int nparams, float *image, double *image64, double *grads,
                    db_error *err)
{
    db_error_clear(err);
    if (!sim || !image) return db_fail(err, DB_ERR_ARGUMENT, "db_sim_run: no simulation or no image buffer");
    int dh;
    int rc = check_params(params, nparams, &dh, err);
    if (!rc && nparams > 0 && !grads) rc = db_fail(err, DB_ERR_ARGUMENT, "db_sim_run_grad: no buffer for the derivative images");
    if (rc) return rc;
    sim->lattice_dh_form = dh || sim->force_dh_form; /* N derivatives need the dh form (README "Derivatives") */
    size_t npix = (size_t)sim->plan.fpixels * sim->plan.spixels;
    if ((rc = db_sim_selection(sim, err))) return rc;
    if ((size_t)sim->count < npix / 2) {
        /* a small ROI: one memset per buffer (glibc streams a large one past the cache; the gaps around a box,
         * a few tens of MB each with derivative images, went through it at half the speed) */
        memset(image, 0, npix * sizeof(float));
        if (image64) memset(image64, 0, npix * sizeof(double));
        if (grads && nparams > 0) memset(grads, 0, (size_t)nparams * npix * sizeof(double));
    } else {
        zero_unselected(sim, image, sizeof(float), npix);
        if (image64) zero_unselected(sim, image64, sizeof(double), npix);
        for (int k = 0; grads && k < nparams; k++) zero_unselected(sim, grads + (size_t)k * npix, sizeof(double), npix);
    }
    run_out out = {1, image, image64, nparams > 0 ? grads : NULL, npix, NULL, NULL, NULL};
    rc = run_all(sim, params, nparams, &out, npix, err);
    if (rc) return rc;
    compute_stats(sim, image, NULL);
    sim->ran = 1;
    return DB_OK;
}

int db_sim_run(db_sim *sim, float *image, double *image64, db_error *err)
{
    return db_sim_run_grad(sim, NULL, 0, image, image64, NULL, err);
}

/* db_sim_run_selected, and the F-Jacobian when fjac is not NULL. */
static int run_selected(db_sim *sim, const int *params, int nparams, double *values, double *jac, db_csr *fjac,
                        db_error *err)
{
    int dh;
    int rc = check_params(params, nparams, &dh, err);
    if (!rc && nparams > 0 && !jac) rc = db_fail(err, DB_ERR_ARGUMENT, "db_sim_run_selected: no buffer for the Jacobian");
    if (!rc) rc = db_sim_selection(sim, err);
    if (rc) return rc;
    sim->lattice_dh_form = dh || sim->force_dh_form;
    size_t count = (size_t)sim->count;
    run_out out = {0, NULL, values, nparams > 0 ? jac : NULL, count, NULL, NULL, NULL};
    if (fjac && !(rc = db_sf_workspace(sim, err))) {
        out.fjac = sim->sf_bufs;
        out.fjac_off = sim->sf_off;
        out.fjac_len = sim->sf_len;
    }
    if (!rc) rc = run_all(sim, params, nparams, &out, count, err);
    if (!rc && fjac) rc = db_sf_assemble(sim, out.fjac, out.fjac_off, out.fjac_len, fjac, err);
    if (rc) return rc;
    compute_stats(sim, NULL, values);
    sim->ran = 1;
    return DB_OK;
}

int db_sim_run_selected(db_sim *sim, const int *params, int nparams, double *values, double *jac, db_error *err)
{
    db_error_clear(err);
    if (!sim || !values) return db_fail(err, DB_ERR_ARGUMENT, "db_sim_run_selected: no simulation or no values buffer");
    return run_selected(sim, params, nparams, values, jac, NULL, err);
}

int db_sim_run_selected_F(db_sim *sim, const int *params, int nparams, double *values, double *jac, db_csr *fjac,
                          db_error *err)
{
    db_error_clear(err);
    if (!sim || !values || !fjac)
        return db_fail(err, DB_ERR_ARGUMENT, "db_sim_run_selected_F: no simulation, values buffer or F-Jacobian");
    fjac->rows = fjac->cols = fjac->nnz = 0; /* its arrays are kept for reuse */
    if (!db_sim_device_supports(sim, DB_FEATURE_F_JACOBIAN))
        return db_fail(err, DB_ERR_DEVICE,
                       "the structure-factor Jacobian is computed by the CPU renderers only: this simulation renders on "
                       "%s (use -device cpu)", sim->device_name);
    if (!sim->have_hkl)
        return db_fail(err, DB_ERR_ARGUMENT, "the structure-factor Jacobian needs a structure-factor table (-hkl FILE or "
                       "an Fdump cache); -default_F alone is not a parameter");
    return run_selected(sim, params, nparams, values, jac, fjac, err);
}

/* ---- host-only readers of the last run: -trace_pixel, -printout ---- */

static int check_rendered(db_sim *sim, const char *what, int f, int s, db_error *err)
{
    if (f < 0 || f >= sim->plan.fpixels || s < 0 || s >= sim->plan.spixels)
        return db_fail(err, DB_ERR_ARGUMENT, "%s %d %d is outside the %d x %d detector", what, f, s, sim->plan.fpixels,
                       sim->plan.spixels);
    if (!db_sim_selected_pos(sim, f, s, NULL))
        return db_fail(err, DB_ERR_ARGUMENT, "%s %d %d is outside the ROI or boxes, or masked: it is not rendered", what, f, s);
    return DB_OK;
}

int db_sim_trace_pixel(db_sim *sim, int fpixel, int spixel, const int *params, int nparams, void *file, db_error *err)
{
    db_error_clear(err);
    if (!sim || !file) return db_fail(err, DB_ERR_ARGUMENT, "db_sim_trace_pixel: no simulation or no file");
    if (!sim->ran) return db_fail(err, DB_ERR_ARGUMENT, "db_sim_trace_pixel: run the simulation first");
    if (nparams > DB_MAX_CHUNK)
        return db_fail(err, DB_ERR_ARGUMENT, "-trace_pixel shows at most %d parameters' tangents (got %d)", DB_MAX_CHUNK, nparams);
    int dh;
    int rc = check_params(params, nparams, &dh, err);
    if (!rc) rc = check_rendered(sim, "-trace_pixel", fpixel, spixel, err);
    if (rc) return rc;
    FILE *o = (FILE *)file;
    fprintf(o, "# dualbragg trace v1: pixel %d %d\n", fpixel, spixel);
    fprintf(o, "# sample layer subS subF source phi_step mosaic_domain carry_slot a_x a_y a_z b_x b_y b_z c_x c_y c_z h k l "
               "F_latt F_cell dI");
    for (int k = 0; k < nparams; k++) fprintf(o, " d(dI)/d(%s)", db_param_name(params[k]));
    fprintf(o, "\n# pixel polar omega capture value");
    for (int k = 0; k < nparams; k++) fprintf(o, " d(value)/d(%s)", db_param_name(params[k]));
    fprintf(o, "\n");
    /* the last run's dh choice, so that the trace shows the values it rendered */
    const void *block;
    if (nparams <= 0) {
        rc = db_sim_block(sim, db_tables_build_n0, NULL, &block, err);
        return rc ? rc : db_cpu_trace_n0(sim, block, 0, fpixel, spixel, file, err);
    }
    db_pass pass = make_pass(params, nparams);
    rc = db_sim_block(sim, db_tables_build_n28, &pass, &block, err);
    return rc ? rc : db_cpu_trace_n28(sim, block, nparams, fpixel, spixel, file, err);
}

int db_sim_printout(db_sim *sim, int fpixel, int spixel, const float *image, void *file, db_error *err)
{
    db_error_clear(err);
    if (!sim || !image || !file) return db_fail(err, DB_ERR_ARGUMENT, "db_sim_printout: no simulation, image or file");
    if (!sim->ran) return db_fail(err, DB_ERR_ARGUMENT, "db_sim_printout: run the simulation first");
    int rc = DB_OK;
    if (fpixel >= 0 || spixel >= 0) rc = check_rendered(sim, "-printout_pixel", fpixel, spixel, err);
    const void *block;
    if (!rc) rc = db_sim_block(sim, db_tables_build_n0, NULL, &block, err);
    if (rc) return rc;
    if (fpixel >= 0 || spixel >= 0) return db_cpu_printout_n0(sim, block, fpixel, spixel, image, file, err);
    for (long i = 0; i < sim->nspans && !rc; i++)
        for (int f = sim->spans[i].f0; f <= sim->spans[i].f1 && !rc; f++)
            rc = db_cpu_printout_n0(sim, block, f, sim->spans[i].s, image, file, err);
    return rc;
}

/* ---- for gradcheck and refinement ---- */

void db_sim_set_fd_mode(db_sim *sim, int mosaic_double, int dh_form)
{
    if (sim->mosaic_double != mosaic_double || sim->force_dh_form != dh_form) db_sim_invalidate(sim);
    sim->mosaic_double = mosaic_double;
    sim->force_dh_form = dh_form;
}

int db_sim_force_decisions(db_sim *sim, const db_decisions *d, db_error *err)
{
    if (!sim) return db_fail(err, DB_ERR_ARGUMENT, "db_sim_force_decisions: no simulation");
    db_sim_invalidate(sim);
    /* nothing forced any more: freed slots must not stay active (the next run read them) */
    db_decisions_free(&sim->forced);
    memset(&sim->forced, 0, sizeof sim->forced);
    if (!d) return DB_OK;
    if (db_decisions_copy(&sim->forced, d)) {
        db_decisions_free(&sim->forced);
        memset(&sim->forced, 0, sizeof sim->forced);
        return db_fail(err, DB_ERR_NOMEM, "out of memory");
    }
    sim->forced.active = 1;
    sim->forced.force_phistep = 0;
    return DB_OK;
}

const db_decisions *db_sim_captured(const db_sim *sim) { return &sim->captured; }

void db_sim_force_phistep(db_sim *sim, int on, double phistep)
{
    db_sim_invalidate(sim);
    sim->forced.force_phistep = on;
    sim->forced.phistep = phistep;
}

int db_sim_set_decision_logs(db_sim *sim, db_decision_log *logs, long count, db_error *err)
{
    int rc = db_sim_selection(sim, err);
    if (rc) return rc;
    if (logs && count != sim->count)
        return db_fail(err, DB_ERR_ARGUMENT, "decision logs for %ld pixels, but %ld are selected", count, sim->count);
    if (logs) {
        /* memory before work: a recorded run stores four decisions per inner iteration (h0, k0, l0 and the
         * lattice factor's zero test; fewer only where -dmin skips a sample), 4 bytes each, in logs that grow as
         * the run goes */
        double it;
        rc = db_sim_work_estimate(sim, &it, 0, NULL, err);
        if (rc) return rc;
        char counts[320];
        snprintf(counts, sizeof counts,
                 "%ld pixels x %.0f inner iterations each (-phisteps, -mosaic_dom, sources, -oversample squared, "
                 "-detector_thicksteps), 16 bytes per iteration: select fewer pixels",
                 count, count > 0 ? it / (double)count : 0.0);
        rc = db_check_memory(16.0 * it, "the decision logs of a finite-difference check", counts, err);
        if (rc) return rc;
    }
    sim->logs = logs;
    sim->nlogs = logs ? count : 0;
    return DB_OK;
}

const unsigned short *db_sim_mask(const db_sim *sim) { return sim->cfg->mask; }
