/* fifo_writer.h: a stream to read from, for the tests of readers that must not trust a size they have not checked
 * (a FIFO has none to check beforehand). Shared by test_smv.c, test_observed.c and test_hardening.c. */
#ifndef DB_FIFO_WRITER_H
#define DB_FIFO_WRITER_H

#include <signal.h>
#include <stddef.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

/* A child process writing len bytes of data into the FIFO at path (made here) once, or, endless, over and over until
 * the reader closes it; then it ends. -1 when the FIFO or the child could not be made. */
static inline pid_t fifo_writer(const char *path, const void *data, size_t len, int endless)
{
    if (mkfifo(path, 0600) != 0) return -1;
    pid_t pid = fork();
    if (pid == 0) {
        signal(SIGPIPE, SIG_IGN); /* a reader that stops (or refuses) ends the writer with EPIPE */
        alarm(120);               /* and a reader that never opens it does not keep it forever */
        int fd = open(path, O_WRONLY);
        do {
            size_t left = len;
            const char *p = (const char *)data;
            while (fd >= 0 && left > 0) {
                ssize_t n = write(fd, p, left);
                if (n <= 0) _exit(0);
                p += n;
                left -= (size_t)n;
            }
        } while (endless);
        _exit(0);
    }
    return pid;
}

/* Ends the writer (one still blocked on a reader that stopped early) and collects it. */
static inline void fifo_reap(pid_t pid)
{
    if (pid <= 0) return;
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

#endif
