/* test_ad.c: every function of ad/ad.h, value and tangent.
 *
 * Build with AD_N = 3 (needs >= 3): several tangent directions, each seeded differently, so that a rule that
 * mixes directions up (uses d[0] for every direction, forgets a term in one of them) fails.
 *
 * For every function:
 *   value    bit-identical to the plain C expression the reference writes (assert_bits_equal);
 *   tangent  against the analytic derivative (evaluated in long double where that is independent of the code
 *            under test) at TOL_AN, and against a central difference of the function's own value at TOL_FD;
 *   constant inputs give exactly zero tangents.
 *
 * Tolerance classes:
 *   TOL_AN = 1e-14  ad tangent vs analytic slope: the same formula a few roundings apart (<= ~20 ulp).
 *                   Where the slope is ill-conditioned (sincg near k*pi, sinc3's closed form) the atol comes from
 *                   an explicit error bound, given next to the case.
 *   TOL_FD = 1e-8   ad tangent vs (f(x+h) - f(x-h)) / 2h with h = 1e-5 |x| (or 1e-5 of the length on which f
 *                   varies where that is shorter: 1 for sin/cos/exp at large |x|, 1/N for sincg, the distance to
 *                   the singularity for acos near 1): truncation h^2 f'''/(6 f') ~ 2e-11, roundoff
 *                   eps |f| / (h |f'|) ~ 2e-11 |f / (x f')|, both well below 1e-8 at the points used, while a
 *                   planted 2e-5 relative error in a rule is 2000x the tolerance. The roundoff term 2 eps |f| / h
 *                   is added to the atol automatically (it matters where f' ~ 0); cases whose value itself is
 *                   noisier (sinc3's cancellation, sincg near k pi) add their own bound.
 * Mutation check (done by hand): scaling ad_sin's tangent by 1.00002 fails test_sin_cos_tan and the four
 * rotation tests, also with TOL_AN disabled (the central differences alone catch it).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdio.h>

#ifndef AD_N
#define AD_N 3
#endif
#if AD_N < 3
#error "test_ad.c needs AD_N >= 3 (compile with -DAD_N=3)"
#endif

#include "ad.h"
#include "test_util.h"
#include "spec_oracles.h"

#define TEST_PI 3.14159265358979323846
#define TOL_AN 1e-14
#define TOL_FD 1e-8
#define FD_REL_STEP 1e-5
#define EPS DBL_EPSILON

_Static_assert(sizeof(ad_num) == (AD_N + 1) * sizeof(double), "ad_num is the value plus AD_N tangents, no padding");

/* Seeds: direction i of a unary input carries SEED_U[i]; a binary function's first operand SEED_A, second SEED_B
 * (direction 0 = d/da, 1 = d/db, 2 = a mixture). */
static const double SEED_U[3] = {1.0, -0.5, 0.25};
static const double SEED_A[3] = {1.0, 0.0, 0.75};
static const double SEED_B[3] = {0.0, 1.0, -1.25};

static ad_num mk(double v, const double s[3])
{
    ad_num r = ad_const(v);
    for (int i = 0; i < 3; i++) r.d[i] = s[i];
    return r;
}

static double fd_step(double x) { return FD_REL_STEP * (x != 0.0 ? fabs(x) : 1.0); }

/* all tangents zero (either sign: a constant times a negative number gives -0) */
static void assert_zero_tangents(ad_num r)
{
    for (int i = 0; i < AD_N; i++) assert_close(r.d[i], 0.0, 0.0, 0.0);
}

/* ======================================================================================================== */
/* unary functions (with an optional plain-double parameter p)                                              */
/* ======================================================================================================== */

typedef struct {
    const char *name;
    ad_num (*f)(ad_num x, double p);
    double (*plain)(double x, double p);            /* the C expression the value must equal bit for bit */
    long double (*deriv)(long double x, long double p); /* analytic slope */
} unary_fn;

typedef struct {
    double x, p;
    double h;       /* FD step, 0: 1e-5 |x| */
    double atol_fd; /* added to TOL_FD * |fd| */
    double atol_an; /* added to TOL_AN * |slope| */
} unary_pt;

static void check_unary(const unary_fn *fn, unary_pt pt)
{
    test_context("%s(x = %.17g, p = %.17g)", fn->name, pt.x, pt.p);
    ad_num r = fn->f(mk(pt.x, SEED_U), pt.p);
    assert_bits_equal(r.v, fn->plain(pt.x, pt.p));

    ad_num rc = fn->f(ad_const(pt.x), pt.p);
    assert_bits_equal(rc.v, r.v);
    assert_zero_tangents(rc);

    double g = (double)fn->deriv(pt.x, pt.p);
    for (int i = 0; i < 3; i++) assert_close(r.d[i], g * SEED_U[i], TOL_AN, pt.atol_an * fabs(SEED_U[i]));

    double h = pt.h > 0.0 ? pt.h : fd_step(pt.x);
    double xp = pt.x + h, xm = pt.x - h;
    double fp = fn->f(ad_const(xp), pt.p).v, fm = fn->f(ad_const(xm), pt.p).v;
    double fd = (fp - fm) / (xp - xm);
    /* FD roundoff: each value is off by up to ~eps |f| */
    double noise = 2.0 * EPS * fmax(fabs(fp), fabs(fm)) / (xp - xm);
    for (int i = 0; i < 3; i++) assert_close(r.d[i], fd * SEED_U[i], TOL_FD, (pt.atol_fd + noise) * fabs(SEED_U[i]));
    test_context(NULL);
}

#define P1(x) {(x), 0.0, 0.0, 0.0, 0.0}
#define P2(x, p) {(x), (p), 0.0, 0.0, 0.0}

#define RUN_UNARY(fn, ...)                                                                                         \
    do {                                                                                                           \
        const unary_pt pts_[] = {__VA_ARGS__};                                                                     \
        for (size_t k_ = 0; k_ < sizeof pts_ / sizeof pts_[0]; k_++) check_unary(&(fn), pts_[k_]);                \
    } while (0)

/* wrappers: the ad function, the plain expression, the slope */
static ad_num w_neg(ad_num x, double p) { (void)p; return ad_neg(x); }
static double p_neg(double x, double p) { (void)p; return -x; }
static long double d_neg(long double x, long double p) { (void)x; (void)p; return -1.0L; }

static ad_num w_add_d(ad_num x, double p) { return ad_add_d(x, p); }
static double p_add_d(double x, double p) { return x + p; }
static ad_num w_d_add(ad_num x, double p) { return ad_d_add(p, x); }
static double p_d_add(double x, double p) { return p + x; }
static ad_num w_sub_d(ad_num x, double p) { return ad_sub_d(x, p); }
static double p_sub_d(double x, double p) { return x - p; }
static long double d_one(long double x, long double p) { (void)x; (void)p; return 1.0L; }
static ad_num w_d_sub(ad_num x, double p) { return ad_d_sub(p, x); }
static double p_d_sub(double x, double p) { return p - x; }

static ad_num w_mul_d(ad_num x, double p) { return ad_mul_d(x, p); }
static double p_mul_d(double x, double p) { return x * p; }
static ad_num w_d_mul(ad_num x, double p) { return ad_d_mul(p, x); }
static double p_d_mul(double x, double p) { return p * x; }
static long double d_mul_p(long double x, long double p) { (void)x; return p; }
static ad_num w_div_d(ad_num x, double p) { return ad_div_d(x, p); }
static double p_div_d(double x, double p) { return x / p; }
static long double d_div_d(long double x, long double p) { (void)x; return 1.0L / p; }
static ad_num w_d_div(ad_num x, double p) { return ad_d_div(p, x); }
static double p_d_div(double x, double p) { return p / x; }
static long double d_d_div(long double x, long double p) { return -p / (x * x); }

static ad_num w_sqrt(ad_num x, double p) { (void)p; return ad_sqrt(x); }
static double p_sqrt(double x, double p) { (void)p; return sqrt(x); }
static long double d_sqrt(long double x, long double p) { (void)p; return 0.5L / sqrtl(x); }

static ad_num w_sin(ad_num x, double p) { (void)p; return ad_sin(x); }
static double p_sin(double x, double p) { (void)p; return sin(x); }
static long double d_sin(long double x, long double p) { (void)p; return cosl(x); }

static ad_num w_cos(ad_num x, double p) { (void)p; return ad_cos(x); }
static double p_cos(double x, double p) { (void)p; return cos(x); }
static long double d_cos(long double x, long double p) { (void)p; return -sinl(x); }

static ad_num w_tan(ad_num x, double p) { (void)p; return ad_tan(x); }
static double p_tan(double x, double p) { (void)p; return tan(x); }
static long double d_tan(long double x, long double p) { (void)p; long double c = cosl(x); return 1.0L / (c * c); }

static ad_num w_exp(ad_num x, double p) { (void)p; return ad_exp(x); }
static double p_exp(double x, double p) { (void)p; return exp(x); }
static long double d_exp(long double x, long double p) { (void)p; return expl(x); }

static ad_num w_log(ad_num x, double p) { (void)p; return ad_log(x); }
static double p_log(double x, double p) { (void)p; return log(x); }
static long double d_log(long double x, long double p) { (void)p; return 1.0L / x; }

static ad_num w_pow_d(ad_num x, double p) { return ad_pow_d(x, p); }
static double p_pow_d(double x, double p) { return pow(x, p); }
static long double d_pow_d(long double x, long double p) { return p * powl(x, p - 1.0L); }

static ad_num w_acos(ad_num x, double p) { (void)p; return ad_acos(x); }
static double p_acos(double x, double p) { (void)p; return acos(x); }
static long double d_acos(long double x, long double p) { (void)p; return -1.0L / sqrtl((1.0L - x) * (1.0L + x)); }

static ad_num w_asin(ad_num x, double p) { (void)p; return ad_asin(x); }
static double p_asin(double x, double p) { (void)p; return asin(x); }
static long double d_asin(long double x, long double p) { (void)p; return 1.0L / sqrtl((1.0L - x) * (1.0L + x)); }

static ad_num w_fabs(ad_num x, double p) { (void)p; return ad_fabs(x); }
static double p_fabs(double x, double p) { (void)p; return fabs(x); }
static long double d_fabs(long double x, long double p) { (void)p; return x > 0 ? 1.0L : (x < 0 ? -1.0L : 0.0L); }

/* Independent high-precision slope: f(x) = 3 sum_{m>=0} (-1)^m 2(m+1) x^(2m) / (2m+3)!, so
 * f'(x) = 3 sum_{m>=1} (-1)^m 4m(m+1) x^(2m-1) / (2m+3)!, summed in long double (|x| <= 2: the terms fall
 * below 1e-30 of the sum well before m = 40); for |x| > 2 the closed form in long double (cancellation ~ 1e-19/x^4). */
static long double sinc3_slope_ref(long double x)
{
    if (fabsl(x) > 2.0L) {
        long double s = sinl(x), c = cosl(x);
        return 3.0L * (x * x * s - 3.0L * (s - x * c)) / (x * x * x * x);
    }
    long double sum = 0.0L, fact = 6.0L, xp = 1.0L, x2 = x * x;
    for (int m = 1; m < 40; m++) {
        fact *= (long double)(2 * m + 2) * (long double)(2 * m + 3);
        xp = (m == 1) ? x : xp * x2;
        long double term = 4.0L * m * (m + 1) * xp / fact;
        sum += (m & 1) ? -term : term;
    }
    return 3.0L * sum;
}
static ad_num w_sinc3(ad_num x, double p) { (void)p; return ad_sinc3(x); }
static double p_sinc3(double x, double p) { (void)p; return spec_sinc3(x); }
static long double d_sinc3(long double x, long double p) { (void)p; return sinc3_slope_ref(x); }

static const unary_fn F_NEG = {"ad_neg", w_neg, p_neg, d_neg};
static const unary_fn F_ADD_D = {"ad_add_d", w_add_d, p_add_d, d_one};
static const unary_fn F_D_ADD = {"ad_d_add", w_d_add, p_d_add, d_one};
static const unary_fn F_SUB_D = {"ad_sub_d", w_sub_d, p_sub_d, d_one};
static const unary_fn F_D_SUB = {"ad_d_sub", w_d_sub, p_d_sub, d_neg};
static const unary_fn F_MUL_D = {"ad_mul_d", w_mul_d, p_mul_d, d_mul_p};
static const unary_fn F_D_MUL = {"ad_d_mul", w_d_mul, p_d_mul, d_mul_p};
static const unary_fn F_DIV_D = {"ad_div_d", w_div_d, p_div_d, d_div_d};
static const unary_fn F_D_DIV = {"ad_d_div", w_d_div, p_d_div, d_d_div};
static const unary_fn F_SQRT = {"ad_sqrt", w_sqrt, p_sqrt, d_sqrt};
static const unary_fn F_SIN = {"ad_sin", w_sin, p_sin, d_sin};
static const unary_fn F_COS = {"ad_cos", w_cos, p_cos, d_cos};
static const unary_fn F_TAN = {"ad_tan", w_tan, p_tan, d_tan};
static const unary_fn F_EXP = {"ad_exp", w_exp, p_exp, d_exp};
static const unary_fn F_LOG = {"ad_log", w_log, p_log, d_log};
static const unary_fn F_POW_D = {"ad_pow_d", w_pow_d, p_pow_d, d_pow_d};
static const unary_fn F_ACOS = {"ad_acos", w_acos, p_acos, d_acos};
static const unary_fn F_ASIN = {"ad_asin", w_asin, p_asin, d_asin};
static const unary_fn F_FABS = {"ad_fabs", w_fabs, p_fabs, d_fabs};
static const unary_fn F_SINC3 = {"ad_sinc3", w_sinc3, p_sinc3, d_sinc3};

/* ======================================================================================================== */
/* binary functions                                                                                          */
/* ======================================================================================================== */

typedef struct {
    const char *name;
    ad_num (*f)(ad_num a, ad_num b);
    double (*plain)(double a, double b);
    long double (*da)(long double a, long double b);
    long double (*db)(long double a, long double b);
} binary_fn;

typedef struct {
    double a, b;
    double atol_an_a, atol_an_b; /* absolute error allowed in the a- and b-slopes (beyond TOL_AN relative) */
    double atol_fd;              /* absolute error allowed against the central difference (beyond TOL_FD) */
    int no_fd_a;                 /* the central difference in a crosses a branch cut: use the analytic a-slope */
    double ha, hb;               /* FD steps, 0: 1e-5 |a|, 1e-5 |b| */
} binary_pt;

static void check_binary(const binary_fn *fn, binary_pt pt)
{
    test_context("%s(a = %.17g, b = %.17g)", fn->name, pt.a, pt.b);
    ad_num r = fn->f(mk(pt.a, SEED_A), mk(pt.b, SEED_B));
    assert_bits_equal(r.v, fn->plain(pt.a, pt.b));

    ad_num rc = fn->f(ad_const(pt.a), ad_const(pt.b));
    assert_bits_equal(rc.v, r.v);
    assert_zero_tangents(rc);

    double ga = (double)fn->da(pt.a, pt.b), gb = (double)fn->db(pt.a, pt.b);
    for (int i = 0; i < 3; i++) {
        double want = ga * SEED_A[i] + gb * SEED_B[i];
        double scale = fabs(ga * SEED_A[i]) + fabs(gb * SEED_B[i]);
        double atol = TOL_AN * scale + pt.atol_an_a * fabs(SEED_A[i]) + pt.atol_an_b * fabs(SEED_B[i]);
        assert_close(r.d[i], want, 0.0, atol);
    }

    double ha = pt.ha > 0.0 ? pt.ha : fd_step(pt.a), hb = pt.hb > 0.0 ? pt.hb : fd_step(pt.b);
    double ap = pt.a + ha, am = pt.a - ha, bp = pt.b + hb, bm = pt.b - hb;
    double fap = fn->f(ad_const(ap), ad_const(pt.b)).v, fam = fn->f(ad_const(am), ad_const(pt.b)).v;
    double fbp = fn->f(ad_const(pt.a), ad_const(bp)).v, fbm = fn->f(ad_const(pt.a), ad_const(bm)).v;
    double fa = pt.no_fd_a ? ga : (fap - fam) / (ap - am);
    double fb = (fbp - fbm) / (bp - bm);
    /* FD roundoff: each value is off by up to ~eps |f| */
    double noise_a = pt.no_fd_a ? 0.0 : 2.0 * EPS * fmax(fabs(fap), fabs(fam)) / (ap - am);
    double noise_b = 2.0 * EPS * fmax(fabs(fbp), fabs(fbm)) / (bp - bm);
    for (int i = 0; i < 3; i++) {
        double want = fa * SEED_A[i] + fb * SEED_B[i];
        double scale = fabs(fa * SEED_A[i]) + fabs(fb * SEED_B[i]);
        double atol = TOL_FD * scale + pt.atol_fd * (fabs(SEED_A[i]) + fabs(SEED_B[i])) + noise_a * fabs(SEED_A[i]) +
                      noise_b * fabs(SEED_B[i]);
        assert_close(r.d[i], want, 0.0, atol);
    }
    test_context(NULL);
}

#define B2(a, b) {(a), (b), 0.0, 0.0, 0.0, 0, 0.0, 0.0}

#define RUN_BINARY(fn, ...)                                                                                        \
    do {                                                                                                           \
        const binary_pt pts_[] = {__VA_ARGS__};                                                                    \
        for (size_t k_ = 0; k_ < sizeof pts_ / sizeof pts_[0]; k_++) check_binary(&(fn), pts_[k_]);               \
    } while (0)

static double p_add(double a, double b) { return a + b; }
static double p_sub(double a, double b) { return a - b; }
static double p_mul(double a, double b) { return a * b; }
static double p_div(double a, double b) { return a / b; }
static long double d_b(long double a, long double b) { (void)a; return b; }
static long double d_a(long double a, long double b) { (void)b; return a; }
static long double d_1(long double a, long double b) { (void)a; (void)b; return 1.0L; }
static long double d_m1(long double a, long double b) { (void)a; (void)b; return -1.0L; }
static long double d_div_a(long double a, long double b) { (void)a; return 1.0L / b; }
static long double d_div_b(long double a, long double b) { return -a / (b * b); }

static double p_pow(double a, double b) { return pow(a, b); }
static long double d_pow_a(long double a, long double b) { return b * powl(a, b - 1.0L); }
static long double d_pow_b(long double a, long double b) { return powl(a, b) * logl(a); }

/* atan2(y, x): d/dy = x / (x^2 + y^2), d/dx = -y / (x^2 + y^2) */
static double p_atan2(double y, double x) { return atan2(y, x); }
static long double d_atan2_y(long double y, long double x) { return x / (x * x + y * y); }
static long double d_atan2_x(long double y, long double x) { return -y / (x * x + y * y); }

static long double d_sincg_x(long double x, long double N)
{
    if (x == 0.0L) return 0.0L;
    long double s = sinl(x), c = cosl(x), sN = sinl(N * x), cN = cosl(N * x);
    return (N * cN * s - sN * c) / (s * s);
}
static long double d_sincg_N(long double x, long double N)
{
    if (x == 0.0L) return 1.0L;
    return x * cosl(N * x) / sinl(x);
}

static const binary_fn F_ADD = {"ad_add", ad_add, p_add, d_1, d_1};
static const binary_fn F_SUB = {"ad_sub", ad_sub, p_sub, d_1, d_m1};
static const binary_fn F_MUL = {"ad_mul", ad_mul, p_mul, d_b, d_a};
static const binary_fn F_DIV = {"ad_div", ad_div, p_div, d_div_a, d_div_b};
static const binary_fn F_POW = {"ad_pow", ad_pow, p_pow, d_pow_a, d_pow_b};
static const binary_fn F_ATAN2 = {"ad_atan2", ad_atan2, p_atan2, d_atan2_y, d_atan2_x};
static const binary_fn F_SINCG = {"ad_sincg", ad_sincg, spec_sincg, d_sincg_x, d_sincg_N};

/* ======================================================================================================== */
/* construction                                                                                              */
/* ======================================================================================================== */

static void test_const_var_tangent(void **state)
{
    (void)state;
    ad_num c = ad_const(2.5);
    assert_bits_equal(c.v, 2.5);
    assert_zero_tangents(c);
    assert_bits_equal(ad_const(-0.0).v, -0.0);

    for (int dir = 0; dir < AD_N; dir++) {
        ad_num v = ad_var(-1.75, dir);
        assert_bits_equal(v.v, -1.75);
        for (int i = 0; i < AD_N; i++) assert_bits_equal(v.d[i], i == dir ? 1.0 : 0.0);
        for (int i = 0; i < AD_N; i++) assert_bits_equal(ad_tangent(v, i), i == dir ? 1.0 : 0.0);
    }
    /* a direction outside [0, AD_N) gives a constant */
    assert_zero_tangents(ad_var(3.0, -1));
    assert_zero_tangents(ad_var(3.0, AD_N));
    assert_zero_tangents(ad_var(3.0, 1000));

    ad_num s = mk(1.0, SEED_U);
    for (int i = 0; i < 3; i++) assert_bits_equal(ad_tangent(s, i), SEED_U[i]);
    assert_bits_equal(ad_tangent(s, -1), 0.0);
    assert_bits_equal(ad_tangent(s, AD_N), 0.0);
}

static void test_keep_tangent(void **state)
{
    (void)state;
    /* value of the first, tangent the sum of both (an absent input at its default keeps the derivative) */
    ad_num v = mk(2.5, SEED_A), t = mk(-7.0, SEED_B);
    ad_num r = ad_keep_tangent(v, t);
    assert_bits_equal(r.v, 2.5);
    for (int i = 0; i < 3; i++) assert_bits_equal(r.d[i], SEED_A[i] + SEED_B[i]);
    for (int i = 3; i < AD_N; i++) assert_bits_equal(r.d[i], 0.0);
    /* the typical use: a constant default picks up the tangent of a seeded parameter */
    ad_num k = ad_keep_tangent(ad_const(0.1), ad_var(0.0, 2));
    assert_bits_equal(k.v, 0.1);
    assert_bits_equal(k.d[0], 0.0);
    assert_bits_equal(k.d[1], 0.0);
    assert_bits_equal(k.d[2], 1.0);
    /* the tangent source's value is ignored */
    assert_bits_equal(ad_keep_tangent(ad_const(3.0), ad_const(1e300)).v, 3.0);
    assert_zero_tangents(ad_keep_tangent(ad_const(3.0), ad_const(1e300)));
}

/* ======================================================================================================== */
/* arithmetic                                                                                                */
/* ======================================================================================================== */

static void test_add_sub_neg(void **state)
{
    (void)state;
    RUN_BINARY(F_ADD, B2(1.5, -2.25), B2(3.0, 0.125), B2(0.1, 0.2));
    RUN_BINARY(F_SUB, B2(1.5, -2.25), B2(3.0, 0.125), B2(0.1, 0.2));
    RUN_UNARY(F_NEG, P1(1.5), P1(-0.3), P1(0.0));
}

static void test_mul_div(void **state)
{
    (void)state;
    RUN_BINARY(F_MUL, B2(1.5, -2.25), B2(3.0, 0.125), B2(0.0, 2.5), B2(-7.0, 1e-3));
    RUN_BINARY(F_DIV, B2(1.5, -2.25), B2(3.0, 0.125), B2(0.0, 2.5), B2(-7.0, 1e-3), B2(1e-20, 3e5));
}

static void test_mixed_with_double(void **state)
{
    (void)state;
    const unary_pt pts[] = {P2(1.25, 3.5), P2(-2.0, 0.1), P2(0.7, -1e3)};
    for (size_t k = 0; k < 3; k++) {
        check_unary(&F_ADD_D, pts[k]);
        check_unary(&F_D_ADD, pts[k]);
        check_unary(&F_SUB_D, pts[k]);
        check_unary(&F_D_SUB, pts[k]);
        check_unary(&F_MUL_D, pts[k]);
        check_unary(&F_D_MUL, pts[k]);
        check_unary(&F_DIV_D, pts[k]);
        check_unary(&F_D_DIV, pts[k]);
    }
    /* the mixed forms give the same bits as the all-dual forms with a constant */
    ad_num a = mk(0.3, SEED_U);
    ad_num m1 = ad_d_sub(1.0, a), m2 = ad_sub(ad_const(1.0), a);
    ad_num q1 = ad_d_div(2.0, a), q2 = ad_div(ad_const(2.0), a);
    assert_bits_equal(m1.v, m2.v);
    assert_bits_equal(q1.v, q2.v);
    for (int i = 0; i < 3; i++) {
        assert_bits_equal(m1.d[i], m2.d[i]);
        assert_close(q1.d[i], q2.d[i], TOL_AN, 0.0);
    }
}

/* ======================================================================================================== */
/* elementary functions                                                                                      */
/* ======================================================================================================== */

static void test_sqrt(void **state)
{
    (void)state;
    RUN_UNARY(F_SQRT, P1(4.0), P1(2.0), P1(1e-6), P1(1e10), P1(0.3));
    /* sqrt at 0: value 0, tangent 0 by convention (the slope is infinite), for +0 and -0 */
    ad_num z = ad_sqrt(mk(0.0, SEED_U));
    assert_bits_equal(z.v, 0.0);
    assert_zero_tangents(z);
    ad_num mz = ad_sqrt(mk(-0.0, SEED_U));
    assert_bits_equal(mz.v, sqrt(-0.0));
    assert_zero_tangents(mz);
}

static void test_sin_cos_tan(void **state)
{
    (void)state;
    /* at pi/2 (sin) and 0 (cos) the slope is ~0: FD roundoff eps |f| / h = 2e-11 sets the atol */
    RUN_UNARY(F_SIN, P1(0.0), P1(0.3), P1(-2.0), P1(10.0), P1(1e-8), {TEST_PI / 2, 0, 0, 1e-10, 0});
    /* at 1e3 the step is 1e-5 absolute: sin and cos vary on a scale of 1, not |x| */
    RUN_UNARY(F_COS, {0.0, 0, 0, 1e-10, 0}, P1(0.7), P1(-3.0), {1e3, 0, 1e-5, 0, 0}, {TEST_PI, 0, 0, 1e-10, 0});
    /* tan near pi/2: f'''/f' ~ 6 / (pi/2 - x)^2 ~ 1.2e2, so h = 1e-6 keeps truncation ~2e-11 */
    RUN_UNARY(F_TAN, P1(0.0), P1(0.3), P1(-1.2), {1.5, 0, 1e-6, 0, 0});
}

static void test_exp_log(void **state)
{
    (void)state;
    /* exp at +-20, 50: f'''/f' = 1, so a relative step (5e-4 at 50) would truncate at 4e-8; h = 1e-5 */
    RUN_UNARY(F_EXP, P1(0.0), P1(1.3), {-20.0, 0, 1e-5, 0, 0}, {50.0, 0, 1e-5, 0, 0});
    RUN_UNARY(F_LOG, P1(1.0), P1(0.5), P1(1e-300), P1(1e5), P1(2.718281828459045));
}

static void test_pow_d(void **state)
{
    (void)state;
    /* (2, 0): a^0 == 1, slope 0 */
    RUN_UNARY(F_POW_D, P2(2.5, 3.3), P2(0.7, -1.5), P2(-2.0, 3.0), P2(9.0, 0.5), P2(3.0, 1.0), P2(2.0, 0.0), P2(1e-3, 2.0));

    /* at a == 0: slope 0 for p > 1 and p == 0, 1 for p == 1, +inf for 0 < p < 1 (IEEE) */
    const double ps[] = {2.0, 3.0, 1.5, 0.0};
    for (size_t k = 0; k < 4; k++) {
        test_context("ad_pow_d(0, %g)", ps[k]);
        ad_num r = ad_pow_d(mk(0.0, SEED_U), ps[k]);
        assert_bits_equal(r.v, pow(0.0, ps[k]));
        assert_zero_tangents(r);
    }
    test_context("ad_pow_d(0, 1)");
    ad_num r1 = ad_pow_d(mk(0.0, SEED_U), 1.0);
    assert_bits_equal(r1.v, 0.0);
    for (int i = 0; i < 3; i++) assert_bits_equal(r1.d[i], SEED_U[i]);
    test_context("ad_pow_d(0, 0.5)");
    ad_num rh = ad_pow_d(ad_var(0.0, 0), 0.5);
    assert_bits_equal(rh.v, 0.0);
    assert_true(isinf(rh.d[0]) && rh.d[0] > 0); /* (directions with a zero seed get 0 * inf = NaN) */
    test_context(NULL);
}

static void test_pow(void **state)
{
    (void)state;
    RUN_BINARY(F_POW, B2(2.5, 1.7), B2(0.3, -2.2), B2(7.0, 0.0), B2(1.0, 3.5), B2(10.0, 0.5));

    /* negative base with an integer exponent that carries no tangent */
    ad_num r = ad_pow(mk(-2.0, SEED_U), ad_const(3.0));
    assert_bits_equal(r.v, pow(-2.0, 3.0));
    for (int i = 0; i < 3; i++) assert_close(r.d[i], 12.0 * SEED_U[i], TOL_AN, 0.0);

    /* a == 0: slope in a as ad_pow_d; slope in b is 0 (0^b == 0 for b > 0) */
    ad_num z2 = ad_pow(mk(0.0, SEED_A), mk(2.0, SEED_B));
    assert_bits_equal(z2.v, 0.0);
    assert_zero_tangents(z2);
    ad_num z1 = ad_pow(mk(0.0, SEED_U), ad_const(1.0));
    assert_bits_equal(z1.v, 0.0);
    for (int i = 0; i < 3; i++) assert_bits_equal(z1.d[i], SEED_U[i]);
    ad_num z0 = ad_pow(mk(0.0, SEED_U), ad_const(0.0));
    assert_bits_equal(z0.v, 1.0);
    assert_zero_tangents(z0);

    /* agrees with ad_pow_d when the exponent is constant */
    ad_num pa = ad_pow(mk(2.5, SEED_U), ad_const(3.3)), pb = ad_pow_d(mk(2.5, SEED_U), 3.3);
    assert_bits_equal(pa.v, pb.v);
    for (int i = 0; i < 3; i++) assert_close(pa.d[i], pb.d[i], TOL_AN, 0.0);
}

static void test_atan2(void **state)
{
    (void)state;
    /* (y, x): the four quadrants, the axes, near the branch cut (x < 0, y -> 0) */
    RUN_BINARY(F_ATAN2, B2(1.0, 1.0), B2(1.0, -1.0), B2(-1.0, -1.0), B2(-1.0, 1.0), B2(0.5, 2.0), B2(-3.0, 0.25), B2(2.0, -7.0),
               B2(0.0, 1.0), B2(1.0, 0.0), B2(-1.0, 0.0), B2(1e-3, -1.0), B2(-1e-3, -1.0));
    /* on the cut (y = 0, x < 0) the central difference in y jumps by 2 pi: analytic y-slope only */
    RUN_BINARY(F_ATAN2, {0.0, -1.0, 0, 0, 0, 1, 0, 0});

    /* origin: value as libm (0 for (+0,+0), pi for (+0,-0), -pi for (-0,-0)), tangent 0 */
    const double ys[] = {0.0, 0.0, -0.0, -0.0}, xs[] = {0.0, -0.0, 0.0, -0.0};
    for (int k = 0; k < 4; k++) {
        test_context("ad_atan2(%g, %g)", ys[k], xs[k]);
        ad_num r = ad_atan2(mk(ys[k], SEED_A), mk(xs[k], SEED_B));
        assert_bits_equal(r.v, atan2(ys[k], xs[k]));
        assert_zero_tangents(r);
    }
    test_context(NULL);
}

static void test_acos_asin(void **state)
{
    (void)state;
    /* Near +-1, at distance d: truncation h^2 f'''/(6 f') = h^2 / (8 d^2), roundoff eps |f| / (h |f'|) =
     * eps (pi/2) sqrt(2 d) / h. The best step h = (4 eps pi sqrt(2 d) d^2)^(1/3) leaves ~3e-9 at d = 1e-6 (h = 1.6e-10)
     * and ~1.5e-8 each at d = 1e-8 (h = 3.4e-12): there the FD check gets atol 5e-8 |f'| and the analytic check
     * (TOL_AN) is the sharp one. */
    RUN_UNARY(F_ACOS, P1(0.0), P1(0.5), P1(-0.9), {1.0 - 1e-8, 0, 3.4e-12, 5e-8 * 7071.07, 0},
              {-1.0 + 1e-6, 0, 1.6e-10, 0, 0});
    RUN_UNARY(F_ASIN, P1(0.0), P1(0.5), P1(-0.9), {1.0 - 1e-8, 0, 3.4e-12, 5e-8 * 7071.07, 0},
              {-1.0 + 1e-6, 0, 1.6e-10, 0, 0});

    /* exactly +-1: value as libm, tangent 0 by convention */
    const double xs[] = {1.0, -1.0};
    for (int k = 0; k < 2; k++) {
        test_context("ad_acos/ad_asin(%g)", xs[k]);
        ad_num c = ad_acos(mk(xs[k], SEED_U)), s = ad_asin(mk(xs[k], SEED_U));
        assert_bits_equal(c.v, acos(xs[k]));
        assert_bits_equal(s.v, asin(xs[k]));
        assert_zero_tangents(c);
        assert_zero_tangents(s);
    }
    /* one ulp inside 1: slope finite, large and right (1 - x^2 = 2^-52 (1 - 2^-54), slope ~ -2^26) */
    double x1 = nextafter(1.0, 0.0);
    ad_num c1 = ad_acos(mk(x1, SEED_U));
    assert_bits_equal(c1.v, acos(x1));
    assert_close(c1.d[0], (double)d_acos(x1, 0), 1e-14, 0.0);
    test_context(NULL);
}

static void test_fabs_floor_ceil(void **state)
{
    (void)state;
    RUN_UNARY(F_FABS, P1(2.5), P1(-0.75), P1(1e-300));
    ad_num z = ad_fabs(mk(0.0, SEED_U));
    assert_bits_equal(z.v, 0.0);
    assert_zero_tangents(z);
    ad_num mz = ad_fabs(mk(-0.0, SEED_U));
    assert_bits_equal(mz.v, 0.0);
    assert_zero_tangents(mz);

    /* floor/ceil return plain doubles (zero derivative by construction) */
    _Static_assert(_Generic(ad_floor(ad_const(1.0)), double: 1, default: 0), "ad_floor returns double");
    _Static_assert(_Generic(ad_ceil(ad_const(1.0)), double: 1, default: 0), "ad_ceil returns double");
    const double xs[] = {2.7, -2.5, 3.0, -0.0, 1e300, -1e-300};
    for (int k = 0; k < 6; k++) {
        assert_bits_equal(ad_floor(mk(xs[k], SEED_U)), floor(xs[k]));
        assert_bits_equal(ad_ceil(mk(xs[k], SEED_U)), ceil(xs[k]));
    }
}

/* ---- sincg ---- */

/* Error bounds for the sincg slopes at (x, N). The value and slopes read sin(fl(N x)) and cos(fl(N x)); rounding
 * N x costs up to |N x| eps/2 absolutely in both, and the x-slope divides by sin^2 x. So
 *   |err d/dx| <~ eps (|N x| (1 + |N sin x|) + 4 (|N sin x| + |sin N x|)) / sin^2 x,
 *   |err d/dN| <~ eps |x| (|N x| + 4) / |sin x|,
 * ~ eps/t^2 near x = k pi + t: the quotient form cancels there (see test_sincg_near_k_pi). */
static double sincg_err_x(double x, double N)
{
    double s = sin(x), nx = fabs(N * x);
    return 2.0 * EPS * (nx * (1.0 + fabs(N * s)) + 4.0 * (fabs(N * s) + fabs(sin(N * x)))) / (s * s);
}
static double sincg_err_N(double x, double N)
{
    return 2.0 * EPS * fabs(x) * (fabs(N * x) + 4.0) / fabs(sin(x));
}
/* FD steps: 1e-5 of the length on which sin(N x) / sin(x) varies: min(|x|, 1/N, |sin x|) in x, min(N, 1/|x|) in N
 * (f'''/f' ~ N^2, 6 / sin^2 x where non-integer N makes f ~ 1/sin x near k pi, and x^2; a step relative to |x| or
 * N alone truncates at ~(N x)^2 1e-10 / 6, 1.6e-8 at N x = 31).
 * FD noise: the value itself is uncertain by ~eps (|N x| / |sin x| + 4 |f|), divided by h. */
static double sincg_hx(double x, double N) { return FD_REL_STEP * fmin(fmin(fabs(x), 1.0 / fabs(N)), fabs(sin(x))); }
static double sincg_hN(double x, double N) { return FD_REL_STEP * fmin(fabs(N), 1.0 / fabs(x)); }
static double sincg_fd_atol(double x, double N)
{
    double f = spec_sincg(x, N);
    double noise = EPS * (fabs(N * x) / fabs(sin(x)) + 4.0 * fabs(f));
    return 2.0 * noise / sincg_hx(x, N) + 2.0 * noise / sincg_hN(x, N);
}

static binary_pt sincg_pt(double x, double N)
{
    binary_pt p = {x, N, sincg_err_x(x, N), sincg_err_N(x, N), sincg_fd_atol(x, N), 0, sincg_hx(x, N), sincg_hN(x, N)};
    return p;
}

static void test_sincg(void **state)
{
    (void)state;
    const double pts[][2] = {
        {0.3, 10.0},   {-1.7, 7.5},  {2.5, 3.0},    {1.0, 1.0}, /* N == 1: value 1, d/dx 0 */
        {0.05, 20.0},  {-0.4, 50.0}, {1e-3, 100.0}, {3e-4, 123.0},
        {0.0123, 1e3}, {1e-4, 1e3},  {3e-6, 1e5},   {-2.2e-5, 4.4e4}, /* large N, N x ~ 1 */
    };
    for (size_t k = 0; k < sizeof pts / sizeof pts[0]; k++) check_binary(&F_SINCG, sincg_pt(pts[k][0], pts[k][1]));
}

static void test_sincg_at_zero(void **state)
{
    (void)state;
    const double Ns[] = {1.0, 10.0, 7.5, 1e5};
    for (int k = 0; k < 4; k++) {
        test_context("ad_sincg(0, %g)", Ns[k]);
        /* x in direction 0, N in direction 1, both in direction 2 */
        ad_num r = ad_sincg(mk(0.0, SEED_A), mk(Ns[k], SEED_B));
        assert_bits_equal(r.v, Ns[k]);
        assert_bits_equal(r.v, spec_sincg(0.0, Ns[k]));
        assert_bits_equal(r.d[0], 0.0);   /* d/dx = 0 */
        assert_bits_equal(r.d[1], 1.0);   /* d/dN = 1 */
        assert_bits_equal(r.d[2], -1.25); /* 0 * 0.75 + 1 * (-1.25) */
        assert_zero_tangents(ad_sincg(ad_const(0.0), ad_const(Ns[k])));
        /* -0.0 == 0: same branch */
        ad_num m = ad_sincg(mk(-0.0, SEED_A), mk(Ns[k], SEED_B));
        assert_bits_equal(m.v, Ns[k]);
        assert_bits_equal(m.d[0], 0.0);
        /* just off zero (N x = 1e-3) the slopes approach those limits: sin(Nx)/sin(x) =
         * N (1 - (N^2-1) x^2/6 + (3N^4 - 10N^2 + 7) x^4/360 - ...), so d/dx = N (-(N^2-1) x/3 + (3N^4-10N^2+7) x^3/90)
         * up to a relative (N x)^4 ~ 1e-12; the quotient form's cancellation there costs ~eps/(N x)^2 ~ 2e-10 */
        double N = Ns[k], x = 1e-3 / N;
        ad_num n = ad_sincg(mk(x, SEED_A), mk(N, SEED_B));
        double want = N * (-(N * N - 1.0) * x / 3.0 + (3.0 * N * N * N * N - 10.0 * N * N + 7.0) * x * x * x / 90.0);
        assert_close(n.d[0], want, 1e-9, 1e-14 * N * N); /* atol: N = 1 wants exactly 0 */
        assert_close(n.d[1], (double)d_sincg_N(x, N), TOL_AN, 0.0); /* = 1 - (N x)^2/2 + ... */
        assert_close(n.d[1], 1.0, 1e-6, 0.0);
    }
    test_context(NULL);
}

/* Near x = k pi (k != 0) sin x is small but not 0 in floating point: the value is the reference's quotient (bit
 * parity), and the slopes are checked against long double with the bound above. For integer N the x-slope tends
 * to 0 at the peak; the relative accuracy of the quotient form degrades like eps / (N^2 t^3): ~3e-9 at t = 1e-3,
 * ~3e-6 at t = 1e-4 (k = 1, N = 10). */
static void test_sincg_near_k_pi(void **state)
{
    (void)state;
    const double pts[][2] = {
        {TEST_PI + 1e-3, 10.0}, {2.0 * TEST_PI - 1e-4, 10.0}, {-TEST_PI + 1e-2, 7.5},
        {3.0 * TEST_PI + 1e-3, 10.0}, {TEST_PI - 2e-3, 25.0},   {-2.0 * TEST_PI - 5e-3, 4.0},
    };
    for (size_t k = 0; k < sizeof pts / sizeof pts[0]; k++) check_binary(&F_SINCG, sincg_pt(pts[k][0], pts[k][1]));

    /* x = fl(pi), N = 10: sin x = 1.2e-16 != 0, so the quotient is used (value as the reference);
     * everything finite, and the x-slope is within its error bound of the true 0 */
    double x = TEST_PI;
    ad_num r = ad_sincg(mk(x, SEED_A), mk(10.0, SEED_B));
    assert_bits_equal(r.v, spec_sincg(x, 10.0));
    for (int i = 0; i < 3; i++) assert_true(isfinite(r.d[i]));
    assert_close(r.d[0], (double)d_sincg_x(x, 10.0), 0.0, sincg_err_x(x, 10.0));
    assert_close(r.d[1], (double)d_sincg_N(x, 10.0), 1e-12, 0.0);
}

/* ---- sincospi and the lattice factor's slopes (ad_sincgpi_slopes) ---- */

/* sin(pi y), cos(pi y) in long double, with y = n + r reduced exactly first (|r| <= 1/2), so that the reference does
 * not carry the rounding of pi y: sin(pi y) = (-1)^n sin(pi r), cos(pi y) = (-1)^n cos(pi r) */
static void sincospi_ld(double y, long double *s, long double *c)
{
    long double n = nearbyintl((long double)y), r = (long double)y - n;
    long double sign = fmodl(n, 2.0L) != 0.0L ? -1.0L : 1.0L;
    long double x = 3.14159265358979323846264338327950288L * r;
    *s = sign * sinl(x);
    *c = sign * cosl(x);
}

/* Relative error: x = fl(pi r) is within eps/2 of pi r (1 ulp of sin x at most), the series are truncated below
 * 1e-19, and Horner's rounding costs ~1.5 ulp: 4 eps relative, for every quadrant. atol 1e-19: the long double
 * reference's own pi r is off by ~5e-20 absolutely, which is all of cos(pi/2) (the values at whole and half-whole y
 * are checked exactly below). */
static void test_sincospi(void **state)
{
    (void)state;
    const double ys[] = {0.0,   1e-300, 1e-9,  -1e-9, 0.1,    0.25,    -0.25,  0.2500001, 0.3,   0.49,  0.5,
                         -0.5,  0.51,   0.75,  0.99,  1.0,    1.0 + 1e-9, -1.3, 1.75,   2.0,   2.5,   3.1,
                         -7.77, 12.25,  99.5,  1e3 + 0.123, -4.5e4 - 0.3, 1e6 + 0.25, 3e9 + 0.5, 1.234e12 + 0.0625};
    double worst = 0.0;
    for (size_t k = 0; k < sizeof ys / sizeof ys[0]; k++) {
        double s, c;
        long double rs, rc;
        ad_sincospi(ys[k], &s, &c);
        sincospi_ld(ys[k], &rs, &rc);
        test_context("ad_sincospi(%.17g)", ys[k]);
        assert_close(s, (double)rs, 4.0 * EPS, 1e-19);
        assert_close(c, (double)rc, 4.0 * EPS, 1e-19);
        if (fabsl(rs) > 1e-15L) worst = fmax(worst, (double)fabsl(((long double)s - rs) / rs));
        if (fabsl(rc) > 1e-15L) worst = fmax(worst, (double)fabsl(((long double)c - rc) / rc));
    }
    /* many points of [-3, 3] */
    for (int k = -3000; k <= 3000; k++) {
        double y = k / 1000.0 + 1.0 / 3.0e4, s, c;
        long double rs, rc;
        ad_sincospi(y, &s, &c);
        sincospi_ld(y, &rs, &rc);
        test_context("ad_sincospi(%.17g)", y);
        assert_close(s, (double)rs, 4.0 * EPS, 1e-19);
        assert_close(c, (double)rc, 4.0 * EPS, 1e-19);
    }
    test_context(NULL);
    print_message("ad_sincospi: largest relative error %.2g eps on the listed points\n", worst / EPS);
    /* exact at whole and half-whole y */
    const double whole[] = {0.0, 1.0, -1.0, 2.0, 7.0, -12.0};
    for (int k = 0; k < 6; k++) {
        double s, c;
        ad_sincospi(whole[k], &s, &c);
        assert_true(s == 0.0);
        assert_true(c == (((long)whole[k] & 1) ? -1.0 : 1.0));
        ad_sincospi(whole[k] + 0.5, &s, &c);
        assert_true(c == 0.0);
        assert_true(s == (((long)floor(whole[k] + 0.5) & 1) ? -1.0 : 1.0));
    }
}

/* The slopes with respect to u of sincg(pi u, N) are pi times ad_sincg's x-slopes at x = pi u, and read
 * sin(pi fl(N u)) as ad_sincg read sin(fl(N x)): the same error bounds apply (sincg_err_x times pi, sincg_err_N),
 * and below |N pi u| = 1e-3 the Taylor series' truncation, (N x)^4 ~ 1e-12 relative (rtol 1e-9 as for ad_sincg). */
static void test_sincgpi_slopes(void **state)
{
    (void)state;
    const long double PI_L = 3.14159265358979323846264338327950288L;
    const double pts[][2] = {
        {0.3, 5.0},    {-0.17, 10.0},  {0.49, 7.0},   {0.5, 5.0},     {-0.5, 6.0},    {0.1, 7.5}, /* non-whole N */
        {1e-3, 10.0},  {3e-4, 50.0},   {-0.0123, 123.0}, {1e-4, 1e3}, {2e-6, 1e5},    {0.37, 1.0}, /* N == 1 */
        {1e-7, 5.0},   {-3e-6, 20.0},  {5e-5, 6.0},   {0.02, 25.0},   {-0.45, 100.0}, {0.25, 3.0},
    };
    for (size_t k = 0; k < sizeof pts / sizeof pts[0]; k++) {
        double u = pts[k][0], N = pts[k][1], gu, gN;
        ad_sincgpi_slopes(u, N, &gu, &gN);
        double x = (double)(PI_L * u);
        double want_u = (double)(PI_L * d_sincg_x(PI_L * u, N)), want_N = (double)d_sincg_N(PI_L * u, N);
        test_context("ad_sincgpi_slopes(%g, %g)", u, N);
        double taylor = fabs(N * x) < 1e-3 ? 1e-9 : 0.0;
        assert_close(gu, want_u, taylor, (double)PI_L * sincg_err_x(x, N) + 1e-300);
        assert_close(gN, want_N, taylor, sincg_err_N(x, N));
    }
    test_context(NULL);
    double gu, gN;
    ad_sincgpi_slopes(0.0, 7.0, &gu, &gN);
    assert_true(gu == 0.0 && gN == 1.0);
    ad_sincgpi_slopes(-0.0, 7.0, &gu, &gN);
    assert_true(gu == 0.0 && gN == 1.0);

    /* the dual: the given value, the tangent u.d gu + N.d gN */
    ad_num r = ad_sincgpi_with(mk(0.2, SEED_A), mk(5.0, SEED_B), 42.0);
    ad_sincgpi_slopes(0.2, 5.0, &gu, &gN);
    assert_bits_equal(r.v, 42.0);
    for (int i = 0; i < 3; i++) assert_bits_equal(r.d[i], SEED_A[i] * gu + SEED_B[i] * gN);
}

/* ---- sinc3 ---- */

/* The slope's error: below 0.1 a Taylor series (a few ulp); above, the closed form
 * 3 (x^2 s - 3 (s - x c)) / x^4 whose numerator ~ -x^5/15 is the difference of terms ~3x that each carry ~eps x:
 * relative error <~ 45 eps / x^4 (1e-10 at 0.1, 2e-13 at 0.5, measured 4e-11 at 0.1). */
static double sinc3_slope_rtol(double x)
{
    double ax = fabs(x);
    return ax < 0.1 ? TOL_AN : TOL_AN + 50.0 * EPS / (ax * ax * ax * ax);
}

static void test_sinc3(void **state)
{
    (void)state;
    /* Against the independent long double series, value bit for bit against the reference's formula. No central
     * difference below 0.5: the reference's value loses ~eps/x^2 to cancellation (it is 0 at x = 1e-8), so a
     * difference quotient of the value says nothing there; the slope is the series (accurate) instead. */
    const double xs[] = {1e-8, -1e-8, 1e-3, 0.05, -0.05, 0.0999, 0.1001, -0.1001, 0.2, 0.5, 1.0, 2.5, -3.0, 4.4934, 10.0, 30.0};
    for (size_t k = 0; k < sizeof xs / sizeof xs[0]; k++) {
        double x = xs[k];
        test_context("ad_sinc3(%.17g)", x);
        ad_num r = ad_sinc3(mk(x, SEED_U));
        assert_bits_equal(r.v, spec_sinc3(x));
        double g = (double)sinc3_slope_ref(x);
        for (int i = 0; i < 3; i++) assert_close(r.d[i], g * SEED_U[i], sinc3_slope_rtol(x), 0.0);
        assert_zero_tangents(ad_sinc3(ad_const(x)));
    }
    /* central differences where the value is accurate; step 1e-5 min(|x|, 1) (sinc3 oscillates with period 2 pi);
     * noise: the value is uncertain by ~4 eps / x^2, divided by h */
    const double fx[] = {0.5, 1.0, 2.5, -3.0, 10.0, 30.0};
    for (size_t k = 0; k < sizeof fx / sizeof fx[0]; k++) {
        double x = fx[k], h = FD_REL_STEP * fmin(fabs(x), 1.0);
        unary_pt pt = {x, 0.0, h, 8.0 * EPS / (x * x) / h, 0.0};
        pt.atol_an = fabs((double)sinc3_slope_ref(x)) * sinc3_slope_rtol(x);
        check_unary(&F_SINC3, pt);
    }
    test_context(NULL);
}

static void test_sinc3_edges(void **state)
{
    (void)state;
    /* x == 0: value 1 exactly, slope 0 (even function) */
    ad_num z = ad_sinc3(mk(0.0, SEED_U));
    assert_bits_equal(z.v, 1.0);
    for (int i = 0; i < 3; i++) assert_close(z.d[i], 0.0, 0.0, 0.0);

    /* small |x|: slope -x/5 to leading order, and odd */
    ad_num s = ad_sinc3(mk(1e-8, SEED_U)), sm = ad_sinc3(mk(-1e-8, SEED_U));
    assert_close(s.d[0], -2e-9, 1e-15, 0.0);
    for (int i = 0; i < 3; i++) assert_bits_equal(sm.d[i], -s.d[i]);

    /* continuity of the slope across the switch at |x| = 0.1: series just below, closed form at 0.1; the jump is
     * the closed form's error there (bounded above) plus f'' * ulp */
    double below = nextafter(0.1, 0.0), at = 0.1, above = nextafter(0.1, 1.0);
    double gb = ad_sinc3(ad_var(below, 0)).d[0], ga = ad_sinc3(ad_var(at, 0)).d[0], gc = ad_sinc3(ad_var(above, 0)).d[0];
    assert_close(gb, (double)sinc3_slope_ref(below), TOL_AN, 0.0); /* series branch */
    assert_close(ga, (double)sinc3_slope_ref(at), sinc3_slope_rtol(at), 0.0);
    assert_close(gc, (double)sinc3_slope_ref(above), sinc3_slope_rtol(above), 0.0);
    assert_close(ga, gb, sinc3_slope_rtol(at) + TOL_AN, 0.0);
    /* and the same from the negative side */
    double nb = ad_sinc3(ad_var(-below, 0)).d[0], na = ad_sinc3(ad_var(-at, 0)).d[0];
    assert_close(na, nb, sinc3_slope_rtol(at) + TOL_AN, 0.0);
}

/* ======================================================================================================== */
/* vectors and matrices                                                                                      */
/* ======================================================================================================== */

/* A function of n scalar inputs (seeded per direction by seed[j][i]) with m scalar outputs. */
typedef void (*multi_fn)(const ad_num *in, ad_num *out);

#define MAX_IN 16
#define MAX_OUT 9

/* deterministic seeds in [-1, 1], some zero, different in every direction */
static void make_seeds(int n, double seed[][3])
{
    uint32_t s = 12345u;
    for (int j = 0; j < n; j++)
        for (int i = 0; i < 3; i++) {
            s = s * 1664525u + 1013904223u;
            double u = (double)(s >> 8) / 16777216.0 * 2.0 - 1.0;
            seed[j][i] = ((j + 2 * i) % 5 == 4) ? 0.0 : u;
        }
}

/* Checks out[k].d[i] against want[k][i] (analytic) at rtol_an and against a directional central difference
 * (inputs moved by +-h seed[.][i], h = 1e-5 max |x_j|) at TOL_FD; both relative to the largest component of that
 * direction's tangent (a rotation mixes components, so one component's own size is no scale). Also checks that
 * constant inputs give zero tangents and the same value. */
static void check_multi(const char *name, multi_fn f, int n, int m, const double *x, double seed[][3],
                        double want[][3], double rtol_an)
{
    ad_num in[MAX_IN], out[MAX_OUT], outc[MAX_OUT], op[MAX_OUT], om[MAX_OUT];
    double xmax = 0.0;
    for (int j = 0; j < n; j++) {
        in[j] = mk(x[j], seed[j]);
        if (fabs(x[j]) > xmax) xmax = fabs(x[j]);
    }
    f(in, out);
    for (int j = 0; j < n; j++) in[j] = ad_const(x[j]);
    f(in, outc);
    for (int k = 0; k < m; k++) {
        test_context("%s: constant inputs, output %d", name, k);
        assert_bits_equal(outc[k].v, out[k].v);
        assert_zero_tangents(outc[k]);
    }
    double h = FD_REL_STEP * (xmax > 0.0 ? xmax : 1.0);
    for (int i = 0; i < 3; i++) {
        for (int j = 0; j < n; j++) in[j] = ad_const(x[j] + h * seed[j][i]);
        f(in, op);
        for (int j = 0; j < n; j++) in[j] = ad_const(x[j] - h * seed[j][i]);
        f(in, om);
        double scale_an = 0.0, scale_fd = 0.0, scale_v = xmax;
        for (int k = 0; k < m; k++) {
            if (fabs(want[k][i]) > scale_an) scale_an = fabs(want[k][i]);
            double fd = (op[k].v - om[k].v) / (2.0 * h);
            if (fabs(fd) > scale_fd) scale_fd = fabs(fd);
            if (fabs(out[k].v) > scale_v) scale_v = fabs(out[k].v);
        }
        /* FD roundoff: a few operations on numbers of size scale_v, each output off by ~4 eps scale_v */
        double noise = 4.0 * EPS * scale_v / h;
        for (int k = 0; k < m; k++) {
            test_context("%s: direction %d, output %d", name, i, k);
            assert_close(out[k].d[i], want[k][i], 0.0, rtol_an * scale_an + 1e-300);
            double fd = (op[k].v - om[k].v) / (2.0 * h);
            /* the inputs x +- h s are rounded: relative step error <= eps xmax / (h |s|) ~ 2e-11 */
            assert_close(out[k].d[i], fd, 0.0, TOL_FD * scale_fd + noise);
        }
    }
    test_context(NULL);
}

/* plain-double helpers for the analytic tangents */
static void v3_cross(const double a[3], const double b[3], double r[3])
{
    r[0] = a[1] * b[2] - a[2] * b[1];
    r[1] = a[2] * b[0] - a[0] * b[2];
    r[2] = a[0] * b[1] - a[1] * b[0];
}
static double v3_dot(const double a[3], const double b[3]) { return (a[0] * b[0] + a[1] * b[1]) + a[2] * b[2]; }
static void m3_mul_v(const double M[9], const double v[3], double r[3])
{
    for (int k = 0; k < 3; k++) r[k] = (M[3 * k] * v[0] + M[3 * k + 1] * v[1]) + M[3 * k + 2] * v[2];
}

static ad_vec3 in_vec(const ad_num *in) { return ad_vec3_make(in[0], in[1], in[2]); }
static void out_vec(ad_vec3 v, ad_num *out)
{
    for (int k = 0; k < 3; k++) out[k] = v.c[k];
}

static void mf_dot(const ad_num *in, ad_num *out) { out[0] = ad_vec3_dot(in_vec(in), in_vec(in + 3)); }
static void mf_cross(const ad_num *in, ad_num *out) { out_vec(ad_vec3_cross(in_vec(in), in_vec(in + 3)), out); }
static void mf_add(const ad_num *in, ad_num *out) { out_vec(ad_vec3_add(in_vec(in), in_vec(in + 3)), out); }
static void mf_sub(const ad_num *in, ad_num *out) { out_vec(ad_vec3_sub(in_vec(in), in_vec(in + 3)), out); }
static void mf_scale(const ad_num *in, ad_num *out) { out_vec(ad_vec3_scale(in_vec(in), in[3]), out); }
static void mf_scale_d(const ad_num *in, ad_num *out) { out_vec(ad_vec3_scale_d(in_vec(in), -2.75), out); }
static void mf_norm(const ad_num *in, ad_num *out) { out[0] = ad_vec3_norm(in_vec(in)); }
static void mf_unit(const ad_num *in, ad_num *out)
{
    ad_num n;
    out_vec(ad_vec3_unit(in_vec(in), &n), out);
    out[3] = n;
}
static void mf_mat_vec(const ad_num *in, ad_num *out)
{
    ad_mat3 M;
    for (int k = 0; k < 9; k++) M.m[k] = in[k];
    out_vec(ad_mat3_mul_vec(&M, in_vec(in + 9)), out);
}
static void mf_rot_axis(const ad_num *in, ad_num *out) { out_vec(ad_vec3_rotate_axis(in_vec(in), in_vec(in + 3), in[6]), out); }
static void mf_rot_xyz(const ad_num *in, ad_num *out) { out_vec(ad_vec3_rotate_xyz(in_vec(in), in[3], in[4], in[5]), out); }

static void test_vec3_make_const(void **state)
{
    (void)state;
    ad_vec3 c = ad_vec3_const(1.5, -2.0, 1e-300);
    assert_bits_equal(c.c[0].v, 1.5);
    assert_bits_equal(c.c[1].v, -2.0);
    assert_bits_equal(c.c[2].v, 1e-300);
    for (int k = 0; k < 3; k++) assert_zero_tangents(c.c[k]);
    ad_num x = mk(1.0, SEED_U), y = mk(2.0, SEED_A), z = mk(3.0, SEED_B);
    ad_vec3 v = ad_vec3_make(x, y, z);
    const double *s[3] = {SEED_U, SEED_A, SEED_B};
    for (int k = 0; k < 3; k++) {
        assert_bits_equal(v.c[k].v, (double)(k + 1));
        for (int i = 0; i < 3; i++) assert_bits_equal(v.c[k].d[i], s[k][i]);
    }
}

static void test_vec3_dot_cross(void **state)
{
    (void)state;
    double seed[MAX_IN][3], want[MAX_OUT][3];
    make_seeds(6, seed);
    const double x[6] = {0.3, -1.2, 2.5, 1.7, 0.4, -0.9};
    const double *a = x, *b = x + 3;
    ad_num in[6], out[3];
    for (int j = 0; j < 6; j++) in[j] = mk(x[j], seed[j]);

    /* dot: value as (a0 b0 + a1 b1) + a2 b2; tangent a'.b + a.b' */
    mf_dot(in, out);
    assert_bits_equal(out[0].v, (a[0] * b[0] + a[1] * b[1]) + a[2] * b[2]);
    for (int i = 0; i < 3; i++) {
        double da[3] = {seed[0][i], seed[1][i], seed[2][i]}, db[3] = {seed[3][i], seed[4][i], seed[5][i]};
        want[0][i] = v3_dot(da, b) + v3_dot(a, db);
    }
    check_multi("ad_vec3_dot", mf_dot, 6, 1, x, seed, want, TOL_AN);

    /* cross: value componentwise as the reference; tangent a' x b + a x b' */
    mf_cross(in, out);
    double c[3];
    v3_cross(a, b, c);
    for (int k = 0; k < 3; k++) assert_bits_equal(out[k].v, c[k]);
    for (int i = 0; i < 3; i++) {
        double da[3] = {seed[0][i], seed[1][i], seed[2][i]}, db[3] = {seed[3][i], seed[4][i], seed[5][i]};
        double t1[3], t2[3];
        v3_cross(da, b, t1);
        v3_cross(a, db, t2);
        for (int k = 0; k < 3; k++) want[k][i] = t1[k] + t2[k];
    }
    check_multi("ad_vec3_cross", mf_cross, 6, 3, x, seed, want, TOL_AN);
    /* a x a = 0 with tangent a' x a + a x a' = 0 */
    ad_vec3 av = in_vec(in);
    ad_vec3 aa = ad_vec3_cross(av, av);
    for (int k = 0; k < 3; k++) {
        assert_bits_equal(aa.c[k].v, 0.0);
        for (int i = 0; i < 3; i++) assert_close(aa.c[k].d[i], 0.0, 0.0, 1e-15);
    }
}

static void test_vec3_add_sub_scale(void **state)
{
    (void)state;
    double seed[MAX_IN][3], want[MAX_OUT][3];
    make_seeds(6, seed);
    const double x[6] = {0.3, -1.2, 2.5, 1.7, 0.4, -0.9};
    ad_num in[6], out[3];
    for (int j = 0; j < 6; j++) in[j] = mk(x[j], seed[j]);

    mf_add(in, out);
    for (int k = 0; k < 3; k++) {
        assert_bits_equal(out[k].v, x[k] + x[k + 3]);
        for (int i = 0; i < 3; i++) want[k][i] = seed[k][i] + seed[k + 3][i];
    }
    check_multi("ad_vec3_add", mf_add, 6, 3, x, seed, want, TOL_AN);

    mf_sub(in, out);
    for (int k = 0; k < 3; k++) {
        assert_bits_equal(out[k].v, x[k] - x[k + 3]);
        for (int i = 0; i < 3; i++) want[k][i] = seed[k][i] - seed[k + 3][i];
    }
    check_multi("ad_vec3_sub", mf_sub, 6, 3, x, seed, want, TOL_AN);

    /* scale: v_k * s (the reference's order), tangent v' s + v s' */
    mf_scale(in, out);
    for (int k = 0; k < 3; k++) {
        assert_bits_equal(out[k].v, x[k] * x[3]);
        for (int i = 0; i < 3; i++) want[k][i] = seed[k][i] * x[3] + x[k] * seed[3][i];
    }
    check_multi("ad_vec3_scale", mf_scale, 4, 3, x, seed, want, TOL_AN);

    mf_scale_d(in, out);
    for (int k = 0; k < 3; k++) {
        assert_bits_equal(out[k].v, x[k] * -2.75);
        for (int i = 0; i < 3; i++) want[k][i] = seed[k][i] * -2.75;
    }
    check_multi("ad_vec3_scale_d", mf_scale_d, 3, 3, x, seed, want, TOL_AN);
}

static void test_vec3_norm_unit(void **state)
{
    (void)state;
    double seed[MAX_IN][3], want[MAX_OUT][3];
    make_seeds(3, seed);
    const double v[3] = {0.3, -1.2, 2.5};
    ad_num in[3], out[4];
    for (int j = 0; j < 3; j++) in[j] = mk(v[j], seed[j]);
    double n = sqrt(v3_dot(v, v));

    /* norm: sqrt((x x + y y) + z z), tangent (v . v') / |v| */
    mf_norm(in, out);
    assert_bits_equal(out[0].v, sqrt((v[0] * v[0] + v[1] * v[1]) + v[2] * v[2]));
    for (int i = 0; i < 3; i++) {
        double dv[3] = {seed[0][i], seed[1][i], seed[2][i]};
        want[0][i] = v3_dot(v, dv) / n;
    }
    check_multi("ad_vec3_norm", mf_norm, 3, 1, v, seed, want, TOL_AN);

    /* unit: v_k / |v| as the reference's unitize; tangent (v' - u (u . v')) / |v|; norm_out = |v| */
    mf_unit(in, out);
    for (int k = 0; k < 3; k++) assert_bits_equal(out[k].v, v[k] / n);
    assert_bits_equal(out[3].v, n);
    for (int i = 0; i < 3; i++) {
        double dv[3] = {seed[0][i], seed[1][i], seed[2][i]};
        double u[3] = {v[0] / n, v[1] / n, v[2] / n};
        double ud = v3_dot(u, dv);
        for (int k = 0; k < 3; k++) want[k][i] = (dv[k] - u[k] * ud) / n;
        want[3][i] = ud;
    }
    check_multi("ad_vec3_unit", mf_unit, 3, 4, v, seed, want, TOL_AN);
    /* the unit vector's tangent is orthogonal to it */
    ad_vec3 u = ad_vec3_unit(in_vec(in), NULL); /* NULL norm_out is allowed */
    for (int i = 0; i < 3; i++) {
        double s = 0.0;
        for (int k = 0; k < 3; k++) s += u.c[k].v * u.c[k].d[i];
        assert_close(s, 0.0, 0.0, 1e-15);
    }

    /* zero vector: stays zero, norm 0 with tangent 0 (sqrt convention), no NaN anywhere */
    ad_num zin[3] = {mk(0.0, SEED_U), mk(0.0, SEED_A), ad_const(0.0)};
    ad_num zn = mk(99.0, SEED_B);
    ad_vec3 zu = ad_vec3_unit(in_vec(zin), &zn);
    assert_bits_equal(zn.v, 0.0);
    assert_zero_tangents(zn);
    for (int k = 0; k < 3; k++) {
        assert_bits_equal(zu.c[k].v, 0.0);
        for (int i = 0; i < 3; i++) assert_true(isfinite(zu.c[k].d[i]));
    }
    ad_num zz = ad_vec3_norm(ad_vec3_const(0.0, 0.0, 0.0));
    assert_bits_equal(zz.v, 0.0);
    assert_zero_tangents(zz);
}

static void test_mat3_mul_vec(void **state)
{
    (void)state;
    double seed[MAX_IN][3], want[MAX_OUT][3];
    make_seeds(12, seed);
    const double x[12] = {0.9, -0.2, 0.35, 0.1, 1.1, -0.4, -0.3, 0.25, 0.8, /* M, row-major */
                          1.5, -0.7, 2.2};                               /* v */
    ad_num in[12], out[3];
    for (int j = 0; j < 12; j++) in[j] = mk(x[j], seed[j]);
    mf_mat_vec(in, out);
    double r[3];
    m3_mul_v(x, x + 9, r);
    for (int k = 0; k < 3; k++) assert_bits_equal(out[k].v, r[k]);
    /* tangent M' v + M v' */
    for (int i = 0; i < 3; i++) {
        double dM[9], dv[3], t1[3], t2[3];
        for (int j = 0; j < 9; j++) dM[j] = seed[j][i];
        for (int j = 0; j < 3; j++) dv[j] = seed[9 + j][i];
        m3_mul_v(dM, x + 9, t1);
        m3_mul_v(x, dv, t2);
        for (int k = 0; k < 3; k++) want[k][i] = t1[k] + t2[k];
    }
    check_multi("ad_mat3_mul_vec", mf_mat_vec, 12, 3, x, seed, want, TOL_AN);
}

/* ---- Rodrigues ---- */


/* analytic tangent of r = a (a.v)(1-c) + v c + (a x v) s along (dv, da, dphi) */
static void rot_axis_tangent(const double v[3], const double a[3], double phi, const double dv[3], const double da[3],
                             double dphi, double out[3])
{
    double s = sin(phi), c = cos(phi), av = v3_dot(a, v), dav = v3_dot(da, v) + v3_dot(a, dv);
    double axv[3], daxv[3], axdv[3];
    v3_cross(a, v, axv);
    v3_cross(da, v, daxv);
    v3_cross(a, dv, axdv);
    for (int k = 0; k < 3; k++)
        out[k] = da[k] * av * (1.0 - c) + a[k] * dav * (1.0 - c) + a[k] * av * s * dphi + dv[k] * c - v[k] * s * dphi +
                 (daxv[k] + axdv[k]) * s + axv[k] * c * dphi;
}

static void fill_rot_axis_want(const double *x, double seed[][3], double want[][3])
{
    for (int i = 0; i < 3; i++) {
        double dv[3] = {seed[0][i], seed[1][i], seed[2][i]}, da[3] = {seed[3][i], seed[4][i], seed[5][i]}, t[3];
        rot_axis_tangent(x, x + 3, x[6], dv, da, seed[6][i], t);
        for (int k = 0; k < 3; k++) want[k][i] = t[k];
    }
}

static void test_rotate_axis_zero_angle(void **state)
{
    (void)state;
    const double v[3] = {0.3, -1.2, 2.5};
    const double n = sqrt(1.0 + 4.0 + 0.25);
    const double axis[3] = {1.0 / n, -2.0 / n, 0.5 / n};
    /* phi = 0 exactly with a tangent in directions 0 and 2; v moves in 1 and 2; the axis moves in 2 */
    double seed[7][3] = {{0, 0.3, 0.1}, {0, -0.2, 0}, {0, 0.9, -0.4}, /* v */
                         {0, 0, 0.2},   {0, 0, 0.1},  {0, 0, -0.3},   /* axis */
                         {1.0, 0, 0.5}};                              /* phi */
    ad_num in[7], out[3];
    double x[7] = {v[0], v[1], v[2], axis[0], axis[1], axis[2], 0.0};
    for (int j = 0; j < 7; j++) in[j] = mk(x[j], seed[j]);
    mf_rot_axis(in, out);
    double ref[3];
    spec_rotate_axis(v, axis, 0.0, ref);
    double axv[3];
    v3_cross(axis, v, axv);
    for (int k = 0; k < 3; k++) {
        assert_bits_equal(out[k].v, v[k]); /* exactly v */
        assert_bits_equal(out[k].v, ref[k]);
        /* tangent (axis x v) dphi + dv; the axis' tangent does not enter at phi = 0 */
        assert_close(out[k].d[0], axv[k], TOL_AN, 1e-16);
        assert_close(out[k].d[1], seed[k][1], TOL_AN, 1e-16);
        assert_close(out[k].d[2], axv[k] * 0.5 + seed[k][2], TOL_AN, 1e-16);
    }
    double want[MAX_OUT][3];
    fill_rot_axis_want(x, seed, want);
    check_multi("ad_vec3_rotate_axis(phi = 0)", mf_rot_axis, 7, 3, x, seed, want, TOL_AN);
}

static void test_rotate_axis_general(void **state)
{
    (void)state;
    const double n = sqrt(0.04 + 0.49 + 1.0);
    const double cases[][7] = {
        {0.3, -1.2, 2.5, 0.2 / n, 0.7 / n, -1.0 / n, 0.4},
        {1.0, 2.0, -0.5, 0.0, 0.0, 1.0, 2.1},
        {-0.7, 0.1, 0.6, 1.0, 0.0, 0.0, -TEST_PI / 3},
        {2.0, -1.0, 3.0, 0.6, 0.0, 0.8, 1e-7},
        {0.3, -1.2, 2.5, 0.2 / n, 0.7 / n, -1.0 / n, TEST_PI},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const double *x = cases[c];
        double seed[MAX_IN][3], want[MAX_OUT][3];
        make_seeds(7, seed);
        ad_num in[7], out[3];
        for (int j = 0; j < 7; j++) in[j] = mk(x[j], seed[j]);
        mf_rot_axis(in, out);
        double ref[3];
        spec_rotate_axis(x, x + 3, x[6], ref);
        test_context("rotate_axis case %zu", c);
        for (int k = 0; k < 3; k++) assert_bits_equal(out[k].v, ref[k]);
        /* a rotation: length and the component along the axis are kept */
        double r[3] = {out[0].v, out[1].v, out[2].v};
        assert_close(sqrt(v3_dot(r, r)), sqrt(v3_dot(x, x)), 8 * EPS, 0.0);
        assert_close(v3_dot(r, x + 3), v3_dot(x, x + 3), 0.0, 8 * EPS * sqrt(v3_dot(x, x)));
        fill_rot_axis_want(x, seed, want);
        check_multi("ad_vec3_rotate_axis", mf_rot_axis, 7, 3, x, seed, want, TOL_AN);
    }
    /* right-handed: x about z by +90 degrees is y */
    ad_vec3 ex = ad_vec3_const(1, 0, 0), ez = ad_vec3_const(0, 0, 1);
    ad_vec3 ry = ad_vec3_rotate_axis(ex, ez, ad_var(TEST_PI / 2, 0));
    assert_close(ry.c[0].v, 0.0, 0.0, 1e-16);
    assert_close(ry.c[1].v, 1.0, EPS, 0.0);
    assert_close(ry.c[2].v, 0.0, 0.0, 0.0);
    /* d/dphi at 90 degrees: z x (rotated x) = -x */
    assert_close(ry.c[0].d[0], -1.0, EPS, 0.0);
    assert_close(ry.c[1].d[0], 0.0, 0.0, 1e-16);
    test_context(NULL);
}

/* ---- rotate_xyz ---- */


static void mat_rx(double t, double M[9], double dM[9])
{
    double c = cos(t), s = sin(t);
    const double m[9] = {1, 0, 0, 0, c, -s, 0, s, c}, d[9] = {0, 0, 0, 0, -s, -c, 0, c, -s};
    memcpy(M, m, sizeof m);
    memcpy(dM, d, sizeof d);
}
static void mat_ry(double t, double M[9], double dM[9])
{
    double c = cos(t), s = sin(t);
    const double m[9] = {c, 0, s, 0, 1, 0, -s, 0, c}, d[9] = {-s, 0, c, 0, 0, 0, -c, 0, -s};
    memcpy(M, m, sizeof m);
    memcpy(dM, d, sizeof d);
}
static void mat_rz(double t, double M[9], double dM[9])
{
    double c = cos(t), s = sin(t);
    const double m[9] = {c, -s, 0, s, c, 0, 0, 0, 1}, d[9] = {-s, -c, 0, c, -s, 0, 0, 0, 0};
    memcpy(M, m, sizeof m);
    memcpy(dM, d, sizeof d);
}

/* tangent of Rz Ry Rx v along (dv, drx, dry, drz) */
static void rot_xyz_tangent(const double *x, const double dv[3], double drx, double dry, double drz, double out[3])
{
    double Rx[9], dRx[9], Ry[9], dRy[9], Rz[9], dRz[9];
    mat_rx(x[3], Rx, dRx);
    mat_ry(x[4], Ry, dRy);
    mat_rz(x[5], Rz, dRz);
    double a[3], b[3], t[3], acc[3] = {0, 0, 0};
    /* Rz Ry Rx dv */
    m3_mul_v(Rx, dv, a);
    m3_mul_v(Ry, a, b);
    m3_mul_v(Rz, b, t);
    for (int k = 0; k < 3; k++) acc[k] += t[k];
    /* Rz Ry dRx v drx */
    m3_mul_v(dRx, x, a);
    m3_mul_v(Ry, a, b);
    m3_mul_v(Rz, b, t);
    for (int k = 0; k < 3; k++) acc[k] += t[k] * drx;
    /* Rz dRy Rx v dry */
    m3_mul_v(Rx, x, a);
    m3_mul_v(dRy, a, b);
    m3_mul_v(Rz, b, t);
    for (int k = 0; k < 3; k++) acc[k] += t[k] * dry;
    /* dRz Ry Rx v drz */
    m3_mul_v(Rx, x, a);
    m3_mul_v(Ry, a, b);
    m3_mul_v(dRz, b, t);
    for (int k = 0; k < 3; k++) acc[k] += t[k] * drz;
    for (int k = 0; k < 3; k++) out[k] = acc[k];
}

static void check_rotate_xyz_case(const double x[6], const char *label)
{
    double seed[MAX_IN][3], want[MAX_OUT][3];
    make_seeds(6, seed);
    /* every angle carries a tangent in at least one direction, and the directions differ */
    seed[3][0] = 1.0;
    seed[4][1] = 1.0;
    seed[5][2] = 1.0;
    ad_num in[6], out[3];
    for (int j = 0; j < 6; j++) in[j] = mk(x[j], seed[j]);
    mf_rot_xyz(in, out);
    double ref[3];
    spec_rotate(x, x[3], x[4], x[5], ref);
    test_context("rotate_xyz %s", label);
    for (int k = 0; k < 3; k++) assert_bits_equal(out[k].v, ref[k]);
    for (int i = 0; i < 3; i++) {
        double dv[3] = {seed[0][i], seed[1][i], seed[2][i]}, t[3];
        rot_xyz_tangent(x, dv, seed[3][i], seed[4][i], seed[5][i], t);
        for (int k = 0; k < 3; k++) want[k][i] = t[k];
    }
    check_multi(label, mf_rot_xyz, 6, 3, x, seed, want, TOL_AN);
}

static void test_rotate_xyz(void **state)
{
    (void)state;
    const double general[6] = {0.3, -1.2, 2.5, 0.2, -0.5, 1.1};
    check_rotate_xyz_case(general, "general");
    const double big[6] = {-1.0, 0.5, 0.25, 3.0, 2.0, -2.5};
    check_rotate_xyz_case(big, "large angles");
}

static void test_rotate_xyz_zero_angles(void **state)
{
    (void)state;
    /* zero angles with tangents: the value skips those rotations bit for bit (as the reference), the tangent is
     * e x (rotated v) for each */
    const double zx[6] = {0.3, -1.2, 2.5, 0.0, -0.5, 1.1};
    const double zy[6] = {0.3, -1.2, 2.5, 0.2, 0.0, 1.1};
    const double zz[6] = {0.3, -1.2, 2.5, 0.2, -0.5, 0.0};
    const double zxz[6] = {0.3, -1.2, 2.5, 0.0, 0.7, 0.0};
    const double all[6] = {0.3, -1.2, 2.5, 0.0, 0.0, 0.0};
    check_rotate_xyz_case(zx, "rx = 0");
    check_rotate_xyz_case(zy, "ry = 0");
    check_rotate_xyz_case(zz, "rz = 0");
    check_rotate_xyz_case(zxz, "rx = rz = 0");
    check_rotate_xyz_case(all, "all zero");

    /* all three zero: value is v exactly; d/drx = e_x x v, d/dry = e_y x v, d/drz = e_z x v (non-zero) */
    const double v[3] = {0.3, -1.2, 2.5};
    ad_vec3 r = ad_vec3_rotate_xyz(ad_vec3_const(v[0], v[1], v[2]), ad_var(0.0, 0), ad_var(0.0, 1), ad_var(0.0, 2));
    const double ex[3] = {0, -v[2], v[1]}, ey[3] = {v[2], 0, -v[0]}, ez[3] = {-v[1], v[0], 0};
    for (int k = 0; k < 3; k++) {
        assert_bits_equal(r.c[k].v, v[k]);
        assert_bits_equal(r.c[k].d[0], ex[k]);
        assert_bits_equal(r.c[k].d[1], ey[k]);
        assert_bits_equal(r.c[k].d[2], ez[k]);
    }
    assert_true(r.c[1].d[0] != 0.0 && r.c[0].d[1] != 0.0 && r.c[0].d[2] != 0.0);

    /* constant zero angles: pure pass-through, no tangent */
    ad_vec3 c = ad_vec3_rotate_xyz(ad_vec3_const(v[0], v[1], v[2]), ad_const(0), ad_const(0), ad_const(0));
    for (int k = 0; k < 3; k++) {
        assert_bits_equal(c.c[k].v, v[k]);
        assert_zero_tangents(c.c[k]);
    }
    test_context(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_const_var_tangent),
        cmocka_unit_test(test_keep_tangent),
        cmocka_unit_test(test_add_sub_neg),
        cmocka_unit_test(test_mul_div),
        cmocka_unit_test(test_mixed_with_double),
        cmocka_unit_test(test_sqrt),
        cmocka_unit_test(test_sin_cos_tan),
        cmocka_unit_test(test_exp_log),
        cmocka_unit_test(test_pow_d),
        cmocka_unit_test(test_pow),
        cmocka_unit_test(test_atan2),
        cmocka_unit_test(test_acos_asin),
        cmocka_unit_test(test_fabs_floor_ceil),
        cmocka_unit_test(test_sincg),
        cmocka_unit_test(test_sincg_at_zero),
        cmocka_unit_test(test_sincg_near_k_pi),
        cmocka_unit_test(test_sincospi),
        cmocka_unit_test(test_sincgpi_slopes),
        cmocka_unit_test(test_sinc3),
        cmocka_unit_test(test_sinc3_edges),
        cmocka_unit_test(test_vec3_make_const),
        cmocka_unit_test(test_vec3_dot_cross),
        cmocka_unit_test(test_vec3_add_sub_scale),
        cmocka_unit_test(test_vec3_norm_unit),
        cmocka_unit_test(test_mat3_mul_vec),
        cmocka_unit_test(test_rotate_axis_zero_angle),
        cmocka_unit_test(test_rotate_axis_general),
        cmocka_unit_test(test_rotate_xyz),
        cmocka_unit_test(test_rotate_xyz_zero_angles),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
