/* observed.c: see observed.h (reading and checking an observed image). */
#include "observed.h"
#include "error.h"
#include "fileio.h"
#include "smv.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* 1 when needle occurs in the first len bytes of hay (memmem is a GNU extension). */
static int bytes_contain(const char *hay, size_t len, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = 0; n <= len && i <= len - n; i++)
        if (hay[i] == needle[0] && memcmp(hay + i, needle, n) == 0)
            return 1;
    return 0;
}

/* An SMV file starts with '{' and its header (up to the first '}', or the whole file if none) names
 * HEADER_BYTES. A raw float image that happens to start with the byte '{' does not also hold that text. */
static int looks_like_smv(const char *data, size_t len)
{
    if (len == 0 || data[0] != '{')
        return 0;
    const char *close = memchr(data, '}', len);
    size_t header_len = close ? (size_t)(close - data) : len;
    return bytes_contain(data, header_len, "HEADER_BYTES=");
}

/* The observed image is only ever the refinement's -obs: messages name it. */
#define OBS_FLAG "-obs"

static int name_ends_with(const char *name, const char *suffix)
{
    size_t n = strlen(name), k = strlen(suffix);
    return n >= k && strcmp(name + n - k, suffix) == 0;
}

/* The SMV file's counts minus adc, into a new array once its size is known to match. */
static int read_smv(db_input *in, int fpixels, int spixels, size_t npix, double adc, double **out, db_error *err)
{
    db_smv_image img;
    int rc = db_smv_read_input(in, &img, err);
    if (rc != DB_OK)
        return rc;
    if (img.fpixels != fpixels || img.spixels != spixels) {
        rc = db_fail(err, DB_ERR_FORMAT, OBS_FLAG " '%s' is a %d x %d SMV image; the detector has %d x %d pixels",
                     in->path, img.fpixels, img.spixels, fpixels, spixels);
        db_smv_image_free(&img);
        return rc;
    }
    double *v = malloc(npix * sizeof *v);
    if (!v) {
        db_smv_image_free(&img);
        return db_fail(err, DB_ERR_NOMEM, OBS_FLAG " '%s': out of memory (%d x %d pixels)", in->path, fpixels,
                       spixels);
    }
    for (size_t i = 0; i < npix; i++)
        v[i] = (double)img.data[i] - adc;
    db_smv_image_free(&img);
    *out = v;
    return DB_OK;
}

/* Raw little-endian floats, decoded byte by byte so that the host's byte order does not matter. */
static void decode_raw(const unsigned char *bytes, size_t npix, int float64, double *out)
{
    for (size_t i = 0; i < npix; i++) {
        if (float64) {
            uint64_t u = 0;
            for (int b = 7; b >= 0; b--)
                u = (u << 8) | bytes[8 * i + (size_t)b];
            double d;
            memcpy(&d, &u, sizeof d);
            out[i] = d;
        } else {
            uint32_t u = 0;
            for (int b = 3; b >= 0; b--)
                u = (u << 8) | bytes[4 * i + (size_t)b];
            float x;
            memcpy(&x, &u, sizeof x);
            out[i] = (double)x;
        }
    }
}

/* len: the file's size, or (more) the number of bytes read from a stream that went on past them. */
static int raw_size_error(const char *path, unsigned long long len, int more, int fpixels, int spixels, size_t npix,
                          int float64, int by_name, db_error *err)
{
    size_t expected = npix * (float64 ? 8 : 4), other = npix * (float64 ? 4 : 8);
    const char *type = float64 ? "float64" : "float32";
    if (more)
        return db_fail(err, DB_ERR_FORMAT,
                       OBS_FLAG " '%s' has more than %llu bytes; a %d x %d %s image has %zu (a stream that does not "
                       "end?)",
                       path, len - 1, fpixels, spixels, type, expected);
    if (len == other) {
        if (float64)
            return db_fail(err, DB_ERR_FORMAT,
                           OBS_FLAG " '%s' is %llu bytes; a %d x %d float64 image has %zu (it would fit float32; "
                           "float64 was chosen by %s)",
                           path, len, fpixels, spixels, expected,
                           by_name ? "the name's .f64 ending" : "-obs_float64");
        return db_fail(err, DB_ERR_FORMAT,
                       OBS_FLAG " '%s' is %llu bytes; a %d x %d float32 image has %zu (it would fit float64: "
                       "-obs_float64)",
                       path, len, fpixels, spixels, expected);
    }
    return db_fail(err, DB_ERR_FORMAT,
                   OBS_FLAG " '%s' is %llu bytes; a %d x %d %s image has %zu (nor is it an SMV image: no '{' header "
                   "with HEADER_BYTES=)",
                   path, len, fpixels, spixels, type, expected);
}

int db_observed_read(const char *path, int fpixels, int spixels, double adc, int float64, double **out,
                     db_error *err)
{
    if (!out)
        return db_fail(err, DB_ERR_ARGUMENT, "db_observed_read: no output pointer");
    *out = NULL;
    if (!path || !*path)
        return db_fail(err, DB_ERR_ARGUMENT, "db_observed_read: no file name");
    if (fpixels <= 0 || spixels <= 0 || (size_t)fpixels > SIZE_MAX / 8 / (size_t)spixels ||
        (size_t)fpixels * (size_t)spixels > SIZE_MAX / sizeof(double))
        return db_fail(err, DB_ERR_ARGUMENT, "cannot read '%s': bad detector size %d x %d", path, fpixels,
                       spixels);
    if (!isfinite(adc))
        return db_fail(err, DB_ERR_ARGUMENT, "cannot read '%s': the ADC offset must be finite", path);
    size_t npix = (size_t)fpixels * (size_t)spixels;

    /* The file is opened once (it may be a FIFO) and read only as far as needed: an SMV header first, else
     * the raw image's exact size. */
    db_input in;
    int rc = db_input_open(&in, OBS_FLAG, path, err); /* DB_ERR_IO with the path and strerror (a folder: EISDIR) */
    if (rc != DB_OK)
        return rc;
    rc = db_input_fill(&in, 1, err);
    if (rc == DB_OK && in.len > 0 && in.buf[0] == '{')
        rc = db_input_fill_until(&in, '}', DB_SMV_MAX_HEADER_BYTES, err);
    if (rc == DB_OK && looks_like_smv(in.buf, in.len)) {
        rc = read_smv(&in, fpixels, spixels, npix, adc, out, err);
        db_input_close(&in);
        return rc;
    }

    /* Raw: the byte count is checked before the data are read (a stream: read one byte past the larger raw
     * size at most, so /dev/zero ends here) and before the image is allocated. */
    int by_name = name_ends_with(path, ".f64");
    int wide = float64 == 1 || by_name;
    size_t expected = npix * (wide ? 8 : 4);
    if (rc == DB_OK && in.size >= 0 && (unsigned long long)in.size != expected)
        rc = raw_size_error(path, (unsigned long long)in.size, 0, fpixels, spixels, npix, wide,
                            by_name && float64 != 1, err);
    if (rc == DB_OK)
        rc = db_input_fill(&in, npix * 8 + 1, err);
    if (rc == DB_OK && in.len != expected)
        rc = raw_size_error(path, in.len, in.len > npix * 8, fpixels, spixels, npix, wide, by_name && float64 != 1,
                            err);
    double *img = NULL;
    if (rc == DB_OK && !(img = malloc(npix * sizeof *img)))
        rc = db_fail(err, DB_ERR_NOMEM, OBS_FLAG " '%s': out of memory (%d x %d pixels)", path, fpixels, spixels);
    if (rc == DB_OK) {
        decode_raw((const unsigned char *)in.buf, npix, wide, img);
        *out = img;
    }
    db_input_close(&in);
    return rc;
}

int db_observed_check(const char *what, const double *obs, int fpixels, const long *pixels, long count,
                      db_error *err)
{
    if (!what)
        what = "the observed image";
    if (fpixels <= 0)
        return db_fail(err, DB_ERR_ARGUMENT, "'%s': bad detector width %d", what, fpixels);
    if (count > 0 && (!obs || !pixels))
        return db_fail(err, DB_ERR_ARGUMENT, "'%s': no image or no pixel list", what);
    for (long i = 0; i < count; i++) {
        long p = pixels[i];
        if (p < 0)
            return db_fail(err, DB_ERR_ARGUMENT, "'%s': pixel index %ld is negative", what, p);
        double v = obs[p];
        if (!(isfinite(v) && v >= 0.0))
            return db_fail(err, DB_ERR_FORMAT,
                           "'%s': pixel (fast %ld, slow %ld) is %.9g; photons must be finite and >= 0 (an SMV "
                           "file's counts minus -obs_adc)",
                           what, p % fpixels, p / fpixels, v);
    }
    return DB_OK;
}
