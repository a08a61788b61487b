/* spots.c: see observed.h (db_find_spots).
 *
 * The rule, over the listed pixels only (an unlisted pixel, or one whose value is not finite, is not there at
 * all, not even as a neighbour):
 *   background = median of the listed values (the mean of the two middle ones for an even count);
 *   noise      = max(1.4826 * median |value - background|, sqrt(max(background, 1)))  (robust sigma, but never
 *                below the Poisson sigma of the background);
 *   threshold  = background + 5 * noise;
 *   a candidate is a pixel with value > threshold that is a local maximum: it comes first, in the order (value
 *                descending, then pixel index ascending), among itself and its listed 3x3 neighbours. The index
 *                order breaks ties, so a rectangular flat plateau gives one maximum (its first pixel in
 *                row-major order);
 *   the candidates, in that same order, are accepted greedily when their centre is at least `size` pixels
 *   (Chebyshev distance) from every centre accepted so far, until n are accepted.
 * A box is centre - size/2 .. centre - size/2 + size - 1 in each direction, clipped to the detector.
 *
 * Cost: O(count) for the median (quickselect), the neighbour test (sorted pixel list, monotone pointers to the
 * rows above and below) and the spacing test (a hash of accepted centres by size x size cell, which holds at
 * most one centre each); O(count log count) to sort the list when it is not already sorted, and
 * O(c log c) to order the c candidates. */
#include "observed.h"
#include "error.h"

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    double v;
    long p;
} spot_candidate;

static int cmp_long(const void *a, const void *b)
{
    long x = *(const long *)a, y = *(const long *)b;
    return (x > y) - (x < y);
}

/* Value descending, then pixel index ascending: a strict total order on distinct pixels. */
static int cmp_candidate(const void *a, const void *b)
{
    const spot_candidate *x = a, *y = b;
    if (x->v != y->v)
        return x->v < y->v ? 1 : -1;
    return (x->p > y->p) - (x->p < y->p);
}

/* 1 when pixel (p, v) comes before (q, w) in the candidate order. */
static int before(double v, long p, double w, long q)
{
    return v > w || (v == w && p < q);
}

/* The k-th smallest (0-based) of a[0..n), rearranging a: three-way quickselect with a pseudo-random pivot,
 * expected O(n) even on many equal values. On return a[0..k) <= a[k] <= a[k+1..n). */
static double select_kth(double *a, size_t n, size_t k)
{
    size_t lo = 0, hi = n; /* the k-th lies in a[lo..hi) */
    uint64_t state = 0x9E3779B97F4A7C15ull;
    while (hi - lo > 1) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        double pivot = a[lo + (size_t)(state % (uint64_t)(hi - lo))];
        /* a[lo..lt) < pivot, a[lt..i) == pivot, a[gt..hi) > pivot */
        size_t lt = lo, i = lo, gt = hi;
        while (i < gt) {
            double x = a[i];
            if (x < pivot) {
                a[i++] = a[lt];
                a[lt++] = x;
            } else if (x > pivot) {
                a[i] = a[--gt];
                a[gt] = x;
            } else {
                i++;
            }
        }
        if (k < lt)
            hi = lt;
        else if (k >= gt)
            lo = gt;
        else
            return pivot;
    }
    return a[k];
}

/* Median of a[0..n), n >= 1, rearranging a. */
static double median(double *a, size_t n)
{
    size_t k = n / 2;
    double upper = select_kth(a, n, k);
    if (n % 2)
        return upper;
    double lower = a[0]; /* the largest of a[0..k), all <= upper */
    for (size_t i = 1; i < k; i++)
        if (a[i] > lower)
            lower = a[i];
    return lower + 0.5 * (upper - lower);
}

/* Is pixel i of the sorted list P (value v) first, in candidate order, among its listed neighbours in the row
 * whose first neighbour index is target = p -/+ fpixels - 1? *ptr is a monotone cursor into P for that row. */
static int beats_row(const double *obs, const long *P, size_t m, size_t *ptr, long target, long row, long f,
                     int fpixels, long p, double v)
{
    size_t a = *ptr;
    while (a < m && P[a] < target)
        a++;
    *ptr = a;
    for (size_t j = a; j < m && P[j] <= target + 2; j++) {
        long q = P[j];
        if (q / fpixels != row)
            continue;
        long qf = q % fpixels;
        if (qf < f - 1 || qf > f + 1)
            continue;
        if (!before(v, p, obs[q], q))
            return 0;
    }
    return 1;
}

/* Accepted centres by cell (cx, cy) of size x size pixels, open addressing. A cell holds at most one centre,
 * since two points in one cell are less than `size` apart. */
typedef struct {
    long *key; /* -1: empty */
    int *cf, *cs;
    size_t mask;
} centre_hash;

static size_t hash_slot(const centre_hash *h, long key)
{
    uint64_t x = (uint64_t)key * 0x9E3779B97F4A7C15ull;
    return (size_t)(x >> 17) & h->mask;
}

static int hash_find(const centre_hash *h, long key, int *f, int *s)
{
    for (size_t i = hash_slot(h, key);; i = (i + 1) & h->mask) {
        if (h->key[i] == -1)
            return 0;
        if (h->key[i] == key) {
            *f = h->cf[i];
            *s = h->cs[i];
            return 1;
        }
    }
}

static void hash_put(centre_hash *h, long key, int f, int s)
{
    size_t i = hash_slot(h, key);
    while (h->key[i] != -1)
        i = (i + 1) & h->mask;
    h->key[i] = key;
    h->cf[i] = f;
    h->cs[i] = s;
}

static int far_from_accepted(const centre_hash *h, long ncx, long ncy, int size, int f, int s)
{
    long cx = f / size, cy = s / size;
    for (long y = cy - 1; y <= cy + 1; y++) {
        for (long x = cx - 1; x <= cx + 1; x++) {
            int af, as;
            if (x < 0 || y < 0 || x >= ncx || y >= ncy || !hash_find(h, y * ncx + x, &af, &as))
                continue;
            if (abs(af - f) < size && abs(as - s) < size)
                return 0;
        }
    }
    return 1;
}

static void clip_box(int centre, int size, int extent, int *lo, int *hi)
{
    long a = (long)centre - size / 2, b = a + size - 1;
    *lo = (int)(a < 0 ? 0 : a);
    *hi = (int)(b > extent - 1 ? extent - 1 : b);
}

int db_find_spots(const double *obs, int fpixels, int spixels, const long *pixels, long count, int n, int size,
                  int *boxes, db_error *err)
{
    if (n < 1) {
        db_fail(err, DB_ERR_ARGUMENT, "-spots must be at least 1 (got %d)", n);
        return -1;
    }
    if (size < 1) {
        db_fail(err, DB_ERR_ARGUMENT, "-spot_size must be at least 1 pixel (got %d)", size);
        return -1;
    }
    if (fpixels <= 0 || spixels <= 0 || (long)fpixels > LONG_MAX / spixels) {
        db_fail(err, DB_ERR_ARGUMENT, "spot search: bad detector size %d x %d", fpixels, spixels);
        return -1;
    }
    if (count < 0) {
        db_fail(err, DB_ERR_ARGUMENT, "spot search: negative pixel count %ld", count);
        return -1;
    }
    if (count == 0)
        return 0;
    if (!obs || !pixels || !boxes || (size_t)count > SIZE_MAX / sizeof(spot_candidate)) {
        db_fail(err, DB_ERR_ARGUMENT, "spot search: no image, pixel list or output, or %ld pixels", count);
        return -1;
    }
    long npix = (long)fpixels * spixels;

    /* The listed pixels with a finite value, sorted and without repeats. */
    size_t m = 0;
    int sorted = 1;
    long *P = malloc((size_t)count * sizeof *P);
    double *vals = malloc((size_t)count * sizeof *vals);
    spot_candidate *cand = NULL;
    centre_hash h = {NULL, NULL, NULL, 0};
    int found = -1;
    if (!P || !vals) {
        db_fail(err, DB_ERR_NOMEM, "spot search: out of memory (%ld pixels)", count);
        goto done;
    }
    for (long i = 0; i < count; i++) {
        long p = pixels[i];
        if (p < 0 || p >= npix) {
            db_fail(err, DB_ERR_ARGUMENT, "spot search: pixel index %ld is outside the %d x %d detector", p,
                    fpixels, spixels);
            goto done;
        }
        if (!isfinite(obs[p]))
            continue;
        if (m > 0 && p <= P[m - 1])
            sorted = 0;
        P[m++] = p;
    }
    if (!sorted) {
        qsort(P, m, sizeof *P, cmp_long);
        size_t u = 0;
        for (size_t i = 0; i < m; i++)
            if (u == 0 || P[i] != P[u - 1])
                P[u++] = P[i];
        m = u;
    }
    if (m == 0) {
        found = 0;
        goto done;
    }

    for (size_t i = 0; i < m; i++)
        vals[i] = obs[P[i]];
    double background = median(vals, m);
    for (size_t i = 0; i < m; i++)
        vals[i] = fabs(obs[P[i]] - background);
    double mad = median(vals, m);
    double noise = fmax(1.4826 * mad, sqrt(fmax(background, 1.0)));
    double threshold = background + 5.0 * noise;

    free(vals); /* not needed any more: a smaller peak for large images */
    vals = NULL;

    /* Local maxima above the threshold. */
    cand = malloc(m * sizeof *cand);
    if (!cand) {
        db_fail(err, DB_ERR_NOMEM, "spot search: out of memory (%zu pixels)", m);
        goto done;
    }
    size_t c = 0, above = 0, below = 0;
    for (size_t i = 0; i < m; i++) {
        long p = P[i];
        double v = obs[p];
        if (!(v > threshold))
            continue;
        long f = p % fpixels, s = p / fpixels;
        if (i > 0 && P[i - 1] == p - 1 && f > 0 && !before(v, p, obs[p - 1], p - 1))
            continue;
        if (i + 1 < m && P[i + 1] == p + 1 && f < fpixels - 1 && !before(v, p, obs[p + 1], p + 1))
            continue;
        if (s > 0 && !beats_row(obs, P, m, &above, p - fpixels - 1, s - 1, f, fpixels, p, v))
            continue;
        if (s < spixels - 1 && !beats_row(obs, P, m, &below, p + fpixels - 1, s + 1, f, fpixels, p, v))
            continue;
        cand[c].v = v;
        cand[c].p = p;
        c++;
    }
    qsort(cand, c, sizeof *cand, cmp_candidate);

    /* Greedy acceptance with the spacing rule. */
    size_t want = (size_t)n < c ? (size_t)n : c, cap = 16;
    while (cap < 2 * want)
        cap *= 2;
    h.key = malloc(cap * sizeof *h.key);
    h.cf = malloc(cap * sizeof *h.cf);
    h.cs = malloc(cap * sizeof *h.cs);
    if (!h.key || !h.cf || !h.cs) {
        db_fail(err, DB_ERR_NOMEM, "spot search: out of memory (%zu candidates)", c);
        goto done;
    }
    for (size_t i = 0; i < cap; i++)
        h.key[i] = -1;
    h.mask = cap - 1;
    long ncx = (fpixels + (long)size - 1) / size, ncy = (spixels + (long)size - 1) / size;
    found = 0;
    for (size_t i = 0; i < c && (size_t)found < want; i++) {
        int f = (int)(cand[i].p % fpixels), s = (int)(cand[i].p / fpixels);
        if (!far_from_accepted(&h, ncx, ncy, size, f, s))
            continue;
        hash_put(&h, (long)(s / size) * ncx + f / size, f, s);
        int *box = boxes + 4 * (size_t)found;
        clip_box(f, size, fpixels, &box[0], &box[1]);
        clip_box(s, size, spixels, &box[2], &box[3]);
        found++;
    }

done:
    free(P);
    free(vals);
    free(cand);
    free(h.key);
    free(h.cf);
    free(h.cs);
    return found;
}
