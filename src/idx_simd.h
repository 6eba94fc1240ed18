/* idx_simd.h - internal to the index's SIMD files (idx_avx2.c,
 * idx_avx512.c): how the 4-bit kernels prefetch rows. */
#ifndef JM_IDX_SIMD_H
#define JM_IDX_SIMD_H

#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

/* The 4-bit stage reads a list's rows chunk by chunk (or a candidate set's
 * in ascending but scattered order), and asks for the rows `ahead` of the
 * one being scored. How to ask depends on the CPU, measured in bench_rank
 * at 1M jobs:
 *  - Zen 3 (AMD): non-temporal, 8 rows ahead. A query reads each row once,
 *    and ~15 MB of them would otherwise push the model's weights out of L3:
 *    the next query's model was 0.1-0.5 ms faster, the scan unchanged.
 *  - Intel Xeon with AVX-512 (Sapphire Rapids class): prefetchnta stalled
 *    (half the scan's cycles sat on it), and into L1 (T0) 16 rows ahead the
 *    index search at 47 lists fell from 4.8 to 2.7 ms, a warm query from 6.2
 *    to 3.8 ms and a cold one from 11.4 to 9.6 ms (medians of 3 alternated
 *    runs).
 * idx.c picks the variant (the "-nta" ones on AMD). */
enum { AHEAD_T0 = 16, AHEAD_NTA = 8 };

static inline __attribute__((always_inline)) void prefetch_row(const uint8_t *r, size_t row, int nta)
{
    for (size_t o = 0; o < row; o += 64) {
        if (nta)
            _mm_prefetch((const char *)r + o, _MM_HINT_NTA);
        else
            _mm_prefetch((const char *)r + o, _MM_HINT_T0);
    }
    if (nta)
        _mm_prefetch((const char *)r + row - 1, _MM_HINT_NTA);
    else
        _mm_prefetch((const char *)r + row - 1, _MM_HINT_T0);
}

#endif
