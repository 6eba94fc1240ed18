/* idx_avx2.c - AVX2 versions of the index kernels (see idx_kernel in
 * idx.h). Compiled with -mavx2 -mfma and only called after idx.c found
 * those features. Tested against the scalar references in tests/test_idx.c:
 * the 4-bit and int8 centroid results are exact, so they must be equal; the
 * float32 dot products differ by rounding only. */
#include "idx.h"

#include <immintrin.h>

/* Rows ahead of the one being scored whose cache lines are prefetched: the
 * 4-bit stage reads candidate rows in ascending but scattered order, which
 * the hardware prefetcher does not follow. */
enum { PREFETCH_AHEAD = 8 };

static inline void prefetch_row(const uint8_t *r, size_t row)
{
    for (size_t o = 0; o < row; o += 64)
        _mm_prefetch((const char *)r + o, _MM_HINT_T0);
    _mm_prefetch((const char *)r + row - 1, _MM_HINT_T0);
}

/* q . x for the 64 components of one 32-byte block of a row, as 8 int32
 * partial sums. The nibbles become int8 levels by vpshufb (a 16-entry table
 * per 128-bit lane); then |q| * (x * sign(q)) in vpmaddubsw (unsigned x
 * signed bytes -> int16 pairs): with |q| <= 127 and |x| <= 127 a pair sums
 * to at most 2 * 127 * 127 = 32258, so the saturating add never saturates;
 * vpmaddwd by 1 widens to int32. aq0/q0: components 0-31 of the block (the
 * low nibbles), aq1/q1: 32-63 (the high ones). */
static inline __m256i dot64(__m256i lut, __m256i aq0, __m256i q0, __m256i aq1, __m256i q1,
                            const uint8_t *r)
{
    const __m256i m4 = _mm256_set1_epi8(15), ones = _mm256_set1_epi16(1);
    __m256i b = _mm256_loadu_si256((const __m256i *)r);
    __m256i lo = _mm256_shuffle_epi8(lut, _mm256_and_si256(b, m4));
    __m256i hi = _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(b, 4), m4));
    __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(aq0, _mm256_sign_epi8(lo, q0)), ones);
    __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(aq1, _mm256_sign_epi8(hi, q1)), ones);
    return _mm256_add_epi32(p0, p1);
}

static inline int32_t hsum_epi32(__m256i v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

void idx_dot_u4_avx2(const int8_t *q, const int8_t *lv, const uint8_t *codes, size_t row,
                     const uint32_t *slots, int n, int32_t *out)
{
    const __m256i lut = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)lv));
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        if (i + PREFETCH_AHEAD + 4 <= n)
            for (int j = 0; j < 4; j++)
                prefetch_row(codes + (size_t)slots[i + PREFETCH_AHEAD + j] * row, row);
        const uint8_t *r0 = codes + (size_t)slots[i] * row;
        const uint8_t *r1 = codes + (size_t)slots[i + 1] * row;
        const uint8_t *r2 = codes + (size_t)slots[i + 2] * row;
        const uint8_t *r3 = codes + (size_t)slots[i + 3] * row;
        __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
        for (size_t o = 0; o < row; o += 32) {
            __m256i q0 = _mm256_loadu_si256((const __m256i *)(q + 2 * o));
            __m256i q1 = _mm256_loadu_si256((const __m256i *)(q + 2 * o + 32));
            __m256i aq0 = _mm256_abs_epi8(q0), aq1 = _mm256_abs_epi8(q1);
            a0 = _mm256_add_epi32(a0, dot64(lut, aq0, q0, aq1, q1, r0 + o));
            a1 = _mm256_add_epi32(a1, dot64(lut, aq0, q0, aq1, q1, r1 + o));
            a2 = _mm256_add_epi32(a2, dot64(lut, aq0, q0, aq1, q1, r2 + o));
            a3 = _mm256_add_epi32(a3, dot64(lut, aq0, q0, aq1, q1, r3 + o));
        }
        /* Four horizontal sums at once: lanes end up as a0 a1 a2 a3. */
        __m256i t = _mm256_hadd_epi32(_mm256_hadd_epi32(a0, a1), _mm256_hadd_epi32(a2, a3));
        __m128i s = _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
        _mm_storeu_si128((__m128i *)(out + i), s);
    }
    for (; i < n; i++) {
        const uint8_t *r = codes + (size_t)slots[i] * row;
        __m256i a = _mm256_setzero_si256();
        for (size_t o = 0; o < row; o += 32) {
            __m256i q0 = _mm256_loadu_si256((const __m256i *)(q + 2 * o));
            __m256i q1 = _mm256_loadu_si256((const __m256i *)(q + 2 * o + 32));
            __m256i aq0 = _mm256_abs_epi8(q0), aq1 = _mm256_abs_epi8(q1);
            a = _mm256_add_epi32(a, dot64(lut, aq0, q0, aq1, q1, r + o));
        }
        out[i] = hsum_epi32(a);
    }
}

/* out[j] = sum_d lut[nibble d of code] * (cent[j][d] - 64) for j < m, the
 * centroids 2 * row bytes apart, their components + 64 in [1, 127], |lut|
 * <= 64. The row's nibbles become int8 levels once (vpshufb); then per
 * centroid vpmaddubsw (unsigned centroid x signed level: a pair sums to at
 * most 2 * 127 * 64), two of them added in int16 (at most 32512, no
 * overflow), widened by vpmaddwd; the offset comes off at the end as
 * 64 * (sum of the levels). Four centroids at a time share each load of
 * the levels. 2 * row is a multiple of 64: the blocks come in pairs. */
void idx_dot_c8_avx2(const int8_t *lv, const uint8_t *code, size_t row, const uint8_t *cent, int m,
                     int32_t *out)
{
    const __m256i lut = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)lv));
    const __m256i m4 = _mm256_set1_epi8(15), ones = _mm256_set1_epi16(1), one8 = _mm256_set1_epi8(1);
    size_t crow = 2 * row;
    _Alignas(32) int8_t L[IDX_MAX_DIM + 64];
    __m256i ls = _mm256_setzero_si256();
    for (size_t o = 0; o < row; o += 32) {
        __m256i b = _mm256_loadu_si256((const __m256i *)(code + o));
        __m256i lo = _mm256_shuffle_epi8(lut, _mm256_and_si256(b, m4));
        __m256i hi = _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(b, 4), m4));
        _mm256_store_si256((__m256i *)(L + 2 * o), lo);
        _mm256_store_si256((__m256i *)(L + 2 * o + 32), hi);
        __m256i s = _mm256_add_epi16(_mm256_maddubs_epi16(one8, lo), _mm256_maddubs_epi16(one8, hi));
        ls = _mm256_add_epi32(ls, _mm256_madd_epi16(s, ones));
    }
    int32_t off = 64 * hsum_epi32(ls);
#define PAIR(c, t, l0, l1)                                                                          \
    _mm256_madd_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(_mm256_loadu_si256((const __m256i *)((c) + (t))), l0), \
                                       _mm256_maddubs_epi16(_mm256_loadu_si256((const __m256i *)((c) + (t) + 32)), l1)), \
                      ones)
    int j = 0;
    for (; j + 4 <= m; j += 4) {
        const uint8_t *c0 = cent + (size_t)j * crow, *c1 = c0 + crow, *c2 = c1 + crow, *c3 = c2 + crow;
        __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
        for (size_t t = 0; t < crow; t += 64) {
            __m256i l0 = _mm256_load_si256((const __m256i *)(L + t)), l1 = _mm256_load_si256((const __m256i *)(L + t + 32));
            a0 = _mm256_add_epi32(a0, PAIR(c0, t, l0, l1));
            a1 = _mm256_add_epi32(a1, PAIR(c1, t, l0, l1));
            a2 = _mm256_add_epi32(a2, PAIR(c2, t, l0, l1));
            a3 = _mm256_add_epi32(a3, PAIR(c3, t, l0, l1));
        }
        __m256i t4 = _mm256_hadd_epi32(_mm256_hadd_epi32(a0, a1), _mm256_hadd_epi32(a2, a3));
        __m128i s = _mm_add_epi32(_mm256_castsi256_si128(t4), _mm256_extracti128_si256(t4, 1));
        _mm_storeu_si128((__m128i *)(out + j), _mm_sub_epi32(s, _mm_set1_epi32(off)));
    }
    for (; j < m; j++) {
        const uint8_t *c = cent + (size_t)j * crow;
        __m256i a = _mm256_setzero_si256();
        for (size_t t = 0; t < crow; t += 64)
            a = _mm256_add_epi32(a, PAIR(c, t, _mm256_load_si256((const __m256i *)(L + t)),
                                         _mm256_load_si256((const __m256i *)(L + t + 32))));
        out[j] = hsum_epi32(a) - off;
    }
#undef PAIR
}

/* sum[0..8) += (float)v[0..8) * scale (a product, then a sum: the scalar
 * reference's bits). */
static inline void acc8(float *sum, __m128i v, __m256 scale)
{
    __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v)), scale);
    _mm256_storeu_ps(sum, _mm256_add_ps(_mm256_loadu_ps(sum), f));
}

void idx_acc_u4_avx2(const int8_t *lv, const uint8_t *code, size_t row, float scale, float *sum)
{
    const __m256i lut = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)lv));
    const __m256i m4 = _mm256_set1_epi8(15);
    const __m256 sc = _mm256_set1_ps(scale);
    for (size_t o = 0; o < row; o += 32, sum += 64) {
        __m256i b = _mm256_loadu_si256((const __m256i *)(code + o));
        __m256i lo = _mm256_shuffle_epi8(lut, _mm256_and_si256(b, m4));
        __m256i hi = _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(b, 4), m4));
        __m128i l0 = _mm256_castsi256_si128(lo), l1 = _mm256_extracti128_si256(lo, 1);
        __m128i h0 = _mm256_castsi256_si128(hi), h1 = _mm256_extracti128_si256(hi, 1);
        acc8(sum, l0, sc);
        acc8(sum + 8, _mm_srli_si128(l0, 8), sc);
        acc8(sum + 16, l1, sc);
        acc8(sum + 24, _mm_srli_si128(l1, 8), sc);
        acc8(sum + 32, h0, sc);
        acc8(sum + 40, _mm_srli_si128(h0, 8), sc);
        acc8(sum + 48, h1, sc);
        acc8(sum + 56, _mm_srli_si128(h1, 8), sc);
    }
}

static inline float hsum_ps(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

void idx_dot_f32_avx2(const float *q, const float *vecs, int dim, int n, float *out)
{
    static const int m[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
    int tail = dim & 7, body = dim - tail;
    __m256i tm = _mm256_loadu_si256((const __m256i *)(m + 8 - tail));
    __m256 qt = _mm256_maskload_ps(q + body, tm);
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        const float *v0 = vecs + (size_t)i * dim, *v1 = v0 + dim, *v2 = v1 + dim, *v3 = v2 + dim;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int d = 0; d < body; d += 8) {
            __m256 qv = _mm256_loadu_ps(q + d);
            a0 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(v0 + d), a0);
            a1 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(v1 + d), a1);
            a2 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(v2 + d), a2);
            a3 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(v3 + d), a3);
        }
        if (tail) {
            a0 = _mm256_fmadd_ps(qt, _mm256_maskload_ps(v0 + body, tm), a0);
            a1 = _mm256_fmadd_ps(qt, _mm256_maskload_ps(v1 + body, tm), a1);
            a2 = _mm256_fmadd_ps(qt, _mm256_maskload_ps(v2 + body, tm), a2);
            a3 = _mm256_fmadd_ps(qt, _mm256_maskload_ps(v3 + body, tm), a3);
        }
        out[i] = hsum_ps(a0);
        out[i + 1] = hsum_ps(a1);
        out[i + 2] = hsum_ps(a2);
        out[i + 3] = hsum_ps(a3);
    }
    for (; i < n; i++) {
        const float *v = vecs + (size_t)i * dim;
        __m256 a = _mm256_setzero_ps();
        for (int d = 0; d < body; d += 8)
            a = _mm256_fmadd_ps(_mm256_loadu_ps(q + d), _mm256_loadu_ps(v + d), a);
        if (tail)
            a = _mm256_fmadd_ps(qt, _mm256_maskload_ps(v + body, tm), a);
        out[i] = hsum_ps(a);
    }
}
