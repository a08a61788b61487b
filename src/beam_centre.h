/* beam_centre.h: the reference's beam-centre bookkeeping (spec §3.2-§3.3) over dual numbers, so that the
 * configuration plan (plain doubles, AD_N = 0) and the derivative setup share one text: -Xbeam/-Ybeam,
 * -Xclose/-Yclose and -ORGX/-ORGY become the detector's Fbeam/Sbeam (BEAM pivot) and Fclose/Sclose (SAMPLE
 * pivot) as each convention defines them. Unset inputs have a NAN value and take the convention's defaults;
 * their tangents are kept, so a derivative is taken as if the default had been given on the command line.
 * Include after ad/ad.h. */
#ifndef DB_BEAM_CENTRE_H
#define DB_BEAM_CENTRE_H

#include "ad.h"

#define db_beam_centre AD_NAME(db_beam_centre)

enum { DB_BC_MOSFLM, DB_BC_DENZO, DB_BC_ADXV, DB_BC_XDS, DB_BC_DIALS, DB_BC_CUSTOM };

typedef struct db_beam_centre {
    ad_num Xbeam, Ybeam, Xclose, Yclose, Fbeam, Sbeam, Fclose, Sclose; /* m */
} db_beam_centre;

AD_INLINE db_beam_centre db_beam_centre_resolve(int convention, ad_num Xbeam, ad_num Ybeam, ad_num Xclose_in,
                                                ad_num Yclose_in, ad_num ORGX, ad_num ORGY, ad_num pixel,
                                                double detsize_f, double detsize_s)
{
    db_beam_centre r;
    /* an absent ORGX leaves Fclose at the detector centre; its tangent is that of (ORGX - 0.5) * pixel */
    ad_num Fclose = isnan(ORGX.v) ? ad_keep_tangent(ad_const((detsize_f - 0 * pixel.v) / 2.0), ad_mul_d(ORGX, pixel.v))
                                  : ad_mul(ad_sub_d(ORGX, 0.5), pixel);
    ad_num Sclose = isnan(ORGY.v) ? ad_keep_tangent(ad_const((detsize_s + 0 * pixel.v) / 2.0), ad_mul_d(ORGY, pixel.v))
                                  : ad_mul(ad_sub_d(ORGY, 0.5), pixel);
    ad_num Xclose = isnan(Xclose_in.v) ? Fclose : Xclose_in;
    ad_num Yclose = isnan(Yclose_in.v) ? Sclose : Yclose_in;
    ad_num Fbeam = Fclose, Sbeam = Sclose;
    switch (convention) {
    case DB_BC_ADXV:
        if (isnan(Xbeam.v)) Xbeam = ad_keep_tangent(ad_div_d(ad_d_add(detsize_f, pixel), 2.0), Xbeam);
        if (isnan(Ybeam.v)) Ybeam = ad_keep_tangent(ad_div_d(ad_d_sub(detsize_s, pixel), 2.0), Ybeam);
        Fbeam = Xbeam;
        Sbeam = ad_d_sub(detsize_s, Ybeam);
        break;
    case DB_BC_MOSFLM:
    case DB_BC_DENZO: {
        if (isnan(Xbeam.v)) Xbeam = ad_keep_tangent(ad_div_d(ad_d_add(detsize_s, pixel), 2.0), Xbeam);
        if (isnan(Ybeam.v)) Ybeam = ad_keep_tangent(ad_div_d(ad_d_add(detsize_f, pixel), 2.0), Ybeam);
        double half = convention == DB_BC_MOSFLM ? 0.5 : 0.0;
        Fbeam = ad_add(Ybeam, ad_d_mul(half, pixel));
        Sbeam = ad_add(Xbeam, ad_d_mul(half, pixel));
        break;
    }
    case DB_BC_XDS:
    case DB_BC_DIALS:
        if (isnan(Xbeam.v)) Xbeam = ad_keep_tangent(Xclose, Xbeam);
        if (isnan(Ybeam.v)) Ybeam = ad_keep_tangent(Yclose, Ybeam);
        Fbeam = Xbeam;
        Sbeam = Ybeam;
        break;
    default: /* CUSTOM */
        if (isnan(Xbeam.v)) Xbeam = ad_keep_tangent(Xclose, Xbeam);
        if (isnan(Ybeam.v)) Ybeam = ad_keep_tangent(Yclose, Ybeam);
        Fbeam = Xbeam;
        Sbeam = Ybeam;
        Fclose = Xbeam;
        Sclose = Ybeam;
        break;
    }
    r.Xbeam = Xbeam;
    r.Ybeam = Ybeam;
    r.Xclose = Xclose;
    r.Yclose = Yclose;
    r.Fbeam = Fbeam;
    r.Sbeam = Sbeam;
    r.Fclose = Fclose;
    r.Sclose = Sclose;
    return r;
}

#endif
