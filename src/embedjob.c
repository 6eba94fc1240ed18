/* embedjob.c - the claim -> embed -> commit loop and its progress display. */
#include "embedjob.h"

#include <stdlib.h>
#include <string.h>

typedef struct progress {
    const ej_opts *o;
    const char *what;
    int64_t total, done;
    double start, last;
} progress;

static void fmt_eta(double secs, char *buf, size_t cap)
{
    if (secs < 0 || secs > 1e7) {
        snprintf(buf, cap, "?");
        return;
    }
    long s = (long)(secs + 0.5);
    if (s >= 3600)
        snprintf(buf, cap, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
    else
        snprintf(buf, cap, "%ld:%02ld", s / 60, s % 60);
}

static void progress_show(progress *p, int final)
{
    const ej_opts *o = p->o;
    if (o->progress == EJ_QUIET)
        return;
    double now = jm_now();
    /* A terminal redraws at most 10 times a second; a log gets a line every 5 s. */
    if (!final && now - p->last < (o->progress == EJ_BAR ? 0.1 : 5.0))
        return;
    p->last = now;
    double el = now - p->start, rate = el > 0 ? p->done / el : 0;
    int64_t total = p->total > p->done ? p->total : p->done;
    char eta[32];
    fmt_eta(rate > 0 ? (total - p->done) / rate : -1, eta, sizeof eta);
    if (o->progress == EJ_BAR) {
        int w = 30, fill = total ? (int)(w * p->done / total) : w;
        char bar[64];
        for (int i = 0; i < w; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[w] = 0;
        fprintf(o->out, "\r%-6s [%s] %lld/%lld  %.1f/s  ETA %s   ", p->what, bar, (long long)p->done,
                (long long)total, rate, eta);
        if (final)
            fputc('\n', o->out);
    } else {
        fprintf(o->out, "embed: %s %lld/%lld, %.1f/s, ETA %s\n", p->what, (long long)p->done, (long long)total,
                rate, eta);
    }
    fflush(o->out);
}

typedef int (*claim_fn)(db *, const char *, const char *, int, db_batch *, jm_err *);
typedef int (*commit_fn)(db *, const db_batch *, const float *, int, const char *, jm_err *);

/* Claim, embed and commit batches until none are left (or `limit` is reached).
 * The cursor walks the ids once; a second pass from the start picks up rows
 * that another worker held when we passed them and has since released. */
static int drain(db *d, bert_pool *pool, const char *model_id, int dim, const ej_opts *o, claim_fn claim,
                 commit_fn commit, int64_t limit, progress *pg, int64_t *done, ej_stats *st, jm_err *err)
{
    int batch = o->batch > 0 ? o->batch : 64;
    float *vecs = malloc(sizeof(float) * (size_t)batch * dim);
    size_t *lens = malloc(sizeof(size_t) * (size_t)batch);
    char *cursor = NULL;
    int rc = JM_OK, passes = 0;
    if (!vecs || !lens)
        rc = jm_fail(err, JM_ENOMEM, "out of memory");
    while (rc == JM_OK && (limit <= 0 || *done < limit)) {
        int want = batch;
        if (limit > 0 && limit - *done < want)
            want = (int)(limit - *done);
        db_batch b = {0};
        double t0 = jm_now();
        rc = claim(d, model_id, cursor, want, &b, err);
        st->db_secs += jm_now() - t0;
        if (rc)
            break;
        if (b.n == 0) {
            db_batch_free(&b);
            if (!cursor || ++passes > 1)
                break;
            free(cursor);
            cursor = NULL; /* one more pass from the start */
            continue;
        }
        for (int i = 0; i < b.n; i++)
            lens[i] = strlen(b.texts[i]);
        int64_t ntok = 0;
        rc = bert_embed(pool, b.n, (const char *const *)b.texts, lens, vecs, &ntok, err);
        if (rc) {
            db_abort(d);
            db_batch_free(&b);
            break;
        }
        t0 = jm_now();
        rc = commit(d, &b, vecs, dim, model_id, err);
        st->db_secs += jm_now() - t0;
        if (rc) {
            db_batch_free(&b);
            break;
        }
        st->tokens += ntok;
        *done += b.n;
        pg->done += b.n;
        free(cursor);
        cursor = strdup(b.ids[b.n - 1]);
        db_batch_free(&b);
        if (!cursor)
            rc = jm_fail(err, JM_ENOMEM, "out of memory");
        progress_show(pg, 0);
    }
    free(cursor);
    free(vecs);
    free(lens);
    return rc;
}

int ej_run(db *d, bert_pool *pool, const char *model_id, int dim, const ej_opts *o, ej_stats *st, jm_err *err)
{
    memset(st, 0, sizeof *st);
    ej_opts oo = *o;
    if (!oo.out)
        oo.out = stdout;
    double start = jm_now();
    db_counts c;
    double t0 = jm_now();
    int rc = db_counts_get(d, model_id, &c, err);
    st->db_secs += jm_now() - t0;
    if (rc)
        return rc;
    st->pending_jobs = c.missing + c.stale;
    if (oo.dry_run) {
        st->pending_skills = c.skills_pending;
        st->secs = jm_now() - start;
        return JM_OK;
    }
    if (!oo.skip_skills) {
        int added = 0;
        t0 = jm_now();
        rc = db_sync_skills(d, &added, err);
        st->db_secs += jm_now() - t0;
        if (rc)
            return rc;
        st->new_skills = added;
        st->pending_skills = c.skills_pending + added;
    }
    int64_t total = st->pending_jobs;
    if (oo.limit > 0 && oo.limit < total)
        total = oo.limit;
    progress pj = {.o = &oo, .what = "jobs", .total = total, .start = jm_now()};
    rc = drain(d, pool, model_id, dim, &oo, db_claim_jobs, db_commit_jobs, oo.limit, &pj, &st->jobs_done, st, err);
    if (pj.done || total)
        progress_show(&pj, 1);
    if (rc == JM_OK && !oo.skip_skills && (oo.limit <= 0 || st->jobs_done < oo.limit)) {
        int64_t left = oo.limit > 0 ? oo.limit - st->jobs_done : 0;
        progress ps = {.o = &oo, .what = "skills", .total = st->pending_skills, .start = jm_now()};
        rc = drain(d, pool, model_id, dim, &oo, db_claim_skills, db_commit_skills, left, &ps, &st->skills_done, st,
                   err);
        if (ps.done || ps.total)
            progress_show(&ps, 1);
    }
    st->secs = jm_now() - start;
    return rc;
}
