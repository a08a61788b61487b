/* observed.h: a measured (or simulated) image to fit, in photons, and the spots in it. */
#ifndef DB_OBSERVED_H
#define DB_OBSERVED_H

#include "dualbragg.h"

/* Reads an observed image of fpixels x spixels into *out (malloc'd, out[s*fpixels + f], photons):
 * - an SMV file (recognised by its content: it starts with '{' and its header names HEADER_BYTES=, whatever
 *   float64 and the name say), read by db_smv_read: counts minus adc;
 * - float64 == 1 or a name ending in ".f64": raw little-endian float64;
 * - otherwise raw little-endian float32.
 * A size that does not match the detector (SIZE1 x SIZE2, or exactly fpixels*spixels*4 or 8 bytes) is a
 * DB_ERR_FORMAT naming the file, its size and the expected one (and the other raw type when it would fit);
 * a file that cannot be read (missing, a folder) is DB_ERR_IO with the path and the system's reason. Values
 * are not checked here (see db_observed_check). On failure *out is NULL. */
int db_observed_read(const char *path, int fpixels, int spixels, double adc, int float64, double **out,
                     db_error *err);

/* The pixels a fit uses must be finite and >= 0: an error naming the file (what), the first bad pixel (fast,
 * slow) and its value otherwise. pixels[i] = s*fpixels + f. */
int db_observed_check(const char *what, const double *obs, int fpixels, const long *pixels, long count,
                      db_error *err);

/* Boxes of size x size pixels (clipped at the detector's edges) around the n brightest spots of obs among the
 * listed pixels (pixels[i] = s*fpixels + f, in any order; the unlisted ones, and listed ones that are not
 * finite, count as absent, also as neighbours). The rule (spots.c has the details):
 *   background = median of the listed values, noise = max(1.4826 * median absolute deviation,
 *   sqrt(max(background, 1))), threshold = background + 5 * noise;
 *   a spot is a pixel above the threshold that is a local maximum among its listed 3x3 neighbours (ties go to
 *   the lower pixel index, so a flat rectangular plateau gives one maximum);
 *   in order of value (descending; ties by pixel index), a spot is taken when its centre is at least `size`
 *   pixels (Chebyshev distance) from every one taken before, until n are taken.
 * Box = centre - size/2 .. centre - size/2 + size - 1 in each direction, clipped. Writes up to n boxes
 * (xmin xmax ymin ymax, inclusive) to boxes[4*n] and returns how many were found (0: none; also for
 * count == 0), or -1 with err set (n < 1: -spots, size < 1: -spot_size, a pixel index outside the detector:
 * DB_ERR_ARGUMENT). Cost O(count log count) at most (O(count) for a sorted list). */
int db_find_spots(const double *obs, int fpixels, int spixels, const long *pixels, long count, int n, int size,
                  int *boxes, db_error *err);

#endif
