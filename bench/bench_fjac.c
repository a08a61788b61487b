/* bench_fjac: what the structure-factor Jacobian costs (issue 19, README "Structure factors"). For each case, over
 * the whole 256 x 256 detector as the selection, the in-process time of four runs of db_sim_run_selected(_F):
 *   P    the primal values;
 *   P+F  the values and the F-Jacobian;
 *   D    the values and the eleven mission derivatives (one 12-direction pass);
 *   D+F  the same with the F-Jacobian.
 * Median of RUNS rounds, the four taken in turn within each round (machine noise hits them alike). The figure of
 * merit is (D+F - D) / P, the F-Jacobian's extra cost beside the mission derivatives in primal runs (target at
 * most 0.3), with (P+F - P) / P beside it; and the memory: nonzeros per pixel and the CSR's bytes per nonzero.
 * Cases: golden configurations with b_triclinic's P1.hkl (-12..12, 15625 reflections). */
#include "dualbragg.h"
#include "bench_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MISSION "a,b,c,alpha,beta,gamma,misset_x,misset_y,misset_z,phi0,osc"
#define HKL DB_SOURCE_DIR "/tests/golden/b_triclinic/P1.hkl"
#define BASE "-lambda 1 -distance 100 -pixel 0.1 -detpixels 256 -oversample 1 -hkl " HKL " "

typedef struct bench_case {
    const char *name, *args;
} bench_case;

static const bench_case CASES[] = {
    {"b_triclinic (still)", BASE "-cell 70 80 90 75 85 95 -misset 10 20 30 -Na 4 -Nb 5 -Nc 6"},
    {"b2_interp (tricubic)", "-cell 70 80 90 75 85 95 -misset 10 20 30 -hkl " HKL " -N 2 -lambda 1 -distance 200 "
                             "-pixel 0.1 -detpixels 256 -oversample 1"},
    {"k_matfile", BASE "-mat " DB_SOURCE_DIR "/tests/golden/k_matfile/A.mat -N 6"},
    {"c_phi0 (10 phi steps)", BASE "-cell 100 100 100 90 90 90 -misset 10 20 30 -N 10 -phi 0 -osc 0.1 -phisteps 10"},
    {"e_mosaic (10 domains)", BASE "-cell 100 100 100 90 90 90 -misset 10 20 30 -N 10 -mosaic 0.5 -mosaic_dom 10"},
    {"f_div_disp (15 sources)", BASE "-cell 100 100 100 90 90 90 -misset 10 20 30 -N 10 -hdivrange 2 -vdivrange 2 "
                                "-hdivsteps 3 -vdivsteps 3 -dispersion 1 -dispsteps 3"},
};

static void die(const char *what, const db_error *err)
{
    fprintf(stderr, "bench_fjac: %s: %s\n", what, err->message);
    exit(1);
}

static db_sim *make(const char *args)
{
    char *copy = strdup(args), *argv[128], *save = NULL;
    int argc = 0;
    for (char *t = strtok_r(copy, " ", &save); t && argc < 127; t = strtok_r(NULL, " ", &save)) argv[argc++] = t;
    db_config *cfg = db_config_create();
    db_sim *sim = NULL;
    db_error err;
    if (db_config_parse(cfg, argc, (const char *const *)argv, &err) || db_sim_create(&sim, cfg, NULL, &err))
        die(args, &err);
    db_config_destroy(cfg);
    free(copy);
    return sim;
}

int main(int argc, char **argv)
{
    int runs = argc > 1 ? atoi(argv[1]) : 5;
    if (runs < 1 || runs > 1000) {
        fprintf(stderr, "usage: bench_fjac [RUNS (1..1000, default 5)]\n");
        return 2;
    }
    db_error err;
    int params[DB_MAX_CHUNK];
    int np = db_param_parse_list(MISSION, params, &err);
    if (np < 0) die("parameters", &err);
    printf("bench_fjac: whole 256x256 detector selected, median of %d rounds; times in ms\n", runs);
    printf("%-24s %8s %8s %8s %8s %10s %10s %8s %8s\n", "case", "P", "P+F", "D", "D+F", "(D+F-D)/P", "(P+F-P)/P",
           "nnz/pix", "B/nnz");
    for (size_t c = 0; c < sizeof CASES / sizeof CASES[0]; c++) {
        db_sim *sim = make(CASES[c].args);
        int F, S;
        db_sim_size(sim, &F, &S);
        int box[4] = {0, F - 1, 0, S - 1};
        if (db_sim_select_boxes(sim, box, 1, &err)) die("boxes", &err);
        long m = db_sim_selected_count(sim);
        double *values = malloc((size_t)m * sizeof(double)), *jac = malloc((size_t)m * np * sizeof(double));
        double *t[4];
        for (int k = 0; k < 4; k++) t[k] = malloc((size_t)runs * sizeof(double));
        long nnz = 0;
        db_csr J = {0}; /* reused from run to run, as a refinement loop would */
        for (int r = -1; r < runs; r++) { /* round -1 warms the caches (table blocks, pages) and is not counted */
            for (int j = 0; j < 4; j++) {
                int k = (j + (r < 0 ? 0 : r)) % 4; /* a different one first in each round */
                double t0 = bench_now();
                int rc = k == 0   ? db_sim_run_selected(sim, NULL, 0, values, NULL, &err)
                         : k == 1 ? db_sim_run_selected_F(sim, NULL, 0, values, NULL, &J, &err)
                         : k == 2 ? db_sim_run_selected(sim, params, np, values, jac, &err)
                                  : db_sim_run_selected_F(sim, params, np, values, jac, &J, &err);
                double dt = bench_now() - t0;
                if (rc) die(CASES[c].name, &err);
                if (k == 1 || k == 3) nnz = J.nnz;
                if (r >= 0) t[k][r] = dt;
            }
        }
        double P = bench_median(t[0], runs), PF = bench_median(t[1], runs), D = bench_median(t[2], runs),
               DF = bench_median(t[3], runs);
        /* CSR: a long column and a double value per nonzero, a long row pointer per pixel */
        double bytes = (double)nnz * (sizeof(long) + sizeof(double)) + (double)(m + 1) * sizeof(long);
        printf("%-24s %8.2f %8.2f %8.2f %8.2f %10.3f %10.3f %8.2f %8.1f\n", CASES[c].name, 1e3 * P, 1e3 * PF, 1e3 * D,
               1e3 * DF, (DF - D) / P, (PF - P) / P, (double)nnz / (double)m, nnz ? bytes / (double)nnz : 0.0);
        fflush(stdout);
        db_csr_free(&J);
        for (int k = 0; k < 4; k++) free(t[k]);
        free(values);
        free(jac);
        db_sim_destroy(sim);
    }
    return 0;
}
