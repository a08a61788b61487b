/* Tests of SMV/PGM output and input and of atomic file writing (appendix A4): images rebuilt from golden
 * float images must be byte-identical to the reference's files. */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fifo_writer.h"

#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "error.h"
#include "fileio.h"
#include "smv.h"

#ifndef DB_GOLDEN_DIR
#error "compile with -DDB_GOLDEN_DIR=\"<path to tests/golden>\""
#endif

#define IMG_SIDE 256
#define IMG_PIXELS (IMG_SIDE * IMG_SIDE)
#define SMV_HEADER 512

static char *read_golden(const char *case_name, const char *file, size_t *len)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s/%s", DB_GOLDEN_DIR, case_name, file);
    char *data = NULL;
    db_error err;
    if (db_read_file(path, &data, len, &err) != DB_OK)
        fail_msg("%s", err.message);
    return data;
}

static float *read_golden_floats(const char *case_name)
{
    size_t len;
    char *raw = read_golden(case_name, "float.bin", &len);
    assert_int_equal(len, IMG_PIXELS * sizeof(float));
    float *img = malloc(len);
    assert_non_null(img);
    memcpy(img, raw, len);
    free(raw);
    return img;
}

/* A private folder per test, removed (with its files) afterwards. */
static int make_workdir(void **state)
{
    char *dir = malloc(64);
    if (!dir)
        return -1;
    strcpy(dir, "/tmp/dualbragg_test_smv.XXXXXX");
    if (!mkdtemp(dir)) {
        free(dir);
        return -1;
    }
    *state = dir;
    return 0;
}

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

static void remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    char path[1024];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
            chmod(path, 0755);
            remove_tree(path);
        } else {
            unlink(path);
        }
    }
    closedir(d);
    rmdir(dir);
}

static int remove_workdir(void **state)
{
    remove_tree(*state);
    free(*state);
    return 0;
}

/* A4.1's example values: a_cubic and every other MOSFLM-default 256x256 case. */
static db_smv_header a_cubic_header(void)
{
    db_smv_header h = {
        .fpixels = 256,          .spixels = 256,          .pixel_size = 0.1,     .distance = 100,
        .wavelength = 1,         .beam_center_x = 12.85,  .beam_center_y = 12.85, .adxv_center_x = 12.9,
        .adxv_center_y = 12.7,   .mosflm_center_x = 12.85, .mosflm_center_y = 12.85, .denzo_x_beam = 12.9,
        .denzo_y_beam = 12.9,    .dials_origin = {-12.9, 12.9, -100}, .xds_orgx = 129.5, .xds_orgy = 129.5,
        .close_distance = 100,   .phi = 0,                .osc_start = 0,        .osc_range = 0,
        .twotheta = 0,
    };
    return h;
}

/* Values printed at full %g width push the text past 512 bytes. */
static db_smv_header long_header(void)
{
    db_smv_header h = a_cubic_header();
    h.wavelength = 1.23456;
    h.beam_center_x = h.beam_center_y = -1.23456e-100;
    h.adxv_center_x = h.adxv_center_y = -1.23456e-100;
    h.dials_origin[0] = -1.23456e-100;
    h.xds_orgx = -1.23456e-10;
    h.phi = 12.3456;
    h.osc_range = 0.1234;
    h.twotheta = 5.4321;
    return h;
}

static void check_header_against(const char *case_name, const db_smv_header *h)
{
    char text[2048];
    size_t len = db_smv_header_text(h, text, sizeof text);
    assert_int_equal(len, SMV_HEADER);
    static const char *const files[] = {"int.img", "noise.img"};
    for (int i = 0; i < 2; i++) {
        size_t golden_len;
        char *golden = read_golden(case_name, files[i], &golden_len);
        assert_true(golden_len >= SMV_HEADER);
        assert_memory_equal(text, golden, SMV_HEADER);
        free(golden);
    }
}

static void test_header_text_matches_golden(void **state)
{
    (void)state;
    db_smv_header h = a_cubic_header();
    char text[2048];
    size_t len = db_smv_header_text(&h, text, sizeof text);
    assert_int_equal(len, SMV_HEADER);
    assert_true(text[464] == '}' && text[465] == '\f' && text[466] == ' '); /* 466 bytes of text, 46 spaces */

    check_header_against("a_cubic", &h);
    check_header_against("j_roi", &h);
    check_header_against("m2_pointpix_nopolar", &h);
    h.osc_range = 0.1;
    check_header_against("c_phi0_carryover", &h);

    assert_int_equal(db_smv_header_text(&h, text, 300), 0); /* too small a buffer is refused */
}

static void test_long_header_is_not_padded(void **state)
{
    (void)state;
    db_smv_header h = long_header();
    char text[2048];
    size_t len = db_smv_header_text(&h, text, sizeof text);
    assert_true(len > SMV_HEADER);
    assert_true(text[len - 2] == '}' && text[len - 1] == '\f');
}

static double max_value(const float *img)
{
    double max_I = 0.0;
    for (int i = 0; i < IMG_PIXELS; i++)
        if ((double)img[i] > max_I)
            max_I = img[i];
    return max_I;
}

static void check_int_case(const char *case_name, const db_roi *roi)
{
    float *img = read_golden_floats(case_name);
    size_t len;
    char *golden = read_golden(case_name, "int.img", &len);
    assert_int_equal(len, SMV_HEADER + IMG_PIXELS * 2);
    uint16_t *out = malloc(IMG_PIXELS * sizeof *out);
    assert_non_null(out);
    db_int_image(img, IMG_SIDE, IMG_SIDE, roi, 55000.0 / max_value(img), 40.0, out);

    const unsigned char *bytes = (const unsigned char *)golden + SMV_HEADER;
    int mismatches = 0, first = -1;
    for (int i = 0; i < IMG_PIXELS; i++) {
        uint16_t want = (uint16_t)(bytes[2 * i] | (bytes[2 * i + 1] << 8));
        if (out[i] != want && mismatches++ == 0)
            first = i;
    }
    if (mismatches)
        fail_msg("%s: %d int pixels differ, first at f=%d s=%d", case_name, mismatches, first % IMG_SIDE,
                 first / IMG_SIDE);
    free(out);
    free(golden);
    free(img);
}

static const db_roi full_roi = {0, IMG_SIDE, 0, IMG_SIDE};

static void test_int_images_match_golden(void **state)
{
    (void)state;
    check_int_case("a_cubic", &full_roi);
    check_int_case("c_phi0_carryover", &full_roi); /* holds a pixel where a double floor is off by one */
    check_int_case("m2_pointpix_nopolar", &full_roi);
    db_roi roi = {50, 150, 60, 200};
    check_int_case("j_roi", &roi);
    check_int_case("a_cubic", NULL); /* NULL ROI = whole image */
}

static void test_int_rounding_and_clipping(void **state)
{
    (void)state;
    const float img[6] = {0.0f, 0.0f, 1.0e9f, -1.0e9f, NAN, 2.0f};
    uint16_t out[6];
    /* v = 30000.4995: v + 0.5 rounds to the float 30001 before the floor (a double floor gives 30000) */
    db_int_image(img, 6, 1, NULL, 1.0, 30000.4995, out);
    assert_int_equal(out[0], 30001);
    assert_int_equal(out[2], 65535);
    assert_int_equal(out[3], 0);
    assert_int_equal(out[4], 0); /* NaN comes out as 0, as on x86-64 */
    assert_int_equal(out[5], 30003); /* 30002.9995 -> float 30003 */
    db_roi roi = {1, 2, 0, 0};
    db_int_image(img, 6, 1, &roi, 1.0, 40.0, out);
    assert_int_equal(out[0], 0);
    assert_int_equal(out[1], 40);
    assert_int_equal(out[5], 0);
}

static void test_noise_image_negative_adc_wraps(void **state)
{
    (void)state;
    const float img[3] = {0.0f, 0.0f, 0.0f};
    uint16_t out[3] = {7, 7, 7};
    db_rng r;
    db_rng_init(&r);
    long seed = -1;
    double photons;
    int overloads;
    db_roi roi = {1, 2, 0, 0};
    db_noise_image(&r, &seed, img, 3, 1, &roi, -100.0, out, &photons, &overloads);
    assert_int_equal(out[0], 0);
    assert_int_equal(out[1], 65436);
    assert_int_equal(out[2], 65436);
    assert_true(photons == 0.0);
    assert_int_equal(overloads, 0);
}

/* rmsd per A4.2 for an unmasked image: every ROI pixel is rendered. */
static double rmsd_over_roi(const float *img, const db_roi *roi)
{
    double sum = 0.0;
    int n = 0;
    for (int s = 0; s < IMG_SIDE; s++)
        for (int f = 0; f < IMG_SIDE; f++)
            if (!(f < roi->xmin || f > roi->xmax || s < roi->ymin || s > roi->ymax)) {
                sum += (double)img[s * IMG_SIDE + f];
                n++;
            }
    double avg = sum / (n > 0 ? n : 1);
    double sumsqr2 = 0.0;
    for (int s = 0; s < IMG_SIDE; s++)
        for (int f = 0; f < IMG_SIDE; f++)
            if (!(f < roi->xmin || f > roi->xmax || s < roi->ymin || s > roi->ymax)) {
                double d = (double)img[s * IMG_SIDE + f] - avg;
                sumsqr2 += d * d;
            }
    if (n <= 1)
        n = 2;
    return sqrt(sumsqr2 / (n - 1));
}

static void check_pgm_case(const char *dir, const char *case_name)
{
    float *img = read_golden_floats(case_name);
    double pgm_scale = 250.0 / (5.0 * rmsd_over_roi(img, &full_roi));
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.pgm", dir, case_name);
    db_error err;
    if (db_pgm_write(path, img, IMG_SIDE, IMG_SIDE, &full_roi, pgm_scale, &err) != DB_OK)
        fail_msg("%s", err.message);

    char *mine, *golden;
    size_t mine_len, golden_len;
    assert_int_equal(db_read_file(path, &mine, &mine_len, &err), DB_OK);
    golden = read_golden(case_name, "image.pgm", &golden_len);
    assert_int_equal(mine_len, golden_len);
    assert_memory_equal(mine, golden, golden_len);
    free(mine);
    free(golden);
    free(img);
}

static void test_pgm_matches_golden(void **state)
{
    check_pgm_case(*state, "a_cubic"); /* "# pixels scaled by 7.06484" */
    check_pgm_case(*state, "c_phi0_carryover");

    const float img[4] = {-1.0f, 1.0f, 1000.0f, 10.0f};
    uint8_t px[4];
    db_roi roi = {0, 2, 0, 0};
    db_pgm_pixels(img, 4, 1, &roi, 10.0, px);
    assert_int_equal(px[0], 246); /* -10 truncated: no lower clip, low byte as on x86-64 */
    assert_int_equal(px[1], 10);
    assert_int_equal(px[2], 255);
    assert_int_equal(px[3], 0); /* outside the ROI */
}

static void test_atomic_write_failures_leave_nothing(void **state)
{
    const char *dir = *state;
    char path[1024];
    const char *text = "content";
    const void *bufs[1] = {text};
    size_t lens[1] = {strlen(text)};
    db_error err;

    snprintf(path, sizeof path, "%s/no_such_folder/out.img", dir);
    assert_int_equal(db_write_file_atomic(path, bufs, lens, 1, &err), DB_ERR_IO);
    assert_non_null(strstr(err.message, path));
    assert_int_equal(access(path, F_OK), -1);

    /* a regular file used as a folder */
    snprintf(path, sizeof path, "%s/plain", dir);
    assert_int_equal(db_write_file_atomic(path, bufs, lens, 1, &err), DB_OK);
    snprintf(path, sizeof path, "%s/plain/out.img", dir);
    assert_int_equal(db_write_file_atomic(path, bufs, lens, 1, &err), DB_ERR_IO);

    /* the rename fails (the target is a folder): the temporary file must be gone */
    snprintf(path, sizeof path, "%s/sub", dir);
    assert_int_equal(mkdir(path, 0755), 0);
    assert_int_equal(db_write_file_atomic(path, bufs, lens, 1, &err), DB_ERR_IO);
    assert_non_null(strstr(err.message, path));
    assert_int_equal(count_entries(dir), 2); /* "plain" and "sub" only */

    /* an unwritable folder (root ignores permissions, so only checked for other users) */
    if (geteuid() != 0) {
        assert_int_equal(chmod(path, 0555), 0);
        char inside[1100];
        snprintf(inside, sizeof inside, "%s/out.img", path);
        assert_int_equal(db_write_file_atomic(inside, bufs, lens, 1, &err), DB_ERR_IO);
        assert_int_equal(count_entries(path), 0);
        chmod(path, 0755);
    }
}

static void test_atomic_write_replaces_whole_file(void **state)
{
    const char *dir = *state;
    char path[1024];
    snprintf(path, sizeof path, "%s/f.bin", dir);
    db_error err;
    const char *long_text = "a much longer old content";
    const void *bufs_old[1] = {long_text};
    size_t lens_old[1] = {strlen(long_text)};
    assert_int_equal(db_write_file_atomic(path, bufs_old, lens_old, 1, &err), DB_OK);

    const void *bufs[3] = {"ab", NULL, "cde"};
    size_t lens[3] = {2, 0, 3};
    assert_int_equal(db_write_file_atomic(path, bufs, lens, 3, &err), DB_OK);
    char *data;
    size_t len;
    assert_int_equal(db_read_file(path, &data, &len, &err), DB_OK);
    assert_int_equal(len, 5);
    assert_string_equal(data, "abcde"); /* the appended NUL terminates it */
    free(data);
    assert_int_equal(count_entries(dir), 1);

    /* a FIFO (like a device such as /dev/null) is written in place, never replaced by a regular file;
     * tested on a FIFO of our own so that a regression cannot replace a system file */
    snprintf(path, sizeof path, "%s/fifo", dir);
    assert_int_equal(mkfifo(path, 0600), 0);
    int reader = open(path, O_RDONLY | O_NONBLOCK);
    assert_true(reader >= 0);
    assert_int_equal(db_write_file_atomic(path, bufs, lens, 3, &err), DB_OK);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISFIFO(st.st_mode));
    char piped[8] = {0};
    assert_int_equal(read(reader, piped, sizeof piped), 5);
    assert_memory_equal(piped, "abcde", 5);
    close(reader);

    snprintf(path, sizeof path, "%s/missing", dir);
    assert_int_equal(db_read_file(path, &data, &len, &err), DB_ERR_IO);
    assert_null(data);
    assert_non_null(strstr(err.message, path));
}

static void write_bytes(const char *path, const void *data, size_t len)
{
    const void *bufs[1] = {data};
    size_t lens[1] = {len};
    db_error err;
    assert_int_equal(db_write_file_atomic(path, bufs, lens, 1, &err), DB_OK);
}

static void test_smv_round_trip(void **state)
{
    const char *dir = *state;
    char path[1024];
    snprintf(path, sizeof path, "%s/small.img", dir);
    db_smv_header h = a_cubic_header();
    h.fpixels = 7;
    h.spixels = 5;
    h.distance = 123.5;
    uint16_t data[35];
    for (int i = 0; i < 35; i++)
        data[i] = (uint16_t)(i * 1871u);
    data[34] = 65535;
    db_error err;
    assert_int_equal(db_smv_write(path, &h, data, &err), DB_OK);

    char *file;
    size_t len;
    assert_int_equal(db_read_file(path, &file, &len, &err), DB_OK);
    assert_int_equal(len, SMV_HEADER + 35 * 2);
    assert_int_equal((unsigned char)file[SMV_HEADER + 2 * 34], 0xff); /* little-endian on every host */
    assert_int_equal((unsigned char)file[SMV_HEADER + 2], 1871 & 0xff);
    assert_int_equal((unsigned char)file[SMV_HEADER + 3], 1871 >> 8);
    free(file);

    db_smv_image img;
    assert_int_equal(db_smv_read(path, &img, &err), DB_OK);
    assert_int_equal(img.fpixels, 7);
    assert_int_equal(img.spixels, 5);
    assert_int_equal(img.header_bytes, SMV_HEADER);
    assert_memory_equal(img.data, data, sizeof data);
    double v;
    assert_true(db_smv_header_double(&img, "DISTANCE", &v) && v == 123.5);
    assert_true(db_smv_header_double(&img, "XDS_ORGX", &v) && v == 129.5); /* after the ';'-less line */
    assert_true(db_smv_header_double(&img, "BEAM_CENTER_Y", &v) && v == 12.85);
    assert_false(db_smv_header_double(&img, "DIALS_ORIGIN", &v)); /* a list, not a number */
    assert_false(db_smv_header_double(&img, "BEAMLINE", &v));
    assert_false(db_smv_header_double(&img, "NO_SUCH_KEY", &v));
    assert_false(db_smv_header_double(&img, "DISTANC", &v));
    db_smv_image_free(&img);
    assert_null(img.data);

    /* a header past 512 bytes: the data follow the text (the reference's quirk) and still read back */
    db_smv_header long_h = long_header();
    long_h.fpixels = h.fpixels;
    long_h.spixels = h.spixels;
    h = long_h;
    char text[2048];
    size_t text_len = db_smv_header_text(&h, text, sizeof text);
    assert_true(text_len > SMV_HEADER);
    assert_int_equal(db_smv_write(path, &h, data, &err), DB_OK);
    assert_int_equal(db_smv_read(path, &img, &err), DB_OK);
    assert_int_equal(img.header_bytes, text_len);
    assert_memory_equal(img.data, data, sizeof data);
    db_smv_image_free(&img);
}

static void test_smv_read_golden_and_big_endian(void **state)
{
    const char *dir = *state;
    char path[1024];
    snprintf(path, sizeof path, "%s/a_cubic/int.img", DB_GOLDEN_DIR);
    db_smv_image img;
    db_error err;
    assert_int_equal(db_smv_read(path, &img, &err), DB_OK);
    assert_int_equal(img.fpixels, 256);
    size_t len;
    char *golden = read_golden("a_cubic", "int.img", &len);
    const unsigned char *bytes = (const unsigned char *)golden + SMV_HEADER;
    for (int i = 0; i < IMG_PIXELS; i += 97)
        assert_int_equal(img.data[i], bytes[2 * i] | (bytes[2 * i + 1] << 8));
    free(golden);
    db_smv_image_free(&img);

    static const char be[] = "{\nHEADER_BYTES=128;\nDIM=2;\nBYTE_ORDER=big_endian;\nTYPE=unsigned_short;\n"
                             "SIZE1=2;\nSIZE2=1;\n}";
    char file[128 + 4];
    memset(file, ' ', 128);
    memcpy(file, be, sizeof be - 1);
    file[128] = 0x12;
    file[129] = 0x34;
    file[130] = 0x00;
    file[131] = 0x01;
    snprintf(path, sizeof path, "%s/be.img", dir);
    write_bytes(path, file, sizeof file);
    assert_int_equal(db_smv_read(path, &img, &err), DB_OK);
    assert_int_equal(img.data[0], 0x1234);
    assert_int_equal(img.data[1], 0x0001);
    db_smv_image_free(&img);
}

static void test_smv_read_rejects_malformed(void **state)
{
    const char *dir = *state;
    char path[1024];
    snprintf(path, sizeof path, "%s/bad.img", dir);
    db_smv_header h = a_cubic_header();
    h.fpixels = 4;
    h.spixels = 3;
    uint16_t data[12] = {0};
    db_error err;
    assert_int_equal(db_smv_write(path, &h, data, &err), DB_OK);
    char *whole;
    size_t whole_len;
    assert_int_equal(db_read_file(path, &whole, &whole_len, &err), DB_OK);

    /* every truncation, from empty to one byte short */
    for (size_t cut = 0; cut < whole_len; cut++) {
        write_bytes(path, whole, cut);
        db_smv_image img;
        int rc = db_smv_read(path, &img, &err);
        if (rc != DB_ERR_FORMAT)
            fail_msg("truncated at %zu bytes: status %d", cut, rc);
        assert_non_null(strstr(err.message, path));
        assert_null(img.data);
        assert_null(img.header);
    }
    free(whole);

    static const char *const bad_headers[] = {
        "garbage, not an image",
        "{\nHEADER_BYTES=512;\nTYPE=unsigned_short;\nBYTE_ORDER=little_endian;\nSIZE1=4;\n}",  /* no SIZE2 */
        "{\nHEADER_BYTES=512;\nTYPE=float;\nBYTE_ORDER=little_endian;\nSIZE1=4;\nSIZE2=3;\n}",
        "{\nHEADER_BYTES=512;\nTYPE=unsigned_short;\nSIZE1=4;\nSIZE2=3;\n}",                     /* no order */
        "{\nHEADER_BYTES=512;\nTYPE=unsigned_short;\nBYTE_ORDER=little_endian;\nSIZE1=-4;\nSIZE2=3;\n}",
        "{\nHEADER_BYTES=512;\nTYPE=unsigned_short;\nBYTE_ORDER=little_endian;\nSIZE1=4.5;\nSIZE2=3;\n}",
        "{\nHEADER_BYTES=abc;\nTYPE=unsigned_short;\nBYTE_ORDER=little_endian;\nSIZE1=4;\nSIZE2=3;\n}",
        "{\nHEADER_BYTES=512;\nTYPE=unsigned_short;\nBYTE_ORDER=little_endian;\nSIZE1=99999;\nSIZE2=99999;\n}",
    };
    for (size_t i = 0; i < sizeof bad_headers / sizeof bad_headers[0]; i++) {
        char file[512 + 24];
        memset(file, ' ', sizeof file);
        memcpy(file, bad_headers[i], strlen(bad_headers[i]));
        write_bytes(path, file, sizeof file);
        db_smv_image img;
        int rc = db_smv_read(path, &img, &err);
        if (rc != DB_ERR_FORMAT)
            fail_msg("bad header %zu accepted (status %d)", i, rc);
    }
    db_smv_image img;
    snprintf(path, sizeof path, "%s/missing.img", dir);
    assert_int_equal(db_smv_read(path, &img, &err), DB_ERR_IO);
}

/* ---- issue 18: the file must be exactly what its header says ---- */

/* A 4 x 3 little-endian SMV file with header text hdr padded to header_len, then data_len bytes of pixels. */
static void write_smv_bytes(const char *path, const char *hdr, size_t header_len, size_t data_len)
{
    size_t len = header_len + data_len;
    char *file = malloc(len);
    assert_non_null(file);
    memset(file, ' ', header_len);
    memcpy(file, hdr, strlen(hdr));
    for (size_t i = header_len; i < len; i++)
        file[i] = (char)(i * 7);
    write_bytes(path, file, len);
    free(file);
}

static void expect_lie(const char *path, const char *why, const char *const *parts)
{
    db_smv_image img;
    db_error err;
    int rc = db_smv_read_flag("-mask", path, &img, &err);
    if (rc != DB_ERR_FORMAT)
        fail_msg("%s: status %d, expected DB_ERR_FORMAT (%s)", why, rc, err.message);
    assert_null(img.data);
    for (; *parts; parts++)
        if (!strstr(err.message, *parts))
            fail_msg("%s: the message lacks \"%s\":\n    %s", why, *parts, err.message);
}

/* Every SMV whose header sizes (SIZE1, SIZE2, HEADER_BYTES) do not describe its data exactly is refused, naming
 * the flag, the file, the fields and the byte counts; before, a file with more data than its header says was
 * read (the extra bytes ignored), so a wrong SIZE1 gave a garbage image. */
static void test_smv_read_sizes_must_match(void **state)
{
    const char *dir = *state;
    char path[1024];
    snprintf(path, sizeof path, "%s/lie.img", dir);
    const char *good = "{\nHEADER_BYTES=512;\nTYPE=unsigned_short;\nBYTE_ORDER=little_endian;\nSIZE1=4;\nSIZE2=3;\n}\f";
    /* control: the exact size is read */
    write_smv_bytes(path, good, 512, 24);
    db_smv_image img;
    db_error err;
    assert_int_equal(db_smv_read_flag("-mask", path, &img, &err), DB_OK);
    assert_int_equal(img.fpixels * img.spixels, 12);
    db_smv_image_free(&img);

    /* one byte more, or two (a whole extra pixel) */
    write_smv_bytes(path, good, 512, 25);
    expect_lie(path, "one byte more", (const char *const[]){"-mask '", "lie.img'", "537 bytes", "1 more than the 536",
                                                            "HEADER_BYTES=512", "SIZE1 4 x SIZE2 3", NULL});
    write_smv_bytes(path, good, 512, 26);
    expect_lie(path, "one pixel more", (const char *const[]){"538 bytes", "2 more than the 536", NULL});
    /* SIZE1 smaller than the data (the old reader took the first 2 x 3 pixels) */
    const char *small = "{\nHEADER_BYTES=512;\nTYPE=unsigned_short;\nBYTE_ORDER=little_endian;\nSIZE1=2;\nSIZE2=3;\n}\f";
    write_smv_bytes(path, small, 512, 24);
    expect_lie(path, "SIZE1 too small", (const char *const[]){"536 bytes", "12 more than the 524", "SIZE1 2 x SIZE2 3", NULL});
    /* SIZE2 larger than the data: truncated */
    const char *large = "{\nHEADER_BYTES=512;\nTYPE=unsigned_short;\nBYTE_ORDER=little_endian;\nSIZE1=4;\nSIZE2=4;\n}\f";
    write_smv_bytes(path, large, 512, 24);
    expect_lie(path, "SIZE2 too large", (const char *const[]){"truncated", "536 bytes, expected 544", "SIZE1 4 x SIZE2 4", NULL});
    /* HEADER_BYTES smaller than where the data start (but past the header text), and larger */
    const char *hb256 = "{\nHEADER_BYTES=256;\nTYPE=unsigned_short;\nBYTE_ORDER=little_endian;\nSIZE1=4;\nSIZE2=3;\n}\f";
    write_smv_bytes(path, hb256, 512, 24);
    expect_lie(path, "HEADER_BYTES too small", (const char *const[]){"256 more than the 280", "HEADER_BYTES=256", NULL});
    const char *hb600 = "{\nHEADER_BYTES=600;\nTYPE=unsigned_short;\nBYTE_ORDER=little_endian;\nSIZE1=4;\nSIZE2=3;\n}\f";
    write_smv_bytes(path, hb600, 512, 24);
    expect_lie(path, "HEADER_BYTES too large", (const char *const[]){"truncated", "expected 624", "HEADER_BYTES=600", NULL});
    /* and HEADER_BYTES beyond the reader's limit is refused for itself, whatever the file's size */
    const char *hbhuge = "{\nHEADER_BYTES=1048577;\nTYPE=unsigned_short;\nBYTE_ORDER=little_endian;\nSIZE1=4;\nSIZE2=3;\n}\f";
    write_smv_bytes(path, hbhuge, 512, 24);
    expect_lie(path, "HEADER_BYTES beyond the limit", (const char *const[]){"HEADER_BYTES=1048577", "limit of 1048576", NULL});
    /* the limit itself is allowed (a regular file of exactly that header and data) */
    const char *hbmax = "{\nHEADER_BYTES=1048576;\nTYPE=unsigned_short;\nBYTE_ORDER=little_endian;\nSIZE1=4;\nSIZE2=3;\n}\f";
    write_smv_bytes(path, hbmax, DB_SMV_MAX_HEADER_BYTES, 24);
    assert_int_equal(db_smv_read_flag("-mask", path, &img, &err), DB_OK);
    assert_int_equal(img.header_bytes, DB_SMV_MAX_HEADER_BYTES);
    db_smv_image_free(&img);
    /* a header without its '}' in the first DB_SMV_MAX_HEADER_BYTES: refused, saying so */
    write_smv_bytes(path, "{\nHEADER_BYTES=512;", DB_SMV_MAX_HEADER_BYTES + 10, 0);
    expect_lie(path, "no '}'", (const char *const[]){"no closing '}' in its first 1048576 bytes", NULL});
    /* more pixels than the limit */
    const char *wide = "{\nHEADER_BYTES=512;\nTYPE=unsigned_short;\nBYTE_ORDER=little_endian;\nSIZE1=65536;\nSIZE2=16385;\n}\f";
    write_smv_bytes(path, wide, 512, 24);
    expect_lie(path, "too many pixels", (const char *const[]){"SIZE1 65536 x SIZE2 16385", "limit of 1073741824 pixels", NULL});
}

/* A stream (a FIFO: no size to check beforehand) is read as far as the header says and one byte more: a
 * following byte is refused (before, the whole stream was read and the rest ignored), a short stream too. */
static void test_smv_read_stream(void **state)
{
    const char *dir = *state;
    char path[1024];
    const char *good = "{\nHEADER_BYTES=512;\nTYPE=unsigned_short;\nBYTE_ORDER=little_endian;\nSIZE1=4;\nSIZE2=3;\n}\f";
    char file[512 + 24 + 4096];
    memset(file, ' ', 512);
    memcpy(file, good, strlen(good));
    for (size_t i = 512; i < sizeof file; i++)
        file[i] = (char)(i * 3);
    db_smv_image img;
    db_error err;
    static const struct {
        size_t len;
        int rc;
        const char *part;
    } cases[] = {
        {512 + 24, DB_OK, NULL},
        {512 + 25, DB_ERR_FORMAT, "more than the 536 bytes expected (HEADER_BYTES=512, then SIZE1 4 x SIZE2 3"},
        {sizeof file, DB_ERR_FORMAT, "more than the 536 bytes expected"},
        {512 + 23, DB_ERR_FORMAT, "truncated: it ends after 535 bytes, expected 536"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        snprintf(path, sizeof path, "%s/fifo%zu", dir, i);
        pid_t w = fifo_writer(path, file, cases[i].len, 0);
        int rc = db_smv_read_flag("-img", path, &img, &err);
        fifo_reap(w);
        if (rc != cases[i].rc)
            fail_msg("a stream of %zu bytes: status %d, expected %d (%s)", cases[i].len, rc, cases[i].rc,
                     rc ? err.message : "");
        if (rc == DB_OK) {
            assert_int_equal(img.data[11], (uint16_t)(((512 + 22) * 3 & 0xff) | ((512 + 23) * 3 & 0xff) << 8));
            db_smv_image_free(&img);
        } else {
            assert_non_null(strstr(err.message, "-img '"));
            if (!strstr(err.message, cases[i].part))
                fail_msg("the message lacks \"%s\":\n    %s", cases[i].part, err.message);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header_text_matches_golden),
        cmocka_unit_test(test_long_header_is_not_padded),
        cmocka_unit_test(test_int_images_match_golden),
        cmocka_unit_test(test_int_rounding_and_clipping),
        cmocka_unit_test(test_noise_image_negative_adc_wraps),
        cmocka_unit_test_setup_teardown(test_pgm_matches_golden, make_workdir, remove_workdir),
        cmocka_unit_test_setup_teardown(test_atomic_write_failures_leave_nothing, make_workdir, remove_workdir),
        cmocka_unit_test_setup_teardown(test_atomic_write_replaces_whole_file, make_workdir, remove_workdir),
        cmocka_unit_test_setup_teardown(test_smv_round_trip, make_workdir, remove_workdir),
        cmocka_unit_test_setup_teardown(test_smv_read_golden_and_big_endian, make_workdir, remove_workdir),
        cmocka_unit_test_setup_teardown(test_smv_read_rejects_malformed, make_workdir, remove_workdir),
        cmocka_unit_test_setup_teardown(test_smv_read_sizes_must_match, make_workdir, remove_workdir),
        cmocka_unit_test_setup_teardown(test_smv_read_stream, make_workdir, remove_workdir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
