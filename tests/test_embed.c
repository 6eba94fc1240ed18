/* test_embed.c - the encoder against sentence-transformers, batch against
 * single, and damaged model directories.
 *
 * tests/fixtures/embeddings.jsonl holds {"hex": input bytes, "embedding": [...]}
 * written by tests/gen_fixtures.py from the real sentence-transformers. Every
 * reference must be matched with cosine >= 0.99999 and max |diff| <= 1e-4. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bert.h"
#include "check.h"
#include "common.h"

static const char *model_dir;

static int unhex(const char *h, char **out, size_t *len)
{
    size_t n = strlen(h);
    if (n % 2)
        return -1;
    char *b = malloc(n / 2 + 1);
    for (size_t i = 0; i < n / 2; i++) {
        unsigned v;
        if (sscanf(h + 2 * i, "%2x", &v) != 1) {
            free(b);
            return -1;
        }
        b[i] = (char)v;
    }
    b[n / 2] = 0;
    *out = b;
    *len = n / 2;
    return 0;
}

static void test_reference(bert_model *m)
{
    char *text = NULL;
    jm_err err = {0};
    int rc = jm_read_file("tests/fixtures/embeddings.jsonl", &text, NULL, &err);
    CHECK(rc == 0, "%s", err.msg);
    if (rc)
        return;
    int dim = bert_dim(m), cap = 1024, n = 0;
    char **texts = malloc(sizeof(char *) * cap);
    size_t *lens = malloc(sizeof(size_t) * cap);
    float *ref = malloc(sizeof(float) * (size_t)cap * dim);
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        cJSON *j = cJSON_Parse(line);
        const cJSON *hx = cJSON_GetObjectItem(j, "hex"), *e = cJSON_GetObjectItem(j, "embedding");
        if (!cJSON_IsString(hx) || !cJSON_IsArray(e) || cJSON_GetArraySize(e) != dim || n == cap) {
            CHECK(0, "bad fixture line %d", n + 1);
            cJSON_Delete(j);
            continue;
        }
        unhex(hx->valuestring, &texts[n], &lens[n]);
        for (int d = 0; d < dim; d++)
            ref[(size_t)n * dim + d] = (float)cJSON_GetArrayItem(e, d)->valuedouble;
        n++;
        cJSON_Delete(j);
    }
    free(text);
    CHECK(n >= 500, "only %d reference embeddings", n);

    float *got = malloc(sizeof(float) * (size_t)n * dim);
    bert_pool *p2 = NULL, *p1 = NULL;
    CHECK(bert_pool_new(m, 2, &p2, &err) == 0, "%s", err.msg);
    CHECK(bert_pool_new(m, 1, &p1, &err) == 0, "%s", err.msg);
    int64_t ntok = 0;
    rc = bert_embed(p2, n, (const char *const *)texts, lens, got, &ntok, &err);
    CHECK(rc == 0, "batch embed: %s", err.msg);
    double worst_cos = 1, worst_abs = 0;
    int bad = 0;
    for (int i = 0; i < n; i++) {
        double dot = 0, na = 0, nb = 0, mx = 0;
        for (int d = 0; d < dim; d++) {
            double a = got[(size_t)i * dim + d], b = ref[(size_t)i * dim + d];
            dot += a * b;
            na += a * a;
            nb += b * b;
            if (fabs(a - b) > mx)
                mx = fabs(a - b);
        }
        double cs = dot / sqrt(na * nb);
        if (cs < worst_cos)
            worst_cos = cs;
        if (mx > worst_abs)
            worst_abs = mx;
        if (!(cs >= 0.99999 && mx <= 1e-4) && bad++ < 5)
            fprintf(stderr, "reference %d (%zu bytes): cosine %.7f, max diff %.2e\n", i, lens[i], cs, mx);
    }
    CHECK(bad == 0, "%d of %d embeddings differ from sentence-transformers", bad, n);
    printf("test_embed: %d references, %lld tokens, worst cosine %.8f, worst max |diff| %.2e\n", n,
           (long long)ntok, worst_cos, worst_abs);

    /* Each text alone (1 thread) equals the same text inside the batch. */
    float *one = malloc(sizeof(float) * dim);
    double worst_single = 0;
    for (int i = 0; i < n; i += 3) {
        const char *t = texts[i];
        if (bert_embed(p1, 1, &t, &lens[i], one, NULL, &err)) {
            CHECK(0, "single embed %d: %s", i, err.msg);
            break;
        }
        for (int d = 0; d < dim; d++) {
            double df = fabs(one[d] - got[(size_t)i * dim + d]);
            if (df > worst_single)
                worst_single = df;
        }
    }
    CHECK(worst_single <= 1e-6, "single vs batch differ by %g", worst_single);
    printf("test_embed: single vs batch max |diff| %.2e\n", worst_single);

    /* The same batch in a different order gives the same vectors. */
    float *rev = malloc(sizeof(float) * (size_t)n * dim);
    char **rt = malloc(sizeof(char *) * n);
    size_t *rl = malloc(sizeof(size_t) * n);
    for (int i = 0; i < n; i++) {
        rt[i] = texts[n - 1 - i];
        rl[i] = lens[n - 1 - i];
    }
    CHECK(bert_embed(p2, n, (const char *const *)rt, rl, rev, NULL, &err) == 0, "%s", err.msg);
    double worst_rev = 0;
    for (int i = 0; i < n; i++)
        for (int d = 0; d < dim; d++) {
            double df = fabs(rev[(size_t)(n - 1 - i) * dim + d] - got[(size_t)i * dim + d]);
            if (df > worst_rev)
                worst_rev = df;
        }
    CHECK(worst_rev <= 1e-6, "reordered batch differs by %g", worst_rev);

    /* Normalised output has unit length. */
    if (bert_normalizes(m)) {
        double nn = 0;
        for (int d = 0; d < dim; d++)
            nn += (double)got[d] * got[d];
        CHECK(fabs(sqrt(nn) - 1) < 1e-5, "norm %g", sqrt(nn));
    }
    bert_pool_free(p1);
    bert_pool_free(p2);
    for (int i = 0; i < n; i++)
        free(texts[i]);
    free(texts); free(lens); free(ref); free(got); free(one); free(rev); free(rt); free(rl);
}

/* ---------- damaged model directories ---------- */

static char tmpdir[256];

static void write_file(const char *dir, const char *name, const char *data, size_t len)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    fwrite(data, 1, len, f);
    fclose(f);
}

/* A copy of the model dir in tmpdir/NAME with symlinks to the real files,
 * except those the test then overwrites. */
static void make_copy(const char *name, char *out, size_t cap)
{
    static const char *files[] = {"config.json", "model.safetensors", "vocab.txt", "tokenizer.json",
                                  "tokenizer_config.json", "special_tokens_map.json",
                                  "sentence_bert_config.json", "modules.json"};
    snprintf(out, cap, "%s/%s", tmpdir, name);
    mkdir(out, 0700);
    char real[4096], link[4096];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(real, sizeof real, "%s/%s", model_dir, files[i]);
        char *abs = realpath(real, NULL);
        snprintf(link, sizeof link, "%s/%s", out, files[i]);
        if (abs && symlink(abs, link)) {
        }
        free(abs);
    }
    snprintf(link, sizeof link, "%s/1_Pooling", out);
    mkdir(link, 0700);
    snprintf(real, sizeof real, "%s/1_Pooling/config.json", model_dir);
    char *abs = realpath(real, NULL);
    snprintf(link, sizeof link, "%s/1_Pooling/config.json", out);
    if (abs && symlink(abs, link)) {
    }
    free(abs);
}

static void replace(const char *dir, const char *name, const char *data)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    unlink(p);
    write_file(dir, name, data, strlen(data));
}

static void expect_refused(const char *dir, const char *what, const char *needle)
{
    bert_model *m = NULL;
    jm_err err = {0};
    int rc = bert_load(dir, &m, &err);
    CHECK(rc != 0 && m == NULL, "%s: model was accepted", what);
    CHECK(strstr(err.msg, needle) != NULL, "%s: message \"%s\" lacks \"%s\"", what, err.msg, needle);
    CHECK(strchr(err.msg, '\n') == NULL, "%s: message is not one line", what);
    bert_free(m);
}

static void test_damaged(void)
{
    char d[512], *cfg = NULL, p[600];
    jm_err err = {0};
    snprintf(p, sizeof p, "%s/config.json", model_dir);
    if (jm_read_file(p, &cfg, NULL, &err)) {
        CHECK(0, "%s", err.msg);
        return;
    }
    expect_refused("/nonexistent/model", "missing directory", "config.json");

    make_copy("shape", d, sizeof d);
    char *c2 = strdup(cfg), *at = strstr(c2, "\"intermediate_size\": 1536");
    if (at) memcpy(at, "\"intermediate_size\": 1535", 25);
    replace(d, "config.json", c2);
    expect_refused(d, "intermediate_size mismatch", "expected F32 [1535, 384]");
    free(c2);

    make_copy("act", d, sizeof d);
    c2 = strdup(cfg);
    at = strstr(c2, "\"gelu\"");
    if (at) memcpy(at, "\"relu\"", 6);
    replace(d, "config.json", c2);
    expect_refused(d, "relu activation", "hidden_act");
    free(c2);

    make_copy("notjson", d, sizeof d);
    replace(d, "config.json", "{\"hidden_size\": 384,");
    expect_refused(d, "config not JSON", "config.json");

    make_copy("heads", d, sizeof d);
    c2 = strdup(cfg);
    at = strstr(c2, "\"num_attention_heads\": 12");
    if (at) memcpy(at, "\"num_attention_heads\": 7 ", 25);
    replace(d, "config.json", c2);
    expect_refused(d, "heads do not divide hidden", "num_attention_heads");
    free(c2);

    make_copy("nosafetensors", d, sizeof d);
    snprintf(p, sizeof p, "%s/model.safetensors", d);
    unlink(p);
    expect_refused(d, "missing weights", "model.safetensors");

    make_copy("truncated", d, sizeof d);
    snprintf(p, sizeof p, "%s/model.safetensors", model_dir);
    char *w = NULL;
    size_t wl = 0;
    if (jm_read_file(p, &w, &wl, &err) == 0) {
        snprintf(p, sizeof p, "%s/model.safetensors", d);
        unlink(p);
        write_file(d, "model.safetensors", w, wl / 2);
        expect_refused(d, "truncated weights", "model.safetensors");
        free(w);
    }

    make_copy("novocab", d, sizeof d);
    snprintf(p, sizeof p, "%s/vocab.txt", d);
    unlink(p);
    expect_refused(d, "missing vocab", "vocab.txt");

    make_copy("dense", d, sizeof d);
    replace(d, "modules.json",
            "[{\"idx\":0,\"name\":\"0\",\"path\":\"\",\"type\":\"sentence_transformers.models.Transformer\"},"
            "{\"idx\":1,\"name\":\"1\",\"path\":\"1_Pooling\",\"type\":\"sentence_transformers.models.Pooling\"},"
            "{\"idx\":2,\"name\":\"2\",\"path\":\"2_Dense\",\"type\":\"sentence_transformers.models.Dense\"}]");
    expect_refused(d, "Dense module", "Dense");

    /* CLS pooling without Normalize loads, and gives the first token's state. */
    make_copy("cls", d, sizeof d);
    replace(d, "modules.json",
            "[{\"idx\":0,\"name\":\"0\",\"path\":\"\",\"type\":\"sentence_transformers.models.Transformer\"},"
            "{\"idx\":1,\"name\":\"1\",\"path\":\"1_Pooling\",\"type\":\"sentence_transformers.models.Pooling\"}]");
    replace(d, "1_Pooling/config.json", "{\"word_embedding_dimension\": 384, \"pooling_mode_cls_token\": true}");
    bert_model *m = NULL;
    CHECK(bert_load(d, &m, &err) == 0, "cls model: %s", err.msg);
    if (m) {
        CHECK(bert_dim(m) == 384 && !bert_normalizes(m), "cls model dim %d normalizes %d", bert_dim(m),
              bert_normalizes(m));
        bert_free(m);
    }
    free(cfg);
}

int main(void)
{
    model_dir = getenv("JM_TEST_MODEL");
    if (!model_dir)
        model_dir = "models/all-MiniLM-L6-v2";
    snprintf(tmpdir, sizeof tmpdir, "/tmp/jm_test_embed_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    bert_model *m = NULL;
    jm_err err = {0};
    int rc = bert_load(model_dir, &m, &err);
    CHECK(rc == 0, "load %s: %s", model_dir, err.msg);
    if (m) {
        CHECK(bert_dim(m) == 384 && bert_max_seq(m) == 256, "dim %d max_seq %d", bert_dim(m), bert_max_seq(m));
        test_reference(m);
        bert_free(m);
    }
    test_damaged();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd)) {
    }
    return CHECK_DONE("test_embed");
}
