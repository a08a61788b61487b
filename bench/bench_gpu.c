/* bench_gpu.c: the CUDA renderer on anchors.md's cases B0 and B1 at 1024 x 1024 in double precision: forward only,
 * and forward plus the eleven mission derivative images at 1, 2, 3 and 4 directions per pass. Prints the kernel time
 * (device events, summed over a run's passes; median of 7 runs after 2 warm-ups), the end-to-end time of the
 * library call (uploads, kernels, copies back, statistics), the device memory the simulation holds, the GPU's
 * name, and the CPU's time for the same run beside it (this machine's threads) for the ratio. Exit 77 without a
 * usable GPU. */
#include "dualbragg.h"
#include "device.h"
#include "run_clients.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RUNS 7

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp);
    return v[n / 2];
}

static db_sim *make(const char *extra, const char *device)
{
    char line[1024];
    snprintf(line, sizeof line,
             "-cell 100 100 100 90 90 90 -default_F 100 -N 5 -lambda 6.2 -distance 100 -pixel 0.1 -detpixels 1024 "
             "-oversample 1 %s", extra);
    const char *argv[64];
    int argc = 0;
    for (char *tok = strtok(line, " "); tok && argc < 64; tok = strtok(NULL, " ")) argv[argc++] = tok;
    db_config *cfg = db_config_create();
    db_error err;
    db_sim *sim = NULL;
    if (db_config_parse(cfg, argc, argv, &err) || db_sim_create(&sim, cfg, NULL, &err) ||
        db_sim_set_device(sim, device, &err)) {
        fprintf(stderr, "bench_gpu: %s\n", err.message);
        exit(strstr(err.message, "-device cuda") ? 77 : 1);
    }
    db_config_destroy(cfg);
    return sim;
}

/* Median kernel and end-to-end milliseconds of a run (nparams 0: forward only). */
static void time_runs(db_sim *sim, const int *params, int nparams, int runs, double *kernel_ms, double *total_ms)
{
    const size_t n = 1024 * 1024;
    float *img = malloc(n * sizeof(float));
    double *img64 = malloc(n * sizeof(double));
    double *grads = nparams ? malloc((size_t)nparams * n * sizeof(double)) : NULL;
    double k[RUNS + 2], t[RUNS + 2];
    db_error err;
    for (int r = 0; r < runs + 2; r++) {
        double k0 = db_cuda_kernel_ms(db_sim_device_context(sim)), t0 = now();
        int rc = nparams ? db_sim_run_grad(sim, params, nparams, img, img64, grads, &err) : db_sim_run(sim, img, img64, &err);
        if (rc) {
            fprintf(stderr, "bench_gpu: %s\n", err.message);
            exit(1);
        }
        t[r] = 1e3 * (now() - t0);
        k[r] = db_cuda_kernel_ms(db_sim_device_context(sim)) - k0;
    }
    *kernel_ms = median(k + 2, runs); /* after two warm-ups */
    *total_ms = median(t + 2, runs);
    free(img);
    free(img64);
    free(grads);
}

int main(void)
{
    static const char *const cases[2][2] = {{"B0", ""}, {"B1", "-phi 0 -osc 1 -phisteps 10 -mosaic 0.5 -mosaic_dom 10"}};
    int params[16];
    db_error err;
    int np = db_param_parse_list("a,b,c,alpha,beta,gamma,misset_x,misset_y,misset_z,phi0,osc", params, &err);
    db_sim *probe = make("", "cuda");
    printf("bench_gpu: %s, double precision, 1024 x 1024, median of %d runs after 2 warm-ups\n", db_sim_device(probe), RUNS);
    db_sim_destroy(probe);
    printf("%-4s %-28s %12s %14s %12s %12s\n", "case", "run", "kernel_ms", "end_to_end_ms", "device_MiB", "cpu_ms");
    for (int c = 0; c < 2; c++) {
        double kms, tms, cpu_k, cpu_t;
        /* the CPU beside it, once per case and run kind (fewer repeats: it is the slow one) */
        db_sim *cpu = make(cases[c][1], "cpu");
        time_runs(cpu, NULL, 0, 3, &cpu_k, &cpu_t);
        db_sim *gpu = make(cases[c][1], "cuda");
        time_runs(gpu, NULL, 0, RUNS, &kms, &tms);
        printf("%-4s %-28s %12.3f %14.3f %12.1f %12.1f\n", cases[c][0], "forward", kms, tms,
               db_cuda_context_bytes(db_sim_device_context(gpu)) / 1048576.0, cpu_t);
        db_sim_destroy(gpu);
        double cpu_grad_t;
        time_runs(cpu, params, np, 1, &cpu_k, &cpu_grad_t);
        db_sim_destroy(cpu);
        static const int chunks[6] = {1, 2, 3, 4, 6, 12};
        for (int q = 0; q < 6; q++) {
            gpu = make(cases[c][1], "cuda");
            db_sim_set_chunk(gpu, chunks[q]);
            time_runs(gpu, params, np, RUNS, &kms, &tms);
            char what[64];
            snprintf(what, sizeof what, "forward + 11 derivs, %d/pass", chunks[q]);
            printf("%-4s %-28s %12.3f %14.3f %12.1f %12.1f\n", cases[c][0], what, kms, tms,
                   db_cuda_context_bytes(db_sim_device_context(gpu)) / 1048576.0, q == 0 ? cpu_grad_t : 0.0);
            db_sim_destroy(gpu);
        }
    }
    printf("kernel_ms: device events around every launch of the run (forward + derivatives: one launch per pass);\n"
           "end_to_end_ms: the library call (uploads, kernels, copies back, scatter, statistics); device_MiB: the\n"
           "simulation's device buffers (F, table block, spans, outputs); cpu_ms: the same run on this machine's CPU\n"
           "(end to end; 0 where not repeated)\n");
    return 0;
}
