/* test_rank.c - the recommendation and gap engine on a small store, on SQLite
 * and (when JM_TEST_PG_URL is set) PostgreSQL: explanations, filters, the
 * per-company cap, both gap modes, following inserts/updates/deletes without a
 * restart, stream mode against memory mode, and bad input.
 *
 * Then the fast skill pass (postings, masks and bounds, rank.c) against the
 * reference full pass, on a store of 700 generated jobs: the candidate sets
 * and the whole responses of hundreds of random queries with random filters
 * must be identical, bit for bit, before and after jobs change (the "dirty"
 * path) and after the structures are rebuilt. And the pieces under it: the
 * similarity kernels (AVX2 = scalar, bit for bit), the int8 prefilter of
 * sk_match_floor against sk_match_all, idx_score_many against idx_score, the
 * embedding cache, and the skills read back from the store. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <pthread.h>

#include "bert.h"
#include "check.h"
#include "db.h"
#include "embedjob.h"
#include "gap.h"
#include "idx.h"
#include "rank.h"
#include "rank_int.h"
#include "skills.h"
#include "vcache.h"

static bert_model *model;
static bert_pool *pool_;

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
    return ej_run(d, pool_, bert_model_id(model), bert_dim(model), &o, &st, err);
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
    int rc = rank_recommend(e, pool_, &q, out, err);
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

    /* "pandas dataframes" is a semantic have-match of ds-1's "pandas" (cosine
     * ~0.74): full coverage credit, but below query_have the likelihood does
     * not count it, so ds-1 and py-2 (five required skills each, SQL the
     * only one named) get the same Q; with query_have 0 it counts, and ds-1
     * alone has the best Q. */
    {
        rank_opts lo = ro;
        lo.query_have = 0;
        rank_engine *el = NULL;
        CHECK(rank_open(d, model, &lo, &el, &err) == 0, "%s: open: %s", tag, err.msg);
        rank_response a, b;
        int ra = recommend(e, "pandas dataframes, SQL", 8, NULL, 0, &a, &err);
        int rb = el ? recommend(el, "pandas dataframes, SQL", 8, NULL, 0, &b, &err) : -1;
        CHECK(ra == 0 && rb == 0, "%s: recommend: %s", tag, err.msg);
        if (ra == 0 && rb == 0) {
            int ad = find(&a, "ds-1"), ap = find(&a, "py-2"), bd = find(&b, "ds-1"), bp = find(&b, "py-2");
            CHECK(ad >= 0 && ap >= 0 && bd >= 0 && bp >= 0, "%s: ds-1 and py-2 returned", tag);
            if (ad >= 0 && ap >= 0 && bd >= 0 && bp >= 0) {
                const rank_result *d1 = &a.results[ad];
                int sem = 0;
                for (int i = 0; i < d1->nalign; i++)
                    sem += !strcmp(d1->align[i].job_skill, "pandas") && d1->align[i].kind == SK_SEMANTIC &&
                           d1->align[i].status == RANK_HAVE_IT && d1->align[i].similarity < RANK_QUERY_HAVE;
                CHECK(sem == 1, "%s: pandas is a semantic have-match below query_have", tag);
                CHECK(a.results[ad].query == a.results[ap].query, "%s: uncounted match: Q %g (ds-1) = %g (py-2)", tag,
                      a.results[ad].query, a.results[ap].query);
                CHECK(b.results[bd].query == 1.0f && b.results[bp].query < 0.99f,
                      "%s: counted match: Q %g (ds-1) > %g (py-2)", tag, b.results[bd].query, b.results[bp].query);
                CHECK(a.results[ad].coverage == b.results[bd].coverage && a.results[ad].coverage > 0.2f,
                      "%s: coverage counts the match either way (%g, %g)", tag, a.results[ad].coverage,
                      b.results[bd].coverage);
            }
        }
        if (ra == 0)
            rank_response_free(&a);
        if (rb == 0)
            rank_response_free(&b);
        rank_close(el);
    }

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
    rc = gap_job(e, pool_, mine, 3, "py-1", &g, &err);
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
    CHECK(gap_job(e, pool_, mine, 3, "no-such-job", &g, &err) == JM_ENOTFOUND && strstr(err.msg, "no-such-job"),
          "%s: unknown job refused", tag);

    /* Career gap. */
    const char *cs[] = {"Python", "SQL"};
    rank_query q = {cs, 2, 5, 0, {0}};
    rank_filters_init(&q.filters);
    gap_career cg;
    rc = gap_career_report(e, pool_, &q, 0.5f, &cg, &err);
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

/* ---------- the fast skill pass against the reference ---------- */

static uint64_t rs = 20261124;
static double ur(void)
{
    rs = rs * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(rs >> 11) * (1.0 / 9007199254740992.0);
}

/* Skills of generated jobs; drawn with weight 1 / (i + 1), so the first are
 * common (the per-job masks) and the rest rare (postings). Near-duplicates
 * and relatives give exact, alias, have and partial matches. */
static const char *pool[] = {
    "Microsoft Excel", "Microsoft Office software", "Microsoft Word", "Email software", "Microsoft Outlook",
    "Spreadsheet software", "Microsoft PowerPoint", "Web browser software", "Word processing software",
    "Structured query language SQL", "Python", "Project management software", "Accounting software", "Linux",
    "Oracle Database", "MySQL", "PostgreSQL", "JavaScript", "Java", "C++", "C#", "Docker", "Kubernetes",
    "Amazon Web Services AWS software", "Microsoft Azure software", "Git", "Jenkins", "Terraform", "Ansible",
    "Bash", "React", "Angular", "Vue.js", "Node.js", "TypeScript", "HTML", "CSS", "REST APIs", "GraphQL",
    "MongoDB", "Redis", "Apache Kafka", "Apache Spark", "Hadoop", "Apache Airflow", "pandas", "NumPy",
    "TensorFlow", "PyTorch", "scikit-learn", "Machine learning", "Statistics", "R", "SAS", "MATLAB", "Tableau",
    "Microsoft Power BI", "Salesforce software", "SAP software", "Intuit QuickBooks", "Atlassian JIRA",
    "Atlassian Confluence", "Slack", "Zoom", "Adobe Photoshop", "Adobe Illustrator", "Adobe InDesign",
    "Autodesk AutoCAD", "Dassault Systemes SolidWorks", "Figma", "Sketch", "Unity Technologies Unity",
    "Blender", "Autodesk Maya", "Apple Final Cut Pro", "Adobe Premiere Pro", "Avid Pro Tools", "Ableton Live",
    "Electronic health records", "Patient care", "Phlebotomy", "Epic Systems", "Cerner", "Payroll software",
    "Customer relationship management CRM software", "Enterprise resource planning ERP software",
    "Extensible markup language XML", "JavaScript Object Notation JSON", "Go", "Rust", "Ruby", "PHP", "Swift",
    "Kotlin", "Scala", "Perl", "COBOL", "Fortran", "Assembly language", "Verilog", "VHDL", "LabVIEW",
    "Minitab", "SPSS", "Stata", "ArcGIS", "QGIS", "Google Analytics", "Google Ads", "Hootsuite", "WordPress",
    "Shopify", "Magento", "Zendesk", "ServiceNow", "Splunk", "Nagios", "Wireshark", "Cisco IOS", "VMware",
};
#define NPOOL ((int)(sizeof pool / sizeof pool[0]))
/* what people type: variants, aliases, unknown skills; from "Hootsuite
 * social media" on, semantic have-matches (cosine 0.72-0.84) of rare pool
 * skills, which the likelihood counts only above query_have */
static const char *typed[] = {"postgres", "JS", "k8s", "excel", "ms word", "python 3", "SQL", "AWS", "node",
                              "Underwater basket weaving", "golang", "Photoshop", "AutoCAD", "Pytorch",
                              "Hootsuite social media", "Wireshark network analysis", "SPSS Statistics",
                              "Nagios monitoring", "COBOL programming", "Verilog HDL", "Kotlin Android",
                              "Perl scripting", "Splunk Enterprise", "Zendesk Support", "Cerner EHR"};
static const char *places[] = {"Boston, MA", "Austin, TX", "Denver, CO", "Remote", "Chicago, IL", "Seattle, WA"};
static const char *places_q[] = {"boston", "TX", "remote", "chicago", "nowhere"};
static const char *emps[] = {"full-time", "part-time", "contract"}, *sens[] = {"junior", "mid", "senior"};

static int pick_skill(void)
{
    double h = 0;
    for (int i = 0; i < NPOOL; i++)
        h += 1.0 / (i + 1);
    double x = ur() * h;
    for (int i = 0; i < NPOOL; i++)
        if ((x -= 1.0 / (i + 1)) <= 0)
            return i;
    return NPOOL - 1;
}

static void gen_job(int i, int variant, db_job *j)
{
    db_job_init(j);
    char buf[64];
    snprintf(buf, sizeof buf, "eq-%04d", i);
    j->id = strdup(buf);
    snprintf(buf, sizeof buf, "Generated job %d.%d", i, variant);
    j->title = strdup(buf);
    snprintf(buf, sizeof buf, "Company %d", (int)(ur() * 40));
    j->company = strdup(buf);
    j->location = strdup(places[(int)(ur() * 6)]);
    j->remote = ur() < 0.1 ? -1 : ur() < 0.3;
    if (ur() < 0.9) {
        j->salary_min = 30000 + 1000 * (int)(ur() * 100);
        j->salary_max = ur() < 0.8 ? j->salary_min + 1000 * (int)(ur() * 50) : NAN;
    }
    j->employment_type = strdup(emps[(int)(ur() * 3)]);
    j->seniority = strdup(sens[(int)(ur() * 3)]);
    snprintf(buf, sizeof buf, "2026-%02d-%02d", 1 + (int)(ur() * 11), 1 + (int)(ur() * 28));
    j->posted_at = ur() < 0.95 ? strdup(buf) : NULL;
    j->description = strdup("A generated job.");
    int n = ur() < 0.03 ? 0 : 1 + (int)(ur() * 24);
    j->skills = calloc((size_t)n + 1, sizeof(db_skill));
    for (int k = 0; k < n; k++) {
        j->skills[j->nskills].name = strdup(pool[pick_skill()]);
        j->skills[j->nskills++].required = ur() < 0.5;
    }
}

/* Give every job that needs one a random unit vector (the model would take
 * too long here; the engine does not care where vectors come from). */
/* When set (by gen_store for want_skill_vectors), vectors() gives job eq-N
 * a vector made of the skills of one of TUNE_GROUPS groups (N mod
 * TUNE_GROUPS), each embedding (pool_emb) weighted at random, plus a little
 * noise: jobs of a kind, whose vectors cluster as real ones do. */
static const db_job *skill_jobs;
static int skill_njobs, want_skill_vectors;
static float *pool_emb; /* [NPOOL][dim] */

enum { TUNE_GROUPS = 30, TUNE_GROUP = 6 };
static int group_skill(int g, int t) { return (g * 4 + t) % NPOOL; }

static int vectors(db *d, int dim, jm_err *err)
{
    float *v = malloc(sizeof(float) * 64 * (size_t)dim);
    char *cursor = NULL;
    int rc = 0;
    for (;;) {
        db_batch b;
        if ((rc = db_claim_jobs(d, bert_model_id(model), cursor, 64, &b, err)))
            break;
        if (!b.n) {
            db_batch_free(&b);
            break;
        }
        for (int k = 0; k < b.n; k++) {
            double nn = 0;
            const db_job *j = NULL;
            int ji = -1;
            if (skill_jobs && sscanf(b.ids[k], "eq-%d", &ji) == 1 && ji >= 0 && ji < skill_njobs)
                j = &skill_jobs[ji];
            float *vk = v + (size_t)k * dim;
            memset(vk, 0, sizeof(float) * dim);
            for (int t = 0; j && t < TUNE_GROUP; t++) {
                const float *pe = pool_emb + (size_t)group_skill(ji % TUNE_GROUPS, t) * dim;
                for (int x = 0; x < dim; x++)
                    vk[x] += pe[x] * (float)(0.5 + ur());
            }
            for (int x = 0; x < dim; x++) {
                /* random, or skill embeddings plus some noise */
                float r = vk[x] + (float)(ur() - 0.5) * (j ? 0.01f : 1.0f);
                v[(size_t)k * dim + x] = r;
                nn += (double)v[(size_t)k * dim + x] * v[(size_t)k * dim + x];
            }
            for (int x = 0; x < dim; x++)
                v[(size_t)k * dim + x] /= (float)sqrt(nn);
        }
        rc = db_commit_jobs(d, &b, v, dim, bert_model_id(model), err);
        free(cursor);
        cursor = strdup(b.ids[b.n - 1]);
        db_batch_free(&b);
        if (rc)
            break;
    }
    free(cursor);
    free(v);
    return rc;
}

static int same_f(float a, float b) { return !memcmp(&a, &b, sizeof a); }

/* A response as text, every float exactly (%a): two responses are the same
 * when their texts are. (The response holds the engine's read lock, so the
 * first is written down and freed before the path is switched.) */
static char *snap(int rc, const rank_response *r)
{
    size_t cap = 4096, len = 0;
    char *b = malloc(cap);
#define PUT(...)                                                                    \
    do {                                                                            \
        int n_ = snprintf(b + len, cap - len, __VA_ARGS__);                         \
        while (n_ >= 0 && (size_t)n_ >= cap - len) {                                \
            cap *= 2;                                                               \
            b = realloc(b, cap);                                                    \
            n_ = snprintf(b + len, cap - len, __VA_ARGS__);                         \
        }                                                                           \
        len += (size_t)n_;                                                          \
    } while (0)
    PUT("rc %d\n", rc);
    if (rc == 0) {
        PUT("n %d considered %lld skills %d\n", r->n, (long long)r->considered, r->nskills);
        for (int i = 0; i < r->nskills; i++)
            PUT(" %s", r->skills[i]);
        PUT("\n");
        for (int i = 0; i < r->n; i++) {
            const rank_result *x = &r->results[i];
            PUT("%s %s|%s|%s %a %a %a %a %a %d %d\n", x->id, x->title ? x->title : "-", x->company ? x->company : "-",
                x->location ? x->location : "-", x->score, x->query, x->coverage, x->semantic, x->keyword, x->nalign,
                x->nmissing);
            for (int k = 0; k < x->nalign; k++) {
                const rank_align *g = &x->align[k];
                PUT("  %s|%s|%a|%d|%d|%a|%d|%a|%a\n", g->job_skill, g->user_skill ? g->user_skill : "-",
                    g->similarity, (int)g->kind, g->required, g->weight, (int)g->status, g->contribution, g->idf);
            }
        }
    }
#undef PUT
    return b;
}

/* The kinds of queries compare_paths draws. */
enum { Q_MIXED, Q_COMMON, Q_MANY };

/* nq random queries, each by the fast path and by the reference: the skill
 * pass's candidates (and, when responses, the whole responses) must be the
 * same. Q_MIXED: 1-6 skills, common and rare, some as people type them;
 * Q_COMMON: 2-14 of the 30 skills most jobs list (every one a masked skill:
 * up to 14 users with masked matches); Q_MANY: 30-44 skills of the whole
 * pool (more than 32 users with matches). Returns how many queries took the
 * fast path. */
static int compare_paths(rank_engine *e, int nq, const char *tag, const char *stage, int kind, int responses)
{
    int bad_c = 0, bad_r = 0, nfast = 0;
    for (int qi = 0; qi < nq; qi++) {
        const char *sk[48];
        int ns = 0, want = kind == Q_COMMON ? 2 + (int)(ur() * 13) : kind == Q_MANY ? 30 + (int)(ur() * 15)
                                                                                    : 1 + (int)(ur() * 6);
        while (ns < want)
            sk[ns++] = kind == Q_COMMON ? pool[(int)(ur() * 30)]
                       : kind == Q_MANY ? pool[(int)(ur() * NPOOL)]
                       : ur() < 0.15    ? typed[(int)(ur() * (sizeof typed / sizeof typed[0]))]
                                        : pool[ur() < 0.5 ? pick_skill() : (int)(ur() * NPOOL)];
        rank_query q = {sk, ns, ur() < 0.6 ? 10 : 1 + (int)(ur() * 30), ur() < 0.15 ? 1 + (int)(ur() * 2) : 0, {0}};
        rank_filters_init(&q.filters);
        char exid[3][32];
        const char *ex[3];
        double r = ur();
        if (r < 0.1)
            q.filters.location = places_q[(int)(ur() * 5)];
        else if (r < 0.18)
            q.filters.remote_only = 1;
        else if (r < 0.28) {
            q.filters.salary_min = 30000 + ur() * 90000;
            if (ur() < 0.5)
                q.filters.salary_max = q.filters.salary_min + ur() * 40000;
        } else if (r < 0.34) {
            q.filters.employment_type = ur() < 0.5 ? "CONTRACT" : "full-time";
            q.filters.seniority = sens[(int)(ur() * 3)];
        } else if (r < 0.4)
            q.filters.posted_since = ur() < 0.5 ? "2026-06-01" : "2026-11-20";
        else if (r < 0.46) {
            for (int k = 0; k < 3; k++) {
                snprintf(exid[k], sizeof exid[k], "eq-%04d", (int)(ur() * 700));
                ex[k] = exid[k];
            }
            q.filters.exclude = ex;
            q.filters.nexclude = 3;
        } else if (r < 0.48) {
            q.filters.location = "boston";
            q.filters.remote_only = 1;
            q.filters.seniority = "junior";
        }
        jm_err err = {0};
        int *sa = NULL, *sb = NULL, na = 0, nb = 0, fa = 0, fb = 0;
        float *ca = NULL, *cb = NULL;
        rank_set_reference(e, 0);
        int ra = rank_skill_candidates(e, pool_, &q, &sa, &ca, &na, &fa, &err);
        rank_set_reference(e, 1);
        int rb = rank_skill_candidates(e, pool_, &q, &sb, &cb, &nb, &fb, &err);
        int same = ra == rb && na == nb;
        for (int i = 0; same && i < na; i++)
            same = sa[i] == sb[i] && same_f(ca[i], cb[i]);
        if (!same && bad_c++ < 3)
            fprintf(stderr, "%s %s: query %d: candidates differ (%d vs %d, rc %d/%d)\n", tag, stage, qi, na, nb, ra,
                    rb);
        nfast += fa;
        free(sa);
        free(sb);
        free(ca);
        free(cb);
        if (!responses)
            continue;
        rank_response x, y;
        rank_set_reference(e, 0);
        int rx = rank_recommend(e, pool_, &q, &x, &err);
        char *tx = snap(rx, &x);
        if (rx == 0)
            rank_response_free(&x);
        rank_set_reference(e, 1);
        int ry = rank_recommend(e, pool_, &q, &y, &err);
        char *ty = snap(ry, &y);
        if (ry == 0)
            rank_response_free(&y);
        if (strcmp(tx, ty)) {
            size_t at = 0;
            while (tx[at] && tx[at] == ty[at])
                at++;
            while (at > 0 && tx[at - 1] != '\n')
                at--;
            if (bad_r++ < 3)
                fprintf(stderr, "%s %s: query %d: responses differ at:\n  %.200s\n  %.200s\n", tag, stage, qi,
                        tx + at, ty + at);
        }
        free(tx);
        free(ty);
    }
    rank_set_reference(e, 0);
    CHECK(bad_c == 0, "%s %s: the skill pass's candidates differ from the full pass in %d of %d queries", tag, stage,
          bad_c, nq);
    CHECK(bad_r == 0, "%s %s: responses differ from the reference path in %d of %d queries", tag, stage, bad_r, nq);
    return nfast;
}

/* A store at url holding N generated jobs (gen_job; a share `big` of them
 * with 40-90 skills drawn from the common end), random vectors, and the
 * skills embedded. *keep (optional) gets the jobs as written (the caller
 * clears them), *nbig (optional) how many are big. NULL after a failed
 * CHECK. */
static db *gen_store(const char *url, const char *tag, int N, double big, int *nbig, db_job **keep)
{
    jm_err err = {0};
    db *d = NULL;
    if (db_open(url, &d, &err)) {
        CHECK(0, "%s: open: %s", tag, err.msg);
        return NULL;
    }
    int dim = bert_dim(model), nb = 0;
    db_job *js = calloc((size_t)N, sizeof(db_job));
    for (int i = 0; i < N; i++) {
        gen_job(i, 0, &js[i]);
        if (big > 0 && ur() < big) {
            db_job *j = &js[i];
            for (int k = 0; k < j->nskills; k++)
                free(j->skills[k].name);
            free(j->skills);
            int n = 40 + (int)(ur() * 51);
            j->skills = calloc((size_t)n, sizeof(db_skill));
            j->nskills = 0;
            for (int k = 0; k < n; k++) {
                j->skills[j->nskills].name = strdup(pool[pick_skill()]);
                j->skills[j->nskills++].required = ur() < 0.7;
            }
            nb++;
        }
    }
    CHECK(db_upsert_jobs(d, js, N, NULL, &err) == 0, "%s: upsert: %s", tag, err.msg);
    ej_opts eo = {.batch = 64, .progress = EJ_QUIET};
    ej_stats st;
    if (want_skill_vectors) {
        if (!pool_emb) {
            pool_emb = malloc(sizeof(float) * NPOOL * (size_t)dim);
            CHECK(bert_embed(pool_, NPOOL, pool, NULL, pool_emb, NULL, &err) == 0, "embed the pool: %s", err.msg);
        }
        skill_jobs = js;
        skill_njobs = N;
    }
    int vrc = vectors(d, dim, &err);
    skill_jobs = NULL;
    CHECK(vrc == 0 && ej_run(d, pool_, bert_model_id(model), dim, &eo, &st, &err) == 0,
          "%s: vectors: %s", tag, err.msg);
    if (nbig)
        *nbig = nb;
    if (keep) {
        *keep = js;
    } else {
        for (int i = 0; i < N; i++)
            db_job_clear(&js[i]);
        free(js);
    }
    return d;
}

static void equivalence_suite(const char *url, const char *tag)
{
    jm_err err = {0};
    int N = 700, dim = bert_dim(model);
    db_job *js = NULL;
    db *d = gen_store(url, tag, N, 0, NULL, &js);
    if (!d)
        return;
    /* the skills come back as they went in (the scan's one-block parser) */
    int same = 1;
    for (int i = 0; i < N; i += 37) {
        db_job g;
        db_job_init(&g);
        int found = 0;
        if (db_get_job(d, js[i].id, &g, &found, &err) || !found || g.nskills != js[i].nskills) {
            same = 0;
        } else {
            for (int k = 0; k < g.nskills; k++)
                same &= !strcmp(g.skills[k].name, js[i].skills[k].name) &&
                        g.skills[k].required == js[i].skills[k].required;
        }
        db_job_clear(&g);
    }
    CHECK(same, "%s: skills read back equal those written", tag);
    for (int round = 0; round < 3; round++) {
        rank_opts o;
        rank_opts_default(&o);
        o.refresh_secs = -1;
        o.candidates = round == 1 ? 40 : 12; /* few: the heap fills and bounds cut */
        /* round 1: the likelihood counts every semantic have-match; round
         * 2: none, and coverage weighs most, so that the weight found on the
         * coverage-only lists decides which jobs the bounds let through */
        o.query_have = round == 1 ? 0.0f : round == 2 ? 1.0f : RANK_QUERY_HAVE;
        if (round == 2)
            o.w.coverage = 3.0f;
        rank_engine *e = NULL;
        if (rank_open(d, model, &o, &e, &err)) {
            CHECK(0, "%s: rank_open: %s", tag, err.msg);
            break;
        }
        static const char *rname[] = {"12 candidates", "40 candidates", "coverage-only lists"};
        int nf = compare_paths(e, round == 1 ? 150 : 250, tag, rname[round], Q_MIXED, 1);
        CHECK(nf > 0, "%s: the fast path was taken (%d queries)", tag, nf);
        long long cl = atomic_load(&e->cov_lists);
        CHECK(round == 1 ? cl == 0 : cl > 0, "%s: %lld coverage-only lists merged (query_have %g)", tag, cl,
              (double)o.query_have);
        if (round == 0) {
            /* changes: new jobs, changed skills, deletions; then the dirty path */
            db_job more[60];
            for (int i = 0; i < 60; i++)
                gen_job(i < 30 ? N + i : (int)(ur() * N), 1, &more[i]);
            CHECK(db_upsert_jobs(d, more, 60, NULL, &err) == 0 && vectors(d, dim, &err) == 0,
                  "%s: changes: %s", tag, err.msg);
            for (int i = 0; i < 60; i++)
                db_job_clear(&more[i]);
            for (int i = 0; i < 15; i++) {
                char id[32];
                int found;
                snprintf(id, sizeof id, "eq-%04d", (int)(ur() * N));
                db_delete_job(d, id, &found, &err);
            }
            int applied = 0;
            CHECK(rank_refresh(e, &applied, &err) == 0 && applied > 60, "%s: refresh applied %d: %s", tag, applied,
                  err.msg);
            CHECK(e->ndirty > 0 && e->accel, "%s: changed jobs are dirty (%d)", tag, e->ndirty);
            compare_paths(e, 150, tag, "dirty jobs", Q_MIXED, 1);
            rank_rebuild(e);
            CHECK(e->ndirty == 0 && e->accel, "%s: rebuilt", tag);
            compare_paths(e, 150, tag, "rebuilt", Q_MIXED, 1);
            compare_paths(e, 40, tag, "common skills", Q_COMMON, 1);
        }
        rank_close(e);
    }
    for (int i = 0; i < N; i++)
        db_job_clear(&js[i]);
    free(js);
    db_close(d);
}

/* The index's probe depth (rank_tune): lists from 1,000 jobs on (ivf_min);
 * after rank_open every list is searched, and calibration is due at once
 * (also from a snapshot written before it): on profiles made of the
 * skills, again on the recorded profiles once RANK_QRING queries came, then
 * not until it is due. With the depth set, the index's top 10 equal those
 * of a search of every list for the recorded profiles. */
static void tune_part(db *d, const char *tag)
{
    jm_err err = {0};
    rank_opts o;
    rank_opts_default(&o);
    o.refresh_secs = -1;
    o.ivf_min = 1000;
    rank_engine *e = NULL;
    if (rank_open(d, model, &o, &e, &err)) {
        CHECK(0, "%s: rank_open with lists: %s", tag, err.msg);
        return;
    }
    rank_info in;
    rank_get_info(e, &in);
    CHECK(in.index_lists > 40 && in.index_probe == in.index_lists && !strcmp(in.probe_from, "none"),
          "%s: at open: %d lists, %d probed, from %s", tag, in.index_lists, in.index_probe, in.probe_from);
    /* a snapshot of the engine before its calibration: calibrated once loaded */
    char snap[] = "/tmp/jm_test_tune_XXXXXX";
    int fd = mkstemp(snap);
    if (fd >= 0)
        close(fd);
    CHECK(fd >= 0 && rank_snapshot_save(e, snap, &err) == 0, "%s: snapshot before calibrating: %s", tag, err.msg);
    rank_opts so = o;
    so.snapshot = snap;
    rank_engine *e2 = NULL;
    if (fd >= 0 && rank_open(d, model, &so, &e2, &err) == 0) {
        rank_info i2;
        rank_get_info(e2, &i2);
        CHECK(i2.from_snapshot && i2.index_probe == i2.index_lists && !strcmp(i2.probe_from, "none"),
              "%s: from the uncalibrated snapshot: %d of %d lists, from %s", tag, i2.index_probe, i2.index_lists,
              i2.probe_from);
        CHECK(rank_tune(e2, 0, NULL, &err) == 1, "%s: due after loading the uncalibrated snapshot: %s", tag, err.msg);
        rank_get_info(e2, &i2);
        CHECK(!strcmp(i2.probe_from, "skills") && i2.index_probe < i2.index_lists,
              "%s: snapshot engine calibrated: %d of %d, from %s", tag, i2.index_probe, i2.index_lists, i2.probe_from);
        rank_close(e2);
    } else {
        CHECK(0, "%s: open from the uncalibrated snapshot: %s", tag, err.msg);
    }
    if (fd >= 0)
        unlink(snap);
    CHECK(rank_tune(e, 0, NULL, &err) == 1, "%s: due right after open: %s", tag, err.msg);
    rank_get_info(e, &in);
    CHECK(in.index_probe >= 1 && in.index_probe < in.index_lists && !strcmp(in.probe_from, "skills"),
          "%s: calibrated on the skills: %d of %d lists, from %s", tag, in.index_probe, in.index_lists, in.probe_from);
    CHECK(rank_tune(e, 0, NULL, &err) == 0, "%s: not due right after calibrating", tag);
    int at_open = in.index_probe;
    const char *qs[40][4]; /* 2-4 skills of one group */
    for (int i = 0; i < 40; i++)
        for (int k = 0; k < 4; k++)
            qs[i][k] = pool[group_skill(i % TUNE_GROUPS, (int)(ur() * TUNE_GROUP))];
    int errs = 0;
    for (int i = 0; i < RANK_QRING + 20; i++) {
        rank_query q = {qs[i % 40], 2 + i % 3, 10, 0, {0}};
        rank_filters_init(&q.filters);
        rank_response r;
        errs += rank_recommend(e, pool_, &q, &r, &err) != 0;
        rank_response_free(&r);
    }
    CHECK(errs == 0, "%s: %d failed queries: %s", tag, errs, err.msg);
    CHECK(rank_tune(e, 0, NULL, &err) == 1, "%s: due after %d queries: %s", tag, RANK_QRING + 20, err.msg);
    rank_get_info(e, &in);
    CHECK(!strcmp(in.probe_from, "queries") && in.index_probe >= 1, "%s: after queries: %d probed, from %s", tag,
          in.index_probe, in.probe_from);
    CHECK(rank_tune(e, 0, NULL, &err) == 0 && rank_tune(e, 1, NULL, &err) == 1, "%s: not due again; forced", tag);
    /* the recorded profiles at the depth set, against every list */
    int same = 0, nq = 0, probe = in.index_probe;
    for (int i = 0; i < RANK_QRING; i += 4, nq++) { /* every 4th: 256 */
        const float *qv = e->qring + (size_t)i * e->dim;
        idx_hit a[10], b[10];
        int na = 0, nb = 0;
        idx_set_probe(e->ix, probe, IDX_FILTER_EXP, &err);
        idx_search_exact(e->ix, qv, 10, 0, NULL, rank_fetch_exact, e, a, &na, &err);
        idx_set_probe(e->ix, in.index_lists, IDX_FILTER_EXP, &err);
        idx_search_exact(e->ix, qv, 10, 0, NULL, rank_fetch_exact, e, b, &nb, &err);
        int ok = na == 10 && nb == 10;
        for (int k = 0; ok && k < 10; k++)
            ok = fabsf(a[k].score - b[k].score) < 1e-6f;
        same += ok;
    }
    idx_set_probe(e->ix, probe, IDX_FILTER_EXP, &err);
    printf("%s: index calibrated: %d of %d lists (%d on the skills at open); top 10 as with every list on %d of %d "
           "recorded queries\n",
           tag, probe, in.index_lists, at_open, same, nq);
    CHECK(same >= nq * 99 / 100, "%s: top 10 as with every list on %d of %d", tag, same, nq);
    CHECK(probe < in.index_lists, "%s: the clustered vectors need fewer than all %d lists: %d", tag, in.index_lists,
          probe);
    rank_close(e);
}

static void tune_suite(const char *url, const char *tag)
{
    want_skill_vectors = 1;
    db *d = gen_store(url, tag, 4000, 0, NULL, NULL);
    want_skill_vectors = 0;
    if (!d)
        return;
    tune_part(d, tag);
    db_close(d);
}

/* The skill pass on more jobs than one window of step 2 holds (4,096 ranks;
 * 5,000 is not a multiple of 64 either), some of them big (40-90 skills
 * drawn from the common end: more masked skills than rcw counts), with
 * queries of common skills, of many skills, and mixed ones. */
static void skillpass_suite(const char *url, const char *tag)
{
    jm_err err = {0};
    int N = 5000, big = 0;
    db *d = gen_store(url, tag, N, 0.05, &big, NULL);
    if (!d)
        return;
    for (int round = 0; round < 2; round++) {
        rank_opts o;
        rank_opts_default(&o);
        o.refresh_secs = -1;
        o.candidates = round ? 300 : 30;
        rank_engine *e = NULL;
        if (rank_open(d, model, &o, &e, &err)) {
            CHECK(0, "%s: rank_open: %s", tag, err.msg);
            break;
        }
        int sat = 0;
        for (int r = 0; r < e->wperm_n; r++)
            sat += RCW_REQ(e->rcw[r]) == 31 || RCW_NICE(e->rcw[r]) == 7;
        CHECK(e->accel && e->wperm_n > 4096 && e->wperm_n % 64 && sat > 0,
              "%s: %d ranks, %d of %d big jobs with capped counts", tag, e->wperm_n, sat, big);
        static const int kinds[] = {Q_COMMON, Q_MANY, Q_MIXED}, nqs[2][3] = {{30, 6, 24}, {20, 4, 16}};
        static const char *names[] = {"common skills", "many skills", "mixed"};
        int nf = 0;
        for (int k = 0; k < 3; k++)
            nf += compare_paths(e, nqs[round][k], tag, names[k], kinds[k], 0);
        CHECK(nf > 0, "%s: the fast path was taken (%d queries)", tag, nf);
        rank_close(e);
    }
    db_close(d);
}

/* ---------- the pieces under the skill pass ---------- */

static void kernels_suite(void)
{
    /* the similarity kernels: AVX2 and scalar give the same bits, whatever
     * the blocking */
    int D[] = {384, 37, 8, 1};
    for (int t = 0; t < 4; t++) {
        int nu = 7, ns = 11, dd = D[t];
        float *U = malloc(sizeof(float) * (size_t)nu * dd), *S = malloc(sizeof(float) * (size_t)ns * dd);
        float *o1 = malloc(sizeof(float) * (size_t)nu * ns), *o2 = malloc(sizeof(float) * (size_t)nu * ns),
              *o3 = malloc(sizeof(float) * (size_t)nu * ns);
        for (int i = 0; i < nu * dd; i++)
            U[i] = (float)(ur() - 0.5);
        for (int i = 0; i < ns * dd; i++)
            S[i] = (float)(ur() - 0.5);
        sk_dots_variant(0, U, nu, S, ns, dd, o1, (size_t)ns);
        sk_dots_variant(1, U, nu, S, ns, dd, o2, (size_t)ns);
        for (int s = 0; s < ns; s++) /* one row at a time: another blocking */
            sk_dots_variant(1, U, nu, S + (size_t)s * dd, 1, dd, o3 + s, (size_t)ns);
        CHECK(!memcmp(o1, o2, sizeof(float) * (size_t)nu * ns) && !memcmp(o2, o3, sizeof(float) * (size_t)nu * ns),
              "sk_dots: AVX2 = scalar = row by row (D %d)", dd);
        int8_t *Ui = malloc((size_t)nu * dd), *Si = malloc((size_t)ns * dd);
        int32_t *i1 = malloc(sizeof(int32_t) * (size_t)nu * ns), *i2 = malloc(sizeof(int32_t) * (size_t)nu * ns);
        for (int i = 0; i < nu * dd; i++)
            Ui[i] = (int8_t)(-127 + (int)(ur() * 255));
        for (int i = 0; i < ns * dd; i++)
            Si[i] = (int8_t)(-127 + (int)(ur() * 255));
        sk_dots_i8_variant(0, Ui, nu, Si, ns, dd, i1, (size_t)ns);
        sk_dots_i8_variant(1, Ui, nu, Si, ns, dd, i2, (size_t)ns);
        CHECK(!memcmp(i1, i2, sizeof(int32_t) * (size_t)nu * ns), "sk_dots_i8: AVX2 = scalar (D %d)", dd);
        free(U), free(S), free(o1), free(o2), free(o3), free(Ui), free(Si), free(i1), free(i2);
    }

    /* the int8 prefilter: what it resolves equals sk_match_all, what it
     * leaves is below the floor */
    sk_vocab *v = NULL;
    jm_err err = {0};
    int dim = bert_dim(model);
    sk_vocab_new(dim, &v, &err);
    float *emb = malloc(sizeof(float) * NPOOL * (size_t)dim);
    CHECK(bert_embed(pool_, NPOOL, pool, NULL, emb, NULL, &err) == 0, "embed the pool: %s", err.msg);
    for (int i = 0; i < NPOOL; i++) {
        char *nm = db_skill_norm(pool[i]);
        int x = sk_add(v, nm, pool[i]);
        sk_set_embedding(v, x, emb + (size_t)i * dim);
        sk_df_add(v, x, 1);
        free(nm);
    }
    sk_finish(v, 100, &err);
    int bad = 0, resolved = 0, left = 0;
    for (int t = 0; t < 40; t++) {
        int nu = 1 + (int)(ur() * 6);
        const char *un[6];
        char *norms[6];
        float *ue = malloc(sizeof(float) * (size_t)nu * dim);
        for (int u = 0; u < nu; u++) {
            const char *name = ur() < 0.3 ? typed[(int)(ur() * (sizeof typed / sizeof typed[0]))]
                                          : pool[(int)(ur() * NPOOL)];
            norms[u] = db_skill_norm(name);
            un[u] = norms[u];
            bert_embed(pool_, 1, &name, NULL, ue + (size_t)u * dim, NULL, &err);
        }
        float a[NPOOL], b[NPOOL];
        int ua[NPOOL], ub[NPOOL];
        unsigned char ka[NPOOL], kb[NPOOL];
        sk_match_all(v, un, ue, nu, a, ua, ka, &err);
        sk_match_floor(v, un, ue, nu, 0.5f, b, ub, kb, &err);
        for (int s = 0; s < NPOOL; s++) {
            if (b[s] == SK_SIM_UNRESOLVED) {
                left++;
                bad += !(a[s] < 0.5f) || !same_f(sk_similarity(v, ue, nu, s), a[s]);
            } else {
                resolved++;
                bad += !same_f(a[s], b[s]) || ua[s] != ub[s] || ka[s] != kb[s];
            }
        }
        for (int u = 0; u < nu; u++)
            free(norms[u]);
        free(ue);
    }
    CHECK(bad == 0 && resolved > 0 && left > 0, "sk_match_floor: %d mismatches (%d resolved, %d left)", bad, resolved,
          left);
    free(emb);
    sk_vocab_free(v);

    /* idx_score_many gives idx_score's bits */
    idx *ix = NULL;
    idx_new(dim, &ix, &err);
    float *vec = malloc(sizeof(float) * (size_t)dim), *q = malloc(sizeof(float) * (size_t)dim);
    for (uint32_t s = 0; s < 50; s++) {
        for (int x = 0; x < dim; x++)
            vec[x] = (float)(ur() - 0.5);
        if (s != 7)
            idx_set(ix, s, vec, &err);
    }
    for (int x = 0; x < dim; x++)
        q[x] = (float)(ur() - 0.5);
    uint32_t slots[23];
    float many[23];
    for (int i = 0; i < 23; i++)
        slots[i] = (uint32_t)((i * 7) % 50);
    idx_score_many(ix, q, slots, 23, many);
    int eq = 1;
    for (int i = 0; i < 23; i++) {
        float one = idx_score(ix, q, slots[i]);
        eq &= (isnan(one) && isnan(many[i])) || same_f(one, many[i]);
    }
    CHECK(eq, "idx_score_many = idx_score, bit for bit (a dead slot included)");
    free(vec);
    free(q);
    idx_free(ix);
}

typedef struct hammer {
    vcache *c;
    int id, ok;
} hammer;

static void *hammer_main(void *arg)
{
    hammer *h = arg;
    float v[8], w[8];
    char key[32];
    h->ok = 1;
    for (int i = 0; i < 20000; i++) {
        int k = (i * 7 + h->id * 13) % 300;
        snprintf(key, sizeof key, "text %d", k);
        for (int x = 0; x < 8; x++)
            v[x] = (float)(k * 8 + x);
        if (vc_get(h->c, key, w)) {
            h->ok &= !memcmp(v, w, sizeof v);
        } else {
            vc_put(h->c, key, v);
        }
    }
    return NULL;
}

static void cache_suite(void)
{
    vcache *c = NULL;
    CHECK(vc_new(4, 0, &c) == 0 && c == NULL, "a cache of 0 entries is no cache");
    float out[4];
    CHECK(vc_get(NULL, "a", out) == 0, "the null cache always misses");
    vc_put(NULL, "a", out);
    CHECK(vc_new(4, 3, &c) == 0 && c, "vc_new");
    float a[4] = {1, 2, 3, 4}, b[4] = {5, 6, 7, 8}, x[4] = {9, 9, 9, 9};
    vc_put(c, "a", a);
    vc_put(c, "b", b);
    vc_put(c, "c", x);
    CHECK(vc_get(c, "a", out) && !memcmp(out, a, sizeof a), "a cached");
    vc_put(c, "d", x); /* drops the least recently used: b */
    CHECK(!vc_get(c, "b", out), "the least recently used goes first");
    CHECK(vc_get(c, "a", out) && vc_get(c, "c", out) && vc_get(c, "d", out), "the others stay");
    vc_put(c, "a", b); /* a present: only refreshed, the vector kept */
    CHECK(vc_get(c, "a", out) && !memcmp(out, a, sizeof a), "a second put of a text keeps its vector");
    vc_stats st;
    vc_get_stats(c, &st);
    CHECK(st.entries == 3 && st.cap == 3 && st.hits >= 5 && st.misses == 1, "stats: %d entries, %lld hits, %lld misses",
          st.entries, (long long)st.hits, (long long)st.misses);
    vc_clear(c);
    vc_get_stats(c, &st);
    CHECK(st.entries == 0 && !vc_get(c, "a", out), "cleared");
    vc_free(c);
    /* shared by threads */
    vc_new(8, 100, &c);
    pthread_t t[4];
    hammer h[4];
    for (int i = 0; i < 4; i++) {
        h[i] = (hammer){c, i, 0};
        pthread_create(&t[i], NULL, hammer_main, &h[i]);
    }
    int ok = 1;
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        ok &= h[i].ok;
    }
    vc_get_stats(c, &st);
    CHECK(ok && st.entries == 100, "4 threads on one cache: every hit was the right vector (%d entries)", st.entries);
    vc_free(c);
}

/* ---------- snapshots ---------- */

/* The answers of nq queries drawn from seed, as one text (see snap). */
static char *answers(rank_engine *e, int nq, uint64_t seed)
{
    uint64_t keep = rs;
    rs = seed;
    size_t cap = 1 << 16, len = 0;
    char *all = malloc(cap);
    all[0] = 0;
    for (int qi = 0; qi < nq; qi++) {
        const char *sk[6];
        int ns = 1 + (int)(ur() * 5);
        for (int i = 0; i < ns; i++)
            sk[i] = ur() < 0.15 ? typed[(int)(ur() * (sizeof typed / sizeof typed[0]))] : pool[pick_skill()];
        rank_query q = {sk, ns, 10, 0, {0}};
        rank_filters_init(&q.filters);
        if (qi % 4 == 1)
            q.filters.location = places_q[qi % 5];
        rank_response r;
        jm_err err = {0};
        int rc = rank_recommend(e, pool_, &q, &r, &err);
        char *t = snap(rc, &r);
        if (rc == 0)
            rank_response_free(&r);
        size_t tl = strlen(t);
        while (len + tl + 1 > cap)
            all = realloc(all, cap *= 2);
        memcpy(all + len, t, tl + 1);
        len += tl;
        free(t);
    }
    rs = keep;
    return all;
}

static int same_answers(rank_engine *a, rank_engine *b, int nq)
{
    char *x = answers(a, nq, 777), *y = answers(b, nq, 777);
    int same = !strcmp(x, y);
    if (!same) {
        size_t at = 0;
        while (x[at] && x[at] == y[at])
            at++;
        fprintf(stderr, "answers differ at:\n  %.160s\n  %.160s\n", x + at, y + at);
    }
    free(x);
    free(y);
    return same;
}

/* Opens an engine with opts + snapshot; checks whether it was used. */
static rank_engine *open_snap(db *d, const rank_opts *o, const char *path, int want, const char *why_has,
                              const char *tag, const char *what)
{
    rank_opts so = *o;
    so.snapshot = path;
    rank_engine *e = NULL;
    jm_err err = {0};
    if (rank_open(d, model, &so, &e, &err)) {
        CHECK(0, "%s %s: rank_open: %s", tag, what, err.msg);
        return NULL;
    }
    rank_info in;
    rank_get_info(e, &in);
    CHECK(in.from_snapshot == want, "%s %s: from_snapshot %d, wanted %d (%s)", tag, what, in.from_snapshot, want,
          in.snapshot_why ? in.snapshot_why : "-");
    if (why_has)
        CHECK(in.snapshot_why && strstr(in.snapshot_why, why_has), "%s %s: why \"%s\", wanted \"%s\"", tag, what,
              in.snapshot_why ? in.snapshot_why : "(none)", why_has);
    return e;
}

static long file_size(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fclose(f);
    return n;
}

/* copy src to dst, keeping the first `keep` bytes (-1: all), byte `flip`
 * (if >= 0) inverted */
static void copy_file(const char *src, const char *dst, long keep, long flip)
{
    FILE *a = fopen(src, "rb"), *b = fopen(dst, "wb");
    long i = 0;
    int c;
    while (a && b && (keep < 0 || i < keep) && (c = fgetc(a)) != EOF) {
        fputc(i == flip ? c ^ 0x5a : c, b);
        i++;
    }
    if (a)
        fclose(a);
    if (b)
        fclose(b);
}

static void snapshot_suite(const char *url, const char *tag, rank_index_mode mode)
{
    jm_err err = {0};
    int N = 300, dim = bert_dim(model);
    db *d = gen_store(url, tag, N, 0, NULL, NULL);
    if (!d)
        return;
    char path[] = "/tmp/jm_test_snap_XXXXXX", bad[64];
    int fd = mkstemp(path);
    if (fd >= 0)
        close(fd);
    unlink(path);
    snprintf(bad, sizeof bad, "%s.bad", path);
    rank_opts o;
    rank_opts_default(&o);
    o.refresh_secs = -1;
    o.index_mode = mode;
    /* no file yet: a scan */
    rank_engine *e1 = open_snap(d, &o, path, 0, "cannot be opened", tag, "missing file");
    if (!e1) {
        db_close(d);
        return;
    }
    CHECK(rank_snapshot_save(e1, path, &err) == 0, "%s: save: %s", tag, err.msg);
    long size = file_size(path);
    CHECK(size > 300 * 56, "%s: the snapshot has %ld bytes", tag, size);
    rank_engine *e2 = open_snap(d, &o, path, 1, NULL, tag, "fresh snapshot");
    if (e2) {
        rank_info a, b;
        rank_get_info(e1, &a);
        rank_get_info(e2, &b);
        CHECK(a.jobs == b.jobs && a.with_vectors == b.with_vectors && a.skills == b.skills && a.rev == b.rev &&
                  b.snapshot_rev == a.rev,
              "%s: the loaded engine's counts: jobs %lld/%lld vectors %lld/%lld skills %lld/%lld rev %lld/%lld", tag,
              (long long)a.jobs, (long long)b.jobs, (long long)a.with_vectors, (long long)b.with_vectors,
              (long long)a.skills, (long long)b.skills, (long long)a.rev, (long long)b.rev);
        CHECK(same_answers(e1, e2, 60), "%s: the snapshot answers as the engine that wrote it", tag);
        compare_paths(e2, 40, tag, "from a snapshot", Q_MIXED, 1);
        rank_close(e2);
    }
    /* changes after the snapshot: new, changed and deleted jobs */
    db_job more[40];
    for (int i = 0; i < 40; i++)
        gen_job(i < 20 ? N + i : (int)(ur() * N), 1, &more[i]);
    CHECK(db_upsert_jobs(d, more, 40, NULL, &err) == 0 && vectors(d, dim, &err) == 0, "%s: changes: %s", tag,
          err.msg);
    for (int i = 0; i < 40; i++)
        db_job_clear(&more[i]);
    for (int i = 0; i < 8; i++) {
        char id[32];
        int found;
        snprintf(id, sizeof id, "eq-%04d", 3 + 7 * i);
        db_delete_job(d, id, &found, &err);
    }
    int applied = 0;
    CHECK(rank_refresh(e1, &applied, &err) == 0 && applied >= 40, "%s: refresh applied %d: %s", tag, applied,
          err.msg);
    rank_engine *e3 = open_snap(d, &o, path, 1, NULL, tag, "snapshot, then changes");
    if (e3) {
        rank_info a, b;
        rank_get_info(e1, &a);
        rank_get_info(e3, &b);
        CHECK(a.jobs == b.jobs && a.with_vectors == b.with_vectors && a.rev == b.rev,
              "%s: after the changes: jobs %lld/%lld vectors %lld/%lld rev %lld/%lld", tag, (long long)a.jobs,
              (long long)b.jobs, (long long)a.with_vectors, (long long)b.with_vectors, (long long)a.rev,
              (long long)b.rev);
        CHECK(same_answers(e1, e3, 60), "%s: snapshot + the changes since answers as the refreshed engine", tag);
        rank_close(e3);
    }
    /* a snapshot with changed (dirty) jobs in it */
    CHECK(e1->ndirty > 0, "%s: the refreshed engine has changed jobs (%d)", tag, e1->ndirty);
    CHECK(rank_snapshot_save(e1, path, &err) == 0, "%s: save again: %s", tag, err.msg);
    rank_engine *e4 = open_snap(d, &o, path, 1, NULL, tag, "snapshot with changed jobs");
    if (e4) {
        CHECK(e4->ndirty == e1->ndirty, "%s: changed jobs %d/%d", tag, e4->ndirty, e1->ndirty);
        CHECK(same_answers(e1, e4, 60), "%s: a snapshot with changed jobs answers the same", tag);
        compare_paths(e4, 40, tag, "snapshot with changed jobs", Q_MIXED, 1);
        rank_close(e4);
    }
    size = file_size(path);
    /* what does not fit, or is damaged, is not used: the engine scans */
    rank_opts o2 = o;
    o2.nice_weight = 0.3f;
    rank_close(open_snap(d, &o2, path, 0, "options", tag, "other options"));
    o2 = o;
    o2.index_mode = mode == RANK_INDEX_MEMORY ? RANK_INDEX_STREAM : RANK_INDEX_MEMORY;
    rank_close(open_snap(d, &o2, path, 0, "index mode", tag, "other index mode"));
    long cut[] = {0, 7, 100, 456, size / 3, size / 2, size - 9, size - 1};
    for (int i = 0; i < 8; i++) {
        copy_file(path, bad, cut[i], -1);
        char what[64];
        snprintf(what, sizeof what, "cut at %ld of %ld", cut[i], size);
        rank_engine *e = open_snap(d, &o, bad, 0, NULL, tag, what);
        if (e && i == 5)
            CHECK(same_answers(e1, e, 20), "%s: the scan after a damaged snapshot answers as before", tag);
        rank_close(e);
    }
    long flips[] = {9, 500, size / 4, size / 2, (3 * size) / 4, size - 20, size - 3};
    for (int i = 0; i < 7; i++) {
        copy_file(path, bad, -1, flips[i]);
        char what[64];
        snprintf(what, sizeof what, "byte %ld of %ld flipped", flips[i], size);
        rank_close(open_snap(d, &o, bad, 0, NULL, tag, what));
    }
    /* postings that pass the checksum but would send the skill pass out of
     * bounds (written by the engine itself from damaged memory): refused */
    int lv = -1;
    for (int v = 0; e1->accel && v < e1->post_nv && lv < 0; v++)
        if (e1->post_off[v + 1] - e1->post_off[v] >= 2 && e1->post_off[v + 1] - e1->post_off[v] <= 4096)
            lv = v;
    CHECK(lv >= 0, "%s: a postings list of 2 to 4,096 bytes to damage", tag);
    if (lv >= 0) {
        uint32_t a = e1->post_off[lv], z = e1->post_off[lv + 1];
        uint8_t keep[4096];
        size_t len = z - a;
        memcpy(keep, e1->post + a, len);
        for (int c = 0; c < 2; c++) {
            if (c == 0) {
                e1->post[z - 1] |= 0x80; /* the last entry runs on */
            } else {
                uint32_t x = (uint32_t)(e1->wperm_n + 5) << 1; /* a rank past the jobs, then deltas of 0 */
                e1->post[a] = (uint8_t)(0x80 | (x & 127));
                e1->post[a + 1] = (uint8_t)(x >> 7);
                for (uint32_t i = a + 2; i < z; i++)
                    e1->post[i] = 0;
            }
            CHECK(rank_snapshot_save(e1, bad, &err) == 0, "%s: save: %s", tag, err.msg);
            memcpy(e1->post + a, keep, len);
            rank_close(open_snap(d, &o, bad, 0, c ? "beyond the jobs" : "runs past its list", tag,
                                 c ? "a posting's rank past the jobs" : "an unterminated posting"));
        }
    }
    copy_file(path, bad, -1, -1);
    FILE *f = fopen(bad, "ab");
    if (f) {
        fputs("more", f);
        fclose(f);
    }
    rank_close(open_snap(d, &o, bad, 0, NULL, tag, "bytes appended"));
    f = fopen(bad, "wb");
    if (f) {
        for (int i = 0; i < 5000; i++)
            fputc((int)(ur() * 256), f);
        fclose(f);
    }
    rank_close(open_snap(d, &o, bad, 0, "not a jobmatch snapshot", tag, "random bytes"));
    rank_close(open_snap(d, &o, "/tmp", 0, NULL, tag, "a directory"));
    /* written where it cannot be: an error, the old file kept */
    CHECK(rank_snapshot_save(e1, "/nonexistent-dir/x.snap", &err) == JM_EIO && strstr(err.msg, "x.snap"),
          "%s: save into a missing directory: %s", tag, err.msg);
    CHECK(file_size(path) == size, "%s: the old snapshot is kept", tag);
    /* another store */
    char path2[] = "/tmp/jm_test_snap_db_XXXXXX";
    fd = mkstemp(path2);
    if (fd >= 0)
        close(fd);
    unlink(path2);
    db *d2 = NULL;
    if (db_open(path2, &d2, &err) == 0) {
        rank_engine *e = open_snap(d2, &o, path, 0, "another store", tag, "another store");
        if (e) {
            rank_info in;
            rank_get_info(e, &in);
            CHECK(in.jobs == 0, "%s: another store's engine has its own jobs (%lld)", tag, (long long)in.jobs);
        }
        rank_close(e);
        db_close(d2);
    }
    check_rm_sqlite(path2);
    /* the text template changed: the stored vectors are stale */
    CHECK(db_set_template(d, "{title}. Skills: {skill_names}", &err) == 0, "%s: template: %s", tag, err.msg);
    rank_close(open_snap(d, &o, path, 0, "template", tag, "new template"));
    rank_close(e1);
    unlink(path);
    unlink(bad);
    db_close(d);
}

int main(void)
{
    const char *dir = getenv("JM_TEST_MODEL");
    jm_err err = {0};
    if (bert_load(dir ? dir : "models/all-MiniLM-L6-v2", &model, &err) || bert_pool_new(model, 1, &pool_, &err)) {
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
    kernels_suite();
    cache_suite();
    char path2[] = "/tmp/jm_test_rank_eq_XXXXXX";
    fd = mkstemp(path2);
    if (fd >= 0)
        close(fd);
    unlink(path2);
    equivalence_suite(path2, "sqlite");
    check_rm_sqlite(path2);
    snapshot_suite(path2, "sqlite snapshot (stream)", RANK_INDEX_STREAM);
    check_rm_sqlite(path2);
    snapshot_suite(path2, "sqlite snapshot", RANK_INDEX_MEMORY);
    check_rm_sqlite(path2);
    char path3[] = "/tmp/jm_test_rank_sp_XXXXXX";
    fd = mkstemp(path3);
    if (fd >= 0)
        close(fd);
    unlink(path3);
    skillpass_suite(path3, "sqlite 5000 jobs");
    check_rm_sqlite(path3);
    tune_suite(path3, "sqlite 4000 jobs, vectors from their skills");
    check_rm_sqlite(path3);
    check_rm_sqlite(path);
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
        snprintf(cmd, sizeof cmd, "sh tests/pg.sh createdb '%s' jm_test_rank_eq", pgdir);
        p = popen(cmd, "r");
        url[0] = 0;
        if (p) {
            while (fgets(url, sizeof url, p)) {
            }
            pclose(p);
        }
        url[strcspn(url, "\n")] = 0;
        CHECK(!strncmp(url, "postgres", 8), "could not create a test database: %s", url);
        if (!strncmp(url, "postgres", 8))
            equivalence_suite(url, "postgresql");
    } else {
        printf("test_rank: JM_TEST_PG_URL not set: PostgreSQL half skipped\n");
    }
    free(pool_emb);
    bert_pool_free(pool_);
    bert_free(model);
    return CHECK_DONE("test_rank");
}
