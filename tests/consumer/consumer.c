/* A program of another project built against an installed dualbragg (tests/install_consumer.sh): a tiny simulation
 * through the public header only, checked against known numbers. */
#include "dualbragg.h"
#include <stdio.h>
#include <stdlib.h>

int main(void)
{
    const char *args[] = {"-cell", "100", "100", "100", "90", "90", "90", "-default_F", "100", "-N", "5",
                          "-detpixels", "32", "-pixel", "0.1", "-distance", "100", "-oversample", "1"};
    db_error err;
    db_config *cfg = db_config_create();
    db_sim *sim = NULL;
    int nf = 0, ns = 0;
    if (!cfg || db_config_parse(cfg, 19, args, &err) || db_sim_create(&sim, cfg, NULL, &err)) {
        fprintf(stderr, "consumer: %s\n", cfg ? err.message : "out of memory");
        return 1;
    }
    db_sim_size(sim, &nf, &ns);
    float *image = malloc(sizeof(float) * (size_t)nf * ns);
    if (!image || db_sim_run(sim, image, NULL, &err)) {
        fprintf(stderr, "consumer: %s\n", image ? err.message : "out of memory");
        return 1;
    }
    double sum = 0;
    for (int i = 0; i < nf * ns; i++) sum += image[i];
    printf("consumer: %dx%d pixels, sum %.9g, %d parameters\n", nf, ns, sum, db_param_count());
    db_refine_options o; /* from the refinement library */
    db_refine_default_options(&o);
    int ok = nf == 32 && ns == 32 && sum > 0 && db_param_count() > 20 && o.objective == DB_OBJECTIVE_POISSON;
    free(image);
    db_sim_destroy(sim);
    db_config_destroy(cfg);
    return ok ? 0 : 1;
}
