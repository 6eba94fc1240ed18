/* kernels.h - the numeric building blocks of the encoder (prefix k_).
 *
 * Every element-wise kernel has a plain scalar reference (k_*_ref), which is
 * also what runs on CPUs without AVX2; k_init() picks the AVX-512 or AVX2+FMA
 * versions at run time when the CPU has them. The model's linear layers run
 * on packed weights in our own kernel (k_linear_p); other matrix products go
 * to BLAS (OpenBLAS) through k_linear, or directly for attention. All
 * matrices are row-major float32. */
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
    /* the packed product (k_linear_p's contract); the reference's is
     * k_linear_p_ref */
    void (*linear_p)(int M, int N, int K, const float *A, int lda, const float *P,
                     const float *bias, float *C, int ldc);
} k_variant;

/* Fills out[] with up to `cap` variants usable here; returns how many. */
int k_variants(k_variant *out, int cap);

/* ---- Products with packed weights ----
 * A weight matrix W[N,K] (nn.Linear's (out, in)) is packed once, at model
 * load, into 16-column strips: P[(n / 16) * 16 * K + k * 16 + n % 16] =
 * W[n][k], the last strip padded with zeros. A register-blocked kernel then
 * reads each strip as one contiguous run that the hardware prefetchers
 * follow, whatever N is; with the transposed layout Wt[K,N] used before,
 * every k of a strip was a new cache line N * 4 bytes away. The model keeps
 * only this copy of each weight matrix, for every M: the kernel blocks rows
 * too. Measured on Zen 3 (BENCHMARKS.md): a cold query's model time in
 * bench_rank fell from 6.5-7.3 to 5.9-6.1 ms against the transposed layout,
 * and bench_gemm puts it 5-14% ahead of OpenBLAS at M = 256..1024, which
 * made batch embedding 4-7% faster. */

/* Floats in the packed form of an N x K matrix: N rounded up to 16, times K. */
size_t k_pack_floats(int N, int K);
/* P = W[N,K] packed as above, padding included; P must not overlap W. Put P
 * on a 64-byte boundary (aligned_alloc) so each strip row is one cache line. */
void k_pack(const float *W, int N, int K, float *P);
/* C[M,N] = A[M,K] . W[N,K]^T (+ bias[N] if bias != NULL), W given packed
 * (P). lda/ldc are row strides of A and C. Calling thread only, no
 * allocation: the SIMD kernel when there is one, else the reference. */
void k_linear_p(int M, int N, int K, const float *A, int lda, const float *P,
                const float *bias, float *C, int ldc);
/* Scalar loops over the strips, float accumulation; the reference for tests
 * and the path of CPUs without AVX2+FMA (or JOBMATCH_ISA=scalar). */
void k_linear_p_ref(int M, int N, int K, const float *A, int lda, const float *P,
                    const float *bias, float *C, int ldc);
/* The SIMD kernel k_init chose (AVX-512, else AVX2+FMA), correct for any M,
 * N, K; NULL when the CPU lacks AVX2+FMA or JOBMATCH_ISA=scalar. Exposed
 * for tests and benchmarks (k_variants lists every one usable here). */
extern void (*k_linear_p_simd)(int M, int N, int K, const float *A, int lda,
                               const float *P, const float *bias, float *C, int ldc);

#endif
