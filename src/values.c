/* values.c: parameter values read and set in place (db_sim_get_params, db_sim_set_params), through the one
 * parameter table (params.c). Setting a value changes the configuration field the command line would set, with
 * the command line's own conversion, keeps every discrete choice made at creation (pivot, convention, step,
 * source and domain counts, the draws), and rebuilds the derived geometry; the table blocks are dropped. */
#include "sim.h"
#include "error.h"
#include "units.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static double *field_of(db_config *c, int p) { return (double *)((char *)c + db_param_info_of(p)->field); }

/* The cell parameter k (0..5) of a -mat crystal, in the command line's unit: the matrix's own cell (at the
 * current wavelength) plus what set_params moved it by. */
static double mat_cell_value(const db_sim *sim, int k)
{
    return (k < 3 ? sim->xtal.mat_cell[k] : sim->xtal.mat_cell[k] * DB_RTD) + sim->mat_cell_delta[k];
}

/* The value a parameter the configuration fixes stands for: what the plan or the crystal derived instead. */
static double fixed_value(const db_sim *sim, int p)
{
    const db_plan *pl = &sim->plan;
    const double N[3] = {sim->xtal.Na, sim->xtal.Nb, sim->xtal.Nc};
    switch (db_param_info_of(p)->fixing) {
    case DB_FIXED_BY_FLUX: return pl->fluence;
    case DB_FIXED_BY_SIZE: return N[p - DB_P_NA];
    case DB_FIXED_WITHOUT_DOMAINS: return pl->mosaic_spread;
    default: return NAN;
    }
}

/* The value the configuration stands for, in the command line's unit (params.h: how each kind is held). */
static int computed_one(const db_sim *sim, int p, double *out, db_error *err)
{
    const db_config *c = sim->cfg;
    const db_plan *pl = &sim->plan;
    const db_param_info *info = db_param_info_of(p);
    double v = *(const double *)((const char *)c + info->field);
    switch (info->hold) {
    case DB_HOLD_CELL:
        if (!c->user_cell) {
            *out = mat_cell_value(sim, p - DB_P_A);
            return DB_OK;
        }
        v = db_cell_in_force(c, p - DB_P_A);
        break;
    case DB_HOLD_MISSET: v = db_misset_in_force(sim)[p - DB_P_MISSET_X]; break;
    case DB_HOLD_STEP_COUNT: v = pl->phistep * pl->phisteps; break;
    case DB_HOLD_FIELD:
        if (db_param_fixed(c, pl, p)) v = fixed_value(sim, p);
        else if (isnan(v) && info->plan_field != DB_NO_PLAN_FIELD)
            v = *(const double *)((const char *)pl + info->plan_field);
        break;
    }
    (void)err;
    *out = db_param_from_internal(p, v);
    return DB_OK;
}

/* The value last given to db_sim_set_params where the configuration still stands for it, else the computed one. */
static int get_one(const db_sim *sim, int p, double *out, db_error *err)
{
    int rc = computed_one(sim, p, out, err);
    if (!rc && sim->param_has_given[p] && *out == sim->param_computed[p]) *out = sim->param_given[p];
    return rc;
}

int db_sim_get_params(const db_sim *sim, const int *params, double *values, int n, db_error *err)
{
    db_error_clear(err);
    if (!sim || n < 0 || (n > 0 && (!params || !values)))
        return db_fail(err, DB_ERR_ARGUMENT, "db_sim_get_params: no simulation, or %d parameters without arrays", n);
    for (int k = 0; k < n; k++) {
        if (params[k] < 0 || params[k] >= DB_P_COUNT)
            return db_fail(err, DB_ERR_ARGUMENT, "unknown parameter index %d (expected 0..%d)", params[k], DB_P_COUNT - 1);
        int rc = get_one(sim, params[k], &values[k], err);
        if (rc) return rc;
    }
    return DB_OK;
}

/* Applies one value to the configuration (not yet checked as a whole). */
static int set_one(db_sim *sim, int p, double v, db_error *err)
{
    db_config *c = sim->cfg;
    const db_plan *pl = &sim->plan;
    const db_param_info *info = db_param_info_of(p);
    if (!isfinite(v)) return db_fail(err, DB_ERR_ARGUMENT, "%s: %g is not a finite value", info->name, v);
    const char *fixed = db_param_fixed(c, pl, p);
    if (fixed) return db_fail(err, DB_ERR_ARGUMENT, "%s: %s", info->name, fixed);
    int rc = db_param_check_value(p, v, info->name, err);
    if (rc) return rc;
    switch (info->hold) {
    case DB_HOLD_CELL:
        if (!c->user_cell) {
            sim->mat_cell_delta[p - DB_P_A] = v - (mat_cell_value(sim, p - DB_P_A) - sim->mat_cell_delta[p - DB_P_A]);
            return DB_OK;
        }
        /* absent values become explicit at what they stood for, so that moving a leaves b and c */
        for (int k = 0; k < 6; k++) *field_of(c, DB_P_A + k) = db_cell_in_force(c, k);
        break;
    case DB_HOLD_MISSET: {
        /* a drawn misset stays; zero angles (none given) rotate nothing, exactly. A copy: the angles in force may
         * be c->misset itself */
        double in_force[3];
        memcpy(in_force, db_misset_in_force(sim), sizeof in_force);
        memcpy(c->misset, in_force, sizeof in_force);
        c->misset_random = 0;
        c->misset_given = 1;
        break;
    }
    case DB_HOLD_STEP_COUNT:
        c->phisteps = pl->phisteps; /* phistep = osc / phisteps, the count held */
        c->phistep = -1.0;
        break;
    case DB_HOLD_FIELD: break;
    }
    if (info->fixing == DB_FIXED_WITHOUT_DOMAINS) { /* free: it has domains, and keeps their count */
        if (!(v > 0.0)) /* a spread of 0 or less would leave no domains */
            return db_fail(err, DB_ERR_GEOMETRY, "%s: the spread must stay positive (got %g deg; the domain count is "
                           "fixed)", info->name, v);
        c->mosaic_domains = pl->mosaic_domains;
    }
    *field_of(c, p) = db_param_to_internal(p, v);
    return DB_OK;
}

/* The cell must close: the volume factor 1 - cos^2 a - cos^2 b - cos^2 g + 2 cos a cos b cos g > 0. */
static int check_cell(const db_config *c, db_error *err)
{
    if (!c->user_cell) return DB_OK;
    double al = db_cell_in_force(c, 3), be = db_cell_in_force(c, 4), ga = db_cell_in_force(c, 5);
    double ca = cos(al), cb = cos(be), cg = cos(ga);
    double w = 1.0 - ca * ca - cb * cb - cg * cg + 2.0 * ca * cb * cg;
    if (!(w > 0.0))
        return db_fail(err, DB_ERR_GEOMETRY,
                       "alpha beta gamma = %g %g %g deg: the cell does not close (each angle must be less than the sum of "
                       "the other two, and all three less than 360)",
                       al * DB_RTD, be * DB_RTD, ga * DB_RTD);
    return DB_OK;
}

void db_sim_values_save(const db_sim *sim, db_values *v)
{
    v->cfg = *sim->cfg;
    v->plan = sim->plan;
    memcpy(v->mat_cell_delta, sim->mat_cell_delta, sizeof v->mat_cell_delta);
}

/* Puts the values back and rebuilds the derived geometry. */
static int apply_values(db_sim *sim, const db_values *v, db_error *err)
{
    *sim->cfg = v->cfg;
    sim->plan = v->plan;
    memcpy(sim->mat_cell_delta, v->mat_cell_delta, sizeof sim->mat_cell_delta);
    db_sim_invalidate(sim);
    sim->ran = 0;
    const void *block;
    return db_sim_block(sim, db_tables_build_n0, NULL, &block, err);
}

int db_sim_values_restore(db_sim *sim, const db_values *v, db_error *err) { return apply_values(sim, v, err); }

int db_sim_set_params(db_sim *sim, const int *params, const double *values, int n, db_error *err)
{
    db_error_clear(err);
    if (!sim || n < 0 || (n > 0 && (!params || !values)))
        return db_fail(err, DB_ERR_ARGUMENT, "db_sim_set_params: no simulation, or %d parameters without arrays", n);
    int rc = db_param_check_list(params, n, err);
    if (rc) return rc;
    db_values *saved = (db_values *)malloc(sizeof *saved);
    if (!saved) return db_fail(err, DB_ERR_NOMEM, "out of memory");
    db_sim_values_save(sim, saved);
    for (int k = 0; k < n && !rc; k++) rc = set_one(sim, params[k], values[k], err);
    if (!rc) rc = check_cell(sim->cfg, err);
    db_plan plan;
    if (!rc) rc = db_make_plan(sim->cfg, &plan, err);
    if (!rc) {
        db_values now;
        db_sim_values_save(sim, &now);
        now.plan = plan;
        rc = apply_values(sim, &now, err);
    }
    for (int k = 0; k < n && !rc; k++) {
        rc = computed_one(sim, params[k], &sim->param_computed[params[k]], err);
        sim->param_given[params[k]] = values[k];
        sim->param_has_given[params[k]] = 1;
    }
    if (rc) {
        db_error keep;
        if (err) keep = *err;
        (void)apply_values(sim, saved, NULL); /* the previous values, which built before */
        if (err) *err = keep;
    }
    free(saved);
    return rc;
}
