/* spec_oracles.h: plain-double versions of formulas as the spec states them (nanobragg-reference.md §3.9,
 * §3.16), written independently of ad/ad.h, for tests that check the dual numbers' values bit for bit.
 * Evaluation order follows the spec's formulas term by term: axis (axis.v)(1 - cos) + v cos + (axis x v) sin. */
#ifndef DB_SPEC_ORACLES_H
#define DB_SPEC_ORACLES_H

#include <math.h>

/* sincg(x, N) = sin(N x) / sin(x), N where x == 0 exactly */
static inline double spec_sincg(double x, double N)
{
    return x == 0.0 ? N : sin(N * x) / sin(x);
}

/* sinc3(x) = 3 (sin x / x - cos x) / x^2, 1 at x == 0 */
static inline double spec_sinc3(double x)
{
    return x == 0.0 ? 1.0 : 3.0 * (sin(x) / x - cos(x)) / (x * x);
}

/* right-handed rotation of v by phi about the unit vector axis (Rodrigues) */
static inline void spec_rotate_axis(const double v[3], const double axis[3], double phi, double out[3])
{
    double c = cos(phi), s = sin(phi);
    double along = (axis[0] * v[0] + axis[1] * v[1] + axis[2] * v[2]) * (1.0 - c);
    double cr[3] = {axis[1] * v[2] - axis[2] * v[1], axis[2] * v[0] - axis[0] * v[2], axis[0] * v[1] - axis[1] * v[0]};
    for (int k = 0; k < 3; k++) out[k] = axis[k] * along + v[k] * c + cr[k] * s;
}

/* Rz(rz) Ry(ry) Rx(rx) v with the spec's matrices, a zero angle skipped */
static inline void spec_rotate(const double v[3], double rx, double ry, double rz, double out[3])
{
    double x = v[0], y = v[1], z = v[2], t;
    if (rx != 0) {
        double c = cos(rx), s = sin(rx);
        t = y * c - z * s;
        z = y * s + z * c;
        y = t;
    }
    if (ry != 0) {
        double c = cos(ry), s = sin(ry);
        t = x * c + z * s;
        z = -x * s + z * c;
        x = t;
    }
    if (rz != 0) {
        double c = cos(rz), s = sin(rz);
        t = x * c - y * s;
        y = x * s + y * c;
        x = t;
    }
    out[0] = x;
    out[1] = y;
    out[2] = z;
}

#endif
