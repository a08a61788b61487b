/* stills.c: reading the -stills FILE of the ensemble refinement (the format: stills.h). */
#include "stills.h"
#include "error.h"  /* db_fail */
#include "fileio.h" /* db_read_text: bounded, no NUL bytes, no endless lines */

#include <math.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#define EXPECTED "lines 'IMAGE [flags]', one per still"

static const char *const FILE_FLAGS[] = {
    /* inputs */
    "-hkl", "-mat", "-matrix", "-sourcefile", "-mask", "-img", "-boxes", "-dump", "-dumpfile",
    /* outputs */
    "-floatfile", "-floatimage", "-floatfile64", "-intfile", "-intimage", "-pgmfile", "-pgmimage", "-noisefile",
    "-noiseimage", "-pngfile", "-grad_F", "-gradprefix"};

int db_stills_is_file_flag(const char *flag)
{
    if (!flag) return 0;
    for (size_t k = 0; k < sizeof FILE_FLAGS / sizeof FILE_FLAGS[0]; k++)
        if (!strcmp(flag, FILE_FLAGS[k])) return 1;
    return 0;
}

void db_stills_free(db_stills *s)
{
    if (!s) return;
    for (long i = 0; i < s->n; i++) free(s->s[i].argv); /* one block per line: the pointers, then the words */
    free(s->s);
    free(s->path);
    memset(s, 0, sizeof *s);
}

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'; }

/* Splits the line [p, end) into words in place (quotes removed, each word NUL-terminated; the buffer only
 * shrinks, so writing behind the reading position is safe). Returns the count, or -1 with err set. */
static int split_words(const char *path, long line, char *p, char *end, char **words, db_error *err)
{
    char *const start = p;
    int n = 0;
    for (;;) {
        while (p < end && is_space(*p)) p++;
        if (p >= end || *p == '#') return n;
        if (n == DB_STILLS_MAX_WORDS)
            return db_fail(err, DB_ERR_FORMAT,
                           "-stills %s:%ld: more than %d words on one line (expected the image and at most %d flags "
                           "and values)", path, line, DB_STILLS_MAX_WORDS, DB_STILLS_MAX_WORDS - 1), -1;
        char *out = p;
        words[n++] = out;
        while (p < end && !is_space(*p) && *p != '#') {
            if (*p != '"') {
                *out++ = *p++;
                continue;
            }
            const char *open = p++;
            while (p < end && *p != '"') *out++ = *p++;
            if (p >= end)
                return db_fail(err, DB_ERR_FORMAT,
                               "-stills %s:%ld: unterminated double quote (opened at column %ld; expected a closing \" "
                               "on the same line)", path, line, (long)(open - start) + 1), -1;
            p++; /* the closing quote */
        }
        /* the delimiter, read before the terminating NUL may land on it (when nothing was removed) */
        char delim = p < end ? *p : '\n';
        *out = '\0';
        if (delim == '#') return n;
        if (p < end) p++;
    }
}

/* The length of word resolved against dir (dirlen bytes, ending in '/'; 0: the current folder). */
static size_t resolved_len(const char *word, size_t dirlen)
{
    size_t n = strlen(word);
    return (word[0] && word[0] != '/') ? dirlen + n : n;
}

static char *put_resolved(char *dst, const char *word, const char *dir, size_t dirlen)
{
    if (word[0] && word[0] != '/') {
        memcpy(dst, dir, dirlen);
        dst += dirlen;
    }
    size_t n = strlen(word);
    memcpy(dst, word, n + 1);
    return dst + n + 1;
}

/* A whole number in [lo, hi] for a per-image flag. */
static int take_whole(const char *path, long line, const char *flag, const char *v, long lo, long hi, int *out,
                      db_error *err)
{
    char *e;
    double d = strtod(v, &e);
    if (e == v || *e || d != floor(d) || d < (double)lo || d > (double)hi)
        return db_fail(err, DB_ERR_ARGUMENT, "-stills %s:%ld: %s expects a whole number from %ld to %ld, got '%s'", path,
                       line, flag, lo, hi, v);
    *out = (int)d;
    return DB_OK;
}

/* Builds still st from words[0..n-1] (n >= 1): the per-image flags taken out, file values resolved, one block. */
static int build_still(const char *path, long line, char **words, int n, const char *dir, size_t dirlen,
                       db_still_line *st, db_error *err)
{
    memset(st, 0, sizeof *st);
    st->line = line;
    if (words[0][0] == '-')
        return db_fail(err, DB_ERR_FORMAT,
                       "-stills %s:%ld: expected the observed image's path first, got the flag '%s' (a line is 'IMAGE "
                       "[flags]'; write ./NAME for an image whose name starts with '-')", path, line, words[0]);
    if (!words[0][0])
        return db_fail(err, DB_ERR_FORMAT, "-stills %s:%ld: the image path is empty (expected 'IMAGE [flags]')", path,
                       line);
    /* the per-image flags come out; keep[k] says whether word k goes to argv, resolve[k] whether it is a path */
    unsigned char keep[DB_STILLS_MAX_WORDS], resolve[DB_STILLS_MAX_WORDS];
    int boxes = 0, argc = 0;
    size_t bytes = resolved_len(words[0], dirlen) + 1;
    resolve[0] = 1;
    keep[0] = 0;
    for (int k = 1; k < n; k++) {
        const char *w = words[k];
        keep[k] = 1;
        resolve[k] = 0;
        const int spots = !strcmp(w, "-spots"), size = !strcmp(w, "-spot_size"), adc = !strcmp(w, "-obs_adc"),
                  gain = !strcmp(w, "-gain");
        if (spots || size || adc || gain) {
            if (k + 1 >= n)
                return db_fail(err, DB_ERR_ARGUMENT, "-stills %s:%ld: %s is missing its value (the line ends)", path,
                               line, w);
            const char *v = words[k + 1];
            keep[k] = keep[k + 1] = 0;
            resolve[k + 1] = 0;
            int rc = DB_OK;
            if (spots) rc = take_whole(path, line, w, v, 1, 100000, &st->spots, err);
            else if (size) rc = take_whole(path, line, w, v, 1, 10000, &st->spot_size, err);
            else {
                char *e;
                double d = strtod(v, &e);
                if (e == v || *e || !isfinite(d) || (gain && !(d > 0)))
                    return db_fail(err, DB_ERR_ARGUMENT, "-stills %s:%ld: %s expects %s, got '%s'", path, line, w,
                                   gain ? "a number > 0 (detector units per photon)"
                                        : "a finite number (the ADC offset of the SMV counts)", v);
                if (gain) st->has_gain = 1, st->gain = d;
                else st->has_obs_adc = 1, st->obs_adc = d;
            }
            if (rc) return rc;
            k++;
            continue;
        }
        if (!strcmp(w, "-obs_float64")) {
            keep[k] = 0;
            st->obs_float64 = 1;
            continue;
        }
        if (!strcmp(w, "-boxes")) boxes = 1;
        argc++;
        bytes += strlen(w) + 1;
        if (db_stills_is_file_flag(w) && k + 1 < n) { /* its value: a path (a missing one is db_config_parse's) */
            k++;
            keep[k] = resolve[k] = 1;
            argc++;
            bytes += resolved_len(words[k], dirlen) + 1;
        }
    }
    if (st->spots && boxes)
        return db_fail(err, DB_ERR_ARGUMENT,
                       "-stills %s:%ld: -spots makes boxes around the spots when no -boxes FILE is given; give one or "
                       "the other", path, line);
    const size_t ptrs = ((size_t)argc + 1) * sizeof(char *);
    char *block = (char *)malloc(ptrs + bytes);
    if (!block) return db_fail(err, DB_ERR_NOMEM, "out of memory reading -stills %s (line %ld)", path, line);
    st->argv = (char **)(void *)block;
    char *dst = block + ptrs;
    st->obs_path = dst;
    dst = put_resolved(dst, words[0], dir, dirlen);
    for (int k = 1; k < n; k++) {
        if (!keep[k]) continue;
        st->argv[st->argc++] = dst;
        dst = resolve[k] ? put_resolved(dst, words[k], dir, dirlen) : put_resolved(dst, words[k], "", 0);
    }
    st->argv[st->argc] = NULL;
    return DB_OK;
}

int db_stills_read(const char *path, db_stills *out, db_error *err)
{
    return db_stills_read_max(path, DB_STILLS_MAX_COUNT, out, err);
}

int db_stills_read_max(const char *path, long max_count, db_stills *out, db_error *err)
{
    if (!out) return db_fail(err, DB_ERR_ARGUMENT, "db_stills_read: no result (NULL)");
    memset(out, 0, sizeof *out);
    if (!path) return db_fail(err, DB_ERR_ARGUMENT, "db_stills_read: no file name (NULL)");
    if (max_count < 1 || max_count > DB_STILLS_MAX_COUNT)
        return db_fail(err, DB_ERR_ARGUMENT, "db_stills_read: a limit of %ld stills (expected 1 to %ld)", max_count,
                       DB_STILLS_MAX_COUNT);
    char *data = NULL;
    size_t len = 0;
    int rc = db_read_text("-stills", path, DB_STILLS_MAX_BYTES, EXPECTED, &data, &len, err);
    if (rc) return rc;
    db_stills r = {0, NULL, NULL};
    long cap = 0;
    r.path = (char *)malloc(strlen(path) + 1);
    if (!r.path) {
        rc = db_fail(err, DB_ERR_NOMEM, "out of memory reading -stills %s", path);
        goto done;
    }
    strcpy(r.path, path);
    /* the folder relative paths resolve against: path up to its last '/', kept with the slash */
    const char *slash = strrchr(path, '/');
    const size_t dirlen = slash ? (size_t)(slash - path) + 1 : 0;
    char *words[DB_STILLS_MAX_WORDS];
    long line = 0;
    for (char *p = data, *const stop = data + len; p < stop;) {
        line++;
        char *nl = (char *)memchr(p, '\n', (size_t)(stop - p));
        char *end = nl ? nl : stop;
        int n = split_words(path, line, p, end, words, err);
        p = nl ? nl + 1 : stop;
        if (n < 0) {
            rc = err ? err->code : DB_ERR_FORMAT;
            goto done;
        }
        if (n == 0) continue;
        if (r.n == max_count) {
            rc = db_fail(err, DB_ERR_FORMAT, "-stills %s:%ld: more than %ld stills (the limit; split the list)", path,
                         line, max_count);
            goto done;
        }
        if (r.n == cap) {
            long ncap = cap ? (cap > max_count / 2 ? max_count : 2 * cap) : (max_count < 64 ? max_count : 64);
            db_still_line *s = (db_still_line *)realloc(r.s, (size_t)ncap * sizeof *s);
            if (!s) {
                rc = db_fail(err, DB_ERR_NOMEM, "out of memory reading -stills %s (%ld stills)", path, r.n);
                goto done;
            }
            r.s = s;
            cap = ncap;
        }
        if ((rc = build_still(path, line, words, n, path, dirlen, &r.s[r.n], err))) goto done;
        r.n++;
    }
    if (r.n == 0)
        rc = db_fail(err, DB_ERR_FORMAT,
                     "-stills %s: no stills (expected %s; blank lines and # comments are skipped)", path, EXPECTED);
done:
    free(data);
    if (rc) db_stills_free(&r);
    else *out = r;
    return rc;
}

int db_stills_config(const db_stills *s, long i, int shared_argc, const char *const *shared_argv, db_config **cfg,
                     db_error *err)
{
    if (!cfg) return db_fail(err, DB_ERR_ARGUMENT, "db_stills_config: no result (NULL)");
    *cfg = NULL;
    if (!s || !s->s) return db_fail(err, DB_ERR_ARGUMENT, "db_stills_config: no stills (NULL)");
    if (i < 0 || i >= s->n)
        return db_fail(err, DB_ERR_ARGUMENT, "db_stills_config: still %ld of %ld (expected 0 to %ld)", i, s->n, s->n - 1);
    if (shared_argc < 0 || (shared_argc > 0 && !shared_argv))
        return db_fail(err, DB_ERR_ARGUMENT, "db_stills_config: %d shared arguments %s", shared_argc,
                       shared_argc < 0 ? "(expected a count >= 0)" : "but no argument array (NULL)");
    const db_still_line *st = &s->s[i];
    if ((long)shared_argc + st->argc > INT_MAX - 1)
        return db_fail(err, DB_ERR_ARGUMENT, "db_stills_config: too many arguments");
    const int argc = shared_argc + st->argc;
    const char **argv = (const char **)malloc(((size_t)argc + 1) * sizeof *argv);
    db_config *c = db_config_create();
    if (!argv || !c) {
        free(argv);
        db_config_destroy(c);
        return db_fail(err, DB_ERR_NOMEM, "out of memory for the configuration of -stills %s:%ld", s->path, st->line);
    }
    for (int k = 0; k < shared_argc; k++) argv[k] = shared_argv[k];
    for (int k = 0; k < st->argc; k++) argv[shared_argc + k] = st->argv[k];
    argv[argc] = NULL;
    db_error e;
    int rc = db_config_parse(c, argc, argv, &e);
    free(argv);
    if (rc) {
        db_config_destroy(c);
        return db_fail(err, rc, "-stills %s:%ld: %s", s->path ? s->path : "", st->line, e.message);
    }
    *cfg = c;
    return DB_OK;
}
