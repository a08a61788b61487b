/* tempfiles.c: see tempfiles.h. The handler may run on any thread, at any moment: it only reads the slots (lock-free
 * atomic pointers) and calls unlink, both async-signal-safe. */
#define _POSIX_C_SOURCE 200809L
#include "tempfiles.h"

#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <string.h>
#include <unistd.h>

/* More than a run has at once: the outputs of dualbragg with every derivative image and its picture (~60). */
#define MAX_TEMPS 512

static const char *_Atomic slots[MAX_TEMPS];

void db_temp_register(const char *name)
{
    for (int k = 0; k < MAX_TEMPS; k++) {
        const char *expected = NULL;
        if (atomic_compare_exchange_strong(&slots[k], &expected, name)) return;
    }
}

void db_temp_forget(const char *name)
{
    for (int k = 0; k < MAX_TEMPS; k++) {
        const char *expected = name;
        if (atomic_compare_exchange_strong(&slots[k], &expected, NULL)) return;
    }
}

/* While outputs are renamed into place (db_temp_hold), a signal waits: removing the temporaries then would leave
 * some outputs replaced and others not. */
static atomic_int held, pending;

static void remove_and_die(int sig)
{
    if (atomic_load(&held)) {
        atomic_store(&pending, sig);
        return;
    }
    for (int k = 0; k < MAX_TEMPS; k++) {
        const char *name = atomic_load(&slots[k]);
        if (name) unlink(name);
    }
    signal(sig, SIG_DFL); /* then the default action: the process ends by this signal, as it would have */
    raise(sig);
}

void db_temp_cleanup_on_signals(void)
{
    static const int sigs[] = {SIGINT, SIGTERM, SIGHUP};
    for (size_t k = 0; k < sizeof sigs / sizeof sigs[0]; k++) {
        struct sigaction old, sa;
        if (sigaction(sigs[k], NULL, &old) != 0 || old.sa_handler == SIG_IGN) continue; /* nohup stays nohup */
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = remove_and_die;
        sigemptyset(&sa.sa_mask);
        sigaction(sigs[k], &sa, NULL);
    }
}

void db_temp_hold(void)
{
    atomic_store(&held, 1);
}

void db_temp_release(void)
{
    atomic_store(&held, 0);
    int sig = atomic_exchange(&pending, 0);
    if (sig) remove_and_die(sig); /* the renames are done: now the signal ends the process */
}
