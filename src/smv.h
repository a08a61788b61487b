/* SMV and PGM images, the int (noiseless) and noise pixel values (spec appendix A3.4, A4.1-A4.4). */
#ifndef DB_SMV_H
#define DB_SMV_H

#include "dualbragg.h"
#include "rng.h"
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The header values exactly as printed, already in mm / Angstrom / degrees (the caller computes them, A4.1). */
typedef struct db_smv_header {
    int fpixels, spixels;
    double pixel_size, distance, wavelength, beam_center_x, beam_center_y, adxv_center_x, adxv_center_y,
        mosflm_center_x, mosflm_center_y, denzo_x_beam, denzo_y_beam, dials_origin[3], xds_orgx, xds_orgy,
        close_distance, phi, osc_start, osc_range, twotheta;
} db_smv_header;

/* Inclusive bounds as the reference tests them: f < xmin || f > xmax || s < ymin || s > ymax is outside.
 * A NULL db_roi pointer means the whole image. */
typedef struct db_roi {
    int xmin, xmax, ymin, ymax;
} db_roi;

/* Header text per A4.1, padded with spaces to 512 bytes; a text of 512 bytes or more is not padded (the
 * reference's quirk: the data then follow the '\f' although HEADER_BYTES says 512). Returns the byte count
 * written into buf (not NUL-terminated), or 0 if bufsize is too small (2048 is always enough). */
size_t db_smv_header_text(const db_smv_header *h, char *buf, size_t bufsize);

/* A4.3 int image: out[s*fpixels+f] = clip(F*scale + adc) rounded as the reference does; 0 outside the ROI.
 * scale as given (the caller resolves -scale or 55000/max_I). */
void db_int_image(const float *img, int fpixels, int spixels, const db_roi *roi, double scale, double adc,
                  uint16_t *out);

/* A3.4 noise image: Poisson deviates of the float image plus adc, clipped at 65535; 0 outside the ROI, where
 * no random numbers are drawn. Pixels are visited row-major. Returns the photon sum (before adc) and the
 * number of clipped pixels. */
void db_noise_image(db_rng *r, long *seed, const float *img, int fpixels, int spixels, const db_roi *roi,
                    double adc, uint16_t *out, double *photons, int *overloads);

/* Writes header + data (little-endian uint16, whatever the host order) atomically. */
int db_smv_write(const char *path, const db_smv_header *h, const uint16_t *data, db_error *err);

/* A4.4 PGM pixels (0 outside the ROI) and the whole file, written atomically. */
void db_pgm_pixels(const float *img, int fpixels, int spixels, const db_roi *roi, double pgm_scale,
                   uint8_t *out);
int db_pgm_write(const char *path, const float *img, int fpixels, int spixels, const db_roi *roi,
                 double pgm_scale, db_error *err);

/* An SMV file read for -img / -mask. header is the NUL-terminated text between '{' and '}'; header_bytes is
 * the offset the data were read from (HEADER_BYTES, or the end of the header text when the text runs past
 * it, as in files written by the reference with a long header); data are in host order. */
typedef struct db_smv_image {
    int fpixels, spixels;
    size_t header_bytes;
    char *header;
    uint16_t *data;
} db_smv_image;

/* The longest SMV header read (HEADER_BYTES, and the text up to its '}'): ADSC detectors and the reference
 * write 512 bytes, other converters a few KiB; 1 MiB is ample and bounds what a file without a '}' costs. */
#define DB_SMV_MAX_HEADER_BYTES ((size_t)1 << 20)
/* The most pixels an SMV image may have: the largest area detectors have under 10^8; 2^30 (2 GiB of data)
 * leaves ten times that and bounds what a stream with a lying header can make the reader take. */
#define DB_SMV_MAX_PIXELS ((size_t)1 << 30)

/* Reads and checks an SMV file: HEADER_BYTES, SIZE1, SIZE2, TYPE=unsigned_short and
 * BYTE_ORDER=little_endian|big_endian are required, and the file must be exactly the header and
 * SIZE1 x SIZE2 pixels (a regular file's size is checked before its data are read). Malformed, truncated
 * or too long files give DB_ERR_FORMAT naming the file, the header fields and the sizes; on failure *out is
 * left empty (safe to free). db_smv_read_flag names the flag (-mask, -img, -obs) in its messages. */
int db_smv_read(const char *path, db_smv_image *out, db_error *err);
int db_smv_read_flag(const char *flag, const char *path, db_smv_image *out, db_error *err);
/* The same from an input already opened (fileio.h), of which a first part may have been read. */
struct db_input;
int db_smv_read_input(struct db_input *in, db_smv_image *out, db_error *err);

/* The value of KEY in the header as a double: 1 if present and entirely a finite number, else 0. */
int db_smv_header_double(const db_smv_image *img, const char *key, double *value);

void db_smv_image_free(db_smv_image *img);

#ifdef __cplusplus
}
#endif
#endif
