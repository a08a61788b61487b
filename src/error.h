/* Internal error helpers: every failure becomes a status code plus a message in the caller's db_error. */
#ifndef DB_ERROR_H
#define DB_ERROR_H
#include "dualbragg.h"

#if defined(__GNUC__)
#define DB_PRINTF_LIKE(fmt_index, arg_index) __attribute__((format(printf, fmt_index, arg_index)))
#else
#define DB_PRINTF_LIKE(fmt_index, arg_index)
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Records code and formatted message (if err is non-NULL) and returns code, so callers can `return db_fail(...)`. */
int db_fail(db_error *err, int code, const char *fmt, ...) DB_PRINTF_LIKE(3, 4);
void db_error_clear(db_error *err);

#ifdef __cplusplus
}
#endif
#endif
