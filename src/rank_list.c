/* rank_list.c - browsing the engine's jobs and skills (the HTTP service's job
 * list and skill autocomplete), and checking its database connection. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "rank_int.h"

/* ASCII-case-insensitive substring search (UTF-8 bytes beyond ASCII compare
 * exactly). */
static int contains_nocase(const char *hay, const char *needle, size_t nlen)
{
    if (!hay)
        return 0;
    for (; *hay; hay++) {
        size_t i = 0;
        while (i < nlen && hay[i] && tolower((unsigned char)hay[i]) == tolower((unsigned char)needle[i]))
            i++;
        if (i == nlen)
            return 1;
    }
    return 0;
}

int rank_list_jobs(rank_engine *e, const char *q, int64_t offset, int limit, rank_job_fn fn, void *ctx,
                   int64_t *total, jm_err *err)
{
    if (offset < 0 || limit < 0)
        return jm_fail(err, JM_EINVAL, "offset and limit must be >= 0");
    size_t qlen = q ? strlen(q) : 0;
    int64_t seen = 0;
    int rc = JM_OK;
    pthread_rwlock_rdlock(&e->lock);
    for (int s = 0; s < e->njobs; s++) {
        const rjob *j = &e->jobs[s];
        if (!j->live)
            continue;
        const char *id = rank_str(e, j->id), *title = rank_str(e, j->title), *company = rank_str(e, j->company);
        if (qlen && !contains_nocase(title, q, qlen) && !contains_nocase(company, q, qlen) &&
            !contains_nocase(id, q, qlen))
            continue;
        if (seen >= offset && seen < offset + limit && rc == JM_OK) {
            rank_job_brief b = {id, title, company, rank_str(e, j->location)};
            rc = fn(ctx, &b);
        }
        seen++;
    }
    pthread_rwlock_unlock(&e->lock);
    if (total)
        *total = seen;
    if (rc)
        return jm_fail(err, rc, "listing jobs failed");
    return JM_OK;
}

/* Does the normalised name start with p, or has a word that does? */
static int prefix_rank(const char *name, const char *p, size_t plen)
{
    if (!strncmp(name, p, plen))
        return 2;
    for (const char *s = name; *s; s++)
        if ((s[0] == ' ' || s[0] == '-' || s[0] == '/' || s[0] == '(' || s[0] == '.' || s[0] == ',') &&
            !strncmp(s + 1, p, plen))
            return 1;
    return 0;
}

typedef struct sugg {
    int v, rank, df;
} sugg;

/* better first: more jobs, then a whole-name prefix, then shorter */
static int sugg_better(const sk_vocab *voc, const sugg *a, const sugg *b)
{
    if (a->df != b->df)
        return a->df > b->df;
    if (a->rank != b->rank)
        return a->rank > b->rank;
    size_t la = strlen(sk_norm(voc, a->v)), lb = strlen(sk_norm(voc, b->v));
    if (la != lb)
        return la < lb;
    return strcmp(sk_norm(voc, a->v), sk_norm(voc, b->v)) < 0;
}

int rank_suggest_skills(rank_engine *e, const char *prefix, int limit, rank_skill_fn fn, void *ctx, jm_err *err)
{
    if (limit < 1 || limit > 1000)
        return jm_fail(err, JM_EINVAL, "limit must be between 1 and 1000");
    char *p = db_skill_norm(prefix ? prefix : "");
    if (!p)
        return jm_fail(err, JM_EINVAL, "the prefix is empty");
    size_t plen = strlen(p);
    sugg *best = malloc(sizeof(sugg) * (size_t)limit);
    if (!best) {
        free(p);
        return jm_fail(err, JM_ENOMEM, "out of memory");
    }
    int n = 0, rc = JM_OK;
    pthread_rwlock_rdlock(&e->lock);
    int V = sk_count(e->voc);
    for (int v = 0; v < V; v++) {
        int r = prefix_rank(sk_norm(e->voc, v), p, plen);
        if (!r)
            continue;
        sugg x = {v, r, sk_df(e->voc, v)};
        if (n == limit && !sugg_better(e->voc, &x, &best[n - 1]))
            continue;
        int i = n < limit ? n++ : n - 1;
        while (i > 0 && sugg_better(e->voc, &x, &best[i - 1])) {
            best[i] = best[i - 1];
            i--;
        }
        best[i] = x;
    }
    for (int i = 0; i < n && rc == JM_OK; i++)
        rc = fn(ctx, sk_display(e->voc, best[i].v), best[i].df);
    pthread_rwlock_unlock(&e->lock);
    free(best);
    free(p);
    if (rc)
        return jm_fail(err, rc, "listing skills failed");
    return JM_OK;
}

int rank_ping(rank_engine *e, jm_err *err)
{
    pthread_mutex_lock(&e->dblock);
    int rc = db_ping(e->d, err);
    pthread_mutex_unlock(&e->dblock);
    return rc;
}
