/* common.h - error reporting and small utilities shared by every module (prefix jm_).
 *
 * Convention: library functions return an int status, JM_OK (0) on success or a
 * negative JM_E* code, and fill a caller-owned jm_err with one human-readable
 * line. The jm_err pointer may be NULL when the caller does not want the text.
 * Nothing in the library calls exit() or abort() on bad input. */
#ifndef JM_COMMON_H
#define JM_COMMON_H

#include <stddef.h>
#include <stdint.h>

enum {
    JM_OK = 0,
    JM_EIO = -1,      /* file or OS error */
    JM_EFORMAT = -2,  /* malformed or hostile input file */
    JM_ENOMEM = -3,   /* allocation failed */
    JM_EINVAL = -4,   /* bad argument from the caller */
    JM_ENOTFOUND = -5 /* a named thing does not exist */
};

#define JM_VERSION "0.4.0"

#define JM_ERRLEN 512

typedef struct jm_err {
    int code;
    char msg[JM_ERRLEN];
} jm_err;

/* Record an error and return `code`, so callers can write
 *   return jm_fail(err, JM_EIO, "cannot open %s: %s", path, strerror(errno));
 * Every library error goes through here: one place for a breakpoint. */
int jm_fail(jm_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Read a whole file into a NUL-terminated malloc'd buffer. On success *out
 * is owned by the caller (free()), *len (if non-NULL) is its length. */
int jm_read_file(const char *path, char **out, size_t *len, jm_err *err);

/* Join dir and name with a '/' into buf. Returns JM_EINVAL if it does not fit. */
int jm_path_join(char *buf, size_t cap, const char *dir, const char *name, jm_err *err);

/* Number of online CPUs (at least 1). */
int jm_ncpu(void);

/* Monotonic clock in seconds. */
double jm_now(void);
/* CPU time the calling thread has used, in seconds. */
double jm_thread_cpu(void);

/* ---- Binary files with a running checksum (the engine snapshot) ----
 * A writer and a reader make the same sequence of jm_bin_write / jm_bin_read
 * calls with the same sizes; each call folds its bytes into the checksum
 * (four independent 64-bit lanes, ~10 GB/s), so a reader compares
 * jm_bin_sum with the value the writer stored at the end. The data are
 * this machine's byte order: a file is only read back where it was written
 * (the caller's header says so). */
typedef struct jm_bin {
    void *f;        /* FILE * */
    uint64_t sum;
    uint64_t bytes; /* written or read so far */
    int failed;     /* a call failed: every later call fails too */
    int writing;
} jm_bin;

/* Opens path for writing ("w") or reading ("r"). JM_EIO with the reason. */
int jm_bin_open(jm_bin *b, const char *path, const char *mode, jm_err *err);
/* Appends n bytes. JM_EIO (disk full, ...) with the reason. */
int jm_bin_write(jm_bin *b, const void *p, size_t n, jm_err *err);
/* Reads exactly n bytes into p. JM_EFORMAT when the file ends first, JM_EIO
 * on a read error. */
int jm_bin_read(jm_bin *b, void *p, size_t n, jm_err *err);
/* The checksum of everything written or read so far. */
uint64_t jm_bin_sum(const jm_bin *b);
/* Closes; for a writer, flushes and fsyncs first (JM_EIO if that fails).
 * Safe on a jm_bin that failed to open. */
int jm_bin_close(jm_bin *b, jm_err *err);
/* The checksum function itself: h folded with n bytes at p. */
uint64_t jm_hash64(uint64_t h, const void *p, size_t n);

/* splitmix64: the next number of the sequence whose state is *s (seeded
 * runs that must repeat: k-means samples, calibration queries). */
static inline uint64_t jm_rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

#endif
