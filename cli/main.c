/* jobmatch - command-line front end. Each subcommand parses its options,
 * calls the library and prints; no logic lives here that the library lacks. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bert.h"
#include "cli.h"
#include "common.h"
#include "db.h"
#include "kernels.h"
#include "tokenizer.h"

const char *cli_default_model(void)
{
    const char *e = getenv("JOBMATCH_MODEL");
    return e && *e ? e : DEFAULT_MODEL;
}

const char *cli_default_db(void)
{
    const char *e = getenv("JOBMATCH_DB");
    return e && *e ? e : DEFAULT_DB;
}

const char *cli_snapshot_path(const char *db_url, const char *opt, char *buf, size_t cap)
{
    const char *e = getenv("JOBMATCH_SNAPSHOT");
    const char *p = opt && *opt ? opt : e && *e ? e : NULL;
    if (p) {
        if (!strcmp(p, "off"))
            return NULL;
        snprintf(buf, cap, "%s", p);
        return buf;
    }
    const char *file = db_sqlite_path(db_url);
    if (!file || !strcmp(file, ":memory:"))
        return NULL;
    if ((size_t)snprintf(buf, cap, "%s.snapshot", file) >= cap)
        return NULL;
    return buf;
}

int cli_parse_int(const char *s, const char *what, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "jobmatch: %s must be an integer in [%ld, %ld], got \"%s\"\n", what, lo, hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

/* ---------- embed-text ---------- */

static void usage_embed_text(FILE *f)
{
    fprintf(f,
            "usage: jobmatch embed-text [--model DIR] [--threads N] [--tokens] [TEXT...]\n"
            "\n"
            "Embed each TEXT with the sentence-transformers model and print one JSON array\n"
            "of floats per text, in order. With no TEXT, read texts from standard input, one\n"
            "per line (a trailing \\r is dropped), so thousands of texts go through one process.\n"
            "\n"
            "  --model DIR    model directory (default $JOBMATCH_MODEL or " DEFAULT_MODEL ")\n"
            "  --threads N    worker threads for batches; 0 = all cores (default 0)\n"
            "  --tokens       print the token ids ([CLS] ... [SEP], truncated to the model's\n"
            "                 max_seq_length) instead of the embedding\n"
            "  --batch N      texts per batch when reading standard input (default 256)\n"
            "  -h, --help     this text\n");
}

typedef struct et_state {
    int tokens_only;
    const tok_tokenizer *tok;
    int max_seq;
    bert_pool *pool;
    int dim;
    float *vec;
    int32_t *ids;
    char *obuf;
    size_t ocap;
} et_state;

static int et_flush(et_state *s, int n, const char *const *texts, const size_t *lens)
{
    jm_err err = {0};
    if (s->tokens_only) {
        for (int i = 0; i < n; i++) {
            int k = tok_encode(s->tok, texts[i], lens[i], s->ids, s->max_seq);
            if (k < 0) {
                fprintf(stderr, "jobmatch: tokenizer error %d\n", k);
                return 1;
            }
            putchar('[');
            for (int t = 0; t < k; t++)
                printf(t ? ",%d" : "%d", s->ids[t]);
            fputs("]\n", stdout);
        }
        return 0;
    }
    if (bert_embed(s->pool, n, texts, lens, s->vec, NULL, &err)) {
        fprintf(stderr, "jobmatch: %s\n", err.msg);
        return 1;
    }
    for (int i = 0; i < n; i++) {
        const float *v = s->vec + (size_t)i * s->dim;
        putchar('[');
        for (int d = 0; d < s->dim; d++)
            printf(d ? ",%.9g" : "%.9g", (double)v[d]);
        fputs("]\n", stdout);
    }
    return 0;
}

static int cmd_embed_text(int argc, char **argv)
{
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'}, {"threads", required_argument, 0, 't'},
        {"tokens", no_argument, 0, 'k'},      {"batch", required_argument, 0, 'b'},
        {"help", no_argument, 0, 'h'},        {0, 0, 0, 0}};
    const char *model = cli_default_model();
    long threads = 0, batch = 256;
    int c, rc = 1;
    et_state s = {0};
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 't': if (cli_parse_int(optarg, "--threads", 0, 256, &threads)) return 2; break;
        case 'b': if (cli_parse_int(optarg, "--batch", 1, 1 << 20, &batch)) return 2; break;
        case 'k': s.tokens_only = 1; break;
        case 'h': usage_embed_text(stdout); return 0;
        default: usage_embed_text(stderr); return 2;
        }
    }
    jm_err err = {0};
    bert_model *m = NULL;
    if (bert_load(model, &m, &err) || (!s.tokens_only && bert_pool_new(m, (int)threads, &s.pool, &err))) {
        fprintf(stderr, "jobmatch: %s\n", err.msg);
        bert_free(m);
        return 1;
    }
    s.tok = bert_tokenizer(m);
    s.max_seq = bert_max_seq(m);
    s.dim = bert_dim(m);
    int cap = argc - optind > batch ? argc - optind : (int)batch;
    s.vec = malloc(sizeof(float) * (size_t)cap * (s.dim ? s.dim : 1));
    s.ids = malloc(sizeof(int32_t) * (size_t)(s.max_seq ? s.max_seq : 2));
    const char **texts = malloc(sizeof(char *) * (size_t)cap);
    size_t *lens = malloc(sizeof(size_t) * (size_t)cap);
    char **owned = calloc((size_t)cap, sizeof(char *));
    if (!s.vec || !s.ids || !texts || !lens || !owned) {
        fprintf(stderr, "jobmatch: out of memory\n");
        goto out;
    }
    if (optind < argc) {
        int n = argc - optind;
        for (int i = 0; i < n; i++) {
            texts[i] = argv[optind + i];
            lens[i] = strlen(texts[i]);
        }
        rc = et_flush(&s, n, texts, lens);
    } else {
        int n = 0;
        rc = 0;
        for (;;) {
            char *line = NULL;
            size_t lcap = 0;
            ssize_t len = getline(&line, &lcap, stdin);
            if (len < 0) {
                free(line);
                break;
            }
            if (len > 0 && line[len - 1] == '\n')
                len--;
            if (len > 0 && line[len - 1] == '\r')
                len--;
            owned[n] = line;
            texts[n] = line;
            lens[n] = (size_t)len;
            if (++n == batch) {
                rc = et_flush(&s, n, texts, lens);
                for (int i = 0; i < n; i++) {
                    free(owned[i]);
                    owned[i] = NULL;
                }
                n = 0;
                if (rc)
                    break;
            }
        }
        if (!rc && n)
            rc = et_flush(&s, n, texts, lens);
    }
    if (fflush(stdout) != 0) {
        fprintf(stderr, "jobmatch: write error: %s\n", strerror(errno));
        rc = 1;
    }
out:
    if (owned)
        for (int i = 0; i < cap; i++)
            free(owned[i]);
    free(owned);
    free(texts);
    free(lens);
    free(s.vec);
    free(s.ids);
    bert_pool_free(s.pool);
    bert_free(m);
    return rc;
}

/* ---------- dispatch ---------- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: jobmatch COMMAND [OPTIONS]\n"
            "\n"
            "jobmatch keeps job embeddings in a database (SQLite or PostgreSQL) and computes\n"
            "them with all-MiniLM-L6-v2 in plain C, equal to sentence-transformers.\n"
            "\n"
            "commands:\n"
            "  recommend    the jobs that fit a person's skills, explained\n"
            "  gap          skill gap for one job, or what to learn next\n"
            "  serve        the HTTP API and web page (docs/api.md)\n"
            "  import       upsert jobs from CSV or JSON Lines files\n"
            "  import-onet  import the O*NET occupations (the demo corpus)\n"
            "  attach       work on an existing jobs table in place\n"
            "  template     show or set the job text that is embedded\n"
            "  embed        embed the jobs and skills that are missing or stale\n"
            "  status       counts of embedded, stale and missing jobs; schema; size\n"
            "  migrate      create or upgrade the store's tables\n"
            "  get-embedding  print the stored embedding of jobs\n"
            "  embed-text   embed texts given as arguments or on standard input\n"
            "  version      print the version and the CPU kernels in use\n"
            "  help         this text; `jobmatch COMMAND --help` explains a command\n"
            "\n"
            "environment:\n"
            "  JOBMATCH_DB      database: SQLite file or postgresql:// URL (default " DEFAULT_DB ")\n"
            "  JOBMATCH_MODEL   model directory (default " DEFAULT_MODEL ")\n"
            "  JOBMATCH_ISA     \"scalar\" or \"avx2\" caps the SIMD kernels (default: the best the CPU has)\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
        k_init();
        printf("jobmatch " JM_VERSION " (kernels: %s, BLAS core: %s)\n", k_isa(), k_blas_core());
        return 0;
    }
    static const struct {
        const char *name;
        int (*fn)(int, char **);
    } cmds[] = {
        {"embed-text", cmd_embed_text}, {"import", cmd_import}, {"import-onet", cmd_import_onet},
        {"attach", cmd_attach},         {"template", cmd_template}, {"embed", cmd_embed},
        {"status", cmd_status},         {"migrate", cmd_migrate}, {"get-embedding", cmd_get_embedding},
        {"recommend", cmd_recommend},   {"gap", cmd_gap},          {"serve", cmd_serve},
    };
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (!strcmp(cmd, cmds[i].name))
            return cmds[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "jobmatch: unknown command \"%s\" (see jobmatch --help)\n", cmd);
    return 2;
}
