/* bench_rank - recommendations at scale: load time, memory, latency.
 *
 *   bench_rank --onet-db FILE --db FILE --jobs N [--model DIR] [--queries Q] [--stream Q2]
 *
 * Makes FILE (unless it already holds N jobs) with N jobs derived from the
 * O*NET occupations of --onet-db (a store with the O*NET jobs embedded): each
 * job takes an occupation's title and description, a random 50-100% of its
 * skills, one of 30 cities (20% remote), a salary range, one of 5,000
 * companies, an employment type, a seniority and a posting date. Running the
 * model over 100,000 texts would take most of an hour, so a job's vector is
 * its occupation's embedding plus Gaussian noise (sigma 0.02 per component),
 * normalised: close to what the model gives for a variant of the same text.
 * Vectors are written through the normal claim/commit path, so the store
 * considers them current.
 *
 * Then, in this process: the time rank_open takes to load the index from the
 * database, the process's RSS with the model and the index loaded, and the
 * latency of `recommend` (query embedding included, 1 thread) over Q queries of
 * 3-5 skills drawn from the occupations: p50 and p99, twice: cold (the
 * engine's embedding cache emptied before every query, so each one runs the
 * model) and warm (the same queries again, their embeddings cached). --stream
 * also times Q2 queries in stream mode (cold).
 *
 * --snapshot FILE loads the engine from that snapshot (rank.h) when it fits,
 * else scans and writes it: run twice to time both loads. The kernel is
 * asked to drop the snapshot from the page cache first (posix_fadvise), so
 * that its load is timed from the disk, as after a reboot, whatever this
 * process read before it (the store's counts scan the whole store, which can
 * evict it or not); the kernel need not comply. With 256 queries or more,
 * the vector index is calibrated again on their profiles after the cold pass
 * (rank_tune; the depth printed) and the snapshot rewritten, so the next run
 * starts with that depth.
 *
 * --recall Q3 (after the cold pass) measures the index itself on Q3 other
 * queries' profiles: their top 10 by idx_search_exact at several probe
 * depths and at the calibrated one, against a brute force over every
 * float32 vector of the store (one scan); and how many lists each query
 * needs (idx_probe_need). Its buffers add to the RSS figures printed after
 * it.
 *
 * A 1,000,000-job store takes a while to generate (~2 GB of SQLite for 1M):
 * make it once, e.g. `--db build/bench-1m.db --jobs 1000000 --queries 5`, and
 * reuse it. */
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "bert.h"
#include "db.h"
#include "idx.h"
#include "kernels.h"
#include "rank.h"
#include "rank_int.h" /* the engine's index, for the recall measure */

typedef struct occ {
    char *id, *title, *desc;
    db_skill *sk;
    int nsk;
    float *emb;
} occ;

typedef struct occs {
    occ *o;
    int n, cap, dim;
} occs;

static int on_occ(void *ctx, const db_row *r)
{
    occs *c = ctx;
    if (!r->emb || r->job.nskills < 3)
        return 0;
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 1024;
        c->o = realloc(c->o, sizeof(occ) * (size_t)c->cap);
    }
    occ *o = &c->o[c->n++];
    o->id = strdup(r->job.id);
    o->title = strdup(r->job.title ? r->job.title : "");
    o->desc = strdup(r->job.description ? r->job.description : "");
    o->nsk = r->job.nskills;
    o->sk = malloc(sizeof(db_skill) * (size_t)o->nsk);
    for (int i = 0; i < o->nsk; i++) {
        o->sk[i].name = strdup(r->job.skills[i].name);
        o->sk[i].required = r->job.skills[i].required;
    }
    o->emb = malloc(sizeof(float) * (size_t)c->dim);
    db_vec_from_le(r->emb, c->dim, o->emb);
    return 0;
}

static uint64_t rs = 12345;
static double ur(void)
{
    rs = rs * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(rs >> 11) * (1.0 / 9007199254740992.0);
}
static double gauss(void)
{
    double u = ur() + 1e-12, v = ur();
    return sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
}

static double rss_mb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double mb = 0;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6))
            mb = atof(line + 6) / 1024.0;
    if (f)
        fclose(f);
    return mb;
}

static int cmpd(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static const char *cities[] = {"Boston, MA", "Austin, TX", "Denver, CO", "Seattle, WA", "Chicago, IL", "New York, NY",
                               "San Francisco, CA", "Atlanta, GA", "Miami, FL", "Portland, OR", "Phoenix, AZ",
                               "Dallas, TX", "Houston, TX", "Detroit, MI", "Minneapolis, MN", "Raleigh, NC",
                               "Nashville, TN", "Salt Lake City, UT", "Pittsburgh, PA", "Columbus, OH",
                               "San Diego, CA", "Los Angeles, CA", "Baltimore, MD", "Kansas City, MO",
                               "St. Louis, MO", "Madison, WI", "Boise, ID", "Omaha, NE", "Tampa, FL", "Remote"};

static int generate(db *d, occs *oc, int64_t n, int dim, const char *model_id)
{
    jm_err err = {0};
    int B = 2000;
    db_job *js = calloc((size_t)B, sizeof(db_job));
    static const char *emp[] = {"full-time", "part-time", "contract"}, *sen[] = {"junior", "mid", "senior"};
    double t0 = jm_now();
    for (int64_t i = 0; i < n; i += B) {
        int m = (int)(n - i < B ? n - i : B);
        for (int k = 0; k < m; k++) {
            occ *o = &oc->o[(int)(ur() * oc->n)];
            db_job *j = &js[k];
            db_job_init(j);
            char id[48];
            snprintf(id, sizeof id, "gen-%07lld", (long long)(i + k));
            j->id = strdup(id);
            j->title = strdup(o->title);
            j->description = strdup(o->desc);
            char co[48];
            snprintf(co, sizeof co, "Company %d", (int)(ur() * 5000));
            j->company = strdup(co);
            int c = (int)(ur() * 30);
            j->location = strdup(cities[c]);
            j->remote = c == 29 || ur() < 0.15;
            j->salary_min = 30000 + 1000 * (int)(ur() * 120);
            j->salary_max = j->salary_min + 1000 * (5 + (int)(ur() * 60));
            j->employment_type = strdup(emp[(int)(ur() * 3)]);
            j->seniority = strdup(sen[(int)(ur() * 3)]);
            char day[48];
            snprintf(day, sizeof day, "2026-%02d-%02d", 1 + (int)(ur() * 11), 1 + (int)(ur() * 28));
            j->posted_at = strdup(day);
            double keep = 0.5 + 0.5 * ur();
            j->skills = malloc(sizeof(db_skill) * (size_t)o->nsk);
            for (int s = 0; s < o->nsk; s++)
                if (ur() < keep || j->nskills == 0) {
                    j->skills[j->nskills].name = strdup(o->sk[s].name);
                    j->skills[j->nskills++].required = o->sk[s].required;
                }
        }
        if (db_upsert_jobs(d, js, m, NULL, &err)) {
            fprintf(stderr, "bench_rank: %s\n", err.msg);
            return 1;
        }
        for (int k = 0; k < m; k++)
            db_job_clear(&js[k]);
    }
    double t1 = jm_now();
    /* vectors: claim every job, write its occupation's vector plus noise */
    float *vecs = malloc(sizeof(float) * 512 * (size_t)dim);
    char *cursor = NULL;
    int64_t done = 0;
    for (;;) {
        db_batch b;
        if (db_claim_jobs(d, model_id, cursor, 512, &b, &err)) {
            fprintf(stderr, "bench_rank: %s\n", err.msg);
            return 1;
        }
        if (!b.n)
            break;
        for (int k = 0; k < b.n; k++) {
            occ *o = &oc->o[(int)(ur() * oc->n)];
            /* the occupation whose title starts the text */
            for (int q = 0; q < oc->n; q++)
                if (!strncmp(b.texts[k], oc->o[q].title, strlen(oc->o[q].title)) &&
                    b.texts[k][strlen(oc->o[q].title)] == '.') {
                    o = &oc->o[q];
                    break;
                }
            double nn = 0;
            float *v = vecs + (size_t)k * dim;
            for (int x = 0; x < dim; x++) {
                v[x] = o->emb[x] + 0.02f * (float)gauss();
                nn += (double)v[x] * v[x];
            }
            for (int x = 0; x < dim; x++)
                v[x] /= (float)sqrt(nn);
        }
        if (db_commit_jobs(d, &b, vecs, dim, model_id, &err)) {
            fprintf(stderr, "bench_rank: %s\n", err.msg);
            return 1;
        }
        done += b.n;
        free(cursor);
        cursor = strdup(b.ids[b.n - 1]);
        db_batch_free(&b);
    }
    free(cursor);
    free(vecs);
    free(js);
    fprintf(stderr, "bench_rank: generated %lld jobs (rows %.1f s, vectors %.1f s)\n", (long long)done, t1 - t0,
            jm_now() - t1);
    return 0;
}

/* ---- Recall of the engine's vector index on real query profiles ----
 * Q queries drawn as the timed ones are (another seed), each embedded as
 * the engine embeds a profile (the skills joined by spaces); their exact top
 * 10 by a brute force over every float32 vector of the store (one scan,
 * BLAS in chunks); then idx_search_exact at several probe depths and at
 * the calibrated one, and each query's own need (idx_probe_need). */
typedef struct brute {
    rank_engine *e;
    int nq, dim, nb;
    const float *q;
    float *chunk, *S, *best; /* [4096][dim], [nq][4096], [nq][10] */
    uint32_t *bslot, *cslot; /* [nq][10], [4096] */
} brute;

static void brute_flush(brute *b)
{
    if (!b->nb)
        return;
    k_linear(b->nq, b->nb, b->dim, b->q, b->dim, b->chunk, NULL, b->S, b->nb);
    for (int q = 0; q < b->nq; q++) {
        float *bs = b->best + q * 10;
        uint32_t *bi = b->bslot + q * 10;
        for (int i = 0; i < b->nb; i++) {
            float v = b->S[(size_t)q * b->nb + i];
            if (v <= bs[9])
                continue;
            int j = 9;
            for (; j > 0 && bs[j - 1] < v; j--) {
                bs[j] = bs[j - 1];
                bi[j] = bi[j - 1];
            }
            bs[j] = v;
            bi[j] = b->cslot[i];
        }
    }
    b->nb = 0;
}

static int on_brute(void *ctx, const db_row *r)
{
    brute *b = ctx;
    if (!r->emb || r->emb_len != (size_t)b->dim * 4)
        return 0;
    int slot = rank_slot(b->e, r->job.id);
    if (slot < 0)
        return 0;
    db_vec_from_le(r->emb, b->dim, b->chunk + (size_t)b->nb * b->dim);
    b->cslot[b->nb++] = (uint32_t)slot;
    if (b->nb == 4096)
        brute_flush(b);
    return 0;
}

static int cmpi(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return x < y ? -1 : x > y;
}

static void recall(rank_engine *e, db *d, bert_pool *pool, const occs *oc, int nq)
{
    if (!e->ix || idx_nlist(e->ix) == 0)
        return;
    int dim = e->dim;
    jm_err err = {0};
    float *qv = malloc(sizeof(float) * (size_t)nq * dim);
    char **texts = malloc(sizeof(char *) * (size_t)nq);
    uint64_t keep = rs;
    rs = 4242;
    for (int qi = 0; qi < nq; qi++) {
        const occ *o = &oc->o[(int)(ur() * oc->n)];
        char buf[2048] = "";
        int ns = 3 + (int)(ur() * 3);
        for (int k = 0; k < ns; k++) {
            if (k)
                strncat(buf, " ", sizeof buf - strlen(buf) - 1);
            strncat(buf, o->sk[(int)(ur() * o->nsk)].name, sizeof buf - strlen(buf) - 1);
        }
        texts[qi] = strdup(buf);
    }
    rs = keep;
    double t0 = jm_now();
    if (bert_embed(pool, nq, (const char *const *)texts, NULL, qv, NULL, &err)) {
        fprintf(stderr, "bench_rank: %s\n", err.msg);
        return;
    }
    brute b = {e, nq, dim, 0, qv, malloc(sizeof(float) * 4096 * (size_t)dim), malloc(sizeof(float) * 4096 * (size_t)nq),
               malloc(sizeof(float) * 10 * (size_t)nq), malloc(sizeof(uint32_t) * 10 * (size_t)nq),
               malloc(sizeof(uint32_t) * 4096)};
    for (int i = 0; i < 10 * nq; i++)
        b.best[i] = -INFINITY;
    if (db_scan_jobs(d, e->model_id, 1, on_brute, &b, &err))
        fprintf(stderr, "bench_rank: %s\n", err.msg);
    brute_flush(&b);
    double tb = jm_now() - t0;
    int cal = idx_probe(e->ix), nl = idx_nlist(e->ix);
    int depths[] = {8, 16, 32, 64, 128, cal};
    printf("index recall on %d query profiles (top 10 vs a brute force over the store's float32 vectors, %.1f s):\n",
           nq, tb);
    for (int di = 0; di < 6; di++) {
        if (depths[di] > nl && di < 5)
            continue;
        idx_set_probe(e->ix, depths[di], IDX_FILTER_EXP, &err);
        int ok = 0;
        double t = jm_now();
        for (int qi = 0; qi < nq; qi++) {
            idx_hit h[10];
            int n = 0;
            idx_search_exact(e->ix, qv + (size_t)qi * dim, 10, 0, NULL, rank_fetch_exact, e, h, &n, &err);
            int same = n == 10;
            for (int k = 0; same && k < 10; k++)
                same = fabsf(h[k].score - b.best[qi * 10 + k]) <= 1e-6f;
            ok += same;
        }
        printf("  %-12s %3d of %d lists: top 10 exact on %5.1f%%  (%.2f ms a search)\n",
               di == 5 ? "calibrated" : "", depths[di], nl, 100.0 * ok / nq, (jm_now() - t) * 1e3 / nq);
    }
    idx_set_probe(e->ix, cal, IDX_FILTER_EXP, &err);
    int *need = malloc(sizeof(int) * (size_t)nq);
    if (idx_probe_need(e->ix, qv, nq, 10, 0, rank_fetch_exact, e, need, &err) == 0) {
        qsort(need, (size_t)nq, sizeof(int), cmpi);
        printf("  lists each query needs: p50 %d, p90 %d, p99 %d, max %d\n", need[nq / 2], need[nq * 9 / 10],
               need[nq * 99 / 100], need[nq - 1]);
    }
    free(need);
    for (int i = 0; i < nq; i++)
        free(texts[i]);
    free(texts);
    free(qv);
    free(b.chunk);
    free(b.S);
    free(b.best);
    free(b.bslot);
    free(b.cslot);
}

int main(int argc, char **argv)
{
    const char *onet_db = "build/bench-onet.db", *path = NULL, *model_dir = "models/all-MiniLM-L6-v2";
    int64_t n = 100000;
    int nq = 1000, nstream = 0;
    const char *snap = NULL;
    int nrecall = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--onet-db")) onet_db = argv[i + 1];
        else if (!strcmp(argv[i], "--db")) path = argv[i + 1];
        else if (!strcmp(argv[i], "--jobs")) n = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--model")) model_dir = argv[i + 1];
        else if (!strcmp(argv[i], "--queries")) nq = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--stream")) nstream = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--snapshot")) snap = argv[i + 1];
        else if (!strcmp(argv[i], "--recall")) nrecall = atoi(argv[i + 1]);
    }
    if (!path) {
        fprintf(stderr, "usage: bench_rank --db FILE --jobs N [--onet-db FILE] [--queries Q] [--stream Q2] [--snapshot FILE]\n"
                        "                  [--recall Q3]\n");
        return 2;
    }
    jm_err err = {0};
    bert_model *m = NULL;
    bert_pool *pool = NULL;
    db *src = NULL, *d = NULL;
    if (bert_load(model_dir, &m, &err) || bert_pool_new(m, 1, &pool, &err) || db_open(onet_db, &src, &err) ||
        db_open(path, &d, &err)) {
        fprintf(stderr, "bench_rank: %s\n", err.msg);
        return 1;
    }
    occs oc = {.dim = bert_dim(m)};
    if (db_scan_jobs(src, bert_model_id(m), 1, on_occ, &oc, &err) || oc.n == 0) {
        fprintf(stderr, "bench_rank: no embedded O*NET jobs in %s (%s)\n", onet_db, err.msg);
        return 1;
    }
    db_counts cn;
    db_counts_get(d, bert_model_id(m), &cn, &err);
    if (cn.jobs != n || cn.embedded != n) {
        if (cn.jobs) {
            fprintf(stderr, "bench_rank: %s holds %lld jobs, not %lld: remove it first\n", path, (long long)cn.jobs,
                    (long long)n);
            return 1;
        }
        if (generate(d, &oc, n, oc.dim, bert_model_id(m)))
            return 1;
        /* the skills table, with the O*NET skills' vectors */
        db_sync_skills(d, NULL, &err);
    }
    db_close(d);
    d = NULL;
    /* the skills' embeddings: copy them from the O*NET store once */
    if (db_open(path, &d, &err)) {
        fprintf(stderr, "bench_rank: %s\n", err.msg);
        return 1;
    }
    db_counts_get(d, bert_model_id(m), &cn, &err);
    if (cn.skills_pending) {
        db_batch b;
        float *v = malloc(sizeof(float) * 256 * (size_t)oc.dim);
        char *cursor = NULL;
        while (db_claim_skills(d, bert_model_id(m), cursor, 256, &b, &err) == 0 && b.n) {
            if (bert_embed(pool, b.n, (const char *const *)b.texts, NULL, v, NULL, &err) ||
                db_commit_skills(d, &b, v, oc.dim, bert_model_id(m), &err))
                break;
            free(cursor);
            cursor = strdup(b.ids[b.n - 1]);
            db_batch_free(&b);
        }
        free(cursor);
        free(v);
    }
    double rss0 = rss_mb();
    int sfd = snap ? open(snap, O_RDONLY) : -1;
    if (sfd >= 0) {
        posix_fadvise(sfd, 0, 0, POSIX_FADV_DONTNEED);
        close(sfd);
    }
    rank_engine *e = NULL;
    double t0 = jm_now();
    rank_opts ro;
    rank_opts_default(&ro);
    ro.snapshot = snap;
    if (rank_open(d, m, &ro, &e, &err)) {
        fprintf(stderr, "bench_rank: %s\n", err.msg);
        return 1;
    }
    double load = jm_now() - t0;
    rank_info info;
    rank_get_info(e, &info);
    double rss1 = rss_mb();
    printf("# bench_rank: %lld jobs, %lld skills, SQLite %s\n", (long long)info.jobs, (long long)info.skills, path);
    printf("index load from %s: %.2f s; index %.1f MB; RSS %.0f MB with the model (%.0f MB before the index)\n",
           info.from_snapshot ? "the snapshot" : "SQLite", load, info.index_bytes / 1048576.0, rss1, rss0);
    if (info.index_lists && !strcmp(info.probe_from, "none")) {
        /* measured beside the queries in `serve` (its tuner thread); here
         * before them, and timed apart from the load */
        double tt = jm_now();
        int tr = rank_tune(e, 0, NULL, &err);
        if (tr < 0)
            fprintf(stderr, "bench_rank: %s\n", err.msg);
        else
            printf("vector index calibrated after the load (searches read every list until then) in %.2f s\n",
                   jm_now() - tt);
        rank_get_info(e, &info);
    }
    if (info.index_lists)
        printf("vector index: %d inverted lists, %d probed, spread %g (calibrated on %s)\n", info.index_lists,
               info.index_probe, (double)info.index_spread, info.probe_from);
    if (snap && !info.from_snapshot) {
        /* for the next run: written now, before the queries, so the RSS
         * figures below include whatever writing it costs */
        double ts = jm_now();
        if (rank_snapshot_save(e, snap, &err))
            fprintf(stderr, "bench_rank: %s\n", err.msg);
        else
            printf("snapshot written to %s in %.2f s (%s)\n", snap, jm_now() - ts,
                   info.snapshot_why ? info.snapshot_why : "-");
    }
    double *lat = malloc(sizeof(double) * (size_t)(nq > nstream ? nq : nstream) + 8);
    for (int pass = 0; pass < 3; pass++) {
        int Q = pass == 2 ? nstream : nq, warm = pass == 1;
        if (!Q)
            continue;
        if (pass == 2) {
            rank_close(e);
            rank_opts so;
            rank_opts_default(&so);
            so.index_mode = RANK_INDEX_STREAM;
            if (rank_open(d, m, &so, &e, &err)) {
                fprintf(stderr, "bench_rank: %s\n", err.msg);
                return 1;
            }
        }
        rs = 777;
        /* warm: one untimed round over the same queries fills the cache */
        for (int qi = 0; qi < (warm ? 2 * (Q + 5) : Q + 5); qi++) {
            if (warm && qi == Q + 5)
                rs = 777;
            occ *o = &oc.o[(int)(ur() * oc.n)];
            const char *sk[5];
            int ns = 3 + (int)(ur() * 3);
            for (int k = 0; k < ns; k++)
                sk[k] = o->sk[(int)(ur() * o->nsk)].name;
            rank_query q = {sk, ns, 10, 0, {0}};
            rank_filters_init(&q.filters);
            rank_response r;
            if (!warm)
                rank_cache_clear(e);
            double t = jm_now();
            if (rank_recommend(e, pool, &q, &r, &err)) {
                fprintf(stderr, "bench_rank: %s\n", err.msg);
                return 1;
            }
            t = (jm_now() - t) * 1e3;
            rank_response_free(&r);
            int at = warm ? qi - (Q + 5) : qi;
            if (at >= 5)
                lat[at - 5] = t; /* the first few warm the caches */
        }
        qsort(lat, (size_t)Q, sizeof(double), cmpd);
        double mean = 0;
        for (int i = 0; i < Q; i++)
            mean += lat[i] / Q;
        printf("recommend (%s index, %s, 1 thread, %d queries): p50 %.1f ms, p99 %.1f ms, mean %.1f ms; RSS %.0f MB\n",
               pass == 2 ? "stream" : "memory",
               warm ? "warm: query embeddings cached" : "cold: query embedding included", Q, lat[Q / 2],
               lat[(int)(Q * 0.99)], mean, rss_mb());
        if (pass == 0 && Q >= 256 && !warm) {
            /* the probe depth measured again, on these queries' profiles */
            double tt = jm_now();
            int tr = rank_tune(e, 1, NULL, &err);
            rank_info ti;
            rank_get_info(e, &ti);
            if (tr < 0)
                fprintf(stderr, "bench_rank: %s\n", err.msg);
            else if (ti.index_lists)
                printf("vector index calibrated again on these queries' profiles in %.2f s: %d of %d lists "
                       "probed, spread %g\n",
                       jm_now() - tt, ti.index_probe, ti.index_lists, (double)ti.index_spread);
            if (tr > 0 && snap && rank_snapshot_save(e, snap, &err)) /* the next run starts with it */
                fprintf(stderr, "bench_rank: %s\n", err.msg);
        }
        if (pass == 0 && nrecall)
            recall(e, d, pool, &oc, nrecall);
    }
    rank_info ci;
    rank_get_info(e, &ci);
    printf("embedding cache: %d texts, %.1f MB\n", ci.cache_entries, ci.cache_bytes / 1048576.0);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("peak RSS %.0f MB\n", ru.ru_maxrss / 1024.0);
    rank_close(e);
    db_close(d);
    db_close(src);
    bert_pool_free(pool);
    bert_free(m);
    return 0;
}
