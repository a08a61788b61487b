/* hkl.c: the structure-factor tables: reading an -hkl file (every line checked, FILE:LINE in each message),
 * and writing and reading the Fdump.bin cache (its header sizes checked before any allocation). */
#include "hkl.h"
#include "error.h"
#include "fileio.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void db_hkl_free(db_hkl_table *t)
{
    if (!t) return;
    free(t->F);
    t->F = NULL;
    free(t->list_hkl);
    t->list_hkl = NULL;
    t->nlist = 0;
}

static size_t table_size(const db_hkl_table *t)
{
    return (size_t)(t->h_range + 1) * (size_t)(t->k_range + 1) * (size_t)(t->l_range + 1);
}

static size_t table_limit_override; /* 0: none */

void db_hkl_set_table_limit(size_t bytes) { table_limit_override = bytes; }

size_t db_hkl_table_limit(void)
{
    size_t limit = DB_HKL_TABLE_MAX_BYTES;
    if (table_limit_override && table_limit_override < limit) limit = table_limit_override;
#if defined(_SC_PHYS_PAGES) && defined(_SC_PAGE_SIZE)
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
    if (pages > 0 && page > 0 && (unsigned long long)pages * (unsigned long long)page / 2 < limit)
        limit = (size_t)((unsigned long long)pages * (unsigned long long)page / 2);
#endif
    return limit;
}

/* Sizes are derived in 64 bits from the (untrusted) index ranges: the ranges themselves, the padded entry
 * count and the byte count are each checked before anything is allocated, so no product can wrap. Sets the
 * ranges and *count, the padded entries. */
static int size_table(db_hkl_table *t, const char *path, size_t *count, db_error *err)
{
    long long hr = (long long)t->h_max - t->h_min + 1, kr = (long long)t->k_max - t->k_min + 1,
              lr = (long long)t->l_max - t->l_min + 1;
    if (hr <= 0 || kr <= 0 || lr <= 0)
        return db_fail(err, DB_ERR_FORMAT, "%s: no reflections (index ranges h %d..%d k %d..%d l %d..%d)", path, t->h_min,
                       t->h_max, t->k_min, t->k_max, t->l_min, t->l_max);
    /* each padded range below 2^21: the product of three stays below 2^63 */
    const long long max_range = 1LL << 21;
    size_t limit = db_hkl_table_limit();
    unsigned long long entries = 0, bytes = 0;
    int too_big = hr >= max_range || kr >= max_range || lr >= max_range;
    if (!too_big) {
        entries = (unsigned long long)(hr + 1) * (unsigned long long)(kr + 1) * (unsigned long long)(lr + 1);
        bytes = entries * sizeof(double);
        too_big = entries > (unsigned long long)SIZE_MAX / sizeof(double) || bytes > (unsigned long long)limit;
    }
    if (too_big) {
        if (hr >= max_range || kr >= max_range || lr >= max_range)
            return db_fail(err, DB_ERR_FORMAT,
                           "%s: index ranges h %d..%d k %d..%d l %d..%d are too large for a structure-factor table", path,
                           t->h_min, t->h_max, t->k_min, t->k_max, t->l_min, t->l_max);
        return db_fail(err, DB_ERR_NOMEM,
                       "%s: index ranges h %d..%d k %d..%d l %d..%d need a %.1f MiB structure-factor table, more than the "
                       "limit of %.1f MiB (2 GiB or half the physical memory, whichever is smaller)",
                       path, t->h_min, t->h_max, t->k_min, t->k_max, t->l_min, t->l_max, (double)bytes / 1048576.0,
                       (double)limit / 1048576.0);
    }
    t->h_range = (int)hr;
    t->k_range = (int)kr;
    t->l_range = (int)lr;
    *count = (size_t)entries;
    return DB_OK;
}

static int alloc_table(db_hkl_table *t, const char *path, db_error *err)
{
    size_t entries;
    int rc = size_table(t, path, &entries, err);
    if (rc) return rc;
    t->F = (double *)calloc(entries, sizeof(double));
    if (!t->F) return db_fail(err, DB_ERR_NOMEM, "%s: out of memory for the structure-factor table (%.1f MiB)", path,
                              (double)entries * sizeof(double) / 1048576.0);
    return DB_OK;
}

/* Parses one line into h k l F; returns 1 on success, 0 for a blank line, -1 malformed, -2 F not finite. */
static int parse_hkl_line(char *line, long idx[3], double *F)
{
    char *p = line;
    while (isspace((unsigned char)*p)) p++;
    if (*p == '\0') return 0;
    for (int k = 0; k < 3; k++) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || (*end && !isspace((unsigned char)*end))) return -1;
        if (v < -1000000 || v > 1000000) return -1;
        idx[k] = v;
        p = end;
    }
    char *end;
    errno = 0;
    *F = strtod(p, &end);
    if (end == p || errno == ERANGE) return -1;
    if (!isfinite(*F)) return -2;
    p = end;
    while (isspace((unsigned char)*p)) p++;
    if (*p == '\0') return 1;
    /* an optional fifth column, sigF (dualbragg-ensemble's -hklout writes 'h k l F sigF', sigF nan for a
     * reflection it did not refine): a number, any (nan included), read and ignored */
    if (!isspace((unsigned char)*(p - 1))) return -1;
    errno = 0;
    (void)strtod(p, &end);
    if (end == p || (*end && !isspace((unsigned char)*end))) return -1;
    p = end;
    while (isspace((unsigned char)*p)) p++;
    return *p == '\0' ? 1 : -1;
}

/* x with the fewest digits that read back as x: two different F values never print alike. */
static const char *shortest(char buf[32], double x)
{
    for (int digits = 6; digits < 17; digits++) {
        snprintf(buf, 32, "%.*g", digits, x);
        if (strtod(buf, NULL) == x) return buf;
    }
    snprintf(buf, 32, "%.17g", x);
    return buf;
}

/* The line (1-based) of the first reflection idx in data, read up to line last: for the duplicate message. */
static long first_line_of(char *data, long last, const long idx[3])
{
    char *p = data;
    for (long lineno = 1; lineno <= last && *p; lineno++) {
        char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        char save = p[n];
        p[n] = '\0';
        long other[3];
        double F;
        int same = parse_hkl_line(p, other, &F) > 0 && memcmp(other, idx, sizeof other) == 0;
        p[n] = save;
        if (same) return lineno;
        p += n;
        if (*p == '\n') p++;
    }
    return 0;
}

int db_hkl_read(const char *path, double default_F, db_hkl_table *t, db_error *err)
{
    memset(t, 0, sizeof *t);
    char *data;
    size_t len;
    /* NUL bytes (the parser would stop there, cutting the table short), long lines and size: refused */
    int rc = db_read_text("-hkl", path, DB_HKL_TEXT_MAX_BYTES, "lines 'h k l F'", &data, &len, err);
    if (rc) return rc;
    unsigned char *seen = NULL; /* one bit per table entry: given by a line already */
    t->h_min = t->k_min = t->l_min = 1000000000;
    t->h_max = t->k_max = t->l_max = -1000000000;
    /* pass 1: ranges and syntax */
    long lineno = 0;
    for (int pass = 0; pass < 2 && !rc; pass++) {
        char *p = data;
        lineno = 0;
        while (*p) {
            char *nl = strchr(p, '\n');
            size_t n = nl ? (size_t)(nl - p) : strlen(p);
            char save = p[n];
            p[n] = '\0';
            lineno++;
            long idx[3];
            double F;
            int ok = parse_hkl_line(p, idx, &F);
            p[n] = save;
            if (ok == -2) {
                rc = db_fail(err, DB_ERR_FORMAT, "-hkl %s:%ld: F is not a finite number (expected 'h k l F' with a finite F)", path, lineno);
                break;
            }
            if (ok < 0) {
                rc = db_fail(err, DB_ERR_FORMAT, "-hkl %s:%ld: expected 'h k l F' with integer h k l and a number F (and optionally a number sigF)", path, lineno);
                break;
            }
            if (ok > 0) {
                if (pass == 0) {
                    if (idx[0] < t->h_min) t->h_min = (int)idx[0];
                    if (idx[1] < t->k_min) t->k_min = (int)idx[1];
                    if (idx[2] < t->l_min) t->l_min = (int)idx[2];
                    if (idx[0] > t->h_max) t->h_max = (int)idx[0];
                    if (idx[1] > t->k_max) t->k_max = (int)idx[1];
                    if (idx[2] > t->l_max) t->l_max = (int)idx[2];
                    t->hkls++;
                } else {
                    size_t at = ((size_t)(idx[0] - t->h_min) * (t->k_range + 1) + (size_t)(idx[1] - t->k_min)) *
                                    (t->l_range + 1) + (size_t)(idx[2] - t->l_min);
                    /* the reference keeps the last of two lines for one reflection: an ambiguous table is refused
                     * (a repeat of the same F is harmless and accepted) */
                    if (seen[at / 8] & (1u << (at % 8)) && t->F[at] != F) {
                        char now[32], before[32];
                        rc = db_fail(err, DB_ERR_FORMAT,
                                     "-hkl %s:%ld: h k l = %ld %ld %ld has F = %s, but line %ld gave it F = %s "
                                     "(expected each reflection once)",
                                     path, lineno, idx[0], idx[1], idx[2], shortest(now, F),
                                     first_line_of(data, lineno - 1, idx), shortest(before, t->F[at]));
                        break;
                    }
                    if (!(seen[at / 8] & (1u << (at % 8)))) {
                        int *L = t->list_hkl + 3 * t->nlist++;
                        L[0] = (int)idx[0];
                        L[1] = (int)idx[1];
                        L[2] = (int)idx[2];
                    }
                    seen[at / 8] |= (unsigned char)(1u << (at % 8));
                    t->F[at] = F;
                }
            }
            p += n;
            if (*p == '\n') p++;
        }
        if (rc) break;
        if (pass == 0) {
            if (t->hkls == 0) {
                rc = db_fail(err, DB_ERR_FORMAT, "%s: no reflections (expected lines 'h k l F')", path);
                break;
            }
            rc = alloc_table(t, path, err);
            if (rc) break;
            size_t entries = (size_t)(t->h_range + 1) * (t->k_range + 1) * (t->l_range + 1);
            seen = calloc(entries / 8 + 1, 1);
            /* distinct reflections: at most the lines, and at most the table's entries */
            t->list_hkl = (int *)malloc(((size_t)t->hkls < entries ? (size_t)t->hkls : entries) * 3 * sizeof(int));
            if (!seen || !t->list_hkl) {
                rc = db_fail(err, DB_ERR_NOMEM, "-hkl %s: out of memory", path);
                break;
            }
            if (default_F != 0.0) {
                for (int h = 0; h < t->h_range; h++)
                    for (int k = 0; k < t->k_range; k++)
                        for (int l = 0; l < t->l_range; l++)
                            t->F[((size_t)h * (t->k_range + 1) + k) * (t->l_range + 1) + l] = default_F;
            }
        }
    }
    free(seen);
    free(data);
    if (rc) db_hkl_free(t);
    return rc;
}

int db_fdump_write(const char *path, const db_hkl_table *t, db_error *err)
{
    char header[200];
    int n = snprintf(header, sizeof header, "%d %d %d %d %d %d\n\f", t->h_min, t->h_max, t->k_min, t->k_max, t->l_min,
                     t->l_max);
    const void *bufs[2] = {header, t->F};
    size_t lens[2] = {(size_t)n, table_size(t) * sizeof(double)};
    return db_write_file_atomic(path, bufs, lens, 2, err);
}

/* One header integer: optional blanks, an optional sign and digits, within int range. */
static int header_int(const char **p, const char *end, int *out)
{
    const char *q = *p;
    while (q < end && (*q == ' ' || *q == '\t')) q++;
    int neg = 0;
    if (q < end && (*q == '-' || *q == '+')) neg = *q++ == '-';
    if (q >= end || !isdigit((unsigned char)*q)) return 0;
    long long v = 0;
    while (q < end && isdigit((unsigned char)*q)) {
        v = v * 10 + (*q++ - '0');
        if (v > 2147483648LL) return 0;
    }
    if (neg) v = -v;
    if (v < -2147483647LL - 1 || v > 2147483647LL) return 0;
    *out = (int)v;
    *p = q;
    return 1;
}

/* Six integers of at most 11 characters and their blanks: any valid cache header fits. */
#define FDUMP_HEADER_MAX 256

int db_fdump_read(const char *path, db_hkl_table *t, db_error *err)
{
    memset(t, 0, sizeof *t);
    db_input in;
    int rc = db_input_open(&in, "structure-factor cache", path, err);
    if (rc) return rc;
    /* the header: six integers, then blanks, a newline and a form feed (the data may hold any byte); the sizes
     * it gives are checked against the file's before the data are read */
    rc = db_input_fill(&in, FDUMP_HEADER_MAX, err);
    if (rc) goto done;
    const char *ff = in.len ? memchr(in.buf, '\f', in.len < FDUMP_HEADER_MAX ? in.len : FDUMP_HEADER_MAX) : NULL;
    const char *p = in.buf;
    int v[6], ok = ff != NULL;
    for (int k = 0; k < 6 && ok; k++) ok = header_int(&p, ff, &v[k]);
    while (ok && p < ff && (*p == ' ' || *p == '\t' || *p == '\r')) p++;
    if (ok && !(p + 1 == ff && *p == '\n')) ok = 0;
    if (!ok) {
        rc = db_fail(err, DB_ERR_FORMAT, "%s: not a structure-factor cache (expected six integers, a newline and a form feed)", path);
        goto done;
    }
    t->h_min = v[0];
    t->h_max = v[1];
    t->k_min = v[2];
    t->k_max = v[3];
    t->l_min = v[4];
    t->l_max = v[5];
    size_t entries;
    rc = size_table(t, path, &entries, err);
    if (rc) goto done;
    size_t off = (size_t)(ff - in.buf) + 1;
    char layout[160];
    snprintf(layout, sizeof layout, "a %zu-byte header, then %zu structure factors of 8 bytes for h %d..%d k %d..%d l %d..%d",
             off, entries, t->h_min, t->h_max, t->k_min, t->k_max, t->l_min, t->l_max);
    rc = db_input_read_exact(&in, off + entries * sizeof(double), layout, err);
    if (rc) goto done;
    t->F = (double *)malloc(entries * sizeof(double));
    if (!t->F) {
        rc = db_fail(err, DB_ERR_NOMEM, "%s: out of memory for the structure-factor table (%.1f MiB)", path,
                     (double)entries * sizeof(double) / 1048576.0);
        goto done;
    }
    memcpy(t->F, in.buf + off, entries * sizeof(double));
done:
    db_input_close(&in);
    if (rc) {
        db_hkl_free(t);
        return rc;
    }
    size_t count = table_size(t);
    for (size_t i = 0; i < count; i++)
        if (!isfinite(t->F[i])) {
            /* index of entry i: l fastest, padded ranges */
            size_t l = i % (size_t)(t->l_range + 1), hk = i / (size_t)(t->l_range + 1);
            size_t k = hk % (size_t)(t->k_range + 1), h = hk / (size_t)(t->k_range + 1);
            double bad = t->F[i];
            db_hkl_free(t);
            return db_fail(err, DB_ERR_FORMAT, "%s: structure factor %zu (h %lld k %lld l %lld) is %g, not a finite number",
                           path, i, (long long)t->h_min + (long long)h, (long long)t->k_min + (long long)k,
                           (long long)t->l_min + (long long)l, bad);
        }
    t->hkls = (long)t->h_range * t->k_range * t->l_range;
    return DB_OK;
}
