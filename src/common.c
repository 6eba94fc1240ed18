#include "common.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int jm_fail(jm_err *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

int jm_read_file(const char *path, char **out, size_t *len, jm_err *err)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return jm_fail(err, errno == ENOENT ? JM_ENOTFOUND : JM_EIO, "%s: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    if (!buf) {
        fclose(f);
        return jm_fail(err, JM_ENOMEM, "%s: out of memory", path);
    }
    for (;;) {
        if (n + 1 >= cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                fclose(f);
                return jm_fail(err, JM_ENOMEM, "%s: out of memory", path);
            }
            buf = nb;
            cap *= 2;
        }
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0)
            break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return jm_fail(err, JM_EIO, "%s: read error", path);
    }
    buf[n] = '\0';
    *out = buf;
    if (len)
        *len = n;
    return JM_OK;
}

int jm_path_join(char *buf, size_t cap, const char *dir, const char *name, jm_err *err)
{
    int n = snprintf(buf, cap, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= cap)
        return jm_fail(err, JM_EINVAL, "path too long: %s/%s", dir, name);
    return JM_OK;
}

int jm_ncpu(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (int)n;
}

double jm_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

double jm_thread_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---------- binary files with a checksum ---------- */

static inline uint64_t mix64(uint64_t x)
{
    x ^= x >> 31;
    x *= 0x9e3779b97f4a7c15ULL;
    x ^= x >> 29;
    return x;
}

uint64_t jm_hash64(uint64_t h, const void *p, size_t n)
{
    const unsigned char *c = p;
    uint64_t a = h ^ 0x243f6a8885a308d3ULL, b = h ^ 0x13198a2e03707344ULL, d = h ^ 0xa4093822299f31d0ULL,
             e = h ^ 0x082efa98ec4e6c89ULL;
    size_t i = 0;
    /* four lanes, so the multiplies overlap */
    for (; i + 32 <= n; i += 32) {
        uint64_t w[4];
        memcpy(w, c + i, 32);
        a = (a ^ w[0]) * 0xff51afd7ed558ccdULL;
        b = (b ^ w[1]) * 0xc4ceb9fe1a85ec53ULL;
        d = (d ^ w[2]) * 0xff51afd7ed558ccdULL;
        e = (e ^ w[3]) * 0xc4ceb9fe1a85ec53ULL;
        a ^= a >> 32;
        b ^= b >> 32;
        d ^= d >> 32;
        e ^= e >> 32;
    }
    uint64_t t = 0;
    for (int k = 0; i < n; i++, k++) {
        t |= (uint64_t)c[i] << (8 * (k & 7));
        if ((k & 7) == 7 || i + 1 == n) {
            a = mix64(a ^ t);
            t = 0;
        }
    }
    return mix64(a ^ mix64(b ^ mix64(d ^ mix64(e ^ (uint64_t)n))));
}

int jm_bin_open(jm_bin *b, const char *path, const char *mode, jm_err *err)
{
    memset(b, 0, sizeof *b);
    int w = mode[0] == 'w';
    FILE *f = fopen(path, w ? "wb" : "rb");
    if (!f) {
        b->failed = 1;
        return jm_fail(err, JM_EIO, "cannot open %s: %s", path, strerror(errno));
    }
    b->f = f;
    b->writing = w;
    return JM_OK;
}

int jm_bin_write(jm_bin *b, const void *p, size_t n, jm_err *err)
{
    if (b->failed)
        return jm_fail(err, JM_EIO, "write after an earlier failure");
    if (n && fwrite(p, 1, n, b->f) != n) {
        b->failed = 1;
        return jm_fail(err, JM_EIO, "write failed: %s", strerror(errno));
    }
    b->sum = jm_hash64(b->sum, p, n);
    b->bytes += n;
    return JM_OK;
}

int jm_bin_read(jm_bin *b, void *p, size_t n, jm_err *err)
{
    if (b->failed)
        return jm_fail(err, JM_EIO, "read after an earlier failure");
    size_t got = n ? fread(p, 1, n, b->f) : 0;
    if (got != n) {
        b->failed = 1;
        if (ferror((FILE *)b->f))
            return jm_fail(err, JM_EIO, "read failed: %s", strerror(errno));
        return jm_fail(err, JM_EFORMAT, "file ends after %llu bytes, %zu more expected",
                       (unsigned long long)(b->bytes + got), n - got);
    }
    b->sum = jm_hash64(b->sum, p, n);
    b->bytes += n;
    return JM_OK;
}

uint64_t jm_bin_sum(const jm_bin *b) { return b->sum; }

int jm_bin_close(jm_bin *b, jm_err *err)
{
    FILE *f = b->f;
    b->f = NULL;
    if (!f)
        return b->failed ? JM_EIO : JM_OK;
    int rc = JM_OK;
    if (b->writing && !b->failed && (fflush(f) || fsync(fileno(f))))
        rc = jm_fail(err, JM_EIO, "cannot flush: %s", strerror(errno));
    if (fclose(f) && rc == JM_OK && !b->failed)
        rc = jm_fail(err, JM_EIO, "cannot close: %s", strerror(errno));
    return rc;
}
