/* ad.h: forward-mode dual numbers with a compile-time number of tangent directions.
 *
 * Define AD_N (0, 1, 2, ...) before including. AD_N == 0 is plain double arithmetic: the struct holds only
 * the value and every tangent loop vanishes, so the primal path pays nothing for derivatives.
 *
 * Rules that keep the primal bit-identical to plain C double code (the reference is matched bit for bit):
 * every function computes .v with exactly the one IEEE operation or libm call its name says, in the order
 * written, so a physics expression written as nested ad_* calls evaluates like the same C expression.
 *
 * Shared with CUDA: everything is static inline and marked AD_HD; no _Generic, restrict, VLAs, compound
 * literals or designated initialisers (nvcc compiles as C++). */
#ifndef AD_AD_H
#define AD_AD_H

#ifndef AD_N
#error "define AD_N (number of tangent directions) before including ad/ad.h"
#endif

#include <math.h>

#if defined(__CUDACC__)
#define AD_HD __host__ __device__
#define AD_INLINE static __forceinline__ AD_HD
#elif defined(__GNUC__)
#define AD_HD
/* forced: with many directions the structs are large and GCC's heuristics stop inlining, which turns every
 * operation into a by-value copy through the stack (measured: 40% of a derivative run in ad_vec3_dot) */
#define AD_INLINE static inline __attribute__((always_inline)) AD_HD
#else
#define AD_HD
#define AD_INLINE static inline AD_HD
#endif

/* Each direction count has its own type names (ad_num is ad_num_n12 when AD_N is 12, ...), so that no two
 * objects of one program hold a type of the same name with two layouts. */
#define AD_CAT_(a, b) a##b
#define AD_CAT(a, b) AD_CAT_(a, b)
#define AD_NAME(name) AD_CAT(AD_CAT(name, _n), AD_N)
#define ad_num AD_NAME(ad_num)
#define ad_vec3 AD_NAME(ad_vec3)
#define ad_mat3 AD_NAME(ad_mat3)

/* The tangents are d[AD_N] doubles, or, in the host engines that define AD_VECTOR (src/engine_n4*.c,
 * engine_n12*.c, engine_n28*.c), AD_N / 4 GCC vectors of four doubles: GCC left the unrolled per-direction loops scalar (4813
 * vmulsd, 19 vmulpd in the 12-direction AVX2 renderer), and vector operations are the same IEEE operations lane by
 * lane (no contraction: -ffp-contract=off), so the bits do not change. The vectors are aligned as double, so that
 * the layout is exactly that of double d[AD_N]: the engines read table blocks built by the scalar builders
 * (src/tables_n*.c). AD_FOR runs over the d[] elements, lanes or doubles; AD_LANE names direction k. */
#if AD_N > 0 && defined(AD_VECTOR) && defined(__GNUC__) && !defined(__CUDACC__)
#if AD_N % 4 != 0
#error "AD_VECTOR needs AD_N to be a multiple of 4 (the table layout is that of double d[AD_N])"
#endif
typedef double ad_lanes __attribute__((vector_size(4 * sizeof(double)), aligned(sizeof(double))));
#define AD_ND (AD_N / 4)
#define AD_LANE(x, k) ((x).d[(k) / 4][(k) % 4])
#define AD_SPLAT(s) ((ad_lanes){(s), (s), (s), (s)})
#elif AD_N > 0
typedef double ad_lanes;
#define AD_ND AD_N
#define AD_LANE(x, k) ((x).d[k])
#define AD_SPLAT(s) (s)
#else
#define AD_ND 0
#endif

typedef struct ad_num {
    double v;
#if AD_N > 0
    ad_lanes d[AD_ND];
#endif
} ad_num;

#define AD_FOR(i) for (int i = 0; i < AD_ND; i++)

/* ---- construction ---- */
AD_INLINE ad_num ad_const(double v)
{
    ad_num r;
    r.v = v;
#if AD_N > 0
    AD_FOR(i) r.d[i] = AD_SPLAT(0.0);
#endif
    return r;
}

/* A value that is direction `dir` of the tangent space (seed 1 there). dir outside [0, AD_N) gives a constant. */
AD_INLINE ad_num ad_var(double v, int dir)
{
    ad_num r = ad_const(v);
#if AD_N > 0
    if (dir >= 0 && dir < AD_N) AD_LANE(r, dir) = 1.0;
#else
    (void)dir;
#endif
    return r;
}

AD_INLINE double ad_tangent(ad_num a, int dir)
{
#if AD_N > 0
    return (dir >= 0 && dir < AD_N) ? AD_LANE(a, dir) : 0.0;
#else
    (void)a;
    (void)dir;
    return 0.0;
#endif
}

/* value_src's value with the sum of both tangents: for an input that is absent and takes a default value, so
 * that its derivative is taken as if it had been given at that default. */
AD_INLINE ad_num ad_keep_tangent(ad_num value_src, ad_num tangent_src)
{
    ad_num r = value_src;
#if AD_N > 0
    AD_FOR(i) r.d[i] = value_src.d[i] + tangent_src.d[i];
#else
    (void)tangent_src;
#endif
    return r;
}

/* ---- arithmetic ---- */
AD_INLINE ad_num ad_add(ad_num a, ad_num b)
{
    ad_num r;
    r.v = a.v + b.v;
#if AD_N > 0
    AD_FOR(i) r.d[i] = a.d[i] + b.d[i];
#endif
    return r;
}

AD_INLINE ad_num ad_sub(ad_num a, ad_num b)
{
    ad_num r;
    r.v = a.v - b.v;
#if AD_N > 0
    AD_FOR(i) r.d[i] = a.d[i] - b.d[i];
#endif
    return r;
}

AD_INLINE ad_num ad_neg(ad_num a)
{
    ad_num r;
    r.v = -a.v;
#if AD_N > 0
    AD_FOR(i) r.d[i] = -a.d[i];
#endif
    return r;
}

AD_INLINE ad_num ad_mul(ad_num a, ad_num b)
{
    ad_num r;
    r.v = a.v * b.v;
#if AD_N > 0
    AD_FOR(i) r.d[i] = a.d[i] * b.v + a.v * b.d[i];
#endif
    return r;
}

AD_INLINE ad_num ad_div(ad_num a, ad_num b)
{
    ad_num r;
    r.v = a.v / b.v;
    /* (a' - r b') / b: one division per direction less than the quotient rule, same value */
#if AD_N > 0
    AD_FOR(i) r.d[i] = (a.d[i] - r.v * b.d[i]) / b.v;
#endif
    return r;
}

/* mixed with a plain double constant */
AD_INLINE ad_num ad_add_d(ad_num a, double b)
{
    ad_num r = a;
    r.v = a.v + b;
    return r;
}

AD_INLINE ad_num ad_d_add(double a, ad_num b)
{
    ad_num r = b;
    r.v = a + b.v;
    return r;
}

AD_INLINE ad_num ad_sub_d(ad_num a, double b)
{
    ad_num r = a;
    r.v = a.v - b;
    return r;
}

AD_INLINE ad_num ad_d_sub(double a, ad_num b)
{
    ad_num r;
    r.v = a - b.v;
#if AD_N > 0
    AD_FOR(i) r.d[i] = -b.d[i];
#endif
    return r;
}

AD_INLINE ad_num ad_mul_d(ad_num a, double b)
{
    ad_num r;
    r.v = a.v * b;
#if AD_N > 0
    AD_FOR(i) r.d[i] = a.d[i] * b;
#endif
    return r;
}

AD_INLINE ad_num ad_d_mul(double a, ad_num b)
{
    ad_num r;
    r.v = a * b.v;
#if AD_N > 0
    AD_FOR(i) r.d[i] = a * b.d[i];
#endif
    return r;
}

AD_INLINE ad_num ad_div_d(ad_num a, double b)
{
    ad_num r;
    r.v = a.v / b;
#if AD_N > 0
    double inv = 1.0 / b;
    AD_FOR(i) r.d[i] = a.d[i] * inv;
#endif
    return r;
}

AD_INLINE ad_num ad_d_div(double a, ad_num b)
{
    ad_num r;
    r.v = a / b.v;
#if AD_N > 0
    double g = -r.v / b.v;
    AD_FOR(i) r.d[i] = g * b.d[i];
#endif
    return r;
}

/* ---- elementary functions ---- */

/* sqrt(0) has an infinite slope; we return a zero tangent there (the subgradient convention), which only
 * arises for exactly-zero arguments such as the length of a zero vector. */
AD_INLINE ad_num ad_sqrt(ad_num a)
{
    ad_num r;
    r.v = sqrt(a.v);
#if AD_N > 0
    double g = (r.v > 0.0) ? 0.5 / r.v : 0.0;
    AD_FOR(i) r.d[i] = a.d[i] * g;
#endif
    return r;
}

AD_INLINE ad_num ad_sin(ad_num a)
{
    ad_num r;
    r.v = sin(a.v);
#if AD_N > 0
    double c = cos(a.v);
    AD_FOR(i) r.d[i] = a.d[i] * c;
#endif
    return r;
}

AD_INLINE ad_num ad_cos(ad_num a)
{
    ad_num r;
    r.v = cos(a.v);
#if AD_N > 0
    double ms = -sin(a.v);
    AD_FOR(i) r.d[i] = a.d[i] * ms;
#endif
    return r;
}

AD_INLINE ad_num ad_tan(ad_num a)
{
    ad_num r;
    r.v = tan(a.v);
#if AD_N > 0
    double g = 1.0 + r.v * r.v;
    AD_FOR(i) r.d[i] = a.d[i] * g;
#endif
    return r;
}

AD_INLINE ad_num ad_exp(ad_num a)
{
    ad_num r;
    r.v = exp(a.v);
#if AD_N > 0
    AD_FOR(i) r.d[i] = a.d[i] * r.v;
#endif
    return r;
}

AD_INLINE ad_num ad_log(ad_num a)
{
    ad_num r;
    r.v = log(a.v);
#if AD_N > 0
    AD_FOR(i) r.d[i] = a.d[i] / a.v;
#endif
    return r;
}

/* a^p with a constant exponent. At a == 0 the slope p a^(p-1) is taken as 0 for p > 1 and for p == 0 (a^0 == 1
 * is constant), 1 for p == 1, and left to IEEE otherwise (+-inf). */
AD_INLINE ad_num ad_pow_d(ad_num a, double p)
{
    ad_num r;
    r.v = pow(a.v, p);
#if AD_N > 0
    double g = (a.v == 0.0) ? ((p > 1.0 || p == 0.0) ? 0.0 : (p == 1.0 ? 1.0 : p * pow(a.v, p - 1.0)))
                            : p * r.v / a.v;
    AD_FOR(i) r.d[i] = a.d[i] * g;
#endif
    return r;
}

/* a^b with both varying; requires a > 0 where b has a tangent. At a == 0 the slope in a follows ad_pow_d. */
AD_INLINE ad_num ad_pow(ad_num a, ad_num b)
{
    ad_num r;
    r.v = pow(a.v, b.v);
#if AD_N > 0
    double ga = (a.v == 0.0) ? ((b.v > 1.0 || b.v == 0.0) ? 0.0 : (b.v == 1.0 ? 1.0 : b.v * pow(a.v, b.v - 1.0)))
                             : b.v * r.v / a.v;
    double gb = (a.v > 0.0) ? r.v * log(a.v) : 0.0;
    AD_FOR(i) r.d[i] = a.d[i] * ga + b.d[i] * gb;
#endif
    return r;
}

/* atan2(y, x): slope (x dy - y dx) / (x^2 + y^2), zero at the origin where it is undefined. */
AD_INLINE ad_num ad_atan2(ad_num y, ad_num x)
{
    ad_num r;
    r.v = atan2(y.v, x.v);
#if AD_N > 0
    double den = x.v * x.v + y.v * y.v;
    double gx = (den > 0.0) ? -y.v / den : 0.0;
    double gy = (den > 0.0) ? x.v / den : 0.0;
    AD_FOR(i) r.d[i] = y.d[i] * gy + x.d[i] * gx;
#endif
    return r;
}

/* acos and asin have infinite slope at +-1: the tangent there is set to 0 (documented edge; prefer
 * atan2(|a x b|, a.b) for angles between vectors, which has none). */
AD_INLINE ad_num ad_acos(ad_num a)
{
    ad_num r;
    r.v = acos(a.v);
#if AD_N > 0
    double q = (1.0 - a.v) * (1.0 + a.v); /* not 1 - a^2: that cancels near +-1 (relative error ~eps / (1 - |a|)) */
    double g = (q > 0.0) ? -1.0 / sqrt(q) : 0.0;
    AD_FOR(i) r.d[i] = a.d[i] * g;
#endif
    return r;
}

AD_INLINE ad_num ad_asin(ad_num a)
{
    ad_num r;
    r.v = asin(a.v);
#if AD_N > 0
    double q = (1.0 - a.v) * (1.0 + a.v); /* not 1 - a^2: that cancels near +-1 (relative error ~eps / (1 - |a|)) */
    double g = (q > 0.0) ? 1.0 / sqrt(q) : 0.0;
    AD_FOR(i) r.d[i] = a.d[i] * g;
#endif
    return r;
}

/* |a|: slope sign(a), 0 at a == 0. */
AD_INLINE ad_num ad_fabs(ad_num a)
{
    ad_num r;
    r.v = fabs(a.v);
#if AD_N > 0
    double g = (a.v > 0.0) ? 1.0 : (a.v < 0.0 ? -1.0 : 0.0);
    AD_FOR(i) r.d[i] = a.d[i] * g;
#endif
    return r;
}

/* Piecewise-constant functions: values only, derivative zero almost everywhere. */
AD_INLINE double ad_floor(ad_num a) { return floor(a.v); }
AD_INLINE double ad_ceil(ad_num a) { return ceil(a.v); }

/* sincg(x, N) = sin(N x) / sin(x), the lattice factor of N cells (value N at x == 0, as the reference).
 * Slopes: d/dx = (N cos(Nx) sin x - sin(Nx) cos x) / sin^2 x, d/dN = x cos(Nx) / sin x.
 * For |N x| < 1e-3 d/dx comes from the Taylor series (the closed form cancels there; truncation ~(N x)^4).
 * Where sin(x) is exactly 0 (x == 0 in practice) the limits are used: d/dx -> 0 for x == 0 and
 * d/dN -> 1 (the value there is N itself). For x = k pi (k != 0) in exact arithmetic the quotient has limit
 * N cos(N k pi)/cos(k pi); it is never reached in floating point except at 0. */
/* d/dx of sin(N x) / sin(x) from sin and cos of x and N x: the closed form, or where |N x| < 1e-3 (the closed form
 * cancels to O((N x)^3) there, relative error ~eps/(N x)^2) its Taylor series
 * N ((1 - N^2) x / 3 + (3 N^4 - 10 N^2 + 7) x^3 / 90). Shared by ad_sincg and ad_sincgpi_slopes. */
AD_INLINE double ad_sincg_dx(double x, double N, double sx, double cx, double sNx, double cNx)
{
    if (fabs(N * x) < 1e-3) {
        double N2 = N * N, x2 = x * x;
        return N * x * ((1.0 - N2) / 3.0 + (3.0 * N2 * N2 - 10.0 * N2 + 7.0) * x2 / 90.0);
    }
    return (N * cNx * sx - sNx * cx) / (sx * sx);
}

AD_INLINE ad_num ad_sincg(ad_num x, ad_num N)
{
    ad_num r;
    if (x.v == 0.0) {
        r.v = N.v;
#if AD_N > 0
        AD_FOR(i) r.d[i] = N.d[i];
#endif
        return r;
    }
    double sx = sin(x.v);
    double sNx = sin(N.v * x.v);
    r.v = sNx / sx;
#if AD_N > 0
    if (sx == 0.0) {
        AD_FOR(i) r.d[i] = AD_SPLAT(0.0);
        return r;
    }
    double cx = cos(x.v), cNx = cos(N.v * x.v);
    double gx = ad_sincg_dx(x.v, N.v, sx, cx, sNx, cNx);
    double gN = x.v * cNx / sx;
    AD_FOR(i) r.d[i] = x.d[i] * gx + N.d[i] * gN;
#endif
    return r;
}

/* sin(pi y) and cos(pi y) without a libm call, for the slopes of the lattice factor (ad_sincgpi_with).
 * y = k/2 + r exactly (|r| <= 1/4: 2y, k/2 and y - k/2 are all exact in binary for |y| < 2^50), then the Taylor
 * series of sin and cos in x = pi r to x^19 and x^18, whose first omitted terms are below 1e-19 at |x| <= pi/4.
 * Relative error a few ulp in every quadrant (the quadrant only picks and signs one of the two series). No
 * libm reduction modulo pi/2 and no table: about a third of the time of glibc's sincos, and the same code on a
 * GPU thread. */
AD_INLINE void ad_sincospi(double y, double *s, double *c)
{
    const double k = floor(2.0 * y + 0.5);
    const double r = y - 0.5 * k;
    const double x = 3.14159265358979323846 * r, x2 = x * x;
    const double sr = x + x * x2 * (-1.0 / 6.0 + x2 * (1.0 / 120.0 + x2 * (-1.0 / 5040.0 + x2 * (1.0 / 362880.0 +
                      x2 * (-1.0 / 39916800.0 + x2 * (1.0 / 6227020800.0 + x2 * (-1.0 / 1307674368000.0 +
                      x2 * (1.0 / 355687428096000.0 + x2 * (-1.0 / 121645100408832000.0)))))))));
    const double cr = 1.0 + x2 * (-1.0 / 2.0 + x2 * (1.0 / 24.0 + x2 * (-1.0 / 720.0 + x2 * (1.0 / 40320.0 +
                      x2 * (-1.0 / 3628800.0 + x2 * (1.0 / 479001600.0 + x2 * (-1.0 / 87178291200.0 +
                      x2 * (1.0 / 20922789888000.0 + x2 * (-1.0 / 6402373705728000.0)))))))));
    const int q = (int)(k - 4.0 * floor(0.25 * k)); /* k mod 4, in 0..3 for negative k too */
    switch (q) {
    case 0: *s = sr; *c = cr; break;
    case 1: *s = cr; *c = -sr; break;
    case 2: *s = -sr; *c = -cr; break;
    default: *s = -cr; *c = sr; break;
    }
}

/* The slopes of sincg(pi u, N) = sin(N pi u) / sin(pi u): d/du (ad_sincg's d/dx times pi) and d/dN, with its
 * limits at u == 0 and its Taylor series where |N pi u| < 1e-3, from ad_sincospi: the lattice factor's tangent
 * costs no libm call (two of them per axis before, beside the reference's two for the value). For |u| < 1, as in
 * the lattice factor (u = h - h0, |u| <= 1/2), where sin(pi u) is 0 only at u == 0. */
AD_INLINE void ad_sincgpi_slopes(double u, double N, double *gu, double *gN)
{
    if (u == 0.0) {
        *gu = 0.0;
        *gN = 1.0;
        return;
    }
    double su, cu, sNu, cNu;
    ad_sincospi(u, &su, &cu);
    ad_sincospi(N * u, &sNu, &cNu);
    const double x = 3.14159265358979323846 * u;
    *gu = 3.14159265358979323846 * ad_sincg_dx(x, N, su, cu, sNu, cNu);
    *gN = x * cNu / su;
}

/* sincg(pi u, N) with the given value (the caller's formula, for bit parity) and the tangent of ad_sincgpi_slopes */
AD_INLINE ad_num ad_sincgpi_with(ad_num u, ad_num N, double value)
{
    ad_num r;
    r.v = value;
#if AD_N > 0
    double gu, gN;
    ad_sincgpi_slopes(u.v, N.v, &gu, &gN);
#ifdef DB_PLANT_TANGENT_ERROR
    gu *= 1.0 + 2e-5; /* test-only build (test_gradcheck_planted): gradcheck must catch this */
#endif
    AD_FOR(i) r.d[i] = u.d[i] * gu + N.d[i] * gN;
#else
    (void)u;
    (void)N;
#endif
    return r;
}

/* sinc3(x) = 3 (sin x / x - cos x) / x^2, the transform of a sphere (1 at x == 0).
 * The value uses the reference's formula (bit parity); the slope uses the Taylor series for |x| < 0.1,
 * where the closed form loses digits to cancellation (relative error ~ eps / x^2). */
AD_INLINE ad_num ad_sinc3(ad_num x)
{
    ad_num r;
    double xv = x.v;
    r.v = (xv == 0.0) ? 1.0 : 3.0 * (sin(xv) / xv - cos(xv)) / (xv * xv);
#if AD_N > 0
    double g;
    if (fabs(xv) < 0.1) {
        double x2 = xv * xv;
        g = xv * (-1.0 / 5.0 + x2 * (1.0 / 70.0 + x2 * (-1.0 / 2520.0 + x2 * (1.0 / 166320.0 - x2 / 17297280.0))));
    } else {
        double s = sin(xv), c = cos(xv);
        /* d/dx [3 (sin x - x cos x) / x^3] = 3 (x^2 sin x - 3 (sin x - x cos x)) / x^4 */
        g = 3.0 * (xv * xv * s - 3.0 * (s - xv * c)) / (xv * xv * xv * xv);
    }
    AD_FOR(i) r.d[i] = x.d[i] * g;
#endif
    return r;
}

/* ---- 3-vectors and 3x3 matrices (row-major) ---- */
typedef struct ad_vec3 {
    ad_num c[3];
} ad_vec3;

typedef struct ad_mat3 {
    ad_num m[9];
} ad_mat3;

AD_INLINE ad_vec3 ad_vec3_const(double x, double y, double z)
{
    ad_vec3 r;
    r.c[0] = ad_const(x);
    r.c[1] = ad_const(y);
    r.c[2] = ad_const(z);
    return r;
}

AD_INLINE ad_vec3 ad_vec3_make(ad_num x, ad_num y, ad_num z)
{
    ad_vec3 r;
    r.c[0] = x;
    r.c[1] = y;
    r.c[2] = z;
    return r;
}

/* a . b read in place: ((a0 b0 + a1 b1) + a2 b2), each product's tangent as ad_mul's. By value, a 12-direction
 * vector is 312 bytes that GCC copies through the stack instead of scalarizing: the hot loops pass pointers. */
AD_INLINE ad_num ad_vec3_dot_p(const ad_vec3 *a, const ad_vec3 *b)
{
    ad_num r;
    r.v = a->c[0].v * b->c[0].v + a->c[1].v * b->c[1].v + a->c[2].v * b->c[2].v;
#if AD_N > 0
    AD_FOR(i) r.d[i] = (a->c[0].d[i] * b->c[0].v + a->c[0].v * b->c[0].d[i]) + (a->c[1].d[i] * b->c[1].v + a->c[1].v * b->c[1].d[i]) +
                       (a->c[2].d[i] * b->c[2].v + a->c[2].v * b->c[2].d[i]);
#endif
    return r;
}

AD_INLINE ad_num ad_vec3_dot(ad_vec3 a, ad_vec3 b) { return ad_vec3_dot_p(&a, &b); }

AD_INLINE ad_vec3 ad_vec3_cross(ad_vec3 a, ad_vec3 b)
{
    ad_vec3 r;
    r.c[0] = ad_sub(ad_mul(a.c[1], b.c[2]), ad_mul(a.c[2], b.c[1]));
    r.c[1] = ad_sub(ad_mul(a.c[2], b.c[0]), ad_mul(a.c[0], b.c[2]));
    r.c[2] = ad_sub(ad_mul(a.c[0], b.c[1]), ad_mul(a.c[1], b.c[0]));
    return r;
}

AD_INLINE ad_vec3 ad_vec3_add(ad_vec3 a, ad_vec3 b)
{
    ad_vec3 r;
    for (int k = 0; k < 3; k++) r.c[k] = ad_add(a.c[k], b.c[k]);
    return r;
}

AD_INLINE ad_vec3 ad_vec3_sub(ad_vec3 a, ad_vec3 b)
{
    ad_vec3 r;
    for (int k = 0; k < 3; k++) r.c[k] = ad_sub(a.c[k], b.c[k]);
    return r;
}

/* s * v, component by component (v_k * s, the order the reference writes) */
AD_INLINE ad_vec3 ad_vec3_scale(ad_vec3 v, ad_num s)
{
    ad_vec3 r;
    for (int k = 0; k < 3; k++) r.c[k] = ad_mul(v.c[k], s);
    return r;
}

AD_INLINE ad_vec3 ad_vec3_scale_d(ad_vec3 v, double s)
{
    ad_vec3 r;
    for (int k = 0; k < 3; k++) r.c[k] = ad_mul_d(v.c[k], s);
    return r;
}

AD_INLINE ad_num ad_vec3_norm(ad_vec3 v)
{
    return ad_sqrt(ad_vec3_dot(v, v));
}

/* v / |v| and |v|; a zero vector stays zero (as the reference's unitize). */
AD_INLINE ad_vec3 ad_vec3_unit(ad_vec3 v, ad_num *norm_out)
{
    ad_num n = ad_vec3_norm(v);
    ad_vec3 r = v;
    if (n.v != 0.0) {
        for (int k = 0; k < 3; k++) r.c[k] = ad_div(v.c[k], n);
    }
    if (norm_out) *norm_out = n;
    return r;
}

AD_INLINE ad_vec3 ad_mat3_mul_vec(const ad_mat3 *M, ad_vec3 v)
{
    ad_vec3 r;
    for (int k = 0; k < 3; k++)
        r.c[k] = ad_add(ad_add(ad_mul(M->m[3 * k], v.c[0]), ad_mul(M->m[3 * k + 1], v.c[1])),
                        ad_mul(M->m[3 * k + 2], v.c[2]));
    return r;
}

/* Rodrigues rotation about a unit axis, right-handed:
 * v cos(phi) + (axis x v) sin(phi) + axis (axis . v)(1 - cos(phi)), evaluated term by term as
 * axis_k d + v_k c + (axis x v)_k s with d = (axis . v)(1 - c).
 * At phi == 0 the value is v exactly (c = 1, s = 0) and the tangent keeps the phi direction: (axis x v) dphi. */
AD_INLINE ad_vec3 ad_vec3_rotate_axis(ad_vec3 v, ad_vec3 axis, ad_num phi)
{
    ad_num s = ad_sin(phi), c = ad_cos(phi);
    ad_num d = ad_mul(ad_vec3_dot(axis, v), ad_d_sub(1.0, c));
    ad_vec3 r;
    ad_num cr0 = ad_add(ad_mul(ad_neg(axis.c[2]), v.c[1]), ad_mul(axis.c[1], v.c[2]));
    ad_num cr1 = ad_sub(ad_mul(axis.c[2], v.c[0]), ad_mul(axis.c[0], v.c[2]));
    ad_num cr2 = ad_add(ad_mul(ad_neg(axis.c[1]), v.c[0]), ad_mul(axis.c[0], v.c[1]));
    r.c[0] = ad_add(ad_add(ad_mul(axis.c[0], d), ad_mul(v.c[0], c)), ad_mul(cr0, s));
    r.c[1] = ad_add(ad_add(ad_mul(axis.c[1], d), ad_mul(v.c[1], c)), ad_mul(cr1, s));
    r.c[2] = ad_add(ad_add(ad_mul(axis.c[2], d), ad_mul(v.c[2], c)), ad_mul(cr2, s));
    return r;
}

/* Active rotations about lab x, then y, then z (the reference's rotate()). A zero angle is skipped for the
 * value, as the reference does, but its tangent is kept: d/dphi of R(phi) v at phi = 0 is (e x v). */
AD_INLINE ad_vec3 ad_vec3_rotate_xyz(ad_vec3 v, ad_num rx, ad_num ry, ad_num rz)
{
    ad_num x = v.c[0], y = v.c[1], z = v.c[2];
    if (rx.v != 0.0 || AD_N > 0) {
        ad_num c = ad_cos(rx), s = ad_sin(rx);
        ad_num ny = ad_sub(ad_mul(y, c), ad_mul(z, s));
        ad_num nz = ad_add(ad_mul(y, s), ad_mul(z, c));
        if (rx.v == 0.0) {
            ny.v = y.v;
            nz.v = z.v;
        }
        y = ny;
        z = nz;
    }
    if (ry.v != 0.0 || AD_N > 0) {
        ad_num c = ad_cos(ry), s = ad_sin(ry);
        ad_num nx = ad_add(ad_mul(x, c), ad_mul(z, s));
        ad_num nz = ad_add(ad_mul(ad_neg(x), s), ad_mul(z, c));
        if (ry.v == 0.0) {
            nx.v = x.v;
            nz.v = z.v;
        }
        x = nx;
        z = nz;
    }
    if (rz.v != 0.0 || AD_N > 0) {
        ad_num c = ad_cos(rz), s = ad_sin(rz);
        ad_num nx = ad_sub(ad_mul(x, c), ad_mul(y, s));
        ad_num ny = ad_add(ad_mul(x, s), ad_mul(y, c));
        if (rz.v == 0.0) {
            nx.v = x.v;
            ny.v = y.v;
        }
        x = nx;
        y = ny;
    }
    return ad_vec3_make(x, y, z);
}

#endif
