/* config.c: a configuration's life (defaults, clone, free) and its read accessors. The flags are parsed in
 * config_flags.c, the API's field setters are in config_setters.c, the reference's plan is made in plan.c. */
#define AD_N 0
#include "config.h"
#include "device.h"
#include "beam_centre.h"
#include "error.h"
#include "params.h"
#include "smv.h"
#include "units.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

db_config *db_config_new(void)
{
    db_config *c = (db_config *)calloc(1, sizeof *c);
    if (!c) return NULL;
    c->write_pgm = 1;
    c->write_noise = 1;
    c->Na = c->Nb = c->Nc = 1.0;
    c->shape = DB_SHAPE_SQUARE;
    c->fudge = 1.0;
    c->interpolate = 2;
    c->lambda0 = 1.0e-10;
    c->dispersion = 0.0;
    c->dispsteps = -1;
    c->hdivrange = c->vdivrange = c->hdivstep = c->vdivstep = -1.0;
    c->hdivsteps = c->vdivsteps = -1;
    c->round_div = 1;
    c->fluence = 125932015286227086360700780544.0;
    c->flux = 0.0;
    c->exposure = 1.0;
    c->beamsize = 1e-4;
    c->polarization = 0.0;
    c->mosaic_spread = -1.0;
    c->mosaic_domains = -1;
    c->mosaic_seed = -12345678;
    c->phi0 = 0.0;
    c->osc = -1.0;
    c->phistep = -1.0;
    c->phisteps = -1;
    c->phi_carryover = 1;
    c->convention = DB_CONV_MOSFLM;
    c->pivot = DB_PIVOT_BEAM;
    c->pixel_size = 0.1e-3;
    c->distance = 100.0e-3;
    c->close_distance = NAN;
    c->detsize_f = c->detsize_s = 102.4e-3;
    c->Xbeam = c->Ybeam = c->Xclose = c->Yclose = c->ORGX = c->ORGY = NAN;
    /* the reference's initial vectors; the convention blocks overwrite them unless CUSTOM */
    db_vec3_set(c->beam_vector, 1, 0, 0);
    db_vec3_set(c->fdet_vector, 0, 0, 1);
    db_vec3_set(c->sdet_vector, 0, -1, 0);
    db_vec3_set(c->odet_vector, 1, 0, 0);
    db_vec3_set(c->polar_vector, 0, 0, 1);
    db_vec3_set(c->spindle, 0, 0, 1);
    db_vec3_set(c->twotheta_axis, 0, 1, 0);
    c->detector_thick = 0.0;
    c->detector_thickstep = -1.0;
    c->detector_mu = -1.0;
    c->detector_thicksteps = -1;
    c->oversample = -1;
    c->roi_xmin = c->roi_xmax = c->roi_ymin = c->roi_ymax = -1;
    c->adc_offset = 40.0;
    c->progress = 1;
    c->printout_fpixel = c->printout_spixel = -1;
    c->trace_fpixel = c->trace_spixel = -1;
    c->dump_file = strdup("Fdump.bin");
    c->float_file = strdup("floatimage.bin");
    c->int_file = strdup("intimage.img");
    c->pgm_file = strdup("image.pgm");
    c->noise_file = strdup("noiseimage.img");
    if (!c->dump_file || !c->float_file || !c->int_file || !c->pgm_file || !c->noise_file) {
        db_config_free(c);
        return NULL;
    }
    return c;
}

void db_config_free(db_config *c)
{
    if (!c) return;
    char **strings[] = {&c->hkl_file, &c->mat_file, &c->dump_file, &c->source_file, &c->img_file, &c->mask_file,
                        &c->float_file, &c->int_file, &c->pgm_file, &c->noise_file, &c->float64_file,
                        &c->png_file, &c->grad_list, &c->grad_prefix, &c->boxes_file, &c->grad_F_file};
    for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++) free(*strings[i]);
    free(c->mask);
    free(c);
}

static int dup_string(char **dst, const char *src)
{
    *dst = NULL;
    if (!src) return 0;
    *dst = strdup(src);
    return *dst ? 0 : -1;
}

db_config *db_config_clone(const db_config *src)
{
    db_config *c = (db_config *)malloc(sizeof *c);
    if (!c) return NULL;
    *c = *src;
    int bad = 0;
    bad |= dup_string(&c->hkl_file, src->hkl_file);
    bad |= dup_string(&c->mat_file, src->mat_file);
    bad |= dup_string(&c->dump_file, src->dump_file);
    bad |= dup_string(&c->source_file, src->source_file);
    bad |= dup_string(&c->img_file, src->img_file);
    bad |= dup_string(&c->mask_file, src->mask_file);
    bad |= dup_string(&c->float_file, src->float_file);
    bad |= dup_string(&c->int_file, src->int_file);
    bad |= dup_string(&c->pgm_file, src->pgm_file);
    bad |= dup_string(&c->noise_file, src->noise_file);
    bad |= dup_string(&c->float64_file, src->float64_file);
    bad |= dup_string(&c->png_file, src->png_file);
    bad |= dup_string(&c->grad_list, src->grad_list);
    bad |= dup_string(&c->grad_prefix, src->grad_prefix);
    bad |= dup_string(&c->boxes_file, src->boxes_file);
    bad |= dup_string(&c->grad_F_file, src->grad_F_file);
    c->mask = NULL;
    if (src->mask) {
        size_t n = (size_t)src->mask_fpixels * (size_t)src->mask_spixels;
        c->mask = (unsigned short *)malloc(n * sizeof *c->mask);
        if (c->mask) memcpy(c->mask, src->mask, n * sizeof *c->mask);
        else bad = 1;
    }
    if (bad) {
        db_config_free(c);
        return NULL;
    }
    return c;
}

/* public wrappers */
db_config *db_config_create(void) { return db_config_new(); }
void db_config_destroy(db_config *cfg) { db_config_free(cfg); }
/* The getters have no error channel: a NULL configuration gives the value the header names (no warnings, no
 * path, 0), never a crash. */
const char *db_config_warnings(const db_config *cfg) { return cfg ? cfg->warnings : ""; }

const char *db_config_output_path(const db_config *c, db_output_kind kind)
{
    if (!c) return NULL;
    switch (kind) {
    case DB_OUT_FLOAT: return c->float_file;
    case DB_OUT_INT: return c->int_file;
    case DB_OUT_PGM: return c->write_pgm ? c->pgm_file : NULL;
    case DB_OUT_NOISE: return c->write_noise ? c->noise_file : NULL;
    case DB_OUT_FLOAT64: return c->float64_file;
    case DB_OUT_FDUMP: return c->dump_file;
    case DB_OUT_PNG: return c->png_file;
    }
    return NULL;
}

int db_config_has_hkl(const db_config *c) { return c && c->hkl_file != NULL; }
int db_config_phi_carryover(const db_config *c) { return c ? c->phi_carryover : 1; }
int db_config_input_files(const db_config *c, const char *paths[DB_CONFIG_MAX_INPUTS], const char *flags[DB_CONFIG_MAX_INPUTS])
{
    const char *p[DB_CONFIG_MAX_INPUTS] = {c->hkl_file, c->mat_file, c->source_file, c->mask_file, c->img_file, c->boxes_file};
    static const char *const f[DB_CONFIG_MAX_INPUTS] = {"-hkl", "-mat", "-sourcefile", "-mask", "-img", "-boxes"};
    int n = 0;
    for (int k = 0; k < DB_CONFIG_MAX_INPUTS; k++)
        if (p[k]) {
            paths[n] = p[k];
            flags[n++] = f[k];
        }
    return n;
}
const char *db_config_grad_list(const db_config *c) { return c ? c->grad_list : NULL; }
int db_config_grad_chunk(const db_config *c) { return c ? c->grad_chunk : 0; }
int db_config_grad_png(const db_config *c) { return c ? c->grad_png : 0; }
const char *db_config_grad_F_file(const db_config *c) { return c ? c->grad_F_file : NULL; }
/* the pixel outputs may be NULL (only the answer wanted); a NULL configuration answers 0 with -1 -1 */
int db_config_printout(const db_config *c, int *f, int *s)
{
    if (f) *f = c ? c->printout_fpixel : -1;
    if (s) *s = c ? c->printout_spixel : -1;
    return c ? c->printout : 0;
}

int db_config_trace_pixel(const db_config *c, int *f, int *s)
{
    if (f) *f = c ? c->trace_fpixel : -1;
    if (s) *s = c ? c->trace_spixel : -1;
    return c && c->trace_fpixel >= 0;
}

/* PREFIX for derivative images: -gradprefix, else the float file's name without extension plus ".d". A prefix
 * that does not fit is not handed back cut short (files would be written under another name): buf becomes "". */
int db_config_grad_prefix(const db_config *c, char *buf, size_t size)
{
    if (!buf || size == 0) return -1;
    buf[0] = '\0';
    if (!c || !c->float_file) return -1;
    int n;
    if (c->grad_prefix) {
        n = snprintf(buf, size, "%s", c->grad_prefix);
    } else {
        const char *ff = c->float_file;
        const char *slash = strrchr(ff, '/');
        const char *dot = strrchr(ff, '.');
        size_t stem = (dot && (!slash || dot > slash)) ? (size_t)(dot - ff) : strlen(ff);
        n = stem < (size_t)INT_MAX ? snprintf(buf, size, "%.*s.d", (int)stem, ff) : -1;
    }
    if (n < 0 || (size_t)n >= size) {
        buf[0] = '\0';
        return -1;
    }
    return 0;
}
int db_config_progress(const db_config *c) { return c ? c->progress : 0; }
