/* idx.c - the vector index: storage, scalar reference kernels, dispatch,
 * the two-stage search and the top-k heap. See idx.h for the design. */
#define _GNU_SOURCE /* mremap */
#include "idx.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* idx_avx2.c */
void idx_dot_u4_avx2(const int8_t *q, const int8_t *lut, const uint8_t *codes, size_t row,
                     const uint32_t *slots, int n, int32_t *out);
uint64_t idx_hamming_avx2(const uint64_t *q, const uint64_t *bits, int words, uint32_t first,
                          int n, int bound, uint16_t *out);
void idx_dot_f32_avx2(const float *q, const float *vecs, int dim, int n, float *out);

enum {
    BLOCK = 256,          /* slots scored per kernel call */
    CENTRE_MIN = 1024,    /* live vectors before the first centre is computed */
    MAXGEN = 32,          /* code generations (centres); doublings from CENTRE_MIN need < 24 */
    CENTRE_SAMPLE = 16384 /* live vectors a centre is the mean of, at most */
};

/* One per-slot array: see slab_grow. */
typedef struct slab {
    void *p;
    size_t size; /* bytes mapped */
} slab;

struct idx {
    int dim;
    int words;          /* uint64 words per sign code: ceil(dim / 64) */
    size_t row;         /* bytes per code row: 32 * ceil(dim / 64) */
    uint32_t cap;       /* slots allocated, a multiple of 64 */
    uint32_t nslots;    /* 1 + highest slot ever set */
    size_t count;       /* live slots */
    uint8_t *codes;     /* [cap][row] 4-bit codes, 64-byte aligned (= codes_s.p) */
    float *scale;       /* [cap] */
    uint8_t *gen;       /* [cap] the generation (centre) each code was taken around */
    uint64_t *live;     /* [cap / 64] bitmap */
    slab codes_s, scale_s, gen_s, live_s, bits_s;
    /* Centres: cen[0] = NULL (zero), cen[g] [dim] for 0 < g < ngen. New codes
     * and the sign codes use the newest, cen[ngen - 1]. */
    float *cen[MAXGEN];
    int ngen;
    size_t centre_at;   /* live count when the newest centre was computed */
    /* Prefilter: sign codes of x/|x| - centre, present once count reached pf_min. */
    size_t pf_min;      /* SIZE_MAX = never */
    int pf_keep;
    uint64_t *bits;     /* [cap][words], 64-byte aligned, or NULL */
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
                       const uint32_t *slots, int n, int32_t *out)
{
    for (int i = 0; i < n; i++) {
        const uint8_t *r = codes + (size_t)slots[i] * row;
        int32_t s = 0;
        for (int d = 0; d < (int)(2 * row); d++)
            s += (int32_t)q[d] * lv[nib(r, d)];
        out[i] = s;
    }
}

static uint64_t hamming_ref(const uint64_t *q, const uint64_t *bits, int words, uint32_t first,
                            int n, int bound, uint16_t *out)
{
    uint64_t m = 0;
    for (int i = 0; i < n; i++) {
        const uint64_t *b = bits + ((size_t)first + i) * words;
        int s = 0;
        for (int w = 0; w < words; w++)
            s += __builtin_popcountll(q[w] ^ b[w]);
        out[i] = (uint16_t)s;
        m |= (uint64_t)(s <= bound) << i;
    }
    return m;
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

static const idx_kernel kern_ref = {"scalar", dot_u4_ref, hamming_ref, dot_f32_ref};
static const idx_kernel kern_avx2 = {"avx2", idx_dot_u4_avx2, idx_hamming_avx2, idx_dot_f32_avx2};
static const idx_kernel *kern = &kern_ref;
static pthread_once_t kern_once = PTHREAD_ONCE_INIT;

static int have_avx2(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
           __builtin_cpu_supports("popcnt");
}

static void kern_init(void)
{
    const char *cap = getenv("JOBMATCH_ISA");
    if (cap && strcmp(cap, "scalar") == 0)
        return;
    if (have_avx2())
        kern = &kern_avx2;
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
/* Symmetric int8 for queries: code = round(v / scale), half away from zero,
 * scale = max|v| / 127. Returns the scale (0 for a zero vector, whose codes
 * are all 0). No libm calls: this runs for every query. */
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
    float inv = 127.0f / m;
    for (int d = 0; d < dim; d++) {
        float r = v[d] * inv;
        int c = (int)(r + copysignf(0.5f, r));
        c = c > 127 ? 127 : c;
        code[d] = (int8_t)(c < -127 ? -127 : c);
    }
    return m / 127.0f;
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
 * sqrt, no other libm call: this runs for every vector inserted. */
static float encode(const float *v, const float *c, int dim, size_t row, uint8_t *code)
{
    enum { B = 64 };
    float r[B];
    memset(code, 0x88, row); /* past dim: level 8 (q is zero there) */
    pthread_once(&level_once, level_init);
    double ss = norm2c(v, c, dim);
    float a0 = 0, a1 = 0, a2 = 0, a3 = 0; /* r . LUT[code]: terms >= 0, so float is plenty */
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
        for (int j = 0; j < 32; j += 2) {
            int l0 = level(r[j] * inv), h0 = level(r[j + 32] * inv);
            int l1 = level(r[j + 1] * inv), h1 = level(r[j + 33] * inv);
            o[j] = (uint8_t)(l0 | h0 << 4);
            o[j + 1] = (uint8_t)(l1 | h1 << 4);
            a0 += r[j] * LUTF[l0];
            a1 += r[j + 32] * LUTF[h0];
            a2 += r[j + 1] * LUTF[l1];
            a3 += r[j + 33] * LUTF[h1];
        }
    }
    double rl = ((double)a0 + a1) + ((double)a2 + a3);
    return rl > 0 ? (float)(ss / rl) : 0;
}

static int all_finite(const float *v, int dim)
{
    for (int d = 0; d < dim; d++)
        if (!isfinite(v[d]))
            return 0;
    return 1;
}

/* The stored (dequantised) vector of a slot into out[dim]. */
static void dequantise(const idx *x, uint32_t slot, float *out)
{
    const uint8_t *r = x->codes + (size_t)slot * x->row;
    const float *c = x->cen[x->gen[slot]];
    float t[16];
    for (int u = 0; u < 16; u++)
        t[u] = x->scale[slot] * LUTF[u];
    for (int b0 = 0; b0 < x->dim; b0 += 64, r += 32) {
        int m = x->dim - b0 < 64 ? x->dim - b0 : 64;
        for (int j = 0; j < 32 && j < m; j++)
            out[b0 + j] = t[r[j] & 15];
        for (int j = 32; j < m; j++)
            out[b0 + j] = t[r[j - 32] >> 4];
    }
    if (c)
        for (int d = 0; d < x->dim; d++)
            out[d] += c[d];
}

/* Sign code of v / |v| - mean into b[words]: bit d set when component d
 * of the unit vector lies above the mean. Taken on unit vectors so that a
 * query of any norm (e.g. an average of embeddings) gets comparable bits. */
static void sign_bits(const float *v, int dim, const float *mean, uint64_t *b)
{
    float n = (float)sqrt(norm2(v, dim));
    for (int w = 0; w < (dim + 63) / 64; w++) {
        /* 64 comparisons into bytes, then 8 bytes of 0/1 into 8 bits at a
         * time by one multiplication: no serial chain of shifts and ors */
        uint8_t c[64];
        int m = dim - 64 * w < 64 ? dim - 64 * w : 64;
        const float *vw = v + 64 * w, *mw = mean + 64 * w;
        for (int j = 0; j < m; j++)
            c[j] = vw[j] > n * mw[j];
        for (int j = m; j < 64; j++)
            c[j] = 0;
        uint64_t word = 0;
        for (int k = 0; k < 8; k++) {
            uint64_t e;
            memcpy(&e, c + 8 * k, 8);
            word |= (e * 0x0102040810204080ULL >> 56) << (8 * k);
        }
        b[w] = word;
    }
}

/* q . cen[g] in float32 (0 for generation 0), in eight partial sums. */
static float dot_centre(const idx *x, const float *q, int g)
{
    const float *c = x->cen[g];
    if (!c)
        return 0;
    float a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0;
    int d = 0;
    for (; d + 8 <= x->dim; d += 8) {
        a0 += q[d] * c[d];
        a1 += q[d + 1] * c[d + 1];
        a2 += q[d + 2] * c[d + 2];
        a3 += q[d + 3] * c[d + 3];
        a4 += q[d + 4] * c[d + 4];
        a5 += q[d + 5] * c[d + 5];
        a6 += q[d + 6] * c[d + 6];
        a7 += q[d + 7] * c[d + 7];
    }
    for (; d < x->dim; d++)
        a0 += q[d] * c[d];
    return ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7));
}

/* ---- Storage ---- */

/* The per-slot arrays come straight from mmap and grow with mremap: pages
 * are zero-filled, resident only once touched, moved rather than copied when
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

static size_t codes_size(size_t cap, size_t row) { return (cap * row + 63) & ~(size_t)63; }

static size_t bits_size(size_t cap, int words) { return cap * (size_t)words * sizeof(uint64_t); }

int idx_new(int dim, idx **out, jm_err *err)
{
    *out = NULL;
    if (dim < 1 || dim > IDX_MAX_DIM)
        return jm_fail(err, JM_EINVAL, "idx: dimension %d out of range", dim);
    idx *x = calloc(1, sizeof *x);
    if (!x)
        return jm_fail(err, JM_ENOMEM, "idx: out of memory");
    x->dim = dim;
    x->words = (dim + 63) / 64;
    x->row = (size_t)x->words * 32;
    x->ngen = 1;
    x->pf_min = IDX_PREFILTER_MIN;
    x->pf_keep = IDX_PREFILTER_KEEP;
    *out = x;
    return JM_OK;
}

void idx_free(idx *x)
{
    if (!x)
        return;
    slab_release(&x->codes_s);
    slab_release(&x->scale_s);
    slab_release(&x->gen_s);
    slab_release(&x->live_s);
    slab_release(&x->bits_s);
    for (int g = 0; g < x->ngen; g++)
        free(x->cen[g]);
    free(x);
}

/* Grows every per-slot array to `cap` slots (a multiple of 64). On failure
 * returns JM_ENOMEM with cap unchanged; arrays already grown just stay
 * larger than needed. */
static int resize(idx *x, size_t cap, jm_err *err)
{
    int fail = slab_grow(&x->codes_s, codes_size(cap, x->row)) ||
               slab_grow(&x->scale_s, cap * sizeof(float)) || slab_grow(&x->gen_s, cap) ||
               slab_grow(&x->live_s, cap / 8) ||
               (x->bits && slab_grow(&x->bits_s, bits_size(cap, x->words)));
    x->codes = x->codes_s.p;
    x->scale = x->scale_s.p;
    x->gen = x->gen_s.p;
    x->live = x->live_s.p;
    x->bits = x->bits ? x->bits_s.p : NULL;
    if (fail)
        return jm_fail(err, JM_ENOMEM, "idx: out of memory growing to %zu slots", cap);
    x->cap = (uint32_t)cap;
    return JM_OK;
}

int idx_reserve(idx *x, uint32_t nslots, jm_err *err)
{
    if (nslots > IDX_MAX_SLOT + 1u)
        return jm_fail(err, JM_EINVAL, "idx: cannot reserve %u slots (max %u)", nslots,
                       IDX_MAX_SLOT + 1u);
    size_t cap = ((size_t)nslots + 63) & ~(size_t)63;
    return cap > x->cap ? resize(x, cap, err) : JM_OK;
}

static inline int is_live(const idx *x, uint32_t s) { return x->live[s >> 6] >> (s & 63) & 1; }

/* Sign codes of every live slot from its stored vector, around the newest
 * centre. */
static void sign_all(idx *x, float *tmp)
{
    const float *c = x->cen[x->ngen - 1];
    for (uint32_t s = 0; s < x->nslots; s++)
        if (is_live(x, s)) {
            dequantise(x, s, tmp);
            sign_bits(tmp, x->dim, c, x->bits + (size_t)s * x->words);
        }
}

/* A new centre, the mean of the live unit vectors (as stored), for the codes
 * written from now on and the sign codes, which are all recomputed around it.
 * The codes already stored keep theirs (their generation). Above
 * CENTRE_SAMPLE live vectors the mean is that of every k-th live slot, at
 * most CENTRE_SAMPLE of them (its error, ~0.045 / sqrt(CENTRE_SAMPLE) per
 * component, is far below what matters). Failure to allocate changes
 * nothing. */
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
        dequantise(x, s, tmp);
        double n2 = norm2(tmp, x->dim);
        double inv = n2 > 0 ? 1 / sqrt(n2) : 0;
        for (int d = 0; d < x->dim; d++)
            sum[d] += tmp[d] * inv;
    }
    for (int d = 0; d < x->dim; d++)
        c[d] = (float)(sum[d] / (double)used);
    x->cen[x->ngen++] = c;
    x->centre_at = x->count;
    if (x->bits)
        sign_all(x, tmp);
    free(tmp);
    free(sum);
}

/* Allocates and computes the sign codes (the prefilter), around the newest
 * centre, computing one if there is none. Failure to allocate leaves the
 * prefilter off (searches stay correct, only slower); a later idx_set
 * tries again. */
static void build_signs(idx *x)
{
    if (x->ngen == 1)
        new_centre(x);
    if (x->ngen == 1)
        return;
    float *tmp = malloc(sizeof(float) * x->dim);
    if (!tmp || slab_grow(&x->bits_s, bits_size(x->cap, x->words))) {
        free(tmp);
        return;
    }
    x->bits = x->bits_s.p;
    sign_all(x, tmp);
    free(tmp);
}

/* The centre is computed when the live count reaches CENTRE_MIN (or the
 * sign codes are first needed) and again each time the count has doubled,
 * so that it follows the data at O(dim) amortised per set; the sign codes
 * appear once the count reaches pf_min. */
static void maintain(idx *x)
{
    int want_signs = x->pf_min != SIZE_MAX && x->count >= x->pf_min && x->count > 0;
    if ((x->count >= CENTRE_MIN || (want_signs && !x->bits)) && x->count >= 2 * x->centre_at)
        new_centre(x);
    if (want_signs && !x->bits)
        build_signs(x);
}

int idx_set(idx *x, uint32_t slot, const float *vec, jm_err *err)
{
    if (slot > IDX_MAX_SLOT)
        return jm_fail(err, JM_EINVAL, "idx: slot %u out of range (max %u)", slot, IDX_MAX_SLOT);
    if (!all_finite(vec, x->dim))
        return jm_fail(err, JM_EINVAL, "idx: vector for slot %u has a non-finite component",
                       slot);
    if (slot >= x->cap) {
        size_t cap = x->cap ? x->cap : 64;
        while (cap <= slot)
            cap *= 2;
        if (cap > (size_t)IDX_MAX_SLOT + 64)
            cap = (size_t)IDX_MAX_SLOT + 64;
        int rc = resize(x, cap, err);
        if (rc)
            return rc;
    }
    /* Slots below this one never set stay dead (the live bitmap is zeroed
     * at growth); nothing reads their codes, scales or sign codes. */
    if (slot >= x->nslots)
        x->nslots = slot + 1;
    int g = x->ngen - 1;
    x->scale[slot] = encode(vec, x->cen[g], x->dim, x->row, x->codes + (size_t)slot * x->row);
    x->gen[slot] = (uint8_t)g;
    uint64_t bit = 1ULL << (slot & 63);
    if (!(x->live[slot >> 6] & bit)) {
        x->live[slot >> 6] |= bit;
        x->count++;
    }
    if (x->bits)
        sign_bits(vec, x->dim, x->cen[x->ngen - 1], x->bits + (size_t)slot * x->words);
    maintain(x);
    return JM_OK;
}

void idx_remove(idx *x, uint32_t slot)
{
    if (slot >= x->nslots)
        return;
    uint64_t bit = 1ULL << (slot & 63);
    if (x->live[slot >> 6] & bit) {
        x->live[slot >> 6] &= ~bit;
        x->count--;
    }
}

size_t idx_count(const idx *x) { return x->count; }
uint32_t idx_slots(const idx *x) { return x->nslots; }
int idx_dim(const idx *x) { return x->dim; }

int idx_is_live(const idx *x, uint32_t slot)
{
    return slot < x->nslots && (x->live[slot >> 6] >> (slot & 63) & 1);
}

size_t idx_bytes(const idx *x)
{
    size_t b = sizeof *x + x->codes_s.size + x->scale_s.size + x->gen_s.size + x->live_s.size +
               x->bits_s.size;
    return b + sizeof(float) * x->dim * (x->ngen - 1);
}

/* query . (scale * LUT[code]) of one live slot in float32, in eight
 * partial sums (the same order for idx_score and idx_score_many). */
static float score_codes(const idx *x, const float *q, uint32_t slot)
{
    const uint8_t *r = x->codes + (size_t)slot * x->row;
    float a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0;
    int b0 = 0;
    for (; b0 + 64 <= x->dim; b0 += 64, r += 32) {
        const float *ql = q + b0, *qh = q + b0 + 32;
        for (int j = 0; j < 32; j += 4) {
            a0 += ql[j] * LUTF[r[j] & 15];
            a1 += ql[j + 1] * LUTF[r[j + 1] & 15];
            a2 += ql[j + 2] * LUTF[r[j + 2] & 15];
            a3 += ql[j + 3] * LUTF[r[j + 3] & 15];
            a4 += qh[j] * LUTF[r[j] >> 4];
            a5 += qh[j + 1] * LUTF[r[j + 1] >> 4];
            a6 += qh[j + 2] * LUTF[r[j + 2] >> 4];
            a7 += qh[j + 3] * LUTF[r[j + 3] >> 4];
        }
    }
    for (int d = b0; d < x->dim; d++) /* a last, partial block */
        a0 += q[d] * LUTF[nib(r, d - b0)];
    return (((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7))) * x->scale[slot];
}

float idx_score(const idx *x, const float *query, uint32_t slot)
{
    if (!idx_is_live(x, slot))
        return NAN;
    return score_codes(x, query, slot) + dot_centre(x, query, x->gen[slot]);
}

void idx_score_many(const idx *x, const float *query, const uint32_t *slots, int n, float *out)
{
    enum { AHEAD = 4 };
    float qc[MAXGEN];
    uint32_t have = 0; /* bit g: qc[g] computed */
    for (int i = 0; i < n; i++) {
        /* the rows are scattered: ask for the next ones early */
        if (i + AHEAD < n && idx_is_live(x, slots[i + AHEAD])) {
            const char *p = (const char *)(x->codes + (size_t)slots[i + AHEAD] * x->row);
            for (size_t o = 0; o < x->row; o += 64)
                __builtin_prefetch(p + o);
            __builtin_prefetch(p + x->row - 1);
        }
        uint32_t sl = slots[i];
        if (!idx_is_live(x, sl)) {
            out[i] = NAN;
            continue;
        }
        int g = x->gen[sl];
        if (!(have >> g & 1)) {
            qc[g] = dot_centre(x, query, g);
            have |= 1u << g;
        }
        /* the same operations as idx_score: the same bits */
        out[i] = score_codes(x, query, sl) + qc[g];
    }
}

int idx_set_prefilter(idx *x, size_t min_n, int keep, jm_err *err)
{
    if (keep < 1)
        return jm_fail(err, JM_EINVAL, "idx: prefilter keep %d must be positive", keep);
    x->pf_min = min_n;
    x->pf_keep = keep;
    if (min_n == SIZE_MAX) {
        slab_release(&x->bits_s);
        x->bits = NULL;
    } else {
        maintain(x);
    }
    return JM_OK;
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
    uint64_t *qbits;    /* [words] */
    uint32_t *slots;    /* [BLOCK] */
    int32_t *dots;      /* [BLOCK] */
    uint32_t *cslot;    /* prefilter candidates [ccap] */
    uint16_t *cdist;    /* [ccap] */
    uint32_t *hist;     /* [words * 64 + 1] when prefiltering */
    idx_hit *heap;      /* [nheap] */
    int ccap;
    void *mem;
} scratch;

static int scratch_new(scratch *s, const idx *x, int nheap, int ccap)
{
    size_t qn = 2 * x->row;
    size_t off_qbits = (qn + 63) & ~(size_t)63;
    size_t off_slots = off_qbits + sizeof(uint64_t) * x->words;
    size_t off_dots = off_slots + sizeof(uint32_t) * BLOCK;
    size_t off_cslot = off_dots + sizeof(int32_t) * BLOCK;
    size_t off_heap = off_cslot + sizeof(uint32_t) * ccap;
    size_t off_hist = off_heap + sizeof(idx_hit) * nheap;
    size_t nhist = ccap ? (size_t)x->words * 64 + 1 : 0;
    size_t off_cdist = off_hist + sizeof(uint32_t) * nhist;
    size_t total = off_cdist + sizeof(uint16_t) * ccap;
    char *m = aligned_alloc(64, (total + 63) & ~(size_t)63);
    if (!m)
        return JM_ENOMEM;
    s->mem = m;
    s->q = (int8_t *)m;
    s->qbits = (uint64_t *)(m + off_qbits);
    s->slots = (uint32_t *)(m + off_slots);
    s->dots = (int32_t *)(m + off_dots);
    s->cslot = (uint32_t *)(m + off_cslot);
    s->heap = (idx_hit *)(m + off_heap);
    s->hist = (uint32_t *)(m + off_hist);
    s->cdist = (uint16_t *)(m + off_cdist);
    s->ccap = ccap;
    memset(s->q, 0, qn);
    return JM_OK;
}

static inline uint64_t mask_word(const idx *x, const uint64_t *allow, size_t w)
{
    return allow ? x->live[w] & allow[w] : x->live[w];
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

/* Scores slots[0..n) with the 4-bit kernel and offers them to the heap. */
static void score_block(const idx *x, const idx_kernel *kn, const scratch *s, float qscale,
                        const uint32_t *slots, int n, heap *hp)
{
    kn->dot_u4(s->q, LUT, x->codes, x->row, slots, n, s->dots);
    for (int i = 0; i < n; i++) {
        uint32_t sl = slots[i];
        heap_push(hp, sl, (float)s->dots[i] * (qscale * x->scale[sl]) + s->qc[x->gen[sl]]);
    }
}

/* Keeps the `keep` candidates of smallest distance (ties: lowest slot) in
 * slot order; returns the largest distance a later candidate may have to
 * still enter (-1 when none can). */
static int compact(scratch *s, int *nc, int keep, int maxd)
{
    uint32_t *hist = s->hist;
    memset(hist, 0, sizeof(uint32_t) * (maxd + 1));
    for (int i = 0; i < *nc; i++)
        hist[s->cdist[i]]++;
    int t = 0;
    uint32_t cum = 0;
    for (; t <= maxd; t++) {
        cum += hist[t];
        if (cum >= (uint32_t)keep)
            break;
    }
    if (t > maxd) /* fewer than keep: all stay */
        return maxd;
    int room_t = keep - (int)(cum - hist[t]); /* how many at distance t fit */
    int m = 0;
    for (int i = 0; i < *nc; i++) {
        int d = s->cdist[i];
        if (d < t || (d == t && room_t-- > 0)) {
            s->cslot[m] = s->cslot[i];
            s->cdist[m] = (uint16_t)d;
            m++;
        }
    }
    *nc = m;
    return t - 1;
}

/* The approximate top hp->cap: sign-code prefilter to `keep` slots when
 * `prefilter`, then 4-bit scores. */
static void search_codes(const idx *x, const idx_kernel *kn, scratch *s, float qscale,
                         const uint64_t *allow, int prefilter, int keep, heap *hp)
{
    size_t nw = ((size_t)x->nslots + 63) / 64;
    if (!prefilter) {
        int nb = 0;
        for (size_t w = 0; w < nw; w++) {
            uint64_t m = mask_word(x, allow, w);
            while (m) {
                s->slots[nb++] = (uint32_t)(w * 64 + __builtin_ctzll(m));
                m &= m - 1;
            }
            if (nb > BLOCK - 64) {
                score_block(x, kn, s, qscale, s->slots, nb, hp);
                nb = 0;
            }
        }
        if (nb)
            score_block(x, kn, s, qscale, s->slots, nb, hp);
        return;
    }
    /* Stage 1: Hamming distances 64 slots at a time; candidates within the
     * current bound are appended in slot order and cut back to `keep` when
     * the buffer fills, which tightens the bound. */
    uint16_t dist[64];
    int nc = 0, bound = x->words * 64;
    for (size_t w = 0; w < nw; w++) {
        uint64_t m = mask_word(x, allow, w);
        if (!m)
            continue;
        uint32_t first = (uint32_t)(w * 64);
        int n = x->nslots - first < 64 ? (int)(x->nslots - first) : 64;
        m &= kn->hamming(s->qbits, x->bits, x->words, first, n, bound, dist);
        while (m) {
            int b = __builtin_ctzll(m);
            m &= m - 1;
            s->cslot[nc] = first + b;
            s->cdist[nc++] = dist[b];
        }
        if (nc > s->ccap - 64)
            bound = compact(s, &nc, keep, x->words * 64);
    }
    if (nc > keep)
        compact(s, &nc, keep, x->words * 64);
    /* Stage 2: 4-bit scores of the survivors, in slot (= address) order. */
    for (int i = 0; i < nc; i += BLOCK)
        score_block(x, kn, s, qscale, s->cslot + i, nc - i < BLOCK ? nc - i : BLOCK, hp);
}

static int check_query(const idx *x, const float *query, jm_err *err)
{
    if (!all_finite(query, x->dim))
        return jm_fail(err, JM_EINVAL, "idx: query has a non-finite component");
    return JM_OK;
}

/* Shared front half of both searches: validates, quantises the query and
 * fills hp with the approximate best min(nheap, allowed live slots). */
static int search_approx(const idx *x, const float *query, int nheap, const uint64_t *allow,
                         scratch *s, heap *hp, jm_err *err)
{
    if (check_query(x, query, err))
        return JM_EINVAL;
    size_t nallow = count_allowed(x, allow);
    if ((size_t)nheap > nallow)
        nheap = (int)nallow; /* also bounds the scratch for a huge k */
    int prefilter = x->bits && nallow > x->pf_min;
    /* The prefilter's recall at a fixed keep falls as N grows (more slots
     * compete for it), so keep grows with N past pf_keep * 256 slots, and
     * stays well above what the 4-bit stage is asked for. */
    size_t keepz = x->pf_keep;
    if (keepz < nallow / 256)
        keepz = nallow / 256;
    if (keepz < 8 * (size_t)nheap)
        keepz = 8 * (size_t)nheap;
    int keep = keepz > INT32_MAX / 4 ? INT32_MAX / 4 : (int)keepz;
    if (prefilter && nallow <= (size_t)keep)
        prefilter = 0;
    int ccap = prefilter ? 2 * keep + 128 : 0;
    if (scratch_new(s, x, nheap, ccap))
        return jm_fail(err, JM_ENOMEM, "idx: out of memory for search scratch");
    hp->h = s->heap;
    hp->n = 0;
    hp->cap = nheap;
    const idx_kernel *kn = kernels();
    float qscale = quantise(query, x->dim, s->q);
    for (int g = 0; g < x->ngen; g++)
        s->qc[g] = dot_centre(x, query, g);
    if (prefilter)
        sign_bits(query, x->dim, x->cen[x->ngen - 1], s->qbits);
    search_codes(x, kn, s, qscale, allow, prefilter, keep, hp);
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
    int rc = search_approx(x, query, k, allow, &s, &hp, err);
    if (rc == JM_OK)
        *nout = heap_drain(&hp, out);
    free(s.mem);
    return rc;
}

int idx_search_exact(const idx *x, const float *query, int k, int candidates,
                     const uint64_t *allow, idx_fetch_fn fetch, void *ctx, idx_hit *out,
                     int *nout, jm_err *err)
{
    *nout = 0;
    if (k < 0 || candidates < 0)
        return jm_fail(err, JM_EINVAL, "idx: k = %d, candidates = %d", k, candidates);
    if (candidates == 0)
        candidates = k > 10 ? (k > INT32_MAX / 10 ? INT32_MAX : 10 * k) : 100;
    if (candidates < k)
        candidates = k;
    if (k == 0 || x->count == 0)
        return check_query(x, query, err);
    scratch s = {0};
    heap hp;
    float *vecs = NULL, *scores = NULL;
    uint32_t *slots = NULL;
    int rc = search_approx(x, query, candidates, allow, &s, &hp, err);
    if (rc)
        goto done;
    int n = hp.n;
    vecs = malloc(sizeof(float) * (size_t)n * x->dim + sizeof(float) * n);
    slots = malloc(sizeof(uint32_t) * (n ? n : 1));
    if (!vecs || !slots) {
        rc = jm_fail(err, JM_ENOMEM, "idx: out of memory for %d candidates", n);
        goto done;
    }
    scores = vecs + (size_t)n * x->dim;
    /* Ascending slots: the order a database reads fastest, and deterministic. */
    for (int i = 0; i < n; i++)
        slots[i] = hp.h[i].slot;
    qsort(slots, (size_t)n, sizeof(uint32_t), cmp_u32);
    if (n) {
        rc = fetch(ctx, slots, n, vecs, err);
        if (rc)
            goto done;
    }
    kernels()->dot_f32(query, vecs, x->dim, n, scores);
    hp.n = 0;
    hp.cap = k < n ? k : n;
    for (int i = 0; i < n; i++)
        if (!isnan(vecs[(size_t)i * x->dim]) && !isnan(scores[i]))
            heap_push(&hp, slots[i], scores[i]);
    *nout = heap_drain(&hp, out);
done:
    free(vecs);
    free(slots);
    free(s.mem);
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
