/* test_ad_primal.c: ad/ad.h built with AD_N = 0 is plain double arithmetic.
 *
 * sizeof(ad_num) == sizeof(double), and every function's value is bit-identical to the plain libm / IEEE
 * expression the reference writes (sincg and sinc3 as the reference's functions, rotations as its rotate() and
 * rotate_axis(), unitize's zero vector), over fixed edge points and a few thousand pseudo-random inputs.
 * Build with AD_N = 0 and -ffp-contract=off (a fused multiply-add changes the last bit). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>

#ifndef AD_N
#define AD_N 0
#endif
#if AD_N != 0
#error "test_ad_primal.c checks the primal-only build: compile with -DAD_N=0"
#endif

#include "ad.h"
#include "test_util.h"
#include "spec_oracles.h"

#define TEST_PI 3.14159265358979323846
#define NRAND 2000

_Static_assert(sizeof(ad_num) == sizeof(double), "AD_N = 0: ad_num is one double");
_Static_assert(sizeof(ad_vec3) == 3 * sizeof(double), "AD_N = 0: ad_vec3 is three doubles");
_Static_assert(sizeof(ad_mat3) == 9 * sizeof(double), "AD_N = 0: ad_mat3 is nine doubles");

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
/* uniform in [lo, hi) */
static double urand(double lo, double hi)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    double u = (double)(rng_state >> 11) * (1.0 / 9007199254740992.0);
    return lo + (hi - lo) * u;
}

static ad_num C(double v) { return ad_const(v); }


static void test_layout_and_construction(void **state)
{
    (void)state;
    assert_bits_equal(ad_const(1.25).v, 1.25);
    assert_bits_equal(ad_const(-0.0).v, -0.0);
    assert_bits_equal(ad_var(2.5, 0).v, 2.5);
    assert_bits_equal(ad_var(2.5, -1).v, 2.5);
    assert_bits_equal(ad_tangent(ad_var(2.5, 0), 0), 0.0);
    assert_bits_equal(ad_tangent(ad_var(2.5, 0), 3), 0.0);
    assert_bits_equal(ad_keep_tangent(C(0.1), C(7.0)).v, 0.1);
    /* an array of ad_num is an array of doubles */
    ad_num a[4];
    for (int k = 0; k < 4; k++) a[k] = C(k + 0.5);
    const double *p = &a[0].v;
    for (int k = 0; k < 4; k++) assert_bits_equal(p[k], k + 0.5);
}

static void test_arithmetic(void **state)
{
    (void)state;
    for (int k = 0; k < NRAND; k++) {
        double a = urand(-1e3, 1e3), b = urand(-1e3, 1e3);
        if (k % 3 == 0) b = urand(-1e-3, 1e-3);
        test_context("a = %.17g, b = %.17g", a, b);
        assert_bits_equal(ad_add(C(a), C(b)).v, a + b);
        assert_bits_equal(ad_sub(C(a), C(b)).v, a - b);
        assert_bits_equal(ad_neg(C(a)).v, -a);
        assert_bits_equal(ad_mul(C(a), C(b)).v, a * b);
        assert_bits_equal(ad_div(C(a), C(b)).v, a / b);
        assert_bits_equal(ad_add_d(C(a), b).v, a + b);
        assert_bits_equal(ad_d_add(a, C(b)).v, a + b);
        assert_bits_equal(ad_sub_d(C(a), b).v, a - b);
        assert_bits_equal(ad_d_sub(a, C(b)).v, a - b);
        assert_bits_equal(ad_mul_d(C(a), b).v, a * b);
        assert_bits_equal(ad_d_mul(a, C(b)).v, a * b);
        assert_bits_equal(ad_div_d(C(a), b).v, a / b);
        assert_bits_equal(ad_d_div(a, C(b)).v, a / b);
    }
    /* a nested expression evaluates like the same C expression */
    double x = 0.7, y = -1.3, z = 2.9;
    ad_num e = ad_div(ad_add(ad_mul(C(x), C(y)), ad_d_mul(3.0, C(z))), ad_sub_d(C(z), 0.25));
    assert_bits_equal(e.v, (x * y + 3.0 * z) / (z - 0.25));
    test_context(NULL);
}

static void test_elementary(void **state)
{
    (void)state;
    for (int k = 0; k < NRAND; k++) {
        double x = urand(-20.0, 20.0), u = urand(-1.0, 1.0), pos = urand(0.0, 50.0), p = urand(-3.0, 3.0);
        if (k % 4 == 0) pos = urand(0.0, 1e-6);
        test_context("x = %.17g, u = %.17g, pos = %.17g, p = %.17g", x, u, pos, p);
        assert_bits_equal(ad_sqrt(C(pos)).v, sqrt(pos));
        assert_bits_equal(ad_sin(C(x)).v, sin(x));
        assert_bits_equal(ad_cos(C(x)).v, cos(x));
        assert_bits_equal(ad_tan(C(x)).v, tan(x));
        assert_bits_equal(ad_exp(C(x)).v, exp(x));
        assert_bits_equal(ad_log(C(pos)).v, log(pos));
        assert_bits_equal(ad_pow_d(C(pos), p).v, pow(pos, p));
        assert_bits_equal(ad_pow(C(pos), C(p)).v, pow(pos, p));
        assert_bits_equal(ad_atan2(C(x), C(u)).v, atan2(x, u));
        assert_bits_equal(ad_acos(C(u)).v, acos(u));
        assert_bits_equal(ad_asin(C(u)).v, asin(u));
        assert_bits_equal(ad_fabs(C(x)).v, fabs(x));
        assert_bits_equal(ad_floor(C(x)), floor(x));
        assert_bits_equal(ad_ceil(C(x)), ceil(x));
    }
    /* edges */
    const double edges[] = {0.0, -0.0, 1.0, -1.0, 1e-300, 0.5, 2.0};
    for (size_t k = 0; k < sizeof edges / sizeof edges[0]; k++) {
        double e = edges[k];
        test_context("edge %.17g", e);
        assert_bits_equal(ad_sqrt(C(e)).v, sqrt(e));
        assert_bits_equal(ad_acos(C(e)).v, acos(e));
        assert_bits_equal(ad_asin(C(e)).v, asin(e));
        assert_bits_equal(ad_fabs(C(e)).v, fabs(e));
        assert_bits_equal(ad_pow_d(C(e), 2.0).v, pow(e, 2.0));
        assert_bits_equal(ad_pow_d(C(e), 0.5).v, pow(e, 0.5));
        assert_bits_equal(ad_pow_d(C(e), 0.0).v, pow(e, 0.0));
        assert_bits_equal(ad_pow(C(e), C(3.0)).v, pow(e, 3.0));
        for (size_t j = 0; j < sizeof edges / sizeof edges[0]; j++)
            assert_bits_equal(ad_atan2(C(e), C(edges[j])).v, atan2(e, edges[j]));
    }
    test_context(NULL);
}

static void test_sincg_sinc3(void **state)
{
    (void)state;
    for (int k = 0; k < NRAND; k++) {
        double x = urand(-10.0, 10.0), N = (k % 2) ? floor(urand(1.0, 200.0)) : urand(1.0, 200.0);
        if (k % 5 == 0) x = urand(-1e-3, 1e-3);
        if (k % 7 == 0) x = TEST_PI * floor(urand(-3.0, 4.0)) + urand(-1e-6, 1e-6); /* near k pi */
        double s = (k % 3 == 0) ? urand(-0.2, 0.2) : urand(-30.0, 30.0);
        test_context("x = %.17g, N = %.17g, s = %.17g", x, N, s);
        assert_bits_equal(ad_sincg(C(x), C(N)).v, spec_sincg(x, N));
        assert_bits_equal(ad_sincg(C(x), C(N)).v, x == 0.0 ? N : sin(N * x) / sin(x));
        assert_bits_equal(ad_sinc3(C(s)).v, spec_sinc3(s));
    }
    const double xs[] = {0.0, -0.0, TEST_PI, -TEST_PI, 2 * TEST_PI, 1e-8, 1e-300};
    for (size_t k = 0; k < sizeof xs / sizeof xs[0]; k++) {
        test_context("edge x = %.17g", xs[k]);
        assert_bits_equal(ad_sincg(C(xs[k]), C(10.0)).v, spec_sincg(xs[k], 10.0));
        assert_bits_equal(ad_sincg(C(xs[k]), C(7.5)).v, spec_sincg(xs[k], 7.5));
        assert_bits_equal(ad_sinc3(C(xs[k])).v, spec_sinc3(xs[k]));
    }
    assert_bits_equal(ad_sincg(C(0.0), C(10.0)).v, 10.0);
    assert_bits_equal(ad_sinc3(C(0.0)).v, 1.0);
    test_context(NULL);
}

/* ---- vectors ---- */

static ad_vec3 V(const double v[3]) { return ad_vec3_const(v[0], v[1], v[2]); }
static void rand_vec(double v[3], double scale)
{
    for (int k = 0; k < 3; k++) v[k] = urand(-scale, scale);
}

static void test_vectors(void **state)
{
    (void)state;
    for (int k = 0; k < NRAND; k++) {
        double a[3], b[3], M[9];
        rand_vec(a, 10.0);
        rand_vec(b, 1e-3);
        for (int j = 0; j < 9; j++) M[j] = urand(-1.0, 1.0);
        double s = urand(-5.0, 5.0);
        test_context("case %d", k);

        /* the reference's dot_product, cross_product, magnitude, unitize, vector_scale, rotate_umat */
        assert_bits_equal(ad_vec3_dot(V(a), V(b)).v, a[0] * b[0] + a[1] * b[1] + a[2] * b[2]);
        ad_vec3 c = ad_vec3_cross(V(a), V(b));
        assert_bits_equal(c.c[0].v, a[1] * b[2] - a[2] * b[1]);
        assert_bits_equal(c.c[1].v, a[2] * b[0] - a[0] * b[2]);
        assert_bits_equal(c.c[2].v, a[0] * b[1] - a[1] * b[0]);
        double mag = sqrt(a[0] * a[0] + a[1] * a[1] + a[2] * a[2]);
        assert_bits_equal(ad_vec3_norm(V(a)).v, mag);
        ad_num n;
        ad_vec3 u = ad_vec3_unit(V(a), &n);
        assert_bits_equal(n.v, mag);
        ad_vec3 sv = ad_vec3_scale(V(a), C(s)), sd = ad_vec3_scale_d(V(a), s);
        ad_vec3 ad = ad_vec3_add(V(a), V(b)), sb = ad_vec3_sub(V(a), V(b));
        ad_mat3 AM;
        for (int j = 0; j < 9; j++) AM.m[j] = C(M[j]);
        ad_vec3 mv = ad_mat3_mul_vec(&AM, V(b));
        for (int j = 0; j < 3; j++) {
            assert_bits_equal(u.c[j].v, a[j] / mag);
            assert_bits_equal(sv.c[j].v, a[j] * s);
            assert_bits_equal(sd.c[j].v, s * a[j]);
            assert_bits_equal(ad.c[j].v, a[j] + b[j]);
            assert_bits_equal(sb.c[j].v, a[j] - b[j]);
            assert_bits_equal(mv.c[j].v, M[3 * j] * b[0] + M[3 * j + 1] * b[1] + M[3 * j + 2] * b[2]);
        }
    }
    ad_vec3 mk3 = ad_vec3_make(C(1.5), C(-0.0), C(1e-300));
    assert_bits_equal(mk3.c[0].v, 1.5);
    assert_bits_equal(mk3.c[1].v, -0.0);
    assert_bits_equal(mk3.c[2].v, 1e-300);
    /* the zero vector stays zero, its norm is 0 */
    ad_num n;
    ad_vec3 z = ad_vec3_unit(ad_vec3_const(0.0, 0.0, 0.0), &n);
    assert_bits_equal(n.v, 0.0);
    for (int j = 0; j < 3; j++) assert_bits_equal(z.c[j].v, 0.0);
    test_context(NULL);
}



static void test_rotations(void **state)
{
    (void)state;
    for (int k = 0; k < NRAND; k++) {
        double v[3], axis[3], r[3];
        rand_vec(v, 1e-9);
        rand_vec(axis, 1.0);
        double an = sqrt(axis[0] * axis[0] + axis[1] * axis[1] + axis[2] * axis[2]);
        for (int j = 0; j < 3; j++) axis[j] /= an;
        double phi = (k % 5 == 0) ? 0.0 : urand(-TEST_PI, TEST_PI);
        test_context("case %d, phi = %.17g", k, phi);
        ad_vec3 ra = ad_vec3_rotate_axis(V(v), V(axis), C(phi));
        spec_rotate_axis(v, axis, phi, r);
        for (int j = 0; j < 3; j++) assert_bits_equal(ra.c[j].v, r[j]);
        if (phi == 0.0)
            for (int j = 0; j < 3; j++) assert_bits_equal(ra.c[j].v, v[j]);

        /* misset-style angles, each zero a fifth of the time (skipped, as the reference) */
        double rx = (k % 5 == 1) ? 0.0 : urand(-TEST_PI, TEST_PI);
        double ry = (k % 7 == 2) ? 0.0 : urand(-TEST_PI, TEST_PI);
        double rz = (k % 3 == 0) ? 0.0 : urand(-TEST_PI, TEST_PI);
        test_context("case %d, angles %.17g %.17g %.17g", k, rx, ry, rz);
        ad_vec3 rr = ad_vec3_rotate_xyz(V(v), C(rx), C(ry), C(rz));
        spec_rotate(v, rx, ry, rz, r);
        for (int j = 0; j < 3; j++) assert_bits_equal(rr.c[j].v, r[j]);
    }
    /* all angles zero: v unchanged */
    const double v[3] = {0.3, -1.2, 2.5};
    ad_vec3 rr = ad_vec3_rotate_xyz(V(v), C(0.0), C(0.0), C(0.0));
    for (int j = 0; j < 3; j++) assert_bits_equal(rr.c[j].v, v[j]);
    test_context(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout_and_construction),
        cmocka_unit_test(test_arithmetic),
        cmocka_unit_test(test_elementary),
        cmocka_unit_test(test_sincg_sinc3),
        cmocka_unit_test(test_vectors),
        cmocka_unit_test(test_rotations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
