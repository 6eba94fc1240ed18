/* idx.c - the vector index: rows in chunked inverted lists, the coarse
 * quantiser (two-level spherical k-means on the 4-bit codes), scalar
 * reference kernels, dispatch, the search, the top-k heap and the snapshot
 * format. See idx.h for the design. */
#define _GNU_SOURCE /* mremap */
#include "idx.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* idx_avx2.c */
void idx_dot_u4_avx2(const int8_t *q, const int8_t *lut, const uint8_t *codes, size_t row,
                     const uint32_t *rows, int n, int32_t *out);
void idx_dot_u4_nta_avx2(const int8_t *q, const int8_t *lut, const uint8_t *codes, size_t row,
                         const uint32_t *rows, int n, int32_t *out);
/* idx_avx512.c */
void idx_dot_u4_avx512(const int8_t *q, const int8_t *lut, const uint8_t *codes, size_t row,
                       const uint32_t *rows, int n, int32_t *out);
void idx_dot_u4_nta_avx512(const int8_t *q, const int8_t *lut, const uint8_t *codes, size_t row,
                           const uint32_t *rows, int n, int32_t *out);
void idx_dot_c8_avx2(const int8_t *lut, const uint8_t *code, size_t row, const uint8_t *cent,
                     int m, int32_t *out);
void idx_dot_f32_avx2(const float *q, const float *vecs, int dim, int n, float *out);
void idx_acc_u4_avx2(const int8_t *lut, const uint8_t *code, size_t row, float scale, float *sum);
float idx_encode_avx2(const float *v, const float *c, int dim, size_t row, uint8_t *code);
float idx_score_u4_avx2(const float *q, const float *lut, const uint8_t *r, int dim);

enum {
    BLOCK = 256,          /* rows scored per kernel call */
    CENTRE_MIN = 1024,    /* live vectors before the first centre is computed */
    MAXGEN = 32,          /* code generations (centres); doublings from CENTRE_MIN need < 24 */
    CENTRE_SAMPLE = 16384, /* live vectors a centre is the mean of, at most */
    CH_SHIFT = 8,
    CH = 1 << CH_SHIFT,   /* rows per chunk */
    KM_ITERS = 8,         /* k-means iterations, at most */
    KM_SAMPLE = 64,       /* training vectors per list */
    C8_OFF = 64,          /* centroid codes are round(c / scale) + 64, in [1, 127] */
    PIECE = 4096,         /* rows per jm_bin call in a snapshot */
    GATHER_COST = 3,      /* a row read at a random place costs about this many read in a list */
    ASSIGN_CELLS = 2      /* coarse cells whose leaves an assignment compares */
};

/* positions (chunk << CH_SHIFT | i) fit 32 bits, UINT32_MAX (NO_POS) excluded */
#define MAX_CHUNKS (((size_t)1 << (32 - CH_SHIFT)) - 1)
#define IDX_MAGIC 0x31305844494d4a4aULL /* "JJMIDX01" little-endian */
#define IDX_END 0x444e4558444d4a4aULL   /* "JJMDXEND" */
#define NO_POS UINT32_MAX

/* One mmap'd array: see slab_grow. */
typedef struct slab {
    void *p;
    size_t size; /* bytes mapped */
} slab;

/* An inverted list: its rows fill chunks ch[0 .. nch) in order, all full
 * but the last; nch = ceil(n / CH) always (an emptied chunk is freed). */
typedef struct ilist {
    uint32_t n, nch, cap;
    uint32_t *ch;
    int64_t csum; /* sum of row_cos over its rows (leaves only; see leaf_scores) */
} ilist;

/* A set of unit centroids: float for the search's ranking, int8 for the
 * assignment of 4-bit codes (c ~ s * (q - C8_OFF)), and cen[g] . c per
 * generation g. */
typedef struct cset {
    int n;
    float *f;   /* [n][dim] */
    uint8_t *q; /* [n][2 * row], C8_OFF past dim */
    float *s;   /* [n] */
    float *gd;  /* [MAXGEN][n] */
} cset;

struct idx {
    int dim;
    size_t row;         /* bytes per code row: 32 * ceil(dim / 64) */
    /* Per slot. */
    uint32_t scap;      /* slots allocated, a multiple of 64 */
    uint32_t nslots;    /* 1 + highest slot ever set */
    size_t count;       /* live slots */
    uint64_t *live;     /* [scap / 64] */
    uint32_t *pos;      /* [scap] position of each live slot's row */
    slab live_s, pos_s;
    /* Rows, by position p = chunk << CH_SHIFT | i. */
    uint32_t chcap;     /* chunks the arrays hold */
    uint32_t nchunk;    /* chunks handed out so far (the rest never touched) */
    uint32_t nfree;     /* freed chunks, on the stack freech */
    uint8_t *codes;     /* [chcap * CH][row] 4-bit codes */
    float *scale;       /* [chcap * CH] */
    uint8_t *gen;       /* [chcap * CH] generation (centre) the code was taken around */
    uint32_t *slot_of;  /* [chcap * CH] */
    uint32_t *owner;    /* [chcap] list holding the chunk */
    uint32_t *freech;   /* [chcap] */
    slab codes_s, scale_s, gen_s, sof_s, own_s, free_s;
    /* Centres: cen[0] = NULL (zero), cen[g] [dim] for 0 < g < ngen. */
    float *cen[MAXGEN];
    int ngen;
    size_t centre_at;   /* live count when the newest centre was computed */
    /* Inverted file. */
    int nlist;          /* leaf lists, 0 before the first training */
    ilist *lists;       /* [nlist + 1]: the leaves, then the unassigned list */
    cset c1, cl;        /* coarse cells, leaves */
    uint32_t *cell;     /* [c1.n + 1]: leaves of cell i are [cell[i], cell[i + 1]) */
    int32_t *atmp;      /* [nlist] scratch of the assignment (writers only) */
    size_t trained_at;  /* live count at the last training */
    size_t train_at;    /* live count at which to train next */
    size_t ivf_min;     /* SIZE_MAX = never train, search exhaustively */
    int nprobe;
    float filter_exp;   /* see idx_set_probe */
    float spread;       /* see idx_set_spread and leaf_scores */
};

/* ---- Scalar reference kernels ---- */

/* Nibble of component d in a code row: the 32 bytes of block d / 64 hold
 * components 64b + j in their low and 64b + 32 + j in their high nibbles. */
static inline int nib(const uint8_t *r, int d)
{
    uint8_t b = r[(d >> 6) * 32 + (d & 31)];
    return d & 32 ? b >> 4 : b & 15;
}

static void dot_u4_ref(const int8_t *q, const int8_t *lv, const uint8_t *codes, size_t row,
                       const uint32_t *rows, int n, int32_t *out)
{
    for (int i = 0; i < n; i++) {
        const uint8_t *r = codes + (size_t)rows[i] * row;
        int32_t s = 0;
        for (int d = 0; d < (int)(2 * row); d++)
            s += (int32_t)q[d] * lv[nib(r, d)];
        out[i] = s;
    }
}

static void dot_c8_ref(const int8_t *lv, const uint8_t *code, size_t row, const uint8_t *cent,
                       int m, int32_t *out)
{
    for (int j = 0; j < m; j++) {
        const uint8_t *c = cent + (size_t)j * 2 * row;
        int32_t s = 0;
        for (int d = 0; d < (int)(2 * row); d++)
            s += (int32_t)lv[nib(code, d)] * ((int32_t)c[d] - C8_OFF);
        out[j] = s;
    }
}

static void acc_u4_ref(const int8_t *lv, const uint8_t *code, size_t row, float scale, float *sum)
{
    for (int d = 0; d < (int)(2 * row); d++)
        sum[d] += (float)lv[nib(code, d)] * scale;
}

static void dot_f32_ref(const float *q, const float *vecs, int dim, int n, float *out)
{
    for (int i = 0; i < n; i++) {
        const float *v = vecs + (size_t)i * dim;
        float s = 0;
        for (int d = 0; d < dim; d++)
            s += q[d] * v[d];
        out[i] = s;
    }
}

/* ---- Dispatch ---- */

static float score_u4_ref(const float *q, const float *lut, const uint8_t *r, int dim)
{
    float a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0;
    int b0 = 0;
    for (; b0 + 64 <= dim; b0 += 64, r += 32) {
        const float *ql = q + b0, *qh = q + b0 + 32;
        for (int j = 0; j < 32; j += 4) {
            a0 += ql[j] * lut[r[j] & 15];
            a1 += ql[j + 1] * lut[r[j + 1] & 15];
            a2 += ql[j + 2] * lut[r[j + 2] & 15];
            a3 += ql[j + 3] * lut[r[j + 3] & 15];
            a4 += qh[j] * lut[r[j] >> 4];
            a5 += qh[j + 1] * lut[r[j + 1] >> 4];
            a6 += qh[j + 2] * lut[r[j + 2] >> 4];
            a7 += qh[j + 3] * lut[r[j + 3] >> 4];
        }
    }
    for (int d = b0; d < dim; d++) /* a last, partial block */
        a0 += q[d] * lut[nib(r, d - b0)];
    return ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7));
}

static float encode_ref(const float *v, const float *c, int dim, size_t row, uint8_t *code);
static const idx_kernel kern_ref = {"scalar",   dot_u4_ref,  dot_c8_ref, acc_u4_ref,
                                    dot_f32_ref, encode_ref, score_u4_ref};
static const idx_kernel kern_avx2 = {"avx2",          idx_dot_u4_avx2,  idx_dot_c8_avx2,
                                     idx_acc_u4_avx2, idx_dot_f32_avx2, idx_encode_avx2,
                                     idx_score_u4_avx2};
/* The same with non-temporal prefetches, for AMD CPUs (idx_avx2.c says why). */
static const idx_kernel kern_avx2_nta = {"avx2-nta",          idx_dot_u4_nta_avx2, idx_dot_c8_avx2,
                                         idx_acc_u4_avx2,     idx_dot_f32_avx2,    idx_encode_avx2,
                                         idx_score_u4_avx2};
/* AVX-512 VNNI's 4-bit product (idx_avx512.c), the rest AVX2's. */
static const idx_kernel kern_avx512 = {"avx512",        idx_dot_u4_avx512, idx_dot_c8_avx2,
                                       idx_acc_u4_avx2, idx_dot_f32_avx2,  idx_encode_avx2,
                                       idx_score_u4_avx2};
static const idx_kernel kern_avx512_nta = {"avx512-nta",    idx_dot_u4_nta_avx512, idx_dot_c8_avx2,
                                           idx_acc_u4_avx2, idx_dot_f32_avx2,      idx_encode_avx2,
                                           idx_score_u4_avx2};
static const idx_kernel *kern = &kern_ref;
static pthread_once_t kern_once = PTHREAD_ONCE_INIT;

static int have_avx2(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
           __builtin_cpu_supports("popcnt");
}

static int have_avx512_vnni(void)
{
    __builtin_cpu_init();
    return have_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
}

static void kern_init(void)
{
    const char *cap = getenv("JOBMATCH_ISA");
    if (cap && strcmp(cap, "scalar") == 0)
        return;
    __builtin_cpu_init(); /* before __builtin_cpu_is, not only in the have_ helpers */
    int amd = __builtin_cpu_is("amd");
    if (have_avx512_vnni() && !(cap && strcmp(cap, "avx2") == 0))
        kern = amd ? &kern_avx512_nta : &kern_avx512;
    else if (have_avx2())
        kern = amd ? &kern_avx2_nta : &kern_avx2;
}

static const idx_kernel *kernels(void)
{
    pthread_once(&kern_once, kern_init);
    return kern;
}

int idx_kernel_variants(idx_kernel *out, int cap)
{
    int n = 0;
    if (n < cap)
        out[n++] = kern_ref;
    if (n < cap && have_avx2())
        out[n++] = kern_avx2;
    if (n < cap && have_avx2())
        out[n++] = kern_avx2_nta;
    if (n < cap && have_avx512_vnni())
        out[n++] = kern_avx512;
    if (n < cap && have_avx512_vnni())
        out[n++] = kern_avx512_nta;
    return n;
}

const char *idx_isa(void) { return kernels()->name; }

/* ---- Quantisation ---- */

/* Levels of the 4-bit codes, in units of the per-vector scale: the 16-level
 * Lloyd-Max quantiser of a unit normal (levels +-0.1284 +-0.3881 ... +-2.7326)
 * times 127 / 2.7326, rounded. A stored component is centre[d] + scale *
 * LUT[code]. */
static const int8_t LUT[16] = {-127, -96, -75, -58, -44, -31, -18, -6,
                               6,    18,  31,  44,  58,  75,  96,  127};
static const float LUTF[16] = {-127, -96, -75, -58, -44, -31, -18, -6,
                               6,    18,  31,  44,  58,  75,  96,  127};
/* The levels halved (rounded), for the assignment to centroids and the
 * search: with |level| <= 64 the centroid and 4-bit kernels add two
 * vpmaddubsw results in int16 before widening them. Scores computed with it
 * are doubled back. */
static const int8_t LUT2[16] = {-64, -48, -38, -29, -22, -16, -9, -3, 3, 9, 16, 22, 29, 38, 48, 64};
/* Symmetric int8 for queries: code = round(v / scale), half away from zero,
 * scale = max|v| / QMAX. Returns the scale (0 for a zero vector, whose codes
 * are all 0). No libm calls: this runs for every query. QMAX 63 (not 127)
 * lets the 4-bit kernel add products in int16 (see dot_u4 in idx.h); its
 * rounding error (~2% of a component) is small beside the 4-bit codes'. */
enum { QMAX = 63 };
static float quantise(const float *v, int dim, int8_t *code)
{
    float m = 0;
    for (int d = 0; d < dim; d++) {
        float a = fabsf(v[d]);
        m = a > m ? a : m;
    }
    if (m == 0) {
        memset(code, 0, (size_t)dim);
        return 0;
    }
    /* Branch-free: the signs of an embedding are random, so a branch on
     * them mispredicts half the time. */
    float inv = (float)QMAX / m;
    for (int d = 0; d < dim; d++) {
        float r = v[d] * inv;
        int c = (int)(r + copysignf(0.5f, r));
        c = c > QMAX ? QMAX : c;
        code[d] = (int8_t)(c < -QMAX ? -QMAX : c);
    }
    return m / (float)QMAX;
}

/* sum_d (v[d] - c[d])^2 (c NULL: zero) in double (no overflow for any
 * finite floats), in four partial sums so that the adds do not wait on one
 * another. */
static double norm2c(const float *v, const float *c, int dim)
{
    double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    int d = 0;
    if (c) {
        for (; d + 4 <= dim; d += 4) {
            double t0 = v[d] - c[d], t1 = v[d + 1] - c[d + 1], t2 = v[d + 2] - c[d + 2],
                   t3 = v[d + 3] - c[d + 3];
            a0 += t0 * t0;
            a1 += t1 * t1;
            a2 += t2 * t2;
            a3 += t3 * t3;
        }
        for (; d < dim; d++)
            a0 += (double)(v[d] - c[d]) * (v[d] - c[d]);
    } else {
        for (; d + 4 <= dim; d += 4) {
            a0 += (double)v[d] * v[d];
            a1 += (double)v[d + 1] * v[d + 1];
            a2 += (double)v[d + 2] * v[d + 2];
            a3 += (double)v[d + 3] * v[d + 3];
        }
        for (; d < dim; d++)
            a0 += (double)v[d] * v[d];
    }
    return (a0 + a1) + (a2 + a3);
}

static double norm2(const float *v, int dim) { return norm2c(v, NULL, dim); }

/* LEVEL[i]: how many of the midpoints between consecutive positive levels
 * (12, 24.5, 37.5, 51, 66.5, 85.5, 111.5) are <= i / 2. */
static uint8_t LEVEL[256];
static pthread_once_t level_once = PTHREAD_ONCE_INIT;

static void level_init(void)
{
    for (int i = 0; i < 256; i++) {
        int k = 0;
        for (int j = 8; j < 15; j++)
            k += i >= LUT[j] + LUT[j + 1]; /* 2 * midpoint, an integer */
        LEVEL[i] = (uint8_t)k;
    }
}

/* Nibble of one residual component t (in LUT units, finite): the nearest
 * level, by a table on |t| in steps of 1/2 (the midpoints are multiples of
 * 1/2, so this is exact). */
static inline int level(float t)
{
    float a = 2 * fabsf(t);
    int k = LEVEL[a < 255.0f ? (int)a : 255];
    return t >= 0 ? 8 + k : 7 - k;
}

/* 4-bit code of r = v - c (c NULL: zero) into code[row]: each component to
 * the nearest level of LUT times s = rms(r) / 46.48, i.e. the Lloyd-Max
 * quantiser of N(0, rms^2). Returns the scale the stored vector uses,
 * |r|^2 / (r . LUT[code]) rather than s: it makes r . rhat = |r|^2, so the
 * score of a vector against itself or a near neighbour is not biased low
 * by the ~1% a least-squares scale gives (the Lloyd-Max reconstruction is
 * shorter than the vector). 0 when v == c (all codes 8, rhat = 0). One
 * sqrt, no other libm call: this runs for every vector inserted. The
 * reference for idx_kernel.encode: |r|^2 in double in four partial sums
 * (component d in sum d % 4), r . LUT[code] in float in eight (d % 8),
 * each in component order, added up as below; the AVX2 version keeps
 * that order, so both give the same bits. */
static float encode_ref(const float *v, const float *c, int dim, size_t row, uint8_t *code)
{
    enum { B = 64 };
    float r[B], acc[8] = {0};
    memset(code, 0x88, row); /* past dim: level 8 (q is zero there) */
    pthread_once(&level_once, level_init);
    double ss = norm2c(v, c, dim);
    float inv = (float)(46.476 / sqrt(ss / dim));
    if (!(inv < INFINITY)) /* r == 0, or too small to scale */
        return 0;
    for (int b0 = 0; b0 < dim; b0 += B) {
        int m = dim - b0 < B ? dim - b0 : B;
        for (int j = 0; j < m; j++)
            r[j] = v[b0 + j] - (c ? c[b0 + j] : 0);
        for (int j = m; j < B; j++)
            r[j] = 0;
        uint8_t *o = code + b0 / 2;
        uint8_t l[B];
        for (int j = 0; j < B; j++) {
            l[j] = (uint8_t)level(r[j] * inv);
            acc[j & 7] += r[j] * LUTF[l[j]];
        }
        for (int j = 0; j < 32; j++)
            o[j] = (uint8_t)(l[j] | l[j + 32] << 4);
    }
    double rl = (((double)acc[0] + acc[1]) + ((double)acc[2] + acc[3])) +
                (((double)acc[4] + acc[5]) + ((double)acc[6] + acc[7]));
    return rl > 0 ? (float)(ss / rl) : 0;
}

static int all_finite(const float *v, size_t n)
{
    for (size_t d = 0; d < n; d++)
        if (!isfinite(v[d]))
            return 0;
    return 1;
}

/* a . b in float32, in eight partial sums (the same order everywhere). */
static float dotf(const float *a, const float *b, int dim)
{
    float a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0;
    int d = 0;
    for (; d + 8 <= dim; d += 8) {
        a0 += a[d] * b[d];
        a1 += a[d + 1] * b[d + 1];
        a2 += a[d + 2] * b[d + 2];
        a3 += a[d + 3] * b[d + 3];
        a4 += a[d + 4] * b[d + 4];
        a5 += a[d + 5] * b[d + 5];
        a6 += a[d + 6] * b[d + 6];
        a7 += a[d + 7] * b[d + 7];
    }
    for (; d < dim; d++)
        a0 += a[d] * b[d];
    return ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7));
}

/* The dequantised vector of one code row (around centre c, NULL: zero). */
static void decode(const uint8_t *r, float scale, const float *c, int dim, float *out)
{
    float t[16];
    for (int u = 0; u < 16; u++)
        t[u] = scale * LUTF[u];
    for (int b0 = 0; b0 < dim; b0 += 64, r += 32) {
        int m = dim - b0 < 64 ? dim - b0 : 64;
        for (int j = 0; j < 32 && j < m; j++)
            out[b0 + j] = t[r[j] & 15];
        for (int j = 32; j < m; j++)
            out[b0 + j] = t[r[j - 32] >> 4];
    }
    if (c)
        for (int d = 0; d < dim; d++)
            out[d] += c[d];
}

/* ---- Storage ---- */

/* The big arrays come straight from mmap and grow with mremap: pages are
 * zero-filled, resident only once touched, moved rather than copied when
 * the capacity doubles (so growth never holds the old and the new array at
 * once: the peak RSS is the final one), and given back when freed. Under
 * AddressSanitizer they come from malloc, so that overruns are caught. */
#if defined(__SANITIZE_ADDRESS__)
#define SLAB_MALLOC 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SLAB_MALLOC 1
#endif
#endif

/* Grows s to at least `size` bytes, keeping its contents; the new bytes are
 * zero. Returns 0, or -1 with s unchanged. */
static int slab_grow(slab *s, size_t size)
{
    if (size <= s->size)
        return 0;
#ifdef SLAB_MALLOC
    char *q = aligned_alloc(64, (size + 63) & ~(size_t)63);
    if (!q)
        return -1;
    if (s->size)
        memcpy(q, s->p, s->size);
    memset(q + s->size, 0, size - s->size);
    free(s->p);
#else
    void *q = s->p ? mremap(s->p, s->size, size, MREMAP_MAYMOVE)
                   : mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (q == MAP_FAILED)
        return -1;
#endif
    s->p = q;
    s->size = size;
    return 0;
}

static void slab_release(slab *s)
{
#ifdef SLAB_MALLOC
    free(s->p);
#else
    if (s->p)
        munmap(s->p, s->size);
#endif
    s->p = NULL;
    s->size = 0;
}

static inline int is_live(const idx *x, uint32_t s) { return x->live[s >> 6] >> (s & 63) & 1; }

static inline uint32_t lpos(const ilist *L, uint32_t k)
{
    return L->ch[k >> CH_SHIFT] << CH_SHIFT | (k & (CH - 1));
}

static inline const uint8_t *rowp(const idx *x, uint32_t p)
{
    return x->codes + (size_t)p * x->row;
}

/* The row at p's cosine with leaf li's centroid, as the assignment scores
 * it, in units of 2^-16. Integers, so that a list's sum is exact whatever
 * order its rows came and went in: a loaded index sums its rows afresh and
 * must probe in the same order as the one saved. */
static int64_t row_cos(const idx *x, const idx_kernel *kn, uint32_t p, uint32_t li)
{
    int32_t dot;
    kn->dot_c8(LUT2, rowp(x, p), x->row, x->cl.q + (size_t)li * 2 * x->row, 1, &dot);
    float v = x->cl.gd[(size_t)x->gen[p] * x->cl.n + li] + 2 * x->scale[p] * x->cl.s[li] * (float)dot;
    v = v > 16 ? 16 : v < -16 ? -16 : v; /* (unit rows: within about +-1) */
    return (int64_t)lrintf(v * 65536.0f);
}

static void cset_free(cset *c)
{
    free(c->f);
    free(c->q);
    free(c->s);
    free(c->gd);
    memset(c, 0, sizeof *c);
}

static int cset_alloc(cset *c, int n, int dim, size_t row)
{
    memset(c, 0, sizeof *c);
    c->n = n;
    c->f = malloc(sizeof(float) * (size_t)n * dim);
    c->q = malloc((size_t)n * 2 * row);
    c->s = malloc(sizeof(float) * (size_t)n);
    c->gd = calloc((size_t)MAXGEN * n, sizeof(float));
    if (!c->f || !c->q || !c->s || !c->gd) {
        cset_free(c);
        return -1;
    }
    return 0;
}

/* int8 codes of unit centroids f[n][dim] into q[n][2 * row] and s[n]:
 * q = round(f / s) + C8_OFF, s = max|f| / 63, so q - C8_OFF is in
 * [-63, 63] (the assignment kernel's vpmaddubsw then cannot saturate). */
static void c8_quantise(const float *f, int n, int dim, size_t row, uint8_t *q, float *s)
{
    for (int j = 0; j < n; j++) {
        const float *v = f + (size_t)j * dim;
        uint8_t *o = q + (size_t)j * 2 * row;
        float m = 0;
        for (int d = 0; d < dim; d++)
            m = fabsf(v[d]) > m ? fabsf(v[d]) : m;
        memset(o, C8_OFF, 2 * row);
        s[j] = m / 63;
        if (m == 0)
            continue;
        float inv = 63 / m;
        for (int d = 0; d < dim; d++) {
            float r = v[d] * inv;
            int c = (int)(r + copysignf(0.5f, r));
            c = c > 63 ? 63 : c < -63 ? -63 : c;
            o[d] = (uint8_t)(c + C8_OFF);
        }
    }
}

/* gd[g][j] = cen[g] . f[j] for one generation. */
static void cset_gd(const idx *x, cset *c, int g)
{
    for (int j = 0; j < c->n; j++)
        c->gd[(size_t)g * c->n + j] =
            x->cen[g] ? dotf(x->cen[g], c->f + (size_t)j * x->dim, x->dim) : 0;
}

/* Everything derived from the float centroids. */
static void cset_derive(const idx *x, cset *c)
{
    c8_quantise(c->f, c->n, x->dim, x->row, c->q, c->s);
    for (int g = 0; g < x->ngen; g++)
        cset_gd(x, c, g);
}

static void lists_free(ilist *l, int n)
{
    if (!l)
        return;
    for (int i = 0; i < n; i++)
        free(l[i].ch);
    free(l);
}

int idx_new(int dim, idx **out, jm_err *err)
{
    *out = NULL;
    if (dim < 1 || dim > IDX_MAX_DIM)
        return jm_fail(err, JM_EINVAL, "idx: dimension %d out of range", dim);
    idx *x = calloc(1, sizeof *x);
    if (!x || !(x->lists = calloc(1, sizeof(ilist)))) {
        free(x);
        return jm_fail(err, JM_ENOMEM, "idx: out of memory");
    }
    x->dim = dim;
    x->row = (size_t)(dim + 63) / 64 * 32;
    x->ngen = 1;
    x->ivf_min = IDX_IVF_MIN;
    x->nprobe = IDX_NPROBE;
    x->filter_exp = IDX_FILTER_EXP;
    x->spread = 0;
    *out = x;
    return JM_OK;
}

void idx_free(idx *x)
{
    if (!x)
        return;
    slab_release(&x->live_s);
    slab_release(&x->pos_s);
    slab_release(&x->codes_s);
    slab_release(&x->scale_s);
    slab_release(&x->gen_s);
    slab_release(&x->sof_s);
    slab_release(&x->own_s);
    slab_release(&x->free_s);
    for (int g = 0; g < x->ngen; g++)
        free(x->cen[g]);
    lists_free(x->lists, x->nlist + 1);
    cset_free(&x->c1);
    cset_free(&x->cl);
    free(x->cell);
    free(x->atmp);
    free(x);
}

static void refresh(idx *x)
{
    x->live = x->live_s.p;
    x->pos = x->pos_s.p;
    x->codes = x->codes_s.p;
    x->scale = x->scale_s.p;
    x->gen = x->gen_s.p;
    x->slot_of = x->sof_s.p;
    x->owner = x->own_s.p;
    x->freech = x->free_s.p;
}

/* Per-slot arrays for `cap` slots (a multiple of 64). */
static int grow_slots(idx *x, size_t cap)
{
    if (cap <= x->scap)
        return 0;
    int fail = slab_grow(&x->live_s, cap / 8) || slab_grow(&x->pos_s, cap * sizeof(uint32_t));
    refresh(x);
    if (fail)
        return -1;
    x->scap = (uint32_t)(cap > UINT32_MAX ? UINT32_MAX & ~63u : cap);
    return 0;
}

/* Row arrays for at least `need` chunks (capacity doubles). */
static int grow_chunks(idx *x, size_t need)
{
    if (need <= x->chcap)
        return 0;
    if (need > MAX_CHUNKS)
        return -1;
    size_t cap = x->chcap ? x->chcap : 16;
    while (cap < need)
        cap *= 2;
    if (cap > MAX_CHUNKS)
        cap = MAX_CHUNKS;
    size_t rows = cap << CH_SHIFT;
    int fail = slab_grow(&x->codes_s, rows * x->row) ||
               slab_grow(&x->scale_s, rows * sizeof(float)) || slab_grow(&x->gen_s, rows) ||
               slab_grow(&x->sof_s, rows * sizeof(uint32_t)) ||
               slab_grow(&x->own_s, cap * sizeof(uint32_t)) ||
               slab_grow(&x->free_s, cap * sizeof(uint32_t));
    refresh(x);
    if (fail)
        return -1;
    x->chcap = (uint32_t)cap;
    return 0;
}

/* A chunk for list li, its positions marked empty (slot NO_POS). */
static uint32_t alloc_chunk(idx *x, uint32_t li)
{
    uint32_t c;
    if (x->nfree)
        c = x->freech[--x->nfree];
    else if (x->nchunk < x->chcap || !grow_chunks(x, (size_t)x->nchunk + 1))
        c = x->nchunk++;
    else
        return NO_POS;
    x->owner[c] = li;
    for (uint32_t i = 0; i < CH; i++)
        x->slot_of[c << CH_SHIFT | i] = NO_POS;
    return c;
}

static void free_chunk(idx *x, uint32_t c)
{
    x->owner[c] = NO_POS;
    x->freech[x->nfree++] = c;
}

/* A new last entry of list li: its position, or NO_POS when out of memory
 * (nothing changed then). May move the row arrays. */
static uint32_t list_push(idx *x, uint32_t li)
{
    ilist *L = &x->lists[li];
    if ((L->n & (CH - 1)) == 0) { /* every chunk full, or none */
        if (L->nch == L->cap) {
            uint32_t nc = L->cap ? 2 * L->cap : 4;
            uint32_t *p = realloc(L->ch, sizeof(uint32_t) * nc);
            if (!p)
                return NO_POS;
            L->ch = p;
            L->cap = nc;
        }
        uint32_t c = alloc_chunk(x, li);
        if (c == NO_POS)
            return NO_POS;
        L->ch[L->nch++] = c;
    }
    return lpos(L, L->n++);
}

static void copy_row(idx *x, uint32_t from, uint32_t to)
{
    memcpy(x->codes + (size_t)to * x->row, x->codes + (size_t)from * x->row, x->row);
    x->scale[to] = x->scale[from];
    x->gen[to] = x->gen[from];
    x->slot_of[to] = x->slot_of[from];
    x->pos[x->slot_of[to]] = to;
}

/* Takes the row at p out of its list: the list's last row moves into the
 * hole; a chunk left empty is freed. */
static void list_drop(idx *x, uint32_t p)
{
    uint32_t li = x->owner[p >> CH_SHIFT];
    ilist *L = &x->lists[li];
    if (li < (uint32_t)x->nlist)
        L->csum -= row_cos(x, kernels(), p, li);
    uint32_t last = lpos(L, L->n - 1);
    if (last != p)
        copy_row(x, last, p);
    x->slot_of[last] = NO_POS;
    L->n--;
    if ((L->n & (CH - 1)) == 0)
        free_chunk(x, L->ch[--L->nch]);
}

int idx_reserve(idx *x, uint32_t nslots, jm_err *err)
{
    if (nslots > IDX_MAX_SLOT + 1u)
        return jm_fail(err, JM_EINVAL, "idx: cannot reserve %u slots (max %u)", nslots,
                       IDX_MAX_SLOT + 1u);
    size_t cap = ((size_t)nslots + 63) & ~(size_t)63;
    size_t chunks = ((size_t)nslots >> CH_SHIFT) + (size_t)x->nlist + 2;
    if (grow_slots(x, cap) || grow_chunks(x, chunks))
        return jm_fail(err, JM_ENOMEM, "idx: out of memory reserving %u slots", nslots);
    return JM_OK;
}

/* ---- Centres ---- */

/* A new centre, the mean of the live unit vectors (as stored), for the codes
 * written from now on. The codes already stored keep theirs (their
 * generation). Above CENTRE_SAMPLE live vectors the mean is that of every
 * k-th live slot, at most CENTRE_SAMPLE of them (its error, ~0.045 /
 * sqrt(CENTRE_SAMPLE) per component, is far below what matters). Failure to
 * allocate changes nothing. */
static void new_centre(idx *x)
{
    if (x->ngen >= MAXGEN || x->count == 0)
        return;
    float *c = malloc(sizeof(float) * x->dim), *tmp = malloc(sizeof(float) * x->dim);
    double *sum = calloc(x->dim, sizeof(double));
    if (!c || !tmp || !sum) {
        free(c);
        free(tmp);
        free(sum);
        return;
    }
    size_t step = (x->count + CENTRE_SAMPLE - 1) / CENTRE_SAMPLE, seen = 0, used = 0;
    for (uint32_t s = 0; s < x->nslots; s++) {
        if (!is_live(x, s) || seen++ % step)
            continue;
        used++;
        uint32_t p = x->pos[s];
        decode(rowp(x, p), x->scale[p], x->cen[x->gen[p]], x->dim, tmp);
        double n2 = norm2(tmp, x->dim);
        double inv = n2 > 0 ? 1 / sqrt(n2) : 0;
        for (int d = 0; d < x->dim; d++)
            sum[d] += tmp[d] * inv;
    }
    for (int d = 0; d < x->dim; d++)
        c[d] = (float)(sum[d] / (double)used);
    int g = x->ngen++;
    x->cen[g] = c;
    x->centre_at = x->count;
    if (x->nlist) {
        cset_gd(x, &x->c1, g);
        cset_gd(x, &x->cl, g);
    }
    free(tmp);
    free(sum);
}

/* ---- The coarse quantiser ---- */

/* Best of m centroids first.. of c for a row of generation g: the largest
 * cen[g] . c + scale2 * s * dots (ties: the first); scale2 is twice the
 * row's scale, dots the LUT2 products. */
static int best_of(const cset *c, int first, int m, int g, float scale2, const int32_t *dots)
{
    const float *gd = c->gd + (size_t)g * c->n + first, *s = c->s + first;
    int b = 0;
    float bs = -INFINITY;
    for (int j = 0; j < m; j++) {
        float v = gd[j] + scale2 * s[j] * (float)dots[j];
        if (v > bs) {
            bs = v;
            b = j;
        }
    }
    return b;
}

/* The leaf list of a code row: the best leaf of its best two coarse cells
 * (a vector near the border of its cell often has its nearest leaf in the
 * next one). tmp: room for max(c1.n, leaves of a cell) ints. */
static uint32_t assign_row(const idx *x, const idx_kernel *kn, const uint8_t *code, float scale,
                           int g, int32_t *tmp)
{
    float scale2 = 2 * scale;
    const float *gd = x->c1.gd + (size_t)g * x->c1.n;
    int c0 = -1, c1 = -1;
    float v0 = -INFINITY, v1 = -INFINITY;
    kn->dot_c8(LUT2, code, x->row, x->c1.q, x->c1.n, tmp);
    for (int i = 0; i < x->c1.n; i++) {
        float v = gd[i] + scale2 * x->c1.s[i] * (float)tmp[i];
        if (v > v0) {
            v1 = v0;
            c1 = c0;
            v0 = v;
            c0 = i;
        } else if (v > v1) {
            v1 = v;
            c1 = i;
        }
    }
    uint32_t best = 0;
    float bv = -INFINITY;
    for (int k = 0; k < ASSIGN_CELLS; k++) {
        int i = k ? c1 : c0;
        if (i < 0)
            break;
        int f = (int)x->cell[i], m = (int)x->cell[i + 1] - f;
        kn->dot_c8(LUT2, code, x->row, x->cl.q + (size_t)f * 2 * x->row, m, tmp);
        int b = best_of(&x->cl, f, m, g, scale2, tmp);
        float v = x->cl.gd[(size_t)g * x->cl.n + f + b] + scale2 * x->cl.s[f + b] * (float)tmp[b];
        if (v > bv) {
            bv = v;
            best = (uint32_t)(f + b);
        }
    }
    return best;
}

/* The training sample: copies of the rows of every step-th live slot. */
typedef struct sample {
    int n;
    uint8_t *codes; /* [n][row] */
    float *scale;
    uint8_t *gen;
} sample;

/* Unit vector of sample row r into out[dim]; 0 if it is zero. */
static int sample_unit(const idx *x, const sample *sm, uint32_t r, float *out)
{
    decode(sm->codes + (size_t)r * x->row, sm->scale[r], x->cen[sm->gen[r]], x->dim, out);
    double n2 = norm2(out, x->dim);
    if (!(n2 > 0))
        return 0;
    float inv = (float)(1 / sqrt(n2));
    for (int d = 0; d < x->dim; d++)
        out[d] *= inv;
    return 1;
}

/* Spherical k-means of the sample rows mem[0..n) into k unit centroids
 * cf[k][dim] (k <= n), scored as the assignment scores them (the int8
 * centroids against the 4-bit codes); asg[t] gets the centroid of mem[t]
 * under the final centroids. Deterministic for a given rng state. */
static int kmeans(const idx *x, const idx_kernel *kn, const sample *sm, const uint32_t *mem, int n,
                  int k, float *cf, uint32_t *asg, uint64_t *rng)
{
    int dim = x->dim, ng = x->ngen;
    size_t row = x->row, crow = 2 * row;
    cset c = {k, cf, malloc((size_t)k * crow), malloc(sizeof(float) * k),
              malloc(sizeof(float) * (size_t)ng * k)};
    float *sum = malloc(sizeof(float) * (size_t)k * crow);
    uint32_t *cnt = malloc(sizeof(uint32_t) * k), *gcnt = malloc(sizeof(uint32_t) * (size_t)k * ng);
    uint32_t *perm = malloc(sizeof(uint32_t) * n);
    int32_t *dots = malloc(sizeof(int32_t) * k);
    int rc = -1;
    if (!c.q || !c.s || !c.gd || !sum || !cnt || !gcnt || !perm || !dots)
        goto done;
    /* Start from k distinct rows (a partial Fisher-Yates shuffle); a zero
     * row gives a zero centroid, which the first update re-seeds. */
    for (int t = 0; t < n; t++)
        perm[t] = (uint32_t)t;
    for (int j = 0; j < k; j++) {
        int t = j + (int)(jm_rng_next(rng) % (uint64_t)(n - j));
        uint32_t v = perm[t];
        perm[t] = perm[j];
        perm[j] = v;
        if (!sample_unit(x, sm, mem[v], cf + (size_t)j * dim))
            memset(cf + (size_t)j * dim, 0, sizeof(float) * dim);
    }
    for (int it = 0;; it++) {
        c8_quantise(cf, k, dim, row, c.q, c.s);
        for (int g = 0; g < ng; g++)
            for (int j = 0; j < k; j++)
                c.gd[(size_t)g * k + j] =
                    x->cen[g] ? dotf(x->cen[g], cf + (size_t)j * dim, dim) : 0;
        int changed = 0;
        for (int t = 0; t < n; t++) {
            uint32_t r = mem[t];
            kn->dot_c8(LUT2, sm->codes + (size_t)r * row, row, c.q, k, dots);
            uint32_t b = (uint32_t)best_of(&c, 0, k, sm->gen[r], 2 * sm->scale[r], dots);
            changed += it == 0 || asg[t] != b;
            asg[t] = b;
        }
        /* stop when (almost) nothing moves: the last assignment is the
         * one of the final centroids */
        if (it + 1 >= KM_ITERS || changed <= n / 1000)
            break;
        memset(sum, 0, sizeof(float) * (size_t)k * crow);
        memset(cnt, 0, sizeof(uint32_t) * k);
        memset(gcnt, 0, sizeof(uint32_t) * (size_t)k * ng);
        for (int t = 0; t < n; t++) {
            uint32_t r = mem[t], j = asg[t];
            kn->acc_u4(LUT, sm->codes + (size_t)r * row, row, sm->scale[r], sum + (size_t)j * crow);
            cnt[j]++;
            gcnt[(size_t)j * ng + sm->gen[r]]++;
        }
        for (int j = 0; j < k; j++) {
            float *o = sum + (size_t)j * crow, *f = cf + (size_t)j * dim;
            for (int g = 1; g < ng; g++)
                if (gcnt[(size_t)j * ng + g])
                    for (int d = 0; d < dim; d++)
                        o[d] += (float)gcnt[(size_t)j * ng + g] * x->cen[g][d];
            double n2 = cnt[j] ? norm2(o, dim) : 0;
            if (n2 > 0) {
                float inv = (float)(1 / sqrt(n2));
                for (int d = 0; d < dim; d++)
                    f[d] = o[d] * inv;
            } else if (!sample_unit(x, sm, mem[jm_rng_next(rng) % (uint64_t)n], f)) {
                memset(f, 0, sizeof(float) * dim); /* empty: a random row */
            }
        }
    }
    rc = 0;
done:
    free(c.q);
    free(c.s);
    free(c.gd);
    free(sum);
    free(cnt);
    free(gcnt);
    free(perm);
    free(dots);
    return rc;
}

/* Renumbers the chunks so that each list's chunks are consecutive, the
 * lists in order, the free chunks last (lowest first on the stack): a
 * probe then reads each list as one run. Each chunk moves once, along the
 * cycles of the permutation, through two chunk-sized buffers: no second
 * copy of the rows. Out of memory: nothing changes (it is only faster). */
static void defrag(idx *x)
{
    uint32_t nc = x->nchunk;
    size_t row = x->row, cb = (size_t)CH * row,
           mb = (size_t)CH * (sizeof(float) + 1 + sizeof(uint32_t));
    uint32_t *dest = malloc(sizeof(uint32_t) * (nc ? nc : 1));
    uint64_t *done = calloc((size_t)nc / 64 + 1, sizeof(uint64_t));
    uint8_t *hold = malloc(2 * (cb + mb)), *t2 = hold ? hold + cb + mb : NULL;
    if (!dest || !done || !hold) {
        free(dest);
        free(done);
        free(hold);
        return;
    }
    uint32_t next = 0;
    for (int li = 0; li <= x->nlist; li++)
        for (uint32_t c = 0; c < x->lists[li].nch; c++)
            dest[x->lists[li].ch[c]] = next++;
    uint32_t nused = next;
    for (uint32_t f = x->nfree; f-- > 0;)
        dest[x->freech[f]] = next++; /* the top of the stack first */
    /* a chunk's rows to / from a buffer */
#define CHUNK_OUT(c, b)                                                                    \
    do {                                                                                   \
        size_t p0_ = (size_t)(c) << CH_SHIFT;                                              \
        memcpy((b), x->codes + p0_ * row, cb);                                             \
        memcpy((b) + cb, x->scale + p0_, sizeof(float) * CH);                              \
        memcpy((b) + cb + sizeof(float) * CH, x->gen + p0_, CH);                           \
        memcpy((b) + cb + (sizeof(float) + 1) * CH, x->slot_of + p0_, sizeof(uint32_t) * CH); \
    } while (0)
#define CHUNK_IN(c, b)                                                                     \
    do {                                                                                   \
        size_t p0_ = (size_t)(c) << CH_SHIFT;                                              \
        memcpy(x->codes + p0_ * row, (b), cb);                                             \
        memcpy(x->scale + p0_, (b) + cb, sizeof(float) * CH);                              \
        memcpy(x->gen + p0_, (b) + cb + sizeof(float) * CH, CH);                           \
        memcpy(x->slot_of + p0_, (b) + cb + (sizeof(float) + 1) * CH, sizeof(uint32_t) * CH); \
    } while (0)
    for (uint32_t c = 0; c < nc; c++) {
        if (done[c >> 6] >> (c & 63) & 1)
            continue;
        done[c >> 6] |= 1ULL << (c & 63);
        if (dest[c] == c)
            continue;
        /* new[dest[c]] = old[c], around the cycle through c */
        CHUNK_OUT(c, hold);
        for (uint32_t j = dest[c]; j != c; j = dest[j]) {
            CHUNK_OUT(j, t2);
            CHUNK_IN(j, hold);
            uint8_t *t = hold;
            hold = t2;
            t2 = t;
            done[j >> 6] |= 1ULL << (j & 63);
        }
        CHUNK_IN(c, hold);
    }
#undef CHUNK_OUT
#undef CHUNK_IN
    for (int li = 0; li <= x->nlist; li++) {
        ilist *L = &x->lists[li];
        for (uint32_t c = 0; c < L->nch; c++) {
            L->ch[c] = dest[L->ch[c]];
            x->owner[L->ch[c]] = (uint32_t)li;
        }
    }
    for (uint32_t f = 0; f < x->nfree; f++) {
        x->freech[f] = nc - 1 - f;
        x->owner[nc - 1 - f] = NO_POS;
    }
    for (uint32_t p = 0; p < nused << CH_SHIFT; p++)
        if (x->slot_of[p] != NO_POS)
            x->pos[x->slot_of[p]] = p;
#ifndef SLAB_MALLOC
    /* The free chunks' rows (touched before) go back to the system; they
     * read as zeros when used again. */
    size_t a = (((size_t)nused << CH_SHIFT) * row + 4095) & ~(size_t)4095,
           z = ((size_t)nc << CH_SHIFT) * row;
    if (z > a)
        madvise(x->codes + a, (z - a) & ~(size_t)4095, MADV_DONTNEED);
#endif
    free(dest);
    free(done);
    free(hold < t2 ? hold : t2);
}

/* Every leaf's csum from its rows (after a training or a load). */
static void leaf_sums(idx *x)
{
    const idx_kernel *kn = kernels();
    for (int j = 0; j < x->nlist; j++) {
        ilist *L = &x->lists[j];
        L->csum = 0;
        for (uint32_t k = 0; k < L->n; k++)
            L->csum += row_cos(x, kn, lpos(L, k), (uint32_t)j);
    }
}

/* Trains the coarse quantiser and moves every row into the list of its new
 * leaf: L = sqrt(N) lists; a sample of KM_SAMPLE * L rows (every k-th live
 * slot, so the result does not depend on where rows sit); n1 = sqrt(L)
 * coarse cells by k-means on 4 * KM_SAMPLE rows a cell, every sample row
 * to its nearest cell, each cell's rows split into leaves in proportion to
 * their number; then every row to its leaf (assign_row) and the chunks
 * renumbered (defrag). All allocation happens before the first row moves:
 * on failure (-1) nothing changed. */
static int train(idx *x)
{
    const idx_kernel *kn = kernels();
    size_t N = x->count;
    if (N == 0)
        return -1;
    int dim = x->dim;
    size_t row = x->row;
    double want = sqrt((double)N);
    /* at most half IDX_MAX_LISTS, so that the leaves (up to L + n1) fit it */
    int L = want > IDX_MAX_LISTS / 2 ? IDX_MAX_LISTS / 2 : want < 1 ? 1 : (int)(want + 0.5);
    int n1 = (int)(sqrt((double)L) + 0.5);
    size_t S = (size_t)KM_SAMPLE * L < N ? (size_t)KM_SAMPLE * L : N;
    size_t step = (N + S - 1) / S;
    S = (N + step - 1) / step;
    sample sm = {(int)S, malloc(S * row), malloc(sizeof(float) * S), malloc(S)};
    uint32_t *a1 = malloc(sizeof(uint32_t) * S), *mem = calloc(S, sizeof(uint32_t));
    uint32_t *ccount = calloc((size_t)n1 + 1, sizeof(uint32_t)),
             *cell = calloc((size_t)n1 + 1, sizeof(uint32_t));
    float *f1 = malloc(sizeof(float) * (size_t)n1 * dim),
          *fl = malloc(sizeof(float) * (size_t)(L + n1) * dim);
    uint32_t *a2 = malloc(sizeof(uint32_t) * S), *asg = NULL, *lcount = NULL;
    cset c1 = {0}, cl = {0};
    ilist *nl = NULL;
    int32_t *atmp = NULL;
    int rc = -1, nleaf = 0;
    uint64_t rng = 0x243F6A8885A308D3ULL ^ (uint64_t)N;
    if (!sm.codes || !sm.scale || !sm.gen || !a1 || !mem || !ccount || !cell || !f1 || !fl || !a2)
        goto done;
    size_t t = 0, seen = 0;
    for (uint32_t s = 0; s < x->nslots && t < S; s++) {
        if (!is_live(x, s) || seen++ % step)
            continue;
        uint32_t p = x->pos[s];
        memcpy(sm.codes + t * row, rowp(x, p), row);
        sm.scale[t] = x->scale[p];
        sm.gen[t] = x->gen[p];
        t++;
    }
    S = t;
    sm.n = (int)S;
    if (n1 > (int)S)
        n1 = (int)S;
    /* The coarse level from a sub-sample (KM_SAMPLE per cell is plenty for
     * n1 centroids), then every sample row to its nearest cell. */
    size_t S1 = (size_t)KM_SAMPLE * 4 * n1 < S ? (size_t)KM_SAMPLE * 4 * n1 : S;
    for (size_t i = 0; i < S1; i++)
        mem[i] = (uint32_t)(i * S / S1);
    if (kmeans(x, kn, &sm, mem, (int)S1, n1, f1, a1, &rng) || cset_alloc(&c1, n1, dim, row))
        goto done;
    memcpy(c1.f, f1, sizeof(float) * (size_t)n1 * dim);
    cset_derive(x, &c1);
    {
        int32_t *d1 = malloc(sizeof(int32_t) * n1);
        if (!d1)
            goto done;
        for (size_t i = 0; i < S; i++) {
            kn->dot_c8(LUT2, sm.codes + i * row, row, c1.q, n1, d1);
            a1[i] = (uint32_t)best_of(&c1, 0, n1, sm.gen[i], 2 * sm.scale[i], d1);
        }
        free(d1);
    }
    /* Leaves per cell in proportion to its share of the sample (at least
     * one; a cell nobody chose keeps its own centroid as its one leaf). */
    for (size_t i = 0; i < S; i++)
        ccount[a1[i]]++;
    uint32_t *start = cell; /* reused below as the cell -> first leaf table */
    size_t off = 0;
    uint32_t *moff = calloc((size_t)n1 + 1, sizeof(uint32_t));
    if (!moff)
        goto done;
    for (int i = 0; i < n1; i++) {
        moff[i] = (uint32_t)off;
        off += ccount[i];
    }
    for (size_t i = 0; i < S; i++)
        mem[moff[a1[i]]++] = (uint32_t)i;
    off = 0;
    for (int i = 0; i < n1; i++) {
        int cnt = (int)ccount[i];
        int m = (int)((double)L * cnt / (double)S + 0.5);
        m = m < 1 ? 1 : m > cnt ? (cnt ? cnt : 1) : m;
        start[i] = (uint32_t)nleaf;
        if (cnt == 0) {
            memcpy(fl + (size_t)nleaf * dim, f1 + (size_t)i * dim, sizeof(float) * dim);
        } else if (kmeans(x, kn, &sm, mem + off, cnt, m, fl + (size_t)nleaf * dim, a2, &rng)) {
            free(moff);
            goto done;
        }
        nleaf += m;
        off += (size_t)cnt;
    }
    start[n1] = (uint32_t)nleaf;
    free(moff);
    if (cset_alloc(&cl, nleaf, dim, row))
        goto done;
    memcpy(cl.f, fl, sizeof(float) * (size_t)nleaf * dim);
    cset_derive(x, &cl);

    /* The new list of every row, in the order the move below visits them. */
    int onl = x->nlist + 1;
    asg = malloc(sizeof(uint32_t) * (N ? N : 1));
    lcount = calloc((size_t)nleaf + 1, sizeof(uint32_t));
    atmp = malloc(sizeof(int32_t) * (size_t)(nleaf > n1 ? nleaf : n1));
    nl = calloc((size_t)nleaf + 1, sizeof(ilist));
    if (!asg || !lcount || !atmp || !nl)
        goto done;
    idx tx = *x; /* the current index with the new quantiser, for assign_row */
    tx.c1 = c1;
    tx.cl = cl;
    tx.cell = cell;
    size_t k = 0;
    for (int li = 0; li < onl; li++) {
        const ilist *O = &x->lists[li];
        for (uint32_t e = 0; e < O->n; e++) {
            uint32_t p = lpos(O, e);
            uint32_t a = assign_row(&tx, kn, rowp(x, p), x->scale[p], x->gen[p], atmp);
            asg[k++] = a;
            lcount[a]++;
        }
    }
    for (int j = 0; j <= nleaf; j++) {
        uint32_t need = (lcount[j] + CH - 1) >> CH_SHIFT;
        nl[j].cap = need < 4 ? 4 : need;
        if (!(nl[j].ch = malloc(sizeof(uint32_t) * nl[j].cap)))
            goto done;
    }
    /* Chunks: the move frees each old chunk once emptied, and at any time
     * holds at most one partly filled chunk per old and per new list more
     * than the rows need. */
    size_t avail = (size_t)x->nfree + (x->chcap - x->nchunk), need = (size_t)onl + nleaf + 4;
    if (avail < need && grow_chunks(x, (size_t)x->chcap + (need - avail)))
        goto done;

    /* No failure past this point. */
    ilist *ol = x->lists;
    x->lists = nl;
    k = 0;
    for (int li = 0; li < onl; li++) {
        ilist *O = &ol[li];
        for (uint32_t c = 0; c < O->nch; c++) {
            uint32_t ch = O->ch[c], m = O->n - (c << CH_SHIFT) < CH ? O->n - (c << CH_SHIFT) : CH;
            for (uint32_t i = 0; i < m; i++) {
                uint32_t to = list_push(x, asg[k++]);
                copy_row(x, ch << CH_SHIFT | i, to);
            }
            free_chunk(x, ch);
        }
    }
    lists_free(ol, onl);
    nl = NULL;
    cset_free(&x->c1);
    cset_free(&x->cl);
    free(x->cell);
    free(x->atmp);
    x->c1 = c1;
    x->cl = cl;
    x->cell = cell;
    x->atmp = atmp;
    x->nlist = nleaf;
    c1 = cl = (cset){0};
    cell = NULL;
    atmp = NULL;
    x->trained_at = N;
    x->train_at = 2 * N;
    defrag(x);
    leaf_sums(x);
    rc = 0;
done:
    if (nl)
        lists_free(nl, nleaf + 1);
    cset_free(&c1);
    cset_free(&cl);
    free(sm.codes);
    free(sm.scale);
    free(sm.gen);
    free(a1);
    free(a2);
    free(mem);
    free(ccount);
    free(cell);
    free(f1);
    free(fl);
    free(asg);
    free(lcount);
    free(atmp);
    return rc;
}

/* The centre is computed when the live count reaches CENTRE_MIN and again
 * each time it has doubled; the lists are trained when it reaches ivf_min
 * and again each time it has doubled since. */
static int maintain(idx *x)
{
    if (x->count >= CENTRE_MIN && x->count >= 2 * x->centre_at)
        new_centre(x);
    if (x->ivf_min != SIZE_MAX && x->count >= x->ivf_min && x->count >= x->train_at) {
        if (train(x)) {
            x->train_at = x->count + x->count / 8 + 1; /* out of memory: try again later */
            return -1;
        }
    }
    return 0;
}

int idx_set(idx *x, uint32_t slot, const float *vec, jm_err *err)
{
    if (slot > IDX_MAX_SLOT)
        return jm_fail(err, JM_EINVAL, "idx: slot %u out of range (max %u)", slot, IDX_MAX_SLOT);
    if (!all_finite(vec, (size_t)x->dim))
        return jm_fail(err, JM_EINVAL, "idx: vector for slot %u has a non-finite component",
                       slot);
    if (slot >= x->scap) {
        size_t cap = x->scap ? x->scap : 64;
        while (cap <= slot)
            cap *= 2;
        if (cap > (size_t)IDX_MAX_SLOT + 64)
            cap = (size_t)IDX_MAX_SLOT + 64;
        if (grow_slots(x, cap))
            return jm_fail(err, JM_ENOMEM, "idx: out of memory growing to %zu slots", cap);
    }
    uint8_t code[IDX_MAX_DIM / 2];
    int g = x->ngen - 1;
    float scale = kernels()->encode(vec, x->cen[g], x->dim, x->row, code);
    uint32_t li = x->nlist ? assign_row(x, kernels(), code, scale, g, x->atmp) : 0;
    uint32_t p = NO_POS;
    int live = slot < x->nslots && is_live(x, slot);
    if (live && x->owner[x->pos[slot] >> CH_SHIFT] == li) {
        p = x->pos[slot]; /* same list: in place */
        if (li < (uint32_t)x->nlist)
            x->lists[li].csum -= row_cos(x, kernels(), p, li);
    } else {
        p = list_push(x, li);
        if (p == NO_POS)
            return jm_fail(err, JM_ENOMEM, "idx: out of memory adding slot %u", slot);
        if (live)
            list_drop(x, x->pos[slot]); /* p is in another list: unaffected */
    }
    memcpy(x->codes + (size_t)p * x->row, code, x->row);
    x->scale[p] = scale;
    x->gen[p] = (uint8_t)g;
    x->slot_of[p] = slot;
    x->pos[slot] = p;
    if (li < (uint32_t)x->nlist)
        x->lists[li].csum += row_cos(x, kernels(), p, li);
    if (!live) {
        x->live[slot >> 6] |= 1ULL << (slot & 63);
        x->count++;
    }
    /* Slots below this one never set stay dead (the live bitmap is zeroed
     * at growth); nothing reads their positions. */
    if (slot >= x->nslots)
        x->nslots = slot + 1;
    maintain(x);
    return JM_OK;
}

void idx_remove(idx *x, uint32_t slot)
{
    if (slot >= x->nslots || !is_live(x, slot))
        return;
    list_drop(x, x->pos[slot]);
    x->live[slot >> 6] &= ~(1ULL << (slot & 63));
    x->count--;
}

size_t idx_count(const idx *x) { return x->count; }
uint32_t idx_slots(const idx *x) { return x->nslots; }
int idx_dim(const idx *x) { return x->dim; }
int idx_probe(const idx *x) { return x->nprobe; }

int idx_nlist(const idx *x) { return x->nlist; }

int idx_is_live(const idx *x, uint32_t slot) { return slot < x->nslots && is_live(x, slot); }

size_t idx_bytes(const idx *x)
{
    /* the arrays up to the last slot and chunk in use (capacity beyond is
     * address space only) */
    size_t rows = (size_t)x->nchunk << CH_SHIFT, slots = ((size_t)x->nslots + 63) & ~(size_t)63;
    size_t b = sizeof *x + slots / 8 + slots * sizeof(uint32_t) +
               rows * (x->row + sizeof(float) + 1 + sizeof(uint32_t)) +
               (size_t)x->nchunk * 2 * sizeof(uint32_t);
    b += sizeof(float) * x->dim * (x->ngen - 1);
    for (int i = 0; i <= x->nlist; i++)
        b += sizeof(ilist) + sizeof(uint32_t) * x->lists[i].cap;
    size_t nc = (size_t)x->c1.n + x->cl.n;
    b += nc * (sizeof(float) * (x->dim + 1 + MAXGEN) + 2 * x->row + 2 * sizeof(int32_t));
    return b;
}

void idx_bulk_begin(idx *x, size_t n)
{
    if (x->nlist || x->ivf_min == SIZE_MAX || n < x->ivf_min)
        return;
    size_t p = x->ivf_min;
    while (p <= n / 2)
        p *= 2;
    if (p > x->train_at)
        x->train_at = p;
}

int idx_bulk_end(idx *x, jm_err *err)
{
    if (x->nlist || x->ivf_min == SIZE_MAX)
        return JM_OK;
    if (x->count < x->ivf_min) {
        x->train_at = 0; /* the schedule as without idx_bulk_begin */
        return JM_OK;
    }
    x->train_at = x->count;
    if (maintain(x))
        return jm_fail(err, JM_ENOMEM, "idx: out of memory training the lists");
    return JM_OK;
}

int idx_set_ivf(idx *x, size_t min_n, jm_err *err)
{
    if (min_n < 1)
        return jm_fail(err, JM_EINVAL, "idx: the lists need at least one vector");
    x->ivf_min = min_n;
    if (min_n != SIZE_MAX && x->count >= min_n && x->count >= x->train_at && train(x))
        return jm_fail(err, JM_ENOMEM, "idx: out of memory training the lists");
    return JM_OK;
}

int idx_set_probe(idx *x, int nprobe, float filter_exp, jm_err *err)
{
    if (nprobe < 1 || !(filter_exp >= 0 && filter_exp <= 1))
        return jm_fail(err, JM_EINVAL, "idx: nprobe %d must be positive, filter_exp %g in [0, 1]",
                       nprobe, (double)filter_exp);
    x->nprobe = nprobe;
    x->filter_exp = filter_exp;
    return JM_OK;
}

int idx_set_spread(idx *x, float spread, jm_err *err)
{
    if (!(spread >= 0 && spread <= IDX_MAX_SPREAD))
        return jm_fail(err, JM_EINVAL, "idx: spread %g must be in [0, %g]", (double)spread,
                       (double)IDX_MAX_SPREAD);
    x->spread = spread;
    return JM_OK;
}

float idx_spread(const idx *x) { return x->spread; }

/* query . (scale * LUT[code]) of one row in float32, in eight partial sums
 * (the same order for idx_score and idx_score_many). */
static float score_codes(const idx *x, const idx_kernel *kn, const float *q, uint32_t p)
{
    return kn->score_u4(q, LUTF, rowp(x, p), x->dim) * x->scale[p];
}

static float dot_centre(const idx *x, const float *q, int g)
{
    return x->cen[g] ? dotf(q, x->cen[g], x->dim) : 0;
}

float idx_score(const idx *x, const float *query, uint32_t slot)
{
    if (!idx_is_live(x, slot))
        return NAN;
    uint32_t p = x->pos[slot];
    return score_codes(x, kernels(), query, p) + dot_centre(x, query, x->gen[p]);
}

void idx_score_many(const idx *x, const float *query, const uint32_t *slots, int n, float *out)
{
    enum { AHEAD = 4 };
    const idx_kernel *kn = kernels();
    float qc[MAXGEN];
    uint32_t have = 0; /* bit g: qc[g] computed */
    for (int i = 0; i < n; i++) {
        /* the rows are scattered: ask for the next ones early */
        if (i + AHEAD < n && idx_is_live(x, slots[i + AHEAD])) {
            const char *p = (const char *)rowp(x, x->pos[slots[i + AHEAD]]);
            for (size_t o = 0; o < x->row; o += 64)
                __builtin_prefetch(p + o);
            __builtin_prefetch(p + x->row - 1);
        }
        uint32_t sl = slots[i];
        if (!idx_is_live(x, sl)) {
            out[i] = NAN;
            continue;
        }
        uint32_t p = x->pos[sl];
        int g = x->gen[p];
        if (!(have >> g & 1)) {
            qc[g] = dot_centre(x, query, g);
            have |= 1u << g;
        }
        /* the same operations as idx_score: the same bits */
        out[i] = score_codes(x, kn, query, p) + qc[g];
    }
}

/* ---- Top-k heap ----
 * A min-heap of the k best hits seen, the worst at the root; "worse" is the
 * reverse of the output order (score descending, slot ascending). */

typedef struct heap {
    idx_hit *h;
    int n, cap;
} heap;

static inline int worse(idx_hit a, idx_hit b)
{
    return a.score < b.score || (a.score == b.score && a.slot > b.slot);
}

static void sift_down(idx_hit *h, int n, int i)
{
    idx_hit v = h[i];
    for (;;) {
        int c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && worse(h[c + 1], h[c]))
            c++;
        if (!worse(h[c], v))
            break;
        h[i] = h[c];
        i = c;
    }
    h[i] = v;
}

static inline void heap_push(heap *hp, uint32_t slot, float score)
{
    idx_hit v = {slot, score};
    if (hp->n < hp->cap) {
        int i = hp->n++;
        while (i > 0) {
            int p = (i - 1) / 2;
            if (!worse(v, hp->h[p]))
                break;
            hp->h[i] = hp->h[p];
            i = p;
        }
        hp->h[i] = v;
    } else if (hp->cap > 0 && worse(hp->h[0], v)) {
        hp->h[0] = v;
        sift_down(hp->h, hp->n, 0);
    }
}

/* Empties the heap into out[0..n) in output order (best first); returns n. */
static int heap_drain(heap *hp, idx_hit *out)
{
    int n = hp->n;
    while (hp->n > 0) {
        out[hp->n - 1] = hp->h[0];
        hp->h[0] = hp->h[--hp->n];
        sift_down(hp->h, hp->n, 0);
    }
    return n;
}

/* ---- Search ---- */

typedef struct scratch {
    int8_t *q;          /* [2 * row], zero past dim */
    float qc[MAXGEN];   /* query . centre of each generation */
    float qscale;
    uint32_t *buf;      /* [BLOCK] positions */
    int32_t *dots;      /* [BLOCK] */
    float *lsc;         /* [nlist] query . leaf */
    uint32_t *lh;       /* [nlist] the leaves, a max-heap by lsc */
    idx_hit *heap;      /* [nheap] */
    void *mem;
} scratch;

static int scratch_new(scratch *s, const idx *x, int nheap, int nlist)
{
    size_t qn = 2 * x->row;
    size_t off_buf = (qn + 63) & ~(size_t)63;
    size_t off_dots = off_buf + sizeof(uint32_t) * BLOCK;
    size_t off_lsc = off_dots + sizeof(int32_t) * BLOCK;
    size_t off_lh = off_lsc + sizeof(float) * nlist;
    size_t off_heap = (off_lh + sizeof(uint32_t) * nlist + 7) & ~(size_t)7;
    size_t total = off_heap + sizeof(idx_hit) * nheap;
    char *m = aligned_alloc(64, (total + 63) & ~(size_t)63);
    if (!m)
        return JM_ENOMEM;
    s->mem = m;
    s->q = (int8_t *)m;
    s->buf = (uint32_t *)(m + off_buf);
    s->dots = (int32_t *)(m + off_dots);
    s->lsc = (float *)(m + off_lsc);
    s->lh = (uint32_t *)(m + off_lh);
    s->heap = (idx_hit *)(m + off_heap);
    memset(s->q, 0, qn);
    return JM_OK;
}

static size_t count_allowed(const idx *x, const uint64_t *allow)
{
    if (!allow)
        return x->count;
    size_t n = 0, nw = ((size_t)x->nslots + 63) / 64;
    for (size_t w = 0; w < nw; w++)
        n += (size_t)__builtin_popcountll(x->live[w] & allow[w]);
    return n;
}

/* Scores the rows at positions ps[0..n) with the 4-bit kernel and offers
 * them to the heap. */
static void score_block(const idx *x, const idx_kernel *kn, const scratch *s, const uint32_t *ps,
                        int n, heap *hp)
{
    kn->dot_u4(s->q, LUT2, x->codes, x->row, ps, n, s->dots);
    for (int i = 0; i < n; i++) {
        uint32_t p = ps[i];
        float v = (float)s->dots[i] * (s->qscale * x->scale[p]) + s->qc[x->gen[p]];
        heap_push(hp, x->slot_of[p], v);
    }
}

/* Scores the (allowed) rows of one list; returns how many it scored. */
static size_t scan_list(const idx *x, const idx_kernel *kn, scratch *s, const uint64_t *allow,
                        const ilist *L, heap *hp)
{
    int nb = 0;
    size_t seen = 0;
    for (uint32_t c = 0; c < L->nch; c++) {
        uint32_t base = L->ch[c] << CH_SHIFT;
        uint32_t m = L->n - (c << CH_SHIFT) < CH ? L->n - (c << CH_SHIFT) : CH;
        if (!allow) {
            for (uint32_t i = 0; i < m; i++)
                s->buf[nb++] = base + i;
        } else {
            for (uint32_t i = 0; i < m; i++) {
                uint32_t sl = x->slot_of[base + i];
                s->buf[nb] = base + i;
                nb += (int)(allow[sl >> 6] >> (sl & 63) & 1);
            }
        }
        if (nb > BLOCK - CH) {
            score_block(x, kn, s, s->buf, nb, hp);
            seen += (size_t)nb;
            nb = 0;
        }
    }
    if (nb)
        score_block(x, kn, s, s->buf, nb, hp);
    return seen + (size_t)nb;
}

/* Scores every (allowed) row in position order: sequential reads. */
static void scan_all(const idx *x, const idx_kernel *kn, scratch *s, const uint64_t *allow,
                     heap *hp)
{
    int nb = 0;
    for (uint32_t c = 0; c < x->nchunk; c++) {
        if (x->owner[c] == NO_POS)
            continue;
        uint32_t base = c << CH_SHIFT;
        for (uint32_t i = 0; i < CH; i++) {
            uint32_t sl = x->slot_of[base + i];
            s->buf[nb] = base + i;
            nb += sl != NO_POS && (!allow || (allow[sl >> 6] >> (sl & 63) & 1));
        }
        if (nb > BLOCK - CH) {
            score_block(x, kn, s, s->buf, nb, hp);
            nb = 0;
        }
    }
    if (nb)
        score_block(x, kn, s, s->buf, nb, hp);
}

/* Scores every allowed live slot, found through the bitmaps. */
static void scan_direct(const idx *x, const idx_kernel *kn, scratch *s, const uint64_t *allow,
                        heap *hp)
{
    size_t nw = ((size_t)x->nslots + 63) / 64;
    int nb = 0;
    for (size_t w = 0; w < nw; w++) {
        uint64_t m = x->live[w] & allow[w];
        while (m) {
            s->buf[nb++] = x->pos[w * 64 + (size_t)__builtin_ctzll(m)];
            m &= m - 1;
        }
        if (nb > BLOCK - 64) {
            score_block(x, kn, s, s->buf, nb, hp);
            nb = 0;
        }
    }
    if (nb)
        score_block(x, kn, s, s->buf, nb, hp);
}

/* The leaves' scores, in the order a search probes them: query . centroid
 * divided by m^spread, m the mean cosine of the list's rows with its
 * centroid (floored at SPREAD_FLOOR). spread 0: the plain centroid order.
 * With spread > 0 a spread-out list, whose best rows lie further above its
 * centroid's score than a tight list's do, comes earlier. Which order needs
 * fewer rows read depends on the data, so the calibration measures it
 * (idx_probe_needs, idx_probe_rows). On the 1,000,000-job benchmark
 * store (jobs derived from O*NET), the calibration chose spread 0.5: 34
 * lists instead of 54 in the plain order, with the same exactness on 1,000
 * other queries (99.1%), and a query's index stage ~1.45 -> ~1.1 ms; at
 * 100,000 jobs spread 1, 78 lists instead of 117. On test_idx's synthetic
 * data the plain order needs fewer lists. */
#define SPREAD_FLOOR 0.1
static void spread_scores(const idx *x, float spread, float *lsc)
{
    if (spread == 0)
        return;
    for (int j = 0; j < x->nlist; j++) {
        const ilist *L = &x->lists[j];
        if (L->n) {
            double m = (double)L->csum / 65536.0 / L->n;
            m = m > SPREAD_FLOOR ? m : SPREAD_FLOOR;
            lsc[j] = (float)(lsc[j] / (spread == 1 ? m : pow(m, spread)));
        }
    }
}

static void leaf_scores(const idx *x, const idx_kernel *kn, const float *q, float spread, float *lsc)
{
    kn->dot_f32(q, x->cl.f, x->dim, x->nlist, lsc);
    spread_scores(x, spread, lsc);
}

/* The leaf heap: better = higher score, then lower number. */
static inline int lbetter(const float *sc, uint32_t a, uint32_t b)
{
    return sc[a] > sc[b] || (sc[a] == sc[b] && a < b);
}

static void lsift(const float *sc, uint32_t *h, int n, int i)
{
    uint32_t v = h[i];
    for (;;) {
        int c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && lbetter(sc, h[c + 1], h[c]))
            c++;
        if (!lbetter(sc, h[c], v))
            break;
        h[i] = h[c];
        i = c;
    }
    h[i] = v;
}

/* h[0..n) = the leaves 0..n-1 as a max-heap by sc: leaf_pop gives them in
 * probe order (probe, idx_probe_rows). */
static void leaf_heap(const float *sc, uint32_t *h, int n)
{
    for (int j = 0; j < n; j++)
        h[j] = (uint32_t)j;
    for (int j = n / 2 - 1; j >= 0; j--)
        lsift(sc, h, n, j);
}

static uint32_t leaf_pop(const float *sc, uint32_t *h, int *n)
{
    uint32_t j = h[0];
    h[0] = h[--*n];
    lsift(sc, h, *n, 0);
    return j;
}

/* Probes the leaves in order of query . centroid: at least nprobe of them,
 * and on until they held `target` allowed rows and as many as the heap
 * wants. */
static void probe(const idx *x, const idx_kernel *kn, scratch *s, const float *query,
                  const uint64_t *allow, size_t target, heap *hp)
{
    int nl = x->nlist;
    leaf_scores(x, kn, query, x->spread, s->lsc);
    leaf_heap(s->lsc, s->lh, nl);
    /* rows not yet assigned (none after a training) */
    size_t seen = scan_list(x, kn, s, allow, &x->lists[nl], hp);
    if (target < (size_t)hp->cap)
        target = (size_t)hp->cap; /* never fewer hits than wanted while more exist */
    int n = nl;
    for (int probed = 0; n > 0; probed++) {
        if (probed >= x->nprobe && seen >= target)
            break;
        uint32_t j = leaf_pop(s->lsc, s->lh, &n);
        seen += scan_list(x, kn, s, allow, &x->lists[j], hp);
    }
}

static int check_query(const idx *x, const float *query, jm_err *err)
{
    if (!all_finite(query, (size_t)x->dim))
        return jm_fail(err, JM_EINVAL, "idx: query has a non-finite component");
    return JM_OK;
}

/* Shared front half of both searches: validates, quantises the query and
 * fills hp with the approximate best min(nheap, allowed live slots). */
static int search_approx(const idx *x, const float *query, int nheap, const uint64_t *allow,
                         int every, scratch *s, heap *hp, jm_err *err)
{
    if (check_query(x, query, err))
        return JM_EINVAL;
    size_t nallow = count_allowed(x, allow);
    if (allow && nallow == x->count)
        allow = NULL; /* allows every live row: the unfiltered search, the one
                       * nprobe is calibrated for, without a bit test per row */
    if ((size_t)nheap > nallow)
        nheap = (int)nallow; /* also bounds the scratch for a huge k */
    int ivf = !every && x->nlist > 0 && x->ivf_min != SIZE_MAX && x->nprobe < x->nlist;
    if (scratch_new(s, x, nheap, x->nlist))
        return jm_fail(err, JM_ENOMEM, "idx: out of memory for search scratch");
    hp->h = s->heap;
    hp->n = 0;
    hp->cap = nheap;
    if (nheap == 0)
        return JM_OK;
    const idx_kernel *kn = kernels();
    s->qscale = 2 * quantise(query, x->dim, s->q); /* 2: LUT2 is LUT halved */
    for (int g = 0; g < x->ngen; g++)
        s->qc[g] = dot_centre(x, query, g);
    if (!ivf) {
        /* everything: the allowed rows through the bitmaps when few, else
         * every row in memory order, the filter applied */
        if (allow && nallow * GATHER_COST <= x->count)
            scan_direct(x, kn, s, allow, hp);
        else
            scan_all(x, kn, s, allow, hp);
        return JM_OK;
    }
    /* An unfiltered search scans nprobe lists, ~nprobe * N / nlist rows. A
     * filter passing a fraction f of the rows moves the allowed top k
     * further out: the probing goes on until the lists scanned held
     * nprobe * (allowed per list) * f^-filter_exp allowed rows, or the
     * allowed rows are scored directly when that is cheaper. */
    size_t target = 0;
    if (allow) {
        double f = (double)nallow / (double)x->count;
        double per = (double)nallow / x->nlist;
        double t = x->nprobe * per * pow(f, -(double)x->filter_exp);
        double rows = t / f; /* rows the probing reads */
        if ((double)nallow * GATHER_COST <= rows) {
            scan_direct(x, kn, s, allow, hp);
            return JM_OK;
        }
        target = t < (double)nallow ? (size_t)t : nallow;
    }
    probe(x, kn, s, query, allow, target, hp);
    return JM_OK;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

int idx_search(const idx *x, const float *query, int k, const uint64_t *allow, idx_hit *out,
               int *nout, jm_err *err)
{
    *nout = 0;
    if (k < 0)
        return jm_fail(err, JM_EINVAL, "idx: k = %d", k);
    if (k == 0 || x->count == 0)
        return check_query(x, query, err);
    scratch s = {0};
    heap hp;
    int rc = search_approx(x, query, k, allow, 0, &s, &hp, err);
    if (rc == JM_OK)
        *nout = heap_drain(&hp, out);
    free(s.mem);
    return rc;
}

/* Re-scores the approximate hits in hp with the exact vectors (fetched in
 * ascending slot order) and keeps the best k in out, best first. */
static int rescore(const idx *x, const float *query, int k, heap *hp, idx_fetch_fn fetch, void *ctx,
                   idx_hit *out, int *nout, jm_err *err)
{
    int n = hp->n, rc = JM_OK;
    float *vecs = malloc(sizeof(float) * (size_t)n * x->dim + sizeof(float) * n);
    uint32_t *slots = malloc(sizeof(uint32_t) * (n ? n : 1));
    if (!vecs || !slots) {
        rc = jm_fail(err, JM_ENOMEM, "idx: out of memory for %d candidates", n);
        goto done;
    }
    float *scores = vecs + (size_t)n * x->dim;
    /* Ascending slots: the order a database reads fastest, and deterministic. */
    for (int i = 0; i < n; i++)
        slots[i] = hp->h[i].slot;
    qsort(slots, (size_t)n, sizeof(uint32_t), cmp_u32);
    if (n) {
        rc = fetch(ctx, slots, n, vecs, err);
        if (rc)
            goto done;
    }
    kernels()->dot_f32(query, vecs, x->dim, n, scores);
    hp->n = 0;
    hp->cap = k < n ? k : n;
    for (int i = 0; i < n; i++)
        if (!isnan(vecs[(size_t)i * x->dim]) && !isnan(scores[i]))
            heap_push(hp, slots[i], scores[i]);
    *nout = heap_drain(hp, out);
done:
    free(vecs);
    free(slots);
    return rc;
}

static int fix_candidates(int k, int candidates)
{
    if (candidates == 0)
        candidates = k > 10 ? (k > INT32_MAX / 10 ? INT32_MAX : 10 * k) : 100;
    return candidates < k ? k : candidates;
}

int idx_search_exact(const idx *x, const float *query, int k, int candidates,
                     const uint64_t *allow, idx_fetch_fn fetch, void *ctx, idx_hit *out,
                     int *nout, jm_err *err)
{
    *nout = 0;
    if (k < 0 || candidates < 0)
        return jm_fail(err, JM_EINVAL, "idx: k = %d, candidates = %d", k, candidates);
    candidates = fix_candidates(k, candidates);
    if (k == 0 || x->count == 0)
        return check_query(x, query, err);
    scratch s = {0};
    heap hp;
    int rc = search_approx(x, query, candidates, allow, 0, &s, &hp, err);
    if (rc == JM_OK)
        rc = rescore(x, query, k, &hp, fetch, ctx, out, nout, err);
    free(s.mem);
    return rc;
}

int idx_probe_needs(const idx *x, const float *queries, int nq, int k, int candidates,
                    idx_fetch_fn fetch, void *ctx, const float *spreads, int ns, int *need,
                    jm_err *err)
{
    if (k < 1 || candidates < 0 || nq < 0 || ns < 1)
        return jm_fail(err, JM_EINVAL, "idx: k = %d, candidates = %d, %d queries, %d orders", k,
                       candidates, nq, ns);
    for (int o = 0; o < ns; o++)
        if (!(spreads[o] >= 0 && spreads[o] <= IDX_MAX_SPREAD))
            return jm_fail(err, JM_EINVAL, "idx: spread %g must be in [0, %g]", (double)spreads[o],
                           (double)IDX_MAX_SPREAD);
    candidates = fix_candidates(k, candidates);
    int nl = x->nlist, rc = JM_OK;
    idx_hit *hits = malloc(sizeof(idx_hit) * (size_t)k);
    float *base = malloc(sizeof(float) * (size_t)(nl ? nl : 1));
    if (!hits || !base) {
        free(hits);
        free(base);
        return jm_fail(err, JM_ENOMEM, "idx: out of memory");
    }
    for (int qi = 0; qi < nq && rc == JM_OK; qi++) {
        const float *q = queries + (size_t)qi * x->dim;
        for (int o = 0; o < ns; o++)
            need[(size_t)o * nq + qi] = 0;
        if (x->count == 0) {
            rc = check_query(x, q, err);
            continue;
        }
        scratch s = {0};
        heap hp;
        int nh = 0;
        rc = search_approx(x, q, candidates, NULL, 1, &s, &hp, err);
        if (rc == JM_OK)
            rc = rescore(x, q, k, &hp, fetch, ctx, hits, &nh, err);
        if (rc == JM_OK && nl > 0) {
            kernels()->dot_f32(q, x->cl.f, x->dim, nl, base);
            for (int o = 0; o < ns; o++) {
                memcpy(s.lsc, base, sizeof(float) * (size_t)nl);
                spread_scores(x, spreads[o], s.lsc);
                int *nd = &need[(size_t)o * nq + qi];
                for (int h = 0; h < nh; h++) {
                    uint32_t li = x->owner[x->pos[hits[h].slot] >> CH_SHIFT];
                    if (li >= (uint32_t)nl)
                        continue; /* not yet assigned: every search scans those */
                    int r = 1;
                    for (int j = 0; j < nl; j++)
                        r += lbetter(s.lsc, (uint32_t)j, li);
                    if (r > *nd)
                        *nd = r;
                }
            }
        }
        free(s.mem);
    }
    free(hits);
    free(base);
    return rc;
}

int idx_probe_need(const idx *x, const float *queries, int nq, int k, int candidates,
                   idx_fetch_fn fetch, void *ctx, int *need, jm_err *err)
{
    return idx_probe_needs(x, queries, nq, k, candidates, fetch, ctx, &x->spread, 1, need, err);
}

double idx_probe_rows(const idx *x, const float *queries, int nq, int nprobe, float spread)
{
    int nl = x->nlist;
    if (nq < 1 || nl == 0 || nprobe >= nl)
        return (double)x->count;
    float *sc = malloc(sizeof(float) * (size_t)nl);
    uint32_t *h = malloc(sizeof(uint32_t) * (size_t)nl);
    if (!sc || !h) {
        free(sc);
        free(h);
        return -1;
    }
    double rows = 0;
    for (int qi = 0; qi < nq; qi++) {
        leaf_scores(x, kernels(), queries + (size_t)qi * x->dim, spread, sc);
        leaf_heap(sc, h, nl);
        int n = nl;
        rows += x->lists[nl].n; /* the unassigned rows, which every search reads */
        for (int p = 0; p < nprobe && n > 0; p++)
            rows += x->lists[leaf_pop(sc, h, &n)].n;
    }
    free(sc);
    free(h);
    return rows / nq;
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return x < y ? -1 : x > y;
}

int idx_probe_pick(const int *need, int n, double share)
{
    if (n <= 0)
        return 1;
    int *t = malloc(sizeof(int) * (size_t)n);
    if (!t)
        return 1 << 20; /* out of memory: probe everything rather than guess */
    memcpy(t, need, sizeof(int) * (size_t)n);
    qsort(t, (size_t)n, sizeof(int), cmp_int);
    double want = ceil((share > 1 ? 1 : share) * n);
    int i = want < 1 ? 0 : (int)want - 1;
    int p = t[i];
    free(t);
    p += (p + 3) / 4;
    return p < 1 ? 1 : p;
}

/* ---- Snapshot ----
 * Layout (native byte order), each line one jm_bin call unless it says
 * "pieces" (calls of at most 1 MiB, or PIECE rows, the same on both sides):
 *   u64 IDX_MAGIC; u64 hdr[HDR_N]
 *   live bitmap, (nslots + 63) / 64 u64 words, pieces
 *   centres 1 .. ngen - 1, dim floats each
 *   when nlist > 0: cell[n1 + 1] u32, pieces; c1 [n1][dim] floats, pieces;
 *     cl [nlist][dim] floats, pieces
 *   for each list 0 .. nlist (the last: rows not yet assigned): u32 n, then
 *     its rows in pieces of PIECE: codes [k][row], scale [k] float,
 *     gen [k] u8, slot [k] u32
 *   u64 IDX_END
 * A loaded index lays each list out in consecutive chunks; nothing a search
 * or an update computes depends on where a row sits, so it behaves exactly
 * as the one saved. Arrays are read in pieces into memory grown as they
 * arrive, so a corrupt count costs at most about what the file holds. */

enum {
    H_VERSION, H_DIM, H_ROW, H_CH, H_NSLOTS, H_COUNT, H_NGEN, H_CENTRE_AT, H_NLIST, H_N1,
    H_TRAINED_AT, H_TRAIN_AT, H_IVF_MIN, H_NPROBE, H_FILTER_EXP, H_MAXGEN,
    H_SPREAD, /* float bits; 0 in files from before it (the plain order, as then) */
    HDR_N = 20
};
#define IDX_VERSION 1
#define MIB ((size_t)1 << 20)

static int wr(jm_bin *b, const void *p, size_t n, jm_err *err)
{
    return jm_bin_write(b, p, n, err);
}

/* n items of `size` bytes in pieces of at most 1 MiB (at least one item). */
static size_t piece_items(size_t size) { return size >= MIB ? 1 : MIB / size; }

static int wr_pieces(jm_bin *b, const void *p, size_t n, size_t size, jm_err *err)
{
    size_t per = piece_items(size);
    for (size_t i = 0; i < n; i += per) {
        size_t k = n - i < per ? n - i : per;
        if (wr(b, (const char *)p + i * size, k * size, err))
            return JM_EIO;
    }
    return JM_OK;
}

/* Reads n items of `size` bytes into a malloc'd array grown as pieces arrive. */
static int rd_pieces(jm_bin *b, void **out, size_t n, size_t size, jm_err *err)
{
    size_t per = piece_items(size), cap = 0;
    char *a = NULL;
    *out = NULL;
    for (size_t i = 0; i < n; i += per) {
        size_t k = n - i < per ? n - i : per;
        if (i + k > cap) {
            size_t nc = cap ? cap : per;
            while (nc < i + k)
                nc *= 2;
            nc = nc > n ? n : nc;
            char *na = realloc(a, nc * size);
            if (!na) {
                free(a);
                return jm_fail(err, JM_ENOMEM, "idx: out of memory reading the index");
            }
            a = na;
            cap = nc;
        }
        int rc = jm_bin_read(b, a + i * size, k * size, err);
        if (rc) {
            free(a);
            return rc;
        }
    }
    *out = a;
    return JM_OK;
}

int idx_save(const idx *x, jm_bin *b, jm_err *err)
{
    uint64_t magic = IDX_MAGIC, hdr[HDR_N] = {0};
    hdr[H_VERSION] = IDX_VERSION;
    hdr[H_DIM] = (uint64_t)x->dim;
    hdr[H_ROW] = x->row;
    hdr[H_CH] = CH;
    hdr[H_NSLOTS] = x->nslots;
    hdr[H_COUNT] = x->count;
    hdr[H_NGEN] = (uint64_t)x->ngen;
    hdr[H_CENTRE_AT] = x->centre_at;
    hdr[H_NLIST] = (uint64_t)x->nlist;
    hdr[H_N1] = (uint64_t)x->c1.n;
    hdr[H_TRAINED_AT] = x->trained_at;
    hdr[H_TRAIN_AT] = x->train_at;
    hdr[H_IVF_MIN] = x->ivf_min;
    hdr[H_NPROBE] = (uint64_t)x->nprobe;
    float fe = x->filter_exp;
    uint32_t fe_bits;
    memcpy(&fe_bits, &fe, 4);
    hdr[H_FILTER_EXP] = fe_bits;
    hdr[H_MAXGEN] = MAXGEN;
    float sp = x->spread;
    uint32_t sp_bits;
    memcpy(&sp_bits, &sp, 4);
    hdr[H_SPREAD] = sp_bits;
    if (wr(b, &magic, sizeof magic, err) || wr(b, hdr, sizeof hdr, err))
        return JM_EIO;
    if (wr_pieces(b, x->live, ((size_t)x->nslots + 63) / 64, sizeof(uint64_t), err))
        return JM_EIO;
    for (int g = 1; g < x->ngen; g++)
        if (wr(b, x->cen[g], sizeof(float) * x->dim, err))
            return JM_EIO;
    if (x->nlist) {
        if (wr_pieces(b, x->cell, (size_t)x->c1.n + 1, sizeof(uint32_t), err) ||
            wr_pieces(b, x->c1.f, (size_t)x->c1.n, sizeof(float) * x->dim, err) ||
            wr_pieces(b, x->cl.f, (size_t)x->nlist, sizeof(float) * x->dim, err))
            return JM_EIO;
    }
    size_t rowb = x->row + sizeof(float) + 1 + sizeof(uint32_t);
    char *tmp = NULL;
    for (int li = 0; li <= x->nlist; li++) {
        const ilist *L = &x->lists[li];
        if (wr(b, &L->n, sizeof(uint32_t), err))
            goto fail;
        for (uint32_t e0 = 0; e0 < L->n; e0 += PIECE) {
            uint32_t k = L->n - e0 < PIECE ? L->n - e0 : PIECE;
            if (!tmp && !(tmp = malloc(PIECE * rowb))) {
                jm_fail(err, JM_ENOMEM, "idx: out of memory saving the index");
                return JM_ENOMEM;
            }
            uint8_t *tc = (uint8_t *)tmp, *tg = tc + (size_t)PIECE * x->row;
            float *ts = (float *)(tg + PIECE);
            uint32_t *tsl = (uint32_t *)(ts + PIECE);
            /* gather the piece, a chunk (contiguous rows) at a time */
            for (uint32_t i = 0; i < k;) {
                uint32_t p = lpos(L, e0 + i), run = CH - (p & (CH - 1));
                run = run < k - i ? run : k - i;
                memcpy(tc + (size_t)i * x->row, rowp(x, p), (size_t)run * x->row);
                memcpy(ts + i, x->scale + p, sizeof(float) * run);
                memcpy(tg + i, x->gen + p, run);
                memcpy(tsl + i, x->slot_of + p, sizeof(uint32_t) * run);
                i += run;
            }
            if (wr(b, tc, (size_t)k * x->row, err) || wr(b, ts, sizeof(float) * k, err) ||
                wr(b, tg, k, err) || wr(b, tsl, sizeof(uint32_t) * k, err))
                goto fail;
        }
    }
    free(tmp);
    uint64_t end = IDX_END;
    return wr(b, &end, sizeof end, err) ? JM_EIO : JM_OK;
fail:
    free(tmp);
    return JM_EIO;
}

static int bad(jm_err *err, const char *what, uint64_t v)
{
    return jm_fail(err, JM_EFORMAT, "idx: corrupt index file: %s (%llu)", what,
                   (unsigned long long)v);
}

int idx_load(jm_bin *b, idx **out, jm_err *err)
{
    *out = NULL;
    uint64_t magic = 0, hdr[HDR_N];
    int rc = jm_bin_read(b, &magic, sizeof magic, err);
    if (rc)
        return rc;
    if (magic != IDX_MAGIC)
        return bad(err, "not an index section (bad magic)", magic);
    if ((rc = jm_bin_read(b, hdr, sizeof hdr, err)))
        return rc;
    if (hdr[H_VERSION] != IDX_VERSION)
        return bad(err, "unknown version", hdr[H_VERSION]);
    for (int i = H_SPREAD + 1; i < HDR_N; i++)
        if (hdr[i])
            return bad(err, "reserved header word set", hdr[i]);
    uint64_t dim = hdr[H_DIM], nslots = hdr[H_NSLOTS], count = hdr[H_COUNT], ngen = hdr[H_NGEN];
    uint64_t nlist = hdr[H_NLIST], n1 = hdr[H_N1];
    if (dim < 1 || dim > IDX_MAX_DIM)
        return bad(err, "dimension", dim);
    if (hdr[H_ROW] != (dim + 63) / 64 * 32)
        return bad(err, "row size", hdr[H_ROW]);
    if (hdr[H_CH] != CH || hdr[H_MAXGEN] != MAXGEN)
        return bad(err, "chunk size or generation limit of another build", hdr[H_CH]);
    if (nslots > (uint64_t)IDX_MAX_SLOT + 1)
        return bad(err, "slot count", nslots);
    if (count > nslots)
        return bad(err, "live count above the slot count", count);
    if (ngen < 1 || ngen > MAXGEN)
        return bad(err, "generation count", ngen);
    uint64_t lim = (uint64_t)1 << 34; /* counts are below 2^31; twice that for train_at */
    if (hdr[H_CENTRE_AT] > lim || hdr[H_TRAINED_AT] > lim || hdr[H_TRAIN_AT] > lim)
        return bad(err, "training counts", hdr[H_CENTRE_AT] | hdr[H_TRAINED_AT] | hdr[H_TRAIN_AT]);
    if (nlist > IDX_MAX_LISTS || n1 > nlist || (nlist > 0) != (n1 > 0))
        return bad(err, "list counts", nlist);
    if (hdr[H_IVF_MIN] < 1 || hdr[H_NPROBE] < 1 || hdr[H_NPROBE] > INT32_MAX)
        return bad(err, "search settings", hdr[H_NPROBE]);
    float fe;
    uint32_t fe_bits = (uint32_t)hdr[H_FILTER_EXP];
    memcpy(&fe, &fe_bits, 4);
    if (hdr[H_FILTER_EXP] > UINT32_MAX || !(fe >= 0 && fe <= 1))
        return bad(err, "filter exponent", hdr[H_FILTER_EXP]);
    float sp;
    uint32_t sp_bits = (uint32_t)hdr[H_SPREAD];
    memcpy(&sp, &sp_bits, 4);
    if (hdr[H_SPREAD] > UINT32_MAX || !(sp >= 0 && sp <= IDX_MAX_SPREAD))
        return bad(err, "spread", hdr[H_SPREAD]);

    idx *x;
    if ((rc = idx_new((int)dim, &x, err)))
        return rc;
    x->nslots = (uint32_t)nslots;
    x->count = count;
    x->centre_at = hdr[H_CENTRE_AT];
    x->trained_at = hdr[H_TRAINED_AT];
    x->train_at = hdr[H_TRAIN_AT];
    x->ivf_min = hdr[H_IVF_MIN] > SIZE_MAX ? SIZE_MAX : (size_t)hdr[H_IVF_MIN];
    x->nprobe = (int)hdr[H_NPROBE];
    x->filter_exp = fe;
    x->spread = sp;
    size_t row = x->row;
    void *tmp = NULL;

    /* The live bitmap, read straight into the slab grown piece by piece. */
    size_t nw = ((size_t)nslots + 63) / 64, per = piece_items(sizeof(uint64_t));
    for (size_t i = 0; i < nw; i += per) {
        size_t k = nw - i < per ? nw - i : per;
        size_t cap = x->scap ? x->scap : 64;
        while (cap < (i + k) * 64)
            cap *= 2;
        if (grow_slots(x, cap)) {
            rc = jm_fail(err, JM_ENOMEM, "idx: out of memory loading the index");
            goto fail;
        }
        if ((rc = jm_bin_read(b, x->live + i, k * sizeof(uint64_t), err)))
            goto fail;
    }
    size_t pc = 0;
    for (size_t w = 0; w < nw; w++)
        pc += (size_t)__builtin_popcountll(x->live[w]);
    if (pc != count || (nslots % 64 && x->live[nw - 1] >> (nslots % 64))) {
        rc = bad(err, "live bitmap does not match the counts", pc);
        goto fail;
    }
    if (grow_slots(x, (nw ? nw : 1) * 64)) {
        rc = jm_fail(err, JM_ENOMEM, "idx: out of memory loading the index");
        goto fail;
    }
    memset(x->pos, 0xff, sizeof(uint32_t) * nw * 64);

    for (uint64_t g = 1; g < ngen; g++) {
        if (!(x->cen[g] = malloc(sizeof(float) * dim))) {
            rc = jm_fail(err, JM_ENOMEM, "idx: out of memory loading the index");
            goto fail;
        }
        x->ngen = (int)g + 1;
        if ((rc = jm_bin_read(b, x->cen[g], sizeof(float) * dim, err)))
            goto fail;
        if (!all_finite(x->cen[g], dim)) {
            rc = bad(err, "centre not finite", g);
            goto fail;
        }
    }
    ilist *nl = calloc(nlist + 1, sizeof(ilist));
    if (!nl) {
        rc = jm_fail(err, JM_ENOMEM, "idx: out of memory loading the index");
        goto fail;
    }
    free(x->lists);
    x->lists = nl;
    if (nlist) {
        if ((rc = rd_pieces(b, &tmp, n1 + 1, sizeof(uint32_t), err)))
            goto fail;
        x->cell = tmp;
        tmp = NULL;
        if (x->cell[0] != 0 || x->cell[n1] != nlist) {
            rc = bad(err, "cell table ends", x->cell[n1]);
            goto fail;
        }
        for (uint64_t i = 0; i < n1; i++)
            if (x->cell[i + 1] <= x->cell[i]) {
                rc = bad(err, "cell table not increasing", i);
                goto fail;
            }
        float *f1 = NULL, *fl = NULL;
        if ((rc = rd_pieces(b, (void **)&f1, n1, sizeof(float) * dim, err)))
            goto fail;
        if ((rc = rd_pieces(b, (void **)&fl, nlist, sizeof(float) * dim, err))) {
            free(f1);
            goto fail;
        }
        int ok = all_finite(f1, n1 * dim) && all_finite(fl, nlist * dim);
        if (!ok || cset_alloc(&x->c1, (int)n1, (int)dim, row) ||
            cset_alloc(&x->cl, (int)nlist, (int)dim, row) ||
            !(x->atmp = malloc(sizeof(int32_t) * nlist))) {
            free(f1);
            free(fl);
            rc = ok ? jm_fail(err, JM_ENOMEM, "idx: out of memory loading the index")
                    : bad(err, "centroid not finite", 0);
            goto fail;
        }
        memcpy(x->c1.f, f1, sizeof(float) * n1 * dim);
        memcpy(x->cl.f, fl, sizeof(float) * nlist * dim);
        free(f1);
        free(fl);
        x->nlist = (int)nlist;
        cset_derive(x, &x->c1);
        cset_derive(x, &x->cl);
    }

    /* The lists, each in consecutive chunks, rows read straight into place. */
    size_t left = count;
    for (uint64_t li = 0; li <= nlist; li++) {
        uint32_t n;
        if ((rc = jm_bin_read(b, &n, sizeof n, err)))
            goto fail;
        if (n > left) {
            rc = bad(err, "list longer than the live count", n);
            goto fail;
        }
        left -= n;
        uint32_t first = x->nchunk, nch = (n + CH - 1) >> CH_SHIFT;
        for (uint32_t e0 = 0; e0 < n; e0 += PIECE) {
            uint32_t k = n - e0 < PIECE ? n - e0 : PIECE;
            if (grow_chunks(x, (size_t)first + ((e0 + k + CH - 1) >> CH_SHIFT))) {
                rc = jm_fail(err, JM_ENOMEM, "idx: out of memory loading the index");
                goto fail;
            }
            uint32_t p0 = (first << CH_SHIFT) + e0;
            if ((rc = jm_bin_read(b, x->codes + (size_t)p0 * row, (size_t)k * row, err)) ||
                (rc = jm_bin_read(b, x->scale + p0, sizeof(float) * k, err)) ||
                (rc = jm_bin_read(b, x->gen + p0, k, err)) ||
                (rc = jm_bin_read(b, x->slot_of + p0, sizeof(uint32_t) * k, err)))
                goto fail;
            for (uint32_t i = 0; i < k; i++) {
                uint32_t p = p0 + i, sl = x->slot_of[p];
                if (sl >= nslots || !is_live(x, sl) || x->pos[sl] != NO_POS) {
                    rc = bad(err, "row of a dead, unknown or repeated slot", sl);
                    goto fail;
                }
                if (x->gen[p] >= ngen || !(x->scale[p] >= 0 && x->scale[p] < INFINITY)) {
                    rc = bad(err, "row generation or scale", x->gen[p]);
                    goto fail;
                }
                x->pos[sl] = p;
            }
        }
        ilist *L = &x->lists[li];
        L->cap = nch ? nch : 1;
        if (!(L->ch = malloc(sizeof(uint32_t) * L->cap)) || grow_chunks(x, (size_t)first + nch)) {
            rc = jm_fail(err, JM_ENOMEM, "idx: out of memory loading the index");
            goto fail;
        }
        for (uint32_t c = 0; c < nch; c++) {
            L->ch[c] = first + c;
            x->owner[first + c] = (uint32_t)li;
        }
        for (uint32_t e = n; e < nch << CH_SHIFT; e++)
            x->slot_of[(first << CH_SHIFT) + e] = NO_POS;
        L->n = n;
        L->nch = nch;
        x->nchunk = first + nch;
    }
    if (left) {
        rc = bad(err, "lists hold fewer rows than the live count", left);
        goto fail;
    }
    uint64_t end = 0;
    if ((rc = jm_bin_read(b, &end, sizeof end, err)))
        goto fail;
    if (end != IDX_END) {
        rc = bad(err, "bad end marker", end);
        goto fail;
    }
    leaf_sums(x);
    *out = x;
    return JM_OK;
fail:
    free(tmp);
    idx_free(x);
    return rc;
}

/* ---- Streaming top-k ---- */

struct idx_topk {
    heap hp;
    float buf[BLOCK];
};

idx_topk *idx_topk_new(int k)
{
    if (k < 0)
        return NULL;
    idx_topk *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->hp.h = malloc(sizeof(idx_hit) * (k ? k : 1));
    if (!t->hp.h) {
        free(t);
        return NULL;
    }
    t->hp.cap = k;
    return t;
}

void idx_topk_add_f32(idx_topk *t, const float *query, const float *vecs, const uint32_t *slots,
                      int n, int dim)
{
    const idx_kernel *kn = kernels();
    for (int i = 0; i < n; i += BLOCK) {
        int m = n - i < BLOCK ? n - i : BLOCK;
        kn->dot_f32(query, vecs + (size_t)i * dim, dim, m, t->buf);
        for (int j = 0; j < m; j++)
            if (!isnan(t->buf[j]))
                heap_push(&t->hp, slots[i + j], t->buf[j]);
    }
}

int idx_topk_result(idx_topk *t, idx_hit *out)
{
    /* Drain a copy so the accumulator keeps its state. */
    heap c = {out, t->hp.n, t->hp.n};
    memcpy(out, t->hp.h, sizeof(idx_hit) * t->hp.n);
    int n = c.n;
    for (int i = n - 1; i > 0; i--) { /* heap sort in place: worst first to the end */
        idx_hit v = c.h[0];
        c.h[0] = c.h[i];
        sift_down(c.h, i, 0);
        c.h[i] = v;
    }
    return n;
}

void idx_topk_reset(idx_topk *t) { t->hp.n = 0; }

void idx_topk_free(idx_topk *t)
{
    if (!t)
        return;
    free(t->hp.h);
    free(t);
}
