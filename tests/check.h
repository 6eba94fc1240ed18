/* check.h - minimal assertion counting for the C test programs.
 * Each program ends with CHECK_DONE(), which prints "NAME: N passed, N failed"
 * and returns non-zero if anything failed. tests/run.sh adds the counts up. */
#ifndef JM_CHECK_H
#define JM_CHECK_H
#include <stdio.h>
#include <unistd.h>

static int check_pass_, check_fail_;

#define CHECK(cond, ...)                                                   \
    do {                                                                   \
        if (cond) {                                                        \
            check_pass_++;                                                 \
        } else {                                                           \
            check_fail_++;                                                 \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                  \
            fputc('\n', stderr);                                           \
        }                                                                  \
    } while (0)

/* Removes a SQLite test database and its -wal and -shm files. */
static inline void check_rm_sqlite(const char *path)
{
    char w[4096];
    unlink(path);
    snprintf(w, sizeof w, "%s-wal", path);
    unlink(w);
    snprintf(w, sizeof w, "%s-shm", path);
    unlink(w);
}

#define CHECK_DONE(name)                                                         \
    (printf("%s: %d passed, %d failed\n", (name), check_pass_, check_fail_),    \
     check_fail_ ? 1 : 0)
#endif
