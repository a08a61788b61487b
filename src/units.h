/* units.h: the command line's units against the SI units the configuration holds (config.h), once. The
 * command line, SMV headers, the parameter table (params.c) and the outputs convert through these, each the very
 * constant the reference uses, so that a value crossing any of them gives the same bits. */
#ifndef DB_UNITS_H
#define DB_UNITS_H

#include <math.h>

#define DB_RTD (180.0 * M_1_PI) /* degrees a radian (the reference's RTD): angles are given in degrees */
#define DB_MM_PER_M 1000.0      /* lengths and positions are given in mm */
#define DB_MRAD_PER_RAD 1000.0  /* divergences are given in mrad */
#define DB_A_PER_M 1.0e10       /* wavelengths and cell edges are given in Angstrom */
/* -dmin's conversion multiplies where the others divide: its own constant keeps its bits */
#define DB_M_PER_A 1.0e-10

#endif
