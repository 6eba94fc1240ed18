/* kernels.h - the numeric building blocks of the encoder (prefix k_).
 *
 * Every element-wise kernel has a plain scalar reference (k_*_ref), which is
 * also what runs on CPUs without AVX2; k_init() picks the AVX-512 or AVX2+FMA
 * versions at run time when the CPU has them. Matrix products go to BLAS (OpenBLAS) in
 * one place, k_linear. All matrices are row-major float32. */
#ifndef JM_KERNELS_H
#define JM_KERNELS_H

#include <stddef.h>

/* Pick implementations for this CPU. Idempotent and thread-safe. Setting the
 * environment variable JOBMATCH_ISA=scalar|avx2 caps the choice. */
void k_init(void);
/* "avx512", "avx2" or "scalar": what k_init chose. */
const char *k_isa(void);
/* The OpenBLAS kernel name ("SkylakeX", "Zen", ...) for benchmark reports. */
const char *k_blas_core(void);

/* C[M,N] = A[M,K] . W[N,K]^T (+ bias[N] if bias != NULL). W is laid out as
 * PyTorch's nn.Linear stores it ([out, in]); lda/ldc are row strides. Runs on
 * the calling thread only (BLAS threading is switched off by k_init: jobmatch
 * parallelises over texts, which scales better than splitting one product). */
void k_linear(int M, int N, int K, const float *A, int lda, const float *W,
              const float *bias, float *C, int ldc);

/* x[r,:] = GELU(x[r,:] + bias) for rows x N, GELU in its exact erf form
 * 0.5 * x * (1 + erf(x / sqrt(2))). */
extern void (*k_bias_gelu)(float *x, int rows, int N, const float *bias);
void k_bias_gelu_ref(float *x, int rows, int N, const float *bias);

/* x[r,:] = LayerNorm(x[r,:] + bias + res[r,:]) * gamma + beta, per row of N,
 * with the biased variance as PyTorch computes it. res may be NULL, bias may be NULL. */
extern void (*k_add_layernorm)(float *x, const float *res, int rows, int N,
                               const float *bias, const float *gamma,
                               const float *beta, float eps);
void k_add_layernorm_ref(float *x, const float *res, int rows, int N,
                         const float *bias, const float *gamma,
                         const float *beta, float eps);

/* In-place softmax of each of `rows` rows of length N (stride ld), after
 * multiplying by `scale`. */
extern void (*k_softmax)(float *x, int rows, int N, int ld, float scale);
void k_softmax_ref(float *x, int rows, int N, int ld, float scale);

/* x[r,:] += bias for rows x N. */
extern void (*k_bias_add)(float *x, int rows, int N, int ld, const float *bias);
void k_bias_add_ref(float *x, int rows, int N, int ld, const float *bias);

/* One instruction-set variant of the element-wise kernels. k_variants() lists
 * the ones this CPU can run (the scalar reference first), so tests can check
 * each against the reference. erf and exp are the vector approximations the
 * variant's GELU and softmax use: out[i] = f(in[i]). */
typedef struct k_variant {
    const char *name;
    void (*bias_gelu)(float *x, int rows, int N, const float *bias);
    void (*add_layernorm)(float *x, const float *res, int rows, int N, const float *bias,
                          const float *gamma, const float *beta, float eps);
    void (*softmax)(float *x, int rows, int N, int ld, float scale);
    void (*bias_add)(float *x, int rows, int N, int ld, const float *bias);
    void (*erf)(const float *in, float *out, size_t n);
    void (*exp)(const float *in, float *out, size_t n);
} k_variant;

/* Fills out[] with up to `cap` variants usable here; returns how many. */
int k_variants(k_variant *out, int cap);

/* ---- Products with transposed weights (small M) ----
 * Wt = W^T is laid out [K, N] row-major (k_transpose makes it once at model
 * load), which a register-blocked kernel can stream without repacking and
 * which OpenBLAS still takes as NoTrans,NoTrans for large M, so the model
 * keeps one copy of each weight matrix. */

/* Largest M for which k_linear_t uses k_linear_t_small. Measured with
 * bench/bench_gemm on Zen 3 (one thread, MiniLM shapes, weights in L3 or
 * DRAM), against OpenBLAS on the same Wt: 1.1-1.7x faster at M = 8..16,
 * 0.95-1.25x at 32, ~1.03x summed over a layer's four products at 48 (the
 * FFN input alone 0.9x with weights from DRAM), even at 64, behind at 128. */
#define K_LINEAR_T_MAX_M 48

/* C[M,N] = A[M,K] . Wt[K,N] (+ bias[N] if bias != NULL); lda/ldc are row
 * strides of A and C, Wt is dense (row stride N). Calling thread only, no
 * allocation. For M <= K_LINEAR_T_MAX_M runs k_linear_t_small when there is
 * one, otherwise OpenBLAS sgemm followed by k_bias_add. */
void k_linear_t(int M, int N, int K, const float *A, int lda, const float *Wt,
                const float *bias, float *C, int ldc);
/* Plain scalar triple loop, float accumulation; the reference for tests. */
void k_linear_t_ref(int M, int N, int K, const float *A, int lda, const float *Wt,
                    const float *bias, float *C, int ldc);
/* The SIMD kernel k_init chose for small M (AVX2+FMA), correct for any M, N,
 * K; NULL when the CPU lacks AVX2+FMA or JOBMATCH_ISA=scalar, in which case
 * k_linear_t always goes to OpenBLAS. Exposed for tests and benchmarks. */
extern void (*k_linear_t_small)(int M, int N, int K, const float *A, int lda,
                                const float *Wt, const float *bias, float *C, int ldc);

/* Wt[K,N] = W[N,K]^T, in cache-sized tiles. Wt must not overlap W. For model
 * load; put Wt on a 64-byte boundary (aligned_alloc) so each 16-column strip
 * the kernel reads is one cache line per row. */
void k_transpose(const float *W, int N, int K, float *Wt);

#endif
