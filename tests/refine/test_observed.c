/* test_observed.c: the observed image a refinement fits (refine/observed.c) and the spot finder (refine/spots.c).
 *  - reading: a golden SMV noise image is its uint16 counts minus the ADC offset (bytes decoded here), whatever
 *    the flag says; a golden float.bin is its float32 values; a float64 file is read by its .f64 name or by the
 *    flag; an SMV file must have the detector's SIZE1 x SIZE2 (not only their product); a raw file that starts
 *    with '{' is still raw; wrong byte counts, missing files and folders give errors with the expected text;
 *  - db_observed_check: NaN, infinities and negative values among the listed pixels are named (fast, slow);
 *  - spots: synthetic images with known blobs (order, spacing rule at its boundary, clipped boxes, the
 *    threshold rule in its Poisson and robust-sigma branches, the even-count median, the plateau tie rule,
 *    unlisted and non-finite pixels ignored as neighbours, row ends not neighbours of the next row), a
 *    brute-force oracle on random images (also 1 to 3 pixels wide or tall) and on the golden b_triclinic image,
 *    and a 2048 x 2048 image in bounded time. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "fifo_writer.h"

#include "dualbragg.h"
#include "cli_harness.h"
#include "observed.h"
#include "smv.h"
#include "test_util.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define GOLDEN_NOISE DB_GOLDEN_DIR "/d_phi005_nocarry/noise.img"
#define GOLDEN_FLOAT DB_GOLDEN_DIR "/d_phi005_nocarry/float.bin"
#define TRICLINIC_FLOAT DB_GOLDEN_DIR "/b_triclinic/float.bin"

static void assert_has(const char *message, const char *part)
{
    if (!strstr(message, part))
        fail_msg("message lacks \"%s\":\n    %s", part, message);
}

static void assert_lacks(const char *message, const char *part)
{
    if (strstr(message, part))
        fail_msg("message should not contain \"%s\":\n    %s", part, message);
}

static unsigned char *read_all(const char *path, size_t *len)
{
    unsigned char *b = harness_read(path, len);
    if (!b)
        fail_msg("cannot read %s", path);
    return b;
}

static void write_bytes(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

/* Little-endian float64 bytes of v, whatever the host. */
static void put_f64(unsigned char *dst, double v)
{
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    for (int b = 0; b < 8; b++)
        dst[b] = (unsigned char)(u >> (8 * b));
}

static float get_f32(const unsigned char *src)
{
    uint32_t u = (uint32_t)src[0] | (uint32_t)src[1] << 8 | (uint32_t)src[2] << 16 | (uint32_t)src[3] << 24;
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* A db_observed_read expected to fail: the code, *out NULL, and the message (returned). */
static const char *read_fails(const char *path, int F, int S, int float64, int code, db_error *err)
{
    double *out = (double *)(uintptr_t)1;
    memset(err, 0, sizeof *err);
    int rc = db_observed_read(path, F, S, 40.0, float64, &out, err);
    if (rc != code)
        fail_msg("%s as %d x %d: code %d, expected %d (%s)", path, F, S, rc, code, err->message);
    assert_int_equal(err->code, code);
    assert_null(out);
    return err->message;
}

/* ---------------------------------------------------------------- reading */

static void test_smv_counts_minus_adc(void **state)
{
    (void)state;
    size_t len;
    unsigned char *file = read_all(GOLDEN_NOISE, &len);
    assert_int_equal(len, 512 + 2 * 256 * 256);
    double *obs = NULL;
    db_error err;
    /* the flag does not matter: the content says SMV */
    for (int flag = 0; flag <= 1; flag++) {
        if (db_observed_read(GOLDEN_NOISE, 256, 256, 40.0, flag, &obs, &err))
            fail_msg("%s", err.message);
        int max_count = 0;
        for (long i = 0; i < 256 * 256; i++) {
            int count = file[512 + 2 * i] | file[512 + 2 * i + 1] << 8;
            if (count > max_count)
                max_count = count;
            if (obs[i] != (double)count - 40.0)
                fail_msg("pixel %ld: %.17g, expected %d - 40", i, obs[i], count);
        }
        assert_true(max_count > 100); /* the comparison above saw real spots */
        /* a few pixels by (fast, slow), through the header's decoder */
        db_smv_image img;
        assert_int_equal(db_smv_read(GOLDEN_NOISE, &img, &err), DB_OK);
        const int fs[][2] = {{0, 0}, {255, 0}, {0, 255}, {128, 128}, {17, 200}, {200, 17}};
        for (int k = 0; k < 6; k++) {
            long p = (long)fs[k][1] * 256 + fs[k][0];
            assert_bits_equal(obs[p], (double)img.data[p] - 40.0);
        }
        db_smv_image_free(&img);
        free(obs);
    }
    /* another adc moves every pixel */
    assert_int_equal(db_observed_read(GOLDEN_NOISE, 256, 256, 0.5, 0, &obs, &err), DB_OK);
    int count = file[512 + 2 * 300] | file[512 + 2 * 300 + 1] << 8;
    assert_bits_equal(obs[300], (double)count - 0.5);
    free(obs);
    free(file);
}

static void test_float32_golden(void **state)
{
    (void)state;
    size_t len;
    unsigned char *file = read_all(GOLDEN_FLOAT, &len);
    assert_int_equal(len, 4 * 256 * 256);
    double *obs = NULL;
    db_error err;
    if (db_observed_read(GOLDEN_FLOAT, 256, 256, 40.0, 0, &obs, &err))
        fail_msg("%s", err.message);
    double max = 0;
    for (long i = 0; i < 256 * 256; i++) {
        double want = (double)get_f32(file + 4 * i);
        if (want > max)
            max = want;
        if (memcmp(&obs[i], &want, sizeof want) != 0)
            fail_msg("pixel %ld: %.17g, expected %.17g", i, obs[i], want);
    }
    assert_true(max > 1.0); /* not an empty image (the adc must not apply to raw files) */
    free(obs);
    free(file);
}

/* Float64 by name and by flag; float32 data that happen to start with '{' stay raw; an SMV file of another
 * shape with the same pixel count is refused; one of the detector's shape is read in (fast, slow) order. */
static void test_float64_and_shapes(void **state)
{
    (void)state;
    char dir[4096], f64[4200], bin[4200], brace[4200], smv[4200];
    assert_int_equal(harness_mkdtemp(dir, sizeof dir), 0);
    snprintf(f64, sizeof f64, "%s/obs.f64", dir);
    snprintf(bin, sizeof bin, "%s/obs.bin", dir);
    snprintf(brace, sizeof brace, "%s/brace.img", dir);
    snprintf(smv, sizeof smv, "%s/small.img", dir);

    enum { F = 16, S = 8 };
    unsigned char bytes[8 * F * S];
    double want[F * S];
    for (int i = 0; i < F * S; i++) {
        want[i] = 0.1 + i * 1.000000001; /* not float32 values */
        put_f64(bytes + 8 * i, want[i]);
    }
    write_bytes(f64, bytes, sizeof bytes);
    write_bytes(bin, bytes, sizeof bytes);
    db_error err;
    double *obs = NULL;
    if (db_observed_read(f64, F, S, 40.0, 0, &obs, &err))
        fail_msg("%s", err.message);
    for (int i = 0; i < F * S; i++)
        assert_bits_equal(obs[i], want[i]);
    free(obs);
    if (db_observed_read(bin, F, S, 40.0, 1, &obs, &err))
        fail_msg("%s", err.message);
    for (int i = 0; i < F * S; i++)
        assert_bits_equal(obs[i], want[i]);
    free(obs);

    /* the same bytes as float32 under a plain name: twice the size of a 16 x 8 float32 image */
    const char *m = read_fails(bin, F, S, 0, DB_ERR_FORMAT, &err);
    assert_has(m, bin);
    assert_has(m, "is 1024 bytes; a 16 x 8 float32 image has 512 (it would fit float64: -obs_float64)");
    /* fitting neither */
    m = read_fails(bin, 10, 10, 0, DB_ERR_FORMAT, &err);
    assert_has(m, "is 1024 bytes; a 10 x 10 float32 image has 400");
    assert_lacks(m, "would fit");
    m = read_fails(bin, 10, 10, 1, DB_ERR_FORMAT, &err);
    assert_has(m, "is 1024 bytes; a 10 x 10 float64 image has 800");
    assert_lacks(m, "would fit");

    /* float32 data whose first byte is '{': raw, not SMV (no HEADER_BYTES=) */
    unsigned char b32[4 * F * S];
    for (int i = 0; i < F * S; i++) {
        float x = (float)(i + 0.25);
        uint32_t u;
        memcpy(&u, &x, sizeof u);
        if (i == 0)
            u = 0x3F80007Bu; /* bytes 7B 00 80 3F */
        for (int b = 0; b < 4; b++)
            b32[4 * i + b] = (unsigned char)(u >> (8 * b));
    }
    assert_int_equal(b32[0], '{');
    write_bytes(brace, b32, sizeof b32);
    if (db_observed_read(brace, F, S, 40.0, 0, &obs, &err))
        fail_msg("%s", err.message);
    for (int i = 0; i < F * S; i++)
        assert_bits_equal(obs[i], (double)get_f32(b32 + 4 * i));
    free(obs);
    /* ... and under a .f64 name it is half the size of a float64 image */
    char brace64[4300];
    snprintf(brace64, sizeof brace64, "%s/brace.f64", dir);
    write_bytes(brace64, b32, sizeof b32);
    m = read_fails(brace64, F, S, 0, DB_ERR_FORMAT, &err);
    assert_has(m, brace64);
    assert_has(m, "is 512 bytes; a 16 x 8 float64 image has 1024 (it would fit float32");
    assert_has(m, "name's .f64 ending"); /* the reason it was read as float64 */
    assert_lacks(m, "-obs_float64");
    m = read_fails(brace, F, S, 1, DB_ERR_FORMAT, &err);
    assert_has(m, "is 512 bytes; a 16 x 8 float64 image has 1024 (it would fit float32");
    assert_has(m, "-obs_float64");
    assert_lacks(m, "name's");

    /* an SMV file of 16 x 8: read as 16 x 8 in (fast, slow) order; refused as 8 x 16 */
    db_smv_header h;
    memset(&h, 0, sizeof h);
    h.fpixels = F;
    h.spixels = S;
    h.pixel_size = 0.1;
    h.distance = 100;
    h.wavelength = 1;
    uint16_t counts[F * S];
    for (int s = 0; s < S; s++)
        for (int f = 0; f < F; f++)
            counts[s * F + f] = (uint16_t)(1000 + 10 * s + f);
    assert_int_equal(db_smv_write(smv, &h, counts, &err), DB_OK);
    if (db_observed_read(smv, F, S, 40.0, 0, &obs, &err))
        fail_msg("%s", err.message);
    for (int s = 0; s < S; s++)
        for (int f = 0; f < F; f++)
            assert_bits_equal(obs[s * F + f], 1000 + 10 * s + f - 40.0);
    free(obs);
    m = read_fails(smv, S, F, 0, DB_ERR_FORMAT, &err);
    assert_has(m, smv);
    assert_has(m, "16 x 8 SMV image");
    assert_has(m, "detector has 8 x 16 pixels");

    harness_rmtree(dir);
}

static void test_read_errors(void **state)
{
    (void)state;
    db_error err;
    /* golden SMV, wrong detector */
    const char *m = read_fails(GOLDEN_NOISE, 128, 256, 0, DB_ERR_FORMAT, &err);
    assert_has(m, GOLDEN_NOISE);
    assert_has(m, "256 x 256");
    assert_has(m, "128 x 256");
    /* golden float32 read as float64 */
    m = read_fails(GOLDEN_FLOAT, 256, 256, 1, DB_ERR_FORMAT, &err);
    assert_has(m, GOLDEN_FLOAT);
    assert_has(m, "is 262144 bytes; a 256 x 256 float64 image has 524288 (it would fit float32");
    /* and with the wrong detector */
    m = read_fails(GOLDEN_FLOAT, 256, 512, 0, DB_ERR_FORMAT, &err);
    assert_has(m, "is 262144 bytes; a 256 x 512 float32 image has 524288");
    assert_lacks(m, "would fit"); /* 256 x 512 float64 would be 1048576 */
    m = read_fails(GOLDEN_FLOAT, 256, 128, 0, DB_ERR_FORMAT, &err);
    assert_has(m, "is 262144 bytes; a 256 x 128 float32 image has 131072 (it would fit float64: -obs_float64)");

    /* missing file, a folder */
    char missing[4200];
    snprintf(missing, sizeof missing, "%s/no-such-image.bin", DB_GOLDEN_DIR);
    m = read_fails(missing, 256, 256, 0, DB_ERR_IO, &err);
    assert_has(m, missing);
    assert_has(m, strerror(ENOENT));
    m = read_fails(DB_GOLDEN_DIR, 256, 256, 0, DB_ERR_IO, &err);
    assert_has(m, DB_GOLDEN_DIR);
    assert_has(m, strerror(EISDIR));

    /* an empty file */
    char dir[4096], empty[4200];
    assert_int_equal(harness_mkdtemp(dir, sizeof dir), 0);
    snprintf(empty, sizeof empty, "%s/empty.bin", dir);
    write_bytes(empty, "", 0);
    m = read_fails(empty, 4, 4, 0, DB_ERR_FORMAT, &err);
    assert_has(m, "is 0 bytes; a 4 x 4 float32 image has 64");
    harness_rmtree(dir);

    /* sizes: none, negative, overflowing */
    read_fails(GOLDEN_FLOAT, 0, 256, 0, DB_ERR_ARGUMENT, &err);
    read_fails(GOLDEN_FLOAT, 256, -1, 0, DB_ERR_ARGUMENT, &err);
    read_fails(GOLDEN_FLOAT, 2147483647, 2147483647, 0, DB_ERR_ARGUMENT, &err);
}

/* ---------------------------------------------------------------- issue 18: sizes and streams */

/* An SMV -obs whose header matches the detector but not its data is refused (before, the extra bytes were
 * ignored or the data read from the wrong offset, and the garbage fitted with exit 3). */
static void test_obs_smv_sizes_must_match(void **state)
{
    (void)state;
    enum { F = 4, S = 3 };
    char dir[4096], path[4200];
    assert_int_equal(harness_mkdtemp(dir, sizeof dir), 0);
    snprintf(path, sizeof path, "%s/lie.img", dir);
    db_error err;
    const char *good = "{\nHEADER_BYTES=512;\nTYPE=unsigned_short;\nBYTE_ORDER=little_endian;\nSIZE1=4;\nSIZE2=3;\n}\f";
    const char *hb256 = "{\nHEADER_BYTES=256;\nTYPE=unsigned_short;\nBYTE_ORDER=little_endian;\nSIZE1=4;\nSIZE2=3;\n}\f";
    unsigned char file[512 + 2 * F * S + 2];
    memset(file, ' ', 512);
    memset(file + 512, 1, sizeof file - 512);
    memcpy(file, good, strlen(good));
    write_bytes(path, file, 512 + 2 * F * S); /* control */
    double *obs = NULL;
    if (db_observed_read(path, F, S, 0.0, 0, &obs, &err))
        fail_msg("%s", err.message);
    assert_true(obs[F * S - 1] == 257.0);
    free(obs);
    write_bytes(path, file, sizeof file); /* one pixel more than SIZE1 x SIZE2 */
    const char *m = read_fails(path, F, S, 0, DB_ERR_FORMAT, &err);
    assert_has(m, "-obs '");
    assert_has(m, "lie.img' has 538 bytes, 2 more than the 536 expected (HEADER_BYTES=512, then SIZE1 4 x SIZE2 3");
    memcpy(file, hb256, strlen(hb256)); /* the data are not at HEADER_BYTES */
    write_bytes(path, file, 512 + 2 * F * S);
    m = read_fails(path, F, S, 0, DB_ERR_FORMAT, &err);
    assert_has(m, "536 bytes, 256 more than the 280 expected (HEADER_BYTES=256");
    harness_rmtree(dir);
}

/* -obs may be a FIFO: it is opened once (an SMV file used to be opened twice, which blocks on a FIFO) and read
 * as far as needed; a raw stream longer than the largest image it could be is refused without reading on. */
static void test_obs_stream(void **state)
{
    (void)state;
    enum { F = 4, S = 3 };
    char dir[4096], path[4200];
    assert_int_equal(harness_mkdtemp(dir, sizeof dir), 0);
    alarm(60); /* a reader that blocks fails the test rather than hanging it */
    db_error err;
    double *obs = NULL;
    /* an SMV image */
    const char *good = "{\nHEADER_BYTES=512;\nTYPE=unsigned_short;\nBYTE_ORDER=little_endian;\nSIZE1=4;\nSIZE2=3;\n}\f";
    unsigned char smv[512 + 2 * F * S];
    memset(smv, ' ', 512);
    memcpy(smv, good, strlen(good));
    for (int i = 0; i < F * S; i++) {
        smv[512 + 2 * i] = (unsigned char)(100 + i);
        smv[512 + 2 * i + 1] = 0;
    }
    snprintf(path, sizeof path, "%s/smv.fifo", dir);
    pid_t w = fifo_writer(path, smv, sizeof smv, 0);
    int rc = db_observed_read(path, F, S, 40.0, 0, &obs, &err);
    fifo_reap(w);
    if (rc)
        fail_msg("%s", err.message);
    for (int i = 0; i < F * S; i++)
        assert_true(obs[i] == 100 + i - 40.0);
    free(obs);
    /* raw float32 of the right size */
    float raw[F * S];
    for (int i = 0; i < F * S; i++)
        raw[i] = 0.5f * (float)i; /* the test hosts are little-endian, as the format */
    snprintf(path, sizeof path, "%s/raw.fifo", dir);
    w = fifo_writer(path, raw, sizeof raw, 0);
    rc = db_observed_read(path, F, S, 40.0, 0, &obs, &err);
    fifo_reap(w);
    if (rc)
        fail_msg("%s", err.message);
    assert_true(obs[F * S - 1] == 0.5 * (F * S - 1));
    free(obs);
    /* a stream longer than a float64 image: refused after reading one byte past it */
    unsigned char more[8 * F * S + 100];
    memset(more, 0, sizeof more);
    snprintf(path, sizeof path, "%s/long.fifo", dir);
    w = fifo_writer(path, more, sizeof more, 0);
    const char *m = read_fails(path, F, S, 0, DB_ERR_FORMAT, &err);
    fifo_reap(w);
    assert_has(m, "-obs '");
    assert_has(m, "long.fifo' has more than 96 bytes; a 4 x 3 float32 image has 48");
    /* a short one: its length */
    snprintf(path, sizeof path, "%s/short.fifo", dir);
    w = fifo_writer(path, more, 47, 0);
    m = read_fails(path, F, S, 0, DB_ERR_FORMAT, &err);
    fifo_reap(w);
    assert_has(m, "short.fifo' is 47 bytes; a 4 x 3 float32 image has 48");
    alarm(0);
    harness_rmtree(dir);
}

/* ---------------------------------------------------------------- check */

static void test_check(void **state)
{
    (void)state;
    enum { F = 5, S = 4 };
    double obs[F * S];
    for (int i = 0; i < F * S; i++)
        obs[i] = 1.0 + i;
    obs[0] = 0.0;
    obs[1] = -0.0;
    obs[3 * F + 2] = NAN;      /* (2, 3) */
    obs[1 * F + 4] = INFINITY; /* (4, 1) */
    obs[2 * F + 0] = -0.5;     /* (0, 2) */
    obs[3 * F + 4] = -INFINITY;
    db_error err;
    const long good[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 11, 12, 18};
    assert_int_equal(db_observed_check("obs.img", obs, F, good, 12, &err), DB_OK);
    assert_int_equal(db_observed_check("obs.img", obs, F, NULL, 0, &err), DB_OK);

    struct {
        long list[3];
        int n;
        const char *pixel, *value;
    } cases[] = {
        {{0, 1, 17}, 3, "(fast 2, slow 3)", "nan"},
        {{9}, 1, "(fast 4, slow 1)", "inf"},
        {{5, 10}, 2, "(fast 0, slow 2)", "-0.5"},
        {{10, 9}, 2, "(fast 0, slow 2)", "-0.5"}, /* the first bad one in the list */
        {{19, 2}, 2, "(fast 4, slow 3)", "-inf"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        test_context("case %zu", k);
        memset(&err, 0, sizeof err);
        assert_int_equal(db_observed_check("obs.img", obs, F, cases[k].list, cases[k].n, &err), DB_ERR_FORMAT);
        assert_int_equal(err.code, DB_ERR_FORMAT);
        assert_has(err.message, "obs.img");
        assert_has(err.message, cases[k].pixel);
        assert_has(err.message, cases[k].value);
        assert_has(err.message, "finite and >= 0");
    }
    test_context(NULL);
}

/* ---------------------------------------------------------------- spots */

typedef struct {
    int f, s;
    double height;
} blob;

/* background + each blob as a Gaussian of sigma (within 6 pixels of its centre) */
static double *blob_image(int F, int S, double background, const blob *b, int nb, double sigma)
{
    double *img = malloc((size_t)F * S * sizeof *img);
    assert_non_null(img);
    for (long i = 0; i < (long)F * S; i++)
        img[i] = background;
    for (int k = 0; k < nb; k++)
        for (int ds = -6; ds <= 6; ds++)
            for (int df = -6; df <= 6; df++) {
                int f = b[k].f + df, s = b[k].s + ds;
                if (f < 0 || s < 0 || f >= F || s >= S)
                    continue;
                img[(long)s * F + f] += b[k].height * exp(-(df * df + ds * ds) / (2 * sigma * sigma));
            }
    return img;
}

static long *all_pixels(int F, int S)
{
    long *p = malloc((size_t)F * S * sizeof *p);
    assert_non_null(p);
    for (long i = 0; i < (long)F * S; i++)
        p[i] = i;
    return p;
}

static int run_spots(const double *obs, int F, int S, const long *pix, long count, int n, int size, int *boxes)
{
    db_error err;
    memset(&err, 0, sizeof err);
    int got = db_find_spots(obs, F, S, pix, count, n, size, boxes, &err);
    if (got < 0)
        fail_msg("db_find_spots: %s", err.message);
    return got;
}

/* The boxes are those of the expected centres, in order, with the clipping rule written out here. */
static void expect_centres(const int *boxes, int got, const int (*centres)[2], int want, int F, int S, int size)
{
    if (got != want) {
        for (int i = 0; i < got; i++)
            print_error("  box %d: %d..%d x %d..%d\n", i, boxes[4 * i], boxes[4 * i + 1], boxes[4 * i + 2],
                        boxes[4 * i + 3]);
        fail_msg("%d spots, expected %d", got, want);
    }
    for (int i = 0; i < want; i++) {
        int f = centres[i][0], s = centres[i][1];
        int x0 = f - size / 2, y0 = s - size / 2;
        int e[4] = {x0 < 0 ? 0 : x0, x0 + size - 1 > F - 1 ? F - 1 : x0 + size - 1, y0 < 0 ? 0 : y0,
                    y0 + size - 1 > S - 1 ? S - 1 : y0 + size - 1};
        for (int j = 0; j < 4; j++)
            if (boxes[4 * i + j] != e[j])
                fail_msg("box %d: %d..%d x %d..%d, expected %d..%d x %d..%d (centre %d, %d)", i, boxes[4 * i],
                         boxes[4 * i + 1], boxes[4 * i + 2], boxes[4 * i + 3], e[0], e[1], e[2], e[3], f, s);
    }
}

enum { BF = 128, BS = 96 };
/* A and C are 4 pixels apart (Chebyshev); D sits in a corner; G is below the threshold 10 + 5 sqrt(10). */
static const blob BLOBS[] = {
    {30, 20, 1000}, /* A */
    {80, 60, 800},  /* B */
    {1, 94, 600},   /* D */
    {34, 23, 500},  /* C */
    {100, 30, 300}, /* E */
    {60, 80, 200},  /* F */
    {110, 10, 12},  /* G: 22 < 25.8 */
};

static void test_spots_blobs(void **state)
{
    (void)state;
    double *img = blob_image(BF, BS, 10.0, BLOBS, 7, 1.0);
    long *pix = all_pixels(BF, BS);
    int boxes[4 * 20];

    /* size 7: C (4 from A) is dropped; n larger than the spots: 5 */
    static const int size7[][2] = {{30, 20}, {80, 60}, {1, 94}, {100, 30}, {60, 80}};
    int got = run_spots(img, BF, BS, pix, (long)BF * BS, 20, 7, boxes);
    expect_centres(boxes, got, size7, 5, BF, BS, 7);
    assert_int_equal(boxes[8], 0); /* D's box, clipped: 0..4 x 91..95 */
    assert_int_equal(boxes[9], 4);
    assert_int_equal(boxes[10], 91);
    assert_int_equal(boxes[11], 95);
    /* n = 3: the three brightest */
    got = run_spots(img, BF, BS, pix, (long)BF * BS, 3, 7, boxes);
    expect_centres(boxes, got, size7, 3, BF, BS, 7);
    /* size 5 still drops C; size 4 (distance == size) keeps it, in its place by height; even size boxes */
    got = run_spots(img, BF, BS, pix, (long)BF * BS, 20, 5, boxes);
    expect_centres(boxes, got, size7, 5, BF, BS, 5);
    static const int size4[][2] = {{30, 20}, {80, 60}, {1, 94}, {34, 23}, {100, 30}, {60, 80}};
    got = run_spots(img, BF, BS, pix, (long)BF * BS, 20, 4, boxes);
    expect_centres(boxes, got, size4, 6, BF, BS, 4);
    assert_int_equal(boxes[0], 28); /* A: 28..31 x 18..21 */
    assert_int_equal(boxes[1], 31);
    assert_int_equal(boxes[2], 18);
    assert_int_equal(boxes[3], 21);
    /* size 1: every local maximum above the threshold (G is not) */
    got = run_spots(img, BF, BS, pix, (long)BF * BS, 20, 1, boxes);
    expect_centres(boxes, got, size4, 6, BF, BS, 1);

    /* only the left half (f < 64) listed: B and E are outside; F (f = 60) stays */
    long *left = malloc((size_t)BF * BS * sizeof *left);
    long nl = 0;
    for (long i = 0; i < (long)BF * BS; i++)
        if (i % BF < 64)
            left[nl++] = i;
    static const int leftc[][2] = {{30, 20}, {1, 94}, {60, 80}};
    got = run_spots(img, BF, BS, left, nl, 20, 7, boxes);
    expect_centres(boxes, got, leftc, 3, BF, BS, 7);
    /* the same list backwards, with repeats: the same result */
    long *back = malloc((size_t)(2 * nl) * sizeof *back);
    for (long i = 0; i < nl; i++) {
        back[2 * i] = left[nl - 1 - i];
        back[2 * i + 1] = left[(nl - 1 - i) / 2 * 2];
    }
    got = run_spots(img, BF, BS, back, 2 * nl, 20, 7, boxes);
    expect_centres(boxes, got, leftc, 3, BF, BS, 7);
    free(back);
    free(left);
    free(pix);
    free(img);
}

static void test_spots_arguments(void **state)
{
    (void)state;
    double img[16] = {0};
    long pix[16];
    for (int i = 0; i < 16; i++)
        pix[i] = i;
    int boxes[4 * 4];
    db_error err;
    memset(&err, 0, sizeof err);
    assert_int_equal(db_find_spots(img, 4, 4, pix, 16, 0, 3, boxes, &err), -1);
    assert_int_equal(err.code, DB_ERR_ARGUMENT);
    assert_has(err.message, "-spots");
    memset(&err, 0, sizeof err);
    assert_int_equal(db_find_spots(img, 4, 4, pix, 16, 2, 0, boxes, &err), -1);
    assert_int_equal(err.code, DB_ERR_ARGUMENT);
    assert_has(err.message, "-spot_size");
    assert_int_equal(db_find_spots(img, 4, 4, pix, 0, 2, 3, boxes, &err), 0);
    pix[3] = 16; /* outside the 4 x 4 detector */
    memset(&err, 0, sizeof err);
    assert_int_equal(db_find_spots(img, 4, 4, pix, 16, 2, 3, boxes, &err), -1);
    assert_int_equal(err.code, DB_ERR_ARGUMENT);
    /* a flat image has no spots */
    pix[3] = 3;
    assert_int_equal(run_spots(img, 4, 4, pix, 16, 2, 1, boxes), 0);
}

/* Threshold = background + 5 * noise, strictly above, in both branches of the noise and with an even-count
 * median (the mean of the middle two). */
static void test_spots_threshold(void **state)
{
    (void)state;
    int boxes[4 * 8];
    enum { F = 60, S = 60 };
    double *img = malloc(F * S * sizeof *img);
    long *pix = all_pixels(F, S);

    /* Poisson branch: constant 100, noise sqrt(100) = 10, threshold 150 */
    for (int i = 0; i < F * S; i++)
        img[i] = 100.0;
    img[10 * F + 10] = 150.0;
    img[30 * F + 30] = 150.5;
    static const int poisson[][2] = {{30, 30}};
    int got = run_spots(img, F, S, pix, F * S, 8, 1, boxes);
    expect_centres(boxes, got, poisson, 1, F, S, 1);

    /* background 0: noise sqrt(max(0, 1)) = 1, threshold 5 */
    for (int i = 0; i < F * S; i++)
        img[i] = 0.0;
    img[10 * F + 10] = 5.0;
    img[30 * F + 30] = 5.25;
    got = run_spots(img, F, S, pix, F * S, 8, 1, boxes);
    expect_centres(boxes, got, poisson, 1, F, S, 1);

    /* robust branch: 80, 100, 120 by (f + s) % 3, 1200 each: median 100, MAD 20, noise 29.652, threshold
     * 248.26; the peaks replace 120s */
    for (int s = 0; s < S; s++)
        for (int f = 0; f < F; f++)
            img[s * F + f] = 80.0 + 20.0 * ((f + s) % 3);
    assert_close(img[11 * F + 12], 120.0, 0, 0);
    assert_close(img[30 * F + 32], 120.0, 0, 0);
    img[11 * F + 12] = 248.2;
    img[30 * F + 32] = 248.3;
    static const int robust[][2] = {{32, 30}};
    got = run_spots(img, F, S, pix, F * S, 8, 1, boxes);
    expect_centres(boxes, got, robust, 1, F, S, 1);

    /* even count, median between the middle two: rows s < 30 are 0, the rest 20 -> median 10, MAD 10, noise
     * 14.826, threshold 84.13 (a lower median 0 would give 74.13, an upper one 20 + 74.13) */
    for (int s = 0; s < S; s++)
        for (int f = 0; f < F; f++)
            img[s * F + f] = s < 30 ? 0.0 : 20.0;
    img[40 * F + 10] = 84.1;
    img[50 * F + 40] = 84.2;
    static const int even[][2] = {{40, 50}};
    got = run_spots(img, F, S, pix, F * S, 8, 1, boxes);
    expect_centres(boxes, got, even, 1, F, S, 1);
    free(pix);
    free(img);
}

/* A flat plateau gives one maximum, its first pixel in row-major order; unlisted and non-finite neighbours
 * are not neighbours. */
static void test_spots_plateau_and_neighbours(void **state)
{
    (void)state;
    enum { F = 30, S = 30 };
    double img[F * S];
    long pix[F * S];
    int boxes[4 * 8];
    for (int i = 0; i < F * S; i++) {
        img[i] = 10.0;
        pix[i] = i;
    }
    for (int s = 5; s <= 8; s++)
        for (int f = 10; f <= 12; f++)
            img[s * F + f] = 100.0;
    static const int plateau[][2] = {{10, 5}};
    int got = run_spots(img, F, S, pix, F * S, 8, 1, boxes);
    expect_centres(boxes, got, plateau, 1, F, S, 1);

    /* three pixels of 50, each beside a brighter unlisted or NaN pixel (right, below, diagonal) */
    for (int i = 0; i < F * S; i++)
        img[i] = 10.0;
    img[5 * F + 9] = 50.0;
    img[5 * F + 10] = 1000.0; /* unlisted */
    img[12 * F + 5] = 50.0;
    img[13 * F + 5] = 1000.0; /* unlisted */
    img[15 * F + 15] = 50.0;
    img[16 * F + 16] = 1000.0; /* unlisted */
    img[14 * F + 14] = NAN;    /* listed, not finite: absent */
    img[20 * F + 3] = INFINITY; /* listed, not finite: not a spot */
    long listed[F * S];
    long n = 0;
    for (long i = F * S - 1; i >= 0; i--) /* backwards */
        if (i != 5 * F + 10 && i != 13 * F + 5 && i != 16 * F + 16)
            listed[n++] = i;
    static const int beside[][2] = {{9, 5}, {5, 12}, {15, 15}}; /* equal values: by pixel index */
    got = run_spots(img, F, S, listed, n, 8, 1, boxes);
    expect_centres(boxes, got, beside, 3, F, S, 1);
    /* with everything listed (the NaN and inf still absent) the 1000s are the spots */
    static const int bright[][2] = {{10, 5}, {5, 13}, {16, 16}};
    got = run_spots(img, F, S, pix, F * S, 8, 1, boxes);
    expect_centres(boxes, got, bright, 3, F, S, 1);
}

/* Row ends are not neighbours of the next row's start: index p - 1 of a row's first pixel is the end of the row
 * above, p + 1 of a row's last pixel the start of the row below. */
static void test_spots_row_ends(void **state)
{
    (void)state;
    enum { F = 10, S = 10 };
    double img[F * S];
    long pix[F * S];
    int boxes[4 * 8];
    for (int i = 0; i < F * S; i++) {
        img[i] = 10.0;
        pix[i] = i;
    }
    img[2 * F + 0] = 50.0;  /* (0, 2), just after (9, 1) */
    img[1 * F + 9] = 100.0; /* (9, 1) */
    img[6 * F + 9] = 50.0;  /* (9, 6), just before (0, 7) */
    img[7 * F + 0] = 100.0; /* (0, 7) */
    static const int want[][2] = {{9, 1}, {0, 7}, {0, 2}, {9, 6}};
    int got = run_spots(img, F, S, pix, F * S, 8, 1, boxes);
    expect_centres(boxes, got, want, 4, F, S, 1);
}

/* ---------------------------------------------------------------- brute-force oracle */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct {
    double v;
    long p;
} oracle_cand;

static int cmp_oracle(const void *a, const void *b)
{
    const oracle_cand *x = a, *y = b;
    if (x->v != y->v)
        return x->v < y->v ? 1 : -1;
    return (x->p > y->p) - (x->p < y->p);
}

static double sorted_median(double *a, long n)
{
    qsort(a, (size_t)n, sizeof *a, cmp_double);
    return n % 2 ? a[n / 2] : a[n / 2 - 1] + 0.5 * (a[n / 2] - a[n / 2 - 1]);
}

/* The rule of observed.h written plainly: a mask of listed pixels, full sorts, all-pairs spacing.
 * Writes centres (f, s) and returns their count. */
static int oracle_spots(const double *obs, int F, int S, const char *listed, int n, int size, int (*centres)[2])
{
    long npix = (long)F * S, m = 0;
    double *v = malloc((size_t)npix * sizeof *v);
    oracle_cand *c = malloc((size_t)npix * sizeof *c);
    for (long p = 0; p < npix; p++)
        if (listed[p] && isfinite(obs[p]))
            v[m++] = obs[p];
    int found = 0;
    if (m > 0) {
        double bg = sorted_median(v, m);
        m = 0;
        for (long p = 0; p < npix; p++)
            if (listed[p] && isfinite(obs[p]))
                v[m++] = fabs(obs[p] - bg);
        double mad = sorted_median(v, m);
        double noise = 1.4826 * mad;
        if (noise < sqrt(bg > 1 ? bg : 1))
            noise = sqrt(bg > 1 ? bg : 1);
        double thr = bg + 5 * noise;
        long nc = 0;
        for (int s = 0; s < S; s++)
            for (int f = 0; f < F; f++) {
                long p = (long)s * F + f;
                double x = obs[p];
                if (!listed[p] || !isfinite(x) || !(x > thr))
                    continue;
                int max = 1;
                for (int ds = -1; ds <= 1; ds++)
                    for (int df = -1; df <= 1; df++) {
                        int g = f + df, t = s + ds;
                        if ((!df && !ds) || g < 0 || t < 0 || g >= F || t >= S)
                            continue;
                        long q = (long)t * F + g;
                        if (!listed[q] || !isfinite(obs[q]))
                            continue;
                        if (obs[q] > x || (obs[q] == x && q < p))
                            max = 0;
                    }
                if (max) {
                    c[nc].v = x;
                    c[nc].p = p;
                    nc++;
                }
            }
        qsort(c, (size_t)nc, sizeof *c, cmp_oracle);
        for (long i = 0; i < nc && found < n; i++) {
            int f = (int)(c[i].p % F), s = (int)(c[i].p / F), ok = 1;
            for (int j = 0; j < found; j++)
                if (abs(centres[j][0] - f) < size && abs(centres[j][1] - s) < size)
                    ok = 0;
            if (ok) {
                centres[found][0] = f;
                centres[found][1] = s;
                found++;
            }
        }
    }
    free(v);
    free(c);
    return found;
}

static uint64_t rng_state = 88172645463325252ull;
static uint64_t next_rand(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* Random images with many ties (integer values, spikes in steps of 10), random listed subsets given in
 * shuffled order, and several n and sizes: the same centres as the oracle. */
static void test_spots_random_oracle(void **state)
{
    (void)state;
    enum { F = 97, S = 61 };
    double img[F * S];
    char listed[F * S];
    long list[2 * F * S];
    int boxes[4 * 400], centres[400][2];
    int total = 0;
    for (int trial = 0; trial < 40; trial++) {
        for (int i = 0; i < F * S; i++) {
            img[i] = (double)(next_rand() % 21);
            if (next_rand() % 100 < 6)
                img[i] = 10.0 * (3 + next_rand() % 15);
            listed[i] = trial % 4 == 0 || next_rand() % 10 < 7;
        }
        if (trial % 5 == 1)
            img[next_rand() % (F * S)] = NAN;
        long n = 0;
        for (int i = 0; i < F * S; i++)
            if (listed[i]) {
                list[n++] = i;
                if (trial % 3 == 2 && next_rand() % 10 == 0)
                    list[n++] = i; /* a repeat */
            }
        if (trial % 2) /* shuffle */
            for (long i = n - 1; i > 0; i--) {
                long j = (long)(next_rand() % (uint64_t)(i + 1)), t = list[i];
                list[i] = list[j];
                list[j] = t;
            }
        static const int sizes[] = {1, 2, 3, 5, 8};
        int size = sizes[trial % 5], want_n = trial % 7 == 0 ? 3 : 400;
        test_context("trial %d size %d n %d", trial, size, want_n);
        int want = oracle_spots(img, F, S, listed, want_n, size, centres);
        int got = run_spots(img, F, S, list, n, want_n, size, boxes);
        expect_centres(boxes, got, (const int(*)[2])centres, want, F, S, size);
        total += got;
    }
    test_context(NULL);
    assert_true(total > 200); /* the trials found spots */

    /* narrow detectors (1, 2, 3 pixels wide or tall), where index arithmetic wraps between rows */
    static const int shapes[][2] = {{1, 300}, {2, 200}, {3, 150}, {300, 1}, {200, 2}};
    total = 0;
    for (int k = 0; k < 5; k++) {
        int w = shapes[k][0], h = shapes[k][1];
        for (int trial = 0; trial < 10; trial++) {
            for (int i = 0; i < w * h; i++) {
                img[i] = (double)(next_rand() % 21);
                if (next_rand() % 100 < 15)
                    img[i] = 10.0 * (3 + next_rand() % 15);
                listed[i] = trial % 2 == 0 || next_rand() % 10 < 8;
            }
            long n = 0;
            for (int i = 0; i < w * h; i++)
                if (listed[i])
                    list[n++] = i;
            int size = 1 + trial % 3;
            test_context("%d x %d trial %d size %d", w, h, trial, size);
            int want = oracle_spots(img, w, h, listed, 400, size, centres);
            int got = run_spots(img, w, h, list, n, 400, size, boxes);
            expect_centres(boxes, got, (const int(*)[2])centres, want, w, h, size);
            total += got;
        }
    }
    test_context(NULL);
    assert_true(total > 100);
}

/* Golden b_triclinic: the found boxes are the oracle's, the first holds the global maximum, each centre is a
 * local maximum, and the centres' values descend. */
static void test_spots_golden_triclinic(void **state)
{
    (void)state;
    enum { F = 256, S = 256 };
    double *obs = NULL;
    db_error err;
    if (db_observed_read(TRICLINIC_FLOAT, F, S, 0.0, 0, &obs, &err))
        fail_msg("%s", err.message);
    long *pix = all_pixels(F, S);
    char *listed = malloc(F * S);
    memset(listed, 1, F * S);
    long argmax = 0;
    for (long i = 0; i < F * S; i++)
        if (obs[i] > obs[argmax])
            argmax = i;
    static const int sizes[] = {7, 15};
    for (int k = 0; k < 2; k++) {
        int size = sizes[k], boxes[4 * 30], centres[30][2];
        test_context("size %d", size);
        int got = run_spots(obs, F, S, pix, F * S, 30, size, boxes);
        int want = oracle_spots(obs, F, S, listed, 30, size, centres);
        assert_true(got >= 10);
        expect_centres(boxes, got, (const int(*)[2])centres, want, F, S, size);
        int af = (int)(argmax % F), as = (int)(argmax / F);
        assert_int_equal(centres[0][0], af);
        assert_int_equal(centres[0][1], as);
        assert_true(boxes[0] <= af && af <= boxes[1] && boxes[2] <= as && as <= boxes[3]);
        for (int i = 0; i < got; i++) {
            int f = centres[i][0], s = centres[i][1];
            double v = obs[(long)s * F + f];
            for (int ds = -1; ds <= 1; ds++)
                for (int df = -1; df <= 1; df++)
                    if (f + df >= 0 && f + df < F && s + ds >= 0 && s + ds < S)
                        assert_true(obs[(long)(s + ds) * F + f + df] <= v);
            if (i > 0)
                assert_true(v <= obs[(long)centres[i - 1][1] * F + centres[i - 1][0]]);
        }
    }
    test_context(NULL);
    free(listed);
    free(pix);
    free(obs);
}

/* 2048 x 2048, all listed: a grid of blobs found in height order, in bounded time (a quadratic step would take
 * minutes; the bound is loose for sanitizer builds). */
static void test_spots_large(void **state)
{
    (void)state;
    enum { F = 2048, S = 2048, NB = 100 };
    blob b[NB];
    for (int k = 0; k < NB; k++) {
        b[k].f = 60 + (k % 10) * 200;
        b[k].s = 60 + (k / 10) * 200;
        b[k].height = 1000.0 + 100.0 * ((k * 53) % NB); /* all different, by more than the background */
    }
    double *img = blob_image(F, S, 0.0, b, NB, 1.5);
    for (long i = 0; i < (long)F * S; i++)
        img[i] += (double)(next_rand() % 50); /* background 0..49 */
    long *pix = all_pixels(F, S);
    int boxes[4 * NB], order[NB][2];
    /* expected: the blobs by descending height */
    for (int r = 0; r < NB; r++) {
        int best = -1;
        for (int k = 0; k < NB; k++) {
            int taken = 0;
            for (int j = 0; j < r; j++)
                taken |= order[j][0] == b[k].f && order[j][1] == b[k].s;
            if (!taken && (best < 0 || b[k].height > b[best].height))
                best = k;
        }
        order[r][0] = b[best].f;
        order[r][1] = b[best].s;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int got = run_spots(img, F, S, pix, (long)F * S, NB, 9, boxes);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double seconds = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    print_message("    2048 x 2048, all listed: %.3f s\n", seconds);
    expect_centres(boxes, got, (const int(*)[2])order, NB, F, S, 9);
    assert_true(seconds < 10.0);
    free(pix);
    free(img);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_smv_counts_minus_adc),
        cmocka_unit_test(test_float32_golden),
        cmocka_unit_test(test_float64_and_shapes),
        cmocka_unit_test(test_read_errors),
        cmocka_unit_test(test_obs_smv_sizes_must_match),
        cmocka_unit_test(test_obs_stream),
        cmocka_unit_test(test_check),
        cmocka_unit_test(test_spots_blobs),
        cmocka_unit_test(test_spots_arguments),
        cmocka_unit_test(test_spots_threshold),
        cmocka_unit_test(test_spots_plateau_and_neighbours),
        cmocka_unit_test(test_spots_row_ends),
        cmocka_unit_test(test_spots_random_oracle),
        cmocka_unit_test(test_spots_golden_triclinic),
        cmocka_unit_test(test_spots_large),
    };
    return cmocka_run_group_tests_name("observed", tests, NULL, NULL);
}
