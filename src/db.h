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
 * Schema (version 1), created by db_migrate in one transaction:
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

#define DB_SCHEMA_VERSION 1

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
 * table and every column named (id, text columns, skills) must exist. The
 * user's rows are not copied or rewritten. text_cols: comma-separated; the
 * template becomes "{c1}. {c2}. ..." unless template_ is non-NULL. */
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

/* Write the batch's embeddings (vecs[n * dim]), each with the hash of the very
 * text it came from and model_id, and commit. Frees nothing: call db_batch_free. */
int db_commit_jobs(db *d, const db_batch *b, const float *vecs, int dim, const char *model_id,
                   jm_err *err);

/* Skills: the same claim/commit cycle over skills without a current embedding.
 * db_sync_skills first adds every distinct (normalised) skill named by the
 * source's jobs to the skills table; *added (optional) counts new ones. */
int db_sync_skills(db *d, int *added, jm_err *err);
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

/* Database size in bytes (file size for SQLite, pg_database_size for PostgreSQL). */
int db_size(db *d, int64_t *out, jm_err *err);

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
