/* bench_gemm - the encoder's products: OpenBLAS against k_linear_p, one thread.
 *
 *   bench_gemm [--cold] [--ms T]
 *
 * For the encoder's shapes (N,K) = (1152,384) QKV, (384,384) attention out,
 * (1536,384) FFN in, (384,1536) FFN out, and M (tokens) from 1 to 1024,
 * prints the best time (us) and GFLOP/s of
 *   blas-NT  cblas_sgemm NoTrans,Trans on W[N,K]   (what k_linear does)
 *   blas-NN  cblas_sgemm NoTrans,NoTrans on Wt[K,N] (the transposed layout)
 *   packed   k_linear_p on k_pack(W)                (the model's product)
 * No bias in any of them. Weights are warm in L3 by default, as when one
 * matrix is multiplied over and over; --cold cycles through enough copies
 * (>= 64 MiB) that each call finds its weights out of cache, as in a real
 * forward pass over 24 matrices (~42 MiB for MiniLM-L6). --ms sets the time
 * per sample (default 10 ms); the best of 9 samples is printed. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "kernels.h"

extern void openblas_set_num_threads(int);

enum { MAX_M = 1024, SAMPLES = 9 };

typedef struct shape {
    int N, K;
    const char *what;
} shape;

typedef struct bufs {
    int N, K, ncopy;
    float **W, **Wt, **P; /* ncopy copies of W[N,K], Wt[K,N] and k_pack(W) */
    float *A, *C;    /* A[MAX_M,K], C[MAX_M,N] */
} bufs;

enum { IMPL_NT, IMPL_NN, IMPL_P, NIMPL };
static const char *impl_name[NIMPL] = {"blas-NT", "blas-NN", "packed"};

static unsigned long long rng = 0x9E3779B97F4A7C15ULL;
static float frand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 40) * (1.0 / 16777216.0)) - 0.5f;
}

static void run(int impl, const bufs *b, int copy, int M)
{
    int N = b->N, K = b->K;
    switch (impl) {
    case IMPL_NT:
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, b->A, K, b->W[copy], K,
                    0.0f, b->C, N);
        break;
    case IMPL_NN:
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, b->A, K,
                    b->Wt[copy], N, 0.0f, b->C, N);
        break;
    default:
        k_linear_p(M, N, K, b->A, K, b->P[copy], NULL, b->C, N);
        break;
    }
}

/* Seconds per call of each implementation, the best of SAMPLES samples of
 * ~sample_s each. The implementations take turns sample by sample, so a
 * burst of load from elsewhere on the machine hits them alike, and the best
 * sample is what the code does when it has the core (on a shared 2-core VM
 * medians moved by up to 40% between runs, the best mostly by under 10%). */
static void time_all(const bufs *b, int M, double sample_s, double t[NIMPL])
{
    int n[NIMPL], copy = 0;
    for (int i = 0; i < NIMPL; i++) { /* warm-up, and calibrate the repetitions */
        double t0 = jm_now();
        int reps = 0;
        while (jm_now() - t0 < sample_s / 4 || reps < 3) {
            run(i, b, copy, M);
            copy = (copy + 1) % b->ncopy;
            reps++;
        }
        n[i] = (int)(sample_s / ((jm_now() - t0) / reps)) + 1;
        t[i] = 1e30;
    }
    for (int s = 0; s < SAMPLES; s++)
        for (int i = 0; i < NIMPL; i++) {
            double t0 = jm_now();
            for (int r = 0; r < n[i]; r++) {
                run(i, b, copy, M);
                copy = (copy + 1) % b->ncopy;
            }
            double per = (jm_now() - t0) / n[i];
            if (per < t[i])
                t[i] = per;
        }
}

static float *alloc_floats(size_t n)
{
    size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
    float *p = aligned_alloc(64, bytes);
    if (!p) {
        fprintf(stderr, "bench_gemm: out of memory\n");
        exit(1);
    }
    return p;
}

int main(int argc, char **argv)
{
    int cold = 0;
    double sample_s = 0.010;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--cold"))
            cold = 1;
        else if (!strcmp(argv[i], "--ms") && i + 1 < argc)
            sample_s = atof(argv[++i]) / 1000.0;
        else {
            fprintf(stderr, "usage: bench_gemm [--cold] [--ms T]\n");
            return 2;
        }
    }
    k_init();
    openblas_set_num_threads(1);
    if (!k_linear_p_simd)
        fprintf(stderr, "bench_gemm: no SIMD product on this CPU (isa %s): the scalar reference\n", k_isa());
    static const shape shapes[] = {
        {1152, 384, "QKV"}, {384, 384, "attn out"}, {1536, 384, "FFN in"}, {384, 1536, "FFN out"}};
    static const int Ms[] = {1, 8, 12, 16, 19, 24, 32, 48, 64, 128, 256, 1024};
    printf("bench_gemm: 1 thread, isa %s, OpenBLAS core %s, weights %s\n", k_isa(), k_blas_core(),
           cold ? "cold (cycled copies >= 64 MiB)" : "warm");
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        bufs b = {.N = shapes[s].N, .K = shapes[s].K};
        size_t wn = (size_t)b.N * b.K;
        b.ncopy = cold ? (int)((64u << 20) / (wn * sizeof(float)) + 1) : 1;
        b.W = calloc((size_t)b.ncopy, sizeof(float *));
        b.Wt = calloc((size_t)b.ncopy, sizeof(float *));
        b.P = calloc((size_t)b.ncopy, sizeof(float *));
        for (int c = 0; c < b.ncopy; c++) {
            b.W[c] = alloc_floats(wn);
            b.Wt[c] = alloc_floats(wn);
            b.P[c] = alloc_floats(k_pack_floats(b.N, b.K));
            for (size_t i = 0; i < wn; i++)
                b.W[c][i] = frand();
            for (int n = 0; n < b.N; n++)
                for (int k = 0; k < b.K; k++)
                    b.Wt[c][(size_t)k * b.N + n] = b.W[c][(size_t)n * b.K + k];
            k_pack(b.W[c], b.N, b.K, b.P[c]);
        }
        b.A = alloc_floats((size_t)MAX_M * b.K);
        b.C = alloc_floats((size_t)MAX_M * b.N);
        for (size_t i = 0; i < (size_t)MAX_M * b.K; i++)
            b.A[i] = frand();

        printf("\nN=%d K=%d (%s)\n%5s", b.N, b.K, shapes[s].what, "M");
        for (int i = 0; i < NIMPL; i++)
            printf(" | %8s us  GF/s", impl_name[i]);
        printf(" | NT/packed\n");
        for (size_t mi = 0; mi < sizeof Ms / sizeof Ms[0]; mi++) {
            int M = Ms[mi];
            double flop = 2.0 * M * b.N * b.K, t[NIMPL];
            printf("%5d", M);
            time_all(&b, M, sample_s, t);
            for (int i = 0; i < NIMPL; i++)
                printf(" | %11.1f %5.1f", t[i] * 1e6, flop / t[i] / 1e9);
            printf(" | %7.2fx\n", t[IMPL_NT] / t[IMPL_P]);
            fflush(stdout);
        }
        for (int c = 0; c < b.ncopy; c++) {
            free(b.W[c]);
            free(b.Wt[c]);
            free(b.P[c]);
        }
        free(b.W);
        free(b.Wt);
        free(b.P);
        free(b.A);
        free(b.C);
    }
    return 0;
}
