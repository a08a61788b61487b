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

/* db_find_spots, the spot finder, is public: include/dualbragg.h. */

#endif
