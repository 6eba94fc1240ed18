/* report.c - JSON forms of the engine's answers (see report.h). */
#include <math.h>
#include <stdlib.h>

#include "report.h"

double rep_round(double x) { return isfinite(x) ? round(x * 10000) / 10000 : 0; }

static void add_str(cJSON *o, const char *k, const char *v)
{
    if (v)
        cJSON_AddStringToObject(o, k, v);
    else
        cJSON_AddNullToObject(o, k);
}

/* x rounded to 4 decimals, as JSON text: what cJSON would print, without
 * its printf/scanf round trip (a tenth of the HTTP service's time went to
 * printing the numbers of a response). */
static void add_num(cJSON *o, const char *k, double v)
{
    if (!isfinite(v) || fabs(v) >= 1e13) {
        cJSON_AddNumberToObject(o, k, rep_round(v));
        return;
    }
    long long r = llround(v * 10000);
    char buf[40], *p = buf + sizeof buf;
    *--p = 0;
    unsigned long long a = (unsigned long long)(r < 0 ? -r : r), ip = a / 10000, fp = a % 10000;
    if (fp) {
        int digits = 4;
        while (fp % 10 == 0) {
            fp /= 10;
            digits--;
        }
        for (int i = 0; i < digits; i++, fp /= 10)
            *--p = (char)('0' + fp % 10);
        *--p = '.';
    }
    do
        *--p = (char)('0' + ip % 10);
    while (ip /= 10);
    if (r < 0)
        *--p = '-';
    cJSON_AddRawToObject(o, k, p);
}

static void add_num_or_null(cJSON *o, const char *k, double v)
{
    if (isnan(v))
        cJSON_AddNullToObject(o, k);
    else
        cJSON_AddNumberToObject(o, k, v);
}

static cJSON *strings(char *const *s, int n)
{
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; a && i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateString(s[i]));
    return a;
}

cJSON *rep_recommend(const rank_response *r, int explain)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddItemToObject(o, "skills", strings(r->skills, r->nskills));
    cJSON_AddNumberToObject(o, "considered", (double)r->considered);
    add_num(o, "took_ms", r->ms);
    cJSON *arr = cJSON_AddArrayToObject(o, "results");
    for (int i = 0; arr && i < r->n; i++) {
        const rank_result *x = &r->results[i];
        cJSON *j = cJSON_CreateObject();
        if (!j)
            break;
        add_str(j, "id", x->id);
        add_str(j, "title", x->title);
        add_str(j, "company", x->company);
        add_str(j, "location", x->location);
        add_num(j, "score", x->score);
        cJSON *parts = cJSON_AddObjectToObject(j, "parts");
        add_num(parts, "query", x->query);
        add_num(parts, "coverage", x->coverage);
        add_num(parts, "semantic", x->semantic);
        add_num(parts, "keyword", x->keyword);
        cJSON *matched = cJSON_AddArrayToObject(j, "matched");
        cJSON *miss = cJSON_AddArrayToObject(j, "missing");
        cJSON *al = explain ? cJSON_AddArrayToObject(j, "alignment") : NULL;
        for (int a = 0; a < x->nalign; a++) {
            const rank_align *g = &x->align[a];
            if (g->status == RANK_MISSING) {
                cJSON_AddItemToArray(miss, cJSON_CreateString(g->job_skill));
            } else {
                cJSON *m = cJSON_CreateObject();
                add_str(m, "job_skill", g->job_skill);
                add_str(m, "user_skill", g->user_skill);
                add_num(m, "similarity", g->similarity);
                add_str(m, "kind", sk_kind_name(g->kind));
                add_str(m, "status", rank_status_name(g->status));
                cJSON_AddItemToArray(matched, m);
            }
            if (!al)
                continue;
            cJSON *m = cJSON_CreateObject();
            add_str(m, "job_skill", g->job_skill);
            add_str(m, "status", rank_status_name(g->status));
            add_str(m, "user_skill", g->user_skill);
            add_num(m, "similarity", g->similarity);
            add_str(m, "kind", sk_kind_name(g->kind));
            cJSON_AddBoolToObject(m, "required", g->required);
            add_num(m, "weight", g->weight);
            add_num(m, "contribution", g->contribution);
            cJSON_AddItemToArray(al, m);
        }
        cJSON_AddItemToArray(arr, j);
    }
    return o;
}

cJSON *rep_gap_job(const gap_report *g)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddStringToObject(o, "mode", "job");
    cJSON *job = cJSON_AddObjectToObject(o, "job");
    add_str(job, "id", g->job_id);
    add_str(job, "title", g->title);
    add_str(job, "company", g->company);
    cJSON_AddItemToObject(o, "skills", strings(g->skills, g->nskills));
    add_num(o, "readiness", g->readiness);
    cJSON_AddNumberToObject(o, "have", g->nhave);
    cJSON_AddNumberToObject(o, "partial", g->npartial);
    cJSON_AddNumberToObject(o, "missing_count", g->nmissing);
    cJSON *items = cJSON_AddArrayToObject(o, "items");
    for (int i = 0; items && i < g->n; i++) {
        const gap_item *it = &g->items[i];
        cJSON *m = cJSON_CreateObject();
        add_str(m, "skill", it->skill);
        add_str(m, "status", rank_status_name(it->status));
        add_str(m, "user_skill", it->user_skill);
        add_num(m, "similarity", it->similarity);
        add_str(m, "kind", sk_kind_name(it->kind));
        cJSON_AddBoolToObject(m, "required", it->required);
        add_num(m, "weight", it->weight);
        add_num(m, "importance", it->importance);
        cJSON_AddItemToArray(items, m);
    }
    cJSON *miss = cJSON_AddArrayToObject(o, "missing");
    for (int i = 0; miss && i < g->nmissing; i++)
        cJSON_AddItemToArray(miss, cJSON_CreateString(g->items[g->missing[i]].skill));
    add_num(o, "took_ms", g->ms);
    return o;
}

cJSON *rep_career(const gap_career *c)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddStringToObject(o, "mode", "career");
    cJSON_AddItemToObject(o, "skills", strings(c->jobs.skills, c->jobs.nskills));
    cJSON_AddNumberToObject(o, "top_n", c->top_n);
    add_num(o, "target", c->target);
    cJSON_AddNumberToObject(o, "ready_now", c->ready_now);
    cJSON *arr = cJSON_AddArrayToObject(o, "learn_next");
    for (int i = 0; arr && i < c->n && i < 50; i++) {
        cJSON *m = cJSON_CreateObject();
        add_str(m, "skill", c->items[i].skill);
        cJSON_AddNumberToObject(m, "jobs_missing", c->items[i].jobs_missing);
        add_num(m, "weighted", c->items[i].weighted);
        cJSON_AddNumberToObject(m, "unlocks", c->items[i].unlocks);
        cJSON_AddItemToArray(arr, m);
    }
    cJSON *jobs = cJSON_AddArrayToObject(o, "jobs");
    for (int i = 0; jobs && i < c->jobs.n; i++) {
        cJSON *m = cJSON_CreateObject();
        add_str(m, "id", c->jobs.results[i].id);
        add_str(m, "title", c->jobs.results[i].title);
        add_num(m, "score", c->jobs.results[i].score);
        cJSON_AddItemToArray(jobs, m);
    }
    add_num(o, "took_ms", c->ms);
    return o;
}

cJSON *rep_job(const db_job *j, int embedded)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    add_str(o, "id", j->id);
    add_str(o, "title", j->title);
    add_str(o, "company", j->company);
    add_str(o, "location", j->location);
    if (j->remote < 0)
        cJSON_AddNullToObject(o, "remote");
    else
        cJSON_AddBoolToObject(o, "remote", j->remote);
    add_num_or_null(o, "salary_min", j->salary_min);
    add_num_or_null(o, "salary_max", j->salary_max);
    add_str(o, "currency", j->currency);
    add_str(o, "employment_type", j->employment_type);
    add_str(o, "seniority", j->seniority);
    add_str(o, "posted_at", j->posted_at);
    add_str(o, "description", j->description);
    cJSON *sk = cJSON_AddArrayToObject(o, "skills");
    for (int i = 0; sk && i < j->nskills; i++) {
        cJSON *m = cJSON_CreateObject();
        add_str(m, "name", j->skills[i].name);
        cJSON_AddBoolToObject(m, "required", j->skills[i].required);
        cJSON_AddItemToArray(sk, m);
    }
    cJSON_AddBoolToObject(o, "embedded", embedded);
    return o;
}
