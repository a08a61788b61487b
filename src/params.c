/* params.c: the one table of differentiable parameters (names, units, configuration fields, conversions). */
#include "params.h"
#include "config.h"
#include "error.h"
#include "units.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define FIELD(f) offsetof(db_config, f)
#define PLAN(f) offsetof(db_plan, f)
#define NO_PLAN DB_NO_PLAN_FIELD

static const db_param_info TABLE[DB_P_COUNT] = {
    /* name            flag              unit           divisor      field
     * rule                fixing                    hold                plan_field   also */
    {"a",             "-cell",          "A",           1.0,         FIELD(cell_a),
     DB_RULE_POSITIVE,    DB_FIXED_NEVER,           DB_HOLD_CELL,       NO_PLAN,     {"-mat", "-matrix"}},
    {"b",             "-cell",          "A",           1.0,         FIELD(cell_b),
     DB_RULE_POSITIVE,    DB_FIXED_NEVER,           DB_HOLD_CELL,       NO_PLAN,     {"-mat", "-matrix"}},
    {"c",             "-cell",          "A",           1.0,         FIELD(cell_c),
     DB_RULE_POSITIVE,    DB_FIXED_NEVER,           DB_HOLD_CELL,       NO_PLAN,     {"-mat", "-matrix"}},
    {"alpha",         "-cell",          "deg",         DB_RTD,      FIELD(cell_alpha),
     DB_RULE_ANGLE_0_180, DB_FIXED_NEVER,           DB_HOLD_CELL,       NO_PLAN,     {"-mat", "-matrix"}},
    {"beta",          "-cell",          "deg",         DB_RTD,      FIELD(cell_beta),
     DB_RULE_ANGLE_0_180, DB_FIXED_NEVER,           DB_HOLD_CELL,       NO_PLAN,     {"-mat", "-matrix"}},
    {"gamma",         "-cell",          "deg",         DB_RTD,      FIELD(cell_gamma),
     DB_RULE_ANGLE_0_180, DB_FIXED_NEVER,           DB_HOLD_CELL,       NO_PLAN,     {"-mat", "-matrix"}},
    {"misset_x",      "-misset",        "deg",         DB_RTD,      FIELD(misset[0]),
     DB_RULE_ANY,         DB_FIXED_NEVER,           DB_HOLD_MISSET,     NO_PLAN,     {"-misset_seed"}},
    {"misset_y",      "-misset",        "deg",         DB_RTD,      FIELD(misset[1]),
     DB_RULE_ANY,         DB_FIXED_NEVER,           DB_HOLD_MISSET,     NO_PLAN,     {"-misset_seed"}},
    {"misset_z",      "-misset",        "deg",         DB_RTD,      FIELD(misset[2]),
     DB_RULE_ANY,         DB_FIXED_NEVER,           DB_HOLD_MISSET,     NO_PLAN,     {"-misset_seed"}},
    {"phi0",          "-phi",           "deg",         DB_RTD,      FIELD(phi0),
     DB_RULE_ANY,         DB_FIXED_NEVER,           DB_HOLD_FIELD,      NO_PLAN,     {NULL}},
    {"osc",           "-osc",           "deg",         DB_RTD,      FIELD(osc),
     DB_RULE_NONNEGATIVE, DB_FIXED_NEVER,           DB_HOLD_STEP_COUNT, NO_PLAN,     {"-phistep"}},
    {"distance",      "-distance",      "mm",          DB_MM_PER_M, FIELD(distance),
     DB_RULE_POSITIVE,    DB_FIXED_NEVER,           DB_HOLD_FIELD,      NO_PLAN,     {"-close_distance"}},
    {"xbeam",         "-Xbeam",         "mm",          DB_MM_PER_M, FIELD(Xbeam),
     DB_RULE_ANY,         DB_FIXED_NEVER,           DB_HOLD_FIELD,      PLAN(Xbeam), {"-Xclose", "-ORGX"}},
    {"ybeam",         "-Ybeam",         "mm",          DB_MM_PER_M, FIELD(Ybeam),
     DB_RULE_ANY,         DB_FIXED_NEVER,           DB_HOLD_FIELD,      PLAN(Ybeam), {"-Yclose", "-ORGY"}},
    {"orgx",          "-ORGX",          "pixel",       1.0,         FIELD(ORGX),
     DB_RULE_ANY,         DB_FIXED_NEVER,           DB_HOLD_FIELD,      PLAN(ORGX),  {"-Xclose", "-Xbeam"}},
    {"orgy",          "-ORGY",          "pixel",       1.0,         FIELD(ORGY),
     DB_RULE_ANY,         DB_FIXED_NEVER,           DB_HOLD_FIELD,      PLAN(ORGY),  {"-Yclose", "-Ybeam"}},
    {"lambda",        "-lambda",        "A",           DB_A_PER_M,  FIELD(lambda0),
     DB_RULE_POSITIVE,    DB_FIXED_NEVER,           DB_HOLD_FIELD,      NO_PLAN,     {"-wave", "-energy"}},
    {"na",            "-Na",            "cells",       1.0,         FIELD(Na),
     DB_RULE_CELL_COUNT,  DB_FIXED_BY_SIZE,         DB_HOLD_FIELD,      NO_PLAN,     {"-N"}},
    {"nb",            "-Nb",            "cells",       1.0,         FIELD(Nb),
     DB_RULE_CELL_COUNT,  DB_FIXED_BY_SIZE,         DB_HOLD_FIELD,      NO_PLAN,     {"-N"}},
    {"nc",            "-Nc",            "cells",       1.0,         FIELD(Nc),
     DB_RULE_CELL_COUNT,  DB_FIXED_BY_SIZE,         DB_HOLD_FIELD,      NO_PLAN,     {"-N"}},
    {"mosaic",        "-mosaic",        "deg",         DB_RTD,      FIELD(mosaic_spread),
     DB_RULE_SPREAD,      DB_FIXED_WITHOUT_DOMAINS, DB_HOLD_FIELD,      NO_PLAN,
     {"-mosaici", "-mosaicity", "-mosaic_spr", "-mosaic_spread"}},
    {"fluence",       "-fluence",       "photons/m^2", 1.0,         FIELD(fluence),
     DB_RULE_NONNEGATIVE, DB_FIXED_BY_FLUX,         DB_HOLD_FIELD,      NO_PLAN,
     {"-flux", "-exposure", "-beamsize"}},
    {"detector_rotx", "-detector_rotx", "deg",         DB_RTD,      FIELD(detector_rotx),
     DB_RULE_ANY,         DB_FIXED_NEVER,           DB_HOLD_FIELD,      NO_PLAN,     {NULL}},
    {"detector_roty", "-detector_roty", "deg",         DB_RTD,      FIELD(detector_roty),
     DB_RULE_ANY,         DB_FIXED_NEVER,           DB_HOLD_FIELD,      NO_PLAN,     {NULL}},
    {"detector_rotz", "-detector_rotz", "deg",         DB_RTD,      FIELD(detector_rotz),
     DB_RULE_ANY,         DB_FIXED_NEVER,           DB_HOLD_FIELD,      NO_PLAN,     {NULL}},
    {"twotheta",      "-twotheta",      "deg",         DB_RTD,      FIELD(detector_twotheta),
     DB_RULE_ANY,         DB_FIXED_NEVER,           DB_HOLD_FIELD,      NO_PLAN,     {NULL}},
};

const db_param_info *db_param_info_of(int p) { return p >= 0 && p < DB_P_COUNT ? &TABLE[p] : NULL; }

double db_param_to_internal(int p, double value) { return value / TABLE[p].divisor; }

double db_param_from_internal(int p, double internal) { return internal * TABLE[p].divisor; }

int db_param_check_value(int p, double v, const char *label, db_error *err)
{
    const db_param_info *t = &TABLE[p];
    if (!label) label = t->flag;
    switch (t->rule) {
    case DB_RULE_POSITIVE:
        if (!(v > 0.0)) return db_fail(err, DB_ERR_GEOMETRY, "%s: must be positive (got %g %s)", label, v, t->unit);
        break;
    case DB_RULE_NONNEGATIVE:
        if (!(v >= 0.0)) return db_fail(err, DB_ERR_GEOMETRY, "%s: must be >= 0 (got %g %s)", label, v, t->unit);
        break;
    case DB_RULE_ANGLE_0_180:
        if (!(v > 0.0 && v < 180.0))
            return db_fail(err, DB_ERR_GEOMETRY, "%s: a cell angle must lie between 0 and 180 degrees (got %g)", label, v);
        break;
    case DB_RULE_CELL_COUNT:
        if (!(v >= 1.0 && v <= DB_MAX_CELLS))
            return db_fail(err, DB_ERR_GEOMETRY, "%s: must be from 1 to %.0e unit cells per crystal edge (got %g)", label,
                           DB_MAX_CELLS, v);
        break;
    case DB_RULE_SPREAD:
        if (!(v <= DB_MAX_MOSAIC_DEG))
            return db_fail(err, DB_ERR_GEOMETRY, "%s: must be a spread of at most %g degrees (got %g)", label,
                           DB_MAX_MOSAIC_DEG, v);
        break;
    default: break;
    }
    return DB_OK;
}

int db_param_check_list(const int *params, int n, db_error *err)
{
    if (n < 0 || (n > 0 && !params)) return db_fail(err, DB_ERR_ARGUMENT, "%d parameters but no list", n);
    for (int k = 0; k < n; k++) {
        if (params[k] < 0 || params[k] >= DB_P_COUNT)
            return db_fail(err, DB_ERR_ARGUMENT, "unknown parameter index %d (expected 0..%d)", params[k], DB_P_COUNT - 1);
        for (int j = 0; j < k; j++)
            if (params[j] == params[k])
                return db_fail(err, DB_ERR_ARGUMENT, "parameter '%s' is listed twice", TABLE[params[k]].name);
    }
    return DB_OK;
}

int db_param_count(void) { return DB_P_COUNT; }

const char *db_param_name(int p) { return p >= 0 && p < DB_P_COUNT ? TABLE[p].name : NULL; }

const char *db_param_unit(int p) { return p >= 0 && p < DB_P_COUNT ? TABLE[p].unit : NULL; }

int db_param_from_name(const char *name)
{
    if (!name) return -1;
    for (int p = 0; p < DB_P_COUNT; p++)
        if (strcmp(TABLE[p].name, name) == 0) return p;
    return -1;
}

int db_list_next_item(const char **cursor, char *item, size_t cap)
{
    const char *s = *cursor, *e = strchr(s, ',');
    const size_t len = e ? (size_t)(e - s) : strlen(s);
    if (len == 0 || len >= cap) return 0;
    memcpy(item, s, len);
    item[len] = '\0';
    *cursor = e ? e + 1 : NULL;
    return 1;
}

int db_param_parse_list_for(const char *flag, const char *list, int *params, db_error *err)
{
    if (!list || !params) return db_fail(err, DB_ERR_ARGUMENT, "%s: no parameter list", flag), -1;
    if (strcmp(list, "all") == 0) {
        for (int p = 0; p < DB_P_COUNT; p++) params[p] = p;
        return DB_P_COUNT;
    }
    int n = 0;
    const char *s = list;
    while (s) {
        char name[32];
        if (!db_list_next_item(&s, name, sizeof name)) { /* a trailing comma leaves an empty name */
            db_fail(err, DB_ERR_ARGUMENT, "%s: empty or overlong parameter name in '%s'", flag, list);
            return -1;
        }
        int p = db_param_from_name(name);
        if (p < 0) {
            char known[512] = "";
            for (int q = 0; q < DB_P_COUNT; q++) {
                strcat(known, " ");
                strcat(known, TABLE[q].name);
            }
            db_fail(err, DB_ERR_ARGUMENT, "%s: unknown parameter '%s' (expected 'all' or a comma-separated list of:%s)",
                    flag, name, known);
            return -1;
        }
        for (int k = 0; k < n; k++)
            if (params[k] == p) {
                db_fail(err, DB_ERR_ARGUMENT, "%s: parameter '%s' is listed twice", flag, name);
                return -1;
            }
        params[n++] = p;
    }
    return n;
}

int db_param_parse_list(const char *list, int *params, db_error *err)
{
    return db_param_parse_list_for("-grad", list, params, err);
}
