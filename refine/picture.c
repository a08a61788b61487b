/* picture.c: see picture.h. The picture is coloured into an RGB buffer, encoded into memory, and only then
 * written (temporary name and rename), so that a libpng error or a full disk leaves no partial PNG. */
#include "picture.h"
#include "error.h"
#include "fileio.h"

#include <math.h>
#include <png.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const unsigned char NONFINITE_RGB[3] = {255, 0, 255}; /* magenta: no colour of either map */
static const unsigned char BOX_RGB[3] = {0, 255, 0};         /* green: no colour of either map */

/* One of the two image types, read as double, so that both entry points share one body. */
typedef struct pixels {
    const double *d;
    const float *f;
} pixels;

static double value_at(pixels p, size_t i) { return p.d ? p.d[i] : (double)p.f[i]; }

static unsigned char level(double x) /* x in [0, 1] */
{
    return (unsigned char)(255.0 * x + 0.5);
}

static void colour_log(pixels p, size_t n, unsigned char *rgb)
{
    double vmax = 0.0;
    for (size_t i = 0; i < n; i++) {
        double v = value_at(p, i);
        if (isfinite(v) && v > vmax) vmax = v;
    }
    double denom = log1p(vmax); /* 0 when nothing is positive: every pixel is black */
    for (size_t i = 0; i < n; i++, rgb += 3) {
        double v = value_at(p, i);
        if (!isfinite(v)) {
            memcpy(rgb, NONFINITE_RGB, 3);
            continue;
        }
        unsigned char g = denom > 0.0 && v > 0.0 ? level(log1p(v) / denom) : 0;
        rgb[0] = rgb[1] = rgb[2] = g;
    }
}

static void colour_diverging(pixels p, size_t n, unsigned char *rgb)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++) {
        double v = fabs(value_at(p, i));
        if (isfinite(v) && v > s) s = v;
    }
    for (size_t i = 0; i < n; i++, rgb += 3) {
        double v = value_at(p, i);
        if (!isfinite(v)) {
            memcpy(rgb, NONFINITE_RGB, 3);
            continue;
        }
        double t = s > 0.0 ? v / s : 0.0;
        /* white at 0, fading towards pure blue (t = -1) or pure red (t = 1) */
        unsigned char fade = level(1.0 - fabs(t));
        rgb[0] = t < 0.0 ? fade : 255;
        rgb[1] = fade;
        rgb[2] = t > 0.0 ? fade : 255;
    }
}

/* The box's own border pixels that lie on the image: a box reaching past an edge keeps that side open. */
static void outline_box(unsigned char *rgb, int F, int S, const int *box)
{
    int x0 = box[0], x1 = box[1], y0 = box[2], y1 = box[3];
    for (int s = y0 < 0 ? 0 : y0; s <= y1 && s < S; s++)
        for (int f = x0 < 0 ? 0 : x0; f <= x1 && f < F; f++)
            if (f == x0 || f == x1 || s == y0 || s == y1) memcpy(rgb + 3 * ((size_t)s * F + f), BOX_RGB, 3);
}

/* ---- encoding into memory ---- */

typedef struct png_memory {
    unsigned char *data;
    size_t len, cap;
    int code;          /* the db_status of a failure seen by a callback */
    char message[256]; /* libpng's error */
    char warning[256]; /* its last warning, which often says more ("Image width exceeds user limit") */
} png_memory;

static void on_png_error(png_structp png, png_const_charp msg)
{
    png_memory *m = (png_memory *)png_get_error_ptr(png);
    if (!m->code) m->code = DB_ERR_IO;
    snprintf(m->message, sizeof m->message, "%s", msg);
    png_longjmp(png, 1);
}

/* The library never prints: a warning is kept for the message of an error that may follow. */
static void on_png_warning(png_structp png, png_const_charp msg)
{
    png_memory *m = (png_memory *)png_get_error_ptr(png);
    snprintf(m->warning, sizeof m->warning, "%s", msg);
}

static void on_png_write(png_structp png, png_bytep data, png_size_t len)
{
    png_memory *m = (png_memory *)png_get_io_ptr(png);
    if (len > m->cap - m->len) {
        size_t cap = m->cap ? m->cap : 65536;
        while (len > cap - m->len) cap *= 2;
        unsigned char *bigger = (unsigned char *)realloc(m->data, cap);
        if (!bigger) {
            m->code = DB_ERR_NOMEM;
            png_error(png, "out of memory");
        }
        m->data = bigger;
        m->cap = cap;
    }
    memcpy(m->data + m->len, data, len);
    m->len += len;
}

static void on_png_flush(png_structp png) { (void)png; }

/* Kept apart from its callers so that no local of theirs lives across setjmp/longjmp. */
static int encode_png(png_memory *m, const unsigned char *rgb, int F, int S)
{
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, m, on_png_error, on_png_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        m->code = DB_ERR_NOMEM;
        snprintf(m->message, sizeof m->message, "out of memory");
        return m->code;
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        return m->code;
    }
    png_set_write_fn(png, m, on_png_write, on_png_flush);
    png_set_IHDR(png, info, (png_uint_32)F, (png_uint_32)S, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int s = 0; s < S; s++) png_write_row(png, rgb + 3 * (size_t)s * F);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    return DB_OK;
}

static int write_png(const char *path, pixels p, int F, int S, db_picture_map map, const int *boxes, int nboxes,
                     db_error *err)
{
    if (!path || !*path) return db_fail(err, DB_ERR_ARGUMENT, "PNG picture: no file name");
    if ((!p.d && !p.f) || F <= 0 || S <= 0 || nboxes < 0 || (nboxes > 0 && !boxes))
        return db_fail(err, DB_ERR_ARGUMENT, "PNG picture '%s': no image, a size that is not positive (%d x %d) or "
                       "no boxes (%d)", path, F, S, nboxes);
    if (map != DB_PICTURE_LOG && map != DB_PICTURE_DIVERGING)
        return db_fail(err, DB_ERR_ARGUMENT, "PNG picture '%s': unknown colour map %d", path, (int)map);
    for (int b = 0; b < nboxes; b++)
        if (boxes[4 * b] > boxes[4 * b + 1] || boxes[4 * b + 2] > boxes[4 * b + 3])
            return db_fail(err, DB_ERR_ARGUMENT, "PNG picture '%s': box %d (%d %d %d %d) has min > max", path, b,
                           boxes[4 * b], boxes[4 * b + 1], boxes[4 * b + 2], boxes[4 * b + 3]);
    size_t n = (size_t)F * (size_t)S;
    if (n > SIZE_MAX / 3) return db_fail(err, DB_ERR_ARGUMENT, "PNG picture '%s': %d x %d is too large", path, F, S);
    unsigned char *rgb = (unsigned char *)malloc(3 * n);
    if (!rgb) return db_fail(err, DB_ERR_NOMEM, "out of memory for the %d x %d picture '%s'", F, S, path);
    if (map == DB_PICTURE_LOG) colour_log(p, n, rgb);
    else colour_diverging(p, n, rgb);
    for (int b = 0; b < nboxes; b++) outline_box(rgb, F, S, boxes + 4 * b);

    png_memory m = {NULL, 0, 0, DB_OK, "", ""};
    int rc = encode_png(&m, rgb, F, S);
    free(rgb);
    if (rc && m.warning[0]) rc = db_fail(err, rc, "cannot write PNG '%s': %s (%s)", path, m.message, m.warning);
    else if (rc) rc = db_fail(err, rc, "cannot write PNG '%s': %s", path, m.message);
    else {
        const void *bufs[1] = {m.data};
        size_t lens[1] = {m.len};
        rc = db_write_file_atomic(path, bufs, lens, 1, err);
    }
    free(m.data);
    return rc;
}

int db_png_write(const char *path, const double *img, int fpixels, int spixels, db_picture_map map,
                 const int *boxes, int nboxes, db_error *err)
{
    pixels p = {img, NULL};
    return write_png(path, p, fpixels, spixels, map, boxes, nboxes, err);
}

int db_png_write_float(const char *path, const float *img, int fpixels, int spixels, db_picture_map map,
                       const int *boxes, int nboxes, db_error *err)
{
    pixels p = {NULL, img};
    return write_png(path, p, fpixels, spixels, map, boxes, nboxes, err);
}
