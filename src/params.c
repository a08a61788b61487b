/* params.c: names and units of the differentiable parameters. */
#include "params.h"
#include "error.h"

#include <stdlib.h>
#include <string.h>

static const char *const NAMES[DB_P_COUNT] = {
    "a", "b", "c", "alpha", "beta", "gamma", "misset_x", "misset_y", "misset_z", "phi0", "osc",
    "distance", "xbeam", "ybeam", "orgx", "orgy", "lambda", "na", "nb", "nc", "mosaic", "fluence",
};
static const char *const UNITS[DB_P_COUNT] = {
    "A", "A", "A", "deg", "deg", "deg", "deg", "deg", "deg", "deg", "deg",
    "mm", "mm", "mm", "pixel", "pixel", "A", "cells", "cells", "cells", "deg", "photons/m^2",
};

int db_param_count(void) { return DB_P_COUNT; }

const char *db_param_name(int p) { return p >= 0 && p < DB_P_COUNT ? NAMES[p] : NULL; }

const char *db_param_unit(int p) { return p >= 0 && p < DB_P_COUNT ? UNITS[p] : NULL; }

int db_param_from_name(const char *name)
{
    for (int p = 0; p < DB_P_COUNT; p++)
        if (strcmp(NAMES[p], name) == 0) return p;
    return -1;
}

int db_param_parse_list(const char *list, int *params, db_error *err)
{
    if (strcmp(list, "all") == 0) {
        for (int p = 0; p < DB_P_COUNT; p++) params[p] = p;
        return DB_P_COUNT;
    }
    int n = 0;
    const char *s = list;
    while (*s) {
        const char *e = strchr(s, ',');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        char name[32];
        if (len == 0 || len >= sizeof name) {
            db_fail(err, DB_ERR_ARGUMENT, "-grad: empty or overlong parameter name in '%s'", list);
            return -1;
        }
        memcpy(name, s, len);
        name[len] = '\0';
        int p = db_param_from_name(name);
        if (p < 0) {
            db_fail(err, DB_ERR_ARGUMENT,
                    "-grad: unknown parameter '%s' (expected 'all' or a comma-separated list of: a b c alpha beta "
                    "gamma misset_x misset_y misset_z phi0 osc distance xbeam ybeam orgx orgy lambda na nb nc mosaic fluence)",
                    name);
            return -1;
        }
        for (int k = 0; k < n; k++)
            if (params[k] == p) {
                db_fail(err, DB_ERR_ARGUMENT, "-grad: parameter '%s' is listed twice", name);
                return -1;
            }
        params[n++] = p;
        s += len;
        if (*s == ',') s++;
    }
    if (n == 0) db_fail(err, DB_ERR_ARGUMENT, "-grad: no parameters given");
    return n > 0 ? n : -1;
}
