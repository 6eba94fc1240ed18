/* rank_int.h - private to the rank and gap modules: the engine's state and the
 * per-query profile both use. Not part of the public API. */
#ifndef JM_RANK_INT_H
#define JM_RANK_INT_H

#include <pthread.h>

#include "idx.h"
#include "rank.h"
#include "vcache.h"

/* One job as the engine keeps it (56 bytes: 1M jobs cost 53 MB). Slots are
 * never reused: a deleted job's slot stays dead (live = 0), so slot numbers
 * stay valid in the vector index. */
typedef struct rjob {
    /* what the filters and the scoring read */
    unsigned live : 1, has_vec : 1;
    signed remote : 3;        /* -1 unknown, 0, 1, 2 (> 1) */
    unsigned nsk : 27;        /* skills (at most RJOB_MAX_SKILLS) */
    uint32_t sk_off;          /* the job's skills: arena entries sk_off .. sk_off + nsk */
    float wsum;               /* sum of the skills' weights */
    float smin, smax;         /* NAN unknown */
    int32_t posted;           /* days since 1970-01-01, or INT32_MIN */
    /* cold: handles into the engine's string arena (rank_str), 0 = NULL;
     * title, company, location, emp and sen are interned (shared between
     * jobs), the id is the job's own */
    uint32_t location, emp, sen;
    uint32_t id, title, company;
    int64_t rev;              /* change-log position of the job's last change */
} rjob;

#define RJOB_MAX_SKILLS ((1 << 27) - 1)
_Static_assert(sizeof(rjob) == 56, "rjob is 56 bytes");

/* A job skill in the arena: vocabulary index << 1 | required. All jobs' skills
 * sit in one array, in slot order at load, so the per-query pass over every
 * job streams memory instead of chasing a pointer per job. A changed job's
 * skills are appended; the old entries are left behind (rebuilt on reload). */
#define JSK(e, j, i) ((int)(rank_ask((e), (size_t)(j)->sk_off + (size_t)(i)) >> 1))
#define JREQ(e, j, i) ((int)(rank_ask((e), (size_t)(j)->sk_off + (size_t)(i)) & 1))

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
    uint32_t *strs;            /* interned strings (handles): a few thousand distinct */
    int strs_nslots, strs_n;   /* titles, companies, places for any number of jobs */
    void *arena;               /* uint16_t entries while every vocabulary index is
                                * below 32768 (arena16), else uint32_t */
    int arena16;
    size_t arena_n, arena_cap;
    sk_vocab *voc;
    char **raw_keys;           /* skill name as a job gives it -> vocabulary index: */
    int *raw_vals;             /* normalising (utf8proc) once per distinct name, */
    int raw_nslots, raw_n;     /* not once per job skill, makes loading 5x faster */
    uint64_t *raw_hash;        /* the keys' hashes (most probes then skip strcmp) */
    uint32_t *vstamp;          /* per vocabulary skill: the job_put that last listed */
    int vstamp_n;              /* it (a job's duplicate skills dropped in O(1)) */
    uint32_t stamp;
    idx *ix;                   /* NULL in stream mode */
    int64_t rev;               /* change-log position applied */
    double last_refresh;       /* jm_now() of the last load or refresh */
    double last_skills_check;  /* jm_now() when skills lacking an embedding were last re-read */
    double load_secs;
    char **sblk;               /* the string arena: ids and interned strings in */
    int sblk_n, sblk_cap;      /* 64 KiB blocks, addressed by 32-bit handles */
    size_t sblk_used;          /* bytes used of the last block */
    uint64_t *livebits;        /* bit s set = slot s is live; livebits_words words */
    int livebits_words;
    float *vec_tmp;            /* dim floats: scratch of the loader (write lock held) */

    /* What lets a query score only the jobs that can make its candidates
     * (rank.c, "the skill pass"), built at load and rebuilt by a refresh
     * once many jobs changed. Jobs put since the build are "dirty": the
     * structures do not describe them, and every query scores them. */
    int accel;                 /* 1 when the structures below are valid */
    int post_nv;               /* vocabulary size at the build */
    signed char *post_bit;     /* per skill < post_nv: its bit (0..63) in the
                                * bitmaps below (rbits) for the 64 skills most
                                * jobs list, else -1: the skill has a postings
                                * list */
    uint32_t *post_off;        /* the jobs listing skill s (post_bit[s] < 0), by */
    uint8_t *post;             /* rank ascending: post[post_off[s] .. post_off[s + 1]),
                                * delta-coded varints (rank.c, pcur) */
    int wperm_n;               /* live jobs at the build; by rank r = their order */
    uint32_t *wperm;           /* by wsum ascending: wperm[r] is a slot */
    uint64_t *rbits;           /* the masked skills by rank, as bitmaps: with
                                * rw = (wperm_n + 63) / 64 words a bitmap, bit
                                * r % 64 of rbits[(2b + k) * rw + r / 64] is set
                                * when job wperm[r] lists the skill of bit b
                                * (0..63) as required (k = 0), as nice-to-have
                                * (k = 1); 128 bitmaps, 16 bytes a job */
    uint8_t *rcw;              /* rcw[r]: how many masked skills job wperm[r]
                                * lists as required (RCW_REQ, at most 31) and
                                * as nice-to-have (RCW_NICE, at most 7) */
    uint32_t *roff;            /* job wperm[r]'s skills: arena[roff[r] .. roff[r + 1])
                                * (the build lays the arena out in rank order) */
    uint32_t *rcls;            /* rcls[r]: the wsum class of job wperm[r] */
    int ncls;                  /* classes: the distinct wsums, ascending */
    float *cls_w;              /* the class's wsum */
    float *cls_lw;             /* >= -log(wsum + mu) */
    float *cls_bound;          /* >= the largest -log(wsum + mu) + max(w_coverage, 0)
                                * wsum / (wsum + shrink) of this class and the ones after */
    float *cls_logf;           /* logf(wsum + mu), as a job's score has it */
    uint64_t *dirty;           /* bit per slot (livebits_words words) */
    int *dirty_list;
    int ndirty, dirty_cap;
    int reference;             /* tests: score every job (rank_set_reference) */
    atomic_llong cov_lists;    /* tests: coverage-only postings lists the skill
                                * pass has merged (have-matches the likelihood
                                * does not count) since rank_open */
    vcache *cache;             /* embeddings of profile texts and unknown skills */
    int from_snapshot;         /* see rank_info */
    const char *snap_why;
    int64_t snap_rev;

    /* The index's probe depth, calibrated (rank.c, "calibrating the index"):
     * the last RANK_QRING query profiles, and when and on what the depth was
     * last set. */
    pthread_mutex_t qlock;     /* qring, qring_n */
    float *qring;              /* [RANK_QRING][dim] */
    int64_t qring_n;           /* profiles recorded since rank_open */
    int64_t tuned_q;           /* qring_n at the last calibration */
    int tuned_nlist;           /* the index's list count then (a new training
                                * changes it: calibrate again) */
    double tuned_at;           /* jm_now() then */
    const char *tuned_on;      /* "none", "skills", "queries", "snapshot" */
};

/* An rcw byte: min(required, 31) | min(nice-to-have, 7) << 5. */
#define RCW_REQ(x) ((unsigned)(x) & 31)
#define RCW_NICE(x) ((unsigned)(x) >> 5)

/* cls_lw, cls_bound and cls_logf from cls_w (and ncls, the options):
 * allocated here; -1 when out of memory (the caller frees). */
int rank_cls_derive(rank_engine *e);

/* The exact float32 vectors of index slots, read from the store (an
 * idx_fetch_fn: ctx is the engine; the caller holds the read lock). */
int rank_fetch_exact(void *e, const uint32_t *slots, int n, float *vecs, jm_err *err);

/* query profiles kept for rank_tune */
#define RANK_QRING 1024
/* The string arena's blocks (rank_str): SBLK_SIZE bytes, or one string
 * longer than that alone; zero-filled past the strings (snapshots). */
#define SBLK_SIZE 65536
#define SBLK_MAX 65535

/* Arena entry k (vocabulary index << 1 | required). */
static inline uint32_t rank_ask(const rank_engine *e, size_t k)
{
    return e->arena16 ? ((const uint16_t *)e->arena)[k] : ((const uint32_t *)e->arena)[k];
}

/* The string of a handle (rjob's id, title, ...): NULL for 0. A handle is
 * 1 + (block << 16 | offset); blocks never move, so the pointer stays valid
 * while the engine lives. */
static inline const char *rank_str(const rank_engine *e, uint32_t h)
{
    return h ? e->sblk[(h - 1) >> 16] + ((h - 1) & 0xffff) : NULL;
}

/* The person's side of a query. */
typedef struct rprofile {
    char **skills;             /* normalised, merged */
    char **typed;              /* as typed (first form seen) */
    int n;
    float *emb;                /* n * dim unit vectors */
    float *profile;            /* dim: the joined skills' embedding */
    float *pcorp;              /* n: probability of the skill in the corpus (smoothing) */
    float *lnum;               /* n * 3: log(c + mu p(u)) for c = 0, nice_credit, 1 */
    float *best_sim;           /* per vocabulary skill; SK_SIM_UNRESOLVED where it
                                * is below the thresholds (rprofile_sim) */
    int *best_user;
    unsigned char *kind;
} rprofile;

int rprofile_build(rank_engine *e, bert_pool *pool, const char *const *skills, int nskills, rprofile *p,
                   jm_err *err);
void rprofile_free(rprofile *p);
/* p->best_sim[s], computed now (and kept) if it was left unresolved: the
 * exact value, for explanations. */
float rprofile_sim(const rank_engine *e, rprofile *p, int s);

/* Slot of a job id, or -1. Caller holds the read lock. */
int rank_slot(const rank_engine *e, const char *id);

/* credit of a similarity under the engine's thresholds: 1, 0.5 or 0 */
float rank_credit(const rank_engine *e, float sim);
rank_status rank_status_of(const rank_engine *e, float sim);
float rank_skill_weight(const rank_engine *e, int required);

/* Tests: on = 1 makes queries take the reference path, the full pass of the
 * first version (every job checked against the filters one by one and scored),
 * instead of the postings and bounds; the results must be the same. */
void rank_set_reference(rank_engine *e, int on);

/* Tests: the skill pass's candidates for q (the best max(candidates, k)
 * jobs that pass the filters by Q_raw + w_coverage C, ties to the lower
 * slot), by the path rank_set_reference selects, sorted by that order:
 * malloc'd slots[n] and scores[n]; *fast = 1 when postings and bounds were
 * used (0: the full pass). */
int rank_skill_candidates(rank_engine *e, bert_pool *pool, const rank_query *q, int **slots, float **scores, int *n,
                          int *fast, jm_err *err);
/* The store's change-log counter now. */
int rank_db_rev(const rank_engine *e, int64_t *now, jm_err *err);
/* rank_snap.c for rank_open: fills the empty engine e from the snapshot at
 * path. JM_OK when it did; otherwise *why says why not (e is then half
 * filled: the caller closes it), and the return value is 1 for a file that
 * does not fit or JM_ENOMEM / JM_EIO from the database. */
int rank_snap_load(rank_engine *e, const char *path, const char **why, jm_err *err);

/* Tests: rebuild the skill pass's structures now (a refresh does it once many
 * jobs changed). */
void rank_rebuild(rank_engine *e);

#endif
