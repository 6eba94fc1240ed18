/* gap.c - skill gap for one job, and the career gap over the best jobs. */
#include "gap.h"

#include <stdlib.h>
#include <string.h>

#include "rank_int.h"

/* Indices by importance, best first (insertion sort: a job has tens of skills). */
static void order_missing(const gap_item *items, int *ord, int n)
{
    for (int i = 1; i < n; i++)
        for (int k = i; k > 0; k--) {
            const gap_item *x = &items[ord[k]], *y = &items[ord[k - 1]];
            if (x->importance > y->importance || (x->importance == y->importance && ord[k] < ord[k - 1])) {
                int t = ord[k];
                ord[k] = ord[k - 1];
                ord[k - 1] = t;
            } else {
                break;
            }
        }
}

/* Fill items for job j against profile p; returns readiness. */
static float classify(const rank_engine *e, rprofile *p, const rjob *j, gap_item *items, int *nhave, int *npartial)
{
    float wsum = 0, got = 0;
    *nhave = *npartial = 0;
    for (int i = 0; i < j->nsk; i++) {
        int s = JSK(e, j, i);
        rprofile_sim(e, p, s);
        gap_item *g = &items[i];
        g->skill = sk_display(e->voc, s);
        g->required = JREQ(e, j, i);
        g->weight = rank_skill_weight(e, g->required);
        g->similarity = p->best_sim[s] < 0 ? 0 : p->best_sim[s];
        g->status = rank_status_of(e, p->best_sim[s]);
        g->kind = g->status == RANK_MISSING ? SK_NONE : (sk_kind)p->kind[s];
        g->user_skill = g->status != RANK_MISSING && p->best_user[s] >= 0 ? p->typed[p->best_user[s]] : NULL;
        g->importance = g->weight * sk_idf(e->voc, s);
        wsum += g->weight;
        got += g->weight * rank_credit(e, p->best_sim[s]);
        *nhave += g->status == RANK_HAVE_IT;
        *npartial += g->status == RANK_PARTIAL_HAVE;
    }
    return wsum > 0 ? got / wsum : 0;
}

int gap_job(rank_engine *e, bert_pool *pool, const char *const *skills, int nskills, const char *job_id,
            gap_report *out, jm_err *err)
{
    memset(out, 0, sizeof *out);
    double t0 = jm_now();
    if (!job_id || !*job_id)
        return jm_fail(err, JM_EINVAL, "no job id given");
    pthread_rwlock_rdlock(&e->lock);
    int slot = rank_slot(e, job_id);
    if (slot < 0 || !e->jobs[slot].live) {
        pthread_rwlock_unlock(&e->lock);
        return jm_fail(err, JM_ENOTFOUND, "no job with id \"%s\"", job_id);
    }
    rprofile p;
    int rc = rprofile_build(e, pool, skills, nskills, &p, err);
    if (rc) {
        pthread_rwlock_unlock(&e->lock);
        return rc;
    }
    const rjob *j = &e->jobs[slot];
    out->items = calloc((size_t)(j->nsk ? j->nsk : 1), sizeof(gap_item));
    out->missing = malloc(sizeof(int) * (size_t)(j->nsk ? j->nsk : 1));
    out->job_id = strdup(rank_str(e, j->id));
    out->title = j->title ? strdup(rank_str(e, j->title)) : NULL;
    out->company = j->company ? strdup(rank_str(e, j->company)) : NULL;
    if (!out->items || !out->missing || !out->job_id) {
        rprofile_free(&p);
        pthread_rwlock_unlock(&e->lock);
        gap_report_free(out);
        return jm_fail(err, JM_ENOMEM, "out of memory");
    }
    out->n = j->nsk;
    out->readiness = classify(e, &p, j, out->items, &out->nhave, &out->npartial);
    /* item strings point into the engine: copy them, the lock is released below */
    for (int i = 0; i < out->n; i++) {
        out->items[i].skill = strdup(out->items[i].skill);
        if (out->items[i].user_skill)
            out->items[i].user_skill = strdup(out->items[i].user_skill);
        if (out->items[i].status == RANK_MISSING)
            out->missing[out->nmissing++] = i;
    }
    order_missing(out->items, out->missing, out->nmissing);
    out->skills = p.typed;
    out->nskills = p.n;
    p.typed = NULL;
    rprofile_free(&p);
    pthread_rwlock_unlock(&e->lock);
    out->ms = (jm_now() - t0) * 1e3;
    return JM_OK;
}

void gap_report_free(gap_report *r)
{
    if (!r)
        return;
    for (int i = 0; r->items && i < r->n; i++) {
        free((char *)r->items[i].skill);
        free((char *)r->items[i].user_skill);
    }
    free(r->items);
    free(r->missing);
    free((char *)r->job_id);
    free((char *)r->title);
    free((char *)r->company);
    for (int i = 0; i < r->nskills; i++)
        free(r->skills[i]);
    free(r->skills);
    memset(r, 0, sizeof *r);
}

int gap_career_report(rank_engine *e, bert_pool *pool, const rank_query *q, float target, gap_career *out,
                      jm_err *err)
{
    memset(out, 0, sizeof *out);
    double t0 = jm_now();
    if (!(target > 0 && target <= 1))
        return jm_fail(err, JM_EINVAL, "readiness target must be in (0, 1]");
    int rc = rank_recommend(e, pool, q, &out->jobs, err);
    if (rc)
        return rc;
    /* rank_recommend holds the engine's read lock until its response is freed,
     * so the jobs and the vocabulary stay put while we aggregate. */
    rprofile p;
    rc = rprofile_build(e, pool, q->skills, q->nskills, &p, err);
    if (rc) {
        rank_response_free(&out->jobs);
        return rc;
    }
    int V = sk_count(e->voc);
    float *weighted = calloc((size_t)(V ? V : 1), sizeof(float));
    int *count = calloc((size_t)(V ? V : 1), sizeof(int)), *unlocks = calloc((size_t)(V ? V : 1), sizeof(int));
    gap_item *items = NULL;
    if (!weighted || !count || !unlocks) {
        rc = jm_fail(err, JM_ENOMEM, "out of memory");
        goto done;
    }
    out->top_n = out->jobs.n;
    out->target = target;
    for (int r = 0; r < out->jobs.n; r++) {
        int slot = rank_slot(e, out->jobs.results[r].id);
        const rjob *j = &e->jobs[slot];
        free(items);
        items = calloc((size_t)(j->nsk ? j->nsk : 1), sizeof(gap_item));
        if (!items) {
            rc = jm_fail(err, JM_ENOMEM, "out of memory");
            goto done;
        }
        int nh, np;
        float ready = classify(e, &p, j, items, &nh, &np), wsum = 0;
        for (int i = 0; i < j->nsk; i++)
            wsum += items[i].weight;
        if (ready >= target)
            out->ready_now++;
        float score = out->jobs.results[r].score > 0 ? out->jobs.results[r].score : 0;
        for (int i = 0; i < j->nsk; i++) {
            if (items[i].status == RANK_MISSING) {
                int s = JSK(e, j, i);
                count[s]++;
                weighted[s] += score * items[i].weight;
                if (ready < target && wsum > 0 && ready + items[i].weight / wsum >= target)
                    unlocks[s]++;
            }
        }
    }
    int n = 0;
    for (int s = 0; s < V; s++)
        n += count[s] > 0;
    out->items = calloc((size_t)(n ? n : 1), sizeof(gap_learn));
    if (!out->items) {
        rc = jm_fail(err, JM_ENOMEM, "out of memory");
        goto done;
    }
    for (int s = 0; s < V; s++)
        if (count[s]) {
            gap_learn *g = &out->items[out->n++];
            g->skill = strdup(sk_display(e->voc, s));
            g->jobs_missing = count[s];
            g->weighted = weighted[s];
            g->unlocks = unlocks[s];
            g->idf = sk_idf(e->voc, s);
        }
    /* best first: score-weighted demand, then jobs unlocked, then rarity */
    for (int i = 1; i < out->n; i++)
        for (int k = i; k > 0; k--) {
            gap_learn *x = &out->items[k], *y = &out->items[k - 1];
            int better = x->weighted > y->weighted ||
                         (x->weighted == y->weighted && (x->unlocks > y->unlocks ||
                                                         (x->unlocks == y->unlocks && x->idf > y->idf)));
            if (!better)
                break;
            gap_learn t = *x;
            *x = *y;
            *y = t;
        }
done:
    free(items);
    free(weighted);
    free(count);
    free(unlocks);
    rprofile_free(&p);
    out->ms = (jm_now() - t0) * 1e3;
    if (rc)
        gap_career_free(out);
    return rc;
}

void gap_career_free(gap_career *c)
{
    if (!c)
        return;
    for (int i = 0; i < c->n; i++)
        free((char *)c->items[i].skill);
    free(c->items);
    rank_response_free(&c->jobs);
    memset(c, 0, sizeof *c);
}
