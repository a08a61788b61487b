/* dualbragg-gradcheck: checks dualbragg's derivative images against finite differences on a small region.
 * Takes dualbragg's flags plus -grad LIST, -grad_hkl "h k l" (repeatable: the structure factor F(h k l)),
 * -check_roi xmin xmax ymin ymax, -rtol, -atol, -atol_factor, -precise, -chunk N and -json FILE. Without -grad
 * and -grad_hkl it checks the eleven mission parameters; -grad_hkl alone checks only its structure factors.
 * Exit status 0 only if every parameter (and structure factor) passes, 1 if some fail, 2 on errors. */
#include "gradcheck.h"
#include "fileio.h"   /* db_check_output_path */
#include "io_paths.h" /* no output over an input */
#include "params.h"   /* the mission parameters */
#include "tempfiles.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int number(const char *flag, const char *s, double *out)
{
    char *end;
    *out = strtod(s, &end);
    if (end == s || *end || !isfinite(*out)) {
        fprintf(stderr, "dualbragg-gradcheck: error: %s expects a finite number, got '%s'\n", flag, s);
        return 0;
    }
    return 1;
}

/* A tolerance: a finite number >= 0 (a negative one would make every check fail, or for -atol silently fall
 * back to the default rule; NaN would make every comparison false and inf every one true). */
static int tolerance(const char *flag, const char *s, double *out)
{
    if (!number(flag, s, out)) return 0;
    if (*out < 0.0) {
        fprintf(stderr, "dualbragg-gradcheck: error: %s expects a tolerance >= 0, got '%s'\n", flag, s);
        return 0;
    }
    return 1;
}

/* -grad_hkl "h k l": three integers in one argument (what a shell passes for one quoted reflection). */
static int reflection(const char *s, int out[3])
{
    const char *p = s;
    for (int k = 0; k < 3; k++) {
        char *end;
        while (*p == ' ' || *p == '\t') p++;
        long v = strtol(p, &end, 10);
        /* strtol takes leading blanks itself; an empty field, or one that is not an integer, stops here */
        if (end == p || v < -2147483647L || v > 2147483647L || (*end && *end != ' ' && *end != '\t')) goto bad;
        out[k] = (int)v;
        p = end;
    }
    while (*p == ' ' || *p == '\t') p++;
    if (!*p) return 1;
bad:
    fprintf(stderr, "dualbragg-gradcheck: error: -grad_hkl expects three integers \"h k l\" in one argument, got '%s'\n", s);
    return 0;
}

/* What the flags ask for, and the configuration the check runs on. */
typedef struct gc_request {
    db_gc_options o;
    const char *grad, *json;
    const char **rest; /* dualbragg's flags */
    int nrest;
    int *hkl, nhkl;    /* -grad_hkl's reflections, 3 ints each */
    int params[64], n;
    db_config *cfg;
} gc_request;

static void request_free(gc_request *q)
{
    db_config_destroy(q->cfg);
    free(q->rest);
    free(q->hkl);
}

#define FAIL(...) (fprintf(stderr, "dualbragg-gradcheck: error: " __VA_ARGS__), 2)

/* -check_roi xmin xmax ymin ymax: pixel indices, a region that is not empty */
static int check_roi_flag(char **v, int roi[4])
{
    double x;
    for (int k = 0; k < 4; k++) {
        if (!number("-check_roi", v[k], &x)) return 2;
        if (x != floor(x) || x < 0 || x > 2147483647.0)
            return FAIL("-check_roi expects pixel indices >= 0 (xmin xmax ymin ymax), got '%s'\n", v[k]);
        roi[k] = (int)x;
    }
    if (roi[0] > roi[1] || roi[2] > roi[3])
        return FAIL("-check_roi %d %d %d %d is empty (expected xmin <= xmax and ymin <= ymax)\n", roi[0], roi[1], roi[2],
                    roi[3]);
    return 0;
}

/* The check's own flags; the rest are dualbragg's. 0, or 2 with the message printed. */
static int parse_flags(int argc, char **argv, gc_request *q)
{
    q->rest = (const char **)calloc((size_t)argc, sizeof(char *));
    q->hkl = (int *)calloc((size_t)argc * 3, sizeof(int)); /* each -grad_hkl takes two arguments: room to spare */
    if (!q->rest || !q->hkl) return FAIL("out of memory\n");
    static const char *const with_values[] = {"-grad", "-grad_hkl", "-check_roi", "-rtol", "-atol", "-atol_factor",
                                              "-chunk", "-json"};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int left = argc - 1 - i;
        double v;
        if (strcmp(a, "-grad") == 0 && left >= 1) {
            q->grad = argv[++i];
        } else if (strcmp(a, "-grad_hkl") == 0 && left >= 1) {
            if (!reflection(argv[++i], q->hkl + 3 * q->nhkl)) return 2;
            q->nhkl++;
        } else if (strcmp(a, "-check_roi") == 0 && left >= 4) {
            if (check_roi_flag(argv + i + 1, q->o.roi)) return 2;
            i += 4;
        } else if (strcmp(a, "-rtol") == 0 && left >= 1) {
            if (!tolerance(a, argv[++i], &q->o.rtol)) return 2;
        } else if (strcmp(a, "-atol") == 0 && left >= 1) {
            if (!tolerance(a, argv[++i], &q->o.atol_abs)) return 2;
        } else if (strcmp(a, "-atol_factor") == 0 && left >= 1) {
            if (!tolerance(a, argv[++i], &q->o.atol_factor)) return 2;
        } else if (strcmp(a, "-precise") == 0) {
            q->o.precise = 1;
        } else if (strcmp(a, "-chunk") == 0 && left >= 1) {
            if (!number(a, argv[++i], &v)) return 2;
            if (v < 1 || v > DB_MAX_CHUNK || v != (int)v)
                return FAIL("-chunk expects 1 to %d directions per pass, got '%s'\n", DB_MAX_CHUNK, argv[i]);
            q->o.chunk = (int)v;
        } else if (strcmp(a, "-json") == 0 && left >= 1) {
            q->json = argv[++i];
        } else {
            for (size_t k = 0; k < sizeof with_values / sizeof with_values[0]; k++)
                if (strcmp(a, with_values[k]) == 0) return FAIL("%s is missing its value(s)\n", a);
            q->rest[q->nrest++] = a;
        }
    }
    return 0;
}

/* The rows to check: -grad's parameters and -grad_hkl's reflections; -grad_hkl alone, its structure factors only;
 * neither flag, the mission parameters. */
static int choose_checks(gc_request *q)
{
    db_error err;
    if (q->grad) {
        q->n = db_param_parse_list(q->grad, q->params, &err);
        if (q->n < 0) return FAIL("%s\n", err.message);
    } else if (!q->nhkl) {
        for (q->n = 0; q->n < DB_MISSION_PARAMS; q->n++) q->params[q->n] = q->n; /* params.h: the table's first rows */
    }
    if (q->n + q->nhkl > DB_GC_MAX_ROWS)
        return FAIL("-grad and -grad_hkl: at most %d checks in one run, got %d parameters and %d reflections\n",
                    DB_GC_MAX_ROWS, q->n, q->nhkl);
    return 0;
}

/* dualbragg's flags as a configuration; the JSON's path checked before the check runs (as the other programs do:
 * it can be written, and it is none of the files the simulation reads); the check region on the detector (a box
 * outside it checks no pixel and would pass). */
static int prepare_configuration(gc_request *q)
{
    db_error err;
    q->cfg = db_config_create();
    if (!q->cfg) return FAIL("out of memory\n");
    if (db_config_parse(q->cfg, q->nrest, q->rest, &err)) return FAIL("%s\n", err.message);
    if (q->json) {
        db_named_path in[DB_IO_MAX_INPUTS], out = {q->json, "-json"};
        int nin = db_io_inputs(q->cfg, 1, in);
        if (db_check_output_path(q->json, "-json", &err) || db_io_check_distinct(&out, 1, in, nin, &err))
            return FAIL("%s\n", err.message);
    }
    const char *dump = db_config_output_path(q->cfg, DB_OUT_FDUMP);
    if (!db_config_has_hkl(q->cfg) && access(dump, F_OK) == 0) {
        q->o.fdump_path = dump;
        printf("reading Fs from %s (no -hkl given)\n", dump);
    }
    if (q->o.roi[0] < 0) return 0;
    db_sim *probe;
    int F, S;
    if (db_sim_create(&probe, q->cfg, q->o.fdump_path, &err)) return FAIL("%s\n", err.message);
    db_sim_size(probe, &F, &S);
    db_sim_destroy(probe);
    const int *r = q->o.roi;
    if (r[1] >= F || r[3] >= S)
        return FAIL("-check_roi %d %d %d %d is outside the %d x %d detector (pixel indices 0..%d, 0..%d)\n", r[0], r[1],
                    r[2], r[3], F, S, F - 1, S - 1);
    return 0;
}

/* The check, its table and its JSON: 0 when every row passes, 1 when some fail, 2 on an error. */
static int run_check(const gc_request *q)
{
    printf("note: mosaic angles are evaluated in double precision (the reference rounds them to float), and the square\n"
           "lattice factor as sin(N pi dh)/sin(pi dh) (equal to the reference's sin(N pi h)/sin(pi h) up to sign at integer N,\n"
           "without its large-argument rounding noise), in the base run and at every finite-difference point\n");
    db_gc_report rep;
    db_error err;
    /* without -grad_hkl the parameters' check alone, as before structure factors could be checked */
    int rc = q->nhkl ? db_gradcheck_with_F(q->cfg, q->params, q->n, q->hkl, q->nhkl, &q->o, &rep, &err)
                     : db_gradcheck(q->cfg, q->params, q->n, &q->o, &rep, &err);
    if (rc) return FAIL("%s\n", err.message);
    db_gc_print(&rep, stdout);
    if (q->json && db_gc_write_json(q->json, &rep, &q->o, &err)) return FAIL("%s\n", err.message);
    printf("%s\n", rep.all_pass ? "all parameters PASS" : "some parameters FAIL");
    if (!rep.all_pass && !q->o.precise)
        printf("hint: the 2-point stencil's truncation error (h^2/6 times the third derivative) can exceed rtol on sharp\n"
               "      spots at this step; -precise uses the 4-point stencil (error O(h^4)) to tell it from a derivative error\n");
    return rep.all_pass ? 0 : 1;
}

int main(int argc, char **argv)
{
    db_temp_cleanup_on_signals(); /* an interrupt leaves no temporary output behind */
    gc_request q;
    memset(&q, 0, sizeof q);
    db_gc_default_options(&q.o);
    int rc = parse_flags(argc, argv, &q);
    if (!rc) rc = choose_checks(&q);
    if (!rc) rc = prepare_configuration(&q);
    if (!rc) rc = run_check(&q);
    request_free(&q);
    return rc;
}
