/* idx_avx2.c - AVX2 versions of the index kernels (see idx_kernel in
 * idx.h). Compiled with -mavx2 -mfma and only called after idx.c found
 * those features. Tested against the scalar references in tests/test_idx.c:
 * the 4-bit and int8 centroid dot products are exact, and the k-means
 * accumulation and the encoder do the reference's float operations in its
 * order, so all of those must be equal bit for bit; the float32 dot
 * products differ by rounding only. */
#include "idx.h"
#include "idx_simd.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

/* q . x for the 64 components of one 32-byte block of a row, as 8 int32
 * partial sums, plus 64 * (the block's sum of q). The nibbles become
 * unsigned levels lut + 64 in [0, 128] by vpshufb (a 16-entry table per
 * 128-bit lane), so vpmaddubsw (unsigned x signed bytes -> int16 pairs) takes
 * them with q as it is: no sign or absolute value per row. With |q| <= 63 a
 * pair sums to at most 2 * 128 * 63 = 16128, so the two halves of the block
 * add in int16 (at most 32256) before one vpmaddwd by 1 widens them. The
 * caller takes 64 * sum(q) off. q0: components 0-31 of the block (the low
 * nibbles), q1: 32-63 (the high ones). */
static inline __m256i dot64(__m256i ulut, __m256i q0, __m256i q1, const uint8_t *r)
{
    const __m256i m4 = _mm256_set1_epi8(15), ones = _mm256_set1_epi16(1);
    __m256i b = _mm256_loadu_si256((const __m256i *)r);
    __m256i lo = _mm256_shuffle_epi8(ulut, _mm256_and_si256(b, m4));
    __m256i hi = _mm256_shuffle_epi8(ulut, _mm256_and_si256(_mm256_srli_epi16(b, 4), m4));
    return _mm256_madd_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(lo, q0), _mm256_maddubs_epi16(hi, q1)),
                             ones);
}

static inline int32_t hsum_epi32(__m256i v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

static inline __attribute__((always_inline)) void
dot_u4(const int8_t *q, const int8_t *lv, const uint8_t *codes, size_t row, const uint32_t *slots,
       int n, int32_t *out, const int nta)
{
    const int ahead = nta ? AHEAD_NTA : AHEAD_T0;
    const __m256i ulut = _mm256_add_epi8(_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)lv)),
                                         _mm256_set1_epi8(64));
    /* 64 * sum(q), the offset the unsigned levels add to every row */
    const __m256i one8 = _mm256_set1_epi8(1), ones = _mm256_set1_epi16(1);
    __m256i qs = _mm256_setzero_si256();
    for (size_t o = 0; o < 2 * row; o += 32) {
        __m256i qv = _mm256_loadu_si256((const __m256i *)(q + o));
        qs = _mm256_add_epi32(qs, _mm256_madd_epi16(_mm256_maddubs_epi16(one8, qv), ones));
    }
    const int32_t off = 64 * hsum_epi32(qs);
    const __m128i off4 = _mm_set1_epi32(off);
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        if (i + ahead + 4 <= n)
            for (int j = 0; j < 4; j++)
                prefetch_row(codes + (size_t)slots[i + ahead + j] * row, row, nta);
        const uint8_t *r0 = codes + (size_t)slots[i] * row;
        const uint8_t *r1 = codes + (size_t)slots[i + 1] * row;
        const uint8_t *r2 = codes + (size_t)slots[i + 2] * row;
        const uint8_t *r3 = codes + (size_t)slots[i + 3] * row;
        __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
        for (size_t o = 0; o < row; o += 32) {
            __m256i q0 = _mm256_loadu_si256((const __m256i *)(q + 2 * o));
            __m256i q1 = _mm256_loadu_si256((const __m256i *)(q + 2 * o + 32));
            a0 = _mm256_add_epi32(a0, dot64(ulut, q0, q1, r0 + o));
            a1 = _mm256_add_epi32(a1, dot64(ulut, q0, q1, r1 + o));
            a2 = _mm256_add_epi32(a2, dot64(ulut, q0, q1, r2 + o));
            a3 = _mm256_add_epi32(a3, dot64(ulut, q0, q1, r3 + o));
        }
        /* Four horizontal sums at once: lanes end up as a0 a1 a2 a3. */
        __m256i t = _mm256_hadd_epi32(_mm256_hadd_epi32(a0, a1), _mm256_hadd_epi32(a2, a3));
        __m128i s = _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
        _mm_storeu_si128((__m128i *)(out + i), _mm_sub_epi32(s, off4));
    }
    for (; i < n; i++) {
        const uint8_t *r = codes + (size_t)slots[i] * row;
        __m256i a = _mm256_setzero_si256();
        for (size_t o = 0; o < row; o += 32) {
            __m256i q0 = _mm256_loadu_si256((const __m256i *)(q + 2 * o));
            __m256i q1 = _mm256_loadu_si256((const __m256i *)(q + 2 * o + 32));
            a = _mm256_add_epi32(a, dot64(ulut, q0, q1, r + o));
        }
        out[i] = hsum_epi32(a) - off;
    }
}

void idx_dot_u4_avx2(const int8_t *q, const int8_t *lv, const uint8_t *codes, size_t row,
                     const uint32_t *slots, int n, int32_t *out)
{
    dot_u4(q, lv, codes, row, slots, n, out, 0);
}

void idx_dot_u4_nta_avx2(const int8_t *q, const int8_t *lv, const uint8_t *codes, size_t row,
                         const uint32_t *slots, int n, int32_t *out)
{
    dot_u4(q, lv, codes, row, slots, n, out, 1);
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
    const __m256i m4 = _mm256_set1_epi8(15), ones = _mm256_set1_epi16(1),
                  one8 = _mm256_set1_epi8(1);
    size_t crow = 2 * row;
    _Alignas(32) int8_t L[IDX_MAX_DIM + 64];
    __m256i ls = _mm256_setzero_si256();
    for (size_t o = 0; o < row; o += 32) {
        __m256i b = _mm256_loadu_si256((const __m256i *)(code + o));
        __m256i lo = _mm256_shuffle_epi8(lut, _mm256_and_si256(b, m4));
        __m256i hi = _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(b, 4), m4));
        _mm256_store_si256((__m256i *)(L + 2 * o), lo);
        _mm256_store_si256((__m256i *)(L + 2 * o + 32), hi);
        __m256i s =
            _mm256_add_epi16(_mm256_maddubs_epi16(one8, lo), _mm256_maddubs_epi16(one8, hi));
        ls = _mm256_add_epi32(ls, _mm256_madd_epi16(s, ones));
    }
    int32_t off = 64 * hsum_epi32(ls);
#define PAIR(c, t, l0, l1)                                                                         \
    _mm256_madd_epi16(                                                                             \
        _mm256_add_epi16(                                                                          \
            _mm256_maddubs_epi16(_mm256_loadu_si256((const __m256i *)((c) + (t))), l0),            \
            _mm256_maddubs_epi16(_mm256_loadu_si256((const __m256i *)((c) + (t) + 32)), l1)),      \
        ones)
    int j = 0;
    for (; j + 4 <= m; j += 4) {
        const uint8_t *c0 = cent + (size_t)j * crow, *c1 = c0 + crow, *c2 = c1 + crow,
                      *c3 = c2 + crow;
        __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
        for (size_t t = 0; t < crow; t += 64) {
            __m256i l0 = _mm256_load_si256((const __m256i *)(L + t)),
                    l1 = _mm256_load_si256((const __m256i *)(L + t + 32));
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

/* encode_ref in idx.c, the same operations in the same order: |v - c|^2
 * in double, lane i of a 4-double accumulator = the reference's partial
 * sum i; each component's level as the number of thresholds 2|t| reaches
 * (the midpoints between the levels, times 2, are the integers below:
 * the reference's table on (int)2|t| gives the same count); r . LUT[code]
 * in 8 float lanes, lane i = the reference's acc[i]. */
float idx_encode_avx2(const float *v, const float *c, int dim, size_t row, uint8_t *code)
{
    static const int tail[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
    memset(code, 0x88, row);
    __m256d s4 = _mm256_setzero_pd();
    int d = 0;
    for (; d + 8 <= dim; d += 8) {
        __m256 t = _mm256_loadu_ps(v + d);
        if (c)
            t = _mm256_sub_ps(t, _mm256_loadu_ps(c + d));
        __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(t)),
                hi = _mm256_cvtps_pd(_mm256_extractf128_ps(t, 1));
        s4 = _mm256_add_pd(s4, _mm256_mul_pd(lo, lo));
        s4 = _mm256_add_pd(s4, _mm256_mul_pd(hi, hi));
    }
    if (d + 4 <= dim) {
        __m128 t = _mm_loadu_ps(v + d);
        if (c)
            t = _mm_sub_ps(t, _mm_loadu_ps(c + d));
        __m256d t4 = _mm256_cvtps_pd(t);
        s4 = _mm256_add_pd(s4, _mm256_mul_pd(t4, t4));
        d += 4;
    }
    double a[4];
    _mm256_storeu_pd(a, s4);
    for (; d < dim; d++)
        a[0] += (double)(v[d] - (c ? c[d] : 0)) * (v[d] - (c ? c[d] : 0));
    double ss = (a[0] + a[1]) + (a[2] + a[3]);
    float inv = (float)(46.476 / sqrt(ss / dim));
    if (!(inv < INFINITY))
        return 0;
    const __m256 vinv = _mm256_set1_ps(inv), two = _mm256_set1_ps(2), zero = _mm256_setzero_ps();
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256 lutpos = _mm256_setr_ps(6, 18, 31, 44, 58, 75, 96, 127);
    const __m256i eight = _mm256_set1_epi32(8), seven = _mm256_set1_epi32(7);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    static const float thr[7] = {24, 49, 75, 102, 133, 171, 223};
    __m256 acc = _mm256_setzero_ps();
    for (int b0 = 0; b0 < dim; b0 += 64) {
        __m256i nib[8];
        for (int q = 0; q < 8; q++) {
            int at = b0 + 8 * q, m = dim - at;
            __m256 r;
            if (m >= 8) {
                r = _mm256_loadu_ps(v + at);
                if (c)
                    r = _mm256_sub_ps(r, _mm256_loadu_ps(c + at));
            } else if (m > 0) {
                __m256i mk = _mm256_loadu_si256((const __m256i *)(tail + 8 - m));
                r = _mm256_maskload_ps(v + at, mk);
                if (c)
                    r = _mm256_sub_ps(r, _mm256_maskload_ps(c + at, mk));
            } else {
                r = zero;
            }
            __m256 t = _mm256_mul_ps(r, vinv);
            __m256 a2 = _mm256_mul_ps(_mm256_and_ps(t, absmask), two);
            __m256i k = _mm256_setzero_si256();
            for (int j = 0; j < 7; j++) /* each mask is -1 where reached */
                k = _mm256_sub_epi32(
                    k, _mm256_castps_si256(_mm256_cmp_ps(a2, _mm256_set1_ps(thr[j]), _CMP_GE_OQ)));
            __m256 pos = _mm256_cmp_ps(t, zero, _CMP_GE_OQ);
            __m256 lv = _mm256_permutevar8x32_ps(lutpos, k);
            lv = _mm256_blendv_ps(_mm256_sub_ps(zero, lv), lv, pos);
            acc = _mm256_add_ps(acc, _mm256_mul_ps(r, lv));
            nib[q] = _mm256_blendv_epi8(_mm256_sub_epi32(seven, k), _mm256_add_epi32(eight, k),
                                        _mm256_castps_si256(pos));
        }
        /* components 0-31 to the low nibbles, 32-63 to the high ones */
        __m256i lo = _mm256_packus_epi16(_mm256_packs_epi32(nib[0], nib[1]),
                                         _mm256_packs_epi32(nib[2], nib[3]));
        __m256i hi = _mm256_packus_epi16(_mm256_packs_epi32(nib[4], nib[5]),
                                         _mm256_packs_epi32(nib[6], nib[7]));
        lo = _mm256_permutevar8x32_epi32(lo, order);
        hi = _mm256_permutevar8x32_epi32(hi, order);
        _mm256_storeu_si256((__m256i *)(code + b0 / 2),
                            _mm256_or_si256(lo, _mm256_slli_epi16(hi, 4)));
    }
    float l[8];
    _mm256_storeu_ps(l, acc);
    double rl = (((double)l[0] + l[1]) + ((double)l[2] + l[3])) +
                (((double)l[4] + l[5]) + ((double)l[6] + l[7]));
    return rl > 0 ? (float)(ss / rl) : 0;
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

/* score_u4 (idx.h): lane k of one accumulator is the reference's partial
 * sum k. Per 4 bytes of the row: lanes 0-3 take their low nibbles with
 * components 4i..4i+3 of the block's first half, lanes 4-7 their high
 * nibbles with the same of its second half; the table's 16 floats are
 * looked up as two 8-entry permutes and a blend on bit 3. A product, then
 * a sum (no fused multiply-add): the reference's bits. */
float idx_score_u4_avx2(const float *q, const float *lut, const uint8_t *r, int dim)
{
    const __m256 l0 = _mm256_loadu_ps(lut), l1 = _mm256_loadu_ps(lut + 8);
    const __m256i seven = _mm256_set1_epi32(7);
    __m256 acc = _mm256_setzero_ps();
    int b0 = 0;
    for (; b0 + 64 <= dim; b0 += 64, r += 32) {
        const float *ql = q + b0, *qh = q + b0 + 32;
        for (int j = 0; j < 32; j += 4) {
            uint32_t w;
            memcpy(&w, r + j, 4);
            uint64_t t = (uint64_t)(w & 0x0f0f0f0fu) | (uint64_t)((w >> 4) & 0x0f0f0f0fu) << 32;
            __m256i ix = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)t));
            __m256 v = _mm256_blendv_ps(_mm256_permutevar8x32_ps(l0, ix), _mm256_permutevar8x32_ps(l1, ix),
                                        _mm256_castsi256_ps(_mm256_cmpgt_epi32(ix, seven)));
            __m256 qv = _mm256_set_m128(_mm_loadu_ps(qh + j), _mm_loadu_ps(ql + j));
            acc = _mm256_add_ps(acc, _mm256_mul_ps(qv, v));
        }
    }
    _Alignas(32) float a[8];
    _mm256_store_ps(a, acc);
    for (int d = b0; d < dim; d++) { /* a last, partial block */
        int dd = d - b0;
        uint8_t b = r[(dd >> 6) * 32 + (dd & 31)];
        a[0] += q[d] * lut[dd & 32 ? b >> 4 : b & 15];
    }
    return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}
