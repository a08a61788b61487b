/* params.h: the parameters a derivative can be taken with respect to: one command-line value each, in the
 * command line's own unit (README "Derivatives"). */
#ifndef DB_PARAMS_H
#define DB_PARAMS_H

#include "dualbragg.h"

typedef enum db_param {
    DB_P_A, DB_P_B, DB_P_C, DB_P_ALPHA, DB_P_BETA, DB_P_GAMMA,
    DB_P_MISSET_X, DB_P_MISSET_Y, DB_P_MISSET_Z,
    DB_P_PHI0, DB_P_OSC,
    DB_P_DISTANCE, DB_P_XBEAM, DB_P_YBEAM, DB_P_ORGX, DB_P_ORGY,
    DB_P_LAMBDA, DB_P_NA, DB_P_NB, DB_P_NC, DB_P_MOSAIC, DB_P_FLUENCE,
    DB_P_COUNT
} db_param;

#define DB_MISSION_PARAMS 11 /* a..gamma, misset_x..z, phi0, osc: required on every configuration */

#endif
