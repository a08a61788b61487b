/* test_picture.c: PNG pictures (refine/picture.h) and the command line's -pngfile and -gradpng.
 *
 * Every picture is read back with libpng's reader and compared with colours computed here from the rules in
 * picture.h and README (log grey scale, white-centred diverging map, green box outlines, magenta non-finite
 * pixels), not with colours the writer reports. Errors must leave no file behind. The command-line tests run
 * the golden case b_triclinic on a small detector in a temporary folder and compare each picture, pixel by
 * pixel, with the image file written in the same run. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "dualbragg.h"
#include "picture.h"
#include "cli_harness.h"
#include "test_util.h"

#include <dirent.h>
#include <math.h>
#include <png.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

typedef struct rgb_image {
    int w, h;
    unsigned char *px; /* w*h*3 */
} rgb_image;

/* libpng's low-level reader, so that the file's own header is checked: 8-bit RGB, no alpha, no palette. */
static int read_png_into(FILE *f, rgb_image *out)
{
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) return -1;
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        return -1;
    }
    png_init_io(png, f);
    png_read_png(png, info, PNG_TRANSFORM_IDENTITY, NULL);
    int ok = png_get_bit_depth(png, info) == 8 && png_get_color_type(png, info) == PNG_COLOR_TYPE_RGB;
    out->w = (int)png_get_image_width(png, info);
    out->h = (int)png_get_image_height(png, info);
    out->px = ok ? malloc((size_t)out->w * out->h * 3) : NULL;
    if (out->px) {
        png_bytepp rows = png_get_rows(png, info);
        for (int s = 0; s < out->h; s++) memcpy(out->px + (size_t)s * out->w * 3, rows[s], (size_t)out->w * 3);
    }
    png_destroy_read_struct(&png, &info, NULL);
    return out->px ? 0 : -1;
}

static rgb_image read_png(const char *path)
{
    rgb_image im = {0, 0, NULL};
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open '%s'", path);
    int rc = read_png_into(f, &im);
    fclose(f);
    if (rc) fail_msg("'%s' is not an 8-bit RGB PNG that libpng reads", path);
    return im;
}

static const unsigned char *px(const rgb_image *im, int f, int s) { return im->px + 3 * ((size_t)s * im->w + f); }

static int is_rgb(const unsigned char *p, int r, int g, int b) { return p[0] == r && p[1] == g && p[2] == b; }

#define assert_rgb(im, f, s, r, g, b)                                                                              \
    do {                                                                                                           \
        const unsigned char *p_ = px(im, f, s);                                                                    \
        if (!is_rgb(p_, r, g, b))                                                                                  \
            fail_msg("pixel (f=%d, s=%d) is (%d,%d,%d), expected (%d,%d,%d)", f, s, p_[0], p_[1], p_[2], r, g, b); \
    } while (0)

/* ---- the rules, written out again here ---- */

static int expect_grey(double v, double vmax)
{
    if (!(vmax > 0.0) || !(v > 0.0)) return 0;
    return (int)lround(255.0 * log1p(v) / log1p(vmax));
}

static void expect_diverging(double v, double smax, int rgb[3])
{
    double t = smax > 0.0 ? v / smax : 0.0;
    int fade = (int)lround(255.0 * (1.0 - fabs(t)));
    rgb[0] = t < 0 ? fade : 255;
    rgb[1] = fade;
    rgb[2] = t > 0 ? fade : 255;
}

/* ---- a temporary folder per test ---- */

static char tmp_dir[4096];

static int setup(void **state)
{
    (void)state;
    return harness_mkdtemp(tmp_dir, sizeof tmp_dir);
}

static int teardown(void **state)
{
    (void)state;
    harness_rmtree(tmp_dir);
    return 0;
}

static void in_tmp(char *buf, size_t size, const char *name) { snprintf(buf, size, "%s/%s", tmp_dir, name); }

static int entries_in(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    if (!d) return -1;
    for (struct dirent *e; (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

static void write_ok(const char *path, const double *img, int F, int S, db_picture_map map, const int *boxes,
                     int nboxes)
{
    db_error err;
    if (db_png_write(path, img, F, S, map, boxes, nboxes, &err)) fail_msg("db_png_write: %s", err.message);
}

/* ---- the library ---- */

/* width = fast pixels, height = slow pixels, row s = image row s */
static void test_size_and_orientation(void **state)
{
    (void)state;
    enum { F = 5, S = 3 };
    double img[F * S] = {0};
    img[1 * F + 3] = 7.0; /* f = 3, s = 1 */
    char path[4200];
    in_tmp(path, sizeof path, "o.png");
    write_ok(path, img, F, S, DB_PICTURE_LOG, NULL, 0);
    rgb_image im = read_png(path);
    assert_int_equal(im.w, F);
    assert_int_equal(im.h, S);
    for (int s = 0; s < S; s++)
        for (int f = 0; f < F; f++) {
            int g = f == 3 && s == 1 ? 255 : 0;
            assert_rgb(&im, f, s, g, g, g);
        }
    free(im.px);
}

static void test_log_scale(void **state)
{
    (void)state;
    enum { N = 8 };
    double img[N] = {-5.0, 0.0, 0.25, 1.0, 10.0, 100.0, 500.0, 1000.0};
    char path[4200];
    in_tmp(path, sizeof path, "log.png");
    write_ok(path, img, N, 1, DB_PICTURE_LOG, NULL, 0);
    rgb_image im = read_png(path);
    assert_rgb(&im, 0, 0, 0, 0, 0); /* negative counts as 0 */
    assert_rgb(&im, 1, 0, 0, 0, 0);
    assert_rgb(&im, N - 1, 0, 255, 255, 255);
    for (int i = 0; i < N; i++) {
        const unsigned char *p = px(&im, i, 0);
        assert_int_equal(p[0], p[1]);
        assert_int_equal(p[1], p[2]);
        assert_int_equal(p[0], expect_grey(img[i], 1000.0));
        if (i >= 2) assert_true(p[0] > px(&im, i - 1, 0)[0]); /* these values are far enough apart to differ */
    }
    free(im.px);

    /* nothing positive: all black, no division by zero */
    double zero[6] = {0, 0, -1, 0, 0, 0};
    write_ok(path, zero, 3, 2, DB_PICTURE_LOG, NULL, 0);
    im = read_png(path);
    for (int i = 0; i < 6; i++) assert_rgb(&im, i % 3, i / 3, 0, 0, 0);
    free(im.px);
}

static void test_diverging(void **state)
{
    (void)state;
    enum { N = 7 };
    double img[N] = {-4.0, -2.0, -1e-300, 0.0, 1.0, 3.0, 2.0}; /* scale 4: the most negative sets it */
    char path[4200];
    in_tmp(path, sizeof path, "div.png");
    write_ok(path, img, N, 1, DB_PICTURE_DIVERGING, NULL, 0);
    rgb_image im = read_png(path);
    assert_rgb(&im, 0, 0, 0, 0, 255);     /* most negative: blue */
    assert_rgb(&im, 1, 0, 128, 128, 255); /* half way to blue */
    assert_rgb(&im, 3, 0, 255, 255, 255); /* exactly white at 0 */
    for (int i = 0; i < N; i++) {
        int want[3];
        expect_diverging(img[i], 4.0, want);
        assert_rgb(&im, i, 0, want[0], want[1], want[2]);
    }
    free(im.px);

    /* the most positive is pure red when it sets the scale */
    double pos[3] = {-1.0, 0.0, 3.0};
    write_ok(path, pos, 3, 1, DB_PICTURE_DIVERGING, NULL, 0);
    im = read_png(path);
    assert_rgb(&im, 2, 0, 255, 0, 0);
    assert_rgb(&im, 1, 0, 255, 255, 255);
    assert_rgb(&im, 0, 0, 170, 170, 255);
    free(im.px);

    /* an all-zero image is all white */
    double zero[4] = {0};
    write_ok(path, zero, 2, 2, DB_PICTURE_DIVERGING, NULL, 0);
    im = read_png(path);
    for (int i = 0; i < 4; i++) assert_rgb(&im, i % 2, i / 2, 255, 255, 255);
    free(im.px);
}

static void test_boxes(void **state)
{
    (void)state;
    enum { F = 10, S = 8 };
    double img[F * S] = {0};
    int boxes[8] = {2, 6, 1, 5,    /* inside the image */
                    7, 20, 6, 20}; /* reaching past the right and bottom edges: clipped */
    char path[4200];
    in_tmp(path, sizeof path, "box.png");
    write_ok(path, img, F, S, DB_PICTURE_LOG, boxes, 2);
    rgb_image im = read_png(path);
    for (int s = 0; s < S; s++)
        for (int f = 0; f < F; f++) {
            int in1 = f >= 2 && f <= 6 && s >= 1 && s <= 5;
            int edge1 = in1 && (f == 2 || f == 6 || s == 1 || s == 5);
            int edge2 = (f == 7 && s >= 6) || (s == 6 && f >= 7);
            test_context("pixel f=%d s=%d", f, s);
            if (edge1 || edge2) assert_rgb(&im, f, s, 0, 255, 0);
            else assert_rgb(&im, f, s, 0, 0, 0);
        }
    test_context(NULL);
    /* the pixels just inside the first box's border are not green */
    assert_rgb(&im, 3, 2, 0, 0, 0);
    assert_rgb(&im, 5, 4, 0, 0, 0);
    free(im.px);

    /* a box entirely off the image draws nothing; a box with min > max is refused */
    int off[4] = {20, 30, 0, 3}, bad[4] = {5, 4, 0, 3};
    db_error err;
    write_ok(path, img, F, S, DB_PICTURE_DIVERGING, off, 1);
    im = read_png(path);
    for (int i = 0; i < F * S; i++) assert_rgb(&im, i % F, i / F, 255, 255, 255);
    free(im.px);
    assert_int_equal(db_png_write(path, img, F, S, DB_PICTURE_LOG, bad, 1, &err), DB_ERR_ARGUMENT);
}

static void test_nonfinite_magenta(void **state)
{
    (void)state;
    double img[6] = {NAN, INFINITY, -INFINITY, 0.0, 2.0, -1.0};
    char path[4200];
    in_tmp(path, sizeof path, "nan.png");
    for (int map = 0; map < 2; map++) {
        write_ok(path, img, 3, 2, (db_picture_map)map, NULL, 0);
        rgb_image im = read_png(path);
        for (int i = 0; i < 3; i++) assert_rgb(&im, i, 0, 255, 0, 255);
        /* the infinities do not set the scale: 2 is the largest finite value */
        if (map == DB_PICTURE_LOG) assert_rgb(&im, 1, 1, 255, 255, 255);
        else assert_rgb(&im, 1, 1, 255, 0, 0);
        free(im.px);
    }
}

/* db_png_write_float: the same picture from the float image */
static void test_float_input(void **state)
{
    (void)state;
    float f32[6] = {0.0f, 1.0f, 50.0f, NAN, -3.0f, 400.0f};
    double f64[6];
    for (int i = 0; i < 6; i++) f64[i] = f32[i];
    char a[4200], b[4200];
    in_tmp(a, sizeof a, "f32.png");
    in_tmp(b, sizeof b, "f64.png");
    db_error err;
    for (int map = 0; map < 2; map++) {
        assert_int_equal(db_png_write_float(a, f32, 3, 2, (db_picture_map)map, NULL, 0, &err), DB_OK);
        write_ok(b, f64, 3, 2, (db_picture_map)map, NULL, 0);
        rgb_image ia = read_png(a), ib = read_png(b);
        assert_int_equal(ia.w, 3);
        assert_int_equal(ia.h, 2);
        assert_memory_equal(ia.px, ib.px, 18);
        free(ia.px);
        free(ib.px);
    }
    rgb_image im = read_png(a); /* the diverging one: 400 sets the scale */
    assert_rgb(&im, 2, 1, 255, 0, 0);
    free(im.px);
}

static void test_argument_errors(void **state)
{
    (void)state;
    double img[4] = {0};
    int box[4] = {0, 1, 0, 1};
    char path[4200];
    in_tmp(path, sizeof path, "a.png");
    db_error err;
    assert_int_equal(db_png_write(NULL, img, 2, 2, DB_PICTURE_LOG, NULL, 0, &err), DB_ERR_ARGUMENT);
    assert_int_equal(db_png_write(path, NULL, 2, 2, DB_PICTURE_LOG, NULL, 0, &err), DB_ERR_ARGUMENT);
    assert_int_equal(db_png_write(path, img, 0, 2, DB_PICTURE_LOG, NULL, 0, &err), DB_ERR_ARGUMENT);
    assert_int_equal(db_png_write(path, img, 2, -1, DB_PICTURE_LOG, NULL, 0, &err), DB_ERR_ARGUMENT);
    assert_int_equal(db_png_write(path, img, 2, 2, DB_PICTURE_LOG, NULL, 1, &err), DB_ERR_ARGUMENT);
    assert_int_equal(db_png_write(path, img, 2, 2, DB_PICTURE_LOG, box, -1, &err), DB_ERR_ARGUMENT);
    assert_int_equal(db_png_write_float(path, NULL, 2, 2, DB_PICTURE_LOG, NULL, 0, &err), DB_ERR_ARGUMENT);
    assert_int_equal(entries_in(tmp_dir), 0);
}

/* An unwritable path, a path that is a folder, and an error inside libpng: an error naming the path, and no
 * file (nor temporary) left behind. */
static void test_write_errors_leave_nothing(void **state)
{
    (void)state;
    double img[4] = {1, 2, 3, 4};
    char path[4200], sub[4200];
    db_error err;

    in_tmp(path, sizeof path, "missing/p.png");
    assert_int_equal(db_png_write(path, img, 2, 2, DB_PICTURE_LOG, NULL, 0, &err), DB_ERR_IO);
    assert_non_null(strstr(err.message, path));
    assert_int_equal(entries_in(tmp_dir), 0);

    in_tmp(sub, sizeof sub, "folder.png");
    assert_int_equal(mkdir(sub, 0755), 0);
    assert_int_not_equal(db_png_write(sub, img, 2, 2, DB_PICTURE_LOG, NULL, 0, &err), DB_OK);
    assert_non_null(strstr(err.message, sub));
    assert_int_equal(entries_in(tmp_dir), 1); /* only the folder */
    assert_int_equal(entries_in(sub), 0);
    assert_int_equal(rmdir(sub), 0);

    /* wider than libpng accepts (its limit is 1000000 columns): libpng's error comes back as ours */
    enum { WIDE = 1000001 };
    double *wide = calloc(WIDE, sizeof *wide);
    assert_non_null(wide);
    in_tmp(path, sizeof path, "wide.png");
    int rc = db_png_write(path, wide, WIDE, 1, DB_PICTURE_LOG, NULL, 0, &err);
    free(wide);
    assert_int_not_equal(rc, DB_OK);
    assert_non_null(strstr(err.message, path));
    assert_int_equal(entries_in(tmp_dir), 0);
}

/* A write that fails half-way (the file-size limit stands in for a full disk): the old file stays as it was. */
static void test_failed_write_keeps_old_file(void **state)
{
    (void)state;
    char path[4200];
    in_tmp(path, sizeof path, "old.png");
    double small[4] = {1, 2, 3, 4};
    write_ok(path, small, 2, 2, DB_PICTURE_LOG, NULL, 0);
    size_t old_len;
    unsigned char *old = harness_read(path, &old_len);
    assert_non_null(old);

    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        enum { N = 256 };
        static double noise[N * N];
        unsigned x = 12345;
        for (int i = 0; i < N * N; i++) noise[i] = (double)(x = x * 1103515245u + 12345u) - 2147483648.0;
        signal(SIGXFSZ, SIG_IGN); /* write() then fails with EFBIG instead of killing the process */
        struct rlimit lim = {4096, 4096};
        setrlimit(RLIMIT_FSIZE, &lim);
        db_error err;
        int rc = db_png_write(path, noise, N, N, DB_PICTURE_DIVERGING, NULL, 0, &err);
        _exit(rc == DB_ERR_IO && strstr(err.message, path) ? 0 : 1);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    size_t now_len;
    unsigned char *now = harness_read(path, &now_len);
    assert_non_null(now);
    assert_int_equal(now_len, old_len);
    assert_memory_equal(now, old, old_len);
    assert_int_equal(entries_in(tmp_dir), 1); /* no temporary left */
    free(old);
    free(now);
}

/* ---- the command line ---- */

enum { CF = 64, CS = 64 };

/* b_triclinic (cmd.txt line 1) on a 64 x 64 detector with a -roi, so that some pixels are 0; runs in tmp_dir. */
static int run_case(const char *extra, char **log)
{
    char from[4200], to[4200];
    snprintf(from, sizeof from, "%s/b_triclinic/P1.hkl", DB_GOLDEN_DIR);
    in_tmp(to, sizeof to, "P1.hkl");
    assert_int_equal(harness_copy(from, to), 0);
    harness_args a = {0};
    assert_int_equal(harness_case_args(DB_GOLDEN_DIR, "b_triclinic", 1, &a), 0);
    harness_set(&a, "-detpixels", "64");
    harness_split(&a, "-roi 4 59 0 47");
    harness_split(&a, "-nonoise");
    harness_split(&a, extra);
    int status = harness_run(DB_CLI_PATH, tmp_dir, &a, 2);
    harness_args_free(&a);
    char path[4200];
    size_t len;
    in_tmp(path, sizeof path, "out.log");
    *log = (char *)harness_read(path, &len);
    assert_non_null(*log);
    *log = realloc(*log, len + 1);
    (*log)[len] = '\0';
    return status;
}

static void *read_tmp(const char *name, size_t want_bytes)
{
    char path[4200];
    size_t len;
    in_tmp(path, sizeof path, name);
    void *data = harness_read(path, &len);
    if (!data) fail_msg("'%s' was not written", name);
    assert_int_equal(len, want_bytes);
    return data;
}

static void test_cli_pngfile(void **state)
{
    (void)state;
    char *log;
    int status = run_case("-pngfile float.png", &log);
    if (status != 0) fail_msg("exit status %d:\n%s", status, log);
    assert_non_null(strstr(log, "writing float.png"));
    free(log);
    float *img = read_tmp("float.bin", sizeof(float) * CF * CS);
    char path[4200];
    in_tmp(path, sizeof path, "float.png");
    rgb_image im = read_png(path);
    assert_int_equal(im.w, CF);
    assert_int_equal(im.h, CS);
    double vmax = 0.0;
    for (int i = 0; i < CF * CS; i++) vmax = fmax(vmax, img[i]);
    assert_true(vmax > 0.0);
    int zeros = 0;
    for (int s = 0; s < CS; s++)
        for (int f = 0; f < CF; f++) {
            int g = expect_grey(img[s * CF + f], vmax);
            test_context("pixel f=%d s=%d value %g", f, s, img[s * CF + f]);
            assert_rgb(&im, f, s, g, g, g);
            zeros += img[s * CF + f] == 0.0f;
        }
    test_context(NULL);
    assert_true(zeros >= 4 * CS); /* the columns outside the -roi */
    assert_rgb(&im, 0, CS - 1, 0, 0, 0);
    free(im.px);
    free(img);
}

static void test_cli_gradpng(void **state)
{
    (void)state;
    char *log;
    int status = run_case("-grad a,phi0 -gradpng", &log);
    if (status != 0) fail_msg("exit status %d:\n%s", status, log);
    const char *names[2] = {"a", "phi0"};
    for (int k = 0; k < 2; k++) {
        char bin[64], png[64], path[4200], line[128];
        snprintf(bin, sizeof bin, "float.d%s.bin", names[k]);
        snprintf(png, sizeof png, "float.d%s.png", names[k]);
        snprintf(line, sizeof line, "writing %s", png);
        assert_non_null(strstr(log, line));
        double *g = read_tmp(bin, sizeof(double) * CF * CS);
        in_tmp(path, sizeof path, png);
        rgb_image im = read_png(path);
        assert_int_equal(im.w, CF);
        assert_int_equal(im.h, CS);
        double smax = 0.0;
        int neg = 0, pos = 0;
        for (int i = 0; i < CF * CS; i++) {
            smax = fmax(smax, fabs(g[i]));
            neg += g[i] < 0;
            pos += g[i] > 0;
        }
        assert_true(neg > 0 && pos > 0); /* both halves of the map are exercised */
        for (int s = 0; s < CS; s++)
            for (int f = 0; f < CF; f++) {
                int want[3];
                expect_diverging(g[s * CF + f], smax, want);
                test_context("%s pixel f=%d s=%d value %g", png, f, s, g[s * CF + f]);
                assert_rgb(&im, f, s, want[0], want[1], want[2]);
            }
        test_context(NULL);
        assert_rgb(&im, 0, CS - 1, 255, 255, 255); /* outside the -roi: 0 */
        free(im.px);
        free(g);
    }
    free(log);
}

static void test_cli_gradpng_needs_grad(void **state)
{
    (void)state;
    char *log;
    int status = run_case("-gradpng -pngfile float.png", &log);
    assert_int_not_equal(status, 0);
    assert_non_null(strstr(log, "-gradpng"));
    assert_non_null(strstr(log, "-grad "));
    free(log);
    char path[4200];
    struct stat st;
    in_tmp(path, sizeof path, "float.bin");
    assert_int_not_equal(stat(path, &st), 0); /* refused before the run */
    in_tmp(path, sizeof path, "float.png");
    assert_int_not_equal(stat(path, &st), 0);
}

/* a -pngfile that cannot be written is refused before the run, like the other outputs */
static void test_cli_pngfile_bad_folder(void **state)
{
    (void)state;
    char *log;
    int status = run_case("-pngfile nowhere/float.png", &log);
    assert_int_not_equal(status, 0);
    assert_non_null(strstr(log, "-pngfile"));
    free(log);
    char path[4200];
    struct stat st;
    in_tmp(path, sizeof path, "float.bin");
    assert_int_not_equal(stat(path, &st), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_size_and_orientation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_scale, setup, teardown),
        cmocka_unit_test_setup_teardown(test_diverging, setup, teardown),
        cmocka_unit_test_setup_teardown(test_boxes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nonfinite_magenta, setup, teardown),
        cmocka_unit_test_setup_teardown(test_float_input, setup, teardown),
        cmocka_unit_test_setup_teardown(test_argument_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_errors_leave_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_write_keeps_old_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cli_pngfile, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cli_gradpng, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cli_gradpng_needs_grad, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cli_pngfile_bad_folder, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
