/* gauss_newton.c: a refinement loop of your own around dualbragg's exact Jacobian.
 * Simulates a noise-free "observed" image of golden case b_triclinic (with a short phi sweep), moves the cell
 * edges and one misset angle away from the truth, and brings them back with plain Gauss-Newton steps on four
 * boxes of pixels: db_sim_run_selected gives the model and d model / d parameters, the normal equations
 * J^T J delta = -J^T r are formed with CBLAS and solved with LAPACKE, db_sim_set_params takes the new values.
 * (db_refine does the same with damping, scaling and stopping rules; this is the loop to start from when you
 * want your own.) Usage: example_gauss_newton [path/to/P1.hkl]; exits 0 when the truth is recovered to 1e-6. */
#include "dualbragg.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define NPARAMS 4
#define NBOXES 4
#define MAX_STEPS 10

static void die(const char *what, const db_error *err)
{
    fprintf(stderr, "gauss_newton: %s: %s\n", what, err ? err->message : "out of memory");
    exit(1);
}

int main(int argc, char **argv)
{
    const char *hkl = argc > 1 ? argv[1] : "tests/golden/b_triclinic/P1.hkl";
    const char *args[] = {"-cell", "70", "80", "90", "75", "85", "95", "-misset", "10", "20", "30", "-hkl", hkl,
                          "-Na", "4", "-Nb", "5", "-Nc", "6", "-lambda", "1", "-distance", "100", "-pixel", "0.1",
                          "-detpixels", "256", "-oversample", "1", "-phi", "0.05", "-osc", "0.2", "-phisteps", "4"};
    db_error err;
    db_config *cfg = db_config_create();
    if (!cfg) die("db_config_create", NULL);
    if (db_config_parse(cfg, (int)(sizeof args / sizeof args[0]), args, &err)) die("db_config_parse", &err);
    db_sim *sim = NULL;
    if (db_sim_create(&sim, cfg, NULL, &err)) die("db_sim_create", &err);
    db_config_destroy(cfg);

    /* the "observed" image: the model at the true values, before float rounding */
    int F, S;
    db_sim_size(sim, &F, &S);
    float *image = malloc((size_t)F * S * sizeof(float));
    double *observed = malloc((size_t)F * S * sizeof(double));
    if (!image || !observed) die("malloc", NULL);
    if (db_sim_run(sim, image, observed, &err)) die("db_sim_run", &err);

    /* the pixels to fit: a 48x48 box in each quadrant (xmin xmax ymin ymax, inclusive) */
    const int boxes[4 * NBOXES] = {40, 87, 40, 87, 168, 215, 40, 87, 40, 87, 168, 215, 168, 215, 168, 215};
    if (db_sim_select_boxes(sim, boxes, NBOXES, &err)) die("db_sim_select_boxes", &err);
    long m = db_sim_selected_count(sim);
    /* run_selected returns the selected pixels in row-major order: gather the observed ones the same way */
    double *y = malloc((size_t)m * sizeof(double)), *model = malloc((size_t)m * sizeof(double));
    double *r = malloc((size_t)m * sizeof(double)), *J = malloc((size_t)NPARAMS * m * sizeof(double));
    if (!y || !model || !r || !J) die("malloc", NULL);
    long i = 0;
    for (int s = 0; s < S; s++)
        for (int f = 0; f < F; f++)
            for (int b = 0; b < NBOXES; b++)
                if (f >= boxes[4 * b] && f <= boxes[4 * b + 1] && s >= boxes[4 * b + 2] && s <= boxes[4 * b + 3]) {
                    y[i++] = observed[s * F + f];
                    break; /* boxes that overlap count a pixel once */
                }
    if (i != m) {
        fprintf(stderr, "gauss_newton: gathered %ld pixels, the simulation selected %ld\n", i, m);
        return 1;
    }

    /* the parameters, their true values, and a start away from them */
    int params[NPARAMS];
    if (db_param_parse_list("a,b,c,misset_x", params, &err) != NPARAMS) die("db_param_parse_list", &err);
    double truth[NPARAMS], p[NPARAMS];
    if (db_sim_get_params(sim, params, truth, NPARAMS, &err)) die("db_sim_get_params", &err);
    for (int j = 0; j < 3; j++) p[j] = truth[j] * (j == 1 ? 0.998 : 1.002); /* cell edges by 0.2% */
    p[3] = truth[3] + 0.1;                                                    /* misset_x by 0.1 deg */
    if (db_sim_set_params(sim, params, p, NPARAMS, &err)) die("db_sim_set_params", &err);

    printf("fitting a, b, c, misset_x on %ld pixels (%d boxes)\n", m, NBOXES);
    printf("%4s %14s %16s %16s %16s %16s\n", "step", "cost", "a", "b", "c", "misset_x");
    double rel = INFINITY; /* the last step's largest change, relative */
    for (int step = 0; step <= MAX_STEPS && rel > 1e-12; step++) {
        /* model and Jacobian: J[k*m + i] = d model[i] / d params[k] (column-major, leading dimension m) */
        if (db_sim_run_selected(sim, params, NPARAMS, model, J, &err)) die("db_sim_run_selected", &err);
        double cost = 0.0;
        for (i = 0; i < m; i++) {
            r[i] = model[i] - y[i];
            cost += 0.5 * r[i] * r[i];
        }
        printf("%4d %14.6g %16.10f %16.10f %16.10f %16.10f\n", step, cost, p[0], p[1], p[2], p[3]);
        /* normal equations: A = J^T J (upper triangle), delta = -J^T r, then A delta = -J^T r by Cholesky */
        double A[NPARAMS * NPARAMS], delta[NPARAMS];
        cblas_dsyrk(CblasColMajor, CblasUpper, CblasTrans, NPARAMS, (int)m, 1.0, J, (int)m, 0.0, A, NPARAMS);
        cblas_dgemv(CblasColMajor, CblasTrans, (int)m, NPARAMS, -1.0, J, (int)m, r, 1, 0.0, delta, 1);
        int info = LAPACKE_dposv(LAPACK_COL_MAJOR, 'U', NPARAMS, 1, A, NPARAMS, delta, NPARAMS);
        if (info != 0) {
            fprintf(stderr, "gauss_newton: LAPACKE_dposv: info %d (J^T J is not positive definite)\n", info);
            return 1;
        }
        rel = 0.0;
        for (int j = 0; j < NPARAMS; j++) {
            p[j] += delta[j];
            rel = fmax(rel, fabs(delta[j]) / fabs(p[j]));
        }
        if (db_sim_set_params(sim, params, p, NPARAMS, &err)) die("db_sim_set_params", &err);
    }

    int ok = 1;
    printf("%-10s %16s %16s %12s\n", "parameter", "fitted", "true", "rel_error");
    for (int j = 0; j < NPARAMS; j++) {
        double rel = fabs(p[j] - truth[j]) / fabs(truth[j]);
        ok &= rel <= 1e-6;
        printf("%-10s %16.10f %16.10f %12.2e\n", db_param_name(params[j]), p[j], truth[j], rel);
    }
    printf("%s\n", ok ? "recovered to 1e-6 relative" : "NOT recovered to 1e-6 relative");
    free(image);
    free(observed);
    free(y);
    free(model);
    free(r);
    free(J);
    db_sim_destroy(sim);
    return ok ? 0 : 1;
}
