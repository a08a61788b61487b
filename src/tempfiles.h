/* tempfiles.h: the temporary files of outputs not yet renamed into place (src/fileio.c), so that a program stopped
 * by SIGINT, SIGTERM or SIGHUP removes them instead of leaving "*.dualbragg.tmp.*" files beside its outputs; the
 * all-or-nothing rule then holds for interrupts too (nothing was renamed, nothing is left). */
#ifndef DB_TEMPFILES_H
#define DB_TEMPFILES_H

/* Remembers a temporary file's name (the string must live until db_temp_forget). When every slot is taken the name
 * is not remembered: that file alone would survive an interrupt. */
void db_temp_register(const char *name);
/* Forgets it (call before freeing or reusing the string, after the file was renamed or removed). */
void db_temp_forget(const char *name);
/* Between these two, a signal waits (the renaming of a set of outputs into place, which must finish or not start);
 * db_temp_release then acts on it. */
void db_temp_hold(void);
void db_temp_release(void);
/* Installs the handlers (the programs do, at their start; the library never does behind its caller's back):
 * on SIGINT, SIGTERM or SIGHUP the remembered files are removed and the signal then ends the process as it would
 * have (its exit status says so). A signal the process ignores stays ignored. */
void db_temp_cleanup_on_signals(void);

#endif
