/* test_ensemble.c: ensemble refinement over stills sharing structure factors (issue 20; refine/ensemble.h,
 * dualbragg-ensemble). Three small noise-free stills (dualbragg -floatfile plus a constant background of 2 photons)
 * of b_triclinic's P1.hkl cut to |h|,|k|,|l| <= 8, with different missets; the stills file starts them off by up
 * to 0.05 degrees, and the starting F is the truth times 1.3:
 *  - the API recovers every misset to 1e-6 degrees, the fluences of stills 1 and 2 and every refined F to 1e-6
 *    relative (still 0's fluence held by the scale rule), the background's level to 1e-6;
 *  - the program: progress lines, -hklout 'h k l F sigF' lines for every listed reflection (nan for unrefined),
 *    read back by dualbragg's -hkl; -json with its key fields;
 *  - errors: a missing image names its line, an unknown -refine_still name, a parameter without effect, nothing
 *    to refine, -refine_F without a table, an output over an input (and no output written on failure);
 *  - determinism: two runs write the same bytes (the JSON up to its "seconds");
 *  - -refine_shared: three more stills rendered at distance 100.3 mm and xbeam 6.5 mm, fitted from the shared
 *    flags' 100 mm and 6.45 mm (missets started off as above): the API (with per-still fluences, true F) and the
 *    program (with -refine_F from 1.3 x F) recover both to 1e-8 relative with finite sigmas > 0, the JSON's
 *    "shared" object holds them and -hklout only F; each refusal names -refine_shared and the parameter (and the
 *    still's line where a line gives its own value), exit 2; under MPI the same bytes for 1 to 4 ranks (4 > the
 *    3 stills: a rank without a still);
 *  - -prior_still: refusals by name; a tight prior holds the missets at their starts with sigma below its sd, the
 *    JSON names it; a wide one leaves the noise-free optimum where it was. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "dualbragg.h"
#include "ensemble.h"
#include "cli_harness.h"
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>

#define NSTILLS 3
#define MODEL "-cell 70 80 90 75 85 95 -N 5 -lambda 1 -distance 100 -pixel 0.1 -detpixels 128 -oversample 1 " \
              "-fluence 5e28"
#define BACKGROUND 2.0
#define FSCALE 1.3

static const double MISSET[NSTILLS][3] = {{10, 20, 30}, {17, 31, 43}, {24, 42, 56}};
static const double START[NSTILLS][3] = {{10.05, 19.95, 30.02}, {17.0, 31.05, 42.97}, {23.96, 42.0, 56.04}};
static const double FLUENCE_START[NSTILLS] = {5e28, 5.5e28, 4.6e28};

/* -refine_shared's stills: rendered at GEOMETRY_TRUE, fitted from the shared command line's GEOMETRY_START */
#define GEOMETRY_TRUE "-distance 100.3 -Xbeam 6.5"
#define GEOMETRY_START "-Xbeam 6.45"
static const double DISTANCE_TRUE = 100.3, XBEAM_TRUE = 6.5;

static char dir[4096];
static int ntrue;
static int (*true_hkl)[3];
static double *true_F;

static void path_in(char *out, size_t n, const char *name) { snprintf(out, n, "%s/%s", dir, name); }

static void write_text(const char *name, const char *text)
{
    char p[4200];
    path_in(p, sizeof p, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

/* The NSTILLS stills at the true missets, rendered noise-free with MODEL plus geometry (flags, or "") into
 * <render>N.bin, plus BACKGROUND, written as <obs>N.bin, and listed with their start missets and fluences in list
 * (after the comment line). 0, or -1 on a failure. */
static int render_stills(const char *geometry, char render, char obs, const char *comment, const char *list)
{
    char p[4200], text[2048];
    snprintf(text, sizeof text, "%s", comment);
    for (int s = 0; s < NSTILLS; s++) {
        harness_args a = {0};
        char extra[512];
        snprintf(extra, sizeof extra, MODEL "%s -hkl small.hkl -misset %g %g %g -floatfile %c%d.bin -nopgm -nonoise "
                 "-noprogress", geometry, MISSET[s][0], MISSET[s][1], MISSET[s][2], render, s);
        harness_split(&a, extra);
        int rc = harness_run(DB_CLI_PATH, dir, &a, 0);
        harness_args_free(&a);
        if (rc) return -1;
        char name[64];
        snprintf(name, sizeof name, "%c%d.bin", render, s);
        path_in(p, sizeof p, name);
        size_t len;
        unsigned char *b = harness_read(p, &len);
        if (!b || len != 128 * 128 * 4) return -1;
        float *v = (float *)b;
        for (size_t i = 0; i < len / 4; i++) v[i] += (float)BACKGROUND; /* plus a constant background */
        snprintf(name, sizeof name, "%c%d.bin", obs, s);
        path_in(p, sizeof p, name);
        FILE *o = fopen(p, "wb");
        if (!o || fwrite(b, 1, len, o) != len || fclose(o)) return -1;
        free(b);
        size_t at = strlen(text);
        snprintf(text + at, sizeof text - at, "%c%d.bin -misset %.17g %.17g %.17g -fluence %.17g\n", obs, s,
                 START[s][0], START[s][1], START[s][2], FLUENCE_START[s]);
    }
    write_text(list, text);
    return 0;
}

/* The stills, once: small.hkl (the truth), start.hkl (the truth times FSCALE), o0..o2.bin, stills.txt. */
static int setup(void **state)
{
    (void)state;
    if (harness_mkdtemp(dir, sizeof dir)) return -1;
    char p[4200];
    snprintf(p, sizeof p, "%s/b_triclinic/P1.hkl", DB_GOLDEN_DIR);
    FILE *in = fopen(p, "r");
    if (!in) return -1;
    path_in(p, sizeof p, "small.hkl");
    FILE *o1 = fopen(p, "w");
    path_in(p, sizeof p, "start.hkl");
    FILE *o2 = fopen(p, "w");
    if (!o1 || !o2) return -1;
    true_hkl = malloc(sizeof *true_hkl * 20000);
    true_F = malloc(sizeof *true_F * 20000);
    int h, k, l;
    double F;
    while (fscanf(in, "%d %d %d %lf", &h, &k, &l, &F) == 4)
        if (abs(h) <= 8 && abs(k) <= 8 && abs(l) <= 8) {
            fprintf(o1, "%d %d %d %.17g\n", h, k, l, F);
            fprintf(o2, "%d %d %d %.17g\n", h, k, l, F * FSCALE);
            true_hkl[ntrue][0] = h, true_hkl[ntrue][1] = k, true_hkl[ntrue][2] = l;
            true_F[ntrue++] = F;
        }
    fclose(in);
    if (fclose(o1) || fclose(o2)) return -1;
    if (render_stills("", 's', 'o', "# three noise-free stills\n", "stills.txt")) return -1;
    /* -refine_shared's stills: the same missets and background, another distance and beam centre */
    if (render_stills(" " GEOMETRY_TRUE, 't', 'g', "# three noise-free stills at distance 100.3 mm, xbeam 6.5 mm\n",
                      "gstills.txt"))
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (getenv("DB_KEEP_TEST_DIR")) fprintf(stderr, "test_ensemble: kept %s (DB_KEEP_TEST_DIR)\n", dir);
    else harness_rmtree(dir);
    free(true_hkl);
    free(true_F);
    return 0;
}

static double truth_of(const int *hkl)
{
    for (int j = 0; j < ntrue; j++)
        if (true_hkl[j][0] == hkl[0] && true_hkl[j][1] == hkl[1] && true_hkl[j][2] == hkl[2]) return true_F[j];
    return NAN;
}

static void run_api(const char *refine, int refine_F, db_ensemble_result *r, int expect_rc, const char *msg)
{
    char p[4200];
    path_in(p, sizeof p, "stills.txt");
    db_stills st;
    db_error err;
    assert_int_equal(db_stills_read(p, &st, &err), DB_OK);
    harness_args a = {0};
    /* -spots and -spot_size are the program's: the API takes them as options */
    char hp[4200];
    path_in(hp, sizeof hp, "start.hkl");
    harness_split(&a, MODEL);
    harness_push(&a, "-hkl");
    harness_push(&a, hp);
    db_ensemble_options o;
    db_ensemble_default_options(&o);
    o.spots = 8;
    o.spot_size = 9;
    int rc = db_ensemble_refine(a.argc, (const char *const *)a.argv, &st, refine, refine_F, &o, r, &err);
    test_context("rc %d: %s", rc, rc ? err.message : "");
    assert_int_equal(rc, expect_rc);
    if (msg) assert_non_null(strstr(err.message, msg));
    test_context("%s", "");
    harness_args_free(&a);
    db_stills_free(&st);
}

/* (a) noise-free: the truth, from wrong missets, fluences and F scaled by 1.3 */
static void test_api_recovers_truth(void **state)
{
    (void)state;
    db_ensemble_result r;
    run_api("misset_x,misset_y,misset_z,fluence", 1, &r, DB_OK, NULL);
    assert_int_equal(r.nstills, NSTILLS);
    assert_int_equal(r.nparams, 4);
    assert_int_equal(r.fluence_fixed_still, 0);
    assert_int_equal(r.nF, ntrue);
    assert_true(r.nF_refined >= 5);
    assert_true(r.stop_reason == DB_STOP_STEP || r.stop_reason == DB_STOP_COST || r.stop_reason == DB_STOP_EXACT);
    assert_true(r.cost < 1e-6 * r.start_cost);
    for (int s = 0; s < NSTILLS; s++) {
        const db_ensemble_still_result *sr = &r.stills[s];
        assert_int_equal(sr->line, s + 2);
        for (int k = 0; k < 3; k++) {
            test_context("still %d misset %d: %.12g (true %g)", s, k, sr->values[k], MISSET[s][k]);
            assert_close(sr->values[k], MISSET[s][k], 0, 1e-6);
            assert_true(sr->sigma[k] > 0);
            assert_int_equal(sr->fixed[k], 0);
        }
        test_context("still %d fluence %.12g", s, sr->values[3]);
        if (s == 0) { /* the scale rule: held at its given value */
            assert_int_equal(sr->fixed[3], 1);
            assert_true(isnan(sr->sigma[3]));
            assert_true(sr->values[3] == FLUENCE_START[0]);
        } else {
            assert_int_equal(sr->fixed[3], 0);
            /* F is 1.3 too large at the start; still 0's fluence 5e28 is the truth, so every fluence goes to 5e28 */
            assert_close(sr->values[3], 5e28, 1e-6, 0);
        }
        assert_true(sr->nboxes >= 1);
        for (int e = 0; e < sr->nboxes; e++)
            if (!isnan(sr->background[3 * e])) assert_close(sr->background[3 * e], BACKGROUND, 1e-6, 0);
    }
    long refined = 0;
    for (long j = 0; j < r.nF; j++) {
        const double t = truth_of(r.hkl + 3 * j);
        test_context("F %d %d %d = %.12g (true %.12g, start %.12g)", r.hkl[3 * j], r.hkl[3 * j + 1], r.hkl[3 * j + 2],
                     r.F[j], t, r.F_start[j]);
        assert_close(r.F_start[j], t * FSCALE, 1e-15, 0);
        if (r.F_refined[j]) {
            refined++;
            assert_close(r.F[j], t, 1e-6, 0);
        } else {
            assert_true(r.F[j] == r.F_start[j]);
            assert_true(isnan(r.sigma_F[j]));
        }
    }
    test_context("%s", "");
    assert_int_equal(refined, r.nF_refined);
    db_ensemble_result_free(&r);
}

/* the misset alone at the true F: the same truth; and the API's refusals */
static void test_api_refusals(void **state)
{
    (void)state;
    db_ensemble_result r;
    run_api("misset_q", 0, &r, DB_ERR_ARGUMENT, "misset_q");
    run_api("", 0, &r, DB_ERR_ARGUMENT, "nothing to refine");
    run_api(NULL, 0, &r, DB_ERR_ARGUMENT, "nothing to refine");
    run_api("misset_x,mosaic", 0, &r, DB_ERR_ARGUMENT, "mosaic has no effect");
    /* the parameter without effect names the still's line */
    run_api("misset_x,mosaic", 0, &r, DB_ERR_ARGUMENT, "stills.txt:2:");
    assert_null(r.stills);
}

/* runs the program in dir; the log */
static char *run_cli(const char *args, int expect_rc)
{
    harness_args a = {0};
    harness_split(&a, args);
    int rc = harness_run(DB_ENSEMBLE_PATH, dir, &a, 0);
    harness_args_free(&a);
    char p[4200];
    path_in(p, sizeof p, "out.log");
    char *log = harness_read_text(p);
    /* the whole log on a wrong exit status (a sanitizer report is longer than the context note) */
    if (rc != expect_rc) print_error("%s: exit %d (expected %d), log:\n%s\n", args, rc, expect_rc, log ? log : "(none)");
    assert_int_equal(rc, expect_rc);
    test_context("%s", "");
    return log;
}

#define CLI_FIT "-stills stills.txt " MODEL " -hkl start.hkl -spots 8 -spot_size 9 " \
                "-refine_still misset_x,misset_y,misset_z,fluence -refine_F "

#define CLI_SHARED "-stills gstills.txt " MODEL " " GEOMETRY_START " -hkl start.hkl -spots 8 -spot_size 9 " \
                   "-refine_still misset_x,misset_y,misset_z,fluence -refine_F -refine_shared distance,xbeam "

/* (b) the outputs */
static void test_cli_outputs(void **state)
{
    (void)state;
    char *log = run_cli(CLI_FIT "-hklout fit.hkl -json fit.json", 0);
    assert_non_null(strstr(log, "dualbragg-ensemble: iteration 1 "));
    assert_non_null(strstr(log, " cost "));
    assert_non_null(strstr(log, " pixels "));
    assert_non_null(strstr(log, "wrote fit.hkl (-hklout)"));
    free(log);
    char p[4200];
    path_in(p, sizeof p, "fit.hkl");
    FILE *f = fopen(p, "r");
    assert_non_null(f);
    char line[512];
    int n = 0, refined = 0;
    while (fgets(line, sizeof line, f)) {
        int hkl[3];
        double F, sF;
        char sig[64];
        test_context("fit.hkl line %d: %s", n + 1, line);
        assert_int_equal(sscanf(line, "%d %d %d %lf %63s", &hkl[0], &hkl[1], &hkl[2], &F, sig), 5);
        assert_int_equal(hkl[0], true_hkl[n][0]);
        assert_int_equal(hkl[1], true_hkl[n][1]);
        assert_int_equal(hkl[2], true_hkl[n][2]);
        if (strcmp(sig, "nan")) {
            sF = strtod(sig, NULL);
            assert_true(sF > 0);
            assert_close(F, true_F[n], 1e-6, 0);
            refined++;
        } else {
            assert_close(F, true_F[n] * FSCALE, 1e-15, 0);
        }
        n++;
    }
    fclose(f);
    test_context("%s", "");
    assert_int_equal(n, ntrue);
    assert_true(refined >= 5);
    /* read back by dualbragg's -hkl (5 columns) */
    harness_args a = {0};
    harness_split(&a, MODEL " -misset 10 20 30 -hkl fit.hkl -floatfile back.bin -nopgm -nonoise -noprogress");
    assert_int_equal(harness_run(DB_CLI_PATH, dir, &a, 0), 0);
    harness_args_free(&a);
    char *json = harness_read_text((path_in(p, sizeof p, "fit.json"), p));
    assert_non_null(json);
    static const char *const keys[] = {"\"stills\": [", "\"line\": 2", "\"line\": 4", "\"values\": {\"misset_x\": ",
                                       "\"sigma\": {", "\"fixed\": [\"fluence\"]", "\"fluence_fixed_still\": 0",
                                       "\"background\": [{\"box\": [", "\"sigma_a\": ", "\"F\": {\"listed\": ",
                                       "\"refined\": ", "\"stop_reason\": \"relative", "\"iterations\": ",
                                       "\"cost\": ", "\"start_cost\": ", "\"refine_F\": true"};
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        test_context("JSON key %s in\n%s", keys[k], json);
        assert_non_null(strstr(json, keys[k]));
    }
    test_context("%s", "");
    free(json);
}

/* (c) errors */
static void test_cli_errors(void **state)
{
    (void)state;
    char p[4200];
    write_text("bad.txt", "# a missing image on line 3\no0.bin -misset 10 20 30\n\nmissing.bin -misset 1 2 3\n");
    char *log = run_cli("-stills bad.txt " MODEL " -hkl small.hkl -spots 8 -refine_still misset_x -noprogress "
                        "-json never.json", 1);
    assert_non_null(strstr(log, "-stills bad.txt:4: "));
    assert_non_null(strstr(log, "missing.bin"));
    free(log);
    path_in(p, sizeof p, "never.json");
    assert_int_not_equal(access(p, F_OK), 0); /* all or nothing */
    log = run_cli(CLI_FIT "-refine_still misset_x,misset_q", 2);
    assert_non_null(strstr(log, "unknown parameter 'misset_q'"));
    free(log);
    log = run_cli("-stills stills.txt " MODEL " -spots 8 -refine_F", 2);
    assert_non_null(strstr(log, "-refine_F needs a structure-factor table"));
    free(log);
    log = run_cli("-stills stills.txt " MODEL " -hkl small.hkl -spots 8", 2);
    assert_non_null(strstr(log, "nothing to refine"));
    free(log);
    log = run_cli(CLI_FIT "-hklout start.hkl", 2);
    assert_non_null(strstr(log, "-hklout"));
    assert_non_null(strstr(log, "-hkl"));
    free(log);
    log = run_cli(CLI_FIT "-json o1.bin", 2);
    assert_non_null(strstr(log, "-json"));
    free(log);
    log = run_cli(CLI_FIT "-json stills.txt", 2);
    assert_non_null(strstr(log, "-stills"));
    free(log);
    log = run_cli(CLI_FIT "-json same.out -hklout same.out", 2);
    free(log);
    log = run_cli(CLI_FIT "-max_iterations zero", 2);
    assert_non_null(strstr(log, "-max_iterations"));
    free(log);
    log = run_cli("-refine_F " MODEL, 2);
    assert_non_null(strstr(log, "-stills FILE"));
    free(log);
    log = run_cli(CLI_FIT "-floatfile x.bin", 2);
    assert_non_null(strstr(log, "-floatfile is not written"));
    free(log);
    /* a still's own -hkl is refused (F is shared) */
    write_text("own_hkl.txt", "o0.bin -misset 10 20 30\no1.bin -hkl small.hkl\n");
    log = run_cli("-stills own_hkl.txt " MODEL " -hkl small.hkl -spots 8 -refine_still misset_x", 2);
    assert_non_null(strstr(log, "own_hkl.txt:2: "));
    assert_non_null(strstr(log, "own -hkl"));
    free(log);
}

/* (d) two runs, the same bytes */
static void test_cli_deterministic(void **state)
{
    (void)state;
    /* one thread and three: the stills run side by side on OpenMP threads, and the thread count changes no bit
     * (this fixture's reduced system is too small for CHOLMOD's supernodal BLAS; the program's one-thread BLAS was
     * checked on the bench's 100 stills, where 1 and 2 threads had differed in the last bits before it) */
    const char *old = getenv("OMP_NUM_THREADS");
    char *saved = old ? strdup(old) : NULL;
    setenv("OMP_NUM_THREADS", "1", 1);
    free(run_cli(CLI_FIT "-noprogress -hklout d1.hkl -json d1.json", 0));
    setenv("OMP_NUM_THREADS", "3", 1);
    free(run_cli(CLI_FIT "-noprogress -hklout d2.hkl -json d2.json", 0));
    if (saved) setenv("OMP_NUM_THREADS", saved, 1);
    else unsetenv("OMP_NUM_THREADS");
    free(saved);
    char a[4200], b[4200];
    path_in(a, sizeof a, "d1.hkl");
    path_in(b, sizeof b, "d2.hkl");
    assert_true(harness_same_file(a, b));
    path_in(a, sizeof a, "d1.json");
    path_in(b, sizeof b, "d2.json");
    char *ja = harness_read_text(a), *jb = harness_read_text(b);
    assert_non_null(ja);
    assert_non_null(jb);
    char *sa = strstr(ja, "\"seconds\""), *sb = strstr(jb, "\"seconds\"");
    assert_non_null(sa);
    assert_non_null(sb);
    *sa = *sb = 0;
    /* the JSON names its -hklout: d1 against d2 */
    char *h = strstr(ja, "d1.hkl");
    assert_non_null(h);
    h[1] = '2';
    assert_string_equal(ja, jb);
    free(ja);
    free(jb);
}

#ifdef DB_MPIEXEC
/* (d) MPI: mpirun -np K gives the same bytes for K = 1, 2, 3 (the JSON up to its "seconds"); a missing image of
 * the still rank 1 of 2 owns stops both ranks with one message naming its line, exit 1, nothing written, no hang. */
static int run_mpi(int np, const char *args, const char *log)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "cd '%s' && timeout 300 '%s' --allow-run-as-root --oversubscribe -np %d '%s' %s > %s 2>&1",
             dir, DB_MPIEXEC, np, DB_ENSEMBLE_PATH, args, log);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

/* run_mpi, which must exit 0; on a failure the log is shown */
static void run_mpi_ok(int np, const char *args, const char *log)
{
    char p[4200];
    int rc = run_mpi(np, args, log);
    path_in(p, sizeof p, log);
    char *text = harness_read_text(p);
    test_context("mpirun -np %d: exit %d, log:\n%s", np, rc, text ? text : "(none)");
    assert_int_equal(rc, 0);
    test_context("%s", "");
    free(text);
}

static char *json_head(const char *name) /* the JSON up to "seconds", its -hklout name's digit made 'K' */
{
    char p[4200];
    path_in(p, sizeof p, name);
    char *j = harness_read_text(p);
    assert_non_null(j);
    char *sec = strstr(j, "\"seconds\"");
    assert_non_null(sec);
    *sec = 0;
    char *h = strstr(j, "m1.hkl");
    if (!h) h = strstr(j, "m2.hkl");
    if (!h) h = strstr(j, "m3.hkl");
    assert_non_null(h);
    h[1] = 'K';
    return j;
}

static void test_mpi_ranks(void **state)
{
    (void)state;
    char args[2048], a[4200], b[4200];
    for (int k = 1; k <= 3; k++) {
        snprintf(args, sizeof args, CLI_FIT "-noprogress -prior_still misset_x=0.01,misset_y=0.01,misset_z=0.01 "
                 "-hklout m%d.hkl -json m%d.json", k, k);
        char log[64];
        snprintf(log, sizeof log, "mpi%d.log", k);
        run_mpi_ok(k, args, log);
    }
    char *j1 = json_head("m1.json");
    for (int k = 2; k <= 3; k++) {
        snprintf(a, sizeof a, "%s/m1.hkl", dir);
        snprintf(b, sizeof b, "%s/m%d.hkl", dir, k);
        assert_true(harness_same_file(a, b));
        char name[32];
        snprintf(name, sizeof name, "m%d.json", k);
        char *jk = json_head(name);
        assert_string_equal(j1, jk);
        free(jk);
    }
    free(j1);
    /* still 1 (line 3) is rank 1's of 2 */
    write_text("bad_mpi.txt", "# still 1 has no image\no0.bin -misset 10 20 30\nmissing_mpi.bin -misset 1 2 3\n");
    int rc = run_mpi(2, "-stills bad_mpi.txt " MODEL " -hkl small.hkl -spots 8 -refine_still misset_x -noprogress "
                        "-json never_mpi.json", "mpibad.log");
    path_in(a, sizeof a, "mpibad.log");
    char *text = harness_read_text(a);
    assert_non_null(text);
    test_context("mpirun -np 2 with a missing image: exit %d, log:\n%s", rc, text);
    assert_int_not_equal(rc, 0);
    assert_int_not_equal(rc, 124); /* timeout's: a hang */
    const char *m = strstr(text, "-stills bad_mpi.txt:3: ");
    assert_non_null(m);
    assert_non_null(strstr(m, "missing_mpi.bin"));
    assert_null(strstr(m + 1, "-stills bad_mpi.txt:3: ")); /* one message */
    test_context("%s", "");
    free(text);
    path_in(a, sizeof a, "never_mpi.json");
    assert_int_not_equal(access(a, F_OK), 0);
}

/* -refine_shared with -refine_F under mpirun -np K, K = 1..4: the same bytes (4 ranks for 3 stills: rank 0 owns
 * none, so still 0's start values and the table come from rank 1) */
static void test_mpi_shared(void **state)
{
    (void)state;
    char args[2048], a[4200], b[4200];
    for (int k = 1; k <= 4; k++) {
        snprintf(args, sizeof args, CLI_SHARED "-noprogress -hklout n%d.hkl -json n%d.json", k, k);
        char log[64];
        snprintf(log, sizeof log, "mpis%d.log", k);
        run_mpi_ok(k, args, log);
    }
    char *j[5];
    for (int k = 1; k <= 4; k++) {
        char name[32];
        snprintf(name, sizeof name, "n%d.json", k);
        path_in(a, sizeof a, name);
        j[k] = harness_read_text(a);
        assert_non_null(j[k]);
        assert_non_null(strstr(j[k], "\"shared\": {"));
        char *sec = strstr(j[k], "\"seconds\"");
        assert_non_null(sec);
        *sec = 0;
        snprintf(name, sizeof name, "n%d.hkl", k);
        char *h = strstr(j[k], name);
        assert_non_null(h);
        h[1] = 'K';
    }
    for (int k = 2; k <= 4; k++) {
        snprintf(a, sizeof a, "%s/n1.hkl", dir);
        snprintf(b, sizeof b, "%s/n%d.hkl", dir, k);
        assert_true(harness_same_file(a, b));
        assert_string_equal(j[1], j[k]);
    }
    for (int k = 1; k <= 4; k++) free(j[k]);
}
#endif

/* ---- -refine_shared ---- */

/* db_ensemble_refine on a stills file of dir with MODEL GEOMETRY_START -hkl hkl as the shared flags */
static int run_api_shared(const char *stills_name, const char *hkl, const char *refine, int refine_F,
                          const char *shared, db_ensemble_result *r, db_error *err)
{
    char p[4200], hp[4200];
    path_in(p, sizeof p, stills_name);
    path_in(hp, sizeof hp, hkl);
    db_stills st;
    assert_int_equal(db_stills_read(p, &st, err), DB_OK);
    harness_args a = {0};
    harness_split(&a, MODEL " " GEOMETRY_START);
    harness_push(&a, "-hkl");
    harness_push(&a, hp);
    db_ensemble_options o;
    db_ensemble_default_options(&o);
    o.spots = 8;
    o.spot_size = 9;
    o.refine_shared = shared;
    int rc = db_ensemble_refine(a.argc, (const char *const *)a.argv, &st, refine, refine_F, &o, r, err);
    harness_args_free(&a);
    db_stills_free(&st);
    return rc;
}

/* Noise-free stills: the fit lands on the truth up to the solver's stop (relative step 1e-10) and the float32
 * rounding of the observed images (1 part in 1.7e7 per pixel, averaged over some 1800 pixels), some 1e-11
 * relative here; 1e-8 leaves room for another CPU's rounding and is still 1/30000 of the 0.3 mm and 1/8000 of the
 * 0.05 mm being recovered. */
#define SHARED_RTOL 1e-8

static void test_api_shared(void **state)
{
    (void)state;
    db_ensemble_result r;
    db_error err;
    int rc = run_api_shared("gstills.txt", "small.hkl", "misset_x,misset_y,misset_z,fluence", 0, "distance,xbeam", &r,
                            &err);
    test_context("rc %d: %s", rc, rc ? err.message : "");
    assert_int_equal(rc, DB_OK);
    assert_int_equal(r.nshared, 2);
    assert_int_equal(r.shared[0], db_param_from_name("distance"));
    assert_int_equal(r.shared[1], db_param_from_name("xbeam"));
    assert_true(r.shared_start[0] == 100.0); /* the shared command line's values */
    assert_true(r.shared_start[1] == 6.45);
    assert_true(r.stop_reason == DB_STOP_STEP || r.stop_reason == DB_STOP_COST || r.stop_reason == DB_STOP_EXACT);
    assert_true(r.cost < 1e-6 * r.start_cost);
    const double truth[2] = {DISTANCE_TRUE, XBEAM_TRUE};
    for (int j = 0; j < 2; j++) {
        test_context("shared %s: %.17g (true %g) sigma %g", db_param_name(r.shared[j]), r.shared_value[j], truth[j],
                     r.shared_sigma[j]);
        assert_close(r.shared_value[j], truth[j], SHARED_RTOL, 0);
        assert_true(isfinite(r.shared_sigma[j]) && r.shared_sigma[j] > 0);
    }
    for (int s = 0; s < NSTILLS; s++)
        for (int k = 0; k < 3; k++) {
            test_context("still %d misset %d: %.12g (true %g)", s, k, r.stills[s].values[k], MISSET[s][k]);
            assert_close(r.stills[s].values[k], MISSET[s][k], 0, 1e-6);
        }
    test_context("%s", "");
    assert_int_equal(r.nF_refined, 0); /* the shared columns are not structure factors */
    for (long j = 0; j < r.nF; j++) assert_true(r.F[j] == r.F_start[j]);
    db_ensemble_result_free(&r);
    /* the API's codes */
    assert_int_equal(run_api_shared("gstills.txt", "small.hkl", "misset_x,distance", 0, "distance", &r, &err),
                     DB_ERR_ARGUMENT);
    assert_non_null(strstr(err.message, "-refine_shared: distance is also in -refine_still"));
    assert_null(r.stills);
    assert_int_equal(run_api_shared("gstills.txt", "small.hkl", "misset_x", 1, "fluence", &r, &err), DB_ERR_ARGUMENT);
    assert_non_null(strstr(err.message, "-refine_shared: fluence with -refine_F"));
    /* shared parameters alone are something to refine */
    assert_int_equal(run_api_shared("gstills.txt", "small.hkl", NULL, 0, "", &r, &err), DB_ERR_ARGUMENT);
    assert_non_null(strstr(err.message, "nothing to refine"));
}

/* the number after "key": in text, NAN when absent or null */
static double json_after(const char *text, const char *key)
{
    const char *k = strstr(text, key);
    if (!k) return NAN;
    k += strlen(key);
    char *end;
    double v = strtod(k, &end);
    return end == k ? NAN : v;
}

/* the program with -refine_F: the shared columns merged with the F Jacobian's */
static void test_cli_shared(void **state)
{
    (void)state;
    char *log = run_cli(CLI_SHARED "-noprogress -hklout gfit.hkl -json gfit.json", 0);
    assert_non_null(strstr(log, "shared by every still:"));
    free(log);
    char p[4200];
    char *json = harness_read_text((path_in(p, sizeof p, "gfit.json"), p));
    assert_non_null(json);
    const char *sh = strstr(json, "\"shared\": {");
    test_context("JSON:\n%s", json);
    assert_non_null(sh);
    const char *d = strstr(sh, "\"distance\": {\"unit\": \"mm\", "), *x = strstr(sh, "\"xbeam\": {\"unit\": \"mm\", ");
    assert_non_null(d);
    assert_non_null(x);
    const double truth[2] = {DISTANCE_TRUE, XBEAM_TRUE}, start[2] = {100.0, 6.45};
    const char *at[2] = {d, x};
    for (int j = 0; j < 2; j++) {
        const double v0 = json_after(at[j], "\"start\": "), v = json_after(at[j], "\"value\": "),
                     sg = json_after(at[j], "\"sigma\": ");
        test_context("shared %d: start %.17g value %.17g (true %g) sigma %g", j, v0, v, truth[j], sg);
        assert_true(v0 == start[j]);
        assert_close(v, truth[j], SHARED_RTOL, 0);
        assert_true(isfinite(sg) && sg > 0);
    }
    test_context("%s", "");
    free(json);
    /* -hklout: the listed reflections only, F back at the truth */
    FILE *f = fopen((path_in(p, sizeof p, "gfit.hkl"), p), "r");
    assert_non_null(f);
    char line[512];
    int n = 0, refined = 0;
    while (fgets(line, sizeof line, f)) {
        int hkl[3];
        double F;
        char sig[64];
        test_context("gfit.hkl line %d: %s", n + 1, line);
        assert_true(n < ntrue);
        assert_int_equal(sscanf(line, "%d %d %d %lf %63s", &hkl[0], &hkl[1], &hkl[2], &F, sig), 5);
        assert_int_equal(hkl[0], true_hkl[n][0]);
        if (strcmp(sig, "nan")) {
            assert_close(F, true_F[n], 1e-6, 0);
            refined++;
        }
        n++;
    }
    fclose(f);
    test_context("%s", "");
    assert_int_equal(n, ntrue);
    assert_true(refined >= 5);
}

static void test_cli_shared_refusals(void **state)
{
    (void)state;
    char *log;
#define SHARED_BASE "-stills gstills.txt " MODEL " " GEOMETRY_START " -hkl small.hkl -spots 8 -noprogress -json never.json "
    static const struct {
        const char *args, *msg[3];
    } cases[] = {
        {SHARED_BASE "-refine_still misset_x,distance -refine_shared xbeam,distance",
         {"-refine_shared: distance is also in -refine_still", NULL, NULL}},
        {SHARED_BASE "-refine_shared distance,dist", {"-refine_shared: unknown parameter 'dist'", NULL, NULL}},
        {SHARED_BASE "-refine_shared xbeam,distance,xbeam", {"-refine_shared: parameter 'xbeam' is listed twice", NULL, NULL}},
        {SHARED_BASE "-refine_still misset_x -refine_F -refine_shared distance,fluence",
         {"-refine_shared: fluence with -refine_F", "one scale", NULL}},
        /* line 3 gives its own distance */
        {"-stills gown.txt " MODEL " -hkl small.hkl -spots 8 -noprogress -refine_shared xbeam,distance",
         {"-stills gown.txt:3: ", "-refine_shared: distance is shared by every still, but this still gives its own "
          "-distance", NULL}},
        /* line 2's other pixel size moves the default beam centre: another start */
        {"-stills gpix.txt " MODEL " -hkl small.hkl -spots 8 -noprogress -refine_shared ybeam",
         {"-stills gpix.txt:2: ", "-refine_shared: ybeam is shared by every still", "the first still's (line 1)"}},
        {SHARED_BASE "-refine_shared mosaic", {"-stills gstills.txt:2: ", "-refine_shared: mosaic has no effect", NULL}},
    };
    write_text("gown.txt", "# a still with a distance of its own\ng0.bin -misset 10 20 30\ng1.bin -misset 17 31 43 "
               "-distance 100.3\n");
    write_text("gpix.txt", "g0.bin -misset 10 20 30\ng1.bin -misset 17 31 43 -pixel 0.1001\n");
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        log = run_cli(cases[c].args, 2);
        for (int m = 0; m < 3 && cases[c].msg[m]; m++) {
            test_context("case %zu: '%s' in\n%s", c, cases[c].msg[m], log);
            assert_non_null(strstr(log, cases[c].msg[m]));
        }
        test_context("%s", "");
        free(log);
    }
    char p[4200];
    path_in(p, sizeof p, "never.json");
    assert_int_not_equal(access(p, F_OK), 0);
}

/* -prior_still: its refusals (exit 2, the flag named, no output); a prior of 1e-9 degrees holds every misset at its
 * start (to 1e-8 degrees: the data, which put the truth up to 0.05 degrees away, pull with a force the prior answers
 * with a displacement of about (0.05 / sigma_data^2) 1e-18, far below 1e-8), with a sigma below the prior's sd; the
 * JSON names the priors; a wide prior (1e3 degrees) changes the noise-free optimum by less than 1e-6 degrees */
static void test_cli_prior(void **state)
{
    (void)state;
    static const struct {
        const char *prior, *msg;
    } cases[] = {
        {"misset_q=0.1", "-prior_still: misset_q is not a parameter of -refine_still"},
        {"a=0.1", "-prior_still: a is not a parameter of -refine_still"},
        {"misset_x", "-prior_still: \"misset_x\" is not NAME=SD"},
        {"misset_x=0", "-prior_still: misset_x's sd \"0\" is not a number > 0"},
        {"misset_x=-1", "-prior_still: misset_x's sd \"-1\" is not a number > 0"},
        {"misset_x=0.1x", "-prior_still: misset_x's sd \"0.1x\" is not a number > 0"},
        {"misset_x=nan", "-prior_still: misset_x's sd \"nan\" is not a number > 0"},
        {"misset_x=0.1,misset_x=0.2", "-prior_still: misset_x is given twice"},
        {"misset_x=0.1,", "ends with a comma"},
        {"misset_x=0.1,,misset_y=0.1", "expected NAME=SD items"},
    };
    char args[4096], p[4200];
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        snprintf(args, sizeof args, CLI_FIT "-noprogress -json never.json -prior_still %s", cases[c].prior);
        char *log = run_cli(args, 2);
        test_context("case %zu: '%s' in\n%s", c, cases[c].msg, log);
        assert_non_null(strstr(log, cases[c].msg));
        test_context("%s", "");
        free(log);
    }
    path_in(p, sizeof p, "never.json");
    assert_int_not_equal(access(p, F_OK), 0);

    /* a tight prior holds the missets at their starts */
    free(run_cli(CLI_FIT "-noprogress -json tight.json -prior_still misset_x=1e-9,misset_y=1e-9,misset_z=1e-9", 0));
    path_in(p, sizeof p, "tight.json");
    char *js = harness_read_text(p);
    assert_non_null(js);
    const char *ps = strstr(js, "\"prior_sd\": {\"misset_x\": ");
    assert_non_null(ps);
    assert_true(strtod(ps + strlen("\"prior_sd\": {\"misset_x\": "), NULL) == 1e-9);
    assert_non_null(strstr(ps, "\"misset_z\": "));
    const char *at = js;
    static const char *const name[3] = {"misset_x", "misset_y", "misset_z"};
    for (int s = 0; s < NSTILLS; s++, at++) {
        at = strstr(at, "\"values\": {");
        assert_non_null(at);
        for (int k = 0; k < 3; k++) {
            char key[64];
            snprintf(key, sizeof key, "\"%s\": ", name[k]);
            const char *v = strstr(at, key);
            assert_non_null(v);
            test_context("still %d %s", s, name[k]);
            assert_close(strtod(v + strlen(key), NULL), START[s][k], 0, 1e-8);
            const char *sg = strstr(at, "\"sigma\": {");
            assert_non_null(sg);
            sg = strstr(sg, key);
            const double sigma = strtod(sg + strlen(key), NULL);
            assert_true(sigma > 0 && sigma <= 1e-9);
            test_context("%s", "");
        }
    }
    free(js);
    free(run_cli(CLI_FIT "-noprogress -json wide.json -prior_still misset_x=1e3,misset_y=1e3,misset_z=1e3", 0));
    free(run_cli(CLI_FIT "-noprogress -json none.json", 0));
    char wp[4200], np[4200];
    path_in(wp, sizeof wp, "wide.json");
    path_in(np, sizeof np, "none.json");
    char *w = harness_read_text(wp), *n = harness_read_text(np);
    assert_non_null(w);
    assert_non_null(n);
    const char *aw = w, *an = n;
    for (int s = 0; s < NSTILLS; s++) {
        aw = strstr(aw, "\"values\": {");
        an = strstr(an, "\"values\": {");
        assert_non_null(aw);
        assert_non_null(an);
        for (int k = 0; k < 3; k++) {
            char key[64];
            snprintf(key, sizeof key, "\"%s\": ", name[k]);
            const double vw = strtod(strstr(aw, key) + strlen(key), NULL), vn = strtod(strstr(an, key) + strlen(key), NULL);
            test_context("still %d %s: %.12g, %.12g", s, name[k], vw, vn);
            assert_close(vw, vn, 0, 1e-6);
            assert_close(vn, MISSET[s][k], 0, 1e-6);
        }
        aw++;
        an++;
    }
    test_context("%s", "");
    free(w);
    free(n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_api_recovers_truth),
        cmocka_unit_test(test_api_refusals),
        cmocka_unit_test(test_cli_outputs),
        cmocka_unit_test(test_cli_errors),
        cmocka_unit_test(test_cli_deterministic),
        cmocka_unit_test(test_api_shared),
        cmocka_unit_test(test_cli_shared),
        cmocka_unit_test(test_cli_shared_refusals),
        cmocka_unit_test(test_cli_prior),
#ifdef DB_MPIEXEC
        cmocka_unit_test(test_mpi_ranks),
        cmocka_unit_test(test_mpi_shared),
#endif
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
