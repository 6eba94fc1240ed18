/* calibrate - the have / partial similarity thresholds, measured on O*NET.
 *
 *   calibrate [--model DIR] [--onet DIR]
 *
 * Embeds every distinct O*NET technology skill and groups them by their
 * O*NET commodity category ("Data base management system software": MySQL,
 * PostgreSQL, Oracle Database, ...). Two distributions of skill-to-skill
 * cosine similarity follow:
 *   within   two different skills of the same category: related products,
 *            what "partial" should mean;
 *   across   two skills of different categories: unrelated, "missing".
 * It prints their percentiles, the similarities of a few labelled pairs, and
 * the thresholds docs/ranking.md derives from them, on a grid of 0.05:
 *   partial = the smallest that at most 0.2% of unrelated pairs reach (a
 *             person's skill is compared with every skill of a job, so false
 *             "partial" matches must be rare per pair);
 *   have    = the smallest that at most 0.1% of pairs of different products
 *             of one category reach: the same skill, named differently. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bert.h"

static int cmpf(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

static float pct(float *v, int n, double p)
{
    if (!n)
        return NAN;
    int i = (int)(p * (n - 1));
    return v[i];
}

static uint64_t st = 99;
static uint32_t rnd(void)
{
    st = st * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(st >> 33);
}

int main(int argc, char **argv)
{
    const char *model_dir = "models/all-MiniLM-L6-v2", *onet = "../shared/data/onet";
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--model")) model_dir = argv[i + 1];
        else if (!strcmp(argv[i], "--onet")) onet = argv[i + 1];
    }
    jm_err err = {0};
    bert_model *m = NULL;
    bert_pool *pool = NULL;
    if (bert_load(model_dir, &m, &err) || bert_pool_new(m, 0, &pool, &err)) {
        fprintf(stderr, "calibrate: %s\n", err.msg);
        return 1;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/Technology Skills.txt", onet);
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "calibrate: %s: cannot open\n", path);
        return 1;
    }
    int cap = 16384, n = 0;
    char **name = malloc(sizeof(char *) * cap), **cat = malloc(sizeof(char *) * cap);
    char line[4096];
    if (!fgets(line, sizeof line, f)) return 1;
    while (fgets(line, sizeof line, f) && n < cap) {
        char *fld[6] = {0};
        int nf = 0;
        char *s = line;
        for (char *p = line; nf < 6; p++)
            if (*p == '\t' || *p == '\r' || *p == '\n' || !*p) {
                int end = !*p || *p == '\n';
                *p = 0;
                fld[nf++] = s;
                s = p + 1;
                if (end) break;
            }
        if (nf < 4) continue;
        int dup = 0;
        for (int i = n - 1; i >= 0 && i >= n - 64 && !dup; i--) dup = !strcmp(name[i], fld[1]);
        for (int i = 0; i < n && !dup; i++) dup = !strcmp(name[i], fld[1]);
        if (dup) continue;
        name[n] = strdup(fld[1]);
        cat[n] = strdup(fld[3]);
        n++;
    }
    fclose(f);
    int D = bert_dim(m);
    float *emb = malloc(sizeof(float) * (size_t)n * D);
    double t0 = jm_now();
    if (bert_embed(pool, n, (const char *const *)name, NULL, emb, NULL, &err)) {
        fprintf(stderr, "calibrate: %s\n", err.msg);
        return 1;
    }
    fprintf(stderr, "calibrate: embedded %d skills in %.1f s\n", n, jm_now() - t0);
    int maxp = 400000;
    float *within = malloc(sizeof(float) * maxp), *across = malloc(sizeof(float) * maxp);
    int nw = 0, na = 0;
    for (int tries = 0; tries < 20 * maxp && (nw < maxp || na < maxp); tries++) {
        int a = (int)(rnd() % (uint32_t)n), b = (int)(rnd() % (uint32_t)n);
        if (a == b) continue;
        float s = 0;
        for (int d = 0; d < D; d++) s += emb[(size_t)a * D + d] * emb[(size_t)b * D + d];
        if (!strcmp(cat[a], cat[b])) {
            if (nw < maxp) within[nw++] = s;
        } else if (na < maxp) {
            across[na++] = s;
        }
    }
    qsort(within, (size_t)nw, sizeof(float), cmpf);
    qsort(across, (size_t)na, sizeof(float), cmpf);
    printf("# calibrate: %d distinct O*NET skills; %d pairs within a category, %d across\n", n, nw, na);
    printf("%-8s %6s %6s %6s %6s %6s %6s\n", "pairs", "p50", "p75", "p90", "p95", "p99", "p99.9");
    printf("%-8s %6.3f %6.3f %6.3f %6.3f %6.3f %6.3f\n", "within", pct(within, nw, .5), pct(within, nw, .75),
           pct(within, nw, .9), pct(within, nw, .95), pct(within, nw, .99), pct(within, nw, .999));
    printf("%-8s %6.3f %6.3f %6.3f %6.3f %6.3f %6.3f\n", "across", pct(across, na, .5), pct(across, na, .75),
           pct(across, na, .9), pct(across, na, .95), pct(across, na, .99), pct(across, na, .999));
    float partial = 1, have = 1;
    for (int g = 20; g >= 0; g--) {
        float th = g * 0.05f;
        int a = 0, w = 0;
        for (int i = 0; i < na; i++) a += across[i] >= th;
        for (int i = 0; i < nw; i++) w += within[i] >= th;
        if (a <= 0.002 * na) partial = th;
        if (w <= 0.001 * nw) have = th;
    }
    int wa = 0, aa = 0;
    for (int i = 0; i < nw; i++) wa += within[i] >= have;
    for (int i = 0; i < na; i++) aa += across[i] >= partial;
    printf("thresholds: partial %.2f (%.2f%% of unrelated pairs reach it), have %.2f (%.3f%% of related pairs)\n",
           partial, 100.0 * aa / na, have, 100.0 * wa / nw);
    static const char *pairs[][2] = {
        {"PostgreSQL", "PostgreSQL database"}, {"MySQL", "PostgreSQL"},     {"Python", "Adobe Photoshop"},
        {"JavaScript", "JS"},                  {"Microsoft Excel", "Excel"}, {"Docker", "Kubernetes"},
        {"React", "Vue.js"},                   {"C++", "C#"},                {"SQL", "Structured query language SQL"},
        {"Python", "R"},                       {"Java", "JavaScript"},       {"AutoCAD", "Autodesk AutoCAD"},
    };
    int np = (int)(sizeof pairs / sizeof pairs[0]);
    const char *t[64];
    for (int i = 0; i < np; i++) {
        t[2 * i] = pairs[i][0];
        t[2 * i + 1] = pairs[i][1];
    }
    float *pe = malloc(sizeof(float) * (size_t)2 * np * D);
    bert_embed(pool, 2 * np, t, NULL, pe, NULL, &err);
    for (int i = 0; i < np; i++) {
        float s = 0;
        for (int d = 0; d < D; d++) s += pe[(size_t)2 * i * D + d] * pe[(size_t)(2 * i + 1) * D + d];
        printf("  %-22s %-34s %.3f  %s\n", pairs[i][0], pairs[i][1], s,
               s >= have ? "have" : s >= partial ? "partial" : "missing");
    }
    bert_pool_free(pool);
    bert_free(m);
    return 0;
}
