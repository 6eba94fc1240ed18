/* test_idx.c - the vector index: every scan kernel against the scalar
 * reference (4-bit and Hamming results must be identical, float32 within
 * 2e-6), top-k order and ties, the allow bitmap, remove/replace, growth,
 * errors, the streaming accumulator, concurrent searches, and the recall of
 * idx_search_exact against an exact float32 brute force on clustered data
 * that looks like job embeddings. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "idx.h"
#include "kernels.h"

/* ---- Random numbers and data ---- */

static uint64_t rng_state = 0x853c49e6748fea9bULL;
static uint64_t rnd(void) /* splitmix64 */
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}
static double unif(void) { return (double)(rnd() >> 11) * (1.0 / 9007199254740992.0); }
static double gauss(void)
{
    double u = unif() + 1e-300, v = unif();
    return sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
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
        v[d] = (float)gauss();
    normalise(v, dim);
}

/* Clustered unit vectors shaped like sentence embeddings of job ads, not
 * isotropic noise: a direction common to all (the mean has norm ~0.5 and two
 * unrelated vectors have cosine ~0.25, as for all-MiniLM-L6-v2 on O*NET
 * texts), 500 cluster centres grouped in 50 topics, and per-vector noise of
 * varying strength, so that a query's neighbours sit at cosine ~0.65 with
 * gaps of ~0.003 between consecutive ones: many near-ties. */
typedef struct gen {
    int dim, ncentre;
    float *common, *centre; /* [dim], [ncentre][dim] */
} gen;

static void gen_init(gen *g, int dim, int ntopic, int ncentre)
{
    g->dim = dim;
    g->ncentre = ncentre;
    g->common = malloc(sizeof(float) * dim);
    g->centre = malloc(sizeof(float) * dim * ncentre);
    float *topic = malloc(sizeof(float) * dim * ntopic), *tmp = malloc(sizeof(float) * dim);
    unit(g->common, dim);
    for (int t = 0; t < ntopic; t++)
        unit(topic + (size_t)t * dim, dim);
    for (int j = 0; j < ncentre; j++) {
        float *c = g->centre + (size_t)j * dim;
        const float *tp = topic + (size_t)(j % ntopic) * dim;
        unit(tmp, dim);
        for (int d = 0; d < dim; d++)
            c[d] = tp[d] + tmp[d];
        normalise(c, dim);
    }
    free(topic);
    free(tmp);
}

/* One vector; returns the number of the centre it was drawn around. */
static int gen_vec(const gen *g, float *out)
{
    int ci = (int)(rnd() % (uint64_t)g->ncentre);
    const float *c = g->centre + (size_t)ci * g->dim;
    float noise = 0.6f + 0.5f * (float)unif();
    unit(out, g->dim);
    for (int d = 0; d < g->dim; d++)
        out[d] = 0.7f * g->common[d] + 0.8f * c[d] + noise * out[d];
    normalise(out, g->dim);
    return ci;
}

static void gen_free(gen *g)
{
    free(g->common);
    free(g->centre);
}

static double ddot(const float *a, const float *b, int dim)
{
    double s = 0;
    for (int d = 0; d < dim; d++)
        s += (double)a[d] * b[d];
    return s;
}

/* ---- Kernels against the reference ---- */

static void test_kernels(void)
{
    idx_kernel kv[8];
    int nv = idx_kernel_variants(kv, 8);
    CHECK(nv >= 1 && strcmp(kv[0].name, "scalar") == 0, "first variant is %s", kv[0].name);
    printf("kernels: %d variant(s), searches use %s\n", nv, idx_isa());
    static const int dims[] = {1, 7, 31, 32, 33, 63, 100, 383, 384, 385, 769};
    enum { N = 1037 };
    for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++) {
        int dim = dims[di];
        size_t row = ((size_t)dim + 63) / 64 * 32; /* bytes per 4-bit row */
        uint8_t *codes = malloc((size_t)N * row);
        int8_t *q = calloc(2 * row, 1), lut[16];
        uint32_t slots[N], perm[N];
        int32_t ref[N], got[N];
        for (size_t i = 0; i < (size_t)N * row; i++)
            codes[i] = (uint8_t)rnd();
        /* Extremes in the first two rows: all nibbles 15, all 0, with the
         * table's ends at +-64 and q at +-63: the largest sums the kernel
         * must get right without saturating its int16 pairs. Round 3 puts
         * every q at its extreme. */
        memset(codes, 0xff, row);
        memset(codes + row, 0, row);
        for (int round = 0; round < 4; round++) {
            for (int d = 0; d < dim; d++)
                q[d] = round == 3 ? (int8_t)(d % 3 ? 63 : -63) : (int8_t)((int)(rnd() % 127) - 63);
            q[0] = -63;
            /* a monotonic table like the index's, a random one, two of extremes */
            for (int u = 0; u < 16; u++)
                lut[u] = round == 0 ? (int8_t)(u < 8 ? -64 + 9 * u : 64 - 9 * (15 - u))
                         : round == 1 ? (int8_t)((int)(rnd() % 129) - 64)
                                      : (int8_t)(u % 2 ? 64 : -64);
            lut[15] = 64;
            lut[0] = round >= 2 ? 64 : -64;
            for (int i = 0; i < N; i++)
                slots[i] = (uint32_t)i;
            for (int i = 0; i < N; i++)
                perm[i] = (uint32_t)(rnd() % N);
            kv[0].dot_u4(q, lut, codes, row, slots, N, ref);
            /* the reference against a naive unpacking of the layout:
             * component d is in byte (d / 64) * 32 + d % 32, low nibble
             * when d % 64 < 32 */
            int ok = 1;
            for (int r = 0; r < 6; r++) {
                int64_t naive = 0;
                for (int d = 0; d < dim; d++) {
                    uint8_t byte = codes[(size_t)r * row + (size_t)(d / 64) * 32 + d % 32];
                    naive += (int64_t)q[d] * lut[d % 64 < 32 ? byte & 15 : byte >> 4];
                }
                ok &= ref[r] == naive;
            }
            CHECK(ok, "dim %d table %d: reference dot differs from the naive one", dim, round);
            for (int v = 1; v < nv; v++) {
                kv[v].dot_u4(q, lut, codes, row, slots, N, got);
                CHECK(memcmp(ref, got, sizeof ref) == 0, "%s: dot_u4 dim %d table %d contiguous differs",
                      kv[v].name, dim, round);
                /* Gathered rows, and short runs that exercise the 4-row tail. */
                int32_t ref2[N];
                kv[0].dot_u4(q, lut, codes, row, perm, N, ref2);
                kv[v].dot_u4(q, lut, codes, row, perm, N, got);
                CHECK(memcmp(ref2, got, sizeof ref2) == 0, "%s: dot_u4 dim %d table %d gathered differs",
                      kv[v].name, dim, round);
                for (int n = 0; n < 7; n++) {
                    kv[v].dot_u4(q, lut, codes, row, perm + 11, n, got);
                    CHECK(memcmp(ref2 + 11, got, sizeof(int32_t) * n) == 0, "%s: dot_u4 dim %d n %d",
                          kv[v].name, dim, n);
                }
            }
        }

        /* float32 dot on unit-ish vectors. */
        float *fq = malloc(sizeof(float) * dim), *fv = malloc(sizeof(float) * dim * 37);
        float fr[37], fg[37];
        unit(fq, dim);
        for (int i = 0; i < 37; i++)
            unit(fv + (size_t)i * dim, dim);
        kv[0].dot_f32(fq, fv, dim, 37, fr);
        double worst = 0;
        for (int i = 0; i < 37; i++)
            worst = fmax(worst, fabs(fr[i] - ddot(fq, fv + (size_t)i * dim, dim)));
        CHECK(worst < 2e-6, "scalar dot_f32 dim %d off by %g", dim, worst);
        for (int v = 1; v < nv; v++) {
            kv[v].dot_f32(fq, fv, dim, 37, fg);
            worst = 0;
            for (int i = 0; i < 37; i++)
                worst = fmax(worst, fabs(fr[i] - fg[i]));
            CHECK(worst < 2e-6, "%s: dot_f32 dim %d differs by %g", kv[v].name, dim, worst);
        }
        free(fq);
        free(fv);
        free(codes);
        free(q);
    }

    /* One 4-bit row against int8 centroids (+64, in [1, 127]), for the
     * dims above, 0..9 centroids (the 4-wide body and the tail); and the
     * k-means accumulation of a row. */
    for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++) {
        int dim = dims[di];
        size_t row = ((size_t)dim + 63) / 64 * 32;
        enum { M = 9 };
        uint8_t *code = malloc(row), *cent = malloc(M * 2 * row);
        int8_t lut[16];
        for (int round = 0; round < 3; round++) {
            for (size_t i = 0; i < row; i++)
                code[i] = round == 2 ? 0xff : (uint8_t)rnd();
            /* round 2: the extremes, a centroid of 127s against levels of
             * 64 (the largest int16 pair sums the kernel must hold) */
            for (size_t i = 0; i < M * 2 * row; i++)
                cent[i] = round == 2 ? (i % 64 < 32 ? 127 : 1) : (uint8_t)(1 + rnd() % 127);
            for (int u = 0; u < 16; u++)
                lut[u] = round == 1 ? (int8_t)((int)(rnd() % 129) - 64)
                                    : (int8_t)(u < 8 ? -64 + 8 * u : 64 - 8 * (15 - u));
            lut[15] = 64;
            lut[0] = round == 2 ? 64 : -64;
            int32_t ref[M], got[M];
            for (int m = 0; m <= M; m++) {
                kv[0].dot_c8(lut, code, row, cent, m, ref);
                int ok = 1;
                for (int j = 0; j < m; j++) {
                    int64_t naive = 0;
                    for (int d = 0; d < (int)(2 * row); d++) {
                        uint8_t byte = code[(size_t)(d / 64) * 32 + d % 32];
                        naive += (int64_t)lut[d % 64 < 32 ? byte & 15 : byte >> 4] *
                                 (cent[j * 2 * row + d] - 64);
                    }
                    ok &= ref[j] == naive;
                }
                CHECK(ok, "dim %d round %d m %d: reference dot_c8 differs from the naive one", dim,
                      round, m);
                for (int v = 1; v < nv; v++) {
                    kv[v].dot_c8(lut, code, row, cent, m, got);
                    CHECK(memcmp(ref, got, sizeof(int32_t) * m) == 0,
                          "%s: dot_c8 dim %d round %d m %d differs", kv[v].name, dim, round, m);
                }
            }
            /* The k-means accumulation: the same bits in every variant. */
            float *sr = malloc(sizeof(float) * 2 * row), *sg = malloc(sizeof(float) * 2 * row);
            for (size_t d = 0; d < 2 * row; d++)
                sr[d] = sg[d] = (float)gauss();
            float sc = (float)unif() * 0.01f;
            kv[0].acc_u4(lut, code, row, sc, sr);
            int aok = 1;
            for (size_t d = 0; d < 2 * row; d++) {
                uint8_t byte = code[(d / 64) * 32 + d % 32];
                float want = sg[d] + (float)lut[d % 64 < 32 ? byte & 15 : byte >> 4] * sc;
                aok &= memcmp(&want, &sr[d], sizeof want) == 0;
            }
            CHECK(aok, "dim %d round %d: reference acc_u4 differs from the naive one", dim, round);
            for (int v = 1; v < nv; v++) {
                for (size_t d = 0; d < 2 * row; d++)
                    sr[d] = sg[d];
                kv[0].acc_u4(lut, code, row, sc, sr);
                float *sv = malloc(sizeof(float) * 2 * row);
                memcpy(sv, sg, sizeof(float) * 2 * row);
                kv[v].acc_u4(lut, code, row, sc, sv);
                CHECK(memcmp(sr, sv, sizeof(float) * 2 * row) == 0,
                      "%s: acc_u4 dim %d round %d differs", kv[v].name, dim, round);
                free(sv);
            }
            free(sr);
            free(sg);
        }
        free(code);
        free(cent);
    }

    /* Encoding: codes and scale, the same bits in every variant; around a
     * centre or none; a vector equal to its centre; odd scales. */
    for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++) {
        int dim = dims[di];
        size_t row = ((size_t)dim + 63) / 64 * 32;
        float *ev = malloc(sizeof(float) * dim), *ec = malloc(sizeof(float) * dim);
        uint8_t *cr = malloc(row), *cg = malloc(row);
        int eok = 1;
        for (int round = 0; round < 6; round++) {
            unit(ev, dim);
            unit(ec, dim);
            float mul = round == 3 ? 1e-30f : round == 4 ? 1e30f : 1;
            for (int d = 0; d < dim; d++) {
                ev[d] *= mul;
                ec[d] = round == 2 ? ev[d] : ec[d] * 0.5f * mul;
            }
            const float *cc = round % 2 ? NULL : ec;
            float fr = kv[0].encode(ev, cc, dim, row, cr);
            for (int v = 1; v < nv; v++) {
                float fg = kv[v].encode(ev, cc, dim, row, cg);
                eok &= memcmp(&fr, &fg, sizeof fr) == 0 && memcmp(cr, cg, row) == 0;
            }
            if (round == 2)
                eok &= fr == 0 && cr[0] == 0x88; /* v == c */
            else
                eok &= fr > 0 && isfinite(fr);
        }
        CHECK(eok, "encode dim %d: variants differ or bad scale", dim);
        free(ev);
        free(ec);
        free(cr);
        free(cg);
    }
    /* score_u4: every variant the reference's bits, against a double sum
     * within float rounding; dims with and without a partial last block. */
    static const float lutf[16] = {-127, -96, -75, -58, -44, -31, -18, -6, 6, 18, 31, 44, 58, 75, 96, 127};
    for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++) {
        int dim = dims[di], sok = 1, nclose = 0;
        size_t row = ((size_t)dim + 63) / 64 * 32;
        uint8_t *code = malloc(row);
        float *qf = malloc(sizeof(float) * (size_t)dim);
        for (int t = 0; t < 200; t++) {
            for (size_t i = 0; i < row; i++)
                code[i] = (uint8_t)rnd();
            for (int d = 0; d < dim; d++)
                qf[d] = (float)((double)(rnd() % 2000001) / 1e6 - 1.0) * (t % 3 ? 1.0f : 1e-3f);
            float ref = kv[0].score_u4(qf, lutf, code, dim);
            double want = 0, mag = 0;
            for (int d = 0; d < dim; d++) {
                uint8_t b = code[(d >> 6) * 32 + (d & 31)];
                float l = lutf[d & 32 ? b >> 4 : b & 15];
                want += (double)qf[d] * l;
                mag += fabs((double)qf[d] * l);
            }
            nclose += fabs(ref - want) <= 1e-5 * mag + 1e-30;
            for (int v = 1; v < nv; v++) {
                float got = kv[v].score_u4(qf, lutf, code, dim);
                sok &= memcmp(&got, &ref, sizeof got) == 0;
            }
        }
        CHECK(sok && nclose == 200, "score_u4 dim %d: variants differ (%d) or far from the sum (%d of 200 close)", dim,
              sok, nclose);
        free(code);
        free(qf);
    }
}

/* ---- Behaviour ---- */

static int sorted_ok(const idx_hit *h, int n)
{
    for (int i = 1; i < n; i++)
        if (h[i - 1].score < h[i].score || (h[i - 1].score == h[i].score && h[i - 1].slot >= h[i].slot))
            return 0;
    return 1;
}

static void test_basics(void)
{
    jm_err e;
    idx *x = NULL;
    CHECK(idx_new(0, &x, &e) == JM_EINVAL && x == NULL, "dim 0 accepted");
    CHECK(idx_new(IDX_MAX_DIM + 1, &x, &e) == JM_EINVAL, "huge dim accepted");
    idx_free(NULL);
    int dim = 37;
    CHECK(idx_new(dim, &x, &e) == JM_OK, "idx_new: %s", e.msg);
    float q[37], v[37];
    idx_hit out[64];
    int n = -1;
    unit(q, dim);
    CHECK(idx_search(x, q, 5, NULL, out, &n, &e) == JM_OK && n == 0, "empty index gave %d", n);
    CHECK(idx_count(x) == 0 && idx_slots(x) == 0, "empty counts");

    /* Ties: 20 copies of one vector and 10 of another, less similar. */
    for (int d = 0; d < dim; d++)
        v[d] = q[d];
    for (uint32_t s = 0; s < 40; s += 2)
        CHECK(idx_set(x, 1000 - s, v, &e) == JM_OK, "set: %s", e.msg);
    float w[37];
    for (int d = 0; d < dim; d++)
        w[d] = d % 2 ? q[d] : -q[d];
    for (uint32_t s = 0; s < 10; s++)
        idx_set(x, 3 * s, w, &e);
    CHECK(idx_count(x) == 30 && idx_slots(x) == 1001, "count %zu slots %u", idx_count(x), idx_slots(x));
    CHECK(idx_search(x, q, 25, NULL, out, &n, &e) == JM_OK && n == 25, "n = %d", n);
    CHECK(sorted_ok(out, n), "not sorted by score then slot");
    int ties_ok = 1;
    for (int i = 0; i < 20; i++) /* the copies, lowest slot first */
        ties_ok &= out[i].slot == 962u + 2 * i && out[i].score == out[0].score;
    for (int i = 20; i < 25; i++)
        ties_ok &= out[i].slot == 3u * (i - 20);
    CHECK(ties_ok, "tie order: %u %u ... %u", out[0].slot, out[1].slot, out[20].slot);
    CHECK(fabsf(out[0].score - 1.0f) < 0.01f, "self score %g", out[0].score);
    CHECK(fabs(idx_score(x, q, 962) - 1.0) < 0.01, "idx_score %g", idx_score(x, q, 962));
    CHECK(isnan(idx_score(x, q, 1)) && isnan(idx_score(x, q, 5000)), "idx_score of a dead slot");

    /* k beyond the live count; k = 0; bad k. */
    CHECK(idx_search(x, q, 64, NULL, out, &n, &e) == JM_OK && n == 30, "k > count gave %d", n);
    CHECK(idx_search(x, q, 0, NULL, out, &n, &e) == JM_OK && n == 0, "k = 0 gave %d", n);
    CHECK(idx_search(x, q, -1, NULL, out, &n, &e) == JM_EINVAL, "k < 0 accepted");

    /* Allow bitmap: nothing; only odd slots. */
    uint64_t allow[16] = {0};
    CHECK(idx_search(x, q, 10, allow, out, &n, &e) == JM_OK && n == 0, "empty allow gave %d", n);
    for (int i = 0; i < 16; i++)
        allow[i] = 0xAAAAAAAAAAAAAAAAULL;
    CHECK(idx_search(x, q, 64, allow, out, &n, &e) == JM_OK && n == 5, "odd slots: %d", n);
    int odd = 1;
    for (int i = 0; i < n; i++)
        odd &= out[i].slot % 2 == 1;
    CHECK(odd && out[0].slot == 3 && out[4].slot == 27, "odd slots: %u..%u", out[0].slot, out[n - 1].slot);

    /* Remove, replace, set again. */
    idx_remove(x, 962);
    idx_remove(x, 962);   /* twice: no effect */
    idx_remove(x, 5);     /* never set */
    idx_remove(x, 99999); /* beyond the end */
    CHECK(idx_count(x) == 29 && !idx_is_live(x, 962), "count after remove %zu", idx_count(x));
    idx_search(x, q, 1, NULL, out, &n, &e);
    CHECK(n == 1 && out[0].slot == 964, "top after remove: %u", out[0].slot);
    CHECK(idx_set(x, 0, v, &e) == JM_OK, "replace"); /* slot 0 held w */
    idx_search(x, q, 1, NULL, out, &n, &e);
    CHECK(n == 1 && out[0].slot == 0 && idx_count(x) == 29, "replaced slot 0 on top: %u", out[0].slot);
    idx_set(x, 962, w, &e);
    CHECK(idx_count(x) == 30 && idx_is_live(x, 962), "set after remove");
    idx_search(x, q, 30, NULL, out, &n, &e);
    CHECK(out[19].slot == 1000 && out[20].slot == 3, "order after replace: %u %u", out[19].slot, out[20].slot);

    /* Bad input leaves the index as it was. */
    size_t before = idx_count(x);
    v[3] = NAN;
    CHECK(idx_set(x, 7, v, &e) == JM_EINVAL && idx_count(x) == before && !idx_is_live(x, 7),
          "NaN vector accepted");
    v[3] = INFINITY;
    CHECK(idx_set(x, 7, v, &e) == JM_EINVAL, "inf vector accepted");
    v[3] = 0;
    CHECK(idx_set(x, IDX_MAX_SLOT + 1, v, &e) == JM_EINVAL, "slot beyond IDX_MAX_SLOT accepted");
    q[0] = NAN;
    CHECK(idx_search(x, q, 3, NULL, out, &n, &e) == JM_EINVAL && n == 0, "NaN query accepted");
    CHECK(idx_set_probe(x, 0, 0.5f, &e) == JM_EINVAL &&
              idx_set_probe(x, 4, 1.5f, &e) == JM_EINVAL &&
              idx_set_probe(x, 4, NAN, &e) == JM_EINVAL && idx_set_ivf(x, 0, &e) == JM_EINVAL,
          "bad search settings accepted");
    q[0] = 0;

    /* A zero vector is stored and scores 0. */
    float z[37] = {0};
    CHECK(idx_set(x, 2000, z, &e) == JM_OK, "zero vector");
    CHECK(idx_score(x, q, 2000) == 0, "zero vector score");
    idx_free(x);
}

static void test_growth(void)
{
    jm_err e;
    idx *x;
    int dim = 385;
    idx_new(dim, &x, &e);
    float *v = malloc(sizeof(float) * dim), *q = malloc(sizeof(float) * dim);
    unit(q, dim);
    /* 2001 vectors at slots 0, 50, 100, ...: capacity doubles 64 -> 131072
     * (12 reallocations); every vector must survive each copy. */
    float first[3];
    size_t bytes0 = 0;
    int ok = 1;
    for (uint32_t i = 0; i <= 2000; i++) {
        unit(v, dim);
        ok &= idx_set(x, i * 50, v, &e) == JM_OK;
        if (i < 3)
            first[i] = idx_score(x, q, i * 50);
        if (i == 0)
            bytes0 = idx_bytes(x);
    }
    CHECK(ok, "sets during growth");
    CHECK(idx_count(x) == 2001 && idx_slots(x) == 100001, "count %zu slots %u", idx_count(x), idx_slots(x));
    CHECK(idx_score(x, q, 0) == first[0] && idx_score(x, q, 50) == first[1] && idx_score(x, q, 100) == first[2],
          "vectors changed by growth");
    size_t b = idx_bytes(x);
    /* Per live vector a 4-bit row of 32 * ceil(dim / 64) bytes, a scale, a
     * generation byte and its slot (in chunks of 256 rows: 2048 rows); per
     * slot a position and a live bit; a few centres. */
    size_t row = ((size_t)dim + 63) / 64 * 32;
    CHECK(b > bytes0 && b >= (size_t)2001 * row + 100001 * 4 &&
              b < (size_t)2048 * (row + 9) + (size_t)100032 * 5 + 65536,
          "idx_bytes %zu", b);
    idx_hit out[10];
    int n;
    CHECK(idx_search(x, q, 10, NULL, out, &n, &e) == JM_OK && n == 10 && sorted_ok(out, n), "search after growth");
    int mult = 1;
    for (int i = 0; i < n; i++)
        mult &= out[i].slot % 50 == 0;
    CHECK(mult, "search returned a slot never set");
    /* idx_reserve: no reallocation needed afterwards; capacity is not use. */
    CHECK(idx_reserve(x, 300000, &e) == JM_OK && idx_bytes(x) == b, "reserve");
    CHECK(idx_reserve(x, IDX_MAX_SLOT + 2u, &e) == JM_EINVAL, "reserve too much");
    CHECK(idx_score(x, q, 50) == first[1], "reserve lost data");
    free(v);
    free(q);
    idx_free(x);
}

/* ---- Recall on clustered data ---- */

typedef struct dataset {
    int dim, n, nq;
    float *base, *queries; /* [n][dim], [nq][dim] */
    int *cl, *qcl;         /* [n], [nq] the centre each was drawn around */
    uint32_t *truth;       /* [nq][10] exact top 10 (score desc, slot asc) */
    double *truth_s;       /* [nq][10] their scores in double */
} dataset;

/* Exact top 10 of every query: scores of all pairs with BLAS, the best 30
 * of each query re-scored in double precision and sorted. */
static void exact_truth(dataset *ds)
{
    enum { T = 30, CH = 2048 };
    int dim = ds->dim, nq = ds->nq;
    float *S = malloc(sizeof(float) * nq * CH), *ts = malloc(sizeof(float) * nq * T);
    uint32_t *ti = malloc(sizeof(uint32_t) * nq * T);
    int *tn = calloc(nq, sizeof(int));
    for (int c0 = 0; c0 < ds->n; c0 += CH) {
        int m = ds->n - c0 < CH ? ds->n - c0 : CH;
        k_linear(nq, m, dim, ds->queries, dim, ds->base + (size_t)c0 * dim, NULL, S, m);
        for (int q = 0; q < nq; q++) {
            float *a = ts + q * T;
            uint32_t *ai = ti + q * T;
            for (int i = 0; i < m; i++) {
                float s = S[(size_t)q * m + i];
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
    ds->truth = malloc(sizeof(uint32_t) * nq * 10);
    ds->truth_s = malloc(sizeof(double) * nq * 10);
    for (int q = 0; q < nq; q++) {
        double s[T];
        uint32_t id[T];
        for (int i = 0; i < T; i++) {
            id[i] = ti[q * T + i];
            s[i] = ddot(ds->queries + (size_t)q * dim, ds->base + (size_t)id[i] * dim, dim);
            int j = i;
            for (; j > 0 && (s[j - 1] < s[i] || (s[j - 1] == s[i] && id[j - 1] > id[i])); j--)
                ;
            double sv = s[i];
            uint32_t iv = id[i];
            memmove(s + j + 1, s + j, sizeof(double) * (i - j));
            memmove(id + j + 1, id + j, sizeof(uint32_t) * (i - j));
            s[j] = sv;
            id[j] = iv;
        }
        memcpy(ds->truth + q * 10, id, sizeof(uint32_t) * 10);
        memcpy(ds->truth_s + q * 10, s, sizeof(double) * 10);
    }
    free(S);
    free(ts);
    free(ti);
    free(tn);
}

static void dataset_make(dataset *ds, int dim, int n, int nq)
{
    gen g;
    gen_init(&g, dim, 50, 500);
    ds->dim = dim;
    ds->n = n;
    ds->nq = nq;
    ds->base = malloc(sizeof(float) * dim * n);
    ds->queries = malloc(sizeof(float) * dim * nq);
    ds->cl = malloc(sizeof(int) * n);
    ds->qcl = malloc(sizeof(int) * nq);
    for (int i = 0; i < n; i++)
        ds->cl[i] = gen_vec(&g, ds->base + (size_t)i * dim);
    for (int i = 0; i < nq; i++)
        ds->qcl[i] = gen_vec(&g, ds->queries + (size_t)i * dim);
    gen_free(&g);
    exact_truth(ds);
}

static void dataset_free(dataset *ds)
{
    free(ds->cl);
    free(ds->qcl);
    free(ds->base);
    free(ds->queries);
    free(ds->truth);
    free(ds->truth_s);
}

/* 1 if hits h[0..10) are the exact top 10: same slots in the same order
 * (strict), or (tolerant) each position's exact score equals the true one
 * within 1e-6, which forgives swaps of near-equal scores that float32 and
 * double order differently. */
static int top10_match(const dataset *ds, int q, const idx_hit *h, int n, int strict)
{
    if (n < 10)
        return 0;
    for (int i = 0; i < 10; i++) {
        if (strict) {
            if (h[i].slot != ds->truth[q * 10 + i])
                return 0;
        } else {
            double s = ddot(ds->queries + (size_t)q * ds->dim, ds->base + (size_t)h[i].slot * ds->dim, ds->dim);
            if (fabs(s - ds->truth_s[q * 10 + i]) > 1e-6)
                return 0;
        }
    }
    return 1;
}

typedef struct fetch_ctx {
    const dataset *ds;
    int calls, fail, missing; /* fail: return an error; missing: report this slot as gone */
} fetch_ctx;

static int fetch_mem(void *ctx, const uint32_t *slots, int n, float *vecs, jm_err *err)
{
    fetch_ctx *f = ctx;
    f->calls++;
    if (f->fail)
        return jm_fail(err, JM_EIO, "fetch failed on purpose");
    for (int i = 0; i < n; i++) {
        if (i > 0 && slots[i] <= slots[i - 1])
            return jm_fail(err, JM_EINVAL, "slots not ascending");
        memcpy(vecs + (size_t)i * f->ds->dim, f->ds->base + (size_t)slots[i] * f->ds->dim,
               sizeof(float) * f->ds->dim);
        if ((int)slots[i] == f->missing)
            vecs[(size_t)i * f->ds->dim] = NAN;
    }
    return JM_OK;
}

static void recall_run(const dataset *ds, idx *x, const char *what)
{
    jm_err e;
    fetch_ctx fc = {ds, 0, 0, -1};
    int ok = 0, strict = 0, approx = 0, errs = 0, ok30 = 0;
    idx_hit h[10];
    int n;
    for (int q = 0; q < ds->nq; q++) {
        const float *qv = ds->queries + (size_t)q * ds->dim;
        /* 30 candidates: a sharper test of the approximate scores' precision
         * than the default 100 */
        errs += idx_search_exact(x, qv, 10, 30, NULL, fetch_mem, &fc, h, &n, &e) != JM_OK;
        ok30 += top10_match(ds, q, h, n, 0);
        errs += idx_search_exact(x, qv, 10, 0, NULL, fetch_mem, &fc, h, &n, &e) != JM_OK;
        ok += top10_match(ds, q, h, n, 0);
        strict += top10_match(ds, q, h, n, 1);
        errs += !sorted_ok(h, n);
        errs += idx_search(x, qv, 10, NULL, h, &n, &e) != JM_OK;
        approx += top10_match(ds, q, h, n, 0);
    }
    printf("recall %s: idx_search_exact top-10 equal on %.1f%% of %d queries (%.1f%% slot-for-slot; "
        "%.1f%% with 30 candidates); idx_search alone %.1f%%\n",
        what, 100.0 * ok / ds->nq, ds->nq, 100.0 * strict / ds->nq, 100.0 * ok30 / ds->nq,
        100.0 * approx / ds->nq);
    CHECK(errs == 0 && fc.calls == 2 * ds->nq, "%s: %d errors, %d fetches", what, errs, fc.calls);
    CHECK(ok >= ds->nq * 99 / 100, "%s: top-10 equal on %d of %d queries", what, ok, ds->nq);
    CHECK(ok30 >= ds->nq * 99 / 100, "%s: top-10 equal on %d of %d queries with 30 candidates", what, ok30,
          ds->nq);
}

/* The approximate scores (the 4-bit codes) against the exact dot products:
 * what the ranking uses them for needs ~0.005-0.01. The codes were taken
 * around several centres (one per doubling of the live count from 1024),
 * so every generation is covered. idx_score_many gives idx_score's bits. */
static void precision_run(const dataset *ds, idx *x)
{
    double se = 0, worst = 0, bias = 0;
    long cnt = 0;
    int same = 1;
    enum { M = 203 };
    uint32_t sl[M];
    float many[M];
    for (int q = 0; q < 100; q++) {
        const float *qv = ds->queries + (size_t)q * ds->dim;
        for (int i = q % 7; i < ds->n; i += 7) {
            double err = idx_score(x, qv, (uint32_t)i) - ddot(qv, ds->base + (size_t)i * ds->dim, ds->dim);
            se += err * err;
            bias += err;
            worst = fmax(worst, fabs(err));
            cnt++;
        }
        for (int i = 0; i < M; i++)
            sl[i] = (uint32_t)(rnd() % (ds->n + 50)); /* some beyond the last slot: NaN */
        idx_score_many(x, qv, sl, M, many);
        for (int i = 0; i < M; i++) {
            float one = idx_score(x, qv, sl[i]);
            same &= isnan(one) ? isnan(many[i]) != 0 : memcmp(&one, &many[i], sizeof one) == 0;
        }
    }
    printf("approximate scores: error rms %.5f, max %.5f, mean %+.5f over %ld pairs\n", sqrt(se / cnt), worst,
           bias / cnt, cnt);
    CHECK(sqrt(se / cnt) < 0.006 && worst < 0.04 && fabs(bias / cnt) < 0.001,
          "approximate scores off: rms %g max %g mean %g", sqrt(se / cnt), worst, bias / cnt);
    CHECK(same, "idx_score_many differs from idx_score");
    /* A vector's score against itself is unbiased (the scale is fitted so). */
    double self = 0;
    for (int i = 0; i < 1000; i++)
        self = fmax(self, fabs(idx_score(x, ds->base + (size_t)i * ds->dim, (uint32_t)i) - 1));
    CHECK(self < 2e-3, "self scores off by up to %g", self);
    /* The first vectors were stored before any centre existed: setting one
     * again stores it around the newest centre; its score barely moves. */
    const float *qv = ds->queries;
    float before = idx_score(x, qv, 3);
    jm_err e;
    CHECK(idx_set(x, 3, ds->base + 3 * (size_t)ds->dim, &e) == JM_OK, "set again");
    float after = idx_score(x, qv, 3);
    double truth = ddot(qv, ds->base + 3 * (size_t)ds->dim, ds->dim);
    CHECK(fabs(after - truth) < 0.02 && fabs(before - truth) < 0.02, "slot 3: %g before, %g after, exact %g",
          before, after, truth);
}


/* ---- Filters through the lists ---- */

/* The exact top 10 of query q among the slots allow passes (float pass with
 * BLAS, the best 30 re-scored in double); returns how many (< 10 when fewer
 * are allowed). */
static int allowed_top10(const dataset *ds, const float *q, const uint64_t *allow, float *S,
                         uint32_t *id, double *sc)
{
    enum { T = 30 };
    k_linear(1, ds->n, ds->dim, q, ds->dim, ds->base, NULL, S, ds->n);
    float ts[T];
    uint32_t ti[T];
    int tn = 0;
    for (int i = 0; i < ds->n; i++) {
        if (!(allow[i / 64] >> (i % 64) & 1) || (tn == T && S[i] <= ts[T - 1]))
            continue;
        int j = tn < T ? tn++ : T - 1;
        for (; j > 0 && ts[j - 1] < S[i]; j--) {
            ts[j] = ts[j - 1];
            ti[j] = ti[j - 1];
        }
        ts[j] = S[i];
        ti[j] = (uint32_t)i;
    }
    double d[T];
    for (int i = 0; i < tn; i++)
        d[i] = ddot(q, ds->base + (size_t)ti[i] * ds->dim, ds->dim);
    for (int i = 1; i < tn; i++) /* insertion sort: score desc, slot asc */
        for (int j = i; j > 0 && (d[j - 1] < d[j] || (d[j - 1] == d[j] && ti[j - 1] > ti[j]));
             j--) {
            double t = d[j];
            d[j] = d[j - 1];
            d[j - 1] = t;
            uint32_t u = ti[j];
            ti[j] = ti[j - 1];
            ti[j - 1] = u;
        }
    int n = tn < 10 ? tn : 10;
    for (int i = 0; i < n; i++) {
        id[i] = ti[i];
        sc[i] = d[i];
    }
    return n;
}

/* idx_search_exact with allow bitmaps against a brute force over the allowed
 * slots: random filters passing 50%, 10%, 1% and 0.2% of the vectors (the
 * last two scored directly, the others through the lists); filters by
 * cluster, like a category, passing every 3rd and every 10th cluster (most
 * queries' own cluster is out: the lists nearest them hold nothing allowed,
 * and the probing must go on to the allowed clusters); and, measured but not
 * asserted, one that removes each query's 300 nearest: the allowed top 10
 * then sit at the 300th place of the unfiltered ranking, which 16 lists do
 * not reach (see idx.h). */
static void filter_run(const dataset *ds, idx *x)
{
    enum { NQ = 100 };
    static const double fracs[] = {0.5, 0.1, 0.01, 0.002, -3, -10, -1};
    size_t nw = (size_t)ds->n / 64 + 1;
    uint64_t *allow = malloc(sizeof(uint64_t) * nw);
    float *S = malloc(sizeof(float) * ds->n);
    fetch_ctx fc = {ds, 0, 0, -1};
    jm_err e;
    for (size_t fi = 0; fi < sizeof fracs / sizeof fracs[0]; fi++) {
        int ok = 0, bad = 0;
        if (fracs[fi] != -1) {
            memset(allow, 0, sizeof(uint64_t) * nw);
            for (int i = 0; i < ds->n; i++)
                if (fracs[fi] > 0 ? unif() < fracs[fi] : ds->cl[i] % (int)-fracs[fi] == 0)
                    allow[i / 64] |= 1ULL << (i % 64);
        }
        for (int q = 0; q < NQ; q++) {
            const float *qv = ds->queries + (size_t)(q * 7 % ds->nq) * ds->dim;
            if (fracs[fi] == -1) {
                /* everything but the 300 nearest */
                memset(allow, 0xff, sizeof(uint64_t) * nw);
                k_linear(1, ds->n, ds->dim, qv, ds->dim, ds->base, NULL, S, ds->n);
                float *c = malloc(sizeof(float) * ds->n);
                memcpy(c, S, sizeof(float) * ds->n);
                for (int r = 0; r < 300; r++) {
                    int b = 0;
                    for (int i = 1; i < ds->n; i++)
                        b = c[i] > c[b] ? i : b;
                    allow[b / 64] &= ~(1ULL << (b % 64));
                    c[b] = -INFINITY;
                }
                free(c);
            }
            uint32_t id[10];
            double sc[10];
            int nt = allowed_top10(ds, qv, allow, S, id, sc);
            idx_hit h[10];
            int n = 0;
            bad += idx_search_exact(x, qv, 10, 0, allow, fetch_mem, &fc, h, &n, &e) != JM_OK;
            int same = n == nt;
            for (int i = 0; i < n; i++) {
                bad += !(allow[h[i].slot / 64] >> (h[i].slot % 64) & 1);
                same &=
                    fabs(ddot(qv, ds->base + (size_t)h[i].slot * ds->dim, ds->dim) - sc[i]) <= 1e-6;
            }
            ok += same;
        }
        if (fracs[fi] > 0)
            printf("filter, random %g%%: ", 100 * fracs[fi]);
        else if (fracs[fi] < -1)
            printf("filter, 1 cluster in %g: ", -fracs[fi]);
        else
            printf("filter, all but the query's nearest 300 (not asserted): ");
        printf("top-10 among the allowed equal on %d of %d queries\n", ok, NQ);
        CHECK(bad == 0 && (fracs[fi] == -1 || ok >= NQ * 99 / 100),
              "filter %g: %d of %d equal, %d bad", fracs[fi], ok, NQ, bad);
    }
    free(allow);
    free(S);
}

static void test_recall(void)
{
    dataset ds;
    dataset_make(&ds, 384, 20011, 1000);
    jm_err e;
    idx *x;
    idx_new(ds.dim, &x, &e);
    int ok = 1;
    for (int i = 0; i < ds.n; i++)
        ok &= idx_set(x, (uint32_t)i, ds.base + (size_t)i * ds.dim, &e) == JM_OK;
    CHECK(ok && idx_count(x) == (size_t)ds.n, "loading %d vectors", ds.n);
    precision_run(&ds, x);
    recall_run(&ds, x, "4-bit scan");
    /* The inverted lists, trained at once at this size (~141 lists of
     * ~140), probed as deep as the default probes at 1M: 16 lists. */
    CHECK(idx_set_ivf(x, 1000, &e) == JM_OK && idx_nlist(x) > 100, "lists on: %d", idx_nlist(x));
    recall_run(&ds, x, "inverted lists + 4-bit");
    filter_run(&ds, x);

    /* Allow bitmap through the lists: only slots = 1 mod 3. */
    uint64_t *allow = calloc((ds.n + 63) / 64, sizeof(uint64_t));
    for (int i = 1; i < ds.n; i += 3)
        allow[i / 64] |= 1ULL << (i % 64);
    fetch_ctx fc = {&ds, 0, 0, -1};
    idx_hit h[10];
    int n, bad = 0;
    for (int q = 0; q < 20; q++) {
        idx_search_exact(x, ds.queries + (size_t)q * ds.dim, 10, 0, allow, fetch_mem, &fc, h, &n, &e);
        for (int i = 0; i < n; i++)
            bad += h[i].slot % 3 != 1;
        bad += n != 10;
    }
    CHECK(bad == 0, "allow bitmap with lists: %d bad", bad);

    /* Fetch errors pass through; a vector reported missing is skipped. */
    const float *q0 = ds.queries;
    fc.fail = 1;
    CHECK(idx_search_exact(x, q0, 10, 0, NULL, fetch_mem, &fc, h, &n, &e) == JM_EIO && n == 0 &&
              strstr(e.msg, "on purpose"),
          "fetch error: %s", e.msg);
    fc.fail = 0;
    fc.missing = (int)ds.truth[0];
    idx_search_exact(x, q0, 10, 0, NULL, fetch_mem, &fc, h, &n, &e);
    int seen = 0;
    for (int i = 0; i < n; i++)
        seen |= (int)h[i].slot == fc.missing;
    CHECK(n == 10 && !seen && h[0].slot == ds.truth[1], "missing vector not skipped");
    fc.missing = -1;
    CHECK(idx_search_exact(x, q0, 10, 5, NULL, fetch_mem, &fc, h, &n, &e) == JM_OK && n == 10,
          "candidates < k is raised to k");
    /* Removing the true best of query 0 makes the second one first. */
    idx_remove(x, ds.truth[0]);
    idx_search_exact(x, q0, 10, 0, NULL, fetch_mem, &fc, h, &n, &e);
    CHECK(n == 10 && h[0].slot == ds.truth[1], "removed slot returned");
    /* Replacing a vector after the sign codes exist recomputes its code. */
    CHECK(idx_set(x, 12345, q0, &e) == JM_OK, "replace");
    idx_search_exact(x, q0, 10, 0, NULL, fetch_mem, &fc, h, &n, &e);
    idx_hit ha[10];
    int na = 0;
    idx_search(x, q0, 10, NULL, ha, &na, &e);
    CHECK(na == 10 && ha[0].slot == 12345 && ha[0].score > 0.99f, "replaced vector not found first: %u %g",
          ha[0].slot, ha[0].score);
    /* A huge candidate count is bounded by the live count. */
    CHECK(idx_search_exact(x, q0, 10, 2000000000, allow, fetch_mem, &fc, h, &n, &e) == JM_OK && n == 10,
          "huge candidates: %s", e.msg);
    /* Switching the lists off: exhaustive searches; results stay. */
    CHECK(idx_set_ivf(x, SIZE_MAX, &e) == JM_OK, "lists off");
    idx_search(x, q0, 10, NULL, h, &n, &e);
    CHECK(n == 10 && h[0].slot == 12345, "search after lists off");
    free(allow);

    /* Streaming accumulator against the brute force, fed in odd chunks. */
    idx_topk *t = idx_topk_new(10);
    CHECK(t != NULL && idx_topk_new(-1) == NULL, "idx_topk_new");
    uint32_t *slots = malloc(sizeof(uint32_t) * ds.n);
    for (int i = 0; i < ds.n; i++)
        slots[i] = (uint32_t)i;
    int sok = 0;
    for (int q = 0; q < 100; q++) {
        const float *qv = ds.queries + (size_t)q * ds.dim;
        idx_topk_reset(t);
        for (int i = 0; i < ds.n;) {
            int m = 1 + (int)(rnd() % 3000);
            if (m > ds.n - i)
                m = ds.n - i;
            idx_topk_add_f32(t, qv, ds.base + (size_t)i * ds.dim, slots + i, m, ds.dim);
            i += m;
        }
        int r1 = idx_topk_result(t, h);
        idx_hit h2[10];
        int r2 = idx_topk_result(t, h2); /* unchanged by reading */
        sok += r1 == 10 && r2 == 10 && memcmp(h, h2, sizeof h) == 0 && sorted_ok(h, 10) &&
               top10_match(&ds, q, h, r1, 0);
    }
    CHECK(sok == 100, "streaming top-10 equal on %d of 100 queries", sok);
    printf("streaming accumulator: top-10 equal on %d of 100 queries\n", sok);
    /* A NaN vector is skipped; fewer than k vectors give fewer hits. */
    idx_topk_reset(t);
    float *nanv = malloc(sizeof(float) * ds.dim);
    memcpy(nanv, ds.base, sizeof(float) * ds.dim);
    nanv[7] = NAN;
    idx_topk_add_f32(t, ds.queries, nanv, slots, 1, ds.dim);
    idx_topk_add_f32(t, ds.queries, ds.base + ds.dim, slots + 1, 3, ds.dim);
    n = idx_topk_result(t, h);
    CHECK(n == 3 && h[0].slot != 0 && h[1].slot != 0 && h[2].slot != 0, "NaN vector kept: %d", n);
    idx_topk_free(t);
    idx_topk *t0 = idx_topk_new(0);
    idx_topk_add_f32(t0, ds.queries, ds.base, slots, 5, ds.dim);
    CHECK(t0 && idx_topk_result(t0, h) == 0, "k = 0 accumulator");
    idx_topk_free(t0);
    idx_topk_free(NULL);
    free(nanv);
    free(slots);
    idx_free(x);
    dataset_free(&ds);
}

/* ---- Calibrating nprobe ----
 * Data on which the default probe depth is not enough: weakly clustered
 * vectors (most of each is noise), and queries that are the mean of three
 * of them drawn from unrelated clusters (like a profile of several skills
 * against job texts): a query's neighbours then spread over many lists.
 * idx_probe_need on half the queries picks a depth that makes the other
 * half exact; each query's own need is enough for it. */
/* Of the first nq queries, how many, each searched at its own need (in the
 * index's current order), get their exact top 10 as the full scan finds them
 * (or better): all of them are then scanned. Leaves the depth at the last
 * need; *errs counts failed searches. */
static int own_need_ok(idx *x, const dataset *ds, fetch_ctx *fc, const int *need, int nq, int *errs)
{
    jm_err e;
    int ok = 0, nl = idx_nlist(x);
    for (int q = 0; q < nq; q++) {
        const float *qv = ds->queries + (size_t)q * ds->dim;
        idx_hit full[10], h[10];
        int nf = 0, n = 0;
        idx_set_probe(x, nl, IDX_FILTER_EXP, &e);
        idx_search_exact(x, qv, 10, 0, NULL, fetch_mem, fc, full, &nf, &e);
        idx_set_probe(x, need[q] > 0 ? need[q] : 1, IDX_FILTER_EXP, &e);
        *errs += idx_search_exact(x, qv, 10, 0, NULL, fetch_mem, fc, h, &n, &e) != 0;
        int same = n == 10 && nf == 10;
        for (int i = 0; same && i < 10; i++)
            same = h[i].score >= full[i].score;
        ok += same;
    }
    return ok;
}

static void test_probe_need(void)
{
    enum { N = 20011, NQ = 600, HALF = NQ / 2 };
    gen g;
    gen_init(&g, 384, 40, 400);
    dataset ds = {384, N, NQ, malloc(sizeof(float) * 384 * N), malloc(sizeof(float) * 384 * NQ), NULL, NULL,
                  NULL, NULL};
    int dim = ds.dim;
    float *tmp = malloc(sizeof(float) * dim);
    for (int i = 0; i < N; i++) {
        float *v = ds.base + (size_t)i * dim;
        gen_vec(&g, v);
        unit(tmp, dim);
        for (int d = 0; d < dim; d++)
            v[d] += 0.9f * tmp[d];
        normalise(v, dim);
    }
    for (int q = 0; q < NQ; q++) {
        float *v = ds.queries + (size_t)q * dim;
        memset(v, 0, sizeof(float) * dim);
        for (int j = 0; j < 3; j++) {
            gen_vec(&g, tmp);
            for (int d = 0; d < dim; d++)
                v[d] += tmp[d];
        }
        normalise(v, dim);
    }
    gen_free(&g);
    exact_truth(&ds);
    jm_err e;
    idx *x;
    idx_new(dim, &x, &e);
    for (int i = 0; i < N; i++)
        idx_set(x, (uint32_t)i, ds.base + (size_t)i * dim, &e);
    CHECK(idx_set_ivf(x, 1000, &e) == JM_OK && idx_nlist(x) > 100, "lists: %d", idx_nlist(x));
    fetch_ctx fc = {&ds, 0, 0, -1};
    int need[NQ];
    CHECK(idx_probe_need(x, ds.queries, NQ, 10, 0, fetch_mem, &fc, need, &e) == JM_OK, "need: %s", e.msg);
    int nl = idx_nlist(x), lo = nl, hi = 0, bad = 0;
    for (int q = 0; q < NQ; q++) {
        lo = need[q] < lo ? need[q] : lo;
        hi = need[q] > hi ? need[q] : hi;
        bad += need[q] < 1 || need[q] > nl;
    }
    CHECK(bad == 0, "%d needs outside [1, %d]", bad, nl);
    idx_hit h[10];
    int n, at16 = 0;
    for (int q = HALF; q < NQ; q++) {
        idx_search_exact(x, ds.queries + (size_t)q * dim, 10, 0, NULL, fetch_mem, &fc, h, &n, &e);
        at16 += top10_match(&ds, q, h, n, 0);
    }
    int pick = idx_probe_pick(need, HALF, 0.995);
    CHECK(idx_set_probe(x, pick, IDX_FILTER_EXP, &e) == JM_OK, "set %d", pick);
    int ok = 0, own = 0, errs = 0;
    for (int q = HALF; q < NQ; q++) {
        errs += idx_search_exact(x, ds.queries + (size_t)q * dim, 10, 0, NULL, fetch_mem, &fc, h, &n, &e) != 0;
        ok += top10_match(&ds, q, h, n, 0);
    }
    own = own_need_ok(x, &ds, &fc, need, 100, &errs);
    printf("probe need: %d lists, needs %d..%d; held-out top-10 exact at the default %d: %d of %d; at the "
           "picked %d: %d of %d\n",
           nl, lo, hi, IDX_NPROBE, at16, NQ - HALF, pick, ok, NQ - HALF);
    CHECK(errs == 0, "%d search errors", errs);
    CHECK(ok >= (NQ - HALF) * 99 / 100, "held-out top-10 exact on %d of %d at nprobe %d", ok, NQ - HALF, pick);
    CHECK(own == 100, "own need enough for %d of 100 queries", own);
    CHECK(hi > IDX_NPROBE, "the data should need more than the default: max need %d", hi);
    /* the pick: quantiles plus a quarter; degenerate inputs */
    int v[8] = {5, 1, 3, 2, 8, 4, 7, 6};
    CHECK(idx_probe_pick(v, 8, 1.0) == 10 && idx_probe_pick(v, 8, 0.5) == 5 && idx_probe_pick(v, 0, 1) == 1 &&
              idx_probe_pick(v, 1, 0.1) == 7 && v[0] == 5,
          "idx_probe_pick");
    int zero[3] = {0, 0, 0};
    CHECK(idx_probe_pick(zero, 3, 0.99) == 1, "pick of zeros");
    /* Other probe orders (idx_set_spread). Several at once give what each
     * gives alone; on this data they differ; a query probed to its own need
     * in an order gets the full scan's answer in that order too; the rows an
     * order reads grow with the depth up to every row. */
    {
        static const float sp[3] = {0, 1, 0.5f};
        int *nd = malloc(sizeof(int) * 3 * NQ), *one = malloc(sizeof(int) * NQ);
        CHECK(idx_probe_needs(x, ds.queries, NQ, 10, 0, fetch_mem, &fc, sp, 3, nd, &e) == JM_OK, "needs: %s",
              e.msg);
        CHECK(idx_set_spread(x, 1, &e) == JM_OK && idx_spread(x) == 1, "spread 1");
        CHECK(idx_probe_need(x, ds.queries, NQ, 10, 0, fetch_mem, &fc, one, &e) == JM_OK, "need: %s", e.msg);
        CHECK(!memcmp(nd, need, sizeof(int) * NQ) && !memcmp(nd + NQ, one, sizeof(int) * NQ) &&
                  memcmp(nd, nd + NQ, sizeof(int) * NQ) != 0,
              "needs of several orders at once");
        int own1 = own_need_ok(x, &ds, &fc, one, 100, &errs);
        CHECK(own1 == 100 && errs == 0, "own need in the spread order enough for %d of 100 queries", own1);
        double r1 = idx_probe_rows(x, ds.queries, NQ, 1, 1), r8 = idx_probe_rows(x, ds.queries, NQ, 8, 1),
               r8p = idx_probe_rows(x, ds.queries, NQ, 8, 0), rall = idx_probe_rows(x, ds.queries, NQ, nl, 1);
        CHECK(r1 > 0 && r1 < r8 && r8 < rall && r8p > 0 && r8p < rall && rall == (double)idx_count(x),
              "rows read: %.0f at 1, %.0f at 8 (%.0f in the plain order), %.0f at every list", r1, r8, r8p, rall);
        float badsp = -0.5f;
        CHECK(idx_set_spread(x, -1, &e) == JM_EINVAL && idx_set_spread(x, NAN, &e) == JM_EINVAL &&
                  idx_set_spread(x, 4.5f, &e) == JM_EINVAL && idx_spread(x) == 1 &&
                  idx_probe_needs(x, ds.queries, 1, 10, 0, fetch_mem, &fc, &badsp, 1, nd, &e) == JM_EINVAL &&
                  idx_probe_needs(x, ds.queries, 1, 10, 0, fetch_mem, &fc, sp, 0, nd, &e) == JM_EINVAL,
              "bad spreads");
        idx_set_spread(x, 0, &e);
        free(nd);
        free(one);
    }
    CHECK(idx_probe_need(x, ds.queries, 1, 0, 0, fetch_mem, &fc, need, &e) == JM_EINVAL, "k = 0");
    fc.fail = 1;
    CHECK(idx_probe_need(x, ds.queries, 3, 10, 0, fetch_mem, &fc, need, &e) == JM_EIO, "fetch error passes");
    fc.fail = 0;
    float nanq[384];
    memcpy(nanq, ds.queries, sizeof nanq);
    nanq[3] = NAN;
    CHECK(idx_probe_need(x, nanq, 1, 10, 0, fetch_mem, &fc, need, &e) == JM_EINVAL, "NaN query");
    free(tmp);
    idx_free(x);
    dataset_free(&ds);
}

/* ---- Concurrent searches ---- */

typedef struct thr_arg {
    const idx *x;
    const float *queries;
    int dim, nq;
    idx_hit *out; /* [nq][10] */
    int rc;
} thr_arg;

static void *thr_main(void *p)
{
    thr_arg *a = p;
    jm_err e;
    for (int q = 0; q < a->nq; q++) {
        int n;
        a->rc |= idx_search(a->x, a->queries + (size_t)q * a->dim, 10, NULL, a->out + q * 10, &n, &e);
        a->rc |= n != 10;
    }
    return NULL;
}

static void test_threads(void)
{
    enum { NQ = 50 };
    int dim = 64;
    jm_err e;
    idx *x;
    idx_new(dim, &x, &e);
    idx_set_ivf(x, 2000, &e); /* both paths: lists from 2000 */
    float *v = malloc(sizeof(float) * dim), *qs = malloc(sizeof(float) * dim * NQ);
    for (uint32_t i = 0; i < 5000; i++) {
        unit(v, dim);
        idx_set(x, i, v, &e);
    }
    for (int q = 0; q < NQ; q++)
        unit(qs + (size_t)q * dim, dim);
    CHECK(idx_nlist(x) > 0, "no lists at 5000 vectors");
    idx_hit *ref = malloc(sizeof(idx_hit) * NQ * 10);
    thr_arg one = {x, qs, dim, NQ, ref, 0};
    thr_main(&one);
    pthread_t th[3];
    thr_arg a[3];
    for (int i = 0; i < 3; i++) {
        a[i] = (thr_arg){x, qs, dim, NQ, malloc(sizeof(idx_hit) * NQ * 10), 0};
        pthread_create(&th[i], NULL, thr_main, &a[i]);
    }
    int same = 1;
    for (int i = 0; i < 3; i++) {
        pthread_join(th[i], NULL);
        same &= a[i].rc == 0 && memcmp(a[i].out, ref, sizeof(idx_hit) * NQ * 10) == 0;
        free(a[i].out);
    }
    CHECK(one.rc == 0 && same, "concurrent searches differ");
    /* One list probed, yet 2000 hits wanted: the probing goes on until it
     * has them (with and without a filter passing half the slots). */
    CHECK(idx_set_probe(x, 1, 0, &e) == JM_OK, "probe 1");
    idx_hit *many = malloc(sizeof(idx_hit) * 2000);
    uint64_t half[5000 / 64 + 1];
    for (int i = 0; i < 5000 / 64 + 1; i++)
        half[i] = 0x5555555555555555ULL;
    int nm = 0, nh = 0;
    idx_search(x, qs, 2000, NULL, many, &nm, &e);
    idx_search(x, qs, 2000, half, many, &nh, &e);
    CHECK(nm == 2000 && nh == 2000 && sorted_ok(many, nh),
          "1 list probed for 2000 hits: %d, %d filtered", nm, nh);
    free(many);
    free(ref);
    free(v);
    free(qs);
    idx_free(x);
}


/* ---- Updates while the lists are on ---- */

typedef struct vecstore {
    int dim;
    float *v; /* [cap][dim] */
} vecstore;

static int fetch_store(void *ctx, const uint32_t *slots, int n, float *vecs, jm_err *err)
{
    (void)err;
    const vecstore *vs = ctx;
    for (int i = 0; i < n; i++)
        memcpy(vecs + (size_t)i * vs->dim, vs->v + (size_t)slots[i] * vs->dim,
               sizeof(float) * vs->dim);
    return JM_OK;
}

/* Exact top 10 over the live slots [0, n) of vs (double). */
static int live_top10(const vecstore *vs, const uint8_t *live, uint32_t n, const float *q,
                      double *sc)
{
    int m = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (!live[i])
            continue;
        double v = ddot(q, vs->v + (size_t)i * vs->dim, vs->dim);
        if (m == 10 && v <= sc[9])
            continue;
        int j = m < 10 ? m++ : 9;
        for (; j > 0 && sc[j - 1] < v; j--)
            sc[j] = sc[j - 1];
        sc[j] = v;
    }
    return m;
}

/* Sets, replacements and removals in random order while the index trains
 * its lists again (at 1500 live vectors and each doubling) and gets new
 * centres: the searches stay right all along. */
static void test_updates(void)
{
    enum { DIM = 384, CAP = 20000, STEPS = 36000 };
    jm_err e;
    gen g;
    gen_init(&g, DIM, 50, 500);
    vecstore vs = {DIM, calloc((size_t)CAP * DIM, sizeof(float))};
    uint8_t *live = calloc(CAP, 1);
    idx *x;
    idx_new(DIM, &x, &e);
    CHECK(idx_set_ivf(x, 1500, &e) == JM_OK, "ivf");
    uint32_t next = 0, nlive = 0;
    int ok = 0, tot = 0, self = 0, selftot = 0, errs = 0, trainings = 0, lastnl = 0;
    float q[DIM];
    for (int step = 0; step < STEPS; step++) {
        int op = (int)(rnd() % 10);
        if (op < 6 || nlive < 200) {
            if (next >= CAP)
                continue;
            uint32_t s = next;
            next += rnd() % 8 == 0 && next + 2 <= CAP ? 2 : 1; /* a few slots never set */
            gen_vec(&g, vs.v + (size_t)s * DIM);
            errs += idx_set(x, s, vs.v + (size_t)s * DIM, &e) != JM_OK;
            nlive += !live[s];
            live[s] = 1;
        } else {
            uint32_t s;
            do
                s = (uint32_t)(rnd() % next);
            while (!live[s]);
            if (op < 8) { /* replace: usually lands in another list */
                gen_vec(&g, vs.v + (size_t)s * DIM);
                errs += idx_set(x, s, vs.v + (size_t)s * DIM, &e) != JM_OK;
            } else {
                idx_remove(x, s);
                live[s] = 0;
                nlive--;
            }
        }
        if (idx_nlist(x) != lastnl) {
            trainings++;
            lastnl = idx_nlist(x);
        }
        if (step % 2000 == 1999) {
            errs += idx_count(x) != nlive;
            for (int t = 0; t < 20; t++) {
                gen_vec(&g, q);
                double sc[10];
                int nt = live_top10(&vs, live, next, q, sc);
                idx_hit h[10];
                int n = 0;
                errs += idx_search_exact(x, q, 10, 0, NULL, fetch_store, &vs, h, &n, &e) != JM_OK;
                int same = n == nt;
                for (int i = 0; i < n && same; i++)
                    same = live[h[i].slot] &&
                           fabs(ddot(q, vs.v + (size_t)h[i].slot * DIM, DIM) - sc[i]) <= 1e-6;
                ok += same;
                tot++;
                /* a live vector finds itself first */
                uint32_t s;
                do
                    s = (uint32_t)(rnd() % next);
                while (!live[s]);
                errs += idx_search(x, vs.v + (size_t)s * DIM, 1, NULL, h, &n, &e) != JM_OK;
                self += n == 1 && h[0].slot == s;
                selftot++;
            }
        }
    }
    printf("updates: %u live of %u slots, lists trained %d times (%d lists); top-10 exact on %d of "
           "%d, "
           "self found on %d of %d\n",
           nlive, next, trainings, idx_nlist(x), ok, tot, self, selftot);
    CHECK(errs == 0 && trainings >= 3 && idx_nlist(x) > 50, "updates: %d errors, %d trainings",
          errs, trainings);
    CHECK(ok >= tot * 99 / 100 && self == selftot, "updates: %d of %d exact, self %d of %d", ok,
          tot, self, selftot);
    /* Everything removed, then a few back. */
    for (uint32_t s = 0; s < next; s++)
        if (live[s]) {
            idx_remove(x, s);
            live[s] = 0;
        }
    idx_hit h[10];
    int n = -1;
    CHECK(idx_count(x) == 0 && idx_search(x, q, 10, NULL, h, &n, &e) == JM_OK && n == 0,
          "all removed");
    for (uint32_t s = 0; s < 50; s++)
        errs += idx_set(x, s * 3, vs.v + (size_t)s * DIM, &e) != JM_OK;
    CHECK(idx_count(x) == 50 && idx_search(x, vs.v + 7 * DIM, 1, NULL, h, &n, &e) == JM_OK &&
              n == 1 && h[0].slot == 21,
          "re-added: %d %u", n, n ? h[0].slot : 0);
    idx_free(x);
    gen_free(&g);
    free(vs.v);
    free(live);
}

/* ---- Snapshot ---- */

static const char *snap_path(int which)
{
    static char p[2][64];
    if (!p[which][0])
        snprintf(p[which], sizeof p[which], "/tmp/test_idx.%d.%d.snap", (int)getpid(), which);
    return p[which];
}

/* idx_save into path, then the checksum, as the engine's snapshot would. */
static int snap_save(const idx *x, const char *path)
{
    jm_bin b;
    jm_err e;
    if (jm_bin_open(&b, path, "w", &e))
        return -1;
    int rc = idx_save(x, &b, &e);
    uint64_t sum = jm_bin_sum(&b);
    if (!rc)
        rc = jm_bin_write(&b, &sum, sizeof sum, &e);
    return jm_bin_close(&b, &e) || rc;
}

/* idx_load, and (check_sum) the checksum after it. */
static int snap_load(const char *path, idx **out, int check_sum, jm_err *e)
{
    jm_bin b;
    *out = NULL;
    if (jm_bin_open(&b, path, "r", e))
        return JM_EIO;
    int rc = idx_load(&b, out, e);
    if (rc == JM_OK && check_sum) {
        uint64_t want = 0, got = jm_bin_sum(&b);
        if ((rc = jm_bin_read(&b, &want, sizeof want, e)) == JM_OK && want != got)
            rc = jm_fail(e, JM_EFORMAT, "checksum");
        if (rc) {
            idx_free(*out);
            *out = NULL;
        }
    }
    jm_bin_close(&b, NULL);
    return rc;
}

/* Same counts, same hits (slots and score bits) for every query with and
 * without a filter, same approximate score of every slot. */
static int same_index(const idx *a, const idx *b, const float *qs, int nq, int dim,
                      const uint64_t *allow)
{
    jm_err e;
    if (idx_count(a) != idx_count(b) || idx_slots(a) != idx_slots(b) ||
        idx_nlist(a) != idx_nlist(b) || idx_dim(a) != idx_dim(b))
        return 0;
    idx_hit ha[50], hb[50];
    for (int q = 0; q < nq; q++) {
        const float *qv = qs + (size_t)q * dim;
        for (int f = 0; f < 2; f++) {
            int na = -1, nb = -2;
            idx_search(a, qv, 50, f ? allow : NULL, ha, &na, &e);
            idx_search(b, qv, 50, f ? allow : NULL, hb, &nb, &e);
            if (na != nb || memcmp(ha, hb, sizeof(idx_hit) * na) != 0)
                return 0;
        }
    }
    for (uint32_t s = 0; s < idx_slots(a) + 5; s++) {
        float sa = idx_score(a, qs, s), sb = idx_score(b, qs, s);
        if (isnan(sa) != isnan(sb) || (!isnan(sa) && memcmp(&sa, &sb, sizeof sa) != 0))
            return 0;
    }
    return 1;
}

static long file_read_all(const char *path, unsigned char **out)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    *out = malloc((size_t)n);
    if (fread(*out, 1, (size_t)n, f) != (size_t)n)
        n = -1;
    fclose(f);
    return n;
}

static void file_write_all(const char *path, const unsigned char *p, long n)
{
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(p, 1, (size_t)n, f);
        fclose(f);
    }
}

/* Loads a patched copy of the file: 1 if idx_load itself rejects it with
 * JM_EFORMAT (no index out), before any checksum. */
static int rejects(const unsigned char *file, long size, long off, const void *val, size_t len)
{
    unsigned char *c = malloc((size_t)size);
    memcpy(c, file, (size_t)size);
    memcpy(c + off, val, len);
    file_write_all(snap_path(1), c, size);
    free(c);
    idx *y = (idx *)1;
    jm_err e = {0};
    int rc = snap_load(snap_path(1), &y, 0, &e);
    int ok = rc == JM_EFORMAT && y == NULL && e.msg[0];
    if (!ok)
        fprintf(stderr, "  patch at %ld: rc %d, msg \"%s\"\n", off, rc, e.msg);
    idx_free(y);
    return ok;
}

static void test_snapshot(void)
{
    enum { DIM = 96, NQ = 40 };
    jm_err e;
    gen g;
    gen_init(&g, DIM, 20, 200);
    float *v = malloc(sizeof(float) * DIM), *qs = malloc(sizeof(float) * DIM * NQ);
    for (int q = 0; q < NQ; q++)
        gen_vec(&g, qs + (size_t)q * DIM);
    uint64_t allow[1024]; /* slots up to 65536 */
    for (int i = 0; i < 1024; i++)
        allow[i] = rnd() & rnd(); /* a quarter of the slots */

    /* Empty, and small without lists. */
    idx *x, *y;
    idx_new(DIM, &x, &e);
    CHECK(snap_save(x, snap_path(0)) == 0 && snap_load(snap_path(0), &y, 1, &e) == JM_OK && y &&
              same_index(x, y, qs, NQ, DIM, allow),
          "empty round trip: %s", e.msg);
    idx_free(y);
    for (uint32_t i = 0; i < 700; i++) {
        gen_vec(&g, v);
        idx_set(x, i * 3, v, &e);
    }
    CHECK(snap_save(x, snap_path(0)) == 0 && snap_load(snap_path(0), &y, 1, &e) == JM_OK && y &&
              idx_nlist(y) == 0 && same_index(x, y, qs, NQ, DIM, allow),
          "small round trip: %s", e.msg);
    idx_free(y);
    idx_free(x);

    /* With lists (trained at 1000 and again at 2000, 4000), sparse slots,
     * removals and replacements (partial and freed chunks), several
     * centres, search settings other than the defaults. */
    idx_new(DIM, &x, &e);
    idx_set_ivf(x, 1000, &e);
    idx_set_probe(x, 6, 0.25f, &e);
    idx_set_spread(x, 1, &e); /* the lists' sums must come back equal */
    for (uint32_t i = 0; i < 6000; i++) {
        gen_vec(&g, v);
        idx_set(x, i * 4 + (uint32_t)(rnd() % 4), v, &e);
    }
    for (int i = 0; i < 1500; i++) {
        uint32_t s = (uint32_t)(rnd() % 24000);
        if (i % 2) {
            idx_remove(x, s);
        } else if (idx_is_live(x, s)) {
            gen_vec(&g, v);
            idx_set(x, s, v, &e);
        }
    }
    CHECK(idx_nlist(x) > 40, "lists: %d", idx_nlist(x));
    CHECK(snap_save(x, snap_path(0)) == 0, "save");
    int rc = snap_load(snap_path(0), &y, 1, &e);
    CHECK(rc == JM_OK && y && idx_spread(y) == 1 && same_index(x, y, qs, NQ, DIM, allow), "round trip: %d %s", rc,
          e.msg);
    /* The same further updates on both: another training (the live count
     * doubles), another centre, removals. */
    uint64_t st = rng_state;
    for (int pass = 0; pass < 2 && y; pass++) {
        rng_state = st;
        idx *z = pass ? y : x;
        for (uint32_t i = 0; i < 7000; i++) {
            gen_vec(&g, v);
            idx_set(z, 24000 + i * 2, v, &e);
            if (i % 5 == 0)
                idx_remove(z, (uint32_t)(rnd() % 30000));
        }
    }
    CHECK(y && idx_nlist(x) > 60 && same_index(x, y, qs, NQ, DIM, allow),
          "after further updates: %d lists", idx_nlist(x));
    idx_free(y);

    /* Truncated anywhere: an error, never a crash or a leak. */
    CHECK(snap_save(x, snap_path(0)) == 0, "save again");
    unsigned char *file = NULL;
    long size = file_read_all(snap_path(0), &file);
    CHECK(size > 1000, "snapshot size %ld", size);
    long cuts[] = {0,         1,         7,        8,        9,
                   100,       167,       168,      169,      200,
                   1000,      size / 5,  size / 4, size / 2, 3 * size / 4,
                   size - 17, size - 16, size - 9, size - 8, size - 1};
    int tok = 1;
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        file_write_all(snap_path(1), file, cuts[i]);
        y = (idx *)1;
        e.msg[0] = 0;
        rc = snap_load(snap_path(1), &y, 1, &e);
        if (!(rc == JM_EFORMAT && y == NULL && strstr(e.msg, "ends"))) {
            fprintf(stderr, "  cut at %ld: rc %d, \"%s\"\n", cuts[i], rc, e.msg);
            tok = 0;
        }
    }
    CHECK(tok, "truncated files");

    /* Corrupt values that idx_load itself must reject (the checksum would
     * catch any change, but the reader must not trust the data before it). */
    uint64_t hdr[20];
    memcpy(hdr, file + 8, sizeof hdr);
    uint64_t dim = hdr[1], row = hdr[2], nslots = hdr[4], ngen = hdr[6], nlist = hdr[8],
             n1 = hdr[9];
    struct {
        int word;
        uint64_t val;
    } hp[] = {
        {-1, 0x1234},    {0, 2},           {1, 0},           {1, dim + 1},     {1, 1 << 20},
        {2, row + 32},   {3, 128},         {4, 1ULL << 40},  {4, nslots - 64}, {4, nslots + 64},
        {5, hdr[5] + 1}, {5, nslots + 1},  {6, 0},           {6, 33},          {6, ngen + 1},
        {6, ngen - 1},   {7, 1ULL << 50},  {8, 0},           {8, nlist + 1},   {8, 1 << 30},
        {9, nlist + 1},  {9, n1 - 1},      {9, n1 + 1},      {11, 1ULL << 40}, {12, 0},
        {13, 0},         {13, 1ULL << 40}, {14, 0x40000000}, {15, 31},         {17, 1},
        {16, 0xbf800000 /* spread -1 */},  {16, 0x7fc00000 /* NaN */},   {16, 0x40a00000 /* 5 */},
        {16, 1ULL << 32}};
    int hok = 1;
    for (size_t i = 0; i < sizeof hp / sizeof hp[0]; i++) {
        long off = hp[i].word < 0 ? 0 : 8 + 8 * hp[i].word;
        if (!rejects(file, size, off, &hp[i].val, sizeof(uint64_t))) {
            fprintf(stderr, "  header word %d = %llu accepted\n", hp[i].word,
                    (unsigned long long)hp[i].val);
            hok = 0;
        }
    }
    CHECK(hok, "corrupt header words");
    /* ... and in the body: the cell table, a centroid, the first list's
     * length and its first rows (list 0 holds fewer than 4096 rows, so its
     * arrays follow one another), the end marker. */
    long off_cell = 168 + 8 * (long)((nslots + 63) / 64) + (long)(ngen - 1) * (long)dim * 4;
    long off_cl = off_cell + (long)(n1 + 1) * 4 + (long)n1 * (long)dim * 4;
    long off_l0 = off_cl + (long)nlist * (long)dim * 4;
    uint32_t n0;
    memcpy(&n0, file + off_l0, 4);
    long off_scale = off_l0 + 4 + (long)n0 * (long)row, off_gen = off_scale + 4L * n0,
         off_slot = off_gen + n0;
    uint32_t slot0, zero = 0, huge = 0x7fffffff, badslot = (uint32_t)nslots + 5;
    memcpy(&slot0, file + off_slot, 4);
    float nanv = NAN, negv = -1;
    uint8_t badgen = (uint8_t)ngen;
    uint64_t badend = 0;
    int bok = n0 > 2 && n0 < 4096;
    bok &= rejects(file, size, off_cell + 4, &zero, 4); /* cell table not increasing */
    bok &= rejects(file, size, off_cl + 12, &nanv, 4);                     /* a leaf not finite */
    bok &= rejects(file, size, off_l0, &huge, 4); /* a list longer than the count */
    bok &= rejects(file, size, off_slot, &badslot, 4);                     /* a slot out of range */
    bok &= rejects(file, size, off_slot + 4, &slot0, 4);                   /* a slot twice */
    bok &= rejects(file, size, off_gen, &badgen, 1); /* a generation out of range */
    bok &= rejects(file, size, off_scale, &nanv, 4);                       /* a scale not finite */
    bok &= rejects(file, size, off_scale + 4, &negv, 4);                   /* a negative scale */
    bok &= rejects(file, size, size - 16, &badend, 8);                     /* the end marker */
    CHECK(bok, "corrupt body values (list 0: %u rows)", n0);
    /* A slot that is not live: the first dead slot below nslots. */
    uint64_t *bm = (uint64_t *)(file + 168);
    uint32_t dead = 0;
    while (dead < nslots && (bm[dead / 64] >> (dead % 64) & 1))
        dead++;
    CHECK(dead < nslots && rejects(file, size, off_slot, &dead, 4),
          "a row of a dead slot accepted");
    free(file);

    /* The search settings came back, and off stays off. */
    idx_set_ivf(x, SIZE_MAX, &e);
    CHECK(snap_save(x, snap_path(0)) == 0 && snap_load(snap_path(0), &y, 1, &e) == JM_OK &&
              same_index(x, y, qs, NQ, DIM, allow),
          "round trip with the lists off");
    idx_free(y);
    remove(snap_path(0));
    remove(snap_path(1));
    idx_free(x);
    gen_free(&g);
    free(v);
    free(qs);
}

/* idx_bulk_begin / idx_bulk_end: a bulk load trains the lists once, at the
 * last point of the schedule at or below the estimate, and ends with the
 * same lists and answers as one that trained at every point; a load that
 * falls short trains at its end; one below ivf_min gets the schedule back. */
static void test_bulk(void)
{
    enum { N = 9000, DIM = 64, NQ = 40 };
    gen g;
    gen_init(&g, DIM, 12, 60);
    float *v = malloc(sizeof(float) * DIM * (N + NQ));
    for (int i = 0; i < N + NQ; i++)
        gen_vec(&g, v + (size_t)i * DIM);
    gen_free(&g);
    jm_err e;
    idx *a, *b, *c, *d;
    idx_new(DIM, &a, &e);
    idx_new(DIM, &b, &e);
    idx_new(DIM, &c, &e);
    idx_new(DIM, &d, &e);
    idx_set_ivf(a, 1000, &e);
    idx_set_ivf(b, 1000, &e);
    idx_set_ivf(c, 1000, &e);
    idx_set_ivf(d, 1000, &e);
    idx_bulk_begin(b, N); /* the schedule's points: 1000, 2000, 4000, 8000 */
    int early = 0, bad = 0;
    for (int i = 0; i < N; i++) {
        bad += idx_set(a, (uint32_t)i, v + (size_t)i * DIM, &e) != JM_OK;
        bad += idx_set(b, (uint32_t)i, v + (size_t)i * DIM, &e) != JM_OK;
        if (i == 7998)
            early = idx_nlist(b);
        if (i == 1500)
            CHECK(idx_nlist(a) > 0, "the plain load has lists at 1500: %d", idx_nlist(a));
    }
    CHECK(bad == 0, "%d failed sets", bad);
    CHECK(early == 0, "no lists before 8000 in the bulk load: %d", early);
    CHECK(idx_bulk_end(b, &e) == JM_OK && idx_nlist(b) == idx_nlist(a) && idx_nlist(a) > 50,
          "the same list count: %d and %d", idx_nlist(b), idx_nlist(a));
    idx_set_probe(a, 4, IDX_FILTER_EXP, &e);
    idx_set_probe(b, 4, IDX_FILTER_EXP, &e);
    int same = 0;
    for (int q = 0; q < NQ; q++) {
        idx_hit ha[20], hb[20];
        int na = 0, nb = 0;
        idx_search(a, v + (size_t)(N + q) * DIM, 20, NULL, ha, &na, &e);
        idx_search(b, v + (size_t)(N + q) * DIM, 20, NULL, hb, &nb, &e);
        int ok = na == 20 && nb == 20;
        for (int k = 0; ok && k < 20; k++)
            ok = ha[k].slot == hb[k].slot && ha[k].score == hb[k].score;
        same += ok;
    }
    CHECK(same == NQ, "bulk and plain loads answer alike at 4 lists: %d of %d", same, NQ);
    /* an estimate too high: no training during the load, one at its end */
    idx_bulk_begin(c, N);
    for (int i = 0; i < 5000; i++)
        idx_set(c, (uint32_t)i, v + (size_t)i * DIM, &e);
    int before = idx_nlist(c);
    CHECK(before == 0 && idx_bulk_end(c, &e) == JM_OK && idx_nlist(c) > 50,
          "a short bulk load trains at its end: %d lists before, %d after", before, idx_nlist(c));
    /* below ivf_min: the schedule as without the hint */
    idx_bulk_begin(d, N);
    for (int i = 0; i < 500; i++)
        idx_set(d, (uint32_t)i, v + (size_t)i * DIM, &e);
    CHECK(idx_bulk_end(d, &e) == JM_OK && idx_nlist(d) == 0, "500 vectors: no lists (%d)", idx_nlist(d));
    for (int i = 500; i < 1000; i++)
        idx_set(d, (uint32_t)i, v + (size_t)i * DIM, &e);
    CHECK(idx_nlist(d) > 0, "then lists at ivf_min: %d", idx_nlist(d));
    int nd = idx_nlist(d);
    idx_bulk_begin(d, N); /* lists exist: no effect */
    for (int i = 1000; i < 1999; i++)
        idx_set(d, (uint32_t)i, v + (size_t)i * DIM, &e);
    idx_set(d, 1999, v + (size_t)1999 * DIM, &e);
    CHECK(idx_nlist(d) != nd && idx_bulk_end(d, &e) == JM_OK, "with lists, the hint changes nothing: trained at "
          "2000 (%d lists, %d before)", idx_nlist(d), nd);
    idx_free(a);
    idx_free(b);
    idx_free(c);
    idx_free(d);
    free(v);
}

int main(void)
{
    k_init();
    test_kernels();
    test_basics();
    test_growth();
    test_threads();
    test_updates();
    test_snapshot();
    test_recall();
    test_probe_need();
    test_bulk();
    return CHECK_DONE("test_idx");
}
