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
 *  - determinism: two runs write the same bytes (the JSON up to its "seconds"). */
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
    char stills[2048] = "# three noise-free stills\n";
    for (int s = 0; s < NSTILLS; s++) {
        harness_args a = {0};
        char extra[512];
        snprintf(extra, sizeof extra, MODEL " -hkl small.hkl -misset %g %g %g -floatfile s%d.bin -nopgm -nonoise "
                 "-noprogress", MISSET[s][0], MISSET[s][1], MISSET[s][2], s);
        harness_split(&a, extra);
        int rc = harness_run(DB_CLI_PATH, dir, &a, 0);
        harness_args_free(&a);
        if (rc) return -1;
        /* plus a constant background */
        char name[64];
        snprintf(name, sizeof name, "s%d.bin", s);
        path_in(p, sizeof p, name);
        size_t len;
        unsigned char *b = harness_read(p, &len);
        if (!b || len != 128 * 128 * 4) return -1;
        float *v = (float *)b;
        for (size_t i = 0; i < len / 4; i++) v[i] += (float)BACKGROUND;
        snprintf(name, sizeof name, "o%d.bin", s);
        path_in(p, sizeof p, name);
        FILE *o = fopen(p, "wb");
        if (!o || fwrite(b, 1, len, o) != len || fclose(o)) return -1;
        free(b);
        size_t at = strlen(stills);
        snprintf(stills + at, sizeof stills - at, "o%d.bin -misset %.17g %.17g %.17g -fluence %.17g\n", s,
                 START[s][0], START[s][1], START[s][2], FLUENCE_START[s]);
    }
    write_text("stills.txt", stills);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    harness_rmtree(dir);
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
    test_context("%s: exit %d, log:\n%s", args, rc, log ? log : "(none)");
    assert_int_equal(rc, expect_rc);
    test_context("%s", "");
    return log;
}

#define CLI_FIT "-stills stills.txt " MODEL " -hkl start.hkl -spots 8 -spot_size 9 " \
                "-refine_still misset_x,misset_y,misset_z,fluence -refine_F "

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
    free(run_cli(CLI_FIT "-noprogress -hklout d1.hkl -json d1.json", 0));
    free(run_cli(CLI_FIT "-noprogress -hklout d2.hkl -json d2.json", 0));
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
        snprintf(args, sizeof args, CLI_FIT "-noprogress -hklout m%d.hkl -json m%d.json", k, k);
        char log[64];
        snprintf(log, sizeof log, "mpi%d.log", k);
        int rc = run_mpi(k, args, log);
        path_in(a, sizeof a, log);
        char *text = harness_read_text(a);
        test_context("mpirun -np %d: exit %d, log:\n%s", k, rc, text ? text : "(none)");
        assert_int_equal(rc, 0);
        test_context("%s", "");
        free(text);
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
#endif

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_api_recovers_truth),
        cmocka_unit_test(test_api_refusals),
        cmocka_unit_test(test_cli_outputs),
        cmocka_unit_test(test_cli_errors),
        cmocka_unit_test(test_cli_deterministic),
#ifdef DB_MPIEXEC
        cmocka_unit_test(test_mpi_ranks),
#endif
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
