/* db.h - the job store (prefix db_): one interface, two backends.
 *
 *   SQLite (db_sqlite.c)      a file path, "sqlite:PATH" or "file:PATH"; created
 *                             on first use, WAL mode so readers run beside the writer.
 *   PostgreSQL (db_pg.c)      "postgresql://user:pass@host:port/db?..." or "postgres://..."
 *
 * Both behave identically. Every query is parameterised; identifiers (table and
 * column names given by the user for `attach`) are checked against the
 * database's own catalogue and then double-quoted. Credentials never appear in
 * messages: use db_display_url().
 *
 * Schema, created by db_migrate in one transaction per version:
 *   jobs   (id TEXT PRIMARY KEY, title, company, location, remote BOOL,
 *           salary_min REAL, salary_max REAL, currency, employment_type,
 *           seniority, description, skills TEXT (JSON array of
 *           {"name": ..., "required": bool}, in order), skill_names TEXT
 *           ("a, b, c": what the job text and keyword search use), posted_at,
 *           updated_at TEXT (ISO 8601, set on every change), text_hash TEXT,
 *           embedding BLOB/BYTEA, embedding_model TEXT)
 *   skills (name TEXT PRIMARY KEY (normalised), display TEXT, embedding, embedding_model)
 *   meta   (key TEXT PRIMARY KEY, value TEXT): schema_version, model_id, model_dim,
 *           and the source mapping (see db_source).
 * Version 2 adds the change log (job_changes: rev, id, deleted; one row per
 * job, maintained by triggers on the jobs table and on an attached table) and
 * keyword search (SQLite: an FTS5 table over title, skill_names, description
 * kept in sync by triggers; PostgreSQL: a generated tsvector column with a GIN
 * index; for an attached table, over its template columns).
 *
 * Embeddings are little-endian float32, dim * 4 bytes: numpy's
 * astype('<f4').tobytes() layout.
 *
 * Staleness lives in the database, so that any number of workers agree on it:
 * a job needs embedding when embedding IS NULL, or embedding_model differs
 * from the model id, or text_hash differs from the SHA-256 (hex) of the job's
 * current text. The text is built by the database itself from the source's
 * template (db_source), so the hash that is stored is always the hash of the
 * text that was embedded. SQLite gets a sha256 SQL function from us;
 * PostgreSQL uses its own sha256(). */
#ifndef JM_DB_H
#define JM_DB_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"

#define DB_SCHEMA_VERSION 2

typedef struct db db;

/* ---------- jobs ---------- */

typedef struct db_skill {
    char *name;   /* as given (display form) */
    int required; /* 1 required, 0 nice to have */
} db_skill;

/* A job as imported. Unknown text fields are NULL; unknown numbers are NAN;
 * remote is -1 when unknown. All strings are valid UTF-8. */
typedef struct db_job {
    char *id;
    char *title, *company, *location;
    int remote;
    double salary_min, salary_max;
    char *currency, *employment_type, *seniority, *description;
    db_skill *skills;
    int nskills;
    char *posted_at; /* ISO 8601 date or date-time, or NULL */
} db_job;

void db_job_init(db_job *j);   /* all fields unknown */
void db_job_clear(db_job *j);  /* frees every field (accepts a zeroed job) */

/* ---------- opening, migrations, meta ---------- */

/* Open (creating an SQLite file if needed) and migrate to DB_SCHEMA_VERSION.
 * On success *out is owned by the caller (db_close). */
int db_open(const char *url, db **out, jm_err *err);
/* The SQLite file a URL names (the URL itself, or what follows "sqlite:"
 * or "file:"); NULL for a PostgreSQL URL or NULL. Points into url. */
const char *db_sqlite_path(const char *url);
void db_close(db *d); /* accepts NULL */

const char *db_kind(const db *d);        /* "sqlite" or "postgresql" */
const char *db_display_url(const db *d); /* the URL with its password masked */

/* Apply pending migrations in one transaction; a no-op when up to date.
 * db_open already calls it; exposed for tests and `jobmatch migrate`. */
int db_migrate(db *d, jm_err *err);
int db_schema_version(db *d, int *out, jm_err *err);

/* *out is a malloc'd copy, or NULL when the key is absent. */
int db_meta_get(db *d, const char *key, char **out, jm_err *err);
int db_meta_set(db *d, const char *key, const char *value, jm_err *err);

/* Check that the connection is alive (reconnecting if the backend can). */
int db_ping(db *d, jm_err *err);

/* ---------- where the jobs live ---------- */

/* The job text template: "{column}" placeholders and literal text, e.g. the
 * default for jobmatch's own table, "{title}. {description} Skills: {skill_names}".
 * For an attached table the default template joins the text columns with ". ". */
#define DB_DEFAULT_TEMPLATE "{title}. {description} Skills: {skill_names}"

typedef struct db_source {
    int attached;          /* 0: jobmatch's own `jobs` table */
    char table[128];
    char id_col[128];
    char skills_col[128];  /* "" if none */
    char template_[2048];  /* job text template */
} db_source;

/* The current mapping (from meta; jobmatch's own table when nothing is attached). */
int db_source_get(db *d, db_source *out, jm_err *err);

/* Record a mapping to an existing table and add the columns jobmatch writes
 * (embedding, text_hash, embedding_model) with ADD COLUMN IF NOT EXISTS. The
 * table and every column named (id, text columns, skills) must exist; the id
 * column should be unique. jobmatch's own tables are refused (JM_EINVAL). The
 * user's rows are not copied or rewritten. text_cols: comma-separated; the
 * template becomes "{c1}. {c2}. ..." unless template_ is non-NULL.
 *
 * It also installs, in one transaction, what schema version 2 keeps for
 * jobmatch's own table, in the same style:
 *   - change-log triggers on the table (insert, update, delete; ids cast to
 *     text), whose rows all get a job_changes entry when first installed;
 *   - keyword search over the template's columns (cast to text): SQLite, an
 *     FTS5 table jm_fts_T with its text in jm_search_T, kept by triggers on
 *     T; PostgreSQL, a GIN index jm_search_T on T over the tsvector
 *     expression, or, when PostgreSQL refuses one (a column whose cast to
 *     text is not immutable, e.g. timestamptz), a scan of T per search.
 * The triggers use only built-in SQL, so the programs that write to the
 * table run them too (SQLite: their library needs FTS5). Attaching the same
 * table again is a no-op (db_set_template rebuilds the search when its
 * columns change); attaching another one removes all of this from the one
 * attached before. */
int db_attach(db *d, const char *table, const char *id_col, const char *text_cols,
              const char *skills_col, const char *template_, jm_err *err);

/* Replace the text template of the current source (validated like attach). */
int db_set_template(db *d, const char *template_, jm_err *err);

/* ---------- import ---------- */

/* Upsert n jobs by id in one transaction. A row whose content changed gets a
 * new updated_at; its text (and so its hash) changes with it, which makes its
 * embedding stale. Only for jobmatch's own table (JM_EINVAL when attached).
 * *changed (optional) counts inserted or modified rows. */
int db_upsert_jobs(db *d, const db_job *jobs, int n, int *changed, jm_err *err);

/* Delete a job by id; *found (optional) says whether it existed. */
int db_delete_job(db *d, const char *id, int *found, jm_err *err);

/* ---------- embedding work ---------- */

typedef struct db_counts {
    int64_t jobs;      /* rows in the source */
    int64_t embedded;  /* fresh: embedding present, same model, hash matches */
    int64_t stale;     /* embedding present but old model or changed text */
    int64_t missing;   /* no embedding */
    int64_t skills;            /* distinct skills in the skills table */
    int64_t skills_pending;    /* of those, without a current embedding */
} db_counts;

int db_counts_get(db *d, const char *model_id, db_counts *out, jm_err *err);

/* A claimed batch: ids and the texts to embed, in a transaction that stays open
 * until db_batch_commit or db_batch_abort. PostgreSQL claims rows with
 * SELECT ... FOR UPDATE SKIP LOCKED, so concurrent workers (other processes,
 * other machines) never get the same job; SQLite takes the write lock. */
typedef struct db_batch {
    int n;
    char **ids;
    char **texts;
} db_batch;

/* Claim up to `limit` jobs that need embedding for model_id, in id order,
 * with ids greater than `after` (NULL: from the start). The caller passes the
 * last id of its previous batch, so a run hashes each row about once instead
 * of rescanning the rows it already did. n == 0 means none are left past
 * `after` (and no transaction is open). */
int db_claim_jobs(db *d, const char *model_id, const char *after, int limit, db_batch *out, jm_err *err);

/* Claim just job `id` when it needs embedding (n == 0 when it does not, or
 * does not exist): how a job written through the API is embedded at once. */
int db_claim_job(db *d, const char *model_id, const char *id, db_batch *out, jm_err *err);

/* Write the batch's embeddings (vecs[n * dim]), each with the hash of the very
 * text it came from and model_id, and commit. Frees nothing: call db_batch_free. */
int db_commit_jobs(db *d, const db_batch *b, const float *vecs, int dim, const char *model_id,
                   jm_err *err);

/* Skills: the same claim/commit cycle over skills without a current embedding.
 * db_sync_skills first adds every distinct (normalised) skill named by the
 * source's jobs to the skills table; *added (optional) counts new ones. */
int db_sync_skills(db *d, int *added, jm_err *err);
/* Add these skills (normalised) to the skills table if absent: one job's skills. */
int db_add_skills(db *d, const db_skill *sk, int n, int *added, jm_err *err);
int db_claim_skills(db *d, const char *model_id, const char *after, int limit, db_batch *out, jm_err *err);
int db_commit_skills(db *d, const db_batch *b, const float *vecs, int dim, const char *model_id,
                     jm_err *err);

/* Roll back a claimed batch (jobs or skills). */
void db_abort(db *d);
void db_batch_free(db_batch *b); /* accepts a zeroed batch */

/* The stored embedding of job `id` of the source table: *out (malloc'd, *dim
 * floats) and *model (malloc'd), both NULL when the job has no embedding.
 * JM_ENOTFOUND when there is no such job; JM_EFORMAT when the stored bytes
 * are not a whole number of float32 values. */
int db_get_job_embedding(db *d, const char *id, float **out, int *dim, char **model, jm_err *err);

/* ---------- reading jobs back (index, recommendations, gaps) ---------- */

/* A job row as read back. For jobmatch's own table every field is filled;
 * for an attached table: id, title (the first {column} of the template),
 * description (the whole job text), skills (from the skills column), the rest
 * unknown. `emb` points at little-endian float32 bytes (emb_len of them, NULL
 * when the job has no current embedding); everything is valid only during
 * the callback: copy what you keep. */
typedef struct db_row {
    db_job job;
    const unsigned char *emb;
    size_t emb_len;
    int64_t rev;  /* change counter of the row's last change (see db_changes) */
    int deleted;  /* db_changes only: the job is gone (only job.id is set) */
    const char *skills_raw; /* db_scan_jobs with DB_SCAN_RAW_SKILLS: the stored skills value */
} db_row;

/* Nonzero return stops the scan and is returned. */
typedef int (*db_row_fn)(void *ctx, const db_row *row);

/* Every job of the source in id order. flags: DB_SCAN_EMBEDDING reads the
 * vectors (without it, or with model_id NULL, emb is NULL); only current
 * embeddings are returned: made by model_id from the job's current text (the
 * staleness rule above; stale ones count as none). DB_SCAN_RAW_SKILLS hands
 * each job's stored skills value over unparsed, as skills_raw (job.skills
 * is then empty; db_skills_parse parses it), so that a caller can parse on
 * another thread. Streams: memory does not grow with the table (PostgreSQL
 * reads pages of 2,000 rows; SQLite steps one statement, so fn may read
 * from the store but should not write to it). */
#define DB_SCAN_EMBEDDING 1
#define DB_SCAN_RAW_SKILLS 2
int db_scan_jobs(db *d, const char *model_id, int flags, db_row_fn fn, void *ctx, jm_err *err);

/* A stored skills value (JSON or a comma list, as db_row_emit reads it) as
 * one malloc'd block: *out (free it) holds *n skills and their names. NULL
 * and 0 for NULL or no skills; JM_ENOMEM. */
int db_skills_parse(const char *value, db_skill **out, int *n);

/* The change counter: every insert, update (content or embedding) and delete
 * of a job bumps it (schema version 2: a change log kept by triggers, one
 * entry per job, the latest). db_changes calls fn for each job changed with
 * rev > since, in rev order (deleted rows with deleted = 1), and sets *now to
 * the counter's current value (the largest rev visible when the call
 * started; rows past it wait for the next call), to pass as `since` next
 * time. Rows carry the job's current data and, when model_id is non-NULL,
 * its current embedding as in db_scan_jobs. A job is deleted when the
 * source has no row with its id, whatever the log says. since = INT64_MAX
 * reads just the counter. On SQLite revs become visible in order. On
 * PostgreSQL a transaction may commit a smaller rev after a larger one is
 * visible: pass since - DB_CHANGES_SLACK and ignore rows whose rev you have
 * applied (a transaction that takes longer than the next DB_CHANGES_SLACK
 * changes of others to commit can still be missed). */
#define DB_CHANGES_SLACK 10000
int db_changes(db *d, const char *model_id, int64_t since, db_row_fn fn, void *ctx, int64_t *now, jm_err *err);

/* One job by id (*found = 0 if none); *out must be db_job_clear'ed by the caller. */
int db_get_job(db *d, const char *id, db_job *out, int *found, jm_err *err);

/* Exact embeddings of n jobs (for re-scoring), out[i * dim]; found[i] = 0 when
 * job i has no current embedding for model_id (its row of out is zeroed).
 * One query for all n. JM_EFORMAT when a current embedding is not dim
 * float32 values. */
int db_get_embeddings(db *d, const char *model_id, const char *const *ids, int n, float *out, int dim, int *found,
                      jm_err *err);

/* Every skill, in name order, with its embedding for model_id (emb NULL if
 * none, or made by another model); display falls back to the name. */
typedef int (*db_skill_fn)(void *ctx, const char *name, const char *display, const unsigned char *emb,
                           size_t emb_len);
int db_scan_skills(db *d, const char *model_id, db_skill_fn fn, void *ctx, jm_err *err);

/* Keyword search over title, skills and description: BM25 with SQLite FTS5, a
 * tsvector with ts_rank_cd on PostgreSQL (both kept up to date by the
 * database itself). Matches any of the terms (each term a word or phrase, e.g.
 * "machine learning"); returns up to `limit` hits, best first, score > 0,
 * higher is better (scores are comparable within one call only).
 * Title, skills and description weigh 5:2:1 (for an attached table: the
 * template's first column, the skills column, the others). Terms are taken
 * literally, never as query syntax; both backends stem English words
 * (Porter, Snowball), PostgreSQL also drops stop words ("and", "the").
 * Blank terms are ignored (none left: no hits); a term that is not valid
 * UTF-8 or limit < 1 is JM_EINVAL. *out is malloc'd: db_hits_free. */
typedef struct db_hit {
    char *id;
    double score;
} db_hit;
int db_keyword_search(db *d, const char *const *terms, int n, int limit, db_hit **out, int *nout, jm_err *err);
void db_hits_free(db_hit *h, int n);

/* Database size in bytes (file size for SQLite, pg_database_size for PostgreSQL). */
int db_size(db *d, int64_t *out, jm_err *err);

/* About how many jobs the source holds, cheaply: a size hint for a bulk
 * load, not a count (SQLite counts them, from the smallest index;
 * PostgreSQL gives the planner's estimate, 0 for a table never analysed). */
int db_jobs_estimate(db *d, int64_t *out, jm_err *err);

/* ---------- helpers shared by both backends (db.c) ---------- */

/* Mask the password of a postgres URL into buf ("postgresql://u:***@h/db"). */
void db_mask_url(const char *url, char *buf, size_t cap);

/* Normalise a skill name for matching and for the skills table key: NFC,
 * trimmed, inner whitespace collapsed to one space, case-folded. Returns a
 * malloc'd string, or NULL when nothing is left. */
char *db_skill_norm(const char *name);

/* Parse a skills value as stored by a job board: a JSON array of strings or of
 * {"name", "required"} objects, a PostgreSQL array literal {a,b}, or a
 * comma/semicolon-separated list. Fills *out (malloc'd, free each name and
 * the array) and *n. Never fails on odd input: it yields what it can. */
void db_parse_skills(const char *value, db_skill **out, int *n);

/* Serialise skills as the JSON the jobs.skills column holds (malloc'd), and
 * "a, b, c" for skill_names (malloc'd). */
char *db_skills_json(const db_skill *s, int n);
char *db_skills_joined(const db_skill *s, int n);

/* Little-endian float32 bytes <-> floats (dim values). */
void db_vec_to_le(const float *v, int dim, unsigned char *out);
void db_vec_from_le(const unsigned char *in, int dim, float *out);

#endif
