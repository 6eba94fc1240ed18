/* cmd_store.c - the store commands: migrate, import, import-onet, attach,
 * template, embed, status. Each parses options, calls the library, prints. */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bert.h"
#include "cli.h"
#include "db.h"
#include "embedjob.h"
#include "import.h"

static int open_db(const char *url, db **d)
{
    jm_err err = {0};
    if (db_open(url, d, &err)) {
        fprintf(stderr, "jobmatch: %s\n", err.msg);
        return 1;
    }
    return 0;
}

/* Options every store command takes. Returns the getopt code handled, 0 if not ours. */
#define DB_OPTION {"db", required_argument, 0, 'D'}
#define HELP_OPTION {"help", no_argument, 0, 'h'}
#define DB_HELP "  --db URL        SQLite file or postgresql:// URL (default $JOBMATCH_DB or " DEFAULT_DB ")\n"

/* The options of a command that takes only --db and --help: sets *url and
 * returns -1 to go on, or the exit status (0 after --help, 2 on bad usage). */
static int parse_db_only(int argc, char **argv, const char *help, const char **url)
{
    static const struct option opts[] = {DB_OPTION, HELP_OPTION, {0, 0, 0, 0}};
    int c;
    *url = cli_default_db();
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'D') {
            *url = optarg;
        } else if (c == 'h') {
            fputs(help, stdout);
            return 0;
        } else {
            return 2;
        }
    }
    return -1;
}

/* ---------- migrate ---------- */

int cmd_migrate(int argc, char **argv)
{
    const char *url;
    int status = parse_db_only(argc, argv,
                           "usage: jobmatch migrate [--db URL]\n\nCreate the store's tables, or bring them to the current "
                   "schema version\n(in one transaction; a no-op when up to date).\n\n" DB_HELP, &url);
    if (status >= 0)
        return status;
    db *d = NULL;
    if (open_db(url, &d)) return 1;
    int v = 0;
    jm_err err = {0};
    db_schema_version(d, &v, &err);
    printf("%s (%s): schema version %d\n", db_display_url(d), db_kind(d), v);
    db_close(d);
    return 0;
}

/* ---------- import ---------- */

static void report_bad(void *ctx, int64_t line, const char *reason)
{
    const char *file = ctx;
    fprintf(stderr, "%s:%lld: %s\n", file, (long long)line, reason);
}

int cmd_import(int argc, char **argv)
{
    static const struct option opts[] = {DB_OPTION, HELP_OPTION, {"format", required_argument, 0, 'f'}, {0, 0, 0, 0}};
    const char *url = cli_default_db();
    int c, fmt = IMP_AUTO;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'D') url = optarg;
        else if (c == 'f') {
            fmt = imp_format_parse(optarg);
            if (fmt < 0) {
                fprintf(stderr, "jobmatch: --format must be csv, jsonl or auto\n");
                return 2;
            }
        } else if (c == 'h') {
            printf("usage: jobmatch import [--db URL] [--format csv|jsonl|auto] FILE...\n\n"
                   "Upsert jobs by id from CSV (RFC 4180, header row) or JSON Lines files (\"-\" reads\n"
                   "standard input). Columns: id, title, company, location, remote, salary_min,\n"
                   "salary_max, currency, employment_type, seniority, description, skills, posted_at;\n"
                   "others are ignored. A changed row gets a new text, so its embedding becomes stale.\n"
                   "Bad rows are reported as FILE:LINE: reason and skipped; the exit status is 3 when\n"
                   "any row failed, 1 on an error that stopped the import.\n\n" DB_HELP
                   "  --format F      csv, jsonl or auto (by extension, then content; default auto)\n");
            return 0;
        } else return 2;
    }
    if (optind >= argc) {
        fprintf(stderr, "jobmatch: import needs a FILE (see jobmatch import --help)\n");
        return 2;
    }
    db *d = NULL;
    if (open_db(url, &d)) return 1;
    int rc = 0;
    for (int i = optind; i < argc; i++) {
        imp_stats st = {0};
        jm_err err = {0};
        double t0 = jm_now();
        int r = imp_file(d, argv[i], fmt, report_bad, argv[i], &st, &err);
        printf("%s: %lld rows read, %lld imported (%lld new or changed), %lld failed, %.2f s\n", argv[i],
               (long long)st.read, (long long)st.imported, (long long)st.changed, (long long)st.failed,
               jm_now() - t0);
        if (r) {
            fprintf(stderr, "jobmatch: %s\n", err.msg);
            rc = 1;
            break;
        }
        if (st.failed && rc == 0)
            rc = 3;
    }
    db_close(d);
    return rc;
}

int cmd_import_onet(int argc, char **argv)
{
    const char *url;
    int status = parse_db_only(argc, argv,
                           "usage: jobmatch import-onet [--db URL] [DIR]\n\n"
                   "Import one job per O*NET occupation from DIR (default ../shared/data/onet):\n"
                   "\"Occupation Data.txt\" (title, description) and \"Technology Skills.txt\" (skills;\n"
                   "hot or in-demand technologies are marked required). The demo and test corpus.\n"
                   "O*NET 28 Database by USDOL/ETA, used under the CC BY 4.0 license.\n\n" DB_HELP, &url);
    if (status >= 0)
        return status;
    const char *dir = optind < argc ? argv[optind] : "../shared/data/onet";
    db *d = NULL;
    if (open_db(url, &d)) return 1;
    imp_stats st = {0};
    jm_err err = {0};
    double t0 = jm_now();
    int r = imp_onet(d, dir, &st, &err);
    printf("%s: %lld occupations imported (%lld new or changed), %lld failed, %.2f s\n", dir,
           (long long)st.imported, (long long)st.changed, (long long)st.failed, jm_now() - t0);
    if (r) fprintf(stderr, "jobmatch: %s\n", err.msg);
    db_close(d);
    return r ? 1 : st.failed ? 3 : 0;
}

/* ---------- attach, template ---------- */

int cmd_attach(int argc, char **argv)
{
    static const struct option opts[] = {DB_OPTION, HELP_OPTION,
                                         {"table", required_argument, 0, 't'},
                                         {"id-column", required_argument, 0, 'i'},
                                         {"text-columns", required_argument, 0, 'x'},
                                         {"skills-column", required_argument, 0, 's'},
                                         {"template", required_argument, 0, 'T'},
                                         {0, 0, 0, 0}};
    const char *url = cli_default_db(), *table = NULL, *idc = "id", *text = NULL, *skills = NULL, *tpl = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'D': url = optarg; break;
        case 't': table = optarg; break;
        case 'i': idc = optarg; break;
        case 'x': text = optarg; break;
        case 's': skills = optarg; break;
        case 'T': tpl = optarg; break;
        case 'h':
            printf("usage: jobmatch attach --table T [--id-column C] --text-columns A,B,... [--skills-column S]\n"
                   "                       [--template TEXT] [--db URL]\n\n"
                   "Work on an existing jobs table in place (e.g. a job board's table on PostgreSQL).\n"
                   "Adds the columns embedding, text_hash and embedding_model if they are missing\n"
                   "(ADD COLUMN IF NOT EXISTS) and records the mapping in the meta table; the\n"
                   "table's rows are not copied or rewritten. Later commands (embed, status, ...)\n"
                   "use that table.\n\n" DB_HELP
                   "  --table T            the table\n"
                   "  --id-column C        its primary key column (default id)\n"
                   "  --text-columns L     columns whose text is embedded, joined with \". \"\n"
                   "  --skills-column S    column listing the job's skills (JSON array, {a,b} or \"a, b\")\n"
                   "  --template TEXT      the job text instead, e.g. \"{title}. {skills}. {description}\"\n");
            return 0;
        default: return 2;
        }
    }
    if (!table) {
        fprintf(stderr, "jobmatch: attach needs --table (see jobmatch attach --help)\n");
        return 2;
    }
    db *d = NULL;
    if (open_db(url, &d)) return 1;
    jm_err err = {0};
    int r = db_attach(d, table, idc, text, skills, tpl, &err);
    if (r) {
        fprintf(stderr, "jobmatch: %s\n", err.msg);
    } else {
        db_source s;
        db_source_get(d, &s, &err);
        printf("attached %s: id column %s, skills column %s, text \"%s\"\n", s.table, s.id_col,
               s.skills_col[0] ? s.skills_col : "(none)", s.template_);
    }
    db_close(d);
    return r ? 1 : 0;
}

int cmd_template(int argc, char **argv)
{
    const char *url;
    int status = parse_db_only(argc, argv,
                           "usage: jobmatch template [--db URL] [TEXT]\n\n"
                   "Show, or set, the job text that is embedded: {column} placeholders and literal\n"
                   "text (\"{{\" and \"}}\" for braces). The default for jobmatch's own table is\n"
                   "\"" DB_DEFAULT_TEMPLATE "\". Changing it makes every job's\n"
                   "embedding stale (its text hash changes), so the next embed redoes them.\n\n" DB_HELP, &url);
    if (status >= 0)
        return status;
    db *d = NULL;
    if (open_db(url, &d)) return 1;
    jm_err err = {0};
    int r = 0;
    if (optind < argc && (r = db_set_template(d, argv[optind], &err)))
        fprintf(stderr, "jobmatch: %s\n", err.msg);
    db_source s;
    if (!r && !db_source_get(d, &s, &err))
        printf("%s\n", s.template_);
    db_close(d);
    return r ? 1 : 0;
}

/* ---------- embed ---------- */

int cmd_embed(int argc, char **argv)
{
    static const struct option opts[] = {DB_OPTION, HELP_OPTION,
                                         {"model", required_argument, 0, 'm'},
                                         {"threads", required_argument, 0, 't'},
                                         {"batch", required_argument, 0, 'b'},
                                         {"limit", required_argument, 0, 'l'},
                                         {"dry-run", no_argument, 0, 'n'},
                                         {"no-skills", no_argument, 0, 'S'},
                                         {"progress", required_argument, 0, 'p'},
                                         {0, 0, 0, 0}};
    const char *url = cli_default_db(), *model = cli_default_model(), *prog = "auto";
    long threads = 0, batch = 64, limit = 0;
    ej_opts o = {0};
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'D': url = optarg; break;
        case 'm': model = optarg; break;
        case 't': if (cli_parse_int(optarg, "--threads", 0, 256, &threads)) return 2; break;
        case 'b': if (cli_parse_int(optarg, "--batch", 1, 100000, &batch)) return 2; break;
        case 'l': if (cli_parse_int(optarg, "--limit", 0, 1L << 40, &limit)) return 2; break;
        case 'n': o.dry_run = 1; break;
        case 'S': o.skip_skills = 1; break;
        case 'p': prog = optarg; break;
        case 'h':
            printf("usage: jobmatch embed [--db URL] [--model DIR] [--threads N] [--batch N] [--limit N]\n"
                   "                      [--dry-run] [--no-skills] [--progress auto|bar|log|none]\n\n"
                   "Embed exactly the jobs whose embedding is missing or stale (their text changed,\n"
                   "or it was made by another model), then every skill without a current embedding.\n"
                   "Work is claimed in batches, one transaction each: a crash or kill loses at most\n"
                   "the batch in flight, and running embed again continues. On PostgreSQL several\n"
                   "embed processes (on any machines) share the work: each claims rows with\n"
                   "SELECT ... FOR UPDATE SKIP LOCKED.\n\n" DB_HELP
                   "  --model DIR     model directory (default $JOBMATCH_MODEL or " DEFAULT_MODEL ")\n"
                   "  --threads N     threads for the model, 0 = all cores (default 0)\n"
                   "  --batch N       jobs per batch and transaction (default 64)\n"
                   "  --limit N       stop after N jobs (default: all)\n"
                   "  --dry-run       only count what would be embedded\n"
                   "  --no-skills     leave the skills table alone\n"
                   "  --progress P    bar on a terminal, log lines otherwise (auto), or force one\n");
            return 0;
        default: return 2;
        }
    }
    if (!strcmp(prog, "auto")) o.progress = isatty(STDOUT_FILENO) ? EJ_BAR : EJ_LOG;
    else if (!strcmp(prog, "bar")) o.progress = EJ_BAR;
    else if (!strcmp(prog, "log")) o.progress = EJ_LOG;
    else if (!strcmp(prog, "none")) o.progress = EJ_QUIET;
    else {
        fprintf(stderr, "jobmatch: --progress must be auto, bar, log or none\n");
        return 2;
    }
    o.batch = (int)batch;
    o.limit = limit;
    o.out = stdout;
    jm_err err = {0};
    db *d = NULL;
    bert_model *m = NULL;
    bert_pool *pool = NULL;
    if (open_db(url, &d)) return 1;
    int rc = 1;
    if (bert_load(model, &m, &err) || bert_pool_new(m, (int)threads, &pool, &err)) {
        fprintf(stderr, "jobmatch: %s\n", err.msg);
        goto out;
    }
    ej_stats st;
    int r = ej_run(d, pool, bert_model_id(m), bert_dim(m), &o, &st, &err);
    if (o.dry_run) {
        printf("%s: %lld jobs would be embedded; %lld skills lack an embedding (new skills are added at embed time)\n",
               db_display_url(d), (long long)st.pending_jobs, (long long)st.pending_skills);
    } else {
        double model_s = st.secs - st.db_secs;
        printf("embedded %lld jobs and %lld skills (%lld new) in %.2f s: %.1f jobs/s, %.0f tokens/s; "
               "database %.2f s (%.1f%%), model %.2f s, %d threads\n",
               (long long)st.jobs_done, (long long)st.skills_done, (long long)st.new_skills, st.secs,
               st.secs > 0 ? st.jobs_done / st.secs : 0.0, model_s > 0 ? st.tokens / model_s : 0.0, st.db_secs,
               st.secs > 0 ? 100 * st.db_secs / st.secs : 0.0, model_s, bert_pool_threads(pool));
    }
    if (r) {
        fprintf(stderr, "jobmatch: %s\n", err.msg);
        fprintf(stderr, "jobmatch: committed batches are kept; run embed again to continue\n");
    } else {
        rc = 0;
    }
out:
    bert_pool_free(pool);
    bert_free(m);
    db_close(d);
    return rc;
}

/* ---------- status ---------- */

int cmd_status(int argc, char **argv)
{
    static const struct option opts[] = {DB_OPTION, HELP_OPTION, {"model", required_argument, 0, 'm'},
                                         {"json", no_argument, 0, 'j'}, {0, 0, 0, 0}};
    const char *url = cli_default_db(), *model = cli_default_model();
    int c, json = 0;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'D') url = optarg;
        else if (c == 'm') model = optarg;
        else if (c == 'j') json = 1;
        else if (c == 'h') {
            printf("usage: jobmatch status [--db URL] [--model DIR] [--json]\n\n"
                   "Print the job count, how many are embedded, stale and missing for the model,\n"
                   "the skills, the schema version and the database size.\n\n" DB_HELP
                   "  --model DIR     the model whose embeddings count as current (only its\n"
                   "                  directory name is used: the model id)\n"
                   "  --json          one JSON object instead of text\n");
            return 0;
        } else return 2;
    }
    /* The model id is the directory's name; loading the model is not needed. */
    char id[256];
    size_t l = strlen(model);
    while (l > 1 && model[l - 1] == '/') l--;
    size_t s = l;
    while (s > 0 && model[s - 1] != '/') s--;
    snprintf(id, sizeof id, "%.*s", (int)(l - s), model + s);
    db *d = NULL;
    if (open_db(url, &d)) return 1;
    jm_err err = {0};
    db_counts cn;
    int v = 0;
    int64_t size = 0;
    db_source src;
    int r = db_counts_get(d, id, &cn, &err);
    if (!r) r = db_schema_version(d, &v, &err);
    if (!r) r = db_size(d, &size, &err);
    if (!r) r = db_source_get(d, &src, &err);
    if (r) {
        fprintf(stderr, "jobmatch: %s\n", err.msg);
        db_close(d);
        return 1;
    }
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "database", db_display_url(d));
        cJSON_AddStringToObject(o, "backend", db_kind(d));
        cJSON_AddNumberToObject(o, "schema_version", v);
        cJSON_AddStringToObject(o, "table", src.table);
        cJSON_AddBoolToObject(o, "attached", src.attached);
        cJSON_AddStringToObject(o, "model", id);
        cJSON_AddNumberToObject(o, "jobs", (double)cn.jobs);
        cJSON_AddNumberToObject(o, "embedded", (double)cn.embedded);
        cJSON_AddNumberToObject(o, "stale", (double)cn.stale);
        cJSON_AddNumberToObject(o, "missing", (double)cn.missing);
        cJSON_AddNumberToObject(o, "skills", (double)cn.skills);
        cJSON_AddNumberToObject(o, "skills_pending", (double)cn.skills_pending);
        cJSON_AddNumberToObject(o, "size_bytes", (double)size);
        char *t = cJSON_PrintUnformatted(o);
        if (t)
            printf("%s\n", t);
        free(t);
        cJSON_Delete(o);
    } else {
        printf("database        %s (%s, schema version %d)\n", db_display_url(d), db_kind(d), v);
        printf("jobs table      %s%s\n", src.table, src.attached ? " (attached)" : "");
        printf("model           %s\n", id);
        printf("jobs            %lld\n", (long long)cn.jobs);
        printf("  embedded      %lld\n", (long long)cn.embedded);
        printf("  stale         %lld\n", (long long)cn.stale);
        printf("  missing       %lld\n", (long long)cn.missing);
        printf("skills          %lld (%lld without a current embedding)\n", (long long)cn.skills,
               (long long)cn.skills_pending);
        printf("size            %.1f MB\n", size / 1e6);
    }
    db_close(d);
    return 0;
}

/* ---------- get-embedding ---------- */

int cmd_get_embedding(int argc, char **argv)
{
    const char *url;
    int status = parse_db_only(argc, argv,
                           "usage: jobmatch get-embedding [--db URL] ID...\n\n"
                   "Print the stored embedding of each job as one JSON array (9 significant digits,\n"
                   "enough to give back the exact float32 values), or null when it has none.\n\n" DB_HELP, &url);
    if (status >= 0)
        return status;
    if (optind >= argc) {
        fprintf(stderr, "jobmatch: get-embedding needs a job ID\n");
        return 2;
    }
    db *d = NULL;
    if (open_db(url, &d)) return 1;
    int rc = 0;
    for (int i = optind; i < argc && !rc; i++) {
        float *v = NULL;
        int dim = 0;
        char *model = NULL;
        jm_err err = {0};
        if (db_get_job_embedding(d, argv[i], &v, &dim, &model, &err)) {
            fprintf(stderr, "jobmatch: %s\n", err.msg);
            rc = 1;
            break;
        }
        if (!v) {
            puts("null");
        } else {
            putchar('[');
            for (int k = 0; k < dim; k++)
                printf(k ? ",%.9g" : "%.9g", (double)v[k]);
            puts("]");
        }
        free(v);
        free(model);
    }
    db_close(d);
    return rc;
}
