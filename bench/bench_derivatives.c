/* bench_derivatives: the CPU cost of derivative images. For each anchor case (../shared/anchors.md) and
 * thread count: time of the primal run, of the primal plus the eleven mission derivatives (one pass of 12
 * directions), of the primal plus all 26 parameters' derivatives (one 28-direction pass), their ratios to the primal
 * (central differences would cost 23 and 53 primal runs), and the peak resident memory of the first two, each
 * measured in a child process of its own. Median of several runs. */
#include "dualbragg.h"
#include "bench_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

typedef struct bench_case {
    const char *name;
    const char *args;
} bench_case;

static const bench_case CASES[] = {
    {"light", "-cell 100 100 100 90 90 90 -default_F 100 -N 5 -lambda 1 -distance 100 -pixel 0.1 -detpixels 1024 -oversample 1"},
    {"auto-oversample", "-cell 100 100 100 90 90 90 -default_F 100 -N 5 -lambda 1 -distance 100 -pixel 0.1 -detpixels 1024"},
    {"heavy", "-cell 100 100 100 90 90 90 -misset 10 20 30 -default_F 100 -N 5 -lambda 1 -distance 100 -pixel 0.2 "
              "-detpixels 512 -oversample 1 -phi 0 -osc 1 -phisteps 10 -mosaic 0.5 -mosaic_dom 10"},
};


/* One measurement in a child: seconds of db_sim_run(_grad) and the child's peak RSS in MiB, via a pipe. */
static int measure(const char *args, int nparams, int threads, double *seconds, double *rss_mib)
{
    int fd[2];
    if (pipe(fd)) return -1;
    pid_t pid = fork();
    if (pid == 0) {
        close(fd[0]);
        char *copy = strdup(args), *argv[128], *save = NULL;
        int argc = 0;
        for (char *t = strtok_r(copy, " ", &save); t && argc < 127; t = strtok_r(NULL, " ", &save)) argv[argc++] = t;
#ifdef _OPENMP
        omp_set_num_threads(threads);
#else
        (void)threads;
#endif
        db_error err;
        db_config *cfg = db_config_create();
        db_sim *sim;
        if (db_config_parse(cfg, argc, (const char *const *)argv, &err) || db_sim_create(&sim, cfg, NULL, &err)) _exit(2);
        int F, S;
        db_sim_size(sim, &F, &S);
        size_t n = (size_t)F * S;
        float *img = malloc(n * sizeof(float));
        double *grads = nparams ? malloc((size_t)nparams * n * sizeof(double)) : NULL;
        int params[26];
        for (int k = 0; k < 26; k++) params[k] = k; /* a..gamma, misset_x..z, phi0, osc first; then all the others */
        double t0 = bench_now();
        int rc = nparams ? db_sim_run_grad(sim, params, nparams, img, NULL, grads, &err) : db_sim_run(sim, img, NULL, &err);
        double t1 = bench_now();
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        double out[2] = {t1 - t0, (double)ru.ru_maxrss / 1024.0};
        if (rc || write(fd[1], out, sizeof out) != (ssize_t)sizeof out) _exit(3);
        _exit(0);
    }
    close(fd[1]);
    double in[2];
    ssize_t got = read(fd[0], in, sizeof in);
    close(fd[0]);
    int status;
    waitpid(pid, &status, 0);
    if (got != (ssize_t)sizeof in || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return -1;
    *seconds = in[0];
    *rss_mib = in[1];
    return 0;
}

int main(int argc, char **argv)
{
    int runs = argc > 1 ? atoi(argv[1]) : 5;
    const char *only = argc > 2 ? argv[2] : NULL; /* optional: one case by name */
    if (runs < 1 || runs > 99) runs = 5;
    printf("bench_derivatives: median of %d runs each, in-process time of the run (setup excluded)\n", runs);
    printf("%-16s %7s %11s %15s %7s %15s %7s %11s %13s\n", "case", "threads", "primal_s", "primal+11d_s", "ratio",
           "primal+26d_s", "ratio", "rss_MiB", "rss+11d_MiB");
    for (size_t c = 0; c < sizeof CASES / sizeof CASES[0]; c++) {
        if (only && strcmp(only, CASES[c].name) != 0) continue;
        for (int threads = 1; threads <= 2; threads++) {
            double tp[99], td[99], ta[99], rp = 0, rd = 0, ra = 0;
            for (int r = 0; r < runs; r++) {
                /* alternate the modes so that machine noise hits them alike */
                if (measure(CASES[c].args, 0, threads, &tp[r], &rp) || measure(CASES[c].args, 11, threads, &td[r], &rd) ||
                    measure(CASES[c].args, 26, threads, &ta[r], &ra)) {
                    fprintf(stderr, "bench_derivatives: a run of %s failed\n", CASES[c].name);
                    return 1;
                }
            }
            double mp = bench_median(tp, runs), md = bench_median(td, runs), ma = bench_median(ta, runs);
            printf("%-16s %7d %11.3f %15.3f %7.2f %15.3f %7.2f %11.1f %13.1f\n", CASES[c].name, threads, mp, md, md / mp, ma,
                   ma / mp, rp, rd);
            fflush(stdout);
        }
    }
    printf("central differences: 23 primal runs for eleven parameters, 53 for 26; targets 3 and 5\n");
    return 0;
}
