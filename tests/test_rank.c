/* test_rank.c - the recommendation and gap engine on a small store, on SQLite
 * and (when JM_TEST_PG_URL is set) PostgreSQL: explanations, filters, the
 * per-company cap, both gap modes, following inserts/updates/deletes without a
 * restart, stream mode against memory mode, and bad input. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bert.h"
#include "check.h"
#include "db.h"
#include "embedjob.h"
#include "gap.h"
#include "rank.h"

static bert_model *model;
static bert_pool *pool;

typedef struct spec {
    const char *id, *title, *company, *location, *skills;
    int remote;
    double smin, smax;
    const char *emp, *sen, *posted, *desc;
} spec;

static const spec jobs[] = {
    {"py-1", "Backend Python Developer", "Acme", "Boston, MA", "Python, Django, PostgreSQL, Docker, REST APIs", 0,
     90000, 120000, "full-time", "senior", "2026-10-01", "Build web services in Python."},
    {"py-2", "Python Data Engineer", "Acme", "Remote", "Python, Apache Spark, SQL, Airflow, Docker", 1, 100000,
     140000, "full-time", "mid", "2026-11-01", "Pipelines and data warehouses."},
    {"py-3", "Python Automation Engineer", "Acme", "Austin, TX", "Python, Ansible, Linux, Bash", 0, 80000, 100000,
     "contract", "mid", "2026-09-01", "Automate infrastructure."},
    {"fe-1", "Frontend Developer", "Webco", "Denver, CO", "JavaScript, React, CSS, HTML, TypeScript", 1, 85000,
     110000, "full-time", "junior", "2026-11-10", "Build user interfaces."},
    {"ds-1", "Data Scientist", "Labs", "Boston, MA", "Python, Machine learning, SQL, Statistics, pandas", 0, 110000,
     150000, "full-time", "senior", "2026-08-15", "Models and experiments."},
    {"nu-1", "Registered Nurse", "City Hospital", "Chicago, IL", "Patient care, Electronic health records, Phlebotomy",
     0, 60000, 80000, "full-time", "mid", "2026-11-05", "Care for patients on a surgical ward."},
    {"gd-1", "Graphic Designer", "Studio", "Seattle, WA", "Adobe Photoshop, Adobe Illustrator, Typography", 1, 50000,
     70000, "part-time", "junior", "2026-07-01", "Design brand assets."},
    {"db-1", "Database Administrator", "Datahouse", "Boston, MA", "MySQL, Oracle Database, Backup and recovery, Linux",
     0, 95000, 125000, "full-time", "senior", "2026-10-20", "Run production databases."},
};
#define NJOBS ((int)(sizeof jobs / sizeof jobs[0]))

static void to_job(const spec *s, db_job *j)
{
    db_job_init(j);
    j->id = strdup(s->id);
    j->title = strdup(s->title);
    j->company = strdup(s->company);
    j->location = strdup(s->location);
    j->remote = s->remote;
    j->salary_min = s->smin;
    j->salary_max = s->smax;
    j->employment_type = strdup(s->emp);
    j->seniority = strdup(s->sen);
    j->posted_at = strdup(s->posted);
    j->description = strdup(s->desc);
    db_parse_skills(s->skills, &j->skills, &j->nskills);
}

static int embed_all(db *d, jm_err *err)
{
    ej_opts o = {.batch = 16, .progress = EJ_QUIET};
    ej_stats st;
    return ej_run(d, pool, bert_model_id(model), bert_dim(model), &o, &st, err);
}

static int find(const rank_response *r, const char *id)
{
    for (int i = 0; i < r->n; i++)
        if (!strcmp(r->results[i].id, id))
            return i;
    return -1;
}

static int recommend(rank_engine *e, const char *skills, int k, const rank_filters *f, int per_company,
                     rank_response *out, jm_err *err)
{
    char **sk = NULL;
    int n = rank_split_skills(skills, &sk);
    rank_query q = {(const char *const *)sk, n, k, per_company, {0}};
    if (f)
        q.filters = *f;
    else
        rank_filters_init(&q.filters);
    int rc = rank_recommend(e, pool, &q, out, err);
    for (int i = 0; i < n; i++)
        free(sk[i]);
    free(sk);
    return rc;
}

static void suite(const char *url, const char *tag)
{
    jm_err err = {0};
    db *d = NULL;
    if (db_open(url, &d, &err)) {
        CHECK(0, "%s: open: %s", tag, err.msg);
        return;
    }
    db_job js[NJOBS];
    for (int i = 0; i < NJOBS; i++)
        to_job(&jobs[i], &js[i]);
    CHECK(db_upsert_jobs(d, js, NJOBS, NULL, &err) == 0, "%s: upsert: %s", tag, err.msg);
    CHECK(embed_all(d, &err) == 0, "%s: embed: %s", tag, err.msg);
    rank_engine *e = NULL;
    rank_opts ro;
    rank_opts_default(&ro);
    ro.refresh_secs = -1; /* refreshes below are explicit, except where the interval is tested */
    if (rank_open(d, model, &ro, &e, &err)) {
        CHECK(0, "%s: rank_open: %s", tag, err.msg);
        goto out;
    }
    rank_info info;
    rank_get_info(e, &info);
    CHECK(info.jobs == NJOBS && info.with_vectors == NJOBS && info.skills == 28, "%s: loaded %lld jobs %lld vectors %lld skills",
          tag, (long long)info.jobs, (long long)info.with_vectors, (long long)info.skills);

    /* The right jobs first, explained. */
    rank_response r;
    int rc = recommend(e, "python, docker, postgres", 5, NULL, 0, &r, &err);
    CHECK(rc == 0 && r.n == 5, "%s: recommend: %s (%d)", tag, err.msg, r.n);
    if (rc == 0 && r.n) {
        CHECK(!strcmp(r.results[0].id, "py-1"), "%s: py-1 first for python/docker/postgres, got %s", tag, r.results[0].id);
        for (int i = 1; i < r.n; i++)
            CHECK(r.results[i - 1].score >= r.results[i].score, "%s: sorted by score", tag);
        const rank_result *t = &r.results[0];
        int exact = 0, alias = 0, sum_ok = 1, nmiss = 0;
        float contrib = 0;
        for (int a = 0; a < t->nalign; a++) {
            const rank_align *g = &t->align[a];
            exact += g->kind == SK_EXACT && !strcmp(g->job_skill, "Python") && !strcmp(g->user_skill, "python");
            alias += g->kind == SK_ALIAS && !strcmp(g->job_skill, "PostgreSQL") && !strcmp(g->user_skill, "postgres");
            sum_ok &= (g->status == RANK_MISSING) == (g->user_skill == NULL);
            nmiss += g->status == RANK_MISSING;
            contrib += g->contribution;
        }
        CHECK(t->nalign == 5, "%s: one alignment per job skill (%d)", tag, t->nalign);
        CHECK(exact == 1, "%s: Python matched exactly by python", tag);
        CHECK(alias == 1, "%s: PostgreSQL matched by the alias postgres", tag);
        CHECK(sum_ok && nmiss == t->nmissing, "%s: missing skills have no user skill", tag);
        CHECK(fabsf(contrib - 0.05f * t->coverage) < 1e-4f, "%s: contributions add up to the coverage part (%g vs %g)",
              tag, contrib, 0.05f * t->coverage);
        CHECK(t->query > 0.99f && t->semantic > 0.2f && t->semantic < 1.0f, "%s: parts q=%g s=%g", tag, t->query,
              t->semantic);
        CHECK(find(&r, "nu-1") < 0 || find(&r, "nu-1") > find(&r, "py-2"), "%s: the nurse is not above a Python job", tag);
        CHECK(r.nskills == 3, "%s: three skills after normalising (%d)", tag, r.nskills);
    }
    rank_response_free(&r);

    /* Near-duplicate skills merge: "JS" and "JavaScript" are one skill. */
    rc = recommend(e, "JavaScript, JS, javascript , React", 3, NULL, 0, &r, &err);
    CHECK(rc == 0 && r.nskills == 2 && r.n && !strcmp(r.results[0].id, "fe-1"), "%s: JS merged (%d skills), fe-1 first",
          tag, r.nskills);
    rank_response_free(&r);

    /* Filters. */
    rank_filters f;
    rank_filters_init(&f);
    f.location = "boston";
    rc = recommend(e, "python", 10, &f, 0, &r, &err);
    int only_boston = rc == 0 && r.n == 3;
    for (int i = 0; i < r.n; i++)
        only_boston &= strstr(r.results[i].location, "Boston") != NULL;
    CHECK(only_boston, "%s: location filter (%d results)", tag, r.n);
    rank_response_free(&r);
    rank_filters_init(&f);
    f.remote_only = 1;
    rc = recommend(e, "python", 10, &f, 0, &r, &err);
    CHECK(rc == 0 && r.n == 3 && find(&r, "py-2") >= 0 && find(&r, "py-1") < 0, "%s: remote only (%d)", tag, r.n);
    rank_response_free(&r);
    rank_filters_init(&f);
    f.salary_min = 125000;
    rc = recommend(e, "python", 10, &f, 0, &r, &err);
    CHECK(rc == 0 && r.n == 3 && find(&r, "py-2") >= 0 && find(&r, "ds-1") >= 0 && find(&r, "db-1") >= 0,
          "%s: salary overlap, the upper end included (%d)", tag, r.n);
    rank_response_free(&r);
    rank_filters_init(&f);
    f.employment_type = "CONTRACT";
    f.seniority = "mid";
    rc = recommend(e, "python", 10, &f, 0, &r, &err);
    CHECK(rc == 0 && r.n == 1 && find(&r, "py-3") == 0, "%s: employment type + seniority (%d)", tag, r.n);
    rank_response_free(&r);
    rank_filters_init(&f);
    f.posted_since = "2026-11-01";
    rc = recommend(e, "python", 10, &f, 0, &r, &err);
    CHECK(rc == 0 && r.n == 3 && find(&r, "py-1") < 0, "%s: posted since (%d)", tag, r.n);
    rank_response_free(&r);
    rank_filters_init(&f);
    const char *ex[] = {"py-1", "py-2"};
    f.exclude = ex;
    f.nexclude = 2;
    rc = recommend(e, "python", 10, &f, 0, &r, &err);
    CHECK(rc == 0 && find(&r, "py-1") < 0 && find(&r, "py-2") < 0 && r.n == NJOBS - 2, "%s: exclude (%d)", tag, r.n);
    rank_response_free(&r);
    rank_filters_init(&f);
    f.location = "Atlantis";
    rc = recommend(e, "python", 10, &f, 0, &r, &err);
    CHECK(rc == 0 && r.n == 0, "%s: a filter that excludes everything is an empty list, not an error", tag);
    rank_response_free(&r);
    rc = recommend(e, "python", 10, NULL, 1, &r, &err);
    int acme = 0;
    for (int i = 0; i < r.n; i++)
        acme += !strcmp(r.results[i].company, "Acme");
    CHECK(rc == 0 && acme == 1, "%s: per-company cap 1 leaves %d Acme jobs", tag, acme);
    rank_response_free(&r);

    /* Bad input. */
    CHECK(recommend(e, " , ;", 10, NULL, 0, &r, &err) == JM_EINVAL, "%s: no skills refused", tag);
    CHECK(recommend(e, "python", 0, NULL, 0, &r, &err) == JM_EINVAL && strstr(err.msg, "k"), "%s: k = 0 refused", tag);
    CHECK(recommend(e, "python", -3, NULL, 0, &r, &err) == JM_EINVAL, "%s: negative k refused", tag);
    rank_filters_init(&f);
    f.posted_since = "last week";
    CHECK(recommend(e, "python", 5, &f, 0, &r, &err) == JM_EINVAL && strstr(err.msg, "posted_since"),
          "%s: bad date refused", tag);
    rank_filters_init(&f);
    f.salary_min = 10;
    f.salary_max = 5;
    CHECK(recommend(e, "python", 5, &f, 0, &r, &err) == JM_EINVAL, "%s: inverted salary range refused", tag);

    /* Gap for one job. */
    gap_report g;
    const char *mine[] = {"Python", "MySQL", "Photoshop"};
    rc = gap_job(e, pool, mine, 3, "py-1", &g, &err);
    CHECK(rc == 0 && g.n == 5, "%s: gap_job: %s", tag, err.msg);
    if (rc == 0) {
        int py = -1, pg = -1;
        for (int i = 0; i < g.n; i++) {
            if (!strcmp(g.items[i].skill, "Python")) py = i;
            if (!strcmp(g.items[i].skill, "PostgreSQL")) pg = i;
        }
        CHECK(py >= 0 && g.items[py].status == RANK_HAVE_IT && g.items[py].kind == SK_EXACT, "%s: Python have", tag);
        CHECK(pg >= 0 && g.items[pg].status == RANK_PARTIAL_HAVE && !strcmp(g.items[pg].user_skill, "MySQL"),
              "%s: PostgreSQL partial through MySQL (%.3f)", tag, pg >= 0 ? g.items[pg].similarity : -1);
        CHECK(g.nhave == 1 && g.npartial == 1 && g.nmissing == 3, "%s: 1 have, 1 partial, 3 missing (%d/%d/%d)", tag,
              g.nhave, g.npartial, g.nmissing);
        CHECK(fabsf(g.readiness - 1.5f / 5) < 1e-4f, "%s: readiness %.3f", tag, g.readiness);
        for (int i = 1; i < g.nmissing; i++)
            CHECK(g.items[g.missing[i - 1]].importance >= g.items[g.missing[i]].importance, "%s: missing by importance",
                  tag);
        gap_report_free(&g);
    }
    CHECK(gap_job(e, pool, mine, 3, "no-such-job", &g, &err) == JM_ENOTFOUND && strstr(err.msg, "no-such-job"),
          "%s: unknown job refused", tag);

    /* Career gap. */
    const char *cs[] = {"Python", "SQL"};
    rank_query q = {cs, 2, 5, 0, {0}};
    rank_filters_init(&q.filters);
    gap_career cg;
    rc = gap_career_report(e, pool, &q, 0.5f, &cg, &err);
    CHECK(rc == 0 && cg.top_n == 5 && cg.n > 0, "%s: career gap: %s", tag, err.msg);
    if (rc == 0) {
        int docker = -1;
        for (int i = 0; i < cg.n; i++) {
            CHECK(cg.items[i].jobs_missing >= 1 && cg.items[i].jobs_missing <= 5, "%s: counts", tag);
            if (i)
                CHECK(cg.items[i - 1].weighted >= cg.items[i].weighted, "%s: learn-next sorted", tag);
            if (!strcmp(cg.items[i].skill, "Docker")) docker = i;
        }
        CHECK(docker >= 0 && cg.items[docker].jobs_missing == 2, "%s: Docker missing in the two Python jobs that list it",
              tag);
        gap_career_free(&cg);
    }

    /* Stream mode ranks like memory mode. */
    rank_opts so;
    rank_opts_default(&so);
    so.index_mode = RANK_INDEX_STREAM;
    rank_engine *es = NULL;
    CHECK(rank_open(d, model, &so, &es, &err) == 0, "%s: stream open: %s", tag, err.msg);
    if (es) {
        rank_response a, b;
        int ra = recommend(e, "data pipelines, spark, sql", 5, NULL, 0, &a, &err);
        int rb = recommend(es, "data pipelines, spark, sql", 5, NULL, 0, &b, &err);
        int same = ra == 0 && rb == 0 && a.n == b.n;
        for (int i = 0; same && i < a.n; i++)
            same = !strcmp(a.results[i].id, b.results[i].id) && fabsf(a.results[i].score - b.results[i].score) < 1e-4f;
        CHECK(same, "%s: stream mode gives the memory mode's ranking", tag);
        rank_info si;
        rank_get_info(es, &si);
        CHECK(si.index_bytes == 0 && !strcmp(si.mode, "stream"), "%s: stream mode keeps no vectors", tag);
        rank_response_free(&a);
        rank_response_free(&b);
        rank_close(es);
    }

    /* The engine follows the database: insert, change, delete. */
    db_job nj;
    spec ns = {"zz-1", "Zig Systems Programmer", "Lowlevel", "Remote", "Zig, C, Assembly language", 1, 90000, 100000,
               "full-time", "senior", "2026-11-20", "Write a compiler backend."};
    to_job(&ns, &nj);
    CHECK(db_upsert_jobs(d, &nj, 1, NULL, &err) == 0 && embed_all(d, &err) == 0, "%s: new job: %s", tag, err.msg);
    db_job_clear(&nj);
    int applied = 0;
    CHECK(rank_refresh(e, &applied, &err) == 0 && applied >= 1, "%s: refresh applied %d: %s", tag, applied, err.msg);
    rc = recommend(e, "zig", 3, NULL, 0, &r, &err);
    CHECK(rc == 0 && r.n && !strcmp(r.results[0].id, "zz-1"), "%s: a new job appears without a restart", tag);
    rank_response_free(&r);
    ns.skills = "Rust, C, Assembly language";
    ns.title = "Rust Systems Programmer";
    to_job(&ns, &nj);
    CHECK(db_upsert_jobs(d, &nj, 1, NULL, &err) == 0 && embed_all(d, &err) == 0, "%s: change: %s", tag, err.msg);
    db_job_clear(&nj);
    CHECK(rank_refresh(e, &applied, &err) == 0, "%s: refresh: %s", tag, err.msg);
    rc = recommend(e, "rust", 1, NULL, 0, &r, &err);
    CHECK(rc == 0 && r.n == 1 && !strcmp(r.results[0].id, "zz-1") && !strcmp(r.results[0].title, "Rust Systems Programmer"),
          "%s: a changed job is seen changed", tag);
    int zig = 0;
    for (int a = 0; rc == 0 && r.n && a < r.results[0].nalign; a++)
        zig |= !strcmp(r.results[0].align[a].job_skill, "Zig");
    CHECK(!zig, "%s: its old skills are gone", tag);
    rank_response_free(&r);
    int found = 0;
    CHECK(db_delete_job(d, "zz-1", &found, &err) == 0 && found, "%s: delete: %s", tag, err.msg);
    CHECK(rank_refresh(e, &applied, &err) == 0 && applied >= 1, "%s: refresh after delete", tag);
    rc = recommend(e, "rust", 10, NULL, 0, &r, &err);
    CHECK(rc == 0 && find(&r, "zz-1") < 0, "%s: a deleted job disappears", tag);
    rank_response_free(&r);
    rank_get_info(e, &info);
    CHECK(info.jobs == NJOBS, "%s: %lld jobs after insert and delete", tag, (long long)info.jobs);

    /* Without an explicit refresh: a query picks changes up once refresh_secs passed. */
    rank_opts ao;
    rank_opts_default(&ao);
    ao.refresh_secs = 0.2;
    rank_engine *ea = NULL;
    CHECK(rank_open(d, model, &ao, &ea, &err) == 0, "%s: open: %s", tag, err.msg);
    ns.id = "zz-2";
    ns.title = "Haskell Compiler Engineer";
    ns.skills = "Haskell, GHC, Type theory";
    to_job(&ns, &nj);
    CHECK(db_upsert_jobs(d, &nj, 1, NULL, &err) == 0 && embed_all(d, &err) == 0, "%s: new job: %s", tag, err.msg);
    db_job_clear(&nj);
    usleep(300000);
    rc = ea ? recommend(ea, "haskell", 1, NULL, 0, &r, &err) : -1;
    CHECK(rc == 0 && r.n == 1 && !strcmp(r.results[0].id, "zz-2"), "%s: a new job shows within refresh_secs", tag);
    if (rc == 0)
        rank_response_free(&r);
    rank_close(ea);

    rank_close(e);
out:
    for (int i = 0; i < NJOBS; i++)
        db_job_clear(&js[i]);
    db_close(d);
}

int main(void)
{
    const char *dir = getenv("JM_TEST_MODEL");
    jm_err err = {0};
    if (bert_load(dir ? dir : "models/all-MiniLM-L6-v2", &model, &err) || bert_pool_new(model, 1, &pool, &err)) {
        CHECK(0, "model: %s", err.msg);
        return CHECK_DONE("test_rank");
    }
    char path[] = "/tmp/jm_test_rank_XXXXXX";
    int fd = mkstemp(path);
    if (fd >= 0)
        close(fd);
    unlink(path);
    suite(path, "sqlite");
    unlink(path);
    char wal[64];
    snprintf(wal, sizeof wal, "%s-wal", path);
    unlink(wal);
    snprintf(wal, sizeof wal, "%s-shm", path);
    unlink(wal);
    const char *pg = getenv("JM_TEST_PG_URL"), *pgdir = getenv("JM_PG_DIR");
    if (pg && *pg && pgdir && *pgdir) {
        /* a fresh database of our own on the test server (tests/pg.sh) */
        char cmd[1024], url[1024] = "";
        snprintf(cmd, sizeof cmd, "sh tests/pg.sh createdb '%s' jm_test_rank", pgdir);
        FILE *p = popen(cmd, "r");
        if (p) {
            while (fgets(url, sizeof url, p)) {
            }
            pclose(p);
        }
        url[strcspn(url, "\n")] = 0;
        CHECK(!strncmp(url, "postgres", 8), "could not create a test database: %s", url);
        if (!strncmp(url, "postgres", 8))
            suite(url, "postgresql");
    } else {
        printf("test_rank: JM_TEST_PG_URL not set: PostgreSQL half skipped\n");
    }
    bert_pool_free(pool);
    bert_free(model);
    return CHECK_DONE("test_rank");
}
