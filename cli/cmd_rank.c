/* cmd_rank.c - recommend and gap: parse options, call the engine, print a table
 * on a terminal or the documented JSON (docs/ranking.md) with --json. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "gap.h"
#include "rank.h"
#include "report.h"

typedef struct common {
    const char *url, *model, *skills_text;
    char **skills;
    int nskills;
    long k, per_company, top;
    int json;
    rank_filters f;
    char **exclude;
    int nexclude;
    const char *job;
    double readiness;
    rank_opts o;
    const char *snapshot;
    char snapbuf[4096];
} common;

static int parse_money(const char *s, const char *what, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < 0) {
        fprintf(stderr, "jobmatch: %s must be a non-negative number, got \"%s\"\n", what, s);
        return -1;
    }
    *out = v;
    return 0;
}

#define FILTER_HELP                                                                        \
    "  --location TEXT       jobs whose location contains TEXT (any case)\n"              \
    "  --remote              remote jobs only\n"                                          \
    "  --salary-min N        jobs whose salary range reaches N or more\n"                 \
    "  --salary-max N        jobs whose salary range starts at N or less\n"               \
    "  --employment-type T   e.g. full-time (any case)\n"                                 \
    "  --seniority S         e.g. senior (any case)\n"                                    \
    "  --posted-since DATE   posted on or after YYYY-MM-DD\n"                             \
    "  --exclude ID,ID       leave these jobs out\n"                                      \
    "  --per-company N       at most N results per company\n"                             \
    "  --index MODE          memory (default: quantised vectors in RAM) or stream (read\n" \
    "                        the vectors from the database for each query)\n"            \
    "  --db URL              SQLite file or postgresql:// URL (default $JOBMATCH_DB or " DEFAULT_DB ")\n" \
    "  --model DIR           model directory (default $JOBMATCH_MODEL or " DEFAULT_MODEL ")\n" \
    "  --snapshot PATH|off   engine snapshot (default $JOBMATCH_SNAPSHOT, or DB.snapshot\n" \
    "                        beside a SQLite file): read when it fits the store, written\n" \
    "                        when the load had to scan for a second or more\n" \
    "  --json                stable JSON (docs/ranking.md) instead of a table\n"

enum { O_LOC = 1000, O_REMOTE, O_SMIN, O_SMAX, O_EMP, O_SEN, O_POSTED, O_EXCL, O_PERCO, O_INDEX, O_JSON, O_JOB,
       O_TOP, O_READY, O_SKILLS, O_DB, O_MODEL, O_SNAP, O_HELP };

static const struct option common_opts[] = {
    {"skills", required_argument, 0, O_SKILLS}, {"location", required_argument, 0, O_LOC},
    {"remote", no_argument, 0, O_REMOTE},        {"salary-min", required_argument, 0, O_SMIN},
    {"salary-max", required_argument, 0, O_SMAX}, {"employment-type", required_argument, 0, O_EMP},
    {"seniority", required_argument, 0, O_SEN},   {"posted-since", required_argument, 0, O_POSTED},
    {"exclude", required_argument, 0, O_EXCL},    {"per-company", required_argument, 0, O_PERCO},
    {"index", required_argument, 0, O_INDEX},     {"json", no_argument, 0, O_JSON},
    {"job", required_argument, 0, O_JOB},         {"top", required_argument, 0, O_TOP},
    {"readiness", required_argument, 0, O_READY}, {"db", required_argument, 0, O_DB},
    {"model", required_argument, 0, O_MODEL},     {"help", no_argument, 0, O_HELP},
    {"snapshot", required_argument, 0, O_SNAP},
    {0, 0, 0, 0}};

/* Returns 0 to go on, 1 after --help, 2 on bad usage. */
static int parse(int argc, char **argv, common *c, int is_gap, void (*usage)(void))
{
    memset(c, 0, sizeof *c);
    c->url = cli_default_db();
    c->model = cli_default_model();
    c->k = 10;
    c->top = 20;
    c->readiness = 0.7;
    rank_filters_init(&c->f);
    rank_opts_default(&c->o);
    int ch;
    while ((ch = getopt_long(argc, argv, "k:h", common_opts, NULL)) != -1) {
        switch (ch) {
        case 'k':
            if (is_gap) return 2;
            {
                char *end;
                errno = 0;
                c->k = strtol(optarg, &end, 10);
                if (errno || end == optarg || *end || c->k < 1 || c->k > 1000) {
                    fprintf(stderr, "jobmatch: -k must be an integer from 1 to 1000, got \"%s\"\n", optarg);
                    return 2;
                }
            }
            break;
        case O_SKILLS: c->skills_text = optarg; break;
        case O_LOC: c->f.location = optarg; break;
        case O_REMOTE: c->f.remote_only = 1; break;
        case O_SMIN: if (parse_money(optarg, "--salary-min", &c->f.salary_min)) return 2; break;
        case O_SMAX: if (parse_money(optarg, "--salary-max", &c->f.salary_max)) return 2; break;
        case O_EMP: c->f.employment_type = optarg; break;
        case O_SEN: c->f.seniority = optarg; break;
        case O_POSTED: c->f.posted_since = optarg; break;
        case O_EXCL:
            for (int i = 0; i < c->nexclude; i++) free(c->exclude[i]);
            free(c->exclude);
            c->nexclude = rank_split_skills(optarg, &c->exclude);
            c->f.exclude = (const char *const *)c->exclude;
            c->f.nexclude = c->nexclude;
            break;
        case O_PERCO: if (cli_parse_int(optarg, "--per-company", 0, 1000, &c->per_company)) return 2; break;
        case O_INDEX:
            if (!strcmp(optarg, "memory")) c->o.index_mode = RANK_INDEX_MEMORY;
            else if (!strcmp(optarg, "stream")) c->o.index_mode = RANK_INDEX_STREAM;
            else {
                fprintf(stderr, "jobmatch: --index must be memory or stream\n");
                return 2;
            }
            break;
        case O_JSON: c->json = 1; break;
        case O_JOB: if (!is_gap) return 2; c->job = optarg; break;
        case O_TOP: if (!is_gap || cli_parse_int(optarg, "--top", 1, 1000, &c->top)) return 2; break;
        case O_READY: {
            char *end;
            if (!is_gap) return 2;
            c->readiness = strtod(optarg, &end);
            if (end == optarg || *end || !(c->readiness > 0 && c->readiness <= 1)) {
                fprintf(stderr, "jobmatch: --readiness must be a number in (0, 1], got \"%s\"\n", optarg);
                return 2;
            }
            break;
        }
        case O_DB: c->url = optarg; break;
        case O_MODEL: c->model = optarg; break;
        case O_SNAP: c->snapshot = optarg; break;
        case 'h':
        case O_HELP: usage(); return 1;
        default: return 2;
        }
    }
    if (!c->skills_text) {
        fprintf(stderr, "jobmatch: give your skills with --skills \"python, sql, docker\"\n");
        return 2;
    }
    c->nskills = rank_split_skills(c->skills_text, &c->skills);
    if (c->nskills == 0) {
        fprintf(stderr, "jobmatch: --skills has no skills in it\n");
        return 2;
    }
    if (c->nskills > 200) {
        fprintf(stderr, "jobmatch: at most 200 skills, got %d\n", c->nskills);
        return 2;
    }
    return 0;
}

static void common_free(common *c)
{
    for (int i = 0; i < c->nskills; i++) free(c->skills[i]);
    free(c->skills);
    for (int i = 0; i < c->nexclude; i++) free(c->exclude[i]);
    free(c->exclude);
}

typedef struct env {
    db *d;
    bert_model *m;
    bert_pool *pool;
    rank_engine *e;
} env;

static int env_open(const common *c, env *v)
{
    jm_err err = {0};
    memset(v, 0, sizeof *v);
    rank_opts o = c->o;
    o.snapshot = c->snapshot;
    if (db_open(c->url, &v->d, &err) || bert_load(c->model, &v->m, &err) ||
        bert_pool_new(v->m, 1, &v->pool, &err) || rank_open(v->d, v->m, &o, &v->e, &err)) {
        fprintf(stderr, "jobmatch: %s\n", err.msg);
        return 1;
    }
    /* a slow load (a large store) leaves a snapshot for the next one */
    rank_info in;
    rank_get_info(v->e, &in);
    if (o.snapshot && !in.from_snapshot && in.load_secs >= 1.0) {
        /* with the index's probe depth measured (searches read every list
         * until then), so that the runs which load it need not */
        if (rank_tune(v->e, 0, NULL, &err) < 0)
            fprintf(stderr, "jobmatch: note: %s\n", err.msg);
        if (rank_snapshot_save(v->e, o.snapshot, &err))
            fprintf(stderr, "jobmatch: note: %s\n", err.msg);
        else
            fprintf(stderr, "jobmatch: the load took %.1f s; wrote %s so the next one is quick\n", in.load_secs,
                    o.snapshot);
    }
    return 0;
}

static void env_close(env *v)
{
    rank_close(v->e);
    bert_pool_free(v->pool);
    bert_free(v->m);
    db_close(v->d);
}

static void print_json(cJSON *o)
{
    char *t = o ? cJSON_PrintUnformatted(o) : NULL;
    if (t) puts(t);
    else fprintf(stderr, "jobmatch: out of memory\n");
    free(t);
    cJSON_Delete(o);
}

/* Parse the options and open the store, the model and the engine: -1 to go
 * on, else the exit status (after --help, bad usage or a failed open, with
 * everything freed). */
static int start(int argc, char **argv, common *c, int is_gap, void (*usage)(void), env *v)
{
    int r = parse(argc, argv, c, is_gap, usage);
    if (r) {
        common_free(c);
        return r == 1 ? 0 : 2;
    }
    c->snapshot = cli_snapshot_path(c->url, c->snapshot, c->snapbuf, sizeof c->snapbuf);
    if (env_open(c, v)) {
        env_close(v);
        common_free(c);
        return 1;
    }
    return -1;
}

/* ---------- recommend ---------- */

static void usage_recommend(void)
{
    printf("usage: jobmatch recommend --skills \"python, sql, docker\" [-k N] [filters] [--json]\n\n"
           "The jobs that fit these skills best, each with its score, the parts of the score\n"
           "and its explanation: for every skill the job asks for, the skill of yours that\n"
           "matched it (exact, alias or semantic), the similarity, its weight and its\n"
           "contribution; and what is missing. How scores are made: docs/ranking.md.\n\n"
           "  --skills LIST         your skills, separated by commas or semicolons (at most 200)\n"
           "  -k N                  how many jobs (1-1000, default 10)\n" FILTER_HELP);
}

int cmd_recommend(int argc, char **argv)
{
    common c;
    env v;
    int r = start(argc, argv, &c, 0, usage_recommend, &v);
    if (r >= 0)
        return r;
    rank_query q = {(const char *const *)c.skills, c.nskills, (int)c.k, (int)c.per_company, c.f};
    rank_response res;
    jm_err err = {0};
    int rc = rank_recommend(v.e, v.pool, &q, &res, &err);
    if (rc) {
        fprintf(stderr, "jobmatch: %s\n", err.msg);
    } else if (c.json) {
        print_json(rep_recommend(&res, 1));
    } else {
        printf("%d of %lld jobs for: ", res.n, (long long)res.considered);
        for (int i = 0; i < res.nskills; i++) printf(i ? ", %s" : "%s", res.skills[i]);
        printf("  (%.1f ms)\n\n", res.ms);
        printf("  #  score  query cover  sem   kw  job\n");
        for (int i = 0; i < res.n; i++) {
            const rank_result *x = &res.results[i];
            printf("%3d  %5.3f  %5.2f %5.2f %5.2f %4.2f  %s  %s%s%s\n", i + 1, x->score, x->query, x->coverage,
                   x->semantic, x->keyword, x->id, x->title ? x->title : "", x->company ? " @ " : "",
                   x->company ? x->company : "");
            int shown = 0;
            printf("      matched:");
            for (int a = 0; a < x->nalign; a++) {
                const rank_align *g = &x->align[a];
                if (g->status == RANK_MISSING) continue;
                printf("%s %s<-%s (%s %.2f)", shown++ ? "," : "", g->job_skill, g->user_skill ? g->user_skill : "?",
                       sk_kind_name(g->kind), g->similarity);
            }
            printf("%s\n", shown ? "" : " none");
            if (x->nmissing) {
                printf("      missing (%d):", x->nmissing);
                int m = 0;
                for (int a = 0; a < x->nalign && m < 8; a++)
                    if (x->align[a].status == RANK_MISSING)
                        printf("%s %s", m++ ? "," : "", x->align[a].job_skill);
                printf("%s\n", x->nmissing > 8 ? ", ..." : "");
            }
        }
    }
    rank_response_free(&res);
    env_close(&v);
    common_free(&c);
    return rc ? 1 : 0;
}

/* ---------- gap ---------- */

static void usage_gap(void)
{
    printf("usage: jobmatch gap --skills LIST --job ID [--json]\n"
           "       jobmatch gap --skills LIST [--top N] [--readiness R] [filters] [--json]\n\n"
           "With --job: each skill the job asks for, as have, partial or missing, with your\n"
           "skill that matched it and the similarity; your readiness for the job; and the\n"
           "missing skills, most important first.\n"
           "Without --job: the career gap. Over your N best jobs, the skills you lack, with\n"
           "how many of those jobs lack them, their score-weighted total, and how many more\n"
           "jobs would reach the readiness R if you learned each: what to learn next.\n\n"
           "  --skills LIST         your skills, separated by commas or semicolons\n"
           "  --job ID              one job's gap\n"
           "  --top N               jobs to aggregate over (default 20)\n"
           "  --readiness R         target readiness, 0-1 (default 0.7)\n" FILTER_HELP);
}

int cmd_gap(int argc, char **argv)
{
    common c;
    env v;
    int r = start(argc, argv, &c, 1, usage_gap, &v);
    if (r >= 0)
        return r;
    jm_err err = {0};
    int rc;
    if (c.job) {
        gap_report g;
        rc = gap_job(v.e, v.pool, (const char *const *)c.skills, c.nskills, c.job, &g, &err);
        if (rc) {
            fprintf(stderr, "jobmatch: %s\n", err.msg);
        } else if (c.json) {
            print_json(rep_gap_job(&g));
        } else {
            printf("%s  %s%s%s\nreadiness %.0f%%: %d have, %d partial, %d missing\n\n", g.job_id,
                   g.title ? g.title : "", g.company ? " @ " : "", g.company ? g.company : "", 100 * g.readiness,
                   g.nhave, g.npartial, g.nmissing);
            printf("  status   sim   job skill                          your skill\n");
            for (int i = 0; i < g.n; i++) {
                const gap_item *it = &g.items[i];
                printf("  %-7s  %4.2f  %-33.33s  %s%s\n", rank_status_name(it->status), it->similarity, it->skill,
                       it->user_skill ? it->user_skill : "-", it->required ? "" : "  (nice to have)");
            }
            if (g.nmissing) {
                printf("\nmissing, most important first:");
                for (int i = 0; i < g.nmissing && i < 15; i++)
                    printf("%s %s", i ? "," : "", g.items[g.missing[i]].skill);
                printf("%s\n", g.nmissing > 15 ? ", ..." : "");
            }
            gap_report_free(&g);
        }
        if (!rc && c.json)
            gap_report_free(&g);
    } else {
        rank_query q = {(const char *const *)c.skills, c.nskills, (int)c.top, (int)c.per_company, c.f};
        gap_career cg;
        rc = gap_career_report(v.e, v.pool, &q, (float)c.readiness, &cg, &err);
        if (rc) {
            fprintf(stderr, "jobmatch: %s\n", err.msg);
        } else if (c.json) {
            print_json(rep_career(&cg));
        } else {
            printf("over your %d best jobs (%d already at %.0f%% readiness), learn next:\n\n", cg.top_n,
                   cg.ready_now, 100 * cg.target);
            printf("  #  skill                               missing in  weighted  unlocks\n");
            for (int i = 0; i < cg.n && i < 15; i++)
                printf("%3d  %-35.35s  %6d     %8.3f  %5d\n", i + 1, cg.items[i].skill, cg.items[i].jobs_missing,
                       cg.items[i].weighted, cg.items[i].unlocks);
        }
        if (!rc)
            gap_career_free(&cg);
    }
    env_close(&v);
    common_free(&c);
    return rc ? 1 : 0;
}
