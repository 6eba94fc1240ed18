/* test_kernels.c - each AVX-512 kernel against its scalar reference, and the
 * BLAS wrapper against a double-precision triple loop. Tolerances are stated
 * per kernel and are far below what the 1e-4 embedding parity needs. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "kernels.h"

static unsigned long long rng = 88172645463325252ULL;
static float frand(float lo, float hi)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return lo + (hi - lo) * (float)((rng >> 11) * (1.0 / 9007199254740992.0));
}

static double maxdiff(const float *a, const float *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (d > m || isnan(d))
            m = isnan(d) ? INFINITY : d;
    }
    return m;
}

static void test_linear(void)
{
    /* Odd sizes exercise the BLAS edge paths. */
    int M = 37, N = 45, K = 29;
    float *A = malloc(sizeof(float) * M * K), *W = malloc(sizeof(float) * N * K);
    float *b = malloc(sizeof(float) * N), *C = malloc(sizeof(float) * M * N);
    for (int i = 0; i < M * K; i++) A[i] = frand(-1, 1);
    for (int i = 0; i < N * K; i++) W[i] = frand(-1, 1);
    for (int i = 0; i < N; i++) b[i] = frand(-1, 1);
    k_linear(M, N, K, A, K, W, b, C, N);
    double worst = 0;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = b[j];
            for (int k = 0; k < K; k++) s += (double)A[i * K + k] * W[j * K + k];
            double d = fabs(s - C[i * N + j]);
            if (d > worst) worst = d;
        }
    CHECK(worst < 1e-5, "k_linear max error %g", worst);
    free(A); free(W); free(b); free(C);
}

static void test_variant(const k_variant *v)
{
    const char *isa = v->name;
    enum { N = 1000 };
    static float in[N], out[N], ref[N];
    /* erf: all regions of the piecewise approximation, and the sign. */
    for (int i = 0; i < N; i++) in[i] = frand(-6, 6);
    in[0] = 0; in[1] = 1.0f; in[2] = -1.0f; in[3] = 4.0f; in[4] = -4.0f; in[5] = 1e-8f;
    v->erf(in, out, N);
    for (int i = 0; i < N; i++) ref[i] = (float)erf((double)in[i]);
    CHECK(maxdiff(out, ref, N) < 3e-7, "%s: erf max error %g", isa, maxdiff(out, ref, N));

    for (int i = 0; i < N; i++) in[i] = frand(-87, 88);
    in[0] = 0; in[1] = -200; in[2] = 88.0f;
    v->exp(in, out, N);
    double rel = 0;
    for (int i = 0; i < N; i++) {
        double e = exp((double)in[i]);
        double r = e > 1e-30 ? fabs(out[i] - e) / e : fabs(out[i] - e);
        if (r > rel) rel = r;
    }
    CHECK(rel < 5e-7, "%s: exp max relative error %g", isa, rel);

    /* bias + GELU on rows whose length is not a multiple of 16. */
    int rows = 7, cols = 1541;
    float *x = malloc(sizeof(float) * rows * cols), *y = malloc(sizeof(float) * rows * cols);
    float *bias = malloc(sizeof(float) * cols);
    for (int i = 0; i < rows * cols; i++) x[i] = y[i] = frand(-8, 8);
    for (int i = 0; i < cols; i++) bias[i] = frand(-1, 1);
    k_bias_gelu_ref(x, rows, cols, bias);
    v->bias_gelu(y, rows, cols, bias);
    CHECK(maxdiff(x, y, (size_t)rows * cols) < 2e-6, "%s: gelu max error %g", isa, maxdiff(x, y, (size_t)rows * cols));

    /* residual + bias + LayerNorm, with and without the optional inputs. */
    int H = 389;
    float *a = malloc(sizeof(float) * rows * H), *c = malloc(sizeof(float) * rows * H);
    float *res = malloc(sizeof(float) * rows * H), *g = malloc(sizeof(float) * H), *be = malloc(sizeof(float) * H);
    float *hb = malloc(sizeof(float) * H);
    for (int var = 0; var < 2; var++) {
        for (int i = 0; i < rows * H; i++) { a[i] = c[i] = frand(-3, 3) + 5.0f; res[i] = frand(-2, 2); }
        for (int i = 0; i < H; i++) { g[i] = frand(0.5f, 1.5f); be[i] = frand(-0.5f, 0.5f); hb[i] = frand(-1, 1); }
        k_add_layernorm_ref(a, var ? res : NULL, rows, H, var ? hb : NULL, g, be, 1e-12f);
        v->add_layernorm(c, var ? res : NULL, rows, H, var ? hb : NULL, g, be, 1e-12f);
        CHECK(maxdiff(a, c, (size_t)rows * H) < 2e-5, "%s: layernorm(variant %d) max error %g", isa, var,
              maxdiff(a, c, (size_t)rows * H));
    }

    /* softmax with a row stride and a scale, incl. a row of length 1. */
    int n = 133, ld = 140;
    float *s1 = malloc(sizeof(float) * n * ld), *s2 = malloc(sizeof(float) * n * ld);
    for (int i = 0; i < n * ld; i++) s1[i] = s2[i] = frand(-30, 30);
    k_softmax_ref(s1, n, n, ld, 0.17677669f);
    v->softmax(s2, n, n, ld, 0.17677669f);
    CHECK(maxdiff(s1, s2, (size_t)n * ld) < 1e-6, "%s: softmax max error %g", isa, maxdiff(s1, s2, (size_t)n * ld));
    double rowsum = 0;
    for (int i = 0; i < n; i++) rowsum += s2[i];
    CHECK(fabs(rowsum - 1.0) < 1e-5, "%s: softmax row sums to %g", isa, rowsum);
    s1[0] = s2[0] = 3.0f;
    k_softmax_ref(s1, 1, 1, 1, 1.0f);
    v->softmax(s2, 1, 1, 1, 1.0f);
    CHECK(s1[0] == 1.0f && s2[0] == 1.0f, "%s: softmax of one element: %g %g", isa, s1[0], s2[0]);

    /* bias add with stride */
    for (int i = 0; i < rows * cols; i++) x[i] = y[i] = frand(-1, 1);
    k_bias_add_ref(x, rows, 1000, cols, bias);
    v->bias_add(y, rows, 1000, cols, bias);
    CHECK(maxdiff(x, y, (size_t)rows * cols) == 0, "%s: bias add differs", isa);

    free(x); free(y); free(bias); free(a); free(c); free(res); free(g); free(be); free(hb);
    free(s1); free(s2);
}

int main(void)
{
    k_init();
    test_linear();
    k_variant vs[4];
    int nv = k_variants(vs, 4);
    CHECK(nv >= 1 && strcmp(vs[0].name, "ref") == 0, "the scalar reference is always listed");
    for (int i = 0; i < nv; i++) {
        printf("test_kernels: checking %s against the reference\n", vs[i].name);
        test_variant(&vs[i]);
    }
    return CHECK_DONE("test_kernels");
}
