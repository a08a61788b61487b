/* params.c: the one table of differentiable parameters (names, units, configuration fields, conversions). */
#include "params.h"
#include "config.h"
#include "error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define RTD (180.0 * M_1_PI)
#define FIELD(f) offsetof(db_config, f)

static const db_param_info TABLE[DB_P_COUNT] = {
    {"a", "A", 1.0, FIELD(cell_a)},
    {"b", "A", 1.0, FIELD(cell_b)},
    {"c", "A", 1.0, FIELD(cell_c)},
    {"alpha", "deg", RTD, FIELD(cell_alpha)},
    {"beta", "deg", RTD, FIELD(cell_beta)},
    {"gamma", "deg", RTD, FIELD(cell_gamma)},
    {"misset_x", "deg", RTD, FIELD(misset[0])},
    {"misset_y", "deg", RTD, FIELD(misset[1])},
    {"misset_z", "deg", RTD, FIELD(misset[2])},
    {"phi0", "deg", RTD, FIELD(phi0)},
    {"osc", "deg", RTD, FIELD(osc)},
    {"distance", "mm", 1000.0, FIELD(distance)},
    {"xbeam", "mm", 1000.0, FIELD(Xbeam)},
    {"ybeam", "mm", 1000.0, FIELD(Ybeam)},
    {"orgx", "pixel", 1.0, FIELD(ORGX)},
    {"orgy", "pixel", 1.0, FIELD(ORGY)},
    {"lambda", "A", 1.0e10, FIELD(lambda0)},
    {"na", "cells", 1.0, FIELD(Na)},
    {"nb", "cells", 1.0, FIELD(Nb)},
    {"nc", "cells", 1.0, FIELD(Nc)},
    {"mosaic", "deg", RTD, FIELD(mosaic_spread)},
    {"fluence", "photons/m^2", 1.0, FIELD(fluence)},
    {"detector_rotx", "deg", RTD, FIELD(detector_rotx)},
    {"detector_roty", "deg", RTD, FIELD(detector_roty)},
    {"detector_rotz", "deg", RTD, FIELD(detector_rotz)},
    {"twotheta", "deg", RTD, FIELD(detector_twotheta)},
};

const db_param_info *db_param_info_of(int p) { return p >= 0 && p < DB_P_COUNT ? &TABLE[p] : NULL; }

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
