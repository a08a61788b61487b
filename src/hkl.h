/* hkl.h: structure-factor tables: the -hkl text file and the Fdump.bin cache (spec §3.12). */
#ifndef DB_HKL_H
#define DB_HKL_H
#include "dualbragg.h"
#include <stddef.h>

typedef struct db_hkl_table {
    int h_min, h_max, k_min, k_max, l_min, l_max;
    int h_range, k_range, l_range; /* max - min + 1 */
    long hkls;                     /* entries read (hkl file) or h_range*k_range*l_range (Fdump) */
    double *F;                     /* (h_range+1)(k_range+1)(l_range+1), l fastest; the +1 slots are padding */
    /* The reflections the table lists, the structure factors a simulation exposes as values (README "Structure
     * factors"): an hkl file's, in file order (a repeated line once); NULL for an Fdump cache, which lists every
     * entry of its ranges (h, then k, then l fastest). Entries an hkl file leaves out hold -default_F and are not
     * listed. */
    int *list_hkl;                 /* [3*nlist] */
    long nlist;
} db_hkl_table;

/* Reads "h k l F" lines (integer indices; blank lines skipped). In-range entries missing from the file get
 * default_F when it is non-zero, as the reference. Errors name the file and line. A reflection given twice
 * with different F is refused, naming both lines (the reference silently keeps the last); a repeat with the
 * same F is accepted. */
int db_hkl_read(const char *path, double default_F, db_hkl_table *t, db_error *err);
/* The reference's cache format: "%d %d %d %d %d %d\n\f" (hmin hmax kmin kmax lmin lmax) then native doubles. */
int db_fdump_read(const char *path, db_hkl_table *t, db_error *err);
int db_fdump_write(const char *path, const db_hkl_table *t, db_error *err);
void db_hkl_free(db_hkl_table *t);

/* The largest table (in bytes) a reader allocates: DB_HKL_TABLE_MAX_BYTES, or half the physical memory when
 * that is smaller. Index ranges that need more are refused with the figure, before anything is allocated. */
#define DB_HKL_TABLE_MAX_BYTES ((size_t)2 << 30)
/* The largest -hkl text file: real lists are tens of MB, and the largest (a P1 expansion of a big unit cell to
 * high resolution, some 3e7 reflections of about 30 bytes) under 1 GB; 1 GiB is ample, and the whole text is
 * held in memory while the table is built. Longer files (or streams that do not end) are refused. */
#define DB_HKL_TEXT_MAX_BYTES ((size_t)1 << 30)
size_t db_hkl_table_limit(void);
/* Lowers the limit for this process (0: back to the default); the fuzzers use it to keep each input fast. */
void db_hkl_set_table_limit(size_t bytes);

#endif
