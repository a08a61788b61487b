/* dualbragg-gradcheck: checks dualbragg's derivative images against finite differences on a small region.
 * Takes dualbragg's flags plus -grad LIST, -grad_hkl "h k l" (repeatable: the structure factor F(h k l)),
 * -check_roi xmin xmax ymin ymax, -rtol, -atol, -atol_factor, -precise, -chunk N and -json FILE. Without -grad
 * and -grad_hkl it checks the eleven mission parameters; -grad_hkl alone checks only its structure factors.
 * Exit status 0 only if every parameter (and structure factor) passes, 1 if some fail, 2 on errors. */
#include "gradcheck.h"
#include "fileio.h"   /* db_check_output_path */
#include "io_paths.h" /* no output over an input */
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

/* Error exit before the configuration exists: the argument lists are the only allocations. */
static int bail(const char **rest, int *hkl)
{
    free(rest);
    free(hkl);
    return 2;
}

int main(int argc, char **argv)
{
    db_gc_options o;
    db_gc_default_options(&o);
    db_temp_cleanup_on_signals(); /* an interrupt leaves no temporary output behind */
    const char *grad = NULL;
    const char *json = NULL;
    const char **rest = (const char **)calloc((size_t)argc, sizeof(char *));
    int *hkl = (int *)calloc((size_t)argc * 3, sizeof(int)); /* each -grad_hkl takes two arguments: room to spare */
    int nrest = 0, nhkl = 0;
    if (!rest || !hkl) {
        free(rest);
        free(hkl);
        return 1;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int left = argc - 1 - i;
        double v;
        if (strcmp(a, "-grad") == 0 && left >= 1) {
            grad = argv[++i];
        } else if (strcmp(a, "-grad_hkl") == 0 && left >= 1) {
            if (!reflection(argv[++i], hkl + 3 * nhkl)) return bail(rest, hkl);
            nhkl++;
        } else if (strcmp(a, "-check_roi") == 0 && left >= 4) {
            for (int k = 0; k < 4; k++) {
                if (!number(a, argv[i + 1 + k], &v)) return bail(rest, hkl);
                if (v != floor(v) || v < 0 || v > 2147483647.0) {
                    fprintf(stderr, "dualbragg-gradcheck: error: -check_roi expects pixel indices >= 0 (xmin xmax ymin ymax), got '%s'\n",
                            argv[i + 1 + k]);
                    return bail(rest, hkl);
                }
                o.roi[k] = (int)v;
            }
            if (o.roi[0] > o.roi[1] || o.roi[2] > o.roi[3]) {
                fprintf(stderr, "dualbragg-gradcheck: error: -check_roi %d %d %d %d is empty (expected xmin <= xmax and ymin <= ymax)\n",
                        o.roi[0], o.roi[1], o.roi[2], o.roi[3]);
                return bail(rest, hkl);
            }
            i += 4;
        } else if (strcmp(a, "-rtol") == 0 && left >= 1) {
            if (!tolerance(a, argv[++i], &o.rtol)) return bail(rest, hkl);
        } else if (strcmp(a, "-atol") == 0 && left >= 1) {
            if (!tolerance(a, argv[++i], &o.atol_abs)) return bail(rest, hkl);
        } else if (strcmp(a, "-atol_factor") == 0 && left >= 1) {
            if (!tolerance(a, argv[++i], &o.atol_factor)) return bail(rest, hkl);
        } else if (strcmp(a, "-precise") == 0) {
            o.precise = 1;
        } else if (strcmp(a, "-chunk") == 0 && left >= 1) {
            if (!number(a, argv[++i], &v)) return bail(rest, hkl);
            if (v < 1 || v > DB_MAX_CHUNK || v != (int)v) {
                fprintf(stderr, "dualbragg-gradcheck: error: -chunk expects 1 to %d directions per pass, got '%s'\n", DB_MAX_CHUNK, argv[i]);
                return bail(rest, hkl);
            }
            o.chunk = (int)v;
        } else if (strcmp(a, "-json") == 0 && left >= 1) {
            json = argv[++i];
        } else if ((strcmp(a, "-grad") == 0 || strcmp(a, "-grad_hkl") == 0 || strcmp(a, "-check_roi") == 0 || strcmp(a, "-rtol") == 0 ||
                    strcmp(a, "-atol") == 0 || strcmp(a, "-atol_factor") == 0 || strcmp(a, "-chunk") == 0 ||
                    strcmp(a, "-json") == 0)) {
            fprintf(stderr, "dualbragg-gradcheck: error: %s is missing its value(s)\n", a);
            return bail(rest, hkl);
        } else {
            rest[nrest++] = a;
        }
    }
    db_error err;
    int params[64];
    /* -grad_hkl alone: its structure factors only; neither flag: the mission parameters */
    int n = 0;
    if (grad || !nhkl) n = db_param_parse_list(grad ? grad : "a,b,c,alpha,beta,gamma,misset_x,misset_y,misset_z,phi0,osc", params, &err);
    if (n < 0) {
        fprintf(stderr, "dualbragg-gradcheck: error: %s\n", err.message);
        return bail(rest, hkl);
    }
    if (n + nhkl > DB_GC_MAX_ROWS) {
        fprintf(stderr, "dualbragg-gradcheck: error: -grad and -grad_hkl: at most %d checks in one run, got %d parameters and %d "
                "reflections\n", DB_GC_MAX_ROWS, n, nhkl);
        return bail(rest, hkl);
    }
    db_config *cfg = db_config_create();
    if (!cfg || db_config_parse(cfg, nrest, rest, &err)) {
        fprintf(stderr, "dualbragg-gradcheck: error: %s\n", cfg ? err.message : "out of memory");
        db_config_destroy(cfg);
        return bail(rest, hkl);
    }
    if (json) {
        /* the JSON's path is checked before the check runs (as the other programs do): it can be written, and it is
         * none of the files the simulation reads */
        db_named_path in[DB_IO_MAX_INPUTS], out = {json, "-json"};
        int nin = db_io_inputs(cfg, 1, in);
        if (db_check_output_path(json, "-json", &err) || db_io_check_distinct(&out, 1, in, nin, &err)) {
            fprintf(stderr, "dualbragg-gradcheck: error: %s\n", err.message);
            db_config_destroy(cfg);
            return bail(rest, hkl);
        }
    }
    const char *dump = db_config_output_path(cfg, DB_OUT_FDUMP);
    if (!db_config_has_hkl(cfg) && access(dump, F_OK) == 0) {
        o.fdump_path = dump;
        printf("reading Fs from %s (no -hkl given)\n", dump);
    }
    if (o.roi[0] >= 0) {
        /* the check region must lie on the detector: a box outside it checks no pixel and would pass */
        db_sim *probe;
        int F, S;
        if (db_sim_create(&probe, cfg, o.fdump_path, &err)) {
            fprintf(stderr, "dualbragg-gradcheck: error: %s\n", err.message);
            db_config_destroy(cfg);
            return bail(rest, hkl);
        }
        db_sim_size(probe, &F, &S);
        db_sim_destroy(probe);
        if (o.roi[1] >= F || o.roi[3] >= S) {
            fprintf(stderr, "dualbragg-gradcheck: error: -check_roi %d %d %d %d is outside the %d x %d detector (pixel indices 0..%d, 0..%d)\n",
                    o.roi[0], o.roi[1], o.roi[2], o.roi[3], F, S, F - 1, S - 1);
            db_config_destroy(cfg);
            return bail(rest, hkl);
        }
    }
    printf("note: mosaic angles are evaluated in double precision (the reference rounds them to float), and the square\n"
           "lattice factor as sin(N pi dh)/sin(pi dh) (equal to the reference's sin(N pi h)/sin(pi h) up to sign at integer N,\n"
           "without its large-argument rounding noise), in the base run and at every finite-difference point\n");
    db_gc_report rep;
    /* without -grad_hkl the parameters' check alone, as before structure factors could be checked */
    int rc = nhkl ? db_gradcheck_with_F(cfg, params, n, hkl, nhkl, &o, &rep, &err) : db_gradcheck(cfg, params, n, &o, &rep, &err);
    db_config_destroy(cfg);
    free(rest);
    free(hkl);
    if (rc) {
        fprintf(stderr, "dualbragg-gradcheck: error: %s\n", err.message);
        return 2;
    }
    db_gc_print(&rep, stdout);
    if (json && db_gc_write_json(json, &rep, &o, &err)) {
        fprintf(stderr, "dualbragg-gradcheck: error: %s\n", err.message);
        return 2;
    }
    printf("%s\n", rep.all_pass ? "all parameters PASS" : "some parameters FAIL");
    if (!rep.all_pass && !o.precise)
        printf("hint: the 2-point stencil's truncation error (h^2/6 times the third derivative) can exceed rtol on sharp\n"
               "      spots at this step; -precise uses the 4-point stencil (error O(h^4)) to tell it from a derivative error\n");
    return rep.all_pass ? 0 : 1;
}
