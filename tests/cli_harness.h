/* cli_harness.h: run the dualbragg command line in a fresh temporary folder and read what it wrote.
 * Shared by the tests that exercise the whole program (golden parity, carryover). */
#ifndef DB_CLI_HARNESS_H
#define DB_CLI_HARNESS_H

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define HARNESS_MAX_ARGS 128

typedef struct harness_args {
    int argc;
    char *argv[HARNESS_MAX_ARGS];
} harness_args;

static inline void harness_args_free(harness_args *a)
{
    for (int i = 0; i < a->argc; i++) free(a->argv[i]);
    a->argc = 0;
}

static inline void harness_push(harness_args *a, const char *s)
{
    if (a->argc < HARNESS_MAX_ARGS - 1) a->argv[a->argc++] = strdup(s);
}

/* Splits a whitespace-separated command line, dropping a trailing "# comment" and "> file" redirection. */
static inline void harness_split(harness_args *a, const char *line)
{
    char *copy = strdup(line), *save = NULL;
    for (char *tok = strtok_r(copy, " \t\r\n", &save); tok; tok = strtok_r(NULL, " \t\r\n", &save)) {
        if (tok[0] == '#' || strcmp(tok, ">") == 0) break;
        harness_push(a, tok);
    }
    free(copy);
}

/* Line n (1-based) of a golden case's cmd.txt, as nanoBragg arguments (without "OMP_NUM_THREADS=1 nanoBragg"). */
static inline int harness_case_args(const char *golden_dir, const char *case_name, int line_no, harness_args *out)
{
    char path[4096], buf[8192];
    snprintf(path, sizeof path, "%s/%s/cmd.txt", golden_dir, case_name);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    int n = 0, found = 0;
    while (fgets(buf, sizeof buf, f))
        if (++n == line_no) {
            found = 1;
            break;
        }
    fclose(f);
    if (!found) return -1;
    harness_args all = {0};
    harness_split(&all, buf);
    out->argc = 0;
    int i = 0;
    while (i < all.argc && (strchr(all.argv[i], '=') || strcmp(all.argv[i], "nanoBragg") == 0)) i++;
    for (; i < all.argc; i++) harness_push(out, all.argv[i]);
    harness_args_free(&all);
    return 0;
}

/* Replaces the value after flag (e.g. "-floatfile") with value; appends both if the flag is absent. */
static inline void harness_set(harness_args *a, const char *flag, const char *value)
{
    for (int i = 0; i + 1 < a->argc; i++)
        if (strcmp(a->argv[i], flag) == 0) {
            free(a->argv[i + 1]);
            a->argv[i + 1] = strdup(value);
            return;
        }
    harness_push(a, flag);
    harness_push(a, value);
}

static inline int harness_mkdtemp(char *dir, size_t size)
{
    const char *base = getenv("TMPDIR");
    snprintf(dir, size, "%s/dualbragg-test-XXXXXX", base && *base ? base : "/tmp");
    return mkdtemp(dir) ? 0 : -1;
}

static inline int harness_copy(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb");
    if (!in) return -1;
    FILE *out = fopen(to, "wb");
    if (!out) {
        fclose(in);
        return -1;
    }
    char buf[65536];
    size_t n;
    int rc = 0;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, n, out) != n) rc = -1;
    fclose(in);
    if (fclose(out)) rc = -1;
    return rc;
}

static inline void harness_rmtree(const char *dir)
{
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", dir);
}

/* In a child process: replaces it with the CLI run on args (never returns; exit status 127 when it cannot). */
static inline void harness_exec(const char *cli, const harness_args *a)
{
    char *argv[HARNESS_MAX_ARGS + 1];
    argv[0] = (char *)cli;
    for (int i = 0; i < a->argc; i++) argv[i + 1] = a->argv[i];
    argv[a->argc + 1] = NULL;
    execv(cli, argv);
    _exit(127);
}

/* Runs the CLI with args inside dir (stdout and stderr to dir/out.log); threads > 0 sets OMP_NUM_THREADS.
 * Returns the exit status, or -1 if it could not run. */
static inline int harness_run(const char *cli, const char *dir, const harness_args *a, int threads)
{
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        if (chdir(dir) != 0) _exit(126);
        int fd = open("out.log", O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        if (threads > 0) {
            char t[16];
            snprintf(t, sizeof t, "%d", threads);
            setenv("OMP_NUM_THREADS", t, 1);
        }
        harness_exec(cli, a);
    }
    int status;
    if (waitpid(pid, &status, 0) < 0) return -1;
    if (WIFSIGNALED(status)) fprintf(stderr, "harness: %s was killed by signal %d (%s)\n", cli, WTERMSIG(status), strsignal(WTERMSIG(status)));
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Whole file into memory; NULL if missing. */
static unsigned char *harness_read(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = (unsigned char *)malloc(n > 0 ? (size_t)n : 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return buf;
}

/* A text file with a NUL after its last byte (harness_read gives the bytes only), or NULL. */
static inline char *harness_read_text(const char *path)
{
    size_t len;
    unsigned char *b = harness_read(path, &len);
    if (!b) return NULL;
    char *t = (char *)malloc(len + 1);
    if (t) {
        memcpy(t, b, len);
        t[len] = '\0';
    }
    free(b);
    return t;
}

/* Byte comparison of two files; prints the first difference. Returns 1 when identical. */
static inline int harness_same_file(const char *a, const char *b)
{
    size_t na, nb;
    unsigned char *x = harness_read(a, &na), *y = harness_read(b, &nb);
    int same = x && y && na == nb && memcmp(x, y, na) == 0;
    if (!same) {
        if (!x || !y) {
            fprintf(stderr, "  missing file: %s\n", !x ? a : b);
        } else if (na != nb) {
            fprintf(stderr, "  %s: %zu bytes, %s: %zu bytes\n", a, na, b, nb);
        } else {
            size_t i = 0;
            while (x[i] == y[i]) i++;
            fprintf(stderr, "  %s and %s differ first at byte %zu\n", a, b, i);
        }
    }
    free(x);
    free(y);
    return same;
}

#endif
