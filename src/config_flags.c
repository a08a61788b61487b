/* config_flags.c: the nanoBragg-style command line -> db_config: the flag table (spellings -> ids), the argument
 * readers, each flag's effect (handle_flag), SMV header values (-img, -mask) and the convention warnings. */
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

/* ------------------------------------------------------------------------------------------------ */
/* argument parsing */

typedef struct arg_cursor {
    int argc;
    const char *const *argv;
    int i; /* index of the flag being handled */
    db_error *err;
} arg_cursor;

static int need_args(arg_cursor *cur, int n, const char *what)
{
    if (cur->i + n >= cur->argc)
        return db_fail(cur->err, DB_ERR_ARGUMENT, "%s expects %s (%d value%s), but the command line ends",
                       cur->argv[cur->i], what, n, n == 1 ? "" : "s");
    return DB_OK;
}

static int parse_double_at(arg_cursor *cur, int k, const char *what, double *out)
{
    const char *s = cur->argv[cur->i + k];
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || errno == ERANGE || !isfinite(v))
        return db_fail(cur->err, DB_ERR_ARGUMENT, "%s expects %s, got '%s'", cur->argv[cur->i], what, s);
    *out = v;
    return DB_OK;
}

static int parse_int_at(arg_cursor *cur, int k, const char *what, long *out)
{
    const char *s = cur->argv[cur->i + k];
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end != '\0' || errno == ERANGE || v > 2147483647L || v < -2147483647L)
        return db_fail(cur->err, DB_ERR_ARGUMENT, "%s expects %s (an integer), got '%s'", cur->argv[cur->i], what, s);
    *out = v;
    return DB_OK;
}

static int take_double(arg_cursor *cur, const char *what, double *out)
{
    int rc = need_args(cur, 1, what);
    if (rc) return rc;
    return parse_double_at(cur, 1, what, out);
}

static int take_int(arg_cursor *cur, const char *what, long *out)
{
    int rc = need_args(cur, 1, what);
    if (rc) return rc;
    return parse_int_at(cur, 1, what, out);
}

static int take_vec3(arg_cursor *cur, const char *what, double v[3])
{
    int rc = need_args(cur, 3, what);
    for (int k = 0; k < 3 && !rc; k++) rc = parse_double_at(cur, k + 1, what, &v[k]);
    return rc;
}

/* two pixel indices, fast then slow (-printout_pixel, -trace_pixel) */
static int take_pixel(arg_cursor *cur, long *f, long *s)
{
    int rc = need_args(cur, 2, "a pixel: fast slow");
    if (!rc) rc = parse_int_at(cur, 1, "a pixel: fast slow", f);
    if (!rc) rc = parse_int_at(cur, 2, "a pixel: fast slow", s);
    return rc;
}

static int take_string(arg_cursor *cur, const char *what, char **out)
{
    int rc = need_args(cur, 1, what);
    if (rc) return rc;
    if (cur->argv[cur->i + 1][0] == '\0') return db_fail(cur->err, DB_ERR_ARGUMENT, "%s expects %s, got an empty string", cur->argv[cur->i], what);
    char *s = strdup(cur->argv[cur->i + 1]);
    if (!s) return db_fail(cur->err, DB_ERR_NOMEM, "out of memory");
    free(*out);
    *out = s;
    return DB_OK;
}

static int is_number(const char *s)
{
    char *end;
    strtod(s, &end);
    return end != s && *end == '\0';
}

/* The flags. Each spelling is matched exactly; aliases share an action. */
typedef enum {
    F_HKL, F_DUMP, F_DEFAULT_F, F_MAT, F_CELL, F_MISSET, F_MISSET_SEED, F_N, F_NA, F_NB, F_NC,
    F_SAMPLESIZE, F_SAMPLE_X, F_SAMPLE_Y, F_SAMPLE_Z, F_IGNORED_1, F_LAMBDA, F_ENERGY, F_DISPERSION,
    F_DISPSTEPS, F_DIVERGENCE, F_HDIVRANGE, F_VDIVRANGE, F_HDIVSTEP, F_VDIVSTEP, F_HDIVSTEPS, F_VDIVSTEPS,
    F_DIVSTEPS, F_ROUND_DIV, F_SQUARE_DIV, F_SOURCEFILE, F_IGNORED_0, F_FLUENCE, F_FLUX, F_EXPOSURE,
    F_BEAMSIZE, F_MOSAIC, F_MOSAIC_DOM, F_MOSAIC_SEED, F_PHI, F_OSC, F_PHISTEP, F_PHISTEPS, F_SPINDLE,
    F_DISTANCE, F_CLOSE_DISTANCE, F_PIXEL, F_DETSIZE, F_DETSIZE_F, F_DETSIZE_S, F_DETPIXELS, F_DETPIXELS_F,
    F_DETPIXELS_S, F_XBEAM, F_YBEAM, F_XCLOSE, F_YCLOSE, F_ORGX, F_ORGY, F_MOSFLM, F_DENZO, F_ADXV, F_XDS,
    F_DIALS, F_FDET, F_SDET, F_ODET, F_BEAMV, F_POLARV, F_TWOTHETA_AXIS, F_PIX0, F_PIVOT, F_ROTX, F_ROTY,
    F_ROTZ, F_TWOTHETA, F_CURVED, F_POINT_PIXEL, F_DET_ABS, F_DET_THICK, F_DET_THICKSTEPS, F_OVERSAMPLE,
    F_OS_THICK, F_OS_POLAR, F_OS_OMEGA, F_POLAR, F_NOPOLAR, F_DMIN, F_ROI, F_MASK, F_IMG, F_ROUND_XTAL,
    F_SQUARE_XTAL, F_GAUSS_XTAL, F_TOPHAT, F_FUDGE, F_INTERPOLATE, F_NOINTERPOLATE, F_WATER, F_STOLFILE,
    F_FLOATFILE, F_INTFILE, F_PGMFILE, F_NOISEFILE, F_FLOATFILE64, F_NONOISE, F_NOPGM, F_SCALE, F_PGMSCALE,
    F_ADC, F_SEED, F_PRINTOUT, F_PRINTOUT_PIXEL, F_NOPROGRESS, F_PROGRESS, F_PHI_CARRYOVER, F_GRAD, F_GRADPREFIX,
    F_GRAD_CHUNK, F_TRACE_PIXEL, F_BOXES, F_PNGFILE, F_GRADPNG, F_DEVICE, F_GRAD_F
} flag_id;

typedef struct flag_spec {
    const char *name;
    flag_id id;
} flag_spec;

static const flag_spec FLAGS[] = {
    {"-hkl", F_HKL}, {"-dump", F_DUMP}, {"-dumpfile", F_DUMP}, {"-default_F", F_DEFAULT_F},
    {"-mat", F_MAT}, {"-matrix", F_MAT}, {"-cell", F_CELL}, {"-misset", F_MISSET},
    {"-misset_seed", F_MISSET_SEED}, {"-N", F_N}, {"-Na", F_NA}, {"-Nb", F_NB}, {"-Nc", F_NC},
    {"-samplesize", F_SAMPLESIZE}, {"-sample_size", F_SAMPLESIZE}, {"-xtalsize", F_SAMPLESIZE},
    {"-xtal_size", F_SAMPLESIZE}, {"-sample_thick", F_SAMPLE_X}, {"-sample_x", F_SAMPLE_X},
    {"-xtal_thick", F_SAMPLE_X}, {"-xtal_x", F_SAMPLE_X}, {"-sample_width", F_SAMPLE_Y},
    {"-sample_y", F_SAMPLE_Y}, {"-xtal_width", F_SAMPLE_Y}, {"-xtal_y", F_SAMPLE_Y}, {"-width", F_SAMPLE_Y},
    {"-sample_heigh", F_SAMPLE_Z}, {"-sample_height", F_SAMPLE_Z}, {"-sample_z", F_SAMPLE_Z},
    {"-xtal_heigh", F_SAMPLE_Z}, {"-xtal_height", F_SAMPLE_Z}, {"-xtal_z", F_SAMPLE_Z}, {"-heigh", F_SAMPLE_Z},
    {"-height", F_SAMPLE_Z}, {"-density", F_IGNORED_1}, {"-sample_den", F_IGNORED_1},
    {"-sample_density", F_IGNORED_1}, {"-MW", F_IGNORED_1}, {"-molec", F_IGNORED_1},
    {"-molecules", F_IGNORED_1}, {"-lambda", F_LAMBDA}, {"-wave", F_LAMBDA}, {"-energy", F_ENERGY},
    {"-dispersion", F_DISPERSION}, {"-dispsteps", F_DISPSTEPS}, {"-divergence", F_DIVERGENCE},
    {"-hdivrange", F_HDIVRANGE}, {"-vdivrange", F_VDIVRANGE}, {"-hdivstep", F_HDIVSTEP},
    {"-vdivstep", F_VDIVSTEP}, {"-hdivsteps", F_HDIVSTEPS}, {"-vdivsteps", F_VDIVSTEPS},
    {"-divsteps", F_DIVSTEPS}, {"-round_div", F_ROUND_DIV}, {"-square_div", F_SQUARE_DIV},
    {"-sourcefile", F_SOURCEFILE}, {"-coherent", F_IGNORED_0}, {"-fluence", F_FLUENCE}, {"-flux", F_FLUX},
    {"-exposure", F_EXPOSURE}, {"-beamsize", F_BEAMSIZE}, {"-mosaic", F_MOSAIC}, {"-mosaici", F_MOSAIC},
    {"-mosaicity", F_MOSAIC}, {"-mosaic_spr", F_MOSAIC}, {"-mosaic_spread", F_MOSAIC},
    {"-mosaic_dom", F_MOSAIC_DOM}, {"-mosaic_domains", F_MOSAIC_DOM}, {"-mosaic_seed", F_MOSAIC_SEED},
    {"-phi", F_PHI}, {"-osc", F_OSC}, {"-phistep", F_PHISTEP}, {"-phisteps", F_PHISTEPS},
    {"-spindle_axis", F_SPINDLE}, {"-distance", F_DISTANCE}, {"-close_distance", F_CLOSE_DISTANCE},
    {"-pixel", F_PIXEL}, {"-detsize", F_DETSIZE}, {"-detsize_f", F_DETSIZE_F}, {"-detsize_s", F_DETSIZE_S},
    {"-detpixels", F_DETPIXELS}, {"-detpixels_f", F_DETPIXELS_F}, {"-detpixels_x", F_DETPIXELS_F},
    {"-detpixels_s", F_DETPIXELS_S}, {"-detpixels_y", F_DETPIXELS_S}, {"-Xbeam", F_XBEAM}, {"-Ybeam", F_YBEAM},
    {"-Xclose", F_XCLOSE}, {"-Yclose", F_YCLOSE}, {"-ORGX", F_ORGX}, {"-ORGY", F_ORGY}, {"-mosflm", F_MOSFLM},
    {"-denzo", F_DENZO}, {"-adxv", F_ADXV}, {"-xds", F_XDS}, {"-dials", F_DIALS}, {"-fdet_vector", F_FDET},
    {"-sdet_vector", F_SDET}, {"-odet_vector", F_ODET}, {"-beam_vector", F_BEAMV},
    {"-polar_vector", F_POLARV}, {"-twotheta_axis", F_TWOTHETA_AXIS}, {"-pix0_vector", F_PIX0},
    {"-pix0_vector_mm", F_PIX0}, {"-pivot", F_PIVOT}, {"-detector_rotx", F_ROTX}, {"-detector_roty", F_ROTY},
    {"-detector_rotz", F_ROTZ}, {"-twotheta", F_TWOTHETA}, {"-curved_det", F_CURVED},
    {"-curved_detector", F_CURVED}, {"-point_pixel", F_POINT_PIXEL}, {"-detector_abs", F_DET_ABS},
    {"-detector_absorb", F_DET_ABS}, {"-detector_absorption", F_DET_ABS}, {"-detector_thick", F_DET_THICK},
    {"-detector_thicksteps", F_DET_THICKSTEPS}, {"-thicksteps", F_DET_THICKSTEPS},
    {"-oversample", F_OVERSAMPLE}, {"-oversample_thick", F_OS_THICK}, {"-oversample_polar", F_OS_POLAR},
    {"-oversample_omega", F_OS_OMEGA}, {"-polar", F_POLAR}, {"-nopolar", F_NOPOLAR}, {"-dmin", F_DMIN},
    {"-roi", F_ROI}, {"-mask", F_MASK}, {"-img", F_IMG}, {"-round_xtal", F_ROUND_XTAL},
    {"-square_xtal", F_SQUARE_XTAL}, {"-gauss_xtal", F_GAUSS_XTAL}, {"-tophat_spots", F_TOPHAT},
    {"-binary_spots", F_TOPHAT}, {"-fudge", F_FUDGE}, {"-interpolate", F_INTERPOLATE},
    {"-nointerpolate", F_NOINTERPOLATE}, {"-water", F_WATER}, {"-stol", F_STOLFILE}, {"-4stol", F_STOLFILE},
    {"-Q", F_STOLFILE}, {"-stolout", F_STOLFILE}, {"-floatfile", F_FLOATFILE}, {"-floatimage", F_FLOATFILE},
    {"-intfile", F_INTFILE}, {"-intimage", F_INTFILE}, {"-pgmfile", F_PGMFILE}, {"-pgmimage", F_PGMFILE},
    {"-noisefile", F_NOISEFILE}, {"-noiseimage", F_NOISEFILE}, {"-floatfile64", F_FLOATFILE64},
    {"-nonoise", F_NONOISE}, {"-nopgm", F_NOPGM}, {"-scale", F_SCALE}, {"-pgmscale", F_PGMSCALE},
    {"-adc", F_ADC}, {"-adcoffset", F_ADC}, {"-seed", F_SEED}, {"-printout", F_PRINTOUT},
    {"-printout_pixel", F_PRINTOUT_PIXEL}, {"-noprogress", F_NOPROGRESS}, {"-progress", F_PROGRESS},
    {"-phi_carryover", F_PHI_CARRYOVER}, {"-grad", F_GRAD}, {"-gradprefix", F_GRADPREFIX},
    {"-grad_chunk", F_GRAD_CHUNK}, {"-trace_pixel", F_TRACE_PIXEL}, {"-boxes", F_BOXES}, {"-device", F_DEVICE},
    {"-pngfile", F_PNGFILE}, {"-gradpng", F_GRADPNG}, {"-grad_F", F_GRAD_F},
};

static const flag_spec *find_flag(const char *name)
{
    for (size_t i = 0; i < sizeof FLAGS / sizeof FLAGS[0]; i++)
        if (strcmp(FLAGS[i].name, name) == 0) return &FLAGS[i];
    return NULL;
}

static void add_warning(db_config *c, const char *fmt, const char *arg)
{
    size_t used = strlen(c->warnings);
    if (used + 1 >= sizeof c->warnings) return;
    snprintf(c->warnings + used, sizeof c->warnings - used, fmt, arg);
}

/* -img and -mask headers set the geometry before the command line is read (spec §3.1). */
static int apply_smv_header(db_config *c, const char *path, int is_mask, db_error *err)
{
    db_smv_image img;
    int rc = db_smv_read_flag(is_mask ? "-mask" : "-img", path, &img, err);
    if (rc) return rc;
    double v;
    c->fpixels = img.fpixels;
    c->spixels = img.spixels;
    if (db_smv_header_double(&img, "PIXEL_SIZE", &v)) c->pixel_size = v / DB_MM_PER_M;
    c->detsize_f = c->pixel_size * c->fpixels;
    c->detsize_s = c->pixel_size * c->spixels;
    if (db_smv_header_double(&img, "DISTANCE", &v)) c->distance = db_param_to_internal(DB_P_DISTANCE, v);
    if (db_smv_header_double(&img, "CLOSE_DISTANCE", &v)) c->close_distance = v / DB_MM_PER_M;
    if (db_smv_header_double(&img, "WAVELENGTH", &v)) c->lambda0 = db_param_to_internal(DB_P_LAMBDA, v);
    if (db_smv_header_double(&img, "BEAM_CENTER_X", &v)) c->Xbeam = db_param_to_internal(DB_P_XBEAM, v);
    /* the reference flips Y for a mask but not for an -img header */
    if (db_smv_header_double(&img, "BEAM_CENTER_Y", &v)) c->Ybeam = is_mask ? c->detsize_s - db_param_to_internal(DB_P_YBEAM, v) : db_param_to_internal(DB_P_YBEAM, v);
    if (db_smv_header_double(&img, "XDS_ORGX", &v)) c->ORGX = v;
    if (db_smv_header_double(&img, "XDS_ORGY", &v)) c->ORGY = v;
    if (db_smv_header_double(&img, "PHI", &v)) c->phi0 = db_param_to_internal(DB_P_PHI0, v);
    if (db_smv_header_double(&img, "OSC_RANGE", &v)) c->osc = db_param_to_internal(DB_P_OSC, v);
    if (is_mask) {
        size_t n = (size_t)img.fpixels * (size_t)img.spixels;
        free(c->mask);
        c->mask = (unsigned short *)malloc(n * sizeof *c->mask);
        if (!c->mask) {
            db_smv_image_free(&img);
            return db_fail(err, DB_ERR_NOMEM, "out of memory reading mask %s", path);
        }
        memcpy(c->mask, img.data, n * sizeof *c->mask);
        c->mask_fpixels = img.fpixels;
        c->mask_spixels = img.spixels;
    }
    db_smv_image_free(&img);
    return DB_OK;
}

/* The flags by group, each a switch over its flags' ids: NOT_THIS_GROUP for another group's flag, else DB_OK or
 * the error, *used the values consumed. */
#define NOT_THIS_GROUP (-1)

/* The crystal, its orientation and size, and the structure factors */
static int crystal_flags(db_config *c, arg_cursor *cur, flag_id id, int *used)
{
    double d = 0.0, v3[3];
    long n = 0; /* a failed take_int leaves it: defined, and unused */
    int rc = DB_OK;
    const char *flag = cur->argv[cur->i];
    switch (id) {
    case F_HKL: rc = take_string(cur, "a .hkl file", &c->hkl_file); *used = 1; break;
    case F_DUMP: rc = take_string(cur, "a file name", &c->dump_file); *used = 1; break;
    case F_DEFAULT_F: rc = take_double(cur, "a structure factor", &c->default_F); *used = 1; break;
    case F_MAT: rc = take_string(cur, "a matrix file", &c->mat_file); *used = 1; break;
    case F_CELL: {
        double v[6] = {0, 0, 0, 0, 0, 0};
        int k = 0;
        while (k < 6 && cur->i + 1 + k < cur->argc && is_number(cur->argv[cur->i + 1 + k])) {
            v[k] = strtod(cur->argv[cur->i + 1 + k], NULL);
            k++;
        }
        if (k == 0) return db_fail(cur->err, DB_ERR_ARGUMENT, "-cell expects a [b c [alpha beta gamma]] in Angstrom and degrees");
        if (k < 6 && cur->i + 1 + k < cur->argc && cur->argv[cur->i + 1 + k][0] != '-')
            return db_fail(cur->err, DB_ERR_ARGUMENT, "-cell expects numbers (a b c in Angstrom, alpha beta gamma in degrees), got '%s'",
                           cur->argv[cur->i + 1 + k]);
        /* inf and nan are not numbers a flag can take (as in take_double) */
        for (int j = 0; j < k; j++)
            if (!isfinite(v[j]))
                return db_fail(cur->err, DB_ERR_ARGUMENT, "-cell expects finite numbers (a b c in Angstrom, alpha beta gamma in degrees), got '%s'",
                               cur->argv[cur->i + 1 + j]);
        for (int j = 0; j < k; j++)
            if (j < 3 ? !(v[j] > 0.0) : !(v[j] > 0.0 && v[j] < 180.0))
                return db_fail(cur->err, DB_ERR_GEOMETRY, "-cell: %s must be %s (got %g)", j < 3 ? "a, b and c" : "the angles",
                               j < 3 ? "positive" : "between 0 and 180 degrees", v[j]);
        if (k > 3) {
            /* the cell must close: with the missing angles at 90 degrees, the three angles of a parallelepiped's
             * corner satisfy alpha + beta + gamma < 360 and each is smaller than the sum of the other two
             * (otherwise the volume is zero or its square negative, and the reciprocal cell is NaN) */
            double al = v[3], be = k > 4 ? v[4] : 90.0, ga = k > 5 ? v[5] : 90.0;
            if (!(al + be + ga < 360.0) || !(al < be + ga) || !(be < al + ga) || !(ga < al + be))
                return db_fail(cur->err, DB_ERR_GEOMETRY,
                               "-cell: the angles %g %g %g do not close a cell (expected alpha + beta + gamma < 360 and each "
                               "angle smaller than the sum of the other two)", al, be, ga);
        }
        c->user_cell = 1;
        c->cell_a = v[0];
        c->cell_b = v[1];
        c->cell_c = v[2];
        c->cell_alpha = db_param_to_internal(DB_P_ALPHA, v[3]);
        c->cell_beta = db_param_to_internal(DB_P_BETA, v[4]);
        c->cell_gamma = db_param_to_internal(DB_P_GAMMA, v[5]);
        *used = k;
        break;
    }
    case F_MISSET:
        rc = need_args(cur, 1, "three angles in degrees or 'random'");
        if (rc) return rc;
        if (strcmp(cur->argv[cur->i + 1], "random") == 0 || strcmp(cur->argv[cur->i + 1], "rand") == 0) {
            c->misset_random = 1;
            c->misset_given = 1;
            *used = 1;
            break;
        }
        rc = take_vec3(cur, "three angles in degrees or 'random'", v3);
        if (rc) return rc;
        c->misset_random = 0;
        c->misset_given = 1;
        for (int k = 0; k < 3; k++) c->misset[k] = db_param_to_internal(DB_P_MISSET_X + k, v3[k]);
        *used = 3;
        break;
    case F_MISSET_SEED: rc = take_int(cur, "a seed", &n); c->misset_seed = -n; c->misset_seed_given = 1; *used = 1; break;
    /* real values are accepted (the reference truncates with atoi; integers behave exactly as there) */
    case F_N:
    case F_NA:
    case F_NB:
    case F_NC:
        rc = take_double(cur, "a number of unit cells", &d);
        if (rc) return rc;
        /* the reference clips 0 and negative counts to 1 cell without a word; a crystal has at least one */
        rc = db_param_check_value(DB_P_NA, d, flag, cur->err); /* the rule of na, nb and nc alike */
        if (rc) return rc;
        if (id == F_N || id == F_NA) c->Na = d;
        if (id == F_N || id == F_NB) c->Nb = d;
        if (id == F_N || id == F_NC) c->Nc = d;
        *used = 1;
        break;
    case F_SAMPLESIZE: rc = take_double(cur, "a size in mm", &d); c->sample_x = c->sample_y = c->sample_z = d / DB_MM_PER_M; *used = 1; break;
    case F_SAMPLE_X: rc = take_double(cur, "a size in mm", &d); c->sample_x = d / DB_MM_PER_M; *used = 1; break;
    case F_SAMPLE_Y: rc = take_double(cur, "a size in mm", &d); c->sample_y = d / DB_MM_PER_M; *used = 1; break;
    case F_SAMPLE_Z: rc = take_double(cur, "a size in mm", &d); c->sample_z = d / DB_MM_PER_M; *used = 1; break;
    case F_IGNORED_1:
        rc = take_double(cur, "a number", &d);
        add_warning(c, "warning: %s is accepted for compatibility but has no effect\n", flag);
        *used = 1;
        break;
    case F_IGNORED_0: add_warning(c, "warning: %s is accepted for compatibility but has no effect\n", flag); break;
    case F_STOLFILE:
        rc = need_args(cur, 1, "a file name");
        add_warning(c, "warning: %s is accepted for compatibility but has no effect (it belongs to nonBragg)\n", flag);
        *used = 1;
        break;
    default: return NOT_THIS_GROUP;
    }
    return rc;
}

/* The beam: wavelength, spectrum, divergence, sources, photons; mosaic domains and phi */
static int beam_flags(db_config *c, arg_cursor *cur, flag_id id, int *used)
{
    double d = 0.0;
    long n = 0; /* a failed take_int leaves it: defined, and unused */
    int rc = DB_OK;
    const char *flag = cur->argv[cur->i];
    switch (id) {
    case F_LAMBDA: rc = take_double(cur, "a wavelength in Angstrom", &d); c->lambda0 = db_param_to_internal(DB_P_LAMBDA, d); *used = 1; break;
    case F_ENERGY:
        rc = take_double(cur, "a photon energy in eV", &d);
        if (!rc && !(d > 0.0)) return db_fail(cur->err, DB_ERR_GEOMETRY, "-energy must be positive (got %g eV)", d);
        c->lambda0 = (12398.42 / d) / 1.0e10;
        *used = 1;
        break;
    case F_DISPERSION: rc = take_double(cur, "a spread in percent", &d); c->dispersion = d / 100.0; *used = 1; break;
    case F_DISPSTEPS:
        rc = take_int(cur, "a number of wavelengths", &n);
        if (!rc && n <= 0) return db_fail(cur->err, DB_ERR_GEOMETRY, "-dispsteps must be a positive number of wavelengths (got %ld)", n);
        c->dispsteps = (int)n;
        *used = 1;
        break;
    case F_DIVERGENCE: rc = take_double(cur, "a range in mrad", &d); c->hdivrange = c->vdivrange = d / DB_MRAD_PER_RAD; *used = 1; break;
    case F_HDIVRANGE: rc = take_double(cur, "a range in mrad", &d); c->hdivrange = d / DB_MRAD_PER_RAD; *used = 1; break;
    case F_VDIVRANGE: rc = take_double(cur, "a range in mrad", &d); c->vdivrange = d / DB_MRAD_PER_RAD; *used = 1; break;
    case F_HDIVSTEP: rc = take_double(cur, "a step in mrad", &d); c->hdivstep = d / DB_MRAD_PER_RAD; *used = 1; break;
    case F_VDIVSTEP: rc = take_double(cur, "a step in mrad", &d); c->vdivstep = d / DB_MRAD_PER_RAD; *used = 1; break;
    case F_HDIVSTEPS: rc = take_int(cur, "a number of steps", &n); c->hdivsteps = (int)n; *used = 1; break;
    case F_VDIVSTEPS: rc = take_int(cur, "a number of steps", &n); c->vdivsteps = (int)n; *used = 1; break;
    case F_DIVSTEPS: rc = take_int(cur, "a number of steps", &n); c->hdivsteps = c->vdivsteps = (int)n; *used = 1; break;
    case F_ROUND_DIV: c->round_div = 1; break;
    case F_SQUARE_DIV: c->round_div = 0; break;
    case F_SOURCEFILE: rc = take_string(cur, "a source file", &c->source_file); *used = 1; break;
    case F_FLUENCE:
        rc = take_double(cur, "a fluence in photons/m^2", &d);
        if (!rc && d < 0.0) return db_fail(cur->err, DB_ERR_GEOMETRY, "-fluence must not be negative (got %g photons/m^2)", d);
        c->fluence = d;
        *used = 1;
        break;
    case F_FLUX: rc = take_double(cur, "a flux in photons/s", &c->flux); *used = 1; break;
    case F_EXPOSURE: rc = take_double(cur, "a time in s", &c->exposure); *used = 1; break;
    case F_BEAMSIZE: rc = take_double(cur, "a size in mm", &d); c->beamsize = d / DB_MM_PER_M; *used = 1; break;
    case F_MOSAIC:
        rc = take_double(cur, "a spread in degrees", &d);
        if (!rc) rc = db_param_check_value(DB_P_MOSAIC, d, flag, cur->err);
        if (rc) return rc;
        c->mosaic_spread = db_param_to_internal(DB_P_MOSAIC, d);
        *used = 1;
        break;
    case F_MOSAIC_DOM:
        rc = take_int(cur, "a number of domains", &n);
        if (!rc && n <= 0) return db_fail(cur->err, DB_ERR_GEOMETRY, "%s must be a positive number of domains (got %ld)", flag, n);
        c->mosaic_domains = (int)n;
        *used = 1;
        break;
    case F_MOSAIC_SEED: rc = take_int(cur, "a seed", &n); c->mosaic_seed = -n; *used = 1; break;
    case F_PHI: rc = take_double(cur, "an angle in degrees", &d); c->phi0 = db_param_to_internal(DB_P_PHI0, d); *used = 1; break;
    case F_OSC: rc = take_double(cur, "an angle in degrees", &d); c->osc = db_param_to_internal(DB_P_OSC, d); *used = 1; break;
    case F_PHISTEP: rc = take_double(cur, "an angle in degrees", &d); c->phistep = d / DB_RTD; *used = 1; break;
    case F_PHISTEPS:
        rc = take_int(cur, "a number of steps", &n);
        if (!rc && n <= 0) return db_fail(cur->err, DB_ERR_GEOMETRY, "-phisteps must be a positive number of steps (got %ld)", n);
        c->phisteps = (int)n;
        *used = 1;
        break;
    case F_SPINDLE: rc = take_vec3(cur, "a vector x y z", c->spindle); c->convention = DB_CONV_CUSTOM; *used = 3; break;
    default: return NOT_THIS_GROUP;
    }
    return rc;
}

/* The detector: distance, size, pixels, beam centre, conventions, axes, sensor, sampling, ROI */
static int detector_flags(db_config *c, arg_cursor *cur, flag_id id, int *used)
{
    double d = 0.0, v3[3];
    long n = 0; /* a failed take_int leaves it: defined, and unused */
    int rc = DB_OK;
    const char *flag = cur->argv[cur->i];
    switch (id) {
    case F_DISTANCE: rc = take_double(cur, "a distance in mm", &d); c->distance = db_param_to_internal(DB_P_DISTANCE, d); c->pivot = DB_PIVOT_BEAM; *used = 1; break;
    case F_CLOSE_DISTANCE: rc = take_double(cur, "a distance in mm", &d); c->close_distance = d / DB_MM_PER_M; c->pivot = DB_PIVOT_SAMPLE; *used = 1; break;
    case F_PIXEL: rc = take_double(cur, "a pixel size in mm", &d); c->pixel_size = d / DB_MM_PER_M; *used = 1; break;
    case F_DETSIZE: rc = take_double(cur, "a size in mm", &d); c->detsize_f = c->detsize_s = d / DB_MM_PER_M; *used = 1; break;
    case F_DETSIZE_F: rc = take_double(cur, "a size in mm", &d); c->detsize_f = d / DB_MM_PER_M; *used = 1; break;
    case F_DETSIZE_S: rc = take_double(cur, "a size in mm", &d); c->detsize_s = d / DB_MM_PER_M; *used = 1; break;
    case F_DETPIXELS:
    case F_DETPIXELS_F:
    case F_DETPIXELS_S:
        rc = take_int(cur, "a number of pixels", &n);
        if (rc) return rc;
        /* the reference reads 0 as "not given" (1024 pixels); a detector needs pixels */
        if (n <= 0 || n > 1000000) return db_fail(cur->err, DB_ERR_GEOMETRY, "%s must be a positive number of pixels (got %ld)", flag, n);
        if (id != F_DETPIXELS_S) c->fpixels = (int)n;
        if (id != F_DETPIXELS_F) c->spixels = (int)n;
        *used = 1;
        break;
    case F_XBEAM: rc = take_double(cur, "a position in mm", &d); c->Xbeam = db_param_to_internal(DB_P_XBEAM, d); c->pivot = DB_PIVOT_BEAM; *used = 1; break;
    case F_YBEAM: rc = take_double(cur, "a position in mm", &d); c->Ybeam = db_param_to_internal(DB_P_YBEAM, d); c->pivot = DB_PIVOT_BEAM; *used = 1; break;
    case F_XCLOSE: rc = take_double(cur, "a position in mm", &d); c->Xclose = d / DB_MM_PER_M; c->pivot = DB_PIVOT_SAMPLE; *used = 1; break;
    case F_YCLOSE: rc = take_double(cur, "a position in mm", &d); c->Yclose = d / DB_MM_PER_M; c->pivot = DB_PIVOT_SAMPLE; *used = 1; break;
    case F_ORGX: rc = take_double(cur, "a position in pixels", &c->ORGX); c->pivot = DB_PIVOT_SAMPLE; *used = 1; break;
    case F_ORGY: rc = take_double(cur, "a position in pixels", &c->ORGY); c->pivot = DB_PIVOT_SAMPLE; *used = 1; break;
    case F_MOSFLM: c->convention = DB_CONV_MOSFLM; c->pivot = DB_PIVOT_BEAM; break;
    case F_DENZO: c->convention = DB_CONV_DENZO; c->pivot = DB_PIVOT_BEAM; break;
    case F_ADXV: c->convention = DB_CONV_ADXV; c->pivot = DB_PIVOT_BEAM; break;
    case F_XDS: c->convention = DB_CONV_XDS; c->pivot = DB_PIVOT_SAMPLE; break;
    case F_DIALS: c->convention = DB_CONV_DIALS; c->pivot = DB_PIVOT_BEAM; break;
    case F_FDET: rc = take_vec3(cur, "a vector x y z", c->fdet_vector); c->convention = DB_CONV_CUSTOM; *used = 3; break;
    case F_SDET: rc = take_vec3(cur, "a vector x y z", c->sdet_vector); c->convention = DB_CONV_CUSTOM; *used = 3; break;
    case F_ODET: rc = take_vec3(cur, "a vector x y z", c->odet_vector); c->convention = DB_CONV_CUSTOM; *used = 3; break;
    case F_BEAMV: rc = take_vec3(cur, "a vector x y z", c->beam_vector); c->convention = DB_CONV_CUSTOM; *used = 3; break;
    case F_POLARV: rc = take_vec3(cur, "a vector x y z", c->polar_vector); c->convention = DB_CONV_CUSTOM; *used = 3; break;
    case F_TWOTHETA_AXIS: rc = take_vec3(cur, "a vector x y z", c->twotheta_axis); c->convention = DB_CONV_CUSTOM; *used = 3; break;
    case F_PIX0:
        rc = take_vec3(cur, "a vector x y z", v3);
        c->convention = DB_CONV_CUSTOM;
        add_warning(c, "warning: %s has no effect on the image (the reference recomputes pix0); it only selects the CUSTOM convention\n", flag);
        *used = 3;
        break;
    case F_PIVOT:
        rc = need_args(cur, 1, "'sample' or 'beam'");
        if (rc) return rc;
        if (strcmp(cur->argv[cur->i + 1], "sample") == 0) c->pivot = c->pivot_flag = DB_PIVOT_SAMPLE;
        else if (strcmp(cur->argv[cur->i + 1], "beam") == 0) c->pivot = c->pivot_flag = DB_PIVOT_BEAM;
        else return db_fail(cur->err, DB_ERR_ARGUMENT, "-pivot expects 'sample' or 'beam', got '%s'", cur->argv[cur->i + 1]);
        *used = 1;
        break;
    case F_ROTX: rc = take_double(cur, "an angle in degrees", &d); c->detector_rotx = db_param_to_internal(DB_P_ROTX, d); *used = 1; break;
    case F_ROTY: rc = take_double(cur, "an angle in degrees", &d); c->detector_roty = db_param_to_internal(DB_P_ROTY, d); *used = 1; break;
    case F_ROTZ: rc = take_double(cur, "an angle in degrees", &d); c->detector_rotz = db_param_to_internal(DB_P_ROTZ, d); *used = 1; break;
    case F_TWOTHETA: rc = take_double(cur, "an angle in degrees", &d); c->detector_twotheta = db_param_to_internal(DB_P_TWOTHETA, d); c->pivot = DB_PIVOT_SAMPLE; *used = 1; break;
    case F_CURVED: c->curved_detector = 1; break;
    case F_POINT_PIXEL: c->point_pixel = 1; break;
    case F_DET_ABS:
        rc = need_args(cur, 1, "an attenuation length in um, or 'inf'");
        if (rc) return rc;
        if (strstr(cur->argv[cur->i + 1], "inf")) {
            d = 0.0;
        } else {
            rc = parse_double_at(cur, 1, "an attenuation length in um, or 'inf'", &d);
            if (rc) return rc;
        }
        if (d == 0.0) {
            c->detector_thick = 0.0;
            c->detector_mu = 0.0;
        } else {
            c->detector_mu = 1.0 / (d * 1e-6);
        }
        *used = 1;
        break;
    case F_DET_THICK: rc = take_double(cur, "a thickness in um", &d); c->detector_thick = d * 1e-6; *used = 1; break;
    case F_DET_THICKSTEPS: rc = take_int(cur, "a number of layers", &n); c->detector_thicksteps = (int)n; *used = 1; break;
    case F_OVERSAMPLE:
        rc = take_int(cur, "a number of sub-pixels per pixel edge", &n);
        if (!rc && n <= 0)
            return db_fail(cur->err, DB_ERR_GEOMETRY, "-oversample must be a positive number of sub-pixels per pixel edge (got %ld)", n);
        c->oversample = (int)n;
        *used = 1;
        break;
    case F_OS_THICK: c->oversample_thick = 1; break;
    case F_OS_POLAR: c->oversample_polar = 1; break;
    case F_OS_OMEGA: c->oversample_omega = 1; break;
    case F_POLAR: rc = take_double(cur, "a Kahn factor", &c->polarization); c->nopolar = 0; *used = 1; break;
    case F_NOPOLAR: c->nopolar = 1; break;
    case F_DMIN: rc = take_double(cur, "a resolution in Angstrom", &d); c->dmin = d * DB_M_PER_A; *used = 1; break;
    case F_ROI: {
        long r[4];
        rc = need_args(cur, 4, "xmin xmax ymin ymax in pixels");
        for (int k = 0; k < 4 && !rc; k++) rc = parse_int_at(cur, k + 1, "xmin xmax ymin ymax in pixels", &r[k]);
        if (rc) return rc;
        for (int k = 0; k < 4; k++)
            if (r[k] < 0) return db_fail(cur->err, DB_ERR_GEOMETRY, "-roi expects pixel indices >= 0 (xmin xmax ymin ymax), got %ld", r[k]);
        c->roi_xmin = (int)r[0];
        c->roi_xmax = (int)r[1];
        c->roi_ymin = (int)r[2];
        c->roi_ymax = (int)r[3];
        *used = 4;
        break;
    }
    default: return NOT_THIS_GROUP;
    }
    return rc;
}

/* Spot shape, interpolation, water, the output files and their scaling, noise, run control */
static int output_flags(db_config *c, arg_cursor *cur, flag_id id, int *used)
{
    double d = 0.0;
    long n = 0; /* a failed take_int leaves it: defined, and unused */
    int rc = DB_OK;
    switch (id) {
    case F_MASK: rc = take_string(cur, "an SMV mask file", &c->mask_file); *used = 1; break;
    case F_IMG: rc = take_string(cur, "an SMV image file", &c->img_file); *used = 1; break;
    case F_ROUND_XTAL: c->shape = DB_SHAPE_ROUND; break;
    case F_SQUARE_XTAL: c->shape = DB_SHAPE_SQUARE; break;
    case F_GAUSS_XTAL: c->shape = DB_SHAPE_GAUSS; break;
    case F_TOPHAT: c->shape = DB_SHAPE_TOPHAT; break;
    case F_FUDGE: rc = take_double(cur, "a factor", &c->fudge); *used = 1; break;
    case F_INTERPOLATE: c->interpolate = 1; break;
    case F_NOINTERPOLATE: c->interpolate = 0; break;
    case F_WATER: rc = take_double(cur, "a size in um", &d); c->water_size = d / 1e6; *used = 1; break;
    case F_FLOATFILE: rc = take_string(cur, "a file name", &c->float_file); *used = 1; break;
    case F_INTFILE: rc = take_string(cur, "a file name", &c->int_file); *used = 1; break;
    case F_PGMFILE: rc = take_string(cur, "a file name", &c->pgm_file); c->write_pgm = 1; *used = 1; break;
    case F_NOISEFILE: rc = take_string(cur, "a file name", &c->noise_file); c->write_noise = 1; *used = 1; break;
    case F_FLOATFILE64: rc = take_string(cur, "a file name", &c->float64_file); *used = 1; break;
    case F_PNGFILE: rc = take_string(cur, "a file name", &c->png_file); *used = 1; break;
    case F_GRADPNG: c->grad_png = 1; break;
    case F_NONOISE: c->write_noise = 0; break;
    case F_NOPGM: c->write_pgm = 0; break;
    case F_SCALE: rc = take_double(cur, "a scale factor", &c->intfile_scale); *used = 1; break;
    case F_PGMSCALE: rc = take_double(cur, "a scale factor", &c->pgm_scale); c->write_pgm = 1; *used = 1; break;
    case F_ADC: rc = take_double(cur, "an offset", &c->adc_offset); *used = 1; break;
    case F_SEED:
        rc = take_int(cur, "a seed", &n);
        if (!rc) {
            c->seed = -n;
            c->seed_given = 1;
        }
        *used = 1;
        break;
    case F_PRINTOUT: c->printout = 1; break;
    case F_PRINTOUT_PIXEL: {
        long f, s;
        rc = take_pixel(cur, &f, &s);
        if (rc) return rc;
        c->printout = 1;
        c->printout_fpixel = (int)f;
        c->printout_spixel = (int)s;
        *used = 2;
        break;
    }
    case F_NOPROGRESS: c->progress = 0; break;
    case F_PROGRESS: c->progress = 1; break;
    case F_GRAD: {
        rc = take_string(cur, "a comma-separated list of parameters, or 'all'", &c->grad_list);
        if (rc) return rc;
        int tmp[64];
        if (db_param_parse_list(c->grad_list, tmp, cur->err) < 0) return cur->err ? cur->err->code : DB_ERR_ARGUMENT;
        *used = 1;
        break;
    }
    case F_GRADPREFIX: rc = take_string(cur, "a file-name prefix", &c->grad_prefix); *used = 1; break;
    case F_BOXES: rc = take_string(cur, "a file of 'xmin xmax ymin ymax' lines", &c->boxes_file); *used = 1; break;
    case F_GRAD_F: rc = take_string(cur, "a file name", &c->grad_F_file); *used = 1; break;
    case F_GRAD_CHUNK:
        rc = take_int(cur, "a number of directions per pass", &n);
        if (!rc && (n < 1 || n > DB_MAX_CHUNK))
            return db_fail(cur->err, DB_ERR_ARGUMENT, "-grad_chunk expects 1 to %d, got %ld", DB_MAX_CHUNK, n);
        c->grad_chunk = (int)n;
        *used = 1;
        break;
    case F_TRACE_PIXEL: {
        long f, s2;
        rc = take_pixel(cur, &f, &s2);
        if (rc) return rc;
        if (f < 0 || s2 < 0) return db_fail(cur->err, DB_ERR_GEOMETRY, "-trace_pixel expects pixel indices >= 0, got %ld %ld", f, s2);
        c->trace_fpixel = (int)f;
        c->trace_spixel = (int)s2;
        *used = 2;
        break;
    }
    case F_DEVICE: {
        rc = need_args(cur, 1, DB_DEVICE_NAMES);
        if (rc) return rc;
        const char *v = cur->argv[cur->i + 1];
        const int id = db_device_from_name(v);
        if (id < 0) return db_fail(cur->err, DB_ERR_ARGUMENT, "-device expects " DB_DEVICE_NAMES ", got '%s'", v);
        c->device = id;
        *used = 1;
        break;
    }
    case F_PHI_CARRYOVER:
        rc = need_args(cur, 1, "'on' or 'off'");
        if (rc) return rc;
        if (strcmp(cur->argv[cur->i + 1], "on") == 0) c->phi_carryover = 1;
        else if (strcmp(cur->argv[cur->i + 1], "off") == 0) c->phi_carryover = 0;
        else return db_fail(cur->err, DB_ERR_ARGUMENT, "-phi_carryover expects 'on' or 'off', got '%s'", cur->argv[cur->i + 1]);
        *used = 1;
        break;
    default: return NOT_THIS_GROUP;
    }
    return rc;
}

static int handle_flag(db_config *c, arg_cursor *cur, flag_id id)
{
    static int (*const groups[])(db_config *, arg_cursor *, flag_id, int *) = {crystal_flags, beam_flags,
                                                                               detector_flags, output_flags};
    int used = 0, rc = NOT_THIS_GROUP; /* number of values consumed */
    for (size_t g = 0; rc == NOT_THIS_GROUP && g < sizeof groups / sizeof groups[0]; g++) rc = groups[g](c, cur, id, &used);
    if (rc == NOT_THIS_GROUP) /* every id of the table has its case (a new one without one is a bug) */
        return db_fail(cur->err, DB_ERR_INTERNAL, "%s: no handler for this flag", cur->argv[cur->i]);
    if (rc) return rc;
    cur->i += used;
    return DB_OK;
}

/* Spec §7 item 10: conventions force the pivot and ignore some beam-centre flags. The reference does so
 * silently; we do the same, and say it. */
static void convention_warnings(db_config *c)
{
    /* spec §3.2: a beam narrower than the crystal clips its y and z sizes (applied in db_make_plan) */
    if (c->beamsize >= 0 && (c->beamsize < c->sample_y || c->beamsize < c->sample_z)) {
        char msg[256];
        snprintf(msg, sizeof msg, "warning: clipping the sample (%g x %g mm in y, z) with the beam (%g mm)\n",
                 c->sample_y * DB_MM_PER_M, c->sample_z * DB_MM_PER_M, c->beamsize * DB_MM_PER_M);
        add_warning(c, "%s", msg);
    }
    static const char *const names[] = {"MOSFLM", "DENZO", "ADXV", "XDS", "DIALS", "CUSTOM"};
    const char *conv = names[c->convention];
    int beam_pivot_conv = c->convention <= DB_CONV_ADXV, sample_pivot_conv = c->convention == DB_CONV_XDS ||
                                                                           c->convention == DB_CONV_DIALS;
    char line[512];
    if (beam_pivot_conv) {
        if (c->given[F_PIVOT] && c->pivot_flag == DB_PIVOT_SAMPLE) {
            snprintf(line, sizeof line, "warning: -pivot sample has no effect: the %s convention pivots the detector about the direct-beam spot\n", conv);
            add_warning(c, "%s", line);
        }
        if (c->given[F_TWOTHETA]) {
            snprintf(line, sizeof line, "warning: -twotheta swings the detector about the direct-beam spot, not the sample, in the %s convention (as the reference)\n", conv);
            add_warning(c, "%s", line);
        }
        if (c->given[F_XCLOSE] || c->given[F_YCLOSE] || c->given[F_ORGX] || c->given[F_ORGY]) {
            snprintf(line, sizeof line, "warning: -Xclose/-Yclose/-ORGX/-ORGY do not place the detector in the %s convention (it pivots about the beam spot; use -Xbeam/-Ybeam)\n", conv);
            add_warning(c, "%s", line);
        }
    }
    if (sample_pivot_conv) {
        if (c->given[F_PIVOT] && c->pivot_flag == DB_PIVOT_BEAM) {
            snprintf(line, sizeof line, "warning: -pivot beam has no effect: the %s convention pivots the detector about the sample\n", conv);
            add_warning(c, "%s", line);
        }
        if (c->given[F_XBEAM] || c->given[F_YBEAM] || c->given[F_XCLOSE] || c->given[F_YCLOSE]) {
            snprintf(line, sizeof line, "warning: -Xbeam/-Ybeam/-Xclose/-Yclose only change the image header in the %s convention; use -ORGX/-ORGY to move the detector origin\n", conv);
            add_warning(c, "%s", line);
        }
    }
}

static int parse_into(db_config *c, int argc, const char *const *argv, db_error *err);

/* All or nothing: the arguments are applied to a copy, which replaces the configuration only on success. */
int db_config_parse_args(db_config *c, int argc, const char *const *argv, db_error *err)
{
    db_error_clear(err);
    if (!c) return db_fail(err, DB_ERR_ARGUMENT, "db_config_parse: no configuration (NULL)");
    if (argc < 0 || (argc > 0 && !argv))
        return db_fail(err, DB_ERR_ARGUMENT, "db_config_parse: %d arguments %s", argc,
                       argc < 0 ? "(expected a count >= 0)" : "but no argument array (NULL)");
    for (int i = 0; i < argc; i++)
        if (!argv[i])
            return db_fail(err, DB_ERR_ARGUMENT, "db_config_parse: argument %d of %d is NULL%s%s%s", i, argc,
                           i > 0 ? " (after '" : "", i > 0 ? argv[i - 1] : "", i > 0 ? "')" : "");
    db_config *work = db_config_clone(c);
    if (!work) return db_fail(err, DB_ERR_NOMEM, "out of memory");
    int rc = parse_into(work, argc, argv, err);
    if (rc) {
        db_config_free(work);
        return rc;
    }
    db_config old = *c;
    *c = *work;
    *work = old;
    db_config_free(work); /* the replaced contents */
    return DB_OK;
}

static int parse_into(db_config *c, int argc, const char *const *argv, db_error *err)
{
    /* pre-pass: -mask and -img headers set defaults that the rest of the command line overrides */
    for (int pass = 0; pass < 2; pass++) {
        const char *want = pass == 0 ? "-mask" : "-img";
        for (int i = 0; i < argc; i++) {
            if (strcmp(argv[i], want) == 0) {
                if (i + 1 >= argc)
                    return db_fail(err, DB_ERR_ARGUMENT, "%s expects an SMV file, but the command line ends", want);
                int rc = apply_smv_header(c, argv[i + 1], pass == 0, err);
                if (rc) return rc;
            }
        }
    }
    arg_cursor cur = {argc, argv, 0, err};
    for (cur.i = 0; cur.i < argc; cur.i++) {
        const char *a = argv[cur.i];
        const flag_spec *f = find_flag(a);
        if (!f) {
            if (a[0] == '-')
                return db_fail(err, DB_ERR_ARGUMENT, "unknown flag '%s' (see the README for the accepted spellings)", a);
            return db_fail(err, DB_ERR_ARGUMENT, "unexpected argument '%s' (a value without a flag before it)", a);
        }
        int rc = handle_flag(c, &cur, f->id);
        if (rc) return rc;
        c->given[f->id] = 1;
    }
    convention_warnings(c);
    return DB_OK;
}

/* the public entry (dualbragg.h) */
int db_config_parse(db_config *cfg, int argc, const char *const *argv, db_error *err)
{
    return db_config_parse_args(cfg, argc, argv, err);
}
