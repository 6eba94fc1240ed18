/* safetensors.c - mmap a .safetensors file and validate its header (prefix st_).
 *
 * Layout: u64 LE header length N, N bytes of JSON header, then the data area.
 * Everything in the header is distrusted: the file may be truncated, damaged or
 * hostile. st_open either hands out a fully checked table of tensors or an
 * error naming the file and the first problem found. */
#include "safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Tensors are handed out as raw pointers into little-endian file data, so a
 * big-endian host would read garbage rather than fail. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c assumes a little-endian host"
#endif

/* Real headers are ~10 KiB per 100 tensors; the cap keeps a hostile length from
 * making us copy and parse an arbitrary amount of JSON. */
#define ST_MAX_HEADER ((uint64_t)100 << 20)

/* Largest integer a double (cJSON's only number type) holds exactly. */
#define ST_MAX_EXACT 9007199254740992.0 /* 2^53 */

/* Tensor names can be anything a hostile file puts there; this bounds what
 * lands in an error message and keeps it on one line. */
#define ST_SHOWLEN 96

struct st_file {
    char *path;
    void *map;          /* whole file, PROT_READ */
    size_t map_len;
    int n;
    st_tensor *t;       /* header order */
    const st_tensor **by_name; /* t sorted by name, for binary search */
    char *names;        /* every tensor name, NUL-separated; t[i].name points here */
};

static const struct {
    const char *name;
    size_t size;
} dtypes[] = {
    [ST_F32] = {"F32", 4}, [ST_F16] = {"F16", 2}, [ST_BF16] = {"BF16", 2},
    [ST_F64] = {"F64", 8}, [ST_I64] = {"I64", 8}, [ST_I32] = {"I32", 4},
    [ST_I16] = {"I16", 2}, [ST_I8] = {"I8", 1},   [ST_U8] = {"U8", 1},
    [ST_BOOL] = {"BOOL", 1},
};
#define ST_NDTYPES ((int)(sizeof dtypes / sizeof dtypes[0]))

size_t st_dtype_size(st_dtype d)
{
    return (int)d >= 0 && (int)d < ST_NDTYPES ? dtypes[d].size : 0;
}

const char *st_dtype_name(st_dtype d)
{
    return (int)d >= 0 && (int)d < ST_NDTYPES ? dtypes[d].name : "?";
}

/* Printable, bounded copy of `s` for messages. */
static const char *show(char buf[ST_SHOWLEN], const char *s)
{
    size_t i = 0;
    for (; s[i] && i + 4 < ST_SHOWLEN; i++)
        buf[i] = (s[i] >= 0x20 && s[i] < 0x7f) || (unsigned char)s[i] >= 0x80 ? s[i] : '?';
    if (s[i]) {
        memcpy(buf + i, "...", 3);
        i += 3;
    }
    buf[i] = '\0';
    return buf;
}

/* "[384, 384]" into buf (cap bytes). */
static void fmt_shape(char *buf, size_t cap, int ndim, const int64_t *shape)
{
    size_t o = 0;
    o += (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && o < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (o < cap)
        snprintf(buf + o, cap - o, "]");
}

/* A JSON number that is an exact non-negative integer no larger than 2^53
 * (beyond that a double has already rounded whatever the file said). */
static int json_uint(const cJSON *j, uint64_t *out)
{
    if (!cJSON_IsNumber(j))
        return 0;
    double v = j->valuedouble;
    if (!isfinite(v) || v < 0 || v > ST_MAX_EXACT || v != floor(v))
        return 0;
    *out = (uint64_t)v;
    return 1;
}

/* Fill `t` (all but name and data) from one header entry; `data_len` is the size
 * of the data area. On error returns JM_EFORMAT with the message in err. */
static int parse_entry(const char *path, const cJSON *e, uint64_t data_len,
                       st_tensor *t, uint64_t *begin, uint64_t *end, jm_err *err)
{
    char nb[ST_SHOWLEN];
    const char *nm = show(nb, e->string);
    if (!cJSON_IsObject(e))
        return jm_fail(err, JM_EFORMAT, "%s: tensor '%s': entry is not a JSON object", path, nm);

    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    if (!dt)
        return jm_fail(err, JM_EFORMAT, "%s: tensor '%s': missing dtype", path, nm);
    if (!cJSON_IsString(dt))
        return jm_fail(err, JM_EFORMAT, "%s: tensor '%s': dtype is not a string", path, nm);
    int d = 0;
    while (d < ST_NDTYPES && strcmp(dt->valuestring, dtypes[d].name) != 0)
        d++;
    if (d == ST_NDTYPES) {
        char db[ST_SHOWLEN];
        return jm_fail(err, JM_EFORMAT, "%s: tensor '%s': unknown dtype '%s'", path, nm,
                       show(db, dt->valuestring));
    }
    t->dtype = (st_dtype)d;

    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    if (!sh)
        return jm_fail(err, JM_EFORMAT, "%s: tensor '%s': missing shape", path, nm);
    if (!cJSON_IsArray(sh))
        return jm_fail(err, JM_EFORMAT, "%s: tensor '%s': shape is not an array", path, nm);
    int ndim = cJSON_GetArraySize(sh);
    if (ndim > ST_MAX_DIMS)
        return jm_fail(err, JM_EFORMAT, "%s: tensor '%s': shape has %d dims, too many (max %d)",
                       path, nm, ndim, ST_MAX_DIMS);
    t->ndim = ndim;
    /* Element count times dtype size, checked at each step so a shape such as
     * [2^40, 2^40] cannot wrap around to match a small data_offsets range. */
    uint64_t bytes = dtypes[d].size;
    int overflow = 0, empty = 0;
    int i = 0;
    for (const cJSON *dim = sh->child; dim; dim = dim->next, i++) {
        uint64_t v;
        if (!json_uint(dim, &v))
            return jm_fail(err, JM_EFORMAT,
                           "%s: tensor '%s': shape dim %d is not a non-negative integer", path, nm, i);
        t->shape[i] = (int64_t)v;
        if (v == 0)
            empty = 1;
        else if (bytes > UINT64_MAX / v)
            overflow = 1;
        else
            bytes *= v;
    }
    /* A zero dim makes the tensor empty whatever the other dims say. */
    if (empty)
        bytes = 0;
    else if (overflow)
        return jm_fail(err, JM_EFORMAT, "%s: tensor '%s': shape size overflows", path, nm);

    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!off)
        return jm_fail(err, JM_EFORMAT, "%s: tensor '%s': missing data_offsets", path, nm);
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2 || !json_uint(off->child, begin) ||
        !json_uint(off->child->next, end))
        return jm_fail(err, JM_EFORMAT,
                       "%s: tensor '%s': data_offsets is not [begin, end] of non-negative integers",
                       path, nm);
    if (*begin > *end)
        return jm_fail(err, JM_EFORMAT, "%s: tensor '%s': data_offsets [%llu, %llu] reversed",
                       path, nm, (unsigned long long)*begin, (unsigned long long)*end);
    if (*end > data_len)
        return jm_fail(err, JM_EFORMAT,
                       "%s: tensor '%s': data_offsets [%llu, %llu] outside the data area (%llu bytes)",
                       path, nm, (unsigned long long)*begin, (unsigned long long)*end,
                       (unsigned long long)data_len);
    if (*end - *begin != bytes) {
        char sb[160];
        fmt_shape(sb, sizeof sb, ndim, t->shape);
        return jm_fail(err, JM_EFORMAT,
                       "%s: tensor '%s': data_offsets [%llu, %llu] hold %llu bytes but %s %s needs %llu",
                       path, nm, (unsigned long long)*begin, (unsigned long long)*end,
                       (unsigned long long)(*end - *begin), dtypes[d].name, sb,
                       (unsigned long long)bytes);
    }
    t->nbytes = (size_t)bytes;
    return JM_OK;
}

/* Where one tensor's bytes lie in the data area, for the overlap check. */
typedef struct {
    uint64_t begin, end;
    int idx;
} st_span;

static int cmp_name(const void *a, const void *b)
{
    return strcmp((*(const st_tensor *const *)a)->name, (*(const st_tensor *const *)b)->name);
}

static int cmp_begin(const void *a, const void *b)
{
    uint64_t x = ((const st_span *)a)->begin, y = ((const st_span *)b)->begin;
    return x < y ? -1 : x > y;
}

/* Header bytes -> f->t, f->names, f->by_name. `hdr` is NUL-terminated. */
static int parse_header(st_file *f, const char *hdr, uint64_t hlen, uint64_t data_len, jm_err *err)
{
    const char *path = f->path;
    const char *endp = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(hdr, (size_t)hlen, &endp, 0);
    st_span *span = NULL;
    int rc = JM_OK;

    if (!root) {
        rc = jm_fail(err, JM_EFORMAT, "%s: header is not valid JSON (error at header byte %lld)",
                     path, endp ? (long long)(endp - hdr) : -1LL);
        goto out;
    }
    /* The writer pads the header with spaces to align the data; anything else
     * after the JSON value means the length or the header is wrong. */
    for (const char *p = endp; p < hdr + hlen; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            rc = jm_fail(err, JM_EFORMAT,
                         "%s: header is not valid JSON (trailing bytes at header byte %lld)", path,
                         (long long)(p - hdr));
            goto out;
        }
    if (!cJSON_IsObject(root)) {
        rc = jm_fail(err, JM_EFORMAT, "%s: header JSON is not an object", path);
        goto out;
    }

    int n = 0;
    size_t names_len = 0;
    for (const cJSON *e = root->child; e; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0)
            continue;
        n++;
        names_len += strlen(e->string) + 1;
    }
    /* Every entry takes several header bytes, so n is bounded by the header cap
     * and these sizes cannot overflow. The +1s avoid malloc(0) for n == 0. */
    f->t = calloc((size_t)n + 1, sizeof *f->t);
    f->by_name = malloc(((size_t)n + 1) * sizeof *f->by_name);
    f->names = malloc(names_len + 1);
    span = malloc(((size_t)n + 1) * sizeof *span);
    if (!f->t || !f->by_name || !f->names || !span) {
        rc = jm_fail(err, JM_ENOMEM, "%s: out of memory for %d tensors", path, n);
        goto out;
    }

    int i = 0;
    char *np = f->names;
    for (const cJSON *e = root->child; e; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0) {
            /* Free-form string map; we use none of it but refuse a malformed one. */
            if (!cJSON_IsObject(e)) {
                rc = jm_fail(err, JM_EFORMAT, "%s: __metadata__ is not an object", path);
                goto out;
            }
            for (const cJSON *m = e->child; m; m = m->next)
                if (!cJSON_IsString(m)) {
                    char mb[ST_SHOWLEN];
                    rc = jm_fail(err, JM_EFORMAT, "%s: __metadata__ '%s' is not a string", path,
                                 show(mb, m->string));
                    goto out;
                }
            continue;
        }
        rc = parse_entry(path, e, data_len, &f->t[i], &span[i].begin, &span[i].end, err);
        if (rc)
            goto out;
        span[i].idx = i;
        size_t l = strlen(e->string) + 1;
        memcpy(np, e->string, l);
        f->t[i].name = np;
        np += l;
        i++;
    }
    f->n = n;

    for (i = 0; i < n; i++)
        f->by_name[i] = &f->t[i];
    qsort(f->by_name, (size_t)n, sizeof *f->by_name, cmp_name);
    for (i = 1; i < n; i++)
        if (strcmp(f->by_name[i - 1]->name, f->by_name[i]->name) == 0) {
            char nb[ST_SHOWLEN];
            rc = jm_fail(err, JM_EFORMAT, "%s: duplicate tensor name '%s'", path,
                         show(nb, f->by_name[i]->name));
            goto out;
        }

    const char *data = (const char *)f->map + 8 + hlen;
    for (i = 0; i < n; i++)
        f->t[i].data = data + span[i].begin;

    /* Overlap check on tensors sorted by start; empty tensors occupy nothing.
     * `far` is the tensor reaching furthest so far: any later one must start at
     * or after its end. */
    qsort(span, (size_t)n, sizeof *span, cmp_begin);
    const st_span *far = NULL;
    for (i = 0; i < n; i++) {
        const st_span *s = &span[i];
        if (s->begin == s->end)
            continue;
        if (far && s->begin < far->end) {
            char ab[ST_SHOWLEN], bb[ST_SHOWLEN];
            rc = jm_fail(err, JM_EFORMAT, "%s: tensors '%s' [%llu, %llu] and '%s' [%llu, %llu] overlap",
                         path, show(ab, f->t[far->idx].name), (unsigned long long)far->begin,
                         (unsigned long long)far->end, show(bb, f->t[s->idx].name),
                         (unsigned long long)s->begin, (unsigned long long)s->end);
            goto out;
        }
        if (!far || s->end > far->end)
            far = s;
    }

out:
    cJSON_Delete(root);
    free(span);
    return rc;
}

int st_open(const char *path, st_file **out, jm_err *err)
{
    *out = NULL;
    int rc = JM_OK;
    int fd = -1;
    char *hdr = NULL;
    st_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path))) {
        rc = jm_fail(err, JM_ENOMEM, "%s: out of memory", path);
        goto out;
    }

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = jm_fail(err, errno == ENOENT ? JM_ENOTFOUND : JM_EIO, "%s: %s", path, strerror(errno));
        goto out;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        rc = jm_fail(err, JM_EIO, "%s: %s", path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(sb.st_mode)) {
        rc = jm_fail(err, JM_EIO, "%s: not a regular file", path);
        goto out;
    }
    uint64_t fsize = (uint64_t)sb.st_size;
    if (fsize < 8) {
        rc = jm_fail(err, JM_EFORMAT, "%s: too short: %llu bytes, need at least 8 for the header length",
                     path, (unsigned long long)fsize);
        goto out;
    }
    if (fsize > SIZE_MAX) {
        rc = jm_fail(err, JM_EFORMAT, "%s: too large to map (%llu bytes)", path, (unsigned long long)fsize);
        goto out;
    }
    /* MAP_PRIVATE + PROT_READ: the weights are never written. If the file is
     * truncated by someone else while mapped, reads past the new end raise
     * SIGBUS; nothing here can guard against that. */
    void *map = mmap(NULL, (size_t)fsize, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
        rc = jm_fail(err, JM_EIO, "%s: mmap: %s", path, strerror(errno));
        goto out;
    }
    f->map = map;
    f->map_len = (size_t)fsize;
    /* Small pages only. The page cache may hold the file in 2 MB folios, and
     * the kernel then maps a whole folio where one page was read: the word
     * table's 1.5 KB rows a query reads would each bring up to 2 MB into the
     * RSS (measured at 100,000 jobs: 18 MB more after the queries, a peak of
     * 156 MB against 138). Only advice: a failure changes nothing else. */
    (void)madvise(map, (size_t)fsize, MADV_NOHUGEPAGE);

    const unsigned char *p = map;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | p[i];
    if (hlen > ST_MAX_HEADER) {
        rc = jm_fail(err, JM_EFORMAT, "%s: header length %llu is too large (limit %llu bytes)", path,
                     (unsigned long long)hlen, (unsigned long long)ST_MAX_HEADER);
        goto out;
    }
    if (8 + hlen > fsize) {
        rc = jm_fail(err, JM_EFORMAT, "%s: truncated: header says %llu bytes but file has %llu", path,
                     (unsigned long long)hlen, (unsigned long long)fsize);
        goto out;
    }
    /* A private NUL-terminated copy: the parser then cannot run off the end of
     * the mapping, and the sanitizers see the buffer it reads. */
    hdr = malloc((size_t)hlen + 1);
    if (!hdr) {
        rc = jm_fail(err, JM_ENOMEM, "%s: out of memory for a %llu-byte header", path,
                     (unsigned long long)hlen);
        goto out;
    }
    memcpy(hdr, p + 8, (size_t)hlen);
    hdr[hlen] = '\0';
    rc = parse_header(f, hdr, hlen, fsize - 8 - hlen, err);

out:
    if (fd >= 0)
        close(fd);
    free(hdr);
    if (rc) {
        st_close(f);
        return rc;
    }
    *out = f;
    return JM_OK;
}

void st_close(st_file *f)
{
    if (!f)
        return;
    if (f->map)
        munmap(f->map, f->map_len);
    free(f->t);
    free(f->by_name);
    free(f->names);
    free(f->path);
    free(f);
}

void st_release(const st_file *f, const st_tensor *t)
{
    /* Only whole pages inside the tensor: neighbours may still be in use. */
    long pg = sysconf(_SC_PAGESIZE);
    uintptr_t a = (uintptr_t)t->data, e = a + t->nbytes;
    uintptr_t lo = (a + (uintptr_t)pg - 1) & ~((uintptr_t)pg - 1), hi = e & ~((uintptr_t)pg - 1);
    if (!f || !f->map || hi <= lo)
        return;
    madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

const char *st_path(const st_file *f)
{
    return f->path;
}

int st_count(const st_file *f)
{
    return f->n;
}

const st_tensor *st_at(const st_file *f, int i)
{
    return i >= 0 && i < f->n ? &f->t[i] : NULL;
}

const st_tensor *st_find(const st_file *f, const char *name)
{
    int lo = 0, hi = f->n;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        const st_tensor *t = f->by_name[mid];
        int c = strcmp(name, t->name);
        if (c == 0)
            return t;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

int st_expect(const st_file *f, const char *name, st_dtype dtype, int ndim,
              const int64_t *shape, const st_tensor **out, jm_err *err)
{
    if (out)
        *out = NULL;
    char nb[ST_SHOWLEN];
    if (ndim < 0 || ndim > ST_MAX_DIMS)
        return jm_fail(err, JM_EINVAL, "%s: tensor '%s': expected ndim %d out of range", f->path,
                       show(nb, name), ndim);
    const st_tensor *t = st_find(f, name);
    if (!t)
        return jm_fail(err, JM_ENOTFOUND, "%s: missing tensor '%s'", f->path, show(nb, name));
    int same = t->dtype == dtype && t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++)
        same = t->shape[i] == shape[i];
    if (!same) {
        char want[160], got[160];
        fmt_shape(want, sizeof want, ndim, shape);
        fmt_shape(got, sizeof got, t->ndim, t->shape);
        return jm_fail(err, JM_EFORMAT, "%s: tensor '%s': expected %s %s, found %s %s", f->path,
                       show(nb, name), st_dtype_name(dtype), want, st_dtype_name(t->dtype), got);
    }
    if (out)
        *out = t;
    return JM_OK;
}

/* IEEE half -> float, including subnormals, infinities and NaN. */
static float f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    uint32_t bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | man << 13;
    } else if (exp != 0) {
        bits = sign | (exp + 112) << 23 | man << 13; /* rebias 15 -> 127 */
    } else if (man == 0) {
        bits = sign;
    } else {
        /* Subnormal half: normalise the mantissa into a normal float. */
        int e = -1;
        do {
            man <<= 1;
            e++;
        } while (!(man & 0x400));
        bits = sign | (uint32_t)(112 - e) << 23 | (man & 0x3ff) << 13;
    }
    float out;
    memcpy(&out, &bits, sizeof out);
    return out;
}

int st_to_f32(const st_tensor *t, float *dst, jm_err *err)
{
    size_t esz = st_dtype_size(t->dtype);
    size_t n = esz ? t->nbytes / esz : 0;
    const unsigned char *src = t->data;
    char nb[ST_SHOWLEN];
    switch (t->dtype) {
    case ST_F32:
        /* memcpy: the mapping gives no alignment guarantee for a hostile file. */
        if (n)
            memcpy(dst, src, n * sizeof *dst);
        return JM_OK;
    case ST_F16:
        for (size_t i = 0; i < n; i++)
            dst[i] = f16_to_f32((uint16_t)(src[2 * i] | src[2 * i + 1] << 8));
        return JM_OK;
    case ST_BF16:
        /* bfloat16 is the top half of a float32. */
        for (size_t i = 0; i < n; i++) {
            uint32_t bits = (uint32_t)(src[2 * i] | src[2 * i + 1] << 8) << 16;
            memcpy(&dst[i], &bits, sizeof bits);
        }
        return JM_OK;
    default:
        return jm_fail(err, JM_EINVAL, "tensor '%s': cannot convert %s to F32 (only F32, F16, BF16)",
                       show(nb, t->name), st_dtype_name(t->dtype));
    }
}
