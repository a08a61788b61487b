/* physics.h: the per-pixel physics of nanoBragg (spec §3.16), written once over ad_num and shared by the CPU
 * driver (src/engine_impl.h) and the CUDA kernels (kernels/).
 *
 * Everything that does not depend on the pixel is precomputed per run into db_tables (src/setup_impl.h).
 * Expressions are evaluated in the reference's order so that the primal is bit-identical to it (spec
 * appendix A0): e.g. a dot product is (x0*y0 + x1*y1) + x2*y2, a pixel position Fdet*f + Sdet*s + Odet*o + pix0.
 *
 * Include after defining AD_N and including ad/ad.h. */
#ifndef DB_PHYSICS_H
#define DB_PHYSICS_H

#include <stddef.h>
#include "ad.h"
#include "backend.h"

enum { DB_SHAPE_SQUARE_K = 0, DB_SHAPE_ROUND_K = 1, DB_SHAPE_GAUSS_K = 2, DB_SHAPE_TOPHAT_K = 3 };

/* Per direction count, its own type names (see ad.h). */
#define db_tables AD_NAME(db_tables)
#define db_pixel_flags AD_NAME(db_pixel_flags)
#define db_trace_sample AD_NAME(db_trace_sample)
#define db_trace_end AD_NAME(db_trace_end)
#define db_tracer AD_NAME(db_tracer)

/* Structure factors: the reference's dense table with one padding slot per axis. The values themselves,
 * F[(h_range+1)*(k_range+1)*(l_range+1)] with l fastest, live outside the table block (they are loaded once per
 * simulation, not per change of values) and are passed to db_pixel_value beside it. */
typedef struct db_ftable {
    int h_min, h_max, k_min, k_max, l_min, l_max;
    int h_range, k_range, l_range;
    long hkls;       /* 0: no table (only default_F) */
    double default_F;
} db_ftable;

/* The per-run tables: one relocatable block (offsets from the block's start, never pointers), built on the
 * host once per change of values and read in place by the CPU or copied to a device in one piece. */
typedef struct db_tables {
    db_block_header hdr;
    int fpixels, spixels;
    int roi_xmin, roi_xmax, roi_ymin, roi_ymax;
    int oversample, thicksteps, nsources, nphi, nmos;
    int shape, curved, point_pixel, os_thick, os_polar, os_omega, nopolar;
    int mosaic_on;        /* mosaic_spread > 0: the reference applies U even to domain 0 */
    int lattice_dh;       /* SQUARE factor from dh = h - h0 (for N derivatives; equal up to sign at integer N) */
    int S_constant;       /* no tangent reaches the scattering vector in this pass (crystal parameters only) */
    int N_constant;       /* Na, Nb and Nc carry no tangent in this pass */
    double detector_thick; /* only compared with 0 */
    double water_size;     /* only compared with 0 */
    double dmin;           /* m; only a cut */
    double steps;          /* sources*domains*phisteps*oversample^2, as a double */
    double steps_inverse;  /* 1/steps when steps is a power of two, else 0: then x * it is x / steps exactly (both
                            * round the same real number), one division less per pixel */
    ad_num pixel_size, subpixel_size, close_distance, distance, thickstep, mu;
    ad_vec3 fdet, sdet, odet, pix0, beam, polar_axis; /* polar_axis unitized */
    ad_num polarization, fudge, Na, Nb, Nc, I_bg, r_e_sqr_fluence;
    ad_vec3 astar, bstar, cstar; /* unrotated reciprocal vectors in 1/Angstrom (GAUSS/TOPHAT) */
    /* arrays of the block, as byte offsets from its start (DB_TAB below):
     * src_dir[nsources]: unit source position vectors (incident = -src_dir);
     * src_incident_unit[nsources]: unit(-src_dir), as the polarization factor unitizes it;
     * src_lambda[nsources];
     * lattice[(slot*nmos + mos)*3 + {0,1,2}] = a,b,c (m) of phi slot `slot` after mosaic domain `mos`; slot nphi is
     * the unrotated lattice a0 (used by the carryover's exceptional sample);
     * slot_normal, slot_first (in the header): the lattice slot each phi step uses, for every sample and for the
     * carryover's one exceptional sample (spec §4). */
    size_t off_src_dir, off_src_incident_unit, off_src_lambda, off_lattice;
    db_ftable ftab;
} db_tables;

#define DB_TAB(t, off, type) ((const type *)((const char *)(t) + (off)))

#define DB_M_PI 3.14159265358979323846

/* Branches that most runs never take (interpolation, the round, Gaussian and tophat shapes): out of line on the GPU,
 * so that their registers do not weigh on the phi and mosaic loops of every other run (a GPU thread has at most 255
 * and spills the rest); inline on the host, as everything else. Same arithmetic either way. */
#if defined(__CUDACC__)
#define DB_COLD static __noinline__ __host__ __device__
#else
#define DB_COLD AD_INLINE
#endif

/* 4-point Lagrange interpolation through (xa[i], ya[i]), in the reference's evaluation order (appendix A5). */
AD_INLINE ad_num db_polint(const double xa[4], const ad_num ya[4], ad_num x)
{
    ad_num d0 = ad_sub_d(x, xa[0]), d1 = ad_sub_d(x, xa[1]), d2 = ad_sub_d(x, xa[2]), d3 = ad_sub_d(x, xa[3]);
    ad_num t0 = ad_div_d(ad_mul(ad_mul(ad_mul(d1, d2), d3), ya[0]), ((xa[0] - xa[1]) * (xa[0] - xa[2])) * (xa[0] - xa[3]));
    ad_num t1 = ad_div_d(ad_mul(ad_mul(ad_mul(d0, d2), d3), ya[1]), ((xa[1] - xa[0]) * (xa[1] - xa[2])) * (xa[1] - xa[3]));
    ad_num t2 = ad_div_d(ad_mul(ad_mul(ad_mul(d0, d1), d3), ya[2]), ((xa[2] - xa[0]) * (xa[2] - xa[1])) * (xa[2] - xa[3]));
    ad_num t3 = ad_div_d(ad_mul(ad_mul(ad_mul(d0, d1), d2), ya[3]), ((xa[3] - xa[0]) * (xa[3] - xa[1])) * (xa[3] - xa[2]));
    return ad_add(ad_add(ad_add(t0, t1), t2), t3);
}

/* Tricubic interpolation of F at fractional (h,k,l) on the 4x4x4 grid starting at (hf-1, kf-1, lf-1) with
 * hf = floor(h) etc.: along l, then k, then h (appendix A5). */
DB_COLD ad_num db_tricubic(const db_ftable *ft, const double *F, int hf, int kf, int lf, ad_num h, ad_num k, ad_num l)
{
    double H[4], K[4], L[4];
    for (int i = 0; i < 4; i++) {
        H[i] = (double)(hf - 1 + i);
        K[i] = (double)(kf - 1 + i);
        L[i] = (double)(lf - 1 + i);
    }
    int kdim = ft->k_range + 1, ldim = ft->l_range + 1;
    ad_num W[4];
    for (int i = 0; i < 4; i++) {
        ad_num Z[4];
        for (int j = 0; j < 4; j++) {
            ad_num Y[4];
            const double *row = F + ((size_t)(hf - 1 + i - ft->h_min) * kdim + (size_t)(kf - 1 + j - ft->k_min)) * ldim;
            for (int m = 0; m < 4; m++) Y[m] = ad_const(row[lf - 1 + m - ft->l_min]);
            Z[j] = db_polint(L, Y, l);
        }
        W[i] = db_polint(K, Z, k);
    }
    return db_polint(H, W, h);
}

/* One axis of the SQUARE lattice factor, sincg(pi h, N) = sin(N pi h)/sin(pi h).
 * dh_form (N derivatives): value and tangent of sincg(pi dh, N) with dh = h - h0; the reference's form has an
 * N-slope that grows with h and means nothing.
 * Otherwise the value is the reference's, bit for bit, and the tangent is taken from the dh form times its
 * sign (-1)^((N-1) h0), which is the same function for integer N but free of the large-argument rounding that
 * spoils the slope of sin(N pi h) near a Bragg peak. The reference's form is a lattice sum only at whole N (at
 * N = 7.1 its peaks reach 1e7 times the N = 7 ones): a non-whole N (accepted, unlike the reference) always
 * takes the dh form, value and tangent. */
AD_INLINE ad_num db_lattice_axis(ad_num h, double h0, ad_num N, int dh_form)
{
    if (N.v != floor(N.v)) dh_form = 1;
#if AD_N > 0
    ad_num dh = ad_sub_d(h, h0);
    /* the value as ad_sincg(pi dh, N) or the reference computes it (libm sin, bit parity); the tangent from
     * ad_sincgpi_slopes, with no libm call */
    double x = DB_M_PI * (dh_form ? dh.v : h.v);
    ad_num r = ad_sincgpi_with(dh, N, x == 0.0 ? N.v : sin(N.v * x) / sin(x));
    if (!dh_form && (((long)h0 * ((long)N.v - 1)) & 1L)) {
        double v = r.v;
        r = ad_neg(r);
        r.v = v;
    }
    return r;
#else
    return ad_sincg(ad_d_mul(DB_M_PI, dh_form ? ad_sub_d(h, h0) : h), N);
#endif
}

/* a . b when b carries no tangent: ad_vec3_dot_p's value, and the tangent from a alone (skips the zero half); read
 * in place, as ad_vec3_dot_p (by value: rep movsq, 18% of a 12-direction run) */
AD_INLINE ad_num db_dot_const_b(const ad_vec3 *a, const ad_vec3 *b)
{
    ad_num r;
    const double b0 = b->c[0].v, b1 = b->c[1].v, b2 = b->c[2].v;
    r.v = a->c[0].v * b0 + a->c[1].v * b1 + a->c[2].v * b2;
#if AD_N > 0
    AD_FOR(i) r.d[i] = a->c[0].d[i] * b0 + a->c[1].d[i] * b1 + a->c[2].d[i] * b2;
#endif
    return r;
}

/* Kahn polarization factor (spec §3.16). The reference unitizes all three vectors on every call; incident
 * and axis do not change within a run, so the caller passes them unitized once (same values). */
AD_INLINE ad_num db_polarization(ad_num kahn, ad_vec3 incident, ad_vec3 diffracted, ad_vec3 axis)
{
    diffracted = ad_vec3_unit(diffracted, 0);
    ad_num c2 = ad_vec3_dot(incident, diffracted);
    ad_num c2s = ad_mul(c2, c2);
    ad_num s2s = ad_d_sub(1.0, c2s);
    ad_num psi = ad_const(0.0);
    if (kahn.v != 0.0) {
        ad_vec3 B = ad_vec3_unit(ad_vec3_cross(axis, incident), 0);
        ad_vec3 E = ad_vec3_unit(ad_vec3_cross(incident, B), 0);
        psi = ad_neg(ad_atan2(ad_vec3_dot(diffracted, B), ad_vec3_dot(diffracted, E)));
    }
    /* cos(0) is 1 exactly: the primal skips the call when psi is 0 (kahn 0: the unpolarized default) */
    ad_num c2psi = (AD_N == 0 && psi.v == 0.0) ? ad_const(1.0) : ad_cos(ad_d_mul(2.0, psi));
    ad_num t = ad_mul(ad_mul(kahn, c2psi), s2s);
    return ad_d_mul(0.5, ad_sub(ad_add(ad_const(1.0), c2s), t));
}

/* -trace_pixel: what one inner iteration and the pixel's end contribute (host only). */
typedef struct db_trace_sample {
    int layer, subS, subF, source, phi_tic, mos, slot;
    const ad_vec3 *lattice; /* a, b, c (m) */
    ad_num h, k, l, F_latt, F_cell, term;
    ad_vec3 pos;            /* sub-pixel position (m) */
    ad_vec3 S;              /* scattering vector (1/m) */
} db_trace_sample;
typedef struct db_trace_end {
    ad_num polar, omega, capture, value, I;
} db_trace_end;
typedef struct db_tracer {
    void (*sample)(void *ctx, const db_trace_sample *r);
    void (*end)(void *ctx, const db_trace_end *r);
    void *ctx;
} db_tracer;

/* Where a pixel's phi loop first runs, for the carryover's exceptional sample. */
typedef struct db_pixel_flags {
    int first_sample;   /* ordinal (layer, sub-pixel, source) of the exceptional sample in this pixel, or -1 */
    int interpolate;    /* in: interpolation on at pixel start; out: still on at pixel end */
    int interp_tripped; /* out: an out-of-range interpolation switched it off inside this pixel */
    double omega_sum;   /* out: sum of the solid angles over sub-pixels, for the summary */
    int probe_first;    /* in: stop at the first sample whose phi loop runs and store it in first_sample */
    db_decision_log *log; /* in: NULL, or record/replay this pixel's discrete decisions */
    const db_tracer *tracer; /* in: NULL, or report every inner iteration (host only) */
    db_fjac_pixel *fjac; /* in: NULL, or where this pixel's dI/dF entries go (host only; backend.h) */
} db_pixel_flags;

#if !defined(__CUDACC__)
#include <stdlib.h>
/* ---- the structure-factor Jacobian (host only) ----
 * Without interpolation a sample's term is F(h0,k0,l0)^2 F_latt^2, so its F-derivative is 2 F F_latt^2 at that
 * one grid entry; with tricubic interpolation F_cell is linear in the 64 grid values around the sample, with the
 * Lagrange weights as coefficients, and the derivative is 2 F_cell F_latt^2 times each weight. What happens to
 * the running sum I afterwards (the -oversample_* factors, the final scale and corrections) happens to these
 * entries alike, so that each is dI/dF_j of the pixel's value. */
/* Room for `extra` more entries; 0 (and b->failed set) when out of memory. */
static inline int db_fjac_reserve(db_fjac_buf *b, size_t extra)
{
    if (b->cap - b->n >= extra) return 1;
    size_t cap = b->cap ? 2 * b->cap : 256;
    if (cap < b->n + extra) cap = b->n + extra;
    size_t *na = (size_t *)realloc(b->at, cap * sizeof(size_t));
    if (na) b->at = na;
    double *nv = na ? (double *)realloc(b->val, cap * sizeof(double)) : NULL;
    if (!na || !nv) {
        b->failed = 1;
        return 0;
    }
    b->val = nv;
    b->cap = cap;
    return 1;
}

static inline void db_fjac_add(db_fjac_pixel *p, size_t at, double d)
{
    db_fjac_buf *b = p->buf;
    size_t j = p->last;
    if (j < p->start || j >= b->n || b->at[j] != at)
        for (j = p->start; j < b->n && b->at[j] != at; j++) {
        }
    if (j == b->n) {
        if (!db_fjac_reserve(b, 1)) return;
        b->at[j] = at;
        b->val[j] = 0.0;
        b->n++;
    }
    b->val[j] += d;
    p->last = j;
}

/* Every entry of this pixel times x. */
static inline void db_fjac_scale(db_fjac_pixel *p, double x)
{
    db_fjac_buf *b = p->buf;
    for (size_t j = p->start; j < b->n; j++) b->val[j] *= x;
}

/* The Lagrange weights of the 4 points xa[m] = x0 + m at x: polint's value is sum_m w[m] ya[m]. */
static inline void db_lagrange4(double x0, double x, double w[4])
{
    const double d0 = x - x0, d1 = x - (x0 + 1), d2 = x - (x0 + 2), d3 = x - (x0 + 3);
    w[0] = d1 * d2 * d3 / -6.0;
    w[1] = d0 * d2 * d3 / 2.0;
    w[2] = d0 * d1 * d3 / -2.0;
    w[3] = d0 * d1 * d2 / 6.0;
}

/* The 64 grid entries of db_tricubic(ft, F, hf, kf, lf, h, k, l), each with d times its weight. */
static inline void db_fjac_add_tricubic(db_fjac_pixel *p, const db_ftable *ft, int hf, int kf, int lf, double h,
                                        double k, double l, double d)
{
    double wh[4], wk[4], wl[4];
    db_lagrange4(hf - 1, h, wh);
    db_lagrange4(kf - 1, k, wk);
    db_lagrange4(lf - 1, l, wl);
    const size_t kdim = (size_t)ft->k_range + 1, ldim = (size_t)ft->l_range + 1;
    db_fjac_buf *b = p->buf;
    /* Samples of a pixel mostly share a block: its 64 entries, kept together in loop order, are added to in
     * place; a pixel's first block is appended as it is (its entries are new and distinct). Only a pixel that
     * spans blocks looks entries up one by one (64 searches of its list). */
    const int same = p->block != (size_t)-1 && p->block_hkl[0] == hf && p->block_hkl[1] == kf && p->block_hkl[2] == lf;
    const int fresh = !same && b->n == p->start;
    if (fresh) {
        if (!db_fjac_reserve(b, 64)) return;
        p->block = b->n;
        p->block_hkl[0] = hf;
        p->block_hkl[1] = kf;
        p->block_hkl[2] = lf;
    }
    size_t e = p->block;
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) {
            size_t row = ((size_t)(hf - 1 + i - ft->h_min) * kdim + (size_t)(kf - 1 + j - ft->k_min)) * ldim;
            for (int m = 0; m < 4; m++, e++) {
                const double w = d * (wh[i] * wk[j] * wl[m]);
                if (fresh) {
                    b->at[e] = row + (size_t)(lf - 1 + m - ft->l_min);
                    b->val[e] = w;
                } else if (same) {
                    b->val[e] += w;
                } else {
                    db_fjac_add(p, row + (size_t)(lf - 1 + m - ft->l_min), w);
                }
            }
        }
    if (fresh) b->n += 64;
}
#endif

#if defined(__CUDACC__)
#define db_decide(fl, computed) (computed)
#else
#include <stdlib.h>
/* Returns the decision to use: the computed one, recorded when recording, or the recorded one when replaying. */
static inline int db_decide(db_pixel_flags *fl, int computed)
{
    db_decision_log *L = fl->log;
    if (!L) return computed;
    if (L->mode == DB_LOG_RECORD) {
        if (L->len == L->cap) {
            size_t cap = L->cap ? 2 * L->cap : 256;
            int *d = (int *)realloc(L->data, cap * sizeof(int));
            if (!d) {
                L->mismatch = 1;
                return computed;
            }
            L->data = d;
            L->cap = cap;
        }
        L->data[L->len++] = computed;
        return computed;
    }
    if (L->pos < L->len) return L->data[L->pos++];
    L->mismatch = 1;
    return computed;
}
#endif

/* ---- the per-sub-pixel geometry, in the reference's order; db_pixel_value's pieces ---- */

/* Sub-pixel (subS, subF) of pixel (fpixel, spixel) in detector layer thick_tic: its lab position (m). */
AD_INLINE ad_vec3 db_subpixel_position(const db_tables *t, int fpixel, int spixel, int subS, int subF, int thick_tic)
{
    const int os = t->oversample;
    ad_num Odet = ad_d_mul((double)thick_tic, t->thickstep);
    ad_num half = ad_div_d(t->subpixel_size, 2.0);
    ad_num Fdet = ad_add(ad_mul_d(t->subpixel_size, (double)(fpixel * os + subF)), half);
    ad_num Sdet = ad_add(ad_mul_d(t->subpixel_size, (double)(spixel * os + subS)), half);
    ad_vec3 pos;
    for (int i = 0; i < 3; i++)
        pos.c[i] = ad_add(ad_add(ad_add(ad_mul(Fdet, t->fdet.c[i]), ad_mul(Sdet, t->sdet.c[i])), ad_mul(Odet, t->odet.c[i])),
                          t->pix0.c[i]);
    if (t->curved) {
        /* the flat position's lab y and z, read as angles (MOSFLM-like axes only, spec §7.16) */
        ad_vec3 v = ad_vec3_make(ad_mul(t->distance, t->beam.c[0]), ad_mul(t->distance, t->beam.c[1]),
                                 ad_mul(t->distance, t->beam.c[2]));
        ad_num ang_s = ad_div(pos.c[1], t->distance), ang_f = ad_div(pos.c[2], t->distance);
        v = ad_vec3_rotate_axis(v, t->sdet, ang_s);
        pos = ad_vec3_rotate_axis(v, t->fdet, ang_f);
    }
    return pos;
}

/* Solid angle of the pixel seen along a path of this length. */
AD_INLINE ad_num db_solid_angle(const db_tables *t, ad_num airpath)
{
    if (t->point_pixel) return ad_div(ad_d_div(1.0, airpath), airpath);
    return ad_div(ad_mul(ad_div(ad_div(ad_mul(t->pixel_size, t->pixel_size), airpath), airpath), t->close_distance),
                  airpath);
}

/* Fraction of the photons along `diffracted` absorbed in detector layer thick_tic. */
AD_INLINE ad_num db_capture_fraction(const db_tables *t, ad_vec3 diffracted, int thick_tic)
{
    ad_num parallax = ad_vec3_dot(diffracted, t->odet);
    ad_num e0 = ad_div(ad_mul(ad_d_mul((double)(-thick_tic), t->thickstep), t->mu), parallax);
    ad_num e1 = ad_div(ad_mul(ad_d_mul((double)(-(thick_tic + 1)), t->thickstep), t->mu), parallax);
    return ad_sub(ad_exp(e0), ad_exp(e1));
}

/* The scattering vector (1/m) of source `source` for the unit diffracted direction. */
AD_INLINE ad_vec3 db_scattering_vector(const db_tables *t, int source, ad_vec3 diffracted)
{
    const ad_vec3 *src_dir = DB_TAB(t, t->off_src_dir, ad_vec3);
    const ad_num *src_lambda = DB_TAB(t, t->off_src_lambda, ad_num);
    ad_vec3 incident = ad_vec3_make(ad_neg(src_dir[source].c[0]), ad_neg(src_dir[source].c[1]), ad_neg(src_dir[source].c[2]));
    ad_num lambda = src_lambda[source];
    ad_vec3 S;
    for (int i = 0; i < 3; i++) S.c[i] = ad_div(ad_sub(diffracted.c[i], incident.c[i]), lambda);
    return S;
}

#if AD_N > 0 && !defined(__CUDACC__)
/* Plain-double geometry for passes whose derivatives never reach it (crystal parameters only): the same
 * functions above compiled with no tangent directions (src/geometry_n0.c) over the primal table block, so that
 * no tangent is computed only to be zero. */
void db_geo_subpixel_n0(const void *block0, int fpixel, int spixel, int subS, int subF, int thick_tic, double pos[3],
                        double diffracted[3], double *airpath);
double db_geo_omega_n0(const void *block0, double airpath);
double db_geo_capture_n0(const void *block0, const double diffracted[3], int thick_tic);
void db_geo_scattering_n0(const void *block0, int source, const double diffracted[3], double S[3]);
double db_geo_polar_n0(const void *block0, int source, double diffracted[3]);
/* *out = v with no tangent, written in place (an assignment from a returned 12-direction vector is a 312-byte
 * stack copy in GCC's code) */
AD_INLINE void db_lift3(ad_vec3 *out, const double v[3])
{
    for (int k = 0; k < 3; k++) {
        out->c[k].v = v[k];
        AD_FOR(i) out->c[k].d[i] = AD_SPLAT(0.0);
    }
}
#endif

/* The ROUND, GAUSS and TOPHAT lattice factors at (dh, dk, dl) = (h, k, l) minus the nearest whole point. */
DB_COLD ad_num db_lattice_not_square(const db_tables *t, ad_num dh, ad_num dk, ad_num dl, db_pixel_flags *fl)
{
    (void)fl; /* read by db_decide on the host only */
    ad_num NaNbNc = ad_mul(ad_mul(t->Na, t->Nb), t->Nc);
    if (t->shape == DB_SHAPE_ROUND_K) {
        ad_num hrad = ad_add(ad_add(ad_mul(ad_mul(ad_mul(dh, dh), t->Na), t->Na), ad_mul(ad_mul(ad_mul(dk, dk), t->Nb), t->Nb)),
                             ad_mul(ad_mul(ad_mul(dl, dl), t->Nc), t->Nc));
        return ad_mul(ad_mul_d(NaNbNc, 0.723601254558268), ad_sinc3(ad_d_mul(DB_M_PI, ad_sqrt(ad_mul(hrad, t->fudge)))));
    }
    ad_vec3 dq;
    for (int i = 0; i < 3; i++)
        dq.c[i] = ad_add(ad_add(ad_mul(dh, t->astar.c[i]), ad_mul(dk, t->bstar.c[i])), ad_mul(dl, t->cstar.c[i]));
    ad_num r = ad_vec3_dot(dq, dq);
    r = ad_mul(ad_mul(ad_mul(ad_mul(ad_mul(ad_mul(r, t->Na), t->Na), t->Nb), t->Nb), t->Nc), t->Nc);
    if (t->shape == DB_SHAPE_GAUSS_K) return ad_mul(NaNbNc, ad_exp(ad_neg(ad_mul(ad_div_d(r, 0.63), t->fudge))));
    return ad_mul_d(NaNbNc, db_decide(fl, ad_mul(r, t->fudge).v < 0.3969) ? 1.0 : 0.0);
}

/* A sub-sample's geometry (position, unit direction, path length and, when asked, solid angle) computed one
 * sub-sample ahead by the same functions: the CPU's primal loop issues the next sub-pixel's (or the next pixel's
 * first) square root and divisions before this one's sines, which the processor then overlaps instead of waiting on
 * the chain: the same values, bit for bit. (Taking the scattering vector and polarization ahead as well measured no
 * faster.) */
typedef struct db_pregeo {
    ad_vec3 pos, diffracted;
    ad_num airpath, omega;
    int has_omega;
} db_pregeo;

AD_INLINE void db_pixel_pregeo(const db_tables *t, int fpixel, int spixel, int subS, int subF, int thick_tic,
                               int want_omega, db_pregeo *g)
{
    g->pos = db_subpixel_position(t, fpixel, spixel, subS, subF, thick_tic);
    g->diffracted = ad_vec3_unit(g->pos, &g->airpath);
    g->has_omega = want_omega;
    if (want_omega) g->omega = db_solid_angle(t, g->airpath);
}

/* a's value with no tangent when strip (a compile-time constant in db_pixel_value_impl's callers) */
AD_INLINE ad_num db_strip(ad_num a, int strip) { return strip ? ad_const(a.v) : a; }
AD_INLINE ad_vec3 db_strip3(ad_vec3 a, int strip)
{
    return strip ? ad_vec3_const(a.c[0].v, a.c[1].v, a.c[2].v) : a;
}

/* The value of one pixel before float rounding: r_e^2 fluence I / steps times the corrections. geo0, host only:
 * NULL, or the primal table block when no derivative reaches the geometry (see db_geo_subpixel_n0).
 * strip, a constant (db_pixel_value, db_pixel_value_geometry_constant): 1 drops the tangents of the geometry as soon
 * as they are computed, and those of Na, Nb and Nc, for a pass in which they are all zero (hdr.geometry_constant and
 * N_constant): the same values, and the compiler then knows the tangents of S, the solid angle, absorption,
 * polarization and N to be zero, so that none of them stays live across the phi and mosaic loops (the GPU's
 * 12-direction thread spilled them). */
AD_INLINE ad_num db_pixel_value_impl(const db_tables *t, const double *F, int fpixel, int spixel, db_pixel_flags *fl,
                                     const void *geo0, const int strip, const db_pregeo *pre, const int single,
                                     const int fjac)
{
    /* single, a constant: the caller has checked that the block has one layer, source, phi step and mosaic domain
     * (db_single_orientation), so the compiler drops those loops */
    const int thicksteps = single ? 1 : t->thicksteps, nsources = single ? 1 : t->nsources;
    const int nphi = single ? 1 : t->nphi, nmos = single ? 1 : t->nmos;
    const ad_vec3 *src_incident_unit = DB_TAB(t, t->off_src_incident_unit, ad_vec3);
    const ad_vec3 *lattice = DB_TAB(t, t->off_lattice, ad_vec3);
    const int *slot_normal = DB_TAB(t, t->hdr.off_slot_normal, int);
    const int *slot_first = DB_TAB(t, t->hdr.off_slot_first, int);
    const int os = t->oversample;
    ad_num I = t->I_bg;
    ad_num polar = ad_const(t->nopolar ? 1.0 : 0.0);
    ad_num omega = ad_const(0.0);
    ad_num capture = ad_const(0.0);
    int sample = 0;
    db_pregeo next[2]; /* the following sub-sample's geometry, taken ahead (pre: this pixel's first) */
    int next_slot = 0;
    const db_pregeo *geo_ahead = pre;
    fl->omega_sum = 0.0;
    fl->interp_tripped = 0;
#if !(AD_N > 0 && !defined(__CUDACC__))
    (void)geo0;
#endif
    for (int thick_tic = 0; thick_tic < thicksteps; ++thick_tic) {
        capture = ad_const(t->detector_thick == 0.0 ? 1.0 : 0.0);
        for (int subS = 0; subS < os; ++subS) {
            for (int subF = 0; subF < os; ++subF) {
                ad_vec3 pos, diffracted;
                ad_num airpath;
                const db_pregeo *ahead = geo_ahead;
#if AD_N > 0 && !defined(__CUDACC__)
                double dpl[3]; /* plain geometry: the diffracted direction the n0 functions carry on */
                if (geo0) {
                    double p3[3], ap;
                    db_geo_subpixel_n0(geo0, fpixel, spixel, subS, subF, thick_tic, p3, dpl, &ap);
                    db_lift3(&pos, p3);
                    db_lift3(&diffracted, dpl);
                    airpath = ad_const(ap);
                } else
#endif
                if (ahead) {
                    pos = ahead->pos;
                    diffracted = db_strip3(ahead->diffracted, strip);
                    airpath = db_strip(ahead->airpath, strip);
                } else {
                    pos = db_subpixel_position(t, fpixel, spixel, subS, subF, thick_tic);
                    diffracted = db_strip3(ad_vec3_unit(pos, &airpath), strip);
                    airpath = db_strip(airpath, strip);
                }
                if (db_decide(fl, omega.v == 0.0 || t->os_omega)) {
#if AD_N > 0 && !defined(__CUDACC__)
                    if (geo0)
                        omega = ad_const(db_geo_omega_n0(geo0, airpath.v));
                    else
#endif
                        omega = db_strip(ahead && ahead->has_omega ? ahead->omega : db_solid_angle(t, airpath), strip);
                }
                geo_ahead = NULL;
                if (pre) {
                    /* the next sub-sample of this pixel, in loop order (its solid angle only if it will be used) */
                    int nS = subS, nF = subF + 1, nT = thick_tic;
                    if (nF == os) {
                        nF = 0;
                        if (++nS == os) {
                            nS = 0;
                            ++nT;
                        }
                    }
                    if (nT < thicksteps) {
                        db_pixel_pregeo(t, fpixel, spixel, nS, nF, nT, t->os_omega, &next[next_slot]);
                        geo_ahead = &next[next_slot];
                        next_slot ^= 1;
                    }
                }
                fl->omega_sum += omega.v;
                if (db_decide(fl, capture.v == 0.0 || t->os_thick)) {
#if AD_N > 0 && !defined(__CUDACC__)
                    if (geo0)
                        capture = ad_const(db_geo_capture_n0(geo0, dpl, thick_tic));
                    else
#endif
                        capture = db_strip(db_capture_fraction(t, diffracted, thick_tic), strip);
                }
                for (int source = 0; source < nsources; ++source, ++sample) {
                    ad_vec3 S;
#if AD_N > 0 && !defined(__CUDACC__)
                    if (geo0) {
                        double s3[3];
                        db_geo_scattering_n0(geo0, source, dpl, s3);
                        db_lift3(&S, s3);
                    } else
#endif
                        S = db_strip3(db_scattering_vector(t, source, diffracted), strip);
                    if (t->dmin > 0.0) {
                        double stol = 0.5 * ad_vec3_norm(S).v;
                        if (db_decide(fl, stol > 0.0 && t->dmin > 0.5 / stol)) continue;
                    }
                    if (db_decide(fl, polar.v == 0.0 || t->os_polar)) {
#if AD_N > 0 && !defined(__CUDACC__)
                        if (geo0) {
                            polar = ad_const(db_geo_polar_n0(geo0, source, dpl));
                            db_lift3(&diffracted, dpl);
                        } else
#endif
                        {
                            polar = db_strip(db_polarization(t->polarization, src_incident_unit[source], diffracted,
                                                             t->polar_axis), strip);
                            /* the reference unitizes the diffracted vector in place here: this source's S is
                             * already made, but later sources of this sub-pixel see the re-unitized vector */
                            diffracted = db_strip3(ad_vec3_unit(diffracted, 0), strip);
                        }
                    }
                    if (fl->probe_first) {
                        fl->first_sample = sample;
                        return I;
                    }
                    const int *slots = (sample == fl->first_sample) ? slot_first : slot_normal;
                    for (int phi_tic = 0; phi_tic < nphi; ++phi_tic) {
                        const ad_vec3 *lat_phi = lattice + (size_t)slots[phi_tic] * nmos * 3;
                        for (int mos = 0; mos < nmos; ++mos) {
                            const ad_vec3 *lat = lat_phi + 3 * mos;
                            const int S_const = strip || t->S_constant;
                            ad_num h = S_const ? db_dot_const_b(&lat[0], &S) : ad_vec3_dot_p(&lat[0], &S);
                            ad_num k = S_const ? db_dot_const_b(&lat[1], &S) : ad_vec3_dot_p(&lat[1], &S);
                            ad_num l = S_const ? db_dot_const_b(&lat[2], &S) : ad_vec3_dot_p(&lat[2], &S);
                            double h0 = db_decide(fl, (int)ceil(h.v - 0.5));
                            double k0 = db_decide(fl, (int)ceil(k.v - 0.5));
                            double l0 = db_decide(fl, (int)ceil(l.v - 0.5));
                            ad_num F_latt = ad_const(1.0);
                            if (t->shape == DB_SHAPE_SQUARE_K) {
                                /* 1.0 * x is x exactly: the first factor is taken as it is */
                                int first = 1;
                                if (t->Na.v > 1) {
                                    F_latt = db_lattice_axis(h, h0, db_strip(t->Na, strip), t->lattice_dh);
                                    first = 0;
                                }
                                if (t->Nb.v > 1) {
                                    ad_num f = db_lattice_axis(k, k0, db_strip(t->Nb, strip), t->lattice_dh);
                                    F_latt = first ? f : ad_mul(F_latt, f);
                                    first = 0;
                                }
                                if (t->Nc.v > 1) {
                                    ad_num f = db_lattice_axis(l, l0, db_strip(t->Nc, strip), t->lattice_dh);
                                    F_latt = first ? f : ad_mul(F_latt, f);
                                }
                            } else {
                                F_latt = db_lattice_not_square(t, ad_sub_d(h, h0), ad_sub_d(k, k0), ad_sub_d(l, l0), fl);
                            }
                            if (db_decide(fl, F_latt.v == 0.0 && t->water_size == 0.0)) continue;
                            const db_ftable *ft = &t->ftab;
                            ad_num F_cell = ad_const(ft->default_F);
                            int interpolated = 0;
                            size_t F_at = (size_t)-1; /* the table entry used, for the F-Jacobian */
                            int hf = 0, kf = 0, lf = 0;
                            if (fl->interpolate) {
                                if (db_decide(fl, (h.v - ft->h_min + 3) > ft->h_range || (h.v - 2) < ft->h_min ||
                                                      (k.v - ft->k_min + 3) > ft->k_range || (k.v - 2) < ft->k_min ||
                                                      (l.v - ft->l_min + 3) > ft->l_range || (l.v - 2) < ft->l_min)) {
                                    fl->interpolate = 0; /* the reference switches it off for the rest of the run */
                                    fl->interp_tripped = 1;
                                } else {
                                    hf = db_decide(fl, (int)ad_floor(h));
                                    kf = db_decide(fl, (int)ad_floor(k));
                                    lf = db_decide(fl, (int)ad_floor(l));
                                    F_cell = db_tricubic(ft, F, hf, kf, lf, h, k, l);
                                    interpolated = 1;
                                }
                            }
                            if (!fl->interpolate) {
                                if (ft->hkls && h0 <= ft->h_max && h0 >= ft->h_min && k0 <= ft->k_max && k0 >= ft->k_min &&
                                    l0 <= ft->l_max && l0 >= ft->l_min) {
                                    size_t idx = ((size_t)((int)h0 - ft->h_min) * (ft->k_range + 1) + (size_t)((int)k0 - ft->k_min)) *
                                                     (ft->l_range + 1) + (size_t)((int)l0 - ft->l_min);
                                    F_cell = ad_const(F[idx]);
                                    F_at = idx;
                                } else {
                                    F_cell = ad_const(ft->default_F);
                                }
                            }
                            /* ((F_cell F_cell) F_latt) F_latt; a table value of F carries no tangent */
                            ad_num FF = interpolated ? ad_mul(F_cell, F_cell) : ad_const(F_cell.v * F_cell.v);
                            ad_num term = ad_mul(interpolated ? ad_mul(FF, F_latt) : ad_d_mul(FF.v, F_latt), F_latt);
                            I = ad_add(I, term);
#if !defined(__CUDACC__)
                            if (fjac) {
                                const double dF = (2.0 * F_cell.v * F_latt.v) * F_latt.v; /* d term / d F_cell */
                                if (interpolated) db_fjac_add_tricubic(fl->fjac, ft, hf, kf, lf, h.v, k.v, l.v, dF);
                                else if (F_at != (size_t)-1) db_fjac_add(fl->fjac, F_at, dF);
                            }
                            if (fl->tracer) {
                                db_trace_sample r = {thick_tic, subS, subF, source, phi_tic, mos, slots[phi_tic],
                                                     lat, h, k, l, F_latt, F_cell, term, pos, S};
                                fl->tracer->sample(fl->tracer->ctx, &r);
                            }
#endif
                            if (t->os_thick) I = ad_mul(I, capture);
                            if (t->os_polar) I = ad_mul(I, polar);
                            if (t->os_omega) I = ad_mul(I, omega);
#if !defined(__CUDACC__)
                            if (fjac) {
                                /* the reference multiplies the running sum, and so every entry so far */
                                if (t->os_thick) db_fjac_scale(fl->fjac, capture.v);
                                if (t->os_polar) db_fjac_scale(fl->fjac, polar.v);
                                if (t->os_omega) db_fjac_scale(fl->fjac, omega.v);
                            }
#endif
                        }
                    }
                }
            }
        }
    }
    ad_num value = t->steps_inverse != 0.0 ? ad_mul_d(ad_mul(t->r_e_sqr_fluence, I), t->steps_inverse)
                                           : ad_div_d(ad_mul(t->r_e_sqr_fluence, I), t->steps);
    if (!t->os_thick) value = ad_mul(value, capture);
    if (!t->os_polar) value = ad_mul(value, polar);
    if (!t->os_omega) value = ad_mul(value, omega);
#if !defined(__CUDACC__)
    if (fjac) {
        db_fjac_buf *b = fl->fjac->buf;
        for (size_t j = fl->fjac->start; j < b->n; j++) {
            double d = t->steps_inverse != 0.0 ? (t->r_e_sqr_fluence.v * b->val[j]) * t->steps_inverse
                                               : (t->r_e_sqr_fluence.v * b->val[j]) / t->steps;
            if (!t->os_thick) d *= capture.v;
            if (!t->os_polar) d *= polar.v;
            if (!t->os_omega) d *= omega.v;
            b->val[j] = d;
        }
    }
    if (fl->tracer) {
        db_trace_end r = {polar, omega, capture, value, I};
        fl->tracer->end(fl->tracer->ctx, &r);
    }
#endif
    return value;
}

AD_INLINE ad_num db_pixel_value(const db_tables *t, const double *F, int fpixel, int spixel, db_pixel_flags *fl,
                                const void *geo0)
{
    return db_pixel_value_impl(t, F, fpixel, spixel, fl, geo0, 0, NULL, 0, 0);
}

/* The same with the pixel's first sub-sample geometry given (db_pixel_pregeo of this pixel): the CPU's primal loop. */
AD_INLINE ad_num db_pixel_value_ahead(const db_tables *t, const double *F, int fpixel, int spixel, db_pixel_flags *fl,
                                      const db_pregeo *pre)
{
    return db_pixel_value_impl(t, F, fpixel, spixel, fl, NULL, 0, pre, 0, 0);
}

#if !defined(__CUDACC__)
/* db_pixel_value and db_pixel_value_ahead with the structure-factor Jacobian (fl->fjac set): separate instances,
 * so that the runs without it carry none of its tests in their inner loops (7% of a still's primal run) */
AD_INLINE ad_num db_pixel_value_fjac(const db_tables *t, const double *F, int fpixel, int spixel, db_pixel_flags *fl,
                                     const void *geo0)
{
    return db_pixel_value_impl(t, F, fpixel, spixel, fl, geo0, 0, NULL, 0, 1);
}

AD_INLINE ad_num db_pixel_value_ahead_fjac(const db_tables *t, const double *F, int fpixel, int spixel,
                                           db_pixel_flags *fl, const db_pregeo *pre)
{
    return db_pixel_value_impl(t, F, fpixel, spixel, fl, NULL, 0, pre, 0, 1);
}

AD_INLINE ad_num db_pixel_value_ahead_single_fjac(const db_tables *t, const double *F, int fpixel, int spixel,
                                                  db_pixel_flags *fl, const db_pregeo *pre)
{
    return db_pixel_value_impl(t, F, fpixel, spixel, fl, NULL, 0, pre, 1, 1);
}
#endif

/* One layer, source, phi step and mosaic domain: the common still, unoriented-spread image. */
AD_INLINE int db_single_orientation(const db_tables *t)
{
    return t->thicksteps == 1 && t->nsources == 1 && t->nphi == 1 && t->nmos == 1;
}

/* db_pixel_value_ahead for a block with db_single_orientation: the same values, without those loops. */
AD_INLINE ad_num db_pixel_value_ahead_single(const db_tables *t, const double *F, int fpixel, int spixel,
                                             db_pixel_flags *fl, const db_pregeo *pre)
{
    return db_pixel_value_impl(t, F, fpixel, spixel, fl, NULL, 0, pre, 1, 0);
}

/* The same for a pass whose table block has hdr.geometry_constant and N_constant set (the GPU thread's; the CPU
 * renderer reaches the same by geo0): equal values, and the same zero tangents. */
AD_INLINE ad_num db_pixel_value_geometry_constant(const db_tables *t, const double *F, int fpixel, int spixel,
                                                  db_pixel_flags *fl)
{
    return db_pixel_value_impl(t, F, fpixel, spixel, fl, 0, 1, NULL, 0, 0);
}

#endif
