/* test_lm.c: the Levenberg-Marquardt driver (refine/lm.c) on NIST's certified nonlinear regression problems, and
 * the Poisson deviance's moments (refine/objective.c).
 *  - NIST StRD nonlinear regression (tests/nist/, README there): each .dat file is parsed at run time (starting
 *    values, certified values and standard deviations, residual sum of squares, data), its model and analytic
 *    Jacobian are written here in C (the Jacobians checked against central differences), and db_lm_fit
 *    (least squares, unit weights, no groups) is started from both of NIST's starting points. Asserted: every
 *    parameter within 1e-6 relative of its certified value, the residual sum of squares 2 cost within 1e-6,
 *    and the standard deviations within 1e-4 (the reasons are at NIST_PARAM_RTOL and below). All 27 problems
 *    from both starts, but BoxBOD from start 1, which no LM without restarts solves (the table at the end says
 *    why), and Lanczos1's RSS, which is rounding noise (at test_nist_case);
 *  - the .dat parser itself refuses malformed files with a message that says where and what;
 *  - db_poisson_deviance_moments against a brute-force sum over the Poisson mass written here;
 *  - a parameter whose column is zero up to rounding is refused by name. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "dualbragg.h"
#include "lm.h"
#include "test_util.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef DB_NIST_DIR
#error "DB_NIST_DIR (the folder of the NIST StRD .dat files, a string) must be defined"
#endif

/* NIST gives the certified values to 11 significant digits, for testing the numerics of a procedure (most of
 * them are not statistically significant). A double-precision solver is commonly held to a log relative error
 * (LRE, McCullough's -log10 |x - c| / |c|) of at least 6 on every parameter, i.e. agreement to 6 significant
 * digits; the same here for the residual sum of squares. (This driver gets 6.4 and more on every case run.) */
#define NIST_PARAM_RTOL 1e-6
#define NIST_RSS_RTOL 1e-6
/* The certified standard deviations are sqrt(RSS / (n - p)) sqrt(diag((J^T J)^-1)) at the certified optimum;
 * db_lm_fit's sigma_x is the unscaled sqrt(diag((J^T J)^-1)) (LSQ, unit weights), so the test scales it by
 * sqrt(2 cost / (n - p)). It is computed from J at the fitted x, which is held only to 1e-6 of the certified x
 * (above): J's columns move by about that times the model's curvature, and inverting J^T J can amplify this by
 * its condition number, so the sd are asserted to 1e-4 (measured: 6.2 digits or more on every case, over OpenBLAS's
 * Prescott to SkylakeX kernels). That is still orders below what a wrong formula gives (a missing sqrt(RSS /
 * (n - p)), a factor 2 from the cost being 0.5 sum r^2, n instead of n - p: 7e-3 or more on these problems). */
#define NIST_SD_RTOL 1e-4

#define NIST_MAX_P 9
#define NIST_MAX_PRED 2
#define NIST_MAX_LINES 2000
#define NIST_LINE_LEN 512

static const double PI = 3.141592653589793238462643383279;

/* ---------------------------------------------------------------------------------------------------------------
 * The .dat parser. A NIST StRD nonlinear file says in its "File Format" section on which lines its starting
 * values (one line per parameter: "bK = start1 start2 certified sd"), certified values (those lines, then the
 * residual sum of squares, residual standard deviation, degrees of freedom and number of observations) and data
 * (one line per observation: y, then the predictors named on the "Data:" line above it) are. */

typedef struct nist_data {
    char name[64];
    int p, npred;
    long n;
    double start[2][NIST_MAX_P], cert[NIST_MAX_P], sd[NIST_MAX_P];
    double rss, rsd;
    long dof;
    double *y, *x; /* y[n], x[i*npred + k] */
} nist_data;

static void nist_free(nist_data *d)
{
    free(d->y);
    free(d->x);
    d->y = d->x = NULL;
}

typedef struct line_set {
    char **line; /* line[0] is the file's line 1 */
    int count;
} line_set;

static void lines_free(line_set *ls)
{
    for (int i = 0; i < ls->count; i++)
        free(ls->line[i]);
    free(ls->line);
    ls->line = NULL;
    ls->count = 0;
}

/* Splits s (modified) into whitespace-separated tokens; returns their count (at most max). */
static int tokenize(char *s, char **tok, int max)
{
    int k = 0;
    char *save = NULL;
    for (char *t = strtok_r(s, " \t", &save); t; t = strtok_r(NULL, " \t", &save)) {
        if (k == max) return max + 1;
        tok[k++] = t;
    }
    return k;
}

/* A whole token as a finite double (NIST writes 2.3894212918E+02, 10.07E0, 0.0001, -0.00001). */
static int parse_number(const char *t, double *v)
{
    char *end;
    errno = 0;
    *v = strtod(t, &end);
    return end != t && *end == '\0' && errno == 0 && isfinite(*v);
}

#define PARSE_FAIL(...)                                                                                            \
    do {                                                                                                           \
        snprintf(msg, msglen, __VA_ARGS__);                                                                        \
        return -1;                                                                                                 \
    } while (0)

static int read_lines(const char *path, line_set *ls, char *msg, size_t msglen)
{
    ls->line = NULL;
    ls->count = 0;
    FILE *f = fopen(path, "r");
    if (!f) PARSE_FAIL("%s: cannot open: %s", path, strerror(errno));
    ls->line = calloc(NIST_MAX_LINES, sizeof *ls->line);
    char buf[NIST_LINE_LEN + 2];
    while (fgets(buf, sizeof buf, f)) {
        size_t len = strlen(buf);
        if (len > NIST_LINE_LEN) {
            fclose(f);
            PARSE_FAIL("%s:%d: line longer than %d characters", path, ls->count + 1, NIST_LINE_LEN);
        }
        while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
            buf[--len] = '\0';
        if (ls->count == NIST_MAX_LINES) {
            fclose(f);
            PARSE_FAIL("%s: more than %d lines", path, NIST_MAX_LINES);
        }
        ls->line[ls->count] = malloc(len + 1);
        memcpy(ls->line[ls->count], buf, len + 1);
        ls->count++;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) PARSE_FAIL("%s: read error", path);
    return 0;
}

/* "<key> (lines A to B)" anywhere in the File Format section (the first 12 lines). */
static int find_range(const line_set *ls, const char *path, const char *key, int *a, int *b, char *msg,
                      size_t msglen)
{
    for (int i = 0; i < ls->count && i < 12; i++) {
        const char *k = strstr(ls->line[i], key);
        if (!k) continue;
        const char *r = strstr(k, "(lines");
        char tail;
        if (!r || sscanf(r, "(lines %d to %d %c", a, b, &tail) != 3 || tail != ')')
            PARSE_FAIL("%s:%d: \"%s\" without \"(lines A to B)\"", path, i + 1, key);
        if (*a < 1 || *b < *a || *b > ls->count)
            PARSE_FAIL("%s:%d: %s lines %d to %d outside the file's %d lines", path, i + 1, key, *a, *b, ls->count);
        return 0;
    }
    PARSE_FAIL("%s: no \"%s (lines A to B)\" in the File Format section", path, key);
}

/* The number after "<key>" on one of lines a..b (1-based); integral when want_int. */
static int find_value(const line_set *ls, const char *path, int a, int b, const char *key, double *v, int want_int,
                      char *msg, size_t msglen)
{
    for (int i = a - 1; i < b; i++) {
        const char *k = strstr(ls->line[i], key);
        if (!k) continue;
        char copy[NIST_LINE_LEN + 1], *tok[4];
        snprintf(copy, sizeof copy, "%s", k + strlen(key));
        if (tokenize(copy, tok, 3) != 1 || !parse_number(tok[0], v))
            PARSE_FAIL("%s:%d: \"%s\" is not followed by exactly one number", path, i + 1, key);
        if (want_int && (*v != floor(*v) || *v < 0 || *v > 1e9))
            PARSE_FAIL("%s:%d: \"%s\" %s is not a count", path, i + 1, key, tok[0]);
        return 0;
    }
    PARSE_FAIL("%s: no \"%s\" among the certified values (lines %d to %d)", path, key, a, b);
}

static int nist_parse(const char *path, nist_data *d, char *msg, size_t msglen)
{
    memset(d, 0, sizeof *d);
    line_set ls;
    if (read_lines(path, &ls, msg, msglen)) {
        lines_free(&ls);
        return -1;
    }
    int rc = -1;
#undef PARSE_FAIL
#define PARSE_FAIL(...)                                                                                            \
    do {                                                                                                           \
        snprintf(msg, msglen, __VA_ARGS__);                                                                        \
        goto done;                                                                                                 \
    } while (0)
    if (ls.count < 1 || strncmp(ls.line[0], "NIST/ITL StRD", 13) != 0)
        PARSE_FAIL("%s:1: not a NIST StRD file (no \"NIST/ITL StRD\" header)", path);
    {
        char copy[NIST_LINE_LEN + 1], *tok[8];
        snprintf(copy, sizeof copy, "%s", ls.count > 1 ? ls.line[1] : "");
        if (tokenize(copy, tok, 7) < 3 || strcmp(tok[0], "Dataset") != 0 || strcmp(tok[1], "Name:") != 0)
            PARSE_FAIL("%s:2: no \"Dataset Name:\"", path);
        snprintf(d->name, sizeof d->name, "%s", tok[2]);
    }
    int sa, sb, ca, cb, da, db;
    if (find_range(&ls, path, "Starting Values", &sa, &sb, msg, msglen) ||
        find_range(&ls, path, "Certified Values", &ca, &cb, msg, msglen) ||
        find_range(&ls, path, "Data ", &da, &db, msg, msglen))
        goto done;
    if (ca != sa || cb <= sb || da <= cb + 1)
        PARSE_FAIL("%s: the line ranges (start %d-%d, certified %d-%d, data %d-%d) are not NIST's layout", path, sa,
                   sb, ca, cb, da, db);
    d->p = sb - sa + 1;
    if (d->p > NIST_MAX_P) PARSE_FAIL("%s: %d parameters, more than %d", path, d->p, NIST_MAX_P);
    /* the model's stated parameter count: "N Parameters (b1 to bN)" on the line after "Model:" */
    {
        int stated = -1;
        for (int i = 0; i + 1 < ls.count && i < sa; i++)
            if (strncmp(ls.line[i], "Model:", 6) == 0 && sscanf(ls.line[i + 1], " %d Parameters", &stated) != 1)
                PARSE_FAIL("%s:%d: no \"N Parameters\" after \"Model:\"", path, i + 2);
        if (stated != d->p)
            PARSE_FAIL("%s: the model states %d parameters, the starting values (lines %d to %d) have %d", path,
                       stated, sa, sb, d->p);
    }
    for (int j = 0; j < d->p; j++) {
        int ln = sa + j;
        char copy[NIST_LINE_LEN + 1], *tok[8], want[16];
        snprintf(copy, sizeof copy, "%s", ls.line[ln - 1]);
        snprintf(want, sizeof want, "b%d", j + 1);
        int nt = tokenize(copy, tok, 7);
        if (nt != 6 || strcmp(tok[0], want) != 0 || strcmp(tok[1], "=") != 0)
            PARSE_FAIL("%s:%d: expected \"%s = start1 start2 certified sd\", got \"%s\"", path, ln, want,
                       ls.line[ln - 1]);
        double v[4];
        for (int k = 0; k < 4; k++)
            if (!parse_number(tok[2 + k], &v[k]))
                PARSE_FAIL("%s:%d: \"%s\" is not a number", path, ln, tok[2 + k]);
        d->start[0][j] = v[0];
        d->start[1][j] = v[1];
        d->cert[j] = v[2];
        d->sd[j] = v[3];
        if (!(v[3] > 0.0)) PARSE_FAIL("%s:%d: standard deviation %s is not positive", path, ln, tok[5]);
    }
    double nobs, dof;
    if (find_value(&ls, path, sb + 1, cb, "Residual Sum of Squares:", &d->rss, 0, msg, msglen) ||
        find_value(&ls, path, sb + 1, cb, "Residual Standard Deviation:", &d->rsd, 0, msg, msglen) ||
        find_value(&ls, path, sb + 1, cb, "Degrees of Freedom:", &dof, 1, msg, msglen) ||
        find_value(&ls, path, sb + 1, cb, "Number of Observations:", &nobs, 1, msg, msglen))
        goto done;
    d->n = (long)nobs;
    d->dof = (long)dof;
    if (d->n != db - da + 1)
        PARSE_FAIL("%s: %ld observations stated, but the data lines %d to %d hold %d", path, d->n, da, db,
                   db - da + 1);
    /* Rat43.dat states 9 degrees of freedom for its 15 observations and 4 parameters, a misprint: its residual
     * standard deviation (and the standard deviations, test_nist_case) are those of n - p = 11, checked below */
    if (d->dof != d->n - d->p && !(strcmp(d->name, "Rat43") == 0 && d->dof == 9 && d->n - d->p == 11))
        PARSE_FAIL("%s: %ld degrees of freedom stated, n - p = %ld", path, d->dof, d->n - d->p);
    d->dof = d->n - d->p;
    /* the residual standard deviation is sqrt(RSS / (n - p)), both given to 11 digits */
    if (!(fabs(d->rsd * d->rsd * (double)d->dof - d->rss) <= 1e-9 * d->rss))
        PARSE_FAIL("%s: residual standard deviation %.10e is not sqrt(RSS %.10e / (n - p = %ld))", path, d->rsd,
                   d->rss, d->dof);
    if (!(d->rss >= 0.0)) PARSE_FAIL("%s: negative residual sum of squares", path);
    /* the column header: "Data:  y  x" or "Data:  y  x1  x2" */
    {
        char copy[NIST_LINE_LEN + 1], *tok[8];
        snprintf(copy, sizeof copy, "%s", ls.line[da - 2]);
        int nt = tokenize(copy, tok, 7);
        if (nt < 3 || strcmp(tok[0], "Data:") != 0 || strcmp(tok[1], "y") != 0)
            PARSE_FAIL("%s:%d: expected the column header \"Data:  y  x...\" above the data", path, da - 1);
        d->npred = nt - 2;
        if (d->npred > NIST_MAX_PRED)
            PARSE_FAIL("%s:%d: %d predictors, more than %d", path, da - 1, d->npred, NIST_MAX_PRED);
    }
    d->y = malloc((size_t)d->n * sizeof *d->y);
    d->x = malloc((size_t)d->n * (size_t)d->npred * sizeof *d->x);
    for (long i = 0; i < d->n; i++) {
        int ln = da + (int)i;
        char copy[NIST_LINE_LEN + 1], *tok[8];
        snprintf(copy, sizeof copy, "%s", ls.line[ln - 1]);
        int nt = tokenize(copy, tok, 7);
        if (nt != 1 + d->npred)
            PARSE_FAIL("%s:%d: expected %d numbers (y and %d predictor%s), got %d: \"%s\"", path, ln, 1 + d->npred,
                       d->npred, d->npred > 1 ? "s" : "", nt, ls.line[ln - 1]);
        for (int k = 0; k <= d->npred; k++) {
            double v;
            if (!parse_number(tok[k], &v)) PARSE_FAIL("%s:%d: \"%s\" is not a number", path, ln, tok[k]);
            if (k == 0)
                d->y[i] = v;
            else
                d->x[i * d->npred + k - 1] = v;
        }
    }
    for (int i = db; i < ls.count; i++) {
        char copy[NIST_LINE_LEN + 1], *tok[2];
        snprintf(copy, sizeof copy, "%s", ls.line[i]);
        if (tokenize(copy, tok, 1) != 0)
            PARSE_FAIL("%s:%d: text after the last data line (%d): \"%s\"", path, i + 1, db, ls.line[i]);
    }
    rc = 0;
done:
    lines_free(&ls);
    if (rc) nist_free(d);
    return rc;
#undef PARSE_FAIL
}

/* What a test has loaded or written, released by the teardown also when an assertion ends the test early. */
static nist_data LOADED;
static char *PARSER_TEXT;
static char PARSER_DIR[64], PARSER_FILE[128];

static int release(void **state)
{
    (void)state;
    nist_free(&LOADED);
    free(PARSER_TEXT);
    PARSER_TEXT = NULL;
    if (PARSER_FILE[0]) unlink(PARSER_FILE);
    if (PARSER_DIR[0]) rmdir(PARSER_DIR);
    PARSER_FILE[0] = PARSER_DIR[0] = '\0';
    return 0;
}

static void nist_load(const char *name, nist_data *d)
{
    nist_free(d);
    char path[1024], msg[1024];
    snprintf(path, sizeof path, "%s/%s.dat", DB_NIST_DIR, name);
    if (nist_parse(path, d, msg, sizeof msg)) fail_msg("%s", msg);
    if (strcmp(d->name, name) != 0) fail_msg("%s: Dataset Name is %s, not %s", path, d->name, name);
}

/* ---------------------------------------------------------------------------------------------------------------
 * The models, as the .dat files state them, with their analytic gradients g[j] = d f / d b_j (g may be NULL).
 * Each returns f at one observation with predictors x[0..npred-1]. */

typedef double (*model_fn)(const double *b, const double *x, double *g);

/* y = b1*(1-exp[-b2*x]) (Misra1a, BoxBOD) */
static double m_exp_rise(const double *b, const double *x, double *g)
{
    double e = exp(-b[1] * x[0]);
    if (g) {
        g[0] = 1.0 - e;
        g[1] = b[0] * x[0] * e;
    }
    return b[0] * (1.0 - e);
}

/* y = b1 * (1-(1+b2*x/2)**(-2)) */
static double m_misra1b(const double *b, const double *x, double *g)
{
    double u = 1.0 + 0.5 * b[1] * x[0];
    double u2 = 1.0 / (u * u);
    if (g) {
        g[0] = 1.0 - u2;
        g[1] = b[0] * x[0] * u2 / u;
    }
    return b[0] * (1.0 - u2);
}

/* y = b1 * (1-(1+2*b2*x)**(-.5)) */
static double m_misra1c(const double *b, const double *x, double *g)
{
    double u = 1.0 + 2.0 * b[1] * x[0];
    double r = 1.0 / sqrt(u);
    if (g) {
        g[0] = 1.0 - r;
        g[1] = b[0] * x[0] * r / u;
    }
    return b[0] * (1.0 - r);
}

/* y = b1*b2*x*((1+b2*x)**(-1)) */
static double m_misra1d(const double *b, const double *x, double *g)
{
    double u = 1.0 + b[1] * x[0];
    if (g) {
        g[0] = b[1] * x[0] / u;
        g[1] = b[0] * x[0] / (u * u);
    }
    return b[0] * b[1] * x[0] / u;
}

/* y = exp[-b1*x]/(b2+b3*x) (Chwirut1, Chwirut2) */
static double m_chwirut(const double *b, const double *x, double *g)
{
    double den = b[1] + b[2] * x[0];
    double f = exp(-b[0] * x[0]) / den;
    if (g) {
        g[0] = -x[0] * f;
        g[1] = -f / den;
        g[2] = -x[0] * f / den;
    }
    return f;
}

/* y = b1*x**b2 */
static double m_danwood(const double *b, const double *x, double *g)
{
    double t = pow(x[0], b[1]);
    if (g) {
        g[0] = t;
        g[1] = b[0] * t * log(x[0]);
    }
    return b[0] * t;
}

/* y = (b1/b2) * exp[-0.5*((x-b3)/b2)**2] */
static double m_eckerle4(const double *b, const double *x, double *g)
{
    double t = (x[0] - b[2]) / b[1];
    double e = exp(-0.5 * t * t);
    if (g) {
        g[0] = e / b[1];
        g[1] = b[0] * e * (t * t - 1.0) / (b[1] * b[1]);
        g[2] = b[0] * e * t / (b[1] * b[1]);
    }
    return b[0] / b[1] * e;
}

/* y = b1 / (1+exp[b2-b3*x]) */
static double m_rat42(const double *b, const double *x, double *g)
{
    double e = exp(b[1] - b[2] * x[0]);
    double u = 1.0 + e;
    if (g) {
        g[0] = 1.0 / u;
        g[1] = -b[0] * e / (u * u);
        g[2] = b[0] * x[0] * e / (u * u);
    }
    return b[0] / u;
}

/* y = b1 / ((1+exp[b2-b3*x])**(1/b4)) */
static double m_rat43(const double *b, const double *x, double *g)
{
    double e = exp(b[1] - b[2] * x[0]);
    double u = 1.0 + e;
    double L = log1p(e);
    double t = exp(-L / b[3]); /* u^(-1/b4) */
    double f = b[0] * t;
    if (g) {
        g[0] = t;
        g[1] = -f * e / (b[3] * u);
        g[2] = f * x[0] * e / (b[3] * u);
        g[3] = f * L / (b[3] * b[3]);
    }
    return f;
}

/* y = b1*(x**2+x*b2) / (x**2+x*b3+b4) */
static double m_mgh09(const double *b, const double *x, double *g)
{
    double X = x[0];
    double num = X * X + X * b[1], den = X * X + X * b[2] + b[3];
    double f = b[0] * num / den;
    if (g) {
        g[0] = num / den;
        g[1] = b[0] * X / den;
        g[2] = -f * X / den;
        g[3] = -f / den;
    }
    return f;
}

/* y = b1 * exp[b2/(x+b3)] */
static double m_mgh10(const double *b, const double *x, double *g)
{
    double u = x[0] + b[2];
    double e = exp(b[1] / u);
    double f = b[0] * e;
    if (g) {
        g[0] = e;
        g[1] = f / u;
        g[2] = -f * b[1] / (u * u);
    }
    return f;
}

/* y = b1 + b2*exp[-x*b4] + b3*exp[-x*b5] */
static double m_mgh17(const double *b, const double *x, double *g)
{
    double e4 = exp(-x[0] * b[3]), e5 = exp(-x[0] * b[4]);
    if (g) {
        g[0] = 1.0;
        g[1] = e4;
        g[2] = e5;
        g[3] = -x[0] * b[1] * e4;
        g[4] = -x[0] * b[2] * e5;
    }
    return b[0] + b[1] * e4 + b[2] * e5;
}

/* y = (b1 + b2*x + b3*x**2 + b4*x**3) / (1 + b5*x + b6*x**2 + b7*x**3) (Thurber, Hahn1) */
static double m_cubic_cubic(const double *b, const double *x, double *g)
{
    double X = x[0], X2 = X * X, X3 = X2 * X;
    double num = b[0] + b[1] * X + b[2] * X2 + b[3] * X3;
    double den = 1.0 + b[4] * X + b[5] * X2 + b[6] * X3;
    double f = num / den;
    if (g) {
        g[0] = 1.0 / den;
        g[1] = X / den;
        g[2] = X2 / den;
        g[3] = X3 / den;
        g[4] = -f * X / den;
        g[5] = -f * X2 / den;
        g[6] = -f * X3 / den;
    }
    return f;
}

/* y = (b1 + b2*x + b3*x**2) / (1 + b4*x + b5*x**2) */
static double m_kirby2(const double *b, const double *x, double *g)
{
    double X = x[0], X2 = X * X;
    double num = b[0] + b[1] * X + b[2] * X2;
    double den = 1.0 + b[3] * X + b[4] * X2;
    double f = num / den;
    if (g) {
        g[0] = 1.0 / den;
        g[1] = X / den;
        g[2] = X2 / den;
        g[3] = -f * X / den;
        g[4] = -f * X2 / den;
    }
    return f;
}

/* y = b1*exp(-b2*x) + b3*exp(-b4*x) + b5*exp(-b6*x) (Lanczos1, 2, 3) */
static double m_lanczos(const double *b, const double *x, double *g)
{
    double f = 0.0;
    for (int k = 0; k < 3; k++) {
        double e = exp(-b[2 * k + 1] * x[0]);
        f += b[2 * k] * e;
        if (g) {
            g[2 * k] = e;
            g[2 * k + 1] = -x[0] * b[2 * k] * e;
        }
    }
    return f;
}

/* y = b1*exp( -b2*x ) + b3*exp( -(x-b4)**2 / b5**2 ) + b6*exp( -(x-b7)**2 / b8**2 ) (Gauss1, 2, 3) */
static double m_gauss(const double *b, const double *x, double *g)
{
    double X = x[0];
    double e = exp(-b[1] * X);
    double f = b[0] * e;
    if (g) {
        g[0] = e;
        g[1] = -X * b[0] * e;
    }
    for (int k = 0; k < 2; k++) {
        const double *c = b + 2 + 3 * k; /* amplitude, centre, width */
        double t = (X - c[1]) / c[2];
        double h = exp(-t * t);
        f += c[0] * h;
        if (g) {
            g[2 + 3 * k] = h;
            g[3 + 3 * k] = c[0] * h * 2.0 * t / c[2];
            g[4 + 3 * k] = c[0] * h * 2.0 * t * t / c[2];
        }
    }
    return f;
}

/* y = b1 * (b2+x)**(-1/b3) */
static double m_bennett5(const double *b, const double *x, double *g)
{
    double u = b[1] + x[0];
    double L = log(u);
    double t = exp(-L / b[2]);
    double f = b[0] * t;
    if (g) {
        g[0] = t;
        g[1] = -f / (b[2] * u);
        g[2] = f * L / (b[2] * b[2]);
    }
    return f;
}

/* y = b1 - b2*x - arctan[b3/(x-b4)]/pi */
static double m_roszman1(const double *b, const double *x, double *g)
{
    double d = x[0] - b[3];
    double s = d * d + b[2] * b[2];
    if (g) {
        g[0] = 1.0;
        g[1] = -x[0];
        g[2] = -d / (s * PI);
        g[3] = -b[2] / (s * PI);
    }
    return b[0] - b[1] * x[0] - atan(b[2] / d) / PI;
}

/* y = b1 + b2*cos( 2*pi*x/12 ) + b3*sin( 2*pi*x/12 ) + b5*cos( 2*pi*x/b4 ) + b6*sin( 2*pi*x/b4 )
 *        + b8*cos( 2*pi*x/b7 ) + b9*sin( 2*pi*x/b7 ) */
static double m_enso(const double *b, const double *x, double *g)
{
    double w = 2.0 * PI * x[0];
    double c0 = cos(w / 12.0), s0 = sin(w / 12.0);
    double a1 = w / b[3], c1 = cos(a1), s1 = sin(a1);
    double a2 = w / b[6], c2 = cos(a2), s2 = sin(a2);
    if (g) {
        g[0] = 1.0;
        g[1] = c0;
        g[2] = s0;
        g[3] = (-b[4] * s1 + b[5] * c1) * (-a1 / b[3]);
        g[4] = c1;
        g[5] = s1;
        g[6] = (-b[7] * s2 + b[8] * c2) * (-a2 / b[6]);
        g[7] = c2;
        g[8] = s2;
    }
    return b[0] + b[1] * c0 + b[2] * s0 + b[4] * c1 + b[5] * s1 + b[7] * c2 + b[8] * s2;
}

/* log[y] = b1 - b2*x1 * exp[-b3*x2] (the response fitted is ln y) */
static double m_nelson(const double *b, const double *x, double *g)
{
    double e = exp(-b[2] * x[1]);
    if (g) {
        g[0] = 1.0;
        g[1] = -x[0] * e;
        g[2] = b[1] * x[0] * x[1] * e;
    }
    return b[0] - b[1] * x[0] * e;
}

typedef struct nist_model {
    const char *name;
    int p, npred, log_y;
    model_fn f;
} nist_model;

static const nist_model MODELS[] = {
    {"Misra1a", 2, 1, 0, m_exp_rise},    {"Chwirut2", 3, 1, 0, m_chwirut},  {"Chwirut1", 3, 1, 0, m_chwirut},
    {"Lanczos3", 6, 1, 0, m_lanczos},    {"Gauss1", 8, 1, 0, m_gauss},      {"Gauss2", 8, 1, 0, m_gauss},
    {"DanWood", 2, 1, 0, m_danwood},     {"Misra1b", 2, 1, 0, m_misra1b},   {"Kirby2", 5, 1, 0, m_kirby2},
    {"Hahn1", 7, 1, 0, m_cubic_cubic},   {"Nelson", 3, 2, 1, m_nelson},     {"MGH17", 5, 1, 0, m_mgh17},
    {"Lanczos1", 6, 1, 0, m_lanczos},    {"Lanczos2", 6, 1, 0, m_lanczos},  {"Gauss3", 8, 1, 0, m_gauss},
    {"Misra1c", 2, 1, 0, m_misra1c},     {"Misra1d", 2, 1, 0, m_misra1d},   {"Roszman1", 4, 1, 0, m_roszman1},
    {"ENSO", 9, 1, 0, m_enso},           {"MGH09", 4, 1, 0, m_mgh09},       {"Thurber", 7, 1, 0, m_cubic_cubic},
    {"BoxBOD", 2, 1, 0, m_exp_rise},     {"Rat42", 3, 1, 0, m_rat42},       {"MGH10", 3, 1, 0, m_mgh10},
    {"Eckerle4", 3, 1, 0, m_eckerle4},   {"Rat43", 4, 1, 0, m_rat43},       {"Bennett5", 3, 1, 0, m_bennett5},
};
#define NMODELS ((int)(sizeof MODELS / sizeof MODELS[0]))

static const nist_model *find_model(const char *name)
{
    for (int m = 0; m < NMODELS; m++)
        if (strcmp(MODELS[m].name, name) == 0) return &MODELS[m];
    fail_msg("no model for %s", name);
    return NULL;
}

/* The problem handed to db_lm_fit. */
typedef struct nist_fit {
    const nist_model *m;
    const nist_data *d;
    double *obs;
} nist_fit;

static int nist_evaluate(void *user, const double *b, double *mu, double *J, db_error *err)
{
    (void)err;
    const nist_fit *F = user;
    long n = F->d->n;
    int p = F->m->p;
    double g[NIST_MAX_P];
    for (long i = 0; i < n; i++) {
        double f = F->m->f(b, F->d->x + i * F->d->npred, J ? g : NULL);
        if (!isfinite(f)) return DB_LM_INFEASIBLE;
        mu[i] = f;
        if (J)
            for (int j = 0; j < p; j++) {
                if (!isfinite(g[j])) return DB_LM_INFEASIBLE;
                J[(size_t)j * (size_t)n + (size_t)i] = g[j];
            }
    }
    return DB_OK;
}

static const char *stop_name(int r)
{
    switch (r) {
    case DB_STOP_COST: return "cost";
    case DB_STOP_STEP: return "step";
    case DB_STOP_MAXITER: return "max_iterations";
    case DB_STOP_EXACT: return "exact";
    case DB_STOP_NO_PROGRESS: return "no_progress";
    default: return "?";
    }
}

/* ---------------------------------------------------------------------------------------------------------------
 * The cases: every problem from both starts must reach NIST's certified values (tolerances above), except those
 * the table at the end of this file leaves out or gives more iterations, each with its reason. */

typedef struct nist_case {
    const char *name;
    int start;          /* 0 or 1: NIST's start 1 or start 2 */
    int left_out;       /* not registered: no Levenberg-Marquardt without restarts reaches the optimum from there */
    int max_iterations; /* 0: NIST_MAX_ITERATIONS */
    const char *why;
} nist_case;

#define NIST_MAX_ITERATIONS 1000

static nist_case CASES[2 * NMODELS];
static int NCASES;

typedef struct fit_out {
    int rc, stop;
    double x[NIST_MAX_P], sigma[NIST_MAX_P], rss;
    db_lm_result res;
    char err[1024];
} fit_out;

static void run_fit(const nist_model *m, const nist_data *d, const double *start, int max_iterations, fit_out *o)
{
    nist_fit F = {m, d, malloc((size_t)d->n * sizeof(double))};
    for (long i = 0; i < d->n; i++)
        F.obs[i] = m->log_y ? log(d->y[i]) : d->y[i];
    db_lm_problem prob;
    memset(&prob, 0, sizeof prob);
    prob.n = d->n;
    prob.p = m->p;
    prob.evaluate = nist_evaluate;
    prob.user = &F;
    prob.obs = F.obs;
    prob.objective = DB_LM_LSQ;
    prob.weights = NULL;
    prob.ngroups = 0;
    prob.q = 0;
    db_lm_options opt;
    db_lm_default_options(&opt);
    opt.max_iterations = max_iterations;
    /* tighter than the defaults (1e-12, 1e-10), which stop ENSO at 5 digits: a relative cost decrease of 1e-12
     * still leaves its small parameters (b8 = 0.21 beside b4 = 44) a few 1e-6 from the optimum */
    opt.cost_tolerance = 1e-15;
    opt.step_tolerance = 1e-15;
    memcpy(o->x, start, (size_t)m->p * sizeof(double));
    db_error err;
    memset(&err, 0, sizeof err);
    memset(&o->res, 0, sizeof o->res);
    o->rc = db_lm_fit(&prob, &opt, o->x, NULL, o->sigma, NULL, NULL, NULL, &o->res, &err);
    snprintf(o->err, sizeof o->err, "%s", err.message);
    o->stop = o->res.stop_reason;
    o->rss = 2.0 * o->res.cost;
    free(F.obs);
}

/* log relative error, for the messages */
static double lre(double v, double c)
{
    double r = fabs(v - c) / fabs(c);
    return r > 0.0 ? -log10(r) : 17.0;
}

static void test_nist_case(void **state)
{
    const nist_case *c = *state;
    const nist_model *m = find_model(c->name);
    nist_data *dp = &LOADED, d;
    nist_load(c->name, dp);
    d = *dp;
    assert_int_equal(d.p, m->p);
    assert_int_equal(d.npred, m->npred);
    fit_out o;
    run_fit(m, &d, d.start[c->start], c->max_iterations ? c->max_iterations : NIST_MAX_ITERATIONS, &o);
    double minlre = 17.0;
    for (int j = 0; j < d.p; j++)
        minlre = fmin(minlre, lre(o.x[j], d.cert[j]));
    double scale = sqrt(o.rss / (double)(d.n - d.p)), minlre_sd = 17.0, rss_rtol = NIST_RSS_RTOL;
    if (strcmp(c->name, "Lanczos1") == 0) {
        /* Lanczos1's data are exact values of its model to 13 digits: the certified RSS, 1.43e-25 (residuals of
         * ~8e-14 on values up to 2.5), is rounding noise, and each fitted residual carries a rounding of the model
         * itself of a few 1e-16, ~1% of its size. So its RSS is asserted to 1e-2 (MINPACK's lmder gets 2e-3 too),
         * and sigma_x, which does not depend on it, is scaled by the certified RSS to be held to NIST_SD_RTOL. */
        rss_rtol = 1e-2;
        scale = sqrt(d.rss / (double)(d.n - d.p));
    }
    for (int j = 0; j < d.p; j++)
        minlre_sd = fmin(minlre_sd, lre(o.sigma[j] * scale, d.sd[j]));
    char xs[512] = "";
    for (int j = 0; j < d.p; j++)
        snprintf(xs + strlen(xs), sizeof xs - strlen(xs), "%s%.11g", j ? ", " : "", o.x[j]);
    print_message("    %-9s start %d: stop %-11s %4d iterations; LRE parameters %.1f, RSS %.1f, sd %.1f\n", c->name,
                  c->start + 1, stop_name(o.stop), o.res.iterations, minlre, lre(o.rss, d.rss), minlre_sd);
    test_context("%s start %d: rc %d (%s), stop %s, %d iterations, %d evaluations, b = (%s), RSS %.11g", c->name,
                 c->start + 1, o.rc, o.err, stop_name(o.stop), o.res.iterations, o.res.evaluations, xs, o.rss);

    if (o.rc != DB_OK)
        fail_msg("%s start %d: db_lm_fit returned %d (stop %s, %d iterations): %s", c->name, c->start + 1, o.rc,
                 stop_name(o.stop), o.res.iterations, o.err);
    /* converged, by a convergence test: not by running out of iterations */
    if (!(o.stop == DB_STOP_COST || o.stop == DB_STOP_STEP || o.stop == DB_STOP_NO_PROGRESS))
        fail_msg("%s start %d: stop reason %s (%d) after %d iterations", c->name, c->start + 1, stop_name(o.stop),
                 o.stop, o.res.iterations);
    assert_int_equal(o.res.dof, d.n - d.p);
    for (int j = 0; j < d.p; j++) {
        test_context("%s start %d, b%d (stop %s, %d iterations, b = (%s), RSS %.11g)", c->name, c->start + 1, j + 1,
                     stop_name(o.stop), o.res.iterations, xs, o.rss);
        assert_close(o.x[j], d.cert[j], NIST_PARAM_RTOL, 0.0);
    }
    test_context("%s start %d, residual sum of squares", c->name, c->start + 1);
    assert_close(o.rss, d.rss, rss_rtol, 0.0);
    for (int j = 0; j < d.p; j++) {
        test_context("%s start %d, sd(b%d) = sigma_x %.17g * sqrt(RSS/(n-p)) %.17g", c->name, c->start + 1, j + 1,
                     o.sigma[j], scale);
        assert_true(o.sigma[j] > 0.0);
        assert_close(o.sigma[j] * scale, d.sd[j], NIST_SD_RTOL, 0.0);
    }
    test_context(NULL);
}

/* Every model's analytic gradient against central differences, at both starts and at the certified values
 * (a wrong Jacobian could still let LM converge, but it would give wrong standard deviations). Central
 * differences with h = 1e-6 |b_j| are accurate to ~1e-10 of the column's scale, so 1e-6 leaves margin. */
static void test_nist_jacobians(void **state)
{
    (void)state;
    for (int mi = 0; mi < NMODELS; mi++) {
        const nist_model *m = &MODELS[mi];
        nist_load(m->name, &LOADED);
        const nist_data d = LOADED;
        assert_int_equal(d.p, m->p);
        assert_int_equal(d.npred, m->npred);
        for (int at = 0; at < 3; at++) {
            const double *b0 = at < 2 ? d.start[at] : d.cert;
            for (int j = 0; j < m->p; j++) {
                double h = 1e-6 * fabs(b0[j]);
                double bp[NIST_MAX_P], bm[NIST_MAX_P];
                memcpy(bp, b0, sizeof bp);
                memcpy(bm, b0, sizeof bm);
                bp[j] += h;
                bm[j] -= h;
                double colmax = 0.0;
                for (long i = 0; i < d.n; i++) {
                    double g[NIST_MAX_P];
                    m->f(b0, d.x + i * d.npred, g);
                    colmax = fmax(colmax, fabs(g[j]));
                }
                assert_true(colmax > 0.0);
                for (long i = 0; i < d.n; i++) {
                    const double *xi = d.x + i * d.npred;
                    double g[NIST_MAX_P];
                    m->f(b0, xi, g);
                    double fp = m->f(bp, xi, NULL), fm = m->f(bm, xi, NULL);
                    double fd = (fp - fm) / (bp[j] - bm[j]);
                    /* truncation (h^2) is far below 1e-6 of the column's scale; rounding of f itself, up to
                     * ~eps |f| / h, can exceed it where f is large and the derivative small (MGH17 at start 1:
                     * f ~ 50, d f / d b5 ~ 2e-6): allowed 64 eps |f| / h on top */
                    double rounding = 64.0 * DBL_EPSILON * (fabs(fp) + fabs(fm)) / (bp[j] - bm[j]);
                    test_context("%s, %s, d f / d b%d at observation %ld", m->name,
                                 at == 0 ? "start 1" : at == 1 ? "start 2" : "certified values", j + 1, i + 1);
                    assert_close(g[j], fd, 0.0, 1e-6 * colmax + rounding);
                }
            }
        }
    }
    test_context(NULL);
}

/* The models at the certified values reproduce the certified residual sum of squares (the data, the model
 * formulas and the parser agree with NIST's), to 1e-8: the certified values are rounded to 11 digits and
 * the RSS is stationary there. Not Lanczos1, whose certified RSS (1.4e-25) is below what its 11-digit certified
 * values can reproduce: their rounding alone (5e-12 relative) moves the model by ~1e-11 and the RSS to ~4e-21;
 * there the RSS must be below 1e-20 (at either start it is above 1e-1). */
static void test_nist_certified_rss(void **state)
{
    (void)state;
    for (int mi = 0; mi < NMODELS; mi++) {
        const nist_model *m = &MODELS[mi];
        nist_load(m->name, &LOADED);
        const nist_data d = LOADED;
        long double rss = 0.0L;
        for (long i = 0; i < d.n; i++) {
            double y = m->log_y ? log(d.y[i]) : d.y[i];
            double r = y - m->f(d.cert, d.x + i * d.npred, NULL);
            rss += (long double)r * r;
        }
        test_context("%s: RSS at the certified values", m->name);
        if (strcmp(m->name, "Lanczos1") == 0)
            assert_true(rss < 1e-20L);
        else
            assert_close((double)rss, d.rss, 1e-8, 0.0);
    }
    test_context(NULL);
}

/* ---------------------------------------------------------------------------------------------------------------
 * The parser refuses malformed files. Each variant is Misra1a.dat with one change, written to a temporary
 * folder; the message must name the problem. */

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)len + 1);
    assert_int_equal(fread(s, 1, (size_t)len, f), (size_t)len);
    s[len] = '\0';
    fclose(f);
    return s;
}

/* text with the first occurrence of `from` replaced by `to` */
static char *replaced(const char *text, const char *from, const char *to)
{
    const char *at = strstr(text, from);
    if (!at) fail_msg("\"%s\" not in Misra1a.dat", from);
    size_t a = (size_t)(at - text), lf = strlen(from), lt = strlen(to), lr = strlen(at + lf);
    char *s = malloc(a + lt + lr + 1);
    memcpy(s, text, a);
    memcpy(s + a, to, lt);
    memcpy(s + a + lt, at + lf, lr + 1);
    return s;
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    size_t len = strlen(text), wrote = fwrite(text, 1, len, f);
    int closed = fclose(f);
    assert_int_equal(wrote, len);
    assert_int_equal(closed, 0);
}

static void test_nist_parser_errors(void **state)
{
    (void)state;
    char path[1024];
    snprintf(path, sizeof path, "%s/Misra1a.dat", DB_NIST_DIR);
    PARSER_TEXT = slurp(path);
    snprintf(PARSER_DIR, sizeof PARSER_DIR, "/tmp/db_test_lm_XXXXXX");
    if (!mkdtemp(PARSER_DIR)) {
        PARSER_DIR[0] = '\0';
        fail_msg("mkdtemp: %s", strerror(errno));
    }
    snprintf(PARSER_FILE, sizeof PARSER_FILE, "%s/Misra1a.dat", PARSER_DIR);
    static const struct {
        const char *from, *to, *expect;
    } V[] = {
        {"NIST/ITL StRD", "NIST/XXX StRD", "not a NIST StRD file"},
        {"(lines 61 to 74)", "(lines 62 to 74)", "14 observations stated"},
        {"(lines 61 to 74)", "(lines 61 to 75)", "outside the file's 74 lines"},
        {"(lines 61 to 74)", "(lines 61 74)", "without \"(lines A to B)\""},
        {"Starting Values   (lines 41 to 42)", "Starting Values   (lines 41 to 41)", "the model states 2"},
        {"2.3894212918E+02", "2.38942.12918E+02", "\"2.38942.12918E+02\" is not a number"},
        {"7.2668688436E-06", "", "expected \"b2 = start1 start2 certified sd\""},
        {"Residual Sum of Squares:", "Residual Sum of Square:", "no \"Residual Sum of Squares:\""},
        {"1.2455138894E-01", "1.2455138894E-01 7", "not followed by exactly one number"},
        {"1.0187876330E-01", "1.0287876330E-01", "is not sqrt(RSS"},
        {"Degrees of Freedom:                                12", "Degrees of Freedom:                                11",
         "11 degrees of freedom stated"},
        {"Number of Observations:                            14", "Number of Observations:                            14.5",
         "is not a count"},
        {"      81.78E0     760.0E0", "      81.78E0", "expected 2 numbers"},
        {"      55.05E0     477.3E0", "      55.05E0     477.3E0x", "\"477.3E0x\" is not a number"},
        {"      10.07E0      77.6E0", "      10.07E0      nan", "\"nan\" is not a number"},
        {"Data:   y               x", "Data:   x               y", "column header"},
        {"      81.78E0     760.0E0\n", "      81.78E0     760.0E0\n 1 2\n", "text after the last data line"},
    };
    char msg[1024];
    for (size_t v = 0; v < sizeof V / sizeof V[0]; v++) {
        char *text = replaced(PARSER_TEXT, V[v].from, V[v].to);
        FILE *f = fopen(PARSER_FILE, "wb");
        size_t len = strlen(text), wrote = f ? fwrite(text, 1, len, f) : 0;
        free(text);
        assert_non_null(f);
        assert_int_equal(fclose(f), 0);
        assert_int_equal(wrote, len);
        msg[0] = '\0';
        nist_free(&LOADED);
        if (nist_parse(PARSER_FILE, &LOADED, msg, sizeof msg) == 0)
            fail_msg("variant %zu (\"%s\" -> \"%s\") was accepted", v, V[v].from, V[v].to);
        if (!strstr(msg, V[v].expect))
            fail_msg("variant %zu (\"%s\" -> \"%s\"): message lacks \"%s\":\n    %s", v, V[v].from, V[v].to,
                     V[v].expect, msg);
    }
    /* the unchanged copy parses (so the variants fail for their change alone), and a missing file is named */
    write_text(PARSER_FILE, PARSER_TEXT);
    if (nist_parse(PARSER_FILE, &LOADED, msg, sizeof msg)) fail_msg("unchanged copy refused: %s", msg);
    const nist_data d = LOADED;
    assert_int_equal(d.n, 14);
    assert_int_equal(d.p, 2);
    assert_int_equal(d.npred, 1);
    assert_close(d.y[13], 81.78, 0.0, 0.0);
    assert_close(d.x[13], 760.0, 0.0, 0.0);
    assert_close(d.start[0][0], 500.0, 0.0, 0.0);
    assert_close(d.start[1][1], 0.0005, 0.0, 0.0);
    assert_close(d.cert[1], 5.5015643181E-04, 0.0, 0.0);
    assert_close(d.sd[0], 2.7070075241E+00, 0.0, 0.0);
    assert_close(d.rss, 1.2455138894E-01, 0.0, 0.0);
    assert_int_equal(unlink(PARSER_FILE), 0);
    PARSER_FILE[0] = '\0';
    snprintf(path, sizeof path, "%s/Misra1a.dat", PARSER_DIR);
    nist_free(&LOADED);
    assert_int_equal(nist_parse(path, &LOADED, msg, sizeof msg), -1);
    if (!strstr(msg, "cannot open")) fail_msg("missing file: %s", msg);
}

/* ---------------------------------------------------------------------------------------------------------------
 * db_poisson_deviance_moments: mean and variance of d(k) = 2 (k ln(k/mu) - (k - mu)) for k ~ Poisson(mu),
 * against a sum written here: in long double over k within 40 standard deviations (plus 60 counts) of mu, where
 * the mass left out is below 1e-300, with P(k) = exp(k ln mu - mu - lgamma(k + 1)) and k ln(k/mu) as
 * k log1p((k - mu)/mu). Its own error is checked through sum P(k) = 1. */
static void brute_moments(double mu, double *mean, double *variance, double *mass)
{
    long double m = mu, sd = sqrtl(m), lmu = logl(m);
    long lo = (long)floorl(m - 40.0L * sd - 60.0L), hi = (long)ceill(m + 40.0L * sd + 60.0L);
    if (lo < 0) lo = 0;
    long double s0 = 0.0L, s1 = 0.0L, s2 = 0.0L;
    for (long k = lo; k <= hi; k++) {
        long double kk = (long double)k;
        long double pk = expl(kk * lmu - m - lgammal(kk + 1.0L));
        long double d = 2.0L * ((k > 0 ? kk * log1pl((kk - m) / m) : 0.0L) - (kk - m));
        s0 += pk;
        s1 += pk * d;
        s2 += pk * d * d;
    }
    *mass = (double)s0;
    *mean = (double)s1;
    *variance = (double)(s2 - s1 * s1);
}

static void test_poisson_deviance_moments(void **state)
{
    (void)state;
    /* mu up to 1000: refine/objective.c sums the Poisson mass directly, so its moments must agree with this sum
     * to rounding (1e-9 relative leaves room for double-precision summation of ~400 terms whose exponents are
     * ~1e4). Above mu = 1000 it uses the expansion E = 1 + 1/(6 mu) + 1/(6 mu^2), Var = 2 + 2/(3 mu), stated
     * there to be within 1e-3 of the values: asserted at that 1e-3. */
    static const double MU[] = {1e-6, 0.01, 0.3, 1.0, 5.0, 40.0, 150.0, 999.5, 1000.0, 1000.5, 2000.0, 1e5};
    for (size_t i = 0; i < sizeof MU / sizeof MU[0]; i++) {
        double mu = MU[i], bm, bv, mass, mean = NAN, var = NAN;
        brute_moments(mu, &bm, &bv, &mass);
        test_context("mu = %g: the brute-force sum's own mass", mu);
        assert_close(mass, 1.0, 1e-12, 0.0);
        db_poisson_deviance_moments(mu, &mean, &var);
        double tol = mu <= 1000.0 ? 1e-9 : 1e-3;
        test_context("mu = %g: mean of the deviance term (brute %.17g)", mu, bm);
        assert_close(mean, bm, tol, 0.0);
        test_context("mu = %g: variance of the deviance term (brute %.17g)", mu, bv);
        assert_close(var, bv, tol, 0.0);
    }
    /* the limits: mu -> 0 has k = 0 almost surely (deviance 0); for large mu the deviance is chi-square(1) */
    double mean, var;
    db_poisson_deviance_moments(0.0, &mean, &var);
    test_context("mu = 0");
    assert_close(mean, 0.0, 0.0, 0.0);
    assert_close(var, 0.0, 0.0, 0.0);
    db_poisson_deviance_moments(1e9, &mean, &var);
    test_context("mu = 1e9");
    assert_close(mean, 1.0, 1e-8, 0.0);
    assert_close(var, 2.0, 1e-8, 0.0);
    test_context(NULL);
}

/* ---------------------------------------------------------------------------------------------------------------
 * The case table: all problems from both starts, with these exceptions. */
static const nist_case EXCEPTIONS[] = {
    /* BoxBOD start 1 (b1 = 1, b2 = 1): exp(-b2 x) is already below 0.37 at the first x (1) and below 1e-4 from the
     * fourth (5) on, so the first steps fit b1 to the data's mean and push b2 up to where exp(-b2 x) vanishes: b2 ~
     * 115, b1 = 172.5 (the mean), RSS 9771.5, a point where the gradient is 0 to the last digit. Any LM without
     * restarts stops there (MINPACK's lmder: at the start, RSS 9771.5, by its gradient test); it is no failure of
     * the driver that a test could see, so it is left out (main says so). */
    {"BoxBOD", 0, 1, 0, "converges to the b2 -> infinity plateau, b1 = mean(y)"},
    /* MGH10 start 1 (b = 2, 4e5, 2.5e4, certified 5.6e-3, 6181, 345): a narrow curved valley that Nielsen's damping
     * (this driver's rule) walks down in ~7700 trial steps with the damping at the bottom of double's range (a
     * Python transcription of the same rule takes 7690; MINPACK's Moré trust region ~290 evaluations), so it gets
     * 20000; the certified values are then reached to the same tolerances. */
    {"MGH10", 0, 0, 20000, "a long valley: about 7700 trial steps"},
    {NULL, 0, 0, 0, NULL},
};

static void add_cases(void)
{
    NCASES = 0;
    for (int m = 0; m < NMODELS; m++)
        for (int s = 0; s < 2; s++) {
            nist_case c = {MODELS[m].name, s, 0, 0, NULL};
            for (size_t e = 0; EXCEPTIONS[e].name; e++)
                if (strcmp(EXCEPTIONS[e].name, c.name) == 0 && EXCEPTIONS[e].start == s) c = EXCEPTIONS[e];
            CASES[NCASES++] = c;
        }
}

/* A column zero up to rounding: mu = a x + b * 1e-12 x^2 (b's effect, at b = 1, is 1e-12 of the model's size, as
 * lambda's on a -mat crystal's image is rounding) is refused by name before any step, while the same model with
 * b's effect at 1e-6 (a weak but real parameter) is fitted. */
typedef struct weak_model {
    double scale;
} weak_model;

static int weak_evaluate(void *user, const double *x, double *mu, double *J, db_error *err)
{
    (void)err;
    const double k = ((const weak_model *)user)->scale;
    for (int i = 0; i < 20; i++) {
        double t = 1.0 + 0.1 * i;
        mu[i] = x[0] * t + x[1] * k * t * t;
        if (J) {
            J[i] = t;
            J[20 + i] = k * t * t;
        }
    }
    return DB_OK;
}

static void test_no_effect_up_to_rounding(void **state)
{
    (void)state;
    double obs[20];
    for (int i = 0; i < 20; i++) obs[i] = 2.0 * (1.0 + 0.1 * i) + 0.01 * ((i * 7) % 5 - 2);
    const char *names[2] = {"a", "b"};
    for (int real = 0; real < 2; real++) {
        weak_model m = {real ? 1e-6 : 1e-12};
        db_lm_problem P = {20, 2, weak_evaluate, &m, obs, DB_LM_LSQ, NULL, 0.0, 0, 0, NULL, NULL, names, 0, NULL};
        double x[2] = {1.0, 1.0}, sigma[2];
        db_lm_result r;
        db_error err;
        int rc = db_lm_fit(&P, NULL, x, NULL, sigma, NULL, NULL, NULL, &r, &err);
        if (real) {
            if (rc) fail_msg("the weak but real column was refused: %s", err.message);
            assert_true(r.iterations > 0);
        } else {
            assert_int_equal(rc, DB_ERR_ARGUMENT);
            test_context("%s", err.message);
            assert_non_null(strstr(err.message, "b has no effect"));
            assert_non_null(strstr(err.message, "zero up to rounding"));
            test_context("%s", "");
        }
    }
}

int main(void)
{
    add_cases();
    static char names[2 * NMODELS][64];
    struct CMUnitTest tests[2 * NMODELS + 5];
    int nt = 0;
    tests[nt++] = (struct CMUnitTest){"nist_parser_errors", test_nist_parser_errors, NULL, release, NULL};
    tests[nt++] = (struct CMUnitTest){"nist_jacobians", test_nist_jacobians, NULL, release, NULL};
    tests[nt++] = (struct CMUnitTest){"nist_certified_rss", test_nist_certified_rss, NULL, release, NULL};
    for (int c = 0; c < NCASES; c++) {
        if (CASES[c].left_out) { /* not a test: said here, so that no skip reads as a pass */
            print_message("left out: %s start %d: %s\n", CASES[c].name, CASES[c].start + 1, CASES[c].why);
            continue;
        }
        snprintf(names[c], sizeof names[c], "nist_%s_start%d", CASES[c].name, CASES[c].start + 1);
        tests[nt++] = (struct CMUnitTest){names[c], test_nist_case, NULL, release, &CASES[c]};
    }
    tests[nt++] = (struct CMUnitTest){"poisson_deviance_moments", test_poisson_deviance_moments, NULL, NULL, NULL};
    tests[nt++] = (struct CMUnitTest){"no_effect_up_to_rounding", test_no_effect_up_to_rounding, NULL, NULL, NULL};
    return _cmocka_run_group_tests("lm", tests, (size_t)nt, NULL, NULL);
}
