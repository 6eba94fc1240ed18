/* embedjob.h - generate the missing and stale embeddings of a store (prefix ej_).
 *
 * The loop: count what is pending; add new distinct skills to the skills
 * table; then claim a batch of jobs (db_claim_jobs), embed their texts, write
 * the vectors and commit (db_commit_jobs), until none are left; then the same
 * for skills. One transaction per batch, so a crash (kill -9 included) loses
 * at most the batch in flight, and a rerun continues. Several processes can
 * run at once on PostgreSQL: claims skip rows other workers hold. */
#ifndef JM_EMBEDJOB_H
#define JM_EMBEDJOB_H

#include <stdint.h>
#include <stdio.h>

#include "bert.h"
#include "common.h"
#include "db.h"

typedef enum { EJ_QUIET = 0, EJ_BAR, EJ_LOG } ej_progress;

typedef struct ej_opts {
    int batch;        /* jobs per claimed batch (default 64) */
    int64_t limit;    /* stop after this many jobs (0 = no limit) */
    int dry_run;      /* only count what would be embedded */
    int skip_skills;  /* do not embed skills */
    ej_progress progress;
    FILE *out;        /* where progress and the summary go (default stdout) */
} ej_opts;

typedef struct ej_stats {
    int64_t pending_jobs;      /* missing + stale when the run began */
    int64_t pending_skills;    /* skills without a current embedding (after sync) */
    int64_t new_skills;        /* skills added to the skills table by this run */
    int64_t jobs_done, skills_done, tokens;
    double secs;               /* wall time of the run */
    double db_secs;            /* time spent in the database (claim + commit) */
} ej_stats;

/* Run the loop with the model's pool. On error the batch in flight is rolled
 * back and every committed batch stays; *st holds what was done so far. */
int ej_run(db *d, bert_pool *pool, const char *model_id, int dim, const ej_opts *o, ej_stats *st,
           jm_err *err);

#endif
