/* cmd_serve.c - `jobmatch serve`: options (each also an environment
 * variable), the first-run O*NET set-up, signals, and the server's life. */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "embedjob.h"
#include "import.h"
#include "server.h"

static void usage(void)
{
    printf("usage: jobmatch serve [--db URL] [--host ADDR] [--port N] [--threads N] [options]\n\n"
           "Serve the recommendation and skill-gap APIs over HTTP (docs/api.md; the OpenAPI\n"
           "document is at /openapi.json) and a web page at /. Listens on loopback unless told\n"
           "otherwise. SIGTERM or SIGINT stop it gracefully: no new connections, requests in\n"
           "flight finish, then the database is closed. Every option has an environment variable.\n\n"
           "  --db URL              SQLite file or postgresql:// URL   JOBMATCH_DB (default " DEFAULT_DB ")\n"
           "  --model DIR           model directory                    JOBMATCH_MODEL (default " DEFAULT_MODEL ")\n"
           "  --host ADDR           address to listen on               JOBMATCH_HOST (default 127.0.0.1)\n"
           "  --port N              port, 0 = any free one             JOBMATCH_PORT (default 8080)\n"
           "  --threads N           compute workers                    JOBMATCH_THREADS (default: CPUs)\n"
           "  --api-keys-file FILE  bearer keys, one per line          JOBMATCH_API_KEYS_FILE\n"
           "                        (JOBMATCH_API_KEYS: comma-separated keys; writes need a key)\n"
           "  --auth-reads          /v1/ reads need a key too          JOBMATCH_AUTH_READS=1\n"
           "  --access-log FILE     JSON lines, - = stderr, off        JOBMATCH_ACCESS_LOG (default -)\n"
           "  --max-connections N   open connections at most           JOBMATCH_MAX_CONNECTIONS (256)\n"
           "  --queue N             requests waiting for a worker      JOBMATCH_QUEUE (128)\n"
           "  --queue-timeout-ms N  longest wait for a worker          JOBMATCH_QUEUE_TIMEOUT_MS (5000)\n"
           "  --timeout SECS        idle connection timeout            JOBMATCH_TIMEOUT (30)\n"
           "  --index MODE          memory or stream                   JOBMATCH_INDEX (memory)\n"
           "  --refresh-secs S      follow database changes every S    JOBMATCH_REFRESH_SECS (5)\n"
           "  --snapshot PATH|off   engine snapshot file               JOBMATCH_SNAPSHOT (default: DB.snapshot\n"
           "                        beside a SQLite file, none for PostgreSQL): read at start when it\n"
           "                        fits the store; written after a start that had to scan, every 10\n"
           "                        minutes while the store changes, and at a clean stop\n"
           "  --onet DIR            when the store has no jobs, import JOBMATCH_ONET\n"
           "                        the O*NET occupations from DIR and embed them first\n");
}

static const char *env_or(const char *name, const char *dflt)
{
    const char *v = getenv(name);
    return v && *v ? v : dflt;
}

/* First run: an empty store gets the O*NET demo corpus, embedded. */
static int first_run(const char *url, const char *model_dir, const char *dir, int threads)
{
    jm_err err = {0};
    db *d = NULL;
    db_counts n;
    int rc = 1;
    bert_model *m = NULL;
    bert_pool *pool = NULL;
    if (db_open(url, &d, &err) || bert_load(model_dir, &m, &err) ||
        db_counts_get(d, bert_model_id(m), &n, &err)) {
        fprintf(stderr, "jobmatch: %s\n", err.msg);
        goto out;
    }
    if (n.jobs == 0) {
        imp_stats st;
        fprintf(stderr, "jobmatch: first run: importing the O*NET occupations from %s\n", dir);
        if (imp_onet(d, dir, &st, &err)) {
            fprintf(stderr, "jobmatch: %s\n", err.msg);
            goto out;
        }
        fprintf(stderr, "jobmatch: imported %lld jobs\n", (long long)st.imported);
    }
    if (n.jobs == 0 || n.missing + n.stale > 0 || n.skills_pending > 0) {
        ej_opts o = {.batch = 64, .progress = EJ_LOG, .out = stderr};
        ej_stats es;
        if (bert_pool_new(m, threads, &pool, &err) ||
            ej_run(d, pool, bert_model_id(m), bert_dim(m), &o, &es, &err)) {
            fprintf(stderr, "jobmatch: %s\n", err.msg);
            goto out;
        }
        fprintf(stderr, "jobmatch: embedded %lld jobs and %lld skills in %.1f s\n", (long long)es.jobs_done,
                (long long)es.skills_done, es.secs);
    }
    rc = 0;
out:
    bert_pool_free(pool);
    bert_free(m);
    db_close(d);
    return rc;
}

enum { O_DB = 1000, O_MODEL, O_HOST, O_PORT, O_THREADS, O_KEYS, O_AUTHR, O_LOG, O_MAXC, O_QUEUE, O_QTO, O_TO,
       O_INDEX, O_REFRESH, O_ONET, O_SNAP, O_HELP };

int cmd_serve(int argc, char **argv)
{
    static const struct option opts[] = {
        {"db", required_argument, 0, O_DB},          {"model", required_argument, 0, O_MODEL},
        {"host", required_argument, 0, O_HOST},      {"port", required_argument, 0, O_PORT},
        {"threads", required_argument, 0, O_THREADS}, {"api-keys-file", required_argument, 0, O_KEYS},
        {"auth-reads", no_argument, 0, O_AUTHR},     {"access-log", required_argument, 0, O_LOG},
        {"max-connections", required_argument, 0, O_MAXC}, {"queue", required_argument, 0, O_QUEUE},
        {"queue-timeout-ms", required_argument, 0, O_QTO}, {"timeout", required_argument, 0, O_TO},
        {"index", required_argument, 0, O_INDEX},    {"refresh-secs", required_argument, 0, O_REFRESH},
        {"onet", required_argument, 0, O_ONET},      {"help", no_argument, 0, O_HELP},
        {"snapshot", required_argument, 0, O_SNAP},
        {0, 0, 0, 0}};
    srv_config c;
    srv_config_default(&c);
    /* environment first, options override */
    const char *port = env_or("JOBMATCH_PORT", NULL), *threads = env_or("JOBMATCH_THREADS", NULL),
               *keys_file = env_or("JOBMATCH_API_KEYS_FILE", NULL), *log = env_or("JOBMATCH_ACCESS_LOG", "-"),
               *maxc = env_or("JOBMATCH_MAX_CONNECTIONS", NULL), *queue = env_or("JOBMATCH_QUEUE", NULL),
               *qto = env_or("JOBMATCH_QUEUE_TIMEOUT_MS", NULL), *to = env_or("JOBMATCH_TIMEOUT", NULL),
               *index = env_or("JOBMATCH_INDEX", "memory"), *refresh = env_or("JOBMATCH_REFRESH_SECS", NULL),
               *onet = env_or("JOBMATCH_ONET", NULL), *authr = env_or("JOBMATCH_AUTH_READS", NULL),
               *snapshot = NULL;
    static char snapbuf[4096];
    c.db_url = cli_default_db();
    c.model_dir = cli_default_model();
    c.host = env_or("JOBMATCH_HOST", c.host);
    c.auth_reads = authr && strcmp(authr, "0") && strcmp(authr, "false");
    int ch;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case O_DB: c.db_url = optarg; break;
        case O_MODEL: c.model_dir = optarg; break;
        case O_HOST: c.host = optarg; break;
        case O_PORT: port = optarg; break;
        case O_THREADS: threads = optarg; break;
        case O_KEYS: keys_file = optarg; break;
        case O_AUTHR: c.auth_reads = 1; break;
        case O_LOG: log = optarg; break;
        case O_MAXC: maxc = optarg; break;
        case O_QUEUE: queue = optarg; break;
        case O_QTO: qto = optarg; break;
        case O_TO: to = optarg; break;
        case O_INDEX: index = optarg; break;
        case O_REFRESH: refresh = optarg; break;
        case O_ONET: onet = optarg; break;
        case O_SNAP: snapshot = optarg; break;
        case 'h':
        case O_HELP: usage(); return 0;
        default: return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "jobmatch: serve takes no arguments (got \"%s\")\n", argv[optind]);
        return 2;
    }
    long v;
    if (port) { if (cli_parse_int(port, "--port", 0, 65535, &v)) return 2; c.port = (int)v; }
    if (threads) { if (cli_parse_int(threads, "--threads", 1, 256, &v)) return 2; c.threads = (int)v; }
    if (maxc) { if (cli_parse_int(maxc, "--max-connections", 1, 100000, &v)) return 2; c.max_connections = (int)v; }
    if (queue) { if (cli_parse_int(queue, "--queue", 0, 100000, &v)) return 2; c.queue = (int)v; }
    if (qto) { if (cli_parse_int(qto, "--queue-timeout-ms", 0, 600000, &v)) return 2; c.queue_timeout_ms = (int)v; }
    if (to) { if (cli_parse_int(to, "--timeout", 1, 3600, &v)) return 2; c.timeout_secs = (int)v; }
    if (refresh) {
        char *end;
        errno = 0;
        double r = strtod(refresh, &end);
        if (errno || end == refresh || *end || r < 0 || r > 86400) {
            fprintf(stderr, "jobmatch: --refresh-secs must be a number of seconds from 0 to 86400\n");
            return 2;
        }
        c.rank.refresh_secs = r;
    }
    if (!strcmp(index, "memory")) c.rank.index_mode = RANK_INDEX_MEMORY;
    else if (!strcmp(index, "stream")) c.rank.index_mode = RANK_INDEX_STREAM;
    else {
        fprintf(stderr, "jobmatch: --index must be memory or stream\n");
        return 2;
    }
    c.rank.snapshot = cli_snapshot_path(c.db_url, snapshot, snapbuf, sizeof snapbuf);
    jm_err err = {0};
    char **keys = NULL;
    int nkeys = 0, rc = 1;
    FILE *alog = NULL;
    if (srv_keys_from_list(getenv("JOBMATCH_API_KEYS"), &keys, &nkeys, &err) ||
        (keys_file && srv_keys_from_file(keys_file, &keys, &nkeys, &err))) {
        fprintf(stderr, "jobmatch: API keys: %s\n", err.msg);
        srv_keys_free(keys, nkeys);
        return 2;
    }
    c.api_keys = keys;
    c.napi_keys = nkeys;
    if (!strcmp(log, "-")) {
        c.access_log = stderr;
    } else if (strcmp(log, "off")) {
        if (!(alog = fopen(log, "a"))) {
            fprintf(stderr, "jobmatch: cannot open the access log %s: %s\n", log, strerror(errno));
            srv_keys_free(keys, nkeys);
            return 1;
        }
        c.access_log = alog;
    }
    /* One malloc arena per core rather than per thread: with a thread per
     * connection, glibc would otherwise keep up to 8 arenas per core, each
     * holding freed memory, and the resident size would creep up. */
    mallopt(M_ARENA_MAX, 2);
    if (onet && first_run(c.db_url, c.model_dir, onet, c.threads))
        goto out;

    /* The signals are taken by this thread alone (sigwait): every thread the
     * server starts inherits the blocked mask. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    srv *s = NULL;
    if (srv_start(&c, &s, &err)) {
        fprintf(stderr, "jobmatch: %s\n", err.msg);
        goto out;
    }
    int sig = 0;
    sigwait(&set, &sig);
    fprintf(stderr, "jobmatch: %s: stopping (requests in flight finish first)\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    srv_stop(s, 30);
    fprintf(stderr, "jobmatch: stopped\n");
    rc = 0;
out:
    srv_keys_free(keys, nkeys);
    if (alog)
        fclose(alog);
    return rc;
}
