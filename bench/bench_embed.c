/* bench_embed - embedding throughput and latency, printed as figures.
 *
 *   bench_embed [--model DIR] [--onet DIR] [--runs N]
 *
 * 1. The ceiling: OpenBLAS sgemm 2048x1536x384 on 1 and 2 threads (GFLOP/s).
 * 2. Batch: the O*NET job texts (title, description, technology skills) on 1
 *    and 2 threads: texts/s, tokens/s, GFLOP/s, and the ratio to the ceiling.
 * 3. Query: one short text embedded alone, 1 thread: p50 and p99 latency.
 * 4. Peak RSS of the process.
 * Medians of several runs; the OpenBLAS kernel name is printed beside them. */
#include <cblas.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "bert.h"
#include "common.h"
#include "kernels.h"

extern void openblas_set_num_threads(int);

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

typedef struct gemm_arg { int reps; double secs; } gemm_arg;

/* One single-threaded 2048x1536x384 product, `reps` times, on its own buffers. */
static void *gemm_worker(void *p)
{
    gemm_arg *g = p;
    int M = 2048, N = 1536, K = 384;
    float *A = malloc(sizeof(float) * M * K), *B = malloc(sizeof(float) * N * K), *C = malloc(sizeof(float) * M * N);
    for (int i = 0; i < M * K; i++) A[i] = (float)(i % 17) * 0.01f;
    for (int i = 0; i < N * K; i++) B[i] = (float)(i % 13) * 0.01f;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1, A, K, B, K, 0, C, N);
    double t0 = jm_now();
    for (int k = 0; k < g->reps; k++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1, A, K, B, K, 0, C, N);
    g->secs = jm_now() - t0;
    free(A); free(B); free(C);
    return NULL;
}

/* The ceiling on `threads` cores: that many single-threaded products at once
 * (jobmatch parallelises the same way, over texts). If blas_threads > 1, the
 * figure is instead one product split by OpenBLAS's own threading. */
static double sgemm_gflops(int threads, int blas_threads, int runs)
{
    double t[32];
    for (int r = 0; r < runs; r++) {
        gemm_arg g[8] = {{0, 0}};
        pthread_t tid[8];
        openblas_set_num_threads(blas_threads);
        for (int i = 0; i < threads; i++) {
            g[i].reps = 5;
            pthread_create(&tid[i], NULL, gemm_worker, &g[i]);
        }
        double worst = 0;
        for (int i = 0; i < threads; i++) {
            pthread_join(tid[i], NULL);
            if (g[i].secs > worst) worst = g[i].secs;
        }
        openblas_set_num_threads(1);
        t[r] = worst / (5.0 * threads);
    }
    return 2.0 * 2048 * 1536 * 384 / median(t, runs) / 1e9;
}

/* O*NET job texts: "Title. Description Skills: a, b, c." (the same text the
 * store embeds for an O*NET job). */
static int load_onet(const char *dir, char ***texts_out)
{
    char path[4096], *occ = NULL, *tech = NULL;
    jm_err err = {0};
    snprintf(path, sizeof path, "%s/Occupation Data.txt", dir);
    if (jm_read_file(path, &occ, NULL, &err)) { fprintf(stderr, "%s\n", err.msg); return -1; }
    snprintf(path, sizeof path, "%s/Technology Skills.txt", dir);
    if (jm_read_file(path, &tech, NULL, &err)) { fprintf(stderr, "%s\n", err.msg); free(occ); return -1; }
    int cap = 2048, n = 0;
    char **texts = calloc((size_t)cap, sizeof(char *));
    char *save = NULL;
    char *line = strtok_r(occ, "\r\n", &save); /* header */
    while ((line = strtok_r(NULL, "\r\n", &save)) && n < cap) {
        char *code = line, *title = strchr(code, '\t');
        if (!title) continue;
        *title++ = 0;
        char *desc = strchr(title, '\t');
        if (!desc) continue;
        *desc++ = 0;
        size_t sz = strlen(title) + strlen(desc) + 64, len = 0;
        char *t = malloc(sz);
        len = (size_t)snprintf(t, sz, "%s. %s Skills: ", title, desc);
        int nsk = 0;
        /* skills of this occupation: lines "code\tExample\t..." */
        size_t cl = strlen(code);
        for (char *p = tech; (p = strstr(p, code)); p += cl) {
            if (p != tech && p[-1] != '\n') continue;
            if (p[cl] != '\t') continue;
            char *s = p + cl + 1, *e = strchr(s, '\t');
            if (!e) break;
            size_t need = len + (size_t)(e - s) + 4;
            if (need > sz) { sz = need * 2; t = realloc(t, sz); }
            len += (size_t)snprintf(t + len, sz - len, "%s%.*s", nsk++ ? ", " : "", (int)(e - s), s);
        }
        texts[n++] = t;
    }
    free(occ);
    free(tech);
    *texts_out = texts;
    return n;
}

int main(int argc, char **argv)
{
    const char *model_dir = "models/all-MiniLM-L6-v2", *onet = "../shared/data/onet";
    int runs = 3;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--model")) model_dir = argv[i + 1];
        else if (!strcmp(argv[i], "--onet")) onet = argv[i + 1];
        else if (!strcmp(argv[i], "--runs")) runs = atoi(argv[i + 1]);
    }
    if (runs < 1 || runs > 32) runs = 3;
    jm_err err = {0};
    bert_model *m = NULL;
    if (bert_load(model_dir, &m, &err)) { fprintf(stderr, "bench_embed: %s\n", err.msg); return 1; }
    printf("# bench_embed: kernels %s, OpenBLAS core %s, %d CPUs\n", k_isa(), k_blas_core(), jm_ncpu());

    double ceil1 = sgemm_gflops(1, 1, runs), ceil2 = sgemm_gflops(2, 1, runs);
    double blas2 = sgemm_gflops(1, 2, runs);
    printf("sgemm 2048x1536x384: %.1f GFLOP/s on 1 core, %.1f GFLOP/s on 2 cores (two products at once); "
           "OpenBLAS splitting one product over 2 threads: %.1f GFLOP/s\n", ceil1, ceil2, blas2);

    char **texts = NULL;
    int n = load_onet(onet, &texts);
    if (n <= 0) { fprintf(stderr, "bench_embed: no O*NET texts in %s\n", onet); return 1; }
    float *out = malloc(sizeof(float) * (size_t)n * bert_dim(m));
    /* Count tokens and FLOPs once (tokenization is part of the timed runs below). */
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)bert_max_seq(m));
    double flops = 0;
    long tokens = 0;
    for (int i = 0; i < n; i++) {
        int k = tok_encode(bert_tokenizer(m), texts[i], strlen(texts[i]), ids, bert_max_seq(m));
        tokens += k;
        flops += bert_flops(m, k);
    }
    printf("corpus: %d O*NET job texts, %ld tokens, %.1f MFLOP/token\n", n, tokens, flops / tokens / 1e6);
    for (int th = 1; th <= 2; th++) {
        bert_pool *p = NULL;
        if (bert_pool_new(m, th, &p, &err)) { fprintf(stderr, "%s\n", err.msg); return 1; }
        double t[32];
        for (int r = 0; r < runs; r++) {
            double t0 = jm_now();
            if (bert_embed(p, n, (const char *const *)texts, NULL, out, NULL, &err)) {
                fprintf(stderr, "%s\n", err.msg);
                return 1;
            }
            t[r] = jm_now() - t0;
        }
        double s = median(t, runs), gf = flops / s / 1e9, c = th == 1 ? ceil1 : ceil2;
        printf("batch, %d thread%s: %.2f s, %.0f texts/s, %.0f tokens/s, %.1f GFLOP/s = %.0f%% of sgemm ceiling\n",
               th, th > 1 ? "s" : "", s, n / s, tokens / s, gf, 100 * gf / c);
        bert_pool_free(p);
    }

    /* Query latency: a 5-skill query, embedded alone on one thread. */
    const char *q = "python, sql, docker, kubernetes"; /* 13 ids: the issue asks for 8-14 */
    int qk = tok_encode(bert_tokenizer(m), q, strlen(q), ids, bert_max_seq(m));
    bert_pool *p1 = NULL;
    bert_pool_new(m, 1, &p1, &err);
    enum { QR = 1000 };
    static double lat[QR];
    for (int i = 0; i < 20; i++)
        bert_embed(p1, 1, &q, NULL, out, NULL, &err);
    for (int i = 0; i < QR; i++) {
        double t0 = jm_now();
        bert_embed(p1, 1, &q, NULL, out, NULL, &err);
        lat[i] = (jm_now() - t0) * 1e3;
    }
    qsort(lat, QR, sizeof(double), cmp_double);
    printf("query (%d tokens), 1 thread, %d runs: p50 %.2f ms, p99 %.2f ms\n", qk, QR, lat[QR / 2], lat[QR * 99 / 100]);
    bert_pool_free(p1);

    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("peak RSS: %.1f MB\n", ru.ru_maxrss / 1024.0);
    for (int i = 0; i < n; i++) free(texts[i]);
    free(texts);
    free(out);
    free(ids);
    bert_free(m);
    return 0;
}
