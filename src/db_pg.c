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
 * connection error is scrubbed of it and everything else names the masked URL. */
#include <libpq-fe.h>
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
        int rc = r ? pg_fail(d, r, what, err) : jm_fail(err, JM_ENOMEM, "%s: %s: out of memory", d->display_url, what);
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

static const char *const *const migrations[] = {migration1};

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
    for (int i = have; i < DB_SCHEMA_VERSION; i++)
        for (const char *const *s = migrations[i]; *s; s++)
            if ((rc = run(d, "migrating", *s, NULL, NULL, err)))
                goto fail;
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

static int pg_claim_jobs(db *d, const char *model_id, const char *after, int limit, db_batch *out, jm_err *err)
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
        db_str_addf(&sql, "t.%s > $%d AND ", qid, arg_text(&a, after));
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
    .claim_jobs = pg_claim_jobs,
    .commit_jobs = pg_commit_jobs,
    .insert_skills = pg_insert_skills,
    .each_job_skills = pg_each_job_skills,
    .claim_skills = pg_claim_skills,
    .commit_skills = pg_commit_skills,
    .get_embedding = pg_get_embedding,
    .abort = pg_abort,
    .size = pg_size,
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
    if (PQserverVersion(p->c) < 110000)
        return jm_fail(err, JM_EIO, "%s: PostgreSQL %d.%d is too old (11 or newer needed, for sha256())",
                       d->display_url, PQserverVersion(p->c) / 10000, PQserverVersion(p->c) / 100 % 100);
    return JM_OK;
}
