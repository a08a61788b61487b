/* test_flags.c: the command-line flags that no golden case uses (spec §3, §6; appendix A1, A2, A4).
 *
 * Each test runs build/bin/dualbragg in a fresh temporary folder and checks the rule the spec states against an
 * expectation built independently of the code under test: an equivalent command line whose parameters the test
 * derives by hand from the spec (a shifted detector, an explicit source list, a misset computed here from the
 * spec's random-number recipe, ...), or values computed here from the float image (integer image, PGM).
 * Exact (bitwise) comparisons are used only where the two runs reach the same doubles by the same arithmetic;
 * everything else is compared with a tolerance far below any physical effect but far above float rounding.
 *
 * Most rules are a relation between the float images of two command lines (the same bits, different, close).
 * Those are rows of tables (flag_pair), grouped by theme: spellings of one setting, order and override rules,
 * settings the program derives from others, flags that must leave the image alone, flags that must change it;
 * rows that need input files sit in the test that writes them. A table's runner checks every row and reports each
 * broken one with its two command lines before it fails the test. What is not such a pair stays as code: SMV
 * header values, pixel counts, log text, integer and PGM pixel arithmetic, and comparisons with a command line or
 * an expectation computed here.
 *
 * Base: 100 A cubic cell, -default_F 100, N=5, lambda 1 A, 100 mm, 0.1 mm pixels, 64x64, MOSFLM. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>

#include "cli_harness.h"
#include "dualbragg.h" /* -grad_F against the library's db_sim_run_selected_F */

#define NP 64
#define BASE_NODET                                                                                                  \
    "-cell 100 100 100 90 90 90 -default_F 100 -N 5 -lambda 1 -distance 100 -pixel 0.1 -oversample 1 -noprogress " \
    "-nopgm -seed 1"
#define BASE BASE_NODET " -detpixels 64"
/* without -N, for the crystal-size flags that set it */
#define BASE_NO_N                                                                                                   \
    "-cell 100 100 100 90 90 90 -default_F 100 -lambda 1 -distance 100 -pixel 0.1 -detpixels 64 -oversample 1 "   \
    "-noprogress -nopgm -seed 1"

/* ------------------------------------------------------------------------------------------------ */
/* temporary folders: each one is registered so that a failed assertion (which skips the test's own clean-up)
 * does not leave it behind; the group teardown removes whatever is left */

#define MAX_DIRS 256
static char *tmp_dirs[MAX_DIRS];

static void make_tmp_dir(char *dir, size_t size)
{
    assert_int_equal(harness_mkdtemp(dir, size), 0);
    for (int i = 0; i < MAX_DIRS; i++)
        if (!tmp_dirs[i]) {
            tmp_dirs[i] = strdup(dir);
            return;
        }
}

static void remove_tmp_dir(const char *dir)
{
    harness_rmtree(dir);
    for (int i = 0; i < MAX_DIRS; i++)
        if (tmp_dirs[i] && strcmp(tmp_dirs[i], dir) == 0) {
            free(tmp_dirs[i]);
            tmp_dirs[i] = NULL;
        }
}

static int remove_all_tmp_dirs(void **state)
{
    (void)state;
    for (int i = 0; i < MAX_DIRS; i++)
        if (tmp_dirs[i]) {
            harness_rmtree(tmp_dirs[i]);
            free(tmp_dirs[i]);
            tmp_dirs[i] = NULL;
        }
    return 0;
}

/* ------------------------------------------------------------------------------------------------ */
/* running the program */

typedef struct result {
    char dir[4096];
    int own_dir;       /* the folder was made for this run and is removed by result_free */
    int status;        /* exit status */
    float *img;        /* float image (NULL if not asked for or missing) */
    size_t n;          /* its pixel count */
    unsigned char *smv; /* integer image (NULL if not asked for or missing) */
    size_t smv_len;
    char *log;         /* stdout + stderr, NUL-terminated ("" if none) */
} result;

static char *read_text(const char *dir, const char *name)
{
    char path[4400];
    size_t len;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    unsigned char *b = harness_read(path, &len);
    char *s = (char *)malloc(b ? len + 1 : 1);
    assert_non_null(s);
    if (b) memcpy(s, b, len);
    s[b ? len : 0] = '\0';
    free(b);
    return s;
}

static int file_exists(const char *dir, const char *name)
{
    char path[4400];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return stat(path, &st) == 0;
}

static void write_text(const char *dir, const char *name, const char *text)
{
    char path[4400];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

/* Runs `line` in dir (a new temporary folder when dir is NULL), adding "-floatfile fname -intfile iname" for the
 * names that are not NULL, and reads back what it wrote. */
static result run_in(const char *dir, const char *line, const char *fname, const char *iname)
{
    result r;
    memset(&r, 0, sizeof r);
    if (dir) {
        snprintf(r.dir, sizeof r.dir, "%s", dir);
    } else {
        make_tmp_dir(r.dir, sizeof r.dir);
        r.own_dir = 1;
    }
    char full[16384];
    int k = snprintf(full, sizeof full, "%s", line);
    if (fname) k += snprintf(full + k, sizeof full - k, " -floatfile %s", fname);
    if (iname) snprintf(full + k, sizeof full - k, " -intfile %s", iname);
    harness_args a = {0};
    harness_split(&a, full);
    r.status = harness_run(DB_CLI_PATH, r.dir, &a, 0);
    harness_args_free(&a);
    r.log = read_text(r.dir, "out.log");
    char path[4400];
    if (fname) {
        snprintf(path, sizeof path, "%s/%s", r.dir, fname);
        size_t len = 0;
        r.img = (float *)harness_read(path, &len);
        r.n = len / sizeof(float);
    }
    if (iname) {
        snprintf(path, sizeof path, "%s/%s", r.dir, iname);
        r.smv = harness_read(path, &r.smv_len);
    }
    return r;
}

/* base plus extra, without the noise image */
static void base_line(char *line, size_t size, const char *base, const char *extra)
{
    snprintf(line, size, "%s %s -nonoise", base, extra);
}

/* Runs base plus extra (base_line) in dir, or in a fresh folder when dir is NULL. Returns 1 when it succeeded and
 * wrote a float image of npix pixels and an integer image; else 0 with the reason in why. *r is freed either way. */
static int try_run_base(const char *dir, const char *base, const char *extra, size_t npix, result *r, char *why,
                        size_t size)
{
    char line[8192];
    base_line(line, sizeof line, base, extra);
    *r = run_in(dir, line, "f.bin", "i.img");
    if (r->status != 0)
        snprintf(why, size, "exited with %d:\n%s", r->status, r->log);
    else if (!r->img || !r->smv)
        snprintf(why, size, "wrote no %s image", r->img ? "integer" : "float");
    else if (r->n != npix)
        snprintf(why, size, "wrote %zu pixels, expected %zu", r->n, npix);
    else
        return 1;
    return 0;
}

/* try_run_base that fails the test when the run fails */
static result run_base_in(const char *dir, const char *base, const char *extra, size_t npix)
{
    result r;
    char why[8192];
    if (!try_run_base(dir, base, extra, npix, &r, why, sizeof why)) {
        char line[8192];
        base_line(line, sizeof line, base, extra);
        fail_msg("dualbragg %s %s", line, why);
    }
    return r;
}

static result run_base_n(const char *base, const char *extra, size_t npix)
{
    return run_base_in(NULL, base, extra, npix);
}

static result run_base(const char *extra)
{
    return run_base_n(BASE, extra, NP * NP);
}

static void result_free(result *r)
{
    free(r->img);
    free(r->smv);
    free(r->log);
    if (r->own_dir) remove_tmp_dir(r->dir);
    memset(r, 0, sizeof *r);
}

/* ------------------------------------------------------------------------------------------------ */
/* SMV header and image comparisons */

/* The value of KEY in an SMV header ("KEY=value;"); fails the test when absent. */
static double hdr_value(const result *r, const char *key)
{
    assert_non_null(r->smv);
    assert_true(r->smv_len >= 512);
    char head[2048];
    size_t n = r->smv_len < sizeof head - 1 ? r->smv_len : sizeof head - 1;
    memcpy(head, r->smv, n);
    head[n] = '\0';
    char *end = strchr(head, '}');
    if (end) *end = '\0';
    char pat[128];
    snprintf(pat, sizeof pat, "\n%s=", key);
    char *p = strstr(head, pat);
    if (!p) fail_msg("SMV header has no %s", key);
    return strtod(p + strlen(pat), NULL);
}

static size_t smv_header_bytes(const result *r)
{
    /* the header is padded to 512 bytes unless its text is longer (A4.1); ours are short */
    assert_true(r->smv_len >= 512);
    return 512;
}

static uint16_t smv_pixel(const result *r, size_t i)
{
    uint16_t v;
    memcpy(&v, r->smv + smv_header_bytes(r) + 2 * i, sizeof v);
    return v;
}

static long count_diff(const float *a, const float *b, size_t n)
{
    long d = 0;
    for (size_t i = 0; i < n; i++) d += memcmp(&a[i], &b[i], sizeof(float)) != 0;
    return d;
}

static float max_abs(const float *v, size_t n)
{
    float m = 0.0f;
    for (size_t i = 0; i < n; i++)
        if (fabsf(v[i]) > m) m = fabsf(v[i]);
    return m;
}

/* got(f, s) against want(f + df, s + ds) * factor for every pixel where both exist (images nf x ns, the second
 * one wf pixels wide): |got - w| <= rtol * |w| + 1e-6 * max|w|. Returns 1 when every such pixel (and at least one)
 * is close; else 0 with the first pixel that is not in why. */
static int close_shifted(const float *got, int nf, int ns, const float *want, int wf, int wsn, int df, int ds,
                         double factor, double rtol, char *why, size_t size)
{
    double atol = 1e-6 * max_abs(want, (size_t)wf * wsn) * fabs(factor);
    long checked = 0;
    for (int s = 0; s < ns; s++)
        for (int f = 0; f < nf; f++) {
            int wfx = f + df, wsx = s + ds;
            if (wfx < 0 || wfx >= wf || wsx < 0 || wsx >= wsn) continue;
            double g = got[(size_t)s * nf + f];
            double w = factor * want[(size_t)wsx * wf + wfx];
            if (!(fabs(g - w) <= rtol * fabs(w) + atol)) {
                snprintf(why, size, "pixel f=%d s=%d: got %.9g, expected %.9g", f, s, g, w);
                return 0;
            }
            checked++;
        }
    if (checked == 0) snprintf(why, size, "no pixel of one image has a counterpart in the other");
    return checked > 0;
}

static void expect_close_shifted(const float *got, int nf, int ns, const float *want, int wf, int wsn, int df,
                                 int ds, double factor, double rtol, const char *what)
{
    char why[256];
    if (!close_shifted(got, nf, ns, want, wf, wsn, df, ds, factor, rtol, why, sizeof why))
        fail_msg("%s: %s", what, why);
}

/* How two runs' float images must relate. A row gives the relation and its tolerance together, so that a bitwise
 * rule cannot pick up a tolerance by mistake: SAME_BITS, DIFFERENT, CLOSE(rtol). */
enum { REL_SAME_BITS, REL_DIFFERENT, REL_CLOSE };
#define SAME_BITS .relation = REL_SAME_BITS, .rtol = 0.0
#define DIFFERENT .relation = REL_DIFFERENT, .rtol = 0.0
#define CLOSE(tol) .relation = REL_CLOSE, .rtol = (tol)

/* Returns 1 when a and b keep the relation; else 0 with the reason in why. CLOSE is pixel by pixel on NP-wide
 * rows, with b the expectation (close_shifted). */
static int relation_holds(const result *a, const result *b, int relation, double rtol, char *why, size_t size)
{
    if (a->n != b->n) {
        snprintf(why, size, "%zu vs %zu pixels", a->n, b->n);
        return 0;
    }
    long d;
    switch (relation) {
    case REL_SAME_BITS:
        d = count_diff(a->img, b->img, a->n);
        if (d) snprintf(why, size, "%ld of %zu pixels differ (expected bit-identical float images)", d, a->n);
        return d == 0;
    case REL_DIFFERENT:
        d = count_diff(a->img, b->img, a->n);
        if (!d) snprintf(why, size, "the float images are identical");
        return d != 0;
    default:
        return close_shifted(a->img, NP, (int)(a->n / NP), b->img, NP, (int)(b->n / NP), 0, 0, 1.0, rtol, why, size);
    }
}

static void expect_relation(const result *a, const result *b, int relation, double rtol, const char *what)
{
    char why[256];
    if (!relation_holds(a, b, relation, rtol, why, sizeof why)) fail_msg("%s: %s", what, why);
}

static void expect_identical(const result *a, const result *b, const char *what)
{
    expect_relation(a, b, REL_SAME_BITS, 0.0, what);
}

static void expect_close(const result *got, const result *want, double rtol, const char *what)
{
    expect_relation(got, want, REL_CLOSE, rtol, what);
}

static void expect_log_has(const result *r, const char *text)
{
    if (!strstr(r->log, text)) fail_msg("expected \"%s\" in the program's output:\n%s", text, r->log);
}

/* ------------------------------------------------------------------------------------------------ */
/* pairs of command lines and how their float images must relate */

typedef struct flag_pair {
    const char *what;   /* the rule, as the report names it */
    const char *a, *b;  /* the flags of the two runs; for CLOSE, b gives the expectation */
    int relation;       /* with rtol: SAME_BITS, DIFFERENT or CLOSE(rtol) */
    double rtol;
    const char *base;   /* the flags both runs start from; NULL: BASE */
    size_t npix;        /* the images' pixel count; 0: NP * NP */
} flag_pair;

#define N_ROWS(table) (sizeof(table) / sizeof *(table))

/* Runs both lines of every row (in dir, or each in a fresh folder when dir is NULL) and checks the row's relation.
 * A broken row does not stop the table: each is reported with its two command lines, then the test fails. */
static void check_pairs(const char *dir, const flag_pair *rows, size_t n)
{
    size_t broken = 0;
    for (size_t i = 0; i < n; i++) {
        const flag_pair *p = &rows[i];
        const char *base = p->base ? p->base : BASE;
        size_t npix = p->npix ? p->npix : NP * NP;
        result a, b;
        memset(&b, 0, sizeof b);
        char why[4096];
        int ok = try_run_base(dir, base, p->a, npix, &a, why, sizeof why) &&
                 try_run_base(dir, base, p->b, npix, &b, why, sizeof why) &&
                 relation_holds(&a, &b, p->relation, p->rtol, why, sizeof why);
        if (!ok) {
            char la[8192], lb[8192];
            base_line(la, sizeof la, base, p->a);
            base_line(lb, sizeof lb, base, p->b);
            print_error("%s: %s\n  a: dualbragg %s\n  b: dualbragg %s\n", p->what, why, la, lb);
            broken++;
        }
        result_free(&a);
        result_free(&b);
    }
    if (broken) fail_msg("%zu of %zu rows broke their rule (listed above)", broken, n);
}

/* One setting, several spellings: each reaches the same doubles by the same arithmetic, so bit for bit. */
static const flag_pair spellings[] = {
    /* -energy E sets lambda = 12398.42/E A: 12398.42/12398.42 == 1 exactly, the same double as -lambda 1 */
    {"-energy 12398.42 vs -lambda 1", "-energy 12398.42", "", SAME_BITS},
    {"-wave 1.3 vs -lambda 1.3", "-wave 1.3", "-lambda 1.3", SAME_BITS},
    /* -detsize 6.4 with 0.1 mm pixels: fpixels = ceil(64 - 0.5) = 64, the same detector as -detpixels 64 */
    {"-detsize 6.4 vs -detpixels 64", "-detsize 6.4", "-detpixels 64", SAME_BITS, .base = BASE_NODET},
    /* a 64 (fast) x 32 (slow) detector: pixel counts, x/y counts and sizes (the fourth spelling is an override
     * rule below) */
    {"-detpixels_f/_s vs -detsize_f/_s", "-detpixels_f 64 -detpixels_s 32", "-detsize_f 6.4 -detsize_s 3.2",
     SAME_BITS, .base = BASE_NODET, .npix = 64 * 32},
    {"-detpixels_x/_y vs -detsize_f/_s", "-detpixels_x 64 -detpixels_y 32", "-detsize_f 6.4 -detsize_s 3.2",
     SAME_BITS, .base = BASE_NODET, .npix = 64 * 32},
    /* crystal sizes in mm: N = ceil(size / |a|) with |a| = 100 A = 1e-5 mm, so each of these is N = 5 (-N 0, which
     * the reference clips to 1, is refused: issue 8, tests/io/test_hardening.c) */
    {"-xtalsize", "-xtalsize 0.000049", "-N 5", SAME_BITS, .base = BASE_NO_N},
    {"-samplesize", "-samplesize 0.000041", "-N 5", SAME_BITS, .base = BASE_NO_N},
    {"-sample_size, -xtal_size", "-sample_size 0.00005 -xtal_size 0.000045", "-N 5", SAME_BITS, .base = BASE_NO_N},
    {"-sample_x/_y/_z", "-sample_x 0.000049 -sample_y 0.000049 -sample_z 0.000049", "-N 5", SAME_BITS,
     .base = BASE_NO_N},
    {"-xtal_thick/_width/_height", "-xtal_thick 0.000045 -xtal_width 0.000041 -xtal_height 0.0000401", "-N 5",
     SAME_BITS, .base = BASE_NO_N},
    {"-sample_thick, -width, -heigh", "-sample_thick 0.000041 -width 0.000042 -heigh 0.000043", "-N 5", SAME_BITS,
     .base = BASE_NO_N},
    {"-xtal_x/_y/_z", "-xtal_x 0.000041 -xtal_y 0.000042 -xtal_z 0.000043", "-N 5", SAME_BITS, .base = BASE_NO_N},
    {"-sample_width/_heigh/_height, -sample_x",
     "-sample_width 0.000041 -sample_heigh 0.000042 -sample_height 0.000043 -sample_x 0.00004001", "-N 5", SAME_BITS,
     .base = BASE_NO_N},
    {"-xtal_heigh, -height, -xtal_y, -sample_x",
     "-xtal_heigh 0.000041 -height 0.000042 -xtal_y 0.000049 -sample_x 0.000049", "-N 5", SAME_BITS,
     .base = BASE_NO_N},
    /* per-axis sizes: 4 x 5 x 6 cells */
    {"sizes along a, b, c", "-xtal_x 0.000031 -sample_y 0.000041 -heigh 0.0000501", "-Na 4 -Nb 5 -Nc 6", SAME_BITS,
     .base = BASE_NO_N},
    {"-misset rand", "-misset rand -misset_seed 7", "-misset random -misset_seed 7", SAME_BITS},
    {"-mosaici, -mosaic_domains", "-mosaici 0.5 -mosaic_domains 4 -mosaic_seed 2",
     "-mosaic 0.5 -mosaic_dom 4 -mosaic_seed 2", SAME_BITS},
    {"-mosaicity", "-mosaicity 0.5 -mosaic_dom 4 -mosaic_seed 2", "-mosaic 0.5 -mosaic_dom 4 -mosaic_seed 2",
     SAME_BITS},
    {"-mosaic_spr", "-mosaic_spr 0.5 -mosaic_dom 4 -mosaic_seed 2", "-mosaic 0.5 -mosaic_dom 4 -mosaic_seed 2",
     SAME_BITS},
    {"-mosaic_spread", "-mosaic_spread 0.5 -mosaic_dom 4 -mosaic_seed 2", "-mosaic 0.5 -mosaic_dom 4 -mosaic_seed 2",
     SAME_BITS},
    /* -divergence/-divsteps are shorthands for the h and v flags */
    {"-divergence/-divsteps vs -h/-vdivrange, -h/-vdivsteps", "-divergence 2 -divsteps 3",
     "-hdivrange 2 -vdivrange 2 -hdivsteps 3 -vdivsteps 3", SAME_BITS},
    {"-thicksteps / -detector_absorb", "-detector_thick 100 -detector_absorb 50 -thicksteps 3",
     "-detector_thick 100 -detector_abs 50 -detector_thicksteps 3", SAME_BITS},
    {"-detector_absorption", "-detector_thick 100 -detector_absorption 50 -thicksteps 3",
     "-detector_thick 100 -detector_abs 50 -detector_thicksteps 3", SAME_BITS},
    {"-binary_spots vs -tophat_spots", "-misset 10 20 30 -binary_spots", "-misset 10 20 30 -tophat_spots", SAME_BITS},
    {"-curved_detector vs -curved_det", "-curved_detector", "-curved_det", SAME_BITS},
};

/* Where two flags set the same thing, the order decides or one of them always wins. */
static const flag_pair order_rules[] = {
    /* the last wavelength flag wins */
    {"-energy 10000 -lambda 1", "-energy 10000 -lambda 1", "", SAME_BITS},
    /* -detpixels overrides -detsize whatever the order */
    {"-detpixels 64 -detsize 10", "-detpixels 64 -detsize 10", "-detpixels 64", SAME_BITS, .base = BASE_NODET},
    {"-detpixels_f/_s over -detsize", "-detsize 10 -detpixels_s 32 -detpixels_f 64", "-detsize_f 6.4 -detsize_s 3.2",
     SAME_BITS, .base = BASE_NODET, .npix = 64 * 32},
    /* -misset random is reproducible whatever the flag order */
    {"-misset random reproducible (flag order)", "-misset_seed 7 -misset random", "-misset random -misset_seed 7",
     SAME_BITS},
    /* -square_xtal is the default; the last shape flag wins */
    {"-square_xtal (default, last shape flag wins)", "-misset 10 20 30 -round_xtal -square_xtal", "-misset 10 20 30",
     SAME_BITS},
};

/* Settings the program derives from others: a convention's detector, seeds, and the rules that fill in the range,
 * step or count of a sampling from the ones given. */
static const flag_pair derived_settings[] = {
    /* -close_distance: distance = close_distance / ratio with ratio = beam . (rotated odet) (spec §3.5 step 1),
     * which is 1 for an unrotated detector */
    {"-close_distance 120 vs -distance 120 (ratio 1)", "-misset 10 20 30 -close_distance 120",
     "-misset 10 20 30 -distance 120", SAME_BITS},
    /* DENZO: Fbeam = Ybeam, Sbeam = Xbeam (no half-pixel shift): the default (3.25, 3.25) is the MOSFLM detector
     * with Xbeam = Ybeam = 3.2 */
    {"-denzo vs MOSFLM -Xbeam 3.2 -Ybeam 3.2", "-misset 10 20 30 -denzo", "-misset 10 20 30 -Xbeam 3.2 -Ybeam 3.2",
     CLOSE(1e-5)},
    /* ADXV: beam +z, fdet +x, sdet -y, odet +z, polar and spindle +x; Fbeam = Xbeam = (detsize_f + p)/2 = 3.25,
     * Sbeam = detsize_s - Ybeam = 6.4 - (6.4 - 0.1)/2 = 3.25: the CUSTOM detector with those vectors and
     * Fbeam = Sbeam = 3.25 mm */
    {"-adxv vs CUSTOM with the ADXV vectors", "-misset 10 20 30 -adxv",
     "-misset 10 20 30 -beam_vector 0 0 1 -fdet_vector 1 0 0 -sdet_vector 0 -1 0 -odet_vector 0 0 1 "
     "-polar_vector 1 0 0 -spindle_axis 1 0 0 -Xbeam 3.25 -Ybeam 3.25",
     CLOSE(1e-5)},
    /* any vector flag selects CUSTOM, whose initial vectors are MOSFLM's: each of these is the CUSTOM detector of
     * -spindle_axis 0 0 1 (test_custom_convention places that one against MOSFLM) */
    {"MOSFLM's vectors given as CUSTOM",
     "-misset 10 20 30 -fdet_vector 0 0 1 -sdet_vector 0 -1 0 -odet_vector 1 0 0 -beam_vector 1 0 0 "
     "-polar_vector 0 0 1",
     "-misset 10 20 30 -spindle_axis 0 0 1", SAME_BITS},
    /* the vector flag drops the XDS vectors */
    {"-xds -spindle_axis 0 0 1", "-misset 10 20 30 -xds -spindle_axis 0 0 1", "-misset 10 20 30 -spindle_axis 0 0 1",
     SAME_BITS},
    /* -pix0_vector is ignored except that it selects CUSTOM (spec §3.5 step 7); its warning is checked in
     * test_custom_convention */
    {"-pix0_vector 0.1 0.2 0.3", "-misset 10 20 30 -pix0_vector 0.1 0.2 0.3", "-misset 10 20 30 -spindle_axis 0 0 1",
     SAME_BITS},
    {"-pix0_vector_mm 10 20 30", "-misset 10 20 30 -pix0_vector_mm 10 20 30", "-misset 10 20 30 -spindle_axis 0 0 1",
     SAME_BITS},
    /* dualbragg: the axis flag does not set -twotheta (README, deviations) */
    {"-twotheta_axis 1 0 0", "-misset 10 20 30 -twotheta_axis 1 0 0", "-misset 10 20 30 -spindle_axis 0 0 1",
     SAME_BITS},
    /* spec §3.2 (reference: "WARNING: clipping sample ... with beam"): when the beam is smaller than the sample's y
     * or z size, those sizes are clipped to the beam size before N is derived: a 490 A crystal in a 290 A beam is
     * 5 x 3 x 3 cells */
    {"-xtalsize 0.000049 -beamsize 0.000029 (sample clipped by the beam)", "-xtalsize 0.000049 -beamsize 0.000029",
     "-Na 5 -Nb 3 -Nc 3", SAME_BITS, .base = BASE_NO_N},
    /* the default mosaic seed is -12345678 */
    {"-mosaic_seed 12345678 vs default", "-mosaic 0.5 -mosaic_dom 4 -mosaic_seed 12345678", "-mosaic 0.5 -mosaic_dom 4",
     SAME_BITS},
    /* A1: -mosaic_seed N is stored as -N; 0 and -1 both start at idum = 1, and a positive idum on the generator's
     * first use is replaced by 1: seeds 1, 0 and -7 give the same domains */
    {"-mosaic_seed 0 vs 1", "-mosaic 0.5 -mosaic_dom 4 -mosaic_seed 0", "-mosaic 0.5 -mosaic_dom 4 -mosaic_seed 1",
     SAME_BITS},
    {"-mosaic_seed -7 vs 1", "-mosaic 0.5 -mosaic_dom 4 -mosaic_seed -7", "-mosaic 0.5 -mosaic_dom 4 -mosaic_seed 1",
     SAME_BITS},
    /* a spread without domains: 10 (the log's count is checked in test_mosaic_domain_counts) */
    {"-mosaic 0.5 vs -mosaic 0.5 -mosaic_dom 10", "-mosaic 0.5", "-mosaic 0.5 -mosaic_dom 10", SAME_BITS},
    /* divergence: "everything specified" keeps the given step */
    {"-hdivstep 0.5 vs the same with -hdivsteps 4", "-hdivrange 2 -hdivstep 0.5",
     "-hdivrange 2 -hdivstep 0.5 -hdivsteps 4", SAME_BITS},
    /* phi (spec §3.4), starting at phi = 1 so that the phi == 0 carryover (spec §4) plays no part:
     * steps = ceil(0.5/0.25) = 2: phi = 1, 1.25 */
    {"-osc 0.5 -phistep 0.25 vs -osc 0.5 -phisteps 2", "-phi 1 -osc 0.5 -phistep 0.25", "-phi 1 -osc 0.5 -phisteps 2",
     SAME_BITS},
    /* step only: osc = step, 2 steps: phi = 1, 1.25 */
    {"-phistep 0.25 alone", "-phi 1 -phistep 0.25", "-phi 1 -osc 0.5 -phisteps 2", SAME_BITS},
    /* steps only: 1 degree */
    {"-phisteps 4 alone vs -osc 1 -phisteps 4", "-phi 1 -phisteps 4", "-phi 1 -osc 1 -phisteps 4", SAME_BITS},
    /* range only: 2 steps half the range apart (phi = 1, 1.25) */
    {"-osc 0.5 alone vs -osc 0.5 -phisteps 2", "-phi 1 -osc 0.5", "-phi 1 -osc 0.5 -phisteps 2", SAME_BITS},
    /* a sensor thickness alone: two layers half of it apart (phi's rule for a range alone, not the divergence's),
     * the layers of half the thickness over 2 steps (a given count spans the thickness: step = thick / (steps - 1)) */
    {"-detector_thick 100 alone vs -detector_thick 50 -thicksteps 2", "-detector_thick 100 -detector_abs 50",
     "-detector_thick 50 -detector_abs 50 -thicksteps 2", SAME_BITS},
};

/* Flags that must leave the float image alone. */
static const flag_pair no_effect[] = {
    /* -Xclose/-Yclose do not move a MOSFLM detector (nor change its header: test_beam_centre_mosflm) */
    {"MOSFLM -Xclose/-Yclose", "-misset 10 20 30 -Xclose 2 -Yclose 2.5", "-misset 10 20 30", SAME_BITS},
    /* XDS: the detector origin comes from Fclose/Sclose (the detector centre); -Xclose/-Yclose only set the
     * Xbeam/Ybeam defaults and -Xbeam/-Ybeam only the header */
    {"XDS -Xclose/-Yclose", "-misset 10 20 30 -xds -Xclose 2 -Yclose 2.5", "-misset 10 20 30 -xds", SAME_BITS},
    {"XDS -Xbeam/-Ybeam", "-misset 10 20 30 -xds -Xbeam 1.5 -Ybeam 4", "-misset 10 20 30 -xds", SAME_BITS},
    /* -scale and -adc shape the integer image only */
    {"float image with -scale/-adc", "-scale 3.7 -adc 10.3", "-scale 2", SAME_BITS},
    /* -seed is the noise seed only */
    {"-misset random does not depend on -seed", "-misset random -misset_seed 7 -seed 99",
     "-misset random -misset_seed 7", SAME_BITS},
    /* domains without a spread: 1 domain */
    {"-mosaic_dom 7 without -mosaic", "-mosaic_dom 7", "", SAME_BITS},
    /* -dispsteps alone: the reference's dispersion defaults to 0.0 (not "unset", unlike the divergence ranges), so
     * the sanity check leaves one wavelength. (Spec §3.4 groups dispersion with hdiv/vdiv under "steps only ->
     * range = 1.0"; the reference source declares dispersion=0.0, and README documents 1 step.) */
    {"-dispsteps 3 alone", "-dispsteps 3", "", SAME_BITS},
    /* exposure 0: the flux is not used */
    {"-flux with -exposure 0", "-flux 1e12 -exposure 0", "", SAME_BITS},
    /* emulate, the GPU thread's code run on the host, renders the CPU's image (that it did render on the
     * emulation is checked in test_device_names) */
    {"-device emulate vs cpu", "-misset 10 20 30 -device emulate", "-misset 10 20 30", SAME_BITS},
    /* an absorption length of inf or 0: no absorption and no sensor (thickness 0) */
    {"-detector_abs inf", "-detector_thick 100 -detector_abs inf", "", SAME_BITS},
    {"-detector_absorb 0", "-detector_thick 100 -detector_absorb 0", "", SAME_BITS},
    {"-detector_absorption inf", "-detector_thick 100 -detector_absorption inf", "", SAME_BITS},
    /* -fudge scales hrad^2 in the ROUND shape only, and 1 is its default */
    {"-fudge 1 is the default", "-misset 10 20 30 -round_xtal -fudge 1", "-misset 10 20 30 -round_xtal", SAME_BITS},
    {"-fudge has no effect on the square shape", "-misset 10 20 30 -fudge 4", "-misset 10 20 30", SAME_BITS},
    {"-printout_pixel does not change the image", "-printout_pixel 20 30", "", SAME_BITS},
};

/* Flags that must change the image: without these, a flag the program ignored would pass the rows above. */
static const flag_pair must_change[] = {
    {"-wave 1.3 vs -lambda 1", "-wave 1.3", "", DIFFERENT},
    {"-denzo vs MOSFLM", "-misset 10 20 30 -denzo", "-misset 10 20 30", DIFFERENT},
    /* a different spindle axis matters once phi is not 0 */
    {"-spindle_axis y vs z at phi 5", "-misset 10 20 30 -spindle_axis 0 1 0 -phi 5",
     "-misset 10 20 30 -spindle_axis 0 0 1 -phi 5", DIFFERENT},
    {"-misset_seed 8 vs 7", "-misset random -misset_seed 8", "-misset random -misset_seed 7", DIFFERENT},
    {"-misset random vs none", "-misset random -misset_seed 7", "", DIFFERENT},
    {"-mosaic_seed 2 vs default", "-mosaic 0.5 -mosaic_dom 4 -mosaic_seed 2", "-mosaic 0.5 -mosaic_dom 4", DIFFERENT},
    {"-mosaic_seed 1 vs 2", "-mosaic 0.5 -mosaic_dom 4 -mosaic_seed 1", "-mosaic 0.5 -mosaic_dom 4 -mosaic_seed 2",
     DIFFERENT},
    {"sensor vs none", "-detector_thick 100 -detector_abs 50 -detector_thicksteps 3", "", DIFFERENT},
    {"tophat vs square", "-misset 10 20 30 -tophat_spots", "-misset 10 20 30", DIFFERENT},
    {"-curved_det vs flat", "-curved_det", "", DIFFERENT},
};

static void test_spellings(void **state)
{
    (void)state;
    check_pairs(NULL, spellings, N_ROWS(spellings));
}

static void test_order_rules(void **state)
{
    (void)state;
    check_pairs(NULL, order_rules, N_ROWS(order_rules));
}

static void test_derived_settings(void **state)
{
    (void)state;
    check_pairs(NULL, derived_settings, N_ROWS(derived_settings));
}

static void test_no_effect(void **state)
{
    (void)state;
    check_pairs(NULL, no_effect, N_ROWS(no_effect));
}

static void test_must_change(void **state)
{
    (void)state;
    check_pairs(NULL, must_change, N_ROWS(must_change));
}

/* ------------------------------------------------------------------------------------------------ */
/* beam: -energy */

/* -energy E sets lambda = 12398.42/E A (its exact case and the last-flag rule are table rows) */
static void test_energy(void **state)
{
    (void)state;
    /* a general energy: lambda = 12398.42/10000 A, given to -lambda as the same double */
    char extra[128];
    snprintf(extra, sizeof extra, "-lambda %.17g", 12398.42 / 10000.0);
    result e2 = run_base("-energy 10000");
    result l2 = run_base(extra);
    expect_close(&e2, &l2, 1e-6, "-energy 10000 vs -lambda 1.239842");
    assert_true(fabs(hdr_value(&e2, "WAVELENGTH") - 1.23984) < 1e-9);
    result_free(&e2);
    result_free(&l2);
}

/* ------------------------------------------------------------------------------------------------ */
/* detector size: -detsize, -detsize_f/_s, -detpixels_f/_s/_x/_y */

static void test_detsize_and_detpixels(void **state)
{
    (void)state;
    result base = run_base("");
    assert_int_equal((int)hdr_value(&base, "SIZE1"), 64);
    /* -detsize 6.4 is -detpixels 64 (a spellings row), header included */
    result ds = run_base_n(BASE_NODET, "-detsize 6.4", NP * NP);
    assert_int_equal((int)hdr_value(&ds, "SIZE1"), 64);
    assert_int_equal((int)hdr_value(&ds, "SIZE2"), 64);
    assert_int_equal(ds.smv_len, 512 + 2 * NP * NP);
    /* the pixel count rounds to nearest: 64.4 -> 64, 64.6 -> 65; the detector size itself stays as given, so the
     * MOSFLM default beam centre is (detsize + pixel)/2 */
    result d644 = run_base_n(BASE_NODET, "-detsize 6.44", 64 * 64);
    assert_int_equal((int)hdr_value(&d644, "SIZE1"), 64);
    assert_true(fabs(hdr_value(&d644, "BEAM_CENTER_X") - 3.27) < 1e-9);
    result d646 = run_base_n(BASE_NODET, "-detsize 6.46", 65 * 65);
    assert_int_equal((int)hdr_value(&d646, "SIZE1"), 65);

    /* a 64 (fast) x 32 (slow) detector (its other spellings are table rows) */
    result r1 = run_base_n(BASE_NODET, "-detsize_f 6.4 -detsize_s 3.2", 64 * 32);
    assert_int_equal((int)hdr_value(&r1, "SIZE1"), 64);
    assert_int_equal((int)hdr_value(&r1, "SIZE2"), 32);
    /* MOSFLM defaults: Xbeam = (detsize_s + p)/2 = 1.65 mm, Ybeam = (detsize_f + p)/2 = 3.25 mm, so
     * Fbeam = 3.3 mm (as on the 64x64 detector) and Sbeam = 1.7 mm (1.6 mm = 16 pixels less): pixel (f, s)
     * of the 64x32 image sees what pixel (f, s + 16) of the 64x64 image sees */
    assert_true(fabs(hdr_value(&r1, "BEAM_CENTER_X") - 1.65) < 1e-9);
    assert_true(fabs(hdr_value(&r1, "BEAM_CENTER_Y") - 3.25) < 1e-9);
    expect_close_shifted(r1.img, 64, 32, base.img, 64, 64, 0, 16, 1.0, 1e-5, "64x32 vs 64x64 shifted by 16 rows");
    result_free(&base);
    result_free(&ds);
    result_free(&d644);
    result_free(&d646);
    result_free(&r1);
}

/* ------------------------------------------------------------------------------------------------ */
/* beam centre: -Xbeam/-Ybeam (MOSFLM, XDS), -Xclose/-Yclose, -denzo, -adxv */

static void test_beam_centre_mosflm(void **state)
{
    (void)state;
    /* a misset breaks the cubic pattern's symmetry, so a wrong or swapped shift cannot pass */
    result base = run_base("-misset 10 20 30");
    assert_true(fabs(hdr_value(&base, "BEAM_CENTER_X") - 3.25) < 1e-9);
    /* MOSFLM: Sbeam = Xbeam + p/2 = 2.3 mm (1.0 mm = 10 pixels less than the default 3.3),
     *         Fbeam = Ybeam + p/2 = 2.8 mm (5 pixels less): image(f, s) = default(f + 5, s + 10) */
    result mv = run_base("-misset 10 20 30 -Xbeam 2.25 -Ybeam 2.75");
    assert_true(fabs(hdr_value(&mv, "BEAM_CENTER_X") - 2.25) < 1e-9);
    assert_true(fabs(hdr_value(&mv, "BEAM_CENTER_Y") - 2.75) < 1e-9);
    expect_close_shifted(mv.img, NP, NP, base.img, NP, NP, 5, 10, 1.0, 1e-5, "-Xbeam 2.25 -Ybeam 2.75");
    /* -Xclose/-Yclose do not move a MOSFLM detector (a no_effect row) nor change its header: the beam centre
     * default is (detsize + p)/2, not Xclose */
    result xc = run_base("-misset 10 20 30 -Xclose 2 -Yclose 2.5");
    assert_int_equal(xc.smv_len, base.smv_len);
    assert_memory_equal(xc.smv, base.smv, base.smv_len);
    result_free(&base);
    result_free(&mv);
    result_free(&xc);
}

static void test_beam_centre_xds_and_adxv(void **state)
{
    (void)state;
    /* XDS: -Xclose/-Yclose only set the Xbeam/Ybeam defaults and -Xbeam/-Ybeam only the header (that neither
     * moves the detector is a no_effect row) */
    result xds = run_base("-misset 10 20 30 -xds");
    result xc = run_base("-misset 10 20 30 -xds -Xclose 2 -Yclose 2.5");
    result xb = run_base("-misset 10 20 30 -xds -Xbeam 1.5 -Ybeam 4");
    assert_true(fabs(hdr_value(&xds, "BEAM_CENTER_X") - 3.2) < 1e-9);
    assert_true(fabs(hdr_value(&xc, "BEAM_CENTER_X") - 2.0) < 1e-9);
    assert_true(fabs(hdr_value(&xc, "BEAM_CENTER_Y") - 2.5) < 1e-9);
    assert_true(fabs(hdr_value(&xb, "BEAM_CENTER_X") - 1.5) < 1e-9);
    assert_true(fabs(hdr_value(&xb, "BEAM_CENTER_Y") - 4.0) < 1e-9);
    /* ADXV (the image is a derived_settings row): Xbeam = (detsize_f + p)/2, Ybeam = (detsize_s - p)/2 */
    result adxv = run_base("-misset 10 20 30 -adxv");
    assert_true(fabs(hdr_value(&adxv, "BEAM_CENTER_X") - 3.25) < 1e-9);
    assert_true(fabs(hdr_value(&adxv, "BEAM_CENTER_Y") - 3.15) < 1e-9);
    result_free(&xds);
    result_free(&xc);
    result_free(&xb);
    result_free(&adxv);
}

/* -close_distance: distance = close_distance / ratio with ratio = beam . (rotated odet) (spec §3.5 step 1) */
static void test_close_distance(void **state)
{
    (void)state;
    /* detector rotated 10 degrees about y: odet = (cos 10, 0, -sin 10), ratio = cos 10 (ratio 1 is a row) */
    char extra[256];
    snprintf(extra, sizeof extra, "-misset 10 20 30 -detector_roty 10 -distance %.17g",
             120.0 / cos(10.0 * M_PI / 180.0));
    result cdr = run_base("-misset 10 20 30 -detector_roty 10 -close_distance 120");
    result dr = run_base(extra);
    expect_close(&cdr, &dr, 1e-5, "-close_distance 120 with detector_roty 10");
    assert_true(fabs(hdr_value(&cdr, "CLOSE_DISTANCE") - 120.0) < 1e-3);
    result_free(&cdr);
    result_free(&dr);
}

/* ------------------------------------------------------------------------------------------------ */
/* CUSTOM convention: vector flags, -pix0_vector */

static void test_custom_convention(void **state)
{
    (void)state;
    result mosflm = run_base("-misset 10 20 30");
    /* any vector flag selects CUSTOM, whose initial vectors are MOSFLM's but whose beam centre is Xclose/Yclose =
     * the detector centre (3.2 mm) without MOSFLM's half-pixel shift (3.3 mm): image(f, s) = mosflm(f + 1, s + 1) */
    result sp = run_base("-misset 10 20 30 -spindle_axis 0 0 1");
    expect_close_shifted(sp.img, NP, NP, mosflm.img, NP, NP, 1, 1, 1.0, 1e-5, "CUSTOM vs MOSFLM");
    assert_true(fabs(hdr_value(&sp, "BEAM_CENTER_X") - 3.2) < 1e-9);
    /* -pix0_vector selects CUSTOM and is otherwise ignored (derived_settings rows), which the user is told */
    const char *pix0[] = {"-misset 10 20 30 -pix0_vector 0.1 0.2 0.3", "-misset 10 20 30 -pix0_vector_mm 10 20 30"};
    for (size_t i = 0; i < sizeof pix0 / sizeof *pix0; i++) {
        result r = run_base(pix0[i]);
        if (!strstr(r.log, "warning") || !strstr(r.log, "pix0"))
            fail_msg("%s: expected a warning naming pix0:\n%s", pix0[i], r.log);
        result_free(&r);
    }
    result_free(&mosflm);
    result_free(&sp);
}

/* ------------------------------------------------------------------------------------------------ */
/* integer image, PGM, output switches */

/* A4.3: value = (uint16) floorf((float)(v + 0.5)), v = F*scale + adc clipped to [0, 65535] */
static void check_int_image(const result *r, double scale, double adc)
{
    for (size_t i = 0; i < r->n; i++) {
        double v = (double)r->img[i] * scale + adc;
        if (v > 65535.0) v = 65535.0;
        if (v < 0.0) v = 0.0;
        uint16_t want = (uint16_t)floorf((float)(v + 0.5));
        uint16_t got = smv_pixel(r, i);
        if (got != want)
            fail_msg("int pixel %zu: float %.9g scale %g adc %g: got %u, expected %u", i, r->img[i], scale, adc, got,
                     want);
    }
}

static void test_adc_and_scale(void **state)
{
    (void)state;
    result r = run_base("-scale 3.7 -adc 10.3");
    check_int_image(&r, 3.7, 10.3);
    expect_log_has(&r, "intfile_scale = 3.7");
    result a = run_base("-scale 3.7 -adcoffset 10.3");
    assert_int_equal(a.smv_len, r.smv_len);
    assert_memory_equal(a.smv, r.smv, r.smv_len);
    /* a negative offset: the low values clip to 0 */
    result neg = run_base("-scale 0.5 -adc -5");
    check_int_image(&neg, 0.5, -5.0);
    long zeros = 0;
    for (size_t i = 0; i < neg.n; i++) zeros += smv_pixel(&neg, i) == 0;
    assert_true(zeros > 0);
    /* default offset 40 with an explicit scale; a huge scale clips at 65535 */
    result def = run_base("-scale 2");
    check_int_image(&def, 2.0, 40.0);
    result big = run_base("-scale 1e4");
    check_int_image(&big, 1e4, 40.0);
    long top = 0;
    for (size_t i = 0; i < big.n; i++) top += smv_pixel(&big, i) == 65535;
    assert_true(top > 0);
    result_free(&r);
    result_free(&a);
    result_free(&neg);
    result_free(&def);
    result_free(&big);
}

/* A4.4: PGM = "P5\n%d %d\n# pixels scaled by %g\n255\n" then min(255, (uint8)(F*pgmscale)); -pgmscale turns the
 * PGM back on after -nopgm (A4.5) */
static void test_pgmscale(void **state)
{
    (void)state;
    result r = run_base("-pgmscale 2.5"); /* BASE has -nopgm before this */
    assert_true(file_exists(r.dir, "image.pgm"));
    size_t len;
    char path[4400];
    snprintf(path, sizeof path, "%s/image.pgm", r.dir);
    unsigned char *pgm = harness_read(path, &len);
    assert_non_null(pgm);
    const char *head = "P5\n64 64\n# pixels scaled by 2.5\n255\n";
    size_t hl = strlen(head);
    assert_int_equal(len, hl + NP * NP);
    assert_memory_equal(pgm, head, hl);
    long saturated = 0;
    for (size_t i = 0; i < r.n; i++) {
        double v = (double)r.img[i] * 2.5;
        if (v > 255.0) v = 255.0;
        unsigned char want = (unsigned char)v;
        if (pgm[hl + i] != want)
            fail_msg("PGM pixel %zu: float %.9g: got %u, expected %u", i, r.img[i], pgm[hl + i], want);
        saturated += want == 255;
    }
    assert_true(saturated > 0); /* the max pixel is about 104 photons */
    free(pgm);
    result_free(&r);
}

/* -nopgm / -pgmfile / -pgmimage and -nonoise / -noisefile / -noiseimage set one switch each: the last one wins;
 * the other aliases write the same files as the canonical flags */
static void test_output_switches_and_aliases(void **state)
{
    (void)state;
    static const struct {
        const char *flags;
        int pgm, noise;
    } cases[] = {
        {"-nopgm -nonoise", 0, 0},
        {"-nopgm -pgmfile p.pgm -nonoise -noisefile n.img", 1, 1},
        {"-pgmfile p.pgm -nopgm -noisefile n.img -nonoise", 0, 0},
        {"-nopgm -pgmimage p.pgm -nonoise -noiseimage n.img", 1, 1},
        {"-pgmimage p.pgm -nopgm -noiseimage n.img -nonoise", 0, 0},
    };
    const char *crystal =
        "-cell 100 100 100 90 90 90 -default_F 100 -N 5 -detpixels 64 -oversample 1 -noprogress -seed 1";
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char line[2048];
        snprintf(line, sizeof line, "%s %s", crystal, cases[i].flags);
        result r = run_in(NULL, line, NULL, NULL);
        assert_int_equal(r.status, 0);
        int pgm = file_exists(r.dir, "p.pgm") || file_exists(r.dir, "image.pgm");
        int noise = file_exists(r.dir, "n.img") || file_exists(r.dir, "noiseimage.img");
        if (pgm != cases[i].pgm || noise != cases[i].noise)
            fail_msg("%s: pgm written %d (expected %d), noise written %d (expected %d)", cases[i].flags, pgm,
                     cases[i].pgm, noise, cases[i].noise);
        if (cases[i].pgm) assert_true(file_exists(r.dir, "p.pgm"));
        if (cases[i].noise) assert_true(file_exists(r.dir, "n.img"));
        assert_true(file_exists(r.dir, "floatimage.bin"));
        assert_true(file_exists(r.dir, "intimage.img"));
        result_free(&r);
    }
    /* default names, then the same run through the alias spellings, in one folder */
    result d = run_in(NULL, crystal, NULL, NULL);
    assert_int_equal(d.status, 0);
    const char *defaults[] = {"floatimage.bin", "intimage.img", "noiseimage.img", "image.pgm"};
    for (int i = 0; i < 4; i++)
        if (!file_exists(d.dir, defaults[i])) fail_msg("default output %s not written", defaults[i]);
    char line[2048];
    snprintf(line, sizeof line, "%s -floatimage a.bin -intimage a.img -noiseimage a_n.img -pgmimage a.pgm", crystal);
    result al = run_in(d.dir, line, NULL, NULL);
    assert_int_equal(al.status, 0);
    const char *aliased[] = {"a.bin", "a.img", "a_n.img", "a.pgm"};
    for (int i = 0; i < 4; i++) {
        char p1[4400], p2[4400];
        snprintf(p1, sizeof p1, "%s/%s", d.dir, defaults[i]);
        snprintf(p2, sizeof p2, "%s/%s", d.dir, aliased[i]);
        assert_true(harness_same_file(p1, p2));
    }
    result_free(&al);
    result_free(&d);
}

/* -floatfile64: the float64 image rounds to the float image */
static void test_floatfile64(void **state)
{
    (void)state;
    result r = run_base("-misset 10 20 30 -floatfile64 f64.bin");
    char path[4400];
    size_t len;
    snprintf(path, sizeof path, "%s/f64.bin", r.dir);
    double *d = (double *)harness_read(path, &len);
    assert_non_null(d);
    assert_int_equal(len, sizeof(double) * r.n);
    for (size_t i = 0; i < r.n; i++)
        if ((float)d[i] != r.img[i])
            fail_msg("pixel %zu: float64 %.17g rounds to %.9g, float image %.9g", i, d[i], (float)d[i], r.img[i]);
    free(d);
    result_free(&r);
}

/* ------------------------------------------------------------------------------------------------ */
/* -misset random, -misset_seed (spec §3.9, A1, A2) */

/* ran1 and mosaic_rotation_umat written here from appendix A1/A2 */
static long t_iy = 0;
static long t_iv[32];

static float t_ran1(long *idum)
{
    const long IA = 16807, IM = 2147483647, IQ = 127773, IR = 2836, NTAB = 32, NDIV = 1 + (IM - 1) / NTAB;
    const double AM = 1.0 / IM, RNMX = 1.0 - 1.2e-7;
    long k;
    if (*idum <= 0 || t_iy == 0) {
        *idum = -(*idum) < 1 ? 1 : -(*idum);
        for (long j = NTAB + 7; j >= 0; j--) {
            k = *idum / IQ;
            *idum = IA * (*idum - k * IQ) - IR * k;
            if (*idum < 0) *idum += IM;
            if (j < NTAB) t_iv[j] = *idum;
        }
        t_iy = t_iv[0];
    }
    k = *idum / IQ;
    *idum = IA * (*idum - k * IQ) - IR * k;
    if (*idum < 0) *idum += IM;
    long j = t_iy / NDIV;
    t_iy = t_iv[j];
    t_iv[j] = *idum;
    float temp = (float)(AM * (double)t_iy);
    return (double)temp > RNMX ? (float)RNMX : temp;
}

static void t_umat(float mosaicity, double U[9], long *seed)
{
    double r1 = 2.0 * (double)t_ran1(seed) - 1.0;
    double r2 = 2.0 * (double)t_ran1(seed) - 1.0;
    double r3 = 2.0 * (double)t_ran1(seed) - 1.0;
    double xyrad = sqrt(1.0 - r2 * r2);
    float p = powf((float)(1.0 - r3 * r3), (float)(1.0 / 3.0));
    double rot = (double)(mosaicity * p);
    double v1 = xyrad * sin(M_PI * r1), v2 = xyrad * cos(M_PI * r1), v3 = r2;
    double c = cos(rot), s = sin(rot), w = 1.0 - c;
    U[0] = c + w * v1 * v1;
    U[1] = w * v1 * v2 - s * v3;
    U[2] = w * v1 * v3 + s * v2;
    U[3] = w * v1 * v2 + s * v3;
    U[4] = c + w * v2 * v2;
    U[5] = w * v2 * v3 - s * v1;
    U[6] = w * v1 * v3 - s * v2;
    U[7] = w * v2 * v3 + s * v1;
    U[8] = c + w * v3 * v3;
}

/* the misset angles (degrees, applied x then y then z) of U = Rz Ry Rx */
static void misset_random_angles(long misset_seed, double deg[3])
{
    long seed = -misset_seed;
    t_iy = 0; /* a fresh process: -misset random is the generator's first use */
    double U[9];
    t_umat(90.0f, U, &seed); /* 90 is taken as radians (spec §3.9, quirk §7.13) */
    deg[0] = atan2(U[7], U[8]) * 180.0 / M_PI;
    deg[1] = atan2(-U[6], sqrt(U[7] * U[7] + U[8] * U[8])) * 180.0 / M_PI;
    deg[2] = atan2(U[3], U[0]) * 180.0 / M_PI;
}

static void test_misset_random(void **state)
{
    (void)state;
    /* the orientation itself, from the spec's recipe (flag order, -seed, -misset rand and a second seed are
     * table rows) */
    result a = run_base("-misset random -misset_seed 7");
    result e = run_base("-misset random -misset_seed 8");
    static const long seeds[] = {7, 8};
    const result *imgs[] = {&a, &e};
    for (int i = 0; i < 2; i++) {
        double deg[3];
        misset_random_angles(seeds[i], deg);
        char extra[256];
        snprintf(extra, sizeof extra, "-misset %.17g %.17g %.17g", deg[0], deg[1], deg[2]);
        result m = run_base(extra);
        expect_close(imgs[i], &m, 1e-5, extra);
        result_free(&m);
    }
    result_free(&a);
    result_free(&e);
}

/* ------------------------------------------------------------------------------------------------ */
/* mosaic: the domain count the program settles on (seeds and spellings are table rows) */

static void test_mosaic_domain_counts(void **state)
{
    (void)state;
    /* domains without a spread: 1 domain; a spread without domains: 10 */
    result dom = run_base("-mosaic_dom 7");
    expect_log_has(&dom, " 1 mosaic domains");
    result ten = run_base("-mosaic 0.5");
    expect_log_has(&ten, " 10 mosaic domains");
    result_free(&dom);
    result_free(&ten);
}

/* ------------------------------------------------------------------------------------------------ */
/* sources: divergence and dispersion against explicit source files (spec §3.4, §3.13) */

typedef struct div_case {
    const char *flags;
    double hrange, hstep; /* rad */
    int hsteps;
    double vrange, vstep;
    int vsteps;
    int round;
    int expected_sources;
} div_case;

/* Source file for the divergence grid as the spec builds it: hdiv outer, vdiv inner; v = -10 m beam, rotated
 * about polar (+z) by vdiv, then about vert = beam x polar = -y by hdiv; with beam +x this is
 * (-10 cos v cos h, -10 sin v, -10 cos v sin h). Returns the number of sources. */
static int write_div_sources(const char *dir, const div_case *c)
{
    char path[4400];
    snprintf(path, sizeof path, "%s/src.txt", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    int n = 0;
    for (int i = 0; i < c->hsteps; i++)
        for (int j = 0; j < c->vsteps; j++) {
            double h = c->hstep * i - c->hrange / 2.0;
            double v = c->vstep * j - c->vrange / 2.0;
            double t = (h * h - c->hstep * c->hstep / 4.0 * (1 - c->hsteps % 2)) / c->hrange / c->hrange;
            t += (v * v - c->vstep * c->vstep / 4.0 * (1 - c->vsteps % 2)) / c->vrange / c->vrange;
            if (c->round && t * 4.0 > 1.1) continue; /* NaN (a zero range) cuts nothing */
            fprintf(f, "%.17g %.17g %.17g 1 1e-10\n", -10.0 * cos(v) * cos(h), -10.0 * sin(v), -10.0 * cos(v) * sin(h));
            n++;
        }
    assert_int_equal(fclose(f), 0);
    return n;
}

static void test_divergence(void **state)
{
    (void)state;
    static const div_case cases[] = {
        /* -divergence sets both ranges, -divsteps both counts: step = range/(steps-1); round cut drops the corners */
        {"-divergence 2 -divsteps 3", 2e-3, 1e-3, 3, 2e-3, 1e-3, 3, 1, 5},
        {"-divergence 2 -divsteps 3 -square_div", 2e-3, 1e-3, 3, 2e-3, 1e-3, 3, 0, 9},
        {"-divergence 2 -divsteps 3 -square_div -round_div", 2e-3, 1e-3, 3, 2e-3, 1e-3, 3, 1, 5},
        /* a range only: 2 points, step = range */
        {"-divergence 2", 2e-3, 2e-3, 2, 2e-3, 2e-3, 2, 1, 4},
        /* range and step (mrad): steps = ceil(range/step) */
        {"-hdivrange 2 -hdivstep 0.5 -vdivrange 1 -vdivstep 0.5", 2e-3, 0.5e-3, 4, 1e-3, 0.5e-3, 2, 1, 7},
        {"-hdivrange 2 -hdivstep 0.5 -vdivrange 1 -vdivstep 0.5 -square_div", 2e-3, 0.5e-3, 4, 1e-3, 0.5e-3, 2, 0, 8},
        /* one range only: the round cut is disabled (0/0) */
        {"-hdivrange 2 -hdivstep 0.5", 2e-3, 0.5e-3, 4, 0.0, 0.0, 1, 1, 4},
        /* steps only: range = 1.0 (radians!), step = range/steps */
        {"-divsteps 3", 1.0, 1.0 / 3.0, 3, 1.0, 1.0 / 3.0, 3, 1, 4},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const div_case *c = &cases[i];
        result r = run_base(c->flags);
        char want[64];
        snprintf(want, sizeof want, " %d sources", c->expected_sources);
        expect_log_has(&r, want);
        int n = write_div_sources(r.dir, c);
        assert_int_equal(n, c->expected_sources);
        char line[8192];
        snprintf(line, sizeof line, "%s -sourcefile src.txt -nonoise", BASE);
        result s = run_in(r.dir, line, "s.bin", "s.img");
        assert_int_equal(s.status, 0);
        assert_int_equal(s.n, r.n);
        expect_close(&r, &s, 1e-5, c->flags);
        result_free(&s);
        result_free(&r);
    }
}

/* lambda_k = lambda0 (1 + dispstep k - dispersion/2), dispstep = dispersion/(steps-1); one direction */
static void test_dispersion(void **state)
{
    (void)state;
    static const struct {
        const char *flags;
        double dispersion;
        int steps;
    } cases[] = {
        {"-dispersion 1 -dispsteps 3", 0.01, 3},
        {"-dispersion 1", 0.01, 2}, /* a range only: 2 wavelengths, step = range */
        {"-dispersion 4 -dispsteps 5", 0.04, 5},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        result r = run_base(cases[i].flags);
        char want[64];
        snprintf(want, sizeof want, " %d sources", cases[i].steps);
        expect_log_has(&r, want);
        char path[4400];
        snprintf(path, sizeof path, "%s/src.txt", r.dir);
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        double step = cases[i].dispersion / (cases[i].steps - 1);
        for (int k = 0; k < cases[i].steps; k++)
            fprintf(f, "-10 0 0 1 %.17g\n", 1e-10 * (1.0 + step * k - cases[i].dispersion / 2.0));
        assert_int_equal(fclose(f), 0);
        char line[8192];
        snprintf(line, sizeof line, "%s -sourcefile src.txt -nonoise", BASE);
        result s = run_in(r.dir, line, "s.bin", "s.img");
        assert_int_equal(s.status, 0);
        expect_close(&r, &s, 1e-5, cases[i].flags);
        result_free(&s);
        result_free(&r);
    }
    /* -dispsteps alone leaves one wavelength (the image is a no_effect row, where the reason is) */
    result only = run_base("-dispsteps 3");
    expect_log_has(&only, " 1 sources");
    result_free(&only);
}

/* ------------------------------------------------------------------------------------------------ */
/* fluence from flux, exposure and beam size (spec §3.2) */

static void test_flux_exposure_beamsize(void **state)
{
    (void)state;
    const double re2 = 7.94079248018965e-30;
    result base = run_base(""); /* default fluence: r_e^2 * fluence = 1 */
    result fl = run_base("-flux 1e12 -exposure 2 -beamsize 0.05");
    double fluence = 1e12 * 2.0 / (0.05e-3 * 0.05e-3); /* 8e20 photons/m^2 */
    expect_close_shifted(fl.img, NP, NP, base.img, NP, NP, 0, 0, re2 * fluence, 1e-5, "-flux -exposure -beamsize");
    char extra[128];
    snprintf(extra, sizeof extra, "-fluence %.17g", fluence);
    result fe = run_base(extra);
    expect_close(&fl, &fe, 1e-6, "-flux/-exposure/-beamsize vs -fluence");
    /* default exposure 1 s and beam 0.1 mm */
    result fd = run_base("-flux 1e12");
    expect_close_shifted(fd.img, NP, NP, base.img, NP, NP, 0, 0, re2 * 1e12 / (1e-4 * 1e-4), 1e-5, "-flux alone");
    result_free(&base);
    result_free(&fl);
    result_free(&fe);
    result_free(&fd);
}

/* ------------------------------------------------------------------------------------------------ */
/* phi sampling: -phistep (spec §3.4) */

static void test_phistep(void **state)
{
    (void)state;
    /* what the header and the log say of the sampling (the images are derived_settings rows); start at phi = 1 as
     * those rows do */
    result c = run_base("-phi 1 -phistep 0.25"); /* step only: osc = step */
    assert_true(fabs(hdr_value(&c, "OSC_RANGE") - 0.25) < 1e-9);
    assert_true(fabs(hdr_value(&c, "OSC_START") - 1.0) < 1e-9);
    result d = run_base("-phi 1 -osc 0.5 -phistep 0.2"); /* ceil(2.5) = 3 steps */
    expect_log_has(&d, " 3 phi steps");
    result e = run_base("-phi 1 -phisteps 4"); /* steps only: 1 degree */
    assert_true(fabs(hdr_value(&e, "OSC_RANGE") - 1.0) < 1e-9);
    result_free(&c);
    result_free(&d);
    result_free(&e);
}

/* ------------------------------------------------------------------------------------------------ */
/* -device takes the names db_sim_set_device takes (src/device.h, one table): emulate, the GPU thread's code run on
 * the host, renders the CPU's image */

static void test_device_names(void **state)
{
    (void)state;
    /* it did render on the emulation: a run that fell back to the CPU would pass the no_effect row alone */
    result emu = run_base("-misset 10 20 30 -device emulate");
    expect_log_has(&emu, "device: emulate");
    result_free(&emu);
}

/* ------------------------------------------------------------------------------------------------ */
/* spot shape: -fudge (spec §3.16; the spellings of the shapes and -fudge's defaults are table rows) */

static void test_shape_flags(void **state)
{
    (void)state;
    /* -fudge scales hrad^2 in ROUND: F_latt = N^3 0.7236 sinc3(pi sqrt(hrad^2 fudge)) with hrad^2 ~ N^2, so
     * N = 5 with fudge 4 has the N = 10 shape at 1/8 of its amplitude: image = image(N = 10) / 64 */
    result r5f4 = run_base("-misset 10 20 30 -round_xtal -fudge 4");
    result r10 = run_base("-misset 10 20 30 -round_xtal -N 10");
    expect_close_shifted(r5f4.img, NP, NP, r10.img, NP, NP, 0, 0, 1.0 / 64.0, 1e-5, "-round_xtal -fudge 4");
    result_free(&r5f4);
    result_free(&r10);
}

/* ------------------------------------------------------------------------------------------------ */
/* -interpolate / -nointerpolate (spec §3.6, §3.12, A5) */

/* F(h,k,l) = 100 + 10 l on -8..8: tricubic interpolation of data linear in l is exact, so the interpolated
 * image is the nearest-neighbour image times ((100 + 10 l) / (100 + 10 l0))^2, l0 = ceil(l - 1/2), with
 * l = c . S = 100 A * z / |pos| / 1 A for the MOSFLM pixel position
 * (0.1, 3.3 mm - (s + 1/2) p, (f + 1/2) p - 3.3 mm). */
static void write_linear_hkl(const char *dir)
{
    char path[4400];
    snprintf(path, sizeof path, "%s/lin.hkl", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (int h = -8; h <= 8; h++)
        for (int k = -8; k <= 8; k++)
            for (int l = -8; l <= 8; l++) fprintf(f, "%d %d %d %d\n", h, k, l, 100 + 10 * l);
    assert_int_equal(fclose(f), 0);
}

static void expect_interpolation_ratio(const result *interp, const result *nn, const char *what)
{
    double maxv = max_abs(nn->img, nn->n);
    long checked = 0;
    for (int s = 0; s < NP; s++)
        for (int fp = 0; fp < NP; fp++) {
            double y = 0.0033 - (s + 0.5) * 1e-4, z = (fp + 0.5) * 1e-4 - 0.0033;
            double R = sqrt(0.1 * 0.1 + y * y + z * z);
            double l = 100.0 * z / R;
            double l0 = ceil(l - 0.5);
            if (fabs(l - floor(l) - 0.5) < 1e-6) continue; /* nearest neighbour ambiguous */
            double ratio = (100.0 + 10.0 * l) / (100.0 + 10.0 * l0);
            double want = nn->img[s * NP + fp] * ratio * ratio, got = interp->img[s * NP + fp];
            if (!(fabs(got - want) <= 1e-5 * fabs(want) + 1e-7 * maxv))
                fail_msg("%s: pixel f=%d s=%d (l = %.6f): got %.9g, expected %.9g", what, fp, s, l, got, want);
            checked++;
        }
    assert_true(checked > NP * NP - 10);
}

#define LIN_BASE                                                                                                    \
    "-cell 100 100 100 90 90 90 -hkl lin.hkl -lambda 1 -distance 100 -pixel 0.1 -detpixels 64 -oversample 1 "     \
    "-noprogress -nopgm -seed 1"

static void test_interpolate_flags(void **state)
{
    (void)state;
    char dir[4096];
    make_tmp_dir(dir, sizeof dir);
    write_linear_hkl(dir);
    /* N = 5: off by default, -interpolate forces it on; N = 2: on by default, -nointerpolate forces it off */
    static const flag_pair defaults_and_order[] = {
        {"N=5 default is nearest neighbour", "-N 5 -nointerpolate", "-N 5", SAME_BITS, .base = LIN_BASE},
        /* the last of the two flags wins */
        {"-interpolate after -nointerpolate", "-N 2 -nointerpolate -interpolate", "-N 2", SAME_BITS,
         .base = LIN_BASE},
    };
    check_pairs(dir, defaults_and_order, N_ROWS(defaults_and_order));
    result nn5 = run_base_in(dir, LIN_BASE, "-N 5", NP * NP);
    result in5 = run_base_in(dir, LIN_BASE, "-N 5 -interpolate", NP * NP);
    result in2 = run_base_in(dir, LIN_BASE, "-N 2", NP * NP);
    result nn2 = run_base_in(dir, LIN_BASE, "-N 2 -nointerpolate", NP * NP);
    expect_interpolation_ratio(&in5, &nn5, "N=5 -interpolate");
    expect_interpolation_ratio(&in2, &nn2, "N=2 default vs -nointerpolate");
    result_free(&nn5);
    result_free(&in5);
    result_free(&in2);
    result_free(&nn2);
    remove_tmp_dir(dir);
}

/* -dump/-dumpfile name the structure-factor cache; a run without -hkl reads it back (spec §3.12) */
static void test_dumpfile(void **state)
{
    (void)state;
    char dir[4096], line[8192];
    make_tmp_dir(dir, sizeof dir);
    write_text(dir, "t.hkl", "0 0 0 10\n1 2 3 20\n-1 0 2 30\n");
    const char *geom = "-cell 100 100 100 90 90 90 -N 5 -detpixels 64 -oversample 1 -noprogress -nopgm -nonoise";
    snprintf(line, sizeof line, "%s -hkl t.hkl -dumpfile my.dump", geom);
    result w = run_in(dir, line, "w.bin", "w.img");
    assert_int_equal(w.status, 0);
    assert_false(file_exists(dir, "Fdump.bin"));
    /* header "%d %d %d %d %d %d\n\f" (hmin hmax kmin kmax lmin lmax), then doubles over (range + 1) per axis with
     * range = max - min + 1, l fastest */
    size_t len;
    char path[4400];
    snprintf(path, sizeof path, "%s/my.dump", dir);
    unsigned char *d = harness_read(path, &len);
    assert_non_null(d);
    const char *head = "-1 1 0 2 0 3\n\f";
    size_t hl = strlen(head);
    assert_memory_equal(d, head, hl);
    const int nk = 4, nl = 5; /* (2 - 0 + 1) + 1, (3 - 0 + 1) + 1 */
    assert_int_equal(len, hl + sizeof(double) * 4 * nk * nl);
    double v[80];
    memcpy(v, d + hl, sizeof v);
    int idx000 = (0 + 1) * nk * nl + 0 * nl + 0, idx123 = (1 + 1) * nk * nl + 2 * nl + 3,
        idxm102 = 0 * nk * nl + 0 * nl + 2;
    for (int i = 0; i < 80; i++) {
        double want = i == idx000 ? 10.0 : i == idx123 ? 20.0 : i == idxm102 ? 30.0 : 0.0;
        if (v[i] != want) fail_msg("Fdump entry %d: %g, expected %g", i, v[i], want);
    }
    free(d);
    /* read back without -hkl: the same image; -dump is the same flag */
    snprintf(line, sizeof line, "%s -dumpfile my.dump", geom);
    result r = run_in(dir, line, "r.bin", "r.img");
    assert_int_equal(r.status, 0);
    expect_log_has(&r, "my.dump");
    expect_identical(&r, &w, "image from the cache named by -dumpfile");
    snprintf(line, sizeof line, "%s -hkl t.hkl -dump other.dump", geom);
    result o = run_in(dir, line, "o.bin", "o.img");
    assert_int_equal(o.status, 0);
    char p1[4400], p2[4400];
    snprintf(p1, sizeof p1, "%s/my.dump", dir);
    snprintf(p2, sizeof p2, "%s/other.dump", dir);
    assert_true(harness_same_file(p1, p2));
    result_free(&w);
    result_free(&r);
    result_free(&o);
    remove_tmp_dir(dir);
}

/* -matrix is -mat; a lambda-scaled identity * 0.01 is the 100 A cubic cell in the default orientation */
#define MAT_REST                                                                                                    \
    "-default_F 100 -N 5 -lambda 1 -distance 100 -pixel 0.1 -detpixels 64 -oversample 1 -noprogress -nopgm -seed 1"

static void test_matrix_alias(void **state)
{
    (void)state;
    char dir[4096];
    make_tmp_dir(dir, sizeof dir);
    write_text(dir, "m.mat", "0.01 0 0\n0 0.01 0\n0 0 0.01\n");
    /* whole lines (an empty base), so that the matrix flag comes first as it always has */
    static const flag_pair rows[] = {
        {"-matrix vs -mat", "-matrix m.mat " MAT_REST, "-mat m.mat " MAT_REST, SAME_BITS, .base = ""},
        {"-mat (0.01 I) vs -cell 100", "-mat m.mat " MAT_REST, BASE, CLOSE(1e-5), .base = ""},
    };
    check_pairs(dir, rows, N_ROWS(rows));
    remove_tmp_dir(dir);
}

/* ------------------------------------------------------------------------------------------------ */
/* -img and -mask: the SMV header sets the geometry before the command line (spec §3.1) */

#define CRYSTAL "-cell 100 100 100 90 90 90 -default_F 100 -N 5 -oversample 1 -noprogress -nopgm"
/* a geometry far from every default: 48 x 40 pixels of 0.11 mm, 90 mm, 1.2 A, beam at (2.5, 2.9) mm */
#define IMG_GEOM "-lambda 1.2 -distance 90 -pixel 0.11 -detpixels_f 48 -detpixels_s 40 -Xbeam 2.5 -Ybeam 2.9"

static void test_img_header(void **state)
{
    (void)state;
    char dir[4096];
    make_tmp_dir(dir, sizeof dir);
    result first = run_in(dir, CRYSTAL " " IMG_GEOM " -misset 10 20 30 -nonoise", "first.bin", "first.img");
    assert_int_equal(first.status, 0);
    assert_int_equal(first.n, 48 * 40);
    static const flag_pair header_rules[] = {
        /* the header alone gives the same detector, beam and wavelength (its PHI=0, OSC_RANGE=0 give 2 phi steps
         * at phi = 0, which sum to the same image) */
        {"-img header geometry", "-misset 10 20 30 -img first.img", IMG_GEOM " -misset 10 20 30", SAME_BITS,
         .base = CRYSTAL, .npix = 48 * 40},
        /* the command line wins over the header: -close_distance 120 (the header's CLOSE_DISTANCE is what fixes
         * the distance, since distance = close_distance/ratio) gives the 120 mm detector */
        {"-img + -close_distance 120", "-misset 10 20 30 -img first.img -close_distance 120",
         "-lambda 1.2 -distance 120 -pixel 0.11 -detpixels_f 48 -detpixels_s 40 -Xbeam 2.5 -Ybeam 2.9 -misset 10 20 30",
         SAME_BITS, .base = CRYSTAL, .npix = 48 * 40},
        /* ... while -distance alone cannot override it: the header's CLOSE_DISTANCE=90 still sets distance = 90 */
        {"-img + -distance 120 (header CLOSE_DISTANCE wins)", "-misset 10 20 30 -img first.img -distance 120",
         IMG_GEOM " -misset 10 20 30", SAME_BITS, .base = CRYSTAL, .npix = 48 * 40},
        /* other command-line values win: wavelength, beam centre */
        {"-img + -lambda/-Xbeam/-Ybeam", "-misset 10 20 30 -img first.img -lambda 1 -Xbeam 2 -Ybeam 2.2",
         "-lambda 1 -distance 90 -pixel 0.11 -detpixels_f 48 -detpixels_s 40 -Xbeam 2 -Ybeam 2.2 -misset 10 20 30",
         SAME_BITS, .base = CRYSTAL, .npix = 48 * 40},
    };
    check_pairs(dir, header_rules, N_ROWS(header_rules));
    /* ... and the header written says so */
    result lw = run_base_in(dir, CRYSTAL, "-misset 10 20 30 -img first.img -lambda 1 -Xbeam 2 -Ybeam 2.2", 48 * 40);
    assert_true(fabs(hdr_value(&lw, "BEAM_CENTER_X") - 2.0) < 1e-9);
    assert_true(fabs(hdr_value(&lw, "WAVELENGTH") - 1.0) < 1e-9);
    result_free(&first);
    result_free(&lw);
    remove_tmp_dir(dir);
}

static int in_block(int f, int s)
{
    return (f >= 10 && f <= 19 && s >= 40 && s <= 49) || (f == 0 && s == 0) || (f == 63 && s == 5);
}

static void test_mask(void **state)
{
    (void)state;
    char dir[4096], line[8192];
    make_tmp_dir(dir, sizeof dir);
    /* the reference run, with the beam centre given so that the mask's header cannot move it */
    snprintf(line, sizeof line, "%s -misset 10 20 30 -Xbeam 3.25 -Ybeam 3.25", BASE);
    result ref = run_in(dir, line, "ref.bin", "ref.img");
    assert_int_equal(ref.status, 0);
    /* the mask: that int image (every value >= the adc offset 40) with a block and two pixels set to 0 */
    unsigned char *m = (unsigned char *)malloc(ref.smv_len);
    assert_non_null(m);
    memcpy(m, ref.smv, ref.smv_len);
    for (int s = 0; s < NP; s++)
        for (int f = 0; f < NP; f++) {
            uint16_t v;
            memcpy(&v, m + 512 + 2 * (s * NP + f), 2);
            assert_true(v > 0);
            if (in_block(f, s)) memset(m + 512 + 2 * (s * NP + f), 0, 2);
        }
    char path[4400];
    snprintf(path, sizeof path, "%s/mask.img", dir);
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(m, 1, ref.smv_len, fp), ref.smv_len);
    assert_int_equal(fclose(fp), 0);
    free(m);

    snprintf(line, sizeof line, "%s -misset 10 20 30 -mask mask.img -Xbeam 3.25 -Ybeam 3.25", BASE);
    result mk = run_in(dir, line, "mk.bin", "mk.img");
    assert_int_equal(mk.status, 0);
    assert_int_equal(mk.n, NP * NP);
    long masked = 0;
    for (int s = 0; s < NP; s++)
        for (int f = 0; f < NP; f++) {
            size_t i = (size_t)s * NP + f;
            if (in_block(f, s)) {
                if (mk.img[i] != 0.0f) fail_msg("masked pixel f=%d s=%d is %.9g", f, s, mk.img[i]);
                /* A4.3: masked pixels are still written to the int image: floorf(adc + 0.5) = 40 */
                assert_int_equal(smv_pixel(&mk, i), 40);
                masked++;
            } else if (memcmp(&mk.img[i], &ref.img[i], sizeof(float)) != 0) {
                fail_msg("unmasked pixel f=%d s=%d: %.9g, without the mask %.9g", f, s, mk.img[i], ref.img[i]);
            }
        }
    assert_int_equal(masked, 102);
    /* without -Xbeam/-Ybeam the mask's header sets them, flipping Y: Ybeam = detsize_s - 3.25 = 3.15 mm, so in
     * MOSFLM Fbeam = Ybeam + p/2 = 3.2 mm, one pixel less than 3.3: image(f, s) = ref(f + 1, s) */
    snprintf(line, sizeof line, "%s -misset 10 20 30 -mask mask.img", BASE);
    result fl = run_in(dir, line, "fl.bin", "fl.img");
    assert_int_equal(fl.status, 0);
    assert_true(fabs(hdr_value(&fl, "BEAM_CENTER_Y") - 3.15) < 1e-9);
    assert_true(fabs(hdr_value(&fl, "BEAM_CENTER_X") - 3.25) < 1e-9);
    double atol = 1e-6 * max_abs(ref.img, ref.n);
    for (int s = 0; s < NP; s++)
        for (int f = 0; f + 1 < NP; f++) {
            size_t i = (size_t)s * NP + f;
            if (in_block(f, s)) {
                assert_true(fl.img[i] == 0.0f);
                continue;
            }
            double want = ref.img[i + 1];
            if (!(fabs(fl.img[i] - want) <= 1e-5 * fabs(want) + atol))
                fail_msg("-mask Y flip: pixel f=%d s=%d: %.9g, expected ref(f+1, s) = %.9g", f, s, fl.img[i], want);
        }
    result_free(&ref);
    result_free(&mk);
    result_free(&fl);
    remove_tmp_dir(dir);
}

/* ------------------------------------------------------------------------------------------------ */
/* -printout_pixel / -printout (spec §3.17, golden a_cubic trace) */

static void test_printout_pixel(void **state)
{
    (void)state;
    result base = run_base("");
    /* the image stays the same (a no_effect row) */
    result r = run_base("-printout_pixel 20 30");
    const char *p = strstr(r.log, "  20   30 : stol = ");
    if (!p) fail_msg("no \"  20   30 : stol = \" block in:\n%s", r.log);
    /* exactly one block */
    assert_null(strstr(p + strlen("  20   30 : stol = "), " : stol = "));
    /* the values, recomputed here: pixel (20, 30) of the MOSFLM detector sits at
     * (0.1, 3.3 mm - 30.5 p, 20.5 p - 3.3 mm) = (0.1, 0.00025, -0.00125) m */
    double pos[3] = {0.1, 0.0033 - 30.5e-4, 20.5e-4 - 0.0033};
    double R = sqrt(pos[0] * pos[0] + pos[1] * pos[1] + pos[2] * pos[2]);
    double d[3] = {pos[0] / R, pos[1] / R, pos[2] / R};
    double S[3] = {(d[0] - 1.0) / 1e-10, d[1] / 1e-10, d[2] / 1e-10};
    double stol = 0.5 * sqrt(S[0] * S[0] + S[1] * S[1] + S[2] * S[2]);
    double stol_p, stolA_p, at[3], hkl[3];
    assert_int_equal(sscanf(p, "  20   30 : stol = %lg or %lg", &stol_p, &stolA_p), 2);
    assert_true(fabs(stol_p - stol) <= 1e-5 * stol);
    assert_true(fabs(stolA_p - stol * 1e-10) <= 1e-5 * stol * 1e-10);
    const char *q = strstr(p, "\nat ");
    assert_non_null(q);
    assert_int_equal(sscanf(q, "\nat %lg %lg %lg", &at[0], &at[1], &at[2]), 3);
    for (int i = 0; i < 3; i++) assert_true(fabs(at[i] - pos[i]) <= 1e-9);
    q = strstr(p, "hkl= ");
    assert_non_null(q);
    assert_int_equal(sscanf(q, "hkl= %lf %lf %lf", &hkl[0], &hkl[1], &hkl[2]), 3);
    for (int i = 0; i < 3; i++) assert_true(fabs(hkl[i] - 1e-8 * S[i]) <= 2e-6);
    /* K = 0: polar = (1 + cos^2 2theta)/2 with cos 2theta = d . beam; omega = p^2/R^2 * close_distance/R */
    double polar = 0.5 * (1.0 + d[0] * d[0]), omega = 1e-8 / (R * R) * 0.1 / R, v;
    q = strstr(p, "\npolar");
    assert_non_null(q);
    assert_int_equal(sscanf(q, "\npolar %lg", &v), 1);
    assert_true(fabs(v - polar) <= 1e-9);
    q = strstr(p, "\nomega");
    assert_non_null(q);
    assert_int_equal(sscanf(q, "\nomega %lg", &v), 1);
    assert_true(fabs(v - omega) <= 1e-9 * omega);
    /* the printed pixel value is the float image's, at %15.10g */
    q = strstr(p, "\npixel");
    assert_non_null(q);
    char tok[64], want[64];
    assert_int_equal(sscanf(q, "\npixel %63s", tok), 1);
    snprintf(want, sizeof want, "%.10g", (double)base.img[30 * NP + 20]);
    assert_string_equal(tok, want);
    /* -printout: one block per rendered pixel */
    result all = run_base("-printout -roi 3 6 10 11");
    long blocks = 0;
    for (const char *t = all.log; (t = strstr(t, " : stol = ")) != NULL; t++) blocks++;
    assert_int_equal(blocks, 4 * 2);
    result_free(&base);
    result_free(&r);
    result_free(&all);
}

/* ------------------------------------------------------------------------------------------------ */
/* issue 18: values beyond what the arithmetic holds, tables beyond the memory limit and a -roi beyond the
 * detector are refused before any work: a message naming the flag and the value, a non-zero exit status (not a
 * signal), and no image written */

static void test_refused_before_work(void **state)
{
    (void)state;
    static const struct {
        const char *extra, *limit_gib; /* DUALBRAGG_MAX_MEMORY_GIB, or NULL: the machine's */
        const char *words[3];
    } cases[] = {
        {"-N 1e300", NULL, {"-N: must be from 1 to 1e+09 unit cells", "got 1e+300", NULL}},
        {"-Nb 2e9", NULL, {"-Nb: must be from 1 to 1e+09 unit cells", "got 2e+09", NULL}},
        {"-mosaic 1e300 -mosaic_dom 2", NULL, {"-mosaic: must be a spread of at most 360 degrees", "got 1e+300", NULL}},
        {"-mosaic 1 -mosaic_dom 100000000", "1", {"100000000 mosaic domains (-mosaic_dom)", "GiB of memory", "1 GiB"}},
        {"-phisteps 100000000 -osc 1", "1",
         {"100000000 phi steps (-phisteps", "GiB of memory", "DUALBRAGG_MAX_MEMORY_GIB"}},
        {"-mosaic 1 -mosaic_dom 2000000000 -phisteps 100000000 -osc 1", NULL,
         {"-mosaic_dom", "-phisteps", "GiB of memory"}},
        {"-xtal_size 1e300", NULL, {"unit cells along a (-Na, or -xtal_size", "at most 1e+09", NULL}},
        {"-cell 1e12 1e12 1e12 90 90 90", NULL, {"the cell edge of 1e+12 A", "Miller indices", "-cell"}},
        {"-energy 1e300", NULL, {"Miller indices", "-energy", NULL}},
        {"-dispersion 300 -dispsteps 3", NULL, {"wavelength -0.5 A", "-dispersion", NULL}},
        {"-roi 0 64 0 10", NULL,
         {"-roi 0 64 0 10 reaches beyond the 64 x 64 detector", "0 <= xmin <= xmax <= 63", NULL}},
        {"-roi 10 20 60 64", NULL, {"-roi 10 20 60 64 reaches beyond", "0 <= ymin <= ymax <= 63", NULL}},
        {"-roi 70 80 0 10", NULL, {"-roi 70 80 0 10 selects no pixel of the 64 x 64 detector", NULL, NULL}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (cases[i].limit_gib) setenv("DUALBRAGG_MAX_MEMORY_GIB", cases[i].limit_gib, 1);
        else unsetenv("DUALBRAGG_MAX_MEMORY_GIB");
        char line[1024];
        snprintf(line, sizeof line, "%s %s -nonoise", BASE, cases[i].extra);
        result r = run_in(NULL, line, "f.bin", "i.img");
        unsetenv("DUALBRAGG_MAX_MEMORY_GIB");
        if (r.status != 1 && r.status != 2)
            fail_msg("%s: exit status %d (expected 1 or 2):\n%s", cases[i].extra, r.status, r.log);
        for (int w = 0; w < 3 && cases[i].words[w]; w++)
            if (!strstr(r.log, cases[i].words[w]))
                fail_msg("%s: '%s' not in:\n%s", cases[i].extra, cases[i].words[w], r.log);
        assert_null(r.img);
        assert_null(r.smv);
        result_free(&r);
    }
}

/* ------------------------------------------------------------------------------------------------ */
/* flags accepted with a warning and no effect; spellings with no effect on the image */

static void test_accepted_without_effect(void **state)
{
    (void)state;
    char dir[4096];
    make_tmp_dir(dir, sizeof dir);
    write_text(dir, "s.txt", "0.1 10\n0.2 5\n");
    static const struct {
        const char *flags, *warn; /* warn: text the warning must contain, NULL for no warning check */
    } cases[] = {
        {"-stol s.txt", "-stol"},
        {"-4stol s.txt", "-4stol"},
        {"-Q s.txt", "-Q"},
        {"-stolout out.stol", "-stolout"},
        {"-density 1.2", "-density"},
        {"-sample_den 1.2", "-sample_den"},
        {"-sample_density 1.2", "-sample_density"},
        {"-MW 20000", "-MW"},
        {"-molec 3", "-molec"},
        {"-molecules 3", "-molecules"},
        {"-coherent", "-coherent"},
        {"-progress", NULL},
        {"-progress -noprogress", NULL},
    };
    /* no effect: each case against the base line, in the folder that holds s.txt */
    flag_pair rows[N_ROWS(cases)];
    for (size_t i = 0; i < N_ROWS(cases); i++)
        rows[i] = (flag_pair){cases[i].flags, cases[i].flags, "", SAME_BITS};
    check_pairs(dir, rows, N_ROWS(rows));
    /* ... and the user is told */
    for (size_t i = 0; i < N_ROWS(cases); i++) {
        if (!cases[i].warn) continue;
        result r = run_base_in(dir, BASE, cases[i].flags, NP * NP);
        const char *w = strstr(r.log, "warning");
        if (!w || !strstr(w, cases[i].warn))
            fail_msg("%s: expected a warning naming %s:\n%s", cases[i].flags, cases[i].warn, r.log);
        result_free(&r);
    }
    /* -curved_det (whose spelling and effect are table rows) also works as the last argument (dualbragg); this
     * line is run as written, since a table's runner appends flags after the row's */
    result c1 = run_base("-curved_det");
    char line[8192];
    snprintf(line, sizeof line, "%s -nonoise -floatfile last.bin -curved_det", BASE);
    result c3 = run_in(dir, line, "last.bin", NULL);
    assert_int_equal(c3.status, 0);
    expect_identical(&c3, &c1, "-curved_det as the last argument");
    result_free(&c1);
    result_free(&c3);
    remove_tmp_dir(dir);
}

/* ------------------------------------------------------------------------------------------------ */
/* -grad_F FILE: the structure-factor Jacobian of the rendered pixels as text (issue 19). The file must hold, line
 * for line, the library's db_sim_run_selected_F of the same command line: a header naming the columns, then one
 * line "fpixel spixel h k l dI/dF" per stored entry, rows in the selection's order and columns ascending, each
 * value exactly (%.17g reads back to the same double). */

/* Compares dir/name with db_sim_run_selected_F of `line` (run here, from dir's P1.hkl by its full path). Returns
 * the entries compared. */
static long expect_grad_F_file(const char *dir, const char *name, const char *line)
{
    harness_args a = {0};
    harness_split(&a, line);
    char hkl[4400], boxes[4400];
    snprintf(hkl, sizeof hkl, "%s/P1.hkl", dir);
    snprintf(boxes, sizeof boxes, "%s/boxes.txt", dir);
    harness_set(&a, "-hkl", hkl);
    for (int i = 0; i + 1 < a.argc; i++)
        if (strcmp(a.argv[i], "-boxes") == 0) harness_set(&a, "-boxes", boxes);
    db_error err;
    db_config *cfg = db_config_create();
    assert_non_null(cfg);
    if (db_config_parse(cfg, a.argc, (const char *const *)a.argv, &err)) fail_msg("%s: %s", line, err.message);
    harness_args_free(&a);
    db_sim *sim = NULL;
    if (db_sim_create(&sim, cfg, NULL, &err)) fail_msg("%s: %s", line, err.message);
    long m = db_sim_selected_count(sim), nF = db_sim_structure_factor_count(sim);
    double *values = (double *)malloc((size_t)m * sizeof(double));
    long *pix = (long *)malloc((size_t)m * sizeof(long));
    int *hkls = (int *)malloc((size_t)nF * 3 * sizeof(int));
    assert_true(values && pix && hkls);
    db_csr J = {0};
    if (db_sim_run_selected_F(sim, NULL, 0, values, NULL, &J, &err)) fail_msg("%s: %s", line, err.message);
    assert_int_equal(db_sim_selected_pixel_list(sim, pix, m, &err), m);
    assert_int_equal(db_sim_get_structure_factors(sim, hkls, NULL, nF, &err), nF);
    int fpixels, spixels;
    db_sim_size(sim, &fpixels, &spixels);

    char *text = read_text(dir, name);
    char *save = NULL, *ln = strtok_r(text, "\n", &save);
    if (!ln || ln[0] != '#' || !strstr(ln, "fpixel spixel h k l dI/dF"))
        fail_msg("%s: the first line is not the header naming the columns: '%s'", name, ln ? ln : "(empty file)");
    long e = 0;
    for (long r = 0; r < J.rows; r++)
        for (long k = J.row_ptr[r]; k < J.row_ptr[r + 1]; k++, e++) {
            ln = strtok_r(NULL, "\n", &save);
            if (!ln) fail_msg("%s ends after %ld entries; the library has %ld", name, e, J.nnz);
            int f, sp, h, kk, l, used = 0;
            char num[64];
            if (sscanf(ln, "%d %d %d %d %d %63s%n", &f, &sp, &h, &kk, &l, num, &used) != 6 || ln[used] != '\0')
                fail_msg("%s line %ld: '%s' is not 'fpixel spixel h k l dI/dF'", name, e + 2, ln);
            char *end;
            double v = strtod(num, &end);
            const int *x = hkls + 3 * J.col[k];
            if (*end || f != (int)(pix[r] % fpixels) || sp != (int)(pix[r] / fpixels) || h != x[0] || kk != x[1] ||
                l != x[2] || memcmp(&v, &J.val[k], sizeof v) != 0)
                fail_msg("%s line %ld: '%s', expected %ld %ld %d %d %d %.17g", name, e + 2, ln, pix[r] % fpixels,
                         pix[r] / fpixels, x[0], x[1], x[2], J.val[k]);
        }
    ln = strtok_r(NULL, "\n", &save);
    if (ln) fail_msg("%s has more lines than the library's %ld entries: '%s'", name, J.nnz, ln);
    long nnz = J.nnz;
    free(text);
    free(values);
    free(pix);
    free(hkls);
    db_csr_free(&J);
    db_sim_destroy(sim);
    db_config_destroy(cfg);
    return nnz;
}

static void test_grad_F(void **state)
{
    (void)state;
    char dir[4096], src[4200], dst[4400], line[8192];
    make_tmp_dir(dir, sizeof dir);
    snprintf(src, sizeof src, "%s/b_triclinic/P1.hkl", DB_GOLDEN_DIR);
    snprintf(dst, sizeof dst, "%s/P1.hkl", dir);
    assert_int_equal(harness_copy(src, dst), 0);
    write_text(dir, "boxes.txt", "40 47 10 13\n5 9 50 52\n44 46 12 20\n");
    const char *crystal = "-cell 70 80 90 75 85 95 -misset 10 20 30 -hkl P1.hkl -Na 4 -Nb 5 -Nc 6 -lambda 1 "
                          "-distance 100 -pixel 0.1 -detpixels 64 -oversample 1 -noprogress -nopgm -nonoise -seed 1";
    static const char *const selections[] = {"-roi 20 35 24 31", "-boxes boxes.txt", "-roi 0 63 0 63 -N 2"};
    for (size_t i = 0; i < sizeof selections / sizeof *selections; i++) {
        snprintf(line, sizeof line, "%s %s", crystal, selections[i]);
        char run[8400];
        snprintf(run, sizeof run, "%s -grad_F fj.txt", line);
        result r = run_in(dir, run, "f.bin", NULL);
        if (r.status != 0) fail_msg("%s: exit %d:\n%s", run, r.status, r.log);
        long nnz = expect_grad_F_file(dir, "fj.txt", line);
        if (nnz <= 0) fail_msg("%s: no nonzero entry (the test needs some)", run);
        char said[128];
        snprintf(said, sizeof said, "%ld nonzeros", nnz);
        expect_log_has(&r, said);
        expect_log_has(&r, "writing fj.txt");
        result_free(&r);
    }
    remove_tmp_dir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spellings),
        cmocka_unit_test(test_order_rules),
        cmocka_unit_test(test_derived_settings),
        cmocka_unit_test(test_no_effect),
        cmocka_unit_test(test_must_change),
        cmocka_unit_test(test_energy),
        cmocka_unit_test(test_detsize_and_detpixels),
        cmocka_unit_test(test_beam_centre_mosflm),
        cmocka_unit_test(test_beam_centre_xds_and_adxv),
        cmocka_unit_test(test_close_distance),
        cmocka_unit_test(test_custom_convention),
        cmocka_unit_test(test_adc_and_scale),
        cmocka_unit_test(test_pgmscale),
        cmocka_unit_test(test_output_switches_and_aliases),
        cmocka_unit_test(test_floatfile64),
        cmocka_unit_test(test_misset_random),
        cmocka_unit_test(test_mosaic_domain_counts),
        cmocka_unit_test(test_divergence),
        cmocka_unit_test(test_dispersion),
        cmocka_unit_test(test_flux_exposure_beamsize),
        cmocka_unit_test(test_phistep),
        cmocka_unit_test(test_device_names),
        cmocka_unit_test(test_shape_flags),
        cmocka_unit_test(test_interpolate_flags),
        cmocka_unit_test(test_dumpfile),
        cmocka_unit_test(test_matrix_alias),
        cmocka_unit_test(test_img_header),
        cmocka_unit_test(test_mask),
        cmocka_unit_test(test_printout_pixel),
        cmocka_unit_test(test_accepted_without_effect),
        cmocka_unit_test(test_refused_before_work),
        cmocka_unit_test(test_grad_F),
    };
    return cmocka_run_group_tests_name("flags no golden case uses", tests, NULL, remove_all_tmp_dirs);
}
