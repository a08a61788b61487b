/* golden_case.h: a golden case's command line and a simulation made from it, for cmocka tests (include after
 * cmocka.h and cli_harness.h). */
#ifndef DB_GOLDEN_CASE_H
#define DB_GOLDEN_CASE_H

#include "dualbragg.h"

/* The case's command line (line 1 of cmd.txt); the working folder becomes the case's folder (for P1.hkl, A.mat,
 * sources.txt). */
static inline void case_args(const char *name, harness_args *a)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/%s", DB_GOLDEN_DIR, name);
    assert_int_equal(chdir(dir), 0);
    memset(a, 0, sizeof *a);
    assert_int_equal(harness_case_args(DB_GOLDEN_DIR, name, 1, a), 0);
}

static inline db_sim *sim_from(const harness_args *a)
{
    db_config *cfg = db_config_create();
    db_error err;
    if (db_config_parse(cfg, a->argc, (const char *const *)a->argv, &err)) fail_msg("parse: %s", err.message);
    db_sim *sim = NULL;
    if (db_sim_create(&sim, cfg, NULL, &err)) fail_msg("create: %s", err.message);
    db_config_destroy(cfg);
    return sim;
}

#endif
