/* stills.h: the -stills FILE of the ensemble refinement (dualbragg-ensemble, issue 20): which observed images
 * are fitted together, and each one's own flags.
 *
 * The format, one line per still:
 *
 *     IMAGE [FLAG [VALUE...]]...          # a comment
 *
 *   - IMAGE is the observed image, as dualbragg-refine's -obs takes it (an SMV .img or a raw float32/float64
 *     file). It comes first; a first word that starts with '-' is refused as a flag where the image should be
 *     (write ./-name for an image whose name really starts with '-').
 *   - The flags after it are dualbragg's flags for this still (-misset, -fluence, -lambda, -mat, -boxes, ...),
 *     plus dualbragg-refine's per-image flags -spots N, -spot_size S, -obs_adc ADC, -gain G and -obs_float64,
 *     which belong to the image rather than to the model and are taken out of the line (the fields below).
 *   - Relative paths are relative to the folder of the stills file, not to the current folder: the image, and
 *     the value of every flag that names a file (db_stills_is_file_flag: -hkl -mat -matrix -sourcefile -mask
 *     -img -boxes -dump -dumpfile and the output flags). A list of stills is usually written beside its images
 *     and read from anywhere; resolving against the current folder would make it depend on where the program
 *     runs. Absolute paths are kept. Nothing else is expanded (no ~, no $VAR, no globs).
 *   - Words are separated by white space (space, tab, CR, VT, FF). Double quotes group a word with spaces in it
 *     ("my images/a 1.img"); quoted and unquoted parts join into one word as in a shell (a"b c"d is 'ab cd'),
 *     and "" is an empty word. There are no escapes: a word cannot hold a double quote, and a quote left open at
 *     the end of the line is refused (a still never spans lines).
 *   - An unquoted # starts a comment to the end of the line, also inside a word (quote a path holding #).
 *     Blank and comment-only lines are skipped; line numbers in messages count every line of the file.
 *
 * Limits (each refused with the file, the line and the limit, never a memory blow-up): the file at most
 * DB_STILLS_MAX_BYTES, each line at most DB_TEXT_MAX_LINE bytes (fileio.h: db_read_text also refuses NUL bytes
 * and streams that never end, such as /dev/zero), at most DB_STILLS_MAX_WORDS words on a line and
 * DB_STILLS_MAX_COUNT stills.
 *
 * Messages read "-stills FILE:LINE: what was wrong (what was expected)". Status codes: DB_ERR_FORMAT for the
 * file's syntax and limits, DB_ERR_IO when it cannot be read, DB_ERR_ARGUMENT for a bad per-image flag value
 * (as the same flag on dualbragg-refine's command line), and db_stills_config passes on db_config_parse's code. */
#ifndef DB_STILLS_H
#define DB_STILLS_H

#include "dualbragg.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DB_STILLS_MAX_BYTES ((size_t)64 << 20) /* 64 MiB: some 10^6 stills of 60-byte lines */
#define DB_STILLS_MAX_COUNT 10000000L          /* 10^7 stills */
#define DB_STILLS_MAX_WORDS 256                /* per line, the image included */

typedef struct db_still_line {
    char *obs_path; /* the observed image, resolved against the stills file's folder */
    int argc;       /* this still's dualbragg flags and values, file values resolved; argv[argc] == NULL */
    char **argv;
    long line;      /* its line in the stills file (from 1), for messages */
    /* dualbragg-refine's per-image flags on this line; "not given" lets the front fall back to its own
     * command line's value */
    int spots, spot_size;  /* -spots N, -spot_size S; 0: not given */
    int obs_float64;       /* 1: -obs_float64 given */
    int has_obs_adc, has_gain;
    double obs_adc, gain;  /* -obs_adc ADC, -gain G, when has_... is 1 */
} db_still_line;

typedef struct db_stills {
    long n;           /* >= 1 after a successful read */
    db_still_line *s; /* [n], in file order */
    char *path;       /* the stills file as named, for messages */
} db_stills;

/* Reads path into *out (zeroed first; on failure it stays zeroed and holds nothing to free). Refuses a file
 * without any still. path and out are required. */
int db_stills_read(const char *path, db_stills *out, db_error *err);
/* The same with another limit on the number of stills (1 to DB_STILLS_MAX_COUNT): for a front that wants a
 * smaller one, and for the tests, which check the limit without building 10^7 stills. */
int db_stills_read_max(const char *path, long max_count, db_stills *out, db_error *err);
/* Releases what db_stills_read allocated and zeroes *s; s may be NULL, and a zeroed set is fine. */
void db_stills_free(db_stills *s);

/* 1 when flag's value names a file that a still's line resolves against the stills file's folder: the
 * configuration's inputs (-hkl -mat -matrix -sourcefile -mask -img -boxes -dump -dumpfile) and its outputs
 * (-floatfile -floatimage -floatfile64 -intfile -intimage -pgmfile -pgmimage -noisefile -noiseimage -pngfile
 * -grad_F -gradprefix). NULL: 0. */
int db_stills_is_file_flag(const char *flag);

/* The configuration of still i (0 <= i < s->n): one db_config_parse of the shared flags followed by the
 * still's flags. db_config_parse applies flags in order and a later value of a repeated flag replaces the
 * earlier one (-misset twice: the second wins; tests/ensemble/test_stills.c checks it), so any flag the shared command
 * line and the still both give takes the still's value, and flags the still does not give keep the shared
 * ones. Two consequences of the one parse: -img and -mask headers are still read first, as defaults that every
 * flag overrides (a still's -img does not override a shared -distance), and a still cannot remove a shared
 * flag, only give it another value. The caller checks the shared flags alone once beforehand (a shared flag
 * missing its value would otherwise take the still's first word); an error here is then the still's (or its
 * combination with the shared flags) and its message is prefixed "-stills FILE:LINE: ". shared_argv may be NULL
 * when shared_argc is 0. *cfg is a new configuration (db_config_destroy), NULL on error. */
int db_stills_config(const db_stills *s, long i, int shared_argc, const char *const *shared_argv, db_config **cfg,
                     db_error *err);

#ifdef __cplusplus
}
#endif
#endif
