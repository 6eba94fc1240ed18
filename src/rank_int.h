/* rank_int.h - private to the rank and gap modules: the engine's state and the
 * per-query profile both use. Not part of the public API. */
#ifndef JM_RANK_INT_H
#define JM_RANK_INT_H

#include <pthread.h>

#include "idx.h"
#include "rank.h"

/* One job as the engine keeps it. Slots are never reused: a deleted job's slot
 * stays dead (live = 0), so slot numbers stay valid in the vector index. */
typedef struct rjob {
    /* hot: read for every job by every query */
    int live, has_vec;
    int nsk;
    uint32_t sk_off;          /* the job's skills: e->arena[sk_off .. sk_off + nsk) */
    float wsum;               /* sum of the skills' weights */
    int remote;               /* -1 unknown */
    float smin, smax;         /* NAN unknown */
    int posted;               /* days since 1970-01-01, or INT32_MIN */
    /* cold; title, company, location, emp and sen are interned (e->strs):
     * shared between jobs, freed with the engine */
    char *id;
    const char *title, *company, *location, *emp, *sen;
    int64_t rev;
} rjob;

/* A job skill in the arena: vocabulary index << 1 | required. All jobs' skills
 * sit in one array, in slot order at load, so the per-query pass over every
 * job streams memory instead of chasing a pointer per job. A changed job's
 * skills are appended; the old entries are left behind (rebuilt on reload). */
#define JSK(e, j, i) ((int)((e)->arena[(j)->sk_off + (i)] >> 1))
#define JREQ(e, j, i) ((int)((e)->arena[(j)->sk_off + (i)] & 1))

struct rank_engine {
    db *d;
    const bert_model *model;
    rank_opts o;
    char model_id[256];
    int dim;
    pthread_rwlock_t lock;     /* queries read, refresh writes */
    pthread_mutex_t dblock;    /* one database connection, one user at a time */
    rjob *jobs;
    int njobs, cap;            /* slots */
    int *id_slots;             /* hash: id -> slot */
    int id_nslots;
    int64_t live;
    int64_t with_vec;
    char **strs;               /* interned strings: a few thousand distinct titles, */
    int strs_nslots, strs_n;   /* companies, places for any number of jobs */
    uint32_t *arena;
    size_t arena_n, arena_cap;
    sk_vocab *voc;
    char **raw_keys;           /* skill name as a job gives it -> vocabulary index: */
    int *raw_vals;             /* normalising (utf8proc) once per distinct name, */
    int raw_nslots, raw_n;     /* not once per job skill, makes loading 5x faster */
    idx *ix;                   /* NULL in stream mode */
    int64_t rev;               /* change-log position applied */
    double last_refresh;       /* jm_now() of the last load or refresh */
    double load_secs;
};

/* The person's side of a query. */
typedef struct rprofile {
    char **skills;             /* normalised, merged */
    char **typed;              /* as typed (first form seen) */
    int n;
    float *emb;                /* n * dim unit vectors */
    float *profile;            /* dim: the joined skills' embedding */
    float *pcorp;              /* n: probability of the skill in the corpus (smoothing) */
    float *lnum;               /* n * 3: log(c + mu p(u)) for c = 0, nice weight, 1 */
    float *best_sim;           /* per vocabulary skill */
    int *best_user;
    unsigned char *kind;
} rprofile;

int rprofile_build(rank_engine *e, bert_pool *pool, const char *const *skills, int nskills, rprofile *p,
                   jm_err *err);
void rprofile_free(rprofile *p);

/* Slot of a job id, or -1. Caller holds the read lock. */
int rank_slot(const rank_engine *e, const char *id);

/* credit of a similarity under the engine's thresholds: 1, 0.5 or 0 */
float rank_credit(const rank_engine *e, float sim);
rank_status rank_status_of(const rank_engine *e, float sim);
float rank_skill_weight(const rank_engine *e, int required);

#endif
