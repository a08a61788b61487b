/* error.c: db_fail and db_error_clear, the one way every failure reaches the caller: a status code, plus a
 * message in its db_error when it gave one. */
#include "error.h"
#include <stdarg.h>
#include <stdio.h>

int db_fail(db_error *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->code = code;
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
    }
    return code;
}

void db_error_clear(db_error *err)
{
    if (err) {
        err->code = DB_OK;
        err->message[0] = '\0';
    }
}
