/* config.h: the simulation's configuration, as the reference understands its command line.
 *
 * Two layers:
 *  - db_config holds what the command line said, converted to the reference's internal units (m, rad, ...)
 *    with the reference's "unset" sentinels (NAN or -1) where it has them. Parsing is exact-spelling (no
 *    substring matching) and strict: unknown flags and bad numbers are errors.
 *  - db_resolve() makes the configuration-level decisions of the reference (spec §3.2-§3.4, §3.6, §3.11 parts
 *    that do not need the crystal): conventions, pixel counts, ROI, step counts. These are discrete decisions;
 *    the continuous quantities are recomputed from the raw values by the physics setup (over dual numbers).
 */
#ifndef DB_CONFIG_H
#define DB_CONFIG_H

#include "dualbragg.h"

typedef enum { DB_CONV_MOSFLM, DB_CONV_DENZO, DB_CONV_ADXV, DB_CONV_XDS, DB_CONV_DIALS, DB_CONV_CUSTOM } db_convention;
typedef enum { DB_PIVOT_BEAM, DB_PIVOT_SAMPLE } db_pivot;
typedef enum { DB_SHAPE_SQUARE, DB_SHAPE_ROUND, DB_SHAPE_GAUSS, DB_SHAPE_TOPHAT } db_shape;

struct db_config {
    /* files (NULL when absent); strings are owned by the config */
    char *hkl_file, *mat_file, *dump_file, *source_file, *img_file, *mask_file;
    char *float_file, *int_file, *pgm_file, *noise_file, *float64_file;
    char *png_file;                       /* -pngfile FILE: a picture of the float image */
    char *grad_list, *grad_prefix;        /* -grad LIST, -gradprefix PREFIX */
    int grad_png;                         /* -gradpng: a picture beside each derivative image */
    char *boxes_file;                     /* -boxes FILE: the pixels to render (replaces -roi) */
    char *grad_F_file;                    /* -grad_F FILE: the structure-factor Jacobian of those pixels, as text */
    int grad_chunk;                       /* -grad_chunk N (0 = default) */
    int trace_fpixel, trace_spixel;       /* -trace_pixel F S, -1 = off */
    int write_pgm, write_noise;

    /* crystal */
    int user_cell;
    double cell_a, cell_b, cell_c;        /* Angstrom, 0 when not given */
    double cell_alpha, cell_beta, cell_gamma; /* rad, 0 when not given */
    int misset_given, misset_random;
    double misset[3];                     /* rad */
    long misset_seed;                     /* stored negated, as the reference */
    int misset_seed_given;
    double Na, Nb, Nc;                    /* cells (the reference truncates -N to int) */
    double sample_x, sample_y, sample_z;  /* m */
    db_shape shape;
    double fudge;
    double default_F;
    int interpolate;                      /* 2 = auto, 1 on, 0 off */

    /* beam */
    double lambda0;                       /* m */
    double dispersion;                    /* fraction; -1... see resolve */
    int dispsteps;
    double hdivrange, vdivrange, hdivstep, vdivstep; /* rad, -1 = unset */
    int hdivsteps, vdivsteps;
    int round_div;
    double fluence, flux, exposure, beamsize;
    double polarization;
    int nopolar;

    /* mosaic */
    double mosaic_spread;                 /* rad, -1 = unset */
    int mosaic_domains;                   /* -1 = unset */
    long mosaic_seed;                     /* stored negated */

    /* spindle */
    double phi0, osc, phistep;            /* rad, -1 = unset for osc/phistep */
    int phisteps;                         /* -1 = unset */
    double spindle[3];
    int phi_carryover;                    /* 1: reproduce the reference (default); 0: phi = 0 uses a0 */
    int device;                           /* -device: src/device.h (DB_DEVICE_CPU by default) */

    /* detector */
    db_convention convention;
    db_pivot pivot;
    db_pivot pivot_flag;                  /* what -pivot itself said (for warnings) */
    double pixel_size, distance, close_distance; /* m; close_distance NAN = unset */
    double detsize_f, detsize_s;
    int fpixels, spixels;                 /* 0 = from detsize */
    double Xbeam, Ybeam, Xclose, Yclose, ORGX, ORGY; /* NAN = unset */
    double detector_rotx, detector_roty, detector_rotz, detector_twotheta;
    double beam_vector[3], fdet_vector[3], sdet_vector[3], odet_vector[3], polar_vector[3], twotheta_axis[3];
    int curved_detector, point_pixel;
    double detector_thick, detector_thickstep, detector_mu; /* m, m, 1/m */
    int detector_thicksteps;
    int oversample, oversample_thick, oversample_polar, oversample_omega;
    int roi_xmin, roi_xmax, roi_ymin, roi_ymax; /* -1 = unset */
    double dmin;                          /* m */
    double water_size;                    /* m */

    /* output */
    double intfile_scale, pgm_scale, adc_offset;
    long seed;                            /* stored negated */
    int seed_given;
    int progress;
    int printout, printout_fpixel, printout_spixel;

    /* from -img / -mask headers (applied before the command line) */
    unsigned short *mask;                 /* fpixels*spixels, NULL when no mask */
    int mask_fpixels, mask_spixels;

    unsigned char given[256];             /* flags seen, by the parser's flag id (for the convention warnings) */
    char warnings[4096];                  /* accepted-but-ignored flags and the like, for the caller to show */

};

/* Creates a configuration with the reference's defaults. */
db_config *db_config_new(void);
db_config *db_config_clone(const db_config *cfg); /* deep copy */
void db_config_free(db_config *cfg);
int db_config_parse_args(db_config *cfg, int argc, const char *const *argv, db_error *err);

/* The configuration-level decisions of the reference, made from a db_config without changing it
 * (spec §3.2-§3.4, §3.13 counts, §3.14 counts). Everything that depends on the crystal (oversampling,
 * N from the crystal size) is decided by the physics setup. */
typedef struct db_plan {
    int fpixels, spixels;
    double detsize_f, detsize_s;
    db_convention convention;
    db_pivot pivot;
    double beam[3], fdet[3], sdet[3], odet[3], polar[3], spindle[3], twotheta_axis[3], vert[3];
    double Xbeam, Ybeam, Xclose, Yclose, Fclose, Sclose, Fbeam, Sbeam; /* m */
    double ORGX, ORGY; /* pixels: the direct-beam origin Fclose, Sclose in XDS's terms */
    int roi_xmin, roi_xmax, roi_ymin, roi_ymax;
    double fluence, flux;
    /* sampling (spec §3.4) */
    int phisteps;
    double osc, phistep;
    int hdivsteps, vdivsteps, dispsteps;
    double hdivrange, hdivstep, vdivrange, vdivstep, dispersion, dispstep;
    int thicksteps;
    double thick, thickstep, mu;
    int mosaic_domains;
    double mosaic_spread;
    double sample_x, sample_y, sample_z;  /* m, y and z clipped to the beam size (spec §3.2) */
} db_plan;

/* (src/plan.c) */
int db_make_plan(const db_config *cfg, db_plan *plan, db_error *err);

/* What the configuration fixes instead of leaving free, each rule once: values.c refuses to set these, and the
 * table builder seeds no derivative for them. The fluence when -flux, -exposure and -beamsize give it (spec: the
 * flux then wins over -fluence); the cell count along axis 0..2 (a, b, c) when a crystal size gives it (the plan's
 * sizes, clipped to the beam). */
int db_fluence_from_flux(const db_config *cfg);
/* Cell constant k (0..5: a, b, c in m, alpha, beta, gamma in rad) as the crystal uses it: an absent (0) b or c
 * stands for a, an absent angle for 90 degrees. */
double db_cell_in_force(const db_config *cfg, int k);
int db_cells_from_size(const db_plan *plan, int axis);
/* Whether the configuration fixes parameter param (its table row's db_param_fixing): NULL when it is free, else
 * why, as the end of a message after the parameter's name ("set by -flux, -exposure and -beamsize, not a free
 * value") */
const char *db_param_fixed(const db_config *cfg, const db_plan *plan, int param);

/* Bounds on values that the arithmetic turns into integers or floats (issue 18: a value past them was undefined
 * behaviour, not an error). Each covers every physical use with a wide margin:
 * - DB_MAX_CELLS, unit cells per crystal edge (-N, -Na, -Nb, -Nc, and those a crystal size gives): the lattice
 *   factor takes the parity of (long)h0 * ((long)N - 1), which stays below 1e18 < 2^63 with |h0| <= DB_MAX_MILLER.
 *   A 1 cm crystal of 2 A cells has 5e7 cells per edge, 20 times below.
 * - DB_MAX_MILLER, the largest |h| a run may reach, 2 |a| / lambda for the longest cell edge a and the shortest
 *   wavelength (|S| <= 2 / lambda): the pixel loop rounds h, k, l to int (2^31 = 2.1e9). A 10000 A cell at
 *   0.01 A (300 keV electrons are 0.02 A) gives 2e6, 500 times below.
 * - DB_MAX_MOSAIC_DEG, -mosaic: the spread is rounded to float as in the reference (a double beyond float's range
 *   is undefined there); a mosaic spread is a few degrees at most, and no rotation exceeds a whole turn. */
#define DB_MAX_CELLS 1e9
/* Sources of a divergence and dispersion grid (-hdivsteps x -vdivsteps x -dispsteps), refused by the plan. */
#ifndef DB_MAX_SOURCES
#define DB_MAX_SOURCES 10000000
#endif
#define DB_MAX_MILLER 1e9
#define DB_MAX_MOSAIC_DEG 360.0

/* The input files the command line names (-hkl, -mat, -sourcefile, -mask, -img, -boxes), for the programs' check
 * that no output overwrites an input: fills up to DB_CONFIG_MAX_INPUTS paths and their flags, returns the count. */
#define DB_CONFIG_MAX_INPUTS 6
int db_config_input_files(const db_config *cfg, const char *paths[DB_CONFIG_MAX_INPUTS], const char *flags[DB_CONFIG_MAX_INPUTS]);

/* v = (x, y, z): the conventions' vectors, in the defaults, the flags and the plan */
static inline void db_vec3_set(double v[3], double x, double y, double z)
{
    v[0] = x;
    v[1] = y;
    v[2] = z;
}

#endif
