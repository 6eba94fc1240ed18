/* kernels_avx2.c - AVX2+FMA versions of the element-wise kernels in kernels.h,
 * for CPUs without AVX-512 (8 lanes; tails of fewer than 8 go through masked
 * loads and stores). Compiled with -mavx2 -mfma and only called after k_init
 * found those features. Tested against the scalar references in
 * tests/test_kernels.c. The polynomial coefficients are the same as in
 * kernels_avx512.c. */
#include "kernels.h"

#include <immintrin.h>
#include <math.h>

static inline __m256i tail_mask8(int left)
{
    static const int m[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
    if (left >= 8)
        left = 8;
    return _mm256_loadu_si256((const __m256i *)(m + 8 - left));
}

static inline __m256 load8(const float *p, int left, __m256i m)
{
    return left >= 8 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, m);
}

static inline void store8(float *p, int left, __m256i m, __m256 v)
{
    if (left >= 8)
        _mm256_storeu_ps(p, v);
    else
        _mm256_maskstore_ps(p, m, v);
}

static inline float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline float hmax8(__m256 v)
{
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* erf, ~1.5e-7 absolute: see erf16 in kernels_avx512.c for the method. */
static inline __m256 erf8(__m256 x)
{
    const __m256 one = _mm256_set1_ps(1.0f);
    const __m256 signbit = _mm256_set1_ps(-0.0f);
    __m256 ax = _mm256_andnot_ps(signbit, x);
    __m256 t = _mm256_mul_ps(ax, ax);
    __m256 p = _mm256_set1_ps(7.882499631e-05f);
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-8.018857916e-04f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(5.189312622e-03f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-2.685432881e-02f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.128359735e-01f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-3.761262596e-01f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.128379107e+00f));
    __m256 small = _mm256_mul_ps(ax, p);

    __m256 u = _mm256_sub_ps(_mm256_min_ps(ax, _mm256_set1_ps(4.0f)), _mm256_set1_ps(2.5f));
    __m256 q = _mm256_set1_ps(8.709273970e-06f);
    q = _mm256_fmadd_ps(q, u, _mm256_set1_ps(-2.140606739e-05f));
    q = _mm256_fmadd_ps(q, u, _mm256_set1_ps(-5.941277777e-05f));
    q = _mm256_fmadd_ps(q, u, _mm256_set1_ps(2.808722493e-04f));
    q = _mm256_fmadd_ps(q, u, _mm256_set1_ps(-2.920018160e-04f));
    q = _mm256_fmadd_ps(q, u, _mm256_set1_ps(-5.742033245e-04f));
    q = _mm256_fmadd_ps(q, u, _mm256_set1_ps(2.823756775e-03f));
    q = _mm256_fmadd_ps(q, u, _mm256_set1_ps(-6.100025028e-03f));
    q = _mm256_fmadd_ps(q, u, _mm256_set1_ps(8.612778038e-03f));
    q = _mm256_fmadd_ps(q, u, _mm256_set1_ps(-8.354324847e-03f));
    q = _mm256_fmadd_ps(q, u, _mm256_set1_ps(5.447070580e-03f));
    q = _mm256_fmadd_ps(q, u, _mm256_set1_ps(-2.177979331e-03f));
    q = _mm256_fmadd_ps(q, u, _mm256_set1_ps(4.069206479e-04f));
    __m256 big = _mm256_sub_ps(one, q);
    big = _mm256_blendv_ps(big, one, _mm256_cmp_ps(ax, _mm256_set1_ps(4.0f), _CMP_GE_OQ));
    __m256 r = _mm256_blendv_ps(big, small, _mm256_cmp_ps(ax, one, _CMP_LE_OQ));
    return _mm256_or_ps(r, _mm256_and_ps(x, signbit));
}

/* exp, ~1 ulp: x = n ln2 + r, Taylor degree 7 for e^r, 2^n built in the exponent bits. */
static inline __m256 exp8(__m256 x)
{
    x = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(88.3f)), _mm256_set1_ps(-87.33f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.0f / 5040.0f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

void k_erf_avx2(const float *in, float *out, size_t n)
{
    for (size_t i = 0; i < n; i += 8) {
        int left = (int)(n - i < 8 ? n - i : 8);
        __m256i m = tail_mask8(left);
        store8(out + i, left, m, erf8(load8(in + i, left, m)));
    }
}

void k_exp_avx2(const float *in, float *out, size_t n)
{
    for (size_t i = 0; i < n; i += 8) {
        int left = (int)(n - i < 8 ? n - i : 8);
        __m256i m = tail_mask8(left);
        store8(out + i, left, m, exp8(load8(in + i, left, m)));
    }
}

void k_bias_gelu_avx2(float *x, int rows, int N, const float *bias)
{
    const __m256 half = _mm256_set1_ps(0.5f), r2 = _mm256_set1_ps(0.70710678118654752f);
    __m256i tm = tail_mask8(N % 8);
    for (int r = 0; r < rows; r++) {
        float *row = x + (size_t)r * N;
        for (int i = 0; i < N; i += 8) {
            int left = N - i;
            __m256 v = _mm256_add_ps(load8(row + i, left, tm), load8(bias + i, left, tm));
            __m256 e = erf8(_mm256_mul_ps(v, r2));
            __m256 hv = _mm256_mul_ps(half, v);
            store8(row + i, left, tm, _mm256_fmadd_ps(hv, e, hv));
        }
    }
}

void k_add_layernorm_avx2(float *x, const float *res, int rows, int N, const float *bias,
                          const float *gamma, const float *beta, float eps)
{
    __m256i tm = tail_mask8(N % 8);
    for (int r = 0; r < rows; r++) {
        float *row = x + (size_t)r * N;
        const float *rr = res ? res + (size_t)r * N : NULL;
        __m256 acc = _mm256_setzero_ps();
        for (int i = 0; i < N; i += 8) {
            int left = N - i;
            __m256 v = load8(row + i, left, tm);
            if (bias)
                v = _mm256_add_ps(v, load8(bias + i, left, tm));
            if (rr)
                v = _mm256_add_ps(v, load8(rr + i, left, tm));
            store8(row + i, left, tm, v);
            acc = _mm256_add_ps(acc, v);
        }
        float mean = hsum8(acc) / (float)N;
        __m256 vm = _mm256_set1_ps(mean);
        acc = _mm256_setzero_ps();
        for (int i = 0; i < N; i += 8) {
            int left = N - i;
            __m256 d = _mm256_sub_ps(load8(row + i, left, tm), vm);
            if (left < 8)
                d = _mm256_and_ps(d, _mm256_castsi256_ps(tm));
            acc = _mm256_fmadd_ps(d, d, acc);
        }
        float var = hsum8(acc) / (float)N;
        __m256 inv = _mm256_set1_ps(1.0f / sqrtf(var + eps));
        for (int i = 0; i < N; i += 8) {
            int left = N - i;
            __m256 d = _mm256_mul_ps(_mm256_sub_ps(load8(row + i, left, tm), vm), inv);
            store8(row + i, left, tm, _mm256_fmadd_ps(d, load8(gamma + i, left, tm), load8(beta + i, left, tm)));
        }
    }
}

void k_softmax_avx2(float *x, int rows, int N, int ld, float scale)
{
    const __m256 vs = _mm256_set1_ps(scale);
    __m256i tm = tail_mask8(N % 8);
    for (int r = 0; r < rows; r++) {
        float *row = x + (size_t)r * ld;
        __m256 mx = _mm256_set1_ps(-INFINITY);
        for (int i = 0; i < N; i += 8) {
            int left = N - i;
            __m256 v = _mm256_mul_ps(load8(row + i, left, tm), vs);
            if (left < 8)
                v = _mm256_blendv_ps(_mm256_set1_ps(-INFINITY), v, _mm256_castsi256_ps(tm));
            mx = _mm256_max_ps(mx, v);
        }
        __m256 vmax = _mm256_set1_ps(hmax8(mx));
        __m256 sum = _mm256_setzero_ps();
        for (int i = 0; i < N; i += 8) {
            int left = N - i;
            __m256 e = exp8(_mm256_fmsub_ps(load8(row + i, left, tm), vs, vmax));
            if (left < 8)
                e = _mm256_and_ps(e, _mm256_castsi256_ps(tm));
            store8(row + i, left, tm, e);
            sum = _mm256_add_ps(sum, e);
        }
        __m256 inv = _mm256_set1_ps(1.0f / hsum8(sum));
        for (int i = 0; i < N; i += 8) {
            int left = N - i;
            store8(row + i, left, tm, _mm256_mul_ps(load8(row + i, left, tm), inv));
        }
    }
}

void k_bias_add_avx2(float *x, int rows, int N, int ld, const float *bias)
{
    __m256i tm = tail_mask8(N % 8);
    for (int r = 0; r < rows; r++) {
        float *row = x + (size_t)r * ld;
        for (int i = 0; i < N; i += 8) {
            int left = N - i;
            store8(row + i, left, tm, _mm256_add_ps(load8(row + i, left, tm), load8(bias + i, left, tm)));
        }
    }
}
