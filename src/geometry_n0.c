/* geometry_n0.c: the geometry of physics.h in plain doubles (AD_N 0), which physics.h's derivative passes call
 * when no tangent reaches the geometry (db_geo_subpixel_n0 and the rest, declared there): the very functions the
 * primal engine runs, over the primal table block. The physics compiled once more on its own, so that physics.h
 * depends on no engine (issue 21: it declared functions that engine_impl.h defined). */
#define AD_N 0
#include "physics.h"

static void db_out3(ad_vec3 v, double o[3])
{
    for (int i = 0; i < 3; i++) o[i] = v.c[i].v;
}

void db_geo_subpixel_n0(const void *block0, int fpixel, int spixel, int subS, int subF, int thick_tic, double pos[3],
                        double diffracted[3], double *airpath)
{
    ad_num ap;
    ad_vec3 p = db_subpixel_position((const db_tables *)block0, fpixel, spixel, subS, subF, thick_tic);
    db_out3(ad_vec3_unit(p, &ap), diffracted);
    db_out3(p, pos);
    *airpath = ap.v;
}

double db_geo_omega_n0(const void *block0, double airpath)
{
    return db_solid_angle((const db_tables *)block0, ad_const(airpath)).v;
}

double db_geo_capture_n0(const void *block0, const double diffracted[3], int thick_tic)
{
    return db_capture_fraction((const db_tables *)block0, ad_vec3_const(diffracted[0], diffracted[1], diffracted[2]),
                               thick_tic).v;
}

void db_geo_scattering_n0(const void *block0, int source, const double diffracted[3], double S[3])
{
    db_out3(db_scattering_vector((const db_tables *)block0, source, ad_vec3_const(diffracted[0], diffracted[1], diffracted[2])),
            S);
}

double db_geo_polar_n0(const void *block0, int source, double diffracted[3])
{
    const db_tables *t = (const db_tables *)block0;
    const ad_vec3 *src_incident_unit = DB_TAB(t, t->off_src_incident_unit, ad_vec3);
    ad_vec3 d = ad_vec3_const(diffracted[0], diffracted[1], diffracted[2]);
    ad_num polar = db_polarization(t->polarization, src_incident_unit[source], d, t->polar_axis);
    db_out3(ad_vec3_unit(d, 0), diffracted); /* the reference's in-place re-unitizing */
    return polar.v;
}
