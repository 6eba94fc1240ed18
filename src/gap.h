/* gap.h - skill-gap reports (prefix gap_), on top of the ranking engine.
 *
 * For one job: each of its skills is "have" (the person's best matching skill
 * has similarity >= have: an exact or alias match, or a near-identical skill),
 * "partial" (>= partial: a related skill, e.g. MySQL for PostgreSQL) or
 * "missing". Readiness = sum of w * credit / sum of w over the job's skills
 * (credit 1, 0.5, 0; w = 1 required, nice_weight otherwise). Missing skills
 * are ordered by importance = w * idf: required and distinctive first.
 *
 * Career gap (no job given): over the person's top N recommended jobs, each
 * missing skill with the number of those jobs that lack it, the total of their
 * scores (score-weighted demand), and how many more of those jobs would reach
 * the target readiness if the person learned it: what to learn next. */
#ifndef JM_GAP_H
#define JM_GAP_H

#include "rank.h"

typedef struct gap_item {
    const char *skill;       /* the job's skill (display form) */
    rank_status status;
    const char *user_skill;  /* the person's best match, or NULL */
    float similarity;
    sk_kind kind;
    int required;
    float weight;
    float importance;        /* w * idf */
} gap_item;

typedef struct gap_report {
    const char *job_id, *title, *company;
    gap_item *items;         /* in the job's order */
    int n;
    int *missing;            /* indices into items of the missing ones, by importance */
    int nmissing;
    int nhave, npartial;
    float readiness;         /* 0..1 */
    char **skills;           /* the person's skills after normalising */
    int nskills;
    double ms;
} gap_report;

/* JM_ENOTFOUND (with a message) when there is no job `job_id`. */
int gap_job(rank_engine *e, bert_pool *pool, const char *const *skills, int nskills, const char *job_id,
            gap_report *out, jm_err *err);
void gap_report_free(gap_report *r);

typedef struct gap_learn {
    const char *skill;       /* display form */
    int jobs_missing;        /* of the top N jobs, how many lack it */
    float weighted;          /* sum over those jobs of score * w */
    int unlocks;             /* jobs that would reach the target readiness with it */
    float idf;
} gap_learn;

typedef struct gap_career {
    gap_learn *items;        /* best first: by weighted, then unlocks */
    int n;
    int top_n;               /* jobs considered */
    float target;            /* the readiness target */
    int ready_now;           /* of the top N, already at the target */
    rank_response jobs;      /* the top N jobs themselves */
    double ms;
} gap_career;

/* q->k is N, the number of best jobs to aggregate over. target in (0, 1]. */
int gap_career_report(rank_engine *e, bert_pool *pool, const rank_query *q, float target, gap_career *out,
                      jm_err *err);
void gap_career_free(gap_career *c);

#endif
