/* params.h: the parameters a derivative can be taken with respect to, a value can be set to, and gradcheck
 * moves: one table (params.c) gives each its name, flags, unit, conversion, value rule, what can fix it, and where
 * and how the configuration holds it. Values cross the API in the command line's unit (README "Derivatives").
 * A new parameter is its enum, its row, its flag's case in config_flags.c and its seed in the physics
 * (tables_impl.h); values.c, the programs (-cmdline, -refine_shared) and the bindings read the row. */
#ifndef DB_PARAMS_H
#define DB_PARAMS_H

#include "dualbragg.h"

#include <stddef.h>

typedef enum db_param {
    DB_P_A, DB_P_B, DB_P_C, DB_P_ALPHA, DB_P_BETA, DB_P_GAMMA,
    DB_P_MISSET_X, DB_P_MISSET_Y, DB_P_MISSET_Z,
    DB_P_PHI0, DB_P_OSC,
    DB_P_DISTANCE, DB_P_XBEAM, DB_P_YBEAM, DB_P_ORGX, DB_P_ORGY,
    DB_P_LAMBDA, DB_P_NA, DB_P_NB, DB_P_NC, DB_P_MOSAIC, DB_P_FLUENCE,
    DB_P_ROTX, DB_P_ROTY, DB_P_ROTZ, DB_P_TWOTHETA,
    DB_P_COUNT
} db_param;

#define DB_MISSION_PARAMS 11 /* a..gamma, misset_x..z, phi0, osc: required on every configuration */

/* what a value must satisfy, in the command line's unit (the check that needs more than the value, the cell's
 * closing, stays with its callers) */
typedef enum db_param_rule {
    DB_RULE_ANY,
    DB_RULE_POSITIVE,
    DB_RULE_NONNEGATIVE,
    DB_RULE_ANGLE_0_180,
    DB_RULE_CELL_COUNT, /* 1 to DB_MAX_CELLS unit cells per crystal edge (config.h: the lattice factor's integers) */
    DB_RULE_SPREAD      /* at most DB_MAX_MOSAIC_DEG (config.h: the spread is rounded to float) */
} db_param_rule;
/* what can fix a parameter instead of leaving it free (db_param_fixed in plan.c says whether it does) */
typedef enum db_param_fixing {
    DB_FIXED_NEVER,
    DB_FIXED_BY_FLUX,        /* the fluence, when -flux, -exposure and -beamsize give it */
    DB_FIXED_BY_SIZE,        /* N along an axis, when a crystal size gives it */
    DB_FIXED_WITHOUT_DOMAINS /* the mosaic spread, in a simulation made without mosaic domains */
} db_param_fixing;

/* how the configuration holds a value beyond its field (values.c reads and sets each kind its way) */
typedef enum db_param_holding {
    DB_HOLD_FIELD,      /* the field; where it says "not given" (NaN), the plan's default (plan_field) */
    DB_HOLD_CELL,       /* a cell constant: absent b, c stand for a and absent angles for 90 degrees; under -mat,
                         * the matrix's own cell plus what set_params moved it by */
    DB_HOLD_MISSET,     /* the misset in force: a drawn one (-misset random) stays when one angle moves */
    DB_HOLD_STEP_COUNT  /* osc: the phi step count stays, the step moves */
} db_param_holding;

#define DB_NO_PLAN_FIELD ((size_t)-1)
#define DB_PARAM_MAX_ALSO 4
typedef struct db_param_info {
    const char *name, *flag, *unit; /* flag: the command line's spelling ("-cell" for its six values) */
    /* internal = value / divisor, the operation the command-line parser applies (db_param_to_internal, so that a
     * value set through the API is the bits a command line would give); the seed of a derivative is 1 / divisor */
    double divisor;
    size_t field;      /* offsetof(db_config, the double holding it) */
    db_param_rule rule;
    db_param_fixing fixing;
    db_param_holding hold;
    size_t plan_field; /* offsetof(db_plan, the value the plan resolves an unset field to), or DB_NO_PLAN_FIELD */
    /* the command line's other flags that give it a value: aliases, and flags that move it (-ORGX moves the beam
     * centre); with flag, what the ensemble refuses on a still's line for a shared parameter */
    const char *also[DB_PARAM_MAX_ALSO];
} db_param_info;

const db_param_info *db_param_info_of(int param); /* NULL when out of range */
/* value (the command line's unit) / the parameter's divisor: the configuration's value; and back */
double db_param_to_internal(int param, double value);
double db_param_from_internal(int param, double internal);
/* The parameter's rule on value (the command line's unit): DB_OK, or DB_ERR_GEOMETRY with a message that begins
 * with label (the parameter's flag when NULL), says what was expected and what came. */
int db_param_check_value(int param, double value, const char *label, db_error *err);
/* The next item of a comma-separated list: copies it into item[cap] and advances *cursor past it and its comma
 * (to NULL after the last item). Returns 1, or 0 when the item is empty (two commas, a leading or trailing comma)
 * or does not fit, *cursor then left at that item. The splitting of every list flag (-refine, -grad, -prior_still). */
int db_list_next_item(const char **cursor, char *item, size_t cap);
/* db_param_parse_list with messages that name flag, the option the user typed ("-refine", "-grad"). */
int db_param_parse_list_for(const char *flag, const char *list, int *params, db_error *err);
/* Every index known and none twice (the rule of every call that takes a parameter list). */
int db_param_check_list(const int *params, int n, db_error *err);

#endif
