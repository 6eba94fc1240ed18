/* test_db.c - the job store (db_) against both backends with one suite.
 *
 * Always runs against a fresh SQLite file in a temp directory. When
 * JM_TEST_PG_URL is set (e.g. the URL `sh tests/pg.sh start /tmp/jm-pg 55432`
 * prints), runs again against PostgreSQL, in a database created for this run
 * on that server and dropped at the end (if the role may not create databases,
 * in the URL's own database after dropping jobmatch's tables there).
 *
 * What the store stores is checked with direct SQL on a second connection
 * (sqlite3 / libpq), not only through db_ itself. */
#include <libpq-fe.h>
#include <math.h>
#include <openssl/evp.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "db.h"

#define DIM 8
#define MODEL "test-model-1"
#define MODEL2 "test-model-2"

/* ---------- a raw connection beside the store ---------- */

typedef struct raw {
    const char *kind; /* "sqlite" or "postgresql" */
    sqlite3 *sq;
    PGconn *pc;
} raw;

static int raw_open(raw *r, const char *kind, const char *url)
{
    memset(r, 0, sizeof *r);
    r->kind = kind;
    if (!strcmp(kind, "sqlite")) {
        if (sqlite3_open(url, &r->sq) != SQLITE_OK)
            return -1;
        sqlite3_busy_timeout(r->sq, 10000);
        return 0;
    }
    r->pc = PQconnectdb(url);
    if (PQstatus(r->pc) != CONNECTION_OK) {
        fprintf(stderr, "raw connect: %s", PQerrorMessage(r->pc));
        return -1;
    }
    PQclear(PQexec(r->pc, "SET client_min_messages = warning"));
    return 0;
}

static void raw_close(raw *r)
{
    if (r->sq)
        sqlite3_close(r->sq);
    if (r->pc)
        PQfinish(r->pc);
    memset(r, 0, sizeof *r);
}

static int is_pg(const raw *r) { return r->pc != NULL; }

/* Run SQL without results. 0 on success. */
static int raw_exec(raw *r, const char *sql)
{
    if (r->sq) {
        char *msg = NULL;
        int rc = sqlite3_exec(r->sq, sql, NULL, NULL, &msg);
        if (rc != SQLITE_OK)
            fprintf(stderr, "raw sqlite: %s: %s\n", sql, msg ? msg : "?");
        sqlite3_free(msg);
        return rc == SQLITE_OK ? 0 : -1;
    }
    PGresult *res = PQexec(r->pc, sql);
    int ok = PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK;
    if (!ok)
        fprintf(stderr, "raw pg: %s: %s", sql, PQerrorMessage(r->pc));
    PQclear(res);
    return ok ? 0 : -1;
}

/* All rows of a query with at most one text parameter ($1), as one malloc'd
 * string: columns joined by '|', rows ended by '\n' (NULL shows as "~").
 * Blob columns are not for this: see raw_blob. NULL on error. */
static char *raw_rows(raw *r, const char *sql, const char *param)
{
    size_t cap = 256, len = 0;
    char *out = malloc(cap);
    out[0] = 0;
#define APPEND(s)                                        \
    do {                                                 \
        const char *s_ = (s);                            \
        size_t l_ = strlen(s_);                          \
        while (len + l_ + 1 > cap)                       \
            out = realloc(out, cap *= 2);                \
        memcpy(out + len, s_, l_ + 1);                   \
        len += l_;                                       \
    } while (0)
    if (r->sq) {
        sqlite3_stmt *st;
        if (sqlite3_prepare_v2(r->sq, sql, -1, &st, NULL) != SQLITE_OK) {
            fprintf(stderr, "raw sqlite: %s: %s\n", sql, sqlite3_errmsg(r->sq));
            free(out);
            return NULL;
        }
        if (param)
            sqlite3_bind_text(st, 1, param, -1, SQLITE_STATIC);
        while (sqlite3_step(st) == SQLITE_ROW) {
            for (int c = 0; c < sqlite3_column_count(st); c++) {
                const char *v = (const char *)sqlite3_column_text(st, c);
                if (c)
                    APPEND("|");
                APPEND(v ? v : "~");
            }
            APPEND("\n");
        }
        sqlite3_finalize(st);
        return out;
    }
    const char *vals[1] = {param};
    PGresult *res = PQexecParams(r->pc, sql, param ? 1 : 0, NULL, vals, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        fprintf(stderr, "raw pg: %s: %s", sql, PQerrorMessage(r->pc));
        PQclear(res);
        free(out);
        return NULL;
    }
    for (int i = 0; i < PQntuples(res); i++) {
        for (int c = 0; c < PQnfields(res); c++) {
            if (c)
                APPEND("|");
            APPEND(PQgetisnull(res, i, c) ? "~" : PQgetvalue(res, i, c));
        }
        APPEND("\n");
    }
    PQclear(res);
    return out;
#undef APPEND
}

/* The first row's first column (without the trailing newline), malloc'd. */
static char *raw_value(raw *r, const char *sql, const char *param)
{
    char *s = raw_rows(r, sql, param);
    if (!s)
        return NULL;
    char *nl = strchr(s, '\n');
    if (nl)
        *nl = 0;
    return s;
}

/* The bytes of a blob/bytea value (first row, first column); *len = -1 when
 * there is no row or the value is NULL. */
static unsigned char *raw_blob(raw *r, const char *sql, const char *param, long *len)
{
    *len = -1;
    if (r->sq) {
        sqlite3_stmt *st;
        if (sqlite3_prepare_v2(r->sq, sql, -1, &st, NULL) != SQLITE_OK)
            return NULL;
        sqlite3_bind_text(st, 1, param, -1, SQLITE_STATIC);
        unsigned char *out = NULL;
        if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL) {
            *len = sqlite3_column_bytes(st, 0);
            out = malloc((size_t)*len + 1);
            memcpy(out, sqlite3_column_blob(st, 0), (size_t)*len);
        }
        sqlite3_finalize(st);
        return out;
    }
    const char *vals[1] = {param};
    PGresult *res = PQexecParams(r->pc, sql, 1, NULL, vals, NULL, NULL, 1); /* binary results */
    unsigned char *out = NULL;
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) > 0 && !PQgetisnull(res, 0, 0)) {
        *len = PQgetlength(res, 0, 0);
        out = malloc((size_t)*len + 1);
        memcpy(out, PQgetvalue(res, 0, 0), (size_t)*len);
    }
    PQclear(res);
    return out;
}

/* ---------- helpers ---------- */

static char *xstrdup(const char *s) { return s ? strdup(s) : NULL; }

/* Lower-case hex SHA-256 of a string, computed here independently of db.c. */
static void sha256_hex(const char *s, char hex[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_Digest(s, strlen(s), md, &n, EVP_sha256(), NULL);
    for (unsigned int i = 0; i < n && i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    hex[64] = 0;
}

/* A job with the given fields; skills "A,B" are required, "~A" nice to have. */
static void make_job(db_job *j, const char *id, const char *title, const char *desc, const char *skills)
{
    db_job_init(j);
    j->id = xstrdup(id);
    j->title = xstrdup(title);
    j->description = xstrdup(desc);
    j->company = xstrdup("Acme");
    j->remote = 1;
    j->salary_min = 50000.5;
    if (skills && *skills) {
        char *copy = strdup(skills), *save = NULL;
        j->skills = calloc(16, sizeof(db_skill));
        for (char *s = strtok_r(copy, ",", &save); s && j->nskills < 16; s = strtok_r(NULL, ",", &save)) {
            int req = *s != '~';
            j->skills[j->nskills].name = strdup(req ? s : s + 1);
            j->skills[j->nskills].required = req;
            j->nskills++;
        }
        free(copy);
    }
}

static int upsert1(db *d, const char *id, const char *title, const char *desc, const char *skills, int *changed,
                   jm_err *err)
{
    db_job j;
    make_job(&j, id, title, desc, skills);
    int rc = db_upsert_jobs(d, &j, 1, changed, err);
    db_job_clear(&j);
    return rc;
}

/* Deterministic vector for row i. */
static void fill_vecs(float *v, int n, float seed)
{
    for (int i = 0; i < n * DIM; i++)
        v[i] = seed + (float)i * 0.25f - 1.0f;
}

/* Claim everything pending for model (in batches of `limit`) and commit it;
 * returns how many rows were embedded, or -1. */
static int embed_all(db *d, const char *model, int limit, int skills)
{
    int total = 0;
    char *after = NULL;
    jm_err err = {0};
    for (;;) {
        db_batch b;
        int rc = skills ? db_claim_skills(d, model, after, limit, &b, &err)
                        : db_claim_jobs(d, model, after, limit, &b, &err);
        if (rc) {
            fprintf(stderr, "embed_all claim: %s\n", err.msg);
            free(after);
            return -1;
        }
        if (b.n == 0) {
            db_batch_free(&b);
            break;
        }
        float *v = malloc(sizeof(float) * (size_t)b.n * DIM);
        fill_vecs(v, b.n, (float)total);
        rc = skills ? db_commit_skills(d, &b, v, DIM, model, &err) : db_commit_jobs(d, &b, v, DIM, model, &err);
        free(v);
        if (rc) {
            fprintf(stderr, "embed_all commit: %s\n", err.msg);
            db_batch_free(&b);
            free(after);
            return -1;
        }
        total += b.n;
        free(after);
        after = strdup(b.ids[b.n - 1]);
        db_batch_free(&b);
    }
    free(after);
    return total;
}

static db_counts counts(db *d, const char *model)
{
    db_counts c;
    jm_err err = {0};
    if (db_counts_get(d, model, &c, &err)) {
        fprintf(stderr, "counts: %s\n", err.msg);
        memset(&c, 0xff, sizeof c);
    }
    return c;
}

#define CHECK_COUNTS(d, model, njobs, nemb, nstale, nmiss)                                                    \
    do {                                                                                                   \
        db_counts c_ = counts((d), (model));                                                               \
        CHECK(c_.jobs == (njobs) && c_.embedded == (nemb) && c_.stale == (nstale) && c_.missing == (nmiss), \
              "[%s] counts jobs %lld embedded %lld stale %lld missing %lld, want %d %d %d %d", kind,        \
              (long long)c_.jobs, (long long)c_.embedded, (long long)c_.stale, (long long)c_.missing,       \
              (njobs), (nemb), (nstale), (nmiss));                                                         \
    } while (0)

/* ---------- the suite ---------- */

static const char *kind; /* backend under test, for messages */

static void test_open_migrate(const char *url, raw *r)
{
    db *d = NULL;
    jm_err err = {0};
    int rc = db_open(url, &d, &err);
    CHECK(rc == JM_OK, "[%s] open: %s", kind, err.msg);
    if (rc)
        return;
    CHECK(!strcmp(db_kind(d), kind), "[%s] kind %s", kind, db_kind(d));
    int v = -1;
    CHECK(db_schema_version(d, &v, &err) == JM_OK && v == DB_SCHEMA_VERSION, "[%s] schema version %d", kind, v);
    CHECK(db_migrate(d, &err) == JM_OK, "[%s] migrate again: %s", kind, err.msg);
    CHECK(db_migrate(d, &err) == JM_OK, "[%s] migrate a third time: %s", kind, err.msg);
    v = -1;
    CHECK(db_schema_version(d, &v, &err) == JM_OK && v == DB_SCHEMA_VERSION, "[%s] schema version after rerun %d",
          kind, v);
    CHECK(db_ping(d, &err) == JM_OK, "[%s] ping: %s", kind, err.msg);
    int64_t size = 0;
    CHECK(db_size(d, &size, &err) == JM_OK && size > 0, "[%s] size %lld: %s", kind, (long long)size, err.msg);
    db_close(d);

    /* reopening migrates again: still one schema_version row, still 2 */
    d = NULL;
    rc = db_open(url, &d, &err);
    CHECK(rc == JM_OK, "[%s] reopen: %s", kind, err.msg);
    db_close(d);
    char *s = raw_rows(r, "SELECT value FROM meta WHERE key = 'schema_version'", NULL);
    CHECK(s && !strcmp(s, "2\n"), "[%s] meta schema_version rows: %s", kind, s ? s : "(error)");
    free(s);
    s = raw_rows(r, "SELECT count(*) FROM jobs", NULL);
    CHECK(s && !strcmp(s, "0\n"), "[%s] jobs table empty: %s", kind, s ? s : "(error)");
    free(s);
    s = raw_rows(r, "SELECT count(*) FROM skills", NULL);
    CHECK(s && !strcmp(s, "0\n"), "[%s] skills table empty: %s", kind, s ? s : "(error)");
    free(s);
    db_close(NULL);
}

static void test_meta(db *d)
{
    jm_err err = {0};
    char *v = (char *)"x";
    CHECK(db_meta_get(d, "no_such_key", &v, &err) == JM_OK && v == NULL, "[%s] absent key gives NULL", kind);
    CHECK(db_meta_set(d, "model_id", "m1", &err) == JM_OK, "[%s] meta set: %s", kind, err.msg);
    CHECK(db_meta_get(d, "model_id", &v, &err) == JM_OK && v && !strcmp(v, "m1"), "[%s] meta get %s", kind,
          v ? v : "(null)");
    free(v);
    CHECK(db_meta_set(d, "model_id", "m2 \xc3\xa9 'quote' \"dq\"", &err) == JM_OK, "[%s] meta overwrite: %s", kind,
          err.msg);
    CHECK(db_meta_get(d, "model_id", &v, &err) == JM_OK && v && !strcmp(v, "m2 \xc3\xa9 'quote' \"dq\""),
          "[%s] meta get after overwrite %s", kind, v ? v : "(null)");
    free(v);
    CHECK(db_meta_set(d, "empty", "", &err) == JM_OK, "[%s] meta set empty: %s", kind, err.msg);
    CHECK(db_meta_get(d, "empty", &v, &err) == JM_OK && v && !*v, "[%s] empty value comes back empty", kind);
    free(v);
}

static void test_upsert(db *d, raw *r)
{
    jm_err err = {0};
    db_job jobs[3];
    make_job(&jobs[0], "a", "Backend Engineer", "Build APIs.", "Python,~PostgreSQL");
    make_job(&jobs[1], "b", "Data Scientist", "Model things.", "Python,SQL");
    make_job(&jobs[2], "c", "Frontend Developer", NULL, "");
    jobs[2].remote = -1;
    jobs[2].salary_min = NAN;
    jobs[2].posted_at = strdup("2026-01-02");
    int changed = -1;
    CHECK(db_upsert_jobs(d, jobs, 3, &changed, &err) == JM_OK && changed == 3, "[%s] insert 3: changed %d %s", kind,
          changed, err.msg);
    CHECK_COUNTS(d, MODEL, 3, 0, 0, 3);
    /* the size hint for bulk loads: counted (SQLite) or the planner's
     * estimate, which ANALYZE makes exact here (PostgreSQL) */
    int64_t est = -1;
    CHECK(raw_exec(r, "ANALYZE") == 0 && db_jobs_estimate(d, &est, &err) == JM_OK && est == 3,
          "[%s] jobs estimate %lld: %s", kind, (long long)est, err.msg);

    char *before = raw_rows(r, "SELECT id, updated_at FROM jobs ORDER BY id", NULL);
    CHECK(before && strlen(before) > 0, "[%s] updated_at rows", kind);
    char *ua = raw_value(r, "SELECT updated_at FROM jobs WHERE id = $1", "a");
    /* "2026-11-24T03:17:11.123Z" */
    CHECK(ua && strlen(ua) == 24 && ua[4] == '-' && ua[10] == 'T' && ua[19] == '.' && ua[23] == 'Z',
          "[%s] updated_at format %s", kind, ua ? ua : "(null)");
    free(ua);

    struct timespec ts = {0, 5 * 1000 * 1000};
    nanosleep(&ts, NULL);
    changed = -1;
    CHECK(db_upsert_jobs(d, jobs, 3, &changed, &err) == JM_OK && changed == 0, "[%s] same again: changed %d %s",
          kind, changed, err.msg);
    char *after = raw_rows(r, "SELECT id, updated_at FROM jobs ORDER BY id", NULL);
    CHECK(before && after && !strcmp(before, after), "[%s] unchanged rows keep updated_at", kind);
    free(after);

    /* what the columns hold */
    char *row = raw_value(r,
                          "SELECT title, company, CAST(remote AS TEXT), CAST(salary_min AS TEXT), description, skills,"
                          " skill_names, posted_at FROM jobs WHERE id = $1",
                          "a");
    const char *want_remote = !strcmp(kind, "sqlite") ? "1" : "true";
    char want[512];
    snprintf(want, sizeof want,
             "Backend Engineer|Acme|%s|50000.5|Build APIs.|[{\"name\":\"Python\",\"required\":true},"
             "{\"name\":\"PostgreSQL\",\"required\":false}]|Python, PostgreSQL|~",
             want_remote);
    CHECK(row && !strcmp(row, want), "[%s] row a: %s", kind, row ? row : "(null)");
    free(row);
    row = raw_value(r, "SELECT remote, salary_min, description, skills, skill_names, posted_at FROM jobs WHERE id = $1",
                    "c");
    CHECK(row && !strcmp(row, "~|~|~|[]||2026-01-02"), "[%s] row c: %s", kind, row ? row : "(null)");
    free(row);

    /* a modified row: changed 1, new updated_at, and (once embedded) stale */
    CHECK(embed_all(d, MODEL, 10, 0) == 3, "[%s] embed 3", kind);
    CHECK_COUNTS(d, MODEL, 3, 3, 0, 0);
    free(jobs[1].title);
    jobs[1].title = strdup("Senior Data Scientist");
    nanosleep(&ts, NULL);
    changed = -1;
    CHECK(db_upsert_jobs(d, jobs, 3, &changed, &err) == JM_OK && changed == 1, "[%s] one modified: changed %d %s",
          kind, changed, err.msg);
    after = raw_rows(r, "SELECT id, updated_at FROM jobs ORDER BY id", NULL);
    CHECK(before && after && strcmp(before, after), "[%s] modified row has a new updated_at", kind);
    char *ub = raw_value(r, "SELECT updated_at FROM jobs WHERE id = $1", "b");
    CHECK(ub && after && strstr(after, ub), "[%s] b's updated_at", kind);
    CHECK(before && ub && !strstr(before, ub), "[%s] b's updated_at moved", kind);
    free(ub);
    free(before);
    free(after);
    CHECK_COUNTS(d, MODEL, 3, 2, 1, 0);

    /* a change in a field outside the text (salary) is a change, but not stale */
    jobs[0].salary_max = 90000;
    changed = -1;
    CHECK(db_upsert_jobs(d, jobs, 3, &changed, &err) == JM_OK && changed == 1, "[%s] salary change: changed %d",
          kind, changed);
    CHECK_COUNTS(d, MODEL, 3, 2, 1, 0);

    /* the same id twice in one call applies in order */
    db_job dup[2];
    make_job(&dup[0], "dup", "First", "one", "Go");
    make_job(&dup[1], "dup", "Second", "two", "Rust");
    changed = -1;
    CHECK(db_upsert_jobs(d, dup, 2, &changed, &err) == JM_OK && changed == 2, "[%s] dup ids: changed %d %s", kind,
          changed, err.msg);
    row = raw_value(r, "SELECT title, skill_names FROM jobs WHERE id = $1", "dup");
    CHECK(row && !strcmp(row, "Second|Rust"), "[%s] last duplicate wins: %s", kind, row ? row : "(null)");
    free(row);
    db_job_clear(&dup[0]);
    db_job_clear(&dup[1]);

    /* refused: a job without id */
    db_job noid;
    make_job(&noid, NULL, "x", "y", "");
    CHECK(db_upsert_jobs(d, &noid, 1, &changed, &err) == JM_EINVAL, "[%s] job without id refused", kind);
    db_job_clear(&noid);

    /* delete */
    int found = -1;
    CHECK(db_delete_job(d, "dup", &found, &err) == JM_OK && found == 1, "[%s] delete existing: found %d", kind, found);
    found = -1;
    CHECK(db_delete_job(d, "dup", &found, &err) == JM_OK && found == 0, "[%s] delete again: found %d", kind, found);
    CHECK_COUNTS(d, MODEL, 3, 2, 1, 0);
    for (int i = 0; i < 3; i++)
        db_job_clear(&jobs[i]);
}

static void test_claim_cycle(const char *url, db *d, raw *r)
{
    jm_err err = {0};
    int changed;
    /* a fresh set: ids j1..j5 */
    for (int i = 1; i <= 5; i++) {
        char id[8], title[32];
        snprintf(id, sizeof id, "j%d", i);
        snprintf(title, sizeof title, "Job %d", i);
        upsert1(d, id, title, i == 3 ? NULL : "Does things.", i == 2 ? "C,~Go" : "", &changed, &err);
    }
    /* 3 from test_upsert (a, b stale; b needs it) + 5 new */
    CHECK_COUNTS(d, MODEL, 8, 2, 1, 5);

    db_batch b;
    CHECK(db_claim_jobs(d, MODEL, NULL, 2, &b, &err) == JM_OK && b.n == 2, "[%s] claim 2: n %d %s", kind, b.n,
          err.msg);
    if (b.n == 2) {
        CHECK(!strcmp(b.ids[0], "b") && !strcmp(b.ids[1], "j1"), "[%s] claim order: %s %s", kind, b.ids[0], b.ids[1]);
        CHECK(!strcmp(b.texts[0], "Senior Data Scientist. Model things. Skills: Python, SQL"), "[%s] text b: %s", kind,
              b.texts[0]);
        CHECK(!strcmp(b.texts[1], "Job 1. Does things. Skills: "), "[%s] text j1: \"%s\"", kind, b.texts[1]);
    }
    /* a second claim while this one is open is an error */
    db_batch b2;
    CHECK(db_claim_jobs(d, MODEL, NULL, 2, &b2, &err) != JM_OK && b2.n == 0, "[%s] nested claim refused", kind);
    db_batch_free(&b2);
    db_abort(d); /* the refusal may have ended the batch already: abort is harmless */
    db_batch_free(&b);

    /* abort releases the claim: the same rows come back */
    CHECK(db_claim_jobs(d, MODEL, NULL, 2, &b, &err) == JM_OK && b.n == 2, "[%s] claim after refusal: %s", kind,
          err.msg);
    db_abort(d);
    db_batch b3;
    CHECK(db_claim_jobs(d, MODEL, NULL, 2, &b3, &err) == JM_OK && b3.n == 2, "[%s] claim after abort: %s", kind,
          err.msg);
    CHECK(b.n == 2 && b3.n == 2 && !strcmp(b.ids[0], b3.ids[0]) && !strcmp(b.ids[1], b3.ids[1]),
          "[%s] abort gave the rows back", kind);
    db_batch_free(&b);

    /* import while a batch is open is refused, and leaves the batch alone */
    CHECK(upsert1(d, "j9", "Job 9", "x", "", &changed, &err) != JM_OK, "[%s] upsert during a claim refused", kind);
    CHECK(db_migrate(d, &err) != JM_OK, "[%s] migrate during a claim refused", kind);
    /* another connection opening the store meanwhile (`status` or `serve`
     * while `embed` runs) is not kept waiting for the claim's lock: on
     * SQLite that wait lasted the busy timeout (60 s), then failed */
    db *d2 = NULL;
    CHECK(db_open(url, &d2, &err) == JM_OK && db_migrate(d2, &err) == JM_OK,
          "[%s] open and migrate beside an open claim: %s", kind, err.msg);
    db_close(d2);

    /* commit: the two become fresh, with the hash of the claimed text */
    float v[2 * DIM];
    fill_vecs(v, 2, 0.5f);
    CHECK(db_commit_jobs(d, &b3, v, DIM, MODEL, &err) == JM_OK, "[%s] commit: %s", kind, err.msg);
    CHECK_COUNTS(d, MODEL, 8, 4, 0, 4);
    if (b3.n == 2) {
        char hex[65];
        sha256_hex(b3.texts[1], hex);
        char *h = raw_value(r, "SELECT text_hash FROM jobs WHERE id = $1", b3.ids[1]);
        CHECK(h && !strcmp(h, hex), "[%s] text_hash is sha256 of the text: %s vs %s", kind, h ? h : "(null)", hex);
        free(h);
        char *m = raw_value(r, "SELECT embedding_model FROM jobs WHERE id = $1", b3.ids[1]);
        CHECK(m && !strcmp(m, MODEL), "[%s] embedding_model %s", kind, m ? m : "(null)");
        free(m);
    }
    db_batch_free(&b3);

    /* commit without a claim */
    db_batch none = {0};
    CHECK(db_commit_jobs(d, &none, v, DIM, MODEL, &err) == JM_EINVAL, "[%s] commit without claim refused", kind);

    /* the cursor: after "j2" only j3.. */
    CHECK(db_claim_jobs(d, MODEL, "j2", 10, &b, &err) == JM_OK && b.n == 3, "[%s] claim after j2: n %d", kind, b.n);
    CHECK(b.n == 3 && !strcmp(b.ids[0], "j3") && !strcmp(b.ids[2], "j5"), "[%s] cursor ids", kind);
    if (b.n == 3)
        CHECK(!strcmp(b.texts[0], "Job 3.  Skills: "), "[%s] NULL description gives empty text: \"%s\"", kind,
              b.texts[0]);
    db_abort(d);
    db_batch_free(&b);
    CHECK(db_claim_jobs(d, MODEL, "j5", 10, &b, &err) == JM_OK && b.n == 0, "[%s] nothing after j5: n %d", kind,
          b.n);
    db_batch_free(&b);

    CHECK(embed_all(d, MODEL, 3, 0) == 4, "[%s] embed the rest", kind);
    CHECK_COUNTS(d, MODEL, 8, 8, 0, 0);
    /* nothing pending: n == 0 and no transaction left open (a second claim works) */
    CHECK(db_claim_jobs(d, MODEL, NULL, 10, &b, &err) == JM_OK && b.n == 0, "[%s] nothing pending: n %d %s", kind,
          b.n, err.msg);
    db_batch_free(&b);
    CHECK(db_claim_jobs(d, MODEL, NULL, 10, &b, &err) == JM_OK && b.n == 0, "[%s] still nothing, no open tx: %s",
          kind, err.msg);
    db_batch_free(&b);
    CHECK(db_meta_set(d, "after_empty_claim", "1", &err) == JM_OK, "[%s] writes work after empty claim: %s", kind,
          err.msg);

    /* a text change makes exactly that job stale */
    upsert1(d, "j4", "Job 4", "Does other things.", "", &changed, &err);
    CHECK(changed == 1, "[%s] j4 changed", kind);
    CHECK_COUNTS(d, MODEL, 8, 7, 1, 0);
    CHECK(db_claim_jobs(d, MODEL, NULL, 10, &b, &err) == JM_OK && b.n == 1 && !strcmp(b.ids[0], "j4"),
          "[%s] only j4 pending", kind);
    db_abort(d);
    db_batch_free(&b);

    /* a text change made behind the store's back (raw SQL) is seen too */
    CHECK(raw_exec(r, "UPDATE jobs SET description = 'Edited by hand.' WHERE id = 'j5'") == 0, "[%s] raw edit",
          kind);
    CHECK_COUNTS(d, MODEL, 8, 6, 2, 0);
    CHECK(embed_all(d, MODEL, 10, 0) == 2, "[%s] re-embed 2", kind);
    CHECK_COUNTS(d, MODEL, 8, 8, 0, 0);

    /* another model: everything stale for it, fresh again for the old one */
    CHECK_COUNTS(d, MODEL2, 8, 0, 8, 0);
    CHECK(embed_all(d, MODEL2, 5, 0) == 8, "[%s] embed all for model 2", kind);
    CHECK_COUNTS(d, MODEL2, 8, 8, 0, 0);
    CHECK_COUNTS(d, MODEL, 8, 0, 8, 0);
}

/* Values whose bits must survive: signed zero, subnormals, extremes, NaN
 * payloads, infinities. */
static void test_vector_bits(db *d, raw *r)
{
    jm_err err = {0};
    int changed;
    upsert1(d, "vec", "Vector", "bits", "", &changed, &err);
    db_batch b;
    float v[DIM];
    uint32_t bits[DIM] = {0x80000000u, 0x00000001u, 0x007fffffu, 0x7f7fffffu,
                          0x7fc00001u, 0xff800000u, 0x3eaaaaabu, 0xbf800000u};
    memcpy(v, bits, sizeof v);
    /* claim exactly "vec": everything else is fresh for MODEL2 */
    CHECK(db_claim_jobs(d, MODEL2, NULL, 10, &b, &err) == JM_OK && b.n == 1 && !strcmp(b.ids[0], "vec"),
          "[%s] claim vec: n %d", kind, b.n);
    CHECK(db_commit_jobs(d, &b, v, DIM, MODEL2, &err) == JM_OK, "[%s] commit vec: %s", kind, err.msg);
    db_batch_free(&b);
    long len;
    unsigned char *blob = raw_blob(r, "SELECT embedding FROM jobs WHERE id = $1", "vec", &len);
    unsigned char want[DIM * 4];
    db_vec_to_le(v, DIM, want);
    CHECK(blob && len == DIM * 4 && !memcmp(blob, want, sizeof want), "[%s] embedding bytes: len %ld", kind, len);
    /* little-endian float32: the first value (-0.0) is 00 00 00 80 */
    CHECK(blob && len >= 4 && blob[0] == 0 && blob[3] == 0x80, "[%s] little-endian layout", kind);
    if (blob && len == DIM * 4) {
        float back[DIM];
        db_vec_from_le(blob, DIM, back);
        CHECK(!memcmp(back, v, sizeof v), "[%s] floats round-trip bit-exactly", kind);
    }
    free(blob);

    /* and through the API */
    float *got = NULL;
    int dim = 0;
    char *model = NULL;
    int rc = db_get_job_embedding(d, "vec", &got, &dim, &model, &err);
    CHECK(rc == JM_OK && got && dim == DIM && model && !strcmp(model, MODEL2) && !memcmp(got, v, sizeof v),
          "[%s] db_get_job_embedding: rc %d dim %d model %s", kind, rc, dim, model ? model : "(null)");
    free(got);
    free(model);
    rc = db_get_job_embedding(d, "no-such-job", &got, &dim, &model, &err);
    CHECK(rc == JM_ENOTFOUND && !got && !model, "[%s] embedding of a missing job: %d", kind, rc);
    upsert1(d, "vec-none", "Vector", "none yet", "", &changed, &err);
    rc = db_get_job_embedding(d, "vec-none", &got, &dim, &model, &err);
    CHECK(rc == JM_OK && !got && !model && dim == 0, "[%s] job without embedding: %d", kind, rc);
    int found = -1;
    CHECK(db_delete_job(d, "vec-none", &found, &err) == JM_OK && found == 1, "[%s] delete vec-none", kind);
}

static void test_skills(db *d, raw *r)
{
    jm_err err = {0};
    int changed, added = -1;
    /* the jobs so far name: Python, PostgreSQL, SQL, C, Go; add spelling variants */
    upsert1(d, "sk1", "Skills", "x", "  python ,Kubernetes,~GO", &changed, &err);
    CHECK(db_sync_skills(d, &added, &err) == JM_OK && added == 6, "[%s] sync skills: added %d %s", kind, added,
          err.msg);
    char *names = raw_rows(r, "SELECT name FROM skills ORDER BY name", NULL);
    CHECK(names && !strcmp(names, "c\ngo\nkubernetes\npostgresql\npython\nsql\n"), "[%s] skill names: %s", kind,
          names ? names : "(error)");
    free(names);
    added = -1;
    CHECK(db_sync_skills(d, &added, &err) == JM_OK && added == 0, "[%s] sync again adds nothing: %d", kind, added);
    db_counts c = counts(d, MODEL);
    CHECK(c.skills == 6 && c.skills_pending == 6, "[%s] skill counts %lld %lld", kind, (long long)c.skills,
          (long long)c.skills_pending);

    db_batch b;
    CHECK(db_claim_skills(d, MODEL, NULL, 2, &b, &err) == JM_OK && b.n == 2, "[%s] claim skills: %s", kind, err.msg);
    if (b.n == 2) {
        CHECK(!strcmp(b.ids[0], "c") && !strcmp(b.ids[1], "go"), "[%s] skill ids %s %s", kind, b.ids[0], b.ids[1]);
        CHECK(!strcmp(b.texts[0], "C"), "[%s] skill display %s", kind, b.texts[0]);
    }
    db_abort(d);
    db_batch_free(&b);
    CHECK(embed_all(d, MODEL, 4, 1) == 6, "[%s] embed skills", kind);
    c = counts(d, MODEL);
    CHECK(c.skills == 6 && c.skills_pending == 0, "[%s] skills embedded: pending %lld", kind,
          (long long)c.skills_pending);
    CHECK(db_claim_skills(d, MODEL, NULL, 10, &b, &err) == JM_OK && b.n == 0, "[%s] no skills pending", kind);
    db_batch_free(&b);
    long len;
    unsigned char *blob = raw_blob(r, "SELECT embedding FROM skills WHERE name = $1", "python", &len);
    CHECK(blob && len == DIM * 4, "[%s] skill embedding length %ld", kind, len);
    free(blob);
    c = counts(d, MODEL2);
    CHECK(c.skills_pending == 6, "[%s] other model: skills pending %lld", kind, (long long)c.skills_pending);
    /* a new skill later: only it is pending */
    upsert1(d, "sk2", "More skills", "y", "Terraform", &changed, &err);
    CHECK(db_sync_skills(d, &added, &err) == JM_OK && added == 1, "[%s] one new skill: %d", kind, added);
    c = counts(d, MODEL);
    CHECK(c.skills == 7 && c.skills_pending == 1, "[%s] one skill pending: %lld", kind, (long long)c.skills_pending);
}

/* Ids that need escaping anywhere they are spliced or listed, and a batch big
 * enough to cross the PostgreSQL backend's statement chunks. */
static void test_odd_ids_and_volume(db *d, raw *r)
{
    jm_err err = {0};
    const char *odd[] = {"we\"ird\\id", "{br,ace}", "it's", "NULL", "\xc3\xa9t\xc3\xa9 \xe2\x9c\x93", " space "};
    int nodd = (int)(sizeof odd / sizeof odd[0]);
    int n = 600 + nodd;
    db_job *jobs = calloc((size_t)n + 1, sizeof(db_job));
    for (int i = 0; i < 600; i++) {
        char id[16];
        snprintf(id, sizeof id, "v%04d", i);
        make_job(&jobs[i], id, "Bulk", "row", "Bulk skill");
    }
    for (int i = 0; i < nodd; i++)
        make_job(&jobs[600 + i], odd[i], "Odd", "id", "");
    /* a repeat of v0100 in the middle of a chunk, with other content */
    make_job(&jobs[n], "v0100", "Bulk again", "row", "Bulk skill");
    int changed = -1;
    CHECK(db_upsert_jobs(d, jobs, n + 1, &changed, &err) == JM_OK && changed == n + 1, "[%s] bulk upsert: %d %s",
          kind, changed, err.msg);
    changed = -1;
    CHECK(db_upsert_jobs(d, jobs, n + 1, &changed, &err) == JM_OK && changed == 2,
          "[%s] bulk again: only the repeated id flips: %d %s", kind, changed, err.msg);
    for (int i = 0; i <= n; i++)
        db_job_clear(&jobs[i]);
    free(jobs);
    char *t = raw_value(r, "SELECT title FROM jobs WHERE id = $1", "v0100");
    CHECK(t && !strcmp(t, "Bulk again"), "[%s] repeat applied last: %s", kind, t ? t : "(null)");
    free(t);

    db_counts before = counts(d, MODEL);
    db_batch b;
    CHECK(db_claim_jobs(d, MODEL, NULL, 1000, &b, &err) == JM_OK && b.n == (int)(before.missing + before.stale) && before.missing >= n,
          "[%s] claim all pending: %d", kind, b.n);
    int seen = 0;
    for (int i = 0; i < b.n; i++)
        for (int k = 0; k < nodd; k++)
            if (!strcmp(b.ids[i], odd[k]))
                seen++;
    CHECK(seen == nodd, "[%s] odd ids claimed verbatim: %d of %d", kind, seen, nodd);
    float *v = malloc(sizeof(float) * (size_t)b.n * DIM);
    fill_vecs(v, b.n, 3.0f);
    CHECK(db_commit_jobs(d, &b, v, DIM, MODEL, &err) == JM_OK, "[%s] commit all: %s", kind, err.msg);
    /* each row got its own slice of the batch */
    int good = 0;
    for (int i = 0; i < b.n; i++) {
        long len;
        unsigned char *blob = raw_blob(r, "SELECT embedding FROM jobs WHERE id = $1", b.ids[i], &len);
        unsigned char want[DIM * 4];
        db_vec_to_le(v + (size_t)i * DIM, DIM, want);
        good += blob && len == DIM * 4 && !memcmp(blob, want, sizeof want);
        free(blob);
    }
    CHECK(good == b.n, "[%s] every row has its own vector: %d of %d", kind, good, b.n);
    free(v);
    db_batch_free(&b);
    db_counts after = counts(d, MODEL);
    CHECK(after.missing == 0 && after.stale == 0 && after.embedded == after.jobs, "[%s] all fresh: missing %lld",
          kind, (long long)after.missing);
    int found = 0;
    CHECK(db_delete_job(d, "we\"ird\\id", &found, &err) == JM_OK && found == 1, "[%s] delete odd id", kind);
}

/* ---------- reading back: rows collected from the callbacks ---------- */

typedef struct got_row {
    char *id, *title, *company, *desc, *posted, *skill0;
    int remote, deleted, nskills, req0, req1;
    double smin, smax;
    int64_t rev;
    unsigned char *emb;
    size_t emb_len;
} got_row;

typedef struct rows {
    got_row *r;
    int n, cap;
    int stop_after; /* > 0: return 7 from the callback after this many rows */
    int odd;        /* collect_raw: rows whose skills came parsed */
} rows;

static int collect(void *ctx, const db_row *row)
{
    rows *s = ctx;
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 64;
        s->r = realloc(s->r, sizeof(got_row) * (size_t)s->cap);
    }
    got_row *g = &s->r[s->n++];
    memset(g, 0, sizeof *g);
    const db_job *j = &row->job;
    g->id = xstrdup(j->id);
    g->title = xstrdup(j->title);
    g->company = xstrdup(j->company);
    g->desc = xstrdup(j->description);
    g->posted = xstrdup(j->posted_at);
    g->remote = j->remote;
    g->smin = j->salary_min;
    g->smax = j->salary_max;
    g->nskills = j->nskills;
    if (j->nskills > 0) {
        g->skill0 = xstrdup(j->skills[0].name);
        g->req0 = j->skills[0].required;
    }
    if (j->nskills > 1)
        g->req1 = j->skills[1].required;
    g->deleted = row->deleted;
    g->rev = row->rev;
    if (row->emb) {
        g->emb = malloc(row->emb_len ? row->emb_len : 1);
        memcpy(g->emb, row->emb, row->emb_len);
        g->emb_len = row->emb_len;
    }
    return s->stop_after > 0 && s->n >= s->stop_after ? 7 : 0;
}

static void rows_free(rows *s)
{
    for (int i = 0; i < s->n; i++) {
        got_row *g = &s->r[i];
        free(g->id);
        free(g->title);
        free(g->company);
        free(g->desc);
        free(g->posted);
        free(g->skill0);
        free(g->emb);
    }
    free(s->r);
    memset(s, 0, sizeof *s);
}

static got_row *rows_find(rows *s, const char *id)
{
    for (int i = 0; i < s->n; i++)
        if (s->r[i].id && !strcmp(s->r[i].id, id))
            return &s->r[i];
    return NULL;
}

/* db_changes into a fresh rows; returns the rc and sets *now. */
static int changes_since(db *d, const char *model, int64_t since, rows *out, int64_t *now)
{
    jm_err err = {0};
    rows_free(out);
    int rc = db_changes(d, model, since, collect, out, now, &err);
    if (rc)
        fprintf(stderr, "changes: %s\n", err.msg);
    return rc;
}

static int revs_increasing(const rows *s)
{
    for (int i = 1; i < s->n; i++)
        if (s->r[i].rev <= s->r[i - 1].rev)
            return 0;
    return 1;
}

/* The stored embedding bytes of a job equal these? */
static int emb_is_stored(raw *r, const char *table, const char *idcol, const char *id, const unsigned char *b,
                         size_t len)
{
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT embedding FROM %s WHERE CAST(%s AS TEXT) = $1", table, idcol);
    long blen;
    unsigned char *blob = raw_blob(r, sql, id, &blen);
    int ok = blob && blen == (long)len && !memcmp(blob, b, len);
    free(blob);
    return ok;
}

typedef struct skill_rows {
    int n, with_emb, emb_ok;
    char first[64], first_display[64];
} skill_rows;

static int collect_skill(void *ctx, const char *name, const char *display, const unsigned char *emb, size_t len)
{
    skill_rows *s = ctx;
    if (!s->n) {
        snprintf(s->first, sizeof s->first, "%s", name ? name : "");
        snprintf(s->first_display, sizeof s->first_display, "%s", display ? display : "");
    }
    s->n++;
    if (emb) {
        s->with_emb++;
        s->emb_ok += len == DIM * 4;
    }
    return 0;
}

/* Keyword search; the ids of the hits joined by ',' into buf (scores checked
 * positive and non-increasing). Returns the rc. */
static int search(db *d, const char *const *terms, int n, int limit, char *buf, size_t cap, int *nhits)
{
    jm_err err = {0};
    db_hit *h = NULL;
    int k = -1;
    buf[0] = 0;
    int rc = db_keyword_search(d, terms, n, limit, &h, &k, &err);
    if (nhits)
        *nhits = k;
    if (rc) {
        snprintf(buf, cap, "(error %d: %s)", rc, err.msg);
        return rc;
    }
    size_t len = 0;
    int order_ok = 1;
    for (int i = 0; i < k; i++) {
        len += (size_t)snprintf(buf + len, len < cap ? cap - len : 0, "%s%s", i ? "," : "", h[i].id);
        if (!(h[i].score > 0) || (i && h[i].score > h[i - 1].score))
            order_ok = 0;
    }
    CHECK(order_ok, "[%s] scores positive, best first: %s", kind, buf);
    db_hits_free(h, k);
    return rc;
}

static int has_id(const char *list, const char *id)
{
    size_t l = strlen(id);
    for (const char *p = list; (p = strstr(p, id)); p++)
        if ((p == list || p[-1] == ',') && (p[l] == ',' || !p[l]))
            return 1;
    return 0;
}

/* A scan with DB_SCAN_RAW_SKILLS: the row as collect keeps it, with its
 * skills parsed from skills_raw by db_skills_parse; counts rows whose
 * job.skills came parsed anyway. */
static int collect_raw(void *ctx, const db_row *row)
{
    rows *s = ctx;
    db_row r = *row;
    s->odd += row->job.nskills != 0 || row->job.skills != NULL;
    if (db_skills_parse(row->skills_raw, &r.job.skills, &r.job.nskills))
        return -1;
    int rc = collect(ctx, &r);
    free(r.job.skills);
    return rc;
}

/* Scan, get_job, get_embeddings and scan_skills on jobmatch's own table, as
 * test_odd_ids_and_volume left it (everything fresh for MODEL). */
static void test_read_back(db *d, raw *r)
{
    jm_err err = {0};
    db_counts c = counts(d, MODEL);
    rows all = {0};
    CHECK(db_scan_jobs(d, MODEL, 1, collect, &all, &err) == JM_OK, "[%s] scan: %s", kind, err.msg);
    CHECK(all.n == c.jobs && c.embedded == c.jobs, "[%s] scan: %d rows, %lld jobs", kind, all.n, (long long)c.jobs);
    /* in id order, as the database orders them */
    char *ids = raw_rows(r, "SELECT id FROM jobs ORDER BY id", NULL);
    size_t len = 0;
    int same = ids != NULL;
    for (int i = 0; same && i < all.n; i++) {
        size_t l = strlen(all.r[i].id);
        same = !strncmp(ids + len, all.r[i].id, l) && ids[len + l] == '\n';
        len += l + 1;
    }
    CHECK(same && ids && !ids[len], "[%s] scan in id order", kind);
    free(ids);
    int with = 0, exact = 0, revs = 0;
    for (int i = 0; i < all.n; i++) {
        got_row *g = &all.r[i];
        if (g->emb) {
            with++;
            exact += g->emb_len == DIM * 4 && emb_is_stored(r, "jobs", "id", g->id, g->emb, g->emb_len);
        }
        char *rv = raw_value(r, "SELECT CAST(rev AS TEXT) FROM job_changes WHERE id = $1", g->id);
        revs += rv && g->rev > 0 && strtoll(rv, NULL, 10) == g->rev && !g->deleted;
        free(rv);
    }
    CHECK(with == all.n && exact == all.n, "[%s] every current embedding, bit-exact: %d %d of %d", kind, with, exact,
          all.n);
    CHECK(revs == all.n, "[%s] each row's rev is its change-log entry: %d of %d", kind, revs, all.n);
    got_row *a = rows_find(&all, "a"), *cj = rows_find(&all, "c");
    CHECK(a && a->title && !strcmp(a->title, "Backend Engineer") && a->company && !strcmp(a->company, "Acme") &&
              a->remote == 1 && a->smin == 50000.5 && a->smax == 90000 && a->desc && !strcmp(a->desc, "Build APIs.") &&
              !a->posted && a->nskills == 2 && a->skill0 && !strcmp(a->skill0, "Python") && a->req0 == 1 &&
              a->req1 == 0,
          "[%s] row a: %s %s %d %g %g %d", kind, a && a->title ? a->title : "-", a && a->desc ? a->desc : "-",
          a ? a->remote : -9, a ? a->smin : 0, a ? a->smax : 0, a ? a->nskills : -1);
    CHECK(cj && cj->remote == -1 && isnan(cj->smin) && isnan(cj->smax) && !cj->desc && cj->posted &&
              !strcmp(cj->posted, "2026-01-02") && cj->nskills == 0,
          "[%s] row c: unknowns stay unknown", kind);
    /* the skills handed over unparsed, then parsed by db_skills_parse: as the scan parses them */
    rows raw_all = {0};
    CHECK(db_scan_jobs(d, MODEL, DB_SCAN_EMBEDDING | DB_SCAN_RAW_SKILLS, collect_raw, &raw_all, &err) == JM_OK &&
              raw_all.n == all.n && raw_all.odd == 0,
          "[%s] raw-skills scan: %d rows of %d, %d parsed anyway: %s", kind, raw_all.n, all.n, raw_all.odd, err.msg);
    int alike = 0, listed = 0;
    for (int i = 0; i < raw_all.n && i < all.n; i++) {
        got_row *x = &raw_all.r[i], *y = &all.r[i];
        listed += y->nskills > 0;
        alike += !strcmp(x->id, y->id) && x->nskills == y->nskills && x->req0 == y->req0 && x->req1 == y->req1 &&
                 (!y->skill0 ? !x->skill0 : x->skill0 && !strcmp(x->skill0, y->skill0)) && x->emb_len == y->emb_len;
    }
    CHECK(alike == all.n && listed > 0, "[%s] raw skills parsed alike on %d of %d rows (%d with skills)", kind, alike,
          all.n, listed);
    rows_free(&raw_all);
    rows_free(&all);

    /* without vectors; for another model; a callback that stops the scan */
    CHECK(db_scan_jobs(d, MODEL, 0, collect, &all, &err) == JM_OK && all.n == c.jobs, "[%s] scan without vectors",
          kind);
    with = 0;
    for (int i = 0; i < all.n; i++)
        with += all.r[i].emb != NULL;
    CHECK(with == 0, "[%s] no vectors when not asked: %d", kind, with);
    rows_free(&all);
    db_counts c2 = counts(d, MODEL2);
    CHECK(db_scan_jobs(d, MODEL2, 1, collect, &all, &err) == JM_OK, "[%s] scan model 2", kind);
    with = 0;
    for (int i = 0; i < all.n; i++)
        with += all.r[i].emb != NULL;
    CHECK(with == c2.embedded, "[%s] only the model's own vectors: %d vs %lld", kind, with, (long long)c2.embedded);
    rows_free(&all);
    all.stop_after = 3;
    CHECK(db_scan_jobs(d, MODEL, 1, collect, &all, &err) == 7 && all.n == 3, "[%s] the callback stops the scan: %d",
          kind, all.n);
    rows_free(&all);

    /* a text change makes the stored vector stale: no longer returned */
    int changed;
    upsert1(d, "a", "Backend Engineer", "Build APIs and services.", "Python,~PostgreSQL", &changed, &err);
    CHECK(db_scan_jobs(d, MODEL, 1, collect, &all, &err) == JM_OK, "[%s] scan after a change", kind);
    a = rows_find(&all, "a");
    got_row *b = rows_find(&all, "b");
    CHECK(a && !a->emb && a->desc && !strcmp(a->desc, "Build APIs and services.") && b && b->emb,
          "[%s] stale vector dropped, others kept", kind);
    rows_free(&all);

    /* one job */
    db_job j;
    int found = -1;
    CHECK(db_get_job(d, "b", &j, &found, &err) == JM_OK && found == 1 && j.id && !strcmp(j.id, "b") && j.title &&
              !strcmp(j.title, "Senior Data Scientist") && j.nskills == 2 && !strcmp(j.skills[1].name, "SQL") &&
              j.remote == 1 && isnan(j.salary_max),
          "[%s] get_job b: %s", kind, err.msg);
    db_job_clear(&j);
    found = -1;
    CHECK(db_get_job(d, "no-such-job", &j, &found, &err) == JM_OK && found == 0 && !j.id, "[%s] get_job missing",
          kind);
    db_job_clear(&j);
    CHECK(db_get_job(d, "it's", &j, &found, &err) == JM_OK && found == 1 && j.title && !strcmp(j.title, "Odd"),
          "[%s] get_job odd id", kind);
    db_job_clear(&j);

    /* embeddings of several jobs at once */
    const char *want[] = {"b", "no-such-job", "a", "b", "j1", "{br,ace}"};
    int n = 6, fnd[6];
    float out[6 * DIM];
    memset(out, 0x7f, sizeof out);
    CHECK(db_get_embeddings(d, MODEL, want, n, out, DIM, fnd, &err) == JM_OK, "[%s] get_embeddings: %s", kind,
          err.msg);
    CHECK(fnd[0] == 1 && fnd[1] == 0 && fnd[2] == 0 && fnd[3] == 1 && fnd[4] == 1 && fnd[5] == 1,
          "[%s] found flags %d%d%d%d%d%d", kind, fnd[0], fnd[1], fnd[2], fnd[3], fnd[4], fnd[5]);
    int bits = 0;
    for (int i = 0; i < n; i++) {
        if (fnd[i]) {
            long bl;
            unsigned char *blob = raw_blob(r, "SELECT embedding FROM jobs WHERE id = $1", want[i], &bl);
            float v[DIM];
            if (blob && bl == DIM * 4)
                db_vec_from_le(blob, DIM, v);
            bits += blob && bl == DIM * 4 && !memcmp(v, out + i * DIM, sizeof v);
            free(blob);
        } else {
            float zero[DIM] = {0};
            bits += !memcmp(out + i * DIM, zero, sizeof zero);
        }
    }
    CHECK(bits == n, "[%s] vectors bit-exact, missing rows zeroed: %d of %d", kind, bits, n);
    CHECK(db_get_embeddings(d, MODEL2, want, n, out, DIM, fnd, &err) == JM_OK && fnd[0] == 0,
          "[%s] another model's vectors are not found", kind);
    CHECK(db_get_embeddings(d, MODEL, want, 0, out, DIM, fnd, &err) == JM_OK, "[%s] no ids", kind);
    float wide[6 * (DIM + 1)];
    CHECK(db_get_embeddings(d, MODEL, want, n, wide, DIM + 1, fnd, &err) == JM_EFORMAT && !fnd[0],
          "[%s] a dimension that does not fit: %s", kind, err.msg);

    /* skills */
    skill_rows sr = {0};
    char *nsk = raw_value(r, "SELECT CAST(count(*) AS TEXT) FROM skills", NULL);
    char *nemb = raw_value(r, "SELECT CAST(count(*) AS TEXT) FROM skills WHERE embedding_model = $1", MODEL);
    CHECK(db_scan_skills(d, MODEL, collect_skill, &sr, &err) == JM_OK, "[%s] scan skills: %s", kind, err.msg);
    CHECK(nsk && nemb && sr.n == atoi(nsk) && sr.with_emb == atoi(nemb) && sr.emb_ok == sr.with_emb && sr.n > 0 &&
              !strcmp(sr.first, "c") && !strcmp(sr.first_display, "C"),
          "[%s] skills %d (%s), with vectors %d (%s), first %s/%s", kind, sr.n, nsk ? nsk : "?", sr.with_emb,
          nemb ? nemb : "?", sr.first, sr.first_display);
    free(nsk);
    free(nemb);
    memset(&sr, 0, sizeof sr);
    CHECK(db_scan_skills(d, "no-model", collect_skill, &sr, &err) == JM_OK && sr.with_emb == 0 && sr.n > 0,
          "[%s] skills without vectors for another model", kind);
}

/* The change log of jobmatch's own table. */
static void test_changes(db *d, raw *r)
{
    jm_err err = {0};
    rows ch = {0};
    int64_t now0 = -1, now;
    db_counts c = counts(d, MODEL);
    CHECK(changes_since(d, MODEL, 0, &ch, &now0) == JM_OK, "[%s] changes from 0", kind);
    int live = 0;
    for (int i = 0; i < ch.n; i++)
        live += !ch.r[i].deleted;
    CHECK(live == c.jobs && revs_increasing(&ch) && ch.n > 0 && ch.r[ch.n - 1].rev == now0,
          "[%s] every job once, in rev order: %d live of %d, now %lld", kind, live, ch.n, (long long)now0);
    char *mx = raw_value(r, "SELECT CAST(max(rev) AS TEXT) FROM job_changes", NULL);
    CHECK(mx && strtoll(mx, NULL, 10) == now0, "[%s] now is the counter: %s", kind, mx ? mx : "?");
    free(mx);
    CHECK(changes_since(d, MODEL, now0, &ch, &now) == JM_OK && ch.n == 0 && now == now0, "[%s] nothing new: %d",
          kind, ch.n);

    /* insert, update, embed, edit by hand, delete: each one entry with a new rev */
    int changed;
    upsert1(d, "ch1", "Change One", "First.", "Go,~Rust", &changed, &err);
    int64_t now1;
    CHECK(changes_since(d, MODEL, now0, &ch, &now1) == JM_OK && ch.n == 1 && !strcmp(ch.r[0].id, "ch1") &&
              !ch.r[0].deleted && ch.r[0].title && !strcmp(ch.r[0].title, "Change One") && ch.r[0].nskills == 2 &&
              !ch.r[0].emb && ch.r[0].rev == now1 && now1 > now0,
          "[%s] insert logged: %d rows", kind, ch.n);
    upsert1(d, "ch1", "Change One Renamed", "First.", "Go,~Rust", &changed, &err);
    int64_t now2;
    CHECK(changes_since(d, MODEL, now1, &ch, &now2) == JM_OK && ch.n == 1 && ch.r[0].title &&
              !strcmp(ch.r[0].title, "Change One Renamed") && now2 > now1,
          "[%s] update logged", kind);
    CHECK(embed_all(d, MODEL, 10, 0) >= 1, "[%s] embed ch1", kind);
    int64_t now3;
    got_row *g = NULL;
    CHECK(changes_since(d, MODEL, now2, &ch, &now3) == JM_OK && (g = rows_find(&ch, "ch1")) && g->emb &&
              g->emb_len == DIM * 4 && now3 > now2,
          "[%s] a new embedding is a change, and comes with the row", kind);
    CHECK(raw_exec(r, "UPDATE jobs SET description = 'Edited.' WHERE id = 'ch1'") == 0, "[%s] raw edit", kind);
    int64_t now4;
    CHECK(changes_since(d, MODEL, now3, &ch, &now4) == JM_OK && ch.n == 1 && !ch.r[0].emb && ch.r[0].desc &&
              !strcmp(ch.r[0].desc, "Edited."),
          "[%s] an edit by another program is logged, its vector stale", kind);
    /* rev order over several jobs */
    upsert1(d, "ch2", "Two", "x", "", &changed, &err);
    upsert1(d, "ch3", "Three", "x", "", &changed, &err);
    upsert1(d, "ch2", "Two again", "x", "", &changed, &err);
    int64_t now5;
    CHECK(changes_since(d, MODEL, now4, &ch, &now5) == JM_OK && ch.n == 2 && !strcmp(ch.r[0].id, "ch3") &&
              !strcmp(ch.r[1].id, "ch2") && revs_increasing(&ch),
          "[%s] rev order, one entry per job: %d rows", kind, ch.n);
    char *cnt = raw_value(r, "SELECT CAST(count(*) AS TEXT) FROM job_changes WHERE id = $1", "ch2");
    CHECK(cnt && !strcmp(cnt, "1"), "[%s] one log row per job: %s", kind, cnt ? cnt : "?");
    free(cnt);
    int found;
    CHECK(db_delete_job(d, "ch1", &found, &err) == JM_OK && found, "[%s] delete ch1", kind);
    int64_t now6;
    CHECK(changes_since(d, MODEL, now5, &ch, &now6) == JM_OK && ch.n == 1 && !strcmp(ch.r[0].id, "ch1") &&
              ch.r[0].deleted && !ch.r[0].title && !ch.r[0].emb && ch.r[0].nskills == 0 && now6 > now5,
          "[%s] delete logged as deleted", kind);
    /* since - slack: a superset, each job once, in rev order */
    CHECK(changes_since(d, MODEL, now6 > DB_CHANGES_SLACK ? now6 - DB_CHANGES_SLACK : 0, &ch, &now) == JM_OK &&
              now == now6 && rows_find(&ch, "ch1") && rows_find(&ch, "ch2") && rows_find(&ch, "ch3") &&
              revs_increasing(&ch),
          "[%s] since - slack", kind);
    /* a model id of NULL: rows without vectors; the callback stops it */
    CHECK(changes_since(d, NULL, 0, &ch, &now) == JM_OK && ch.n > 0, "[%s] changes without a model", kind);
    int with = 0;
    for (int i = 0; i < ch.n; i++)
        with += ch.r[i].emb != NULL;
    CHECK(with == 0, "[%s] no vectors without a model: %d", kind, with);
    rows_free(&ch);
    ch.stop_after = 2;
    CHECK(db_changes(d, MODEL, 0, collect, &ch, &now, &err) == 7 && ch.n == 2, "[%s] the callback stops changes",
          kind);
    rows_free(&ch);
    /* a re-inserted job is live again */
    upsert1(d, "ch1", "Back", "x", "", &changed, &err);
    CHECK(changes_since(d, MODEL, now6, &ch, &now) == JM_OK && ch.n == 1 && !ch.r[0].deleted, "[%s] back again",
          kind);
    rows_free(&ch);
}

/* PostgreSQL: a transaction may commit a smaller rev after a larger one is
 * visible; since - DB_CHANGES_SLACK finds it. */
static void test_pg_slack(db *d, raw *r)
{
    rows ch = {0};
    int64_t now0, now1, now2;
    int changed;
    jm_err err = {0};
    CHECK(changes_since(d, MODEL, 0, &ch, &now0) == JM_OK, "[%s] slack: start", kind);
    raw_exec(r, "BEGIN");
    raw_exec(r, "INSERT INTO jobs(id, title) VALUES ('late', 'Late')");
    upsert1(d, "early", "Early", "x", "", &changed, &err);
    CHECK(changes_since(d, MODEL, now0, &ch, &now1) == JM_OK && ch.n == 1 && !strcmp(ch.r[0].id, "early"),
          "[%s] slack: the later rev is visible first: %d", kind, ch.n);
    raw_exec(r, "COMMIT");
    CHECK(changes_since(d, MODEL, now1, &ch, &now2) == JM_OK && ch.n == 0, "[%s] slack: since = now misses it", kind);
    CHECK(changes_since(d, MODEL, now1 - DB_CHANGES_SLACK, &ch, &now2) == JM_OK && rows_find(&ch, "late") &&
              rows_find(&ch, "early") && rows_find(&ch, "late")->rev < rows_find(&ch, "early")->rev,
          "[%s] slack: since - DB_CHANGES_SLACK finds it", kind);
    rows_free(&ch);
}

static void test_keyword(db *d, raw *r)
{
    jm_err err = {0};
    int changed, n;
    char buf[4096];
    upsert1(d, "kw1", "Zephyrologist", "Studies winds.", "Meteorology", &changed, &err);
    upsert1(d, "kw2", "Field Assistant", "Helps the zephyrologist in the field.", "Driving", &changed, &err);
    upsert1(d, "kw3", "Quokka Wrangler", "Herds small animals.", "Patience", &changed, &err);
    const char *t1[] = {"zephyrologist"};
    CHECK(search(d, t1, 1, 10, buf, sizeof buf, &n) == JM_OK && !strcmp(buf, "kw1,kw2"),
          "[%s] the title match ranks first: %s", kind, buf);
    const char *t2[] = {"zephyrologist", "quokka"};
    CHECK(search(d, t2, 2, 10, buf, sizeof buf, &n) == JM_OK && n == 3 && has_id(buf, "kw1") && has_id(buf, "kw2") &&
              has_id(buf, "kw3"),
          "[%s] any of the terms: %s", kind, buf);
    CHECK(search(d, t2, 2, 1, buf, sizeof buf, &n) == JM_OK && n == 1, "[%s] limit: %s", kind, buf);
    const char *t3[] = {"quokka wrangler"};
    CHECK(search(d, t3, 1, 10, buf, sizeof buf, &n) == JM_OK && !strcmp(buf, "kw3"), "[%s] a phrase: %s", kind, buf);
    const char *t3b[] = {"wrangler quokka"};
    CHECK(search(d, t3b, 1, 10, buf, sizeof buf, &n) == JM_OK && n == 0, "[%s] a phrase keeps its order: %s", kind,
          buf);
    const char *t4[] = {"Meteorology"};
    CHECK(search(d, t4, 1, 10, buf, sizeof buf, &n) == JM_OK && !strcmp(buf, "kw1"), "[%s] skills are searched: %s",
          kind, buf);
    const char *t5[] = {"zephyrologists"};
    CHECK(search(d, t5, 1, 10, buf, sizeof buf, &n) == JM_OK && has_id(buf, "kw1"), "[%s] stemmed: %s", kind, buf);
    const char *t6[] = {"C++"};
    CHECK(search(d, t6, 1, 50, buf, sizeof buf, &n) == JM_OK && has_id(buf, "j2"), "[%s] C++ finds skill C: %s", kind,
          buf);
    /* user input never breaks the query */
    const char *weird[] = {"C++", "\"quoted\"", "AND", "NEAR(", "*", "-x", "", "   ", "a:b", "(", ")", "'", "\\",
                           "^x", "OR", "NOT", "\"", "x\" OR \"y", "title:zephyrologist", "'; DROP TABLE jobs; --",
                           "\xc3\xa9t\xc3\xa9", "quokka*", "{br,ace}", "%", "_", "!", "&", "|", "<->", ":*"};
    int nw = (int)(sizeof weird / sizeof weird[0]), ok = 0;
    for (int i = 0; i < nw; i++)
        ok += search(d, &weird[i], 1, 10, buf, sizeof buf, &n) == JM_OK;
    CHECK(ok == nw, "[%s] weird terms are safe: %d of %d", kind, ok, nw);
    const char *mixed[] = {"NEAR(", "*", "\"", "quokka", "", "-x"};
    CHECK(search(d, mixed, 6, 10, buf, sizeof buf, &n) == JM_OK && has_id(buf, "kw3"),
          "[%s] weird terms beside a good one: %s", kind, buf);
    const char *blank[] = {"", "  "};
    CHECK(search(d, blank, 2, 10, buf, sizeof buf, &n) == JM_OK && n == 0, "[%s] blank terms: %d", kind, n);
    CHECK(search(d, blank, 0, 10, buf, sizeof buf, &n) == JM_OK && n == 0, "[%s] no terms", kind);
    const char *bad[] = {"ok", "\xff\xfe"};
    db_hit *h = NULL;
    int nh = -1;
    CHECK(db_keyword_search(d, bad, 2, 10, &h, &nh, &err) == JM_EINVAL && !h && nh == 0,
          "[%s] invalid UTF-8 refused: %s", kind, err.msg);
    CHECK(db_keyword_search(d, t1, 1, 0, &h, &nh, &err) == JM_EINVAL, "[%s] limit 0 refused", kind);

    /* kept in sync: updates, deletes, edits by another program */
    upsert1(d, "kw3", "Koala Keeper", "Herds small animals.", "Patience", &changed, &err);
    const char *t7[] = {"quokka"}, *t8[] = {"koala"};
    CHECK(search(d, t7, 1, 10, buf, sizeof buf, &n) == JM_OK && n == 0, "[%s] old title gone: %s", kind, buf);
    CHECK(search(d, t8, 1, 10, buf, sizeof buf, &n) == JM_OK && !strcmp(buf, "kw3"), "[%s] new title: %s", kind, buf);
    int found;
    db_delete_job(d, "kw1", &found, &err);
    CHECK(search(d, t1, 1, 10, buf, sizeof buf, &n) == JM_OK && !strcmp(buf, "kw2"), "[%s] deleted job gone: %s",
          kind, buf);
    raw_exec(r, "UPDATE jobs SET title = 'Xylophonist' WHERE id = 'kw2'");
    const char *t9[] = {"xylophonist"};
    CHECK(search(d, t9, 1, 10, buf, sizeof buf, &n) == JM_OK && !strcmp(buf, "kw2"), "[%s] edit by hand: %s", kind,
          buf);
    /* an embedding commit does not touch the search */
    CHECK(embed_all(d, MODEL, 50, 0) >= 1, "[%s] embed kw jobs", kind);
    CHECK(search(d, t9, 1, 10, buf, sizeof buf, &n) == JM_OK && !strcmp(buf, "kw2"), "[%s] after embedding: %s", kind,
          buf);
}

/* Reading back from an attached table (skill_job1, template
 * "{title} ({description})", skills column "skills"). */
static void test_attached_read(db *d, raw *r)
{
    jm_err err = {0};
    rows all = {0};
    char buf[1024];
    int n;
    CHECK(db_scan_jobs(d, MODEL, 1, collect, &all, &err) == JM_OK && all.n == 3, "[%s] attached scan: %d %s", kind,
          all.n, err.msg);
    got_row *p1 = rows_find(&all, "p1"), *p3 = rows_find(&all, "p3");
    CHECK(all.n == 3 && !strcmp(all.r[0].id, "p1") && !strcmp(all.r[2].id, "p3"), "[%s] attached id order", kind);
    CHECK(p1 && p1->title && !strcmp(p1->title, "Welder") && p1->desc && !strcmp(p1->desc, "Welder (Joins metal well.)") &&
              p1->nskills == 2 && p1->skill0 && !strcmp(p1->skill0, "Welding") && !p1->company && p1->remote == -1 &&
              isnan(p1->smin) && !p1->emb && p1->rev > 0,
          "[%s] attached row p1: %s | %s", kind, p1 && p1->title ? p1->title : "-", p1 && p1->desc ? p1->desc : "-");
    CHECK(p3 && !p3->title && p3->desc && !strcmp(p3->desc, " (No title.)") && p3->nskills == 0,
          "[%s] attached row p3", kind);
    rows_free(&all);
    CHECK(embed_all(d, MODEL, 10, 0) == 3, "[%s] embed attached", kind);
    CHECK(db_scan_jobs(d, MODEL, 1, collect, &all, &err) == JM_OK && all.n == 3 && all.r[0].emb &&
              emb_is_stored(r, "skill_job1", "job_id", "p1", all.r[0].emb, all.r[0].emb_len) && all.r[2].emb,
          "[%s] attached vectors", kind);
    rows_free(&all);
    db_job j;
    int found;
    CHECK(db_get_job(d, "p2", &j, &found, &err) == JM_OK && found && j.title && !strcmp(j.title, "Baker") &&
              j.description && !strcmp(j.description, "Baker ()") && j.nskills == 2 && !strcmp(j.skills[0].name, "Baking"),
          "[%s] attached get_job: %s", kind, err.msg);
    db_job_clear(&j);
    const char *ids[] = {"p3", "p9", "p1"};
    int fnd[3];
    float out[3 * DIM];
    CHECK(db_get_embeddings(d, MODEL, ids, 3, out, DIM, fnd, &err) == JM_OK && fnd[0] && !fnd[1] && fnd[2],
          "[%s] attached get_embeddings: %s", kind, err.msg);

    /* the attached table's own triggers: edits, inserts and deletes by the job board */
    rows ch = {0};
    int64_t now0, now1;
    CHECK(changes_since(d, MODEL, 0, &ch, &now0) == JM_OK && rows_find(&ch, "p1") && rows_find(&ch, "p2") &&
              !rows_find(&ch, "p1")->deleted,
          "[%s] attached rows in the log", kind);
    raw_exec(r, "UPDATE skill_job1 SET title = 'Master Welder' WHERE job_id = 'p1'");
    raw_exec(r, "INSERT INTO skill_job1(job_id, title, skills, description) VALUES ('p4', 'Glazier', 'Glass', 'Cuts glass.')");
    CHECK(changes_since(d, MODEL, now0, &ch, &now1) == JM_OK && ch.n == 2 && !strcmp(ch.r[0].id, "p1") &&
              ch.r[0].title && !strcmp(ch.r[0].title, "Master Welder") && !ch.r[0].emb && !strcmp(ch.r[1].id, "p4") &&
              ch.r[1].desc && !strcmp(ch.r[1].desc, "Glazier (Cuts glass.)"),
          "[%s] attached edits logged: %d", kind, ch.n);
    raw_exec(r, "DELETE FROM skill_job1 WHERE job_id = 'p4'");
    CHECK(changes_since(d, MODEL, now1, &ch, &now0) == JM_OK && ch.n == 1 && ch.r[0].deleted &&
              !strcmp(ch.r[0].id, "p4"),
          "[%s] attached delete logged", kind);
    rows_free(&ch);

    /* keyword search over the template's columns, following the template */
    const char *t1[] = {"welder"}, *t2[] = {"metal"}, *t3[] = {"baking"};
    CHECK(search(d, t1, 1, 10, buf, sizeof buf, &n) == JM_OK && !strcmp(buf, "p1"), "[%s] attached search: %s", kind,
          buf);
    CHECK(search(d, t2, 1, 10, buf, sizeof buf, &n) == JM_OK && !strcmp(buf, "p1"), "[%s] attached description: %s",
          kind, buf);
    CHECK(search(d, t3, 1, 10, buf, sizeof buf, &n) == JM_OK && n == 0, "[%s] skills not in the template: %s", kind,
          buf);
    CHECK(db_set_template(d, "{title} ({description}) {skills}", &err) == JM_OK, "[%s] template with skills: %s",
          kind, err.msg);
    CHECK(search(d, t3, 1, 10, buf, sizeof buf, &n) == JM_OK && !strcmp(buf, "p2"), "[%s] now skills are: %s", kind,
          buf);
    raw_exec(r, "UPDATE skill_job1 SET skills = 'Baking, Icing' WHERE job_id = 'p3'");
    CHECK(search(d, t3, 1, 10, buf, sizeof buf, &n) == JM_OK && has_id(buf, "p2") && has_id(buf, "p3"),
          "[%s] attached edit searched: %s", kind, buf);
    CHECK(db_set_template(d, "{title} ({description})", &err) == JM_OK, "[%s] template back", kind);
    const char *many[] = {"welder", "baker", "NEAR(", "\""};
    CHECK(search(d, many, 4, 1, buf, sizeof buf, &n) == JM_OK && n == 1, "[%s] attached limit: %s", kind, buf);
}

/* skill_job2 (INTEGER ids): the log also holds text ids of jobmatch's own
 * table, which must not break the join. Called with 5 and 7 left, 7
 * embedded. */
static void test_attached_int_read(db *d, raw *r)
{
    jm_err err = {0};
    rows all = {0}, ch = {0};
    char buf[1024];
    int n;
    CHECK(db_scan_jobs(d, MODEL, 1, collect, &all, &err) == JM_OK && all.n == 2 && !strcmp(all.r[0].id, "5") &&
              !strcmp(all.r[1].id, "7") && all.r[1].emb && all.r[1].title && !strcmp(all.r[1].title, "seven"),
          "[%s] int scan: %d %s", kind, all.n, err.msg);
    rows_free(&all);
    int64_t now0, now1;
    CHECK(changes_since(d, MODEL, 0, &ch, &now0) == JM_OK, "[%s] int changes", kind);
    int live = 0;
    for (int i = 0; i < ch.n; i++)
        live += !ch.r[i].deleted;
    CHECK(live == 2 && rows_find(&ch, "7") && !rows_find(&ch, "7")->deleted && rows_find(&ch, "10") &&
              rows_find(&ch, "10")->deleted && rows_find(&ch, "b") && rows_find(&ch, "b")->deleted,
          "[%s] int changes: %d live of %d", kind, live, ch.n);
    raw_exec(r, "INSERT INTO skill_job2(nid, body) VALUES (11, 'eleven')");
    raw_exec(r, "UPDATE skill_job2 SET nid = 12 WHERE nid = 5");
    CHECK(changes_since(d, MODEL, now0, &ch, &now1) == JM_OK && ch.n == 3 && rows_find(&ch, "11") &&
              rows_find(&ch, "12") && rows_find(&ch, "5") && rows_find(&ch, "5")->deleted &&
              !rows_find(&ch, "12")->deleted && rows_find(&ch, "12")->desc && !strcmp(rows_find(&ch, "12")->desc, "five"),
          "[%s] int inserts and a renamed id: %d", kind, ch.n);
    rows_free(&ch);
    const char *ids[] = {"7", "seven", "12", "7"};
    int fnd[4];
    float out[4 * DIM];
    CHECK(db_get_embeddings(d, MODEL, ids, 4, out, DIM, fnd, &err) == JM_OK && fnd[0] && !fnd[1] && fnd[2] && fnd[3],
          "[%s] int get_embeddings: %d%d%d%d %s", kind, fnd[0], fnd[1], fnd[2], fnd[3], err.msg);
    db_job j;
    int found = -1;
    CHECK(db_get_job(d, "seven", &j, &found, &err) == JM_OK && found == 0, "[%s] int get_job, not a number", kind);
    db_job_clear(&j);
    CHECK(db_get_job(d, "11", &j, &found, &err) == JM_OK && found == 1 && j.description &&
              !strcmp(j.description, "eleven"),
          "[%s] int get_job", kind);
    db_job_clear(&j);
    const char *t[] = {"eleven"};
    CHECK(search(d, t, 1, 10, buf, sizeof buf, &n) == JM_OK && !strcmp(buf, "11"), "[%s] int search: %s", kind, buf);
}

/* A store made by schema version 1 (the tables as migration 1 made them,
 * rows, and an attached table) upgrades in place. */
static void test_migrate_v1(const char *url, raw *r)
{
    const char *v1 =
        is_pg(r) ? "CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value TEXT);"
                   "CREATE TABLE jobs (id TEXT PRIMARY KEY NOT NULL, title TEXT, company TEXT, location TEXT,"
                   " remote BOOLEAN, salary_min DOUBLE PRECISION, salary_max DOUBLE PRECISION, currency TEXT,"
                   " employment_type TEXT, seniority TEXT, description TEXT, skills TEXT, skill_names TEXT,"
                   " posted_at TEXT, updated_at TEXT, text_hash TEXT, embedding BYTEA, embedding_model TEXT);"
                   "CREATE TABLE skills (name TEXT PRIMARY KEY NOT NULL, display TEXT, embedding BYTEA,"
                   " embedding_model TEXT);"
                 : "CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value TEXT);"
                   "CREATE TABLE jobs (id TEXT PRIMARY KEY NOT NULL, title TEXT, company TEXT, location TEXT,"
                   " remote INTEGER, salary_min REAL, salary_max REAL, currency TEXT, employment_type TEXT,"
                   " seniority TEXT, description TEXT, skills TEXT, skill_names TEXT, posted_at TEXT, updated_at TEXT,"
                   " text_hash TEXT, embedding BLOB, embedding_model TEXT);"
                   "CREATE TABLE skills (name TEXT PRIMARY KEY NOT NULL, display TEXT, embedding BLOB,"
                   " embedding_model TEXT);";
    CHECK(raw_exec(r, v1) == 0, "[%s] a version-1 schema", kind);
    raw_exec(r, "INSERT INTO meta VALUES ('schema_version', '1')");
    raw_exec(r, "INSERT INTO jobs(id, title, description, skills, skill_names) VALUES"
                " ('old1', 'Glassblower', 'Blows glass.', '[{\"name\":\"Glass\",\"required\":true}]', 'Glass'),"
                " ('old2', 'Cooper', 'Makes barrels.', '[{\"name\":\"Wood\",\"required\":false}]', 'Wood')");
    raw_exec(r, "CREATE TABLE legacy_jobs (lid TEXT PRIMARY KEY, name TEXT, body TEXT)");
    raw_exec(r, "INSERT INTO legacy_jobs VALUES ('L1', 'Chandler', 'Makes candles.'), ('L2', 'Fletcher', 'Arrows.')");
    raw_exec(r, "INSERT INTO meta VALUES ('source_table', 'legacy_jobs'), ('source_id_column', 'lid'),"
                " ('source_skills_column', ''), ('text_template', '{name}. {body}')");
    raw_exec(r, is_pg(r) ? "ALTER TABLE legacy_jobs ADD COLUMN embedding BYTEA, ADD COLUMN text_hash TEXT,"
                           " ADD COLUMN embedding_model TEXT"
                         : "ALTER TABLE legacy_jobs ADD COLUMN embedding BLOB; ALTER TABLE legacy_jobs ADD COLUMN"
                           " text_hash TEXT; ALTER TABLE legacy_jobs ADD COLUMN embedding_model TEXT");

    db *d = NULL;
    jm_err err = {0};
    CHECK(db_open(url, &d, &err) == JM_OK, "[%s] open a version-1 store: %s", kind, err.msg);
    if (!d)
        return;
    int v = -1;
    CHECK(db_schema_version(d, &v, &err) == JM_OK && v == 2, "[%s] upgraded to %d", kind, v);
    rows ch = {0};
    int64_t now0, now1;
    char buf[512];
    int n;
    CHECK(changes_since(d, MODEL, 0, &ch, &now0) == JM_OK && rows_find(&ch, "L1") && rows_find(&ch, "L2") &&
              !rows_find(&ch, "L1")->deleted && rows_find(&ch, "L1")->title &&
              !strcmp(rows_find(&ch, "L1")->title, "Chandler"),
          "[%s] upgraded: the attached rows are in the log", kind);
    const char *t1[] = {"candles"};
    CHECK(search(d, t1, 1, 10, buf, sizeof buf, &n) == JM_OK && !strcmp(buf, "L1"), "[%s] upgraded attached search: %s",
          kind, buf);
    raw_exec(r, "UPDATE legacy_jobs SET body = 'Makes wax candles.' WHERE lid = 'L2'");
    CHECK(changes_since(d, MODEL, now0, &ch, &now1) == JM_OK && ch.n == 1 && !strcmp(ch.r[0].id, "L2"),
          "[%s] upgraded attached triggers", kind);
    CHECK(search(d, t1, 1, 10, buf, sizeof buf, &n) == JM_OK && n == 2, "[%s] upgraded attached search follows: %s",
          kind, buf);
    /* jobmatch's own table was upgraded too */
    CHECK(db_meta_set(d, "source_table", "", &err) == JM_OK && db_meta_set(d, "text_template", "", &err) == JM_OK,
          "[%s] detach", kind);
    db_close(d);
    d = NULL;
    CHECK(db_open(url, &d, &err) == JM_OK, "[%s] reopen: %s", kind, err.msg);
    if (!d)
        return;
    const char *t2[] = {"glass"};
    CHECK(search(d, t2, 1, 10, buf, sizeof buf, &n) == JM_OK && !strcmp(buf, "old1"), "[%s] upgraded search: %s", kind,
          buf);
    rows all = {0};
    CHECK(db_scan_jobs(d, MODEL, 1, collect, &all, &err) == JM_OK && all.n == 2 && all.r[0].rev > 0 &&
              all.r[1].rev > 0 && all.r[1].nskills == 1 && all.r[1].req0 == 0,
          "[%s] upgraded rows have revs", kind);
    rows_free(&all);
    int changed;
    upsert1(d, "old2", "Master Cooper", "Makes barrels.", "Wood", &changed, &err);
    CHECK(changes_since(d, MODEL, now1, &ch, &now0) == JM_OK && ch.n == 1 && !strcmp(ch.r[0].id, "old2"),
          "[%s] upgraded jobs triggers", kind);
    rows_free(&ch);
    int64_t before = now0;
    db_close(d);
    d = NULL;
    CHECK(db_open(url, &d, &err) == JM_OK && db_migrate(d, &err) == JM_OK, "[%s] migrate again: %s", kind, err.msg);
    if (d)
        CHECK(changes_since(d, MODEL, 0, &ch, &now0) == JM_OK && now0 == before, "[%s] a no-op the second time", kind);
    rows_free(&ch);
    db_close(d);
}

static void test_attach(const char *url, raw *r)
{
    jm_err err = {0};
    CHECK(raw_exec(r, "CREATE TABLE skill_job1 (job_id TEXT PRIMARY KEY, title TEXT, skills TEXT,"
                      " description TEXT, extra INT)") == 0,
          "[%s] create skill_job1", kind);
    raw_exec(r, "INSERT INTO skill_job1 VALUES ('p1', 'Welder', 'Welding, Safety', 'Joins metal.', 7),"
                " ('p2', 'Baker', '[\"Baking\", \"Safety\"]', NULL, NULL),"
                " ('p3', NULL, NULL, 'No title.', 3)");
    const char *snap_sql = "SELECT job_id, title, skills, description, CAST(extra AS TEXT) FROM skill_job1 ORDER BY job_id";
    char *snap = raw_rows(r, snap_sql, NULL);

    db *d = NULL;
    CHECK(db_open(url, &d, &err) == JM_OK, "[%s] open for attach: %s", kind, err.msg);
    if (!d) {
        free(snap);
        return;
    }
    /* refused: missing table, missing column (nothing recorded) */
    int rc = db_attach(d, "no_such_table", "job_id", "title", NULL, NULL, &err);
    CHECK(rc == JM_ENOTFOUND && strstr(err.msg, "no_such_table") && strstr(err.msg, "does not exist"),
          "[%s] missing table: %d %s", kind, rc, err.msg);
    rc = db_attach(d, "skill_job1", "job_id", "title,summary", "skills", NULL, &err);
    CHECK(rc == JM_ENOTFOUND && strstr(err.msg, "summary"), "[%s] missing column: %d %s", kind, rc, err.msg);
    rc = db_attach(d, "skill_job1", "id", "title", "skills", NULL, &err);
    CHECK(rc == JM_ENOTFOUND && strstr(err.msg, "\"id\""), "[%s] missing id column: %d %s", kind, rc, err.msg);
    rc = db_attach(d, "skill_job1", "job_id", "title", "skillz", NULL, &err);
    CHECK(rc == JM_ENOTFOUND && strstr(err.msg, "skillz"), "[%s] missing skills column: %d %s", kind, rc, err.msg);
    rc = db_attach(d, "skill_job1; DROP TABLE jobs", "job_id", "title", NULL, NULL, &err);
    CHECK(rc == JM_EINVAL, "[%s] hostile table name refused: %d %s", kind, rc, err.msg);
    db_source src;
    CHECK(db_source_get(d, &src, &err) == JM_OK && !src.attached && !strcmp(src.table, "jobs"),
          "[%s] refused attach recorded nothing", kind);
    char *cols0 = raw_rows(r,
                           is_pg(r) ? "SELECT count(*) FROM information_schema.columns WHERE table_name = 'skill_job1'"
                                    : "SELECT count(*) FROM pragma_table_info('skill_job1')",
                           NULL);
    CHECK(cols0 && !strcmp(cols0, "5\n"), "[%s] refused attach added no columns: %s", kind, cols0 ? cols0 : "?");
    free(cols0);

    rc = db_attach(d, "skill_job1", "job_id", "title, description", "skills", NULL, &err);
    CHECK(rc == JM_OK, "[%s] attach: %s", kind, err.msg);
    CHECK(db_source_get(d, &src, &err) == JM_OK && src.attached && !strcmp(src.table, "skill_job1") &&
              !strcmp(src.id_col, "job_id") && !strcmp(src.skills_col, "skills") &&
              !strcmp(src.template_, "{title}. {description}"),
          "[%s] source after attach: %s %s %s %s", kind, src.table, src.id_col, src.skills_col, src.template_);
    /* attaching again is harmless, and leaves the change log alone */
    char *log1 = raw_rows(r, "SELECT id, CAST(rev AS TEXT) FROM job_changes ORDER BY id", NULL);
    CHECK(db_attach(d, "skill_job1", "job_id", "title, description", "skills", NULL, &err) == JM_OK,
          "[%s] attach twice: %s", kind, err.msg);
    char *log2 = raw_rows(r, "SELECT id, CAST(rev AS TEXT) FROM job_changes ORDER BY id", NULL);
    CHECK(log1 && log2 && !strcmp(log1, log2) && strstr(log1, "p2|"), "[%s] re-attach is a no-op for the log", kind);
    free(log1);
    free(log2);
    /* jobmatch's own tables cannot be attached */
    CHECK(db_attach(d, "jobs", "id", "title", NULL, NULL, &err) == JM_EINVAL, "[%s] attach jobs refused: %s", kind,
          err.msg);
    char *cols = raw_rows(r,
                          is_pg(r) ? "SELECT column_name FROM information_schema.columns"
                                     " WHERE table_name = 'skill_job1' ORDER BY column_name"
                                   : "SELECT name FROM pragma_table_info('skill_job1') ORDER BY name",
                          NULL);
    CHECK(cols && !strcmp(cols, "description\nembedding\nembedding_model\nextra\njob_id\nskills\ntext_hash\ntitle\n"),
          "[%s] three columns added: %s", kind, cols ? cols : "(error)");
    free(cols);
    CHECK_COUNTS(d, MODEL, 3, 0, 0, 3);

    int changed;
    CHECK(upsert1(d, "z", "t", "d", "", &changed, &err) == JM_EINVAL, "[%s] import refused when attached", kind);

    db_batch b;
    CHECK(db_claim_jobs(d, MODEL, NULL, 10, &b, &err) == JM_OK && b.n == 3, "[%s] claim attached: %d %s", kind, b.n,
          err.msg);
    if (b.n == 3) {
        CHECK(!strcmp(b.ids[0], "p1") && !strcmp(b.texts[0], "Welder. Joins metal."), "[%s] text p1: %s", kind,
              b.texts[0]);
        CHECK(!strcmp(b.texts[1], "Baker. "), "[%s] text p2: \"%s\"", kind, b.texts[1]);
        CHECK(!strcmp(b.texts[2], ". No title."), "[%s] text p3: \"%s\"", kind, b.texts[2]);
    }
    float v[3 * DIM];
    fill_vecs(v, 3, 1.0f);
    CHECK(db_commit_jobs(d, &b, v, DIM, MODEL, &err) == JM_OK, "[%s] commit attached: %s", kind, err.msg);
    db_batch_free(&b);
    CHECK_COUNTS(d, MODEL, 3, 3, 0, 0);
    char *snap2 = raw_rows(r, snap_sql, NULL);
    CHECK(snap && snap2 && !strcmp(snap, snap2), "[%s] user's columns untouched:\n%s---\n%s", kind, snap ? snap : "",
          snap2 ? snap2 : "");
    free(snap2);

    /* the user edits a row: stale */
    raw_exec(r, "UPDATE skill_job1 SET description = 'Joins metal well.' WHERE job_id = 'p1'");
    CHECK_COUNTS(d, MODEL, 3, 2, 1, 0);
    /* template change: everything stale; a bad template is refused */
    CHECK(db_set_template(d, "{title} ({description})", &err) == JM_OK, "[%s] set template: %s", kind, err.msg);
    CHECK_COUNTS(d, MODEL, 3, 0, 3, 0);
    CHECK(db_claim_jobs(d, MODEL, NULL, 1, &b, &err) == JM_OK && b.n == 1 &&
              !strcmp(b.texts[0], "Welder (Joins metal well.)"),
          "[%s] new template text: %s", kind, b.n ? b.texts[0] : "-");
    db_abort(d);
    db_batch_free(&b);
    rc = db_set_template(d, "{title} {nope}", &err);
    CHECK(rc == JM_ENOTFOUND && strstr(err.msg, "nope"), "[%s] template with a missing column: %d %s", kind, rc,
          err.msg);
    rc = db_set_template(d, "{title", &err);
    CHECK(rc == JM_EFORMAT, "[%s] malformed template: %d %s", kind, rc, err.msg);
    CHECK(db_source_get(d, &src, &err) == JM_OK && !strcmp(src.template_, "{title} ({description})"),
          "[%s] refused template kept the old one: %s", kind, src.template_);

    /* skills from the attached table's own column (list and JSON forms) */
    int added = -1;
    CHECK(db_sync_skills(d, &added, &err) == JM_OK && added == 3, "[%s] attached skills: added %d %s", kind, added,
          err.msg);
    char *sk = raw_rows(r, "SELECT name FROM skills WHERE name IN ('welding', 'safety', 'baking') ORDER BY name", NULL);
    CHECK(sk && !strcmp(sk, "baking\nsafety\nwelding\n"), "[%s] attached skill names: %s", kind, sk ? sk : "?");
    free(sk);
    db_close(d);

    /* the mapping persists */
    d = NULL;
    CHECK(db_open(url, &d, &err) == JM_OK && d && db_source_get(d, &src, &err) == JM_OK && src.attached &&
              !strcmp(src.table, "skill_job1"),
          "[%s] mapping after reopen", kind);
    if (d)
        test_attached_read(d, r);

    /* an integer id column: the ids travel as text and must still match */
    raw_exec(r, "CREATE TABLE skill_job2 (nid INTEGER PRIMARY KEY, body TEXT)");
    raw_exec(r, "INSERT INTO skill_job2 VALUES (5, 'five'), (10, 'ten'), (7, 'seven')");
    if (d) {
        CHECK(db_attach(d, "skill_job2", "nid", "body", NULL, NULL, &err) == JM_OK, "[%s] attach int ids: %s", kind,
              err.msg);
        /* the table attached before lost jobmatch's triggers */
        char *m1 = raw_value(r, "SELECT CAST(max(rev) AS TEXT) FROM job_changes", NULL);
        raw_exec(r, "UPDATE skill_job1 SET title = 'Welder again' WHERE job_id = 'p1'");
        char *m2 = raw_value(r, "SELECT CAST(max(rev) AS TEXT) FROM job_changes", NULL);
        CHECK(m1 && m2 && !strcmp(m1, m2), "[%s] the previous table's triggers are gone: %s %s", kind, m1 ? m1 : "?",
              m2 ? m2 : "?");
        free(m1);
        free(m2);
        CHECK(db_claim_jobs(d, MODEL, NULL, 2, &b, &err) == JM_OK && b.n == 2 && !strcmp(b.ids[0], "5") &&
                  !strcmp(b.ids[1], "7"),
              "[%s] int ids in numeric order: %s %s", kind, b.n > 0 ? b.ids[0] : "-", b.n > 1 ? b.ids[1] : "-");
        fill_vecs(v, 2, 2.0f);
        CHECK(db_commit_jobs(d, &b, v, DIM, MODEL, &err) == JM_OK, "[%s] commit int ids: %s", kind, err.msg);
        db_batch_free(&b);
        CHECK_COUNTS(d, MODEL, 3, 2, 0, 1);
        CHECK(db_claim_jobs(d, MODEL, "7", 5, &b, &err) == JM_OK && b.n == 1 && !strcmp(b.ids[0], "10"),
              "[%s] int cursor: %s", kind, b.n ? b.ids[0] : "-");
        db_abort(d);
        db_batch_free(&b);
        float *got = NULL;
        int dim = 0;
        char *model = NULL;
        rc = db_get_job_embedding(d, "7", &got, &dim, &model, &err);
        CHECK(rc == JM_OK && dim == DIM && got && got[0] == v[DIM], "[%s] embedding by int id: %d %s", kind, rc,
              err.msg);
        free(got);
        free(model);
        rc = db_get_job_embedding(d, "seven", &got, &dim, &model, &err);
        CHECK(rc == JM_ENOTFOUND && !got, "[%s] non-numeric id on an int column: %d %s", kind, rc, err.msg);
        int found = -1;
        CHECK(db_delete_job(d, "seven", &found, &err) == JM_OK && found == 0, "[%s] delete non-numeric id: %s", kind,
              err.msg);
        CHECK(db_delete_job(d, "10", &found, &err) == JM_OK && found == 1, "[%s] delete int id: %s", kind, err.msg);
        CHECK_COUNTS(d, MODEL, 2, 2, 0, 0);
        test_attached_int_read(d, r);
        /* back to jobmatch's own table for whatever runs next */
        CHECK(db_meta_set(d, "source_table", "", &err) == JM_OK && db_meta_set(d, "text_template", "", &err) == JM_OK,
              "[%s] detach", kind);
    }
    db_close(d);
    free(snap);
}

/* Fork n processes that open the same (fresh) store at once: every one must
 * succeed, and the schema must be there once. */
static void test_concurrent_open(const char *url, raw *r)
{
    enum { N = 4 };
    pid_t pids[N];
    for (int i = 0; i < N; i++) {
        pids[i] = fork();
        if (pids[i] == 0) {
            db *d = NULL;
            jm_err err = {0};
            int rc = db_open(url, &d, &err);
            if (rc)
                fprintf(stderr, "child %d: %s\n", i, err.msg);
            db_close(d);
            _exit(rc ? 1 : 0);
        }
    }
    int ok = 0;
    for (int i = 0; i < N; i++) {
        int st = 0;
        if (pids[i] > 0 && waitpid(pids[i], &st, 0) == pids[i] && WIFEXITED(st) && WEXITSTATUS(st) == 0)
            ok++;
    }
    CHECK(ok == N, "[%s] concurrent first opens: %d of %d succeeded", kind, ok, N);
    char *s = raw_rows(r, "SELECT value FROM meta WHERE key = 'schema_version'", NULL);
    CHECK(s && !strcmp(s, "2\n"), "[%s] one schema_version after concurrent opens: %s", kind, s ? s : "(error)");
    free(s);
}

/* PostgreSQL only: two connections claiming at once get disjoint batches. */
static void test_pg_concurrency(const char *url)
{
    jm_err err = {0};
    db *a = NULL, *b = NULL;
    CHECK(db_open(url, &a, &err) == JM_OK && db_open(url, &b, &err) == JM_OK, "[%s] two handles: %s", kind, err.msg);
    if (!a || !b) {
        db_close(a);
        db_close(b);
        return;
    }
    db_counts c0 = counts(a, "model-x");
    db_batch ba, bb;
    CHECK(db_claim_jobs(a, "model-x", NULL, 5, &ba, &err) == JM_OK && ba.n == 5, "[%s] A claims 5: %s", kind, err.msg);
    CHECK(db_claim_jobs(b, "model-x", NULL, 5, &bb, &err) == JM_OK && bb.n == 5, "[%s] B claims 5: %s", kind, err.msg);
    int overlap = 0;
    for (int i = 0; i < ba.n; i++)
        for (int k = 0; k < bb.n; k++)
            overlap += !strcmp(ba.ids[i], bb.ids[k]);
    CHECK(overlap == 0, "[%s] disjoint batches: %d shared", kind, overlap);
    float v[5 * DIM];
    fill_vecs(v, 5, 9.0f);
    CHECK(db_commit_jobs(b, &bb, v, DIM, "model-x", &err) == JM_OK, "[%s] B commits: %s", kind, err.msg);
    CHECK(db_commit_jobs(a, &ba, v, DIM, "model-x", &err) == JM_OK, "[%s] A commits: %s", kind, err.msg);
    db_batch_free(&ba);
    db_batch_free(&bb);
    db_counts c1 = counts(a, "model-x");
    CHECK(c1.embedded == c0.embedded + 10, "[%s] 10 embedded by two workers: %lld", kind, (long long)c1.embedded);

    /* the same for skills */
    CHECK(db_claim_skills(a, "model-x", NULL, 2, &ba, &err) == JM_OK && ba.n == 2, "[%s] A claims skills", kind);
    CHECK(db_claim_skills(b, "model-x", NULL, 2, &bb, &err) == JM_OK && bb.n == 2, "[%s] B claims skills", kind);
    overlap = 0;
    for (int i = 0; i < ba.n; i++)
        for (int k = 0; k < bb.n; k++)
            overlap += !strcmp(ba.ids[i], bb.ids[k]);
    CHECK(overlap == 0, "[%s] disjoint skill batches", kind);
    db_abort(a);
    db_abort(b);
    db_batch_free(&ba);
    db_batch_free(&bb);

    /* a worker that dies releases its rows: the other then gets them */
    CHECK(db_claim_jobs(a, "model-x", NULL, 3, &ba, &err) == JM_OK && ba.n == 3, "[%s] A claims 3", kind);
    db_close(a);
    a = NULL;
    /* the server ends the closed session asynchronously: allow it a moment */
    int back = 0;
    for (int tries = 0; tries < 50 && !back; tries++) {
        if (db_claim_jobs(b, "model-x", NULL, 3, &bb, &err) != JM_OK)
            break;
        back = bb.n == 3 && !strcmp(ba.ids[0], bb.ids[0]);
        if (!back) {
            db_abort(b);
            db_batch_free(&bb);
            struct timespec ts = {0, 20 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    CHECK(back, "[%s] rows of a closed handle come back: %s", kind, err.msg);
    db_abort(b);
    db_batch_free(&ba);
    db_batch_free(&bb);
    db_close(b);
}

/* PostgreSQL only: a dropped connection is an error with the server's
 * message; ping reconnects. */
static void test_pg_dropped(const char *url, raw *r)
{
    jm_err err = {0};
    db *d = NULL;
    CHECK(db_open(url, &d, &err) == JM_OK, "[%s] open: %s", kind, err.msg);
    if (!d)
        return;
    char *n = raw_value(r,
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                        " WHERE application_name = 'jobmatch' AND datname = current_database()",
                        NULL);
    CHECK(n && atoi(n) >= 1, "[%s] terminated the store's backend: %s", kind, n ? n : "(error)");
    free(n);
    /* the backend goes away asynchronously: poll until the store notices */
    db_counts c;
    int rc = JM_OK;
    for (int tries = 0; tries < 100 && rc == JM_OK; tries++) {
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
        rc = db_counts_get(d, MODEL, &c, &err);
    }
    CHECK(rc == JM_EIO && strlen(err.msg) > 0 && !strchr(err.msg, '\n'), "[%s] dropped connection: %d %s", kind, rc,
          err.msg);
    CHECK(!strstr(err.msg, "jmpass"), "[%s] no password in: %s", kind, err.msg);
    CHECK(db_ping(d, &err) == JM_OK, "[%s] ping reconnects: %s", kind, err.msg);
    CHECK(db_counts_get(d, MODEL, &c, &err) == JM_OK, "[%s] works after reconnect: %s", kind, err.msg);
    db_close(d);
}

/* A URL with its password replaced by `pw` (buf), for the refused login. */
static void url_with_password(const char *url, const char *pw, char *buf, size_t cap)
{
    const char *s = strstr(url, "://");
    const char *at = s ? strchr(s + 3, '@') : NULL;
    const char *colon = at ? memchr(s + 3, ':', (size_t)(at - s - 3)) : NULL;
    if (!colon) {
        snprintf(buf, cap, "%s", url);
        return;
    }
    snprintf(buf, cap, "%.*s:%s%s", (int)(colon - url), url, pw, at);
}

static void test_urls(const char *pg_url)
{
    char buf[512];
    db_mask_url("postgresql://jm:s3cret@db.example:5432/jobs?sslmode=require", buf, sizeof buf);
    CHECK(!strcmp(buf, "postgresql://jm:***@db.example:5432/jobs?sslmode=require"), "masked: %s", buf);
    db_mask_url("postgres://u@h/db", buf, sizeof buf);
    CHECK(!strcmp(buf, "postgres://u@h/db"), "no password to mask: %s", buf);
    db_mask_url("postgresql://h/db?user=u&password=s3cret&sslmode=disable", buf, sizeof buf);
    CHECK(!strstr(buf, "s3cret") && strstr(buf, "sslmode=disable"), "query password masked: %s", buf);
    db_mask_url("/tmp/x.db", buf, sizeof buf);
    CHECK(!strcmp(buf, "/tmp/x.db"), "a path stays: %s", buf);
    if (!pg_url)
        return;

    jm_err err = {0};
    db *d = NULL;
    CHECK(db_open(pg_url, &d, &err) == JM_OK, "open pg: %s", err.msg);
    if (d) {
        const char *u = db_display_url(d);
        const char *at = strchr(u, '@');
        CHECK(at && at - u > 4 && !strncmp(at - 4, ":***", 4), "display url masked: %s", u);
        char pw[256];
        url_with_password(pg_url, "", buf, sizeof buf);
        /* the real password is whatever sits between ':' and '@' in pg_url */
        const char *s = strstr(pg_url, "://"), *a2 = s ? strchr(s + 3, '@') : NULL;
        const char *c = a2 ? memchr(s + 3, ':', (size_t)(a2 - s - 3)) : NULL;
        snprintf(pw, sizeof pw, "%.*s", c ? (int)(a2 - c - 1) : 0, c ? c + 1 : "");
        CHECK(!*pw || !strstr(u, pw), "display url hides the password");
        db_close(d);
    }
    /* a refused login: one line, the masked URL, never the password tried */
    url_with_password(pg_url, "Wr0ngPassw0rd", buf, sizeof buf);
    d = NULL;
    int rc = db_open(buf, &d, &err);
    CHECK(rc == JM_EIO && !d, "wrong password refused: %d", rc);
    CHECK(!strstr(err.msg, "Wr0ngPassw0rd") && strstr(err.msg, ":***@") && !strchr(err.msg, '\n'),
          "connection error: %s", err.msg);
    /* a malformed URL quoting the password back is scrubbed too */
    url_with_password(pg_url, "bad%zzpw", buf, sizeof buf);
    rc = db_open(buf, &d, &err);
    CHECK(rc != JM_OK && !strstr(err.msg, "zzpw"), "malformed URL error hides the password: %s", err.msg);
    /* nothing listening */
    rc = db_open("postgresql://jm:Secr3t@127.0.0.1:1/none?connect_timeout=2", &d, &err);
    CHECK(rc == JM_EIO && !strstr(err.msg, "Secr3t") && strstr(err.msg, "127.0.0.1"), "unreachable: %s", err.msg);
}

static void suite(const char *url, raw *r)
{
    printf("-- %s: %s\n", kind, url);
    test_open_migrate(url, r);
    db *d = NULL;
    jm_err err = {0};
    if (db_open(url, &d, &err)) {
        CHECK(0, "[%s] open: %s", kind, err.msg);
        return;
    }
    test_meta(d);
    test_upsert(d, r);
    test_claim_cycle(url, d, r);
    test_vector_bits(d, r);
    test_skills(d, r);
    test_odd_ids_and_volume(d, r);
    test_read_back(d, r);
    test_changes(d, r);
    if (is_pg(r))
        test_pg_slack(d, r);
    test_keyword(d, r);
    db_close(d);
    test_attach(url, r);
}

/* ---------- PostgreSQL: a database of our own ---------- */

/* url with its database name replaced by name, into buf. */
static int url_with_db(const char *url, const char *name, char *buf, size_t cap)
{
    const char *s = strstr(url, "://");
    if (!s)
        return -1;
    const char *slash = strchr(s + 3, '/');
    const char *q = strchr(s + 3, '?');
    size_t host_end = slash && (!q || slash < q) ? (size_t)(slash - url) : q ? (size_t)(q - url) : strlen(url);
    snprintf(buf, cap, "%.*s/%s%s", (int)host_end, url, name, q ? q : "");
    return 0;
}

/* Create a fresh database for this run; falls back to the URL's own database,
 * cleaned of jobmatch's tables, when the role may not create one. *created
 * says which. */
static int pg_fresh(const char *url, const char *name, char *out, size_t cap, int *created)
{
    PGconn *c = PQconnectdb(url);
    *created = 0;
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "JM_TEST_PG_URL: cannot connect: %s", PQerrorMessage(c));
        PQfinish(c);
        return -1;
    }
    PQclear(PQexec(c, "SET client_min_messages = warning"));
    char sql[256];
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s", name);
    PQclear(PQexec(c, sql));
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", name);
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) == PGRES_COMMAND_OK) {
        *created = 1;
        url_with_db(url, name, out, cap);
    } else {
        fprintf(stderr, "note: cannot create a database (%s); using the URL's own, after dropping jobmatch's tables\n",
                PQerrorMessage(c));
        PQclear(PQexec(c, "DROP TABLE IF EXISTS jobs, skills, meta, job_changes, skill_job1, skill_job2, skill_job3,"
                               " legacy_jobs"));
        snprintf(out, cap, "%s", url);
    }
    PQclear(r);
    PQfinish(c);
    return 0;
}

static void pg_drop(const char *url, const char *name)
{
    PGconn *c = PQconnectdb(url);
    if (PQstatus(c) == CONNECTION_OK) {
        char sql[256];
        snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", name);
        PQclear(PQexec(c, sql));
    }
    PQfinish(c);
}

/* db_skills_parse: every stored form, as one block. */
static void test_skills_parse(void)
{
    static const struct {
        const char *value;
        int n;
        const char *first;
        int req0;
    } cases[] = {
        {"[{\"name\":\"Python\",\"required\":true},{\"name\":\"SQL\",\"required\":false}]", 2, "Python", 1},
        {"[\"Go\", \"Rust\", \"C\"]", 3, "Go", 1},
        {"Python, ~SQL; Docker", 3, "Python", 1},
        {"{C++,\"Visual Basic\"}", 2, "C++", 1},
        {"[{\"name\":\"Esc\\\"aped\",\"required\":false}]", 1, "Esc\"aped", 0},
        {"", 0, NULL, 0},
        {NULL, 0, NULL, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        db_skill *s = (db_skill *)1;
        int n = -1;
        int rc = db_skills_parse(cases[i].value, &s, &n);
        int ok = rc == JM_OK && n == cases[i].n && (n ? s != NULL : s == NULL);
        if (ok && n)
            ok = !strcmp(s[0].name, cases[i].first) && s[0].required == cases[i].req0;
        CHECK(ok, "db_skills_parse case %zu (%s): rc %d, %d skills, first %s", i,
              cases[i].value ? cases[i].value : "NULL", rc, n, ok && n ? s[0].name : "-");
        if (rc == JM_OK)
            free(s);
    }
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    test_skills_parse();
    const char *pg_url = getenv("JM_TEST_PG_URL");
    if (pg_url && !*pg_url)
        pg_url = NULL;

    /* SQLite, always */
    char dir[] = "/tmp/jm-db-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    char path[256], path2[256], path3[256];
    snprintf(path, sizeof path, "%s/store.db", dir);
    snprintf(path2, sizeof path2, "%s/fresh.db", dir);
    snprintf(path3, sizeof path3, "%s/v1.db", dir);
    raw r;
    kind = "sqlite";
    if (raw_open(&r, "sqlite", path) == 0) {
        suite(path, &r);
        raw_close(&r);
    } else {
        CHECK(0, "raw sqlite open %s", path);
    }
    if (raw_open(&r, "sqlite", path2) == 0) {
        test_concurrent_open(path2, &r);
        raw_close(&r);
    }
    if (raw_open(&r, "sqlite", path3) == 0) {
        test_migrate_v1(path3, &r);
        raw_close(&r);
    }
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);

    test_urls(pg_url);

    if (pg_url) {
        kind = "postgresql";
        char name[64], name2[64], url[1024], url2[1024];
        snprintf(name, sizeof name, "jm_test_%d", (int)getpid());
        snprintf(name2, sizeof name2, "jm_test_%d_b", (int)getpid());
        int created = 0, created2 = 0;
        if (pg_fresh(pg_url, name, url, sizeof url, &created) == 0 && raw_open(&r, "postgresql", url) == 0) {
            suite(url, &r);
            test_pg_concurrency(url);
            test_pg_dropped(url, &r);
            raw_close(&r);
        } else {
            CHECK(0, "cannot prepare a PostgreSQL database from JM_TEST_PG_URL");
        }
        if (created && pg_fresh(pg_url, name2, url2, sizeof url2, &created2) == 0 && created2 &&
            raw_open(&r, "postgresql", url2) == 0) {
            test_concurrent_open(url2, &r);
            raw_close(&r);
        }
        char name3[64], url3[1024];
        int created3 = 0;
        snprintf(name3, sizeof name3, "jm_test_%d_v1", (int)getpid());
        if (created && pg_fresh(pg_url, name3, url3, sizeof url3, &created3) == 0 && created3 &&
            raw_open(&r, "postgresql", url3) == 0) {
            test_migrate_v1(url3, &r);
            raw_close(&r);
        }
        if (created)
            pg_drop(pg_url, name);
        if (created2)
            pg_drop(pg_url, name2);
        if (created3)
            pg_drop(pg_url, name3);
    } else {
        printf("(JM_TEST_PG_URL not set: PostgreSQL not tested)\n");
    }
    return CHECK_DONE("test_db");
}
