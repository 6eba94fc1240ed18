/* db_sqlite.c - the SQLite backend of the job store (see db.h for the contract).
 *
 * One connection per db handle, WAL journal so readers run beside the writer,
 * a busy timeout so concurrent processes wait for the write lock instead of
 * failing. The SQL function jm_sha256(text) gives the lower-case hex SHA-256
 * of its UTF-8 argument, so staleness is decided inside the database exactly
 * as on PostgreSQL. */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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
static const char *const migrations[] = {
    /* 1: the jobs, skills and meta tables */
    "CREATE TABLE IF NOT EXISTS jobs ("
    " id TEXT PRIMARY KEY NOT NULL,"
    " title TEXT, company TEXT, location TEXT, remote INTEGER,"
    " salary_min REAL, salary_max REAL, currency TEXT, employment_type TEXT, seniority TEXT,"
    " description TEXT, skills TEXT, skill_names TEXT,"
    " posted_at TEXT, updated_at TEXT,"
    " text_hash TEXT, embedding BLOB, embedding_model TEXT);"
    "CREATE TABLE IF NOT EXISTS skills ("
    " name TEXT PRIMARY KEY NOT NULL, display TEXT, embedding BLOB, embedding_model TEXT);",
};

static int sq_migrate(db *d, jm_err *err)
{
    int rc = exec(d, "BEGIN IMMEDIATE", err);
    if (rc)
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
        if ((rc = exec(d, migrations[i], err)))
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
    int first; /* number of the first literal parameter */
} text_expr;

static int text_expr_init(db *d, text_expr *t, int first, jm_err *err)
{
    t->first = first;
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
            db_str_addf(b, "COALESCE(CAST(%s AS TEXT), '')", q);
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

static int sq_claim_jobs(db *d, const char *model_id, const char *after, int limit, db_batch *out, jm_err *err)
{
    text_expr t;
    int rc = text_expr_init(d, &t, 4, err);
    if (rc)
        return rc;
    char *sql = NULL;
    sqlite3_stmt *st = NULL;
    /* Two forms rather than "?3 IS NULL OR id > ?3", which would keep SQLite
     * from seeking the primary key to the cursor. */
    rc = build_sql(d, after ? "SELECT CAST(%2$s AS TEXT), %3$s FROM %1$s WHERE %2$s > ?3 AND (" PENDING ")"
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
    .claim_jobs = sq_claim_jobs,
    .commit_jobs = sq_commit_jobs,
    .insert_skills = sq_insert_skills,
    .each_job_skills = sq_each_job_skills,
    .claim_skills = sq_claim_skills,
    .commit_skills = sq_commit_skills,
    .get_embedding = sq_get_embedding,
    .abort = sq_abort,
    .size = sq_size,
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
    int rc;
    if ((rc = exec(d, "PRAGMA journal_mode = WAL", err)) || (rc = exec(d, "PRAGMA synchronous = NORMAL", err)))
        return rc;
    if (sqlite3_create_function(s->h, "jm_sha256", 1, SQLITE_UTF8 | SQLITE_DETERMINISTIC, NULL, fn_sha256, NULL,
                                NULL) != SQLITE_OK)
        return sq_fail(d, err, "registering jm_sha256");
    return JM_OK;
}
