/* structure_factors.c: the structure factors as values of a simulation (issue 19): the table's list of
 * reflections, reading and setting F in place, and the CSR form of the F-Jacobian that a run's renderer leaves in
 * its span buffers (backend.h db_fjac_buf; the derivative itself is taken in physics.h, db_fjac_add).
 *
 * Columns are list positions. An hkl file's list is explicit (hkl.c, file order); an Fdump cache's is implicit,
 * every entry of its index ranges, so a column is the grid entry with the padding slots taken out. Grid entries go
 * to columns through a sorted copy of the list's grid entries, built on first use: memory in proportion to the
 * list, not to the (possibly much larger, mostly -default_F) grid. */
#include "sim.h"
#include "error.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void db_csr_free(db_csr *m)
{
    if (!m) return;
    free(m->row_ptr);
    free(m->col);
    free(m->val);
    memset(m, 0, sizeof *m);
}

void db_sf_free(db_sim *sim)
{
    free(sim->sf_sorted_at);
    free(sim->sf_sorted_col);
    free(sim->sf_col_of_grid);
    sim->sf_col_of_grid = NULL;
    for (long i = 0; i < sim->sf_nbufs; i++) {
        free(sim->sf_bufs[i].at);
        free(sim->sf_bufs[i].val);
    }
    free(sim->sf_bufs);
    free(sim->sf_off);
    free(sim->sf_len);
    sim->sf_bufs = NULL;
    sim->sf_off = NULL;
    sim->sf_len = NULL;
    sim->sf_nbufs = sim->sf_npix = 0;
    sim->sf_sorted_at = NULL;
    sim->sf_sorted_col = NULL;
}

static size_t grid_of(const db_hkl_table *t, long h, long k, long l)
{
    return ((size_t)(h - t->h_min) * ((size_t)t->k_range + 1) + (size_t)(k - t->k_min)) * ((size_t)t->l_range + 1) +
           (size_t)(l - t->l_min);
}

long db_sim_structure_factor_count(const db_sim *sim)
{
    if (!sim || !sim->have_hkl) return 0;
    const db_hkl_table *t = &sim->hkl;
    return t->list_hkl ? t->nlist : (long)t->h_range * t->k_range * t->l_range;
}

/* hkl of list entry j */
static void list_hkl(const db_hkl_table *t, long j, int out[3])
{
    if (t->list_hkl) {
        memcpy(out, t->list_hkl + 3 * j, 3 * sizeof(int));
        return;
    }
    out[2] = t->l_min + (int)(j % t->l_range);
    j /= t->l_range;
    out[1] = t->k_min + (int)(j % t->k_range);
    out[0] = t->h_min + (int)(j / t->k_range);
}

size_t db_sf_grid_at(const db_sim *sim, long j)
{
    int hkl[3];
    list_hkl(&sim->hkl, j, hkl);
    return grid_of(&sim->hkl, hkl[0], hkl[1], hkl[2]);
}

typedef struct at_col {
    size_t at;
    long col;
} at_col;

static int cmp_at(const void *a, const void *b)
{
    size_t x = ((const at_col *)a)->at, y = ((const at_col *)b)->at;
    return x < y ? -1 : x > y;
}

/* The explicit list's grid entries, sorted, with their columns (once per simulation: the list never changes). */
static int ensure_sorted(db_sim *sim, db_error *err)
{
    if (sim->sf_sorted_at || !sim->hkl.list_hkl) return DB_OK;
    long n = sim->hkl.nlist;
    at_col *p = (at_col *)malloc((size_t)(n > 0 ? n : 1) * sizeof *p);
    size_t *at = (size_t *)malloc((size_t)(n > 0 ? n : 1) * sizeof *at);
    long *col = (long *)malloc((size_t)(n > 0 ? n : 1) * sizeof *col);
    if (!p || !at || !col) {
        free(p);
        free(at);
        free(col);
        return db_fail(err, DB_ERR_NOMEM, "out of memory for the list of %ld structure factors", n);
    }
    for (long j = 0; j < n; j++) {
        p[j].at = db_sf_grid_at(sim, j);
        p[j].col = j;
    }
    qsort(p, (size_t)n, sizeof *p, cmp_at);
    for (long j = 0; j < n; j++) {
        at[j] = p[j].at;
        col[j] = p[j].col;
    }
    free(p);
    sim->sf_sorted_at = at;
    sim->sf_sorted_col = col;
    return DB_OK;
}

/* The column of grid entry `at`, or -1 (not listed, or a padding slot). */
static long column_of(const db_sim *sim, size_t at)
{
    const db_hkl_table *t = &sim->hkl;
    if (!t->list_hkl) {
        size_t ldim = (size_t)t->l_range + 1, kdim = (size_t)t->k_range + 1;
        size_t li = at % ldim, ki = (at / ldim) % kdim, hi = at / ldim / kdim;
        if (li >= (size_t)t->l_range || ki >= (size_t)t->k_range || hi >= (size_t)t->h_range) return -1;
        return ((long)hi * t->k_range + (long)ki) * t->l_range + (long)li;
    }
    long lo = 0, hi = t->nlist - 1;
    while (lo <= hi) {
        long mid = lo + (hi - lo) / 2;
        if (sim->sf_sorted_at[mid] == at) return sim->sf_sorted_col[mid];
        if (sim->sf_sorted_at[mid] < at) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

long db_sim_structure_factor_index(const db_sim *sim, int h, int k, int l)
{
    if (!sim || !sim->have_hkl) return -1;
    const db_hkl_table *t = &sim->hkl;
    if (h < t->h_min || h > t->h_max || k < t->k_min || k > t->k_max || l < t->l_min || l > t->l_max) return -1;
    /* the sorted list is a cache of values that never change: building it is not a change of the simulation */
    if (ensure_sorted((db_sim *)sim, NULL)) return -1;
    return column_of(sim, grid_of(t, h, k, l));
}

double db_sim_structure_factor_at(const db_sim *sim, long j) { return db_sim_F(sim)[db_sf_grid_at(sim, j)]; }

long db_sim_get_structure_factors(const db_sim *sim, int *hkl, double *F, long capacity, db_error *err)
{
    db_error_clear(err);
    if (!sim) {
        db_fail(err, DB_ERR_ARGUMENT, "db_sim_get_structure_factors: no simulation");
        return -1;
    }
    if (capacity < 0) {
        db_fail(err, DB_ERR_ARGUMENT, "db_sim_get_structure_factors: capacity %ld < 0", capacity);
        return -1;
    }
    long n = db_sim_structure_factor_count(sim);
    if (n > capacity) n = capacity;
    for (long j = 0; j < n; j++) {
        int x[3];
        list_hkl(&sim->hkl, j, x);
        if (hkl) memcpy(hkl + 3 * j, x, sizeof x);
        if (F) F[j] = sim->hkl.F[grid_of(&sim->hkl, x[0], x[1], x[2])];
    }
    return n;
}

static int check_F(double F, const int hkl[3], long j, db_error *err)
{
    if (isfinite(F) && F >= 0.0) return DB_OK;
    return db_fail(err, DB_ERR_ARGUMENT,
                   "structure factor %ld (h k l = %d %d %d): F = %g, expected a finite number >= 0; nothing was changed",
                   j, hkl[0], hkl[1], hkl[2], F);
}

static int need_table(const db_sim *sim, const char *fn, db_error *err)
{
    if (!sim) return db_fail(err, DB_ERR_ARGUMENT, "%s: no simulation", fn);
    if (!sim->have_hkl)
        return db_fail(err, DB_ERR_ARGUMENT, "%s: the simulation has no structure-factor table (-hkl FILE or an Fdump "
                       "cache); -default_F alone is not a parameter", fn);
    return DB_OK;
}

int db_sim_set_structure_factors(db_sim *sim, const double *F, long n, db_error *err)
{
    db_error_clear(err);
    int rc = need_table(sim, "db_sim_set_structure_factors", err);
    if (rc) return rc;
    long count = db_sim_structure_factor_count(sim);
    if (n != count)
        return db_fail(err, DB_ERR_ARGUMENT, "db_sim_set_structure_factors: %ld values for a list of %ld structure factors",
                       n, count);
    if (n > 0 && !F) return db_fail(err, DB_ERR_ARGUMENT, "db_sim_set_structure_factors: no F buffer");
    for (long j = 0; j < n; j++) {
        int x[3];
        list_hkl(&sim->hkl, j, x);
        if ((rc = check_F(F[j], x, j, err))) return rc;
    }
    for (long j = 0; j < n; j++) sim->hkl.F[db_sf_grid_at(sim, j)] = F[j];
    sim->F_version++;
    return DB_OK;
}

int db_sim_set_structure_factors_hkl(db_sim *sim, const int *hkl, const double *F, long n, db_error *err)
{
    db_error_clear(err);
    int rc = need_table(sim, "db_sim_set_structure_factors_hkl", err);
    if (rc) return rc;
    if (n < 0 || (n > 0 && (!hkl || !F)))
        return db_fail(err, DB_ERR_ARGUMENT, "db_sim_set_structure_factors_hkl: %ld reflections, or no hkl or F buffer", n);
    if ((rc = ensure_sorted(sim, err))) return rc;
    for (long i = 0; i < n; i++) {
        const int *x = hkl + 3 * i;
        long j = db_sim_structure_factor_index(sim, x[0], x[1], x[2]);
        if (j < 0)
            return db_fail(err, DB_ERR_ARGUMENT,
                           "structure factor %ld: h k l = %d %d %d is not in the table (its list has %ld reflections, "
                           "h %d..%d k %d..%d l %d..%d); nothing was changed",
                           i, x[0], x[1], x[2], db_sim_structure_factor_count(sim), sim->hkl.h_min, sim->hkl.h_max,
                           sim->hkl.k_min, sim->hkl.k_max, sim->hkl.l_min, sim->hkl.l_max);
        if ((rc = check_F(F[i], x, i, err))) return rc;
    }
    for (long i = 0; i < n; i++) sim->hkl.F[grid_of(&sim->hkl, hkl[3 * i], hkl[3 * i + 1], hkl[3 * i + 2])] = F[i];
    sim->F_version++;
    return DB_OK;
}

int db_sf_workspace(db_sim *sim, db_error *err)
{
    const long nspans = sim->nspans > 0 ? sim->nspans : 1, count = sim->count > 0 ? sim->count : 1;
    if (nspans > sim->sf_nbufs) {
        db_fjac_buf *b = (db_fjac_buf *)realloc(sim->sf_bufs, (size_t)nspans * sizeof *b);
        if (!b) return db_fail(err, DB_ERR_NOMEM, "out of memory for the F-Jacobian");
        memset(b + sim->sf_nbufs, 0, (size_t)(nspans - sim->sf_nbufs) * sizeof *b);
        sim->sf_bufs = b;
        sim->sf_nbufs = nspans;
    }
    if (count > sim->sf_npix) {
        size_t *off = (size_t *)realloc(sim->sf_off, (size_t)count * sizeof *off);
        if (off) sim->sf_off = off;
        unsigned *len = off ? (unsigned *)realloc(sim->sf_len, (size_t)count * sizeof *len) : NULL;
        if (!off || !len) return db_fail(err, DB_ERR_NOMEM, "out of memory for the F-Jacobian of %ld pixels", count);
        sim->sf_len = len;
        sim->sf_npix = count;
    }
    for (long i = 0; i < sim->sf_nbufs; i++) {
        sim->sf_bufs[i].n = 0;
        sim->sf_bufs[i].failed = 0;
    }
    return DB_OK;
}

/* ---- the CSR F-Jacobian ---- */

/* Grid entry -> column at one load per entry: 4 bytes per grid entry (half the F table's 8), built on the first
 * F-Jacobian and kept; a grid past DB_SF_MAP_MAX_BYTES goes through the sorted list instead (a binary search per
 * entry). */
#define DB_SF_MAP_MAX_BYTES ((size_t)256 << 20)

static int ensure_map(db_sim *sim, db_error *err)
{
    const db_hkl_table *t = &sim->hkl;
    size_t grid = ((size_t)t->h_range + 1) * ((size_t)t->k_range + 1) * ((size_t)t->l_range + 1);
    if (sim->sf_col_of_grid || grid * sizeof(int32_t) > DB_SF_MAP_MAX_BYTES || db_sim_structure_factor_count(sim) > INT32_MAX)
        return DB_OK;
    int rc = ensure_sorted(sim, err);
    if (rc) return rc;
    int32_t *map = (int32_t *)malloc(grid * sizeof(int32_t));
    if (!map) return DB_OK; /* the binary search does without it */
    for (size_t g = 0; g < grid; g++) map[g] = (int32_t)column_of(sim, g);
    sim->sf_col_of_grid = map;
    return DB_OK;
}

static inline long column_fast(const db_sim *sim, size_t at)
{
    return sim->sf_col_of_grid ? (long)sim->sf_col_of_grid[at] : column_of(sim, at);
}

static int cmp_col(const void *a, const void *b)
{
    long x = ((const at_col *)a)->col, y = ((const at_col *)b)->col;
    return x < y ? -1 : x > y;
}

/* A row's entries by ascending column: mostly one entry, or a tricubic block already in order. */
static void sort_row(at_col *row, size_t n)
{
    size_t i = 1;
    while (i < n && row[i - 1].col <= row[i].col) i++;
    if (i >= n) return;
    if (n > 32) {
        qsort(row, n, sizeof *row, cmp_col);
        return;
    }
    for (; i < n; i++) {
        at_col x = row[i];
        size_t j = i;
        for (; j > 0 && row[j - 1].col > x.col; j--) row[j] = row[j - 1];
        row[j] = x;
    }
}

int db_sf_assemble(db_sim *sim, const db_fjac_buf *bufs, const size_t *off, const unsigned *len, db_csr *out,
                   db_error *err)
{
    out->rows = out->cols = out->nnz = 0;
    int rc = ensure_sorted(sim, err);
    if (!rc) rc = ensure_map(sim, err);
    if (rc) return rc;
    const long rows = sim->count, nspans = sim->nspans;
    /* the arrays of an earlier result are reused (fresh megabytes each call were page faults, a third of a still's
     * F-Jacobian) */
    if (!out->row_ptr || out->row_cap < rows) {
        long *rp = (long *)realloc(out->row_ptr, ((size_t)rows + 1) * sizeof(long));
        if (!rp) return db_fail(err, DB_ERR_NOMEM, "out of memory for the F-Jacobian of %ld pixels", rows);
        out->row_ptr = rp;
        out->row_cap = rows;
    }
    out->rows = rows;
    out->cols = db_sim_structure_factor_count(sim);
    out->row_ptr[0] = 0;
    /* pass 1: listed entries per row (spans in parallel: each pixel's row is its own) */
    size_t widest = 0;
#pragma omp parallel for schedule(dynamic, 4) reduction(max : widest)
    for (long i = 0; i < nspans; i++) {
        const db_span *sp = &sim->spans[i];
        for (long pos = sp->first; pos <= sp->first + (sp->f1 - sp->f0); pos++) {
            long n = 0;
            for (size_t e = off[pos]; e < off[pos] + len[pos]; e++) n += column_fast(sim, bufs[i].at[e]) >= 0;
            out->row_ptr[pos + 1] = n;
            if (len[pos] > widest) widest = len[pos];
        }
    }
    for (long r = 0; r < rows; r++) out->row_ptr[r + 1] += out->row_ptr[r];
    size_t total = (size_t)out->row_ptr[rows];
    if (!out->col || !out->val || (size_t)out->nnz_cap < total) {
        size_t cap = total > 0 ? total : 1;
        long *col = (long *)realloc(out->col, cap * sizeof(long));
        if (col) out->col = col;
        double *val = col ? (double *)realloc(out->val, cap * sizeof(double)) : NULL;
        if (!col || !val) {
            db_csr_free(out);
            return db_fail(err, DB_ERR_NOMEM, "out of memory for the F-Jacobian (%zu entries)", total);
        }
        out->val = val;
        out->nnz_cap = (long)cap;
    }
    out->nnz = (long)total;
    /* pass 2: each row's listed entries by ascending column (an entry's place in the row kept in .at) */
    int failed = 0;
#pragma omp parallel reduction(| : failed)
    {
        at_col *row = (at_col *)malloc((widest > 0 ? widest : 1) * sizeof *row);
        double *rv = (double *)malloc((widest > 0 ? widest : 1) * sizeof *rv);
        failed = !row || !rv;
#pragma omp for schedule(dynamic, 4)
        for (long i = 0; i < nspans; i++) {
            const db_span *sp = &sim->spans[i];
            for (long pos = sp->first; !failed && pos <= sp->first + (sp->f1 - sp->f0); pos++) {
                size_t n = 0;
                for (size_t e = off[pos]; e < off[pos] + len[pos]; e++) {
                    long c = column_fast(sim, bufs[i].at[e]);
                    if (c < 0) continue;
                    row[n].col = c;
                    row[n].at = n;
                    rv[n++] = bufs[i].val[e];
                }
                sort_row(row, n);
                long base = out->row_ptr[pos];
                for (size_t e = 0; e < n; e++) {
                    out->col[base + (long)e] = row[e].col;
                    out->val[base + (long)e] = rv[row[e].at];
                }
            }
        }
        free(row);
        free(rv);
    }
    if (failed) {
        db_csr_free(out);
        return db_fail(err, DB_ERR_NOMEM, "out of memory for the F-Jacobian (%zu entries)", total);
    }
    return DB_OK;
}
