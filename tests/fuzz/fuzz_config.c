/* libFuzzer harness: db_config_parse + db_sim_create on small detectors. The input is a command line, one
 * argument per line. Flags that name files are dropped (the fuzzer must not read /dev/zero or write anywhere)
 * and "-detpixels 8" is appended, so every simulation stays small; counts that would only make set-up slow
 * (mosaic domains, steps) are bounded before db_sim_create. */
#include "fuzz_common.h"
#include "config.h"

#include <math.h>

#define MAX_ARGS 64

static int names_file(const char *a)
{
    static const char *const flags[] = {"-hkl", "-mat", "-matrix", "-sourcefile", "-mask", "-img", "-dump", "-dumpfile"};
    for (size_t k = 0; k < sizeof flags / sizeof *flags; k++)
        if (strcmp(a, flags[k]) == 0) return 1;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096) return 0;
    char *text = (char *)malloc(size + 1);
    if (!text) abort();
    memcpy(text, data, size);
    text[size] = '\0';
    const char *argv[MAX_ARGS + 2];
    int argc = 0;
    for (char *p = text; argc < MAX_ARGS;) {
        char *nl = strchr(p, '\n');
        if (nl) *nl = '\0';
        if (*p) {
            if (names_file(p)) {
                free(text);
                return 0;
            }
            argv[argc++] = p;
        }
        if (!nl) break;
        p = nl + 1;
    }
    argv[argc++] = "-detpixels";
    argv[argc++] = "8";

    db_error err;
    db_config *cfg = db_config_create();
    if (!cfg) abort();
    if (db_config_parse(cfg, argc, argv, &err) == DB_OK) {
        db_plan plan;
        if (db_make_plan(cfg, &plan, &err) == DB_OK) {
            int bounded = plan.mosaic_domains <= 1000 && plan.phisteps <= 1000 && plan.hdivsteps <= 100 &&
                          plan.vdivsteps <= 100 && plan.dispsteps <= 100 && plan.thicksteps <= 100;
            if (bounded) fuzz_config_and_create(argc, argv);
        } else if (!err.message[0]) {
            abort();
        }
    } else if (!err.message[0]) {
        abort();
    }
    db_config_destroy(cfg);
    free(text);
    return 0;
}
