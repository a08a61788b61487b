/* config_setters.c: the API's field-by-field setters (db_config_set_*): each formats its flag and parses it
 * (config_flags.c), so that a setter gives the bits the command line gives, with the same checks and messages. */
#include "config.h"
#include "error.h"

#include <stdio.h>
#include <string.h>

/* ---- field-by-field setters: formatted exactly (%.17g round-trips a double) and parsed as the flags are ---- */
static int set_flag(db_config *cfg, db_error *err, const char *flag, int n, const double *v)
{
    if (!cfg) return db_fail(err, DB_ERR_ARGUMENT, "no configuration (NULL) to set %s in", flag);
    char buf[8][40];
    const char *argv[9];
    argv[0] = flag;
    for (int k = 0; k < n; k++) {
        snprintf(buf[k], sizeof buf[k], "%.17g", v[k]);
        argv[k + 1] = buf[k];
    }
    return db_config_parse_args(cfg, n + 1, argv, err);
}

static int set_string(db_config *cfg, db_error *err, const char *flag, const char *value)
{
    if (!cfg) return db_fail(err, DB_ERR_ARGUMENT, "no configuration (NULL) to set %s in", flag);
    const char *argv[2] = {flag, value};
    return db_config_parse_args(cfg, value ? 2 : 1, argv, err);
}
/* the file setters: a path is required (set_string's NULL value serves the flags that take none) */
static int set_path(db_config *cfg, db_error *err, const char *flag, const char *path)
{
    if (!path) return db_fail(err, DB_ERR_ARGUMENT, "%s expects a file name, got NULL", flag);
    return set_string(cfg, err, flag, path);
}

int db_config_set_cell(db_config *cfg, double a, double b, double c, double al, double be, double ga, db_error *err)
{
    double v[6] = {a, b, c, al, be, ga};
    return set_flag(cfg, err, "-cell", 6, v);
}
int db_config_set_matrix_file(db_config *cfg, const char *path, db_error *err) { return set_path(cfg, err, "-mat", path); }
int db_config_set_misset(db_config *cfg, double rx, double ry, double rz, db_error *err)
{
    double v[3] = {rx, ry, rz};
    return set_flag(cfg, err, "-misset", 3, v);
}
int db_config_set_cells(db_config *cfg, double Na, double Nb, double Nc, db_error *err)
{
    int rc = set_flag(cfg, err, "-Na", 1, &Na);
    if (!rc) rc = set_flag(cfg, err, "-Nb", 1, &Nb);
    if (!rc) rc = set_flag(cfg, err, "-Nc", 1, &Nc);
    return rc;
}
int db_config_set_hkl_file(db_config *cfg, const char *path, db_error *err) { return set_path(cfg, err, "-hkl", path); }
int db_config_set_default_F(db_config *cfg, double F, db_error *err) { return set_flag(cfg, err, "-default_F", 1, &F); }
int db_config_set_wavelength(db_config *cfg, double A, db_error *err) { return set_flag(cfg, err, "-lambda", 1, &A); }
int db_config_set_detector(db_config *cfg, int fpixels, int spixels, double pixel_mm, double distance_mm, db_error *err)
{
    double f = fpixels, s = spixels;
    int rc = set_flag(cfg, err, "-detpixels_f", 1, &f);
    if (!rc) rc = set_flag(cfg, err, "-detpixels_s", 1, &s);
    if (!rc) rc = set_flag(cfg, err, "-pixel", 1, &pixel_mm);
    if (!rc) rc = set_flag(cfg, err, "-distance", 1, &distance_mm);
    return rc;
}
int db_config_set_beam_center(db_config *cfg, double x, double y, db_error *err)
{
    int rc = set_flag(cfg, err, "-Xbeam", 1, &x);
    if (!rc) rc = set_flag(cfg, err, "-Ybeam", 1, &y);
    return rc;
}
int db_config_set_convention(db_config *cfg, const char *name, db_error *err)
{
    static const char *const known[] = {"mosflm", "denzo", "adxv", "xds", "dials"};
    for (size_t k = 0; k < sizeof known / sizeof known[0]; k++)
        if (name && strcmp(name, known[k]) == 0) {
            char flag[16];
            snprintf(flag, sizeof flag, "-%s", known[k]);
            return set_string(cfg, err, flag, NULL);
        }
    return db_fail(err, DB_ERR_ARGUMENT, "unknown convention '%s' (expected mosflm, denzo, adxv, xds or dials)", name ? name : "(null)");
}
int db_config_set_phi(db_config *cfg, double phi0, double osc, int steps, db_error *err)
{
    double st = steps;
    int rc = set_flag(cfg, err, "-phi", 1, &phi0);
    if (!rc) rc = set_flag(cfg, err, "-osc", 1, &osc);
    if (!rc) rc = set_flag(cfg, err, "-phisteps", 1, &st);
    return rc;
}
int db_config_set_mosaic(db_config *cfg, double spread, int domains, long seed, db_error *err)
{
    double d = domains, sd = (double)seed;
    int rc = set_flag(cfg, err, "-mosaic", 1, &spread);
    if (!rc) rc = set_flag(cfg, err, "-mosaic_dom", 1, &d);
    if (!rc) rc = set_flag(cfg, err, "-mosaic_seed", 1, &sd);
    return rc;
}
int db_config_set_oversample(db_config *cfg, int n, db_error *err)
{
    double v = n;
    return set_flag(cfg, err, "-oversample", 1, &v);
}
int db_config_set_roi(db_config *cfg, int xmin, int xmax, int ymin, int ymax, db_error *err)
{
    double v[4] = {xmin, xmax, ymin, ymax};
    return set_flag(cfg, err, "-roi", 4, v);
}
int db_config_set_noise_seed(db_config *cfg, long seed, db_error *err)
{
    double v = (double)seed;
    return set_flag(cfg, err, "-seed", 1, &v);
}
int db_config_set_phi_carryover(db_config *cfg, int on, db_error *err)
{
    return set_string(cfg, err, "-phi_carryover", on ? "on" : "off");
}
