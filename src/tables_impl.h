/* tables_impl.h: the per-run tables over dual numbers, built into one relocatable block (physics.h's
 * db_tables followed by its arrays). Included once per direction count (AD_N) by src/tables_n*.c, which define
 * DB_ENGINE_SUFFIX; everything here is static except the builder.
 *
 * Setup follows the reference's program order (spec §3.5-§3.15) so that every table is bit-identical to the
 * values the reference would compute; the per-pixel physics is physics.h. */
#include "ad.h"
#include "physics.h"
#include "beam_centre.h"
#include "error.h"
#include "sim.h"
#include "backend.h"
#include "units.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define DB_CAT_(a, b) a##b
#define DB_CAT(a, b) DB_CAT_(a, b)
#define DB_SFX(name) DB_CAT(name, DB_ENGINE_SUFFIX)

/* A parameter's value with its tangent direction seeded: `factor` is d(internal value)/d(command-line value),
 * e.g. 1/RTD for an angle given in degrees and held in radians. */
static ad_num DB_SFX(seed_f)(const db_pass *pass, int param, double value, double factor)
{
    ad_num r = ad_const(value);
#if AD_N > 0
    int d = pass ? pass->dir_of[param] : -1;
    if (d >= 0 && d < AD_N) AD_LANE(r, d) = factor;
#else
    (void)pass;
    (void)param;
    (void)factor;
#endif
    return r;
}

/* The same, with the factor of the parameter table (the inverse of the command line's conversion). */
static ad_num DB_SFX(seed)(const db_pass *pass, int param, double value)
{
    return DB_SFX(seed_f)(pass, param, value, 1.0 / db_param_info_of(param)->divisor);
}

static int DB_SFX(active)(const db_pass *pass, int param)
{
    return AD_N > 0 && pass && pass->dir_of[param] >= 0;
}

static ad_vec3 DB_SFX(vec_from)(const double v[3])
{
    return ad_vec3_const(v[0], v[1], v[2]);
}

static void DB_SFX(vec_out)(ad_vec3 v, double out[3])
{
    for (int i = 0; i < 3; i++) out[i] = v.c[i].v;
}

typedef struct DB_SFX(storage) {
    ad_vec3 *src_dir, *src_incident_unit;
    ad_num *src_lambda;
    ad_vec3 *lattice;
    int *slot_normal, *slot_first;
} DB_SFX(storage);

static void DB_SFX(storage_free)(DB_SFX(storage) *s)
{
    free(s->src_dir);
    free(s->src_incident_unit);
    free(s->src_lambda);
    free(s->lattice);
    free(s->slot_normal);
    free(s->slot_first);
}

/* Detector geometry (spec §3.5): pix0 and the rotated axes, plus the derived values for headers. */
static void DB_SFX(setup_detector)(db_sim *sim, const db_pass *pass, db_tables *t)
{
    const db_config *c = sim->cfg;
    const db_plan *p = &sim->plan;
    ad_num rotx = DB_SFX(seed)(pass, DB_P_ROTX, c->detector_rotx), roty = DB_SFX(seed)(pass, DB_P_ROTY, c->detector_roty);
    ad_num rotz = DB_SFX(seed)(pass, DB_P_ROTZ, c->detector_rotz);
    ad_num twotheta = DB_SFX(seed)(pass, DB_P_TWOTHETA, c->detector_twotheta);
    ad_num pixel = ad_const(c->pixel_size);
    ad_vec3 beam = DB_SFX(vec_from)(p->beam), fdet = DB_SFX(vec_from)(p->fdet), sdet = DB_SFX(vec_from)(p->sdet),
            odet = DB_SFX(vec_from)(p->odet), tt_axis = DB_SFX(vec_from)(p->twotheta_axis);
    ad_num ratio = ad_vec3_dot(beam, ad_vec3_rotate_xyz(odet, rotx, roty, rotz));
    if (ratio.v == 0.0) ratio = ad_const(DBL_MIN);
    ad_num distance = DB_SFX(seed)(pass, DB_P_DISTANCE, c->distance);
    ad_num close_distance = isnan(c->close_distance) ? ad_fabs(ad_mul(ratio, distance)) : ad_const(c->close_distance);
    distance = ad_div(close_distance, ratio);
    db_beam_centre bc = db_beam_centre_resolve(
        (int)p->convention, DB_SFX(seed)(pass, DB_P_XBEAM, c->Xbeam), DB_SFX(seed)(pass, DB_P_YBEAM, c->Ybeam),
        ad_const(c->Xclose), ad_const(c->Yclose), DB_SFX(seed)(pass, DB_P_ORGX, c->ORGX),
        DB_SFX(seed)(pass, DB_P_ORGY, c->ORGY), pixel, p->detsize_f, p->detsize_s);
    ad_num Fclose = bc.Fclose, Sclose = bc.Sclose, Fbeam = bc.Fbeam, Sbeam = bc.Sbeam;
    ad_vec3 pix0 = ad_vec3_const(0, 0, 0);
    if (p->pivot == DB_PIVOT_SAMPLE) {
        for (int i = 0; i < 3; i++)
            pix0.c[i] = ad_add(ad_sub(ad_mul(ad_neg(Fclose), fdet.c[i]), ad_mul(Sclose, sdet.c[i])),
                               ad_mul(close_distance, odet.c[i]));
        pix0 = ad_vec3_rotate_axis(ad_vec3_rotate_xyz(pix0, rotx, roty, rotz), tt_axis, twotheta);
    }
    fdet = ad_vec3_rotate_axis(ad_vec3_rotate_xyz(fdet, rotx, roty, rotz), tt_axis, twotheta);
    sdet = ad_vec3_rotate_axis(ad_vec3_rotate_xyz(sdet, rotx, roty, rotz), tt_axis, twotheta);
    odet = ad_vec3_rotate_axis(ad_vec3_rotate_xyz(odet, rotx, roty, rotz), tt_axis, twotheta);
    if (p->pivot == DB_PIVOT_BEAM) {
        for (int i = 0; i < 3; i++)
            pix0.c[i] = ad_add(ad_sub(ad_mul(ad_neg(Fbeam), fdet.c[i]), ad_mul(Sbeam, sdet.c[i])),
                               ad_mul(distance, beam.c[i]));
    }
    Fclose = ad_neg(ad_vec3_dot(pix0, fdet));
    Sclose = ad_neg(ad_vec3_dot(pix0, sdet));
    close_distance = ad_vec3_dot(pix0, odet);
    ad_vec3 beam_spot;
    for (int i = 0; i < 3; i++) beam_spot.c[i] = ad_sub(ad_mul(ad_div(close_distance, ratio), beam.c[i]), pix0.c[i]);
    Fbeam = ad_vec3_dot(fdet, beam_spot);
    Sbeam = ad_vec3_dot(sdet, beam_spot);
    distance = ad_div(close_distance, ratio);

    db_geometry_report *g = &sim->geo;
    g->distance = distance.v;
    g->close_distance = close_distance.v;
    g->Fclose = Fclose.v;
    g->Sclose = Sclose.v;
    g->Fbeam = Fbeam.v;
    g->Sbeam = Sbeam.v;
    g->ORGX = Fclose.v / c->pixel_size + 0.5;
    g->ORGY = Sclose.v / c->pixel_size + 0.5;
    g->dials_origin[0] = 1000.0 * (pix0.c[0].v * 0 + pix0.c[1].v * 0 + pix0.c[2].v * 1);
    g->dials_origin[1] = 1000.0 * (pix0.c[0].v * 0 + pix0.c[1].v * 1 + pix0.c[2].v * 0);
    g->dials_origin[2] = 1000.0 * (pix0.c[0].v * -1 + pix0.c[1].v * 0 + pix0.c[2].v * 0);
    DB_SFX(vec_out)(pix0, g->pix0);
    DB_SFX(vec_out)(fdet, g->fdet);
    DB_SFX(vec_out)(sdet, g->sdet);
    DB_SFX(vec_out)(odet, g->odet);
    DB_SFX(vec_out)(beam, g->beam);

    t->pixel_size = pixel;
    t->close_distance = close_distance;
    t->distance = distance;
    t->fdet = fdet;
    t->sdet = sdet;
    t->odet = odet;
    t->pix0 = pix0;
    t->beam = beam;
}

static ad_num DB_SFX(clamp_unit)(ad_num x)
{
    if (x.v > 1.0) return ad_const(1.0);
    if (x.v < -1.0) return ad_const(-1.0);
    return x;
}

/* Cell or matrix -> real-space vectors in m and reciprocal vectors in 1/A (spec §3.7-§3.10). */

/* With -mat there is no -cell: the cell parameters are those of the cell the matrix describes. The matrix is
 * A = U B(cell) with B the standard reciprocal-cell matrix (Busing & Levy) and U = A B^-1 held fixed, so
 * dA = U dB. The values stay the file's; only tangents are added. */
static void DB_SFX(standard_B)(const ad_num cell[6], ad_vec3 cols[3])
{
    ad_num ca = ad_cos(cell[3]), cb = ad_cos(cell[4]), cg = ad_cos(cell[5]);
    ad_num sa = ad_sin(cell[3]), sb = ad_sin(cell[4]), sg = ad_sin(cell[5]);
    /* V/(abc) = sqrt(1 - ca^2 - cb^2 - cg^2 + 2 ca cb cg) */
    ad_num w = ad_sqrt(ad_add(ad_sub(ad_sub(ad_d_sub(1.0, ad_mul(ca, ca)), ad_mul(cb, cb)), ad_mul(cg, cg)),
                              ad_d_mul(2.0, ad_mul(ad_mul(ca, cb), cg))));
    ad_num abc = ad_mul(ad_mul(cell[0], cell[1]), cell[2]);
    ad_num V = ad_mul(abc, w);
    ad_num as = ad_div(ad_mul(ad_mul(cell[1], cell[2]), sa), V);
    ad_num bs = ad_div(ad_mul(ad_mul(cell[2], cell[0]), sb), V);
    ad_num cs = ad_div(ad_mul(ad_mul(cell[0], cell[1]), sg), V);
    ad_num cas = ad_div(ad_sub(ad_mul(cb, cg), ca), ad_mul(sb, sg));
    ad_num cbs = ad_div(ad_sub(ad_mul(cg, ca), cb), ad_mul(sg, sa));
    ad_num cgs = ad_div(ad_sub(ad_mul(ca, cb), cg), ad_mul(sa, sb));
    ad_num sgs = ad_sqrt(ad_d_sub(1.0, ad_mul(cgs, cgs)));
    /* a* along x, b* in the xy plane; c* completes the reciprocal cell (its z component is 1/c) */
    cols[0] = ad_vec3_make(as, ad_const(0.0), ad_const(0.0));
    cols[1] = ad_vec3_make(ad_mul(bs, cgs), ad_mul(bs, sgs), ad_const(0.0));
    ad_num cz = ad_d_div(1.0, cell[2]);
    ad_num cx = ad_mul(cs, cbs);
    ad_num cy = ad_div(ad_sub(ad_mul(ad_mul(cs, bs), cas), ad_mul(cx, ad_mul(bs, cgs))), ad_mul(bs, sgs));
    cols[2] = ad_vec3_make(cx, cy, cz);
}

static void DB_SFX(mat_cell_tangents)(db_sim *sim, const db_pass *pass, ad_vec3 *as, ad_vec3 *bs, ad_vec3 *cs)
{
    int any = 0, moved = 0;
    for (int k = DB_P_A; k <= DB_P_GAMMA; k++) any |= DB_SFX(active)(pass, k);
    for (int k = 0; k < 6; k++) moved |= sim->mat_cell_delta[k] != 0.0;
    /* the cell the matrix describes (values only) */
    double A[3][3], V = 0.0, r[3][3];
    for (int i = 0; i < 3; i++) {
        A[i][0] = as->c[i].v;
        A[i][1] = bs->c[i].v;
        A[i][2] = cs->c[i].v;
    }
    double bxc[3] = {A[1][1] * A[2][2] - A[2][1] * A[1][2], A[2][1] * A[0][2] - A[0][1] * A[2][2], A[0][1] * A[1][2] - A[1][1] * A[0][2]};
    double cxa[3] = {A[1][2] * A[2][0] - A[2][2] * A[1][0], A[2][2] * A[0][0] - A[0][2] * A[2][0], A[0][2] * A[1][0] - A[1][2] * A[0][0]};
    double axb[3] = {A[1][0] * A[2][1] - A[2][0] * A[1][1], A[2][0] * A[0][1] - A[0][0] * A[2][1], A[0][0] * A[1][1] - A[1][0] * A[0][1]};
    V = A[0][0] * bxc[0] + A[1][0] * bxc[1] + A[2][0] * bxc[2]; /* a*.(b* x c*) = 1/V_cell */
    for (int i = 0; i < 3; i++) {
        r[0][i] = bxc[i] / V;
        r[1][i] = cxa[i] / V;
        r[2][i] = axb[i] / V;
    }
    double len[3], cell[6];
    for (int k = 0; k < 3; k++) len[k] = sqrt(r[k][0] * r[k][0] + r[k][1] * r[k][1] + r[k][2] * r[k][2]);
    cell[0] = len[0];
    cell[1] = len[1];
    cell[2] = len[2];
    cell[3] = acos((r[1][0] * r[2][0] + r[1][1] * r[2][1] + r[1][2] * r[2][2]) / (len[1] * len[2]));
    cell[4] = acos((r[0][0] * r[2][0] + r[0][1] * r[2][1] + r[0][2] * r[2][2]) / (len[0] * len[2]));
    cell[5] = acos((r[0][0] * r[1][0] + r[0][1] * r[1][1] + r[0][2] * r[1][2]) / (len[0] * len[1]));
    memcpy(sim->xtal.mat_cell, cell, sizeof cell); /* what get_params reports for the cell parameters */
    if (!any && !moved) return;
    ad_num cd[6];
    for (int k = 0; k < 3; k++) cd[k] = DB_SFX(seed)(pass, DB_P_A + k, cell[k]);
    for (int k = 3; k < 6; k++) cd[k] = DB_SFX(seed)(pass, DB_P_A + k, cell[k]);
    ad_vec3 B[3], B0v[3];
    DB_SFX(standard_B)(cd, B0v);
    if (moved) {
        ad_num moved_cell[6];
        for (int k = 0; k < 6; k++)
            moved_cell[k] = ad_add_d(cd[k], k < 3 ? sim->mat_cell_delta[k] : sim->mat_cell_delta[k] / DB_RTD);
        DB_SFX(standard_B)(moved_cell, B);
    } else {
        for (int k = 0; k < 3; k++) B[k] = B0v[k];
    }
    /* U = A B0^-1 (B0 upper triangular, columns B[k]) */
    double B0[3][3], Binv[3][3], U[3][3];
    for (int i = 0; i < 3; i++)
        for (int k = 0; k < 3; k++) B0[i][k] = B0v[k].c[i].v;
    double det = B0[0][0] * (B0[1][1] * B0[2][2] - B0[1][2] * B0[2][1]) - B0[0][1] * (B0[1][0] * B0[2][2] - B0[1][2] * B0[2][0]) +
                 B0[0][2] * (B0[1][0] * B0[2][1] - B0[1][1] * B0[2][0]);
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) {
            int i1 = (j + 1) % 3, i2 = (j + 2) % 3, j1 = (i + 1) % 3, j2 = (i + 2) % 3;
            Binv[i][j] = (B0[i1][j1] * B0[i2][j2] - B0[i1][j2] * B0[i2][j1]) / det;
        }
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) U[i][j] = A[i][0] * Binv[0][j] + A[i][1] * Binv[1][j] + A[i][2] * Binv[2][j];
    ad_vec3 *out[3] = {as, bs, cs};
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < 3; i++) {
            ad_num t = ad_add(ad_add(ad_mul_d(B[k].c[0], U[i][0]), ad_mul_d(B[k].c[1], U[i][1])), ad_mul_d(B[k].c[2], U[i][2]));
            /* unmoved: the file's values with U dB tangents; moved (finite differences): U B(cell + delta) */
            out[k]->c[i] = moved ? t : ad_keep_tangent(out[k]->c[i], t);
        }
}

static void DB_SFX(setup_crystal)(db_sim *sim, const db_pass *pass, ad_vec3 *a0, ad_vec3 *b0, ad_vec3 *c0, ad_vec3 *astar_out,
                                  ad_vec3 *bstar_out, ad_vec3 *cstar_out)
{
    const db_config *c = sim->cfg;
    ad_vec3 as, bs, cs;
    /* absent b, c and angles count as given at their defaults (db_cell_in_force) */
    ad_num a = DB_SFX(seed)(pass, DB_P_A, db_cell_in_force(c, 0));
    ad_num b = DB_SFX(seed)(pass, DB_P_B, db_cell_in_force(c, 1));
    ad_num cc = DB_SFX(seed)(pass, DB_P_C, db_cell_in_force(c, 2));
    ad_num V_cell = ad_const(0.0);
    if (c->user_cell) {
        ad_num alpha = DB_SFX(seed)(pass, DB_P_ALPHA, db_cell_in_force(c, 3));
        ad_num beta = DB_SFX(seed)(pass, DB_P_BETA, db_cell_in_force(c, 4));
        ad_num gamma = DB_SFX(seed)(pass, DB_P_GAMMA, db_cell_in_force(c, 5));
        ad_num aavg = ad_div_d(ad_add(ad_add(alpha, beta), gamma), 2);
        ad_num skew = ad_mul(ad_mul(ad_mul(ad_sin(aavg), ad_sin(ad_sub(aavg, alpha))), ad_sin(ad_sub(aavg, beta))),
                             ad_sin(ad_sub(aavg, gamma)));
        if (skew.v < 0.0) skew = ad_neg(skew);
        V_cell = ad_mul(ad_mul(ad_mul(ad_d_mul(2.0, a), b), cc), ad_sqrt(skew));
        if (V_cell.v <= 0.0) V_cell = ad_const(DBL_MIN);
        ad_num V_star = ad_d_div(1.0, V_cell);
        ad_num as0 = ad_mul(ad_mul(ad_mul(b, cc), ad_sin(alpha)), V_star);
        ad_num bs0 = ad_mul(ad_mul(ad_mul(cc, a), ad_sin(beta)), V_star);
        ad_num cs0 = ad_mul(ad_mul(ad_mul(a, b), ad_sin(gamma)), V_star);
        if (as0.v <= 0.0) as0 = as0.v < 0.0 ? ad_neg(as0) : ad_const(DBL_MIN);
        if (bs0.v <= 0.0) bs0 = bs0.v < 0.0 ? ad_neg(bs0) : ad_const(DBL_MIN);
        if (cs0.v <= 0.0) cs0 = cs0.v < 0.0 ? ad_neg(cs0) : ad_const(DBL_MIN);
        ad_num sgs = DB_SFX(clamp_unit)(ad_div(ad_div(ad_mul(cc, V_star), as0), bs0));
        ad_num cas = ad_div(ad_sub(ad_mul(ad_cos(beta), ad_cos(gamma)), ad_cos(alpha)), ad_mul(ad_sin(beta), ad_sin(gamma)));
        ad_num cbs = ad_div(ad_sub(ad_mul(ad_cos(gamma), ad_cos(alpha)), ad_cos(beta)), ad_mul(ad_sin(gamma), ad_sin(alpha)));
        ad_num cgs = ad_div(ad_sub(ad_mul(ad_cos(alpha), ad_cos(beta)), ad_cos(gamma)), ad_mul(ad_sin(alpha), ad_sin(beta)));
        if (cas.v * cas.v > 1.0) cas = ad_const(1.0);
        if (cbs.v * cbs.v > 1.0) cbs = ad_const(1.0);
        if (cgs.v * cgs.v > 1.0) cgs = ad_const(1.0);
        as = ad_vec3_make(as0, ad_const(0.0), ad_const(0.0));
        bs = ad_vec3_make(ad_mul(bs0, cgs), ad_mul(bs0, sgs), ad_const(0.0));
        /* spec §3.7 quirk: the z term is c* V / (a b c sin(gamma*)), exact only for <= 1 non-90 angle */
        cs = ad_vec3_make(ad_mul(cs0, cbs), ad_div(ad_mul(cs0, ad_sub(cas, ad_mul(cbs, cgs))), sgs),
                          ad_div(ad_mul(cs0, V_cell), ad_mul(ad_mul(ad_mul(a, b), cc), sgs)));
    }
    if (c->mat_file) {
        /* the matrix includes the wavelength (spec §3.8) */
        ad_num f = ad_d_div(1e-10, DB_SFX(seed)(pass, DB_P_LAMBDA, c->lambda0));
        for (int i = 0; i < 3; i++) {
            as.c[i] = ad_mul(f, ad_const(sim->mat[3 * i]));
            bs.c[i] = ad_mul(f, ad_const(sim->mat[3 * i + 1]));
            cs.c[i] = ad_mul(f, ad_const(sim->mat[3 * i + 2]));
        }
        DB_SFX(mat_cell_tangents)(sim, pass, &as, &bs, &cs);
    }
    int misset_active = DB_SFX(active)(pass, DB_P_MISSET_X) || DB_SFX(active)(pass, DB_P_MISSET_Y) ||
                        DB_SFX(active)(pass, DB_P_MISSET_Z);
    if (c->misset_given || misset_active) {
        /* without -misset the angles are 0: the rotation leaves the values exactly as they are, but the
         * derivative at 0 is still wanted */
        const double *m = db_misset_in_force(sim);
        ad_num mx = DB_SFX(seed)(pass, DB_P_MISSET_X, m[0]);
        ad_num my = DB_SFX(seed)(pass, DB_P_MISSET_Y, m[1]);
        ad_num mz = DB_SFX(seed)(pass, DB_P_MISSET_Z, m[2]);
        as = ad_vec3_rotate_xyz(as, mx, my, mz);
        bs = ad_vec3_rotate_xyz(bs, mx, my, mz);
        cs = ad_vec3_rotate_xyz(cs, mx, my, mz);
    }
    ad_vec3 axb = ad_vec3_cross(as, bs), bxc = ad_vec3_cross(bs, cs), cxa = ad_vec3_cross(cs, as);
    ad_num V_star = ad_vec3_dot(as, bxc);
    if (c->user_cell) {
        ad_num target[3] = {ad_div(a, V_cell), ad_div(b, V_cell), ad_div(cc, V_cell)};
        ad_vec3 *vs[3] = {&bxc, &cxa, &axb};
        for (int k = 0; k < 3; k++) {
            ad_num old = ad_vec3_norm(*vs[k]);
            if (old.v <= 0.0) old = ad_const(1.0);
            ad_num f = ad_div(target[k], old);
            for (int i = 0; i < 3; i++) vs[k]->c[i] = ad_mul(f, vs[k]->c[i]);
        }
        V_star = ad_d_div(1.0, V_cell);
    }
    V_cell = ad_d_div(1.0, V_star);
    ad_vec3 ra, rb, rc;
    for (int i = 0; i < 3; i++) {
        ra.c[i] = ad_mul(V_cell, bxc.c[i]);
        rb.c[i] = ad_mul(V_cell, cxa.c[i]);
        rc.c[i] = ad_mul(V_cell, axb.c[i]);
    }
    ad_vec3 rbxrc = ad_vec3_cross(rb, rc), rcxra = ad_vec3_cross(rc, ra), raxrb = ad_vec3_cross(ra, rb);
    for (int i = 0; i < 3; i++) {
        astar_out->c[i] = ad_mul(V_star, rbxrc.c[i]);
        bstar_out->c[i] = ad_mul(V_star, rcxra.c[i]);
        cstar_out->c[i] = ad_mul(V_star, raxrb.c[i]);
    }
    /* report (printed only) */
    db_crystal_report *x = &sim->xtal;
    double la = ad_vec3_norm(ra).v, lb = ad_vec3_norm(rb).v, lc = ad_vec3_norm(rc).v;
    x->cell[0] = la;
    x->cell[1] = lb;
    x->cell[2] = lc;
    x->cell[3] = acos(fmax(-1, fmin(1, ad_vec3_dot(rb, rc).v / lb / lc))) * (180.0 * M_1_PI);
    x->cell[4] = acos(fmax(-1, fmin(1, ad_vec3_dot(ra, rc).v / la / lc))) * (180.0 * M_1_PI);
    x->cell[5] = acos(fmax(-1, fmin(1, ad_vec3_dot(ra, rb).v / la / lb))) * (180.0 * M_1_PI);
    x->volume = V_cell.v;
    DB_SFX(vec_out)(ra, x->a);
    DB_SFX(vec_out)(rb, x->b);
    DB_SFX(vec_out)(rc, x->c);
    for (int i = 0; i < 3; i++) {
        a0->c[i] = ad_mul(ad_const(1e-10), ra.c[i]);
        b0->c[i] = ad_mul(ad_const(1e-10), rb.c[i]);
        c0->c[i] = ad_mul(ad_const(1e-10), rc.c[i]);
    }
}

/* Sources (spec §3.13): unit direction vectors (from the sample towards the source) and wavelengths. */
static int DB_SFX(setup_sources)(db_sim *sim, const db_pass *pass, DB_SFX(storage) *st, int *nsources, db_error *err)
{
    const db_config *c = sim->cfg;
    const db_plan *p = &sim->plan;
    ad_num lambda0 = DB_SFX(seed)(pass, DB_P_LAMBDA, c->lambda0);
    int cap;
    if (sim->nsources > 0) {
        cap = sim->nsources;
    } else {
        /* in 64 bits: three counts from the command line */
        long long n3 = (long long)p->hdivsteps * p->vdivsteps * p->dispsteps;
        if (n3 > DB_MAX_SOURCES)
            return db_fail(err, DB_ERR_ARGUMENT,
                           "the beam would have %lld sources (-hdivsteps %d x -vdivsteps %d x -dispsteps %d); at most %d",
                           n3, p->hdivsteps, p->vdivsteps, p->dispsteps, DB_MAX_SOURCES);
        cap = (int)n3;
    }
    st->src_dir = (ad_vec3 *)malloc((size_t)(cap > 0 ? cap : 1) * sizeof *st->src_dir);
    st->src_lambda = (ad_num *)malloc((size_t)(cap > 0 ? cap : 1) * sizeof *st->src_lambda);
    if (!st->src_dir || !st->src_lambda) return db_fail(err, DB_ERR_NOMEM, "out of memory for %d sources", cap);
    int n = 0;
    if (sim->nsources > 0) {
        for (int s = 0; s < sim->nsources; s++) {
            ad_vec3 v = ad_vec3_const(sim->src_pos[3 * s], sim->src_pos[3 * s + 1], sim->src_pos[3 * s + 2]);
            st->src_dir[n] = ad_vec3_unit(v, 0);
            double lf = sim->src_lambda_file[s];
            st->src_lambda[n] = isnan(lf) ? lambda0 : ad_const(lf);
            n++;
        }
    } else {
        ad_vec3 beam = DB_SFX(vec_from)(p->beam), polar = DB_SFX(vec_from)(p->polar), vert = DB_SFX(vec_from)(p->vert);
        for (int ht = 0; ht < p->hdivsteps; ++ht) {
            for (int vt = 0; vt < p->vdivsteps; ++vt) {
                double hdiv = p->hdivstep * ht - p->hdivrange / 2.0;
                double vdiv = p->vdivstep * vt - p->vdivrange / 2.0;
                double test = (hdiv * hdiv - p->hdivstep * p->hdivstep / 4.0 * (1 - p->hdivsteps % 2)) / p->hdivrange / p->hdivrange;
                test += (vdiv * vdiv - p->vdivstep * p->vdivstep / 4.0 * (1 - p->vdivsteps % 2)) / p->vdivrange / p->vdivrange;
                if (c->round_div && test * 4.0 > 1.1) continue;
                ad_vec3 v;
                for (int i = 0; i < 3; i++) v.c[i] = ad_d_mul(-10.0, beam.c[i]); /* source 10 m upstream */
                v = ad_vec3_rotate_axis(v, polar, ad_const(vdiv));
                v = ad_vec3_rotate_axis(v, vert, ad_const(hdiv));
                ad_vec3 u = ad_vec3_unit(v, 0);
                for (int dt = 0; dt < p->dispsteps; ++dt) {
                    st->src_dir[n] = u;
                    st->src_lambda[n] = ad_mul(lambda0, ad_const(1.0 + p->dispstep * dt - p->dispersion / 2.0));
                    n++;
                }
            }
        }
    }
    if (n == 0) return db_fail(err, DB_ERR_ARGUMENT, "the beam has no sources (check the divergence and dispersion flags)");
    st->src_incident_unit = (ad_vec3 *)malloc((size_t)n * sizeof *st->src_incident_unit);
    if (!st->src_incident_unit) return db_fail(err, DB_ERR_NOMEM, "out of memory for %d sources", n);
    for (int s = 0; s < n; s++) {
        ad_vec3 inc;
        for (int i = 0; i < 3; i++) inc.c[i] = ad_neg(st->src_dir[s].c[i]);
        st->src_incident_unit[s] = ad_vec3_unit(inc, 0);
    }
    *nsources = n;
    return DB_OK;
}

/* Lattice per phi slot and mosaic domain, and the carryover's slot mapping (spec §4). */
/* The mosaic domain matrices over dual numbers (spec appendix A2 step 5, same evaluation order), from the
 * axis and angle factor drawn at creation: rot = spread * p, rounded in float as the reference does unless
 * mosaic_double is set. Domain 0 is the identity. */
static void DB_SFX(mosaic_matrix)(const db_sim *sim, const db_pass *pass, int m, ad_mat3 *M)
{
    if (m == 0) {
        for (int e = 0; e < 9; e++) M->m[e] = ad_const(e % 4 == 0 ? 1.0 : 0.0);
        return;
    }
    double spread = sim->plan.mosaic_spread;
    float pf = sim->mosaic_angle_factors[m];
    double rot_v = sim->mosaic_double ? spread * (double)pf : (double)((float)spread * pf);
    /* d rot / d spread(deg) = p / RTD */
    ad_num rot = ad_keep_tangent(ad_const(rot_v), DB_SFX(seed_f)(pass, DB_P_MOSAIC, 0.0, (double)pf / DB_RTD));
    const double *ax = sim->mosaic_axes + 3 * m;
    ad_num c = ad_cos(rot), sn = ad_sin(rot), w = ad_d_sub(1.0, c);
    ad_num p1 = ad_mul_d(w, ax[0]), p2 = ad_mul_d(w, ax[1]);
    M->m[0] = ad_add(c, ad_mul_d(w, ax[0] * ax[0]));
    M->m[1] = ad_sub(ad_mul_d(p1, ax[1]), ad_mul_d(sn, ax[2]));
    M->m[2] = ad_add(ad_mul_d(p1, ax[2]), ad_mul_d(sn, ax[1]));
    M->m[3] = ad_add(ad_mul_d(p1, ax[1]), ad_mul_d(sn, ax[2]));
    M->m[4] = ad_add(c, ad_mul_d(w, ax[1] * ax[1]));
    M->m[5] = ad_sub(ad_mul_d(p2, ax[2]), ad_mul_d(sn, ax[0]));
    M->m[6] = ad_sub(ad_mul_d(p1, ax[2]), ad_mul_d(sn, ax[1]));
    M->m[7] = ad_add(ad_mul_d(p2, ax[2]), ad_mul_d(sn, ax[0]));
    M->m[8] = ad_add(c, ad_mul_d(w, ax[2] * ax[2]));
}

/* Lattice per phi slot and mosaic domain, and the carryover's slot mapping (spec §4). */
static int DB_SFX(setup_lattice)(db_sim *sim, const db_pass *pass, DB_SFX(storage) *st, ad_vec3 a0, ad_vec3 b0,
                                 ad_vec3 c0, db_error *err)
{
    const db_plan *p = &sim->plan;
    int nphi = p->phisteps, nmos = p->mosaic_domains;
    st->lattice = (ad_vec3 *)malloc((size_t)(nphi + 1) * nmos * 3 * sizeof *st->lattice);
    st->slot_normal = (int *)malloc((size_t)nphi * sizeof(int));
    st->slot_first = (int *)malloc((size_t)nphi * sizeof(int));
    ad_mat3 *umats = (ad_mat3 *)malloc((size_t)nmos * sizeof *umats);
    if (!st->lattice || !st->slot_normal || !st->slot_first || !umats) {
        free(umats);
        return db_fail(err, DB_ERR_NOMEM, "out of memory for the lattice table");
    }
    for (int m = 0; m < nmos; m++) DB_SFX(mosaic_matrix)(sim, pass, m, &umats[m]);
    ad_vec3 spindle = DB_SFX(vec_from)(p->spindle);
    ad_num phi0 = DB_SFX(seed)(pass, DB_P_PHI0, sim->cfg->phi0);
    /* phistep = osc / phisteps with the step count held fixed, whichever way the plan derived it */
    double phistep_v = sim->forced.active && sim->forced.force_phistep ? sim->forced.phistep : p->phistep;
    sim->captured.phistep = phistep_v;
    ad_num phistep = ad_keep_tangent(ad_const(phistep_v), DB_SFX(seed_f)(pass, DB_P_OSC, 0.0, 1.0 / DB_RTD / p->phisteps));
    int last_nonzero = -1;
    for (int slot = 0; slot <= nphi; slot++) {
        ad_vec3 base[3] = {a0, b0, c0};
        if (slot < nphi) {
            ad_num phi = ad_add(phi0, ad_mul_d(phistep, (double)slot));
            if (phi.v != 0.0) last_nonzero = slot;
            for (int k = 0; k < 3; k++) {
                ad_vec3 r = ad_vec3_rotate_axis(base[k], spindle, phi);
                /* at phi == 0 the reference skips the rotation: keep a0's values exactly (signed zeros
                 * included) and the rotation's tangent */
                if (phi.v == 0.0)
                    for (int i = 0; i < 3; i++) r.c[i].v = base[k].c[i].v;
                base[k] = r;
            }
        }
        for (int m = 0; m < nmos; m++)
            for (int k = 0; k < 3; k++)
                st->lattice[((size_t)slot * nmos + m) * 3 + k] =
                    p->mosaic_spread > 0.0 ? ad_mat3_mul_vec(&umats[m], base[k]) : base[k];
    }
    free(umats);
    /* phi == 0 skips the rotation and reuses the lattice left from the last rotated step; the very first phi
     * loop of the run starts from the unrotated lattice instead of the previous iteration's last step. Where
     * the lattice used is the unrotated one, the step's own slot serves: R(0) a0 is a0 exactly, and it keeps
     * the tangent of the skipped rotation. */
    const int SELF = -1;
    int cur_normal = last_nonzero >= 0 ? last_nonzero : SELF, cur_first = SELF;
    for (int j = 0; j < nphi; j++) {
        double phi = sim->cfg->phi0 + phistep_v * j;
        if (!sim->cfg->phi_carryover || phi != 0.0) {
            cur_normal = j;
            cur_first = j;
        }
        st->slot_normal[j] = cur_normal == SELF ? j : cur_normal;
        st->slot_first[j] = cur_first == SELF ? j : cur_first;
    }
    if (sim->forced.active && sim->forced.nphi == nphi && sim->forced.slot_normal && sim->forced.slot_first) {
        memcpy(st->slot_normal, sim->forced.slot_normal, (size_t)nphi * sizeof(int));
        memcpy(st->slot_first, sim->forced.slot_first, (size_t)nphi * sizeof(int));
    }
    return DB_OK;
}

/* What this builder allocates at its peak (sim.h): the lattice per phi slot and domain, the slot maps and the
 * source arrays, each twice (working arrays, then the block), and the domain matrices. */
double DB_SFX(db_tables_bytes)(const db_sim *sim, double nsources)
{
    const double nphi = sim->plan.phisteps, nmos = sim->plan.mosaic_domains;
    const double lattice = (nphi + 1.0) * nmos * 3.0 * (double)sizeof(ad_vec3), slots = 2.0 * nphi * (double)sizeof(int);
    const double sources = nsources * (2.0 * (double)sizeof(ad_vec3) + (double)sizeof(ad_num));
    return 2.0 * (lattice + slots + sources) + nmos * (double)sizeof(ad_mat3) + (double)sizeof(db_tables);
}

/* The largest Miller index a run can reach, 2 |longest cell edge| / shortest wavelength (|S| <= 2 / lambda), is
 * rounded to int in the pixel loop: bounded by DB_MAX_MILLER (config.h), as is every wavelength's sign. */
static int DB_SFX(check_miller_range)(const DB_SFX(storage) *st, int nsources, double longest_m, db_error *err)
{
    double lmin = HUGE_VAL;
    for (int s = 0; s < nsources; s++) {
        const double l = st->src_lambda[s].v;
        if (!(l > 0.0) || !isfinite(l))
            return db_fail(err, DB_ERR_GEOMETRY,
                           "source %d has the wavelength %g A (expected a positive number: check -lambda, -dispersion "
                           "below 200%%, or -sourcefile)", s + 1, l * 1e10);
        if (l < lmin) lmin = l;
    }
    const double hmax = 2.0 * longest_m / lmin;
    if (!(hmax <= DB_MAX_MILLER))
        return db_fail(err, DB_ERR_GEOMETRY,
                       "the cell edge of %g A at the wavelength %g A reaches Miller indices up to %.3g, beyond the %.0e the "
                       "pixel loop holds (check -cell or -mat, and -lambda, -energy or -sourcefile)",
                       longest_m * 1e10, lmin * 1e10, hmax, DB_MAX_MILLER);
    return DB_OK;
}

/* The crystal size in cells (spec §3.11: N from a crystal size, replayed when decisions are forced), the
 * oversampling and the interpolation choice, into sim->xtal and sim->captured */
static int DB_SFX(crystal_size)(db_sim *sim, ad_vec3 a0, ad_vec3 b0, ad_vec3 c0, db_error *err)
{
    const db_config *c = sim->cfg;
    const db_plan *p = &sim->plan;
    db_crystal_report *x = &sim->xtal;
    double Na = c->Na, Nb = c->Nb, Nc = c->Nc;
    double la = ad_vec3_norm(a0).v, lb = ad_vec3_norm(b0).v, lc = ad_vec3_norm(c0).v;
    const db_decisions *fd = sim->forced.active ? &sim->forced : NULL;
    double *Nv[3] = {&Na, &Nb, &Nc};
    const double sizes[3] = {p->sample_x, p->sample_y, p->sample_z}, lens[3] = {la, lb, lc};
    for (int k = 0; k < 3; k++) {
        sim->captured.n_from_size[k] = sizes[k] > 0;
        if (sizes[k] > 0) *Nv[k] = fd && fd->n_from_size[k] ? fd->N[k] : ceil(sizes[k] / lens[k]);
        sim->captured.N[k] = *Nv[k];
        /* the lattice factor's integer arithmetic (config.h); -N is bounded at parsing, a size here */
        if (!(*Nv[k] <= DB_MAX_CELLS)) {
            static const char *const axis[3] = {"a (-Na, or -xtal_size / -sample_x)", "b (-Nb, or -xtal_size / -sample_y)",
                                                "c (-Nc, or -xtal_size / -sample_z)"};
            return db_fail(err, DB_ERR_GEOMETRY,
                           "the crystal would have %g unit cells along %s: %g mm over the %g A cell edge; at most %.0e",
                           *Nv[k], axis[k], sizes[k] * DB_MM_PER_M, lens[k] * DB_A_PER_M, DB_MAX_CELLS);
        }
    }
    if (Na <= 1.0) Na = 1.0;
    if (Nb <= 1.0) Nb = 1.0;
    if (Nc <= 1.0) Nc = 1.0;
    double xa = la * Na, xb = lb * Nb, xc = lc * Nc;
    double xmax = xa;
    if (xmax < xb) xmax = xb;
    if (xmax < xc) xmax = xc;
    double rps = c->lambda0 * sim->geo.distance / c->pixel_size;
    double recd = ceil(3.0 * xmax / rps);
    if (!(recd <= 1e6)) recd = 1e6; /* an enormous or non-finite crystal: "too large" below, not an overflow */
    int rec = recd >= 1.0 ? (int)recd : 1;
    int os = c->oversample > 0 ? c->oversample : rec;
    if (os <= 0) os = 1;
    if (fd) os = fd->oversample;
    if (os > 1000)
        return db_fail(err, DB_ERR_ARGUMENT, c->oversample > 0 ? "-oversample %d is too large (at most 1000)"
                                                               : "the automatic oversampling would be %d (a crystal this "
                                                                 "large for the pixel): give -oversample", os);
    /* interpolation auto-select uses the N of the command line, before the crystal size (spec §3.6) */
    int interp = c->interpolate > 1 ? ((c->Na <= 2) || (c->Nb <= 2) || (c->Nc <= 2)) : c->interpolate;
    if (!sim->have_hkl || sim->hkl.hkls == 0) interp = 0;
    if (fd) interp = fd->interpolate;
    sim->captured.oversample = os;
    sim->captured.interpolate = interp;
    x->Na = Na;
    x->Nb = Nb;
    x->Nc = Nc;
    x->oversample = os;
    x->recommended_oversample = rec;
    x->interpolate = interp;

    return DB_OK;
}

/* The run's scalars in the tables: sizes and switches, the crystal's N and the fluence (seeded where they are
 * parameters), the water background, whether the scattering vector moves with the pass, the F table's ranges */
static void DB_SFX(fill_scalars)(db_sim *sim, const db_pass *pass, db_tables *t, const DB_SFX(storage) *st)
{
    const db_config *c = sim->cfg;
    const db_plan *p = &sim->plan;
    const double Na = sim->xtal.Na, Nb = sim->xtal.Nb, Nc = sim->xtal.Nc;
    const int os = sim->xtal.oversample;
    (void)st; /* the sources' tangents, read with derivatives only */
    t->subpixel_size = ad_div_d(t->pixel_size, (double)os);
    t->thickstep = ad_const(p->thickstep);
    t->mu = ad_const(p->mu);
    t->polar_axis = ad_vec3_unit(DB_SFX(vec_from)(p->polar), 0);
    t->polarization = ad_const(c->polarization);
    t->fudge = ad_const(c->fudge);
    /* -Na/-Nb/-Nc have no effect when a crystal size sets N */
    t->Na = db_param_fixed(c, p, DB_P_NA) ? ad_const(Na) : DB_SFX(seed)(pass, DB_P_NA, Na);
    t->Nb = db_param_fixed(c, p, DB_P_NB) ? ad_const(Nb) : DB_SFX(seed)(pass, DB_P_NB, Nb);
    t->Nc = db_param_fixed(c, p, DB_P_NC) ? ad_const(Nc) : DB_SFX(seed)(pass, DB_P_NC, Nc);
    t->lattice_dh = sim->lattice_dh_form;
    t->N_constant = 1;
#if AD_N > 0
    AD_FOR(i) t->N_constant &= t->Na.d[i] == 0.0 && t->Nb.d[i] == 0.0 && t->Nc.d[i] == 0.0;
#endif
    const double r_e_sqr = 7.94079248018965e-30, avogadro = 6.02214179e23;
    /* with -flux the fluence is derived from it and -fluence has no effect */
    ad_num fluence = db_param_fixed(c, p, DB_P_FLUENCE) ? ad_const(p->fluence) : DB_SFX(seed)(pass, DB_P_FLUENCE, p->fluence);
    ad_num ws = ad_const(c->water_size);
    t->I_bg = ad_div_d(ad_mul_d(ad_mul_d(ad_mul(ad_mul(ad_mul(ad_mul(ad_const(2.57 * 2.57 * r_e_sqr), fluence), ws), ws), ws), 1e6),
                                avogadro),
                       18.0);
    t->r_e_sqr_fluence = ad_d_mul(r_e_sqr, fluence);
    /* the scattering vector depends on the detector, the pixel sampling and the sources only */
    int S_moves = 0;
#if AD_N > 0
    const ad_num *geo[] = {&t->pixel_size, &t->subpixel_size, &t->distance, &t->thickstep};
    const ad_vec3 *geov[] = {&t->fdet, &t->sdet, &t->odet, &t->pix0, &t->beam};
    for (size_t g = 0; g < sizeof geo / sizeof geo[0]; g++)
        AD_FOR(i) S_moves |= geo[g]->d[i] != 0.0;
    for (size_t g = 0; g < sizeof geov / sizeof geov[0]; g++)
        for (int k = 0; k < 3; k++) AD_FOR(i) S_moves |= geov[g]->c[k].d[i] != 0.0;
    for (int n = 0; n < t->nsources; n++) {
        AD_FOR(i) S_moves |= st->src_lambda[n].d[i] != 0.0;
        for (int k = 0; k < 3; k++) AD_FOR(i) S_moves |= st->src_dir[n].c[k].d[i] != 0.0;
    }
#endif
    t->S_constant = !S_moves;
    t->hdr.geometry_constant = !S_moves; /* omega, capture and polarization read nothing else that moves */
    db_ftable *ft = &t->ftab;
    ft->default_F = c->default_F;
    if (sim->have_hkl) {
        const db_hkl_table *h = &sim->hkl;
        ft->h_min = h->h_min;
        ft->h_max = h->h_max;
        ft->k_min = h->k_min;
        ft->k_max = h->k_max;
        ft->l_min = h->l_min;
        ft->l_max = h->l_max;
        ft->h_range = h->h_range;
        ft->k_range = h->k_range;
        ft->l_range = h->l_range;
        ft->hkls = h->hkls;
    }
}

static int DB_SFX(build_tables)(db_sim *sim, const db_pass *pass, db_tables *t, DB_SFX(storage) *st, db_error *err)
{
    const db_config *c = sim->cfg;
    const db_plan *p = &sim->plan;
    memset(t, 0, sizeof *t);
    memset(st, 0, sizeof *st);
    DB_SFX(setup_detector)(sim, pass, t);
    ad_vec3 a0, b0, c0;
    DB_SFX(setup_crystal)(sim, pass, &a0, &b0, &c0, &t->astar, &t->bstar, &t->cstar);
    int rc = DB_SFX(crystal_size)(sim, a0, b0, c0, err);
    if (rc) return rc;
    const int os = sim->xtal.oversample;
    const double la = ad_vec3_norm(a0).v, lb = ad_vec3_norm(b0).v, lc = ad_vec3_norm(c0).v;

    /* memory before work: the estimate before any table is allocated (sim.h) */
    const double nsrc = db_sim_source_count(sim);
    rc = db_check_table_memory(sim, AD_N, DB_SFX(db_tables_bytes)(sim, nsrc), nsrc, err);
    if (!rc) rc = DB_SFX(setup_sources)(sim, pass, st, &t->nsources, err);
    sim->run_sources = t->nsources;
    if (!rc) rc = DB_SFX(check_miller_range)(st, t->nsources, fmax(la, fmax(lb, lc)), err);
    if (!rc) rc = DB_SFX(setup_lattice)(sim, pass, st, a0, b0, c0, err);
    if (rc) return rc;

    t->fpixels = p->fpixels;
    t->spixels = p->spixels;
    t->roi_xmin = p->roi_xmin;
    t->roi_xmax = p->roi_xmax;
    t->roi_ymin = p->roi_ymin;
    t->roi_ymax = p->roi_ymax;
    t->oversample = os;
    t->thicksteps = p->thicksteps;
    t->nphi = p->phisteps;
    t->nmos = p->mosaic_domains;
    t->shape = (int)c->shape;
    t->curved = c->curved_detector;
    t->point_pixel = c->point_pixel;
    t->os_thick = c->oversample_thick;
    t->os_polar = c->oversample_polar;
    t->os_omega = c->oversample_omega;
    t->nopolar = c->nopolar;
    t->mosaic_on = p->mosaic_spread > 0.0;
    t->detector_thick = p->thick;
    t->water_size = c->water_size;
    t->dmin = c->dmin;
    double steps = (double)t->nsources * p->mosaic_domains * p->phisteps * os * os;
    if (steps > 2147483647.0)
        return db_fail(err, DB_ERR_ARGUMENT,
                       "%g samples per pixel (%d sources x %d mosaic domains x %d phi steps x %d^2 sub-pixels) is too many",
                       steps, t->nsources, p->mosaic_domains, p->phisteps, os);
    sim->steps = (int)steps;
    t->steps = (double)sim->steps;
    t->steps_inverse = sim->steps > 0 && (sim->steps & (sim->steps - 1)) == 0 ? 1.0 / t->steps : 0.0;
    DB_SFX(fill_scalars)(sim, pass, t, st);
    return DB_OK;
}

/* The block: db_tables, then its arrays, each at a 64-byte boundary (offsets from the block's start). */
static size_t DB_SFX(align64)(size_t n) { return (n + 63) & ~(size_t)63; }

int DB_SFX(db_tables_build)(db_sim *sim, const db_pass *pass, void **block_out, db_error *err)
{
    db_tables t;
    DB_SFX(storage) st;
    *block_out = NULL;
    int rc = DB_SFX(build_tables)(sim, pass, &t, &st, err);
    if (rc) {
        DB_SFX(storage_free)(&st);
        return rc;
    }
    size_t nsrc = (size_t)t.nsources, nlat = (size_t)(t.nphi + 1) * (size_t)t.nmos * 3, nphi = (size_t)t.nphi;
    size_t off = DB_SFX(align64)(sizeof t);
    t.off_src_dir = off;
    off = DB_SFX(align64)(off + nsrc * sizeof(ad_vec3));
    t.off_src_incident_unit = off;
    off = DB_SFX(align64)(off + nsrc * sizeof(ad_vec3));
    t.off_src_lambda = off;
    off = DB_SFX(align64)(off + nsrc * sizeof(ad_num));
    t.off_lattice = off;
    off = DB_SFX(align64)(off + nlat * sizeof(ad_vec3));
    t.hdr.off_slot_normal = off;
    off = DB_SFX(align64)(off + nphi * sizeof(int));
    t.hdr.off_slot_first = off;
    off = DB_SFX(align64)(off + nphi * sizeof(int));
    t.hdr.bytes = off;
    t.hdr.ad_n = AD_N;
    t.hdr.nphi = t.nphi;
    char *b = (char *)aligned_alloc(64, off);
    if (!b) {
        DB_SFX(storage_free)(&st);
        return db_fail(err, DB_ERR_NOMEM, "out of memory for the run's tables (%zu bytes)", off);
    }
    memset(b, 0, off);
    memcpy(b, &t, sizeof t);
    memcpy(b + t.off_src_dir, st.src_dir, nsrc * sizeof(ad_vec3));
    memcpy(b + t.off_src_incident_unit, st.src_incident_unit, nsrc * sizeof(ad_vec3));
    memcpy(b + t.off_src_lambda, st.src_lambda, nsrc * sizeof(ad_num));
    memcpy(b + t.off_lattice, st.lattice, nlat * sizeof(ad_vec3));
    memcpy(b + t.hdr.off_slot_normal, st.slot_normal, nphi * sizeof(int));
    memcpy(b + t.hdr.off_slot_first, st.slot_first, nphi * sizeof(int));
    DB_SFX(storage_free)(&st);
    *block_out = b;
    return DB_OK;
}
