/* db_int.h - private to the db module: the backend table that db.c dispatches
 * through, and helpers both backends share. Not part of the public API. */
#ifndef JM_DB_INT_H
#define JM_DB_INT_H

#include "db.h"

typedef struct db_ops {
    void (*close)(db *d);
    int (*migrate)(db *d, jm_err *err);
    int (*meta_get)(db *d, const char *key, char **out, jm_err *err);
    int (*meta_set)(db *d, const char *key, const char *value, jm_err *err);
    int (*ping)(db *d, jm_err *err);
    /* Does `table` exist, and which of cols[0..n) are its columns? Sets ok[i]. */
    int (*columns_exist)(db *d, const char *table, const char *const *cols, int n, int *table_ok,
                         int *ok, jm_err *err);
    /* ALTER TABLE table ADD COLUMN IF NOT EXISTS for embedding, text_hash, embedding_model. */
    int (*add_embedding_columns)(db *d, const char *table, jm_err *err);
    int (*upsert_jobs)(db *d, const db_job *jobs, int n, int *changed, jm_err *err);
    int (*delete_job)(db *d, const char *id, int *found, jm_err *err);
    int (*counts)(db *d, const char *model_id, db_counts *out, jm_err *err);
    /* exact: claim only the job whose id is `after` (if it needs embedding) */
    int (*claim_jobs)(db *d, const char *model_id, const char *after, int exact, int limit, db_batch *out,
                      jm_err *err);
    int (*commit_jobs)(db *d, const db_batch *b, const float *vecs, int dim, const char *model_id,
                       jm_err *err);
    /* Insert the given normalised names (with display forms) if absent; *added counts new rows. */
    int (*insert_skills)(db *d, char *const *norm, char *const *display, int n, int *added, jm_err *err);
    /* Call fn for the skills value of every job of the source (NULL values skipped). */
    int (*each_job_skills)(db *d, int (*fn)(void *ctx, const char *value), void *ctx, jm_err *err);
    int (*claim_skills)(db *d, const char *model_id, const char *after, int limit, db_batch *out,
                        jm_err *err);
    int (*commit_skills)(db *d, const db_batch *b, const float *vecs, int dim, const char *model_id,
                         jm_err *err);
    /* Raw embedding bytes of job id (malloc'd into *bytes, *len; NULL if none) and its model. */
    int (*get_embedding)(db *d, const char *id, unsigned char **bytes, size_t *len, char **model, jm_err *err);
    void (*abort)(db *d);
    int (*size)(db *d, int64_t *out, jm_err *err);
    int (*jobs_estimate)(db *d, int64_t *out, jm_err *err);

    /* Reading back (db.h). db.c checks the arguments and dispatches. */
    int (*scan_jobs)(db *d, const char *model_id, int flags, db_row_fn fn, void *ctx, jm_err *err);
    int (*changes)(db *d, const char *model_id, int64_t since, db_row_fn fn, void *ctx, int64_t *now,
                   jm_err *err);
    /* Calls fn once with the job's row (embedding not read) if the job exists. */
    int (*get_job)(db *d, const char *id, db_row_fn fn, void *ctx, jm_err *err);
    /* out is zeroed and found[] cleared by db.c; the backend fills what it finds. */
    int (*get_embeddings)(db *d, const char *model_id, const char *const *ids, int n, float *out, int dim,
                          int *found, jm_err *err);
    int (*scan_skills)(db *d, const char *model_id, db_skill_fn fn, void *ctx, jm_err *err);
    /* terms: n >= 1 non-blank, valid UTF-8 strings; limit >= 1. */
    int (*keyword_search)(db *d, const char *const *terms, int n, int limit, db_hit **out, int *nout,
                          jm_err *err);
    /* Give the attached table src the change-log triggers and the keyword
     * search (one transaction; a no-op when both are there and the search
     * still matches the template). prev is the source before: when it is
     * another attached table, jobmatch's triggers and search objects are
     * removed from it. */
    int (*install_source)(db *d, const db_source *src, const db_source *prev, jm_err *err);
} db_ops;

struct db {
    const db_ops *ops;
    const char *kind;
    char display_url[1024];
    db_source src;  /* loaded from meta after migration; refreshed by attach */
    void *impl;     /* backend state */
};

/* Backends' constructors: connect/open, fill d->impl and d->ops. */
int db_sqlite_open(db *d, const char *path, jm_err *err);
int db_pg_open(db *d, const char *conninfo, jm_err *err);

/* A parsed job text template: pieces alternate literal text and column names. */
typedef struct db_piece {
    int is_col;
    char *text; /* literal text, or the column name */
} db_piece;

/* Parse "{col} literal {col2}" into pieces. Returns JM_EFORMAT for an
 * unterminated or empty "{}" or a column name that is not [A-Za-z_][A-Za-z0-9_]*.
 * "{{" and "}}" stand for literal braces. Free with db_pieces_free. */
int db_template_parse(const char *tpl, db_piece **out, int *n, jm_err *err);
void db_pieces_free(db_piece *p, int n);

/* Quote an identifier for SQL ("name" with inner quotes doubled) into buf. */
int db_quote_ident(const char *name, char *buf, size_t cap, jm_err *err);

/* A growable string for building SQL. */
typedef struct db_str {
    char *s;
    size_t len, cap;
    int oom;
} db_str;
void db_str_add(db_str *b, const char *text);
void db_str_addf(db_str *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void db_str_free(db_str *b);

/* ---------- reading back: shared by both backends ---------- */

/* Rows per query when a backend pages through a table (PostgreSQL keyset
 * pages): bounds the memory of a scan, whatever the table's size. */
#define DB_PAGE_ROWS 2000

/* Hand a row to the caller: parses `skills` (any form db_parse_skills takes,
 * NULL for none) into r->job.skills for the duration of the call and frees
 * it afterwards; with mode & DB_ROWS_RAW_SKILLS, hands it over unparsed as
 * r->skills_raw. The other fields of r point into the backend's result.
 * mode & DB_ROWS_CHANGES: rows of db_changes (the backends' C_PRESENT). */
#define DB_ROWS_CHANGES 1
#define DB_ROWS_RAW_SKILLS 2
int db_row_emit(db_row *r, const char *skills, int mode, db_row_fn fn, void *ctx);

/* The keyword search of a source: which of its columns are indexed and how
 * each is weighted. jobmatch's own table: title 'A', skill_names 'B',
 * description 'C'. An attached table: the template's columns in order (each
 * once, at most DB_SEARCH_MAXCOLS), the first 'A', the skills column 'B',
 * the others 'C'. Scores weigh A:B:C as 5:2:1 on both backends (FTS5 bm25
 * column weights; ts_rank_cd's default weights 1.0, 0.4, 0.2). */
#define DB_SEARCH_MAXCOLS 32
typedef struct db_search {
    int ncols;
    char col[DB_SEARCH_MAXCOLS][128];
    char weight[DB_SEARCH_MAXCOLS];
    char spec[DB_SEARCH_MAXCOLS * 132 + 300]; /* "table|id|A:col,C:col": recorded in meta */
} db_search;
int db_search_of(const db_source *src, db_search *out, jm_err *err);
double db_search_weight(char w); /* 'A' 5, 'B' 2, else 1 */

/* Grow a hit array (zeroed slots) by doubling; JM_ENOMEM on failure. */
int db_hits_grow(db_hit **h, int *cap);

/* Valid UTF-8 (no NUL, no overlongs or surrogates)? */
int db_utf8_valid(const char *s);

/* Lower-case hex SHA-256 of len bytes into hex[65]. */
void db_sha256_hex(const void *data, size_t len, char hex[65]);

/* Current UTC time as ISO 8601 with milliseconds, "2026-11-24T03:17:11.123Z". */
void db_now_iso(char buf[32]);

#endif
