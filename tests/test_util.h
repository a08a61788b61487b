/* test_util.h: double-precision assertions for the cmocka tests.
 *
 * cmocka 1.1.5 has no double assert (assert_float_equal casts to float), so:
 *   assert_close(actual, expected, rtol, atol)  passes when |actual - expected| <= atol + rtol * |expected|.
 *       NaN never passes; infinities pass only when actual == expected (same sign).
 *   assert_bits_equal(actual, expected)         passes when the two doubles have the same bit pattern
 *       (the primal parity check: -0.0 differs from +0.0, a NaN equals the same NaN).
 * Both report the file and line of the call and both numbers with %.17g (and %a for bit comparisons).
 *   test_context(fmt, ...)  sets a note (e.g. the case and input point of a table-driven loop) that failures
 *       print, since a helper's __LINE__ does not say which case failed; test_context(NULL) clears it.
 *
 * Include after <cmocka.h> (and its prerequisites <stdarg.h> <stddef.h> <stdint.h> <setjmp.h>). */
#ifndef TESTS_TEST_UTIL_H
#define TESTS_TEST_UTIL_H

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static char test_util_context_buf[512];

#if defined(__GNUC__)
__attribute__((format(printf, 1, 2)))
#endif
static inline void test_context(const char *fmt, ...)
{
    if (!fmt) {
        test_util_context_buf[0] = '\0';
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(test_util_context_buf, sizeof test_util_context_buf, fmt, ap);
    va_end(ap);
}

static inline void test_util_print_context(void)
{
    if (test_util_context_buf[0]) print_error("    context: %s\n", test_util_context_buf);
}

static inline void test_util_assert_close(double actual, double expected, double rtol, double atol,
                                          const char *actual_expr, const char *expected_expr, const char *file,
                                          int line)
{
    int ok;
    if (isnan(actual) || isnan(expected)) {
        ok = 0;
    } else if (isinf(actual) || isinf(expected)) {
        ok = (actual == expected);
    } else {
        double err = fabs(actual - expected);
        ok = (err <= atol + rtol * fabs(expected));
    }
    if (!ok) {
        double err = fabs(actual - expected);
        print_error("assert_close(%s, %s) failed\n"
                    "    actual   = %.17g\n"
                    "    expected = %.17g\n"
                    "    |diff|   = %.3g (rel %.3g), allowed atol %.3g + rtol %.3g * |expected| = %.3g\n",
                    actual_expr, expected_expr, actual, expected, err, expected != 0.0 ? err / fabs(expected) : err,
                    atol, rtol, atol + rtol * fabs(expected));
        test_util_print_context();
        _fail(file, line);
    }
}

static inline void test_util_assert_bits_equal(double actual, double expected, const char *actual_expr,
                                               const char *expected_expr, const char *file, int line)
{
    uint64_t ba, be;
    memcpy(&ba, &actual, sizeof ba);
    memcpy(&be, &expected, sizeof be);
    if (ba != be) {
        print_error("assert_bits_equal(%s, %s) failed\n"
                    "    actual   = %.17g (%a)\n"
                    "    expected = %.17g (%a)\n",
                    actual_expr, expected_expr, actual, actual, expected, expected);
        test_util_print_context();
        _fail(file, line);
    }
}

#define assert_close(actual, expected, rtol, atol)                                                                 \
    test_util_assert_close((double)(actual), (double)(expected), (double)(rtol), (double)(atol), #actual, #expected, \
                           __FILE__, __LINE__)

#define assert_bits_equal(actual, expected)                                                                        \
    test_util_assert_bits_equal((double)(actual), (double)(expected), #actual, #expected, __FILE__, __LINE__)

#endif
