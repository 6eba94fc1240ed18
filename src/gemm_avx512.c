/* gemm_avx512.c - matrix product on packed weights, AVX-512F.
 *
 *   C[M,N] = A[M,K] . W[N,K]^T (+ bias[N]), W packed by k_pack
 *
 * The same product and the same packed strips as gemm_avx2.c (read its
 * comment first); what differs is the register blocking. A strip row (16
 * floats) is one zmm, so a tile spans two strips, 32 columns: for each k it
 * loads row k of both strips (two streams, one line each) and broadcasts
 * A[i, k] for each of its mr rows, up to 12 (24 accumulators + 2 loads + 1
 * broadcast of the 32 zmm registers). Per k that is 2 + mr loads for 2 * mr
 * FMAs, twice the AVX2 tile's arithmetic per load at twice the width. Tiles
 * of few rows keep 2 or 4 partial sums over k, for >= 8 FMAs in flight
 * (latency 4, 2 pipes). A query of ~20 tokens is two row tiles of 10.
 *
 * A row block whose tiles have more than 8 rows is read from a per-thread
 * copy, k-major per tile (apack): with one row pointer each, 9-12 pointers
 * spilled, and this made the tile of 12 rows run at ~90% of OpenBLAS's
 * sgemm at M = 1024; packed, it is level with it (bench_gemm: 179-183 ->
 * 191-205 GFLOP/s; bench_embed's batch +3.5-5.6%). The copy is the same
 * numbers in the same order, so the results do not change.
 *
 * The columns past N in the last strip are masked (__mmask16) on the bias,
 * the loads of C and the stores, never written. Compiled with -mavx512f...;
 * only called after k_init found AVX-512 (F, BW, DQ, VL) and FMA. Tested
 * against k_linear_p_ref in tests/test_gemm.c, like every variant. */
#include "kernels.h"

#include <immintrin.h>
#include <stddef.h>

#define MR_MAX 12 /* rows per tile */
#define NR 16     /* columns per strip: one zmm */
/* Strip rows per pass: two strips x 192 rows x 64 bytes = 24 KiB, which stays
 * in L1 while the second row tile re-reads it (bench_gemm: 384 within noise
 * of it at M = 19 and 256). */
#define KC 192
#define MC 96 /* rows of A per block (96 x 192 floats = 72 KiB, in L2) */
/* Strip pairs ahead of the current one that the first row tile prefetches. */
#define PF_PAIRS 2

/* One MR x (16 * NS) tile over K rows of the strips b0 (and b1 when NS = 2),
 * rows NR floats apart. Every argument named in capitals is a compile-time
 * constant after inlining. `mask` covers the last strip's columns below N.
 * Prefetches pf0/pf1 + k * NR for each k. Stores bias + sum (bias may be
 * NULL), or C + sum when `accumulate`. */
static inline __attribute__((always_inline, no_sanitize_address)) void
tile(const int MR, const int NS, const int KU, const int PK, int K, const float *A, size_t lda,
     const float *b0, const float *b1, const float *bias, float *C, size_t ldc, __mmask16 mask,
     const float *pf0, const float *pf1, int accumulate)
{
    __m512 acc[4][MR_MAX][2];
    const float *bs[2] = {b0, b1};
#pragma GCC unroll 4
    for (int u = 0; u < KU; u++)
#pragma GCC unroll 12
        for (int i = 0; i < MR; i++)
#pragma GCC unroll 2
            for (int j = 0; j < NS; j++)
                acc[u][i][j] = _mm512_setzero_ps();

    int k = 0;
    for (; k + KU <= K; k += KU) {
#pragma GCC unroll 4
        for (int u = 0; u < KU; u++) {
            _mm_prefetch((const char *)(pf0 + (size_t)(k + u) * NR), _MM_HINT_T0);
            if (NS == 2)
                _mm_prefetch((const char *)(pf1 + (size_t)(k + u) * NR), _MM_HINT_T0);
            __m512 w[2];
#pragma GCC unroll 2
            for (int j = 0; j < NS; j++)
                w[j] = _mm512_loadu_ps(bs[j] + (size_t)(k + u) * NR);
#pragma GCC unroll 12
            for (int i = 0; i < MR; i++) {
                __m512 a = _mm512_set1_ps(PK ? A[(size_t)(k + u) * MR + i] : A[(size_t)i * lda + k + u]);
#pragma GCC unroll 2
                for (int j = 0; j < NS; j++)
                    acc[u][i][j] = _mm512_fmadd_ps(a, w[j], acc[u][i][j]);
            }
        }
    }
    for (; k < K; k++) {
        __m512 w[2];
#pragma GCC unroll 2
        for (int j = 0; j < NS; j++)
            w[j] = _mm512_loadu_ps(bs[j] + (size_t)k * NR);
#pragma GCC unroll 12
        for (int i = 0; i < MR; i++) {
            __m512 a = _mm512_set1_ps(PK ? A[(size_t)k * MR + i] : A[(size_t)i * lda + k]);
#pragma GCC unroll 2
            for (int j = 0; j < NS; j++)
                acc[0][i][j] = _mm512_fmadd_ps(a, w[j], acc[0][i][j]);
        }
    }

    /* Only the last strip of the tile can be partial. */
    __mmask16 mk[2] = {NS == 2 ? (__mmask16)0xffff : mask, mask};
    __m512 bv[2];
#pragma GCC unroll 2
    for (int j = 0; j < NS; j++)
        bv[j] = (!accumulate && bias) ? _mm512_maskz_loadu_ps(mk[j], bias + 16 * j) : _mm512_setzero_ps();
#pragma GCC unroll 12
    for (int i = 0; i < MR; i++) {
        float *c = C + (size_t)i * ldc;
#pragma GCC unroll 2
        for (int j = 0; j < NS; j++) {
            __m512 s = accumulate ? _mm512_maskz_loadu_ps(mk[j], c + 16 * j) : bv[j];
#pragma GCC unroll 4
            for (int u = 0; u < KU; u++)
                s = _mm512_add_ps(s, acc[u][i][j]);
            _mm512_mask_storeu_ps(c + 16 * j, mk[j], s);
        }
    }
}

/* Not instrumented by AddressSanitizer, for the reason gemm_avx2.c gives;
 * their reads stay inside the strips (padded to 16 columns) and the rows of
 * A the caller passes, and tests/test_gemm.c checks C's gaps. */
#define NO_ASAN __attribute__((no_sanitize_address))

typedef void (*tile_fn)(int K, const float *A, size_t lda, const float *b0, const float *b1,
                        const float *bias, float *C, size_t ldc, __mmask16 mask, const float *pf0,
                        const float *pf1, int accumulate);

/* Partial sums over k: at least 8 independent FMA chains. */
#define KU_FOR(mr, ns) ((mr) * (ns) >= 8 ? 1 : (mr) * (ns) >= 4 ? 2 : 4)

/* PK: A comes packed (apack: the tile's rows k-major, lda unused) or as
 * the caller's rows, lda floats apart. */
#define TILE(mr, ns, pk, name)                                                                     \
    NO_ASAN static void name(int K, const float *A, size_t lda, const float *b0, const float *b1,  \
                             const float *bias, float *C, size_t ldc, __mmask16 mask,              \
                             const float *pf0, const float *pf1, int acc)                          \
    {                                                                                              \
        tile(mr, ns, KU_FOR(mr, ns), pk, K, A, lda, b0, b1, bias, C, ldc, mask, pf0, pf1, acc);   \
    }
#define TILES(mr) TILE(mr, 1, 1, tile_##mr##_1) TILE(mr, 2, 1, tile_##mr##_2)
#define TILES_D(mr) TILE(mr, 1, 0, tile_d##mr##_1) TILE(mr, 2, 0, tile_d##mr##_2)
TILES(1)
TILES(2)
TILES(3)
TILES(4)
TILES(5)
TILES(6)
TILES(7)
TILES(8)
TILES(9)
TILES(10)
TILES(11)
TILES(12)
TILES_D(1)
TILES_D(2)
TILES_D(3)
TILES_D(4)
TILES_D(5)
TILES_D(6)
TILES_D(7)
TILES_D(8)

/* [mr - 1][strips - 1]: on packed rows of A */
static const tile_fn tiles[MR_MAX][2] = {
    {tile_1_1, tile_1_2},   {tile_2_1, tile_2_2},   {tile_3_1, tile_3_2},
    {tile_4_1, tile_4_2},   {tile_5_1, tile_5_2},   {tile_6_1, tile_6_2},
    {tile_7_1, tile_7_2},   {tile_8_1, tile_8_2},   {tile_9_1, tile_9_2},
    {tile_10_1, tile_10_2}, {tile_11_1, tile_11_2}, {tile_12_1, tile_12_2},
};
/* Tiles of up to DIRECT_MR rows read A in place: their row pointers fit in
 * registers, and a query's few rows are not worth packing (bench_gemm, M =
 * 8 and 16: packing cost 2-4% there, while tiles of 9-12 rows, whose row
 * pointers spilled, gained 4-15% from it). */
#define DIRECT_MR 8
static const tile_fn tiles_d[DIRECT_MR][2] = {
    {tile_d1_1, tile_d1_2}, {tile_d2_1, tile_d2_2}, {tile_d3_1, tile_d3_2}, {tile_d4_1, tile_d4_2},
    {tile_d5_1, tile_d5_2}, {tile_d6_1, tile_d6_2}, {tile_d7_1, tile_d7_2}, {tile_d8_1, tile_d8_2},
};

void k_linear_p_avx512(int M, int N, int K, const float *A, int lda, const float *P,
                       const float *bias, float *C, int ldc);
void k_linear_p_avx512(int M, int N, int K, const float *A, int lda, const float *P,
                       const float *bias, float *C, int ldc)
{
    if (M <= 0 || N <= 0)
        return;
    static _Thread_local float apack[MC * KC] __attribute__((aligned(64)));
    for (int m0 = 0; m0 < M; m0 += MC) {
        int mb = M - m0 < MC ? M - m0 : MC;
        const float *Ab = A + (size_t)m0 * lda;
        float *Cb = C + (size_t)m0 * ldc;
        /* Balanced row tiles: nb tiles of `base` or `base + 1` rows. */
        int nb = (mb + MR_MAX - 1) / MR_MAX;
        int base = mb / nb, extra = mb % nb;
        int pack = base + (extra > 0) > DIRECT_MR;
        const tile_fn(*tf)[2] = pack ? tiles : tiles_d;
        /* K = 0 still makes one pass, which writes the bias (or zeros). */
        for (int k0 = 0; k0 < K || k0 == 0; k0 += KC) {
            int kc = K - k0 < KC ? K - k0 : KC;
            /* The block's rows of A, k-major per row tile (tile t's mr rows
             * at apack + m * kc: element (i, k) at k * mr + i), read by every
             * strip pair: one pointer for the tile's broadcasts instead of
             * mr row pointers, which spilled. */
            for (int blk = 0, m = 0; pack && blk < nb; blk++) {
                int mr = base + (blk < extra);
                float *ap = apack + (size_t)m * kc;
                for (int i = 0; i < mr; i++) {
                    const float *ar = Ab + (size_t)(m + i) * lda + k0;
                    for (int k = 0; k < kc; k++)
                        ap[(size_t)k * mr + i] = ar[k];
                }
                m += mr;
            }
            for (int n = 0; n < N; n += 2 * NR) {
                int left = N - n < 2 * NR ? N - n : 2 * NR;
                int ns = left > NR ? 2 : 1;
                int last = left - (ns - 1) * NR; /* columns of the tile's last strip */
                __mmask16 mask = (__mmask16)(last >= 16 ? 0xffff : (1u << last) - 1);
                const float *bn = bias && k0 == 0 ? bias + n : NULL;
                const float *b0 = P + (size_t)n * K + (size_t)k0 * NR;
                const float *b1 = ns == 2 ? b0 + (size_t)NR * K : b0;
                /* The first row tile pulls in a strip pair ahead; the others
                 * re-read their own, already in L1. */
                int ahead = n + (PF_PAIRS + 1) * 2 * NR <= N;
                const float *a0 = ahead ? b0 + (size_t)PF_PAIRS * 2 * NR * K : b0;
                const float *a1 = ahead ? a0 + (size_t)NR * K : b1;
                for (int blk = 0, m = 0; blk < nb; blk++) {
                    int mr = base + (blk < extra);
                    const float *at = pack ? apack + (size_t)m * kc : Ab + (size_t)m * lda + k0;
                    tf[mr - 1][ns - 1](kc, at, (size_t)lda, b0, b1, bn, Cb + (size_t)m * ldc + n, (size_t)ldc,
                                       mask, blk == 0 ? a0 : b0, blk == 0 ? a1 : b1, k0 > 0);
                    m += mr;
                }
            }
        }
    }
}
