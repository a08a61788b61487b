/* picture.h: PNG pictures of images (libpng), for people to look at: a log scale for intensities, a diverging map
 * with zero in the middle for residuals and derivative images, chosen boxes outlined. Written completely or not
 * at all (temporary name, then rename). */
#ifndef DB_PICTURE_H
#define DB_PICTURE_H

#include "dualbragg.h"

typedef enum db_picture_map {
    DB_PICTURE_LOG,      /* intensities >= 0: grey levels on a log scale (negative values count as 0) */
    DB_PICTURE_DIVERGING /* signed values: blue (negative), white (zero), red (positive), symmetric scale */
} db_picture_map;

/* img[s*fpixels + f]; boxes[4*i..4*i+3] = xmin xmax ymin ymax (inclusive) outlined, may be NULL when nboxes == 0.
 * Non-finite pixels are drawn in a marker colour, never passed to the scale. */
int db_png_write(const char *path, const double *img, int fpixels, int spixels, db_picture_map map,
                 const int *boxes, int nboxes, db_error *err);
/* The same for a float image (the -floatfile image). */
int db_png_write_float(const char *path, const float *img, int fpixels, int spixels, db_picture_map map,
                       const int *boxes, int nboxes, db_error *err);

#endif
