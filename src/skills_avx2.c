/* skills_avx2.c - the skill-to-skill similarity kernel, AVX2+FMA (see
 * sk_dots in skills.c for the contract and the scalar twin).
 *
 *   out[u * ldo + s] = U[u] . S[s]   for u < nu, s < ns, vectors of D floats
 *
 * Every pair is summed the same way whatever the blocking: one 8-lane
 * accumulator over the 8-float blocks of d in order, then the lanes added as
 * (0+4, 1+5, 2+6, 3+7), then pairwise, then the remaining D % 8 components
 * one by one. So a similarity does not depend on how many user skills a query
 * has or where a row falls in a block. Blocks of 4 user vectors x 3 rows (12
 * accumulators) hide the FMA latency, and each row of S is read from memory
 * once per call (the user vectors stay in L1).
 * Compiled with -mavx2 -mfma; only called after the CPU was found to have them. */
#include <immintrin.h>
#include <stddef.h>

static inline float hsum(__m256 a)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

/* MU user vectors x MS rows, each pair one accumulator. */
static inline __attribute__((always_inline)) void block(const int MU, const int MS, const float *U, const float *S,
                                                       int D, float *out, size_t ldo)
{
    __m256 acc[4][3];
#pragma GCC unroll 4
    for (int u = 0; u < MU; u++)
#pragma GCC unroll 3
        for (int s = 0; s < MS; s++)
            acc[u][s] = _mm256_setzero_ps();
    int d = 0;
    for (; d + 8 <= D; d += 8) {
        __m256 r[3];
#pragma GCC unroll 3
        for (int s = 0; s < MS; s++)
            r[s] = _mm256_loadu_ps(S + (size_t)s * D + d);
#pragma GCC unroll 4
        for (int u = 0; u < MU; u++) {
            __m256 x = _mm256_loadu_ps(U + (size_t)u * D + d);
#pragma GCC unroll 3
            for (int s = 0; s < MS; s++)
                acc[u][s] = _mm256_fmadd_ps(x, r[s], acc[u][s]);
        }
    }
#pragma GCC unroll 4
    for (int u = 0; u < MU; u++)
#pragma GCC unroll 3
        for (int s = 0; s < MS; s++) {
            float t = hsum(acc[u][s]);
            for (int k = d; k < D; k++)
                t += U[(size_t)u * D + k] * S[(size_t)s * D + k];
            out[(size_t)u * ldo + s] = t;
        }
}

void sk_dots_avx2(const float *U, int nu, const float *S, int ns, int D, float *out, size_t ldo)
{
    int s = 0;
    for (; s + 3 <= ns; s += 3) {
        const float *r = S + (size_t)s * D;
        int u = 0;
        for (; u + 4 <= nu; u += 4)
            block(4, 3, U + (size_t)u * D, r, D, out + (size_t)u * ldo + s, ldo);
        for (; u < nu; u++)
            block(1, 3, U + (size_t)u * D, r, D, out + (size_t)u * ldo + s, ldo);
    }
    for (; s < ns; s++) {
        const float *r = S + (size_t)s * D;
        int u = 0;
        for (; u + 4 <= nu; u += 4)
            block(4, 1, U + (size_t)u * D, r, D, out + (size_t)u * ldo + s, ldo);
        for (; u < nu; u++)
            block(1, 1, U + (size_t)u * D, r, D, out + (size_t)u * ldo + s, ldo);
    }
}

/* out[u * ldo + s] = U[u] . S[s] over D int8 codes in [-127, 127], exact in
 * int32 (for sk_match_floor's prefilter). |u| times sign(s, u) in vpmaddubsw
 * cannot saturate for such codes (2 * 127 * 127 < 32768); vpmaddwd widens.
 * Blocks of 4 users x 2 rows. D % 32 components are added one by one. */
#include <stdint.h>

static inline __attribute__((always_inline)) void block8(const int MU, const int MS, const int8_t *U, const int8_t *S,
                                                        int D, int32_t *out, size_t ldo)
{
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i acc[4][2];
#pragma GCC unroll 4
    for (int u = 0; u < MU; u++)
#pragma GCC unroll 2
        for (int s = 0; s < MS; s++)
            acc[u][s] = _mm256_setzero_si256();
    int d = 0;
    for (; d + 32 <= D; d += 32) {
        __m256i r[2];
#pragma GCC unroll 2
        for (int s = 0; s < MS; s++)
            r[s] = _mm256_loadu_si256((const __m256i *)(S + (size_t)s * D + d));
#pragma GCC unroll 4
        for (int u = 0; u < MU; u++) {
            __m256i x = _mm256_loadu_si256((const __m256i *)(U + (size_t)u * D + d)), ax = _mm256_abs_epi8(x);
#pragma GCC unroll 2
            for (int s = 0; s < MS; s++) {
                __m256i p = _mm256_maddubs_epi16(ax, _mm256_sign_epi8(r[s], x));
                acc[u][s] = _mm256_add_epi32(acc[u][s], _mm256_madd_epi16(p, ones));
            }
        }
    }
#pragma GCC unroll 4
    for (int u = 0; u < MU; u++)
#pragma GCC unroll 2
        for (int s = 0; s < MS; s++) {
            __m128i t = _mm_add_epi32(_mm256_castsi256_si128(acc[u][s]), _mm256_extracti128_si256(acc[u][s], 1));
            t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0x4e));
            t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0xb1));
            int32_t v = _mm_cvtsi128_si32(t);
            for (int k = d; k < D; k++)
                v += (int32_t)U[(size_t)u * D + k] * S[(size_t)s * D + k];
            out[(size_t)u * ldo + s] = v;
        }
}

void sk_dots_i8_avx2(const int8_t *U, int nu, const int8_t *S, int ns, int D, int32_t *out, size_t ldo)
{
    int s = 0;
    for (; s + 2 <= ns; s += 2) {
        const int8_t *r = S + (size_t)s * D;
        int u = 0;
        for (; u + 4 <= nu; u += 4)
            block8(4, 2, U + (size_t)u * D, r, D, out + (size_t)u * ldo + s, ldo);
        for (; u < nu; u++)
            block8(1, 2, U + (size_t)u * D, r, D, out + (size_t)u * ldo + s, ldo);
    }
    for (; s < ns; s++) {
        const int8_t *r = S + (size_t)s * D;
        int u = 0;
        for (; u + 4 <= nu; u += 4)
            block8(4, 1, U + (size_t)u * D, r, D, out + (size_t)u * ldo + s, ldo);
        for (; u < nu; u++)
            block8(1, 1, U + (size_t)u * D, r, D, out + (size_t)u * ldo + s, ldo);
    }
}
