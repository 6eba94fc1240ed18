/* test_gemm.c - the product on packed weights k_linear_p: the scalar
 * reference, the dispatched k_linear_p and the SIMD kernel k_linear_p_simd
 * (for every M, across its row blocks), each against a double-precision
 * loop; k_pack's layout; and k_linear_p against OpenBLAS on the unpacked
 * weights (k_linear).
 *
 * Tolerance: |C - exact| <= 1e-5 * (sum_k |A[i,k] W[j,k]| + |bias[j]|) per
 * element. Float sums of K terms in any order are off by at most ~K * 6e-8
 * of that sum in the worst case and ~sqrt(K) * 6e-8 in practice (2.4e-6 at
 * K = 1536), so this passes any correct summation order and fails anything
 * that drops, repeats or misplaces a term.
 *
 * Buffers are sized exactly (no slack after the last row, lda > K and
 * ldc > N gaps in between, P exactly k_pack_floats), so under
 * AddressSanitizer any read or write outside A, P, bias or C is caught; the
 * gaps in C are filled with a sentinel that must survive. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "kernels.h"

static unsigned long long rng = 0x2545F4914F6CDD1DULL;
static float frand(float lo, float hi)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return lo + (hi - lo) * (float)((rng >> 11) * (1.0 / 9007199254740992.0));
}

static const float SENTINEL = -12345.0f;

typedef void (*linear_fn)(int M, int N, int K, const float *A, int lda, const float *P,
                          const float *bias, float *C, int ldc);

/* One shape. exact/mag are [M,N] doubles: the product and the sum of |terms|.
 * Returns the number of failed elements (0 = pass) and reports the first. */
static int check_one(const char *name, linear_fn f, int M, int N, int K, const float *A, int lda,
                     const float *P, const float *bias, int ldc, const double *exact,
                     const double *mag)
{
    size_t csz = (size_t)(M - 1) * ldc + N;
    float *C = malloc(csz * sizeof(float));
    for (size_t i = 0; i < csz; i++)
        C[i] = SENTINEL; /* gaps must keep it; the product must overwrite the rest */
    f(M, N, K, A, lda, P, bias, C, ldc);
    int bad = 0;
    for (int i = 0; i < M; i++) {
        for (int j = 0; j < ldc && (size_t)i * ldc + j < csz; j++) {
            float c = C[(size_t)i * ldc + j];
            if (j >= N) {
                if (c != SENTINEL && bad++ == 0)
                    fprintf(stderr, "%s M=%d N=%d K=%d: wrote C[%d][%d] past N (ldc %d)\n", name,
                            M, N, K, i, j, ldc);
                continue;
            }
            double e = exact[(size_t)i * N + j], tol = 1e-5 * mag[(size_t)i * N + j];
            if (!(fabs(c - e) <= tol) && bad++ == 0)
                fprintf(stderr, "%s M=%d N=%d K=%d lda=%d ldc=%d bias=%d: C[%d][%d] = %.9g, "
                        "exact %.9g, tolerance %.3g\n", name, M, N, K, lda, ldc, bias != NULL, i,
                        j, c, e, tol);
        }
    }
    free(C);
    return bad;
}

static int n_shapes;

/* All three implementations on one shape; lda/ldc padding and bias as given. */
static void test_shape(int M, int N, int K, int lda, int ldc, int with_bias)
{
    float *A = malloc(((size_t)(M - 1) * lda + K) * sizeof(float));
    float *W = malloc(((size_t)K * N + (K * N == 0)) * sizeof(float));
    float *P = malloc((k_pack_floats(N, K) + (K == 0)) * sizeof(float));
    float *bias = with_bias ? malloc((size_t)N * sizeof(float)) : NULL;
    double *exact = malloc((size_t)M * N * sizeof(double));
    double *mag = malloc((size_t)M * N * sizeof(double));
    for (size_t i = 0; i < (size_t)(M - 1) * lda + K; i++)
        A[i] = frand(-1, 1);
    for (size_t i = 0; i < (size_t)K * N; i++)
        W[i] = frand(-1, 1);
    for (int j = 0; bias && j < N; j++)
        bias[j] = frand(-1, 1);
    k_pack(W, N, K, P);

    for (int i = 0; i < M; i++) {
        double *e = exact + (size_t)i * N, *g = mag + (size_t)i * N;
        for (int j = 0; j < N; j++) {
            e[j] = bias ? bias[j] : 0.0;
            g[j] = bias ? fabs(bias[j]) : 0.0;
            for (int k = 0; k < K; k++) {
                double t = (double)A[(size_t)i * lda + k] * W[(size_t)j * K + k];
                e[j] += t;
                g[j] += fabs(t);
            }
        }
    }

    int bad = check_one("k_linear_p_ref", k_linear_p_ref, M, N, K, A, lda, P, bias, ldc, exact, mag);
    CHECK(bad == 0, "k_linear_p_ref M=%d N=%d K=%d: %d elements wrong", M, N, K, bad);
    bad = check_one("k_linear_p", k_linear_p, M, N, K, A, lda, P, bias, ldc, exact, mag);
    CHECK(bad == 0, "k_linear_p M=%d N=%d K=%d: %d elements wrong", M, N, K, bad);
    /* every variant this CPU runs (AVX2 and AVX-512 here), not only the one
     * k_init chose */
    k_variant vs[4];
    int nv = k_variants(vs, 4);
    for (int v = 1; v < nv; v++) {
        bad = check_one(vs[v].name, vs[v].linear_p, M, N, K, A, lda, P, bias, ldc, exact, mag);
        CHECK(bad == 0, "%s k_linear_p M=%d N=%d K=%d: %d elements wrong", vs[v].name, M, N, K, bad);
    }
    n_shapes++;
    free(A);
    free(W);
    free(P);
    free(bias);
    free(exact);
    free(mag);
}

static void test_shapes(void)
{
    static const int Ms[] = {1, 2, 5, 6, 7, 12, 13, 16, 20, 24, 25, 31, 32, 33, 64, 95, 96, 97, 200};
    static const int Ns[] = {1, 7, 8, 16, 17, 31, 32, 33, 48, 100, 384, 1152};
    static const int Ks[] = {1, 3, 384, 1536};
    int nm = sizeof Ms / sizeof Ms[0], nn = sizeof Ns / sizeof Ns[0], nk = sizeof Ks / sizeof Ks[0];
    for (int a = 0; a < nm; a++)
        for (int b = 0; b < nn; b++)
            for (int c = 0; c < nk; c++) {
                int M = Ms[a], N = Ns[b], K = Ks[c];
                /* The largest products (up to 354M multiply-adds) only once,
                 * with bias and padding, so the test stays fast under ASan. */
                int big = (double)M * N * K > 2e7;
                for (int v = big ? 3 : 0; v < 4; v++) {
                    int with_bias = v & 1, padded = v >> 1;
                    test_shape(M, N, K, padded ? K + 5 : K, padded ? N + 3 : N, with_bias);
                }
            }
    /* Every column tail against the 16-wide strips, and every row-tile split
     * up to 3 tiles, with odd K for the partial-sum remainders. */
    for (int N = 1; N <= 48; N++)
        test_shape(3, N, 5, 7, N + 1, N & 1);
    for (int M = 1; M <= 19; M++)
        for (int K = 1; K <= 9; K += 4)
            test_shape(M, 40, K, K, 41, 1);
    /* K not a multiple of the k-block, and K = 0 (the bias alone). */
    test_shape(9, 24, 385, 385, 24, 1);
    test_shape(16, 40, 1000, 1003, 40, 0);
    test_shape(4, 20, 0, 1, 20, 1);
    test_shape(4, 20, 0, 1, 20, 0);
}

/* P[(n / 16) * 16 * K + k * 16 + n % 16] = W[n][k], zeros past N. */
static void test_pack(void)
{
    static const int sizes[][2] = {{1, 1}, {1, 7}, {7, 1}, {15, 3}, {16, 3}, {17, 3}, {31, 33},
                                   {32, 32}, {33, 65}, {384, 1152}, {1536, 384}, {100, 3}};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        int N = sizes[s][0], K = sizes[s][1];
        size_t np = k_pack_floats(N, K);
        CHECK(np == (size_t)(N + 15) / 16 * 16 * (size_t)K, "k_pack_floats N=%d K=%d: %zu", N, K, np);
        float *W = malloc((size_t)N * K * sizeof(float)), *P = malloc(np * sizeof(float));
        for (size_t i = 0; i < (size_t)N * K; i++)
            W[i] = (float)(i + 1); /* exact in float for these sizes: every value distinct, none 0 */
        for (size_t i = 0; i < np; i++)
            P[i] = -1.0f;
        k_pack(W, N, K, P);
        int bad = 0;
        for (int n = 0; n < (N + 15) / 16 * 16; n++)
            for (int k = 0; k < K; k++)
                bad += P[(size_t)(n / 16) * 16 * K + (size_t)k * 16 + n % 16] !=
                       (n < N ? W[(size_t)n * K + k] : 0.0f);
        CHECK(bad == 0, "k_pack N=%d K=%d: %d elements wrong", N, K, bad);
        free(W);
        free(P);
    }
}

/* k_linear_p on k_pack(W) equals k_linear (OpenBLAS) on W, to float
 * rounding (the outputs are O(1), sums of 384 terms of up to 0.3). */
static void test_against_k_linear(void)
{
    int N = 1152, K = 384;
    float *W = malloc((size_t)N * K * sizeof(float)), *P = malloc(k_pack_floats(N, K) * sizeof(float));
    float *bias = malloc((size_t)N * sizeof(float));
    for (size_t i = 0; i < (size_t)N * K; i++)
        W[i] = frand(-0.1f, 0.1f);
    for (int j = 0; j < N; j++)
        bias[j] = frand(-1, 1);
    k_pack(W, N, K, P);
    static const int Ms[] = {1, 12, 48, 49, 100, 300};
    for (size_t m = 0; m < sizeof Ms / sizeof Ms[0]; m++) {
        int M = Ms[m];
        float *A = malloc((size_t)M * K * sizeof(float));
        float *C1 = malloc((size_t)M * N * sizeof(float)), *C2 = malloc((size_t)M * N * sizeof(float));
        for (size_t i = 0; i < (size_t)M * K; i++)
            A[i] = frand(-3, 3);
        k_linear(M, N, K, A, K, W, bias, C1, N);
        k_linear_p(M, N, K, A, K, P, bias, C2, N);
        double worst = 0;
        for (size_t i = 0; i < (size_t)M * N; i++)
            worst = fmax(worst, fabs((double)C1[i] - C2[i]));
        CHECK(worst < 1e-4, "k_linear_p vs k_linear M=%d: max difference %g", M, worst);
        free(A);
        free(C1);
        free(C2);
    }
    free(W);
    free(P);
    free(bias);
}

int main(void)
{
    k_init();
    k_variant vs[4];
    int nv = k_variants(vs, 4);
    printf("test_gemm: isa %s, packed-weight SIMD kernel %s; checking", k_isa(),
           k_linear_p_simd ? "present" : "absent (scalar reference)");
    for (int v = 0; v < nv; v++)
        printf(" %s", vs[v].name);
    printf("\n");
    if (!getenv("JOBMATCH_ISA"))
        CHECK(!k_linear_p_simd || k_linear_p_simd == vs[nv - 1].linear_p,
              "k_init chose the widest variant's product");
    test_pack();
    test_shapes();
    test_against_k_linear();
    printf("test_gemm: %d shapes\n", n_shapes);
    return CHECK_DONE("test_gemm");
}
