/* db_pg.c - the PostgreSQL backend of the job store (see db.h for the contract).
 *
 * One libpq connection per db handle. Every statement goes through
 * PQexecParams: values are parameters (embeddings as binary BYTEA), and the
 * only identifiers spliced into SQL are the source's table and columns, which
 * db.c checked against the catalogue (columns_exist) and which are quoted with
 * db_quote_ident. Staleness is decided by the server with its own sha256(), on
 * the same job text expression as the SQLite backend, so both agree on what a
 * job's hash is.
 *
 * Server messages are passed on in one line; the password never is: the
 * connection error is scrubbed of it and everything else names the masked URL.
 *
 * Reading back (scan, changes) goes in keyset pages of DB_PAGE_ROWS with
 * binary results (bytea as raw bytes), so memory is bounded by a page. */
#include <libpq-fe.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db_int.h"

/* Any constant will do: it only has to be the same in every jobmatch process.
 * Advisory locks are per database, so other databases are not held up. */
#define MIGRATE_LOCK_KEY "7431117251"

/* Rows per INSERT statement in db_upsert_jobs (15 parameters each, well under
 * the protocol's 65535). */
#define UPSERT_CHUNK 256

typedef struct pg {
    PGconn *c;
    /* Type of the source's id column (format_type output, e.g. "text",
     * "integer"), for casting the text ids of a batch back in commit. Cached
     * for the table and column in idtype_for. */
    char idtype_for[300];
    char idtype[256];
    char sqlstate[6]; /* SQLSTATE of the last failed statement, "" if none */
} pg;

#define CONN(d) (((pg *)(d)->impl)->c)

/* ---------- messages ---------- */

/* Collapse a libpq message (often several lines, "FATAL:  ...\nDETAIL: ...")
 * into one line in place, without the trailing newline. */
static void one_line(char *s)
{
    char *w = s;
    int space = 0;
    for (char *r = s; *r; r++) {
        if (*r == '\n' || *r == '\r' || *r == '\t' || *r == ' ') {
            space = 1;
            continue;
        }
        if (space && w != s)
            *w++ = ' ';
        space = 0;
        *w++ = *r;
    }
    *w = 0;
}

/* Replace every occurrence of secret in msg (cap bytes) with "***". */
static void scrub(char *msg, size_t cap, const char *secret)
{
    size_t sl = secret ? strlen(secret) : 0;
    if (!sl)
        return;
    char *p = msg;
    while ((p = strstr(p, secret))) {
        char rest[JM_ERRLEN];
        snprintf(rest, sizeof rest, "%s", p + sl);
        snprintf(p, cap - (size_t)(p - msg), "***%s", rest);
        p += strlen(p) < 3 ? strlen(p) : 3; /* past the mask: a secret like "*" must not loop */
    }
}

/* Record the server's (or libpq's) message for a failed statement. */
static int pg_fail(db *d, const PGresult *r, const char *what, jm_err *err)
{
    char msg[JM_ERRLEN];
    const char *m = r ? PQresultErrorMessage(r) : "";
    if (!m || !*m)
        m = PQerrorMessage(CONN(d));
    snprintf(msg, sizeof msg, "%s", m && *m ? m : "unknown error");
    one_line(msg);
    if (PQstatus(CONN(d)) != CONNECTION_OK)
        return jm_fail(err, JM_EIO, "%s: %s: connection lost: %s", d->display_url, what, msg);
    return jm_fail(err, JM_EIO, "%s: %s: %s", d->display_url, what, msg);
}

static void quiet_notice(void *arg, const char *message)
{
    /* NOTICEs such as "relation already exists, skipping" are expected; libpq
     * would print them on stderr. */
    (void)arg;
    (void)message;
}

/* ---------- parameters ---------- */

/* Parameter values for PQexecParams, each an owned copy (NULL = SQL NULL). */
typedef struct pg_args {
    int n, cap;
    char **v;
    int *len, *fmt;
    int oom;
} pg_args;

/* Append a parameter; returns its number ($1 is 1), or 0 when out of memory
 * (remembered in a->oom, reported by run()). binary: raw bytes of len. */
static int arg_add(pg_args *a, const void *data, size_t len, int binary)
{
    if (a->oom || len > (size_t)0x7fffffff) { /* PQexecParams lengths are int */
        a->oom = 1;
        return 0;
    }
    if (a->n == a->cap) {
        int nc = a->cap ? a->cap * 2 : 16;
        char **v = realloc(a->v, sizeof(char *) * (size_t)nc);
        if (v)
            a->v = v;
        int *l = realloc(a->len, sizeof(int) * (size_t)nc);
        if (l)
            a->len = l;
        int *f = realloc(a->fmt, sizeof(int) * (size_t)nc);
        if (f)
            a->fmt = f;
        if (!v || !l || !f) {
            a->oom = 1;
            return 0;
        }
        a->cap = nc;
    }
    char *copy = NULL;
    if (data) {
        copy = malloc(len + 1);
        if (!copy) {
            a->oom = 1;
            return 0;
        }
        memcpy(copy, data, len);
        copy[len] = 0;
    }
    a->v[a->n] = copy;
    a->len[a->n] = (int)len;
    a->fmt[a->n] = binary ? 1 : 0;
    return ++a->n;
}

static int arg_text(pg_args *a, const char *s) { return arg_add(a, s, s ? strlen(s) : 0, 0); }

static void args_free(pg_args *a)
{
    for (int i = 0; i < a->n; i++)
        free(a->v[i]);
    free(a->v);
    free(a->len);
    free(a->fmt);
    memset(a, 0, sizeof *a);
}

/* Append s to b as an element of a PostgreSQL array literal ({"a","b"}):
 * double-quoted, with backslash and quote escaped. */
static void array_elem(db_str *b, const char *s, int first)
{
    db_str_add(b, first ? "\"" : ",\"");
    for (const char *p = s; *p;) {
        size_t span = strcspn(p, "\"\\");
        if (span) {
            char chunk[256];
            size_t k = span < sizeof chunk - 1 ? span : sizeof chunk - 1;
            memcpy(chunk, p, k);
            chunk[k] = 0;
            db_str_add(b, chunk);
            p += k;
            continue;
        }
        db_str_add(b, *p == '"' ? "\\\"" : "\\\\");
        p++;
    }
    db_str_add(b, "\"");
}

/* A text[] parameter holding the n strings. */
static int arg_text_array(pg_args *a, char *const *s, int n)
{
    db_str b = {0};
    db_str_add(&b, "{");
    for (int i = 0; i < n; i++)
        array_elem(&b, s[i], i == 0);
    db_str_add(&b, "}");
    int k = b.oom ? 0 : arg_text(a, b.s);
    if (!k)
        a->oom = 1;
    db_str_free(&b);
    return k;
}

/* ---------- running statements ---------- */

/* Run one statement; results in text form, or binary when bin (bytea comes
 * as raw bytes). On success *out (if non-NULL) holds the result, which the
 * caller PQclear()s; on failure nothing is left to free, and the SQLSTATE is
 * kept in pg.sqlstate. */
static int run_fmt(db *d, const char *what, const char *sql, const pg_args *a, int bin, PGresult **out,
                   jm_err *err)
{
    pg *p = d->impl;
    p->sqlstate[0] = 0;
    if (out)
        *out = NULL;
    if (!sql || (a && a->oom))
        return jm_fail(err, JM_ENOMEM, "out of memory");
    PGresult *r = PQexecParams(p->c, sql, a ? a->n : 0, NULL, a ? (const char *const *)a->v : NULL,
                               a ? a->len : NULL, a ? a->fmt : NULL, bin);
    ExecStatusType s = PQresultStatus(r);
    if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK) {
        const char *st = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
        snprintf(p->sqlstate, sizeof p->sqlstate, "%s", st ? st : "");
        int rc;
        if (r)
            rc = pg_fail(d, r, what, err);
        else if (PQstatus(p->c) != CONNECTION_OK) /* libpq gives no result when the connection is gone */
            rc = jm_fail(err, JM_EIO, "%s: %s: connection lost: %s", d->display_url, what, PQerrorMessage(p->c));
        else
            rc = jm_fail(err, JM_ENOMEM, "%s: %s: out of memory", d->display_url, what);
        PQclear(r);
        return rc;
    }
    if (out)
        *out = r;
    else
        PQclear(r);
    return JM_OK;
}

static int run(db *d, const char *what, const char *sql, const pg_args *a, PGresult **out, jm_err *err)
{
    return run_fmt(d, what, sql, a, 0, out, err);
}

/* After a failed lookup by id: was the id just not valid for the id column's
 * type ("abc" for an integer column)? Then no such row, as in SQLite. */
static int bad_id_syntax(db *d)
{
    return !strcmp(((pg *)d->impl)->sqlstate, "22P02");
}

static int in_tx(db *d)
{
    PGTransactionStatusType t = PQtransactionStatus(CONN(d));
    return t == PQTRANS_INTRANS || t == PQTRANS_INERROR || t == PQTRANS_ACTIVE;
}

static void pg_abort(db *d)
{
    if (d->impl && CONN(d) && in_tx(d))
        PQclear(PQexec(CONN(d), "ROLLBACK"));
}

/* BEGIN, refused while a claimed batch holds the connection's transaction:
 * the work would silently join the batch's transaction (SQLite refuses a
 * nested BEGIN the same way). The batch stays open. */
static int tx_begin(db *d, const char *what, jm_err *err)
{
    if (in_tx(d))
        return jm_fail(err, JM_EINVAL, "%s: %s: a claimed batch is still open (commit or abort it first)",
                       d->display_url, what);
    return run(d, what, "BEGIN", NULL, NULL, err);
}

/* COMMIT. The server answers a COMMIT of a failed transaction with a
 * rollback and says so only in the command tag: that is an error here. */
static int tx_commit(db *d, const char *what, jm_err *err)
{
    PGresult *r;
    int rc = run(d, what, "COMMIT", NULL, &r, err);
    if (rc)
        return rc;
    if (strcmp(PQcmdStatus(r), "COMMIT"))
        rc = jm_fail(err, JM_EIO, "%s: %s: the transaction was rolled back", d->display_url, what);
    PQclear(r);
    return rc;
}

/* Number of rows a command touched (PQcmdTuples), 0 if it does not say. */
static int cmd_rows(PGresult *r)
{
    const char *t = PQcmdTuples(r);
    return t && *t ? atoi(t) : 0;
}

/* ---------- meta and migrations ---------- */

static int pg_meta_get(db *d, const char *key, char **out, jm_err *err)
{
    pg_args a = {0};
    PGresult *r;
    *out = NULL;
    arg_text(&a, key);
    int rc = run(d, "reading meta", "SELECT value FROM meta WHERE key = $1", &a, &r, err);
    args_free(&a);
    if (rc)
        return rc;
    if (PQntuples(r) > 0) {
        *out = strdup(PQgetisnull(r, 0, 0) ? "" : PQgetvalue(r, 0, 0));
        if (!*out)
            rc = jm_fail(err, JM_ENOMEM, "out of memory");
    }
    PQclear(r);
    return rc;
}

static int pg_meta_set(db *d, const char *key, const char *value, jm_err *err)
{
    pg_args a = {0};
    arg_text(&a, key);
    arg_text(&a, value);
    int rc = run(d, "writing meta",
                 "INSERT INTO meta(key, value) VALUES ($1, $2) "
                 "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                 &a, NULL, err);
    args_free(&a);
    return rc;
}

/* Migration n takes the schema from version n-1 to n; each entry is a list of
 * statements (one statement per PQexecParams), ending with NULL. The column
 * types match the SQLite schema: REAL is DOUBLE PRECISION, BLOB is BYTEA,
 * timestamps are ISO 8601 TEXT written by db_now_iso. */
static const char *const migration1[] = {
    "CREATE TABLE IF NOT EXISTS jobs ("
    " id TEXT PRIMARY KEY NOT NULL,"
    " title TEXT, company TEXT, location TEXT, remote BOOLEAN,"
    " salary_min DOUBLE PRECISION, salary_max DOUBLE PRECISION, currency TEXT, employment_type TEXT,"
    " seniority TEXT, description TEXT, skills TEXT, skill_names TEXT,"
    " posted_at TEXT, updated_at TEXT,"
    " text_hash TEXT, embedding BYTEA, embedding_model TEXT)",
    "CREATE TABLE IF NOT EXISTS skills ("
    " name TEXT PRIMARY KEY NOT NULL, display TEXT, embedding BYTEA, embedding_model TEXT)",
    NULL,
};

static int migrate2(db *d, jm_err *err);

/* Each migration: statements, then a function for what needs building. */
static const struct {
    const char *const *stmts;
    int (*fn)(db *d, jm_err *err);
} migrations[] = {{migration1, NULL}, {NULL, migrate2}};
_Static_assert(sizeof migrations / sizeof migrations[0] == DB_SCHEMA_VERSION, "one migration per schema version");

static int pg_migrate(db *d, jm_err *err)
{
    int rc = tx_begin(d, "migrating", err);
    if (rc)
        return rc;
    char *v = NULL;
    /* Processes starting at once queue here; the second one then finds the
     * schema up to date. The lock ends with the transaction. */
    if ((rc = run(d, "migrating", "SELECT pg_advisory_xact_lock(" MIGRATE_LOCK_KEY ")", NULL, NULL, err)) ||
        (rc = run(d, "migrating", "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY NOT NULL, value TEXT)", NULL,
                  NULL, err)) ||
        (rc = pg_meta_get(d, "schema_version", &v, err)))
        goto fail;
    int have = v ? atoi(v) : 0;
    free(v);
    if (have > DB_SCHEMA_VERSION) {
        rc = jm_fail(err, JM_EFORMAT, "%s: schema version %d is newer than this jobmatch (%d)", d->display_url, have,
                     DB_SCHEMA_VERSION);
        goto fail;
    }
    for (int i = have; i < DB_SCHEMA_VERSION; i++) {
        for (const char *const *s = migrations[i].stmts; s && *s; s++)
            if ((rc = run(d, "migrating", *s, NULL, NULL, err)))
                goto fail;
        if (migrations[i].fn && (rc = migrations[i].fn(d, err)))
            goto fail;
    }
    if (have < DB_SCHEMA_VERSION) {
        char num[16];
        snprintf(num, sizeof num, "%d", DB_SCHEMA_VERSION);
        if ((rc = pg_meta_set(d, "schema_version", num, err)))
            goto fail;
    }
    if ((rc = tx_commit(d, "migrating", err)) == JM_OK)
        return JM_OK;
fail:
    pg_abort(d);
    return rc;
}

/* A dropped connection is re-established here (PQreset), not behind the
 * caller's back in the middle of other work: an open batch is lost with it. */
static int pg_ping(db *d, jm_err *err)
{
    PGconn *c = CONN(d);
    if (PQstatus(c) != CONNECTION_OK)
        PQreset(c);
    PGresult *r = PQexec(c, "SELECT 1");
    if (PQresultStatus(r) != PGRES_TUPLES_OK && PQstatus(c) != CONNECTION_OK) {
        PQclear(r);
        PQreset(c);
        r = PQexec(c, "SELECT 1");
    }
    int rc = PQresultStatus(r) == PGRES_TUPLES_OK ? JM_OK : pg_fail(d, r, "ping", err);
    PQclear(r);
    return rc;
}

/* ---------- attach ---------- */

static int pg_columns_exist(db *d, const char *table, const char *const *cols, int n, int *table_ok, int *ok,
                            jm_err *err)
{
    *table_ok = 0;
    for (int i = 0; i < n; i++)
        ok[i] = 0;
    pg_args a = {0};
    PGresult *r;
    arg_text(&a, table);
    /* to_regclass(quote_ident(name)) resolves the name exactly as the quoted
     * identifier will be in later statements (search_path, exact case). */
    int rc = run(d, "reading table columns",
                 "SELECT a.attname FROM pg_catalog.pg_class c"
                 " LEFT JOIN pg_catalog.pg_attribute a"
                 "  ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped"
                 " WHERE c.oid = pg_catalog.to_regclass(pg_catalog.quote_ident($1))",
                 &a, &r, err);
    args_free(&a);
    if (rc)
        return rc;
    for (int k = 0; k < PQntuples(r); k++) {
        *table_ok = 1;
        if (PQgetisnull(r, k, 0))
            continue;
        const char *name = PQgetvalue(r, k, 0);
        for (int i = 0; i < n; i++)
            if (!strcmp(name, cols[i]))
                ok[i] = 1;
    }
    PQclear(r);
    return JM_OK;
}

static int pg_add_embedding_columns(db *d, const char *table, jm_err *err)
{
    char qt[300], sql[512];
    int rc = db_quote_ident(table, qt, sizeof qt, err);
    if (rc)
        return rc;
    snprintf(sql, sizeof sql,
             "ALTER TABLE %s ADD COLUMN IF NOT EXISTS embedding BYTEA,"
             " ADD COLUMN IF NOT EXISTS text_hash TEXT, ADD COLUMN IF NOT EXISTS embedding_model TEXT",
             qt);
    return run(d, "adding embedding columns", sql, NULL, NULL, err);
}

/* ---------- the job text in SQL ---------- */

/* The source's job text for the row aliased t, as an SQL expression appended
 * to b: literal pieces become text parameters appended to a, columns
 * COALESCE(CAST(t."col" AS TEXT), ''), joined with ||, as in db_sqlite.c. */
static int text_sql(db *d, pg_args *a, db_str *b, jm_err *err)
{
    db_piece *p = NULL;
    int np = 0, rc = db_template_parse(d->src.template_, &p, &np, err);
    if (rc)
        return rc;
    db_str_add(b, "(");
    for (int i = 0; rc == JM_OK && i < np; i++) {
        if (i)
            db_str_add(b, " || ");
        if (p[i].is_col) {
            char q[300];
            if ((rc = db_quote_ident(p[i].text, q, sizeof q, err)) == JM_OK)
                db_str_addf(b, "COALESCE(CAST(t.%s AS TEXT), '')", q);
        } else {
            db_str_addf(b, "CAST($%d AS TEXT)", arg_text(a, p[i].text));
        }
    }
    db_str_add(b, ")");
    db_pieces_free(p, np);
    return rc;
}

/* SHA-256 (lower-case hex) of the UTF-8 bytes of an SQL text expression. */
#define HASH_OPEN "encode(sha256(convert_to("
#define HASH_CLOSE ", 'UTF8')), 'hex')"

/* Quoted table and id column of the source. */
static int source_idents(db *d, char qt[300], char qid[300], jm_err *err)
{
    int rc = db_quote_ident(d->src.table, qt, 300, err);
    return rc ? rc : db_quote_ident(d->src.id_col, qid, 300, err);
}

/* Look up (once per source) the SQL type of the source's id column, so that a
 * batch's text ids can be cast back to it and still use its index. */
static int id_type(db *d, const char **out, jm_err *err)
{
    pg *p = d->impl;
    char key[300];
    snprintf(key, sizeof key, "%s.%s", d->src.table, d->src.id_col);
    if (!strcmp(key, p->idtype_for)) {
        *out = p->idtype;
        return JM_OK;
    }
    pg_args a = {0};
    PGresult *r;
    arg_text(&a, d->src.table);
    arg_text(&a, d->src.id_col);
    int rc = run(d, "reading the id column's type",
                 "SELECT pg_catalog.format_type(a.atttypid, NULL) FROM pg_catalog.pg_attribute a"
                 " WHERE a.attrelid = pg_catalog.to_regclass(pg_catalog.quote_ident($1))"
                 " AND a.attname = $2 AND a.attnum > 0 AND NOT a.attisdropped",
                 &a, &r, err);
    args_free(&a);
    if (rc)
        return rc;
    if (PQntuples(r) != 1 || PQgetisnull(r, 0, 0) || PQgetlength(r, 0, 0) >= (int)sizeof p->idtype) {
        PQclear(r);
        return jm_fail(err, JM_ENOTFOUND, "%s: table \"%s\" has no column \"%s\"", d->display_url, d->src.table,
                       d->src.id_col);
    }
    snprintf(p->idtype, sizeof p->idtype, "%s", PQgetvalue(r, 0, 0));
    snprintf(p->idtype_for, sizeof p->idtype_for, "%s", key);
    PQclear(r);
    *out = p->idtype;
    return JM_OK;
}

static void parse_count(PGresult *r, int row, int col, int64_t *out)
{
    *out = PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

static int pg_jobs_estimate(db *d, int64_t *out, jm_err *err)
{
    char qt[300];
    int rc = db_quote_ident(d->src.table, qt, sizeof qt, err);
    if (rc)
        return rc;
    pg_args a = {0};
    PGresult *r = NULL;
    arg_text(&a, qt);
    rc = run(d, "estimating the job count",
             "SELECT greatest(c.reltuples, 0)::bigint FROM pg_catalog.pg_class c"
             " WHERE c.oid = pg_catalog.to_regclass($1)",
             &a, &r, err);
    args_free(&a);
    if (rc)
        return rc;
    if (PQntuples(r) == 1)
        parse_count(r, 0, 0, out);
    PQclear(r);
    return JM_OK;
}

static int pg_counts(db *d, const char *model_id, db_counts *out, jm_err *err)
{
    char qt[300], qid[300];
    int rc = source_idents(d, qt, qid, err);
    if (rc)
        return rc;
    pg_args a = {0};
    db_str text = {0}, sql = {0};
    arg_text(&a, model_id); /* $1 */
    if ((rc = text_sql(d, &a, &text, err)) == JM_OK && !text.oom)
        db_str_addf(&sql,
                    "SELECT count(*), count(*) FILTER (WHERE t.embedding IS NULL),"
                    " count(*) FILTER (WHERE t.embedding IS NOT NULL AND (t.embedding_model IS DISTINCT FROM $1"
                    " OR t.text_hash IS DISTINCT FROM " HASH_OPEN "%s" HASH_CLOSE "))"
                    " FROM %s AS t",
                    text.s, qt);
    PGresult *r = NULL;
    if (rc == JM_OK)
        rc = run(d, "counting jobs", text.oom || sql.oom ? NULL : sql.s, &a, &r, err);
    if (rc == JM_OK) {
        parse_count(r, 0, 0, &out->jobs);
        parse_count(r, 0, 1, &out->missing);
        parse_count(r, 0, 2, &out->stale);
        out->embedded = out->jobs - out->missing - out->stale;
        PQclear(r);
    }
    args_free(&a);
    db_str_free(&text);
    db_str_free(&sql);
    if (rc)
        return rc;
    arg_text(&a, model_id);
    rc = run(d, "counting skills",
             "SELECT count(*), count(*) FILTER (WHERE embedding IS NULL OR embedding_model IS DISTINCT FROM $1)"
             " FROM skills",
             &a, &r, err);
    args_free(&a);
    if (rc == JM_OK) {
        parse_count(r, 0, 0, &out->skills);
        parse_count(r, 0, 1, &out->skills_pending);
        PQclear(r);
    }
    return rc;
}

/* ---------- claim and commit ---------- */

/* Run a claim query (inside the open transaction) and fill the batch with its
 * (id, text) rows. */
static int fill_batch(db *d, const char *sql, const pg_args *a, db_batch *out, jm_err *err)
{
    PGresult *r;
    int rc = run(d, "claiming pending rows", sql, a, &r, err);
    if (rc)
        return rc;
    int n = PQntuples(r);
    if (n > 0) {
        out->ids = calloc((size_t)n, sizeof(char *));
        out->texts = calloc((size_t)n, sizeof(char *));
        if (!out->ids || !out->texts)
            rc = jm_fail(err, JM_ENOMEM, "out of memory");
    }
    for (int i = 0; rc == JM_OK && i < n; i++) {
        out->ids[i] = strdup(PQgetisnull(r, i, 0) ? "" : PQgetvalue(r, i, 0));
        out->texts[i] = strdup(PQgetisnull(r, i, 1) ? "" : PQgetvalue(r, i, 1));
        out->n++;
        if (!out->ids[i] || !out->texts[i])
            rc = jm_fail(err, JM_ENOMEM, "out of memory");
    }
    PQclear(r);
    return rc;
}

/* Open the claim's transaction. A batch that is still open is an error of the
 * caller; it is rolled back, as the SQLite backend does. */
static int claim_begin(db *d, jm_err *err)
{
    if (in_tx(d)) {
        pg_abort(d);
        return jm_fail(err, JM_EINVAL, "a batch is already claimed: commit or abort it first");
    }
    return tx_begin(d, "claiming pending rows", err);
}

/* After the claim's query: keep the transaction (and so the row locks) only
 * when something was claimed. */
static int claim_end(db *d, int rc, db_batch *out)
{
    if (rc || out->n == 0) {
        pg_abort(d);
        if (rc)
            db_batch_free(out);
    }
    return rc;
}

static int pg_claim_jobs(db *d, const char *model_id, const char *after, int exact, int limit, db_batch *out,
                         jm_err *err)
{
    if (!model_id)
        return jm_fail(err, JM_EINVAL, "no model id to claim jobs for");
    char qt[300], qid[300];
    int rc = source_idents(d, qt, qid, err);
    if (rc)
        return rc;
    pg_args a = {0};
    db_str text = {0}, sql = {0};
    int pm = arg_text(&a, model_id);
    char lim[16];
    snprintf(lim, sizeof lim, "%d", limit);
    int pl = arg_text(&a, lim);
    if ((rc = text_sql(d, &a, &text, err)))
        goto out;
    db_str_addf(&sql, "SELECT CAST(t.%s AS TEXT), %s FROM %s AS t WHERE ", qid, text.s ? text.s : "", qt);
    /* The cursor compares in the id column's own type ($n is typed by the
     * server), so ids sort and seek the same way as ORDER BY. */
    if (after)
        db_str_addf(&sql, "t.%s %s $%d AND ", qid, exact ? "=" : ">", arg_text(&a, after));
    db_str_addf(&sql,
                "(t.embedding IS NULL OR t.embedding_model IS DISTINCT FROM $%d"
                " OR t.text_hash IS DISTINCT FROM " HASH_OPEN "%s" HASH_CLOSE ")"
                " ORDER BY t.%s LIMIT CAST($%d AS INTEGER) FOR UPDATE OF t SKIP LOCKED",
                pm, text.s ? text.s : "", qid, pl);
    if (text.oom || sql.oom) {
        rc = jm_fail(err, JM_ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = claim_begin(d, err)) == JM_OK)
        rc = claim_end(d, fill_batch(d, sql.s, &a, out, err), out);
out:
    args_free(&a);
    db_str_free(&text);
    db_str_free(&sql);
    return rc;
}

/* The parameters shared by both commits: $1 all vectors as one BYTEA
 * (n * dim * 4 bytes, little-endian float32), $2 bytes per vector, $3 the
 * model, $4 the ids as text[]; row i of the batch takes bytes
 * [i * $2, (i + 1) * $2). One statement, one round trip, for the batch. */
static int commit_args(const db_batch *b, const float *vecs, int dim, const char *model_id, pg_args *a, jm_err *err)
{
    size_t bytes = (size_t)b->n * (size_t)dim * 4;
    unsigned char *blob = malloc(bytes ? bytes : 1);
    if (!blob)
        return jm_fail(err, JM_ENOMEM, "out of memory");
    for (int i = 0; i < b->n; i++)
        db_vec_to_le(vecs + (size_t)i * (size_t)dim, dim, blob + (size_t)i * (size_t)dim * 4);
    char per[16];
    snprintf(per, sizeof per, "%d", dim * 4);
    arg_add(a, blob, bytes, 1);
    arg_text(a, per);
    arg_text(a, model_id);
    arg_text_array(a, b->ids, b->n);
    free(blob);
    return a->oom ? jm_fail(err, JM_ENOMEM, "out of memory") : JM_OK;
}

#define VEC_SLICE "substring(CAST($1 AS BYTEA) FROM CAST((u.jm_ord - 1) * CAST($2 AS INTEGER) + 1 AS INTEGER) FOR CAST($2 AS INTEGER))"

static int commit_batch(db *d, const db_batch *b, const float *vecs, int dim, const char *model_id, int jobs,
                        jm_err *err)
{
    if (!in_tx(d))
        return jm_fail(err, JM_EINVAL, "no claimed batch to commit");
    if (!model_id || dim < 1 || dim > 1 << 20 || (b->n > 0 && !vecs)) {
        pg_abort(d);
        return jm_fail(err, JM_EINVAL, "commit: bad arguments (model %s, dim %d)", model_id ? model_id : "(none)",
                       dim);
    }
    pg_args a = {0};
    db_str text = {0}, sql = {0};
    int rc = commit_args(b, vecs, dim, model_id, &a, err);
    if (rc == JM_OK && jobs) {
        char qt[300], qid[300];
        const char *idt = NULL;
        if ((rc = source_idents(d, qt, qid, err)) == JM_OK && (rc = id_type(d, &idt, err)) == JM_OK &&
            (rc = text_sql(d, &a, &text, err)) == JM_OK)
            /* The rows are locked since the claim, so the text hashed here is
             * the text that was embedded. */
            db_str_addf(&sql,
                        "UPDATE %s AS t SET embedding = " VEC_SLICE ", embedding_model = $3,"
                        " text_hash = " HASH_OPEN "%s" HASH_CLOSE
                        " FROM unnest(CAST($4 AS TEXT[])) WITH ORDINALITY AS u(jm_id, jm_ord)"
                        " WHERE t.%s = CAST(u.jm_id AS %s)",
                        qt, text.s ? text.s : "", qid, idt);
    } else if (rc == JM_OK) {
        db_str_add(&sql, "UPDATE skills AS t SET embedding = " VEC_SLICE ", embedding_model = $3"
                         " FROM unnest(CAST($4 AS TEXT[])) WITH ORDINALITY AS u(jm_id, jm_ord)"
                         " WHERE t.name = u.jm_id");
    }
    if (rc == JM_OK && (text.oom || sql.oom))
        rc = jm_fail(err, JM_ENOMEM, "out of memory");
    if (rc == JM_OK && b->n > 0)
        rc = run(d, "writing embeddings", sql.s, &a, NULL, err);
    if (rc == JM_OK)
        rc = tx_commit(d, "writing embeddings", err);
    if (rc)
        pg_abort(d);
    args_free(&a);
    db_str_free(&text);
    db_str_free(&sql);
    return rc;
}

static int pg_commit_jobs(db *d, const db_batch *b, const float *vecs, int dim, const char *model_id, jm_err *err)
{
    return commit_batch(d, b, vecs, dim, model_id, 1, err);
}

/* ---------- skills ---------- */

/* One statement, atomic by itself: no transaction of its own. */
static int pg_insert_skills(db *d, char *const *norm, char *const *display, int n, int *added, jm_err *err)
{
    if (in_tx(d))
        return jm_fail(err, JM_EINVAL, "%s: inserting skills: a claimed batch is still open (commit or abort it first)",
                       d->display_url);
    pg_args a = {0};
    PGresult *r;
    arg_text_array(&a, norm, n);
    arg_text_array(&a, display, n);
    int rc = run(d, "inserting skills",
                 "INSERT INTO skills(name, display)"
                 " SELECT u.name, u.display FROM unnest(CAST($1 AS TEXT[]), CAST($2 AS TEXT[])) AS u(name, display)"
                 " ON CONFLICT (name) DO NOTHING",
                 &a, &r, err);
    args_free(&a);
    if (rc == JM_OK) {
        if (added)
            *added = cmd_rows(r);
        PQclear(r);
    }
    return rc;
}

/* Streams the values row by row (single-row mode), so a large table is never
 * held in memory at once. */
static int pg_each_job_skills(db *d, int (*fn)(void *, const char *), void *ctx, jm_err *err)
{
    if (!d->src.skills_col[0])
        return JM_OK;
    char q[300], qt[300], sql[1024];
    int rc;
    if ((rc = db_quote_ident(d->src.skills_col, q, sizeof q, err)) ||
        (rc = db_quote_ident(d->src.table, qt, sizeof qt, err)))
        return rc;
    snprintf(sql, sizeof sql, "SELECT CAST(%s AS TEXT) FROM %s WHERE %s IS NOT NULL", q, qt, q);
    PGconn *c = CONN(d);
    if (!PQsendQueryParams(c, sql, 0, NULL, NULL, NULL, NULL, 0))
        return pg_fail(d, NULL, "reading job skills", err);
    PQsetSingleRowMode(c);
    PGresult *r;
    /* Every result must be read, even after fn failed, to free the connection. */
    while ((r = PQgetResult(c))) {
        ExecStatusType s = PQresultStatus(r);
        if (s == PGRES_SINGLE_TUPLE) {
            if (rc == JM_OK && !PQgetisnull(r, 0, 0))
                rc = fn(ctx, PQgetvalue(r, 0, 0));
        } else if (s != PGRES_TUPLES_OK && rc == JM_OK) {
            rc = pg_fail(d, r, "reading job skills", err);
        }
        PQclear(r);
    }
    return rc;
}

static int pg_claim_skills(db *d, const char *model_id, const char *after, int limit, db_batch *out, jm_err *err)
{
    if (!model_id)
        return jm_fail(err, JM_EINVAL, "no model id to claim skills for");
    pg_args a = {0};
    char lim[16];
    snprintf(lim, sizeof lim, "%d", limit);
    arg_text(&a, model_id);
    arg_text(&a, lim);
    const char *sql = "SELECT name, COALESCE(display, name) FROM skills"
                      " WHERE (embedding IS NULL OR embedding_model IS DISTINCT FROM $1)"
                      " ORDER BY name LIMIT CAST($2 AS INTEGER) FOR UPDATE SKIP LOCKED";
    if (after) {
        arg_text(&a, after);
        sql = "SELECT name, COALESCE(display, name) FROM skills"
              " WHERE name > $3 AND (embedding IS NULL OR embedding_model IS DISTINCT FROM $1)"
              " ORDER BY name LIMIT CAST($2 AS INTEGER) FOR UPDATE SKIP LOCKED";
    }
    int rc = claim_begin(d, err);
    if (rc == JM_OK)
        rc = claim_end(d, fill_batch(d, sql, &a, out, err), out);
    args_free(&a);
    return rc;
}

static int pg_commit_skills(db *d, const db_batch *b, const float *vecs, int dim, const char *model_id,
                            jm_err *err)
{
    return commit_batch(d, b, vecs, dim, model_id, 0, err);
}

/* ---------- import ---------- */

#define UPSERT_HEAD                                                                                         \
    "INSERT INTO jobs(id, title, company, location, remote, salary_min, salary_max, currency,"              \
    " employment_type, seniority, description, skills, skill_names, posted_at, updated_at) VALUES "
#define UPSERT_ROW                                                                                          \
    "($%d, $%d, $%d, $%d, CAST($%d AS BOOLEAN), CAST($%d AS DOUBLE PRECISION), CAST($%d AS DOUBLE PRECISION)," \
    " $%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d)"
#define UPSERT_TAIL                                                                                         \
    " ON CONFLICT (id) DO UPDATE SET title = EXCLUDED.title, company = EXCLUDED.company,"                  \
    " location = EXCLUDED.location, remote = EXCLUDED.remote, salary_min = EXCLUDED.salary_min,"           \
    " salary_max = EXCLUDED.salary_max, currency = EXCLUDED.currency,"                                     \
    " employment_type = EXCLUDED.employment_type, seniority = EXCLUDED.seniority,"                         \
    " description = EXCLUDED.description, skills = EXCLUDED.skills, skill_names = EXCLUDED.skill_names,"   \
    " posted_at = EXCLUDED.posted_at, updated_at = EXCLUDED.updated_at"                                    \
    " WHERE (jobs.title, jobs.company, jobs.location, jobs.remote, jobs.salary_min, jobs.salary_max,"      \
    " jobs.currency, jobs.employment_type, jobs.seniority, jobs.description, jobs.skills, jobs.posted_at)"  \
    " IS DISTINCT FROM (EXCLUDED.title, EXCLUDED.company, EXCLUDED.location, EXCLUDED.remote,"             \
    " EXCLUDED.salary_min, EXCLUDED.salary_max, EXCLUDED.currency, EXCLUDED.employment_type,"             \
    " EXCLUDED.seniority, EXCLUDED.description, EXCLUDED.skills, EXCLUDED.posted_at)"

static int arg_real(pg_args *a, double v)
{
    if (v != v)
        return arg_text(a, NULL);
    char buf[32];
    snprintf(buf, sizeof buf, "%.17g", v); /* 17 digits: the double round-trips exactly */
    return arg_text(a, buf);
}

/* Ids of the rows in the statement being built: ON CONFLICT DO UPDATE may not
 * touch a row twice in one statement, so a repeated id starts a new one, and
 * rows apply in input order as they do in SQLite. */
typedef struct id_set {
    const char *slot[UPSERT_CHUNK * 2];
} id_set;

static uint64_t fnv(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

/* Add id; returns 0 if it was already there. */
static int id_set_add(id_set *s, const char *id)
{
    size_t m = sizeof s->slot / sizeof s->slot[0];
    size_t h = (size_t)(fnv(id) % m);
    while (s->slot[h]) {
        if (!strcmp(s->slot[h], id))
            return 0;
        h = (h + 1) % m;
    }
    s->slot[h] = id;
    return 1;
}

/* One INSERT ... ON CONFLICT for jobs[0..n); adds the rows it inserted or
 * changed to *count. */
static int upsert_chunk(db *d, const db_job *jobs, int n, const char *now, int *count, jm_err *err)
{
    pg_args a = {0};
    db_str sql = {0};
    int rc = JM_OK;
    db_str_add(&sql, UPSERT_HEAD);
    for (int i = 0; rc == JM_OK && i < n; i++) {
        const db_job *j = &jobs[i];
        char *sj = db_skills_json(j->skills, j->nskills), *sn = db_skills_joined(j->skills, j->nskills);
        if (!sj || !sn) {
            rc = jm_fail(err, JM_ENOMEM, "out of memory");
        } else {
            int k[15];
            k[0] = arg_text(&a, j->id);
            k[1] = arg_text(&a, j->title);
            k[2] = arg_text(&a, j->company);
            k[3] = arg_text(&a, j->location);
            k[4] = arg_text(&a, j->remote < 0 ? NULL : j->remote ? "true" : "false");
            k[5] = arg_real(&a, j->salary_min);
            k[6] = arg_real(&a, j->salary_max);
            k[7] = arg_text(&a, j->currency);
            k[8] = arg_text(&a, j->employment_type);
            k[9] = arg_text(&a, j->seniority);
            k[10] = arg_text(&a, j->description);
            k[11] = arg_text(&a, sj);
            k[12] = arg_text(&a, sn);
            k[13] = arg_text(&a, j->posted_at);
            k[14] = arg_text(&a, now);
            db_str_addf(&sql, "%s" UPSERT_ROW, i ? ", " : "", k[0], k[1], k[2], k[3], k[4], k[5], k[6], k[7], k[8],
                        k[9], k[10], k[11], k[12], k[13], k[14]);
        }
        free(sj);
        free(sn);
    }
    db_str_add(&sql, UPSERT_TAIL);
    PGresult *r;
    if (rc == JM_OK)
        rc = run(d, "upserting jobs", sql.oom ? NULL : sql.s, &a, &r, err);
    if (rc == JM_OK) {
        *count += cmd_rows(r);
        PQclear(r);
    }
    args_free(&a);
    db_str_free(&sql);
    return rc;
}

static int pg_upsert_jobs(db *d, const db_job *jobs, int n, int *changed, jm_err *err)
{
    int rc = tx_begin(d, "upserting jobs", err);
    if (rc)
        return rc;
    char now[32];
    db_now_iso(now);
    int count = 0, start = 0;
    id_set *seen = calloc(1, sizeof *seen);
    if (!seen)
        rc = jm_fail(err, JM_ENOMEM, "out of memory");
    for (int i = 0; rc == JM_OK && i <= n; i++) {
        if (i == n || i - start == UPSERT_CHUNK || !id_set_add(seen, jobs[i].id)) {
            if (i > start)
                rc = upsert_chunk(d, jobs + start, i - start, now, &count, err);
            start = i;
            memset(seen, 0, sizeof *seen);
            if (i < n)
                id_set_add(seen, jobs[i].id);
        }
    }
    free(seen);
    if (rc == JM_OK)
        rc = tx_commit(d, "upserting jobs", err);
    if (rc)
        pg_abort(d);
    else if (changed)
        *changed = count;
    return rc;
}

static int pg_delete_job(db *d, const char *id, int *found, jm_err *err)
{
    char qt[300], qid[300], sql[1024];
    int rc = source_idents(d, qt, qid, err);
    if (rc)
        return rc;
    snprintf(sql, sizeof sql, "DELETE FROM %s WHERE %s = $1", qt, qid);
    pg_args a = {0};
    PGresult *r;
    arg_text(&a, id);
    rc = run(d, "deleting a job", sql, &a, &r, err);
    args_free(&a);
    if (rc == JM_OK) {
        if (found)
            *found = cmd_rows(r) > 0;
        PQclear(r);
    } else if (bad_id_syntax(d) && !in_tx(d)) {
        rc = JM_OK;
        if (found)
            *found = 0;
    }
    return rc;
}

static int pg_get_embedding(db *d, const char *id, unsigned char **bytes, size_t *len, char **model, jm_err *err)
{
    char qt[300], qid[300], sql[1024];
    *bytes = NULL;
    *len = 0;
    *model = NULL;
    int rc = source_idents(d, qt, qid, err);
    if (rc)
        return rc;
    snprintf(sql, sizeof sql, "SELECT embedding, embedding_model FROM %s WHERE %s = $1", qt, qid);
    pg_args a = {0};
    PGresult *r;
    arg_text(&a, id);
    rc = run_fmt(d, "reading an embedding", sql, &a, 1, &r, err);
    args_free(&a);
    if (rc)
        return bad_id_syntax(d) && !in_tx(d) ? jm_fail(err, JM_ENOTFOUND, "no job with id \"%s\"", id) : rc;
    if (PQntuples(r) == 0) {
        rc = jm_fail(err, JM_ENOTFOUND, "no job with id \"%s\"", id);
    } else if (!PQgetisnull(r, 0, 0) && PQgetlength(r, 0, 0) > 0) {
        /* binary results: bytea is its raw bytes, text its UTF-8 bytes */
        size_t n = (size_t)PQgetlength(r, 0, 0);
        *bytes = malloc(n);
        *model = strdup(PQgetisnull(r, 0, 1) ? "" : PQgetvalue(r, 0, 1));
        if (!*bytes || !*model) {
            free(*bytes);
            free(*model);
            *bytes = NULL;
            *model = NULL;
            rc = jm_fail(err, JM_ENOMEM, "out of memory");
        } else {
            memcpy(*bytes, PQgetvalue(r, 0, 0), n);
            *len = n;
        }
    }
    PQclear(r);
    return rc;
}

static int pg_size(db *d, int64_t *out, jm_err *err)
{
    PGresult *r;
    *out = 0;
    int rc = run(d, "reading the database size", "SELECT pg_database_size(current_database())", NULL, &r, err);
    if (rc == JM_OK) {
        parse_count(r, 0, 0, out);
        PQclear(r);
    }
    return rc;
}

static void pg_close(db *d)
{
    pg *p = d->impl;
    if (!p)
        return;
    if (p->c)
        PQfinish(p->c);
    free(p);
    d->impl = NULL;
}

/* ---------- change log and keyword search (schema version 2) ---------- */

/* The quoted name of one of jobmatch's objects for table T: prefix + T, or,
 * when that is longer than PostgreSQL's 63-byte names, prefix + the start of
 * T + a hash of all of T (so that two long names do not share one). */
static int pg_objname(char *buf, size_t cap, const char *prefix, const char *table, jm_err *err)
{
    char raw[300];
    size_t pl = strlen(prefix), tl = strlen(table);
    if (pl + tl <= 63)
        snprintf(raw, sizeof raw, "%s%s", prefix, table);
    else
        snprintf(raw, sizeof raw, "%s%.*s_%08llx", prefix, (int)(63 - pl - 9), table,
                 (unsigned long long)(fnv(table) & 0xffffffffu));
    return db_quote_ident(raw, buf, cap, err);
}

/* Does the query (one text parameter, one count(*) result) count > 0? */
static int pg_exists(db *d, const char *sql, const char *param, int *out, jm_err *err)
{
    pg_args a = {0};
    PGresult *r;
    arg_text(&a, param);
    int rc = run(d, "reading the catalogue", sql, &a, &r, err);
    args_free(&a);
    if (rc == JM_OK) {
        int64_t n = 0;
        parse_count(r, 0, 0, &n);
        *out = n > 0;
        PQclear(r);
    }
    return rc;
}

/* The schema job_changes lives in, quoted: the trigger functions run in the
 * sessions of whoever writes to the table, whatever their search_path. */
static int changes_schema(db *d, char *buf, size_t cap, jm_err *err)
{
    PGresult *r;
    int rc = run(d, "reading the catalogue",
                 "SELECT n.nspname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
                 " WHERE c.oid = pg_catalog.to_regclass('job_changes')",
                 NULL, &r, err);
    if (rc)
        return rc;
    if (PQntuples(r) != 1)
        rc = jm_fail(err, JM_ENOTFOUND, "%s: no job_changes table", d->display_url);
    else
        rc = db_quote_ident(PQgetvalue(r, 0, 0), buf, cap, err);
    PQclear(r);
    return rc;
}

/* The change-log triggers on table T (id column I): statement-level, with
 * transition tables, so a statement of any size costs one call. On first
 * install every row of T gets an entry. */
static int install_log(db *d, const char *table, const char *id_col, jm_err *err)
{
    int have = 0, rc = pg_exists(d,
                                 "SELECT count(*) FROM pg_catalog.pg_trigger"
                                 " WHERE tgrelid = pg_catalog.to_regclass(pg_catalog.quote_ident($1))"
                                 " AND tgname = 'jm_log_upd'",
                                 table, &have, err);
    if (rc || have)
        return rc;
    char qt[300], qi[300], fn[300], schema[300];
    if ((rc = db_quote_ident(table, qt, sizeof qt, err)) || (rc = db_quote_ident(id_col, qi, sizeof qi, err)) ||
        (rc = pg_objname(fn, sizeof fn, "jm_log_", table, err)) ||
        (rc = changes_schema(d, schema, sizeof schema, err)))
        return rc;
    /* One statement per event: ch is the set of ids the statement touched
     * (live, or gone: deleted, or renamed away; an id both ways is live).
     * Existing entries are updated with a fresh rev, the others inserted, so
     * one change takes one rev; ON CONFLICT covers an entry that another
     * transaction has just added. */
    static const char *const ch_of[3] = {
        /* INSERT */
        "SELECT DISTINCT CAST(n.%1$s AS TEXT) AS id, false AS del FROM jm_new AS n WHERE n.%1$s IS NOT NULL",
        /* UPDATE */
        "SELECT s.id, bool_and(s.del) AS del FROM (SELECT CAST(n.%1$s AS TEXT) AS id, false AS del FROM jm_new AS n"
        " UNION ALL SELECT CAST(o.%1$s AS TEXT), true FROM jm_old AS o) AS s WHERE s.id IS NOT NULL GROUP BY s.id",
        /* DELETE */
        "SELECT DISTINCT CAST(o.%1$s AS TEXT) AS id, true AS del FROM jm_old AS o WHERE o.%1$s IS NOT NULL"};
    static const char *const ops[3] = {"INSERT", "UPDATE", "DELETE"};
    db_str b[6] = {{0}};
    db_str_addf(&b[0], "CREATE OR REPLACE FUNCTION %s.%s() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER"
                       " SET search_path = %s"
                       " AS $jm$ BEGIN",
                schema, fn, schema);
    for (int i = 0; i < 3; i++) {
        db_str_addf(&b[0], " %s TG_OP = '%s' THEN WITH ch AS (", i ? "ELSIF" : "IF", ops[i]);
        db_str_addf(&b[0], ch_of[i], qi);
        /* new rows rarely have an entry (only when deleted before): no
         * UPDATE first for them */
        db_str_add(&b[0], i ? "), up AS (UPDATE job_changes AS c SET rev = nextval('job_changes_rev_seq'),"
                              " deleted = ch.del FROM ch WHERE c.id = ch.id RETURNING c.id)"
                              " INSERT INTO job_changes(id, deleted) SELECT ch.id, ch.del FROM ch"
                              " WHERE NOT EXISTS (SELECT 1 FROM up WHERE up.id = ch.id)"
                            : ") INSERT INTO job_changes(id, deleted) SELECT ch.id, ch.del FROM ch");
        db_str_add(&b[0], " ON CONFLICT (id) DO UPDATE SET rev = nextval('job_changes_rev_seq'),"
                          " deleted = EXCLUDED.deleted;");
    }
    db_str_add(&b[0], " END IF; RETURN NULL; END $jm$");
    db_str_addf(&b[1],
                "CREATE TRIGGER jm_log_ins AFTER INSERT ON %s REFERENCING NEW TABLE AS jm_new"
                " FOR EACH STATEMENT EXECUTE FUNCTION %s.%s()",
                qt, schema, fn);
    db_str_addf(&b[2],
                "CREATE TRIGGER jm_log_upd AFTER UPDATE ON %s REFERENCING OLD TABLE AS jm_old NEW TABLE AS jm_new"
                " FOR EACH STATEMENT EXECUTE FUNCTION %s.%s()",
                qt, schema, fn);
    db_str_addf(&b[3],
                "CREATE TRIGGER jm_log_del AFTER DELETE ON %s REFERENCING OLD TABLE AS jm_old"
                " FOR EACH STATEMENT EXECUTE FUNCTION %s.%s()",
                qt, schema, fn);
    /* the backfill: ids the log has from another table get a fresh rev */
    db_str_addf(&b[4], "DELETE FROM job_changes WHERE id IN (SELECT CAST(%s AS TEXT) FROM %s)", qi, qt);
    db_str_addf(&b[5],
                "INSERT INTO job_changes(id, deleted) SELECT CAST(%1$s AS TEXT), false FROM %2$s"
                " WHERE %1$s IS NOT NULL ORDER BY %1$s ON CONFLICT (id) DO NOTHING",
                qi, qt);
    for (int i = 0; i < 6; i++) {
        if (rc == JM_OK)
            rc = run(d, "installing the change log", b[i].oom ? NULL : b[i].s, NULL, NULL, err);
        db_str_free(&b[i]);
    }
    return rc;
}

/* The tsvector of a row of the source: each searched column weighted,
 * columns unqualified (the same text in an index and in a query). */
static int search_expr(const db_search *s, db_str *b, jm_err *err)
{
    for (int i = 0; i < s->ncols; i++) {
        char qc[300];
        int rc = db_quote_ident(s->col[i], qc, sizeof qc, err);
        if (rc)
            return rc;
        db_str_addf(b, "%ssetweight(to_tsvector('english'::regconfig, COALESCE(CAST(%s AS TEXT), '')), '%c')",
                    i ? " || " : "", qc, s->weight[i]);
    }
    return b->oom ? jm_fail(err, JM_ENOMEM, "out of memory") : JM_OK;
}

/* Drop jobmatch's triggers (the change log's when `log`) and search index
 * from table T. */
static int uninstall(db *d, const char *table, int log, jm_err *err)
{
    char qt[300], ix[300], fn[300], sql[1024];
    int rc, have = 0;
    if ((rc = db_quote_ident(table, qt, sizeof qt, err)) ||
        (rc = pg_objname(ix, sizeof ix, "jm_search_", table, err)) ||
        (rc = pg_objname(fn, sizeof fn, "jm_log_", table, err)))
        return rc;
    snprintf(sql, sizeof sql, "DROP INDEX IF EXISTS %s", ix);
    if ((rc = run(d, "removing a search index", sql, NULL, NULL, err)) || !log)
        return rc;
    if ((rc = pg_exists(d, "SELECT count(*) FROM pg_catalog.pg_class WHERE oid = pg_catalog.to_regclass(pg_catalog.quote_ident($1))",
                        table, &have, err)))
        return rc;
    static const char *const trig[] = {"jm_log_ins", "jm_log_upd", "jm_log_del"};
    for (int i = 0; rc == JM_OK && have && i < 3; i++) {
        snprintf(sql, sizeof sql, "DROP TRIGGER IF EXISTS %s ON %s", trig[i], qt);
        rc = run(d, "removing the change log", sql, NULL, NULL, err);
    }
    char schema[300];
    if (rc == JM_OK && (rc = changes_schema(d, schema, sizeof schema, err)) == JM_OK) {
        snprintf(sql, sizeof sql, "DROP FUNCTION IF EXISTS %s.%s()", schema, fn);
        rc = run(d, "removing the change log", sql, NULL, NULL, err);
    }
    return rc;
}

/* Keyword search on an attached table: a GIN index on the tsvector
 * expression when PostgreSQL accepts one (every column's cast to text must
 * be immutable: not so for timestamptz, for one), else the search scans the
 * table. Recorded in meta as search_spec. */
static int install_search(db *d, const db_source *src, jm_err *err)
{
    db_search s;
    char qt[300], ix[300];
    int rc;
    if ((rc = db_search_of(src, &s, err)) || (rc = uninstall(d, src->table, 0, err)) ||
        (rc = db_quote_ident(src->table, qt, sizeof qt, err)) ||
        (rc = pg_objname(ix, sizeof ix, "jm_search_", src->table, err)))
        return rc;
    db_str e = {0}, sql = {0};
    if ((rc = search_expr(&s, &e, err)) == JM_OK)
        db_str_addf(&sql, "CREATE INDEX %s ON %s USING gin ((%s))", ix, qt, e.s);
    if (rc == JM_OK && sql.oom)
        rc = jm_fail(err, JM_ENOMEM, "out of memory");
    if (rc == JM_OK && (rc = run(d, "indexing for keyword search", "SAVEPOINT jm_search", NULL, NULL, err)) == JM_OK) {
        jm_err ignored;
        if (run(d, "indexing for keyword search", sql.s, NULL, NULL, &ignored))
            rc = run(d, "indexing for keyword search", "ROLLBACK TO SAVEPOINT jm_search", NULL, NULL, err);
        if (rc == JM_OK)
            rc = run(d, "indexing for keyword search", "RELEASE SAVEPOINT jm_search", NULL, NULL, err);
    }
    if (rc == JM_OK)
        rc = pg_meta_set(d, "search_spec", s.spec, err);
    db_str_free(&e);
    db_str_free(&sql);
    return rc;
}

static int migrate2(db *d, jm_err *err)
{
    static const db_source own = {.table = "jobs", .id_col = "id"};
    db_search s;
    db_str e = {0}, sql = {0};
    int rc;
    if ((rc = run(d, "migrating",
                  "CREATE TABLE IF NOT EXISTS job_changes ("
                  " rev BIGSERIAL PRIMARY KEY, id TEXT NOT NULL UNIQUE, deleted BOOLEAN NOT NULL)",
                  NULL, NULL, err)) ||
        (rc = install_log(d, "jobs", "id", err)) || (rc = db_search_of(&own, &s, err)) ||
        (rc = search_expr(&s, &e, err)))
        goto out;
    /* a stored generated column: kept up to date by the server itself */
    db_str_addf(&sql, "ALTER TABLE jobs ADD COLUMN IF NOT EXISTS search_vector tsvector GENERATED ALWAYS AS (%s) STORED",
                e.s);
    if ((rc = run(d, "migrating", sql.oom ? NULL : sql.s, NULL, NULL, err)) ||
        (rc = run(d, "migrating", "CREATE INDEX IF NOT EXISTS jobs_search_idx ON jobs USING gin (search_vector)", NULL,
                  NULL, err)))
        goto out;
    /* A table attached under version 1 gets the same, if it still can (see
     * db_sqlite.c): attach again to set it up otherwise. */
    db_source src;
    if ((rc = db_source_get(d, &src, err)) || !src.attached)
        goto out;
    if ((rc = run(d, "migrating", "SAVEPOINT jm_attached", NULL, NULL, err)))
        goto out;
    jm_err ignored;
    if (install_log(d, src.table, src.id_col, &ignored) || install_search(d, &src, &ignored))
        rc = run(d, "migrating", "ROLLBACK TO SAVEPOINT jm_attached", NULL, NULL, err);
    if (rc == JM_OK)
        rc = run(d, "migrating", "RELEASE SAVEPOINT jm_attached", NULL, NULL, err);
out:
    db_str_free(&e);
    db_str_free(&sql);
    return rc;
}

static int pg_install_source(db *d, const db_source *src, const db_source *prev, jm_err *err)
{
    int rc = tx_begin(d, "attaching", err);
    if (rc)
        return rc;
    /* another table, or the same with another id column: start afresh */
    if (prev && prev->attached && (strcmp(prev->table, src->table) || strcmp(prev->id_col, src->id_col)))
        rc = uninstall(d, prev->table, 1, err);
    if (rc == JM_OK)
        rc = install_log(d, src->table, src->id_col, err);
    /* the search index is rebuilt when the searched columns changed or it
     * is missing (PostgreSQL may have refused it: then this tries again) */
    db_search s;
    char *spec = NULL, ix[300];
    int have = 0;
    if (rc == JM_OK && (rc = db_search_of(src, &s, err)) == JM_OK &&
        (rc = pg_objname(ix, sizeof ix, "jm_search_", src->table, err)) == JM_OK &&
        (rc = pg_exists(d, "SELECT count(*) FROM pg_catalog.pg_class WHERE oid = pg_catalog.to_regclass($1)", ix,
                        &have, err)) == JM_OK &&
        (rc = pg_meta_get(d, "search_spec", &spec, err)) == JM_OK && !(have && spec && !strcmp(spec, s.spec)))
        rc = install_search(d, src, err);
    free(spec);
    if (rc == JM_OK)
        rc = tx_commit(d, "attaching", err);
    if (rc)
        pg_abort(d);
    return rc;
}

/* ---------- reading back ---------- */

/* Columns of every read-back query, in this order (pg_row decodes them);
 * results come in binary form: bytea as its bytes, numbers big-endian. */
enum { C_ID, C_TITLE, C_COMPANY, C_LOCATION, C_REMOTE, C_SMIN, C_SMAX, C_CURRENCY, C_EMP, C_SEN, C_DESC,
       C_SKILLS, C_POSTED, C_EMB, C_REV, C_PRESENT, C_NCOLS };

#define OID_BOOL 16
#define OID_BYTEA 17
#define OID_INT8 20
#define OID_FLOAT8 701

static uint64_t be64(const char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | (unsigned char)p[i];
    return v;
}

static const char *bin_text(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}

static int64_t bin_i8(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) || PQgetlength(r, row, col) != 8 ? 0 : (int64_t)be64(PQgetvalue(r, row, col));
}

static double bin_f8(const PGresult *r, int row, int col)
{
    if (PQgetisnull(r, row, col) || PQgetlength(r, row, col) != 8)
        return NAN;
    uint64_t u = be64(PQgetvalue(r, row, col));
    double v;
    memcpy(&v, &u, 8);
    return v;
}

static int bin_bool(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? -1 : PQgetvalue(r, row, col)[0] != 0;
}

/* The result has the read-back columns with the types pg_row expects. */
static int check_types(db *d, const PGresult *r, jm_err *err)
{
    static const struct {
        int col;
        Oid type;
    } want[] = {{C_REMOTE, OID_BOOL}, {C_SMIN, OID_FLOAT8}, {C_SMAX, OID_FLOAT8},
                {C_EMB, OID_BYTEA},   {C_REV, OID_INT8},    {C_PRESENT, OID_BOOL}};
    if (PQnfields(r) != C_NCOLS)
        return jm_fail(err, JM_EFORMAT, "%s: read-back query has %d columns", d->display_url, PQnfields(r));
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (PQftype(r, want[i].col) != want[i].type)
            return jm_fail(err, JM_EFORMAT, "%s: column %d of a read-back query has type %u", d->display_url,
                           want[i].col, (unsigned)PQftype(r, want[i].col));
    return JM_OK;
}

static int pg_row(const PGresult *r, int i, int mode, db_row_fn fn, void *ctx)
{
    db_row row;
    memset(&row, 0, sizeof row);
    db_job_init(&row.job);
    row.job.id = (char *)bin_text(r, i, C_ID);
    row.rev = bin_i8(r, i, C_REV);
    if ((mode & DB_ROWS_CHANGES) && bin_bool(r, i, C_PRESENT) != 1) {
        row.deleted = 1;
        return db_row_emit(&row, NULL, mode, fn, ctx);
    }
    row.job.title = (char *)bin_text(r, i, C_TITLE);
    row.job.company = (char *)bin_text(r, i, C_COMPANY);
    row.job.location = (char *)bin_text(r, i, C_LOCATION);
    row.job.remote = bin_bool(r, i, C_REMOTE);
    row.job.salary_min = bin_f8(r, i, C_SMIN);
    row.job.salary_max = bin_f8(r, i, C_SMAX);
    row.job.currency = (char *)bin_text(r, i, C_CURRENCY);
    row.job.employment_type = (char *)bin_text(r, i, C_EMP);
    row.job.seniority = (char *)bin_text(r, i, C_SEN);
    row.job.description = (char *)bin_text(r, i, C_DESC);
    row.job.posted_at = (char *)bin_text(r, i, C_POSTED);
    if (!PQgetisnull(r, i, C_EMB) && PQgetlength(r, i, C_EMB) > 0) {
        row.emb = (const unsigned char *)PQgetvalue(r, i, C_EMB);
        row.emb_len = (size_t)PQgetlength(r, i, C_EMB);
    }
    return db_row_emit(&row, bin_text(r, i, C_SKILLS), mode, fn, ctx);
}

/* How a change-log id (text) meets the source's id column: directly for a
 * text-like column; cast to the column's type otherwise, which uses its
 * index but fails on an id that is not of that type (an entry the log has
 * from another table): then, as text. */
typedef enum { JOIN_TEXTLIKE, JOIN_CAST, JOIN_AS_TEXT } join_kind;

static int id_join(db *d, join_kind *k, const char **idt, jm_err *err)
{
    int rc = id_type(d, idt, err);
    if (rc)
        return rc;
    *k = !strcmp(*idt, "text") || !strncmp(*idt, "character", 9) ? JOIN_TEXTLIKE : JOIN_CAST;
    return JM_OK;
}

/* "t.I = <logid>" for the join kind. */
static void id_eq(db_str *b, join_kind k, const char *qi, const char *logid, const char *idt)
{
    if (k == JOIN_TEXTLIKE)
        db_str_addf(b, "t.%s = %s", qi, logid);
    else if (k == JOIN_CAST)
        db_str_addf(b, "t.%s = CAST(%s AS %s)", qi, logid, idt);
    else
        db_str_addf(b, "CAST(t.%s AS TEXT) = %s", qi, logid);
}

/* A data exception (SQLSTATE class 22: an id that does not cast), outside
 * any transaction of the caller's: worth trying again as text. */
static int cast_failed(db *d) { return !strncmp(((pg *)d->impl)->sqlstate, "22", 2) && !in_tx(d); }

/* Append the columns C_TITLE .. C_EMB of the source row aliased t to b.
 * Parameters go to a: the model id (when with_emb) and the template's
 * literals (when the text is needed). */
static int row_cols_sql(db *d, int with_emb, const char *model_id, pg_args *a, db_str *b, jm_err *err)
{
    int rc = JM_OK, pm = with_emb ? arg_text(a, model_id) : 0;
    db_str text = {0};
    if ((with_emb || d->src.attached) && (rc = text_sql(d, a, &text, err))) {
        db_str_free(&text);
        return rc;
    }
    if (!d->src.attached) {
        db_str_add(b, "t.title, t.company, t.location, t.remote, t.salary_min, t.salary_max, t.currency,"
                      " t.employment_type, t.seniority, t.description, t.skills, t.posted_at");
    } else {
        db_piece *p = NULL;
        int np = 0;
        char first[300] = "", qs[300] = "";
        if ((rc = db_template_parse(d->src.template_, &p, &np, err)) == JM_OK) {
            for (int i = 0; i < np && !first[0] && rc == JM_OK; i++)
                if (p[i].is_col)
                    rc = db_quote_ident(p[i].text, first, sizeof first, err);
            db_pieces_free(p, np);
        }
        if (rc == JM_OK && d->src.skills_col[0])
            rc = db_quote_ident(d->src.skills_col, qs, sizeof qs, err);
        if (rc == JM_OK) {
            if (first[0])
                db_str_addf(b, "CAST(t.%s AS TEXT)", first);
            else
                db_str_add(b, "CAST(NULL AS TEXT)");
            db_str_add(b, ", CAST(NULL AS TEXT), CAST(NULL AS TEXT), CAST(NULL AS BOOLEAN),"
                          " CAST(NULL AS DOUBLE PRECISION), CAST(NULL AS DOUBLE PRECISION), CAST(NULL AS TEXT),"
                          " CAST(NULL AS TEXT), CAST(NULL AS TEXT), ");
            db_str_addf(b, "%s, ", text.s ? text.s : "''");
            if (qs[0])
                db_str_addf(b, "CAST(t.%s AS TEXT)", qs);
            else
                db_str_add(b, "CAST(NULL AS TEXT)");
            db_str_add(b, ", CAST(NULL AS TEXT)");
        }
    }
    /* the claim's condition, negated: present, made by the model, and the
     * hash of the current text */
    if (with_emb)
        db_str_addf(b,
                    ", CASE WHEN NOT (t.embedding IS NULL OR t.embedding_model IS DISTINCT FROM $%d"
                    " OR t.text_hash IS DISTINCT FROM " HASH_OPEN "%s" HASH_CLOSE ") THEN t.embedding END",
                    pm, text.s ? text.s : "''");
    else
        db_str_add(b, ", CAST(NULL AS BYTEA)");
    if (rc == JM_OK && (b->oom || text.oom))
        rc = jm_fail(err, JM_ENOMEM, "out of memory");
    db_str_free(&text);
    return rc;
}

/* Replace parameter k (1-based) of a with s. */
static int arg_set(pg_args *a, int k, const char *s)
{
    char *c = strdup(s);
    if (!c) {
        a->oom = 1;
        return 0;
    }
    free(a->v[k - 1]);
    a->v[k - 1] = c;
    a->len[k - 1] = (int)strlen(c);
    return k;
}

/* Run one page (binary results) and hand its rows to fn. *n is the number of
 * rows; *last (malloc'd) the cursor column's value of the last row. */
static int run_page(db *d, const char *what, const char *sql, const pg_args *a, int mode, int cursor_col,
                    db_row_fn fn, void *ctx, int *n, char **last, jm_err *err)
{
    PGresult *r;
    *n = 0;
    int rc = run_fmt(d, what, sql, a, 1, &r, err);
    if (rc)
        return rc;
    if ((rc = check_types(d, r, err)) == JM_OK) {
        *n = PQntuples(r);
        for (int i = 0; rc == JM_OK && i < *n; i++)
            rc = pg_row(r, i, mode, fn, ctx);
        if (rc == JM_OK && *n > 0 && last) {
            free(*last);
            if (cursor_col == C_REV) {
                char buf[32];
                snprintf(buf, sizeof buf, "%lld", (long long)bin_i8(r, *n - 1, C_REV));
                *last = strdup(buf);
            } else {
                *last = strdup(PQgetisnull(r, *n - 1, cursor_col) ? "" : PQgetvalue(r, *n - 1, cursor_col));
            }
            if (!*last)
                rc = jm_fail(err, JM_ENOMEM, "out of memory");
        }
    }
    PQclear(r);
    return rc;
}

/* Keyset pages of DB_PAGE_ROWS in id order: the memory of a scan does not
 * grow with the table, and fn may use the connection between pages. */
static int pg_scan_jobs(db *d, const char *model_id, int flags, db_row_fn fn, void *ctx, jm_err *err)
{
    char qt[300], qi[300];
    int rc = source_idents(d, qt, qi, err);
    if (rc)
        return rc;
    pg_args a = {0};
    db_str cols = {0}, sql1 = {0}, sqln = {0};
    char *last = NULL;
    if ((rc = row_cols_sql(d, flags & DB_SCAN_EMBEDDING, model_id, &a, &cols, err)))
        goto out;
    int pc = arg_text(&a, ""); /* the cursor: the last id of the previous page */
    /* rev by a lookup per row: a join would tempt the planner into merging
     * with the whole change log for every page */
    const char *from = ", COALESCE((SELECT c.rev FROM job_changes AS c WHERE c.id = CAST(t.%2$s AS TEXT)), 0),"
                       " true FROM %1$s AS t";
    db_str_addf(&sql1, "SELECT CAST(t.%s AS TEXT), %s", qi, cols.s);
    db_str_addf(&sql1, from, qt, qi);
    /* a row without an id is no job (and would break the cursor) */
    db_str_addf(&sql1, " WHERE t.%s IS NOT NULL ORDER BY t.%s LIMIT %d", qi, qi, DB_PAGE_ROWS);
    db_str_addf(&sqln, "SELECT CAST(t.%s AS TEXT), %s", qi, cols.s);
    db_str_addf(&sqln, from, qt, qi);
    db_str_addf(&sqln, " WHERE t.%s > $%d ORDER BY t.%s LIMIT %d", qi, pc, qi, DB_PAGE_ROWS);
    if (sql1.oom || sqln.oom || a.oom) {
        rc = jm_fail(err, JM_ENOMEM, "out of memory");
        goto out;
    }
    pg_args first = a; /* page 1 has no cursor: without the last parameter */
    first.n = pc - 1;
    int n = 0;
    for (int page = 0; rc == JM_OK && (page == 0 || n == DB_PAGE_ROWS); page++) {
        if (page && !arg_set(&a, pc, last)) {
            rc = jm_fail(err, JM_ENOMEM, "out of memory");
            break;
        }
        rc = run_page(d, "scanning jobs", page ? sqln.s : sql1.s, page ? &a : &first,
                      flags & DB_SCAN_RAW_SKILLS ? DB_ROWS_RAW_SKILLS : 0, C_ID, fn, ctx, &n, &last, err);
    }
out:
    free(last);
    args_free(&a);
    db_str_free(&cols);
    db_str_free(&sql1);
    db_str_free(&sqln);
    return rc;
}

/* The change log in rev order, in pages of DB_PAGE_ROWS up to *now (the
 * largest rev visible when the call starts). */
static int pg_changes(db *d, const char *model_id, int64_t since, db_row_fn fn, void *ctx, int64_t *now, jm_err *err)
{
    char qt[300], qi[300];
    const char *idt = NULL;
    join_kind jk;
    PGresult *r;
    int rc = source_idents(d, qt, qi, err);
    if (rc || (rc = id_join(d, &jk, &idt, err)) ||
        (rc = run(d, "reading the change counter", "SELECT COALESCE(max(rev), 0) FROM job_changes", NULL, &r, err)))
        return rc;
    parse_count(r, 0, 0, now);
    PQclear(r);
    if (*now <= since)
        return JM_OK;
    pg_args a = {0};
    db_str cols = {0}, sql = {0};
    char *last = NULL, buf[32];
    if ((rc = row_cols_sql(d, model_id != NULL, model_id, &a, &cols, err)))
        goto out;
    snprintf(buf, sizeof buf, "%lld", (long long)since);
    int ps = arg_text(&a, buf);
    snprintf(buf, sizeof buf, "%lld", (long long)*now);
    int pn = arg_text(&a, buf);
    int n = 0;
    for (int page = 0; rc == JM_OK && (page == 0 || n == DB_PAGE_ROWS);) {
        sql.len = 0;
        if (sql.s)
            sql.s[0] = 0;
        /* the page of the log first, then its rows: joined the other way,
         * the planner may read the whole table for each page */
        db_str_addf(&sql,
                    "SELECT c.id, %s, c.rev, t.%s IS NOT NULL FROM (SELECT rev, id FROM job_changes"
                    " WHERE rev > CAST($%d AS BIGINT) AND rev <= CAST($%d AS BIGINT) ORDER BY rev LIMIT %d) AS c"
                    " LEFT JOIN %s AS t ON ",
                    cols.s, qi, ps, pn, DB_PAGE_ROWS, qt);
        id_eq(&sql, jk, qi, "c.id", idt);
        db_str_add(&sql, " ORDER BY c.rev");
        if (sql.oom || a.oom || cols.oom) {
            rc = jm_fail(err, JM_ENOMEM, "out of memory");
            break;
        }
        rc = run_page(d, "reading changes", sql.s, &a, DB_ROWS_CHANGES, C_REV, fn, ctx, &n, &last, err);
        if (rc && jk == JOIN_CAST && cast_failed(d)) {
            jk = JOIN_AS_TEXT;
            rc = JM_OK;
            continue; /* the same page again */
        }
        if (rc == JM_OK && n == DB_PAGE_ROWS && !arg_set(&a, ps, last))
            rc = jm_fail(err, JM_ENOMEM, "out of memory");
        page++;
    }
out:
    free(last);
    args_free(&a);
    db_str_free(&cols);
    db_str_free(&sql);
    return rc;
}

static int pg_get_job(db *d, const char *id, db_row_fn fn, void *ctx, jm_err *err)
{
    char qt[300], qi[300];
    int rc = source_idents(d, qt, qi, err);
    if (rc)
        return rc;
    pg_args a = {0};
    db_str cols = {0}, sql = {0};
    if ((rc = row_cols_sql(d, 0, NULL, &a, &cols, err)) == JM_OK) {
        db_str_addf(&sql,
                    "SELECT CAST(t.%2$s AS TEXT), %3$s,"
                    " COALESCE((SELECT c.rev FROM job_changes AS c WHERE c.id = CAST(t.%2$s AS TEXT)), 0), true"
                    " FROM %1$s AS t WHERE t.%2$s = $%4$d LIMIT 1",
                    qt, qi, cols.s, arg_text(&a, id));
        int n;
        rc = run_page(d, "reading a job", sql.oom || cols.oom ? NULL : sql.s, &a, 0, C_ID, fn, ctx, &n, NULL, err);
        if (rc && bad_id_syntax(d) && !in_tx(d))
            rc = JM_OK; /* "abc" for an integer id column: no such job */
    }
    args_free(&a);
    db_str_free(&cols);
    db_str_free(&sql);
    return rc;
}

/* One statement for all ids: they travel as one text[] parameter and come
 * back with their position, so repeated ids are all filled. */
static int pg_get_embeddings(db *d, const char *model_id, const char *const *ids, int n, float *out, int dim,
                             int *found, jm_err *err)
{
    char qt[300], qi[300];
    const char *idt = NULL;
    join_kind jk;
    int rc = source_idents(d, qt, qi, err);
    if (rc || (rc = id_join(d, &jk, &idt, err)))
        return rc;
    pg_args a = {0};
    db_str text = {0}, sql = {0};
    int pm = arg_text(&a, model_id);
    if ((rc = text_sql(d, &a, &text, err)))
        goto out;
    int pids = arg_text_array(&a, (char *const *)ids, n);
    for (;;) {
        sql.len = 0;
        if (sql.s)
            sql.s[0] = 0;
        db_str_addf(&sql,
                    "SELECT u.jm_ord, t.embedding FROM unnest(CAST($%d AS TEXT[])) WITH ORDINALITY AS u(jm_id, jm_ord)"
                    " JOIN %s AS t ON ",
                    pids, qt);
        id_eq(&sql, jk, qi, "u.jm_id", idt);
        db_str_addf(&sql,
                    " WHERE NOT (t.embedding IS NULL OR t.embedding_model IS DISTINCT FROM $%d"
                    " OR t.text_hash IS DISTINCT FROM " HASH_OPEN "%s" HASH_CLOSE ")",
                    pm, text.s ? text.s : "''");
        PGresult *r;
        rc = run_fmt(d, "reading embeddings", sql.oom || text.oom ? NULL : sql.s, &a, 1, &r, err);
        if (rc && jk == JOIN_CAST && cast_failed(d)) {
            jk = JOIN_AS_TEXT;
            continue;
        }
        if (rc)
            break;
        for (int k = 0; rc == JM_OK && k < PQntuples(r); k++) {
            int64_t i = bin_i8(r, k, 0) - 1;
            if (i < 0 || i >= n || PQgetisnull(r, k, 1))
                continue;
            if (PQgetlength(r, k, 1) != dim * 4)
                rc = jm_fail(err, JM_EFORMAT, "embedding of job %s has %d bytes, not %d float32 values", ids[i],
                             PQgetlength(r, k, 1), dim);
            else {
                db_vec_from_le((const unsigned char *)PQgetvalue(r, k, 1), dim, out + (size_t)i * (size_t)dim);
                found[i] = 1;
            }
        }
        PQclear(r);
        break;
    }
out:
    args_free(&a);
    db_str_free(&text);
    db_str_free(&sql);
    return rc;
}

static int pg_scan_skills(db *d, const char *model_id, db_skill_fn fn, void *ctx, jm_err *err)
{
    pg_args a = {0};
    arg_text(&a, model_id);
    int pc = arg_text(&a, "");
    pg_args first = a;
    first.n = pc - 1;
    char *last = NULL;
    int rc = JM_OK, n = DB_PAGE_ROWS;
    for (int page = 0; rc == JM_OK && n == DB_PAGE_ROWS; page++) {
        if (page && !arg_set(&a, pc, last)) {
            rc = jm_fail(err, JM_ENOMEM, "out of memory");
            break;
        }
        PGresult *r;
        rc = run_fmt(d, "reading skills",
                     page ? "SELECT name, COALESCE(display, name), CASE WHEN embedding_model = $1 THEN embedding END"
                            " FROM skills WHERE name > $2 ORDER BY name LIMIT 2000"
                          : "SELECT name, COALESCE(display, name), CASE WHEN embedding_model = $1 THEN embedding END"
                            " FROM skills ORDER BY name LIMIT 2000",
                     page ? &a : &first, 1, &r, err);
        if (rc)
            break;
        n = PQntuples(r);
        for (int i = 0; rc == JM_OK && i < n; i++) {
            int len = PQgetisnull(r, i, 2) ? 0 : PQgetlength(r, i, 2);
            rc = fn(ctx, bin_text(r, i, 0), bin_text(r, i, 1),
                    len ? (const unsigned char *)PQgetvalue(r, i, 2) : NULL, (size_t)len);
        }
        if (rc == JM_OK && n > 0) {
            free(last);
            if (!(last = strdup(PQgetvalue(r, n - 1, 0))))
                rc = jm_fail(err, JM_ENOMEM, "out of memory");
        }
        PQclear(r);
    }
    free(last);
    args_free(&a);
    return rc;
}

/* Each term a phrase (phraseto_tsquery: its words in order, stemmed, stop
 * words dropped), OR'd with ||; every term is a parameter. */
static int pg_keyword_search(db *d, const char *const *terms, int n, int limit, db_hit **out, int *nout, jm_err *err)
{
    char qt[300], qi[300];
    int rc = source_idents(d, qt, qi, err);
    if (rc)
        return rc;
    pg_args a = {0};
    db_str q = {0}, vec = {0}, sql = {0};
    char lim[16];
    snprintf(lim, sizeof lim, "%d", limit);
    int pl = arg_text(&a, lim);
    db_str_add(&q, "(");
    for (int i = 0; i < n; i++)
        db_str_addf(&q, "%sphraseto_tsquery('english'::regconfig, $%d)", i ? " || " : "", arg_text(&a, terms[i]));
    db_str_add(&q, ")");
    if (!d->src.attached) {
        db_str_add(&vec, "t.search_vector");
    } else {
        db_search s;
        if ((rc = db_search_of(&d->src, &s, err)) || (rc = search_expr(&s, &vec, err)))
            goto out;
    }
    /* GREATEST: a match scores > 0, as the contract says, whatever the
     * ranking makes of it */
    db_str_addf(&sql,
                "SELECT CAST(t.%1$s AS TEXT), CAST(GREATEST(ts_rank_cd(%2$s, %3$s), 1e-9) AS DOUBLE PRECISION) AS jm_score"
                " FROM %4$s AS t WHERE %2$s @@ %3$s ORDER BY jm_score DESC, 1 LIMIT CAST($%5$d AS INTEGER)",
                qi, vec.s, q.s, qt, pl);
    if (q.oom || vec.oom || sql.oom || a.oom) {
        rc = jm_fail(err, JM_ENOMEM, "out of memory");
        goto out;
    }
    PGresult *r;
    if ((rc = run(d, "keyword search", sql.s, &a, &r, err)))
        goto out;
    int k = PQntuples(r);
    db_hit *hits = k ? calloc((size_t)k, sizeof(db_hit)) : NULL;
    if (k && !hits)
        rc = jm_fail(err, JM_ENOMEM, "out of memory");
    for (int i = 0; rc == JM_OK && i < k; i++) {
        hits[i].id = strdup(PQgetvalue(r, i, 0));
        hits[i].score = strtod(PQgetvalue(r, i, 1), NULL);
        if (!hits[i].id)
            rc = jm_fail(err, JM_ENOMEM, "out of memory");
    }
    PQclear(r);
    if (rc)
        db_hits_free(hits, k);
    else {
        *out = hits;
        *nout = k;
    }
out:
    args_free(&a);
    db_str_free(&q);
    db_str_free(&vec);
    db_str_free(&sql);
    return rc;
}

static const db_ops pg_ops = {
    .close = pg_close,
    .migrate = pg_migrate,
    .meta_get = pg_meta_get,
    .meta_set = pg_meta_set,
    .ping = pg_ping,
    .columns_exist = pg_columns_exist,
    .add_embedding_columns = pg_add_embedding_columns,
    .upsert_jobs = pg_upsert_jobs,
    .delete_job = pg_delete_job,
    .counts = pg_counts,
    .jobs_estimate = pg_jobs_estimate,
    .claim_jobs = pg_claim_jobs,
    .commit_jobs = pg_commit_jobs,
    .insert_skills = pg_insert_skills,
    .each_job_skills = pg_each_job_skills,
    .claim_skills = pg_claim_skills,
    .commit_skills = pg_commit_skills,
    .get_embedding = pg_get_embedding,
    .abort = pg_abort,
    .size = pg_size,
    .scan_jobs = pg_scan_jobs,
    .changes = pg_changes,
    .get_job = pg_get_job,
    .get_embeddings = pg_get_embeddings,
    .scan_skills = pg_scan_skills,
    .keyword_search = pg_keyword_search,
    .install_source = pg_install_source,
};

/* The password as written in a URL (between "user:" and "@"), into buf. */
static void url_password(const char *url, char *buf, size_t cap)
{
    buf[0] = 0;
    const char *s = strstr(url, "://");
    if (!s)
        return;
    s += 3;
    const char *at = strchr(s, '@'), *slash = strchr(s, '/');
    if (!at || (slash && slash < at))
        return;
    const char *colon = memchr(s, ':', (size_t)(at - s));
    if (!colon || (size_t)(at - colon - 1) >= cap)
        return;
    memcpy(buf, colon + 1, (size_t)(at - colon - 1));
    buf[at - colon - 1] = 0;
}

/* conninfo: a postgresql:// or postgres:// URL, or "postgresql:" followed by
 * libpq's key=value form. */
int db_pg_open(db *d, const char *conninfo, jm_err *err)
{
    pg *p = calloc(1, sizeof *p);
    if (!p)
        return jm_fail(err, JM_ENOMEM, "out of memory");
    d->impl = p;
    d->ops = &pg_ops;
    if (!d->display_url[0])
        db_mask_url(conninfo, d->display_url, sizeof d->display_url);
    const char *ci = conninfo;
    if (!strncmp(ci, "postgresql:", 11) && strncmp(ci, "postgresql://", 13))
        ci += 11;
    /* expand_dbname: the URL's own settings override the defaults before it,
     * and client_encoding after it is forced, since every string we pass and
     * read is UTF-8. */
    const char *keys[] = {"connect_timeout", "application_name", "dbname", "client_encoding", NULL};
    const char *vals[] = {"10", "jobmatch", ci, "UTF8", NULL};
    p->c = PQconnectdbParams(keys, vals, 1);
    if (!p->c)
        return jm_fail(err, JM_ENOMEM, "%s: cannot connect: out of memory", d->display_url);
    if (PQstatus(p->c) != CONNECTION_OK) {
        /* libpq does not print passwords, but a malformed URL is quoted back
         * in parts: scrub the password, raw and decoded, to be sure. */
        char msg[JM_ERRLEN], raw[256];
        snprintf(msg, sizeof msg, "%s", PQerrorMessage(p->c));
        one_line(msg);
        url_password(ci, raw, sizeof raw);
        scrub(msg, sizeof msg, raw);
        PQconninfoOption *opts = PQconninfoParse(ci, NULL);
        for (PQconninfoOption *o = opts; o && o->keyword; o++)
            if (!strcmp(o->keyword, "password") && o->val)
                scrub(msg, sizeof msg, o->val);
        PQconninfoFree(opts);
        return jm_fail(err, JM_EIO, "%s: cannot connect: %s", d->display_url, msg);
    }
    PQsetNoticeProcessor(p->c, quiet_notice, NULL);
    if (PQserverVersion(p->c) < 120000)
        return jm_fail(err, JM_EIO, "%s: PostgreSQL %d.%d is too old (12 or newer needed, for sha256() and generated columns)",
                       d->display_url, PQserverVersion(p->c) / 10000, PQserverVersion(p->c) / 100 % 100);
    return JM_OK;
}
