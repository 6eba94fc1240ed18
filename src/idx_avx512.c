/* idx_avx512.c - the 4-bit dot product (idx_kernel.dot_u4 in idx.h) with
 * AVX-512 VNNI. Compiled with the Makefile's AVX-512 flags, VNNI added per
 * function; only called after idx.c found AVX-512 F/BW/VL and VNNI. The other
 * index kernels stay the AVX2 ones (idx_avx2.c). Exact, so equal to the
 * scalar reference bit for bit (tests/test_idx.c).
 *
 * A row's 32-byte block b holds components 64b + j (low nibbles) and
 * 64b + 32 + j (high nibbles), j < 32. One zmm load takes two blocks, 128
 * components; vpshufb turns both nibble halves into unsigned levels lut + 64
 * in [0, 128], and vpdpbusd multiplies them with the signed query bytes and
 * adds each group of four products into an int32 lane: no int16 step and no
 * widening, 2 instructions of arithmetic per 128 components where the AVX2
 * kernel needs 6 per 64. The query is laid out once per call in the order
 * those two registers hold: for each pair of blocks, the low-nibble
 * components of both blocks, then the high-nibble ones. A last odd block is
 * loaded masked (nothing past the row is read), and the query bytes facing
 * its empty upper half are zero. 64 * sum(q) comes off at the end, as in
 * the AVX2 kernel. */
#include "idx.h"
#include "idx_simd.h"

#include <immintrin.h>
#include <string.h>

#define VNNI __attribute__((target("avx512vnni")))

/* The sums of a, b, c, d's 16 lanes, in lanes 0..3. */
static inline __m128i hsum4(__m512i a, __m512i b, __m512i c, __m512i d)
{
    __m256i a2 = _mm256_add_epi32(_mm512_castsi512_si256(a), _mm512_extracti64x4_epi64(a, 1));
    __m256i b2 = _mm256_add_epi32(_mm512_castsi512_si256(b), _mm512_extracti64x4_epi64(b, 1));
    __m256i c2 = _mm256_add_epi32(_mm512_castsi512_si256(c), _mm512_extracti64x4_epi64(c, 1));
    __m256i d2 = _mm256_add_epi32(_mm512_castsi512_si256(d), _mm512_extracti64x4_epi64(d, 1));
    __m256i t = _mm256_hadd_epi32(_mm256_hadd_epi32(a2, b2), _mm256_hadd_epi32(c2, d2));
    return _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
}

static inline __attribute__((always_inline)) VNNI void
dot_u4(const int8_t *q, const int8_t *lv, const uint8_t *codes, size_t row, const uint32_t *slots,
       int n, int32_t *out, const int nta)
{
    const int ahead = nta ? AHEAD_NTA : AHEAD_T0;
    size_t nz = (row + 63) / 64; /* zmm loads per row; the last one half when row % 64 */
    __mmask64 tail = row % 64 ? (__mmask64)0xffffffffu : ~(__mmask64)0;
    /* The query in register order (see the top), zero past the last block. */
    _Alignas(64) int8_t ql[IDX_MAX_DIM + 128], qh[IDX_MAX_DIM + 128];
    memset(ql, 0, 64 * nz);
    memset(qh, 0, 64 * nz);
    int32_t qsum = 0;
    for (size_t b = 0; b < row / 32; b++) {
        size_t z = b / 2, h = b % 2;
        memcpy(ql + 64 * z + 32 * h, q + 64 * b, 32);
        memcpy(qh + 64 * z + 32 * h, q + 64 * b + 32, 32);
    }
    for (size_t d = 0; d < 2 * row; d++)
        qsum += q[d];
    const __m128i off4 = _mm_set1_epi32(64 * qsum);
    const __m512i ulut = _mm512_add_epi8(_mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)lv)),
                                         _mm512_set1_epi8(64));
    const __m512i m4 = _mm512_set1_epi8(15);
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        if (i + ahead + 4 <= n)
            for (int j = 0; j < 4; j++)
                prefetch_row(codes + (size_t)slots[i + ahead + j] * row, row, nta);
        const uint8_t *r[4];
        __m512i acc[4];
        for (int j = 0; j < 4; j++) {
            r[j] = codes + (size_t)slots[i + j] * row;
            acc[j] = _mm512_setzero_si512();
        }
        for (size_t z = 0; z < nz; z++) {
            __mmask64 m = z + 1 == nz ? tail : ~(__mmask64)0;
            __m512i a = _mm512_load_si512((const void *)(ql + 64 * z));
            __m512i c = _mm512_load_si512((const void *)(qh + 64 * z));
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) {
                __m512i b = _mm512_maskz_loadu_epi8(m, r[j] + 64 * z);
                __m512i lo = _mm512_shuffle_epi8(ulut, _mm512_and_si512(b, m4));
                __m512i hi = _mm512_shuffle_epi8(ulut, _mm512_and_si512(_mm512_srli_epi16(b, 4), m4));
                acc[j] = _mm512_dpbusd_epi32(acc[j], lo, a);
                acc[j] = _mm512_dpbusd_epi32(acc[j], hi, c);
            }
        }
        _mm_storeu_si128((__m128i *)(out + i), _mm_sub_epi32(hsum4(acc[0], acc[1], acc[2], acc[3]), off4));
    }
    for (; i < n; i++) {
        const uint8_t *r = codes + (size_t)slots[i] * row;
        __m512i acc = _mm512_setzero_si512();
        for (size_t z = 0; z < nz; z++) {
            __mmask64 m = z + 1 == nz ? tail : ~(__mmask64)0;
            __m512i b = _mm512_maskz_loadu_epi8(m, r + 64 * z);
            __m512i lo = _mm512_shuffle_epi8(ulut, _mm512_and_si512(b, m4));
            __m512i hi = _mm512_shuffle_epi8(ulut, _mm512_and_si512(_mm512_srli_epi16(b, 4), m4));
            acc = _mm512_dpbusd_epi32(acc, lo, _mm512_load_si512((const void *)(ql + 64 * z)));
            acc = _mm512_dpbusd_epi32(acc, hi, _mm512_load_si512((const void *)(qh + 64 * z)));
        }
        out[i] = _mm512_reduce_add_epi32(acc) - 64 * qsum;
    }
}

VNNI void idx_dot_u4_avx512(const int8_t *q, const int8_t *lv, const uint8_t *codes, size_t row,
                            const uint32_t *slots, int n, int32_t *out)
{
    dot_u4(q, lv, codes, row, slots, n, out, 0);
}

VNNI void idx_dot_u4_nta_avx512(const int8_t *q, const int8_t *lv, const uint8_t *codes, size_t row,
                                const uint32_t *slots, int n, int32_t *out)
{
    dot_u4(q, lv, codes, row, slots, n, out, 1);
}
