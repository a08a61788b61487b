#include "hkl.h"
#include "error.h"
#include "fileio.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void db_hkl_free(db_hkl_table *t)
{
    if (!t) return;
    free(t->F);
    t->F = NULL;
}

static size_t table_size(const db_hkl_table *t)
{
    return (size_t)(t->h_range + 1) * (size_t)(t->k_range + 1) * (size_t)(t->l_range + 1);
}

static int alloc_table(db_hkl_table *t, const char *path, db_error *err)
{
    t->h_range = t->h_max - t->h_min + 1;
    t->k_range = t->k_max - t->k_min + 1;
    t->l_range = t->l_max - t->l_min + 1;
    if (t->h_range <= 0 || t->k_range <= 0 || t->l_range <= 0)
        return db_fail(err, DB_ERR_FORMAT, "%s: no reflections", path);
    double n = (double)(t->h_range + 1) * (t->k_range + 1) * (t->l_range + 1);
    if (n > 4e9 / sizeof(double))
        return db_fail(err, DB_ERR_FORMAT, "%s: index ranges h %d..%d k %d..%d l %d..%d are too large", path, t->h_min,
                       t->h_max, t->k_min, t->k_max, t->l_min, t->l_max);
    t->F = (double *)calloc(table_size(t), sizeof(double));
    if (!t->F) return db_fail(err, DB_ERR_NOMEM, "%s: out of memory for the structure-factor table", path);
    return DB_OK;
}

/* Parses one line into h k l F; returns 1 on success, 0 for a blank line, -1 malformed. */
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
    if (end == p || errno == ERANGE || isnan(*F)) return -1;
    p = end;
    while (isspace((unsigned char)*p)) p++;
    return *p == '\0' ? 1 : -1;
}

int db_hkl_read(const char *path, double default_F, db_hkl_table *t, db_error *err)
{
    memset(t, 0, sizeof *t);
    char *data;
    size_t len;
    int rc = db_read_file(path, &data, &len, err);
    if (rc) return rc;
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
            if (ok < 0) {
                rc = db_fail(err, DB_ERR_FORMAT, "%s:%ld: expected 'h k l F' with integer h k l and a number F", path, lineno);
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
            if (default_F != 0.0) {
                for (int h = 0; h < t->h_range; h++)
                    for (int k = 0; k < t->k_range; k++)
                        for (int l = 0; l < t->l_range; l++)
                            t->F[((size_t)h * (t->k_range + 1) + k) * (t->l_range + 1) + l] = default_F;
            }
        }
    }
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

int db_fdump_read(const char *path, db_hkl_table *t, db_error *err)
{
    memset(t, 0, sizeof *t);
    char *data;
    size_t len;
    int rc = db_read_file(path, &data, &len, err);
    if (rc) return rc;
    char *ff = memchr(data, '\f', len < 256 ? len : 256);
    int consumed = 0;
    if (!ff || sscanf(data, "%d %d %d %d %d %d%n", &t->h_min, &t->h_max, &t->k_min, &t->k_max, &t->l_min, &t->l_max,
                      &consumed) != 6) {
        free(data);
        return db_fail(err, DB_ERR_FORMAT, "%s: not a structure-factor cache (expected six integers, a newline and a form feed)", path);
    }
    rc = alloc_table(t, path, err);
    if (rc) {
        free(data);
        return rc;
    }
    size_t off = (size_t)(ff - data) + 1;
    size_t need = table_size(t) * sizeof(double);
    if (len - off != need) {
        free(data);
        db_hkl_free(t);
        return db_fail(err, DB_ERR_FORMAT, "%s: expected %zu bytes of structure factors after the header, found %zu", path,
                       need, len - off);
    }
    memcpy(t->F, data + off, need);
    free(data);
    t->hkls = (long)t->h_range * t->k_range * t->l_range;
    return DB_OK;
}
