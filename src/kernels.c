/* kernels.c - scalar reference kernels, BLAS wrapper and run-time dispatch. */
#include "kernels.h"

#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Declared by OpenBLAS (openblas_config.h / cblas.h); repeated here so the
 * code does not depend on which header version is installed. */
extern void openblas_set_num_threads(int);
extern char *openblas_get_corename(void);

#define DECLARE_VARIANT(isa)                                                              \
    void k_bias_gelu_##isa(float *x, int rows, int N, const float *bias);                  \
    void k_add_layernorm_##isa(float *x, const float *res, int rows, int N,                \
                               const float *bias, const float *gamma, const float *beta,   \
                               float eps);                                                 \
    void k_softmax_##isa(float *x, int rows, int N, int ld, float scale);                  \
    void k_bias_add_##isa(float *x, int rows, int N, int ld, const float *bias);           \
    void k_erf_##isa(const float *in, float *out, size_t n);                               \
    void k_exp_##isa(const float *in, float *out, size_t n);
DECLARE_VARIANT(avx512) /* kernels_avx512.c */
DECLARE_VARIANT(avx2)   /* kernels_avx2.c */
void k_linear_p_avx2(int M, int N, int K, const float *A, int lda, const float *P,
                     const float *bias, float *C, int ldc); /* gemm_avx2.c */
void k_linear_p_avx512(int M, int N, int K, const float *A, int lda, const float *P,
                       const float *bias, float *C, int ldc); /* gemm_avx512.c */

static void k_erf_ref(const float *in, float *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = erff(in[i]);
}

static void k_exp_ref(const float *in, float *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = expf(in[i]);
}

#define VARIANT(isa) {#isa, k_bias_gelu_##isa, k_add_layernorm_##isa, k_softmax_##isa, \
                      k_bias_add_##isa, k_erf_##isa, k_exp_##isa, k_linear_p_##isa}
static const k_variant v_ref = VARIANT(ref);
static const k_variant v_avx2 = VARIANT(avx2);
static const k_variant v_avx512 = VARIANT(avx512);

void (*k_bias_gelu)(float *, int, int, const float *) = k_bias_gelu_ref;
void (*k_add_layernorm)(float *, const float *, int, int, const float *,
                        const float *, const float *, float) = k_add_layernorm_ref;
void (*k_softmax)(float *, int, int, int, float) = k_softmax_ref;
void (*k_bias_add)(float *, int, int, int, const float *) = k_bias_add_ref;
void (*k_linear_p_simd)(int, int, int, const float *, int, const float *, const float *,
                        float *, int) = NULL;

static const char *isa_name = "scalar";
static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static int have_avx512(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("fma");
}

static int have_avx2(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

int k_variants(k_variant *out, int cap)
{
    int n = 0;
    if (n < cap)
        out[n++] = v_ref;
    if (n < cap && have_avx2())
        out[n++] = v_avx2;
    if (n < cap && have_avx512())
        out[n++] = v_avx512;
    return n;
}

static void use(const k_variant *v, const char *name)
{
    k_bias_gelu = v->bias_gelu;
    k_add_layernorm = v->add_layernorm;
    k_softmax = v->softmax;
    k_bias_add = v->bias_add;
    k_linear_p_simd = v->linear_p;
    isa_name = name;
}

static void init_impl(void)
{
    openblas_set_num_threads(1);
    const char *cap = getenv("JOBMATCH_ISA");
    if (cap && strcmp(cap, "scalar") == 0)
        return;
    int allow512 = !(cap && strcmp(cap, "avx2") == 0);
    if (allow512 && have_avx512())
        use(&v_avx512, "avx512");
    else if (have_avx2())
        use(&v_avx2, "avx2");
}

void k_init(void) { pthread_once(&init_once, init_impl); }
const char *k_isa(void) { return isa_name; }

const char *k_blas_core(void)
{
    const char *c = openblas_get_corename();
    return c ? c : "unknown";
}

void k_linear(int M, int N, int K, const float *A, int lda, const float *W,
              const float *bias, float *C, int ldc)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, A, lda, W, K,
                0.0f, C, ldc);
    if (bias)
        k_bias_add(C, M, N, ldc, bias);
}

void k_linear_p(int M, int N, int K, const float *A, int lda, const float *P,
                const float *bias, float *C, int ldc)
{
    (k_linear_p_simd ? k_linear_p_simd : k_linear_p_ref)(M, N, K, A, lda, P, bias, C, ldc);
}

enum { STRIP = 16 };

size_t k_pack_floats(int N, int K) { return ((size_t)N + STRIP - 1) / STRIP * STRIP * (size_t)K; }

void k_pack(const float *W, int N, int K, float *P)
{
    for (int n0 = 0; n0 < N; n0 += STRIP) {
        float *s = P + (size_t)n0 * K;
        for (int k = 0; k < K; k++)
            for (int j = 0; j < STRIP; j++)
                s[(size_t)k * STRIP + j] = n0 + j < N ? W[(size_t)(n0 + j) * K + k] : 0.0f;
    }
}

void k_linear_p_ref(int M, int N, int K, const float *A, int lda, const float *P,
                    const float *bias, float *C, int ldc)
{
    /* Per strip and row, 16 sums along k: the inner loop runs over a strip
     * row, which the compiler vectorises. */
    for (int n0 = 0; n0 < N; n0 += STRIP) {
        const float *s = P + (size_t)n0 * K;
        int w = N - n0 < STRIP ? N - n0 : STRIP;
        for (int i = 0; i < M; i++) {
            const float *a = A + (size_t)i * lda;
            float acc[STRIP] = {0};
            for (int k = 0; k < K; k++)
                for (int j = 0; j < STRIP; j++)
                    acc[j] += a[k] * s[(size_t)k * STRIP + j];
            float *c = C + (size_t)i * ldc + n0;
            for (int j = 0; j < w; j++)
                c[j] = acc[j] + (bias ? bias[n0 + j] : 0.0f);
        }
    }
}

void k_bias_gelu_ref(float *x, int rows, int N, const float *bias)
{
    const float r2 = 0.70710678118654752f;
    for (int r = 0; r < rows; r++) {
        float *row = x + (size_t)r * N;
        for (int i = 0; i < N; i++) {
            float v = row[i] + bias[i];
            row[i] = 0.5f * v * (1.0f + erff(v * r2));
        }
    }
}

void k_add_layernorm_ref(float *x, const float *res, int rows, int N,
                         const float *bias, const float *gamma, const float *beta, float eps)
{
    for (int r = 0; r < rows; r++) {
        float *row = x + (size_t)r * N;
        const float *rr = res ? res + (size_t)r * N : NULL;
        float mean = 0.0f;
        for (int i = 0; i < N; i++) {
            float v = row[i];
            if (bias)
                v += bias[i];
            if (rr)
                v += rr[i];
            row[i] = v;
            mean += v;
        }
        mean /= (float)N;
        float var = 0.0f;
        for (int i = 0; i < N; i++) {
            float d = row[i] - mean;
            var += d * d;
        }
        var /= (float)N;
        float inv = 1.0f / sqrtf(var + eps);
        for (int i = 0; i < N; i++)
            row[i] = (row[i] - mean) * inv * gamma[i] + beta[i];
    }
}

void k_softmax_ref(float *x, int rows, int N, int ld, float scale)
{
    for (int r = 0; r < rows; r++) {
        float *row = x + (size_t)r * ld;
        float mx = -INFINITY;
        for (int i = 0; i < N; i++) {
            row[i] *= scale;
            if (row[i] > mx)
                mx = row[i];
        }
        float sum = 0.0f;
        for (int i = 0; i < N; i++) {
            row[i] = expf(row[i] - mx);
            sum += row[i];
        }
        float inv = 1.0f / sum;
        for (int i = 0; i < N; i++)
            row[i] *= inv;
    }
}

void k_bias_add_ref(float *x, int rows, int N, int ld, const float *bias)
{
    for (int r = 0; r < rows; r++) {
        float *row = x + (size_t)r * ld;
        for (int i = 0; i < N; i++)
            row[i] += bias[i];
    }
}
