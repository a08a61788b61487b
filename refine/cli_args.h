/* cli_args.h: what the refinement programs (dualbragg-refine, dualbragg-ensemble) share on their command lines and
 * in their JSON: a flag's whole-number and finite-number values, with the error naming the program and the flag,
 * and a JSON number (null for NaN and infinities, which JSON cannot hold). */
#ifndef DB_CLI_ARGS_H
#define DB_CLI_ARGS_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* A whole number in [lo, hi] for flag; 0 (and the message on stderr) otherwise. */
static inline int db_arg_whole(const char *prog, const char *flag, const char *s, long lo, long hi, int *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || v != floor(v) || v < (double)lo || v > (double)hi) {
        fprintf(stderr, "%s: error: %s expects a whole number from %ld to %ld, got '%s'\n", prog, flag, lo, hi, s);
        return 0;
    }
    *out = (int)v;
    return 1;
}

/* A finite number for flag; 0 (and the message on stderr) otherwise. */
static inline int db_arg_number(const char *prog, const char *flag, const char *s, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !isfinite(v)) {
        fprintf(stderr, "%s: error: %s expects a finite number, got '%s'\n", prog, flag, s);
        return 0;
    }
    *out = v;
    return 1;
}

static inline void db_json_number(FILE *o, double v)
{
    if (isfinite(v)) fprintf(o, "%.17g", v);
    else fputs("null", o);
}

#endif
