/* bench_refine_stats: the refinement's statistics by simulation (tests/refine_study.h says what is simulated and
 * fitted). Prints, for the Poisson objective with background planes and for least squares with the observed-count
 * (Neyman) weights 1/max(obs, 1) and planes, on images without and with a water background: per parameter the mean
 * z, the fractions within 1 and 2 sigma and the spread over the reported sigma, and the pooled coverage.
 * Usage: bench_refine_stats [SEEDS [FIRST_SEED [path/to/P1.hkl]]]   (default 100 seeds from 1) */
#include "refine_study.h"

int main(int argc, char **argv)
{
    int seeds = argc > 1 ? atoi(argv[1]) : 100;
    int first = argc > 2 ? atoi(argv[2]) : 1;
    const char *hkl = argc > 3 ? argv[3] : DB_SOURCE_DIR "/tests/golden/b_triclinic/P1.hkl";
    if (seeds < 2 || seeds > 100000 || first < 1) {
        fprintf(stderr, "usage: bench_refine_stats [SEEDS (2..100000) [FIRST_SEED (>= 1) [P1.hkl]]]\n");
        return 2;
    }
    static const struct {
        const char *title;
        int objective, weighting;
        double water;
    } runs[] = {
        {"poisson, planes, no water", DB_OBJECTIVE_POISSON, DB_WEIGHTS_POISSON, 0.0},
        {"poisson, planes, water 0.025 um", DB_OBJECTIVE_POISSON, DB_WEIGHTS_POISSON, 0.025},
        {"lsq 1/max(obs,1), planes, no water", DB_OBJECTIVE_LSQ, DB_WEIGHTS_POISSON, 0.0},
        {"lsq 1/max(obs,1), planes, water 0.025 um", DB_OBJECTIVE_LSQ, DB_WEIGHTS_POISSON, 0.025},
    };
    for (size_t k = 0; k < sizeof runs / sizeof runs[0]; k++) {
        study_config c = {hkl, runs[k].water, runs[k].objective, runs[k].weighting, DB_BACKGROUND_PLANES, first, seeds,
                          10, 15};
        study_result r;
        char msg[1200];
        if (study_run(&c, &r, 0, msg, sizeof msg)) {
            fprintf(stderr, "bench_refine_stats: %s\n", msg);
            return 1;
        }
        study_print(stdout, runs[k].title, &c, &r);
        fflush(stdout);
    }
    return 0;
}
