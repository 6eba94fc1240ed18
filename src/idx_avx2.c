/* idx_avx2.c - AVX2 versions of the index scan kernels (see idx_kernel in
 * idx.h). Compiled with -mavx2 -mfma (which also gives POPCNT) and only
 * called after idx.c found those features. Tested against the scalar
 * references in tests/test_idx.c: the int8 and Hamming results are exact, so
 * they must be equal; the float32 dot products differ by rounding only. */
#include "idx.h"

#include <immintrin.h>

/* Rows ahead of the one being scored whose cache lines are prefetched: the
 * int8 stage reads candidate rows in ascending but scattered order, which
 * the hardware prefetcher does not follow. */
enum { PREFETCH_AHEAD = 8 };

static inline void prefetch_row(const int8_t *r, size_t dim)
{
    for (size_t o = 0; o < dim; o += 64)
        _mm_prefetch((const char *)r + o, _MM_HINT_T0);
}

/* q . x for 32 int8 pairs as 8 int32 partial sums: |q| * (x * sign(q)) in
 * vpmaddubsw (unsigned x signed bytes -> int16 pairs). With |q| <= 127 and
 * x in [-128, 127] a pair sums to at most 2 * 127 * 128 = 32512, so the
 * saturating add never saturates; vpmaddwd by 1 widens to int32. */
static inline __m256i dot32(__m256i aq, __m256i qv, const int8_t *r, __m256i ones)
{
    __m256i x = _mm256_loadu_si256((const __m256i *)r);
    return _mm256_madd_epi16(_mm256_maddubs_epi16(aq, _mm256_sign_epi8(x, qv)), ones);
}

static inline int32_t hsum_epi32(__m256i v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

/* Rows are read in whole 32-byte vectors: the bytes past dim belong to the
 * next row (or the PAD after the last one) and meet zeros in q. */
void idx_dot_i8_avx2(const int8_t *q, const int8_t *codes, size_t dim, const uint32_t *slots,
                     int n, int32_t *out)
{
    const __m256i ones = _mm256_set1_epi16(1);
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        if (i + PREFETCH_AHEAD + 4 <= n)
            for (int j = 0; j < 4; j++)
                prefetch_row(codes + (size_t)slots[i + PREFETCH_AHEAD + j] * dim, dim);
        const int8_t *r0 = codes + (size_t)slots[i] * dim;
        const int8_t *r1 = codes + (size_t)slots[i + 1] * dim;
        const int8_t *r2 = codes + (size_t)slots[i + 2] * dim;
        const int8_t *r3 = codes + (size_t)slots[i + 3] * dim;
        __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
        for (size_t d = 0; d < dim; d += 32) {
            __m256i qv = _mm256_loadu_si256((const __m256i *)(q + d));
            __m256i aq = _mm256_abs_epi8(qv);
            a0 = _mm256_add_epi32(a0, dot32(aq, qv, r0 + d, ones));
            a1 = _mm256_add_epi32(a1, dot32(aq, qv, r1 + d, ones));
            a2 = _mm256_add_epi32(a2, dot32(aq, qv, r2 + d, ones));
            a3 = _mm256_add_epi32(a3, dot32(aq, qv, r3 + d, ones));
        }
        /* Four horizontal sums at once: lanes end up as a0 a1 a2 a3. */
        __m256i t = _mm256_hadd_epi32(_mm256_hadd_epi32(a0, a1), _mm256_hadd_epi32(a2, a3));
        __m128i s = _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
        _mm_storeu_si128((__m128i *)(out + i), s);
    }
    for (; i < n; i++) {
        const int8_t *r = codes + (size_t)slots[i] * dim;
        __m256i a = _mm256_setzero_si256();
        for (size_t d = 0; d < dim; d += 32) {
            __m256i qv = _mm256_loadu_si256((const __m256i *)(q + d));
            a = _mm256_add_epi32(a, dot32(_mm256_abs_epi8(qv), qv, r + d, ones));
        }
        out[i] = hsum_epi32(a);
    }
}

/* Scalar POPCNT (four per cycle on Zen 3) keeps up with memory: at 48 bytes
 * per vector the scan is bound by DRAM bandwidth, not by the counting. */
uint64_t idx_hamming_avx2(const uint64_t *q, const uint64_t *bits, int words, uint32_t first,
                          int n, int bound, uint16_t *out)
{
    const uint64_t *b = bits + (size_t)first * words;
    uint64_t m = 0;
    if (words == 6) { /* dim 321..384, the model's case: fully unrolled */
        uint64_t q0 = q[0], q1 = q[1], q2 = q[2], q3 = q[3], q4 = q[4], q5 = q[5];
        for (int i = 0; i < n; i++, b += 6) {
            _mm_prefetch((const char *)(b + 6 * 128), _MM_HINT_T0);
            long long s = _mm_popcnt_u64(q0 ^ b[0]) + _mm_popcnt_u64(q1 ^ b[1]) +
                          _mm_popcnt_u64(q2 ^ b[2]) + _mm_popcnt_u64(q3 ^ b[3]) +
                          _mm_popcnt_u64(q4 ^ b[4]) + _mm_popcnt_u64(q5 ^ b[5]);
            out[i] = (uint16_t)s;
            m |= (uint64_t)(s <= bound) << i;
        }
        return m;
    }
    for (int i = 0; i < n; i++, b += words) {
        long long s = 0;
        for (int w = 0; w < words; w++)
            s += _mm_popcnt_u64(q[w] ^ b[w]);
        out[i] = (uint16_t)s;
        m |= (uint64_t)(s <= bound) << i;
    }
    return m;
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
