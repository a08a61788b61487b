/* sim.c: a simulation's life cycle (inputs, random draws, run, statistics) and its output files. */
#include "sim.h"
#include "device.h"
#include "error.h"
#include "fileio.h"
#include "smv.h"
#include "units.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* -mat: nine finite numbers, row by row, and nothing else but white space (spec §3.8; the reference reads the
 * first nine with fscanf and ignores the rest, which hides a wrong or truncated file). At most 64 KiB: nine
 * numbers with any sensible spacing need a few hundred bytes. NUL bytes (the parser would stop there) and long
 * lines are refused by db_read_text. */
#define MAT_FILE_MAX_BYTES ((size_t)64 << 10)
static int read_matrix(const char *path, double m[9], db_error *err)
{
    char *data;
    size_t len;
    int rc = db_read_text("-mat", path, MAT_FILE_MAX_BYTES, "9 numbers", &data, &len, err);
    if (rc) return rc;
    char *p = data;
    int line = 1;
    for (int k = 0; k < 9 && !rc; k++) {
        while (*p && isspace((unsigned char)*p)) {
            if (*p == '\n') line++;
            p++;
        }
        char *end;
        errno = 0;
        m[k] = strtod(p, &end);
        if (end == p && !*p)
            rc = db_fail(err, DB_ERR_FORMAT, "-mat %s:%d: expected 9 numbers (the reciprocal matrix, row by row), found %d", path, line, k);
        else if (end == p || errno == ERANGE || (*end && !isspace((unsigned char)*end)))
            rc = db_fail(err, DB_ERR_FORMAT, "-mat %s:%d: expected a number (matrix element %d of 9)", path, line, k + 1);
        else if (!isfinite(m[k]))
            rc = db_fail(err, DB_ERR_FORMAT, "-mat %s:%d: matrix element %d of 9 is not a finite number", path, line, k + 1);
        p = end;
    }
    while (!rc && *p && isspace((unsigned char)*p)) {
        if (*p == '\n') line++;
        p++;
    }
    if (!rc && *p)
        rc = db_fail(err, DB_ERR_FORMAT, "-mat %s:%d: unexpected text after the 9 matrix elements (expected only 9 numbers)", path, line);
    free(data);
    return rc;
}

/* -sourcefile: X Y Z I lambda per line, separators " \t,;:!"; missing columns take the reference's defaults.
 * Every value must be finite, the position must not be the origin (it gives the source's direction) and a
 * given wavelength must be positive. At most 64 MiB (about a million lines): each source multiplies every pixel's
 * work, so a million sources is far past any run that ends. */
#define SOURCE_FILE_MAX_BYTES ((size_t)64 << 20)
static int read_sources(db_sim *sim, const char *path, db_error *err)
{
    char *data;
    size_t len;
    int rc = db_read_text("-sourcefile", path, SOURCE_FILE_MAX_BYTES, "lines 'X Y Z I lambda'", &data, &len, err);
    if (rc) return rc;
    const char *seps = " \t,;:!\r";
    int cap = 16, n = 0, line = 0;
    sim->src_pos = (double *)malloc((size_t)cap * 3 * sizeof(double));
    sim->src_lambda_file = (double *)malloc((size_t)cap * sizeof(double));
    char *p = data;
    while (!rc && sim->src_pos && sim->src_lambda_file && *p) {
        char *nl = strchr(p, '\n');
        if (nl) *nl = '\0';
        line++;
        double col[5] = {NAN, NAN, NAN, NAN, NAN};
        int ncol = 0;
        char *q = p + strspn(p, seps);
        while (*q && ncol < 5) {
            char *end;
            errno = 0;
            double v = strtod(q, &end);
            if (end == q || errno == ERANGE || !(*end == '\0' || strchr(seps, *end))) {
                rc = db_fail(err, DB_ERR_FORMAT, "-sourcefile %s:%d: expected numbers 'X Y Z I lambda' (m, m, m, weight, m), got '%s'",
                             path, line, q);
                break;
            }
            if (!isfinite(v)) {
                rc = db_fail(err, DB_ERR_FORMAT, "-sourcefile %s:%d: column %d is not a finite number (expected 'X Y Z I lambda')",
                             path, line, ncol + 1);
                break;
            }
            col[ncol++] = v;
            q = end + strspn(end, seps);
        }
        if (!rc && *q) rc = db_fail(err, DB_ERR_FORMAT, "-sourcefile %s:%d: more than 5 columns (expected 'X Y Z I lambda')", path, line);
        if (!rc && ncol > 0) {
            if (n == cap) {
                if (cap > (1 << 24)) {
                    rc = db_fail(err, DB_ERR_FORMAT, "-sourcefile %s:%d: more than %d sources", path, line, cap);
                    break;
                }
                cap *= 2;
                double *a = (double *)realloc(sim->src_pos, (size_t)cap * 3 * sizeof(double));
                if (a) sim->src_pos = a;
                double *b = (double *)realloc(sim->src_lambda_file, (size_t)cap * sizeof(double));
                if (b) sim->src_lambda_file = b;
                if (!a || !b) {
                    free(sim->src_pos);
                    free(sim->src_lambda_file);
                    sim->src_pos = sim->src_lambda_file = NULL;
                    break;
                }
            }
            for (int k = 0; k < 3; k++) sim->src_pos[3 * n + k] = isnan(col[k]) ? -10.0 * sim->plan.beam[k] : col[k];
            sim->src_lambda_file[n] = col[4]; /* NAN: the nominal wavelength (column 4, the weight, is unused) */
            const double *x = &sim->src_pos[3 * n];
            if (x[0] == 0.0 && x[1] == 0.0 && x[2] == 0.0)
                rc = db_fail(err, DB_ERR_FORMAT, "-sourcefile %s:%d: the source position (columns 1-3) is 0 0 0, which gives no direction", path, line);
            else if (!isnan(col[4]) && !(col[4] > 0.0))
                rc = db_fail(err, DB_ERR_FORMAT, "-sourcefile %s:%d: the wavelength (column 5, in m) must be positive", path, line);
            n++;
        }
        if (!nl) break;
        p = nl + 1;
    }
    free(data);
    if (!rc && (!sim->src_pos || !sim->src_lambda_file)) rc = db_fail(err, DB_ERR_NOMEM, "out of memory reading %s", path);
    if (!rc && n == 0) rc = db_fail(err, DB_ERR_FORMAT, "-sourcefile %s: no sources (expected lines 'X Y Z I lambda')", path);
    sim->nsources = n;
    return rc;
}

/* The reference's umat2misset for a proper rotation: rows normalised twice, then the x, y, z angles. */
static void umat_to_misset(const double U[9], double angles[3])
{
    double u[9];
    memcpy(u, U, sizeof u);
    for (int pass = 0; pass < 2; pass++) {
        for (int r = 0; r < 3; r++) {
            double m = sqrt(u[3 * r] * u[3 * r] + u[3 * r + 1] * u[3 * r + 1] + u[3 * r + 2] * u[3 * r + 2]);
            if (m > 0) {
                u[3 * r] /= m;
                u[3 * r + 1] /= m;
                u[3 * r + 2] /= m;
            }
        }
    }
    if (u[6] * u[6] < 1.0) {
        angles[0] = atan2(u[7], u[8]);
        angles[1] = atan2(-u[6], sqrt(u[7] * u[7] + u[8] * u[8]));
        angles[2] = atan2(u[3], u[0]);
    } else {
        angles[0] = atan2(1, 1) * 4;
        angles[1] = atan2(1, 1) * 2;
        angles[2] = atan2(u[1], -u[4]);
    }
}

void db_sim_roi(const db_sim *sim, int roi[4])
{
    roi[0] = sim->plan.roi_xmin;
    roi[1] = sim->plan.roi_xmax;
    roi[2] = sim->plan.roi_ymin;
    roi[3] = sim->plan.roi_ymax;
}

int db_sim_hkl_ranges(const db_sim *sim, int r[6])
{
    if (!sim->have_hkl) return 0;
    r[0] = sim->hkl.h_min, r[1] = sim->hkl.h_max, r[2] = sim->hkl.k_min;
    r[3] = sim->hkl.k_max, r[4] = sim->hkl.l_min, r[5] = sim->hkl.l_max;
    return 1;
}

const double *db_misset_in_force(const db_sim *sim)
{
    static const double zero[3] = {0, 0, 0};
    const db_config *c = sim->cfg;
    return !c->misset_given ? zero : c->misset_random ? sim->misset_random_angles : c->misset;
}

void db_sim_destroy(db_sim *sim)
{
    if (!sim) return;
    db_sim_free_blocks(sim);
    db_sim_free_selection(sim);
    const db_device_backend *b = db_device_backend_of(sim->device);
    if (b && b->context_free) b->context_free(sim->device_ctx);
    free(sim->boxes);
    db_decisions_free(&sim->captured);
    db_decisions_free(&sim->forced);
    db_config_free(sim->cfg);
    db_hkl_free(&sim->hkl);
    db_sf_free(sim);
    free(sim->src_pos);
    free(sim->src_lambda_file);
    free(sim->umats);
    free(sim->mosaic_axes);
    free(sim->mosaic_angle_factors);
    free(sim);
}

int db_sim_create(db_sim **out, const db_config *cfg, const char *fdump_path, db_error *err)
{
    db_error_clear(err);
    if (!out) return db_fail(err, DB_ERR_ARGUMENT, "db_sim_create: no place for the simulation (out is NULL)");
    *out = NULL;
    if (!cfg) return db_fail(err, DB_ERR_ARGUMENT, "db_sim_create: no configuration (NULL)");
    db_sim *sim = (db_sim *)calloc(1, sizeof *sim);
    if (!sim) return db_fail(err, DB_ERR_NOMEM, "out of memory");
    sim->cfg = db_config_clone(cfg);
    if (!sim->cfg) {
        free(sim);
        return db_fail(err, DB_ERR_NOMEM, "out of memory");
    }
    int rc = db_make_plan(sim->cfg, &sim->plan, err);
    const db_config *c = sim->cfg;
    if (!rc && c->hkl_file) {
        rc = db_hkl_read(c->hkl_file, c->default_F, &sim->hkl, err);
        sim->have_hkl = rc == DB_OK;
    } else if (!rc && fdump_path) {
        rc = db_fdump_read(fdump_path, &sim->hkl, err);
        sim->have_hkl = rc == DB_OK;
    } else if (!rc && c->default_F == 0.0) {
        rc = db_fail(err, DB_ERR_ARGUMENT, "no structure factors: give -hkl FILE, or -default_F F (non-zero)");
    }
    if (!rc && c->mat_file) rc = read_matrix(c->mat_file, sim->mat, err);
    if (!rc && c->mat_file) {
        const double *m = sim->mat;
        double det = m[0] * (m[4] * m[8] - m[5] * m[7]) - m[1] * (m[3] * m[8] - m[5] * m[6]) + m[2] * (m[3] * m[7] - m[4] * m[6]);
        if (!(fabs(det) > 0.0) || !isfinite(det))
            rc = db_fail(err, DB_ERR_FORMAT, "%s: the three reciprocal vectors are not independent (determinant %g)", c->mat_file, det);
    }
    if (!rc && c->source_file) rc = read_sources(sim, c->source_file, err);

    /* random draws in the reference's order: -misset random, then the mosaic domains (appendix A1) */
    db_rng_init(&sim->rng);
    long time_seed = -(long)time(NULL);
    sim->noise_seed = c->seed_given ? c->seed : time_seed;
    sim->misset_seed = c->misset_seed_given ? c->misset_seed : time_seed;
    sim->mosaic_seed = c->mosaic_seed;
    if (!rc && c->misset_random) {
        double U[9];
        db_mosaic_rotation_umat(&sim->rng, 90.0f, U, &sim->misset_seed, NULL, NULL);
        umat_to_misset(U, sim->misset_random_angles);
    }
    if (!rc) {
        /* memory before work (sim.h): the image a run fills, then the domains drawn here and the primal tables
         * built below, before any of them is allocated */
        const db_plan *p = &sim->plan;
        char counts[160];
        snprintf(counts, sizeof counts, "%d x %d pixels (-detpixels, or -detsize over -pixel) at 4 bytes each", p->fpixels,
                 p->spixels);
        rc = db_check_memory((double)p->fpixels * p->spixels * sizeof(float), "the detector's float image", counts, err);
        const double nsrc = db_sim_source_count(sim);
        const double domain_bytes = 12.0 * sizeof(double) + sizeof(float); /* umats, mosaic_axes, angle factors */
        if (!rc)
            rc = db_check_table_memory(sim, 0, (double)p->mosaic_domains * domain_bytes + db_tables_bytes_n0(sim, nsrc),
                                       nsrc, err);
    }
    if (!rc) {
        int D = sim->plan.mosaic_domains;
        sim->umats = (double *)malloc((size_t)D * 9 * sizeof(double));
        sim->mosaic_axes = (double *)malloc((size_t)D * 3 * sizeof(double));
        sim->mosaic_angle_factors = (float *)malloc((size_t)D * sizeof(float));
        if (!sim->umats || !sim->mosaic_axes || !sim->mosaic_angle_factors) {
            rc = db_fail(err, DB_ERR_NOMEM, "out of memory for %d mosaic domains", D);
        } else {
            for (int m = 0; m < D; m++) {
                db_mosaic_rotation_umat(&sim->rng, (float)sim->plan.mosaic_spread, sim->umats + 9 * m, &sim->mosaic_seed,
                                        sim->mosaic_axes + 3 * m, sim->mosaic_angle_factors + m);
                if (m == 0) {
                    static const double I[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1};
                    memcpy(sim->umats, I, sizeof I); /* domain 0 is the unrotated crystal (spec §3.14) */
                }
            }
        }
    }
    const void *block;
    if (!rc) rc = db_sim_block(sim, db_tables_build_n0, NULL, &block, err); /* the derived geometry, readable before any run */
    if (!rc && c->boxes_file) rc = db_sim_select_boxes_file(sim, c->boxes_file, err);
    if (!rc) rc = db_sim_use_device(sim, c->device, err);
    if (rc) {
        db_sim_destroy(sim);
        return rc;
    }
    *out = sim;
    return DB_OK;
}

int db_sim_geometry(const db_sim *sim, db_geometry *o)
{
    if (!sim || !o) return DB_ERR_ARGUMENT;
    memset(o, 0, sizeof *o);
    const db_geometry_report *g = &sim->geo;
    o->fpixels = sim->plan.fpixels;
    o->spixels = sim->plan.spixels;
    o->oversample = sim->xtal.oversample;
    o->sources = sim->run_sources;
    o->mosaic_domains = sim->plan.mosaic_domains;
    o->phisteps = sim->plan.phisteps;
    o->steps = sim->steps;
    o->pixel_mm = sim->cfg->pixel_size * DB_MM_PER_M;
    o->distance_mm = g->distance * DB_MM_PER_M;
    o->close_distance_mm = g->close_distance * DB_MM_PER_M;
    o->Fbeam_mm = g->Fbeam * DB_MM_PER_M;
    o->Sbeam_mm = g->Sbeam * DB_MM_PER_M;
    o->Fclose_mm = g->Fclose * DB_MM_PER_M;
    o->Sclose_mm = g->Sclose * DB_MM_PER_M;
    o->ORGX = g->ORGX;
    o->ORGY = g->ORGY;
    memcpy(o->pix0_m, g->pix0, sizeof o->pix0_m);
    memcpy(o->fdet, g->fdet, sizeof o->fdet);
    memcpy(o->sdet, g->sdet, sizeof o->sdet);
    memcpy(o->odet, g->odet, sizeof o->odet);
    memcpy(o->beam, g->beam, sizeof o->beam);
    memcpy(o->cell, sim->xtal.cell, sizeof o->cell);
    o->Na = sim->xtal.Na;
    o->Nb = sim->xtal.Nb;
    o->Nc = sim->xtal.Nc;
    o->interpolate = sim->xtal.interpolate;
    return DB_OK;
}

void db_sim_size(const db_sim *sim, int *fpixels, int *spixels)
{
    if (fpixels) *fpixels = sim ? sim->plan.fpixels : 0;
    if (spixels) *spixels = sim ? sim->plan.spixels : 0;
}

void db_sim_set_progress(db_sim *sim, db_progress_fn fn, void *user)
{
    if (!sim) return;
    sim->progress = fn;
    sim->progress_user = user;
}

int db_sim_has_hkl_table(const db_sim *sim) { return sim && sim->have_hkl; }

int db_sim_summary(const db_sim *sim, db_run_summary *o)
{
    if (!sim || !o || !sim->ran) return DB_ERR_ARGUMENT;
    memset(o, 0, sizeof *o);
    db_sim_geometry(sim, &o->geometry);
    o->max_I = sim->max_I;
    o->max_I_x = sim->max_I_x;
    o->max_I_y = sim->max_I_y;
    o->mean = sim->mean;
    o->rms = sim->rms;
    o->rmsd = sim->rmsd;
    o->solid_angle = sim->omega_sum / sim->steps;
    o->volume = sim->xtal.volume;
    o->interpolation_switched_off = sim->interp_switched_off;
    o->rendered_pixels = sim->rendered;
    return DB_OK;
}

/* ---- outputs ---- */

int db_write_float_image(const char *path, const float *image, size_t n, db_error *err)
{
    if (!path || (!image && n > 0)) return db_fail(err, DB_ERR_ARGUMENT, "no path or no image to write");
    const void *bufs[1] = {image};
    size_t lens[1] = {n * sizeof(float)};
    return db_write_file_atomic(path, bufs, lens, 1, err);
}

int db_write_float64_image(const char *path, const double *image, size_t n, db_error *err)
{
    if (!path || (!image && n > 0)) return db_fail(err, DB_ERR_ARGUMENT, "no path or no image to write");
    const void *bufs[1] = {image};
    size_t lens[1] = {n * sizeof(double)};
    return db_write_file_atomic(path, bufs, lens, 1, err);
}

static void smv_header_values(const db_sim *sim, db_smv_header *h)
{
    const db_config *c = sim->cfg;
    const db_plan *p = &sim->plan;
    const db_geometry_report *g = &sim->geo;
    memset(h, 0, sizeof *h);
    h->fpixels = p->fpixels;
    h->spixels = p->spixels;
    h->pixel_size = c->pixel_size * DB_MM_PER_M;
    h->distance = g->distance * DB_MM_PER_M;
    h->wavelength = c->lambda0 * DB_A_PER_M;
    h->beam_center_x = p->Xbeam * DB_MM_PER_M;
    h->beam_center_y = p->Ybeam * DB_MM_PER_M;
    h->adxv_center_x = g->Fbeam * DB_MM_PER_M;
    h->adxv_center_y = (p->detsize_s - g->Sbeam) * DB_MM_PER_M;
    h->mosflm_center_x = (g->Sbeam - 0.5 * c->pixel_size) * DB_MM_PER_M;
    h->mosflm_center_y = (g->Fbeam - 0.5 * c->pixel_size) * DB_MM_PER_M;
    h->denzo_x_beam = (g->Sbeam - 0.0 * c->pixel_size) * DB_MM_PER_M;
    h->denzo_y_beam = (g->Fbeam - 0.0 * c->pixel_size) * DB_MM_PER_M;
    memcpy(h->dials_origin, g->dials_origin, sizeof h->dials_origin);
    h->xds_orgx = g->ORGX;
    h->xds_orgy = g->ORGY;
    h->close_distance = g->close_distance * DB_MM_PER_M;
    h->phi = c->phi0 * DB_RTD;
    h->osc_start = c->phi0 * DB_RTD;
    h->osc_range = p->osc * DB_RTD;
    h->twotheta = c->detector_twotheta * DB_RTD;
}

static db_roi sim_roi(const db_sim *sim)
{
    db_roi r = {sim->plan.roi_xmin, sim->plan.roi_xmax, sim->plan.roi_ymin, sim->plan.roi_ymax};
    return r;
}

int db_sim_write_int_image(db_sim *sim, const char *path, const float *image, double *scale_used, db_error *err)
{
    if (!sim || !path || !image) return db_fail(err, DB_ERR_ARGUMENT, "db_sim_write_int_image: no simulation, path or image");
    if (!sim->ran) return db_fail(err, DB_ERR_ARGUMENT, "db_sim_write_int_image: run the simulation first");
    double scale = sim->cfg->intfile_scale;
    if (scale <= 0.0) {
        scale = 1.0;
        if (sim->max_I > 0.0) scale = 55000.0 / sim->max_I;
    }
    if (scale_used) *scale_used = scale;
    size_t n = (size_t)sim->plan.fpixels * sim->plan.spixels;
    uint16_t *buf = (uint16_t *)malloc(n * sizeof *buf);
    if (!buf) return db_fail(err, DB_ERR_NOMEM, "out of memory");
    db_roi roi = sim_roi(sim);
    db_int_image(image, sim->plan.fpixels, sim->plan.spixels, &roi, scale, sim->cfg->adc_offset, buf);
    db_smv_header h;
    smv_header_values(sim, &h);
    int rc = db_smv_write(path, &h, buf, err);
    free(buf);
    return rc;
}

int db_sim_write_pgm(db_sim *sim, const char *path, const float *image, double *scale_used, db_error *err)
{
    if (!sim || !path || !image) return db_fail(err, DB_ERR_ARGUMENT, "db_sim_write_pgm: no simulation, path or image");
    if (!sim->ran) return db_fail(err, DB_ERR_ARGUMENT, "db_sim_write_pgm: run the simulation first");
    double scale = sim->cfg->pgm_scale;
    if (scale <= 0.0) {
        scale = sim->cfg->intfile_scale;
        if (scale <= 0.0) {
            scale = 1.0;
            if (sim->max_I > 0.0) scale = 55000.0 / sim->max_I;
        }
        if (sim->rmsd > 0.0) scale = 250.0 / (5.0 * sim->rmsd);
    }
    if (scale_used) *scale_used = scale;
    db_roi roi = sim_roi(sim);
    return db_pgm_write(path, image, sim->plan.fpixels, sim->plan.spixels, &roi, scale, err);
}

int db_sim_write_noise_image(db_sim *sim, const char *path, const float *image, double *photons, int *overloads,
                             db_error *err)
{
    if (!sim || !path || !image) return db_fail(err, DB_ERR_ARGUMENT, "db_sim_write_noise_image: no simulation, path or image");
    if (!sim->ran) return db_fail(err, DB_ERR_ARGUMENT, "db_sim_write_noise_image: run the simulation first");
    size_t n = (size_t)sim->plan.fpixels * sim->plan.spixels;
    uint16_t *buf = (uint16_t *)calloc(n, sizeof *buf);
    if (!buf) return db_fail(err, DB_ERR_NOMEM, "out of memory");
    db_roi roi = sim_roi(sim);
    db_noise_image(&sim->rng, &sim->noise_seed, image, sim->plan.fpixels, sim->plan.spixels, &roi, sim->cfg->adc_offset,
                   buf, photons, overloads);
    db_smv_header h;
    smv_header_values(sim, &h);
    int rc = db_smv_write(path, &h, buf, err);
    free(buf);
    return rc;
}

int db_sim_write_fdump(const db_sim *sim, const char *path, db_error *err)
{
    if (!sim || !path) return db_fail(err, DB_ERR_ARGUMENT, "db_sim_write_fdump: no simulation or path");
    if (!sim->have_hkl) return db_fail(err, DB_ERR_ARGUMENT, "no structure-factor table to write");
    return db_fdump_write(path, &sim->hkl, err);
}
