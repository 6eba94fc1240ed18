/* db_sqlite.c - the SQLite backend of the job store (see db.h for the contract).
 *
 * One connection per db handle, WAL journal so readers run beside the writer,
 * a busy timeout so concurrent processes wait for the write lock instead of
 * failing. The SQL function jm_sha256(text) gives the lower-case hex SHA-256
 * of its UTF-8 argument, so staleness is decided inside the database exactly
 * as on PostgreSQL. It exists only on our connections: the triggers of
 * schema version 2 (change log, keyword search), which also run in other
 * programs writing to an attached table, use built-in SQL and FTS5 only. */
#include <cjson/cJSON.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "db_int.h"

typedef struct sq {
    sqlite3 *h;
    char path[4096];
} sq;

#define H(d) (((sq *)(d)->impl)->h)

static int sq_fail(db *d, jm_err *err, const char *what)
{
    return jm_fail(err, JM_EIO, "%s: %s: %s", d->display_url, what, sqlite3_errmsg(H(d)));
}

static int exec(db *d, const char *sql, jm_err *err)
{
    char *msg = NULL;
    if (sqlite3_exec(H(d), sql, NULL, NULL, &msg) != SQLITE_OK) {
        int rc = jm_fail(err, JM_EIO, "%s: %s", d->display_url, msg ? msg : "error");
        sqlite3_free(msg);
        return rc;
    }
    return JM_OK;
}

static int prepare(db *d, const char *sql, sqlite3_stmt **st, jm_err *err)
{
    if (sqlite3_prepare_v2(H(d), sql, -1, st, NULL) != SQLITE_OK)
        return sq_fail(d, err, "prepare");
    return JM_OK;
}

static void fn_sha256(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    (void)argc;
    const unsigned char *t = sqlite3_value_text(argv[0]);
    int n = sqlite3_value_bytes(argv[0]);
    char hex[65];
    db_sha256_hex(t ? (const void *)t : "", t ? (size_t)n : 0, hex);
    sqlite3_result_text(ctx, hex, 64, SQLITE_TRANSIENT);
}

static void sq_close(db *d)
{
    sq *s = d->impl;
    if (!s)
        return;
    sqlite3_close_v2(s->h);
    free(s);
    d->impl = NULL;
}

static void sq_abort(db *d)
{
    if (d->impl && !sqlite3_get_autocommit(H(d)))
        sqlite3_exec(H(d), "ROLLBACK", NULL, NULL, NULL);
}

/* ---------- meta and migrations ---------- */

static int sq_meta_get(db *d, const char *key, char **out, jm_err *err)
{
    sqlite3_stmt *st;
    *out = NULL;
    int rc = prepare(d, "SELECT value FROM meta WHERE key = ?1", &st, err);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    int s = sqlite3_step(st);
    if (s == SQLITE_ROW) {
        const char *v = (const char *)sqlite3_column_text(st, 0);
        *out = strdup(v ? v : "");
        if (!*out)
            rc = jm_fail(err, JM_ENOMEM, "out of memory");
    } else if (s != SQLITE_DONE) {
        rc = sq_fail(d, err, "reading meta");
    }
    sqlite3_finalize(st);
    return rc;
}

static int sq_meta_set(db *d, const char *key, const char *value, jm_err *err)
{
    sqlite3_stmt *st;
    int rc = prepare(d, "INSERT INTO meta(key, value) VALUES (?1, ?2) "
                        "ON CONFLICT(key) DO UPDATE SET value = excluded.value", &st, err);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, value, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = sq_fail(d, err, "writing meta");
    sqlite3_finalize(st);
    return rc;
}

/* Migration n takes the schema from version n-1 to n. */
static int migrate1(db *d, jm_err *err)
{
    /* the jobs, skills and meta tables */
    return exec(d,
                "CREATE TABLE IF NOT EXISTS jobs ("
                " id TEXT PRIMARY KEY NOT NULL,"
                " title TEXT, company TEXT, location TEXT, remote INTEGER,"
                " salary_min REAL, salary_max REAL, currency TEXT, employment_type TEXT, seniority TEXT,"
                " description TEXT, skills TEXT, skill_names TEXT,"
                " posted_at TEXT, updated_at TEXT,"
                " text_hash TEXT, embedding BLOB, embedding_model TEXT);"
                "CREATE TABLE IF NOT EXISTS skills ("
                " name TEXT PRIMARY KEY NOT NULL, display TEXT, embedding BLOB, embedding_model TEXT);",
                err);
}

static int install_log(db *d, const char *table, const char *id_col, jm_err *err);
static int install_search(db *d, const db_source *src, jm_err *err);

static int migrate2(db *d, jm_err *err)
{
    /* the change log and keyword search, on jobs and on an attached table */
    static const db_source own = {.table = "jobs", .id_col = "id"};
    int rc;
    if ((rc = exec(d,
                   "CREATE TABLE IF NOT EXISTS job_changes ("
                   " rev INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, deleted INTEGER NOT NULL)",
                   err)) ||
        (rc = install_log(d, "jobs", "id", err)) || (rc = install_search(d, &own, err)))
        return rc;
    /* A table attached under version 1 gets the same, if it still can: a
     * table that is gone or no longer fits the template must not keep the
     * store from opening (attach again to set it up). */
    db_source src;
    if ((rc = db_source_get(d, &src, err)) || !src.attached)
        return rc;
    if ((rc = exec(d, "SAVEPOINT jm_attached", err)))
        return rc;
    jm_err ignored;
    if (install_log(d, src.table, src.id_col, &ignored) || install_search(d, &src, &ignored))
        sqlite3_exec(H(d), "ROLLBACK TO jm_attached", NULL, NULL, NULL);
    return exec(d, "RELEASE jm_attached", err);
}

static int (*const migrations[])(db *d, jm_err *err) = {migrate1, migrate2};
_Static_assert(sizeof migrations / sizeof migrations[0] == DB_SCHEMA_VERSION, "one migration per schema version");

/* The schema version in meta, read without the write lock; 0 when there is
 * no meta table yet (or no version in it). */
static int sq_schema_version(db *d, int *have, jm_err *err)
{
    sqlite3_stmt *st;
    *have = 0;
    int rc = prepare(d, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'", &st, err);
    if (rc)
        return rc;
    int s = sqlite3_step(st);
    sqlite3_finalize(st);
    if (s == SQLITE_DONE)
        return JM_OK;
    if (s != SQLITE_ROW)
        return sq_fail(d, err, "reading the schema");
    char *v = NULL;
    if ((rc = sq_meta_get(d, "schema_version", &v, err)))
        return rc;
    *have = v ? atoi(v) : 0;
    free(v);
    return JM_OK;
}

static int sq_migrate(db *d, jm_err *err)
{
    /* A store already at this version is left alone, without taking the
     * write lock: `embed` holds it from each claim to its commit, so asking
     * for it would make `status`, `recommend` or `serve` wait for the whole
     * run (SQLite's busy handler is not fair). Inside this connection's
     * own transaction (an open claim) it is refused below, as before. */
    int cur = 0;
    int rc = sq_schema_version(d, &cur, err);
    if (rc)
        return rc;
    if (cur == DB_SCHEMA_VERSION && sqlite3_get_autocommit(H(d)))
        return JM_OK;
    if ((rc = exec(d, "BEGIN IMMEDIATE", err)))
        return rc;
    char *v = NULL;
    if ((rc = exec(d, "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY NOT NULL, value TEXT)", err)) ||
        (rc = sq_meta_get(d, "schema_version", &v, err)))
        goto fail;
    int have = v ? atoi(v) : 0;
    free(v);
    if (have > DB_SCHEMA_VERSION) {
        rc = jm_fail(err, JM_EFORMAT, "%s: schema version %d is newer than this jobmatch (%d)", d->display_url,
                     have, DB_SCHEMA_VERSION);
        goto fail;
    }
    for (int i = have; i < DB_SCHEMA_VERSION; i++)
        if ((rc = migrations[i](d, err)))
            goto fail;
    if (have < DB_SCHEMA_VERSION) {
        char num[16];
        snprintf(num, sizeof num, "%d", DB_SCHEMA_VERSION);
        if ((rc = sq_meta_set(d, "schema_version", num, err)))
            goto fail;
    }
    return exec(d, "COMMIT", err);
fail:
    sq_abort(d);
    return rc;
}

static int sq_ping(db *d, jm_err *err) { return exec(d, "SELECT 1", err); }

static void bind_text_or_null(sqlite3_stmt *st, int i, const char *v)
{
    if (v)
        sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, i);
}

static void bind_real_or_null(sqlite3_stmt *st, int i, double v)
{
    if (v == v)
        sqlite3_bind_double(st, i, v);
    else
        sqlite3_bind_null(st, i);
}

/* ---------- attach ---------- */

static int sq_columns_exist(db *d, const char *table, const char *const *cols, int n, int *table_ok, int *ok,
                            jm_err *err)
{
    sqlite3_stmt *st;
    *table_ok = 0;
    for (int i = 0; i < n; i++)
        ok[i] = 0;
    int rc = prepare(d, "SELECT name FROM pragma_table_info(?1)", &st, err);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
    int s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(st, 0);
        *table_ok = 1;
        for (int i = 0; i < n; i++)
            if (name && !strcmp(name, cols[i]))
                ok[i] = 1;
    }
    if (s != SQLITE_DONE)
        rc = sq_fail(d, err, "reading table columns");
    sqlite3_finalize(st);
    return rc;
}

static int sq_add_embedding_columns(db *d, const char *table, jm_err *err)
{
    static const char *cols[3] = {"embedding", "text_hash", "embedding_model"};
    static const char *types[3] = {"BLOB", "TEXT", "TEXT"};
    int ok[3], tok, rc = sq_columns_exist(d, table, cols, 3, &tok, ok, err);
    if (rc)
        return rc;
    char qt[300];
    if ((rc = db_quote_ident(table, qt, sizeof qt, err)))
        return rc;
    for (int i = 0; i < 3; i++) {
        if (ok[i])
            continue; /* SQLite has no ADD COLUMN IF NOT EXISTS: we checked instead */
        char sql[512];
        snprintf(sql, sizeof sql, "ALTER TABLE %s ADD COLUMN %s %s", qt, cols[i], types[i]);
        if ((rc = exec(d, sql, err)))
            return rc;
    }
    return JM_OK;
}

/* ---------- the job text in SQL ---------- */

/* Append the SQL expression of the source's job text to b; literal pieces
 * become parameters ?first, ?first+1, ... whose values are put in lits. */
typedef struct text_expr {
    db_piece *p;
    int np;
    int first;        /* number of the first literal parameter */
    const char *qual; /* "" or a table alias with its dot ("t.") for the columns */
} text_expr;

static int text_expr_init(db *d, text_expr *t, int first, jm_err *err)
{
    t->first = first;
    t->qual = "";
    return db_template_parse(d->src.template_, &t->p, &t->np, err);
}

static int text_expr_sql(const text_expr *t, db_str *b, jm_err *err)
{
    int k = 0;
    for (int i = 0; i < t->np; i++) {
        if (i)
            db_str_add(b, " || ");
        if (t->p[i].is_col) {
            char q[300];
            int rc = db_quote_ident(t->p[i].text, q, sizeof q, err);
            if (rc)
                return rc;
            db_str_addf(b, "COALESCE(CAST(%s%s AS TEXT), '')", t->qual, q);
        } else {
            db_str_addf(b, "?%d", t->first + k++);
        }
    }
    return JM_OK;
}

static void text_expr_bind(const text_expr *t, sqlite3_stmt *st)
{
    int k = 0;
    for (int i = 0; i < t->np; i++)
        if (!t->p[i].is_col)
            sqlite3_bind_text(st, t->first + k++, t->p[i].text, -1, SQLITE_STATIC);
}

static void text_expr_free(text_expr *t) { db_pieces_free(t->p, t->np); }

/* "FROM table WHERE <pending>" pieces shared by counts and claim. */
static int build_sql(db *d, const char *head, const text_expr *t, const char *tail, char **out, jm_err *err)
{
    db_str b = {0};
    char qt[300], qid[300];
    int rc;
    if ((rc = db_quote_ident(d->src.table, qt, sizeof qt, err)) ||
        (rc = db_quote_ident(d->src.id_col, qid, sizeof qid, err)))
        return rc;
    /* head and tail may contain %1$s = table, %2$s = id column, %3$s = text */
    db_str text = {0};
    if ((rc = text_expr_sql(t, &text, err))) {
        db_str_free(&text);
        return rc;
    }
    const char *parts[2] = {head, tail};
    for (int k = 0; k < 2; k++)
        for (const char *s = parts[k]; *s; s++) {
            if (s[0] == '%' && s[1] >= '1' && s[1] <= '3' && s[2] == '$' && s[3] == 's') {
                db_str_add(&b, s[1] == '1' ? qt : s[1] == '2' ? qid : text.s);
                s += 3;
            } else {
                char c[2] = {*s, 0};
                db_str_add(&b, c);
            }
        }
    db_str_free(&text);
    if (b.oom) {
        db_str_free(&b);
        return jm_fail(err, JM_ENOMEM, "out of memory");
    }
    *out = b.s;
    return JM_OK;
}

#define PENDING "embedding IS NULL OR embedding_model IS NOT ?1 OR text_hash IS NOT jm_sha256(%3$s)"

static int sq_counts(db *d, const char *model_id, db_counts *out, jm_err *err)
{
    text_expr t;
    int rc = text_expr_init(d, &t, 2, err);
    if (rc)
        return rc;
    char *sql = NULL;
    rc = build_sql(d,
                   "SELECT count(*), coalesce(sum(embedding IS NULL), 0), "
                   "coalesce(sum(embedding IS NOT NULL AND (embedding_model IS NOT ?1 OR "
                   "text_hash IS NOT jm_sha256(%3$s))), 0) FROM %1$s",
                   &t, "", &sql, err);
    sqlite3_stmt *st = NULL;
    if (rc == JM_OK && (rc = prepare(d, sql, &st, err)) == JM_OK) {
        sqlite3_bind_text(st, 1, model_id, -1, SQLITE_STATIC);
        text_expr_bind(&t, st);
        if (sqlite3_step(st) == SQLITE_ROW) {
            out->jobs = sqlite3_column_int64(st, 0);
            out->missing = sqlite3_column_int64(st, 1);
            out->stale = sqlite3_column_int64(st, 2);
            out->embedded = out->jobs - out->missing - out->stale;
        } else {
            rc = sq_fail(d, err, "counting jobs");
        }
        sqlite3_finalize(st);
    }
    free(sql);
    text_expr_free(&t);
    if (rc)
        return rc;
    if ((rc = prepare(d, "SELECT count(*), coalesce(sum(embedding IS NULL OR embedding_model IS NOT ?1), 0) FROM skills",
                      &st, err)))
        return rc;
    sqlite3_bind_text(st, 1, model_id, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW) {
        out->skills = sqlite3_column_int64(st, 0);
        out->skills_pending = sqlite3_column_int64(st, 1);
    } else {
        rc = sq_fail(d, err, "counting skills");
    }
    sqlite3_finalize(st);
    return rc;
}

/* Collect rows of (id, text) into a batch. */
static int fill_batch(db *d, sqlite3_stmt *st, int limit, db_batch *out, jm_err *err)
{
    out->ids = calloc((size_t)limit, sizeof(char *));
    out->texts = calloc((size_t)limit, sizeof(char *));
    if (!out->ids || !out->texts)
        return jm_fail(err, JM_ENOMEM, "out of memory");
    int s;
    while (out->n < limit && (s = sqlite3_step(st)) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(st, 0);
        const char *tx = (const char *)sqlite3_column_text(st, 1);
        out->ids[out->n] = strdup(id ? id : "");
        out->texts[out->n] = strdup(tx ? tx : "");
        out->n++;
        if (!out->ids[out->n - 1] || !out->texts[out->n - 1])
            return jm_fail(err, JM_ENOMEM, "out of memory");
    }
    if (out->n < limit && s != SQLITE_DONE)
        return sq_fail(d, err, "reading pending rows");
    return JM_OK;
}

static int sq_claim_jobs(db *d, const char *model_id, const char *after, int exact, int limit, db_batch *out,
                         jm_err *err)
{
    text_expr t;
    int rc = text_expr_init(d, &t, 4, err);
    if (rc)
        return rc;
    char *sql = NULL;
    sqlite3_stmt *st = NULL;
    /* Two forms rather than "?3 IS NULL OR id > ?3", which would keep SQLite
     * from seeking the primary key to the cursor. */
    rc = build_sql(d, exact ? "SELECT CAST(%2$s AS TEXT), %3$s FROM %1$s WHERE %2$s = ?3 AND (" PENDING ")"
                              " LIMIT ?2"
                      : after ? "SELECT CAST(%2$s AS TEXT), %3$s FROM %1$s WHERE %2$s > ?3 AND (" PENDING ")"
                              " ORDER BY %2$s LIMIT ?2"
                            : "SELECT CAST(%2$s AS TEXT), %3$s FROM %1$s WHERE (?3 IS NULL) AND (" PENDING ")"
                              " ORDER BY %2$s LIMIT ?2",
                   &t, "", &sql, err);
    /* The write lock is taken now, so that the rows read are the rows written. */
    if (rc == JM_OK)
        rc = exec(d, "BEGIN IMMEDIATE", err);
    if (rc == JM_OK && (rc = prepare(d, sql, &st, err)) == JM_OK) {
        sqlite3_bind_text(st, 1, model_id, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 2, limit);
        bind_text_or_null(st, 3, after);
        text_expr_bind(&t, st);
        rc = fill_batch(d, st, limit, out, err);
        sqlite3_finalize(st);
    }
    free(sql);
    text_expr_free(&t);
    if (rc || out->n == 0) {
        sq_abort(d);
        if (rc)
            db_batch_free(out);
    }
    return rc;
}

static int commit_vectors(db *d, const char *sql, const text_expr *t, const db_batch *b, const float *vecs,
                          int dim, const char *model_id, jm_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = prepare(d, sql, &st, err);
    unsigned char *blob = malloc((size_t)dim * 4);
    if (!blob)
        rc = rc ? rc : jm_fail(err, JM_ENOMEM, "out of memory");
    for (int i = 0; rc == JM_OK && i < b->n; i++) {
        db_vec_to_le(vecs + (size_t)i * dim, dim, blob);
        sqlite3_reset(st);
        sqlite3_bind_blob(st, 1, blob, dim * 4, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, model_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, b->ids[i], -1, SQLITE_STATIC);
        if (t)
            text_expr_bind(t, st);
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = sq_fail(d, err, "writing embeddings");
    }
    free(blob);
    sqlite3_finalize(st);
    if (rc == JM_OK)
        rc = exec(d, "COMMIT", err);
    if (rc)
        sq_abort(d);
    return rc;
}

static int sq_commit_jobs(db *d, const db_batch *b, const float *vecs, int dim, const char *model_id, jm_err *err)
{
    if (sqlite3_get_autocommit(H(d)))
        return jm_fail(err, JM_EINVAL, "no claimed batch to commit");
    text_expr t;
    int rc = text_expr_init(d, &t, 4, err);
    if (rc) {
        sq_abort(d);
        return rc;
    }
    char *sql = NULL;
    rc = build_sql(d, "UPDATE %1$s SET embedding = ?1, embedding_model = ?2, text_hash = jm_sha256(%3$s) "
                      "WHERE %2$s = ?3", &t, "", &sql, err);
    if (rc == JM_OK)
        rc = commit_vectors(d, sql, &t, b, vecs, dim, model_id, err);
    else
        sq_abort(d);
    free(sql);
    text_expr_free(&t);
    return rc;
}

/* ---------- skills ---------- */

static int sq_insert_skills(db *d, char *const *norm, char *const *display, int n, int *added, jm_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = exec(d, "BEGIN IMMEDIATE", err);
    if (rc)
        return rc;
    if ((rc = prepare(d, "INSERT INTO skills(name, display) VALUES (?1, ?2) ON CONFLICT(name) DO NOTHING", &st, err))) {
        sq_abort(d);
        return rc;
    }
    int count = 0;
    for (int i = 0; rc == JM_OK && i < n; i++) {
        sqlite3_reset(st);
        sqlite3_bind_text(st, 1, norm[i], -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, display[i], -1, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = sq_fail(d, err, "inserting skills");
        else
            count += sqlite3_changes(H(d));
    }
    sqlite3_finalize(st);
    if (rc == JM_OK)
        rc = exec(d, "COMMIT", err);
    if (rc)
        sq_abort(d);
    else if (added)
        *added = count;
    return rc;
}

static int sq_each_job_skills(db *d, int (*fn)(void *, const char *), void *ctx, jm_err *err)
{
    if (!d->src.skills_col[0])
        return JM_OK;
    char q[300], qt[300], sql[1024];
    int rc;
    if ((rc = db_quote_ident(d->src.skills_col, q, sizeof q, err)) ||
        (rc = db_quote_ident(d->src.table, qt, sizeof qt, err)))
        return rc;
    snprintf(sql, sizeof sql, "SELECT CAST(%s AS TEXT) FROM %s WHERE %s IS NOT NULL", q, qt, q);
    sqlite3_stmt *st;
    if ((rc = prepare(d, sql, &st, err)))
        return rc;
    int s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        const char *v = (const char *)sqlite3_column_text(st, 0);
        if (v && (rc = fn(ctx, v)))
            break;
    }
    if (rc == JM_OK && s != SQLITE_DONE)
        rc = sq_fail(d, err, "reading job skills");
    sqlite3_finalize(st);
    return rc;
}

static int sq_claim_skills(db *d, const char *model_id, const char *after, int limit, db_batch *out, jm_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = exec(d, "BEGIN IMMEDIATE", err);
    if (rc)
        return rc;
    rc = prepare(d, after ? "SELECT name, coalesce(display, name) FROM skills "
                            "WHERE name > ?3 AND (embedding IS NULL OR embedding_model IS NOT ?1) ORDER BY name LIMIT ?2"
                          : "SELECT name, coalesce(display, name) FROM skills "
                            "WHERE ?3 IS NULL AND (embedding IS NULL OR embedding_model IS NOT ?1) ORDER BY name LIMIT ?2",
                    &st, err);
    if (rc == JM_OK) {
        sqlite3_bind_text(st, 1, model_id, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 2, limit);
        bind_text_or_null(st, 3, after);
        rc = fill_batch(d, st, limit, out, err);
        sqlite3_finalize(st);
    }
    if (rc || out->n == 0) {
        sq_abort(d);
        if (rc)
            db_batch_free(out);
    }
    return rc;
}

static int sq_commit_skills(db *d, const db_batch *b, const float *vecs, int dim, const char *model_id,
                            jm_err *err)
{
    if (sqlite3_get_autocommit(H(d)))
        return jm_fail(err, JM_EINVAL, "no claimed batch to commit");
    return commit_vectors(d, "UPDATE skills SET embedding = ?1, embedding_model = ?2 WHERE name = ?3", NULL, b, vecs,
                          dim, model_id, err);
}

/* ---------- import ---------- */

static int sq_upsert_jobs(db *d, const db_job *jobs, int n, int *changed, jm_err *err)
{
    static const char *sql =
        "INSERT INTO jobs(id, title, company, location, remote, salary_min, salary_max, currency,"
        " employment_type, seniority, description, skills, skill_names, posted_at, updated_at)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
        " ON CONFLICT(id) DO UPDATE SET title = excluded.title, company = excluded.company,"
        " location = excluded.location, remote = excluded.remote, salary_min = excluded.salary_min,"
        " salary_max = excluded.salary_max, currency = excluded.currency,"
        " employment_type = excluded.employment_type, seniority = excluded.seniority,"
        " description = excluded.description, skills = excluded.skills, skill_names = excluded.skill_names,"
        " posted_at = excluded.posted_at, updated_at = excluded.updated_at"
        " WHERE jobs.title IS NOT excluded.title OR jobs.company IS NOT excluded.company"
        " OR jobs.location IS NOT excluded.location OR jobs.remote IS NOT excluded.remote"
        " OR jobs.salary_min IS NOT excluded.salary_min OR jobs.salary_max IS NOT excluded.salary_max"
        " OR jobs.currency IS NOT excluded.currency OR jobs.employment_type IS NOT excluded.employment_type"
        " OR jobs.seniority IS NOT excluded.seniority OR jobs.description IS NOT excluded.description"
        " OR jobs.skills IS NOT excluded.skills OR jobs.posted_at IS NOT excluded.posted_at";
    sqlite3_stmt *st = NULL;
    int rc = exec(d, "BEGIN IMMEDIATE", err);
    if (rc)
        return rc;
    if ((rc = prepare(d, sql, &st, err))) {
        sq_abort(d);
        return rc;
    }
    char now[32];
    db_now_iso(now);
    int count = 0;
    for (int i = 0; rc == JM_OK && i < n; i++) {
        const db_job *j = &jobs[i];
        char *sj = db_skills_json(j->skills, j->nskills), *sn = db_skills_joined(j->skills, j->nskills);
        if (!sj || !sn) {
            rc = jm_fail(err, JM_ENOMEM, "out of memory");
        } else {
            sqlite3_reset(st);
            sqlite3_bind_text(st, 1, j->id, -1, SQLITE_STATIC);
            bind_text_or_null(st, 2, j->title);
            bind_text_or_null(st, 3, j->company);
            bind_text_or_null(st, 4, j->location);
            if (j->remote < 0)
                sqlite3_bind_null(st, 5);
            else
                sqlite3_bind_int(st, 5, j->remote ? 1 : 0);
            bind_real_or_null(st, 6, j->salary_min);
            bind_real_or_null(st, 7, j->salary_max);
            bind_text_or_null(st, 8, j->currency);
            bind_text_or_null(st, 9, j->employment_type);
            bind_text_or_null(st, 10, j->seniority);
            bind_text_or_null(st, 11, j->description);
            sqlite3_bind_text(st, 12, sj, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 13, sn, -1, SQLITE_STATIC);
            bind_text_or_null(st, 14, j->posted_at);
            sqlite3_bind_text(st, 15, now, -1, SQLITE_STATIC);
            if (sqlite3_step(st) != SQLITE_DONE)
                rc = sq_fail(d, err, "upserting jobs");
            else
                count += sqlite3_changes(H(d));
        }
        free(sj);
        free(sn);
    }
    sqlite3_finalize(st);
    if (rc == JM_OK)
        rc = exec(d, "COMMIT", err);
    if (rc)
        sq_abort(d);
    else if (changed)
        *changed = count;
    return rc;
}

static int sq_delete_job(db *d, const char *id, int *found, jm_err *err)
{
    char qt[300], qid[300], sql[1024];
    int rc;
    if ((rc = db_quote_ident(d->src.table, qt, sizeof qt, err)) ||
        (rc = db_quote_ident(d->src.id_col, qid, sizeof qid, err)))
        return rc;
    snprintf(sql, sizeof sql, "DELETE FROM %s WHERE %s = ?1", qt, qid);
    sqlite3_stmt *st;
    if ((rc = prepare(d, sql, &st, err)))
        return rc;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = sq_fail(d, err, "deleting a job");
    else if (found)
        *found = sqlite3_changes(H(d)) > 0;
    sqlite3_finalize(st);
    return rc;
}

static int sq_get_embedding(db *d, const char *id, unsigned char **bytes, size_t *len, char **model, jm_err *err)
{
    char qt[300], qid[300], sql[1024];
    int rc;
    *bytes = NULL;
    *len = 0;
    *model = NULL;
    if ((rc = db_quote_ident(d->src.table, qt, sizeof qt, err)) ||
        (rc = db_quote_ident(d->src.id_col, qid, sizeof qid, err)))
        return rc;
    snprintf(sql, sizeof sql, "SELECT embedding, embedding_model FROM %s WHERE %s = ?1", qt, qid);
    sqlite3_stmt *st;
    if ((rc = prepare(d, sql, &st, err)))
        return rc;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int s = sqlite3_step(st);
    if (s == SQLITE_ROW) {
        const void *b = sqlite3_column_blob(st, 0);
        int n = sqlite3_column_bytes(st, 0);
        const char *m = (const char *)sqlite3_column_text(st, 1);
        if (b && n > 0) {
            *bytes = malloc((size_t)n);
            *model = strdup(m ? m : "");
            if (!*bytes || !*model) {
                free(*bytes);
                free(*model);
                *bytes = NULL;
                *model = NULL;
                rc = jm_fail(err, JM_ENOMEM, "out of memory");
            } else {
                memcpy(*bytes, b, (size_t)n);
                *len = (size_t)n;
            }
        }
    } else if (s == SQLITE_DONE) {
        rc = jm_fail(err, JM_ENOTFOUND, "no job with id \"%s\"", id);
    } else {
        rc = sq_fail(d, err, "reading an embedding");
    }
    sqlite3_finalize(st);
    return rc;
}

static int sq_size(db *d, int64_t *out, jm_err *err)
{
    (void)err;
    sq *s = d->impl;
    struct stat stt;
    char wal[4200];
    *out = 0;
    if (stat(s->path, &stt) == 0)
        *out += stt.st_size;
    snprintf(wal, sizeof wal, "%s-wal", s->path);
    if (stat(wal, &stt) == 0)
        *out += stt.st_size;
    return JM_OK;
}

static int sq_jobs_estimate(db *d, int64_t *out, jm_err *err)
{
    char qt[300], sql[400];
    sqlite3_stmt *st;
    int rc = db_quote_ident(d->src.table, qt, sizeof qt, err);
    if (rc)
        return rc;
    snprintf(sql, sizeof sql, "SELECT count(*) FROM %s", qt);
    if ((rc = prepare(d, sql, &st, err)))
        return rc;
    if (sqlite3_step(st) == SQLITE_ROW)
        *out = sqlite3_column_int64(st, 0);
    else
        rc = sq_fail(d, err, "counting jobs");
    sqlite3_finalize(st);
    return rc;
}

/* ---------- change log and keyword search (schema version 2) ---------- */

/* The quoted name of one of jobmatch's objects for table T: prefix + T. */
static int objname(char *buf, size_t cap, const char *prefix, const char *table, jm_err *err)
{
    char raw[300];
    snprintf(raw, sizeof raw, "%s%s", prefix, table);
    return db_quote_ident(raw, buf, cap, err);
}

static int exists_in_schema(db *d, const char *type, const char *name, int *out, jm_err *err)
{
    sqlite3_stmt *st;
    int rc = prepare(d, "SELECT count(*) FROM sqlite_master WHERE type = ?1 AND name = ?2", &st, err);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, type, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW)
        *out = sqlite3_column_int(st, 0) > 0;
    else
        rc = sq_fail(d, err, "reading the schema");
    sqlite3_finalize(st);
    return rc;
}

/* The change-log triggers on table T (id column I): every insert, update and
 * delete replaces the id's entry in job_changes by one with a fresh rev
 * (AUTOINCREMENT: a rev is never reused). Only built-in SQL, so that other
 * programs writing to an attached table run them too; no ON CONFLICT clause,
 * which an outer INSERT OR ... / upsert would override. On first install
 * every row of T gets an entry, in id order. */
static int install_log(db *d, const char *table, const char *id_col, jm_err *err)
{
    char raw[300], qt[300], qi[300], tins[300], tupd[300], tdel[300];
    int rc, have = 0;
    snprintf(raw, sizeof raw, "jm_log_ins_%s", table);
    if ((rc = exists_in_schema(d, "trigger", raw, &have, err)) || have)
        return rc;
    if ((rc = db_quote_ident(table, qt, sizeof qt, err)) || (rc = db_quote_ident(id_col, qi, sizeof qi, err)) ||
        (rc = objname(tins, sizeof tins, "jm_log_ins_", table, err)) ||
        (rc = objname(tupd, sizeof tupd, "jm_log_upd_", table, err)) ||
        (rc = objname(tdel, sizeof tdel, "jm_log_del_", table, err)))
        return rc;
    db_str b = {0};
    db_str_addf(&b,
                "DELETE FROM job_changes WHERE id IN (SELECT CAST(%2$s AS TEXT) FROM %1$s);"
                "INSERT OR IGNORE INTO job_changes(id, deleted)"
                " SELECT CAST(%2$s AS TEXT), 0 FROM %1$s WHERE %2$s IS NOT NULL ORDER BY %2$s;",
                qt, qi);
    db_str_addf(&b,
                "CREATE TRIGGER IF NOT EXISTS %3$s AFTER INSERT ON %1$s WHEN NEW.%2$s IS NOT NULL BEGIN"
                " DELETE FROM job_changes WHERE id = CAST(NEW.%2$s AS TEXT);"
                " INSERT INTO job_changes(id, deleted) VALUES (CAST(NEW.%2$s AS TEXT), 0);"
                " END;",
                qt, qi, tins);
    db_str_addf(&b,
                "CREATE TRIGGER IF NOT EXISTS %3$s AFTER UPDATE ON %1$s BEGIN"
                " DELETE FROM job_changes WHERE OLD.%2$s IS NOT NEW.%2$s AND id = CAST(OLD.%2$s AS TEXT);"
                " INSERT INTO job_changes(id, deleted) SELECT CAST(OLD.%2$s AS TEXT), 1"
                "  WHERE OLD.%2$s IS NOT NEW.%2$s AND OLD.%2$s IS NOT NULL;"
                " DELETE FROM job_changes WHERE id = CAST(NEW.%2$s AS TEXT);"
                " INSERT INTO job_changes(id, deleted) SELECT CAST(NEW.%2$s AS TEXT), 0 WHERE NEW.%2$s IS NOT NULL;"
                " END;",
                qt, qi, tupd);
    db_str_addf(&b,
                "CREATE TRIGGER IF NOT EXISTS %3$s AFTER DELETE ON %1$s WHEN OLD.%2$s IS NOT NULL BEGIN"
                " DELETE FROM job_changes WHERE id = CAST(OLD.%2$s AS TEXT);"
                " INSERT INTO job_changes(id, deleted) VALUES (CAST(OLD.%2$s AS TEXT), 1);"
                " END;",
                qt, qi, tdel);
    rc = b.oom ? jm_fail(err, JM_ENOMEM, "out of memory") : exec(d, b.s, err);
    db_str_free(&b);
    return rc;
}

/* Drop jobmatch's triggers (the change log's too when `log`) and search
 * tables from table T. */
static int uninstall(db *d, const char *table, int log, jm_err *err)
{
    static const char *const trig[] = {"jm_search_ins_", "jm_search_upd_", "jm_search_del_",
                                       "jm_log_ins_",    "jm_log_upd_",    "jm_log_del_"};
    db_str b = {0};
    char q[300];
    int rc = JM_OK;
    for (size_t i = 0; rc == JM_OK && i < (log ? 6u : 3u); i++)
        if ((rc = objname(q, sizeof q, trig[i], table, err)) == JM_OK)
            db_str_addf(&b, "DROP TRIGGER IF EXISTS %s;", q);
    if (rc == JM_OK && (rc = objname(q, sizeof q, "jm_fts_", table, err)) == JM_OK)
        db_str_addf(&b, "DROP TABLE IF EXISTS %s;", q);
    if (rc == JM_OK && (rc = objname(q, sizeof q, "jm_search_", table, err)) == JM_OK)
        db_str_addf(&b, "DROP TABLE IF EXISTS %s;", q); /* its triggers go with it */
    if (rc == JM_OK)
        rc = b.oom ? jm_fail(err, JM_ENOMEM, "out of memory") : exec(d, b.s, err);
    db_str_free(&b);
    return rc;
}

/* Keyword search over table T, (re)built from scratch:
 *   jm_search_T (docid INTEGER PRIMARY KEY, id TEXT UNIQUE, c0, c1, ...): the
 *     searched text of each row, as text; its docid is stable, unlike the
 *     implicit rowid of T, which VACUUM may renumber (and which a WITHOUT
 *     ROWID table lacks).
 *   jm_fts_T: FTS5 with jm_search_T as external content, kept in sync by the
 *     usual triggers on jm_search_T (FTS5 removes a row's old terms given its
 *     old values, which jm_search_T holds exactly).
 *   triggers on T maintain jm_search_T: delete-then-insert (no conflict
 *     clause), an UPDATE in place when the id stays, nothing when no searched
 *     column changed (an embedding commit).
 * Porter stemming, as PostgreSQL's 'english' configuration stems. */
static int install_search(db *d, const db_source *src, jm_err *err)
{
    db_search s;
    char qt[300], qi[300], qs[300], qf[300], fts_raw[300], sh_raw[300], tri[300], trd[300], tru[300], tfi[300],
        tfd[300], tfu[300];
    int rc;
    if ((rc = db_search_of(src, &s, err)) || (rc = uninstall(d, src->table, 0, err)))
        return rc;
    snprintf(fts_raw, sizeof fts_raw, "jm_fts_%s", src->table);
    snprintf(sh_raw, sizeof sh_raw, "jm_search_%s", src->table);
    if ((rc = db_quote_ident(src->table, qt, sizeof qt, err)) ||
        (rc = db_quote_ident(src->id_col, qi, sizeof qi, err)) || (rc = db_quote_ident(sh_raw, qs, sizeof qs, err)) ||
        (rc = db_quote_ident(fts_raw, qf, sizeof qf, err)) ||
        (rc = objname(tri, sizeof tri, "jm_search_ins_", src->table, err)) ||
        (rc = objname(tru, sizeof tru, "jm_search_upd_", src->table, err)) ||
        (rc = objname(trd, sizeof trd, "jm_search_del_", src->table, err)) ||
        (rc = objname(tfi, sizeof tfi, "jm_fts_ins_", src->table, err)) ||
        (rc = objname(tfu, sizeof tfu, "jm_fts_upd_", src->table, err)) ||
        (rc = objname(tfd, sizeof tfd, "jm_fts_del_", src->table, err)))
        return rc;
    /* column lists: names c0.. in the search tables, NEW./OLD. values of T */
    db_str cn = {0}, newv = {0}, oldv = {0}, fnew = {0}, fold = {0}, sets = {0}, changed = {0}, cols = {0};
    for (int i = 0; i < s.ncols; i++) {
        char qc[300];
        if ((rc = db_quote_ident(s.col[i], qc, sizeof qc, err)))
            break;
        const char *sep = i ? ", " : "";
        db_str_addf(&cn, "%sc%d", sep, i);
        db_str_addf(&newv, "%sCAST(NEW.%s AS TEXT)", sep, qc);
        db_str_addf(&oldv, "%sCAST(%s AS TEXT)", sep, qc);
        db_str_addf(&fnew, "%sNEW.c%d", sep, i);
        db_str_addf(&fold, "%sOLD.c%d", sep, i);
        db_str_addf(&sets, "%sc%d = CAST(NEW.%s AS TEXT)", sep, i, qc);
        db_str_addf(&changed, " OR OLD.%s IS NOT NEW.%s", qc, qc);
        db_str_addf(&cols, "%s, ", qc);
    }
    db_str b = {0};
    if (rc == JM_OK) {
        db_str_addf(&b, "CREATE TABLE %s (docid INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE", qs);
        for (int i = 0; i < s.ncols; i++)
            db_str_addf(&b, ", c%d TEXT", i);
        db_str_add(&b, ");");
        db_str_addf(&b, "INSERT OR IGNORE INTO %s(id, %s) SELECT CAST(%s AS TEXT), %s FROM %s WHERE %s IS NOT NULL"
                        " ORDER BY %s;",
                    qs, cn.s, qi, oldv.s, qt, qi, qi);
        db_str_addf(&b,
                    "CREATE VIRTUAL TABLE %s USING fts5(%s, content='%s', content_rowid='docid',"
                    " tokenize='porter unicode61 remove_diacritics 2');"
                    "INSERT INTO %s(%s) VALUES ('rebuild');",
                    qf, cn.s, sh_raw, qf, qf);
        db_str_addf(&b,
                    "CREATE TRIGGER %1$s AFTER INSERT ON %2$s BEGIN"
                    " INSERT INTO %3$s(rowid, %4$s) VALUES (NEW.docid, %5$s); END;"
                    "CREATE TRIGGER %6$s AFTER DELETE ON %2$s BEGIN"
                    " INSERT INTO %3$s(%3$s, rowid, %4$s) VALUES ('delete', OLD.docid, %7$s); END;"
                    "CREATE TRIGGER %8$s AFTER UPDATE ON %2$s BEGIN"
                    " INSERT INTO %3$s(%3$s, rowid, %4$s) VALUES ('delete', OLD.docid, %7$s);"
                    " INSERT INTO %3$s(rowid, %4$s) VALUES (NEW.docid, %5$s); END;",
                    tfi, qs, qf, cn.s, fnew.s, tfd, fold.s, tfu);
        db_str_addf(&b,
                    "CREATE TRIGGER %1$s AFTER INSERT ON %2$s WHEN NEW.%3$s IS NOT NULL BEGIN"
                    " DELETE FROM %4$s WHERE id = CAST(NEW.%3$s AS TEXT);"
                    " INSERT INTO %4$s(id, %5$s) VALUES (CAST(NEW.%3$s AS TEXT), %6$s); END;",
                    tri, qt, qi, qs, cn.s, newv.s);
        db_str_addf(&b,
                    "CREATE TRIGGER %1$s AFTER UPDATE OF %7$s%3$s ON %2$s WHEN OLD.%3$s IS NOT NEW.%3$s%8$s BEGIN"
                    " UPDATE %4$s SET %9$s WHERE OLD.%3$s IS NEW.%3$s AND id = CAST(NEW.%3$s AS TEXT);"
                    " DELETE FROM %4$s WHERE OLD.%3$s IS NOT NEW.%3$s"
                    "  AND id IN (CAST(OLD.%3$s AS TEXT), CAST(NEW.%3$s AS TEXT));"
                    " INSERT INTO %4$s(id, %5$s) SELECT CAST(NEW.%3$s AS TEXT), %6$s"
                    "  WHERE OLD.%3$s IS NOT NEW.%3$s AND NEW.%3$s IS NOT NULL; END;",
                    tru, qt, qi, qs, cn.s, newv.s, cols.s, changed.s, sets.s);
        db_str_addf(&b,
                    "CREATE TRIGGER %1$s AFTER DELETE ON %2$s BEGIN"
                    " DELETE FROM %4$s WHERE id = CAST(OLD.%3$s AS TEXT); END;",
                    trd, qt, qi, qs);
    }
    int oom = cn.oom || newv.oom || oldv.oom || fnew.oom || fold.oom || sets.oom || changed.oom || cols.oom || b.oom;
    if (rc == JM_OK)
        rc = oom ? jm_fail(err, JM_ENOMEM, "out of memory") : exec(d, b.s, err);
    if (rc == JM_OK && src->attached)
        rc = sq_meta_set(d, "search_spec", s.spec, err);
    db_str_free(&cn);
    db_str_free(&newv);
    db_str_free(&oldv);
    db_str_free(&fnew);
    db_str_free(&fold);
    db_str_free(&sets);
    db_str_free(&changed);
    db_str_free(&cols);
    db_str_free(&b);
    return rc;
}

static int sq_install_source(db *d, const db_source *src, const db_source *prev, jm_err *err)
{
    int rc = exec(d, "BEGIN IMMEDIATE", err);
    if (rc)
        return rc;
    /* another table, or the same with another id column: start afresh */
    if (prev && prev->attached && (strcmp(prev->table, src->table) || strcmp(prev->id_col, src->id_col)))
        rc = uninstall(d, prev->table, 1, err);
    if (rc == JM_OK)
        rc = install_log(d, src->table, src->id_col, err);
    /* the search is rebuilt only when its columns changed or part of it is
     * missing (a table dropped and made again loses its triggers) */
    db_search s;
    char *spec = NULL, fts_raw[300], trig_raw[300];
    int have = 0, have_trig = 0;
    snprintf(fts_raw, sizeof fts_raw, "jm_fts_%s", src->table);
    snprintf(trig_raw, sizeof trig_raw, "jm_search_ins_%s", src->table);
    if (rc == JM_OK && (rc = db_search_of(src, &s, err)) == JM_OK &&
        (rc = sq_meta_get(d, "search_spec", &spec, err)) == JM_OK &&
        (rc = exists_in_schema(d, "table", fts_raw, &have, err)) == JM_OK &&
        (rc = exists_in_schema(d, "trigger", trig_raw, &have_trig, err)) == JM_OK &&
        !(have && have_trig && spec && !strcmp(spec, s.spec)))
        rc = install_search(d, src, err);
    free(spec);
    if (rc == JM_OK)
        rc = exec(d, "COMMIT", err);
    if (rc)
        sq_abort(d);
    return rc;
}

/* ---------- reading back ---------- */

/* Columns of every read-back query, in this order (sq_row decodes them). */
enum { C_ID, C_TITLE, C_COMPANY, C_LOCATION, C_REMOTE, C_SMIN, C_SMAX, C_CURRENCY, C_EMP, C_SEN, C_DESC,
       C_SKILLS, C_POSTED, C_EMB, C_REV, C_PRESENT, C_NCOLS };

/* Parameters: ?1 model id, ?2 .. ?9 per query, ?10 on the template's literals. */
#define P_TEXT 10

/* Append the columns C_TITLE .. C_EMB of the source row aliased t. The
 * embedding is that of the claim queries' condition, negated: present,
 * made by ?1, with the hash of the current text. */
static int row_cols_sql(db *d, const text_expr *t, int with_emb, db_str *b, jm_err *err)
{
    db_str text = {0};
    int rc = text_expr_sql(t, &text, err);
    if (rc == JM_OK && text.oom)
        rc = jm_fail(err, JM_ENOMEM, "out of memory");
    if (rc) {
        db_str_free(&text);
        return rc;
    }
    if (!d->src.attached) {
        db_str_add(b, "t.title, t.company, t.location, t.remote, t.salary_min, t.salary_max, t.currency,"
                      " t.employment_type, t.seniority, t.description, t.skills, t.posted_at");
    } else {
        char first[300] = "", qs[300] = "";
        for (int i = 0; i < t->np && !first[0]; i++)
            if (t->p[i].is_col && (rc = db_quote_ident(t->p[i].text, first, sizeof first, err)))
                break;
        if (rc == JM_OK && d->src.skills_col[0])
            rc = db_quote_ident(d->src.skills_col, qs, sizeof qs, err);
        if (rc == JM_OK) {
            if (first[0])
                db_str_addf(b, "CAST(t.%s AS TEXT)", first);
            else
                db_str_add(b, "NULL");
            db_str_addf(b, ", NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, %s, ", text.s);
            if (qs[0])
                db_str_addf(b, "CAST(t.%s AS TEXT)", qs);
            else
                db_str_add(b, "NULL");
            db_str_add(b, ", NULL");
        }
    }
    if (with_emb)
        db_str_addf(b,
                    ", CASE WHEN NOT (t.embedding IS NULL OR t.embedding_model IS NOT ?1"
                    " OR t.text_hash IS NOT jm_sha256(%s)) THEN t.embedding END",
                    text.s);
    else
        db_str_add(b, ", NULL");
    db_str_free(&text);
    return rc;
}

/* Build a read-back query: head (the row columns follow it), then tail. */
static int read_sql(db *d, text_expr *t, int with_emb, const char *head, const char *tail, char **out, jm_err *err)
{
    db_str b = {0};
    *out = NULL;
    int rc = text_expr_init(d, t, P_TEXT, err);
    if (rc)
        return rc;
    t->qual = "t.";
    db_str_add(&b, head);
    rc = row_cols_sql(d, t, with_emb, &b, err);
    db_str_add(&b, tail);
    if (rc == JM_OK && b.oom)
        rc = jm_fail(err, JM_ENOMEM, "out of memory");
    if (rc) {
        db_str_free(&b);
        text_expr_free(t);
        t->p = NULL;
        t->np = 0;
        return rc;
    }
    *out = b.s;
    return JM_OK;
}

static const char *col_text(sqlite3_stmt *st, int i) { return (const char *)sqlite3_column_text(st, i); }

/* Hand the current row of st to fn. mode: DB_ROWS_* (with DB_ROWS_CHANGES,
 * C_PRESENT says whether the job still exists). */
static int sq_row(sqlite3_stmt *st, int mode, db_row_fn fn, void *ctx)
{
    db_row r;
    memset(&r, 0, sizeof r);
    db_job_init(&r.job);
    r.job.id = (char *)col_text(st, C_ID);
    r.rev = sqlite3_column_int64(st, C_REV);
    if ((mode & DB_ROWS_CHANGES) && !sqlite3_column_int(st, C_PRESENT)) {
        r.deleted = 1;
        return db_row_emit(&r, NULL, mode, fn, ctx);
    }
    r.job.title = (char *)col_text(st, C_TITLE);
    r.job.company = (char *)col_text(st, C_COMPANY);
    r.job.location = (char *)col_text(st, C_LOCATION);
    if (sqlite3_column_type(st, C_REMOTE) != SQLITE_NULL)
        r.job.remote = sqlite3_column_int(st, C_REMOTE) != 0;
    if (sqlite3_column_type(st, C_SMIN) != SQLITE_NULL)
        r.job.salary_min = sqlite3_column_double(st, C_SMIN);
    if (sqlite3_column_type(st, C_SMAX) != SQLITE_NULL)
        r.job.salary_max = sqlite3_column_double(st, C_SMAX);
    r.job.currency = (char *)col_text(st, C_CURRENCY);
    r.job.employment_type = (char *)col_text(st, C_EMP);
    r.job.seniority = (char *)col_text(st, C_SEN);
    r.job.description = (char *)col_text(st, C_DESC);
    r.job.posted_at = (char *)col_text(st, C_POSTED);
    const char *skills = col_text(st, C_SKILLS);
    if (sqlite3_column_type(st, C_EMB) == SQLITE_BLOB) {
        r.emb = sqlite3_column_blob(st, C_EMB);
        r.emb_len = (size_t)sqlite3_column_bytes(st, C_EMB);
        if (!r.emb_len)
            r.emb = NULL;
    }
    return db_row_emit(&r, skills, mode, fn, ctx);
}

/* Step st to the end, handing each row to fn; fn's nonzero result stops it. */
static int sq_stream(db *d, sqlite3_stmt *st, int mode, db_row_fn fn, void *ctx, const char *what, jm_err *err)
{
    int s, rc = JM_OK;
    while ((s = sqlite3_step(st)) == SQLITE_ROW)
        if ((rc = sq_row(st, mode, fn, ctx)))
            return rc;
    return s == SQLITE_DONE ? JM_OK : sq_fail(d, err, what);
}

/* The join of a source row t to its change-log entry c. */
static int rev_join(db *d, char *buf, size_t cap, jm_err *err)
{
    char qi[300];
    int rc = db_quote_ident(d->src.id_col, qi, sizeof qi, err);
    if (rc == JM_OK)
        snprintf(buf, cap, " LEFT JOIN job_changes AS c ON c.id = CAST(t.%s AS TEXT)", qi);
    return rc;
}

static int sq_scan_jobs(db *d, const char *model_id, int flags, db_row_fn fn, void *ctx, jm_err *err)
{
    char qt[300], qi[300], join[400], head[400], tail[2048];
    int rc;
    if ((rc = db_quote_ident(d->src.table, qt, sizeof qt, err)) ||
        (rc = db_quote_ident(d->src.id_col, qi, sizeof qi, err)) || (rc = rev_join(d, join, sizeof join, err)))
        return rc;
    snprintf(head, sizeof head, "SELECT CAST(t.%s AS TEXT), ", qi);
    snprintf(tail, sizeof tail, ", coalesce(c.rev, 0), 1 FROM %s AS t%s WHERE t.%s IS NOT NULL ORDER BY t.%s", qt,
             join, qi, qi);
    text_expr t;
    char *sql;
    sqlite3_stmt *st = NULL;
    if ((rc = read_sql(d, &t, flags & DB_SCAN_EMBEDDING, head, tail, &sql, err)))
        return rc;
    if ((rc = prepare(d, sql, &st, err)) == JM_OK) {
        sqlite3_bind_text(st, 1, model_id, -1, SQLITE_STATIC);
        text_expr_bind(&t, st);
        rc = sq_stream(d, st, flags & DB_SCAN_RAW_SKILLS ? DB_ROWS_RAW_SKILLS : 0, fn, ctx, "scanning jobs", err);
        sqlite3_finalize(st);
    }
    free(sql);
    text_expr_free(&t);
    return rc;
}

static int sq_changes(db *d, const char *model_id, int64_t since, db_row_fn fn, void *ctx, int64_t *now, jm_err *err)
{
    char qt[300], qi[300], tail[2048];
    sqlite3_stmt *st = NULL;
    int rc;
    if ((rc = db_quote_ident(d->src.table, qt, sizeof qt, err)) ||
        (rc = db_quote_ident(d->src.id_col, qi, sizeof qi, err)))
        return rc;
    /* The counter first; rows past it are left for the next call. SQLite
     * has one writer at a time, so revs become visible in order. */
    if ((rc = prepare(d, "SELECT coalesce(max(rev), 0) FROM job_changes", &st, err)))
        return rc;
    if (sqlite3_step(st) == SQLITE_ROW)
        *now = sqlite3_column_int64(st, 0);
    else
        rc = sq_fail(d, err, "reading the change counter");
    sqlite3_finalize(st);
    if (rc || *now <= since)
        return rc;
    snprintf(tail, sizeof tail,
             ", c.rev, t.%2$s IS NOT NULL FROM job_changes AS c LEFT JOIN %1$s AS t ON t.%2$s = c.id"
             " WHERE c.rev > ?2 AND c.rev <= ?3 ORDER BY c.rev",
             qt, qi);
    text_expr t;
    char *sql;
    if ((rc = read_sql(d, &t, model_id != NULL, "SELECT c.id, ", tail, &sql, err)))
        return rc;
    if ((rc = prepare(d, sql, &st, err)) == JM_OK) {
        sqlite3_bind_text(st, 1, model_id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, since);
        sqlite3_bind_int64(st, 3, *now);
        text_expr_bind(&t, st);
        rc = sq_stream(d, st, DB_ROWS_CHANGES, fn, ctx, "reading changes", err);
        sqlite3_finalize(st);
    }
    free(sql);
    text_expr_free(&t);
    return rc;
}

static int sq_get_job(db *d, const char *id, db_row_fn fn, void *ctx, jm_err *err)
{
    char qt[300], qi[300], join[400], head[400], tail[2048];
    int rc;
    if ((rc = db_quote_ident(d->src.table, qt, sizeof qt, err)) ||
        (rc = db_quote_ident(d->src.id_col, qi, sizeof qi, err)) || (rc = rev_join(d, join, sizeof join, err)))
        return rc;
    snprintf(head, sizeof head, "SELECT CAST(t.%s AS TEXT), ", qi);
    snprintf(tail, sizeof tail, ", coalesce(c.rev, 0), 1 FROM %s AS t%s WHERE t.%s = ?2 LIMIT 1", qt, join, qi);
    text_expr t;
    char *sql;
    sqlite3_stmt *st = NULL;
    if ((rc = read_sql(d, &t, 0, head, tail, &sql, err)))
        return rc;
    if ((rc = prepare(d, sql, &st, err)) == JM_OK) {
        sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
        text_expr_bind(&t, st);
        rc = sq_stream(d, st, 0, fn, ctx, "reading a job", err);
        sqlite3_finalize(st);
    }
    free(sql);
    text_expr_free(&t);
    return rc;
}

/* One query for all ids: they travel as a JSON array (?2), and each row
 * comes back with its index in the array, so repeated ids are all filled. */
static int sq_get_embeddings(db *d, const char *model_id, const char *const *ids, int n, float *out, int dim,
                             int *found, jm_err *err)
{
    cJSON *arr = cJSON_CreateStringArray(ids, n);
    char *json = arr ? cJSON_PrintUnformatted(arr) : NULL;
    cJSON_Delete(arr);
    if (!json)
        return jm_fail(err, JM_ENOMEM, "out of memory");
    char qt[300], qi[300];
    int rc;
    if ((rc = db_quote_ident(d->src.table, qt, sizeof qt, err)) ||
        (rc = db_quote_ident(d->src.id_col, qi, sizeof qi, err))) {
        free(json);
        return rc;
    }
    text_expr t;
    rc = text_expr_init(d, &t, P_TEXT, err);
    t.qual = "t.";
    db_str text = {0}, sql = {0};
    if (rc == JM_OK && (rc = text_expr_sql(&t, &text, err)) == JM_OK)
        db_str_addf(&sql,
                    "SELECT j.key, t.embedding FROM json_each(?2) AS j JOIN %s AS t ON t.%s = j.value"
                    " WHERE NOT (t.embedding IS NULL OR t.embedding_model IS NOT ?1"
                    " OR t.text_hash IS NOT jm_sha256(%s))",
                    qt, qi, text.s);
    if (rc == JM_OK && (text.oom || sql.oom))
        rc = jm_fail(err, JM_ENOMEM, "out of memory");
    sqlite3_stmt *st = NULL;
    if (rc == JM_OK && (rc = prepare(d, sql.s, &st, err)) == JM_OK) {
        sqlite3_bind_text(st, 1, model_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, json, -1, SQLITE_STATIC);
        text_expr_bind(&t, st);
        int s = SQLITE_DONE;
        while (rc == JM_OK && (s = sqlite3_step(st)) == SQLITE_ROW) {
            sqlite3_int64 i = sqlite3_column_int64(st, 0);
            const unsigned char *b = sqlite3_column_blob(st, 1);
            size_t len = (size_t)sqlite3_column_bytes(st, 1);
            if (i < 0 || i >= n)
                continue;
            if (len != (size_t)dim * 4)
                rc = jm_fail(err, JM_EFORMAT, "embedding of job %s has %zu bytes, not %d float32 values", ids[i],
                             len, dim);
            else {
                db_vec_from_le(b, dim, out + (size_t)i * (size_t)dim);
                found[i] = 1;
            }
        }
        if (rc == JM_OK && s != SQLITE_DONE)
            rc = sq_fail(d, err, "reading embeddings");
        sqlite3_finalize(st);
    }
    if (t.p)
        text_expr_free(&t);
    db_str_free(&text);
    db_str_free(&sql);
    free(json);
    return rc;
}

static int sq_scan_skills(db *d, const char *model_id, db_skill_fn fn, void *ctx, jm_err *err)
{
    sqlite3_stmt *st;
    int rc = prepare(d,
                     "SELECT name, coalesce(display, name), CASE WHEN embedding_model = ?1 THEN embedding END"
                     " FROM skills ORDER BY name",
                     &st, err);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, model_id, -1, SQLITE_STATIC);
    int s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        const unsigned char *emb = sqlite3_column_blob(st, 2);
        size_t len = (size_t)sqlite3_column_bytes(st, 2);
        if ((rc = fn(ctx, col_text(st, 0), col_text(st, 1), len ? emb : NULL, len)))
            break;
    }
    if (rc == JM_OK && s != SQLITE_DONE)
        rc = sq_fail(d, err, "reading skills");
    sqlite3_finalize(st);
    return rc;
}

/* FTS5 query: each term one phrase (double quotes doubled inside), OR'd.
 * A phrase is taken literally (no operators, no column filters, no
 * prefix stars), and one without any token matches nothing. */
static char *fts_query(const char *const *terms, int n)
{
    db_str q = {0};
    for (int i = 0; i < n; i++) {
        db_str_add(&q, i ? " OR \"" : "\"");
        for (const char *p = terms[i]; *p; p++)
            db_str_add(&q, *p == '"' ? "\"\"" : (char[2]){*p, 0});
        db_str_add(&q, "\"");
    }
    if (q.oom) {
        db_str_free(&q);
        return NULL;
    }
    return q.s;
}

static int sq_keyword_search(db *d, const char *const *terms, int n, int limit, db_hit **out, int *nout,
                             jm_err *err)
{
    db_search s;
    char qf[300], qs[300], fts_raw[300], sh_raw[300];
    int rc, have = 0;
    if ((rc = db_search_of(&d->src, &s, err)))
        return rc;
    snprintf(fts_raw, sizeof fts_raw, "jm_fts_%s", d->src.table);
    snprintf(sh_raw, sizeof sh_raw, "jm_search_%s", d->src.table);
    if ((rc = exists_in_schema(d, "table", fts_raw, &have, err)))
        return rc;
    if (!have)
        return jm_fail(err, JM_ENOTFOUND, "%s: no keyword search for table %s (attach it again to set it up)",
                       d->display_url, d->src.table);
    if ((rc = db_quote_ident(fts_raw, qf, sizeof qf, err)) || (rc = db_quote_ident(sh_raw, qs, sizeof qs, err)))
        return rc;
    db_str w = {0}, sql = {0};
    for (int i = 0; i < s.ncols; i++)
        db_str_addf(&w, ", %.1f", db_search_weight(s.weight[i]));
    /* bm25() is lower-is-better and negative for a match: -bm25 > 0 */
    db_str_addf(&sql,
                "SELECT s.id, r.score FROM (SELECT rowid AS docid, -bm25(%1$s%2$s) AS score FROM %1$s"
                " WHERE %1$s MATCH ?1 ORDER BY score DESC LIMIT ?2) AS r JOIN %3$s AS s ON s.docid = r.docid"
                " ORDER BY r.score DESC, s.id",
                qf, w.s ? w.s : "", qs);
    char *q = fts_query(terms, n);
    db_hit *hits = NULL;
    sqlite3_stmt *st = NULL;
    int k = 0, cap = 0;
    if (!q || w.oom || sql.oom)
        rc = jm_fail(err, JM_ENOMEM, "out of memory");
    if (rc == JM_OK && (rc = prepare(d, sql.s, &st, err)) == JM_OK) {
        sqlite3_bind_text(st, 1, q, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 2, limit);
        int step = SQLITE_DONE;
        while (rc == JM_OK && k < limit && (step = sqlite3_step(st)) == SQLITE_ROW) {
            if (k == cap && (rc = db_hits_grow(&hits, &cap)))
                break;
            const char *id = col_text(st, 0);
            hits[k].id = strdup(id ? id : "");
            hits[k].score = sqlite3_column_double(st, 1);
            if (!hits[k++].id)
                rc = JM_ENOMEM;
        }
        if (rc == JM_ENOMEM)
            rc = jm_fail(err, JM_ENOMEM, "out of memory");
        if (rc == JM_OK && k < limit && step != SQLITE_DONE)
            rc = sq_fail(d, err, "keyword search");
        sqlite3_finalize(st);
    }
    free(q);
    db_str_free(&w);
    db_str_free(&sql);
    if (rc) {
        db_hits_free(hits, k);
        return rc;
    }
    *out = hits;
    *nout = k;
    return JM_OK;
}

static const db_ops sqlite_ops = {
    .close = sq_close,
    .migrate = sq_migrate,
    .meta_get = sq_meta_get,
    .meta_set = sq_meta_set,
    .ping = sq_ping,
    .columns_exist = sq_columns_exist,
    .add_embedding_columns = sq_add_embedding_columns,
    .upsert_jobs = sq_upsert_jobs,
    .delete_job = sq_delete_job,
    .counts = sq_counts,
    .jobs_estimate = sq_jobs_estimate,
    .claim_jobs = sq_claim_jobs,
    .commit_jobs = sq_commit_jobs,
    .insert_skills = sq_insert_skills,
    .each_job_skills = sq_each_job_skills,
    .claim_skills = sq_claim_skills,
    .commit_skills = sq_commit_skills,
    .get_embedding = sq_get_embedding,
    .abort = sq_abort,
    .size = sq_size,
    .scan_jobs = sq_scan_jobs,
    .changes = sq_changes,
    .get_job = sq_get_job,
    .get_embeddings = sq_get_embeddings,
    .scan_skills = sq_scan_skills,
    .keyword_search = sq_keyword_search,
    .install_source = sq_install_source,
};

int db_sqlite_open(db *d, const char *path, jm_err *err)
{
    sq *s = calloc(1, sizeof *s);
    if (!s)
        return jm_fail(err, JM_ENOMEM, "out of memory");
    snprintf(s->path, sizeof s->path, "%s", path);
    d->impl = s;
    d->ops = &sqlite_ops;
    if (sqlite3_open_v2(path, &s->h, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        int rc = jm_fail(err, JM_EIO, "%s: cannot open: %s", path, s->h ? sqlite3_errmsg(s->h) : "out of memory");
        return rc;
    }
    sqlite3_busy_timeout(s->h, 60000);
    sqlite3_extended_result_codes(s->h, 1);
    /* Switching to WAL can answer SQLITE_BUSY without asking the busy
     * handler while another process is creating and migrating the same new
     * file: wait for it here, as long as the busy timeout would. */
    for (int tries = 0;; tries++) {
        int s2 = sqlite3_exec(s->h, "PRAGMA journal_mode = WAL", NULL, NULL, NULL);
        if (s2 == SQLITE_OK)
            break;
        if ((s2 & 0xff) != SQLITE_BUSY || tries >= 600)
            return sq_fail(d, err, "setting WAL mode");
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    /* No memory-mapped I/O: every page a scan touched would stay in this
     * process's resident set (a 100,000-job store is ~700 MB), which is what a
     * small instance's memory budget is measured by. Reads go through SQLite's
     * small page cache instead (the start-up scan is ~0.4 s slower). */
    int rc;
    if ((rc = exec(d, "PRAGMA synchronous = NORMAL", err)))
        return rc;
    if (sqlite3_create_function(s->h, "jm_sha256", 1, SQLITE_UTF8 | SQLITE_DETERMINISTIC, NULL, fn_sha256, NULL,
                                NULL) != SQLITE_OK)
        return sq_fail(d, err, "registering jm_sha256");
    return JM_OK;
}
