/* quality - how well rankings find an O*NET occupation from some of its skills.
 *
 *   quality --db FILE [--model DIR] [--onet DIR] [--queries N] [--seed S] [--draws D]
 *           [--verbose 1] [tuning: --weights q,c,s,k --thresholds have,partial
 *           --query-have X --shrink X --mu X --length-norm X --nice X --nice-credit X]
 *
 * The database must hold the O*NET jobs with their embeddings (bench/run.sh
 * makes it: import-onet, embed). Two query sets, N queries each, drawn with a
 * fixed seed from occupations that have enough skills:
 *   random-3  3 of the occupation's technology skills, rarer skills weighted up
 *             (weight = IDF, ln(N / df)), as people list distinctive skills;
 *   hot-5     5 of its "hot technology" skills: common skills shared by many
 *             occupations, the hard case.
 * The expected answer is the occupation itself. Four rankings:
 *   (a) semantic: cosine between the embedded skills string and each job's
 *       embedded text;
 *   (b) keyword: the store's BM25 over title, skills and description;
 *   (c) IDF overlap: sum of the IDF of the shared skills / |job skills|^0.3;
 *   (d) jobmatch's final ranking (rank_recommend).
 * For each: recall@1, recall@10 and MRR (reciprocal rank within the top 100). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bert.h"
#include "db.h"
#include "rank.h"

typedef struct ojob {
    char *id;
    char **norm;
    int n;
    float *emb;
} ojob;

typedef struct corpus {
    ojob *j;
    int n, cap;
    int dim;
} corpus;

static int on_job(void *ctx, const db_row *r)
{
    corpus *c = ctx;
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 2048;
        c->j = realloc(c->j, sizeof(ojob) * (size_t)c->cap);
    }
    ojob *o = &c->j[c->n++];
    memset(o, 0, sizeof *o);
    o->id = strdup(r->job.id);
    o->norm = calloc((size_t)r->job.nskills + 1, sizeof(char *));
    for (int i = 0; i < r->job.nskills; i++) {
        char *s = db_skill_norm(r->job.skills[i].name);
        if (s)
            o->norm[o->n++] = s;
    }
    if (r->emb && r->emb_len == (size_t)c->dim * 4) {
        o->emb = malloc(sizeof(float) * (size_t)c->dim);
        db_vec_from_le(r->emb, c->dim, o->emb);
    }
    return 0;
}

/* Skills per occupation with the hot flag, from the O*NET file itself. */
typedef struct oskills {
    char code[16];
    char *name[512];
    int hot[512];
    int n;
} oskills;

static uint64_t rng_state;
static double urand(void)
{
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(rng_state >> 11) * (1.0 / 9007199254740992.0);
}

typedef struct query {
    int job; /* index in corpus */
    char *skills[5];
    int n;
} query;

typedef struct metrics {
    double r1, r10, mrr;
} metrics;

static void add_rank(metrics *m, int rank /* 1-based, 0 = not found */)
{
    if (rank == 1)
        m->r1 += 1;
    if (rank >= 1 && rank <= 10)
        m->r10 += 1;
    if (rank >= 1 && rank <= 100)
        m->mrr += 1.0 / rank;
}

/* rank of `target` by scores (higher first; ties broken against the target) */
static int rank_of(const double *score, int n, int target)
{
    int r = 1;
    for (int i = 0; i < n; i++)
        if (i != target && score[i] >= score[target])
            r++;
    return r;
}

static int df_of(char **vn, const int *df, int V, const char *s)
{
    for (int v = 0; v < V; v++)
        if (!strcmp(vn[v], s))
            return df[v] ? df[v] : 1;
    return 1;
}

static int find_job(const corpus *c, const char *id)
{
    for (int i = 0; i < c->n; i++)
        if (!strcmp(c->j[i].id, id))
            return i;
    return -1;
}

int main(int argc, char **argv)
{
    const char *dbpath = "build/bench-onet.db", *model_dir = "models/all-MiniLM-L6-v2", *onet = "../shared/data/onet";
    int nq = 200, verbose = 0, ndraws = 1;
    unsigned long long seed = 20261124ULL;
    rank_opts o;
    rank_opts_default(&o);
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--db")) dbpath = argv[i + 1];
        else if (!strcmp(argv[i], "--model")) model_dir = argv[i + 1];
        else if (!strcmp(argv[i], "--onet")) onet = argv[i + 1];
        else if (!strcmp(argv[i], "--queries")) nq = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--seed")) seed = strtoull(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--weights")) /* q,c,s,k for tuning */
            sscanf(argv[i + 1], "%f,%f,%f,%f", &o.w.query, &o.w.coverage, &o.w.semantic, &o.w.keyword);
        else if (!strcmp(argv[i], "--thresholds"))
            sscanf(argv[i + 1], "%f,%f", &o.have, &o.partial);
        else if (!strcmp(argv[i], "--shrink")) o.shrink = (float)atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--mu")) o.mu = (float)atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--length-norm")) o.length_norm = (float)atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--query-have")) o.query_have = (float)atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--nice")) o.nice_weight = (float)atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--verbose")) verbose = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--nice-credit")) o.nice_credit = (float)atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--draws")) ndraws = atoi(argv[i + 1]) > 0 ? atoi(argv[i + 1]) : 1;
    }
    jm_err err = {0};
    db *d = NULL;
    bert_model *m = NULL;
    bert_pool *pool = NULL;
    rank_engine *e = NULL;
    if (db_open(dbpath, &d, &err) || bert_load(model_dir, &m, &err) || bert_pool_new(m, 1, &pool, &err) ||
        rank_open(d, m, &o, &e, &err)) {
        fprintf(stderr, "quality: %s\n", err.msg);
        return 1;
    }
    corpus c = {.dim = bert_dim(m)};
    if (db_scan_jobs(d, bert_model_id(m), 1, on_job, &c, &err)) {
        fprintf(stderr, "quality: %s\n", err.msg);
        return 1;
    }
    /* document frequencies of normalised skills, for (c) and for drawing */
    int V = 0, vcap = 16384;
    char **vn = malloc(sizeof(char *) * vcap);
    int *df = calloc((size_t)vcap, sizeof(int));
    for (int i = 0; i < c.n; i++)
        for (int k = 0; k < c.j[i].n; k++) {
            int f = -1;
            for (int v = 0; v < V && f < 0; v++)
                if (!strcmp(vn[v], c.j[i].norm[k])) f = v;
            if (f < 0 && V < vcap) {
                vn[V] = c.j[i].norm[k];
                f = V++;
            }
            if (f >= 0) df[f]++;
        }
#define DF(s) df_of(vn, df, V, (s))

    /* O*NET skills with hot flags */
    char path[4096];
    snprintf(path, sizeof path, "%s/Technology Skills.txt", onet);
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "quality: %s: cannot open\n", path);
        return 1;
    }
    oskills *occ = calloc(1100, sizeof(oskills));
    int nocc = 0;
    char line[4096];
    if (!fgets(line, sizeof line, f)) return 1;
    while (fgets(line, sizeof line, f)) {
        char *fld[6] = {0};
        int nf = 0;
        for (char *p = line, *s = line; nf < 6; p++)
            if (*p == '\t' || *p == '\r' || *p == '\n' || !*p) {
                int end = !*p || *p == '\n';
                *p = 0;
                fld[nf++] = s;
                s = p + 1;
                if (end) break;
            }
        if (nf < 5) continue;
        if (!nocc || strcmp(occ[nocc - 1].code, fld[0])) {
            if (nocc == 1100) break;
            snprintf(occ[nocc++].code, 16, "%s", fld[0]);
        }
        oskills *os = &occ[nocc - 1];
        int dup = 0;
        for (int k = 0; k < os->n; k++) dup |= !strcmp(os->name[k], fld[1]);
        if (!dup && os->n < 512) {
            os->name[os->n] = strdup(fld[1]);
            os->hot[os->n++] = fld[4][0] == 'Y';
        }
    }
    fclose(f);

    int D = c.dim;
    double *score = malloc(sizeof(double) * (size_t)c.n);
    float *qv = malloc(sizeof(float) * (size_t)D);
    const char *names[2] = {"random-3", "hot-5"};
    const char *rn[4] = {"(a) semantic only", "(b) keyword BM25", "(c) IDF skill overlap", "(d) jobmatch"};
    metrics sum[2][4] = {{{0}}};
    double total_ms = 0;
    int nrec = 0, nsum[2] = {0, 0};
    for (int draw = 0; draw < ndraws; draw++) {
        unsigned long long dseed = seed + (unsigned long long)draw;
        /* query sets */
        query *qs[2];
        int nqs[2] = {0, 0};
        for (int set = 0; set < 2; set++) {
            rng_state = dseed + (unsigned)set * 7919u;
            qs[set] = calloc((size_t)nq, sizeof(query));
            int tries = 0;
            while (nqs[set] < nq && tries++ < 100000) {
                oskills *os = &occ[(int)(urand() * nocc)];
                int job = find_job(&c, os->code);
                if (job < 0) continue;
                int dupq = 0;
                for (int k = 0; k < nqs[set]; k++) dupq |= qs[set][k].job == job;
                if (dupq) continue;
                int want = set == 0 ? 3 : 5;
                int pool_idx[512], np = 0;
                for (int k = 0; k < os->n; k++)
                    if (set == 0 || os->hot[k]) pool_idx[np++] = k;
                if (np < want + (set == 0 ? 2 : 0)) continue;
                query *q = &qs[set][nqs[set]];
                q->job = job;
                while (q->n < want) {
                    double wsum = 0, w[512];
                    for (int k = 0; k < np; k++) {
                        char *nn = db_skill_norm(os->name[pool_idx[k]]);
                        w[k] = set == 0 ? log((double)c.n / DF(nn)) + 0.01 : 1.0;
                        free(nn);
                        for (int t = 0; t < q->n; t++)
                            if (!strcmp(q->skills[t], os->name[pool_idx[k]])) w[k] = 0;
                        wsum += w[k];
                    }
                    double r = urand() * wsum;
                    int pick = np - 1;
                    for (int k = 0; k < np; k++) {
                        r -= w[k];
                        if (r <= 0 && w[k] > 0) { pick = k; break; }
                    }
                    q->skills[q->n++] = os->name[pool_idx[pick]];
                }
                nqs[set]++;
            }
        }

        if (draw == 0) {
            printf("# quality: %d O*NET jobs; %d + %d queries, seed %llu; weights q=%.2f c=%.2f s=%.2f k=%.2f, "
                   "have %.2f partial %.2f query_have %.2f shrink %.1f mu %.0f nice %.2f\n",
                   c.n, nqs[0], nqs[1], seed, o.w.query, o.w.coverage, o.w.semantic, o.w.keyword, o.have, o.partial,
                   o.query_have, o.shrink, o.mu, o.nice_weight);
            printf("%-9s %-22s %9s %9s %7s\n", "set", "ranking", "recall@1", "recall@10", "MRR");
        }
        for (int set = 0; set < 2; set++) {
            metrics mt[4] = {{0}};
            for (int qi = 0; qi < nqs[set]; qi++) {
                query *q = &qs[set][qi];
                /* (a) semantic */
                char joined[2048] = "";
                for (int k = 0; k < q->n; k++) {
                    strcat(joined, k ? ", " : "");
                    strcat(joined, q->skills[k]);
                }
                const char *t = joined;
                bert_embed(pool, 1, &t, NULL, qv, NULL, &err);
                for (int i = 0; i < c.n; i++) {
                    double s = -2;
                    if (c.j[i].emb) {
                        s = 0;
                        for (int dd = 0; dd < D; dd++) s += (double)qv[dd] * c.j[i].emb[dd];
                    }
                    score[i] = s;
                }
                add_rank(&mt[0], rank_of(score, c.n, q->job));
                /* (b) keyword */
                db_hit *hits = NULL;
                int nh = 0, r = 0;
                if (db_keyword_search(d, (const char *const *)q->skills, q->n, 100, &hits, &nh, &err) == 0)
                    for (int i = 0; i < nh && !r; i++)
                        if (!strcmp(hits[i].id, c.j[q->job].id)) r = i + 1;
                db_hits_free(hits, nh);
                add_rank(&mt[1], r);
                /* (c) IDF overlap */
                char *qn[5];
                for (int k = 0; k < q->n; k++) qn[k] = db_skill_norm(q->skills[k]);
                for (int i = 0; i < c.n; i++) {
                    double s = 0;
                    for (int k = 0; k < q->n; k++)
                        for (int t2 = 0; t2 < c.j[i].n; t2++)
                            if (!strcmp(qn[k], c.j[i].norm[t2])) {
                                s += log((double)c.n / DF(qn[k]));
                                break;
                            }
                    score[i] = c.j[i].n ? s / pow(c.j[i].n, 0.3) : 0;
                }
                for (int k = 0; k < q->n; k++) free(qn[k]);
                add_rank(&mt[2], rank_of(score, c.n, q->job));
                /* (d) jobmatch */
                rank_query rq = {(const char *const *)q->skills, q->n, 100, 0, {0}};
                rank_filters_init(&rq.filters);
                rank_response res;
                r = 0;
                if (rank_recommend(e, pool, &rq, &res, &err) == 0) {
                    for (int i = 0; i < res.n && !r; i++)
                        if (!strcmp(res.results[i].id, c.j[q->job].id)) r = i + 1;
                    if (verbose && set == verbose - 1 && (r == 0 || r > 10)) {
                        printf("MISS %s (%d skills) rank %d, (c) rank %d, for:", c.j[q->job].id, c.j[q->job].n, r,
                               rank_of(score, c.n, q->job));
                        for (int k = 0; k < q->n; k++) printf(" [%s]", q->skills[k]);
                        printf("\n");
                        for (int i = 0; i < 3 && i < res.n; i++)
                            printf("   %d %s %s q=%.3f c=%.3f s=%.3f k=%.3f score=%.3f nalign=%d\n", i + 1, res.results[i].id,
                                   res.results[i].title, res.results[i].query, res.results[i].coverage,
                                   res.results[i].semantic, res.results[i].keyword, res.results[i].score,
                                   res.results[i].nalign);
                        if (r) {
                            const rank_result *tg = &res.results[r - 1];
                            printf("   target q=%.3f c=%.3f s=%.3f k=%.3f score=%.3f nalign=%d\n", tg->query, tg->coverage,
                                   tg->semantic, tg->keyword, tg->score, tg->nalign);
                        }
                    }
                    total_ms += res.ms;
                    nrec++;
                    rank_response_free(&res);
                } else {
                    fprintf(stderr, "quality: %s\n", err.msg);
                }
                add_rank(&mt[3], r);
            }
            for (int k = 0; k < 4; k++) {
                if (draw == 0)
                    printf("%-9s %-22s %9.3f %9.3f %7.3f\n", names[set], rn[k], mt[k].r1 / nqs[set],
                           mt[k].r10 / nqs[set], mt[k].mrr / nqs[set]);
                sum[set][k].r1 += mt[k].r1;
                sum[set][k].r10 += mt[k].r10;
                sum[set][k].mrr += mt[k].mrr;
            }
            nsum[set] += nqs[set];
        }
        for (int set = 0; set < 2; set++)
            free(qs[set]);
    }
    if (ndraws > 1) {
        printf("# over %d draws (seeds %llu-%llu), %d + %d queries:\n", ndraws, seed, seed + (unsigned)ndraws - 1,
               nsum[0], nsum[1]);
        for (int set = 0; set < 2; set++)
            for (int k = 0; k < 4; k++)
                printf("%-9s %-22s %9.3f %9.3f %7.3f  (%.0f of %d in the top 10)\n", names[set], rn[k],
                       sum[set][k].r1 / nsum[set], sum[set][k].r10 / nsum[set], sum[set][k].mrr / nsum[set],
                       sum[set][k].r10, nsum[set]);
    }
    printf("# mean recommend time %.2f ms (1 thread, %d jobs)\n", nrec ? total_ms / nrec : 0, c.n);
    rank_close(e);
    bert_pool_free(pool);
    bert_free(m);
    db_close(d);
    return 0;
}
