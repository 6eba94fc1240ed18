/* kernels_avx512.c - AVX-512 versions of the element-wise kernels in kernels.h.
 * Compiled with -mavx512f... (see the Makefile) and only called after k_init
 * found those features. Each is tested against its scalar reference in
 * tests/test_kernels.c. */
#include "kernels.h"

#include <immintrin.h>
#include <math.h>

static inline __mmask16 tail_mask(int left) { return left >= 16 ? 0xFFFF : (__mmask16)((1u << left) - 1u); }

/* erf(x) for float32 lanes, max abs error ~1.5e-7 against a double reference.
 * |x| <= 1: x * P(x^2), P of degree 6; 1 < |x| < 4: 1 - Q(|x| - 2.5), Q of
 * degree 12; |x| >= 4: +-1 (erfc(4) = 1.5e-8). Coefficients are least-squares
 * fits on Chebyshev nodes, made for this file. */
static inline __m512 erf16(__m512 x)
{
    const __m512 one = _mm512_set1_ps(1.0f);
    __m512 ax = _mm512_abs_ps(x);
    __m512 t = _mm512_mul_ps(ax, ax);
    __m512 p = _mm512_set1_ps(7.882499631e-05f);
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-8.018857916e-04f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(5.189312622e-03f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-2.685432881e-02f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.128359735e-01f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-3.761262596e-01f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.128379107e+00f));
    __m512 small = _mm512_mul_ps(ax, p);

    __m512 u = _mm512_sub_ps(_mm512_min_ps(ax, _mm512_set1_ps(4.0f)), _mm512_set1_ps(2.5f));
    __m512 q = _mm512_set1_ps(8.709273970e-06f);
    q = _mm512_fmadd_ps(q, u, _mm512_set1_ps(-2.140606739e-05f));
    q = _mm512_fmadd_ps(q, u, _mm512_set1_ps(-5.941277777e-05f));
    q = _mm512_fmadd_ps(q, u, _mm512_set1_ps(2.808722493e-04f));
    q = _mm512_fmadd_ps(q, u, _mm512_set1_ps(-2.920018160e-04f));
    q = _mm512_fmadd_ps(q, u, _mm512_set1_ps(-5.742033245e-04f));
    q = _mm512_fmadd_ps(q, u, _mm512_set1_ps(2.823756775e-03f));
    q = _mm512_fmadd_ps(q, u, _mm512_set1_ps(-6.100025028e-03f));
    q = _mm512_fmadd_ps(q, u, _mm512_set1_ps(8.612778038e-03f));
    q = _mm512_fmadd_ps(q, u, _mm512_set1_ps(-8.354324847e-03f));
    q = _mm512_fmadd_ps(q, u, _mm512_set1_ps(5.447070580e-03f));
    q = _mm512_fmadd_ps(q, u, _mm512_set1_ps(-2.177979331e-03f));
    q = _mm512_fmadd_ps(q, u, _mm512_set1_ps(4.069206479e-04f));
    __m512 big = _mm512_sub_ps(one, q);
    big = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(ax, _mm512_set1_ps(4.0f), _CMP_GE_OQ), big, one);

    __m512 r = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(ax, one, _CMP_LE_OQ), big, small);
    /* copy the sign of x */
    const __m512i sign = _mm512_set1_epi32((int)0x80000000u);
    return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(r),
                                               _mm512_and_si512(_mm512_castps_si512(x), sign)));
}

/* exp(x) for float32 lanes, ~1 ulp: x = n ln2 + r, |r| <= ln2/2, Taylor
 * polynomial of degree 7 for e^r, then scale by 2^n. Inputs below -87 give 0. */
static inline __m512 exp16(__m512 x)
{
    x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(88.3762626647949f)),
                      _mm512_set1_ps(-87.3365447505531f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

void k_erf_avx512(const float *in, float *out, size_t n)
{
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask((int)(n - i < 16 ? n - i : 16));
        _mm512_mask_storeu_ps(out + i, m, erf16(_mm512_maskz_loadu_ps(m, in + i)));
    }
}

void k_exp_avx512(const float *in, float *out, size_t n)
{
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask((int)(n - i < 16 ? n - i : 16));
        _mm512_mask_storeu_ps(out + i, m, exp16(_mm512_maskz_loadu_ps(m, in + i)));
    }
}

void k_bias_gelu_avx512(float *x, int rows, int N, const float *bias)
{
    const __m512 half = _mm512_set1_ps(0.5f), r2 = _mm512_set1_ps(0.70710678118654752f);
    for (int r = 0; r < rows; r++) {
        float *row = x + (size_t)r * N;
        for (int i = 0; i < N; i += 16) {
            __mmask16 m = tail_mask(N - i);
            __m512 v = _mm512_add_ps(_mm512_maskz_loadu_ps(m, row + i), _mm512_maskz_loadu_ps(m, bias + i));
            __m512 e = erf16(_mm512_mul_ps(v, r2));
            __m512 hv = _mm512_mul_ps(half, v);
            _mm512_mask_storeu_ps(row + i, m, _mm512_fmadd_ps(hv, e, hv));
        }
    }
}

void k_add_layernorm_avx512(float *x, const float *res, int rows, int N,
                            const float *bias, const float *gamma, const float *beta, float eps)
{
    for (int r = 0; r < rows; r++) {
        float *row = x + (size_t)r * N;
        const float *rr = res ? res + (size_t)r * N : NULL;
        __m512 acc = _mm512_setzero_ps();
        for (int i = 0; i < N; i += 16) {
            __mmask16 m = tail_mask(N - i);
            __m512 v = _mm512_maskz_loadu_ps(m, row + i);
            if (bias)
                v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, bias + i));
            if (rr)
                v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, rr + i));
            _mm512_mask_storeu_ps(row + i, m, v);
            acc = _mm512_add_ps(acc, v);
        }
        float mean = _mm512_reduce_add_ps(acc) / (float)N;
        __m512 vm = _mm512_set1_ps(mean);
        acc = _mm512_setzero_ps();
        for (int i = 0; i < N; i += 16) {
            __mmask16 m = tail_mask(N - i);
            __m512 d = _mm512_maskz_sub_ps(m, _mm512_maskz_loadu_ps(m, row + i), vm);
            acc = _mm512_fmadd_ps(d, d, acc);
        }
        float var = _mm512_reduce_add_ps(acc) / (float)N;
        __m512 inv = _mm512_set1_ps(1.0f / sqrtf(var + eps));
        for (int i = 0; i < N; i += 16) {
            __mmask16 m = tail_mask(N - i);
            __m512 d = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, row + i), vm), inv);
            __m512 y = _mm512_fmadd_ps(d, _mm512_maskz_loadu_ps(m, gamma + i), _mm512_maskz_loadu_ps(m, beta + i));
            _mm512_mask_storeu_ps(row + i, m, y);
        }
    }
}

void k_softmax_avx512(float *x, int rows, int N, int ld, float scale)
{
    const __m512 vs = _mm512_set1_ps(scale);
    for (int r = 0; r < rows; r++) {
        float *row = x + (size_t)r * ld;
        __m512 mx = _mm512_set1_ps(-INFINITY);
        for (int i = 0; i < N; i += 16) {
            __mmask16 m = tail_mask(N - i);
            mx = _mm512_mask_max_ps(mx, m, mx, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, row + i), vs));
        }
        __m512 vmax = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
        __m512 sum = _mm512_setzero_ps();
        for (int i = 0; i < N; i += 16) {
            __mmask16 m = tail_mask(N - i);
            __m512 e = exp16(_mm512_fmsub_ps(_mm512_maskz_loadu_ps(m, row + i), vs, vmax));
            e = _mm512_maskz_mov_ps(m, e);
            _mm512_mask_storeu_ps(row + i, m, e);
            sum = _mm512_add_ps(sum, e);
        }
        __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(sum));
        for (int i = 0; i < N; i += 16) {
            __mmask16 m = tail_mask(N - i);
            _mm512_mask_storeu_ps(row + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, row + i), inv));
        }
    }
}

void k_bias_add_avx512(float *x, int rows, int N, int ld, const float *bias)
{
    for (int r = 0; r < rows; r++) {
        float *row = x + (size_t)r * ld;
        for (int i = 0; i < N; i += 16) {
            __mmask16 m = tail_mask(N - i);
            _mm512_mask_storeu_ps(row + i, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, row + i),
                                                            _mm512_maskz_loadu_ps(m, bias + i)));
        }
    }
}
