/* rank.h - recommendations and skill gaps over the jobs in a store (prefix rank_;
 * the gap reports are in gap.h).
 *
 * An engine loads, once, every job's metadata and skills and its embedding
 * (quantised, in the vector index) plus the skills table, and follows the
 * database's change log afterwards (rank_refresh), so new, changed and deleted
 * jobs appear without a restart. In stream mode no job vectors are kept:
 * each query scans them from the database in bounded chunks.
 *
 * Scoring a job J for a person with skills U (see docs/ranking.md):
 *   match(u, J)   best similarity of user skill u to any skill of J: 1 for an
 *                 exact or alias match, else the cosine of the skill embeddings;
 *   credit(sim)   1 if sim >= have, 0.5 if sim >= partial, else 0;
 *   query      Q  = how likely the person's skills are under the job: the
 *                   per-skill average of log(c(u) + mu p(u)) minus
 *                   length_norm * log(sum_s w_s + mu), a Dirichlet-smoothed
 *                   query likelihood; c(u) = 1 if J names u as a required
 *                   skill (exact, alias or a semantic match >= query_have:
 *                   the same skill under a near-identical name),
 *                   nice_credit if only as a nice-to-have one, else 0;
 *                   p(u) the skill's share of all job skills; reported as
 *                   exp(that - the best candidate's), so 1 = the job that
 *                   makes these skills most likely. It prefers the job that
 *                   has all of them and few others: what tells apart
 *                   occupations that share common skills (length_norm < 1
 *                   softens the "few others");
 *   coverage   C  = sum_s w_s credit(match(s, U)) / (sum_s w_s + shrink): the
 *                   weighted share of the job's skills the person has, w_s =
 *                   1 for required skills and `nice_weight` for the others;
 *                   `shrink` keeps a job listing 2 skills from beating one
 *                   listing 20 merely by its small denominator;
 *   semantic   S  = cosine(profile embedding, job embedding), the profile
 *                   being the person's skills joined into one text;
 *   keyword    K  = the job's keyword-search score (BM25 / ts_rank_cd) over
 *                   title, skills and description, divided by the best one;
 *   score         = w_query Q + w_coverage C + w_semantic S + w_keyword K.
 * Candidates are the best few hundred by Q and C over all jobs that pass the
 * filters, the best few hundred by S from the index, and (on stores of up to
 * keyword_scan_max jobs) the keyword hits. The first set is found without
 * scoring every job: postings lists of the skills and bounds on Q and C
 * prove the other jobs cannot enter it (rank.c, "the skill pass"); it is
 * the exact top by (Q + w_coverage C, then load order), the same as scoring
 * them all. */
#ifndef JM_RANK_H
#define JM_RANK_H

#include <stdatomic.h>
#include <stdint.h>

#include "bert.h"
#include "common.h"
#include "db.h"
#include "skills.h"

typedef struct rank_engine rank_engine;

typedef enum { RANK_INDEX_MEMORY = 0, RANK_INDEX_STREAM } rank_index_mode;

typedef struct rank_weights {
    float query, coverage, semantic, keyword;
} rank_weights;

typedef struct rank_opts {
    rank_index_mode index_mode;
    rank_weights w;        /* defaults: RANK_DEFAULT_WEIGHTS */
    float have, partial;   /* similarity thresholds (defaults RANK_HAVE, RANK_PARTIAL) */
    float nice_weight;     /* weight of a nice-to-have job skill (default 0.2) */
    float shrink;          /* coverage denominator shrinkage (default 3) */
    float mu;              /* query-likelihood smoothing (default 30) */
    float nice_credit;     /* c(u) of Q for a had nice-to-have skill, 0..1 (default 1) */
    float length_norm;     /* power of (sum_s w_s + mu) in Q's denominator, 0..1 (default 0.8) */
    float query_have;      /* least similarity of a semantic match that Q
                            * counts, 0..1 (default RANK_QUERY_HAVE); Q
                            * counts no match below `have` whatever this is.
                            * Coverage, gaps and explanations use `have` */
    int candidates;        /* per source (default 300) */
    int stream_chunk;      /* jobs per chunk in stream mode (default 4096) */
    int keyword_scan_max;  /* the keyword part is used up to this many jobs
                            * (default 20000). Ranking every job that matches a
                            * common term costs ~100 ms at 100,000 jobs in
                            * SQLite FTS5, and FTS5 cannot score a given set of
                            * rows (its bm25 is meaningless in rowid lookups):
                            * above it the keyword part is 0 and its weight
                            * unused. */
    double refresh_secs;   /* a query first applies the database's changes when
                            * this long has passed since the last refresh
                            * (default 5; < 0: only explicit rank_refresh) */
    int cache_entries;     /* embeddings kept for reuse (default 2048, 0 = none):
                            * see "Embedding cache" below */
    const char *snapshot;  /* engine snapshot file (default NULL: none); see
                            * "Snapshots" below */
    int ivf_min;           /* jobs with vectors from which the vector index
                            * keeps inverted lists (default 0: IDX_IVF_MIN,
                            * 32768; see rank_tune). An index read from a
                            * snapshot keeps the value it was written with */
} rank_opts;

#define RANK_DEFAULT_WEIGHTS ((rank_weights){0.65f, 0.05f, 0.05f, 0.25f})
/* Calibrated on O*NET by bench/calibrate (docs/ranking.md). */
#define RANK_HAVE 0.70f
#define RANK_PARTIAL 0.50f
/* Chosen on O*NET (docs/ranking.md, "Which matches the likelihood counts"). */
#define RANK_QUERY_HAVE 0.85f

/* opts may be NULL for the defaults. */
void rank_opts_default(rank_opts *o);

/* Load the engine from d (which it keeps using: do not close d before
 * rank_close). model supplies query embeddings; its id selects which stored
 * embeddings count. On success *out is owned by the caller. */
int rank_open(db *d, const bert_model *model, const rank_opts *opts, rank_engine **out, jm_err *err);
void rank_close(rank_engine *e); /* accepts NULL */

/* Apply the database's changes since the last load or refresh (new, changed
 * and deleted jobs, new skills). *applied (optional) counts jobs touched. */
int rank_refresh(rank_engine *e, int *applied, jm_err *err);

typedef struct rank_info {
    int64_t jobs;          /* jobs loaded */
    int64_t with_vectors;  /* of those, with a current embedding */
    int64_t skills;        /* vocabulary size */
    int64_t index_bytes;   /* memory of the vector index */
    double load_secs;      /* time rank_open took */
    int64_t rev;           /* change-log position */
    const char *mode;      /* "memory" or "stream" */
    int64_t cache_hits, cache_misses; /* embedding cache lookups since rank_open */
    int cache_entries;     /* texts cached now */
    int64_t cache_bytes;   /* their memory */
    int from_snapshot;     /* 1: rank_open loaded opts.snapshot (and applied the
                            * changes since); 0: it scanned the database */
    const char *snapshot_why; /* when 0 and a snapshot was named: why it was not
                            * used ("no such file", "written for another store", ...) */
    int64_t snapshot_rev;  /* change-log position of the last snapshot loaded
                            * or saved (0: none) */
    int index_lists;       /* the vector index's inverted lists (0: none yet) */
    int index_probe;       /* lists a search probes (see rank_tune); 0 without lists */
    float index_spread;    /* the order it probes them in (idx_set_spread; see
                            * rank_tune): 0 by query . centre alone */
    const char *probe_from; /* what set it: "none" (not calibrated yet: every
                            * list), "skills" (queries made of the
                            * vocabulary's skills), "queries" (the profiles
                            * of recent queries), "snapshot" */
} rank_info;
void rank_get_info(rank_engine *e, rank_info *out);

/* Calibrates the vector index's probe depth when it is due; returns 1 if it
 * did, 0 if not, or a negative JM_E* code. From IDX_IVF_MIN jobs (ivf_min)
 * the index searches the few lists (of ~sqrt(N)) whose centres are nearest
 * the query; how many it must search so that the top 10 are the exact top
 * 10 depends on the data and on the queries. So the depth is measured, not
 * guessed: for sample queries, the exact top 10 from a search of every
 * list, and how deep in the query's order of lists the farthest of them
 * lies (idx_probe_need); the depth set covers 99.5% of the sample, plus a
 * quarter (idx_probe_pick). The same scans give the depth in each of four
 * probe orders (idx_probe_needs, idx_set_spread), and the order whose depth
 * reads the fewest rows for the sample is kept (idx_probe_rows). The
 * sample: the profiles of the last 1024 queries (recorded by
 * rank_recommend) once there are 256, else 256 profiles made of the
 * vocabulary's skills (3 to 5 skills drawn by how many
 * jobs list them, their embeddings averaged). Due: right after rank_open
 * when the lists exist (unless a snapshot brought the depth; until then a
 * search reads every list: exact, only slower), after a training of the
 * lists (the job count doubled), and when 1024 new queries came since the
 * last time, at most every 10 minutes (force: now). Costs a search of
 * every list and a fetch of 100 vectors per sample query (1,000 queries:
 * ~2.7 s at 100k jobs, ~18 s at 1M; the 256 after rank_open: 0.7 s / 4.5 s),
 * under the read lock 32 queries at a time: queries go on meanwhile, and a
 * refresh waits for one batch at most. *stop (optional) set ends it early
 * without a change. The server calls it on a thread of its own. Measured
 * on the benchmark's stores (BENCHMARKS.md): the default 16 lists gave the
 * exact top 10 for 90% of real query profiles at 100k, 94% at 1M. */
int rank_tune(rank_engine *e, int force, const atomic_int *stop, jm_err *err);

/* ---------- snapshots ----------
 *
 * At 1,000,000 jobs a load scans ~7 GB of SQLite (~10 s). A snapshot is the
 * engine's state in one file (~430 MB at 1M: the job records, the strings,
 * the skill arena, the vocabulary's names and frequencies, the skill pass's
 * structures, the vector index), read back in a fraction of a second; the
 * changes made since it was written are then applied from the change log,
 * as a refresh would. rank_open uses opts.snapshot when the file was written
 * for the same store (the meta table's store_id, the job source and its
 * template), the same model, the same scoring options that shape the arrays
 * and the same index mode, with a change-log position the store has reached,
 * and its checksum and every count, offset and postings entry check out
 * (the entries are decoded: ~30 ms at 1M); otherwise it scans
 * the database as without one (rank_info says why). A snapshot is only read
 * on the machine type that wrote it (byte order and sizes are checked).
 * Skill embeddings are not in it: they are read from the skills table. */

/* Write the engine's state to path (atomically: a temporary file in the same
 * directory, fsync, rename). Queries may run meanwhile; a refresh waits.
 * Gives the store a store_id in its meta table if it has none. JM_EIO with
 * the reason when the file cannot be written (the old one, if any, stays). */
int rank_snapshot_save(rank_engine *e, const char *path, jm_err *err);

/* ---------- queries ---------- */

typedef struct rank_filters {
    const char *location;        /* case-insensitive substring of the job's location */
    int remote_only;
    double salary_min, salary_max; /* the job's range must overlap [min, max]; NAN = open */
    const char *employment_type; /* case-insensitive equality */
    const char *seniority;       /* case-insensitive equality */
    const char *posted_since;    /* YYYY-MM-DD: posted_at on or after */
    const char *const *exclude;  /* job ids to leave out */
    int nexclude;
} rank_filters;

void rank_filters_init(rank_filters *f);

typedef struct rank_query {
    const char *const *skills;   /* as typed; normalised, de-duplicated, near-duplicates merged */
    int nskills;
    int k;                       /* results wanted (1..1000) */
    int per_company;             /* at most this many results per company, 0 = no cap */
    rank_filters filters;
} rank_query;

typedef enum { RANK_MISSING = 0, RANK_PARTIAL_HAVE, RANK_HAVE_IT } rank_status;
const char *rank_status_name(rank_status s); /* "missing", "partial", "have" */

/* One job skill, aligned with the person's best skill for it. */
typedef struct rank_align {
    const char *job_skill;     /* display form */
    const char *user_skill;    /* the person's skill that matched best, or NULL */
    float similarity;
    sk_kind kind;
    int required;
    float weight;
    rank_status status;
    float contribution;        /* to the final score */
    float idf;
} rank_align;

typedef struct rank_result {
    const char *id, *title, *company, *location;
    float score, query, coverage, semantic, keyword;
    rank_align *align;         /* one per job skill, in the job's order */
    int nalign;
    int nmissing;              /* job skills with status missing */
} rank_result;

typedef struct rank_response {
    rank_result *results;
    int n;
    char **skills;             /* the person's skills after normalising and merging */
    int nskills;
    int64_t considered;        /* jobs that passed the filters */
    double ms;                 /* time taken */
    void *lock;                /* internal: results point into the engine, which
                                * stays read-locked until rank_response_free */
} rank_response;

/* Rank jobs for q. pool embeds the query (a pool of 1 thread per caller). The
 * engine may be queried from several threads at once, each with its own pool.
 * The response points into the engine, which stays read-locked until
 * rank_response_free: free it before the same thread queries or refreshes
 * again (a query may refresh, which takes the write lock).
 * Bad input (no skills, k out of range) is JM_EINVAL with a message; a filter
 * that excludes everything gives n = 0. */
int rank_recommend(rank_engine *e, bert_pool *pool, const rank_query *q, rank_response *out, jm_err *err);
void rank_response_free(rank_response *r);

/* ---------- browsing (the HTTP service) ---------- */

typedef struct rank_job_brief {
    const char *id, *title, *company, *location;
} rank_job_brief;
typedef int (*rank_job_fn)(void *ctx, const rank_job_brief *job); /* non-zero stops */

/* The live jobs whose title, company or id contains q (ASCII case ignored;
 * NULL or "" = all), in the engine's order (the load's id order, then jobs
 * added since): fn is called for matches offset .. offset + limit - 1, under
 * the engine's read lock (the strings live until fn returns); *total counts
 * every match. */
int rank_list_jobs(rank_engine *e, const char *q, int64_t offset, int limit, rank_job_fn fn, void *ctx,
                   int64_t *total, jm_err *err);

typedef int (*rank_skill_fn)(void *ctx, const char *display, int jobs); /* non-zero stops */

/* Skill autocomplete: vocabulary skills whose normalised name, or a word of
 * it, starts with the normalised prefix; the most common (jobs listing them)
 * first, then whole-name prefixes. At most limit (1..1000) calls of fn. */
int rank_suggest_skills(rank_engine *e, const char *prefix, int limit, rank_skill_fn fn, void *ctx, jm_err *err);

/* Check (and on PostgreSQL re-establish) the engine's database connection. */
int rank_ping(rank_engine *e, jm_err *err);

/* Embedding cache. Embedding the query is most of a query's time (~6-10 ms
 * of 1 thread for a few skills), so the engine keeps the embeddings it
 * computes in a bounded LRU cache keyed by the exact text embedded: the
 * profile text (the person's skills as typed, after merging, joined with " ")
 * and each skill the skills table does not know. A query whose texts are all
 * cached runs no model at all. At most rank_opts.cache_entries texts are kept
 * (default 2048: ~3.2 MB with 384-dimensional vectors, allocated as entries
 * are added); the least recently used one goes first. The cache has its own
 * mutex, held only for a lookup or an insert, so queries from several threads
 * (each with its own bert_pool) share it. A cached vector equals what the
 * model gives for the text within ~1e-7 (the model's batch-vs-single
 * difference), so a warm and a cold query can differ in the 7th digit of the
 * semantic part. rank_cache_clear empties it (benchmarks of cold queries). */
void rank_cache_clear(rank_engine *e);

/* Parse "python, sql;docker" into a malloc'd array of trimmed non-empty
 * strings (free each and the array). Returns the count. */
int rank_split_skills(const char *text, char ***out);

#endif
