/* SMV / PGM output and SMV input (appendix A3.4, A4.1-A4.4). The pixel conversions reproduce the
 * reference byte for byte, including its float rounding before the floor and x86-64's out-of-range casts. */
#include "smv.h"
#include "error.h"
#include "fileio.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SMV_HEADER_BYTES 512

static int outside_roi(const db_roi *roi, int f, int s)
{
    return roi && (f < roi->xmin || f > roi->xmax || s < roi->ymin || s > roi->ymax);
}

/* C leaves out-of-range float-to-integer conversions undefined; the reference's images hold what x86-64 gives
 * for (uint16)d and (uint8)d: truncation to a 32-bit integer (INT_MIN for NaN or out of range), then its low
 * bits. So -100 becomes 65436 in a uint16 and NaN becomes 0. */
static uint32_t truncate_like_x86(double d)
{
    if (!(d > -2147483649.0 && d < 2147483648.0))
        return 0x80000000u;
    return (uint32_t)(int32_t)d;
}

static int host_is_little_endian(void)
{
    const uint16_t probe = 1;
    return *(const unsigned char *)&probe == 1;
}

size_t db_smv_header_text(const db_smv_header *h, char *buf, size_t bufsize)
{
    int n = snprintf(buf, bufsize,
                     "{\nHEADER_BYTES=%d;\nDIM=2;\nBYTE_ORDER=little_endian;\nTYPE=unsigned_short;\n"
                     "SIZE1=%d;\nSIZE2=%d;\nPIXEL_SIZE=%g;\nDISTANCE=%g;\nWAVELENGTH=%g;\n"
                     "BEAM_CENTER_X=%g;\nBEAM_CENTER_Y=%g;\nADXV_CENTER_X=%g;\nADXV_CENTER_Y=%g;\n"
                     "MOSFLM_CENTER_X=%g;\nMOSFLM_CENTER_Y=%g;\nDENZO_X_BEAM=%g;\nDENZO_Y_BEAM=%g;\n"
                     "DIALS_ORIGIN=%g,%g,%g\n" /* no ';' in the reference */
                     "XDS_ORGX=%g;\nXDS_ORGY=%g;\nCLOSE_DISTANCE=%g;\nPHI=%g;\nOSC_START=%g;\nOSC_RANGE=%g;\n"
                     "TWOTHETA=%g;\nDETECTOR_SN=000;\nBEAMLINE=fake;\n}\f",
                     SMV_HEADER_BYTES, h->fpixels, h->spixels, h->pixel_size, h->distance, h->wavelength,
                     h->beam_center_x, h->beam_center_y, h->adxv_center_x, h->adxv_center_y, h->mosflm_center_x,
                     h->mosflm_center_y, h->denzo_x_beam, h->denzo_y_beam, h->dials_origin[0], h->dials_origin[1],
                     h->dials_origin[2], h->xds_orgx, h->xds_orgy, h->close_distance, h->phi, h->osc_start,
                     h->osc_range, h->twotheta);
    if (n < 0 || (size_t)n >= bufsize)
        return 0;
    size_t len = (size_t)n;
    if (len < SMV_HEADER_BYTES) {
        if (bufsize < SMV_HEADER_BYTES)
            return 0;
        memset(buf + len, ' ', SMV_HEADER_BYTES - len);
        len = SMV_HEADER_BYTES;
    }
    return len;
}

void db_int_image(const float *img, int fpixels, int spixels, const db_roi *roi, double scale, double adc,
                  uint16_t *out)
{
    /* every pixel on its own: rows in parallel (serial, it was 3.5% of a light run's instructions, callgrind) */
#pragma omp parallel for schedule(static)
    for (int s = 0; s < spixels; s++) {
        const size_t row = (size_t)s * (size_t)fpixels;
        int f0 = 0, f1 = fpixels - 1; /* the row's pixels inside the ROI */
        if (roi) {
            if (s < roi->ymin || s > roi->ymax) f1 = -1;
            if (roi->xmin > f0) f0 = roi->xmin;
            if (roi->xmax < f1) f1 = roi->xmax;
        }
        if (f1 < f0) { /* none: the whole row is zero */
            f0 = fpixels;
            f1 = fpixels - 1;
        }
        for (int f = 0; f < f0; f++) out[row + (size_t)f] = 0;
        for (int f = f1 + 1; f < fpixels; f++) out[row + (size_t)f] = 0;
#pragma omp simd
        for (int f = f0; f <= f1; f++) {
            double v = (double)img[row + (size_t)f] * scale + adc;
            /* the reference clips to 0..65535 (a NaN stays, and x86-64 makes it 0); here a NaN becomes 0 first */
            v = v > 0.0 ? v : 0.0;
            v = v < 65535.0 ? v : 65535.0;
            /* v + 0.5 is rounded to float before the floor: a double floor differs at some pixels (A4.3). That
             * float is at least 0.5, so its floor is its truncation. */
            out[row + (size_t)f] = (uint16_t)(int32_t)(float)(v + 0.5);
        }
    }
}

void db_noise_image(db_rng *r, long *seed, const float *img, int fpixels, int spixels, const db_roi *roi,
                    double adc, uint16_t *out, double *photons, int *overloads)
{
    double photon_sum = 0.0;
    int clipped = 0;
    for (int s = 0; s < spixels; s++) {
        for (int f = 0; f < fpixels; f++) {
            size_t idx = (size_t)s * (size_t)fpixels + (size_t)f;
            if (outside_roi(roi, f, s)) { /* no random numbers drawn here */
                out[idx] = 0;
                continue;
            }
            double d = (double)db_poidev(r, img[idx], seed);
            photon_sum += d;
            d = d + adc;
            if (d > 65535.0) {
                d = 65535.0;
                clipped++;
            }
            out[idx] = (uint16_t)truncate_like_x86(d);
        }
    }
    if (photons)
        *photons = photon_sum;
    if (overloads)
        *overloads = clipped;
}

static int image_size_ok(int fpixels, int spixels, size_t bytes_per_pixel, size_t *count)
{
    if (fpixels <= 0 || spixels <= 0)
        return 0;
    if ((size_t)fpixels > SIZE_MAX / (size_t)spixels / bytes_per_pixel)
        return 0;
    *count = (size_t)fpixels * (size_t)spixels;
    return 1;
}

int db_smv_write(const char *path, const db_smv_header *h, const uint16_t *data, db_error *err)
{
    size_t npix;
    if (!image_size_ok(h->fpixels, h->spixels, 2, &npix))
        return db_fail(err, DB_ERR_GEOMETRY, "cannot write '%s': bad image size %d x %d", path, h->fpixels,
                       h->spixels);
    char header[2048];
    size_t header_len = db_smv_header_text(h, header, sizeof header);
    if (header_len == 0)
        return db_fail(err, DB_ERR_INTERNAL, "cannot write '%s': SMV header does not fit", path);

    const void *bufs[2] = {header, data};
    size_t lens[2] = {header_len, npix * 2};
    if (host_is_little_endian())
        return db_write_file_atomic(path, bufs, lens, 2, err);

    unsigned char *le = malloc(npix * 2);
    if (!le)
        return db_fail(err, DB_ERR_NOMEM, "out of memory writing '%s'", path);
    for (size_t i = 0; i < npix; i++) {
        le[2 * i] = (unsigned char)(data[i] & 0xff);
        le[2 * i + 1] = (unsigned char)(data[i] >> 8);
    }
    bufs[1] = le;
    int rc = db_write_file_atomic(path, bufs, lens, 2, err);
    free(le);
    return rc;
}

void db_pgm_pixels(const float *img, int fpixels, int spixels, const db_roi *roi, double pgm_scale,
                   uint8_t *out)
{
    for (int s = 0; s < spixels; s++) {
        for (int f = 0; f < fpixels; f++) {
            size_t idx = (size_t)s * (size_t)fpixels + (size_t)f;
            if (outside_roi(roi, f, s)) {
                out[idx] = 0;
                continue;
            }
            double v = (double)img[idx] * pgm_scale;
            if (v > 255.0)
                v = 255.0;
            out[idx] = (uint8_t)(truncate_like_x86(v) & 0xffu); /* no lower clip in the reference */
        }
    }
}

int db_pgm_write(const char *path, const float *img, int fpixels, int spixels, const db_roi *roi,
                 double pgm_scale, db_error *err)
{
    size_t npix;
    if (!image_size_ok(fpixels, spixels, 1, &npix))
        return db_fail(err, DB_ERR_GEOMETRY, "cannot write '%s': bad image size %d x %d", path, fpixels, spixels);
    char header[256];
    int header_len = snprintf(header, sizeof header, "P5\n%d %d\n# pixels scaled by %g\n255\n", fpixels, spixels,
                              pgm_scale);
    if (header_len < 0 || (size_t)header_len >= sizeof header)
        return db_fail(err, DB_ERR_INTERNAL, "cannot write '%s': PGM header does not fit", path);
    uint8_t *pixels = malloc(npix);
    if (!pixels)
        return db_fail(err, DB_ERR_NOMEM, "out of memory writing '%s'", path);
    db_pgm_pixels(img, fpixels, spixels, roi, pgm_scale, pixels);
    const void *bufs[2] = {header, pixels};
    size_t lens[2] = {(size_t)header_len, npix};
    int rc = db_write_file_atomic(path, bufs, lens, 2, err);
    free(pixels);
    return rc;
}

/* ---- reading ---- */

static int is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\f' || c == '\v';
}

/* Entries are "KEY=VALUE" separated by ';' or line ends (the reference's DIALS_ORIGIN line has no ';').
 * Returns the first entry's trimmed value, or NULL. */
static const char *find_value(const char *text, const char *key, size_t *value_len)
{
    size_t key_len = strlen(key);
    const char *p = text;
    while (*p) {
        const char *end = p + strcspn(p, ";\n\r");
        const char *k = p;
        while (k < end && is_blank(*k))
            k++;
        const char *eq = memchr(k, '=', (size_t)(end - k));
        if (eq) {
            const char *key_end = eq;
            while (key_end > k && is_blank(key_end[-1]))
                key_end--;
            if ((size_t)(key_end - k) == key_len && memcmp(k, key, key_len) == 0) {
                const char *v = eq + 1;
                while (v < end && is_blank(*v))
                    v++;
                const char *v_end = end;
                while (v_end > v && is_blank(v_end[-1]))
                    v_end--;
                *value_len = (size_t)(v_end - v);
                return v;
            }
        }
        p = *end ? end + 1 : end;
    }
    return NULL;
}

static int value_equals(const char *header, const char *key, const char *expected)
{
    size_t len;
    const char *v = find_value(header, key, &len);
    return v && len == strlen(expected) && memcmp(v, expected, len) == 0;
}

int db_smv_header_double(const db_smv_image *img, const char *key, double *value)
{
    if (!img || !img->header || !key)
        return 0;
    size_t len;
    const char *v = find_value(img->header, key, &len);
    char number[64];
    if (!v || len == 0 || len >= sizeof number)
        return 0;
    memcpy(number, v, len);
    number[len] = '\0';
    char *end;
    double parsed = strtod(number, &end);
    if (end != number + len || !isfinite(parsed))
        return 0;
    *value = parsed;
    return 1;
}

/* A non-negative integer header value no larger than max. */
static int header_count(const db_smv_image *img, const char *key, double max, size_t *value)
{
    double v;
    if (!db_smv_header_double(img, key, &v) || v < 0.0 || v > max || v != floor(v))
        return 0;
    *value = (size_t)v;
    return 1;
}

void db_smv_image_free(db_smv_image *img)
{
    if (!img)
        return;
    free(img->header);
    free(img->data);
    memset(img, 0, sizeof *img);
}

int db_smv_read_input(db_input *in, db_smv_image *out, db_error *err)
{
    memset(out, 0, sizeof *out);
    /* the header only, never more than DB_SMV_MAX_HEADER_BYTES, before any size is trusted */
    int rc = db_input_fill_until(in, '}', DB_SMV_MAX_HEADER_BYTES, err);
    if (rc != DB_OK)
        return rc;
    const char *file = in->buf;
    size_t len = in->len;
    if (len == 0 || file[0] != '{')
        return db_fail(err, DB_ERR_FORMAT, "%s%s'%s' is not an SMV image: it does not start with '{'", DB_INPUT_NAME(in));
    const char *close = memchr(file, '}', len < DB_SMV_MAX_HEADER_BYTES ? len : DB_SMV_MAX_HEADER_BYTES);
    if (!close) {
        if (len >= DB_SMV_MAX_HEADER_BYTES)
            return db_fail(err, DB_ERR_FORMAT, "%s%s'%s': SMV header has no closing '}' in its first %zu bytes (the limit)",
                           DB_INPUT_NAME(in), DB_SMV_MAX_HEADER_BYTES);
        return db_fail(err, DB_ERR_FORMAT, "%s%s'%s': SMV header has no closing '}' (truncated file?)", DB_INPUT_NAME(in));
    }
    size_t text_len = (size_t)(close - file) - 1;
    out->header = malloc(text_len + 1);
    if (!out->header) {
        rc = db_fail(err, DB_ERR_NOMEM, "%s%s'%s': out of memory for the header", DB_INPUT_NAME(in));
        goto fail;
    }
    memcpy(out->header, file + 1, text_len);
    out->header[text_len] = '\0';

    size_t header_bytes, size1, size2;
    if (!header_count(out, "HEADER_BYTES", 1e15, &header_bytes)) {
        rc = db_fail(err, DB_ERR_FORMAT, "%s%s'%s': SMV header lacks a valid HEADER_BYTES", DB_INPUT_NAME(in));
        goto fail;
    }
    if (header_bytes > DB_SMV_MAX_HEADER_BYTES) {
        rc = db_fail(err, DB_ERR_FORMAT, "%s%s'%s': SMV header says HEADER_BYTES=%zu, more than the limit of %zu",
                     DB_INPUT_NAME(in), header_bytes, DB_SMV_MAX_HEADER_BYTES);
        goto fail;
    }
    if (!header_count(out, "SIZE1", 2147483647.0, &size1) || size1 == 0 ||
        !header_count(out, "SIZE2", 2147483647.0, &size2) || size2 == 0) {
        rc = db_fail(err, DB_ERR_FORMAT, "%s%s'%s': SMV header needs positive integer SIZE1 and SIZE2", DB_INPUT_NAME(in));
        goto fail;
    }
    if (!value_equals(out->header, "TYPE", "unsigned_short")) {
        rc = db_fail(err, DB_ERR_FORMAT, "%s%s'%s': only TYPE=unsigned_short SMV images are supported", DB_INPUT_NAME(in));
        goto fail;
    }
    int big_endian = value_equals(out->header, "BYTE_ORDER", "big_endian");
    if (!big_endian && !value_equals(out->header, "BYTE_ORDER", "little_endian")) {
        rc = db_fail(err, DB_ERR_FORMAT, "%s%s'%s': SMV header needs BYTE_ORDER=little_endian or big_endian",
                     DB_INPUT_NAME(in));
        goto fail;
    }
    size_t npix;
    if (!image_size_ok((int)size1, (int)size2, 2, &npix) || npix > DB_SMV_MAX_PIXELS) {
        rc = db_fail(err, DB_ERR_FORMAT, "%s%s'%s': SMV image size SIZE1 %zu x SIZE2 %zu is more than the limit of %zu pixels",
                     DB_INPUT_NAME(in), size1, size2, DB_SMV_MAX_PIXELS);
        goto fail;
    }
    /* The reference writes headers longer than 512 bytes unpadded, with the data right after "}\f". */
    size_t text_end = (size_t)(close - file) + 1;
    if ((rc = db_input_fill(in, text_end + 1, err)) != DB_OK)
        goto fail;
    if (text_end < in->len && in->buf[text_end] == '\f')
        text_end++;
    size_t offset = text_end > header_bytes ? text_end : header_bytes;
    /* the file must be exactly the header and SIZE1 x SIZE2 pixels: anything else means the header does not
     * describe the data (a wrong SIZE1, SIZE2, TYPE or HEADER_BYTES), and the image would be garbage */
    char layout[256];
    if (text_end > header_bytes)
        snprintf(layout, sizeof layout,
                 "a %zu-byte header text (longer than HEADER_BYTES=%zu), then SIZE1 %zu x SIZE2 %zu pixels of 2 bytes "
                 "for TYPE=unsigned_short",
                 text_end, header_bytes, size1, size2);
    else
        snprintf(layout, sizeof layout, "HEADER_BYTES=%zu, then SIZE1 %zu x SIZE2 %zu pixels of 2 bytes for TYPE=unsigned_short",
                 header_bytes, size1, size2);
    if ((rc = db_input_read_exact(in, offset + npix * 2, layout, err)) != DB_OK)
        goto fail;
    out->data = malloc(npix * 2);
    if (!out->data) {
        rc = db_fail(err, DB_ERR_NOMEM, "%s%s'%s': out of memory for %zu x %zu pixels", DB_INPUT_NAME(in), size1, size2);
        goto fail;
    }
    const unsigned char *bytes = (const unsigned char *)in->buf + offset;
    for (size_t i = 0; i < npix; i++) {
        unsigned lo = bytes[2 * i + (big_endian ? 1 : 0)];
        unsigned hi = bytes[2 * i + (big_endian ? 0 : 1)];
        out->data[i] = (uint16_t)(lo | (hi << 8));
    }
    out->fpixels = (int)size1;
    out->spixels = (int)size2;
    out->header_bytes = offset;
    return DB_OK;

fail:
    db_smv_image_free(out);
    return rc;
}

int db_smv_read_flag(const char *flag, const char *path, db_smv_image *out, db_error *err)
{
    memset(out, 0, sizeof *out);
    db_input in;
    int rc = db_input_open(&in, flag, path, err);
    if (rc == DB_OK)
        rc = db_smv_read_input(&in, out, err);
    db_input_close(&in);
    return rc;
}

int db_smv_read(const char *path, db_smv_image *out, db_error *err)
{
    return db_smv_read_flag(NULL, path, out, err);
}
