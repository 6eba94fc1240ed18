/* bench_idx - the vector index on clustered, embedding-like data, one thread.
 *
 *   bench_idx [--n N]... [--queries Q] [--dim D] [--no-scan-only] [--no-sweep]
 *             [--vectors FILE --query-vectors FILE] [--ivf-min N]
 *
 * For each N (default 100000 and 1000000; dim 384) prints: build time and
 * bytes (idx_bytes and the growth of the process's RSS), latency p50/p99 of
 * idx_search (k = 10) and idx_search_exact (k = 10, 100 candidates, the
 * exact vectors fetched from memory) over Q queries (default 1000), their
 * top-10 recall against an exact float32 brute force (BLAS, then the best 30
 * re-scored in double), how many candidates idx_search_exact needs to cover
 * the exact top 10 (p50/p90/p99/max of the worst approximate rank of a
 * true top-10 slot, up to 512); then (unless --no-sweep) the same latency
 * and recall for other probe counts, and with `allow` filters passing 50%,
 * 10%, 1% and 0.1% of the vectors (random, 300 queries, against a brute
 * force over the allowed ones) for filter exponents 0, 0.5 and 1; the time
 * to save the index to a file and load it back (from the page cache), with
 * a check that the loaded index answers alike; for comparison the exhaustive
 * 4-bit scan (idx_set_ivf(SIZE_MAX); 200 queries); and one streaming query
 * (idx_topk over all N float32 vectors). The data: unit vectors around 500
 * centres in 50 topics plus a direction common to all (mean norm ~0.5,
 * unrelated pairs at cosine ~0.25, like all-MiniLM-L6-v2 on job texts), with
 * near-tied neighbours. Needs ~1.7 GB at N = 1M for the float32 copy the
 * fetch and the brute force read. --vectors / --query-vectors take the
 * data from files instead (raw float32 [n][dim], this machine's byte order;
 * N = the whole file unless --n is smaller; Q = at most the query file's).
 * --ivf-min sets the live count at which the lists are first trained
 * (idx_set_ivf; default IDX_IVF_MIN). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "idx.h"
#include "kernels.h"

static uint64_t rng_state = 0x2545F4914F6CDD1DULL;
static uint64_t rnd(void) /* splitmix64 */
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* Approximately normal (sum of four 16-bit uniforms, variance 1): plenty for
 * random directions, and fast enough for 400M samples. */
static float gauss(void)
{
    uint64_t r = rnd();
    int s = (int)(r & 0xffff) + (int)(r >> 16 & 0xffff) + (int)(r >> 32 & 0xffff) + (int)(r >> 48);
    return (float)((s - 131070) * (1.7320508 / 65536.0));
}

static void normalise(float *v, int dim)
{
    double s = 0;
    for (int d = 0; d < dim; d++)
        s += (double)v[d] * v[d];
    s = s > 0 ? 1 / sqrt(s) : 0;
    for (int d = 0; d < dim; d++)
        v[d] = (float)(v[d] * s);
}

static void unit(float *v, int dim)
{
    for (int d = 0; d < dim; d++)
        v[d] = gauss();
    normalise(v, dim);
}

/* n + nq vectors into base and queries: see the header comment. */
static void make_data(int dim, long n, int nq, float *base, float *queries)
{
    enum { NTOPIC = 50, NCENTRE = 500 };
    float *common = malloc(sizeof(float) * dim), *topic = malloc(sizeof(float) * dim * NTOPIC);
    float *centre = malloc(sizeof(float) * dim * NCENTRE), *tmp = malloc(sizeof(float) * dim);
    unit(common, dim);
    for (int t = 0; t < NTOPIC; t++)
        unit(topic + (size_t)t * dim, dim);
    for (int j = 0; j < NCENTRE; j++) {
        unit(tmp, dim);
        for (int d = 0; d < dim; d++)
            centre[(size_t)j * dim + d] = topic[(size_t)(j % NTOPIC) * dim + d] + tmp[d];
        normalise(centre + (size_t)j * dim, dim);
    }
    for (long i = 0; i < n + nq; i++) {
        float *v = i < n ? base + (size_t)i * dim : queries + (size_t)(i - n) * dim;
        const float *c = centre + (size_t)(rnd() % NCENTRE) * dim;
        float noise = 0.6f + 0.5f * (float)(rnd() >> 11) * (1.0f / 9007199254740992.0f);
        unit(v, dim);
        for (int d = 0; d < dim; d++)
            v[d] = 0.7f * common[d] + 0.8f * c[d] + noise * v[d];
        normalise(v, dim);
    }
    free(common);
    free(topic);
    free(centre);
    free(tmp);
}

/* Exact top 10 per query among the slots `allow` passes (NULL: all):
 * truth[q*10..], scores in double (fewer than 10: the rest -1e300). */
static void exact_truth(int dim, long n, int nq, const float *base, const float *queries,
                        const uint64_t *allow, uint32_t *truth, double *truth_s)
{
    enum { T = 30, CH = 4096 };
    float *S = malloc(sizeof(float) * nq * CH), *ts = malloc(sizeof(float) * nq * T);
    uint32_t *ti = malloc(sizeof(uint32_t) * nq * T);
    int *tn = calloc(nq, sizeof(int));
    for (long c0 = 0; c0 < n; c0 += CH) {
        int m = n - c0 < CH ? (int)(n - c0) : CH;
        k_linear(nq, m, dim, queries, dim, base + (size_t)c0 * dim, NULL, S, m);
        for (int q = 0; q < nq; q++) {
            float *a = ts + q * T;
            uint32_t *ai = ti + q * T;
            for (int i = 0; i < m; i++) {
                float s = S[(size_t)q * m + i];
                long sl = c0 + i;
                if (allow && !(allow[sl / 64] >> (sl % 64) & 1))
                    continue;
                if (tn[q] == T && s <= a[T - 1])
                    continue;
                int j = tn[q] < T ? tn[q]++ : T - 1;
                for (; j > 0 && a[j - 1] < s; j--) {
                    a[j] = a[j - 1];
                    ai[j] = ai[j - 1];
                }
                a[j] = s;
                ai[j] = (uint32_t)(c0 + i);
            }
        }
    }
    for (int q = 0; q < nq; q++) {
        double s[T];
        uint32_t id[T];
        for (int i = 0; i < T; i++) {
            if (i >= tn[q]) {
                s[i] = -1e300;
                id[i] = UINT32_MAX;
                continue;
            }
            id[i] = ti[q * T + i];
            double v = 0;
            for (int d = 0; d < dim; d++)
                v += (double)queries[(size_t)q * dim + d] * base[(size_t)id[i] * dim + d];
            s[i] = v;
            uint32_t iv = id[i];
            int j = i;
            for (; j > 0 && (s[j - 1] < v || (s[j - 1] == v && id[j - 1] > iv)); j--) {
                s[j] = s[j - 1];
                id[j] = id[j - 1];
            }
            s[j] = v;
            id[j] = iv;
        }
        memcpy(truth + q * 10, id, sizeof(uint32_t) * 10);
        memcpy(truth_s + q * 10, s, sizeof(double) * 10);
    }
    free(S);
    free(ts);
    free(ti);
    free(tn);
}

typedef struct data {
    int dim;
    long n;
    const float *base, *queries;
    const uint32_t *truth;
    const double *truth_s;
    const uint64_t *allow;
} data;

/* Top 10 equal to the exact one, position by position, up to 1e-6 in score. */
static int match(const data *D, int q, const idx_hit *h, int n)
{
    if (n < 10)
        return 0;
    for (int i = 0; i < 10; i++) {
        double v = 0;
        for (int d = 0; d < D->dim; d++)
            v += (double)D->queries[(size_t)q * D->dim + d] * D->base[(size_t)h[i].slot * D->dim + d];
        if (fabs(v - D->truth_s[q * 10 + i]) > 1e-6)
            return 0;
    }
    return 1;
}

static int fetch_mem(void *ctx, const uint32_t *slots, int n, float *vecs, jm_err *err)
{
    (void)err;
    const data *D = ctx;
    for (int i = 0; i < n; i++)
        memcpy(vecs + (size_t)i * D->dim, D->base + (size_t)slots[i] * D->dim, sizeof(float) * D->dim);
    return JM_OK;
}

/* VmRSS (or with peak, VmHWM) of this process in KiB, -1 if unknown. */
static long rss_kb(int peak)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    const char *key = peak ? "VmHWM:" : "VmRSS:";
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, key, 6) == 0)
            kb = atol(line + 6);
    if (f)
        fclose(f);
    return kb;
}

static int cmpd(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Runs nq queries; prints p50/p99 latency and recall. exact: idx_search_exact. */
static double run_queries(const char *what, const idx *x, const data *D, int nq, int exact)
{
    double *lat = malloc(sizeof(double) * nq);
    int ok = 0, errs = 0;
    jm_err e;
    for (int q = 0; q < nq; q++) {
        idx_hit h[10];
        int n = 0;
        const float *qv = D->queries + (size_t)q * D->dim;
        double t0 = jm_now();
        int rc = exact ? idx_search_exact(x, qv, 10, 0, D->allow, fetch_mem, (void *)D, h, &n, &e)
                       : idx_search(x, qv, 10, D->allow, h, &n, &e);
        lat[q] = (jm_now() - t0) * 1e3;
        errs += rc != JM_OK;
        ok += match(D, q, h, n);
    }
    qsort(lat, nq, sizeof(double), cmpd);
    printf("  %-34s p50 %7.3f ms  p99 %7.3f ms  top-10 = exact on %5.1f%% of %d%s\n", what,
           lat[nq / 2], lat[(int)(nq * 0.99)], 100.0 * ok / nq, nq, errs ? "  (ERRORS)" : "");
    free(lat);
    return 100.0 * ok / nq;
}

static int cmpi(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return x < y ? -1 : x > y;
}

/* How many candidates idx_search_exact needs: per query, the largest rank
 * (1-based) in idx_search's approximate list of any of the exact top 10
 * (RANKMAX + 1 when beyond RANKMAX). k = RANKMAX = 512 keeps the prefilter's
 * `keep` at its value for up to 512 candidates (8 * 512 = 4096), so the
 * ranks are those any candidate count up to 512 sees. */
static void candidates_needed(const idx *x, const data *D, int nq)
{
    enum { RANKMAX = 512 };
    idx_hit *h = malloc(sizeof(idx_hit) * RANKMAX);
    int *need = malloc(sizeof(int) * nq);
    jm_err e;
    for (int q = 0; q < nq; q++) {
        int n = 0;
        idx_search(x, D->queries + (size_t)q * D->dim, RANKMAX, NULL, h, &n, &e);
        int worst = 0;
        for (int t = 0; t < 10; t++) {
            int r = 0;
            while (r < n && h[r].slot != D->truth[q * 10 + t])
                r++;
            r = r < n ? r + 1 : RANKMAX + 1;
            worst = r > worst ? r : worst;
        }
        need[q] = worst;
    }
    qsort(need, nq, sizeof(int), cmpi);
    int at[] = {50, 100, 150, 200, 300};
    printf("  candidates covering the exact top 10: p50 %d, p90 %d, p99 %d, max %d%s; covered at",
           need[nq / 2], need[(int)(nq * 0.9)], need[(int)(nq * 0.99)], need[nq - 1],
           need[nq - 1] > RANKMAX ? " (> 512)" : "");
    for (size_t i = 0; i < sizeof at / sizeof at[0]; i++) {
        int c = 0;
        while (c < nq && need[c] <= at[i])
            c++;
        printf(" %d: %.1f%%%s", at[i], 100.0 * c / nq, i + 1 < sizeof at / sizeof at[0] ? "," : "\n");
    }
    free(h);
    free(need);
}

static const char *vec_path, *qvec_path;
static size_t ivf_min = IDX_IVF_MIN;

/* Reads up to max rows of dim floats from path; returns the rows read. */
static long read_vecs(const char *path, int dim, long max, float **out)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "bench_idx: cannot open %s\n", path);
        exit(1);
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f) / (long)(sizeof(float) * dim);
    fseek(f, 0, SEEK_SET);
    if (max > 0 && n > max)
        n = max;
    *out = malloc(sizeof(float) * dim * (size_t)(n ? n : 1));
    if (!*out || fread(*out, sizeof(float) * dim, (size_t)n, f) != (size_t)n) {
        fprintf(stderr, "bench_idx: cannot read %s\n", path);
        exit(1);
    }
    fclose(f);
    return n;
}

static void bench_n(int dim, long n, int nq, int scan_only, int sweep)
{
    float *fbase = NULL, *fqv = NULL;
    if (vec_path) {
        n = read_vecs(vec_path, dim, n, &fbase);
        nq = (int)read_vecs(qvec_path, dim, nq, &fqv);
    }
    printf("N = %ld, dim %d, %d queries, kernel %s\n", n, dim, nq, idx_isa());
    float *base = malloc(sizeof(float) * dim * n), *queries = malloc(sizeof(float) * dim * nq);
    uint32_t *truth = malloc(sizeof(uint32_t) * nq * 10);
    double *truth_s = malloc(sizeof(double) * nq * 10);
    if (!base || !queries || !truth || !truth_s) {
        fprintf(stderr, "bench_idx: out of memory for N = %ld\n", n);
        exit(1);
    }
    double t0 = jm_now();
    if (fbase) {
        memcpy(base, fbase, sizeof(float) * dim * n);
        memcpy(queries, fqv, sizeof(float) * dim * nq);
        free(fbase);
        free(fqv);
    } else {
        make_data(dim, n, nq, base, queries);
    }
    double tgen = jm_now() - t0;
    t0 = jm_now();
    exact_truth(dim, n, nq, base, queries, NULL, truth, truth_s);
    printf("  data %.1f s, brute-force truth %.1f s\n", tgen, jm_now() - t0);
    data D = {dim, n, base, queries, truth, truth_s, NULL};

    jm_err e;
    idx *x;
    long rss0 = rss_kb(0);
    t0 = jm_now();
    if (idx_new(dim, &x, &e) || idx_set_ivf(x, ivf_min, &e)) {
        fprintf(stderr, "bench_idx: %s\n", e.msg);
        exit(1);
    }
    for (long i = 0; i < n; i++)
        if (idx_set(x, (uint32_t)i, base + (size_t)i * dim, &e)) {
            fprintf(stderr, "bench_idx: %s\n", e.msg);
            exit(1);
        }
    double tb = jm_now() - t0;
    long rss1 = rss_kb(0), hwm = rss_kb(1);
    size_t b = idx_bytes(x);
    printf("  build (idx_set x N, growing by doubling) %.2f s = %.2f us/vector\n", tb, tb * 1e6 / n);
    printf("  idx_bytes %.1f MiB = %.1f bytes/vector; RSS grew by %.1f MiB (peak: %.1f MiB); %d "
           "lists\n",
           b / 1048576.0, (double)b / n, (rss1 - rss0) / 1024.0, (hwm - rss0) / 1024.0,
           idx_nlist(x));
    run_queries("idx_search k=10", x, &D, nq, 0);
    run_queries("idx_search_exact k=10 (100 cand)", x, &D, nq, 1);
    candidates_needed(x, &D, nq);
    if (idx_nlist(x) > 0 && nq >= 20) {
        /* nprobe calibrated (idx_probe_need, idx_probe_pick at 99.5%) on the
         * first half of the queries, measured on the second half */
        int half = nq / 2, *need = malloc(sizeof(int) * half);
        double tn = jm_now();
        if (idx_probe_need(x, queries, half, 10, 0, fetch_mem, &D, need, &e)) {
            fprintf(stderr, "bench_idx: %s\n", e.msg);
            exit(1);
        }
        tn = jm_now() - tn;
        int pick = idx_probe_pick(need, half, 0.995);
        qsort(need, half, sizeof(int), cmpi);
        printf("  calibration on %d queries (%.2f s): lists needed p50 %d, p90 %d, p99 %d, max %d "
               "of %d; nprobe %d\n",
               half, tn, need[half / 2], need[half * 9 / 10], need[half * 99 / 100], need[half - 1],
               idx_nlist(x), pick);
        free(need);
        data D2 = D;
        D2.queries = queries + (size_t)half * dim;
        D2.truth = truth + (size_t)half * 10;
        D2.truth_s = truth_s + (size_t)half * 10;
        char what[64];
        snprintf(what, sizeof what, "calibrated, other %d", nq - half);
        idx_set_probe(x, pick, IDX_FILTER_EXP, &e);
        run_queries(what, x, &D2, nq - half, 1);
        idx_set_probe(x, IDX_NPROBE, IDX_FILTER_EXP, &e);
    }

    if (sweep && idx_nlist(x) > 0) {
        static const int probes[] = {1, 2, 4, 8, 16, 32, 64, 128};
        printf("  idx_search_exact k=10 by lists probed (default %d):\n", IDX_NPROBE);
        for (size_t i = 0; i < sizeof probes / sizeof probes[0]; i++) {
            char what[64];
            snprintf(what, sizeof what, "nprobe %d", probes[i]);
            idx_set_probe(x, probes[i], IDX_FILTER_EXP, &e);
            run_queries(what, x, &D, nq, 1);
        }
        idx_set_probe(x, IDX_NPROBE, IDX_FILTER_EXP, &e);
        /* Filters: random bitmaps, the truth among the allowed slots. */
        static const double fracs[] = {0.5, 0.1, 0.01, 0.001};
        static const float exps[] = {0, 0.5f, 1};
        int fq = nq < 300 ? nq : 300;
        uint64_t *allow = malloc(sizeof(uint64_t) * ((size_t)n / 64 + 1));
        uint32_t *ftruth = malloc(sizeof(uint32_t) * fq * 10);
        double *ftruth_s = malloc(sizeof(double) * fq * 10);
        for (size_t fi = 0; fi < sizeof fracs / sizeof fracs[0]; fi++) {
            memset(allow, 0, sizeof(uint64_t) * ((size_t)n / 64 + 1));
            uint64_t thr = (uint64_t)(fracs[fi] * 18446744073709551615.0);
            /* its own generator: the data of a later N stay those of a run without filters */
            uint64_t fs = 0x9E3779B97F4A7C15ULL * (fi + 1);
            for (long i = 0; i < n; i++) {
                uint64_t z = (fs += 0x9E3779B97F4A7C15ULL);
                z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
                z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
                if ((z ^ (z >> 31)) <= thr)
                    allow[i / 64] |= 1ULL << (i % 64);
            }
            exact_truth(dim, n, fq, base, queries, allow, ftruth, ftruth_s);
            data F = {dim, n, base, queries, ftruth, ftruth_s, allow};
            for (size_t xi = 0; xi < sizeof exps / sizeof exps[0]; xi++) {
                char what[64];
                snprintf(what, sizeof what, "allow %g%%, filter_exp %g", 100 * fracs[fi], exps[xi]);
                idx_set_probe(x, IDX_NPROBE, exps[xi], &e);
                run_queries(what, x, &F, fq, 1);
            }
        }
        idx_set_probe(x, IDX_NPROBE, IDX_FILTER_EXP, &e);
        free(allow);
        free(ftruth);
        free(ftruth_s);
    }

    /* Snapshot: save, load back (the file is in the page cache), compare. */
    {
        const char *path = "/tmp/bench_idx.snapshot";
        jm_bin bw, br;
        double ts0 = jm_now();
        int rc = jm_bin_open(&bw, path, "w", &e) || idx_save(x, &bw, &e);
        uint64_t sum = jm_bin_sum(&bw);
        rc = rc || jm_bin_close(&bw, &e);
        double tsave = jm_now() - ts0;
        idx *y = NULL;
        long rssl0 = rss_kb(0);
        ts0 = jm_now();
        rc = rc || jm_bin_open(&br, path, "r", &e) || idx_load(&br, &y, &e);
        double tload = jm_now() - ts0;
        rc = rc || jm_bin_sum(&br) != sum;
        jm_bin_close(&br, &e);
        long rssl1 = rss_kb(0);
        int same = 0;
        for (int q = 0; !rc && q < 100 && q < nq; q++) {
            idx_hit h1[10], h2[10];
            int n1 = 0, n2 = 0;
            idx_search(x, queries + (size_t)q * dim, 10, NULL, h1, &n1, &e);
            idx_search(y, queries + (size_t)q * dim, 10, NULL, h2, &n2, &e);
            same += n1 == n2 && memcmp(h1, h2, sizeof(idx_hit) * n1) == 0;
        }
        printf("  snapshot: save %.3f s, load %.3f s (%.1f MiB loaded, RSS +%.1f MiB), same "
               "results on %d of %d%s\n",
               tsave, tload, (double)br.bytes / 1048576.0, (rssl1 - rssl0) / 1024.0, same,
               nq < 100 ? nq : 100, rc ? "  (ERROR)" : "");
        if (y)
            run_queries("loaded: idx_search_exact", y, &D, nq, 1);
        idx_free(y);
        remove(path);
    }

    if (scan_only) {
        idx_set_ivf(x, SIZE_MAX, &e);
        int q8 = nq < 200 ? nq : 200;
        printf("  without the lists (exhaustive):\n");
        run_queries("idx_search k=10, 4-bit scan", x, &D, q8, 0);
        run_queries("idx_search_exact, 4-bit scan", x, &D, q8, 1);
        printf("  (the 4-bit scan reads %.0f MB per query)\n", (double)n * ((dim + 63) / 64 * 32) / 1e6);
    }

    /* Stream mode: one query over all vectors in chunks of 4096. */
    idx_topk *t = idx_topk_new(10);
    uint32_t *slots = malloc(sizeof(uint32_t) * 4096);
    t0 = jm_now();
    for (long i = 0; i < n; i += 4096) {
        int m = n - i < 4096 ? (int)(n - i) : 4096;
        for (int j = 0; j < m; j++)
            slots[j] = (uint32_t)(i + j);
        idx_topk_add_f32(t, queries, base + (size_t)i * dim, slots, m, dim);
    }
    double ts = jm_now() - t0;
    idx_hit h[10];
    int nh = idx_topk_result(t, h);
    printf("  idx_topk over all N float32 vectors: %.1f ms (%.1f GB/s), top-10 = exact: %s\n",
           ts * 1e3, (double)n * dim * 4 / ts / 1e9, match(&D, 0, h, nh) ? "yes" : "NO");
    idx_topk_free(t);
    free(slots);
    idx_free(x);
    free(base);
    free(queries);
    free(truth);
    free(truth_s);
}

int main(int argc, char **argv)
{
    long ns[8];
    int nn = 0, nq = 1000, dim = 384, scan_only = 1, sweep = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--n") && i + 1 < argc && nn < 8)
            ns[nn++] = atol(argv[++i]);
        else if (!strcmp(argv[i], "--queries") && i + 1 < argc)
            nq = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--dim") && i + 1 < argc)
            dim = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-scan-only") || !strcmp(argv[i], "--no-int8-only"))
            scan_only = 0;
        else if (!strcmp(argv[i], "--no-sweep"))
            sweep = 0;
        else if (!strcmp(argv[i], "--vectors") && i + 1 < argc)
            vec_path = argv[++i];
        else if (!strcmp(argv[i], "--query-vectors") && i + 1 < argc)
            qvec_path = argv[++i];
        else if (!strcmp(argv[i], "--ivf-min") && i + 1 < argc)
            ivf_min = (size_t)atol(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_idx [--n N]... [--queries Q] [--dim D] [--no-scan-only] "
                            "[--no-sweep]\n"
                            "                 [--vectors FILE --query-vectors FILE] [--ivf-min N]\n");
            return 2;
        }
    }
    if (!vec_path != !qvec_path) {
        fprintf(stderr, "bench_idx: --vectors and --query-vectors go together\n");
        return 2;
    }
    if (!nn) {
        ns[nn++] = vec_path ? 0 : 100000;
        if (!vec_path)
            ns[nn++] = 1000000;
    }
    if (nq < 1 || dim < 1) {
        fprintf(stderr, "bench_idx: bad --queries or --dim\n");
        return 2;
    }
    k_init();
    printf("bench_idx: one thread, kernel %s, inverted lists from %d live vectors, %d probed\n",
           idx_isa(), IDX_IVF_MIN, IDX_NPROBE);
    for (int i = 0; i < nn; i++)
        bench_n(dim, ns[i], nq, scan_only, sweep);
    return 0;
}
