/* test_import.c - the CSV, JSON Lines and O*NET readers (no database needed),
 * then imp_file / imp_onet into a temporary SQLite file. */
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "db.h"
#include "import.h"

/* ---------- temp files ---------- */

static char tmp_paths[64][128];
static int ntmp;

/* Write len bytes to a new temp file whose name ends in suffix; returns its path. */
static const char *tmp_write(const char *suffix, const char *data, size_t len)
{
    char *p = tmp_paths[ntmp++];
    snprintf(p, 128, "/tmp/jm_imp_XXXXXX%s", suffix);
    int fd = mkstemps(p, (int)strlen(suffix));
    if (fd < 0) {
        perror("mkstemps");
        exit(2);
    }
    FILE *f = fdopen(fd, "wb");
    if (fwrite(data, 1, len, f) != len) {
        perror("fwrite");
        exit(2);
    }
    fclose(f);
    return p;
}

static const char *tmp_str(const char *suffix, const char *text)
{
    return tmp_write(suffix, text, strlen(text));
}

static void tmp_cleanup(void)
{
    for (int i = 0; i < ntmp; i++)
        unlink(tmp_paths[i]);
}

/* ---------- a collector of rows and bad rows ---------- */

#define MAXJOBS 64
#define MAXBAD 64

typedef struct coll {
    db_job jobs[MAXJOBS];
    int n;
    int64_t bad_line[MAXBAD];
    char bad_reason[MAXBAD][256];
    int nbad;
} coll;

static int on_row(void *ctx, db_job *job, jm_err *err)
{
    (void)err;
    coll *c = ctx;
    if (c->n < MAXJOBS) {
        c->jobs[c->n++] = *job; /* take ownership */
        db_job_init(job);
    }
    return 0;
}

static void on_bad(void *ctx, int64_t line, const char *reason)
{
    coll *c = ctx;
    if (c->nbad < MAXBAD) {
        c->bad_line[c->nbad] = line;
        snprintf(c->bad_reason[c->nbad], sizeof c->bad_reason[0], "%s", reason);
        c->nbad++;
    }
}

static void coll_free(coll *c)
{
    for (int i = 0; i < c->n; i++)
        db_job_clear(&c->jobs[i]);
    memset(c, 0, sizeof *c);
}

static const db_job *job_by_id(const coll *c, const char *id)
{
    for (int i = 0; i < c->n; i++)
        if (c->jobs[i].id && !strcmp(c->jobs[i].id, id))
            return &c->jobs[i];
    return NULL;
}

/* The reason reported for `line`, or NULL. */
static const char *bad_at(const coll *c, int64_t line)
{
    for (int i = 0; i < c->nbad; i++)
        if (c->bad_line[i] == line)
            return c->bad_reason[i];
    return NULL;
}

static int streq(const char *a, const char *b)
{
    return a && b && !strcmp(a, b);
}

static int run(const char *path, int format, coll *c, imp_stats *st, jm_err *err)
{
    memset(c, 0, sizeof *c);
    memset(err, 0, sizeof *err);
    return imp_read(path, format, on_row, on_bad, c, st, err);
}

/* Check that line `line` was reported with a reason containing `word`. */
#define CHECK_BAD(c, line, word)                                                                 \
    do {                                                                                         \
        const char *r_ = bad_at((c), (line));                                                    \
        CHECK(r_ && strstr(r_, (word)), "line %d: want a reason with \"%s\", got \"%s\"", (line), \
              (word), r_ ? r_ : "(none)");                                                       \
    } while (0)

/* ---------- CSV ---------- */

static void test_csv_quoting(void)
{
    const char *csv =
        "id,title,company,description,skills,remote,salary_min,salary_max,currency,posted_at\n"
        "1,\"Dev, Senior\",\"Acme \"\"Big\"\" Co\",\"line one\nline two, with comma\",python;sql,yes, 1000 ,2000.5,EUR,2024-01-15\n"
        "2,Plain,,,,,,,,\n"
        "3,\"\",\"\",\"\"\"\",\"\",NO,,,,2024-02-29T10:30:00Z\n";
    const char *p = tmp_str(".csv", csv);
    coll c;
    imp_stats st;
    jm_err err;
    int rc = run(p, IMP_AUTO, &c, &st, &err);
    CHECK(rc == JM_OK, "rc %d: %s", rc, err.msg);
    CHECK(c.n == 3 && c.nbad == 0, "rows %d bad %d (%s)", c.n, c.nbad, c.nbad ? c.bad_reason[0] : "");
    CHECK(st.read == 3 && st.imported == 3 && st.failed == 0, "stats %lld %lld %lld", (long long)st.read,
          (long long)st.imported, (long long)st.failed);
    const db_job *j = job_by_id(&c, "1");
    CHECK(j != NULL, "job 1");
    if (j) {
        CHECK(streq(j->title, "Dev, Senior"), "title %s", j->title);
        CHECK(streq(j->company, "Acme \"Big\" Co"), "company %s", j->company);
        CHECK(streq(j->description, "line one\nline two, with comma"), "description %s", j->description);
        CHECK(j->remote == 1, "remote %d", j->remote);
        CHECK(j->salary_min == 1000 && j->salary_max == 2000.5, "salary %g %g", j->salary_min, j->salary_max);
        CHECK(streq(j->currency, "EUR"), "currency %s", j->currency);
        CHECK(streq(j->posted_at, "2024-01-15"), "posted_at %s", j->posted_at);
        CHECK(j->nskills == 2 && streq(j->skills[0].name, "python") && streq(j->skills[1].name, "sql"),
              "skills %d", j->nskills);
        CHECK(j->location == NULL, "unknown column stays NULL");
    }
    j = job_by_id(&c, "2");
    CHECK(j && streq(j->title, "Plain") && !j->company && !j->description && j->remote == -1 &&
              isnan(j->salary_min) && isnan(j->salary_max) && !j->posted_at && j->nskills == 0,
          "empty fields are unknown");
    j = job_by_id(&c, "3");
    CHECK(j && !j->title && streq(j->description, "\"") && j->remote == 0 &&
              streq(j->posted_at, "2024-02-29T10:30:00Z"),
          "quoted empties, a lone escaped quote, NO, a leap day");
    coll_free(&c);
}

static void test_csv_bom_crlf(void)
{
    const char *csv = "\xEF\xBB\xBF"
                      "id,title,description\r\n"
                      "1,A,x\r\n"
                      "2,\"multi\r\nline\",\"a \"\"b\"\"\"\r\n"
                      "\r\n"
                      "3,C,\r\n"
                      "4,bad\"quote,\r\n"
                      "5,E,last without a line end";
    const char *p = tmp_str(".csv", csv);
    coll c;
    imp_stats st;
    jm_err err;
    int rc = run(p, IMP_CSV, &c, &st, &err);
    CHECK(rc == JM_OK, "rc %d: %s", rc, err.msg);
    CHECK(c.n == 4, "rows %d", c.n);
    const db_job *j = job_by_id(&c, "1");
    CHECK(j && streq(j->title, "A") && streq(j->description, "x"), "CR not kept at the line end");
    j = job_by_id(&c, "2");
    CHECK(j && streq(j->title, "multi\nline") && streq(j->description, "a \"b\""), "CRLF in quotes -> LF: %s",
          j ? j->title : "");
    j = job_by_id(&c, "3");
    CHECK(j && streq(j->title, "C") && !j->description, "row 3");
    j = job_by_id(&c, "5");
    CHECK(j && streq(j->description, "last without a line end"), "last row without newline");
    CHECK(c.nbad == 1, "bad %d", c.nbad);
    CHECK_BAD(&c, 7, "quote"); /* BOM line 1, row 2 spans lines 3-4, blank line 5 */
    CHECK(st.read == 5 && st.failed == 1, "read %lld failed %lld", (long long)st.read, (long long)st.failed);
    coll_free(&c);
}

static void test_csv_header(void)
{
    /* aliases, case, spaces, hyphens; unknown and duplicate columns */
    const char *csv = " Job ID ,JOB_TITLE,Employer,Foo,Salary-From,salary_to,Date Posted,Is_Remote,"
                      "job_type,Seniority_Level,Job Description,Salary_Currency,title,Location\n"
                      "j1,Engineer,Acme,ignored,10,20,2024-03-01T09:00,true,full-time,senior,Builds,USD,NotThis,Paris\n";
    const char *p = tmp_str(".csv", csv);
    coll c;
    imp_stats st;
    jm_err err;
    int rc = run(p, IMP_AUTO, &c, &st, &err);
    CHECK(rc == JM_OK && c.n == 1, "rc %d rows %d: %s %s", rc, c.n, err.msg, c.nbad ? c.bad_reason[0] : "");
    const db_job *j = job_by_id(&c, "j1");
    CHECK(j != NULL, "aliased id");
    if (j) {
        CHECK(streq(j->title, "Engineer"), "first title column wins: %s", j->title);
        CHECK(streq(j->company, "Acme") && streq(j->location, "Paris"), "company/location");
        CHECK(j->salary_min == 10 && j->salary_max == 20, "salary aliases");
        CHECK(streq(j->posted_at, "2024-03-01T09:00") && j->remote == 1, "date_posted, is_remote");
        CHECK(streq(j->employment_type, "full-time") && streq(j->seniority, "senior"), "job_type, seniority_level");
        CHECK(streq(j->description, "Builds") && streq(j->currency, "USD"), "description, currency aliases");
    }
    coll_free(&c);

    /* no id column: an error for the file */
    p = tmp_str(".csv", "title,company\nA,B\n");
    rc = run(p, IMP_CSV, &c, &st, &err);
    CHECK(rc == JM_EFORMAT && strstr(err.msg, "id column"), "no id: rc %d %s", rc, err.msg);
    coll_free(&c);

    /* a broken header */
    p = tmp_str(".csv", "id,ti\"tle\n1,a\n");
    rc = run(p, IMP_CSV, &c, &st, &err);
    CHECK(rc == JM_EFORMAT && strstr(err.msg, "header"), "broken header: rc %d %s", rc, err.msg);
    coll_free(&c);

    /* header only; empty; white space only */
    p = tmp_str(".csv", "id,title\r\n");
    rc = run(p, IMP_AUTO, &c, &st, &err);
    CHECK(rc == JM_OK && c.n == 0 && c.nbad == 0 && st.read == 0, "header only: rc %d", rc);
    p = tmp_str(".csv", "");
    rc = run(p, IMP_AUTO, &c, &st, &err);
    CHECK(rc == JM_OK && c.n == 0 && c.nbad == 0 && st.read == 0, "empty file: rc %d", rc);
    p = tmp_str(".jsonl", "");
    rc = run(p, IMP_AUTO, &c, &st, &err);
    CHECK(rc == JM_OK && c.n == 0 && st.read == 0, "empty jsonl: rc %d", rc);
    p = tmp_str(".txt", "\xEF\xBB\xBF \n\r\n\t\n");
    rc = run(p, IMP_AUTO, &c, &st, &err);
    CHECK(rc == JM_OK && c.n == 0 && c.nbad == 0, "blank file: rc %d", rc);

    /* missing file */
    rc = run("/tmp/jm_imp_no_such_file.csv", IMP_AUTO, &c, &st, &err);
    CHECK(rc == JM_ENOTFOUND && strstr(err.msg, "jm_imp_no_such_file"), "missing: rc %d %s", rc, err.msg);
}

static void test_csv_skills(void)
{
    const char *csv = "id,skills\n"
                      "a,\"[\"\"Python\"\", \"\"SQL\"\"]\"\n"
                      "b,\"[{\"\"name\"\":\"\"Go\"\",\"\"required\"\":true},{\"\"name\"\":\"\"Rust\"\",\"\"required\"\":false}]\"\n"
                      "c,\"docker, kubernetes ,aws\"\n"
                      "d,excel;word ; powerpoint\n"
                      "e,\n";
    const char *p = tmp_str(".csv", csv);
    coll c;
    imp_stats st;
    jm_err err;
    int rc = run(p, IMP_CSV, &c, &st, &err);
    CHECK(rc == JM_OK && c.n == 5, "rc %d rows %d", rc, c.n);
    const db_job *j = job_by_id(&c, "a");
    CHECK(j && j->nskills == 2 && streq(j->skills[0].name, "Python") && streq(j->skills[1].name, "SQL"),
          "JSON array of strings");
    j = job_by_id(&c, "b");
    CHECK(j && j->nskills == 2 && streq(j->skills[0].name, "Go") && j->skills[0].required == 1 &&
              streq(j->skills[1].name, "Rust") && j->skills[1].required == 0,
          "JSON objects with required");
    j = job_by_id(&c, "c");
    CHECK(j && j->nskills == 3 && streq(j->skills[1].name, "kubernetes") && streq(j->skills[2].name, "aws"),
          "comma list");
    j = job_by_id(&c, "d");
    CHECK(j && j->nskills == 3 && streq(j->skills[1].name, "word") && streq(j->skills[2].name, "powerpoint"),
          "semicolon list");
    j = job_by_id(&c, "e");
    CHECK(j && j->nskills == 0 && j->skills == NULL, "no skills");
    coll_free(&c);
}

static void test_csv_bad_rows(void)
{
    const char *csv = "id,title,remote,salary_min,salary_max,posted_at\n" /* 1 */
                      "g1,ok\n"                                             /* 2 */
                      ",no id\n"                                            /* 3 */
                      "g2,ok,,1,2,2024-01-01 10:00\n"                       /* 4 */
                      "b1,ti\"tle\n"                                        /* 5 */
                      "g3,\"ok\"\n"                                         /* 6 */
                      "b2,\"x\"y,true\n"                                    /* 7 */
                      "b3,t,maybe\n"                                        /* 8 */
                      "b4,t,,abc\n"                                         /* 9 */
                      "b5,t,,,12k\n"                                        /* 10 */
                      "b6,t,,,,yesterday\n"                                 /* 11 */
                      "b7,t,,,,,extra\n"                                    /* 12 */
                      "b8,\xC3\x28 bad\n"                                   /* 13 */
                      "g4,\"multi\nline\",0\n"                              /* 14-15 */
                      "b9,t,,,,2023-02-29\n"                                /* 16 */
                      "b10,t,,inf\n"                                        /* 17 */
                      "b11,t,,,,2024-13-01\n"                               /* 18 */
                      "   ,blank id\n"                                      /* 19 */
                      "b12,\"ok\",\"\xED\xA0\x80\"\n"                       /* 20: a surrogate */
                      "g5,ok,,-1.5e3,+7.,2024-01-01T00:00:00.123+05:30\n"   /* 21 */
                      "b13,t,,0x10\n"                                       /* 22 */
                      "g6\n";                                               /* 23 */
    const char *p = tmp_str(".csv", csv);
    coll c;
    imp_stats st;
    jm_err err;
    int rc = run(p, IMP_CSV, &c, &st, &err);
    CHECK(rc == JM_OK, "rc %d: %s", rc, err.msg);
    const char *good[] = {"g1", "g2", "g3", "g4", "g5", "g6"};
    CHECK(c.n == 6, "good rows %d", c.n);
    for (int i = 0; i < 6; i++)
        CHECK(job_by_id(&c, good[i]) != NULL, "good row %s parsed", good[i]);
    CHECK(c.nbad == 15, "bad rows %d", c.nbad);
    CHECK(st.read == 21 && st.imported == 6 && st.failed == 15, "stats %lld %lld %lld", (long long)st.read,
          (long long)st.imported, (long long)st.failed);
    CHECK_BAD(&c, 3, "id is empty");
    CHECK_BAD(&c, 5, "quote inside unquoted field 2 (title)");
    CHECK_BAD(&c, 7, "after the closing quote");
    CHECK_BAD(&c, 8, "remote is not");
    CHECK_BAD(&c, 9, "salary_min is not a number: \"abc\"");
    CHECK_BAD(&c, 10, "salary_max is not a number: \"12k\"");
    CHECK_BAD(&c, 11, "posted_at is not an ISO 8601");
    CHECK_BAD(&c, 12, "7 fields, but the header has 6");
    CHECK_BAD(&c, 13, "invalid UTF-8 in field 2 (title)");
    CHECK_BAD(&c, 16, "posted_at");
    CHECK_BAD(&c, 17, "salary_min is not a number: \"inf\"");
    CHECK_BAD(&c, 18, "posted_at");
    CHECK_BAD(&c, 19, "id is empty");
    CHECK_BAD(&c, 20, "invalid UTF-8 in field 3 (remote)");
    CHECK_BAD(&c, 22, "not a number");
    const db_job *j = job_by_id(&c, "g4");
    CHECK(j && streq(j->title, "multi\nline") && j->remote == 0, "quoted row after bad rows");
    j = job_by_id(&c, "g5");
    CHECK(j && j->salary_min == -1500 && j->salary_max == 7, "signed and exponent numbers");
    j = job_by_id(&c, "g6");
    CHECK(j && !j->title, "a row with fewer fields than the header");
    coll_free(&c);

    /* a reason never spans lines and quotes the value with escapes */
    p = tmp_str(".csv", "id,salary_min\n1,\"a\nb\"\n");
    run(p, IMP_CSV, &c, &st, &err);
    CHECK(c.nbad == 1 && !strchr(c.bad_reason[0], '\n') && strstr(c.bad_reason[0], "\"a\\nb\""),
          "escaped reason: %s", c.nbad ? c.bad_reason[0] : "");
    coll_free(&c);

    /* a NUL byte */
    static const char nul[] = "id,title\n1,a\0b\n2,ok\n";
    p = tmp_write(".csv", nul, sizeof nul - 1);
    run(p, IMP_CSV, &c, &st, &err);
    CHECK(c.n == 1 && c.nbad == 1, "NUL: rows %d bad %d", c.n, c.nbad);
    CHECK_BAD(&c, 2, "NUL");
    coll_free(&c);

    /* no id column value at all (short row with id not first) */
    p = tmp_str(".csv", "title,id\nonly title\n");
    run(p, IMP_CSV, &c, &st, &err);
    CHECK(c.n == 0 && c.nbad == 1, "missing id: %d %d", c.n, c.nbad);
    CHECK_BAD(&c, 2, "id is missing");
    coll_free(&c);
}

static void test_csv_unterminated(void)
{
    /* The stray quote on line 3 swallows the rest of the file; the reader goes
     * back and still finds rows 3 and 4. */
    const char *csv = "id,title\n"
                      "1,ok\n"
                      "2,\"broken, never closed\n"
                      "3,fine\n"
                      "4,also fine\n";
    const char *p = tmp_str(".csv", csv);
    coll c;
    imp_stats st;
    jm_err err;
    int rc = run(p, IMP_CSV, &c, &st, &err);
    CHECK(rc == JM_OK, "rc %d", rc);
    CHECK(c.nbad == 1, "bad %d", c.nbad);
    CHECK_BAD(&c, 3, "not closed at end of file");
    CHECK(c.n == 3 && job_by_id(&c, "1") && job_by_id(&c, "3") && job_by_id(&c, "4"), "rows %d", c.n);
    coll_free(&c);

    /* open quote on the last line, no line end */
    p = tmp_str(".csv", "id,title\n1,ok\n2,\"open");
    rc = run(p, IMP_CSV, &c, &st, &err);
    CHECK(rc == JM_OK && c.n == 1 && c.nbad == 1, "rows %d bad %d", c.n, c.nbad);
    CHECK_BAD(&c, 3, "not closed");
    coll_free(&c);
}

/* A 1 MiB + 1 field, and a record over 16 MiB made of fields under 1 MiB. */
static void test_csv_limits(void)
{
    size_t big = (1u << 20) + 1;
    size_t cap = 20u << 20;
    char *buf = malloc(cap);
    size_t n = 0;
    n += (size_t)sprintf(buf + n, "id,description");
    for (int i = 0; i < 20; i++)
        n += (size_t)sprintf(buf + n, ",c%d", i);
    n += (size_t)sprintf(buf + n, "\n1,ok\n2,\"");
    memset(buf + n, 'x', big);
    n += big;
    n += (size_t)sprintf(buf + n, "\"\n3,ok\n4,ok");
    for (int i = 0; i < 17; i++) {
        buf[n++] = ',';
        memset(buf + n, 'y', 1000000);
        n += 1000000;
    }
    n += (size_t)sprintf(buf + n, "\n5,ok\n");
    const char *p = tmp_write(".csv", buf, n);
    free(buf);
    coll c;
    imp_stats st;
    jm_err err;
    int rc = run(p, IMP_CSV, &c, &st, &err);
    CHECK(rc == JM_OK, "rc %d", rc);
    CHECK(c.n == 3 && job_by_id(&c, "1") && job_by_id(&c, "3") && job_by_id(&c, "5"), "rows %d", c.n);
    CHECK(c.nbad == 2, "bad %d", c.nbad);
    CHECK_BAD(&c, 3, "field 2 (description) is larger than 1 MiB");
    CHECK_BAD(&c, 5, "record is larger than 16 MiB");
    coll_free(&c);

    /* exactly 1 MiB is fine */
    buf = malloc((1u << 20) + 64);
    n = (size_t)sprintf(buf, "id,description\n1,");
    memset(buf + n, 'z', 1u << 20);
    n += 1u << 20;
    buf[n++] = '\n';
    p = tmp_write(".csv", buf, n);
    free(buf);
    run(p, IMP_CSV, &c, &st, &err);
    CHECK(c.n == 1 && c.nbad == 0 && strlen(c.jobs[0].description) == (1u << 20), "1 MiB field");
    coll_free(&c);
}

/* JSONL: a string over 1 MiB, a line over 16 MiB, and the rows around them. */
static void test_jsonl_limits(void)
{
    size_t cap = 20u << 20, n = 0;
    char *buf = malloc(cap);
    n += (size_t)sprintf(buf + n, "{\"id\":\"1\"}\n{\"id\":\"2\",\"description\":\"");
    memset(buf + n, 'x', (1u << 20) + 1);
    n += (1u << 20) + 1;
    n += (size_t)sprintf(buf + n, "\"}\n{\"id\":\"3\"}\n{\"id\":\"4\",\"pad\":\"");
    memset(buf + n, 'y', 17u << 20);
    n += 17u << 20;
    n += (size_t)sprintf(buf + n, "\"}\n{\"id\":\"5\"}\n");
    const char *p = tmp_write(".jsonl", buf, n);
    free(buf);
    coll c;
    imp_stats st;
    jm_err err;
    int rc = run(p, IMP_AUTO, &c, &st, &err);
    CHECK(rc == JM_OK && c.n == 3 && job_by_id(&c, "1") && job_by_id(&c, "3") && job_by_id(&c, "5"),
          "rc %d rows %d", rc, c.n);
    CHECK(c.nbad == 2, "bad %d", c.nbad);
    CHECK_BAD(&c, 2, "description is larger than 1 MiB");
    CHECK_BAD(&c, 4, "larger than 16 MiB");
    coll_free(&c);
}

static int stop_at_two(void *ctx, db_job *job, jm_err *err)
{
    (void)job;
    int *n = ctx;
    if (++*n == 2)
        return jm_fail(err, JM_EINVAL, "stop here");
    return 0;
}

static void test_callback_stops(void)
{
    const char *p = tmp_str(".csv", "id\n1\n2\n3\n");
    int n = 0;
    imp_stats st;
    jm_err err = {0};
    int rc = imp_read(p, IMP_AUTO, stop_at_two, NULL, &n, &st, &err);
    CHECK(rc == JM_EINVAL && n == 2 && st.imported == 1 && strstr(err.msg, "stop here"),
          "callback stop: rc %d n %d", rc, n);
}

/* ---------- JSON Lines ---------- */

static void test_jsonl(void)
{
    const char *jl =
        "{\"id\":\"a\",\"title\":\"T\",\"salary_min\":100,\"salary_max\":\"200\",\"remote\":true,"
        "\"skills\":[\"x\",{\"name\":\"y\",\"required\":false}],\"extra\":{\"k\":[1]}}\n" /* 1 */
        "\n"                                                                          /* 2 */
        "[1,2]\n"                                                                     /* 3 */
        "{\"id\": 5, \"remote\": \"no\", \"skills\": \"a, b\", \"Job Title\": \"U\"}\r\n" /* 4 */
        "{\"id\":\"b\", broken\n"                                                     /* 5 */
        "{\"title\":\"no id\"}\n"                                                     /* 6 */
        "{\"id\":\"c\",\"salary_min\":\"12k\"}\n"                                     /* 7 */
        "{\"id\":\"d\",\"title\":\"\xFF\"}\n"                                         /* 8 */
        "{\"id\":\"e\",\"remote\":\"maybe\"}\n"                                       /* 9 */
        "{\"id\":\"f\",\"title\":null,\"posted_at\":\"2024-05-01\",\"remote\":0}\n"   /* 10 */
        "{\"id\":\"g\",\"title\":42}\n"                                               /* 11 */
        "{\"id\":1.5}\n"                                                              /* 12 */
        "{\"id\":\"h\",\"posted_at\":\"May 1\"}\n"                                    /* 13 */
        "{\"id\":\"i\"} trailing\n"                                                   /* 14 */
        "\"just a string\"\n"                                                         /* 15 */
        "{\"id\":\"\"}\n"                                                             /* 16 */
        "{\"id\":\"j\",\"salary_max\":1e999}\n"                                       /* 17 */
        "{\"id\":\"k\",\"description\":\"caf\\u00e9 \\\"q\\\"\"}";                  /* 18, no newline */
    const char *p = tmp_str(".ndjson", jl);
    coll c;
    imp_stats st;
    jm_err err;
    int rc = run(p, IMP_AUTO, &c, &st, &err);
    CHECK(rc == JM_OK, "rc %d: %s", rc, err.msg);
    CHECK(c.n == 4, "rows %d", c.n);
    CHECK(c.nbad == 13, "bad %d", c.nbad);
    CHECK(st.read == 17 && st.failed == 13 && st.imported == 4, "stats %lld %lld", (long long)st.read,
          (long long)st.failed);
    const db_job *j = job_by_id(&c, "a");
    CHECK(j && streq(j->title, "T") && j->salary_min == 100 && j->salary_max == 200 && j->remote == 1,
          "json a");
    CHECK(j && j->nskills == 2 && streq(j->skills[0].name, "x") && j->skills[0].required == 1 &&
              streq(j->skills[1].name, "y") && j->skills[1].required == 0,
          "json skills array");
    j = job_by_id(&c, "5");
    CHECK(j && j->remote == 0 && j->nskills == 2 && streq(j->skills[1].name, "b") && streq(j->title, "U"),
          "integer id, string remote, string skills, aliased key, CRLF");
    j = job_by_id(&c, "f");
    CHECK(j && !j->title && streq(j->posted_at, "2024-05-01") && j->remote == 0, "null title");
    j = job_by_id(&c, "k");
    CHECK(j && streq(j->description, "caf\xC3\xA9 \"q\""), "escapes: %s", j ? j->description : "");
    CHECK_BAD(&c, 3, "not a JSON object");
    CHECK_BAD(&c, 5, "invalid JSON");
    CHECK_BAD(&c, 6, "id is missing");
    CHECK_BAD(&c, 7, "salary_min is not a number: \"12k\"");
    CHECK_BAD(&c, 8, "invalid UTF-8");
    CHECK_BAD(&c, 9, "remote");
    CHECK_BAD(&c, 11, "title is a number");
    CHECK_BAD(&c, 12, "id");
    CHECK_BAD(&c, 13, "posted_at");
    CHECK_BAD(&c, 14, "invalid JSON");
    CHECK_BAD(&c, 15, "not a JSON object");
    CHECK_BAD(&c, 16, "id is empty");
    CHECK_BAD(&c, 17, "salary_max");
    coll_free(&c);
}

static void test_format_choice(void)
{
    CHECK(imp_format_from_path("a/b.CSV") == IMP_CSV, "csv ext");
    CHECK(imp_format_from_path("x.jsonl") == IMP_JSONL && imp_format_from_path("x.ndjson") == IMP_JSONL &&
              imp_format_from_path("x.json-lines") == IMP_JSONL,
          "jsonl exts");
    CHECK(imp_format_from_path("dir.csv/file") == IMP_AUTO && imp_format_from_path("x.txt") == IMP_AUTO,
          "unknown ext");
    CHECK(imp_format_parse("JSONL") == IMP_JSONL && imp_format_parse("csv") == IMP_CSV &&
              imp_format_parse("auto") == IMP_AUTO && imp_format_parse("xml") == -1,
          "format names");

    coll c;
    imp_stats st;
    jm_err err;
    const char *p = tmp_str(".txt", "\xEF\xBB\xBF\n  {\"id\":\"s1\"}\n{\"id\":\"s2\"}\n");
    int rc = run(p, IMP_AUTO, &c, &st, &err);
    CHECK(rc == JM_OK && c.n == 2 && c.nbad == 0, "sniffed JSONL: rc %d rows %d", rc, c.n);
    coll_free(&c);
    p = tmp_str(".dat", "\nid,title\n\n1,x\n2,\n");
    rc = run(p, IMP_AUTO, &c, &st, &err);
    CHECK(rc == JM_OK && c.n == 2 && c.nbad == 0, "sniffed CSV: rc %d rows %d", rc, c.n);
    coll_free(&c);
    /* line numbers count the blank lines before the header */
    p = tmp_str(".dat", "\n\nid,salary_min\n1,x\n");
    run(p, IMP_AUTO, &c, &st, &err);
    CHECK_BAD(&c, 4, "salary_min");
    coll_free(&c);
    /* the format argument beats the extension */
    p = tmp_str(".csv", "{\"id\":\"z\"}\n");
    rc = run(p, IMP_JSONL, &c, &st, &err);
    CHECK(rc == JM_OK && c.n == 1 && streq(c.jobs[0].id, "z"), "forced JSONL");
    coll_free(&c);
}

/* ---------- O*NET ---------- */

static const char *onet_dir(void)
{
    const char *e = getenv("JM_ONET_DIR");
    return e && *e ? e : "../shared/data/onet";
}

typedef struct onet_seen {
    int n;
    int with_skills;
    int found;
    char title[128];
    int nskills, nrequired, has_python, python_required, dups;
    char first_code[32];
} onet_seen;

static int on_onet(void *ctx, db_job *job, jm_err *err)
{
    (void)err;
    onet_seen *s = ctx;
    if (s->n++ == 0)
        snprintf(s->first_code, sizeof s->first_code, "%s", job->id);
    if (job->nskills)
        s->with_skills++;
    if (!strcmp(job->id, "15-1252.00")) {
        s->found = 1;
        snprintf(s->title, sizeof s->title, "%s", job->title ? job->title : "");
        s->nskills = job->nskills;
        for (int i = 0; i < job->nskills; i++) {
            s->nrequired += job->skills[i].required;
            if (!strcmp(job->skills[i].name, "Python")) {
                s->has_python = 1;
                s->python_required = job->skills[i].required;
            }
            for (int k = 0; k < i; k++)
                if (!strcmp(job->skills[k].name, job->skills[i].name))
                    s->dups++;
        }
        if (job->company || job->remote != -1 || !job->description || !isnan(job->salary_min))
            s->dups += 1000;
    }
    return 0;
}

static void test_onet(void)
{
    const char *dir = onet_dir();
    char path[1024];
    snprintf(path, sizeof path, "%s/Occupation Data.txt", dir);
    if (access(path, R_OK) != 0) {
        printf("note: O*NET data not found in %s (set JM_ONET_DIR); O*NET checks skipped\n", dir);
        return;
    }
    onet_seen s = {0};
    imp_stats st;
    jm_err err = {0};
    double t0 = jm_now();
    int rc = imp_read_onet(dir, on_onet, NULL, &s, &st, &err);
    double dt = jm_now() - t0;
    CHECK(rc == JM_OK, "rc %d: %s", rc, err.msg);
    CHECK(s.n == 1016 && st.imported == 1016 && st.read == 1016 && st.failed == 0, "jobs %d failed %lld", s.n,
          (long long)st.failed);
    CHECK(s.with_skills == 923, "occupations with skills %d", s.with_skills);
    CHECK(streq(s.first_code, "11-1011.00"), "file order: first %s", s.first_code);
    CHECK(s.found && streq(s.title, "Software Developers"), "15-1252.00 title \"%s\"", s.title);
    CHECK(s.nskills > 100 && s.nrequired > 10 && s.nrequired < s.nskills, "skills %d required %d", s.nskills,
          s.nrequired);
    CHECK(s.has_python && s.python_required, "Python is a hot technology of software developers");
    CHECK(s.dups == 0, "no duplicate skills, no company/remote/salary (%d)", s.dups);
    printf("O*NET: %d jobs in %.3f s\n", s.n, dt);

    /* a directory without the files */
    rc = imp_read_onet("/tmp", on_onet, NULL, &s, &st, &err);
    CHECK(rc == JM_ENOTFOUND && strstr(err.msg, "Occupation Data.txt"), "missing file named: %s", err.msg);
}

/* A small O*NET-shaped directory of our own: duplicates, a job without skills,
 * a skill for an unknown occupation, and a missing second file. */
static void test_onet_small(void)
{
    char dir[] = "/tmp/jm_imp_onet_XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return;
    }
    char p1[128], p2[128];
    snprintf(p1, sizeof p1, "%s/Occupation Data.txt", dir);
    snprintf(p2, sizeof p2, "%s/Technology Skills.txt", dir);
    FILE *f = fopen(p1, "wb");
    fputs("O*NET-SOC Code\tTitle\tDescription\r\n"
          "11-0000.00\tBoss\tRuns things.\r\n"
          "22-0000.00\tWorker\tDoes things.\r\n",
          f);
    fclose(f);
    onet_seen s = {0};
    imp_stats st;
    jm_err err = {0};
    int rc = imp_read_onet(dir, on_onet, NULL, &s, &st, &err);
    CHECK(rc == JM_ENOTFOUND && strstr(err.msg, "Technology Skills.txt"), "missing skills file: %s", err.msg);

    f = fopen(p2, "wb");
    fputs("O*NET-SOC Code\tExample\tCommodity Code\tCommodity Title\tHot Technology\tIn Demand\r\n"
          "22-0000.00\tHammer\t1\tTools\tN\tN\r\n"
          "22-0000.00\tSaw\t1\tTools\tN\tY\r\n"
          "22-0000.00\tHammer\t2\tOther\tY\tN\r\n"
          "99-0000.00\tGhost\t1\tTools\tY\tY\r\n"
          "22-0000.00\tDrill\t1\tTools\tN\tN\r\n",
          f);
    fclose(f);
    coll c = {0};
    rc = imp_read_onet(dir, on_row, on_bad, &c, &st, &err);
    CHECK(rc == JM_OK && c.n == 2, "rc %d rows %d", rc, c.n);
    const db_job *j = job_by_id(&c, "11-0000.00");
    CHECK(j && streq(j->title, "Boss") && streq(j->description, "Runs things.") && j->nskills == 0 &&
              !j->company,
          "occupation without skills");
    j = job_by_id(&c, "22-0000.00");
    CHECK(j && j->nskills == 3 && streq(j->skills[0].name, "Hammer") && j->skills[0].required == 1 &&
              streq(j->skills[1].name, "Saw") && j->skills[1].required == 1 && streq(j->skills[2].name, "Drill") &&
              j->skills[2].required == 0,
          "file order, exact de-duplication, hot or in demand = required");
    CHECK(c.nbad == 1 && c.bad_line[0] == 5 && strstr(c.bad_reason[0], "Technology Skills.txt") &&
              strstr(c.bad_reason[0], "99-0000.00"),
          "unknown occupation reported: %s", c.nbad ? c.bad_reason[0] : "");
    coll_free(&c);

    /* a missing column */
    f = fopen(p2, "wb");
    fputs("O*NET-SOC Code\tThing\r\n22-0000.00\tX\r\n", f);
    fclose(f);
    rc = imp_read_onet(dir, on_row, on_bad, &c, &st, &err);
    CHECK(rc == JM_EFORMAT && strstr(err.msg, "Example"), "missing column: %s", err.msg);
    coll_free(&c);
    unlink(p1);
    unlink(p2);
    rmdir(dir);
}

/* ---------- speed ---------- */

static int count_row(void *ctx, db_job *job, jm_err *err)
{
    (void)err;
    (void)job;
    (*(int64_t *)ctx)++;
    return 0;
}

/* Write a CSV (or JSONL) of n realistic rows to a temp file. */
static const char *gen_file(int n, int jsonl)
{
    char *p = tmp_paths[ntmp++];
    snprintf(p, 128, "/tmp/jm_imp_speed_XXXXXX%s", jsonl ? ".jsonl" : ".csv");
    int fd = mkstemps(p, jsonl ? 6 : 4);
    FILE *f = fdopen(fd, "wb");
    if (!jsonl)
        fputs("id,title,company,location,remote,salary_min,salary_max,currency,employment_type,"
              "seniority,description,skills,posted_at\n",
              f);
    for (int i = 0; i < n; i++) {
        if (jsonl)
            fprintf(f,
                    "{\"id\":\"job-%d\",\"title\":\"Senior Software Engineer %d\",\"company\":\"Acme %d\","
                    "\"location\":\"Berlin, DE\",\"remote\":%s,\"salary_min\":%d,\"salary_max\":%d,"
                    "\"currency\":\"EUR\",\"employment_type\":\"full-time\",\"seniority\":\"senior\","
                    "\"description\":\"Build and run services in Go and Python. Work with \\\"Kafka\\\" "
                    "and PostgreSQL; own the on-call rotation, mentor engineers.\","
                    "\"skills\":[\"Go\",\"Python\",{\"name\":\"Kafka\",\"required\":false}],"
                    "\"posted_at\":\"2024-%02d-%02d\"}\n",
                    i, i % 97, i % 1000, i % 2 ? "true" : "false", 50000 + i % 1000, 90000 + i % 5000,
                    1 + i % 12, 1 + i % 28);
        else
            fprintf(f,
                    "job-%d,Senior Software Engineer %d,Acme %d,\"Berlin, DE\",%s,%d,%d,EUR,full-time,senior,"
                    "\"Build and run services in Go and Python. Work with \"\"Kafka\"\" and PostgreSQL;\n"
                    "own the on-call rotation, mentor engineers.\",\"Go, Python, Kafka\",2024-%02d-%02d\n",
                    i, i % 97, i % 1000, i % 2 ? "true" : "false", 50000 + i % 1000, 90000 + i % 5000,
                    1 + i % 12, 1 + i % 28);
    }
    fclose(f);
    return p;
}

static void test_speed(void)
{
    const int n = 100000;
    for (int jsonl = 0; jsonl < 2; jsonl++) {
        const char *p = gen_file(n, jsonl);
        int64_t rows = 0;
        imp_stats st;
        jm_err err = {0};
        double t0 = jm_now();
        int rc = imp_read(p, IMP_AUTO, count_row, NULL, &rows, &st, &err);
        double dt = jm_now() - t0;
        CHECK(rc == JM_OK && rows == n && st.failed == 0, "%s speed file: rc %d rows %lld failed %lld",
              jsonl ? "JSONL" : "CSV", rc, (long long)rows, (long long)st.failed);
        printf("parse speed: %d %s rows in %.3f s = %.0f rows/s\n", n, jsonl ? "JSONL" : "CSV", dt,
               dt > 0 ? n / dt : 0.0);
        unlink(p);
    }
}

/* ---------- into SQLite ---------- */

static void test_sqlite(void)
{
    char dbpath[] = "/tmp/jm_imp_XXXXXX.db";
    int fd = mkstemps(dbpath, 3);
    if (fd < 0) {
        perror("mkstemps");
        return;
    }
    close(fd);
    unlink(dbpath); /* let db_open create it */
    db *d = NULL;
    jm_err err = {0};
    int rc = db_open(dbpath, &d, &err);
    CHECK(rc == JM_OK, "db_open: %s", err.msg);
    if (rc)
        return;
    const char *v1 = tmp_str(".csv", "id,title,skills,salary_min\n"
                                     "1,One,\"a, b\",10\n"
                                     "2,Two,,\n"
                                     "x,bad,,abc\n"
                                     "3,Three,c,30\n");
    coll bad = {0};
    imp_stats st;
    rc = imp_file(d, v1, IMP_AUTO, on_bad, &bad, &st, &err);
    CHECK(rc == JM_OK && st.read == 4 && st.imported == 3 && st.changed == 3 && st.failed == 1,
          "first import: rc %d %s read %lld imported %lld changed %lld failed %lld", rc, err.msg,
          (long long)st.read, (long long)st.imported, (long long)st.changed, (long long)st.failed);
    CHECK(bad.nbad == 1 && bad.bad_line[0] == 4, "bad row forwarded");
    rc = imp_file(d, v1, IMP_AUTO, NULL, NULL, &st, &err);
    CHECK(rc == JM_OK && st.imported == 3 && st.changed == 0, "unchanged re-import: changed %lld",
          (long long)st.changed);
    const char *v2 = tmp_str(".csv", "id,title,skills,salary_min\n"
                                     "1,One,\"a, b\",10\n"
                                     "2,Two (edited),,\n"
                                     "3,Three,c,30\n");
    rc = imp_file(d, v2, IMP_AUTO, NULL, NULL, &st, &err);
    CHECK(rc == JM_OK && st.imported == 3 && st.changed == 1, "one row modified: changed %lld",
          (long long)st.changed);

    /* more than one batch, with duplicate ids: the later row wins */
    char *p = tmp_paths[ntmp++];
    snprintf(p, 128, "/tmp/jm_imp_XXXXXX.jsonl");
    fd = mkstemps(p, 6);
    FILE *f = fdopen(fd, "wb");
    for (int i = 0; i < 2500; i++)
        fprintf(f, "{\"id\":\"b%d\",\"title\":\"Batch %d\"}\n", i % 2400, i);
    fclose(f);
    rc = imp_file(d, p, IMP_AUTO, NULL, NULL, &st, &err);
    CHECK(rc == JM_OK && st.imported == 2500 && st.read == 2500, "batched: rc %d imported %lld: %s", rc,
          (long long)st.imported, err.msg);
    db_counts cn;
    rc = db_counts_get(d, "none", &cn, &err);
    CHECK(rc == JM_OK && cn.jobs == 3 + 2400, "jobs in the table %lld", (long long)cn.jobs);
    /* the later duplicates (i >= 2400) changed their rows: re-importing only
     * the earlier versions changes those 100 again */
    fd = open(p, O_WRONLY | O_TRUNC);
    f = fdopen(fd, "wb");
    for (int i = 0; i < 100; i++)
        fprintf(f, "{\"id\":\"b%d\",\"title\":\"Batch %d\"}\n", i, i + 2400);
    fclose(f);
    rc = imp_file(d, p, IMP_AUTO, NULL, NULL, &st, &err);
    CHECK(rc == JM_OK && st.changed == 0, "later duplicate won: changed %lld", (long long)st.changed);

    const char *dir = onet_dir();
    char occ[1024];
    snprintf(occ, sizeof occ, "%s/Occupation Data.txt", dir);
    if (access(occ, R_OK) == 0) {
        rc = imp_onet(d, dir, &st, &err);
        CHECK(rc == JM_OK && st.imported == 1016 && st.changed == 1016, "imp_onet: rc %d %lld %lld: %s", rc,
              (long long)st.imported, (long long)st.changed, err.msg);
        rc = imp_onet(d, dir, &st, &err);
        CHECK(rc == JM_OK && st.changed == 0, "imp_onet again: changed %lld", (long long)st.changed);
    }
    db_close(d);
    check_rm_sqlite(dbpath);
}

int main(void)
{
    test_csv_quoting();
    test_csv_bom_crlf();
    test_csv_header();
    test_csv_skills();
    test_csv_bad_rows();
    test_csv_unterminated();
    test_csv_limits();
    test_callback_stops();
    test_jsonl();
    test_jsonl_limits();
    test_format_choice();
    test_onet();
    test_onet_small();
    test_speed();
    test_sqlite();
    tmp_cleanup();
    return CHECK_DONE("test_import");
}
