/* gemm_avx2.c - matrix product on packed weights, AVX2+FMA.
 *
 *   C[M,N] = A[M,K] . W[N,K]^T (+ bias[N]), W packed by k_pack
 *
 * The model's every linear layer, for any M (tokens). P holds W in 16-column
 * strips, strip s a [K][16] row-major block (kernels.h), so nothing is
 * packed per call and nothing is allocated.
 *
 * Register blocking: a tile of mr rows (1..6) x 16 columns is held in up to
 * 12 ymm accumulators; for each k the kernel loads the strip's row k (2
 * vectors, one cache line) and broadcasts A[i, k] for each of the mr rows
 * (outer product). Tiles with few accumulators keep 2 or 4 independent
 * partial sums over k so the FMA latency (4 cycles, 2 pipes on Zen 3 /
 * Skylake) is hidden.
 *
 * Loop order: blocks of MC rows of A outermost (a block, MC x KC floats,
 * stays in L2), then blocks of KC rows of the strips (C accumulates across
 * them), then strips, then row tiles, so a strip block (KC x 64 bytes, 24
 * KiB) is fetched from L3/DRAM once per row block and re-read from L1 by the
 * other row tiles. While the first row tile works on a strip it prefetches
 * the one PF_STRIPS ahead, one line per k; the strips are contiguous, so the
 * hardware prefetchers follow them too. Rows are split into balanced tiles
 * (16 = 6+5+5, 8 = 4+4) rather than 6s plus a small rest.
 *
 * The last strip's padding is never written to C: columns past N go through
 * masked loads and stores. Compiled with -mavx2 -mfma; only called after
 * k_init found those features. Tested against k_linear_p_ref in
 * tests/test_gemm.c. */
#include "kernels.h"

#include <immintrin.h>
#include <stddef.h>

#define MR_MAX 6 /* rows per tile: 6 x 2 accumulators + 2 loads + 1 broadcast = 15 ymm */
#define NR 16    /* columns per tile, two ymm: one strip */
/* Strip rows per pass over N. 384 x 64 bytes = 24 KiB strip block, which
 * stays in L1 while the row tiles re-read it; one pass when K = 384, four
 * for the FFN output (K = 1536), which ran at ~65 instead of ~88 GFLOP/s
 * unblocked. */
#define KC 384
/* Rows of A per block: 96 x 384 floats = 144 KiB, in L2 while every strip
 * passes. Measured at M = 1024: 48..192 within 2% of each other, all ahead
 * of one block of every row. */
#define MC 96
/* Strips ahead of the current one that the first row tile prefetches
 * (bench_gemm, M = 19, weights from DRAM: 0..2 within noise, 4 ~3% faster). */
#define PF_STRIPS 4

/* Lanes 0..left-1 set, for the last partial vector of a row. */
static inline __m256i lane_mask(int left)
{
    static const int m[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
    return _mm256_loadu_si256((const __m256i *)(m + 8 - left));
}

/* One MR x (8 * NV) tile over K rows of B (a strip block: rows NR floats
 * apart). Every argument named in capitals is a compile-time constant after
 * inlining, so the loops unroll and acc[][][] lives in registers. When MASKED, the last of the NV
 * vectors is partial (lanes set in `mask`). KU independent sums over k hide
 * the FMA latency when MR * NV is small. Prefetches pf + k * NR for each k.
 * Stores bias + sum (bias may be NULL), or C + sum when `accumulate`. */
static inline __attribute__((always_inline, no_sanitize_address)) void
tile(const int MR, const int NV, const int KU, const int MASKED, int K, const float *A,
     size_t lda, const float *B, const float *bias, float *C, size_t ldc,
     __m256i mask, const float *pf, int accumulate)
{
    __m256 acc[4][MR_MAX][2];
#pragma GCC unroll 4
    for (int u = 0; u < KU; u++)
#pragma GCC unroll 6
        for (int i = 0; i < MR; i++)
#pragma GCC unroll 2
            for (int j = 0; j < NV; j++)
                acc[u][i][j] = _mm256_setzero_ps();

    int k = 0;
    for (; k + KU <= K; k += KU) {
#pragma GCC unroll 4
        for (int u = 0; u < KU; u++) {
            const float *b = B + (size_t)(k + u) * NR;
            _mm_prefetch((const char *)(pf + (size_t)(k + u) * NR), _MM_HINT_T0);
            __m256 w[2];
#pragma GCC unroll 2
            for (int j = 0; j < NV; j++)
                w[j] = (MASKED && j == NV - 1) ? _mm256_maskload_ps(b + 8 * j, mask)
                                               : _mm256_loadu_ps(b + 8 * j);
#pragma GCC unroll 6
            for (int i = 0; i < MR; i++) {
                __m256 a = _mm256_broadcast_ss(A + (size_t)i * lda + k + u);
#pragma GCC unroll 2
                for (int j = 0; j < NV; j++)
                    acc[u][i][j] = _mm256_fmadd_ps(a, w[j], acc[u][i][j]);
            }
        }
    }
    for (; k < K; k++) {
        const float *b = B + (size_t)k * NR;
        __m256 w[2];
#pragma GCC unroll 2
        for (int j = 0; j < NV; j++)
            w[j] = (MASKED && j == NV - 1) ? _mm256_maskload_ps(b + 8 * j, mask)
                                           : _mm256_loadu_ps(b + 8 * j);
#pragma GCC unroll 6
        for (int i = 0; i < MR; i++) {
            __m256 a = _mm256_broadcast_ss(A + (size_t)i * lda + k);
#pragma GCC unroll 2
            for (int j = 0; j < NV; j++)
                acc[0][i][j] = _mm256_fmadd_ps(a, w[j], acc[0][i][j]);
        }
    }

    __m256 bv[2];
#pragma GCC unroll 2
    for (int j = 0; j < NV; j++) {
        if (accumulate)
            continue;
        if (!bias)
            bv[j] = _mm256_setzero_ps();
        else
            bv[j] = (MASKED && j == NV - 1) ? _mm256_maskload_ps(bias + 8 * j, mask)
                                            : _mm256_loadu_ps(bias + 8 * j);
    }
#pragma GCC unroll 6
    for (int i = 0; i < MR; i++) {
        float *c = C + (size_t)i * ldc;
#pragma GCC unroll 2
        for (int j = 0; j < NV; j++) {
            __m256 s;
            if (accumulate)
                s = (MASKED && j == NV - 1) ? _mm256_maskload_ps(c + 8 * j, mask)
                                            : _mm256_loadu_ps(c + 8 * j);
            else
                s = bv[j];
#pragma GCC unroll 4
            for (int u = 0; u < KU; u++)
                s = _mm256_add_ps(s, acc[u][i][j]);
            if (MASKED && j == NV - 1)
                _mm256_maskstore_ps(c + 8 * j, mask, s);
            else
                _mm256_storeu_ps(c + 8 * j, s);
        }
    }
}

/* The tiles are not instrumented by AddressSanitizer (make asan): with a
 * shadow check on each of their loads they made the model ~7x slower
 * (test_embed under ASan 224 s against 33 s; a 64-text batch in the server
 * test 88 s), now that every product goes through them. Their reads stay
 * inside a strip row (padded to 16 columns) and the rows of A the caller
 * passes; tests/test_gemm.c checks the results of every shape and that C's
 * gaps keep a sentinel, and the callers around them are still
 * instrumented. */
#define NO_ASAN __attribute__((no_sanitize_address))

typedef void (*tile_fn)(int K, const float *A, size_t lda, const float *B,
                        const float *bias, float *C, size_t ldc, __m256i mask, const float *pf,
                        int accumulate);

/* Partial sums over k per tile height: enough accumulators for >= 8 FMAs in flight. */
#define KU_FOR(mr) ((mr) == 1 ? 4 : (mr) <= 3 ? 2 : 1)

/* Four column shapes per tile height: 16 full, 16 with a partial second
 * vector, 8 full, 8 partial. The 8-wide tiles have half the accumulators,
 * so twice the partial sums (at most 4). */
#define TILE(mr, name, nv, ku, masked)                                                      \
    NO_ASAN static void tile_##mr##_##name(int K, const float *A, size_t lda, const float *B,       \
                                   const float *bias, float *C, size_t ldc,                 \
                                   __m256i mask, const float *pf, int acc)                  \
    {                                                                                       \
        tile(mr, nv, ku, masked, K, A, lda, B, bias, C, ldc, mask, pf, acc);                \
    }
#define TILES(mr)                                                                           \
    TILE(mr, 16, 2, KU_FOR(mr), 0)                                                          \
    TILE(mr, 16m, 2, KU_FOR(mr), 1)                                                         \
    TILE(mr, 8, 1, KU_FOR(mr) * 2 > 4 ? 4 : KU_FOR(mr) * 2, 0)                              \
    TILE(mr, 8m, 1, KU_FOR(mr) * 2 > 4 ? 4 : KU_FOR(mr) * 2, 1)
TILES(1)
TILES(2)
TILES(3)
TILES(4)
TILES(5)
TILES(6)

/* [mr - 1][shape]: shape 0 = 16, 1 = 16 masked, 2 = 8, 3 = 8 masked. */
static const tile_fn tiles[MR_MAX][4] = {
    {tile_1_16, tile_1_16m, tile_1_8, tile_1_8m}, {tile_2_16, tile_2_16m, tile_2_8, tile_2_8m},
    {tile_3_16, tile_3_16m, tile_3_8, tile_3_8m}, {tile_4_16, tile_4_16m, tile_4_8, tile_4_8m},
    {tile_5_16, tile_5_16m, tile_5_8, tile_5_8m}, {tile_6_16, tile_6_16m, tile_6_8, tile_6_8m},
};

void k_linear_p_avx2(int M, int N, int K, const float *A, int lda, const float *P,
                     const float *bias, float *C, int ldc);
void k_linear_p_avx2(int M, int N, int K, const float *A, int lda, const float *P,
                     const float *bias, float *C, int ldc)
{
    if (M <= 0 || N <= 0)
        return;
    for (int m0 = 0; m0 < M; m0 += MC) {
        int mb = M - m0 < MC ? M - m0 : MC;
        const float *Ab = A + (size_t)m0 * lda;
        float *Cb = C + (size_t)m0 * ldc;
        /* Balanced row tiles: nb tiles of `base` or `base + 1` rows, at most MR_MAX. */
        int nb = (mb + MR_MAX - 1) / MR_MAX;
        int base = mb / nb, extra = mb % nb;
        /* K = 0 still makes one pass, which writes the bias (or zeros). */
        for (int k0 = 0; k0 < K || k0 == 0; k0 += KC) {
            int kc = K - k0 < KC ? K - k0 : KC;
            for (int n = 0; n < N; n += NR) {
                int left = N - n < NR ? N - n : NR;
                int shape = left == 16 ? 0 : left > 8 ? 1 : left == 8 ? 2 : 3;
                __m256i mask = lane_mask(left > 8 ? left - 8 : left);
                const float *bn = bias && k0 == 0 ? bias + n : NULL;
                const float *b = P + (size_t)n * K + (size_t)k0 * NR;
                /* The first row tile pulls in a strip ahead; the others
                 * re-read their own, already in L1. */
                const float *ahead = n + PF_STRIPS * NR < N ? b + (size_t)PF_STRIPS * NR * K : b;
                for (int blk = 0, m = 0; blk < nb; blk++) {
                    int mr = base + (blk < extra);
                    tiles[mr - 1][shape](kc, Ab + (size_t)m * lda + k0, (size_t)lda, b, bn,
                                         Cb + (size_t)m * ldc + n, (size_t)ldc, mask,
                                         blk == 0 ? ahead : b, k0 > 0);
                    m += mr;
                }
            }
        }
    }
}
