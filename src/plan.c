/* plan.c: the reference's configuration-level decisions (spec §3): db_config -> db_plan (detector size and
 * geometry, beam centre, phi, divergence, dispersion, layers, mosaic domains, crystal size), and what the
 * configuration fixes (db_fluence_from_flux, db_cells_from_size). */
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
/* configuration-level decisions */

/* ceil(x) as an int; values beyond int (and NaN) become INT_MAX, which the step-count checks refuse: a
 * conversion of an out-of-range double to int is undefined behaviour, not a large number. */
static int ceil_to_int(double x)
{
    double c = ceil(x);
    if (!(c < 2147483647.0)) return 2147483647;
    if (c < -2147483647.0) return -2147483647;
    return (int)c;
}

/* The reference's (range, step, steps) rule, written once for its three uses: divergence and dispersion (spec
 * §3.4), phi, and the detector's layers. How the three differ is data. */
typedef struct sampling_quirks {
    double default_range;     /* the range when only a count is given */
    int range_alone_halves;   /* a range alone: two samples half a range apart (phi, layers), or a whole range apart */
    int count_spans_range;    /* a range and a count: step = range / (count - 1), count at least 2 (divergence, layers),
                               * or range / count (phi, whose step is then unset only below 0) */
} sampling_quirks;

static const sampling_quirks DIVERGENCE_SAMPLING = {1.0, 0, 1}, PHI_SAMPLING = {1.0 / DB_RTD, 1, 0},
                             LAYER_SAMPLING = {0.5e-6, 1, 1};

/* A count <= 0 is "not given" (-phisteps, which the parser refuses below 1, comes as -1 or >= 1) */
static void resolve_sampling(const sampling_quirks *q, double *range, double *step, int *steps)
{
    if (*steps <= 0) {
        if (*range < 0.0) {
            if (*step <= 0.0) {
                *steps = 1;
                *range = 0.0;
                *step = 0.0;
            } else {
                *range = *step;
                *steps = 2;
            }
        } else if (*step <= 0.0) {
            *steps = 2;
            *step = q->range_alone_halves ? *range / *steps : *range;
        } else {
            *steps = ceil_to_int(*range / *step);
        }
        return;
    }
    if (*range < 0.0) {
        if (*step <= 0.0) {
            *range = q->default_range;
            *step = *range / *steps;
        } else {
            *range = *step;
            *steps = 2;
        }
    } else if (q->count_spans_range && *step <= 0.0) {
        if (*steps <= 1) *steps = 2;
        *step = *range / (*steps - 1);
    } else if (!q->count_spans_range && *step < 0.0) {
        *step = *range / *steps;
    }
}

/* a zero range, step or count samples once, at 0 (divergence, dispersion, layers; not phi) */
static void collapse_degenerate(double *range, double *step, int *steps)
{
    if (*range <= 0.0 || *step <= 0.0 || *steps <= 0) {
        *steps = 1;
        *range = 0.0;
        *step = 0.0;
    }
}

static void unitize3(double v[3], double *mag_out)
{
    double m = sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]);
    if (m != 0.0) {
        v[0] = v[0] / m;
        v[1] = v[1] / m;
        v[2] = v[2] / m;
    } else {
        v[0] = v[1] = v[2] = 0.0;
    }
    if (mag_out) *mag_out = m;
}

static void cross3(const double x[3], const double y[3], double z[3])
{
    z[0] = x[1] * y[2] - x[2] * y[1];
    z[1] = x[2] * y[0] - x[0] * y[2];
    z[2] = x[0] * y[1] - x[1] * y[0];
}

int db_fluence_from_flux(const db_config *c) { return c->flux != 0.0 && c->exposure > 0.0 && c->beamsize >= 0; }

double db_cell_in_force(const db_config *c, int k)
{
    const double v[6] = {c->cell_a, c->cell_b, c->cell_c, c->cell_alpha, c->cell_beta, c->cell_gamma};
    return v[k] > 0.0 ? v[k] : k < 3 ? c->cell_a : M_PI / 2;
}

int db_cells_from_size(const db_plan *p, int axis)
{
    return (axis == 0 ? p->sample_x : axis == 1 ? p->sample_y : p->sample_z) > 0;
}

const char *db_param_fixed(const db_config *c, const db_plan *p, int param)
{
    switch (db_param_info_of(param)->fixing) {
    case DB_FIXED_BY_FLUX:
        return db_fluence_from_flux(c) ? "set by -flux, -exposure and -beamsize, not a free value" : NULL;
    case DB_FIXED_BY_SIZE:
        return db_cells_from_size(p, param - DB_P_NA) ? "set by the crystal size (-xtal_size and the like), not a free value"
                                                      : NULL;
    case DB_FIXED_WITHOUT_DOMAINS:
        return p->mosaic_domains <= 1 || !(p->mosaic_spread > 0.0)
                   ? "this simulation has no mosaic domains (give -mosaic and -mosaic_dom at creation)"
                   : NULL;
    default: return NULL;
    }
}

/* The detector: the flags' checks, its size in pixels, the mask's size, the -roi, -trace_pixel and -printout_pixel
 * on it (the errors in the order a user meets them) */
static int plan_detector(const db_config *c, db_plan *p, db_error *err)
{
    if (!(c->pixel_size > 0.0))
        return db_fail(err, DB_ERR_GEOMETRY, "-pixel must be positive (got %g mm)", c->pixel_size * DB_MM_PER_M);
    int rc;
    if (isnan(c->close_distance) &&
        (rc = db_param_check_value(DB_P_DISTANCE, db_param_from_internal(DB_P_DISTANCE, c->distance), NULL, err)))
        return rc;
    if (!isnan(c->close_distance) && !(c->close_distance > 0.0))
        return db_fail(err, DB_ERR_GEOMETRY, "-close_distance must be positive (got %g mm)", c->close_distance * DB_MM_PER_M);
    if (!isfinite(c->lambda0)) return db_fail(err, DB_ERR_GEOMETRY, "-lambda: must be finite (got %g A)", c->lambda0 * DB_A_PER_M);
    if ((rc = db_param_check_value(DB_P_LAMBDA, db_param_from_internal(DB_P_LAMBDA, c->lambda0), NULL, err))) return rc;

    p->detsize_f = c->fpixels ? c->pixel_size * c->fpixels : c->detsize_f;
    p->detsize_s = c->spixels ? c->pixel_size * c->spixels : c->detsize_s;
    p->fpixels = ceil_to_int(p->detsize_f / c->pixel_size - 0.5);
    p->spixels = ceil_to_int(p->detsize_s / c->pixel_size - 0.5);
    if (p->fpixels <= 0 || p->spixels <= 0)
        return db_fail(err, DB_ERR_GEOMETRY, "the detector has no pixels (%d x %d): check -detpixels/-detsize/-pixel",
                       p->fpixels, p->spixels);
    if ((double)p->fpixels * (double)p->spixels > 1e9)
        return db_fail(err, DB_ERR_GEOMETRY, "the detector is too large (%d x %d pixels)", p->fpixels, p->spixels);
    if (c->mask && (c->mask_fpixels != p->fpixels || c->mask_spixels != p->spixels))
        return db_fail(err, DB_ERR_GEOMETRY, "-mask %s is %d x %d pixels but the detector is %d x %d", c->mask_file,
                       c->mask_fpixels, c->mask_spixels, p->fpixels, p->spixels);

    if (c->trace_fpixel >= 0 && (c->trace_fpixel >= p->fpixels || c->trace_spixel >= p->spixels))
        return db_fail(err, DB_ERR_GEOMETRY, "-trace_pixel %d %d is outside the %d x %d detector", c->trace_fpixel,
                       c->trace_spixel, p->fpixels, p->spixels);
    if (c->printout_fpixel >= p->fpixels || c->printout_spixel >= p->spixels)
        return db_fail(err, DB_ERR_GEOMETRY, "-printout_pixel %d %d is outside the %d x %d detector", c->printout_fpixel,
                       c->printout_spixel, p->fpixels, p->spixels);
    /* a given -roi lies on the detector, as a -boxes box must (the reference clips it silently) */
    if (c->roi_xmin >= 0 && !(c->roi_xmin <= c->roi_xmax && c->roi_xmax < p->fpixels && c->roi_ymin <= c->roi_ymax &&
                              c->roi_ymax < p->spixels)) {
        int none = c->roi_xmin > c->roi_xmax || c->roi_ymin > c->roi_ymax || c->roi_xmin >= p->fpixels ||
                   c->roi_ymin >= p->spixels;
        return db_fail(err, DB_ERR_GEOMETRY,
                       "-roi %d %d %d %d %s the %d x %d detector (expected xmin xmax ymin ymax with 0 <= xmin <= xmax <= %d "
                       "and 0 <= ymin <= ymax <= %d)",
                       c->roi_xmin, c->roi_xmax, c->roi_ymin, c->roi_ymax, none ? "selects no pixel of" : "reaches beyond",
                       p->fpixels, p->spixels, p->fpixels - 1, p->spixels - 1);
    }
    p->roi_xmin = c->roi_xmin < 0 ? 0 : c->roi_xmin;
    p->roi_xmax = c->roi_xmax < 0 ? p->fpixels : c->roi_xmax;
    p->roi_ymin = c->roi_ymin < 0 ? 0 : c->roi_ymin;
    p->roi_ymax = c->roi_ymax < 0 ? p->spixels : c->roi_ymax;
    if (p->roi_xmin > p->roi_xmax || p->roi_ymin > p->roi_ymax || p->roi_xmin >= p->fpixels || p->roi_ymin >= p->spixels)
        return db_fail(err, DB_ERR_GEOMETRY, "-roi %d %d %d %d selects no pixel of the %d x %d detector", c->roi_xmin,
                       c->roi_xmax, c->roi_ymin, c->roi_ymax, p->fpixels, p->spixels);

    if (c->trace_fpixel >= 0 && (c->trace_fpixel < p->roi_xmin || c->trace_fpixel > p->roi_xmax ||
                                 c->trace_spixel < p->roi_ymin || c->trace_spixel > p->roi_ymax ||
                                 (c->mask && c->mask[(size_t)c->trace_spixel * p->fpixels + c->trace_fpixel] == 0)))
        return db_fail(err, DB_ERR_GEOMETRY, "-trace_pixel %d %d is outside the ROI or masked: it is not rendered",
                       c->trace_fpixel, c->trace_spixel);
    return DB_OK;
}

/* The axes of the convention (or as given) made unit, and the beam centre's rules (beam_centre.h) */
static void plan_axes(const db_config *c, db_plan *p)
{
    memcpy(p->beam, c->beam_vector, sizeof p->beam);
    memcpy(p->fdet, c->fdet_vector, sizeof p->fdet);
    memcpy(p->sdet, c->sdet_vector, sizeof p->sdet);
    memcpy(p->odet, c->odet_vector, sizeof p->odet);
    memcpy(p->polar, c->polar_vector, sizeof p->polar);
    memcpy(p->spindle, c->spindle, sizeof p->spindle);
    memcpy(p->twotheta_axis, c->twotheta_axis, sizeof p->twotheta_axis);
    p->pivot = c->pivot;
    p->convention = c->convention;
    switch (c->convention) {
    case DB_CONV_ADXV:
        db_vec3_set(p->beam, 0, 0, 1);
        db_vec3_set(p->fdet, 1, 0, 0);
        db_vec3_set(p->sdet, 0, -1, 0);
        db_vec3_set(p->odet, 0, 0, 1);
        db_vec3_set(p->twotheta_axis, -1, 0, 0);
        db_vec3_set(p->polar, 1, 0, 0);
        db_vec3_set(p->spindle, 1, 0, 0);
        p->pivot = DB_PIVOT_BEAM;
        break;
    case DB_CONV_MOSFLM:
    case DB_CONV_DENZO:
        db_vec3_set(p->beam, 1, 0, 0);
        db_vec3_set(p->odet, 1, 0, 0);
        db_vec3_set(p->fdet, 0, 0, 1);
        db_vec3_set(p->sdet, 0, -1, 0);
        db_vec3_set(p->twotheta_axis, 0, 0, -1);
        db_vec3_set(p->polar, 0, 0, 1);
        db_vec3_set(p->spindle, 0, 0, 1);
        p->pivot = DB_PIVOT_BEAM;
        break;
    case DB_CONV_XDS:
    case DB_CONV_DIALS:
        db_vec3_set(p->beam, 0, 0, 1);
        db_vec3_set(p->fdet, 1, 0, 0);
        db_vec3_set(p->sdet, 0, 1, 0);
        db_vec3_set(p->odet, 0, 0, 1);
        if (c->convention == DB_CONV_XDS) {
            db_vec3_set(p->twotheta_axis, 1, 0, 0);
            db_vec3_set(p->polar, 1, 0, 0);
            db_vec3_set(p->spindle, 1, 0, 0);
        } else {
            db_vec3_set(p->twotheta_axis, 0, 1, 0);
            db_vec3_set(p->polar, 0, 1, 0);
            db_vec3_set(p->spindle, 0, 1, 0);
        }
        p->pivot = DB_PIVOT_SAMPLE;
        break;
    case DB_CONV_CUSTOM:
        break; /* the vectors as given */
    }
    double m;
    unitize3(p->beam, NULL);
    unitize3(p->fdet, NULL);
    unitize3(p->sdet, NULL);
    unitize3(p->odet, &m);
    if (m != 1.0) {
        cross3(p->fdet, p->sdet, p->odet);
        unitize3(p->odet, NULL);
    }
    unitize3(p->polar, NULL);
    unitize3(p->spindle, NULL);
    cross3(p->beam, p->polar, p->vert);
    unitize3(p->vert, NULL);
    db_beam_centre bc = db_beam_centre_resolve((int)c->convention, ad_const(c->Xbeam), ad_const(c->Ybeam),
                                               ad_const(c->Xclose), ad_const(c->Yclose), ad_const(c->ORGX),
                                               ad_const(c->ORGY), ad_const(c->pixel_size), p->detsize_f, p->detsize_s);
    p->Xbeam = bc.Xbeam.v;
    p->Ybeam = bc.Ybeam.v;
    p->Xclose = bc.Xclose.v;
    p->Yclose = bc.Yclose.v;
    p->Fclose = bc.Fclose.v;
    p->Sclose = bc.Sclose.v;
    p->Fbeam = bc.Fbeam.v;
    p->Sbeam = bc.Sbeam.v;
    p->ORGX = p->Fclose / c->pixel_size + 0.5;
    p->ORGY = p->Sclose / c->pixel_size + 0.5;
}

/* The photons and the crystal's size clipped to the beam; the samplings of phi, divergence, dispersion and the
 * detector's layers (resolve_sampling); the mosaic domains */
static int plan_sampling(const db_config *c, db_plan *p, db_error *err)
{
    p->fluence = c->fluence;
    if (db_fluence_from_flux(c)) p->fluence = c->flux * c->exposure / c->beamsize / c->beamsize;
    p->flux = c->exposure > 0.0 ? p->fluence / c->exposure * c->beamsize * c->beamsize : c->flux;
    p->sample_x = c->sample_x;
    p->sample_y = c->beamsize >= 0 && c->beamsize < c->sample_y ? c->beamsize : c->sample_y;
    p->sample_z = c->beamsize >= 0 && c->beamsize < c->sample_z ? c->beamsize : c->sample_z;

    /* phi sampling */
    int phisteps = c->phisteps;
    double osc = c->osc, phistep = c->phistep;
    resolve_sampling(&PHI_SAMPLING, &osc, &phistep, &phisteps);
    if (phisteps <= 0 || phisteps > 100000000)
        return db_fail(err, DB_ERR_ARGUMENT, "the phi sampling gives %d steps (check -osc, -phistep, -phisteps)", phisteps);
    p->phisteps = phisteps;
    p->osc = osc;
    p->phistep = phistep;

    p->hdivrange = c->hdivrange;
    p->hdivstep = c->hdivstep;
    p->hdivsteps = c->hdivsteps;
    resolve_sampling(&DIVERGENCE_SAMPLING, &p->hdivrange, &p->hdivstep, &p->hdivsteps);
    collapse_degenerate(&p->hdivrange, &p->hdivstep, &p->hdivsteps);
    p->vdivrange = c->vdivrange;
    p->vdivstep = c->vdivstep;
    p->vdivsteps = c->vdivsteps;
    resolve_sampling(&DIVERGENCE_SAMPLING, &p->vdivrange, &p->vdivstep, &p->vdivsteps);
    collapse_degenerate(&p->vdivrange, &p->vdivstep, &p->vdivsteps);
    /* -dispersion defaults to 0 (not "unset"), and no flag sets its step */
    p->dispersion = c->dispersion;
    p->dispstep = -1;
    p->dispsteps = c->dispsteps;
    resolve_sampling(&DIVERGENCE_SAMPLING, &p->dispersion, &p->dispstep, &p->dispsteps);
    collapse_degenerate(&p->dispersion, &p->dispstep, &p->dispsteps);
    if (p->hdivsteps > 100000000 || p->vdivsteps > 100000000)
        return db_fail(err, DB_ERR_ARGUMENT, "the divergence sampling gives %d x %d steps (check -hdivrange/-vdivrange, -hdivstep/-vdivstep, -divsteps)",
                       p->hdivsteps, p->vdivsteps);
    if (p->dispsteps > 100000000)
        return db_fail(err, DB_ERR_ARGUMENT, "the spectral sampling gives %d steps (check -dispersion, -dispsteps)", p->dispsteps);
    /* the grid's source count before any table is sized from it (a -sourcefile replaces the grid) */
    if (!c->source_file && (double)p->hdivsteps * p->vdivsteps * p->dispsteps > DB_MAX_SOURCES)
        return db_fail(err, DB_ERR_ARGUMENT, "the beam would have %.0f sources (-hdivsteps %d x -vdivsteps %d x -dispsteps %d); at most %d",
                       (double)p->hdivsteps * p->vdivsteps * p->dispsteps, p->hdivsteps, p->vdivsteps, p->dispsteps,
                       DB_MAX_SOURCES);

    /* detector layers */
    int tsteps = c->detector_thicksteps;
    double thick = c->detector_thick, tstep = c->detector_thickstep;
    resolve_sampling(&LAYER_SAMPLING, &thick, &tstep, &tsteps);
    double mu = c->detector_mu;
    if (thick > 0.0 && mu < 0.0) mu = 1.0 / thick; /* before the collapse: a thickness with no step still sets mu */
    collapse_degenerate(&thick, &tstep, &tsteps);
    if (tsteps > 100000000)
        return db_fail(err, DB_ERR_ARGUMENT, "the detector sampling gives %d layers (check -detector_thick, -detector_thicksteps)", tsteps);
    p->thicksteps = tsteps;
    p->thick = thick;
    p->thickstep = tstep;
    p->mu = mu;

    /* mosaic domains */
    int dom = c->mosaic_domains;
    double spread = c->mosaic_spread;
    if (dom <= 0) {
        if (spread < 0.0) {
            dom = 1;
            spread = 0.0;
        } else {
            dom = spread == 0.0 ? 1 : 10;
        }
    } else {
        if (spread < 0.0) {
            spread = 0.0;
            dom = 1;
        } else if (spread == 0.0) {
            dom = 1;
        }
    }
    p->mosaic_domains = dom;
    p->mosaic_spread = spread;
    return DB_OK;
}

int db_make_plan(const db_config *c, db_plan *p, db_error *err)
{
    memset(p, 0, sizeof *p);
    int rc = plan_detector(c, p, err);
    if (rc) return rc;
    plan_axes(c, p);
    if ((rc = plan_sampling(c, p, err))) return rc;
    if (!c->user_cell && !c->mat_file)
        return db_fail(err, DB_ERR_ARGUMENT, "no crystal: give -cell a b c alpha beta gamma or -mat FILE");
    return DB_OK;
}
