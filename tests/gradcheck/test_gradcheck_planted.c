/* test_gradcheck_planted.c: linked against a build of the library in which one derivative rule (the x-slope
 * of sincg, the SQUARE lattice factor) is scaled by 1 + 2e-5. gradcheck must report FAIL for parameters whose
 * derivatives go through it, with the same options under which the real build passes (test_gradcheck). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "gradcheck.h"

#include <stdio.h>
#include <unistd.h>

static void check(const char *case_name, const char *const *args, int nargs, int precise)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/%s", DB_GOLDEN_DIR, case_name);
    assert_int_equal(chdir(dir), 0);
    db_config *cfg = db_config_create();
    db_error err;
    assert_int_equal(db_config_parse(cfg, nargs, args, &err), DB_OK);
    int params[8];
    int n = db_param_parse_list("a,misset_x,phi0,distance", params, &err);
    db_gc_options o;
    db_gc_default_options(&o);
    o.precise = precise;
    db_gc_report rep;
    assert_int_equal(db_gradcheck(cfg, params, n, &o, &rep, &err), DB_OK);
    db_config_destroy(cfg);
    db_gc_print(&rep, stderr);
    assert_false(rep.all_pass);
    for (int k = 0; k < rep.nrows; k++)
        if (rep.rows[k].pass) fail_msg("%s: the planted error went unnoticed for %s", case_name, db_param_name(rep.rows[k].param));
}

static void test_planted_error_fails_a_cubic(void **state)
{
    (void)state;
    const char *args[] = {"-cell", "100", "100", "100", "90", "90", "90", "-default_F", "100", "-N", "5", "-lambda", "1",
                          "-distance", "100", "-pixel", "0.1", "-detpixels", "256", "-mosflm", "-oversample", "1"};
    check("a_cubic", args, (int)(sizeof args / sizeof args[0]), 1);
}

static void test_planted_error_fails_carryover_case(void **state)
{
    (void)state;
    const char *args[] = {"-cell", "100", "100", "100", "90", "90", "90", "-misset", "10", "20", "30", "-default_F",
                          "100", "-N", "10", "-lambda", "1", "-distance", "100", "-pixel", "0.1", "-detpixels", "256",
                          "-oversample", "1", "-phi", "0", "-osc", "0.1", "-phisteps", "10"};
    check("c_phi0_carryover", args, (int)(sizeof args / sizeof args[0]), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_planted_error_fails_a_cubic),
        cmocka_unit_test(test_planted_error_fails_carryover_case),
    };
    return cmocka_run_group_tests_name("gradcheck catches a planted error", tests, NULL, NULL);
}
