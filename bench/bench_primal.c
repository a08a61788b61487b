/* bench_primal: whole-process time of the command line on the three anchor cases (../shared/anchors.md),
 * OMP_NUM_THREADS=1 and 2, median of several runs.
 * Usage: bench_primal [RUNS] [path/to/dualbragg] [path/to/nanoBragg]
 * With a reference binary (nanoBragg built from its public source with gcc -O2 -fopenmp, outside this
 * repository), both programs run alternately on the same inputs, so that machine noise hits both alike, and the
 * ratio is of the two medians measured here; without one, the reference's figures written down once for this
 * machine class (anchors.md) stand in, which a busy or different machine makes meaningless. dualbragg defaults
 * to the one next to this program. */
#define _GNU_SOURCE
#include "bench_util.h"

#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct bench_case {
    const char *name, *args;
    double ref_1thread, ref_2threads; /* nanoBragg, seconds (anchors.md) */
} bench_case;

static const bench_case CASES[] = {
    {"light", "-cell 100 100 100 90 90 90 -default_F 100 -N 5 -lambda 1 -distance 100 -pixel 0.1 -detpixels 1024 -oversample 1", 0.205, 0.120},
    {"auto-oversample", "-cell 100 100 100 90 90 90 -default_F 100 -N 5 -lambda 1 -distance 100 -pixel 0.1 -detpixels 1024", 0.677, 0.367},
    {"heavy", "-cell 100 100 100 90 90 90 -misset 10 20 30 -default_F 100 -N 5 -lambda 1 -distance 100 -pixel 0.2 "
              "-detpixels 512 -oversample 1 -phi 0 -osc 1 -phisteps 10 -mosaic 0.5 -mosaic_dom 10", 3.10, 1.56},
};
static const char *TAIL = "-noprogress -nopgm -nonoise -floatfile o.bin -intfile o.img";


/* One whole-process run in dir; returns seconds, or -1. */
static double run_once(const char *exe, const char *dir, const char *args, int threads)
{
    char line[4096];
    snprintf(line, sizeof line, "%s %s", args, TAIL);
    char *argv[128], *save = NULL;
    int argc = 0;
    argv[argc++] = (char *)exe;
    for (char *t = strtok_r(line, " ", &save); t && argc < 127; t = strtok_r(NULL, " ", &save)) argv[argc++] = t;
    argv[argc] = NULL;
    double t0 = bench_now();
    pid_t pid = fork();
    if (pid == 0) {
        if (chdir(dir)) _exit(126);
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 1);
        char t[16];
        snprintf(t, sizeof t, "%d", threads);
        setenv("OMP_NUM_THREADS", t, 1);
        execv(exe, argv);
        _exit(127);
    }
    int status;
    waitpid(pid, &status, 0);
    double t1 = bench_now();
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? t1 - t0 : -1.0;
}

int main(int argc, char **argv)
{
    int runs = argc > 1 ? atoi(argv[1]) : 5;
    if (runs < 1 || runs > 99) runs = 5;
    char exe[4096];
    if (argc > 2) {
        snprintf(exe, sizeof exe, "%s", argv[2]);
    } else {
        char self[4096];
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        if (n <= 0) return 1;
        self[n] = '\0';
        snprintf(exe, sizeof exe, "%s/dualbragg", dirname(self));
    }
    const char *ref = argc > 3 ? argv[3] : NULL;
    char dir[] = "/tmp/dualbragg-bench-XXXXXX";
    if (!mkdtemp(dir)) return 1;
    if (ref)
        printf("bench_primal: %s beside %s, whole process, alternating, median of %d runs each\n", exe, ref, runs);
    else
        printf("bench_primal: %s, whole process, median of %d runs (reference: figures written down for this machine "
               "class in anchors.md; give a reference binary as the third argument to measure it here)\n", exe, runs);
    printf("%-16s %7s %12s %14s %9s %16s\n", "case", "threads", "dualbragg_s", "reference_s", "speedup", "time_vs_reference");
    for (size_t c = 0; c < sizeof CASES / sizeof CASES[0]; c++) {
        for (int threads = 1; threads <= 2; threads++) {
            double t[99], tr[99];
            for (int r = 0; r < runs; r++) {
                t[r] = run_once(exe, dir, CASES[c].args, threads);
                tr[r] = ref ? run_once(ref, dir, CASES[c].args, threads) : 0.0;
                if (t[r] < 0 || tr[r] < 0) {
                    fprintf(stderr, "bench_primal: %s failed (%s)\n", CASES[c].name, t[r] < 0 ? exe : ref);
                    return 1;
                }
            }
            double med = bench_median(t, runs);
            double rmed = ref ? bench_median(tr, runs) : threads == 1 ? CASES[c].ref_1thread : CASES[c].ref_2threads;
            printf("%-16s %7d %12.3f %14.3f %9.2f %16.2f\n", CASES[c].name, threads, med, rmed, rmed / med, med / rmed);
            fflush(stdout);
        }
    }
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "bench_primal: could not remove %s\n", dir);
    return 0;
}
